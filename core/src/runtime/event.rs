//! Events in, commands out: the protocol between the core and the runtime
//! that stores and carries out its transitions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::history::HistoryEntry;
use super::state::{InstanceState, TimerState};
use crate::definition::{Channel, Event as RuleEvent};

/// Something that happens to an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A notice's email reached the recipient's mail server (the SMTP
    /// server accepted it): a `deemed_receipt` period starts.
    Delivered {
        /// The notice's task id.
        task: String,
    },
    /// A recusal (回避) is requested on a task: by the person themself (a
    /// declared conflict) or by a supervised party of the instance.
    RequestRecusal {
        /// The task id.
        task: String,
        /// Who is to be recused.
        person: String,
        /// Why.
        reason: String,
        /// Who asks.
        actor: String,
    },
    /// A holder of the task's `recusal.decided_by` role decides a request.
    DecideRecusal {
        /// The task id.
        task: String,
        /// Whose recusal.
        person: String,
        /// Granted or refused.
        granted: bool,
        /// Who decides.
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
        /// Who sent it, when a person did (through the API or `duban
        /// message --as`); the history line names them, else `engine`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sender: Option<String>,
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
        /// The child (needed when a `for_each` call started several).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        child: Option<String>,
        /// The child's variables as it ended (what `outputs:` copies).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        variables: BTreeMap<String, serde_json::Value>,
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
    /// Set variables by hand (an administrator repairing an instance's
    /// data, typically before [`Event::Retry`]). Allowed on a stuck instance.
    SetVariables {
        /// The variables, checked against their declared types.
        variables: BTreeMap<String, serde_json::Value>,
        /// Who.
        actor: String,
    },
    /// Give open task `task` to other people: an administrator's repair
    /// when its assignee left (removed from the directory, on leave). Each
    /// must be a person of the directory who may do the step (holding its
    /// role, within its unit), the task stays what it was (deadline,
    /// reminders), and the history names who reassigned it and why.
    Reassign {
        /// The task id.
        task: String,
        /// The people it goes to.
        to: Vec<String>,
        /// Why.
        reason: String,
        /// Who.
        actor: String,
    },
    /// Apply again the event that made the instance stuck.
    Retry {
        /// Who.
        actor: String,
    },
}

impl Event {
    /// Whether the engine itself produces the event (a timer, a child's
    /// result, a recount), so no person is there to read a refusal: a
    /// fault met applying it makes the instance stuck.
    pub fn is_engine_driven(&self) -> bool {
        matches!(
            self,
            Event::TimerFired { .. }
                | Event::ChildEnded { .. }
                | Event::Recompute
                | Event::Delivered { .. }
        )
    }

    /// A short description for history and logs.
    pub fn describe(&self) -> String {
        match self {
            Event::Start { .. } => "the start".into(),
            Event::Complete { task, outcome, .. } => {
                format!("completing `{task}` with `{outcome}`")
            }
            Event::Receive { task, .. } => format!("the receipt of `{task}`"),
            Event::Delivered { task } => format!("the delivery of `{task}`"),
            Event::RequestRecusal { task, person, .. } => {
                format!("the recusal of `{person}` from `{task}`")
            }
            Event::DecideRecusal { task, person, .. } => {
                format!("the decision on the recusal of `{person}` from `{task}`")
            }
            Event::Message { name, key, .. } => format!("message `{name}` ({key})"),
            Event::TimerFired { timer } => format!("timer `{timer}`"),
            Event::Reassign { task, to, .. } => {
                format!("reassigning `{task}` to {}", to.join(", "))
            }
            Event::ChildEnded { step, result, .. } => {
                format!("the result `{result}` of the call `{step}`")
            }
            Event::Recompute => "the recount of provisional deadlines".into(),
            Event::Cancel { .. } => "the cancellation".into(),
            Event::SetVariables { .. } => "setting variables".into(),
            Event::Retry { .. } => "the retry".into(),
        }
    }
}

/// What a notification is about: one of the rule events of the language,
/// or the notice itself going to its recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A notice's own message, with its answer link, to its recipient.
    Notice,
    /// See [`RuleEvent::InstanceStarted`].
    InstanceStarted,
    /// See [`RuleEvent::TaskOpened`].
    TaskOpened,
    /// See [`RuleEvent::TaskCompleted`].
    TaskCompleted,
    /// See [`RuleEvent::NoticeSent`].
    NoticeSent,
    /// See [`RuleEvent::NoticeAnswered`].
    NoticeAnswered,
    /// See [`RuleEvent::Reminder`].
    Reminder,
    /// See [`RuleEvent::Expired`].
    Expired,
    /// See [`RuleEvent::Escalated`].
    Escalated,
    /// See [`RuleEvent::InstanceEnded`].
    InstanceEnded,
    /// See [`RuleEvent::InstanceCancelled`].
    InstanceCancelled,
    /// A recusal was requested: its deciders are told (`recusal.template`).
    RecusalRequested,
}

impl From<RuleEvent> for NotifyEvent {
    fn from(e: RuleEvent) -> Self {
        match e {
            RuleEvent::InstanceStarted => NotifyEvent::InstanceStarted,
            RuleEvent::TaskOpened => NotifyEvent::TaskOpened,
            RuleEvent::TaskCompleted => NotifyEvent::TaskCompleted,
            RuleEvent::NoticeSent => NotifyEvent::NoticeSent,
            RuleEvent::NoticeAnswered => NotifyEvent::NoticeAnswered,
            RuleEvent::Reminder => NotifyEvent::Reminder,
            RuleEvent::Expired => NotifyEvent::Expired,
            RuleEvent::Escalated => NotifyEvent::Escalated,
            RuleEvent::InstanceEnded => NotifyEvent::InstanceEnded,
            RuleEvent::InstanceCancelled => NotifyEvent::InstanceCancelled,
        }
    }
}

impl NotifyEvent {
    /// Its snake_case name (as in `on:` of a notification rule).
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Notice => "notice",
            NotifyEvent::InstanceStarted => "instance_started",
            NotifyEvent::TaskOpened => "task_opened",
            NotifyEvent::TaskCompleted => "task_completed",
            NotifyEvent::NoticeSent => "notice_sent",
            NotifyEvent::NoticeAnswered => "notice_answered",
            NotifyEvent::Reminder => "reminder",
            NotifyEvent::Expired => "expired",
            NotifyEvent::Escalated => "escalated",
            NotifyEvent::InstanceEnded => "instance_ended",
            NotifyEvent::InstanceCancelled => "instance_cancelled",
            NotifyEvent::RecusalRequested => "recusal_requested",
        }
    }
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
    /// A task's deadline became known (a notice was received), or its
    /// assignees changed (a recusal granted): the store rewrites its row.
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
        /// What it is about.
        event: NotifyEvent,
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
        /// The task it was issued for (an item of a `for_each` step is
        /// rendered with its own item); the step's latest when `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<String>,
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
        /// The child's call depth (the caller's plus one).
        #[serde(default)]
        depth: u32,
        /// The version of `process` the caller's transition tried the
        /// start on, and the child runs on (`None` in rows written before).
        #[serde(default)]
        version: Option<u32>,
    },
    /// Send a message to the instances waiting for it (a `send_message`
    /// step): the store writes a `send_message` outbox row in the same
    /// transaction, and the engine delivers it from there.
    SendMessage {
        /// The message name.
        name: String,
        /// The correlation keys, one message each.
        keys: Vec<String>,
        /// The variables it carries.
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
    /// The instance completed: if a `call` started it, its result goes to
    /// the parent. The store writes a `child_ended` outbox row in the same
    /// transaction (when the instance has a parent), so the result cannot
    /// be lost between the child's commit and the parent's.
    TellParent {
        /// The end's result.
        result: String,
    },
    /// Cancel a child a `call` started that is no longer waited for: the
    /// caller ended, was cancelled, or its `for_each` completed without it.
    /// The store writes a `cancel_child` outbox row in the transaction, so
    /// a crash before the engine carries it out only delays it.
    CancelChild {
        /// The child instance.
        child: String,
        /// Why, for the child's history.
        reason: String,
        /// Who: the person who cancelled the caller, or `engine`.
        actor: String,
    },
    /// Record a fact about a person or agency (a `record:` entry): the
    /// store writes it in the transition's transaction.
    RecordFact {
        /// The fact.
        fact: crate::runtime::facts::Fact,
    },
    /// The instance is stuck: its timers must not be claimed until a retry.
    HoldTimers,
    /// A retry: the instance's held timers may be claimed again.
    ReleaseTimers,
    /// A numbered document is issued: the store takes the next number of
    /// counter `counter` in the transition's own transaction (a refused or
    /// rolled-back transition takes none) and puts `format` with `{n}`
    /// replaced by it into variable `variable` of the stored state, before
    /// the document is rendered from it.
    AssignNumber {
        /// The variable (the series' id).
        variable: String,
        /// The counter: the pattern with its year filled in, so each year
        /// and each office's prefix counts from 1.
        counter: String,
        /// The number's text, `{n}` still to fill.
        format: String,
    },
    /// The instance moved to another version of its definition (`duban
    /// migrate apply`): the store rewrites the instance's version and the
    /// step of its task rows and of the children its calls wait on.
    Migrate {
        /// The version it ran on.
        from: u32,
        /// The version it runs on now.
        to: u32,
        /// Steps whose id changed, old → new.
        steps: Vec<(String, String)>,
    },
}

impl Command {
    /// The task of a notice's own message (`Notify` of [`NotifyEvent::Notice`]):
    /// what is delivered once its email reaches the recipient's server.
    pub fn notice_task(&self) -> Option<&str> {
        match self {
            Command::Notify {
                event: NotifyEvent::Notice,
                task: Some(task),
                ..
            } => Some(task),
            _ => None,
        }
    }
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
