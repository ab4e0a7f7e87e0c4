//! `duban graph`: the Mermaid drawing parses back into the definition's
//! nodes and edges.

use std::collections::BTreeSet;

use duban_engine::definition::graph::{graph, to_mermaid};
use duban_engine::definition::load_library;
use duban_tests::{processes, yaml_files};

type Edge = (String, String, String, bool);

/// A small parser for the subset of Mermaid `duban graph` writes:
/// `id<open>"label"<close>` nodes and `a -->|"label"| b` / `-.->` edges.
fn parse(mermaid: &str) -> (BTreeSet<(String, String)>, BTreeSet<Edge>) {
    let mut lines = mermaid
        .lines()
        .filter(|l| !l.trim_start().starts_with("%%"));
    assert_eq!(lines.next(), Some("flowchart TD"));
    let mut nodes = BTreeSet::new();
    let mut edges = BTreeSet::new();
    for line in lines {
        let line = line.trim();
        let unquote = |s: &str| s.trim_matches('"').replace("#quot;", "\"");
        if let Some((from, rest)) = line
            .split_once(" -->|")
            .map(|(a, b)| (a, (b, false)))
            .or_else(|| line.split_once(" -.->|").map(|(a, b)| (a, (b, true))))
        {
            let (rest, dashed) = rest;
            let (label, to) = rest.rsplit_once("| ").expect("edge has a target");
            edges.insert((from.to_string(), to.to_string(), unquote(label), dashed));
        } else {
            let open = line.find(['[', '{', '(']).expect("node has a shape");
            let id = &line[..open];
            let first = line.find('"').expect("quoted label");
            let last = line.rfind('"').expect("quoted label");
            nodes.insert((id.to_string(), unquote(&line[first..=last])));
        }
    }
    (nodes, edges)
}

#[test]
fn dispute_graph_round_trips() {
    let lib = load_library(&yaml_files(&processes()), &[]);
    let def = &lib.definitions["dispute"];
    let text = to_mermaid(def);
    let (nodes, edges) = parse(&text);
    let g = graph(def);
    let want_nodes: BTreeSet<_> = g
        .nodes
        .iter()
        .map(|n| (n.id.clone(), n.label.clone()))
        .collect();
    let want_edges: BTreeSet<_> = g
        .edges
        .iter()
        .map(|e| (e.from.clone(), e.to.clone(), e.label.clone(), e.dashed))
        .collect();
    assert_eq!(nodes, want_nodes);
    assert_eq!(edges, want_edges);
    // Every step is a node; the drawing is not just self-consistent but
    // shows the process: XT-6's two ways out of coordination, the XT-8
    // return loop, the expiry of the correction period, the escalation.
    for id in def.steps.keys() {
        assert!(nodes.iter().any(|(n, _)| n == id), "step {id} is drawn");
    }
    let has = |from: &str, to: &str, label: &str, dashed: bool| {
        edges.contains(&(from.into(), to.into(), label.into(), dashed))
    };
    assert!(
        has(
            "coordinate",
            "serve_opinion",
            "agreed (within profile.coordination_period)",
            false
        ),
        "{text}"
    );
    assert!(
        has(
            "coordinate",
            "government_decides",
            "failed (within profile.coordination_period)",
            false
        ),
        "{text}"
    );
    assert!(has(
        "review_application",
        "return_application",
        "incomplete (within profile.review_period)",
        false
    ));
    assert!(has(
        "return_application",
        "handle_no_resubmission",
        "expired: within profile.resubmit_period of receipt",
        true
    ));
    assert!(has("route", "review_application", "default", false));
    assert!(has(
        "serve_applicant",
        "both_served",
        "expired: within profile.execution_report_period of receipt",
        true
    ));
    assert!(has(
        "government_decides",
        "serve_decision",
        "decided",
        false
    ));
    assert!(has("serve_opinion", "serve_applicant", "parallel", false));
}

#[test]
fn every_library_process_draws_and_parses() {
    let lib = load_library(&yaml_files(&processes()), &[]);
    for def in lib.definitions.values() {
        let (nodes, edges) = parse(&to_mermaid(def));
        assert!(nodes.len() >= def.steps.len(), "{}", def.id);
        assert_eq!(edges.len(), graph(def).edges.len(), "{}", def.id);
    }
}
