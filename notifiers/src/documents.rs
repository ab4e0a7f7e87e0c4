//! Rendering documents (督办函, 决定书, …) to files.
//!
//! A step's `documents:` become `render_document` outbox rows in the
//! transaction that opens (or ends) the step. This worker claims them,
//! renders the document's parts with the instance as it is now, and
//! writes `DIR/INSTANCE/DOCUMENT-ROW.txt` (plain text), `.html` (every
//! value escaped) and `.pdf` (the 公文 as issued, typeset by
//! `duban_typeset`). Each file is written to a temporary file in the same
//! directory and renamed into place, so a full disk or a crash leaves
//! either the whole document or none; the row is retried with the outbox's
//! backoff until it succeeds. A document that cannot be typeset (no font
//! for a character, a broken layout) fails its row permanently, with the
//! reason, rather than come out with blanks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use duban_engine::runtime::Command;
use duban_engine::service::Engine;
use duban_engine::store::{OutboxRow, Store, StoreError};

use crate::dispatch::{load_row, Policy, Round};
use crate::render::{self, Official, Rendered, Subject};
use crate::SendError;
use duban_engine::definition::Definition;
use duban_engine::outbox::{WorkFuture, Worker};
use duban_engine::runtime::{Directory, InstanceState};
use duban_engine::simulate::Issued;
use duban_engine::store::OutboxKind;

/// Writes the documents of the outbox.
pub struct DocumentWriter<S> {
    engine: Arc<Engine<S>>,
    dir: PathBuf,
    policy: Policy,
}

/// The files a `render_document` row produces: text, HTML and PDF.
pub fn paths(dir: &Path, row: &OutboxRow, document: &str) -> [PathBuf; 3] {
    let base = dir.join(&row.instance);
    ["txt", "html", "pdf"].map(|ext| base.join(format!("{document}-{}.{ext}", row.id)))
}

/// Typesets a document's parts as PDF (on a blocking thread: it is CPU
/// work of a tenth of a second or more), with the process's fonts.
pub async fn pdf(parts: Official) -> Result<Vec<u8>, SendError> {
    // A panic in the typesetter is deterministic: permanent, as a refusal.
    tokio::task::spawn_blocking(move || duban_typeset::shared().document(&parts))
        .await
        .map_err(|e| SendError::Permanent(format!("typesetting: {e}")))?
        .map_err(|e| SendError::Permanent(e.to_string()))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("a document path has a directory");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Renders the document `issued` of `def` in `state`, with the instance as
/// it is at `now`: what [`DocumentWriter`] writes and what `duban simulate`
/// checks. A document issued for a task (an item of a `for_each` step) is
/// rendered with that task and its item.
pub fn render_document(
    def: &Definition,
    state: &InstanceState,
    issued: Issued<'_>,
    dir: &dyn Directory,
    now: DateTime<Utc>,
) -> Result<Rendered, String> {
    document_parts(def, state, issued, dir, now).map(|p| render::compose(&p))
}

/// The parts of the document `issued` (what [`render_document`] composes
/// as text and [`pdf`] typesets).
pub fn document_parts(
    def: &Definition,
    state: &InstanceState,
    issued: Issued<'_>,
    dir: &dyn Directory,
    now: DateTime<Utc>,
) -> Result<Official, String> {
    let Issued {
        document,
        step,
        task,
    } = issued;
    let doc = def.documents.get(document).ok_or_else(|| {
        format!(
            "document `{document}` is not in {} v{}",
            def.id, def.version
        )
    })?;
    let task = match task {
        Some(id) => state.tasks.get(id),
        None => state
            .tasks
            .values()
            .filter(|t| t.step == step)
            .max_by_key(|t| t.opened_at),
    };
    let subject = Subject {
        definition: def,
        state,
        step: Some(step),
        task,
        recipient: None,
        answer_link: String::new(),
        now,
    };
    let ctx = render::context(&subject, dir);
    render::document_parts(def, doc, state.profile.as_deref(), &ctx)
}

/// The documents' text for `duban simulate`.
pub struct SimulatedDocuments;

impl duban_engine::simulate::DocumentText for SimulatedDocuments {
    fn text(
        &self,
        def: &Definition,
        state: &InstanceState,
        issued: Issued<'_>,
        directory: &dyn Directory,
        now: DateTime<Utc>,
    ) -> Result<String, String> {
        render_document(def, state, issued, directory, now).map(|r| r.text)
    }

    fn title(
        &self,
        def: &Definition,
        state: &InstanceState,
        issued: Issued<'_>,
        directory: &dyn Directory,
        now: DateTime<Utc>,
    ) -> Option<String> {
        render_document(def, state, issued, directory, now)
            .ok()
            .map(|r| r.subject)
    }
}

impl<S: Store> DocumentWriter<S> {
    /// A writer into `dir`.
    pub fn new(engine: Arc<Engine<S>>, dir: PathBuf, policy: Policy) -> Self {
        DocumentWriter {
            engine,
            dir,
            policy,
        }
    }

    /// Renders and writes one row's document, dated the day it was issued
    /// (the row's instant), however late the writer comes to it: the file,
    /// the notice's email and the portal show the same 成文日期.
    pub async fn write(&self, row: &OutboxRow, _now: DateTime<Utc>) -> Result<PathBuf, SendError> {
        let (cmd, state, def) = load_row(&self.engine, row).await?;
        let Command::RenderDocument {
            document,
            step,
            task,
        } = cmd
        else {
            return Err(SendError::Permanent("not a document".into()));
        };
        let dir = self.engine.directory();
        let issued = Issued {
            document: &document,
            step: &step,
            task: task.as_deref(),
        };
        let parts = document_parts(&def, &state, issued, dir.as_ref(), row.created_at)
            .map_err(SendError::Permanent)?;
        let r = render::compose(&parts);
        let pdf = pdf(parts).await?;
        let [txt, html, pdf_path] = paths(&self.dir, row, &document);
        for (path, bytes) in [
            (&txt, r.text.as_bytes()),
            (&html, r.html.as_bytes()),
            (&pdf_path, pdf.as_slice()),
        ] {
            write_atomically(path, bytes)
                .map_err(|e| SendError::Transient(format!("writing {}: {e}", path.display())))?;
        }
        Ok(txt)
    }

    /// Writes every document due at `now`, through the outbox's one
    /// worker loop and retry policy.
    pub async fn render_due(&self, now: DateTime<Utc>) -> Result<Round, StoreError> {
        duban_engine::outbox::drain(self.engine.store(), self, &self.policy, now).await
    }
}

impl<S: Store> Worker for DocumentWriter<S> {
    fn kind(&self) -> OutboxKind {
        OutboxKind::RenderDocument
    }

    fn handle<'a>(&'a self, row: &'a OutboxRow, now: DateTime<Utc>) -> WorkFuture<'a> {
        Box::pin(async move { self.write(row, now).await.map(|_| ()) })
    }
}
