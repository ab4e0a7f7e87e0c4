//! The worked examples of `docs/legal-time.md` and the calendar's properties.

use chrono::{Datelike, Duration, NaiveDate, NaiveTime};
use proptest::prelude::*;

use super::*;

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

#[track_caller]
fn check(start: &str, period: &str, last_day: &str) -> Deadline {
    let cal = Calendar::builtin();
    let spec = PeriodSpec::within(period.parse().unwrap());
    let got = cal.count(Start::Date(date(start)), &spec);
    assert_eq!(
        got.last_day,
        date(last_day),
        "{start} + {period}: {}",
        got.explanation
    );
    got
}

/// Every row of the "Worked examples" table in docs/legal-time.md.
#[test]
fn worked_examples() {
    let d = check("2025-09-26", "5 working days", "2025-10-10");
    assert_eq!(
        d.explanation,
        "5 working days after 2025-09-26: 09-28 (make-up working day, 国庆节、中秋节), \
         09-29, 09-30, 10-09, 10-10; skipped the rest days of 国庆节、中秋节"
    );
    let d = check("2025-01-31", "1 month", "2025-02-28");
    assert!(
        d.explanation.contains("no day 31 in 2025-02; month end"),
        "{}",
        d.explanation
    );
    check("2026-02-10", "30 days", "2026-03-12");
    let d = check("2025-09-05", "30 days", "2025-10-09");
    assert!(
        d.explanation.contains("nominal 2025-10-05 falls in 国庆节、中秋节; extended to the next working day 2025-10-09"),
        "{}",
        d.explanation
    );
    let d = check("2025-12-24", "10 days", "2026-01-04");
    assert!(
        d.explanation.contains("a make-up working day of 元旦"),
        "{}",
        d.explanation
    );
    check("2026-01-16", "1 month", "2026-02-24");
    // The same examples written in Chinese.
    check("2025-09-26", "5个工作日", "2025-10-10");
    check("2025-01-31", "1个月", "2025-02-28");
    check("2025-12-24", "10日", "2026-01-04");
    check("2026-02-10", "三十日", "2026-03-12");
}

#[test]
fn cut_off_is_24_00_beijing_time() {
    let d = check("2025-09-26", "5 working days", "2025-10-10");
    assert_eq!(d.deadline.to_rfc3339(), "2025-10-11T00:00:00+08:00");
    assert!(!d.provisional);
}

#[test]
fn business_hours_cut_off() {
    let cal = Calendar::builtin();
    let mut spec = PeriodSpec::within("5 working days".parse().unwrap());
    spec.cutoff = NaiveTime::from_hms_opt(17, 30, 0);
    let d = cal.count(Start::Date(date("2025-09-26")), &spec);
    assert_eq!(d.deadline.to_rfc3339(), "2025-10-10T17:30:00+08:00");
}

#[test]
fn start_day_counted_on_request() {
    let cal = Calendar::builtin();
    let mut spec = PeriodSpec::within("5 working days".parse().unwrap());
    spec.include_start_day = true;
    // 2025-09-26 is a Friday: it counts as day 1, then 09-28 (make-up),
    // 09-29, 09-30 and 10-09.
    let d = cal.count(Start::Date(date("2025-09-26")), &spec);
    assert_eq!(d.last_day, date("2025-10-09"));
    let mut spec = PeriodSpec::within("10 days".parse().unwrap());
    spec.include_start_day = true;
    let d = cal.count(Start::Date(date("2025-03-03")), &spec);
    assert_eq!(d.last_day, date("2025-03-12"));
}

#[test]
fn hours_run_from_the_instant() {
    let cal = Calendar::builtin();
    let start = LEGAL_TZ.with_ymd_and_hms(2025, 9, 30, 15, 20, 0).unwrap();
    let d = cal.count(
        Start::Instant(start),
        &PeriodSpec::within("48小时".parse().unwrap()),
    );
    // Ends inside the National Day break: hours are not extended.
    assert_eq!(d.deadline.to_rfc3339(), "2025-10-02T15:20:00+08:00");
    assert_eq!(d.last_day, date("2025-10-02"));
}

#[test]
fn weekend_extension_names_the_weekday() {
    // 2025-03-03 + 5 days = Saturday 2025-03-08 → Monday 2025-03-10.
    let d = check("2025-03-03", "5 days", "2025-03-10");
    assert!(
        d.explanation.contains("nominal 2025-03-08 is a Saturday"),
        "{}",
        d.explanation
    );
}

#[test]
fn years_without_schedule_are_provisional() {
    let d = check("2026-12-20", "30 days", "2027-01-19");
    assert!(d.provisional);
    assert_eq!(d.provisional_years, vec![2027]);
    assert!(d.explanation.contains("PROVISIONAL"));
    let d = check("2026-03-01", "1 year", "2027-03-01");
    assert!(d.provisional);
    let d = check("2026-03-02", "1 month", "2026-04-02");
    assert!(!d.provisional);
}

#[test]
fn loading_a_year_changes_provisional_results() {
    let mut cal = Calendar::builtin();
    let spec = PeriodSpec::within("10 days".parse().unwrap());
    let before = cal.count(Start::Date(date("2026-12-22")), &spec);
    assert_eq!(before.last_day, date("2027-01-01"));
    assert!(before.provisional);
    let y2027 = "year: 2027\nholidays:\n- name: 元旦\n  rest: [2027-01-01..2027-01-03]\n";
    cal.insert(YearSchedule::from_yaml(y2027).unwrap());
    let after = cal.count(Start::Date(date("2026-12-22")), &spec);
    assert_eq!(after.last_day, date("2027-01-04"));
    assert!(!after.provisional);
}

#[test]
fn leap_day_plus_a_year() {
    // 2024 has no schedule here: provisional, but the clamp is what we test.
    let (d, clamped) = add_months(date("2024-02-29"), 12);
    assert_eq!(d, date("2025-02-28"));
    assert!(clamped);
}

fn any_date() -> impl Strategy<Value = NaiveDate> {
    (0i64..(366 * 3)).prop_map(|n| date("2024-10-01") + Duration::days(n))
}

fn any_period() -> impl Strategy<Value = Period> {
    let unit = prop_oneof![
        Just(Unit::WorkingDays),
        Just(Unit::Days),
        Just(Unit::Months),
        Just(Unit::Years),
    ];
    (1u32..=60, unit).prop_map(|(n, unit)| {
        let n = if unit == Unit::Years { n % 5 + 1 } else { n };
        Period::new(n, unit)
    })
}

proptest! {
    #[test]
    fn working_day_periods_end_on_working_days(start in any_date(), n in 1u32..=40) {
        let cal = Calendar::builtin();
        let d = cal.count(Start::Date(start), &PeriodSpec::within(Period::new(n, Unit::WorkingDays)));
        prop_assert!(cal.is_working_day(d.last_day));
        prop_assert!(d.last_day > start);
    }

    #[test]
    fn periods_never_end_on_a_rest_day(start in any_date(), p in any_period(), inc in any::<bool>()) {
        let cal = Calendar::builtin();
        let mut spec = PeriodSpec::within(p);
        spec.include_start_day = inc;
        let d = cal.count(Start::Date(start), &spec);
        prop_assert!(cal.is_working_day(d.last_day), "{}", d.explanation);
    }

    #[test]
    fn later_start_never_ends_earlier(start in any_date(), gap in 0i64..40, p in any_period()) {
        let cal = Calendar::builtin();
        let spec = PeriodSpec::within(p);
        let a = cal.count(Start::Date(start), &spec);
        let b = cal.count(Start::Date(start + Duration::days(gap)), &spec);
        prop_assert!(b.last_day >= a.last_day, "{} / {}", a.explanation, b.explanation);
    }

    #[test]
    fn one_more_working_day_ends_later(start in any_date(), n in 1u32..=40) {
        let cal = Calendar::builtin();
        let a = cal.count(Start::Date(start), &PeriodSpec::within(Period::new(n, Unit::WorkingDays)));
        let b = cal.count(Start::Date(start), &PeriodSpec::within(Period::new(n + 1, Unit::WorkingDays)));
        prop_assert!(b.last_day > a.last_day);
    }

    #[test]
    fn months_clamp_to_the_month_end(start in any_date(), n in 1u32..=36) {
        let (d, clamped) = add_months(start, n);
        let months = (d.year() - start.year()) * 12 + d.month() as i32 - start.month() as i32;
        prop_assert_eq!(months, n as i32);
        prop_assert_eq!(d.day(), start.day().min(days_in_month(d)));
        prop_assert_eq!(clamped, start.day() > days_in_month(d));
    }

    #[test]
    fn day_periods_only_move_forward_from_nominal(start in any_date(), n in 1u32..=60) {
        let cal = Calendar::builtin();
        let d = cal.count(Start::Date(start), &PeriodSpec::within(Period::new(n, Unit::Days)));
        let nominal = start + Duration::days(i64::from(n));
        prop_assert!(d.last_day >= nominal);
        // Every day between nominal and last_day (exclusive) is a rest day.
        let mut x = nominal;
        while x < d.last_day {
            prop_assert!(!cal.is_working_day(x));
            x = x.succ_opt().unwrap();
        }
    }
}

/// Issue 13, `until:`: a date set outright ends that day, or the next
/// working day when it is a rest day (民法典 第二百零三条), at 24:00 or
/// at the business-hours cut-off; a year without a schedule is provisional.
#[test]
fn a_date_set_outright_moves_off_rest_days() {
    let cal = Calendar::builtin();
    let d = cal.until(date("2025-11-28"), None, Bound::Within);
    assert_eq!(d.last_day, date("2025-11-28"), "{}", d.explanation);
    assert_eq!(d.deadline.to_rfc3339(), "2025-11-29T00:00:00+08:00");
    let d = cal.until(date("2025-10-01"), None, Bound::Within);
    assert_eq!(d.last_day, date("2025-10-09"), "{}", d.explanation);
    assert!(d.explanation.contains("国庆节"), "{}", d.explanation);
    let d = cal.until(
        date("2025-11-30"),
        Some(NaiveTime::from_hms_opt(17, 30, 0).unwrap()),
        Bound::Within,
    );
    assert_eq!(d.deadline.to_rfc3339(), "2025-12-01T17:30:00+08:00");
    assert!(!d.provisional);
    let d = cal.until(date("2031-06-02"), None, Bound::Within);
    assert!(d.provisional, "{}", d.explanation);
}
