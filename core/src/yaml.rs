//! Reading YAML whose shape nobody has checked yet.
//!
//! Every YAML text duban reads — definitions, the directory, scenarios,
//! variable files, year schedules — may come from anyone who can write a
//! file. The parser under `marked-yaml` (yaml-rust2) descends one stack
//! frame per nesting level, and so does everything that walks the tree or
//! deserialises it afterwards: 60 KB of `- - - …` overflowed the stack and
//! aborted the process, taking `serve`, `deploy` and the check of every
//! other file with it (issue 12, finding 4). Its flow style is bounded by
//! the parser itself (256 brackets), its block style is not, and neither
//! crate offers a depth limit.
//!
//! So [`parse`] bounds the text before and after the parser:
//!
//! 1. A pre-scan bounds the *block* depth from the text alone. Every block
//!    mapping or sequence the parser opens starts at a column where a line
//!    may start a node: the line's first character, or the one after a
//!    leading `- `, `? ` or `: ` indicator (`- - key: x` has three). Open
//!    block collections have strictly increasing columns, two at most on
//!    one column (a sequence that is a mapping's value may share its
//!    column), so the number of distinct such columns in the whole text
//!    bounds the block depth. A text using more than [`MAX_COLUMNS`] of
//!    them is refused before it is parsed. This over-counts (lines inside
//!    block scalars count too) and never under-counts, so it is safe; the
//!    library's definitions use at most seven. (The tokens that may open a
//!    block collection, and where, are yaml-rust2's `roll_indent` calls:
//!    a `-` or `?` or `:` indicator, or a simple key, all only where a
//!    simple key is allowed: at a line's start or after such an indicator.)
//! 2. The parser refuses flow nesting beyond 255 levels itself; that error
//!    is reported as nesting too.
//! 3. The parsed tree is measured exactly, without recursion, and a
//!    mapping or sequence deeper than [`MAX_DEPTH`] is refused at its line
//!    and column, before anything else descends into it.
//!
//! Readers that use `serde_yaml` (whose parser does not recurse, but whose
//! scanner rechecks every pending key at every token, so its time grows
//! with the square of the nesting: a 100,000-deep JSON took 24 s to
//! refuse) call [`check_depth`] first. Neither parser offers an event
//! stream here without a new dependency (yaml-rust2's parser is not
//! re-exported by marked-yaml), hence the pre-scan.

use std::collections::BTreeSet;
use std::fmt;

use marked_yaml::{LoadError, LoaderOptions, Node};

/// The deepest nesting of mappings and sequences duban reads (the document
/// itself is level 1). A process definition needs about eight; serde_json
/// refuses 128 when a stored state is read back.
pub const MAX_DEPTH: usize = 64;

/// The most distinct node-starting columns a text may use (see the module
/// documentation). Block
/// depth stays under `2 × 32 + 1`, which, with the parser's own 255 flow
/// levels (510 frames when each holds an implicit mapping), the parser
/// and the tree's drop take on a 2 MiB thread stack even in a debug build.
pub const MAX_COLUMNS: usize = 32;

/// Why a YAML text was not read.
#[derive(Debug)]
pub enum Error {
    /// Nested deeper than duban reads.
    TooDeep {
        /// 1-based line where the nesting goes too deep.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was found, in a few words.
        why: String,
    },
    /// The parser's own error (syntax, anchors, tags, …).
    Load(LoadError),
}

impl Error {
    /// The 1-based line the error is at, when it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::TooDeep { line, .. } => Some(*line),
            Error::Load(e) => load_marker(e).map(|m| m.line()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooDeep { why, .. } => write!(f, "{why}"),
            Error::Load(e) => write!(f, "{e}"),
        }
    }
}

/// The hint every reader gives with [`Error::TooDeep`].
pub const TOO_DEEP_HINT: &str =
    "look for a long run of `- - -`, ever deeper indentation, or unclosed `[` and `{`";

/// Parses `text` into a node tree, refusing nesting deeper than
/// [`MAX_DEPTH`] before the parser or anything after it can overflow the
/// stack.
pub fn parse(text: &str, options: LoaderOptions) -> Result<Node, Error> {
    prescan(text)?;
    let node = marked_yaml::parse_yaml_with_options(0, text, options).map_err(from_load)?;
    measure(&node)?;
    Ok(node)
}

/// Whether `text` is nested no deeper than [`MAX_DEPTH`], for a reader that
/// parses it with another parser (`serde_yaml`). A syntax error is
/// returned too (that parser could otherwise go on through what this one
/// stopped at); what the node tree does not support (anchors, tags, a
/// top-level scalar) is no concern here and passes.
pub fn check_depth(text: &str) -> Result<(), Error> {
    match parse(text, LoaderOptions::default()) {
        Ok(_) | Err(Error::Load(LoadError::DuplicateKey(_))) => Ok(()),
        Err(e @ (Error::TooDeep { .. } | Error::Load(LoadError::ScanError(..)))) => Err(e),
        // The whole text was scanned, so its flow nesting is within the
        // parser's bound and its block nesting within the pre-scan's.
        Err(Error::Load(_)) => Ok(()),
    }
}

fn load_marker(e: &LoadError) -> Option<marked_yaml::Marker> {
    use LoadError as E;
    match e {
        E::TopLevelMustBeMapping(m)
        | E::TopLevelMustBeSequence(m)
        | E::UnexpectedAnchor(m)
        | E::MappingKeyMustBeScalar(m)
        | E::UnexpectedTag(m)
        | E::ScanError(m, _) => Some(*m),
        E::DuplicateKey(d) => d.key.span().start().copied(),
    }
}

/// The parser's own bound on flow nesting, said as nesting.
fn from_load(e: LoadError) -> Error {
    match &e {
        LoadError::ScanError(m, se) if se.info() == "recursion limit exceeded" => Error::TooDeep {
            line: m.line(),
            column: m.column(),
            why: "nested too deeply: more than 255 levels of `[` and `{`".into(),
        },
        _ => Error::Load(e),
    }
}

/// Step 1: the distinct columns at which the text's lines may start a node.
fn prescan(text: &str) -> Result<(), Error> {
    let mut columns = BTreeSet::new();
    // yaml-rust2 breaks lines at `\n` and `\r` (`\r\n` is one break).
    for (i, line) in text.split(['\n', '\r']).enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut col = 0;
        loop {
            while chars.get(col).is_some_and(|c| *c == ' ' || *c == '\t') {
                col += 1;
            }
            match chars.get(col) {
                None | Some('#') => break,
                Some(_) => {}
            }
            if columns.insert(col) && columns.len() > MAX_COLUMNS {
                return Err(Error::TooDeep {
                    line: i + 1,
                    column: col + 1,
                    why: format!(
                        "nested too deeply: nodes are indented to more than {MAX_COLUMNS} different columns"
                    ),
                });
            }
            let indicator = matches!(chars[col], '-' | '?' | ':')
                && chars
                    .get(col + 1)
                    .is_none_or(|c| matches!(c, ' ' | '\t' | '\0'));
            if !indicator {
                break;
            }
            col += 1;
        }
    }
    Ok(())
}

/// Step 3: the exact depth of the tree, measured with a stack of its own.
fn measure(root: &Node) -> Result<(), Error> {
    let mut todo: Vec<(&Node, usize)> = vec![(root, 1)];
    while let Some((node, depth)) = todo.pop() {
        let children: Vec<&Node> = match node {
            Node::Scalar(_) => continue,
            Node::Mapping(m) => m.values().collect(),
            Node::Sequence(s) => s.iter().collect(),
        };
        if depth > MAX_DEPTH {
            let (line, column) = node
                .span()
                .start()
                .map_or((1, 1), |m| (m.line(), m.column()));
            return Err(Error::TooDeep {
                line,
                column,
                why: format!("nested too deeply: more than {MAX_DEPTH} levels"),
            });
        }
        // In reverse, so the first too-deep node in document order is found.
        todo.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(text: &str) -> Option<(usize, usize)> {
        match parse(text, LoaderOptions::default()) {
            Err(Error::TooDeep { line, column, .. }) => Some((line, column)),
            Err(e) => panic!("{e}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn the_depth_limit_is_exact_for_ordinary_text() {
        // MAX_DEPTH levels: the document and MAX_DEPTH - 1 nested lists.
        let ok = format!(
            "a: {}1{}\n",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert_eq!(depth_error(&ok), None);
        let deep = format!("a: {}1{}\n", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(depth_error(&deep), Some((1, 3 + MAX_DEPTH)));
    }

    #[test]
    fn the_prescan_counts_columns_not_lines() {
        // Thousands of lines at a few columns are fine.
        let wide = format!("x:\n{}", "  - b: 1\n    c: [1, 2]\n".repeat(5_000));
        assert_eq!(depth_error(&wide), None);
        // A line of dashes opens a column per dash; the first one too many
        // is reported.
        let dashes = format!("a:\n  {}x\n", "- ".repeat(MAX_COLUMNS));
        assert_eq!(depth_error(&dashes), Some((2, 2 * MAX_COLUMNS + 1)));
        // Block-scalar content is counted (over-counting is safe), comments
        // and blank lines are not.
        let lines: String = (0..MAX_COLUMNS)
            .map(|i| format!("{}# {i}\n\n", " ".repeat(i)))
            .collect();
        assert_eq!(depth_error(&format!("a: 1\n{lines}")), None);
    }

    #[test]
    fn the_parsers_flow_limit_is_reported_as_nesting() {
        let text = format!("a: {}\n", "[".repeat(60_000));
        match parse(&text, LoaderOptions::default()) {
            Err(Error::TooDeep { line: 1, why, .. }) => assert!(why.contains("255"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn check_depth_passes_what_only_the_tree_refuses() {
        assert!(check_depth("a: &x 1\nb: *x\n").is_ok());
        assert!(check_depth("just a scalar").is_ok());
        assert!(matches!(
            check_depth(&format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000))),
            Err(Error::TooDeep { .. })
        ));
        assert!(matches!(check_depth("a: [1\n"), Err(Error::Load(_))));
    }

    /// The deepest texts the pre-scan and the parser let through — two
    /// block levels on each of 32 columns, then 255 flow levels (each with
    /// an implicit mapping, which the parser descends into too) — are
    /// parsed and refused on a 2 MiB stack (a test thread's, a tokio
    /// worker's) in a debug build.
    #[test]
    fn the_worst_case_the_bounds_let_through_fits_a_small_stack() {
        let mut block = String::new();
        let last = MAX_COLUMNS / 2 - 1;
        for i in 0..last {
            let (a, b) = (" ".repeat(4 * i), " ".repeat(4 * i + 2));
            block.push_str(&format!("{a}k:\n{a}- k:\n{b}- \n"));
        }
        let a = " ".repeat(4 * last);
        block.push_str(&format!("{a}k:\n{a}- k: "));
        let lists = format!("{}1{}\n", "[".repeat(255), "]".repeat(255));
        let keyed = format!("{}1]{}\n", "[".repeat(255), ": 1]".repeat(254));
        let on_small_stack = |text: String| {
            std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || parse(&text, LoaderOptions::default()).map(|_| ()))
                .unwrap()
                .join()
                .unwrap()
        };
        // Refused by the exact measure, so the parser took it all.
        match on_small_stack(format!("{block}{lists}")) {
            Err(Error::TooDeep { why, .. }) => {
                assert_eq!(
                    why,
                    format!("nested too deeply: more than {MAX_DEPTH} levels")
                )
            }
            other => panic!("{other:?}"),
        }
        // The loader refuses the keys, after the parser went all the way down.
        match on_small_stack(format!("{block}{keyed}")) {
            Err(Error::Load(LoadError::MappingKeyMustBeScalar(_))) => {}
            other => panic!("{other:?}"),
        }
    }
}
