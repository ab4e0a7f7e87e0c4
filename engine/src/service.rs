//! The engine as the CLI and the server use it: load, apply, commit.
//!
//! [`Engine`] ties a [`Store`] to the pure core. For each operation it loads
//! the instance, takes the definition at the instance's version (parsed once
//! and cached, never per event), applies the event with the caller's `now`,
//! and commits the transition with the revision it was computed from. A
//! refused event writes nothing; a concurrent change is a
//! [`StoreError::Conflict`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::calendar::Calendar;
use crate::definition::{self, Definition, Diagnostic, LoadContext};
use crate::runtime::directory::MemoryDirectory;
use crate::runtime::{self, values, EngineError, Env, Event, InstanceState, Transition};
use crate::store::{Deployed, Store, StoreError, StoredDefinition};

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The event was refused by the core; nothing was written.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store failed or reported a conflict; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Definitions to deploy are invalid; nothing was deployed.
    #[error("{} problem(s) in the definitions; nothing was deployed", .0.len())]
    Invalid(Vec<Diagnostic>),
    /// No deployed definition with that id.
    #[error("no deployed process `{0}`; deploy it first (`duban deploy processes/`)")]
    UnknownProcess(String),
    /// No instance with that id.
    #[error("no instance `{0}`")]
    UnknownInstance(String),
    /// A file could not be read.
    #[error("{0}")]
    Io(String),
}

/// One deployed file's result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeployReport {
    /// Definition id.
    pub id: String,
    /// Version.
    pub version: u32,
    /// New or unchanged.
    pub result: Deployed,
}

/// The engine over a store.
pub struct Engine<S> {
    /// The store.
    pub store: S,
    /// The calendar periods are counted on; replaced whole when a year's
    /// schedule is loaded while the engine runs.
    calendar: RwLock<Arc<Calendar>>,
    definitions: Mutex<HashMap<(String, u32), Arc<Definition>>>,
    directory: RwLock<Arc<MemoryDirectory>>,
}

fn content_hash(source: &str, files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    for (k, v) in files {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl<S: Store> Engine<S> {
    /// An engine over `store`, with the directory loaded.
    pub async fn new(store: S, calendar: Calendar) -> Result<Self, ServiceError> {
        let dir = store.directory().await?;
        Ok(Engine {
            store,
            calendar: RwLock::new(Arc::new(calendar)),
            definitions: Mutex::new(HashMap::new()),
            directory: RwLock::new(Arc::new(dir)),
        })
    }

    /// Validates the definition files as one library and deploys them. Any
    /// diagnostic refuses the whole deploy.
    pub async fn deploy(
        &self,
        paths: &[PathBuf],
        now: DateTime<Utc>,
    ) -> Result<Vec<DeployReport>, ServiceError> {
        let files = definition::expand_paths(paths).map_err(ServiceError::Io)?;
        let lib = definition::load_library(&files, &[]);
        if !lib.is_valid() {
            return Err(ServiceError::Invalid(lib.diagnostics().cloned().collect()));
        }
        let mut reports = Vec::new();
        for f in &lib.files {
            let def = definition::peek_id(&f.text)
                .and_then(|id| lib.definitions.get(&id))
                .expect("a valid library gives each file's definition");
            let dir = f.path.parent().map(PathBuf::from).unwrap_or_default();
            let mut templates = BTreeMap::new();
            for t in definition::template_files(&f.text) {
                let text = std::fs::read_to_string(dir.join(&t))
                    .map_err(|e| ServiceError::Io(format!("{}: {e}", dir.join(&t).display())))?;
                templates.insert(t, text);
            }
            let stored = StoredDefinition {
                id: def.id.clone(),
                version: def.version,
                hash: content_hash(&f.text, &templates),
                source: f.text.clone(),
                files: serde_json::to_string(&templates).expect("strings serialise"),
                file: f.path.display().to_string(),
                deployed_at: now,
            };
            let result = self.store.deploy(&stored).await?;
            reports.push(DeployReport {
                id: def.id.clone(),
                version: def.version,
                result,
            });
        }
        Ok(reports)
    }

    /// The definition `id` at `version` (latest when `None`), parsed once.
    pub async fn definition(
        &self,
        id: &str,
        version: Option<u32>,
    ) -> Result<Arc<Definition>, ServiceError> {
        if let Some(v) = version {
            if let Some(d) = self
                .definitions
                .lock()
                .expect("not poisoned")
                .get(&(id.to_string(), v))
            {
                return Ok(d.clone());
            }
        }
        let stored = self
            .store
            .definition(id, version)
            .await?
            .ok_or_else(|| ServiceError::UnknownProcess(id.into()))?;
        if let Some(d) = self
            .definitions
            .lock()
            .expect("not poisoned")
            .get(&(id.to_string(), stored.version))
        {
            return Ok(d.clone());
        }
        let files: BTreeMap<String, String> =
            serde_json::from_str(&stored.files).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let ctx = LoadContext {
            files: Some(files),
            ..Default::default()
        };
        let def = definition::load_str(&stored.file, &stored.source, &ctx).map_err(|d| {
            StoreError::Corrupt(format!(
                "deployed definition {id} v{} no longer loads: {}",
                stored.version,
                d.first().map(|d| d.to_string()).unwrap_or_default()
            ))
        })?;
        let def = Arc::new(def);
        self.definitions
            .lock()
            .expect("not poisoned")
            .insert((id.to_string(), stored.version), def.clone());
        Ok(def)
    }

    /// The directory the engine resolves people with.
    pub fn directory(&self) -> Arc<MemoryDirectory> {
        self.directory.read().expect("not poisoned").clone()
    }

    /// Replaces the directory.
    pub async fn import_directory(&self, dir: MemoryDirectory) -> Result<(), ServiceError> {
        self.store.import_directory(&dir).await?;
        *self.directory.write().expect("not poisoned") = Arc::new(dir);
        Ok(())
    }

    /// Reads `k=v` texts by the declared types of `process`'s variables.
    pub async fn typed_vars(
        &self,
        def: &Definition,
        pairs: &[(String, String)],
    ) -> Result<BTreeMap<String, Json>, ServiceError> {
        let mut out = BTreeMap::new();
        for (k, v) in pairs {
            let var = def
                .variables
                .get(k)
                .ok_or_else(|| EngineError::UnknownVariable(k.clone()))?;
            out.insert(k.clone(), values::from_text(&var.ty, v));
        }
        Ok(out)
    }

    /// Reads `k=v` texts by the variable types of the definition instance
    /// `id` runs on (for events on an existing instance).
    pub async fn typed_vars_for(
        &self,
        id: &str,
        pairs: &[(String, String)],
    ) -> Result<BTreeMap<String, Json>, ServiceError> {
        let state = self
            .store
            .load(id)
            .await?
            .ok_or_else(|| ServiceError::UnknownInstance(id.into()))?;
        let def = self
            .definition(&state.definition, Some(state.version))
            .await?;
        self.typed_vars(&def, pairs).await
    }

    fn apply_core(
        &self,
        def: &Definition,
        state: Option<&InstanceState>,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Transition, EngineError> {
        let dir = self.directory();
        let calendar = self.calendar();
        let env = Env {
            definition: def,
            calendar: &calendar,
            directory: dir.as_ref(),
        };
        runtime::apply(&env, state, event, now)
    }

    /// Starts an instance of the latest version of `process`. The start is
    /// checked before an id is taken, so a refused start writes nothing.
    /// Children that its `call` steps start are started too.
    pub async fn start(
        &self,
        process: &str,
        profile: Option<&str>,
        variables: BTreeMap<String, Json>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let t = self
            .start_one(process, profile, variables, actor, now)
            .await?;
        self.settle(&t, now).await?;
        Ok(t)
    }

    /// Starts `process` under a chosen id, exactly once: a second start
    /// under the same id (another engine process, a restart) finds the id
    /// taken and returns `None`. Recurring starts use this, with the
    /// occurrence in the id.
    pub async fn start_once(
        &self,
        id: &str,
        process: &str,
        profile: Option<&str>,
        variables: BTreeMap<String, Json>,
        now: DateTime<Utc>,
    ) -> Result<Option<Transition>, ServiceError> {
        let Some(t) = self.start_as(id, process, profile, variables, now).await? else {
            return Ok(None);
        };
        self.settle(&t, now).await?;
        Ok(Some(t))
    }

    /// Starts `process` as instance `id` and stores it, nothing more;
    /// `None` when the id is taken.
    async fn start_as(
        &self,
        id: &str,
        process: &str,
        profile: Option<&str>,
        variables: BTreeMap<String, Json>,
        now: DateTime<Utc>,
    ) -> Result<Option<Transition>, ServiceError> {
        let def = self.definition(process, None).await?;
        let event = Event::Start {
            instance: id.into(),
            profile: profile.map(str::to_string),
            variables,
            actor: "engine".into(),
        };
        let t = self.apply_core(&def, None, &event, now)?;
        match self.store.commit(None, &t, now).await {
            Ok(()) => Ok(Some(t)),
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn start_one(
        &self,
        process: &str,
        profile: Option<&str>,
        variables: BTreeMap<String, Json>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let def = self.definition(process, None).await?;
        let mut event = Event::Start {
            instance: "0".into(),
            profile: profile.map(str::to_string),
            variables,
            actor: actor.into(),
        };
        self.apply_core(&def, None, &event, now)?;
        let id = self.store.next_instance_id().await?;
        if let Event::Start { instance, .. } = &mut event {
            *instance = id;
        }
        let t = self.apply_core(&def, None, &event, now)?;
        self.store.commit(None, &t, now).await?;
        Ok(t)
    }

    /// Applies `event` to instance `id` and stores the result; then carries
    /// out what it asks of other instances (see [`Engine::settle`]).
    pub async fn apply(
        &self,
        id: &str,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let t = self.apply_one(id, event, now).await?;
        self.settle(&t, now).await?;
        Ok(t)
    }

    async fn apply_one(
        &self,
        id: &str,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let state = self
            .store
            .load(id)
            .await?
            .ok_or_else(|| ServiceError::UnknownInstance(id.into()))?;
        let def = self
            .definition(&state.definition, Some(state.version))
            .await?;
        let t = self.apply_core(&def, Some(&state), event, now)?;
        self.store.commit(Some(state.revision), &t, now).await?;
        Ok(t)
    }

    /// After a stored transition: starts the children its `call` steps asked
    /// for, and hands the result of an ended child to its parent, until
    /// nothing more follows. Each step is its own transaction; a crash
    /// between them leaves a `start_child` or `child_ended` outbox row
    /// pending, and [`Engine::replay_call`] finishes it. Every step is idempotent:
    /// the child's id is fixed by the call, the link is written once, and a
    /// child's result reaches a parent only while it waits.
    async fn settle(&self, first: &Transition, now: DateTime<Utc>) -> Result<(), ServiceError> {
        let mut queue = std::collections::VecDeque::from([first.clone()]);
        while let Some(t) = queue.pop_front() {
            for cmd in &t.commands {
                if let runtime::Command::StartChild { .. } = cmd {
                    queue.extend(self.start_child(&t.state.id, cmd, now).await?);
                }
            }
            let ended = t.history.iter().any(|h| h.what == "ended");
            if ended {
                queue.extend(self.hand_back(&t.state, now).await?);
            }
        }
        Ok(())
    }

    /// Starts the child a `start_child` command asks for, unless it exists;
    /// an existing child that has already ended hands its result back.
    async fn start_child(
        &self,
        parent: &str,
        cmd: &runtime::Command,
        now: DateTime<Utc>,
    ) -> Result<Option<Transition>, ServiceError> {
        let runtime::Command::StartChild {
            child,
            step,
            process,
            profile,
            variables,
        } = cmd
        else {
            return Ok(None);
        };
        // Linked first: a child that ends at once finds its parent.
        self.store.link_child(child, parent, step).await?;
        let started = self
            .start_as(child, process, profile.as_deref(), variables.clone(), now)
            .await?;
        if started.is_some() {
            return Ok(started);
        }
        // Started before (a replay, or another engine process).
        match self.store.load(child).await? {
            Some(state) => self.hand_back(&state, now).await,
            None => Ok(None),
        }
    }

    /// Gives an ended child's result to its parent, if the parent still
    /// waits for it; otherwise nothing.
    async fn hand_back(
        &self,
        child: &runtime::InstanceState,
        now: DateTime<Utc>,
    ) -> Result<Option<Transition>, ServiceError> {
        let runtime::Status::Completed { result } = &child.status else {
            return Ok(None);
        };
        let Some((parent, step)) = self.store.parent_of(&child.id).await? else {
            return Ok(None);
        };
        let Some(p) = self.store.load(&parent).await? else {
            return Ok(None);
        };
        let waits = p
            .waits
            .get(&step)
            .is_some_and(|w| w.child.as_deref().is_none_or(|c| c == child.id));
        if p.status != runtime::Status::Running || !waits {
            return Ok(None);
        }
        let event = Event::ChildEnded {
            step,
            result: result.clone(),
        };
        match self.apply_one(&parent, &event, now).await {
            Ok(t) => Ok(Some(t)),
            // Someone else handed it back in the meantime.
            Err(ServiceError::Store(StoreError::Conflict(_))) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Finishes a `start_child` or `child_ended` outbox row: starts the
    /// child if a crash stopped that, or hands an ended child's result to
    /// its parent if the parent missed it, and carries on from there. Safe
    /// to run while the normal path runs too: every step is idempotent.
    pub async fn replay_call(
        &self,
        row: &crate::store::OutboxRow,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let unreadable =
            |e: serde_json::Error| ServiceError::Io(format!("outbox row {}: {e}", row.id));
        let t = match row.kind.as_str() {
            "child_ended" => {
                let v: Json = serde_json::from_str(&row.payload).map_err(unreadable)?;
                let child = v["child"].as_str().unwrap_or_default();
                match self.store.load(child).await? {
                    Some(state) => self.hand_back(&state, now).await?,
                    None => None,
                }
            }
            _ => {
                let cmd: runtime::Command =
                    serde_json::from_str(&row.payload).map_err(unreadable)?;
                self.start_child(&row.instance, &cmd, now).await?
            }
        };
        if let Some(t) = t {
            self.settle(&t, now).await?;
        }
        Ok(())
    }

    /// Completes task `task` (`INSTANCE.N`) with `outcome`.
    pub async fn complete(
        &self,
        task: &str,
        outcome: &str,
        variables: BTreeMap<String, Json>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let instance = task.split('.').next().unwrap_or(task);
        self.apply(
            instance,
            &Event::Complete {
                task: task.into(),
                outcome: outcome.into(),
                variables,
                actor: actor.into(),
            },
            now,
        )
        .await
    }

    /// The latest deployed version of each process, with its stored row.
    pub async fn deployed(
        &self,
    ) -> Result<Vec<(crate::store::StoredDefinition, Arc<Definition>)>, ServiceError> {
        let mut latest: BTreeMap<String, crate::store::StoredDefinition> = BTreeMap::new();
        for d in self.store.definitions().await? {
            match latest.get(&d.id) {
                Some(l) if l.version >= d.version => {}
                _ => {
                    latest.insert(d.id.clone(), d);
                }
            }
        }
        let mut out = Vec::with_capacity(latest.len());
        for (id, stored) in latest {
            let def = self.definition(&id, Some(stored.version)).await?;
            out.push((stored, def));
        }
        Ok(out)
    }

    /// The calendar in use.
    pub fn calendar(&self) -> Arc<Calendar> {
        self.calendar
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the calendar (a year's schedule was loaded): every period
    /// counted from now on uses it. Call [`Engine::recompute_provisional`]
    /// next, so deadlines counted without the year are counted again.
    pub fn set_calendar(&self, calendar: Calendar) {
        *self
            .calendar
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(calendar);
    }

    /// Recounts the provisional deadlines of every instance on the current
    /// calendar (after a year's schedule is loaded); returns the instances
    /// whose deadlines changed.
    pub async fn recompute_provisional(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, ServiceError> {
        let mut changed = Vec::new();
        for id in self.store.provisional_instances().await? {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match self.apply(&id, &Event::Recompute, now).await {
                    Ok(_) => changed.push(id.clone()),
                    Err(ServiceError::Engine(
                        EngineError::NotApplicable(_) | EngineError::Ended(_),
                    )) => {}
                    Err(ServiceError::Store(StoreError::Conflict(_))) if attempts < 10 => continue,
                    Err(e) => return Err(e),
                }
                break;
            }
        }
        Ok(changed)
    }

    /// Delivers a message to every instance waiting for it; returns their ids.
    pub async fn message(
        &self,
        name: &str,
        key: &str,
        variables: BTreeMap<String, Json>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, ServiceError> {
        let ids = self.store.awaiting(name, key).await?;
        if ids.is_empty() {
            return Err(EngineError::NotApplicable(format!(
                "no instance waits for message `{name}` with key `{key}`"
            ))
            .into());
        }
        for id in &ids {
            self.apply(
                id,
                &Event::Message {
                    name: name.into(),
                    key: key.into(),
                    variables: variables.clone(),
                },
                now,
            )
            .await?;
        }
        Ok(ids)
    }
}
