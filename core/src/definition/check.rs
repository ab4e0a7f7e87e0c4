//! Stage 2: from the node tree to a checked [`Definition`], collecting every
//! problem on the way.
//!
//! The walk goes in three passes. First the *names* of every section are
//! collected from the tree (step ids, roles, variables, templates, …), so
//! that a reference to an entry whose body is broken is not reported a second
//! time as "unknown". Then each entry is deserialised on its own into its raw
//! struct and checked into the model. Last, the flow of the completed steps
//! is checked (reachability, ends, parallel joins) in `flow.rs`.
//!
//! This file holds the checker's state, its reporting helpers and the walk
//! of the document; the rules live beside it: `sections.rs` (roles,
//! parameters, profiles, variables, templates, documents, notifications,
//! schedule), `steps.rs` (each step kind), `refs.rs` (references, periods,
//! CEL, parties, deadlines), `values.rs` (types and typed values),
//! `typing.rs` (the types of CEL expressions) and `calls.rs` (a `call`
//! against the process it calls).

use std::collections::BTreeSet;
use std::path::PathBuf;

use indexmap::{IndexMap, IndexSet};
use marked_yaml::Node;
use serde::de::DeserializeOwned;

use super::calls::ProcessInterface;
use super::diagnostic::{suggest, Code, Diagnostic};
use super::model::*;
use super::raw;
use super::source::{Path, Source};
use super::typing::Samples;

/// What a definition is checked against besides itself.
#[derive(Clone, Debug, Default)]
pub struct LoadContext {
    /// The folder template `file:`s are relative to; `None` skips reading them.
    pub base_dir: Option<PathBuf>,
    /// The process ids a `call` step may name; `None` skips that check
    /// (a single file checked on its own).
    pub processes: Option<BTreeSet<String>>,
    /// What a `call` step is checked against: the variables, profiles and
    /// end results of each process it may name, by id. A process not in
    /// it (a single file checked on its own, a stored definition) is not
    /// checked.
    pub interfaces: std::collections::BTreeMap<String, ProcessInterface>,
    /// Template files by relative path, used instead of `base_dir` (a
    /// deployed definition carries the files it was deployed with).
    pub files: Option<std::collections::BTreeMap<String, String>>,
    /// The template files the checker read from `base_dir`, by relative
    /// path: what deploy stores, so what is stored is exactly what was
    /// checked (never a second read of a file that may have changed).
    pub read: std::cell::RefCell<std::collections::BTreeMap<String, String>>,
    /// A definition reloaded from the store, deployed by an earlier duban:
    /// the checks added since (E030–E037, [`Code::added_after_deploys`]) are
    /// not applied, so a stricter validator never strands the cases
    /// running on it. They apply to every new deploy.
    ///
    /// Nor is a stored definition validated again on every command (issue
    /// 12, finding 10): the deploy checked this very text, so the checks
    /// that judge the definition but build nothing of the model are not
    /// run at all: the flow (reachability, paths to an end, joins) and the
    /// CEL types and costs, whose findings the line above drops anyway.
    /// Everything the model is built from is still checked: the shape of
    /// each entry, every reference, period, cron and CEL expression.
    pub deployed: bool,
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
    /// Sample values of the declared variables and parameters, on which
    /// expressions are evaluated for their types (set after the name pass).
    pub samples: Option<Samples>,
    /// The fact names the expressions read so far.
    pub facts_read: BTreeSet<String>,
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
        samples: None,
        facts_read: BTreeSet::new(),
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
use super::values::quiet_type;

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
        if self.ctx.deployed && code.added_after_deploys() {
            return;
        }
        let d = self.src.diag(path, code, message, hint);
        self.diags.push(d);
    }

    /// Whether CEL expressions are judged for their types and costs
    /// (`typing.rs`, `cost.rs`): not for a stored definition, which would
    /// drop every finding of theirs (E033–E035, E037 are
    /// [`Code::added_after_deploys`]), so evaluating its expressions on the
    /// samples would be work for nothing on every load.
    pub fn judges_cel(&self) -> bool {
        !self.ctx.deployed
    }

    /// A diagnostic pointing at `token` inside the scalar at `path` (the
    /// misspelt name in an expression), not at the scalar's start.
    pub fn err_token(
        &mut self,
        path: &Path,
        (token, lines_down): (&str, usize),
        code: Code,
        message: String,
        hint: Option<String>,
    ) {
        if self.ctx.deployed && code.added_after_deploys() {
            return;
        }
        let (line, column) = self.src.locate_token(path, token, lines_down);
        let d = self.src.diag_at(line, column, path, code, message, hint);
        self.diags.push(d);
    }

    pub fn err_key(&mut self, path: &Path, code: Code, message: String, hint: Option<String>) {
        if self.ctx.deployed && code.added_after_deploys() {
            return;
        }
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

    pub(super) fn items<'n>(&mut self, path: &Path, node: &'n Node) -> Vec<&'n Node> {
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
                    Some("rule ids look like `XC-19` or `SQ-19(二)`, as in docs/rules.md".into()),
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

    fn document(&mut self) -> Option<Definition> {
        let root = self.src.root.as_ref()?;
        let Node::Mapping(top) = root else {
            return None; // the loader already refused a non-mapping top level
        };
        let here = Path::root();
        // A misspelt section (`varibles:`) is read as the section it was
        // meant to be, when that one is absent: the spelling is one error,
        // not one more for every variable the steps then could not find.
        let misspelt: Vec<(&str, &Node)> = top
            .iter()
            .filter(|(k, _)| !raw::TOP_KEYS.contains(&k.as_str()))
            .filter_map(|(k, v)| {
                let meant = crate::definition::diagnostic::closest(
                    k.as_str(),
                    raw::TOP_KEYS.iter().copied(),
                )?;
                let absent = top.iter().all(|(other, _)| other.as_str() != meant);
                absent.then_some((meant, v))
            })
            .collect();
        let get = |k: &str| {
            top.iter()
                .find(|(key, _)| key.as_str() == k)
                .map(|(_, v)| v)
                .or_else(|| misspelt.iter().find(|(m, _)| *m == k).map(|(_, v)| *v))
        };
        for (k, _) in top.iter() {
            if !raw::TOP_KEYS.contains(&k.as_str()) {
                let mut hint = suggest(k.as_str(), "key", raw::TOP_KEYS.iter().copied());
                if let Some((meant, _)) = misspelt
                    .iter()
                    .find(|(_, v)| std::ptr::eq(*v, top.get_node(k.as_str()).unwrap_or(*v)))
                {
                    hint = format!(
                        "did you mean `{meant}`? (its entries are checked as `{meant}`, so what uses them is not reported again)"
                    );
                }
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
        if self.judges_cel() {
            self.samples = Some(Samples::new(&self.variables, &self.params));
        }

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
        let variables = self.variables_section(get("variables"), &parameters, &profiles);
        let templates = self.templates_section(get("templates"));
        let numbering =
            self.numbering_section(get("numbering"), &parameters, &profiles, &variables);
        let documents = self.documents_section(
            get("documents"),
            &numbering,
            &parameters,
            &profiles,
            &templates,
        );
        let start: Option<String> = get("start").and_then(|n| self.de(&here.key("start"), n));
        if let Some(s) = &start {
            self.step_ref(&here.key("start"), s);
        }
        let steps = self.steps_section(get("steps"));
        let notifications = self.notifications_section(get("notifications"));
        let schedule = self.schedule_section(get("schedule"));

        // With a duplicated step id the loader kept only one of the two
        // entries; checking the flow of that guess would only mislead.
        // A stored definition's flow was checked when it was deployed.
        let dup_steps = self.src_dups.iter().any(|p| p.starts_with("steps."));
        if let (Some(start), Some(steps), false, false) =
            (&start, &steps, dup_steps, self.ctx.deployed)
        {
            super::flow::check_flow(self, start, steps);
        }

        let steps: IndexMap<String, Step> = steps?
            .into_iter()
            .map(|(k, v)| v.map(|v| (k, v)))
            .collect::<Option<_>>()?;
        let has_reports = steps
            .values()
            .any(|s| matches!(s.kind, StepKind::Report { .. }));
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
            steps,
            notifications,
            numbering,
            documents,
            templates,
            schedule,
            facts_read: std::mem::take(&mut self.facts_read),
            has_reports,
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
                let values: Option<Vec<String>> = match m.and_then(|m| m.get("values")) {
                    Some(Node::Sequence(s)) => Some(
                        s.iter()
                            .filter_map(|n| n.as_scalar().map(|x| x.as_str().to_string()))
                            .collect(),
                    ),
                    // `values: profile.PARAM`: what any profile may allow.
                    Some(Node::Scalar(x)) => x
                        .as_str()
                        .strip_prefix("profile.")
                        .map(|param| profile_values(get, param.trim())),
                    _ => None,
                };
                let parsed = ty.and_then(|t| quiet_type(&t, values.as_deref()));
                if is_var {
                    self.variables.insert(k, parsed);
                } else {
                    self.params.insert(k, parsed);
                }
            }
        }
    }
}

/// Every value any profile gives parameter `param` (a list of texts), and
/// its default's, in order of first appearance, read leniently: the values
/// an enum with `values: profile.PARAM` may take in some profile.
fn profile_values<'n>(get: &impl Fn(&str) -> Option<&'n Node>, param: &str) -> Vec<String> {
    let list = |n: Option<&Node>| -> Vec<String> {
        n.and_then(Node::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_scalar().map(|x| x.as_str().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out: Vec<String> = Vec::new();
    let default = get("parameters")
        .and_then(Node::as_mapping)
        .and_then(|m| m.get_mapping(param))
        .and_then(|m| m.get("default"));
    let mut all = list(default);
    if let Some(profiles) = get("profiles").and_then(Node::as_mapping) {
        for (_, prof) in profiles.iter() {
            let v = prof
                .as_mapping()
                .and_then(|m| m.get_mapping("values"))
                .and_then(|m| m.get(param));
            all.extend(list(v));
        }
    }
    for v in all {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
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
    fn rule_ids() {
        for ok in ["XC-19", "SQ-19(二)", "XC-21(七)", "RC-4"] {
            assert!(is_rule_id(ok), "{ok}");
        }
        for bad in ["XC19", "xc-19", "XC-", "XC-19(2)", "XC-1a"] {
            assert!(!is_rule_id(bad), "{bad}");
        }
    }
}
