//! The YAML source of a definition, with node positions.
//!
//! `serde_yaml` reports positions only for syntax and type errors; the
//! validator must also point at unknown steps, bad periods and unreachable
//! steps. So the text is read once into a span-preserving tree
//! (`marked-yaml`), and every later diagnostic is located by its document
//! path ([`Path`]) in that tree.

use std::fmt;

use marked_yaml::{LoaderOptions, Node};

use super::diagnostic::{Code, Diagnostic};

/// One segment of a document path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path inside a document, e.g. `steps.review.deadline.period`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path(pub Vec<Seg>);

impl Path {
    /// The empty path: the document itself.
    pub fn root() -> Self {
        Path(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, k: &str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    /// This path without its last segment.
    pub fn parent(&self) -> Path {
        let mut p = self.clone();
        p.0.pop();
        p
    }

    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// This path extended by a dotted relative path as serde-path writes it
    /// (`deadline.period`, `branches[1].goto`).
    pub fn join_dotted(&self, rel: &str) -> Path {
        let mut p = self.clone();
        for part in rel.split('.').filter(|s| !s.is_empty()) {
            let (name, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !name.is_empty() {
                p.0.push(Seg::Key(name.to_string()));
            }
            while let Some(end) = rest.find(']') {
                if let Ok(i) = rest[1..end].parse() {
                    p.0.push(Seg::Index(i));
                }
                rest = &rest[end + 1..];
            }
        }
        p
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A parsed file: its name, its text and its node tree.
pub struct Source {
    /// The file name as the user gave it.
    pub file: String,
    /// The text.
    pub text: String,
    /// The node tree; `None` when the text is not valid YAML.
    pub root: Option<Node>,
}

impl Source {
    /// Parses `text`. YAML errors (including duplicate keys) become
    /// diagnostics in `out`. A duplicate key does not stop the load: the
    /// text is read again permissively so the rest can still be checked.
    pub fn parse(file: &str, text: &str, out: &mut Vec<Diagnostic>) -> Source {
        use crate::yaml::Error as YamlError;
        let strict = LoaderOptions::default().error_on_duplicate_keys(true);
        let mut first_dup = None;
        let root = match crate::yaml::parse(text, strict) {
            Ok(node) => Some(node),
            Err(YamlError::Load(marked_yaml::LoadError::DuplicateKey(dup))) => {
                let m = dup.key.span().start().copied();
                let prev = dup.prev_key.span().start().copied();
                first_dup = prev.map(|p| (p.line(), p.column()));
                out.push(Diagnostic {
                    file: file.into(),
                    line: m.map_or(1, |m| m.line()),
                    column: m.map_or(1, |m| m.column()),
                    path: String::new(),
                    code: Code::DuplicateId,
                    message: format!("duplicate id `{}`", dup.key.as_str()),
                    hint: prev.map(|p| {
                        format!(
                            "`{}` is already defined at line {}; rename one of them",
                            dup.key.as_str(),
                            p.line()
                        )
                    }),
                });
                match crate::yaml::parse(text, LoaderOptions::default()) {
                    Ok(node) => Some(node),
                    Err(e @ YamlError::TooDeep { .. }) => {
                        out.push(too_deep(file, &e));
                        None
                    }
                    Err(_) => None,
                }
            }
            Err(YamlError::Load(e)) => {
                out.push(yaml_error(file, &e));
                None
            }
            Err(e @ YamlError::TooDeep { .. }) => {
                out.push(too_deep(file, &e));
                None
            }
        };
        let src = Source {
            file: file.into(),
            text: text.into(),
            root,
        };
        // Fill in the path of a duplicate-key diagnostic now that the tree
        // exists; the surviving key carries the first occurrence's position.
        if let (Some(d), Some((l, c))) = (
            out.last_mut().filter(|d| d.code == Code::DuplicateId),
            first_dup,
        ) {
            if let Some(p) = src.path_at(l, c) {
                d.path = p.to_string();
            }
        }
        src
    }

    /// Line and column of the value at `path`; when the path does not exist
    /// (a missing key), of the deepest node that does.
    pub fn locate(&self, path: &Path) -> (usize, usize) {
        self.find(path, false)
    }

    /// Line and column of `token` (a name inside the scalar at `path`: an
    /// expression's misspelt variable), when the scalar is written on its
    /// line and the name is found there as a whole word after the scalar's
    /// start; else the scalar's own start, as [`Source::locate`].
    /// `lines_down` looks that many lines below the scalar's first (line N
    /// of a block scalar's text), from its start.
    pub fn locate_token(&self, path: &Path, token: &str, lines_down: usize) -> (usize, usize) {
        let (first, first_column) = self.locate(path);
        let line = first + lines_down;
        let Some(text) = self.text.lines().nth(line.saturating_sub(1)) else {
            return (first, first_column);
        };
        // Below the first line, a block scalar's text starts at its indent.
        let column = if lines_down == 0 {
            first_column
        } else {
            text.chars().take_while(|c| *c == ' ').count() + 1
        };
        let chars: Vec<char> = text.chars().collect();
        let word: Vec<char> = token.chars().collect();
        if word.is_empty() {
            return (line, column);
        }
        let is_word = |c: char| c.is_alphanumeric() || c == '_';
        let start = column.saturating_sub(1);
        for at in start..chars.len().saturating_sub(word.len() - 1) {
            let fits = chars[at..at + word.len()] == word[..];
            let before = at == 0 || !is_word(chars[at - 1]);
            let after = chars.get(at + word.len()).is_none_or(|c| !is_word(*c));
            if fits && before && after {
                return (line, at + 1);
            }
        }
        (first, first_column)
    }

    /// Whether the scalar at `path` is a block scalar (`|` or `>`), whose
    /// text's lines are the file's lines below its key.
    pub fn is_block_scalar(&self, path: &Path) -> bool {
        let (line, _) = self.locate(path);
        line >= 2
            && self.text.lines().nth(line - 2).is_some_and(|l| {
                let l = l.trim_end();
                ["|", "|-", "|+", ">", ">-", ">+"]
                    .iter()
                    .any(|b| l.ends_with(&format!(" {b}")) || l.ends_with(&format!(":{b}")))
            })
    }

    /// Line and column of the *key* at the end of `path` (for unknown keys
    /// and duplicate ids); falls back like [`Source::locate`].
    pub fn locate_key(&self, path: &Path) -> (usize, usize) {
        self.find(path, true)
    }

    fn find(&self, path: &Path, want_key: bool) -> (usize, usize) {
        let Some(root) = &self.root else {
            return (1, 1);
        };
        let mut node = root;
        // Where to point when the path goes missing: the key of the deepest
        // entry reached (mapping start marks are less precise than keys).
        let mut best = mark(node);
        for (i, seg) in path.0.iter().enumerate() {
            let last = i + 1 == path.0.len();
            match (seg, node) {
                (Seg::Key(k), Node::Mapping(m)) => {
                    // A hashed lookup, not a scan: every diagnostic is
                    // located this way, and `steps` may have thousands of
                    // entries (issue 12, finding 10).
                    let Some((key, value)) = m.get_key_value(k.as_str()) else {
                        return best;
                    };
                    let key_mark = key.span().start().map_or(best, |m| (m.line(), m.column()));
                    if last && want_key {
                        return key_mark;
                    }
                    node = value;
                    best = match node {
                        Node::Scalar(_) => mark(node),
                        _ => key_mark,
                    };
                }
                (Seg::Index(n), Node::Sequence(s)) => match s.get(*n) {
                    Some(v) => {
                        node = v;
                        best = mark(node);
                    }
                    None => return best,
                },
                _ => return best,
            }
        }
        if matches!(node, Node::Scalar(_)) || path.0.is_empty() {
            mark(node)
        } else {
            best
        }
    }

    /// The deepest key path whose key starts at `line:column`, if any.
    fn path_at(&self, line: usize, column: usize) -> Option<Path> {
        fn walk(node: &Node, here: Path, line: usize, col: usize) -> Option<Path> {
            match node {
                Node::Mapping(m) => {
                    for (k, v) in m.iter() {
                        let p = here.key(k.as_str());
                        if k.span()
                            .start()
                            .is_some_and(|s| s.line() == line && s.column() == col)
                        {
                            return Some(p);
                        }
                        if let Some(found) = walk(v, p, line, col) {
                            return Some(found);
                        }
                    }
                    None
                }
                Node::Sequence(s) => s
                    .iter()
                    .enumerate()
                    .find_map(|(i, v)| walk(v, here.index(i), line, col)),
                Node::Scalar(_) => None,
            }
        }
        walk(self.root.as_ref()?, Path::root(), line, column)
    }

    /// A diagnostic located at the value of `path`.
    pub fn diag(
        &self,
        path: &Path,
        code: Code,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        let (line, column) = self.locate(path);
        self.diag_at(line, column, path, code, message, hint)
    }

    /// A diagnostic located at the key of `path`.
    pub fn diag_key(
        &self,
        path: &Path,
        code: Code,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        let (line, column) = self.locate_key(path);
        self.diag_at(line, column, path, code, message, hint)
    }

    /// A diagnostic at an explicit position.
    pub fn diag_at(
        &self,
        line: usize,
        column: usize,
        path: &Path,
        code: Code,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line,
            column,
            path: path.to_string(),
            code,
            message,
            hint,
        }
    }
}

fn mark(node: &Node) -> (usize, usize) {
    node.span()
        .start()
        .map_or((1, 1), |m| (m.line(), m.column()))
}

/// Nesting too deep to read (issue 12, finding 4): an E001 at the line
/// where it goes too deep.
fn too_deep(file: &str, e: &crate::yaml::Error) -> Diagnostic {
    let (line, column) = match e {
        crate::yaml::Error::TooDeep { line, column, .. } => (*line, *column),
        crate::yaml::Error::Load(_) => (1, 1),
    };
    Diagnostic {
        file: file.into(),
        line,
        column,
        path: String::new(),
        code: Code::YamlSyntax,
        message: e.to_string(),
        hint: Some(format!(
            "a process definition needs only a few levels; {}",
            crate::yaml::TOO_DEEP_HINT
        )),
    }
}

/// Turns a loader error into a diagnostic with the best position it offers.
fn yaml_error(file: &str, e: &marked_yaml::LoadError) -> Diagnostic {
    use marked_yaml::LoadError as E;
    let (m, message, hint): (Option<marked_yaml::Marker>, String, Option<String>) = match e {
        E::TopLevelMustBeMapping(m) => (
            Some(*m),
            "a process definition must be a mapping of keys (id, version, steps, …)".into(),
            Some("start the file with `id: my_process`".into()),
        ),
        E::TopLevelMustBeSequence(m) => (Some(*m), "expected a list at the top level".into(), None),
        E::UnexpectedAnchor(m) => (
            Some(*m),
            "YAML anchors (&name) are not supported in process definitions".into(),
            Some("write the value out in full".into()),
        ),
        E::MappingKeyMustBeScalar(m) => (
            Some(*m),
            "a mapping key must be a plain text, not a list or mapping".into(),
            None,
        ),
        E::UnexpectedTag(m) => (Some(*m), "YAML tags (!tag) are not supported".into(), None),
        E::ScanError(m, err) => (
            Some(*m),
            format!("YAML syntax error: {}", scan_message(err)),
            Some("check the indentation and the quoting on this line".into()),
        ),
        other => (None, format!("YAML error: {other}"), None),
    };
    let (line, column) = m.map_or((1, 1), |m| (m.line(), m.column()));
    Diagnostic {
        file: file.into(),
        line,
        column,
        path: String::new(),
        code: Code::YamlSyntax,
        message,
        hint,
    }
}

fn scan_message(err: &impl fmt::Display) -> String {
    // The scanner appends "at byte … line … column …"; we give our own position.
    let s = err.to_string();
    match s.find(" at byte ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths() {
        let p = Path::root()
            .key("steps")
            .join_dotted("review.branches[1].goto");
        assert_eq!(p.to_string(), "steps.review.branches[1].goto");
    }

    #[test]
    fn locates_values_and_keys() {
        let mut d = Vec::new();
        let s = Source::parse("f.yaml", "a:\n  b: 1\n  c:\n    - x\n    - y\n", &mut d);
        assert!(d.is_empty());
        let p = Path::root().key("a").key("c").index(1);
        assert_eq!(s.locate(&p), (5, 7));
        assert_eq!(s.locate_key(&Path::root().key("a").key("b")), (2, 3));
        // A missing key falls back to the key of its parent entry.
        assert_eq!(s.locate(&Path::root().key("a").key("zz")), (1, 1));
        assert_eq!(s.locate(&Path::root().key("a").key("c").key("zz")), (3, 3));
    }

    #[test]
    fn duplicate_keys_are_reported_and_loading_goes_on() {
        let mut d = Vec::new();
        let s = Source::parse("f.yaml", "steps:\n  a: 1\n  a: 2\n", &mut d);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].line, d[0].column, d[0].path.as_str()),
            (3, 3, "steps.a")
        );
        assert!(s.root.is_some());
    }
}
