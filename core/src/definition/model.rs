//! Stage 2: the checked model of a definition.
//!
//! A [`Definition`] exists only if its file passed every check: every step,
//! role, variable, template, document and parameter it names exists; every
//! period, cron expression and CEL condition is parsed; every step is
//! reachable and can reach an end. The runtime works on this model alone and
//! never re-parses text on its hot path.

use std::fmt;
use std::sync::Arc;

use chrono::NaiveTime;
use indexmap::IndexMap;

use crate::calendar::{Bound, Period};

/// A checked process definition.
#[derive(Clone, Debug)]
pub struct Definition {
    /// Stable identifier, e.g. `supervision_letter`.
    pub id: String,
    /// Version number written by the administrator; deployment keeps versions apart.
    pub version: u32,
    /// Display name, in Chinese.
    pub name: String,
    /// What the process is for.
    pub description: Option<String>,
    /// The rule IDs of `docs/rules.md` this definition implements.
    pub rules: Vec<String>,
    /// The roles the process refers to, by id.
    pub roles: IndexMap<String, Role>,
    /// The profile parameters, by name.
    pub parameters: IndexMap<String, Parameter>,
    /// The jurisdiction profiles, by id.
    pub profiles: IndexMap<String, Profile>,
    /// The profile used when a start names none.
    pub default_profile: Option<String>,
    /// The instance variables, by name.
    pub variables: IndexMap<String, Variable>,
    /// The first step.
    pub start: String,
    /// The steps, by id, in file order.
    pub steps: IndexMap<String, Step>,
    /// Notification rules.
    pub notifications: Vec<Notification>,
    /// Numbering series of documents, by id (the variable each number goes to).
    pub numbering: IndexMap<String, Numbering>,
    /// Documents the process renders, by id.
    pub documents: IndexMap<String, Document>,
    /// Message and document templates, by id.
    pub templates: IndexMap<String, Template>,
    /// Recurring starts.
    pub schedule: Vec<RecurringStart>,
    /// The facts its CEL expressions read (`facts(s, 'NAME')`, `last_fact`,
    /// `streak`): when empty, the engine loads no facts for its events.
    pub facts_read: std::collections::BTreeSet<String>,
    /// Whether a step is a `report`: when not, the engine loads no notices
    /// for its events.
    pub has_reports: bool,
}

/// A role, e.g. `supervision_office: 行政执法监督机构`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    /// Display name.
    pub name: String,
    /// Longer explanation.
    pub description: Option<String>,
}

/// The type of a variable or parameter value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// A short text.
    String,
    /// A long text (reports, opinions).
    Text,
    /// An integer.
    Int,
    /// True or false.
    Bool,
    /// A calendar date.
    Date,
    /// An instant.
    DateTime,
    /// One of a fixed list of values.
    Enum(Vec<String>),
    /// An email address.
    Email,
    /// A mainland mobile number.
    Phone,
    /// A person of the directory.
    Person,
    /// An agency of the directory.
    Agency,
    /// A legal period (`30日`), e.g. the deadline a letter sets.
    Period,
    /// A role id (parameters only).
    Role,
    /// A list of values of one type.
    List(Box<ValueType>),
}

impl ValueType {
    /// Whether a value of this type can start a deadline (`from:`).
    pub fn is_temporal(&self) -> bool {
        matches!(self, ValueType::Date | ValueType::DateTime)
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::String => f.write_str("string"),
            ValueType::Text => f.write_str("text"),
            ValueType::Int => f.write_str("int"),
            ValueType::Bool => f.write_str("bool"),
            ValueType::Date => f.write_str("date"),
            ValueType::DateTime => f.write_str("datetime"),
            ValueType::Enum(_) => f.write_str("enum"),
            ValueType::Email => f.write_str("email"),
            ValueType::Phone => f.write_str("phone"),
            ValueType::Person => f.write_str("person"),
            ValueType::Agency => f.write_str("agency"),
            ValueType::Period => f.write_str("period"),
            ValueType::Role => f.write_str("role"),
            ValueType::List(t) => write!(f, "list<{t}>"),
        }
    }
}

/// A checked value (defaults, profile values, schedule variables).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// string, text, email, phone, person, agency, enum, role.
    Text(String),
    /// int.
    Int(i64),
    /// bool.
    Bool(bool),
    /// date.
    Date(chrono::NaiveDate),
    /// datetime.
    DateTime(chrono::DateTime<chrono::FixedOffset>),
    /// period.
    Period(Period),
    /// list<…>.
    List(Vec<Value>),
}

/// An instance variable.
#[derive(Clone, Debug, PartialEq)]
pub struct Variable {
    /// Its type.
    pub ty: ValueType,
    /// Must be given when the instance starts.
    pub required: bool,
    /// The value when none is given.
    pub default: Option<Value>,
    /// Label shown on forms, in Chinese.
    pub label: Option<String>,
    /// Longer explanation.
    pub description: Option<String>,
    /// For lists: the fewest items allowed.
    pub min_items: Option<u32>,
    /// For lists: the most items allowed.
    pub max_items: Option<u32>,
    /// For an enum whose values a profile sets (`values: profile.PARAM`):
    /// the parameter. `ty` then holds every value of any profile, and a
    /// value must be one of the instance's profile's
    /// (`runtime::values::in_profile`).
    pub values_from: Option<String>,
}

/// A profile parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Parameter {
    /// Its type.
    pub ty: ValueType,
    /// The value for profiles that do not set it.
    pub default: Option<Value>,
    /// What it controls.
    pub description: Option<String>,
}

/// A jurisdiction profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Display name, e.g. `邵阳市双清区`.
    pub name: String,
    /// Rule IDs specific to this profile.
    pub rules: Vec<String>,
    /// A value for every parameter (defaults filled in).
    pub values: IndexMap<String, Value>,
}

/// A role reference: a role id, or a profile parameter of type role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleRef {
    /// A declared role.
    Role(String),
    /// `profile.NAME`: the role the profile names.
    Param(String),
}

/// A party: who does a task, receives a notice or a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Party {
    /// Everyone holding a role, optionally only within the organisation unit
    /// (county, `市本级`) held in a variable: XT-7 routes a dispute to the
    /// city or the county coordination department this way.
    Role {
        /// The role.
        role: RoleRef,
        /// The variable naming the unit, when the role is scoped.
        within: Option<String>,
    },
    /// One person of the directory, by id.
    Person(String),
    /// The person(s) or agency held in a variable.
    Variable(String),
    /// The assignee(s) of the step concerned (notifications only).
    Assignee,
}

/// A period as written: a literal, a profile parameter, or a variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeriodRef {
    /// `30日`.
    Literal(Period),
    /// `profile.notice_period`.
    Param(String),
    /// `var.reply_period`.
    Variable(String),
    /// `until: var.rectify_by`: not a period but the date (or instant) a
    /// variable holds, e.g. the rectification deadline an agency set.
    Until(String),
}

/// What a deadline is counted from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartRef {
    /// When the task or notice opens (default).
    Opened,
    /// When the recipient acknowledged receipt of the notice.
    Receipt,
    /// The date or instant held in a variable.
    Variable(String),
}

/// A deadline, minimum or timer on a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadlineDef {
    /// The period.
    pub period: PeriodRef,
    /// What it counts from.
    pub from: StartRef,
    /// Deadline or minimum.
    pub bound: Bound,
    /// Count the start day.
    pub include_start_day: bool,
    /// Move a last day that is a rest day to the next working day
    /// (`extend_on_rest_day`, default true; false only on a `wait_timer`'s
    /// timer: a term of office, a bar).
    pub extend: bool,
    /// Business-hours cut-off instead of 24:00.
    pub cutoff: Option<NaiveTime>,
    /// Reminders, each a period before the cut-off.
    pub reminders: Vec<Period>,
    /// Send reminders at the computed instant even outside working hours
    /// (by default they are held back to working hours on a working day).
    pub remind_at_any_hour: bool,
    /// What expiry does.
    pub on_expiry: Option<Expiry>,
}

/// What happens when a deadline expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// The step to go to.
    pub goto: Option<String>,
    /// Roles to notify (escalation).
    pub notify: Vec<RoleRef>,
    /// The template of the escalation message.
    pub template: Option<String>,
}

/// A compiled CEL expression with its source text.
#[derive(Clone)]
pub struct Expr {
    /// The text as written.
    pub source: String,
    /// The compiled program.
    pub program: Arc<cel::Program>,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

/// A check on an outcome; failing it rejects the completion with the message.
#[derive(Clone, Debug)]
pub struct Guard {
    /// Must evaluate to true.
    pub check: Expr,
    /// Shown when it does not, e.g. naming SQ-7.
    pub message: String,
    /// The rule the guard enforces.
    pub rule: Option<String>,
}

/// One result of a task or notice.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Label on the form, in Chinese.
    pub label: String,
    /// The step that follows.
    pub next: String,
    /// Variables the completer must supply.
    pub fields: Vec<String>,
    /// Variables the completer may supply.
    pub optional_fields: Vec<String>,
    /// Variables computed on completion.
    pub set: Vec<(String, Expr)>,
    /// Checks that must hold.
    pub guards: Vec<Guard>,
    /// Documents rendered on completion.
    pub documents: Vec<String>,
    /// Facts recorded on completion.
    pub record: Vec<RecordFact>,
}

/// A `record:` entry of an outcome or a decision branch: a fact about a
/// person or agency, kept across processes (`runtime::facts`).
#[derive(Clone, Debug)]
pub struct RecordFact {
    /// The fact's name.
    pub fact: String,
    /// The person or agency variable it is about (a `for_each` step's `as`
    /// variable is its item).
    pub about: String,
    /// What is recorded: a text, int or bool; nothing when `None`.
    pub value: Option<Expr>,
    /// A note for the history, in Chinese.
    pub note: Option<String>,
}

/// A step of the process.
#[derive(Clone, Debug)]
pub struct Step {
    /// Display name, in Chinese.
    pub name: String,
    /// Longer explanation.
    pub description: Option<String>,
    /// Rule IDs this step implements.
    pub rules: Vec<String>,
    /// What the step does.
    pub kind: StepKind,
    /// Run once per item of a list (tasks, notices and calls).
    pub for_each: Option<ForEach>,
}

/// `for_each:` on a task, notice or call: the step runs once per item of a
/// list variable (BPMN's multi-instance), each item with its own task,
/// notice or child, assignee, deadline and results; the step goes on to
/// its `next` when `complete_when` holds.
#[derive(Clone, Debug)]
pub struct ForEach {
    /// The list variable whose items the step runs over (read when the
    /// step is entered; later changes do not add or remove items).
    pub items: String,
    /// The declared variable that holds the item within each of them.
    pub var: String,
    /// One item after another instead of all at once.
    pub sequential: bool,
    /// When the step is done.
    pub complete_when: CompleteWhen,
    /// List variables filled from the finished items, in item order.
    pub collect: Vec<(String, Collect)>,
}

/// When a `for_each` step is done (it is always done once every item has
/// finished).
#[derive(Clone, Debug)]
pub enum CompleteWhen {
    /// Every item has finished.
    All,
    /// At least this many items have finished (`any` is 1).
    AtLeast(u32),
    /// A CEL condition over the variables, evaluated after each item
    /// finishes (the `collect` lists then hold the results so far).
    Condition(Expr),
}

/// What a `collect` list variable receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Collect {
    /// The items that finished with this outcome (a call: child result).
    Outcome(String),
    /// Each finished item's value of this field, when it gave one.
    Field(String),
}

/// The step kinds.
#[derive(Clone, Debug)]
pub enum StepKind {
    /// Work for staff.
    Task {
        /// Who does it.
        assignee: Party,
        /// The fewest people it must be assigned to (XT-13).
        min_assignees: u32,
        /// Its results, by id.
        outcomes: IndexMap<String, Outcome>,
        /// Its deadline.
        deadline: Option<DeadlineDef>,
        /// Documents rendered when it opens.
        documents: Vec<String>,
        /// Recusal (回避) on it: who decides a request, and how they hear of it.
        recusal: Option<RecusalDef>,
    },
    /// A notice to an external party who answers through a link.
    Notice {
        /// The recipient.
        to: Party,
        /// The email template carrying the link.
        template: String,
        /// Documents attached.
        documents: Vec<String>,
        /// The answers, by id.
        outcomes: IndexMap<String, Outcome>,
        /// The answer deadline.
        deadline: Option<DeadlineDef>,
        /// Receipt deemed this long after the notice's email reached the
        /// recipient's mail server, unless the recipient acknowledged it
        /// first: a `from: receipt` deadline then starts all the same.
        deemed_receipt: Option<PeriodRef>,
    },
    /// Branches on conditions.
    Decision {
        /// Tried in order; the first that holds wins.
        branches: Vec<Branch>,
        /// Taken when none holds.
        default: String,
        /// An inclusive choice: every branch that holds is taken, and
        /// they meet again at this join.
        join: Option<String>,
    },
    /// Starts branches that run in parallel.
    Parallel {
        /// The first step of each branch.
        branches: Vec<String>,
        /// The join where they meet.
        join: String,
    },
    /// Waits for every branch of its parallel split.
    Join {
        /// The step after the join.
        next: String,
    },
    /// Runs another process and waits for its result.
    Call {
        /// The called process id.
        process: String,
        /// Its profile.
        profile: Option<String>,
        /// Child variable ← expression over the parent's variables.
        inputs: Vec<(String, Expr)>,
        /// Parent variable receiving the child's result.
        result: Option<String>,
        /// Parent variable ← the child's variable, copied when it ends.
        outputs: Vec<(String, String)>,
        /// The step after the call.
        next: String,
        /// Wait for the child to end (`wait: false`: start it and go on at
        /// once; it then runs on its own).
        wait: bool,
        /// How long to wait for it (`on_expiry.goto` gives up on it: the
        /// child is cancelled).
        deadline: Option<DeadlineDef>,
    },
    /// Sends a message to the instances (of any process) waiting for it.
    SendMessage {
        /// The message name.
        message: String,
        /// Expression giving the correlation key, or a list of keys (one
        /// message per key).
        key: Expr,
        /// Variables the message carries: name ← expression.
        variables: Vec<(String, Expr)>,
        /// The step after it.
        next: String,
    },
    /// Counts how the notices of a period were answered
    /// (`runtime::reports`) into variables.
    Report {
        /// Only instances of this process (every process when `None`).
        process: Option<String>,
        /// Only notices of this step (every notice step when `None`).
        step: Option<String>,
        /// The date or datetime variable of the period's first day.
        from: String,
        /// The date or datetime variable of its last day.
        until: String,
        /// The agency variable whose numbers are taken; all agencies'
        /// together when `None`.
        agency: Option<String>,
        /// Measure (`runtime::reports::MEASURES`) → variable.
        into: Vec<(String, String)>,
        /// The step after it.
        next: String,
    },
    /// Waits for a message correlated by key.
    WaitMessage {
        /// The message name.
        message: String,
        /// Expression giving the correlation key.
        correlation: Expr,
        /// Variables the message may set.
        fields: Vec<String>,
        /// The step after the message.
        next: String,
        /// A timeout.
        deadline: Option<DeadlineDef>,
    },
    /// Waits until a period has run.
    WaitTimer {
        /// The period.
        timer: DeadlineDef,
        /// The step after it.
        next: String,
    },
    /// Ends the instance with a result.
    End {
        /// The result name.
        result: String,
        /// Documents rendered at the end.
        documents: Vec<String>,
    },
}

impl StepKind {
    /// The kind as written in YAML.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Task { .. } => "task",
            StepKind::Notice { .. } => "notice",
            StepKind::Decision { .. } => "decision",
            StepKind::Parallel { .. } => "parallel",
            StepKind::Join { .. } => "join",
            StepKind::Call { .. } => "call",
            StepKind::SendMessage { .. } => "send_message",
            StepKind::Report { .. } => "report",
            StepKind::WaitMessage { .. } => "wait_message",
            StepKind::WaitTimer { .. } => "wait_timer",
            StepKind::End { .. } => "end",
        }
    }

    /// The deadline that can expire on this step: a task's, a notice's or
    /// a `wait_message` timeout.
    pub fn deadline(&self) -> Option<&DeadlineDef> {
        match self {
            StepKind::Task { deadline, .. }
            | StepKind::Notice { deadline, .. }
            | StepKind::Call { deadline, .. }
            | StepKind::WaitMessage { deadline, .. } => deadline.as_ref(),
            _ => None,
        }
    }
}

/// `recusal:` on a task: a participant may declare a conflict, or a
/// supervised party request a participant's recusal; the holders of
/// `decided_by` decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecusalDef {
    /// The role that decides a request.
    pub decided_by: RoleRef,
    /// The template that tells the deciders of a request (email and SMS).
    pub template: Option<String>,
}

/// A branch of a decision.
#[derive(Clone, Debug)]
pub struct Branch {
    /// The condition.
    pub when: Expr,
    /// Where it leads.
    pub goto: String,
    /// Variables computed when it is taken.
    pub set: Vec<(String, Expr)>,
    /// Recorded in history when taken (e.g. the article a rejection cites).
    pub note: Option<String>,
    /// The rule it implements.
    pub rule: Option<String>,
    /// Facts recorded when it is taken.
    pub record: Vec<RecordFact>,
}

/// Events a notification can be sent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// An instance started.
    InstanceStarted,
    /// A task opened.
    TaskOpened,
    /// A task was completed.
    TaskCompleted,
    /// A notice was sent.
    NoticeSent,
    /// A notice was answered.
    NoticeAnswered,
    /// A reminder fell due.
    Reminder,
    /// A deadline expired.
    Expired,
    /// An escalation was raised.
    Escalated,
    /// An instance ended at an `end` step (not when it was cancelled).
    InstanceEnded,
    /// An instance was cancelled (`duban cancel`, its caller's cancellation).
    InstanceCancelled,
}

impl Event {
    /// Every event with its YAML name.
    pub const ALL: &'static [(&'static str, Event)] = &[
        ("instance_started", Event::InstanceStarted),
        ("task_opened", Event::TaskOpened),
        ("task_completed", Event::TaskCompleted),
        ("notice_sent", Event::NoticeSent),
        ("notice_answered", Event::NoticeAnswered),
        ("reminder", Event::Reminder),
        ("expired", Event::Expired),
        ("escalated", Event::Escalated),
        ("instance_ended", Event::InstanceEnded),
        ("instance_cancelled", Event::InstanceCancelled),
    ];
}

/// A channel a notification is sent by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Email (HTML and plain text).
    Email,
    /// SMS.
    Sms,
}

impl Channel {
    /// The outbox kind of its notifications: `email` or `sms`.
    pub fn kind(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

/// A notification rule.
#[derive(Clone, Debug)]
pub struct Notification {
    /// The event.
    pub on: Event,
    /// Only for this step, when given.
    pub step: Option<String>,
    /// Recipients.
    pub to: Vec<Party>,
    /// Channels.
    pub channels: Vec<Channel>,
    /// Template id.
    pub template: String,
}

/// A numbering series (发文字号): what a number looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Numbering {
    /// The pattern (`{year}`, `{n}`), or the profile parameter holding it.
    pub pattern: PatternRef,
    /// What the series numbers.
    pub description: Option<String>,
    /// A start that gives no value for the series' variable takes a number.
    pub on_start: bool,
}

/// A numbering pattern as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatternRef {
    /// `许司督〔{year}〕{n}号`.
    Literal(String),
    /// `profile.letter_number`.
    Param(String),
}

/// Checks a numbering pattern: one `{n}`, and no placeholder but `{n}` and
/// `{year}`. The reason when it is not one.
pub fn pattern_problem(p: &str) -> Option<String> {
    if p.matches("{n}").count() != 1 {
        return Some(format!("`{p}` must hold `{{n}}` (the number) exactly once"));
    }
    let rest = p.replace("{n}", "").replace("{year}", "");
    if rest.contains('{') || rest.contains('}') {
        return Some(format!(
            "`{p}`: the only placeholders are `{{year}}` and `{{n}}`"
        ));
    }
    None
}

/// The kinds of official document the process library renders.
pub const DOCUMENT_KINDS: &[&str] = &[
    "意见书",
    "决定书",
    "督办函",
    "通知书",
    "聘书",
    "公告",
    "建议书",
    "协议书",
    "记录",
];

/// A document to render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// One of [`DOCUMENT_KINDS`].
    pub kind: String,
    /// Title, e.g. `行政执法监督决定书`.
    pub title: String,
    /// Template id.
    pub template: String,
    /// The numbering series whose next number it takes when issued.
    pub number: Option<String>,
    /// The 主送机关, a handlebars text.
    pub to: Option<String>,
    /// The 发文机关 (版头 and 署名), a handlebars text.
    pub issuer: Option<String>,
    /// The 附件, each a handlebars text.
    pub attachments: Vec<String>,
    /// The layout of its PDF.
    pub layout: LayoutRef,
}

/// The layouts of a document's PDF (the 党政机关公文格式, GB/T 9704-2012,
/// for the kinds an office issues as 公文).
pub const LAYOUTS: &[&str] = &["函", "意见书", "决定书", "通知书", "聘书", "公告", "记录"];

/// The layout a document kind takes when its document names none.
pub fn default_layout(kind: &str) -> &'static str {
    match kind {
        "督办函" => "函",
        "意见书" | "建议书" => "意见书",
        "决定书" => "决定书",
        "通知书" => "通知书",
        "聘书" => "聘书",
        "公告" => "公告",
        _ => "记录",
    }
}

/// Where a document's layout comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutRef {
    /// One of [`LAYOUTS`].
    Named(String),
    /// A text parameter of the profile whose value is one of [`LAYOUTS`].
    Param(String),
}

impl Definition {
    /// The layout of document `doc` under profile `profile`: the named one,
    /// or the profile's value of the parameter (its default without a
    /// profile), falling back to the kind's own.
    pub fn layout_of(&self, doc: &Document, profile: Option<&str>) -> String {
        match &doc.layout {
            LayoutRef::Named(n) => n.clone(),
            LayoutRef::Param(param) => {
                let value = profile
                    .and_then(|p| self.profiles.get(p))
                    .and_then(|p| p.values.get(param))
                    .or_else(|| self.parameters.get(param).and_then(|d| d.default.as_ref()));
                match value {
                    Some(Value::Text(t)) if LAYOUTS.contains(&t.as_str()) => t.clone(),
                    _ => default_layout(&doc.kind).to_string(),
                }
            }
        }
    }
}

/// A message or document template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// Email subject.
    pub subject: Option<String>,
    /// The body text (read from `file:` when given there).
    pub body: String,
    /// The SMS text.
    pub sms: Option<String>,
    /// The parameters of a gateway's pre-approved SMS template (Aliyun's
    /// `TemplateParam`), each a handlebars text.
    pub sms_params: IndexMap<String, String>,
}

/// A recurring start.
#[derive(Clone, Debug)]
pub struct RecurringStart {
    /// The cron expression as written (5 fields get a leading seconds field).
    pub cron: String,
    /// The parsed schedule.
    pub schedule: cron::Schedule,
    /// Its time zone (Asia/Shanghai unless given).
    pub timezone: chrono_tz::Tz,
    /// The profile of the started instances.
    pub profile: Option<String>,
    /// Variables of the started instances.
    pub variables: IndexMap<String, Value>,
    /// What the recurring start is for.
    pub description: Option<String>,
    /// One instance per member, instead of one per occurrence.
    pub for_each: Option<Members>,
}

/// Who a recurring start starts one instance for (`for_each:` on a
/// `schedule:` entry), each with itself in the variable `var`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    /// Whom.
    pub of: MemberSet,
    /// The person or agency variable that holds the member.
    pub var: String,
}

/// The members of a per-member recurring start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberSet {
    /// Every holder of a role (each serving supervisor).
    Role(String),
    /// Every agency of the directory, or of one level (`县级`).
    Agencies(Option<String>),
}
