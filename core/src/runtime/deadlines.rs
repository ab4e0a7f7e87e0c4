//! Deadlines: counting them, their timers, recounting them when a year's
//! schedule arrives, and what expiry and reminders do.
//!
//! One path schedules a deadline whether it is counted for the first time
//! or again: [`Run::schedule_task_deadline`] for tasks and notices,
//! [`Run::schedule_wait`] for `wait_timer` periods and `wait_message`
//! timeouts. A recount cancels the old timers and goes through the same
//! path, so the rule "which deadlines get an expiry timer" is written once
//! ([`expires`]).

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::apply::{of_task, of_wait, Run};
use super::error::EngineError;
use super::event::{Command, NotifyEvent};
use super::history::HistoryKind;
use super::state::{TaskState, TimerKind, TimerState, WaitState};
use crate::calendar::{reminder_due, Bound, Deadline, Period, PeriodSpec, Start, LEGAL_TZ};
use crate::definition::{
    Channel, DeadlineDef, Event as RuleEvent, PeriodRef, StartRef, StepKind, Value,
};

/// Whether a deadline has an expiry timer: a `within` bound always; an
/// `at_least` one only when it escalates.
pub(crate) fn expires(d: &DeadlineDef) -> bool {
    d.bound == Bound::Within || d.on_expiry.is_some()
}

impl Run<'_> {
    /// Where the deadline `d` of `step` counts from: `opened` (the moment
    /// the task opened or the wait began, `now` when `None`) or a date
    /// variable.
    pub(crate) fn start_of(
        &self,
        step: &str,
        d: &DeadlineDef,
        opened: Option<DateTime<Utc>>,
    ) -> Result<Start, EngineError> {
        // `until:` ends on the date its variable holds, which is then what
        // the deadline counts from (`from` has no effect with it).
        if let PeriodRef::Until(v) = &d.period {
            return self.temporal_var(step, v);
        }
        Ok(match &d.from {
            StartRef::Opened | StartRef::Receipt => {
                Start::Instant(opened.unwrap_or(self.now).with_timezone(&LEGAL_TZ))
            }
            StartRef::Variable(v) => self.temporal_var(step, v)?,
        })
    }

    /// The date or instant date/datetime variable `v` holds, for the
    /// deadline of `step`.
    pub(crate) fn temporal_var(&self, step: &str, v: &str) -> Result<Start, EngineError> {
        let s = self
            .var(v)
            .and_then(Json::as_str)
            .ok_or_else(|| EngineError::StartUnset {
                step: step.into(),
                variable: v.into(),
            })?;
        if let Ok(date) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(Start::Date(date));
        }
        let t = DateTime::parse_from_rfc3339(s).map_err(|_| EngineError::BadValue {
            name: v.into(),
            why: format!("`{s}` is not a date"),
        })?;
        Ok(Start::Instant(t.with_timezone(&LEGAL_TZ)))
    }

    pub(crate) fn count(&self, d: &DeadlineDef, start: Start) -> Result<Deadline, EngineError> {
        if let PeriodRef::Until(_) = &d.period {
            // `start` is the date set (see `start_of`).
            return Ok(self.env.calendar.until(start.date(), d.cutoff, d.bound));
        }
        let period = self.period(&d.period)?;
        let spec = PeriodSpec {
            period,
            include_start_day: d.include_start_day,
            cutoff: d.cutoff,
            bound: d.bound,
            extend: d.extend,
        };
        Ok(self.env.calendar.count(start, &spec))
    }

    pub(crate) fn period(&self, p: &PeriodRef) -> Result<Period, EngineError> {
        match p {
            PeriodRef::Literal(p) => Ok(*p),
            PeriodRef::Param(name) => match self.param(name) {
                Some(Value::Period(p)) => Ok(p),
                _ => Err(EngineError::NoPeriod(name.clone())),
            },
            PeriodRef::Until(v) => Err(EngineError::NoPeriod(format!("var.{v}"))),
            PeriodRef::Variable(v) => {
                let s = self
                    .var(v)
                    .and_then(Json::as_str)
                    .ok_or_else(|| EngineError::MissingVariable(v.clone()))?;
                s.parse().map_err(|e| EngineError::BadValue {
                    name: v.clone(),
                    why: format!("{e}"),
                })
            }
        }
    }

    /// Counts a task's deadline from `start` and schedules its expiry and reminders.
    pub(crate) fn schedule_task_deadline(
        &mut self,
        task: &str,
        d: &DeadlineDef,
        start: Start,
    ) -> Result<Deadline, EngineError> {
        let c = self.count(d, start)?;
        self.state
            .tasks
            .get_mut(task)
            .expect("task exists")
            .deadline = Some(c.clone());
        if expires(d) {
            self.add_timer(
                c.deadline.with_timezone(&Utc),
                TimerKind::Expiry { task: task.into() },
                c.provisional,
            );
        }
        self.reminders(task, d, &c);
        Ok(c)
    }

    /// Counts a wait's period (a `wait_timer`) or timeout (a
    /// `wait_message`) and schedules its timer and reminders.
    pub(crate) fn schedule_wait(
        &mut self,
        step: &str,
        d: &DeadlineDef,
        start: Start,
        kind: TimerKind,
    ) -> Result<Deadline, EngineError> {
        let c = self.count(d, start)?;
        self.add_timer(c.deadline.with_timezone(&Utc), kind, c.provisional);
        self.reminders(step, d, &c);
        if let Some(w) = self.state.waits.get_mut(step) {
            w.deadline = Some(c.clone());
        }
        Ok(c)
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

    pub(crate) fn add_timer(&mut self, due: DateTime<Utc>, kind: TimerKind, provisional: bool) {
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

    // ----- recounting ----------------------------------------------------

    /// Recounts every provisional deadline of the open tasks and waits on
    /// the current calendar; a changed one replaces its timers and is
    /// recorded. Nothing changed is [`EngineError::NothingToRecount`].
    pub(crate) fn recount(&mut self) -> Result<(), EngineError> {
        let mut changed = 0;
        let tasks: Vec<TaskState> = self
            .state
            .open_tasks()
            .filter(|t| t.deadline.as_ref().is_some_and(|d| d.provisional))
            .cloned()
            .collect();
        for task in tasks {
            let Some(d) = self.task_deadline(&task.step) else {
                continue;
            };
            let opened = match d.from {
                StartRef::Receipt => match task.received_at {
                    Some(r) => r,
                    None => continue,
                },
                _ => task.opened_at,
            };
            // An item of a `for_each` step counts with its own item's values.
            self.item = task.item.clone();
            let start = self.start_of(&task.step, &d, Some(opened))?;
            let old = task.deadline.clone().expect("filtered on a deadline");
            if self.count(&d, start)? == old {
                continue;
            }
            self.cancel_timers(|k| of_task(k, &task.id));
            let new = self.schedule_task_deadline(&task.id, &d, start)?;
            self.commands.push(Command::UpdateTask {
                task: task.id.clone(),
            });
            self.record_recount("办理期限", &task.step, &old, new, task.assignees.clone());
            changed += 1;
        }
        self.item = None;
        let waits: Vec<WaitState> = self
            .state
            .waits
            .values()
            .filter(|w| w.deadline.as_ref().is_some_and(|d| d.provisional))
            .cloned()
            .collect();
        for w in waits {
            let Some((d, kind)) = self.wait_deadline(&w.step) else {
                continue;
            };
            let Some(since) = w.since else { continue };
            let start = self.start_of(&w.step, &d, Some(since))?;
            let old = w.deadline.clone().expect("filtered on a deadline");
            if self.count(&d, start)? == old {
                continue;
            }
            self.cancel_timers(|k| of_wait(k, &w.step));
            let new = self.schedule_wait(&w.step, &d, start, kind)?;
            self.record_recount("等待期间", &w.step, &old, new, vec![]);
            changed += 1;
        }
        if changed == 0 {
            return Err(EngineError::NothingToRecount);
        }
        Ok(())
    }

    /// The period a waiting step counts, with the kind of timer that ends it.
    pub(crate) fn wait_deadline(&self, step: &str) -> Option<(DeadlineDef, TimerKind)> {
        match &self.def().steps[step].kind {
            StepKind::WaitTimer { timer, .. } => {
                Some((timer.clone(), TimerKind::Wait { step: step.into() }))
            }
            StepKind::WaitMessage {
                deadline: Some(d), ..
            }
            | StepKind::Call {
                deadline: Some(d), ..
            } => Some((d.clone(), TimerKind::MessageTimeout { step: step.into() })),
            _ => None,
        }
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
        let (how, still) = if new.provisional {
            ("按新导入的节假日安排重新计算", "（仍为暂定）")
        } else {
            ("按国务院公布的节假日安排重新计算", "")
        };
        let note = if old.last_day == new.last_day {
            format!(
                "{what}{how}：最后一日仍为{}{}",
                crate::calendar::zh_date(new.last_day),
                if new.provisional {
                    still
                } else {
                    "，不再暂定"
                }
            )
        } else {
            format!(
                "{what}{how}：最后一日由{}改为{}{still}",
                crate::calendar::zh_date(old.last_day),
                crate::calendar::zh_date(new.last_day)
            )
        };
        let line = self
            .line("engine", HistoryKind::Recomputed)
            .at_step(step)
            .deadline(Some(new))
            .note(note)
            .people(people);
        self.record(line);
    }

    // ----- what timers do ------------------------------------------------

    /// A reminder before the deadline of task (or waiting step) `target`.
    pub(crate) fn remind(&mut self, target: &str, before: &str) {
        let t = self.state.tasks.get(target).cloned();
        let step = t
            .as_ref()
            .map(|t| t.step.clone())
            .unwrap_or_else(|| target.to_string());
        let people = t.as_ref().map(|t| t.assignees.clone()).unwrap_or_default();
        let deadline = match &t {
            Some(t) => t.deadline.clone(),
            None => self
                .state
                .waits
                .get(target)
                .and_then(|w| w.deadline.clone()),
        };
        // A reminder applied after the deadline itself (the engine was
        // stopped over it) would tell people a period "will end" that has
        // ended: it is recorded as not sent, and the expiry speaks instead.
        if let Some(d) = deadline.as_ref().filter(|d| d.bound == Bound::Within) {
            if self.now >= d.deadline {
                let line = self
                    .line("engine", HistoryKind::Reminder)
                    .at_step(&step)
                    .deadline(deadline.clone())
                    .note(format!(
                        "提醒未发出：期限已于{}届满，按期限届满处理",
                        crate::calendar::zh_date(d.last_day)
                    ));
                self.record(line);
                return;
            }
        }
        let line = self
            .line("engine", HistoryKind::Reminder)
            .at_step(&step)
            .deadline(deadline)
            .note(format!(
                "距期限届满还有{}，提醒办理",
                before
                    .parse::<crate::calendar::Period>()
                    .map_or_else(|_| before.to_string(), |p| p.zh())
            ))
            .people(people);
        self.record(line);
        self.notify_rules(RuleEvent::Reminder, Some(&step), t.as_ref());
    }

    /// The deadline of task `task_id` expired.
    pub(crate) fn expire(&mut self, task_id: &str) -> Result<(), EngineError> {
        let Ok(task) = self.open_task(task_id) else {
            return Ok(()); // closed meanwhile: the timer is stale
        };
        let Some(d) = self.task_deadline(&task.step) else {
            return Ok(());
        };
        self.escalate(&task.step, Some(&task), &d)
    }

    /// The channels an `on_expiry` template goes by: those of the process's
    /// own `escalated` rules (for this step or every step), else those its
    /// rules use at all, else email — never SMS a process does not use.
    fn escalation_channels(&self, step: &str) -> Vec<Channel> {
        let rules = &self.def().notifications;
        let escalated: Vec<Channel> = rules
            .iter()
            .filter(|r| r.on == RuleEvent::Escalated && r.step.as_deref().is_none_or(|s| s == step))
            .flat_map(|r| r.channels.iter().copied())
            .collect();
        let used = if escalated.is_empty() {
            rules
                .iter()
                .flat_map(|r| r.channels.iter().copied())
                .collect()
        } else {
            escalated
        };
        let mut out: Vec<Channel> = [Channel::Email, Channel::Sms]
            .into_iter()
            .filter(|c| used.contains(c))
            .collect();
        if out.is_empty() {
            out.push(Channel::Email);
        }
        out
    }

    /// The deadline a task or notice step declares.
    fn task_deadline(&self, step: &str) -> Option<DeadlineDef> {
        match &self.def().steps[step].kind {
            StepKind::Task {
                deadline: Some(d), ..
            }
            | StepKind::Notice {
                deadline: Some(d), ..
            } => Some(d.clone()),
            _ => None,
        }
    }

    /// Expiry of a deadline: record it, notify, and move on when `goto` says so.
    pub(crate) fn escalate(
        &mut self,
        step: &str,
        task: Option<&TaskState>,
        d: &DeadlineDef,
    ) -> Result<(), EngineError> {
        let people = task.map(|t| t.assignees.clone()).unwrap_or_default();
        let computed = task.and_then(|t| t.deadline.clone());
        let line = self
            .line("engine", HistoryKind::Expired)
            .at_step(step)
            .deadline(computed)
            .people(people);
        self.record(line);
        self.notify_rules(RuleEvent::Expired, Some(step), task);
        let Some(x) = &d.on_expiry else { return Ok(()) };
        if !x.notify.is_empty() {
            let to: Vec<String> = x
                .notify
                .iter()
                .map(|r| format!("role:{}", self.role_id(r)))
                .collect();
            let line = self
                .line("engine", HistoryKind::Escalated)
                .from(step)
                .to_opt(x.goto.clone())
                .note(format!("escalated to {}", to.join(", ")));
            self.record(line);
            match &x.template {
                // The roles `on_expiry` names, by its template; then the
                // `escalated` rules, for anyone they add.
                Some(t) => {
                    let channels = self.escalation_channels(step);
                    self.notify(
                        NotifyEvent::Escalated,
                        Some(step),
                        task.map(|t| t.id.clone()),
                        to.clone(),
                        &channels,
                        t,
                    );
                    self.notify_rules_except(
                        RuleEvent::Escalated,
                        Some(step),
                        task,
                        Some((t, &to)),
                    );
                }
                None => self.notify_rules(RuleEvent::Escalated, Some(step), task),
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
}
