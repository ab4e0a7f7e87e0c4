//! `task` and `notice`: work for staff, and a message to an agency that
//! answers it. Both open a task row with a deadline; both close with one of
//! their outcomes (form fields typed, guards and `at_least` minimums
//! checked). A notice's `from: receipt` deadline starts when its recipient
//! acknowledges receipt.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::calendar::{Bound, Start, LEGAL_TZ};
use crate::definition::{Channel, DeadlineDef, Event as RuleEvent, StartRef, Step, StepKind};
use crate::runtime::apply::Run;
use crate::runtime::error::EngineError;
use crate::runtime::event::{Command, NotifyEvent};
use crate::runtime::history::HistoryKind;
use crate::runtime::state::{TaskKind, TaskState, TimerKind};
use crate::runtime::values;

impl Run<'_> {
    pub(crate) fn enter_task(&mut self, id: &str, step: &Step) -> Result<Vec<String>, EngineError> {
        let StepKind::Task {
            assignee,
            min_assignees,
            deadline,
            documents,
            ..
        } = &step.kind
        else {
            unreachable!("enter_task is given task steps")
        };
        let people = self.resolve(assignee, None);
        if people.len() < *min_assignees as usize {
            return Err(EngineError::TooFewAssignees {
                step: id.into(),
                min: *min_assignees,
                found: people.len(),
                hint: self.assignee_hint(assignee),
            });
        }
        self.open(id, TaskKind::Task, people, deadline.as_ref(), documents)?;
        Ok(Vec::new())
    }

    pub(crate) fn enter_notice(
        &mut self,
        id: &str,
        step: &Step,
    ) -> Result<Vec<String>, EngineError> {
        let StepKind::Notice {
            to,
            template,
            deadline,
            documents,
            ..
        } = &step.kind
        else {
            unreachable!("enter_notice is given notice steps")
        };
        let to = self.resolve(to, None);
        if to.is_empty() {
            return Err(EngineError::NoRecipient { step: id.into() });
        }
        let task = self.open(
            id,
            TaskKind::Notice,
            to.clone(),
            deadline.as_ref(),
            documents,
        )?;
        // The notice itself: its template, with the answer link, to its recipient.
        self.notify(
            NotifyEvent::Notice,
            Some(id),
            Some(task),
            to,
            &[Channel::Email],
            template,
        );
        Ok(Vec::new())
    }

    /// Opens a task or notice of `step`; returns its id.
    fn open(
        &mut self,
        step: &str,
        kind: TaskKind,
        assignees: Vec<String>,
        deadline: Option<&DeadlineDef>,
        documents: &[String],
    ) -> Result<String, EngineError> {
        let id = self.state.next_task_id();
        let task = TaskState {
            id: id.clone(),
            step: step.into(),
            kind,
            opened_at: self.now,
            assignees: assignees.clone(),
            received_at: None,
            delivered_at: None,
            deadline: None,
            closed: None,
            item: self.item.clone(),
            recusals: Vec::new(),
            excluded: Vec::new(),
        };
        self.state.tasks.insert(id.clone(), task);
        let computed = match deadline {
            Some(d) if d.from != StartRef::Receipt => {
                let start = self.start_of(step, d, None)?;
                Some(self.schedule_task_deadline(&id, d, start)?)
            }
            _ => None,
        };
        self.commands.push(Command::OpenTask {
            task: id.clone(),
            step: step.into(),
        });
        for d in documents {
            self.issue_document(d, step, Some(id.clone()));
        }
        let (what, rule) = match kind {
            TaskKind::Notice => (HistoryKind::NoticeSent, RuleEvent::NoticeSent),
            TaskKind::Task => (HistoryKind::TaskOpened, RuleEvent::TaskOpened),
        };
        let line = self
            .line("engine", what)
            .to(step)
            .deadline(computed)
            .people(assignees);
        self.record(line);
        let task = self.state.tasks[&id].clone();
        self.notify_rules(rule, Some(step), Some(&task));
        Ok(id)
    }

    /// Only an assignee, or someone who holds the role a task is assigned
    /// to (a holder who took the role after it opened), may act on it.
    pub(crate) fn check_may_act(&self, task: &TaskState, actor: &str) -> Result<(), EngineError> {
        if task.excluded.iter().any(|a| a == actor) {
            return Err(EngineError::Recused {
                task: task.id.clone(),
                actor: actor.into(),
                why: "their recusal (回避) from it was granted".into(),
            });
        }
        if task.pending_recusal(actor).is_some() {
            return Err(EngineError::Recused {
                task: task.id.clone(),
                actor: actor.into(),
                why: "their recusal (回避) from it awaits its decision".into(),
            });
        }
        if task.assignees.iter().any(|a| a == actor) {
            return Ok(());
        }
        let party = match &self.def().steps[&task.step].kind {
            StepKind::Task { assignee, .. } => assignee,
            StepKind::Notice { to, .. } => to,
            _ => return Ok(()),
        };
        if matches!(party, crate::definition::Party::Role { .. })
            && self.resolve(party, Some(task)).iter().any(|p| p == actor)
        {
            return Ok(());
        }
        Err(EngineError::NotPermitted {
            task: task.id.clone(),
            actor: actor.into(),
            assignees: task.assignees.join(", "),
        })
    }

    pub(crate) fn complete(
        &mut self,
        task_id: &str,
        outcome_id: &str,
        given: &BTreeMap<String, Json>,
        actor: &str,
    ) -> Result<(), EngineError> {
        let task = self.open_task(task_id)?;
        self.check_may_act(&task, actor)?;
        // An item of a `for_each` step: its guards and `set:` read the item.
        self.item = task.item.clone();
        let step = &self.def().steps[&task.step];
        let outcomes = match &step.kind {
            StepKind::Task { outcomes, .. } | StepKind::Notice { outcomes, .. } => outcomes,
            _ => return Err(EngineError::NoOutcomes(task.step.clone())),
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
                    outcome: format!("outcome `{outcome_id}`"),
                    field: name.clone(),
                });
            }
            let var = &self.def().variables[name];
            let v = values::check(name, var, v)?;
            self.in_profile(name, &v)?;
            changed.insert(name.clone(), v);
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
        let (what, rule) = match task.kind {
            TaskKind::Notice => (HistoryKind::NoticeAnswered, RuleEvent::NoticeAnswered),
            TaskKind::Task => (HistoryKind::TaskCompleted, RuleEvent::TaskCompleted),
        };
        let given: BTreeMap<String, Json> = given
            .keys()
            .filter_map(|k| changed.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        let mut line = self
            .line(actor, what)
            .from(task.step.clone())
            .changed(changed)
            .note(format!("outcome {outcome_id}: {}", outcome.label))
            .people(vec![actor.into()]);
        if task.item.is_none() {
            line = line.to(outcome.next.clone());
        }
        self.record(line);
        self.record_facts(&outcome.record, &task.step, actor)?;
        for d in &outcome.documents {
            self.issue_document(d, &task.step, Some(task_id.into()));
        }
        self.notify_rules(rule, Some(&task.step), Some(&task));
        self.item = None;
        match &task.item {
            Some(item) => {
                for next in self.item_done(&task.step, item.index, outcome_id, given)? {
                    self.enter(&next)?;
                }
                Ok(())
            }
            None => self.enter(&outcome.next.clone()),
        }
    }

    pub(crate) fn receive(&mut self, task_id: &str, actor: &str) -> Result<(), EngineError> {
        let task = self.open_task(task_id)?;
        self.check_may_act(&task, actor)?;
        if task.received_at.is_some() {
            return Err(EngineError::AlreadyReceived(task_id.into()));
        }
        self.cancel_timers(|k| matches!(k, TimerKind::DeemedReceipt { task } if task == task_id));
        self.record_receipt(&task, self.now, actor, None)
    }

    /// Records receipt of notice `task` at `at`, by `actor` (the recipient,
    /// or `engine` with `deemed` saying by which rule), and starts its
    /// `from: receipt` deadline.
    fn record_receipt(
        &mut self,
        task: &TaskState,
        at: chrono::DateTime<chrono::Utc>,
        actor: &str,
        deemed: Option<String>,
    ) -> Result<(), EngineError> {
        let task_id = task.id.as_str();
        self.state.tasks.get_mut(task_id).expect("open").received_at = Some(at);
        self.item = task.item.clone();
        let deadline = match &self.def().steps[&task.step].kind {
            StepKind::Notice {
                deadline: Some(d), ..
            } if d.from == StartRef::Receipt => Some(d.clone()),
            _ => None,
        };
        let computed = match deadline {
            Some(d) => Some(self.schedule_task_deadline(
                task_id,
                &d,
                Start::Instant(at.with_timezone(&LEGAL_TZ)),
            )?),
            None => None,
        };
        self.commands.push(Command::UpdateTask {
            task: task_id.into(),
        });
        let mut line = self
            .line(actor, HistoryKind::Received)
            .at_step(&task.step)
            .deadline(computed);
        line = match deemed {
            Some(note) => line.note(note).people(task.assignees.clone()),
            None => line.people(vec![actor.into()]),
        };
        self.record(line);
        self.item = None;
        Ok(())
    }

    /// The notice's email reached the recipient's mail server at this
    /// event's instant: recorded, and its `deemed_receipt` period starts.
    pub(crate) fn delivered(&mut self, task_id: &str) -> Result<(), EngineError> {
        let stale = || EngineError::NotAwaitingDelivery(task_id.into());
        let task = self.open_task(task_id).map_err(|_| stale())?;
        if task.kind != TaskKind::Notice || task.delivered_at.is_some() {
            return Err(stale());
        }
        self.state
            .tasks
            .get_mut(task_id)
            .expect("open")
            .delivered_at = Some(self.now);
        let deemed = match &self.def().steps[&task.step].kind {
            StepKind::Notice {
                deemed_receipt: Some(p),
                ..
            } if task.received_at.is_none() => Some(p.clone()),
            _ => None,
        };
        let mut note = "电子送达：通知已到达受送达人的电子邮件系统".to_string();
        if let Some(p) = deemed {
            self.item = task.item.clone();
            let period = self.period(&p)?;
            self.item = None;
            let spec = crate::calendar::PeriodSpec {
                period,
                include_start_day: false,
                cutoff: None,
                bound: Bound::Within,
                extend: true,
            };
            let counted = self
                .env
                .calendar
                .count(Start::Instant(self.now.with_timezone(&LEGAL_TZ)), &spec);
            let id = self.state.next_timer_id();
            let timer = crate::runtime::state::TimerState {
                id: id.clone(),
                due: counted.deadline.with_timezone(&chrono::Utc),
                kind: TimerKind::DeemedReceipt {
                    task: task_id.into(),
                },
                provisional: counted.provisional,
            };
            self.state.timers.insert(id, timer.clone());
            self.commands.push(Command::ScheduleTimer { timer });
            note.push_str(&format!(
                "；未签收的，满{}视为于{}送达",
                values::chinese_period(&period),
                counted.last_day.format("%Y年%-m月%-d日")
            ));
        }
        self.commands.push(Command::UpdateTask {
            task: task_id.into(),
        });
        let line = self
            .line("engine", HistoryKind::Delivered)
            .at_step(&task.step)
            .note(note)
            .people(task.assignees.clone());
        self.record(line);
        Ok(())
    }

    /// The `deemed_receipt` period of a notice ran out unacknowledged:
    /// receipt is deemed on its last day.
    pub(crate) fn deemed_receipt(
        &mut self,
        task_id: &str,
        due: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), EngineError> {
        let Ok(task) = self.open_task(task_id) else {
            return Ok(()); // answered meanwhile: the timer is stale
        };
        if task.received_at.is_some() {
            return Ok(());
        }
        // Received on the period's last day: one second before its
        // cut-off, so a period from receipt starts the next day.
        let at = due - chrono::TimeDelta::seconds(1);
        let day = at.with_timezone(&LEGAL_TZ).format("%Y年%-m月%-d日");
        let delivered = task
            .delivered_at
            .map(|d| {
                d.with_timezone(&LEGAL_TZ)
                    .format("%Y年%-m月%-d日 %H:%M")
                    .to_string()
            })
            .unwrap_or_default();
        let period = match &self.def().steps[&task.step].kind {
            StepKind::Notice {
                deemed_receipt: Some(p),
                ..
            } => {
                self.item = task.item.clone();
                let p = self.period(&p.clone());
                self.item = None;
                p.map(|p| values::chinese_period(&p)).unwrap_or_default()
            }
            _ => String::new(),
        };
        let note = format!(
            "视为送达：通知于{delivered}到达受送达人的电子邮件系统，满{period}未签收，视为于{day}送达（deemed_receipt）"
        );
        self.item = task.item.clone();
        self.record_receipt(&task, at, "engine", Some(note))
    }
}

impl Run<'_> {
    /// [`Event::Reassign`](crate::runtime::Event::Reassign): open task
    /// `task_id` goes to `to`, each a person of the directory who may do
    /// its step; its deadline and reminders stay; the new assignees hear of
    /// it as of a task opened.
    pub(crate) fn reassign(
        &mut self,
        task_id: &str,
        to: &[String],
        reason: &str,
        actor: &str,
    ) -> Result<(), EngineError> {
        let refuse = |why: String| EngineError::CannotReassign {
            task: task_id.into(),
            why,
        };
        let task = self.open_task(task_id)?;
        let StepKind::Task { assignee, .. } = &self.def().steps[&task.step].kind else {
            return Err(refuse(
                "it is a notice: its recipient is the instance's agency (change it with `set-var`)"
                    .into(),
            ));
        };
        if to.is_empty() {
            return Err(refuse("name at least one person".into()));
        }
        if reason.trim().is_empty() {
            return Err(refuse("give the reason (`--reason`)".into()));
        }
        // Who may do the step: the role's holders (within its unit), or
        // for a step given to a person or a variable, anyone of the
        // directory the administrator names.
        self.item = task.item.clone();
        let eligible = match assignee {
            crate::definition::Party::Role { .. } => Some(self.resolve(assignee, Some(&task))),
            _ => None,
        };
        self.item = None;
        for p in to {
            if self.env.directory.person(p).is_none() {
                return Err(refuse(format!("`{p}` is no person of the directory")));
            }
            if task.excluded.contains(p) {
                return Err(refuse(format!("`{p}` was recused (回避) from it")));
            }
            if let Some(ok) = &eligible {
                if !ok.contains(p) {
                    return Err(refuse(format!(
                        "`{p}` may not do step `{}`: it is for the holders of its role{}",
                        task.step,
                        if ok.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", ok.join(", "))
                        }
                    )));
                }
            }
        }
        let mut people: Vec<String> = Vec::new();
        for p in to {
            if !people.contains(p) {
                people.push(p.clone());
            }
        }
        let before = task.assignees.clone();
        let t = self.state.tasks.get_mut(task_id).expect("open");
        t.assignees = people.clone();
        self.commands.push(Command::UpdateTask {
            task: task_id.into(),
        });
        let line = self
            .line(actor, HistoryKind::Reassigned)
            .at_step(&task.step)
            .note(format!(
                "改由{}办理（原办理人：{}）：{reason}",
                people.join("、"),
                if before.is_empty() {
                    "无".to_string()
                } else {
                    before.join("、")
                }
            ))
            .people(people);
        self.record(line);
        let task = self.state.tasks[task_id].clone();
        self.notify_rules(RuleEvent::TaskOpened, Some(&task.step), Some(&task));
        Ok(())
    }
}
