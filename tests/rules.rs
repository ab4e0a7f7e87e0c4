//! `docs/rules.md` is the map from every rule ID to the definition that
//! carries it out and the scenarios that prove it (issue 15): each ID of
//! its table is cited in the `rules:` of the definition it names and named
//! by each scenario it lists, which exists; and when `../shared/RULES.md`
//! (the catalogue) is beside the repository, every ID it lists is in the
//! table. (That every scenario passes is `tests/scenarios.rs`.)

use std::collections::BTreeMap;

use duban_tests::{processes, root};

/// The rows of the table: ID → (definitions, scenarios).
fn table() -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string(root().join("docs/rules.md")).unwrap();
    let at = text
        .find("## Where each rule is carried out")
        .expect("docs/rules.md has the table");
    let section = &text[at..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    let mut rows = BTreeMap::new();
    for line in section[..end].lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 6 || cells[1] == "ID" {
            continue;
        }
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        rows.insert(cells[1].to_string(), (ticked(cells[3]), ticked(cells[4])));
    }
    rows
}

/// The rule IDs a definition file cites anywhere in a `rules:` list.
fn cited(definition: &str) -> Vec<String> {
    let text = std::fs::read_to_string(processes().join(format!("{definition}.yaml")))
        .unwrap_or_else(|e| panic!("{definition}.yaml: {e}"));
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(list) = line.trim().strip_prefix("rules: [") {
            out.extend(
                list.trim_end_matches(']')
                    .split(',')
                    .map(|s| s.trim().to_string()),
            );
        }
    }
    out
}

#[test]
fn every_rule_in_the_table_is_cited_and_has_a_scenario_naming_it() {
    let rows = table();
    assert!(rows.len() >= 50, "{} rows", rows.len());
    for (id, (definitions, scenarios)) in &rows {
        assert!(!definitions.is_empty(), "{id}: no definition");
        assert!(
            definitions.iter().any(|d| cited(d).contains(id)),
            "{id}: not cited by {definitions:?}"
        );
        assert!(!scenarios.is_empty(), "{id}: no scenario");
        for s in scenarios {
            let text = std::fs::read_to_string(processes().join("scenarios").join(s))
                .unwrap_or_else(|e| panic!("{id}: {s}: {e}"));
            assert!(text.contains(id.as_str()), "{id}: {s} does not name it");
        }
    }
}

#[test]
fn every_rule_of_the_catalogue_is_in_the_table() {
    let catalogue = root().join("../shared/RULES.md");
    let Ok(text) = std::fs::read_to_string(&catalogue) else {
        eprintln!("{} is not here: nothing to compare", catalogue.display());
        return;
    };
    let rows = table();
    let mut missing = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| ")) {
        let first = line.split('|').nth(1).unwrap_or("");
        for word in first.split(['/', ' ', ',']).map(str::trim) {
            let is_id = word.len() > 3
                && word.as_bytes()[2] == b'-'
                && ["SQ", "RC", "WH", "XC", "XT"].contains(&&word[..2]);
            if is_id && !rows.contains_key(word) && !missing.contains(&word.to_string()) {
                missing.push(word.to_string());
            }
        }
    }
    assert!(missing.is_empty(), "not in docs/rules.md: {missing:?}");
}

/// The profiles a scenario runs instances under: its own `profile:`, those
/// its `start:` steps name, and else the default profile of its definition.
/// `None` when the definition has no profiles (one jurisdiction only).
fn scenario_profiles(scenario: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(processes().join("scenarios").join(scenario)).unwrap();
    let field = |line: &str, key: &str| -> Option<String> {
        let at = line.find(key)? + key.len();
        let value: String = line[at..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        (!value.is_empty()).then_some(value)
    };
    let definition = text
        .lines()
        .find_map(|l| l.strip_prefix("definition:"))
        .map(|d| d.trim().trim_start_matches("../").trim_end_matches(".yaml"))
        .unwrap_or_else(|| panic!("{scenario}: no definition"));
    let definition =
        std::fs::read_to_string(processes().join(format!("{definition}.yaml"))).unwrap();
    if !definition.lines().any(|l| l.starts_with("profiles:")) {
        return None;
    }
    let mut out: Vec<String> = text
        .lines()
        // `profile: X` of the scenario, of a `start: { … }`, or on a line of
        // its own under a `start:` block.
        .filter(|l| l.trim_start().starts_with("profile:") || l.contains("start: {"))
        .filter_map(|l| field(l, "profile:"))
        .collect();
    if !text.lines().any(|l| l.starts_with("profile:")) {
        out.extend(
            definition
                .lines()
                .find_map(|l| l.strip_prefix("default_profile:"))
                .map(|p| p.trim().to_string()),
        );
    }
    Some(out)
}

/// Issue 15: a rule is proved under each profile it belongs to — an ID's
/// jurisdiction code (`WH` of `WH-15(二)`) is the profile of the definitions
/// that carry it out, and one of its scenarios runs under it.
#[test]
fn every_rule_has_a_scenario_under_its_own_profile() {
    let mut unproved = Vec::new();
    for (id, (_, scenarios)) in table() {
        let jurisdiction = &id[..2];
        let covered = scenarios.iter().any(|s| {
            scenario_profiles(s).is_none_or(|profiles| profiles.iter().any(|p| p == jurisdiction))
        });
        if !covered {
            unproved.push(format!("{id}: {scenarios:?}"));
        }
    }
    assert!(
        unproved.is_empty(),
        "no scenario under the rule's profile: {unproved:#?}"
    );
}
