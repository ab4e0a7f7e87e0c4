//! The lines of an instance's history: what kind of thing happened, and a
//! builder so each line says only what it has.
//!
//! [`HistoryKind`] is the protocol between the core and everything that
//! reads history (the store, the simulator's expectations, `duban show`):
//! stored as its snake_case name, compared as an enum.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::calendar::Deadline;

/// What kind of event a history line records. Stored by its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// The instance started.
    Started,
    /// A task opened.
    TaskOpened,
    /// A notice was sent to its recipient.
    NoticeSent,
    /// A task was completed with an outcome.
    TaskCompleted,
    /// A notice was answered with an outcome.
    NoticeAnswered,
    /// The recipient of a notice acknowledged receipt.
    Received,
    /// A notice's email reached the recipient's mail server.
    Delivered,
    /// A recusal (回避) was requested on a task.
    RecusalRequested,
    /// A recusal was decided.
    RecusalDecided,
    /// A `wait_message` step received its message.
    Message,
    /// A called child ended and its result reached this instance.
    ChildEnded,
    /// A reminder before a deadline.
    Reminder,
    /// A `wait_timer` period ran.
    Timer,
    /// A deadline expired.
    Expired,
    /// An expiry escalated to roles.
    Escalated,
    /// A decision chose a branch.
    Decided,
    /// A parallel step split.
    Split,
    /// A join's branches all arrived.
    Joined,
    /// A `call` started a child.
    Called,
    /// A wait began.
    Waiting,
    /// A provisional deadline was counted again on the official calendar.
    Recomputed,
    /// An `end` step was reached.
    Ended,
    /// An administrator cancelled the instance.
    Cancelled,
    /// A fault stopped the instance; it waits for `duban retry`.
    Stuck,
    /// An administrator retried the event that stuck the instance.
    Retried,
    /// An administrator set variables.
    VariablesSet,
    /// A fact about a person or agency was recorded (`record:`).
    FactRecorded,
    /// A `report` step counted the notices of a period.
    Counted,
    /// An administrator gave an open task to other people (`duban reassign`).
    Reassigned,
    /// An administrator moved the instance to another version of its
    /// definition (`duban migrate apply`).
    Migrated,
}

impl HistoryKind {
    /// Every kind.
    pub const ALL: [HistoryKind; 30] = {
        use HistoryKind::*;
        [
            Started,
            TaskOpened,
            NoticeSent,
            TaskCompleted,
            NoticeAnswered,
            Received,
            Delivered,
            RecusalRequested,
            RecusalDecided,
            Message,
            ChildEnded,
            Reminder,
            Timer,
            Expired,
            Escalated,
            Decided,
            Split,
            Joined,
            Called,
            Waiting,
            Recomputed,
            Ended,
            Cancelled,
            Stuck,
            Retried,
            VariablesSet,
            FactRecorded,
            Counted,
            Reassigned,
            Migrated,
        ]
    };

    /// The snake_case name it is stored and printed as.
    pub fn as_str(self) -> &'static str {
        use HistoryKind::*;
        match self {
            Started => "started",
            TaskOpened => "task_opened",
            NoticeSent => "notice_sent",
            TaskCompleted => "task_completed",
            NoticeAnswered => "notice_answered",
            Received => "received",
            Delivered => "delivered",
            RecusalRequested => "recusal_requested",
            RecusalDecided => "recusal_decided",
            Message => "message",
            ChildEnded => "child_ended",
            Reminder => "reminder",
            Timer => "timer",
            Expired => "expired",
            Escalated => "escalated",
            Decided => "decided",
            Split => "split",
            Joined => "joined",
            Called => "called",
            Waiting => "waiting",
            Recomputed => "recomputed",
            Ended => "ended",
            Cancelled => "cancelled",
            Stuck => "stuck",
            Retried => "retried",
            VariablesSet => "variables_set",
            FactRecorded => "fact_recorded",
            Counted => "counted",
            Reassigned => "reassigned",
            Migrated => "migrated",
        }
    }

    /// What the line records, in Chinese, for the pages staff and agencies
    /// read (the timeline of an instance).
    pub fn label(self) -> &'static str {
        use HistoryKind::*;
        match self {
            Started => "启动",
            TaskOpened => "任务开启",
            NoticeSent => "发出通知",
            TaskCompleted => "办结任务",
            NoticeAnswered => "答复通知",
            Received => "签收",
            Delivered => "送达",
            RecusalRequested => "申请回避",
            RecusalDecided => "回避决定",
            Message => "收到消息",
            ChildEnded => "子流程办结",
            Reminder => "提醒",
            Timer => "定时",
            Expired => "期限届满",
            Escalated => "督促上报",
            Decided => "判定",
            Split => "分头办理",
            Joined => "汇总",
            Called => "启动子流程",
            Waiting => "等待",
            Recomputed => "重新计算期限",
            Ended => "办结",
            Cancelled => "撤销",
            Stuck => "处理故障，待管理员处置",
            Retried => "重试",
            VariablesSet => "修改事项信息",
            FactRecorded => "记录",
            Counted => "统计",
            Reassigned => "改派",
            Migrated => "迁移版本",
        }
    }

    /// The kind named `s`, if any.
    pub fn parse(s: &str) -> Option<HistoryKind> {
        HistoryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[cfg(test)]
#[test]
fn every_kind_round_trips_through_its_stored_name() {
    for k in HistoryKind::ALL {
        assert_eq!(HistoryKind::parse(k.as_str()), Some(k));
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
    }
}

impl std::fmt::Display for HistoryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One line of an instance's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who: a person or agency id, or `engine`.
    pub actor: String,
    /// What kind of event.
    pub what: HistoryKind,
    /// The step before.
    pub step_before: Option<String>,
    /// The step after.
    pub step_after: Option<String>,
    /// The variables changed, with their new values.
    pub changed: BTreeMap<String, serde_json::Value>,
    /// A deadline computed by this event, with its explanation.
    pub deadline: Option<Deadline>,
    /// A human-readable note (a decision's `note`, a cancellation reason …).
    pub note: Option<String>,
    /// People the entry concerns (assignees, completer): for 一人一档 (RC-14).
    pub people: Vec<String>,
    /// For a line written by a timer's application: when the timer was due
    /// (`at` is when it was applied, later if the engine was down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<DateTime<Utc>>,
}

impl HistoryEntry {
    /// A line saying `actor` did `what` at `at`; the rest is added by the
    /// builder methods below.
    pub fn new(at: DateTime<Utc>, actor: &str, what: HistoryKind) -> Self {
        HistoryEntry {
            at,
            actor: actor.into(),
            what,
            step_before: None,
            step_after: None,
            changed: BTreeMap::new(),
            deadline: None,
            note: None,
            people: Vec::new(),
            due: None,
        }
    }

    /// The step it happened at.
    pub fn from(mut self, step: impl Into<String>) -> Self {
        self.step_before = Some(step.into());
        self
    }

    /// The step it led to.
    pub fn to(mut self, step: impl Into<String>) -> Self {
        self.step_after = Some(step.into());
        self
    }

    /// The step it led to, if any.
    pub fn to_opt(mut self, step: Option<String>) -> Self {
        self.step_after = step;
        self
    }

    /// The step it happened at, if any.
    pub fn from_opt(mut self, step: Option<String>) -> Self {
        self.step_before = step;
        self
    }

    /// At `step`, staying there (a reminder, a receipt, an expiry).
    pub fn at_step(self, step: &str) -> Self {
        self.from(step).to(step)
    }

    /// The variables it changed.
    pub fn changed(mut self, changed: BTreeMap<String, serde_json::Value>) -> Self {
        self.changed = changed;
        self
    }

    /// The deadline it computed.
    pub fn deadline(mut self, d: Option<Deadline>) -> Self {
        self.deadline = d;
        self
    }

    /// A note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// The people it concerns.
    pub fn people(mut self, people: Vec<String>) -> Self {
        self.people = people;
        self
    }
}
