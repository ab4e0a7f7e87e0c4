//! Strict templates: every name a template reads must exist, and so must
//! every field it reads below it.
//!
//! A template may read the process's variables and the names the
//! notification dispatcher provides ([`BUILTINS`]). A misspelt name would
//! otherwise render as a blank in a message that an agency receives, so it
//! is a validation error, reported with the template's own line. So is a
//! field the value does not have (`agency.nmae` renders blank) and a named
//! segment on a list (`candidates.length` fails to render): [`Shape`] says
//! what the renderer (`notifiers/src/render.rs`, `context()`) gives each
//! name, and [`follow`] walks a path through it.

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{Path as HbPath, PathSeg};

use super::model::ValueType;

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
    /// The segments read below the root, in order: `["name"]` for
    /// `task.name`, `["0", "name"]` for `candidates.0.name` and
    /// `candidates.[0].name`. Empty when only the root is read.
    pub fields: Vec<String>,
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
        Some(n) if h.params.is_empty() && !block => push(n, Vec::new(), line, out),
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
        Parameter::Path(HbPath::Relative((segs, raw))) => {
            let root = raw.split(['.', '/', '[']).next().unwrap_or("");
            // The parser's segments, when they are the root and plain names
            // after it (`[0]` is the name `0`); anything else (`this.x`,
            // `@root.x`, `../x`) reads no field we follow.
            let fields = match segs.split_first() {
                Some((PathSeg::Named(first), rest))
                    if first == root && rest.iter().all(|s| matches!(s, PathSeg::Named(_))) =>
                {
                    rest.iter()
                        .filter_map(|s| match s {
                            PathSeg::Named(n) => Some(n.clone()),
                            _ => None,
                        })
                        .collect()
                }
                _ => Vec::new(),
            };
            push(root, fields, line, out);
        }
        Parameter::Subexpression(s) => {
            if let TemplateElement::Expression(h) = s.element.as_ref() {
                helper(h, line, out, false);
            }
        }
        _ => {}
    }
}

fn push(name: &str, fields: Vec<String>, line: usize, out: &mut Vec<NameUse>) {
    if name.is_empty() || name == "this" || name.starts_with('@') || name.starts_with("..") {
        return;
    }
    out.push(NameUse {
        line,
        name: name.to_string(),
        fields,
    });
}

/// The fields of a person as a template reads them: the serde names of
/// [`crate::runtime::directory::Person`], which the renderer serialises (a
/// person missing from the directory is `{id, name}`, a part of these).
pub const PERSON_FIELDS: &[&str] = &[
    "id",
    "name",
    "roles",
    "organisation",
    "level",
    "county",
    "email",
    "mobile",
];

/// The fields of an agency as a template reads them: the serde names of
/// [`crate::runtime::directory::Agency`] (an unknown one is `{id, name}`).
pub const AGENCY_FIELDS: &[&str] = &["id", "name", "level", "county", "email", "mobile"];

/// The fields of `assignee` and `recipient`: the serde names of the
/// notifiers' `Recipient` (`notifiers/src/lib.rs`), which the core cannot
/// depend on. Keep the two in step.
pub const RECIPIENT_FIELDS: &[&str] = &["id", "name", "email", "mobile"];

/// What the renderer gives a name, as far as a template can read below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Not known for sure (a broken type, a name that is both a variable
    /// and a built-in): nothing below it is checked.
    Unknown,
    /// A string, number or bool, described with its article (`a string`).
    Scalar(String),
    /// A record: `what` describes it (`an agency record`), `member` names
    /// its fields in messages (`field`, or `parameter` for `profile`).
    Record {
        /// The record, with its article.
        what: String,
        /// What its fields are called.
        member: &'static str,
        /// Its fields, in order.
        fields: Vec<(String, Shape)>,
    },
    /// A list: its items are read by number (`candidates.0`).
    List {
        /// The list, with its article (`a list<person>`).
        what: String,
        /// Its items.
        item: Box<Shape>,
    },
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn string() -> Shape {
    Shape::Scalar("a string".into())
}

fn record(what: &str, fields: &[&str]) -> Shape {
    Shape::Record {
        what: what.into(),
        member: "field",
        fields: fields
            .iter()
            .map(|f| {
                let shape = match *f {
                    // `Person::roles`: a list of role ids.
                    "roles" => Shape::List {
                        what: "a list of role ids".into(),
                        item: Box::new(string()),
                    },
                    _ => string(),
                };
                (f.to_string(), shape)
            })
            .collect(),
    }
}

/// What the renderer gives a variable of type `ty`: people and agencies as
/// records, lists as arrays, everything else as a string, number or bool.
pub fn shape_of(ty: &ValueType) -> Shape {
    match ty {
        ValueType::Person => record("a person record", PERSON_FIELDS),
        ValueType::Agency => record("an agency record", AGENCY_FIELDS),
        ValueType::List(inner) => Shape::List {
            what: format!("a {ty}"),
            item: Box::new(shape_of(inner)),
        },
        _ => {
            let name = ty.to_string();
            Shape::Scalar(format!("{} {name} value", article(&name)))
        }
    }
}

/// What the renderer gives the built-in `name` (one of [`BUILTINS`]).
/// `params` are the process's parameters, the fields of `profile`, with
/// their types (`None` when broken).
pub fn builtin_shape<'a>(
    name: &str,
    params: impl IntoIterator<Item = (&'a str, Option<&'a ValueType>)>,
) -> Shape {
    match name {
        "process" => Shape::Record {
            what: "the process record".into(),
            member: "field",
            fields: vec![
                ("id".into(), string()),
                ("name".into(), string()),
                ("version".into(), Shape::Scalar("a number".into())),
            ],
        },
        "instance" => record("the instance record", &["id"]),
        "step" => record("the step record", &["id", "name"]),
        "task" => record("the task record", &["id", "step", "name"]),
        "deadline" => record(
            "the deadline record",
            &["last_day", "deadline", "explanation"],
        ),
        "assignee" | "recipient" => record("a recipient record", RECIPIENT_FIELDS),
        "answer_link" | "today" | "now" => string(),
        "profile" => Shape::Record {
            what: "the profile's values".into(),
            member: "parameter",
            fields: params
                .into_iter()
                .map(|(k, ty)| {
                    // Profile values are plain values (a person or agency
                    // is its id, not a record today): only lists and plain
                    // values are followed.
                    let shape = match ty {
                        Some(ValueType::Person | ValueType::Agency) | None => Shape::Unknown,
                        Some(ValueType::List(inner))
                            if matches!(**inner, ValueType::Person | ValueType::Agency) =>
                        {
                            Shape::Unknown
                        }
                        Some(t) => shape_of(t),
                    };
                    (k.to_string(), shape)
                })
                .collect(),
        },
        _ => Shape::Unknown,
    }
}

/// Why a path cannot be read: `at` is the index in the fields of the
/// segment that fails, the value before it is described by `kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathProblem<'a> {
    /// The failing segment's index in [`NameUse::fields`].
    pub at: usize,
    /// What the value before it is.
    pub kind: ProblemKind<'a>,
}

/// What is read below a value that does not have it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind<'a> {
    /// A record without that field.
    NoField {
        /// The record.
        what: &'a str,
        /// What its fields are called (`field`, `parameter`).
        member: &'static str,
        /// The fields it has.
        known: Vec<&'a str>,
    },
    /// A string, number or bool, which has no fields.
    Scalar {
        /// The value.
        what: &'a str,
    },
    /// A named (not numeric) segment on a list: `candidates.length`.
    List {
        /// The list.
        what: &'a str,
    },
}

/// Follows `fields` below a value of `shape`; the first segment it cannot
/// read, or `None` when all can be read or the value becomes unknown.
pub fn follow<'a>(shape: &'a Shape, fields: &[String]) -> Option<PathProblem<'a>> {
    let mut cur = shape;
    for (at, f) in fields.iter().enumerate() {
        let kind = match cur {
            Shape::Unknown => return None,
            Shape::Scalar(what) => ProblemKind::Scalar { what },
            Shape::Record {
                what,
                member,
                fields,
            } => match fields.iter().find(|(n, _)| n == f) {
                Some((_, s)) => {
                    cur = s;
                    continue;
                }
                None => ProblemKind::NoField {
                    what,
                    member,
                    known: fields.iter().map(|(n, _)| n.as_str()).collect(),
                },
            },
            // handlebars-rust reads an array with `str::parse::<usize>` and
            // fails to render on any other segment.
            Shape::List { what, item } => {
                if f.parse::<usize>().is_ok() {
                    cur = item;
                    continue;
                }
                ProblemKind::List { what }
            }
        };
        return Some(PathProblem { at, kind });
    }
    None
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

    fn paths(s: &str) -> Vec<(usize, String)> {
        names(s)
            .unwrap()
            .into_iter()
            .map(|n| {
                let mut path = vec![n.name];
                path.extend(n.fields);
                (n.line, path.join("."))
            })
            .collect()
    }

    #[test]
    fn finds_field_paths() {
        let got = paths(
            "{{agency.name}} {{agency/email}} {{answer_link}}
             {{candidates.0.name}} {{candidates.[1].name}} {{agency.[name]}}
             {{#if agency.nmae}}{{/if}} {{len candidates}} {{lookup candidates 0}}
             {{#if (eq applicant.level \"市级\")}}{{deadline.last_day}}{{else}}{{task.name}}{{/if}}
             {{candidates.length}} {{{agency.mobile}}}",
        );
        assert_eq!(
            got,
            [
                (1, "agency.name".into()),
                (1, "agency.email".into()),
                (1, "answer_link".into()),
                (2, "candidates.0.name".into()),
                (2, "candidates.1.name".into()),
                (2, "agency.name".into()),
                (3, "agency.nmae".into()),
                (3, "candidates".into()),
                (3, "candidates".into()),
                (4, "applicant.level".into()),
                (4, "deadline.last_day".into()),
                (4, "task.name".into()),
                (5, "candidates.length".into()),
                (5, "agency.mobile".into()),
            ]
        );
    }

    /// Paths that do not start at a process name are not followed, as
    /// their roots were not checked before either.
    #[test]
    fn relative_and_scoped_paths_are_skipped() {
        let got = paths(
            "{{this.agency.nmae}} {{./agency.nmae}} {{@root.agency.nmae}} {{../agency.nmae}}
             {{#each candidates}}{{name}} {{this.nmae}} {{@index}} {{../agency.nmae}}{{/each}}
             {{#with agency}}{{nmae}}{{/with}}",
        );
        assert_eq!(got, [(2, "candidates".into()), (3, "agency".into())]);
    }

    fn fields(p: &str) -> Vec<String> {
        p.split('.').map(String::from).collect()
    }

    #[test]
    fn follows_records_lists_and_scalars() {
        let people = shape_of(&ValueType::List(Box::new(ValueType::Person)));
        assert_eq!(follow(&people, &fields("0.name")), None);
        assert_eq!(follow(&people, &fields("12.roles.0")), None);
        assert_eq!(follow(&people, &[]), None);
        assert_eq!(
            follow(&people, &fields("length")),
            Some(PathProblem {
                at: 0,
                kind: ProblemKind::List {
                    what: "a list<person>"
                }
            })
        );
        assert!(matches!(
            follow(&people, &fields("0.roles.first")),
            Some(PathProblem {
                at: 2,
                kind: ProblemKind::List { .. }
            })
        ));
        let agency = shape_of(&ValueType::Agency);
        match follow(&agency, &fields("nmae")) {
            Some(PathProblem {
                at: 0,
                kind:
                    ProblemKind::NoField {
                        what,
                        member,
                        known,
                    },
            }) => {
                assert_eq!((what, member), ("an agency record", "field"));
                assert_eq!(known, AGENCY_FIELDS);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            follow(&agency, &fields("name.first")),
            Some(PathProblem {
                at: 1,
                kind: ProblemKind::Scalar { what: "a string" }
            })
        );
        assert_eq!(
            follow(&shape_of(&ValueType::Int), &fields("x")),
            Some(PathProblem {
                at: 0,
                kind: ProblemKind::Scalar {
                    what: "an int value"
                }
            })
        );
        assert_eq!(follow(&Shape::Unknown, &fields("a.b.c")), None);
    }

    #[test]
    fn builtins_have_the_renderers_fields() {
        let period = ValueType::Period;
        let agency = ValueType::Agency;
        let params = [
            ("office_name", Some(&period)),
            ("office", Some(&agency)),
            ("broken", None),
        ];
        let profile = builtin_shape("profile", params);
        assert_eq!(follow(&profile, &fields("office_name")), None);
        assert!(follow(&profile, &fields("office_name.x")).is_some());
        // A person or agency parameter, or a broken one: not followed.
        assert_eq!(follow(&profile, &fields("office.name")), None);
        assert_eq!(follow(&profile, &fields("broken.x")), None);
        assert!(matches!(
            follow(&profile, &fields("offce_name")),
            Some(PathProblem {
                kind: ProblemKind::NoField {
                    member: "parameter",
                    ..
                },
                ..
            })
        ));
        for (name, ok, bad) in [
            ("process", "version", "title"),
            ("instance", "id", "name"),
            ("step", "name", "label"),
            ("task", "step", "deadline"),
            ("deadline", "explanation", "date"),
            ("assignee", "mobile", "roles"),
            ("recipient", "email", "level"),
        ] {
            let shape = builtin_shape(name, []);
            assert_eq!(follow(&shape, &fields(ok)), None, "{name}.{ok}");
            assert!(follow(&shape, &fields(bad)).is_some(), "{name}.{bad}");
        }
        for name in ["answer_link", "today", "now"] {
            assert!(follow(&builtin_shape(name, []), &fields("x")).is_some());
        }
        for name in BUILTINS {
            assert_ne!(builtin_shape(name, []), Shape::Unknown, "{name}");
        }
    }

    /// The field lists are the serde names of the directory's records.
    #[test]
    fn record_fields_are_the_directorys() {
        use crate::runtime::directory::{Agency, Person};
        let keys = |v: serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let mut person = keys(
            serde_json::to_value(Person {
                id: "a".into(),
                name: "甲".into(),
                roles: vec![],
                organisation: None,
                level: None,
                county: None,
                email: None,
                mobile: None,
            })
            .unwrap(),
        );
        let mut agency = keys(
            serde_json::to_value(Agency {
                id: "a".into(),
                name: "甲".into(),
                level: None,
                county: None,
                email: None,
                mobile: None,
            })
            .unwrap(),
        );
        person.sort();
        agency.sort();
        let mut want_person: Vec<&str> = PERSON_FIELDS.to_vec();
        let mut want_agency: Vec<&str> = AGENCY_FIELDS.to_vec();
        want_person.sort();
        want_agency.sort();
        assert_eq!(person, want_person);
        assert_eq!(agency, want_agency);
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
