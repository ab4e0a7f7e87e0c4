//! Why the core refused an event, with a stable code per reason.
//!
//! Every variant has a code `R001`… that never changes meaning (listed in
//! `docs/runtime-errors.md`); messages start with it, so an administrator
//! can look it up. The variants fall in three classes ([`ErrorClass`]):
//!
//! - **refused**: the request is wrong (an unknown outcome, a missing form
//!   field, a guard that does not hold). The caller is told; nothing changes.
//! - **stale**: the event no longer applies (its timer was consumed, the
//!   instance ended). A timer row behind it is a leftover and may be dropped.
//! - **fault**: the definition or the instance's data cannot carry the event
//!   out (a notice without a recipient, a deadline counted from an unset
//!   date). Met while applying a timer, a child's result or a recount —
//!   where nobody waits for an answer — the instance becomes *stuck*
//!   ([`super::stuck`]) instead of the event vanishing.
//!
//! Which class an error is in depends only on its variant (a bad or missing
//! value is classed as refused: usually a person gave it). What the caller
//! does with a refused or faulty *engine-driven* event is the same (stuck),
//! because for those no person is there to read a refusal.

/// Why an event was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// A start or `set-var` names a variable the definition does not declare.
    #[error("R001 unknown variable `{0}`: the process does not declare it")]
    UnknownVariable(String),
    /// A required variable is missing, or a period is read from one that is unset.
    #[error("R002 missing required variable `{0}`")]
    MissingVariable(String),
    /// A value does not fit its variable's type.
    #[error("R003 variable `{name}`: {why}")]
    BadValue {
        /// The variable.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The profile does not exist.
    #[error("R004 unknown profile `{0}`")]
    UnknownProfile(String),
    /// No task with that id.
    #[error("R005 no task `{0}` in this instance")]
    UnknownTask(String),
    /// The task is already closed.
    #[error("R006 task `{task}` is already closed ({outcome} at {at})")]
    TaskClosed {
        /// The task.
        task: String,
        /// How it closed.
        outcome: String,
        /// When, in Beijing time.
        at: String,
    },
    /// The step has no such outcome.
    #[error("R007 step `{step}` has no outcome `{outcome}`; outcomes: {known}")]
    UnknownOutcome {
        /// The step.
        step: String,
        /// The outcome given.
        outcome: String,
        /// The outcomes it has.
        known: String,
    },
    /// A form field the outcome requires is missing.
    #[error("R008 outcome `{outcome}` requires the field `{field}`")]
    MissingField {
        /// The outcome.
        outcome: String,
        /// The field.
        field: String,
    },
    /// A variable that is not a field of the outcome (or of the message).
    #[error("R009 `{field}` is not a field of {outcome}")]
    NotAField {
        /// The outcome (`outcome X`) or message (`message M`).
        outcome: String,
        /// The variable given.
        field: String,
    },
    /// A guard of the outcome does not hold.
    #[error("R010 {message}{}", rule.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    GuardFailed {
        /// The guard's message.
        message: String,
        /// The rule it enforces.
        rule: Option<String>,
    },
    /// An `at_least` period has not yet run.
    #[error(
        "R011 the minimum period of `{step}` runs until {until}; it cannot be completed before"
    )]
    TooEarly {
        /// The step.
        step: String,
        /// The cut-off, in Beijing time.
        until: String,
    },
    /// Fewer people hold the role than the task requires.
    #[error("R012 step `{step}` needs at least {min} assignees, found {found}{}{hint}", if *min > 1 { " (XT-13)" } else { "" })]
    TooFewAssignees {
        /// The step.
        step: String,
        /// The minimum.
        min: u32,
        /// How many there are.
        found: usize,
        /// What to do about it (`: nobody in the directory holds role …`), or "".
        hint: String,
    },
    /// A CEL expression failed at run time.
    #[error("R013 expression `{expr}` failed: {why}")]
    Expression {
        /// The expression.
        expr: String,
        /// Why.
        why: String,
    },
    /// The instance has ended.
    #[error("R014 instance `{0}` has ended")]
    Ended(String),
    /// A notice's recipient resolves to nobody (an unset variable, a role nobody holds).
    #[error("R015 notice `{step}` has no recipient: its `to` names nobody")]
    NoRecipient {
        /// The notice step.
        step: String,
    },
    /// A deadline counts from a date variable that is not set.
    #[error(
        "R016 the deadline of `{step}` counts from (or ends on) `{variable}`, which is not set"
    )]
    StartUnset {
        /// The step whose deadline it is.
        step: String,
        /// The date variable.
        variable: String,
    },
    /// A profile parameter that should hold a period holds none.
    #[error("R017 profile parameter `{0}` has no period")]
    NoPeriod(String),
    /// Automatic steps loop without ever reaching a step that waits.
    #[error("R018 the process loops through automatic steps without waiting (at `{0}`)")]
    AutomaticLoop(String),
    /// No step of the instance waits for this message.
    #[error("R019 no instance waits for message `{name}` with key `{key}`")]
    NotAwaited {
        /// The message name.
        name: String,
        /// The correlation key.
        key: String,
    },
    /// Receipt of a notice was already recorded.
    #[error("R020 receipt of `{0}` is already recorded")]
    AlreadyReceived(String),
    /// The task's step has no outcomes to complete it with.
    #[error("R021 step `{0}` has no outcomes")]
    NoOutcomes(String),
    /// A child's result arrived for a step that no longer waits for it.
    #[error("R022 step `{0}` is not waiting for a child")]
    NotWaitingForChild(String),
    /// The timer is no longer pending: it fired already or was cancelled.
    #[error("R023 timer `{0}` is no longer pending")]
    TimerNotPending(String),
    /// A recount changed no deadline.
    #[error("R024 no provisional deadline changed")]
    NothingToRecount,
    /// A start for an id that exists.
    #[error("R025 instance `{0}` already exists")]
    Exists(String),
    /// An event for an instance that does not exist.
    #[error("R026 no such instance")]
    NoInstance,
    /// The instance is stuck; only `set-var`, `retry` and `cancel` apply.
    #[error("R027 instance `{instance}` is stuck ({code}: {message}); fix the cause, then `duban retry {instance}`")]
    Stuck {
        /// The instance.
        instance: String,
        /// The code of the fault that stuck it.
        code: String,
        /// Its message.
        message: String,
    },
    /// `retry` on an instance that is not stuck.
    #[error("R028 instance `{0}` is not stuck; there is nothing to retry")]
    NotStuck(String),
    /// Someone who is neither an assignee nor a holder of the task's role
    /// tried to act on it.
    #[error("R029 `{actor}` may not act on `{task}`: it is assigned to {assignees}")]
    NotPermitted {
        /// The task.
        task: String,
        /// Who tried.
        actor: String,
        /// Who may.
        assignees: String,
    },
    /// A `call` step's child cannot start (a required input missing, a
    /// mistyped one, the process not deployed …): the caller's transition
    /// is refused with it, so neither is written.
    #[error("R030 step `{step}` cannot start `{process}`: {why}")]
    CallCannotStart {
        /// The calling step.
        step: String,
        /// The called process.
        process: String,
        /// Why, with the child's own code.
        why: String,
    },
    /// Calls nest deeper than [`crate::runtime::MAX_CALL_DEPTH`]: a process
    /// that calls itself (or a cycle of processes) without a base case.
    #[error("R031 step `{step}` would start `{process}` {depth} calls deep (at most {max}): does the process call itself without end?")]
    CallTooDeep {
        /// The calling step.
        step: String,
        /// The called process.
        process: String,
        /// The depth the child would have.
        depth: u32,
        /// The bound.
        max: u32,
    },
    /// A `for_each` step was entered again while its items from before
    /// are still open (a parallel branch reaching it twice).
    #[error("R032 step `{0}` runs over its items already; it cannot be entered again until they are done")]
    ForEachRunning(String),
    /// A notice's delivery arrived for a task that no longer waits for it
    /// (closed, not a notice, or its delivery already recorded).
    #[error("R033 `{0}` is not a notice awaiting delivery")]
    NotAwaitingDelivery(String),
    /// A recusal on a task whose step has no `recusal:`, of someone not on
    /// it, asked twice, or decided when none is pending.
    #[error("R034 {0}")]
    Recusal(String),
    /// Someone whose recusal on the task is pending or granted tried to act on it.
    #[error("R035 `{actor}` may not act on `{task}`: {why}")]
    Recused {
        /// The task.
        task: String,
        /// Who tried.
        actor: String,
        /// Pending or granted, in words.
        why: String,
    },
    /// A `report` step's notices were not loaded for the event: the
    /// service loads them and applies the event again, so this reaches
    /// nobody unless the store fails to give them.
    #[error("R037 the notices report step `{0}` counts were not loaded")]
    ReportNotLoaded(String),
    /// A task cannot go to the people named.
    #[error("R038 task `{task}` cannot be reassigned: {why}")]
    CannotReassign {
        /// The task.
        task: String,
        /// Why, in words.
        why: String,
    },
    /// A `record:` entry's value cannot be a fact's.
    #[error("R036 fact `{fact}` cannot be recorded: {why}")]
    BadFact {
        /// The fact.
        fact: String,
        /// Why.
        why: String,
    },
}

/// How a caller treats an error; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is wrong; tell the caller.
    Refused,
    /// The event no longer applies; a timer row behind it is a leftover.
    Stale,
    /// The definition or data cannot carry the event out.
    Fault,
}

impl EngineError {
    /// The stable code, `R001`…
    pub fn code(&self) -> &'static str {
        use EngineError::*;
        match self {
            UnknownVariable(_) => "R001",
            MissingVariable(_) => "R002",
            BadValue { .. } => "R003",
            UnknownProfile(_) => "R004",
            UnknownTask(_) => "R005",
            TaskClosed { .. } => "R006",
            UnknownOutcome { .. } => "R007",
            MissingField { .. } => "R008",
            NotAField { .. } => "R009",
            GuardFailed { .. } => "R010",
            TooEarly { .. } => "R011",
            TooFewAssignees { .. } => "R012",
            Expression { .. } => "R013",
            Ended(_) => "R014",
            NoRecipient { .. } => "R015",
            StartUnset { .. } => "R016",
            NoPeriod(_) => "R017",
            AutomaticLoop(_) => "R018",
            NotAwaited { .. } => "R019",
            AlreadyReceived(_) => "R020",
            NoOutcomes(_) => "R021",
            NotWaitingForChild(_) => "R022",
            TimerNotPending(_) => "R023",
            NothingToRecount => "R024",
            Exists(_) => "R025",
            NoInstance => "R026",
            Stuck { .. } => "R027",
            NotStuck(_) => "R028",
            NotPermitted { .. } => "R029",
            CallCannotStart { .. } => "R030",
            CallTooDeep { .. } => "R031",
            ForEachRunning(_) => "R032",
            NotAwaitingDelivery(_) => "R033",
            Recusal(_) => "R034",
            Recused { .. } => "R035",
            BadFact { .. } => "R036",
            ReportNotLoaded(_) => "R037",
            CannotReassign { .. } => "R038",
        }
    }

    /// Which class the error is in.
    pub fn class(&self) -> ErrorClass {
        use EngineError::*;
        match self {
            Ended(_)
            | NotWaitingForChild(_)
            | TimerNotPending(_)
            | NothingToRecount
            | NotAwaitingDelivery(_)
            | NoInstance => ErrorClass::Stale,
            TooFewAssignees { .. }
            | Expression { .. }
            | NoRecipient { .. }
            | StartUnset { .. }
            | NoPeriod(_)
            | AutomaticLoop(_)
            | CallCannotStart { .. }
            | CallTooDeep { .. }
            | ForEachRunning(_)
            | BadFact { .. }
            | ReportNotLoaded(_) => ErrorClass::Fault,
            _ => ErrorClass::Refused,
        }
    }

    /// Whether the event no longer applies (see [`ErrorClass::Stale`]).
    pub fn is_stale(&self) -> bool {
        self.class() == ErrorClass::Stale
    }

    /// The message without its code.
    pub fn message(&self) -> String {
        let s = self.to_string();
        s.split_once(' ').map_or(s.clone(), |(_, m)| m.to_string())
    }
}
