//! The flow of a process: its edges, and the checks on them.
//!
//! One function, [`step_edges`], says where a step can lead; the validator
//! (reachability, paths to an end, parallel joins) and the Mermaid graph are
//! both built on it, so the picture an administrator sees is the flow the
//! validator checked.

use std::collections::{BTreeSet, VecDeque};

use super::check::Checker;
use super::diagnostic::Code;
use super::model::*;
use super::source::Path;
use super::steps::Steps;
use crate::calendar::Bound;

/// What kind of transition an edge is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EdgeKind {
    /// A task or notice outcome.
    Outcome,
    /// A decision branch whose condition held.
    Branch,
    /// A decision's default.
    Default,
    /// A parallel split into one of its branches.
    Split,
    /// The plain successor of a join, call, wait or timer.
    Next,
    /// Expiry of a deadline.
    Expiry,
}

/// One possible transition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Edge {
    /// From this step.
    pub from: String,
    /// To this step.
    pub to: String,
    /// Why (outcome id, condition, deadline …), for people.
    pub label: String,
    /// What kind of transition.
    pub kind: EdgeKind,
}

/// Describes a deadline in a few words, e.g. `within 30日 from var.issued_on`.
pub fn describe_deadline(d: &DeadlineDef) -> String {
    let period = match &d.period {
        PeriodRef::Literal(p) => p.to_string(),
        PeriodRef::Param(p) => format!("profile.{p}"),
        PeriodRef::Variable(v) => format!("var.{v}"),
    };
    let bound = match d.bound {
        Bound::Within => "within",
        Bound::AtLeast => "at least",
    };
    let from = match &d.from {
        StartRef::Opened => String::new(),
        StartRef::Receipt => " of receipt".into(),
        StartRef::Variable(v) => format!(" from var.{v}"),
    };
    format!("{bound} {period}{from}")
}

/// The transitions out of one step.
pub fn step_edges(id: &str, step: &Step) -> Vec<Edge> {
    let e = |to: &str, label: String, kind| Edge {
        from: id.into(),
        to: to.into(),
        label,
        kind,
    };
    let mut out = Vec::new();
    let expiry = |d: &Option<DeadlineDef>, out: &mut Vec<Edge>| {
        if let Some(d) = d {
            if let Some(Expiry { goto: Some(g), .. }) = &d.on_expiry {
                out.push(e(
                    g,
                    format!("expired: {}", describe_deadline(d)),
                    EdgeKind::Expiry,
                ));
            }
        }
    };
    match &step.kind {
        StepKind::Task {
            outcomes, deadline, ..
        }
        | StepKind::Notice {
            outcomes, deadline, ..
        } => {
            for (oid, o) in outcomes {
                let label = match deadline {
                    Some(d) if d.bound == Bound::Within => {
                        format!("{oid} ({})", describe_deadline(d))
                    }
                    Some(d) => format!("{oid} (after {})", describe_deadline(d)),
                    None => oid.clone(),
                };
                out.push(e(&o.next, label, EdgeKind::Outcome));
            }
            expiry(deadline, &mut out);
        }
        StepKind::Decision { branches, default } => {
            for b in branches {
                out.push(e(&b.goto, b.when.source.clone(), EdgeKind::Branch));
            }
            out.push(e(default, "default".into(), EdgeKind::Default));
        }
        StepKind::Parallel { branches, .. } => {
            for b in branches {
                out.push(e(b, "parallel".into(), EdgeKind::Split));
            }
        }
        StepKind::Join { next } => out.push(e(next, "all branches done".into(), EdgeKind::Next)),
        StepKind::Call { process, next, .. } => {
            out.push(e(next, format!("{process} ended"), EdgeKind::Next))
        }
        StepKind::WaitMessage {
            message,
            next,
            deadline,
            ..
        } => {
            out.push(e(next, format!("message {message}"), EdgeKind::Next));
            expiry(deadline, &mut out);
        }
        StepKind::WaitTimer { timer, next } => {
            out.push(e(next, describe_deadline(timer), EdgeKind::Next));
        }
        StepKind::End { .. } => {}
    }
    out
}

impl Definition {
    /// Every transition of the process, in step order.
    pub fn edges(&self) -> Vec<Edge> {
        self.steps
            .iter()
            .flat_map(|(id, s)| step_edges(id, s))
            .collect()
    }
}

/// Reachability, paths to an end, and parallel joins. A step that failed to
/// check (`None`) is assumed to lead anywhere and to reach an end, so its
/// errors are not repeated as flow errors.
pub(super) fn check_flow(c: &mut Checker<'_>, start: &str, steps: &Steps) {
    let ids: Vec<&str> = steps.keys().map(String::as_str).collect();
    let succ = |id: &str| -> Vec<String> {
        match steps.get(id) {
            Some(Some(s)) => step_edges(id, s)
                .into_iter()
                .map(|e| e.to)
                .filter(|t| steps.contains_key(t))
                .collect(),
            Some(None) => ids.iter().map(|s| s.to_string()).collect(),
            None => Vec::new(),
        }
    };
    if !steps.contains_key(start) {
        return; // already reported as an unknown step
    }
    // Forward reachability from the start.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut queue = VecDeque::from([start.to_string()]);
    while let Some(id) = queue.pop_front() {
        if seen.insert(id.clone()) {
            queue.extend(succ(&id));
        }
    }
    let root = Path::root().key("steps");
    for id in &ids {
        if !seen.contains(*id) {
            c.err_key(
                &root.key(id),
                Code::UnreachableStep,
                format!(
                    "step `{id}` is unreachable: no path from the start step `{start}` leads to it"
                ),
                Some("route an outcome, branch or `next:` to it, or delete it".into()),
            );
        }
    }
    // Backward reachability from the ends (and from broken steps).
    let mut good: BTreeSet<String> = steps
        .iter()
        .filter(|(_, s)| {
            matches!(
                s,
                None | Some(Step {
                    kind: StepKind::End { .. },
                    ..
                })
            )
        })
        .map(|(k, _)| k.clone())
        .collect();
    loop {
        let before = good.len();
        for id in &ids {
            if !good.contains(*id) && succ(id).iter().any(|t| good.contains(t)) {
                good.insert(id.to_string());
            }
        }
        if good.len() == before {
            break;
        }
    }
    for id in &ids {
        if seen.contains(*id) && !good.contains(*id) {
            c.err_key(
                &root.key(id),
                Code::NoPathToEnd,
                format!("step `{id}` cannot reach an end: every path from it loops or stops without an `end` step"),
                Some("give it an outcome, branch or expiry that leads towards a `kind: end` step".into()),
            );
        }
    }
    // Parallel splits: the join must be a join, reachable from every branch.
    for (id, step) in steps {
        let Some(Step {
            kind: StepKind::Parallel { branches, join },
            ..
        }) = step
        else {
            continue;
        };
        match steps.get(join) {
            Some(Some(Step {
                kind: StepKind::Join { .. },
                ..
            }))
            | Some(None) => {}
            Some(Some(s)) => {
                c.err(
                    &root.key(id).key("join"),
                    Code::BadParallel,
                    format!(
                        "`join: {join}` names a {} step; it must name a `kind: join` step",
                        s.kind.name()
                    ),
                    None,
                );
                continue;
            }
            None => continue,
        }
        for (i, b) in branches.iter().enumerate() {
            if !steps.contains_key(b) {
                continue;
            }
            let mut seen = BTreeSet::new();
            let mut queue = VecDeque::from([b.clone()]);
            let mut found = false;
            while let Some(x) = queue.pop_front() {
                if x == *join {
                    found = true;
                    break;
                }
                if seen.insert(x.clone()) {
                    queue.extend(succ(&x));
                }
            }
            if !found {
                c.err(
                    &root.key(id).key("branches").index(i),
                    Code::BadParallel,
                    format!("parallel branch `{b}` never reaches the join `{join}`"),
                    Some("every branch of a parallel split must lead to its join".into()),
                );
            }
        }
    }
}
