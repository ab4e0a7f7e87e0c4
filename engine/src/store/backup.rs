//! Backups of a SQLite store, their restore, and the schema version a
//! store was written at (docs/upgrading.md).
//!
//! - [`SqlStore::backup`] writes a consistent copy of a SQLite store while
//!   `serve` runs, with SQLite's `VACUUM INTO` (one read transaction: every
//!   commit before it is in the copy, none after it, none half), then checks
//!   the copy as [`inspect`] does. PostgreSQL is backed up with `pg_dump`.
//! - [`restore`] checks a backup (`PRAGMA integrity_check`, a schema this
//!   build knows) and only then puts it in place of a store, through a
//!   temporary file renamed over the target, so a failed restore leaves the
//!   target as it was.
//! - [`check_schema`] refuses a store written by a newer build (a
//!   migration this build does not know), before anything is written to it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::sql::SqlStore;
use super::StoreError;

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupInfo {
    /// The file.
    pub file: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The schema version (the last migration applied).
    pub schema: i64,
    /// Instances, of which running or stuck.
    pub instances: i64,
    /// Running or stuck instances.
    pub running: i64,
    /// Pending timers.
    pub timers: i64,
    /// History lines.
    pub history: i64,
}

/// The last migration this build knows, for the backend.
pub fn known_schema(postgres: bool) -> i64 {
    let m = if postgres {
        &super::sql::POSTGRES_MIGRATIONS
    } else {
        &super::sql::SQLITE_MIGRATIONS
    };
    m.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The message refusing a store at schema `found` when this build knows up
/// to `known`.
fn newer(db: &str, found: i64, known: i64) -> StoreError {
    StoreError::Database(format!(
        "{db} was written by a newer duban: its schema is at migration {found}, this build knows migrations up to {known}; nothing was changed. Run the duban that wrote it, or restore a backup taken before that upgrade (docs/upgrading.md)"
    ))
}

/// Refuses a store whose schema is newer than this build's (its last
/// applied migration is one this build does not have). `applied` is the
/// store's last applied migration, `None` for a new store.
pub fn check_schema(db: &str, applied: Option<i64>, postgres: bool) -> Result<(), StoreError> {
    let known = known_schema(postgres);
    match applied {
        Some(found) if found > known => Err(newer(db, found, known)),
        _ => Ok(()),
    }
}

/// Reads what a SQLite store file holds, checking it: SQLite's own
/// integrity check, a duban schema, and one this build knows. Opens the
/// file read-only.
pub fn inspect(file: &Path) -> Result<BackupInfo, StoreError> {
    let name = file.display().to_string();
    let bad = |why: String| StoreError::Database(format!("{name}: {why}"));
    let meta = std::fs::metadata(file).map_err(|e| bad(e.to_string()))?;
    let conn = rusqlite::Connection::open_with_flags(
        file,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| bad(format!("not a SQLite database: {e}")))?;
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| bad(format!("not a SQLite database: {e}")))?;
    if ok != "ok" {
        return Err(bad(format!("damaged: {ok}")));
    }
    let schema: i64 = conn
        .query_row(
            "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )
        .map_err(|_| bad("not a duban store (no schema migrations)".into()))?
        .ok_or_else(|| bad("not a duban store (no schema migrations)".into()))?;
    check_schema(&name, Some(schema), false)?;
    let count = |sql: &str| -> Result<i64, StoreError> {
        conn.query_row(sql, [], |r| r.get(0))
            .map_err(|e| bad(format!("not a duban store: {e}")))
    };
    Ok(BackupInfo {
        file: file.to_path_buf(),
        bytes: meta.len(),
        schema,
        instances: count("SELECT COUNT(*) FROM instances")?,
        running: count("SELECT COUNT(*) FROM instances WHERE status IN ('running', 'stuck')")?,
        timers: count("SELECT COUNT(*) FROM timers")?,
        history: count("SELECT COUNT(*) FROM history")?,
    })
}

/// Puts the checked backup `from` in place of the SQLite store `to`.
/// Refuses when `to` holds a store already, unless `force`; `serve` must
/// not be running on `to`.
pub fn restore(from: &Path, to: &Path, force: bool) -> Result<BackupInfo, StoreError> {
    let info = inspect(from)?;
    if to.exists() && !force {
        return Err(StoreError::Database(format!(
            "{} exists: restoring would replace it; stop `serve`, move it aside (or give --force) and restore again",
            to.display()
        )));
    }
    let tmp = to.with_extension("restoring");
    let fail = |e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        StoreError::Database(format!("restoring into {}: {e}", to.display()))
    };
    std::fs::copy(from, &tmp).map_err(fail)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(fail)?;
    // The target's WAL belongs to the store being replaced.
    for ext in ["wal", "shm"] {
        let side = PathBuf::from(format!("{}-{ext}", to.display()));
        if side.exists() {
            std::fs::remove_file(&side).map_err(fail)?;
        }
    }
    std::fs::rename(&tmp, to).map_err(fail)?;
    Ok(BackupInfo {
        file: to.to_path_buf(),
        ..info
    })
}

impl SqlStore {
    /// Writes a consistent copy of this SQLite store to `to` (a new file)
    /// while it is in use, and checks the copy ([`inspect`]).
    pub async fn backup(&self, to: &Path) -> Result<BackupInfo, StoreError> {
        if self.backend() != super::sql::Backend::Sqlite {
            return Err(StoreError::Database(
                "a PostgreSQL store is backed up with pg_dump (docs/upgrading.md)".into(),
            ));
        }
        if to.exists() {
            return Err(StoreError::Database(format!(
                "{} exists: a backup is written to a new file",
                to.display()
            )));
        }
        let path = to.display().to_string();
        if path.contains('\0') {
            return Err(StoreError::Database("a file name without NUL".into()));
        }
        let quoted = path.replace('\'', "''");
        sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM INTO '{quoted}'")))
            .execute(self.pool())
            .await
            .map_err(|e| StoreError::Database(format!("backing up into {path}: {e}")))?;
        match inspect(to) {
            Ok(info) => Ok(info),
            Err(e) => {
                let _ = std::fs::remove_file(to);
                Err(e)
            }
        }
    }
}
