//! Facts about a person or agency, kept across processes (一人一档).
//!
//! A step records a fact with `record:` on an outcome or a decision branch
//! (`{ fact: attendance, about: supervisor, value: "'absent'" }`): the core
//! emits [`Command::RecordFact`](super::Command::RecordFact), which the
//! store writes in the transition's own transaction, with a `fact_recorded`
//! history line that names the subject, so `duban history --person` shows
//! it. Any process reads facts in CEL, through three functions added to
//! every context ([`register`]):
//!
//! - `facts(subject, name)`: the list of facts `name` about `subject`,
//!   oldest first (at most [`MAX_FACTS_READ`], the latest), each a record
//!   `{name, value, date, at, process, instance, step, actor}` — `date` the
//!   Beijing date it was recorded on, `at` the instant (RFC 3339), `value`
//!   what was recorded (null when nothing was);
//! - `last_fact(subject, name)`: the latest of them, or null;
//! - `streak(subject, name, value)`: how many of the latest facts `name`
//!   in a row have `value` (two absences in a row: `streak(s, 'attendance',
//!   'absent') >= 2`; an attendance in between resets it to 0).
//!
//! `subject` is a person or agency (a variable of that type reads as its
//! directory record, whose `id` is taken) or an id. `name` is a literal
//! text, which the validator checks against the facts the library records.
//!
//! The core reads no store: it sees the facts the service loaded into a
//! [`Facts`] before applying the event, for the subjects it could know (the
//! people and agencies of the instance's variables). A subject that was not
//! loaded is noted in [`Facts::missing`] and its call fails; the service then
//! loads it and applies the event again — the core is deterministic, so the
//! second application is the first one with more data. Facts recorded
//! earlier in the same transition are read too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::calendar::LEGAL_TZ;
use crate::definition::{Definition, ValueType};
use cel::extractors::Arguments;
use cel::{ExecutionError, FunctionContext, Value};

/// The most facts of one name about one subject `facts()` gives (the
/// latest) and `streak()` counts over: what the validator's cost estimate
/// assumes.
pub const MAX_FACTS_READ: usize = 500;

/// The longest text a fact's value may be, in bytes.
pub const MAX_FACT_VALUE_BYTES: usize = 1024;

/// The functions added to every CEL context.
pub const FUNCTIONS: [&str; 3] = ["facts", "last_fact", "streak"];

/// One recorded fact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// The person or agency id it is about.
    pub subject: String,
    /// Its name (`attendance`, `evaluation`, `disqualified_until`).
    pub name: String,
    /// What was recorded: a text, an int, a bool, or null.
    #[serde(default)]
    pub value: Json,
    /// When.
    pub at: DateTime<Utc>,
    /// The process that recorded it.
    pub process: String,
    /// The instance.
    pub instance: String,
    /// The step.
    pub step: String,
    /// Who acted (the completer of the outcome, or `engine`).
    pub actor: String,
    /// The administrator's note of the `record:` entry, in Chinese.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Fact {
    /// The fact as CEL reads it.
    fn to_cel(&self) -> Value {
        let date = self
            .at
            .with_timezone(&LEGAL_TZ)
            .format("%Y-%m-%d")
            .to_string();
        let text = |s: &str| Value::String(Arc::new(s.to_string()));
        let value = match &self.value {
            Json::String(s) => text(s),
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => n.as_i64().map_or(Value::Null, Value::Int),
            _ => Value::Null,
        };
        let map: std::collections::HashMap<String, Value> = [
            ("name", text(&self.name)),
            ("value", value),
            ("date", text(&date)),
            ("at", text(&self.at.to_rfc3339())),
            ("process", text(&self.process)),
            ("instance", text(&self.instance)),
            ("step", text(&self.step)),
            ("actor", text(&self.actor)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        map.into()
    }
}

/// The facts the core may read while one event is applied: every fact about
/// each loaded subject, oldest first. Cheap to share ([`Arc`]).
#[derive(Debug, Default)]
pub struct Facts {
    /// Facts by subject; a subject absent from the map was not loaded.
    loaded: BTreeMap<String, Vec<Fact>>,
    /// Every subject counts as loaded (a store in memory, the validator's
    /// samples): none is ever missing.
    all: bool,
    /// The subjects a CEL call asked for that were not loaded.
    missing: Mutex<BTreeSet<String>>,
}

impl Facts {
    /// No facts, and every subject counted as loaded: for a definition that
    /// reads none, and for tests.
    pub fn none() -> Arc<Facts> {
        Arc::new(Facts {
            all: true,
            ..Facts::default()
        })
    }

    /// The facts about `subjects` (each loaded, with none when `facts` has
    /// none about it). `facts` are in the order they were recorded.
    pub fn loaded(subjects: impl IntoIterator<Item = String>, facts: Vec<Fact>) -> Facts {
        let mut loaded: BTreeMap<String, Vec<Fact>> =
            subjects.into_iter().map(|s| (s, Vec::new())).collect();
        for f in facts {
            loaded.entry(f.subject.clone()).or_default().push(f);
        }
        Facts {
            loaded,
            ..Facts::default()
        }
    }

    /// Every fact there is (a store in memory): no subject is missing.
    pub fn everything(facts: Vec<Fact>) -> Facts {
        let mut f = Facts::loaded(std::iter::empty(), facts);
        f.all = true;
        f
    }

    /// The subjects loaded.
    pub fn subjects(&self) -> impl Iterator<Item = &String> {
        self.loaded.keys()
    }

    /// The subjects asked for that were not loaded, cleared.
    pub fn take_missing(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.missing.lock().expect("not poisoned"))
    }

    /// The facts `name` about `subject`, oldest first, with `extra` (those
    /// recorded in this transition) after them; `None` when the subject was
    /// not loaded (and it is noted as missing).
    fn about(&self, subject: &str, name: &str, extra: &[Fact]) -> Option<Vec<Fact>> {
        let stored = match self.loaded.get(subject) {
            Some(v) => v.as_slice(),
            None if self.all => &[],
            None => {
                self.missing
                    .lock()
                    .expect("not poisoned")
                    .insert(subject.to_string());
                return None;
            }
        };
        let mut out: Vec<Fact> = stored
            .iter()
            .chain(extra)
            .filter(|f| f.subject == subject && f.name == name)
            .cloned()
            .collect();
        if out.len() > MAX_FACTS_READ {
            out.drain(..out.len() - MAX_FACTS_READ);
        }
        Some(out)
    }
}

/// What the CEL functions of one evaluation read: the loaded facts and the
/// ones recorded earlier in the same transition.
#[derive(Clone, Debug)]
pub struct FactView {
    /// The loaded facts.
    pub facts: Arc<Facts>,
    /// Recorded in this transition, in order.
    pub recorded: Arc<Vec<Fact>>,
}

impl FactView {
    /// A view of `facts` alone.
    pub fn of(facts: &Arc<Facts>) -> FactView {
        FactView {
            facts: facts.clone(),
            recorded: Arc::new(Vec::new()),
        }
    }
}

/// Adds `facts`, `last_fact` and `streak` to `ctx`, reading `view`.
pub fn register(ctx: &mut cel::Context<'static, 'static>, view: FactView) {
    let v = view.clone();
    let _ = ctx.add_function(
        "facts",
        move |ftx: &FunctionContext, Arguments(args): Arguments| {
            let list = read(&v, ftx, &args, 2)?;
            Ok::<Value, ExecutionError>(Value::List(Arc::new(
                list.iter().map(Fact::to_cel).collect(),
            )))
        },
    );
    let v = view.clone();
    let _ = ctx.add_function(
        "last_fact",
        move |ftx: &FunctionContext, Arguments(args): Arguments| {
            let list = read(&v, ftx, &args, 2)?;
            Ok::<Value, ExecutionError>(list.last().map_or(Value::Null, Fact::to_cel))
        },
    );
    let _ = ctx.add_function(
        "streak",
        move |ftx: &FunctionContext, Arguments(args): Arguments| {
            let list = read(&view, ftx, &args, 3)?;
            let want = crate::runtime::values::cel_to_json(&args[2]);
            let n = list.iter().rev().take_while(|f| f.value == want).count();
            Ok::<Value, ExecutionError>(Value::Int(n as i64))
        },
    );
}

/// The facts a call asks for: its subject and name read, its form checked
/// (a plain call of `arity` arguments, a subject that is a record with an
/// `id` or a text, a name that is a text).
fn read(
    view: &FactView,
    ftx: &FunctionContext,
    args: &[Value],
    arity: usize,
) -> Result<Vec<Fact>, ExecutionError> {
    if let Some(this) = &ftx.this {
        return Err(ExecutionError::NotSupportedAsMethod {
            method: ftx.name.to_string(),
            target: Value::try_from(this.as_ref()).unwrap_or(Value::Null),
        });
    }
    let overload = || {
        ExecutionError::no_such_overload(
            ftx.name,
            args.iter().map(|a| a.type_of().to_string()).collect(),
        )
    };
    if args.len() != arity {
        return Err(overload());
    }
    let subject = match &args[0] {
        Value::String(s) => s.to_string(),
        Value::Map(m) => match m.map.get(&cel::objects::Key::String(Arc::new("id".into()))) {
            Some(Value::String(s)) => s.to_string(),
            _ => return Err(overload()),
        },
        Value::Null => return Err(ftx.error(
            "the first argument (`subject`) is null, not a person or agency: is the variable set?",
        )),
        _ => return Err(overload()),
    };
    let Value::String(name) = &args[1] else {
        return Err(overload());
    };
    if arity == 3
        && !matches!(
            args[2],
            Value::String(_) | Value::Int(_) | Value::UInt(_) | Value::Bool(_) | Value::Null
        )
    {
        return Err(overload());
    }
    view.facts
        .about(&subject, name, &view.recorded)
        .ok_or_else(|| {
            ftx.error(format!(
                "the facts about `{subject}` were not loaded for this event"
            ))
        })
}

/// The people and agencies `vars` name in `def`'s person and agency
/// variables (and lists of them): the subjects whose facts an event on an
/// instance with these variables most likely reads.
pub fn subjects(def: &Definition, vars: &BTreeMap<String, Json>) -> BTreeSet<String> {
    fn named(ty: &ValueType) -> bool {
        match ty {
            ValueType::Person | ValueType::Agency => true,
            ValueType::List(inner) => named(inner),
            _ => false,
        }
    }
    fn ids(v: &Json, out: &mut BTreeSet<String>) {
        match v {
            Json::String(s) => {
                out.insert(s.clone());
            }
            Json::Array(items) => items.iter().for_each(|i| ids(i, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for (name, var) in &def.variables {
        if let (true, Some(v)) = (named(&var.ty), vars.get(name)) {
            ids(v, &mut out);
        }
    }
    out
}

/// A value a fact may hold, as stored: a text of at most
/// [`MAX_FACT_VALUE_BYTES`], an int, a bool or null; otherwise why not.
pub fn fact_value(v: Json) -> Result<Json, String> {
    match &v {
        Json::String(s) if s.len() > MAX_FACT_VALUE_BYTES => Err(format!(
            "the value is {} bytes long; a fact holds at most {MAX_FACT_VALUE_BYTES}",
            s.len()
        )),
        Json::String(_) | Json::Bool(_) | Json::Null => Ok(v),
        Json::Number(n) if n.is_i64() => Ok(v),
        other => Err(format!(
            "the value {other} is not a text, an int or a bool, which is what a fact holds"
        )),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn fact(subject: &str, name: &str, value: &str, day: u32) -> Fact {
        Fact {
            subject: subject.into(),
            name: name.into(),
            value: Json::String(value.into()),
            at: Utc.with_ymd_and_hms(2025, 9, day, 2, 0, 0).unwrap(),
            process: "meeting".into(),
            instance: format!("m{day}"),
            step: "record".into(),
            actor: "li".into(),
            note: None,
        }
    }

    fn eval(view: FactView, source: &str) -> Result<Value, ExecutionError> {
        let mut ctx = cel::Context::default();
        register(&mut ctx, view);
        ctx.add_variable_from_value("who", Value::String(Arc::new("zhang".into())));
        cel::Program::compile(source).unwrap().execute(&ctx)
    }

    #[test]
    fn streaks_latest_and_lists_read_the_facts_in_order() {
        let facts = Arc::new(Facts::loaded(
            ["zhang".to_string(), "qian".to_string()],
            vec![
                fact("zhang", "attendance", "absent", 1),
                fact("zhang", "attendance", "present", 2),
                fact("zhang", "attendance", "absent", 3),
                fact("qian", "attendance", "absent", 3),
            ],
        ));
        let mut view = FactView::of(&facts);
        let run = |v: &FactView, s: &str| eval(v.clone(), s).unwrap();
        assert_eq!(
            run(&view, "streak(who, 'attendance', 'absent')"),
            Value::Int(1)
        );
        assert_eq!(run(&view, "size(facts(who, 'attendance'))"), Value::Int(3));
        assert_eq!(
            run(&view, "last_fact(who, 'attendance').instance"),
            Value::String(Arc::new("m3".into()))
        );
        assert_eq!(
            run(
                &view,
                "size(facts(who, 'attendance').filter(f, f.date >= '2025-09-02'))"
            ),
            Value::Int(2)
        );
        assert_eq!(
            run(&view, "last_fact(who, 'evaluation') == null"),
            Value::Bool(true)
        );
        // One recorded in this transition counts: two absences in a row.
        view.recorded = Arc::new(vec![fact("zhang", "attendance", "absent", 4)]);
        assert_eq!(
            run(&view, "streak(who, 'attendance', 'absent')"),
            Value::Int(2)
        );
        assert_eq!(
            run(&view, "streak('qian', 'attendance', 'absent')"),
            Value::Int(1)
        );
    }

    #[test]
    fn a_subject_not_loaded_is_noted_and_its_call_fails() {
        let facts = Arc::new(Facts::loaded(["qian".to_string()], Vec::new()));
        let err = eval(FactView::of(&facts), "size(facts(who, 'attendance'))").unwrap_err();
        assert!(err.to_string().contains("not loaded"), "{err}");
        assert_eq!(facts.take_missing(), BTreeSet::from(["zhang".to_string()]));
        assert!(facts.take_missing().is_empty());
        // Loaded with none: an empty list, not a failure.
        assert_eq!(
            eval(FactView::of(&Facts::none()), "size(facts(who, 'x'))").unwrap(),
            Value::Int(0)
        );
    }

    #[test]
    fn wrong_forms_are_errors_of_types() {
        for bad in [
            "facts(who)",
            "facts(1, 'x')",
            "facts(who, 2)",
            "streak(who, 'x', [1])",
            "who.facts('x')",
        ] {
            let err = eval(FactView::of(&Facts::none()), bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    ExecutionError::NoSuchOverload(_) | ExecutionError::NotSupportedAsMethod { .. }
                ),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn values_are_texts_ints_bools_or_null() {
        assert!(fact_value(serde_json::json!("absent")).is_ok());
        assert!(fact_value(serde_json::json!(3)).is_ok());
        assert!(fact_value(serde_json::json!(null)).is_ok());
        assert!(fact_value(serde_json::json!([1])).is_err());
        assert!(fact_value(serde_json::json!("x".repeat(2000))).is_err());
    }
}
