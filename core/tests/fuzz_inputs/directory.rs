//! The directory importer: any text, mutated sample directories, written
//! directories read back, and the refusals of control characters and
//! non-addresses, each at its row and naming its field.

#[path = "directory/gen.rs"]
mod gen;

use std::path::PathBuf;

use duban_core::runtime::directory::MemoryDirectory;
use duban_core::runtime::directory_file::{parse, RowError};
use duban_core::runtime::values::{is_email_address, is_mobile};
use duban_core::runtime::{Agency, Person};
use proptest::prelude::*;

use super::{corpus, has_control, mutate, mutation, root};
use gen::{directory, email, field_slot, row_line, write, CONTROLS};

/// Fragments likely to reach the importer's checks.
const DIR_TOKENS: &[&str] = &[
    "people:",
    "agencies:",
    "- { id: x, name: 某 }",
    "id: ",
    "name: ",
    "roles: [",
    "email: ",
    "mobile: ",
    "level: ",
    "县级",
    "省级",
    "person,",
    "agency,",
    "kind,id,name,roles,organisation,level,county,email,mobile",
    ",",
    ";",
    "\"",
    "'",
    "\r\n",
    "\r",
    "\n",
    "\t",
    "\u{0}",
    "\u{1b}[31m",
    "\u{7f}",
    "\u{85}",
    "\u{2028}",
    "\u{2029}",
    "\\r\\nBcc: all@example.org",
    "\\u2028",
    "@",
    ".",
    " ",
    "13800000000",
    "1380000000x",
    "li@example.org",
    "[",
    "]",
    "{",
    "}",
    ":",
    "- ",
    "&a",
    "*a",
    "!!str",
    "~",
    "null",
    "99999999999999999999",
];

fn yaml_seeds() -> Vec<String> {
    let mut paths = vec![
        root().join("tests/data/directory.yaml"),
        root().join("processes/scenarios/directory.yaml"),
    ];
    paths.extend(corpus_files("directory", "yaml"));
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

fn csv_seeds() -> Vec<String> {
    corpus_files("directory", "csv")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

fn corpus_files(reader: &str, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(reader))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {ext} files in the {reader} corpus");
    files
}

/// What the importer promises for any input: an import that keeps its
/// rules, or a refusal row by row at lines of the file, in one line each.
fn check_import(text: &str, csv: bool) -> Result<(), TestCaseError> {
    match parse(text, csv) {
        Ok(dir) => check_imported(&dir, csv),
        Err(errs) => {
            prop_assert!(!errs.is_empty(), "a refusal without an error");
            // Lines as YAML counts them (CR-LF, LF or CR alone end one); an
            // error at the end of the text may be on the line after the last.
            let lines = 1 + text.replace("\r\n", "\n").matches(['\n', '\r']).count();
            for e in &errs {
                prop_assert!(
                    (1..=lines + 1).contains(&e.line),
                    "line {} outside 1..={lines}+1: {e:?}",
                    e.line
                );
                prop_assert!(!e.message.trim().is_empty(), "{e:?}");
                prop_assert!(!has_control(&e.message), "a control character: {e:?}");
            }
            Ok(())
        }
    }
}

fn check_imported(dir: &MemoryDirectory, csv: bool) -> Result<(), TestCaseError> {
    let mut ids = std::collections::BTreeSet::new();
    let rows = dir
        .people
        .iter()
        .map(|p| {
            let mut f = vec![&p.id, &p.name];
            f.extend(&p.roles);
            f.extend(p.organisation.iter());
            (&p.id, &p.name, f, &p.email, &p.mobile, &p.level, &p.county)
        })
        .chain(dir.agencies.iter().map(|a| {
            (
                &a.id,
                &a.name,
                vec![&a.id, &a.name],
                &a.email,
                &a.mobile,
                &a.level,
                &a.county,
            )
        }));
    for (id, name, fields, email, mobile, level, county) in rows {
        prop_assert!(!id.trim().is_empty(), "an empty id was imported");
        prop_assert!(ids.insert(id.clone()), "`{id}` imported twice");
        if csv {
            prop_assert!(!name.is_empty(), "`{id}`: an empty name was imported");
        }
        for f in fields
            .iter()
            .copied()
            .chain([email, mobile, level, county].into_iter().flatten())
        {
            prop_assert!(!has_control(f), "`{id}`: {f:?} was imported");
        }
        if let Some(e) = email {
            prop_assert!(is_email_address(e), "`{id}`: email {e:?} was imported");
        }
        if let Some(m) = mobile {
            prop_assert!(is_mobile(m), "`{id}`: mobile {m:?} was imported");
        }
        if let Some(l) = level {
            prop_assert!(
                ["市级", "县级"].contains(&l.as_str()),
                "`{id}`: level {l:?}"
            );
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_text_is_imported_or_refused_by_line(text in "\\PC{0,300}", csv in any::<bool>()) {
        check_import(&text, csv)?;
    }

    #[test]
    fn any_characters_are_imported_or_refused_by_line(text in "(?s).{0,200}", csv in any::<bool>()) {
        check_import(&text, csv)?;
    }

    #[test]
    fn mutated_directories_are_imported_or_refused_by_line(
        which in any::<usize>(),
        csv in any::<bool>(),
        muts in prop::collection::vec(mutation(DIR_TOKENS.len()), 1..8),
    ) {
        let seeds = if csv { csv_seeds() } else { yaml_seeds() };
        let text = mutate(&seeds[which % seeds.len()], &muts, DIR_TOKENS);
        check_import(&text, csv)?;
    }

    #[test]
    fn a_written_directory_reads_back_the_same(dir in directory(), csv in any::<bool>()) {
        let w = write(&dir, csv);
        let got = parse(&w.text, csv).map_err(|e| TestCaseError::fail(format!("{e:?}\n{}", w.text)))?;
        prop_assert_eq!(&got.people, &dir.people, "{}", w.text);
        prop_assert_eq!(&got.agencies, &dir.agencies, "{}", w.text);
        // serde_yaml's block style reads back the same too.
        if !csv {
            #[derive(serde::Serialize)]
            struct File<'a> { people: &'a [Person], agencies: &'a [Agency] }
            let text = serde_yaml::to_string(&File { people: &dir.people, agencies: &dir.agencies }).unwrap();
            let got = parse(&text, false).map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
            prop_assert_eq!(&got.people, &dir.people, "{}", text);
            prop_assert_eq!(&got.agencies, &dir.agencies, "{}", text);
        }
    }

    /// Issue 12, finding 11, in every field of every row: a control
    /// character is refused at the row's line, naming the field and not
    /// quoting the value.
    #[test]
    fn a_control_character_in_any_field_is_refused_naming_it(
        mut dir in directory(),
        csv in any::<bool>(),
        row in any::<usize>(),
        field in any::<usize>(),
        control in prop::sample::select(CONTROLS),
        at in any::<usize>(),
    ) {
        let (id, name, slot) = field_slot(&mut dir, row, field);
        let k = slot.char_indices().map(|(k, _)| k).nth(at % (slot.chars().count() + 1)).unwrap_or(slot.len());
        slot.insert_str(k, control);
        let who = if name == "id" { String::new() } else { format!("`{id}`: ") };
        let w = write(&dir, csv);
        let want = RowError {
            line: row_line(&w, &dir, row),
            message: format!("{who}`{name}` contains a line break, tab or other control character"),
        };
        let errs = parse(&w.text, csv).err().unwrap_or_default();
        prop_assert_eq!(&errs, &vec![want], "{}", w.text);
    }

    #[test]
    fn a_non_address_is_refused_naming_it(
        mut dir in directory(),
        csv in any::<bool>(),
        row in any::<usize>(),
        mobile in any::<bool>(),
        bad in prop_oneof![
            "\\PC{1,20}",
            email().prop_map(|e| e.replace('@', "")),
            email().prop_map(|e| e.replace('@', " @")),
            email().prop_map(|e| format!("<{e}>")),
            email().prop_map(|e| format!("{e}.")),
            email().prop_map(|e| e.replace('.', "..")),
            email().prop_map(|e| e.replace('@', "@-")),
            email().prop_map(|e| format!("{e},x@example.org")),
            "1[0-9]{9,11}",
            "\\+861[0-9]{10}",
            "[１３８０]{11}",
        ].prop_map(|s| s.trim().to_string()),
    ) {
        prop_assume!(!bad.is_empty() && !has_control(&bad));
        prop_assume!(if mobile { !is_mobile(&bad) } else { !is_email_address(&bad) });
        let field = if row % (dir.people.len() + dir.agencies.len()) < dir.people.len() {
            if mobile { 7 } else { 6 }
        } else if mobile { 5 } else { 4 };
        let (id, _, slot) = field_slot(&mut dir, row, field);
        *slot = bad.clone();
        let w = write(&dir, csv);
        let what = if mobile { "an 11-digit mobile number" } else { "an email address" };
        let want = RowError {
            line: row_line(&w, &dir, row),
            message: format!("`{id}`: `{bad}` is not {what}"),
        };
        let errs = parse(&w.text, csv).err().unwrap_or_default();
        prop_assert_eq!(&errs, &vec![want], "{}", w.text);
    }
}

/// Every file of the directory corpus gives the result its `.expected`
/// file states: `ok: N people, M agencies` and each row imported (as
/// JSON), or the errors, one a line.
#[test]
fn the_directory_corpus_gives_its_results() {
    let mut files = corpus_files("directory", "yaml");
    files.extend(corpus_files("directory", "csv"));
    let mut wrong = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let csv = f.extension().is_some_and(|x| x == "csv");
        let want = std::fs::read_to_string(f.with_extension("expected"))
            .unwrap_or_else(|e| panic!("{}: {e}", f.with_extension("expected").display()));
        let got = match parse(&text, csv) {
            Ok(d) => {
                let mut out = vec![format!(
                    "ok: {} people, {} agencies",
                    d.people.len(),
                    d.agencies.len()
                )];
                out.extend(d.people.iter().map(|p| serde_json::to_string(p).unwrap()));
                out.extend(d.agencies.iter().map(|a| serde_json::to_string(a).unwrap()));
                out.join("\n")
            }
            Err(errs) => errs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        };
        if got != want.trim_end() {
            wrong.push(format!("{}:\n{got}\nexpected:\n{want}", f.display()));
        }
        if let Err(e) = check_import(&text, csv) {
            wrong.push(format!("{}: {e}", f.display()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
