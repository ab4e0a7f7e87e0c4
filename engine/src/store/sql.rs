//! [`Store`] on SQLite and PostgreSQL, one implementation through sqlx's
//! `Any` driver.
//!
//! Queries use `$N` placeholders, which both backends accept; the DDL
//! differs only in types and lives in `migrations/sqlite` and
//! `migrations/postgres`. Times are stored as milliseconds since the epoch,
//! JSON as text, so the same rows read the same on both.
//!
//! A commit begins with the compare-and-set `UPDATE … WHERE revision = N`:
//! on SQLite that first write takes the database's write lock at once
//! (waiting up to the busy timeout), so concurrent writers serialise and the
//! losers see a clean conflict rather than a failed lock upgrade. A start
//! numbered by the counter begins with the counter's `UPDATE` instead, so
//! the id is taken by the start's own transaction.
//!
//! Every transaction goes through `SqlStore::transaction`, which never
//! gives back to the pool a connection whose COMMIT or ROLLBACK failed:
//! after SQLite undid a transaction by itself (a full disk) such a
//! connection would hold the write lock for good (issue 12, found 7).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Row};

use super::sqlite_writer::{db, Build, StartError, Writer};
use super::writes::{self, Check, Val, WriteSet};
use super::*;
use super::{corrupt, from_ms, ms, HELD};
use crate::runtime::directory::{Agency, Person};
use crate::runtime::facts::Fact;
use crate::runtime::reports::{NoticeRecord, ReportQuery};
use crate::runtime::HistoryKind;

pub(crate) static SQLITE_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/sqlite");
pub(crate) static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/postgres");

/// The database behind a [`SqlStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The SQL store.
#[derive(Clone)]
pub struct SqlStore {
    url: String,
    pool: AnyPool,
    backend: Backend,
    /// Test hook: fail a commit after this many statements.
    fault_after: Arc<AtomicUsize>,
    /// SQLite: the group-commit writer every transition is stored through
    /// (`store::sqlite_writer`); `None` on PostgreSQL, where each commit is
    /// its own transaction on a pooled connection.
    writer: Option<Writer>,
}

/// The file of a SQLite URL (`None` for an in-memory database, which a
/// second connection would not see).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// Turns `./duban.db`, `sqlite:…` or `postgres://…` into a URL and backend.
pub fn parse_url(db: &str) -> (String, Backend) {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        (db.to_string(), Backend::Postgres)
    } else if db.starts_with("sqlite:") {
        let url = if db.contains('?') {
            db.to_string()
        } else {
            format!("{db}?mode=rwc")
        };
        (url, Backend::Sqlite)
    } else {
        (format!("sqlite://{db}?mode=rwc"), Backend::Sqlite)
    }
}

/// A store URL as it may be shown: the password of `scheme://user:password@host`
/// replaced by `***` (logs and errors are read by people who must not see it).
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

impl SqlStore {
    /// Opens (creating a SQLite file if needed) and migrates the store.
    pub async fn open(db: &str) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = parse_url(db);
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .connect(&url)
            .await
            .map_err(|e| StoreError::Database(format!("cannot open {}: {e}", redact(db))))?;
        let fault_after = Arc::new(AtomicUsize::new(usize::MAX));
        let mut writer = None;
        // A store written by a newer build is refused before anything is
        // written to it (no migration, no journal mode).
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&pool)
                .await
                .ok()
                .flatten();
        if let Err(e) =
            super::backup::check_schema(&redact(db), applied, backend == Backend::Postgres)
        {
            pool.close().await;
            return Err(e);
        }
        match backend {
            Backend::Sqlite => {
                sqlx::query("PRAGMA journal_mode=WAL")
                    .execute(&pool)
                    .await?;
                SQLITE_MIGRATIONS
                    .run(&pool)
                    .await
                    .map_err(|e| StoreError::Database(format!("migrating {}: {e}", redact(db))))?;
                if let Some(file) = sqlite_file(&url) {
                    writer = Some(Writer::open(&file, fault_after.clone())?);
                }
            }
            Backend::Postgres => {
                POSTGRES_MIGRATIONS
                    .run(&pool)
                    .await
                    .map_err(|e| StoreError::Database(format!("migrating {}: {e}", redact(db))))?;
            }
        }
        Ok(SqlStore {
            url: db.to_string(),
            pool,
            backend,
            fault_after,
            writer,
        })
    }

    /// The connection pool (backups run `VACUUM INTO` on it).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The location it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Test hook: make the next commits fail after `n` statements (rolling
    /// back); `None` turns it off. Used to prove commits are atomic.
    pub fn inject_fault_after(&self, n: Option<usize>) {
        self.fault_after
            .store(n.unwrap_or(usize::MAX), Ordering::SeqCst);
    }

    /// Closes the writer (after what is queued is committed) and the pool.
    pub async fn close(&self) {
        if let Some(w) = &self.writer {
            w.stop().await;
        }
        self.pool.close().await;
    }

    fn tick(&self, n: &mut usize) -> Result<(), StoreError> {
        if *n >= self.fault_after.load(Ordering::SeqCst) {
            return Err(StoreError::Injected(*n));
        }
        *n += 1;
        Ok(())
    }

    fn row_definition(r: &AnyRow) -> Result<StoredDefinition, StoreError> {
        Ok(StoredDefinition {
            id: r.try_get("id")?,
            version: r.try_get::<i64, _>("version")? as u32,
            hash: r.try_get("hash")?,
            source: r.try_get("source")?,
            files: r.try_get("files")?,
            file: r.try_get("file")?,
            deployed_at: from_ms(r.try_get("deployed_at")?),
        })
    }
}

impl Store for SqlStore {
    async fn deploy(&self, defs: &[StoredDefinition]) -> Result<Vec<Deployed>, StoreError> {
        self.transaction(async |tx| {
            let mut out = Vec::with_capacity(defs.len());
            for def in defs {
                let existing =
                    sqlx::query("SELECT hash FROM definitions WHERE id = $1 AND version = $2")
                        .bind(&def.id)
                        .bind(i64::from(def.version))
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(row) = existing {
                    let hash: String = row.try_get("hash")?;
                    if hash == def.hash {
                        out.push(Deployed::Unchanged);
                        continue;
                    }
                    // Rolled back: nothing of this deploy is stored.
                    return Err(StoreError::VersionChanged {
                        id: def.id.clone(),
                        version: def.version,
                    });
                }
                sqlx::query("INSERT INTO definitions (id, version, hash, source, files, file, deployed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(&def.id)
                    .bind(i64::from(def.version))
                    .bind(&def.hash)
                    .bind(&def.source)
                    .bind(&def.files)
                    .bind(&def.file)
                    .bind(ms(def.deployed_at))
                    .execute(&mut *tx)
                    .await?;
                out.push(Deployed::New);
            }
            Ok(out)
        })
        .await
    }

    async fn definition(
        &self,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredDefinition>, StoreError> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT * FROM definitions WHERE id = $1 AND version = $2")
                    .bind(id)
                    .bind(i64::from(v))
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM definitions WHERE id = $1 ORDER BY version DESC LIMIT 1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.as_ref().map(Self::row_definition).transpose()
    }

    async fn definitions(&self) -> Result<Vec<StoredDefinition>, StoreError> {
        let rows = sqlx::query("SELECT * FROM definitions ORDER BY id, version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::row_definition).collect()
    }

    async fn numbers(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, value FROM counters WHERE name LIKE 'number:%' ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("value")?)))
            .collect()
    }

    async fn definition_heads(&self) -> Result<Vec<DefinitionHead>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.version, d.deployed_at FROM definitions d \
             WHERE d.version = (SELECT MAX(version) FROM definitions WHERE id = d.id) ORDER BY d.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DefinitionHead {
                    id: r.try_get("id")?,
                    version: r.try_get::<i64, _>("version")? as u32,
                    deployed_at: from_ms(r.try_get("deployed_at")?),
                })
            })
            .collect()
    }

    async fn latest_version(&self, id: &str) -> Result<Option<u32>, StoreError> {
        if let Some(w) = &self.writer {
            // Asked before every start and call: on the caller's thread.
            let v: Option<i64> = w.read(|c| {
                c.prepare_cached("SELECT MAX(version) FROM definitions WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))
            })?;
            return Ok(v.and_then(|v| u32::try_from(v).ok()));
        }
        let r = sqlx::query("SELECT MAX(version) AS v FROM definitions WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get::<Option<i64>, _>("v")?
            .and_then(|v| u32::try_from(v).ok()))
    }

    async fn next_instance_id(&self) -> Result<String, StoreError> {
        let row = sqlx::query("SELECT value + 1 AS value FROM counters WHERE name = 'instance'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("value")?.to_string())
    }

    async fn load(&self, id: &str) -> Result<Option<InstanceState>, StoreError> {
        if let Some(w) = &self.writer {
            // Read on the caller's thread: one indexed row, no hand-over.
            let text = w.read(|c| {
                c.prepare_cached("SELECT state FROM instances WHERE id = ?1")?
                    .query_row([id], |r| r.get::<_, String>(0))
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })
            })?;
            return match text {
                None => Ok(None),
                Some(t) => serde_json::from_str(&t).map(Some).map_err(corrupt),
            };
        }
        let row = sqlx::query("SELECT state FROM instances WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let text: String = r.try_get("state")?;
                serde_json::from_str(&text).map(Some).map_err(corrupt)
            }
        }
    }

    async fn commit(
        &self,
        prev: Option<u64>,
        t: &Transition,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(w) = &self.writer {
            return w.commit(writes::transition(prev, t, now)?).await;
        }
        self.transaction(async |tx| self.write(tx, prev, t, now).await)
            .await
    }

    async fn commit_start<E: From<StoreError> + Send + 'static>(
        &self,
        now: DateTime<Utc>,
        build: impl FnOnce(String) -> Result<Transition, E> + Send + 'static,
    ) -> Result<Transition, E> {
        if let Some(w) = &self.writer {
            let build: Build = Box::new(move |id| match build(id) {
                Ok(t) => match writes::transition(None, &t, now) {
                    Ok(set) => Ok((t, set)),
                    Err(e) => Err(Box::new(E::from(e)) as Box<dyn std::any::Any + Send>),
                },
                Err(e) => Err(Box::new(e) as Box<dyn std::any::Any + Send>),
            });
            return match w.start(build).await {
                Ok(t) => Ok(t),
                Err(StartError::Build(e)) => Err(*e
                    .downcast::<E>()
                    .expect("a start's build fails with its own error")),
                Err(StartError::Store(e)) => Err(e.into()),
            };
        }
        self.transaction(async |tx| {
            // Taken by the start's own transaction, first: on SQLite this
            // takes the write lock; on PostgreSQL the counter's row waits
            // for the start before. A start that fails takes no id.
            let row = sqlx::query(
                "UPDATE counters SET value = value + 1 WHERE name = 'instance' RETURNING value",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            let id = row
                .try_get::<i64, _>("value")
                .map_err(StoreError::from)?
                .to_string();
            let t = build(id)?;
            self.write(tx, None, &t, now).await?;
            Ok(t)
        })
        .await
    }

    async fn instances(
        &self,
        status: Option<&str>,
        definition: Option<&str>,
    ) -> Result<Vec<InstanceRow>, StoreError> {
        let mut sql = String::from("SELECT id, definition, version, profile, status, started_at FROM instances WHERE 1 = 1");
        let mut args = Vec::new();
        if let Some(s) = status {
            args.push(s.to_string());
            sql.push_str(&format!(" AND status = ${}", args.len()));
        }
        if let Some(d) = definition {
            args.push(d.to_string());
            sql.push_str(&format!(" AND definition = ${}", args.len()));
        }
        sql.push_str(" ORDER BY started_at, id");
        // Only placeholders and fixed fragments are spliced in; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in &args {
            q = q.bind(a);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(InstanceRow {
                    id: r.try_get("id")?,
                    definition: r.try_get("definition")?,
                    version: r.try_get::<i64, _>("version")? as u32,
                    profile: r.try_get("profile")?,
                    status: r.try_get("status")?,
                    started_at: from_ms(r.try_get("started_at")?),
                })
            })
            .collect()
    }

    async fn tasks(&self, f: &TaskFilter) -> Result<Vec<TaskRow>, StoreError> {
        let mut sql = String::from("SELECT id, instance, step, kind, assignees, opened_at, due, last_day FROM tasks WHERE closed_at IS NULL");
        let mut texts: Vec<String> = Vec::new();
        if let Some(a) = &f.assignee {
            texts.push(a.clone());
            sql.push_str(&format!(
                " AND id IN (SELECT task FROM task_assignees WHERE person = ${})",
                texts.len()
            ));
        }
        if let Some(holders) = &f.role_holders {
            if holders.is_empty() {
                return Ok(Vec::new());
            }
            let mut marks = Vec::new();
            for h in holders {
                texts.push(h.clone());
                marks.push(format!("${}", texts.len()));
            }
            sql.push_str(&format!(
                " AND id IN (SELECT task FROM task_assignees WHERE person IN ({}))",
                marks.join(", ")
            ));
        }
        if f.overdue_at.is_some() {
            sql.push_str(&format!(
                " AND due IS NOT NULL AND due <= ${}",
                texts.len() + 1
            ));
        }
        sql.push_str(" ORDER BY opened_at, id");
        // Only placeholders and fixed fragments are spliced in; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for t in &texts {
            q = q.bind(t);
        }
        if let Some(at) = f.overdue_at {
            q = q.bind(ms(at));
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let assignees: String = r.try_get("assignees")?;
                Ok(TaskRow {
                    id: r.try_get("id")?,
                    instance: r.try_get("instance")?,
                    step: r.try_get("step")?,
                    kind: {
                        let k: String = r.try_get("kind")?;
                        TaskKind::parse(&k).ok_or_else(|| corrupt(format!("task kind `{k}`")))?
                    },
                    assignees: serde_json::from_str(&assignees).map_err(corrupt)?,
                    opened_at: from_ms(r.try_get("opened_at")?),
                    due: r.try_get::<Option<i64>, _>("due")?.map(from_ms),
                    last_day: r.try_get("last_day")?,
                })
            })
            .collect()
    }

    async fn history(&self, instance: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows = sqlx::query("SELECT * FROM history WHERE instance = $1 ORDER BY id")
            .bind(instance)
            .fetch_all(&self.pool)
            .await?;
        let people = sqlx::query("SELECT history, person FROM history_people WHERE instance = $1")
            .bind(instance)
            .fetch_all(&self.pool)
            .await?;
        let mut by_id: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
        for p in &people {
            by_id
                .entry(p.try_get("history")?)
                .or_default()
                .push(p.try_get("person")?);
        }
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get("id")?;
                history_entry(r, by_id.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    async fn person_history(&self, person: &str) -> Result<Vec<HistoryRow>, StoreError> {
        let rows = sqlx::query("SELECT h.* FROM history_people p JOIN history h ON h.id = p.history WHERE p.person = $1 ORDER BY h.at, h.id")
            .bind(person)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryRow {
                    instance: r.try_get("instance")?,
                    entry: history_entry(r, vec![person.to_string()])?,
                })
            })
            .collect()
    }

    async fn create_token(&self, t: &ApiToken) -> Result<(), StoreError> {
        let done = sqlx::query("INSERT INTO api_tokens (id, hash, person, role, note, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)")
            .bind(&t.id)
            .bind(&t.hash)
            .bind(t.person.clone())
            .bind(t.role.clone())
            .bind(t.note.clone())
            .bind(ms(t.created_at))
            .execute(&self.pool)
            .await;
        match done {
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                Err(StoreError::Conflict(t.id.clone()))
            }
            Err(e) => Err(e.into()),
            Ok(_) => Ok(()),
        }
    }

    async fn token(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(api_token).transpose()
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(api_token).collect()
    }

    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(ms(at))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn notices(&self, q: &ReportQuery) -> Result<Vec<NoticeRecord>, StoreError> {
        let (start, end) = q.window();
        let mut sql = String::from(
            "SELECT t.instance, i.definition AS process, t.step, t.assignees, t.opened_at, t.due, t.closed_at, t.outcome, \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM history h WHERE h.instance = t.instance AND h.what = 'escalated' AND h.step_before = t.step) THEN 1 ELSE 0 END AS BIGINT) AS escalated \
             FROM tasks t JOIN instances i ON i.id = t.instance \
             WHERE t.kind = 'notice' AND t.opened_at >= $1 AND t.opened_at < $2",
        );
        let mut n = 2;
        for (col, v) in [("i.definition", &q.process), ("t.step", &q.step)] {
            if v.is_some() {
                n += 1;
                sql.push_str(&format!(" AND {col} = ${n}"));
            }
        }
        sql.push_str(" ORDER BY t.opened_at, t.id");
        // Only fixed column names and placeholders are formatted in.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ms(start))
            .bind(ms(end));
        for v in [&q.process, &q.step].into_iter().flatten() {
            query = query.bind(v.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let to: String = r.try_get("assignees")?;
                Ok(NoticeRecord {
                    instance: r.try_get("instance")?,
                    process: r.try_get("process")?,
                    step: r.try_get("step")?,
                    to: serde_json::from_str(&to).map_err(corrupt)?,
                    opened_at: from_ms(r.try_get("opened_at")?),
                    due: r.try_get::<Option<i64>, _>("due")?.map(from_ms),
                    closed_at: r.try_get::<Option<i64>, _>("closed_at")?.map(from_ms),
                    outcome: r.try_get("outcome")?,
                    escalated: r.try_get::<i64, _>("escalated")? != 0,
                })
            })
            .collect()
    }

    async fn facts(&self, subjects: &BTreeSet<String>) -> Result<Vec<Fact>, StoreError> {
        // In chunks, each one query with a placeholder per subject.
        let subjects: Vec<&String> = subjects.iter().collect();
        let mut rows = Vec::new();
        for chunk in subjects.chunks(200) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT * FROM facts WHERE subject IN ({}) ORDER BY id",
                marks.join(", ")
            );
            // Only placeholders are formatted in; the subjects are bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for s in chunk {
                q = q.bind(s.as_str());
            }
            for r in q.fetch_all(&self.pool).await? {
                let value: String = r.try_get("value")?;
                let id: i64 = r.try_get("id")?;
                rows.push((
                    id,
                    Fact {
                        subject: r.try_get("subject")?,
                        name: r.try_get("name")?,
                        value: serde_json::from_str(&value).map_err(corrupt)?,
                        at: from_ms(r.try_get("at")?),
                        process: r.try_get("process")?,
                        instance: r.try_get("instance")?,
                        step: r.try_get("step")?,
                        actor: r.try_get("actor")?,
                        note: r.try_get("note")?,
                    },
                ));
            }
        }
        rows.sort_by_key(|(id, _)| *id);
        Ok(rows.into_iter().map(|(_, f)| f).collect())
    }

    async fn awaiting(&self, name: &str, key: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance FROM awaited_messages WHERE name = $1 AND key = $2 ORDER BY instance",
        )
        .bind(name)
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("instance")?)).collect()
    }

    async fn import_directory(&self, dir: &MemoryDirectory) -> Result<(), StoreError> {
        self.transaction(async |tx| {
            for delete in [
                "DELETE FROM person_roles",
                "DELETE FROM people",
                "DELETE FROM agencies",
            ] {
                sqlx::query(delete).execute(&mut *tx).await?;
            }
            for p in &dir.people {
                let record = serde_json::to_string(p).map_err(corrupt)?;
                sqlx::query("INSERT INTO people (id, record) VALUES ($1, $2)")
                    .bind(&p.id)
                    .bind(record)
                    .execute(&mut *tx)
                    .await?;
                for r in &p.roles {
                    sqlx::query(
                        "INSERT INTO person_roles (person, role, county) VALUES ($1, $2, $3)",
                    )
                    .bind(&p.id)
                    .bind(r)
                    .bind(p.county.clone())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            for a in &dir.agencies {
                let record = serde_json::to_string(a).map_err(corrupt)?;
                sqlx::query("INSERT INTO agencies (id, record) VALUES ($1, $2)")
                    .bind(&a.id)
                    .bind(record)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(())
        })
        .await
    }

    async fn directory(&self) -> Result<MemoryDirectory, StoreError> {
        let people = sqlx::query("SELECT record FROM people ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let agencies = sqlx::query("SELECT record FROM agencies ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(MemoryDirectory {
            people: people
                .iter()
                .map(|r| {
                    serde_json::from_str::<Person>(&r.try_get::<String, _>("record")?)
                        .map_err(corrupt)
                })
                .collect::<Result<_, StoreError>>()?,
            agencies: agencies
                .iter()
                .map(|r| {
                    serde_json::from_str::<Agency>(&r.try_get::<String, _>("record")?)
                        .map_err(corrupt)
                })
                .collect::<Result<_, StoreError>>()?,
        })
    }

    async fn pending_timers(&self, instance: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM timers WHERE instance = $1 ORDER BY id")
            .bind(instance)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    async fn link_child(&self, child: &str, parent: &str, step: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO children (child, parent, step) VALUES ($1, $2, $3) ON CONFLICT (child) DO NOTHING",
        )
            .bind(child)
            .bind(parent)
            .bind(step)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn parent_of(&self, child: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT parent, step FROM children WHERE child = $1")
            .bind(child)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("parent")?, r.try_get("step")?)))
            .transpose()
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<DueTimer>, StoreError> {
        // PostgreSQL: rows another process is claiming right now are skipped,
        // not waited for. SQLite has one engine process (see `serve`), and its
        // UPDATE takes the write lock, so the same statement is safe there.
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE timers SET owner = $1, lease_until = $2 WHERE id IN \
             (SELECT id FROM timers WHERE due <= $3 AND (lease_until IS NULL OR lease_until < $3) \
              ORDER BY due, id LIMIT $4{lock}) RETURNING id, instance, due"
        );
        if let Some(w) = &self.writer {
            let (owner, lease, now, limit) = (
                owner.to_string(),
                ms(lease_until),
                ms(now),
                i64::from(limit),
            );
            let mut out = w
                .run(move |c| {
                    let mut stmt = c.prepare_cached(&sql).map_err(db)?;
                    let rows = stmt
                        .query_map(rusqlite::params![owner, lease, now, limit], |r| {
                            Ok(DueTimer {
                                id: r.get(0)?,
                                instance: r.get(1)?,
                                due: from_ms(r.get(2)?),
                            })
                        })
                        .map_err(db)?;
                    rows.collect::<Result<Vec<_>, _>>().map_err(db)
                })
                .await?;
            out.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
            return Ok(out);
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(ms(lease_until))
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<DueTimer> = rows
            .iter()
            .map(|r| {
                Ok(DueTimer {
                    id: r.try_get("id")?,
                    instance: r.try_get("instance")?,
                    due: from_ms(r.try_get("due")?),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        out.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
        Ok(out)
    }

    async fn drop_timer(&self, id: &str) -> Result<(), StoreError> {
        if let Some(w) = &self.writer {
            let id = id.to_string();
            return w
                .run(move |c| {
                    c.prepare_cached("DELETE FROM timers WHERE id = ?1")
                        .and_then(|mut s| s.execute([id]))
                        .map(drop)
                        .map_err(db)
                })
                .await;
        }
        sqlx::query("DELETE FROM timers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Two reads off the indexes (due, id) and (lease_until), never a
        // scan of every pending timer: the first unclaimed timer, and the
        // first claim whose lease ends (then its timer may be taken again).
        // Asked after every round of the timer loop: on SQLite, on the
        // caller's thread (no hand-over to sqlx's worker thread).
        if let Some(w) = &self.writer {
            let next: Option<i64> = w.read(|c| {
                let free: Option<i64> = c
                    .prepare_cached(
                        "SELECT due FROM timers WHERE lease_until IS NULL ORDER BY due, id LIMIT 1",
                    )?
                    .query_row([], |r| r.get(0))
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })?;
                let leased: Option<i64> = c
                    .prepare_cached(
                        "SELECT MAX(lease_until, due) FROM timers WHERE lease_until IS NOT NULL AND owner <> ?1 \
                         ORDER BY lease_until LIMIT 1",
                    )?
                    .query_row([HELD], |r| r.get(0))
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })?;
                Ok(match (free, leased) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                })
            })?;
            return Ok(next.map(from_ms));
        }
        let free = sqlx::query(
            "SELECT due FROM timers WHERE lease_until IS NULL ORDER BY due, id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.try_get::<i64, _>("due"))
        .transpose()?;
        let leased = sqlx::query(
            "SELECT lease_until, due FROM timers WHERE lease_until IS NOT NULL AND owner <> $1 \
             ORDER BY lease_until LIMIT 1",
        )
        .bind(HELD)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| -> Result<i64, StoreError> {
            Ok(r.try_get::<i64, _>("lease_until")?
                .max(r.try_get::<i64, _>("due")?))
        })
        .transpose()?;
        Ok(match (free, leased) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(from_ms))
    }

    async fn release_timers(&self, owner: Option<&str>) -> Result<u64, StoreError> {
        let r = match owner {
            Some(o) => {
                sqlx::query(
                    "UPDATE timers SET owner = NULL, lease_until = NULL WHERE lease_until IS NOT NULL AND owner = $1 AND owner <> $2",
                )
                .bind(o)
                .bind(HELD)
                .execute(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "UPDATE timers SET owner = NULL, lease_until = NULL WHERE lease_until IS NOT NULL AND owner <> $1",
                )
                .bind(HELD)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(r.rows_affected())
    }

    async fn provisional_instances(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT instance FROM timers WHERE provisional = 1 ORDER BY instance",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("instance")?)).collect()
    }

    async fn cron_cursor(
        &self,
        definition: &str,
        entry: u32,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let r = sqlx::query("SELECT last FROM cron_cursor WHERE definition = $1 AND entry = $2")
            .bind(definition)
            .bind(i64::from(entry))
            .fetch_optional(&self.pool)
            .await?;
        r.map(|r| Ok(from_ms(r.try_get("last")?))).transpose()
    }

    async fn advance_cron_cursor(
        &self,
        definition: &str,
        entry: u32,
        last: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.transaction(async |tx| {
            let done = sqlx::query(
                "UPDATE cron_cursor SET last = $1 WHERE definition = $2 AND entry = $3 AND last < $1",
            )
            .bind(ms(last))
            .bind(definition)
            .bind(i64::from(entry))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                sqlx::query("INSERT INTO cron_cursor (definition, entry, last) VALUES ($1, $2, $3) ON CONFLICT (definition, entry) DO NOTHING")
                    .bind(definition)
                    .bind(i64::from(entry))
                    .bind(ms(last))
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(())
        })
        .await
    }

    async fn claim_outbox(
        &self,
        kind: OutboxKind,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE outbox SET lease_until = $1 WHERE id IN \
             (SELECT id FROM outbox WHERE status = 'pending' AND kind = $2 AND next_attempt <= $3 \
              AND (lease_until IS NULL OR lease_until < $3) ORDER BY id LIMIT $4{lock}) RETURNING *"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ms(lease_until))
            .bind(kind.as_str())
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<OutboxRow> = rows.iter().map(outbox_row).collect::<Result<_, _>>()?;
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    async fn release_outbox(&self, ids: Option<&[i64]>) -> Result<u64, StoreError> {
        let r = match ids {
            Some([]) => return Ok(0),
            Some(ids) => {
                let list: Vec<String> = ids.iter().map(i64::to_string).collect();
                let sql = format!(
                    "UPDATE outbox SET lease_until = NULL WHERE status = 'pending' AND id IN ({})",
                    list.join(",")
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(
                    "UPDATE outbox SET lease_until = NULL WHERE status = 'pending' AND lease_until IS NOT NULL",
                )
                .execute(&self.pool)
                .await?
            }
        };
        Ok(r.rows_affected())
    }

    async fn outbox_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET status = 'sent', sent_at = $1, attempts = attempts + 1, lease_until = NULL WHERE id = $2").bind(ms(now)).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn outbox_dropped(&self, id: i64, reason: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET status = 'dropped', last_error = $1, lease_until = NULL WHERE id = $2")
            .bind(reason)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn outbox_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let (status, next) = match retry_at {
            Some(t) => ("pending", ms(t)),
            None => ("dead", 0),
        };
        sqlx::query("UPDATE outbox SET status = $1, attempts = attempts + 1, next_attempt = $2, last_error = $3, lease_until = NULL WHERE id = $4")
            .bind(status)
            .bind(next)
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn outbox(&self, status: Option<OutboxStatus>) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = match status {
            Some(s) => {
                sqlx::query("SELECT * FROM outbox WHERE status = $1 ORDER BY id")
                    .bind(s.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM outbox ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(outbox_row).collect()
    }

    async fn outbox_of(&self, instance: &str) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE instance = $1 ORDER BY id")
            .bind(instance)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(outbox_row).collect()
    }

    async fn outbox_retry(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE outbox SET status = 'pending', attempts = 0, next_attempt = $1, lease_until = NULL WHERE id = $2 AND status = 'dead'").bind(ms(now)).bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn outbox_pending(&self) -> Result<u64, StoreError> {
        let r = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get::<i64, _>("n")? as u64)
    }

    async fn stats(&self, now: DateTime<Utc>) -> Result<Stats, StoreError> {
        let mut s = Stats::default();
        for r in sqlx::query(
            "SELECT status, COUNT(*) AS n FROM instances GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?
        {
            s.instances
                .push((r.try_get("status")?, r.try_get::<i64, _>("n")? as u64));
        }
        let r = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN due IS NOT NULL AND due <= $1 THEN 1 ELSE 0 END), 0) AS late FROM tasks WHERE closed_at IS NULL",
        )
        .bind(ms(now))
        .fetch_one(&self.pool)
        .await?;
        s.open_tasks = r.try_get::<i64, _>("n")? as u64;
        s.overdue_tasks = r.try_get::<i64, _>("late")? as u64;
        let r = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN due <= $1 THEN 1 ELSE 0 END), 0) AS due_now, MIN(due) AS oldest FROM timers WHERE COALESCE(owner, '') <> $2",
        )
        .bind(ms(now))
        .bind(HELD)
        .fetch_one(&self.pool)
        .await?;
        s.timers = r.try_get::<i64, _>("n")? as u64;
        s.timers_due = r.try_get::<i64, _>("due_now")? as u64;
        s.oldest_due = r
            .try_get::<Option<i64>, _>("oldest")?
            .map(from_ms)
            .filter(|t| *t <= now);
        for r in sqlx::query("SELECT kind, status, COUNT(*) AS n FROM outbox GROUP BY kind, status ORDER BY kind, status")
            .fetch_all(&self.pool)
            .await?
        {
            s.outbox.push((
                r.try_get("kind")?,
                r.try_get("status")?,
                r.try_get::<i64, _>("n")? as u64,
            ));
        }
        Ok(s)
    }
}

/// The transactions: how every write of more than one statement is made.
impl SqlStore {
    /// Runs `body` in one transaction on a connection of the pool:
    /// committed when it returns `Ok`, rolled back otherwise. A connection
    /// whose COMMIT or ROLLBACK failed is closed, never given back to the
    /// pool: on a full disk (and some I/O errors) SQLite rolls the
    /// transaction back by itself, sqlx's ROLLBACK then fails, and the
    /// connection would go back believing it is still inside a transaction,
    /// so that its next transactions are savepoints and the first one rolled
    /// back stays open for good, holding the write lock (issue 12, found 7).
    async fn transaction<T, E: From<StoreError>>(
        &self,
        body: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let database = |e: sqlx::Error| E::from(StoreError::from(e));
        let mut conn = self.pool.acquire().await.map_err(database)?;
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(database)?;
        match body(&mut tx).await {
            Ok(v) => match tx.commit().await {
                Ok(()) => Ok(v),
                Err(e) => {
                    // Closing a SQLite connection ends whatever it still holds.
                    let _ = conn.close().await;
                    Err(database(e))
                }
            },
            Err(e) => {
                if tx.rollback().await.is_err() {
                    let _ = conn.close().await;
                }
                Err(e)
            }
        }
    }

    /// The statements of transition `t`, in transaction `tx`.
    async fn write(
        &self,
        tx: &mut AnyConnection,
        prev: Option<u64>,
        t: &Transition,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let set = writes::transition(prev, t, now)?;
        self.execute(tx, &set).await
    }

    /// Executes a write set in transaction `tx`, statement by statement
    /// (the fault hook counts them).
    async fn execute(&self, tx: &mut AnyConnection, set: &WriteSet) -> Result<(), StoreError> {
        let mut n = 0;
        let mut last_id: Option<i64> = None;
        for op in &set.ops {
            self.tick(&mut n)?;
            let sql = match (self.backend, op.pg) {
                (Backend::Postgres, Some(pg)) => pg,
                _ => op.sql,
            };
            let mut q = sqlx::query(sql);
            for v in &op.params {
                q = match v {
                    Val::Text(s) => q.bind(s.as_str()),
                    Val::Int(i) => q.bind(*i),
                    Val::NullText => q.bind(None::<String>),
                    Val::NullInt => q.bind(None::<i64>),
                    Val::LastId => q.bind(last_id.ok_or_else(|| corrupt("no id to refer to"))?),
                };
            }
            match op.check {
                Check::None => {
                    q.execute(&mut *tx).await?;
                }
                Check::OneRow => {
                    if q.execute(&mut *tx).await?.rows_affected() != 1 {
                        return Err(StoreError::Conflict(set.instance.clone()));
                    }
                }
                Check::NewRow => {
                    if let Err(e) = q.execute(&mut *tx).await {
                        return Err(match &e {
                            sqlx::Error::Database(d) if d.is_unique_violation() => {
                                StoreError::Conflict(set.instance.clone())
                            }
                            _ => e.into(),
                        });
                    }
                }
                Check::ReturnsId => {
                    let row = q.fetch_one(&mut *tx).await?;
                    last_id = Some(row.try_get("id")?);
                }
            }
        }
        self.tick(&mut n)?;
        Ok(())
    }
}

fn api_token(r: &AnyRow) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: r.try_get("id")?,
        hash: r.try_get("hash")?,
        person: r.try_get("person")?,
        role: r.try_get("role")?,
        note: r.try_get("note")?,
        created_at: from_ms(r.try_get("created_at")?),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(from_ms),
    })
}

fn outbox_row(r: &AnyRow) -> Result<OutboxRow, StoreError> {
    Ok(OutboxRow {
        id: r.try_get("id")?,
        instance: r.try_get("instance")?,
        kind: {
            let k: String = r.try_get("kind")?;
            OutboxKind::parse(&k).ok_or_else(|| corrupt(format!("outbox kind `{k}`")))?
        },
        payload: r.try_get("payload")?,
        status: {
            let k: String = r.try_get("status")?;
            OutboxStatus::parse(&k).ok_or_else(|| corrupt(format!("outbox status `{k}`")))?
        },
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        created_at: from_ms(r.try_get("created_at")?),
        next_attempt: from_ms(r.try_get("next_attempt")?),
        last_error: r.try_get("last_error")?,
        sent_at: r.try_get::<Option<i64>, _>("sent_at")?.map(from_ms),
    })
}

fn history_entry(r: &AnyRow, people: Vec<String>) -> Result<HistoryEntry, StoreError> {
    let changed: String = r.try_get("changed")?;
    let deadline: Option<String> = r.try_get("deadline")?;
    Ok(HistoryEntry {
        at: from_ms(r.try_get("at")?),
        actor: r.try_get("actor")?,
        what: {
            let w: String = r.try_get("what")?;
            HistoryKind::parse(&w).ok_or_else(|| corrupt(format!("history kind `{w}`")))?
        },
        step_before: r.try_get("step_before")?,
        step_after: r.try_get("step_after")?,
        changed: serde_json::from_str(&changed).map_err(corrupt)?,
        deadline: deadline
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(corrupt)?,
        note: r.try_get("note")?,
        people,
        due: r.try_get::<Option<i64>, _>("due")?.map(from_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn def(id: &str, hash: &str, source: String) -> StoredDefinition {
        StoredDefinition {
            id: id.into(),
            version: 1,
            hash: hash.into(),
            source,
            files: "{}".into(),
            file: format!("{id}.yaml"),
            deployed_at: from_ms(0),
        }
    }

    /// This store on one connection only, so a test knows which connection
    /// each operation uses.
    async fn on_one_connection(db: &str) -> SqlStore {
        let (url, _) = parse_url(db);
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        SqlStore {
            url: db.into(),
            pool,
            backend: Backend::Sqlite,
            fault_after: Arc::new(AtomicUsize::new(usize::MAX)),
            writer: None,
        }
    }

    /// Issue 12, found 7: a full disk makes SQLite roll a transaction back
    /// by itself; sqlx's own ROLLBACK then failed and the connection went
    /// back to the pool believing it was still inside a transaction, so
    /// every later transaction on it was a savepoint, and the first one
    /// rolled back (a refused deploy, a conflict) left a transaction open
    /// for good, holding the write lock: "database is locked" for every
    /// other process, and nothing this one wrote afterwards was durable.
    /// (`max_page_count` fills the disk for one connection.)
    #[tokio::test]
    async fn a_transaction_undone_by_a_full_disk_leaves_no_lock_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("duban.db");
        let db = db.to_str().unwrap();
        let other = SqlStore::open(db).await.unwrap();
        other.deploy(&[def("b", "1", "b".into())]).await.unwrap();
        let one = on_one_connection(db).await;
        let pages: i64 = sqlx::query("PRAGMA page_count")
            .fetch_one(&one.pool)
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA max_page_count = {pages}"
        )))
        .execute(&one.pool)
        .await
        .unwrap();
        let err = one
            .deploy(&[def("big", "1", "x".repeat(200_000))])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
        // Space again.
        max_pages(&one, Some(1_073_741_823)).await;
        // A deploy refused after its first insert: rolled back.
        let err = one
            .deploy(&[def("a", "1", "a".into()), def("b", "2", "b2".into())])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::VersionChanged { .. }), "{err}");
        // Another process writes at once; what this one writes is durable.
        other.advance_cron_cursor("p", 0, from_ms(1)).await.unwrap();
        one.advance_cron_cursor("p", 1, from_ms(2)).await.unwrap();
        assert_eq!(other.cron_cursor("p", 1).await.unwrap(), Some(from_ms(2)));
        assert!(other.definition("a", None).await.unwrap().is_none());
    }

    /// Sets how far this one-connection store's file may grow, in pages
    /// (its current size: a full disk).
    async fn max_pages(store: &SqlStore, pages: Option<i64>) {
        let pages = match pages {
            Some(p) => p,
            None => sqlx::query("PRAGMA page_count")
                .fetch_one(&store.pool)
                .await
                .unwrap()
                .try_get(0)
                .unwrap(),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA max_page_count = {pages}"
        )))
        .execute(&store.pool)
        .await
        .unwrap();
    }

    /// Issue 12, found 7: a start that failed on a full disk still took an
    /// instance id, counted in a transaction of its own.
    #[tokio::test]
    async fn a_start_that_fails_on_a_full_disk_takes_no_id() {
        use crate::calendar::Calendar;
        use crate::service::Engine;
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("duban.db");
        let db = db.to_str().unwrap();
        SqlStore::open(db).await.unwrap().close().await;
        let engine = Engine::new(on_one_connection(db).await, Calendar::builtin())
            .await
            .unwrap();
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-05T09:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc);
        let timers = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/timers");
        engine.deploy(&[timers], t0).await.unwrap();
        let start = || engine.start("wait_an_hour", None, BTreeMap::new(), "test", t0);
        assert_eq!(start().await.unwrap().state.id, "1");
        max_pages(engine.store(), None).await;
        let mut refused = 0;
        // Until the file would have to grow.
        while refused == 0 {
            match start().await {
                Ok(_) => {}
                Err(e) => {
                    assert!(e.to_string().contains("full"), "{e}");
                    refused += 1;
                }
            }
        }
        let stored = engine.store().instances(None, None).await.unwrap().len();
        max_pages(engine.store(), Some(1_073_741_823)).await;
        assert_eq!(
            start().await.unwrap().state.id,
            (stored + 1).to_string(),
            "the failed start took no id"
        );
    }
}
