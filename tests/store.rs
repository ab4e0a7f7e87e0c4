//! The store conformance suite: the same tests against embedded SQLite,
//! against the PostgreSQL server (`DUBAN_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`) and against the in-memory
//! store, each test on a fresh file, a fresh database or a fresh store of
//! its own so they run in parallel.
//!
//! A few tests are about SQL itself and run on SQLite and PostgreSQL only
//! (see `conformance!` at the end).

use duban_engine::runtime::HistoryKind;
use duban_engine::store::OutboxKind;
use duban_engine::store::OutboxStatus;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use duban_engine::calendar::Calendar;
use duban_engine::runtime::directory::MemoryDirectory;
use duban_engine::runtime::{Command, Transition};
use duban_engine::runtime::{EngineError, Event, Status};
use duban_engine::service::{Engine, ServiceError};
use duban_engine::store::{Deployed, MemoryStore, SqlStore, Store, StoreError, TaskFilter};
use duban_tests::processes;
use serde_json::{json, Value as Json};
use sqlx::Connection;

/// A store with whatever keeps its database alive.
struct Db<S> {
    engine: Arc<Engine<S>>,
    _keep: Option<tempfile::TempDir>,
}

async fn sqlite() -> Db<SqlStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(dir.path().join("duban.db").to_str().unwrap())
        .await
        .unwrap();
    setup(store, Some(dir)).await
}

async fn postgres() -> Db<SqlStore> {
    let base = std::env::var("DUBAN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "duban_t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        Utc::now().timestamp_micros() % 1_000_000
    );
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {base}: {e} (start it: .ci/run does)"));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
    let store = SqlStore::open(&url).await.unwrap();
    setup(store, None).await
}

async fn memory() -> Db<MemoryStore> {
    setup(MemoryStore::new(), None).await
}

/// The stores the suite runs on. The future of a method of a generic
/// `S: Store` is not known to be `Send`, so what the parallel tests spawn
/// is written here once per store, where it is.
trait Backend: Store + Send + Sync + Sized + 'static {
    /// Spawns [`Engine::complete`].
    fn spawn_complete(
        engine: Arc<Engine<Self>>,
        task: String,
        outcome: &'static str,
        variables: BTreeMap<String, Json>,
        actor: String,
        now: DateTime<Utc>,
    ) -> tokio::task::JoinHandle<Result<Transition, ServiceError>>;

    /// Spawns [`Store::commit`].
    fn spawn_commit(
        engine: Arc<Engine<Self>>,
        prev_revision: Option<u64>,
        t: Transition,
        now: DateTime<Utc>,
    ) -> tokio::task::JoinHandle<Result<(), StoreError>>;
}

macro_rules! backend {
    ($($store:ty),*) => {$(
        impl Backend for $store {
            fn spawn_complete(
                engine: Arc<Engine<Self>>,
                task: String,
                outcome: &'static str,
                variables: BTreeMap<String, Json>,
                actor: String,
                now: DateTime<Utc>,
            ) -> tokio::task::JoinHandle<Result<Transition, ServiceError>> {
                tokio::spawn(async move {
                    engine.complete(&task, outcome, variables, &actor, now).await
                })
            }

            fn spawn_commit(
                engine: Arc<Engine<Self>>,
                prev_revision: Option<u64>,
                t: Transition,
                now: DateTime<Utc>,
            ) -> tokio::task::JoinHandle<Result<(), StoreError>> {
                tokio::spawn(async move { engine.store().commit(prev_revision, &t, now).await })
            }
        }
    )*};
}

backend!(SqlStore, MemoryStore);

/// The sample directory the CLI tests and scenarios use too.
fn directory() -> MemoryDirectory {
    let text =
        std::fs::read_to_string(duban_tests::root().join("tests/data/directory.yaml")).unwrap();
    duban_engine::store::directory::parse(&text, false).unwrap()
}

async fn setup<S: Store>(store: S, keep: Option<tempfile::TempDir>) -> Db<S> {
    let engine = Engine::new(store, Calendar::builtin()).await.unwrap();
    engine.import_directory(directory()).await.unwrap();
    let reports = engine
        .deploy(&[processes()], at("2025-09-01T09:00:00+08:00"))
        .await
        .unwrap();
    assert!(reports.iter().all(|r| r.result == Deployed::New));
    Db {
        engine: Arc::new(engine),
        _keep: keep,
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn vars(pairs: &[(&str, Json)]) -> BTreeMap<String, Json> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

async fn open_task<S: Store>(db: &Db<S>, instance: &str, step: &str) -> String {
    let tasks = db
        .engine
        .store()
        .tasks(&TaskFilter::default())
        .await
        .unwrap();
    tasks
        .into_iter()
        .find(|t| t.instance == instance && t.step == step)
        .unwrap_or_else(|| panic!("no open {step} in {instance}"))
        .id
}

async fn start_letter<S: Store>(db: &Db<S>) -> String {
    let t = db
        .engine
        .start(
            "supervision_letter",
            None,
            vars(&[
                ("agency", json!("market_bureau")),
                ("case_no", json!("许司督〔2025〕1号")),
                ("problem", json!("未落实公示制度")),
            ]),
            "li",
            at("2025-09-26T10:00:00+08:00"),
        )
        .await
        .unwrap();
    t.state.id
}

async fn complete<S: Store>(
    db: &Db<S>,
    instance: &str,
    step: &str,
    outcome: &str,
    v: &[(&str, Json)],
    now: &str,
) {
    let task = open_task(db, instance, step).await;
    // Acted on by its (first) assignee: only they, or holders of its role, may.
    let state = db.engine.instance(instance).await.unwrap();
    let actor = state.tasks[&task].assignees[0].clone();
    db.engine
        .complete(&task, outcome, vars(v), &actor, at(now))
        .await
        .unwrap_or_else(|e| panic!("{step}/{outcome}: {e}"));
}

/// Processes whose clocks disagree by seconds apply events to one instance
/// in turn: the history, read in the order it was committed, never goes
/// back in time (an event is applied at its own instant or at the
/// instance's last one, whichever is later). Each commit is checked
/// against the revision it read, so commits of one instance are serial.
async fn history_instants_never_decrease<S: Store>(db: Db<S>) {
    let id = start_letter(&db).await;
    let before = db.engine.history(&id).await.unwrap().len();
    let base = at("2025-09-26T10:05:00+08:00");
    for i in 0..12i64 {
        // Clocks up to 30 s behind or ahead of each other, and one 80 s
        // behind (within the 2-minute tolerance).
        let skew = if i == 11 { -80 } else { (i * 17) % 61 - 30 };
        let now = base + chrono::Duration::seconds(skew);
        let v = vars(&[("problem", json!(format!("问题{i}")))]);
        db.engine.set_variables(&id, v, "li", now).await.unwrap();
    }
    let history = db.engine.history(&id).await.unwrap();
    assert_eq!(history.len(), before + 12);
    for w in history.windows(2) {
        assert!(w[0].at <= w[1].at, "{} then {}", w[0].at, w[1].at);
    }
    let state = db.engine.instance(&id).await.unwrap();
    assert_eq!(state.last_at, Some(history.last().unwrap().at));
    // A clock wrong by more than the tolerance is not followed: its event
    // keeps its own instant rather than moving every later one.
    let wrong = base - chrono::Duration::minutes(10);
    let v = vars(&[("problem", json!("时钟错误"))]);
    db.engine.set_variables(&id, v, "li", wrong).await.unwrap();
    let last = db.engine.history(&id).await.unwrap().pop().unwrap();
    assert_eq!(last.at, wrong);
}

async fn deploy_versions<S: Store>(db: Db<S>) {
    let store = &db.engine.store();
    let defs = store.definitions().await.unwrap();
    let ids: Vec<&str> = defs.iter().map(|d| d.id.as_str()).collect();
    assert!(
        ids.contains(&"dispute") && ids.contains(&"supervision_letter") && ids.len() >= 10,
        "{ids:?}"
    );
    // Deploying the same content again stores nothing.
    let again = db
        .engine
        .deploy(&[processes()], at("2025-09-02T09:00:00+08:00"))
        .await
        .unwrap();
    assert!(again.iter().all(|r| r.result == Deployed::Unchanged));
    assert_eq!(store.definitions().await.unwrap().len(), defs.len());
    // Changed content under the same version is refused; a new version is stored.
    let mut changed = store.definition("dispute", None).await.unwrap().unwrap();
    changed.hash = "different".into();
    // Issue 12, found 6: a refused deploy wrote part of the library. With
    // a new definition beside the changed one, nothing at all is stored.
    let mut new_one = changed.clone();
    new_one.id = "brand_new".into();
    assert!(matches!(
        store.deploy(&[new_one.clone(), changed.clone()]).await,
        Err(StoreError::VersionChanged { .. })
    ));
    assert!(store.definition("brand_new", None).await.unwrap().is_none());
    assert_eq!(store.definitions().await.unwrap().len(), defs.len());
    let deployed = changed.version;
    changed.version = deployed + 1;
    assert_eq!(
        store.deploy(&[changed.clone()]).await.unwrap(),
        [Deployed::New]
    );
    assert_eq!(
        store
            .definition("dispute", None)
            .await
            .unwrap()
            .unwrap()
            .version,
        deployed + 1
    );
    assert_eq!(
        store
            .definition("dispute", Some(deployed))
            .await
            .unwrap()
            .unwrap()
            .version,
        deployed
    );
    // The heads the scheduler reads: one per id, its latest version.
    let heads = store.definition_heads().await.unwrap();
    assert_eq!(heads.len(), ids.len());
    let dispute = heads.iter().find(|h| h.id == "dispute").unwrap();
    assert_eq!(dispute.version, deployed + 1);
    assert_eq!(dispute.deployed_at, changed.deployed_at);
    let letter = defs.iter().find(|d| d.id == "supervision_letter").unwrap();
    let head = heads.iter().find(|h| h.id == "supervision_letter").unwrap();
    assert_eq!(
        (head.version, head.deployed_at),
        (letter.version, letter.deployed_at)
    );
}

async fn invalid_definitions_are_refused<S: Store>(db: Db<S>) {
    let root = duban_tests::root();
    let err = db
        .engine
        .deploy(
            &[root.join("tests/three_errors.yaml")],
            at("2025-09-02T09:00:00+08:00"),
        )
        .await
        .unwrap_err();
    let ServiceError::Invalid(diags) = err else {
        panic!("{err}")
    };
    assert_eq!(diags.len(), 3);
    assert!(db
        .engine
        .store()
        .definition("three_errors", None)
        .await
        .unwrap()
        .is_none());
}

async fn supervision_letter_end_to_end<S: Store>(db: Db<S>) {
    let id = start_letter(&db).await;
    complete(
        &db,
        &id,
        "draft_letter",
        "issue",
        &[
            ("letter_kind", json!("督办函")),
            ("reply_period", json!("10个工作日")),
        ],
        "2025-09-26T11:00:00+08:00",
    )
    .await;
    let notice = open_task(&db, &id, "await_report").await;
    db.engine
        .apply(
            &id,
            &Event::Receive {
                task: notice.clone(),
                actor: "market_bureau".into(),
            },
            at("2025-09-26T12:00:00+08:00"),
        )
        .await
        .unwrap();
    let tasks = db
        .engine
        .store()
        .tasks(&TaskFilter {
            assignee: Some("market_bureau".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].last_day.as_deref(), Some("2025-10-16"));
    let overdue = db
        .engine
        .store()
        .tasks(&TaskFilter {
            overdue_at: Some(at("2025-10-20T09:00:00+08:00")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(overdue.len(), 1);
    // Expiry: fire the stored expiry timer through the engine.
    let state = db.engine.store().load(&id).await.unwrap().unwrap();
    let expiry = state.timers.values().find(|t| matches!(&t.kind, duban_engine::runtime::TimerKind::Expiry { task } if *task == notice)).unwrap().clone();
    db.engine
        .apply(
            &id,
            &Event::TimerFired {
                timer: expiry.id.clone(),
            },
            expiry.due,
        )
        .await
        .unwrap();
    // The fired timer's row went with the transition that applied it.
    let due_rows = db
        .engine
        .store()
        .tasks(&TaskFilter::default())
        .await
        .unwrap();
    assert!(
        due_rows.iter().all(|t| t.id != notice),
        "the expired notice is closed"
    );
    let state = db.engine.store().load(&id).await.unwrap().unwrap();
    let rows = db.engine.store().pending_timers(&id).await.unwrap();
    assert!(!rows.contains(&expiry.id));
    assert_eq!(
        rows,
        state.timers.keys().cloned().collect::<Vec<_>>(),
        "timer rows mirror the state"
    );
    // The same timer cannot fire twice.
    let again = db
        .engine
        .apply(&id, &Event::TimerFired { timer: expiry.id }, expiry.due)
        .await
        .unwrap_err();
    assert!(
        matches!(again, ServiceError::Engine(EngineError::TimerNotPending(_))),
        "{again}"
    );
    complete(
        &db,
        &id,
        "verify_exception",
        "verified",
        &[
            ("reconsideration_filed", json!(false)),
            ("litigation_filed", json!(false)),
        ],
        "2025-10-20T10:00:00+08:00",
    )
    .await;
    complete(
        &db,
        &id,
        "report_to_government",
        "reported",
        &[],
        "2025-10-21T10:00:00+08:00",
    )
    .await;
    complete(
        &db,
        &id,
        "government_decision",
        "decided",
        &[
            ("decision_kind", json!("撤销")),
            ("decision_reason", json!("违法")),
        ],
        "2025-10-22T10:00:00+08:00",
    )
    .await;
    let serve = open_task(&db, &id, "serve_decision").await;
    db.engine
        .apply(
            &id,
            &Event::Receive {
                task: serve,
                actor: "market_bureau".into(),
            },
            at("2025-10-23T10:00:00+08:00"),
        )
        .await
        .unwrap();
    complete(
        &db,
        &id,
        "serve_decision",
        "acknowledged",
        &[],
        "2025-10-23T11:00:00+08:00",
    )
    .await;
    complete(
        &db,
        &id,
        "check_decision_execution",
        "executed",
        &[("execution_report", json!("已执行"))],
        "2025-10-30T11:00:00+08:00",
    )
    .await;
    let state = db.engine.store().load(&id).await.unwrap().unwrap();
    assert_eq!(
        state.status,
        Status::Completed {
            result: "government_decided".into()
        }
    );
    let rows = db
        .engine
        .store()
        .instances(Some("completed"), Some("supervision_letter"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let history = db.engine.store().history(&id).await.unwrap();
    let whats: Vec<&str> = history.iter().map(|h| h.what.as_str()).collect();
    for w in [
        "started",
        "task_opened",
        "notice_sent",
        "received",
        "expired",
        "escalated",
        "decided",
        "ended",
    ] {
        assert!(whats.contains(&w), "{w} missing in {whats:?}");
    }
    let received = history
        .iter()
        .find(|h| h.what == HistoryKind::Received)
        .unwrap();
    assert!(received
        .deadline
        .as_ref()
        .unwrap()
        .explanation
        .contains("自2025年9月26日起算10个工作日"));
    assert!(db
        .engine
        .store()
        .tasks(&TaskFilter::default())
        .await
        .unwrap()
        .is_empty());
    assert!(
        db.engine.store().outbox_pending().await.unwrap() > 0,
        "notifications are queued in the outbox"
    );
    // 一人一档 (RC-14): li's record across processes.
    let li = db.engine.store().person_history("li").await.unwrap();
    assert!(li
        .iter()
        .any(|r| r.entry.what == HistoryKind::TaskCompleted && r.instance == id));
}

async fn dispute_end_to_end<S: Store>(db: Db<S>) {
    let t = db
        .engine
        .start(
            "dispute",
            None,
            vars(&[
                ("applicant", json!("qiaoxi_urban")),
                ("respondent", json!("xindu_env")),
                ("dispute_summary", json!("占道经营")),
            ]),
            "li",
            at("2026-03-02T09:00:00+08:00"),
        )
        .await
        .unwrap();
    let id = t.state.id;
    complete(
        &db,
        &id,
        "negotiate",
        "failed",
        &[
            ("negotiation_record", json!("不成")),
            ("application_letter", json!("公函")),
            ("dispute_focus", json!("焦点")),
            ("positions", json!("观点")),
        ],
        "2026-03-03T09:00:00+08:00",
    )
    .await;
    complete(
        &db,
        &id,
        "review_application",
        "complete",
        &[],
        "2026-03-04T09:00:00+08:00",
    )
    .await;
    complete(
        &db,
        &id,
        "coordinate",
        "failed",
        &[],
        "2026-03-10T09:00:00+08:00",
    )
    .await;
    complete(
        &db,
        &id,
        "government_decides",
        "decided",
        &[("government_decision", json!("由城管部门负责"))],
        "2026-03-12T09:00:00+08:00",
    )
    .await;
    complete(
        &db,
        &id,
        "serve_decision_applicant",
        "executed",
        &[("applicant_execution", json!("已执行"))],
        "2026-03-13T09:00:00+08:00",
    )
    .await;
    complete(
        &db,
        &id,
        "serve_decision_respondent",
        "executed",
        &[("respondent_execution", json!("已执行"))],
        "2026-03-14T09:00:00+08:00",
    )
    .await;
    complete(
        &db,
        &id,
        "check_execution",
        "executed",
        &[],
        "2026-03-16T09:00:00+08:00",
    )
    .await;
    let state = db.engine.store().load(&id).await.unwrap().unwrap();
    assert_eq!(
        state.status,
        Status::Completed {
            result: "resolved".into()
        }
    );
}

async fn fifty_parallel_completions_one_wins<S: Backend>(db: Db<S>) {
    let id = start_letter(&db).await;
    let task = open_task(&db, &id, "draft_letter").await;
    let mut handles = Vec::new();
    for _ in 0..50 {
        let v = vars(&[
            ("letter_kind", json!("督办函")),
            ("reply_period", json!("30日")),
        ]);
        handles.push(S::spawn_complete(
            db.engine.clone(),
            task.clone(),
            "issue",
            v,
            "li".to_string(),
            at("2025-09-27T10:00:00+08:00"),
        ));
    }
    let (mut ok, mut conflicts, mut closed) = (0, 0, 0);
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(ServiceError::Store(StoreError::Conflict(_))) => conflicts += 1,
            // A loser that loaded the state after the winner committed sees the task closed.
            Err(ServiceError::Engine(EngineError::TaskClosed { .. })) => closed += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((ok, conflicts + closed), (1, 49));
    eprintln!("50 completions through the engine: 1 won, {conflicts} conflicts, {closed} saw the task closed");
    let history = db.engine.store().history(&id).await.unwrap();
    assert_eq!(
        history
            .iter()
            .filter(|h| h.what == HistoryKind::TaskCompleted)
            .count(),
        1
    );
}

/// All 50 transitions computed from the same revision, committed at once:
/// the store lets exactly one through and reports a conflict to the others.
async fn fifty_parallel_commits_one_wins_49_conflict<S: Backend>(db: Db<S>) {
    let id = start_letter(&db).await;
    let task = open_task(&db, &id, "draft_letter").await;
    let state = db.engine.store().load(&id).await.unwrap().unwrap();
    let def = db
        .engine
        .definition("supervision_letter", Some(state.version))
        .await
        .unwrap();
    let dir = db.engine.directory();
    let calendar = db.engine.calendar();
    let env = duban_engine::runtime::Env {
        definition: &def,
        calendar: &calendar,
        directory: dir.as_ref(),
        processes: &duban_engine::runtime::NoProcesses,
        call_depth: 0,
        facts: &duban_engine::runtime::facts::Facts::none(),
        reports: &Default::default(),
    };
    let mut handles = Vec::new();
    for _ in 0..50 {
        let e = Event::Complete {
            task: task.clone(),
            outcome: "issue".into(),
            variables: vars(&[
                ("letter_kind", json!("督办函")),
                ("reply_period", json!("30日")),
            ]),
            actor: "li".to_string(),
        };
        let t =
            duban_engine::runtime::apply(&env, Some(&state), &e, at("2025-09-27T10:00:00+08:00"))
                .unwrap();
        handles.push(S::spawn_commit(
            db.engine.clone(),
            Some(state.revision),
            t,
            at("2025-09-27T10:00:00+08:00"),
        ));
    }
    let mut ok = 0;
    let mut conflicts = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 49));
    let history = db.engine.store().history(&id).await.unwrap();
    assert_eq!(
        history
            .iter()
            .filter(|h| h.what == HistoryKind::TaskCompleted)
            .count(),
        1
    );
    assert_eq!(
        db.engine
            .store()
            .tasks(&TaskFilter::default())
            .await
            .unwrap()
            .len(),
        1,
        "only the winner opened the next task"
    );
}

/// SQL only: the fault is injected between two SQL statements of a commit.
async fn faults_leave_the_previous_or_the_next_state(db: Db<SqlStore>) {
    let id = start_letter(&db).await;
    let store = &db.engine.store();
    let before = store.load(&id).await.unwrap().unwrap();
    let history_before = store.history(&id).await.unwrap().len();
    let tasks_before = store.tasks(&TaskFilter::default()).await.unwrap().len();
    let outbox_before = store.outbox_pending().await.unwrap();
    let task = open_task(&db, &id, "draft_letter").await;
    let v = || {
        vars(&[
            ("letter_kind", json!("督办函")),
            ("reply_period", json!("30日")),
        ])
    };
    let mut injected = 0;
    for n in 0.. {
        store.inject_fault_after(Some(n));
        match db
            .engine
            .complete(&task, "issue", v(), "li", at("2025-09-27T10:00:00+08:00"))
            .await
        {
            Err(ServiceError::Store(StoreError::Injected(_))) => injected += 1,
            Ok(_) => break,
            Err(e) => panic!("{e}"),
        }
        assert_eq!(
            store.load(&id).await.unwrap().unwrap(),
            before,
            "fault after {n} statements"
        );
        assert_eq!(store.history(&id).await.unwrap().len(), history_before);
        assert_eq!(
            store.tasks(&TaskFilter::default()).await.unwrap().len(),
            tasks_before
        );
        assert_eq!(store.outbox_pending().await.unwrap(), outbox_before);
    }
    assert!(
        injected >= 8,
        "faults were injected between every statement: {injected}"
    );
    store.inject_fault_after(None);
    let after = store.load(&id).await.unwrap().unwrap();
    assert_eq!(after.revision, before.revision + 1);
    assert_eq!(after.current_steps(), ["await_report"]);
}

async fn refused_starts_write_nothing<S: Store>(db: Db<S>) {
    let bad = [
        (
            vars(&[("agency", json!("market_bureau")), ("case_no", json!("1"))]),
            "missing required variable `problem`",
        ),
        (
            vars(&[
                ("agency", json!("market_bureau")),
                ("case_no", json!("1")),
                ("problem", json!("x")),
                ("reply_period", json!("5 weeks")),
            ]),
            "variable `reply_period`",
        ),
        (vars(&[("agnecy", json!("x"))]), "unknown variable `agnecy`"),
    ];
    for (v, want) in bad {
        let err = db
            .engine
            .start(
                "supervision_letter",
                None,
                v,
                "li",
                at("2025-09-26T10:00:00+08:00"),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
    }
    assert!(db
        .engine
        .store()
        .instances(None, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        db.engine.store().next_instance_id().await.unwrap(),
        "1",
        "no id was taken by a refused start"
    );
}

async fn messages_reach_waiting_instances<S: Store>(db: Db<S>) {
    let err = db
        .engine
        .message(
            "reconsideration_decided",
            "K1",
            BTreeMap::new(),
            at("2025-09-26T10:00:00+08:00"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no instance waits"), "{err}");
}

/// Deploys `tests/data/call` and starts its parent for case `case_no`.
async fn start_call_parent<S: Store>(db: &Db<S>, case_no: &str) -> Transition {
    let dir = duban_tests::root().join("tests/data/call");
    db.engine
        .deploy(&[dir], at("2025-09-01T09:00:00+08:00"))
        .await
        .unwrap();
    db.engine
        .start(
            "call_parent",
            None,
            vars(&[
                ("agency", json!("market_bureau")),
                ("case_no", json!(case_no)),
            ]),
            "li",
            at("2025-09-26T10:00:00+08:00"),
        )
        .await
        .unwrap()
}

/// Issue 11, engine 6: a start whose first step is a call whose child
/// cannot start (the child was redeployed with a required variable the
/// caller does not give) reported failure yet stored a running parent
/// waiting for a child that did not exist. Now the start is refused with
/// R030, and neither instance is written.
async fn a_call_that_cannot_start_refuses_its_caller<S: Store>(db: Db<S>) {
    start_call_parent(&db, "K-1").await;
    let before = db.engine.instances(None, None).await.unwrap().len();
    let rows = db.engine.outbox(None).await.unwrap().len();
    let v2 = duban_tests::root().join("tests/data/call_v2");
    db.engine
        .deploy(&[v2], at("2025-09-02T09:00:00+08:00"))
        .await
        .unwrap();
    let err = db
        .engine
        .start(
            "call_parent",
            None,
            vars(&[
                ("agency", json!("market_bureau")),
                ("case_no", json!("K-2")),
            ]),
            "li",
            at("2025-09-26T10:00:00+08:00"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Engine(e) if e.code() == "R030"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("missing required variable `venue`"),
        "{err}"
    );
    assert_eq!(db.engine.instances(None, None).await.unwrap().len(), before);
    assert_eq!(db.engine.outbox(None).await.unwrap().len(), rows);
}

/// A call reached by a timer whose child cannot start makes the caller
/// stuck with R030, visibly, its timer held; once a startable child is
/// deployed, `retry` starts it (one level deeper, on the version tried).
async fn a_call_reached_by_a_timer_that_cannot_start_makes_the_caller_stuck<S: Store>(db: Db<S>) {
    use duban_engine::scheduler::{Scheduler, SchedulerOptions};
    let data = duban_tests::root().join("tests/data");
    let t0 = at("2025-09-01T09:00:00+08:00");
    db.engine
        .deploy(&[data.join("call_late")], t0)
        .await
        .unwrap();
    db.engine.deploy(&[data.join("call_v2")], t0).await.unwrap();
    let t = db
        .engine
        .start(
            "call_late",
            None,
            vars(&[
                ("agency", json!("market_bureau")),
                ("case_no", json!("L-1")),
            ]),
            "li",
            at("2025-09-26T10:00:00+08:00"),
        )
        .await
        .unwrap();
    let id = t.state.id.clone();
    let s = Scheduler::new(db.engine.clone(), SchedulerOptions::default());
    let r = s
        .fire_due(at("2025-09-26T11:00:01+08:00"), None)
        .await
        .unwrap();
    assert_eq!((r.fired, r.stuck), (0, 1), "{r:?}");
    let state = db.engine.instance(&id).await.unwrap();
    match &state.status {
        Status::Stuck { code, message, .. } => {
            assert_eq!(code, "R030");
            assert!(message.contains("`venue`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    db.engine
        .deploy(&[data.join("call_v3")], at("2025-09-26T12:00:00+08:00"))
        .await
        .unwrap();
    let t = db
        .engine
        .retry(&id, "li", at("2025-09-26T12:05:00+08:00"))
        .await
        .unwrap();
    let child = t.state.waits["interview"].child.clone().unwrap();
    let c = db.engine.instance(&child).await.unwrap();
    assert_eq!((c.depth, c.version, c.status), (1, 3, Status::Running));
}

/// Issue 11, engine 5: cancelling a case cancelled only the case; the
/// sub-processes its calls started went on reminding and escalating.
async fn cancelling_a_case_cancels_its_called_children<S: Store>(db: Db<S>) {
    let t = start_call_parent(&db, "K-9").await;
    let parent = t.state.id.clone();
    let child = t.state.waits["interview"].child.clone().unwrap();
    assert_eq!(
        db.engine.instance(&child).await.unwrap().status,
        duban_engine::runtime::Status::Running
    );
    db.engine
        .cancel(
            &parent,
            "重复立案",
            "admin",
            at("2025-09-27T10:00:00+08:00"),
        )
        .await
        .unwrap();
    for id in [&parent, &child] {
        let s = db.engine.instance(id).await.unwrap();
        assert!(
            matches!(s.status, duban_engine::runtime::Status::Cancelled { .. }),
            "{id}: {:?}",
            s.status
        );
        assert!(db.engine.pending_timers(id).await.unwrap().is_empty());
        let h = db.engine.history(id).await.unwrap();
        let line = h.iter().find(|l| l.what == HistoryKind::Cancelled).unwrap();
        assert_eq!(line.actor, "admin");
    }
    let h = db.engine.history(&child).await.unwrap();
    let note = h.last().unwrap().note.clone().unwrap();
    assert!(
        note.contains(&parent) && note.contains("重复立案"),
        "{note}"
    );
    assert!(db
        .engine
        .tasks(&TaskFilter::default())
        .await
        .unwrap()
        .is_empty());
    // The cancel is also a `cancel_child` row of the caller's transaction,
    // so a crash before it was carried out only delays it; replaying the
    // row once it was is nothing more.
    let rows: Vec<_> = db
        .engine
        .outbox(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == duban_engine::store::OutboxKind::CancelChild)
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].instance, parent);
    db.engine
        .replay_call(&rows[0], at("2025-09-27T10:05:00+08:00"))
        .await
        .unwrap();
    let h = db.engine.history(&child).await.unwrap();
    assert_eq!(
        h.iter()
            .filter(|l| l.what == HistoryKind::Cancelled)
            .count(),
        1
    );
}

async fn calls_and_messages<S: Store>(db: Db<S>) {
    let t = start_call_parent(&db, "K-7").await;
    let parent = t.state.id.clone();
    assert_eq!(t.state.current_steps(), ["interview"]);
    // The child was started with the inputs, and holds the only open task.
    let tasks = db
        .engine
        .store()
        .tasks(&TaskFilter::default())
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1);
    let child = tasks[0].instance.clone();
    assert_ne!(child, parent);
    let cs = db.engine.store().load(&child).await.unwrap().unwrap();
    assert_eq!(cs.variables["topic"], json!("整改通知 K-7"));
    db.engine
        .complete(
            &tasks[0].id,
            "rectified",
            BTreeMap::new(),
            "li",
            at("2025-09-27T10:00:00+08:00"),
        )
        .await
        .unwrap();
    // The child's result flowed back; the parent now waits for the message.
    let ps = db.engine.store().load(&parent).await.unwrap().unwrap();
    assert_eq!(ps.variables["interview_result"], json!("rectified"));
    assert_eq!(ps.current_steps(), ["await_review"]);
    assert_eq!(
        db.engine
            .store()
            .awaiting("reconsideration_decided", "K-7")
            .await
            .unwrap(),
        std::slice::from_ref(&parent)
    );
    // A message with another key reaches nobody; the right one moves the parent on.
    assert!(db
        .engine
        .message(
            "reconsideration_decided",
            "K-8",
            BTreeMap::new(),
            at("2025-10-01T10:00:00+08:00")
        )
        .await
        .is_err());
    let ids = db
        .engine
        .message(
            "reconsideration_decided",
            "K-7",
            vars(&[("reconsideration_result", json!("维持"))]),
            at("2025-10-01T10:00:00+08:00"),
        )
        .await
        .unwrap();
    assert_eq!(ids, std::slice::from_ref(&parent));
    let ps = db.engine.store().load(&parent).await.unwrap().unwrap();
    assert_eq!(
        ps.status,
        Status::Completed {
            result: "ok".into()
        }
    );
    assert!(db
        .engine
        .store()
        .awaiting("reconsideration_decided", "K-7")
        .await
        .unwrap()
        .is_empty());
}

/// A process claims due timers and dies before applying them: nobody else
/// may take them while the lease holds; once it has expired another engine
/// applies each exactly once.
/// Issue 12, found 3: a restarted `serve` waited the lease out on claims of
/// a process that was gone, and spun meanwhile. A claim's lease now counts
/// in `next_due` (no spinning), and claims given back — by their owner at
/// shutdown, or all of them by a process that knows it is alone — can be
/// taken at once. Held timers of a stuck instance stay held.
async fn given_back_claims_are_taken_at_once<S: Store>(db: Db<S>) {
    let id = start_letter(&db).await;
    let store = db.engine.store();
    let timers = store.load(&id).await.unwrap().unwrap().timers;
    let due = timers.values().map(|t| t.due).min().unwrap();
    let lease = due + chrono::Duration::seconds(60);
    let claimed = store.claim_due(due, 100, "gone", lease).await.unwrap();
    assert!(!claimed.is_empty());
    assert_eq!(store.next_due().await.unwrap(), Some(lease));
    assert!(store
        .claim_due(due, 100, "new", lease)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.release_timers(Some("someone else")).await.unwrap(), 0);
    assert_eq!(
        store.release_timers(None).await.unwrap(),
        claimed.len() as u64
    );
    assert_eq!(store.next_due().await.unwrap(), Some(due));
    let again = store.claim_due(due, 100, "new", lease).await.unwrap();
    assert_eq!(again.len(), claimed.len());
    assert_eq!(
        store.release_timers(Some("new")).await.unwrap(),
        claimed.len() as u64
    );
    // Outbox rows the same way: by id, or all.
    let rows = store
        .claim_outbox(OutboxKind::Email, due, 100, lease)
        .await
        .unwrap();
    assert!(!rows.is_empty());
    assert!(store
        .claim_outbox(OutboxKind::Email, due, 100, lease)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.release_outbox(Some(&[rows[0].id])).await.unwrap(), 1);
    let one = store
        .claim_outbox(OutboxKind::Email, due, 100, lease)
        .await
        .unwrap();
    assert_eq!(one.iter().map(|r| r.id).collect::<Vec<_>>(), [rows[0].id]);
    assert_eq!(store.release_outbox(None).await.unwrap(), rows.len() as u64);
}

async fn a_crashed_claim_expires_and_another_engine_takes_over<S: Store>(db: Db<S>) {
    use duban_engine::scheduler::{Scheduler, SchedulerOptions};
    let id = start_letter(&db).await;
    let due = db
        .engine
        .store()
        .load(&id)
        .await
        .unwrap()
        .unwrap()
        .timers
        .values()
        .map(|t| t.due)
        .min()
        .unwrap();
    let claimed = db
        .engine
        .store()
        .claim_due(due, 100, "crashed", due + chrono::Duration::seconds(60))
        .await
        .unwrap();
    assert!(!claimed.is_empty());
    let other = Scheduler::new(
        db.engine.clone(),
        SchedulerOptions {
            owner: "other".into(),
            ..Default::default()
        },
    );
    let early = other
        .fire_due(
            due + chrono::Duration::seconds(30),
            Some(DateTime::<Utc>::MIN_UTC),
        )
        .await
        .unwrap();
    assert_eq!(early.fired, 0, "the lease still holds");
    let late = other
        .fire_due(
            due + chrono::Duration::seconds(61),
            Some(DateTime::<Utc>::MIN_UTC),
        )
        .await
        .unwrap();
    assert_eq!(late.fired, claimed.len());
    let reminders = db
        .engine
        .store()
        .history(&id)
        .await
        .unwrap()
        .iter()
        .filter(|h| h.what == HistoryKind::Reminder)
        .count();
    assert_eq!(reminders, claimed.len());
    assert_eq!(
        other
            .fire_due(
                due + chrono::Duration::seconds(62),
                Some(DateTime::<Utc>::MIN_UTC)
            )
            .await
            .unwrap()
            .fired,
        0
    );
}

/// A dead outbox row stays until an administrator retries it.
async fn dead_outbox_rows_can_be_retried<S: Store>(db: Db<S>) {
    start_letter(&db).await;
    let store = &db.engine.store();
    let now = at("2025-09-26T10:00:00+08:00");
    let rows = store
        .claim_outbox(
            OutboxKind::Email,
            now,
            1,
            now + chrono::Duration::seconds(60),
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let id = rows[0].id;
    store
        .outbox_failed(id, "550 mailbox unavailable", None)
        .await
        .unwrap();
    let dead = store.outbox(Some(OutboxStatus::Dead)).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].attempts, dead[0].last_error.as_deref()),
        (1, Some("550 mailbox unavailable"))
    );
    assert!(
        store
            .claim_outbox(
                OutboxKind::Email,
                now + chrono::Duration::hours(1),
                100,
                now + chrono::Duration::hours(2)
            )
            .await
            .unwrap()
            .iter()
            .all(|r| r.id != id),
        "dead rows are not claimed"
    );
    assert!(store.outbox_retry(id, now).await.unwrap());
    assert!(
        !store.outbox_retry(id, now).await.unwrap(),
        "only dead rows are retried"
    );
    let again = store
        .claim_outbox(
            OutboxKind::Email,
            now,
            100,
            now + chrono::Duration::seconds(60),
        )
        .await
        .unwrap();
    assert!(again.iter().any(|r| r.id == id && r.attempts == 0));
}

/// The transition `event` makes on `id` (or a new instance of `process`),
/// not stored, with the revision it was computed from.
async fn transition<S: Store>(
    db: &Db<S>,
    process: &str,
    id: Option<&str>,
    event: &Event,
    now: DateTime<Utc>,
) -> (Option<u64>, Transition) {
    let state = match id {
        Some(id) => db.engine.store().load(id).await.unwrap(),
        None => None,
    };
    let def = db.engine.definition(process, None).await.unwrap();
    let t = db
        .engine
        .compute(&def, state.as_ref(), event, now)
        .await
        .unwrap();
    (state.map(|s| s.revision), t)
}

/// The transition `event` makes on `id` (or a new instance of `process`),
/// committed without carrying out what it asks of other instances: the
/// state a crash right after the commit leaves.
async fn commit_alone<S: Store>(
    db: &Db<S>,
    process: &str,
    id: Option<&str>,
    event: &Event,
    now: DateTime<Utc>,
) {
    let (prev, t) = transition(db, process, id, event, now).await;
    db.engine.store().commit(prev, &t, now).await.unwrap();
}

/// What the store holds of instance `id`, to compare before and after.
async fn footprint<S: Store>(db: &Db<S>, id: &str) -> Json {
    let store = db.engine.store();
    let tasks: Vec<String> = store
        .tasks(&TaskFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    json!({
        "state": store.load(id).await.unwrap(),
        "instances": store.instances(None, None).await.unwrap().len(),
        "tasks": tasks,
        "timers": store.pending_timers(id).await.unwrap(),
        "next_due": store.next_due().await.unwrap(),
        "outbox": store.outbox(None).await.unwrap().len(),
        "history": store.history(id).await.unwrap().len(),
    })
}

/// A commit refused part-way, here by its last command (a task or timer id
/// the same commit already stored: a key violation in SQL), writes nothing,
/// on a start as on a later transition. `faults_leave_the_previous_or_the_next_state`
/// proves the same between every two SQL statements.
async fn a_refused_commit_writes_nothing<S: Store>(db: Db<S>) {
    let now = at("2025-09-26T10:00:00+08:00");
    let store = db.engine.store();
    let start = Event::Start {
        instance: "X1".into(),
        profile: None,
        variables: vars(&[
            ("agency", json!("market_bureau")),
            ("case_no", json!("许司督〔2025〕1号")),
            ("problem", json!("未落实公示制度")),
        ]),
        actor: "li".into(),
    };
    let (prev, mut t) = transition(&db, "supervision_letter", None, &start, now).await;
    let empty = footprint(&db, "X1").await;
    let timer = t
        .commands
        .iter()
        .find(|c| matches!(c, Command::ScheduleTimer { .. }))
        .expect("the start schedules timers")
        .clone();
    t.commands.push(timer);
    let err = store.commit(prev, &t, now).await.unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err}");
    assert_eq!(footprint(&db, "X1").await, empty);
    // The transition as made is stored whole.
    t.commands.pop();
    store.commit(prev, &t, now).await.unwrap();
    let started = footprint(&db, "X1").await;
    assert_ne!(started, empty);
    assert!(store.outbox_pending().await.unwrap() > 0);

    let task = open_task(&db, "X1", "draft_letter").await;
    let done = Event::Complete {
        task,
        outcome: "issue".into(),
        variables: vars(&[
            ("letter_kind", json!("督办函")),
            ("reply_period", json!("30日")),
        ]),
        actor: "li".into(),
    };
    let later = at("2025-09-27T10:00:00+08:00");
    let (prev, mut t) = transition(&db, "supervision_letter", Some("X1"), &done, later).await;
    let open = t
        .commands
        .iter()
        .find(|c| matches!(c, Command::OpenTask { .. }))
        .expect("the completion opens the notice")
        .clone();
    t.commands.push(open);
    let err = store.commit(prev, &t, later).await.unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err}");
    assert_eq!(footprint(&db, "X1").await, started);
    t.commands.pop();
    store.commit(prev, &t, later).await.unwrap();
    assert_eq!(
        store.load("X1").await.unwrap().unwrap().current_steps(),
        ["await_report"]
    );
}

/// A stuck instance's timer rows are kept but held: no claim takes them
/// and `next_due` leaves them out, until a retry carries the event out.
async fn stuck_timers_are_held_until_a_retry<S: Store>(db: Db<S>) {
    use duban_engine::scheduler::{Scheduler, SchedulerOptions};
    let t0 = at("2026-03-02T10:00:00+08:00");
    let dir = duban_tests::root().join("tests/data/faults");
    db.engine.deploy(&[dir], t0).await.unwrap();
    let store = db.engine.store();
    let id = db
        .engine
        .start("unset_recipient", None, BTreeMap::new(), "li", t0)
        .await
        .unwrap()
        .state
        .id;
    let state = store.load(&id).await.unwrap().unwrap();
    let expiry = state.timers.values().map(|t| t.due).min().unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(expiry));
    let s = Scheduler::new(db.engine.clone(), SchedulerOptions::default());
    let r = s
        .fire_due(at("2026-03-10T09:00:00+08:00"), None)
        .await
        .unwrap();
    assert_eq!((r.fired, r.stale, r.stuck), (0, 0, 1), "{r:?}");
    let state = store.load(&id).await.unwrap().unwrap();
    assert_eq!(state.status.name(), "stuck");
    assert_eq!(store.instances(Some("stuck"), None).await.unwrap().len(), 1);
    let timers = store.pending_timers(&id).await.unwrap();
    assert_eq!(timers, state.timers.keys().cloned().collect::<Vec<_>>());
    assert_eq!(timers.len(), 1, "the expiry timer row is kept");
    assert_eq!(
        store.next_due().await.unwrap(),
        None,
        "held timers are left out"
    );
    let later = at("2027-01-01T00:00:00+08:00");
    let claimed = store
        .claim_due(later, 100, "other", later + chrono::Duration::seconds(60))
        .await
        .unwrap();
    assert!(
        claimed.is_empty(),
        "a held timer is not claimed: {claimed:?}"
    );

    // Fix the cause and retry: the escalation happens, once.
    let now = at("2026-03-10T10:00:00+08:00");
    db.engine
        .set_variables(&id, vars(&[("agency", json!("market_bureau"))]), "li", now)
        .await
        .unwrap();
    db.engine.retry(&id, "li", now).await.unwrap();
    let state = store.load(&id).await.unwrap().unwrap();
    assert_eq!(state.status.name(), "running");
    assert_eq!(state.current_steps(), ["warn_agency"]);
    assert_eq!(
        store.pending_timers(&id).await.unwrap(),
        state.timers.keys().cloned().collect::<Vec<_>>()
    );
    assert_eq!(
        store.next_due().await.unwrap(),
        state.timers.values().map(|t| t.due).min()
    );
    let expired = store
        .history(&id)
        .await
        .unwrap()
        .iter()
        .filter(|h| h.what == HistoryKind::Expired)
        .count();
    assert_eq!(expired, 1);
    assert_eq!(s.fire_due(later, None).await.unwrap(), Default::default());
}

/// One engine steps a virtual clock through 2026: every occurrence of every
/// recurring start yields exactly one instance, and the cursors only move
/// forward. (On PostgreSQL, three engines race for the same occurrences in
/// `recurring_starts_under_three_engines_over_a_year` below.)
/// How many occurrences of recurring starts made instances: their ids are
/// `PROCESS-RULE-YYYYMMDDHHMM[-MEMBER]`, one per member for a per-member
/// start (a called child's id is of another form).
fn recurring_occurrences(rows: &[duban_engine::store::InstanceRow]) -> usize {
    rows.iter()
        .filter_map(|r| {
            let parts: Vec<&str> = r.id.split('-').collect();
            (parts.len() >= 3
                && parts[1].chars().all(|c| c.is_ascii_digit())
                && parts[2].len() == 12
                && parts[2].chars().all(|c| c.is_ascii_digit()))
            .then(|| parts[..3].join("-"))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

async fn recurring_starts_over_a_year<S: Store>(db: Db<S>) {
    use duban_engine::scheduler::{Scheduler, SchedulerOptions};
    let dir = duban_tests::root().join("tests/data/cron");
    db.engine
        .deploy(&[dir], at("2025-12-31T00:00:00+08:00"))
        .await
        .unwrap();
    let store = db.engine.store();
    let s = Scheduler::new(db.engine.clone(), SchedulerOptions::default());
    let mut now = at("2026-01-01T00:00:00+08:00");
    let end = at("2027-01-01T00:00:00+08:00");
    let mut started = 0;
    while now < end {
        started += s.start_recurring(now).await.unwrap().started;
        now += chrono::Duration::days(1);
    }
    // 52 Mondays in 2026, 1 + 2 + 1 yearly and half-yearly occurrences;
    // the library's own recurring starts (annual reports, meetings …) run
    // too, each once: every start made one instance.
    let instances = store.instances(None, Some("recurring")).await.unwrap();
    assert_eq!(instances.len(), 56);
    let all = recurring_occurrences(&store.instances(None, None).await.unwrap());
    assert_eq!(started, all);
    let last_monday = at("2026-12-28T08:00:00+08:00");
    assert_eq!(
        store.cron_cursor("recurring", 3).await.unwrap(),
        Some(last_monday)
    );
    store
        .advance_cron_cursor("recurring", 3, at("2026-06-01T08:00:00+08:00"))
        .await
        .unwrap();
    assert_eq!(
        store.cron_cursor("recurring", 3).await.unwrap(),
        Some(last_monday),
        "a cursor never moves back"
    );
    assert_eq!(store.cron_cursor("recurring", 9).await.unwrap(), None);
    assert_eq!(s.start_recurring(end).await.unwrap().started, 0);
}

/// A crash after a parent's commit and before its child starts, and one
/// after a child ends and before its parent hears of it: the outbox rows
/// those commits wrote let the scheduler finish both, once.
async fn an_interrupted_call_is_finished_from_the_outbox<S: Store>(db: Db<S>) {
    use duban_engine::scheduler::{Scheduler, SchedulerOptions};
    let dir = duban_tests::root().join("tests/data/call");
    let now = at("2025-09-26T10:00:00+08:00");
    db.engine.deploy(&[dir], now).await.unwrap();
    let start = Event::Start {
        instance: "P1".into(),
        profile: None,
        variables: vars(&[
            ("agency", json!("market_bureau")),
            ("case_no", json!("K-1")),
        ]),
        actor: "li".into(),
    };
    commit_alone(&db, "call_parent", None, &start, now).await;
    let store = &db.engine.store();
    assert!(
        store
            .tasks(&TaskFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "no child yet"
    );
    let s = Scheduler::new(db.engine.clone(), SchedulerOptions::default());
    let r = s.replay_child_starts(now).await.unwrap();
    assert_eq!(r.children, 1);
    let child = "P1-interview-1";
    let cs = store
        .load(child)
        .await
        .unwrap()
        .expect("the child was started");
    assert_eq!(cs.variables["topic"], json!("整改通知 K-1"));
    assert_eq!(
        store.parent_of(child).await.unwrap(),
        Some(("P1".into(), "interview".into()))
    );
    // Replaying again starts nothing more.
    for row in store.outbox(Some(OutboxStatus::Sent)).await.unwrap() {
        db.engine.replay_call(&row, now).await.unwrap();
    }
    assert_eq!(s.replay_child_starts(now).await.unwrap().children, 0);
    assert_eq!(store.tasks(&TaskFilter::default()).await.unwrap().len(), 1);

    // The child ends; the crash comes before the parent hears of it.
    let task = open_task(&db, child, "record").await;
    let done = Event::Complete {
        task,
        outcome: "rectified".into(),
        variables: BTreeMap::new(),
        actor: "li".into(),
    };
    commit_alone(&db, "call_child", Some(child), &done, now).await;
    assert_eq!(
        store.load("P1").await.unwrap().unwrap().current_steps(),
        ["interview"]
    );
    let r = s.replay_child_starts(now).await.unwrap();
    assert_eq!(r.children, 1);
    let ps = store.load("P1").await.unwrap().unwrap();
    assert_eq!(ps.variables["interview_result"], json!("rectified"));
    assert_eq!(ps.current_steps(), ["await_review"]);
    // Handing back again changes nothing: the parent no longer waits.
    let rev = ps.revision;
    for row in store.outbox(Some(OutboxStatus::Sent)).await.unwrap() {
        db.engine.replay_call(&row, now).await.unwrap();
    }
    assert_eq!(store.load("P1").await.unwrap().unwrap().revision, rev);
    let history = store.history("P1").await.unwrap();
    assert_eq!(
        history
            .iter()
            .filter(|h| h.what == HistoryKind::ChildEnded)
            .count(),
        1
    );
}

/// One `#[tokio::test]` per name, on a fresh store from `$backend()`.
/// Issue 13, facts about a person: a meeting's outcome records a fact in
/// its own transaction; the term of the same person, another process,
/// reads it after the next meeting; `facts_about` and the person's history
/// show it. A definition that reads facts about an id none of its person
/// or agency variables holds gets them loaded on demand.
async fn facts_are_kept_with_their_transition_and_read_across_processes<S: Store>(db: Db<S>) {
    let probe = tempfile::tempdir().unwrap();
    std::fs::write(
        probe.path().join("probe.yaml"),
        "id: facts_probe\nversion: 1\nname: 探查\nroles: { supervision_office: 监督机构 }\n\
         variables: { who: { type: string, required: true }, absences: { type: int } }\n\
         start: look\nsteps:\n  look:\n    kind: decision\n    name: 看\n    branches:\n\
         \x20     - { when: \"true\", goto: done, set: { absences: \"streak(who, 'attendance', 'absent')\" } }\n\
         \x20   default: done\n  done: { kind: end, name: 完, result: done }\n",
    )
    .unwrap();
    db.engine
        .deploy(
            &[
                duban_tests::root().join("tests/data/facts"),
                probe.path().to_path_buf(),
            ],
            at("2025-09-01T09:00:00+08:00"),
        )
        .await
        .unwrap();
    let t0 = at("2025-09-22T10:00:00+08:00");
    let term = db
        .engine
        .start(
            "facts_term",
            None,
            vars(&[("supervisor", json!("wang"))]),
            "li",
            t0,
        )
        .await
        .unwrap()
        .state
        .id;
    for (n, day) in [(1, "2025-10-09"), (2, "2026-01-15")] {
        let now = at(&format!("{day}T10:00:00+08:00"));
        let m = db
            .engine
            .start(
                "facts_meeting",
                None,
                vars(&[("members", json!(["wang", "zhao"]))]),
                "li",
                now,
            )
            .await
            .unwrap();
        let mut tasks: Vec<_> = m.state.tasks.values().collect();
        tasks.sort_by_key(|t| t.id.clone());
        for (t, outcome) in tasks.iter().zip(["absent", "present"]) {
            db.engine
                .complete(&t.id, outcome, BTreeMap::new(), "li", now)
                .await
                .unwrap();
        }
        // The meeting's message to the terms, as serve's worker delivers it.
        for row in db.engine.outbox(None).await.unwrap() {
            if row.kind == OutboxKind::SendMessage && row.instance == m.state.id {
                db.engine.replay_call(&row, now).await.unwrap();
            }
        }
        let facts = db.engine.facts_about("wang").await.unwrap();
        assert_eq!(facts[n - 1].name, "attendance", "{facts:?}");
        assert_eq!(facts[n - 1].value, json!("absent"));
        assert_eq!(facts[n - 1].process, "facts_meeting");
        assert_eq!(facts[n - 1].instance, m.state.id);
        assert_eq!(facts[n - 1].actor, "li");
    }
    let state = db.engine.instance(&term).await.unwrap();
    assert_eq!(
        state.status,
        Status::Completed {
            result: "dismissed".into()
        },
        "two absences in a row end the term"
    );
    let facts = db.engine.facts_about("wang").await.unwrap();
    assert_eq!(
        facts.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["attendance", "attendance", "dismissal_started"]
    );
    assert_eq!(facts[2].value, json!("2026-01-15"));
    let zhao = db.engine.facts_about("zhao").await.unwrap();
    assert_eq!(zhao.len(), 2);
    assert!(zhao.iter().all(|f| f.value == json!("present")));
    let lines = db.engine.person_history("wang").await.unwrap();
    let recorded: Vec<_> = lines
        .iter()
        .filter(|r| r.entry.what == HistoryKind::FactRecorded)
        .collect();
    assert_eq!(recorded.len(), 3, "{lines:?}");
    assert!(
        recorded[0].entry.note.as_deref().unwrap().contains("王芳"),
        "{:?}",
        recorded[0].entry.note
    );
    // `who` is a text: its facts are loaded when the core asks for them.
    let p = db
        .engine
        .start(
            "facts_probe",
            None,
            vars(&[("who", json!("wang"))]),
            "li",
            at("2026-01-16T10:00:00+08:00"),
        )
        .await
        .unwrap();
    assert_eq!(p.state.variables["absences"], json!(2));
}

/// Issue 13, reports over instances: the notices a `report` step and
/// `duban report` count come from the store's tasks and history — sent,
/// answered on time, answered after an escalation, open past the cut-off —
/// and an evaluation started on the store counts them into its variables.
async fn reports_count_the_notices_of_a_period<S: Store>(db: Db<S>) {
    use duban_engine::runtime::reports::ReportQuery;
    use duban_engine::scheduler::{Scheduler, SchedulerOptions};
    db.engine
        .deploy(
            &[duban_tests::root().join("tests/data/reports")],
            at("2025-01-01T09:00:00+08:00"),
        )
        .await
        .unwrap();
    let letter = |agency: &'static str, day: &'static str| {
        let engine = db.engine.clone();
        async move {
            let t = engine
                .start(
                    "report_letter",
                    None,
                    vars(&[("agency", json!(agency))]),
                    "li",
                    at(&format!("{day}T10:00:00+08:00")),
                )
                .await
                .unwrap();
            let id = t.state.open_tasks().next().unwrap().id.clone();
            id
        }
    };
    let reply = |task: String, agency: &'static str, day: &'static str| {
        let engine = db.engine.clone();
        async move {
            engine
                .complete(
                    &task,
                    "replied",
                    BTreeMap::new(),
                    agency,
                    at(&format!("{day}T10:00:00+08:00")),
                )
                .await
                .unwrap();
        }
    };
    let t1 = letter("market_bureau", "2025-03-03").await;
    reply(t1, "market_bureau", "2025-03-06").await;
    let t2 = letter("market_bureau", "2025-06-02").await;
    let s = Scheduler::new(db.engine.clone(), SchedulerOptions::default());
    s.fire_due(at("2025-06-20T10:00:00+08:00"), None)
        .await
        .unwrap();
    reply(t2, "market_bureau", "2025-06-30").await;
    let _open = letter("qiaoxi_env", "2025-11-03").await;
    let _next_year = letter("market_bureau", "2026-01-02").await;
    let q = ReportQuery {
        process: Some("report_letter".into()),
        step: Some("letter".into()),
        from: "2025-01-01".parse().unwrap(),
        until: "2025-12-31".parse().unwrap(),
    };
    let per = db
        .engine
        .report(&q, at("2026-01-05T10:00:00+08:00"))
        .await
        .unwrap();
    let m = &per["market_bureau"];
    assert_eq!(
        (m.opened, m.answered, m.on_time, m.overdue, m.escalated),
        (2, 2, 1, 1, 1),
        "{per:?}"
    );
    assert_eq!(m.average_days(), Some(15.5));
    let q2 = &per["qiaoxi_env"];
    assert_eq!(
        (q2.opened, q2.answered, q2.overdue),
        (1, 0, 1),
        "open past its cut-off"
    );
    assert_eq!(per.len(), 2);
    let e = db
        .engine
        .start(
            "report_evaluation",
            None,
            vars(&[
                ("agency", json!("market_bureau")),
                ("year_start", json!("2025-01-01")),
                ("year_end", json!("2025-12-31")),
            ]),
            "li",
            at("2026-01-05T10:00:00+08:00"),
        )
        .await
        .unwrap();
    let v = &e.state.variables;
    assert_eq!(
        (
            &v["sent"],
            &v["overdue"],
            &v["escalated"],
            &v["average_days"],
            &v["all_sent"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!("15.5"), &json!(3))
    );
}

/// Issue 14: API tokens are kept as hashes, authenticate until revoked,
/// and are refused at once after.
async fn api_tokens_authenticate_until_revoked<S: Store>(db: Db<S>) {
    let now = at("2026-01-05T10:00:00+08:00");
    let (t, secret) = db
        .engine
        .create_token(Some("li"), None, Some("办案系统"), now)
        .await
        .unwrap();
    assert!(secret.starts_with(&format!("dbn.{}.", t.id)));
    let got = db.engine.authenticate(&secret).await.unwrap().unwrap();
    assert_eq!(
        (got.person.as_deref(), got.note.as_deref()),
        (Some("li"), Some("办案系统"))
    );
    assert!(db
        .engine
        .authenticate(&secret.replace("dbn.", "dbx."))
        .await
        .unwrap()
        .is_none());
    assert!(db
        .engine
        .create_token(Some("nobody"), None, None, now)
        .await
        .is_err());
    assert!(db.engine.revoke_token(&t.id, now).await.unwrap());
    assert!(db.engine.authenticate(&secret).await.unwrap().is_none());
    assert!(!db.engine.revoke_token(&t.id, now).await.unwrap());
    let all = db.engine.tokens().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].revoked_at.map(|r| r.timestamp()),
        Some(now.timestamp())
    );
}

macro_rules! tests_on {
    ($backend:ident: $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            super::$name(super::$backend().await).await
        }
    )*};
}

/// The tests of `all` run on SQLite, PostgreSQL and the in-memory store;
/// those of `sql` only on SQLite and PostgreSQL.
macro_rules! conformance {
    (all: [$($name:ident),* $(,)?], sql: [$($sql:ident),* $(,)?] $(,)?) => {
        mod sqlite_store {
            tests_on!(sqlite: $($name,)* $($sql,)*);
        }
        mod postgres_store {
            tests_on!(postgres: $($name,)* $($sql,)*);
        }
        mod memory_store {
            tests_on!(memory: $($name,)*);
        }
    };
}

conformance!(
    all: [
        deploy_versions,
        invalid_definitions_are_refused,
        supervision_letter_end_to_end,
        dispute_end_to_end,
        fifty_parallel_completions_one_wins,
        fifty_parallel_commits_one_wins_49_conflict,
        history_instants_never_decrease,
        a_refused_commit_writes_nothing,
        refused_starts_write_nothing,
        messages_reach_waiting_instances,
        calls_and_messages,
        cancelling_a_case_cancels_its_called_children,
        a_call_that_cannot_start_refuses_its_caller,
        a_call_reached_by_a_timer_that_cannot_start_makes_the_caller_stuck,
        a_crashed_claim_expires_and_another_engine_takes_over,
        given_back_claims_are_taken_at_once,
        stuck_timers_are_held_until_a_retry,
        dead_outbox_rows_can_be_retried,
        an_interrupted_call_is_finished_from_the_outbox,
        recurring_starts_over_a_year,
        facts_are_kept_with_their_transition_and_read_across_processes,
        reports_count_the_notices_of_a_period,
        api_tokens_authenticate_until_revoked,
    ],
    // About SQL itself: faults injected between two SQL statements of a
    // commit (`SqlStore::inject_fault_after`); the in-memory store has no
    // statements to fail between, and `a_refused_commit_writes_nothing`
    // holds its atomicity instead.
    sql: [faults_leave_the_previous_or_the_next_state],
);

/// Three engines (three pools, as three processes would have) on one
/// PostgreSQL database step a virtual clock through 2026 together; every
/// occurrence of every recurring start yields exactly one instance.
/// PostgreSQL only: it is about several processes on one database (`FOR
/// UPDATE SKIP LOCKED`, the primary key refusing a second start); every
/// store runs `recurring_starts_over_a_year`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recurring_starts_under_three_engines_over_a_year() {
    use duban_engine::scheduler::{Scheduler, SchedulerOptions};
    let first = postgres().await;
    let dir = duban_tests::root().join("tests/data/cron");
    first
        .engine
        .deploy(&[dir], at("2025-12-31T00:00:00+08:00"))
        .await
        .unwrap();
    let url = first.engine.store().url().to_string();
    let mut schedulers = vec![Scheduler::new(
        first.engine.clone(),
        SchedulerOptions {
            owner: "a".into(),
            ..Default::default()
        },
    )];
    for owner in ["b", "c"] {
        let engine = Arc::new(
            Engine::new(SqlStore::open(&url).await.unwrap(), Calendar::builtin())
                .await
                .unwrap(),
        );
        schedulers.push(Scheduler::new(
            engine,
            SchedulerOptions {
                owner: owner.into(),
                ..Default::default()
            },
        ));
    }
    let mut now = at("2026-01-01T00:00:00+08:00");
    let end = at("2027-01-01T00:00:00+08:00");
    let mut started = 0;
    while now < end {
        let (a, b, c) = tokio::join!(
            schedulers[0].start_recurring(now),
            schedulers[1].start_recurring(now),
            schedulers[2].start_recurring(now)
        );
        started += a.unwrap().started + b.unwrap().started + c.unwrap().started;
        now += chrono::Duration::hours(6);
    }
    let instances = first
        .engine
        .store()
        .instances(None, Some("recurring"))
        .await
        .unwrap();
    // 52 Mondays in 2026, 1 + 2 + 1 yearly and half-yearly occurrences
    // (and the library's own recurring starts, each once).
    assert_eq!(instances.len(), 56);
    // Every occurrence was started; an occurrence of a per-member start
    // (the library's annual reports, one per agency) may be shared by
    // engines, each starting some of its members: instance ids are fixed
    // per occurrence and member, so none is started twice.
    let all = recurring_occurrences(&first.engine.store().instances(None, None).await.unwrap());
    assert!(started >= all, "{started} < {all}");
    let ids: std::collections::BTreeSet<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    for id in [
        "recurring-0-202612200900",
        "recurring-1-202601010900",
        "recurring-1-202607010900",
        "recurring-2-202603010900",
        "recurring-3-202601050800",
    ] {
        assert!(ids.contains(id), "{id} missing");
    }
    let state = first
        .engine
        .store()
        .load("recurring-0-202612200900")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.variables["kind"], json!("年终述职、集中考核"));
    // Running the year again starts nothing more.
    let again = schedulers[1].start_recurring(end).await.unwrap();
    assert_eq!(again.started, 0);
}
