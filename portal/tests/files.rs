//! The notice page's documents and attachments (issue 14): the 督办函 is
//! shown as issued; files are taken only within their limits and kinds,
//! stored beside the documents, removed when the answer is refused, and
//! served back only as downloads; every bad upload is 4xx and writes
//! nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use duban_engine::service::Engine;
use duban_engine::store::SqlStore;
use duban_notifiers::links::{LinkBuilder, SignedLinks};
use duban_portal::files::{MAX_FILES, MAX_FILE_BYTES};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

mod common;
use common::{at, engine_in, links, root};

struct World {
    engine: Arc<Engine<SqlStore>>,
    app: Router,
    links: SignedLinks,
    instance: String,
    task: String,
    files: PathBuf,
    _dir: tempfile::TempDir,
}

/// The library deployed, a 督办函 issued to market_bureau on 2025-09-26.
async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(&dir).await;
    let t0 = at("2025-09-26T10:00:00+08:00");
    engine
        .deploy(&[root().join("processes")], t0)
        .await
        .unwrap();
    let v: BTreeMap<String, serde_json::Value> = [
        ("agency", json!("market_bureau")),
        ("case_no", json!("许司督〔2025〕7号")),
        ("problem", json!("未落实行政执法公示制度")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let s = engine
        .start("supervision_letter", None, v, "li", t0)
        .await
        .unwrap()
        .state;
    let draft = s.open_tasks().next().unwrap().id.clone();
    let v: BTreeMap<String, serde_json::Value> = [
        ("letter_kind", json!("督办函")),
        ("reply_period", json!("30日")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let s = engine
        .complete(&draft, "issue", v, "li", t0)
        .await
        .unwrap()
        .state;
    let task = s
        .open_tasks()
        .find(|t| t.step == "await_report")
        .unwrap()
        .id
        .clone();
    let engine = Arc::new(engine);
    let links = links().at(t0);
    let files = dir.path().join("documents");
    let app = duban_portal::app_with(
        engine.clone(),
        links.clone(),
        Arc::new(|| at("2025-09-29T09:00:00+08:00")),
        duban_portal::Options {
            files: Some(files.clone()),
            ..Default::default()
        },
    );
    World {
        engine,
        app,
        links,
        instance: s.id,
        task,
        files,
        _dir: dir,
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

impl World {
    fn path(&self) -> String {
        self.links
            .answer_link(&self.instance, &self.task, "market_bureau")
            .strip_prefix("https://duban.example")
            .unwrap()
            .to_string()
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    async fn post_multipart(&self, fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> Reply {
        let b = "duban-test-boundary";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                    .as_bytes(),
            );
        }
        for (name, bytes) in files {
            body.extend_from_slice(
                format!(
                    "--{b}\r\nContent-Disposition: form-data; name=\"_attachment\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        self.send(
            Request::post(self.path())
                .header("content-type", format!("multipart/form-data; boundary={b}"))
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// The instance, its history and every file under the documents
    /// directory, to compare before and after.
    async fn dump(&self) -> String {
        let s = self.engine.instance(&self.instance).await.unwrap();
        let h = self.engine.history(&self.instance).await.unwrap();
        let mut files = Vec::new();
        if self.files.exists() {
            for e in walk(&self.files) {
                files.push(e.display().to_string());
            }
        }
        format!(
            "{}\n{}\n{files:?}",
            serde_json::to_string(&s).unwrap(),
            h.len()
        )
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn form_secret(page: &str) -> String {
    let at = page.find("name=\"_form\" value=\"").unwrap() + "name=\"_form\" value=\"".len();
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

const PDF: &[u8] = b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF\n";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_letter_is_shown_and_attachments_go_with_the_answer_as_downloads() {
    let w = world().await;
    let page = w.get(&w.path()).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("行政执法监督督办函"), "{html}");
    assert!(html.contains("enctype=\"multipart/form-data\""), "{html}");
    assert!(
        html.contains("type=\"file\" name=\"_attachment\""),
        "{html}"
    );
    // The 督办函 itself, as issued: the PDF, and as a web page under the
    // page's restrictive policy.
    let pdf = w.get(&format!("{}/d/supervision_letter", w.path())).await;
    assert_eq!(pdf.status, StatusCode::OK);
    assert_eq!(pdf.headers["content-type"], "application/pdf");
    assert!(pdf.body.starts_with(b"%PDF-"), "a PDF");
    // Saved under its title: 行政执法监督督办函.pdf, percent-encoded.
    let saved = pdf.headers["content-disposition"].to_str().unwrap();
    assert!(
        saved.starts_with("inline;")
            && saved.contains("filename*=UTF-8''%E8%A1%8C")
            && saved.ends_with(".pdf"),
        "{saved}"
    );
    // Once serve's document writer has written the 督办函, the portal shows
    // that very file.
    let writer = duban_notifiers::documents::DocumentWriter::new(
        w.engine.clone(),
        w.files.clone(),
        duban_notifiers::dispatch::Policy::default(),
    );
    let round = writer
        .render_due(at("2025-09-26T10:00:01+08:00"))
        .await
        .unwrap();
    assert_eq!(round.sent, 1);
    let written: Vec<_> = std::fs::read_dir(w.files.join(&w.instance))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let again = w.get(&format!("{}/d/supervision_letter", w.path())).await;
    assert_eq!(
        again.body,
        std::fs::read(&written[0]).unwrap(),
        "the written file"
    );
    assert!(
        html.contains(&format!("{}/d/supervision_letter?format=html", w.path())),
        "{html}"
    );
    let doc = w
        .get(&format!("{}/d/supervision_letter?format=html", w.path()))
        .await;
    assert_eq!(doc.status, StatusCode::OK, "{}", doc.text());
    assert!(
        doc.text().contains("<title>行政执法监督督办函</title>"),
        "{}",
        doc.text()
    );
    assert!(doc.text().contains("许司督〔2025〕7号"), "{}", doc.text());
    assert!(doc.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    let none = w.get(&format!("{}/d/decision_document", w.path())).await;
    assert_eq!(
        none.status,
        StatusCode::NOT_FOUND,
        "a document of another step"
    );

    let secret = form_secret(&html);
    let done = w
        .post_multipart(
            &[
                ("_form", &secret),
                ("_outcome", "handled"),
                ("handling_report", "已在政府网站公示执法信息。"),
            ],
            &[("整改报告.pdf", PDF), ("../现场照片.png", PNG)],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert!(done.text().contains("附件2个已一并提交"), "{}", done.text());
    let s = w.engine.instance(&w.instance).await.unwrap();
    assert!(s.tasks[&w.task].closed.is_some());
    // Stored beside the documents under names of ours, never the sender's.
    // (The documents serve wrote lie beside them, in the instance's folder.)
    let documents = w.files.join(&w.instance);
    let stored: Vec<_> = walk(&w.files)
        .into_iter()
        .filter(|p| p.parent() != Some(documents.as_path()))
        .collect();
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(stored
        .iter()
        .all(|p| p.starts_with(w.files.join(&w.instance).join("attachments"))));
    // The answered link lists them; each comes back as a download only.
    let shown = w.get(&w.path()).await.text();
    assert!(
        shown.contains("整改报告.pdf") && shown.contains("现场照片.png"),
        "{shown}"
    );
    assert!(!shown.contains("../"), "{shown}");
    let a = w.get(&format!("{}/a/1", w.path())).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, PDF);
    assert_eq!(a.headers["content-type"], "application/octet-stream");
    assert!(a.headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment;"));
    assert_eq!(a.headers["x-content-type-options"], "nosniff");
    assert_eq!(
        w.get(&format!("{}/a/9", w.path())).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        w.get(&format!("{}/a/x", w.path())).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_with_a_reason_and_write_nothing() {
    let w = world().await;
    let html = w.get(&w.path()).await.text();
    let secret = form_secret(&html);
    let before = w.dump().await;
    let answer = [
        ("_form", secret.as_str()),
        ("_outcome", "handled"),
        ("handling_report", "已整改。"),
    ];
    // A page disguised as a PDF; a kind not taken.
    for (name, bytes, why) in [
        (
            "报告.pdf",
            b"<html><script>alert(1)</script>".as_slice(),
            "不符",
        ),
        ("报告.html", b"<html>".as_slice(), "格式不受理"),
        ("空.pdf", b"".as_slice(), "空文件"),
    ] {
        let r = w.post_multipart(&answer, &[(name, bytes)]).await;
        assert!(
            r.status.is_success(),
            "the form is shown again: {}",
            r.status
        );
        assert!(r.text().contains(why), "{name}: {}", r.text());
        assert!(r.text().contains("已整改。"), "the values are kept");
        assert_eq!(w.dump().await, before, "{name}");
    }
    // Too big, too many.
    let big = [PDF, &vec![b'0'; MAX_FILE_BYTES]].concat();
    let r = w.post_multipart(&answer, &[("大.pdf", &big)]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert!(r.text().contains("超过10MB"), "{}", r.text());
    let many: Vec<(&str, &[u8])> = (0..=MAX_FILES).map(|_| ("a.pdf", PDF)).collect();
    let r = w.post_multipart(&answer, &many).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert!(r.text().contains("附件最多5个"), "{}", r.text());
    // A file under another name; a body of another kind; a broken multipart.
    let b = "x";
    let odd = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"evil\"; filename=\"a.pdf\"\r\n\r\n%PDF-\r\n--{b}--\r\n"
    );
    for (ct, body) in [
        (format!("multipart/form-data; boundary={b}"), odd),
        (
            "application/json".to_string(),
            "{\"_outcome\":\"handled\"}".to_string(),
        ),
        ("multipart/form-data".to_string(), "garbage".to_string()),
        ("text/plain".to_string(), "a=b".to_string()),
    ] {
        let r = w
            .send(
                Request::post(w.path())
                    .header("content-type", &ct)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        assert!(r.status.is_client_error(), "{ct}: {}", r.status);
        assert!(r.text().contains("表单"), "{ct}: {}", r.text());
        assert_eq!(w.dump().await, before, "{ct}");
    }
    // A huge text field in a multipart form.
    let long = "x".repeat(300 * 1024);
    let r = w
        .post_multipart(
            &[
                ("_form", &secret),
                ("_outcome", "handled"),
                ("handling_report", &long),
            ],
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(w.dump().await, before);
    // The engine refuses the answer (a report over its limit): the files
    // stored for it are removed again.
    let long = "x".repeat(70_000);
    let r = w
        .post_multipart(
            &[
                ("_form", &secret),
                ("_outcome", "handled"),
                ("handling_report", &long),
            ],
            &[("报告.pdf", PDF)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("（R003）"), "{:.400}", r.text());
    assert_eq!(w.dump().await, before);
}
