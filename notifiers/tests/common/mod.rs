//! What the notifier tests share: an engine on a fresh SQLite file with the
//! process library and the sample directory, and a supervision letter to
//! drive through it.

#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use duban_engine::calendar::Calendar;
use duban_engine::service::Engine;
use duban_engine::store::{directory, OutboxRow, SqlStore, Store};
use serde_json::{json, Value};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn vars(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// An engine on `dir/duban.db`, the library deployed, the sample directory imported.
pub async fn engine(dir: &Path) -> Arc<Engine<SqlStore>> {
    let store = SqlStore::open(dir.join("duban.db").to_str().unwrap())
        .await
        .unwrap();
    let engine = Engine::new(store, Calendar::builtin()).await.unwrap();
    let text = std::fs::read_to_string(root().join("tests/data/directory.yaml")).unwrap();
    engine
        .import_directory(directory::parse(&text, false).unwrap())
        .await
        .unwrap();
    engine
        .deploy(&[root().join("processes")], at("2025-09-01T09:00:00+08:00"))
        .await
        .unwrap();
    Arc::new(engine)
}

/// Starts a supervision letter to 许昌市市场监督管理局: its first task
/// (起草并制发督办文书) opens for 李明.
pub async fn start_letter(
    engine: &Engine<SqlStore>,
    profile: Option<&str>,
    case: &str,
    now: &str,
) -> String {
    let v = vars(&[
        ("agency", json!("market_bureau")),
        ("case_no", json!(case)),
        ("problem", json!("未落实行政执法公示制度")),
    ]);
    engine
        .start("supervision_letter", profile, v, "li", at(now))
        .await
        .unwrap()
        .state
        .id
}

/// The open task of `step` in instance `id`.
pub async fn open_task(engine: &Engine<SqlStore>, id: &str, step: &str) -> String {
    let s = engine.store().load(id).await.unwrap().unwrap();
    let t = s.open_tasks().find(|t| t.step == step).unwrap();
    t.id.clone()
}

/// Issues the 督办函 of letter `id` with `reply_period`: the notice goes out.
pub async fn issue(engine: &Engine<SqlStore>, id: &str, reply_period: &str, now: &str) {
    let task = open_task(engine, id, "draft_letter").await;
    let v = vars(&[
        ("letter_kind", json!("督办函")),
        ("reply_period", json!(reply_period)),
    ]);
    engine
        .complete(&task, "issue", v, "li", at(now))
        .await
        .unwrap();
}

/// The outbox rows of `kind` with `status`.
pub async fn rows(engine: &Engine<SqlStore>, status: &str, kind: &str) -> Vec<OutboxRow> {
    let (status, kind) = (
        duban_engine::store::OutboxStatus::parse(status).expect("a status"),
        duban_engine::store::OutboxKind::parse(kind).expect("a kind"),
    );
    engine
        .store()
        .outbox(Some(status))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == kind)
        .collect()
}

/// A port nothing listens on now.
/// Never the same port twice in one test binary: a test that stops its
/// server and starts it again on its port must not find another test's
/// server there (the operating system hands a freed port out again).
pub fn free_port() -> u16 {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap();
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !taken.contains(&port) {
            taken.push(port);
            return port;
        }
    }
}

/// Waits (at most 20 s) until a server listens on `port`.
pub fn wait_for_port(port: u16) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "aiosmtpd did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
