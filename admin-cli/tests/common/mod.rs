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

/// Runs `duban ARGS` on store `db` at `now` with calendar folder `cal`,
/// asserting success; returns stdout.
pub fn duban_at(db: &str, cal: &std::path::Path, now: &str, args: &[&str]) -> String {
    let o = duban_output(db, cal, now, args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{args:?}:\nstdout:\n{out}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Runs `duban ARGS` on store `db` at `now` with calendar folder `cal`.
pub fn duban_output(
    db: &str,
    cal: &std::path::Path,
    now: &str,
    args: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_duban"))
        .args(args)
        .current_dir(root())
        .env("DUBAN_DB", db)
        .env("DUBAN_NOW", now)
        .env("DUBAN_CALENDAR_DIR", cal)
        .output()
        .expect("duban runs")
}

/// Instance 1 of `db`: a supervision letter whose notice 1.2 was received
/// on 2026-12-02 with 30日 to answer, so its last day, 2027-01-01, is
/// counted without a 2027 schedule (provisional). Returns `receive`'s output.
pub fn provisional_letter(db: &str, cal: &std::path::Path) -> String {
    let t = "2026-12-01T10:00:00+08:00";
    duban_at(db, cal, t, &["deploy", "processes/"]);
    duban_at(
        db,
        cal,
        t,
        &["directory", "import", "tests/data/directory.yaml"],
    );
    duban_at(
        db,
        cal,
        t,
        &[
            "start",
            "supervision_letter",
            "--var",
            "agency=market_bureau",
            "--var",
            "case_no=1",
            "--var",
            "problem=x",
        ],
    );
    duban_at(
        db,
        cal,
        t,
        &[
            "complete",
            "1.1",
            "--outcome",
            "issue",
            "--var",
            "letter_kind=督办函",
            "--var",
            "reply_period=30日",
            "--as",
            "li",
        ],
    );
    duban_at(
        db,
        cal,
        "2026-12-02T10:00:00+08:00",
        &["receive", "1.2", "--as", "market_bureau"],
    )
}
