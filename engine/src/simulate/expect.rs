//! Checking an `expect:` step against an instance's state and history.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::raw::{instant, RawExpect};
use crate::calendar::LEGAL_TZ;
use crate::definition::Definition;
use crate::runtime::{Command, Directory, HistoryEntry, HistoryKind, InstanceState, Status};
use crate::store::{InstanceRow, OutboxKind, OutboxRow};

/// A document the run rendered, as `duban serve` would have written it.
#[derive(Clone, Debug, Serialize)]
pub struct RenderedDocument {
    /// The instance it belongs to.
    pub instance: String,
    /// The document id of the definition.
    pub document: String,
    /// Its title.
    pub title: String,
    /// When it was issued.
    pub at: DateTime<Utc>,
    /// Its plain text, or why it could not be rendered.
    pub text: Result<String, String>,
}

/// What an `expect:` looks at: one instance and what it caused.
pub(super) struct Seen<'a> {
    pub state: &'a InstanceState,
    pub history: &'a [HistoryEntry],
    /// The instance's outbox rows (notifications, documents, calls).
    pub outbox: &'a [OutboxRow],
    /// The documents rendered for it.
    pub documents: &'a [RenderedDocument],
    pub directory: &'a dyn Directory,
    /// The definition it runs on, to refuse names it does not have (a
    /// misspelt step would make `times: 0` hold whatever happened).
    pub definition: &'a Definition,
}

const EVENTS: [&str; 10] = [
    "notice",
    "instance_started",
    "task_opened",
    "task_completed",
    "notice_sent",
    "notice_answered",
    "reminder",
    "expired",
    "escalated",
    "instance_ended",
];

/// Why a name an expectation gives does not exist, if it does not.
fn unknown_names(x: &RawExpect, seen: &Seen<'_>) -> Vec<String> {
    let def = seen.definition;
    let mut out = Vec::new();
    let mut step = |s: &Option<String>| {
        if let Some(s) = s {
            if !def.steps.contains_key(s) {
                out.push(format!("`{}` has no step `{s}`", def.id));
            }
        }
    };
    if let Some(h) = &x.happened {
        step(&h.step);
    }
    if let Some(n) = &x.notified {
        step(&n.step);
    }
    if let Some(n) = &x.notified {
        if let Some(c) = &n.channel {
            if c != "email" && c != "sms" {
                out.push(format!("no channel `{c}` (email, sms)"));
            }
        }
        if let Some(ev) = &n.event {
            if !EVENTS.contains(&ev.as_str()) {
                out.push(format!("no event `{ev}` ({})", EVENTS.join(", ")));
            }
        }
        if let Some(t) = &n.template {
            if !def.templates.contains_key(t) {
                out.push(format!("`{}` has no template `{t}`", def.id));
            }
        }
        if let Some(to) = &n.to {
            let known = match to.strip_prefix("role:") {
                Some(r) => def.roles.contains_key(r.split('@').next().unwrap_or(r)),
                None => seen.directory.person(to).is_some() || seen.directory.agency(to).is_some(),
            };
            if !known {
                out.push(format!(
                    "`{to}` is no person or agency of the directory, nor `role:ID` of `{}`",
                    def.id
                ));
            }
        }
    }
    if let Some(d) = &x.document {
        if let Some(id) = &d.id {
            if !def.documents.contains_key(id) {
                out.push(format!("`{}` has no document `{id}`", def.id));
            }
        }
        if let Some(t) = &d.title {
            // A title that reads the instance is known only when issued.
            if !def
                .documents
                .values()
                .any(|doc| &doc.title == t || doc.title.contains("{{"))
            {
                out.push(format!("`{}` has no document titled `{t}`", def.id));
            }
        }
    }
    out
}

/// The checks about the whole run rather than one instance.
pub(super) fn expect_run(
    line: usize,
    x: &RawExpect,
    instances: &[InstanceRow],
    deployed: &[String],
    checks: &mut Vec<Check>,
) {
    let mut check = |expected: String, found: Option<String>| {
        checks.push(Check {
            line,
            expected,
            found,
        })
    };
    if let Some(i) = &x.instances {
        let ids: Vec<&str> = instances
            .iter()
            .filter(|r| r.definition == i.process)
            .map(|r| r.id.as_str())
            .collect();
        let found = if !deployed.contains(&i.process) {
            Some(format!(
                "no process `{}` is deployed ({})",
                i.process,
                deployed.join(", ")
            ))
        } else {
            (ids.len() != i.count).then(|| format!("{}: {ids:?}", ids.len()))
        };
        check(format!("{} instance(s) of `{}`", i.count, i.process), found);
    }
}

/// `n` against the expectation: exactly `times` when given, else at least one.
fn count_ok(n: usize, times: Option<usize>) -> bool {
    times.map_or(n > 0, |t| n == t)
}

fn how_often(times: Option<usize>) -> String {
    match times {
        None => String::new(),
        Some(0) => " never".into(),
        Some(1) => " exactly once".into(),
        Some(2) => " exactly twice".into(),
        Some(t) => format!(" exactly {t} times"),
    }
}

/// Whether `who` is among `to` (ids, or `role:ID[@UNIT]` resolved through
/// the directory as the dispatcher does).
fn reaches(to: &[String], who: &str, dir: &dyn Directory) -> bool {
    to.iter().any(|t| {
        t == who
            || t.strip_prefix("role:").is_some_and(|r| {
                let (role, unit) = match r.split_once('@') {
                    Some((r, u)) => (r, Some(u)),
                    None => (r, None),
                };
                dir.holders(role, unit).iter().any(|p| p.id == who)
            })
    })
}

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
pub(super) fn expect(line: usize, x: &RawExpect, seen: &Seen<'_>, checks: &mut Vec<Check>) {
    let (s, history) = (seen.state, seen.history);
    let unknown = unknown_names(x, seen);
    if !unknown.is_empty() {
        checks.push(Check {
            line,
            expected: "names that exist".into(),
            found: Some(unknown.join("; ")),
        });
    }
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
            // A step that waits (a message, a timer, a call) has its
            // deadline on the wait.
            .or_else(|| s.waits.get(&d.step).and_then(|w| w.deadline.as_ref()))
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
                    && h.step.as_deref().is_none_or(|step| {
                        e.step_before.as_deref() == Some(step)
                            || e.step_after.as_deref() == Some(step)
                    })
            })
            .map(|e| e.at)
            .collect();
        let when = h.at.as_deref().and_then(instant);
        let n = times
            .iter()
            .filter(|t| when.is_none_or(|w| **t == w))
            .count();
        let found = match HistoryKind::parse(&h.what) {
            None => Some(format!(
                "no history kind `{}` (kinds: {})",
                h.what,
                HistoryKind::ALL.map(HistoryKind::as_str).join(", ")
            )),
            Some(_) => (!count_ok(n, h.times)).then(|| format!("at {}", shown(&times))),
        };
        let mut expected = format!("`{}`", h.what);
        if let Some(step) = &h.step {
            expected += &format!(" at `{step}`");
        }
        if let Some(at) = &h.at {
            expected += &format!(" at {at}");
        }
        check(expected + &how_often(h.times), found);
    }
    if let Some(n) = &x.notified {
        let mut seen_rows = Vec::new();
        let mut matching = 0;
        for row in seen.outbox {
            let channel = match row.kind {
                OutboxKind::Email => "email",
                OutboxKind::Sms => "sms",
                _ => continue,
            };
            let Ok(Command::Notify {
                event,
                step,
                to,
                template,
                ..
            }) = serde_json::from_str::<Command>(&row.payload)
            else {
                continue;
            };
            let event = serde_json::to_value(event)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let at = row.created_at.with_timezone(&LEGAL_TZ).to_rfc3339();
            seen_rows.push(format!(
                "{channel} {template} ({event}) to {} at {at}",
                to.join(",")
            ));
            let ok = n.channel.as_deref().is_none_or(|c| c == channel)
                && n.template.as_deref().is_none_or(|t| t == template)
                && n.event.as_deref().is_none_or(|e| e == event)
                && n.step
                    .as_deref()
                    .is_none_or(|st| step.as_deref() == Some(st))
                && n.to
                    .as_deref()
                    .is_none_or(|w| reaches(&to, w, seen.directory));
            if ok {
                matching += 1;
            }
        }
        let mut expected = "a notification".to_string();
        for (k, v) in [
            ("by", &n.channel),
            ("from template", &n.template),
            ("on", &n.event),
            ("about step", &n.step),
            ("to", &n.to),
        ] {
            if let Some(v) = v {
                expected += &format!(" {k} `{v}`");
            }
        }
        check(
            expected + &how_often(n.times),
            (!count_ok(matching, n.times))
                .then(|| format!("{matching} such; notifications: [{}]", seen_rows.join("; "))),
        );
    }
    if let Some(d) = &x.document {
        let mut matching = 0;
        let mut problems = Vec::new();
        for doc in seen.documents {
            if d.id.as_deref().is_some_and(|i| i != doc.document)
                || d.title.as_deref().is_some_and(|t| *t != doc.title)
            {
                continue;
            }
            match (&d.contains, &doc.text) {
                (None, _) => matching += 1,
                (Some(c), Ok(text)) if text.contains(c.as_str()) => matching += 1,
                (Some(_), Ok(_)) => {}
                (Some(_), Err(e)) => problems.push(format!("{}: {e}", doc.document)),
            }
        }
        let mut expected = "a document".to_string();
        for (k, v) in [
            ("", &d.id),
            ("titled", &d.title),
            ("containing", &d.contains),
        ] {
            if let Some(v) = v {
                expected += &format!(" {k} `{v}`").replace("  ", " ");
            }
        }
        let issued: Vec<String> = seen
            .documents
            .iter()
            .map(|x| format!("{} 《{}》", x.document, x.title))
            .collect();
        check(
            expected + &how_often(d.times),
            (!count_ok(matching, d.times)).then(|| {
                let mut f = format!("{matching} such; documents: [{}]", issued.join(", "));
                if !problems.is_empty() {
                    f += &format!("; not rendered: {}", problems.join("; "));
                }
                f
            }),
        );
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
