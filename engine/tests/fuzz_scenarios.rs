//! Fuzzing of the scenario reader (`simulate::Scenario::read`, issue 12,
//! item 3), asserting what it promises, not merely that it does not panic:
//! any text, and the scenarios of the library and of the tests mutated
//! line by line and character by character, is either read or refused with
//! a `ScenarioError` that names the file, a line inside it and, in one
//! line, what is wrong. The mutated scenarios that read are also run (an
//! eighth of the case count: each run deploys a folder of definitions),
//! and a run either reports its checks, each at a line of the file, or
//! refuses the same way.
//!
//! The seed corpus is `tests/data/fuzz/scenario/` (each file with the
//! result it must give in `NAME.expected`). Bounded by proptest's case
//! count (PROPTEST_CASES, default 256 per property, 32 for the runs), so
//! CI runs it in seconds.

use std::path::{Path, PathBuf};

use duban_engine::calendar::Calendar;
use duban_engine::simulate::{NoDocuments, Scenario, ScenarioError};
use proptest::prelude::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn corpus() -> PathBuf {
    root().join("tests/data/fuzz/scenario")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// The scenario files to mutate, with `definition:` and `directory:` made
/// absolute, so that the mutated text, written elsewhere, still finds them.
fn seeds() -> Vec<String> {
    let mut files = yaml_files(&root().join("tests/data/sim/scenarios"));
    files.extend(
        yaml_files(&root().join("processes/scenarios"))
            .into_iter()
            .filter(|f| !f.ends_with("directory.yaml")),
    );
    files.extend(yaml_files(&corpus()));
    assert!(files.len() >= 8, "{files:?}");
    files.iter().map(|f| absolute(f)).collect()
}

fn absolute(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let dir = file.parent().unwrap().canonicalize().unwrap();
    text.lines()
        .map(|l| {
            for key in ["definition: ", "directory: "] {
                if let Some(rel) = l.strip_prefix(key) {
                    if !rel.starts_with('/') && !rel.trim().is_empty() {
                        return format!("{key}{}", dir.join(rel.trim()).display());
                    }
                }
            }
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `s` holds a character that would break a message's one line or
/// move a terminal's cursor.
fn has_control(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// Lines as YAML counts them (CR-LF, LF or CR alone end one).
fn lines(text: &str) -> usize {
    1 + text.replace("\r\n", "\n").matches(['\n', '\r']).count()
}

/// A refusal names the file and a line of it (or the one after the last,
/// for what the text lacks at its end), and says in one line what is wrong
/// — or, for a run, in lines (it may quote the definition's diagnostic).
fn check_refusal(
    e: &ScenarioError,
    path: &Path,
    text: &str,
    run: bool,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(&e.file, &path.display().to_string());
    let n = lines(text);
    prop_assert!(
        (1..=n + 1).contains(&e.line),
        "line {} outside 1..={n}+1: {e}",
        e.line
    );
    prop_assert!(!e.message.trim().is_empty(), "{e:?}");
    let message = if run {
        e.message.replace('\n', " ")
    } else {
        e.message.clone()
    };
    prop_assert!(!has_control(&message), "a control character: {e:?}");
    Ok(())
}

/// Writes `text` as a scenario file and reads it; a refusal must keep the
/// promise of [`check_refusal`].
fn read(text: &str) -> Result<(tempfile::TempDir, Option<Scenario>), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.yaml");
    std::fs::write(&path, text).unwrap();
    match Scenario::read(&path) {
        Ok(s) => Ok((dir, Some(s))),
        Err(e) => {
            check_refusal(&e, &path, text, false)?;
            Ok((dir, None))
        }
    }
}

/// Runs a scenario that was read; its checks are at lines of the file, or
/// it is refused as [`check_refusal`] says.
fn run(dir: &Path, sc: &Scenario, text: &str) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(sc.run(None, None, Calendar::builtin(), &NoDocuments));
    match out {
        Ok(report) => {
            let n = lines(text);
            for c in &report.checks {
                prop_assert!((1..=n).contains(&c.line), "check at line {}: {c:?}", c.line);
                prop_assert!(!c.expected.is_empty(), "{c:?}");
            }
        }
        Err(e) => check_refusal(&e, &dir.join("scenario.yaml"), text, true)?,
    }
    Ok(())
}

/// Fragments likely to reach the reader's checks.
const TOKENS: &[&str] = &[
    "steps:",
    "- at: 2025-09-26T10:00:00+08:00",
    "at: ",
    "advance: ",
    "start: { as: li }",
    "complete: { step: x, outcome: y }",
    "receive: { step: x }",
    "message: { name: m, key: k }",
    "cancel: {}",
    "expect: { status: running }",
    "expect: { error: x }",
    "instance: ",
    "variables: { a: 1 }",
    "2025-02-30",
    "2025-13-01",
    "0000-01-01",
    "-0001-01-01",
    "+200000-01-01",
    "9999-12-31T23:59:59+08:00",
    "T24:00:00",
    "+23:59",
    "Z",
    "definition: ",
    "profile: ",
    "directory: ",
    "/nonexistent.yaml",
    "name: ",
    "times: -1",
    "times: 99999999999999999999",
    "count: 1",
    "[",
    "]",
    "{",
    "}",
    ":",
    "- ",
    "  ",
    "\t",
    "\"",
    "'",
    "#",
    "&a",
    "*a",
    "!tag",
    "~",
    "null",
    "\u{0}",
    "\u{1b}[2J",
    "\r",
    "\u{2028}",
    "\u{feff}",
    "---",
    "...",
    "? ",
    "|",
    ">",
];

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Insert(usize, usize, usize),
    Truncate(usize),
    Indent(usize, bool),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), any::<usize>(), 0..TOKENS.len())
            .prop_map(|(l, c, t)| Mutation::Insert(l, c, t)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<bool>()).prop_map(|(a, b)| Mutation::Indent(a, b)),
    ]
}

/// Mutates `text` as tests/fuzz_loader.rs does (a copy: that file belongs
/// to another crate's tests).
fn mutate(text: &str, muts: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in muts {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
            Mutation::Insert(i, c, t) => {
                let line = &mut lines[i % n];
                let at = line
                    .char_indices()
                    .map(|(k, _)| k)
                    .nth(c % (line.chars().count() + 1))
                    .unwrap_or(line.len());
                line.insert_str(at, TOKENS[*t]);
            }
            Mutation::Truncate(i) => {
                let line = &mut lines[i % n];
                let keep = line.chars().count() / 2;
                *line = line.chars().take(keep).collect();
            }
            Mutation::Indent(i, more) => {
                let line = &mut lines[i % n];
                if *more {
                    line.insert_str(0, "  ");
                } else if line.starts_with("  ") {
                    line.drain(..2);
                }
            }
        }
    }
    lines.join("\n")
}

fn runs() -> ProptestConfig {
    let cases = ProptestConfig::default().cases;
    ProptestConfig::with_cases((cases / 8).max(1))
}

proptest! {
    #[test]
    fn any_text_is_read_or_refused_at_a_line(text in "\\PC{0,300}") {
        read(&text)?;
    }

    #[test]
    fn scenario_fragments_are_read_or_refused_at_a_line(
        parts in prop::collection::vec(0..TOKENS.len(), 0..40),
    ) {
        let text: String = parts.iter().map(|i| TOKENS[*i]).collect::<Vec<_>>().join("\n");
        read(&text)?;
    }

    #[test]
    fn mutated_scenarios_are_read_or_refused_at_a_line(
        which in any::<usize>(),
        muts in prop::collection::vec(mutation(), 1..8),
    ) {
        let seeds = seeds();
        read(&mutate(&seeds[which % seeds.len()], &muts))?;
    }
}

proptest! {
    #![proptest_config(runs())]

    #[test]
    fn mutated_scenarios_run_or_are_refused_at_a_line(
        which in any::<usize>(),
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        let seeds = seeds();
        let text = mutate(&seeds[which % seeds.len()], &muts);
        if let (dir, Some(sc)) = read(&text)? {
            run(dir.path(), &sc, &text)?;
        }
    }
}

/// Every file of the scenario corpus gives the result its `.expected`
/// file states: the refusal `line N: message`, or `read` and then what the
/// run gave, `ran: checks N, failed M` or `refused: line N: message`.
#[test]
fn the_scenario_corpus_gives_its_results() {
    let mut wrong = Vec::new();
    for f in yaml_files(&corpus()) {
        let text = std::fs::read_to_string(&f).unwrap();
        let want = std::fs::read_to_string(f.with_extension("expected"))
            .unwrap_or_else(|e| panic!("{}: {e}", f.with_extension("expected").display()));
        let got = match Scenario::read(&f) {
            Err(e) => {
                if let Err(x) = check_refusal(&e, &f, &text, false) {
                    wrong.push(format!("{}: {x}", f.display()));
                }
                format!("line {}: {}", e.line, e.message)
            }
            Ok(sc) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                match rt.block_on(sc.run(None, None, Calendar::builtin(), &NoDocuments)) {
                    Ok(r) => format!(
                        "read\nran: checks {}, failed {}",
                        r.checks.len(),
                        r.checks.iter().filter(|c| c.found.is_some()).count()
                    ),
                    Err(e) => {
                        if let Err(x) = check_refusal(&e, &f, &text, true) {
                            wrong.push(format!("{}: {x}", f.display()));
                        }
                        format!("read\nrefused: line {}: {}", e.line, e.message)
                    }
                }
            }
        };
        if got != want.trim_end() {
            wrong.push(format!("{}:\n{got}\nexpected:\n{want}", f.display()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
