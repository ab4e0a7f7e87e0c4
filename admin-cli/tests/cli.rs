//! The `duban` binary as administrators use it: exit codes, plain and JSON
//! output, and the acceptance examples of the calendar.

mod common;

use common::{duban_at, postgres_db, provisional_letter, root};

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Runs `duban ARGS` from the repository root, with an empty calendar folder
/// unless the test gives one.
fn duban(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_duban"))
        .args(args)
        .current_dir(root())
        .env(
            "DUBAN_CALENDAR_DIR",
            root().join("target/no-installed-calendars"),
        )
        .output()
        .expect("duban runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn validate_the_library_exits_0() {
    let o = duban(&["validate", "processes/"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("valid"), "{}", stdout(&o));
}

#[test]
fn validate_broken_files_exits_1_with_every_diagnostic() {
    let o = duban(&["validate", "tests/broken/", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    let arr = v.as_array().expect("a JSON array");
    assert!(arr.len() >= 33, "{}", arr.len());
    for d in arr {
        for key in ["file", "line", "column", "path", "message", "hint"] {
            assert!(d.get(key).is_some(), "{key} missing in {d}");
        }
    }
    let first = arr
        .iter()
        .find(|d| {
            d["file"]
                .as_str()
                .unwrap()
                .ends_with("e007_unknown_role.yaml")
        })
        .unwrap();
    assert_eq!(first["line"], 18);
    assert_eq!(first["column"], 23);
    assert_eq!(first["path"], "steps.review.assignee.role");
    assert_eq!(first["message"], "unknown role `ofice`");
    assert_eq!(first["hint"], "did you mean `office`?");
}

#[test]
fn validate_plain_output_shows_the_source_line() {
    let o = duban(&["validate", "tests/three_errors.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("tests/three_errors.yaml:17:15: error[E014]: bad period `5 workdays`"),
        "{out}"
    );
    assert!(out.contains("17 |       period: 5 workdays"), "{out}");
    assert!(
        out.contains("1 of 1 definition(s) invalid, 3 problem(s)"),
        "{out}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(duban(&["validate"]).status.code(), Some(2));
    let o = duban(&["validate", "no/such/dir"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no such file or folder"));
    assert_eq!(duban(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn graph_prints_mermaid() {
    let o = duban(&["graph", "processes/dispute.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("flowchart TD"));
    let o = duban(&["graph", "tests/three_errors.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is invalid"));
}

#[test]
fn deadline_acceptance_examples() {
    let o = duban(&["deadline", "2025-09-26", "5 working days", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["last_day"], "2025-10-10");
    assert_eq!(v["deadline"], "2025-10-11T00:00:00+08:00");
    assert_eq!(v["provisional"], false);
    assert!(v["explanation"]
        .as_str()
        .unwrap()
        .contains("9月28日（国庆节、中秋节调休上班）"));
    let days = v["days"].as_array().unwrap();
    assert_eq!(days[0]["date"], "2025-09-27");
    assert_eq!(days[0]["rule"], "weekend");
    assert_eq!(days[1]["rule"], "make_up_working_day");
    assert_eq!(days.iter().filter(|d| d["counted"] == true).count(), 5);

    assert_eq!(
        json(&duban(&["deadline", "2025-01-31", "1个月", "--json"]))["last_day"],
        "2025-02-28"
    );

    let o = duban(&["deadline", "2025-12-24", "10日"]);
    assert!(stdout(&o).starts_with("2026-01-04  "), "{}", stdout(&o));

    let v = json(&duban(&["deadline", "2026-12-20", "30日", "--json"]));
    assert_eq!(v["last_day"], "2027-01-19");
    assert_eq!(v["provisional"], true);
}

#[test]
fn deadline_options() {
    let v = json(&duban(&[
        "deadline",
        "2025-09-26",
        "5个工作日",
        "--cutoff",
        "17:30",
        "--json",
    ]));
    assert_eq!(v["deadline"], "2025-10-10T17:30:00+08:00");
    let v = json(&duban(&[
        "deadline",
        "2025-09-26",
        "5个工作日",
        "--include-start-day",
        "--json",
    ]));
    assert_eq!(v["last_day"], "2025-10-09");
    let v = json(&duban(&[
        "deadline",
        "2025-09-30T15:20:00+08:00",
        "48小时",
        "--json",
    ]));
    assert_eq!(v["deadline"], "2025-10-02T15:20:00+08:00");
    let v = json(&duban(&[
        "deadline",
        "2025-09-26",
        "不少于5个工作日".trim_start_matches("不少于"),
        "--at-least",
        "--json",
    ]));
    assert_eq!(v["bound"], "at_least");
}

#[test]
fn bad_start_or_period_exits_2_listing_accepted_forms() {
    let o = duban(&["deadline", "26/09/2025", "5日"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("a date like 2025-09-26"),
        "{}",
        stderr(&o)
    );
    let o = duban(&["deadline", "2025-09-26", "5 weeks"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("accepted forms"), "{}", stderr(&o));
    assert!(stderr(&o).contains("个工作日"), "{}", stderr(&o));
}

#[test]
fn calendar_show_lists_holidays() {
    let v = json(&duban(&["calendar", "show", "2026", "--json"]));
    let names: Vec<&str> = v["holidays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "元旦",
            "春节",
            "清明节",
            "劳动节",
            "端午节",
            "中秋节",
            "国庆节"
        ]
    );
    assert_eq!(
        v["holidays"][1]["workdays"],
        serde_json::json!(["2026-02-14", "2026-02-28"])
    );
    let o = duban(&["calendar", "show", "2027"]);
    assert!(stdout(&o).contains("provisional"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("春节: 02-05 (Fri), 02-06 (Sat), 02-07 (Sun), 02-08 (Mon)"),
        "{}",
        stdout(&o)
    );
}

/// Issue 21, the acceptance lines: a provisional year counts the statutory
/// holidays (and says so in Chinese); a term with the extension off ends on
/// its anniversary.
#[test]
fn provisional_years_skip_the_statutory_holidays_and_terms_do_not_move() {
    let v = json(&duban(&["deadline", "2027-09-26", "5个工作日", "--json"]));
    assert_eq!(v["last_day"], "2027-10-04", "{v}");
    assert_eq!(v["provisional"], true);
    let e = v["explanation"].as_str().unwrap();
    assert!(e.contains("10月1日至3日为国庆节法定节假日，不计入"), "{e}");
    assert!(e.contains("暂按法定假日推算"), "{e}");
    assert!(v["days"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["date"] == "2027-10-01"
            && d["rule"] == "statutory_holiday"
            && d["holiday"] == "国庆节"));
    for (start, period, last) in [
        ("2026-12-31", "1日", "2027-01-04"),
        ("2027-04-30", "1日", "2027-05-03"),
        ("2027-02-04", "1日", "2027-02-09"),
        ("2028-04-03", "1日", "2028-04-05"),
        ("2029-02-11", "1日", "2029-02-16"),
        ("2030-06-04", "1日", "2030-06-06"),
    ] {
        let v = json(&duban(&["deadline", start, period, "--json"]));
        assert_eq!(v["last_day"], last, "{start} + {period}: {v}");
        assert_eq!(v["provisional"], true);
    }
    let v = json(&duban(&["deadline", "2026-07-07", "3年", "--json"]));
    assert_eq!(v["last_day"], "2029-07-09");
    let o = duban(&["deadline", "2026-07-07", "3年", "--no-extension"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("2029-07-07  "), "{out}");
    assert!(out.contains("此期间不因休息日顺延"), "{out}");
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_duban"))
        .args(args)
        .current_dir(root())
        .env("DUBAN_CALENDAR_DIR", dir)
        .output()
        .unwrap()
}

const Y2027: &str = "year: 2027\nsource: test schedule\nholidays:\n  - name: 元旦\n    rest: [2027-01-01..2027-01-03]\n  - name: 春节\n    rest: [2027-02-05..2027-02-12]\n    workdays: [2027-02-14]\n";

#[test]
fn calendar_load_installs_a_year_and_ends_provisional_counting() {
    let tmp = tempfile::tempdir().unwrap();
    let cal = tmp.path().join("calendars");
    let file = tmp.path().join("y2027.yaml");
    std::fs::write(&file, Y2027).unwrap();
    let before = json(&run_in(&cal, &["deadline", "2027-01-26", "10日", "--json"]));
    assert_eq!(before["provisional"], true);
    // Nominal 02-05 is 除夕, a statutory day of 春节 known before the
    // schedule; 02-06..08 (初一至初三) too: 02-09.
    assert_eq!(before["last_day"], "2027-02-09");
    let o = run_in(&cal, &["calendar", "load", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("installed the 2027 schedule (2 holidays)"));
    let after = json(&run_in(&cal, &["deadline", "2027-01-31", "10日", "--json"]));
    assert_eq!(after["provisional"], false);
    // Nominal 2027-02-10 is in the declared 春节 break; 02-13 is a Saturday
    // and 02-14 the declared make-up Sunday, a working day.
    assert_eq!(after["last_day"], "2027-02-14");
}

#[test]
fn calendar_load_refuses_bad_schedules_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cal = tmp.path().join("calendars");
    let good = tmp.path().join("good.yaml");
    std::fs::write(&good, Y2027).unwrap();
    assert_eq!(
        run_in(&cal, &["calendar", "load", good.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let installed = std::fs::read_to_string(cal.join("2027.yaml")).unwrap();
    for (bad, why) in [
        (
            Y2027.replace("workdays: [2027-02-14]", "workdays: [2027-02-06]"),
            "listed as a rest day of 春节 and again as a make-up working day",
        ),
        (
            Y2027.replace("[2027-01-01..", "[2026-12-31, 2027-01-01.."),
            "2026-12-31 is outside the year 2027",
        ),
        (format!("{Y2027}note: x\n"), "unknown field `note`"),
    ] {
        let f = tmp.path().join("bad.yaml");
        std::fs::write(&f, bad).unwrap();
        let o = run_in(&cal, &["calendar", "load", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains(why), "{why}: {}", stderr(&o));
        assert!(stderr(&o).contains("nothing changed"));
        assert_eq!(
            std::fs::read_to_string(cal.join("2027.yaml")).unwrap(),
            installed
        );
        let leftovers: Vec<_> = std::fs::read_dir(&cal)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}

/// Runs `duban` against the store `db` at the instant `now`.
fn on(db: &str, now: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_duban"))
        .args(args)
        .current_dir(root())
        .env("DUBAN_DB", db)
        .env("DUBAN_NOW", now)
        .env(
            "DUBAN_CALENDAR_DIR",
            root().join("target/no-installed-calendars"),
        )
        .output()
        .unwrap()
}

#[track_caller]
fn ok(o: Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn supervision_letter_through_the_binary(db: &str) {
    assert!(ok(on(
        db,
        "2025-09-26T09:00:00+08:00",
        &["deploy", "processes/"]
    ))
    .contains("deployed supervision_letter v6"));
    assert!(ok(on(
        db,
        "2025-09-26T09:00:00+08:00",
        &["deploy", "processes/"]
    ))
    .contains("unchanged supervision_letter v6"));
    ok(on(
        db,
        "2025-09-26T09:00:00+08:00",
        &["directory", "import", "tests/data/directory.yaml"],
    ));
    // A refused start names the variable and writes nothing.
    let o = on(
        db,
        "2025-09-26T10:00:00+08:00",
        &[
            "start",
            "supervision_letter",
            "--var",
            "agency=market_bureau",
            "--var",
            "case_no=1",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("missing required variable `problem`"),
        "{}",
        stderr(&o)
    );
    let o = on(
        db,
        "2025-09-26T10:00:00+08:00",
        &[
            "start",
            "supervision_letter",
            "--var",
            "agency=market_bureau",
            "--var",
            "case_no=1",
            "--var",
            "problem=x",
            "--var",
            "reply_period=5 weeks",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("variable `reply_period`"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        ok(on(
            db,
            "2025-09-26T10:00:00+08:00",
            &["instances", "--json"]
        ))
        .trim(),
        "[]"
    );
    // Issue 16: an empty listing says so.
    assert_eq!(
        ok(on(db, "2025-09-26T10:00:00+08:00", &["tasks"])).trim(),
        "no tasks"
    );
    assert_eq!(
        ok(on(db, "2025-09-26T10:00:00+08:00", &["instances"])).trim(),
        "no instances"
    );

    let out = ok(on(
        db,
        "2025-09-26T10:00:00+08:00",
        &[
            "start",
            "supervision_letter",
            "--var",
            "agency=market_bureau",
            "--var",
            "case_no=许司督〔2025〕1号",
            "--var",
            "problem=未落实公示制度",
            "--as",
            "li",
        ],
    ));
    assert!(out.contains("started 1 (supervision_letter v6)"), "{out}");
    assert!(
        out.contains("1.1 draft_letter → li, due 2025-10-10"),
        "{out}"
    );
    let tasks = json(&on(
        db,
        "2025-09-26T10:00:00+08:00",
        &["tasks", "--role", "supervision_office", "--json"],
    ));
    assert_eq!(tasks[0]["id"], "1.1");
    // Issue 16: what staff need to read a task — the process and step by
    // their names, the case, who (by name), by when in Beijing time, and
    // the outcomes with the fields each requires.
    assert_eq!(tasks[0]["process_name"], "行政执法监督督办", "{tasks}");
    assert_eq!(tasks[0]["step_name"], "起草并制发督办文书");
    assert_eq!(tasks[0]["case"]["value"], "许司督〔2025〕1号");
    assert_eq!(
        tasks[0]["assignees"][0],
        serde_json::json!({ "id": "li", "name": "李明" })
    );
    assert!(
        tasks[0]["due"].as_str().unwrap().ends_with("+08:00"),
        "{tasks}"
    );
    assert!(
        tasks[0]["opened_at"].as_str().unwrap().ends_with("+08:00"),
        "{tasks}"
    );
    assert_eq!(tasks[0]["outcomes"][0]["id"], "issue");
    assert_eq!(
        tasks[0]["outcomes"][0]["fields"],
        serde_json::json!(["letter_kind", "reply_period"])
    );
    let text = ok(on(db, "2025-09-26T10:00:00+08:00", &["tasks"]));
    for part in [
        "1.1  行政执法监督督办 · 起草并制发督办文书（draft_letter，task）",
        "督办案号：许司督〔2025〕1号",
        "办理：李明",
        "期限：2025-10-10",
        "→ issue（制发督办文书）  必填：letter_kind, reply_period",
        "→ no_problem（经核查不存在问题）",
    ] {
        assert!(text.contains(part), "{part}:\n{text}");
    }
    ok(on(
        db,
        "2025-09-29T09:00:00+08:00",
        &[
            "complete",
            "1.1",
            "--outcome",
            "issue",
            "--var",
            "letter_kind=督办函",
            "--var",
            "reply_period=30日",
            "--as",
            "li",
        ],
    ));
    let o = on(
        db,
        "2025-09-29T09:05:00+08:00",
        &["complete", "1.1", "--outcome", "issue", "--as", "li"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("task `1.1` is already closed"),
        "{}",
        stderr(&o)
    );
    assert!(ok(on(
        db,
        "2025-09-30T15:00:00+08:00",
        &["receive", "1.2", "--as", "market_bureau"]
    ))
    .contains("deadline 2025-10-30"));
    // Issue 16: `show` lists what the open notice may be answered with and
    // its required fields, and the pending timers in the order they fall due.
    let show = ok(on(db, "2025-09-30T15:00:00+08:00", &["show", "1"]));
    assert!(
        show.contains("→ handled（已依法处理（改正），报告处理情况）  required: handling_report"),
        "{show}"
    );
    let timers: Vec<&str> = show
        .split("pending timers:")
        .nth(1)
        .unwrap_or_else(|| panic!("{show}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().get(..16).unwrap_or(""))
        .collect();
    assert!(timers.len() >= 2, "{show}");
    assert!(timers.windows(2).all(|w| w[0] <= w[1]), "{show}");
    let overdue = json(&on(
        db,
        "2025-10-31T09:00:00+08:00",
        &["tasks", "--overdue", "--json"],
    ));
    assert_eq!(overdue.as_array().unwrap().len(), 1, "{overdue}");
    ok(on(
        db,
        "2025-10-20T10:00:00+08:00",
        &[
            "complete",
            "1.2",
            "--outcome",
            "handled",
            "--var",
            "handling_report=已整改",
            "--as",
            "market_bureau",
        ],
    ));
    ok(on(
        db,
        "2025-10-21T10:00:00+08:00",
        &[
            "complete",
            "1.3",
            "--outcome",
            "accepted",
            "--var",
            "review_opinion=整改到位",
            "--as",
            "li",
        ],
    ));
    let show = ok(on(db, "2025-10-21T10:00:00+08:00", &["show", "1"]));
    assert!(
        show.contains("supervision_letter（行政执法监督督办） v6  profile XC  completed"),
        "{show}"
    );
    assert!(
        show.contains("deadline 2025-10-30: 自2025年9月30日起算30日（开始之日不计入），届满日为10月30日，是工作日"),
        "{show}"
    );
    assert!(show.contains("result: corrected"), "{show}");
    let outbox = json(&on(
        db,
        "2025-10-21T10:00:00+08:00",
        &["outbox", "--status", "pending", "--json"],
    ));
    assert!(
        outbox
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "email"
                && r["payload"].as_str().unwrap().contains("letter_notice")),
        "{outbox}"
    );
    let o = on(db, "2025-10-21T10:00:00+08:00", &["outbox", "retry", "1"]);
    assert_eq!(o.status.code(), Some(1), "row 1 is not dead");
    assert!(stderr(&o).contains("no dead outbox row 1"));
    let li = ok(on(
        db,
        "2025-10-21T10:00:00+08:00",
        &["history", "--person", "li"],
    ));
    assert!(li.contains("task_completed"), "{li}");
    let o = on(
        db,
        "2025-10-22T10:00:00+08:00",
        &["cancel", "1", "--reason", "x"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("has ended"));
}

fn dispute_through_the_binary(db: &str) {
    ok(on(
        db,
        "2026-03-01T09:00:00+08:00",
        &["deploy", "processes/"],
    ));
    ok(on(
        db,
        "2026-03-01T09:00:00+08:00",
        &["directory", "import", "tests/data/directory.yaml"],
    ));
    let out = ok(on(
        db,
        "2026-03-02T09:00:00+08:00",
        &[
            "start",
            "dispute",
            "--var",
            "applicant=qiaoxi_urban",
            "--var",
            "respondent=qiaoxi_env",
            "--var",
            "dispute_summary=占道经营的管辖",
        ],
    ));
    assert!(out.contains("1.1 negotiate → qiaoxi_urban"), "{out}");
    ok(on(
        db,
        "2026-03-03T09:00:00+08:00",
        &[
            "complete",
            "1.1",
            "--outcome",
            "failed",
            "--var",
            "negotiation_record=不成",
            "--var",
            "application_letter=公函",
            "--var",
            "dispute_focus=焦点",
            "--var",
            "positions=观点",
            "--as",
            "qiaoxi_urban",
        ],
    ));
    // XT-7: both organs in 桥西区, so the county department coordinates.
    let tasks = json(&on(db, "2026-03-03T09:00:00+08:00", &["tasks", "--json"]));
    assert_eq!(tasks[0]["step"], "review_application");
    assert_eq!(tasks[0]["assignees"][0]["id"], "qiaoxi_coord");
    ok(on(
        db,
        "2026-03-04T09:00:00+08:00",
        &[
            "complete",
            "1.2",
            "--outcome",
            "incomplete",
            "--var",
            "missing_items=争议焦点的情况说明,争议双方观点及法律依据",
            "--as",
            "qiaoxi_coord",
        ],
    ));
    ok(on(
        db,
        "2026-03-05T09:00:00+08:00",
        &[
            "complete",
            "1.3",
            "--outcome",
            "resubmitted",
            "--var",
            "application_letter=公函",
            "--var",
            "dispute_focus=补正",
            "--var",
            "positions=补正",
            "--as",
            "qiaoxi_urban",
        ],
    ));
    ok(on(
        db,
        "2026-03-06T09:00:00+08:00",
        &[
            "complete",
            "1.4",
            "--outcome",
            "complete",
            "--as",
            "qiaoxi_coord",
        ],
    ));
    ok(on(
        db,
        "2026-03-10T09:00:00+08:00",
        &[
            "complete",
            "1.5",
            "--outcome",
            "agreed",
            "--var",
            "coordination_opinion=由城管部门负责",
            "--as",
            "qiaoxi_coord",
        ],
    ));
    ok(on(
        db,
        "2026-03-11T09:00:00+08:00",
        &[
            "complete",
            "1.6",
            "--outcome",
            "executed",
            "--var",
            "applicant_execution=已执行",
            "--as",
            "qiaoxi_urban",
        ],
    ));
    ok(on(
        db,
        "2026-03-12T09:00:00+08:00",
        &[
            "complete",
            "1.7",
            "--outcome",
            "executed",
            "--var",
            "respondent_execution=已执行",
            "--as",
            "qiaoxi_env",
        ],
    ));
    ok(on(
        db,
        "2026-03-13T09:00:00+08:00",
        &[
            "complete",
            "1.8",
            "--outcome",
            "executed",
            "--as",
            "qiaoxi_coord",
        ],
    ));
    let show = ok(on(db, "2026-03-13T09:00:00+08:00", &["show", "1"]));
    assert!(show.contains("result: resolved"), "{show}");
    assert!(show.contains("(XT-7)"), "{show}");
}

#[test]
fn supervision_letter_via_the_binary_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    supervision_letter_through_the_binary(tmp.path().join("duban.db").to_str().unwrap());
}

#[test]
fn supervision_letter_via_the_binary_on_postgres() {
    supervision_letter_through_the_binary(&postgres_db("letter"));
}

#[test]
fn dispute_via_the_binary_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    dispute_through_the_binary(tmp.path().join("duban.db").to_str().unwrap());
}

#[test]
fn dispute_via_the_binary_on_postgres() {
    dispute_through_the_binary(&postgres_db("dispute"));
}

#[test]
fn directory_import_reports_bad_rows_and_imports_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db");
    let db = db.to_str().unwrap();
    ok(on(
        db,
        "2026-03-01T09:00:00+08:00",
        &["directory", "import", "tests/data/directory.yaml"],
    ));
    let bad = tmp.path().join("bad.csv");
    std::fs::write(&bad, "kind,id,name,roles,organisation,level,county,email,mobile\nperson,a,甲,office,,市级,市本级,a@example.org,\nperson,b,乙,office,,省级,,b@example,\n").unwrap();
    let o = on(
        db,
        "2026-03-01T09:00:00+08:00",
        &["directory", "import", bad.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("bad.csv:line 3: `b`: `b@example` is not an email address"),
        "{err}"
    );
    assert!(
        err.contains("level `省级` must be one of 市级, 县级, 乡级"),
        "{err}"
    );
    assert!(err.contains("nothing was imported"), "{err}");
    // The earlier directory is intact: li still takes the letter's first task.
    ok(on(
        db,
        "2026-03-01T09:00:00+08:00",
        &["deploy", "processes/"],
    ));
    let out = ok(on(
        db,
        "2026-03-02T09:00:00+08:00",
        &[
            "start",
            "supervision_letter",
            "--var",
            "agency=market_bureau",
            "--var",
            "case_no=1",
            "--var",
            "problem=x",
        ],
    ));
    assert!(out.contains("→ li"), "{out}");
}

#[test]
fn loading_a_year_recomputes_provisional_deadlines() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db");
    let db = db.to_str().unwrap();
    let cal = tmp.path().join("calendars");
    let run = |now: &str, args: &[&str]| duban_at(db, &cal, now, args);
    // 30 days from 2026-12-02: nominal Friday 2027-01-01, 元旦, a statutory
    // holiday known before the schedule; then a weekend: 01-04, provisional.
    let out = provisional_letter(db, &cal);
    assert!(
        out.contains("deadline 2027-01-04") && out.contains("暂按法定假日推算"),
        "{out}"
    );
    assert!(out.contains("该日为元旦（法定节假日）"), "{out}");
    let year = tmp.path().join("2027.yaml");
    std::fs::write(&year, Y2027).unwrap();
    let out = run(
        "2026-12-10T09:00:00+08:00",
        &["calendar", "load", year.to_str().unwrap()],
    );
    assert!(
        out.contains("recomputed provisional deadlines of 1 instance(s): 1"),
        "{out}"
    );
    let show = run("2026-12-10T09:00:00+08:00", &["show", "1"]);
    assert!(
        show.contains(
            "办理期限按国务院公布的节假日安排重新计算：最后一日仍为2027年1月4日，不再暂定"
        ),
        "{show}"
    );
    assert!(
        show.contains("1.2 await_report（被监督机关在期限内书面报告处理情况） (notice) → market_bureau  due 2027-01-04"),
        "{show}"
    );
    assert!(
        !show.contains("(provisional)"),
        "the new timers are not provisional: {show}"
    );
    // Loading it again changes nothing more.
    let out = run(
        "2026-12-10T09:05:00+08:00",
        &["calendar", "load", year.to_str().unwrap()],
    );
    assert!(out.contains("no provisional deadline changed"), "{out}");
}

#[test]
fn simulate_exit_codes() {
    let good = duban(&[
        "simulate",
        "--scenario",
        "processes/scenarios/supervision_letter_overdue.yaml",
    ]);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}{}",
        stdout(&good),
        stderr(&good)
    );
    assert!(
        stdout(&good).contains("20 passed, 0 failed"),
        "{}",
        stdout(&good)
    );
    let tmp = tempfile::tempdir().unwrap();
    let failing = tmp.path().join("failing.yaml");
    let dir = root().join("processes");
    std::fs::write(
        &failing,
        format!(
            "definition: {}/supervision_letter.yaml\ndirectory: {}/scenarios/directory.yaml\nsteps:\n  - at: 2025-09-26T10:00:00+08:00\n    start: {{ as: li, variables: {{ agency: market_bureau, case_no: '1', problem: x }} }}\n  - expect: {{ deadline: {{ step: draft_letter, last_day: 2025-10-09 }}, task_open: review_report }}\n",
            dir.display(),
            dir.display()
        ),
    )
    .unwrap();
    let o = duban(&["simulate", "--scenario", failing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("0 passed, 2 failed"), "{out}");
    assert!(out.contains("failing.yaml:6: expected deadline of `draft_letter` ends on 2025-10-09, found Some(\"2025-10-10\")"), "{out}");
    assert!(
        out.contains("failing.yaml:6: expected task `review_report` open"),
        "{out}"
    );
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "definition: x.yaml\nsteps:\n  - at: 2025-09-26T10:00:00+08:00\n    strat: {}\n",
    )
    .unwrap();
    let o = duban(&["simulate", "--scenario", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.yaml:4: "), "{}", stderr(&o));
    assert!(stderr(&o).contains("strat"), "{}", stderr(&o));
}

#[test]
fn config_check_names_every_wrong_key_and_serve_refuses_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("duban.toml");
    std::fs::write(
        &bad,
        "[email]\nhost = \"smtp.example.gov.cn\"\ntls = \"ssl\"\nfrom = \"督办系统 <duban@sfj.example.gov.cn>\"\n\n\
         [sms]\nprovider = \"aliyun\"\n[sms.aliyun]\naccess_key_id = \"LTAI\"\nsign_name = \"许昌市司法局\"\n\
         access_key_secret = \"oops\"\ntemplates = { task_opened = \"SMS_1\", reminder = \"SMS_2\" }\n",
    )
    .unwrap();
    let o = duban(&["config", "check", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    for line in [
        "error: email.tls: `ssl` must be starttls, implicit or none",
        "error: sms.aliyun.access_key_secret: secrets are not read from the file; remove it and set DUBAN_ALIYUN_ACCESS_KEY_SECRET",
        "error: sms.aliyun.templates.escalation: missing: ",
        "error: sms.aliyun: DUBAN_ALIYUN_ACCESS_KEY_SECRET is not set",
    ] {
        assert!(out.contains(line), "{line}\nnot in\n{out}");
    }
    // serve reads the same file and will not start on it.
    let db = tmp.path().join("d.db");
    let o = duban(&[
        "--db",
        db.to_str().unwrap(),
        "serve",
        "--config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("email.tls"), "{}", stderr(&o));

    // Fixed, with the secret in the environment: accepted.
    let good = tmp.path().join("good.toml");
    std::fs::write(
        &good,
        "[email]\nhost = \"smtp.example.gov.cn\"\ntls = \"implicit\"\nfrom = \"督办系统 <duban@sfj.example.gov.cn>\"\n\n\
         [sms]\nprovider = \"aliyun\"\n[sms.aliyun]\naccess_key_id = \"LTAI\"\nsign_name = \"许昌市司法局\"\n\
         templates = { task_opened = \"SMS_1\", reminder = \"SMS_2\", escalation = \"SMS_3\", follow_up = \"SMS_4\", supervisor_correction_overdue = \"SMS_5\", supervisor_report_overdue = \"SMS_6\", supervisor_return_overdue = \"SMS_7\", supervisor_symposium_overdue = \"SMS_8\" }\n\n\
         [portal]\nbase_url = \"https://duban.example.gov.cn\"\nkey_id = \"2026a\"\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_duban"))
        .args([
            "config",
            "check",
            "--config",
            good.to_str().unwrap(),
            "--json",
        ])
        .current_dir(root())
        .env("DUBAN_ALIYUN_ACCESS_KEY_SECRET", "s")
        .env("DUBAN_PORTAL_KEY", "k".repeat(40))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(json(&o), serde_json::json!([]));
}

#[test]
fn the_documented_example_configuration_passes_its_check() {
    let o = Command::new(env!("CARGO_BIN_EXE_duban"))
        .args(["config", "check", "--config", "docs/duban.example.toml"])
        .current_dir(root())
        .env("DUBAN_SMTP_PASSWORD", "x")
        .env("DUBAN_ALIYUN_ACCESS_KEY_SECRET", "y")
        .env("DUBAN_PORTAL_KEY", "k".repeat(40))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        !root().join("documents").exists(),
        "checking creates nothing"
    );
}

/// A store with the library deployed and the sample directory imported.
fn issue12_store(tmp: &Path) -> String {
    let db = tmp.join("duban.db").to_str().unwrap().to_string();
    let at = "2026-03-01T09:00:00+08:00";
    ok(on(&db, at, &["deploy", "processes/"]));
    ok(on(
        &db,
        at,
        &["directory", "import", "tests/data/directory.yaml"],
    ));
    db
}

/// Issue 12, finding 11: a header-only CSV (or an empty YAML file)
/// emptied the directory with exit 0. It is refused unless asked for.
#[test]
fn issue12_an_import_without_people_or_agencies_needs_allow_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let db = issue12_store(tmp.path());
    let at = "2026-03-01T09:00:00+08:00";
    let header = tmp.path().join("header.csv");
    std::fs::write(
        &header,
        "kind,id,name,roles,organisation,level,county,email,mobile\n",
    )
    .unwrap();
    let empty = tmp.path().join("empty.yaml");
    std::fs::write(&empty, "# nobody\n").unwrap();
    for f in [&header, &empty] {
        let o = on(&db, at, &["directory", "import", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("names no people and no agencies")
                && stderr(&o).contains("--allow-empty"),
            "{}",
            stderr(&o)
        );
    }
    // The directory is intact: li still takes the letter's first task.
    let out = ok(on(
        &db,
        "2026-03-02T09:00:00+08:00",
        &[
            "start",
            "supervision_letter",
            "--var",
            "agency=market_bureau",
            "--var",
            "case_no=1",
            "--var",
            "problem=x",
        ],
    ));
    assert!(out.contains("→ li"), "{out}");
    let out = ok(on(
        &db,
        at,
        &[
            "directory",
            "import",
            "--replace",
            "--allow-empty",
            header.to_str().unwrap(),
        ],
    ));
    assert!(out.contains("0 added, 0 changed, 10 removed"), "{out}");
}

/// Issue 12, finding 11: `--var agency=nope` (an id of no agency) and an
/// empty required `case_no=` started instances; `set-var` took them too.
#[test]
fn issue12_start_and_set_var_refuse_unknown_ids_and_empty_required_values() {
    let tmp = tempfile::tempdir().unwrap();
    let db = issue12_store(tmp.path());
    let at = "2026-03-02T09:00:00+08:00";
    let start = |agency: &str, case_no: &str| {
        on(
            &db,
            at,
            &[
                "start",
                "supervision_letter",
                "--var",
                &format!("agency={agency}"),
                "--var",
                &format!("case_no={case_no}"),
                "--var",
                "problem=x",
            ],
        )
    };
    for (o, why) in [
        (
            start("nope", "1"),
            "R003 variable `agency`: `nope` is no agency of the directory",
        ),
        (
            start("market_bureau", ""),
            "R003 variable `case_no`: is required, so it cannot be empty",
        ),
    ] {
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains(why), "{}", stderr(&o));
    }
    ok(start("market_bureau", "1"));
    for (var, why) in [
        ("agency=nope", "`nope` is no agency of the directory"),
        ("case_no=", "is required, so it cannot be empty"),
    ] {
        let o = on(&db, at, &["set-var", "1", "--var", var]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains(why), "{}", stderr(&o));
    }
    let list = json(&on(&db, at, &["instances", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "one instance: {list}");
}

/// Issue 12, finding 11: `--vars-file` had no size limit, and a
/// 100,000-deep JSON took 24 s to refuse (serde_yaml's scanner rechecks
/// every pending key at every token). Both are refused at once.
#[test]
fn issue12_a_vars_file_is_bounded_in_size_and_depth() {
    let tmp = tempfile::tempdir().unwrap();
    let db = issue12_store(tmp.path());
    let at = "2026-03-02T09:00:00+08:00";
    let deep = tmp.path().join("deep.json");
    std::fs::write(
        &deep,
        format!(
            "{{\"problem\": {}1{}}}",
            "{\"a\": ".repeat(100_000),
            "}".repeat(100_000)
        ),
    )
    .unwrap();
    let big = tmp.path().join("big.yaml");
    std::fs::write(
        &big,
        format!(
            "agency: market_bureau\ncase_no: '1'\nproblem: {}\n",
            "x".repeat(2 << 20)
        ),
    )
    .unwrap();
    for (f, why) in [
        (&deep, "line 1: nested too deeply"),
        (&big, "the file is larger than 1024 KiB"),
    ] {
        let t = std::time::Instant::now();
        let o = on(
            &db,
            at,
            &[
                "start",
                "supervision_letter",
                "--vars-file",
                f.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(why), "{}", stderr(&o));
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
    }
    // A small file still starts a case.
    let small = tmp.path().join("vars.yaml");
    std::fs::write(&small, "agency: market_bureau\ncase_no: '1'\nproblem: x\n").unwrap();
    ok(on(
        &db,
        at,
        &[
            "start",
            "supervision_letter",
            "--vars-file",
            small.to_str().unwrap(),
        ],
    ));
}

/// Issue 13, reports over instances: `duban report` prints, per agency,
/// how the notices of a period were answered, as a table and as JSON; a
/// period that ends before it starts is refused.
#[test]
fn report_prints_how_each_agency_answered_the_notices_of_a_period() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db");
    let db = db.to_str().unwrap();
    let t = "2025-03-03T10:00:00+08:00";
    ok(on(
        db,
        t,
        &["directory", "import", "tests/data/directory.yaml"],
    ));
    ok(on(db, t, &["deploy", "tests/data/reports/"]));
    ok(on(
        db,
        t,
        &[
            "start",
            "report_letter",
            "--var",
            "agency=market_bureau",
            "--as",
            "li",
        ],
    ));
    ok(on(
        db,
        "2025-03-06T10:00:00+08:00",
        &[
            "complete",
            "1.1",
            "--outcome",
            "replied",
            "--as",
            "market_bureau",
        ],
    ));
    ok(on(
        db,
        t,
        &[
            "start",
            "report_letter",
            "--var",
            "agency=qiaoxi_env",
            "--as",
            "li",
        ],
    ));
    let now = "2026-01-05T10:00:00+08:00";
    let args = ["report", "--from", "2025-01-01", "--until", "2025-12-31"];
    let table = ok(on(db, now, &args));
    assert!(table.contains("market_bureau"), "{table}");
    assert!(table.contains("许昌市市场监督管理局"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(on(db, now, &[&args[..], &["--json"]].concat()))).unwrap();
    let agencies = json["agencies"].as_array().unwrap();
    assert_eq!(agencies.len(), 2, "{json}");
    assert_eq!(agencies[0]["agency"], "market_bureau");
    assert_eq!(
        (&agencies[0]["on_time"], &agencies[0]["average_days"]),
        (&serde_json::json!(1), &serde_json::json!(3.0))
    );
    assert_eq!(
        (&agencies[1]["answered"], &agencies[1]["overdue"]),
        (&serde_json::json!(0), &serde_json::json!(1)),
        "open past its cut-off"
    );
    assert_eq!(json["total"]["opened"], 2);
    let one = ok(on(
        db,
        now,
        &[&args[..], &["--agency", "qiaoxi_env", "--json"]].concat(),
    ));
    assert!(!one.contains("market_bureau"), "{one}");
    let o = on(
        db,
        now,
        &["report", "--from", "2025-12-31", "--until", "2025-01-01"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is before --from"), "{}", stderr(&o));
}

/// Issue 14: `duban token` creates a token shown once, lists tokens without
/// their secrets, revokes one once; a token for nobody is refused.
#[test]
fn tokens_are_created_listed_and_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db");
    let db = db.to_str().unwrap();
    let t = "2026-01-05T10:00:00+08:00";
    ok(on(
        db,
        t,
        &["directory", "import", "tests/data/directory.yaml"],
    ));
    let token = ok(on(
        db,
        t,
        &["token", "create", "--person", "li", "--note", "办案系统"],
    ));
    let token = token.trim();
    assert!(
        token.starts_with("dbn.") && token.len() == 4 + 12 + 1 + 64,
        "{token}"
    );
    let id = token.split('.').nth(1).unwrap();
    let list = ok(on(db, t, &["token", "list", "--json"]));
    assert!(list.contains(id) && list.contains("办案系统"), "{list}");
    assert!(
        !list.contains(token.split('.').nth(2).unwrap()),
        "the secret is not kept: {list}"
    );
    ok(on(db, t, &["token", "revoke", id]));
    let o = on(db, t, &["token", "revoke", id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(ok(on(db, t, &["token", "list"])).contains("revoked"));
    let o = on(db, t, &["token", "create", "--person", "nobody"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no person `nobody`"), "{}", stderr(&o));
    let o = on(db, t, &["token", "create"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "one of --person, --role is required"
    );
}

/// Issue 16: the directory as data an operator can trust. A one-person file
/// updates that person and keeps everybody else (it used to remove four
/// people and an agency); `--replace` removes, and lists the open task left
/// with a removed person with the command that moves it; `reassign` gives
/// it to another holder of the step's role, refuses someone who may not do
/// the step, and the history names who reassigned it.
#[test]
fn a_smaller_directory_file_updates_without_removing_and_orphaned_tasks_are_reassigned() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("duban.db");
    let db = db.to_str().unwrap();
    let t0 = "2025-09-26T10:00:00+08:00";
    ok(on(
        db,
        t0,
        &["directory", "import", "tests/data/directory.yaml"],
    ));
    ok(on(db, t0, &["deploy", "processes/"]));
    ok(on(
        db,
        t0,
        &[
            "start",
            "supervision_letter",
            "--var",
            "agency=market_bureau",
            "--var",
            "case_no=许司督〔2025〕9号",
            "--var",
            "problem=未落实公示制度",
            "--as",
            "li",
        ],
    ));
    let one = tmp.path().join("one.yaml");
    std::fs::write(
        &one,
        "people:\n  - { id: li, name: 李明, roles: [supervision_office], organisation: 许昌市司法局, level: 市级, county: 市本级, email: li.new@example.org }\n  - { id: sun_new, name: 孙新, roles: [supervision_office], organisation: 许昌市司法局, level: 市级, county: 市本级, email: sunxin@example.org }\n",
    )
    .unwrap();
    let before = json(&on(db, t0, &["directory", "list", "--json"]));
    let out = ok(on(db, t0, &["directory", "import", one.to_str().unwrap()]));
    assert!(out.contains("+ person sun_new 孙新"), "{out}");
    assert!(out.contains("~ person li 李明: email, mobile"), "{out}");
    assert!(out.contains("1 added, 1 changed, 0 removed"), "{out}");
    let after = json(&on(db, t0, &["directory", "list", "--json"]));
    assert_eq!(
        after["people"].as_array().unwrap().len(),
        before["people"].as_array().unwrap().len() + 1,
        "nobody removed: {after}"
    );
    assert_eq!(after["agencies"], before["agencies"]);
    // A dry run of the replacement writes nothing and warns of the task.
    let only_sun = tmp.path().join("sun.yaml");
    std::fs::write(
        &only_sun,
        "people:\n  - { id: sun_new, name: 孙新, roles: [supervision_office], organisation: 许昌市司法局, level: 市级, county: 市本级, email: sunxin@example.org }\n  - { id: wang, name: 王芳, roles: [office_head], county: 市本级, email: wang@example.org }\nagencies:\n  - { id: market_bureau, name: 许昌市市场监督管理局, level: 市级, county: 市本级, email: scj@example.org }\n",
    )
    .unwrap();
    let dry = ok(on(
        db,
        t0,
        &[
            "directory",
            "import",
            only_sun.to_str().unwrap(),
            "--replace",
            "--dry-run",
        ],
    ));
    assert!(dry.contains("- person li"), "{dry}");
    // The running case names market_bureau, which the file keeps; it names
    // no removed agency, so nothing is said of its variables.
    assert!(!dry.contains("! instance"), "{dry}");
    // A replacement without the agency says which running case names it.
    let dry_all = ok(on(
        db,
        t0,
        &[
            "directory",
            "import",
            one.to_str().unwrap(),
            "--replace",
            "--dry-run",
        ],
    ));
    assert!(
        dry_all.contains("! instance 1 (supervision_letter) names market_bureau in `agency`, who would no longer be in the directory: set another with `duban set-var 1 --var agency=ID`"),
        "{dry_all}"
    );
    assert!(
        dry.contains("! task 1.1 (draft_letter) would be left with li"),
        "{dry}"
    );
    assert_eq!(json(&on(db, t0, &["directory", "list", "--json"])), after);
    let out = ok(on(
        db,
        t0,
        &[
            "directory",
            "import",
            only_sun.to_str().unwrap(),
            "--replace",
        ],
    ));
    assert!(out.contains("- person li"), "{out}");
    assert!(
        out.contains("! task 1.1 (draft_letter) is still assigned to li, who is no longer in the directory: give it to someone with `duban reassign 1.1 --to PERSON --reason …`"),
        "{out}"
    );
    // Someone who does not hold the step's role may not take it.
    let o = on(
        db,
        t0,
        &["reassign", "1.1", "--to", "wang", "--reason", "李明调离"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(
            "R038 task `1.1` cannot be reassigned: `wang` may not do step `draft_letter`"
        ),
        "{}",
        stderr(&o)
    );
    let out = ok(on(
        db,
        t0,
        &[
            "reassign",
            "1.1",
            "--to",
            "sun_new",
            "--reason",
            "李明调离",
            "--as",
            "wang",
        ],
    ));
    assert!(out.contains("reassigned 1.1 to sun_new"), "{out}");
    let tasks = json(&on(db, t0, &["tasks", "--json"]));
    assert_eq!(tasks[0]["assignees"][0]["id"], "sun_new", "{tasks}");
    let history = ok(on(db, t0, &["show", "1"]));
    assert!(history.contains("reassigned"), "{history}");
    assert!(
        history.contains("改由sun_new办理（原办理人：li）：李明调离"),
        "{history}"
    );
    let shown = ok(on(db, t0, &["directory", "show", "sun_new"]));
    assert!(
        shown.contains("1.1 draft_letter (task) due 2025-10-10"),
        "{shown}"
    );
    // The new assignee acts; the person's history names the step acted on
    // (draft_letter), not the one the instance went on to.
    ok(on(
        db,
        t0,
        &[
            "complete",
            "1.1",
            "--outcome",
            "issue",
            "--var",
            "letter_kind=督办函",
            "--var",
            "reply_period=30日",
            "--as",
            "sun_new",
        ],
    ));
    let history = ok(on(db, t0, &["history", "--person", "sun_new"]));
    let completed = history
        .lines()
        .find(|l| l.contains("task_completed"))
        .unwrap_or_else(|| panic!("{history}"));
    assert!(completed.contains("draft_letter"), "{history}");
    assert!(!completed.contains("await_report"), "{history}");
    // Listed instances say what they are and who holds what.
    let listed = ok(on(db, t0, &["instances"]));
    assert!(
        listed.contains(
            "行政执法监督督办（supervision_letter v6）  running  督办案号：许司督〔2025〕9号"
        ),
        "{listed}"
    );
    assert!(
        listed.contains(
            "1.2 被监督机关在期限内书面报告处理情况（await_report） → 许昌市市场监督管理局"
        ),
        "{listed}"
    );
}
