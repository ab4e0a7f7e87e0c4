//! The semantics of every step kind, as one pure function.
//!
//! An event is applied to a working copy of the state; entering a step runs
//! the automatic steps (decision, parallel, join, end) at once and stops at
//! the steps that wait (task, notice, wait_message, wait_timer, call). Any
//! error discards the working copy: the caller's state is untouched.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde_json::Value as Json;

use super::directory::Directory;
use super::event::{Command, EngineError, Event, HistoryEntry, Transition};
use super::state::*;
use super::values::{self, cel_context};
use crate::calendar::{self, Bound, Calendar, Deadline, Period, PeriodSpec, Start, Unit, LEGAL_TZ};
use crate::definition::{
    Channel, DeadlineDef, Definition, Event as DefEvent, Expr, Party, PeriodRef, RoleRef, StartRef,
    StepKind, Value,
};

/// What a transition may read besides the state: the definition the
/// instance runs on, the calendar and the directory.
pub struct Env<'a> {
    /// The definition, at the instance's version.
    pub definition: &'a Definition,
    /// The legal-time calendar.
    pub calendar: &'a Calendar,
    /// People and agencies.
    pub directory: &'a dyn Directory,
}

/// Applies `event` at `now`. `state` is `None` only for [`Event::Start`].
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
        (None, _) => return Err(EngineError::NotApplicable("no such instance".into())),
        (Some(s), Event::Start { .. }) => {
            return Err(EngineError::NotApplicable(format!(
                "instance `{}` already exists",
                s.id
            )))
        }
        (Some(s), _) => {
            if s.status != Status::Running {
                return Err(EngineError::Ended(s.id.clone()));
            }
            let mut run = Run::new(env, s.clone(), now);
            run.event(event)?;
            run
        }
    };
    run.state.revision += 1;
    Ok(Transition {
        state: run.state,
        commands: run.commands,
        history: run.history,
    })
}

struct Run<'a> {
    env: &'a Env<'a>,
    state: InstanceState,
    commands: Vec<Command>,
    history: Vec<HistoryEntry>,
    now: DateTime<Utc>,
}

/// A loop of automatic steps that never waits is a definition bug; stop it.
const STEP_BUDGET: usize = 10_000;

impl<'a> Run<'a> {
    fn new(env: &'a Env<'a>, state: InstanceState, now: DateTime<Utc>) -> Self {
        Run {
            env,
            state,
            commands: Vec::new(),
            history: Vec::new(),
            now,
        }
    }

    fn def(&self) -> &'a Definition {
        self.env.definition
    }

    fn start(
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
            variables.insert(name.clone(), values::check(name, var, v)?);
        }
        for (name, var) in &def.variables {
            if variables.contains_key(name) {
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
            started_at: now,
            ended_at: None,
            seq: 0,
            task_seq: 0,
            revision: 0,
        };
        let mut run = Run::new(env, state, now);
        run.record(
            actor,
            "started",
            None,
            Some(def.start.clone()),
            variables,
            None,
            None,
            vec![actor.into()],
        );
        run.notify_rules("instance_started", None, None);
        run.enter(&def.start.clone())?;
        Ok(run)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        actor: &str,
        what: &str,
        before: Option<String>,
        after: Option<String>,
        changed: BTreeMap<String, Json>,
        deadline: Option<Deadline>,
        note: Option<String>,
        people: Vec<String>,
    ) {
        self.history.push(HistoryEntry {
            at: self.now,
            actor: actor.into(),
            what: what.into(),
            step_before: before,
            step_after: after,
            changed,
            deadline,
            note,
            people,
        });
    }

    fn event(&mut self, event: &Event) -> Result<(), EngineError> {
        match event {
            Event::Start { .. } => unreachable!("handled by apply"),
            Event::Complete {
                task,
                outcome,
                variables,
                actor,
            } => self.complete(task, outcome, variables, actor),
            Event::Receive { task, actor } => self.receive(task, actor),
            Event::Message {
                name,
                key,
                variables,
            } => self.message(name, key, variables),
            Event::TimerFired { timer } => self.timer(timer),
            Event::ChildEnded { step, result } => self.child_ended(step, result),
            Event::Recompute => self.recompute(),
            Event::Cancel { reason, actor } => {
                self.finish(
                    Status::Cancelled {
                        reason: reason.clone(),
                    },
                    actor,
                    "cancelled",
                    Some(reason.clone()),
                );
                Ok(())
            }
        }
    }

    // ----- events -------------------------------------------------------

    fn open_task(&self, id: &str) -> Result<TaskState, EngineError> {
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

    fn complete(
        &mut self,
        task_id: &str,
        outcome_id: &str,
        given: &BTreeMap<String, Json>,
        actor: &str,
    ) -> Result<(), EngineError> {
        let task = self.open_task(task_id)?;
        let step = &self.def().steps[&task.step];
        let outcomes = match &step.kind {
            StepKind::Task { outcomes, .. } | StepKind::Notice { outcomes, .. } => outcomes,
            _ => {
                return Err(EngineError::NotApplicable(format!(
                    "step `{}` has no outcomes",
                    task.step
                )))
            }
        };
        let outcome = outcomes
            .get(outcome_id)
            .ok_or_else(|| EngineError::UnknownOutcome {
                step: task.step.clone(),
                outcome: outcome_id.into(),
                known: outcomes.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
        if let Some(d) = &task.deadline {
            if d.bound == Bound::AtLeast && self.now < d.deadline {
                return Err(EngineError::TooEarly {
                    step: task.step.clone(),
                    until: d.deadline.to_rfc3339(),
                });
            }
        }
        for f in &outcome.fields {
            if !given.contains_key(f) {
                return Err(EngineError::MissingField {
                    outcome: outcome_id.into(),
                    field: f.clone(),
                });
            }
        }
        let mut changed = BTreeMap::new();
        for (name, v) in given {
            if !outcome.fields.contains(name) && !outcome.optional_fields.contains(name) {
                return Err(EngineError::NotAField {
                    outcome: outcome_id.into(),
                    field: name.clone(),
                });
            }
            let var = &self.def().variables[name];
            changed.insert(name.clone(), values::check(name, var, v)?);
        }
        self.state.variables.extend(changed.clone());
        changed.extend(self.sets(&outcome.set)?);
        for g in &outcome.guards {
            if !self.eval_bool(&g.check)? {
                return Err(EngineError::GuardFailed {
                    message: g.message.clone(),
                    rule: g.rule.clone(),
                });
            }
        }
        self.close_task(task_id, outcome_id, actor);
        let event = if task.kind == "notice" {
            "notice_answered"
        } else {
            "task_completed"
        };
        self.record(
            actor,
            event,
            Some(task.step.clone()),
            Some(outcome.next.clone()),
            changed,
            None,
            Some(format!("outcome {outcome_id}: {}", outcome.label)),
            vec![actor.into()],
        );
        for d in &outcome.documents {
            self.commands.push(Command::RenderDocument {
                document: d.clone(),
                step: task.step.clone(),
            });
        }
        self.notify_rules(event, Some(&task.step), Some(&task));
        self.enter(&outcome.next.clone())
    }

    fn receive(&mut self, task_id: &str, actor: &str) -> Result<(), EngineError> {
        let task = self.open_task(task_id)?;
        if task.received_at.is_some() {
            return Err(EngineError::NotApplicable(format!(
                "receipt of `{task_id}` is already recorded"
            )));
        }
        self.state.tasks.get_mut(task_id).expect("open").received_at = Some(self.now);
        let deadline = match &self.def().steps[&task.step].kind {
            StepKind::Notice {
                deadline: Some(d), ..
            } if d.from == StartRef::Receipt => Some(d.clone()),
            _ => None,
        };
        let computed = match deadline {
            Some(d) => self.schedule_deadline(
                task_id,
                &d,
                Start::Instant(self.now.with_timezone(&LEGAL_TZ)),
            )?,
            None => None,
        };
        self.commands.push(Command::UpdateTask {
            task: task_id.into(),
        });
        self.record(
            actor,
            "received",
            Some(task.step.clone()),
            Some(task.step.clone()),
            BTreeMap::new(),
            computed,
            None,
            vec![actor.into()],
        );
        Ok(())
    }

    fn message(
        &mut self,
        name: &str,
        key: &str,
        given: &BTreeMap<String, Json>,
    ) -> Result<(), EngineError> {
        let Some((step_id, _)) = self
            .state
            .waits
            .iter()
            .find(|(_, w)| {
                w.message
                    .as_ref()
                    .is_some_and(|(n, k)| n == name && k == key)
            })
            .map(|(s, w)| (s.clone(), w.clone()))
        else {
            return Err(EngineError::NotApplicable(format!(
                "no step waits for message `{name}` with key `{key}`"
            )));
        };
        let StepKind::WaitMessage { fields, next, .. } = &self.def().steps[&step_id].kind else {
            unreachable!("waits of messages are wait_message steps")
        };
        let mut changed = BTreeMap::new();
        for (n, v) in given {
            if !fields.contains(n) {
                return Err(EngineError::NotAField {
                    outcome: format!("message {name}"),
                    field: n.clone(),
                });
            }
            changed.insert(n.clone(), values::check(n, &self.def().variables[n], v)?);
        }
        self.state.variables.extend(changed.clone());
        self.end_wait(&step_id);
        self.record(
            "engine",
            "message",
            Some(step_id.clone()),
            Some(next.clone()),
            changed,
            None,
            Some(format!("message {name} ({key})")),
            vec![],
        );
        self.enter(&next.clone())
    }

    fn child_ended(&mut self, step: &str, result: &str) -> Result<(), EngineError> {
        if !self.state.waits.contains_key(step) {
            return Err(EngineError::NotApplicable(format!(
                "step `{step}` is not waiting for a child"
            )));
        }
        let StepKind::Call {
            result: var, next, ..
        } = &self.def().steps[step].kind
        else {
            return Err(EngineError::NotApplicable(format!(
                "step `{step}` is not a call"
            )));
        };
        let mut changed = BTreeMap::new();
        if let Some(v) = var {
            changed.insert(v.clone(), Json::String(result.into()));
            self.state
                .variables
                .insert(v.clone(), Json::String(result.into()));
        }
        self.end_wait(step);
        self.record(
            "engine",
            "child_ended",
            Some(step.into()),
            Some(next.clone()),
            changed,
            None,
            Some(format!("result {result}")),
            vec![],
        );
        self.enter(&next.clone())
    }

    fn timer(&mut self, id: &str) -> Result<(), EngineError> {
        let timer = self.state.timers.remove(id).ok_or_else(|| {
            EngineError::NotApplicable(format!("timer `{id}` is no longer pending"))
        })?;
        // The fired timer is consumed in the same transaction as its effect.
        self.commands
            .push(Command::CancelTimer { timer: id.into() });
        match timer.kind {
            TimerKind::Reminder { task, before } => {
                let t = self.state.tasks.get(&task).cloned();
                let step = t
                    .as_ref()
                    .map(|t| t.step.clone())
                    .unwrap_or_else(|| task.clone());
                let people = t.as_ref().map(|t| t.assignees.clone()).unwrap_or_default();
                let deadline = t.as_ref().and_then(|t| t.deadline.clone());
                self.record(
                    "engine",
                    "reminder",
                    Some(step.clone()),
                    Some(step.clone()),
                    BTreeMap::new(),
                    deadline,
                    Some(format!("{before} before the deadline")),
                    people,
                );
                self.notify_rules("reminder", Some(&step), t.as_ref());
                Ok(())
            }
            TimerKind::Expiry { task } => self.expire(&task),
            TimerKind::Wait { step } => {
                let StepKind::WaitTimer { next, .. } = &self.def().steps[&step].kind else {
                    unreachable!("wait timers belong to wait_timer steps")
                };
                self.end_wait(&step);
                self.record(
                    "engine",
                    "timer",
                    Some(step.clone()),
                    Some(next.clone()),
                    BTreeMap::new(),
                    None,
                    None,
                    vec![],
                );
                self.enter(&next.clone())
            }
            TimerKind::MessageTimeout { step } => {
                let StepKind::WaitMessage {
                    deadline: Some(d), ..
                } = &self.def().steps[&step].kind
                else {
                    unreachable!("message timeouts belong to wait_message steps with a deadline")
                };
                let d = d.clone();
                self.end_wait(&step);
                self.escalate(&step, None, &d)
            }
        }
    }

    fn expire(&mut self, task_id: &str) -> Result<(), EngineError> {
        let Ok(task) = self.open_task(task_id) else {
            return Ok(()); // closed meanwhile: the timer is stale
        };
        let d = match &self.def().steps[&task.step].kind {
            StepKind::Task {
                deadline: Some(d), ..
            }
            | StepKind::Notice {
                deadline: Some(d), ..
            } => d.clone(),
            _ => return Ok(()),
        };
        self.escalate(&task.step, Some(&task), &d)
    }

    /// Expiry of a deadline: record it, notify, and move on when `goto` says so.
    fn escalate(
        &mut self,
        step: &str,
        task: Option<&TaskState>,
        d: &DeadlineDef,
    ) -> Result<(), EngineError> {
        let people = task.map(|t| t.assignees.clone()).unwrap_or_default();
        let computed = task.and_then(|t| t.deadline.clone());
        self.record(
            "engine",
            "expired",
            Some(step.into()),
            Some(step.into()),
            BTreeMap::new(),
            computed,
            None,
            people,
        );
        self.notify_rules("expired", Some(step), task);
        let Some(x) = &d.on_expiry else { return Ok(()) };
        if !x.notify.is_empty() {
            let to: Vec<String> = x
                .notify
                .iter()
                .map(|r| format!("role:{}", self.role_id(r)))
                .collect();
            self.record(
                "engine",
                "escalated",
                Some(step.into()),
                x.goto.clone(),
                BTreeMap::new(),
                None,
                Some(format!("escalated to {}", to.join(", "))),
                vec![],
            );
            match &x.template {
                // The roles `on_expiry` names, by its template; then the
                // `escalated` rules, for anyone they add.
                Some(t) => {
                    self.notify(
                        "escalated",
                        Some(step),
                        task.map(|t| t.id.clone()),
                        to.clone(),
                        &[Channel::Email, Channel::Sms],
                        t,
                    );
                    self.notify_rules_except("escalated", Some(step), task, Some((t, &to)));
                }
                None => self.notify_rules("escalated", Some(step), task),
            }
        }
        if let Some(goto) = &x.goto {
            if let Some(t) = task {
                self.close_task(&t.id, "expired", "engine");
            }
            self.enter(&goto.clone())?;
        }
        Ok(())
    }

    // ----- entering steps -----------------------------------------------

    fn enter(&mut self, first: &str) -> Result<(), EngineError> {
        let mut queue = VecDeque::from([first.to_string()]);
        let mut budget = STEP_BUDGET;
        while let Some(id) = queue.pop_front() {
            if self.state.status != Status::Running {
                break;
            }
            budget -= 1;
            if budget == 0 {
                return Err(EngineError::NotApplicable(format!(
                    "the process loops through automatic steps without waiting (at `{id}`)"
                )));
            }
            let step = &self.def().steps[&id];
            match &step.kind {
                StepKind::Task {
                    assignee,
                    min_assignees,
                    deadline,
                    documents,
                    ..
                } => {
                    let people = self.resolve(assignee, None);
                    if people.len() < *min_assignees as usize {
                        return Err(EngineError::TooFewAssignees {
                            step: id.clone(),
                            min: *min_assignees,
                            found: people.len(),
                        });
                    }
                    self.open(&id, "task", people, deadline.as_ref(), documents)?;
                }
                StepKind::Notice {
                    to,
                    template,
                    deadline,
                    documents,
                    ..
                } => {
                    let to = self.resolve(to, None);
                    if to.is_empty() {
                        return Err(EngineError::NotApplicable(format!(
                            "notice `{id}` has no recipient"
                        )));
                    }
                    self.open(&id, "notice", to.clone(), deadline.as_ref(), documents)?;
                    // The notice itself: its template, with the answer link, to its recipient.
                    let task = self
                        .state
                        .open_tasks()
                        .find(|t| t.step == id)
                        .map(|t| t.id.clone());
                    let template = template.clone();
                    self.notify("notice", Some(&id), task, to, &[Channel::Email], &template);
                }
                StepKind::Decision { branches, default } => {
                    let mut taken = None;
                    for b in branches {
                        if self.eval_bool(&b.when)? {
                            taken = Some(b);
                            break;
                        }
                    }
                    let (target, note, changed) = match taken {
                        Some(b) => {
                            let changed = self.sets(&b.set)?;
                            let note = match (&b.note, &b.rule) {
                                (Some(n), Some(r)) => format!("{} ({r}): {n}", b.when.source),
                                (Some(n), None) => format!("{}: {n}", b.when.source),
                                (None, Some(r)) => format!("{} ({r})", b.when.source),
                                (None, None) => b.when.source.clone(),
                            };
                            (b.goto.clone(), note, changed)
                        }
                        None => (default.clone(), "default".into(), BTreeMap::new()),
                    };
                    self.record(
                        "engine",
                        "decided",
                        Some(id.clone()),
                        Some(target.clone()),
                        changed,
                        None,
                        Some(note),
                        vec![],
                    );
                    queue.push_back(target);
                }
                StepKind::Parallel { branches, .. } => {
                    self.record(
                        "engine",
                        "split",
                        Some(id.clone()),
                        None,
                        BTreeMap::new(),
                        None,
                        Some(branches.join(", ")),
                        vec![],
                    );
                    queue.extend(branches.iter().cloned());
                }
                StepKind::Join { next } => {
                    let needed = self
                        .def()
                        .steps
                        .values()
                        .filter(
                            |s| matches!(&s.kind, StepKind::Parallel { join, .. } if *join == id),
                        )
                        .map(|s| match &s.kind {
                            StepKind::Parallel { branches, .. } => branches.len() as u32,
                            _ => 0,
                        })
                        .max()
                        .unwrap_or(1);
                    let n = self.state.joins.entry(id.clone()).or_default();
                    *n += 1;
                    if *n >= needed {
                        self.state.joins.remove(&id);
                        self.record(
                            "engine",
                            "joined",
                            Some(id.clone()),
                            Some(next.clone()),
                            BTreeMap::new(),
                            None,
                            None,
                            vec![],
                        );
                        queue.push_back(next.clone());
                    }
                }
                StepKind::Call {
                    process,
                    profile,
                    inputs,
                    ..
                } => {
                    let mut vars = BTreeMap::new();
                    for (k, e) in inputs {
                        vars.insert(k.clone(), self.eval(e)?);
                    }
                    // The revision this transition will have (it is raised at the end).
                    let child = format!("{}-{id}-{}", self.state.id, self.state.revision + 1);
                    self.state.waits.insert(
                        id.clone(),
                        WaitState {
                            step: id.clone(),
                            message: None,
                            child: Some(child.clone()),
                            since: Some(self.now),
                            deadline: None,
                        },
                    );
                    self.commands.push(Command::StartChild {
                        child,
                        step: id.clone(),
                        process: process.clone(),
                        profile: profile.clone(),
                        variables: vars,
                    });
                    self.record(
                        "engine",
                        "called",
                        None,
                        Some(id.clone()),
                        BTreeMap::new(),
                        None,
                        Some(format!("started {process}")),
                        vec![],
                    );
                }
                StepKind::WaitMessage {
                    message,
                    correlation,
                    deadline,
                    ..
                } => {
                    let key = match self.eval(correlation)? {
                        Json::String(s) => s,
                        other => other.to_string(),
                    };
                    self.commands.push(Command::AwaitMessage {
                        name: message.clone(),
                        key: key.clone(),
                    });
                    let computed = match deadline {
                        Some(d) => {
                            let start = self.start_of(d)?;
                            let c = self.count(d, start)?;
                            self.add_timer(
                                c.deadline.with_timezone(&Utc),
                                TimerKind::MessageTimeout { step: id.clone() },
                                c.provisional,
                            );
                            Some(c)
                        }
                        None => None,
                    };
                    self.state.waits.insert(
                        id.clone(),
                        WaitState {
                            step: id.clone(),
                            message: Some((message.clone(), key.clone())),
                            child: None,
                            since: Some(self.now),
                            deadline: computed.clone(),
                        },
                    );
                    self.record(
                        "engine",
                        "waiting",
                        None,
                        Some(id.clone()),
                        BTreeMap::new(),
                        computed,
                        Some(format!("message {message} ({key})")),
                        vec![],
                    );
                }
                StepKind::WaitTimer { timer, .. } => {
                    let start = self.start_of(timer)?;
                    let c = self.count(timer, start)?;
                    self.state.waits.insert(
                        id.clone(),
                        WaitState {
                            step: id.clone(),
                            message: None,
                            child: None,
                            since: Some(self.now),
                            deadline: Some(c.clone()),
                        },
                    );
                    self.add_timer(
                        c.deadline.with_timezone(&Utc),
                        TimerKind::Wait { step: id.clone() },
                        c.provisional,
                    );
                    self.reminders(&id, timer, &c);
                    self.record(
                        "engine",
                        "waiting",
                        None,
                        Some(id.clone()),
                        BTreeMap::new(),
                        Some(c),
                        None,
                        vec![],
                    );
                }
                StepKind::End { result, documents } => {
                    for d in documents {
                        self.commands.push(Command::RenderDocument {
                            document: d.clone(),
                            step: id.clone(),
                        });
                    }
                    self.finish(
                        Status::Completed {
                            result: result.clone(),
                        },
                        "engine",
                        "ended",
                        Some(format!("{} ({result})", step.name)),
                    );
                }
            }
        }
        Ok(())
    }

    fn open(
        &mut self,
        step: &str,
        kind: &str,
        assignees: Vec<String>,
        deadline: Option<&DeadlineDef>,
        documents: &[String],
    ) -> Result<(), EngineError> {
        let id = self.state.next_task_id();
        let task = TaskState {
            id: id.clone(),
            step: step.into(),
            kind: kind.into(),
            opened_at: self.now,
            assignees: assignees.clone(),
            received_at: None,
            deadline: None,
            closed: None,
        };
        self.state.tasks.insert(id.clone(), task);
        let computed = match deadline {
            Some(d) if d.from != StartRef::Receipt => {
                let start = self.start_of(d)?;
                self.schedule_deadline(&id, d, start)?
            }
            _ => None,
        };
        self.commands.push(Command::OpenTask {
            task: id.clone(),
            step: step.into(),
        });
        for d in documents {
            self.commands.push(Command::RenderDocument {
                document: d.clone(),
                step: step.into(),
            });
        }
        let what = if kind == "notice" {
            "notice_sent"
        } else {
            "task_opened"
        };
        self.record(
            "engine",
            what,
            None,
            Some(step.into()),
            BTreeMap::new(),
            computed,
            None,
            assignees,
        );
        let task = self.state.tasks[&id].clone();
        self.notify_rules(what, Some(step), Some(&task));
        Ok(())
    }

    /// Computes a task's deadline and schedules its expiry and reminders.
    /// Recounts the provisional deadlines of open tasks on the current
    /// calendar; a changed one replaces its timers and is recorded.
    fn recompute(&mut self) -> Result<(), EngineError> {
        let open: Vec<TaskState> = self
            .state
            .open_tasks()
            .filter(|t| t.deadline.as_ref().is_some_and(|d| d.provisional))
            .cloned()
            .collect();
        let mut changed = 0;
        for task in open {
            let def = match &self.def().steps[&task.step].kind {
                StepKind::Task {
                    deadline: Some(d), ..
                }
                | StepKind::Notice {
                    deadline: Some(d), ..
                } => d.clone(),
                _ => continue,
            };
            let start = match &def.from {
                StartRef::Opened => Start::Instant(task.opened_at.with_timezone(&LEGAL_TZ)),
                StartRef::Receipt => match task.received_at {
                    Some(r) => Start::Instant(r.with_timezone(&LEGAL_TZ)),
                    None => continue,
                },
                StartRef::Variable(_) => self.start_of(&def)?,
            };
            let new = self.count(&def, start)?;
            let old = task.deadline.clone().expect("filtered on a deadline");
            if new == old {
                continue;
            }
            self.cancel_timers(|k| of_task(k, &task.id));
            self.state
                .tasks
                .get_mut(&task.id)
                .expect("open task")
                .deadline = Some(new.clone());
            let due = new.deadline.with_timezone(&Utc);
            if def.bound == Bound::Within || def.on_expiry.is_some() {
                self.add_timer(
                    due,
                    TimerKind::Expiry {
                        task: task.id.clone(),
                    },
                    new.provisional,
                );
            }
            self.reminders(&task.id, &def, &new);
            self.commands.push(Command::UpdateTask {
                task: task.id.clone(),
            });
            self.record_recount("deadline", &task.step, &old, new, task.assignees.clone());
            changed += 1;
        }
        changed += self.recompute_waits()?;
        if changed == 0 {
            return Err(EngineError::NotApplicable(
                "no provisional deadline changed".into(),
            ));
        }
        Ok(())
    }

    /// Recounts the provisional periods of `wait_timer` steps and
    /// `wait_message` timeouts; returns how many changed.
    fn recompute_waits(&mut self) -> Result<usize, EngineError> {
        let waits: Vec<WaitState> = self
            .state
            .waits
            .values()
            .filter(|w| w.deadline.as_ref().is_some_and(|d| d.provisional))
            .cloned()
            .collect();
        let mut changed = 0;
        for w in waits {
            let (def, kind, remind) = match &self.def().steps[&w.step].kind {
                StepKind::WaitTimer { timer, .. } => (
                    timer.clone(),
                    TimerKind::Wait {
                        step: w.step.clone(),
                    },
                    true,
                ),
                StepKind::WaitMessage {
                    deadline: Some(d), ..
                } => (
                    d.clone(),
                    TimerKind::MessageTimeout {
                        step: w.step.clone(),
                    },
                    false,
                ),
                _ => continue,
            };
            let start = match &def.from {
                StartRef::Opened | StartRef::Receipt => match w.since {
                    Some(t) => Start::Instant(t.with_timezone(&LEGAL_TZ)),
                    None => continue,
                },
                StartRef::Variable(_) => self.start_of(&def)?,
            };
            let new = self.count(&def, start)?;
            let old = w.deadline.clone().expect("filtered on a deadline");
            if new == old {
                continue;
            }
            let step = w.step.clone();
            self.cancel_timers(|k| {
                of_task(k, &step)
                    || matches!(k, TimerKind::Wait { step: s } | TimerKind::MessageTimeout { step: s } if *s == step)
            });
            self.add_timer(new.deadline.with_timezone(&Utc), kind, new.provisional);
            if remind {
                self.reminders(&step, &def, &new);
            }
            if let Some(x) = self.state.waits.get_mut(&step) {
                x.deadline = Some(new.clone());
            }
            self.record_recount("waiting period", &step, &old, new, vec![]);
            changed += 1;
        }
        Ok(changed)
    }

    /// Records that `what` of `step` was counted again on the calendar.
    fn record_recount(
        &mut self,
        what: &str,
        step: &str,
        old: &Deadline,
        new: Deadline,
        people: Vec<String>,
    ) {
        let still = if new.provisional {
            " (still provisional)"
        } else {
            ""
        };
        let note = format!(
            "{what} recomputed on the official calendar: last day {} → {}{still}",
            old.last_day, new.last_day
        );
        self.record(
            "engine",
            "recomputed",
            Some(step.into()),
            Some(step.into()),
            BTreeMap::new(),
            Some(new),
            Some(note),
            people,
        );
    }

    fn schedule_deadline(
        &mut self,
        task: &str,
        d: &DeadlineDef,
        start: Start,
    ) -> Result<Option<Deadline>, EngineError> {
        let c = self.count(d, start)?;
        self.state
            .tasks
            .get_mut(task)
            .expect("task exists")
            .deadline = Some(c.clone());
        let due = c.deadline.with_timezone(&Utc);
        if d.bound == Bound::Within || d.on_expiry.is_some() {
            self.add_timer(due, TimerKind::Expiry { task: task.into() }, c.provisional);
        }
        self.reminders(task, d, &c);
        Ok(Some(c))
    }

    fn reminders(&mut self, target: &str, d: &DeadlineDef, c: &Deadline) {
        for r in &d.reminders {
            let due = reminder_due(self.env.calendar, c, r, d.remind_at_any_hour);
            if due > self.now {
                self.add_timer(
                    due,
                    TimerKind::Reminder {
                        task: target.into(),
                        before: r.to_string(),
                    },
                    c.provisional,
                );
            }
        }
    }

    fn add_timer(&mut self, due: DateTime<Utc>, kind: TimerKind, provisional: bool) {
        let id = self.state.next_timer_id();
        let t = TimerState {
            id: id.clone(),
            due,
            kind,
            provisional,
        };
        self.state.timers.insert(id, t.clone());
        self.commands.push(Command::ScheduleTimer { timer: t });
    }

    fn start_of(&self, d: &DeadlineDef) -> Result<Start, EngineError> {
        Ok(match &d.from {
            StartRef::Opened | StartRef::Receipt => {
                Start::Instant(self.now.with_timezone(&LEGAL_TZ))
            }
            StartRef::Variable(v) => {
                let s = self
                    .state
                    .variables
                    .get(v)
                    .and_then(Json::as_str)
                    .ok_or_else(|| {
                        EngineError::NotApplicable(format!(
                            "the deadline counts from `{v}`, which is not set"
                        ))
                    })?;
                if let Ok(date) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                    Start::Date(date)
                } else {
                    let t = DateTime::parse_from_rfc3339(s).map_err(|_| EngineError::BadValue {
                        name: v.clone(),
                        why: format!("`{s}` is not a date"),
                    })?;
                    Start::Instant(t.with_timezone(&LEGAL_TZ))
                }
            }
        })
    }

    fn count(&self, d: &DeadlineDef, start: Start) -> Result<Deadline, EngineError> {
        let period = self.period(&d.period)?;
        let spec = PeriodSpec {
            period,
            include_start_day: d.include_start_day,
            cutoff: d.cutoff,
            bound: d.bound,
        };
        Ok(self.env.calendar.count(start, &spec))
    }

    fn period(&self, p: &PeriodRef) -> Result<Period, EngineError> {
        match p {
            PeriodRef::Literal(p) => Ok(*p),
            PeriodRef::Param(name) => match self.param(name) {
                Some(Value::Period(p)) => Ok(p),
                _ => Err(EngineError::NotApplicable(format!(
                    "profile parameter `{name}` has no period"
                ))),
            },
            PeriodRef::Variable(v) => {
                let s = self
                    .state
                    .variables
                    .get(v)
                    .and_then(Json::as_str)
                    .ok_or_else(|| EngineError::MissingVariable(v.clone()))?;
                s.parse().map_err(|e| EngineError::BadValue {
                    name: v.clone(),
                    why: format!("{e}"),
                })
            }
        }
    }

    fn param(&self, name: &str) -> Option<Value> {
        let def = self.def();
        self.state
            .profile
            .as_ref()
            .and_then(|p| def.profiles.get(p))
            .and_then(|p| p.values.get(name).cloned())
            .or_else(|| def.parameters.get(name).and_then(|p| p.default.clone()))
    }

    fn role_id(&self, r: &RoleRef) -> String {
        match r {
            RoleRef::Role(id) => id.clone(),
            RoleRef::Param(p) => match self.param(p) {
                Some(Value::Text(id)) => id,
                _ => format!("profile.{p}"),
            },
        }
    }

    /// The person or agency ids a party names.
    fn resolve(&self, party: &Party, task: Option<&TaskState>) -> Vec<String> {
        match party {
            Party::Role { role, within } => {
                let unit = within
                    .as_ref()
                    .and_then(|v| self.state.variables.get(v))
                    .and_then(Json::as_str);
                self.env
                    .directory
                    .holders(&self.role_id(role), unit)
                    .into_iter()
                    .map(|p| p.id)
                    .collect()
            }
            Party::Person(p) => vec![p.clone()],
            Party::Variable(v) => match self.state.variables.get(v) {
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

    /// The notification rules for `event` (and `step`), as commands.
    fn notify_rules(&mut self, event: &str, step: Option<&str>, task: Option<&TaskState>) {
        self.notify_rules_except(event, step, task, None);
    }

    /// The rules for `event`, leaving out recipients `sent` has already
    /// given the same template.
    fn notify_rules_except(
        &mut self,
        event: &str,
        step: Option<&str>,
        task: Option<&TaskState>,
        sent: Option<(&str, &[String])>,
    ) {
        let def = self.def();
        for rule in &def.notifications {
            let name = DefEvent::ALL
                .iter()
                .find(|(_, e)| *e == rule.on)
                .map(|(n, _)| *n);
            if name != Some(event) || rule.step.as_deref().is_some_and(|s| Some(s) != step) {
                continue;
            }
            let mut to = Vec::new();
            for p in &rule.to {
                match p {
                    Party::Role { role, within } => {
                        let unit = within
                            .as_ref()
                            .and_then(|v| self.state.variables.get(v))
                            .and_then(Json::as_str);
                        match unit {
                            Some(u) => to.push(format!("role:{}@{u}", self.role_id(role))),
                            None => to.push(format!("role:{}", self.role_id(role))),
                        }
                    }
                    other => to.extend(self.resolve(other, task)),
                }
            }
            if let Some((template, already)) = sent {
                if template == rule.template {
                    to.retain(|r| !already.contains(r));
                }
            }
            if to.is_empty() {
                continue;
            }
            let (channels, template) = (rule.channels.clone(), rule.template.clone());
            self.notify(
                event,
                step,
                task.map(|t| t.id.clone()),
                to,
                &channels,
                &template,
            );
        }
    }

    /// One notification command per channel.
    fn notify(
        &mut self,
        event: &str,
        step: Option<&str>,
        task: Option<String>,
        to: Vec<String>,
        channels: &[Channel],
        template: &str,
    ) {
        for &channel in channels {
            self.commands.push(Command::Notify {
                event: event.into(),
                step: step.map(str::to_string),
                task: task.clone(),
                to: to.clone(),
                channel,
                template: template.into(),
            });
        }
    }

    // ----- closing ------------------------------------------------------

    fn close_task(&mut self, id: &str, outcome: &str, by: &str) {
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
    fn cancel_timers(&mut self, which: impl Fn(&TimerKind) -> bool) {
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

    fn end_wait(&mut self, step: &str) {
        if let Some(w) = self.state.waits.remove(step) {
            if let Some((name, key)) = w.message {
                self.commands.push(Command::StopAwaiting { name, key });
            }
        }
        self.cancel_timers(|k| match k {
            TimerKind::Wait { step: s } | TimerKind::MessageTimeout { step: s } => s == step,
            TimerKind::Reminder { task, .. } => task == step,
            TimerKind::Expiry { .. } => false,
        });
    }

    /// Ends the instance: closes what is open, drops timers and waits.
    fn finish(&mut self, status: Status, actor: &str, what: &str, note: Option<String>) {
        let open: Vec<String> = self.state.open_tasks().map(|t| t.id.clone()).collect();
        let before = self.state.current_steps().first().cloned();
        let outcome = if matches!(status, Status::Cancelled { .. }) {
            "cancelled"
        } else {
            "ended"
        };
        for id in open {
            self.close_task(&id, outcome, actor);
        }
        for step in self.state.waits.keys().cloned().collect::<Vec<_>>() {
            self.end_wait(&step);
        }
        for id in std::mem::take(&mut self.state.timers).into_keys() {
            self.commands.push(Command::CancelTimer { timer: id });
        }
        self.state.status = status;
        self.state.ended_at = Some(self.now);
        self.record(
            actor,
            what,
            before,
            None,
            BTreeMap::new(),
            None,
            note,
            vec![],
        );
        self.notify_rules("instance_ended", None, None);
    }

    // ----- expressions --------------------------------------------------

    fn eval(&self, e: &Expr) -> Result<Json, EngineError> {
        let ctx = cel_context(
            self.def(),
            self.state.profile.as_deref(),
            &self.state.variables,
            self.env.directory,
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

    fn eval_bool(&self, e: &Expr) -> Result<bool, EngineError> {
        match self.eval(e)? {
            Json::Bool(b) => Ok(b),
            other => Err(EngineError::Expression {
                expr: e.source.clone(),
                why: format!("gave {other}, not true or false"),
            }),
        }
    }

    fn sets(&mut self, set: &[(String, Expr)]) -> Result<BTreeMap<String, Json>, EngineError> {
        let mut changed = BTreeMap::new();
        for (name, e) in set {
            let v = self.eval(e)?;
            let v = values::check(name, &self.def().variables[name], &v)?;
            self.state.variables.insert(name.clone(), v.clone());
            changed.insert(name.clone(), v);
        }
        Ok(changed)
    }
}

/// Whether a timer is the expiry or a reminder of task `id`.
fn of_task(k: &TimerKind, id: &str) -> bool {
    matches!(k, TimerKind::Expiry { task } | TimerKind::Reminder { task, .. } if task == id)
}

fn cel_to_json(v: &cel::Value) -> Json {
    use cel::Value as V;
    match v {
        V::Int(n) => Json::from(*n),
        V::UInt(n) => Json::from(*n),
        V::Float(f) => Json::from(*f),
        V::String(s) => Json::String(s.to_string()),
        V::Bool(b) => Json::Bool(*b),
        V::List(items) => Json::Array(items.iter().map(cel_to_json).collect()),
        V::Map(m) => Json::Object(
            m.map
                .iter()
                .map(|(k, v)| (k.to_string(), cel_to_json(v)))
                .collect(),
        ),
        V::Timestamp(t) => Json::String(t.to_rfc3339()),
        V::Null => Json::Null,
        other => Json::String(format!("{other:?}")),
    }
}

/// The working hours reminders are held to.
const WORK_START: (u32, u32) = (9, 0);
const WORK_END: (u32, u32) = (17, 30);

/// When a reminder `before` the deadline fires: hours before the cut-off, or
/// 09:00 on the day that many (working) days before the last day. Unless
/// `any_hour`, the instant is then held back to working hours on a working
/// day — never later, so the reminder still comes before the deadline: no
/// SMS at 03:00, none during 春节.
pub fn reminder_due(
    cal: &Calendar,
    d: &Deadline,
    before: &Period,
    any_hour: bool,
) -> DateTime<Utc> {
    let cutoff = d.deadline.with_timezone(&Utc);
    let day = match before.unit {
        Unit::Hours => {
            let due = cutoff - Duration::hours(i64::from(before.count));
            return if any_hour {
                due
            } else {
                hold_to_working_hours(cal, due)
            };
        }
        Unit::Days => d.last_day - Duration::days(i64::from(before.count)),
        Unit::WorkingDays => {
            let mut day = d.last_day;
            let mut n = 0;
            while n < before.count {
                day = day.pred_opt().expect("date in range");
                if cal.is_working_day(day) {
                    n += 1;
                }
            }
            day
        }
        Unit::Months | Unit::Years => {
            let months = if before.unit == Unit::Years {
                before.count * 12
            } else {
                before.count
            };
            calendar::sub_months(d.last_day, months)
        }
    };
    let at = |day| {
        calendar::local(
            day,
            NaiveTime::from_hms_opt(WORK_START.0, WORK_START.1, 0).expect("09:00"),
        )
        .with_timezone(&Utc)
    };
    if any_hour {
        return at(day);
    }
    let mut day = day;
    while !cal.is_working_day(day) {
        day = day.pred_opt().expect("date in range");
    }
    at(day)
}

/// The latest instant at or before `t` that is in working hours on a working day.
pub fn hold_to_working_hours(cal: &Calendar, t: DateTime<Utc>) -> DateTime<Utc> {
    let start = NaiveTime::from_hms_opt(WORK_START.0, WORK_START.1, 0).expect("09:00");
    let end = NaiveTime::from_hms_opt(WORK_END.0, WORK_END.1, 0).expect("17:30");
    let local = t.with_timezone(&LEGAL_TZ);
    let (mut day, time) = (local.date_naive(), local.time());
    if cal.is_working_day(day) && time >= start && time <= end {
        return t;
    }
    if !(cal.is_working_day(day) && time > end) {
        day = day.pred_opt().expect("date in range");
        while !cal.is_working_day(day) {
            day = day.pred_opt().expect("date in range");
        }
    }
    calendar::local(day, end).with_timezone(&Utc)
}
