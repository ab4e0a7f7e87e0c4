//! A fault met while applying a timer is never lost (issue 10): the
//! instance becomes stuck with the fault's code in its history, its timer
//! rows are kept and held, `duban instances --status stuck` lists it, and
//! after the administrator fixes the cause (`duban set-var`), `duban retry`
//! carries the escalation out exactly once.

#[allow(dead_code)]
mod common;

use common::{duban_at, duban_output};

use chrono::{DateTime, Utc};
use duban_engine::calendar::Calendar;
use duban_engine::runtime::{HistoryKind, Status};
use duban_engine::scheduler::{Scheduler, SchedulerOptions};
use duban_engine::service::Engine;
use duban_engine::store::SqlStore;
use serde_json::Value;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Runs the scheduler once, in-process, on the same store the CLI uses.
async fn fire(db: &str, now: &str) -> duban_engine::scheduler::Round {
    let engine = std::sync::Arc::new(
        Engine::new(SqlStore::open(db).await.unwrap(), Calendar::builtin())
            .await
            .unwrap(),
    );
    let s = Scheduler::new(engine.clone(), SchedulerOptions::default());
    let r = s.fire_due(at(now), None).await.unwrap();
    engine.store().close().await;
    r
}

async fn engine(db: &str) -> Engine<SqlStore> {
    Engine::new(SqlStore::open(db).await.unwrap(), Calendar::builtin())
        .await
        .unwrap()
}

fn duban_fails(db: &str, cal: &std::path::Path, now: &str, args: &[&str]) -> String {
    let o = duban_output(db, cal, now, args);
    assert_eq!(o.status.code(), Some(1), "{args:?} should be refused");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_to_a_notice_without_recipient_sticks_and_retries_once() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db").display().to_string();
    let cal = tmp.path().join("calendars");
    let t0 = "2026-03-02T10:00:00+08:00";
    duban_at(
        &db,
        &cal,
        t0,
        &["deploy", "tests/data/faults/unset_recipient.yaml"],
    );
    duban_at(
        &db,
        &cal,
        t0,
        &["directory", "import", "tests/data/directory.yaml"],
    );
    duban_at(&db, &cal, t0, &["start", "unset_recipient"]);
    let id = "1";

    // Five working days from Monday 2 March: the expiry falls on 10 March.
    let r = fire(&db, "2026-03-10T09:00:00+08:00").await;
    assert_eq!((r.fired, r.stale, r.stuck), (0, 0, 1), "{r:?}");

    let e = engine(&db).await;
    let state = e.instance(id).await.unwrap();
    let Status::Stuck { code, .. } = &state.status else {
        panic!("not stuck: {:?}", state.status)
    };
    assert_eq!(code, "R015");
    let history = e.history(id).await.unwrap();
    let stuck: Vec<_> = history
        .iter()
        .filter(|h| h.what == HistoryKind::Stuck)
        .collect();
    assert_eq!(stuck.len(), 1);
    let note = stuck[0].note.as_deref().unwrap();
    assert!(
        note.contains("R015") && note.contains("warn_agency"),
        "{note}"
    );
    // The expiry was not applied, and its timer row was not dropped.
    assert!(!history.iter().any(|h| h.what == HistoryKind::Expired));
    let timers = e.pending_timers(id).await.unwrap();
    assert_eq!(timers, state.timers.keys().cloned().collect::<Vec<_>>());
    assert_eq!(timers.len(), 1, "the expiry timer is kept");
    e.store().close().await;

    // Listed as stuck, in JSON.
    let now = "2026-03-10T10:00:00+08:00";
    let out = duban_at(
        &db,
        &cal,
        now,
        &["instances", "--status", "stuck", "--json"],
    );
    let rows: Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id]);
    let running = duban_at(
        &db,
        &cal,
        now,
        &["instances", "--status", "running", "--json"],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&running).unwrap(),
        Value::Array(vec![])
    );

    // A held timer is not claimed again by later rounds.
    let r = fire(&db, "2026-03-11T09:00:00+08:00").await;
    assert_eq!((r.fired, r.stale, r.stuck), (0, 0, 0), "{r:?}");

    // A retry before the cause is fixed is refused and writes nothing.
    let before = engine(&db).await.history(id).await.unwrap().len();
    let err = duban_fails(&db, &cal, now, &["retry", id]);
    assert!(err.contains("R015"), "{err}");
    // Other events are refused while stuck, naming the way out.
    let err = duban_fails(
        &db,
        &cal,
        now,
        &["complete", "1.1", "--outcome", "done", "--as", "li"],
    );
    assert!(
        err.contains("R027") && err.contains("duban retry 1"),
        "{err}"
    );
    assert_eq!(engine(&db).await.history(id).await.unwrap().len(), before);

    // Fix the cause, retry: the escalation happens exactly once.
    let out = duban_at(
        &db,
        &cal,
        now,
        &[
            "set-var",
            id,
            "--var",
            "agency=market_bureau",
            "--as",
            "admin",
        ],
    );
    assert!(out.contains("agency"), "{out}");
    let out = duban_at(&db, &cal, now, &["retry", id, "--as", "admin"]);
    assert!(out.contains("warn_agency"), "{out}");

    let e = engine(&db).await;
    let state = e.instance(id).await.unwrap();
    assert_eq!(state.status, Status::Running);
    let history = e.history(id).await.unwrap();
    let count = |k| history.iter().filter(|h| h.what == k).count();
    assert_eq!(count(HistoryKind::Expired), 1);
    assert_eq!(count(HistoryKind::NoticeSent), 1);
    assert_eq!(count(HistoryKind::Retried), 1);
    assert_eq!(count(HistoryKind::VariablesSet), 1);
    let retried = history
        .iter()
        .find(|h| h.what == HistoryKind::Retried)
        .unwrap();
    assert_eq!(retried.actor, "admin");
    assert!(e.pending_timers(id).await.unwrap().is_empty());
    e.store().close().await;

    // Nothing is left to fire, and nothing is stuck.
    let r = fire(&db, "2026-04-30T09:00:00+08:00").await;
    assert_eq!((r.fired, r.stale, r.stuck), (0, 0, 0), "{r:?}");
    let out = duban_at(
        &db,
        &cal,
        now,
        &["instances", "--status", "stuck", "--json"],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        Value::Array(vec![])
    );
}
