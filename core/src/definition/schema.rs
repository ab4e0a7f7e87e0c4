//! The JSON Schema of the process language, from the raw types.
//!
//! The checker walks the top level and the id-keyed sections by hand
//! (`check.rs`), so they have no serde struct; [`RawDefinition`] and
//! [`RawStep`] give them one for the schema only. The tests below hold them
//! to the checker's own lists, [`raw::TOP_KEYS`] and [`raw::STEP_KINDS`],
//! so neither can gain a key the other lacks.
//!
//! The transforms here add what the raw types cannot say with serde
//! attributes alone, from the lists the checker itself uses (the event
//! names, the value types, the report measures), never copies of them.

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema};
use serde_json::{json, Value};

use super::model::Event;
use super::raw::{self, *};

/// A process definition: one YAML file in `processes/`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)] // only its schema is used: the checker walks the file by hand
pub(crate) struct RawDefinition {
    /// The process id, unique in the library; other processes `call` it by this id.
    #[schemars(transform = id)]
    id: String,
    /// An integer ≥ 1; deployment keeps versions apart.
    #[schemars(range(min = 1))]
    version: u32,
    /// The display name, e.g. `行政执法监督督办`.
    name: String,
    /// What the process is for.
    #[schemars(default)]
    description: Option<String>,
    /// The rule ids of docs/rules.md the definition implements: `[XC-19, SQ-19(二)]`.
    #[schemars(default, transform = rule_ids)]
    rules: Vec<String>,
    /// The roles the process refers to, by role id: `{ name, description }`
    /// or just the name.
    #[schemars(default, transform = id_keyed)]
    roles: IndexMap<String, RawRoleEntry>,
    /// The profile parameters, typed: the slots in which jurisdictions differ.
    #[schemars(default, transform = id_keyed)]
    parameters: IndexMap<String, RawParameter>,
    /// Jurisdiction profiles: values for the parameters, by profile id.
    #[schemars(default, transform = id_keyed)]
    profiles: IndexMap<String, RawProfile>,
    /// The profile used when a start names none.
    #[schemars(default)]
    default_profile: Option<String>,
    /// The instance's typed variables, by variable id.
    #[schemars(default, transform = id_keyed)]
    variables: IndexMap<String, RawVariable>,
    /// The id of the first step.
    start: String,
    /// The steps, by step id.
    #[schemars(transform = id_keyed_non_empty)]
    steps: IndexMap<String, RawStep>,
    /// Who is told what, when, by which channel.
    #[schemars(default)]
    notifications: Vec<RawNotification>,
    /// Documents to render, by document id.
    #[schemars(default, transform = id_keyed)]
    documents: IndexMap<String, RawDocument>,
    /// Numbering series (发文字号) of documents, by series id.
    #[schemars(default, transform = id_keyed)]
    numbering: IndexMap<String, RawNumbering>,
    /// Message and document texts (handlebars), by template id.
    #[schemars(default, transform = id_keyed)]
    templates: IndexMap<String, RawTemplate>,
    /// Recurring starts (cron, Asia/Shanghai by default).
    #[schemars(default)]
    schedule: Vec<RawSchedule>,
}

/// A role: the long form, or the short form `government: 本级人民政府`.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)] // as RawDefinition
enum RawRoleEntry {
    /// The role's display name.
    Name(String),
    /// A name and a description.
    Role(RawRole),
}

/// A step; `kind:` says which.
#[derive(JsonSchema)]
#[schemars(tag = "kind", rename_all = "snake_case", transform = describe_kind)]
#[allow(dead_code)] // as RawDefinition
enum RawStep {
    Task(RawTask),
    Notice(RawNotice),
    Decision(RawDecision),
    Parallel(RawParallel),
    Join(RawJoin),
    Call(RawCall),
    SendMessage(RawSendMessage),
    Report(RawReport),
    WaitMessage(RawWaitMessage),
    WaitTimer(RawWaitTimer),
    End(RawEnd),
}

/// The JSON Schema of a process definition (`duban schema process`).
pub fn schema() -> Value {
    crate::schema::generate::<RawDefinition>("duban process definition", false)
}

/// An identifier, as `check_is_id` reads it.
const ID: &str = "^[A-Za-z][A-Za-z0-9_]*$";

/// A rule id, as `check::is_rule_id` reads it: `XC-19`, `SQ-19(二)`.
const RULE_ID: &str = r"^[A-Z]{2,3}-[0-9]+(\([一二三四五六七八九十]+\))?$";

/// A task's or notice's way on: the step's own `next`, or (without
/// `for_each`, whose outcomes have none) a `next` on every outcome.
pub(super) fn next_for_every_outcome(s: &mut Schema) {
    s.insert(
        "anyOf".into(),
        json!([
            { "required": ["next"] },
            {
                "not": { "required": ["for_each"] },
                "properties": { "outcomes": { "additionalProperties": { "required": ["next"] } } }
            }
        ]),
    );
}

/// Adds a constraint to `s` beside the ones it has (`allOf`).
fn also(s: &mut Schema, constraint: Value) {
    match s.get_mut("allOf") {
        Some(Value::Array(all)) => all.push(constraint),
        _ => {
            s.insert("allOf".into(), json!([constraint]));
        }
    }
}

/// A task or notice with `for_each` (E038): no outcome has a `next` of its
/// own, and an item's expiry cannot `goto` anywhere.
pub(super) fn for_each_step(s: &mut Schema) {
    also(
        s,
        json!({
            "if": { "required": ["for_each"] },
            "then": { "properties": {
                "outcomes": { "additionalProperties": { "not": { "required": ["next"] } } },
                "deadline": { "properties": { "on_expiry": { "not": { "required": ["goto"] } } } }
            } }
        }),
    );
}

/// The party of a task or a notice: `assignee: true` names nobody there.
pub(super) fn not_the_assignee(s: &mut Schema) {
    also(s, json!({ "not": { "required": ["assignee"] } }));
}

/// A deadline someone must meet: its last day moves off a rest day
/// (`extend_on_rest_day: false` is a `wait_timer`'s, E036).
pub(super) fn deadline_to_meet(s: &mut Schema) {
    also(
        s,
        json!({ "not": { "properties": { "extend_on_rest_day": { "const": false } }, "required": ["extend_on_rest_day"] } }),
    );
}

/// A deadline that is not a notice's: nothing is received, so it does not
/// count `from: receipt` (E023).
pub(super) fn not_from_receipt(s: &mut Schema) {
    also(
        s,
        json!({ "not": { "properties": { "from": { "const": "receipt" } }, "required": ["from"] } }),
    );
}

/// A wait's time limit (a call's, a `wait_message`'s): a deadline someone
/// must meet, not counted from a receipt, and never a minimum (`bound:
/// at_least`, E036).
pub(super) fn timeout(s: &mut Schema) {
    deadline_to_meet(s);
    not_from_receipt(s);
    also(
        s,
        json!({ "not": { "properties": { "bound": { "const": "at_least" } }, "required": ["bound"] } }),
    );
}

/// A `wait_timer`'s `timer`: it moves on to `next` when it ends, so it has
/// no `on_expiry` (E036).
pub(super) fn timer(s: &mut Schema) {
    also(s, json!({ "not": { "required": ["on_expiry"] } }));
    not_from_receipt(s);
}

/// A call that does not wait has no result, outputs or deadline (E036),
/// nor anything to collect; one with `for_each` collects its children's
/// results instead of `result:` and `outputs:` (E038).
pub(super) fn call_constraints(s: &mut Schema) {
    also(
        s,
        json!({
            "if": { "properties": { "wait": { "const": false } }, "required": ["wait"] },
            "then": { "properties": {
                "result": false,
                "deadline": false,
                "outputs": { "maxProperties": 0 },
                "for_each": { "properties": { "collect": { "maxProperties": 0 }, "complete_when": false } }
            } }
        }),
    );
    also(
        s,
        json!({
            "if": { "required": ["for_each"] },
            "then": { "properties": {
                "result": false,
                "outputs": { "maxProperties": 0 },
                "deadline": { "properties": { "on_expiry": { "not": { "required": ["goto"] } } } }
            } }
        }),
    );
}

/// The events of an instance, not of a step, take no `step:` (E036).
pub(super) fn instance_events_have_no_step(s: &mut Schema) {
    also(
        s,
        json!({
            "if": {
                "properties": { "on": { "enum": ["instance_started", "instance_ended", "instance_cancelled"] } },
                "required": ["on"]
            },
            "then": { "properties": { "step": false } }
        }),
    );
}

/// A decision's `default` is required (E013), though serde lets it be left
/// out, for the checker to say so in its own words.
pub(super) fn default_required(s: &mut Schema) {
    if let Some(Value::Array(required)) = s.get_mut("required") {
        required.push("default".into());
    }
}

/// Describes the `kind:` tag schemars adds to each kind of step.
fn describe_kind(s: &mut Schema) {
    let Some(Value::Array(kinds)) = s.get_mut("oneOf") else {
        return;
    };
    for k in kinds {
        if let Some(kind) = k.pointer_mut("/properties/kind") {
            kind["description"] = json!(format!("The step kind: {}.", raw::STEP_KINDS.join(", ")));
        }
    }
}

/// A text that is an identifier.
pub(super) fn id(s: &mut Schema) {
    s.insert("pattern".into(), ID.into());
}

/// An id-keyed section: every key an identifier.
pub(super) fn id_keyed(s: &mut Schema) {
    s.insert("propertyNames".into(), json!({ "pattern": ID }));
}

/// An id-keyed section that needs at least one entry (`steps`, `outcomes`).
pub(super) fn id_keyed_non_empty(s: &mut Schema) {
    id_keyed(s);
    s.insert("minProperties".into(), 1.into());
}

/// One rule id.
pub(super) fn rule_id(s: &mut Schema) {
    s.insert("pattern".into(), RULE_ID.into());
}

/// A list of rule ids, none twice.
pub(super) fn rule_ids(s: &mut Schema) {
    s.insert(
        "items".into(),
        json!({ "type": "string", "pattern": RULE_ID }),
    );
    s.insert("uniqueItems".into(), true.into());
}

/// A notification's `on:`.
pub(super) fn events(s: &mut Schema) {
    crate::schema::set_enum(s, Event::ALL.iter().map(|(name, _)| *name));
}

/// A notification's `channels:`.
pub(super) fn channels(s: &mut Schema) {
    s.insert("items".into(), json!({ "enum": ["email", "sms"] }));
    s.insert("minItems".into(), 1.into());
}

/// A report's `into:`: the measures, each at most once.
pub(super) fn measures(s: &mut Schema) {
    use crate::runtime::reports::MEASURES;
    s.insert("propertyNames".into(), json!({ "enum": MEASURES }));
    s.insert("minProperties".into(), 1.into());
}

/// A recurring start's `agencies:`: a level, or `all`.
pub(super) fn levels_or_all(s: &mut Schema) {
    let levels = crate::runtime::directory_file::LEVELS;
    crate::schema::set_enum(s, std::iter::once("all").chain(levels.iter().copied()));
}

/// The types a variable may be declared with: every scalar type but `role`
/// (a parameter's), `enum`, and a list of any of them.
pub(super) fn variable_type(s: &mut Schema) {
    let scalars: Vec<&str> = super::values::SCALAR_TYPES
        .iter()
        .map(|(name, _)| *name)
        .chain(["enum"])
        .collect();
    let lists: Vec<String> = scalars.iter().map(|t| format!("list<{t}>")).collect();
    let plain = scalars.iter().copied().filter(|t| *t != "role");
    crate::schema::set_enum(s, plain.chain(lists.iter().map(String::as_str)));
}

/// The types a parameter may be declared with: every scalar type and a
/// list of one (a parameter has no `values:`, so no enum).
pub(super) fn parameter_type(s: &mut Schema) {
    let scalars: Vec<&str> = super::values::SCALAR_TYPES
        .iter()
        .map(|(name, _)| *name)
        .collect();
    let lists: Vec<String> = scalars.iter().map(|t| format!("list<{t}>")).collect();
    crate::schema::set_enum(
        s,
        scalars.into_iter().chain(lists.iter().map(String::as_str)),
    );
}

/// An enum variable (or a list of enums) needs `values:`.
pub(super) fn enum_needs_values(s: &mut Schema) {
    s.insert(
        "if".into(),
        json!({ "properties": { "type": { "enum": ["enum", "list<enum>"] } }, "required": ["type"] }),
    );
    s.insert("then".into(), json!({ "required": ["values"] }));
}

/// `at_least:`: a whole number of at least 1 (the checker also takes it
/// quoted).
pub(super) fn count(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "anyOf": [
            { "type": "integer", "minimum": 1 },
            { "type": "string", "pattern": r"^\s*[0-9]+\s*$" }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps_of(schema: &Value) -> &Value {
        let steps = &schema["properties"]["steps"]["additionalProperties"]["$ref"];
        let name = steps.as_str().expect("steps refer to RawStep");
        &schema["definitions"][name.trim_start_matches("#/definitions/")]
    }

    #[test]
    fn top_level_keys_are_the_checkers() {
        let schema = schema();
        let mut keys: Vec<&str> = schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect();
        let mut top = raw::TOP_KEYS.to_vec();
        keys.sort_unstable();
        top.sort_unstable();
        assert_eq!(keys, top, "RawDefinition and TOP_KEYS differ");
        assert_eq!(schema["additionalProperties"], false);
        let mut required: Vec<&str> = schema["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        required.sort_unstable();
        // The keys `check.rs` reports missing (E003).
        assert_eq!(required, ["id", "name", "start", "steps", "version"]);
    }

    #[test]
    fn step_kinds_are_the_checkers() {
        let schema = schema();
        let kinds: Vec<&str> = steps_of(&schema)["oneOf"]
            .as_array()
            .expect("a step is one of the kinds")
            .iter()
            .map(|k| k["properties"]["kind"]["const"].as_str().expect("kind"))
            .collect();
        assert_eq!(kinds, raw::STEP_KINDS, "RawStep and STEP_KINDS differ");
    }

    #[test]
    fn every_key_is_described() {
        // Every property of every object type has a description (the
        // constraints between keys, in `anyOf`, `if` …, name keys only).
        fn walk(v: &Value, at: &str, missing: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    let declares = m.get("type") == Some(&json!("object"));
                    if let (true, Some(Value::Object(props))) = (declares, m.get("properties")) {
                        for (k, p) in props {
                            if p.get("description").is_none() {
                                missing.push(format!("{at}.{k}"));
                            }
                        }
                    }
                    for (k, x) in m {
                        walk(x, &format!("{at}/{k}"), missing);
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, at, missing)),
                _ => {}
            }
        }
        let mut missing = Vec::new();
        walk(&schema(), "", &mut missing);
        assert_eq!(missing, Vec::<String>::new());
    }
}
