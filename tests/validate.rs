//! The process library and the broken definitions, checked end to end
//! through the library API.

use std::collections::BTreeSet;

use duban_engine::definition::{self, load_library, Code};
use duban_tests::{processes, render, root, yaml_files};

#[test]
fn every_file_in_processes_loads() {
    let files = yaml_files(&processes());
    assert!(
        files.len() >= 2,
        "the library has the supervision-letter and dispute processes"
    );
    let lib = load_library(&files, &[]);
    for f in &lib.files {
        assert!(
            f.diagnostics.is_empty(),
            "{} is invalid:\n{}",
            f.path.display(),
            render(&f.diagnostics)
        );
    }
    assert_eq!(
        lib.definitions.len(),
        files.len(),
        "one definition per file"
    );
    for id in ["supervision_letter", "dispute"] {
        assert!(lib.definitions.contains_key(id), "{id} is in the library");
    }
}

#[test]
fn the_library_cites_the_rules_it_implements() {
    let lib = load_library(&yaml_files(&processes()), &[]);
    let cited: BTreeSet<&str> = lib
        .definitions
        .values()
        .flat_map(|d| d.rules.iter().map(String::as_str))
        .collect();
    for rule in ["XC-19", "XC-20", "XT-14", "XT-6", "XT-7", "XT-8"] {
        assert!(cited.contains(rule), "{rule} is cited by a definition");
    }
}

/// The processes the broken definitions' `call`s name (`tests/broken/calls/`):
/// each broken file is loaded with them beside it, as `duban validate`
/// loads a file with its sibling definitions.
fn called_by_broken() -> Vec<std::path::PathBuf> {
    yaml_files(&root().join("tests/broken/calls"))
}

/// One broken definition per error kind. The file name starts with the
/// expected code (`e006_…` → E006); each yields diagnostics of that kind only,
/// and its line, column, path, message and hint are snapshotted.
#[test]
fn broken_definitions() {
    let dir = root().join("tests/broken");
    let files = yaml_files(&dir);
    assert!(
        files.len() >= 25,
        "at least 25 broken definitions, found {}",
        files.len()
    );
    let called = called_by_broken();
    let mut codes = BTreeSet::new();
    insta::glob!("broken/*.yaml", |path| {
        let lib = load_library(&[path.to_path_buf()], &called);
        let diags: Vec<_> = lib.diagnostics().cloned().collect();
        let name = path.file_stem().unwrap().to_str().unwrap();
        let expected = name[..4].to_uppercase();
        // Exactly the intended kind of problem, and no cascade of others (a
        // dead loop is reported once per step in it).
        assert!(!diags.is_empty(), "{name}: no diagnostic");
        for d in &diags {
            assert_eq!(d.code.as_str(), expected, "{name}: {}", render(&diags));
        }
        codes.insert(expected);
        insta::assert_snapshot!(render(&diags));
    });
    // Every error kind the validator has is exercised by some broken file.
    assert_eq!(codes.len(), 41, "codes covered: {codes:?}");
}

/// The processes the broken definitions call are themselves valid, so a
/// broken file's diagnostics are about the call alone.
#[test]
fn the_processes_broken_definitions_call_are_valid() {
    let called = called_by_broken();
    assert!(
        !called.is_empty(),
        "tests/broken/calls/ has the called processes"
    );
    let lib = load_library(&called, &[]);
    for f in &lib.files {
        assert!(
            f.diagnostics.is_empty(),
            "{} is invalid:\n{}",
            f.path.display(),
            render(&f.diagnostics)
        );
    }
}

/// Every fixture folder of `tests/data/` validates clean as a library (as
/// `duban validate tests/data/call/` does), so the stricter checks of calls
/// and expression types reject none of the definitions the other tests run.
#[test]
fn every_test_fixture_loads() {
    let data = root().join("tests/data");
    let mut folders: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    assert!(!folders.is_empty(), "tests/data has fixture folders");
    for folder in folders {
        let files = yaml_files(&folder);
        let lib = load_library(&files, &[]);
        for f in &lib.files {
            assert!(
                f.diagnostics.is_empty(),
                "{} is invalid:\n{}",
                f.path.display(),
                render(&f.diagnostics)
            );
        }
        assert_eq!(lib.definitions.len(), files.len(), "{}", folder.display());
    }
}

#[test]
fn three_errors_are_reported_in_one_run() {
    let lib = load_library(&[root().join("tests/three_errors.yaml")], &[]);
    let diags: Vec<_> = lib.diagnostics().collect();
    let got: Vec<(usize, usize, &str, Code)> = diags
        .iter()
        .map(|d| (d.line, d.column, d.path.as_str(), d.code))
        .collect();
    assert_eq!(
        got,
        [
            (15, 23, "steps.review.assignee.role", Code::UnknownRole),
            (17, 15, "steps.review.deadline.period", Code::BadPeriod),
            (
                22,
                15,
                "steps.review.outcomes.approve.next",
                Code::UnknownStep
            ),
        ]
    );
    assert_eq!(diags[2].hint.as_deref(), Some("did you mean `done`?"));
}

#[test]
fn expand_paths_reports_missing_paths() {
    let err = definition::expand_paths(&[root().join("no/such/folder")]).unwrap_err();
    assert!(err.contains("no such file or folder"), "{err}");
}

/// The complete example at the top of docs/process-language.md is valid, so
/// the reference does not drift from the language.
#[test]
fn the_documented_example_is_valid() {
    let doc = std::fs::read_to_string(root().join("docs/process-language.md")).unwrap();
    let start = doc.find("```yaml\nid: ").expect("a complete example") + "```yaml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let result = definition::load_str(
        "docs/process-language.md",
        &doc[start..end],
        &Default::default(),
    );
    if let Err(d) = &result {
        panic!("{}", render(d));
    }
}

/// Issue 12, finding 4: one file of 60 KB of `- - - …` in a library
/// overflowed the stack and aborted the check of every file (and `serve`,
/// `deploy`). It is an E001 of its own, and its neighbours are checked.
#[test]
fn issue12_a_deeply_nested_file_is_refused_and_its_neighbours_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let deep = tmp.path().join("deep.yaml");
    std::fs::write(
        &deep,
        format!(
            "id: deep\nversion: 1\nsteps:\n  a:\n    {}x\n",
            "- ".repeat(30_000)
        ),
    )
    .unwrap();
    // The dispute calls the supervision letter, which must be beside it.
    let dispute = processes().join("dispute.yaml");
    let letter = processes().join("supervision_letter.yaml");
    let lib = load_library(&[deep.clone(), dispute, letter], &[]);
    assert!(
        lib.definitions.contains_key("dispute"),
        "the neighbour loads"
    );
    let d = &lib.files[0].diagnostics;
    assert_eq!(d.len(), 1, "{}", render(d));
    assert_eq!(
        (d[0].code, d[0].line),
        (Code::YamlSyntax, 5),
        "{}",
        render(d)
    );
    assert!(lib.files[1].diagnostics.is_empty());
}

/// Issue 12, finding 5: a template `file:` could name any file the server
/// can read (`/proc/self/environ` was validated, deployed and mailed with
/// the SMTP password in it); `/dev/zero` exhausted memory; a FIFO hung the
/// check. Each is an E027 at the `file:`, nothing of it is read for deploy,
/// and no message quotes what the file holds.
#[test]
fn issue12_template_files_must_be_regular_files_inside_the_library() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("processes");
    std::fs::create_dir_all(lib.join("templates")).unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "DUBAN_SMTP_PASSWORD=hunter2").unwrap();
    let mut files = vec![
        ("absolute", "/etc/hostname".to_string()),
        ("climbs", "../secret.txt".to_string()),
        ("climbs_later", "templates/../../secret.txt".to_string()),
        ("folder", "templates".to_string()),
    ];
    std::fs::write(lib.join("templates/big.hbs"), "x".repeat(300 * 1024)).unwrap();
    files.push(("big", "templates/big.hbs".into()));
    #[cfg(unix)]
    {
        let link = lib.join("templates/link.hbs");
        std::os::unix::fs::symlink(tmp.path().join("secret.txt"), link).unwrap();
        std::os::unix::fs::symlink("/dev/zero", lib.join("templates/zero.hbs")).unwrap();
        files.push(("link", "templates/link.hbs".into()));
        files.push(("zero", "templates/zero.hbs".into()));
        let fifo = lib.join("templates/fifo.hbs");
        if std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success())
        {
            files.push(("fifo", "templates/fifo.hbs".into()));
        }
    }
    let paths: Vec<_> = files
        .iter()
        .map(|(id, file)| {
            let p = lib.join(format!("{id}.yaml"));
            std::fs::write(
                &p,
                format!(
                    "id: {id}\nversion: 1\nname: 测试\nstart: done\nsteps:\n  done: {{ kind: end, name: 结束, result: ok }}\ntemplates:\n  notice:\n    file: {file}\n"
                ),
            )
            .unwrap();
            p
        })
        .collect();
    let lib = load_library(&paths, &[]);
    for (f, (id, file)) in lib.files.iter().zip(&files) {
        let d = &f.diagnostics;
        assert_eq!(d.len(), 1, "{id}: {}", render(d));
        assert_eq!(
            (d[0].code, d[0].line, d[0].path.as_str()),
            (Code::MissingFile, 9, "templates.notice.file"),
            "{id}: {}",
            render(d)
        );
        assert!(
            d[0].message.contains(&format!("`{file}`")),
            "{id}: {}",
            render(d)
        );
        assert!(!render(d).contains("hunter2"), "{id}: {}", render(d));
        assert!(f.templates.is_empty(), "{id}: nothing is kept for deploy");
    }
    assert!(lib.definitions.is_empty());
}

/// Issue 12, finding 5: a template file that does not parse is located by
/// line and column, and the message quotes nothing of it (the parser's
/// reasons name what they found: here the closing name, a line of the
/// file; its full message shows the lines around the error).
#[test]
fn issue12_a_template_file_that_does_not_parse_is_not_quoted() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("templates")).unwrap();
    std::fs::write(
        tmp.path().join("templates/notice.hbs"),
        "root:$6$secret$hash:19000:0:99999:7:::\n{{#if x}}\n{{/secret}}\n",
    )
    .unwrap();
    let def = tmp.path().join("p.yaml");
    std::fs::write(
        &def,
        "id: p\nversion: 1\nname: 测试\nstart: done\nsteps:\n  done: { kind: end, name: 结束, result: ok }\ntemplates:\n  notice:\n    file: templates/notice.hbs\n",
    )
    .unwrap();
    let lib = load_library(&[def], &[]);
    let d = &lib.files[0].diagnostics;
    assert_eq!(d.len(), 1, "{}", render(d));
    assert_eq!(d[0].code, Code::TemplateSyntax, "{}", render(d));
    assert_eq!(
        d[0].message,
        "template `notice` (templates/notice.hbs line 3, column 1) does not parse: a block is closed with another name than the one it was opened with",
        "{}",
        render(d)
    );
    assert!(!render(d).contains("secret"), "{}", render(d));
}
