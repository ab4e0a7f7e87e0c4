//! Email through a real SMTP server started by the test (aiosmtpd, from
//! Debian's python3-aiosmtpd, writing what it receives to a Maildir).

mod common;

use duban_engine::store::OutboxStatus;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use chrono::Duration;
use common::{at, engine, free_port};
use duban_engine::service::Engine;
use duban_engine::store::{SqlStore, Store};
use duban_notifiers::dispatch::{Dispatcher, Policy};
use duban_notifiers::email::{EmailNotifier, SmtpConfig, Tls};
use duban_notifiers::links::NoPortal;
use duban_notifiers::Notifier;

/// aiosmtpd on `port`, delivering into the Maildir `dir`.
struct Smtp(Child);

impl Smtp {
    fn start(port: u16, dir: &Path) -> Smtp {
        let child = Command::new("/usr/bin/python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-c",
                "aiosmtpd.handlers.Mailbox",
                dir.to_str().unwrap(),
                "-l",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3-aiosmtpd is installed (.ci/run installs it)");
        common::wait_for_port(port);
        Smtp(child)
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The messages in a Maildir, as raw text.
fn mails(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("new")) else {
        return Vec::new();
    };
    entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    mail.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

fn notifier(port: u16) -> EmailNotifier {
    EmailNotifier::new(&SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: Tls::None,
        username: None,
        password: None,
        from: "督办系统 <duban@sfj.example.org>".into(),
        domain: "sfj.example.org".into(),
        timeout: SmtpConfig::TIMEOUT,
        connections: SmtpConfig::CONNECTIONS,
    })
    .unwrap()
}

/// A letter started and issued: its notice and the office's task wait in the outbox.
async fn start_letter(engine: &Engine<SqlStore>, case: &str, now: &str) -> String {
    let id = common::start_letter(engine, None, case, now).await;
    common::issue(engine, &id, "30日", now).await;
    id
}

/// Pending email rows (documents and SMS wait for their own workers).
async fn pending_notifications(engine: &Engine<SqlStore>) -> Vec<duban_engine::store::OutboxRow> {
    common::rows(engine, "pending", "email").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_email_arrives_with_a_stable_message_id() {
    let tmp = tempfile::tempdir().unwrap();
    let maildir = tmp.path().join("mail");
    let port = free_port();
    let _smtp = Smtp::start(port, &maildir);
    let engine = engine(tmp.path()).await;
    start_letter(&engine, "许司督〔2025〕7号", "2025-09-26T10:00:00+08:00").await;
    let d = Dispatcher::new(engine.clone(), notifier(port), NoPortal, Policy::default());
    let round = d
        .dispatch_due(at("2025-09-26T10:01:00+08:00"))
        .await
        .unwrap();
    assert!(round.sent >= 2, "{round:?}");
    assert_eq!(pending_notifications(&engine).await.len(), 0);
    let all = mails(&maildir);
    let notice = all
        .iter()
        .find(|m| m.contains("scj@example.org"))
        .expect("the agency's notice arrived");
    // Subject: 《行政执法监督督办函》（许司督〔2025〕7号）, RFC 2047-encoded.
    let subject = header(notice, "Subject").unwrap();
    assert!(subject.starts_with("=?utf-8?"), "{subject}");
    assert!(
        notice.contains("To: =?utf-8?")
            || notice.contains("To: market_bureau")
            || notice.contains("scj@example.org"),
        "{notice}"
    );
    let row = engine
        .store()
        .outbox(Some(OutboxStatus::Sent))
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.payload.contains("letter_notice"))
        .unwrap();
    let id = format!("<duban.outbox.{}@sfj.example.org>", row.id);
    assert_eq!(header(notice, "Message-ID"), Some(id.as_str()), "{notice}");
    let body = decoded_text(notice);
    assert!(
        body.contains("许昌市市场监督管理局：")
            && body.contains("未落实行政执法公示制度")
            && body.contains("30日")
            && !body.contains("30 days"),
        "{body}"
    );
    // The 督办函 itself travels with the notice, as its PDF.
    let files = attachments(notice);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].0, "行政执法监督督办函.pdf");
    assert_eq!(
        (files[0].1.as_str(), files[0].2.as_str()),
        ("application/pdf", "%PDF-")
    );
    // Sending the same row again gives the same Message-ID, not a new message identity.
    let again = d
        .message(&row, at("2025-09-26T11:00:00+08:00"))
        .await
        .unwrap();
    notifier(port).send(&again).await.unwrap();
    let ids: Vec<String> = mails(&maildir)
        .iter()
        .filter(|m| m.contains("scj@example.org"))
        .map(|m| header(m, "Message-ID").unwrap().to_string())
        .collect();
    assert_eq!(ids, [id.clone(), id]);
    // Issue 13: the mail server accepted the notice, so it is delivered
    // (what starts a `deemed_receipt` period), once, at that instant.
    let s = engine.instance(&row.instance).await.unwrap();
    let notice = s
        .tasks
        .values()
        .find(|t| t.kind == duban_engine::runtime::TaskKind::Notice)
        .unwrap();
    assert_eq!(
        notice.delivered_at,
        Some(at("2025-09-26T10:01:00+08:00")),
        "{notice:?}"
    );
    let h = engine.history(&row.instance).await.unwrap();
    let delivered = h
        .iter()
        .filter(|l| l.what == duban_engine::runtime::HistoryKind::Delivered)
        .count();
    assert_eq!(delivered, 1);
}

/// The attachments: (file name, decoded text), by Python's email parser.
/// Each attachment's file name, content type and first five bytes.
fn attachments(mail: &str) -> Vec<(String, String, String)> {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "import sys,email,email.policy\nm=email.message_from_string(sys.stdin.read(),policy=email.policy.default)\nfor p in m.iter_attachments():\n    sys.stdout.write(p.get_filename()+'\\x00'+p.get_content_type()+'\\x00'+p.get_payload(decode=True)[:5].decode('latin1')+'\\x01')"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(mail.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\x01')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut parts = s.split('\x00').map(str::to_string);
            let mut next = || parts.next().unwrap_or_default();
            (next(), next(), next())
        })
        .collect()
}

/// The plain-text part, decoded (lettre writes UTF-8 text as base64 or quoted-printable).
fn decoded_text(mail: &str) -> String {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "import sys,email\nm=email.message_from_string(sys.stdin.read())\nfor p in m.walk():\n    if p.get_content_type()=='text/plain': sys.stdout.write(p.get_payload(decode=True).decode())"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(mail.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_wait_while_the_server_is_down_and_all_arrive_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let maildir = tmp.path().join("mail");
    let port = free_port();
    let engine = engine(tmp.path()).await;
    let policy = Policy::default();
    let d = Dispatcher::new(engine.clone(), notifier(port), NoPortal, policy.clone());
    let smtp = Smtp::start(port, &maildir);
    start_letter(&engine, "1号", "2025-09-26T10:00:00+08:00").await;
    assert!(
        d.dispatch_due(at("2025-09-26T10:00:00+08:00"))
            .await
            .unwrap()
            .sent
            > 0
    );
    // The server stops; more notifications are written meanwhile.
    drop(smtp);
    start_letter(&engine, "2号", "2025-09-26T10:05:00+08:00").await;
    start_letter(&engine, "3号", "2025-09-26T10:06:00+08:00").await;
    let mut now = at("2025-09-26T10:10:00+08:00");
    let r = d.dispatch_due(now).await.unwrap();
    assert_eq!((r.sent, r.dead), (0, 0));
    assert!(r.retried > 0);
    let pending = pending_notifications(&engine).await;
    assert_eq!(
        pending.len(),
        r.retried,
        "every row is still there, pending"
    );
    assert!(
        pending
            .iter()
            .all(|p| p.attempts == 1 && p.next_attempt == now + Duration::seconds(30)),
        "{pending:?}"
    );
    // Down a second time: the next retry backs off further.
    now += Duration::seconds(30);
    d.dispatch_due(now).await.unwrap();
    let pending = pending_notifications(&engine).await;
    assert!(
        pending
            .iter()
            .all(|p| p.attempts == 2 && p.next_attempt == now + Duration::seconds(60)),
        "{pending:?}"
    );
    // Nothing is tried before its time.
    assert_eq!(
        d.dispatch_due(now + Duration::seconds(59)).await.unwrap(),
        Default::default()
    );
    // The server returns: every row is delivered.
    let _smtp = Smtp::start(port, &maildir);
    let r = d.dispatch_due(now + Duration::seconds(60)).await.unwrap();
    assert_eq!(r.sent, pending.len());
    assert!(pending_notifications(&engine).await.is_empty());
    let sent: BTreeSet<String> = engine
        .store()
        .outbox(Some(OutboxStatus::Sent))
        .await
        .unwrap()
        .iter()
        .map(|r| format!("<duban.outbox.{}@sfj.example.org>", r.id))
        .collect();
    let received: BTreeSet<String> = mails(&maildir)
        .iter()
        .filter_map(|m| header(m, "Message-ID").map(str::to_string))
        .collect();
    assert_eq!(received, sent, "every row arrived, each once");
}
