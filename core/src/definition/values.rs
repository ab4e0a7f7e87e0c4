//! Types and values: `type: list<person>`, defaults, profile values and
//! schedule variables, checked against their declared types.
//!
//! YAML scalars reach the checker as text (marked-yaml does not guess types),
//! so every value is parsed here by its declared type, never by its look.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate};

use super::check::Checker;
use super::diagnostic::Code;
use super::model::*;
use super::source::Path;
use crate::calendar::Period;

impl Checker<'_> {
    pub(super) fn value_type(
        &mut self,
        path: &Path,
        ty: &str,
        values: Option<&[String]>,
    ) -> Option<ValueType> {
        let t = ty.trim();
        if let Some(inner) = t.strip_prefix("list<").and_then(|s| s.strip_suffix('>')) {
            if inner.trim().starts_with("list<") {
                self.err(
                    path,
                    Code::BadValue,
                    "lists of lists are not supported".into(),
                    None,
                );
                return None;
            }
            return self
                .value_type(path, inner, values)
                .map(|t| ValueType::List(Box::new(t)));
        }
        if let Some(scalar) = scalar_type(t) {
            return Some(scalar);
        }
        Some(match t {
            "enum" => match values {
                Some(v) if !v.is_empty() => {
                    let mut seen = BTreeSet::new();
                    for x in v {
                        if !seen.insert(x) {
                            let vp = path.parent().key("values");
                            self.err(
                                &vp,
                                Code::DuplicateId,
                                format!("enum value `{x}` is listed twice"),
                                None,
                            );
                        }
                    }
                    ValueType::Enum(v.to_vec())
                }
                _ => {
                    self.err(
                        &path.parent().key("values"),
                        Code::MissingKey,
                        "an enum needs `values:`, the list of allowed values".into(),
                        None,
                    );
                    return None;
                }
            },
            other => {
                let names = SCALAR_TYPES.iter().map(|(n, _)| *n).chain(["enum"]);
                let hint = match super::diagnostic::closest(other, names.clone()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!(
                        "types: {}, or list<TYPE>",
                        names.collect::<Vec<_>>().join(", ")
                    ),
                };
                self.err(
                    path,
                    Code::BadValue,
                    format!("unknown type `{other}`"),
                    Some(hint),
                );
                return None;
            }
        })
    }

    /// Checks a value given in YAML (scalars arrive as text) against its type.
    pub(super) fn value(
        &mut self,
        path: &Path,
        ty: &ValueType,
        v: &serde_json::Value,
    ) -> Option<Value> {
        use serde_json::Value as J;
        let text = match v {
            J::String(s) => s.trim(),
            J::Array(items) => {
                let ValueType::List(inner) = ty else {
                    self.err(
                        path,
                        Code::WrongType,
                        format!("expected a {ty}, found a list"),
                        None,
                    );
                    return None;
                };
                let vals: Vec<Option<Value>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| self.value(&path.index(i), inner, x))
                    .collect();
                return vals
                    .into_iter()
                    .collect::<Option<Vec<_>>>()
                    .map(Value::List);
            }
            J::Null => {
                self.err(
                    path,
                    Code::WrongType,
                    format!("expected a {ty}, found nothing"),
                    None,
                );
                return None;
            }
            _ => {
                self.err(
                    path,
                    Code::WrongType,
                    format!("expected a {ty}, found a mapping"),
                    None,
                );
                return None;
            }
        };
        let bad = |c: &mut Self, why: String| {
            c.err(
                path,
                Code::BadValue,
                format!("`{text}` is not a valid {ty}: {why}"),
                None,
            );
            None
        };
        match ty {
            ValueType::String | ValueType::Text | ValueType::Person | ValueType::Agency => {
                Some(Value::Text(text.into()))
            }
            ValueType::Int => match text.parse() {
                Ok(n) => Some(Value::Int(n)),
                Err(_) => bad(self, "expected a whole number".into()),
            },
            ValueType::Bool => match text {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => bad(self, "expected true or false".into()),
            },
            ValueType::Date => match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                Ok(d) => Some(Value::Date(d)),
                Err(_) => bad(self, "expected YYYY-MM-DD".into()),
            },
            ValueType::DateTime => match DateTime::parse_from_rfc3339(text) {
                Ok(d) => Some(Value::DateTime(d)),
                Err(_) => bad(
                    self,
                    "expected an RFC 3339 instant like 2025-09-26T09:00:00+08:00".into(),
                ),
            },
            ValueType::Email => {
                let ok = text
                    .split_once('@')
                    .is_some_and(|(a, b)| !a.is_empty() && b.contains('.'));
                if ok {
                    Some(Value::Text(text.into()))
                } else {
                    bad(self, "expected name@domain".into())
                }
            }
            ValueType::Phone => {
                let ok = text.len() == 11
                    && text.starts_with('1')
                    && text.bytes().all(|b| b.is_ascii_digit());
                if ok {
                    Some(Value::Text(text.into()))
                } else {
                    bad(self, "expected an 11-digit mobile number".into())
                }
            }
            ValueType::Enum(values) => {
                if values.iter().any(|x| x == text) {
                    Some(Value::Text(text.into()))
                } else {
                    bad(self, format!("allowed values: {}", values.join(", ")))
                }
            }
            ValueType::Period => match text.parse::<Period>() {
                Ok(p) => Some(Value::Period(p)),
                Err(e) => {
                    self.err(
                        path,
                        Code::BadPeriod,
                        format!("bad period `{text}`"),
                        Some(e.to_string()),
                    );
                    None
                }
            },
            ValueType::Role => self
                .declared_role(path, text)
                .then(|| Value::Text(text.into())),
            ValueType::List(_) => bad(self, "expected a list".into()),
        }
    }

    // ----- the document -----------------------------------------------
}

/// Parses a type name without reporting (for the name pass).
pub(super) fn quiet_type(t: &str, values: Option<&[String]>) -> Option<ValueType> {
    let t = t.trim();
    if let Some(inner) = t.strip_prefix("list<").and_then(|s| s.strip_suffix('>')) {
        return quiet_type(inner, values).map(|x| ValueType::List(Box::new(x)));
    }
    match t {
        "enum" => Some(ValueType::Enum(values?.to_vec())),
        _ => scalar_type(t),
    }
}

/// The type names of the language, `enum` and `list<…>` aside.
pub(super) const SCALAR_TYPES: &[(&str, ValueType)] = &[
    ("string", ValueType::String),
    ("text", ValueType::Text),
    ("int", ValueType::Int),
    ("bool", ValueType::Bool),
    ("date", ValueType::Date),
    ("datetime", ValueType::DateTime),
    ("email", ValueType::Email),
    ("phone", ValueType::Phone),
    ("person", ValueType::Person),
    ("agency", ValueType::Agency),
    ("period", ValueType::Period),
    ("role", ValueType::Role),
];

fn scalar_type(name: &str) -> Option<ValueType> {
    SCALAR_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t.clone())
}
