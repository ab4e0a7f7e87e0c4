//! The statutory holidays (法定节假日) of a year, known before its official
//! schedule is (issue 21).
//!
//! The State Council's yearly notice decides only the bridging rest days
//! and the make-up working days (调休). The holidays themselves are fixed by
//! 《全国年节及纪念日放假办法》 as revised in 2024 (in force 2025-01-01):
//! 元旦 1月1日; 春节 农历除夕、正月初一至初三; 清明节 the day of the 清明
//! solar term; 劳动节 5月1日、2日; 端午节 农历五月初五; 中秋节 农历八月十五;
//! 国庆节 10月1日至3日. For a year without an installed schedule, the
//! calendar counts these as rest days beside the weekends, and marks every
//! result that consulted the year **provisional**.
//!
//! The lunar dates and the solar term come from `tyme4rs` (a port of the
//! 寿星天文历 algorithms, by the author of the `lunar` calendar libraries),
//! computed once per year and kept for the life of the process. Years
//! before 2025 (another version of the rules) and after [`LAST_YEAR`] have
//! no statutory days here: only their weekends are known.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{Duration, NaiveDate};

/// The first year the 2024 revision of the rules applies to.
pub const FIRST_YEAR: i32 = 2025;
/// The last year computed.
pub const LAST_YEAR: i32 = 2100;

/// The statutory days of one year, each with its holiday's name.
pub type Days = Arc<BTreeMap<NaiveDate, &'static str>>;

/// The statutory holidays of `year`, by day, each with its holiday's name;
/// empty outside [`FIRST_YEAR`]..=[`LAST_YEAR`].
pub fn days(year: i32) -> Days {
    static CACHE: OnceLock<Mutex<BTreeMap<i32, Days>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(d) = cache.lock().expect("not poisoned").get(&year) {
        return d.clone();
    }
    let d = Arc::new(compute(year));
    cache.lock().expect("not poisoned").insert(year, d.clone());
    d
}

/// The statutory holiday `date` belongs to, if any.
pub fn holiday(date: NaiveDate) -> Option<&'static str> {
    use chrono::Datelike;
    days(date.year()).get(&date).copied()
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid date")
}

fn solar(d: tyme4rs::tyme::solar::SolarDay) -> NaiveDate {
    ymd(
        d.get_year() as i32,
        d.get_month() as u32,
        d.get_day() as u32,
    )
}

fn lunar(year: i32, month: isize, day: usize) -> NaiveDate {
    solar(tyme4rs::tyme::lunar::LunarDay::from_ymd(year as isize, month, day).get_solar_day())
}

fn compute(year: i32) -> BTreeMap<NaiveDate, &'static str> {
    let mut out = BTreeMap::new();
    if !(FIRST_YEAR..=LAST_YEAR).contains(&year) {
        return out;
    }
    out.insert(ymd(year, 1, 1), "元旦");
    // 春节: 除夕 (the day before 正月初一) and 正月初一 to 初三. Both fall in
    // the same Gregorian year (正月初一 is between 21 January and 20
    // February).
    let new_year = lunar(year, 1, 1);
    for i in -1..=2 {
        out.insert(new_year + Duration::days(i), "春节");
    }
    let qingming =
        solar(tyme4rs::tyme::solar::SolarTerm::from_name(year as isize, "清明").get_solar_day());
    out.insert(qingming, "清明节");
    out.insert(ymd(year, 5, 1), "劳动节");
    out.insert(ymd(year, 5, 2), "劳动节");
    out.insert(lunar(year, 5, 5), "端午节");
    out.insert(lunar(year, 8, 15), "中秋节");
    for d in 1..=3 {
        out.insert(ymd(year, 10, d), "国庆节");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lunar_holidays_of_known_years() {
        // 2027: 除夕 02-05, 清明 04-05, 端午 06-09, 中秋 09-15.
        let y = days(2027);
        for (d, h) in [
            ((2, 5), "春节"),
            ((2, 8), "春节"),
            ((4, 5), "清明节"),
            ((6, 9), "端午节"),
            ((9, 15), "中秋节"),
        ] {
            assert_eq!(y.get(&ymd(2027, d.0, d.1)), Some(&h), "{d:?}");
        }
        assert_eq!(y.get(&ymd(2027, 2, 9)), None, "初四 is no statutory day");
        assert_eq!(y.len(), 13);
        // 2028: 除夕 01-25, 清明 04-04, 端午 05-28, 中秋 10-03 (within 国庆).
        let y = days(2028);
        assert_eq!(y.get(&ymd(2028, 1, 25)), Some(&"春节"));
        assert_eq!(y.get(&ymd(2028, 4, 4)), Some(&"清明节"));
        assert_eq!(y.get(&ymd(2028, 5, 28)), Some(&"端午节"));
        assert_eq!(y.len(), 12, "中秋 falls on 10-03, a day of 国庆 too");
        assert!(days(2024).is_empty() && days(2101).is_empty());
    }
}
