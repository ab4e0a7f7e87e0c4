//! Stage 2: from the node tree to a checked [`Definition`], collecting every
//! problem on the way.
//!
//! The walk goes in three passes. First the *names* of every section are
//! collected from the tree (step ids, roles, variables, templates, …), so
//! that a reference to an entry whose body is broken is not reported a second
//! time as "unknown". Then each entry is deserialised on its own into its raw
//! struct and checked into the model. Last, the flow of the completed steps
//! is checked (reachability, ends, parallel joins) in `flow.rs`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveTime};
use indexmap::{IndexMap, IndexSet};
use marked_yaml::Node;
use serde::de::DeserializeOwned;

use super::diagnostic::{suggest, Code, Diagnostic};
use super::expr;
use super::model::*;
use super::raw::{self, *};
use super::source::{Path, Source};
use crate::calendar::Period;

/// What a definition is checked against besides itself.
#[derive(Clone, Debug, Default)]
pub struct LoadContext {
    /// The folder template `file:`s are relative to; `None` skips reading them.
    pub base_dir: Option<PathBuf>,
    /// The process ids a `call` step may name; `None` skips that check
    /// (a single file checked on its own).
    pub processes: Option<BTreeSet<String>>,
}

/// The checker's state: the source, the diagnostics so far, and the names
/// declared in each section.
pub(super) struct Checker<'a> {
    pub src: &'a Source,
    pub ctx: &'a LoadContext,
    pub diags: Vec<Diagnostic>,
    pub step_kinds: IndexMap<String, Option<String>>,
    pub roles: IndexSet<String>,
    pub variables: IndexMap<String, Option<ValueType>>,
    pub params: IndexMap<String, Option<ValueType>>,
    pub templates: IndexSet<String>,
    pub documents: IndexSet<String>,
    pub profiles: IndexSet<String>,
    /// Paths of duplicate keys found while parsing.
    pub src_dups: Vec<String>,
}

/// Checks a parsed source. Returns the definition only when there is no
/// diagnostic at all.
pub(super) fn check(
    src: &Source,
    ctx: &LoadContext,
    src_dups: Vec<String>,
) -> (Option<Definition>, Vec<Diagnostic>) {
    let mut c = Checker {
        src,
        ctx,
        diags: Vec::new(),
        step_kinds: IndexMap::new(),
        roles: IndexSet::new(),
        variables: IndexMap::new(),
        params: IndexMap::new(),
        templates: IndexSet::new(),
        documents: IndexSet::new(),
        profiles: IndexSet::new(),
        src_dups,
    };
    let def = c.document();
    let mut diags = c.diags;
    diags.sort_by_key(|d| (d.line, d.column));
    diags.dedup();
    match def {
        Some(def) if diags.is_empty() => (Some(def), diags),
        _ => (None, diags),
    }
}

use super::check_is_id as is_id;

/// `XC-19`, `SQ-19(二)`.
fn is_rule_id(s: &str) -> bool {
    let Some((code, rest)) = s.split_once('-') else {
        return false;
    };
    let (num, item) = match rest.find('(') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    (2..=3).contains(&code.len())
        && code.chars().all(|c| c.is_ascii_uppercase())
        && !num.is_empty()
        && num.chars().all(|c| c.is_ascii_digit())
        && item.is_none_or(|it| {
            it.len() > 2
                && it.ends_with(')')
                && it[1..it.len() - 1]
                    .chars()
                    .all(|c| "一二三四五六七八九十".contains(c))
        })
}

impl Checker<'_> {
    pub fn err(&mut self, path: &Path, code: Code, message: String, hint: Option<String>) {
        let d = self.src.diag(path, code, message, hint);
        self.diags.push(d);
    }

    pub fn err_key(&mut self, path: &Path, code: Code, message: String, hint: Option<String>) {
        let d = self.src.diag_key(path, code, message, hint);
        self.diags.push(d);
    }

    /// Deserialises one node into its raw struct, turning serde's first error
    /// into a located diagnostic.
    pub fn de<T: DeserializeOwned>(&mut self, path: &Path, node: &Node) -> Option<T> {
        match marked_yaml::from_node::<T>(node) {
            Ok(v) => Some(v),
            Err(e) => {
                let full = path.join_dotted(e.path().unwrap_or(""));
                let mark = e.start_mark().map(|m| (m.line(), m.column()));
                let (code, message, hint, full) = describe_serde_error(&e, full);
                // A missing key has no node: point at its parent entry.
                let mark = if code == Code::MissingKey { None } else { mark };
                let (line, column) = mark.unwrap_or_else(|| self.src.locate(&full));
                let d = self.src.diag_at(line, column, &full, code, message, hint);
                self.diags.push(d);
                None
            }
        }
    }

    /// The entries of an id-keyed section, or a wrong-type diagnostic.
    pub fn entries<'n>(&mut self, path: &Path, node: &'n Node) -> Vec<(String, &'n Node)> {
        match node {
            Node::Mapping(m) => m.iter().map(|(k, v)| (k.as_str().to_string(), v)).collect(),
            _ => {
                self.err(
                    path,
                    Code::WrongType,
                    format!("`{path}` must be a mapping of ids to entries"),
                    Some("write one `id:` per line, indented under the section".into()),
                );
                Vec::new()
            }
        }
    }

    fn items<'n>(&mut self, path: &Path, node: &'n Node) -> Vec<&'n Node> {
        match node {
            Node::Sequence(s) => s.iter().collect(),
            _ => {
                self.err(
                    path,
                    Code::WrongType,
                    format!("`{path}` must be a list (each item starting with `- `)"),
                    None,
                );
                Vec::new()
            }
        }
    }

    pub fn check_id(&mut self, path: &Path, id: &str, what: &str) {
        if !is_id(id) {
            self.err_key(
                path,
                Code::BadId,
                format!("{what} id `{id}` is not a valid identifier"),
                Some("use ASCII letters, digits and `_`, starting with a letter".into()),
            );
        }
    }

    pub fn check_rules(&mut self, path: &Path, rules: &[String]) -> Vec<String> {
        let mut seen = BTreeSet::new();
        for (i, r) in rules.iter().enumerate() {
            if !is_rule_id(r) {
                self.err(
                    &path.index(i),
                    Code::BadRuleId,
                    format!("`{r}` is not a rule id"),
                    Some("rule ids look like `XC-19` or `SQ-19(二)`, as in RULES.md".into()),
                );
            } else if !seen.insert(r.as_str()) {
                self.err(
                    &path.index(i),
                    Code::DuplicateId,
                    format!("rule `{r}` is listed twice"),
                    None,
                );
            }
        }
        rules.to_vec()
    }

    // ----- references -------------------------------------------------

    pub fn step_ref(&mut self, path: &Path, id: &str) {
        if !self.step_kinds.contains_key(id) {
            let hint = suggest(id, "step", self.step_kinds.keys().map(String::as_str));
            self.err(
                path,
                Code::UnknownStep,
                format!("unknown step `{id}`"),
                Some(hint),
            );
        }
    }

    pub fn role_ref(&mut self, path: &Path, text: &str) -> Option<RoleRef> {
        if let Some(p) = text.strip_prefix("profile.") {
            return match self.params.get(p) {
                None => {
                    let hint = suggest(p, "parameter", self.params.keys().map(String::as_str));
                    self.err(
                        path,
                        Code::UnknownParameter,
                        format!("unknown profile parameter `{p}`"),
                        Some(hint),
                    );
                    None
                }
                Some(Some(ValueType::Role)) | Some(None) => Some(RoleRef::Param(p.into())),
                Some(Some(t)) => {
                    self.err(
                        path,
                        Code::TypeMismatch,
                        format!("profile parameter `{p}` is a {t}, but a role is needed here"),
                        Some(format!("declare `{p}` with `type: role`")),
                    );
                    None
                }
            };
        }
        if self.roles.contains(text) {
            Some(RoleRef::Role(text.into()))
        } else {
            let hint = suggest(text, "role", self.roles.iter().map(String::as_str));
            self.err(
                path,
                Code::UnknownRole,
                format!("unknown role `{text}`"),
                Some(hint),
            );
            None
        }
    }

    /// A declared variable's type; `Some(None)` when declared with a bad type.
    pub fn var_ref(&mut self, path: &Path, name: &str) -> Option<Option<ValueType>> {
        match self.variables.get(name) {
            Some(t) => Some(t.clone()),
            None => {
                let hint = suggest(name, "variable", self.variables.keys().map(String::as_str));
                self.err(
                    path,
                    Code::UnknownVariable,
                    format!("unknown variable `{name}`"),
                    Some(hint),
                );
                None
            }
        }
    }

    pub fn template_ref(&mut self, path: &Path, id: &str) {
        if !self.templates.contains(id) {
            let hint = suggest(id, "template", self.templates.iter().map(String::as_str));
            self.err(
                path,
                Code::UnknownTemplate,
                format!("unknown template `{id}`"),
                Some(hint),
            );
        }
    }

    pub fn document_refs(&mut self, path: &Path, ids: &[String]) -> Vec<String> {
        for (i, id) in ids.iter().enumerate() {
            if !self.documents.contains(id.as_str()) {
                let hint = suggest(id, "document", self.documents.iter().map(String::as_str));
                self.err(
                    &path.index(i),
                    Code::UnknownDocument,
                    format!("unknown document `{id}`"),
                    Some(hint),
                );
            }
        }
        ids.to_vec()
    }

    pub fn period_ref(&mut self, path: &Path, text: &str) -> Option<PeriodRef> {
        if let Some(p) = text.strip_prefix("profile.") {
            return match self.params.get(p) {
                None => {
                    let hint = suggest(p, "parameter", self.params.keys().map(String::as_str));
                    self.err(
                        path,
                        Code::UnknownParameter,
                        format!("unknown profile parameter `{p}`"),
                        Some(hint),
                    );
                    None
                }
                Some(Some(ValueType::Period)) | Some(None) => Some(PeriodRef::Param(p.into())),
                Some(Some(t)) => {
                    self.err(
                        path,
                        Code::TypeMismatch,
                        format!("profile parameter `{p}` is a {t}, not a period"),
                        None,
                    );
                    None
                }
            };
        }
        if let Some(v) = text.strip_prefix("var.") {
            return match self.var_ref(path, v)? {
                Some(ValueType::Period) | None => Some(PeriodRef::Variable(v.into())),
                Some(t) => {
                    self.err(
                        path,
                        Code::TypeMismatch,
                        format!("variable `{v}` is a {t}, not a period"),
                        Some(format!("declare `{v}` with `type: period`")),
                    );
                    None
                }
            };
        }
        match text.parse::<Period>() {
            Ok(p) => Some(PeriodRef::Literal(p)),
            Err(e) => {
                self.err(
                    path,
                    Code::BadPeriod,
                    format!("bad period `{text}`"),
                    Some(format!("{e}; or `profile.NAME` / `var.NAME`")),
                );
                None
            }
        }
    }

    /// Compiles a CEL expression and checks the names it reads.
    pub fn expr(&mut self, path: &Path, text: &str) -> Option<Expr> {
        match expr::compile(text) {
            Err(e) => {
                let (line, col) = self.src.locate(path);
                let at = e
                    .column
                    .map(|c| format!(" at column {c} of the expression"))
                    .unwrap_or_default();
                let d = self.src.diag_at(
                    line,
                    col,
                    path,
                    Code::CelSyntax,
                    format!("CEL expression `{text}` does not parse{at}: {}", e.message),
                    Some(
                        "conditions are CEL, e.g. `reconsideration_filed || litigation_filed`"
                            .into(),
                    ),
                );
                self.diags.push(d);
                None
            }
            Ok((e, free)) => {
                let mut ok = true;
                for name in free {
                    if !self.variables.contains_key(&name)
                        && !expr::BUILTIN_NAMES.contains(&name.as_str())
                    {
                        ok = false;
                        let hint =
                            suggest(&name, "variable", self.variables.keys().map(String::as_str));
                        self.err(
                            path,
                            Code::CelUnknownVariable,
                            format!("CEL expression `{text}` names undeclared variable `{name}`"),
                            Some(hint),
                        );
                    }
                }
                ok.then_some(e)
            }
        }
    }

    /// `set:` maps: declared variable ← expression.
    pub fn sets(&mut self, path: &Path, set: &IndexMap<String, String>) -> Vec<(String, Expr)> {
        let mut out = Vec::new();
        for (name, text) in set {
            let p = path.key(name);
            let known = self.var_ref(&p, name).is_some();
            if let Some(e) = self.expr(&p, text) {
                if known {
                    out.push((name.clone(), e));
                }
            }
        }
        out
    }

    // ----- values -----------------------------------------------------

    pub fn value_type(
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
        const TYPES: &[&str] = &[
            "string", "text", "int", "bool", "date", "datetime", "enum", "email", "phone",
            "person", "agency", "period", "role",
        ];
        Some(match t {
            "string" => ValueType::String,
            "text" => ValueType::Text,
            "int" => ValueType::Int,
            "bool" => ValueType::Bool,
            "date" => ValueType::Date,
            "datetime" => ValueType::DateTime,
            "email" => ValueType::Email,
            "phone" => ValueType::Phone,
            "person" => ValueType::Person,
            "agency" => ValueType::Agency,
            "period" => ValueType::Period,
            "role" => ValueType::Role,
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
                let hint = match super::diagnostic::closest(other, TYPES.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("types: {}, or list<TYPE>", TYPES.join(", ")),
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
    pub fn value(&mut self, path: &Path, ty: &ValueType, v: &serde_json::Value) -> Option<Value> {
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
            ValueType::Role => {
                if self.roles.contains(text) {
                    Some(Value::Text(text.into()))
                } else {
                    let hint = suggest(text, "role", self.roles.iter().map(String::as_str));
                    self.err(
                        path,
                        Code::UnknownRole,
                        format!("unknown role `{text}`"),
                        Some(hint),
                    );
                    None
                }
            }
            ValueType::List(_) => bad(self, "expected a list".into()),
        }
    }

    // ----- the document -----------------------------------------------

    fn document(&mut self) -> Option<Definition> {
        let root = self.src.root.as_ref()?;
        let Node::Mapping(top) = root else {
            return None; // the loader already refused a non-mapping top level
        };
        let here = Path::root();
        let get = |k: &str| {
            top.iter()
                .find(|(key, _)| key.as_str() == k)
                .map(|(_, v)| v)
        };
        for (k, _) in top.iter() {
            if !raw::TOP_KEYS.contains(&k.as_str()) {
                let hint = suggest(k.as_str(), "key", raw::TOP_KEYS.iter().copied());
                self.err_key(
                    &here.key(k.as_str()),
                    Code::UnknownKey,
                    format!("unknown key `{}`", k.as_str()),
                    Some(hint),
                );
            }
        }
        for k in ["id", "version", "name", "start", "steps"] {
            if get(k).is_none() {
                self.err(
                    &here.key(k),
                    Code::MissingKey,
                    format!("missing required key `{k}`"),
                    None,
                );
            }
        }

        // Pass 1: names.
        self.collect_names(&get);

        // Pass 2: entries.
        let id: Option<String> = get("id").and_then(|n| self.de(&here.key("id"), n));
        if let Some(id) = &id {
            self.check_id(&here.key("id"), id, "process");
        }
        let version: Option<u32> = get("version").and_then(|n| self.de(&here.key("version"), n));
        if version == Some(0) {
            self.err(
                &here.key("version"),
                Code::BadValue,
                "version must be 1 or more".into(),
                None,
            );
        }
        let name: Option<String> = get("name").and_then(|n| self.de(&here.key("name"), n));
        let description: Option<String> =
            get("description").and_then(|n| self.de(&here.key("description"), n));
        let rules: Vec<String> = get("rules")
            .and_then(|n| self.de::<Vec<String>>(&here.key("rules"), n))
            .map(|r| self.check_rules(&here.key("rules"), &r))
            .unwrap_or_default();

        let roles = self.roles_section(get("roles"));
        let parameters = self.parameters_section(get("parameters"));
        let profiles = self.profiles_section(get("profiles"), &parameters);
        let default_profile: Option<String> =
            get("default_profile").and_then(|n| self.de(&here.key("default_profile"), n));
        if let Some(p) = &default_profile {
            self.profile_ref(&here.key("default_profile"), p);
        }
        let variables = self.variables_section(get("variables"));
        let templates = self.templates_section(get("templates"));
        let documents = self.documents_section(get("documents"));
        let start: Option<String> = get("start").and_then(|n| self.de(&here.key("start"), n));
        if let Some(s) = &start {
            self.step_ref(&here.key("start"), s);
        }
        let steps = self.steps_section(get("steps"));
        let notifications = self.notifications_section(get("notifications"));
        let schedule = self.schedule_section(get("schedule"));

        // With a duplicated step id the loader kept only one of the two
        // entries; checking the flow of that guess would only mislead.
        let dup_steps = self.src_dups.iter().any(|p| p.starts_with("steps."));
        if let (Some(start), Some(steps), false) = (&start, &steps, dup_steps) {
            super::flow::check_flow(self, start, steps);
        }

        Some(Definition {
            id: id?,
            version: version?,
            name: name?,
            description,
            rules,
            roles,
            parameters,
            profiles,
            default_profile,
            variables,
            start: start?,
            steps: steps?
                .into_iter()
                .map(|(k, v)| v.map(|v| (k, v)))
                .collect::<Option<_>>()?,
            notifications,
            documents,
            templates,
            schedule,
        })
    }

    fn collect_names<'n>(&mut self, get: &impl Fn(&str) -> Option<&'n Node>) {
        let keys = |n: Option<&'n Node>| -> Vec<(String, &'n Node)> {
            match n {
                Some(Node::Mapping(m)) => {
                    m.iter().map(|(k, v)| (k.as_str().to_string(), v)).collect()
                }
                _ => Vec::new(),
            }
        };
        for (k, v) in keys(get("steps")) {
            let kind = v
                .as_mapping()
                .and_then(|m| m.get_scalar("kind"))
                .map(|s| s.as_str().to_string());
            self.step_kinds.insert(k, kind);
        }
        self.roles = keys(get("roles")).into_iter().map(|(k, _)| k).collect();
        self.templates = keys(get("templates")).into_iter().map(|(k, _)| k).collect();
        self.documents = keys(get("documents")).into_iter().map(|(k, _)| k).collect();
        self.profiles = keys(get("profiles")).into_iter().map(|(k, _)| k).collect();
        // Types of variables and parameters are needed by references; a bad
        // type is reported later, in the section itself.
        for (section, is_var) in [("variables", true), ("parameters", false)] {
            for (k, v) in keys(get(section)) {
                let m = v.as_mapping();
                let ty = m
                    .and_then(|m| m.get_scalar("type"))
                    .map(|s| s.as_str().to_string());
                let values: Option<Vec<String>> =
                    m.and_then(|m| m.get_sequence("values")).map(|s| {
                        s.iter()
                            .filter_map(|n| n.as_scalar().map(|x| x.as_str().to_string()))
                            .collect()
                    });
                let parsed = ty.and_then(|t| quiet_type(&t, values.as_deref()));
                if is_var {
                    self.variables.insert(k, parsed);
                } else {
                    self.params.insert(k, parsed);
                }
            }
        }
    }

    pub fn profile_ref(&mut self, path: &Path, p: &str) {
        if !self.profiles.contains(p) {
            let hint = suggest(p, "profile", self.profiles.iter().map(String::as_str));
            self.err(
                path,
                Code::UnknownProfile,
                format!("unknown profile `{p}`"),
                Some(hint),
            );
        }
    }

    fn roles_section(&mut self, node: Option<&Node>) -> IndexMap<String, Role> {
        let path = Path::root().key("roles");
        let mut out = IndexMap::new();
        let Some(node) = node else { return out };
        for (id, n) in self.entries(&path, node) {
            let p = path.key(&id);
            self.check_id(&p, &id, "role");
            // Short form: `government: 本级人民政府`.
            if let Some(s) = n.as_scalar() {
                out.insert(
                    id,
                    Role {
                        name: s.as_str().to_string(),
                        description: None,
                    },
                );
            } else if let Some(r) = self.de::<RawRole>(&p, n) {
                out.insert(
                    id,
                    Role {
                        name: r.name,
                        description: r.description,
                    },
                );
            }
        }
        out
    }

    fn parameters_section(&mut self, node: Option<&Node>) -> IndexMap<String, Parameter> {
        let path = Path::root().key("parameters");
        let mut out = IndexMap::new();
        let Some(node) = node else { return out };
        for (id, n) in self.entries(&path, node) {
            let p = path.key(&id);
            self.check_id(&p, &id, "parameter");
            let Some(r) = self.de::<RawParameter>(&p, n) else {
                continue;
            };
            let Some(ty) = self.value_type(&p.key("type"), &r.ty, None) else {
                continue;
            };
            let default = match &r.default {
                Some(v) => self.value(&p.key("default"), &ty, v),
                None => None,
            };
            out.insert(
                id,
                Parameter {
                    ty,
                    default,
                    description: r.description,
                },
            );
        }
        out
    }

    fn profiles_section(
        &mut self,
        node: Option<&Node>,
        params: &IndexMap<String, Parameter>,
    ) -> IndexMap<String, Profile> {
        let path = Path::root().key("profiles");
        let mut out = IndexMap::new();
        let Some(node) = node else { return out };
        for (id, n) in self.entries(&path, node) {
            let p = path.key(&id);
            self.check_id(&p, &id, "profile");
            let Some(r) = self.de::<RawProfile>(&p, n) else {
                continue;
            };
            let rules = self.check_rules(&p.key("rules"), &r.rules);
            let mut values = IndexMap::new();
            for (k, v) in &r.values {
                let vp = p.key("values").key(k);
                match params.get(k) {
                    Some(param) => {
                        if let Some(v) = self.value(&vp, &param.ty.clone(), v) {
                            values.insert(k.clone(), v);
                        }
                    }
                    None if self.params.contains_key(k) => {} // declared, but its type is bad
                    None => {
                        let hint = suggest(k, "parameter", self.params.keys().map(String::as_str));
                        self.err_key(
                            &vp,
                            Code::UnknownParameter,
                            format!("unknown profile parameter `{k}`"),
                            Some(hint),
                        );
                    }
                }
            }
            for (name, param) in params {
                if !r.values.contains_key(name) {
                    match &param.default {
                        Some(d) => {
                            values.insert(name.clone(), d.clone());
                        }
                        None => self.err(
                            &p.key("values"),
                            Code::MissingParameterValue,
                            format!("profile `{id}` gives no value for parameter `{name}`, which has no default"),
                            Some(format!("add `{name}: …` under `values:`, or a `default:` to the parameter")),
                        ),
                    }
                }
            }
            out.insert(
                id,
                Profile {
                    name: r.name,
                    rules,
                    values,
                },
            );
        }
        out
    }

    fn variables_section(&mut self, node: Option<&Node>) -> IndexMap<String, Variable> {
        let path = Path::root().key("variables");
        let mut out = IndexMap::new();
        let Some(node) = node else { return out };
        for (id, n) in self.entries(&path, node) {
            let p = path.key(&id);
            self.check_id(&p, &id, "variable");
            if expr::BUILTIN_NAMES.contains(&id.as_str()) {
                self.err_key(
                    &p,
                    Code::DuplicateId,
                    format!("`{id}` is a built-in name and cannot be a variable"),
                    None,
                );
            }
            let Some(r) = self.de::<RawVariable>(&p, n) else {
                continue;
            };
            let Some(ty) = self.value_type(&p.key("type"), &r.ty, r.values.as_deref()) else {
                continue;
            };
            if r.values.is_some()
                && !matches!(&ty, ValueType::Enum(_))
                && !matches!(&ty, ValueType::List(t) if matches!(**t, ValueType::Enum(_)))
            {
                self.err_key(
                    &p.key("values"),
                    Code::BadValue,
                    format!("`values:` only applies to enums, and `{id}` is a {ty}"),
                    None,
                );
            }
            if (r.min_items.is_some() || r.max_items.is_some()) && !matches!(ty, ValueType::List(_))
            {
                self.err_key(
                    &p.key("min_items"),
                    Code::BadValue,
                    format!("`min_items`/`max_items` only apply to lists, and `{id}` is a {ty}"),
                    None,
                );
            }
            if let (Some(a), Some(b)) = (r.min_items, r.max_items) {
                if a > b {
                    self.err(
                        &p.key("max_items"),
                        Code::BadValue,
                        format!("max_items {b} is below min_items {a}"),
                        None,
                    );
                }
            }
            if ty == ValueType::Role {
                self.err(
                    &p.key("type"),
                    Code::BadValue,
                    "`role` is a parameter type; variables cannot hold roles".into(),
                    None,
                );
            }
            let default = match &r.default {
                Some(v) => self.value(&p.key("default"), &ty, v),
                None => None,
            };
            out.insert(
                id,
                Variable {
                    ty,
                    required: r.required.unwrap_or(false),
                    default,
                    label: r.label,
                    description: r.description,
                    min_items: r.min_items,
                    max_items: r.max_items,
                },
            );
        }
        out
    }

    fn templates_section(&mut self, node: Option<&Node>) -> IndexMap<String, Template> {
        let path = Path::root().key("templates");
        let mut out = IndexMap::new();
        let Some(node) = node else { return out };
        for (id, n) in self.entries(&path, node) {
            let p = path.key(&id);
            self.check_id(&p, &id, "template");
            let Some(r) = self.de::<RawTemplate>(&p, n) else {
                continue;
            };
            let body = match (&r.body, &r.file) {
                (Some(b), None) => Some(b.clone()),
                (None, Some(f)) => match &self.ctx.base_dir {
                    None => Some(String::new()),
                    Some(dir) => match std::fs::read_to_string(dir.join(f)) {
                        Ok(text) => Some(text),
                        Err(e) => {
                            self.err(
                                &p.key("file"),
                                Code::MissingFile,
                                format!("template file `{f}` cannot be read: {e}"),
                                Some(format!("paths are relative to {}", dir.display())),
                            );
                            None
                        }
                    },
                },
                (Some(_), Some(_)) => {
                    self.err(
                        &p.key("file"),
                        Code::BadValue,
                        "give either `body:` or `file:`, not both".into(),
                        None,
                    );
                    None
                }
                (None, None) => {
                    self.err(
                        &p.key("body"),
                        Code::MissingKey,
                        format!("template `{id}` has neither `body:` nor `file:`"),
                        None,
                    );
                    None
                }
            };
            if let Some(body) = body {
                out.insert(
                    id,
                    Template {
                        subject: r.subject,
                        body,
                        sms: r.sms,
                    },
                );
            }
        }
        out
    }

    fn documents_section(&mut self, node: Option<&Node>) -> IndexMap<String, Document> {
        let path = Path::root().key("documents");
        let mut out = IndexMap::new();
        let Some(node) = node else { return out };
        for (id, n) in self.entries(&path, node) {
            let p = path.key(&id);
            self.check_id(&p, &id, "document");
            let Some(r) = self.de::<RawDocument>(&p, n) else {
                continue;
            };
            if !DOCUMENT_KINDS.contains(&r.kind.as_str()) {
                self.err(
                    &p.key("kind"),
                    Code::BadValue,
                    format!("unknown document kind `{}`", r.kind),
                    Some(format!("kinds: {}", DOCUMENT_KINDS.join(", "))),
                );
            }
            self.template_ref(&p.key("template"), &r.template);
            out.insert(
                id,
                Document {
                    kind: r.kind,
                    title: r.title,
                    template: r.template,
                },
            );
        }
        out
    }

    fn notifications_section(&mut self, node: Option<&Node>) -> Vec<Notification> {
        let path = Path::root().key("notifications");
        let mut out = Vec::new();
        let Some(node) = node else { return out };
        for (i, n) in self.items(&path, node).into_iter().enumerate() {
            let p = path.index(i);
            let Some(r) = self.de::<RawNotification>(&p, n) else {
                continue;
            };
            let on = Event::ALL
                .iter()
                .find(|(name, _)| *name == r.on)
                .map(|(_, e)| *e);
            if on.is_none() {
                let hint = suggest(&r.on, "event", Event::ALL.iter().map(|(n, _)| *n));
                self.err(
                    &p.key("on"),
                    Code::BadValue,
                    format!("unknown event `{}`", r.on),
                    Some(hint),
                );
            }
            if let Some(s) = &r.step {
                self.step_ref(&p.key("step"), s);
            }
            let to: Vec<Option<Party>> =
                r.to.iter()
                    .enumerate()
                    .map(|(j, party)| self.party(&p.key("to").index(j), party, true))
                    .collect();
            if r.to.is_empty() {
                self.err(
                    &p.key("to"),
                    Code::MissingKey,
                    "a notification needs at least one recipient".into(),
                    None,
                );
            }
            let mut channels = Vec::new();
            for (j, ch) in r.channels.iter().enumerate() {
                match ch.as_str() {
                    "email" => channels.push(Channel::Email),
                    "sms" => channels.push(Channel::Sms),
                    other => self.err(
                        &p.key("channels").index(j),
                        Code::BadValue,
                        format!("unknown channel `{other}`"),
                        Some("channels: email, sms".into()),
                    ),
                }
            }
            self.template_ref(&p.key("template"), &r.template);
            if let (Some(on), Some(to)) = (on, to.into_iter().collect::<Option<Vec<_>>>()) {
                out.push(Notification {
                    on,
                    step: r.step,
                    to,
                    channels,
                    template: r.template,
                });
            }
        }
        out
    }

    fn schedule_section(&mut self, node: Option<&Node>) -> Vec<RecurringStart> {
        let path = Path::root().key("schedule");
        let mut out = Vec::new();
        let Some(node) = node else { return out };
        for (i, n) in self.items(&path, node).into_iter().enumerate() {
            let p = path.index(i);
            let Some(r) = self.de::<RawSchedule>(&p, n) else {
                continue;
            };
            let fields = r.cron.split_whitespace().count();
            let expr = if fields == 5 {
                format!("0 {}", r.cron.trim())
            } else {
                r.cron.trim().to_string()
            };
            let problem = cron_problem(&expr)
                .or_else(|| expr.parse::<cron::Schedule>().err().map(|e| e.to_string()));
            let schedule = match problem {
                None => expr.parse::<cron::Schedule>().ok(),
                Some(why) => {
                    self.err(
                        &p.key("cron"),
                        Code::BadCron,
                        format!("bad cron expression `{}`: {why}", r.cron),
                        Some("five fields `minute hour day month weekday`, e.g. `0 9 1 12 *` for 09:00 on 1 December, or `0 9 * * MON`".into()),
                    );
                    None
                }
            };
            let timezone = match &r.timezone {
                None => Some(crate::calendar::LEGAL_TZ),
                Some(tz) => match tz.parse::<chrono_tz::Tz>() {
                    Ok(t) => Some(t),
                    Err(_) => {
                        self.err(
                            &p.key("timezone"),
                            Code::BadValue,
                            format!("unknown time zone `{tz}`"),
                            Some("use `Asia/Shanghai`".into()),
                        );
                        None
                    }
                },
            };
            if let Some(prof) = &r.profile {
                self.profile_ref(&p.key("profile"), prof);
            }
            let mut variables = IndexMap::new();
            for (k, v) in &r.variables {
                let vp = p.key("variables").key(k);
                if let Some(Some(ty)) = self.var_ref(&vp, k) {
                    if let Some(v) = self.value(&vp, &ty, v) {
                        variables.insert(k.clone(), v);
                    }
                }
            }
            if let (Some(schedule), Some(timezone)) = (schedule, timezone) {
                out.push(RecurringStart {
                    cron: expr,
                    schedule,
                    timezone,
                    profile: r.profile,
                    variables,
                    description: r.description,
                });
            }
        }
        out
    }

    /// A party: exactly one of role, person, variable (or `assignee`).
    pub fn party(&mut self, path: &Path, r: &RawParty, allow_assignee: bool) -> Option<Party> {
        let given = [
            r.role.is_some(),
            r.person.is_some(),
            r.variable.is_some(),
            r.assignee.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if given != 1 {
            let keys = if allow_assignee {
                "`role`, `person`, `variable` or `assignee: true`"
            } else {
                "`role`, `person` or `variable`"
            };
            self.err(
                path,
                Code::BadValue,
                format!("give exactly one of {keys}"),
                None,
            );
            return None;
        }
        if r.within.is_some() && r.role.is_none() {
            self.err(
                &path.key("within"),
                Code::BadValue,
                "`within` only scopes a `role`".into(),
                None,
            );
            return None;
        }
        if let Some(role) = &r.role {
            let role = self.role_ref(&path.key("role"), role);
            let within = match &r.within {
                Some(v) => match self.var_ref(&path.key("within"), v)? {
                    Some(t)
                        if !matches!(
                            t,
                            ValueType::String | ValueType::Agency | ValueType::Enum(_)
                        ) =>
                    {
                        self.err(&path.key("within"), Code::TypeMismatch, format!("variable `{v}` is a {t}; `within` needs a string, enum or agency naming a unit"), None);
                        return None;
                    }
                    _ => Some(v.clone()),
                },
                None => None,
            };
            return role.map(|role| Party::Role { role, within });
        }
        if let Some(p) = &r.person {
            return Some(Party::Person(p.clone()));
        }
        if let Some(v) = &r.variable {
            let ty = self.var_ref(&path.key("variable"), v)?;
            let ok = match &ty {
                None => true,
                Some(ValueType::List(t)) => matches!(
                    **t,
                    ValueType::Person | ValueType::Agency | ValueType::Email | ValueType::Phone
                ),
                Some(t) => matches!(
                    t,
                    ValueType::Person | ValueType::Agency | ValueType::Email | ValueType::Phone
                ),
            };
            if !ok {
                self.err(
                    &path.key("variable"),
                    Code::TypeMismatch,
                    format!(
                        "variable `{v}` is a {}, which cannot receive anything",
                        ty.expect("checked")
                    ),
                    Some(
                        "use a person, agency, email or phone variable (or a list of them)".into(),
                    ),
                );
                return None;
            }
            return Some(Party::Variable(v.clone()));
        }
        if !allow_assignee {
            self.err(
                &path.key("assignee"),
                Code::BadValue,
                "`assignee` is only valid in notifications".into(),
                None,
            );
            return None;
        }
        if r.assignee == Some(false) {
            self.err(
                &path.key("assignee"),
                Code::BadValue,
                "write `assignee: true`, or leave it out".into(),
                None,
            );
            return None;
        }
        Some(Party::Assignee)
    }

    /// A deadline or timer.
    pub fn deadline(
        &mut self,
        path: &Path,
        r: &RawDeadline,
        is_notice: bool,
    ) -> Option<DeadlineDef> {
        let period = self.period_ref(&path.key("period"), &r.period);
        let from = match r.from.as_deref() {
            None | Some("opened") => Some(StartRef::Opened),
            Some("receipt") if is_notice => Some(StartRef::Receipt),
            Some("receipt") => {
                self.err(
                    &path.key("from"),
                    Code::BadValue,
                    "`from: receipt` only applies to notices".into(),
                    Some("use `opened` or `var.NAME`".into()),
                );
                None
            }
            Some(s) => {
                match s.strip_prefix("var.") {
                    Some(v) => match self.var_ref(&path.key("from"), v) {
                        Some(Some(t)) if !t.is_temporal() => {
                            self.err(&path.key("from"), Code::TypeMismatch, format!("variable `{v}` is a {t}; a period starts from a date or datetime"), None);
                            None
                        }
                        Some(_) => Some(StartRef::Variable(v.into())),
                        None => None,
                    },
                    None => {
                        self.err(
                            &path.key("from"),
                            Code::BadValue,
                            format!("unknown start `{s}`"),
                            Some("use `opened`, `receipt` (notices) or `var.NAME`".into()),
                        );
                        None
                    }
                }
            }
        };
        let bound = match r.bound.as_deref() {
            None | Some("within") => Some(crate::calendar::Bound::Within),
            Some("at_least") => Some(crate::calendar::Bound::AtLeast),
            Some(other) => {
                self.err(
                    &path.key("bound"),
                    Code::BadValue,
                    format!("unknown bound `{other}`"),
                    Some("`within` (a deadline, …内) or `at_least` (a minimum, 不少于…)".into()),
                );
                None
            }
        };
        let cutoff = match &r.cutoff {
            None => Some(None),
            Some(t) => match NaiveTime::parse_from_str(t, "%H:%M") {
                Ok(t) => Some(Some(t)),
                Err(_) => {
                    self.err(
                        &path.key("cutoff"),
                        Code::BadValue,
                        format!("bad cut-off `{t}`"),
                        Some("write the business-hours cut-off as HH:MM, e.g. 17:30".into()),
                    );
                    None
                }
            },
        };
        let mut reminders = Vec::new();
        for (i, rem) in r.remind.iter().enumerate() {
            match rem.parse::<Period>() {
                Ok(p) => reminders.push(p),
                Err(e) => self.err(
                    &path.key("remind").index(i),
                    Code::BadPeriod,
                    format!("bad reminder period `{rem}`"),
                    Some(e.to_string()),
                ),
            }
        }
        let on_expiry = match &r.on_expiry {
            None => Some(None),
            Some(x) => {
                let ep = path.key("on_expiry");
                if x.goto.is_none() && x.notify.is_empty() {
                    self.err(
                        &ep,
                        Code::MissingKey,
                        "`on_expiry` needs `goto:`, `notify:` or both".into(),
                        None,
                    );
                }
                if let Some(g) = &x.goto {
                    self.step_ref(&ep.key("goto"), g);
                }
                let notify: Vec<Option<RoleRef>> = x
                    .notify
                    .iter()
                    .enumerate()
                    .map(|(i, role)| self.role_ref(&ep.key("notify").index(i), role))
                    .collect();
                if let Some(t) = &x.template {
                    self.template_ref(&ep.key("template"), t);
                }
                notify
                    .into_iter()
                    .collect::<Option<Vec<_>>>()
                    .map(|notify| {
                        Some(Expiry {
                            goto: x.goto.clone(),
                            notify,
                            template: x.template.clone(),
                        })
                    })
            }
        };
        Some(DeadlineDef {
            period: period?,
            from: from?,
            bound: bound?,
            include_start_day: r.include_start_day.unwrap_or(false),
            cutoff: cutoff?,
            reminders,
            on_expiry: on_expiry?,
        })
    }
}

/// Checks the fields of a cron expression (with its seconds field) and says
/// which one is wrong; the `cron` crate's own errors do not.
fn cron_problem(expr: &str) -> Option<String> {
    const FIELDS: [(&str, u32, u32); 6] = [
        ("second", 0, 59),
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("weekday", 0, 0),
    ];
    let parts: Vec<&str> = expr.split_whitespace().collect();
    if !(6..=7).contains(&parts.len()) {
        return Some(format!(
            "expected 5 fields (or 6 with seconds), found {}",
            parts.len().saturating_sub(1)
        ));
    }
    for (part, (name, lo, hi)) in parts.iter().zip(FIELDS) {
        for token in part.split(',') {
            let (range, step) = token.split_once('/').unwrap_or((token, "1"));
            if step.parse::<u32>().map_or(true, |s| s == 0) {
                return Some(format!("the {name} field has a bad step `/{step}`"));
            }
            for v in range.split('-') {
                if v == "*" || v == "?" || v.is_empty() {
                    continue;
                }
                let numeric = v.chars().all(|c| c.is_ascii_digit());
                if name == "weekday" {
                    if numeric {
                        return Some(format!(
                            "weekday `{v}` is ambiguous (cron dialects disagree on whether 1 is Monday or Sunday); write MON, TUE, WED, THU, FRI, SAT or SUN"
                        ));
                    }
                    continue;
                }
                if name == "month" && !numeric {
                    continue;
                }
                match v.parse::<u32>() {
                    Ok(n) if (lo..=hi).contains(&n) => {}
                    _ => return Some(format!("the {name} field `{v}` is outside {lo}–{hi}")),
                }
            }
        }
    }
    None
}

/// Parses a type name without reporting (for the name pass).
fn quiet_type(t: &str, values: Option<&[String]>) -> Option<ValueType> {
    let t = t.trim();
    if let Some(inner) = t.strip_prefix("list<").and_then(|s| s.strip_suffix('>')) {
        return quiet_type(inner, values).map(|x| ValueType::List(Box::new(x)));
    }
    Some(match t {
        "string" => ValueType::String,
        "text" => ValueType::Text,
        "int" => ValueType::Int,
        "bool" => ValueType::Bool,
        "date" => ValueType::Date,
        "datetime" => ValueType::DateTime,
        "email" => ValueType::Email,
        "phone" => ValueType::Phone,
        "person" => ValueType::Person,
        "agency" => ValueType::Agency,
        "period" => ValueType::Period,
        "role" => ValueType::Role,
        "enum" => ValueType::Enum(values?.to_vec()),
        _ => return None,
    })
}

/// Maps a serde error to (code, message, hint, path).
fn describe_serde_error(
    e: &marked_yaml::FromNodeError,
    path: Path,
) -> (Code, String, Option<String>, Path) {
    use marked_yaml::Error as E;
    match &**e {
        E::UnknownFieldError(field, expected, _) => {
            let hint = suggest(field, "key", expected.iter().copied());
            // serde-path already ends with the unknown key.
            (
                Code::UnknownKey,
                format!("unknown key `{field}`"),
                Some(hint),
                path,
            )
        }
        E::NotBoolean(_) => (
            Code::WrongType,
            "wrong type: expected true or false".into(),
            None,
            path,
        ),
        E::IntegerParseFailure(_, _) => (
            Code::WrongType,
            "wrong type: expected a whole number".into(),
            None,
            path,
        ),
        E::FloatParseFailure(_, _) => (
            Code::WrongType,
            "wrong type: expected a number".into(),
            None,
            path,
        ),
        E::Other(msg, _) => {
            if let Some(rest) = msg.strip_prefix("missing field `") {
                let field = rest.trim_end_matches('`');
                let p = path.key(field);
                (
                    Code::MissingKey,
                    format!("missing required key `{field}`"),
                    None,
                    p,
                )
            } else if let Some(rest) = msg.strip_prefix("invalid type: ") {
                let (found, expected) = rest
                    .split_once(", expected ")
                    .unwrap_or((rest, "another type"));
                let expected = expected
                    .replace("struct Raw", "a mapping (")
                    .replace("a map", "a mapping");
                let expected = if expected.starts_with("a mapping (") {
                    "a mapping".to_string()
                } else {
                    expected
                };
                let found = match found {
                    "sequence" => "a list".to_string(),
                    "map" => "a mapping".to_string(),
                    f if f.starts_with("string ") => format!("the text {}", &f[7..]),
                    f => f.to_string(),
                };
                let expected = expected.replace("a sequence", "a list");
                (
                    Code::WrongType,
                    format!("wrong type: expected {expected}, found {found}"),
                    None,
                    path,
                )
            } else {
                (Code::WrongType, msg.clone(), None, path)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_fields() {
        assert_eq!(cron_problem("0 0 9 1 12 *"), None);
        assert_eq!(cron_problem("0 0 9 * * MON-FRI"), None);
        assert!(cron_problem("0 0 9 32 12 *")
            .unwrap()
            .contains("day of month field `32` is outside 1–31"));
        assert!(cron_problem("0 0 9 * * 1").unwrap().contains("ambiguous"));
        assert!(cron_problem("0 0 25 * * *").unwrap().contains("hour"));
        assert!(cron_problem("0 0 9 * *")
            .unwrap()
            .contains("expected 5 fields"));
    }

    #[test]
    fn rule_ids() {
        for ok in ["XC-19", "SQ-19(二)", "XC-21(七)", "RC-4"] {
            assert!(is_rule_id(ok), "{ok}");
        }
        for bad in ["XC19", "xc-19", "XC-", "XC-19(2)", "XC-1a"] {
            assert!(!is_rule_id(bad), "{bad}");
        }
    }
}
