//! The notice page through the router, without a socket, on a real SQLite
//! store: receipt at the first opening, the answer as the agency, and every
//! bad link or bad form refused with its page and nothing written (issue 14).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use duban_engine::runtime::HistoryKind;
use duban_engine::service::Engine;
use duban_engine::store::SqlStore;
use duban_notifiers::links::{Claims, LinkBuilder, SignedLinks};
use http_body_util::BodyExt;
use tower::ServiceExt;

mod common;
use common::{at, engine_in, root};

fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

struct World {
    engine: Arc<Engine<SqlStore>>,
    links: SignedLinks,
    now: Arc<Mutex<DateTime<Utc>>>,
    app: Router,
    instance: String,
    task: String,
    _dir: tempfile::TempDir,
}

/// A store with the directory, the receipt fixture deployed and one letter
/// sent to market_bureau on 2025-09-22.
async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(&dir).await;
    let t0 = at("2025-09-22T10:00:00+08:00");
    engine
        .deploy(&[root().join("tests/data/receipt")], t0)
        .await
        .unwrap();
    let mut vars = BTreeMap::new();
    vars.insert("agency".to_string(), serde_json::json!("market_bureau"));
    let t = engine
        .start("receipt_letter", None, vars, "wang", t0)
        .await
        .unwrap();
    let instance = t.state.id.clone();
    let task = t.state.open_tasks().next().unwrap().id.clone();
    let engine = Arc::new(engine);
    let links = SignedLinks::new(
        "https://duban.example",
        "k1",
        keys(&[("k1", "the first key")]),
        Duration::days(60),
    )
    .unwrap()
    .at(t0);
    let now = Arc::new(Mutex::new(at("2025-09-23T09:00:00+08:00")));
    let clock_now = now.clone();
    let app = duban_portal::app(
        engine.clone(),
        links.clone(),
        Arc::new(move || *clock_now.lock().unwrap()),
    );
    World {
        engine,
        links,
        now,
        app,
        instance,
        task,
        _dir: dir,
    }
}

impl World {
    fn token(&self) -> String {
        self.links
            .answer_link(&self.instance, &self.task, "market_bureau")
            .strip_prefix("https://duban.example/n/")
            .unwrap()
            .to_string()
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let body = serde_urlencoded(form);
        self.post_raw(path, body).await
    }

    async fn post_raw(&self, path: &str, body: String) -> (StatusCode, String) {
        let r = self
            .app
            .clone()
            .oneshot(
                Request::post(path)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = r.status();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).to_string())
    }

    /// The instance and its history, to compare before and after.
    async fn dump(&self) -> String {
        let s = self.engine.instance(&self.instance).await.unwrap();
        let h = self.engine.history(&self.instance).await.unwrap();
        format!("{}\n{}", serde_json::to_string(&s).unwrap(), h.len())
    }
}

fn serde_urlencoded(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The form secret a page rendered for `token` carries.
fn form_secret(page: &str) -> String {
    let at = page.find("name=\"_form\" value=\"").unwrap() + "name=\"_form\" value=\"".len();
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_opening_records_receipt_and_the_answer_moves_the_case_on_as_the_agency() {
    let w = world().await;
    let path = format!("/n/{}", w.token());
    let (status, page) = w.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("被监督机关书面报告处理情况"), "{page}");
    assert!(page.contains("许昌市市场监督管理局"), "{page}");
    assert!(page.contains("签收时间：2025年9月23日 09:00"), "{page}");
    assert!(page.contains("办理期限"), "{page}");
    let s = w.engine.instance(&w.instance).await.unwrap();
    assert_eq!(
        s.tasks[&w.task].received_at,
        Some(at("2025-09-23T09:00:00+08:00"))
    );
    let received: Vec<_> = w
        .engine
        .history(&w.instance)
        .await
        .unwrap()
        .into_iter()
        .filter(|h| h.what == HistoryKind::Received)
        .collect();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].actor, "market_bureau");
    // Opening again records nothing more.
    *w.now.lock().unwrap() = at("2025-09-24T09:00:00+08:00");
    let before = w.dump().await;
    let (_, again) = w.get(&path).await;
    assert!(again.contains("签收时间：2025年9月23日 09:00"), "{again}");
    assert_eq!(w.dump().await, before);
    // A missing required field: the engine is not asked, the form says so.
    let secret = form_secret(&again);
    let (status, refused) = w
        .post(
            &path,
            &[("_form", &secret), ("_outcome", "handled"), ("report", " ")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(refused.contains("未能提交"), "{refused}");
    assert_eq!(w.dump().await, before);
    // The answer.
    let (status, done) = w
        .post(
            &path,
            &[
                ("_form", &secret),
                ("_outcome", "handled"),
                ("report", "已责令整改并处罚款。"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert!(done.contains("已提交"), "{done}");
    let s = w.engine.instance(&w.instance).await.unwrap();
    assert_eq!(s.status.name(), "completed");
    assert_eq!(s.variables["report"], "已责令整改并处罚款。");
    let answered = w
        .engine
        .history(&w.instance)
        .await
        .unwrap()
        .into_iter()
        .find(|h| h.what == HistoryKind::NoticeAnswered)
        .unwrap();
    assert_eq!(answered.actor, "market_bureau");
    // Replayed: the page shows the answer given, and nothing changes.
    let after = w.dump().await;
    let (status, shown) = w.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(shown.contains("已于2025年9月24日 09:00答复"), "{shown}");
    assert!(shown.contains("已依法处理"), "{shown}");
    let (_, replay) = w
        .post(
            &path,
            &[
                ("_form", &secret),
                ("_outcome", "handled"),
                ("report", "again"),
            ],
        )
        .await;
    assert!(replay.contains("已答复"), "{replay}");
    assert_eq!(w.dump().await, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_links_get_their_page_and_change_nothing() {
    let w = world().await;
    let good = w.token();
    let before = w.dump().await;
    let other_key = SignedLinks::new(
        "https://duban.example",
        "k9",
        keys(&[("k9", "x")]),
        Duration::days(60),
    )
    .unwrap()
    .at(at("2025-09-22T10:00:00+08:00"));
    let foreign = other_key
        .answer_link(&w.instance, &w.task, "market_bureau")
        .replace("https://duban.example", "");
    let (mut tampered, sig) = good
        .rsplit_once('.')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    tampered.push('.');
    tampered.push_str(&sig.chars().rev().collect::<String>());
    let another_task = w.links.sign(&Claims {
        instance: w.instance.clone(),
        task: format!("{}.9", w.instance),
        recipient: "market_bureau".into(),
        expires: 4_000_000_000,
        purpose: String::new(),
    });
    let another_recipient = w.links.sign(&Claims {
        instance: w.instance.clone(),
        task: w.task.clone(),
        recipient: "qiaoxi_env".into(),
        expires: 4_000_000_000,
        purpose: String::new(),
    });
    let no_instance = w.links.sign(&Claims {
        instance: "999".into(),
        task: "999.1".into(),
        recipient: "market_bureau".into(),
        expires: 4_000_000_000,
        purpose: String::new(),
    });
    let expired = w.links.sign(&Claims {
        instance: w.instance.clone(),
        task: w.task.clone(),
        recipient: "market_bureau".into(),
        expires: at("2025-09-23T00:00:00+08:00").timestamp(),
        purpose: String::new(),
    });
    for (path, status, says) in [
        (
            format!("/n/{tampered}"),
            StatusCode::BAD_REQUEST,
            "链接无效",
        ),
        (
            "/n/v1.k1.garbage".to_string(),
            StatusCode::BAD_REQUEST,
            "链接无效",
        ),
        (
            format!("/n/{}", "A".repeat(5000)),
            StatusCode::BAD_REQUEST,
            "链接无效",
        ),
        (foreign, StatusCode::GONE, "链接已失效"),
        (format!("/n/{expired}"), StatusCode::GONE, "链接已过期"),
        (
            format!("/n/{another_task}"),
            StatusCode::FORBIDDEN,
            "无权办理",
        ),
        (
            format!("/n/{another_recipient}"),
            StatusCode::FORBIDDEN,
            "无权办理",
        ),
        (
            format!("/n/{no_instance}"),
            StatusCode::NOT_FOUND,
            "事项不存在",
        ),
        (
            "/elsewhere".to_string(),
            StatusCode::NOT_FOUND,
            "页面不存在",
        ),
    ] {
        let (got, page) = w.get(&path).await;
        assert_eq!(got, status, "{path:.60}: {page}");
        assert!(page.contains(says), "{path:.60}: {page}");
        let (got, page) = w
            .post(&path, &[("_outcome", "handled"), ("report", "x")])
            .await;
        assert!(got.is_client_error(), "{path:.60}: {got} {page}");
        for leak in ["SELECT", "panicked", "R0", "sqlx"] {
            assert!(!page.contains(leak), "{path:.60} leaks {leak}: {page}");
        }
    }
    assert_eq!(w.dump().await, before, "no bad link wrote anything");
    // A form without the page's secret, with a field the notice does not
    // have, repeated, or too large: 4xx, nothing applied (the receipt of
    // the first opening aside, which happens on GET only).
    let path = format!("/n/{good}");
    let (_, page) = w.get(&path).await;
    let secret = form_secret(&page);
    let opened = w.dump().await;
    for (form, status) in [
        (
            vec![("_outcome", "handled"), ("report", "x")],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![("_form", "AAAA"), ("_outcome", "handled"), ("report", "x")],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![
                ("_form", secret.as_str()),
                ("_outcome", "handled"),
                ("report", "x"),
                ("case_no", "1"),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                ("_form", secret.as_str()),
                ("_outcome", "handled"),
                ("report", "x"),
                ("report", "y"),
            ],
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, page) = w.post(&path, &form).await;
        assert_eq!(got, status, "{form:?}: {page}");
    }
    let huge = format!(
        "_form={secret}&_outcome=handled&report={}",
        "x".repeat(300 * 1024)
    );
    let (got, _) = w.post_raw(&path, huge).await;
    assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE);
    let (got, _) = w.post_raw(&path, "%%%&&=".into()).await;
    assert!(got.is_client_error(), "{got}");
    assert_eq!(w.dump().await, opened);
    // After the case is cancelled the link says so.
    w.engine
        .cancel(
            &w.instance,
            "重复立案",
            "wang",
            at("2025-09-25T10:00:00+08:00"),
        )
        .await
        .unwrap();
    let cancelled = w.dump().await;
    let (got, page) = w.get(&path).await;
    assert_eq!(got, StatusCode::GONE, "{page}");
    assert!(page.contains("已撤销"), "{page}");
    let (got, _) = w
        .post(
            &path,
            &[("_form", &secret), ("_outcome", "handled"), ("report", "x")],
        )
        .await;
    assert_eq!(got, StatusCode::GONE);
    assert_eq!(w.dump().await, cancelled);
}

/// A client address over its rate gets 429 with Retry-After, and other
/// addresses are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_over_its_rate_is_refused_for_a_while() {
    let w = world().await;
    let app = duban_portal::app_limited(
        w.engine.clone(),
        w.links.clone(),
        Arc::new(|| at("2025-09-23T09:00:00+08:00")),
        3,
    );
    let from = |ip: [u8; 4]| {
        let mut r = Request::get("/elsewhere").body(Body::empty()).unwrap();
        r.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                ip, 40000,
            ))));
        r
    };
    for _ in 0..3 {
        let r = app.clone().oneshot(from([10, 0, 0, 1])).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let r = app.clone().oneshot(from([10, 0, 0, 1])).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("请求过于频繁"));
    let r = app.clone().oneshot(from([10, 0, 0, 2])).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "another address is not limited"
    );
}

/// A refused answer says why in Chinese, with the stable code, keeps what
/// was typed, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_answer_says_why_in_chinese_and_keeps_the_values() {
    let w = world().await;
    let path = format!("/n/{}", w.token());
    let (_, page) = w.get(&path).await;
    let secret = form_secret(&page);
    let before = w.dump().await;
    let long = "x".repeat(70_000);
    let (status, page) = w
        .post(
            &path,
            &[
                ("_form", &secret),
                ("_outcome", "handled"),
                ("report", &long),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("“report”的填写不符合要求，请检查后重新提交（R003）"),
        "{:.300}",
        &page[page.find("未能提交").unwrap_or(0)..]
    );
    assert!(page.contains(&long[..300]), "the value is kept");
    assert_eq!(w.dump().await, before);
}
