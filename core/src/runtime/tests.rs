//! Tests of the core: the library's processes driven event by event, and
//! every kind of invalid event refused without a change.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value as Json};

use super::directory::MemoryDirectory;
use super::*;
use crate::calendar::{Calendar, LEGAL_TZ};
use crate::definition::{load_library, Channel, Definition};

fn library() -> BTreeMap<String, Definition> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../processes");
    let files = crate::definition::expand_paths(&[dir]).unwrap();
    let lib = load_library(&files, &[]);
    assert!(lib.is_valid());
    lib.definitions
}

fn person(id: &str, roles: &[&str], county: &str) -> Person {
    Person {
        id: id.into(),
        name: id.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        organisation: None,
        level: None,
        county: Some(county.into()),
        email: Some(format!("{id}@example.org")),
        mobile: None,
    }
}

/// The sample directory the CLI tests and scenarios use too.
fn directory() -> MemoryDirectory {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/directory.yaml");
    super::directory_file::parse(&std::fs::read_to_string(path).unwrap(), false).unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

struct H {
    def: Definition,
    cal: Calendar,
    dir: MemoryDirectory,
    procs: BTreeMap<String, Definition>,
    state: Option<InstanceState>,
    history: Vec<HistoryEntry>,
    commands: Vec<Command>,
}

fn vars(pairs: &[(&str, Json)]) -> BTreeMap<String, Json> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

impl H {
    fn new(id: &str) -> H {
        let procs = library();
        H {
            def: procs[id].clone(),
            procs,
            cal: Calendar::builtin(),
            dir: directory(),
            state: None,
            history: vec![],
            commands: vec![],
        }
    }

    fn try_apply(&mut self, e: Event, now: &str) -> Result<(), EngineError> {
        let env = Env {
            definition: &self.def,
            calendar: &self.cal,
            directory: &self.dir,
            processes: &self.procs,
            call_depth: 0,
            facts: &crate::runtime::facts::Facts::none(),
            reports: &Default::default(),
        };
        let t = apply(&env, self.state.as_ref(), &e, at(now))?;
        self.history.extend(t.history);
        self.commands = t.commands;
        self.state = Some(t.state);
        Ok(())
    }

    #[track_caller]
    fn apply(&mut self, e: Event, now: &str) {
        if let Err(err) = self.try_apply(e, now) {
            panic!("{err}");
        }
    }

    /// Starts instance `id` with no variables, as li.
    #[track_caller]
    fn start_plain(&mut self, id: &str, now: &str) {
        self.apply(
            Event::Start {
                instance: id.into(),
                profile: None,
                variables: BTreeMap::new(),
                actor: "li".into(),
            },
            now,
        );
    }

    fn state(&self) -> &InstanceState {
        self.state.as_ref().unwrap()
    }

    /// The open task of `step`.
    #[track_caller]
    fn task(&self, step: &str) -> TaskState {
        self.state()
            .open_tasks()
            .find(|t| t.step == step)
            .cloned()
            .unwrap_or_else(|| panic!("no open task at {step}: {:?}", self.state().current_steps()))
    }

    /// Completes the open task of `step` as its (first) assignee.
    fn complete(&mut self, step: &str, outcome: &str, v: &[(&str, Json)], now: &str) {
        let task = self.task(step);
        self.apply(
            Event::Complete {
                task: task.id,
                outcome: outcome.into(),
                variables: vars(v),
                actor: task.assignees[0].clone(),
            },
            now,
        );
    }

    /// Fires the pending timer of `kind` ("expiry", "reminder") for `step`.
    fn fire(&mut self, step: &str, kind: &str) -> DateTime<Utc> {
        let task = self.task(step).id;
        let t = self
            .state()
            .timers
            .values()
            .filter(|t| match (&t.kind, kind) {
                (TimerKind::Expiry { task: x }, "expiry") => *x == task,
                (TimerKind::Reminder { task: x, .. }, "reminder") => *x == task,
                _ => false,
            })
            .min_by_key(|t| t.due)
            .cloned()
            .expect("a pending timer");
        self.apply(Event::TimerFired { timer: t.id }, &t.due.to_rfc3339());
        t.due
    }

    fn whats(&self) -> Vec<&str> {
        self.history.iter().map(|h| h.what.as_str()).collect()
    }
}

fn start_letter(h: &mut H) {
    h.apply(
        Event::Start {
            instance: "1".into(),
            profile: None,
            variables: vars(&[
                ("agency", json!("market_bureau")),
                ("case_no", json!("许司督〔2025〕1号")),
                ("problem", json!("未落实行政执法公示制度")),
            ]),
            actor: "li".into(),
        },
        "2025-09-26T10:00:00+08:00",
    );
}

#[test]
fn supervision_letter_handled_in_time() {
    let mut h = H::new("supervision_letter");
    start_letter(&mut h);
    let draft = h.task("draft_letter");
    assert_eq!(draft.assignees, ["li"]);
    // 5 working days from 2025-09-26 (the XC profile's drafting period).
    assert_eq!(
        draft.deadline.as_ref().unwrap().last_day.to_string(),
        "2025-10-10"
    );
    h.complete(
        "draft_letter",
        "issue",
        &[
            ("letter_kind", json!("督办函")),
            ("reply_period", json!("30日")),
        ],
        "2025-09-29T09:00:00+08:00",
    );
    let notice = h.task("await_report");
    assert_eq!(notice.kind, TaskKind::Notice);
    assert_eq!(notice.assignees, ["market_bureau"]);
    assert!(notice.deadline.is_none(), "counted from receipt");
    assert!(
        h.commands.iter().any(|c| matches!(c, Command::Notify { template, to, .. } if template == "letter_notice" && to == &["market_bureau"])),
        "the notice's own email goes to the agency: {:?}",
        h.commands
    );
    assert!(h.commands.iter().any(|c| matches!(c, Command::RenderDocument { document, .. } if document == "supervision_letter")));
    h.apply(
        Event::Receive {
            task: notice.id.clone(),
            actor: "market_bureau".into(),
        },
        "2025-09-30T15:00:00+08:00",
    );
    let d = h.task("await_report").deadline.unwrap();
    // 30 days from 09-30: nominal 10-30, a Thursday.
    assert_eq!(d.last_day.to_string(), "2025-10-30");
    let reminders: Vec<_> = h
        .state()
        .timers
        .values()
        .filter(|t| matches!(t.kind, TimerKind::Reminder { .. }))
        .map(|t| t.due.with_timezone(&LEGAL_TZ).to_rfc3339())
        .collect();
    // 5 and 1 working days before the last day, at 09:00.
    assert_eq!(
        reminders,
        ["2025-10-23T09:00:00+08:00", "2025-10-29T09:00:00+08:00"]
    );
    h.complete(
        "await_report",
        "handled",
        &[("handling_report", json!("已整改"))],
        "2025-10-20T10:00:00+08:00",
    );
    assert!(
        h.state()
            .timers
            .values()
            .all(|t| !matches!(&t.kind, TimerKind::Expiry { task } if *task == notice.id)),
        "closing a task cancels its timers"
    );
    h.complete(
        "review_report",
        "accepted",
        &[("review_opinion", json!("整改到位"))],
        "2025-10-21T10:00:00+08:00",
    );
    assert_eq!(
        h.state().status,
        Status::Completed {
            result: "corrected".into()
        }
    );
    assert!(h.state().timers.is_empty());
}

#[test]
fn supervision_letter_overdue_escalates_to_the_government() {
    let mut h = H::new("supervision_letter");
    start_letter(&mut h);
    h.complete(
        "draft_letter",
        "issue",
        &[
            ("letter_kind", json!("意见书")),
            ("reply_period", json!("10个工作日")),
        ],
        "2025-09-26T11:00:00+08:00",
    );
    let id = h.task("await_report").id;
    h.apply(
        Event::Receive {
            task: id,
            actor: "market_bureau".into(),
        },
        "2025-09-26T12:00:00+08:00",
    );
    // 09-28 and 10-11 are make-up working days.
    assert_eq!(
        h.task("await_report")
            .deadline
            .unwrap()
            .last_day
            .to_string(),
        "2025-10-16"
    );
    let reminded = h.fire("await_report", "reminder");
    assert_eq!(
        reminded.with_timezone(&LEGAL_TZ).to_rfc3339(),
        "2025-10-10T09:00:00+08:00"
    );
    assert!(h.commands.iter().any(|c| matches!(c, Command::Notify { event, to, .. } if *event == NotifyEvent::Reminder && to == &["market_bureau"])));
    let due = h.fire("await_report", "expiry");
    assert_eq!(
        due.with_timezone(&LEGAL_TZ).to_rfc3339(),
        "2025-10-17T00:00:00+08:00"
    );
    assert!(h.commands.iter().any(|c| matches!(c, Command::Notify { event, to, .. } if *event == NotifyEvent::Escalated && to == &["role:supervision_office"])), "{:?}", h.commands);
    assert!(
        h.whats()
            .ends_with(&["expired", "escalated", "decided", "task_opened"]),
        "{:?}",
        h.whats()
    );
    h.complete(
        "verify_exception",
        "verified",
        &[
            ("reconsideration_filed", json!(false)),
            ("litigation_filed", json!(false)),
        ],
        "2025-10-20T10:00:00+08:00",
    );
    h.complete(
        "report_to_government",
        "reported",
        &[],
        "2025-10-21T10:00:00+08:00",
    );
    assert_eq!(h.task("government_decision").assignees, ["zhao"]);
    h.complete(
        "government_decision",
        "decided",
        &[
            ("decision_kind", json!("责令限期履行")),
            ("decision_reason", json!("逾期不改正")),
        ],
        "2025-10-22T10:00:00+08:00",
    );
    assert!(h.commands.iter().any(
        |c| matches!(c, Command::RenderDocument { document, .. } if document == "decision_document")
    ));
    let id = h.task("serve_decision").id;
    h.apply(
        Event::Receive {
            task: id,
            actor: "market_bureau".into(),
        },
        "2025-10-23T10:00:00+08:00",
    );
    h.complete(
        "serve_decision",
        "acknowledged",
        &[],
        "2025-10-23T11:00:00+08:00",
    );
    // XC-21: under 许昌 the office checks that the decision is executed.
    h.complete(
        "check_decision_execution",
        "executed",
        &[("execution_report", json!("已执行"))],
        "2025-10-30T11:00:00+08:00",
    );
    assert_eq!(
        h.state().status,
        Status::Completed {
            result: "government_decided".into()
        }
    );
}

#[test]
fn xc20_exception_is_checked_and_recorded_before_escalating() {
    let mut h = H::new("supervision_letter");
    start_letter(&mut h);
    h.complete(
        "draft_letter",
        "issue",
        &[
            ("letter_kind", json!("督办函")),
            ("reply_period", json!("30日")),
        ],
        "2025-09-26T11:00:00+08:00",
    );
    h.complete(
        "await_report",
        "refused",
        &[("refusal_reason", json!("认为执法行为合法"))],
        "2025-09-30T10:00:00+08:00",
    );
    h.complete(
        "verify_exception",
        "verified",
        &[
            ("reconsideration_filed", json!(true)),
            ("litigation_filed", json!(false)),
            ("exception_evidence", json!("复议申请书")),
        ],
        "2025-10-09T10:00:00+08:00",
    );
    assert_eq!(
        h.state().status,
        Status::Completed {
            result: "exception_reconsideration_or_litigation".into()
        }
    );
    let decided = h
        .history
        .iter()
        .rfind(|e| e.what == HistoryKind::Decided)
        .unwrap();
    assert_eq!(decided.step_after.as_deref(), Some("closed_exception"));
    assert!(
        decided.note.as_ref().unwrap().contains("(XC-20)"),
        "{:?}",
        decided.note
    );
    assert!(!h
        .history
        .iter()
        .any(|e| e.step_after.as_deref() == Some("report_to_government")));
}

#[test]
fn invalid_events_are_refused_and_change_nothing() {
    let mut h = H::new("supervision_letter");
    // Start: unknown, missing and mistyped variables.
    let err = h
        .try_apply(
            Event::Start {
                instance: "1".into(),
                profile: None,
                variables: vars(&[("agency", json!("market_bureau")), ("case_no", json!("1"))]),
                actor: "li".into(),
            },
            "2025-09-26T10:00:00+08:00",
        )
        .unwrap_err();
    assert_eq!(err, EngineError::MissingVariable("problem".into()));
    let err = h
        .try_apply(
            Event::Start {
                instance: "1".into(),
                profile: None,
                variables: vars(&[("agnecy", json!("a"))]),
                actor: "li".into(),
            },
            "2025-09-26T10:00:00+08:00",
        )
        .unwrap_err();
    assert_eq!(err, EngineError::UnknownVariable("agnecy".into()));
    let err = h
        .try_apply(
            Event::Start {
                instance: "1".into(),
                profile: Some("ZZ".into()),
                variables: BTreeMap::new(),
                actor: "li".into(),
            },
            "2025-09-26T10:00:00+08:00",
        )
        .unwrap_err();
    assert_eq!(err, EngineError::UnknownProfile("ZZ".into()));
    assert!(h.state.is_none());
    start_letter(&mut h);
    let before = h.state().clone();
    let task = h.task("draft_letter").id;
    let complete = |outcome: &str, v: &[(&str, Json)]| Event::Complete {
        task: task.clone(),
        outcome: outcome.into(),
        variables: vars(v),
        actor: "li".into(),
    };
    let cases = [
        (
            complete("aprove", &[]),
            "R007 step `draft_letter` has no outcome `aprove`; outcomes: issue, no_problem",
        ),
        (
            complete("issue", &[("letter_kind", json!("督办函"))]),
            "R008 outcome `issue` requires the field `reply_period`",
        ),
        (
            complete(
                "issue",
                &[
                    ("letter_kind", json!("建议函")),
                    ("reply_period", json!("30日")),
                ],
            ),
            "R003 variable `letter_kind`: `建议函` is not one of 督办函, 意见书, 通知书",
        ),
        (
            complete(
                "issue",
                &[
                    ("letter_kind", json!("督办函")),
                    ("reply_period", json!("5 weeks")),
                ],
            ),
            "R003 variable `reply_period`: `5 weeks` has an unknown unit",
        ),
        (
            complete(
                "issue",
                &[
                    ("letter_kind", json!("督办函")),
                    ("reply_period", json!("30日")),
                    ("problem", json!("x")),
                ],
            ),
            "R009 `problem` is not a field of outcome `issue`",
        ),
        (
            Event::Complete {
                task: "1.99".into(),
                outcome: "issue".into(),
                variables: BTreeMap::new(),
                actor: "li".into(),
            },
            "R005 no task `1.99`",
        ),
    ];
    for (e, want) in cases {
        let err = h.try_apply(e, "2025-09-27T10:00:00+08:00").unwrap_err();
        assert_eq!(err.class(), ErrorClass::Refused, "{err}");
        assert!(want.starts_with(err.code()), "{err}: code {}", err.code());
        let err = err.to_string();
        assert!(err.starts_with(want), "{err} does not start with {want}");
        assert_eq!(h.state(), &before, "a refused event changes nothing");
    }
    h.complete(
        "draft_letter",
        "no_problem",
        &[],
        "2025-09-27T10:00:00+08:00",
    );
    let err = h
        .try_apply(complete("no_problem", &[]), "2025-09-27T11:00:00+08:00")
        .unwrap_err();
    assert!(matches!(err, EngineError::Ended(_)), "{err}");
}

#[test]
fn completing_a_closed_task_is_refused() {
    let mut h = H::new("supervision_letter");
    start_letter(&mut h);
    let draft = h.task("draft_letter").id;
    h.complete(
        "draft_letter",
        "issue",
        &[
            ("letter_kind", json!("督办函")),
            ("reply_period", json!("30日")),
        ],
        "2025-09-27T10:00:00+08:00",
    );
    let err = h
        .try_apply(
            Event::Complete {
                task: draft,
                outcome: "issue".into(),
                variables: vars(&[
                    ("letter_kind", json!("督办函")),
                    ("reply_period", json!("30日")),
                ]),
                actor: "li".into(),
            },
            "2025-09-27T11:00:00+08:00",
        )
        .unwrap_err();
    assert!(matches!(err, EngineError::TaskClosed { .. }), "{err}");
}

fn start_dispute(h: &mut H, a: &str, b: &str) {
    h.apply(
        Event::Start {
            instance: "7".into(),
            profile: None,
            variables: vars(&[
                ("applicant", json!(a)),
                ("respondent", json!(b)),
                ("dispute_summary", json!("占道经营的管辖")),
            ]),
            actor: "li".into(),
        },
        "2026-03-02T09:00:00+08:00",
    );
    h.complete(
        "negotiate",
        "failed",
        &[
            ("negotiation_record", json!("协商不成")),
            ("application_letter", json!("公函")),
            ("dispute_focus", json!("焦点")),
            ("positions", json!("双方观点及依据")),
        ],
        "2026-03-03T09:00:00+08:00",
    );
}

#[test]
fn dispute_routing_follows_xt7() {
    // Two organs of one county: that county's department.
    let mut h = H::new("dispute");
    start_dispute(&mut h, "qiaoxi_urban", "qiaoxi_env");
    assert_eq!(h.state().variables["coordination_unit"], json!("桥西区"));
    assert_eq!(h.task("review_application").assignees, ["qiaoxi_coord"]);
    // Across counties, or with a city organ: the city department.
    for (a, b) in [
        ("qiaoxi_urban", "xindu_env"),
        ("market_bureau", "qiaoxi_env"),
    ] {
        let mut h = H::new("dispute");
        start_dispute(&mut h, a, b);
        assert_eq!(h.state().variables["coordination_unit"], json!("市本级"));
        assert_eq!(h.task("review_application").assignees, ["city_coord"]);
    }
}

#[test]
fn dispute_returns_incomplete_applications_and_joins_both_parties() {
    let mut h = H::new("dispute");
    start_dispute(&mut h, "qiaoxi_urban", "xindu_env");
    h.complete(
        "review_application",
        "incomplete",
        &[("missing_items", json!(["争议焦点的情况说明"]))],
        "2026-03-04T09:00:00+08:00",
    );
    h.complete(
        "return_application",
        "resubmitted",
        &[
            ("application_letter", json!("公函")),
            ("dispute_focus", json!("补正后的焦点")),
            ("positions", json!("观点")),
        ],
        "2026-03-05T09:00:00+08:00",
    );
    h.complete(
        "review_application",
        "complete",
        &[],
        "2026-03-06T09:00:00+08:00",
    );
    h.complete(
        "coordinate",
        "agreed",
        &[("coordination_opinion", json!("由城管部门负责"))],
        "2026-03-10T09:00:00+08:00",
    );
    assert_eq!(
        h.state().current_steps(),
        ["serve_applicant", "serve_respondent"]
    );
    h.complete(
        "serve_applicant",
        "executed",
        &[("applicant_execution", json!("已执行"))],
        "2026-03-12T09:00:00+08:00",
    );
    assert_eq!(
        h.state().current_steps(),
        ["serve_respondent"],
        "the join waits for both"
    );
    // The respondent receives the opinion but never reports: the expiry
    // takes its branch to the join.
    let id = h.task("serve_respondent").id;
    h.apply(
        Event::Receive {
            task: id,
            actor: "xindu_env".into(),
        },
        "2026-03-11T09:00:00+08:00",
    );
    h.fire("serve_respondent", "expiry");
    assert_eq!(h.state().current_steps(), ["check_execution"]);
    // Under XT (the default) a party that does not execute is ordered to
    // correct by a 《行政执法监督通知书》 (邢台办法第十四条): a supervision
    // letter is started for it, under XT; XT has no sanction article.
    h.complete(
        "check_execution",
        "not_executed",
        &[("non_executing_party", json!("xindu_env"))],
        "2026-04-20T09:00:00+08:00",
    );
    assert!(h.commands.iter().any(|c| matches!(c,
        Command::StartChild { process, profile, variables, .. }
            if process == "supervision_letter" && profile.as_deref() == Some("XT") && variables["agency"]["id"] == "xindu_env")),
        "{:?}", h.commands);
    assert_eq!(
        h.state().status,
        Status::Completed {
            result: "ordered_to_correct".into()
        }
    );
}

#[test]
fn a_role_without_holders_cannot_take_a_task() {
    let mut h = H::new("supervision_letter");
    h.dir.people.retain(|p| p.id != "li");
    let err = h
        .try_apply(
            Event::Start {
                instance: "1".into(),
                profile: None,
                variables: vars(&[
                    ("agency", json!("market_bureau")),
                    ("case_no", json!("1")),
                    ("problem", json!("x")),
                ]),
                actor: "li".into(),
            },
            "2025-09-26T10:00:00+08:00",
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "R012 step `draft_letter` needs at least 1 assignees, found 0: nobody in the directory holds role `supervision_office` (an empty directory is imported with `duban directory import FILE`, docs/directory.md)"
    );
    assert_eq!(err.code(), "R012");
    assert_eq!(err.class(), ErrorClass::Fault);
}

#[test]
fn cancel_closes_everything() {
    let mut h = H::new("supervision_letter");
    start_letter(&mut h);
    h.apply(
        Event::Cancel {
            reason: "重复立案".into(),
            actor: "wang".into(),
        },
        "2025-09-26T11:00:00+08:00",
    );
    assert_eq!(
        h.state().status,
        Status::Cancelled {
            reason: "重复立案".into()
        }
    );
    assert!(h.state().timers.is_empty());
    assert_eq!(h.state().open_tasks().count(), 0);
    assert!(h
        .commands
        .iter()
        .any(|c| matches!(c, Command::CancelTimer { .. })));
}

#[test]
fn a_minimum_period_blocks_early_completion() {
    let text = "id: notice\nversion: 1\nname: 公示\nroles: { office: 司法局 }\nstart: publish\nsteps:\n  publish:\n    kind: task\n    name: 公示\n    assignee: { role: office }\n    deadline: { period: 5个工作日, bound: at_least }\n    outcomes:\n      no_objection: { label: 公示期满无异议, next: done }\n  done: { kind: end, name: 结束, result: appointed }\n";
    let def = crate::definition::load_str("notice.yaml", text, &Default::default()).unwrap();
    let mut dir = directory();
    dir.people.push(person("clerk", &["office"], "市本级"));
    let mut h = H {
        def,
        cal: Calendar::builtin(),
        dir,
        procs: BTreeMap::new(),
        state: None,
        history: vec![],
        commands: vec![],
    };
    h.apply(
        Event::Start {
            instance: "3".into(),
            profile: None,
            variables: BTreeMap::new(),
            actor: "clerk".into(),
        },
        "2025-09-26T10:00:00+08:00",
    );
    let task = h.task("publish").id;
    let e = || Event::Complete {
        task: task.clone(),
        outcome: "no_objection".into(),
        variables: BTreeMap::new(),
        actor: "clerk".into(),
    };
    let err = h.try_apply(e(), "2025-10-10T16:00:00+08:00").unwrap_err();
    assert!(
        err.to_string()
            .contains("minimum period of `publish` runs until 2025-10-11T00:00:00+08:00"),
        "{err}"
    );
    h.apply(
        e(),
        &LEGAL_TZ
            .with_ymd_and_hms(2025, 10, 11, 0, 0, 0)
            .unwrap()
            .to_rfc3339(),
    );
    assert_eq!(
        h.state().status,
        Status::Completed {
            result: "appointed".into()
        }
    );
}

mod reminders {
    use chrono::{Duration, NaiveTime, Timelike};
    use proptest::prelude::*;

    use crate::calendar::{hold_to_working_hours, reminder_due};
    use crate::calendar::{Calendar, PeriodSpec, Start, LEGAL_TZ};

    fn due(start: &str, period: &str, before: &str, any_hour: bool) -> String {
        let cal = Calendar::builtin();
        let d = cal.count(
            Start::Date(start.parse().unwrap()),
            &PeriodSpec::within(period.parse().unwrap()),
        );
        reminder_due(&cal, &d, &before.parse().unwrap(), any_hour)
            .with_timezone(&LEGAL_TZ)
            .to_rfc3339()
    }

    #[test]
    fn no_reminder_during_the_spring_festival() {
        // 30 days from 2026-01-25: last day Tuesday 2026-02-24. Five days
        // before is 02-19, inside the break (02-15 … 02-23): held back to the
        // make-up Saturday 02-14.
        assert_eq!(
            due("2026-01-25", "30日", "5日", true),
            "2026-02-19T09:00:00+08:00"
        );
        assert_eq!(
            due("2026-01-25", "30日", "5日", false),
            "2026-02-14T09:00:00+08:00"
        );
    }

    #[test]
    fn no_reminder_at_night() {
        // Cut-off 2025-10-11 00:00. Two hours before is 22:00: held to 17:30.
        assert_eq!(
            due("2025-09-26", "5 working days", "2 hours", false),
            "2025-10-10T17:30:00+08:00"
        );
        // Twenty hours before is 04:00 on 10-10: held to 17:30 the working day before.
        assert_eq!(
            due("2025-09-26", "5 working days", "20 hours", false),
            "2025-10-09T17:30:00+08:00"
        );
        assert_eq!(
            due("2025-09-26", "5 working days", "20 hours", true),
            "2025-10-10T04:00:00+08:00"
        );
    }

    proptest! {
        #[test]
        fn held_reminders_are_earlier_and_in_working_hours(minutes in 0i64..(60 * 24 * 700)) {
            let cal = Calendar::builtin();
            let t = crate::calendar::local("2025-01-01".parse().unwrap(), NaiveTime::MIN).with_timezone(&chrono::Utc) + Duration::minutes(minutes);
            let held = hold_to_working_hours(&cal, t);
            prop_assert!(held <= t);
            let local = held.with_timezone(&LEGAL_TZ);
            prop_assert!(cal.is_working_day(local.date_naive()));
            let m = local.hour() * 60 + local.minute();
            prop_assert!((9 * 60..=17 * 60 + 30).contains(&m), "{local}");
        }
    }
}

#[test]
fn a_provisional_waiting_period_is_recounted_when_its_year_arrives() {
    let text = "id: wait\nversion: 1\nname: 等待\nstart: cool_off\nsteps:\n  cool_off:\n    kind: wait_timer\n    name: 冷静期\n    timer: { period: 30日, remind: [1 working day] }\n    next: done\n  done: { kind: end, name: 结束, result: waited }\n";
    let def = crate::definition::load_str("wait.yaml", text, &Default::default()).unwrap();
    let mut h = H {
        def,
        cal: Calendar::builtin(),
        dir: directory(),
        procs: BTreeMap::new(),
        state: None,
        history: vec![],
        commands: vec![],
    };
    h.start_plain("9", "2026-12-02T10:00:00+08:00");
    let wait_due = |h: &H| {
        h.state()
            .timers
            .values()
            .find(|t| matches!(t.kind, TimerKind::Wait { .. }))
            .map(|t| (t.due, t.provisional))
            .unwrap()
    };
    // 30 days from 2026-12-02: 2027-01-01 is 元旦, a statutory holiday, and
    // 01-02/03 a weekend: 01-04, provisional (no 2027 schedule).
    assert_eq!(wait_due(&h), (at("2027-01-05T00:00:00+08:00"), true));
    // Nothing to recount on the same calendar.
    assert_eq!(
        h.try_apply(Event::Recompute, "2026-12-10T09:00:00+08:00")
            .unwrap_err(),
        EngineError::NothingToRecount
    );
    let y2027 =
        "year: 2027\nsource: test\nholidays:\n  - name: 元旦\n    rest: [2027-01-01..2027-01-04]\n";
    h.cal
        .insert(crate::calendar::schedule::YearSchedule::from_yaml(y2027).unwrap());
    h.apply(Event::Recompute, "2026-12-10T09:00:00+08:00");
    // A (test) schedule that bridges to Monday 01-04: the period ends on 01-05.
    assert_eq!(wait_due(&h), (at("2027-01-06T00:00:00+08:00"), false));
    let reminders: Vec<_> = h
        .state()
        .timers
        .values()
        .filter(|t| matches!(t.kind, TimerKind::Reminder { .. }))
        .map(|t| t.due)
        .collect();
    assert_eq!(
        reminders,
        [at("2026-12-31T09:00:00+08:00")],
        "one reminder, moved"
    );
    let last = h.history.last().unwrap();
    assert_eq!(
        last.note.as_deref(),
        Some("等待期间按国务院公布的节假日安排重新计算：最后一日由2027年1月4日改为2027年1月5日")
    );
}

/// The fixture of `tests/data/faults/`: an expiry that reaches a notice
/// whose recipient variable is unset.
fn fault_fixture() -> Definition {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/faults/unset_recipient.yaml");
    let lib = load_library(&[path], &[]);
    assert!(
        lib.is_valid(),
        "{:?}",
        lib.diagnostics().collect::<Vec<_>>()
    );
    lib.definitions["unset_recipient"].clone()
}

#[test]
fn a_fault_met_by_a_timer_is_kept_as_a_stuck_instance_and_retried_once() {
    let mut h = H::new("supervision_letter");
    h.def = fault_fixture();
    h.start_plain("7", "2026-03-02T10:00:00+08:00");
    let expiry = h.state().timers.values().next().unwrap().clone();
    let fired = Event::TimerFired {
        timer: expiry.id.clone(),
    };
    let err = h
        .try_apply(fired.clone(), "2026-03-10T09:00:00+08:00")
        .unwrap_err();
    assert_eq!(
        err,
        EngineError::NoRecipient {
            step: "warn_agency".into()
        }
    );
    assert_eq!(err.class(), ErrorClass::Fault);

    // What the service stores instead: the state from before, stuck.
    let before = h.state().clone();
    let t = stuck(&before, &fired, &err, at("2026-03-10T09:00:00+08:00"));
    assert_eq!(t.commands, vec![Command::HoldTimers]);
    assert_eq!(t.state.revision, before.revision + 1);
    assert_eq!(t.state.timers, before.timers, "no timer is lost");
    assert_eq!(t.state.tasks, before.tasks);
    let Status::Stuck { code, event, .. } = &t.state.status else {
        panic!("not stuck")
    };
    assert_eq!((code.as_str(), event.as_ref()), ("R015", &fired));
    assert_eq!(t.history.len(), 1);
    assert_eq!(t.history[0].what, HistoryKind::Stuck);
    assert!(t.history[0].note.as_deref().unwrap().starts_with("R015 "));
    h.state = Some(t.state);

    // Stuck: other events are refused, naming the way out.
    let err = h
        .try_apply(
            Event::Complete {
                task: "7.1".into(),
                outcome: "done".into(),
                variables: BTreeMap::new(),
                actor: "li".into(),
            },
            "2026-03-10T10:00:00+08:00",
        )
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Stuck { ref code, .. } if code == "R015"),
        "{err}"
    );
    // The timer itself is held, not applied.
    assert!(matches!(
        h.try_apply(fired.clone(), "2026-03-10T10:00:00+08:00")
            .unwrap_err(),
        EngineError::Stuck { .. }
    ));
    // A retry before the fix meets the same fault and changes nothing.
    let stuck_state = h.state().clone();
    let retry = || Event::Retry {
        actor: "admin".into(),
    };
    assert_eq!(
        h.try_apply(retry(), "2026-03-10T10:00:00+08:00")
            .unwrap_err(),
        EngineError::NoRecipient {
            step: "warn_agency".into()
        }
    );
    assert_eq!(h.state(), &stuck_state);
    // The fix, then the retry: the escalation happens once.
    h.apply(
        Event::SetVariables {
            variables: vars(&[("agency", json!("market_bureau"))]),
            actor: "admin".into(),
        },
        "2026-03-10T10:00:00+08:00",
    );
    h.apply(retry(), "2026-03-10T10:05:00+08:00");
    assert_eq!(h.state().status, Status::Running);
    assert_eq!(h.commands.first(), Some(&Command::ReleaseTimers));
    assert!(h
        .commands
        .contains(&Command::CancelTimer { timer: expiry.id }));
    assert_eq!(h.task("warn_agency").assignees, ["market_bureau"]);
    assert_eq!(
        h.whats(),
        [
            "started",
            "task_opened",
            "variables_set",
            "retried",
            "expired",
            "notice_sent"
        ]
    );
    // Not stuck any more: there is nothing to retry.
    assert_eq!(
        h.try_apply(retry(), "2026-03-10T11:00:00+08:00")
            .unwrap_err(),
        EngineError::NotStuck("7".into())
    );
}

#[test]
fn a_retry_of_an_event_that_went_stale_resumes_the_instance() {
    let mut h = H::new("supervision_letter");
    h.def = fault_fixture();
    h.start_plain("8", "2026-03-02T10:00:00+08:00");
    // Stuck on a recount; by the retry there is nothing left to recount.
    let err = EngineError::NoPeriod("term".into());
    let t = stuck(
        h.state(),
        &Event::Recompute,
        &err,
        at("2026-03-03T09:00:00+08:00"),
    );
    h.state = Some(t.state);
    h.apply(
        Event::Retry {
            actor: "admin".into(),
        },
        "2026-03-03T10:00:00+08:00",
    );
    assert_eq!(h.state().status, Status::Running);
    assert_eq!(h.commands, vec![Command::ReleaseTimers]);
    let last = h.history.last().unwrap();
    assert_eq!(
        (last.what, last.actor.as_str()),
        (HistoryKind::Retried, "admin")
    );
    assert!(last
        .note
        .as_deref()
        .unwrap()
        .contains("no longer applies (R024)"));
    assert_eq!(h.task("review").step, "review", "the task is still open");
}

fn pattern(id: &str) -> Definition {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/data/patterns/{id}.yaml"));
    let lib = load_library(&[path], &[]);
    assert!(
        lib.is_valid(),
        "{:?}",
        lib.diagnostics().collect::<Vec<_>>()
    );
    lib.definitions[id].clone()
}

fn start_counter(h: &mut H) {
    h.def = pattern("counter_and_wait");
    h.start_plain("9", "2026-03-02T10:00:00+08:00");
}

/// Issue 11, engine 1: an `int` variable reached CEL as a `uint`, so
/// `rounds + 1` failed ("Unsupported binary operator 'add': UInt(0), Int(1)").
#[test]
fn integer_arithmetic_in_cel_on_int_variables() {
    let mut h = H::new("supervision_letter");
    start_counter(&mut h);
    for round in 1..=2 {
        h.complete("count", "again", &[], "2026-03-02T11:00:00+08:00");
        assert_eq!(h.state().variables["rounds"], json!(round));
        assert_eq!(h.state().variables["doubled"], json!(6));
    }
    assert_eq!(h.state().current_steps(), ["await_answer"]);
}

/// Issue 11, engine 3: a notify-only expiry on a `wait_message` ended the
/// wait, leaving the instance running with no current step and refusing
/// the message. It must escalate and keep waiting, as a task does.
#[test]
fn a_notify_only_message_timeout_escalates_and_keeps_waiting() {
    let mut h = H::new("supervision_letter");
    start_counter(&mut h);
    h.complete("count", "again", &[], "2026-03-02T11:00:00+08:00");
    h.complete("count", "again", &[], "2026-03-02T11:00:00+08:00");
    let timeout = h
        .state()
        .timers
        .values()
        .find(|t| matches!(t.kind, TimerKind::MessageTimeout { .. }))
        .unwrap()
        .clone();
    h.apply(
        Event::TimerFired { timer: timeout.id },
        "2026-03-10T09:00:00+08:00",
    );
    assert_eq!(h.state().current_steps(), ["await_answer"], "still waiting");
    assert!(h.commands.iter().any(|c| matches!(c,
        Command::Notify { event: NotifyEvent::Escalated, to, .. } if to == &["role:supervision_office"])));
    assert!(!h
        .commands
        .iter()
        .any(|c| matches!(c, Command::StopAwaiting { .. })));
    h.apply(
        Event::Message {
            name: "answered".into(),
            key: "K1".into(),
            variables: BTreeMap::new(),
            sender: None,
        },
        "2026-03-11T09:00:00+08:00",
    );
    assert_eq!(
        h.state().status,
        Status::Completed {
            result: "answered".into()
        }
    );
}

/// Issue 11, engine 4: anyone could complete a task, and the history named
/// them. Only an assignee, or a holder of the task's role, may act; a
/// notice's receipt and answer only by its recipient.
#[test]
fn only_an_assignee_or_role_holder_acts_on_a_task() {
    let mut h = H::new("supervision_letter");
    start_letter(&mut h);
    let draft = h.task("draft_letter");
    assert_eq!(draft.assignees, ["li"]);
    let complete = |task: &str, actor: &str| Event::Complete {
        task: task.into(),
        outcome: "issue".into(),
        variables: vars(&[
            ("letter_kind", json!("督办函")),
            ("reply_period", json!("30日")),
        ]),
        actor: actor.into(),
    };
    let before = h.state().clone();
    let err = h
        .try_apply(complete(&draft.id, "wang"), "2025-09-27T10:00:00+08:00")
        .unwrap_err();
    assert_eq!(
        err,
        EngineError::NotPermitted {
            task: draft.id.clone(),
            actor: "wang".into(),
            assignees: "li".into()
        }
    );
    assert_eq!(err.code(), "R029");
    assert_eq!(h.state(), &before, "a refused completion changes nothing");
    // Someone who took the role after the task opened may act on it.
    h.dir
        .people
        .push(person("zhou", &["supervision_office"], "市本级"));
    h.apply(complete(&draft.id, "zhou"), "2025-09-27T10:00:00+08:00");
    assert!(h
        .history
        .iter()
        .any(|l| l.what == HistoryKind::TaskCompleted && l.actor == "zhou"));
    // A notice is received and answered by its recipient only.
    let notice = h.task("await_report");
    let err = h
        .try_apply(
            Event::Receive {
                task: notice.id.clone(),
                actor: "li".into(),
            },
            "2025-09-28T10:00:00+08:00",
        )
        .unwrap_err();
    assert!(matches!(err, EngineError::NotPermitted { .. }), "{err}");
    h.apply(
        Event::Receive {
            task: notice.id,
            actor: "market_bureau".into(),
        },
        "2025-09-28T10:00:00+08:00",
    );
}

/// A helper over definitions written inline: `main` is applied, all of
/// them may be called.
fn inline(main: &str, defs: &[(&str, &str)]) -> H {
    let mut procs = BTreeMap::new();
    for (file, text) in defs {
        let d = crate::definition::load_str(file, text, &Default::default()).unwrap();
        procs.insert(d.id.clone(), d);
    }
    H {
        def: procs[main].clone(),
        cal: Calendar::builtin(),
        dir: directory(),
        procs,
        state: None,
        history: vec![],
        commands: vec![],
    }
}

const CALLER: &str = "id: caller\nversion: 1\nname: 调用\nroles: { supervision_office: 监督机构 }\nvariables:\n  agency: { type: agency, required: true }\n  note: { type: text }\nstart: prepare\nsteps:\n  prepare:\n    kind: task\n    name: 准备\n    assignee: { role: supervision_office }\n    outcomes:\n      go: { label: 约谈, next: interview }\n  interview:\n    kind: call\n    name: 约谈\n    process: callee\n    inputs: { agency: agency, note: note }\n    next: done\n  done: { kind: end, name: 结束, result: ok }\n";

/// Issue 11, engine 6: a call whose child could not start (here the child
/// was redeployed with a new required variable the caller does not give)
/// committed the caller's transition anyway, leaving it waiting for a child
/// that did not exist. The child's start is now part of the caller's
/// transition: the completion is refused with R030 naming the child's own
/// reason, and nothing changes.
#[test]
fn a_call_whose_child_cannot_start_refuses_the_callers_event() {
    let callee_v2 = "id: callee\nversion: 2\nname: 被调用\nroles: { supervision_office: 监督机构 }\nvariables:\n  agency: { type: agency, required: true }\n  topic: { type: text, required: true }\nstart: record\nsteps:\n  record:\n    kind: task\n    name: 记录\n    assignee: { role: supervision_office }\n    outcomes:\n      ok: { label: 完成, next: done }\n  done: { kind: end, name: 结束, result: ok }\n";
    let mut h = inline(
        "caller",
        &[("caller.yaml", CALLER), ("callee.yaml", callee_v2)],
    );
    h.apply(
        Event::Start {
            instance: "7".into(),
            profile: None,
            variables: vars(&[("agency", json!("market_bureau"))]),
            actor: "li".into(),
        },
        "2025-09-26T10:00:00+08:00",
    );
    let before = h.state().clone();
    let task = h.task("prepare").id;
    let complete = Event::Complete {
        task: task.clone(),
        outcome: "go".into(),
        variables: BTreeMap::new(),
        actor: "li".into(),
    };
    let err = h
        .try_apply(complete.clone(), "2025-09-26T11:00:00+08:00")
        .unwrap_err();
    assert_eq!(err.code(), "R030");
    assert_eq!(
        err.to_string(),
        "R030 step `interview` cannot start `callee`: R002 missing required variable `topic`"
    );
    assert_eq!(h.state(), &before, "a refused call changes nothing");
    // A process that is not deployed at all is refused the same way.
    h.procs.remove("callee");
    let err = h
        .try_apply(complete.clone(), "2025-09-26T11:00:00+08:00")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "R030 step `interview` cannot start `callee`: the process is not deployed"
    );
    // With the child startable the same completion goes through, the child
    // is asked for one level deeper.
    let callee_v3 = callee_v2
        .replace("version: 2", "version: 3")
        .replace("  topic: { type: text, required: true }\n", "");
    let v3 = crate::definition::load_str("callee.yaml", &callee_v3, &Default::default()).unwrap();
    h.procs.insert("callee".into(), v3);
    h.apply(complete, "2025-09-26T11:00:00+08:00");
    let start = h
        .commands
        .iter()
        .find_map(|c| match c {
            Command::StartChild {
                depth,
                child,
                version,
                variables,
                ..
            } => Some((child.clone(), *depth, *version, variables.len())),
            _ => None,
        })
        .expect("the child is asked for");
    assert_eq!(start, ("7-interview-2".to_string(), 1, Some(3), 1));
}

/// Issue 11, engine 9: a process that calls itself unconditionally started
/// instances until the simulator was killed. The nesting is bounded: the
/// start is refused with R031 and nothing is started.
#[test]
fn a_process_calling_itself_without_end_is_refused() {
    let again = "id: again\nversion: 1\nname: 自我调用\nvariables:\n  n: { type: int, default: 0 }\nstart: recurse\nsteps:\n  recurse:\n    kind: call\n    name: 再次调用\n    process: again\n    inputs: { n: n + 1 }\n    next: done\n  done: { kind: end, name: 结束, result: ok }\n";
    let mut h = inline("again", &[("again.yaml", again)]);
    let err = h
        .try_apply(
            Event::Start {
                instance: "1".into(),
                profile: None,
                variables: BTreeMap::new(),
                actor: "li".into(),
            },
            "2025-09-26T10:00:00+08:00",
        )
        .unwrap_err();
    assert_eq!(
        err,
        EngineError::CallTooDeep {
            step: "recurse".into(),
            process: "again".into(),
            depth: MAX_CALL_DEPTH + 1,
            max: MAX_CALL_DEPTH,
        }
    );
    assert!(h.state.is_none(), "nothing was started");
    // With a base case the same recursion runs: it stops calling at n = 3.
    let based = again.replace(
        "start: recurse\n",
        "start: enough\n",
    ).replace(
        "steps:\n",
        "steps:\n  enough:\n    kind: decision\n    name: 是否继续\n    branches:\n      - when: n < 3\n        goto: recurse\n    default: done\n",
    );
    let mut h = inline("again", &[("again.yaml", &based)]);
    h.start_plain("2", "2025-09-26T10:00:00+08:00");
    assert!(h.state().waits.contains_key("recurse"));
}

/// Issue 11, engine 8: an `end` reached in one branch of a parallel split
/// ends the whole case (duban's `end` carries the case's result) and closed
/// the other branch's task without saying so. The history line of the end
/// now names every step it closed.
#[test]
fn an_end_inside_a_parallel_branch_names_the_steps_it_closes() {
    let split = "id: split\nversion: 1\nname: 并行\nroles: { supervision_office: 监督机构 }\nstart: fork\nsteps:\n  fork:\n    kind: parallel\n    name: 同时送达\n    branches: [serve_a, serve_b]\n    join: both\n  serve_a:\n    kind: task\n    name: 送达申请人\n    assignee: { role: supervision_office }\n    outcomes:\n      served: { label: 已送达, next: both }\n      withdrawn: { label: 申请人撤回, next: withdrawn }\n  serve_b:\n    kind: task\n    name: 送达被申请人\n    assignee: { role: supervision_office }\n    outcomes:\n      served: { label: 已送达, next: both }\n  both: { kind: join, name: 汇总, next: done }\n  done: { kind: end, name: 结束, result: served }\n  withdrawn: { kind: end, name: 撤回, result: withdrawn }\n";
    let mut h = inline("split", &[("split.yaml", split)]);
    h.start_plain("5", "2025-09-26T10:00:00+08:00");
    let a = h.task("serve_a").id;
    let b = h.task("serve_b").id;
    h.apply(
        Event::Complete {
            task: a,
            outcome: "withdrawn".into(),
            variables: BTreeMap::new(),
            actor: "li".into(),
        },
        "2025-09-26T11:00:00+08:00",
    );
    assert_eq!(
        h.state().status,
        Status::Completed {
            result: "withdrawn".into()
        }
    );
    let closed = h.state().tasks[&b].closed.clone().unwrap();
    assert_eq!(closed.outcome, "ended");
    let end = h
        .history
        .iter()
        .find(|l| l.what == HistoryKind::Ended)
        .unwrap();
    assert_eq!(
        end.note.as_deref(),
        Some("撤回 (withdrawn)；一并关闭未完成的步骤：送达被申请人（serve_b）")
    );
}

/// Issue 12, found 3: after a crash the reminders a dead process had
/// claimed were overtaken by the expiry another process applied, which
/// deleted them: reminders lost, or sent after the escalation. The timers
/// of one instance now apply oldest first: an expiry applied while earlier
/// reminders are pending applies them first, in the same transition.
#[test]
fn an_expiry_applied_before_its_reminders_applies_them_first() {
    let mut h = H::new("supervision_letter");
    start_letter(&mut h);
    h.complete(
        "draft_letter",
        "issue",
        &[
            ("letter_kind", json!("督办函")),
            ("reply_period", json!("10个工作日")),
        ],
        "2025-09-26T11:00:00+08:00",
    );
    let id = h.task("await_report").id;
    h.apply(
        Event::Receive {
            task: id.clone(),
            actor: "market_bureau".into(),
        },
        "2025-09-26T12:00:00+08:00",
    );
    let expiry = h
        .state()
        .timers
        .values()
        .find(|t| matches!(&t.kind, TimerKind::Expiry { task } if *task == id))
        .unwrap()
        .clone();
    let before = h.history.len();
    h.apply(
        Event::TimerFired { timer: expiry.id },
        "2025-10-17T00:00:05+08:00",
    );
    let whats: Vec<&str> = h.history[before..]
        .iter()
        .map(|l| l.what.as_str())
        .collect();
    assert_eq!(
        &whats[..3],
        ["reminder", "reminder", "expired"],
        "{whats:?}"
    );
    assert!(
        h.state()
            .timers
            .values()
            .all(|t| !matches!(&t.kind, TimerKind::Reminder { task, .. } if *task == id)),
        "no reminder of the expired notice is left pending"
    );
    // The reminders' own rows, fired later by whoever holds them, are stale.
    let reminder_rows: Vec<String> = h
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::CancelTimer { timer } => Some(timer.clone()),
            _ => None,
        })
        .collect();
    assert!(reminder_rows.len() >= 3, "{reminder_rows:?}");
    let err = h
        .try_apply(
            Event::TimerFired {
                timer: reminder_rows[0].clone(),
            },
            "2025-10-17T00:01:00+08:00",
        )
        .unwrap_err();
    assert!(err.is_stale(), "{err}");
}

/// Issue 12, finding 11: `--var agency=nope` and an empty required
/// `case_no=` started an instance (its notices then went to no one). Both
/// are refused with R003, at the start and by `set-var`, and change nothing.
#[test]
fn issue12_unknown_directory_ids_and_empty_required_values_are_refused() {
    let mut h = H::new("supervision_letter");
    let start = |agency: &str, case_no: &str| Event::Start {
        instance: "1".into(),
        profile: None,
        variables: vars(&[
            ("agency", json!(agency)),
            ("case_no", json!(case_no)),
            ("problem", json!("未落实行政执法公示制度")),
        ]),
        actor: "li".into(),
    };
    let at = "2025-09-26T10:00:00+08:00";
    let err = h.try_apply(start("nope", "1"), at).unwrap_err();
    assert_eq!(err.code(), "R003");
    assert_eq!(
        err.to_string(),
        "R003 variable `agency`: `nope` is no agency of the directory (see `duban directory import`)"
    );
    let err = h.try_apply(start("market_bureau", " "), at).unwrap_err();
    assert_eq!(
        err.to_string(),
        "R003 variable `case_no`: is required, so it cannot be empty"
    );
    let err = h.try_apply(start("", "1"), at).unwrap_err();
    assert_eq!(err.code(), "R003");
    assert!(h.state.is_none());
    start_letter(&mut h);
    let before = h.state().clone();
    let set = |name: &str, v: &str| Event::SetVariables {
        variables: vars(&[(name, json!(v))]),
        actor: "admin".into(),
    };
    for (name, v, why) in [
        ("agency", "nope", "`nope` is no agency of the directory"),
        ("case_no", "", "is required, so it cannot be empty"),
    ] {
        let err = h.try_apply(set(name, v), at).unwrap_err();
        assert_eq!(err.code(), "R003");
        assert!(err.to_string().contains(why), "{err}");
        assert_eq!(h.state(), &before);
    }
    // A person or agency of the directory is taken.
    h.apply(set("agency", "qiaoxi_env"), at);
    assert_eq!(h.state().variables["agency"], json!("qiaoxi_env"));
}

/// Issue 16: a reminder applied after the deadline itself (the engine was
/// stopped over both) sends nothing — it would say the period "will end" —
/// and says so in the history; the expiry then escalates as always.
#[test]
fn a_reminder_applied_after_its_deadline_is_not_sent() {
    let mut h = H::new("supervision_letter");
    start_letter(&mut h);
    h.complete(
        "draft_letter",
        "issue",
        &[
            ("letter_kind", json!("督办函")),
            ("reply_period", json!("10个工作日")),
        ],
        "2025-09-26T11:00:00+08:00",
    );
    let task = h.task("await_report").id;
    h.apply(
        Event::Receive {
            task: task.clone(),
            actor: "market_bureau".into(),
        },
        "2025-09-26T12:00:00+08:00",
    );
    let reminder = h
        .state()
        .timers
        .values()
        .find(|t| matches!(&t.kind, TimerKind::Reminder { task: x, .. } if *x == task))
        .cloned()
        .unwrap();
    // The last day is 2025-10-16; the engine comes back on 10-20.
    h.apply(
        Event::TimerFired { timer: reminder.id },
        "2025-10-20T09:00:00+08:00",
    );
    assert!(
        !h.commands.iter().any(|c| matches!(
            c,
            Command::Notify {
                event: NotifyEvent::Reminder,
                ..
            }
        )),
        "{:?}",
        h.commands
    );
    let line = h.history.last().unwrap();
    assert_eq!(line.what, HistoryKind::Reminder);
    assert_eq!(
        line.note.as_deref(),
        Some("提醒未发出：期限已于2025年10月16日届满，按期限届满处理")
    );
    // On time, the same reminder is sent.
    let mut on_time = H::new("supervision_letter");
    start_letter(&mut on_time);
    on_time.complete(
        "draft_letter",
        "issue",
        &[
            ("letter_kind", json!("督办函")),
            ("reply_period", json!("10个工作日")),
        ],
        "2025-09-26T11:00:00+08:00",
    );
    let task = on_time.task("await_report").id;
    on_time.apply(
        Event::Receive {
            task,
            actor: "market_bureau".into(),
        },
        "2025-09-26T12:00:00+08:00",
    );
    on_time.fire("await_report", "reminder");
    assert!(on_time.commands.iter().any(|c| matches!(
        c,
        Command::Notify {
            event: NotifyEvent::Reminder,
            ..
        }
    )));
}

/// A small process whose rules say what a cancellation and an expiry
/// tell, by email only.
fn notices_fixture() -> Definition {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/notices/told.yaml");
    let lib = load_library(&[path], &[]);
    assert!(
        lib.is_valid(),
        "{:?}",
        lib.diagnostics().collect::<Vec<_>>()
    );
    lib.definitions["told"].clone()
}

/// Issue 16: cancelling a case never sends its "concluded" message; its
/// `instance_cancelled` rule is sent instead. An `on_expiry` template goes
/// by the channels the process uses (email here), never by SMS.
#[test]
fn a_cancelled_case_is_not_concluded_and_an_escalation_keeps_the_process_channels() {
    let mut h = H::new("supervision_letter");
    h.def = notices_fixture();
    h.start_plain("7", "2025-09-26T10:00:00+08:00");
    let templates = |h: &H| -> Vec<(String, Channel)> {
        h.commands
            .iter()
            .filter_map(|c| match c {
                Command::Notify {
                    template, channel, ..
                } => Some((template.clone(), *channel)),
                _ => None,
            })
            .collect()
    };
    h.fire("handle", "expiry");
    assert_eq!(templates(&h), [("late".to_string(), Channel::Email)]);
    h.apply(
        Event::Cancel {
            reason: "重复立案".into(),
            actor: "li".into(),
        },
        "2025-09-26T14:00:00+08:00",
    );
    assert_eq!(templates(&h), [("cancelled".to_string(), Channel::Email)]);
    // Ending at its end step sends the "concluded" one.
    let mut ended = H::new("supervision_letter");
    ended.def = notices_fixture();
    ended.start_plain("8", "2025-09-26T10:00:00+08:00");
    ended.complete("handle", "done", &[], "2025-09-26T11:00:00+08:00");
    assert_eq!(
        templates(&ended),
        [("concluded".to_string(), Channel::Email)]
    );
}
