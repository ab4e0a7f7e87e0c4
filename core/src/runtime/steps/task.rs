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
use crate::runtime::state::{TaskKind, TaskState};
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
            deadline: None,
            closed: None,
            item: self.item.clone(),
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
            self.commands.push(Command::RenderDocument {
                document: d.clone(),
                step: step.into(),
                task: Some(id.clone()),
            });
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
    fn check_may_act(&self, task: &TaskState, actor: &str) -> Result<(), EngineError> {
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
        for d in &outcome.documents {
            self.commands.push(Command::RenderDocument {
                document: d.clone(),
                step: task.step.clone(),
                task: Some(task_id.into()),
            });
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
        self.state.tasks.get_mut(task_id).expect("open").received_at = Some(self.now);
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
                Start::Instant(self.now.with_timezone(&LEGAL_TZ)),
            )?),
            None => None,
        };
        self.commands.push(Command::UpdateTask {
            task: task_id.into(),
        });
        let line = self
            .line(actor, HistoryKind::Received)
            .at_step(&task.step)
            .deadline(computed)
            .people(vec![actor.into()]);
        self.record(line);
        self.item = None;
        Ok(())
    }
}
