//! The loader never panics, whatever it is given: random text, and the
//! library's own files mutated line by line and character by character.
//! Bounded by proptest's case count (PROPTEST_CASES, default 256 per test),
//! so it runs in CI in seconds.

use duban_engine::definition::{load_str, Code, LoadContext};
use duban_tests::{processes, yaml_files};
use proptest::prelude::*;

fn library_texts() -> Vec<String> {
    yaml_files(&processes())
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Fragments that are likely to hit interesting paths of the checker.
const TOKENS: &[&str] = &[
    "kind: task",
    "kind: decision",
    "kind: parallel",
    "kind: join",
    "kind: end",
    "next: ",
    "period: ",
    "5个工作日",
    "三十日",
    "profile.",
    "var.",
    "when: ",
    "&&",
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
    "&anchor",
    "*alias",
    "!tag",
    "~",
    "null",
    "0",
    "-1",
    "99999999999999999999",
    "钱",
    "\u{0}",
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
    Insert(usize, usize),
    Truncate(usize),
    Indent(usize, bool),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(a, t)| Mutation::Insert(a, t)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<bool>()).prop_map(|(a, b)| Mutation::Indent(a, b)),
    ]
}

fn apply(text: &str, muts: &[Mutation]) -> String {
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
            Mutation::Insert(i, t) => {
                let line = &mut lines[i % n];
                let at = line
                    .char_indices()
                    .map(|(k, _)| k)
                    .nth(i % (line.chars().count() + 1))
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

proptest! {
    #[test]
    fn random_text_never_panics(text in "\\PC{0,400}") {
        let _ = load_str("random.yaml", &text, &LoadContext::default());
    }

    #[test]
    fn random_yamlish_text_never_panics(parts in proptest::collection::vec(0..TOKENS.len(), 0..60)) {
        let text: String = parts.iter().map(|i| TOKENS[*i]).collect::<Vec<_>>().join("\n");
        let _ = load_str("tokens.yaml", &text, &LoadContext::default());
    }

    #[test]
    fn mutated_library_files_never_panic(which in any::<usize>(), muts in proptest::collection::vec(mutation(), 1..8)) {
        let texts = library_texts();
        let text = apply(&texts[which % texts.len()], &muts);
        let ctx = LoadContext { base_dir: Some(processes()), ..Default::default() };
        let _ = load_str("mutated.yaml", &text, &ctx);
    }

    /// Issue 12, finding 4: nesting far deeper than duban reads, in any mix
    /// of block dashes, ever deeper lines and keys, then flow brackets, is
    /// an E001 diagnostic, never a stack overflow (which aborts the run).
    #[test]
    fn deep_nesting_is_an_e001_never_a_crash(
        block in proptest::collection::vec(0..3usize, 300..3000),
        flow in 0..400usize,
    ) {
        let mut text = String::from("id: p\nversion: 1\nsteps:\n  a:\n    ");
        let mut col = 4;
        for b in block {
            // Each piece nests one level deeper, and the text stays valid.
            match b {
                0 => {
                    text.push_str("- ");
                    col += 2;
                }
                1 => text.push_str(&format!("\n{}- ", " ".repeat(col))),
                _ => {
                    text.push_str(&format!("k:\n{}", " ".repeat(col + 2)));
                    col += 2;
                }
            }
            if b == 1 {
                col += 2;
            }
        }
        text.push_str(&"[".repeat(flow));
        let d = load_str("deep.yaml", &text, &LoadContext::default()).unwrap_err();
        prop_assert!(d.iter().any(|d| d.code == Code::YamlSyntax), "{:?}", d);
    }
}
