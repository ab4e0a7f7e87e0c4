//! Applying one event to an instance, as one pure function.
//!
//! An event is applied to a working copy of the state ([`Run`]); entering a
//! step runs the automatic steps (decision, parallel, join, end) at once and
//! stops at the steps that wait (task, notice, wait_message, wait_timer,
//! call). Any error discards the working copy: the caller's state is
//! untouched. What each step kind does lives in `steps/`, one file per
//! kind; counting deadlines in `deadlines.rs`; notification rules in
//! `notify.rs`. This file holds the dispatch on the event and what every
//! kind shares (closing tasks, dropping timers, ending, expressions).
//!
//! An engine-driven event that meets a fault does not vanish: the caller
//! stores [`stuck`] instead, and [`Event::Retry`] applies it again later.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::directory::Directory;
use super::error::EngineError;
use super::event::{Command, Event, Transition};
use super::facts::{self, Fact, FactView, Facts};
use super::history::{HistoryEntry, HistoryKind};
use super::reports::Reports;
use super::state::*;
use super::values::{self, cel_context, cel_to_json};
use crate::calendar::{Calendar, LEGAL_TZ};
use crate::definition::{Definition, Expr, Party, RecordFact, RoleRef, Value};

/// What a transition may read besides the state: the definition the
/// instance runs on, the calendar, the directory, and the processes its
/// `call` steps may start.
pub struct Env<'a> {
    /// The definition, at the instance's version.
    pub definition: &'a Definition,
    /// The legal-time calendar.
    pub calendar: &'a Calendar,
    /// People and agencies.
    pub directory: &'a dyn Directory,
    /// The latest deployed definition of every process the definition's
    /// calls may start, and of theirs in turn ([`Processes`]). A call
    /// starts its child as part of the caller's transition: if the child
    /// cannot start, the caller's event is refused too.
    pub processes: &'a dyn Processes,
    /// The call depth of an instance this event starts: 0 for a start of
    /// its own, the caller's depth plus one for a called child.
    pub call_depth: u32,
    /// The facts about people and agencies the service loaded for this
    /// event ([`super::facts`]); [`Facts::none`] for a definition that
    /// reads none.
    pub facts: &'a Arc<Facts>,
    /// The notices the service loaded for the `report` steps this event
    /// may enter ([`super::reports`]).
    pub reports: &'a Reports,
}

/// The deepest a chain of calls may nest: a process that calls itself
/// without a base case is stopped here with `R031` instead of starting
/// instances without end.
pub const MAX_CALL_DEPTH: u32 = 16;

/// The definitions a `call` may start, by process id (the latest version).
pub trait Processes: Sync {
    /// The latest deployed definition of `process`, or why there is none
    /// to start (not deployed, cannot be loaded).
    fn latest(&self, process: &str) -> Result<&Definition, String>;
}

const NOT_DEPLOYED: &str = "the process is not deployed";

/// No process may be called (a definition without `call` steps).
pub struct NoProcesses;

impl Processes for NoProcesses {
    fn latest(&self, _: &str) -> Result<&Definition, String> {
        Err(NOT_DEPLOYED.into())
    }
}

/// The latest definitions as the engine loads them: a process that is
/// deployed but cannot be loaded says why.
impl Processes for BTreeMap<String, Result<std::sync::Arc<Definition>, String>> {
    fn latest(&self, process: &str) -> Result<&Definition, String> {
        match self.get(process) {
            Some(Ok(d)) => Ok(d),
            Some(Err(e)) => Err(e.clone()),
            None => Err(NOT_DEPLOYED.into()),
        }
    }
}

impl Processes for BTreeMap<String, Definition> {
    fn latest(&self, process: &str) -> Result<&Definition, String> {
        self.get(process).ok_or_else(|| NOT_DEPLOYED.into())
    }
}

/// Applies `event` at `now`. `state` is `None` only for [`Event::Start`].
///
/// A stuck instance takes only [`Event::SetVariables`], [`Event::Retry`]
/// and [`Event::Cancel`]; a retry applies the event that stuck it again.
pub fn apply(
    env: &Env<'_>,
    state: Option<&InstanceState>,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<Transition, EngineError> {
    let mut run = match (state, event) {
        (
            None,
            Event::Start {
                instance,
                profile,
                variables,
                actor,
            },
        ) => Run::start(env, instance, profile.as_deref(), variables, actor, now)?,
        (None, _) => return Err(EngineError::NoInstance),
        (Some(s), Event::Start { .. }) => return Err(EngineError::Exists(s.id.clone())),
        (Some(s), _) => {
            let now = ordered(now, s.last_at);
            let mut run = Run::new(env, s.clone(), now);
            match (&s.status, event) {
                (Status::Running, Event::Retry { .. }) => {
                    return Err(EngineError::NotStuck(s.id.clone()))
                }
                (Status::Running, e) => run.event(e)?,
                (Status::Stuck { event: stuck, .. }, Event::Retry { actor }) => {
                    let resume = |run: &mut Run, note: String| {
                        run.state.status = Status::Running;
                        run.commands.push(Command::ReleaseTimers);
                        let line = run.line(actor, HistoryKind::Retried).note(note);
                        run.record(line);
                    };
                    resume(&mut run, format!("retrying {}", stuck.describe()));
                    match run.event(stuck) {
                        Ok(()) => {}
                        // Gone stale meanwhile (e.g. a recount with nothing
                        // left to change): nothing to apply, the instance
                        // simply runs on.
                        Err(e) if e.is_stale() => {
                            run = Run::new(env, s.clone(), now);
                            let note = format!(
                                "{} no longer applies ({}); resumed",
                                stuck.describe(),
                                e.code()
                            );
                            resume(&mut run, note);
                        }
                        Err(e) => return Err(e),
                    }
                }
                (Status::Stuck { .. }, e @ (Event::SetVariables { .. } | Event::Cancel { .. })) => {
                    run.event(e)?
                }
                (Status::Stuck { code, message, .. }, _) => {
                    return Err(EngineError::Stuck {
                        instance: s.id.clone(),
                        code: code.clone(),
                        message: message.clone(),
                    })
                }
                _ => return Err(EngineError::Ended(s.id.clone())),
            }
            run
        }
    };
    run.state.revision += 1;
    run.state.last_at = Some(run.now);
    Ok(Transition {
        state: run.state,
        commands: run.commands,
        history: run.history,
    })
}

/// The transition that records that `event` met `error` on `state`: the
/// instance keeps its state from before the event, becomes
/// [`Status::Stuck`] with one history line saying what and where, and its
/// timers are held. Nothing of the event is applied; [`Event::Retry`]
/// applies it once the cause is fixed.
pub fn stuck(
    state: &InstanceState,
    event: &Event,
    error: &EngineError,
    now: DateTime<Utc>,
) -> Transition {
    let mut s = state.clone();
    let now = ordered(now, s.last_at);
    s.last_at = Some(now);
    let code = error.code();
    let message = error.message();
    let note = format!(
        "{code} {message} (while applying {}); fix the cause, then `duban retry {}`",
        event.describe(),
        s.id
    );
    s.status = Status::Stuck {
        code: code.into(),
        message,
        event: Box::new(event.clone()),
        since: now,
    };
    s.revision += 1;
    let line = HistoryEntry::new(now, "engine", HistoryKind::Stuck)
        .from_opt(state.current_steps().first().cloned())
        .note(note);
    Transition {
        state: s,
        commands: vec![Command::HoldTimers],
        history: vec![line],
    }
}

/// How far behind an instance's last instant an event's own clock may be
/// and still be moved up to it. Clocks of processes kept by NTP differ by
/// milliseconds; a larger gap means one clock is wrong, and moving every
/// later event to a wrong future instant would shift legal instants
/// (receipt, `at_least` periods) by as much: such an event keeps its own.
pub const CLOCK_TOLERANCE: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// The instant an event is applied at: its own, or the instance's last one
/// when that is later by at most [`CLOCK_TOLERANCE`], so that history
/// instants never go back in time between processes whose clocks differ.
fn ordered(now: DateTime<Utc>, last: Option<DateTime<Utc>>) -> DateTime<Utc> {
    match last {
        Some(last) if last > now && last - now <= CLOCK_TOLERANCE => last,
        _ => now,
    }
}

/// The creation order of a timer id `INSTANCE.tN` (N), for ordering timers
/// due at the same instant as they were scheduled.
fn timer_seq(id: &str) -> u64 {
    id.rsplit_once(".t")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// A working copy of an instance while one event is applied.
pub(crate) struct Run<'a> {
    pub(crate) env: &'a Env<'a>,
    pub(crate) state: InstanceState,
    pub(crate) commands: Vec<Command>,
    pub(crate) history: Vec<HistoryEntry>,
    pub(crate) now: DateTime<Utc>,
    /// The item of a `for_each` step being worked on: while it is set,
    /// its `as` variable reads as the item (expressions, assignees,
    /// deadlines), without the instance's variable changing.
    pub(crate) item: Option<Item>,
}

impl<'a> Run<'a> {
    pub(crate) fn new(env: &'a Env<'a>, state: InstanceState, now: DateTime<Utc>) -> Self {
        Run {
            env,
            state,
            commands: Vec::new(),
            history: Vec::new(),
            now,
            item: None,
        }
    }

    /// The value of variable `name`, as the item being worked on sees it.
    /// The organisation unit a `within:` variable holds: its text, or for an
    /// agency variable the agency's county (the unit its people are in).
    pub(crate) fn unit_of(&self, within: Option<&String>) -> Option<String> {
        let name = within?;
        let v = self.var(name)?.as_str()?;
        let is_agency = matches!(
            self.def().variables.get(name).map(|x| &x.ty),
            Some(crate::definition::ValueType::Agency)
        );
        if is_agency {
            return self.env.directory.agency(v).and_then(|a| a.county);
        }
        Some(v.to_string())
    }

    pub(crate) fn var(&self, name: &str) -> Option<&Json> {
        match &self.item {
            Some(item) if item.var == name => Some(&item.value),
            _ => self.state.variables.get(name),
        }
    }

    pub(crate) fn def(&self) -> &'a Definition {
        self.env.definition
    }

    /// Issues document `d` of `step` (for `task`): a numbered document first
    /// takes its series' next number ([`Command::AssignNumber`]), which the
    /// store assigns in this transition's transaction; then it is rendered.
    pub(crate) fn issue_document(&mut self, d: &str, step: &str, task: Option<String>) {
        let series = self.def().documents.get(d).and_then(|x| x.number.clone());
        if let Some(series) = series {
            self.assign_number(&series);
        }
        self.commands.push(Command::RenderDocument {
            document: d.to_string(),
            step: step.to_string(),
            task,
        });
    }

    /// Asks the store for the next number of `series` into its variable
    /// ([`Command::AssignNumber`]): the pattern of the instance's profile,
    /// with this instant's year (Beijing time).
    pub(crate) fn assign_number(&mut self, series: &str) {
        let pattern = match self.def().numbering.get(series).map(|n| &n.pattern) {
            Some(crate::definition::PatternRef::Literal(p)) => Some(p.clone()),
            Some(crate::definition::PatternRef::Param(name)) => match self.param(name) {
                Some(crate::definition::Value::Text(t)) => Some(t),
                _ => None,
            },
            None => None,
        };
        if let Some(p) = pattern {
            use chrono::Datelike;
            let year = self.now.with_timezone(&crate::calendar::LEGAL_TZ).year();
            let format = p.replace("{year}", &year.to_string());
            self.commands.push(Command::AssignNumber {
                variable: series.to_string(),
                counter: format!("number:{format}"),
                format,
            });
        }
    }

    /// A history line at this instant; finish it with the builder methods.
    pub(crate) fn line(&self, actor: &str, what: HistoryKind) -> HistoryEntry {
        HistoryEntry::new(self.now, actor, what)
    }

    /// Records a history line.
    pub(crate) fn record(&mut self, line: HistoryEntry) {
        self.history.push(line);
    }

    pub(crate) fn start(
        env: &'a Env<'a>,
        id: &str,
        profile: Option<&str>,
        given: &BTreeMap<String, Json>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, EngineError> {
        let def = env.definition;
        let profile = match profile {
            Some(p) if !def.profiles.contains_key(p) => {
                return Err(EngineError::UnknownProfile(p.into()))
            }
            Some(p) => Some(p.to_string()),
            None => def.default_profile.clone(),
        };
        let mut variables = BTreeMap::new();
        for (name, v) in given {
            let var = def
                .variables
                .get(name)
                .ok_or_else(|| EngineError::UnknownVariable(name.clone()))?;
            let v = values::check_given(name, var, v, env.directory)?;
            values::in_profile(def, profile.as_deref(), name, var, &v)?;
            variables.insert(name.clone(), v);
        }
        // A case number a start does not give comes from its series.
        let numbered: Vec<String> = def
            .numbering
            .iter()
            .filter(|(id, n)| n.on_start && !variables.contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for (name, var) in &def.variables {
            if variables.contains_key(name) || numbered.contains(name) {
                continue;
            }
            match &var.default {
                Some(d) => {
                    variables.insert(name.clone(), values::to_json(d));
                }
                None if var.required => return Err(EngineError::MissingVariable(name.clone())),
                None => {}
            }
        }
        let state = InstanceState {
            id: id.into(),
            definition: def.id.clone(),
            version: def.version,
            profile,
            status: Status::Running,
            variables: variables.clone(),
            tasks: BTreeMap::new(),
            timers: BTreeMap::new(),
            waits: BTreeMap::new(),
            joins: BTreeMap::new(),
            join_expect: BTreeMap::new(),
            for_each: BTreeMap::new(),
            started_at: now,
            ended_at: None,
            seq: 0,
            task_seq: 0,
            revision: 0,
            depth: env.call_depth,
            last_at: None,
        };
        let mut run = Run::new(env, state, now);
        let line = run
            .line(actor, HistoryKind::Started)
            .to(def.start.clone())
            .changed(variables)
            .people(vec![actor.into()]);
        run.record(line);
        for series in &numbered {
            run.assign_number(series);
        }
        run.notify_rules(crate::definition::Event::InstanceStarted, None, None);
        run.enter(&def.start.clone())?;
        Ok(run)
    }

    fn event(&mut self, event: &Event) -> Result<(), EngineError> {
        match event {
            Event::Start { .. } | Event::Retry { .. } => unreachable!("handled by apply"),
            Event::Complete {
                task,
                outcome,
                variables,
                actor,
            } => self.complete(task, outcome, variables, actor),
            Event::Receive { task, actor } => self.receive(task, actor),
            Event::Delivered { task } => self.delivered(task),
            Event::RequestRecusal {
                task,
                person,
                reason,
                actor,
            } => self.request_recusal(task, person, reason, actor),
            Event::DecideRecusal {
                task,
                person,
                granted,
                actor,
            } => self.decide_recusal(task, person, *granted, actor),
            Event::Message {
                name,
                key,
                variables,
                sender,
            } => self.message(name, key, variables, sender.as_deref()),
            Event::TimerFired { timer } => self.timer(timer),
            Event::ChildEnded {
                step,
                result,
                child,
                variables,
            } => self.child_ended(step, result, child.as_deref(), variables),
            Event::Recompute => self.recount(),
            Event::SetVariables { variables, actor } => self.set_variables(variables, actor),
            Event::Reassign {
                task,
                to,
                reason,
                actor,
            } => self.reassign(task, to, reason, actor),
            Event::Cancel { reason, actor } => {
                self.finish(
                    Status::Cancelled {
                        reason: reason.clone(),
                    },
                    actor,
                    HistoryKind::Cancelled,
                    Some(reason.clone()),
                );
                Ok(())
            }
        }
    }

    fn set_variables(
        &mut self,
        given: &BTreeMap<String, Json>,
        actor: &str,
    ) -> Result<(), EngineError> {
        let mut changed = BTreeMap::new();
        for (name, v) in given {
            let var = self
                .def()
                .variables
                .get(name)
                .ok_or_else(|| EngineError::UnknownVariable(name.clone()))?;
            let v = values::check_given(name, var, v, self.env.directory)?;
            self.in_profile(name, &v)?;
            changed.insert(name.clone(), v);
        }
        self.state.variables.extend(changed.clone());
        let line = self
            .line(actor, HistoryKind::VariablesSet)
            .changed(changed)
            .people(vec![actor.into()]);
        self.record(line);
        Ok(())
    }

    /// A timer fell due: it is consumed in the same transaction as its effect.
    ///
    /// The timers of one instance apply oldest first, whoever claimed them:
    /// any of its timers due earlier and still pending (claimed by a process
    /// that crashed, or by another still at work) is applied first, in this
    /// same transition, so a reminder is never overtaken and deleted by the
    /// expiry after it. Its own row then turns out stale and is dropped.
    fn timer(&mut self, id: &str) -> Result<(), EngineError> {
        let this = self
            .state
            .timers
            .get(id)
            .ok_or_else(|| EngineError::TimerNotPending(id.into()))?;
        let key = (this.due, timer_seq(id));
        let mut earlier: Vec<_> = self
            .state
            .timers
            .values()
            .filter(|t| t.due <= self.now && (t.due, timer_seq(&t.id)) < key)
            .map(|t| ((t.due, timer_seq(&t.id)), t.id.clone()))
            .collect();
        earlier.sort();
        for (_, e) in earlier.into_iter().chain([(key, id.to_string())]) {
            // An earlier one's effect may have ended the instance or
            // dropped the later timers (an expiry that moved on).
            if self.state.status != Status::Running || !self.state.timers.contains_key(&e) {
                continue;
            }
            self.timer_one(&e)?;
        }
        Ok(())
    }

    fn timer_one(&mut self, id: &str) -> Result<(), EngineError> {
        let timer = self
            .state
            .timers
            .remove(id)
            .ok_or_else(|| EngineError::TimerNotPending(id.into()))?;
        self.commands
            .push(Command::CancelTimer { timer: id.into() });
        let first = self.history.len();
        let r = match timer.kind {
            TimerKind::Reminder { task, before } => {
                self.remind(&task, &before);
                Ok(())
            }
            TimerKind::Expiry { task } => self.expire(&task),
            TimerKind::Wait { step } => self.wait_over(&step),
            TimerKind::MessageTimeout { step } => self.message_timeout(&step),
            TimerKind::DeemedReceipt { task } => self.deemed_receipt(&task, timer.due),
        };
        // Every line the timer wrote says when it was due.
        for line in &mut self.history[first..] {
            line.due = Some(timer.due);
        }
        r
    }

    // ----- shared by the step kinds --------------------------------------

    /// The task `id`, if it is open.
    pub(crate) fn open_task(&self, id: &str) -> Result<TaskState, EngineError> {
        let t = self
            .state
            .tasks
            .get(id)
            .ok_or_else(|| EngineError::UnknownTask(id.into()))?;
        if let Some(c) = &t.closed {
            return Err(EngineError::TaskClosed {
                task: id.into(),
                outcome: c.outcome.clone(),
                at: c.at.with_timezone(&LEGAL_TZ).to_rfc3339(),
            });
        }
        Ok(t.clone())
    }

    pub(crate) fn param(&self, name: &str) -> Option<Value> {
        let def = self.def();
        self.state
            .profile
            .as_ref()
            .and_then(|p| def.profiles.get(p))
            .and_then(|p| p.values.get(name).cloned())
            .or_else(|| def.parameters.get(name).and_then(|p| p.default.clone()))
    }

    pub(crate) fn role_id(&self, r: &RoleRef) -> String {
        match r {
            RoleRef::Role(id) => id.clone(),
            RoleRef::Param(p) => match self.param(p) {
                Some(Value::Text(id)) => id,
                _ => format!("profile.{p}"),
            },
        }
    }

    /// Why a role finds too few people, for the R012 message: nobody holds
    /// it at all (the directory may not be imported yet), or nobody within
    /// the unit the step is scoped to.
    pub(crate) fn assignee_hint(&self, party: &Party) -> String {
        let Party::Role { role, within } = party else {
            return String::new();
        };
        let role = self.role_id(role);
        if self.env.directory.holders(&role, None).is_empty() {
            return format!(
                ": nobody in the directory holds role `{role}` (an empty directory is imported with `duban directory import FILE`, docs/directory.md)"
            );
        }
        match self.unit_of(within.as_ref()) {
            Some(unit) => format!(": nobody holding role `{role}` is in `{unit}`"),
            None => String::new(),
        }
    }

    /// The person or agency ids a party names, each once, in order.
    pub(crate) fn resolve(&self, party: &Party, task: Option<&TaskState>) -> Vec<String> {
        let mut ids = self.resolve_all(party, task);
        let mut seen = std::collections::BTreeSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        ids
    }

    fn resolve_all(&self, party: &Party, task: Option<&TaskState>) -> Vec<String> {
        match party {
            Party::Role { role, within } => {
                let unit = self.unit_of(within.as_ref());
                self.env
                    .directory
                    .holders(&self.role_id(role), unit.as_deref())
                    .into_iter()
                    .map(|p| p.id)
                    .collect()
            }
            Party::Person(p) => vec![p.clone()],
            Party::Variable(v) => match self.var(v) {
                Some(Json::String(s)) => vec![s.clone()],
                Some(Json::Array(items)) => items
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            },
            Party::Assignee => task.map(|t| t.assignees.clone()).unwrap_or_default(),
        }
    }

    pub(crate) fn close_task(&mut self, id: &str, outcome: &str, by: &str) {
        if let Some(t) = self.state.tasks.get_mut(id) {
            t.closed = Some(Closed {
                outcome: outcome.into(),
                at: self.now,
                by: by.into(),
            });
        }
        self.cancel_timers(|k| of_task(k, id));
        self.commands.push(Command::CloseTask { task: id.into() });
    }

    /// Drops the pending timers `which` selects; the store drops their rows.
    pub(crate) fn cancel_timers(&mut self, which: impl Fn(&TimerKind) -> bool) {
        let stale: Vec<String> = self
            .state
            .timers
            .iter()
            .filter(|(_, t)| which(&t.kind))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.state.timers.remove(&k);
            self.commands.push(Command::CancelTimer { timer: k });
        }
    }

    pub(crate) fn end_wait(&mut self, step: &str) {
        if let Some(w) = self.state.waits.remove(step) {
            if let Some((name, key)) = w.message {
                self.commands.push(Command::StopAwaiting { name, key });
            }
        }
        self.cancel_timers(|k| of_wait(k, step));
    }

    /// Ends the instance: closes what is open, drops timers and waits.
    pub(crate) fn finish(
        &mut self,
        status: Status,
        actor: &str,
        what: HistoryKind,
        note: Option<String>,
    ) {
        let open: Vec<String> = self.state.open_tasks().map(|t| t.id.clone()).collect();
        let before = self.state.current_steps().first().cloned();
        // What else was still open (the other branches of a parallel split,
        // a task beside a wait): closed with the instance, and named.
        let unfinished: Vec<String> = self
            .state
            .current_steps()
            .iter()
            .map(|id| match self.def().steps.get(id) {
                Some(s) => format!("{}（{id}）", s.name),
                None => id.clone(),
            })
            .collect();
        let note = match (note, unfinished.is_empty()) {
            (n, true) => n,
            (n, false) => Some(format!(
                "{}一并关闭未完成的步骤：{}",
                n.map(|n| format!("{n}；")).unwrap_or_default(),
                unfinished.join("、")
            )),
        };
        let cancelled = matches!(status, Status::Cancelled { .. });
        let outcome = if cancelled { "cancelled" } else { "ended" };
        for id in open {
            self.close_task(&id, outcome, actor);
        }
        // A child still running is not waited for any more: it is
        // cancelled with its caller (and its own children with it).
        let why = match &status {
            Status::Cancelled { reason } => format!("调用方 {} 已撤销：{reason}", self.state.id),
            _ => format!("调用方 {} 已结束", self.state.id),
        };
        for w in self.state.waits.values() {
            for child in w.all_children() {
                self.commands.push(Command::CancelChild {
                    child: child.clone(),
                    reason: why.clone(),
                    actor: actor.into(),
                });
            }
        }
        for step in self.state.waits.keys().cloned().collect::<Vec<_>>() {
            self.end_wait(&step);
        }
        self.state.for_each.clear();
        for id in std::mem::take(&mut self.state.timers).into_keys() {
            self.commands.push(Command::CancelTimer { timer: id });
        }
        if let Status::Completed { result } = &status {
            self.commands.push(Command::TellParent {
                result: result.clone(),
            });
        }
        self.state.status = status;
        self.state.ended_at = Some(self.now);
        let mut line = self.line(actor, what).from_opt(before);
        line.note = note;
        self.record(line);
        // A cancelled case is not "concluded": its own rule (if the process
        // has one) tells people, never the `instance_ended` one.
        self.notify_rules(
            if cancelled {
                crate::definition::Event::InstanceCancelled
            } else {
                crate::definition::Event::InstanceEnded
            },
            None,
            None,
        );
    }

    // ----- expressions --------------------------------------------------

    pub(crate) fn eval(&self, e: &Expr) -> Result<Json, EngineError> {
        let overlaid;
        let variables = match &self.item {
            Some(item) => {
                let mut v = self.state.variables.clone();
                v.insert(item.var.clone(), item.value.clone());
                overlaid = v;
                &overlaid
            }
            None => &self.state.variables,
        };
        let ctx = cel_context(
            self.def(),
            self.state.profile.as_deref(),
            variables,
            self.env.directory,
            self.fact_view(),
            self.now,
        );
        let v = e
            .program
            .execute(&ctx)
            .map_err(|err| EngineError::Expression {
                expr: e.source.clone(),
                why: err.to_string(),
            })?;
        Ok(cel_to_json(&v))
    }

    /// That `v` of variable `name` is allowed by the instance's profile
    /// ([`values::in_profile`]).
    pub(crate) fn in_profile(&self, name: &str, v: &Json) -> Result<(), EngineError> {
        values::in_profile(
            self.def(),
            self.state.profile.as_deref(),
            name,
            &self.def().variables[name],
            v,
        )
    }

    /// The facts CEL reads: those loaded, and those recorded earlier in
    /// this transition.
    fn fact_view(&self) -> FactView {
        let recorded: Vec<Fact> = if self.def().facts_read.is_empty() {
            Vec::new()
        } else {
            self.commands
                .iter()
                .filter_map(|c| match c {
                    Command::RecordFact { fact } => Some(fact.clone()),
                    _ => None,
                })
                .collect()
        };
        FactView {
            facts: self.env.facts.clone(),
            recorded: Arc::new(recorded),
        }
    }

    /// Records the facts of `entries` (a `record:` of an outcome or a
    /// branch taken at `step` by `actor`): a [`Command::RecordFact`] each,
    /// and a history line naming the subject.
    pub(crate) fn record_facts(
        &mut self,
        entries: &[RecordFact],
        step: &str,
        actor: &str,
    ) -> Result<(), EngineError> {
        for r in entries {
            let subject = match self.var(&r.about) {
                Some(Json::String(id)) => id.clone(),
                _ => return Err(EngineError::MissingVariable(r.about.clone())),
            };
            let value = match &r.value {
                Some(e) => {
                    facts::fact_value(self.eval(e)?).map_err(|why| EngineError::BadFact {
                        fact: r.fact.clone(),
                        why,
                    })?
                }
                None => Json::Null,
            };
            let who = self
                .env
                .directory
                .person(&subject)
                .map(|p| p.name)
                .or_else(|| self.env.directory.agency(&subject).map(|a| a.name))
                .map_or_else(|| subject.clone(), |n| format!("{n}（{subject}）"));
            let shown = match &value {
                Json::Null => String::new(),
                Json::String(s) => format!("：{s}"),
                other => format!("：{other}"),
            };
            let mut note = format!("记录{who}的事实 {}{shown}", r.fact);
            if let Some(n) = &r.note {
                note.push_str(&format!("（{n}）"));
            }
            let fact = Fact {
                subject: subject.clone(),
                name: r.fact.clone(),
                value,
                at: self.now,
                process: self.def().id.clone(),
                instance: self.state.id.clone(),
                step: step.to_string(),
                actor: actor.to_string(),
                note: r.note.clone(),
            };
            self.commands.push(Command::RecordFact { fact });
            let line = self
                .line(actor, HistoryKind::FactRecorded)
                .at_step(step)
                .note(note)
                .people(vec![subject]);
            self.record(line);
        }
        Ok(())
    }

    pub(crate) fn eval_bool(&self, e: &Expr) -> Result<bool, EngineError> {
        match self.eval(e)? {
            Json::Bool(b) => Ok(b),
            other => Err(EngineError::Expression {
                expr: e.source.clone(),
                why: format!("gave {other}, not true or false"),
            }),
        }
    }

    pub(crate) fn sets(
        &mut self,
        set: &[(String, Expr)],
    ) -> Result<BTreeMap<String, Json>, EngineError> {
        let mut changed = BTreeMap::new();
        for (name, e) in set {
            let v = self.eval(e)?;
            let v = values::check(name, &self.def().variables[name], &v)?;
            self.in_profile(name, &v)?;
            self.state.variables.insert(name.clone(), v.clone());
            changed.insert(name.clone(), v);
        }
        Ok(changed)
    }
}

/// Whether a timer is the expiry, a reminder or the deemed receipt of task `id`.
pub(crate) fn of_task(k: &TimerKind, id: &str) -> bool {
    matches!(k, TimerKind::Expiry { task } | TimerKind::Reminder { task, .. } | TimerKind::DeemedReceipt { task } if task == id)
}

/// Whether a timer belongs to the wait of `step` (its period, timeout or reminders).
pub(crate) fn of_wait(k: &TimerKind, step: &str) -> bool {
    match k {
        TimerKind::Wait { step: s } | TimerKind::MessageTimeout { step: s } => s == step,
        TimerKind::Reminder { task, .. } => task == step,
        TimerKind::Expiry { .. } | TimerKind::DeemedReceipt { .. } => false,
    }
}
