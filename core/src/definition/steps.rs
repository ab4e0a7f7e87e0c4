//! Checking each step kind into the model.
//!
//! A step is dispatched on its `kind:` by hand (serde's internally tagged
//! enums buffer their input and would lose node positions), then
//! deserialised into the raw struct of that kind and checked.

use indexmap::IndexMap;
use marked_yaml::Node;

use super::check::Checker;
use super::diagnostic::{suggest, Code};
use super::model::*;
use super::raw::{self, *};
use super::source::Path;

/// The steps by id; `None` for a step that had errors (so flow checks can
/// tell a broken step from a missing one).
pub(super) type Steps = IndexMap<String, Option<Step>>;

impl Checker<'_> {
    pub(super) fn steps_section(&mut self, node: Option<&Node>) -> Option<Steps> {
        let path = Path::root().key("steps");
        let node = node?;
        let entries = self.entries(&path, node);
        if entries.is_empty() && node.as_mapping().is_some() {
            self.err(
                &path,
                Code::MissingKey,
                "a process needs at least one step".into(),
                None,
            );
        }
        let mut out = IndexMap::new();
        for (id, n) in entries {
            let p = path.key(&id);
            self.check_id(&p, &id, "step");
            let step = self.step(&p, n);
            out.insert(id, step);
        }
        Some(out)
    }

    fn step(&mut self, p: &Path, n: &Node) -> Option<Step> {
        let Some(m) = n.as_mapping() else {
            self.err(
                p,
                Code::WrongType,
                "wrong type: a step must be a mapping with `kind:` and `name:`".into(),
                None,
            );
            return None;
        };
        let Some(kind) = m.get_scalar("kind").map(|s| s.as_str().to_string()) else {
            self.err(
                &p.key("kind"),
                Code::MissingKey,
                "missing required key `kind`".into(),
                Some(format!("kinds: {}", raw::STEP_KINDS.join(", "))),
            );
            return None;
        };
        let (name, description, rules, kind) = match kind.as_str() {
            "task" => {
                let r: RawTask = self.de(p, n)?;
                let k = self.task(p, &r);
                let next = self.own_next(p, r.next.as_deref(), r.for_each.is_some());
                let fe = r
                    .for_each
                    .as_ref()
                    .and_then(|f| self.for_each(p, f, k.as_ref(), next));
                (r.name, r.description, r.rules, k.map(|k| (k, fe)))
            }
            "notice" => {
                let r: RawNotice = self.de(p, n)?;
                let k = self.notice(p, &r);
                let next = self.own_next(p, r.next.as_deref(), r.for_each.is_some());
                let fe = r
                    .for_each
                    .as_ref()
                    .and_then(|f| self.for_each(p, f, k.as_ref(), next));
                (r.name, r.description, r.rules, k.map(|k| (k, fe)))
            }
            "decision" => {
                let r: RawDecision = self.de(p, n)?;
                let k = self.decision(p, &r);
                (r.name, r.description, r.rules, k.map(|k| (k, None)))
            }
            "parallel" => {
                let r: RawParallel = self.de(p, n)?;
                for (i, b) in r.branches.iter().enumerate() {
                    self.step_ref(&p.key("branches").index(i), b);
                }
                if r.branches.len() < 2 {
                    self.err(
                        &p.key("branches"),
                        Code::BadParallel,
                        "a parallel split needs at least two branches".into(),
                        None,
                    );
                }
                self.step_ref(&p.key("join"), &r.join);
                let k = Some((
                    StepKind::Parallel {
                        branches: r.branches,
                        join: r.join,
                    },
                    None,
                ));
                (r.name, r.description, Vec::new(), k)
            }
            "join" => {
                let r: RawJoin = self.de(p, n)?;
                self.step_ref(&p.key("next"), &r.next);
                (
                    r.name,
                    r.description,
                    Vec::new(),
                    Some((StepKind::Join { next: r.next }, None)),
                )
            }
            "call" => {
                let r: RawCall = self.de(p, n)?;
                let k = self.call(p, &r);
                let fe = r
                    .for_each
                    .as_ref()
                    .and_then(|f| self.for_each(p, f, k.as_ref(), Some(r.next.as_str())));
                (r.name, r.description, Vec::new(), k.map(|k| (k, fe)))
            }
            "send_message" => {
                let r: RawSendMessage = self.de(p, n)?;
                let k = self.send_message(p, &r);
                (r.name, r.description, r.rules, k.map(|k| (k, None)))
            }
            "report" => {
                let r: RawReport = self.de(p, n)?;
                let k = self.report(p, &r);
                (r.name, r.description, r.rules, k.map(|k| (k, None)))
            }
            "wait_message" => {
                let r: RawWaitMessage = self.de(p, n)?;
                let k = self.wait_message(p, &r);
                (r.name, r.description, Vec::new(), k.map(|k| (k, None)))
            }
            "wait_timer" => {
                let r: RawWaitTimer = self.de(p, n)?;
                self.step_ref(&p.key("next"), &r.next);
                if r.timer.on_expiry.is_some() {
                    self.err_key(
                        &p.key("timer").key("on_expiry"),
                        Code::NotSupported,
                        "`on_expiry` has no effect on a wait_timer's `timer`: when the period has run, the step goes on to its `next`".into(),
                        Some(format!(
                            "remove `on_expiry`, and put what should happen then in the `next` step (`{}`); reminders before the end go in `remind:`",
                            r.next
                        )),
                    );
                }
                let timer = self.deadline(&p.key("timer"), &r.timer, false, true);
                (
                    r.name,
                    r.description,
                    r.rules,
                    timer.map(|timer| {
                        (
                            StepKind::WaitTimer {
                                timer,
                                next: r.next,
                            },
                            None,
                        )
                    }),
                )
            }
            "end" => {
                let r: RawEnd = self.de(p, n)?;
                if !super::check_is_id(&r.result) {
                    self.err(
                        &p.key("result"),
                        Code::BadId,
                        format!("result `{}` is not a valid identifier", r.result),
                        Some("results are ids such as `opinion_issued`".into()),
                    );
                }
                let documents = self.document_refs(&p.key("documents"), &r.documents);
                (
                    r.name,
                    r.description,
                    Vec::new(),
                    Some((
                        StepKind::End {
                            result: r.result,
                            documents,
                        },
                        None,
                    )),
                )
            }
            other => {
                let hint = suggest(other, "step kind", raw::STEP_KINDS.iter().copied());
                self.err(
                    &p.key("kind"),
                    Code::BadValue,
                    format!("unknown step kind `{other}`"),
                    Some(hint),
                );
                return None;
            }
        };
        let rules = self.check_rules(&p.key("rules"), &rules);
        let (kind, for_each) = kind?;
        Some(Step {
            name,
            description,
            rules,
            kind,
            for_each,
        })
    }

    /// The outcomes of a task or notice. An outcome without `next` goes to
    /// the step's `next`; in a `for_each` step no outcome has a `next` of
    /// its own (an item's outcome is collected, and the step goes on when
    /// it is done).
    fn outcomes(
        &mut self,
        p: &Path,
        raw: &IndexMap<String, RawOutcome>,
        step_next: Option<&str>,
        for_each: bool,
    ) -> Option<IndexMap<String, Outcome>> {
        let op = p.key("outcomes");
        if raw.is_empty() {
            self.err(
                &op,
                Code::MissingKey,
                "a task or notice needs at least one outcome".into(),
                None,
            );
            return None;
        }
        let mut out = IndexMap::new();
        let mut ok = true;
        for (id, o) in raw {
            let p = op.key(id);
            self.check_id(&p, id, "outcome");
            let next = match (&o.next, step_next) {
                (Some(n), _) if for_each => {
                    self.err_key(
                        &p.key("next"),
                        Code::ForEach,
                        format!("outcome `{id}` of a step with `for_each` has a `next` of its own"),
                        Some("an item's outcome is collected (`collect:`), and the step goes on to its own `next` when `complete_when` holds: remove this `next`".into()),
                    );
                    n.clone()
                }
                (Some(n), _) => {
                    self.step_ref(&p.key("next"), n);
                    n.clone()
                }
                (None, Some(n)) => n.to_string(),
                (None, None) if for_each => String::new(), // said once, on the step
                (None, None) => {
                    self.err(
                        &p,
                        Code::MissingKey,
                        format!("outcome `{id}` has no `next`"),
                        Some("give the outcome `next: STEP`, or the step a `next:` for every outcome that has none".into()),
                    );
                    ok = false;
                    String::new()
                }
            };
            for (list, key) in [
                (&o.fields, "fields"),
                (&o.optional_fields, "optional_fields"),
            ] {
                let mut seen = std::collections::BTreeSet::new();
                for (i, f) in list.iter().enumerate() {
                    ok &= self.var_ref(&p.key(key).index(i), f).is_some();
                    if !seen.insert(f) {
                        self.err(
                            &p.key(key).index(i),
                            Code::DuplicateId,
                            format!("field `{f}` is listed twice"),
                            None,
                        );
                    }
                }
            }
            let set = self.sets(&p.key("set"), &o.set);
            ok &= set.len() == o.set.len();
            let mut guards = Vec::new();
            for (i, g) in o.guards.iter().enumerate() {
                let gp = p.key("guards").index(i);
                if let Some(r) = &g.rule {
                    self.check_rules(&gp.key("rule"), std::slice::from_ref(r));
                }
                match self.condition(&gp.key("check"), &g.check, "guard check") {
                    Some(check) => guards.push(Guard {
                        check,
                        message: g.message.clone(),
                        rule: g.rule.clone(),
                    }),
                    None => ok = false,
                }
            }
            let documents = self.document_refs(&p.key("documents"), &o.documents);
            let record = self.records(&p.key("record"), &o.record);
            ok &= record.is_some();
            out.insert(
                id.clone(),
                Outcome {
                    label: o.label.clone(),
                    next,
                    fields: o.fields.clone(),
                    optional_fields: o.optional_fields.clone(),
                    set,
                    guards,
                    documents,
                    record: record.unwrap_or_default(),
                },
            );
        }
        ok.then_some(out)
    }

    fn task(&mut self, p: &Path, r: &RawTask) -> Option<StepKind> {
        let assignee = self.party(&p.key("assignee"), &r.assignee, false);
        let min = r.min_assignees.unwrap_or(1);
        if min == 0 {
            self.err(
                &p.key("min_assignees"),
                Code::BadValue,
                "min_assignees must be at least 1".into(),
                None,
            );
        }
        // The most people this assignee can ever be, when known statically.
        let max: Option<(u32, String)> = match &assignee {
            Some(Party::Person(x)) => Some((1, format!("one person `{x}`"))),
            Some(Party::Variable(v)) => match self.variables.get(v).cloned().flatten() {
                Some(ValueType::List(_)) => {
                    let max_items = self.var_max_items(v);
                    max_items.map(|m| (m, format!("list variable `{v}` with max_items {m}")))
                }
                Some(t) => Some((1, format!("variable `{v}`, a single {t}"))),
                None => None,
            },
            _ => None,
        };
        if let Some((max, what)) = max {
            if min > max {
                self.err(
                    &p.key("min_assignees"),
                    Code::AssigneeMinimum,
                    format!("task needs at least {min} assignees but is assigned to {what}"),
                    Some("assign a role, or a list<person> variable whose min_items meets the minimum (XT-13: on-site supervision needs at least 2 staff)".into()),
                );
            }
        }
        if let (Some(Party::Variable(v)), true) = (&assignee, min > 1) {
            if let Some(ValueType::List(_)) = self.variables.get(v).cloned().flatten() {
                let min_items = self.var_min_items(v);
                if min_items.unwrap_or(0) < min {
                    self.err(
                        &p.key("min_assignees"),
                        Code::AssigneeMinimum,
                        format!("task needs at least {min} assignees, but variable `{v}` may hold fewer (min_items {})", min_items.unwrap_or(0)),
                        Some(format!("declare `{v}` with `min_items: {min}` so a start with too few people is refused")),
                    );
                }
            }
        }
        let outcomes = self.outcomes(p, &r.outcomes, r.next.as_deref(), r.for_each.is_some());
        let deadline = match &r.deadline {
            Some(d) => Some(self.deadline(&p.key("deadline"), d, false, false)?),
            None => None,
        };
        let documents = self.document_refs(&p.key("documents"), &r.documents);
        let recusal = match &r.recusal {
            Some(rc) => {
                let rp = p.key("recusal");
                let decided_by = self.role_ref(&rp.key("decided_by"), &rc.decided_by);
                if let Some(t) = &rc.template {
                    self.template_ref(&rp.key("template"), t);
                }
                Some(RecusalDef {
                    decided_by: decided_by?,
                    template: rc.template.clone(),
                })
            }
            None => None,
        };
        Some(StepKind::Task {
            assignee: assignee?,
            min_assignees: min,
            outcomes: outcomes?,
            deadline,
            documents,
            recusal,
        })
    }

    fn var_max_items(&self, v: &str) -> Option<u32> {
        self.declared_items(v, "max_items")
    }

    fn var_min_items(&self, v: &str) -> Option<u32> {
        self.declared_items(v, "min_items")
    }

    /// Reads `min_items`/`max_items` of a variable straight from the tree
    /// (the variables section may not have been checked clean).
    fn declared_items(&self, v: &str, key: &str) -> Option<u32> {
        let root = self.src.root.as_ref()?.as_mapping()?;
        let var = root.get_mapping("variables")?.get_mapping(v)?;
        var.get_scalar(key)?.as_str().parse().ok()
    }

    fn notice(&mut self, p: &Path, r: &RawNotice) -> Option<StepKind> {
        let to = self.party(&p.key("to"), &r.to, false);
        self.template_ref(&p.key("template"), &r.template);
        let documents = self.document_refs(&p.key("documents"), &r.documents);
        let outcomes = self.outcomes(p, &r.outcomes, r.next.as_deref(), r.for_each.is_some());
        let deadline = match &r.deadline {
            Some(d) => Some(self.deadline(&p.key("deadline"), d, true, false)?),
            None => None,
        };
        let deemed_receipt = match &r.deemed_receipt {
            Some(t) => Some(self.period_ref(&p.key("deemed_receipt"), t)?),
            None => None,
        };
        Some(StepKind::Notice {
            to: to?,
            template: r.template.clone(),
            documents,
            outcomes: outcomes?,
            deadline,
            deemed_receipt,
        })
    }

    fn decision(&mut self, p: &Path, r: &RawDecision) -> Option<StepKind> {
        let mut branches = Vec::new();
        let mut ok = true;
        if r.branches.is_empty() {
            self.err(
                &p.key("branches"),
                Code::MissingKey,
                "a decision needs at least one branch".into(),
                None,
            );
            ok = false;
        }
        for (i, b) in r.branches.iter().enumerate() {
            let bp = p.key("branches").index(i);
            self.step_ref(&bp.key("goto"), &b.goto);
            if let Some(rule) = &b.rule {
                self.check_rules(&bp.key("rule"), std::slice::from_ref(rule));
            }
            let when = self.condition(&bp.key("when"), &b.when, "condition");
            let set = self.sets(&bp.key("set"), &b.set);
            let record = self.records(&bp.key("record"), &b.record);
            match (when, record) {
                (Some(when), Some(record)) if set.len() == b.set.len() => branches.push(Branch {
                    when,
                    goto: b.goto.clone(),
                    set,
                    note: b.note.clone(),
                    rule: b.rule.clone(),
                    record,
                }),
                _ => ok = false,
            }
        }
        let default = match &r.default {
            Some(d) => {
                self.step_ref(&p.key("default"), d);
                Some(d.clone())
            }
            None => {
                self.err(
                    &p.key("default"),
                    Code::DecisionWithoutDefault,
                    "decision has no default branch".into(),
                    Some("add `default: STEP`, taken when no `when:` holds".into()),
                );
                None
            }
        };
        if let Some(j) = &r.join {
            self.step_ref(&p.key("join"), j);
        }
        if !ok {
            return None;
        }
        Some(StepKind::Decision {
            branches,
            default: default?,
            join: r.join.clone(),
        })
    }

    fn call(&mut self, p: &Path, r: &RawCall) -> Option<StepKind> {
        self.step_ref(&p.key("next"), &r.next);
        if let Some(known) = &self.ctx.processes {
            if !known.contains(&r.process) {
                let hint = suggest(&r.process, "process", known.iter().map(String::as_str));
                self.err(
                    &p.key("process"),
                    Code::UnknownProcess,
                    format!("unknown process `{}`", r.process),
                    Some(hint),
                );
            }
        }
        let mut inputs = Vec::new();
        let mut ok = true;
        for (k, text) in &r.inputs {
            match self.expr(&p.key("inputs").key(k), text) {
                Some(e) => inputs.push((k.clone(), e)),
                None => ok = false,
            }
        }
        match r
            .result
            .as_ref()
            .map(|res| (res, self.var_ref(&p.key("result"), res)))
        {
            Some((_, None)) => ok = false,
            Some((res, Some(Some(ty)))) => self.call_result_type(p, r, res, &ty),
            _ => {}
        }
        self.call_contract(p, r, &inputs);
        let wait = r.wait.unwrap_or(true);
        let outputs = self.call_outputs(p, r, wait);
        ok &= outputs.is_some();
        if let (false, Some(res)) = (wait, &r.result) {
            self.err_key(
                &p.key("result"),
                Code::NotSupported,
                format!("a call with `wait: false` does not wait for the child's result, so `{res}` would never be set"),
                Some("remove `result:`, or let the call wait (`wait: true`, the default)".into()),
            );
            ok = false;
        }
        let deadline = match &r.deadline {
            Some(_) if !wait => {
                self.err_key(
                    &p.key("deadline"),
                    Code::NotSupported,
                    "a call with `wait: false` does not wait, so its `deadline` would never run"
                        .into(),
                    Some(
                        "remove `deadline`, or let the call wait (`wait: true`, the default)"
                            .into(),
                    ),
                );
                ok = false;
                None
            }
            Some(d) if d.bound.as_deref() == Some("at_least") => {
                self.err(
                    &p.key("deadline").key("bound"),
                    Code::NotSupported,
                    "`bound: at_least` has no effect on a call's deadline: the child's end is taken whenever it comes".into(),
                    Some("remove `bound`: a call's deadline is a time limit (`within`)".into()),
                );
                ok = false;
                None
            }
            Some(d) => match self.deadline(&p.key("deadline"), d, false, false) {
                Some(d) => Some(d),
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };
        ok.then(|| StepKind::Call {
            process: r.process.clone(),
            profile: r.profile.clone(),
            inputs,
            result: r.result.clone(),
            next: r.next.clone(),
            wait,
            deadline,
            outputs: outputs.unwrap_or_default(),
        })
    }

    /// `outputs:` of a call: each our declared variable ← a variable the
    /// child declares, of the same type.
    fn call_outputs(&mut self, p: &Path, r: &RawCall, wait: bool) -> Option<Vec<(String, String)>> {
        let op = p.key("outputs");
        if r.outputs.is_empty() {
            return Some(Vec::new());
        }
        if !wait || r.for_each.is_some() {
            self.err_key(
                &op,
                Code::NotSupported,
                if wait {
                    "a call with `for_each` has one child per item: their results are collected with `collect`, not copied with `outputs`".into()
                } else {
                    "a call with `wait: false` does not wait for the child, so `outputs` would never be copied".into()
                },
                Some("remove `outputs`".into()),
            );
            return None;
        }
        let child_vars = self
            .ctx
            .interfaces
            .get(&r.process)
            .and_then(|i| i.variables.clone());
        let mut out = Vec::new();
        let mut ok = true;
        for (ours, theirs) in &r.outputs {
            let ty = self.var_ref(&op.key(ours), ours);
            ok &= ty.is_some();
            if let Some(vars) = &child_vars {
                match vars.get(theirs) {
                    None => {
                        let hint = suggest(theirs, "variable", vars.keys().map(String::as_str));
                        self.err(
                            &op.key(ours),
                            Code::CallUnknownInput,
                            format!("process `{}` declares no variable `{theirs}` to copy into `{ours}`", r.process),
                            Some(hint),
                        );
                        ok = false;
                    }
                    Some(v) => {
                        if let (Some(Some(t)), Some(c)) = (&ty, &v.ty) {
                            if t != c {
                                self.err(
                                    &op.key(ours),
                                    Code::ValueTypeMismatch,
                                    format!("`{ours}` is of type {t}, but variable `{theirs}` of process `{}` is of type {c}", r.process),
                                    Some(format!("declare `{ours}` with `type: {c}`, or copy a variable of type {t}")),
                                );
                                ok = false;
                            }
                        }
                    }
                }
            }
            out.push((ours.clone(), theirs.clone()));
        }
        ok.then_some(out)
    }

    /// `kind: report`: the period from two date variables, an optional
    /// agency variable, each measure into a variable that can hold it (an
    /// int; `average_days` a number with one decimal, so also a string or
    /// text), the process known to the library.
    fn report(&mut self, p: &Path, r: &RawReport) -> Option<StepKind> {
        use crate::runtime::reports::MEASURES;
        self.step_ref(&p.key("next"), &r.next);
        let mut ok = true;
        if let (Some(proc_), Some(known)) = (&r.process, &self.ctx.processes) {
            if !known.contains(proc_) {
                let hint = suggest(proc_, "process", known.iter().map(String::as_str));
                self.err(
                    &p.key("process"),
                    Code::UnknownProcess,
                    format!("unknown process `{proc_}`"),
                    Some(hint),
                );
                ok = false;
            }
        }
        if let (Some(step), Some(iface)) = (
            &r.step,
            r.process.as_ref().and_then(|p| self.ctx.interfaces.get(p)),
        ) {
            if !iface.notice_steps.contains(step) {
                let hint = suggest(step, "step", iface.notice_steps.iter().map(String::as_str));
                self.err(
                    &p.key("step"),
                    Code::UnknownStep,
                    format!(
                        "process `{}` has no notice step `{step}`",
                        r.process.as_deref().unwrap_or_default()
                    ),
                    Some(format!(
                        "a report counts the notices of a `notice` step; {hint}"
                    )),
                );
                ok = false;
            }
        }
        let from = self.date_var_ref(&p.key("from"), "from", &r.from, "the period's first day");
        let until = self.date_var_ref(&p.key("until"), "until", &r.until, "the period's last day");
        if let Some(a) = &r.agency {
            match self.var_ref(&p.key("agency"), a) {
                Some(Some(ValueType::Agency)) | Some(None) => {}
                Some(Some(t)) => {
                    self.err(
                        &p.key("agency"),
                        Code::TypeMismatch,
                        format!("variable `{a}` is a {t}; `agency:` needs an agency"),
                        Some(format!("declare `{a}` with `type: agency`, or leave `agency:` out for every agency together")),
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        if r.into.is_empty() {
            self.err(
                &p.key("into"),
                Code::MissingKey,
                "a report needs `into:`, the variables its numbers go to".into(),
                Some(format!(
                    "e.g. `into: {{ opened: letters_sent }}`; measures: {}",
                    MEASURES.join(", ")
                )),
            );
            ok = false;
        }
        let mut into = Vec::new();
        for (measure, var) in &r.into {
            let mp = p.key("into").key(measure);
            if !MEASURES.contains(&measure.as_str()) {
                let hint = suggest(measure, "measure", MEASURES.iter().copied());
                self.err_key(
                    &mp,
                    Code::BadValue,
                    format!("a report has no measure `{measure}`"),
                    Some(format!("{hint} (measures: {})", MEASURES.join(", "))),
                );
                ok = false;
                continue;
            }
            let fits = |t: &ValueType| match measure.as_str() {
                "average_days" => matches!(t, ValueType::String | ValueType::Text),
                _ => matches!(t, ValueType::Int),
            };
            match self.var_ref(&mp, var) {
                Some(Some(t)) if !fits(&t) => {
                    let want = if measure == "average_days" {
                        "string"
                    } else {
                        "int"
                    };
                    self.err(
                        &mp,
                        Code::TypeMismatch,
                        format!(
                            "variable `{var}` is a {t}, but `{measure}` is a {}",
                            if want == "int" {
                                "count"
                            } else {
                                "number of days with one decimal"
                            }
                        ),
                        Some(format!("declare `{var}` with `type: {want}`")),
                    );
                    ok = false;
                }
                Some(_) => into.push((measure.clone(), var.clone())),
                None => ok = false,
            }
        }
        let (Some(from), Some(until)) = (from, until) else {
            return None;
        };
        ok.then(|| StepKind::Report {
            process: r.process.clone(),
            step: r.step.clone(),
            from,
            until,
            agency: r.agency.clone(),
            into,
            next: r.next.clone(),
        })
    }

    fn send_message(&mut self, p: &Path, r: &RawSendMessage) -> Option<StepKind> {
        self.step_ref(&p.key("next"), &r.next);
        let mut ok = true;
        if !super::check_is_id(&r.message) {
            self.err(
                &p.key("message"),
                Code::BadId,
                format!("message name `{}` is not a valid identifier", r.message),
                None,
            );
            ok = false;
        } else if let Some(waited) = self.waited_messages() {
            if !waited.contains(&r.message) {
                let hint = suggest(&r.message, "message", waited.iter().map(String::as_str));
                self.err(
                    &p.key("message"),
                    Code::UnknownMessage,
                    format!(
                        "no process of the library waits for message `{}`",
                        r.message
                    ),
                    Some(format!(
                        "a `wait_message` step with `message: {}` receives it; {hint}",
                        r.message
                    )),
                );
                ok = false;
            }
        }
        let key = self.expr(&p.key("key"), &r.key);
        if let Some(e) = key.as_ref().filter(|_| self.judges_cel()) {
            if let Some(values) = self.check_cel_types(&p.key("key"), e) {
                let fits = |v: &cel::Value| match v {
                    cel::Value::String(_) | cel::Value::Null => true,
                    cel::Value::List(items) => {
                        items.iter().all(|i| matches!(i, cel::Value::String(_)))
                    }
                    _ => false,
                };
                if !values.iter().all(fits) {
                    self.err(
                        &p.key("key"),
                        Code::ValueTypeMismatch,
                        format!("correlation key `{}` gives neither a text nor a list of texts", r.key),
                        Some("a key is a text (`case_no`, `supervisor.id`) or a list of texts, one message per key (`absent.map(p, p.id)`)".into()),
                    );
                }
            }
        }
        let mut variables = Vec::new();
        for (k, text) in &r.variables {
            let vp = p.key("variables").key(k);
            if !super::check_is_id(k) {
                self.err(
                    &vp,
                    Code::BadId,
                    format!("variable name `{k}` is not a valid identifier"),
                    None,
                );
                ok = false;
            }
            match self.expr(&vp, text) {
                Some(e) => {
                    if self.judges_cel() {
                        self.check_cel_types(&vp, &e);
                    }
                    variables.push((k.clone(), e));
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        Some(StepKind::SendMessage {
            message: r.message.clone(),
            key: key?,
            variables,
            next: r.next.clone(),
        })
    }

    fn wait_message(&mut self, p: &Path, r: &RawWaitMessage) -> Option<StepKind> {
        self.step_ref(&p.key("next"), &r.next);
        if !super::check_is_id(&r.message) {
            self.err(
                &p.key("message"),
                Code::BadId,
                format!("message name `{}` is not a valid identifier", r.message),
                None,
            );
        }
        let correlation = self.expr(&p.key("correlation"), &r.correlation);
        if let Some(e) = correlation.as_ref().filter(|_| self.judges_cel()) {
            self.check_cel_types(&p.key("correlation"), e);
        }
        if let Some(d) = r
            .deadline
            .as_ref()
            .filter(|d| d.bound.as_deref() == Some("at_least"))
        {
            let _ = d;
            self.err(
                &p.key("deadline").key("bound"),
                Code::NotSupported,
                "`bound: at_least` has no effect on a wait_message timeout: the message is taken whenever it comes, before the cut-off too".into(),
                Some("remove `bound`: a wait_message timeout is a deadline (`within`), and the message is always taken".into()),
            );
        }
        let mut ok = true;
        for (i, f) in r.fields.iter().enumerate() {
            ok &= self.var_ref(&p.key("fields").index(i), f).is_some();
        }
        let deadline = match &r.deadline {
            Some(d) => Some(self.deadline(&p.key("deadline"), d, false, false)?),
            None => None,
        };
        if !ok {
            return None;
        }
        Some(StepKind::WaitMessage {
            message: r.message.clone(),
            correlation: correlation?,
            fields: r.fields.clone(),
            next: r.next.clone(),
            deadline,
        })
    }

    /// The messages some process of the library waits for, when the
    /// definition is checked as part of a library (`None` alone).
    fn waited_messages(&self) -> Option<std::collections::BTreeSet<String>> {
        self.ctx.processes.as_ref()?;
        Some(
            self.ctx
                .interfaces
                .values()
                .flat_map(|i| i.messages.iter().cloned())
                .collect(),
        )
    }

    /// A task's or notice's own `next`: checked, and required with `for_each`.
    fn own_next<'r>(&mut self, p: &Path, next: Option<&'r str>, for_each: bool) -> Option<&'r str> {
        match next {
            Some(n) => self.step_ref(&p.key("next"), n),
            None if for_each => self.err(
                &p.key("next"),
                Code::MissingKey,
                "a step with `for_each` needs `next`: the step it goes on to once `complete_when` holds".into(),
                None,
            ),
            None => {}
        }
        next
    }

    /// Checks `for_each:` of a step whose kind is `kind` (`None` when it
    /// had errors of its own).
    fn for_each(
        &mut self,
        p: &Path,
        r: &RawForEach,
        kind: Option<&StepKind>,
        next: Option<&str>,
    ) -> Option<ForEach> {
        let fp = p.key("for_each");
        let mut ok = next.is_some();
        let elem = match self.var_ref(&fp.key("items"), &r.items) {
            Some(Some(ValueType::List(t))) => Some(*t),
            Some(Some(t)) => {
                self.err(
                    &fp.key("items"),
                    Code::ForEach,
                    format!(
                        "`for_each` runs over a list, but variable `{}` is of type {t}",
                        r.items
                    ),
                    Some(format!(
                        "declare `{}` as a list (`type: list<{t}>`), or name a list variable",
                        r.items
                    )),
                );
                None
            }
            _ => None,
        };
        ok &= elem.is_some();
        match self.var_ref(&fp.key("as"), &r.var) {
            Some(Some(t)) => {
                if r.var == r.items {
                    self.err(
                        &fp.key("as"),
                        Code::ForEach,
                        format!("`as` names the list `{}` itself", r.items),
                        Some("declare a variable of the items' type to hold each item, e.g. `candidate: { type: person }`".into()),
                    );
                    ok = false;
                } else if let Some(e) = elem.as_ref().filter(|e| **e != t) {
                    self.err(
                        &fp.key("as"),
                        Code::ForEach,
                        format!(
                            "`as` variable `{}` is of type {t}, but the items of `{}` are of type {e}",
                            r.var, r.items
                        ),
                        Some(format!("declare `{}` with `type: {e}`", r.var)),
                    );
                    ok = false;
                }
            }
            _ => ok = false,
        }
        let sequential = match r.order.as_deref() {
            None | Some("parallel") => false,
            Some("sequential") => true,
            Some(other) => {
                self.err(
                    &fp.key("order"),
                    Code::BadValue,
                    format!("unknown order `{other}`"),
                    Some("`parallel` (every item at once, the default) or `sequential` (one after another, in list order)".into()),
                );
                ok = false;
                false
            }
        };
        let complete_when = match &r.complete_when {
            None => Some(CompleteWhen::All),
            Some(RawCompleteWhen::Text(t)) if t.trim() == "all" => Some(CompleteWhen::All),
            Some(RawCompleteWhen::Text(t)) if t.trim() == "any" => Some(CompleteWhen::AtLeast(1)),
            Some(RawCompleteWhen::Text(t)) => self
                .condition(&fp.key("complete_when"), t, "completion condition")
                .map(CompleteWhen::Condition),
            Some(RawCompleteWhen::AtLeast(a)) => match a.at_least.trim().parse::<u32>() {
                Ok(n) if n >= 1 => Some(CompleteWhen::AtLeast(n)),
                _ => {
                    self.err(
                        &fp.key("complete_when").key("at_least"),
                        Code::BadValue,
                        format!(
                            "`at_least: {}` is not a whole number of at least 1",
                            a.at_least
                        ),
                        Some(
                            "the number of items that must have finished, e.g. `at_least: 2`"
                                .into(),
                        ),
                    );
                    None
                }
            },
        };
        ok &= complete_when.is_some();
        let outcomes = match kind {
            Some(StepKind::Task { outcomes, .. } | StepKind::Notice { outcomes, .. }) => {
                Some(outcomes)
            }
            _ => None,
        };
        let is_call = matches!(kind, Some(StepKind::Call { .. }));
        if matches!(kind, Some(StepKind::Call { wait: false, .. }))
            && (!r.collect.is_empty() || r.complete_when.is_some())
        {
            self.err_key(
                &fp,
                Code::ForEach,
                "a call with `wait: false` starts one child per item and goes on at once: there are no results to `collect` and nothing to `complete_when`".into(),
                Some("remove `collect` and `complete_when`, or let the call wait (`wait: true`, the default)".into()),
            );
            ok = false;
        }
        if let Some(StepKind::Call {
            result: Some(res), ..
        }) = kind
        {
            self.err_key(
                &p.key("result"),
                Code::ForEach,
                format!("a call with `for_each` starts one child per item, and has no single result for `{res}`"),
                Some("collect the children's results instead: `collect: { passed: { outcome: RESULT } }` lists the items whose child ended with RESULT".into()),
            );
            ok = false;
        }
        if let Some(goto) = kind
            .and_then(StepKind::deadline)
            .and_then(|d| d.on_expiry.as_ref())
            .and_then(|x| x.goto.as_ref())
        {
            self.err_key(
                &p.key("deadline").key("on_expiry").key("goto"),
                Code::ForEach,
                format!("`goto: {goto}` on the deadline of a step with `for_each`: one item's expiry cannot move the whole step on"),
                Some("an expired item stays open after its escalation (`notify:`); to stop waiting for late items, use `complete_when`".into()),
            );
            ok = false;
        }
        let mut collect = Vec::new();
        for (target, c) in &r.collect {
            let cp = fp.key("collect").key(target);
            let target_ty = self.var_ref(&cp, target);
            if target == &r.var || target == &r.items {
                self.err_key(
                    &cp,
                    Code::ForEach,
                    format!("`collect` into `{target}`, which the step reads its items from"),
                    Some("collect into a list variable of its own".into()),
                );
                ok = false;
                continue;
            }
            let (what, wanted) = match (&c.outcome, &c.field) {
                (Some(o), None) => {
                    match outcomes {
                        Some(os) if !os.contains_key(o) => {
                            let hint = suggest(o, "outcome", os.keys().map(String::as_str));
                            self.err(
                                &cp.key("outcome"),
                                Code::ForEach,
                                format!("the step has no outcome `{o}` to collect"),
                                Some(hint),
                            );
                            ok = false;
                        }
                        None if is_call && !super::check_is_id(o) => {
                            self.err(
                                &cp.key("outcome"),
                                Code::BadId,
                                format!("result `{o}` is not a valid identifier"),
                                None,
                            );
                            ok = false;
                        }
                        _ => {}
                    }
                    (Collect::Outcome(o.clone()), elem.clone())
                }
                (None, Some(f)) => {
                    let Some(os) = outcomes else {
                        if is_call {
                            self.err(
                                &cp.key("field"),
                                Code::ForEach,
                                "a call's items give only their child's result: collect `{ outcome: RESULT }`".into(),
                                None,
                            );
                        }
                        ok = false;
                        continue;
                    };
                    if !os
                        .values()
                        .any(|o| o.fields.contains(f) || o.optional_fields.contains(f))
                    {
                        self.err(
                            &cp.key("field"),
                            Code::ForEach,
                            format!("no outcome of the step has the field `{f}` to collect"),
                            Some("collect a variable listed in an outcome's `fields` or `optional_fields`".into()),
                        );
                        ok = false;
                        continue;
                    }
                    let ty = self.variables.get(f).cloned().flatten();
                    (Collect::Field(f.clone()), ty)
                }
                _ => {
                    self.err(
                        &cp,
                        Code::ForEach,
                        format!("`collect` entry `{target}` must give exactly one of `outcome` or `field`"),
                        Some("`{ outcome: qualified }` lists the items that took that outcome; `{ field: score }` lists each item's value of that field".into()),
                    );
                    ok = false;
                    continue;
                }
            };
            match (target_ty, wanted) {
                (Some(Some(ValueType::List(t))), Some(w)) if *t == w => {}
                (Some(Some(t)), Some(w)) => {
                    self.err(
                        &cp,
                        Code::ForEach,
                        format!("`collect` into `{target}`, of type {t}, but what it collects is a list<{w}>"),
                        Some(format!("declare `{target}` with `type: list<{w}>`")),
                    );
                    ok = false;
                }
                (None, _) => ok = false,
                _ => {}
            }
            collect.push((target.clone(), what));
        }
        if !ok {
            return None;
        }
        Some(ForEach {
            items: r.items.clone(),
            var: r.var.clone(),
            sequential,
            complete_when: complete_when?,
            collect,
        })
    }
}
