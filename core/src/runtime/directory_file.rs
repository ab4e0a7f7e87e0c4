//! Reading the directory of people and agencies from YAML or CSV.
//!
//! Every bad row is reported with its line; a file with any error imports
//! nothing. YAML:
//!
//! ```yaml
//! people:
//!   - { id: li, name: 李明, roles: [supervision_office], level: 市级, county: 市本级,
//!       email: li@example.org, mobile: "13800000000" }
//! agencies:
//!   - { id: market_bureau, name: 许昌市市场监督管理局, level: 市级, county: 市本级,
//!       email: scj@example.org }
//! ```
//!
//! CSV, with a header: `kind,id,name,roles,organisation,level,county,email,mobile`,
//! `kind` being `person` or `agency` and `roles` separated by `;`.

use std::collections::BTreeSet;

use marked_yaml::Node;

use crate::runtime::directory::{Agency, MemoryDirectory, Person};

/// One problem of a directory file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

const LEVELS: &[&str] = &["市级", "县级"];

fn check_contact(
    line: usize,
    id: &str,
    email: Option<&str>,
    mobile: Option<&str>,
    level: Option<&str>,
    errs: &mut Vec<RowError>,
) {
    if let Some(e) = email {
        if !e
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.'))
        {
            errs.push(RowError {
                line,
                message: format!("`{id}`: `{e}` is not an email address"),
            });
        }
    }
    if let Some(m) = mobile {
        if !(m.len() == 11 && m.starts_with('1') && m.bytes().all(|b| b.is_ascii_digit())) {
            errs.push(RowError {
                line,
                message: format!("`{id}`: `{m}` is not an 11-digit mobile number"),
            });
        }
    }
    if let Some(l) = level {
        if !LEVELS.contains(&l) {
            errs.push(RowError {
                line,
                message: format!("`{id}`: level `{l}` must be 市级 or 县级"),
            });
        }
    }
}

fn check_id(line: usize, id: &str, seen: &mut BTreeSet<String>, errs: &mut Vec<RowError>) {
    if id.trim().is_empty() {
        errs.push(RowError {
            line,
            message: "empty id".into(),
        });
    } else if !seen.insert(id.to_string()) {
        errs.push(RowError {
            line,
            message: format!("duplicate id `{id}`"),
        });
    }
}

/// Parses a directory file; `csv` chooses the format.
pub fn parse(text: &str, csv: bool) -> Result<MemoryDirectory, Vec<RowError>> {
    if csv {
        parse_csv(text)
    } else {
        parse_yaml(text)
    }
}

fn parse_yaml(text: &str) -> Result<MemoryDirectory, Vec<RowError>> {
    let root = marked_yaml::parse_yaml(0, text).map_err(|e| {
        vec![RowError {
            line: 1,
            message: format!("not valid YAML: {e}"),
        }]
    })?;
    let map = root.as_mapping().ok_or_else(|| {
        vec![RowError {
            line: 1,
            message: "expected `people:` and `agencies:`".into(),
        }]
    })?;
    let mut errs = Vec::new();
    let mut dir = MemoryDirectory::default();
    let mut seen = BTreeSet::new();
    for (k, _) in map.iter() {
        if !["people", "agencies"].contains(&k.as_str()) {
            let line = k.span().start().map_or(1, |m| m.line());
            errs.push(RowError {
                line,
                message: format!(
                    "unknown key `{}`; expected `people` or `agencies`",
                    k.as_str()
                ),
            });
        }
    }
    let items = |key: &str| -> Vec<Node> {
        map.get_sequence(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    };
    for node in items("people") {
        let line = node.span().start().map_or(1, |m| m.line());
        match marked_yaml::from_node::<Person>(&node) {
            Ok(p) => {
                check_id(line, &p.id, &mut seen, &mut errs);
                check_contact(
                    line,
                    &p.id,
                    p.email.as_deref(),
                    p.mobile.as_deref(),
                    p.level.as_deref(),
                    &mut errs,
                );
                dir.people.push(p);
            }
            Err(e) => errs.push(RowError {
                line: e.start_mark().map_or(line, |m| m.line()),
                message: e.to_string(),
            }),
        }
    }
    for node in items("agencies") {
        let line = node.span().start().map_or(1, |m| m.line());
        match marked_yaml::from_node::<Agency>(&node) {
            Ok(a) => {
                check_id(line, &a.id, &mut seen, &mut errs);
                check_contact(
                    line,
                    &a.id,
                    a.email.as_deref(),
                    a.mobile.as_deref(),
                    a.level.as_deref(),
                    &mut errs,
                );
                dir.agencies.push(a);
            }
            Err(e) => errs.push(RowError {
                line: e.start_mark().map_or(line, |m| m.line()),
                message: e.to_string(),
            }),
        }
    }
    if errs.is_empty() {
        Ok(dir)
    } else {
        Err(errs)
    }
}

fn parse_csv(text: &str) -> Result<MemoryDirectory, Vec<RowError>> {
    const HEADER: [&str; 9] = [
        "kind",
        "id",
        "name",
        "roles",
        "organisation",
        "level",
        "county",
        "email",
        "mobile",
    ];
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let header: Vec<String> = match rdr.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_string()).collect(),
        Err(e) => {
            return Err(vec![RowError {
                line: 1,
                message: e.to_string(),
            }])
        }
    };
    if header != HEADER {
        return Err(vec![RowError {
            line: 1,
            message: format!("the header must be `{}`", HEADER.join(",")),
        }]);
    }
    let mut errs = Vec::new();
    let mut dir = MemoryDirectory::default();
    let mut seen = BTreeSet::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                errs.push(RowError {
                    line,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line() as usize);
        let get = |i: usize| {
            rec.get(i)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let id = get(1).unwrap_or_default();
        let name = match get(2) {
            Some(n) => n,
            None => {
                errs.push(RowError {
                    line,
                    message: format!("`{id}`: missing name"),
                });
                continue;
            }
        };
        check_id(line, &id, &mut seen, &mut errs);
        check_contact(
            line,
            &id,
            get(7).as_deref(),
            get(8).as_deref(),
            get(5).as_deref(),
            &mut errs,
        );
        match get(0).as_deref() {
            Some("person") => dir.people.push(Person {
                id,
                name,
                roles: get(3)
                    .map(|r| {
                        r.split(';')
                            .map(|x| x.trim().to_string())
                            .filter(|x| !x.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
                organisation: get(4),
                level: get(5),
                county: get(6),
                email: get(7),
                mobile: get(8),
            }),
            Some("agency") => dir.agencies.push(Agency {
                id,
                name,
                level: get(5),
                county: get(6),
                email: get(7),
                mobile: get(8),
            }),
            other => errs.push(RowError {
                line,
                message: format!(
                    "kind `{}` must be `person` or `agency`",
                    other.unwrap_or("")
                ),
            }),
        }
    }
    if errs.is_empty() {
        Ok(dir)
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_checked_by_line() {
        let text = "kind,id,name,roles,organisation,level,county,email,mobile\nperson,li,李明,supervision_office;office_head,司法局,市级,市本级,li@example.org,13800000000\nagency,scj,市场监管局,,,省级,市本级,bad,\nperson,li,重复,,,,,,\n";
        let errs = parse(text, true).unwrap_err();
        let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            [
                "line 3: `scj`: `bad` is not an email address",
                "line 3: `scj`: level `省级` must be 市级 or 县级",
                "line 4: duplicate id `li`",
            ]
        );
        let ok = parse(
            "kind,id,name,roles,organisation,level,county,email,mobile\nperson,li,李明,a;b,,,,,\n",
            true,
        )
        .unwrap();
        assert_eq!(ok.people[0].roles, ["a", "b"]);
    }

    #[test]
    fn yaml_rows_are_checked_by_line() {
        let text = "people:\n  - id: li\n    name: 李明\n    roles: [office]\n  - id: wang\n    nmae: 王\nagencies:\n  - { id: scj, name: 市场监管局, mobile: '123' }\n";
        let errs = parse(text, false).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].line, 6);
        assert!(errs[0].message.contains("nmae"), "{}", errs[0]);
        assert_eq!(
            errs[1].to_string(),
            "line 8: `scj`: `123` is not an 11-digit mobile number"
        );
    }
}
