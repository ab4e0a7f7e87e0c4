//! The deterministic core: applying an event to an instance.
//!
//! `apply(env, state, event, now) → Transition { state, commands, history }`.
//! The core reads no clock (`now` is an argument), touches no database and
//! sends nothing: it returns *commands* (open a task, schedule a timer, send
//! a notification, render a document, start a child process) that a thin
//! runtime carries out, and *history* entries that the store records with
//! the new state in one transaction. An invalid event (completing a closed
//! task, an unknown outcome, a missing or mistyped form field) is an
//! [`EngineError`] and changes nothing.
//!
//! An engine-driven event (a timer, a child's result, a recount) that meets
//! a fault is not lost: the caller stores [`stuck`] instead, which keeps the
//! state from before the event, marks the instance [`Status::Stuck`] with
//! the fault's code, and holds its timers until [`Event::Retry`].
//!
//! Layout: [`state`] (the instance and its tasks, waits and timers),
//! [`event`] (events in, commands out), [`history`] (the lines recorded),
//! [`error`] (why an event is refused, with stable codes), `apply.rs` (the
//! dispatch on the event and what the step kinds share), `steps/` (one file
//! per step kind), `deadlines.rs` (counting, recounting, expiry and
//! reminders), `notify.rs` (notification rules), [`values`] (typing the
//! values events carry, and the CEL context), [`directory`] (the people and
//! agencies the core may look up), [`directory_file`] (reading them
//! from YAML or CSV), [`facts`] (facts about a person or agency,
//! recorded by one process and read by any) and [`reports`] (how the
//! notices of a period were answered, for `report` steps) and [`migrate`]
//! (moving a running instance to another version of its definition).

mod apply;
pub mod cel_dates;
mod deadlines;
pub mod directory;
pub mod directory_file;
pub mod error;
pub mod event;
pub mod facts;
pub mod history;
pub mod migrate;
mod notify;
pub mod reports;
pub mod state;
mod steps;
pub mod values;

pub use apply::{apply, stuck, Env, NoProcesses, Processes, MAX_CALL_DEPTH};
pub use directory::{Agency, Directory, Person};
pub use error::{EngineError, ErrorClass};
pub use event::{Command, Event, NotifyEvent, Transition};
pub use history::{HistoryEntry, HistoryKind};
pub use state::{InstanceState, Status, TaskKind, TaskState, TimerKind, TimerState};

#[cfg(test)]
mod tests;
