//! [`Store`] in memory: every table a map, all of them behind one mutex.
//!
//! It exists for the simulator (a scenario needs a throwaway store, not a
//! database file) and for unit tests; it is not for production, where
//! nothing would survive a restart. It passes the same conformance suite as
//! [`super::SqlStore`] (`tests/store.rs`) and mirrors that store's semantics
//! row for row: the same orderings, the same refusals, times kept to the
//! millisecond as the SQL columns keep them, and instance states and history
//! values stored as the JSON text the SQL store writes.
//!
//! A commit takes the one lock, checks the revision, then checks every
//! command and prepares its writes before writing any of them: a refused
//! commit (a conflict, or what would be a constraint violation in SQL)
//! writes nothing, and no reader sees half a commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use super::{
    DefinitionHead, Deployed, DueTimer, HistoryRow, InstanceRow, OutboxKind, OutboxRow,
    OutboxStatus, Stats, Store, StoreError, StoredDefinition, TaskFilter, TaskRow,
};
use crate::runtime::directory::{Agency, MemoryDirectory, Person};
use crate::runtime::facts::Fact;
use crate::runtime::reports::{NoticeRecord, ReportQuery};
use crate::runtime::{
    Command, HistoryEntry, HistoryKind, InstanceState, TaskKind, TaskState, Transition,
};

use super::{corrupt, from_ms, ms, HELD};

/// What SQL reports as a unique-constraint violation.
fn duplicate(what: &str, key: &str) -> StoreError {
    StoreError::Database(format!("duplicate key: {what} `{key}` already exists"))
}

/// A row of `instances`.
struct InstanceRecord {
    definition: String,
    version: u32,
    profile: Option<String>,
    status: String,
    revision: u64,
    /// The state as JSON text.
    state: String,
    started_at: i64,
}

/// A row of `tasks`, with its `task_assignees`.
struct TaskRecord {
    instance: String,
    step: String,
    kind: TaskKind,
    assignees: Vec<String>,
    opened_at: i64,
    due: Option<i64>,
    last_day: Option<String>,
    closed_at: Option<i64>,
    /// How it closed (an outcome, or how the engine closed it).
    outcome: Option<String>,
}

/// A row of `timers`. (The SQL store also keeps the timer's kind; no method
/// of the trait reads it back.)
struct TimerRecord {
    instance: String,
    due: i64,
    provisional: bool,
    owner: Option<String>,
    lease_until: Option<i64>,
}

/// A row of `outbox`.
struct OutboxRecord {
    instance: String,
    kind: OutboxKind,
    payload: String,
    status: OutboxStatus,
    attempts: u32,
    created_at: i64,
    next_attempt: i64,
    lease_until: Option<i64>,
    last_error: Option<String>,
    sent_at: Option<i64>,
}

impl OutboxRecord {
    fn row(&self, id: i64) -> OutboxRow {
        OutboxRow {
            id,
            instance: self.instance.clone(),
            kind: self.kind,
            payload: self.payload.clone(),
            status: self.status,
            attempts: self.attempts,
            created_at: from_ms(self.created_at),
            next_attempt: from_ms(self.next_attempt),
            last_error: self.last_error.clone(),
            sent_at: self.sent_at.map(from_ms),
        }
    }
}

/// A row of `history`, with its `history_people` (sorted, without repeats).
struct HistoryRecord {
    instance: String,
    at: i64,
    actor: String,
    what: HistoryKind,
    step_before: Option<String>,
    step_after: Option<String>,
    /// The changed variables as JSON text.
    changed: String,
    /// The deadline as JSON text.
    deadline: Option<String>,
    note: Option<String>,
    people: Vec<String>,
    due: Option<i64>,
}

impl HistoryRecord {
    fn entry(&self, people: Vec<String>) -> Result<HistoryEntry, StoreError> {
        Ok(HistoryEntry {
            at: from_ms(self.at),
            actor: self.actor.clone(),
            what: self.what,
            step_before: self.step_before.clone(),
            step_after: self.step_after.clone(),
            changed: serde_json::from_str(&self.changed).map_err(corrupt)?,
            deadline: self
                .deadline
                .as_ref()
                .map(|d| serde_json::from_str(d))
                .transpose()
                .map_err(corrupt)?,
            note: self.note.clone(),
            people,
            due: self.due.map(from_ms),
        })
    }
}

/// A row of `awaited_messages`: message name, key, instance.
type Awaited = (String, String, String);

/// Every table.
#[derive(Default)]
struct Tables {
    /// By (id, version).
    definitions: BTreeMap<(String, u32), StoredDefinition>,
    /// The last instance id handed out.
    instance_counter: i64,
    /// Document-number counters: the last number of each.
    numbers: BTreeMap<String, i64>,
    instances: BTreeMap<String, InstanceRecord>,
    tasks: BTreeMap<String, TaskRecord>,
    timers: BTreeMap<String, TimerRecord>,
    /// The last outbox id used (ids start at 1, as SQL's do).
    outbox_seq: i64,
    outbox: BTreeMap<i64, OutboxRecord>,
    /// The last history id used.
    history_seq: i64,
    history: BTreeMap<i64, HistoryRecord>,
    awaited: BTreeSet<Awaited>,
    /// child → (parent, step).
    children: BTreeMap<String, (String, String)>,
    /// (definition, entry) → last occurrence.
    cron: BTreeMap<(String, u32), i64>,
    people: BTreeMap<String, Person>,
    agencies: BTreeMap<String, Agency>,
    /// Facts about people and agencies, in the order they were recorded.
    facts: Vec<Fact>,
    /// API tokens by id.
    tokens: BTreeMap<String, super::ApiToken>,
}

/// One write of a commit, checked and prepared: carrying it out cannot fail.
enum Write {
    Outbox {
        instance: String,
        kind: OutboxKind,
        payload: String,
    },
    HoldTimers,
    ReleaseTimers,
    OpenTask(String, TaskRecord),
    UpdateTask {
        task: String,
        due: Option<i64>,
        last_day: Option<String>,
        assignees: Vec<String>,
    },
    CloseTask(String, Option<String>),
    ScheduleTimer(String, TimerRecord),
    CancelTimer(String),
    Await(Awaited),
    StopAwaiting(Awaited),
    Fact(Fact),
    /// `Command::Migrate`: the steps renamed, old → new.
    Migrate(Vec<(String, String)>),
    /// `Command::AssignNumber`.
    AssignNumber {
        variable: String,
        counter: String,
        format: String,
    },
}

fn task_values(t: &TaskState) -> (Option<i64>, Option<String>) {
    let due = t.deadline.as_ref().map(|d| d.deadline.timestamp_millis());
    let last_day = t.deadline.as_ref().map(|d| d.last_day.to_string());
    (due, last_day)
}

fn task_in<'a>(s: &'a InstanceState, task: &str) -> Result<&'a TaskState, StoreError> {
    s.tasks
        .get(task)
        .ok_or_else(|| corrupt(format!("task {task} not in state")))
}

impl Tables {
    /// Checks every command of `t` against the tables (and against the
    /// writes of the commands before it) and prepares its writes, in order.
    fn prepare(&self, t: &Transition) -> Result<Vec<Write>, StoreError> {
        let s = &t.state;
        let mut writes = Vec::with_capacity(t.commands.len());
        // Which keys exist once the writes prepared so far are carried out,
        // where that differs from the tables.
        let mut tasks_added: BTreeSet<&str> = BTreeSet::new();
        let mut timers: BTreeMap<&str, bool> = BTreeMap::new();
        let mut awaited: BTreeMap<Awaited, bool> = BTreeMap::new();
        for cmd in &t.commands {
            let w = match cmd {
                Command::TellParent { result } => {
                    let Some((parent, _)) = self.children.get(&s.id) else {
                        continue;
                    };
                    Write::Outbox {
                        instance: parent.clone(),
                        kind: OutboxKind::ChildEnded,
                        payload: serde_json::json!({ "child": s.id, "result": result }).to_string(),
                    }
                }
                Command::HoldTimers => Write::HoldTimers,
                Command::ReleaseTimers => Write::ReleaseTimers,
                Command::Migrate { steps, .. } => Write::Migrate(steps.clone()),
                Command::AssignNumber {
                    variable,
                    counter,
                    format,
                } => Write::AssignNumber {
                    variable: variable.clone(),
                    counter: counter.clone(),
                    format: format.clone(),
                },
                Command::OpenTask { task, .. } => {
                    let ts = task_in(s, task)?;
                    if self.tasks.contains_key(task) || !tasks_added.insert(task) {
                        return Err(duplicate("task", task));
                    }
                    let mut seen = BTreeSet::new();
                    if let Some(p) = ts.assignees.iter().find(|p| !seen.insert(p.as_str())) {
                        return Err(duplicate("task assignee", &format!("{task} {p}")));
                    }
                    let (due, last_day) = task_values(ts);
                    Write::OpenTask(
                        task.clone(),
                        TaskRecord {
                            instance: s.id.clone(),
                            step: ts.step.clone(),
                            kind: ts.kind,
                            assignees: ts.assignees.clone(),
                            opened_at: ms(ts.opened_at),
                            due,
                            last_day,
                            closed_at: None,
                            outcome: None,
                        },
                    )
                }
                Command::UpdateTask { task } => {
                    let ts = task_in(s, task)?;
                    let (due, last_day) = task_values(ts);
                    Write::UpdateTask {
                        task: task.clone(),
                        due,
                        last_day,
                        assignees: ts.assignees.clone(),
                    }
                }
                Command::CloseTask { task } => {
                    let outcome = s
                        .tasks
                        .get(task)
                        .and_then(|t| t.closed.as_ref())
                        .map(|c| c.outcome.clone());
                    Write::CloseTask(task.clone(), outcome)
                }
                Command::ScheduleTimer { timer } => {
                    let exists = timers
                        .get(timer.id.as_str())
                        .copied()
                        .unwrap_or_else(|| self.timers.contains_key(&timer.id));
                    if exists {
                        return Err(duplicate("timer", &timer.id));
                    }
                    timers.insert(&timer.id, true);
                    Write::ScheduleTimer(
                        timer.id.clone(),
                        TimerRecord {
                            instance: s.id.clone(),
                            due: ms(timer.due),
                            provisional: timer.provisional,
                            owner: None,
                            lease_until: None,
                        },
                    )
                }
                Command::CancelTimer { timer } => {
                    timers.insert(timer, false);
                    Write::CancelTimer(timer.clone())
                }
                Command::AwaitMessage { name, key } => {
                    let row = (name.clone(), key.clone(), s.id.clone());
                    let exists = awaited
                        .get(&row)
                        .copied()
                        .unwrap_or_else(|| self.awaited.contains(&row));
                    if exists {
                        return Err(duplicate("awaited message", &format!("{name} {key}")));
                    }
                    awaited.insert(row.clone(), true);
                    Write::Await(row)
                }
                Command::StopAwaiting { name, key } => {
                    let row = (name.clone(), key.clone(), s.id.clone());
                    awaited.insert(row.clone(), false);
                    Write::StopAwaiting(row)
                }
                Command::RecordFact { fact } => Write::Fact(fact.clone()),
                Command::Notify { .. }
                | Command::RenderDocument { .. }
                | Command::StartChild { .. }
                | Command::SendMessage { .. }
                | Command::CancelChild { .. } => {
                    let kind = OutboxKind::of_command(cmd).expect("an outbox command");
                    Write::Outbox {
                        instance: s.id.clone(),
                        kind,
                        payload: serde_json::to_string(cmd).map_err(corrupt)?,
                    }
                }
            };
            writes.push(w);
        }
        Ok(writes)
    }

    /// Carries out the prepared writes of a commit of instance `id` at `now`.
    fn write(&mut self, id: &str, writes: Vec<Write>, now: i64) {
        for w in writes {
            match w {
                Write::Outbox {
                    instance,
                    kind,
                    payload,
                } => {
                    self.outbox_seq += 1;
                    self.outbox.insert(
                        self.outbox_seq,
                        OutboxRecord {
                            instance,
                            kind,
                            payload,
                            status: OutboxStatus::Pending,
                            attempts: 0,
                            created_at: now,
                            next_attempt: 0,
                            lease_until: None,
                            last_error: None,
                            sent_at: None,
                        },
                    );
                }
                Write::HoldTimers => {
                    for r in self.timers.values_mut().filter(|r| r.instance == id) {
                        r.owner = Some(HELD.into());
                        r.lease_until = Some(i64::MAX);
                    }
                }
                Write::ReleaseTimers => {
                    for r in self.timers.values_mut().filter(|r| r.instance == id) {
                        r.owner = None;
                        r.lease_until = None;
                    }
                }
                Write::OpenTask(id, row) => {
                    self.tasks.insert(id, row);
                }
                Write::UpdateTask {
                    task,
                    due,
                    last_day,
                    assignees,
                } => {
                    if let Some(r) = self.tasks.get_mut(&task) {
                        r.due = due;
                        r.last_day = last_day;
                        r.assignees = assignees;
                    }
                }
                Write::CloseTask(task, outcome) => {
                    if let Some(r) = self.tasks.get_mut(&task) {
                        r.closed_at = Some(now);
                        r.outcome = outcome;
                    }
                }
                Write::ScheduleTimer(id, row) => {
                    self.timers.insert(id, row);
                }
                Write::CancelTimer(id) => {
                    self.timers.remove(&id);
                }
                Write::Await(row) => {
                    self.awaited.insert(row);
                }
                Write::StopAwaiting(row) => {
                    self.awaited.remove(&row);
                }
                Write::Fact(f) => self.facts.push(f),
                Write::AssignNumber {
                    variable,
                    counter,
                    format,
                } => {
                    let n = self.numbers.entry(counter).or_insert(0);
                    *n += 1;
                    let number = format.replace("{n}", &n.to_string());
                    if let Some(r) = self.instances.get_mut(id) {
                        if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&r.state) {
                            v["variables"][variable.as_str()] = serde_json::Value::String(number);
                            r.state = v.to_string();
                        }
                    }
                }
                Write::Migrate(steps) => {
                    for (old, new) in steps {
                        for r in self.tasks.values_mut() {
                            if r.instance == id && r.step == old {
                                r.step = new.clone();
                            }
                        }
                        for (parent, step) in self.children.values_mut() {
                            if parent == id && *step == old {
                                *step = new.clone();
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The in-memory store: see the module documentation.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    /// An empty store, as a freshly migrated database is.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Does nothing: there is nothing to close. It stands where
    /// [`super::SqlStore::close`] is called.
    pub async fn close(&self) {}

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().expect("not poisoned")
    }
}

impl Store for MemoryStore {
    async fn deploy(&self, defs: &[StoredDefinition]) -> Result<Vec<Deployed>, StoreError> {
        let mut t = self.lock();
        // Checked first, written after: all or nothing.
        let mut out = Vec::with_capacity(defs.len());
        for def in defs {
            match t.definitions.get(&(def.id.clone(), def.version)) {
                Some(existing) if existing.hash == def.hash => out.push(Deployed::Unchanged),
                Some(_) => {
                    return Err(StoreError::VersionChanged {
                        id: def.id.clone(),
                        version: def.version,
                    })
                }
                None => out.push(Deployed::New),
            }
        }
        for (def, d) in defs.iter().zip(&out) {
            if *d == Deployed::New {
                let mut stored = def.clone();
                stored.deployed_at = from_ms(ms(def.deployed_at));
                t.definitions.insert((def.id.clone(), def.version), stored);
            }
        }
        Ok(out)
    }

    async fn definition(
        &self,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredDefinition>, StoreError> {
        let t = self.lock();
        let mut versions = t
            .definitions
            .iter()
            .filter(|((d, v), _)| d == id && version.is_none_or(|want| *v == want));
        Ok(versions.next_back().map(|(_, d)| d.clone()))
    }

    async fn definitions(&self) -> Result<Vec<StoredDefinition>, StoreError> {
        Ok(self.lock().definitions.values().cloned().collect())
    }

    async fn numbers(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(self
            .lock()
            .numbers
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect())
    }

    async fn definition_heads(&self) -> Result<Vec<DefinitionHead>, StoreError> {
        let t = self.lock();
        let mut heads: BTreeMap<&str, DefinitionHead> = BTreeMap::new();
        for d in t.definitions.values() {
            if heads
                .get(d.id.as_str())
                .is_none_or(|h| h.version < d.version)
            {
                heads.insert(
                    &d.id,
                    DefinitionHead {
                        id: d.id.clone(),
                        version: d.version,
                        deployed_at: d.deployed_at,
                    },
                );
            }
        }
        Ok(heads.into_values().collect())
    }

    async fn latest_version(&self, id: &str) -> Result<Option<u32>, StoreError> {
        let t = self.lock();
        Ok(t.definitions
            .keys()
            .filter(|(d, _)| d == id)
            .map(|(_, v)| *v)
            .max())
    }

    async fn next_instance_id(&self) -> Result<String, StoreError> {
        Ok((self.lock().instance_counter + 1).to_string())
    }

    async fn load(&self, id: &str) -> Result<Option<InstanceState>, StoreError> {
        let t = self.lock();
        t.instances
            .get(id)
            .map(|r| serde_json::from_str(&r.state).map_err(corrupt))
            .transpose()
    }

    async fn commit(
        &self,
        prev: Option<u64>,
        t: &Transition,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        commit_locked(&mut self.lock(), prev, t, now)
    }

    async fn commit_start<E: From<StoreError> + Send + 'static>(
        &self,
        now: DateTime<Utc>,
        build: impl FnOnce(String) -> Result<Transition, E> + Send + 'static,
    ) -> Result<Transition, E> {
        let mut tables = self.lock();
        let number = tables.instance_counter + 1;
        let t = build(number.to_string())?;
        commit_locked(&mut tables, None, &t, now)?;
        tables.instance_counter = number;
        Ok(t)
    }

    async fn instances(
        &self,
        status: Option<&str>,
        definition: Option<&str>,
    ) -> Result<Vec<InstanceRow>, StoreError> {
        let t = self.lock();
        let mut rows: Vec<InstanceRow> = t
            .instances
            .iter()
            .filter(|(_, r)| status.is_none_or(|s| r.status == s))
            .filter(|(_, r)| definition.is_none_or(|d| r.definition == d))
            .map(|(id, r)| InstanceRow {
                id: id.clone(),
                definition: r.definition.clone(),
                version: r.version,
                profile: r.profile.clone(),
                status: r.status.clone(),
                started_at: from_ms(r.started_at),
            })
            .collect();
        rows.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        Ok(rows)
    }

    async fn tasks(&self, f: &TaskFilter) -> Result<Vec<TaskRow>, StoreError> {
        if f.role_holders.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let t = self.lock();
        let mut rows: Vec<(i64, TaskRow)> = t
            .tasks
            .iter()
            .filter(|(_, r)| r.closed_at.is_none())
            .filter(|(_, r)| f.assignee.as_ref().is_none_or(|a| r.assignees.contains(a)))
            .filter(|(_, r)| {
                f.role_holders
                    .as_ref()
                    .is_none_or(|hs| r.assignees.iter().any(|p| hs.contains(p)))
            })
            .filter(|(_, r)| {
                f.overdue_at
                    .is_none_or(|at| r.due.is_some_and(|due| due <= ms(at)))
            })
            .map(|(id, r)| {
                (
                    r.opened_at,
                    TaskRow {
                        id: id.clone(),
                        instance: r.instance.clone(),
                        step: r.step.clone(),
                        kind: r.kind,
                        assignees: r.assignees.clone(),
                        opened_at: from_ms(r.opened_at),
                        due: r.due.map(from_ms),
                        last_day: r.last_day.clone(),
                    },
                )
            })
            .collect();
        rows.sort_by(|(a, ra), (b, rb)| (a, &ra.id).cmp(&(b, &rb.id)));
        Ok(rows.into_iter().map(|(_, r)| r).collect())
    }

    async fn history(&self, instance: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let t = self.lock();
        t.history
            .values()
            .filter(|h| h.instance == instance)
            .map(|h| h.entry(h.people.clone()))
            .collect()
    }

    async fn person_history(&self, person: &str) -> Result<Vec<HistoryRow>, StoreError> {
        let t = self.lock();
        let mut rows: Vec<(i64, i64, &HistoryRecord)> = t
            .history
            .iter()
            .filter(|(_, h)| h.people.iter().any(|p| p == person))
            .map(|(id, h)| (h.at, *id, h))
            .collect();
        rows.sort_by_key(|(at, id, _)| (*at, *id));
        rows.into_iter()
            .map(|(_, _, h)| {
                Ok(HistoryRow {
                    instance: h.instance.clone(),
                    entry: h.entry(vec![person.to_string()])?,
                })
            })
            .collect()
    }

    async fn create_token(&self, t: &super::ApiToken) -> Result<(), StoreError> {
        let mut tables = self.lock();
        if tables.tokens.contains_key(&t.id) {
            return Err(StoreError::Conflict(t.id.clone()));
        }
        tables.tokens.insert(t.id.clone(), t.clone());
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<super::ApiToken>, StoreError> {
        Ok(self.lock().tokens.get(id).cloned())
    }

    async fn tokens(&self) -> Result<Vec<super::ApiToken>, StoreError> {
        let mut all: Vec<_> = self.lock().tokens.values().cloned().collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tables = self.lock();
        match tables.tokens.get_mut(id) {
            Some(t) if t.revoked_at.is_none() => {
                // Stored at the store's precision, as SQL keeps it.
                t.revoked_at = Some(from_ms(ms(at)));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn notices(&self, q: &ReportQuery) -> Result<Vec<NoticeRecord>, StoreError> {
        let t = self.lock();
        let (start, end) = q.window();
        let (start, end) = (ms(start), ms(end));
        let mut out: Vec<(i64, &String, NoticeRecord)> = Vec::new();
        for (id, r) in &t.tasks {
            if r.kind != TaskKind::Notice || r.opened_at < start || r.opened_at >= end {
                continue;
            }
            let Some(inst) = t.instances.get(&r.instance) else {
                continue;
            };
            if q.process.as_ref().is_some_and(|p| *p != inst.definition)
                || q.step.as_ref().is_some_and(|s| *s != r.step)
            {
                continue;
            }
            let escalated = t.history.values().any(|h| {
                h.instance == r.instance
                    && h.what == HistoryKind::Escalated
                    && h.step_before.as_deref() == Some(r.step.as_str())
            });
            out.push((
                r.opened_at,
                id,
                NoticeRecord {
                    instance: r.instance.clone(),
                    process: inst.definition.clone(),
                    step: r.step.clone(),
                    to: r.assignees.clone(),
                    opened_at: from_ms(r.opened_at),
                    due: r.due.map(from_ms),
                    closed_at: r.closed_at.map(from_ms),
                    outcome: r.outcome.clone(),
                    escalated,
                },
            ));
        }
        out.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        Ok(out.into_iter().map(|(_, _, r)| r).collect())
    }

    async fn facts(&self, subjects: &BTreeSet<String>) -> Result<Vec<Fact>, StoreError> {
        let t = self.lock();
        Ok(t.facts
            .iter()
            .filter(|f| subjects.contains(&f.subject))
            .cloned()
            .collect())
    }

    async fn awaiting(&self, name: &str, key: &str) -> Result<Vec<String>, StoreError> {
        let t = self.lock();
        // The set is ordered by (name, key, instance): these come by instance.
        Ok(t.awaited
            .iter()
            .filter(|(n, k, _)| n == name && k == key)
            .map(|(_, _, i)| i.clone())
            .collect())
    }

    async fn import_directory(&self, dir: &MemoryDirectory) -> Result<(), StoreError> {
        let mut people = BTreeMap::new();
        for p in &dir.people {
            if people.insert(p.id.clone(), p.clone()).is_some() {
                return Err(duplicate("person", &p.id));
            }
            let mut roles = BTreeSet::new();
            if let Some(r) = p.roles.iter().find(|r| !roles.insert(r.as_str())) {
                return Err(duplicate("person role", &format!("{} {r}", p.id)));
            }
        }
        let mut agencies = BTreeMap::new();
        for a in &dir.agencies {
            if agencies.insert(a.id.clone(), a.clone()).is_some() {
                return Err(duplicate("agency", &a.id));
            }
        }
        let mut t = self.lock();
        t.people = people;
        t.agencies = agencies;
        Ok(())
    }

    async fn directory(&self) -> Result<MemoryDirectory, StoreError> {
        let t = self.lock();
        Ok(MemoryDirectory {
            people: t.people.values().cloned().collect(),
            agencies: t.agencies.values().cloned().collect(),
        })
    }

    async fn pending_timers(&self, instance: &str) -> Result<Vec<String>, StoreError> {
        let t = self.lock();
        Ok(t.timers
            .iter()
            .filter(|(_, r)| r.instance == instance)
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn link_child(&self, child: &str, parent: &str, step: &str) -> Result<(), StoreError> {
        self.lock()
            .children
            .entry(child.to_string())
            .or_insert_with(|| (parent.to_string(), step.to_string()));
        Ok(())
    }

    async fn parent_of(&self, child: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self.lock().children.get(child).cloned())
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let now = ms(now);
        let mut t = self.lock();
        let mut due: Vec<(i64, String)> = t
            .timers
            .iter()
            .filter(|(_, r)| r.due <= now && r.lease_until.is_none_or(|l| l < now))
            .map(|(id, r)| (r.due, id.clone()))
            .collect();
        due.sort();
        due.truncate(limit as usize);
        let mut out = Vec::with_capacity(due.len());
        for (_, id) in due {
            let r = t.timers.get_mut(&id).expect("just listed");
            r.owner = Some(owner.to_string());
            r.lease_until = Some(ms(lease_until));
            out.push(DueTimer {
                instance: r.instance.clone(),
                due: from_ms(r.due),
                id,
            });
        }
        Ok(out)
    }

    async fn drop_timer(&self, id: &str) -> Result<(), StoreError> {
        self.lock().timers.remove(id);
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let t = self.lock();
        Ok(t.timers
            .values()
            .filter(|r| r.owner.as_deref() != Some(HELD))
            .map(|r| r.lease_until.map_or(r.due, |l| l.max(r.due)))
            .min()
            .map(from_ms))
    }

    async fn release_timers(&self, owner: Option<&str>) -> Result<u64, StoreError> {
        let mut t = self.lock();
        let mut n = 0;
        for r in t.timers.values_mut() {
            let mine = match (&r.owner, owner) {
                (Some(o), _) if o == HELD => false,
                (Some(o), Some(want)) => o == want,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if mine {
                r.owner = None;
                r.lease_until = None;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn provisional_instances(&self) -> Result<Vec<String>, StoreError> {
        let t = self.lock();
        let ids: BTreeSet<&String> = t
            .timers
            .values()
            .filter(|r| r.provisional)
            .map(|r| &r.instance)
            .collect();
        Ok(ids.into_iter().cloned().collect())
    }

    async fn cron_cursor(
        &self,
        definition: &str,
        entry: u32,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let t = self.lock();
        Ok(t.cron
            .get(&(definition.to_string(), entry))
            .copied()
            .map(from_ms))
    }

    async fn advance_cron_cursor(
        &self,
        definition: &str,
        entry: u32,
        last: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let last = ms(last);
        let mut t = self.lock();
        let cursor = t
            .cron
            .entry((definition.to_string(), entry))
            .or_insert(last);
        *cursor = (*cursor).max(last);
        Ok(())
    }

    async fn release_outbox(&self, ids: Option<&[i64]>) -> Result<u64, StoreError> {
        let mut t = self.lock();
        let mut n = 0;
        for (id, r) in t.outbox.iter_mut() {
            if r.status == OutboxStatus::Pending
                && r.lease_until.is_some()
                && ids.is_none_or(|ids| ids.contains(id))
            {
                r.lease_until = None;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn claim_outbox(
        &self,
        kind: OutboxKind,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let now = ms(now);
        let mut t = self.lock();
        let mut out = Vec::new();
        // By id, oldest first.
        for (id, r) in t.outbox.iter_mut() {
            if out.len() >= limit as usize {
                break;
            }
            if r.status == OutboxStatus::Pending
                && r.kind == kind
                && r.next_attempt <= now
                && r.lease_until.is_none_or(|l| l < now)
            {
                r.lease_until = Some(ms(lease_until));
                out.push(r.row(*id));
            }
        }
        Ok(out)
    }

    async fn outbox_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(r) = self.lock().outbox.get_mut(&id) {
            r.status = OutboxStatus::Sent;
            r.sent_at = Some(ms(now));
            r.attempts += 1;
            r.lease_until = None;
        }
        Ok(())
    }

    async fn outbox_dropped(&self, id: i64, reason: &str) -> Result<(), StoreError> {
        if let Some(r) = self.lock().outbox.get_mut(&id) {
            r.status = OutboxStatus::Dropped;
            r.last_error = Some(reason.to_string());
            r.lease_until = None;
        }
        Ok(())
    }

    async fn outbox_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        if let Some(r) = self.lock().outbox.get_mut(&id) {
            (r.status, r.next_attempt) = match retry_at {
                Some(t) => (OutboxStatus::Pending, ms(t)),
                None => (OutboxStatus::Dead, 0),
            };
            r.attempts += 1;
            r.last_error = Some(error.to_string());
            r.lease_until = None;
        }
        Ok(())
    }

    async fn outbox(&self, status: Option<OutboxStatus>) -> Result<Vec<OutboxRow>, StoreError> {
        let t = self.lock();
        Ok(t.outbox
            .iter()
            .filter(|(_, r)| status.is_none_or(|s| r.status == s))
            .map(|(id, r)| r.row(*id))
            .collect())
    }

    async fn outbox_of(&self, instance: &str) -> Result<Vec<OutboxRow>, StoreError> {
        let t = self.lock();
        Ok(t.outbox
            .iter()
            .filter(|(_, r)| r.instance == instance)
            .map(|(id, r)| r.row(*id))
            .collect())
    }

    async fn outbox_retry(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        match self.lock().outbox.get_mut(&id) {
            Some(r) if r.status == OutboxStatus::Dead => {
                r.status = OutboxStatus::Pending;
                r.attempts = 0;
                r.next_attempt = ms(now);
                r.lease_until = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn outbox_pending(&self) -> Result<u64, StoreError> {
        let t = self.lock();
        Ok(t.outbox
            .values()
            .filter(|r| r.status == OutboxStatus::Pending)
            .count() as u64)
    }

    async fn stats(&self, now: DateTime<Utc>) -> Result<Stats, StoreError> {
        let t = self.lock();
        let now = ms(now);
        let mut instances: BTreeMap<String, u64> = BTreeMap::new();
        for i in t.instances.values() {
            *instances.entry(i.status.clone()).or_default() += 1;
        }
        let open: Vec<&TaskRecord> = t.tasks.values().filter(|r| r.closed_at.is_none()).collect();
        let mut outbox: BTreeMap<(String, String), u64> = BTreeMap::new();
        for r in t.outbox.values() {
            *outbox
                .entry((r.kind.to_string(), r.status.as_str().to_string()))
                .or_default() += 1;
        }
        // Timers of a stuck instance are held, not waiting to be applied.
        let live = || {
            t.timers
                .values()
                .filter(|r| r.owner.as_deref() != Some(HELD))
        };
        Ok(Stats {
            instances: instances.into_iter().collect(),
            open_tasks: open.len() as u64,
            overdue_tasks: open
                .iter()
                .filter(|r| r.due.is_some_and(|d| d <= now))
                .count() as u64,
            timers: live().count() as u64,
            timers_due: live().filter(|r| r.due <= now).count() as u64,
            oldest_due: live()
                .map(|r| r.due)
                .filter(|d| *d <= now)
                .min()
                .map(from_ms),
            outbox: outbox.into_iter().map(|((k, s), n)| (k, s, n)).collect(),
        })
    }
}

/// Stores transition `t` in `tables`, as [`Store::commit`] describes.
fn commit_locked(
    tables: &mut Tables,
    prev: Option<u64>,
    t: &Transition,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let s = &t.state;
    let state = serde_json::to_string(s).map_err(corrupt)?;
    let now = ms(now);
    match prev {
        Some(rev) => match tables.instances.get(&s.id) {
            Some(r) if r.revision == rev => {}
            _ => return Err(StoreError::Conflict(s.id.clone())),
        },
        None => {
            if tables.instances.contains_key(&s.id) {
                return Err(StoreError::Conflict(s.id.clone()));
            }
        }
    }
    let writes = tables.prepare(t)?;
    let mut history = Vec::with_capacity(t.history.len());
    for h in &t.history {
        let mut people = h.people.clone();
        people.sort();
        people.dedup();
        history.push(HistoryRecord {
            instance: s.id.clone(),
            at: ms(h.at),
            actor: h.actor.clone(),
            what: h.what,
            step_before: h.step_before.clone(),
            step_after: h.step_after.clone(),
            changed: serde_json::to_string(&h.changed).map_err(corrupt)?,
            deadline: h
                .deadline
                .as_ref()
                .map(|d| serde_json::to_string(d).unwrap_or_default()),
            note: h.note.clone(),
            people,
            due: h.due.map(ms),
        });
    }
    // Everything is checked: from here on nothing can fail.
    match tables.instances.get_mut(&s.id) {
        Some(r) => {
            r.state = state;
            r.status = s.status.name().into();
            r.revision = s.revision;
            r.version = s.version;
        }
        None => {
            tables.instances.insert(
                s.id.clone(),
                InstanceRecord {
                    definition: s.definition.clone(),
                    version: s.version,
                    profile: s.profile.clone(),
                    status: s.status.name().into(),
                    revision: s.revision,
                    state,
                    started_at: ms(s.started_at),
                },
            );
        }
    }
    tables.write(&s.id, writes, now);
    for h in history {
        tables.history_seq += 1;
        let id = tables.history_seq;
        tables.history.insert(id, h);
    }
    Ok(())
}
