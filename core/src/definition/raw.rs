//! Stage 1: the raw shape of a definition, exactly as written.
//!
//! These structs only say which keys exist and what type each value has;
//! they hold texts where the checked model will hold parsed periods, cron
//! schedules and CEL programs, and names where it will hold resolved
//! references. Nothing outside `definition` sees them. Every struct denies
//! unknown keys, so a misspelt key is an error rather than silently ignored.
//!
//! The top level and the id-keyed sections (`steps`, `variables`, …) are
//! walked by hand in `check.rs`, deserialising one entry at a time, so that
//! one bad step does not hide the problems of the others.

// The fields mirror the keys of the language one to one and are documented
// key by key in docs/process-language.md; repeating that here would drift.
#![allow(missing_docs)]

use indexmap::IndexMap;
use serde::Deserialize;

/// The keys allowed at the top level, in documentation order.
pub const TOP_KEYS: &[&str] = &[
    "id",
    "version",
    "name",
    "description",
    "rules",
    "roles",
    "parameters",
    "profiles",
    "default_profile",
    "variables",
    "start",
    "steps",
    "notifications",
    "documents",
    "templates",
    "schedule",
];

/// The step kinds, as written in `kind:`.
pub const STEP_KINDS: &[&str] = &[
    "task",
    "notice",
    "decision",
    "parallel",
    "join",
    "call",
    "send_message",
    "report",
    "wait_message",
    "wait_timer",
    "end",
];

/// A role the process refers to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// A typed variable of an instance.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVariable {
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub required: Option<bool>,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub values: Option<RawValues>,
    #[serde(default)]
    pub min_items: Option<u32>,
    #[serde(default)]
    pub max_items: Option<u32>,
}

/// An enum's `values:`: the list, or `profile.PARAM`, a parameter of type
/// `list<string>` whose value in the instance's profile is the list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawValues {
    List(Vec<String>),
    FromProfile(String),
}

/// A profile parameter: a named, typed slot each profile fills.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParameter {
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A jurisdiction profile: values for the parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub name: String,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub values: IndexMap<String, serde_json::Value>,
}

/// Who a task is assigned to, whom a notice goes to, or whom a notification reaches.
/// Exactly one key is given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParty {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub person: Option<String>,
    #[serde(default)]
    pub variable: Option<String>,
    #[serde(default)]
    pub assignee: Option<bool>,
    #[serde(default)]
    pub within: Option<String>,
}

/// A deadline, a minimum, or a timer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeadline {
    #[serde(default)]
    pub period: Option<String>,
    #[serde(default)]
    pub until: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub bound: Option<String>,
    #[serde(default)]
    pub include_start_day: Option<bool>,
    #[serde(default)]
    pub extend_on_rest_day: Option<bool>,
    #[serde(default)]
    pub cutoff: Option<String>,
    #[serde(default)]
    pub remind: Vec<String>,
    #[serde(default)]
    pub remind_at_any_hour: Option<bool>,
    #[serde(default)]
    pub on_expiry: Option<RawExpiry>,
}

/// What happens when a deadline expires.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpiry {
    #[serde(default)]
    pub goto: Option<String>,
    #[serde(default)]
    pub notify: Vec<String>,
    #[serde(default)]
    pub template: Option<String>,
}

/// A check that must hold before an outcome is accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuard {
    pub check: String,
    pub message: String,
    #[serde(default)]
    pub rule: Option<String>,
}

/// One possible result of a task or notice.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutcome {
    pub label: String,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub optional_fields: Vec<String>,
    #[serde(default)]
    pub set: IndexMap<String, String>,
    #[serde(default)]
    pub guards: Vec<RawGuard>,
    #[serde(default)]
    pub documents: Vec<String>,
    #[serde(default)]
    pub record: Vec<RawRecord>,
}

/// A `record:` entry: a fact about a person or agency.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    pub fact: String,
    pub about: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// Recusal (回避) on a task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecusal {
    pub decided_by: String,
    #[serde(default)]
    pub template: Option<String>,
}

/// `for_each:` on a task, notice or call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForEach {
    pub items: String,
    #[serde(rename = "as")]
    pub var: String,
    #[serde(default)]
    pub order: Option<String>,
    #[serde(default)]
    pub complete_when: Option<RawCompleteWhen>,
    #[serde(default)]
    pub collect: IndexMap<String, RawCollect>,
}

/// `complete_when:`: `all`, `any`, `{ at_least: N }` or a CEL condition.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawCompleteWhen {
    Text(String),
    AtLeast(RawAtLeast),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAtLeast {
    // A text: inside an untagged enum the YAML scalar arrives buffered as
    // a string, so the number is parsed by the checker.
    pub at_least: String,
}

/// One `collect:` entry: `{ outcome: ID }` or `{ field: NAME }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCollect {
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
}

/// `kind: task`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    #[serde(rename = "kind")]
    pub _kind: serde::de::IgnoredAny,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub assignee: RawParty,
    #[serde(default)]
    pub min_assignees: Option<u32>,
    pub outcomes: IndexMap<String, RawOutcome>,
    #[serde(default)]
    pub deadline: Option<RawDeadline>,
    #[serde(default)]
    pub documents: Vec<String>,
    #[serde(default)]
    pub recusal: Option<RawRecusal>,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub for_each: Option<RawForEach>,
}

/// `kind: notice`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotice {
    #[serde(rename = "kind")]
    pub _kind: serde::de::IgnoredAny,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub to: RawParty,
    pub template: String,
    #[serde(default)]
    pub documents: Vec<String>,
    pub outcomes: IndexMap<String, RawOutcome>,
    #[serde(default)]
    pub deadline: Option<RawDeadline>,
    #[serde(default)]
    pub deemed_receipt: Option<String>,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub for_each: Option<RawForEach>,
}

/// One branch of a decision.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBranch {
    pub when: String,
    pub goto: String,
    #[serde(default)]
    pub set: IndexMap<String, String>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub record: Vec<RawRecord>,
}

/// `kind: decision`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecision {
    #[serde(rename = "kind")]
    pub _kind: serde::de::IgnoredAny,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub branches: Vec<RawBranch>,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub join: Option<String>,
    #[serde(default)]
    pub rules: Vec<String>,
}

/// `kind: parallel`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParallel {
    #[serde(rename = "kind")]
    pub _kind: serde::de::IgnoredAny,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub branches: Vec<String>,
    pub join: String,
}

/// `kind: join`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJoin {
    #[serde(rename = "kind")]
    pub _kind: serde::de::IgnoredAny,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub next: String,
}

/// `kind: call`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCall {
    #[serde(rename = "kind")]
    pub _kind: serde::de::IgnoredAny,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub process: String,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub inputs: IndexMap<String, String>,
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub outputs: IndexMap<String, String>,
    pub next: String,
    #[serde(default)]
    pub wait: Option<bool>,
    #[serde(default)]
    pub deadline: Option<RawDeadline>,
    #[serde(default)]
    pub for_each: Option<RawForEach>,
}

/// `kind: send_message`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSendMessage {
    #[serde(rename = "kind")]
    pub _kind: serde::de::IgnoredAny,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub message: String,
    pub key: String,
    #[serde(default)]
    pub variables: IndexMap<String, String>,
    pub next: String,
    #[serde(default)]
    pub rules: Vec<String>,
}

/// `kind: report`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    #[serde(rename = "kind")]
    pub _kind: serde::de::IgnoredAny,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub process: Option<String>,
    #[serde(default)]
    pub step: Option<String>,
    pub from: String,
    pub until: String,
    #[serde(default)]
    pub agency: Option<String>,
    pub into: IndexMap<String, String>,
    pub next: String,
    #[serde(default)]
    pub rules: Vec<String>,
}

/// `kind: wait_message`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWaitMessage {
    #[serde(rename = "kind")]
    pub _kind: serde::de::IgnoredAny,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub message: String,
    pub correlation: String,
    #[serde(default)]
    pub fields: Vec<String>,
    pub next: String,
    #[serde(default)]
    pub deadline: Option<RawDeadline>,
}

/// `kind: wait_timer`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWaitTimer {
    #[serde(rename = "kind")]
    pub _kind: serde::de::IgnoredAny,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub timer: RawDeadline,
    pub next: String,
    #[serde(default)]
    pub rules: Vec<String>,
}

/// `kind: end`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnd {
    #[serde(rename = "kind")]
    pub _kind: serde::de::IgnoredAny,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub result: String,
    #[serde(default)]
    pub documents: Vec<String>,
}

/// A notification rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotification {
    pub on: String,
    #[serde(default)]
    pub step: Option<String>,
    pub to: Vec<RawParty>,
    pub channels: Vec<String>,
    pub template: String,
}

/// A document to render.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocument {
    pub kind: String,
    pub title: String,
    pub template: String,
}

/// A message template (handlebars).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub sms: Option<String>,
    #[serde(default)]
    pub sms_params: IndexMap<String, String>,
}

/// A recurring start.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub cron: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub variables: IndexMap<String, serde_json::Value>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub for_each: Option<RawScheduleForEach>,
}

/// `for_each:` on a recurring start: one instance per member.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScheduleForEach {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub agencies: Option<String>,
    #[serde(rename = "as")]
    pub var: String,
}
