//! Document numbers (发文字号, issue 20): a numbered document takes its
//! series' next number in the transaction of the step that issues it.
//! Fifty concurrent issuances get fifty distinct consecutive numbers — on
//! SQLite through the group-commit writer's shared transactions, on
//! PostgreSQL across three engine processes' pools on one database; a
//! transition that is refused or rolled back takes none; each year counts
//! from 1; each profile's prefix counts on its own.

use std::collections::BTreeSet;
use std::sync::Arc;

use duban_engine::calendar::Calendar;
use duban_engine::service::Engine;
use duban_engine::store::{SqlStore, Store};
use duban_tests::{at, drop_postgres, fresh_postgres, import_scenario_directory, processes, vars};
use futures_util::future::join_all;

async fn engine(url: &str, setup: bool) -> Arc<Engine<SqlStore>> {
    let e = Engine::new(SqlStore::open(url).await.unwrap(), Calendar::builtin())
        .await
        .unwrap();
    if setup {
        import_scenario_directory(&e).await;
        e.deploy(&[processes()], at("2025-09-01T00:00:00Z"))
            .await
            .unwrap();
    }
    Arc::new(e)
}

async fn letters(e: &Engine<SqlStore>, profile: &str, n: usize) -> Vec<String> {
    let mut ids = vec![];
    for i in 0..n {
        let t = e
            .start(
                "supervision_letter",
                Some(profile),
                vars(&[
                    ("agency", "market_bureau"),
                    ("case_no", &format!("案{i}")),
                    ("problem", "未落实行政执法公示制度"),
                ]),
                "li",
                at("2025-09-26T10:00:00+08:00"),
            )
            .await
            .unwrap();
        ids.push(t.state.id);
    }
    ids
}

/// Issues the letter of instance `id` (completing its draft), at `now`.
async fn issue(e: &Engine<SqlStore>, id: &str, now: &str) -> Result<(), String> {
    let s = e.instance(id).await.unwrap();
    let task = s
        .open_tasks()
        .find(|t| t.step == "draft_letter")
        .map(|t| t.id.clone())
        .ok_or("no draft")?;
    let kind = if s.profile.as_deref() == Some("XT") {
        "通知书"
    } else {
        "督办函"
    };
    e.complete(
        &task,
        "issue",
        vars(&[("letter_kind", kind), ("reply_period", "10个工作日")]),
        "li",
        at(now),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

async fn number_of(e: &Engine<SqlStore>, id: &str) -> Option<String> {
    e.instance(id)
        .await
        .unwrap()
        .variables
        .get("letter_no")
        .and_then(|v| v.as_str().map(str::to_string))
}

/// The numbers of `ids`, as integers of the pattern `prefix{n}号`.
async fn numbers(e: &Engine<SqlStore>, ids: &[String], prefix: &str) -> Vec<u64> {
    let mut out = vec![];
    for id in ids {
        let n = number_of(e, id)
            .await
            .unwrap_or_else(|| panic!("{id} has no number"));
        let digits = n
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix('号'))
            .unwrap_or_else(|| panic!("{n} is not {prefix}N号"));
        out.push(digits.parse().unwrap());
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_issuances_on_sqlite_get_fifty_consecutive_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("duban.db").display().to_string();
    let e = engine(&url, true).await;
    let ids = letters(&e, "XC", 52).await;
    let (first, rest) = ids.split_at(50);
    let done = join_all(
        first
            .iter()
            .map(|id| issue(&e, id, "2025-09-26T11:00:00+08:00")),
    )
    .await;
    assert!(done.iter().all(Result::is_ok), "{done:?}");
    assert_eq!(
        numbers(&e, first, "许司督〔2025〕").await,
        (1..=50).collect::<Vec<_>>()
    );

    // A refused transition takes no number: the draft of a case already
    // issued, and a transition rolled back by a fault in its transaction.
    assert!(issue(&e, &first[0], "2025-09-26T12:00:00+08:00")
        .await
        .is_err());
    e.store().inject_fault_after(Some(3));
    assert!(issue(&e, &rest[0], "2025-09-26T12:00:00+08:00")
        .await
        .is_err());
    e.store().inject_fault_after(None);
    assert_eq!(number_of(&e, &rest[0]).await, None);
    issue(&e, &rest[0], "2025-09-26T12:30:00+08:00")
        .await
        .unwrap();
    assert_eq!(
        number_of(&e, &rest[0]).await.as_deref(),
        Some("许司督〔2025〕51号")
    );

    // The rendered letter carries its number.
    let rows = e.outbox(None).await.unwrap();
    assert!(rows.iter().any(
        |r| r.kind == duban_engine::store::OutboxKind::RenderDocument && r.instance == rest[0]
    ));

    // A new year counts from 1; 邢台's prefix counts on its own.
    issue(&e, &rest[1], "2026-01-04T10:00:00+08:00")
        .await
        .unwrap();
    assert_eq!(
        number_of(&e, &rest[1]).await.as_deref(),
        Some("许司督〔2026〕1号")
    );
    let xt = letters(&e, "XT", 1).await;
    issue(&e, &xt[0], "2026-01-04T11:00:00+08:00")
        .await
        .unwrap();
    assert_eq!(
        number_of(&e, &xt[0]).await.as_deref(),
        Some("邢协督〔2026〕1号")
    );

    // A case number not typed at the start comes from its series; a typed
    // one is kept and takes none.
    let t = e
        .start(
            "supervision_letter",
            Some("XC"),
            vars(&[
                ("agency", "market_bureau"),
                ("problem", "未落实行政执法公示制度"),
            ]),
            "li",
            at("2026-01-05T10:00:00+08:00"),
        )
        .await
        .unwrap();
    let case = e.instance(&t.state.id).await.unwrap().variables["case_no"].clone();
    assert_eq!(case, "许司督案〔2026〕1号");

    let listed = e.store().numbers().await.unwrap();
    assert_eq!(
        listed,
        vec![
            ("number:许司督〔2025〕{n}号".to_string(), 51),
            ("number:许司督〔2026〕{n}号".to_string(), 1),
            ("number:许司督案〔2026〕{n}号".to_string(), 1),
            ("number:邢协督〔2026〕{n}号".to_string(), 1),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_issuances_across_three_postgres_processes_get_fifty_consecutive_numbers() {
    let url = fresh_postgres("num").await;
    let first = engine(&url, true).await;
    let ids = letters(&first, "XC", 51).await;
    // Three engines, each with its own pool, as three `serve` processes.
    let engines = [first, engine(&url, false).await, engine(&url, false).await];
    let done = join_all(
        ids[..50]
            .iter()
            .enumerate()
            .map(|(i, id)| issue(&engines[i % 3], id, "2025-09-26T11:00:00+08:00")),
    )
    .await;
    assert!(done.iter().all(Result::is_ok), "{done:?}");
    let e = &engines[0];
    assert_eq!(
        numbers(e, &ids[..50], "许司督〔2025〕").await,
        (1..=50).collect::<Vec<_>>()
    );
    let distinct: BTreeSet<_> = numbers(e, &ids[..50], "许司督〔2025〕")
        .await
        .into_iter()
        .collect();
    assert_eq!(distinct.len(), 50);
    // A refused one takes none.
    assert!(issue(e, &ids[0], "2025-09-26T12:00:00+08:00")
        .await
        .is_err());
    issue(e, &ids[50], "2025-09-26T12:00:00+08:00")
        .await
        .unwrap();
    assert_eq!(
        number_of(e, &ids[50]).await.as_deref(),
        Some("许司督〔2025〕51号")
    );
    for e in &engines {
        e.store().close().await;
    }
    drop_postgres(&url).await;
}
