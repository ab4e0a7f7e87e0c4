//! Valid directories, generated, and written as YAML (flow style, a row a
//! line) or CSV (the csv crate's quoting), with the line of each row.

use duban_core::runtime::directory::MemoryDirectory;
use duban_core::runtime::values::is_email_address;
use duban_core::runtime::{Agency, Person};
use proptest::prelude::*;

use super::super::has_control;

/// A directory's rows, and the line each is written on.
pub(super) struct Written {
    pub text: String,
    people: Vec<usize>,
    agencies: Vec<usize>,
}

/// A double-quoted YAML scalar; every control character escaped, so each
/// row stays on its line.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if has_control(&c.to_string()) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes the directory in flow style, one row a line (as the module's
/// documentation shows it).
fn write_yaml(dir: &MemoryDirectory) -> Written {
    fn row(out: &mut String, fields: &[(&str, Option<&String>)], roles: Option<&[String]>) {
        out.push_str("  - { ");
        let mut parts: Vec<String> = fields
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}: {}", quoted(v))))
            .collect();
        if let Some(r) = roles {
            let r: Vec<String> = r.iter().map(|x| quoted(x)).collect();
            parts.insert(2, format!("roles: [{}]", r.join(", ")));
        }
        out.push_str(&parts.join(", "));
        out.push_str(" }\n");
    }
    let mut w = Written {
        text: String::new(),
        people: Vec::new(),
        agencies: Vec::new(),
    };
    let mut line = 1;
    w.text.push_str(if dir.people.is_empty() {
        "people: []\n"
    } else {
        "people:\n"
    });
    for p in &dir.people {
        line += 1;
        w.people.push(line);
        let fields = [
            ("id", Some(&p.id)),
            ("name", Some(&p.name)),
            ("organisation", p.organisation.as_ref()),
            ("level", p.level.as_ref()),
            ("county", p.county.as_ref()),
            ("email", p.email.as_ref()),
            ("mobile", p.mobile.as_ref()),
        ];
        row(&mut w.text, &fields, Some(&p.roles));
    }
    line += 1;
    w.text.push_str(if dir.agencies.is_empty() {
        "agencies: []\n"
    } else {
        "agencies:\n"
    });
    for a in &dir.agencies {
        line += 1;
        w.agencies.push(line);
        let fields = [
            ("id", Some(&a.id)),
            ("name", Some(&a.name)),
            ("level", a.level.as_ref()),
            ("county", a.county.as_ref()),
            ("email", a.email.as_ref()),
            ("mobile", a.mobile.as_ref()),
        ];
        row(&mut w.text, &fields, None);
    }
    w
}

/// Writes the directory as CSV with the csv crate's quoting; a row's line
/// is the line its record starts on.
fn write_csv(dir: &MemoryDirectory) -> Written {
    let mut wtr = csv::Writer::from_writer(Vec::new());
    wtr.write_record([
        "kind",
        "id",
        "name",
        "roles",
        "organisation",
        "level",
        "county",
        "email",
        "mobile",
    ])
    .unwrap();
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut w = Written {
        text: String::new(),
        people: Vec::new(),
        agencies: Vec::new(),
    };
    let line = |wtr: &mut csv::Writer<Vec<u8>>| {
        wtr.flush().unwrap();
        1 + wtr.get_ref().iter().filter(|b| **b == b'\n').count()
    };
    for p in &dir.people {
        w.people.push(line(&mut wtr));
        wtr.write_record([
            "person".into(),
            p.id.clone(),
            p.name.clone(),
            p.roles.join(";"),
            o(&p.organisation),
            o(&p.level),
            o(&p.county),
            o(&p.email),
            o(&p.mobile),
        ])
        .unwrap();
    }
    for a in &dir.agencies {
        w.agencies.push(line(&mut wtr));
        wtr.write_record([
            "agency".into(),
            a.id.clone(),
            a.name.clone(),
            String::new(),
            String::new(),
            o(&a.level),
            o(&a.county),
            o(&a.email),
            o(&a.mobile),
        ])
        .unwrap();
    }
    w.text = String::from_utf8(wtr.into_inner().unwrap()).unwrap();
    w
}

pub(super) fn write(dir: &MemoryDirectory, csv: bool) -> Written {
    if csv {
        write_csv(dir)
    } else {
        write_yaml(dir)
    }
}

/// Text as administrators write it: any script and punctuation (commas,
/// quotes, `#`, `:` that CSV and YAML must quote), no control character,
/// no outer spaces (CSV trims them).
fn text_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_]{0,10}",
        "[许昌市司法局王芳李明桥西区 ·（）]{1,10}",
        // Any character at all (cheaper than the regex `\PC`).
        prop::collection::vec(any::<char>(), 1..12).prop_map(String::from_iter),
    ]
    .prop_map(|s| s.trim().to_string())
    .prop_filter("a value", |s| !s.is_empty() && !has_control(s))
}

pub(super) fn email() -> impl Strategy<Value = String> {
    "[a-z0-9督办]{1,6}([.+][a-z0-9]{1,4})?@[a-z0-9司法局]{1,6}(-[a-z]{1,3})?(\\.[a-z]{2,3}|\\.中国){1,2}"
        .prop_filter("an address", |s| is_email_address(s))
}

fn level() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(vec![
        "市级".to_string(),
        "县级".to_string(),
    ]))
}

fn person() -> impl Strategy<Value = Person> {
    (
        text_value(),
        prop::collection::vec("[a-z][a-z_]{0,12}", 0..3),
        prop::option::of(text_value()),
        level(),
        prop::option::of(text_value()),
        prop::option::of(email()),
        prop::option::of("1[0-9]{10}"),
    )
        .prop_map(
            |(name, roles, organisation, level, county, email, mobile)| Person {
                id: String::new(),
                name,
                roles,
                organisation,
                level,
                county,
                email,
                mobile,
            },
        )
}

fn agency() -> impl Strategy<Value = Agency> {
    (
        text_value(),
        level(),
        prop::option::of(text_value()),
        prop::option::of(email()),
        prop::option::of("1[0-9]{10}"),
    )
        .prop_map(|(name, level, county, email, mobile)| Agency {
            id: String::new(),
            name,
            level,
            county,
            email,
            mobile,
        })
}

/// A valid directory; ids are unique (a generated stem and the row's index).
pub(super) fn directory() -> impl Strategy<Value = MemoryDirectory> {
    (
        prop::collection::vec((text_value(), person()), 0..5),
        prop::collection::vec((text_value(), agency()), 0..5),
    )
        .prop_map(|(people, agencies)| MemoryDirectory {
            people: people
                .into_iter()
                .enumerate()
                .map(|(i, (stem, p))| Person {
                    id: format!("{stem}~p{i}"),
                    ..p
                })
                .collect(),
            agencies: agencies
                .into_iter()
                .enumerate()
                .map(|(i, (stem, a))| Agency {
                    id: format!("{stem}~a{i}"),
                    ..a
                })
                .collect(),
        })
        .prop_filter("at least one row", |d| {
            !d.people.is_empty() || !d.agencies.is_empty()
        })
}

/// A field of a row, and a way to set it.
pub(super) fn field_slot(
    dir: &mut MemoryDirectory,
    row: usize,
    field: usize,
) -> (String, &'static str, &mut String) {
    let n = dir.people.len() + dir.agencies.len();
    let row = row % n;
    if row < dir.people.len() {
        let p = &mut dir.people[row];
        let names = [
            "id",
            "name",
            "roles",
            "organisation",
            "level",
            "county",
            "email",
            "mobile",
        ];
        let f = field % names.len();
        let id = p.id.clone();
        let slot = match f {
            0 => &mut p.id,
            1 => &mut p.name,
            2 => {
                if p.roles.is_empty() {
                    p.roles.push(String::new());
                }
                &mut p.roles[0]
            }
            3 => p.organisation.get_or_insert_with(String::new),
            4 => p.level.get_or_insert_with(|| "市级".into()),
            5 => p.county.get_or_insert_with(String::new),
            6 => p.email.get_or_insert_with(|| "li@example.org".into()),
            _ => p.mobile.get_or_insert_with(|| "13800000000".into()),
        };
        (id, names[f], slot)
    } else {
        let a = &mut dir.agencies[row - dir.people.len()];
        let names = ["id", "name", "level", "county", "email", "mobile"];
        let f = field % names.len();
        let id = a.id.clone();
        let slot = match f {
            0 => &mut a.id,
            1 => &mut a.name,
            2 => a.level.get_or_insert_with(|| "县级".into()),
            3 => a.county.get_or_insert_with(String::new),
            4 => a.email.get_or_insert_with(|| "scj@example.org".into()),
            _ => a.mobile.get_or_insert_with(|| "13800000000".into()),
        };
        (id, names[f], slot)
    }
}

pub(super) fn row_line(w: &Written, dir: &MemoryDirectory, row: usize) -> usize {
    let row = row % (dir.people.len() + dir.agencies.len());
    if row < dir.people.len() {
        w.people[row]
    } else {
        w.agencies[row - dir.people.len()]
    }
}

pub(super) const CONTROLS: &[&str] = &[
    "\r\nBcc: all@example.org",
    "\r\n",
    "\n",
    "\r",
    "\t",
    "\u{0}",
    "\u{1b}[2J",
    "\u{7f}",
    "\u{85}",
    "\u{2028}",
    "\u{2029}",
];
