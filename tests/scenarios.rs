//! Every scenario of the process library holds (docs/simulation.md).

use duban_engine::calendar::Calendar;
use duban_engine::simulate::Scenario;
use duban_notifiers::documents::SimulatedDocuments;
use duban_tests::{processes, yaml_files};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_library_scenario_passes() {
    let files: Vec<_> = yaml_files(&processes().join("scenarios"))
        .into_iter()
        // Directories (`directory.yaml`, `recruitment_directory.yaml` …) are
        // the scenarios' data, not scenarios.
        .filter(|f| {
            !f.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with("directory.yaml"))
        })
        .collect();
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        let sc = Scenario::read(&f).unwrap_or_else(|e| panic!("{e}"));
        let report = sc
            .run(None, None, Calendar::builtin(), &SimulatedDocuments)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let failed: Vec<_> = report.checks.iter().filter(|c| c.found.is_some()).collect();
        assert!(failed.is_empty(), "{}: {failed:#?}", f.display());
        assert!(!report.checks.is_empty(), "{} checks nothing", f.display());
    }
}

/// Runs a scenario of `tests/data/sim/scenarios/`; returns the failed
/// checks as `(line, expected, found)`.
async fn failures(name: &str) -> Vec<(usize, String, String)> {
    let f = duban_tests::root()
        .join("tests/data/sim/scenarios")
        .join(name);
    let sc = Scenario::read(&f).unwrap_or_else(|e| panic!("{e}"));
    let report = sc
        .run(None, None, Calendar::builtin(), &SimulatedDocuments)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.checks.len() >= 3, "{name} checks little");
    report
        .checks
        .into_iter()
        .filter_map(|c| c.found.map(|f| (c.line, c.expected, f)))
        .collect()
}

/// Issue 11, simulator: named instances, a called child's task, cancel,
/// counted and negative expectations; a missing task is a failed check with
/// its line, and the run goes on to check what follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_acts_on_named_instances_and_children_and_counts() {
    let failed = failures("calls_names_cancel.yaml").await;
    let lines: Vec<usize> = failed.iter().map(|f| f.0).collect();
    assert_eq!(lines, [25, 27, 28], "{failed:#?}");
    assert_eq!(failed[0].1, "the action succeeds");
    assert!(
        failed[0]
            .2
            .starts_with("no open task at step `record` of instance `1`; open: [await_review]"),
        "{failed:#?}"
    );
    assert_eq!(failed[1].1, "`called` at `interview` exactly twice");
    assert!(
        failed[1].2.starts_with("at [2025-09-26T10:00:00+08:00]"),
        "{failed:#?}"
    );
    assert!(
        failed[2].2.starts_with("no instance `nobody`"),
        "{failed:#?}"
    );
}

/// Issue 11, engine 7: a timer already due when its instance started was
/// fired at its due instant, before the start; `serve` applies it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elapsed_timer_is_applied_when_serve_would_see_it() {
    assert_eq!(failures("elapsed_and_recurring.yaml").await, []);
}

/// Issue 11, simulator: `schedule:` entries start instances as the clock
/// passes their occurrences, and a scenario acts on them by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_runs_recurring_starts() {
    assert_eq!(failures("recurring.yaml").await, []);
}

/// Notification and document expectations fail when what they describe
/// did not happen as many times as they say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_and_document_expectations_can_fail() {
    let failed = failures("wrong_counts.yaml").await;
    let expected: Vec<&str> = failed.iter().map(|f| f.1.as_str()).collect();
    assert_eq!(
        expected,
        [
            "a notification by `email` to `wang` exactly twice",
            "a notification from template `escalation` to `zhao`",
            "a document titled `行政执法监督督办函` containing `不存在的文字`",
            "`reminder` at `await_report` never",
            "names that exist",
        ],
        "{failed:#?}"
    );
    assert!(
        failed[0].2.starts_with("1 such; notifications: ["),
        "{failed:#?}"
    );
    assert!(
        failed[2]
            .2
            .starts_with("0 such; documents: [supervision_letter 《行政执法监督督办函》]"),
        "{failed:#?}"
    );
}

/// Issue 12, finding 4: a scenario of 60 KB of `- - - …` overflowed the
/// YAML parser's stack and aborted `duban simulate`; it is refused with
/// its line.
#[test]
fn issue12_a_deeply_nested_scenario_is_refused_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("deep.yaml");
    std::fs::write(
        &f,
        format!(
            "definition: ../supervision_letter.yaml\nsteps:\n  - at: 2025-09-26\n    start: {{ variables: {{ problem: x }} }}\n  - - {}x\n",
            "- ".repeat(30_000)
        ),
    )
    .unwrap();
    let e = Scenario::read(&f).err().expect("refused");
    assert!(e.message.contains("nested"), "{e}");
    assert_eq!(e.line, 5, "{e}");
}

/// Issue 13, multi-instance: one review task per candidate, one public
/// notice (a child) per qualified candidate; an objection re-reviews only
/// that candidate, the lists are collected in item order, and cancelling
/// the batch cancels its candidates' children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_step_runs_once_per_candidate_and_an_objection_re_reviews_only_that_one() {
    assert_eq!(failures("foreach_batch.yaml").await, []);
}

/// Issue 13, multi-instance: a step done once two of three reviewers have
/// answered (the third is no longer needed), and notices to agencies one
/// after another until a CEL condition over the collected list holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_step_over_items_completes_when_its_condition_holds() {
    assert_eq!(failures("foreach_quorum.yaml").await, []);
}

/// Issue 13, receipt that cannot be withheld: a letter never acknowledged
/// is deemed received 3 working days after its email reached the agency's
/// mail server and escalates once the answer period from that receipt has
/// run; an acknowledgement before then counts instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_letter_never_acknowledged_escalates_after_deemed_receipt_and_its_period() {
    assert_eq!(failures("deemed_receipt.yaml").await, []);
}

/// Issue 13, messages between processes: each meeting tells the members'
/// term instances whether they attended (`send_message`, one message per
/// key); two absences in a row start the dismissal (a call that does not
/// wait), an absence then an attendance does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_two_absences_in_a_row_start_a_dismissal_and_an_attendance_resets_the_count() {
    assert_eq!(failures("messages_absences.yaml").await, []);
}

/// Issue 13, facts about a person (一人一档): meetings record attendance
/// as facts about each member (`record:` on a `for_each` item's outcome);
/// the term instances read them (`streak`) after every meeting. Two
/// absences in a row across two meeting instances start the dismissal,
/// whose proposal counts them (`facts(…).filter(…)`); an absence then an
/// attendance does not, and an excused absence is not an absence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_facts_two_absences_in_a_row_across_meetings_start_a_dismissal() {
    assert_eq!(failures("facts_absences.yaml").await, []);
}

/// Issue 13, enum values set by a profile: a candidate's source category
/// `其他` is taken under 荣昌区's open list (RC-4) and refused under 武汉市's
/// closed one (WH-6), the task staying open; a value no profile has is
/// refused at the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_enum_values_set_by_a_profile_differ_per_jurisdiction() {
    assert_eq!(failures("profile_enum.yaml").await, []);
}

/// Issue 13, reports over instances: each agency's annual evaluation
/// counts its letters of the year — sent, answered, on time, overdue (one
/// answered after its escalation), escalated, average days — into
/// variables its record renders; all agencies together count every letter
/// of the year and none of the next; a letter not yet due is not overdue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_report_counts_how_each_agency_answered_the_years_letters() {
    assert_eq!(failures("reports.yaml").await, []);
}

/// Issue 13, a deadline on a call: a child that has not ended in time is
/// cancelled and the caller goes on where `on_expiry` says, escalating; a
/// child that ends in time ends the call as before, its promised date is
/// copied back (`outputs:`) and tracked as a deadline (`until:`), moved off
/// a Sunday.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_call_not_done_in_time_is_given_up_and_escalated() {
    assert_eq!(failures("call_deadline.yaml").await, []);
}

/// Issue 13, recurring starts per member: each occurrence starts one
/// instance per holder of the role, with that holder in its variable, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_recurring_start_starts_one_instance_per_member() {
    assert_eq!(failures("per_member_recurring.yaml").await, []);
}

/// Issue 13, recusal at runtime: a person who declared a conflict cannot
/// act on the task while the decision is pending, nor after it is granted
/// (the task goes to the role's other holder); a recusal the agency asked
/// for and the office refused leaves the person on the task; a recusal
/// asked by someone who is neither the person nor a party is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_recused_person_cannot_complete_the_task() {
    let failed = failures("recusal.yaml").await;
    let lines: Vec<usize> = failed.iter().map(|f| f.0).collect();
    assert_eq!(lines, [14, 17, 25], "{failed:#?}");
    assert!(
        failed[0].2.starts_with("R035 `r1` may not act"),
        "{failed:#?}"
    );
    assert!(failed[0].2.contains("awaits its decision"), "{failed:#?}");
    assert!(failed[1].2.contains("was granted"), "{failed:#?}");
    assert!(
        failed[2].2.starts_with("R029 `zhang` may not act"),
        "{failed:#?}"
    );
}

/// Issue 13, an inclusive choice: both branches taken and joined, one
/// taken and joined, none taken and the default alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_an_inclusive_choice_takes_every_branch_that_holds_and_joins_them() {
    assert_eq!(failures("inclusive_choice.yaml").await, []);
}

/// The workflow patterns the docs promise (sequence, exclusive and
/// parallel gateways, loops, races, deferred choice, for_each, called
/// children, messages by correlation, cancellation, cron starts), each a
/// definition of `tests/data/wfpatterns/` with a scenario that fails when
/// the engine does not keep the documented semantics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_workflow_pattern_runs_as_the_docs_say() {
    let dir = duban_tests::root().join("tests/data/sim/scenarios/wfpatterns");
    let files = yaml_files(&dir);
    assert!(files.len() >= 12, "{files:?}");
    for f in files {
        let name = format!("wfpatterns/{}", f.file_name().unwrap().to_string_lossy());
        let failed = failures(&name).await;
        assert!(failed.is_empty(), "{name}: {failed:#?}");
    }
}

/// A call without `profile:` runs its child under the caller's profile when
/// the child has one of that name, else under the child's default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_called_child_keeps_the_callers_profile() {
    assert_eq!(failures("call_profile.yaml").await, vec![]);
}

/// Issue 19: a running case migrated in the middle of a scenario
/// (docs/migration.md): the period already counted keeps its date under the
/// new version's longer period, and its reminder and expiry fire once each
/// at the renamed step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_migrates_its_case_and_the_counted_period_keeps_its_date() {
    assert_eq!(failures("migrate.yaml").await, vec![]);
}
