//! Recusal (回避) on a task with `recusal: { decided_by }`: a participant
//! declares a conflict, a supervised party of the instance requests a
//! participant's recusal, or a decider raises it ex officio (XC-16); until a holder of `decided_by` decides, the
//! person may not act on the task; granted, they are excluded from it (also
//! as a holder of its role) and it goes to the others, or to the role's
//! other holders when they were the only one; refused, they act again.
//! Every step is a history line naming who asked, who decided and why.

use crate::definition::{Channel, Party, StepKind};
use crate::runtime::apply::Run;
use crate::runtime::error::EngineError;
use crate::runtime::event::{Command, NotifyEvent};
use crate::runtime::history::HistoryKind;
use crate::runtime::state::{Recusal, RecusalDecision, TaskKind, TaskState};

impl Run<'_> {
    pub(crate) fn request_recusal(
        &mut self,
        task_id: &str,
        person: &str,
        reason: &str,
        actor: &str,
    ) -> Result<(), EngineError> {
        let task = self.open_task(task_id)?;
        let def = self.recusal_def(&task)?;
        if reason.trim().is_empty() {
            return Err(EngineError::Recusal(
                "a recusal needs its reason (the conflict, or the grounds of the request)".into(),
            ));
        }
        // The person must be someone who could act on the task.
        self.item = task.item.clone();
        let on_it = self.check_may_act(&task, person);
        self.item = None;
        match on_it {
            Ok(()) => {}
            Err(EngineError::Recused { why, .. }) => {
                return Err(EngineError::Recusal(format!(
                    "`{person}` cannot be recused from `{task_id}` again: {why}"
                )))
            }
            Err(_) => {
                return Err(EngineError::Recusal(format!(
                    "`{person}` is not among those who act on `{task_id}` ({})",
                    task.assignees.join(", ")
                )))
            }
        }
        // The person themself, a supervised party of this instance, or a
        // decider raising it ex officio where nobody asked although
        // recusal was due (XC-16: 行政执法监督机关应当决定其回避).
        let decider = actor != person && self.deciders(&def.0).iter().any(|d| d == actor);
        if actor != person && !decider && !self.is_party(actor) {
            return Err(EngineError::NotPermitted {
                task: task_id.into(),
                actor: actor.into(),
                assignees: format!(
                    "`{person}` themself, a supervised party of {} or a holder of `{}`",
                    self.state.id, def.0
                ),
            });
        }
        let t = self.state.tasks.get_mut(task_id).expect("open");
        t.recusals.push(Recusal {
            person: person.into(),
            reason: reason.into(),
            requested_by: actor.into(),
            at: self.now,
            decision: None,
        });
        let who = if actor == person {
            "本人申请回避".to_string()
        } else if decider {
            format!("{actor}依职权提出{person}回避")
        } else {
            format!("{actor}申请{person}回避")
        };
        let line = self
            .line(actor, HistoryKind::RecusalRequested)
            .at_step(&task.step)
            .note(format!("{who}：{reason}"))
            .people(vec![person.into()]);
        self.record(line);
        if let Some(template) = &def.1 {
            let to = vec![format!("role:{}", def.0)];
            self.notify(
                NotifyEvent::RecusalRequested,
                Some(&task.step),
                Some(task_id.into()),
                to,
                &[Channel::Email, Channel::Sms],
                template,
            );
        }
        Ok(())
    }

    pub(crate) fn decide_recusal(
        &mut self,
        task_id: &str,
        person: &str,
        granted: bool,
        actor: &str,
    ) -> Result<(), EngineError> {
        let task = self.open_task(task_id)?;
        let (role, _) = self.recusal_def(&task)?;
        if task.pending_recusal(person).is_none() {
            return Err(EngineError::Recusal(format!(
                "no recusal of `{person}` from `{task_id}` awaits a decision"
            )));
        }
        let deciders = self.deciders(&role);
        if actor == person || !deciders.iter().any(|d| d == actor) {
            return Err(EngineError::NotPermitted {
                task: task_id.into(),
                actor: actor.into(),
                assignees: format!(
                    "the holders of `{role}` other than `{person}` (decide the recusal)"
                ),
            });
        }
        let mut assignees = task.assignees.clone();
        if granted {
            assignees.retain(|a| a != person);
            if assignees.is_empty() {
                // It goes to the others who may do it.
                let StepKind::Task {
                    assignee,
                    min_assignees,
                    ..
                } = &self.def().steps[&task.step].kind
                else {
                    unreachable!("recusal is on tasks")
                };
                self.item = task.item.clone();
                let mut others = self.resolve(assignee, Some(&task));
                self.item = None;
                others.retain(|p| p != person && !task.excluded.contains(p));
                if others.len() < *min_assignees as usize {
                    return Err(EngineError::TooFewAssignees {
                        step: task.step.clone(),
                        min: *min_assignees,
                        found: others.len(),
                        hint: String::new(),
                    });
                }
                assignees = others;
            }
        }
        let t = self.state.tasks.get_mut(task_id).expect("open");
        if let Some(r) = t
            .recusals
            .iter_mut()
            .find(|r| r.person == person && r.decision.is_none())
        {
            r.decision = Some(RecusalDecision {
                granted,
                by: actor.into(),
                at: self.now,
            });
        }
        if granted {
            t.excluded.push(person.into());
            t.assignees = assignees.clone();
            self.commands.push(Command::UpdateTask {
                task: task_id.into(),
            });
        }
        let note = if granted {
            format!("准予{person}回避；改由{}办理", assignees.join("、"))
        } else {
            format!("不予{person}回避")
        };
        let line = self
            .line(actor, HistoryKind::RecusalDecided)
            .at_step(&task.step)
            .note(note)
            .people(vec![person.into()]);
        self.record(line);
        Ok(())
    }

    /// The holders of the role that decides recusals.
    fn deciders(&self, role: &str) -> Vec<String> {
        self.resolve(
            &Party::Role {
                role: crate::definition::RoleRef::Role(role.into()),
                within: None,
            },
            None,
        )
    }

    /// The role deciding recusals on `task`'s step, and its template.
    fn recusal_def(&self, task: &TaskState) -> Result<(String, Option<String>), EngineError> {
        match &self.def().steps[&task.step].kind {
            StepKind::Task {
                recusal: Some(r), ..
            } if task.kind == TaskKind::Task => {
                Ok((self.role_id(&r.decided_by), r.template.clone()))
            }
            _ => Err(EngineError::Recusal(format!(
                "step `{}` has no `recusal:`; a recusal cannot be raised on `{}`",
                task.step, task.id
            ))),
        }
    }

    /// Whether `who` is a supervised party of the instance: an agency (or
    /// person) a variable names, or a recipient of one of its notices.
    fn is_party(&self, who: &str) -> bool {
        let in_var = self.def().variables.iter().any(|(name, v)| {
            matches!(
                v.ty,
                crate::definition::ValueType::Agency | crate::definition::ValueType::List(_)
            ) && match self.state.variables.get(name) {
                Some(serde_json::Value::String(s)) => s == who,
                Some(serde_json::Value::Array(items)) => items.iter().any(|i| i == who),
                _ => false,
            } && self.env.directory.agency(who).is_some()
        });
        in_var
            || self
                .state
                .tasks
                .values()
                .any(|t| t.kind == TaskKind::Notice && t.assignees.iter().any(|a| a == who))
    }
}
