//! `duban show`: an instance's timeline as administrators read it.

use duban_engine::calendar::LEGAL_TZ;
use duban_engine::definition::{Definition, StepKind};
use duban_engine::runtime::{HistoryEntry, InstanceState, TimerKind};

fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&LEGAL_TZ)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// Prints the header, the history, the open tasks (with the outcomes
/// `def`, the instance's definition, allows) and the pending timers in the
/// order they fall due.
pub fn print(s: &InstanceState, history: &[HistoryEntry], def: Option<&Definition>) {
    outln!(
        "instance {}  {}{} v{}  profile {}  {}",
        s.id,
        s.definition,
        def.map(|d| format!("（{}）", d.name)).unwrap_or_default(),
        s.version,
        s.profile.as_deref().unwrap_or("-"),
        s.status.name()
    );
    match &s.status {
        duban_engine::runtime::Status::Completed { result } => outln!("result: {result}"),
        duban_engine::runtime::Status::Cancelled { reason } => outln!("cancelled: {reason}"),
        duban_engine::runtime::Status::Stuck { code, message, event, since } => outln!(
            "stuck since {}: {code} {message} (while applying {}); fix the cause, then `duban retry {}`",
            when(*since),
            event.describe(),
            s.id
        ),
        duban_engine::runtime::Status::Running => {}
    }
    outln!("\nvariables:");
    for (k, v) in &s.variables {
        outln!("  {k} = {v}");
    }
    outln!("\ntimeline:");
    for h in history {
        let step = match (&h.step_before, &h.step_after) {
            (Some(a), Some(b)) if a != b => format!("{a} → {b}"),
            (_, Some(b)) => b.clone(),
            (Some(a), None) => a.clone(),
            (None, None) => String::new(),
        };
        let mut line = format!("  {}  {:<15} {step}", when(h.at), h.what);
        // A timer applied late (the engine was down): when it was due.
        if let Some(due) = h.due.filter(|d| when(*d) != when(h.at)) {
            line.push_str(&format!("  (due {})", when(due)));
        }
        if !h.people.is_empty() {
            line.push_str(&format!("  [{}]", h.people.join(", ")));
        }
        if let Some(n) = &h.note {
            line.push_str(&format!("  {n}"));
        }
        outln!("{line}");
        if !h.changed.is_empty() {
            let changed: Vec<String> = h.changed.iter().map(|(k, v)| format!("{k}={v}")).collect();
            outln!("      set {}", changed.join(", "));
        }
        if let Some(d) = &h.deadline {
            let kind = match d.bound {
                duban_engine::calendar::Bound::Within => "deadline",
                duban_engine::calendar::Bound::AtLeast => "minimum until",
            };
            let prov = if d.provisional { " (PROVISIONAL)" } else { "" };
            outln!("      {kind} {}{prov}: {}", d.last_day, d.explanation);
        }
    }
    let open: Vec<_> = s.open_tasks().collect();
    if !open.is_empty() {
        outln!("\nopen tasks:");
        for t in open {
            let due = t
                .deadline
                .as_ref()
                .map(|d| format!("  due {} (cut-off {})", d.last_day, d.deadline.to_rfc3339()))
                .unwrap_or_default();
            let step = def.and_then(|d| d.steps.get(&t.step));
            outln!(
                "  {} {}{}{} ({}) → {}{due}",
                t.id,
                t.step,
                step.map(|s| format!("（{}）", s.name)).unwrap_or_default(),
                item_label(t),
                t.kind,
                t.assignees.join(", ")
            );
            if let Some(StepKind::Task { outcomes, .. } | StepKind::Notice { outcomes, .. }) =
                step.map(|s| &s.kind)
            {
                for (id, o) in outcomes {
                    let fields = if o.fields.is_empty() {
                        String::new()
                    } else {
                        format!("  required: {}", o.fields.join(", "))
                    };
                    outln!("      → {id}（{}）{fields}", o.label);
                }
            }
        }
    }
    if !s.timers.is_empty() {
        outln!("\npending timers:");
        let mut timers: Vec<_> = s.timers.values().collect();
        timers.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
        for t in timers {
            let what = match &t.kind {
                TimerKind::Expiry { task } => format!("expiry of {task}"),
                TimerKind::Reminder { task, before } => {
                    format!("reminder for {task}, {before} before")
                }
                TimerKind::Wait { step } => format!("end of wait {step}"),
                TimerKind::MessageTimeout { step } => format!("timeout of {step}"),
                TimerKind::DeemedReceipt { task } => format!("deemed receipt of {task}"),
            };
            outln!(
                "  {}  {what}{}",
                when(t.due),
                if t.provisional { " (provisional)" } else { "" }
            );
        }
    }
}

/// `[candidate=zhang]` for a task of one item of a `for_each` step.
pub fn item_label(t: &duban_engine::runtime::TaskState) -> String {
    match &t.item {
        Some(i) => match &i.value {
            serde_json::Value::String(v) => format!("[{}={v}]", i.var),
            v => format!("[{}={v}]", i.var),
        },
        None => String::new(),
    }
}
