//! Documents are rendered from the outbox to files, whole or not at all.

mod common;

use common::{at, engine, issue, start_letter};
use duban_engine::store::OutboxKind;
use duban_engine::store::OutboxStatus;
use duban_engine::store::Store;
use duban_notifiers::dispatch::Policy;
use duban_notifiers::documents::{paths, DocumentWriter};

#[tokio::test]
async fn the_supervision_letter_is_written_once_and_retried_when_the_disk_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path()).await;
    let now = "2025-09-26T10:00:00+08:00";
    let id = start_letter(&engine, None, "许司督〔2025〕7号", now).await;
    issue(&engine, &id, "30日", now).await;
    let now = at(now);
    let row = engine
        .store()
        .outbox(Some(OutboxStatus::Pending))
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.kind == OutboxKind::RenderDocument)
        .expect("the letter waits in the outbox");

    // The documents folder cannot be written (a file is in its way): the
    // row is retried later, and no partial document is left.
    let blocked = tmp.path().join("blocked");
    std::fs::write(&blocked, "not a folder").unwrap();
    let policy = Policy::default();
    let w = DocumentWriter::new(engine.clone(), blocked.clone(), policy.clone());
    let r = w.render_due(now).await.unwrap();
    assert_eq!((r.sent, r.retried, r.dead), (0, 1, 0));
    let pending = engine
        .store()
        .outbox(Some(OutboxStatus::Pending))
        .await
        .unwrap();
    let again = pending.iter().find(|p| p.id == row.id).unwrap();
    assert!(
        again.last_error.as_deref().unwrap().contains("writing"),
        "{again:?}"
    );

    // A writable folder: the letter is there, in full, once.
    let dir = tmp.path().join("documents");
    let w = DocumentWriter::new(engine.clone(), dir.clone(), policy.clone());
    let r = w.render_due(now + policy.delay(1)).await.unwrap();
    assert_eq!((r.sent, r.dead), (1, 0));
    let [txt, html, pdf] = paths(&dir, &row, "supervision_letter");
    let text = std::fs::read_to_string(&txt).unwrap();
    assert!(text.starts_with("行政执法监督督办函"), "{text}");
    assert!(text.contains("许司督〔2025〕7号") && text.contains("许昌市市场监督管理局："));
    assert!(text.contains("未落实行政执法公示制度"));
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.contains("<title>行政执法监督督办函</title>"), "{html}");
    // And the 公文 itself, typeset.
    let pdf = std::fs::read(&pdf).unwrap();
    assert!(
        pdf.starts_with(b"%PDF-") && pdf.len() > 10_000,
        "{} bytes",
        pdf.len()
    );
    let files: Vec<_> = std::fs::read_dir(txt.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 3, "no temporary files left: {files:?}");
    assert_eq!(
        w.render_due(now + chrono::Duration::hours(1))
            .await
            .unwrap()
            .sent,
        0,
        "a written document is not written again"
    );
}
