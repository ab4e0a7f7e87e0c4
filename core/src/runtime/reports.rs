//! Reports over instances: how the notices sent to agencies were answered
//! in a period (XT-15 statistics, XT-16 annual evaluation of agencies).
//!
//! A `report` step counts, over the notices of a process (or of every
//! process) dispatched between two dates, per agency: how many were sent,
//! answered, answered on time, overdue, escalated, and the average days to
//! an answer — and stores the numbers in variables a document renders. The
//! same numbers, for every agency, come from `duban report`.
//!
//! The core reads no store: the service loads the notices a step asks for
//! into [`Reports`] before applying an event, as it loads facts
//! (`super::facts`). A query that was not loaded is noted
//! ([`Reports::take_missing`]) and the step fails; the service then loads it
//! and applies the event again from the same state. What a notice counts as
//! is decided here, once, in [`tally`], for the step and `duban report`
//! alike, from the rows the store gives ([`NoticeRecord`]).
//!
//! A notice counts in the period when it was dispatched (opened) on a
//! Beijing date from `from` to `until`, both included:
//!
//! - **opened**: every such notice;
//! - **answered**: closed with one of its step's outcomes (not closed by
//!   the engine: `expired`, `not_needed`, `cancelled`, `ended`);
//! - **on_time**: answered by its deadline's cut-off (or without a
//!   deadline);
//! - **overdue**: answered after its cut-off, closed `expired`, or still
//!   open with its cut-off passed at the instant of the report;
//! - **escalated**: its step escalated on expiry in its instance;
//! - **average_days**: the mean time from dispatch to answer, in calendar
//!   days, over the answered ones (none when nothing was answered).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::calendar::LEGAL_TZ;

/// The outcomes the engine closes a notice with, which are no answer.
pub const ENGINE_CLOSINGS: [&str; 4] = ["expired", "not_needed", "cancelled", "ended"];

/// The numbers a report gives, by name as `into:` names them.
pub const MEASURES: [&str; 6] = [
    "opened",
    "answered",
    "on_time",
    "overdue",
    "escalated",
    "average_days",
];

/// What a report counts over.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReportQuery {
    /// Only instances of this process; every process when `None`.
    pub process: Option<String>,
    /// Only notices of this step; every notice step when `None`.
    pub step: Option<String>,
    /// The first Beijing date of the period.
    pub from: NaiveDate,
    /// The last Beijing date of the period.
    pub until: NaiveDate,
}

impl ReportQuery {
    /// The instants the period covers: from `from` 00:00 to the end of
    /// `until`, Beijing time, as a half-open range.
    pub fn window(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = |d: NaiveDate| {
            LEGAL_TZ
                .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
                .single()
                .expect("Beijing time has no gaps")
                .with_timezone(&Utc)
        };
        let end = self
            .until
            .succ_opt()
            .map_or(DateTime::<Utc>::MAX_UTC, start);
        (start(self.from), end)
    }
}

/// One notice as the store has it, for [`tally`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoticeRecord {
    /// Its instance.
    pub instance: String,
    /// The instance's process.
    pub process: String,
    /// Its step.
    pub step: String,
    /// Its recipients (agency ids).
    pub to: Vec<String>,
    /// When it was dispatched.
    pub opened_at: DateTime<Utc>,
    /// Its deadline's cut-off, once known.
    pub due: Option<DateTime<Utc>>,
    /// When it closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// How: an outcome of its step, or one of [`ENGINE_CLOSINGS`].
    pub outcome: Option<String>,
    /// Whether its step escalated on expiry in its instance.
    pub escalated: bool,
}

/// The numbers of one agency, or of all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Notices sent.
    pub opened: u64,
    /// Answered.
    pub answered: u64,
    /// Answered by the cut-off.
    pub on_time: u64,
    /// Answered late, expired, or open past the cut-off.
    pub overdue: u64,
    /// Escalated on expiry.
    pub escalated: u64,
    /// Days from dispatch to answer, summed over the answered.
    pub answer_days: f64,
}

impl Stats {
    /// The mean days to an answer, to one decimal; `None` when none was
    /// answered.
    pub fn average_days(&self) -> Option<f64> {
        (self.answered > 0).then(|| (self.answer_days / self.answered as f64 * 10.0).round() / 10.0)
    }

    fn add(&mut self, o: &Stats) {
        self.opened += o.opened;
        self.answered += o.answered;
        self.on_time += o.on_time;
        self.overdue += o.overdue;
        self.escalated += o.escalated;
        self.answer_days += o.answer_days;
    }

    /// The numbers of every agency together.
    pub fn total<'a>(all: impl IntoIterator<Item = &'a Stats>) -> Stats {
        let mut t = Stats::default();
        for s in all {
            t.add(s);
        }
        t
    }

    /// The value of `measure` ([`MEASURES`]) as JSON: an int, or for
    /// `average_days` a number with one decimal (null when none).
    pub fn measure(&self, measure: &str) -> serde_json::Value {
        use serde_json::json;
        match measure {
            "opened" => json!(self.opened),
            "answered" => json!(self.answered),
            "on_time" => json!(self.on_time),
            "overdue" => json!(self.overdue),
            "escalated" => json!(self.escalated),
            "average_days" => self.average_days().map_or(json!(null), |d| json!(d)),
            _ => json!(null),
        }
    }
}

/// The numbers per agency of the notices of `q` among `rows`, as at `now`.
/// A notice to several agencies counts for each.
pub fn tally(
    q: &ReportQuery,
    rows: &[NoticeRecord],
    now: DateTime<Utc>,
) -> BTreeMap<String, Stats> {
    let (start, end) = q.window();
    let mut out: BTreeMap<String, Stats> = BTreeMap::new();
    for r in rows {
        if r.opened_at < start
            || r.opened_at >= end
            || q.process.as_ref().is_some_and(|p| *p != r.process)
            || q.step.as_ref().is_some_and(|s| *s != r.step)
        {
            continue;
        }
        let mut s = Stats {
            opened: 1,
            ..Stats::default()
        };
        let answered_at = match (&r.outcome, r.closed_at) {
            (Some(o), Some(at)) if !ENGINE_CLOSINGS.contains(&o.as_str()) => Some(at),
            _ => None,
        };
        match answered_at {
            Some(at) => {
                s.answered = 1;
                s.answer_days = (at - r.opened_at).num_seconds().max(0) as f64 / 86_400.0;
                if r.due.is_none_or(|due| at <= due) {
                    s.on_time = 1;
                } else {
                    s.overdue = 1;
                }
            }
            None => {
                let expired = r.outcome.as_deref() == Some("expired");
                let open_late = r.closed_at.is_none() && r.due.is_some_and(|due| due < now);
                if expired || open_late {
                    s.overdue = 1;
                }
            }
        }
        if r.escalated {
            s.escalated = 1;
        }
        for a in &r.to {
            out.entry(a.clone()).or_default().add(&s);
        }
    }
    out
}

/// The reports the core may read while one event is applied: the notices of
/// each loaded query.
#[derive(Debug, Default)]
pub struct Reports {
    loaded: BTreeMap<ReportQuery, Vec<NoticeRecord>>,
    missing: Mutex<BTreeSet<ReportQuery>>,
}

impl Reports {
    /// Reports with these queries loaded.
    pub fn loaded(loaded: BTreeMap<ReportQuery, Vec<NoticeRecord>>) -> Reports {
        Reports {
            loaded,
            ..Reports::default()
        }
    }

    /// The queries loaded.
    pub fn queries(&self) -> impl Iterator<Item = &ReportQuery> {
        self.loaded.keys()
    }

    /// The notices of `q`, or `None` when it was not loaded (it is noted).
    pub fn notices(&self, q: &ReportQuery) -> Option<&[NoticeRecord]> {
        match self.loaded.get(q) {
            Some(rows) => Some(rows),
            None => {
                self.missing.lock().expect("not poisoned").insert(q.clone());
                None
            }
        }
    }

    /// The queries asked for that were not loaded, cleared.
    pub fn take_missing(&self) -> BTreeSet<ReportQuery> {
        std::mem::take(&mut *self.missing.lock().expect("not poisoned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn notice(to: &str, opened: &str, due: &str, closed: Option<(&str, &str)>) -> NoticeRecord {
        NoticeRecord {
            instance: "1".into(),
            process: "letter".into(),
            step: "notice".into(),
            to: vec![to.into()],
            opened_at: at(opened),
            due: Some(at(due)),
            closed_at: closed.map(|(t, _)| at(t)),
            outcome: closed.map(|(_, o)| o.to_string()),
            escalated: false,
        }
    }

    #[test]
    fn each_notice_counts_once_by_how_it_was_answered() {
        let q = ReportQuery {
            process: Some("letter".into()),
            step: None,
            from: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            until: NaiveDate::from_ymd_opt(2025, 12, 31).unwrap(),
        };
        let due = "2025-10-20T16:00:00Z";
        let mut late = notice(
            "a",
            "2025-09-22T02:00:00Z",
            due,
            Some(("2025-10-25T02:00:00Z", "replied")),
        );
        late.escalated = true;
        let rows = vec![
            // Answered in 3 days, on time.
            notice(
                "a",
                "2025-09-22T02:00:00Z",
                due,
                Some(("2025-09-25T02:00:00Z", "replied")),
            ),
            late,
            // Expired: closed by the engine, overdue, no answer.
            notice(
                "b",
                "2025-09-22T02:00:00Z",
                due,
                Some(("2025-10-21T02:00:00Z", "expired")),
            ),
            // Open, past its cut-off at the report's instant.
            notice("b", "2025-09-22T02:00:00Z", due, None),
            // Open, not yet due.
            notice("b", "2025-12-30T02:00:00Z", "2026-01-30T16:00:00Z", None),
            // Dispatched at 2026-01-01 00:30 Beijing time: not in 2025.
            notice("a", "2025-12-31T16:30:00Z", due, None),
            // Another process.
            NoticeRecord {
                process: "other".into(),
                ..notice("a", "2025-09-22T02:00:00Z", due, None)
            },
        ];
        let t = tally(&q, &rows, at("2025-12-31T02:00:00Z"));
        let a = &t["a"];
        assert_eq!(
            (a.opened, a.answered, a.on_time, a.overdue, a.escalated),
            (2, 2, 1, 1, 1)
        );
        assert_eq!(a.average_days(), Some(18.0));
        let b = &t["b"];
        assert_eq!(
            (b.opened, b.answered, b.on_time, b.overdue, b.escalated),
            (3, 0, 0, 2, 0)
        );
        assert_eq!(b.average_days(), None);
        let all = Stats::total(t.values());
        assert_eq!(all.opened, 5);
        assert_eq!(all.measure("average_days"), serde_json::json!(18.0));
    }

    #[test]
    fn a_period_covers_its_last_day_to_midnight_in_beijing() {
        let q = ReportQuery {
            process: None,
            step: None,
            from: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            until: NaiveDate::from_ymd_opt(2025, 12, 31).unwrap(),
        };
        let (s, e) = q.window();
        assert_eq!(s, at("2024-12-31T16:00:00Z"));
        assert_eq!(e, at("2025-12-31T16:00:00Z"));
    }
}
