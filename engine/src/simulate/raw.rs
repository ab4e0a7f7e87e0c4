//! The scenario file's raw shape (serde; unknown keys are refused), and
//! how instants are written in it.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value as Json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub definition: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub directory: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAction {
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub start: Option<RawStart>,
    #[serde(default)]
    pub complete: Option<RawComplete>,
    #[serde(default)]
    pub receive: Option<RawReceive>,
    #[serde(default)]
    pub message: Option<RawMessage>,
    #[serde(default)]
    pub cancel: Option<RawCancel>,
    #[serde(default)]
    pub recuse: Option<RawRecuse>,
    #[serde(default)]
    pub decide_recusal: Option<RawDecideRecusal>,
    #[serde(default)]
    pub advance: Option<String>,
    #[serde(default)]
    pub migrate: Option<RawMigrate>,
    #[serde(default)]
    pub expect: Option<RawExpect>,
}

/// `migrate:`: move the instance to another version of its definition
/// (docs/migration.md), as `duban migrate apply` would.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMigrate {
    #[serde(default)]
    pub instance: Option<String>,
    /// The target definition file, relative to the scenario.
    pub to: String,
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    #[serde(default)]
    pub recount: bool,
    #[serde(default)]
    pub variables: BTreeMap<String, Json>,
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStart {
    /// Another process of the folder than the scenario's definition.
    #[serde(default)]
    pub process: Option<String>,
    /// The name later steps use for this instance (`instance: NAME`).
    #[serde(default)]
    pub instance: Option<String>,
    /// The instance's profile, instead of the scenario's.
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, Json>,
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawComplete {
    #[serde(default)]
    pub instance: Option<String>,
    pub step: String,
    #[serde(default)]
    pub item: Option<Json>,
    pub outcome: String,
    #[serde(default)]
    pub variables: BTreeMap<String, Json>,
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReceive {
    #[serde(default)]
    pub instance: Option<String>,
    pub step: String,
    #[serde(default)]
    pub item: Option<Json>,
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecuse {
    #[serde(default)]
    pub instance: Option<String>,
    pub step: String,
    #[serde(default)]
    pub item: Option<Json>,
    pub person: String,
    pub reason: String,
    #[serde(rename = "as")]
    pub actor: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDecideRecusal {
    #[serde(default)]
    pub instance: Option<String>,
    pub step: String,
    #[serde(default)]
    pub item: Option<Json>,
    pub person: String,
    pub granted: bool,
    #[serde(rename = "as")]
    pub actor: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMessage {
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub variables: BTreeMap<String, Json>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCancel {
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    pub task_open: Option<String>,
    #[serde(default)]
    pub task_closed: Option<String>,
    #[serde(default)]
    pub deadline: Option<RawDeadlineExpect>,
    #[serde(default)]
    pub reminder_sent: Option<RawReminderExpect>,
    #[serde(default)]
    pub happened: Option<RawHappened>,
    #[serde(default)]
    pub escalated_to: Option<String>,
    #[serde(default)]
    pub not_escalated: Option<bool>,
    #[serde(default)]
    pub variable: Option<BTreeMap<String, Json>>,
    #[serde(default)]
    pub ended: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub notified: Option<RawNotified>,
    #[serde(default)]
    pub document: Option<RawDocument>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotified {
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    pub times: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDocument {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub times: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstances {
    pub process: String,
    pub count: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeadlineExpect {
    pub step: String,
    pub last_day: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReminderExpect {
    pub step: String,
    pub at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHappened {
    pub what: String,
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    pub at: Option<String>,
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
