//! The engine as the CLI and the server use it: load, apply, commit.
//!
//! [`Engine`] ties a [`Store`] to the pure core, with one method per user
//! intent (start, complete, receive, message, cancel, set variables, retry)
//! taking what the user gives — values as text or as JSON ([`Values`]) — and
//! loading the instance once: it takes the definition at the instance's
//! version (parsed once and cached, never per event), types the values by
//! it, applies the event with the caller's `now`, and commits the
//! transition with the revision it was computed from. A refused event
//! writes nothing; when another transition of the instance committed first,
//! the event is judged again on the instance as it now is (at most
//! [`APPLY_ATTEMPTS`] times), and only then is it a [`StoreError::Conflict`].
//!
//! Engine-driven events (timers, a child's result, recounts) go through
//! [`Engine::fire`]: a fault there is stored as a *stuck* instance with the
//! fault's code, never dropped. After a transition commits, the calls it
//! makes and the results it hands back are carried out ([`Engine::apply`]
//! "settles" them); a failure there is logged and left to the outbox rows
//! that `serve` replays, so it never turns a committed operation into a
//! reported refusal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::calendar::Calendar;
use crate::definition::{self, Definition, Diagnostic, LoadContext};
use crate::runtime::directory::MemoryDirectory;
use crate::runtime::facts::{self, Facts};
use crate::runtime::reports::{NoticeRecord, ReportQuery, Reports};
use crate::runtime::{
    self, values, Command, EngineError, Env, Event, HistoryEntry, InstanceState, Status, Transition,
};
use crate::store::{
    ApiToken, DefinitionHead, Deployed, HistoryRow, InstanceRow, OutboxRow, OutboxStatus, Store,
    StoreError, StoredDefinition, TaskFilter, TaskRow,
};

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
    /// A task id is not of the form `INSTANCE.N`.
    #[error("`{0}` is not a task id: task ids look like `12.3` (instance 12, task 3; see `duban tasks`)")]
    BadTaskId(String),
    /// A migration plan refuses some instances; nothing was migrated.
    #[error("{}", crate::migration::refused_message(.0))]
    MigrationRefused(Vec<crate::runtime::migrate::Plan>),
}

/// Values a user gives with an event: typed JSON, or `NAME=VALUE` texts
/// typed by the definition the instance runs on.
#[derive(Clone, Debug)]
pub enum Values {
    /// Already typed.
    Json(BTreeMap<String, Json>),
    /// Texts, as on the command line or in a form.
    Text(Vec<(String, String)>),
}

impl From<BTreeMap<String, Json>> for Values {
    fn from(m: BTreeMap<String, Json>) -> Self {
        Values::Json(m)
    }
}

impl From<Vec<(String, String)>> for Values {
    fn from(v: Vec<(String, String)>) -> Self {
        Values::Text(v)
    }
}

/// What [`Engine::fire`] did with an engine-driven event.
#[derive(Debug)]
pub enum Fired {
    /// Applied and stored.
    Applied(Box<Transition>),
    /// It no longer applies (its timer consumed, the instance ended or gone).
    Stale(EngineError),
    /// A fault: the instance is now stuck, with this error recorded.
    Stuck(EngineError),
    /// The instance was already stuck; the event waits for its retry.
    Held,
}

/// The instance part of a task id `INSTANCE.N`.
pub fn task_instance(task: &str) -> Result<&str, ServiceError> {
    match task.rsplit_once('.') {
        Some((i, n)) if !i.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(i)
        }
        _ => Err(ServiceError::BadTaskId(task.into())),
    }
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

/// The definitions a definition's calls may start, by process id
/// ([`Engine::callees`]); one that is deployed but cannot be loaded says why.
pub type Callees = BTreeMap<String, Result<Arc<Definition>, String>>;

/// The most times an event is applied while what it reads from the store
/// is loaded (`Engine::apply_loaded`): each round loads the fact subjects
/// and report queries the one before asked for; a chain of facts naming
/// other subjects is not a thing CEL can express, so two or three rounds
/// suffice in practice.
const LOAD_ROUNDS: usize = 4;

/// Bytes as lowercase hex.
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the core read from the store for one event.
struct Loaded {
    facts: Arc<Facts>,
    reports: Reports,
}

/// The directory and calendar an event is applied with, held for the
/// event (a start builds its transition on the store's writer thread).
pub(crate) struct World {
    pub(crate) directory: Arc<MemoryDirectory>,
    pub(crate) calendar: Arc<Calendar>,
}

impl World {
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        def: &Definition,
        calls: &Callees,
        loaded: &Loaded,
        state: Option<&InstanceState>,
        event: &Event,
        now: DateTime<Utc>,
        depth: u32,
    ) -> Result<Transition, EngineError> {
        let env = Env {
            definition: def,
            calendar: &self.calendar,
            directory: self.directory.as_ref(),
            processes: calls,
            call_depth: depth,
            facts: &loaded.facts,
            reports: &loaded.reports,
        };
        runtime::apply(&env, state, event, now)
    }
}

/// The engine over a store.
pub struct Engine<S> {
    /// The store; private: users reach it through the methods below.
    store: S,
    /// The calendar periods are counted on; replaced whole when a year's
    /// schedule is loaded while the engine runs.
    calendar: RwLock<Arc<Calendar>>,
    definitions: Mutex<HashMap<(String, u32), Arc<Definition>>>,
    directory: RwLock<Arc<MemoryDirectory>>,
    /// Transitions this engine committed since it started (`/metrics`).
    transitions: std::sync::atomic::AtomicU64,
}

/// How many times a person's event is applied when other transitions of
/// the same instance keep committing first ([`Engine::apply`]).
pub const APPLY_ATTEMPTS: u32 = 5;

/// What tells two deployed texts of one version apart: the YAML and its
/// template files, but not a first line `# yaml-language-server: …` (the
/// editor's schema, in every shipped file): a library deployed before its
/// files gained that line must deploy again as unchanged, not be refused
/// as a version changed without a new number.
fn content_hash(source: &str, files: &BTreeMap<String, String>) -> String {
    let source = match source.split_once('\n') {
        Some((first, rest)) if first.starts_with("# yaml-language-server:") => rest,
        _ => source,
    };
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
            transitions: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many transitions this engine has committed since it was made.
    pub fn transitions(&self) -> u64 {
        self.transitions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stores transition `t` ([`Store::commit`]) and counts it.
    pub(crate) async fn commit(
        &self,
        prev: Option<u64>,
        t: &Transition,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.store.commit(prev, t, now).await?;
        self.transitions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The store, for the workers that carry out outbox rows and claim
    /// timers (`notifiers`, the scheduler) and for tests. What users do
    /// goes through the methods of [`Engine`].
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Validates the definition files as one library and deploys them. Any
    /// diagnostic refuses the whole deploy. What is stored is exactly what
    /// was checked: the texts and the template files the check read.
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
        let mut stored = Vec::new();
        for f in &lib.files {
            let def = definition::peek_id(&f.text)
                .and_then(|id| lib.definitions.get(&id))
                .expect("a valid library gives each file's definition");
            stored.push(StoredDefinition {
                id: def.id.clone(),
                version: def.version,
                hash: content_hash(&f.text, &f.templates),
                source: f.text.clone(),
                files: serde_json::to_string(&f.templates).expect("strings serialise"),
                file: f.path.display().to_string(),
                deployed_at: now,
            });
        }
        // One transaction: a refused file refuses the whole library.
        let results = self.store.deploy(&stored).await?;
        Ok(stored
            .iter()
            .zip(results)
            .map(|(s, result)| DeployReport {
                id: s.id.clone(),
                version: s.version,
                result,
            })
            .collect())
    }

    /// The definition `id` at `version` (latest when `None`), parsed once.
    /// The latest version is asked of the store each time (another process
    /// may have deployed one), by its number only: the stored text is read
    /// once per version, when it is first parsed.
    pub async fn definition(
        &self,
        id: &str,
        version: Option<u32>,
    ) -> Result<Arc<Definition>, ServiceError> {
        let version = match version {
            Some(v) => v,
            None => self
                .store
                .latest_version(id)
                .await?
                .ok_or_else(|| ServiceError::UnknownProcess(id.into()))?,
        };
        if let Some(d) = self
            .definitions
            .lock()
            .expect("not poisoned")
            .get(&(id.to_string(), version))
        {
            return Ok(d.clone());
        }
        let stored = self
            .store
            .definition(id, Some(version))
            .await?
            .ok_or_else(|| ServiceError::UnknownProcess(id.into()))?;
        let files: BTreeMap<String, String> =
            serde_json::from_str(&stored.files).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let ctx = LoadContext {
            files: Some(files),
            deployed: true,
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

    /// Types `values` by the declared variables of `def`.
    pub fn typed(
        &self,
        def: &Definition,
        values: Values,
    ) -> Result<BTreeMap<String, Json>, ServiceError> {
        match values {
            Values::Json(m) => Ok(m),
            Values::Text(pairs) => {
                let mut out = BTreeMap::new();
                for (k, v) in pairs {
                    let var = def
                        .variables
                        .get(&k)
                        .ok_or_else(|| EngineError::UnknownVariable(k.clone()))?;
                    out.insert(k, values::from_text(&var.ty, &v));
                }
                Ok(out)
            }
        }
    }

    /// The directory and calendar an event is applied with now
    /// ([`World::apply`] runs the core).
    pub(crate) fn world(&self) -> World {
        World {
            directory: self.directory(),
            calendar: self.calendar(),
        }
    }

    /// Applies `event` on the core with what it reads from the store
    /// loaded: the facts (`runtime::facts`), first those about the people
    /// and agencies of the instance's variables, and the notices of the
    /// `report` steps it enters (`runtime::reports`). Whatever the core
    /// asked for beyond what was loaded is loaded and the event applied
    /// again (the core is deterministic), at most [`LOAD_ROUNDS`] times.
    /// Returns what the result was computed on, for a commit that applies
    /// it once more. A definition (with those its calls may start) whose
    /// expressions read no fact and that has no `report` step loads nothing.
    #[allow(clippy::too_many_arguments)]
    async fn apply_loaded(
        &self,
        def: &Definition,
        calls: &Callees,
        state: Option<&InstanceState>,
        event: &Event,
        now: DateTime<Utc>,
        depth: u32,
    ) -> Result<(Loaded, Result<Transition, EngineError>), ServiceError> {
        let defs = || {
            std::iter::once(def).chain(calls.values().filter_map(|d| d.as_ref().ok().map(|d| &**d)))
        };
        let reads_facts = defs().any(|d| !d.facts_read.is_empty());
        let reports = defs().any(|d| d.has_reports);
        if !reads_facts && !reports {
            let none = Loaded {
                facts: Facts::none(),
                reports: Reports::default(),
            };
            let t = self
                .world()
                .apply(def, calls, &none, state, event, now, depth);
            return Ok((none, t));
        }
        let mut subjects = BTreeSet::new();
        if reads_facts {
            if let Some(s) = state {
                subjects.extend(facts::subjects(def, &s.variables));
            }
            if let Event::Start { variables, .. } = event {
                subjects.extend(facts::subjects(def, variables));
            }
        }
        let mut queries: BTreeMap<ReportQuery, Vec<NoticeRecord>> = BTreeMap::new();
        let mut round = 0;
        loop {
            let facts = if reads_facts {
                let loaded = self.store.facts(&subjects).await?;
                Arc::new(Facts::loaded(subjects.iter().cloned(), loaded))
            } else {
                Facts::none()
            };
            let l = Loaded {
                facts,
                reports: Reports::loaded(queries.clone()),
            };
            let t = self.world().apply(def, calls, &l, state, event, now, depth);
            let missing_subjects = l.facts.take_missing();
            let missing_queries = l.reports.take_missing();
            round += 1;
            if (missing_subjects.is_empty() && missing_queries.is_empty()) || round == LOAD_ROUNDS {
                return Ok((l, t));
            }
            subjects.extend(missing_subjects);
            for q in missing_queries {
                let rows = self.store.notices(&q).await?;
                queries.insert(q, rows);
            }
        }
    }

    /// The latest deployed definition of every process `def`'s `call` steps
    /// may start, and of theirs in turn: what the core needs to try a
    /// child's start inside its caller's transition. Empty (and free) for a
    /// definition without calls; a process that is not deployed is left
    /// out, and the core refuses a call to it.
    pub async fn callees(&self, def: &Definition) -> Result<Callees, ServiceError> {
        fn called(def: &Definition) -> impl Iterator<Item = String> + '_ {
            def.steps.values().filter_map(|s| match &s.kind {
                definition::StepKind::Call { process, .. } => Some(process.clone()),
                _ => None,
            })
        }
        let mut out = Callees::new();
        let mut queue: Vec<String> = called(def).collect();
        while let Some(p) = queue.pop() {
            if out.contains_key(&p) {
                continue;
            }
            // One small query for the version; the parsed definition comes
            // from the cache of (id, version).
            let Some(v) = self.store.latest_version(&p).await? else {
                continue;
            };
            match self.definition(&p, Some(v)).await {
                Ok(d) => {
                    queue.extend(called(&d));
                    out.insert(p, Ok(d));
                }
                Err(ServiceError::UnknownProcess(_)) => {}
                // Refuses the calls to it, not every event of its callers.
                Err(e) => {
                    out.insert(p, Err(format!("version {v} cannot be loaded: {e}")));
                }
            }
        }
        Ok(out)
    }

    /// Everything the core needs to apply an event on `def`, and the result.
    async fn compute_on(
        &self,
        def: &Definition,
        state: Option<&InstanceState>,
        event: &Event,
        now: DateTime<Utc>,
        depth: u32,
    ) -> Result<Result<Transition, EngineError>, ServiceError> {
        let calls = self.callees(def).await?;
        Ok(self
            .apply_loaded(def, &calls, state, event, now, depth)
            .await?
            .1)
    }

    /// The transition `event` makes on `state` (or a new top-level
    /// instance), computed as the engine would, without storing it: for
    /// tests and tools that commit by hand.
    pub async fn compute(
        &self,
        def: &Definition,
        state: Option<&InstanceState>,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        Ok(self.compute_on(def, state, event, now, 0).await??)
    }

    // ----- user intents ------------------------------------------------

    /// Starts an instance of the latest version of `process`. The start is
    /// checked before an id is taken, so a refused start takes no id and
    /// writes nothing; the id is taken in the start's own transaction, so
    /// a start that cannot be stored (a full disk) takes none either.
    /// Children that its `call` steps start are started too.
    pub async fn start(
        &self,
        process: &str,
        profile: Option<&str>,
        variables: impl Into<Values>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let def = self.definition(process, None).await?;
        let mut event = Event::Start {
            instance: "0".into(),
            profile: profile.map(str::to_string),
            variables: self.typed(&def, variables.into())?,
            actor: actor.into(),
        };
        let calls = self.callees(&def).await?;
        let (loaded, checked) = self
            .apply_loaded(&def, &calls, None, &event, now, 0)
            .await?;
        checked?;
        // The id is taken in the start's own transaction.
        let world = self.world();
        let t = self
            .store
            .commit_start(now, move |id| {
                if let Event::Start { instance, .. } = &mut event {
                    *instance = id;
                }
                Ok::<_, ServiceError>(world.apply(&def, &calls, &loaded, None, &event, now, 0)?)
            })
            .await?;
        self.transitions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.settle(&t, now).await;
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
        let Some(t) = self
            .start_as(id, (process, None), profile, variables, now, 0)
            .await?
        else {
            return Ok(None);
        };
        self.settle(&t, now).await;
        Ok(Some(t))
    }

    /// Starts `process` as instance `id` at call depth `depth` and stores
    /// it, nothing more; `None` when the id is taken.
    async fn start_as(
        &self,
        id: &str,
        (process, version): (&str, Option<u32>),
        profile: Option<&str>,
        variables: BTreeMap<String, Json>,
        now: DateTime<Utc>,
        depth: u32,
    ) -> Result<Option<Transition>, ServiceError> {
        let def = self.definition(process, version).await?;
        let event = Event::Start {
            instance: id.into(),
            profile: profile.map(str::to_string),
            variables,
            actor: "engine".into(),
        };
        let t = self.compute_on(&def, None, &event, now, depth).await??;
        match self.commit(None, &t, now).await {
            Ok(()) => Ok(Some(t)),
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Completes task `task` (`INSTANCE.N`) with `outcome`; the values are
    /// typed by the instance's definition. One load, one commit.
    pub async fn complete(
        &self,
        task: &str,
        outcome: &str,
        variables: impl Into<Values>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let instance = task_instance(task)?;
        let values = variables.into();
        self.apply_with(instance, now, |def| {
            Ok(Event::Complete {
                task: task.into(),
                outcome: outcome.into(),
                variables: self.typed(def, values)?,
                actor: actor.into(),
            })
        })
        .await
    }

    /// Gives open task `task` to `to` ([`Event::Reassign`]).
    pub async fn reassign(
        &self,
        task: &str,
        to: &[String],
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let event = Event::Reassign {
            task: task.into(),
            to: to.to_vec(),
            reason: reason.into(),
            actor: actor.into(),
        };
        self.apply(task_instance(task)?, &event, now).await
    }

    /// Records that the recipient of notice `task` received it.
    pub async fn receive(
        &self,
        task: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let event = Event::Receive {
            task: task.into(),
            actor: actor.into(),
        };
        self.apply(task_instance(task)?, &event, now).await
    }

    /// Requests the recusal (回避) of `person` from `task`: asked by the
    /// person themself or by a supervised party of the instance.
    pub async fn request_recusal(
        &self,
        task: &str,
        person: &str,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let event = Event::RequestRecusal {
            task: task.into(),
            person: person.into(),
            reason: reason.into(),
            actor: actor.into(),
        };
        self.apply(task_instance(task)?, &event, now).await
    }

    /// Decides the pending recusal of `person` from `task` (a holder of the
    /// step's `recusal.decided_by` role).
    pub async fn decide_recusal(
        &self,
        task: &str,
        person: &str,
        granted: bool,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let event = Event::DecideRecusal {
            task: task.into(),
            person: person.into(),
            granted,
            actor: actor.into(),
        };
        self.apply(task_instance(task)?, &event, now).await
    }

    /// Cancels instance `id`, and with it every running (or stuck)
    /// descendant its `call` steps started: each is cancelled in its own
    /// transaction, recorded in its own history as cancelled by `actor`
    /// because its caller was. A descendant that cannot be cancelled (it
    /// ended meanwhile, a conflict) is left as it is and logged.
    pub async fn cancel(
        &self,
        id: &str,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let event = Event::Cancel {
            reason: reason.into(),
            actor: actor.into(),
        };
        // Its children are cancelled with it: the transition says so
        // (`CancelChild`), and settling it carries that out.
        self.apply(id, &event, now).await
    }

    /// Sets variables of instance `id` by hand (also on a stuck instance,
    /// to fix what stuck it); typed by its definition.
    pub async fn set_variables(
        &self,
        id: &str,
        variables: impl Into<Values>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let values = variables.into();
        self.apply_with(id, now, |def| {
            Ok(Event::SetVariables {
                variables: self.typed(def, values)?,
                actor: actor.into(),
            })
        })
        .await
    }

    /// Applies again the event that made instance `id` stuck. A fault met
    /// again is returned and nothing is written: the instance stays stuck.
    pub async fn retry(
        &self,
        id: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let event = Event::Retry {
            actor: actor.into(),
        };
        let t = self.apply(id, &event, now).await?;
        // A child may have ended while this instance was stuck; its
        // `child_ended` row could not be delivered then.
        for child in t.state.waits.values().flat_map(|w| w.all_children()) {
            if let Ok(Some(c)) = self.store.load(child).await {
                if let Ok(Some(next)) = self.hand_back(&c, now).await {
                    self.settle(&next, now).await;
                }
            }
        }
        Ok(t)
    }

    /// Delivers a message to every instance waiting for it, each with the
    /// values typed by its own definition; returns their ids. The history
    /// line names `engine` (a message of another process, or of an
    /// administrator's tool); [`Engine::message_from`] names a sender.
    pub async fn message(
        &self,
        name: &str,
        key: &str,
        variables: impl Into<Values>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, ServiceError> {
        self.message_from(name, key, variables, None, now).await
    }

    /// [`Engine::message`] sent by `sender` (a person of the directory,
    /// through the API), whom the history lines name.
    pub async fn message_from(
        &self,
        name: &str,
        key: &str,
        variables: impl Into<Values>,
        sender: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, ServiceError> {
        let ids = self.store.awaiting(name, key).await?;
        if ids.is_empty() {
            return Err(EngineError::NotAwaited {
                name: name.into(),
                key: key.into(),
            }
            .into());
        }
        let values = variables.into();
        for id in &ids {
            let values = values.clone();
            self.apply_with(id, now, |def| {
                Ok(Event::Message {
                    name: name.into(),
                    key: key.into(),
                    variables: self.typed(def, values)?,
                    sender: sender.map(str::to_string),
                })
            })
            .await?;
        }
        Ok(ids)
    }

    /// Applies `event` to instance `id` and stores the result; then carries
    /// out what it asks of other instances (see [`Engine::settle`]).
    pub async fn apply(
        &self,
        id: &str,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        self.apply_with(id, now, |_| Ok(event.clone())).await
    }

    /// Loads `id`, builds the event from its definition, applies, commits,
    /// settles. When another transition of the instance committed first (an
    /// email's delivery recorded while the agency opens its link), the event
    /// is applied again on the instance as it now is — judged afresh, so a
    /// task completed meanwhile refuses it — up to [`APPLY_ATTEMPTS`] times
    /// before the conflict is returned.
    async fn apply_with(
        &self,
        id: &str,
        now: DateTime<Utc>,
        event: impl FnOnce(&Definition) -> Result<Event, ServiceError>,
    ) -> Result<Transition, ServiceError> {
        let (mut state, def) = self.load_with_definition(id).await?;
        let event = event(&def)?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let t = self
                .compute_on(&def, Some(&state), &event, now, 0)
                .await??;
            match self.commit(Some(state.revision), &t, now).await {
                Ok(()) => {
                    self.settle(&t, now).await;
                    return Ok(t);
                }
                Err(StoreError::Conflict(_)) if attempts < APPLY_ATTEMPTS => {
                    state = self
                        .store
                        .load(id)
                        .await?
                        .ok_or_else(|| ServiceError::UnknownInstance(id.into()))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn load_with_definition(
        &self,
        id: &str,
    ) -> Result<(InstanceState, Arc<Definition>), ServiceError> {
        let state = self
            .store
            .load(id)
            .await?
            .ok_or_else(|| ServiceError::UnknownInstance(id.into()))?;
        let def = self
            .definition(&state.definition, Some(state.version))
            .await?;
        Ok((state, def))
    }

    // ----- engine-driven events ----------------------------------------

    /// Applies an engine-driven event (a timer, a child's result, a
    /// recount). No person waits for the answer, so nothing may vanish: a
    /// stale event is reported as such (its timer row is a leftover), and
    /// any other refusal stores the instance as stuck
    /// ([`runtime::stuck`]), with the error's code in its history and its
    /// timers held, until an administrator retries it.
    pub async fn fire(
        &self,
        id: &str,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Fired, ServiceError> {
        let fired = self.fire_one(id, event, now).await?;
        if let Fired::Applied(t) = &fired {
            self.settle(t, now).await;
        }
        Ok(fired)
    }

    /// [`Engine::fire`] without carrying out the calls the transition makes.
    async fn fire_one(
        &self,
        id: &str,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Fired, ServiceError> {
        let (state, def) = match self.load_with_definition(id).await {
            Ok(x) => x,
            Err(ServiceError::UnknownInstance(_)) => {
                return Ok(Fired::Stale(EngineError::NoInstance))
            }
            Err(e) => return Err(e),
        };
        let t = match self.compute_on(&def, Some(&state), event, now, 0).await? {
            Ok(t) => t,
            Err(e) if e.is_stale() => return Ok(Fired::Stale(e)),
            Err(EngineError::Stuck { .. }) => return Ok(Fired::Held),
            Err(e) => {
                let t = runtime::stuck(&state, event, &e, now);
                self.commit(Some(state.revision), &t, now).await?;
                tracing::warn!(instance = %id, code = e.code(), error = %e, "instance stuck");
                return Ok(Fired::Stuck(e));
            }
        };
        self.commit(Some(state.revision), &t, now).await?;
        Ok(Fired::Applied(Box::new(t)))
    }

    /// After a stored transition: starts the children its `call` steps asked
    /// for, and hands the result of an ended child to its parent, until
    /// nothing more follows. Each step is its own transaction; a crash or a
    /// failure between them leaves a `start_child` or `child_ended` outbox
    /// row pending, and [`Engine::replay_call`] finishes it — so a failure
    /// here is logged, never returned as if the committed event were
    /// refused. Every step is idempotent: the child's id is fixed by the
    /// call, the link is written once, and a child's result reaches a
    /// parent only while it waits.
    pub(crate) async fn settle(&self, first: &Transition, now: DateTime<Utc>) {
        if let Err(e) = self.settle_all(first, now).await {
            tracing::warn!(instance = %first.state.id, error = %e, "carrying out a call failed; the outbox replay finishes it");
        }
    }

    async fn settle_all(&self, first: &Transition, now: DateTime<Utc>) -> Result<(), ServiceError> {
        let mut queue = std::collections::VecDeque::from([first.clone()]);
        while let Some(t) = queue.pop_front() {
            for cmd in &t.commands {
                match cmd {
                    Command::StartChild { .. } => {
                        queue.extend(self.start_child(&t.state.id, cmd, now).await?);
                    }
                    Command::TellParent { .. } => {
                        queue.extend(self.hand_back(&t.state, now).await?);
                    }
                    Command::CancelChild {
                        child,
                        reason,
                        actor,
                    } => {
                        queue.extend(self.cancel_child(child, reason, actor, now).await?);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Starts the child a `start_child` command asks for, unless it exists;
    /// an existing child that has already ended hands its result back.
    async fn start_child(
        &self,
        parent: &str,
        cmd: &Command,
        now: DateTime<Utc>,
    ) -> Result<Option<Transition>, ServiceError> {
        let Command::StartChild {
            child,
            step,
            process,
            profile,
            variables,
            depth,
            version,
        } = cmd
        else {
            return Ok(None);
        };
        // Linked first: a child that ends at once finds its parent.
        self.store.link_child(child, parent, step).await?;
        let started = self
            .start_as(
                child,
                (process, *version),
                profile.as_deref(),
                variables.clone(),
                now,
                *depth,
            )
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

    /// Cancels a child its caller no longer waits for (the caller ended or
    /// was cancelled, or its `for_each` was done without this item); a
    /// child that has ended already is left as it is.
    async fn cancel_child(
        &self,
        child: &str,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Transition>, ServiceError> {
        let (state, def) = match self.load_with_definition(child).await {
            Ok(x) => x,
            Err(ServiceError::UnknownInstance(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if matches!(
            state.status,
            Status::Completed { .. } | Status::Cancelled { .. }
        ) {
            return Ok(None);
        }
        let event = Event::Cancel {
            reason: reason.into(),
            actor: actor.into(),
        };
        let t = match self.compute_on(&def, Some(&state), &event, now, 0).await? {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(instance = %child, error = %e, "cancelling a called child failed");
                return Ok(None);
            }
        };
        match self.commit(Some(state.revision), &t, now).await {
            Ok(()) => Ok(Some(t)),
            // Changed meanwhile (it ended, or someone else cancelled it).
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives an ended child's result to its parent, if the parent still
    /// waits for it; otherwise nothing. A stuck parent is an error, so the
    /// `child_ended` row stays pending until the parent is retried.
    async fn hand_back(
        &self,
        child: &InstanceState,
        now: DateTime<Utc>,
    ) -> Result<Option<Transition>, ServiceError> {
        let Status::Completed { result } = &child.status else {
            return Ok(None);
        };
        let Some((parent, step)) = self.store.parent_of(&child.id).await? else {
            return Ok(None);
        };
        let Some(p) = self.store.load(&parent).await? else {
            return Ok(None);
        };
        if let Status::Stuck { code, message, .. } = &p.status {
            return Err(EngineError::Stuck {
                instance: parent,
                code: code.clone(),
                message: message.clone(),
            }
            .into());
        }
        let waits = p.waits.get(&step).is_some_and(|w| {
            // A wait stored before children were recorded takes any.
            (w.child.is_none() && w.children.is_empty()) || w.all_children().any(|c| *c == child.id)
        });
        if p.status != Status::Running || !waits {
            return Ok(None);
        }
        let event = Event::ChildEnded {
            step,
            result: result.clone(),
            child: Some(child.id.clone()),
            variables: child.variables.clone(),
        };
        match self.fire_one(&parent, &event, now).await {
            Ok(Fired::Applied(t)) => Ok(Some(*t)),
            Ok(_) => Ok(None),
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
        row: &OutboxRow,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let unreadable =
            |e: serde_json::Error| ServiceError::Io(format!("outbox row {}: {e}", row.id));
        let t = match row.kind {
            crate::store::OutboxKind::ChildEnded => {
                let v: Json = serde_json::from_str(&row.payload).map_err(unreadable)?;
                let child = v["child"].as_str().unwrap_or_default();
                match self.store.load(child).await? {
                    Some(state) => self.hand_back(&state, now).await?,
                    None => None,
                }
            }
            crate::store::OutboxKind::SendMessage => {
                let cmd: Command = serde_json::from_str(&row.payload).map_err(unreadable)?;
                return self.deliver_message(&row.instance, &cmd, now).await;
            }
            // Mostly a confirmation: the cancel ran right after the
            // caller's commit, unless a crash came between.
            crate::store::OutboxKind::CancelChild => {
                match serde_json::from_str(&row.payload).map_err(unreadable)? {
                    Command::CancelChild {
                        child,
                        reason,
                        actor,
                    } => self.cancel_child(&child, &reason, &actor, now).await?,
                    _ => None,
                }
            }
            _ => {
                let cmd: Command = serde_json::from_str(&row.payload).map_err(unreadable)?;
                self.start_child(&row.instance, &cmd, now).await?
            }
        };
        if let Some(t) = t {
            self.settle_all(&t, now).await?;
        }
        Ok(())
    }

    /// Delivers a `send_message` row: each key's message to the instances
    /// waiting for it now. A key no instance waits for is logged and
    /// dropped (the receiver has ended, or has not reached its wait): a
    /// message is not kept for a wait that may never come.
    async fn deliver_message(
        &self,
        sender: &str,
        cmd: &Command,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let Command::SendMessage {
            name,
            keys,
            variables,
        } = cmd
        else {
            return Ok(());
        };
        for key in keys {
            match self.message(name, key, variables.clone(), now).await {
                Ok(ids) => {
                    tracing::info!(sender, message = %name, key = %key, to = ?ids, "message delivered")
                }
                Err(ServiceError::Engine(EngineError::NotAwaited { .. })) => {
                    tracing::warn!(sender, message = %name, key = %key, "no instance waits for this message; dropped")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    // ----- queries -----------------------------------------------------

    /// The latest deployed version of each process, parsed (texts read once per version).
    pub async fn deployed(&self) -> Result<Vec<(DefinitionHead, Arc<Definition>)>, ServiceError> {
        let mut out = Vec::new();
        for head in self.store.definition_heads().await? {
            let def = self.definition(&head.id, Some(head.version)).await?;
            out.push((head, def));
        }
        Ok(out)
    }

    /// Every deployed definition version.
    pub async fn definitions(&self) -> Result<Vec<StoredDefinition>, ServiceError> {
        Ok(self.store.definitions().await?)
    }

    /// An instance's state.
    pub async fn instance(&self, id: &str) -> Result<InstanceState, ServiceError> {
        self.store
            .load(id)
            .await?
            .ok_or_else(|| ServiceError::UnknownInstance(id.into()))
    }

    /// An instance's history, oldest first.
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, ServiceError> {
        Ok(self.store.history(id).await?)
    }

    /// Instances, optionally by status (`running`, `stuck` …) and definition.
    pub async fn instances(
        &self,
        status: Option<&str>,
        definition: Option<&str>,
    ) -> Result<Vec<InstanceRow>, ServiceError> {
        Ok(self.store.instances(status, definition).await?)
    }

    /// Open tasks.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRow>, ServiceError> {
        Ok(self.store.tasks(filter).await?)
    }

    /// Everything recorded about a person across all instances (RC-14).
    pub async fn person_history(&self, person: &str) -> Result<Vec<HistoryRow>, ServiceError> {
        Ok(self.store.person_history(person).await?)
    }

    // ----- API tokens -------------------------------------------------

    /// Creates a bearer token of the JSON API acting as `person`, or
    /// reading for `role` (exactly one), and returns it with the token
    /// itself, `dbn.ID.SECRET`, which is shown once: only a SHA-256 of the
    /// secret is stored.
    pub async fn create_token(
        &self,
        person: Option<&str>,
        role: Option<&str>,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(ApiToken, String), ServiceError> {
        use crate::runtime::Directory as _;
        match (person, role) {
            (Some(p), None) => {
                if self.directory().person(p).is_none() {
                    return Err(ServiceError::Io(format!(
                        "no person `{p}` in the directory (`duban directory import`)"
                    )));
                }
            }
            (None, Some(r)) if !r.trim().is_empty() => {}
            _ => {
                return Err(ServiceError::Io(
                    "a token acts for one person (--person) or reads for one role (--role)".into(),
                ))
            }
        }
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        getrandom::fill(&mut id).map_err(|e| ServiceError::Io(format!("no randomness: {e}")))?;
        getrandom::fill(&mut secret)
            .map_err(|e| ServiceError::Io(format!("no randomness: {e}")))?;
        let id = hex(&id);
        let secret = hex(&secret);
        let t = ApiToken {
            id: id.clone(),
            hash: hex(&Sha256::digest(secret.as_bytes())),
            person: person.map(str::to_string),
            role: role.map(str::to_string),
            note: note.map(str::to_string),
            created_at: now,
            revoked_at: None,
        };
        self.store.create_token(&t).await?;
        Ok((t, format!("dbn.{id}.{secret}")))
    }

    /// The token `bearer` (`dbn.ID.SECRET`) stands for, when it is one of
    /// ours and not revoked; `None` otherwise. The secret's hash is
    /// compared in constant time.
    pub async fn authenticate(&self, bearer: &str) -> Result<Option<ApiToken>, ServiceError> {
        let mut parts = bearer.split('.');
        let (Some("dbn"), Some(id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        if id.len() != 12 || secret.len() != 64 {
            return Ok(None);
        }
        let Some(t) = self.store.token(id).await? else {
            return Ok(None);
        };
        // Compared in constant time: the hashes are of equal length.
        let given = hex(&Sha256::digest(secret.as_bytes()));
        let same = given.len() == t.hash.len()
            && given
                .bytes()
                .zip(t.hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        Ok((same && t.revoked_at.is_none()).then_some(t))
    }

    /// Every API token (without secrets).
    pub async fn tokens(&self) -> Result<Vec<ApiToken>, ServiceError> {
        Ok(self.store.tokens().await?)
    }

    /// Revokes a token; false if there is none with that id or it was
    /// revoked already.
    pub async fn revoke_token(&self, id: &str, now: DateTime<Utc>) -> Result<bool, ServiceError> {
        Ok(self.store.revoke_token(id, now).await?)
    }

    /// The open tasks `token` may see: its person's, or those of its
    /// role's holders.
    pub async fn tasks_of(&self, token: &ApiToken) -> Result<Vec<TaskRow>, ServiceError> {
        use crate::runtime::Directory as _;
        let filter = match (&token.person, &token.role) {
            (Some(p), _) => TaskFilter {
                assignee: Some(p.clone()),
                ..Default::default()
            },
            (None, Some(r)) => TaskFilter {
                role_holders: Some(
                    self.directory()
                        .holders(r, None)
                        .into_iter()
                        .map(|p| p.id)
                        .collect(),
                ),
                ..Default::default()
            },
            (None, None) => return Ok(Vec::new()),
        };
        Ok(self.store.tasks(&filter).await?)
    }

    /// How the notices of `q` were answered, per agency, as at `now`: what
    /// a `report` step reads (`runtime::reports`), for `duban report`.
    pub async fn report(
        &self,
        q: &ReportQuery,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, runtime::reports::Stats>, ServiceError> {
        let rows = self.store.notices(q).await?;
        Ok(runtime::reports::tally(q, &rows, now))
    }

    /// Every fact recorded about a person or agency, oldest first
    /// (`runtime::facts`).
    pub async fn facts_about(
        &self,
        subject: &str,
    ) -> Result<Vec<runtime::facts::Fact>, ServiceError> {
        let one = std::collections::BTreeSet::from([subject.to_string()]);
        Ok(self.store.facts(&one).await?)
    }

    /// Outbox rows, optionally by status.
    pub async fn outbox(
        &self,
        status: Option<OutboxStatus>,
    ) -> Result<Vec<OutboxRow>, ServiceError> {
        Ok(self.store.outbox(status).await?)
    }

    /// Makes a dead outbox row pending again; false if there is none with that id.
    pub async fn outbox_retry(&self, id: i64, now: DateTime<Utc>) -> Result<bool, ServiceError> {
        Ok(self.store.outbox_retry(id, now).await?)
    }

    /// The ids of an instance's pending timer rows, sorted.
    pub async fn pending_timers(&self, id: &str) -> Result<Vec<String>, ServiceError> {
        Ok(self.store.pending_timers(id).await?)
    }

    // ----- the calendar ------------------------------------------------

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
    /// whose deadlines changed. A fault met while recounting one instance
    /// makes it stuck and the others go on.
    pub async fn recompute_provisional(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, ServiceError> {
        let mut changed = Vec::new();
        for id in self.store.provisional_instances().await? {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match self.fire(&id, &Event::Recompute, now).await {
                    Ok(Fired::Applied(_)) => changed.push(id.clone()),
                    Ok(_) => {}
                    Err(ServiceError::Store(StoreError::Conflict(_))) if attempts < 10 => continue,
                    Err(e) => return Err(e),
                }
                break;
            }
        }
        Ok(changed)
    }
}
