//! `send_message`: tell the instances of other processes (or of this one)
//! that wait for a message, correlated by key: a meeting tells each absent
//! supervisor's term instance of the absence.
//!
//! The message is part of the sender's transition only as a command: the
//! store writes it as a `send_message` outbox row in the same transaction,
//! and the engine delivers it afterwards to every instance waiting then
//! (`Engine::replay_call`), so a crash between the two delays the message
//! and never loses it. The step goes on at once; it does not wait for a
//! receiver.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::definition::{Step, StepKind};
use crate::runtime::apply::Run;
use crate::runtime::error::EngineError;
use crate::runtime::event::Command;
use crate::runtime::history::HistoryKind;

impl Run<'_> {
    pub(crate) fn enter_send_message(
        &mut self,
        id: &str,
        step: &Step,
    ) -> Result<Vec<String>, EngineError> {
        let StepKind::SendMessage {
            message,
            key,
            variables,
            next,
        } = &step.kind
        else {
            unreachable!("enter_send_message is given send_message steps")
        };
        let keys = match self.eval(key)? {
            Json::String(k) => vec![k],
            Json::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Json::String(k) => Ok(k),
                    other => Err(other),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|other| EngineError::Expression {
                    expr: key.source.clone(),
                    why: format!("gave {other} in its list, not a text key"),
                })?,
            Json::Null => Vec::new(),
            other => {
                return Err(EngineError::Expression {
                    expr: key.source.clone(),
                    why: format!("gave {other}, not a text key or a list of them"),
                })
            }
        };
        let mut carried = BTreeMap::new();
        for (name, e) in variables {
            match self.eval(e)? {
                Json::Null => {}
                v => {
                    carried.insert(name.clone(), v);
                }
            }
        }
        let note = if keys.is_empty() {
            format!("message {message}: no key, nothing sent")
        } else {
            format!("message {message} → {}", keys.join(", "))
        };
        if !keys.is_empty() {
            self.commands.push(Command::SendMessage {
                name: message.clone(),
                keys,
                variables: carried,
            });
        }
        let line = self
            .line("engine", HistoryKind::Message)
            .from(id)
            .to(next.clone())
            .note(note);
        self.record(line);
        Ok(vec![next.clone()])
    }
}
