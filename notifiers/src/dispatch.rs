//! Draining the outbox: claim, render, send, and record what happened.
//!
//! A row is claimed with a lease (so several engine processes share the
//! outbox), rendered, and sent. Success marks it sent. A transient failure
//! schedules a retry after an exponentially growing delay; a permanent one,
//! or the last allowed attempt, makes it dead. Nothing is ever deleted: the
//! outbox is also the record of what was sent (`duban outbox`).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use duban_engine::definition::{Definition, StepKind};
use duban_engine::runtime::{Command, Directory, InstanceState, NotifyEvent};
use duban_engine::service::Engine;
use duban_engine::store::{OutboxRow, Store};
use tracing::{info, warn};

use crate::links::LinkBuilder;
use crate::render::{self, Subject};
use crate::{Attachment, Message, Notifier, Recipient, SendError};

/// Retry policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Attempts before a row is dead.
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles.
    pub first_delay: Duration,
    /// The longest delay between attempts.
    pub max_delay: Duration,
    /// Rows claimed per round.
    pub batch: u32,
    /// How long a claim holds.
    pub lease: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_attempts: 8,
            first_delay: Duration::seconds(30),
            max_delay: Duration::hours(1),
            batch: 50,
            lease: Duration::minutes(2),
        }
    }
}

impl Policy {
    /// The delay before the attempt after `attempts` failed ones.
    pub fn delay(&self, attempts: u32) -> Duration {
        let factor = 2i32.saturating_pow(attempts.saturating_sub(1).min(20));
        (self.first_delay * factor).min(self.max_delay)
    }
}

/// What a round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Rows sent.
    pub sent: usize,
    /// Rows that failed and will be retried.
    pub retried: usize,
    /// Rows that are now dead.
    pub dead: usize,
}

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
        // A notice carries its documents (督办函, 决定书, …), rendered for
        // this recipient, so the agency holds the formal text itself.
        let mut attachments = Vec::new();
        let notice_documents = match step.as_deref().and_then(|s| def.steps.get(s)) {
            Some(s) if event == NotifyEvent::Notice => match &s.kind {
                StepKind::Notice { documents, .. } => documents.as_slice(),
                _ => &[],
            },
            _ => &[],
        };
        for id in notice_documents {
            let doc = def.documents.get(id).ok_or_else(|| {
                SendError::Permanent(format!("document `{id}` is not in {}", def.id))
            })?;
            let d = render::document(&def, doc, &ctx).map_err(SendError::Permanent)?;
            attachments.push(Attachment {
                filename: format!("{}.html", doc.title),
                html: d.html,
            });
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

    /// Sends every notification due at `now`.
    pub async fn dispatch_due(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Round, duban_engine::store::StoreError> {
        let mut round = Round::default();
        let store = self.engine.store();
        loop {
            let rows = store
                .claim_outbox(
                    self.notifier.kind(),
                    now,
                    self.policy.batch,
                    now + self.policy.lease,
                )
                .await?;
            if rows.is_empty() {
                return Ok(round);
            }
            for row in rows {
                let result = match self.message(&row, now).await {
                    Ok(m) => self.notifier.send(&m).await,
                    Err(e) => Err(e),
                };
                record(store, &self.policy, &row, result, now, &mut round).await?;
            }
        }
    }
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

/// Records the outcome of one attempt at `row`: sent, retried later with
/// backoff, or dead.
pub async fn record<S: Store>(
    store: &S,
    policy: &Policy,
    row: &OutboxRow,
    result: Result<(), SendError>,
    now: DateTime<Utc>,
    round: &mut Round,
) -> Result<(), duban_engine::store::StoreError> {
    let attempts = row.attempts + 1;
    match result {
        Ok(()) => {
            store.outbox_sent(row.id, now).await?;
            info!(row = row.id, kind = %row.kind, instance = %row.instance, "outbox row done");
            round.sent += 1;
        }
        Err(SendError::Transient(e)) if attempts < policy.max_attempts => {
            let at = now + policy.delay(attempts);
            warn!(row = row.id, kind = %row.kind, attempts, retry_at = %at, error = %e, "outbox row failed; will retry");
            store.outbox_failed(row.id, &e, Some(at)).await?;
            round.retried += 1;
        }
        Err(e) => {
            warn!(row = row.id, kind = %row.kind, attempts, error = %e, "outbox row is dead");
            store.outbox_failed(row.id, &e.to_string(), None).await?;
            round.dead += 1;
        }
    }
    Ok(())
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
