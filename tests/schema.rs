//! The JSON Schemas of the YAML files (`schema/*.json`, `duban schema`),
//! held to the loaders they describe:
//!
//! - the committed files are exactly what the code generates
//!   (`DUBAN_UPDATE_SCHEMA=1` rewrites them);
//! - every shipped definition, scenario and directory file, every file of
//!   `tests/data` but the fuzz inputs, and every YAML example of the docs
//!   is valid against its schema, checked by a real validator (`jsonschema`);
//! - every definition of `tests/broken/` that is a pure shape error (E002
//!   unknown key, E003 missing key, E004 wrong type) is refused;
//! - every shipped file names its schema in its first line, and that line
//!   does not make an already deployed version new.
//!
//! YAML is read with `serde_yaml` into JSON values, as an editor's
//! yaml-language-server reads it.

use std::path::{Path, PathBuf};

use duban_engine::calendar::Calendar;
use duban_engine::definition;
use duban_engine::runtime::directory_file;
use duban_engine::service::Engine;
use duban_engine::simulate;
use duban_engine::store::{Deployed, MemoryStore};
use duban_tests::root;
use serde_json::{json, Value};

/// The kinds of file, each with its schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Process,
    Directory,
    Scenario,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Process, Kind::Directory, Kind::Scenario];

    /// As `duban schema` names it, and its file `schema/NAME.json`.
    fn name(self) -> &'static str {
        match self {
            Kind::Process => "process",
            Kind::Directory => "directory",
            Kind::Scenario => "scenario",
        }
    }

    fn schema(self) -> Value {
        match self {
            Kind::Process => definition::schema(),
            Kind::Directory => directory_file::schema(),
            Kind::Scenario => simulate::schema(),
        }
    }

    /// The kind of a file, by what its top level holds: a definition's
    /// `steps` is a mapping, a scenario's a list; a directory has `people`
    /// or `agencies`.
    fn of(file: &Path, doc: &Value) -> Kind {
        match (doc.get("steps"), doc.get("people").or(doc.get("agencies"))) {
            (Some(Value::Object(_)), _) => Kind::Process,
            (Some(Value::Array(_)), _) => Kind::Scenario,
            (None, Some(_)) => Kind::Directory,
            _ => panic!(
                "{}: neither a definition, a scenario nor a directory",
                file.display()
            ),
        }
    }
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft7::new(schema).expect("the generated schema is a valid draft-07 schema")
}

/// Every error of `doc` against `v`, one line each (empty when valid).
fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("at `{}`: {e}", e.instance_path()))
        .collect()
}

fn read_yaml(file: &Path) -> Value {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The `*.yaml` files under `dir`, at any depth, sorted.
fn yaml_tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = entry.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every YAML file the repository ships for use: the process library with
/// its scenarios and their directories, and the demo's directory.
fn shipped() -> Vec<PathBuf> {
    let mut files = yaml_tree(&root().join("processes"));
    files.extend(yaml_tree(&root().join("demo")));
    assert!(files.len() > 50, "found only {files:?}");
    files
}

/// Checks every file against the schema of its kind; returns the problems.
fn check_files(files: &[PathBuf]) -> Vec<String> {
    let validators: Vec<(Kind, jsonschema::Validator)> = Kind::ALL
        .iter()
        .map(|k| (*k, validator(&k.schema())))
        .collect();
    let mut problems = Vec::new();
    for file in files {
        let doc = read_yaml(file);
        let kind = Kind::of(file, &doc);
        let v = &validators
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("every kind")
            .1;
        for e in errors(v, &doc) {
            problems.push(format!("{} ({}): {e}", file.display(), kind.name()));
        }
    }
    problems
}

#[test]
fn committed_schemas_are_what_the_code_generates() {
    let update = std::env::var_os("DUBAN_UPDATE_SCHEMA").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for kind in Kind::ALL {
        let path = root().join("schema").join(format!("{}.json", kind.name()));
        let generated = duban_engine::schema::pretty(&kind.schema());
        if update {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            stale.push(format!(
                "schema/{0}.json is not what the code generates: run `duban schema {0} > schema/{0}.json`",
                kind.name()
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "{}\n(or run this test with DUBAN_UPDATE_SCHEMA=1 to rewrite them all)",
        stale.join("\n")
    );
}

/// An editor shows a key's `description`: every property of every object
/// in every schema has one.
#[test]
fn every_key_is_described() {
    fn walk(v: &Value, at: &str, missing: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                // Only where an object type declares its keys: the
                // constraints between keys (`anyOf`, `if` …) name them only.
                if m.get("type") == Some(&json!("object")) {
                    for (k, p) in m
                        .get("properties")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                    {
                        if p.get("description").is_none() {
                            missing.push(format!("{at}: `{k}`"));
                        }
                    }
                }
                for (k, x) in m {
                    walk(x, &format!("{at}/{k}"), missing);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, at, missing)),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for kind in Kind::ALL {
        walk(&kind.schema(), kind.name(), &mut missing);
    }
    assert!(
        missing.is_empty(),
        "keys without a description:\n{}",
        missing.join("\n")
    );
}

#[test]
fn shipped_files_are_valid() {
    let problems = check_files(&shipped());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The test data too, but the fuzz inputs, which are broken on purpose:
/// a file duban reads must not be one an editor marks wrong.
#[test]
fn test_data_is_valid() {
    let fuzz = root().join("tests/data/fuzz");
    let files: Vec<PathBuf> = yaml_tree(&root().join("tests/data"))
        .into_iter()
        .filter(|f| !f.starts_with(&fuzz))
        .collect();
    assert!(files.len() > 50, "found only {files:?}");
    let problems = check_files(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The definitions of `tests/broken/` whose problem is their shape alone —
/// an unknown key (E002), a missing one (E003), a wrong type (E004) — are
/// refused by the schema as they are by `duban validate`. The other codes
/// are about meaning (references, periods, CEL …), which a schema cannot
/// know: those files may well have a valid shape.
#[test]
fn shape_errors_are_refused() {
    let v = validator(&Kind::Process.schema());
    let broken: Vec<PathBuf> = duban_tests::yaml_files(&root().join("tests/broken"))
        .into_iter()
        .filter(|f| {
            let name = f.file_name().unwrap().to_string_lossy();
            ["e002_", "e003_", "e004_"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .collect();
    assert!(broken.len() >= 7, "found only {broken:?}");
    let accepted: Vec<String> = broken
        .iter()
        .filter(|f| errors(&v, &read_yaml(f)).is_empty())
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        accepted.is_empty(),
        "the schema accepts shape errors:\n{}",
        accepted.join("\n")
    );
}

/// The line every shipped file starts with, naming its schema relative to
/// the file, for yaml-language-server (`# yaml-language-server: $schema=…`).
fn schema_line(file: &Path, kind: Kind) -> String {
    let depth = file
        .parent()
        .unwrap()
        .strip_prefix(root())
        .unwrap()
        .components()
        .count();
    format!(
        "# yaml-language-server: $schema={}schema/{}.json",
        "../".repeat(depth),
        kind.name()
    )
}

#[test]
fn shipped_files_name_their_schema() {
    let mut wrong = Vec::new();
    for file in shipped() {
        let text = std::fs::read_to_string(&file).unwrap();
        let want = schema_line(&file, Kind::of(&file, &read_yaml(&file)));
        if text.lines().next() != Some(want.as_str()) {
            wrong.push(format!(
                "{}: the first line should be `{want}`",
                file.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Adding the schema line to a deployed definition is no change of its
/// content: the libraries of sites that deployed the files before they had
/// the line deploy as `Unchanged`, not refused as a changed version.
#[tokio::test]
async fn the_schema_line_is_no_new_version() {
    let before = tempfile::tempdir().unwrap();
    for file in duban_tests::yaml_files(&duban_tests::processes()) {
        let text = std::fs::read_to_string(&file).unwrap();
        let (first, rest) = text.split_once('\n').unwrap();
        assert!(
            first.starts_with("# yaml-language-server: "),
            "{}",
            file.display()
        );
        std::fs::write(before.path().join(file.file_name().unwrap()), rest).unwrap();
    }
    let templates = before.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    for t in std::fs::read_dir(duban_tests::processes().join("templates")).unwrap() {
        let t = t.unwrap().path();
        std::fs::copy(&t, templates.join(t.file_name().unwrap())).unwrap();
    }
    let engine = Engine::new(MemoryStore::default(), Calendar::builtin())
        .await
        .unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2025-09-01T09:00:00+08:00")
        .unwrap()
        .to_utc();
    let first = engine
        .deploy(&[before.path().to_path_buf()], at)
        .await
        .unwrap();
    assert!(first.iter().all(|r| r.result == Deployed::New));
    let again = engine
        .deploy(&[duban_tests::processes()], at)
        .await
        .unwrap();
    assert_eq!(again.len(), first.len());
    assert!(
        again.iter().all(|r| r.result == Deployed::Unchanged),
        "{again:?}"
    );
}

// ----- the documentation's examples ------------------------------------

/// The ```yaml blocks of a Markdown file, each with the line it starts on.
fn yaml_blocks(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in md.lines().enumerate() {
        match (&mut open, line.trim_start()) {
            (None, l) if l.starts_with("```yaml") => open = Some((i + 2, String::new())),
            (Some(_), l) if l.starts_with("```") => out.extend(open.take()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// The schema of a fragment: `schema` with the keys an object type
/// requires no longer required, so a documented part of a definition (a
/// step that leaves out its `name:`, a section alone) is checked for its
/// key names and value types, not for what it leaves out. The constraints
/// between keys (`period:` or `until:`, one party key) still hold.
fn fragment(schema: &Value) -> Value {
    fn relax(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if m.get("type") == Some(&json!("object")) {
                    m.remove("required");
                }
                m.values_mut().for_each(relax);
            }
            Value::Array(a) => a.iter_mut().for_each(relax),
            _ => {}
        }
    }
    let mut s = schema.clone();
    relax(&mut s);
    s
}

/// `schema`'s definition `name`, with the others beside it for its `$ref`s.
fn part(schema: &Value, name: &str) -> Value {
    json!({
        "$schema": schema["$schema"],
        "definitions": schema["definitions"],
        "$ref": format!("#/definitions/{name}"),
    })
}

/// How a documented block is checked, and the problems found.
fn check_block(doc: &Value) -> (&'static str, Vec<String>) {
    let process = Kind::Process.schema();
    let parts = fragment(&process);
    let top_keys = ["id", "version", "name", "start", "steps"];
    let Value::Object(map) = doc else {
        // A list: the branches of a decision (the E037 examples).
        let v = validator(&json!({
            "$schema": parts["$schema"],
            "definitions": parts["definitions"],
            "type": "array",
            "items": { "$ref": "#/definitions/RawBranch" },
        }));
        return ("decision branches, as a fragment", errors(&v, doc));
    };
    let props = process["properties"].as_object().unwrap();
    if map.keys().all(|k| props.contains_key(k)) {
        if top_keys.iter().all(|k| map.contains_key(*k)) {
            return ("a whole definition", errors(&validator(&process), doc));
        }
        return (
            "top-level sections, as a fragment",
            errors(&validator(&parts), doc),
        );
    }
    if map.len() == 1 && map.contains_key("deadline") {
        let v = validator(&part(&parts, "RawDeadline"));
        return ("a deadline, as a fragment", errors(&v, &doc["deadline"]));
    }
    if map.values().all(|s| s.get("kind").is_some()) {
        let wrapped = json!({ "steps": doc });
        return ("steps, as a fragment", errors(&validator(&parts), &wrapped));
    }
    (
        "nothing: not a known part of a definition",
        vec!["cannot tell what the block is".into()],
    )
}

/// Every YAML example of docs/process-language.md is valid: whole
/// definitions against the process schema, parts of one (a section, a
/// step, a deadline, a decision's branches) against the part of the
/// schema they are an example of, without its required keys. None is
/// skipped. The examples of docs/simulation.md and docs/directory.md are
/// checked against their schemas as well.
#[test]
fn documented_examples_are_valid() {
    let md = std::fs::read_to_string(root().join("docs/process-language.md")).unwrap();
    let blocks = yaml_blocks(&md);
    assert!(blocks.len() >= 30, "found only {} blocks", blocks.len());
    let mut problems = Vec::new();
    let mut how: Vec<String> = Vec::new();
    for (line, text) in &blocks {
        let doc: Value = serde_yaml::from_str(text)
            .unwrap_or_else(|e| panic!("docs/process-language.md:{line}: {e}"));
        let (what, errs) = check_block(&doc);
        how.push(format!("docs/process-language.md:{line}: {what}"));
        problems.extend(
            errs.into_iter()
                .map(|e| format!("docs/process-language.md:{line} ({what}): {e}")),
        );
    }
    println!("{}", how.join("\n"));
    // The whole definitions are checked whole, not as fragments.
    assert!(
        how.iter()
            .filter(|h| h.ends_with("a whole definition"))
            .count()
            >= 1,
        "{how:#?}"
    );

    let scenario = Kind::Scenario.schema();
    for (doc, kind_schema, name) in [
        ("docs/simulation.md", &scenario, "scenario"),
        ("docs/directory.md", &Kind::Directory.schema(), "directory"),
    ] {
        let md = std::fs::read_to_string(root().join(doc)).unwrap();
        for (line, text) in yaml_blocks(&md) {
            let value: Value =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{doc}:{line}: {e}"));
            // docs/simulation.md also shows a few steps alone, a list.
            let v = if value.is_array() && name == "scenario" {
                validator(&json!({
                    "$schema": scenario["$schema"],
                    "definitions": scenario["definitions"],
                    "type": "array",
                    "items": { "$ref": "#/definitions/RawAction" },
                }))
            } else {
                validator(kind_schema)
            };
            problems.extend(
                errors(&v, &value)
                    .into_iter()
                    .map(|e| format!("{doc}:{line} ({name}): {e}")),
            );
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nchecked:\n{}",
        problems.join("\n"),
        how.join("\n")
    );
}

// ----- where the schema says what the checker says ---------------------

/// A small valid definition with `steps` (more steps, YAML flow mappings
/// one per line, each ending at `done`) and `extra` top-level sections.
fn small(steps: &str, extra: &str) -> String {
    format!(
        "id: p\nversion: 1\nname: 测试\nroles: {{ office: 办公室 }}\n\
         variables:\n  due: {{ type: date }}\n  people: {{ type: list<person> }}\n  \
         person: {{ type: person }}\n  agency: {{ type: agency }}\n  outcome: {{ type: string }}\n\
         start: first\nsteps:\n  first: {{ kind: join, name: 开始, next: work }}\n{steps}\n  \
         done: {{ kind: end, name: 结束, result: ok }}\n{extra}\n\
         templates:\n  t: {{ body: 请办理 }}\n"
    )
}

/// Each case is valid, or not, for the schema and for `duban validate`
/// alike: the constraints between keys the schema adds are the checker's
/// own, neither stricter nor looser.
#[test]
fn schema_and_checker_agree() {
    let task = |rest: &str| {
        format!("  work: {{ kind: task, name: 办理, assignee: {{ role: office }}, {rest} }}")
    };
    let cases: Vec<(&str, String, bool)> = vec![
        ("the base", small(&task("outcomes: { ok: { label: 完成, next: done } }"), ""), true),
        ("a step-level next for outcomes without one", small(&task("outcomes: { ok: { label: 完成 } }, next: done"), ""), true),
        ("an outcome without any next", small(&task("outcomes: { ok: { label: 完成 } }"), ""), false),
        ("no outcome", small(&task("outcomes: {}, next: done"), ""), false),
        ("`assignee: true` on a task", small("  work: { kind: task, name: 办理, assignee: { assignee: true }, outcomes: { ok: { label: 完成, next: done } } }", ""), false),
        ("two party keys", small("  work: { kind: task, name: 办理, assignee: { role: office, person: li }, outcomes: { ok: { label: 完成, next: done } } }", ""), false),
        ("`within` without a role", small("  work: { kind: task, name: 办理, assignee: { person: li, within: agency }, outcomes: { ok: { label: 完成, next: done } } }", ""), false),
        ("a task deadline from receipt", small(&task("outcomes: { ok: { label: 完成, next: done } }, deadline: { period: 5日, from: receipt }"), ""), false),
        ("a task deadline without its last day extended", small(&task("outcomes: { ok: { label: 完成, next: done } }, deadline: { period: 5日, extend_on_rest_day: false }"), ""), false),
        ("a deadline with period and until", small(&task("outcomes: { ok: { label: 完成, next: done } }, deadline: { period: 5日, until: var.due }"), ""), false),
        ("a deadline with neither", small(&task("outcomes: { ok: { label: 完成, next: done } }, deadline: { remind: [1日] }"), ""), false),
        ("`until` with `from`", small(&task("outcomes: { ok: { label: 完成, next: done } }, deadline: { until: var.due, from: opened }"), ""), false),
        ("`on_expiry` with neither goto nor notify", small(&task("outcomes: { ok: { label: 完成, next: done } }, deadline: { period: 5日, on_expiry: { template: t } }"), ""), false),
        ("`on_expiry` notifying", small(&task("outcomes: { ok: { label: 完成, next: done } }, deadline: { period: 5日, on_expiry: { notify: [office], template: t } }"), ""), true),
        ("a for_each task", small(&task("for_each: { items: people, as: person, complete_when: { at_least: 1 } }, outcomes: { ok: { label: 完成 } }, next: done"), ""), true),
        ("a for_each task without next", small(&task("for_each: { items: people, as: person }, outcomes: { ok: { label: 完成 } }"), ""), false),
        ("a for_each outcome with a next", small(&task("for_each: { items: people, as: person }, outcomes: { ok: { label: 完成, next: done } }, next: done"), ""), false),
        ("a for_each expiry going somewhere", small(&task("for_each: { items: people, as: person }, outcomes: { ok: { label: 完成 } }, next: done, deadline: { period: 5日, on_expiry: { goto: done } }"), ""), false),
        ("a timer", small("  work: { kind: wait_timer, name: 等待, timer: { period: 5日, extend_on_rest_day: false }, next: done }", ""), true),
        ("a timer with on_expiry", small("  work: { kind: wait_timer, name: 等待, timer: { period: 5日, on_expiry: { goto: done } }, next: done }", ""), false),
        ("a notice from receipt", small("  work: { kind: notice, name: 通知, to: { variable: agency }, template: t, deadline: { period: 5日, from: receipt }, outcomes: { ok: { label: 已答复, next: done } } }", ""), true),
        ("a message wait at least", small("  work: { kind: wait_message, name: 等待, message: m, correlation: outcome, deadline: { period: 5日, bound: at_least }, next: done }", ""), false),
        ("a decision", small("  work: { kind: decision, name: 判断, branches: [{ when: outcome == 'a', goto: done }], default: done }", ""), true),
        ("a decision without default", small("  work: { kind: decision, name: 判断, branches: [{ when: outcome == 'a', goto: done }] }", ""), false),
        ("a decision without branches", small("  work: { kind: decision, name: 判断, branches: [], default: done }", ""), false),
        ("a parallel split of one", small("  work: { kind: parallel, name: 分支, branches: [done], join: done }", ""), false),
        ("an unknown kind", small("  work: { kind: finish, name: 结束, result: ok }", ""), false),
        ("a notification to the assignees", small(&task("outcomes: { ok: { label: 完成, next: done } }"), "notifications:\n  - { on: task_opened, step: work, to: [{ assignee: true }], channels: [email], template: t }"), true),
        ("`assignee: false`", small(&task("outcomes: { ok: { label: 完成, next: done } }"), "notifications:\n  - { on: task_opened, to: [{ assignee: false }], channels: [email], template: t }"), false),
        ("an instance event for a step", small(&task("outcomes: { ok: { label: 完成, next: done } }"), "notifications:\n  - { on: instance_started, step: work, to: [{ role: office }], channels: [email], template: t }"), false),
        ("an unknown event", small(&task("outcomes: { ok: { label: 完成, next: done } }"), "notifications:\n  - { on: task_closed, to: [{ role: office }], channels: [email], template: t }"), false),
        ("an unknown channel", small(&task("outcomes: { ok: { label: 完成, next: done } }"), "notifications:\n  - { on: task_opened, to: [{ role: office }], channels: [fax], template: t }"), false),
        ("an enum without values", small(&task("outcomes: { ok: { label: 完成, next: done } }"), "parameters:\n  kinds: { type: list<string>, default: [a] }"), true),
        ("a template with body and file", small(&task("outcomes: { ok: { label: 完成, next: done } }"), "documents:\n  d: { kind: 记录, title: 记录, template: t }").replace("t: { body: 请办理 }", "t: { body: 请办理, file: templates/t.hbs }"), false),
        ("a report into an unknown measure", small("  work: { kind: report, name: 统计, from: var.due, until: var.due, into: { sent: outcome }, next: done }", ""), false),
        ("a call that does not wait, with a result", small("  work: { kind: call, name: 调用, process: p, wait: false, result: outcome, next: done }", ""), false),
        ("a bad rule id", small(&task("outcomes: { ok: { label: 完成, next: done } }, rules: [xc-19]"), ""), false),
        ("a bad step id", small(&task("outcomes: { ok: { label: 完成, next: done } }").replace("  work:", "  办理:").replace("next: work", "next: 办理"), ""), false),
    ];
    let v = validator(&Kind::Process.schema());
    let mut wrong = Vec::new();
    for (what, text, valid) in &cases {
        let doc: Value =
            serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
        let schema_errors = errors(&v, &doc);
        let checker = definition::load_str("case.yaml", text, &definition::LoadContext::default());
        if schema_errors.is_empty() != *valid {
            wrong.push(format!(
                "{what}: the schema says {}: {schema_errors:?}",
                !valid
            ));
        }
        if checker.is_ok() != *valid {
            let d: Vec<String> = checker
                .err()
                .into_iter()
                .flatten()
                .map(|d| format!("{} {}", d.code, d.message))
                .collect();
            wrong.push(format!("{what}: duban says {}: {d:?}", !valid));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The fuzz inputs of the scenario reader and the directory import whose
/// fault is their shape are refused by the schema as by the reader, and
/// the valid ones pass both. (The others are faults no schema sees: a NUL,
/// a duplicate key, a date that does not exist.)
#[test]
fn scenario_and_directory_shapes_agree() {
    let fuzz = root().join("tests/data/fuzz");
    let cases = [
        ("scenario/minimal.yaml", Kind::Scenario, true),
        ("scenario/unknown_key.yaml", Kind::Scenario, false),
        ("scenario/two_kinds.yaml", Kind::Scenario, false),
        ("scenario/not_mapping.yaml", Kind::Scenario, false),
        ("scenario/null_steps.yaml", Kind::Scenario, false),
        ("directory/nulls.yaml", Kind::Directory, true),
        ("directory/not_lists.yaml", Kind::Directory, false),
    ];
    let mut wrong = Vec::new();
    for (file, kind, valid) in cases {
        let path = fuzz.join(file);
        let doc = read_yaml(&path);
        let schema_errors = errors(&validator(&kind.schema()), &doc);
        let reader_ok = match kind {
            Kind::Scenario => simulate::Scenario::read(&path).is_ok(),
            _ => directory_file::parse(&std::fs::read_to_string(&path).unwrap(), false).is_ok(),
        };
        if schema_errors.is_empty() != valid {
            wrong.push(format!(
                "{file}: the schema says {}: {schema_errors:?}",
                !valid
            ));
        }
        if reader_ok != valid {
            wrong.push(format!("{file}: the reader says {}", !valid));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Where the schema is knowingly stricter than duban: it types a scalar as
/// YAML does, so an unquoted number or `true` where the language expects
/// text is marked, though the loader reads every scalar as text. If duban
/// ever refuses these too, the schema and the docs can say so.
#[test]
fn unquoted_scalars_are_text_to_duban_only() {
    let text = small(
        "  work: { kind: task, name: 2024, assignee: { role: office }, outcomes: { ok: { label: true, next: done } } }",
        "",
    );
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let schema_errors = errors(&validator(&Kind::Process.schema()), &doc);
    assert!(!schema_errors.is_empty());
    let checker = definition::load_str("case.yaml", &text, &definition::LoadContext::default());
    assert!(checker.is_ok(), "{:?}", checker.err());
}
