//! Strict templates: every name a template reads must exist.
//!
//! A template may read the process's variables and the names the
//! notification dispatcher provides ([`BUILTINS`]). A misspelt name would
//! otherwise render as a blank in a message that an agency receives, so it
//! is a validation error, reported with the template's own line.

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::Path as HbPath;

/// Names every template may read besides the process's variables: the
/// context the dispatcher renders with (see docs/process-language.md).
pub const BUILTINS: &[&str] = &[
    "process",
    "instance",
    "task",
    "step",
    "deadline",
    "assignee",
    "recipient",
    "answer_link",
    "today",
    "now",
    "profile",
];

/// The helpers of the handlebars language; their names are not variables.
const HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "log", "eq", "ne", "gt", "gte", "lt", "lte", "and",
    "or", "not", "len",
];

/// A name a template reads, with its 1-based line in the template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameUse {
    /// The line.
    pub line: usize,
    /// The root name (`task` for `task.name`).
    pub name: String,
}

/// Why a template does not parse: where, and why in words of our own. The
/// parser's message is not passed on: it shows the lines around the error,
/// and a template file may be any file (issue 12, finding 5: lines of
/// `/etc/shadow` appeared in one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line and column, when the parser gives them.
    pub at: Option<(usize, usize)>,
    /// What is wrong, quoting nothing of the template.
    pub reason: &'static str,
}

/// The root names a template reads outside `#each`/`#with` blocks, or why
/// it does not parse.
pub fn names(source: &str) -> Result<Vec<NameUse>, SyntaxError> {
    use handlebars::TemplateErrorReason as R;
    let t = Template::compile(source).map_err(|e| SyntaxError {
        at: e.pos(),
        reason: match e.reason() {
            R::MismatchingClosedHelper(..) => {
                "a block is closed with another name than the one it was opened with"
            }
            R::MismatchingClosedDecorator(..) => {
                "a decorator block is closed with another name than the one it was opened with"
            }
            R::InvalidSyntax(_) => "invalid handlebars syntax",
            R::InvalidParam(_) => "a helper is given a parameter it cannot read",
            R::NestedSubexpression => "nested subexpressions are not supported",
            _ => "it is not a handlebars template",
        },
    })?;
    let mut out = Vec::new();
    walk(&t, 1, &mut out);
    Ok(out)
}

fn walk(t: &Template, fallback_line: usize, out: &mut Vec<NameUse>) {
    for (i, e) in t.elements.iter().enumerate() {
        let line = t.mapping.get(i).map_or(fallback_line, |m| m.0);
        match e {
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                helper(h, line, out, false)
            }
            TemplateElement::HelperBlock(h) => helper(h, line, out, true),
            _ => {}
        }
    }
}

fn helper(h: &HelperTemplate, line: usize, out: &mut Vec<NameUse>, block: bool) {
    let helper_name = match &h.name {
        Parameter::Name(n) => Some(n.as_str()),
        _ => None,
    };
    match helper_name {
        Some(n) if HELPERS.contains(&n) => {}
        // `{{answer_link}}`: a bare name with no parameters reads a value.
        Some(n) if h.params.is_empty() && !block => push(n, line, out),
        Some(_) => {}
        None => param(&h.name, line, out),
    }
    for p in &h.params {
        param(p, line, out);
    }
    for p in h.hash.values() {
        param(p, line, out);
    }
    // Inside `each` and `with` the context is the item: its fields are not
    // the process's names.
    let scoped = matches!(helper_name, Some("each") | Some("with"));
    if let Some(inner) = &h.template {
        if !scoped {
            walk(inner, line, out);
        }
    }
    if let Some(inv) = &h.inverse {
        walk(inv, line, out);
    }
}

fn param(p: &Parameter, line: usize, out: &mut Vec<NameUse>) {
    match p {
        Parameter::Path(HbPath::Relative((_, raw))) => {
            let root = raw.split(['.', '/', '[']).next().unwrap_or("");
            push(root, line, out);
        }
        Parameter::Subexpression(s) => {
            if let TemplateElement::Expression(h) = s.element.as_ref() {
                helper(h, line, out, false);
            }
        }
        _ => {}
    }
}

fn push(name: &str, line: usize, out: &mut Vec<NameUse>) {
    if name.is_empty() || name == "this" || name.starts_with('@') || name.starts_with("..") {
        return;
    }
    out.push(NameUse {
        line,
        name: name.to_string(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(s: &str) -> Vec<(usize, String)> {
        names(s)
            .unwrap()
            .into_iter()
            .map(|n| (n.line, n.name))
            .collect()
    }

    #[test]
    fn finds_names_with_lines() {
        let got = roots("你好 {{agency.name}}：\n{{#if deadline}}期限 {{deadline.last_day}}{{/if}}\n{{answer_link}}\n{{#each missing_items}} · {{this}} {{foo}}\n{{/each}}");
        assert_eq!(
            got,
            [
                (1, "agency".into()),
                (2, "deadline".into()),
                (2, "deadline".into()),
                (3, "answer_link".into()),
                (4, "missing_items".into()),
            ]
        );
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = names("a\nb {{#if x}} c").unwrap_err();
        assert!(e.at.is_some_and(|(line, _)| line >= 1), "{e:?}");
        assert!(!e.reason.is_empty());
    }

    /// Issue 12, finding 5: the parser's message shows the lines around the
    /// error, and a template file can be any file; ours quotes none of it.
    #[test]
    fn syntax_errors_quote_nothing_of_the_text() {
        let secret = "root:$6$saltsalt$hash:19000:0:99999:7:::";
        for text in [
            format!("{secret}\n{{{{#if x}}}}\n{secret}"),
            format!("{secret}\n{{{{#if x}}}}{{{{/each}}}}\n{secret}"),
            format!("{secret} {{{{> }}}}\n{secret}"),
        ] {
            let e = names(&text).unwrap_err();
            let shown = format!("{e:?}");
            assert!(
                !shown.contains("root") && !shown.contains("salt"),
                "{shown}"
            );
        }
        let e = names("ok\n{{#if x}}{{/each}}").unwrap_err();
        assert_eq!(e.at.map(|(line, _)| line), Some(2), "{e:?}");
    }
}
