//! The types of CEL expressions, found by evaluating them on samples.
//!
//! A condition that gives `rounds + 1` instead of true or false, or a `set:`
//! that stores `'yes'` in a bool, is refused by the runtime only when a case
//! reaches it. The cel crate (0.15) has no type checker, so the validator
//! evaluates each expression at load on *typed samples*: one value of its
//! declared type for every variable and profile parameter, put into a CEL
//! context by the runtime's own [`cel_context`], so the validator sees the
//! types the runtime sees (ints are CEL ints, agencies and people records,
//! dates, periods and enums strings, `now` a timestamp). Each expression is
//! evaluated twice, once with every bool true and once with every bool
//! false, so both sides of `&&`, `||` and `?:` are tried.
//!
//! What comes out is the expression's type at run time. An operator or
//! function refusing the types it is given is a type error (E035). Any other
//! failure (a division by zero, an index past the one-item sample list, a
//! text `timestamp()` cannot read, a record field the directory may not
//! have) says nothing about types and is not reported.
//!
//! Nothing is evaluated before its worst-case cost is bounded
//! ([`super::cost`], E037): the samples are small, but a literal list is
//! not, and an expression that loops 10^9 times would hang the validator.

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone, Utc};
use indexmap::IndexMap;
use serde_json::Value as Json;

use super::check::Checker;
use super::cost::{self, Inputs};
use super::diagnostic::Code;
use super::model::*;
use super::source::Path;
use crate::calendar::{Period, Unit};
use crate::runtime::directory::{Agency, Directory, Person};
use crate::runtime::facts::{FactView, Facts};
use crate::runtime::values::{cel_context, cel_to_json, check as check_value, to_json};
use crate::runtime::EngineError;

/// The id of the sample person, and of the sample agency: a record of one
/// given to a variable of the other is a mismatch.
const PERSON_ID: &str = "sample_person";
const AGENCY_ID: &str = "sample_agency";

/// CEL contexts holding a sample value of every declared variable and
/// parameter.
pub(super) struct Samples {
    contexts: Vec<cel::Context<'static, 'static>>,
    /// What the declared names may hold, for the cost estimate: built on
    /// first use, once the names are known.
    inputs: std::cell::OnceCell<Inputs>,
}

impl Samples {
    /// Samples for the declared names; a name whose type is broken is left
    /// out (an expression reading it fails, and is not judged).
    pub fn new(
        variables: &IndexMap<String, Option<ValueType>>,
        params: &IndexMap<String, Option<ValueType>>,
    ) -> Samples {
        let now = Utc.with_ymd_and_hms(2025, 1, 2, 1, 0, 0).unwrap();
        let contexts = [true, false]
            .into_iter()
            .map(|flag| {
                let def = sample_definition(variables, params, flag);
                let values: BTreeMap<String, Json> = def
                    .variables
                    .iter()
                    .map(|(k, v)| (k.clone(), to_json(&sample(&v.ty, flag))))
                    .collect();
                cel_context(
                    &def,
                    None,
                    &values,
                    &SampleDirectory,
                    FactView::of(&Facts::none()),
                    now,
                )
            })
            .collect();
        Samples {
            contexts,
            inputs: std::cell::OnceCell::new(),
        }
    }

    /// The values `e` gives on the samples, or why its types are wrong.
    /// `declared` tells the names the definition declares: one the samples
    /// lack (its type is broken, and reported as such) is not an unknown
    /// function.
    fn eval(&self, e: &Expr, declared: &dyn Fn(&str) -> bool) -> Result<Vec<cel::Value>, String> {
        let mut out = Vec::new();
        for ctx in &self.contexts {
            match e.program.execute(ctx) {
                Ok(v) => out.push(v),
                // Undeclared variables are E017 before this: what is left
                // is a function that does not exist (`sizee(x)`), which
                // would fail every evaluation at run time.
                Err(cel::ExecutionError::UndeclaredReference(name)) if !declared(&name) => {
                    return Err(format!("`{name}` is no function or name CEL knows"));
                }
                Err(err) => {
                    if let Some(why) = type_error(&err) {
                        return Err(why);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A definition holding only the declared variables and parameters, each
/// parameter defaulting to its sample: what [`cel_context`] reads.
fn sample_definition(
    variables: &IndexMap<String, Option<ValueType>>,
    params: &IndexMap<String, Option<ValueType>>,
    flag: bool,
) -> Definition {
    Definition {
        id: String::new(),
        version: 1,
        name: String::new(),
        description: None,
        rules: Vec::new(),
        roles: IndexMap::new(),
        parameters: params
            .iter()
            .filter_map(|(k, t)| {
                let ty = t.clone()?;
                let default = Some(sample(&ty, flag));
                Some((
                    k.clone(),
                    Parameter {
                        ty,
                        default,
                        description: None,
                    },
                ))
            })
            .collect(),
        profiles: IndexMap::new(),
        default_profile: None,
        variables: variables
            .iter()
            .filter_map(|(k, t)| {
                Some((
                    k.clone(),
                    Variable {
                        ty: t.clone()?,
                        required: false,
                        default: None,
                        label: None,
                        description: None,
                        min_items: None,
                        max_items: None,
                        values_from: None,
                    },
                ))
            })
            .collect(),
        start: String::new(),
        steps: IndexMap::new(),
        notifications: Vec::new(),
        numbering: IndexMap::new(),
        documents: IndexMap::new(),
        templates: IndexMap::new(),
        schedule: Vec::new(),
        facts_read: Default::default(),
        has_reports: false,
    }
}

/// A valid value of `ty`; bools are `flag`.
fn sample(ty: &ValueType, flag: bool) -> Value {
    match ty {
        ValueType::String | ValueType::Text | ValueType::Role => Value::Text("sample".into()),
        ValueType::Person => Value::Text(PERSON_ID.into()),
        ValueType::Agency => Value::Text(AGENCY_ID.into()),
        ValueType::Email => Value::Text("sample@example.com".into()),
        ValueType::Phone => Value::Text("13800000000".into()),
        ValueType::Enum(values) => Value::Text(values.first().cloned().unwrap_or_default()),
        ValueType::Int => Value::Int(1),
        ValueType::Bool => Value::Bool(flag),
        ValueType::Date => Value::Date(NaiveDate::from_ymd_opt(2025, 1, 2).unwrap_or_default()),
        ValueType::DateTime => Value::DateTime(
            Utc.with_ymd_and_hms(2025, 1, 2, 1, 0, 0)
                .unwrap()
                .fixed_offset(),
        ),
        ValueType::Period => Value::Period(Period {
            count: 30,
            unit: Unit::Days,
        }),
        ValueType::List(inner) => Value::List(vec![sample(inner, flag)]),
    }
}

/// Every person and agency exists, with every field filled, so that
/// `applicant.county` is a string as it is for a real agency.
struct SampleDirectory;

impl Directory for SampleDirectory {
    fn person(&self, id: &str) -> Option<Person> {
        Some(Person {
            id: id.into(),
            name: "sample".into(),
            roles: vec!["sample".into()],
            organisation: Some("sample".into()),
            level: Some("sample".into()),
            county: Some("sample".into()),
            email: Some("sample@example.com".into()),
            mobile: Some("13800000000".into()),
        })
    }

    fn agency(&self, id: &str) -> Option<Agency> {
        Some(Agency {
            id: id.into(),
            name: "sample".into(),
            level: Some("sample".into()),
            county: Some("sample".into()),
            email: Some("sample@example.com".into()),
            mobile: Some("13800000000".into()),
        })
    }

    fn holders(&self, _role: &str, _unit: Option<&str>) -> Vec<Person> {
        Vec::new()
    }

    fn agencies(&self, _level: Option<&str>) -> Vec<Agency> {
        Vec::new()
    }
}

/// Why an evaluation error is a type error; `None` when it is not one.
fn type_error(err: &cel::ExecutionError) -> Option<String> {
    use cel::ExecutionError as E;
    Some(match err {
        E::UnsupportedBinaryOperator(op, a, b) => {
            let op = match *op {
                "add" => "+",
                "sub" => "-",
                "mul" => "*",
                "div" => "/",
                "rem" => "%",
                other => other,
            };
            format!("`{op}` cannot combine {} and {}", kind(a), kind(b))
        }
        E::ValuesNotComparable(a, b) => {
            format!("{} cannot be compared with {}", kind(a), kind(b))
        }
        E::NoSuchOverload(o) => o.to_string(),
        E::InvalidArgumentCount { expected, actual } => {
            format!("a function given {actual} argument(s) takes {expected}")
        }
        E::UnexpectedType { got, want } => format!("expected a {want}, got a {got}"),
        E::UnsupportedTargetType { target } => format!("{} is not accepted here", kind(target)),
        E::NotSupportedAsMethod { method, target } => {
            format!("`{method}` cannot be called on {}", kind(target))
        }
        E::UnsupportedIndex(index, target) => {
            format!("{} cannot be indexed by {}", kind(target), kind(index))
        }
        E::UnsupportedKeyType(v) => format!("{} cannot be a map key", kind(v)),
        _ => return None,
    })
}

/// A CEL value's type, with its article, as a message says it.
fn kind(v: &cel::Value) -> &'static str {
    use cel::Value as V;
    match v {
        V::List(_) => "a list",
        V::Map(_) => "a record",
        V::Function(..) => "a function",
        V::Int(_) => "an int",
        V::UInt(_) => "a uint",
        V::Float(_) => "a double",
        V::String(_) => "a string",
        V::Bytes(_) => "bytes",
        V::Bool(_) => "a bool",
        V::Duration(_) => "a duration",
        V::Timestamp(_) => "a timestamp",
        V::Null => "null",
        _ => "an object",
    }
}

/// Whether a value of `v`'s CEL type can be stored in a variable of type
/// `ty`. Only the type is judged (a string may still not be a valid email
/// at run time); null, which a sample never is, is not judged.
fn fits(v: &cel::Value, ty: &ValueType) -> bool {
    use cel::Value as V;
    use ValueType as T;
    match (v, ty) {
        (V::Null, _) => true,
        (V::Bool(_), T::Bool) => true,
        (V::Int(_), T::Int) => true,
        (V::UInt(u), T::Int) => i64::try_from(*u).is_ok(),
        (
            V::String(_),
            T::String
            | T::Text
            | T::Email
            | T::Phone
            | T::Enum(_)
            | T::Date
            | T::DateTime
            | T::Period
            | T::Person
            | T::Agency
            | T::Role,
        ) => true,
        // Stored as an RFC 3339 text: a datetime, never a date.
        (V::Timestamp(_), T::String | T::Text | T::DateTime) => true,
        (V::List(items), T::List(inner)) => items.iter().all(|x| fits(x, inner)),
        // A record stands for its id; an agency is not a person.
        (V::Map(_), T::Person | T::Agency) => {
            let other = if *ty == T::Person {
                AGENCY_ID
            } else {
                PERSON_ID
            };
            cel_to_json(v)
                .get("id")
                .and_then(Json::as_str)
                .is_some_and(|id| id != other)
        }
        _ => false,
    }
}

/// A declared type with its article: `a bool`, `an int`.
pub(super) fn a_type(ty: &ValueType) -> String {
    let name = ty.to_string();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// How to write a value of `ty` in CEL, for hints.
fn how_to_write(ty: &ValueType) -> String {
    match ty {
        ValueType::Bool => "a bool is `true`, `false` or a comparison such as `rounds >= 2`".into(),
        ValueType::Int => "an int is a whole number or int arithmetic such as `rounds + 1`".into(),
        ValueType::Enum(values) => format!(
            "an enum takes one of its values as a quoted CEL string, e.g. `\"'{}'\"`",
            values.first().map_or("", String::as_str)
        ),
        ValueType::Date => "a date is a string `'YYYY-MM-DD'` or a date variable".into(),
        ValueType::DateTime => "a datetime is `now`, an RFC 3339 string or a datetime variable".into(),
        ValueType::Period => "a period is a string such as `'30日'` or a period variable".into(),
        ValueType::Person => "a person is a person variable, or a person's id as a string".into(),
        ValueType::Agency => "an agency is an agency variable, or an agency's id as a string".into(),
        ValueType::Email => "an email is a string such as `'office@example.com'` or an email variable".into(),
        ValueType::Phone => "a phone is a string such as `'13800000000'` or a phone variable".into(),
        ValueType::List(inner) => format!("a {ty} is a list such as `[a, b]` of {inner} values"),
        _ => format!(
            "{} is a quoted CEL string inside the YAML string, e.g. `\"'已整改'\"`, a variable of that type, or `string(n)` of a number",
            a_type(ty)
        ),
    }
}

/// The CEL types of the declared types, for hints.
const CEL_TYPES: &str = "in CEL, text, string, date, datetime, period, email, phone and enum variables are strings, int variables ints, people and agencies records (`applicant.level`), `now` a timestamp";

impl Checker<'_> {
    /// Evaluates `e` on the samples and reports a type error in it (E035):
    /// the values it gives, or `None` when it has a type error (or there are
    /// no samples).
    pub(super) fn check_cel_types(&mut self, path: &Path, e: &Expr) -> Option<Vec<cel::Value>> {
        if !self.check_cel_cost(path, e) {
            return None;
        }
        let samples = self.samples.as_ref()?;
        let declared = |n: &str| {
            self.variables.contains_key(n)
                || self.params.contains_key(n)
                || n == "now"
                || n == "profile"
        };
        match samples.eval(e, &declared) {
            Ok(values) => Some(values),
            Err(why) => {
                self.err(
                    path,
                    Code::CelTypeError,
                    format!(
                        "CEL expression `{}` fails on values of the declared types: {why}",
                        e.source
                    ),
                    Some(format!("check the types it combines: {CEL_TYPES}")),
                );
                None
            }
        }
    }

    /// Checks that `e` is within the bounds of length, depth and
    /// worst-case cost (E037). An expression that is not is never
    /// evaluated, not even on the samples: also when it is not reported
    /// because the definition was deployed before the check.
    fn check_cel_cost(&mut self, path: &Path, e: &Expr) -> bool {
        let judged = |inputs: &Inputs| cost::check(&e.source, e.program.expression(), inputs);
        let result = match &self.samples {
            Some(s) => judged(s.inputs.get_or_init(|| self.cost_inputs())),
            None => judged(&self.cost_inputs()),
        };
        let Err(why) = result else {
            return true;
        };
        self.err(
            path,
            Code::CelTooCostly,
            format!("CEL expression `{}` {why}", cost::excerpt(&e.source)),
            Some(why.hint()),
        );
        false
    }

    /// What the declared variables and parameters may hold, for the cost
    /// estimate: a list variable at most its `max_items`, read from the
    /// text (the name pass keeps only types).
    fn cost_inputs(&self) -> Inputs {
        let declared = self
            .src
            .root
            .as_ref()
            .and_then(|r| r.as_mapping())
            .and_then(|m| m.get_mapping("variables"));
        let max_items = |name: &str| -> Option<u32> {
            declared?
                .get_mapping(name)?
                .get_scalar("max_items")?
                .as_str()
                .trim()
                .parse()
                .ok()
        };
        Inputs::new(
            self.variables
                .iter()
                .map(|(k, t)| (k.as_str(), t.as_ref(), max_items(k))),
            self.params.iter().map(|(k, t)| (k.as_str(), t.as_ref())),
        )
    }

    /// Checks that a condition gives a bool (E033). `what` names it in the
    /// message (`condition`, `guard check`).
    pub(super) fn check_condition(&mut self, path: &Path, e: &Expr, what: &str) {
        let Some(values) = self.check_cel_types(path, e) else {
            return;
        };
        if let Some(v) = values
            .iter()
            .find(|v| !matches!(v, cel::Value::Bool(_) | cel::Value::Null))
        {
            let found = kind(v);
            self.err(
                path,
                Code::NotBoolean,
                format!(
                    "{what} `{}` gives {found}, not true or false",
                    e.source
                ),
                Some(format!(
                    "a {what} must be true or false: compare or test the value, e.g. `rounds >= 2`, `report != ''`, `size(items) > 0`"
                )),
            );
        }
    }

    /// Checks that the value of `e` can be stored in a variable of type
    /// `ty` (E034). `target` names the receiving variable in the message
    /// (``variable `approved` ``, ``variable `topic` of process `interview` ``).
    pub(super) fn check_stored_value(
        &mut self,
        path: &Path,
        e: &Expr,
        ty: &ValueType,
        name: &str,
        target: &str,
    ) {
        let Some(values) = self.check_cel_types(path, e) else {
            return;
        };
        if let Some(v) = values.iter().find(|v| !fits(v, ty)) {
            let found = kind(v);
            self.err(
                path,
                Code::ValueTypeMismatch,
                format!(
                    "`{}` gives {found}, but {target} is {}",
                    e.source,
                    a_type(ty)
                ),
                Some(how_to_write(ty)),
            );
            return;
        }
        // An expression that reads nothing gives the same value every time:
        // check that value exactly as the runtime will.
        if e.program.references().variables().is_empty() {
            if let Some(v) = values.first() {
                let var = Variable {
                    ty: ty.clone(),
                    required: false,
                    default: None,
                    label: None,
                    description: None,
                    min_items: None,
                    max_items: None,
                    values_from: None,
                };
                if let Err(err) = check_value(name, &var, &cel_to_json(v)) {
                    let why = match err {
                        EngineError::BadValue { why, .. } => why,
                        other => other.to_string(),
                    };
                    self.err(
                        path,
                        Code::ValueTypeMismatch,
                        format!(
                            "`{}` is not a valid value for {target}, {}: {why}",
                            e.source,
                            a_type(ty)
                        ),
                        Some(how_to_write(ty)),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::definition::{load_str, Code, LoadContext};

    /// A decision whose condition loops 300^3 = 27,000,000 times over
    /// literal lists: minutes of evaluation in a debug build.
    fn costly() -> String {
        let l: Vec<String> = (1..=300).map(|i| i.to_string()).collect();
        let l = format!("[{}]", l.join(","));
        format!(
            "id: t\nversion: 1\nname: 测试\nstart: check\nsteps:\n  check:\n    kind: decision\n    name: 判断\n    branches:\n      - when: \"{l}.all(a, {l}.all(b, {l}.all(c, true)))\"\n        goto: done\n    default: done\n  done: {{ kind: end, name: 结束, result: ok }}\n"
        )
    }

    /// Issue 12, finding 9: the validator evaluated every expression on
    /// samples, so a costly one hung `duban validate` itself. Its cost is
    /// judged first (E037) and it is never evaluated.
    #[test]
    fn issue12_a_costly_expression_is_refused_before_the_samples_run() {
        let start = Instant::now();
        let d = load_str("t.yaml", &costly(), &LoadContext::default()).unwrap_err();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, Code::CelTooCostly);
        assert_eq!(
            (d[0].line, d[0].path.as_str()),
            (10, "steps.check.branches[0].when")
        );
        assert!(
            d[0].message.contains("over the limit of 1,000,000"),
            "{}",
            d[0].message
        );
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    /// A definition deployed before E037 still reloads from the store (its
    /// cases are not stranded), and is not evaluated on the samples either.
    #[test]
    fn a_costly_expression_deployed_before_the_check_reloads_unevaluated() {
        let stored = LoadContext {
            deployed: true,
            ..Default::default()
        };
        let start = Instant::now();
        assert!(load_str("t.yaml", &costly(), &stored).is_ok());
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
