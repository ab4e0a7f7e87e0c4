//! The raw shape of each step kind, and of the parts only steps have
//! (outcomes, guards, records, recusal, `for_each`, decision branches).
//! See the module above for why these structs exist and what their doc
//! comments are for.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{RawDeadline, RawParty};
use crate::definition::schema as s;

/// A check that must hold before an outcome is accepted, else the
/// completion is refused.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGuard {
    /// A CEL condition, e.g. `size(inspectors) >= 2`.
    pub check: String,
    /// Why the completion is refused when it does not hold.
    pub message: String,
    /// The rule id it implements, e.g. `XT-13`.
    #[serde(default)]
    #[schemars(transform = s::rule_id)]
    pub rule: Option<String>,
}

/// One possible result of a task or notice.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOutcome {
    /// What the completer (or the recipient) chooses, e.g. `已依法处理`.
    pub label: String,
    /// The step it leads to; without it, the step's `next` (no `next` here
    /// in a `for_each` step).
    #[serde(default)]
    pub next: Option<String>,
    /// Variables the completer must supply.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Variables the completer may supply.
    #[serde(default)]
    pub optional_fields: Vec<String>,
    /// Variables computed on completion: variable → CEL expression.
    #[serde(default)]
    pub set: IndexMap<String, String>,
    /// Checks that must hold, else the completion is refused.
    #[serde(default)]
    pub guards: Vec<RawGuard>,
    /// Documents rendered on completion.
    #[serde(default)]
    pub documents: Vec<String>,
    /// Facts recorded about a person or agency (一人一档).
    #[serde(default)]
    pub record: Vec<RawRecord>,
}

/// A `record:` entry: a fact about a person or agency, readable by any
/// process with `facts`, `last_fact` and `streak`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    /// The fact's name, an identifier, e.g. `attendance`.
    pub fact: String,
    /// A person or agency variable (or a `for_each` item) the fact is about.
    pub about: String,
    /// A CEL expression giving a text, an int or a bool, e.g. `"'absent'"`.
    #[serde(default)]
    pub value: Option<String>,
    /// Shown in the history.
    #[serde(default)]
    pub note: Option<String>,
}

/// Recusal (回避) on a task: a participant, a party or a holder of
/// `decided_by` may raise it; a holder of `decided_by` decides.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRecusal {
    /// The role that decides a recusal.
    pub decided_by: String,
    /// The template that tells the deciders of a request.
    #[serde(default)]
    pub template: Option<String>,
}

/// `for_each:` on a task, notice or call: once per item of a list variable.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawForEach {
    /// The list variable whose items the step runs for, as it is when the
    /// step is entered.
    pub items: String,
    /// A declared variable of the items' type, reading as the item within it.
    #[serde(rename = "as")]
    pub var: String,
    /// `parallel`: every item at once; `sequential`: one after another, in
    /// list order.
    #[serde(default)]
    #[schemars(extend("enum" = ["parallel", "sequential"], "default" = "parallel"))]
    pub order: Option<String>,
    /// When the step is done: `all`, `any`, `{ at_least: N }` or a CEL
    /// condition.
    #[serde(default)]
    #[schemars(extend("default" = "all"))]
    pub complete_when: Option<RawCompleteWhen>,
    /// List variables filled from the finished items, in item order.
    #[serde(default)]
    pub collect: IndexMap<String, RawCollect>,
}

/// `complete_when:`: `all`, `any`, `{ at_least: N }` or a CEL condition.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawCompleteWhen {
    /// `all` (every item finished), `any` (one has), or a CEL condition over
    /// the variables and the `collect` lists so far.
    Text(String),
    /// `{ at_least: N }`: N items have finished.
    AtLeast(RawAtLeast),
}

/// `{ at_least: N }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAtLeast {
    // A text: inside an untagged enum the YAML scalar arrives buffered as
    // a string, so the number is parsed by the checker.
    /// How many items must have finished, at least 1.
    #[schemars(schema_with = "s::count")]
    pub at_least: String,
}

/// One `collect:` entry: `{ outcome: ID }` or `{ field: NAME }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{ "required": ["outcome"] }, { "required": ["field"] }]))]
pub struct RawCollect {
    /// The items that took this outcome (of a call: whose child ended with
    /// this result).
    #[serde(default)]
    pub outcome: Option<String>,
    /// Each item's value of this field.
    #[serde(default)]
    pub field: Option<String>,
}

/// `kind: task`: work for staff.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = s::next_for_every_outcome, transform = s::for_each_step)]
pub struct RawTask {
    /// The step kind.
    #[serde(rename = "kind")]
    #[schemars(skip)]
    pub _kind: serde::de::IgnoredAny,
    /// The step's display name, e.g. `现场行政执法监督`.
    pub name: String,
    /// What the step is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Who does the task: `{ role: ROLE }` (maybe `within:`), `{ person: ID }`
    /// or `{ variable: NAME }`.
    #[schemars(transform = s::not_the_assignee)]
    pub assignee: RawParty,
    /// The fewest assignees the task needs (XT-13), checked against the assignee.
    #[serde(default)]
    #[schemars(range(min = 1), extend("default" = 1))]
    pub min_assignees: Option<u32>,
    /// The possible results, by outcome id.
    #[schemars(transform = s::id_keyed_non_empty)]
    pub outcomes: IndexMap<String, RawOutcome>,
    /// The period within which the task is due.
    #[serde(default)]
    #[schemars(transform = s::deadline_to_meet, transform = s::not_from_receipt)]
    pub deadline: Option<RawDeadline>,
    /// Documents rendered when the task opens.
    #[serde(default)]
    pub documents: Vec<String>,
    /// Lets a participant's recusal (回避) be requested and decided.
    #[serde(default)]
    pub recusal: Option<RawRecusal>,
    /// The rule ids the step implements, e.g. `[XT-13]`.
    #[serde(default)]
    #[schemars(transform = s::rule_ids)]
    pub rules: Vec<String>,
    /// The step after it, for every outcome without a `next` of its own;
    /// required with `for_each`.
    #[serde(default)]
    pub next: Option<String>,
    /// Runs the task once per item of a list variable.
    #[serde(default)]
    pub for_each: Option<RawForEach>,
}

/// `kind: notice`: a message to an external party, answered through a link.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = s::next_for_every_outcome, transform = s::for_each_step)]
pub struct RawNotice {
    /// The step kind.
    #[serde(rename = "kind")]
    #[schemars(skip)]
    pub _kind: serde::de::IgnoredAny,
    /// The step's display name.
    pub name: String,
    /// What the step is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The recipient: an agency, person, email or phone variable, or a role.
    #[schemars(transform = s::not_the_assignee)]
    pub to: RawParty,
    /// The template of the email carrying the answer link.
    pub template: String,
    /// Documents attached to the notice.
    #[serde(default)]
    pub documents: Vec<String>,
    /// The answers the recipient can give, by outcome id.
    #[schemars(transform = s::id_keyed_non_empty)]
    pub outcomes: IndexMap<String, RawOutcome>,
    /// The period within which the recipient answers (`from: receipt` counts
    /// from receipt).
    #[serde(default)]
    #[schemars(transform = s::deadline_to_meet)]
    pub deadline: Option<RawDeadline>,
    /// When receipt is deemed if nobody acknowledges the delivered notice: a
    /// period, `profile.NAME` or `var.NAME`, e.g. `3个工作日`.
    #[serde(default)]
    pub deemed_receipt: Option<String>,
    /// The rule ids the step implements.
    #[serde(default)]
    #[schemars(transform = s::rule_ids)]
    pub rules: Vec<String>,
    /// The step after it, for every outcome without a `next` of its own;
    /// required with `for_each`.
    #[serde(default)]
    pub next: Option<String>,
    /// Sends the notice once per item of a list variable.
    #[serde(default)]
    pub for_each: Option<RawForEach>,
}

/// One branch of a decision.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBranch {
    /// A CEL condition over the variables, `profile` and `now`.
    pub when: String,
    /// The step taken when it holds.
    pub goto: String,
    /// Variables computed when it is taken: variable → CEL expression.
    #[serde(default)]
    pub set: IndexMap<String, String>,
    /// Recorded in the history when it is taken.
    #[serde(default)]
    pub note: Option<String>,
    /// The rule id it implements, e.g. `XC-20`.
    #[serde(default)]
    #[schemars(transform = s::rule_id)]
    pub rule: Option<String>,
    /// Facts recorded about a person or agency when it is taken.
    #[serde(default)]
    pub record: Vec<RawRecord>,
}

/// `kind: decision`: branches on CEL conditions.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = s::default_required)]
pub struct RawDecision {
    /// The step kind.
    #[serde(rename = "kind")]
    #[schemars(skip)]
    pub _kind: serde::de::IgnoredAny,
    /// The step's display name.
    pub name: String,
    /// What the step is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Tried in order; the first that holds is taken (with `join:`, every
    /// one that holds).
    #[schemars(length(min = 1))]
    pub branches: Vec<RawBranch>,
    /// The step taken when no branch holds (E013 without it).
    #[serde(default)]
    pub default: Option<String>,
    /// An inclusive choice: every branch that holds is taken, and they meet
    /// again at this `join` step.
    #[serde(default)]
    pub join: Option<String>,
    /// The rule ids the step implements.
    #[serde(default)]
    #[schemars(transform = s::rule_ids)]
    pub rules: Vec<String>,
}

/// `kind: parallel`: every branch at once, meeting again at a join.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawParallel {
    /// The step kind.
    #[serde(rename = "kind")]
    #[schemars(skip)]
    pub _kind: serde::de::IgnoredAny,
    /// The step's display name.
    pub name: String,
    /// What the step is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The first step of each branch, at least two.
    #[schemars(length(min = 2))]
    pub branches: Vec<String>,
    /// The `join` step every branch reaches, unless it ends the instance.
    pub join: String,
}

/// `kind: join`: where parallel branches meet again.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJoin {
    /// The step kind.
    #[serde(rename = "kind")]
    #[schemars(skip)]
    pub _kind: serde::de::IgnoredAny,
    /// The step's display name.
    pub name: String,
    /// What the step is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The step after it.
    pub next: String,
}

/// `kind: call`: run another process and wait for its result.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = s::call_constraints)]
pub struct RawCall {
    /// The step kind.
    #[serde(rename = "kind")]
    #[schemars(skip)]
    pub _kind: serde::de::IgnoredAny,
    /// The step's display name.
    pub name: String,
    /// What the step is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The id of a process of the library; its latest deployed version runs.
    pub process: String,
    /// The child's profile; without it, the caller's when the called process
    /// has one of that name, else its default.
    #[serde(default)]
    pub profile: Option<String>,
    /// The child's variables: child variable → CEL expression over ours.
    #[serde(default)]
    pub inputs: IndexMap<String, String>,
    /// Our variable receiving the child's end result.
    #[serde(default)]
    pub result: Option<String>,
    /// Copies the child's variables back when it ends: our variable → the
    /// child's variable.
    #[serde(default)]
    pub outputs: IndexMap<String, String>,
    /// The step after it.
    pub next: String,
    /// `false`: start the child and go on at once, without waiting for it.
    #[serde(default)]
    #[schemars(extend("default" = true))]
    pub wait: Option<bool>,
    /// Bounds the wait for the child (`within`); `on_expiry: { goto }`
    /// cancels it.
    #[serde(default)]
    #[schemars(transform = s::timeout)]
    pub deadline: Option<RawDeadline>,
    /// Runs one child per item of a list variable.
    #[serde(default)]
    pub for_each: Option<RawForEach>,
}

/// `kind: send_message`: tell the instances waiting for a message.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSendMessage {
    /// The step kind.
    #[serde(rename = "kind")]
    #[schemars(skip)]
    pub _kind: serde::de::IgnoredAny,
    /// The step's display name.
    pub name: String,
    /// What the step is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The message name the receivers' `wait_message` waits for.
    pub message: String,
    /// CEL: one key (a text), or a list of keys, one message each.
    pub key: String,
    /// The values the message carries: variable → CEL expression.
    #[serde(default)]
    pub variables: IndexMap<String, String>,
    /// The step after it; the step does not wait for a receiver.
    pub next: String,
    /// The rule ids the step implements.
    #[serde(default)]
    #[schemars(transform = s::rule_ids)]
    pub rules: Vec<String>,
}

/// `kind: report`: count how the notices of a period were answered.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    /// The step kind.
    #[serde(rename = "kind")]
    #[schemars(skip)]
    pub _kind: serde::de::IgnoredAny,
    /// The step's display name.
    pub name: String,
    /// What the step is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Only this process's instances (default: every process).
    #[serde(default)]
    pub process: Option<String>,
    /// Only this notice step (default: every notice).
    #[serde(default)]
    pub step: Option<String>,
    /// `var.NAME`, a date variable: the period's first day.
    #[schemars(regex(pattern = r"^var\."))]
    pub from: String,
    /// `var.NAME`, a date variable: the period's last day, included.
    #[schemars(regex(pattern = r"^var\."))]
    pub until: String,
    /// An agency variable: that agency's numbers (default: all together).
    #[serde(default)]
    pub agency: Option<String>,
    /// Measure → variable: `opened`, `answered`, `on_time`, `overdue`,
    /// `escalated` (ints), `average_days` (a string or text).
    #[schemars(transform = s::measures)]
    pub into: IndexMap<String, String>,
    /// The step after it.
    pub next: String,
    /// The rule ids the step implements.
    #[serde(default)]
    #[schemars(transform = s::rule_ids)]
    pub rules: Vec<String>,
}

/// `kind: wait_message`: wait for a message correlated by key.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWaitMessage {
    /// The step kind.
    #[serde(rename = "kind")]
    #[schemars(skip)]
    pub _kind: serde::de::IgnoredAny,
    /// The step's display name.
    pub name: String,
    /// What the step is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The message name (`duban message NAME --key K`).
    pub message: String,
    /// CEL giving this instance's key.
    pub correlation: String,
    /// Variables the message may set.
    #[serde(default)]
    pub fields: Vec<String>,
    /// The step after it.
    pub next: String,
    /// An optional timeout (`within`: the message is taken whenever it comes).
    #[serde(default)]
    #[schemars(transform = s::timeout)]
    pub deadline: Option<RawDeadline>,
}

/// `kind: wait_timer`: wait until a period has run.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWaitTimer {
    /// The step kind.
    #[serde(rename = "kind")]
    #[schemars(skip)]
    pub _kind: serde::de::IgnoredAny,
    /// The step's display name.
    pub name: String,
    /// What the step is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The period to wait, a deadline without `on_expiry`.
    #[schemars(transform = s::timer)]
    pub timer: RawDeadline,
    /// The step after it, when the timer ends.
    pub next: String,
    /// The rule ids the step implements.
    #[serde(default)]
    #[schemars(transform = s::rule_ids)]
    pub rules: Vec<String>,
}

/// `kind: end`: ends the whole instance with its result.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEnd {
    /// The step kind.
    #[serde(rename = "kind")]
    #[schemars(skip)]
    pub _kind: serde::de::IgnoredAny,
    /// The step's display name.
    pub name: String,
    /// What the step is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The result, an id; a caller's `result:` variable receives it.
    #[schemars(transform = s::id)]
    pub result: String,
    /// Documents rendered when the instance ends here.
    #[serde(default)]
    pub documents: Vec<String>,
}
