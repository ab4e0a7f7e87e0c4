//! The period parser and the count: any text, fragments of periods,
//! numbers of any length, every documented form, display round trips, and
//! a deadline (and its reminders) for any period from any day of 2025–2050.

use chrono::{Duration, NaiveDate, NaiveTime, TimeZone};
use duban_core::calendar::{
    reminder_due, Bound, Calendar, Period, PeriodSpec, Start, Unit, LEGAL_TZ,
};
use proptest::prelude::*;

use super::corpus;

/// Fragments of periods, right and wrong.
const PERIOD_TOKENS: &[&str] = &[
    "0",
    "1",
    "5",
    "9",
    "10",
    "9999",
    "10000",
    "4294967296",
    "99999999999999999999",
    "一",
    "两",
    "五",
    "九",
    "十",
    "百",
    "〇",
    "０",
    "５",
    "-",
    "+",
    " ",
    "\t",
    "\u{3000}",
    "个",
    "工作日",
    "日",
    "天",
    "月",
    "年",
    "小时",
    "个小时",
    "working",
    "day",
    "days",
    "month",
    "months",
    "year",
    "years",
    "hour",
    "hours",
    "week",
    ".",
    "e3",
    "½",
];

fn check_period(text: &str) -> Result<(), TestCaseError> {
    match text.parse::<Period>() {
        Ok(p) => {
            prop_assert!((1..=9999).contains(&p.count), "{text:?} gave {p:?}");
            let shown = p.to_string();
            prop_assert_eq!(
                shown.parse::<Period>(),
                Ok(p),
                "{:?} shown as {:?}",
                text,
                shown
            );
        }
        Err(e) => {
            let m = e.to_string();
            prop_assert!(
                m.contains("accepted forms") || m.contains("at least 1 and at most 9999"),
                "{text:?}: {m}"
            );
        }
    }
    Ok(())
}

const UNITS: [Unit; 5] = [
    Unit::WorkingDays,
    Unit::Days,
    Unit::Months,
    Unit::Years,
    Unit::Hours,
];

/// Every way the docs say `count` `unit` may be written.
fn forms(count: u32, unit: Unit) -> Vec<String> {
    let (en, zh): (&[&str], &[&str]) = match unit {
        Unit::WorkingDays => (&["working day", "working days"], &["个工作日", "工作日"]),
        Unit::Days => (&["day", "days"], &["日", "天"]),
        Unit::Months => (&["month", "months"], &["个月", "月"]),
        Unit::Years => (&["year", "years"], &["年"]),
        Unit::Hours => (&["hour", "hours"], &["小时", "个小时"]),
    };
    let mut out = Vec::new();
    for u in en {
        out.push(format!("{count} {u}"));
    }
    for u in zh {
        out.push(format!("{count}{u}"));
        out.push(format!("{count} {u}"));
        if let Some(n) = duban_core::calendar::period::to_chinese_numeral(count) {
            out.push(format!("{n}{u}"));
            if count == 2 {
                out.push(format!("两{u}"));
            }
        }
    }
    out
}

fn period() -> impl Strategy<Value = Period> {
    (
        prop_oneof![1..=99u32, 1..=9999u32, Just(9999u32)],
        prop::sample::select(UNITS.to_vec()),
    )
        .prop_map(|(c, u)| Period::new(c, u))
}

fn spec() -> impl Strategy<Value = PeriodSpec> {
    (
        period(),
        any::<bool>(),
        prop::option::of((0..24u32, 0..60u32)),
        any::<bool>(),
    )
        .prop_map(|(period, include_start_day, cutoff, at_least)| PeriodSpec {
            period,
            include_start_day,
            cutoff: cutoff.map(|(h, m)| NaiveTime::from_hms_opt(h, m, 0).unwrap()),
            bound: if at_least {
                Bound::AtLeast
            } else {
                Bound::Within
            },
            extend: true,
        })
}

fn start() -> impl Strategy<Value = Start> {
    let first = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let days = (NaiveDate::from_ymd_opt(2050, 12, 31).unwrap() - first).num_days();
    (0..=days, prop::option::of(0..86_400i64)).prop_map(move |(d, secs)| {
        let day = first + Duration::days(d);
        match secs {
            None => Start::Date(day),
            Some(s) => Start::Instant(
                LEGAL_TZ
                    .from_local_datetime(&day.and_time(NaiveTime::MIN))
                    .unwrap()
                    + Duration::seconds(s),
            ),
        }
    })
}

proptest! {
    #[test]
    fn any_text_is_a_period_or_a_refusal(text in "\\PC{0,30}") {
        check_period(&text)?;
    }

    #[test]
    fn period_fragments_are_a_period_or_a_refusal(parts in prop::collection::vec(prop::sample::select(PERIOD_TOKENS), 0..6)) {
        check_period(&parts.concat())?;
    }

    /// A number of any length is read as itself: 1–9999 is a period, any
    /// other a refusal for its range, never one that wrapped around.
    #[test]
    fn numbers_of_any_length_never_wrap(digits in "[0-9]{1,40}", unit in prop::sample::select(UNITS.to_vec())) {
        let value: u128 = digits.trim_start_matches('0').chars().take(30).fold(0, |n, c| {
            n.saturating_mul(10).saturating_add(u128::from(c.to_digit(10).unwrap()))
        });
        let form = forms(1, unit)[0].trim_start_matches('1').to_string();
        let text = format!("{digits}{form}");
        match text.parse::<Period>() {
            Ok(p) => prop_assert!((1..=9999).contains(&value) && u128::from(p.count) == value, "{text:?}: {p:?}"),
            Err(e) => {
                prop_assert!(!(1..=9999).contains(&value), "{text:?}: {e}");
                prop_assert!(e.to_string().contains("at least 1 and at most 9999"), "{text:?}: {e}");
            }
        }
    }

    #[test]
    fn every_documented_form_reads_as_written(p in period()) {
        for f in forms(p.count, p.unit) {
            prop_assert_eq!(f.parse::<Period>(), Ok(p), "{}", f);
            check_period(&f)?;
            check_period(&format!("  {f} "))?;
        }
    }

    /// Any period counted from any day or instant of 2025–2050, with any
    /// options, gives a deadline, never a panic: the last day is not
    /// before the start and (hours aside) is a working day, the cut-off is
    /// on the last day or its 24:00, a provisional count names its years,
    /// and every reminder comes before the cut-off.
    #[test]
    fn any_period_counts_to_a_deadline(start in start(), spec in spec(), before in period(), any_hour in any::<bool>()) {
        let cal = Calendar::builtin();
        let d = cal.count(start, &spec);
        let day = match start { Start::Date(d) => d, Start::Instant(t) => t.date_naive() };
        prop_assert!(d.last_day >= day, "{d:?}");
        prop_assert!(!d.explanation.is_empty());
        prop_assert_eq!(d.provisional, !d.provisional_years.is_empty());
        prop_assert!(d.provisional_years.iter().all(|y| cal.year(*y).is_none()), "{:?}", d);
        if spec.period.unit != Unit::Hours {
            prop_assert!(cal.is_working_day(d.last_day), "{d:?}");
            let cut = d.deadline.with_timezone(&LEGAL_TZ);
            prop_assert!(cut.date_naive() == d.last_day || cut.date_naive() == d.last_day.succ_opt().unwrap(), "{d:?}");
        }
        let r = reminder_due(&cal, &d, &before, any_hour);
        prop_assert!(r < d.deadline, "reminder {before} before gives {r}: {d:?}");
    }
}

/// Decodes the escapes a corpus line may use for what a text file cannot
/// show: `\t`, `\n`, `\r`, `\\` and `\u{…}`.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('u') => {
                let hex: String = it.by_ref().skip(1).take_while(|c| *c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            other => panic!("unknown escape \\{other:?} in {s:?}"),
        }
    }
    out
}

/// Every line `INPUT => RESULT` of the period corpus gives its result:
/// the period as displayed, or `refused: ` and part of the message.
#[test]
fn the_period_corpus_gives_its_results() {
    let text = std::fs::read_to_string(corpus("period").join("cases.txt")).unwrap();
    let (mut n, mut wrong) = (0, Vec::new());
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (input, want) = line
            .split_once(" => ")
            .unwrap_or_else(|| panic!("no ` => ` in {line:?}"));
        let input = unescape(input);
        let got = match input.parse::<Period>() {
            Ok(p) => p.to_string(),
            Err(e) => format!("refused: {e}"),
        };
        let ok = match want.strip_prefix("refused: ") {
            Some(part) => got.starts_with("refused: ") && got.contains(part),
            None => got == want,
        };
        if !ok {
            wrong.push(format!("{input:?}: {got}\n  expected {want}"));
        }
        if let Err(e) = check_period(&input) {
            wrong.push(format!("{input:?}: {e}"));
        }
        n += 1;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(n >= 20, "only {n} cases");
}
