//! Sending notifications: a [`Dispatcher`] is the outbox [`Worker`] of one
//! channel (email or SMS): it renders a row into a message and sends it.
//! Claiming, leases, retries with backoff and dead rows are the engine's one
//! worker loop ([`duban_engine::outbox`]), the same for every kind.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use duban_engine::definition::{Definition, StepKind};
use duban_engine::outbox::{WorkFuture, Worker};
use duban_engine::runtime::{Command, Directory, InstanceState, NotifyEvent};
use duban_engine::service::Engine;
use duban_engine::store::{OutboxKind, OutboxRow, Store};

use crate::links::LinkBuilder;
use crate::render::{self, Subject};
use crate::{Attachment, Message, Notifier, Recipient, SendError};

pub use duban_engine::outbox::{record, Policy, Round};

/// Sends the outbox's notifications through one notifier.
pub struct Dispatcher<S, N, L> {
    engine: Arc<Engine<S>>,
    notifier: N,
    links: L,
    policy: Policy,
}

fn recipients(to: &[String], dir: &dyn Directory) -> Vec<Recipient> {
    let mut out: Vec<Recipient> = Vec::new();
    for t in to {
        let found: Vec<Recipient> = if let Some(role) = t.strip_prefix("role:") {
            let (role, unit) = match role.split_once('@') {
                Some((r, u)) => (r, Some(u)),
                None => (role, None),
            };
            dir.holders(role, unit)
                .into_iter()
                .map(|p| Recipient {
                    id: p.id,
                    name: p.name,
                    email: p.email,
                    mobile: p.mobile,
                })
                .collect()
        } else if let Some(p) = dir.person(t) {
            vec![Recipient {
                id: p.id,
                name: p.name,
                email: p.email,
                mobile: p.mobile,
            }]
        } else if let Some(a) = dir.agency(t) {
            vec![Recipient {
                id: a.id,
                name: a.name,
                email: a.email,
                mobile: a.mobile,
            }]
        } else {
            vec![Recipient {
                id: t.clone(),
                name: t.clone(),
                email: None,
                mobile: None,
            }]
        };
        for r in found {
            if !out.iter().any(|x| x.id == r.id) {
                out.push(r);
            }
        }
    }
    out
}

impl<S: Store, N: Notifier, L: LinkBuilder> Dispatcher<S, N, L> {
    /// A dispatcher sending through `notifier`.
    pub fn new(engine: Arc<Engine<S>>, notifier: N, links: L, policy: Policy) -> Self {
        Dispatcher {
            engine,
            notifier,
            links,
            policy,
        }
    }

    /// Renders an outbox row into the message it sends.
    pub async fn message(&self, row: &OutboxRow, now: DateTime<Utc>) -> Result<Message, SendError> {
        let (cmd, state, def) = load_row(&self.engine, row).await?;
        if let Some(why) = moot(&cmd, &state) {
            return Err(SendError::Moot(why));
        }
        let Command::Notify {
            event,
            step,
            task,
            to,
            template,
            ..
        } = cmd
        else {
            return Err(SendError::Permanent("not a notification".into()));
        };
        let t = def.templates.get(&template).ok_or_else(|| {
            SendError::Permanent(format!(
                "template `{template}` is not in {} v{}",
                def.id, def.version
            ))
        })?;
        let dir = self.engine.directory();
        let to = recipients(&to, dir.as_ref());
        let task_state = task.as_ref().and_then(|id| state.tasks.get(id));
        let first = to.first();
        let answer_link = match (&task, first) {
            (Some(task), Some(r)) => self.links.answer_link(&state.id, task, &r.id),
            _ => String::new(),
        };
        let subject = Subject {
            definition: &def,
            state: &state,
            step: step.as_deref(),
            task: task_state,
            recipient: first,
            answer_link,
            now,
        };
        let ctx = render::context(&subject, dir.as_ref());
        let r = render::render(t, &ctx).map_err(SendError::Permanent)?;
        // A notice's email carries its documents (督办函, 决定书, …) as PDF,
        // so the agency holds the formal text itself: dated the day they
        // were issued (the row's), as the files and the portal show them.
        // A document that cannot be typeset goes as its web page instead:
        // the notice itself (its link, its period) must reach the agency.
        // An SMS carries no attachment, so none is typeset for it.
        let mut attachments = Vec::new();
        let email = self.notifier.kind() == OutboxKind::Email;
        let notice_documents = match step.as_deref().and_then(|s| def.steps.get(s)) {
            Some(s) if email && event == NotifyEvent::Notice => match &s.kind {
                StepKind::Notice { documents, .. } => documents.as_slice(),
                _ => &[],
            },
            _ => &[],
        };
        // The documents' context (no recipient, the day of issue): made
        // once, for the first document, and only for a notice that has one.
        let issued = std::cell::OnceCell::new();
        for id in notice_documents {
            let issued = issued.get_or_init(|| {
                render::context(
                    &Subject {
                        definition: &def,
                        state: &state,
                        step: step.as_deref(),
                        task: task_state,
                        recipient: None,
                        answer_link: String::new(),
                        now: row.created_at,
                    },
                    dir.as_ref(),
                )
            });
            let doc = def.documents.get(id).ok_or_else(|| {
                SendError::Permanent(format!("document `{id}` is not in {}", def.id))
            })?;
            let parts = render::document_parts(&def, doc, state.profile.as_deref(), issued)
                .map_err(SendError::Permanent)?;
            let title = parts.title.clone();
            let html = render::compose(&parts).html;
            match crate::documents::pdf(parts).await {
                Ok(bytes) => attachments.push(Attachment {
                    filename: format!("{title}.pdf"),
                    content_type: "application/pdf".into(),
                    bytes,
                }),
                Err(e) => {
                    tracing::error!(row = row.id, instance = %row.instance, document = %id, error = %e, "a notice's document was not typeset; its web page goes instead");
                    attachments.push(Attachment {
                        filename: format!("{title}.html"),
                        content_type: "text/html; charset=utf-8".into(),
                        bytes: html.into_bytes(),
                    });
                }
            }
        }
        Ok(Message {
            key: format!("duban.outbox.{}", row.id),
            template,
            to,
            subject: r.subject,
            text: r.text,
            html: r.html,
            sms: r.sms,
            sms_params: r.sms_params,
            attachments,
        })
    }

    /// After a notice's email was accepted by the mail server: tells the
    /// instance it was delivered (electronic service reaches the recipient
    /// when it reaches their system), which starts a `deemed_receipt`
    /// period. A store failure is transient: the row is tried again (its
    /// email, with the same Message-ID, may then arrive twice), so the
    /// delivery is never lost; a stale event (answered meanwhile, already
    /// recorded) is nothing to do.
    async fn record_delivery(&self, row: &OutboxRow, now: DateTime<Utc>) -> Result<(), SendError> {
        let Some(task) = serde_json::from_str::<Command>(&row.payload)
            .ok()
            .and_then(|c| c.notice_task().map(str::to_string))
        else {
            return Ok(());
        };
        let event = duban_engine::runtime::Event::Delivered { task };
        match self.engine.fire(&row.instance, &event, now).await {
            Ok(_) => Ok(()),
            Err(e @ duban_engine::service::ServiceError::Store(_)) => {
                Err(SendError::Transient(format!("recording the delivery: {e}")))
            }
            Err(e) => {
                tracing::warn!(row = row.id, instance = %row.instance, error = %e, "recording a notice's delivery failed");
                Ok(())
            }
        }
    }

    /// Sends every notification due at `now`, through the outbox's one
    /// worker loop and retry policy.
    pub async fn dispatch_due(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Round, duban_engine::store::StoreError> {
        duban_engine::outbox::drain(self.engine.store(), self, &self.policy, now).await
    }
}

impl<S: Store, N: Notifier, L: LinkBuilder> Worker for Dispatcher<S, N, L> {
    fn kind(&self) -> OutboxKind {
        self.notifier.kind()
    }

    fn handle<'a>(&'a self, row: &'a OutboxRow, now: DateTime<Utc>) -> WorkFuture<'a> {
        Box::pin(async move {
            let m = self.message(row, now).await?;
            self.notifier.send(&m).await?;
            if self.notifier.kind() == OutboxKind::Email {
                self.record_delivery(row, now).await?;
            }
            Ok(())
        })
    }

    fn concurrency(&self) -> usize {
        self.notifier.concurrency()
    }
}

/// Why a notification no longer says what is true, if it does not: a "new
/// task" or a reminder for a task the engine closed before the message went
/// out — cancelled with its instance, not needed any more, closed when the
/// instance ended elsewhere. (A task someone completed quickly still gets
/// its "new task" email: it is the record that it was assigned.)
fn moot(cmd: &Command, state: &InstanceState) -> Option<String> {
    let Command::Notify {
        event: event @ (NotifyEvent::TaskOpened | NotifyEvent::Reminder),
        task: Some(task),
        ..
    } = cmd
    else {
        return None;
    };
    let closed = state.tasks.get(task)?.closed.as_ref()?;
    if !["cancelled", "not_needed", "ended"].contains(&closed.outcome.as_str()) {
        return None;
    }
    Some(format!(
        "the {} message of task {task} was not sent: the task was closed ({}) before it went out",
        event.as_str(),
        closed.outcome
    ))
}

/// An outbox row's command, with its instance as it is now and the
/// definition version that instance runs on.
pub(crate) async fn load_row<S: Store>(
    engine: &Engine<S>,
    row: &OutboxRow,
) -> Result<(Command, InstanceState, Arc<Definition>), SendError> {
    let cmd: Command = serde_json::from_str(&row.payload)
        .map_err(|e| SendError::Permanent(format!("unreadable row: {e}")))?;
    let state = engine
        .store()
        .load(&row.instance)
        .await
        .map_err(|e| SendError::Transient(e.to_string()))?
        .ok_or_else(|| SendError::Permanent(format!("instance {} is gone", row.instance)))?;
    let def = engine
        .definition(&state.definition, Some(state.version))
        .await
        .map_err(|e| SendError::Transient(e.to_string()))?;
    Ok((cmd, state, def))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = Policy::default();
        let delays: Vec<i64> = (1..=9).map(|n| p.delay(n).num_seconds()).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }
}
