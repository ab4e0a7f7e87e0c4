//! Carrying out outbox rows: one worker loop and one retry policy for
//! every kind.
//!
//! Outbox rows are written in the transaction that causes them; afterwards
//! a [`Worker`] for each kind carries them out: email and SMS (in
//! `notifiers`), documents (in `notifiers`), and the calls of `call` steps
//! ([`CallReplay`], here). [`drain`] is the one loop: it claims due rows of
//! the worker's kind with a lease (so several engine processes share the
//! outbox), hands each to the worker, and records the result with the one
//! [`Policy`]: success marks the row sent; a transient failure schedules a
//! retry after an exponentially growing delay; a permanent failure, or the
//! last allowed attempt, makes it dead. Nothing is ever deleted: the outbox
//! is also the record of what was done (`duban outbox`).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, StreamExt};

use chrono::{DateTime, Duration, Utc};
use tracing::{info, warn};

use crate::runtime::EngineError;
use crate::service::{Engine, ServiceError};
use crate::store::{OutboxKind, OutboxRow, Store, StoreError};

/// Retry policy, the same for every kind.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Attempts before a row is dead.
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles.
    pub first_delay: Duration,
    /// The longest delay between attempts.
    pub max_delay: Duration,
    /// Rows claimed per round trip.
    pub batch: u32,
    /// How long a claim holds before another process may take the row.
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

/// What one drain did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Rows carried out.
    pub sent: usize,
    /// Rows that failed and will be retried.
    pub retried: usize,
    /// Rows that are now dead.
    pub dead: usize,
    /// Rows dropped: what they were about no longer held.
    pub dropped: usize,
}

/// Why carrying out a row failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Worth retrying (server down, timeout, 4xx, a stuck parent).
    #[error("temporary failure: {0}")]
    Transient(String),
    /// Retrying will not help (no address, rejected recipient, 5xx, a refused call).
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// Nothing to do any more: what the row was about no longer holds (the
    /// task it announces was closed before its turn). Dropped, not sent.
    #[error("not carried out: {0}")]
    Moot(String),
}

/// The future a worker returns (not `Send`: the engine's store futures are
/// not required to be).
pub type WorkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + 'a>>;

/// Carries out the outbox rows of one kind.
pub trait Worker {
    /// The kind it carries out.
    fn kind(&self) -> OutboxKind;
    /// Carries out one row. The same row may come again after an uncertain
    /// failure; doing it twice must do no harm (the idempotency key is the
    /// row id). It must end in bounded time (a timeout of its own).
    fn handle<'a>(&'a self, row: &'a OutboxRow, now: DateTime<Utc>) -> WorkFuture<'a>;
    /// How many rows it carries out at once (e.g. SMTP connections).
    fn concurrency(&self) -> usize {
        1
    }
}

/// The outbox rows this process has claimed and not yet finished, so that a
/// shutdown can give them back at once instead of leaving them to their
/// leases.
#[derive(Clone, Debug, Default)]
pub struct Claims(Arc<Mutex<BTreeSet<i64>>>);

impl Claims {
    fn add(&self, ids: impl IntoIterator<Item = i64>) {
        self.0.lock().expect("not poisoned").extend(ids);
    }

    fn remove(&self, id: i64) {
        self.0.lock().expect("not poisoned").remove(&id);
    }

    /// The rows still claimed.
    pub fn held(&self) -> Vec<i64> {
        self.0
            .lock()
            .expect("not poisoned")
            .iter()
            .copied()
            .collect()
    }
}

/// Where a long-running drain gets the time and learns to stop.
pub struct Live<'a> {
    /// The current instant: read for every claim (its lease), every attempt
    /// and every outcome (`sent_at`, the retry time).
    pub now: &'a (dyn Fn() -> DateTime<Utc> + 'a),
    /// Set when the process is shutting down: no more claims, and rows of
    /// a claim not yet begun are given back.
    pub stop: &'a (dyn Fn() -> bool + 'a),
    /// The rows claimed and not yet finished.
    pub claims: &'a Claims,
}

/// Carries out every row of `worker`'s kind due at `now`, with the clock
/// standing still (tests, the simulator).
pub async fn drain<S: Store>(
    store: &S,
    worker: &dyn Worker,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Round, StoreError> {
    let claims = Claims::default();
    let live = Live {
        now: &|| now,
        stop: &|| false,
        claims: &claims,
    };
    drain_live(store, worker, policy, &live).await
}

/// Carries out every row of `worker`'s kind that is due, as `serve` does:
/// up to `batch` rows per claim, as many at once as the worker carries out,
/// the claim's lease counted from the clock at that claim. A row is begun
/// only within the first half of its claim's lease, so every row begun
/// ends (each bounded by the worker's own timeout) before another process
/// may take it; the rest are given back and claimed afresh. Every attempt
/// and every outcome reads the clock again (`sent_at` is when the row was
/// done, a retry is scheduled from the failure). Stops claiming when told
/// to stop, and gives back the rows of its last claim it had not begun.
pub async fn drain_live<S: Store>(
    store: &S,
    worker: &dyn Worker,
    policy: &Policy,
    live: &Live<'_>,
) -> Result<Round, StoreError> {
    let mut round = Round::default();
    let width = worker.concurrency().max(1);
    loop {
        if (live.stop)() {
            return Ok(round);
        }
        let claimed_at = (live.now)();
        let rows = store
            .claim_outbox(
                worker.kind(),
                claimed_at,
                policy.batch.max(1),
                claimed_at + policy.lease,
            )
            .await?;
        if rows.is_empty() {
            return Ok(round);
        }
        let begin_by = claimed_at + policy.lease / 2;
        live.claims.add(rows.iter().map(|r| r.id));
        // Each row's outcome is recorded inside its own future, not by
        // this loop: a worker may write to the store itself (the email
        // dispatcher records a notice's delivery), and a loop awaiting one
        // row's write while it does not poll another row's future, that
        // is halfway through a transaction holding SQLite's write lock,
        // would wait for that lock until the busy timeout.
        let mut done = stream::iter(rows)
            .map(|row| async move {
                let now = (live.now)();
                let mut one = Round::default();
                let r = if (live.stop)() || now > begin_by {
                    store.release_outbox(Some(&[row.id])).await.map(drop)
                } else {
                    let result = worker.handle(&row, now).await;
                    record(store, policy, &row, result, (live.now)(), &mut one).await
                };
                (row.id, r.map(|()| one))
            })
            .buffer_unordered(width);
        let mut failed = None;
        while let Some((id, r)) = done.next().await {
            match r {
                Ok(one) => {
                    round.sent += one.sent;
                    round.retried += one.retried;
                    round.dead += one.dead;
                    round.dropped += one.dropped;
                }
                Err(e) => failed = failed.or(Some(e)),
            }
            live.claims.remove(id);
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
}

/// Records the outcome of one attempt at `row`: sent, retried later with
/// backoff, or dead.
pub async fn record<S: Store>(
    store: &S,
    policy: &Policy,
    row: &OutboxRow,
    result: Result<(), Failure>,
    now: DateTime<Utc>,
    round: &mut Round,
) -> Result<(), StoreError> {
    let attempts = row.attempts + 1;
    match result {
        Err(Failure::Moot(why)) => {
            info!(row = row.id, kind = %row.kind, instance = %row.instance, reason = %why, "outbox row dropped");
            store.outbox_dropped(row.id, &why).await?;
            round.dropped += 1;
        }
        Ok(()) => {
            store.outbox_sent(row.id, now).await?;
            info!(row = row.id, kind = %row.kind, instance = %row.instance, "outbox row done");
            round.sent += 1;
        }
        Err(Failure::Transient(e)) if attempts < policy.max_attempts => {
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

/// Finishes the calls of `call` steps: `start_child` rows (start the child
/// if a crash stopped that) and `child_ended` rows (hand an ended child's
/// result to its parent if it missed it); see [`Engine::replay_call`]. A
/// store failure or a stuck parent is retried; a start the definition
/// refuses makes the row dead, for an administrator (`duban outbox`).
pub struct CallReplay<S> {
    engine: Arc<Engine<S>>,
    kind: OutboxKind,
}

impl<S: Store> CallReplay<S> {
    /// The worker for `kind` (`StartChild` or `ChildEnded`).
    pub fn new(engine: Arc<Engine<S>>, kind: OutboxKind) -> Self {
        CallReplay { engine, kind }
    }
}

impl<S: Store> Worker for CallReplay<S> {
    fn kind(&self) -> OutboxKind {
        self.kind
    }

    fn handle<'a>(&'a self, row: &'a OutboxRow, now: DateTime<Utc>) -> WorkFuture<'a> {
        Box::pin(async move {
            match self.engine.replay_call(row, now).await {
                Ok(()) => Ok(()),
                Err(
                    e @ (ServiceError::Store(_) | ServiceError::Engine(EngineError::Stuck { .. })),
                ) => Err(Failure::Transient(e.to_string())),
                Err(e) => Err(Failure::Permanent(e.to_string())),
            }
        })
    }
}
