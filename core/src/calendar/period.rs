//! Legal periods as administrators write them, in English or in Chinese.
//!
//! One parser serves the process language (`deadline.period`), the CLI
//! (`duban deadline`) and profiles, so that `5 working days` and `5个工作日`
//! mean exactly the same thing everywhere. The accepted forms are listed in
//! [`ACCEPTED_FORMS`]; any other text is refused with that list, never guessed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The unit a period counts in. Each unit has its own counting rule
/// (see `docs/legal-time.md` and [`crate::calendar::Calendar::count`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Working days: only days that are working days are counted.
    WorkingDays,
    /// Calendar days, with the rest-day extension of the last day.
    Days,
    /// Calendar months: the corresponding day, clamped to the month's end.
    Months,
    /// Calendar years: counted as twelve months each.
    Years,
    /// Hours from the exact instant; no extension.
    Hours,
}

/// A legal period: a count and a unit, e.g. `5 working days`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Period {
    /// How many units; at least 1.
    pub count: u32,
    /// What is counted.
    pub unit: Unit,
}

/// The forms [`Period::from_str`] accepts, shown to the user on a parse error.
pub const ACCEPTED_FORMS: &str = "`N working days`/`N个工作日`, `N days`/`N日`/`N天`, \
`N months`/`N个月`, `N years`/`N年`, `N hours`/`N小时`; N is 1–9999 in digits, \
or 一 … 九十九 in Chinese numerals (e.g. `5 working days`, `五个工作日`, `三十日`, `1个月`)";

/// Why a period could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// The text is empty.
    #[error("empty period; accepted forms: {ACCEPTED_FORMS}")]
    Empty,
    /// The number part is missing or not a number.
    #[error("`{0}` does not start with a number; accepted forms: {ACCEPTED_FORMS}")]
    BadNumber(String),
    /// The number is zero or too large.
    #[error("`{0}`: a period must count at least 1 and at most 9999 units")]
    OutOfRange(String),
    /// The unit is not one of the known units.
    #[error("`{text}` has an unknown unit `{unit}`; accepted forms: {ACCEPTED_FORMS}")]
    UnknownUnit {
        /// The whole text given.
        text: String,
        /// The part that was not understood.
        unit: String,
    },
}

impl Period {
    /// A period of `count` `unit`s.
    pub fn new(count: u32, unit: Unit) -> Self {
        Period { count, unit }
    }
}

impl Period {
    /// The period in Chinese, as the regulations write it: `5个工作日`,
    /// `30日`, `1个月`, `3年`, `48小时`.
    pub fn zh(&self) -> String {
        let unit = match self.unit {
            Unit::WorkingDays => "个工作日",
            Unit::Days => "日",
            Unit::Months => "个月",
            Unit::Years => "年",
            Unit::Hours => "小时",
        };
        format!("{}{unit}", self.count)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.count;
        let one = n == 1;
        let unit = match self.unit {
            Unit::WorkingDays if one => "working day",
            Unit::WorkingDays => "working days",
            Unit::Days if one => "day",
            Unit::Days => "days",
            Unit::Months if one => "month",
            Unit::Months => "months",
            Unit::Years if one => "year",
            Unit::Years => "years",
            Unit::Hours if one => "hour",
            Unit::Hours => "hours",
        };
        write!(f, "{n} {unit}")
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text.trim();
        if s.is_empty() {
            return Err(PeriodError::Empty);
        }
        let (count, rest) = split_number(s).ok_or_else(|| PeriodError::BadNumber(s.into()))?;
        if count == 0 || count > 9999 {
            return Err(PeriodError::OutOfRange(s.into()));
        }
        let unit = parse_unit(rest.trim()).ok_or_else(|| PeriodError::UnknownUnit {
            text: s.into(),
            unit: rest.trim().into(),
        })?;
        Ok(Period { count, unit })
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn parse_unit(unit: &str) -> Option<Unit> {
    Some(match unit {
        "working day" | "working days" | "个工作日" | "工作日" => Unit::WorkingDays,
        "day" | "days" | "日" | "天" => Unit::Days,
        "month" | "months" | "个月" | "月" => Unit::Months,
        "year" | "years" | "年" => Unit::Years,
        "hour" | "hours" | "小时" | "个小时" => Unit::Hours,
        _ => return None,
    })
}

/// Splits a leading number (ASCII digits or Chinese numerals up to 九十九)
/// from the rest of the text.
fn split_number(s: &str) -> Option<(u32, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 {
        // Only digits, so the parse fails on overflow alone: a number past
        // u32 is out of range like 10000, not "not a number".
        let n = s[..digits].parse::<u32>().unwrap_or(u32::MAX);
        return Some((n, &s[digits..]));
    }
    let numeral_len: usize = s
        .chars()
        .take_while(|c| chinese_digit(*c).is_some() || *c == '十')
        .map(char::len_utf8)
        .sum();
    if numeral_len == 0 {
        return None;
    }
    Some((chinese_number(&s[..numeral_len])?, &s[numeral_len..]))
}

fn chinese_digit(c: char) -> Option<u32> {
    Some(match c {
        '一' => 1,
        '二' | '两' => 2,
        '三' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        _ => return None,
    })
}

/// Reads 一 … 九十九: `五`, `十`, `十五`, `三十`, `九十九`.
fn chinese_number(s: &str) -> Option<u32> {
    let chars: Vec<char> = s.chars().collect();
    match chars.as_slice() {
        ['十'] => Some(10),
        [d] => chinese_digit(*d),
        ['十', u] => Some(10 + chinese_digit(*u)?),
        [t, '十'] => Some(chinese_digit(*t)? * 10),
        [t, '十', u] => Some(chinese_digit(*t)? * 10 + chinese_digit(*u)?),
        _ => None,
    }
}

/// Writes `n` (1–99) in Chinese numerals; used by tests and by the docs.
pub fn to_chinese_numeral(n: u32) -> Option<String> {
    const D: [char; 10] = ['〇', '一', '二', '三', '四', '五', '六', '七', '八', '九'];
    let s = match n {
        1..=9 => D[n as usize].to_string(),
        10 => "十".into(),
        11..=19 => format!("十{}", D[(n % 10) as usize]),
        20..=99 if n.is_multiple_of(10) => format!("{}十", D[(n / 10) as usize]),
        20..=99 => format!("{}十{}", D[(n / 10) as usize], D[(n % 10) as usize]),
        _ => return None,
    };
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, count: u32, unit: Unit) {
        assert_eq!(
            text.parse::<Period>(),
            Ok(Period::new(count, unit)),
            "{text}"
        );
    }

    #[test]
    fn both_languages() {
        check("5 working days", 5, Unit::WorkingDays);
        check("5个工作日", 5, Unit::WorkingDays);
        check("五个工作日", 5, Unit::WorkingDays);
        check("30 days", 30, Unit::Days);
        check("30日", 30, Unit::Days);
        check("三十日", 30, Unit::Days);
        check("1 month", 1, Unit::Months);
        check("1个月", 1, Unit::Months);
        check("6 months", 6, Unit::Months);
        check("3 years", 3, Unit::Years);
        check("3年", 3, Unit::Years);
        check("两年", 2, Unit::Years);
        check("48 hours", 48, Unit::Hours);
        check("48小时", 48, Unit::Hours);
        check("十日", 10, Unit::Days);
        check("十五日", 15, Unit::Days);
        check("九十九日", 99, Unit::Days);
        check("  10 days ", 10, Unit::Days);
    }

    #[test]
    fn refusals_name_the_forms() {
        for bad in [
            "",
            "5 workdays",
            "days",
            "0 days",
            "五百日",
            "5 weeks",
            "-1 days",
        ] {
            let err = bad.parse::<Period>().unwrap_err().to_string();
            assert!(
                err.contains("accepted forms") || err.contains("at least 1"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn numerals_round_trip() {
        for n in 1..=99 {
            let s = format!("{}日", to_chinese_numeral(n).unwrap());
            check(&s, n, Unit::Days);
        }
    }

    #[test]
    fn display_round_trips() {
        for p in [
            Period::new(1, Unit::WorkingDays),
            Period::new(30, Unit::Days),
        ] {
            assert_eq!(p.to_string().parse::<Period>(), Ok(p));
        }
    }
}
