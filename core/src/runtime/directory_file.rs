//! Reading the directory of people and agencies from YAML or CSV.
//!
//! Every bad row is reported with its line; a file with any error imports
//! nothing. No field may hold a control character (a line break in an email
//! address became a header of the message and killed the task's email for
//! every recipient), emails must be addresses and mobiles 11 digits. In
//! YAML a null field (`~`, `null`, nothing) is absent, and a key given
//! twice, a section that is not a list, a row that is not a mapping and a
//! NUL (where the parser would stop reading) are errors. YAML:
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
//!
//! [`schema`] gives the YAML form's JSON Schema (`duban schema directory`),
//! from copies of [`Person`] and [`Agency`] that the compiler holds to them.

use std::collections::BTreeSet;

use marked_yaml::Node;
use schemars::JsonSchema;
use serde::Deserialize;

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

/// The levels of government an agency or person belongs to: the city, the
/// county (区/县), and the township (乡镇), whose supervision rooms pass
/// clues up to their county (XT-3); a township's `county` is its county.
pub const LEVELS: &[&str] = &["市级", "县级", "乡级"];

/// Whether `s` holds a character that has no place in a name, an id or an
/// address: a control character (line breaks, tabs, NUL, …) or a Unicode
/// line or paragraph separator. A line break in an email address became a
/// header of the message and killed the task's email for every recipient.
pub(crate) fn has_control(s: &str) -> bool {
    s.chars().any(is_control)
}

fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// `s` with its control characters escaped (`\u{1b}`), for a message that
/// quotes what it could not read (an unknown key, an id): a message is one
/// line and moves no terminal's cursor.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if is_control(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Refuses control characters in every field of a row, naming the field
/// (never quoting its value, which is what is broken). Returns whether the
/// row is clean.
fn check_text(line: usize, id: &str, fields: &[(&str, &str)], errs: &mut Vec<RowError>) -> bool {
    let mut clean = true;
    for (field, value) in fields {
        if has_control(value) {
            clean = false;
            let who = if has_control(id) || id.trim().is_empty() {
                String::new()
            } else {
                format!("`{}`: ", id.trim())
            };
            errs.push(RowError {
                line,
                message: format!(
                    "{who}`{field}` contains a line break, tab or other control character"
                ),
            });
        }
    }
    clean
}

fn check_contact(
    line: usize,
    id: &str,
    email: Option<&str>,
    mobile: Option<&str>,
    level: Option<&str>,
    errs: &mut Vec<RowError>,
) {
    if let Some(e) = email.filter(|e| !has_control(e)) {
        if !crate::runtime::values::is_email_address(e) {
            errs.push(RowError {
                line,
                message: format!("`{id}`: `{e}` is not an email address"),
            });
        }
    }
    if let Some(m) = mobile.filter(|m| !has_control(m)) {
        if !crate::runtime::values::is_mobile(m) {
            errs.push(RowError {
                line,
                message: format!("`{id}`: `{m}` is not an 11-digit mobile number"),
            });
        }
    }
    if let Some(l) = level.filter(|l| !has_control(l)) {
        if !LEVELS.contains(&l) {
            errs.push(RowError {
                line,
                message: format!("`{id}`: level `{l}` must be one of {}", LEVELS.join(", ")),
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

/// Whether `n` is YAML's null (a plain `~`, `null`, nothing), which
/// `marked-yaml` hands over as that text.
fn is_null(n: &Node) -> bool {
    n.as_scalar().is_some_and(|s| {
        s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
    })
}

fn line_of(n: &Node) -> usize {
    n.span().start().map_or(1, |m| m.line())
}

/// A row without its null fields: `email: ~` or `mobile:` means none, not
/// the text `~` (which a county would have become, unnoticed).
fn without_nulls(row: &marked_yaml::types::MarkedMappingNode) -> Node {
    let mut out = marked_yaml::types::MarkedMappingNode::new_empty(*row.span());
    for (k, v) in row.iter().filter(|(_, v)| !is_null(v)) {
        out.insert(k.clone(), v.clone());
    }
    Node::Mapping(out)
}

fn parse_yaml(text: &str) -> Result<MemoryDirectory, Vec<RowError>> {
    // Windows editors start a file with a BOM; it is no part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // The YAML parser takes a NUL for the end of the text: what follows it
    // would not be imported, and nobody would know.
    if let Some(at) = text.find('\0') {
        return Err(vec![RowError {
            line: 1 + text[..at].matches('\n').count(),
            message: "a NUL character; the file is not text".into(),
        }]);
    }
    // A second `people:` or `id:` would silently replace the first; a
    // quoted "~" is that text, not null.
    let options = marked_yaml::LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    let root = crate::yaml::parse(text, options).map_err(|e| {
        let message = match &e {
            crate::yaml::Error::TooDeep { .. } => format!("{e}; {}", crate::yaml::TOO_DEEP_HINT),
            crate::yaml::Error::Load(_) => format!("not valid YAML: {}", printable(&e.to_string())),
        };
        vec![RowError {
            line: e.line().unwrap_or(1),
            message,
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
                    printable(k.as_str())
                ),
            });
        }
    }
    // The rows of a section, each a mapping; anything else is an error
    // (a section that is not a list imported nothing, unnoticed).
    let mut items = |key: &str| -> Vec<(usize, Node)> {
        let rows = match map.get_node(key) {
            None => return Vec::new(),
            Some(n) if is_null(n) => return Vec::new(),
            Some(Node::Sequence(rows)) => rows,
            Some(n) => {
                errs.push(RowError {
                    line: line_of(n),
                    message: format!("`{key}` must be a list of rows, `- {{ id: …, name: … }}`"),
                });
                return Vec::new();
            }
        };
        rows.iter()
            .filter_map(|n| match n {
                Node::Mapping(m) => Some((line_of(n), without_nulls(m))),
                _ => {
                    errs.push(RowError {
                        line: line_of(n),
                        message: "a row must be a mapping, `{ id: …, name: … }`".into(),
                    });
                    None
                }
            })
            .collect()
    };
    let people = items("people");
    let agencies = items("agencies");
    for (line, node) in people {
        match marked_yaml::from_node::<Person>(&node) {
            Ok(p) => {
                let mut fields = vec![
                    ("id", p.id.as_str()),
                    ("name", p.name.as_str()),
                    ("organisation", p.organisation.as_deref().unwrap_or("")),
                    ("level", p.level.as_deref().unwrap_or("")),
                    ("county", p.county.as_deref().unwrap_or("")),
                    ("email", p.email.as_deref().unwrap_or("")),
                    ("mobile", p.mobile.as_deref().unwrap_or("")),
                ];
                fields.extend(p.roles.iter().map(|r| ("roles", r.as_str())));
                // The other checks would quote what is broken.
                if !check_text(line, &p.id, &fields, &mut errs) {
                    continue;
                }
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
                message: printable(&e.to_string()),
            }),
        }
    }
    for (line, node) in agencies {
        match marked_yaml::from_node::<Agency>(&node) {
            Ok(a) => {
                let fields = [
                    ("id", a.id.as_str()),
                    ("name", a.name.as_str()),
                    ("level", a.level.as_deref().unwrap_or("")),
                    ("county", a.county.as_deref().unwrap_or("")),
                    ("email", a.email.as_deref().unwrap_or("")),
                    ("mobile", a.mobile.as_deref().unwrap_or("")),
                ];
                if !check_text(line, &a.id, &fields, &mut errs) {
                    continue;
                }
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
                message: printable(&e.to_string()),
            }),
        }
    }
    if errs.is_empty() {
        Ok(dir)
    } else {
        // In the file's order: unknown keys and sections that are not
        // lists were found before the rows around them.
        errs.sort_by_key(|e| e.line);
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
        let raw_id = rec.get(1).unwrap_or("");
        let fields: Vec<(&str, &str)> = HEADER.iter().copied().zip(rec.iter()).collect();
        if !check_text(line, raw_id, &fields, &mut errs) {
            continue;
        }
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

/// A YAML directory file: people and agencies, one row each.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)] // only its schema is used: `parse_yaml` walks the file by hand
struct DirectoryFile {
    /// The people: staff and supervisors, who hold roles and do tasks.
    people: Option<Vec<PersonRow>>,
    /// The agencies: the supervised bodies and departments notices go to.
    agencies: Option<Vec<AgencyRow>>,
}

// The rows' schema types are copies of `Person` and `Agency`, which belong
// to the runtime (and have no `JsonSchema`): `serde(remote)` makes serde
// build the real struct from each copy, so a field added to, removed from
// or retyped in either is a compile error here, not a silent gap in the
// schema. A null field is an absent one (`without_nulls`).

/// A person of the directory (staff or supervisor).
#[derive(Deserialize, JsonSchema)]
#[serde(remote = "Person", deny_unknown_fields)]
#[allow(dead_code)] // serde's remote `deserialize` is the compile-time check, never called
struct PersonRow {
    /// Stable id, e.g. `zhang_san`, used in variables, `--as`, `--to`.
    id: String,
    /// The name as written, e.g. `张三`, shown to staff and in documents.
    name: String,
    /// The role ids of the definitions the person holds.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    roles: Vec<String>,
    /// The person's organisation, e.g. `许昌市司法局`.
    #[serde(default)]
    organisation: Option<String>,
    /// `市级`, `县级` or `乡级`.
    #[serde(default)]
    #[schemars(transform = level)]
    level: Option<String>,
    /// The county (县、市、区), or `市本级`: `within:` scopes a task to it.
    #[serde(default)]
    county: Option<String>,
    /// An email address; task emails go there.
    #[serde(default)]
    email: Option<String>,
    /// An 11-digit mobile number, for SMS (quoted, so YAML reads a text).
    #[serde(default)]
    #[schemars(regex(pattern = "^1[0-9]{10}$"))]
    mobile: Option<String>,
}

/// An agency of the directory (a supervised body or a department).
#[derive(Deserialize, JsonSchema)]
#[serde(remote = "Agency", deny_unknown_fields)]
#[allow(dead_code)] // as PersonRow
struct AgencyRow {
    /// Stable id, e.g. `xt_market_bureau`, used in variables and `--as`.
    id: String,
    /// The name as written, e.g. `许昌市市场监督管理局`.
    name: String,
    /// `市级`, `县级` or `乡级`.
    #[serde(default)]
    #[schemars(transform = level)]
    level: Option<String>,
    /// The county (县、市、区), or `市本级`.
    #[serde(default)]
    county: Option<String>,
    /// The email address notices go to.
    #[serde(default)]
    email: Option<String>,
    /// An 11-digit mobile number, for SMS (quoted, so YAML reads a text).
    #[serde(default)]
    #[schemars(regex(pattern = "^1[0-9]{10}$"))]
    mobile: Option<String>,
}

/// A row's `level`: one of [`LEVELS`], or null (none).
fn level(s: &mut schemars::Schema) {
    let mut values: Vec<serde_json::Value> = LEVELS.iter().map(|l| (*l).into()).collect();
    values.push(serde_json::Value::Null);
    s.insert("enum".into(), values.into());
}

/// The JSON Schema of a YAML directory file (`duban schema directory`).
pub fn schema() -> serde_json::Value {
    crate::schema::generate::<DirectoryFile>("duban directory", true)
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
                "line 3: `scj`: level `省级` must be one of 市级, 县级, 乡级",
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

    /// Issue 13 (XT-3): a township supervision room is an agency of the
    /// township level, under its county.
    #[test]
    fn a_township_is_a_level() {
        let text = "agencies:\n  - { id: dongcheng, name: 东城街道行政执法监督室, level: 乡级, county: 桥西区, email: dc@example.org }\n";
        let d = parse(text, false).unwrap();
        let a = d.agencies.iter().find(|a| a.id == "dongcheng").unwrap();
        assert_eq!(a.level.as_deref(), Some("乡级"));
        assert_eq!(a.county.as_deref(), Some("桥西区"));
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

    /// Issue 12, finding 4: a directory of 60 KB of `- - - …` overflowed
    /// the YAML parser's stack and aborted the import (and `serve`).
    #[test]
    fn issue12_deeply_nested_yaml_is_refused_with_its_line() {
        let text = format!(
            "people:\n  - id: li\n    roles:\n      {}x\n",
            "- ".repeat(30_000)
        );
        let errs = parse(&text, false).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, 4, "{errs:?}");
        assert!(errs[0].message.contains("nested"), "{}", errs[0]);
    }

    /// Issue 12, finding 11: an email address with a CR/LF in it was
    /// imported, became a header of the message, and the task's email died
    /// for every recipient. Control characters are refused in every field,
    /// by line and field, without echoing the value; addresses must be
    /// addresses.
    #[test]
    fn issue12_control_characters_and_non_addresses_are_refused() {
        let head = "kind,id,name,roles,organisation,level,county,email,mobile\n";
        let text = format!(
            "{head}person,li,李明,office,,市级,市本级,\"li@example.org\r\nBcc: all@example.org\",\n\
             agency,scj,\"市场\t监管局\",,,市级,市本级,scj@example.org,\n\
             person,wang,王芳,\"office\nhead\",,,,,\n\
             person,zhao,赵强,,,,,zhao@exa mple.org,\n\
             person,chen,陈静,,,,,<chen@example.org>,1380000000x\n"
        );
        let got: Vec<String> = parse(&text, true)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "line 2: `li`: `email` contains a line break, tab or other control character",
                "line 4: `scj`: `name` contains a line break, tab or other control character",
                "line 5: `wang`: `roles` contains a line break, tab or other control character",
                "line 7: `zhao`: `zhao@exa mple.org` is not an email address",
                "line 8: `chen`: `<chen@example.org>` is not an email address",
                "line 8: `chen`: `1380000000x` is not an 11-digit mobile number",
            ]
        );
        let yaml = "people:\n  - { id: li, name: 李明, email: \"li@example.org\\r\\nBcc: x@y.cn\" }\nagencies:\n  - { id: scj, name: \"市场\\u2028监管局\" }\n";
        let got: Vec<String> = parse(yaml, false)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "line 2: `li`: `email` contains a line break, tab or other control character",
                "line 4: `scj`: `name` contains a line break, tab or other control character",
            ]
        );
        // Addresses in other scripts, plus signs and subdomains are fine.
        let ok = format!("{head}person,li,李明,,,,,li.ming+督办@司法局.中国,13800000000\nagency,scj,市场监管局,,,,,scj@mail.xuchang.gov.cn,\n");
        assert!(parse(&ok, true).is_ok(), "{:?}", parse(&ok, true).err());
    }
}
