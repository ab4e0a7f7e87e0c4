//! The case file (案卷) of an instance: what an office files when a case
//! closes and what an auditor reads.
//!
//! [`build`] gathers it from the store: a cover (process, the case's
//! numbers, its parties, when it was opened and closed), every history
//! entry with who acted and when, every deadline counted with its
//! explanation in Chinese, and every document the instance issued (its
//! `render_document` outbox rows, in order; one issued again with the same
//! text, as a 决定书 made and then served, is filed once), each rendered with the
//! instance as it is now and the day it was issued. [`pdf`] typesets it with
//! the documents' own layouts. Nothing here writes to the store.

use chrono::{DateTime, Utc};
use duban_engine::calendar::{Bound, LEGAL_TZ};
use duban_engine::definition::{Definition, ValueType};
use duban_engine::runtime::{Directory, HistoryEntry, HistoryKind, InstanceState, Status};
use duban_engine::service::{Engine, ServiceError};
use duban_engine::store::Store;
use duban_typeset::{CaseFile, DeadlineLine, Entry, Labelled, Official};

fn beijing(t: DateTime<Utc>) -> String {
    t.with_timezone(&LEGAL_TZ)
        .format("%Y年%-m月%-d日 %H:%M")
        .to_string()
}

/// Who `id` is: a person's or agency's name with the id, 系统 for the engine.
fn who(id: &str, dir: &dyn Directory) -> String {
    if id == "engine" {
        return "系统".into();
    }
    match dir
        .person(id)
        .map(|p| p.name)
        .or_else(|| dir.agency(id).map(|a| a.name))
    {
        Some(name) if name != id => format!("{name}（{id}）"),
        _ => id.to_string(),
    }
}

fn status(s: &Status) -> String {
    match s {
        Status::Running => "办理中".into(),
        Status::Completed { result } => format!("已办结（{result}）"),
        Status::Cancelled { reason } => format!("已撤销（{reason}）"),
        Status::Stuck { message, .. } => format!("处理故障，待管理员处置（{message}）"),
    }
}

/// The case file of instance `id`, as of `now`.
pub async fn build<S: Store>(
    engine: &Engine<S>,
    id: &str,
    now: DateTime<Utc>,
) -> Result<CaseFile, ServiceError> {
    let state = engine.instance(id).await?;
    let def = engine
        .definition(&state.definition, Some(state.version))
        .await?;
    let history = engine.history(id).await?;
    let rows = engine.store().outbox_of(id).await?;
    let dir = engine.directory();
    let dir = dir.as_ref();
    let step_name = |s: &str| {
        def.steps
            .get(s)
            .map_or_else(|| s.to_string(), |x| x.name.clone())
    };
    let label = |var: &str| {
        def.variables
            .get(var)
            .and_then(|v| v.label.clone())
            .unwrap_or_else(|| var.to_string())
    };

    let numbers = def
        .numbering
        .keys()
        .filter_map(|series| {
            let v = state.variables.get(series)?.as_str()?;
            Some(Labelled {
                label: label(series),
                value: v.to_string(),
            })
        })
        .collect();
    let mut parties = Vec::new();
    for (name, var) in &def.variables {
        let Some(value) = state.variables.get(name) else {
            continue;
        };
        let one = |v: &serde_json::Value| v.as_str().map(|i| who(i, dir));
        let names: Vec<String> = match (&var.ty, value) {
            (ValueType::Agency | ValueType::Person, v) => one(v).into_iter().collect(),
            (ValueType::List(inner), serde_json::Value::Array(items))
                if matches!(**inner, ValueType::Agency | ValueType::Person) =>
            {
                items.iter().filter_map(one).collect()
            }
            _ => continue,
        };
        if !names.is_empty() {
            parties.push(Labelled {
                label: label(name),
                value: names.join("、"),
            });
        }
    }

    let timeline = history
        .iter()
        .map(|h| entry(h, &def, &step_name, dir))
        .collect();
    let deadlines = history
        .iter()
        .filter_map(|h| deadline(h, &state, &step_name, now))
        .collect();

    let mut documents = Vec::new();
    for (row, named) in rows.iter().filter_map(|r| Some((r, r.issued_document()?))) {
        let document = &named.document;
        let issued = named.issued();
        // A document the instance's definition can no longer render (a
        // version migrated away from it) is filed as such, not dropped, and
        // does not keep the rest of the case from its file.
        let parts = crate::documents::document_parts(&def, &state, issued, dir, row.created_at)
            .unwrap_or_else(|e| Official {
                layout: "记录".into(),
                kind: "记录".into(),
                title: def
                    .documents
                    .get(document)
                    .map_or_else(|| document.clone(), |d| d.title.clone()),
                number: None,
                to: None,
                body: format!(
                    "本文书（{document}，{}制发）无法按现行流程定义重新生成：{e}",
                    beijing(row.created_at)
                ),
                attachments: Vec::new(),
                issuer: None,
                date: None,
            });
        // A document issued again (a 决定书 made by one step and served by
        // the next) is filed once: the same text, whatever its date.
        let same = |d: &Official| Official {
            date: None,
            ..d.clone()
        };
        let text = same(&parts);
        if !documents.iter().any(|d| same(d) == text) {
            documents.push(parts);
        }
    }

    let opened = history.first().map(|h| h.at);
    let closed = match state.status {
        Status::Completed { .. } | Status::Cancelled { .. } => history.last().map(|h| h.at),
        _ => None,
    };
    Ok(CaseFile {
        process: def.name.clone(),
        definition: format!("{} 第{}版", def.id, def.version),
        instance: state.id.clone(),
        profile: state.profile.as_ref().map(|p| {
            def.profiles
                .get(p)
                .map_or_else(|| p.clone(), |x| x.name.clone())
        }),
        numbers,
        parties,
        status: status(&state.status),
        opened: opened.map(beijing).unwrap_or_default(),
        closed: closed.map(beijing),
        timeline,
        deadlines,
        documents,
        made: now
            .with_timezone(&LEGAL_TZ)
            .format("%Y年%-m月%-d日")
            .to_string(),
    })
}

/// A history line's note as staff and auditors read it. The core writes
/// some in an operator's terms (`outcome issue: 制发督办文书`, `escalated to
/// role:supervision_office`, a branch's CEL condition); for those kinds the
/// line is said again from the definition (the outcome's label, the role's
/// name, the branch's own note and rule, 其他情形 for a default). Other notes
/// are Chinese as written (a reason, a reminder) and are kept.
pub fn note_in_chinese(def: &Definition, h: &HistoryEntry) -> String {
    use duban_engine::definition::StepKind;
    let note = h.note.as_deref().unwrap_or_default().trim();
    let step = |id: &Option<String>| id.as_ref().and_then(|s| def.steps.get(s));
    match h.what {
        HistoryKind::TaskCompleted | HistoryKind::NoticeAnswered => {
            let Some(rest) = note.strip_prefix("outcome ") else {
                return note.to_string();
            };
            let (id, label) = rest.split_once(": ").unwrap_or((rest, ""));
            let label = match step(&h.step_before).map(|s| &s.kind) {
                Some(StepKind::Task { outcomes, .. } | StepKind::Notice { outcomes, .. }) => {
                    outcomes.get(id).map_or(label, |o| o.label.as_str())
                }
                _ => label,
            };
            format!("结果：{label}")
        }
        HistoryKind::Escalated => match note.strip_prefix("escalated to ") {
            Some(to) => {
                let names: Vec<String> = to
                    .split(", ")
                    .map(|r| {
                        let id = r.strip_prefix("role:").unwrap_or(r);
                        def.roles
                            .get(id)
                            .map_or_else(|| id.to_string(), |x| x.name.clone())
                    })
                    .collect();
                format!("报送{}", names.join("、"))
            }
            None => note.to_string(),
        },
        HistoryKind::Decided => match step(&h.step_before).map(|s| &s.kind) {
            Some(StepKind::Decision {
                branches, default, ..
            }) => {
                let target = h.step_after.as_deref().unwrap_or_default();
                let branch = branches
                    .iter()
                    .find(|b| b.goto == target && note != "default");
                match branch {
                    Some(b) => match (&b.note, &b.rule) {
                        (Some(n), Some(r)) => format!("{n}（{r}）"),
                        (Some(n), None) => n.clone(),
                        (None, Some(r)) => format!("条件成立（{r}）"),
                        (None, None) => "条件成立".into(),
                    },
                    None if target == default => "其他情形".into(),
                    None => note.to_string(),
                }
            }
            _ => note.to_string(),
        },
        // `NAME (result_id)`: the name.
        HistoryKind::Ended => match note.rsplit_once(" (") {
            Some((name, id)) if id.ends_with(')') && id.is_ascii() => name.to_string(),
            _ => note.to_string(),
        },
        _ => note.to_string(),
    }
}

fn entry(
    h: &HistoryEntry,
    def: &Definition,
    step_name: &dyn Fn(&str) -> String,
    dir: &dyn Directory,
) -> Entry {
    let step = match (&h.step_before, &h.step_after) {
        (Some(a), Some(b)) if a != b => format!("：{} → {}", step_name(a), step_name(b)),
        (_, Some(s)) | (Some(s), None) => format!("：{}", step_name(s)),
        (None, None) => String::new(),
    };
    let mut what = format!("{}{step}", h.what.label());
    if !h.people.is_empty() {
        let people: Vec<String> = h.people.iter().map(|p| who(p, dir)).collect();
        what.push_str(&format!("（{}）", people.join("、")));
    }
    let note = note_in_chinese(def, h);
    if !note.is_empty() {
        what.push_str(&format!("；{note}"));
    }
    if let Some(d) = &h.deadline {
        what.push_str(&format!("；期限至{}", d.last_day.format("%Y年%-m月%-d日")));
    }
    let mut at = beijing(h.at);
    if let Some(due) = h.due.filter(|d| beijing(*d) != at) {
        at.push_str(&format!("（应于{}）", beijing(due)));
    }
    Entry {
        at,
        actor: who(&h.actor, dir),
        what,
    }
}

fn deadline(
    h: &HistoryEntry,
    state: &InstanceState,
    step_name: &dyn Fn(&str) -> String,
    now: DateTime<Utc>,
) -> Option<DeadlineLine> {
    let d = h.deadline.as_ref()?;
    let step = h.step_after.as_ref().or(h.step_before.as_ref())?;
    let task = state
        .tasks
        .values()
        .find(|t| &t.step == step && t.deadline.as_ref() == Some(d));
    let cutoff = d.deadline.with_timezone(&Utc);
    let state = match (d.bound, task.and_then(|t| t.closed.as_ref())) {
        (Bound::AtLeast, _) => "最短期间".to_string(),
        (_, Some(c)) if c.outcome == "expired" => "期限届满".to_string(),
        (_, Some(c)) if c.outcome == "cancelled" => "已撤销".to_string(),
        (_, Some(c)) if c.at >= cutoff => "逾期办结".to_string(),
        (_, Some(_)) => "按期办结".to_string(),
        (_, None) if task.is_none() => "已重新计算".to_string(),
        (_, None) if now >= cutoff => "已逾期".to_string(),
        (_, None) => "未届满".to_string(),
    };
    Some(DeadlineLine {
        task: step_name(step),
        last_day: d.last_day.format("%Y年%-m月%-d日").to_string(),
        explanation: d.explanation.clone(),
        state,
    })
}

/// The case file as PDF (typeset on a blocking thread).
pub async fn pdf(case: CaseFile) -> Result<Vec<u8>, String> {
    tokio::task::spawn_blocking(move || duban_typeset::shared().case_file(&case))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}
