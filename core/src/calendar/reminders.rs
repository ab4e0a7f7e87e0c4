//! When reminders fire: a period before a deadline's cut-off, held back
//! to working hours on a working day so no SMS goes out at 03:00 or during
//! 春节 — and never later than asked, so a reminder never comes late.

use chrono::{DateTime, Duration, NaiveTime, Utc};

use super::{local, sub_months, Calendar, Deadline, Period, Unit, LEGAL_TZ};

/// The working hours reminders are held to.
const WORK_START: (u32, u32) = (9, 0);
const WORK_END: (u32, u32) = (17, 30);

/// When a reminder `before` the deadline fires: hours before the cut-off, or
/// 09:00 on the day that many (working) days before the last day. Unless
/// `any_hour`, the instant is then held back to working hours on a working
/// day — never later, so the reminder still comes before the deadline: no
/// SMS at 03:00, none during 春节.
pub fn reminder_due(
    cal: &Calendar,
    d: &Deadline,
    before: &Period,
    any_hour: bool,
) -> DateTime<Utc> {
    let cutoff = d.deadline.with_timezone(&Utc);
    let day = match before.unit {
        Unit::Hours => {
            let due = cutoff - Duration::hours(i64::from(before.count));
            return if any_hour {
                due
            } else {
                hold_to_working_hours(cal, due)
            };
        }
        Unit::Days => d.last_day - Duration::days(i64::from(before.count)),
        Unit::WorkingDays => {
            let mut day = d.last_day;
            let mut n = 0;
            while n < before.count {
                day = day.pred_opt().expect("date in range");
                if cal.is_working_day(day) {
                    n += 1;
                }
            }
            day
        }
        Unit::Months | Unit::Years => {
            let months = if before.unit == Unit::Years {
                before.count * 12
            } else {
                before.count
            };
            sub_months(d.last_day, months)
        }
    };
    let at = |day| {
        local(
            day,
            NaiveTime::from_hms_opt(WORK_START.0, WORK_START.1, 0).expect("09:00"),
        )
        .with_timezone(&Utc)
    };
    if any_hour {
        return at(day);
    }
    let mut day = day;
    while !cal.is_working_day(day) {
        day = day.pred_opt().expect("date in range");
    }
    at(day)
}

/// The latest instant at or before `t` that is in working hours on a working day.
pub fn hold_to_working_hours(cal: &Calendar, t: DateTime<Utc>) -> DateTime<Utc> {
    let start = NaiveTime::from_hms_opt(WORK_START.0, WORK_START.1, 0).expect("09:00");
    let end = NaiveTime::from_hms_opt(WORK_END.0, WORK_END.1, 0).expect("17:30");
    let here = t.with_timezone(&LEGAL_TZ);
    let (mut day, time) = (here.date_naive(), here.time());
    if cal.is_working_day(day) && time >= start && time <= end {
        return t;
    }
    if !(cal.is_working_day(day) && time > end) {
        day = day.pred_opt().expect("date in range");
        while !cal.is_working_day(day) {
            day = day.pred_opt().expect("date in range");
        }
    }
    local(day, end).with_timezone(&Utc)
}
