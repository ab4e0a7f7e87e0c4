//! `wait_message` and `wait_timer`: steps that wait for something other
//! than a person. A message is matched by name and correlation key; its
//! optional timeout escalates like a task's deadline. A timer waits for a
//! legal period (with reminders before it ends) and moves on.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::definition::{DeadlineDef, Step, StepKind};
use crate::runtime::apply::Run;
use crate::runtime::error::EngineError;
use crate::runtime::event::Command;
use crate::runtime::history::HistoryKind;
use crate::runtime::state::{TimerKind, WaitState};
use crate::runtime::values;

impl Run<'_> {
    fn begin_wait(&mut self, id: &str, message: Option<(String, String)>) {
        self.state.waits.insert(
            id.into(),
            WaitState {
                step: id.into(),
                message,
                child: None,
                children: Vec::new(),
                since: Some(self.now),
                deadline: None,
            },
        );
    }

    pub(crate) fn enter_wait_message(
        &mut self,
        id: &str,
        step: &Step,
    ) -> Result<Vec<String>, EngineError> {
        let StepKind::WaitMessage {
            message,
            correlation,
            deadline,
            ..
        } = &step.kind
        else {
            unreachable!("enter_wait_message is given wait_message steps")
        };
        let key = match self.eval(correlation)? {
            Json::String(s) => s,
            other => other.to_string(),
        };
        self.commands.push(Command::AwaitMessage {
            name: message.clone(),
            key: key.clone(),
        });
        self.begin_wait(id, Some((message.clone(), key.clone())));
        let computed = match deadline {
            Some(d) => {
                let start = self.start_of(id, d, None)?;
                let kind = TimerKind::MessageTimeout { step: id.into() };
                Some(self.schedule_wait(id, d, start, kind)?)
            }
            None => None,
        };
        let line = self
            .line("engine", HistoryKind::Waiting)
            .to(id)
            .deadline(computed)
            .note(format!("message {message} ({key})"));
        self.record(line);
        Ok(Vec::new())
    }

    pub(crate) fn enter_wait_timer(
        &mut self,
        id: &str,
        timer: &DeadlineDef,
    ) -> Result<Vec<String>, EngineError> {
        self.begin_wait(id, None);
        let start = self.start_of(id, timer, None)?;
        let c = self.schedule_wait(id, timer, start, TimerKind::Wait { step: id.into() })?;
        let line = self
            .line("engine", HistoryKind::Waiting)
            .to(id)
            .deadline(Some(c));
        self.record(line);
        Ok(Vec::new())
    }

    pub(crate) fn message(
        &mut self,
        name: &str,
        key: &str,
        given: &BTreeMap<String, Json>,
        sender: Option<&str>,
    ) -> Result<(), EngineError> {
        let Some(step_id) = self
            .state
            .waits
            .iter()
            .find(|(_, w)| {
                w.message
                    .as_ref()
                    .is_some_and(|(n, k)| n == name && k == key)
            })
            .map(|(s, _)| s.clone())
        else {
            return Err(EngineError::NotAwaited {
                name: name.into(),
                key: key.into(),
            });
        };
        let StepKind::WaitMessage { fields, next, .. } = &self.def().steps[&step_id].kind else {
            unreachable!("waits of messages are wait_message steps")
        };
        let mut changed = BTreeMap::new();
        for (n, v) in given {
            if !fields.contains(n) {
                return Err(EngineError::NotAField {
                    outcome: format!("message `{name}`"),
                    field: n.clone(),
                });
            }
            let v = values::check(n, &self.def().variables[n], v)?;
            self.in_profile(n, &v)?;
            changed.insert(n.clone(), v);
        }
        self.state.variables.extend(changed.clone());
        self.end_wait(&step_id);
        let line = self
            .line(sender.unwrap_or("engine"), HistoryKind::Message)
            .from(step_id)
            .to(next.clone())
            .changed(changed)
            .note(format!("message {name} ({key})"));
        self.record(line);
        self.enter(&next.clone())
    }

    /// A `wait_timer`'s period ran: move on.
    pub(crate) fn wait_over(&mut self, step: &str) -> Result<(), EngineError> {
        let StepKind::WaitTimer { next, .. } = &self.def().steps[step].kind else {
            unreachable!("wait timers belong to wait_timer steps")
        };
        self.end_wait(step);
        let line = self
            .line("engine", HistoryKind::Timer)
            .from(step)
            .to(next.clone());
        self.record(line);
        self.enter(&next.clone())
    }

    /// A `wait_message`'s timeout: escalate like a deadline. Only a `goto`
    /// ends the wait; a timeout that only notifies keeps waiting for the
    /// message, as a task stays open after a notify-only expiry.
    pub(crate) fn message_timeout(&mut self, step: &str) -> Result<(), EngineError> {
        let Some((d, _)) = self.wait_deadline(step) else {
            unreachable!("message timeouts belong to wait_message steps with a deadline")
        };
        if d.on_expiry.as_ref().is_some_and(|x| x.goto.is_some()) {
            // A call given up on: its child is not waited for any more.
            if let Some(w) = self.state.waits.get(step) {
                let name = &self.def().steps[step].name;
                let cancels: Vec<Command> = w
                    .all_children()
                    .map(|child| Command::CancelChild {
                        child: child.clone(),
                        reason: format!("{name}（{step}）期限届满，不再等待"),
                        actor: "engine".into(),
                    })
                    .collect();
                self.commands.extend(cancels);
            }
            self.state.for_each.remove(step);
            self.end_wait(step);
        }
        self.escalate(step, None, &d)
    }
}
