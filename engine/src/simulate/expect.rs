//! Checking an `expect:` step against an instance's state and history.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::raw::{instant, RawExpect};
use crate::calendar::LEGAL_TZ;
use crate::runtime::{HistoryEntry, HistoryKind, InstanceState, Status};

/// One checked expectation.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// The line of the step in the scenario.
    pub line: usize,
    /// What was expected.
    pub expected: String,
    /// What was found, when it differs; `None` when the check holds.
    pub found: Option<String>,
}

fn shown(times: &[DateTime<Utc>]) -> String {
    let v: Vec<String> = times
        .iter()
        .map(|t| t.with_timezone(&LEGAL_TZ).to_rfc3339())
        .collect();
    format!("[{}]", v.join(", "))
}

/// Appends one [`Check`] per key of `x`.
pub(super) fn expect(
    line: usize,
    x: &RawExpect,
    s: &InstanceState,
    history: &[HistoryEntry],
    checks: &mut Vec<Check>,
) {
    let mut check = |expected: String, found: Option<String>| {
        checks.push(Check {
            line,
            expected,
            found,
        })
    };
    let steps = s.current_steps();
    if let Some(step) = &x.step {
        let ok = steps.contains(step);
        check(
            format!("current step `{step}`"),
            (!ok).then(|| format!("current steps: [{}]", steps.join(", "))),
        );
    }
    if let Some(step) = &x.task_open {
        let ok = s.open_tasks().any(|t| &t.step == step);
        check(
            format!("task `{step}` open"),
            (!ok).then(|| format!("open: [{}]", steps.join(", "))),
        );
    }
    if let Some(step) = &x.task_closed {
        let closed = s
            .tasks
            .values()
            .any(|t| &t.step == step && t.closed.is_some());
        let open = s.open_tasks().any(|t| &t.step == step);
        let found = if open {
            Some("it is open".to_string())
        } else if !closed {
            Some("it never opened".to_string())
        } else {
            None
        };
        check(format!("task `{step}` closed"), found);
    }
    if let Some(d) = &x.deadline {
        let found = s
            .tasks
            .values()
            .filter(|t| t.step == d.step)
            .filter_map(|t| t.deadline.as_ref())
            .next_back()
            .map(|dl| dl.last_day.to_string());
        let ok = found.as_deref() == Some(d.last_day.as_str());
        check(
            format!("deadline of `{}` ends on {}", d.step, d.last_day),
            (!ok).then(|| format!("{found:?}")),
        );
    }
    if let Some(r) = &x.reminder_sent {
        let sent: Vec<DateTime<Utc>> = history
            .iter()
            .filter(|h| {
                h.what == HistoryKind::Reminder && h.step_before.as_deref() == Some(r.step.as_str())
            })
            .map(|h| h.at)
            .collect();
        let ok = instant(&r.at).is_some_and(|w| sent.contains(&w));
        check(
            format!("reminder for `{}` sent at {}", r.step, r.at),
            (!ok).then(|| format!("reminders at {}", shown(&sent))),
        );
    }
    if let Some(h) = &x.happened {
        let times: Vec<DateTime<Utc>> = history
            .iter()
            .filter(|e| {
                e.what.as_str() == h.what
                    && (e.step_before.as_deref() == Some(h.step.as_str())
                        || e.step_after.as_deref() == Some(h.step.as_str()))
            })
            .map(|e| e.at)
            .collect();
        let ok = instant(&h.at).is_some_and(|w| times.contains(&w));
        let found = match HistoryKind::parse(&h.what) {
            None => Some(format!(
                "no history kind `{}` (kinds: {})",
                h.what,
                HistoryKind::ALL.map(HistoryKind::as_str).join(", ")
            )),
            Some(_) => (!ok).then(|| format!("at {}", shown(&times))),
        };
        check(format!("`{}` at `{}` at {}", h.what, h.step, h.at), found);
    }
    let escalations: Vec<&str> = history
        .iter()
        .filter(|h| h.what == HistoryKind::Escalated)
        .filter_map(|h| h.note.as_deref())
        .collect();
    if let Some(role) = &x.escalated_to {
        let ok = escalations
            .iter()
            .any(|n| n.contains(&format!("role:{role}")));
        check(
            format!("escalated to `{role}`"),
            (!ok).then(|| format!("escalations: {escalations:?}")),
        );
    }
    if x.not_escalated == Some(true) {
        check(
            "no escalation".into(),
            (!escalations.is_empty()).then(|| format!("escalations: {escalations:?}")),
        );
    }
    if let Some(vars) = &x.variable {
        for (k, want) in vars {
            let got = s.variables.get(k);
            // Scenario values are text; `"false"` matches the bool false.
            let ok = got.is_some_and(|g| {
                let text = g.as_str().map_or_else(|| g.to_string(), str::to_string);
                g == want || want.as_str() == Some(text.as_str())
            });
            check(
                format!("variable `{k}` = {want}"),
                (!ok).then(|| format!("{got:?}")),
            );
        }
    }
    if let Some(result) = &x.ended {
        let ok = matches!(&s.status, Status::Completed { result: r } if r == result);
        check(
            format!("ended with `{result}`"),
            (!ok).then(|| format!("{:?}", s.status)),
        );
    }
    if let Some(status) = &x.status {
        let ok = s.status.name() == status;
        check(
            format!("status `{status}`"),
            (!ok).then(|| s.status.name().to_string()),
        );
    }
}
