//! Events in, commands and history out, and the errors in between.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::state::{InstanceState, TimerState};
use crate::calendar::Deadline;
use crate::definition::Channel;

/// Something that happens to an instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// Start a new instance.
    Start {
        /// The new instance's id (chosen by the store).
        instance: String,
        /// The profile; the definition's default when `None`.
        profile: Option<String>,
        /// The start variables (checked against their declared types).
        variables: BTreeMap<String, serde_json::Value>,
        /// Who started it.
        actor: String,
    },
    /// Complete a task, or answer a notice, with one of its outcomes.
    Complete {
        /// The task id.
        task: String,
        /// The outcome id.
        outcome: String,
        /// The outcome's form fields.
        variables: BTreeMap<String, serde_json::Value>,
        /// Who completed it.
        actor: String,
    },
    /// The recipient of a notice acknowledged receipt: `from: receipt` deadlines start.
    Receive {
        /// The notice's task id.
        task: String,
        /// Who acknowledged.
        actor: String,
    },
    /// A message for a `wait_message` step.
    Message {
        /// The message name.
        name: String,
        /// The correlation key.
        key: String,
        /// Variables the message carries.
        variables: BTreeMap<String, serde_json::Value>,
    },
    /// A timer fell due.
    TimerFired {
        /// The timer id.
        timer: String,
    },
    /// A called child instance ended.
    ChildEnded {
        /// The calling step.
        step: String,
        /// The child's result.
        result: String,
    },
    /// The calendar changed (a year's schedule was loaded): recount every
    /// provisional deadline of the open tasks.
    Recompute,
    /// Cancel the instance.
    Cancel {
        /// Why.
        reason: String,
        /// Who.
        actor: String,
    },
}

/// What the runtime must do after a transition is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "command")]
pub enum Command {
    /// A task or notice opened: tell its assignees.
    OpenTask {
        /// The task id.
        task: String,
        /// Its step.
        step: String,
    },
    /// A task's deadline became known (a notice was received).
    UpdateTask {
        /// The task id.
        task: String,
    },
    /// A task or notice closed.
    CloseTask {
        /// The task id.
        task: String,
    },
    /// Store a timer.
    ScheduleTimer {
        /// The timer.
        timer: TimerState,
    },
    /// Drop a timer.
    CancelTimer {
        /// The timer id.
        timer: String,
    },
    /// Send a notification (through the outbox).
    Notify {
        /// The event name (`task_opened`, `reminder`, `escalated`, …).
        event: String,
        /// The step concerned.
        step: Option<String>,
        /// The task concerned.
        task: Option<String>,
        /// The recipients: person or agency ids, or `role:ID` for role holders.
        to: Vec<String>,
        /// The channel: a notification sent by email and SMS is two
        /// commands, so each is delivered and retried on its own.
        channel: Channel,
        /// The template id.
        template: String,
    },
    /// Render a document.
    RenderDocument {
        /// The document id.
        document: String,
        /// The step it belongs to.
        step: String,
    },
    /// Start a child instance for a `call` step.
    StartChild {
        /// The child's id, `PARENT-STEP-REVISION`: fixed when the call is
        /// made, so starting it again (a replay after a crash, a second
        /// engine process) finds the id taken instead of starting another.
        child: String,
        /// The calling step.
        step: String,
        /// The called process.
        process: String,
        /// Its profile.
        profile: Option<String>,
        /// Its variables.
        variables: BTreeMap<String, serde_json::Value>,
    },
    /// Index this instance under a message name and key.
    AwaitMessage {
        /// The message name.
        name: String,
        /// The correlation key.
        key: String,
    },
    /// Remove the message index entry.
    StopAwaiting {
        /// The message name.
        name: String,
        /// The correlation key.
        key: String,
    },
}

/// One line of an instance's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who: a person or agency id, or `engine`.
    pub actor: String,
    /// What kind of event: `started`, `task_opened`, `completed`, `decided`,
    /// `expired`, `reminder`, `escalated`, `ended`, `cancelled`, …
    pub what: String,
    /// The step before.
    pub step_before: Option<String>,
    /// The step after.
    pub step_after: Option<String>,
    /// The variables changed, with their new values.
    pub changed: BTreeMap<String, serde_json::Value>,
    /// A deadline computed by this event, with its explanation.
    pub deadline: Option<Deadline>,
    /// A human-readable note (a decision's `note`, a cancellation reason …).
    pub note: Option<String>,
    /// People the entry concerns (assignees, completer): for 一人一档 (RC-14).
    pub people: Vec<String>,
}

/// The result of applying an event.
#[derive(Clone, Debug)]
pub struct Transition {
    /// The new state.
    pub state: InstanceState,
    /// What to carry out once it is stored.
    pub commands: Vec<Command>,
    /// What to record.
    pub history: Vec<HistoryEntry>,
}

/// Why an event was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// A start names a variable the definition does not declare.
    #[error("unknown variable `{0}`: the process does not declare it")]
    UnknownVariable(String),
    /// A required variable is missing.
    #[error("missing required variable `{0}`")]
    MissingVariable(String),
    /// A value does not fit its variable's type.
    #[error("variable `{name}`: {why}")]
    BadValue {
        /// The variable.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The profile does not exist.
    #[error("unknown profile `{0}`")]
    UnknownProfile(String),
    /// No task with that id.
    #[error("no task `{0}` in this instance")]
    UnknownTask(String),
    /// The task is already closed.
    #[error("task `{task}` is already closed ({outcome} at {at})")]
    TaskClosed {
        /// The task.
        task: String,
        /// How it closed.
        outcome: String,
        /// When, in Beijing time.
        at: String,
    },
    /// The step has no such outcome.
    #[error("step `{step}` has no outcome `{outcome}`; outcomes: {known}")]
    UnknownOutcome {
        /// The step.
        step: String,
        /// The outcome given.
        outcome: String,
        /// The outcomes it has.
        known: String,
    },
    /// A form field the outcome requires is missing.
    #[error("outcome `{outcome}` requires the field `{field}`")]
    MissingField {
        /// The outcome.
        outcome: String,
        /// The field.
        field: String,
    },
    /// A variable that is not a field of the outcome.
    #[error("`{field}` is not a field of outcome `{outcome}`")]
    NotAField {
        /// The outcome.
        outcome: String,
        /// The variable given.
        field: String,
    },
    /// A guard of the outcome does not hold.
    #[error("{message}{}", rule.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    GuardFailed {
        /// The guard's message.
        message: String,
        /// The rule it enforces.
        rule: Option<String>,
    },
    /// An `at_least` period has not yet run.
    #[error("the minimum period of `{step}` runs until {until}; it cannot be completed before")]
    TooEarly {
        /// The step.
        step: String,
        /// The cut-off, in Beijing time.
        until: String,
    },
    /// Fewer people hold the role than the task requires.
    #[error("step `{step}` needs at least {min} assignees, found {found}{}", if *min > 1 { " (XT-13)" } else { "" })]
    TooFewAssignees {
        /// The step.
        step: String,
        /// The minimum.
        min: u32,
        /// How many there are.
        found: usize,
    },
    /// A CEL expression failed at run time.
    #[error("expression `{expr}` failed: {why}")]
    Expression {
        /// The expression.
        expr: String,
        /// Why.
        why: String,
    },
    /// The instance has ended.
    #[error("instance `{0}` has ended")]
    Ended(String),
    /// The event does not apply (e.g. a message no step waits for).
    #[error("{0}")]
    NotApplicable(String),
}
