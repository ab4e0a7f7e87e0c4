//! Documents as an office issues them (issue 20): the 督办函 as a PDF in the
//! 党政机关公文格式 (GB/T 9704-2012), read back with poppler's tools as an
//! office's printer or auditor would, and the case file (案卷) of a case.
//!
//! Needs `poppler-utils` (pdfinfo, pdffonts, pdftotext) and a CJK font
//! (`fonts-noto-cjk`); `.ci/run` installs both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use duban_engine::calendar::Calendar;
use duban_engine::service::Engine;
use duban_engine::simulate::Scenario;
use duban_engine::store::{MemoryStore, OutboxKind, Store};
use duban_notifiers::dispatch::Policy;
use duban_notifiers::documents::{paths, DocumentWriter, SimulatedDocuments};
use duban_tests::{at, import_scenario_directory, open_task, processes, vars};

const MM: f64 = 72.0 / 25.4;

fn tool(name: &str, args: &[&str]) -> String {
    let out = Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e} (install poppler-utils)"));
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One word of `pdftotext -bbox`: its box in points and its text.
#[derive(Debug)]
struct Word {
    x_min: f64,
    y_min: f64,
    x_max: f64,
    text: String,
}

fn attr(line: &str, name: &str) -> f64 {
    let start = line.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    let end = start + line[start..].find('"').unwrap();
    line[start..end].parse().unwrap()
}

/// The words of the first page.
fn words(pdf: &Path) -> Vec<Word> {
    let html = tool(
        "pdftotext",
        &["-bbox", "-f", "1", "-l", "1", pdf.to_str().unwrap(), "-"],
    );
    html.lines()
        .filter(|l| l.trim_start().starts_with("<word "))
        .map(|l| Word {
            x_min: attr(l, "xMin"),
            y_min: attr(l, "yMin"),
            x_max: attr(l, "xMax"),
            text: l[l.find('>').unwrap() + 1..l.rfind("</word>").unwrap()].to_string(),
        })
        .collect()
}

/// A letter issued in the engine as `serve` does it (start, draft issued):
/// the engine and the instance.
async fn issue(problem: &str) -> (Arc<Engine<MemoryStore>>, String) {
    let engine = Arc::new(
        Engine::new(MemoryStore::new(), Calendar::builtin())
            .await
            .unwrap(),
    );
    import_scenario_directory(engine.as_ref()).await;
    engine
        .deploy(&[processes()], at("2026-03-02T09:00:00+08:00"))
        .await
        .unwrap();
    let id = engine
        .start(
            "supervision_letter",
            Some("XC"),
            vars(&[("agency", "market_bureau"), ("problem", problem)]),
            "li",
            at("2026-03-02T10:00:00+08:00"),
        )
        .await
        .unwrap()
        .state
        .id;
    let t = open_task(engine.as_ref(), &id, "draft_letter").await;
    engine
        .complete(
            &t,
            "issue",
            vars(&[("letter_kind", "督办函"), ("reply_period", "30日")]),
            "li",
            at("2026-03-03T10:00:00+08:00"),
        )
        .await
        .unwrap();
    (engine, id)
}

/// A letter issued, its document written by the document writer: the PDF's path.
async fn issued_letter(dir: &Path) -> PathBuf {
    // A problem long enough that its paragraph fills whole lines.
    let (engine, id) = issue("未落实行政执法公示制度，行政执法决定未在法定期限内向社会公开，部分执法人员未按规定出示执法证件，执法全过程记录制度落实不到位，重大执法决定法制审核流于形式").await;
    let writer = DocumentWriter::new(engine.clone(), dir.to_path_buf(), Policy::default());
    let round = writer
        .render_due(at("2026-03-03T10:00:01+08:00"))
        .await
        .unwrap();
    assert_eq!((round.sent, round.dead), (1, 0), "the 督办函 was written");
    let row = engine
        .store()
        .outbox_of(&id)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.kind == OutboxKind::RenderDocument)
        .unwrap();
    let [_, _, pdf] = paths(dir, &row, "supervision_letter");
    pdf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervision_letter_is_an_a4_gongwen_with_embedded_fonts_and_its_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let pdf = issued_letter(tmp.path()).await;
    let file = pdf.to_str().unwrap();

    // A4: 595 × 842 pt.
    let info = tool("pdfinfo", &[file]);
    let size = info.lines().find(|l| l.starts_with("Page size:")).unwrap();
    let dims: Vec<f64> = size
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        (dims[0] - 595.0).abs() <= 1.0 && (dims[1] - 842.0).abs() <= 1.0,
        "{size}"
    );

    // Every font embedded (as a subset): none left to the reader's machine.
    let fonts = tool("pdffonts", &[file]);
    let rows: Vec<&str> = fonts.lines().skip(2).collect();
    assert!(!rows.is_empty(), "{fonts}");
    for r in &rows {
        let cols: Vec<&str> = r.split_whitespace().collect();
        let emb = cols[cols.len() - 5];
        assert_eq!(emb, "yes", "a font not embedded: {r}");
    }

    // Its title, 发文字号, the profile's citation and the agency's name.
    let text = tool("pdftotext", &[file, "-"]);
    let flat: String = text.split_whitespace().collect();
    for want in [
        "行政执法监督督办函",
        "许司督〔2026〕1号",
        "《许昌市行政执法监督办法》第十九条",
        "许昌市市场监督管理局：",
        "许昌市司法局",
        "2026年3月3日",
    ] {
        assert!(flat.contains(want), "{want} not in {text}");
    }

    // The 版心: its text starts 37 mm from the top edge and 28 mm from the
    // left edge, and ends 156 mm to the right of that.
    let words = words(&pdf);
    let top = words.iter().map(|w| w.y_min).fold(f64::MAX, f64::min) / MM;
    let left = words.iter().map(|w| w.x_min).fold(f64::MAX, f64::min) / MM;
    assert!((top - 37.0).abs() <= 1.0, "top {top:.2} mm");
    assert!((left - 28.0).abs() <= 1.0, "left {left:.2} mm");
    // A full body line (from the left edge to the right edge of the 版心)
    // of Chinese text holds 28 characters.
    let right = 28.0 + 156.0;
    let full: Vec<&Word> = words
        .iter()
        .filter(|w| (w.x_min / MM - 28.0).abs() <= 1.0 && (w.x_max / MM - right).abs() <= 1.0)
        .collect();
    assert!(!full.is_empty(), "no full line: {words:?}");
    for w in &full {
        let chinese = w.text.chars().all(|c| !c.is_ascii());
        if chinese {
            assert_eq!(w.text.chars().count(), 28, "{}", w.text);
        }
    }
    assert!(
        full.iter().any(|w| w.text.chars().all(|c| !c.is_ascii())),
        "a full line of Chinese: {full:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_file_of_the_overdue_letter_holds_every_history_entry_and_document() {
    let scenario = processes().join("scenarios/supervision_letter_overdue.yaml");
    let sc = Scenario::read(&scenario).unwrap();
    let (report, engine, now) = sc
        .run_keeping(None, None, Calendar::builtin(), &SimulatedDocuments)
        .await
        .unwrap();
    assert!(report.passed(), "{:?}", report.checks);
    let id = report.state.as_ref().unwrap().id.clone();
    let case = duban_notifiers::case_file::build(&engine, &id, now.unwrap())
        .await
        .unwrap();
    let history = engine.history(&id).await.unwrap();
    assert_eq!(case.timeline.len(), history.len(), "every history entry");
    let titles: Vec<&str> = case.documents.iter().map(|d| d.title.as_str()).collect();
    assert_eq!(titles, ["行政执法监督督办函", "行政执法监督决定书"]);
    assert_eq!(
        case.documents[0].number.as_deref(),
        Some("许司督〔2025〕1号")
    );
    assert!(case.numbers.iter().any(|n| n.value == "许司督〔2025〕7号"));
    assert!(case.closed.is_some(), "the case is closed");
    assert!(
        case.deadlines
            .iter()
            .any(|d| d.state == "期限届满" && d.last_day == "2025年10月16日"),
        "{:?}",
        case.deadlines
    );
    // No operator's English reaches the auditor.
    for e in &case.timeline {
        assert!(
            !e.what.contains("outcome ") && !e.what.contains("escalated to"),
            "{}",
            e.what
        );
    }

    let pdf = duban_notifiers::case_file::pdf(case.clone()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("case.pdf");
    std::fs::write(&file, &pdf).unwrap();
    let text = tool("pdftotext", &["-raw", file.to_str().unwrap(), "-"]);
    // A row may run over a page: its page number and the table's header
    // repeated on the next page stand between its halves.
    let flat: String = text
        .lines()
        .filter(|l| !(l.starts_with("— ") && l.ends_with(" —")))
        .collect::<Vec<_>>()
        .join("")
        .split_whitespace()
        .collect::<String>()
        .replace("时间办理人事项", "")
        .replace("事项届满日状态计算说明", "");
    // Every entry, as one row: when, who, what.
    for e in &case.timeline {
        for part in [&e.at, &e.actor, &e.what] {
            let part: String = part.split_whitespace().collect();
            assert!(flat.contains(&part), "`{part}` is not in the case file");
        }
    }
    // Every document, in full, after the listing.
    for d in &case.documents {
        let body: String = d.body.split_whitespace().collect();
        assert!(
            flat.contains(&body),
            "the text of {} is not in the case file",
            d.title
        );
        assert!(
            flat.matches(d.title.as_str()).count() >= 2,
            "{} listed and shown",
            d.title
        );
    }
}

struct Sink;

impl duban_notifiers::Notifier for Sink {
    fn kind(&self) -> OutboxKind {
        OutboxKind::Email
    }
    async fn send(&self, _: &duban_notifiers::Message) -> Result<(), duban_notifiers::SendError> {
        Ok(())
    }
}

/// A character no font has: the document's file is refused with the
/// character named (never printed blank), and the notice's email still
/// goes, carrying the document as its web page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_no_font_can_set_is_refused_but_its_notice_still_goes() {
    let (engine, id) = issue("未落实\u{0378}公示制度").await;
    let tmp = tempfile::tempdir().unwrap();
    let writer = DocumentWriter::new(engine.clone(), tmp.path().to_path_buf(), Policy::default());
    let round = writer
        .render_due(at("2026-03-03T10:00:01+08:00"))
        .await
        .unwrap();
    assert_eq!((round.sent, round.dead), (0, 1));
    let rows = engine.store().outbox_of(&id).await.unwrap();
    let doc = rows
        .iter()
        .find(|r| r.kind == OutboxKind::RenderDocument)
        .unwrap();
    let why = doc.last_error.as_deref().unwrap_or_default();
    assert!(why.contains("U+0378"), "{why}");

    let notice = rows
        .iter()
        .find(|r| r.kind == OutboxKind::Email && r.payload.contains("letter_notice"))
        .unwrap();
    let d = duban_notifiers::dispatch::Dispatcher::new(
        engine.clone(),
        Sink,
        duban_notifiers::links::NoPortal,
        Policy::default(),
    );
    let m = d
        .message(notice, at("2026-03-03T10:00:02+08:00"))
        .await
        .unwrap();
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.attachments[0].filename, "行政执法监督督办函.html");
    let page = String::from_utf8(m.attachments[0].bytes.clone()).unwrap();
    assert!(page.contains("未落实\u{0378}公示制度"), "{page}");
}
