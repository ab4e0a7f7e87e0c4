//! Upgrading duban and backing up its store (issue 19, docs/upgrading.md).
//!
//! - A store written by release 0.1.0 is kept under `tests/data/upgrade/`
//!   (a SQLite file, and a PostgreSQL dump in plain SQL): this build opens
//!   it, migrates it to its own schema, and carries its instances on — a
//!   due timer fires once, a notice is answered, the history and the
//!   documents' outbox rows are intact.
//! - A store from a newer build is refused with a clear message and left
//!   byte for byte as it was.
//! - A backup taken while instances are being started holds every one
//!   committed before it; restored into a fresh home, its due timers fire
//!   exactly once there. On PostgreSQL, with `pg_dump` and `pg_restore`.
//!
//! The fixtures are written by `DUBAN_WRITE_FIXTURE=1 cargo test -p
//! duban-tests --test upgrade write_fixtures -- --ignored` (then commit
//! them): only when a release is cut, never by CI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use duban_engine::calendar::Calendar;
use duban_engine::runtime::{HistoryKind, TimerKind};
use duban_engine::scheduler::{Scheduler, SchedulerOptions};
use duban_engine::service::Engine;
use duban_engine::store::backup::{known_schema, restore};
use duban_engine::store::{SqlStore, Store};
use duban_tests::{
    at, fresh_postgres, import_scenario_directory, open_task, processes, root, vars,
};
use sqlx::Connection;

fn fixtures() -> PathBuf {
    root().join("tests/data/upgrade")
}

async fn engine(url: &str) -> Arc<Engine<SqlStore>> {
    let store = SqlStore::open(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    Arc::new(Engine::new(store, Calendar::builtin()).await.unwrap())
}

async fn library(e: &Engine<SqlStore>) {
    import_scenario_directory(e).await;
    e.deploy(&[processes()], at("2025-09-01T00:00:00Z"))
        .await
        .unwrap();
}

async fn letter(e: &Engine<SqlStore>, case: &str, now: &str) -> String {
    e.start(
        "supervision_letter",
        Some("XC"),
        vars(&[
            ("agency", "market_bureau"),
            ("case_no", case),
            ("problem", "未落实行政执法公示制度"),
        ]),
        "li",
        at(now),
    )
    .await
    .unwrap()
    .state
    .id
}

/// What the fixtures hold: three letters of 2025-09-26, one still being
/// drafted (its reminder falls due on 2025-10-09 09:00), one sent and
/// received (its 督办函 rendered, its answer period counted), one closed.
async fn fill(e: &Engine<SqlStore>) {
    library(e).await;
    letter(e, "许司督〔2025〕1号", "2025-09-26T10:00:00+08:00").await;
    let sent = letter(e, "许司督〔2025〕2号", "2025-09-26T10:00:00+08:00").await;
    let t = open_task(e, &sent, "draft_letter").await;
    e.complete(
        &t,
        "issue",
        vars(&[("letter_kind", "督办函"), ("reply_period", "10个工作日")]),
        "li",
        at("2025-09-26T11:00:00+08:00"),
    )
    .await
    .unwrap();
    let n = open_task(e, &sent, "await_report").await;
    e.receive(&n, "market_bureau", at("2025-09-26T12:00:00+08:00"))
        .await
        .unwrap();
    let closed = letter(e, "许司督〔2025〕3号", "2025-09-26T10:00:00+08:00").await;
    let t = open_task(e, &closed, "draft_letter").await;
    e.complete(
        &t,
        "no_problem",
        vars(&[]),
        "li",
        at("2025-09-26T11:00:00+08:00"),
    )
    .await
    .unwrap();
}

#[tokio::test]
#[ignore = "writes the release fixtures; run by hand when a release is cut"]
async fn write_fixtures() {
    assert!(
        std::env::var("DUBAN_WRITE_FIXTURE").is_ok(),
        "set DUBAN_WRITE_FIXTURE=1"
    );
    std::fs::create_dir_all(fixtures()).unwrap();
    let file = fixtures().join("duban-0.1.0.db");
    let _ = std::fs::remove_file(&file);
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("duban.db");
    let e = engine(&live.display().to_string()).await;
    fill(&e).await;
    e.store().backup(&file).await.unwrap();
    let url = fresh_postgres("upfixture").await;
    let e = engine(&url).await;
    fill(&e).await;
    let out = Command::new("pg_dump")
        .args(["--no-owner", "--no-privileges", "--format=plain", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(fixtures().join("duban-0.1.0-postgres.sql"), out.stdout).unwrap();
}

/// The checks on a store opened from a 0.1.0 fixture.
async fn carries_on(url: &str, postgres: bool) {
    // What the fixture holds, read before this build touches it.
    let e = engine(url).await;
    let schema: i64 = {
        sqlx::any::install_default_drivers();
        let u = if postgres {
            url.to_string()
        } else {
            format!("sqlite://{url}")
        };
        let mut c = sqlx::AnyConnection::connect(&u).await.unwrap();
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut c)
            .await
            .unwrap()
    };
    assert_eq!(
        schema,
        known_schema(postgres),
        "migrated to this build's schema"
    );
    let all = e.store().instances(None, None).await.unwrap();
    assert_eq!(all.len(), 3);
    let before: Vec<_> = {
        let mut v = vec![];
        for i in &all {
            v.push(e.history(&i.id).await.unwrap());
        }
        v
    };
    let outbox_before = e.outbox(None).await.unwrap().len();
    assert!(
        e.outbox(None)
            .await
            .unwrap()
            .iter()
            .any(|r| r.kind == duban_engine::store::OutboxKind::RenderDocument),
        "the 督办函 is in the fixture"
    );

    // A due timer fires once: the draft's reminder of 2025-10-09 09:00.
    let s = Scheduler::new(e.clone(), SchedulerOptions::default());
    let r = s
        .fire_due(at("2025-10-09T10:00:00+08:00"), None)
        .await
        .unwrap();
    assert_eq!(r.fired, 1, "{r:?}");
    let r = s
        .fire_due(at("2025-10-09T10:00:00+08:00"), None)
        .await
        .unwrap();
    assert_eq!(r.fired, 0, "{r:?}");
    let mut reminded = 0;
    for i in &all {
        let h = e.history(&i.id).await.unwrap();
        reminded += h.iter().filter(|l| l.what == HistoryKind::Reminder).count();
    }
    assert_eq!(reminded, 1);

    // A notice is answered and the case goes on.
    let mut sent = None;
    for i in &all {
        let st = e.instance(&i.id).await.unwrap();
        if st.open_tasks().any(|t| t.step == "await_report") {
            sent = Some(i.id.clone());
        }
    }
    let sent = sent.expect("a letter awaits its report");
    let n = open_task(&e, &sent, "await_report").await;
    e.complete(
        &n,
        "handled",
        vars(&[("handling_report", "已改正并公示")]),
        "market_bureau",
        at("2025-10-09T11:00:00+08:00"),
    )
    .await
    .unwrap();
    open_task(&e, &sent, "review_report").await;

    // Nothing of what the fixture held is lost.
    for (i, h) in all.iter().zip(&before) {
        let now = e.history(&i.id).await.unwrap();
        assert_eq!(&now[..h.len()], &h[..], "{}: history intact", i.id);
    }
    assert!(e.outbox(None).await.unwrap().len() >= outbox_before);
    // Every pending timer is still pending or was applied once.
    for i in &all {
        let st = e.instance(&i.id).await.unwrap();
        for t in st.timers.values() {
            if let TimerKind::Reminder { .. } = t.kind {
                assert!(
                    t.due > at("2025-10-09T10:00:00+08:00"),
                    "{t:?} was due and is still pending"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_of_0_1_0_is_migrated_and_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("duban.db");
    std::fs::copy(fixtures().join("duban-0.1.0.db"), &file).unwrap();
    carries_on(&file.display().to_string(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_of_0_1_0_is_migrated_and_carries_on() {
    let url = fresh_postgres("upfixture_in").await;
    let out = Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", &url, "-f"])
        .arg(fixtures().join("duban-0.1.0-postgres.sql"))
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    carries_on(&url, true).await;
}

#[tokio::test]
async fn a_store_from_a_newer_build_is_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("duban.db");
    std::fs::copy(fixtures().join("duban-0.1.0.db"), &file).unwrap();
    {
        let c = rusqlite::Connection::open(&file).unwrap();
        c.execute(
            "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (9999, 'from the future', '2030-01-01', 1, x'00', 0)",
            [],
        )
        .unwrap();
    }
    let bytes = std::fs::read(&file).unwrap();
    let err = match SqlStore::open(&file.display().to_string()).await {
        Ok(_) => panic!("a newer store was opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("newer duban"), "{err}");
    assert!(
        err.contains("9999") && err.contains(&known_schema(false).to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "left byte for byte as it was"
    );
    assert!(
        !Path::new(&format!("{}-wal", file.display())).exists()
            || std::fs::metadata(format!("{}-wal", file.display()))
                .unwrap()
                .len()
                == 0
    );
}

/// Due timers of `e` fire exactly once each: every instance's reminder and
/// expiry lines, one per pending timer, and a second round applies none.
async fn fire_exactly_once(e: &Arc<Engine<SqlStore>>, ids: &[String]) {
    let mut pending = 0;
    for id in ids {
        pending += e.instance(id).await.unwrap().timers.len();
    }
    assert!(pending > 0);
    let s = Scheduler::new(e.clone(), SchedulerOptions::default());
    let now = at("2025-10-11T09:00:00+08:00");
    let first = s.fire_due(now, None).await.unwrap();
    assert!(first.fired >= ids.len(), "{first:?}");
    assert_eq!(s.fire_due(now, None).await.unwrap().fired, 0);
    for id in ids {
        let h = e.history(id).await.unwrap();
        let n = |k| h.iter().filter(|l| l.what == k).count();
        assert_eq!(n(HistoryKind::Reminder), 1, "{id}");
        assert_eq!(n(HistoryKind::Expired), 1, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_in_the_middle_of_a_run_restores_and_its_timers_fire_once() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("a/duban.db");
    std::fs::create_dir_all(live.parent().unwrap()).unwrap();
    let e = engine(&live.display().to_string()).await;
    library(&e).await;
    // Starts go on while the backup is taken.
    let committed: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer = {
        let (e, committed) = (e.clone(), committed.clone());
        tokio::spawn(async move {
            for n in 0..60 {
                let id = letter(
                    &e,
                    &format!("许司督〔2025〕{n}号"),
                    "2025-09-26T10:00:00+08:00",
                )
                .await;
                committed.lock().unwrap().push(id);
                tokio::task::yield_now().await;
            }
        })
    };
    while committed.lock().unwrap().len() < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before: Vec<String> = committed.lock().unwrap().clone();
    let file = tmp.path().join("backup.db");
    let info = e.store().backup(&file).await.unwrap();
    writer.await.unwrap();
    assert!(info.instances >= before.len() as i64, "{info:?}");

    let home = tmp.path().join("b/duban.db");
    std::fs::create_dir_all(home.parent().unwrap()).unwrap();
    restore(&file, &home, false).unwrap();
    assert!(
        restore(&file, &home, false).is_err(),
        "a restore never overwrites a store unasked"
    );
    let b = engine(&home.display().to_string()).await;
    for id in &before {
        assert_eq!(
            b.instance(id).await.unwrap(),
            e.instance(id).await.unwrap(),
            "{id} committed before the backup"
        );
    }
    let restored: Vec<String> = b
        .store()
        .instances(None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(restored.len() as i64, info.instances);
    fire_exactly_once(&b, &restored).await;
}

#[tokio::test]
async fn a_damaged_or_foreign_backup_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.db");
    std::fs::write(&junk, b"not a database at all").unwrap();
    let target = tmp.path().join("duban.db");
    let err = restore(&junk, &target, false).unwrap_err().to_string();
    assert!(err.contains("not a SQLite database"), "{err}");
    let foreign = tmp.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err = restore(&foreign, &target, false).unwrap_err().to_string();
    assert!(err.contains("not a duban store"), "{err}");
    assert!(!target.exists(), "nothing restored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_dumped_and_restored_fires_its_timers_once() {
    let url = fresh_postgres("updump").await;
    let e = engine(&url).await;
    library(&e).await;
    let mut ids = vec![];
    for n in 0..5 {
        ids.push(
            letter(
                &e,
                &format!("许司督〔2025〕{n}号"),
                "2025-09-26T10:00:00+08:00",
            )
            .await,
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("duban.dump");
    let out = Command::new("pg_dump")
        .args(["--format=custom", "--no-owner", "-f"])
        .arg(&dump)
        .arg(&url)
        .output()
        .expect("pg_dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = fresh_postgres("uprestored").await;
    let out = Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "-d", &target])
        .arg(&dump)
        .output()
        .expect("pg_restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = engine(&target).await;
    for id in &ids {
        assert_eq!(b.instance(id).await.unwrap(), e.instance(id).await.unwrap());
    }
    fire_exactly_once(&b, &ids).await;
}
