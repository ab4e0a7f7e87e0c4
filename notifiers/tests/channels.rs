//! `serve`'s loops are independent (issues 12 and 22): a silent SMTP server
//! delays only email — the timers keep their instants, a shutdown ends
//! within its grace period and gives every claim back — and timers stay on
//! time behind a backlog of email to a slow (but real) SMTP server, each
//! email delivered once. Lateness is read from the store's own instants.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use common::{at, engine, free_port, root};
use duban_engine::outbox::Worker;
use duban_engine::runtime::HistoryKind;
use duban_engine::serve::{run, Clock, Options, Report, SystemClock};
use duban_engine::service::Engine;
use duban_engine::store::{OutboxKind, SqlStore, Store};
use duban_notifiers::dispatch::{Dispatcher, Policy};
use duban_notifiers::email::{EmailNotifier, SmtpConfig, Tls};
use duban_notifiers::links::NoPortal;
use tokio::sync::watch;

/// aiosmtpd on `port` that answers each message after `delay` seconds and
/// appends its Message-ID to `out`, one per line.
struct SlowSmtp(Child);

impl SlowSmtp {
    fn start(port: u16, out: &Path, delay: f64) -> SlowSmtp {
        let child = Command::new("/usr/bin/python3")
            .arg(root().join("tests/data/smtp_sink.py"))
            .args([&port.to_string(), out.to_str().unwrap()])
            .arg(delay.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3-aiosmtpd is installed (.ci/run installs it)");
        common::wait_for_port(port);
        SlowSmtp(child)
    }
}

impl Drop for SlowSmtp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server that accepts every connection and never says a word.
fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

fn notifier(port: u16, timeout: StdDuration, connections: u32) -> EmailNotifier {
    EmailNotifier::new(&SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: Tls::None,
        username: None,
        password: None,
        from: "督办系统 <duban@sfj.example.org>".into(),
        domain: "sfj.example.org".into(),
        timeout,
        connections,
    })
    .unwrap()
}

// A working day before the library's recurring starts that email agencies
// (its annual reports start on 5 January at 09:00, caught up if missed).
const T0: &str = "2025-12-02T09:00:00+08:00";

/// The engine with the library and the mailer fixtures: `mails` starts
/// that each send one email, and `timers` instances whose one-hour timers
/// fall due `spacing` apart from T0 + 1 hour on. Returns the timed ids.
async fn setup(
    dir: &Path,
    mails: usize,
    timers: usize,
    spacing: Duration,
) -> (Arc<Engine<SqlStore>>, Vec<String>) {
    let engine = engine(dir).await;
    engine
        .deploy(&[root().join("tests/data/mailer")], at(T0))
        .await
        .unwrap();
    for _ in 0..mails {
        engine
            .start("mail_only", None, common::vars(&[]), "li", at(T0))
            .await
            .unwrap();
    }
    let mut timed = Vec::new();
    for i in 0..timers {
        let t = engine
            .start(
                "timed",
                None,
                common::vars(&[]),
                "li",
                at(T0) + spacing * i as i32,
            )
            .await
            .unwrap();
        timed.push(t.state.id);
    }
    (engine, timed)
}

/// How late each timer was applied after falling due, by the store's own
/// instants (its instance started exactly one hour before it fell due).
async fn lateness(engine: &Engine<SqlStore>, ids: &[String]) -> Vec<Duration> {
    let mut out = Vec::new();
    for id in ids {
        let h = engine.history(id).await.unwrap();
        let started = h[0].at;
        let line = h
            .iter()
            .find(|l| l.what == HistoryKind::Timer)
            .unwrap_or_else(|| panic!("the timer of {id} was applied"));
        // The line says when the timer was due, and when it was applied.
        assert_eq!(line.due, Some(started + Duration::hours(1)), "{id}");
        out.push(line.at - (started + Duration::hours(1)));
    }
    out
}

fn options(owner: &str, grace: StdDuration) -> Options {
    Options {
        scheduler: duban_engine::scheduler::SchedulerOptions {
            owner: owner.into(),
            ..Default::default()
        },
        poll: Duration::milliseconds(100),
        grace,
        ..Default::default()
    }
}

/// Runs `serve` until `done` holds for its report, then signals shutdown;
/// returns the last report and how long the shutdown took.
async fn serve_until(
    engine: &Arc<Engine<SqlStore>>,
    worker: &dyn Worker,
    options: &Options,
    clock: &dyn Clock,
    done: impl Fn(&Report) -> bool,
    limit: StdDuration,
) -> (Report, StdDuration) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (tx, mut rx) = watch::channel(Report::default());
    let stopped_at = std::cell::Cell::new(None::<Instant>);
    let workers = [worker];
    let server = run(
        engine.clone(),
        &workers,
        options,
        clock,
        async {
            let _ = stop_rx.await;
        },
        Some(&tx),
    );
    let driver = async {
        let waited = tokio::time::timeout(limit, rx.wait_for(|r| done(r)))
            .await
            .map(|r| r.unwrap().clone());
        let r = waited.unwrap_or_else(|_| panic!("not done within {limit:?}: {:?}", *rx.borrow()));
        stopped_at.set(Some(Instant::now()));
        stop_tx.send(()).unwrap();
        r
    };
    let ((), report) = tokio::join!(server, driver);
    (report, stopped_at.get().unwrap().elapsed())
}

/// Issue 12 (found 1) and issue 22: a server that accepts and never answers
/// froze everything for 18 minutes. Now only email waits: every timer is
/// applied within 2 s of falling due, the shutdown ends within the grace
/// period plus 2 s, and the email rows in flight are given back, so another
/// process can claim every pending row at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_smtp_server_delays_only_email() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, timed) = setup(tmp.path(), 20, 20, Duration::milliseconds(200)).await;
    let pending = |e: &Arc<Engine<SqlStore>>| {
        let e = e.clone();
        async move {
            e.outbox(None)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.kind == OutboxKind::Email)
                .count()
        }
    };
    let emails = pending(&engine).await;
    assert_eq!(emails, 20);
    let port = silent_server();
    let d = Dispatcher::new(
        engine.clone(),
        notifier(port, StdDuration::from_secs(30), 2),
        NoPortal,
        Policy::default(),
    );
    // The timers fall due 1 s to 5 s after serve starts.
    let clock = SystemClock::starting_at(at(T0) + Duration::hours(1) - Duration::seconds(1));
    let grace = StdDuration::from_secs(1);
    let (report, shutdown) = serve_until(
        &engine,
        &d,
        &options("silent", grace),
        &clock,
        |r| r.fired >= 20,
        StdDuration::from_secs(60),
    )
    .await;
    assert_eq!((report.fired, report.sent), (20, 0), "{report:?}");
    let late = lateness(&engine, &timed).await;
    let worst = late.iter().max().unwrap();
    eprintln!(
        "timers behind a silent SMTP server: worst {} ms late",
        worst.num_milliseconds()
    );
    assert!(
        late.iter()
            .all(|l| *l >= Duration::zero() && *l < Duration::seconds(2)),
        "{late:?}"
    );
    eprintln!("shutdown with two deliveries hanging: {shutdown:?}");
    assert!(shutdown < grace + StdDuration::from_secs(2), "{shutdown:?}");
    // Every pending row is claimable at once: those in flight were given back.
    let now: DateTime<Utc> = clock.now();
    let claimed = engine
        .store()
        .claim_outbox(OutboxKind::Email, now, 100, now + Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(claimed.len(), emails);
}

/// Issue 22: due timers waited up to 216 s behind a round of email. With
/// 2,000 emails (`DUBAN_BACKLOG_EMAILS`; 5,000 by hand) to a server that
/// takes 50 ms over each and a tenth as many timers falling due meanwhile,
/// every timer is applied within 2 s of falling due, every email arrives
/// exactly once, and each instance's history instants never go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_stay_on_time_behind_an_email_backlog() {
    let mails: usize = std::env::var("DUBAN_BACKLOG_EMAILS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let timers = mails / 10;
    let tmp = tempfile::tempdir().unwrap();
    let setup_started = Instant::now();
    let (engine, timed) = setup(tmp.path(), mails, timers, Duration::milliseconds(40)).await;
    eprintln!(
        "{mails} emails and {timers} timers set up in {:?}",
        setup_started.elapsed()
    );
    let port = free_port();
    let ids = tmp.path().join("ids");
    let _smtp = SlowSmtp::start(port, &ids, 0.05);
    let d = Dispatcher::new(
        engine.clone(),
        notifier(port, SmtpConfig::TIMEOUT, 8),
        NoPortal,
        Policy::default(),
    );
    let clock = SystemClock::starting_at(at(T0) + Duration::hours(1));
    let sending = Instant::now();
    let (report, _) = serve_until(
        &engine,
        &d,
        &options("backlog", StdDuration::from_secs(10)),
        &clock,
        |r| r.sent >= mails && r.fired >= timers,
        StdDuration::from_secs(600),
    )
    .await;
    let took = sending.elapsed();
    eprintln!(
        "{} emails in {took:?} ({:.0}/s) with 8 connections to a server taking 50 ms each",
        report.sent,
        report.sent as f64 / took.as_secs_f64()
    );
    let late = lateness(&engine, &timed).await;
    let worst = *late.iter().max().unwrap();
    eprintln!(
        "timers behind the backlog: worst {} ms late",
        worst.num_milliseconds()
    );
    assert!(
        late.iter()
            .all(|l| *l >= Duration::zero() && *l < Duration::seconds(2)),
        "worst {worst:?}"
    );
    for id in timed.iter().take(50) {
        let h = engine.history(id).await.unwrap();
        assert!(h.windows(2).all(|w| w[0].at <= w[1].at), "{id}: {h:?}");
    }
    let lines = std::fs::read_to_string(&ids).unwrap();
    let all: Vec<&str> = lines.lines().collect();
    let distinct: BTreeSet<&str> = all.iter().copied().collect();
    assert_eq!((all.len(), distinct.len()), (mails, mails));
}

/// A fresh PostgreSQL database for this test, and its URL.
async fn postgres_url(name: &str) -> String {
    use sqlx::Connection;
    let base = std::env::var("DUBAN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let db = format!("duban_ch_{name}_{}", std::process::id());
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {base}: {e} (start it: .ci/run does)"));
    for sql in [
        format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        format!("CREATE DATABASE {db}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    format!("{}/{db}", base.rsplit_once('/').unwrap().0)
}

/// Issue 12, found 2: with two `serve`s and a slow SMTP server, 32 of 400
/// emails arrived twice — a round reused its starting instant for every
/// lease, so its own claims expired under it and the other process took
/// them. Here the leases are short (2 s) against a round of 50 rows at
/// 50 ms each over 2 connections (1.25 s): every row begun is finished
/// within its lease, the rest given back, and each email arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serves_with_short_leases_deliver_each_email_once() {
    const MAILS: usize = 300;
    let url = postgres_url("twice").await;
    let first = {
        let engine = Engine::new(
            SqlStore::open(&url).await.unwrap(),
            duban_engine::calendar::Calendar::builtin(),
        )
        .await
        .unwrap();
        let text = std::fs::read_to_string(root().join("tests/data/directory.yaml")).unwrap();
        engine
            .import_directory(duban_engine::store::directory::parse(&text, false).unwrap())
            .await
            .unwrap();
        engine
            .deploy(&[root().join("tests/data/mailer")], at(T0))
            .await
            .unwrap();
        for _ in 0..MAILS {
            engine
                .start("mail_only", None, common::vars(&[]), "li", at(T0))
                .await
                .unwrap();
        }
        Arc::new(engine)
    };
    let second = Arc::new(
        Engine::new(
            SqlStore::open(&url).await.unwrap(),
            duban_engine::calendar::Calendar::builtin(),
        )
        .await
        .unwrap(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let ids = tmp.path().join("ids");
    let _smtp = SlowSmtp::start(port, &ids, 0.05);
    let policy = Policy {
        lease: Duration::seconds(2),
        ..Policy::default()
    };
    let d1 = Dispatcher::new(
        first.clone(),
        notifier(port, SmtpConfig::TIMEOUT, 2),
        NoPortal,
        policy.clone(),
    );
    let d2 = Dispatcher::new(
        second.clone(),
        notifier(port, SmtpConfig::TIMEOUT, 2),
        NoPortal,
        policy.clone(),
    );
    let clock = SystemClock::starting_at(at(T0) + Duration::minutes(1));
    let opts = |owner: &str| Options {
        policy: policy.clone(),
        ..options(owner, StdDuration::from_secs(5))
    };
    let (o1, o2) = (opts("one"), opts("two"));
    let (stop, _) = watch::channel(false);
    let (r1, r2) = (
        watch::channel(Report::default()),
        watch::channel(Report::default()),
    );
    let w1: [&dyn Worker; 1] = [&d1];
    let w2: [&dyn Worker; 1] = [&d2];
    let mut s1 = stop.subscribe();
    let mut s2 = stop.subscribe();
    let one = run(
        first.clone(),
        &w1,
        &o1,
        &clock,
        async move {
            let _ = s1.wait_for(|s| *s).await;
        },
        Some(&r1.0),
    );
    let two = run(
        second.clone(),
        &w2,
        &o2,
        &clock,
        async move {
            let _ = s2.wait_for(|s| *s).await;
        },
        Some(&r2.0),
    );
    let (mut a, mut b) = (r1.0.subscribe(), r2.0.subscribe());
    let driver = async {
        let limit = Instant::now();
        loop {
            let sent = a.borrow().sent + b.borrow().sent;
            if sent >= MAILS || limit.elapsed() > StdDuration::from_secs(300) {
                stop.send_replace(true);
                return (a.borrow().sent, b.borrow().sent);
            }
            tokio::select! {
                _ = a.changed() => {}
                _ = b.changed() => {}
                _ = tokio::time::sleep(StdDuration::from_millis(200)) => {}
            }
        }
    };
    let ((), (), (sa, sb)) = tokio::join!(one, two, driver);
    eprintln!("two serves sent {sa} + {sb}");
    let lines = std::fs::read_to_string(&ids).unwrap();
    let all: Vec<&str> = lines.lines().collect();
    let distinct: BTreeSet<&str> = all.iter().copied().collect();
    assert_eq!(
        (all.len(), distinct.len()),
        (MAILS, MAILS),
        "each email once"
    );
    assert_eq!(sa + sb, MAILS);
}
