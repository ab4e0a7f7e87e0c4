//! The harness of the reliability suite: the chaos clock, the SMTP sink,
//! `serve` processes, the load, and the checks read from the database.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use duban_engine::calendar::Calendar;
use duban_engine::runtime::HistoryKind;
use duban_engine::service::Engine;
use duban_engine::store::{directory, OutboxKind, OutboxStatus, SqlStore, Store};

use crate::common::{duban_output, root};

/// A folder for a run's logs, SMTP sink and configuration; kept, and
/// named, when `DUBAN_CHAOS_KEEP` is set.
pub fn scratch(tag: &str) -> tempfile::TempDir {
    let mut tmp = tempfile::tempdir().unwrap();
    if std::env::var_os("DUBAN_CHAOS_KEEP").is_some() {
        eprintln!("{tag}: logs kept in {}", tmp.path().display());
        tmp.disable_cleanup(true);
    }
    tmp
}

/// A size from the environment, or its default.
pub fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: enough randomness for kill moments, replayable by seed.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let seed = std::env::var("DUBAN_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("DUBAN_CHAOS_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One clock for every process of a run: `start` plus the real time
/// elapsed, moved on by hand only forward ([`ChaosClock::skip`]).
pub struct ChaosClock {
    pub start: DateTime<Utc>,
    pub real: Instant,
    pub skipped: Mutex<Duration>,
}

impl ChaosClock {
    pub fn new(start: DateTime<Utc>) -> ChaosClock {
        ChaosClock {
            start,
            real: Instant::now(),
            skipped: Mutex::new(Duration::zero()),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.start
            + Duration::from_std(self.real.elapsed()).unwrap()
            + *self.skipped.lock().unwrap()
    }

    pub fn text(&self) -> String {
        self.now().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Moves the clock forward by `d`: for processes started afterwards.
    pub fn skip(&self, d: Duration) {
        *self.skipped.lock().unwrap() += d;
    }
}

/// A Monday, 10:00 in Shanghai.
pub fn c0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-05T10:00:00+08:00")
        .unwrap()
        .with_timezone(&Utc)
}

pub const DOMAIN: &str = "sfj.example.org";

/// aiosmtpd on a free port that appends each message's Message-ID to a
/// file, one per line, and answers at once.
pub struct Sink {
    pub child: Child,
    pub port: u16,
    pub file: PathBuf,
}

impl Sink {
    pub fn start(file: &Path) -> Sink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("/usr/bin/python3")
            .arg(root().join("tests/data/smtp_sink.py"))
            .args([&port.to_string(), file.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3-aiosmtpd is installed");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < StdDuration::from_secs(30),
                "the SMTP sink did not start"
            );
            std::thread::sleep(StdDuration::from_millis(50));
        }
        Sink {
            child,
            port,
            file: file.to_path_buf(),
        }
    }

    /// The Message-IDs received, in order, duplicates included.
    pub fn received(&self) -> Vec<String> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `duban.toml` for the sink: plain SMTP, quick retries.
pub fn config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("duban.toml");
    std::fs::write(
        &path,
        format!(
            "[email]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             from = \"督办系统 <duban@{DOMAIN}>\"\ntimeout_secs = 5\nconnections = 4\n\n\
             [outbox]\nfirst_retry_secs = 1\nmax_retry_secs = 2\nmax_attempts = 1000\n"
        ),
    )
    .unwrap();
    path
}

/// A running `duban serve`, its stderr appended to `log`.
pub struct Serve {
    pub child: Child,
    pub log: PathBuf,
    /// How many `serving` lines the log held before this start.
    pub before: usize,
}

/// The `serving` lines of a log (one per start that got that far).
fn servings(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("serving")
        .count()
}

impl Serve {
    pub fn start(db: &str, now: &str, config: &Path, log: &Path) -> Serve {
        let before = servings(log);
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_duban"))
            .args(["serve", "--processes", "tests/data/chaos"])
            .args(["--poll-ms", "200", "--batch", "50", "--grace-secs", "5"])
            .arg("--config")
            .arg(config)
            .current_dir(root())
            .env("DUBAN_DB", db)
            .env("DUBAN_NOW", now)
            .env("DUBAN_CALENDAR_DIR", no_calendars())
            .env("DUBAN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("duban serve starts");
        Serve {
            child,
            log: log.to_path_buf(),
            before,
        }
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM: `serve` must stop by itself, with exit code 0.
    pub fn stop(mut self) {
        // A SIGTERM that arrives before `serve` has installed its handlers
        // (a start just before the end of the window, on a loaded machine)
        // kills it by the default action, which is no test of shutdown:
        // wait until it says `serving`, which it logs after installing them.
        let began = std::time::Instant::now();
        while servings(&self.log) <= self.before
            && began.elapsed() < std::time::Duration::from_secs(60)
            && self.child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(0),
            "serve did not stop cleanly; its log: {}",
            self.log.display()
        );
    }
}

/// Runs `duban ARGS` at the chaos clock's instant.
pub fn cli(db: &str, clock: &ChaosClock, args: &[&str]) -> std::process::Output {
    duban_output(db, &no_calendars(), &clock.text(), args)
}

/// An empty calendar folder: the built-in schedules only.
pub fn no_calendars() -> PathBuf {
    root().join("target/no-installed-calendars")
}

/// The id in `started 12 (mail_only v1)`.
pub fn started_id(out: &std::process::Output) -> Option<String> {
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text.lines().find_map(|l| l.strip_prefix("started "))?;
    Some(rest.split_whitespace().next()?.to_string())
}

/// The store with the fixtures deployed, the sample directory imported and
/// `n` instances of `chaos` started, their expiries falling due one after
/// another over `window` from `c0()` on (their reminders before `c0()`).
pub async fn setup(db: &str, n: usize, window: Duration) -> Engine<SqlStore> {
    let engine = Engine::new(SqlStore::open(db).await.unwrap(), Calendar::builtin())
        .await
        .unwrap();
    let text = std::fs::read_to_string(root().join("tests/data/directory.yaml")).unwrap();
    engine
        .import_directory(directory::parse(&text, false).unwrap())
        .await
        .unwrap();
    let before = c0() - Duration::hours(4);
    engine
        .deploy(
            &[
                root().join("tests/data/chaos"),
                root().join("tests/data/mailer"),
            ],
            before,
        )
        .await
        .unwrap();
    for i in 0..n {
        let started = c0() - Duration::hours(3) + window * i as i32 / n.max(1) as i32;
        engine
            .start("chaos", None, BTreeMap::new(), "li", started)
            .await
            .unwrap();
    }
    engine
}

/// What the CLI reported done while `serve` was being killed.
#[derive(Default)]
pub struct Driven {
    pub started: Vec<String>,
    pub completed: Vec<String>,
    pub refused: usize,
}

/// Starts `mail_only` instances (one email each) and completes every
/// second one through the CLI until `stop`, recording what it reported.
pub fn drive(db: String, clock: Arc<ChaosClock>, stop: Arc<Mutex<bool>>) -> Driven {
    let mut d = Driven::default();
    let mut open: Vec<String> = Vec::new();
    while !*stop.lock().unwrap() {
        let out = cli(&db, &clock, &["start", "mail_only", "--as", "li"]);
        match (out.status.success(), started_id(&out)) {
            (true, Some(id)) => {
                d.started.push(id.clone());
                open.push(id);
            }
            _ => d.refused += 1,
        }
        if open.len() >= 2 {
            let id = open.remove(0);
            open.remove(0);
            let task = format!("{id}.1");
            let out = cli(
                &db,
                &clock,
                &["complete", &task, "--outcome", "done", "--as", "li"],
            );
            if out.status.success() {
                d.completed.push(id);
            } else {
                d.refused += 1;
            }
        }
    }
    d
}

/// The figures of one run, as the table of `docs/reliability.md` has them.
#[derive(Debug, Default)]
pub struct Figures {
    pub kills: usize,
    pub timers_due: usize,
    pub applied_once: usize,
    pub out_of_order: usize,
    pub lost: usize,
    pub emails: usize,
    pub duplicates: usize,
    pub undelivered: usize,
}

/// Reads the run's outcome from the database and the sink.
pub async fn check(db: &str, n: usize, driven: &Driven, sink: &Sink, kills: usize) -> Figures {
    let store = SqlStore::open(db).await.unwrap();
    let mut f = Figures {
        kills,
        timers_due: 3 * n,
        ..Default::default()
    };
    assert_eq!(store.next_due().await.unwrap(), None, "no timer left");
    let chaos = store.instances(None, Some("chaos")).await.unwrap();
    assert_eq!(chaos.len(), n);
    for i in &chaos {
        let h = store.history(&i.id).await.unwrap();
        // Each timer writes one reminder or expired line, with its due instant.
        let dues: Vec<DateTime<Utc>> = h
            .iter()
            .filter(|l| matches!(l.what, HistoryKind::Reminder | HistoryKind::Expired))
            .map(|l| {
                let due = l.due.unwrap_or_else(|| panic!("{}: no due: {l:?}", i.id));
                assert!(l.at >= due, "{}: applied before due: {l:?}", i.id);
                due
            })
            .collect();
        for hours in 1..=3 {
            let due = i.started_at + Duration::hours(hours);
            if dues.iter().filter(|d| **d == due).count() == 1 {
                f.applied_once += 1;
            }
        }
        if dues.windows(2).any(|w| w[0] >= w[1]) {
            f.out_of_order += 1;
        }
        assert_eq!(i.status, "completed", "{}: {h:#?}", i.id);
    }
    for id in &driven.started {
        if store.load(id).await.unwrap().is_none() {
            f.lost += 1;
        }
    }
    for id in &driven.completed {
        let done = store
            .load(id)
            .await
            .unwrap()
            .is_some_and(|s| s.status.name() == "completed");
        if !done {
            f.lost += 1;
        }
    }
    // A reminder applied only after its deadline (the engine was down over
    // both) is recorded as not sent, and makes no email (issue 16).
    let mut unsent_reminders = 0;
    for i in store.instances(None, None).await.unwrap() {
        unsent_reminders += store
            .history(&i.id)
            .await
            .unwrap()
            .iter()
            .filter(|l| {
                l.what == HistoryKind::Reminder
                    && l.note
                        .as_deref()
                        .is_some_and(|n| n.starts_with("提醒未发出"))
            })
            .count();
    }
    let rows: Vec<_> = store
        .outbox(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == OutboxKind::Email)
        .collect();
    assert_eq!(
        rows.len(),
        3 * n + driven.started.len() - unsent_reminders,
        "email rows"
    );
    let received = sink.received();
    let seen: BTreeSet<&str> = received.iter().map(String::as_str).collect();
    let expected: BTreeSet<String> = rows
        .iter()
        .map(|r| format!("<duban.outbox.{}@{DOMAIN}>", r.id))
        .collect();
    for r in &rows {
        assert_eq!(r.status, OutboxStatus::Sent, "{r:?}");
    }
    f.undelivered = expected
        .iter()
        .filter(|m| !seen.contains(m.as_str()))
        .count();
    let unknown: Vec<_> = seen.iter().filter(|m| !expected.contains(**m)).collect();
    assert!(unknown.is_empty(), "messages of no row: {unknown:?}");
    f.emails = rows.len();
    f.duplicates = received.len() - seen.len();
    store.close().await;
    f
}

/// Waits until `done` holds for the store, for at most `limit`.
pub async fn until(
    db: &str,
    limit: StdDuration,
    what: &str,
    done: impl AsyncFn(&SqlStore) -> bool,
) {
    let store = SqlStore::open(db).await.unwrap();
    let started = Instant::now();
    while !done(&store).await {
        assert!(started.elapsed() < limit, "not {what} within {limit:?}");
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    store.close().await;
}

/// Waits until every timer is applied and every email sent.
pub async fn drained(db: &str, limit: StdDuration) {
    let store = SqlStore::open(db).await.unwrap();
    let started = Instant::now();
    loop {
        let due = store.next_due().await.unwrap();
        let pending = store.outbox_pending().await.unwrap();
        if due.is_none() && pending == 0 {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "not drained within {limit:?}: next due {due:?}, {pending} outbox rows pending"
        );
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    store.close().await;
}

/// A small tmpfs mounted on a fresh folder, unmounted on drop; `None`, with
/// a message, where the machine refuses the mount (not root, a container).
pub struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir)),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs here ({})",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount ({e})");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Writes zeros into `file` until the disk is full.
pub fn fill(file: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

/// The ERROR lines of a log.
pub fn errors(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .count()
}
