//! `duban deadline` and `duban calendar show|load`.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveTime};
use clap::Subcommand;
use duban_engine::calendar::{files, Bound, Calendar, Period, PeriodSpec, Start, LEGAL_TZ};
use serde_json::json;

use crate::exit;

#[derive(Subcommand)]
pub enum CalendarCommand {
    /// The rest days and make-up working days of a year, by holiday.
    Show {
        /// The year, e.g. 2026.
        year: i32,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Validate a year's schedule and install it (nothing changes if it is invalid).
    Load {
        /// A year file (see core/calendars/2026.yaml for the format).
        file: PathBuf,
    },
}

pub struct DeadlineArgs {
    pub start: String,
    pub period: String,
    pub include_start_day: bool,
    pub cutoff: Option<String>,
    pub at_least: bool,
    pub no_extension: bool,
    pub json: bool,
    pub calendar_dir: PathBuf,
}

fn load_calendar(dir: &std::path::Path) -> Result<Calendar, u8> {
    files::load(dir).map_err(|e| {
        errln!("duban: the calendar cannot be loaded: {e}");
        errln!("  fix or remove the file; periods are never counted on a partial calendar");
        exit::INVALID
    })
}

const START_FORMS: &str =
    "a date like 2025-09-26, or an RFC 3339 instant like 2025-09-26T15:00:00+08:00";

fn parse_start(s: &str) -> Option<Start> {
    if !duban_engine::runtime::values::four_digit_year(s.trim()) {
        return None;
    }
    if let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        return Some(Start::Date(d));
    }
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| Start::Instant(t.with_timezone(&LEGAL_TZ)))
}

pub fn deadline(a: &DeadlineArgs) -> u8 {
    let Some(start) = parse_start(&a.start) else {
        errln!("duban: bad START `{}`: expected {START_FORMS}", a.start);
        return exit::USAGE;
    };
    let period: Period = match a.period.parse() {
        Ok(p) => p,
        Err(e) => {
            errln!("duban: bad PERIOD: {e}");
            return exit::USAGE;
        }
    };
    let cutoff = match &a.cutoff {
        None => None,
        Some(c) => match NaiveTime::parse_from_str(c, "%H:%M") {
            Ok(t) => Some(t),
            Err(_) => {
                errln!("duban: bad --cutoff `{c}`: expected HH:MM, e.g. 17:30");
                return exit::USAGE;
            }
        },
    };
    let cal = match load_calendar(&a.calendar_dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let spec = PeriodSpec {
        period,
        include_start_day: a.include_start_day,
        cutoff,
        bound: if a.at_least {
            Bound::AtLeast
        } else {
            Bound::Within
        },
        extend: !a.no_extension,
    };
    let (d, days) = cal.count_traced(start, &spec);
    if a.json {
        let v = json!({
            "start": a.start,
            "period": a.period.trim(),
            "last_day": d.last_day.to_string(),
            "deadline": d.deadline.to_rfc3339(),
            "bound": d.bound,
            "extend": spec.extend,
            "provisional": d.provisional,
            "provisional_years": d.provisional_years,
            "explanation": d.explanation,
            "days": days,
        });
        outln!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
    } else {
        outln!("{}  {}", d.last_day, d.explanation);
        let what = match d.bound {
            Bound::Within => "cut-off (late from this instant)",
            Bound::AtLeast => "minimum ends (what follows may happen from this instant)",
        };
        outln!("{what}: {}", d.deadline.to_rfc3339());
    }
    exit::OK
}

pub fn run(cmd: CalendarCommand, db: &crate::instances::DbArgs) -> u8 {
    let calendar_dir = db.calendar_dir.as_path();
    match cmd {
        CalendarCommand::Show { year, json } => show(year, json, calendar_dir),
        CalendarCommand::Load { file } => match files::install(calendar_dir, &file) {
            Ok(i) => {
                let verb = if i.replaced { "replaced" } else { "installed" };
                outln!(
                    "{verb} the {} schedule ({} holidays) as {}",
                    i.schedule.year,
                    i.schedule.holidays.len(),
                    i.path.display()
                );
                recompute(db)
            }
            Err(e) => {
                errln!("duban: schedule refused, nothing changed: {e}");
                match e {
                    files::CalendarFileError::Io { .. } => exit::USAGE,
                    _ => exit::INVALID,
                }
            }
        },
    }
}

fn show(year: i32, json: bool, dir: &std::path::Path) -> u8 {
    let cal = match load_calendar(dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(y) = cal.year(year) else {
        // Known before the schedule: the statutory holidays themselves.
        let statutory = duban_engine::calendar::statutory::days(year);
        if json {
            let days: Vec<_> = statutory
                .iter()
                .map(|(d, h)| json!({ "date": d.to_string(), "holiday": h }))
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({ "year": year, "provisional": true, "holidays": [], "statutory_days": days })
                )
                .expect("serialises")
            );
        } else {
            let known: Vec<String> = cal.years().map(|y| y.to_string()).collect();
            if statutory.is_empty() {
                outln!("no official schedule for {year}: periods in {year} are counted on weekends only and marked provisional.");
            } else {
                outln!(
                    "no official schedule for {year}: periods in {year} are counted on weekends and the statutory holidays \
                     (全国年节及纪念日放假办法), without the 调休, and marked provisional:"
                );
                let mut by: Vec<(&str, Vec<chrono::NaiveDate>)> = Vec::new();
                for (d, h) in statutory.iter() {
                    match by.iter_mut().find(|(x, _)| x == h) {
                        Some((_, v)) => v.push(*d),
                        None => by.push((h, vec![*d])),
                    }
                }
                for (h, days) in by {
                    let days: Vec<String> = days
                        .iter()
                        .map(|d| d.format("%m-%d (%a)").to_string())
                        .collect();
                    outln!("  {h}: {}", days.join(", "));
                }
            }
            outln!(
                "known years: {}. Install one with `duban calendar load FILE`.",
                known.join(", ")
            );
        }
        return exit::OK;
    };
    if json {
        let v = json!({
            "year": y.year,
            "source": y.source,
            "provisional": false,
            "holidays": y.holidays,
        });
        outln!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
        return exit::OK;
    }
    outln!(
        "{} — {}",
        y.year,
        y.source.as_deref().unwrap_or("official schedule")
    );
    for h in &y.holidays {
        outln!("{}", h.name);
        outln!("  rest days:           {}", ranges(&h.rest));
        if !h.workdays.is_empty() {
            let days: Vec<String> = h
                .workdays
                .iter()
                .map(|d| format!("{} ({})", d.format("%m-%d"), d.format("%a")))
                .collect();
            outln!("  make-up working days: {}", days.join(", "));
        }
    }
    exit::OK
}

/// `01-28 … 02-04 (8 days)` for consecutive runs.
fn ranges(days: &[NaiveDate]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i;
        while j + 1 < days.len() && days[j + 1] == days[j].succ_opt().expect("in range") {
            j += 1;
        }
        if i == j {
            parts.push(days[i].format("%m-%d").to_string());
        } else {
            parts.push(format!(
                "{} … {} ({} days)",
                days[i].format("%m-%d"),
                days[j].format("%m-%d"),
                j - i + 1
            ));
        }
        i = j + 1;
    }
    parts.join(", ")
}

/// After a year is installed: recount the provisional deadlines of the
/// instances in the store (if there is one yet).
fn recompute(db: &crate::instances::DbArgs) -> u8 {
    use duban_engine::store::sql::{parse_url, Backend};
    let (url, backend) = parse_url(&db.db);
    if backend == Backend::Sqlite {
        let path = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        if !std::path::Path::new(path.split('?').next().unwrap_or(path)).exists() {
            return exit::OK;
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let result = async {
            let calendar = files::load(&db.calendar_dir).map_err(|e| e.to_string())?;
            let store = duban_engine::store::SqlStore::open(&db.db)
                .await
                .map_err(|e| e.to_string())?;
            let engine = duban_engine::service::Engine::new(store, calendar)
                .await
                .map_err(|e| e.to_string())?;
            engine
                .recompute_provisional(crate::instances::now())
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(ids) if ids.is_empty() => {
                outln!("no provisional deadline changed");
                exit::OK
            }
            Ok(ids) => {
                outln!(
                    "recomputed provisional deadlines of {} instance(s): {}",
                    ids.len(),
                    ids.join(", ")
                );
                exit::OK
            }
            Err(e) => {
                errln!("duban: the schedule is installed, but recomputing deadlines failed: {e}");
                exit::INVALID
            }
        }
    })
}
