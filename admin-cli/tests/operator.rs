//! Issue 16: running duban as an operator would — one home folder for
//! everything, a serve that refuses to run nothing, no password in a log,
//! no panic or hang when a reader of its output goes away, and `/metrics`.
//! Each test runs the real binary in a folder of its own.

#[allow(dead_code)] // the helpers other test files use
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{postgres_db, root};

/// `duban ARGS` in folder `cwd`, with none of the `DUBAN_*` settings the
/// caller's environment may hold.
fn duban(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_duban"));
    c.current_dir(cwd)
        .env_remove("DUBAN_DB")
        .env_remove("DUBAN_HOME")
        .env_remove("DUBAN_CALENDAR_DIR")
        .env_remove("DUBAN_CONFIG")
        .env("DUBAN_LOG", "info");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Reads `child`'s stderr until a line contains `marker`; returns what was
/// read and the reader (still open).
fn until(child: &mut Child, marker: &str) -> (String, BufReader<std::process::ChildStderr>) {
    let mut reader = BufReader::new(child.stderr.take().expect("stderr piped"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "serve ended before `{marker}`:\n{seen}");
        seen.push_str(&line);
        if line.contains(marker) {
            return (seen, reader);
        }
    }
}

fn sigterm(child: &Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
}

/// Waits for `child` to exit, at most `limit` (a generous bound: a hang is
/// what is tested, not speed); kills it and fails if it does not.
fn exits_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("serve was still running {limit:?} after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Tried as a new operator: from an empty folder, `--home` pointing at a
/// copy of the repository runs its library on its own store; the store,
/// and nothing else, is written under the home.
#[test]
fn serve_from_an_empty_folder_runs_the_library_of_its_home() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    copy_dir(&root().join("processes"), &home.join("processes"));
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut child = duban(&elsewhere)
        .args([
            "--home",
            home.to_str().unwrap(),
            "serve",
            "--poll-ms",
            "200",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (log, _reader) = until(&mut child, "serving");
    sigterm(&child);
    assert!(exits_within(&mut child, Duration::from_secs(30)).success());
    assert!(log.contains("process=supervision_letter"), "{log}");
    assert!(home.join("duban.db").exists(), "the store is the home's");
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing is written into the working folder"
    );
    // Every command finds the same store through DUBAN_HOME.
    let o = duban(&elsewhere)
        .env("DUBAN_HOME", &home)
        .args(["definitions"])
        .output()
        .unwrap();
    assert!(
        text(&o.stdout).contains("supervision_letter"),
        "{}",
        text(&o.stderr)
    );
}

/// From a folder with no `processes/`, and with `--processes` naming a
/// folder that does not exist, serve refuses to start and says where it
/// looked (it used to log "serving" and run nothing).
#[test]
fn serve_with_nothing_to_run_refuses_and_says_where_it_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let o = duban(tmp.path()).args(["serve"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("no process definitions: none in processes"),
        "{err}"
    );
    assert!(!err.contains("serving"), "{err}");
    let o = duban(tmp.path())
        .args(["serve", "--processes", "/nonexistent/processes"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("no process library at /nonexistent/processes"),
        "{}",
        text(&o.stderr)
    );
}

/// A year installed with `calendar load` in the home is seen from any
/// folder (it used to go to ./calendars of wherever the command ran).
#[test]
fn an_installed_year_is_seen_from_every_folder_of_the_home() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let year = tmp.path().join("2027.yaml");
    std::fs::write(
        &year,
        "year: 2027\nsource: test schedule\nholidays:\n  - name: 春节\n    rest: [2027-02-05..2027-02-12]\n    workdays: [2027-02-14]\n",
    )
    .unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let o = duban(&a)
        .env("DUBAN_HOME", &home)
        .args(["calendar", "load", year.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(home.join("calendars/2027.yaml").exists());
    let o = duban(&b)
        .env("DUBAN_HOME", &home)
        .args(["deadline", "2027-01-31", "10日", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["provisional"], false, "{v}");
    assert_eq!(v["last_day"], "2027-02-14");
}

/// A PostgreSQL URL's password appears in no log line and no error: not in
/// serve's "serving" line (a real server, trust auth, so any password
/// connects), not in the error of a server that cannot be reached.
#[test]
fn a_postgres_password_is_never_printed() {
    let secret = "s3cr3t-pw-9f2";
    let url = postgres_db("redact").replacen("postgres@", &format!("postgres:{secret}@"), 1);
    assert!(url.contains(secret));
    let mut child = duban(&root())
        .args([
            "--db",
            &url,
            "serve",
            "--processes",
            "tests/data/timers",
            "--poll-ms",
            "200",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut log, mut reader) = until(&mut child, "serving");
    sigterm(&child);
    assert!(exits_within(&mut child, Duration::from_secs(30)).success());
    reader.read_to_string(&mut log).unwrap();
    assert!(!log.contains(secret), "{log}");
    assert!(log.contains("postgres:***@127.0.0.1"), "{log}");
    // A server that refuses the connection: the error names the store
    // without its password.
    let o = duban(&root())
        .args([
            "--db",
            &format!("postgres://postgres:{secret}@127.0.0.1:1/nowhere"),
            "definitions",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(!err.contains(secret), "{err}");
    assert!(
        err.contains("postgres://postgres:***@127.0.0.1:1/nowhere"),
        "{err}"
    );
}

/// `duban deadline … | head`: the reader closes the pipe before the
/// command writes; it ends quietly instead of panicking.
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &["deadline", "2026-01-05", "30日", "--json"][..],
        &["deadline", "2026-01-05", "5个工作日"][..],
        &["--help"][..],
    ] {
        let mut child = duban(tmp.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let out: Output = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            out.status.code().is_some_and(|c| c == 0) || out.status.code().is_none(),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}

/// `serve … 2>&1 | head`: once the reader of its log has gone, serve still
/// stops on SIGTERM, every time.
#[test]
fn serve_stops_on_sigterm_after_the_reader_of_its_log_has_gone() {
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let db = tmp.path().join(format!("r{round}.db"));
        let mut child = duban(&root())
            .args(["--db", db.to_str().unwrap()])
            .args([
                "serve",
                "--processes",
                "tests/data/timers",
                "--poll-ms",
                "100",
            ])
            .env("DUBAN_LOG", "debug") // many lines, written after the pipe closed
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (_, reader) = until(&mut child, "serving");
        drop(reader);
        drop(child.stdout.take());
        std::thread::sleep(Duration::from_millis(300));
        sigterm(&child);
        let status = exits_within(&mut child, Duration::from_secs(30));
        assert!(status.success(), "round {round}: {status:?}");
    }
}

/// A free local port (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 GET; the status line and body.
fn get(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of the series `name` (labels included) in `text`.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `[metrics] listen`: `/healthz` says ok and `/metrics` shows the
/// documented series with the store's real counts during a running serve.
#[test]
fn metrics_show_the_documented_series_during_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db");
    let db = db.to_str().unwrap();
    let run = |now: &str, args: &[&str]| {
        let o = duban(&root())
            .args(["--db", db])
            .args(args)
            .env("DUBAN_NOW", now)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    };
    run(
        "2026-01-05T09:00:00+08:00",
        &["deploy", "tests/data/timers"],
    );
    for _ in 0..3 {
        run("2026-01-05T09:00:00+08:00", &["start", "wait_an_hour"]);
    }
    let port = free_port();
    let config = tmp.path().join("duban.toml");
    std::fs::write(
        &config,
        format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let mut child = duban(&root())
        .args(["--db", db, "serve", "--processes", "tests/data/timers"])
        .args(["--config", config.to_str().unwrap()])
        .env("DUBAN_NOW", "2026-01-05T09:30:00+08:00")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (_, _reader) = until(&mut child, "serving");
    let (status, body) = get(port, "/healthz");
    assert!(status.contains("200"), "{status} {body}");
    assert_eq!(body.trim(), "ok");
    let (status, m) = get(port, "/metrics");
    sigterm(&child);
    assert!(exits_within(&mut child, Duration::from_secs(30)).success());
    assert!(status.contains("200"), "{status}\n{m}");
    for help in [
        "# TYPE duban_instances gauge",
        "# TYPE duban_tasks_open gauge",
        "# TYPE duban_tasks_overdue gauge",
        "# TYPE duban_timers_pending gauge",
        "# TYPE duban_timers_due gauge",
        "# TYPE duban_timer_lag_seconds gauge",
        "# TYPE duban_outbox_rows gauge",
        "# TYPE duban_transitions counter",
    ] {
        assert!(m.contains(help), "{help}:\n{m}");
    }
    assert_eq!(
        series(&m, "duban_instances{status=\"running\"}"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        series(&m, "duban_instances{status=\"stuck\"}"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(series(&m, "duban_timers_pending"), Some(3.0), "{m}");
    // Due at 10:00; the clock says 09:30.
    assert_eq!(series(&m, "duban_timers_due"), Some(0.0), "{m}");
    assert_eq!(series(&m, "duban_timer_lag_seconds"), Some(0.0), "{m}");
    assert_eq!(series(&m, "duban_tasks_open"), Some(0.0), "{m}");
    assert!(series(&m, "duban_transitions_total").is_some(), "{m}");
}

/// The lock `serve` keeps beside a SQLite store is not something to commit
/// (it was left untracked in every clone that served).
#[test]
fn the_serve_lock_is_ignored_by_git() {
    let o = Command::new("git")
        .args([
            "check-ignore",
            "-q",
            "duban.db.serve-lock",
            "processes/duban.db.serve-lock",
        ])
        .current_dir(root())
        .output();
    match o {
        Ok(o) if o.status.code() == Some(128) => eprintln!("not a git checkout: nothing to check"),
        Ok(o) => assert!(o.status.success(), "{}", text(&o.stderr)),
        Err(e) => eprintln!("no git ({e}): nothing to check"),
    }
}

/// `config check` without a file names the file it looked for.
#[test]
fn config_check_names_the_file_it_looked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let o = duban(tmp.path())
        .args(["--home", tmp.path().to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let want = format!("no {} (defaults)", tmp.path().join("duban.toml").display());
    assert!(text(&o.stdout).contains(&want), "{}", text(&o.stdout));
}
