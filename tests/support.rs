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
