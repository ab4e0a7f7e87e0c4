//! Throughput, measured (never asserted): whole supervision-letter
//! lifecycles through the engine, then the outbox they wrote drained by the
//! dispatcher, on SQLite and (when reachable) PostgreSQL.
//!
//! `cargo bench -p duban-tests --bench lifecycle` (`DUBAN_BENCH_N`
//! lifecycles, default 2000; `DUBAN_BENCH_WORKERS` concurrent callers,
//! default 4). A lifecycle is five events, each its own transaction: start,
//! the letter issued, the notice received, the agency's report, the review
//! closing the case. Then email through a real local SMTP server
//! (aiosmtpd, when installed): `DUBAN_BENCH_EMAILS` rows (default 3000)
//! delivered by the pooled, concurrent notifier (`DUBAN_BENCH_CONNECTIONS`,
//! default 8). Figures go to stdout; nothing fails on a slow machine.

use duban_engine::store::OutboxKind;
use duban_engine::store::OutboxStatus;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use duban_engine::calendar::Calendar;
use duban_engine::runtime::Event;
use duban_engine::service::Engine;
use duban_engine::store::{directory, SqlStore, Store};
use duban_notifiers::dispatch::{Dispatcher, Policy};
use duban_notifiers::links::NoPortal;
use duban_notifiers::{Message, Notifier, SendError};
use serde_json::{json, Value as Json};
use sqlx::Connection;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn vars(pairs: &[(&str, Json)]) -> BTreeMap<String, Json> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Accepts everything: measures the outbox, not a mail server.
struct Sink;

impl Notifier for Sink {
    fn kind(&self) -> OutboxKind {
        OutboxKind::Email
    }
    async fn send(&self, _: &Message) -> Result<(), SendError> {
        Ok(())
    }
}

async fn setup(url: &str) -> Arc<Engine<SqlStore>> {
    let store = SqlStore::open(url).await.unwrap();
    let engine = Engine::new(store, Calendar::builtin()).await.unwrap();
    let root = duban_tests::root();
    let text = std::fs::read_to_string(root.join("tests/data/directory.yaml")).unwrap();
    engine
        .import_directory(directory::parse(&text, false).unwrap())
        .await
        .unwrap();
    engine
        .deploy(&[root.join("processes")], at("2025-09-01T09:00:00+08:00"))
        .await
        .unwrap();
    Arc::new(engine)
}

async fn task(engine: &Engine<SqlStore>, id: &str, step: &str) -> String {
    let s = engine.store().load(id).await.unwrap().unwrap();
    let t = s.open_tasks().find(|t| t.step == step).unwrap();
    t.id.clone()
}

async fn lifecycle(engine: &Engine<SqlStore>, n: usize) {
    let t0 = at("2025-09-26T10:00:00+08:00");
    let id = engine
        .start(
            "supervision_letter",
            None,
            vars(&[
                ("agency", json!("market_bureau")),
                ("case_no", json!(format!("许司督〔2025〕{n}号"))),
                ("problem", json!("未落实行政执法公示制度")),
            ]),
            "li",
            t0,
        )
        .await
        .unwrap()
        .state
        .id;
    let draft = task(engine, &id, "draft_letter").await;
    let letter = vars(&[
        ("letter_kind", json!("督办函")),
        ("reply_period", json!("30日")),
    ]);
    engine
        .complete(&draft, "issue", letter, "li", t0)
        .await
        .unwrap();
    let notice = task(engine, &id, "await_report").await;
    let received = Event::Receive {
        task: notice.clone(),
        actor: "market_bureau".into(),
    };
    engine
        .apply(&id, &received, t0 + Duration::hours(1))
        .await
        .unwrap();
    let report = vars(&[("handling_report", json!("已整改"))]);
    engine
        .complete(
            &notice,
            "handled",
            report,
            "market_bureau",
            t0 + Duration::days(3),
        )
        .await
        .unwrap();
    let review = task(engine, &id, "review_report").await;
    let opinion = vars(&[("review_opinion", json!("已改正"))]);
    engine
        .complete(&review, "accepted", opinion, "li", t0 + Duration::days(4))
        .await
        .unwrap();
}

async fn run(name: &str, url: &str, n: usize, workers: usize) {
    let engine = setup(url).await;
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let engine = engine.clone();
        handles.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                lifecycle(&engine, i).await;
                i += workers;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let rows = engine
        .store()
        .outbox(Some(OutboxStatus::Pending))
        .await
        .unwrap();
    let email = rows.iter().filter(|r| r.kind == OutboxKind::Email).count();
    println!(
        "{name}: {n} lifecycles ({} events) with {workers} workers in {secs:.2} s: {:.0} lifecycles/s, {:.0} events/s; {} outbox rows written",
        n * 5,
        n as f64 / secs,
        (n * 5) as f64 / secs,
        rows.len(),
    );
    let d = Dispatcher::new(engine.clone(), Sink, NoPortal, Policy::default());
    let start = Instant::now();
    let r = d
        .dispatch_due(at("2025-10-01T09:00:00+08:00"))
        .await
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(r.sent, email);
    println!(
        "{name}: dispatched {} email rows (claim, render, record) in {secs:.2} s: {:.0} rows/s",
        r.sent,
        r.sent as f64 / secs
    );
    engine.store().close().await;
}

/// Email through aiosmtpd on this machine: how many rows a second one
/// process delivers with its pooled connections.
async fn email(n: usize, connections: u32) {
    use duban_notifiers::email::{EmailNotifier, SmtpConfig, Tls};
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Ok(mut smtp) = std::process::Command::new("/usr/bin/python3")
        .args(["-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        println!("email: skipped (no python3)");
        return;
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed().as_secs() > 20 {
            println!("email: skipped (aiosmtpd did not start)");
            let _ = smtp.kill();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let file = tmp.path().join("email.db");
    let engine = setup(file.to_str().unwrap()).await;
    let t0 = at("2026-01-05T09:00:00+08:00");
    engine
        .deploy(&[duban_tests::root().join("tests/data/mailer")], t0)
        .await
        .unwrap();
    for _ in 0..n {
        engine
            .start("mail_only", None, vars(&[]), "li", t0)
            .await
            .unwrap();
    }
    let notifier = EmailNotifier::new(&SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: Tls::None,
        username: None,
        password: None,
        from: "督办系统 <duban@sfj.example.org>".into(),
        domain: "sfj.example.org".into(),
        timeout: SmtpConfig::TIMEOUT,
        connections,
    })
    .unwrap();
    let d = Dispatcher::new(engine.clone(), notifier, NoPortal, Policy::default());
    let start = Instant::now();
    let r = d.dispatch_due(t0 + Duration::minutes(1)).await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "email: {} rows delivered to aiosmtpd with {connections} pooled connections in {secs:.2} s: {:.0} emails/s ({} retried, {} dead)",
        r.sent,
        r.sent as f64 / secs,
        r.retried,
        r.dead
    );
    engine.store().close().await;
    let _ = smtp.kill();
    let _ = smtp.wait();
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env("DUBAN_BENCH_N", 2000);
    let workers = env("DUBAN_BENCH_WORKERS", 4);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bench.db");
    run("sqlite", file.to_str().unwrap(), n, workers).await;
    email(
        env("DUBAN_BENCH_EMAILS", 3000),
        env("DUBAN_BENCH_CONNECTIONS", 8) as u32,
    )
    .await;

    let server = std::env::var("DUBAN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("duban_bench_{}", std::process::id());
    match sqlx::PgConnection::connect(&server).await {
        Ok(mut admin) => {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .unwrap();
            let url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
            run("postgres", &url, n, workers).await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
        }
        Err(e) => println!("postgres: skipped ({server}: {e})"),
    }
}
