//! The process definition language.
//!
//! Administrators write processes in YAML; this module reads them in two
//! stages (see ARCHITECTURE.md):
//!
//! 1. [`source`] parses the text into a span-preserving node tree, and
//!    [`raw`] gives the serde shape of each part, keys and types only;
//! 2. `check` resolves every reference and parses every period, cron and CEL
//!    expression into the [`model`], collecting *all* problems as
//!    [`Diagnostic`]s with file, line, column and document path.
//!
//! Only the checked [`Definition`] leaves this module. [`graph`] draws it as
//! Mermaid; [`Library`] loads a folder of definitions and checks the calls
//! between them against each called process's [`ProcessInterface`].

mod calls;
mod check;
pub mod cost;
pub mod diagnostic;
pub mod expr;
mod files;
pub mod flow;
pub mod graph;
pub mod model;
mod raw;
mod refs;
mod schema;
mod sections;
pub mod source;
mod steps;
pub mod templates;
mod typing;
mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path as FsPath, PathBuf};

pub use calls::{peek_interface, InterfaceVariable, ProcessInterface};
pub use check::LoadContext;
pub use diagnostic::{Code, Diagnostic};
pub use model::*;
pub use schema::schema;
pub use source::Source;

pub(crate) fn check_is_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Loads one definition from text. `file` is the name used in diagnostics.
pub fn load_str(file: &str, text: &str, ctx: &LoadContext) -> Result<Definition, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let src = Source::parse(file, text, &mut diags);
    if src.root.is_none() {
        if diags.is_empty() {
            diags.push(src.diag(
                &source::Path::root(),
                Code::YamlSyntax,
                "the file is empty".into(),
                Some("a definition starts with `id:`, `version:`, `name:`, `start:` and `steps:`".into()),
            ));
        }
        return Err(diags);
    }
    let dups = diags
        .iter()
        .filter(|d| d.code == Code::DuplicateId)
        .map(|d| d.path.clone())
        .collect();
    let (def, more) = check::check(&src, ctx, dups);
    diags.extend(more);
    diags.sort_by_key(|d| (d.line, d.column));
    match def {
        Some(def) if diags.is_empty() => Ok(def),
        _ => Err(diags),
    }
}

/// A set of definitions loaded together, e.g. `processes/`.
#[derive(Debug, Default)]
pub struct Library {
    /// The definitions that are valid, by id.
    pub definitions: BTreeMap<String, Definition>,
    /// Per file: its diagnostics (empty when valid), in file order.
    pub files: Vec<FileReport>,
}

/// The result of checking one file of a library.
#[derive(Debug)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Its text, for rendering diagnostics with source lines.
    pub text: String,
    /// Its problems; empty when valid.
    pub diagnostics: Vec<Diagnostic>,
    /// The template files the check read for it, by relative path (what
    /// deploy stores with the text).
    pub templates: BTreeMap<String, String>,
}

impl Library {
    /// Whether every file is valid.
    pub fn is_valid(&self) -> bool {
        self.files.iter().all(|f| f.diagnostics.is_empty())
    }

    /// All diagnostics of all files.
    pub fn diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        self.files.iter().flat_map(|f| f.diagnostics.iter())
    }
}

/// Expands files and folders into the definition files they name: folders
/// give their `*.yaml`/`*.yml` files (not recursing into `templates/`),
/// sorted. A path that does not exist is an error message.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or folder", p.display()));
        }
    }
    Ok(out)
}

/// Loads `files` as one library. A `call` may name any process of the
/// library or of `context` (other definitions beside them that are not
/// themselves being reported on). Two files declaring one id is an error.
pub fn load_library(files: &[PathBuf], context: &[PathBuf]) -> Library {
    let mut lib = Library::default();
    let mut texts = Vec::new();
    for path in files {
        match std::fs::read_to_string(path) {
            Ok(text) => texts.push((path.clone(), text)),
            Err(e) => lib.files.push(FileReport {
                path: path.clone(),
                text: String::new(),
                diagnostics: vec![Diagnostic {
                    file: path.display().to_string(),
                    line: 1,
                    column: 1,
                    path: String::new(),
                    code: Code::MissingFile,
                    message: format!("cannot read the file: {e}"),
                    hint: None,
                }],
                templates: BTreeMap::new(),
            }),
        }
    }
    // The ids every call may name: those of the library and its context,
    // with what a call is checked against (the first file of an id wins).
    let mut known = BTreeSet::new();
    let mut interfaces = BTreeMap::new();
    let context_texts: Vec<String> = context
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    // One lenient read per text (it gives the id too, exactly when `peek_id`
    // would): each is a whole parse of what may be a large file.
    for t in texts.iter().map(|(_, t)| t).chain(&context_texts) {
        if let Some((id, iface)) = peek_interface(t) {
            known.insert(id.clone());
            interfaces.entry(id).or_insert(iface);
        }
    }
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (path, text) in texts {
        let ctx = LoadContext {
            base_dir: path.parent().map(FsPath::to_path_buf),
            processes: Some(known.clone()),
            interfaces: interfaces.clone(),
            ..Default::default()
        };
        let file = path.display().to_string();
        let diagnostics = match load_str(&file, &text, &ctx) {
            Ok(def) => match seen.get(&def.id) {
                Some(first) => {
                    let mut d = Vec::new();
                    let src = Source::parse(&file, &text, &mut d);
                    vec![src.diag(
                        &source::Path::root().key("id"),
                        Code::DuplicateId,
                        format!(
                            "process id `{}` is already used by {}",
                            def.id,
                            first.display()
                        ),
                        Some("every process in a library needs its own id".into()),
                    )]
                }
                None => {
                    seen.insert(def.id.clone(), path.clone());
                    lib.definitions.insert(def.id.clone(), def);
                    Vec::new()
                }
            },
            Err(d) => d,
        };
        lib.files.push(FileReport {
            path,
            text,
            diagnostics,
            templates: ctx.read.take(),
        });
    }
    lib
}

/// The template files a definition names (`templates.*.file`), read leniently.
pub fn template_files(text: &str) -> Vec<String> {
    let Ok(node) = crate::yaml::parse(text, Default::default()) else {
        return Vec::new();
    };
    let Some(templates) = node.as_mapping().and_then(|m| m.get_mapping("templates")) else {
        return Vec::new();
    };
    templates
        .iter()
        .filter_map(|(_, v)| {
            v.as_mapping()?
                .get_scalar("file")
                .map(|f| f.as_str().to_string())
        })
        .collect()
}

/// The `id:` of a definition text, read leniently (before it is checked).
pub fn peek_id(text: &str) -> Option<String> {
    let node = crate::yaml::parse(text, Default::default()).ok()?;
    Some(node.as_mapping()?.get_scalar("id")?.as_str().to_string())
}

#[cfg(test)]
mod tests;
