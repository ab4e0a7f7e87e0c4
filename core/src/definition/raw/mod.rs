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
//! one bad step does not hide the problems of the others. This file holds
//! the sections' structs and those steps share with them (parties,
//! deadlines); `steps.rs` the step kinds and their parts.
//!
//! The same structs give the language's JSON Schema (`definition/schema.rs`,
//! `duban schema process`): each doc comment here is the `description` an
//! editor shows for that key, so they are written for the people who write
//! definitions, in the words of docs/process-language.md. The constraints
//! between keys that serde cannot say (`period:` or `until:`, exactly one
//! party key) are added to the schema by the `schemars` attributes; the
//! checker still says them itself, with a line and a hint.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::schema as s;

mod steps;
pub use steps::*;

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
    "numbering",
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

/// A role the process refers to: a function, filled by people of the
/// directory. The short form `government: 本级人民政府` gives only the name.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    /// The role's display name, e.g. `行政执法监督机构`.
    pub name: String,
    /// Who holds the role, e.g. `县级以上人民政府司法行政部门`.
    #[serde(default)]
    pub description: Option<String>,
}

/// A typed variable of an instance.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = s::enum_needs_values)]
pub struct RawVariable {
    /// string, text, int, bool, date, datetime, enum, email, phone, person,
    /// agency, period, or `list<TYPE>` of one of them.
    #[serde(rename = "type")]
    #[schemars(transform = s::variable_type)]
    pub ty: String,
    /// Must be given at start.
    #[serde(default)]
    #[schemars(extend("default" = false))]
    pub required: Option<bool>,
    /// The value when none is given, checked against the type.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// Shown on forms, e.g. `被监督机关`.
    #[serde(default)]
    pub label: Option<String>,
    /// What the variable holds.
    #[serde(default)]
    pub description: Option<String>,
    /// Enums only, and required for them: the allowed values, or
    /// `profile.PARAM`, a `list<string>` parameter each profile sets.
    #[serde(default)]
    pub values: Option<RawValues>,
    /// Lists only: the fewest items a value may hold.
    #[serde(default)]
    pub min_items: Option<u32>,
    /// Lists only: the most items a value may hold (at most 1,000 in any case).
    #[serde(default)]
    pub max_items: Option<u32>,
}

/// An enum's `values:`: the list, or `profile.PARAM`, a parameter of type
/// `list<string>` whose value in the instance's profile is the list.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawValues {
    /// The allowed values, e.g. `[督办函, 意见书, 通知书]`.
    List(Vec<String>),
    /// `profile.PARAM`: the values the instance's profile gives that parameter.
    FromProfile(#[schemars(regex(pattern = r"^\s*profile\."))] String),
}

/// A profile parameter: a named, typed slot each profile fills; read as
/// `profile.NAME` where a period or a role is expected, and in CEL.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawParameter {
    /// A variable type, or `role` (its values are role ids of the process).
    #[serde(rename = "type")]
    #[schemars(transform = s::parameter_type)]
    pub ty: String,
    /// The value of every profile that gives none.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// What the parameter is, e.g. `公示期`.
    #[serde(default)]
    pub description: Option<String>,
}

/// A jurisdiction profile: values for the parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// The jurisdiction's name, e.g. `邵阳市双清区`.
    pub name: String,
    /// The rule ids of docs/rules.md this profile implements, e.g. `[SQ-8]`.
    #[serde(default)]
    #[schemars(transform = s::rule_ids)]
    pub rules: Vec<String>,
    /// A value for each parameter, by parameter id; every parameter without
    /// a `default` needs one.
    #[serde(default)]
    pub values: IndexMap<String, serde_json::Value>,
}

/// Who a task is assigned to, whom a notice goes to, or whom a notification
/// reaches. Exactly one of `role`, `person`, `variable` or `assignee` is
/// given.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "oneOf" = [
        { "required": ["role"] },
        { "required": ["person"] },
        { "required": ["variable"] },
        { "required": ["assignee"] }
    ],
    "dependencies" = { "within": ["role"] }
))]
pub struct RawParty {
    /// The holders of a role: a role id, or `profile.NAME`, a role parameter.
    #[serde(default)]
    pub role: Option<String>,
    /// One person of the directory, by id.
    #[serde(default)]
    pub person: Option<String>,
    /// A variable holding an agency, person, email or phone (or a list of them).
    #[serde(default)]
    pub variable: Option<String>,
    /// Notifications only: `true` is the step's assignees.
    #[serde(default)]
    #[schemars(extend("const" = true))]
    pub assignee: Option<bool>,
    /// With `role`: only its holders in the unit (county or `市本级`) that
    /// this variable (a string, enum or agency) holds.
    #[serde(default)]
    pub within: Option<String>,
}

/// A deadline (`deadline:` on tasks, notices, message waits and calls) or a
/// timer (`timer:` on timer waits). Gives `period:` or `until:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "oneOf" = [{ "required": ["period"] }, { "required": ["until"] }],
    // E036: a date is counted from nothing.
    "if" = { "required": ["until"] },
    "then" = { "properties": { "from": false, "include_start_day": false, "extend_on_rest_day": false } }
))]
pub struct RawDeadline {
    /// A period (`30日`, `5个工作日`, `5 working days`, `1个月`, `48小时`),
    /// `profile.NAME` or `var.NAME`.
    #[serde(default)]
    pub period: Option<String>,
    /// Instead of `period`: `var.NAME`, a date or datetime variable; the
    /// deadline ends on that day.
    #[serde(default)]
    pub until: Option<String>,
    /// What the period counts from: `opened` (the step opened), `receipt`
    /// (notices: receipt acknowledged or deemed) or `var.NAME`, a date or
    /// datetime variable.
    #[serde(default)]
    #[schemars(regex(pattern = r"^(opened|receipt|var\..+)$"), extend("default" = "opened"))]
    pub from: Option<String>,
    /// `within`: a deadline (…内), on time until the cut-off; `at_least`: a
    /// minimum (不少于…), the outcomes may not be taken before the cut-off.
    #[serde(default)]
    #[schemars(extend("enum" = ["within", "at_least"], "default" = "within"))]
    pub bound: Option<String>,
    /// Count the start day as the first day (some public notices do).
    #[serde(default)]
    #[schemars(extend("default" = false))]
    pub include_start_day: Option<bool>,
    /// A last day that is a rest day moves to the next working day; `false`
    /// only on a `wait_timer`'s `timer:` (a term of office, a bar).
    #[serde(default)]
    #[schemars(extend("default" = true))]
    pub extend_on_rest_day: Option<bool>,
    /// A business-hours cut-off on the last day, `HH:MM` (default 24:00).
    #[serde(default)]
    pub cutoff: Option<String>,
    /// Reminders, each a period before the cut-off, e.g. `[5 working days, 1 working day]`.
    #[serde(default)]
    pub remind: Vec<String>,
    /// Send reminders at the computed instant, not held back to working
    /// hours (09:00–17:30 on a working day).
    #[serde(default)]
    #[schemars(extend("default" = false))]
    pub remind_at_any_hour: Option<bool>,
    /// What happens when the deadline expires (not on a `wait_timer`'s timer).
    #[serde(default)]
    pub on_expiry: Option<RawExpiry>,
}

/// What happens when a deadline expires: `goto:`, `notify:` or both.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("anyOf" = [
    { "required": ["goto"] },
    { "required": ["notify"], "properties": { "notify": { "minItems": 1 } } }
]))]
pub struct RawExpiry {
    /// The step to go to on expiry.
    #[serde(default)]
    pub goto: Option<String>,
    /// Roles to notify on expiry (escalation).
    #[serde(default)]
    pub notify: Vec<String>,
    /// The template of the escalation message.
    #[serde(default)]
    pub template: Option<String>,
}

/// A notification rule: who is told what, when, by which channel.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = s::instance_events_have_no_step)]
pub struct RawNotification {
    /// The event: instance_started, task_opened, task_completed, notice_sent,
    /// notice_answered, reminder, expired, escalated, instance_ended,
    /// instance_cancelled.
    #[schemars(transform = s::events)]
    pub on: String,
    /// Only for this step (not on the instance's own events).
    #[serde(default)]
    pub step: Option<String>,
    /// The parties told; `{ assignee: true }` is the step's assignees.
    #[schemars(length(min = 1))]
    pub to: Vec<RawParty>,
    /// `email`, `sms`; each sent, retried and recorded on its own.
    #[schemars(transform = s::channels)]
    pub channels: Vec<String>,
    /// The template of the message.
    pub template: String,
}

/// A document to render.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDocument {
    /// The kind of document: 意见书, 决定书, 督办函, 通知书, 聘书, 公告,
    /// 建议书, 协议书, 记录.
    pub kind: String,
    /// The document's title, e.g. `行政执法监督决定书`.
    pub title: String,
    /// The template of its 正文 (body): the text between the 主送机关 and
    /// the 附件; the title, number, addressee, signature and date are the
    /// layout's, from the fields below.
    pub template: String,
    /// A numbering series of `numbering:` (发文字号): the document takes the
    /// series' next number when it is issued, in the transaction of the step
    /// that issues it, into the variable named like the series.
    #[serde(default)]
    pub number: Option<String>,
    /// The 主送机关 (addressee), a handlebars text, e.g. `{{agency.name}}`;
    /// printed flush left above the body, followed by `：`.
    #[serde(default)]
    pub to: Option<String>,
    /// The 发文机关 (issuing authority), a handlebars text, e.g.
    /// `{{profile.office_name}}`: the red 发文机关标志 of the 版头 and the
    /// 署名 above the 成文日期 (the day of issue). A document without one
    /// is unsigned and undated (a 记录).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The 附件 (attachments) listed below the body, each a handlebars text.
    #[serde(default)]
    pub attachments: Vec<String>,
    /// The layout of its PDF: one of 函, 意见书, 决定书, 通知书, 聘书, 公告,
    /// 记录, or `profile.PARAM`, a text parameter whose value in the
    /// instance's profile names one (an office's own layout per profile).
    /// Without it, the kind's own: 督办函 → 函, 建议书 → 意见书, 协议书 → 记录.
    #[serde(default)]
    pub layout: Option<String>,
}

/// A numbering series (发文字号), e.g. `许司督〔{year}〕{n}号`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNumbering {
    /// The pattern of a number: `{n}` is the number, counted from 1 in each
    /// year (Beijing time) for each distinct pattern, and `{year}` the year
    /// of issue; or `profile.PARAM`, a text parameter whose value in the
    /// instance's profile is the pattern (one office's prefix per profile).
    pub pattern: String,
    /// What the series numbers.
    #[serde(default)]
    pub description: Option<String>,
    /// Number the instance when it starts (a case number, 案号): a start
    /// that gives no value for the series' variable takes the next number,
    /// in the start's own transaction; a value given is kept.
    #[serde(default)]
    pub on_start: bool,
}

/// A message or document template (handlebars): `body:` or `file:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{ "required": ["body"] }, { "required": ["file"] }]))]
pub struct RawTemplate {
    /// The email's subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// The text, inline.
    #[serde(default)]
    pub body: Option<String>,
    /// Instead of `body`: a file relative to the definition's folder (and
    /// inside it), e.g. `templates/reminder.hbs`.
    #[serde(default)]
    pub file: Option<String>,
    /// The SMS text.
    #[serde(default)]
    pub sms: Option<String>,
    /// The parameters of the SMS gateway's approved template (Aliyun's
    /// TemplateParam): name → handlebars text.
    #[serde(default)]
    pub sms_params: IndexMap<String, String>,
}

/// A recurring start.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// `minute hour day month weekday` (or 6 fields, seconds first), e.g.
    /// `0 9 1 12 *`; weekdays as names (`MON`…`SUN`).
    pub cron: String,
    /// The time zone of the cron fields.
    #[serde(default)]
    #[schemars(extend("default" = "Asia/Shanghai"))]
    pub timezone: Option<String>,
    /// The profile of the instances started.
    #[serde(default)]
    pub profile: Option<String>,
    /// The variables of each instance started, by variable id.
    #[serde(default)]
    pub variables: IndexMap<String, serde_json::Value>,
    /// What the start is, e.g. `年终述职、集中考核（SQ-22）`.
    #[serde(default)]
    pub description: Option<String>,
    /// One instance per holder of a role or per agency.
    #[serde(default)]
    pub for_each: Option<RawScheduleForEach>,
}

/// `for_each:` on a recurring start: one instance per member, `role:` or
/// `agencies:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{ "required": ["role"] }, { "required": ["agencies"] }]))]
pub struct RawScheduleForEach {
    /// One instance per holder of this role of the process.
    #[serde(default)]
    pub role: Option<String>,
    /// One instance per agency of this level (市级, 县级, 乡级), or `all`.
    #[serde(default)]
    #[schemars(transform = s::levels_or_all)]
    pub agencies: Option<String>,
    /// The variable holding the member (a person or an agency variable).
    #[serde(rename = "as")]
    pub var: String,
}
