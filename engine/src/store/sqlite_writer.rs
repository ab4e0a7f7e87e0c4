//! Group commit on SQLite: one writer thread per store takes the write sets
//! of many callers and commits them together.
//!
//! SQLite has one writer at a time per database. When every caller opens
//! its own transaction, they queue on the write lock (sleeping in the busy
//! handler) and each pays a whole `fsync` for its own few rows. Here the
//! writer drains whatever is queued (up to [`MAX_BATCH`] write sets), runs
//! them in one `BEGIN IMMEDIATE … COMMIT`, each inside its own `SAVEPOINT`,
//! and answers each caller only after the `COMMIT` returned, so an answer
//! means durable (`synchronous = FULL`).
//!
//! Invariants:
//! - **Per-event outcomes.** A write set that fails (a revision conflict, a
//!   constraint, the fault hook) is rolled back to its savepoint and only
//!   its caller is told; its batch-mates commit.
//! - **All or nothing per batch on a database fault.** When SQLite undoes
//!   the whole transaction itself (a full disk) or the `COMMIT` fails, every
//!   write set of that batch that had run is answered with the error and
//!   nothing of them is stored; the write sets not yet run go into the next
//!   batch.
//! - **A start takes its number in the batch.** [`Job::Start`] takes the
//!   counter's next value inside its savepoint and builds its transition
//!   there: a start refused by its build, or rolled back, takes no number.
//! - The writer's connection is the only one this store writes transitions
//!   with; the sqlx pool still reads and does the other, smaller writes
//!   (claims, outbox status), waiting for the lock as any other connection.
//!
//! The statements are prepared once on the writer's connection (rusqlite's
//! statement cache) and run on its own thread, with no hand-over per
//! statement: sqlx's SQLite driver sends every statement to a worker thread
//! and back, which was most of the CPU of a commit (docs/benchmarks.md).

use std::any::Any;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, ToSql};
use tokio::sync::{mpsc, oneshot};

use super::writes::{self, Check, Val, WriteSet};
use super::StoreError;
use crate::runtime::Transition;

/// The most write sets one transaction takes.
pub const MAX_BATCH: usize = 512;

/// A start's build, type-erased for the writer thread: given the instance
/// number, the transition and its write set, or the build's own error.
pub type Build =
    Box<dyn FnOnce(String) -> Result<(Transition, WriteSet), Box<dyn Any + Send>> + Send>;

/// Other work on the writer's connection, run in its own savepoint of a
/// batch (a claim of due timers): its value, type-erased.
pub type Work = Box<dyn FnOnce(&Connection) -> Result<Box<dyn Any + Send>, StoreError> + Send>;

/// Why a start was not stored.
pub enum StartError {
    /// Its build refused (the caller's error, boxed).
    Build(Box<dyn Any + Send>),
    /// The store refused.
    Store(StoreError),
}

/// What the writer thread is asked to do.
enum Job {
    Commit {
        set: WriteSet,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Start {
        build: Build,
        reply: oneshot::Sender<Result<Transition, StartError>>,
    },
    Run {
        work: Work,
        reply: oneshot::Sender<Result<Box<dyn Any + Send>, StoreError>>,
    },
    Stop {
        reply: oneshot::Sender<()>,
    },
}

/// The handle callers commit through; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
    readers: std::sync::Arc<Readers>,
}

/// Connections for the hot reads (an instance's state before an event),
/// run on the caller's thread: a read of one indexed row takes
/// microseconds, less than handing it to another thread and back. In WAL
/// mode a reader never waits for the writer.
struct Readers {
    path: std::path::PathBuf,
    idle: std::sync::Mutex<Vec<Connection>>,
}

/// The most idle reader connections kept.
const READERS: usize = 8;

fn closed() -> StoreError {
    StoreError::Database("the store is closed".into())
}

/// A rusqlite error as the store reports it.
pub(crate) fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl Writer {
    /// Opens the writer's connection on the SQLite file at `path` (which
    /// the caller has created and migrated) and starts its thread.
    /// `fault_after` is the store's fault hook: a write set fails after
    /// that many statements.
    pub fn open(
        path: &Path,
        fault_after: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> Result<Writer, StoreError> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
        )
        .map_err(db)?;
        conn.set_prepared_statement_cache_capacity(64);
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("duban-sqlite-writer".into())
            .spawn(move || run(conn, rx, fault_after))
            .map_err(|e| StoreError::Database(format!("cannot start the writer: {e}")))?;
        Ok(Writer {
            jobs: tx,
            readers: std::sync::Arc::new(Readers {
                path: path.to_path_buf(),
                idle: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs a read on one of the reader connections.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let idle = self.readers.idle.lock().expect("not poisoned").pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.readers.path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(db)?;
                c.busy_timeout(Duration::from_secs(5)).map_err(db)?;
                c
            }
        };
        let r = f(&conn).map_err(db);
        let mut idle = self.readers.idle.lock().expect("not poisoned");
        if idle.len() < READERS {
            idle.push(conn);
        }
        r
    }

    /// Commits one write set, durably, with whatever else is queued.
    pub async fn commit(&self, set: WriteSet) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Commit { set, reply })
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Takes the next instance number and stores the start `build` makes
    /// for it, in one savepoint of a batch.
    pub async fn start(&self, build: Build) -> Result<Transition, StartError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Start { build, reply })
            .map_err(|_| StartError::Store(closed()))?;
        answer.await.map_err(|_| StartError::Store(closed()))?
    }

    /// Runs `work` on the writer's connection in its own savepoint of the
    /// next batch, answered after the batch's `COMMIT` (a claim of due
    /// timers takes its rows in the same queue as the transitions, instead
    /// of waiting for the write lock in SQLite's busy handler).
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let work: Work = Box::new(move |c| work(c).map(|v| Box::new(v) as Box<dyn Any + Send>));
        self.jobs
            .send(Job::Run { work, reply })
            .map_err(|_| closed())?;
        let v = answer.await.map_err(|_| closed())??;
        Ok(*v.downcast::<T>().expect("the work's own type"))
    }

    /// Finishes what is queued and closes the connection.
    pub async fn stop(&self) {
        let (reply, answer) = oneshot::channel();
        if self.jobs.send(Job::Stop { reply }).is_ok() {
            let _ = answer.await;
        }
        self.readers.idle.lock().expect("not poisoned").clear();
    }
}

/// A job that ran in the open transaction, waiting for the `COMMIT`.
enum Done {
    Commit(oneshot::Sender<Result<(), StoreError>>),
    Run(
        oneshot::Sender<Result<Box<dyn Any + Send>, StoreError>>,
        Box<dyn Any + Send>,
    ),
    Start(
        oneshot::Sender<Result<Transition, StartError>>,
        Box<Transition>,
    ),
}

impl Done {
    fn fail(self, e: &StoreError) {
        let e = StoreError::Database(match e {
            StoreError::Database(m) => m.clone(),
            other => other.to_string(),
        });
        match self {
            Done::Commit(r) => {
                let _ = r.send(Err(e));
            }
            Done::Run(r, _) => {
                let _ = r.send(Err(e));
            }
            Done::Start(r, _) => {
                let _ = r.send(Err(StartError::Store(e)));
            }
        }
    }

    fn succeed(self) {
        match self {
            Done::Commit(r) => {
                let _ = r.send(Ok(()));
            }
            Done::Run(r, v) => {
                let _ = r.send(Ok(v));
            }
            Done::Start(r, t) => {
                let _ = r.send(Ok(*t));
            }
        }
    }
}

struct Bind<'a>(&'a Val, i64);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Val::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Val::NullText | Val::NullInt => ToSqlOutput::Owned(Value::Null),
            Val::LastId => ToSqlOutput::Owned(Value::Integer(self.1)),
        })
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// Runs a write set's statements; `n` counts them for the fault hook.
fn execute(
    conn: &Connection,
    set: &WriteSet,
    fault_after: usize,
    n: &mut usize,
) -> Result<(), StoreError> {
    let tick = |n: &mut usize| {
        if *n >= fault_after {
            return Err(StoreError::Injected(*n));
        }
        *n += 1;
        Ok(())
    };
    let mut last_id = 0;
    for op in &set.ops {
        tick(n)?;
        let mut stmt = conn.prepare_cached(op.sql).map_err(db)?;
        let params = rusqlite::params_from_iter(op.params.iter().map(|v| Bind(v, last_id)));
        match op.check {
            Check::None => {
                stmt.execute(params).map_err(db)?;
            }
            Check::OneRow => {
                if stmt.execute(params).map_err(db)? != 1 {
                    return Err(StoreError::Conflict(set.instance.clone()));
                }
            }
            Check::NewRow => match stmt.execute(params) {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Conflict(set.instance.clone()))
                }
                Err(e) => return Err(db(e)),
            },
            Check::ReturnsId => {
                last_id = stmt.query_row(params, |r| r.get(0)).map_err(db)?;
            }
        }
    }
    tick(n)?;
    Ok(())
}

/// The next instance number, taken in the open transaction.
fn next_instance(conn: &Connection) -> Result<String, StoreError> {
    let mut stmt = conn.prepare_cached(writes::NEXT_INSTANCE).map_err(db)?;
    let v: i64 = stmt.query_row([], |r| r.get(0)).map_err(db)?;
    Ok(v.to_string())
}

fn run(
    conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Job>,
    fault_after: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut queue: std::collections::VecDeque<Job> = std::collections::VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.blocking_recv() {
                Some(j) => queue.push_back(j),
                None => return,
            }
        }
        while queue.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => queue.push_back(j),
                Err(_) => break,
            }
        }
        // A stop, in its turn: everything queued before it has run.
        if let Some(Job::Stop { .. }) = queue.front() {
            let Some(Job::Stop { reply }) = queue.pop_front() else {
                unreachable!()
            };
            drop(conn);
            let _ = reply.send(());
            for j in queue
                .drain(..)
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                refuse(j);
            }
            return;
        }
        batch(&conn, &mut queue, &fault_after);
    }
}

fn refuse(j: Job) {
    match j {
        Job::Commit { reply, .. } => {
            let _ = reply.send(Err(closed()));
        }
        Job::Run { reply, .. } => {
            let _ = reply.send(Err(closed()));
        }
        Job::Start { reply, .. } => {
            let _ = reply.send(Err(StartError::Store(closed())));
        }
        Job::Stop { reply } => {
            let _ = reply.send(());
        }
    }
}

/// One transaction over the transition jobs at the front of `queue`.
fn batch(
    conn: &Connection,
    queue: &mut std::collections::VecDeque<Job>,
    fault_after: &std::sync::atomic::AtomicUsize,
) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // The lock could not be had (another process held it past the busy
        // timeout): every queued transition is told, nothing was written.
        let e = db(e);
        while matches!(
            queue.front(),
            Some(Job::Commit { .. } | Job::Start { .. } | Job::Run { .. })
        ) {
            match queue.pop_front() {
                Some(Job::Commit { reply, .. }) => {
                    let _ = reply.send(Err(StoreError::Database(e.to_string())));
                }
                Some(Job::Run { reply, .. }) => {
                    let _ = reply.send(Err(StoreError::Database(e.to_string())));
                }
                Some(Job::Start { reply, .. }) => {
                    let _ = reply.send(Err(StartError::Store(StoreError::Database(e.to_string()))));
                }
                _ => unreachable!(),
            }
        }
        return;
    }
    let hook = fault_after.load(std::sync::atomic::Ordering::SeqCst);
    let mut done: Vec<Done> = Vec::new();
    let mut undone: Option<StoreError> = None;
    while let Some(Job::Commit { .. } | Job::Start { .. } | Job::Run { .. }) = queue.front() {
        if done.len() >= MAX_BATCH {
            break;
        }
        let job = queue.pop_front().expect("a job");
        if let Err(e) = conn.execute_batch("SAVEPOINT event") {
            undone = Some(db(e));
            // Not run: back to the queue for the next batch.
            queue.push_front(job);
            break;
        }
        let mut n = 0;
        // `Err(None)`: the start's build refused; nothing ran.
        let result: Result<Done, Option<StoreError>> = match job {
            Job::Commit { set, reply } => match execute(conn, &set, hook, &mut n) {
                Ok(()) => Ok(Done::Commit(reply)),
                Err(e) => {
                    let _ = reply.send(Err(e.clone()));
                    Err(Some(e))
                }
            },
            Job::Start { build, reply } => match next_instance(conn).map(build) {
                Ok(Ok((t, set))) => match execute(conn, &set, hook, &mut n) {
                    Ok(()) => Ok(Done::Start(reply, Box::new(t))),
                    Err(e) => {
                        let _ = reply.send(Err(StartError::Store(e.clone())));
                        Err(Some(e))
                    }
                },
                Ok(Err(refused)) => {
                    let _ = reply.send(Err(StartError::Build(refused)));
                    Err(None)
                }
                Err(e) => {
                    let _ = reply.send(Err(StartError::Store(e.clone())));
                    Err(Some(e))
                }
            },
            Job::Run { work, reply } => match work(conn) {
                Ok(v) => Ok(Done::Run(reply, v)),
                Err(e) => {
                    let _ = reply.send(Err(e.clone()));
                    Err(Some(e))
                }
            },
            _ => unreachable!("only transitions and work are taken into a batch"),
        };
        match result {
            Ok(d) => {
                if let Err(e) = conn.execute_batch("RELEASE event") {
                    d.fail(&db(e));
                } else {
                    done.push(d);
                }
            }
            Err(e) => {
                if conn.is_autocommit() {
                    // SQLite undid the whole transaction (a full disk).
                    undone = Some(e.unwrap_or_else(closed));
                    break;
                }
                if let Err(e) = conn.execute_batch("ROLLBACK TO event; RELEASE event") {
                    undone = Some(db(e));
                    break;
                }
            }
        }
    }
    if let Some(e) = undone {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for d in done {
            d.fail(&e);
        }
        return;
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => done.into_iter().for_each(Done::succeed),
        Err(e) => {
            let e = db(e);
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            for d in done {
                d.fail(&e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Calendar;
    use crate::service::Engine;
    use crate::store::writes::Op;
    use crate::store::{MemoryStore, SqlStore};
    use chrono::{DateTime, Utc};
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicUsize;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-05T09:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A migrated store file, its writer's connection (for `batch` run by
    /// hand), and an engine in memory that makes transitions.
    async fn fixture() -> (tempfile::TempDir, Connection, Engine<MemoryStore>) {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("duban.db");
        SqlStore::open(file.to_str().unwrap())
            .await
            .unwrap()
            .close()
            .await;
        let conn = Connection::open(&file).unwrap();
        let engine = Engine::new(MemoryStore::new(), Calendar::builtin())
            .await
            .unwrap();
        let timers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/timers");
        engine.deploy(&[timers], t0()).await.unwrap();
        (tmp, conn, engine)
    }

    async fn start_set(engine: &Engine<MemoryStore>, id: &str) -> WriteSet {
        let t = engine
            .start_once(id, "wait_an_hour", None, Default::default(), t0())
            .await
            .unwrap()
            .unwrap();
        writes::transition(None, &t, t0()).unwrap()
    }

    fn commit(set: WriteSet) -> (Job, oneshot::Receiver<Result<(), StoreError>>) {
        let (reply, rx) = oneshot::channel();
        (Job::Commit { set, reply }, rx)
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// One transaction, four callers: a conflict and a failing statement
    /// are told to their own callers only; the other two commit.
    #[tokio::test]
    async fn a_failed_event_does_not_fail_its_batch_mates() {
        let (_tmp, conn, engine) = fixture().await;
        let a = start_set(&engine, "a").await;
        let b = start_set(&engine, "b").await;
        let bad = WriteSet {
            instance: "bad".into(),
            ops: vec![Op {
                sql: "INSERT INTO no_such_table (x) VALUES ($1)",
                params: vec![Val::Int(1)],
                check: Check::None,
                pg: None,
            }],
        };
        let mut queue = VecDeque::new();
        let mut answers = Vec::new();
        for set in [a.clone(), a, bad, b] {
            let (job, rx) = commit(set);
            queue.push_back(job);
            answers.push(rx);
        }
        batch(&conn, &mut queue, &AtomicUsize::new(usize::MAX));
        assert!(queue.is_empty());
        let got: Vec<Result<(), StoreError>> = answers
            .into_iter()
            .map(|mut r| r.try_recv().unwrap())
            .collect();
        assert!(got[0].is_ok(), "{:?}", got[0]);
        assert!(
            matches!(got[1], Err(StoreError::Conflict(ref i)) if i == "a"),
            "{:?}",
            got[1]
        );
        assert!(
            matches!(got[2], Err(StoreError::Database(ref m)) if m.contains("no_such_table")),
            "{:?}",
            got[2]
        );
        assert!(got[3].is_ok(), "{:?}", got[3]);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM instances"), 2);
        // Each instance's rows once: its timer, its history line.
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM timers"), 2);
        assert!(conn.is_autocommit(), "no transaction left open");
    }

    /// A start takes its number inside the batch: a build that refuses
    /// takes none, and the next start gets the next number.
    #[tokio::test]
    async fn a_refused_start_takes_no_number_in_its_batch() {
        let (_tmp, conn, engine) = fixture().await;
        let mut made = std::collections::BTreeMap::new();
        for id in ["1", "2"] {
            let t = engine
                .start_once(id, "wait_an_hour", None, Default::default(), t0())
                .await
                .unwrap()
                .unwrap();
            made.insert(id.to_string(), t);
        }
        let mut queue = VecDeque::new();
        let mut answers = Vec::new();
        for refuse in [false, true, false] {
            let made = made.clone();
            let build: Build = Box::new(move |id| {
                if refuse {
                    return Err(Box::new(format!("refused {id}")) as Box<dyn Any + Send>);
                }
                let t = made[&id].clone();
                let set = writes::transition(None, &t, t0())
                    .map_err(|e| Box::new(e.to_string()) as Box<dyn Any + Send>)?;
                Ok((t, set))
            });
            let (reply, rx) = oneshot::channel();
            queue.push_back(Job::Start { build, reply });
            answers.push(rx);
        }
        batch(&conn, &mut queue, &AtomicUsize::new(usize::MAX));
        let got: Vec<_> = answers
            .into_iter()
            .map(|mut r| r.try_recv().unwrap())
            .collect();
        let ids: Vec<String> = got
            .iter()
            .map(|r| match r {
                Ok(t) => t.state.id.clone(),
                Err(StartError::Build(e)) => e.downcast_ref::<String>().unwrap().clone(),
                Err(StartError::Store(e)) => panic!("{e}"),
            })
            .collect();
        assert_eq!(ids, ["1", "refused 2", "2"]);
        assert_eq!(
            count(&conn, "SELECT value FROM counters WHERE name = 'instance'"),
            2
        );
    }

    /// A full disk: whatever a caller was told holds (stored if and only
    /// if answered Ok), no lock is left behind, and once there is space
    /// again the next batch commits.
    #[tokio::test]
    async fn a_full_disk_in_a_batch_leaves_every_answer_true_and_no_lock() {
        let (tmp, conn, engine) = fixture().await;
        let pages: i64 = count(&conn, "PRAGMA page_count");
        conn.execute_batch(&format!("PRAGMA max_page_count = {pages}"))
            .unwrap();
        let mut queue = VecDeque::new();
        let mut answers = Vec::new();
        let mut ids = Vec::new();
        for i in 0..40 {
            let id = format!("i{i}-{}", "x".repeat(2000));
            let (job, rx) = commit(start_set(&engine, &id).await);
            queue.push_back(job);
            answers.push(rx);
            ids.push(id);
        }
        while !queue.is_empty() {
            batch(&conn, &mut queue, &AtomicUsize::new(usize::MAX));
        }
        let mut refused = 0;
        for (mut rx, id) in answers.into_iter().zip(&ids) {
            let stored: i64 = conn
                .query_row("SELECT COUNT(*) FROM instances WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .unwrap();
            match rx.try_recv().expect("answered") {
                Ok(()) => assert_eq!(stored, 1, "{id} answered Ok"),
                Err(e) => {
                    assert!(e.to_string().contains("full"), "{e}");
                    assert_eq!(stored, 0, "{id} refused");
                    refused += 1;
                }
            }
        }
        assert!(refused > 0, "the disk filled");
        assert!(conn.is_autocommit());
        // Another connection writes at once: no lock was left.
        let other = Connection::open(tmp.path().join("duban.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").unwrap();
        conn.execute_batch("PRAGMA max_page_count = 1073741823")
            .unwrap();
        let (job, mut rx) = commit(start_set(&engine, "after").await);
        queue.push_back(job);
        batch(&conn, &mut queue, &AtomicUsize::new(usize::MAX));
        rx.try_recv().unwrap().unwrap();
    }
}
