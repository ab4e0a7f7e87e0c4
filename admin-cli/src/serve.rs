//! `duban serve`: the engine running by itself.
//!
//! The binary's part is the edge: the SQLite owner lock, the configuration,
//! the clock (`DUBAN_NOW`), the signals. The loop itself is
//! `duban_engine::serve::run` (timers, recurring starts, calls, and the
//! outbox: email and SMS only when `duban.toml` configures them, otherwise
//! their rows wait; documents always), tested in-process on a virtual
//! clock. On start the store is migrated and `processes/` deployed (new
//! versions only). On SQLite one process owns the database: a second
//! `serve` on the same file refuses to start. A schedule installed into the
//! calendar folder while it runs is picked up on the next round, and the
//! provisional deadlines are counted again. SIGINT or SIGTERM stops it
//! gracefully: the round in progress finishes, then the pool closes.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use duban_engine::calendar::files;
use duban_engine::outbox::Worker;
use duban_engine::scheduler::SchedulerOptions;
use duban_engine::serve::{Clock, Options, SystemClock};
use duban_engine::service::Engine;
use duban_engine::store::sql::{parse_url, redact, Backend};
use duban_engine::store::SqlStore;
use duban_notifiers::dispatch::Dispatcher;
use duban_notifiers::documents::DocumentWriter;
use duban_notifiers::email::EmailNotifier;
use duban_notifiers::sms::SmsNotifier;
use tracing::info;

use crate::exit;
use crate::instances::DbArgs;

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

/// The file itself, whatever path names it: symlinks resolved (in the
/// folder too, for a file not created yet), so every name of one database
/// takes the same lock.
fn real_path(path: &str) -> String {
    let p = std::path::Path::new(path);
    if let Ok(real) = std::fs::canonicalize(p) {
        return real.display().to_string();
    }
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    match (std::fs::canonicalize(parent), p.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name).display().to_string(),
        _ => path.to_string(),
    }
}

fn sqlite_owner_lock(db: &str) -> Result<Option<OwnerLock>, String> {
    let Some(path) = sqlite_file(db) else {
        return Ok(None);
    };
    let path = real_path(&path);
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

/// The process library `serve` deploys on start.
pub struct Library {
    /// Its folder (or file).
    pub path: PathBuf,
    /// Named by `--processes` (then it must exist), rather than the home's.
    pub explicit: bool,
}

pub fn serve(
    db: DbArgs,
    library: Library,
    poll_ms: u64,
    batch: u32,
    grace_secs: u64,
    config: crate::config::Source,
    demo: bool,
) -> u8 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DUBAN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Its own complaint about a failed write is an `eprintln!`, which
        // panics when stderr is a closed pipe (`serve 2>&1 | head`): a line
        // that cannot be written is dropped instead.
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let lock = match sqlite_owner_lock(&db.db) {
        Ok(l) => l,
        Err(e) => {
            errln!("duban: {e}");
            return exit::INVALID;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async move {
        let shutdown = shutdown_signal();
        // `DUBAN_NOW` (for rehearsals and tests) is the instant the process
        // started, running on from there.
        let clock = std::env::var("DUBAN_NOW")
            .ok()
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map_or_else(SystemClock::new, |t| {
                SystemClock::starting_at(t.with_timezone(&Utc))
            });
        let calendar = match files::load(&db.calendar_dir) {
            Ok(c) => c,
            Err(e) => {
                errln!("duban: the calendar cannot be loaded: {e}");
                return exit::INVALID;
            }
        };
        let store = match SqlStore::open(&db.db).await {
            Ok(s) => s,
            Err(e) => {
                errln!("duban: {}", redact_in(&e.to_string(), &db.db));
                return exit::USAGE;
            }
        };
        let engine = match Engine::new(store, calendar).await {
            Ok(e) => Arc::new(e),
            Err(e) => {
                errln!("duban: {e}");
                return exit::INVALID;
            }
        };
        let processes = &library.path;
        if library.explicit && !processes.exists() {
            errln!(
                "duban: no process library at {}: nothing to serve (give the folder of the definitions, or --home)",
                processes.display()
            );
            return exit::USAGE;
        }
        if processes.exists() {
            match engine
                .deploy(std::slice::from_ref(processes), clock.now())
                .await
            {
                Ok(reports) => {
                    for r in reports {
                        info!(process = %r.id, version = r.version, result = ?r.result, "deploy");
                    }
                }
                Err(e) => {
                    errln!("duban: {}: {e}", processes.display());
                    if let duban_engine::service::ServiceError::Invalid(diags) = &e {
                        for d in diags {
                            errln!("{d}\n");
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
                errln!("duban: {e}");
                return exit::INVALID;
            }
        };
        if deployed.is_empty() {
            errln!(
                "duban: no process definitions: none in {} and none deployed in the store; serve has nothing to run (give --processes DIR or --home DIR, or `duban deploy` first)",
                if processes.as_os_str().is_empty() { std::path::Path::new(".") } else { processes.as_path() }.display()
            );
            return exit::USAGE;
        }
        if !processes.exists() {
            tracing::warn!(
                folder = %processes.display(),
                definitions = deployed.len(),
                "no process library folder here: serving the definitions already deployed"
            );
        }
        let refs: Vec<&duban_engine::definition::Definition> =
            deployed.iter().map(|(_, d)| d.as_ref()).collect();
        let loaded = crate::config::load(&config, &refs);
        for p in &loaded.problems {
            if p.warning {
                tracing::warn!(key = %p.key, "{}", p.message);
            } else {
                errln!("duban: configuration: {p}");
            }
        }
        let Some(cfg) = loaded.config else {
            errln!("duban: the configuration has errors (see `duban config check`)");
            return exit::INVALID;
        };
        // Links are signed on the engine's clock (a rehearsal's runs from
        // `DUBAN_NOW`), so they expire on the calendar they are checked on.
        let mut cfg = cfg;
        // The demo: an example district, and its answer pages on localhost.
        let mut seeded = Vec::new();
        if demo {
            if cfg.portal.is_none() {
                let dir = sqlite_file(&db.db)
                    .and_then(|f| std::path::Path::new(&f).parent().map(PathBuf::from))
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or_else(|| PathBuf::from("."));
                match crate::demo::portal(&dir) {
                    Ok(p) => cfg.portal = Some(p),
                    Err(e) => {
                        errln!("duban: demo: {e}");
                        return exit::INVALID;
                    }
                }
            }
            match crate::demo::seed(&engine, clock.now()).await {
                Ok(did) => seeded = did,
                Err(e) => {
                    errln!("duban: demo: {e}");
                    return exit::INVALID;
                }
            }
        }
        if let Some(p) = &mut cfg.portal {
            let offset = duban_engine::serve::Clock::now(&clock) - Utc::now();
            p.links = p.links.clone().shifted(offset);
        }
        let email = match &cfg.email {
            Some(e) => match EmailNotifier::new(e) {
                Ok(n) => Some(Dispatcher::new(
                    engine.clone(),
                    n,
                    cfg.answer_links(),
                    cfg.policy.clone(),
                )),
                Err(e) => {
                    errln!("duban: configuration: email: {e}");
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
                    cfg.answer_links(),
                    cfg.policy.clone(),
                )),
                Err(e) => {
                    errln!("duban: configuration: sms: {e}");
                    return exit::INVALID;
                }
            },
            None => None,
        };
        let documents_dir = cfg
            .documents_dir
            .clone()
            .unwrap_or_else(|| default_documents_dir(&db.db));
        let documents = DocumentWriter::new(engine.clone(), documents_dir.clone(), cfg.policy.clone());
        let mut workers: Vec<&dyn Worker> = vec![&documents];
        if let Some(d) = &email {
            workers.push(d);
        }
        if let Some(d) = &sms {
            workers.push(d);
        }
        let options = Options {
            scheduler: SchedulerOptions {
                batch,
                ..Default::default()
            },
            poll: Duration::milliseconds(poll_ms as i64),
            policy: cfg.policy.clone(),
            calendar_dir: Some(db.calendar_dir.clone()),
            grace: std::time::Duration::from_secs(grace_secs),
            // Under the SQLite file's lock no other engine runs: what a
            // crashed predecessor claimed is ours to take at once.
            sole_owner: lock.is_some(),
        };
        // The answer portal stops with the engine: the signal is passed on.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let portal = match &cfg.portal {
            Some(p) => {
                let listener = match tokio::net::TcpListener::bind(p.listen).await {
                    Ok(l) => l,
                    Err(e) => {
                        errln!("duban: portal: cannot listen on {}: {e}", p.listen);
                        return exit::INVALID;
                    }
                };
                let now = clock;
                // The staff's sign-in links go out by the configured SMTP server.
                let mailer = cfg
                    .email
                    .as_ref()
                    .and_then(|e| EmailNotifier::new(e).ok())
                    .map(Arc::new);
                let app = duban_portal::app_with(
                    engine.clone(),
                    p.links.clone(),
                    Arc::new(move || duban_engine::serve::Clock::now(&now)),
                    duban_portal::Options {
                        mailer,
                        // Agencies' attachments are kept beside the documents.
                        files: Some(documents_dir.clone()),
                        ..Default::default()
                    },
                );
                let mut rx = stop_rx.clone();
                info!(listen = %p.listen, base_url = %p.links.base_url(), "portal: answer links are signed and served");
                Some(tokio::spawn(async move {
                    let stop = async move {
                        let _ = rx.wait_for(|s| *s).await;
                    };
                    if let Err(e) = axum::serve(
                        listener,
                        // The client's address, for the portal's rate limit.
                        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                    )
                    .with_graceful_shutdown(stop)
                    .await {
                        tracing::error!(error = %e, "portal: the server stopped");
                    }
                }))
            }
            None => {
                info!("portal: off (no [portal] in the configuration); notices carry no answer link");
                None
            }
        };
        let metrics = match cfg.metrics {
            Some(addr) => {
                let listener = match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => l,
                    Err(e) => {
                        errln!("duban: metrics: cannot listen on {addr}: {e}");
                        return exit::INVALID;
                    }
                };
                info!(listen = %addr, "metrics: /healthz and /metrics served");
                let app = crate::metrics::router(engine.clone(), clock);
                let mut rx = stop_rx.clone();
                Some(tokio::spawn(async move {
                    let stop = async move {
                        let _ = rx.wait_for(|s| *s).await;
                    };
                    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
                        tracing::error!(error = %e, "metrics: the server stopped");
                    }
                }))
            }
            None => None,
        };
        let shutdown = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        info!(
            owner = %options.scheduler.owner,
            db = %redact(&db.db),
            definitions = deployed.len(),
            "serving"
        );
        if demo {
            if let Some(p) = &cfg.portal {
                crate::demo::banner(
                    &engine,
                    &p.links,
                    &seeded,
                    db.home.as_deref(),
                    &documents_dir,
                )
                .await;
            }
        }
        duban_engine::serve::run(engine.clone(), &workers, &options, &clock, shutdown, None).await;
        for server in [portal, metrics].into_iter().flatten() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
        }
        engine.store().close().await;
        exit::OK
    })
}

/// `text` with the store URL's password taken out, wherever it appears
/// (an error of the driver may quote the URL or the password itself).
pub fn redact_in(text: &str, url: &str) -> String {
    let shown = redact(url);
    if shown == url {
        return text.to_string();
    }
    let mut out = text.replace(url, &shown);
    if let Some(password) = password_of(url) {
        if !password.is_empty() {
            out = out.replace(password, "***");
        }
    }
    out
}

fn password_of(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    Some(&userinfo[userinfo.find(':')? + 1..])
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
    case_file: Option<PathBuf>,
    calendar_dir: &std::path::Path,
) -> u8 {
    use duban_engine::simulate::Scenario;
    let sc = match Scenario::read(&scenario) {
        Ok(s) => s,
        Err(e) => {
            errln!("duban: {e}");
            return exit::USAGE;
        }
    };
    let calendar = match files::load(calendar_dir) {
        Ok(c) => c,
        Err(e) => {
            errln!("duban: the calendar cannot be loaded: {e}");
            return exit::INVALID;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let documents = duban_notifiers::documents::SimulatedDocuments;
    let (report, engine, now) = match rt.block_on(sc.run_keeping(
        definition.as_deref(),
        profile.as_deref(),
        calendar,
        &documents,
    )) {
        Ok(r) => r,
        Err(e) => {
            errln!("duban: {e}");
            return exit::USAGE;
        }
    };
    // The case file of the instance the scenario ran last, as of its
    // last instant.
    if let (Some(out), Some(state), Some(now)) = (&case_file, &report.state, now) {
        let made = rt.block_on(async {
            let case = duban_notifiers::case_file::build(&engine, &state.id, now)
                .await
                .map_err(|e| e.to_string())?;
            duban_notifiers::case_file::pdf(case).await
        });
        match made.and_then(|pdf| crate::output::write_whole(out, &pdf).map_err(|e| e.to_string()))
        {
            Ok(()) => errln!("wrote the case file of {} to {}", state.id, out.display()),
            Err(e) => {
                errln!("duban: the case file: {e}");
                return exit::INVALID;
            }
        }
    }
    let file = scenario.display();
    if json {
        let v = serde_json::json!({
            "scenario": file.to_string(),
            "passed": report.passed(),
            "checks": report.checks,
            "timeline": report.timeline,
            "documents": report.documents,
        });
        outln!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
    } else {
        if let Some(n) = &report.name {
            outln!("{n}");
        }
        if let Some(state) = &report.state {
            crate::timeline::print(state, &report.timeline, None);
        }
        let failed: Vec<_> = report.checks.iter().filter(|c| c.found.is_some()).collect();
        outln!(
            "\n{} passed, {} failed",
            report.checks.len() - failed.len(),
            failed.len()
        );
        for c in failed {
            outln!(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12, found 8: a symlink to the database took a second lock, so
    /// two `serve`s ran on one SQLite file. The lock is the file's own.
    #[test]
    fn a_symlink_to_the_database_meets_the_same_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("duban.db");
        std::fs::write(&db, b"").unwrap();
        let link = tmp.path().join("other-name.db");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        let held = sqlite_owner_lock(db.to_str().unwrap()).unwrap();
        assert!(held.is_some());
        let err = sqlite_owner_lock(link.to_str().unwrap())
            .err()
            .expect("the second lock is refused");
        assert!(err.contains("another `duban serve` already runs"), "{err}");
        // A file not created yet, named through a symlinked folder.
        let dir_link = tmp.path().join("linked");
        std::os::unix::fs::symlink(tmp.path(), &dir_link).unwrap();
        assert_eq!(
            real_path(dir_link.join("new.db").to_str().unwrap()),
            real_path(tmp.path().join("new.db").to_str().unwrap())
        );
    }
}
