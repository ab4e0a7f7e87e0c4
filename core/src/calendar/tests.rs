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
        "自2025年9月26日起算5个工作日（开始之日不计入）：9月28日（国庆节、中秋节调休上班）、\
         9月29日、9月30日、10月9日、10月10日，第5个工作日为10月10日；\
         10月1日至8日为国庆节、中秋节放假日，不计入"
    );
    let d = check("2025-01-31", "1 month", "2025-02-28");
    assert!(
        d.explanation
            .contains("到期月没有31日，以月末日2月28日为届满日，是工作日"),
        "{}",
        d.explanation
    );
    check("2026-02-10", "30 days", "2026-03-12");
    let d = check("2025-09-05", "30 days", "2025-10-09");
    assert_eq!(
        d.explanation,
        "自2025年9月5日起算30日（开始之日不计入），届满日为10月5日，\
         该日在国庆节、中秋节放假期间，顺延至其后第一个工作日10月9日"
    );
    let d = check("2025-12-24", "10 days", "2026-01-04");
    assert!(
        d.explanation.contains("届满日为2026年1月3日，该日在元旦放假期间，顺延至其后第一个工作日1月4日（元旦调休上班）"),
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
        d.explanation
            .contains("届满日为3月8日，该日为星期六，顺延至其后第一个工作日3月10日"),
        "{}",
        d.explanation
    );
}

#[test]
fn years_without_schedule_are_provisional() {
    let d = check("2026-12-20", "30 days", "2027-01-19");
    assert!(d.provisional);
    assert_eq!(d.provisional_years, vec![2027]);
    assert!(
        d.explanation
            .contains("暂按法定假日推算：2027年的节假日安排国务院尚未公布"),
        "{}",
        d.explanation
    );
    let d = check("2026-03-01", "1 year", "2027-03-01");
    assert!(d.provisional);
    let d = check("2026-03-02", "1 month", "2026-04-02");
    assert!(!d.provisional);
}

#[test]
fn loading_a_year_changes_provisional_results() {
    // Provisional 2027 knows 10-01..03 (国庆节) but not the bridging days
    // and the 调休 of the State Council's notice.
    let mut cal = Calendar::builtin();
    let spec = PeriodSpec::within("5个工作日".parse().unwrap());
    let before = cal.count(Start::Date(date("2027-09-28")), &spec);
    assert_eq!(
        before.last_day,
        date("2027-10-06"),
        "{}",
        before.explanation
    );
    assert!(before.provisional);
    let y2027 = "year: 2027\nholidays:\n- name: 国庆节\n  rest: [2027-10-01..2027-10-07]\n  workdays: [2027-09-26, 2027-10-09]\n";
    cal.insert(YearSchedule::from_yaml(y2027).unwrap());
    let after = cal.count(Start::Date(date("2027-09-28")), &spec);
    // 09-29, 09-30, 10-08, 10-09 (make-up Saturday), 10-11.
    assert_eq!(after.last_day, date("2027-10-11"), "{}", after.explanation);
    assert!(!after.provisional);
    assert!(!after.explanation.contains("暂按"), "{}", after.explanation);
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

/// Issue 21: a year without a schedule counts the statutory holidays of
/// 《全国年节及纪念日放假办法》 as rest days, stays provisional, and says
/// which days it took as holidays.
#[test]
fn provisional_years_count_the_statutory_holidays() {
    let d = check("2027-09-26", "5个工作日", "2027-10-04");
    assert!(d.provisional);
    assert!(
        d.explanation.starts_with("自2027年9月26日起算5个工作日（开始之日不计入）：9月27日、9月28日、9月29日、9月30日、10月4日"),
        "{}",
        d.explanation
    );
    assert!(
        d.explanation
            .contains("10月1日至3日为国庆节法定节假日，不计入"),
        "{}",
        d.explanation
    );
    assert!(
        d.explanation.contains("2027年的节假日安排国务院尚未公布"),
        "{}",
        d.explanation
    );
    // 元旦, 劳动节 and the lunar holidays of 2027–2030 are rest days.
    let cal = Calendar::builtin();
    for (day, holiday) in [
        ("2027-01-01", "元旦"),
        ("2027-02-05", "春节"),
        ("2027-02-08", "春节"),
        ("2027-04-05", "清明节"),
        ("2027-05-01", "劳动节"),
        ("2027-05-02", "劳动节"),
        ("2027-06-09", "端午节"),
        ("2027-09-15", "中秋节"),
        ("2027-10-01", "国庆节"),
        ("2027-10-03", "国庆节"),
        ("2028-01-25", "春节"),
        ("2028-05-28", "端午节"),
        ("2029-02-12", "春节"),
        ("2029-09-22", "中秋节"),
        ("2030-02-02", "春节"),
        ("2030-06-05", "端午节"),
        ("2030-09-12", "中秋节"),
    ] {
        let info = cal.day(date(day));
        assert!(!info.working && info.provisional, "{day}: {info:?}");
        assert_eq!(info.holiday.as_deref(), Some(holiday), "{day}");
    }
    // Not the days around them: the 调休 waits for the State Council.
    for day in ["2027-02-09", "2027-10-04", "2027-05-03"] {
        assert!(cal.is_working_day(date(day)), "{day}");
    }
    // A period ending on a statutory holiday moves past it.
    let d = check("2027-09-01", "1个月", "2027-10-04");
    assert!(
        d.explanation.contains("为国庆节（法定节假日）"),
        "{}",
        d.explanation
    );
    // Years of the old rules, or past the computed range: weekends only.
    assert!(statutory::days(2024).is_empty());
}

/// Issue 21: a span that does not move (a term of office, a bar) ends on
/// its corresponding day, whatever weekday it is.
#[test]
fn a_term_with_the_extension_off_ends_on_its_anniversary() {
    let cal = Calendar::builtin();
    let mut spec = PeriodSpec::within("3年".parse().unwrap());
    let start = Start::Date(date("2026-07-07"));
    assert_eq!(cal.count(start, &spec).last_day, date("2029-07-09"));
    spec.extend = false;
    let d = cal.count(start, &spec);
    assert_eq!(d.last_day, date("2029-07-07"), "{}", d.explanation);
    assert!(
        d.explanation.contains("该日为星期六；此期间不因休息日顺延"),
        "{}",
        d.explanation
    );
    let (_, days) = cal.count_traced(start, &spec);
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].rule, DayRule::NotExtended);
    assert!(days[0].counted);
}

/// Issue 21: the trace lists each day counted or passed over with its rule.
#[test]
fn the_trace_names_the_rule_of_every_day() {
    let cal = Calendar::builtin();
    let (d, days) = cal.count_traced(
        Start::Date(date("2025-09-26")),
        &PeriodSpec::within("5个工作日".parse().unwrap()),
    );
    assert_eq!(
        d,
        cal.count(
            Start::Date(date("2025-09-26")),
            &PeriodSpec::within("5个工作日".parse().unwrap())
        )
    );
    let counted: Vec<String> = days
        .iter()
        .filter(|x| x.counted)
        .map(|x| x.date.to_string())
        .collect();
    assert_eq!(
        counted,
        [
            "2025-09-28",
            "2025-09-29",
            "2025-09-30",
            "2025-10-09",
            "2025-10-10"
        ]
    );
    assert_eq!(days[0].rule, DayRule::Weekend, "09-27 is a Saturday");
    assert_eq!(days[1].rule, DayRule::MakeUpWorkingDay);
    assert!(days
        .iter()
        .any(|x| x.rule == DayRule::Holiday && x.date == date("2025-10-01")));
    let (_, days) = cal.count_traced(
        Start::Date(date("2027-09-26")),
        &PeriodSpec::within("5个工作日".parse().unwrap()),
    );
    assert!(days.iter().any(|x| x.rule == DayRule::StatutoryHoliday
        && x.provisional
        && x.date == date("2027-10-01")));
}

proptest! {
    /// Issue 21: for 2025 and 2026, every statutory day the rule computes is
    /// a rest day of the official schedule.
    #[test]
    fn every_statutory_day_of_2025_and_2026_is_an_official_rest_day(offset in 0i64..730) {
        let cal = Calendar::builtin();
        let d = date("2025-01-01") + Duration::days(offset);
        if let Some(h) = statutory::holiday(d) {
            let info = cal.day(d);
            prop_assert!(!info.working && !info.provisional, "{d} ({h}) is not a rest day: {info:?}");
        }
    }
}

/// Issue 21: the same, exhaustively, and the count of statutory days.
#[test]
fn the_statutory_days_of_2025_and_2026_are_all_official_rest_days() {
    let cal = Calendar::builtin();
    for year in [2025, 2026] {
        let days = statutory::days(year);
        assert_eq!(days.len(), 13, "{year}: {days:?}");
        for (d, h) in days.iter() {
            let info = cal.day(*d);
            assert!(
                !info.working,
                "{d} ({h}) is not a rest day of {year}: {info:?}"
            );
        }
    }
}
