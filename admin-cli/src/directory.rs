//! `duban directory list|show|import`: the people and agencies the
//! processes assign tasks and send notices to, as data an operator can
//! trust (docs/directory.md).
//!
//! An import says what it adds, changes and removes. Without `--replace`
//! it adds and updates only: a one-person file changes that person and
//! keeps everybody else. With `--replace` the file becomes the directory,
//! and every open task left with a removed person is listed with the
//! `duban reassign` that gives it to someone else. `--dry-run` shows the
//! same without writing.

use std::collections::BTreeMap;
use std::path::Path;

use duban_engine::runtime::directory::{Agency, MemoryDirectory, Person};
use duban_engine::service::Engine;
use duban_engine::store::{directory, SqlStore, TaskFilter};
use serde_json::json;

use crate::exit;

/// What an import does to one kind of entry (people, agencies).
#[derive(Default)]
struct Diff {
    added: Vec<String>,
    changed: Vec<(String, Vec<String>)>,
    removed: Vec<String>,
    kept: usize,
}

/// The fields of two entries (people, or agencies) that differ, by name.
fn fields_differ<T: serde::Serialize>(a: &T, b: &T) -> Vec<String> {
    let (a, b) = (serde_json::to_value(a).ok(), serde_json::to_value(b).ok());
    let (Some(serde_json::Value::Object(a)), Some(serde_json::Value::Object(b))) = (a, b) else {
        return Vec::new();
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Merges `new` into `old` entry by entry (by id), or replaces them, and
/// says what changed. Entries keep the order of `old`, the new ones after.
fn merge<T: Clone + serde::Serialize>(
    old: &[T],
    new: &[T],
    id: impl Fn(&T) -> &str,
    replace: bool,
) -> (Vec<T>, Diff) {
    let mut d = Diff::default();
    let incoming: BTreeMap<&str, &T> = new.iter().map(|e| (id(e), e)).collect();
    let mut out = Vec::new();
    for e in old {
        match incoming.get(id(e)) {
            Some(n) => {
                let f = fields_differ(e, n);
                if !f.is_empty() {
                    d.changed.push((id(e).to_string(), f));
                }
                out.push((*n).clone());
            }
            None if replace => d.removed.push(id(e).to_string()),
            None => {
                d.kept += 1;
                out.push(e.clone());
            }
        }
    }
    for n in new {
        if !old.iter().any(|e| id(e) == id(n)) {
            d.added.push(id(n).to_string());
            out.push(n.clone());
        }
    }
    (out, d)
}

fn print_diff(kind: &str, d: &Diff, name: impl Fn(&str) -> String) {
    for id in &d.added {
        outln!("+ {kind} {id} {}", name(id));
    }
    for (id, f) in &d.changed {
        outln!("~ {kind} {id} {}: {}", name(id), f.join(", "));
    }
    for id in &d.removed {
        outln!("- {kind} {id}");
    }
}

/// `duban directory import FILE [--replace] [--dry-run] [--allow-empty]`.
pub async fn import(
    engine: &Engine<SqlStore>,
    file: &Path,
    replace: bool,
    dry_run: bool,
    allow_empty: bool,
) -> Result<(), u8> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        errln!("duban: {}: {e}", file.display());
        exit::USAGE
    })?;
    let csv = file.extension().is_some_and(|x| x == "csv");
    let incoming = directory::parse(&text, csv).map_err(|errs| {
        for e in &errs {
            errln!("{}:{e}", file.display());
        }
        errln!("duban: {} problem(s); nothing was imported", errs.len());
        exit::INVALID
    })?;
    if incoming.people.is_empty() && incoming.agencies.is_empty() && !(replace && allow_empty) {
        // A header-only CSV or an empty YAML file would, as a replacement,
        // leave every task and notice without anyone to go to.
        errln!(
            "duban: {} names no people and no agencies; nothing was imported (to empty the directory, give --replace --allow-empty)",
            file.display()
        );
        return Err(exit::INVALID);
    }
    let current = engine.directory();
    let (people, pd) = merge(
        &current.people,
        &incoming.people,
        |p| p.id.as_str(),
        replace,
    );
    let (agencies, ad) = merge(
        &current.agencies,
        &incoming.agencies,
        |a| a.id.as_str(),
        replace,
    );
    let person_name = |id: &str| {
        people
            .iter()
            .chain(current.people.iter())
            .find(|p| p.id == id)
            .map(|p| p.name.clone())
            .unwrap_or_default()
    };
    let agency_name = |id: &str| {
        agencies
            .iter()
            .chain(current.agencies.iter())
            .find(|a| a.id == id)
            .map(|a| a.name.clone())
            .unwrap_or_default()
    };
    print_diff("person", &pd, person_name);
    print_diff("agency", &ad, agency_name);
    if pd.kept + ad.kept > 0 {
        outln!(
            "kept {} people and {} agencies the file does not name (give --replace to remove them)",
            pd.kept,
            ad.kept
        );
    }
    // Open tasks left with someone who is removed: they would wait for
    // ever, so the operator is told and given the command that moves them.
    let mut orphans = Vec::new();
    for id in pd.removed.iter().chain(ad.removed.iter()) {
        let filter = TaskFilter {
            assignee: Some(id.clone()),
            ..Default::default()
        };
        for t in engine
            .tasks(&filter)
            .await
            .map_err(crate::instances::fail)?
        {
            orphans.push((t, id.clone()));
        }
    }
    // Running cases whose variables name someone removed: their next
    // notice or task for that person or agency would have nobody to go to.
    let removed: Vec<&String> = pd.removed.iter().chain(ad.removed.iter()).collect();
    let mut named = Vec::new();
    if !removed.is_empty() {
        for row in engine
            .instances(Some("running"), None)
            .await
            .map_err(crate::instances::fail)?
        {
            let state = engine
                .instance(&row.id)
                .await
                .map_err(crate::instances::fail)?;
            for (var, value) in &state.variables {
                let ids: Vec<&str> = match value {
                    serde_json::Value::String(s) => vec![s.as_str()],
                    serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
                    _ => Vec::new(),
                };
                for id in ids {
                    if removed.iter().any(|r| r.as_str() == id) {
                        named.push((
                            row.id.clone(),
                            row.definition.clone(),
                            var.clone(),
                            id.to_string(),
                        ));
                    }
                }
            }
        }
    }
    let named_lines = |would: bool| {
        for (instance, process, var, id) in &named {
            outln!(
                "! instance {instance} ({process}) names {id} in `{var}`, who {} in the directory: set another with `duban set-var {instance} --var {var}=ID`",
                if would { "would no longer be" } else { "is no longer" }
            );
        }
    };
    let summary = format!(
        "{} added, {} changed, {} removed",
        pd.added.len() + ad.added.len(),
        pd.changed.len() + ad.changed.len(),
        pd.removed.len() + ad.removed.len()
    );
    if dry_run {
        for (t, who) in &orphans {
            outln!(
                "! task {} ({}) would be left with {who}, who would no longer be in the directory",
                t.id,
                t.step
            );
        }
        named_lines(true);
        outln!("dry run: {summary}; nothing was imported");
        return Ok(());
    }
    engine
        .import_directory(MemoryDirectory { people, agencies })
        .await
        .map_err(crate::instances::fail)?;
    outln!("imported from {}: {summary}", file.display());
    for (t, who) in &orphans {
        outln!(
            "! task {} ({}) is still assigned to {who}, who is no longer in the directory: give it to someone with `duban reassign {} --to PERSON --reason …`",
            t.id,
            t.step,
            t.id
        );
    }
    named_lines(false);
    Ok(())
}

fn person_json(p: &Person) -> serde_json::Value {
    json!({
        "id": p.id, "name": p.name, "roles": p.roles, "organisation": p.organisation,
        "level": p.level, "county": p.county, "email": p.email, "mobile": p.mobile,
    })
}

fn agency_json(a: &Agency) -> serde_json::Value {
    json!({
        "id": a.id, "name": a.name, "level": a.level, "county": a.county,
        "email": a.email, "mobile": a.mobile,
    })
}

fn or_dash(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

/// `duban directory list [--json]`.
pub fn list(engine: &Engine<SqlStore>, json: bool) {
    let dir = engine.directory();
    if json {
        let v = json!({
            "people": dir.people.iter().map(person_json).collect::<Vec<_>>(),
            "agencies": dir.agencies.iter().map(agency_json).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
        return;
    }
    if dir.people.is_empty() && dir.agencies.is_empty() {
        outln!("the directory is empty: import it with `duban directory import FILE` (docs/directory.md)");
        return;
    }
    outln!("people ({}):", dir.people.len());
    for p in &dir.people {
        outln!(
            "  {:<16} {:<8} {:<28} {} {}/{}  {}  {}",
            p.id,
            p.name,
            p.roles.join(","),
            or_dash(&p.organisation),
            or_dash(&p.level),
            or_dash(&p.county),
            or_dash(&p.email),
            or_dash(&p.mobile)
        );
    }
    outln!("agencies ({}):", dir.agencies.len());
    for a in &dir.agencies {
        outln!(
            "  {:<16} {} {}/{}  {}  {}",
            a.id,
            a.name,
            or_dash(&a.level),
            or_dash(&a.county),
            or_dash(&a.email),
            or_dash(&a.mobile)
        );
    }
}

/// `duban directory show ID [--json]`: the entry and its open tasks.
pub async fn show(engine: &Engine<SqlStore>, id: &str, json: bool) -> Result<(), u8> {
    let dir = engine.directory();
    let entry = match (
        dir.people.iter().find(|p| p.id == id),
        dir.agencies.iter().find(|a| a.id == id),
    ) {
        (Some(p), _) => ("person", person_json(p)),
        (_, Some(a)) => ("agency", agency_json(a)),
        _ => {
            errln!("duban: `{id}` is no person or agency of the directory (see `duban directory list`)");
            return Err(exit::INVALID);
        }
    };
    let filter = TaskFilter {
        assignee: Some(id.to_string()),
        ..Default::default()
    };
    let tasks = engine
        .tasks(&filter)
        .await
        .map_err(crate::instances::fail)?;
    if json {
        let mut v = entry.1;
        v["kind"] = json!(entry.0);
        v["open_tasks"] = json!(tasks.iter().map(|t| &t.id).collect::<Vec<_>>());
        outln!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
        return Ok(());
    }
    outln!("{} {}", entry.0, id);
    if let Some(o) = entry.1.as_object() {
        for (k, v) in o {
            if k == "id" || v.is_null() {
                continue;
            }
            let shown = match v {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.as_str().unwrap_or_default().to_string(),
            };
            outln!("  {k}: {shown}");
        }
    }
    if tasks.is_empty() {
        outln!("  open tasks: none");
    } else {
        outln!("  open tasks:");
        for t in &tasks {
            outln!(
                "    {} {} ({}) due {}",
                t.id,
                t.step,
                t.kind,
                t.last_day.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}
