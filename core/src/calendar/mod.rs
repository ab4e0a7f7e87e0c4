//! Legal time: counting the periods of Chinese law on the official calendar.
//!
//! `docs/legal-time.md` is the specification. The core, [`Calendar::count`], is a
//! pure function of the calendar data, a start and a [`PeriodSpec`]; it reads
//! no clock and no file, so the engine, the simulator and the tests get the
//! same answer for the same input. Every result carries a one-line
//! explanation, in Chinese, that staff and agencies read next to the
//! deadline (which days were counted, which were passed over as holidays,
//! why the last day moved), and says whether it is **provisional**: it
//! consulted a year without an official schedule, where the weekends and
//! the statutory holidays ([`statutory`]) are known but not the 调休.
//! [`Calendar::count_traced`] gives the same count with every day looked
//! at and its rule, for machines.
//!
//! Layout:
//! - [`period`]: the period syntax, shared with the process language;
//! - [`schedule`]: one year's official schedule, read and validated from YAML;
//! - [`statutory`]: the statutory holidays of years without a schedule;
//! - [`files`]: the calendar directory where administrators install new years.

pub mod files;
pub mod period;
pub mod reminders;
pub mod schedule;
pub mod statutory;

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
    /// Move a last day that is a rest day to the next working day
    /// (民法典 第二百零三条). Default on; off for a span that is not a time
    /// to act in — a term of office, a bar — which ends on its
    /// corresponding day whatever weekday that is.
    pub extend: bool,
}

impl PeriodSpec {
    /// A plain "within" period: start day excluded, cut-off at 24:00,
    /// extended past rest days.
    pub fn within(period: Period) -> Self {
        PeriodSpec {
            period,
            include_start_day: false,
            cutoff: None,
            bound: Bound::Within,
            extend: true,
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
    /// The holiday the day belongs to: the schedule's name, or in a year
    /// without one, the statutory holiday ([`statutory`]).
    pub holiday: Option<String>,
    /// The schedule marks the day as a make-up working day.
    pub make_up: bool,
    /// The year has no schedule; only weekends and the statutory holidays
    /// are known.
    pub provisional: bool,
}

/// Why a day was counted or passed over, for `duban deadline --json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DayRule {
    /// A working day, counted.
    WorkingDay,
    /// A make-up working day (调休上班) of the schedule, counted.
    MakeUpWorkingDay,
    /// A Saturday or Sunday, not counted.
    Weekend,
    /// A rest day of the official schedule, not counted.
    Holiday,
    /// A statutory holiday of a year without a schedule, not counted
    /// (provisional).
    StatutoryHoliday,
    /// The nominal last day of a day, month or year period.
    NominalEnd,
    /// The day the last day was moved to (民法典 第二百零三条).
    Extended,
    /// The corresponding day, kept though it is a rest day (no extension).
    NotExtended,
}

/// One day a count looked at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TracedDay {
    /// The day.
    pub date: NaiveDate,
    /// Counted toward a working-days period (or the last day reached).
    pub counted: bool,
    /// Why.
    pub rule: DayRule,
    /// The holiday it belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holiday: Option<String>,
    /// The year has no official schedule.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
}

/// `2027年9月26日`.
pub fn zh_date(d: NaiveDate) -> String {
    format!("{}年{}月{}日", d.year(), d.month(), d.day())
}

/// `9月26日`, or with the year when it is not `year`.
fn zh_short(d: NaiveDate, year: i32) -> String {
    if d.year() == year {
        format!("{}月{}日", d.month(), d.day())
    } else {
        zh_date(d)
    }
}

/// Days as Chinese runs: `10月1日至3日`, `9月30日至10月8日`, `5月1日`.
fn zh_runs(days: &[NaiveDate], year: i32) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i;
        while j + 1 < days.len() && days[j + 1] == days[j] + Duration::days(1) {
            j += 1;
        }
        let (a, b) = (days[i], days[j]);
        out.push(if a == b {
            zh_short(a, year)
        } else if a.month() == b.month() && a.year() == b.year() {
            format!("{}至{}日", zh_short(a, year), b.day())
        } else {
            format!("{}至{}", zh_short(a, year), zh_short(b, year))
        });
        i = j + 1;
    }
    out.join("、")
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
            let holiday = statutory::holiday(date);
            return DayInfo {
                working: !weekend && holiday.is_none(),
                holiday: holiday.map(str::to_string),
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
        let (last_day, explanation) = self.extend(
            date,
            format!("所定日期为{}", zh_date(date)),
            true,
            &mut seen,
        );
        self.finish(last_day, explanation, cutoff, bound, &seen)
    }

    /// Counts `spec` from `start`. Pure: the same input gives the same output.
    pub fn count(&self, start: Start, spec: &PeriodSpec) -> Deadline {
        self.count_inner(start, spec, &mut Consulted::default())
    }

    /// [`Calendar::count`], with every day it looked at and why it was
    /// counted or passed over (`duban deadline --json`).
    pub fn count_traced(&self, start: Start, spec: &PeriodSpec) -> (Deadline, Vec<TracedDay>) {
        let mut seen = Consulted {
            trace: Some(Vec::new()),
            ..Default::default()
        };
        let d = self.count_inner(start, spec, &mut seen);
        (d, seen.trace.unwrap_or_default())
    }

    fn count_inner(&self, start: Start, spec: &PeriodSpec, seen: &mut Consulted) -> Deadline {
        let Period { count, unit } = spec.period;
        let (last_day, explanation) = match unit {
            Unit::Hours => {
                let end = start.instant() + Duration::hours(i64::from(count));
                let explanation = format!(
                    "自{} {}起算{}，至{} {}届满（按小时计算，自实际时刻起算，不因休息日顺延）",
                    zh_date(start.instant().date_naive()),
                    start.instant().format("%H:%M"),
                    spec.period.zh(),
                    zh_date(end.date_naive()),
                    end.format("%H:%M"),
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
            Unit::WorkingDays => self.count_working_days(start.date(), spec, seen),
            Unit::Days => {
                let d = start.date();
                let n = i64::from(count) - i64::from(spec.include_start_day);
                let nominal = d + Duration::days(n);
                let what = format!(
                    "自{}起算{}（{}），届满日为{}",
                    zh_date(d),
                    spec.period.zh(),
                    start_day_note(spec.include_start_day),
                    zh_short(nominal, d.year())
                );
                self.extend(nominal, what, spec.extend, seen)
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
                let what = if clamped {
                    format!(
                        "自{}起算{}（{}），到期月没有{}日，以月末日{}为届满日",
                        zh_date(d),
                        spec.period.zh(),
                        start_day_note(spec.include_start_day),
                        d.day(),
                        zh_short(nominal, d.year())
                    )
                } else {
                    format!(
                        "自{}起算{}（{}），到期月的对应日{}为届满日",
                        zh_date(d),
                        spec.period.zh(),
                        start_day_note(spec.include_start_day),
                        zh_short(nominal, d.year())
                    )
                };
                self.extend(nominal, what, spec.extend, seen)
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
        seen: &Consulted,
    ) -> Deadline {
        let deadline = match cutoff {
            None => local_midnight(last_day + Duration::days(1)),
            Some(t) => local(last_day, t),
        };
        let mut explanation = match cutoff {
            None => explanation,
            Some(t) => format!(
                "{explanation}；截止时间为当日{}（业务时间）",
                t.format("%H:%M")
            ),
        };
        let provisional_years: Vec<i32> = seen.years.iter().copied().collect();
        if !provisional_years.is_empty() {
            let years: Vec<String> = provisional_years.iter().map(|y| format!("{y}年")).collect();
            let _ = write!(
                explanation,
                "（暂按法定假日推算：{}的节假日安排国务院尚未公布，已按《全国年节及纪念日放假办法》计入元旦、春节、清明节、劳动节、端午节、中秋节、国庆节，未计调休；公布并导入后重新计算）",
                years.join("、")
            );
        }
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
        let mut counted: Vec<String> = Vec::new();
        // Rest days passed over, by holiday, in order of first appearance.
        let mut skipped: Vec<(String, bool, Vec<NaiveDate>)> = Vec::new();
        loop {
            let info = self.day(day);
            if info.working {
                let rule = if info.make_up {
                    DayRule::MakeUpWorkingDay
                } else {
                    DayRule::WorkingDay
                };
                seen.note(day, &info, true, rule);
                let label = match (&info.holiday, info.make_up) {
                    (Some(h), true) => format!("{}（{h}调休上班）", zh_short(day, start.year())),
                    _ => zh_short(day, start.year()),
                };
                counted.push(label);
                if counted.len() as u32 == wanted {
                    break;
                }
            } else {
                let rule = match (&info.holiday, info.provisional) {
                    (None, _) => DayRule::Weekend,
                    (Some(_), false) => DayRule::Holiday,
                    (Some(_), true) => DayRule::StatutoryHoliday,
                };
                seen.note(day, &info, false, rule);
                if let Some(h) = info.holiday {
                    match skipped.iter_mut().find(|(x, _, _)| *x == h) {
                        Some((_, _, days)) => days.push(day),
                        None => skipped.push((h, info.provisional, vec![day])),
                    }
                }
            }
            day = day.succ_opt().expect("date in range");
        }
        let mut text = format!(
            "自{}起算{}（{}）：",
            zh_date(start),
            spec.period.zh(),
            start_day_note(spec.include_start_day)
        );
        if counted.len() <= 10 {
            text.push_str(&counted.join("、"));
        } else {
            let _ = write!(
                text,
                "{}……{}",
                counted[..3].join("、"),
                counted[counted.len() - 2..].join("、")
            );
        }
        let _ = write!(
            text,
            "，第{}个工作日为{}",
            wanted,
            zh_short(day, start.year())
        );
        for (h, provisional, days) in &skipped {
            let kind = if *provisional {
                "法定节假日"
            } else {
                "放假日"
            };
            let _ = write!(text, "；{}为{h}{kind}，不计入", zh_runs(days, start.year()));
        }
        (day, text)
    }

    /// The rest-day extension of the last day (民法典 第二百零三条), unless
    /// `extend` is off.
    fn extend(
        &self,
        nominal: NaiveDate,
        what: String,
        extend: bool,
        seen: &mut Consulted,
    ) -> (NaiveDate, String) {
        let info = self.day(nominal);
        if info.working {
            seen.note(nominal, &info, true, DayRule::NominalEnd);
            let why = match &info.holiday {
                Some(h) if info.make_up => format!("（{h}调休上班）"),
                _ => String::new(),
            };
            return (nominal, format!("{what}，是工作日{why}"));
        }
        let reason = match &info.holiday {
            Some(h) if info.provisional => format!("为{h}（法定节假日）"),
            Some(h) => format!("在{h}放假期间"),
            None => format!("为{}", weekday_name(nominal.weekday())),
        };
        if !extend {
            seen.note(nominal, &info, true, DayRule::NotExtended);
            return (
                nominal,
                format!("{what}，该日{reason}；此期间不因休息日顺延"),
            );
        }
        seen.note(nominal, &info, false, DayRule::NominalEnd);
        let mut day = nominal;
        loop {
            day = day.succ_opt().expect("date in range");
            let info = self.day(day);
            if info.working {
                seen.note(day, &info, true, DayRule::Extended);
                let why = match &info.holiday {
                    Some(h) if info.make_up => format!("（{h}调休上班）"),
                    _ => String::new(),
                };
                return (
                    day,
                    format!(
                        "{what}，该日{reason}，顺延至其后第一个工作日{}{why}",
                        zh_short(day, nominal.year())
                    ),
                );
            }
            let rule = match (&info.holiday, info.provisional) {
                (None, _) => DayRule::Weekend,
                (Some(_), false) => DayRule::Holiday,
                (Some(_), true) => DayRule::StatutoryHoliday,
            };
            seen.note(day, &info, false, rule);
        }
    }
}

/// `开始之日不计入` or `开始之日计入`.
fn start_day_note(included: bool) -> &'static str {
    if included {
        "开始之日计入"
    } else {
        "开始之日不计入"
    }
}

/// The years without a schedule that a count looked at, and, when asked
/// for, every day it looked at.
#[derive(Default)]
struct Consulted {
    years: BTreeSet<i32>,
    trace: Option<Vec<TracedDay>>,
}

impl Consulted {
    fn note(&mut self, day: NaiveDate, info: &DayInfo, counted: bool, rule: DayRule) {
        if info.provisional {
            self.years.insert(day.year());
        }
        if let Some(t) = &mut self.trace {
            t.push(TracedDay {
                date: day,
                counted,
                rule,
                holiday: info.holiday.clone(),
                provisional: info.provisional,
            });
        }
    }
}

fn weekday_name(w: Weekday) -> &'static str {
    match w {
        Weekday::Sat => "星期六",
        Weekday::Sun => "星期日",
        Weekday::Mon => "星期一",
        Weekday::Tue => "星期二",
        Weekday::Wed => "星期三",
        Weekday::Thu => "星期四",
        Weekday::Fri => "星期五",
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
