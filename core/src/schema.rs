//! JSON Schemas of the YAML files duban reads, for editors.
//!
//! Each schema is generated from the raw serde types its loader reads
//! (`definition::raw`, the directory's rows, the simulator's scenario
//! types), never written by hand, so a key the loader gains is in the
//! schema at the next build, with its doc comment as its `description`.
//! `duban schema process|directory|scenario` prints them and `schema/` at
//! the repository root holds them, for the `# yaml-language-server:
//! $schema=…` line each shipped file starts with; a test keeps the files
//! equal to what this code generates.
//!
//! The schemas are draft-07, the draft every yaml-language-server client
//! (VS Code's YAML extension, Neovim, Helix, JetBrains) reads. They say the
//! shape of a file: its keys, their types, and the few constraints between
//! keys that can be written as a schema. What needs the whole file — a
//! reference to a step or variable, a period, a CEL expression — is only
//! `duban validate`'s (or the simulator's) to say.

use schemars::{generate::SchemaSettings, JsonSchema, Schema};
use serde_json::Value;

/// The schema of `T`, a file's top level, titled `title`.
///
/// `nullable` says whether a key that may be left out may also be written
/// as YAML's null (`~`, nothing): the directory reads a null field as an
/// absent one; the definition and scenario loaders read every scalar as
/// text, so `next: ~` there is the step `~`, not no step, and the schema
/// refuses it.
pub fn generate<T: JsonSchema>(title: &str, nullable: bool) -> Value {
    let mut schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.insert("title".into(), title.into());
    let mut value = schema.to_value();
    drop_empty_defaults(&mut value);
    unwrap_descriptions(&mut value);
    if !nullable {
        forbid_null(&mut value);
    }
    value
}

/// A schema as it is printed and committed: pretty JSON and a final newline.
pub fn pretty(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a JSON value always serialises");
    text.push('\n');
    text
}

/// Removes the `default`s schemars takes from `#[serde(default)]` fields
/// of the raw types: `null`, `[]` and `{}` say only "may be left out",
/// which `required` already says, and an editor would offer to insert
/// them. The defaults that mean something are given by hand
/// (`extend("default" = …)`) and are never empty.
fn drop_empty_defaults(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let empty = match map.get("default") {
                Some(Value::Null) => true,
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(o)) => o.is_empty(),
                _ => false,
            };
            // A property named `default` (a decision's) is a key of
            // `properties`, whose value is a schema, never null or empty.
            if empty {
                map.remove("default");
            }
            map.values_mut().for_each(drop_empty_defaults);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_empty_defaults),
        _ => {}
    }
}

/// Joins the lines of each `description`: a doc comment is wrapped at 80
/// columns, an editor's hover wraps by itself. Paragraphs stay apart.
fn unwrap_descriptions(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(text)) = map.get_mut("description") {
                *text = text
                    .split("\n\n")
                    .map(|para| {
                        para.split('\n')
                            .map(str::trim)
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect::<Vec<_>>()
                    .join("\n\n");
            }
            map.values_mut().for_each(unwrap_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// Takes YAML's null out of what an `Option` field accepts: schemars lets
/// every `Option<T>` be `null` (`"type": ["string", "null"]`, or an
/// `anyOf` with `{"type": "null"}`), which is right for JSON and wrong for
/// a loader that reads `~` as a text.
fn forbid_null(v: &mut Value) {
    let is_null = |s: &Value| s.get("type").and_then(Value::as_str) == Some("null");
    if let Value::Object(map) = v {
        if let Some(Value::Array(types)) = map.get_mut("type") {
            types.retain(|t| t != "null");
            if types.len() == 1 {
                let only = types.remove(0);
                map.insert("type".into(), only);
            }
        }
        if let Some(Value::Array(values)) = map.get_mut("enum") {
            values.retain(|x| !x.is_null());
        }
        if let Some(Value::Array(alternatives)) = map.get_mut("anyOf") {
            alternatives.retain(|a| !is_null(a));
            if alternatives.len() == 1 {
                // `{ "anyOf": [A] }` is A: kept as a one-item `allOf`, since
                // A may be a `$ref` and draft-07 ignores a `$ref`'s siblings
                // (the field's `description`).
                let only = alternatives.remove(0);
                map.remove("anyOf");
                match map.get_mut("allOf") {
                    Some(Value::Array(all)) => all.insert(0, only),
                    _ => {
                        map.insert("allOf".into(), Value::Array(vec![only]));
                    }
                }
            }
        }
        map.values_mut().for_each(forbid_null);
    } else if let Value::Array(items) = v {
        items.iter_mut().for_each(forbid_null);
    }
}

/// A transform that sets `enum` to `values` (a field whose text is one of
/// a list the code keeps, such as the notification events).
pub fn set_enum<'a>(schema: &mut Schema, values: impl IntoIterator<Item = &'a str>) {
    let values: Vec<Value> = values.into_iter().map(Value::from).collect();
    schema.insert("enum".into(), values.into());
}
