//! The timer-driven part of the engine: due timers and recurring starts.
//!
//! Timers live in the store, indexed by due time. [`Scheduler::fire_due`]
//! claims due timers in batches (leased to this process, so several engine
//! processes on one PostgreSQL database share the work without waiting on
//! each other) and applies each as a `TimerFired` event, oldest first. The
//! timer row is deleted in the same transaction as its effect, and the
//! instance's revision check makes a second application impossible: each
//! timer is applied exactly once, whoever claims it, across crashes (a
//! crashed process's lease simply expires).
//!
//! Recurring starts (cron, Asia/Shanghai) start one instance per occurrence
//! under an id made of the definition, the entry and the occurrence, so the
//! instances' primary key refuses a second start of the same occurrence.
//!
//! Time is an argument everywhere here: `duban serve` passes the clock, the
//! simulator a virtual one.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tracing::{debug, info, warn};

use crate::definition::{Definition, MemberSet};
use crate::outbox::{drain, CallReplay, Policy};
use crate::runtime::{values, Directory, Event};
use crate::service::{Engine, Fired, ServiceError};
use crate::store::{DueTimer, OutboxKind, Store, StoreError};
use futures_util::StreamExt;

/// How the scheduler claims work.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// This process's name in claims.
    pub owner: String,
    /// Timers claimed per round trip.
    pub batch: u32,
    /// How long a claim holds before another process may take the timer.
    pub lease: Duration,
    /// Instances whose claimed timers are applied side by side (each
    /// instance's own timers one after another, in due order), so that
    /// their commits share transactions (`store::sqlite_writer`).
    pub concurrency: usize,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            owner: format!("duban-{}", std::process::id()),
            batch: 1000,
            lease: Duration::seconds(60),
            concurrency: 64,
        }
    }
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Timers applied.
    pub fired: usize,
    /// Timer rows found stale (their instance had moved on) and dropped.
    pub stale: usize,
    /// Timers whose event met a fault: their instance is now stuck, the
    /// timer rows kept and held until `duban retry`.
    pub stuck: usize,
    /// Instances started by recurring starts.
    pub started: usize,
    /// `start_child` rows finished (mostly confirmations of children the
    /// normal path started; a start a crash interrupted is done here).
    pub children: usize,
    /// Recurring starts that were refused (`ID: why`). Each is tried again
    /// next round, its entry's later occurrences wait behind it, and every
    /// other entry goes on.
    pub failed: Vec<String>,
}

/// Fires timers and recurring starts for one engine.
pub struct Scheduler<S> {
    engine: Arc<Engine<S>>,
    options: SchedulerOptions,
}

impl<S: Store> Scheduler<S> {
    /// A scheduler over `engine`.
    pub fn new(engine: Arc<Engine<S>>, options: SchedulerOptions) -> Self {
        Scheduler { engine, options }
    }

    /// Finishes the pending `start_child` and `child_ended` outbox rows
    /// through the outbox's one worker loop and retry policy
    /// ([`crate::outbox::CallReplay`]): each child is started if it is not
    /// yet, each ended child's result reaches its parent if it has not (see
    /// [`Engine::replay_call`]), and the row is marked sent.
    pub async fn replay_child_starts(&self, now: DateTime<Utc>) -> Result<Round, StoreError> {
        let mut round = Round::default();
        let policy = Policy {
            batch: self.options.batch,
            lease: self.options.lease,
            ..Policy::default()
        };
        for kind in [
            OutboxKind::StartChild,
            OutboxKind::ChildEnded,
            OutboxKind::SendMessage,
            OutboxKind::CancelChild,
        ] {
            let worker = CallReplay::new(self.engine.clone(), kind);
            let r = drain(self.engine.store(), &worker, &policy, now).await?;
            round.children += r.sent;
        }
        Ok(round)
    }

    /// Applies every timer due at `now`, oldest first, with the clock
    /// standing still. Without `not_before` each is applied at `now`; with
    /// it, at its own due instant but never before `not_before` (tests that
    /// want the due instants).
    pub async fn fire_due(
        &self,
        now: DateTime<Utc>,
        not_before: Option<DateTime<Utc>>,
    ) -> Result<Round, ServiceError> {
        self.fire(&|| now, not_before, &|| false).await
    }

    /// Applies every due timer as `serve` does: each claim's lease counted
    /// from the clock at that claim, each timer applied at the instant the
    /// clock reads when it is applied (its history says when it happened,
    /// not when the round began). Stops between timers when told to; the
    /// claims it then still holds are given back by the caller
    /// ([`crate::store::Store::release_timers`]).
    pub async fn fire_due_live(
        &self,
        now: &dyn Fn() -> DateTime<Utc>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Round, ServiceError> {
        self.fire(now, None, stop).await
    }

    async fn fire(
        &self,
        now: &dyn Fn() -> DateTime<Utc>,
        not_before: Option<DateTime<Utc>>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Round, ServiceError> {
        let mut round = Round::default();
        loop {
            if stop() {
                return Ok(round);
            }
            let store = self.engine.store();
            let t = now();
            let batch = store
                .claim_due(
                    t,
                    self.options.batch,
                    &self.options.owner,
                    t + self.options.lease,
                )
                .await?;
            if batch.is_empty() {
                return Ok(round);
            }
            // One instance's timers in due order, one after another;
            // instances side by side.
            let mut groups: indexmap::IndexMap<String, Vec<DueTimer>> = indexmap::IndexMap::new();
            for t in batch {
                groups.entry(t.instance.clone()).or_default().push(t);
            }
            let mut tallies = futures_util::stream::iter(groups.into_values())
                .map(|timers| self.fire_instance(timers, now, not_before, stop))
                .buffer_unordered(self.options.concurrency.max(1));
            let mut failed = None;
            while let Some(r) = tallies.next().await {
                match r {
                    Ok(t) => {
                        round.fired += t.fired;
                        round.stale += t.stale;
                        round.stuck += t.stuck;
                    }
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            if stop() {
                return Ok(round);
            }
        }
    }

    /// Applies one instance's claimed timers, in due order.
    async fn fire_instance(
        &self,
        timers: Vec<DueTimer>,
        now: &dyn Fn() -> DateTime<Utc>,
        not_before: Option<DateTime<Utc>>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Round, ServiceError> {
        let store = self.engine.store();
        let mut round = Round::default();
        for t in timers {
            if stop() {
                break;
            }
            let when = not_before.map_or_else(now, |f| t.due.max(f));
            let event = Event::TimerFired {
                timer: t.id.clone(),
            };
            let mut attempts = 0;
            loop {
                attempts += 1;
                match self.engine.fire(&t.instance, &event, when).await {
                    Ok(Fired::Applied(_)) => {
                        debug!(timer = %t.id, instance = %t.instance, "timer fired");
                        round.fired += 1;
                    }
                    // Already applied, cancelled, or the instance ended:
                    // the row is a leftover; remove it.
                    Ok(Fired::Stale(e)) => {
                        debug!(timer = %t.id, instance = %t.instance, code = e.code(), "stale timer row dropped");
                        store.drop_timer(&t.id).await?;
                        round.stale += 1;
                    }
                    // The instance is stuck: its timer rows are held
                    // (not dropped) until an administrator retries it.
                    Ok(Fired::Stuck(_)) => round.stuck += 1,
                    Ok(Fired::Held) => {}
                    Err(ServiceError::Store(StoreError::Conflict(_))) if attempts < 10 => continue,
                    Err(e) => {
                        // Left claimed: the lease expires and it is retried.
                        warn!(timer = %t.id, instance = %t.instance, error = %e, "timer failed; will retry");
                    }
                }
                break;
            }
        }
        Ok(round)
    }

    /// Starts one instance for every occurrence of every recurring start of
    /// the deployed definitions that falls in (cursor, now]. A definition's
    /// cursor starts at its deployment.
    pub async fn start_recurring(&self, now: DateTime<Utc>) -> Result<Round, ServiceError> {
        let mut round = Round::default();
        let store = self.engine.store();
        for (stored, def) in self.engine.deployed().await? {
            let id = &stored.id;
            for (i, entry) in def.schedule.iter().enumerate() {
                let i = i as u32;
                let from = store
                    .cron_cursor(id, i)
                    .await?
                    .unwrap_or(stored.deployed_at);
                let mut last = None;
                for occ in entry.schedule.after(&from.with_timezone(&entry.timezone)) {
                    let occ = occ.with_timezone(&Utc);
                    if occ > now {
                        break;
                    }
                    match self.start_occurrence(&def, i, occ).await {
                        Ok(started) => {
                            if started {
                                round.started += 1;
                            }
                            last = Some(occ);
                        }
                        // A refused start (a call whose child cannot start,
                        // a definition that no longer loads) stops this
                        // entry here, visibly, and no other.
                        Err(e) => {
                            let id = occurrence_id(&def, i, occ);
                            warn!(instance = %id, process = %def.id, error = %e, "recurring start refused; tried again next round");
                            round.failed.push(format!("{id}: {e}"));
                            break;
                        }
                    }
                }
                if let Some(last) = last {
                    store.advance_cron_cursor(id, i, last).await?;
                }
            }
        }
        Ok(round)
    }

    async fn start_occurrence(
        &self,
        def: &Definition,
        entry: u32,
        at: DateTime<Utc>,
    ) -> Result<bool, ServiceError> {
        let e = &def.schedule[entry as usize];
        let id = occurrence_id(def, entry, at);
        let variables: BTreeMap<String, serde_json::Value> = e
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), values::to_json(v)))
            .collect();
        let Some(members) = &e.for_each else {
            let started = self
                .engine
                .start_once(&id, &def.id, e.profile.as_deref(), variables, at)
                .await?;
            if started.is_some() {
                info!(instance = %id, process = %def.id, "recurring start");
            }
            return Ok(started.is_some());
        };
        // One instance per member, as the directory lists them at the
        // occurrence: `PROCESS-ENTRY-YYYYMMDDHHMM-MEMBER`, so each is
        // started once however often this is tried.
        let ids: Vec<String> = {
            let dir = self.engine.directory();
            match &members.of {
                MemberSet::Role(role) => {
                    dir.holders(role, None).into_iter().map(|p| p.id).collect()
                }
                MemberSet::Agencies(level) => Directory::agencies(dir.as_ref(), level.as_deref())
                    .into_iter()
                    .map(|a| a.id)
                    .collect(),
            }
        };
        if ids.is_empty() {
            warn!(instance = %id, process = %def.id, "per-member recurring start: the directory has no member; nothing started");
        }
        let mut any = false;
        for member in ids {
            let mut vars = variables.clone();
            vars.insert(
                members.var.clone(),
                serde_json::Value::String(member.clone()),
            );
            let one = format!("{id}-{member}");
            let started = self
                .engine
                .start_once(&one, &def.id, e.profile.as_deref(), vars, at)
                .await?;
            if started.is_some() {
                info!(instance = %one, process = %def.id, "recurring start");
                any = true;
            }
        }
        Ok(any)
    }

    /// When to look again: the next due timer, but at least every `poll`.
    /// (A timer under another process's claim counts from the claim's end.)
    pub async fn next_wake(
        &self,
        now: DateTime<Utc>,
        poll: Duration,
    ) -> Result<DateTime<Utc>, ServiceError> {
        let next = self.engine.store().next_due().await?;
        Ok(next.map_or(now + poll, |n| n.min(now + poll)))
    }
}

/// The id of a recurring start: the definition, the entry and the
/// occurrence in the entry's time zone, so a second start is refused.
fn occurrence_id(def: &Definition, entry: u32, at: DateTime<Utc>) -> String {
    let e = &def.schedule[entry as usize];
    let local = at.with_timezone(&e.timezone);
    format!("{}-{entry}-{}", def.id, local.format("%Y%m%d%H%M"))
}
