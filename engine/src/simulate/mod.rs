//! Scenarios: a process run on a throwaway store with a virtual clock.
//!
//! A scenario names a definition (and profile), then lists actions, each at
//! an instant: start, complete a task, record receipt of a notice, send a
//! message, advance the clock; and `expect:` assertions on the state. Moving
//! the clock fires every timer due on the way, each at its own due instant,
//! so reminders and escalations happen exactly when `duban serve` would make
//! them happen. This is how administrators try an edit before deploying it,
//! and how the process library's rules are tested. See `docs/simulation.md`.
//!
//! Layout: `raw.rs` (the file's shape), `expect.rs` (the checks), this file
//! (reading and running).

mod expect;
mod raw;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use marked_yaml::Node;
use serde::Serialize;
use serde_json::Value as Json;

pub use expect::{Check, RenderedDocument};
pub use raw::schema;
use raw::{instant, RawAction, RawScenario};

use crate::calendar::Calendar;
use crate::definition::{Definition, ValueType};
use crate::runtime::{values, Command, Directory, Event, HistoryEntry, InstanceState};
use crate::scheduler::{Scheduler, SchedulerOptions};
use crate::service::{Engine, Fired, ServiceError};
use crate::store::{directory, MemoryStore, OutboxKind, Store};

/// A scenario file that cannot be run as written (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ScenarioError {
    /// The scenario file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The outcome of a scenario run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub name: Option<String>,
    /// Every expectation, passed or not.
    pub checks: Vec<Check>,
    /// The instance's history.
    pub timeline: Vec<HistoryEntry>,
    /// The final state.
    pub state: Option<InstanceState>,
    /// The documents the run issued, rendered.
    pub documents: Vec<RenderedDocument>,
}

impl Report {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.found.is_none())
    }
}

fn line_of(n: &Node) -> usize {
    n.span().start().map_or(1, |m| m.line())
}

/// `s` with its control characters escaped (`\u{1b}`), for a message that
/// quotes what it could not read: a message is one line and moves no
/// terminal's cursor.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A scenario read and checked for form, ready to run.
pub struct Scenario {
    file: String,
    dir: PathBuf,
    raw: RawScenario,
    actions: Vec<(usize, RawAction)>,
}

impl Scenario {
    /// Reads a scenario file; form errors carry file:line.
    pub fn read(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let err = |line: usize, message: String| ScenarioError {
            file: file.clone(),
            line,
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(1, e.to_string()))?;
        // Windows editors start a file with a BOM; it is no part of the first key.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        // The YAML parser takes a NUL for the end of the text: the steps
        // after it would not run, and nobody would know.
        if let Some(at) = text.find('\0') {
            return Err(err(
                1 + text[..at].matches('\n').count(),
                "a NUL character; the file is not text".into(),
            ));
        }
        // A second `steps:` would silently replace the first.
        let options = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
        let root = duban_core::yaml::parse(text, options).map_err(|e| match &e {
            duban_core::yaml::Error::TooDeep { line, .. } => {
                err(*line, format!("{e}; {}", duban_core::yaml::TOO_DEEP_HINT))
            }
            duban_core::yaml::Error::Load(_) => err(
                e.line().unwrap_or(1),
                format!("not valid YAML: {}", printable(&e.to_string())),
            ),
        })?;
        let map = root.as_mapping().ok_or_else(|| {
            err(
                1,
                "a scenario is a mapping with `definition:` and `steps:`".into(),
            )
        })?;
        let mut head = marked_yaml::types::MarkedMappingNode::new_empty(*root.span());
        for (k, v) in map.iter() {
            if k.as_str() != "steps" {
                head.insert(k.clone(), v.clone());
            }
        }
        let raw: RawScenario = marked_yaml::from_node(&Node::Mapping(head)).map_err(|e| {
            err(
                e.start_mark().map_or(1, |m| m.line()),
                printable(&e.to_string()),
            )
        })?;
        let steps = match map.get_key_value("steps") {
            Some((_, Node::Sequence(steps))) => steps,
            Some((key, _)) => {
                return Err(err(
                    key.span().start().map_or(1, |m| m.line()),
                    "`steps:` must be a list of actions, `- at: …`".into(),
                ))
            }
            None => {
                return Err(err(
                    line_of(&root),
                    "missing `steps:`, the list of actions".into(),
                ))
            }
        };
        let mut actions = Vec::new();
        for node in steps.iter() {
            let line = line_of(node);
            let a: RawAction = marked_yaml::from_node(node).map_err(|e| {
                err(
                    e.start_mark().map_or(line, |m| m.line()),
                    printable(&e.to_string()),
                )
            })?;
            let kinds = [
                a.start.is_some(),
                a.complete.is_some(),
                a.receive.is_some(),
                a.message.is_some(),
                a.cancel.is_some(),
                a.recuse.is_some(),
                a.decide_recusal.is_some(),
                a.advance.is_some(),
                a.migrate.is_some(),
                a.expect.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(err(
                    line,
                    "each step is exactly one of start, complete, receive, message, cancel, recuse, decide_recusal, advance, migrate, expect (with an optional `at:`)".into(),
                ));
            }
            for t in [a.at.as_deref(), a.advance.as_deref()]
                .into_iter()
                .flatten()
            {
                if instant(t).is_none() {
                    return Err(err(
                        line,
                        format!(
                            "`{}` is not an instant (2025-09-26T10:00:00+08:00) or a date",
                            printable(t)
                        ),
                    ));
                }
            }
            actions.push((line, a));
        }
        Ok(Scenario {
            file,
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            raw,
            actions,
        })
    }

    /// The definition file the scenario names, relative to the scenario.
    pub fn definition_path(&self) -> Option<PathBuf> {
        self.raw.definition.as_ref().map(|d| self.dir.join(d))
    }

    /// Runs the scenario on a throwaway in-memory store with a virtual clock.
    /// `definition` and `profile` override the scenario's; `documents`
    /// renders the documents the run issues (the notifiers' renderer, or
    /// [`NoDocuments`]).
    pub async fn run(
        &self,
        definition: Option<&Path>,
        profile: Option<&str>,
        calendar: Calendar,
        documents: &dyn DocumentText,
    ) -> Result<Report, ScenarioError> {
        let (report, engine, _) = self
            .run_keeping(definition, profile, calendar, documents)
            .await?;
        engine.store().close().await;
        Ok(report)
    }

    /// [`Scenario::run`], also giving the engine it ran on (its in-memory
    /// store holds every instance, history line and outbox row of the run)
    /// and the virtual clock's last instant: what `duban simulate
    /// --case-file` makes the case file from.
    pub async fn run_keeping(
        &self,
        definition: Option<&Path>,
        profile: Option<&str>,
        calendar: Calendar,
        documents: &dyn DocumentText,
    ) -> Result<(Report, Arc<Engine<MemoryStore>>, Option<DateTime<Utc>>), ScenarioError> {
        // What a run refuses quotes paths and names from the scenario; a
        // definition's diagnostic keeps its lines.
        let err = |line: usize, message: String| ScenarioError {
            file: self.file.clone(),
            line,
            message: message
                .split('\n')
                .map(printable)
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let def_path = definition
            .map(Path::to_path_buf)
            .or_else(|| self.definition_path())
            .ok_or_else(|| {
                err(
                    1,
                    "no definition: give `definition:` or one on the command line".into(),
                )
            })?;
        let def_path = def_path.as_path();
        let profile = profile.or(self.raw.profile.as_deref());
        let engine = Arc::new(
            Engine::new(MemoryStore::new(), calendar)
                .await
                .map_err(|e| err(1, e.to_string()))?,
        );
        if let Some(d) = &self.raw.directory {
            let path = self.dir.join(d);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| err(1, format!("{}: {e}", path.display())))?;
            let dir = directory::parse(&text, path.extension().is_some_and(|x| x == "csv"))
                .map_err(|e| {
                    let all: Vec<String> = e.iter().map(|x| x.to_string()).collect();
                    err(1, format!("{}: {}", path.display(), all.join("; ")))
                })?;
            engine
                .import_directory(dir)
                .await
                .map_err(|e| err(1, e.to_string()))?;
        }
        // The clock starts at the first step's instant; the definitions are
        // deployed then, so recurring starts count from there.
        let first = self
            .actions
            .first()
            .and_then(|(_, a)| a.at.as_deref().or(a.advance.as_deref()))
            .and_then(instant)
            .ok_or_else(|| {
                err(
                    self.actions.first().map_or(1, |(l, _)| *l),
                    "the first step needs `at:`".into(),
                )
            })?;
        // Deploy the definition with the others in its folder, so `call`s resolve.
        let folder = def_path.parent().map(Path::to_path_buf).unwrap_or_default();
        engine.deploy(&[folder], first).await.map_err(|e| match e {
            ServiceError::Invalid(d) => err(
                1,
                format!(
                    "the definition is invalid: {}",
                    d.first().map(|x| x.to_string()).unwrap_or_default()
                ),
            ),
            other => err(1, other.to_string()),
        })?;
        let process =
            peek_id(def_path).ok_or_else(|| err(1, format!("{}: no `id:`", def_path.display())))?;
        // The scenario's own definition: deployed now, so as written.
        engine
            .definition(&process, None)
            .await
            .map_err(|e| err(1, e.to_string()))?;
        let mut sim = Sim {
            scheduler: Scheduler::new(
                engine.clone(),
                SchedulerOptions {
                    owner: "simulator".into(),
                    ..Default::default()
                },
            ),
            engine,
            documents,
            rendered: Vec::new(),
            seen_rows: std::collections::BTreeSet::new(),
            names: BTreeMap::new(),
            last: None,
            dir: self.dir.clone(),
        };
        let mut now: Option<DateTime<Utc>> = None;
        let mut last_error: Option<String> = None;
        let mut checks = Vec::new();
        for (line, a) in &self.actions {
            let line = *line;
            if let Some(t) = a.at.as_deref().or(a.advance.as_deref()).and_then(instant) {
                if let Some(n) = now.filter(|n| t < *n) {
                    return Err(err(line, format!("time goes backwards: {t} is before {n}")));
                }
                for f in sim
                    .pass(now.unwrap_or(t), t)
                    .await
                    .map_err(|e| err(line, e))?
                {
                    checks.push(Check {
                        line,
                        expected: "every recurring start succeeds".into(),
                        found: Some(f),
                    });
                }
                now = Some(t);
            }
            let at = now.ok_or_else(|| err(line, "the first step needs `at:`".into()))?;
            if a.expect.is_none() {
                last_error = None;
            }
            let outcome = sim.act(a, &process, profile, at).await;
            if let Err(e) = outcome {
                // A refused action fails, unless the next step expects the refusal.
                last_error = Some(e.clone());
                checks.push(Check {
                    line,
                    expected: "the action succeeds".into(),
                    found: Some(e),
                });
            }
            if a.expect.is_none() && a.advance.is_none() {
                // What the action made due at once (a period that had
                // already run), `serve` applies at its next round: now.
                for f in sim.pass(at, at).await.map_err(|e| err(line, e))? {
                    checks.push(Check {
                        line,
                        expected: "every recurring start succeeds".into(),
                        found: Some(f),
                    });
                }
            }
            if let Some(x) = &a.expect {
                if let (Some(want), Some(got)) = (&x.error, &last_error) {
                    if got.contains(want.as_str()) {
                        if let Some(c) = checks
                            .iter_mut()
                            .rev()
                            .find(|c| c.expected == "the action succeeds")
                        {
                            c.found = None;
                            c.expected = format!("a refusal containing `{want}`");
                        }
                    }
                } else if let Some(want) = &x.error {
                    checks.push(Check {
                        line,
                        expected: format!("a refusal containing `{want}`"),
                        found: Some("the action succeeded".into()),
                    });
                }
                let all = sim
                    .engine
                    .instances(None, None)
                    .await
                    .map_err(|e| err(line, e.to_string()))?;
                let deployed: Vec<String> = sim
                    .engine
                    .definitions()
                    .await
                    .map_err(|e| err(line, e.to_string()))?
                    .into_iter()
                    .map(|d| d.id)
                    .collect();
                expect::expect_run(line, x, &all, &deployed, &mut checks);
                if x.about_instance() {
                    match sim.resolve(x.instance.as_deref()).await {
                        Ok(id) => sim
                            .check(line, x, &id, &mut checks)
                            .await
                            .map_err(|e| err(line, e))?,
                        Err(e) => checks.push(Check {
                            line,
                            expected: "an instance to check".into(),
                            found: Some(e),
                        }),
                    }
                }
            }
        }
        let (timeline, state) = match &sim.last {
            Some(id) => (
                sim.engine
                    .history(id)
                    .await
                    .map_err(|e| err(1, e.to_string()))?,
                Some(
                    sim.engine
                        .instance(id)
                        .await
                        .map_err(|e| err(1, e.to_string()))?,
                ),
            ),
            None => (Vec::new(), None),
        };
        let report = Report {
            name: self.raw.name.clone(),
            checks,
            timeline,
            state,
            documents: sim.rendered,
        };
        Ok((report, sim.engine, now))
    }
}

/// Renders a document's plain text, as `duban serve`'s document writer
/// does; the notifiers crate has the renderer.
pub trait DocumentText: Sync {
    /// The text of the document `issued` of `def` in `state`, at `now`.
    fn text(
        &self,
        def: &Definition,
        state: &InstanceState,
        issued: Issued<'_>,
        directory: &dyn Directory,
        now: DateTime<Utc>,
    ) -> Result<String, String>;

    /// The title of that document as issued, when it reads the instance
    /// (`行政执法监督{{letter_kind}}`); `None` keeps the definition's title.
    fn title(
        &self,
        _def: &Definition,
        _state: &InstanceState,
        _issued: Issued<'_>,
        _directory: &dyn Directory,
        _now: DateTime<Utc>,
    ) -> Option<String> {
        None
    }
}

/// Which document was issued where: what a `render_document` row names.
#[derive(Clone, Copy, Debug)]
pub struct Issued<'a> {
    /// The document id.
    pub document: &'a str,
    /// The step that issued it.
    pub step: &'a str,
    /// The task it was issued for, when the row names one (an item of a
    /// `for_each` step); otherwise the step's latest task.
    pub task: Option<&'a str>,
}

/// No renderer: a document's title is known, its text is not.
pub struct NoDocuments;

impl DocumentText for NoDocuments {
    fn text(
        &self,
        _: &Definition,
        _: &InstanceState,
        _: Issued<'_>,
        _: &dyn Directory,
        _: DateTime<Utc>,
    ) -> Result<String, String> {
        Err("this run renders no documents".into())
    }
}

/// A run in progress.
struct Sim<'a> {
    engine: Arc<Engine<MemoryStore>>,
    scheduler: Scheduler<MemoryStore>,
    documents: &'a dyn DocumentText,
    rendered: Vec<RenderedDocument>,
    seen_rows: std::collections::BTreeSet<i64>,
    /// Instances by the name given at start.
    names: BTreeMap<String, String>,
    /// The instance started last: the one steps act on by default.
    last: Option<String>,
    /// The scenario's folder (what `migrate.to` is relative to).
    dir: PathBuf,
}

impl Sim<'_> {
    /// Moves the clock from `from` to `to` as `duban serve` would live
    /// through it, one thing at a time in time order: the recurring starts
    /// that fall due, each at its occurrence, and every due timer, oldest
    /// first, each at its due instant — or, for a timer already due when
    /// the transition that scheduled it happened (a period that had run
    /// before its instance started, a chain of expiries), at the moment of
    /// that transition, as `serve` applies it at its next round, never
    /// before. The documents each transition issues are rendered right
    /// after it. Returns the recurring starts that were refused.
    async fn pass(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<String>, String> {
        let e = |e: ServiceError| e.to_string();
        let engine = self.engine.clone();
        let store = engine.store();
        let mut cursor = from;
        let mut failed = Vec::new();
        // Far beyond any scenario: a claim the run took is never taken again.
        let lease = Duration::days(365 * 100);
        loop {
            let next = store.next_due().await.map_err(|e| e.to_string())?;
            let horizon = match next {
                Some(n) if n <= to => n.max(cursor),
                _ => to,
            };
            let r = self.scheduler.start_recurring(horizon).await.map_err(e)?;
            failed.extend(r.failed);
            if r.started > 0 {
                self.render().await?;
            }
            let claimed = store
                .claim_due(horizon, 1, "simulator", horizon + lease)
                .await
                .map_err(|e| e.to_string())?;
            let Some(t) = claimed.into_iter().next() else {
                if horizon >= to {
                    return Ok(failed);
                }
                cursor = horizon + Duration::milliseconds(1);
                continue;
            };
            let last = self
                .engine
                .history(&t.instance)
                .await
                .map_err(e)?
                .last()
                .map(|h| h.at);
            let when = [t.due, cursor]
                .into_iter()
                .chain(last)
                .max()
                .expect("two at least");
            let event = Event::TimerFired {
                timer: t.id.clone(),
            };
            if let Fired::Stale(_) = self
                .engine
                .fire(&t.instance, &event, when)
                .await
                .map_err(e)?
            {
                store.drop_timer(&t.id).await.map_err(|e| e.to_string())?;
            }
            cursor = when;
            self.render().await?;
        }
    }

    /// Renders the documents issued since the last look, each as of the
    /// instant it was issued (the state is the one right after), and
    /// delivers the notices' emails: each reaches its recipient's mail
    /// server at the instant it was queued (what starts `deemed_receipt`),
    /// and the messages `send_message` steps sent, at the instant they were
    /// sent; until what these cause has been carried out too.
    async fn render(&mut self) -> Result<(), String> {
        loop {
            let seen = self.seen_rows.len();
            self.render_once().await?;
            if self.seen_rows.len() == seen {
                return Ok(());
            }
        }
    }

    async fn render_once(&mut self) -> Result<(), String> {
        let rows = self.engine.outbox(None).await.map_err(|e| e.to_string())?;
        for row in rows {
            if row.kind == OutboxKind::SendMessage && self.seen_rows.insert(row.id) {
                self.engine
                    .replay_call(&row, row.created_at)
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            }
            if row.kind == OutboxKind::Email && self.seen_rows.insert(row.id) {
                if let Some(task) = serde_json::from_str::<Command>(&row.payload)
                    .ok()
                    .and_then(|c| c.notice_task().map(str::to_string))
                {
                    let event = Event::Delivered { task };
                    self.engine
                        .fire(&row.instance, &event, row.created_at)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                continue;
            }
            if row.kind != OutboxKind::RenderDocument || !self.seen_rows.insert(row.id) {
                continue;
            }
            let Some(issued) = row.issued_document() else {
                continue;
            };
            let state = self
                .engine
                .instance(&row.instance)
                .await
                .map_err(|e| e.to_string())?;
            let def = self
                .engine
                .definition(&state.definition, Some(state.version))
                .await
                .map_err(|e| e.to_string())?;
            let dir = self.engine.directory();
            let title = self
                .documents
                .title(&def, &state, issued.issued(), dir.as_ref(), row.created_at)
                .or_else(|| def.documents.get(&issued.document).map(|d| d.title.clone()))
                .unwrap_or_default();
            let text =
                self.documents
                    .text(&def, &state, issued.issued(), dir.as_ref(), row.created_at);
            self.rendered.push(RenderedDocument {
                instance: row.instance.clone(),
                document: issued.document,
                title,
                at: row.created_at,
                text,
            });
        }
        Ok(())
    }

    /// The instance a step names: a name given at start, an instance id,
    /// or `NAME/STEP`, the child the call step STEP of NAME started last
    /// (`NAME/STEP/N`: the child of item N of a `for_each` call);
    /// by default the instance started last.
    async fn resolve(&self, name: Option<&str>) -> Result<String, String> {
        let Some(name) = name else {
            return self.last.clone().ok_or("no instance started yet".into());
        };
        if let Some(id) = self.names.get(name) {
            return Ok(id.clone());
        }
        let all = self
            .engine
            .instances(None, None)
            .await
            .map_err(|e| e.to_string())?;
        // NAME/STEP/N: the child of item N of a `for_each` call.
        if let Some((rest, n)) = name
            .rsplit_once('/')
            .filter(|(rest, n)| rest.contains('/') && n.parse::<u32>().is_ok())
        {
            let (parent, step) = rest.rsplit_once('/').expect("checked");
            let parent = Box::pin(self.resolve(Some(parent))).await?;
            let prefix = format!("{parent}-{step}-");
            let suffix = format!("-{n}");
            return all
                .iter()
                .filter_map(|r| {
                    let rev: u64 =
                        r.id.strip_prefix(&prefix)?
                            .strip_suffix(&suffix)?
                            .parse()
                            .ok()?;
                    Some((rev, r.id.clone()))
                })
                .max()
                .map(|(_, id)| id)
                .ok_or_else(|| {
                    format!("step `{step}` of `{parent}` started no child for item {n}")
                });
        }
        if let Some((parent, step)) = name.rsplit_once('/') {
            let parent = Box::pin(self.resolve(Some(parent))).await?;
            let prefix = format!("{parent}-{step}-");
            return all
                .iter()
                .filter_map(|r| {
                    let rev: u64 = r.id.strip_prefix(&prefix)?.parse().ok()?;
                    Some((rev, r.id.clone()))
                })
                .max()
                .map(|(_, id)| id)
                .ok_or_else(|| format!("step `{step}` of `{parent}` started no child"));
        }
        if all.iter().any(|r| r.id == name) {
            return Ok(name.to_string());
        }
        let known: Vec<&String> = self.names.keys().collect();
        Err(format!(
            "no instance `{name}` (named: {known:?}; or give an instance id, or NAME/STEP for a called child)"
        ))
    }

    /// Carries out one action step; an `Err` is a failed check.
    async fn act(
        &mut self,
        a: &RawAction,
        process: &str,
        profile: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), String> {
        let e = |e: ServiceError| e.to_string();
        if let Some(s) = &a.start {
            let which = s.process.as_deref().unwrap_or(process);
            let def = self.engine.definition(which, None).await.map_err(e)?;
            let vars = typed(&def, &s.variables);
            let actor = s.actor.as_deref().unwrap_or("admin");
            let profile = match &s.profile {
                Some(p) => Some(p.as_str()),
                None if which == process => profile,
                None => None,
            };
            let t = self
                .engine
                .start(which, profile, vars, actor, at)
                .await
                .map_err(e)?;
            let id = t.state.id.clone();
            if let Some(n) = &s.instance {
                self.names.insert(n.clone(), id.clone());
            }
            self.last = Some(id);
        } else if let Some(c) = &a.complete {
            let id = self.resolve(c.instance.as_deref()).await?;
            let task = self.open_task(&id, &c.step, c.item.as_ref()).await?;
            let def = self.definition_of(&id).await?;
            let actor = c.actor.as_deref().unwrap_or("admin");
            self.engine
                .complete(&task, &c.outcome, typed(&def, &c.variables), actor, at)
                .await
                .map_err(e)?;
        } else if let Some(r) = &a.receive {
            let id = self.resolve(r.instance.as_deref()).await?;
            let task = self.open_task(&id, &r.step, r.item.as_ref()).await?;
            let actor = r.actor.clone().unwrap_or_else(|| "recipient".into());
            self.engine
                .apply(&id, &Event::Receive { task, actor }, at)
                .await
                .map_err(e)?;
        } else if let Some(m) = &a.message {
            let def = self.engine.definition(process, None).await.map_err(e)?;
            self.engine
                .message(&m.name, &m.key, typed(&def, &m.variables), at)
                .await
                .map_err(e)?;
        } else if let Some(c) = &a.cancel {
            let id = self.resolve(c.instance.as_deref()).await?;
            let reason = c.reason.as_deref().unwrap_or("撤销");
            let actor = c.actor.as_deref().unwrap_or("admin");
            self.engine
                .cancel(&id, reason, actor, at)
                .await
                .map_err(e)?;
        } else if let Some(r) = &a.recuse {
            let id = self.resolve(r.instance.as_deref()).await?;
            let task = self.open_task(&id, &r.step, r.item.as_ref()).await?;
            self.engine
                .request_recusal(&task, &r.person, &r.reason, &r.actor, at)
                .await
                .map_err(e)?;
        } else if let Some(m) = &a.migrate {
            let id = self.resolve(m.instance.as_deref()).await?;
            let state = self.engine.instance(&id).await.map_err(e)?;
            let path = self.dir.join(&m.to);
            self.engine
                .deploy(std::slice::from_ref(&path), at)
                .await
                .map_err(|x| match x {
                    ServiceError::Invalid(d) => format!(
                        "{}: the target definition is invalid: {}",
                        path.display(),
                        d.first().map(|x| x.to_string()).unwrap_or_default()
                    ),
                    other => other.to_string(),
                })?;
            let to = self
                .engine
                .definition(&state.definition, None)
                .await
                .map_err(e)?;
            let req = crate::migration::MigrationRequest {
                process: state.definition.clone(),
                from: state.version,
                to: to.version,
                map: m.map.clone().into_iter().collect(),
                recount: m.recount,
                variables: typed(&to, &m.variables).into(),
                instances: Some(vec![id]),
            };
            let actor = m.actor.as_deref().unwrap_or("admin");
            self.engine
                .migration_apply(&req, actor, at)
                .await
                .map_err(e)?;
        } else if let Some(d) = &a.decide_recusal {
            let id = self.resolve(d.instance.as_deref()).await?;
            let task = self.open_task(&id, &d.step, d.item.as_ref()).await?;
            self.engine
                .decide_recusal(&task, &d.person, d.granted, &d.actor, at)
                .await
                .map_err(e)?;
        }
        self.render().await
    }

    async fn definition_of(&self, id: &str) -> Result<Arc<Definition>, String> {
        let state = self.engine.instance(id).await.map_err(|e| e.to_string())?;
        self.engine
            .definition(&state.definition, Some(state.version))
            .await
            .map_err(|e| e.to_string())
    }

    /// The open task at `step`; of a `for_each` step, the one of `item`
    /// (the item's value, e.g. a person id, or its position from 1).
    async fn open_task(
        &self,
        instance: &str,
        step: &str,
        item: Option<&Json>,
    ) -> Result<String, String> {
        let state = self
            .engine
            .instance(instance)
            .await
            .map_err(|e| e.to_string())?;
        // A YAML scalar arrives as text: `item: 3` is the third item
        // unless an item's value is "3".
        let position = |v: &Json| match v {
            Json::Number(n) => n.as_u64(),
            Json::String(s) => s.parse().ok(),
            _ => None,
        };
        let by_value = item.is_some_and(|want| {
            state
                .open_tasks()
                .any(|t| t.step == step && t.item.as_ref().is_some_and(|i| i.value == *want))
        });
        let is_item = |t: &&crate::runtime::TaskState| match (item, &t.item) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(want), Some(i)) if by_value => *want == i.value,
            (Some(want), Some(i)) => position(want) == Some(u64::from(i.index) + 1),
        };
        let open: Vec<_> = state
            .open_tasks()
            .filter(|t| t.step == step)
            .filter(is_item)
            .collect();
        let which = item.map(|i| format!(" for item {i}")).unwrap_or_default();
        match open.as_slice() {
            [t] => Ok(t.id.clone()),
            [] => Err(format!(
                "no open task at step `{step}`{which} of instance `{instance}`; open: [{}], status {}",
                state.current_steps().join(", "),
                state.status.name()
            )),
            [..] => {
                let items: Vec<String> = open
                    .iter()
                    .filter_map(|t| t.item.as_ref().map(|i| i.value.to_string()))
                    .collect();
                Err(format!(
                    "several open tasks at step `{step}`{which}; name one with `item:` (open items: {})",
                    items.join(", ")
                ))
            }
        }
    }

    /// Appends the checks of `x` about instance `id`.
    async fn check(
        &self,
        line: usize,
        x: &raw::RawExpect,
        id: &str,
        checks: &mut Vec<Check>,
    ) -> Result<(), String> {
        let s = |e: ServiceError| e.to_string();
        let state = self.engine.instance(id).await.map_err(s)?;
        let history = self.engine.history(id).await.map_err(s)?;
        let outbox: Vec<_> = self
            .engine
            .outbox(None)
            .await
            .map_err(s)?
            .into_iter()
            .filter(|r| r.instance == id)
            .collect();
        let documents: Vec<_> = self
            .rendered
            .iter()
            .filter(|d| d.instance == id)
            .cloned()
            .collect();
        let dir = self.engine.directory();
        let def = self
            .engine
            .definition(&state.definition, Some(state.version))
            .await
            .map_err(s)?;
        let seen = expect::Seen {
            state: &state,
            history: &history,
            outbox: &outbox,
            documents: &documents,
            directory: dir.as_ref(),
            definition: &def,
        };
        expect::expect(line, x, &seen, checks);
        Ok(())
    }
}

fn peek_id(path: &Path) -> Option<String> {
    crate::definition::peek_id(&std::fs::read_to_string(path).ok()?)
}

/// Scenario values arrive as text; read them by their declared types.
fn typed(def: &Definition, vars: &BTreeMap<String, Json>) -> BTreeMap<String, Json> {
    vars.iter()
        .map(|(k, v)| {
            let ty = def.variables.get(k).map(|x| &x.ty);
            let v = match (ty, v) {
                (Some(t), Json::String(s)) => values::from_text(t, s),
                (Some(ValueType::List(inner)), Json::Array(items)) => Json::Array(
                    items
                        .iter()
                        .map(|x| {
                            x.as_str()
                                .map_or_else(|| x.clone(), |s| values::from_text(inner, s))
                        })
                        .collect(),
                ),
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}
