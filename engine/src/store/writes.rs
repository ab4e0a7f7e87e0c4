//! A transition as the rows it writes: a list of statements with owned
//! parameters ([`Op`]), built by the caller before the commit.
//!
//! Building the write set is pure (it reads only the transition) and runs
//! on the caller's task, in parallel with other callers; the commit then
//! only executes it. Both SQL paths execute the same list: sqlx's `Any`
//! connection for PostgreSQL (and a SQLite store opened without its
//! writer), and the SQLite group-commit writer (`store::sqlite_writer`),
//! which runs many write sets in one transaction, each inside its own
//! savepoint.
//!
//! The statements use `$N` placeholders, numbered in order of first use,
//! which PostgreSQL and SQLite (as named parameters, indexed by first
//! appearance) both accept.

use chrono::{DateTime, Utc};

use super::{corrupt, ms, OutboxKind, StoreError, HELD};
use crate::runtime::{Command, TaskState, Transition};

/// A parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// SQL NULL in a text column (PostgreSQL types its parameters).
    NullText,
    /// SQL NULL in an integer column.
    NullInt,
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// The id returned by the write set's last [`Check::ReturnsId`]
    /// statement (a history row's id, for its people).
    LastId,
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Text(s.to_string())
    }
}

impl From<&String> for Val {
    fn from(s: &String) -> Self {
        Val::Text(s.clone())
    }
}

impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Text(s)
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}

impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        v.map(Val::Text).unwrap_or(Val::NullText)
    }
}

impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        v.map(Val::Int).unwrap_or(Val::NullInt)
    }
}

/// What a statement's result must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Nothing.
    None,
    /// Exactly one row changed, else the instance was changed
    /// concurrently ([`StoreError::Conflict`]).
    OneRow,
    /// A unique violation means the instance exists already (a start under
    /// a taken id): [`StoreError::Conflict`].
    NewRow,
    /// It returns one row with an `id`, kept for later [`Val::LastId`]s.
    ReturnsId,
}

/// One statement of a write set.
#[derive(Clone, Debug)]
pub struct Op {
    /// The SQL text (one of the constants of this module: a small, fixed
    /// set, so prepared once per connection).
    pub sql: &'static str,
    /// Its parameters, `$1` first.
    pub params: Vec<Val>,
    /// What its result must be.
    pub check: Check,
    /// The PostgreSQL text, where it differs from [`Op::sql`] (SQLite's).
    pub pg: Option<&'static str>,
}

impl Op {
    fn new(sql: &'static str, params: Vec<Val>) -> Op {
        Op {
            sql,
            params,
            check: Check::None,
            pg: None,
        }
    }

    fn on_postgres(mut self, sql: &'static str) -> Op {
        self.pg = Some(sql);
        self
    }

    fn checked(mut self, check: Check) -> Op {
        self.check = check;
        self
    }
}

/// The statements of one transition, and the instance they are about.
#[derive(Clone, Debug)]
pub struct WriteSet {
    /// The instance (named in a conflict).
    pub instance: String,
    /// The statements, in order.
    pub ops: Vec<Op>,
}

const UPDATE_INSTANCE: &str = "UPDATE instances SET state = $1, status = $2, revision = $3, updated_at = $4 WHERE id = $5 AND revision = $6";
const INSERT_INSTANCE: &str = "INSERT INTO instances (id, definition, version, profile, status, revision, state, started_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const TELL_PARENT: &str = "INSERT INTO outbox (instance, kind, payload, status, attempts, created_at) SELECT parent, 'child_ended', $1, 'pending', 0, $2 FROM children WHERE child = $3";
const HOLD_TIMERS: &str = "UPDATE timers SET owner = $1, lease_until = $2 WHERE instance = $3";
const RELEASE_TIMERS: &str =
    "UPDATE timers SET owner = NULL, lease_until = NULL WHERE instance = $1";
const NEXT_NUMBER: &str = "INSERT INTO counters (name, value) VALUES ($1, 1) ON CONFLICT (name) DO UPDATE SET value = counters.value + 1";
const SET_NUMBER: &str = "UPDATE instances SET state = json_set(state, '$.variables.' || $1, replace($2, '{n}', (SELECT value FROM counters WHERE name = $3))) WHERE id = $4";
const SET_NUMBER_PG: &str = "UPDATE instances SET state = jsonb_set(state::jsonb, ARRAY['variables', $1::text], to_jsonb(replace($2::text, '{n}', (SELECT value::text FROM counters WHERE name = $3::text))))::text WHERE id = $4";
const MIGRATE_INSTANCE: &str = "UPDATE instances SET version = $1 WHERE id = $2";
const MIGRATE_TASKS: &str = "UPDATE tasks SET step = $1 WHERE instance = $2 AND step = $3";
const MIGRATE_CHILDREN: &str = "UPDATE children SET step = $1 WHERE parent = $2 AND step = $3";
const INSERT_TASK: &str = "INSERT INTO tasks (id, instance, step, kind, assignees, opened_at, due, last_day) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const INSERT_ASSIGNEE: &str = "INSERT INTO task_assignees (task, person) VALUES ($1, $2)";
const UPDATE_TASK: &str = "UPDATE tasks SET due = $1, last_day = $2, assignees = $3 WHERE id = $4";
const DELETE_ASSIGNEES: &str = "DELETE FROM task_assignees WHERE task = $1";
const CLOSE_TASK: &str = "UPDATE tasks SET closed_at = $1, outcome = $2 WHERE id = $3";
const INSERT_TIMER: &str =
    "INSERT INTO timers (id, instance, due, kind, provisional) VALUES ($1, $2, $3, $4, $5)";
const DELETE_TIMER: &str = "DELETE FROM timers WHERE id = $1";
const AWAIT_MESSAGE: &str =
    "INSERT INTO awaited_messages (name, key, instance) VALUES ($1, $2, $3)";
const STOP_AWAITING: &str =
    "DELETE FROM awaited_messages WHERE name = $1 AND key = $2 AND instance = $3";
const INSERT_FACT: &str = "INSERT INTO facts (subject, name, value, at, process, instance, step, actor, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const INSERT_OUTBOX: &str = "INSERT INTO outbox (instance, kind, payload, status, attempts, created_at) VALUES ($1, $2, $3, 'pending', 0, $4)";
const INSERT_HISTORY: &str = "INSERT INTO history (instance, at, actor, what, step_before, step_after, changed, deadline, note, due) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id";
const INSERT_HISTORY_PERSON: &str =
    "INSERT INTO history_people (history, person, instance) VALUES ($1, $2, $3)";
/// Takes the next instance number (a start numbered by the counter).
pub const NEXT_INSTANCE: &str =
    "UPDATE counters SET value = value + 1 WHERE name = 'instance' RETURNING value";

fn task_values(t: &TaskState) -> (String, Option<i64>, Option<String>) {
    let assignees = serde_json::to_string(&t.assignees).unwrap_or_else(|_| "[]".into());
    let due = t.deadline.as_ref().map(|d| d.deadline.timestamp_millis());
    let last_day = t.deadline.as_ref().map(|d| d.last_day.to_string());
    (assignees, due, last_day)
}

/// The statements that store transition `t` computed from revision `prev`
/// (`None`: a start). The first is the instance's compare-and-set.
pub fn transition(
    prev: Option<u64>,
    t: &Transition,
    now: DateTime<Utc>,
) -> Result<WriteSet, StoreError> {
    let s = &t.state;
    let state = serde_json::to_string(s).map_err(corrupt)?;
    let id = || Val::Text(s.id.clone());
    let mut ops = Vec::with_capacity(2 + t.commands.len() * 2 + t.history.len() * 3);
    ops.push(match prev {
        Some(rev) => Op::new(
            UPDATE_INSTANCE,
            vec![
                state.into(),
                s.status.name().into(),
                (s.revision as i64).into(),
                ms(now).into(),
                id(),
                (rev as i64).into(),
            ],
        )
        .checked(Check::OneRow),
        None => Op::new(
            INSERT_INSTANCE,
            vec![
                id(),
                (&s.definition).into(),
                i64::from(s.version).into(),
                s.profile.clone().into(),
                s.status.name().into(),
                (s.revision as i64).into(),
                state.into(),
                ms(s.started_at).into(),
                ms(now).into(),
            ],
        )
        .checked(Check::NewRow),
    });
    let task_of = |task: &str| {
        s.tasks
            .get(task)
            .ok_or_else(|| corrupt(format!("task {task} not in state")))
    };
    for cmd in &t.commands {
        match cmd {
            // A called child that ends tells its parent through the outbox,
            // in the transaction that ends it: the result cannot be lost
            // between the child's commit and the parent's.
            Command::TellParent { result } => {
                let payload = serde_json::json!({ "child": s.id, "result": result }).to_string();
                ops.push(Op::new(
                    TELL_PARENT,
                    vec![payload.into(), ms(now).into(), id()],
                ));
            }
            // A stuck instance's timers are leased to nobody, for ever, so
            // no engine process claims them until a retry.
            Command::HoldTimers => ops.push(Op::new(
                HOLD_TIMERS,
                vec![HELD.into(), i64::MAX.into(), id()],
            )),
            Command::ReleaseTimers => ops.push(Op::new(RELEASE_TIMERS, vec![id()])),
            // A numbered document: the counter's next value, in this
            // transaction (rolled back with it), into the stored state.
            Command::AssignNumber {
                variable,
                counter,
                format,
            } => {
                ops.push(Op::new(NEXT_NUMBER, vec![counter.into()]));
                ops.push(
                    Op::new(
                        SET_NUMBER,
                        vec![variable.into(), format.into(), counter.into(), id()],
                    )
                    .on_postgres(SET_NUMBER_PG),
                );
            }
            // A migration: the instance's version, and the steps of its task
            // rows and of the children its calls wait on follow the plan.
            Command::Migrate { to, steps, .. } => {
                ops.push(Op::new(MIGRATE_INSTANCE, vec![i64::from(*to).into(), id()]));
                for (old, new) in steps {
                    ops.push(Op::new(MIGRATE_TASKS, vec![new.into(), id(), old.into()]));
                    ops.push(Op::new(
                        MIGRATE_CHILDREN,
                        vec![new.into(), id(), old.into()],
                    ));
                }
            }
            Command::OpenTask { task, .. } => {
                let ts = task_of(task)?;
                let (assignees, due, last_day) = task_values(ts);
                ops.push(Op::new(
                    INSERT_TASK,
                    vec![
                        task.into(),
                        id(),
                        (&ts.step).into(),
                        ts.kind.as_str().into(),
                        assignees.into(),
                        ms(ts.opened_at).into(),
                        due.into(),
                        last_day.into(),
                    ],
                ));
                for p in &ts.assignees {
                    ops.push(Op::new(INSERT_ASSIGNEE, vec![task.into(), p.into()]));
                }
            }
            Command::UpdateTask { task } => {
                let ts = task_of(task)?;
                let (assignees, due, last_day) = task_values(ts);
                ops.push(Op::new(
                    UPDATE_TASK,
                    vec![due.into(), last_day.into(), assignees.into(), task.into()],
                ));
                // The assignees may have changed (a recusal granted).
                ops.push(Op::new(DELETE_ASSIGNEES, vec![task.into()]));
                for p in &ts.assignees {
                    ops.push(Op::new(INSERT_ASSIGNEE, vec![task.into(), p.into()]));
                }
            }
            Command::CloseTask { task } => {
                let outcome = s
                    .tasks
                    .get(task)
                    .and_then(|t| t.closed.as_ref())
                    .map(|c| c.outcome.clone());
                ops.push(Op::new(
                    CLOSE_TASK,
                    vec![ms(now).into(), outcome.into(), task.into()],
                ));
            }
            Command::ScheduleTimer { timer } => {
                let kind = serde_json::to_string(&timer.kind).map_err(corrupt)?;
                ops.push(Op::new(
                    INSERT_TIMER,
                    vec![
                        (&timer.id).into(),
                        id(),
                        ms(timer.due).into(),
                        kind.into(),
                        i64::from(timer.provisional).into(),
                    ],
                ));
            }
            Command::CancelTimer { timer } => {
                ops.push(Op::new(DELETE_TIMER, vec![timer.into()]));
            }
            Command::AwaitMessage { name, key } => {
                ops.push(Op::new(AWAIT_MESSAGE, vec![name.into(), key.into(), id()]));
            }
            Command::StopAwaiting { name, key } => {
                ops.push(Op::new(STOP_AWAITING, vec![name.into(), key.into(), id()]));
            }
            Command::RecordFact { fact } => ops.push(Op::new(
                INSERT_FACT,
                vec![
                    (&fact.subject).into(),
                    (&fact.name).into(),
                    fact.value.to_string().into(),
                    ms(fact.at).into(),
                    (&fact.process).into(),
                    (&fact.instance).into(),
                    (&fact.step).into(),
                    (&fact.actor).into(),
                    fact.note.clone().into(),
                ],
            )),
            Command::Notify { .. }
            | Command::RenderDocument { .. }
            | Command::StartChild { .. }
            | Command::SendMessage { .. }
            | Command::CancelChild { .. } => {
                let kind = OutboxKind::of_command(cmd).expect("an outbox command");
                let payload = serde_json::to_string(cmd).map_err(corrupt)?;
                ops.push(Op::new(
                    INSERT_OUTBOX,
                    vec![id(), kind.as_str().into(), payload.into(), ms(now).into()],
                ));
            }
        }
    }
    for h in &t.history {
        let changed = serde_json::to_string(&h.changed).map_err(corrupt)?;
        let deadline = h
            .deadline
            .as_ref()
            .map(|d| serde_json::to_string(d).unwrap_or_default());
        ops.push(
            Op::new(
                INSERT_HISTORY,
                vec![
                    id(),
                    ms(h.at).into(),
                    (&h.actor).into(),
                    h.what.as_str().into(),
                    h.step_before.clone().into(),
                    h.step_after.clone().into(),
                    changed.into(),
                    deadline.into(),
                    h.note.clone().into(),
                    h.due.map(ms).into(),
                ],
            )
            .checked(Check::ReturnsId),
        );
        let mut people = h.people.clone();
        people.sort();
        people.dedup();
        for p in people {
            ops.push(Op::new(
                INSERT_HISTORY_PERSON,
                vec![Val::LastId, p.into(), id()],
            ));
        }
    }
    Ok(WriteSet {
        instance: s.id.clone(),
        ops,
    })
}
