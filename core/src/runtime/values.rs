//! Typing the values that events carry, and the context CEL reads.
//!
//! Variables are stored as JSON in a normal form per type: texts, ids,
//! dates (`YYYY-MM-DD`), instants (RFC 3339) and periods as strings; ints as
//! integers; bools as booleans; lists as arrays. [`check`] refuses anything
//! else with the variable's name; [`from_text`] reads the CLI's `k=v` forms
//! and [`from_vars_file`] the text of a `--vars-file`.
//!
//! Every value is bounded too: a list holds at most [`MAX_LIST_ITEMS`]
//! items, a value at most [`MAX_VALUE_BYTES`] of text (issue 12, finding
//! 9). The validator proves a worst-case cost of every CEL expression from
//! these bounds (`definition::cost`), so no value given to an instance can
//! make an evaluation hang or exhaust memory.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate};
use serde_json::{json, Value as Json};

use super::directory::Directory;
use super::error::EngineError;
use crate::calendar::Period;
use crate::definition::{Definition, Value, ValueType, Variable};

/// The most items of a list value: a list of candidates, of documents, of
/// agencies. `max_items` may lower it for a variable.
pub const MAX_LIST_ITEMS: usize = 1000;

/// The most bytes of text in one value, all its items together: a long
/// opinion or report fits; what is longer belongs in a document.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

fn bad(name: &str, why: impl Into<String>) -> EngineError {
    EngineError::BadValue {
        name: name.into(),
        why: why.into(),
    }
}

/// Checks `v` against `var`'s type and returns its normal form.
pub fn check(name: &str, var: &Variable, v: &Json) -> Result<Json, EngineError> {
    let out = check_type(name, &var.ty, v)?;
    let bytes = text_bytes(&out);
    if bytes > MAX_VALUE_BYTES {
        return Err(bad(
            name,
            format!(
                "holds {bytes} bytes of text, more than the {} KiB a value may hold",
                MAX_VALUE_BYTES / 1024
            ),
        ));
    }
    if let Json::Array(items) = &out {
        if let Some(min) = var.min_items {
            if (items.len() as u32) < min {
                return Err(bad(
                    name,
                    format!("needs at least {min} items, got {}", items.len()),
                ));
            }
        }
        if let Some(max) = var.max_items {
            if (items.len() as u32) > max {
                return Err(bad(
                    name,
                    format!("allows at most {max} items, got {}", items.len()),
                ));
            }
        }
    }
    Ok(out)
}

/// Checks a value given from outside the process — at a start (`--var`,
/// `--vars-file`, a call's inputs) or by `set-var` — as [`check`] does,
/// and what its type alone cannot say (issue 12, finding 11): a required
/// variable is not given empty, and a person or agency is one of the
/// directory. An id naming nobody would assign tasks and send notices to
/// no one, and `case_no=` would stand for a case number.
pub fn check_given(
    name: &str,
    var: &Variable,
    v: &Json,
    dir: &dyn Directory,
) -> Result<Json, EngineError> {
    let out = check(name, var, v)?;
    if var.required && matches!(&out, Json::String(s) if s.trim().is_empty()) {
        return Err(bad(name, "is required, so it cannot be empty"));
    }
    in_directory(name, &var.ty, &out, dir)?;
    Ok(out)
}

/// For an enum whose values a profile sets (`values: profile.PARAM`), that
/// `v` (checked by [`check`]) is among those of the instance's `profile`
/// (its parameter default when the instance has none); any other variable
/// passes. The enum's type at load holds the values of every profile, so
/// this is where a value one profile allows is refused in another.
pub fn in_profile(
    def: &Definition,
    profile: Option<&str>,
    name: &str,
    var: &Variable,
    v: &Json,
) -> Result<(), EngineError> {
    let Some(param) = &var.values_from else {
        return Ok(());
    };
    let value = match profile.and_then(|p| def.profiles.get(p)) {
        Some(prof) => prof.values.get(param),
        None => def.parameters.get(param).and_then(|p| p.default.as_ref()),
    };
    let allowed: Vec<&str> = match value {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|i| match i {
                Value::Text(s) => Some(s.as_str()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let given: Vec<&str> = match v {
        Json::String(s) => vec![s.as_str()],
        Json::Array(items) => items.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    };
    for g in given {
        if !allowed.contains(&g) {
            let whose = match profile {
                Some(p) => format!("profile `{p}`"),
                None => "the default profile values".into(),
            };
            return Err(bad(
                name,
                format!(
                    "`{g}` is not one of the values {whose} allows: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Every person or agency id of a value names one of the directory.
fn in_directory(
    name: &str,
    ty: &ValueType,
    v: &Json,
    dir: &dyn Directory,
) -> Result<(), EngineError> {
    let (what, known) = match (ty, v) {
        (ValueType::List(inner), Json::Array(items)) => {
            return items
                .iter()
                .try_for_each(|x| in_directory(name, inner, x, dir))
        }
        (ValueType::Agency, Json::String(id)) => ("agency", dir.agency(id).is_some()),
        (ValueType::Person, Json::String(id)) => ("person", dir.person(id).is_some()),
        _ => return Ok(()),
    };
    match v.as_str() {
        Some("") => Err(bad(name, format!("an empty id names no {what}"))),
        Some(id) if !known => Err(bad(
            name,
            format!("`{id}` is no {what} of the directory (see `duban directory import`)"),
        )),
        _ => Ok(()),
    }
}

fn check_type(name: &str, ty: &ValueType, v: &Json) -> Result<Json, EngineError> {
    let text = || -> Result<&str, EngineError> {
        v.as_str()
            .ok_or_else(|| bad(name, format!("expected a value of type {ty}, got {v}")))
    };
    Ok(match ty {
        // CEL sees people and agencies as records (`applicant.level`); a
        // record handed back (a call input, a `set`) stands for its id.
        ValueType::Person | ValueType::Agency if v.get("id").is_some_and(Json::is_string) => {
            v["id"].clone()
        }
        ValueType::String
        | ValueType::Text
        | ValueType::Person
        | ValueType::Agency
        | ValueType::Role => Json::String(text()?.to_string()),
        ValueType::Email => {
            let s = text()?;
            if !is_email_address(s) {
                return Err(bad(
                    name,
                    format!("`{}` is not an email address", s.escape_debug()),
                ));
            }
            Json::String(s.into())
        }
        ValueType::Phone => {
            let s = text()?;
            if !is_mobile(s) {
                return Err(bad(name, format!("`{s}` is not an 11-digit mobile number")));
            }
            Json::String(s.into())
        }
        ValueType::Enum(values) => {
            let s = text()?;
            if !values.iter().any(|x| x == s) {
                return Err(bad(
                    name,
                    format!("`{s}` is not one of {}", values.join(", ")),
                ));
            }
            Json::String(s.into())
        }
        ValueType::Int => match v {
            Json::Number(n) if n.is_i64() => v.clone(),
            _ => return Err(bad(name, format!("expected a whole number, got {v}"))),
        },
        ValueType::Bool => match v {
            Json::Bool(_) => v.clone(),
            _ => return Err(bad(name, format!("expected true or false, got {v}"))),
        },
        ValueType::Date => {
            let s = text()?;
            // Four-digit years only: chrono also reads `+262000-01-01`, from
            // which counting a long period overflows the calendar.
            if !four_digit_year(s) || NaiveDate::parse_from_str(s, "%Y-%m-%d").is_err() {
                return Err(bad(name, format!("`{s}` is not a date (YYYY-MM-DD)")));
            }
            Json::String(s.into())
        }
        ValueType::DateTime => {
            let s = text()?;
            if !four_digit_year(s) || DateTime::parse_from_rfc3339(s).is_err() {
                return Err(bad(name, format!("`{s}` is not an RFC 3339 instant")));
            }
            Json::String(s.into())
        }
        ValueType::Period => {
            let s = text()?;
            // Checked, and kept as written: people read it (`30日` inside a
            // 通知书), and whatever counts with it parses it again.
            let _: Period = s.parse().map_err(|e| bad(name, format!("{e}")))?;
            Json::String(s.trim().to_string())
        }
        ValueType::List(inner) => match v {
            Json::Array(items) if items.len() > MAX_LIST_ITEMS => {
                return Err(bad(
                    name,
                    format!(
                        "has {} items, more than the {MAX_LIST_ITEMS} a list may hold",
                        items.len()
                    ),
                ))
            }
            Json::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|x| check_type(name, inner, x))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(bad(name, format!("expected a list, got {v}"))),
        },
    })
}

/// The bytes of text in a value in normal form (strings, at any depth).
fn text_bytes(v: &Json) -> usize {
    match v {
        Json::String(s) => s.len(),
        Json::Array(items) => items.iter().map(text_bytes).sum(),
        _ => 0,
    }
}

/// Whether `s` starts with a four-digit year and a `-` (`2026-…`), as
/// RFC 3339 and the regulations' dates have it.
pub fn four_digit_year(s: &str) -> bool {
    s.len() > 4 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit) && s.as_bytes()[4] == b'-'
}

/// Whether `s` is an email address a message can be sent to: one `@`, a
/// local part of RFC 5322 `atext` and dots, a domain of two or more labels
/// of letters, digits and hyphens. Other scripts are accepted (mail
/// servers take internationalised addresses); spaces, control characters,
/// quotes, brackets and the like are not: in a header they end the
/// address or start another header.
pub fn is_email_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let dotted = |part: &str, ok: &dyn Fn(char) -> bool| {
        part.split('.').all(|p| !p.is_empty() && p.chars().all(ok))
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.chars().count() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    !local.is_empty()
        && local.len() <= 64
        && dotted(local, &atext)
        && domain.len() <= 253
        && domain.split('.').count() >= 2
        && domain.split('.').all(label)
}

/// Whether `s` is a mainland mobile number: 11 ASCII digits starting with 1.
pub fn is_mobile(s: &str) -> bool {
    s.len() == 11 && s.starts_with('1') && s.bytes().all(|b| b.is_ascii_digit())
}

/// Reads a value given as text (`--var k=v`) by its declared type: ints and
/// bools are parsed, lists are comma-separated.
pub fn from_text(ty: &ValueType, s: &str) -> Json {
    match ty {
        ValueType::Int => s
            .trim()
            .parse::<i64>()
            .map_or_else(|_| json!(s), |n| json!(n)),
        ValueType::Bool => match s.trim() {
            "true" => json!(true),
            "false" => json!(false),
            _ => json!(s),
        },
        ValueType::List(inner) => Json::Array(
            s.split([',', '，'])
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| from_text(inner, x))
                .collect(),
        ),
        _ => json!(s),
    }
}

/// The largest variables file read (`--vars-file`): a case's variables
/// take a few lines; anything near this is not one.
pub const MAX_VARS_FILE: u64 = 1 << 20;

/// Reads the text of a variables file: a YAML or JSON mapping of variable
/// names to values, typed later by the definition like any given value.
///
/// The nesting is bounded before `serde_yaml` reads it (issue 12, finding
/// 11): its scanner rechecks every pending key at every token, so a
/// 100,000-deep JSON took 24 s to reach serde_yaml's own limit of 128
/// levels, which applies only once the whole text is scanned. Messages
/// name the line; none quotes the file's text.
pub fn from_vars_file(text: &str) -> Result<BTreeMap<String, Json>, String> {
    if text.len() as u64 > MAX_VARS_FILE {
        return Err(format!(
            "the file is larger than {} KiB; a variables file holds a few names and values",
            MAX_VARS_FILE / 1024
        ));
    }
    crate::yaml::check_depth(text).map_err(|e| match &e {
        crate::yaml::Error::TooDeep { line, .. } => format!("line {line}: {e}"),
        crate::yaml::Error::Load(_) => format!("not valid YAML or JSON: {e}"),
    })?;
    // Read into any JSON value, so no message quotes a value as the wrong type.
    let v: Json = serde_yaml::from_str(text).map_err(|e| format!("not valid YAML or JSON: {e}"))?;
    match v {
        Json::Object(m) => Ok(m.into_iter().collect()),
        // An empty file gives no variables.
        Json::Null => Ok(BTreeMap::new()),
        _ => Err("expected a mapping of variable names to values (`name: value`)".into()),
    }
}

/// A checked definition value (default, profile value) as JSON.
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Text(s) => json!(s),
        Value::Int(n) => json!(n),
        Value::Bool(b) => json!(b),
        Value::Date(d) => json!(d.to_string()),
        Value::DateTime(t) => json!(t.to_rfc3339()),
        Value::Period(p) => json!(chinese_period(p)),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
    }
}

/// A period as the regulations write it (`30日`, `5个工作日`, `1个月`): what a
/// default or profile value becomes as a variable, read by people in
/// notices and documents. It parses back to the same period.
pub fn chinese_period(p: &Period) -> String {
    p.zh()
}

/// The CEL context of an instance: its variables (agencies and people
/// expanded into records so `applicant.level` works), `profile` and `now`,
/// and the date functions of [`super::cel_dates`] (`years_between`,
/// `age_on`, `date`) and the fact functions of [`super::facts`] (`facts`,
/// `last_fact`, `streak`) reading `facts`.
pub fn cel_context(
    def: &Definition,
    profile: Option<&str>,
    vars: &BTreeMap<String, Json>,
    dir: &dyn Directory,
    facts: super::facts::FactView,
    now: DateTime<chrono::Utc>,
) -> cel::Context<'static, 'static> {
    let mut ctx = cel::Context::default();
    for (name, var) in &def.variables {
        let v = vars.get(name).cloned().unwrap_or(Json::Null);
        let v = expand(&var.ty, v, dir);
        ctx.add_variable_from_value(name.clone(), to_cel(&v));
    }
    let mut p = serde_json::Map::new();
    if let Some(prof) = profile.and_then(|id| def.profiles.get(id)) {
        for (k, v) in &prof.values {
            p.insert(k.clone(), to_json(v));
        }
    } else {
        for (k, param) in &def.parameters {
            if let Some(d) = &param.default {
                p.insert(k.clone(), to_json(d));
            }
        }
    }
    ctx.add_variable_from_value("profile", to_cel(&Json::Object(p)));
    let _ = ctx.add_variable("now", cel::Value::Timestamp(now.fixed_offset()));
    super::cel_dates::register(&mut ctx);
    super::facts::register(&mut ctx, facts);
    ctx
}

/// A JSON value as CEL sees it. Integers are CEL `int`s (serde would make
/// every non-negative one a `uint`, and `rounds + 1` would fail: CEL does
/// not mix the two).
fn to_cel(v: &Json) -> cel::Value {
    match v {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or_default()),
        },
        Json::String(s) => cel::Value::String(s.clone().into()),
        Json::Array(items) => cel::Value::List(items.iter().map(to_cel).collect::<Vec<_>>().into()),
        Json::Object(m) => {
            let map: std::collections::HashMap<String, cel::Value> =
                m.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            map.into()
        }
    }
}

fn expand(ty: &ValueType, v: Json, dir: &dyn Directory) -> Json {
    match (ty, &v) {
        (ValueType::Agency, Json::String(id)) => match dir.agency(id) {
            Some(a) => serde_json::to_value(a).unwrap_or(v),
            None => json!({ "id": id }),
        },
        (ValueType::Person, Json::String(id)) => match dir.person(id) {
            Some(p) => serde_json::to_value(p).unwrap_or(v),
            None => json!({ "id": id }),
        },
        (ValueType::List(inner), Json::Array(items)) => Json::Array(
            items
                .iter()
                .map(|x| expand(inner, x.clone(), dir))
                .collect(),
        ),
        _ => v,
    }
}

/// A CEL value as the runtime stores it: the result of an expression in a
/// `set:` or a call's `inputs`, and what the validator's sample evaluation
/// judges.
pub fn cel_to_json(v: &cel::Value) -> Json {
    use cel::Value as V;
    match v {
        V::Int(n) => Json::from(*n),
        V::UInt(n) => Json::from(*n),
        V::Float(f) => Json::from(*f),
        V::String(s) => Json::String(s.to_string()),
        V::Bool(b) => Json::Bool(*b),
        V::List(items) => Json::Array(items.iter().map(cel_to_json).collect()),
        V::Map(m) => Json::Object(
            m.map
                .iter()
                .map(|(k, v)| (k.to_string(), cel_to_json(v)))
                .collect(),
        ),
        V::Timestamp(t) => Json::String(t.to_rfc3339()),
        V::Null => Json::Null,
        other => Json::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::calendar::Calendar;
    use crate::definition::load_str;
    use crate::runtime::directory::MemoryDirectory;
    use crate::runtime::{apply, Env, Event, NoProcesses};

    /// A process that ends at once, with a list and a text variable.
    const BOUNDED: &str = "\
id: bounded
version: 1
name: 测试流程
variables:
  cands: { type: list<string> }
  note: { type: text }
start: done
steps:
  done: { kind: end, name: 结束, result: ok }
";

    /// Starts an instance of the definition `text` with `variables` at `now`.
    fn start_on(
        text: &str,
        variables: &[(&str, Json)],
        now: chrono::DateTime<Utc>,
    ) -> Result<crate::runtime::Transition, EngineError> {
        let def = load_str("t.yaml", text, &Default::default()).unwrap();
        let env = Env {
            definition: &def,
            calendar: &Calendar::builtin(),
            directory: &MemoryDirectory::default(),
            processes: &NoProcesses,
            call_depth: 0,
            facts: &crate::runtime::facts::Facts::none(),
            reports: &Default::default(),
        };
        let event = Event::Start {
            instance: "1".into(),
            profile: None,
            variables: variables
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            actor: "li".into(),
        };
        apply(&env, None, &event, now)
    }

    /// Starts an instance of [`BOUNDED`] with `variables`.
    fn start(variables: &[(&str, Json)]) -> Result<(), EngineError> {
        let now = Utc.with_ymd_and_hms(2025, 9, 26, 2, 0, 0).unwrap();
        start_on(BOUNDED, variables, now).map(|_| ())
    }

    /// Issue 12, finding 9: the cost bound of every expression counts a
    /// list variable at 1,000 items, so a longer list is refused where it
    /// enters, with the variable's name, instead of hanging an evaluation.
    #[test]
    fn issue12_a_list_of_100000_items_is_refused_at_start() {
        let long: Vec<Json> = (0..100_000).map(|i| json!(format!("c{i}"))).collect();
        let err = start(&[("cands", Json::Array(long))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "R003 variable `cands`: has 100000 items, more than the 1000 a list may hold"
        );
        let most: Vec<Json> = (0..MAX_LIST_ITEMS)
            .map(|i| json!(format!("c{i}")))
            .collect();
        assert!(start(&[("cands", Json::Array(most))]).is_ok());
    }

    #[test]
    fn issue12_a_value_of_more_than_64_kib_of_text_is_refused() {
        let err = start(&[("note", json!("长".repeat(30_000)))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "R003 variable `note`: holds 90000 bytes of text, more than the 64 KiB a value may hold"
        );
        // Counted over all the items of a list.
        let items: Vec<Json> = (0..100).map(|_| json!("x".repeat(700))).collect();
        let err = start(&[("cands", Json::Array(items))]).unwrap_err();
        assert!(
            err.to_string().contains("holds 70000 bytes of text"),
            "{err}"
        );
        assert!(start(&[("note", json!("x".repeat(MAX_VALUE_BYTES)))]).is_ok());
    }

    /// A 人民监督员 candidate's age on the day the event is applied
    /// (`now`, 2025-09-26 in Beijing), as a decision checks it.
    const AGE_CHECK: &str = "\
id: age
version: 1
name: 年龄审查
variables:
  birth: { type: date }
  birth_text: { type: string }
start: check
steps:
  check:
    kind: decision
    name: 审查
    branches:
      - when: \"birth_text != '' && age_on(birth_text, now) >= 23 || birth_text == '' && age_on(birth, date(now)) >= 23\"
        goto: eligible
    default: too_young
  eligible: { kind: end, name: 符合, result: eligible }
  too_young: { kind: end, name: 不符合, result: too_young }
";

    /// Starts an instance of [`AGE_CHECK`]; its result, or the error.
    fn age_check(variables: &[(&str, &str)]) -> Result<String, EngineError> {
        let variables: Vec<(&str, Json)> = variables.iter().map(|(k, v)| (*k, json!(v))).collect();
        let now = Utc.with_ymd_and_hms(2025, 9, 25, 16, 30, 0).unwrap();
        let t = start_on(AGE_CHECK, &variables, now)?;
        match t.state.status {
            crate::runtime::Status::Completed { result } => Ok(result),
            other => panic!("{other:?}"),
        }
    }

    /// Issue 13, item 8: the date functions in the runtime's context; `now`
    /// is 2025-09-26 in Beijing though still the 25th in UTC, and a text
    /// that is no date is R013 naming the argument.
    #[test]
    fn ages_are_checked_on_the_beijing_date() {
        let result = |birth: &str| age_check(&[("birth", birth), ("birth_text", "")]).unwrap();
        assert_eq!(result("2002-09-26"), "eligible");
        assert_eq!(result("2002-09-27"), "too_young");
        assert_eq!(result("2002-09-25"), "eligible");
        let err =
            age_check(&[("birth", "2000-01-01"), ("birth_text", "2000年1月1日")]).unwrap_err();
        assert_eq!(err.code(), "R013");
        assert!(
            err.to_string().ends_with(
                "failed: Error executing function 'age_on': the first argument (`birthdate`) is `2000年1月1日`, which is neither a date (YYYY-MM-DD) nor an RFC 3339 datetime"
            ),
            "{err}"
        );
    }

    /// Fuzzing found that counting 9999年 from `+262000-01-01` panicked the
    /// calendar: dates and instants need four-digit years.
    #[test]
    fn dates_need_four_digit_years() {
        for (ty, good, bad_) in [
            (ValueType::Date, "2026-03-01", "+262000-01-01"),
            (
                ValueType::DateTime,
                "2026-03-01T09:00:00+08:00",
                "+262000-01-01T00:00:00Z",
            ),
        ] {
            assert!(check_type("d", &ty, &json!(good)).is_ok());
            assert!(check_type("d", &ty, &json!(bad_)).is_err());
        }
    }

    /// What people read is Chinese: a period variable keeps the text it was
    /// given (`三十日`, `10个工作日`), and a period written in the definition
    /// becomes the regulations' form (`30日`), never "30 days".
    #[test]
    fn periods_stay_as_written_or_become_chinese() {
        let var = Variable {
            ty: ValueType::Period,
            required: false,
            default: None,
            label: None,
            description: None,
            min_items: None,
            max_items: None,
            values_from: None,
        };
        for given in ["三十日", "10个工作日", " 2个月 ", "5 working days"] {
            assert_eq!(
                check("p", &var, &json!(given)).unwrap(),
                json!(given.trim())
            );
        }
        assert!(check("p", &var, &json!("三十")).is_err());
        for (text, chinese) in [
            ("30 days", "30日"),
            ("5个工作日", "5个工作日"),
            ("1 month", "1个月"),
            ("2年", "2年"),
            ("24 hours", "24小时"),
        ] {
            let p: Period = text.parse().unwrap();
            assert_eq!(to_json(&Value::Period(p)), json!(chinese));
            assert_eq!(chinese.parse::<Period>().unwrap(), p);
        }
    }
}
