//! The state of one instance, as the store keeps it (serialised as JSON).
//!
//! Everything a transition needs is here or in the definition: the
//! variables, the open and closed tasks with their deadlines, the waits, the
//! pending timers and the join counters. `revision` is the optimistic
//! concurrency counter: a transition computed from revision N may only be
//! stored over revision N (`version` is the definition's version).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::Event;
use crate::calendar::Deadline;

/// Where an instance is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Status {
    /// Steps are open.
    Running,
    /// An `end` step was reached.
    Completed {
        /// The end's result.
        result: String,
    },
    /// Cancelled by an administrator.
    Cancelled {
        /// Why.
        reason: String,
    },
    /// A fault stopped an engine-driven event (a timer, a child's result, a
    /// recount): the instance keeps the state from before it, its timers
    /// are held, and it waits for an administrator to fix the cause and
    /// `duban retry` it. Only `set-var`, `retry` and `cancel` apply.
    Stuck {
        /// The fault's stable code (`R015` …).
        code: String,
        /// The fault's message.
        message: String,
        /// The event that met the fault; `retry` applies it again.
        event: Box<Event>,
        /// When it got stuck.
        since: DateTime<Utc>,
    },
}

impl Status {
    /// `running`, `completed`, `cancelled` or `stuck`.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed { .. } => "completed",
            Status::Cancelled { .. } => "cancelled",
            Status::Stuck { .. } => "stuck",
        }
    }
}

/// Whether work is for staff or for an external party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Work for staff (a `task` step).
    Task,
    /// A message to an agency or person who answers it (a `notice` step).
    Notice,
}

impl TaskKind {
    /// `task` or `notice`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Task => "task",
            TaskKind::Notice => "notice",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<TaskKind> {
        match s {
            "task" => Some(TaskKind::Task),
            "notice" => Some(TaskKind::Notice),
            _ => None,
        }
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A task or notice of an instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    /// The task id, `INSTANCE.N`.
    pub id: String,
    /// The step it belongs to.
    pub step: String,
    /// Task or notice.
    pub kind: TaskKind,
    /// When it opened.
    pub opened_at: DateTime<Utc>,
    /// The people (tasks) or the agency/person (notices) it went to.
    pub assignees: Vec<String>,
    /// When the recipient acknowledged receipt (notices), or when receipt
    /// was deemed (`deemed_receipt`).
    pub received_at: Option<DateTime<Utc>>,
    /// When the notice's email reached the recipient's mail server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// The computed deadline, once its start is known.
    pub deadline: Option<Deadline>,
    /// When it closed, with which outcome, by whom.
    pub closed: Option<Closed>,
    /// The item of a `for_each` step it was opened for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Item>,
    /// Recusals (回避) requested on it, decided or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recusals: Vec<Recusal>,
    /// People a granted recusal excluded: they may not act on it, even if
    /// they hold its role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
}

/// A recusal (回避) requested on a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recusal {
    /// Who is to be recused.
    pub person: String,
    /// Why (the conflict declared, or the party's grounds).
    pub reason: String,
    /// Who asked: the person themself, or a supervised party.
    pub requested_by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The decision, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<RecusalDecision>,
}

/// How a recusal was decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecusalDecision {
    /// Granted (the person leaves the task) or refused.
    pub granted: bool,
    /// Who decided (a holder of `decided_by`).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl TaskState {
    /// The recusal of `person` still waiting for its decision.
    pub fn pending_recusal(&self, person: &str) -> Option<&Recusal> {
        self.recusals
            .iter()
            .find(|r| r.person == person && r.decision.is_none())
    }
}

/// One item of a `for_each` step: which, and its value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The variable that holds it within the item (`as:`).
    pub var: String,
    /// Its position in the list, from 0.
    pub index: u32,
    /// Its value, as the list held it when the step was entered.
    pub value: serde_json::Value,
}

/// The progress of a `for_each` step that is running.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ForEachState {
    /// The items, as the list held them when the step was entered.
    pub items: Vec<serde_json::Value>,
    /// How many items have been opened (all at once in parallel, one
    /// after another in sequence).
    pub opened: u32,
    /// The items that finished, in the order they finished.
    pub results: Vec<ItemResult>,
    /// A call's children that are running, child id → item index.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub children: BTreeMap<String, u32>,
}

/// How one item of a `for_each` step finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    /// The item's position in the list.
    pub index: u32,
    /// Its outcome (a call: the child's result).
    pub outcome: String,
    /// The fields its completer gave.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// How a task closed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Closed {
    /// The outcome id, or `expired` / `cancelled`.
    pub outcome: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (a person or agency id, or `engine`).
    pub by: String,
}

/// What a timer does when it fires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TimerKind {
    /// The deadline of a task expires.
    Expiry {
        /// The task.
        task: String,
    },
    /// A reminder before a task's deadline.
    Reminder {
        /// The task.
        task: String,
        /// The reminder's period as written, for the message.
        before: String,
    },
    /// A `wait_timer` step's period has run.
    Wait {
        /// The waiting step.
        step: String,
    },
    /// A `wait_message` step's timeout.
    MessageTimeout {
        /// The waiting step.
        step: String,
    },
    /// A notice's receipt is deemed (`deemed_receipt`).
    DeemedReceipt {
        /// The notice's task.
        task: String,
    },
}

/// A pending timer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimerState {
    /// The timer id, `INSTANCE.tN`.
    pub id: String,
    /// When it falls due.
    pub due: DateTime<Utc>,
    /// What it does.
    pub kind: TimerKind,
    /// The deadline was counted through a year without a schedule.
    pub provisional: bool,
}

/// A step waiting for something other than a person: a message, a timer, a child.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaitState {
    /// The step.
    pub step: String,
    /// For `wait_message`: the message name and correlation key.
    pub message: Option<(String, String)>,
    /// For `call`: the child instance, once started.
    pub child: Option<String>,
    /// For a `call` with `for_each`: the children started for its items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    /// When the wait began (what `from: opened` counts from).
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// The period it waits for (`wait_timer`) or its timeout
    /// (`wait_message`), as counted, so a provisional one can be recounted.
    #[serde(default)]
    pub deadline: Option<Deadline>,
}

/// One instance of a definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    /// The instance id.
    pub id: String,
    /// The definition id.
    pub definition: String,
    /// The definition version it runs on, for its whole life.
    pub version: u32,
    /// The profile chosen at start.
    pub profile: Option<String>,
    /// Where it is.
    pub status: Status,
    /// The variables, as typed JSON values.
    pub variables: BTreeMap<String, serde_json::Value>,
    /// All tasks and notices, open and closed, by id.
    pub tasks: BTreeMap<String, TaskState>,
    /// Pending timers, by id.
    pub timers: BTreeMap<String, TimerState>,
    /// Waiting steps, by step id.
    pub waits: BTreeMap<String, WaitState>,
    /// Arrivals at each join since it last fired.
    pub joins: BTreeMap<String, u32>,
    /// Arrivals an inclusive choice made a join wait for, by join.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub join_expect: BTreeMap<String, u32>,
    /// The `for_each` steps running, by step id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub for_each: BTreeMap<String, ForEachState>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// The counter for timer ids.
    pub seq: u64,
    /// The counter for task ids, so tasks are numbered 1, 2, 3 … in an instance.
    #[serde(default)]
    pub task_seq: u64,
    /// Optimistic-concurrency counter: bumped by every stored transition.
    pub revision: u64,
    /// How deep in calls it sits: 0 for an instance started on its own,
    /// its caller's depth plus one for a child a `call` started. Bounded by
    /// [`crate::runtime::MAX_CALL_DEPTH`].
    #[serde(default)]
    pub depth: u32,
    /// The instant of the last stored transition. An event is applied at
    /// its own instant or at this one, whichever is later, so that the
    /// history instants of an instance never decrease in the order the
    /// entries were committed, whatever the clocks of the processes that
    /// applied them (ARCHITECTURE.md, "history instant").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<DateTime<Utc>>,
}

impl WaitState {
    /// The children a `call` started for this wait (one, or one per item).
    pub fn all_children(&self) -> impl Iterator<Item = &String> {
        self.child.iter().chain(self.children.iter())
    }
}

impl InstanceState {
    /// The open tasks, in id order.
    pub fn open_tasks(&self) -> impl Iterator<Item = &TaskState> {
        self.tasks.values().filter(|t| t.closed.is_none())
    }

    /// The steps that are currently open (tasks, notices and waits).
    pub fn current_steps(&self) -> Vec<String> {
        let mut steps: Vec<String> = self.open_tasks().map(|t| t.step.clone()).collect();
        steps.extend(self.waits.keys().cloned());
        steps.sort();
        steps.dedup();
        steps
    }

    pub(crate) fn next_timer_id(&mut self) -> String {
        self.seq += 1;
        format!("{}.t{}", self.id, self.seq)
    }

    pub(crate) fn next_task_id(&mut self) -> String {
        self.task_seq += 1;
        format!("{}.{}", self.id, self.task_seq)
    }
}
