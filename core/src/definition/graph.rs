//! A definition drawn as a Mermaid flowchart (`duban graph`).
//!
//! Nodes are steps, shaped by kind; edges are the transitions of
//! [`super::flow::step_edges`], labelled with outcomes, conditions and
//! deadlines. Expiry edges are dashed, and escalations that notify a role
//! without changing step are dashed edges to that role, so both deadlines
//! and escalations are visible on the edges.

use std::fmt::Write as _;

use super::flow::{describe_deadline, EdgeKind};
use super::model::*;

/// A node of the drawing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GraphNode {
    /// Mermaid id: the step id, or `role__ID` for an escalation target.
    pub id: String,
    /// The text shown.
    pub label: String,
}

/// An edge of the drawing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GraphEdge {
    /// Source node id.
    pub from: String,
    /// Target node id.
    pub to: String,
    /// The text on the edge.
    pub label: String,
    /// Drawn dashed (expiry and escalation).
    pub dashed: bool,
}

/// The nodes and edges of a definition's drawing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Graph {
    /// Nodes in step order, then role nodes.
    pub nodes: Vec<GraphNode>,
    /// Edges in step order.
    pub edges: Vec<GraphEdge>,
}

fn role_name(def: &Definition, r: &RoleRef) -> (String, String) {
    match r {
        RoleRef::Role(id) => (
            format!("role__{id}"),
            def.roles
                .get(id)
                .map_or_else(|| id.clone(), |r| r.name.clone()),
        ),
        RoleRef::Param(p) => (format!("role__profile_{p}"), format!("profile.{p}")),
    }
}

/// Builds the drawing of `def`.
pub fn graph(def: &Definition) -> Graph {
    let mut g = Graph::default();
    for (id, step) in &def.steps {
        g.nodes.push(GraphNode {
            id: id.clone(),
            label: format!("{} ({})", step.name, step.kind.name()),
        });
    }
    let mut roles: Vec<GraphNode> = Vec::new();
    for e in def.edges() {
        g.edges.push(GraphEdge {
            from: e.from,
            to: e.to,
            label: e.label,
            dashed: e.kind == EdgeKind::Expiry,
        });
    }
    for (id, step) in &def.steps {
        let Some(d) = step.kind.deadline() else {
            continue;
        };
        let Some(x) = &d.on_expiry else { continue };
        for r in &x.notify {
            let (rid, rlabel) = role_name(def, r);
            if !roles.iter().any(|n| n.id == rid) {
                roles.push(GraphNode {
                    id: rid.clone(),
                    label: rlabel,
                });
            }
            g.edges.push(GraphEdge {
                from: id.clone(),
                to: rid,
                label: format!("escalate: {}", describe_deadline(d)),
                dashed: true,
            });
        }
    }
    g.nodes.extend(roles);
    g
}

/// Quotes a label for Mermaid: double quotes become `#quot;`.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "#quot;"))
}

/// Renders the drawing as Mermaid `flowchart TD` text.
pub fn to_mermaid(def: &Definition) -> String {
    let g = graph(def);
    let mut out = String::new();
    let _ = writeln!(out, "%% {} v{}: {}", def.id, def.version, def.name);
    let _ = writeln!(out, "%% start: {}", def.start);
    out.push_str("flowchart TD\n");
    for n in &g.nodes {
        let (open, close) = match def.steps.get(&n.id).map(|s| &s.kind) {
            Some(StepKind::Task { .. }) => ("[", "]"),
            Some(StepKind::Notice { .. }) => ("[/", "/]"),
            Some(StepKind::Decision { .. }) => ("{", "}"),
            Some(StepKind::Parallel { .. }) | Some(StepKind::Join { .. }) => ("[[", "]]"),
            Some(StepKind::Call { .. }) => ("[[", "]]"),
            Some(StepKind::SendMessage { .. }) => (">", "]"),
            Some(StepKind::Report { .. }) => ("[(", ")]"),
            Some(StepKind::WaitMessage { .. }) | Some(StepKind::WaitTimer { .. }) => ("(", ")"),
            Some(StepKind::End { .. }) => ("([", "])"),
            None => ("[\\", "\\]"),
        };
        let _ = writeln!(out, "    {}{open}{}{close}", n.id, quote(&n.label));
    }
    for e in &g.edges {
        let arrow = if e.dashed { "-.->" } else { "-->" };
        let _ = writeln!(out, "    {} {arrow}|{}| {}", e.from, quote(&e.label), e.to);
    }
    out
}
