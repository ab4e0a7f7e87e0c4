//! The engine running by itself: what `duban serve` runs, as a library
//! function the caller gives its engine, workers, clock and shutdown signal.
//!
//! Each round: a year's schedule installed into the calendar folder is
//! picked up (and provisional deadlines recounted), recurring starts are
//! started, interrupted calls finished, due timers applied, and every
//! worker drains its outbox kind through the one loop and retry policy of
//! [`crate::outbox`]. Then it sleeps until the next timer falls due (at most
//! `poll`), or until the shutdown signal, which ends it after the round in
//! progress.
//!
//! Time comes only from the [`Clock`]: [`SystemClock`] for production and
//! rehearsals (`DUBAN_NOW`), [`VirtualClock`] for tests, which move time
//! forward by hand and wait for the round [`Report`] instead of sleeping.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;
use tracing::{debug, error, info};

use crate::calendar::files;
use crate::outbox::{drain, CallReplay, Policy, Worker};
use crate::scheduler::{Scheduler, SchedulerOptions};
use crate::service::Engine;
use crate::store::{OutboxKind, Store};

/// Where `serve` gets the time, and how it waits.
pub trait Clock {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
    /// Completes at (or after) instant `t`.
    fn sleep_until<'a>(&'a self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + 'a>>;
}

/// The system clock, optionally shifted so that it started at a chosen
/// instant (`duban serve` with `DUBAN_NOW`, for rehearsals).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock {
    offset: Duration,
}

impl SystemClock {
    /// The system time as it is.
    pub fn new() -> Self {
        SystemClock::default()
    }

    /// A clock that reads `start` now and runs on from there.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        SystemClock {
            offset: start - Utc::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    fn sleep_until<'a>(&'a self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
        let d = (t - self.now())
            .to_std()
            .unwrap_or(StdDuration::ZERO)
            .max(StdDuration::from_millis(10));
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when told to ([`VirtualClock::set`]): a sleep
/// until `t` completes when the clock is set to `t` or later.
#[derive(Debug)]
pub struct VirtualClock {
    now: watch::Sender<DateTime<Utc>>,
}

impl VirtualClock {
    /// A clock reading `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        VirtualClock {
            now: watch::Sender::new(start),
        }
    }

    /// Moves the clock to `t` (never backwards).
    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_if_modified(|n| {
            let later = t > *n;
            if later {
                *n = t;
            }
            later
        });
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until<'a>(&'a self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|n| *n >= t).await;
        })
    }
}

/// How `serve` runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// How the scheduler claims timers.
    pub scheduler: SchedulerOptions,
    /// The longest sleep between rounds.
    pub poll: Duration,
    /// The retry policy of every outbox kind.
    pub policy: Policy,
    /// The calendar folder to watch for newly installed years.
    pub calendar_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scheduler: SchedulerOptions::default(),
            poll: Duration::seconds(1),
            policy: Policy::default(),
            calendar_dir: None,
        }
    }
}

/// What `serve` has done so far, published after every round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Rounds finished.
    pub rounds: u64,
    /// The clock's reading when the last round began.
    pub at: DateTime<Utc>,
    /// Instances started by recurring starts.
    pub started: usize,
    /// Timers applied.
    pub fired: usize,
    /// Stale timer rows dropped.
    pub stale: usize,
    /// Timers whose fault made their instance stuck.
    pub stuck: usize,
    /// Outbox rows carried out (calls, documents, email, SMS).
    pub sent: usize,
    /// Outbox rows to be retried.
    pub retried: usize,
    /// Outbox rows that died.
    pub dead: usize,
}

/// Runs the engine until `shutdown` completes: rounds as described in the
/// module docs, each published on `reports`. The calls of `call` steps are
/// always replayed; `workers` carry out the other outbox kinds (a kind
/// without a worker waits in the outbox, e.g. email when none is
/// configured).
pub async fn run<S: Store>(
    engine: Arc<Engine<S>>,
    workers: &[&dyn Worker],
    options: &Options,
    clock: &dyn Clock,
    shutdown: impl Future<Output = ()>,
    reports: Option<&watch::Sender<Report>>,
) {
    tokio::pin!(shutdown);
    let scheduler = Scheduler::new(engine.clone(), options.scheduler.clone());
    let calls: Vec<CallReplay<S>> = [OutboxKind::StartChild, OutboxKind::ChildEnded]
        .into_iter()
        .map(|k| CallReplay::new(engine.clone(), k))
        .collect();
    let mut calendar_seen = options.calendar_dir.as_deref().map(calendar_fingerprint);
    let mut report = Report::default();
    loop {
        let now = clock.now();
        report.at = now;
        // A year's schedule installed while serving: count on it from now
        // on, and recount what was counted without it.
        if let (Some(dir), Some(seen)) = (&options.calendar_dir, &mut calendar_seen) {
            let current = calendar_fingerprint(dir);
            if current != *seen {
                *seen = current;
                match files::load(dir) {
                    Ok(c) => {
                        engine.set_calendar(c);
                        match engine.recompute_provisional(now).await {
                            Ok(ids) => info!(recomputed = ids.len(), "calendar reloaded"),
                            Err(e) => {
                                error!(error = %e, "recomputing provisional deadlines failed")
                            }
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "the calendar folder changed but cannot be loaded; still counting on the previous calendar")
                    }
                }
            }
        }
        match scheduler.start_recurring(now).await {
            Ok(r) => {
                if r.started > 0 {
                    info!(started = r.started, "recurring starts");
                }
                report.started += r.started;
            }
            Err(e) => error!(error = %e, "recurring starts failed"),
        }
        for c in &calls {
            drain_one(&engine, c, &options.policy, clock.now(), &mut report).await;
        }
        // Calls settled: now the timers, before the slower channels.
        fire(&scheduler, now, &mut report).await;
        for &w in workers {
            drain_one(&engine, w, &options.policy, clock.now(), &mut report).await;
        }
        report.rounds += 1;
        if let Some(tx) = reports {
            tx.send_replace(report.clone());
        }
        let wake = scheduler
            .next_wake(clock.now(), options.poll)
            .await
            .unwrap_or(clock.now() + options.poll);
        tokio::select! {
            _ = clock.sleep_until(wake) => {}
            _ = &mut shutdown => {
                info!("shutting down");
                return;
            }
        }
    }
}

async fn fire<S: Store>(scheduler: &Scheduler<S>, now: DateTime<Utc>, report: &mut Report) {
    match scheduler.fire_due(now, None).await {
        Ok(r) => {
            if r.fired + r.stale + r.stuck > 0 {
                info!(fired = r.fired, stale = r.stale, stuck = r.stuck, "timers");
            }
            report.fired += r.fired;
            report.stale += r.stale;
            report.stuck += r.stuck;
        }
        Err(e) => error!(error = %e, "firing timers failed"),
    }
}

async fn drain_one<S: Store>(
    engine: &Engine<S>,
    worker: &dyn Worker,
    policy: &Policy,
    now: DateTime<Utc>,
    report: &mut Report,
) {
    let kind = worker.kind();
    match drain(engine.store(), worker, policy, now).await {
        Ok(r) => {
            if r.sent + r.retried + r.dead > 0 {
                info!(
                    sent = r.sent,
                    retried = r.retried,
                    dead = r.dead,
                    "outbox: {kind}"
                );
            } else {
                debug!("outbox: {kind}: nothing due");
            }
            report.sent += r.sent;
            report.retried += r.retried;
            report.dead += r.dead;
        }
        Err(e) => error!(error = %e, "outbox: {kind} failed"),
    }
}

/// What the calendar folder holds (names, sizes, modification times), to
/// notice a schedule installed while `serve` runs.
fn calendar_fingerprint(
    dir: &Path,
) -> Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.file_name(), m.len(), m.modified().ok()))
        })
        .collect();
    v.sort();
    v
}
