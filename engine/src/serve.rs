//! The engine running by itself: what `duban serve` runs, as a library
//! function the caller gives its engine, workers, clock and shutdown signal.
//!
//! Independent loops, run together, so that a slow or silent channel
//! delays only itself:
//!
//! - **the timer loop**: each round, a year's schedule installed into the
//!   calendar folder is picked up (and provisional deadlines recounted),
//!   recurring starts are started, interrupted calls finished and due
//!   timers applied, each at the instant it is applied; then it sleeps until
//!   the next timer falls due (at most `poll`);
//! - **one loop per worker** (documents, email, SMS): it drains its outbox
//!   kind through the one loop and retry policy of [`crate::outbox`], then
//!   sleeps `poll`.
//!
//! Every claim's lease is counted from the clock at that claim. On the
//! shutdown signal no loop claims anything more; what is in flight may
//! finish within `grace`, then is dropped, and every claim this process
//! still holds (timers by owner, outbox rows by id) is given back so another
//! process takes it at once. A process that knows it is the only one
//! (`sole_owner`: `serve` on its SQLite file, under the file's lock) first
//! gives back every claim a crashed predecessor left, instead of waiting
//! their leases out.
//!
//! Time comes only from the [`Clock`]: [`SystemClock`] for production and
//! rehearsals (`DUBAN_NOW`), [`VirtualClock`] for tests, which move time
//! forward by hand and wait for the round [`Report`] instead of sleeping.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use std::cell::RefCell;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::calendar::files;
use crate::outbox::{drain_live, CallReplay, Claims, Live, Policy, Worker};
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
    /// How long work in flight may go on after the shutdown signal.
    pub grace: StdDuration,
    /// This process is the only one on its store (SQLite under its lock):
    /// claims left by an earlier process are given back at start.
    pub sole_owner: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scheduler: SchedulerOptions::default(),
            poll: Duration::seconds(1),
            policy: Policy::default(),
            calendar_dir: None,
            grace: StdDuration::from_secs(10),
            sole_owner: false,
        }
    }
}

/// What `serve` has done so far, published after every round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Rounds of the timer loop finished.
    pub rounds: u64,
    /// The clock's reading when the timer loop's last round began.
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

/// Runs the engine until `shutdown` completes: the loops described in the
/// module docs, with a report published after each of their rounds. The
/// calls of `call` steps are always replayed; `workers` carry out the other
/// outbox kinds (a kind without a worker waits in the outbox, e.g. email
/// when none is configured).
pub async fn run<S: Store>(
    engine: Arc<Engine<S>>,
    workers: &[&dyn Worker],
    options: &Options,
    clock: &dyn Clock,
    shutdown: impl Future<Output = ()>,
    reports: Option<&watch::Sender<Report>>,
) {
    tokio::pin!(shutdown);
    let store = engine.store();
    let owner = options.scheduler.owner.as_str();
    if options.sole_owner {
        match (
            store.release_timers(None).await,
            store.release_outbox(None).await,
        ) {
            (Ok(t), Ok(o)) if t + o > 0 => {
                info!(
                    timers = t,
                    outbox = o,
                    "took over the claims an earlier process left"
                )
            }
            (Ok(_), Ok(_)) => {}
            (Err(e), _) | (_, Err(e)) => error!(error = %e, "giving back old claims failed"),
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopping = || *stop_rx.borrow();
    let now = || clock.now();
    let claims = Claims::default();
    let report = RefCell::new(Report::default());
    let publish = || {
        if let Some(tx) = reports {
            tx.send_replace(report.borrow().clone());
        }
    };
    let live = Live {
        now: &now,
        stop: &stopping,
        claims: &claims,
    };

    let timers = async {
        let scheduler = Scheduler::new(engine.clone(), options.scheduler.clone());
        let calls: Vec<CallReplay<S>> = [
            OutboxKind::StartChild,
            OutboxKind::ChildEnded,
            OutboxKind::SendMessage,
            OutboxKind::CancelChild,
        ]
        .into_iter()
        .map(|k| CallReplay::new(engine.clone(), k))
        .collect();
        let mut calendar_seen = options.calendar_dir.as_deref().map(calendar_fingerprint);
        let mut failures = 0u32;
        while !stopping() {
            let mut failed = false;
            let at = now();
            report.borrow_mut().at = at;
            if let (Some(dir), Some(seen)) = (&options.calendar_dir, &mut calendar_seen) {
                reload_calendar(&engine, dir, seen, at).await;
            }
            // A failed round (the store unreachable, the disk full) may
            // have left timers claimed by this process and not applied:
            // given back, they are applied now, not when their leases end.
            if failures > 0 {
                if let Err(e) = store.release_timers(Some(owner)).await {
                    failed = true;
                    error!(error = %e, "giving back the claims of a failed round failed");
                }
            }
            match scheduler.start_recurring(at).await {
                Ok(r) => {
                    if r.started > 0 {
                        info!(started = r.started, "recurring starts");
                    }
                    report.borrow_mut().started += r.started;
                }
                Err(e) => {
                    failed = true;
                    error!(error = %e, "recurring starts failed")
                }
            }
            for c in &calls {
                let r = drain_live(store, c, &options.policy, &live).await;
                failed |= !count(&report, c, r);
            }
            match scheduler.fire_due_live(&now, &stopping).await {
                Ok(r) => {
                    if r.fired + r.stale + r.stuck > 0 {
                        info!(fired = r.fired, stale = r.stale, stuck = r.stuck, "timers");
                    }
                    let mut rep = report.borrow_mut();
                    rep.fired += r.fired;
                    rep.stale += r.stale;
                    rep.stuck += r.stuck;
                }
                Err(e) => {
                    failed = true;
                    error!(error = %e, "firing timers failed")
                }
            }
            report.borrow_mut().rounds += 1;
            publish();
            let wake = scheduler
                .next_wake(now(), options.poll)
                .await
                .unwrap_or(now() + options.poll);
            failures = if failed { failures + 1 } else { 0 };
            nap(
                clock,
                wake.max(now() + backoff(options.poll, failures)),
                &stop_rx,
            )
            .await;
        }
    };
    let all = async {
        tokio::join!(
            timers,
            futures_util::future::join_all(workers.iter().map(|w| {
                channel(
                    store, *w, options, &live, &report, &publish, clock, &stop_rx,
                )
            }))
        );
    };
    let mut all = Box::pin(all);
    tokio::select! {
        _ = &mut all => {}
        _ = &mut shutdown => {
            info!("shutting down");
            stop_tx.send_replace(true);
            if tokio::time::timeout(options.grace, &mut all).await.is_err() {
                warn!(grace_secs = options.grace.as_secs_f64(), "work still in flight at the end of the grace period is dropped");
            }
        }
    }
    drop(all);
    // Given back, so another process takes them at once.
    let held = claims.held();
    match (
        store.release_timers(Some(owner)).await,
        store.release_outbox(Some(&held)).await,
    ) {
        (Ok(t), Ok(o)) => info!(timers = t, outbox = o, "claims given back; stopped"),
        (Err(e), _) | (_, Err(e)) => {
            error!(error = %e, "giving back claims failed; their leases expire")
        }
    }
}

/// Sleeps until `t`, or until the stop.
async fn nap(clock: &dyn Clock, t: DateTime<Utc>, stop: &watch::Receiver<bool>) {
    let mut rx = stop.clone();
    tokio::select! {
        _ = clock.sleep_until(t) => {}
        _ = rx.wait_for(|s| *s) => {}
    }
}

/// One worker's loop: drain its kind, report, sleep `poll`, until the stop.
#[allow(clippy::too_many_arguments)]
async fn channel<S: Store>(
    store: &S,
    worker: &dyn Worker,
    options: &Options,
    live: &Live<'_>,
    report: &RefCell<Report>,
    publish: &dyn Fn(),
    clock: &dyn Clock,
    stop: &watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    while !*stop.borrow() {
        let r = drain_live(store, worker, &options.policy, live).await;
        failures = if count(report, worker, r) {
            0
        } else {
            failures + 1
        };
        publish();
        let pause = options.poll.max(backoff(options.poll, failures));
        nap(clock, clock.now() + pause, stop).await;
    }
}

/// How long a loop waits after `failures` failed rounds in a row (the
/// store unreachable, the disk full): nothing after a good round, then the
/// poll doubled each time up to 32 polls (at least a second), so a lasting
/// fault is logged a few times a minute, not many times a second.
fn backoff(poll: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return Duration::zero();
    }
    let base = poll.max(Duration::seconds(1));
    base * 2i32.pow(failures.min(6) - 1).min(32)
}

/// Adds one drain's outcome to the report, and logs it; false when the
/// drain failed.
fn count(
    report: &RefCell<Report>,
    worker: &dyn Worker,
    r: Result<crate::outbox::Round, crate::store::StoreError>,
) -> bool {
    let kind = worker.kind();
    match r {
        Ok(r) => {
            if r.sent + r.retried + r.dead + r.dropped > 0 {
                info!(
                    sent = r.sent,
                    retried = r.retried,
                    dead = r.dead,
                    dropped = r.dropped,
                    "outbox: {kind}"
                );
            } else {
                debug!("outbox: {kind}: nothing due");
            }
            let mut rep = report.borrow_mut();
            rep.sent += r.sent;
            rep.retried += r.retried;
            rep.dead += r.dead;
            true
        }
        Err(e) => {
            error!(error = %e, "outbox: {kind} failed");
            false
        }
    }
}

/// A year's schedule installed while serving: count on it from now on, and
/// recount what was counted without it.
async fn reload_calendar<S: Store>(
    engine: &Engine<S>,
    dir: &Path,
    seen: &mut Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>)>,
    now: DateTime<Utc>,
) {
    let current = calendar_fingerprint(dir);
    if current == *seen {
        return;
    }
    *seen = current;
    match files::load(dir) {
        Ok(c) => {
            engine.set_calendar(c);
            match engine.recompute_provisional(now).await {
                Ok(ids) => info!(recomputed = ids.len(), "calendar reloaded"),
                Err(e) => error!(error = %e, "recomputing provisional deadlines failed"),
            }
        }
        Err(e) => {
            error!(error = %e, "the calendar folder changed but cannot be loaded; still counting on the previous calendar")
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_fault_backs_off_to_32_polls() {
        let poll = Duration::seconds(1);
        let waits: Vec<i64> = (0..9).map(|f| backoff(poll, f).num_seconds()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 32, 32]);
        // A short poll still waits at least a second after a failure.
        assert_eq!(
            backoff(Duration::milliseconds(100), 1),
            Duration::seconds(1)
        );
    }
}
