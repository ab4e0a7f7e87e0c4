//! `duban serve` as separate processes: timers that fall due while no
//! engine runs fire once on the next start, and several engine processes on
//! one PostgreSQL database apply each of 10,000 due timers exactly once.

mod common;

use common::{duban_at, postgres_db, provisional_letter, root};
use duban_engine::runtime::HistoryKind;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use duban_engine::calendar::Calendar;
use duban_engine::service::Engine;
use duban_engine::store::{SqlStore, Store};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn serve(db: &str, now: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_duban"))
        .args([
            "serve",
            "--processes",
            "tests/data/timers",
            "--poll-ms",
            "200",
            "--batch",
            "100",
        ])
        .current_dir(root())
        .env("DUBAN_DB", db)
        .env("DUBAN_NOW", now)
        .env(
            "DUBAN_CALENDAR_DIR",
            root().join("target/no-installed-calendars"),
        )
        .env("DUBAN_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_due_while_stopped_fire_once_on_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db");
    let db = db.to_str().unwrap().to_string();
    let engine = engine(&db).await;
    start_many(&engine, 20).await;
    engine.store().close().await;
    // 09:30: nothing is due yet; the engine stops with 20 timers pending.
    let first = serve(&db, "2026-01-05T09:30:00+08:00");
    std::thread::sleep(Duration::from_millis(800));
    stop(first);
    let engine = engine_again(&db).await;
    assert_eq!(
        engine
            .store()
            .instances(Some("running"), None)
            .await
            .unwrap()
            .len(),
        20
    );
    engine.store().close().await;
    // 12:00: the timers fell due while nothing ran; the next start fires them.
    let second = serve(&db, "2026-01-05T12:00:00+08:00");
    let engine = engine_again(&db).await;
    wait_until_no_timers(&engine).await;
    stop(second);
    // A third start finds nothing more to do.
    let third = serve(&db, "2026-01-05T13:00:00+08:00");
    std::thread::sleep(Duration::from_millis(800));
    stop(third);
    each_timer_applied_once(&engine, 20).await;
}

async fn engine_again(db: &str) -> Engine<SqlStore> {
    Engine::new(SqlStore::open(db).await.unwrap(), Calendar::builtin())
        .await
        .unwrap()
}

async fn wait_until_no_timers(engine: &Engine<SqlStore>) {
    let start = Instant::now();
    while engine.store().next_due().await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "timers still pending after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sum of `fired=N` over a `serve` log.
fn fired_in(log: &str) -> usize {
    log.lines()
        .filter_map(|l| l.split("fired=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<usize>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_engines_on_postgres_apply_10000_timers_exactly_once() {
    const N: usize = 10_000;
    let db = postgres_db("three");
    let engine = engine(&db).await;
    start_many(&engine, N).await;
    let started = Instant::now();
    let servers: Vec<Child> = (0..3)
        .map(|_| serve(&db, "2026-01-05T12:00:00+08:00"))
        .collect();
    wait_until_no_timers(&engine).await;
    let elapsed = started.elapsed();
    let fired: Vec<usize> = servers.into_iter().map(|s| fired_in(&stop(s))).collect();
    eprintln!("10,000 timers on three engines in {elapsed:?}: {fired:?} applied per process");
    assert_eq!(
        fired.iter().sum::<usize>(),
        N,
        "the processes together applied each timer once: {fired:?}"
    );
    each_timer_applied_once(&engine, N).await;
}

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
#[test]
fn a_schedule_installed_while_serving_is_counted_on_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db");
    let db = db.to_str().unwrap();
    let cal = tmp.path().join("calendars");
    std::fs::create_dir_all(&cal).unwrap();
    let run = |now: &str, args: &[&str]| duban_at(db, &cal, now, args);
    // 30 days from 2026-12-02: 2027-01-01, provisional (no 2027 schedule yet).
    let out = provisional_letter(db, &cal);
    assert!(out.contains("deadline 2027-01-01") && out.contains("PROVISIONAL"));

    let child = Command::new(env!("CARGO_BIN_EXE_duban"))
        .args(["serve", "--poll-ms", "200"])
        .current_dir(root())
        .env("DUBAN_DB", db)
        .env("DUBAN_NOW", "2026-12-10T09:00:00+08:00")
        .env("DUBAN_CALENDAR_DIR", &cal)
        .env("DUBAN_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // Installed the way `calendar load` does it: a temporary file, renamed.
    let y2027 = "year: 2027\nsource: test schedule\nholidays:\n  - name: 元旦\n    rest: [2027-01-01..2027-01-03]\n";
    std::fs::write(cal.join(".2027.yaml.tmp"), y2027).unwrap();
    std::fs::rename(cal.join(".2027.yaml.tmp"), cal.join("2027.yaml")).unwrap();
    let start = Instant::now();
    let show = loop {
        let show = run("2026-12-10T09:00:00+08:00", &["show", "1"]);
        if show.contains("due 2027-01-04") || start.elapsed() > Duration::from_secs(30) {
            break show;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = stop(child);
    assert!(
        show.contains(
            "deadline recomputed on the official calendar: last day 2027-01-01 → 2027-01-04"
        ),
        "{show}\n{log}"
    );
    assert!(log.contains("calendar reloaded"), "{log}");
}
