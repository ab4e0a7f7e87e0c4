//! Speed and scale side by side (issue 17), measured and never asserted:
//! `cargo bench -p duban-tests --bench scale` (release build). Each part
//! prints its figures; the last lines are a summary table with the ratios
//! (docs/benchmarks.md keeps the last run).
//!
//! Parts (`DUBAN_BENCH_PARTS`, comma-separated; default all):
//!
//! - `lifecycle`: full two-task lifecycles (start, complete task A,
//!   complete task B, end: `tests/data/bench/two_tasks.yaml`) through the
//!   engine at 1, 16, 64 and 256 concurrent callers (`DUBAN_BENCH_CALLERS`),
//!   on SQLite (a file, WAL, `synchronous = FULL`) and PostgreSQL, each
//!   level on a fresh database; `DUBAN_BENCH_N` lifecycles per level
//!   (default 4000).
//! - `raw`: the same rows (the write sets the engine produced for one
//!   lifecycle, renumbered) written by a bare loop, as the limit: sqlx with
//!   one commit per event, sqlx with 64 lifecycles per commit, and rusqlite
//!   (the writer's own library) batched; PostgreSQL through sqlx both ways.
//! - `timers`: `DUBAN_BENCH_TIMERS` pending timers (default 1,000,000) on
//!   SQLite: a stream due at 20,000 a second for 10 s, then a burst of as
//!   many due at once, the rest due a year later; applied/s, the lag
//!   between due and applied (p50, p99, from the store's own instants),
//!   peak RSS during the drain, and the time from opening the store again
//!   to the first applied timer with the year's backlog due.
//! - `pg`: `DUBAN_BENCH_PG_TIMERS` due timers (default 30,000) on one
//!   PostgreSQL database drained by 1 and by 3 engine processes (this
//!   binary run again as a child), each timer checked applied exactly once.
//! - `peers`: `bench/peers/run` (acts, SpiffWorkflow, bpmn-engine, in
//!   memory, installed from their registries) with the same N.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use duban_engine::calendar::Calendar;
use duban_engine::runtime::Transition;
use duban_engine::serve::{self, Clock, Options, Report};
use duban_engine::service::Engine;
use duban_engine::store::writes::{self, Check, Val, WriteSet};
use duban_engine::store::{directory, MemoryStore, SqlStore, Store};
use serde_json::{json, Value as Json};
use sqlx::Connection;
use tokio::sync::watch;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn vars(pairs: &[(&str, Json)]) -> BTreeMap<String, Json> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";

fn pg_server() -> String {
    std::env::var("DUBAN_TEST_POSTGRES").unwrap_or_else(|_| PG.into())
}

/// A fresh PostgreSQL database, dropped by [`drop_pg`].
async fn fresh_pg(tag: &str) -> Option<String> {
    let server = pg_server();
    let mut admin = sqlx::PgConnection::connect(&server).await.ok()?;
    let name = format!("duban_bench_{tag}_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    Some(format!("{}/{name}", server.rsplit_once('/').unwrap().0))
}

async fn drop_pg(url: &str) {
    let name = url.rsplit_once('/').unwrap().1;
    if let Ok(mut admin) = sqlx::PgConnection::connect(&pg_server()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
    }
}

async fn engine_on<S: Store>(store: S) -> Arc<Engine<S>> {
    let engine = Engine::new(store, Calendar::builtin()).await.unwrap();
    let root = duban_tests::root();
    let text = std::fs::read_to_string(root.join("tests/data/directory.yaml")).unwrap();
    engine
        .import_directory(directory::parse(&text, false).unwrap())
        .await
        .unwrap();
    engine
        .deploy(
            &[
                root.join("tests/data/bench"),
                root.join("tests/data/timers"),
            ],
            at("2025-09-01T09:00:00+08:00"),
        )
        .await
        .unwrap();
    Arc::new(engine)
}

// ----- lifecycles through the engine ---------------------------------------

async fn lifecycle<S: Store>(engine: &Engine<S>, t0: DateTime<Utc>) {
    let t = engine
        .start("two_tasks", None, vars(&[]), "li", t0)
        .await
        .unwrap();
    let a = t.state.open_tasks().next().unwrap().id.clone();
    let t = engine
        .complete(&a, "done", vars(&[("a_done", json!(true))]), "li", t0)
        .await
        .unwrap();
    let b = t.state.open_tasks().next().unwrap().id.clone();
    let t = engine
        .complete(&b, "done", vars(&[("b_done", json!(true))]), "li", t0)
        .await
        .unwrap();
    assert_eq!(t.state.status.name(), "completed");
}

/// Lifecycles/s with `callers` concurrent callers.
async fn lifecycles(url: &str, callers: usize, n: usize) -> f64 {
    let engine = engine_on(SqlStore::open(url).await.unwrap()).await;
    let t0 = at("2025-09-26T10:00:00+08:00");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..callers {
        let engine = engine.clone();
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                lifecycle(&engine, t0).await;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let done = engine
        .store()
        .instances(Some("completed"), None)
        .await
        .unwrap()
        .len();
    assert_eq!(done, n, "every lifecycle ended");
    engine.store().close().await;
    rate
}

// ----- the same rows by a bare loop ----------------------------------------

/// The write sets of one two-task lifecycle, its instance named `TPL`.
async fn lifecycle_sets() -> Vec<WriteSet> {
    let engine = engine_on(MemoryStore::new()).await;
    let t0 = at("2025-09-26T10:00:00+08:00");
    let t1 = engine
        .start_once("TPL", "two_tasks", None, vars(&[]), t0)
        .await
        .unwrap()
        .unwrap();
    let a = t1.state.open_tasks().next().unwrap().id.clone();
    let t2 = engine
        .complete(&a, "done", vars(&[("a_done", json!(true))]), "li", t0)
        .await
        .unwrap();
    let b = t2.state.open_tasks().next().unwrap().id.clone();
    let t3 = engine
        .complete(&b, "done", vars(&[("b_done", json!(true))]), "li", t0)
        .await
        .unwrap();
    vec![
        writes::transition(None, &t1, t0).unwrap(),
        writes::transition(Some(t1.state.revision), &t2, t0).unwrap(),
        writes::transition(Some(t2.state.revision), &t3, t0).unwrap(),
    ]
}

/// `set` with the marker `TPL` replaced by `id` everywhere.
fn renumber(set: &WriteSet, id: &str) -> WriteSet {
    let mut s = set.clone();
    s.instance = id.into();
    for op in &mut s.ops {
        for v in &mut op.params {
            if let Val::Text(t) = v {
                if t.contains("TPL") {
                    *t = t.replace("TPL", id);
                }
            }
        }
    }
    s
}

async fn exec_any(c: &mut sqlx::AnyConnection, set: &WriteSet) {
    use sqlx::Row;
    let mut last = 0i64;
    for op in &set.ops {
        let mut q = sqlx::query(op.sql);
        for v in &op.params {
            q = match v {
                Val::Text(s) => q.bind(s.as_str()),
                Val::Int(i) => q.bind(*i),
                Val::NullText => q.bind(None::<String>),
                Val::NullInt => q.bind(None::<i64>),
                Val::LastId => q.bind(last),
            };
        }
        match op.check {
            Check::ReturnsId => last = q.fetch_one(&mut *c).await.unwrap().get("id"),
            Check::OneRow => assert_eq!(q.execute(&mut *c).await.unwrap().rows_affected(), 1),
            _ => {
                q.execute(&mut *c).await.unwrap();
            }
        }
    }
}

fn exec_rusqlite(c: &rusqlite::Connection, set: &WriteSet) {
    let mut last = 0i64;
    for op in &set.ops {
        let mut stmt = c.prepare_cached(op.sql).unwrap();
        let params: Vec<rusqlite::types::Value> = op
            .params
            .iter()
            .map(|v| match v {
                Val::Text(s) => rusqlite::types::Value::Text(s.clone()),
                Val::Int(i) => rusqlite::types::Value::Integer(*i),
                Val::NullText | Val::NullInt => rusqlite::types::Value::Null,
                Val::LastId => rusqlite::types::Value::Integer(last),
            })
            .collect();
        let params = rusqlite::params_from_iter(params);
        match op.check {
            Check::ReturnsId => last = stmt.query_row(params, |r| r.get(0)).unwrap(),
            _ => {
                stmt.execute(params).unwrap();
            }
        }
    }
}

/// Lifecycles/s of a bare sqlx loop: `per_commit` lifecycles per
/// transaction (1: one commit per event).
async fn raw_sqlx(url: &str, sets: &[WriteSet], n: usize, per_commit: usize) -> f64 {
    SqlStore::open(url).await.unwrap().close().await;
    sqlx::any::install_default_drivers();
    let (url, _) = duban_engine::store::sql::parse_url(url);
    let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
    let start = Instant::now();
    if per_commit == 1 {
        for i in 0..n {
            for set in sets {
                let mut tx = c.begin().await.unwrap();
                exec_any(&mut tx, &renumber(set, &format!("r{i}"))).await;
                tx.commit().await.unwrap();
            }
        }
    } else {
        for chunk in (0..n).collect::<Vec<_>>().chunks(per_commit) {
            let mut tx = c.begin().await.unwrap();
            for i in chunk {
                for set in sets {
                    exec_any(&mut tx, &renumber(set, &format!("r{i}"))).await;
                }
            }
            tx.commit().await.unwrap();
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Lifecycles/s of a bare rusqlite loop, 64 lifecycles per commit.
async fn raw_rusqlite(file: &Path, sets: &[WriteSet], n: usize, per_commit: usize) -> f64 {
    SqlStore::open(file.to_str().unwrap())
        .await
        .unwrap()
        .close()
        .await;
    let c = rusqlite::Connection::open(file).unwrap();
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .unwrap();
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(per_commit) {
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        for i in chunk {
            for set in sets {
                exec_rusqlite(&c, &renumber(set, &format!("r{i}")));
            }
        }
        c.execute_batch("COMMIT").unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

// ----- a million timers -----------------------------------------------------

/// A clock whose offset from the system clock can be moved.
struct OffsetClock {
    offset_ms: AtomicI64,
}

impl OffsetClock {
    fn reading(t: DateTime<Utc>) -> Self {
        let c = OffsetClock {
            offset_ms: AtomicI64::new(0),
        };
        c.set(t);
        c
    }
    fn set(&self, t: DateTime<Utc>) {
        self.offset_ms
            .store((t - Utc::now()).num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }
    fn sleep_until<'a>(
        &'a self,
        t: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>> {
        let d = (t - self.now())
            .to_std()
            .unwrap_or_default()
            .max(std::time::Duration::from_millis(5));
        Box::pin(tokio::time::sleep(d))
    }
}

/// The start of a `wait_an_hour` instance named `TPL` whose timer falls due
/// at `due`, as the rows it writes.
async fn timer_set(engine: &Engine<MemoryStore>, due: DateTime<Utc>, n: usize) -> WriteSet {
    let started = due - Duration::hours(1);
    let t: Transition = engine
        .start_once(&format!("TPL{n}"), "wait_an_hour", None, vars(&[]), started)
        .await
        .unwrap()
        .unwrap();
    let mut set = writes::transition(None, &t, started).unwrap();
    // Named `TPL` alone, as `renumber` expects.
    for op in &mut set.ops {
        for v in &mut op.params {
            if let Val::Text(s) = v {
                *s = s.replace(&format!("TPL{n}"), "TPL");
            }
        }
    }
    set
}

/// Writes `count` copies of each `(set, prefix)` on the SQLite `file`.
fn bulk_sqlite(file: &Path, groups: &[(WriteSet, String, usize)]) {
    let c = rusqlite::Connection::open(file).unwrap();
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .unwrap();
    let mut in_tx = 0;
    c.execute_batch("BEGIN").unwrap();
    for (set, prefix, count) in groups {
        for j in 0..*count {
            exec_rusqlite(&c, &renumber(set, &format!("{prefix}_{j}")));
            in_tx += 1;
            if in_tx == 20_000 {
                c.execute_batch("COMMIT; BEGIN").unwrap();
                in_tx = 0;
            }
        }
    }
    c.execute_batch("COMMIT").unwrap();
}

fn peak_rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Lags (ms) between due and applied of the timers applied to instances
/// whose id starts with `prefix`.
fn lags(file: &Path, prefix: &str) -> Vec<i64> {
    let c = rusqlite::Connection::open(file).unwrap();
    let mut stmt = c
        .prepare("SELECT at - due FROM history WHERE what = 'timer' AND instance LIKE ?1")
        .unwrap();
    let mut v: Vec<i64> = stmt
        .query_map([format!("{prefix}%")], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    v.sort();
    v
}

/// Runs `serve` over `engine` with `clock` until `done` holds for a report.
async fn serve_until<S: Store>(
    engine: &Arc<Engine<S>>,
    clock: &OffsetClock,
    owner: &str,
    done: impl Fn(&Report) -> bool,
) -> Report {
    let (tx, mut rx) = watch::channel(Report::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let options = Options {
        scheduler: duban_engine::scheduler::SchedulerOptions {
            owner: owner.into(),
            ..Default::default()
        },
        poll: Duration::milliseconds(200),
        sole_owner: true,
        ..Default::default()
    };
    let server = serve::run(
        engine.clone(),
        &[],
        &options,
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
    let ((), r) = tokio::join!(server, driver);
    r
}

struct TimerFigures {
    pending: usize,
    stream_rate: f64,
    stream_p50: i64,
    stream_p99: i64,
    burst_rate: f64,
    burst_p99: i64,
    peak_rss_mb: f64,
    restart_ms: f64,
    setup_s: f64,
}

async fn timers(dir: &Path, pending: usize) -> TimerFigures {
    let file = dir.join("timers.db");
    let url = file.to_str().unwrap().to_string();
    let setup = Instant::now();
    let engine = engine_on(SqlStore::open(&url).await.unwrap()).await;
    engine.store().close().await;
    let templates = engine_on(MemoryStore::new()).await;
    let d0 = at("2027-01-04T09:00:00+08:00");
    let stream = (pending / 5).max(1);
    let burst = stream;
    let backlog = pending - stream - burst;
    // The stream: due at 20,000 a second from d0, in 10 ms slots.
    let slot_ms = 10;
    let per_slot = 200;
    let slots = stream.div_ceil(per_slot);
    let mut groups = Vec::new();
    for k in 0..slots {
        let due = d0 + Duration::milliseconds((k * slot_ms) as i64);
        let count = per_slot.min(stream - k * per_slot);
        groups.push((timer_set(&templates, due, k).await, format!("s{k}"), count));
    }
    let d1 = d0 + Duration::seconds(60);
    groups.push((timer_set(&templates, d1, slots).await, "b".into(), burst));
    let d2 = d0 + Duration::days(365);
    groups.push((
        timer_set(&templates, d2, slots + 1).await,
        "y".into(),
        backlog,
    ));
    bulk_sqlite(&file, &groups);
    let setup_s = setup.elapsed().as_secs_f64();
    println!("timers: {pending} pending timers written in {setup_s:.1} s");

    let engine = engine_on(SqlStore::open(&url).await.unwrap()).await;
    reset_peak_rss();
    let rss_before = peak_rss_kb();
    // The stream.
    let clock = OffsetClock::reading(d0 - Duration::seconds(1));
    let r = serve_until(&engine, &clock, "bench", |r| r.fired >= stream).await;
    let first = d0;
    let last_due = d0 + Duration::milliseconds(((slots - 1) * slot_ms) as i64);
    let stream_lags = lags(&file, "s");
    let stream_p50 = percentile(&stream_lags, 0.5);
    let stream_p99 = percentile(&stream_lags, 0.99);
    let span = (last_due - first).num_milliseconds() as f64 / 1000.0
        + *stream_lags.last().unwrap_or(&0) as f64 / 1000.0;
    let stream_rate = r.fired as f64 / span;
    println!(
        "timers: stream of {stream} due at 20,000/s: applied {} at {stream_rate:.0}/s; lag p50 {stream_p50} ms, p99 {stream_p99} ms, max {} ms",
        r.fired,
        stream_lags.last().unwrap_or(&0)
    );
    // The burst: all due at once.
    clock.set(d1);
    let start = Instant::now();
    let r = serve_until(&engine, &clock, "bench", |r| r.fired >= burst).await;
    let burst_rate = r.fired as f64 / start.elapsed().as_secs_f64();
    let burst_lags = lags(&file, "b");
    let burst_p99 = percentile(&burst_lags, 0.99);
    let peak_rss_mb = peak_rss_kb() as f64 / 1024.0;
    println!(
        "timers: burst of {burst} due at once: {burst_rate:.0} applied/s; lag p99 {burst_p99} ms; peak RSS {peak_rss_mb:.0} MB (before: {} MB); {backlog} still pending",
        rss_before / 1024
    );
    engine.store().close().await;
    drop(engine);
    // A restart with the year's backlog due: from opening the store to the
    // first timer applied (its history line's instant, on the same clock).
    let begun = d2 + Duration::seconds(1);
    let clock = OffsetClock::reading(begun);
    let engine = engine_on_existing(&url).await;
    let reader = rusqlite::Connection::open(&file).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let options = Options {
        scheduler: duban_engine::scheduler::SchedulerOptions {
            owner: "restarted".into(),
            ..Default::default()
        },
        poll: Duration::milliseconds(200),
        sole_owner: true,
        ..Default::default()
    };
    let server = serve::run(
        engine.clone(),
        &[],
        &options,
        &clock,
        async {
            let _ = stop_rx.await;
        },
        None,
    );
    let watcher = async {
        loop {
            let first: Option<i64> = reader
                .query_row(
                    "SELECT MIN(at) FROM history WHERE what = 'timer' AND instance LIKE 'y%'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            if let Some(first) = first {
                stop_tx.send(()).unwrap();
                return first - begun.timestamp_millis();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let ((), first_ms) = tokio::join!(server, watcher);
    let restart_ms = first_ms as f64;
    println!("timers: restart with {backlog} due: first applied {restart_ms:.0} ms after the store was opened");
    engine.store().close().await;
    TimerFigures {
        pending,
        stream_rate,
        stream_p50,
        stream_p99,
        burst_rate,
        burst_p99,
        peak_rss_mb,
        restart_ms,
        setup_s,
    }
}

/// The engine over a store as `serve` opens it: nothing deployed again.
async fn engine_on_existing(url: &str) -> Arc<Engine<SqlStore>> {
    Arc::new(
        Engine::new(SqlStore::open(url).await.unwrap(), Calendar::builtin())
            .await
            .unwrap(),
    )
}

// ----- PostgreSQL: 1 and 3 processes ---------------------------------------

/// The child: serve on `DUBAN_BENCH_URL` until no timer is left.
async fn drain_child() {
    let url = std::env::var("DUBAN_BENCH_URL").unwrap();
    let owner = std::env::var("DUBAN_BENCH_OWNER").unwrap();
    let now = at(&std::env::var("DUBAN_BENCH_CLOCK").unwrap());
    let engine = engine_on_existing(&url).await;
    let clock = OffsetClock::reading(now);
    let (tx, mut rx) = watch::channel(Report::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let options = Options {
        scheduler: duban_engine::scheduler::SchedulerOptions {
            owner,
            ..Default::default()
        },
        poll: Duration::milliseconds(100),
        ..Default::default()
    };
    let server = serve::run(
        engine.clone(),
        &[],
        &options,
        &clock,
        async {
            let _ = stop_rx.await;
        },
        Some(&tx),
    );
    let store = engine.store().clone();
    let watcher = async {
        loop {
            rx.changed().await.unwrap();
            if store.pending_count().await == 0 {
                break;
            }
        }
        let fired = rx.borrow().fired;
        stop_tx.send(()).unwrap();
        fired
    };
    let ((), fired) = tokio::join!(server, watcher);
    println!("fired={fired}");
}

trait Pending {
    async fn pending_count(&self) -> i64;
}

impl Pending for SqlStore {
    async fn pending_count(&self) -> i64 {
        let s = self.stats(Utc::now()).await.unwrap();
        s.timers as i64
    }
}

async fn pg_drain(processes: usize, timers: usize) -> Option<(f64, bool)> {
    let url = fresh_pg(&format!("drain{processes}")).await?;
    let engine = engine_on(SqlStore::open(&url).await.unwrap()).await;
    engine.store().close().await;
    let templates = engine_on(MemoryStore::new()).await;
    let due = at("2027-01-04T09:00:00+08:00");
    let set = timer_set(&templates, due, 0).await;
    {
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
        for chunk in (0..timers).collect::<Vec<_>>().chunks(1000) {
            let mut tx = c.begin().await.unwrap();
            for j in chunk {
                exec_any(&mut tx, &renumber(&set, &format!("p{j}"))).await;
            }
            tx.commit().await.unwrap();
        }
    }
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let children: Vec<_> = (0..processes)
        .map(|i| {
            std::process::Command::new(&exe)
                .env("DUBAN_BENCH_CHILD", "drain")
                .env("DUBAN_BENCH_URL", &url)
                .env("DUBAN_BENCH_OWNER", format!("bench-{i}"))
                .env(
                    "DUBAN_BENCH_CLOCK",
                    (due + Duration::seconds(1)).to_rfc3339(),
                )
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut fired = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        fired.push(text.trim().to_string());
    }
    let rate = timers as f64 / start.elapsed().as_secs_f64();
    // Exactly once: one timer line per instance, every instance ended.
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    use sqlx::Row;
    let row = sqlx::query(
        "SELECT COUNT(*) AS lines, COUNT(DISTINCT instance) AS instances FROM history WHERE what = 'timer'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    let lines: i64 = row.get("lines");
    let distinct: i64 = row.get("instances");
    let ended: i64 = sqlx::query("SELECT COUNT(*) AS n FROM instances WHERE status = 'completed'")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get("n");
    let once = lines == timers as i64 && distinct == timers as i64 && ended == timers as i64;
    println!(
        "postgres: {timers} due timers drained by {processes} process(es) in {:.2} s: {rate:.0} applied/s; per process {}; exactly once: {once} ({lines} lines, {distinct} instances, {ended} ended)",
        start.elapsed().as_secs_f64(),
        fired.join(" ")
    );
    drop(c);
    drop_pg(&url).await;
    Some((rate, once))
}

// ----- peers ----------------------------------------------------------------

fn peers(n: usize) -> Vec<(String, String, f64)> {
    let run = duban_tests::root().join("bench/peers/run");
    let out = match std::process::Command::new(&run)
        .env("PEER_N", n.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            println!("peers: not run ({}: {e})", run.display());
            return Vec::new();
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = Vec::new();
    for line in text.lines() {
        println!("{line}");
        let f: BTreeMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        if let (Some(p), Some(v), Some(r)) = (f.get("peer"), f.get("version"), f.get("rate")) {
            rows.push((p.to_string(), v.to_string(), r.parse().unwrap_or(0.0)));
        }
    }
    rows
}

// ----- main -----------------------------------------------------------------

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var("DUBAN_BENCH_CHILD").as_deref() == Ok("drain") {
        drain_child().await;
        return;
    }
    let parts = std::env::var("DUBAN_BENCH_PARTS")
        .unwrap_or_else(|_| "lifecycle,raw,timers,pg,peers".into());
    let want = |p: &str| parts.split(',').any(|x| x.trim() == p);
    let n = env("DUBAN_BENCH_N", 4000);
    let callers: Vec<usize> = std::env::var("DUBAN_BENCH_CALLERS")
        .unwrap_or_else(|_| "1,16,64,256".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let tmp = tempfile::tempdir_in(std::env::var("DUBAN_BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .unwrap();
    let mut summary: Vec<String> = Vec::new();
    let mut best_sqlite: f64 = 0.0;
    let mut raw_batched: f64 = 0.0;

    if want("lifecycle") {
        for &c in &callers {
            let file = tmp.path().join(format!("life{c}.db"));
            let r = lifecycles(file.to_str().unwrap(), c, n).await;
            let _ = std::fs::remove_file(&file);
            best_sqlite = best_sqlite.max(r);
            println!("lifecycle: sqlite, {c} callers, {n} lifecycles: {r:.0} lifecycles/s");
            summary.push(format!("| duban, SQLite (durable), {c} callers | {r:.0} |"));
        }
        for &c in &callers {
            match fresh_pg(&format!("life{c}")).await {
                Some(url) => {
                    let r = lifecycles(&url, c, n).await;
                    drop_pg(&url).await;
                    println!(
                        "lifecycle: postgres, {c} callers, {n} lifecycles: {r:.0} lifecycles/s"
                    );
                    summary.push(format!("| duban, PostgreSQL, {c} callers | {r:.0} |"));
                }
                None => println!("lifecycle: postgres skipped (unreachable)"),
            }
        }
    }
    if want("raw") {
        let sets = lifecycle_sets().await;
        let rows: usize = sets.iter().map(|s| s.ops.len()).sum();
        let bytes: usize = sets
            .iter()
            .flat_map(|s| &s.ops)
            .flat_map(|o| &o.params)
            .map(|v| match v {
                Val::Text(t) => t.len(),
                _ => 8,
            })
            .sum();
        println!(
            "raw: one lifecycle is {} events, {rows} statements, {bytes} bytes of parameters",
            sets.len()
        );
        if std::env::var("DUBAN_BENCH_SHOW_STATE").is_ok() {
            println!("{:?}", sets[2].ops[0].params[0]);
        }
        let f = tmp.path().join("raw1.db");
        let one = raw_sqlx(f.to_str().unwrap(), &sets, n / 4, 1).await;
        let f = tmp.path().join("raw64.db");
        let batched = raw_sqlx(f.to_str().unwrap(), &sets, n, 64).await;
        let f = tmp.path().join("rawrq.db");
        let rq = raw_rusqlite(&f, &sets, n, 64).await;
        raw_batched = batched.max(rq);
        println!("raw: sqlite, bare sqlx loop, one commit per event: {one:.0} lifecycles/s; 64 lifecycles per commit: {batched:.0}; bare rusqlite, 64 per commit: {rq:.0}");
        summary.push(format!(
            "| bare sqlx loop, SQLite, one commit per event | {one:.0} |"
        ));
        summary.push(format!(
            "| bare sqlx loop, SQLite, 64 lifecycles per commit | {batched:.0} |"
        ));
        summary.push(format!(
            "| bare rusqlite loop, SQLite, 64 lifecycles per commit | {rq:.0} |"
        ));
        if let Some(url) = fresh_pg("raw").await {
            let one = raw_sqlx(&url, &sets, n / 4, 1).await;
            drop_pg(&url).await;
            let url = fresh_pg("raw64").await.unwrap();
            let batched = raw_sqlx(&url, &sets, n, 64).await;
            drop_pg(&url).await;
            println!("raw: postgres, bare sqlx loop, one commit per event: {one:.0} lifecycles/s; 64 per commit: {batched:.0}");
            summary.push(format!(
                "| bare sqlx loop, PostgreSQL, one commit per event | {one:.0} |"
            ));
            summary.push(format!(
                "| bare sqlx loop, PostgreSQL, 64 lifecycles per commit | {batched:.0} |"
            ));
        }
    }
    let mut best_peer = (String::new(), 0.0f64);
    if want("peers") {
        for (p, v, r) in peers(n) {
            summary.push(format!("| {p} {v}, in memory, 1 caller | {r:.0} |"));
            if r > best_peer.1 {
                best_peer = (format!("{p} {v}"), r);
            }
        }
    }
    if want("timers") {
        let t = timers(tmp.path(), env("DUBAN_BENCH_TIMERS", 1_000_000)).await;
        summary.push(format!(
            "| {} pending timers: stream at 20,000/s applied at | {:.0}/s, lag p50 {} ms, p99 {} ms |",
            t.pending, t.stream_rate, t.stream_p50, t.stream_p99
        ));
        summary.push(format!(
            "| burst due at once | {:.0} applied/s, lag p99 {} ms |",
            t.burst_rate, t.burst_p99
        ));
        summary.push(format!(
            "| peak RSS during the drain | {:.0} MB |",
            t.peak_rss_mb
        ));
        summary.push(format!(
            "| restart to the first applied timer | {:.0} ms |",
            t.restart_ms
        ));
        println!("timers: setup took {:.1} s", t.setup_s);
    }
    if want("pg") {
        let m = env("DUBAN_BENCH_PG_TIMERS", 30_000);
        for p in [1, 3] {
            if let Some((rate, once)) = pg_drain(p, m).await {
                summary.push(format!(
                    "| PostgreSQL, {m} due timers, {p} engine process(es) | {rate:.0} applied/s (exactly once: {once}) |"
                ));
            }
        }
    }
    println!("\n| measure | figure |\n|---|---|");
    for s in &summary {
        println!("{s}");
    }
    if best_sqlite > 0.0 && raw_batched > 0.0 {
        println!(
            "| duban SQLite best / batched raw limit | {:.2} |",
            best_sqlite / raw_batched
        );
    }
    if best_sqlite > 0.0 && best_peer.1 > 0.0 {
        println!(
            "| duban SQLite best / best peer ({}) | {:.1}× |",
            best_peer.0,
            best_sqlite / best_peer.1
        );
    }
}
