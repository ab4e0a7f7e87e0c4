//! The id-keyed and list sections of a definition other than `steps`:
//! roles, parameters, profiles, variables, templates, documents,
//! notifications and recurring starts.

use indexmap::IndexMap;
use marked_yaml::Node;

use super::check::Checker;
use super::diagnostic::{suggest, Code};
use super::expr;
use super::model::*;
use super::raw::*;
use super::source::Path;

/// The built-ins a message has for its one recipient, and a document (one
/// text for every recipient) does not.
const RECIPIENT_NAMES: &[&str] = &["recipient", "assignee", "answer_link"];

impl Checker<'_> {
    pub(super) fn roles_section(&mut self, node: Option<&Node>) -> IndexMap<String, Role> {
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

    pub(super) fn parameters_section(
        &mut self,
        node: Option<&Node>,
    ) -> IndexMap<String, Parameter> {
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

    pub(super) fn profiles_section(
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

    /// `values: profile.PARAM` of enum variable `var`: the parameter, a
    /// `list<string>` or `list<text>` every profile gives at least one
    /// value; returns every value any profile allows (the enum's values
    /// for the checks at load) and the parameter.
    fn enum_from_profile(
        &mut self,
        path: &Path,
        var: &str,
        text: &str,
        params: &IndexMap<String, Parameter>,
        profiles: &IndexMap<String, Profile>,
    ) -> Option<(Vec<String>, String)> {
        let Some(name) = text.trim().strip_prefix("profile.").map(str::trim) else {
            self.err(
                path,
                Code::BadValue,
                format!("`values:` of `{var}` is `{text}`, neither a list of values nor `profile.PARAM`"),
                Some("list the values (`values: [个人申请, 单位推荐]`), or let each profile set them: `values: profile.candidate_sources`".into()),
            );
            return None;
        };
        let Some(param) = params.get(name) else {
            if !self.params.contains_key(name) {
                let hint = suggest(name, "parameter", self.params.keys().map(String::as_str));
                self.err(
                    path,
                    Code::UnknownParameter,
                    format!("unknown profile parameter `{name}`"),
                    Some(hint),
                );
            }
            return None;
        };
        if !matches!(&param.ty, ValueType::List(t) if matches!(**t, ValueType::String | ValueType::Text))
        {
            self.err(
                path,
                Code::TypeMismatch,
                format!("parameter `{name}` is of type {}, but the values of an enum are a list<string>", param.ty),
                Some(format!("declare `{name}` with `type: list<string>`")),
            );
            return None;
        }
        let mut all: Vec<String> = Vec::new();
        let mut lists: Vec<(String, Vec<String>)> = Vec::new();
        if profiles.is_empty() {
            lists.push(("(default)".into(), profile_list(param.default.as_ref())));
        }
        for (pid, prof) in profiles {
            lists.push((
                format!("profile `{pid}`"),
                profile_list(prof.values.get(name)),
            ));
        }
        let mut ok = true;
        for (who, list) in lists {
            if list.is_empty() {
                self.err(
                    path,
                    Code::BadValue,
                    format!(
                        "{who} gives parameter `{name}` no values, so enum `{var}` could take none"
                    ),
                    Some(format!("give `{name}` at least one value in every profile")),
                );
                ok = false;
            }
            for v in list {
                if !all.contains(&v) {
                    all.push(v);
                }
            }
        }
        ok.then(|| (all, name.to_string()))
    }

    pub(super) fn variables_section(
        &mut self,
        node: Option<&Node>,
        params: &IndexMap<String, Parameter>,
        profiles: &IndexMap<String, Profile>,
    ) -> IndexMap<String, Variable> {
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
            let (values, values_from) = match &r.values {
                None => (None, None),
                Some(RawValues::List(v)) => (Some(v.clone()), None),
                Some(RawValues::FromProfile(text)) => {
                    match self.enum_from_profile(&p.key("values"), &id, text, params, profiles) {
                        Some((all, param)) => (Some(all), Some(param)),
                        None => continue,
                    }
                }
            };
            let Some(ty) = self.value_type(&p.key("type"), &r.ty, values.as_deref()) else {
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
            if let (Some(param), Some(d)) = (&values_from, &default) {
                for (pid, prof) in profiles {
                    let allowed = profile_list(prof.values.get(param));
                    let refused: Vec<String> = texts_of(d)
                        .into_iter()
                        .filter(|x| !allowed.contains(x))
                        .collect();
                    if !refused.is_empty() {
                        self.err(
                            &p.key("default"),
                            Code::BadValue,
                            format!(
                                "default `{}` of `{id}` is not among the values profile `{pid}` allows ({})",
                                refused.join("`, `"),
                                allowed.join("、")
                            ),
                            Some(format!("add it to `{param}` of profile `{pid}`, or choose a default every profile allows")),
                        );
                    }
                }
            }
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
                    values_from,
                },
            );
        }
        out
    }

    pub(super) fn templates_section(&mut self, node: Option<&Node>) -> IndexMap<String, Template> {
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
                (None, Some(f)) if self.ctx.files.is_some() => {
                    match self.ctx.files.as_ref().and_then(|m| m.get(f)) {
                        Some(text) => Some(text.clone()),
                        None => {
                            self.err(
                                &p.key("file"),
                                Code::MissingFile,
                                format!("template file `{f}` was not deployed with the definition"),
                                None,
                            );
                            None
                        }
                    }
                }
                (None, Some(f)) => match &self.ctx.base_dir {
                    None => Some(String::new()),
                    Some(dir) => match super::files::read(dir, f) {
                        Ok(text) => {
                            self.ctx.read.borrow_mut().insert(f.clone(), text.clone());
                            Some(text)
                        }
                        Err(refusal) => {
                            self.err(
                                &p.key("file"),
                                Code::MissingFile,
                                refusal.message,
                                refusal.hint,
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
                let body_key = if r.file.is_some() { "file" } else { "body" };
                let texts = [
                    ("subject", r.subject.as_deref()),
                    (body_key, Some(body.as_str())),
                    ("sms", r.sms.as_deref()),
                ];
                for (key, text) in texts {
                    if let Some(text) = text {
                        self.template_names(
                            &p.key(key),
                            &id,
                            key,
                            r.file.as_deref().filter(|_| key == "file"),
                            text,
                        );
                    }
                }
                for (name, text) in &r.sms_params {
                    let path = p.key("sms_params").key(name);
                    self.template_names(&path, &id, &format!("sms_params.{name}"), None, text);
                }
                out.insert(
                    id,
                    Template {
                        subject: r.subject,
                        body,
                        sms: r.sms,
                        sms_params: r.sms_params,
                    },
                );
            }
        }
        out
    }

    /// Every name the template text reads must be a variable or a built-in,
    /// and every field it reads below one must be there.
    fn template_names(&mut self, path: &Path, id: &str, key: &str, file: Option<&str>, text: &str) {
        use super::templates::{self, ProblemKind, BUILTINS};
        let what = match file {
            Some(f) => format!("template `{id}` ({f}"),
            None => format!("template `{id}` ({key}"),
        };
        match templates::names(text) {
            Err(e) => self.err(
                path,
                Code::TemplateSyntax,
                match e.at {
                    Some((line, column)) => format!(
                        "{what} line {line}, column {column}) does not parse: {}",
                        e.reason
                    ),
                    None => format!("{what}) does not parse: {}", e.reason),
                },
                Some("templates are handlebars: {{name}}, {{#if x}}…{{/if}}, {{#each list}}…{{/each}}".into()),
            ),
            Ok(uses) => {
                // Names are pointed at where the text's lines are the
                // file's: an inline text on one line, or a block scalar (a
                // quoted text with `\n` in it keeps the caret at its start).
                let exact =
                    file.is_none() && (!text.contains('\n') || self.src.is_block_scalar(path));
                let mut seen = std::collections::BTreeSet::new();
                let mut shapes = std::collections::BTreeMap::new();
                for u in uses {
                    let builtin = BUILTINS.contains(&u.name.as_str());
                    let variable = self.variables.get(&u.name);
                    if variable.is_none() && !builtin {
                        if !seen.insert(u.name.clone()) {
                            continue;
                        }
                        let known = self.variables.keys().map(String::as_str).chain(BUILTINS.iter().copied());
                        let hint = suggest(&u.name, "variable", known);
                        // An inline text: the caret goes to the name in it.
                        let token = if exact { u.name.as_str() } else { "" };
                        self.err_token(
                            path,
                            (token, u.line.saturating_sub(1)),
                            Code::UnknownVariable,
                            format!("{what} line {}) names `{}`, which is neither a variable of the process nor a built-in", u.line, u.name),
                            Some(hint),
                        );
                        continue;
                    }
                    if u.fields.is_empty() {
                        continue;
                    }
                    // What the renderer gives the name; a variable that is
                    // also a built-in may be either, a broken type anything.
                    let shape = shapes.entry(u.name.clone()).or_insert_with(|| match (variable, builtin) {
                        (Some(Some(ty)), false) => templates::shape_of(ty),
                        (None, true) => templates::builtin_shape(
                            &u.name,
                            self.params.iter().map(|(k, t)| (k.as_str(), t.as_ref())),
                        ),
                        _ => templates::Shape::Unknown,
                    });
                    let Some(problem) = templates::follow(shape, &u.fields) else {
                        continue;
                    };
                    let before = std::iter::once(u.name.as_str())
                        .chain(u.fields[..problem.at].iter().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join(".");
                    let field = &u.fields[problem.at];
                    let read = format!("{before}.{field}");
                    if !seen.insert(read.clone()) {
                        continue;
                    }
                    let full = format!("{}.{}", u.name, u.fields.join("."));
                    let (message, hint) = match problem.kind {
                        ProblemKind::NoField { what: record, member, known } => {
                            let list = if known.is_empty() {
                                format!("it has no {member}s")
                            } else {
                                format!("its {member}s are {}", known.join(", "))
                            };
                            (
                                format!("{what} line {}) reads `{full}`, but `{before}`, {record}, has no {member} `{field}`; {list}", u.line),
                                suggest(field, member, known.iter().copied()),
                            )
                        }
                        ProblemKind::Scalar { what: value } => (
                            format!("{what} line {}) reads `{full}`, but `{before}` is {value}, which has no fields", u.line),
                            format!("write `{{{{{before}}}}}` for the value itself"),
                        ),
                        ProblemKind::List { what: list } => (
                            format!("{what} line {}) reads `{full}`, but `{before}` is {list}: its items are read by number (`{before}.0`), and it has no field `{field}`", u.line),
                            format!("to go through the items write `{{{{#each {before}}}}}…{{{{/each}}}}`; for how many there are, `{{{{len {before}}}}}`"),
                        ),
                    };
                    let token = if exact { field.as_str() } else { "" };
                    self.err_token(
                        path,
                        (token, u.line.saturating_sub(1)),
                        Code::UnknownVariable,
                        message,
                        Some(hint),
                    );
                }
            }
        }
    }

    /// `numbering:`: each series' pattern is checked (one `{n}`, only
    /// `{year}` beside it; a `profile.PARAM` pattern in every profile), and
    /// the variable its numbers go to, named like the series, must be a
    /// declared `string`, so templates can read it.
    pub(super) fn numbering_section(
        &mut self,
        node: Option<&Node>,
        parameters: &IndexMap<String, Parameter>,
        profiles: &IndexMap<String, Profile>,
        variables: &IndexMap<String, Variable>,
    ) -> IndexMap<String, Numbering> {
        let path = Path::root().key("numbering");
        let mut out = IndexMap::new();
        let Some(node) = node else { return out };
        for (id, n) in self.entries(&path, node) {
            let p = path.key(&id);
            self.check_id(&p, &id, "numbering series");
            let Some(r) = self.de::<RawNumbering>(&p, n) else {
                continue;
            };
            match variables.get(&id).map(|v| &v.ty) {
                Some(ValueType::String) => {}
                Some(other) => self.err(
                    &p,
                    Code::TypeMismatch,
                    format!("the numbers of series `{id}` go to variable `{id}`, which is a {other}, not a string"),
                    Some(format!("declare `{id}: {{ type: string }}` under `variables:`")),
                ),
                None => self.err(
                    &p,
                    Code::UnknownVariable,
                    format!("the numbers of series `{id}` go to variable `{id}`, which is not declared"),
                    Some(format!("declare `{id}: {{ type: string, label: 文号 }}` under `variables:`")),
                ),
            }
            let pattern = match r.pattern.trim().strip_prefix("profile.") {
                Some(param) => {
                    let param = param.trim().to_string();
                    match parameters.get(&param) {
                        None => {
                            self.err(
                                &p.key("pattern"),
                                Code::UnknownParameter,
                                format!("unknown parameter `{param}`"),
                                None,
                            );
                            PatternRef::Param(param)
                        }
                        Some(def) if !matches!(def.ty, ValueType::String | ValueType::Text) => {
                            self.err(
                                &p.key("pattern"),
                                Code::TypeMismatch,
                                format!("parameter `{param}` is a {}, not a text pattern", def.ty),
                                None,
                            );
                            PatternRef::Param(param)
                        }
                        Some(def) => {
                            for (pid, prof) in profiles {
                                match prof.values.get(&param).or(def.default.as_ref()) {
                                    Some(Value::Text(t)) => {
                                        if let Some(why) = pattern_problem(t) {
                                            self.err(
                                                &Path::root().key("profiles").key(pid).key("values").key(&param),
                                                Code::BadValue,
                                                why,
                                                Some("e.g. 许司督〔{year}〕{n}号".into()),
                                            );
                                        }
                                    }
                                    _ => self.err(
                                        &Path::root().key("profiles").key(pid),
                                        Code::MissingParameterValue,
                                        format!("profile `{pid}` gives no pattern `{param}` for numbering series `{id}`"),
                                        None,
                                    ),
                                }
                            }
                            PatternRef::Param(param)
                        }
                    }
                }
                None => {
                    // Reported, and kept, so that the documents numbered by
                    // it are not also reported as naming an unknown series.
                    if let Some(why) = pattern_problem(&r.pattern) {
                        self.err(
                            &p.key("pattern"),
                            Code::BadValue,
                            why,
                            Some("e.g. 许司督〔{year}〕{n}号".into()),
                        );
                    }
                    PatternRef::Literal(r.pattern.clone())
                }
            };
            out.insert(
                id,
                Numbering {
                    pattern,
                    description: r.description,
                    on_start: r.on_start,
                },
            );
        }
        out
    }

    /// A document's layout: a named one of [`LAYOUTS`], or a text parameter
    /// whose value in every profile (or its default) names one.
    fn layout_ref(
        &mut self,
        p: &Path,
        r: &RawDocument,
        parameters: &IndexMap<String, Parameter>,
        profiles: &IndexMap<String, Profile>,
    ) -> LayoutRef {
        let hint = || Some(format!("layouts: {}", LAYOUTS.join(", ")));
        let Some(layout) = r.layout.as_deref().map(str::trim) else {
            return LayoutRef::Named(default_layout(&r.kind).to_string());
        };
        let Some(param) = layout.strip_prefix("profile.") else {
            if !LAYOUTS.contains(&layout) {
                self.err(
                    p,
                    Code::BadValue,
                    format!("unknown layout `{layout}`"),
                    hint(),
                );
            }
            return LayoutRef::Named(layout.to_string());
        };
        let param = param.trim().to_string();
        match parameters.get(&param) {
            None => self.err(
                p,
                Code::UnknownParameter,
                format!("unknown parameter `{param}`"),
                None,
            ),
            Some(def) if !matches!(def.ty, ValueType::String | ValueType::Text) => self.err(
                p,
                Code::TypeMismatch,
                format!("parameter `{param}` is a {}, not a layout's name", def.ty),
                None,
            ),
            Some(def) => {
                let mut check = |at: Path, v: Option<&Value>| match v {
                    Some(Value::Text(t)) if LAYOUTS.contains(&t.as_str()) => {}
                    Some(Value::Text(t)) => {
                        self.err(&at, Code::BadValue, format!("unknown layout `{t}`"), hint())
                    }
                    _ => {}
                };
                check(
                    Path::root().key("parameters").key(&param).key("default"),
                    def.default.as_ref(),
                );
                for (pid, prof) in profiles {
                    check(
                        Path::root()
                            .key("profiles")
                            .key(pid)
                            .key("values")
                            .key(&param),
                        prof.values.get(&param),
                    );
                }
            }
        }
        LayoutRef::Param(param)
    }

    pub(super) fn documents_section(
        &mut self,
        node: Option<&Node>,
        numbering: &IndexMap<String, Numbering>,
        parameters: &IndexMap<String, Parameter>,
        profiles: &IndexMap<String, Profile>,
        templates: &IndexMap<String, Template>,
    ) -> IndexMap<String, Document> {
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
            // A title may read the instance too (`行政执法监督{{letter_kind}}`):
            // the same names and fields as a template.
            if r.title.contains("{{") {
                self.template_names(&p.key("title"), &id, "title", None, &r.title);
            }
            if let Some(series) = &r.number {
                if !numbering.contains_key(series) {
                    let hint = suggest(
                        series,
                        "numbering series id",
                        numbering.keys().map(String::as_str),
                    );
                    self.err(
                        &p.key("number"),
                        Code::BadValue,
                        format!("unknown numbering series `{series}`"),
                        Some(hint),
                    );
                }
            }
            // The addressee, issuer and attachments read the instance as a
            // template does: the same names and fields.
            for (key, text) in [("to", &r.to), ("issuer", &r.issuer)] {
                if let Some(t) = text {
                    self.template_names(&p.key(key), &id, key, None, t);
                }
            }
            for (i, t) in r.attachments.iter().enumerate() {
                self.template_names(&p.key("attachments").index(i), &id, "attachments", None, t);
            }
            // A document is one text for everyone (its file, its PDF, the
            // portal, the case file): it cannot name a message's recipient.
            let mut texts: Vec<(Path, &str)> = vec![(p.key("title"), r.title.as_str())];
            for (key, text) in [("to", &r.to), ("issuer", &r.issuer)] {
                if let Some(t) = text {
                    texts.push((p.key(key), t.as_str()));
                }
            }
            for (i, t) in r.attachments.iter().enumerate() {
                texts.push((p.key("attachments").index(i), t.as_str()));
            }
            if let Some(t) = templates.get(&r.template) {
                texts.push((p.key("template"), t.body.as_str()));
            }
            for (at, text) in texts {
                let Ok(uses) = super::templates::names(text) else {
                    continue;
                };
                let mut named = std::collections::BTreeSet::new();
                for u in uses {
                    if RECIPIENT_NAMES.contains(&u.name.as_str()) && named.insert(u.name.clone()) {
                        self.err(
                            &at,
                            Code::UnknownVariable,
                            format!(
                                "document `{id}` reads `{}`, which only a message to one recipient has: a document is the same text for every recipient (its file, its PDF, the answer portal, the case file)",
                                u.name
                            ),
                            Some("name the agency or person by its variable (`{{agency.name}}`); the answer link belongs in the notice's template".into()),
                        );
                    }
                }
            }
            let layout = self.layout_ref(&p.key("layout"), &r, parameters, profiles);
            out.insert(
                id,
                Document {
                    kind: r.kind,
                    title: r.title,
                    template: r.template,
                    number: r.number,
                    to: r.to,
                    issuer: r.issuer,
                    attachments: r.attachments,
                    layout,
                },
            );
        }
        out
    }

    pub(super) fn notifications_section(&mut self, node: Option<&Node>) -> Vec<Notification> {
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
                // These events belong to the instance, not to a step: a rule
                // limited to a step would never be sent.
                if matches!(
                    on,
                    Some(Event::InstanceStarted | Event::InstanceEnded | Event::InstanceCancelled)
                ) {
                    self.err_key(
                        &p.key("step"),
                        Code::NotSupported,
                        format!(
                            "an `{}` rule with `step:` is never sent: that event belongs to the instance, not to a step",
                            r.on
                        ),
                        Some(format!(
                            "remove `step:`; the rule is then sent for every instance ({})",
                            if on == Some(Event::InstanceEnded) {
                                "when it ends, at whichever `end` step"
                            } else if on == Some(Event::InstanceCancelled) {
                                "when it is cancelled"
                            } else {
                                "when it starts"
                            }
                        )),
                    );
                }
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

    /// `for_each:` of a recurring start: a role's holders, each in a
    /// person variable, or the agencies (of a level), each in an agency
    /// variable.
    fn members(&mut self, p: &Path, f: &RawScheduleForEach) -> Option<Members> {
        let fp = p.key("for_each");
        let (of, wanted) = match (&f.role, &f.agencies) {
            (Some(role), None) => match self.role_ref(&fp.key("role"), role)? {
                RoleRef::Role(r) => (MemberSet::Role(r), ValueType::Person),
                RoleRef::Param(_) => {
                    self.err(
                        &fp.key("role"),
                        Code::NotSupported,
                        "a per-member recurring start names a role of the process, not a profile parameter".into(),
                        Some("write the role id itself, e.g. `role: people_supervisor`".into()),
                    );
                    return None;
                }
            },
            (None, Some(level)) => {
                let levels = crate::runtime::directory_file::LEVELS;
                let level = match level.trim() {
                    "" | "all" => None,
                    l if levels.contains(&l) => Some(l.to_string()),
                    l => {
                        self.err(
                            &fp.key("agencies"),
                            Code::BadValue,
                            format!("unknown level `{l}`"),
                            Some(format!(
                                "one of {}, or `all` for every agency",
                                levels.join(", ")
                            )),
                        );
                        return None;
                    }
                };
                (MemberSet::Agencies(level), ValueType::Agency)
            }
            _ => {
                self.err(
                    &fp,
                    Code::BadValue,
                    "`for_each` of a recurring start gives exactly one of `role:` or `agencies:`".into(),
                    Some("`{ role: people_supervisor, as: supervisor }` starts one instance per holder; `{ agencies: 县级, as: agency }` one per agency of that level (`all`: every agency)".into()),
                );
                return None;
            }
        };
        match self.var_ref(&fp.key("as"), &f.var)? {
            Some(t) if t != wanted => {
                self.err(
                    &fp.key("as"),
                    Code::TypeMismatch,
                    format!(
                        "`as` variable `{}` is of type {t}, but the members are {}",
                        f.var,
                        if wanted == ValueType::Person {
                            "people (type person)"
                        } else {
                            "agencies (type agency)"
                        }
                    ),
                    Some(format!("declare `{}` with `type: {wanted}`", f.var)),
                );
                None
            }
            _ => Some(Members {
                of,
                var: f.var.clone(),
            }),
        }
    }

    pub(super) fn schedule_section(&mut self, node: Option<&Node>) -> Vec<RecurringStart> {
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
            let members = r.for_each.as_ref().and_then(|f| self.members(&p, f));
            // Every variable a start needs is given, or the start is
            // refused at each occurrence, long after validation.
            let member_var = r.for_each.as_ref().map(|f| f.var.as_str());
            let missing: Vec<String> = self
                .src
                .root
                .as_ref()
                .and_then(|root| root.as_mapping()?.get_mapping("variables"))
                .map(|vars| {
                    vars.iter()
                        .filter_map(|(k, v)| {
                            let v = v.as_mapping()?;
                            let required =
                                v.get_scalar("required").map(|s| s.as_str().trim()) == Some("true");
                            let defaulted = v.get("default").is_some();
                            let name = k.as_str();
                            let given = r.variables.contains_key(name) || member_var == Some(name);
                            (required && !defaulted && !given).then(|| name.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
            if !missing.is_empty() {
                self.err(
                    &p,
                    Code::CallMissingInput,
                    format!(
                        "this recurring start gives no value for the required variable{} {}: every start would be refused",
                        if missing.len() > 1 { "s" } else { "" },
                        missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
                    ),
                    Some("give it under `variables:`, give the variable a `default:`, or start one instance per member with `for_each: { role: ROLE, as: VARIABLE }`".into()),
                );
            }
            if let (Some(schedule), Some(timezone)) = (schedule, timezone) {
                if r.for_each.is_none() || members.is_some() {
                    out.push(RecurringStart {
                        cron: expr,
                        schedule,
                        timezone,
                        profile: r.profile,
                        variables,
                        description: r.description,
                        for_each: members,
                    });
                }
            }
        }
        out
    }
}

/// Checks the fields of a cron expression (with its seconds field) and says
/// which one is wrong; the `cron` crate's own errors do not.
pub(super) fn cron_problem(expr: &str) -> Option<String> {
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

/// The texts of a `list<string>` profile value.
fn profile_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::List(items)) => items.iter().flat_map(texts_of).collect(),
        _ => Vec::new(),
    }
}

/// The texts of a value: itself, or its items.
fn texts_of(v: &Value) -> Vec<String> {
    match v {
        Value::Text(s) => vec![s.clone()],
        Value::List(items) => items.iter().flat_map(texts_of).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The E008 diagnostics of a process whose template `t` has this body.
    fn template_errors(body: &str) -> Vec<(String, String, Option<String>)> {
        let text = format!(
            "id: p\nversion: 1\nname: 测试\n\
             parameters:\n  office_name: {{ type: string, default: 办公室 }}\n  lead: {{ type: agency, default: a }}\n\
             variables:\n  agency: {{ type: agency }}\n  candidates: {{ type: list<person> }}\n  \
             title: {{ type: string }}\n  broken: {{ type: no_such_type }}\n  step: {{ type: agency }}\n\
             start: done\nsteps:\n  done: {{ kind: end, name: 结束, result: ok }}\n\
             templates:\n  t:\n    body: {}\n",
            serde_json::json!(body)
        );
        match super::super::load_str("t.yaml", &text, &super::super::LoadContext::default()) {
            Ok(_) => Vec::new(),
            Err(d) => d
                .into_iter()
                .filter(|d| d.message.starts_with("template `t`"))
                .map(|d| (d.code.to_string(), d.message, d.hint))
                .collect(),
        }
    }

    #[test]
    fn template_fields_that_exist_validate() {
        for body in [
            "{{agency.name}} {{agency.email}} {{agency/county}} {{agency.[level]}}",
            "{{candidates.0.name}} {{candidates.[1].mobile}} {{candidates.0.roles.0}}",
            "{{len candidates}} {{#each candidates}}{{name}} {{nmae}}{{/each}}",
            "{{#with agency}}{{nmae}}{{/with}} {{#if agency.mobile}}短信{{/if}}",
            "{{process.version}} {{instance.id}} {{task.step}} {{deadline.last_day}}",
            "{{assignee.name}} {{recipient.mobile}} {{profile.office_name}} {{today}}",
            // Unknown types and ambiguous names: not followed.
            "{{broken.anything}} {{step.nmae}} {{profile.lead.name}}",
        ] {
            assert_eq!(template_errors(body), [], "{body}");
        }
    }

    #[test]
    fn template_fields_that_do_not_exist_are_e008() {
        let e = template_errors("致 {{agency.nmae}}：\n{{agency.nmae}} {{candidates.length}}\n{{title.text}} {{candidates.0.nmae}}\n{{profile.ofice_name}} {{deadline.day}}");
        let got: Vec<(&str, &str, &str)> = e
            .iter()
            .map(|(c, m, h)| (c.as_str(), m.as_str(), h.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "E008",
                    "template `t` (body line 1) reads `agency.nmae`, but `agency`, an agency record, has no field `nmae`; its fields are id, name, level, county, email, mobile",
                    "did you mean `name`?"
                ),
                (
                    "E008",
                    "template `t` (body line 2) reads `candidates.length`, but `candidates` is a list<person>: its items are read by number (`candidates.0`), and it has no field `length`",
                    "to go through the items write `{{#each candidates}}…{{/each}}`; for how many there are, `{{len candidates}}`"
                ),
                (
                    "E008",
                    "template `t` (body line 3) reads `title.text`, but `title` is a string value, which has no fields",
                    "write `{{title}}` for the value itself"
                ),
                (
                    "E008",
                    "template `t` (body line 3) reads `candidates.0.nmae`, but `candidates.0`, a person record, has no field `nmae`; its fields are id, name, roles, organisation, level, county, email, mobile",
                    "did you mean `name`?"
                ),
                (
                    "E008",
                    "template `t` (body line 4) reads `profile.ofice_name`, but `profile`, the profile's values, has no parameter `ofice_name`; its parameters are office_name, lead",
                    "did you mean `office_name`?"
                ),
                (
                    "E008",
                    "template `t` (body line 4) reads `deadline.day`, but `deadline`, the deadline record, has no field `day`; its fields are last_day, deadline, explanation",
                    "known fields: last_day, deadline, explanation"
                ),
            ]
        );
    }

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
}
