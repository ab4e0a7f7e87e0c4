//! `duban serve`: the engine running by itself.
//!
//! One tokio runtime runs the scheduler (timers and recurring starts) and
//! drains the outbox: email, SMS (each only when `duban.toml` configures
//! it; otherwise its rows wait) and documents. On
//! start the store is migrated and `processes/` deployed (new versions
//! only). On SQLite one process owns the database: a second `serve` on the
//! same file refuses to start. A schedule installed into the calendar
//! folder while it runs is picked up on the next round, and the provisional
//! deadlines are counted again. SIGINT or SIGTERM stops it gracefully: the
//! round in progress finishes, then the pool closes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use duban_engine::calendar::files;
use duban_engine::scheduler::{Scheduler, SchedulerOptions};
use duban_engine::service::Engine;
use duban_engine::store::sql::{parse_url, Backend};
use duban_engine::store::{SqlStore, StoreError};
use duban_notifiers::dispatch::{Dispatcher, Round};
use duban_notifiers::documents::DocumentWriter;
use duban_notifiers::email::EmailNotifier;
use duban_notifiers::links::NoPortal;
use duban_notifiers::sms::SmsNotifier;
use tracing::{debug, error, info};

use crate::exit;
use crate::instances::DbArgs;

/// The clock: the system time, or — for rehearsals and tests — `DUBAN_NOW`
/// as the instant the process started, running on from there.
#[derive(Clone, Copy)]
struct Clock {
    offset: Duration,
}

impl Clock {
    fn new() -> Self {
        let offset = std::env::var("DUBAN_NOW")
            .ok()
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map_or(Duration::zero(), |t| t.with_timezone(&Utc) - Utc::now());
        Clock { offset }
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

/// Holds the SQLite owner lock for as long as it lives.
struct OwnerLock(#[allow(dead_code)] std::fs::File);

/// The file of a SQLite store; `None` for PostgreSQL.
fn sqlite_file(db: &str) -> Option<String> {
    let (url, backend) = parse_url(db);
    if backend != Backend::Sqlite {
        return None;
    }
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    Some(path.split('?').next().unwrap_or(path).to_string())
}

fn sqlite_owner_lock(db: &str) -> Result<Option<OwnerLock>, String> {
    let Some(path) = sqlite_file(db) else {
        return Ok(None);
    };
    let lock_path = format!("{path}.serve-lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{lock_path}: {e}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(OwnerLock(file))),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another `duban serve` already runs on {path}: on SQLite one engine process owns the database (use PostgreSQL to run several)"
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("{lock_path}: {e}")),
    }
}

pub fn serve(
    db: DbArgs,
    processes: PathBuf,
    poll_ms: u64,
    batch: u32,
    config: Option<PathBuf>,
) -> u8 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DUBAN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let _lock = match sqlite_owner_lock(&db.db) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("duban: {e}");
            return exit::INVALID;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async move {
        let mut shutdown = Box::pin(shutdown_signal());
        let clock = Clock::new();
        let mut calendar_seen = calendar_fingerprint(&db.calendar_dir);
        let calendar = match files::load(&db.calendar_dir) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("duban: the calendar cannot be loaded: {e}");
                return exit::INVALID;
            }
        };
        let store = match SqlStore::open(&db.db).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("duban: {e}");
                return exit::USAGE;
            }
        };
        let engine = match Engine::new(store, calendar).await {
            Ok(e) => Arc::new(e),
            Err(e) => {
                eprintln!("duban: {e}");
                return exit::INVALID;
            }
        };
        if processes.exists() {
            match engine
                .deploy(std::slice::from_ref(&processes), clock.now())
                .await
            {
                Ok(reports) => {
                    for r in reports {
                        info!(process = %r.id, version = r.version, result = ?r.result, "deploy");
                    }
                }
                Err(e) => {
                    eprintln!("duban: {}: {e}", processes.display());
                    if let duban_engine::service::ServiceError::Invalid(diags) = &e {
                        for d in diags {
                            eprintln!("{d}\n");
                        }
                    }
                    return exit::INVALID;
                }
            }
        }
        // Checked against what is deployed, which the store already holds parsed.
        let deployed = match engine.deployed().await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("duban: {e}");
                return exit::INVALID;
            }
        };
        let refs: Vec<&duban_engine::definition::Definition> =
            deployed.iter().map(|(_, d)| d.as_ref()).collect();
        let loaded = crate::config::load(config.as_deref(), &refs);
        for p in &loaded.problems {
            if p.warning {
                tracing::warn!(key = %p.key, "{}", p.message);
            } else {
                eprintln!("duban: configuration: {p}");
            }
        }
        let Some(cfg) = loaded.config else {
            eprintln!("duban: the configuration has errors (see `duban config check`)");
            return exit::INVALID;
        };
        let email = match &cfg.email {
            Some(e) => match EmailNotifier::new(e) {
                Ok(n) => Some(Dispatcher::new(
                    engine.clone(),
                    n,
                    NoPortal,
                    cfg.policy.clone(),
                )),
                Err(e) => {
                    eprintln!("duban: configuration: email: {e}");
                    return exit::INVALID;
                }
            },
            None => None,
        };
        let sms = match &cfg.sms {
            Some(s) => match SmsNotifier::new(s.provider()) {
                Ok(n) => Some(Dispatcher::new(
                    engine.clone(),
                    n,
                    NoPortal,
                    cfg.policy.clone(),
                )),
                Err(e) => {
                    eprintln!("duban: configuration: sms: {e}");
                    return exit::INVALID;
                }
            },
            None => None,
        };
        let documents = DocumentWriter::new(
            engine.clone(),
            cfg.documents_dir
                .clone()
                .unwrap_or_else(|| default_documents_dir(&db.db)),
            cfg.policy.clone(),
        );
        let options = SchedulerOptions {
            batch,
            ..Default::default()
        };
        info!(owner = %options.owner, db = %db.db, "serving");
        let scheduler = Scheduler::new(engine.clone(), options);
        let poll = Duration::milliseconds(poll_ms as i64);
        loop {
            let now = clock.now();
            // A year's schedule installed while serving: count on it from
            // now on, and recount what was counted without it.
            let seen = calendar_fingerprint(&db.calendar_dir);
            if seen != calendar_seen {
                calendar_seen = seen;
                match files::load(&db.calendar_dir) {
                    Ok(c) => {
                        engine.set_calendar(c);
                        match engine.recompute_provisional(now).await {
                            Ok(ids) => info!(recomputed = ids.len(), "calendar reloaded"),
                            Err(e) => error!(error = %e, "recomputing provisional deadlines failed"),
                        }
                    }
                    Err(e) => error!(error = %e, "the calendar folder changed but cannot be loaded; still counting on the previous calendar"),
                }
            }
            match scheduler.start_recurring(now).await {
                Ok(r) if r.started > 0 => info!(started = r.started, "recurring starts"),
                Ok(_) => {}
                Err(e) => error!(error = %e, "recurring starts failed"),
            }
            match scheduler.replay_child_starts(now).await {
                Ok(r) if r.children > 0 => debug!(rows = r.children, "child starts confirmed"),
                Ok(_) => {}
                Err(e) => error!(error = %e, "finishing child starts failed"),
            }
            match scheduler.fire_due(now, false).await {
                Ok(r) if r.fired + r.stale > 0 => info!(fired = r.fired, stale = r.stale, "timers"),
                Ok(_) => {}
                Err(e) => error!(error = %e, "firing timers failed"),
            }
            if let Some(d) = &email {
                report("email", d.dispatch_due(clock.now()).await);
            }
            if let Some(d) = &sms {
                report("sms", d.dispatch_due(clock.now()).await);
            }
            report("documents", documents.render_due(clock.now()).await);
            let wake = scheduler
                .next_wake(clock.now(), poll)
                .await
                .unwrap_or(clock.now() + poll);
            let sleep = (wake - clock.now())
                .to_std()
                .unwrap_or(StdDuration::ZERO)
                .max(StdDuration::from_millis(10));
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = &mut shutdown => {
                    info!("shutting down");
                    break;
                }
            }
        }
        engine.store().close().await;
        exit::OK
    })
}

/// What the calendar folder holds (names, sizes, modification times), to
/// notice a schedule installed while `serve` runs.
fn calendar_fingerprint(
    dir: &std::path::Path,
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

/// Documents go beside a SQLite file (`documents/` next to `duban.db`),
/// else into `./documents`.
fn default_documents_dir(db: &str) -> PathBuf {
    sqlite_file(db)
        .and_then(|f| {
            std::path::Path::new(&f)
                .parent()
                .map(|d| d.join("documents"))
        })
        .unwrap_or_else(|| PathBuf::from("documents"))
}

fn report(what: &str, r: Result<Round, StoreError>) {
    match r {
        Ok(r) if r.sent + r.retried + r.dead > 0 => {
            info!(
                sent = r.sent,
                retried = r.retried,
                dead = r.dead,
                "outbox: {what}"
            )
        }
        Ok(_) => {}
        Err(e) => error!(error = %e, "outbox: {what} failed"),
    }
}

/// Registers the SIGINT and SIGTERM handlers at once, so a signal that
/// arrives during start-up (migrations, deploy) is kept, not fatal; the
/// returned future completes when one arrives.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `duban simulate`: exit 0 when every expectation holds, 1 listing the
/// failures, 2 for a scenario that cannot be run as written.
pub fn simulate(
    scenario: PathBuf,
    definition: Option<PathBuf>,
    profile: Option<String>,
    json: bool,
    calendar_dir: &std::path::Path,
) -> u8 {
    use duban_engine::simulate::Scenario;
    let sc = match Scenario::read(&scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("duban: {e}");
            return exit::USAGE;
        }
    };
    let calendar = match files::load(calendar_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("duban: the calendar cannot be loaded: {e}");
            return exit::INVALID;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let report = match rt.block_on(sc.run(definition.as_deref(), profile.as_deref(), calendar)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("duban: {e}");
            return exit::USAGE;
        }
    };
    let file = scenario.display();
    if json {
        let v = serde_json::json!({
            "scenario": file.to_string(),
            "passed": report.passed(),
            "checks": report.checks,
            "timeline": report.timeline,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
    } else {
        if let Some(n) = &report.name {
            println!("{n}");
        }
        if let Some(state) = &report.state {
            crate::timeline::print(state, &report.timeline);
        }
        let failed: Vec<_> = report.checks.iter().filter(|c| c.found.is_some()).collect();
        println!(
            "\n{} passed, {} failed",
            report.checks.len() - failed.len(),
            failed.len()
        );
        for c in failed {
            println!(
                "{file}:{}: expected {}, found {}",
                c.line,
                c.expected,
                c.found.as_deref().unwrap_or("")
            );
        }
    }
    if report.passed() {
        exit::OK
    } else {
        exit::INVALID
    }
}
