//! `duban serve`: the loop (`duban_engine::serve::run`) in-process on a
//! virtual clock with a shutdown channel — timers that fall due while no
//! engine runs fire once on the next start, three engines on one PostgreSQL
//! database apply each of 10,000 due timers exactly once, a schedule
//! installed while serving is counted on at once — and the binary's own
//! signal handling. No test sleeps to wait for the server: each waits for
//! the round report it needs.

mod common;

use common::{postgres_db, provisional_letter, root};
use duban_engine::runtime::HistoryKind;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use duban_engine::calendar::{files, Calendar};
use duban_engine::scheduler::SchedulerOptions;
use duban_engine::serve::{run, Options, Report, VirtualClock};
use duban_engine::service::Engine;
use duban_engine::store::{SqlStore, Store};
use tokio::sync::watch;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// `duban serve` on `db` with the library `processes`, its clock started at
/// `now`, polling every 200 ms, logging to a pipe; add arguments, then spawn.
fn serve_command(db: &str, now: &str, processes: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_duban"));
    c.args(["serve", "--processes", processes, "--poll-ms", "200"])
        .current_dir(root())
        .env("DUBAN_DB", db)
        .env("DUBAN_NOW", now)
        .env(
            "DUBAN_CALENDAR_DIR",
            root().join("target/no-installed-calendars"),
        )
        .env("DUBAN_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn serve(db: &str, now: &str) -> Child {
    serve_command(db, now, "tests/data/timers")
        .args(["--batch", "100"])
        .spawn()
        .expect("duban serve starts")
}

/// SIGTERM, then wait: `serve` must shut down by itself, with exit code 0.
fn stop(child: Child) -> String {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "serve did not stop cleanly: {err}"
    );
    err
}

async fn engine(db: &str) -> Arc<Engine<SqlStore>> {
    let store = SqlStore::open(db).await.unwrap();
    let engine = Engine::new(store, Calendar::builtin()).await.unwrap();
    engine
        .deploy(
            &[root().join("tests/data/timers")],
            at("2026-01-05T08:00:00+08:00"),
        )
        .await
        .unwrap();
    Arc::new(engine)
}

/// Starts `n` instances at 09:00, each with one timer due at 10:00.
async fn start_many(engine: &Arc<Engine<SqlStore>>, n: usize) {
    let mut handles = Vec::new();
    for w in 0..8 {
        let engine = engine.clone();
        handles.push(tokio::spawn(async move {
            for _ in (w..n).step_by(8) {
                engine
                    .start(
                        "wait_an_hour",
                        None,
                        BTreeMap::new(),
                        "test",
                        at("2026-01-05T09:00:00+08:00"),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

/// Every instance completed, with exactly one `timer` entry in its history.
async fn each_timer_applied_once(engine: &Engine<SqlStore>, n: usize) {
    let store = &engine.store();
    assert_eq!(store.next_due().await.unwrap(), None, "no timer left");
    let done = store
        .instances(Some("completed"), Some("wait_an_hour"))
        .await
        .unwrap();
    assert_eq!(done.len(), n, "every instance completed");
    for i in &done {
        let fired = store
            .history(&i.id)
            .await
            .unwrap()
            .iter()
            .filter(|h| h.what == HistoryKind::Timer)
            .count();
        assert_eq!(fired, 1, "instance {} fired {fired} times", i.id);
    }
}

async fn engine_again(db: &str) -> Engine<SqlStore> {
    Engine::new(SqlStore::open(db).await.unwrap(), Calendar::builtin())
        .await
        .unwrap()
}

/// Runs `serve` on `engine` at `now` until `done` holds for its round
/// report, then stops it through its shutdown channel; returns the report.
async fn serve_until(
    engine: &Arc<Engine<SqlStore>>,
    clock: &VirtualClock,
    options: &Options,
    done: impl Fn(&Report) -> bool,
) -> Report {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (tx, mut rx) = watch::channel(Report::default());
    let server = run(
        engine.clone(),
        &[],
        options,
        clock,
        async {
            let _ = stop_rx.await;
        },
        Some(&tx),
    );
    let driver = async {
        let r = rx.wait_for(|r| done(r)).await.unwrap().clone();
        stop_tx.send(()).unwrap();
        r
    };
    let ((), report) = tokio::join!(server, driver);
    report
}

fn options(owner: &str) -> Options {
    Options {
        scheduler: SchedulerOptions {
            owner: owner.into(),
            batch: 100,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_due_while_stopped_fire_once_on_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db");
    let db = db.to_str().unwrap().to_string();
    let engine = engine(&db).await;
    start_many(&engine, 20).await;
    // 09:30: nothing is due yet; the engine stops with 20 timers pending.
    let clock = VirtualClock::new(at("2026-01-05T09:30:00+08:00"));
    let r = serve_until(&engine, &clock, &options("first"), |r| r.rounds >= 1).await;
    assert_eq!(r.fired, 0);
    assert_eq!(
        engine.instances(Some("running"), None).await.unwrap().len(),
        20
    );
    // 12:00: the timers fell due while nothing ran; the next start fires them.
    let clock = VirtualClock::new(at("2026-01-05T12:00:00+08:00"));
    let r = serve_until(&engine, &clock, &options("second"), |r| r.rounds >= 1).await;
    assert_eq!((r.fired, r.stale, r.stuck), (20, 0, 0), "{r:?}");
    // Applied at 12:00, and the record says when each was due (issue 22).
    let h = engine.history("1").await.unwrap();
    let fired = h.iter().find(|l| l.due.is_some()).expect("a timer's line");
    assert_eq!(fired.at, at("2026-01-05T12:00:00+08:00"));
    assert!(fired.due.unwrap() < fired.at, "{fired:?}");
    // A third start finds nothing more to do.
    let clock = VirtualClock::new(at("2026-01-05T13:00:00+08:00"));
    let r = serve_until(&engine, &clock, &options("third"), |r| r.rounds >= 1).await;
    assert_eq!(r.fired, 0, "{r:?}");
    each_timer_applied_once(&engine, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_engines_on_postgres_apply_10000_timers_exactly_once() {
    const N: usize = 10_000;
    let db = postgres_db("three");
    let engine = engine(&db).await;
    start_many(&engine, N).await;
    let clock = VirtualClock::new(at("2026-01-05T12:00:00+08:00"));
    let (stop, _) = watch::channel(false);
    let mut engines = Vec::new();
    let mut reports = Vec::new();
    for _ in 0..3 {
        engines.push(Arc::new(engine_again(&db).await));
        reports.push(watch::channel(Report::default()));
    }
    let opts: Vec<Options> = (0..3).map(|i| options(&format!("engine-{i}"))).collect();
    let server = |i: usize| {
        let mut stopped = stop.subscribe();
        run(
            engines[i].clone(),
            &[],
            &opts[i],
            &clock,
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
            Some(&reports[i].0),
        )
    };
    let mut rx: Vec<_> = reports.iter().map(|(tx, _)| tx.subscribe()).collect();
    let driver = async {
        loop {
            let fired: Vec<usize> = rx.iter().map(|r| r.borrow().fired).collect();
            if fired.iter().sum::<usize>() >= N {
                stop.send_replace(true);
                return fired;
            }
            let [a, b, c] = &mut rx[..] else {
                unreachable!()
            };
            tokio::select! {
                _ = a.changed() => {}
                _ = b.changed() => {}
                _ = c.changed() => {}
            }
        }
    };
    let ((), (), (), fired) = tokio::join!(server(0), server(1), server(2), driver);
    eprintln!("10,000 timers on three engines: {fired:?} applied per engine");
    assert_eq!(
        fired.iter().sum::<usize>(),
        N,
        "the engines together applied each timer once: {fired:?}"
    );
    each_timer_applied_once(&engine, N).await;
}

/// The binary's signal handling: a SIGTERM that arrives while `serve`
/// starts up (migrations, deploy) still stops it cleanly. The pause puts
/// the signal into start-up; it does not wait for the server.
#[test]
fn a_signal_during_start_up_still_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db");
    let child = serve(db.to_str().unwrap(), "2026-01-05T09:00:00+08:00");
    std::thread::sleep(Duration::from_millis(300));
    stop(child);
}

/// A year's schedule copied into the calendar folder while `serve` runs is
/// picked up without a restart: the provisional deadline counted without
/// it is counted again, and recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_installed_while_serving_is_counted_on_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db");
    let db = db.to_str().unwrap();
    let cal = tmp.path().join("calendars");
    std::fs::create_dir_all(&cal).unwrap();
    // 30 days from 2026-12-02: 2027-01-01 is 元旦, then a weekend: 01-04,
    // provisional (no 2027 schedule yet).
    let out = provisional_letter(db, &cal);
    assert!(
        out.contains("deadline 2027-01-04") && out.contains("暂按法定假日推算"),
        "{out}"
    );

    let engine = Arc::new(
        Engine::new(
            SqlStore::open(db).await.unwrap(),
            files::load(&cal).unwrap(),
        )
        .await
        .unwrap(),
    );
    let clock = VirtualClock::new(at("2026-12-10T09:00:00+08:00"));
    let opts = Options {
        calendar_dir: Some(cal.clone()),
        poll: chrono::Duration::minutes(1),
        ..options("calendar")
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (tx, mut rx) = watch::channel(Report::default());
    let server = run(
        engine.clone(),
        &[],
        &opts,
        &clock,
        async {
            let _ = stop_rx.await;
        },
        Some(&tx),
    );
    let driver = async {
        rx.wait_for(|r| r.rounds >= 1).await.unwrap();
        // Installed the way `calendar load` does it: a temporary file, renamed.
        let y2027 = "year: 2027\nsource: test schedule\nholidays:\n  - name: 元旦\n    rest: [2027-01-01..2027-01-03]\n";
        std::fs::write(cal.join(".2027.yaml.tmp"), y2027).unwrap();
        std::fs::rename(cal.join(".2027.yaml.tmp"), cal.join("2027.yaml")).unwrap();
        // The next round, one poll later.
        clock.set(at("2026-12-10T09:01:00+08:00"));
        rx.wait_for(|r| r.rounds >= 2).await.unwrap();
        stop_tx.send(()).unwrap();
    };
    tokio::join!(server, driver);
    let history = engine.history("1").await.unwrap();
    let recount = history
        .iter()
        .find(|h| h.what == HistoryKind::Recomputed)
        .expect("the deadline was recounted");
    assert_eq!(
        recount.note.as_deref(),
        Some("办理期限按国务院公布的节假日安排重新计算：最后一日仍为2027年1月4日，不再暂定")
    );
    let task = engine.instance("1").await.unwrap().tasks["1.2"].clone();
    assert_eq!(task.deadline.unwrap().last_day.to_string(), "2027-01-04");
}

/// Issue 22: the binary, with email to a server that accepts connections
/// and never answers. SIGTERM while deliveries hang: `serve` exits 0 within
/// its grace period plus 2 s, and every email row it had claimed can be
/// claimed by another process at once (no lease to wait out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_behind_a_silent_smtp_server_stops_in_time_and_gives_claims_back() {
    use duban_engine::store::{directory, OutboxKind};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db");
    let db = db.to_str().unwrap().to_string();
    let t0 = at("2026-01-05T09:00:00+08:00");
    {
        let store = SqlStore::open(&db).await.unwrap();
        let engine = Engine::new(store, Calendar::builtin()).await.unwrap();
        let text = std::fs::read_to_string(root().join("tests/data/directory.yaml")).unwrap();
        engine
            .import_directory(directory::parse(&text, false).unwrap())
            .await
            .unwrap();
        engine
            .deploy(&[root().join("tests/data/mailer")], t0)
            .await
            .unwrap();
        for _ in 0..20 {
            engine
                .start("mail_only", None, BTreeMap::new(), "li", t0)
                .await
                .unwrap();
        }
        engine.store().close().await;
    }
    // Accepts, reads nothing, answers nothing, keeps every socket open.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let config = tmp.path().join("duban.toml");
    std::fs::write(
        &config,
        format!(
            "[email]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             from = \"督办系统 <duban@sfj.example.org>\"\ntimeout_secs = 30\nconnections = 4\n"
        ),
    )
    .unwrap();
    let grace = 2;
    let child = serve_command(&db, "2026-01-05T09:01:00+08:00", "tests/data/mailer")
        .args(["--grace-secs", &grace.to_string(), "--config"])
        .arg(&config)
        .spawn()
        .expect("duban serve starts");
    // Wait until every connection the notifier may open hangs.
    let waited = std::time::Instant::now();
    while accepted.load(Ordering::SeqCst) < 4 {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "serve never connected to the SMTP server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopping = std::time::Instant::now();
    let err = stop(child);
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(grace + 2),
        "stopped after {took:?}: {err}"
    );
    assert!(err.contains("claims given back"), "{err}");
    // Another process finds every row claimable now, at serve's instant.
    let store = SqlStore::open(&db).await.unwrap();
    let now = at("2026-01-05T09:01:30+08:00");
    let rows = store
        .claim_outbox(
            OutboxKind::Email,
            now,
            100,
            now + chrono::Duration::minutes(2),
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 20, "rows still leased after the stop");
}

/// `duban serve` with email to a real SMTP server (aiosmtpd) and the
/// answer portal on, after a letter to market_bureau was started: what the
/// portal tests share.
struct PortalServe {
    _tmp: tempfile::TempDir,
    db: String,
    instance: String,
    serve: Child,
    sink: Child,
    http: u16,
    /// The answer link the notice email carried.
    link: String,
}

impl PortalServe {
    async fn start() -> PortalServe {
        use duban_engine::store::directory;
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("duban.db").to_str().unwrap().to_string();
        let t0 = at("2026-01-05T09:00:00+08:00");
        let instance = {
            let store = SqlStore::open(&db).await.unwrap();
            let engine = Engine::new(store, Calendar::builtin()).await.unwrap();
            let text = std::fs::read_to_string(root().join("tests/data/directory.yaml")).unwrap();
            engine
                .import_directory(directory::parse(&text, false).unwrap())
                .await
                .unwrap();
            engine
                .deploy(&[root().join("tests/data/receipt")], t0)
                .await
                .unwrap();
            let mut vars = BTreeMap::new();
            vars.insert("agency".to_string(), serde_json::json!("market_bureau"));
            let t = engine
                .start("receipt_letter", None, vars, "wang", t0)
                .await
                .unwrap();
            engine.store().close().await;
            t.state.id
        };
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (smtp, http) = (free_port(), free_port());
        let mails = tmp.path().join("mails.txt");
        let sink = Command::new("/usr/bin/python3")
            .arg(root().join("tests/data/smtp_text_sink.py"))
            .args([&smtp.to_string(), mails.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3-aiosmtpd is installed");
        let waited = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", smtp)).is_err() {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "the SMTP sink did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let config = tmp.path().join("duban.toml");
        std::fs::write(
            &config,
            format!(
                "[email]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\nfrom = \"督办系统 <duban@sfj.example.org>\"\n\n\
                 [portal]\nlisten = \"127.0.0.1:{http}\"\nbase_url = \"http://127.0.0.1:{http}\"\nkey_id = \"k1\"\n"
            ),
        )
        .unwrap();
        let serve = serve_command(&db, "2026-01-05T09:01:00+08:00", "tests/data/receipt")
            .arg("--config")
            .arg(&config)
            .env(
                "DUBAN_PORTAL_KEY",
                "a signing key of more than thirty-two bytes",
            )
            .spawn()
            .expect("duban serve starts");
        let waited = std::time::Instant::now();
        let link = loop {
            let text = std::fs::read_to_string(&mails).unwrap_or_default();
            if let Some(i) = text.find(&format!("http://127.0.0.1:{http}/n/")) {
                let rest = &text[i..];
                let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
                assert!(text.contains("scj@example.org"), "{text}");
                break rest[..end].to_string();
            }
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "no email with a link: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        PortalServe {
            _tmp: tmp,
            db,
            instance,
            serve,
            sink,
            http,
            link,
        }
    }

    /// Stops serve and the sink; the instance's history.
    async fn stop(mut self) -> (String, Vec<duban_engine::runtime::HistoryEntry>) {
        let err = stop(self.serve);
        let _ = self.sink.kill();
        let _ = self.sink.wait();
        let store = SqlStore::open(&self.db).await.unwrap();
        let engine = Engine::new(store, Calendar::builtin()).await.unwrap();
        (err, engine.history(&self.instance).await.unwrap())
    }
}

/// Issue 14, tried as a user would: with `[portal]` in `duban.toml`, the
/// notice email a real SMTP server receives carries a signed link; opening
/// it on the portal `serve` runs shows the notice and records receipt (签收)
/// by the agency; the portal stops with `serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notice_email_carries_a_link_the_portal_serves() {
    use std::io::{Read, Write};
    let w = PortalServe::start().await;
    let path = w
        .link
        .strip_prefix(&format!("http://127.0.0.1:{}", w.http))
        .unwrap()
        .to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", w.http)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("签收时间"), "{response}");
    assert!(response.contains("许昌市市场监督管理局"), "{response}");
    let (err, history) = w.stop().await;
    assert!(
        err.contains("portal: answer links are signed and served"),
        "{err}"
    );
    let received = history
        .iter()
        .find(|h| h.what == HistoryKind::Received)
        .expect("receipt recorded at the first opening");
    assert_eq!(received.actor, "market_bureau");
}

/// Issue 14's browser test: headless Chromium (Debian's `chromium`, which
/// `.ci/run` installs) opens the link from the email a real SMTP server
/// received, sees the notice and its deadline, fills in the form, submits,
/// and sees the confirmation; the instance has moved on, its history names
/// the agency, and receipt was recorded at the first opening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_answers_in_a_browser_from_its_email() {
    let w = PortalServe::start().await;
    let out = Command::new("/usr/bin/python3")
        .arg(root().join("tests/browser/answer.py"))
        .args([
            w.link.as_str(),
            "report",
            "已依法责令改正，并处罚款。",
            "handled",
        ])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "the browser run failed (is `chromium` installed? .ci/run installs it): {stdout}{stderr}"
    );
    let pages: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let first = pages["first"].as_str().unwrap();
    assert!(first.contains("被监督机关书面报告处理情况"), "{first}");
    assert!(first.contains("签收时间"), "{first}");
    assert!(first.contains("办理期限"), "{first}");
    let after = pages["after"].as_str().unwrap();
    assert!(after.contains("已提交"), "{after}");
    let (_, history) = w.stop().await;
    let what: Vec<_> = history.iter().map(|h| (h.what, h.actor.as_str())).collect();
    let received = what
        .iter()
        .position(|(k, a)| *k == HistoryKind::Received && *a == "market_bureau");
    let answered = what
        .iter()
        .position(|(k, a)| *k == HistoryKind::NoticeAnswered && *a == "market_bureau");
    assert!(
        matches!((received, answered), (Some(r), Some(a)) if r < a),
        "{what:?}"
    );
    assert!(
        what.iter().any(|(k, _)| *k == HistoryKind::Ended),
        "the case moved on to its end: {what:?}"
    );
}

/// Issue 14: a member of staff asks for a sign-in link on the portal; it
/// arrives by email through the configured SMTP server, and opening it
/// gives a session whose inbox greets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_arrives_by_email_and_opens_the_inbox() {
    use std::io::{Read, Write};
    let w = PortalServe::start().await;
    let http = |req: String| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", w.http)).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        response
    };
    let form = "email=li%40example.org";
    let r = http(format!(
        "POST /staff/signin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    ));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let mails = w._tmp.path().join("mails.txt");
    let waited = std::time::Instant::now();
    let link = loop {
        let text = std::fs::read_to_string(&mails).unwrap_or_default();
        if let Some(i) = text.find("/staff/s/") {
            let rest = &text[i..];
            let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
            assert!(text.contains("li@example.org"), "{text}");
            break rest[..end].to_string();
        }
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "no sign-in email: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let r = http(format!(
        "GET {link} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    ));
    assert!(r.starts_with("HTTP/1.1 303"), "{r}");
    let cookie = r
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = http(format!(
        "GET /staff/inbox HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    ));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("李明"), "{r}");
    w.stop().await;
}

/// Reads `serve`'s log until a line holds an answer link of the demo's
/// portal; the child (its log given back), what was read, and the link.
fn demo_banner(mut child: Child) -> (Child, String, String) {
    use std::io::{BufRead, BufReader};
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    let mut link = None;
    for _ in 0..400 {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        banner.push_str(&line);
        if let Some(at) = line.find("http://127.0.0.1:8080/n/") {
            link = Some(line[at..].trim().to_string());
            break;
        }
    }
    let link = link.unwrap_or_else(|| panic!("no answer link in: {banner}"));
    child.stderr = Some(err.into_inner());
    (child, banner, link)
}

/// The demo portal's answer to `GET path`, whole.
fn demo_get(path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", 8080)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

/// Issue 15, the demo: `serve --demo` on an empty store imports the example
/// district, starts its cases, serves the answer pages on 127.0.0.1:8080
/// and prints where to look with each open notice's answer link, which
/// works; a second start seeds nothing twice.
#[test]
fn the_demo_shows_an_example_district_with_a_working_answer_link() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db");
    let db = db.to_str().unwrap();
    let start = || {
        let mut c = serve_command(db, "2026-03-02T09:00:00+08:00", "processes");
        c.arg("--demo").spawn().expect("duban serve --demo starts")
    };
    let (child, banner, link) = demo_banner(start());
    assert!(
        banner.contains("imported the example directory (6 people, 4 agencies)"),
        "{banner}"
    );
    assert!(
        banner.contains("a 督办函 issued to 许昌市市场监督管理局"),
        "{banner}"
    );
    assert!(banner.contains("duban tasks"), "{banner}");
    let path = link.strip_prefix("http://127.0.0.1:8080").unwrap();
    let response = demo_get(path);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("许昌市市场监督管理局"), "{response}");
    stop(child);
    // Again on the same store: nothing seeded twice; the same link works.
    let (child, again, _) = demo_banner(start());
    assert!(!again.contains("imported the example directory"), "{again}");
    assert!(!again.contains("instance 4"), "{again}");
    // The first run's link still works: the demo key is kept beside the
    // database.
    let response = demo_get(path);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    stop(child);
}
