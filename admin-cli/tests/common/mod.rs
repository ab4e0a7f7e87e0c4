//! Helpers shared by the binary's test files.

use std::path::PathBuf;
use std::process::Command;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh PostgreSQL database for one test, made with psql on
/// `DUBAN_TEST_POSTGRES` (default: the local server's `test` database).
pub fn postgres_db(tag: &str) -> String {
    let base = std::env::var("DUBAN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("duban_cli_{tag}_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        let o = Command::new("psql")
            .args([base.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", &sql])
            .output()
            .expect("psql runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    format!("{}/{name}", base.rsplit_once('/').unwrap().0)
}
