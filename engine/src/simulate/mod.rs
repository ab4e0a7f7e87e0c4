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

use chrono::{DateTime, Utc};
use marked_yaml::Node;
use serde::Serialize;
use serde_json::Value as Json;

pub use expect::Check;
use raw::{instant, RawAction, RawScenario};

use crate::calendar::Calendar;
use crate::definition::{Definition, ValueType};
use crate::runtime::{values, Event, HistoryEntry, InstanceState};
use crate::scheduler::{Scheduler, SchedulerOptions};
use crate::service::{Engine, ServiceError};
use crate::store::{directory, MemoryStore, Store};

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
        let root = marked_yaml::parse_yaml(0, &text)
            .map_err(|e| err(1, format!("not valid YAML: {e}")))?;
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
        let raw: RawScenario = marked_yaml::from_node(&Node::Mapping(head))
            .map_err(|e| err(e.start_mark().map_or(1, |m| m.line()), e.to_string()))?;
        let steps = map.get_sequence("steps").ok_or_else(|| {
            err(
                line_of(&root),
                "missing `steps:`, the list of actions".into(),
            )
        })?;
        let mut actions = Vec::new();
        for node in steps.iter() {
            let line = line_of(node);
            let a: RawAction = marked_yaml::from_node(node)
                .map_err(|e| err(e.start_mark().map_or(line, |m| m.line()), e.to_string()))?;
            let kinds = [
                a.start.is_some(),
                a.complete.is_some(),
                a.receive.is_some(),
                a.message.is_some(),
                a.advance.is_some(),
                a.expect.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(err(
                    line,
                    "each step is exactly one of start, complete, receive, message, advance, expect (with an optional `at:`)".into(),
                ));
            }
            for t in [a.at.as_deref(), a.advance.as_deref()]
                .into_iter()
                .flatten()
            {
                if instant(t).is_none() {
                    return Err(err(
                        line,
                        format!("`{t}` is not an instant (2025-09-26T10:00:00+08:00) or a date"),
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
    /// `definition` and `profile` override the scenario's.
    pub async fn run(
        &self,
        definition: Option<&Path>,
        profile: Option<&str>,
        calendar: Calendar,
    ) -> Result<Report, ScenarioError> {
        let err = |line: usize, message: String| ScenarioError {
            file: self.file.clone(),
            line,
            message,
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
        // Deploy the definition with the others in its folder, so `call`s resolve.
        let folder = def_path.parent().map(Path::to_path_buf).unwrap_or_default();
        engine
            .deploy(&[folder], DateTime::<Utc>::UNIX_EPOCH)
            .await
            .map_err(|e| match e {
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
        let def = engine
            .definition(&process, None)
            .await
            .map_err(|e| err(1, e.to_string()))?;
        let scheduler = Scheduler::new(
            engine.clone(),
            SchedulerOptions {
                owner: "simulator".into(),
                ..Default::default()
            },
        );
        let mut now: Option<DateTime<Utc>> = None;
        let mut instance: Option<String> = None;
        let mut last_error: Option<String> = None;
        let mut checks = Vec::new();
        for (line, a) in &self.actions {
            let line = *line;
            if let Some(t) = a.at.as_deref().or(a.advance.as_deref()).and_then(instant) {
                if let Some(n) = now.filter(|n| t < *n) {
                    return Err(err(line, format!("time goes backwards: {t} is before {n}")));
                }
                scheduler
                    .fire_due(t, true)
                    .await
                    .map_err(|e| err(line, e.to_string()))?;
                now = Some(t);
            }
            let at = now.ok_or_else(|| err(line, "the first step needs `at:`".into()))?;
            if a.expect.is_none() {
                last_error = None;
            }
            let need = |inst: &Option<String>| {
                inst.clone()
                    .ok_or_else(|| err(line, "no instance started yet".into()))
            };
            let outcome = if let Some(s) = &a.start {
                let vars = typed(&def, &s.variables);
                let actor = s.actor.as_deref().unwrap_or("admin");
                engine
                    .start(&process, profile, vars, actor, at)
                    .await
                    .map(|t| instance = Some(t.state.id.clone()))
            } else if let Some(c) = &a.complete {
                let id = need(&instance)?;
                let task = open_task(&engine, &id, &c.step)
                    .await
                    .map_err(|m| err(line, m))?;
                let actor = c.actor.as_deref().unwrap_or("admin");
                engine
                    .complete(&task, &c.outcome, typed(&def, &c.variables), actor, at)
                    .await
                    .map(|_| ())
            } else if let Some(r) = &a.receive {
                let id = need(&instance)?;
                let task = open_task(&engine, &id, &r.step)
                    .await
                    .map_err(|m| err(line, m))?;
                let actor = r.actor.clone().unwrap_or_else(|| "recipient".into());
                engine
                    .apply(&id, &Event::Receive { task, actor }, at)
                    .await
                    .map(|_| ())
            } else if let Some(m) = &a.message {
                engine
                    .message(&m.name, &m.key, typed(&def, &m.variables), at)
                    .await
                    .map(|_| ())
            } else {
                Ok(())
            };
            if let Err(e) = outcome {
                // A refused action fails, unless the next step expects the refusal.
                last_error = Some(e.to_string());
                checks.push(Check {
                    line,
                    expected: "the action succeeds".into(),
                    found: Some(e.to_string()),
                });
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
                let id = need(&instance)?;
                let state = engine
                    .store()
                    .load(&id)
                    .await
                    .map_err(|e| err(line, e.to_string()))?
                    .ok_or_else(|| err(line, "the instance vanished".into()))?;
                let history = engine
                    .store()
                    .history(&id)
                    .await
                    .map_err(|e| err(line, e.to_string()))?;
                expect::expect(line, x, &state, &history, &mut checks);
            }
        }
        let (timeline, state) = match &instance {
            Some(id) => (
                engine
                    .store()
                    .history(id)
                    .await
                    .map_err(|e| err(1, e.to_string()))?,
                engine
                    .store()
                    .load(id)
                    .await
                    .map_err(|e| err(1, e.to_string()))?,
            ),
            None => (Vec::new(), None),
        };
        engine.store().close().await;
        Ok(Report {
            name: self.raw.name.clone(),
            checks,
            timeline,
            state,
        })
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

async fn open_task(
    engine: &Engine<MemoryStore>,
    instance: &str,
    step: &str,
) -> Result<String, String> {
    let state = engine
        .store()
        .load(instance)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no instance")?;
    let open: Vec<_> = state.open_tasks().filter(|t| t.step == step).collect();
    match open.as_slice() {
        [t] => Ok(t.id.clone()),
        [] => Err(format!(
            "no open task at step `{step}`; open: {}",
            state.current_steps().join(", ")
        )),
        _ => Err(format!("several open tasks at step `{step}`")),
    }
}
