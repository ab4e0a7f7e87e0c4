//! What the portal's tests share: the repository root, instants, an engine
//! on a fresh SQLite file with the sample directory, and the test's links.

#![allow(dead_code)]

use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use duban_engine::calendar::Calendar;
use duban_engine::service::Engine;
use duban_engine::store::SqlStore;
use duban_notifiers::links::SignedLinks;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// An engine on a new SQLite file in `dir`, with `tests/data/directory.yaml`.
pub async fn engine_in(dir: &tempfile::TempDir) -> Engine<SqlStore> {
    let store = SqlStore::open(dir.path().join("duban.db").to_str().unwrap())
        .await
        .unwrap();
    let engine = Engine::new(store, Calendar::builtin()).await.unwrap();
    let text = std::fs::read_to_string(root().join("tests/data/directory.yaml")).unwrap();
    engine
        .import_directory(duban_engine::store::directory::parse(&text, false).unwrap())
        .await
        .unwrap();
    engine
}

/// Links under `https://duban.example`, key `k1`, working 60 days.
pub fn links() -> SignedLinks {
    SignedLinks::new(
        "https://duban.example",
        "k1",
        [(
            "k1".to_string(),
            b"0123456789abcdef0123456789abcdef".to_vec(),
        )]
        .into(),
        Duration::days(60),
    )
    .unwrap()
}
