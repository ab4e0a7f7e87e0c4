//! Fuzzing of two readers of the core (issue 12, item 3), asserting what
//! each promises, not merely that it does not panic:
//!
//! - the directory importer (`runtime::directory_file::parse`, YAML and
//!   CSV): any text, and the sample directories mutated line by line and
//!   character by character, is either imported — and then every field is
//!   free of control characters, every id present and unique, every email
//!   an address, every mobile 11 digits, every level 市级 or 县级 — or
//!   refused row by row, each error with a line inside the file and a
//!   one-line message that quotes no control character. A generated
//!   directory written as YAML or CSV reads back the same; a control
//!   character (CR-LF in an email …) or a non-address in any field of any
//!   row is refused at that row, naming the field.
//! - the period parser (`calendar::Period::from_str`): any text is a
//!   period of 1–9999 units or a refusal that lists the accepted forms or
//!   the range; numbers of any length are refusals, never a wrap; every
//!   form the docs list reads as written; every period reads back from how
//!   it is displayed. Counting any period from any day or instant of
//!   2025–2050, with any options, gives a deadline whose last day is a
//!   working day (hours aside), and its reminders come before it.
//!
//! The seed corpus is `tests/data/fuzz/directory/` (each file with the
//! result it must give in `NAME.expected`) and
//! `tests/data/fuzz/period/cases.txt`. Bounded by proptest's case count
//! (PROPTEST_CASES, default 256 per property), so CI runs it in seconds.
//!
//! Layout: this file holds what both share (the corpus folder, the
//! mutations); `directory.rs` (with `directory/gen.rs`, valid directories
//! generated and written as YAML or CSV) and `period.rs` the properties.

// An integration test's root resolves modules beside itself, hence the paths.
#[path = "fuzz_inputs/directory.rs"]
mod directory;
#[path = "fuzz_inputs/period.rs"]
mod period;

use std::path::PathBuf;

use proptest::prelude::*;

fn corpus(reader: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/fuzz")
        .join(reader)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What the importer refuses in any field (see `directory_file`).
fn has_control(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
}

// ---------------------------------------------------------------------------
// Mutations, as tests/fuzz_loader.rs makes them (a copy: that file belongs
// to another crate's tests).

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Insert(usize, usize, usize),
    Truncate(usize),
    Indent(usize, bool),
}

fn mutation(tokens: usize) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), any::<usize>(), 0..tokens).prop_map(|(l, c, t)| Mutation::Insert(l, c, t)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<bool>()).prop_map(|(a, b)| Mutation::Indent(a, b)),
    ]
}

fn mutate(text: &str, muts: &[Mutation], tokens: &[&str]) -> String {
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
                line.insert_str(at, tokens[*t]);
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
