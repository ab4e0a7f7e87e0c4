//! Durable storage of definitions, instances, tasks, timers, outbox and
//! history, behind the [`Store`] trait.
//!
//! One transaction per applied event: the instance's new state, its task
//! rows, timers, outbox rows and history rows commit together or not at all
//! ([`Store::commit`]). Concurrency is optimistic: a transition computed from
//! revision N is stored only over revision N; otherwise the commit fails
//! with [`StoreError::Conflict`] and nothing is written.
//!
//! [`sql::SqlStore`] implements the trait once for SQLite (one file, WAL;
//! the default) and PostgreSQL (a `postgres://` URL), through sqlx's `Any`
//! driver; `directory` reads the people and agencies files.
//! [`memory::MemoryStore`] implements it in memory, for the simulator and
//! tests, and passes the same conformance suite.

pub use duban_core::runtime::directory_file as directory;
pub mod backup;
pub mod memory;
pub mod sql;
pub mod sqlite_writer;
pub mod writes;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::runtime::directory::MemoryDirectory;
use crate::runtime::{Command, HistoryEntry, InstanceState, TaskKind, Transition};

pub use memory::MemoryStore;
pub use sql::SqlStore;

/// Why a store operation failed. Messages never carry raw SQL.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// Another transition was stored first; reload and try again.
    #[error("conflict: instance `{0}` was changed concurrently; reload it and try again")]
    Conflict(String),
    /// The same definition version was deployed with other content.
    #[error("definition `{id}` version {version} is already deployed with different content; raise `version:` to deploy the change")]
    VersionChanged {
        /// The definition.
        id: String,
        /// The version.
        version: u32,
    },
    /// No such row.
    #[error("{0} not found")]
    NotFound(String),
    /// A fault injected by a test between two statements.
    #[error("injected fault after {0} statements")]
    Injected(usize),
    /// The database reported an error (connection, disk full, constraint …).
    #[error("database error: {0}")]
    Database(String),
    /// Stored data could not be read back.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// The owner of a stuck instance's timer rows: no engine process, so no
/// claim takes them until a retry releases them.
pub(crate) const HELD: &str = "held (instance stuck)";

/// A time as the stores keep it: milliseconds since the epoch (sqlx's `Any`
/// driver has no time type; the memory store keeps the same precision).
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The time of `ms`.
pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    use chrono::TimeZone;
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// Stored data that cannot be read back.
pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(match &e {
            sqlx::Error::Database(d) => d.message().to_string(),
            other => other.to_string(),
        })
    }
}

/// A deployed definition as stored.
#[derive(Clone, Debug, Serialize)]
pub struct StoredDefinition {
    /// Its id.
    pub id: String,
    /// Its version.
    pub version: u32,
    /// The content hash (YAML and templates).
    pub hash: String,
    /// The YAML text.
    #[serde(skip)]
    pub source: String,
    /// The template files it read, as a JSON object path → text.
    #[serde(skip)]
    pub files: String,
    /// The file it was deployed from.
    pub file: String,
    /// When.
    pub deployed_at: DateTime<Utc>,
}

/// The latest version of a deployed definition, without its texts: what
/// the scheduler reads at every round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DefinitionHead {
    /// Its id.
    pub id: String,
    /// Its latest version.
    pub version: u32,
    /// When that version was deployed.
    pub deployed_at: DateTime<Utc>,
}

/// What a deploy did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deployed {
    /// A new version was stored.
    New,
    /// The same content was already deployed: nothing stored.
    Unchanged,
}

/// A row of `duban instances`.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceRow {
    /// Id.
    pub id: String,
    /// Definition id.
    pub definition: String,
    /// Definition version.
    pub version: u32,
    /// Profile.
    pub profile: Option<String>,
    /// `running`, `completed`, `cancelled` or `stuck`.
    pub status: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// A bearer token of the JSON API, as stored: its secret only as a hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ApiToken {
    /// The public part of the token, which names it (`duban token revoke ID`).
    pub id: String,
    /// The SHA-256 of its secret, hex.
    #[serde(skip_serializing)]
    pub hash: String,
    /// The person it acts as.
    pub person: Option<String>,
    /// The role whose tasks it reads (a role token completes nothing).
    pub role: Option<String>,
    /// What it is for.
    pub note: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; refused from then on.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A row of `duban tasks`.
#[derive(Clone, Debug, Serialize)]
pub struct TaskRow {
    /// Task id.
    pub id: String,
    /// Instance id.
    pub instance: String,
    /// Step id.
    pub step: String,
    /// Task or notice.
    pub kind: TaskKind,
    /// Assignee ids.
    pub assignees: Vec<String>,
    /// When it opened.
    pub opened_at: DateTime<Utc>,
    /// Its cut-off, if it has a deadline.
    pub due: Option<DateTime<Utc>>,
    /// Its last day.
    pub last_day: Option<String>,
}

/// Which tasks to list.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    /// Only those assigned to this person or agency.
    pub assignee: Option<String>,
    /// Only those whose assignees hold this role (resolved through the directory).
    pub role_holders: Option<Vec<String>>,
    /// Only those past their cut-off at this instant.
    pub overdue_at: Option<DateTime<Utc>>,
}

/// A history row with its instance.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryRow {
    /// The instance.
    pub instance: String,
    /// The entry.
    #[serde(flatten)]
    pub entry: HistoryEntry,
}

/// What an outbox row asks for; stored by its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    /// A notification by email (a `Notify` command).
    Email,
    /// A notification by SMS (a `Notify` command).
    Sms,
    /// A document to render (a `RenderDocument` command).
    RenderDocument,
    /// A called child to start (a `StartChild` command).
    StartChild,
    /// An ended child's result to hand to its parent (a `TellParent` command).
    ChildEnded,
    /// A message to deliver to the instances waiting for it (a
    /// `SendMessage` command).
    SendMessage,
    /// A called child no longer waited for, to cancel (a `CancelChild`
    /// command).
    CancelChild,
}

impl OutboxKind {
    /// Every kind, in the order `serve` drains them.
    pub const ALL: [OutboxKind; 7] = [
        OutboxKind::StartChild,
        OutboxKind::ChildEnded,
        OutboxKind::SendMessage,
        OutboxKind::CancelChild,
        OutboxKind::RenderDocument,
        OutboxKind::Email,
        OutboxKind::Sms,
    ];

    /// The name it is stored as.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Email => "email",
            OutboxKind::Sms => "sms",
            OutboxKind::RenderDocument => "render_document",
            OutboxKind::StartChild => "start_child",
            OutboxKind::ChildEnded => "child_ended",
            OutboxKind::SendMessage => "send_message",
            OutboxKind::CancelChild => "cancel_child",
        }
    }

    /// The kind stored as `s`.
    pub fn parse(s: &str) -> Option<OutboxKind> {
        OutboxKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The outbox row a command is written as in its transition's
    /// transaction, if it is one (both stores ask this).
    pub fn of_command(cmd: &Command) -> Option<OutboxKind> {
        Some(match cmd {
            Command::Notify { channel, .. } => OutboxKind::of_channel(*channel),
            Command::RenderDocument { .. } => OutboxKind::RenderDocument,
            Command::StartChild { .. } => OutboxKind::StartChild,
            Command::SendMessage { .. } => OutboxKind::SendMessage,
            Command::CancelChild { .. } => OutboxKind::CancelChild,
            _ => return None,
        })
    }

    /// The kind of a channel's notifications.
    pub fn of_channel(c: crate::definition::Channel) -> OutboxKind {
        match c {
            crate::definition::Channel::Email => OutboxKind::Email,
            crate::definition::Channel::Sms => OutboxKind::Sms,
        }
    }
}

impl std::fmt::Display for OutboxKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where an outbox row is in its life. Rows are never deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting to be carried out (or retried).
    Pending,
    /// Carried out.
    Sent,
    /// Given up after the retry policy ran out, or refused; `duban outbox retry` revives it.
    Dead,
    /// Not carried out because what it was about no longer holds when its
    /// turn came (a "new task" email for a task closed before it went out);
    /// `last_error` says why.
    Dropped,
}

impl OutboxStatus {
    /// The name it is stored as.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Dead => "dead",
            OutboxStatus::Dropped => "dropped",
        }
    }

    /// The status stored as `s`.
    pub fn parse(s: &str) -> Option<OutboxStatus> {
        [
            OutboxStatus::Pending,
            OutboxStatus::Sent,
            OutboxStatus::Dead,
            OutboxStatus::Dropped,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A row of the outbox: one notification (or other side effect) to carry out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutboxRow {
    /// Its id, stable for its whole life: the idempotency key derives from it.
    pub id: i64,
    /// The instance that caused it.
    pub instance: String,
    /// What it asks for.
    pub kind: OutboxKind,
    /// The command, as JSON.
    pub payload: String,
    /// Where it is in its life.
    pub status: OutboxStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When it may be tried next.
    pub next_attempt: DateTime<Utc>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
}

impl OutboxRow {
    /// The document a `render_document` row issues, if it is one.
    pub fn issued_document(&self) -> Option<IssuedDocument> {
        match serde_json::from_str::<Command>(&self.payload).ok()? {
            Command::RenderDocument {
                document,
                step,
                task,
            } => Some(IssuedDocument {
                document,
                step,
                task,
            }),
            _ => None,
        }
    }
}

/// What a `render_document` row names: which document, issued by which
/// step, for which task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedDocument {
    /// The document id.
    pub document: String,
    /// The step that issued it.
    pub step: String,
    /// The task it was issued for, when the row names one.
    pub task: Option<String>,
}

impl IssuedDocument {
    /// Borrowed, as the renderers take it.
    pub fn issued(&self) -> crate::simulate::Issued<'_> {
        crate::simulate::Issued {
            document: &self.document,
            step: &self.step,
            task: self.task.as_deref(),
        }
    }
}

/// What the store holds at an instant, for `/metrics`: counts an operator
/// watches (instances by status, open and overdue tasks, timers due and the
/// oldest of them, outbox rows by kind and status).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Instances by status (`running`, `completed`, `cancelled`, `stuck`).
    pub instances: Vec<(String, u64)>,
    /// Open tasks and notices.
    pub open_tasks: u64,
    /// Of them, those past their deadline.
    pub overdue_tasks: u64,
    /// Timers waiting, due or not (not those held for a stuck instance).
    pub timers: u64,
    /// Timers due now (not yet applied).
    pub timers_due: u64,
    /// When the oldest due timer fell due.
    pub oldest_due: Option<DateTime<Utc>>,
    /// Outbox rows by (kind, status).
    pub outbox: Vec<(String, String, u64)>,
}

/// A claimed timer row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueTimer {
    /// The timer id.
    pub id: String,
    /// Its instance.
    pub instance: String,
    /// When it fell due.
    pub due: DateTime<Utc>,
}

/// Durable storage. Implementations pass `tests/`'s conformance suite.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// Stores each definition version unless the same content is there
    /// already, all in one transaction: a version that exists with other
    /// content refuses the whole deploy, and nothing is stored.
    async fn deploy(&self, defs: &[StoredDefinition]) -> Result<Vec<Deployed>, StoreError>;
    /// A definition at a version, or its latest version.
    async fn definition(
        &self,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredDefinition>, StoreError>;
    /// Every deployed definition version.
    async fn definitions(&self) -> Result<Vec<StoredDefinition>, StoreError>;
    /// The latest deployed version of a definition, without its text.
    async fn latest_version(&self, id: &str) -> Result<Option<u32>, StoreError>;
    /// The latest version of every deployed definition, by id, without
    /// their texts.
    async fn definition_heads(&self) -> Result<Vec<DefinitionHead>, StoreError>;
    /// Every document-number counter (a numbering pattern with its year
    /// filled in) and the last number it gave, by counter.
    async fn numbers(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// The id the next start numbered by the counter
    /// ([`Store::commit_start`]) will take, unless another takes it first.
    /// Reading it takes nothing.
    async fn next_instance_id(&self) -> Result<String, StoreError>;
    /// An instance's state.
    async fn load(&self, id: &str) -> Result<Option<InstanceState>, StoreError>;
    /// Stores a transition atomically. `prev_revision` is the revision it was
    /// computed from (`None` for a start). Every command the store carries
    /// out (task rows, timer rows, message index, outbox rows, the held
    /// timers of a stuck instance, the `child_ended` row of a called child
    /// that completed) is written in the same transaction.
    async fn commit(
        &self,
        prev_revision: Option<u64>,
        t: &Transition,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Starts an instance under the next number of the counter: takes the
    /// number in a transaction, builds the start's transition for it
    /// (`build`, given the id) and stores it as [`Store::commit`] does, in
    /// the same transaction. A start that fails (its `build` refused, a
    /// full disk) takes no number; concurrent starts wait for each other.
    async fn commit_start<E: From<StoreError> + Send + 'static>(
        &self,
        now: DateTime<Utc>,
        build: impl FnOnce(String) -> Result<Transition, E> + Send + 'static,
    ) -> Result<Transition, E>;
    /// Instances, optionally by status and definition.
    async fn instances(
        &self,
        status: Option<&str>,
        definition: Option<&str>,
    ) -> Result<Vec<InstanceRow>, StoreError>;
    /// Open tasks.
    async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRow>, StoreError>;
    /// An instance's history, oldest first.
    async fn history(&self, instance: &str) -> Result<Vec<HistoryEntry>, StoreError>;
    /// Everything recorded about a person across all instances (RC-14).
    async fn person_history(&self, person: &str) -> Result<Vec<HistoryRow>, StoreError>;
    /// The notices dispatched in `q`'s period, of its process and step when
    /// it names them, oldest first (`runtime::reports`).
    async fn notices(
        &self,
        q: &crate::runtime::reports::ReportQuery,
    ) -> Result<Vec<crate::runtime::reports::NoticeRecord>, StoreError>;
    /// Every fact recorded about any of `subjects` (people or agencies), in
    /// the order they were recorded (`runtime::facts`).
    async fn facts(
        &self,
        subjects: &std::collections::BTreeSet<String>,
    ) -> Result<Vec<crate::runtime::facts::Fact>, StoreError>;
    /// The instances waiting for a message.
    async fn awaiting(&self, name: &str, key: &str) -> Result<Vec<String>, StoreError>;
    /// Stores a new API token.
    async fn create_token(&self, t: &ApiToken) -> Result<(), StoreError>;
    /// The API token with this id, revoked or not.
    async fn token(&self, id: &str) -> Result<Option<ApiToken>, StoreError>;
    /// Every API token, oldest first.
    async fn tokens(&self) -> Result<Vec<ApiToken>, StoreError>;
    /// Revokes a token at `at`; false if there is none with that id or it
    /// was revoked already.
    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Replaces the directory with these people and agencies, atomically.
    async fn import_directory(&self, dir: &MemoryDirectory) -> Result<(), StoreError>;
    /// The whole directory.
    async fn directory(&self) -> Result<MemoryDirectory, StoreError>;
    /// The ids of an instance's pending timer rows, sorted.
    async fn pending_timers(&self, instance: &str) -> Result<Vec<String>, StoreError>;
    /// Records that `child` was started by `parent`'s `call` step `step`.
    async fn link_child(&self, child: &str, parent: &str, step: &str) -> Result<(), StoreError>;
    /// The parent instance and calling step of `child`, if it was called.
    async fn parent_of(&self, child: &str) -> Result<Option<(String, String)>, StoreError>;
    /// Claims up to `limit` timers due at `now`, oldest first, that no live
    /// claim holds: they are leased to `owner` until `lease_until`. Several
    /// engine processes may claim at once; none gets a timer another holds.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<DueTimer>, StoreError>;
    /// Deletes a timer row whose timer is no longer in its instance's state.
    async fn drop_timer(&self, id: &str) -> Result<(), StoreError>;
    /// The earliest instant any timer may be claimed: its due time, or for
    /// a timer under a claim, when the claim's lease ends. The timers of
    /// stuck instances (held until a retry) are left out. So a process
    /// waits for the lease of a claim it cannot take instead of spinning.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Gives up the claims on timers held by `owner` (every claim when
    /// `None`: a process that knows it is the only one, such as `serve` on
    /// its SQLite file, takes over the claims of a crashed predecessor),
    /// so the timers can be claimed at once. Held timers stay held.
    async fn release_timers(&self, owner: Option<&str>) -> Result<u64, StoreError>;
    /// Every instance that has a provisional timer.
    async fn provisional_instances(&self) -> Result<Vec<String>, StoreError>;
    /// The last occurrence processed for a definition's schedule entry.
    async fn cron_cursor(
        &self,
        definition: &str,
        entry: u32,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Moves a cursor forward (never backward).
    async fn advance_cron_cursor(
        &self,
        definition: &str,
        entry: u32,
        last: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Claims up to `limit` pending outbox rows of `kind` due at `now`, oldest first.
    async fn claim_outbox(
        &self,
        kind: OutboxKind,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<OutboxRow>, StoreError>;
    /// Gives up the claims on pending outbox rows `ids` (every claim when
    /// `None`), so they can be claimed at once.
    async fn release_outbox(&self, ids: Option<&[i64]>) -> Result<u64, StoreError>;
    /// Marks a row sent.
    async fn outbox_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Marks a row dropped: not carried out, for `reason`.
    async fn outbox_dropped(&self, id: i64, reason: &str) -> Result<(), StoreError>;
    /// Records a failed attempt: retry at `retry_at`, or dead when `None`.
    async fn outbox_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// Outbox rows, optionally by status, oldest first.
    async fn outbox(&self, status: Option<OutboxStatus>) -> Result<Vec<OutboxRow>, StoreError>;
    /// Outbox rows of one instance, oldest first: its documents and messages
    /// as issued (the case file, `duban case-file`).
    async fn outbox_of(&self, instance: &str) -> Result<Vec<OutboxRow>, StoreError>;
    /// Makes a dead row pending again, to be sent at `now`; false if no dead row has that id.
    async fn outbox_retry(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// How many outbox rows are pending (notifications to send).
    async fn outbox_pending(&self) -> Result<u64, StoreError>;
    /// The counts of [`Stats`] at `now`.
    async fn stats(&self, now: DateTime<Utc>) -> Result<Stats, StoreError>;
}
