//! Resolving references: steps, roles, variables, templates, documents,
//! profile parameters, periods, CEL expressions, parties and deadlines.
//!
//! Each resolver reports an unknown name with a "did you mean" hint and
//! returns `None`, so the caller can go on checking the rest.

use chrono::NaiveTime;
use indexmap::IndexMap;

use super::check::Checker;
use super::diagnostic::{suggest, Code};
use super::expr;
use super::model::*;
use super::raw::*;
use super::source::Path;
use crate::calendar::Period;

impl Checker<'_> {
    pub(super) fn step_ref(&mut self, path: &Path, id: &str) {
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

    /// Checks a `profile.NAME` reference: the parameter is declared, with
    /// type `want` (a parameter whose own type is broken is reported there).
    fn param_ref(&mut self, path: &Path, name: &str, want: ValueType) -> bool {
        match self.params.get(name) {
            None => {
                let hint = suggest(name, "parameter", self.params.keys().map(String::as_str));
                self.err(
                    path,
                    Code::UnknownParameter,
                    format!("unknown profile parameter `{name}`"),
                    Some(hint),
                );
                false
            }
            Some(None) => true,
            Some(Some(t)) if *t == want => true,
            Some(Some(t)) => {
                let t = t.clone();
                self.err(
                    path,
                    Code::TypeMismatch,
                    format!("profile parameter `{name}` is a {t}, but a {want} is needed here"),
                    Some(format!("declare `{name}` with `type: {want}`")),
                );
                false
            }
        }
    }

    pub(super) fn role_ref(&mut self, path: &Path, text: &str) -> Option<RoleRef> {
        if let Some(p) = text.strip_prefix("profile.") {
            return self
                .param_ref(path, p, ValueType::Role)
                .then(|| RoleRef::Param(p.into()));
        }
        self.declared_role(path, text)
            .then(|| RoleRef::Role(text.into()))
    }

    /// Whether `id` is a declared role; reports it when not.
    pub(super) fn declared_role(&mut self, path: &Path, id: &str) -> bool {
        if self.roles.contains(id) {
            return true;
        }
        let hint = suggest(id, "role", self.roles.iter().map(String::as_str));
        self.err(
            path,
            Code::UnknownRole,
            format!("unknown role `{id}`"),
            Some(hint),
        );
        false
    }

    /// A declared variable's type; `Some(None)` when declared with a bad type.
    pub(super) fn var_ref(&mut self, path: &Path, name: &str) -> Option<Option<ValueType>> {
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

    pub(super) fn template_ref(&mut self, path: &Path, id: &str) {
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

    pub(super) fn document_refs(&mut self, path: &Path, ids: &[String]) -> Vec<String> {
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

    /// `until: var.NAME`: a date or datetime variable.
    fn until_ref(&mut self, path: &Path, text: &str) -> Option<PeriodRef> {
        self.date_var_ref(
            path,
            "until",
            text,
            "e.g. the rectification deadline an agency set",
        )
        .map(PeriodRef::Until)
    }

    /// `KEY: var.NAME` naming a date or datetime variable (`until:` of a
    /// deadline, `from:`/`until:` of a report); `what` says in the hint
    /// what the date is. The variable's name, or `None` when reported.
    pub(super) fn date_var_ref(
        &mut self,
        path: &Path,
        key: &str,
        text: &str,
        what: &str,
    ) -> Option<String> {
        let Some(v) = text.strip_prefix("var.") else {
            self.err(
                path,
                Code::BadValue,
                format!("`{key}: {text}` is not a variable"),
                Some(format!(
                    "write `{key}: var.NAME`, naming a date or datetime variable ({what})"
                )),
            );
            return None;
        };
        match self.var_ref(path, v)? {
            Some(t) if !t.is_temporal() => {
                self.err(
                    path,
                    Code::TypeMismatch,
                    format!("variable `{v}` is a {t}; `{key}:` needs a date or datetime"),
                    Some(format!("declare `{v}` with `type: date`")),
                );
                None
            }
            _ => Some(v.into()),
        }
    }

    pub(super) fn period_ref(&mut self, path: &Path, text: &str) -> Option<PeriodRef> {
        if let Some(p) = text.strip_prefix("profile.") {
            return self
                .param_ref(path, p, ValueType::Period)
                .then(|| PeriodRef::Param(p.into()));
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
    pub(super) fn expr(&mut self, path: &Path, text: &str) -> Option<Expr> {
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
                let mut ok = self.fact_reads(path, text, &e);
                for name in free {
                    if !self.variables.contains_key(&name)
                        && !expr::BUILTIN_NAMES.contains(&name.as_str())
                    {
                        ok = false;
                        let hint =
                            suggest(&name, "variable", self.variables.keys().map(String::as_str));
                        self.err_token(
                            path,
                            (&name, 0),
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

    /// Compiles a condition (a decision's `when:`, a guard's `check:`) and
    /// checks that it gives true or false; `what` names it in messages.
    pub(super) fn condition(&mut self, path: &Path, text: &str, what: &str) -> Option<Expr> {
        let e = self.expr(path, text)?;
        if self.judges_cel() {
            self.check_condition(path, &e, what);
        }
        Some(e)
    }

    /// `set:` maps: declared variable ← expression of a fitting type.
    pub(super) fn sets(
        &mut self,
        path: &Path,
        set: &IndexMap<String, String>,
    ) -> Vec<(String, Expr)> {
        let mut out = Vec::new();
        for (name, text) in set {
            let p = path.key(name);
            let ty = self.var_ref(&p, name);
            if let Some(e) = self.expr(&p, text) {
                match &ty {
                    _ if !self.judges_cel() => {}
                    Some(Some(t)) => {
                        let target = format!("variable `{name}`");
                        self.check_stored_value(&p, &e, t, name, &target);
                    }
                    _ => {
                        self.check_cel_types(&p, &e);
                    }
                }
                if ty.is_some() {
                    out.push((name.clone(), e));
                }
            }
        }
        out
    }

    /// Notes the facts `e` reads, and checks each name: a literal text
    /// (E040), recorded by some process of the library when the library is
    /// known (E041).
    fn fact_reads(&mut self, path: &Path, text: &str, e: &Expr) -> bool {
        let mut ok = true;
        for (function, name) in expr::fact_reads(e) {
            let Some(name) = name else {
                self.err(
                    path,
                    Code::FactMisuse,
                    format!(
                        "`{function}` in `{text}` is given a fact name that is not a literal text"
                    ),
                    Some(format!(
                        "name the fact as a quoted text: `{function}(supervisor, 'attendance'…)`"
                    )),
                );
                ok = false;
                continue;
            };
            if let Some(known) = self.recorded_facts() {
                if !known.contains(&name) {
                    let hint = suggest(&name, "fact", known.iter().map(String::as_str));
                    self.err(
                        path,
                        Code::UnknownFact,
                        format!("no process of the library records fact `{name}`, which `{text}` reads"),
                        Some(format!("a `record:` entry with `fact: {name}` on an outcome or a decision branch records it; {hint}")),
                    );
                    ok = false;
                }
            }
            self.facts_read.insert(name);
        }
        ok
    }

    /// The facts the processes of the library record; `None` when the
    /// definition is checked on its own.
    fn recorded_facts(&self) -> Option<std::collections::BTreeSet<String>> {
        self.ctx.processes.as_ref()?;
        Some(
            self.ctx
                .interfaces
                .values()
                .flat_map(|i| i.facts.iter().cloned())
                .collect(),
        )
    }

    /// `record:` entries: each fact named by an identifier, about a person
    /// or agency variable, with a value CEL gives as a text, int or bool.
    pub(super) fn records(&mut self, path: &Path, raw: &[RawRecord]) -> Option<Vec<RecordFact>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (i, r) in raw.iter().enumerate() {
            let p = path.index(i);
            if !super::check_is_id(&r.fact) {
                self.err(
                    &p.key("fact"),
                    Code::BadId,
                    format!("fact name `{}` is not a valid identifier", r.fact),
                    Some(
                        "a fact is named like a variable: `attendance`, `evaluation_result`".into(),
                    ),
                );
                ok = false;
            }
            match self.var_ref(&p.key("about"), &r.about) {
                Some(Some(ValueType::Person | ValueType::Agency)) | Some(None) => {}
                Some(Some(t)) => {
                    self.err(
                        &p.key("about"),
                        Code::FactMisuse,
                        format!("a fact is about a person or an agency, but variable `{}` is of type {t}", r.about),
                        Some("name a variable of type person or agency; for each member of a list, record on the outcome of a `for_each` step, about its `as` variable".into()),
                    );
                    ok = false;
                }
                None => ok = false,
            }
            let value = match &r.value {
                None => None,
                Some(text) => {
                    let vp = p.key("value");
                    match self.expr(&vp, text) {
                        Some(e) => {
                            if self.judges_cel() {
                                if let Some(values) = self.check_cel_types(&vp, &e) {
                                    let scalar = |v: &cel::Value| {
                                        matches!(
                                            v,
                                            cel::Value::String(_)
                                                | cel::Value::Int(_)
                                                | cel::Value::UInt(_)
                                                | cel::Value::Bool(_)
                                                | cel::Value::Null
                                        )
                                    };
                                    if !values.iter().all(scalar) {
                                        self.err(
                                            &vp,
                                            Code::FactMisuse,
                                            format!("the value `{text}` of fact `{}` is not a text, an int or a bool", r.fact),
                                            Some("a fact holds a text (`'absent'`), an int or a bool; a date as its text (`date(now)`)".into()),
                                        );
                                        ok = false;
                                    }
                                }
                            }
                            Some(e)
                        }
                        None => {
                            ok = false;
                            None
                        }
                    }
                }
            };
            out.push(RecordFact {
                fact: r.fact.clone(),
                about: r.about.clone(),
                value,
                note: r.note.clone(),
            });
        }
        ok.then_some(out)
    }

    // ----- values -----------------------------------------------------

    pub(super) fn profile_ref(&mut self, path: &Path, p: &str) {
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

    /// A party: exactly one of role, person, variable (or `assignee`).
    pub(super) fn party(
        &mut self,
        path: &Path,
        r: &RawParty,
        allow_assignee: bool,
    ) -> Option<Party> {
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
    pub(super) fn deadline(
        &mut self,
        path: &Path,
        r: &RawDeadline,
        is_notice: bool,
        is_timer: bool,
    ) -> Option<DeadlineDef> {
        let period = match (&r.period, &r.until) {
            (Some(p), None) => self.period_ref(&path.key("period"), p),
            (None, Some(u)) => self.until_ref(&path.key("until"), u),
            (Some(_), Some(_)) => {
                self.err(
                    &path.key("until"),
                    Code::BadValue,
                    "a deadline gives `period:` or `until:`, not both".into(),
                    Some("`period: 30日` counts a period; `until: var.rectify_by` ends on the date a variable holds".into()),
                );
                None
            }
            (None, None) => {
                self.err(
                    path,
                    Code::MissingKey,
                    "missing required key `period` (or `until`)".into(),
                    Some("`period: 30日` counts a period; `until: var.rectify_by` ends on the date a variable holds".into()),
                );
                None
            }
        };
        if r.until.is_some() {
            for (key, given) in [
                ("from", r.from.is_some()),
                ("include_start_day", r.include_start_day.is_some()),
                ("extend_on_rest_day", r.extend_on_rest_day.is_some()),
            ] {
                if given {
                    self.err_key(
                        &path.key(key),
                        Code::NotSupported,
                        format!("`{key}` has no effect with `until:`: the deadline is the date itself, counted from nothing"),
                        Some(format!("remove `{key}`")),
                    );
                }
            }
        }
        if r.extend_on_rest_day == Some(false) {
            if !is_timer {
                self.err_key(
                    &path.key("extend_on_rest_day"),
                    Code::NotSupported,
                    "`extend_on_rest_day: false` is only for a `wait_timer`'s timer (a term of office, a bar): a deadline someone must meet ends, when its last day is a rest day, on the next working day (民法典 第二百零三条)".into(),
                    Some("remove it; a span that is no time to act in is a `wait_timer` step whose `timer:` says `extend_on_rest_day: false`".into()),
                );
            } else if let Some(Ok(p)) = r.period.as_deref().map(str::parse::<Period>) {
                if matches!(
                    p.unit,
                    crate::calendar::Unit::WorkingDays | crate::calendar::Unit::Hours
                ) {
                    self.err_key(
                        &path.key("extend_on_rest_day"),
                        Code::NotSupported,
                        format!("`extend_on_rest_day` has no effect on `{}`: working days end on a working day, hours are never extended", r.period.as_deref().unwrap_or_default()),
                        Some("remove it; it is for periods of days, months or years".into()),
                    );
                }
            }
        }
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
            extend: r.extend_on_rest_day.unwrap_or(true),
            cutoff: cutoff?,
            reminders,
            remind_at_any_hour: r.remind_at_any_hour.unwrap_or(false),
            on_expiry: on_expiry?,
        })
    }
}
