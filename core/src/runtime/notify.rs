//! Notification rules as commands: who hears of what, by which channel.
//!
//! The core never sends anything; it emits one [`Command::Notify`] per
//! channel, which the store writes as an outbox row in the transition's
//! transaction. Roles stay `role:ID` (or `role:ID@UNIT`) so the dispatcher
//! resolves them against the directory at sending time.

use super::apply::Run;
use super::event::{Command, NotifyEvent};
use super::state::TaskState;
use crate::definition::{Channel, Event as RuleEvent, Party};

impl Run<'_> {
    /// The notification rules for `event` (and `step`), as commands.
    pub(crate) fn notify_rules(
        &mut self,
        event: RuleEvent,
        step: Option<&str>,
        task: Option<&TaskState>,
    ) {
        self.notify_rules_except(event, step, task, None);
    }

    /// The rules for `event`, leaving out recipients `sent` has already
    /// given the same template.
    pub(crate) fn notify_rules_except(
        &mut self,
        event: RuleEvent,
        step: Option<&str>,
        task: Option<&TaskState>,
        sent: Option<(&str, &[String])>,
    ) {
        let def = self.def();
        for rule in &def.notifications {
            if rule.on != event || rule.step.as_deref().is_some_and(|s| Some(s) != step) {
                continue;
            }
            let mut to = Vec::new();
            for p in &rule.to {
                match p {
                    Party::Role { role, within } => match self.unit_of(within.as_ref()) {
                        Some(u) => to.push(format!("role:{}@{u}", self.role_id(role))),
                        None => to.push(format!("role:{}", self.role_id(role))),
                    },
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
            self.notify(
                event.into(),
                step,
                task.map(|t| t.id.clone()),
                to,
                &rule.channels,
                &rule.template,
            );
        }
    }

    /// One notification command per channel.
    pub(crate) fn notify(
        &mut self,
        event: NotifyEvent,
        step: Option<&str>,
        task: Option<String>,
        to: Vec<String>,
        channels: &[Channel],
        template: &str,
    ) {
        for &channel in channels {
            self.commands.push(Command::Notify {
                event,
                step: step.map(str::to_string),
                task: task.clone(),
                to: to.clone(),
                channel,
                template: template.into(),
            });
        }
    }
}
