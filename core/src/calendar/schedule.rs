//! One year's official holiday schedule (国务院办公厅 notice), read from YAML.
//!
//! The schedule is data, not code: no formula derives the Spring Festival
//! break or the make-up working days. A year file is refused whole when any
//! part of it is wrong (unknown field, a date outside the year, a day both
//! rest and make-up, a make-up day that is already a working weekday, a day
//! claimed by two holidays), so that a bad file can never half-install.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

/// The file format of one year, as administrators write it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYear {
    year: i32,
    #[serde(default)]
    source: Option<String>,
    holidays: Vec<RawHoliday>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    name: String,
    rest: Vec<String>,
    #[serde(default)]
    workdays: Vec<String>,
}

/// What kind of special day a date is in a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DayKind {
    /// A statutory rest day (法定节假日 or the weekend days swapped into the break).
    Rest,
    /// A make-up working day (调休上班), usually a Saturday or Sunday.
    MakeUp,
}

/// A validated schedule for one year.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YearSchedule {
    /// The Gregorian year the schedule covers.
    pub year: i32,
    /// The notice the schedule comes from, for display.
    pub source: Option<String>,
    /// Every special day of the year, with its kind and holiday name.
    pub days: BTreeMap<NaiveDate, (DayKind, String)>,
    /// The holidays in file order, for `duban calendar show`.
    pub holidays: Vec<Holiday>,
}

/// One named holiday with its rest days and make-up working days.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Holiday {
    /// The holiday's name as the notice gives it, e.g. `国庆节、中秋节`.
    pub name: String,
    /// The rest days, ascending.
    pub rest: Vec<NaiveDate>,
    /// The make-up working days, ascending.
    pub workdays: Vec<NaiveDate>,
}

/// Why a year file was refused. Messages name the holiday and the date.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The YAML could not be read, or had an unknown or missing field.
    #[error("{0}")]
    Syntax(String),
    /// A date or range could not be read.
    #[error("holiday `{holiday}`: `{text}` is not a date (YYYY-MM-DD) or a range (YYYY-MM-DD..YYYY-MM-DD)")]
    BadDate {
        /// The holiday the entry belongs to.
        holiday: String,
        /// The text that could not be read.
        text: String,
    },
    /// A date lies outside the year the file declares.
    #[error("holiday `{holiday}`: {date} is outside the year {year}")]
    OutsideYear {
        /// The holiday the date belongs to.
        holiday: String,
        /// The offending date.
        date: NaiveDate,
        /// The year of the file.
        year: i32,
    },
    /// The same date is listed twice with conflicting or repeated meaning.
    #[error("{date} is listed as {first} and again as {second}")]
    Conflict {
        /// The date listed twice.
        date: NaiveDate,
        /// Its first listing, e.g. `rest day of 春节`.
        first: String,
        /// Its second listing.
        second: String,
    },
    /// A make-up working day falls on a weekday, which is a working day anyway.
    #[error(
        "holiday `{holiday}`: make-up working day {date} is a {weekday:?}, already a working day"
    )]
    MakeUpOnWeekday {
        /// The holiday the date belongs to.
        holiday: String,
        /// The offending date.
        date: NaiveDate,
        /// Its weekday.
        weekday: Weekday,
    },
    /// A range whose end lies before its start, or a holiday without rest days.
    #[error("holiday `{holiday}`: {reason}")]
    Invalid {
        /// The holiday concerned.
        holiday: String,
        /// What is wrong.
        reason: String,
    },
    /// The year is outside the range the engine supports.
    #[error("year {0} is outside the supported range 1949–2200")]
    BadYear(i32),
}

impl YearSchedule {
    /// Reads and validates a year file.
    pub fn from_yaml(text: &str) -> Result<Self, ScheduleError> {
        // serde_yaml does not overflow, but its scanner slows down
        // quadratically with flow nesting; refuse that first.
        crate::yaml::check_depth(text).map_err(|e| {
            ScheduleError::Syntax(match &e {
                crate::yaml::Error::TooDeep { line, .. } => format!("line {line}: {e}"),
                crate::yaml::Error::Load(_) => e.to_string(),
            })
        })?;
        let raw: RawYear =
            serde_yaml::from_str(text).map_err(|e| ScheduleError::Syntax(e.to_string()))?;
        Self::check(raw)
    }

    fn check(raw: RawYear) -> Result<Self, ScheduleError> {
        if !(1949..=2200).contains(&raw.year) {
            return Err(ScheduleError::BadYear(raw.year));
        }
        let mut days: BTreeMap<NaiveDate, (DayKind, String)> = BTreeMap::new();
        let mut holidays = Vec::new();
        for h in raw.holidays {
            let name = h.name.trim().to_string();
            if name.is_empty() {
                return Err(ScheduleError::Invalid {
                    holiday: h.name,
                    reason: "the holiday has no name".into(),
                });
            }
            let rest = expand(&name, &h.rest)?;
            let workdays = expand(&name, &h.workdays)?;
            if rest.is_empty() {
                return Err(ScheduleError::Invalid {
                    holiday: name,
                    reason: "no rest days listed".into(),
                });
            }
            for (kind, list) in [(DayKind::Rest, &rest), (DayKind::MakeUp, &workdays)] {
                for &date in list {
                    if date.year() != raw.year {
                        return Err(ScheduleError::OutsideYear {
                            holiday: name.clone(),
                            date,
                            year: raw.year,
                        });
                    }
                    if kind == DayKind::MakeUp
                        && !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
                    {
                        return Err(ScheduleError::MakeUpOnWeekday {
                            holiday: name.clone(),
                            date,
                            weekday: date.weekday(),
                        });
                    }
                    if let Some((k, n)) = days.get(&date) {
                        return Err(ScheduleError::Conflict {
                            date,
                            first: describe(*k, n),
                            second: describe(kind, &name),
                        });
                    }
                    days.insert(date, (kind, name.clone()));
                }
            }
            holidays.push(Holiday {
                name,
                rest,
                workdays,
            });
        }
        Ok(YearSchedule {
            year: raw.year,
            source: raw.source,
            days,
            holidays,
        })
    }
}

fn describe(kind: DayKind, holiday: &str) -> String {
    match kind {
        DayKind::Rest => format!("a rest day of {holiday}"),
        DayKind::MakeUp => format!("a make-up working day of {holiday}"),
    }
}

/// Expands `2025-01-28..2025-02-04` and single dates into a sorted list.
fn expand(holiday: &str, entries: &[String]) -> Result<Vec<NaiveDate>, ScheduleError> {
    let bad = |text: &str| ScheduleError::BadDate {
        holiday: holiday.into(),
        text: text.into(),
    };
    let parse = |t: &str| NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d").map_err(|_| bad(t));
    let mut out = Vec::new();
    for entry in entries {
        match entry.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (parse(a)?, parse(b)?);
                if b < a {
                    return Err(ScheduleError::Invalid {
                        holiday: holiday.into(),
                        reason: format!("range `{entry}` ends before it starts"),
                    });
                }
                if (b - a).num_days() > 31 {
                    return Err(ScheduleError::Invalid {
                        holiday: holiday.into(),
                        reason: format!("range `{entry}` is longer than a month"),
                    });
                }
                out.extend(a.iter_days().take_while(|d| *d <= b));
            }
            None => out.push(parse(entry)?),
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        YearSchedule::from_yaml(text).unwrap_err().to_string()
    }

    #[test]
    fn shipped_years_are_valid() {
        for text in [super::super::BUILTIN_2025, super::super::BUILTIN_2026] {
            YearSchedule::from_yaml(text).unwrap();
        }
    }

    #[test]
    fn a_deeply_nested_year_file_is_refused_at_once() {
        let t = std::time::Instant::now();
        let deep = format!("year: 2027\nholidays: {}\n", "[".repeat(100_000));
        assert!(
            err(&deep).contains("line 2: nested too deeply"),
            "{}",
            err(&deep)
        );
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn refuses_contradictions() {
        let both = "year: 2027\nholidays:\n- name: A\n  rest: [2027-01-01]\n  workdays: [2027-01-02]\n- name: B\n  rest: [2027-01-02]\n";
        assert!(err(both).contains(
            "2027-01-02 is listed as a make-up working day of A and again as a rest day of B"
        ));
        let outside = "year: 2027\nholidays:\n- name: 元旦\n  rest: [2026-12-31]\n";
        assert!(err(outside).contains("2026-12-31 is outside the year 2027"));
        let unknown = "year: 2027\nholidays: []\ncomment: x\n";
        assert!(err(unknown).contains("unknown field `comment`"));
        let weekday =
            "year: 2027\nholidays:\n- name: A\n  rest: [2027-01-01]\n  workdays: [2027-01-05]\n";
        assert!(err(weekday).contains("already a working day"));
        let baddate = "year: 2027\nholidays:\n- name: A\n  rest: [2027-02-30]\n";
        assert!(err(baddate).contains("`2027-02-30` is not a date"));
        let reversed = "year: 2027\nholidays:\n- name: A\n  rest: [2027-02-03..2027-02-01]\n";
        assert!(err(reversed).contains("ends before it starts"));
    }
}
