//! duban's deterministic core: the process language, legal time, and the
//! state machine that advances process instances.
//!
//! Layout:
//! - [`calendar`]: legal periods counted on the official holiday calendar;
//!   pure, reads no clock (`calendar::files` is the one part that reads the
//!   calendar folder).
//! - [`definition`]: the process definition language: YAML read in two
//!   stages (raw serde structs, then a checked [`definition::Definition`]),
//!   with diagnostics that carry file, line, column and document path.
//! - [`runtime`]: `(state, event, now) → (state, commands, history)`, one
//!   pure function; the directory of people and agencies it reads.
//! - [`schema`]: the JSON Schemas of the YAML files, generated from the
//!   raw types the loaders read, for editors (`duban schema`).
//! - [`yaml`]: every YAML text is parsed through it, with its nesting
//!   bounded before the parser can overflow the stack.
//!
//! This crate depends on no database, async runtime, email or HTTP crate:
//! the compiler, not discipline, keeps I/O out of the core. The store, the
//! service, the scheduler and the simulator (crate `duban-engine`) sit
//! above it.

pub mod calendar;
pub mod definition;
pub mod runtime;
pub mod schema;
pub mod yaml;
