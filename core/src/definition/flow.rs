//! The flow of a process: its edges, and the checks on them.
//!
//! One function, [`step_edges`], says where a step can lead; the validator
//! (reachability, paths to an end, parallel joins) and the Mermaid graph are
//! both built on it, so the picture an administrator sees is the flow the
//! validator checked.

use std::collections::VecDeque;

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
        PeriodRef::Until(v) => format!("until var.{v}"),
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

// Units of work of the flow check on this thread: a call of
// [`step_edges`], a step visited or an edge followed by a walk. A test
// bounds it by the size of the definition, so a walk gone quadratic fails
// on a count, not on a clock (issue 12, finding 10).
#[cfg(test)]
thread_local! {
    pub(super) static WORK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts `units` of flow work (tests only).
#[cfg(test)]
fn work(units: usize) {
    WORK.with(|w| w.set(w.get() + units));
}

#[cfg(not(test))]
#[inline(always)]
fn work(_: usize) {}

/// The transitions out of one step.
pub fn step_edges(id: &str, step: &Step) -> Vec<Edge> {
    work(1);
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
        StepKind::Decision {
            branches, default, ..
        } => {
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
        StepKind::Call {
            process,
            next,
            wait: true,
            deadline,
            ..
        } => {
            out.push(e(next, format!("{process} ended"), EdgeKind::Next));
            expiry(deadline, &mut out);
        }
        StepKind::Call { process, next, .. } => {
            out.push(e(next, format!("{process} started"), EdgeKind::Next))
        }
        StepKind::SendMessage { message, next, .. } => {
            out.push(e(next, format!("sent {message}"), EdgeKind::Next))
        }
        StepKind::Report { next, .. } => out.push(e(next, "counted".into(), EdgeKind::Next)),
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
///
/// Linear in the steps and edges (issue 12, finding 10): the edges are
/// taken from [`step_edges`] once, as step indexes, and each walk visits a
/// step at most once. Paths to an end are a backward walk from the ends
/// over the reversed edges, not a fixpoint over every step.
pub(super) fn check_flow(c: &mut Checker<'_>, start: &str, steps: &Steps) {
    let Some(start_ix) = steps.get_index_of(start) else {
        return; // already reported as an unknown step
    };
    let flow = Flow::new(steps);
    let n = steps.len();
    let root = Path::root().key("steps");
    // Forward reachability from the start.
    let seen = flow.forward(start_ix);
    for (ix, id) in steps.keys().enumerate() {
        if !seen[ix] {
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
    // Backward reachability from the ends (and from broken steps, which
    // reach one by assumption). A broken step's edges to every step only
    // lead out of a step already counted, so they are not needed here.
    let mut pred: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (from, tos) in flow.succ.iter().enumerate() {
        work(1 + tos.len());
        for &to in tos {
            pred[to].push(from);
        }
    }
    let mut good = vec![false; n];
    let mut queue: VecDeque<usize> = VecDeque::new();
    for (ix, s) in steps.values().enumerate() {
        if matches!(
            s,
            None | Some(Step {
                kind: StepKind::End { .. },
                ..
            })
        ) {
            good[ix] = true;
            queue.push_back(ix);
        }
    }
    while let Some(ix) = queue.pop_front() {
        work(1 + pred[ix].len());
        for &p in &pred[ix] {
            if !good[p] {
                good[p] = true;
                queue.push_back(p);
            }
        }
    }
    for (ix, id) in steps.keys().enumerate() {
        if seen[ix] && !good[ix] {
            c.err_key(
                &root.key(id),
                Code::NoPathToEnd,
                format!("step `{id}` cannot reach an end: every path from it loops or stops without an `end` step"),
                Some("give it an outcome, branch or expiry that leads towards a `kind: end` step".into()),
            );
        }
    }
    // Parallel splits: the join must be a join, reachable from every branch.
    // One visited buffer serves every branch's walk (a stamp per walk), so
    // a walk costs what it visits, and it stops at the join.
    let mut stamp = vec![0u32; n];
    let mut walk = 0u32;
    for (id, step) in steps {
        // A parallel split, or an inclusive decision (its branches and its
        // default are the ways it may go).
        let (branches, join, inclusive): (Vec<&String>, &String, bool) = match step {
            Some(Step {
                kind: StepKind::Parallel { branches, join },
                ..
            }) => (branches.iter().collect(), join, false),
            Some(Step {
                kind:
                    StepKind::Decision {
                        branches,
                        default,
                        join: Some(join),
                    },
                ..
            }) => (
                branches
                    .iter()
                    .map(|b| &b.goto)
                    .chain(std::iter::once(default))
                    .collect(),
                join,
                true,
            ),
            _ => continue,
        };
        let Some(join_ix) = steps.get_index_of(join.as_str()) else {
            continue;
        };
        match &steps[join_ix] {
            Some(Step {
                kind: StepKind::Join { .. },
                ..
            })
            | None => {}
            Some(s) => {
                c.err(
                    &root.key(id).key("join"),
                    Code::BadParallel,
                    format!(
                        "`join: {join}` names {} {} step; it must name a `kind: join` step",
                        if s.kind.name().starts_with(['a', 'e', 'i', 'o', 'u']) {
                            "an"
                        } else {
                            "a"
                        },
                        s.kind.name()
                    ),
                    None,
                );
                continue;
            }
        }
        for (i, b) in branches.iter().enumerate() {
            let Some(b_ix) = steps.get_index_of(b.as_str()) else {
                continue;
            };
            walk += 1;
            // A branch meets the join, or ends the whole instance at an
            // `end` (BPMN's terminate end), as the language promises.
            if !flow.reaches_or_ends(b_ix, join_ix, &mut stamp, walk) {
                let (path, what) = match inclusive {
                    // The default is the last way an inclusive choice goes.
                    true if i + 1 == branches.len() => (root.key(id).key("default"), "default"),
                    true => (root.key(id).key("branches").index(i).key("goto"), "branch"),
                    false => (root.key(id).key("branches").index(i), "parallel branch"),
                };
                c.err(
                    &path,
                    Code::BadParallel,
                    format!("{what} `{b}` never reaches the join `{join}`"),
                    Some(if inclusive {
                        "every way an inclusive choice (a decision with `join:`) may go, its default too, must lead to its join".into()
                    } else {
                        "every branch of a parallel split must lead to its join (or end the instance at an `end`)".into()
                    }),
                );
            }
        }
    }
}

/// The edges of the checked steps as step indexes, built once.
struct Flow {
    /// Per step, the steps its edges lead to (targets that are not steps
    /// are left out: they are reported as unknown references).
    succ: Vec<Vec<usize>>,
    /// Per step, whether it failed to check: it may lead anywhere.
    broken: Vec<bool>,
    /// Per step, whether it is an `end` (which ends the whole instance,
    /// also from inside a parallel branch).
    end: Vec<bool>,
}

impl Flow {
    fn new(steps: &Steps) -> Flow {
        let succ = steps
            .iter()
            .map(|(id, s)| match s {
                Some(s) => step_edges(id, s)
                    .iter()
                    .filter_map(|e| steps.get_index_of(e.to.as_str()))
                    .collect(),
                None => Vec::new(),
            })
            .collect();
        let broken = steps.values().map(Option::is_none).collect();
        let end = steps
            .values()
            .map(|s| {
                matches!(
                    s,
                    Some(Step {
                        kind: StepKind::End { .. },
                        ..
                    })
                )
            })
            .collect();
        Flow { succ, broken, end }
    }

    /// The steps reachable from `from`: every step, once a broken one is.
    fn forward(&self, from: usize) -> Vec<bool> {
        let mut seen = vec![false; self.succ.len()];
        seen[from] = true;
        let mut queue = VecDeque::from([from]);
        while let Some(ix) = queue.pop_front() {
            work(1 + self.succ[ix].len());
            if self.broken[ix] {
                work(seen.len());
                seen.iter_mut().for_each(|s| *s = true);
                break;
            }
            for &t in &self.succ[ix] {
                if !seen[t] {
                    seen[t] = true;
                    queue.push_back(t);
                }
            }
        }
        seen
    }

    /// Whether `to`, or an `end` step, is reachable from `from` (a broken
    /// step reaches anything): an `end` ends the whole instance, so a
    /// parallel branch may finish the case instead of meeting its join.
    /// `stamp[ix] == walk` marks a step this walk has visited.
    fn reaches_or_ends(&self, from: usize, to: usize, stamp: &mut [u32], walk: u32) -> bool {
        stamp[from] = walk;
        let mut queue = VecDeque::from([from]);
        while let Some(ix) = queue.pop_front() {
            work(1 + self.succ[ix].len());
            if ix == to || self.broken[ix] || self.end[ix] {
                return true;
            }
            for &t in &self.succ[ix] {
                if stamp[t] != walk {
                    stamp[t] = walk;
                    queue.push_back(t);
                }
            }
        }
        false
    }
}
