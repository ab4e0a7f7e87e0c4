//! Helpers shared by the data-driven tests: where the repository's folders
//! are, and how diagnostics are written in snapshots.

use std::path::PathBuf;

use duban_engine::definition::Diagnostic;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `processes/`, the process library.
pub fn processes() -> PathBuf {
    root().join("processes")
}

/// The `*.yaml` files directly in `dir`, sorted.
pub fn yaml_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// One diagnostic per paragraph, without the file name, and with the
/// repository's location removed: snapshots must not depend on where the
/// repository is checked out.
pub fn render(diags: &[Diagnostic]) -> String {
    let root = format!(
        "{}/",
        root().canonicalize().expect("the root exists").display()
    );
    let text = diags
        .iter()
        .map(|d| {
            let mut s = format!(
                "{}:{} {} {}\n  {}",
                d.line, d.column, d.code, d.path, d.message
            );
            if let Some(h) = &d.hint {
                s.push_str(&format!("\n  hint: {h}"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    text.replace(&root, "")
}

/// An instant written in RFC 3339 (`2025-09-26T10:00:00+08:00`).
pub fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&chrono::Utc)
}

/// Values as `NAME=VALUE` texts, typed by the definition they are given to.
pub fn vars(pairs: &[(&str, &str)]) -> duban_engine::service::Values {
    duban_engine::service::Values::Text(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// The PostgreSQL server the tests use (`DUBAN_TEST_POSTGRES`).
pub fn postgres_base() -> String {
    std::env::var("DUBAN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, empty PostgreSQL database named after `tag` and this process;
/// its URL. [`drop_postgres`] removes it.
pub async fn fresh_postgres(tag: &str) -> String {
    use sqlx::Connection;
    let base = postgres_base();
    let name = format!("duban_t{tag}_{}", std::process::id());
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {base}: {e} (start it: .ci/run does)"));
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    format!("{}/{name}", base.rsplit_once('/').unwrap().0)
}

/// Drops the database of `url`, made by [`fresh_postgres`].
pub async fn drop_postgres(url: &str) {
    use sqlx::Connection;
    let name = url.rsplit_once('/').unwrap().1;
    let mut admin = sqlx::AnyConnection::connect(&postgres_base())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

/// Imports the scenarios' directory (`processes/scenarios/directory.yaml`:
/// the offices, the government, the agencies) into `e`.
pub async fn import_scenario_directory<S: duban_engine::store::Store>(
    e: &duban_engine::service::Engine<S>,
) {
    let text = std::fs::read_to_string(processes().join("scenarios/directory.yaml")).unwrap();
    e.import_directory(duban_engine::runtime::directory_file::parse(&text, false).unwrap())
        .await
        .unwrap();
}

/// The id of the open task (or notice) at `step` of instance `id`.
pub async fn open_task<S: duban_engine::store::Store>(
    e: &duban_engine::service::Engine<S>,
    id: &str,
    step: &str,
) -> String {
    let s = e.instance(id).await.unwrap();
    let found = s
        .open_tasks()
        .find(|t| t.step == step)
        .map(|t| t.id.clone());
    found.unwrap_or_else(|| panic!("{id}: no open task at {step}: {:?}", s.current_steps()))
}
