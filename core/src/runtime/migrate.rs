//! Moving a running instance to another version of its definition
//! (`duban migrate`).
//!
//! [`migrate`] is pure like the rest of the core: from the instance as it
//! is, its current version and the target version, it returns the
//! [`Plan`] — what would change, step by step, task by task, timer by
//! timer, variable by variable — and, when nothing refuses it, the
//! [`Transition`] that carries it out. `migrate plan` shows the plan;
//! `migrate apply` commits the transition, one instance per transaction, so
//! an instance moves wholly or not at all.
//!
//! The rules (docs/migration.md):
//!
//! - Every occupied step (an open task or notice, a wait, a running
//!   `for_each`, a join with arrivals) goes to the step of the same id in
//!   the target, or to the one `--map old=new` names. A step the target
//!   lacks, a mapping to a step of another kind, or a change to the
//!   assignees of an open task, the recipient of an open notice, the
//!   message a wait listens for or the process a call waits on, refuses
//!   the plan with the instance, the step and why.
//! - Deadlines already counted keep their dates: a period notified to an
//!   agency does not move because the office fixed a template. Only
//!   `--recount` counts them again under the target's periods. A deadline
//!   the target adds to an occupied step is counted (it was never
//!   notified); one it removes is dropped with its timers.
//! - Variables the target declares are checked against its types; a new
//!   one takes its default or a value given with the plan; a required one
//!   with neither refuses the plan. Variables the target no longer
//!   declares are removed, and the history line keeps their last values.
//! - Called children are instances of their own process: the plan lists
//!   them, and they are migrated by a plan of that process.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;

use super::apply::{of_task, of_wait, Env, Run};
use super::deadlines::expires;
use super::event::{Command, Transition};
use super::history::{HistoryEntry, HistoryKind};
use super::state::{InstanceState, Status, TimerKind};
use super::values;
use crate::calendar::{Deadline, LEGAL_TZ};
use crate::definition::{Definition, Party, StartRef, Step, StepKind};

/// What the administrator asks of a migration.
#[derive(Clone, Debug, Default)]
pub struct Migration {
    /// Occupied step of the current version → its step in the target, for
    /// steps whose id changed (`--map old=new`).
    pub map: BTreeMap<String, String>,
    /// Count every deadline of the open tasks and waits again under the
    /// target's periods (`--recount`); without it counted dates stay.
    pub recount: bool,
    /// Values for variables the target requires and the instance lacks
    /// (`--var name=value`), already typed by the target.
    pub variables: BTreeMap<String, Json>,
}

/// One change a migration makes, or something it keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What it is about: a step, a task id, a timer id, a variable.
    pub subject: String,
    /// `moved`, `kept`, `added`, `removed`, `recounted`, `renamed`,
    /// `changed`, `listed`.
    pub what: String,
    /// In words.
    pub detail: String,
}

impl Change {
    fn new(subject: impl Into<String>, what: &str, detail: impl Into<String>) -> Self {
        Change {
            subject: subject.into(),
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// What migrating one instance would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The instance.
    pub instance: String,
    /// The definition.
    pub process: String,
    /// The version it runs on.
    pub from: u32,
    /// The version it would run on.
    pub to: u32,
    /// Its occupied steps, each with the target's step.
    pub steps: Vec<Change>,
    /// Its open tasks and notices.
    pub tasks: Vec<Change>,
    /// Its deadlines and pending timers.
    pub timers: Vec<Change>,
    /// Its variables.
    pub variables: Vec<Change>,
    /// The children its `call` steps wait on (migrated by their own plans).
    pub children: Vec<Change>,
    /// Why it cannot be migrated; empty when it can.
    pub refusals: Vec<String>,
}

impl Plan {
    /// Whether nothing refuses it.
    pub fn ok(&self) -> bool {
        self.refusals.is_empty()
    }
}

/// The plan for migrating `state` from `from` (the version it runs on) to
/// `env.definition`, and the transition that carries it out when nothing
/// refuses it. `actor` is who migrates it (the history names them).
pub fn migrate(
    env: &Env<'_>,
    from: &Definition,
    state: &InstanceState,
    m: &Migration,
    actor: &str,
    now: DateTime<Utc>,
) -> (Plan, Option<Transition>) {
    let to = env.definition;
    let mut plan = Plan {
        instance: state.id.clone(),
        process: state.definition.clone(),
        from: state.version,
        to: to.version,
        steps: vec![],
        tasks: vec![],
        timers: vec![],
        variables: vec![],
        children: vec![],
        refusals: vec![],
    };
    if state.definition != to.id || from.id != to.id {
        plan.refusals.push(format!(
            "the instance runs `{}`, not `{}`",
            state.definition, to.id
        ));
        return (plan, None);
    }
    if state.version != from.version {
        plan.refusals.push(format!(
            "the instance runs on version {}, not {}",
            state.version, from.version
        ));
        return (plan, None);
    }
    if from.version == to.version {
        plan.refusals
            .push(format!("it already runs on version {}", to.version));
        return (plan, None);
    }
    match &state.status {
        Status::Running => {}
        Status::Stuck { code, .. } => plan.refusals.push(format!(
            "it is stuck ({code}): retry or cancel it before migrating (`duban retry {}`)",
            state.id
        )),
        other => {
            plan.refusals
                .push(format!("it has ended ({})", other.name()));
            return (plan, None);
        }
    }
    if let Some(p) = &state.profile {
        if !to.profiles.contains_key(p) {
            plan.refusals.push(format!(
                "its profile `{p}` is not a profile of version {}",
                to.version
            ));
        }
    }
    for (old, new) in &m.map {
        if !from.steps.contains_key(old) {
            plan.refusals.push(format!(
                "--map {old}={new}: version {} has no step `{old}`",
                from.version
            ));
        }
        if !to.steps.contains_key(new) {
            plan.refusals.push(format!(
                "--map {old}={new}: version {} has no step `{new}`",
                to.version
            ));
        }
    }
    let target = |s: &str| m.map.get(s).cloned().unwrap_or_else(|| s.to_string());

    // ----- occupied steps --------------------------------------------------
    let mut occupied: BTreeMap<String, String> = BTreeMap::new();
    for t in state.open_tasks() {
        occupied
            .entry(t.step.clone())
            .or_insert_with(|| format!("open {} `{}`", t.kind, t.id));
    }
    for w in state.waits.keys() {
        occupied
            .entry(w.clone())
            .or_insert_with(|| "waiting".into());
    }
    for f in state.for_each.keys() {
        occupied
            .entry(f.clone())
            .or_insert_with(|| "running for each item".into());
    }
    for (j, n) in state.joins.iter().chain(state.join_expect.iter()) {
        if *n > 0 {
            occupied
                .entry(j.clone())
                .or_insert_with(|| format!("a join with {n} arrival(s)"));
        }
    }
    let mut renames: Vec<(String, String)> = vec![];
    for (s, why) in &occupied {
        let t = target(s);
        let Some(old) = from.steps.get(s) else {
            plan.refusals.push(format!(
                "step `{s}` ({why}) is not a step of version {}",
                from.version
            ));
            continue;
        };
        let Some(new) = to.steps.get(&t) else {
            plan.refusals.push(format!(
                    "step `{s}` is occupied ({why}) and version {} has no step `{t}`: name its step in version {} with --map {s}=STEP",
                    to.version, to.version
                ),
            );
            continue;
        };
        for why_not in incompatible(s, old, &t, new) {
            plan.refusals.push(why_not);
        }
        if *s == t {
            plan.steps
                .push(Change::new(s, "kept", format!("{s} ({why})")));
        } else {
            plan.steps
                .push(Change::new(s, "moved", format!("{s} → {t} ({why})")));
            renames.push((s.clone(), t));
        }
    }
    // Closed tasks of a step the mapping names follow it, so that what reads
    // a step's latest task (documents, reports) finds them.
    for (old, new) in &m.map {
        if !occupied.contains_key(old)
            && to.steps.contains_key(new)
            && state.tasks.values().any(|t| &t.step == old)
        {
            renames.push((old.clone(), new.clone()));
        }
    }

    // ----- variables ---------------------------------------------------
    let mut variables = state.variables.clone();
    let mut changed: BTreeMap<String, Json> = BTreeMap::new();
    for (name, var) in &to.variables {
        let given = m.variables.get(name);
        match (given, state.variables.get(name)) {
            (Some(v), old) => match values::check(name, var, v) {
                Ok(v) => {
                    let what = if old.is_some() { "changed" } else { "added" };
                    plan.variables
                        .push(Change::new(name, what, format!("{name} = {v} (given)")));
                    variables.insert(name.clone(), v.clone());
                    changed.insert(name.clone(), v);
                }
                Err(e) => plan.refusals.push(format!("--var {name}: {}", e.message())),
            },
            (None, Some(v)) => {
                if let Err(e) = values::check(name, var, v) {
                    plan.refusals.push(format!(
                            "variable `{name}` holds {v}, which version {} does not accept: {}; give a new value with --var {name}=VALUE",
                            to.version,
                            e.message()
                        ),
                    );
                }
            }
            (None, None) => match &var.default {
                Some(d) => {
                    let v = values::to_json(d);
                    plan.variables.push(Change::new(
                        name,
                        "added",
                        format!("{name} = {v} (the default of version {})", to.version),
                    ));
                    variables.insert(name.clone(), v.clone());
                    changed.insert(name.clone(), v);
                }
                None if var.required => plan.refusals.push(format!(
                        "variable `{name}` is required by version {} and the instance has no value and the version no default: give it with --var {name}=VALUE",
                        to.version
                    ),
                ),
                None => {}
            },
        }
    }
    let mut removed: BTreeMap<String, Json> = BTreeMap::new();
    for (name, v) in &state.variables {
        if !to.variables.contains_key(name) {
            plan.variables.push(Change::new(
                name,
                "removed",
                format!(
                    "{name} (was {v}): version {} does not declare it",
                    to.version
                ),
            ));
            variables.remove(name);
            removed.insert(name.clone(), v.clone());
        }
    }
    for (name, v) in &m.variables {
        if !to.variables.contains_key(name) {
            plan.refusals.push(format!(
                "--var {name}={v}: version {} declares no variable `{name}`",
                to.version
            ));
        }
    }

    // ----- children --------------------------------------------------------
    for w in state.waits.values() {
        for c in w.all_children() {
            plan.children.push(Change::new(
                c,
                "listed",
                format!(
                    "called by `{}`; migrated by a plan of its own process",
                    w.step
                ),
            ));
        }
    }

    // ----- the new state -------------------------------------------------
    let mut next = state.clone();
    next.variables = variables;
    next.version = to.version;
    let rename = |s: &mut String| {
        if let Some((_, n)) = renames.iter().find(|(o, _)| o == s) {
            *s = n.clone();
        }
    };
    for t in next.tasks.values_mut() {
        rename(&mut t.step);
    }
    next.waits = std::mem::take(&mut next.waits)
        .into_iter()
        .map(|(mut k, mut w)| {
            rename(&mut k);
            rename(&mut w.step);
            (k, w)
        })
        .collect();
    next.for_each = std::mem::take(&mut next.for_each)
        .into_iter()
        .map(|(mut k, v)| {
            rename(&mut k);
            (k, v)
        })
        .collect();
    for map in [&mut next.joins, &mut next.join_expect] {
        *map = std::mem::take(map)
            .into_iter()
            .map(|(mut k, v)| {
                rename(&mut k);
                (k, v)
            })
            .collect();
    }
    let mut commands = vec![Command::Migrate {
        from: from.version,
        to: to.version,
        steps: renames.clone(),
    }];
    // A wait's timers name its step: they follow it, with their ids and dues.
    for t in next.timers.values_mut() {
        let old = t.kind.clone();
        match &mut t.kind {
            TimerKind::Wait { step } | TimerKind::MessageTimeout { step } => rename(step),
            // A wait's reminder names its step; a task's, its task id.
            TimerKind::Reminder { task, .. } if !task.contains('.') => rename(task),
            _ => {}
        }
        if t.kind != old {
            commands.push(Command::CancelTimer {
                timer: t.id.clone(),
            });
            commands.push(Command::ScheduleTimer { timer: t.clone() });
            plan.timers.push(Change::new(
                &t.id,
                "renamed",
                format!(
                    "{} (due {}) now names its step in version {}",
                    t.id,
                    local(t.due),
                    to.version
                ),
            ));
        }
    }
    if !plan.ok() {
        return (plan, None);
    }

    // ----- deadlines, under the target ------------------------------------
    let mut run = Run::new(env, next, now);
    run.commands = commands;
    let open: Vec<_> = run.state.open_tasks().cloned().collect();
    for task in open {
        let assignees = task.assignees.join(", ");
        let moved = renames
            .iter()
            .find(|(o, _)| state.tasks.get(&task.id).is_some_and(|t| &t.step == o));
        plan.tasks.push(match moved {
            Some((o, n)) => Change::new(
                &task.id,
                "moved",
                format!("{o} → {n}, assigned to {assignees}"),
            ),
            None => Change::new(
                &task.id,
                "kept",
                format!("{}, assigned to {assignees}", task.step),
            ),
        });
        let step = &to.steps[&task.step];
        let def = step.kind.deadline().cloned();
        let started = match def.as_ref().map(|d| &d.from) {
            Some(StartRef::Receipt) => task.received_at,
            _ => Some(task.opened_at),
        };
        match (&task.deadline, def) {
            (Some(old), None) => {
                run.cancel_timers(|k| {
                    of_task(k, &task.id) && !matches!(k, TimerKind::DeemedReceipt { .. })
                });
                run.state.tasks.get_mut(&task.id).expect("open").deadline = None;
                run.commands.push(Command::UpdateTask {
                    task: task.id.clone(),
                });
                plan.timers.push(Change::new(
                    &task.id,
                    "removed",
                    format!(
                        "the deadline {} of `{}`: version {} has none",
                        day(old),
                        task.step,
                        to.version
                    ),
                ));
            }
            (None, Some(d)) => {
                let Some(opened) = started else {
                    plan.timers.push(Change::new(
                        &task.id,
                        "kept",
                        "no deadline yet: counted from its receipt".to_string(),
                    ));
                    continue;
                };
                run.item = task.item.clone();
                match run
                    .start_of(&task.step, &d, Some(opened))
                    .and_then(|s| run.schedule_task_deadline(&task.id, &d, s))
                {
                    Ok(c) => {
                        run.commands.push(Command::UpdateTask {
                            task: task.id.clone(),
                        });
                        plan.timers.push(Change::new(
                            &task.id,
                            "added",
                            format!("a deadline of version {}: {}", to.version, day(&c)),
                        ));
                    }
                    Err(e) => plan.refusals.push(format!(
                        "task `{}`: its new deadline cannot be counted: {}",
                        task.id,
                        e.message()
                    )),
                }
                run.item = None;
            }
            (Some(old), Some(d)) if m.recount => {
                let Some(opened) = started else { continue };
                run.item = task.item.clone();
                let counted = run.start_of(&task.step, &d, Some(opened)).and_then(|s| {
                    let c = run.count(&d, s)?;
                    Ok((s, c))
                });
                match counted {
                    Ok((_, c)) if &c == old => plan.timers.push(Change::new(
                        &task.id,
                        "kept",
                        format!("deadline {} (the same when recounted)", day(old)),
                    )),
                    Ok((s, _)) => {
                        run.cancel_timers(|k| {
                            of_task(k, &task.id) && !matches!(k, TimerKind::DeemedReceipt { .. })
                        });
                        match run.schedule_task_deadline(&task.id, &d, s) {
                            Ok(c) => {
                                run.commands.push(Command::UpdateTask {
                                    task: task.id.clone(),
                                });
                                plan.timers.push(Change::new(
                                    &task.id,
                                    "recounted",
                                    format!("deadline {} → {}", day(old), day(&c)),
                                ));
                            }
                            Err(e) => plan.refusals.push(format!(
                                "task `{}`: its deadline cannot be recounted: {}",
                                task.id,
                                e.message()
                            )),
                        }
                    }
                    Err(e) => plan.refusals.push(format!(
                        "task `{}`: its deadline cannot be recounted: {}",
                        task.id,
                        e.message()
                    )),
                }
                run.item = None;
            }
            (Some(old), Some(d)) => {
                // Kept as counted; the expiry timer follows the target's rule
                // of which deadlines expire.
                let has_expiry = run
                    .state
                    .timers
                    .values()
                    .any(|t| matches!(&t.kind, TimerKind::Expiry { task: x } if *x == task.id));
                if has_expiry && !expires(&d) {
                    run.cancel_timers(
                        |k| matches!(k, TimerKind::Expiry { task: x } if *x == task.id),
                    );
                    plan.timers.push(Change::new(
                        &task.id,
                        "removed",
                        format!("the expiry of {}: in version {} it is a minimum that does not escalate", day(old), to.version),
                    ));
                } else if !has_expiry && expires(&d) && old.deadline.with_timezone(&Utc) > now {
                    run.add_timer(
                        old.deadline.with_timezone(&Utc),
                        TimerKind::Expiry {
                            task: task.id.clone(),
                        },
                        old.provisional,
                    );
                    plan.timers.push(Change::new(
                        &task.id,
                        "added",
                        format!(
                            "the expiry at {} (version {} escalates it)",
                            day(old),
                            to.version
                        ),
                    ));
                } else {
                    plan.timers.push(Change::new(
                        &task.id,
                        "kept",
                        format!("deadline {} kept", day(old)),
                    ));
                }
            }
            (None, None) => {}
        }
    }
    if m.recount {
        let waits: Vec<_> = run.state.waits.values().cloned().collect();
        for w in waits {
            let Some((d, kind)) = run.wait_deadline(&w.step) else {
                continue;
            };
            let (Some(since), Some(old)) = (w.since, w.deadline.clone()) else {
                continue;
            };
            let counted = run.start_of(&w.step, &d, Some(since));
            match counted.and_then(|s| Ok((s, run.count(&d, s)?))) {
                Ok((_, c)) if c == old => {}
                Ok((s, _)) => {
                    run.cancel_timers(|k| of_wait(k, &w.step));
                    match run.schedule_wait(&w.step, &d, s, kind) {
                        Ok(c) => plan.timers.push(Change::new(
                            &w.step,
                            "recounted",
                            format!("waiting period {} → {}", day(&old), day(&c)),
                        )),
                        Err(e) => plan.refusals.push(format!(
                            "step `{}`: its period cannot be recounted: {}",
                            w.step,
                            e.message()
                        )),
                    }
                }
                Err(e) => plan.refusals.push(format!(
                    "step `{}`: its period cannot be recounted: {}",
                    w.step,
                    e.message()
                )),
            }
        }
    }
    for t in run.state.timers.values() {
        if !plan.timers.iter().any(|c| c.subject == t.id) && state.timers.contains_key(&t.id) {
            plan.timers.push(Change::new(
                &t.id,
                "kept",
                format!("{} due {}", timer_name(&t.kind), local(t.due)),
            ));
        }
    }
    if !plan.ok() {
        return (plan, None);
    }

    // ----- the history line -------------------------------------------------
    let mut note = format!("由第{}版迁移至第{}版", from.version, to.version);
    for (o, n) in &renames {
        note.push_str(&format!("；步骤 {o} 改为 {n}"));
    }
    for (name, v) in &changed {
        note.push_str(&format!("；变量 {name} 设为 {v}"));
    }
    for (name, v) in &removed {
        note.push_str(&format!("；变量 {name} 不再使用（原值 {v}）"));
    }
    note.push_str(if m.recount {
        "；期限按新版本重新计算"
    } else {
        "；已计算的期限保持原日期"
    });
    let current = state.current_steps();
    let line = HistoryEntry::new(run.now, actor, HistoryKind::Migrated)
        .from_opt(current.first().cloned())
        .to_opt(run.state.current_steps().first().cloned())
        .changed(changed)
        .note(note)
        .people(vec![actor.to_string()]);
    run.record(line);
    run.state.revision += 1;
    run.state.last_at = Some(run.now);
    let t = Transition {
        state: run.state,
        commands: run.commands,
        history: run.history,
    };
    (plan, Some(t))
}

/// Why an occupied step `s` of the current version cannot become step `t`
/// of the target.
fn incompatible(s: &str, old: &Step, t: &str, new: &Step) -> Vec<String> {
    let mut out = vec![];
    if old.kind.name() != new.kind.name() {
        out.push(format!(
            "step `{s}` is a {} and `{t}` of the target is a {}: an occupied step maps only to a step of its own kind",
            old.kind.name(),
            new.kind.name()
        ));
        return out;
    }
    if old.for_each.is_some() != new.for_each.is_some() {
        out.push(format!(
            "step `{s}` {} `for_each` and `{t}` {}: its items cannot be carried over",
            if old.for_each.is_some() {
                "has"
            } else {
                "has no"
            },
            if new.for_each.is_some() {
                "has"
            } else {
                "has none"
            }
        ));
    }
    match (&old.kind, &new.kind) {
        (
            StepKind::Task {
                assignee: a,
                min_assignees: n,
                ..
            },
            StepKind::Task {
                assignee: b,
                min_assignees: m,
                ..
            },
        ) if a != b || n != m => {
            out.push(format!(
                "step `{s}` has an open task whose assignees would change ({} → {}): complete or reassign it first, or keep its assignee in the target",
                party(a),
                party(b)
            ));
        }
        (StepKind::Notice { to: a, .. }, StepKind::Notice { to: b, .. }) if a != b => {
            out.push(format!(
                "step `{s}` has an open notice whose recipient would change ({} → {})",
                party(a),
                party(b)
            ))
        }
        (StepKind::Call { process: a, .. }, StepKind::Call { process: b, .. }) if a != b => out
            .push(format!(
                "step `{s}` waits on a child of `{a}`; `{t}` calls `{b}`"
            )),
        (
            StepKind::WaitMessage {
                message: a,
                correlation: ca,
                ..
            },
            StepKind::WaitMessage {
                message: b,
                correlation: cb,
                ..
            },
        ) if a != b || ca.source != cb.source => out.push(format!(
            "step `{s}` waits for message `{a}` ({}); `{t}` waits for `{b}` ({}): the message it is owed would not reach it",
            ca.source, cb.source
        )),
        _ => {}
    }
    out
}

fn party(p: &Party) -> String {
    match p {
        Party::Role { role, within } => {
            let r = match role {
                crate::definition::RoleRef::Role(r) => format!("role {r}"),
                crate::definition::RoleRef::Param(p) => format!("role profile.{p}"),
            };
            match within {
                Some(w) => format!("{r} within var.{w}"),
                None => r,
            }
        }
        Party::Person(p) => format!("person {p}"),
        Party::Variable(v) => format!("var.{v}"),
        Party::Assignee => "the assignee".into(),
    }
}

fn timer_name(k: &TimerKind) -> String {
    match k {
        TimerKind::Expiry { task } => format!("the expiry of {task}"),
        TimerKind::Reminder { task, before } => {
            format!("the reminder {before} before {task}'s deadline")
        }
        TimerKind::Wait { step } => format!("the end of {step}'s period"),
        TimerKind::MessageTimeout { step } => format!("the timeout of {step}"),
        TimerKind::DeemedReceipt { task } => format!("the deemed receipt of {task}"),
    }
}

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&LEGAL_TZ)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn day(d: &Deadline) -> String {
    d.last_day.format("%Y-%m-%d").to_string()
}
