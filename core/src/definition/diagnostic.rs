//! Diagnostics: what is wrong in a definition, where, and what to do.
//!
//! Every problem the loader finds becomes one [`Diagnostic`] with a stable
//! [`Code`] (`E001`…`E041`, listed in docs/process-language.md), the file,
//! 1-based line and column, the path inside the document
//! (`steps.await_reply.deadline.period`), a plain message and, where one
//! helps, a hint. The loader collects them all instead of stopping at the
//! first, so an administrator fixes a file in one pass.

use std::fmt;

use serde::Serialize;

/// The kinds of problem the validator reports. The code (`E006`) is stable:
/// documentation and scripts may rely on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Code {
    /// The text is not valid YAML (or uses anchors, which are not supported).
    YamlSyntax,
    /// A key that the language does not have at this place.
    UnknownKey,
    /// A key that must be present is missing.
    MissingKey,
    /// A value has the wrong type (a list where a text is expected, …).
    WrongType,
    /// The same id appears twice.
    DuplicateId,
    /// A reference to a step that does not exist.
    UnknownStep,
    /// A reference to a role that the definition does not declare.
    UnknownRole,
    /// A reference to a variable that the definition does not declare.
    UnknownVariable,
    /// A reference to a template that the definition does not declare.
    UnknownTemplate,
    /// A reference to a profile parameter that is not declared.
    UnknownParameter,
    /// A step that no path from the start reaches.
    UnreachableStep,
    /// A step from which no path leads to an end.
    NoPathToEnd,
    /// A decision without a default branch.
    DecisionWithoutDefault,
    /// A period that cannot be read.
    BadPeriod,
    /// A cron expression that cannot be read.
    BadCron,
    /// A CEL expression that does not parse.
    CelSyntax,
    /// A CEL expression naming an undeclared variable.
    CelUnknownVariable,
    /// An assignee minimum that the assignee can never meet.
    AssigneeMinimum,
    /// An id that is not a valid identifier.
    BadId,
    /// A reference to a document that is not declared.
    UnknownDocument,
    /// A reference to a profile that is not declared.
    UnknownProfile,
    /// A profile lacks a value for a parameter that has no default.
    MissingParameterValue,
    /// A value that is not valid for its declared type.
    BadValue,
    /// A reference to another process that is not in the library.
    UnknownProcess,
    /// A parallel split whose branches do not meet at its join.
    BadParallel,
    /// A rule id that is not of the form `XC-19` or `SQ-19(二)`.
    BadRuleId,
    /// A template file that cannot be read.
    MissingFile,
    /// A variable used where another type is required (e.g. a deadline from a text).
    TypeMismatch,
    /// A template that is not valid handlebars.
    TemplateSyntax,
    /// A `call` leaves out a variable the called process requires.
    CallMissingInput,
    /// A `call` input names a variable the called process does not declare.
    CallUnknownInput,
    /// A `call`'s `result:` variable cannot hold the called process's end
    /// results (an enum lacking one, or a type other than text or enum).
    CallResultType,
    /// A condition (`when:`, a guard's `check:`) that does not give a bool.
    NotBoolean,
    /// A computed value (`set:`, a `call` input) whose type does not fit the
    /// variable it is stored in.
    ValueTypeMismatch,
    /// A CEL expression that fails on values of the declared types (an
    /// operator or function given types it does not take).
    CelTypeError,
    /// A key the runtime does not carry out: not supported yet, or without
    /// effect at this place.
    NotSupported,
    /// A CEL expression that may cost too much to evaluate: longer, nested
    /// deeper or with a worst-case cost higher than `definition::cost`
    /// allows.
    CelTooCostly,
    /// A `for_each` that cannot run as written: over a non-list, an `as`
    /// variable of another type than the items, a `collect` of an outcome
    /// or field the step lacks, an outcome `next` inside it.
    ForEach,
    /// A `send_message` of a message no process of the library waits for.
    UnknownMessage,
    /// A `record:` about something that is not a person or agency
    /// variable, a value that is not a text, int or bool, a fact function
    /// given a name that is not a literal text.
    FactMisuse,
    /// A fact read that no process of the library records.
    UnknownFact,
}

impl Code {
    /// The stable code, e.g. `E006`.
    pub fn as_str(self) -> &'static str {
        use Code::*;
        match self {
            YamlSyntax => "E001",
            UnknownKey => "E002",
            MissingKey => "E003",
            WrongType => "E004",
            DuplicateId => "E005",
            UnknownStep => "E006",
            UnknownRole => "E007",
            UnknownVariable => "E008",
            UnknownTemplate => "E009",
            UnknownParameter => "E010",
            UnreachableStep => "E011",
            NoPathToEnd => "E012",
            DecisionWithoutDefault => "E013",
            BadPeriod => "E014",
            BadCron => "E015",
            CelSyntax => "E016",
            CelUnknownVariable => "E017",
            AssigneeMinimum => "E018",
            BadId => "E019",
            UnknownDocument => "E020",
            UnknownProfile => "E021",
            MissingParameterValue => "E022",
            BadValue => "E023",
            UnknownProcess => "E024",
            BadParallel => "E025",
            BadRuleId => "E026",
            MissingFile => "E027",
            TypeMismatch => "E028",
            TemplateSyntax => "E029",
            CallMissingInput => "E030",
            CallUnknownInput => "E031",
            CallResultType => "E032",
            NotBoolean => "E033",
            ValueTypeMismatch => "E034",
            CelTypeError => "E035",
            NotSupported => "E036",
            CelTooCostly => "E037",
            ForEach => "E038",
            UnknownMessage => "E039",
            FactMisuse => "E040",
            UnknownFact => "E041",
        }
    }

    /// Whether the check came after definitions may have been deployed
    /// without it (the call, type, no-effect and cost checks): a stored
    /// definition is reloaded without them ([`super::LoadContext::deployed`]).
    pub fn added_after_deploys(self) -> bool {
        use Code::*;
        matches!(
            self,
            CallMissingInput
                | CallUnknownInput
                | CallResultType
                | NotBoolean
                | ValueTypeMismatch
                | CelTypeError
                | NotSupported
                | CelTooCostly
        )
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, as the user named it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The path inside the document, e.g. `steps.review.deadline.period`;
    /// empty for the document itself.
    pub path: String,
    /// The stable code of the problem kind.
    #[serde(serialize_with = "code_str")]
    pub code: Code,
    /// What is wrong, in one sentence.
    pub message: String,
    /// What to do about it, when the validator can tell.
    pub hint: Option<String>,
}

fn code_str<S: serde::Serializer>(c: &Code, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.as_str())
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error[{}]: {}",
            self.file, self.line, self.column, self.code, self.message
        )?;
        if !self.path.is_empty() {
            write!(f, "\n  at: {}", self.path)?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl Diagnostic {
    /// Renders the diagnostic with the offending source line and a caret.
    pub fn render(&self, source: &str) -> String {
        let mut out = self.to_string();
        if let Some(line) = source.lines().nth(self.line.saturating_sub(1)) {
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret_pad: String = line
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!(
                "\n{pad} |\n{gutter} | {line}\n{pad} | {caret_pad}^"
            ));
        }
        out
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a
/// plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.chars().count() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A hint for an unknown name: "did you mean `x`?", or the list of known names.
pub fn suggest<'a>(word: &str, what: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    // `process` → `processes`, `role` → `roles`.
    let whats = if what.ends_with('s') {
        format!("{what}es")
    } else {
        format!("{what}s")
    };
    match closest(word, known.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None if known.is_empty() => format!("no {what} is declared"),
        None if known.len() <= 12 => format!("known {whats}: {}", known.join(", ")),
        None => format!(
            "declare it, or use one of the {} known {whats}",
            known.len()
        ),
    }
}
