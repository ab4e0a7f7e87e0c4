//! Date functions in CEL: ages and whole years between dates (issue 13).
//!
//! The regulations count ages (a 人民监督员 at least 23 周岁 on the date of
//! appointment) and whole years (terms, a 2-year bar). CEL has no dates,
//! only timestamps, and date variables are strings, so [`register`] adds
//! three functions to every CEL context (`runtime::values::cel_context`,
//! which the runtime and the validator's typed samples both use):
//!
//! - `years_between(from, to)`: an int, the whole years from date `from` to
//!   date `to`. A year is complete on the anniversary of `from` (the same
//!   month and day); the anniversary of 29 February in a common year is
//!   1 March, so someone born 2000-02-29 is 1 on 2001-03-01, not on
//!   2001-02-28. When `to` is before `from` it is the negative of
//!   `years_between(to, from)`.
//! - `age_on(birthdate, on)`: the same count, an age in 周岁 on `on`: it
//!   grows on the birthday itself.
//! - `date(t)`: the calendar date (`YYYY-MM-DD`) in Beijing time
//!   ([`LEGAL_TZ`]) of a timestamp (`now`) or an RFC 3339 text; a date text
//!   is given back as it is.
//!
//! Wherever a date is meant, a date text (what a `date` variable accepts), an
//! RFC 3339 text (what a `datetime` variable accepts) or a timestamp is
//! taken; an instant stands for its Beijing date. A text that is none of
//! these, or null (a variable not set), is an execution error naming the
//! argument (R013 at run time). An argument of another type (an int, a
//! list, a record), a wrong number of arguments or a call as a method is
//! an error of types (`NoSuchOverload`, `NotSupportedAsMethod`), which the
//! validator reports at load as E035.

use chrono::{DateTime, Datelike, NaiveDate};

use super::values::four_digit_year;
use crate::calendar::LEGAL_TZ;
use cel::extractors::Arguments;
use cel::{ExecutionError, FunctionContext, Value};

/// The functions added to every CEL context, for the cost estimate
/// (`definition::cost`), which charges each a small constant.
pub const FUNCTIONS: [&str; 3] = ["years_between", "age_on", "date"];

/// Adds the date functions to `ctx`.
pub fn register(ctx: &mut cel::Context<'static, 'static>) {
    // None of the names is one of the standard library's overloads, so
    // adding them cannot fail (a test proves it).
    let _ = ctx.add_function("years_between", years_between);
    let _ = ctx.add_function("age_on", age_on);
    let _ = ctx.add_function("date", date);
}

/// The names of the parameters of each function, for messages.
fn params(function: &str) -> &'static [&'static str] {
    match function {
        "years_between" => &["from", "to"],
        "age_on" => &["birthdate", "on"],
        _ => &["t"],
    }
}

/// Checks the call's form: a plain call with the function's number of
/// arguments. Otherwise an error of types, which the validator reports.
fn arguments<'a>(ftx: &FunctionContext, args: &'a [Value]) -> Result<&'a [Value], ExecutionError> {
    if let Some(this) = &ftx.this {
        return Err(ExecutionError::NotSupportedAsMethod {
            method: ftx.name.to_string(),
            target: Value::try_from(this.as_ref()).unwrap_or(Value::Null),
        });
    }
    let typed_ok = args
        .iter()
        .all(|a| matches!(a, Value::String(_) | Value::Timestamp(_) | Value::Null));
    if args.len() != params(ftx.name).len() || !typed_ok {
        return Err(ExecutionError::no_such_overload(
            ftx.name,
            args.iter().map(|a| a.type_of().to_string()).collect(),
        ));
    }
    Ok(args)
}

/// The date argument `i` of the call stands for, or why it stands for none.
fn date_arg(ftx: &FunctionContext, args: &[Value], i: usize) -> Result<NaiveDate, ExecutionError> {
    let nth = ["first", "second"].get(i).copied().unwrap_or("an");
    let name = params(ftx.name).get(i).copied().unwrap_or("?");
    let arg = format!("the {nth} argument (`{name}`)");
    match &args[i] {
        Value::Timestamp(t) => Ok(t.with_timezone(&LEGAL_TZ).date_naive()),
        Value::String(s) => parse(s).ok_or_else(|| {
            ftx.error(format!(
                "{arg} is `{}`, which is neither a date (YYYY-MM-DD) nor an RFC 3339 datetime",
                shown(s)
            ))
        }),
        Value::Null => Err(ftx.error(format!("{arg} is null, not a date: is the variable set?"))),
        // `arguments` lets no other type through.
        other => Err(ExecutionError::no_such_overload(
            ftx.name,
            vec![other.type_of().to_string()],
        )),
    }
}

/// A date text, or an RFC 3339 text's Beijing date; the texts a `date` or
/// a `datetime` variable accepts (`runtime::values::check`).
pub fn parse(s: &str) -> Option<NaiveDate> {
    if !four_digit_year(s) {
        return None;
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&LEGAL_TZ).date_naive())
}

/// A text as a message quotes it: escaped, and its start only when long.
fn shown(s: &str) -> String {
    const SHOWN: usize = 40;
    // Only the start is escaped: a text may be 64 KiB long.
    let escaped: String = s
        .chars()
        .take(SHOWN + 1)
        .flat_map(char::escape_debug)
        .collect();
    if escaped.chars().count() <= SHOWN {
        escaped
    } else {
        let head: String = escaped.chars().take(SHOWN - 1).collect();
        format!("{head}…")
    }
}

/// The whole years from `from` to `to`: complete on each anniversary of
/// `from`, 29 February's being 1 March in a common year; negative when
/// `to` is before `from`.
pub fn whole_years(from: NaiveDate, to: NaiveDate) -> i64 {
    if to < from {
        return -whole_years(to, from);
    }
    let mut years = i64::from(to.year()) - i64::from(from.year());
    if to < anniversary(from, to.year()) {
        years -= 1;
    }
    years
}

/// The anniversary of `d` in `year`: 29 February is 1 March in a common
/// year.
fn anniversary(d: NaiveDate, year: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, d.month(), d.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, 3, 1))
        .unwrap_or(d)
}

fn years_between(
    ftx: &FunctionContext,
    Arguments(args): Arguments,
) -> Result<Value, ExecutionError> {
    let args = arguments(ftx, &args)?;
    let from = date_arg(ftx, args, 0)?;
    let to = date_arg(ftx, args, 1)?;
    Ok(Value::Int(whole_years(from, to)))
}

fn age_on(ftx: &FunctionContext, Arguments(args): Arguments) -> Result<Value, ExecutionError> {
    years_between(ftx, Arguments(args))
}

fn date(ftx: &FunctionContext, Arguments(args): Arguments) -> Result<Value, ExecutionError> {
    let args = arguments(ftx, &args)?;
    let d = date_arg(ftx, args, 0)?;
    // A date variable holds four-digit years only.
    if !(0..=9999).contains(&d.year()) {
        return Err(ftx.error(format!(
            "the first argument (`t`) falls on {d}, outside the years 0000 to 9999 a date may have"
        )));
    }
    Ok(Value::String(d.format("%Y-%m-%d").to_string().into()))
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    /// Evaluates `source` with the date functions and `now` at
    /// 2025-01-01T20:00:00Z, which is 2025-01-02 in Beijing.
    fn eval(source: &str) -> Result<Value, ExecutionError> {
        let mut ctx = cel::Context::default();
        register(&mut ctx);
        let now = Utc.with_ymd_and_hms(2025, 1, 1, 20, 0, 0).unwrap();
        let _ = ctx.add_variable("now", Value::Timestamp(now.fixed_offset()));
        cel::Program::compile(source).unwrap().execute(&ctx)
    }

    fn int(source: &str) -> i64 {
        match eval(source) {
            Ok(Value::Int(n)) => n,
            other => panic!("{source}: {other:?}"),
        }
    }

    fn text(source: &str) -> String {
        match eval(source) {
            Ok(Value::String(s)) => s.to_string(),
            other => panic!("{source}: {other:?}"),
        }
    }

    fn error(source: &str) -> ExecutionError {
        match eval(source) {
            Err(e) => e,
            Ok(v) => panic!("{source} gave {v:?}"),
        }
    }

    #[test]
    fn the_names_are_free_in_the_standard_library() {
        let mut ctx = cel::Context::default();
        for name in FUNCTIONS {
            assert!(ctx.add_function(name, || 0i64).is_ok(), "{name}");
        }
    }

    #[test]
    fn a_year_is_complete_on_the_anniversary() {
        assert_eq!(int("years_between('2000-03-01', '2023-02-28')"), 22);
        assert_eq!(int("years_between('2000-03-01', '2023-03-01')"), 23);
        assert_eq!(int("years_between('2000-03-01', '2000-03-01')"), 0);
        assert_eq!(int("years_between('2000-03-01', '2001-02-28')"), 0);
        assert_eq!(int("years_between('2023-12-31', '2025-12-30')"), 1);
        assert_eq!(int("years_between('2023-12-31', '2025-12-31')"), 2);
        assert_eq!(int("age_on('2002-01-02', '2025-01-01')"), 22);
        assert_eq!(int("age_on('2002-01-02', '2025-01-02')"), 23);
    }

    /// Someone born on 29 February is a year older on 1 March of a common
    /// year, and on 29 February of a leap year.
    #[test]
    fn a_29_february_birthday_is_1_march_in_a_common_year() {
        assert_eq!(int("age_on('2000-02-29', '2001-02-28')"), 0);
        assert_eq!(int("age_on('2000-02-29', '2001-03-01')"), 1);
        assert_eq!(int("age_on('2000-02-29', '2004-02-28')"), 3);
        assert_eq!(int("age_on('2000-02-29', '2004-02-29')"), 4);
        assert_eq!(int("age_on('2000-02-29', '2023-03-01')"), 23);
        // 28 February and 1 March themselves are unaffected.
        assert_eq!(int("age_on('2000-02-28', '2001-02-28')"), 1);
        assert_eq!(int("years_between('2004-02-29', '2100-02-28')"), 95);
        assert_eq!(int("years_between('2004-02-29', '2100-03-01')"), 96);
    }

    #[test]
    fn backwards_is_negative() {
        assert_eq!(int("years_between('2023-02-28', '2000-03-01')"), -22);
        assert_eq!(int("years_between('2023-03-01', '2000-03-01')"), -23);
        assert_eq!(int("years_between('2001-03-01', '2000-02-29')"), -1);
        assert_eq!(int("years_between('2001-02-28', '2000-02-29')"), 0);
    }

    /// A timestamp and an RFC 3339 text stand for their date in Beijing.
    #[test]
    fn instants_stand_for_their_beijing_date() {
        assert_eq!(text("date(now)"), "2025-01-02");
        assert_eq!(text("date('2025-01-01T15:59:59Z')"), "2025-01-01");
        assert_eq!(text("date('2025-01-01T16:00:00Z')"), "2025-01-02");
        assert_eq!(text("date('2025-01-02T00:30:00+09:00')"), "2025-01-01");
        assert_eq!(text("date('2025-01-02')"), "2025-01-02");
        assert_eq!(
            text("date(timestamp('2024-02-28T16:00:00Z'))"),
            "2024-02-29"
        );
        assert_eq!(int("age_on('2002-01-02', now)"), 23);
        assert_eq!(int("age_on('2002-01-02', date(now))"), 23);
        assert_eq!(int("age_on('2002-01-02', '2025-01-01T16:00:00Z')"), 23);
        assert_eq!(int("age_on('2002-01-02', '2025-01-01T15:00:00Z')"), 22);
        assert_eq!(
            int("years_between(timestamp('2020-01-01T00:00:00+08:00'), now)"),
            5
        );
    }

    /// A text that is no date is an error naming the argument; the
    /// runtime reports it as R013 with this message.
    #[test]
    fn a_text_that_is_no_date_names_the_argument() {
        for (source, message) in [
            (
                "age_on('2000-13-01', now)",
                "Error executing function 'age_on': the first argument (`birthdate`) is `2000-13-01`, which is neither a date (YYYY-MM-DD) nor an RFC 3339 datetime",
            ),
            (
                "years_between('2000-01-01', '明天')",
                "Error executing function 'years_between': the second argument (`to`) is `明天`, which is neither a date (YYYY-MM-DD) nor an RFC 3339 datetime",
            ),
            (
                "date('2025-02-30T00:00:00Z')",
                "Error executing function 'date': the first argument (`t`) is `2025-02-30T00:00:00Z`, which is neither a date (YYYY-MM-DD) nor an RFC 3339 datetime",
            ),
            (
                "age_on(null, now)",
                "Error executing function 'age_on': the first argument (`birthdate`) is null, not a date: is the variable set?",
            ),
            (
                "date('+262000-01-01')",
                "Error executing function 'date': the first argument (`t`) is `+262000-01-01`, which is neither a date (YYYY-MM-DD) nor an RFC 3339 datetime",
            ),
        ] {
            let e = error(source);
            assert!(matches!(e, ExecutionError::FunctionError { .. }), "{e:?}");
            assert_eq!(e.to_string(), message);
        }
        let long = format!("date('{}')", "x".repeat(1000));
        assert!(error(&long).to_string().ends_with("`xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…`, which is neither a date (YYYY-MM-DD) nor an RFC 3339 datetime"));
        assert!(error("date(timestamp('9999-12-31T23:00:00Z'))")
            .to_string()
            .contains("outside the years 0000 to 9999"));
    }

    /// Other types, counts and forms are errors of types, which the
    /// validator reports (E035) instead of the runtime.
    #[test]
    fn wrong_types_are_errors_of_types() {
        for (source, message) in [
            (
                "age_on('2000-01-01', 5)",
                "found no matching overload for 'age_on' applied to '(string, int)'",
            ),
            (
                "years_between(['2000-01-01'], now)",
                "found no matching overload for 'years_between' applied to '(list, timestamp)'",
            ),
            (
                "age_on('2000-01-01')",
                "found no matching overload for 'age_on' applied to '(string)'",
            ),
            (
                "date(now, now)",
                "found no matching overload for 'date' applied to '(timestamp, timestamp)'",
            ),
            (
                "date(1)",
                "found no matching overload for 'date' applied to '(int)'",
            ),
        ] {
            let e = error(source);
            assert!(matches!(e, ExecutionError::NoSuchOverload(_)), "{e:?}");
            assert_eq!(e.to_string(), message);
        }
        assert!(matches!(
            error("'2000-01-01'.age_on(now)"),
            ExecutionError::NotSupportedAsMethod { .. }
        ));
    }
}
