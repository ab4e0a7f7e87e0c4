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
//! Layout: [`state`] (the instance and its tasks, waits and timers),
//! [`event`] (events in; commands and history out; errors), `apply.rs` (the
//! step semantics), [`values`] (typing the values events carry, and the CEL
//! context), [`directory`] (the people and agencies the core may look up).

mod apply;
pub mod directory;
pub mod directory_file;
pub mod event;
pub mod state;
pub mod values;

pub use apply::{apply, Env};
pub use directory::{Agency, Directory, Person};
pub use event::{Command, EngineError, Event, HistoryEntry, Transition};
pub use state::{InstanceState, Status, TaskState, TimerKind, TimerState};

#[cfg(test)]
mod tests;
