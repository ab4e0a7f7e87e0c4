//! The scenario file's raw shape (serde; unknown keys are refused), and
//! how instants are written in it.
//!
//! The same structs give the scenario file's JSON Schema ([`schema`],
//! `duban schema scenario`): each doc comment is the `description` an
//! editor shows for that key, in the words of docs/simulation.md.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

/// A scenario: a process run on a throwaway store with a virtual clock,
/// checking what is expected of it (`duban simulate --scenario`).
// For the schema only: `Scenario::read` reads the head and then each step
// on its own, for their lines.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)] // only its schema is used
struct ScenarioFile {
    #[serde(flatten)]
    head: RawScenario,
    /// The actions and expectations, in order; each is exactly one of
    /// start, complete, receive, message, cancel, recuse, decide_recusal,
    /// advance, expect, with an optional `at:`.
    steps: Vec<RawAction>,
}

/// The JSON Schema of a scenario file (`duban schema scenario`).
pub fn schema() -> Json {
    duban_core::schema::generate::<ScenarioFile>("duban scenario", false)
}

/// An instant as the scenario writes it: RFC 3339, or a date (00:00
/// Beijing time), as [`instant`] reads it.
const INSTANT: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$";

/// A scenario's head: what it runs.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    /// What the scenario shows, printed with its result.
    #[serde(default)]
    pub name: Option<String>,
    /// The definition file, relative to this file; it is deployed with the
    /// other definitions of its folder.
    #[serde(default)]
    pub definition: Option<String>,
    /// The instances' profile (`--profile` overrides it).
    #[serde(default)]
    pub profile: Option<String>,
    /// The people and agencies (a YAML or CSV directory file), relative to
    /// this file.
    #[serde(default)]
    pub directory: Option<String>,
}

/// One step of a scenario: one action or one `expect`, optionally with `at:`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    { "required": ["start"] },
    { "required": ["complete"] },
    { "required": ["receive"] },
    { "required": ["message"] },
    { "required": ["cancel"] },
    { "required": ["recuse"] },
    { "required": ["decide_recusal"] },
    { "required": ["advance"] },
    { "required": ["migrate"] },
    { "required": ["expect"] }
]))]
pub(super) struct RawAction {
    /// Move the clock to this instant first (RFC 3339, or a date for 00:00
    /// Beijing time); never backwards.
    #[serde(default)]
    #[schemars(regex(pattern = INSTANT))]
    pub at: Option<String>,
    /// Start an instance.
    #[serde(default)]
    pub start: Option<RawStart>,
    /// Complete the open task (or answer the open notice) of a step.
    #[serde(default)]
    pub complete: Option<RawComplete>,
    /// The recipient received the notice of a step (starts `from: receipt`
    /// deadlines).
    #[serde(default)]
    pub receive: Option<RawReceive>,
    /// Send a message to the instances waiting for it.
    #[serde(default)]
    pub message: Option<RawMessage>,
    /// Cancel the instance (and the children its calls started).
    #[serde(default)]
    pub cancel: Option<RawCancel>,
    /// Request the recusal (回避) of a person from the open task of a step.
    #[serde(default)]
    pub recuse: Option<RawRecuse>,
    /// Decide a recusal request.
    #[serde(default)]
    pub decide_recusal: Option<RawDecideRecusal>,
    /// Only move the clock, to this instant, living through what falls due.
    #[serde(default)]
    #[schemars(regex(pattern = INSTANT))]
    pub advance: Option<String>,
    /// Move the instance to another version of its definition, as `duban
    /// migrate apply` would (docs/migration.md).
    #[serde(default)]
    pub migrate: Option<RawMigrate>,
    /// Check an instance; several checks may share one `expect`.
    #[serde(default)]
    pub expect: Option<RawExpect>,
}

/// `migrate:`: move the instance to another version of its definition
/// (docs/migration.md), as `duban migrate apply` would.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMigrate {
    /// The instance, by the name given at its start (default: the one
    /// started last).
    #[serde(default)]
    pub instance: Option<String>,
    /// The target definition file, relative to the scenario; deployed as
    /// a new version (its `version:` higher than the instance's).
    pub to: String,
    /// Occupied steps whose id changed: `{ old: new }`.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Count the deadlines of the open tasks and waits again under the
    /// target's periods (default: counted deadlines keep their dates).
    #[serde(default)]
    pub recount: bool,
    /// Values for variables the target requires and the instance lacks.
    #[serde(default)]
    pub variables: BTreeMap<String, Json>,
    /// Who migrates (the history names them; default `admin`).
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
}

/// `start:`: start an instance.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStart {
    /// Another process of the definition's folder than the scenario's own
    /// (its profile is then its default).
    #[serde(default)]
    pub process: Option<String>,
    /// The name later steps use for this instance (`instance: NAME`).
    #[serde(default)]
    pub instance: Option<String>,
    /// The instance's profile, instead of the scenario's.
    #[serde(default)]
    pub profile: Option<String>,
    /// The start's variables, read by their declared types (`"false"` is a
    /// bool for a bool variable, `a,b` a list).
    #[serde(default)]
    pub variables: BTreeMap<String, Json>,
    /// Who starts it (default `admin`).
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
}

/// `complete:`: complete the open task (or answer the open notice) of a step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawComplete {
    /// Which instance (default: the one started last): a name given at
    /// start, an instance id, `NAME/STEP` or `NAME/STEP/N`.
    #[serde(default)]
    pub instance: Option<String>,
    /// The step whose task is completed.
    pub step: String,
    /// Of a `for_each` step: the item's value (`zhang`), or its position from 1.
    #[serde(default)]
    pub item: Option<Json>,
    /// The outcome taken.
    pub outcome: String,
    /// The outcome's fields, read by their declared types.
    #[serde(default)]
    pub variables: BTreeMap<String, Json>,
    /// Who completes it (default `admin`).
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
}

/// `receive:`: the recipient received the notice of a step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReceive {
    /// Which instance (default: the one started last).
    #[serde(default)]
    pub instance: Option<String>,
    /// The notice step.
    pub step: String,
    /// Of a `for_each` step: the item's value, or its position from 1.
    #[serde(default)]
    pub item: Option<Json>,
    /// Who received it (default `recipient`).
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
}

/// `recuse:`: request the recusal (回避) of a person from a task.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecuse {
    /// Which instance (default: the one started last).
    #[serde(default)]
    pub instance: Option<String>,
    /// The step whose open task it concerns.
    pub step: String,
    /// Of a `for_each` step: the item's value, or its position from 1.
    #[serde(default)]
    pub item: Option<Json>,
    /// The person whose recusal is requested.
    pub person: String,
    /// Why, e.g. `与当事人有利害关系`.
    pub reason: String,
    /// Who asks: the person, or a party of the instance.
    #[serde(rename = "as")]
    pub actor: String,
}

/// `decide_recusal:`: decide a recusal request.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDecideRecusal {
    /// Which instance (default: the one started last).
    #[serde(default)]
    pub instance: Option<String>,
    /// The step whose open task it concerns.
    pub step: String,
    /// Of a `for_each` step: the item's value, or its position from 1.
    #[serde(default)]
    pub item: Option<Json>,
    /// The person whose recusal was requested.
    pub person: String,
    /// Whether the recusal is granted.
    pub granted: bool,
    /// Who decides: a holder of the step's `recusal.decided_by`.
    #[serde(rename = "as")]
    pub actor: String,
}

/// `message:`: send a message to the instances waiting for it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMessage {
    /// The message name their `wait_message` waits for.
    pub name: String,
    /// The key (their `correlation`).
    pub key: String,
    /// The values the message carries, typed by the receiver's declarations.
    #[serde(default)]
    pub variables: BTreeMap<String, Json>,
}

/// `cancel:`: cancel an instance.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCancel {
    /// Which instance (default: the one started last).
    #[serde(default)]
    pub instance: Option<String>,
    /// Why (default `撤销`).
    #[serde(default)]
    pub reason: Option<String>,
    /// Who cancels it (default `admin`).
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
}

/// `expect:`: checks of an instance, or of the run.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    /// (Not a check.) Which instance the checks look at (default: the one
    /// started last).
    #[serde(default)]
    pub instance: Option<String>,
    /// The step is current (an open task or a waiting step).
    #[serde(default)]
    pub step: Option<String>,
    /// A task or notice of the step is open.
    #[serde(default)]
    pub task_open: Option<String>,
    /// A task of the step was closed and none is open.
    #[serde(default)]
    pub task_closed: Option<String>,
    /// The (latest) deadline of the step ends on that day.
    #[serde(default)]
    pub deadline: Option<RawDeadlineExpect>,
    /// A reminder for the step fired at that instant.
    #[serde(default)]
    pub reminder_sent: Option<RawReminderExpect>,
    /// History entries of a kind happened.
    #[serde(default)]
    pub happened: Option<RawHappened>,
    /// An expiry escalated to that role.
    #[serde(default)]
    pub escalated_to: Option<String>,
    /// `true`: nothing was escalated.
    #[serde(default)]
    pub not_escalated: Option<bool>,
    /// The variables have those values: variable → value.
    #[serde(default)]
    pub variable: Option<BTreeMap<String, Json>>,
    /// The instance ended with that result.
    #[serde(default)]
    pub ended: Option<String>,
    /// The instance's status.
    #[serde(default)]
    #[schemars(extend("enum" = ["running", "completed", "cancelled", "stuck"]))]
    pub status: Option<String>,
    /// The previous action was refused with a message containing this text.
    #[serde(default)]
    pub error: Option<String>,
    /// Notifications of the instance matching every key given.
    #[serde(default)]
    pub notified: Option<RawNotified>,
    /// Documents the instance issued.
    #[serde(default)]
    pub document: Option<RawDocument>,
    /// The run holds exactly `count` instances of a process.
    #[serde(default)]
    pub instances: Option<RawInstances>,
}

impl RawExpect {
    /// Whether it checks an instance (every key but `error` and `instances`).
    pub fn about_instance(&self) -> bool {
        self.instance.is_some()
            || self.step.is_some()
            || self.task_open.is_some()
            || self.task_closed.is_some()
            || self.deadline.is_some()
            || self.reminder_sent.is_some()
            || self.happened.is_some()
            || self.escalated_to.is_some()
            || self.not_escalated.is_some()
            || self.variable.is_some()
            || self.ended.is_some()
            || self.status.is_some()
            || self.notified.is_some()
            || self.document.is_some()
    }
}

/// `notified:`: notifications of the instance, each counted once per channel.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotified {
    /// A person or agency id (it matches a notification to a role that
    /// person holds), or `role:ID`.
    #[serde(default)]
    pub to: Option<String>,
    /// `email` or `sms`.
    #[serde(default)]
    #[schemars(extend("enum" = ["email", "sms"]))]
    pub channel: Option<String>,
    /// The template id.
    #[serde(default)]
    pub template: Option<String>,
    /// The rule event (`task_opened`, `reminder`, `escalated`, …), or
    /// `notice` for a notice's own message.
    #[serde(default)]
    pub event: Option<String>,
    /// The step concerned.
    #[serde(default)]
    pub step: Option<String>,
    /// Exactly this many (default: at least one).
    #[serde(default)]
    pub times: Option<usize>,
}

/// `document:`: documents the instance issued, rendered as `duban serve`
/// writes them.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDocument {
    /// The document id.
    #[serde(default)]
    pub id: Option<String>,
    /// Its title, e.g. `督办函`.
    #[serde(default)]
    pub title: Option<String>,
    /// A text its plain text contains.
    #[serde(default)]
    pub contains: Option<String>,
    /// Exactly this many (default: at least one).
    #[serde(default)]
    pub times: Option<usize>,
}

/// `instances:`: how many instances of a process the run holds (recurring
/// starts, called children).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstances {
    /// The process id.
    pub process: String,
    /// Exactly this many.
    pub count: usize,
}

/// `deadline:`: the (latest) deadline of a step: of its task or notice,
/// or of its wait while it waits.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeadlineExpect {
    /// The step.
    pub step: String,
    /// The last day, `YYYY-MM-DD`.
    pub last_day: String,
}

/// `reminder_sent:`: a reminder for a step fired at an instant.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReminderExpect {
    /// The step.
    pub step: String,
    /// The instant it fired.
    #[schemars(regex(pattern = INSTANT))]
    pub at: String,
}

/// `happened:`: history entries of a kind, at least one or exactly `times`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHappened {
    /// The kind of entry: `expired`, `escalated`, `decided`, `task_opened`,
    /// `cancelled`, `reminder`, …
    pub what: String,
    /// Only those concerning this step.
    #[serde(default)]
    pub step: Option<String>,
    /// Only those at this instant.
    #[serde(default)]
    #[schemars(regex(pattern = INSTANT))]
    pub at: Option<String>,
    /// Exactly this many (`times: 0`: it never happened).
    #[serde(default)]
    pub times: Option<usize>,
}

/// An RFC 3339 instant, or a date (00:00 Beijing time).
pub(super) fn instant(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // Years of four digits, as in RFC 3339: chrono also reads
    // `+262000-01-01`, from where a period of years runs off its calendar
    // and the count panicked.
    if !crate::runtime::values::four_digit_year(s) {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| crate::calendar::local_midnight(d).with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema says "exactly one action" with the keys `Scenario::read`
    /// counts: every key of a step but `at`.
    #[test]
    fn each_step_is_one_action() {
        let schema = schema();
        let action = &schema["definitions"]["RawAction"];
        let mut keys: Vec<&str> = action["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "at")
            .collect();
        let mut one_of: Vec<&str> = action["oneOf"]
            .as_array()
            .expect("oneOf")
            .iter()
            .map(|r| r["required"][0].as_str().expect("a key"))
            .collect();
        keys.sort_unstable();
        one_of.sort_unstable();
        assert_eq!(keys, one_of);
        let mut top: Vec<&str> = schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect();
        top.sort_unstable();
        // The head flattened in beside `steps`, unknown keys still refused.
        assert_eq!(top, ["definition", "directory", "name", "profile", "steps"]);
        assert_eq!(schema["required"], serde_json::json!(["steps"]));
        assert_eq!(schema["additionalProperties"], false);
    }
}
