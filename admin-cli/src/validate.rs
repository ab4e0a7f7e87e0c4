//! `duban validate` and `duban graph`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use duban_engine::definition::{self, graph, Library};

use crate::exit;

/// The other definitions beside `files` (same folders), so that a `call` to
/// a sibling process resolves when one file is checked on its own.
fn siblings(files: &[PathBuf]) -> Vec<PathBuf> {
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .map(|f| {
            f.parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        })
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
        })
        .collect();
    let dirs: Vec<PathBuf> = dirs.into_iter().collect();
    definition::expand_paths(&dirs).unwrap_or_default()
}

fn load(paths: &[PathBuf]) -> Result<Library, u8> {
    let files = definition::expand_paths(paths).map_err(|e| {
        errln!("duban: {e}");
        exit::USAGE
    })?;
    if files.is_empty() {
        errln!("duban: no definition files (*.yaml) in {}", show(paths));
        return Err(exit::USAGE);
    }
    Ok(definition::load_library(&files, &siblings(&files)))
}

fn show(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks every file; prints every diagnostic.
pub fn validate(paths: &[PathBuf], json: bool) -> u8 {
    let lib = match load(paths) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if json {
        let all: Vec<_> = lib.diagnostics().collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&all).expect("diagnostics serialise")
        );
    } else {
        let mut problems = 0;
        for f in &lib.files {
            for d in &f.diagnostics {
                problems += 1;
                outln!("{}\n", d.render(&f.text));
            }
        }
        let invalid = lib
            .files
            .iter()
            .filter(|f| !f.diagnostics.is_empty())
            .count();
        if invalid == 0 {
            outln!(
                "{} definition(s) valid: {}",
                lib.files.len(),
                lib.definitions
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        } else {
            outln!(
                "{invalid} of {} definition(s) invalid, {problems} problem(s)",
                lib.files.len()
            );
        }
    }
    if lib.is_valid() {
        exit::OK
    } else {
        exit::INVALID
    }
}

/// Prints one definition as Mermaid.
pub fn graph(file: &Path) -> u8 {
    let lib = match load(&[file.to_path_buf()]) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let report = &lib.files[0];
    if !report.diagnostics.is_empty() {
        for d in &report.diagnostics {
            errln!("{}\n", d.render(&report.text));
        }
        errln!(
            "duban: {} is invalid; fix it before drawing it",
            file.display()
        );
        return exit::INVALID;
    }
    let def = lib
        .definitions
        .values()
        .next()
        .expect("a valid file gives a definition");
    out!("{}", graph::to_mermaid(def));
    exit::OK
}
