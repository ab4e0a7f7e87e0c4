//! The JSON API through the router, on a real SQLite store: bearer tokens,
//! a person acting only on their own tasks, a role's token reading only,
//! revocation at once, and bad requests answered 4xx in JSON (issue 14).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use duban_engine::service::Engine;
use duban_engine::store::SqlStore;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;
use common::{at, engine_in};

/// Two reviews: one for the supervision office (li), one for the office
/// head (wang).
const REVIEW: &str = r#"id: api_review
version: 1
name: 审查（测试）
roles: { supervision_office: 监督机构, office_head: 负责人 }
variables:
  opinion: { type: text, label: 审查意见 }
  who: { type: string, required: true }
start: route
steps:
  route:
    kind: decision
    name: 分派
    branches:
      - { when: "who == 'head'", goto: head_review }
    default: review
  review:
    kind: task
    name: 审查
    assignee: { role: supervision_office }
    deadline: { period: 5日 }
    outcomes:
      approve: { label: 同意, fields: [opinion], next: done }
  head_review:
    kind: task
    name: 负责人审查
    assignee: { role: office_head }
    outcomes:
      approve: { label: 同意, next: done }
  done: { kind: end, name: 结束, result: done }
"#;

struct World {
    engine: Arc<Engine<SqlStore>>,
    app: Router,
    li_task: String,
    wang_task: String,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(&dir).await;
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("review.yaml"), REVIEW).unwrap();
    let t0 = at("2026-01-05T10:00:00+08:00");
    engine.deploy(&[lib], t0).await.unwrap();
    let mut first = None;
    for who in ["office", "head"] {
        let mut vars = BTreeMap::new();
        vars.insert("who".to_string(), json!(who));
        let t = engine
            .start("api_review", None, vars, "admin", t0)
            .await
            .unwrap();
        first
            .get_or_insert_with(Vec::new)
            .push(t.state.open_tasks().next().unwrap().id.clone());
    }
    let tasks = first.unwrap();
    let engine = Arc::new(engine);
    let links = common::links();
    let app = duban_portal::app(
        engine.clone(),
        links,
        Arc::new(|| at("2026-01-14T10:00:00+08:00")),
    );
    World {
        engine,
        app,
        li_task: tasks[0].clone(),
        wang_task: tasks[1].clone(),
        _dir: dir,
    }
}

impl World {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        let r = r
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = self.app.clone().oneshot(r).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
        (status, v)
    }

    async fn dump(&self) -> String {
        let mut out = String::new();
        for t in [&self.li_task, &self.wang_task] {
            let id = t.split('.').next().unwrap();
            let s = self.engine.instance(id).await.unwrap();
            let h = self.engine.history(id).await.unwrap();
            out.push_str(&format!(
                "{}\n{}\n",
                serde_json::to_string(&s).unwrap(),
                h.len()
            ));
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_acts_only_on_their_tasks_and_a_revoked_token_is_refused_at_once() {
    let w = world().await;
    let now = at("2026-01-05T11:00:00+08:00");
    let (_, li) = w
        .engine
        .create_token(Some("li"), None, Some("办案系统"), now)
        .await
        .unwrap();
    let (_, office) = w
        .engine
        .create_token(None, Some("supervision_office"), None, now)
        .await
        .unwrap();
    // No token, a malformed one, one never made: 401.
    for t in [
        None,
        Some("nonsense"),
        Some("dbn.000000000000.0000000000000000000000000000000000000000000000000000000000000000"),
    ] {
        let (s, v) = w.call("GET", "/api/v1/tasks", t, "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{t:?}: {v}");
        assert_eq!(v["code"], "unauthorized");
    }
    // li sees li's task, not wang's; it is overdue on 01-14 (5日 from 01-05 ends on Saturday 01-10, so Monday 01-12).
    let (s, v) = w.call("GET", "/api/v1/tasks", Some(&li), "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [w.li_task.as_str()]);
    let (_, late) = w.call("GET", "/api/v1/overdue", Some(&li), "").await;
    assert_eq!(late[0]["id"], w.li_task.as_str(), "{late}");
    assert_eq!(
        late[0]["days_overdue"], 2,
        "the last day was Monday 01-12: {late}"
    );
    let before = w.dump().await;
    // wang's task and instance: 403, nothing written.
    let path = format!("/api/v1/tasks/{}/complete", w.wang_task);
    let (s, v) = w
        .call("POST", &path, Some(&li), r#"{"outcome": "approve"}"#)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "R029");
    let wang_instance = w.wang_task.split('.').next().unwrap();
    let (s, _) = w
        .call(
            "GET",
            &format!("/api/v1/instances/{wang_instance}"),
            Some(&li),
            "",
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Bad bodies: 4xx in JSON, nothing written.
    let own = format!("/api/v1/tasks/{}/complete", w.li_task);
    for (body, status, code) in [
        ("not json", StatusCode::BAD_REQUEST, "bad_request"),
        (
            r#"{"outcome": "approve", "extra": 1}"#,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            r#"{"outcome": "approve"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "R008",
        ),
        (
            r#"{"outcome": "nope"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "R007",
        ),
        (
            r#"{"outcome": "approve", "variables": {"opinion": 5}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "R003",
        ),
    ] {
        let (s, v) = w.call("POST", &own, Some(&li), body).await;
        assert_eq!(
            (s, v["code"].as_str().unwrap_or_default()),
            (status, code),
            "{body}: {v}"
        );
    }
    let (s, _) = w
        .call(
            "POST",
            &own,
            Some(&li),
            &format!(
                r#"{{"outcome": "approve", "variables": {{"opinion": "{}"}}}}"#,
                "x".repeat(300 * 1024)
            ),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _) = w
        .call(
            "POST",
            "/api/v1/tasks/nonsense/complete",
            Some(&li),
            r#"{"outcome": "approve"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The role's token reads, and completes nothing.
    let (s, v) = w.call("GET", "/api/v1/tasks", Some(&office), "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let (s, v) = w
        .call(
            "POST",
            &own,
            Some(&office),
            r#"{"outcome": "approve", "variables": {"opinion": "同意"}}"#,
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str().unwrap()),
        (StatusCode::FORBIDDEN, "read_only")
    );
    assert_eq!(w.dump().await, before, "no refused request wrote anything");
    // li completes li's task, in li's name.
    let (s, v) = w
        .call(
            "POST",
            &own,
            Some(&li),
            r#"{"outcome": "approve", "variables": {"opinion": "同意"}}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");
    let li_instance = w.li_task.split('.').next().unwrap();
    let h = w.engine.history(li_instance).await.unwrap();
    assert!(h
        .iter()
        .any(|l| l.what == duban_engine::runtime::HistoryKind::TaskCompleted && l.actor == "li"));
    let (s, v) = w
        .call(
            "GET",
            &format!("/api/v1/instances/{li_instance}"),
            Some(&li),
            "",
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["variables"]["opinion"], "同意");
    // Revoked: refused on the very next request.
    let id = li.split('.').nth(1).unwrap();
    assert!(w.engine.revoke_token(id, now).await.unwrap());
    let (s, _) = w.call("GET", "/api/v1/tasks", Some(&li), "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        !w.engine.revoke_token(id, now).await.unwrap(),
        "revoked once"
    );
    // A tampered secret of a real id: 401.
    let (_, li2) = w
        .engine
        .create_token(Some("li"), None, None, now)
        .await
        .unwrap();
    let mut forged = li2.clone();
    forged.pop();
    forged.push(if li2.ends_with('0') { '1' } else { '0' });
    let (s, _) = w.call("GET", "/api/v1/tasks", Some(&forged), "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Only the hash is kept.
    let stored = w.engine.tokens().await.unwrap();
    assert_eq!(stored.len(), 3);
    let listed = serde_json::to_string(&stored).unwrap();
    assert!(!listed.contains(li2.split('.').nth(2).unwrap()), "{listed}");
    assert!(!listed.contains("hash"), "{listed}");
}

/// A request with the session cookie of `token`'s session.
async fn staff(
    w: &World,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &str,
) -> (StatusCode, String, axum::http::HeaderMap) {
    let mut r = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    let r = r
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .unwrap();
    let resp = w.app.clone().oneshot(r).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).to_string(), headers)
}

/// Issue 14, the staff's pages: a sign-in link becomes a session cookie;
/// the inbox lists only the person's tasks; another person's task is 403
/// to see and to complete, and nothing is written; their own is completed
/// in their name; a session or sign-in token is no answer link, and a
/// notice link no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_see_and_complete_only_their_own_tasks() {
    use duban_notifiers::links::{Claims, LinkBuilder};
    let w = world().await;
    let links = common::links();
    let signin = links.sign(&Claims {
        recipient: "li".into(),
        expires: at("2026-01-14T10:10:00+08:00").timestamp(),
        purpose: "signin".into(),
        ..Default::default()
    });
    // Without a session: the sign-in page.
    let (s, page, _) = staff(&w, "GET", "/staff/inbox", None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{page}");
    // Without `[email]` no sign-in link can be sent, and it says so.
    let (s, _, _) = staff(&w, "POST", "/staff/signin", None, "email=li%40example.org").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let (s, _, h) = staff(&w, "GET", &format!("/staff/s/{signin}"), None, "").await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let set = h["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let (s, inbox, _) = staff(&w, "GET", "/staff/inbox", Some(&cookie), "").await;
    assert_eq!(s, StatusCode::OK, "{inbox}");
    assert!(
        inbox.contains(&format!("/staff/t/{}", w.li_task)),
        "{inbox}"
    );
    assert!(
        !inbox.contains(&format!("/staff/t/{}", w.wang_task)),
        "{inbox}"
    );
    assert!(
        inbox.contains("background:#fdd"),
        "li's task is overdue on 01-14: {inbox}"
    );
    let before = w.dump().await;
    let (s, _, _) = staff(
        &w,
        "GET",
        &format!("/staff/t/{}", w.wang_task),
        Some(&cookie),
        "",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = staff(
        &w,
        "POST",
        &format!("/staff/t/{}", w.wang_task),
        Some(&cookie),
        "_outcome=approve",
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "without the form secret, and not li's"
    );
    assert_eq!(w.dump().await, before);
    // li's own task: the form, then completed in li's name.
    let (s, page, _) = staff(
        &w,
        "GET",
        &format!("/staff/t/{}", w.li_task),
        Some(&cookie),
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("办理经过"), "{page}");
    let at_ = page.find("name=\"_form\" value=\"").unwrap() + "name=\"_form\" value=\"".len();
    let secret = &page[at_..at_ + page[at_..].find('"').unwrap()];
    // The secret of li's form does not open wang's.
    let (s, _, _) = staff(
        &w,
        "POST",
        &format!("/staff/t/{}", w.wang_task),
        Some(&cookie),
        &format!("_form={secret}&_outcome=approve"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, page, _) = staff(
        &w,
        "POST",
        &format!("/staff/t/{}", w.li_task),
        Some(&cookie),
        &format!("_form={secret}&_outcome=approve"),
    )
    .await;
    assert!(page.contains("请填写“审查意见”（R008）"), "{s} {page}");
    assert_eq!(w.dump().await, before);
    let (s, page, _) = staff(
        &w,
        "POST",
        &format!("/staff/t/{}", w.li_task),
        Some(&cookie),
        &format!("_form={secret}&_outcome=approve&opinion=%E5%90%8C%E6%84%8F"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("已办理"), "{page}");
    let li_instance = w.li_task.split('.').next().unwrap();
    let h = w.engine.history(li_instance).await.unwrap();
    assert!(h
        .iter()
        .any(|l| l.what == duban_engine::runtime::HistoryKind::TaskCompleted && l.actor == "li"));
    // Purposes do not mix.
    let session = cookie.strip_prefix("duban_session=").unwrap();
    let (s, _, _) = staff(&w, "GET", &format!("/n/{session}"), None, "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a session is no answer link");
    let notice = links.answer_link("1", "1.1", "li");
    let notice = notice.rsplit('/').next().unwrap();
    let (s, _, _) = staff(
        &w,
        "GET",
        "/staff/inbox",
        Some(&format!("duban_session={notice}")),
        "",
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "an answer link is no session");
    let (s, _, _) = staff(&w, "GET", &format!("/staff/s/{notice}"), None, "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "nor a sign-in link");
}

/// Issue 14, the office's overdue warning (超期预警): for holders of the
/// supervision office only; the overdue tasks by recipient and step with
/// days overdue, and the same as CSV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_office_sees_what_is_overdue_and_others_do_not() {
    use duban_notifiers::links::Claims;
    let w = world().await;
    let links = common::links();
    let session = |who: &str| {
        format!(
            "duban_session={}",
            links.sign(&Claims {
                recipient: who.into(),
                expires: at("2026-01-14T18:00:00+08:00").timestamp(),
                purpose: "session".into(),
                ..Default::default()
            })
        )
    };
    let (s, page, _) = staff(&w, "GET", "/staff/overdue", Some(&session("li")), "").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(
        page.contains("共1项超期未办结"),
        "li's review is overdue since 01-12: {page}"
    );
    assert!(page.contains("李明"), "{page}");
    assert!(page.contains("已超期2日"), "{page}");
    let (s, csv, h) = staff(&w, "GET", "/staff/overdue.csv", Some(&session("li")), "").await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].starts_with(&format!(
            "li,李明,review,{}",
            w.li_task.split('.').next().unwrap()
        )),
        "{csv}"
    );
    // wang is no supervision office.
    let (s, _, _) = staff(&w, "GET", "/staff/overdue", Some(&session("wang")), "").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = staff(&w, "GET", "/staff/overdue.csv", None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// Issue 14, the instance page: every step of the process marked done, open
/// or not reached, with where it leads, and the timeline in Chinese naming
/// who acted; for a person with a task in it or the office, 403 to others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_page_shows_its_steps_and_timeline_to_those_in_it() {
    use duban_notifiers::links::Claims;
    let w = world().await;
    let links = common::links();
    let session = |who: &str| {
        format!(
            "duban_session={}",
            links.sign(&Claims {
                recipient: who.into(),
                expires: at("2026-01-14T18:00:00+08:00").timestamp(),
                purpose: "session".into(),
                ..Default::default()
            })
        )
    };
    let wang_instance = w.wang_task.split('.').next().unwrap();
    let li_instance = w.li_task.split('.').next().unwrap();
    let (s, page, _) = staff(
        &w,
        "GET",
        &format!("/staff/i/{wang_instance}"),
        Some(&session("wang")),
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("审查（测试）"), "{page}");
    assert!(
        page.contains("<strong>负责人审查</strong>（办理中）"),
        "{page}"
    );
    assert!(page.contains("<strong>分派</strong>（已经过）"), "{page}");
    assert!(page.contains("<strong>审查</strong>（未到）"), "{page}");
    assert!(page.contains("同意 → 结束"), "{page}");
    assert!(page.contains("条件成立时 → 负责人审查"), "{page}");
    assert!(page.contains("办理经过"), "{page}");
    assert!(page.contains("启动"), "the timeline is in Chinese: {page}");
    assert!(!page.contains("task_opened"), "{page}");
    // wang has no task in li's instance and is no office: 403, as for an
    // instance that does not exist.
    for id in [li_instance, "999"] {
        let (s, _, _) = staff(
            &w,
            "GET",
            &format!("/staff/i/{id}"),
            Some(&session("wang")),
            "",
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{id}");
    }
    // The office sees every instance.
    let (s, _, _) = staff(
        &w,
        "GET",
        &format!("/staff/i/{wang_instance}"),
        Some(&session("li")),
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = staff(&w, "GET", &format!("/staff/i/{li_instance}"), None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The case file (案卷) of an instance, linked from its page, for the
    // same people only.
    assert!(
        page.contains(&format!("/staff/i/{wang_instance}/case-file.pdf")),
        "{page}"
    );
    let (s, pdf, headers) = staff(
        &w,
        "GET",
        &format!("/staff/i/{wang_instance}/case-file.pdf"),
        Some(&session("wang")),
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/pdf");
    assert!(pdf.starts_with("%PDF-"));
    let (s, _, _) = staff(
        &w,
        "GET",
        &format!("/staff/i/{li_instance}/case-file.pdf"),
        Some(&session("wang")),
        "",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = staff(
        &w,
        "GET",
        &format!("/staff/i/{li_instance}/case-file.pdf"),
        None,
        "",
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The inbox names steps, not ids, and links the instance.
    let (_, inbox, _) = staff(&w, "GET", "/staff/inbox", Some(&session("wang")), "").await;
    assert!(inbox.contains(">负责人审查</a>"), "{inbox}");
    assert!(
        inbox.contains(&format!("/staff/i/{wang_instance}")),
        "{inbox}"
    );
}

/// Issue 14, `POST /api/v1/messages`: delivered by a person of the office
/// to the instance waiting for it, whose history names them; refused to
/// others and to a role's token; a message nobody waits for is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_delivered_by_the_office_and_names_its_sender() {
    const WAIT: &str = r#"id: api_wait
version: 1
name: 等待复议决定（测试）
roles: { supervision_office: 监督机构 }
variables:
  case_no: { type: string, required: true }
  decision_text: { type: text }
start: await_decision
steps:
  await_decision:
    kind: wait_message
    name: 等待复议决定
    message: decision
    correlation: case_no
    fields: [decision_text]
    next: finished
  finished: { kind: end, name: 办结, result: done }
"#;
    let w = world().await;
    let now = at("2026-01-05T11:00:00+08:00");
    let lib = w._dir.path().join("lib2");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("wait.yaml"), WAIT).unwrap();
    w.engine.deploy(&[lib], now).await.unwrap();
    let mut vars = BTreeMap::new();
    vars.insert("case_no".to_string(), json!("复2026-1"));
    let id = w
        .engine
        .start("api_wait", None, vars, "admin", now)
        .await
        .unwrap()
        .state
        .id;
    let (_, li) = w
        .engine
        .create_token(Some("li"), None, None, now)
        .await
        .unwrap();
    let (_, wang) = w
        .engine
        .create_token(Some("wang"), None, None, now)
        .await
        .unwrap();
    let (_, role) = w
        .engine
        .create_token(None, Some("supervision_office"), None, now)
        .await
        .unwrap();
    let body = r#"{"name": "decision", "key": "复2026-1", "variables": {"decision_text": "维持"}}"#;
    let before = w.engine.instance(&id).await.unwrap();
    for t in [&wang, &role] {
        let (s, v) = w.call("POST", "/api/v1/messages", Some(t), body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    }
    let (s, v) = w
        .call("POST", "/api/v1/messages", Some(&li), "{\"name\": 1}")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = w
        .call(
            "POST",
            "/api/v1/messages",
            Some(&li),
            r#"{"name": "decision", "key": "nobody"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["code"], "R019");
    assert_eq!(
        serde_json::to_string(&w.engine.instance(&id).await.unwrap()).unwrap(),
        serde_json::to_string(&before).unwrap()
    );
    let (s, v) = w.call("POST", "/api/v1/messages", Some(&li), body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["delivered_to"], json!([id]));
    let s = w.engine.instance(&id).await.unwrap();
    assert_eq!(s.status.name(), "completed");
    assert_eq!(s.variables["decision_text"], "维持");
    let h = w.engine.history(&id).await.unwrap();
    assert!(
        h.iter()
            .any(|l| l.what == duban_engine::runtime::HistoryKind::Message && l.actor == "li"),
        "{h:?}"
    );
}
