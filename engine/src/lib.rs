//! duban's engine: the deterministic core (re-exported from `duban-core`)
//! with what carries it out — storage, the service, the scheduler and the
//! simulator.
//!
//! Layout:
//! - [`calendar`], [`definition`], [`runtime`], [`schema`]: the core, from
//!   `duban-core` (no I/O, no clock; see that crate).
//! - [`store`]: the [`store::Store`] trait, its SQL implementation
//!   (SQLite, PostgreSQL) and the in-memory one the simulator uses.
//! - [`service`]: [`service::Engine`], one call per user intent: load,
//!   apply, commit.
//! - [`migration`]: moving running instances to another version of their
//!   definition (`duban migrate`).
//! - [`scheduler`]: due timers and recurring starts, exactly once.
//! - [`outbox`]: the one worker loop and retry policy that carries out
//!   outbox rows of every kind.
//! - [`serve`]: the engine running by itself (what `duban serve` runs),
//!   with its clock and shutdown signal given by the caller.
//! - [`simulate`]: scenarios on a throwaway store with a virtual clock.
//!
//! The engine knows nothing of email, HTTP or terminals: those live in
//! `notifiers/` and `admin-cli/`, which depend on this crate, never the
//! other way round.

pub use duban_core::{calendar, definition, runtime, schema};

pub mod metrics;
pub mod migration;
pub mod outbox;
pub mod scheduler;
pub mod serve;
pub mod service;
pub mod simulate;
pub mod store;
