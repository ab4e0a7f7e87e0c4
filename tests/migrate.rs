//! Migrating running instances to a corrected definition (issue 19,
//! docs/migration.md): twenty supervision-letter cases on the shipped
//! version, spread over the steps of the process, with deadlines counted
//! and reminders sent, moved to a version that renames a step and adds a
//! variable with a default; their deadlines keep their dates and their
//! remaining timers fire once, in order, under the new version. A plan to a
//! version without an occupied step is refused naming the instances and
//! the step, and the store is byte for byte what it was.
//!
//! On SQLite (a file, as in production) and on PostgreSQL
//! (`DUBAN_TEST_POSTGRES`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use duban_engine::calendar::Calendar;
use duban_engine::migration::MigrationRequest;
use duban_engine::runtime::{HistoryKind, InstanceState, TimerKind};
use duban_engine::scheduler::{Scheduler, SchedulerOptions};
use duban_engine::service::{Engine, ServiceError, Values};
use duban_engine::store::SqlStore;
use duban_tests::{
    at, drop_postgres, fresh_postgres, import_scenario_directory, open_task, processes, vars,
};
use sqlx::Connection;

/// A copy of the process library where `supervision_letter` is version
/// `version`, edited by `edit`.
fn library(dir: &Path, version: u32, edit: impl Fn(String) -> String) -> PathBuf {
    let lib = dir.join(format!("lib{version}"));
    copy_dir(&processes(), &lib);
    let _ = std::fs::remove_dir_all(lib.join("scenarios"));
    let file = lib.join("supervision_letter.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let text = edit(text)
        .lines()
        .map(|l| match l.strip_prefix("version: ") {
            Some(_) => format!("version: {version}"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&file, text).unwrap();
    lib
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

struct Case {
    engine: Arc<Engine<SqlStore>>,
}

impl Case {
    async fn start(&self, now: &str) -> String {
        self.start_in("XC", now).await
    }

    async fn start_in(&self, profile: &str, now: &str) -> String {
        let t = self
            .engine
            .start(
                "supervision_letter",
                Some(profile),
                vars(&[
                    ("agency", "market_bureau"),
                    ("case_no", "许司督〔2025〕7号"),
                    ("problem", "未落实行政执法公示制度"),
                ]),
                "li",
                at(now),
            )
            .await
            .unwrap();
        t.state.id
    }

    async fn state(&self, id: &str) -> InstanceState {
        self.engine.instance(id).await.unwrap()
    }

    async fn open(&self, id: &str, step: &str) -> String {
        open_task(&self.engine, id, step).await
    }

    async fn complete(
        &self,
        id: &str,
        step: &str,
        outcome: &str,
        v: &[(&str, &str)],
        actor: &str,
        now: &str,
    ) {
        let task = self.open(id, step).await;
        self.engine
            .complete(&task, outcome, vars(v), actor, at(now))
            .await
            .unwrap_or_else(|e| panic!("{id} {step} {outcome}: {e}"));
    }

    async fn issue(&self, id: &str, now: &str) {
        // 邢台 issues only 通知书 (邢台办法第十四条第一款).
        let kind = match self.state(id).await.profile.as_deref() {
            Some("XT") => "通知书",
            _ => "督办函",
        };
        self.complete(
            id,
            "draft_letter",
            "issue",
            &[("letter_kind", kind), ("reply_period", "10个工作日")],
            "li",
            now,
        )
        .await;
    }

    async fn receive(&self, id: &str, step: &str, now: &str) {
        let task = self.open(id, step).await;
        self.engine
            .receive(&task, "market_bureau", at(now))
            .await
            .unwrap();
    }

    async fn fire_until(&self, now: &str) {
        let s = Scheduler::new(self.engine.clone(), SchedulerOptions::default());
        // Rounds until nothing more is due (an expiry opens tasks whose own
        // timers may be due too).
        for _ in 0..20 {
            let r = s.fire_due(at(now), None).await.unwrap();
            if r.fired == 0 && r.stale == 0 {
                break;
            }
        }
    }
}

/// Every row of every table, in a fixed order: what "nothing was written"
/// is checked against.
async fn dump(url: &str) -> String {
    sqlx::any::install_default_drivers();
    let url = match url.starts_with("postgres") {
        true => url.to_string(),
        false => format!("sqlite://{url}?mode=ro"),
    };
    let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
    let mut out = String::new();
    for (table, key) in [
        ("instances", "id"),
        ("tasks", "id"),
        ("task_assignees", "task, person"),
        ("timers", "id"),
        ("history", "id"),
        ("history_people", "history, person"),
        ("outbox", "id"),
        ("children", "child"),
        ("awaited_messages", "name, key, instance"),
        ("definitions", "id, version"),
        ("counters", "name"),
        ("facts", "id"),
    ] {
        // Every column as text, so one query fits every table and both
        // databases.
        let cols: Vec<String> = match url.starts_with("postgres") {
            true => sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
                "SELECT column_name::text FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position"
            )))
            .fetch_all(&mut c)
            .await
            .unwrap(),
            false => sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
            )))
            .fetch_all(&mut c)
            .await
            .unwrap(),
        };
        let expr = cols
            .iter()
            .map(|c| format!("COALESCE(CAST({c} AS TEXT), 'NULL')"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let rows: Vec<String> = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
            "SELECT {expr} FROM {table} ORDER BY {key}"
        )))
        .fetch_all(&mut c)
        .await
        .unwrap();
        out.push_str(&format!("== {table} ({} rows)\n", rows.len()));
        for r in rows {
            out.push_str(&r);
            out.push('\n');
        }
    }
    out
}

async fn twenty_cases(url: String, dir: PathBuf) {
    let store = SqlStore::open(&url).await.unwrap();
    let engine = Arc::new(Engine::new(store, Calendar::builtin()).await.unwrap());
    import_scenario_directory(&engine).await;
    let v1 = library(&dir, 4, |t| t);
    engine
        .deploy(&[v1], at("2025-09-01T00:00:00Z"))
        .await
        .unwrap();
    let c = Case {
        engine: engine.clone(),
    };

    // Phase A, from 2025-09-26: letters whose answer period runs out.
    let mut late = vec![];
    for _ in 0..10 {
        let id = c.start("2025-09-26T10:00:00+08:00").await;
        c.issue(&id, "2025-09-26T11:00:00+08:00").await;
        c.receive(&id, "await_report", "2025-09-26T12:00:00+08:00")
            .await;
        late.push(id);
    }
    // Both reminders sent, the period expired, escalated: verify_exception.
    c.fire_until("2025-10-17T09:00:00+08:00").await;
    for id in &late[3..] {
        c.complete(
            id,
            "verify_exception",
            "verified",
            &[
                ("reconsideration_filed", "false"),
                ("litigation_filed", "false"),
            ],
            "li",
            "2025-10-17T10:00:00+08:00",
        )
        .await;
    }
    for id in &late[5..] {
        c.complete(
            id,
            "report_to_government",
            "reported",
            &[],
            "li",
            "2025-10-17T10:10:00+08:00",
        )
        .await;
    }
    for id in &late[7..] {
        c.complete(
            id,
            "government_decision",
            "decided",
            &[
                ("decision_kind", "责令限期履行"),
                ("decision_reason", "逾期不改正"),
            ],
            "zhao",
            "2025-10-17T10:20:00+08:00",
        )
        .await;
    }
    for id in &late[8..] {
        c.receive(id, "serve_decision", "2025-10-17T10:30:00+08:00")
            .await;
        c.complete(
            id,
            "serve_decision",
            "acknowledged",
            &[],
            "market_bureau",
            "2025-10-17T10:40:00+08:00",
        )
        .await;
    }
    c.complete(
        &late[8],
        "check_decision_execution",
        "not_executed",
        &[("execution_report", "逾期未履行")],
        "li",
        "2025-10-17T10:50:00+08:00",
    )
    .await;

    // Phase B, from 2025-10-17: letters still running on time.
    let mut fresh = vec![];
    for i in 0..10 {
        // The last one under 邢台's profile, where a refusal goes to the
        // office's decision to refer (there is no exception to verify).
        let profile = if i == 9 { "XT" } else { "XC" };
        let id = c.start_in(profile, "2025-10-17T11:00:00+08:00").await;
        if i >= 3 {
            c.issue(&id, "2025-10-17T11:10:00+08:00").await;
        }
        if i >= 5 {
            c.receive(&id, "await_report", "2025-10-17T11:20:00+08:00")
                .await;
        }
        if i == 9 {
            c.complete(
                &id,
                "await_report",
                "refused",
                &[("refusal_reason", "认为执法行为合法")],
                "market_bureau",
                "2025-10-17T11:30:00+08:00",
            )
            .await;
        } else if i >= 7 {
            c.complete(
                &id,
                "await_report",
                "handled",
                &[("handling_report", "已改正并公示")],
                "market_bureau",
                "2025-10-17T11:30:00+08:00",
            )
            .await;
        }
        fresh.push(id);
    }
    // A reminder of the running answer periods is sent before the migration.
    c.fire_until("2025-10-24T09:30:00+08:00").await;

    let all: Vec<String> = late.iter().chain(&fresh).cloned().collect();
    let mut before = BTreeMap::new();
    let mut steps = std::collections::BTreeSet::new();
    for id in &all {
        let s = c.state(id).await;
        assert_eq!(s.version, 4);
        steps.extend(s.current_steps());
        before.insert(id.clone(), s);
    }
    assert_eq!(
        steps.into_iter().collect::<Vec<_>>(),
        [
            "await_report",
            "check_decision_execution",
            "decide_referral",
            "draft_letter",
            "government_decision",
            "report_to_government",
            "review_report",
            "sanction",
            "serve_decision",
            "verify_exception"
        ],
        "the cases are spread over every task and notice step"
    );
    let sent_before = |s: &InstanceState| {
        s.tasks
            .values()
            .filter(|t| t.step == "await_report")
            .count()
    };
    assert!(before
        .values()
        .all(|s| sent_before(s) == 1 || s.current_steps() == ["draft_letter"]));

    // Version 5 renames `await_report` and adds a variable with a default.
    let v2 = library(&dir, 5, |t| {
        t.replace("await_report", "await_answer").replacen(
            "\nvariables:\n",
            "\nvariables:\n  urgency:\n    type: string\n    default: 一般\n    label: 紧急程度\n",
            1,
        )
    });
    engine
        .deploy(&[v2], at("2025-10-24T10:00:00+08:00"))
        .await
        .unwrap();
    let now = at("2025-10-24T10:05:00+08:00");
    let req = MigrationRequest {
        process: "supervision_letter".into(),
        from: 4,
        to: 5,
        map: vec![("await_report".into(), "await_answer".into())],
        recount: false,
        variables: Values::Text(vec![]),
        instances: None,
    };

    // Without the mapping, the instances at `await_report` are refused, by name.
    let unmapped = MigrationRequest {
        map: vec![],
        ..req.clone()
    };
    let refused = engine
        .migration_plan(&unmapped, "admin", now)
        .await
        .unwrap();
    let waiting: Vec<&String> = all
        .iter()
        .filter(|id| {
            before[*id]
                .current_steps()
                .contains(&"await_report".to_string())
        })
        .collect();
    assert_eq!(waiting.len(), 4);
    for p in &refused {
        let at_step = waiting.contains(&&p.instance);
        assert_eq!(!p.ok(), at_step, "{}: {:?}", p.instance, p.refusals);
        if at_step {
            assert!(p.refusals[0].contains("`await_report`"), "{:?}", p.refusals);
        }
    }

    let plans = engine.migration_plan(&req, "admin", now).await.unwrap();
    assert_eq!(
        plans.iter().map(|p| p.instance.clone()).collect::<Vec<_>>(),
        all,
        "the plan lists every instance"
    );
    assert!(plans.iter().all(|p| p.ok()), "{plans:#?}");
    assert!(plans.iter().all(|p| p
        .variables
        .iter()
        .any(|v| v.subject == "urgency" && v.what == "added")));
    let applied = engine.migration_apply(&req, "admin", now).await.unwrap();
    assert_eq!(applied.transitions.len(), 20);

    for id in &all {
        let old = &before[id];
        let new = c.state(id).await;
        assert_eq!(new.version, 5, "{id}");
        assert_eq!(new.variables["urgency"], "一般");
        for (tid, t) in &old.tasks {
            let n = &new.tasks[tid];
            assert_eq!(
                n.deadline, t.deadline,
                "{tid}: a counted deadline keeps its date"
            );
            let step = if t.step == "await_report" {
                "await_answer"
            } else {
                t.step.as_str()
            };
            assert_eq!(n.step, step);
        }
        let dues = |s: &InstanceState| {
            s.timers
                .values()
                .map(|t| (t.id.clone(), t.due))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            dues(&new),
            dues(old),
            "{id}: the timers keep their ids and dues"
        );
        let h = engine.history(id).await.unwrap();
        let last = h.last().unwrap();
        assert_eq!(last.what, HistoryKind::Migrated);
        assert_eq!(last.actor, "admin");
        assert!(
            last.note.as_deref().unwrap().contains("由第4版迁移至第5版"),
            "{:?}",
            last.note
        );
    }

    // The remaining timers fire once each, in due order, under version 5.
    let mut pending: BTreeMap<String, Vec<(String, DateTime<Utc>, TimerKind)>> = BTreeMap::new();
    for id in &all {
        let s = c.state(id).await;
        let mut v: Vec<_> = s
            .timers
            .values()
            .map(|t| (t.id.clone(), t.due, t.kind.clone()))
            .collect();
        v.sort_by_key(|(_, due, _)| *due);
        pending.insert(id.clone(), v);
    }
    let migrated_lines: BTreeMap<String, usize> = {
        let mut m = BTreeMap::new();
        for id in &all {
            m.insert(id.clone(), engine.history(id).await.unwrap().len());
        }
        m
    };
    c.fire_until("2025-12-31T09:00:00+08:00").await;
    let mut fired_under_v5 = 0;
    for id in &all {
        let h = engine.history(id).await.unwrap();
        let after = &h[migrated_lines[id]..];
        let timed: Vec<DateTime<Utc>> = after.iter().filter_map(|l| l.due).collect();
        let mut sorted = timed.clone();
        sorted.sort();
        assert_eq!(timed, sorted, "{id}: timers applied in due order");
        for (tid, due, kind) in &pending[id] {
            let what = match kind {
                TimerKind::Expiry { .. } | TimerKind::MessageTimeout { .. } => HistoryKind::Expired,
                TimerKind::Reminder { .. } => HistoryKind::Reminder,
                TimerKind::Wait { .. } => HistoryKind::Timer,
                TimerKind::DeemedReceipt { .. } => HistoryKind::Received,
            };
            let lines = after
                .iter()
                .filter(|l| l.due == Some(*due) && l.what == what)
                .count();
            let expected = pending[id]
                .iter()
                .filter(|(_, d, k)| {
                    d == due && std::mem::discriminant(k) == std::mem::discriminant(kind)
                })
                .count();
            assert_eq!(lines, expected, "{id}: timer {tid} ({kind:?}) applied once");
            fired_under_v5 += 1;
        }
        if before[id].current_steps() == ["await_report"]
            && before[id]
                .tasks
                .values()
                .any(|t| t.deadline.is_some() && t.closed.is_none())
        {
            assert!(
                after.iter().any(|l| l.what == HistoryKind::Expired
                    && l.step_before.as_deref() == Some("await_answer")),
                "{id}: the answer period expired at the renamed step: {after:#?}"
            );
        }
        assert!(c
            .engine
            .pending_timers(id)
            .await
            .unwrap()
            .iter()
            .all(|t| !pending[id].iter().any(|(p, _, _)| p == t)));
    }
    assert!(
        fired_under_v5 >= 10,
        "{fired_under_v5} timers fired after the migration"
    );

    // A version without `verify_exception` (renamed, no mapping): refused,
    // naming the instances there and the step; nothing written.
    let v3 = library(&dir, 6, |t| {
        t.replace("await_report", "await_answer")
            .replace("verify_exception", "check_exception_grounds")
            .replacen(
                "\nvariables:\n",
                "\nvariables:\n  urgency:\n    type: string\n    default: 一般\n    label: 紧急程度\n",
                1,
            )
    });
    engine
        .deploy(&[v3], at("2026-01-05T10:00:00+08:00"))
        .await
        .unwrap();
    let at_verify: Vec<String> = {
        let mut v = vec![];
        for id in &all {
            if c.state(id)
                .await
                .current_steps()
                .contains(&"verify_exception".to_string())
            {
                v.push(id.clone());
            }
        }
        v
    };
    assert!(!at_verify.is_empty());
    let dropped = MigrationRequest {
        from: 5,
        to: 6,
        map: vec![],
        ..req.clone()
    };
    let before_dump = dump(&url).await;
    let err = engine
        .migration_apply(&dropped, "admin", at("2026-01-05T10:05:00+08:00"))
        .await
        .unwrap_err();
    let ServiceError::MigrationRefused(plans) = &err else {
        panic!("{err}")
    };
    let message = err.to_string();
    for id in &at_verify {
        assert!(
            message.contains(&format!("instance {id}: step `verify_exception`")),
            "{message}"
        );
    }
    assert_eq!(
        plans.iter().filter(|p| !p.ok()).count(),
        at_verify.len(),
        "{message}"
    );
    assert_eq!(
        dump(&url).await,
        before_dump,
        "a refused migration writes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_cases_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("duban.db").display().to_string();
    twenty_cases(url, dir.path().to_path_buf()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_cases_on_postgres() {
    let url = fresh_postgres("mig").await;
    let dir = tempfile::tempdir().unwrap();
    twenty_cases(url.clone(), dir.path().to_path_buf()).await;
    drop_postgres(&url).await;
}
