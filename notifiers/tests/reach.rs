//! Who hears of what: a supervision letter left unanswered, driven by the
//! real scheduler, and every message its outbox produces, by channel and
//! recipient (a recording notifier stands in for the gateways).

mod common;

use duban_engine::store::OutboxKind;
use std::sync::{Arc, Mutex};

use chrono::Duration;
use common::{at, engine, issue, open_task, start_letter};
use duban_engine::runtime::Event;
use duban_engine::scheduler::{Scheduler, SchedulerOptions};
use duban_notifiers::dispatch::{Dispatcher, Policy};
use duban_notifiers::links::NoPortal;
use duban_notifiers::{Message, Notifier, SendError};

/// Records what it is given; fails like a gateway when no recipient has an
/// address for its channel.
#[derive(Clone)]
struct Recorder {
    kind: OutboxKind,
    sent: Arc<Mutex<Vec<Message>>>,
}

impl Notifier for Recorder {
    fn kind(&self) -> OutboxKind {
        self.kind
    }
    async fn send(&self, m: &Message) -> Result<(), SendError> {
        let reachable = m.to.iter().any(|r| match self.kind {
            OutboxKind::Sms => r.mobile.is_some(),
            _ => r.email.is_some(),
        });
        if !reachable {
            return Err(SendError::Permanent("no address".into()));
        }
        self.sent.lock().unwrap().push(m.clone());
        Ok(())
    }
}

/// (recipient ids, subject or SMS text) of what was sent.
fn seen(r: &Recorder) -> Vec<(Vec<String>, String)> {
    r.sent
        .lock()
        .unwrap()
        .iter()
        .map(|m| {
            let text = if r.kind == OutboxKind::Sms {
                m.sms.clone()
            } else {
                m.subject.clone()
            };
            (m.to.iter().map(|t| t.id.clone()).collect(), text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_reach_the_assignee_and_the_escalation_the_named_roles() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path()).await;
    let t0 = "2025-09-26T10:00:00+08:00";
    let id = start_letter(&engine, Some("XC"), "许司督〔2025〕7号", t0).await;
    issue(&engine, &id, "10个工作日", t0).await;
    let receive = Event::Receive {
        task: open_task(&engine, &id, "await_report").await,
        actor: "market_bureau".into(),
    };
    engine.apply(&id, &receive, at(t0)).await.unwrap();

    // The engine runs on to the day after expiry.
    let s = Scheduler::new(engine.clone(), SchedulerOptions::default());
    s.fire_due(
        at("2025-10-17T09:00:00+08:00"),
        Some(chrono::DateTime::<chrono::Utc>::MIN_UTC),
    )
    .await
    .unwrap();

    let email = Recorder {
        kind: OutboxKind::Email,
        sent: Default::default(),
    };
    let sms = Recorder {
        kind: OutboxKind::Sms,
        sent: Default::default(),
    };
    let now = at("2025-10-17T09:00:00+08:00") + Duration::minutes(1);
    let d = Dispatcher::new(engine.clone(), email.clone(), NoPortal, Policy::default());
    d.dispatch_due(now).await.unwrap();
    let d = Dispatcher::new(engine.clone(), sms.clone(), NoPortal, Policy::default());
    let sms_round = d.dispatch_due(now).await.unwrap();

    let mails = seen(&email);
    let to = |who: &[&str], subject: &str| {
        mails.iter().any(|(ids, s)| {
            ids.iter().map(String::as_str).eq(who.iter().copied()) && s.contains(subject)
        })
    };
    // The task of the office, the notice of the agency.
    assert!(
        to(&["li"], "【督办】新任务：起草并制发督办文书"),
        "{mails:#?}"
    );
    assert!(
        to(&["market_bureau"], "《行政执法监督督办函》"),
        "{mails:#?}"
    );
    // Issue 16: the deadline's explanation reaches the staff member in
    // Chinese, as the administrator wrote the period (it was English).
    let opened = email
        .sent
        .lock()
        .unwrap()
        .iter()
        .find(|m| m.subject.contains("新任务"))
        .map(|m| m.text.clone())
        .expect("the new-task email");
    assert!(opened.contains("自2025年9月26日起算5个工作日"), "{opened}");
    assert!(!opened.contains("working days"), "{opened}");
    // Both reminders reach the assignee of the late task: the agency.
    let reminders = mails
        .iter()
        .filter(|(ids, s)| ids == &["market_bureau"] && s.starts_with("【督办提醒】"))
        .count();
    assert_eq!(reminders, 2, "{mails:#?}");
    // On expiry the roles the definition names: 监督机构 (on_expiry) and
    // its head (the `escalated` rule), each told once.
    let escalated: Vec<&Vec<String>> = mails
        .iter()
        .filter(|(_, s)| s.starts_with("【督办逾期】被监督机关在期限内书面报告处理情况"))
        .map(|(ids, _)| ids)
        .collect();
    let mut told: Vec<&str> = escalated
        .iter()
        .flat_map(|ids| ids.iter().map(String::as_str))
        .collect();
    told.sort();
    assert_eq!(told, ["li", "wang"], "{mails:#?}");
    // By SMS: the staff who have mobiles; the agency has none, so its
    // reminders by SMS are dead rows an administrator can see.
    let texts = seen(&sms);
    assert!(texts
        .iter()
        .any(|(ids, t)| ids == &["li"] && t.starts_with("【督办】您有新任务")));
    let mut told: Vec<&str> = texts
        .iter()
        .filter(|(_, t)| t.starts_with("【督办逾期】"))
        .flat_map(|(ids, _)| ids.iter().map(String::as_str))
        .collect();
    told.sort();
    assert_eq!(told, ["li", "wang"], "{texts:#?}");
    assert_eq!(
        sms_round.dead, 2,
        "the agency's two SMS reminders: {texts:#?}"
    );
}

/// Issue 16: a case cancelled before its outbox ran (a duplicate case)
/// sends no "new task" email for the task cancelled with it: the row is
/// dropped, saying why; the notice already sent to the agency stays sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cancelled_before_its_email_went_out_is_not_announced() {
    use duban_engine::store::{OutboxStatus, Store};
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path()).await;
    let t0 = "2025-09-26T10:00:00+08:00";
    let id = start_letter(&engine, Some("XC"), "许司督〔2025〕8号", t0).await;
    engine
        .cancel(&id, "重复立案", "li", at("2025-09-26T10:05:00+08:00"))
        .await
        .unwrap();
    let email = Recorder {
        kind: OutboxKind::Email,
        sent: Default::default(),
    };
    let d = Dispatcher::new(engine.clone(), email.clone(), NoPortal, Policy::default());
    let round = d
        .dispatch_due(at("2025-09-26T10:06:00+08:00"))
        .await
        .unwrap();
    let mails = seen(&email);
    assert!(
        !mails.iter().any(|(_, s)| s.contains("新任务")),
        "{mails:#?}"
    );
    assert!(round.dropped >= 1, "{round:?}");
    let dropped = engine
        .store()
        .outbox(Some(OutboxStatus::Dropped))
        .await
        .unwrap();
    assert!(
        dropped.iter().all(|r| r
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("was closed (cancelled) before it went out"))),
        "{dropped:#?}"
    );
}
