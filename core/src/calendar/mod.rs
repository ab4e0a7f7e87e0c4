//! Legal time: counting the periods of Chinese law on the official calendar.
//!
//! `docs/legal-time.md` is the specification. The core, [`Calendar::count`], is a
//! pure function of the calendar data, a start and a [`PeriodSpec`]; it reads
//! no clock and no file, so the engine, the simulator and the tests get the
//! same answer for the same input. Every result carries a one-line
//! explanation that administrators see next to the deadline, and says whether
//! it is **provisional** (it consulted a year without an official schedule,
//! where only weekends are known).
//!
//! Layout:
//! - [`period`]: the period syntax, shared with the process language;
//! - [`schedule`]: one year's official schedule, read and validated from YAML;
//! - [`files`]: the calendar directory where administrators install new years.

pub mod files;
pub mod period;
pub mod reminders;
pub mod schedule;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use period::{Period, PeriodError, Unit};
pub use reminders::{hold_to_working_hours, reminder_due};
pub use schedule::{DayKind, Holiday, ScheduleError, YearSchedule};

/// The time zone of every legal period: 24:00 means 24:00 in Beijing time.
pub const LEGAL_TZ: Tz = chrono_tz::Asia::Shanghai;

/// The 2025 schedule shipped with the engine.
pub const BUILTIN_2025: &str = include_str!("../../calendars/2025.yaml");
/// The 2026 schedule shipped with the engine.
pub const BUILTIN_2026: &str = include_str!("../../calendars/2026.yaml");

/// The official calendar: the years whose schedules are known.
#[derive(Clone, Debug, Default)]
pub struct Calendar {
    years: BTreeMap<i32, YearSchedule>,
}

/// Whether a timer is a deadline or a minimum (see the glossary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// "…内": acting at or before the cut-off is on time; after it is overdue.
    #[default]
    Within,
    /// "不少于…": what follows may not happen before the cut-off.
    AtLeast,
}

/// A period with the options a rule may set on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeriodSpec {
    /// The period to count.
    pub period: Period,
    /// Count the start day as the first day (some public notices do). Default off.
    pub include_start_day: bool,
    /// A business-hours cut-off on the last day instead of 24:00.
    pub cutoff: Option<NaiveTime>,
    /// Deadline or minimum.
    pub bound: Bound,
}

impl PeriodSpec {
    /// A plain "within" period: start day excluded, cut-off at 24:00.
    pub fn within(period: Period) -> Self {
        PeriodSpec {
            period,
            include_start_day: false,
            cutoff: None,
            bound: Bound::Within,
        }
    }
}

/// Where a period starts: a day, or an exact instant (hours count from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// A calendar day; for hour periods, 00:00 of that day in Beijing time.
    Date(NaiveDate),
    /// An exact instant.
    Instant(DateTime<Tz>),
}

impl Start {
    /// Its day (an instant's, in Beijing time).
    pub fn date(self) -> NaiveDate {
        match self {
            Start::Date(d) => d,
            Start::Instant(t) => t.date_naive(),
        }
    }

    fn instant(self) -> DateTime<Tz> {
        match self {
            Start::Date(d) => local_midnight(d),
            Start::Instant(t) => t,
        }
    }
}

/// What a period yields, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    /// The last day of the period, after any rest-day extension.
    pub last_day: NaiveDate,
    /// The cut-off instant: 24:00 of `last_day` (written as 00:00 of the next
    /// day) or the business-hours cut-off. For a `within` period an act at or
    /// after this instant is late; for `at_least`, what follows may happen
    /// from this instant on.
    pub deadline: DateTime<FixedOffset>,
    /// Deadline or minimum.
    pub bound: Bound,
    /// True when a year without an official schedule was consulted.
    pub provisional: bool,
    /// The years without a schedule that the count consulted; loading one of
    /// them makes this deadline worth recomputing.
    pub provisional_years: Vec<i32>,
    /// One line saying how the last day was reached.
    pub explanation: String,
}

/// What the calendar says about one day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayInfo {
    /// Whether the day is a working day.
    pub working: bool,
    /// The holiday the day belongs to, when the schedule names one.
    pub holiday: Option<String>,
    /// The schedule marks the day as a make-up working day.
    pub make_up: bool,
    /// The year has no schedule; only weekends are known.
    pub provisional: bool,
}

impl Calendar {
    /// An empty calendar: every year is provisional.
    pub fn empty() -> Self {
        Calendar::default()
    }

    /// The calendar with the schedules shipped in the engine (2025, 2026).
    pub fn builtin() -> Self {
        let mut cal = Calendar::empty();
        for text in [BUILTIN_2025, BUILTIN_2026] {
            let year = YearSchedule::from_yaml(text).expect("shipped schedules are valid");
            cal.insert(year);
        }
        cal
    }

    /// Adds or replaces a year; returns the schedule it replaced.
    pub fn insert(&mut self, year: YearSchedule) -> Option<YearSchedule> {
        self.years.insert(year.year, year)
    }

    /// The schedule of `year`, if known.
    pub fn year(&self, year: i32) -> Option<&YearSchedule> {
        self.years.get(&year)
    }

    /// The years with a schedule, ascending.
    pub fn years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.keys().copied()
    }

    /// What the calendar knows about `date`.
    pub fn day(&self, date: NaiveDate) -> DayInfo {
        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        let Some(year) = self.years.get(&date.year()) else {
            return DayInfo {
                working: !weekend,
                holiday: None,
                make_up: false,
                provisional: true,
            };
        };
        match year.days.get(&date) {
            Some((DayKind::Rest, name)) => DayInfo {
                working: false,
                holiday: Some(name.clone()),
                make_up: false,
                provisional: false,
            },
            Some((DayKind::MakeUp, name)) => DayInfo {
                working: true,
                holiday: Some(name.clone()),
                make_up: true,
                provisional: false,
            },
            None => DayInfo {
                working: !weekend,
                holiday: None,
                make_up: false,
                provisional: false,
            },
        }
    }

    /// Whether `date` is a working day (make-up days included).
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        self.day(date).working
    }

    /// The deadline of a date set outright (`until:`, e.g. the
    /// rectification deadline an agency set): that day, moved to the next
    /// working day when it is a rest day, as the last day of any period is
    /// (民法典 第二百零三条); cut off at 24:00 or at `cutoff`.
    pub fn until(&self, date: NaiveDate, cutoff: Option<NaiveTime>, bound: Bound) -> Deadline {
        let mut seen = Consulted::default();
        let (last_day, explanation) = self.extend(date, format!("the date set, {date}"), &mut seen);
        self.finish(last_day, explanation, cutoff, bound, seen)
    }

    /// Counts `spec` from `start`. Pure: the same input gives the same output.
    pub fn count(&self, start: Start, spec: &PeriodSpec) -> Deadline {
        let Period { count, unit } = spec.period;
        let mut seen = Consulted::default();
        let (last_day, explanation) = match unit {
            Unit::Hours => {
                let end = start.instant() + Duration::hours(i64::from(count));
                let explanation = format!(
                    "{} from {} ends at {}; hours run from the exact instant, without extension",
                    spec.period,
                    start.instant().format("%Y-%m-%d %H:%M"),
                    end.format("%Y-%m-%d %H:%M"),
                );
                return Deadline {
                    last_day: end.date_naive(),
                    deadline: end.fixed_offset(),
                    bound: spec.bound,
                    provisional: false,
                    provisional_years: Vec::new(),
                    explanation,
                };
            }
            Unit::WorkingDays => self.count_working_days(start.date(), spec, &mut seen),
            Unit::Days => {
                let d = start.date();
                let n = i64::from(count) - i64::from(spec.include_start_day);
                let nominal = d + Duration::days(n);
                self.extend(nominal, format!("{} after {d}", spec.period), &mut seen)
            }
            Unit::Months | Unit::Years => {
                let d = start.date();
                let months = if unit == Unit::Years {
                    count * 12
                } else {
                    count
                };
                let (corresponding, clamped) = add_months(d, months);
                let nominal = if spec.include_start_day {
                    corresponding - Duration::days(1)
                } else {
                    corresponding
                };
                let mut what = format!("{} after {d}", spec.period);
                if clamped {
                    let _ = write!(
                        what,
                        " (no day {} in {}; month end)",
                        d.day(),
                        corresponding.format("%Y-%m")
                    );
                }
                self.extend(nominal, what, &mut seen)
            }
        };
        self.finish(last_day, explanation, spec.cutoff, spec.bound, seen)
    }

    /// The deadline ending on `last_day`: its cut-off, and whether a year
    /// without a schedule was consulted on the way.
    fn finish(
        &self,
        last_day: NaiveDate,
        explanation: String,
        cutoff: Option<NaiveTime>,
        bound: Bound,
        seen: Consulted,
    ) -> Deadline {
        let deadline = match cutoff {
            None => local_midnight(last_day + Duration::days(1)),
            Some(t) => local(last_day, t),
        };
        let explanation = match cutoff {
            None => explanation,
            Some(t) => format!(
                "{explanation}; cut-off {} (business hours)",
                t.format("%H:%M")
            ),
        };
        let provisional_years: Vec<i32> = seen.0.into_iter().collect();
        let explanation = if provisional_years.is_empty() {
            explanation
        } else {
            let years: Vec<String> = provisional_years.iter().map(i32::to_string).collect();
            format!(
                "{explanation}; PROVISIONAL: no official schedule for {}, weekends only",
                years.join(", ")
            )
        };
        Deadline {
            last_day,
            deadline: deadline.fixed_offset(),
            bound,
            provisional: !provisional_years.is_empty(),
            provisional_years,
            explanation,
        }
    }

    fn count_working_days(
        &self,
        start: NaiveDate,
        spec: &PeriodSpec,
        seen: &mut Consulted,
    ) -> (NaiveDate, String) {
        let wanted = spec.period.count;
        let mut day = if spec.include_start_day {
            start
        } else {
            start.succ_opt().expect("date in range")
        };
        let mut counted = Vec::new();
        let mut skipped: Vec<String> = Vec::new();
        loop {
            let info = self.day(day);
            seen.note(day, &info);
            if info.working {
                let label = match (&info.holiday, info.make_up) {
                    (Some(h), true) => {
                        format!("{} (make-up working day, {h})", day.format("%m-%d"))
                    }
                    _ => day.format("%m-%d").to_string(),
                };
                counted.push(label);
                if counted.len() as u32 == wanted {
                    break;
                }
            } else if let Some(h) = info.holiday {
                if !skipped.contains(&h) {
                    skipped.push(h);
                }
            }
            day = day.succ_opt().expect("date in range");
        }
        let from = if spec.include_start_day {
            format!("from {start} (start day counted)")
        } else {
            format!("after {start}")
        };
        let mut text = format!("{} {from}: ", spec.period);
        if counted.len() <= 10 {
            text.push_str(&counted.join(", "));
        } else {
            let _ = write!(
                text,
                "{} … {}",
                counted[..3].join(", "),
                counted[counted.len() - 2..].join(", ")
            );
        }
        if !skipped.is_empty() {
            let _ = write!(text, "; skipped the rest days of {}", skipped.join(", "));
        }
        (day, text)
    }

    /// The rest-day extension of the last day (民法典 第二百零三条).
    fn extend(
        &self,
        nominal: NaiveDate,
        what: String,
        seen: &mut Consulted,
    ) -> (NaiveDate, String) {
        let info = self.day(nominal);
        seen.note(nominal, &info);
        if info.working {
            let why = match &info.holiday {
                Some(h) if info.make_up => format!(" (a make-up working day of {h})"),
                _ => String::new(),
            };
            return (nominal, format!("{what}: {nominal} is a working day{why}"));
        }
        let reason = match &info.holiday {
            Some(h) => format!("falls in {h}"),
            None => format!("is a {}", weekday_name(nominal.weekday())),
        };
        let mut day = nominal;
        loop {
            day = day.succ_opt().expect("date in range");
            let info = self.day(day);
            seen.note(day, &info);
            if info.working {
                let why = match &info.holiday {
                    Some(h) if info.make_up => format!(", a make-up working day of {h}"),
                    _ => String::new(),
                };
                return (
                    day,
                    format!(
                        "{what}: nominal {nominal} {reason}; extended to the next working day {day}{why}"
                    ),
                );
            }
        }
    }
}

/// The years without a schedule that a count looked at.
#[derive(Default)]
struct Consulted(BTreeSet<i32>);

impl Consulted {
    fn note(&mut self, day: NaiveDate, info: &DayInfo) {
        if info.provisional {
            self.0.insert(day.year());
        }
    }
}

fn weekday_name(w: Weekday) -> &'static str {
    match w {
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
    }
}

/// The corresponding day `months` later, clamped to the month's end
/// (民法典 第二百零二条). Returns the day and whether it was clamped.
pub fn add_months(d: NaiveDate, months: u32) -> (NaiveDate, bool) {
    let total = d.year() * 12 + d.month0() as i32 + months as i32;
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12) as u32);
    let first = NaiveDate::from_ymd_opt(year, month0 + 1, 1).expect("valid month");
    let last = days_in_month(first);
    if d.day() > last {
        (first.with_day(last).expect("valid day"), true)
    } else {
        (first.with_day(d.day()).expect("valid day"), false)
    }
}

/// The corresponding day `months` earlier, clamped to the month's end.
pub fn sub_months(d: NaiveDate, months: u32) -> NaiveDate {
    let total = d.year() * 12 + d.month0() as i32 - months as i32;
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12) as u32);
    let first = NaiveDate::from_ymd_opt(year, month0 + 1, 1).expect("valid month");
    first
        .with_day(d.day().min(days_in_month(first)))
        .expect("valid day")
}

/// The number of days in the month of `d`.
pub fn days_in_month(d: NaiveDate) -> u32 {
    let first = d.with_day(1).expect("day 1 exists");
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .expect("valid month");
    (next - first).num_days() as u32
}

/// 00:00 of `d` in Beijing time.
pub fn local_midnight(d: NaiveDate) -> DateTime<Tz> {
    local(d, NaiveTime::MIN)
}

/// `t` on `d` in Beijing time. China has had no daylight saving since 1991,
/// so every local time maps to exactly one instant.
pub fn local(d: NaiveDate, t: NaiveTime) -> DateTime<Tz> {
    LEGAL_TZ
        .from_local_datetime(&d.and_time(t))
        .earliest()
        .expect("Asia/Shanghai has no gaps since 1991")
}

#[cfg(test)]
mod tests;
