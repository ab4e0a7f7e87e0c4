//! duban's engine: the process language, legal time, and (to come) the
//! deterministic core that advances process instances.
//!
//! Layout:
//! - [`calendar`]: legal periods counted on the official holiday calendar;
//!   pure, reads no clock.
//! - [`definition`]: the process definition language: YAML read in two
//!   stages (raw serde structs, then a checked [`definition::Definition`]),
//!   with diagnostics that carry file, line, column and document path.
//!
//! The engine knows nothing of email, HTTP or terminals: those live in
//! `notifiers/` and `admin-cli/`, which depend on this crate, never the
//! other way round.

pub mod calendar;
pub mod definition;
pub mod runtime;
pub mod scheduler;
pub mod service;
pub mod simulate;
pub mod store;
