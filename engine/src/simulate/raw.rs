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
    pub advance: Option<String>,
    #[serde(default)]
    pub expect: Option<RawExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStart {
    #[serde(default)]
    pub variables: BTreeMap<String, Json>,
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawComplete {
    pub step: String,
    pub outcome: String,
    #[serde(default)]
    pub variables: BTreeMap<String, Json>,
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReceive {
    pub step: String,
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMessage {
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub variables: BTreeMap<String, Json>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
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
    pub step: String,
    pub at: String,
}

/// An RFC 3339 instant, or a date (00:00 Beijing time).
pub(super) fn instant(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| crate::calendar::local_midnight(d).with_timezone(&Utc))
}
