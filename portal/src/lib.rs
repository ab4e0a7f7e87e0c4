//! The answer portal: the page an agency answers a notice on, reached by
//! the signed link in the notice's email, without an account (issue 14).
//!
//! [`app`] is the axum [`Router`]; `duban serve` mounts it on the address
//! of `[portal]` in `duban.toml`, and tests call it without a socket.
//!
//! - `GET /n/TOKEN` checks the link ([`SignedLinks::verify`]): damaged,
//!   altered, signed by a key this server does not hold, expired, of a task
//!   that is not a notice to the link's recipient, or of a case that is
//!   over — each gets a page saying so in Chinese, and nothing changes. A
//!   valid link of an open notice records **receipt** (签收) the first time
//!   it is opened (`Event::Receive` by the recipient, which starts a `from:
//!   receipt` deadline), then shows the notice, its deadline with how it was
//!   counted, and a form with the outcomes its step allows, each field as
//!   its type says (an enum a list to choose from, a date a date field). An
//!   answered notice shows the answer given and when.
//! - `POST /n/TOKEN` applies the chosen outcome as `Engine::complete` with
//!   the recipient as actor, so the history names the agency. The form
//!   carries a secret bound to the link (CSRF). A refused answer (a guard,
//!   a missing field, a value of the wrong type) shows the engine's message
//!   on the form with the values kept; a field no outcome has, or a form
//!   over [`MAX_FORM_BYTES`], is refused with 4xx before anything is
//!   applied.
//!
//! - The form takes attachments (证明材料, [`files`]) when the portal has a
//!   documents directory: checked by kind and size, stored beside the
//!   documents, removed again if the answer is refused, and served back
//!   only as downloads (`GET /n/TOKEN/a/N`). The notice's documents (督办函,
//!   通知书, …) are shown at `GET /n/TOKEN/d/DOCUMENT`, rendered as they
//!   were issued.
//! - `/staff/…` are the staff's pages ([`staff`]): sign-in by an emailed
//!   link, the inbox, the task page, the instance page with its steps.
//! - `/api/v1/…` is the JSON API for other systems ([`api`]), with bearer
//!   tokens.
//!
//! Pages are server-rendered HTML in Chinese, readable on a phone, without
//! JavaScript. No response carries a stack trace, SQL, or the text of an
//! internal error: a store failure is a 503 page and a log line.

// A handler's early answer is a whole `Response` (a page, a JSON error):
// the `Err` of the helpers that find it is one, as axum's own extractors'.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use duban_engine::calendar::LEGAL_TZ;
use duban_engine::definition::{Definition, StepKind, ValueType};
use duban_engine::runtime::{Directory, Event, InstanceState, Status, TaskKind, TaskState};
use duban_engine::service::{Engine, ServiceError, Values};
use duban_engine::store::SqlStore;
use duban_notifiers::links::{Claims, LinkError, SignedLinks};

mod api;
pub mod files;
mod staff;

/// The largest form body accepted: an answer is a few fields of text.
pub const MAX_FORM_BYTES: usize = 256 * 1024;

/// What the current instant is: the clock, or a fixed one in tests and
/// rehearsals (`DUBAN_NOW`).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The most requests one address may make in a minute, by default: a
/// person answering a notice makes a handful; a script guessing links
/// makes thousands.
pub const REQUESTS_PER_MINUTE: u32 = 120;

/// What the handlers share.
#[derive(Clone)]
struct Portal {
    engine: Arc<Engine<SqlStore>>,
    links: SignedLinks,
    clock: Clock,
    limiter: Arc<Limiter>,
    /// Sends the staff's sign-in links; `None` without `[email]`.
    mailer: Option<Arc<duban_notifiers::email::EmailNotifier>>,
    /// The documents directory, where attachments are stored; `None` takes
    /// no attachments.
    files: Option<std::path::PathBuf>,
}

/// What a portal is set up with beyond its engine, links and clock.
#[derive(Clone)]
pub struct Options {
    /// The most requests one address may make in a minute.
    pub per_minute: u32,
    /// Sends the staff's sign-in links (`[email]`); without it, sign-in
    /// says email is not configured.
    pub mailer: Option<Arc<duban_notifiers::email::EmailNotifier>>,
    /// The documents directory: attachments are stored under it; without
    /// it, the forms take none.
    pub files: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            per_minute: REQUESTS_PER_MINUTE,
            mailer: None,
            files: None,
        }
    }
}

/// Requests per client address in the current minute (a fixed window, on
/// the machine's monotonic clock: it limits load, it is not legal time).
struct Limiter {
    per_minute: u32,
    seen: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
}

impl Limiter {
    /// Whether `addr` may make one more request now; when not, the seconds
    /// until it may.
    fn admit(&self, addr: std::net::IpAddr) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let window = std::time::Duration::from_secs(60);
        let mut seen = self.seen.lock().expect("not poisoned");
        if seen.len() > 10_000 {
            seen.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let e = seen.entry(addr).or_insert((now, 0));
        if now.duration_since(e.0) >= window {
            *e = (now, 0);
        }
        if e.1 >= self.per_minute {
            return Err((window - now.duration_since(e.0)).as_secs() + 1);
        }
        e.1 += 1;
        Ok(())
    }
}

/// Refuses a client address over its rate with 429 (a page, or JSON under
/// `/api/`). The address is the connection's (`duban serve` passes it);
/// without one (a test calling the router) nothing is limited.
async fn limit(
    State(p): State<Portal>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let addr = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(Err(wait)) = addr.map(|a| p.limiter.admit(a)) {
        let mut r = if req.uri().path().starts_with("/api/") {
            (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(serde_json::json!({
                    "code": "rate_limited",
                    "message": format!("too many requests from this address; retry in {wait} s"),
                })),
            )
                .into_response()
        } else {
            page(
                StatusCode::TOO_MANY_REQUESTS,
                "请求过于频繁",
                &format!("<p>来自您所在地址的请求过多，请{wait}秒后再试。</p>"),
            )
        };
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    next.run(req).await
}

/// The portal's routes over `engine`, checking links with `links`, each
/// client address limited to [`REQUESTS_PER_MINUTE`].
pub fn app(engine: Arc<Engine<SqlStore>>, links: SignedLinks, clock: Clock) -> Router {
    app_limited(engine, links, clock, REQUESTS_PER_MINUTE)
}

/// [`app`] with another rate per address.
pub fn app_limited(
    engine: Arc<Engine<SqlStore>>,
    links: SignedLinks,
    clock: Clock,
    per_minute: u32,
) -> Router {
    app_full(engine, links, clock, per_minute, None)
}

/// [`app`] with another rate per address and the mailer that sends the
/// staff's sign-in links (`duban serve` gives the one of `[email]`).
pub fn app_full(
    engine: Arc<Engine<SqlStore>>,
    links: SignedLinks,
    clock: Clock,
    per_minute: u32,
    mailer: Option<Arc<duban_notifiers::email::EmailNotifier>>,
) -> Router {
    app_with(
        engine,
        links,
        clock,
        Options {
            per_minute,
            mailer,
            files: None,
        },
    )
}

/// The portal's routes with every option given.
pub fn app_with(
    engine: Arc<Engine<SqlStore>>,
    links: SignedLinks,
    clock: Clock,
    options: Options,
) -> Router {
    let state = Portal {
        engine,
        links,
        clock,
        limiter: Arc::new(Limiter {
            per_minute: options.per_minute,
            seen: Default::default(),
        }),
        mailer: options.mailer,
        files: options.files,
    };
    Router::new()
        .route(
            "/n/{token}",
            get(show)
                .post(answer)
                .layer(DefaultBodyLimit::max(files::MAX_UPLOAD_BYTES)),
        )
        .route("/n/{token}/d/{document}", get(document))
        .route("/n/{token}/a/{n}", get(attachment))
        .merge(api::routes())
        .merge(staff::routes())
        .fallback(|| async {
            page(
                StatusCode::NOT_FOUND,
                "页面不存在",
                "<p>没有这个页面。请使用通知邮件中的链接。</p>",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limit))
        .with_state(state)
}

// ----- pages ------------------------------------------------------------

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem;line-height:1.6}\
label{display:block;margin-top:.8rem;font-weight:bold}input,select,textarea{width:100%;font-size:1rem;padding:.3rem;box-sizing:border-box}\
textarea{min-height:6rem}.outcome{margin:.4rem 0}.outcome input{width:auto}button{margin-top:1rem;font-size:1.1rem;padding:.5rem 1.5rem}\
.error{color:#a00;border:1px solid #a00;padding:.5rem}.due{background:#f4f4f4;padding:.5rem}";

/// A whole page: `body` is HTML already escaped.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head>\
         <body><h1>{}</h1>{body}</body></html>",
        esc(title),
        esc(title)
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

fn beijing(t: DateTime<Utc>) -> String {
    t.with_timezone(&LEGAL_TZ)
        .format("%Y年%-m月%-d日 %H:%M")
        .to_string()
}

/// The days a task is overdue at `now`: the calendar days in Beijing time
/// since its last day (`YYYY-MM-DD`), 1 on the day after it.
pub(crate) fn days_overdue(last_day: Option<&str>, now: DateTime<Utc>) -> i64 {
    let today = now.with_timezone(&LEGAL_TZ).date_naive();
    last_day
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map_or(0, |d| (today - d).num_days().max(0))
}

/// The page of a link that cannot be used.
fn refused(e: &LinkError) -> Response {
    match e {
        LinkError::Expired(at) => page(
            StatusCode::GONE,
            "链接已过期",
            &format!(
                "<p>此链接已于{}过期。请联系发出通知的监督机构，取得新的链接。</p>",
                esc(&beijing(*at))
            ),
        ),
        LinkError::UnknownKey(_) => page(
            StatusCode::GONE,
            "链接已失效",
            "<p>此链接已失效。请联系发出通知的监督机构，取得新的链接。</p>",
        ),
        LinkError::Malformed | LinkError::BadSignature => page(
            StatusCode::BAD_REQUEST,
            "链接无效",
            "<p>此链接不完整或已被改动。请从通知邮件中完整复制链接后再打开。</p>",
        ),
    }
}

/// A store failure: logged, and a page that says to try again.
fn unavailable(e: &ServiceError) -> Response {
    tracing::error!(error = %e, "portal: the store failed");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "暂时无法办理",
        "<p>系统暂时无法处理您的请求，未作任何更改。请稍后再试。</p>",
    )
}

fn not_for_you() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "无权办理",
        "<p>此链接与所要办理的事项不符。请使用通知邮件中的链接。</p>",
    )
}

// ----- what a link stands for -------------------------------------------

/// The notice a valid link names, with its instance and definition.
struct Notice {
    claims: Claims,
    state: InstanceState,
    def: Arc<Definition>,
}

impl Notice {
    fn task(&self) -> &TaskState {
        &self.state.tasks[&self.claims.task]
    }
}

/// Checks `token` and loads what it names, or the page to answer with.
async fn notice(p: &Portal, token: &str, now: DateTime<Utc>) -> Result<Notice, Response> {
    let claims = p.links.verify(token, now).map_err(|e| refused(&e))?;
    // A sign-in link or a session is no answer link.
    if !claims.purpose.is_empty() {
        return Err(refused(&LinkError::Malformed));
    }
    let state = match p.engine.instance(&claims.instance).await {
        Ok(s) => s,
        Err(ServiceError::UnknownInstance(_)) => {
            return Err(page(
                StatusCode::NOT_FOUND,
                "事项不存在",
                "<p>找不到此链接所指的事项。请联系发出通知的监督机构。</p>",
            ))
        }
        Err(e) => return Err(unavailable(&e)),
    };
    let ours = state
        .tasks
        .get(&claims.task)
        .is_some_and(|t| t.kind == TaskKind::Notice && t.assignees.contains(&claims.recipient));
    if !ours {
        return Err(not_for_you());
    }
    let def = p
        .engine
        .definition(&state.definition, Some(state.version))
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(Notice { claims, state, def })
}

/// The page of a notice that is closed: the answer given, or why none is
/// needed any more.
fn closed_page(p: &Portal, token: &str, n: &Notice) -> Response {
    let t = n.task();
    let c = t.closed.as_ref().expect("closed");
    let given = attachments_list(p, token, n);
    let outcomes = match &n.def.steps[&t.step].kind {
        StepKind::Notice { outcomes, .. } => Some(outcomes),
        _ => None,
    };
    match outcomes.and_then(|o| o.get(&c.outcome)) {
        Some(o) => page(
            StatusCode::OK,
            "已答复",
            &format!(
                "<p>本事项（{}）已于{}答复：<strong>{}</strong>。</p>{given}<p>无需再次办理。</p>",
                esc(&n.def.steps[&t.step].name),
                esc(&beijing(c.at)),
                esc(&o.label)
            ),
        ),
        None => {
            let why = match (&n.state.status, c.outcome.as_str()) {
                (Status::Cancelled { .. }, _) | (_, "cancelled") => "本事项已撤销",
                (_, "expired") => "本事项的办理期限已届满，已转入后续程序",
                _ => "本事项已办结",
            };
            page(
                StatusCode::GONE,
                "无需办理",
                &format!(
                    "<p>{why}，无需再通过此链接答复。如有疑问，请联系发出通知的监督机构。</p>"
                ),
            )
        }
    }
}

/// The attachments given with the notice's answer, as a list of downloads
/// (empty without any).
fn attachments_list(p: &Portal, token: &str, n: &Notice) -> String {
    let Some(root) = &p.files else {
        return String::new();
    };
    let given = files::list(root, &n.claims.instance, &n.claims.task);
    if given.is_empty() {
        return String::new();
    }
    let mut s = String::from("<p>随答复提交的附件：</p><ul>");
    for a in given {
        s.push_str(&format!(
            "<li><a href=\"/n/{}/a/{}\" download>{}</a>（{}KB）</li>",
            esc(token),
            a.n,
            esc(&a.name),
            a.size.div_ceil(1024)
        ));
    }
    s.push_str("</ul>");
    s
}

/// The notice's documents (督办函, 通知书, …) as links to read them, each
/// under its title as issued.
fn documents_list(p: &Portal, token: &str, n: &Notice) -> String {
    let StepKind::Notice { documents, .. } = &n.def.steps[&n.task().step].kind else {
        return String::new();
    };
    if documents.is_empty() {
        return String::new();
    }
    let mut s = String::from("<p>文书：</p><ul>");
    for id in documents {
        if let Some(d) = n.def.documents.get(id) {
            let t = n.task();
            let dir = p.engine.directory();
            let title = duban_notifiers::documents::render_document(
                &n.def,
                &n.state,
                duban_engine::simulate::Issued {
                    document: id,
                    step: &t.step,
                    task: Some(&n.claims.task),
                },
                dir.as_ref(),
                t.opened_at,
            )
            .map_or_else(|_| d.title.clone(), |r| r.subject);
            s.push_str(&format!(
                "<li><a href=\"/n/{t}/d/{d}\">{title}</a>（PDF；<a href=\"/n/{t}/d/{d}?format=html\">网页版</a>）</li>",
                t = esc(token),
                d = esc(id),
                title = esc(&title)
            ));
        }
    }
    s.push_str("</ul>");
    s
}

/// The form's HTML for the notice's outcomes, with `values` filled in and
/// `error` above it.
fn form_page(
    p: &Portal,
    token: &str,
    n: &Notice,
    values: &BTreeMap<String, String>,
    error: Option<&str>,
) -> Response {
    let t = n.task();
    let step = &n.def.steps[&t.step];
    let StepKind::Notice { .. } = &step.kind else {
        return not_for_you();
    };
    let recipient = n.claims.recipient.as_str();
    let who = p
        .engine
        .directory()
        .agency(recipient)
        .map_or_else(|| recipient.to_string(), |a| a.name);
    let mut body = format!("<p>{}：</p>", esc(&who));
    if let Some(d) = &step.description {
        body.push_str(&format!("<p>{}</p>", esc(d)));
    }
    if let Some(r) = t.received_at {
        body.push_str(&format!("<p>签收时间：{}</p>", esc(&beijing(r))));
    }
    match &t.deadline {
        Some(d) => body.push_str(&format!(
            "<div class=\"due\"><p>办理期限：<strong>{}</strong>前</p><p>{}</p></div>",
            esc(&d.last_day.format("%Y年%-m月%-d日").to_string()),
            esc(&d.explanation)
        )),
        None if t.received_at.is_some() => {}
        None => body.push_str("<div class=\"due\"><p>办理期限自签收之日起计算。</p></div>"),
    }
    body.push_str(&documents_list(p, token, n));
    body.push_str(&outcome_form(
        &format!("/n/{token}"),
        &p.links.form_secret(token),
        &n.def,
        step,
        values,
        error,
        p.files.is_some(),
    ));
    page(StatusCode::OK, &step.name, &body)
}

/// The form of a task's or notice's outcomes and their fields, posting to
/// `action` with the CSRF `secret`, holding `values`, with `error` above it;
/// with `attach`, it takes attachments too.
pub(crate) fn outcome_form(
    action: &str,
    secret: &str,
    def: &Definition,
    step: &duban_engine::definition::Step,
    values: &BTreeMap<String, String>,
    error: Option<&str>,
    attach: bool,
) -> String {
    let (StepKind::Notice { outcomes, .. } | StepKind::Task { outcomes, .. }) = &step.kind else {
        return String::new();
    };
    let mut body = String::new();
    if let Some(e) = error {
        body.push_str(&format!(
            "<p class=\"error\" role=\"alert\">未能提交：{}</p>",
            esc(e)
        ));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"{}\"{}><input type=\"hidden\" name=\"_form\" value=\"{}\">",
        esc(action),
        if attach {
            " enctype=\"multipart/form-data\""
        } else {
            ""
        },
        esc(secret)
    ));
    body.push_str("<fieldset><legend>办理结果</legend>");
    let chosen = values.get("_outcome").map(String::as_str);
    for (id, o) in outcomes {
        let checked = if chosen == Some(id.as_str()) || (chosen.is_none() && outcomes.len() == 1) {
            " checked"
        } else {
            ""
        };
        body.push_str(&format!(
            "<div class=\"outcome\"><input type=\"radio\" name=\"_outcome\" id=\"o_{0}\" value=\"{0}\" required{checked}> <label for=\"o_{0}\" style=\"display:inline\">{1}</label></div>",
            esc(id),
            esc(&o.label)
        ));
    }
    body.push_str("</fieldset>");
    let mut fields: Vec<(&String, bool)> = Vec::new();
    for o in outcomes.values() {
        for (list, required) in [(&o.fields, true), (&o.optional_fields, false)] {
            for f in list {
                if !fields.iter().any(|(x, _)| *x == f) {
                    fields.push((f, required));
                }
            }
        }
    }
    for (f, required) in fields {
        let var = &def.variables[f];
        let label = var.label.clone().unwrap_or_else(|| f.clone());
        let which: Vec<&str> = outcomes
            .values()
            .filter(|o| o.fields.contains(f) || o.optional_fields.contains(f))
            .map(|o| o.label.as_str())
            .collect();
        let note = if outcomes.len() > 1 {
            format!(
                "（{}{}）",
                which.join("、"),
                if required { "时必填" } else { "时可填" }
            )
        } else if required {
            "（必填）".into()
        } else {
            String::new()
        };
        let v = values.get(f.as_str()).map(String::as_str).unwrap_or("");
        body.push_str(&format!(
            "<label for=\"f_{0}\">{1}{2}</label>",
            esc(f),
            esc(&label),
            esc(&note)
        ));
        body.push_str(&input(f, &var.ty, v));
    }
    if attach {
        body.push_str(&format!(
            "<label for=\"f__attachment\">附件（可选，最多{}个，每个不超过{}MB，限{}）</label>\
             <input type=\"file\" name=\"_attachment\" id=\"f__attachment\" multiple accept=\".pdf,.jpg,.jpeg,.png,.docx,.xlsx,.ofd\">",
            files::MAX_FILES,
            files::MAX_FILE_BYTES / 1024 / 1024,
            files::ACCEPTED
        ));
    }
    body.push_str("<button type=\"submit\">提交</button></form>");
    body
}

/// The input of field `name` of type `ty`, holding `v`.
fn input(name: &str, ty: &ValueType, v: &str) -> String {
    let n = esc(name);
    match ty {
        ValueType::Enum(values) => {
            let mut s = format!("<select name=\"{n}\" id=\"f_{n}\"><option value=\"\"></option>");
            for x in values {
                let sel = if x == v { " selected" } else { "" };
                s.push_str(&format!("<option value=\"{0}\"{sel}>{0}</option>", esc(x)));
            }
            s.push_str("</select>");
            s
        }
        ValueType::Text => format!("<textarea name=\"{n}\" id=\"f_{n}\">{}</textarea>", esc(v)),
        ValueType::Bool => {
            let opt = |x: &str, l: &str| {
                let sel = if x == v { " selected" } else { "" };
                format!("<option value=\"{x}\"{sel}>{l}</option>")
            };
            format!(
                "<select name=\"{n}\" id=\"f_{n}\"><option value=\"\"></option>{}{}</select>",
                opt("true", "是"),
                opt("false", "否")
            )
        }
        other => {
            let kind = match other {
                ValueType::Date => "date",
                ValueType::Int => "number",
                ValueType::Email => "email",
                ValueType::Phone => "tel",
                _ => "text",
            };
            format!(
                "<input type=\"{kind}\" name=\"{n}\" id=\"f_{n}\" value=\"{}\">",
                esc(v)
            )
        }
    }
}

/// Why the engine refused an answer, in Chinese for the agency: the
/// definition's own words where it has them (a guard's message, a field's
/// label), the stable code always, so the office can look it up.
fn refusal(e: &duban_engine::runtime::EngineError, def: &Definition) -> String {
    use duban_engine::runtime::EngineError as E;
    let label = |name: &str| {
        def.variables
            .get(name)
            .and_then(|v| v.label.clone())
            .unwrap_or_else(|| name.to_string())
    };
    let text = match e {
        E::GuardFailed { message, .. } => message.clone(),
        E::MissingField { field, .. } => format!("请填写“{}”", label(field)),
        E::BadValue { name, .. } => format!("“{}”的填写不符合要求，请检查后重新提交", label(name)),
        E::UnknownVariable(name) | E::NotAField { field: name, .. } => {
            format!("表单中的“{name}”不属于此办理结果")
        }
        E::TooEarly { until, .. } => format!("法定期间尚未届满，{until}后方可提交"),
        E::NotPermitted { .. } | E::Recused { .. } => "您无权办理此事项".into(),
        E::TaskClosed { .. } | E::Ended(_) => "此事项已办结，无需再次提交".into(),
        E::Stuck { .. } => "此事项正在由监督机构核查，暂时无法提交，请稍后再试".into(),
        _ => "系统未能受理此答复，请联系发出通知的监督机构".into(),
    };
    format!("{text}（{}）", e.code())
}

// ----- handlers -----------------------------------------------------------

async fn show(State(p): State<Portal>, Path(token): Path<String>) -> Response {
    let now = (p.clock)();
    let mut n = match notice(&p, &token, now).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    if n.task().closed.is_some() {
        return closed_page(&p, &token, &n);
    }
    // The first opening is the receipt (签收).
    if n.task().received_at.is_none() {
        let event = Event::Receive {
            task: n.claims.task.clone(),
            actor: n.claims.recipient.clone(),
        };
        match p.engine.apply(&n.claims.instance, &event, now).await {
            Ok(t) => n.state = t.state,
            // Received meanwhile (a second tab): the page shows it.
            Err(ServiceError::Engine(e)) => {
                tracing::info!(task = %n.claims.task, error = %e, "portal: receipt not recorded");
                match p.engine.instance(&n.claims.instance).await {
                    Ok(s) => n.state = s,
                    Err(e) => return unavailable(&e),
                }
            }
            Err(e) => return unavailable(&e),
        }
    }
    form_page(&p, &token, &n, &BTreeMap::new(), None)
}

/// A form as posted: its text fields in order, and its files.
struct Posted {
    fields: Vec<(String, String)>,
    files: Vec<files::Upload>,
}

fn bad_form(status: StatusCode, why: &str) -> Response {
    page(
        status,
        "表单有误",
        &format!("<p>{}。请返回后重新填写。</p>", esc(why)),
    )
}

/// Reads a posted form, URL-encoded or multipart (with files), within the
/// limits: text at most [`MAX_FORM_BYTES`], at most [`files::MAX_FILES`]
/// files of [`files::MAX_FILE_BYTES`]. Any other body is 4xx, and nothing
/// is read past a limit.
async fn posted(p: &Portal, req: axum::extract::Request) -> Result<Posted, Response> {
    use axum::extract::FromRequest as _;
    let kind = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match kind.as_str() {
        "application/x-www-form-urlencoded" => {
            let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
                .await
                .map_err(|_| bad_form(StatusCode::PAYLOAD_TOO_LARGE, "表单内容过多"))?;
            Ok(Posted {
                fields: form_urlencoded::parse(&body).into_owned().collect(),
                files: Vec::new(),
            })
        }
        "multipart/form-data" if p.files.is_some() => {
            let mut m = axum::extract::Multipart::from_request(req, &())
                .await
                .map_err(|_| bad_form(StatusCode::BAD_REQUEST, "表单格式无法识别"))?;
            let mut out = Posted {
                fields: Vec::new(),
                files: Vec::new(),
            };
            let mut text_bytes = 0usize;
            let too_big = |e: axum::extract::multipart::MultipartError| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    bad_form(StatusCode::PAYLOAD_TOO_LARGE, "提交的内容过大")
                } else {
                    bad_form(StatusCode::BAD_REQUEST, "表单格式无法识别")
                }
            };
            while let Some(mut f) = m.next_field().await.map_err(too_big)? {
                let name = f.name().unwrap_or("").to_string();
                match f.file_name().map(str::to_string) {
                    Some(file) => {
                        if name != "_attachment" {
                            return Err(bad_form(
                                StatusCode::BAD_REQUEST,
                                "表单中有本事项没有的项目",
                            ));
                        }
                        let mut bytes = Vec::new();
                        while let Some(c) = f.chunk().await.map_err(too_big)? {
                            bytes.extend_from_slice(&c);
                            if bytes.len() > files::MAX_FILE_BYTES {
                                return Err(bad_form(
                                    StatusCode::PAYLOAD_TOO_LARGE,
                                    &format!(
                                        "附件“{}”超过{}MB",
                                        files::display_name(&file),
                                        files::MAX_FILE_BYTES / 1024 / 1024
                                    ),
                                ));
                            }
                        }
                        // A file input left empty sends a part without a name or bytes.
                        if file.is_empty() && bytes.is_empty() {
                            continue;
                        }
                        if out.files.len() == files::MAX_FILES {
                            return Err(bad_form(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                &format!("附件最多{}个", files::MAX_FILES),
                            ));
                        }
                        out.files.push(files::Upload { name: file, bytes });
                    }
                    None => {
                        let v = f.text().await.map_err(too_big)?;
                        text_bytes += name.len() + v.len();
                        if text_bytes > MAX_FORM_BYTES {
                            return Err(bad_form(StatusCode::PAYLOAD_TOO_LARGE, "表单内容过多"));
                        }
                        out.fields.push((name, v));
                    }
                }
            }
            Ok(out)
        }
        _ => Err(bad_form(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "提交的格式不受理",
        )),
    }
}

async fn answer(
    State(p): State<Portal>,
    Path(token): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let now = (p.clock)();
    let n = match notice(&p, &token, now).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let form = match posted(&p, req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in form.fields {
        if values.insert(k.clone(), v).is_some() {
            return bad_form(StatusCode::BAD_REQUEST, "表单中有重复的项目");
        }
    }
    if !values
        .get("_form")
        .is_some_and(|s| p.links.form_secret_ok(&token, s))
    {
        return page(
            StatusCode::FORBIDDEN,
            "表单已失效",
            "<p>此表单不是由本系统为此链接生成的，或已失效。请重新打开通知邮件中的链接后填写。</p>",
        );
    }
    if n.task().closed.is_some() {
        return closed_page(&p, &token, &n);
    }
    let step = &n.def.steps[&n.task().step];
    let StepKind::Notice { outcomes, .. } = &step.kind else {
        return not_for_you();
    };
    let Some(outcome) = values
        .get("_outcome")
        .cloned()
        .filter(|o| outcomes.contains_key(o))
    else {
        return form_page(&p, &token, &n, &values, Some("请选择办理结果"));
    };
    let o = &outcomes[&outcome];
    let mut given = Vec::new();
    for (k, v) in &values {
        if k.starts_with('_') {
            if k == "_form" || k == "_outcome" {
                continue;
            }
            return bad_form(StatusCode::BAD_REQUEST, "表单中有本事项没有的项目");
        }
        let any = outcomes
            .values()
            .any(|x| x.fields.contains(k) || x.optional_fields.contains(k));
        if !any {
            return bad_form(StatusCode::BAD_REQUEST, "表单中有本事项没有的项目");
        }
        // A field of another outcome, or left empty, is not given.
        if v.trim().is_empty() || !(o.fields.contains(k) || o.optional_fields.contains(k)) {
            continue;
        }
        given.push((k.clone(), v.clone()));
    }
    if let Some(f) = o
        .fields
        .iter()
        .find(|f| !given.iter().any(|(k, _)| k == *f))
    {
        let label = n.def.variables[f]
            .label
            .clone()
            .unwrap_or_else(|| f.clone());
        return form_page(&p, &token, &n, &values, Some(&format!("请填写“{label}”")));
    }
    // The files are checked, then stored before the answer is applied, and
    // removed again if the engine refuses it.
    let mut checked = Vec::new();
    for u in form.files {
        match files::check(&u) {
            Ok(ext) => checked.push((u, ext)),
            Err(why) => return form_page(&p, &token, &n, &values, Some(&why)),
        }
    }
    let stored = match (&p.files, checked.is_empty()) {
        (Some(root), false) => {
            match files::store(root, &n.claims.instance, &n.claims.task, &checked) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, task = %n.claims.task, "portal: an attachment was not stored");
                    return page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "暂时无法办理",
                        "<p>附件暂时无法保存，答复未提交，未作任何更改。请稍后再试。</p>",
                    );
                }
            }
        }
        _ => Vec::new(),
    };
    let undo = |p: &Portal| {
        if let Some(root) = &p.files {
            files::remove(root, &n.claims.instance, &n.claims.task, &stored);
        }
    };
    match p
        .engine
        .complete(&n.claims.task, &outcome, Values::Text(given), &n.claims.recipient, now)
        .await
    {
        Ok(_) => page(
            StatusCode::OK,
            "已提交",
            &format!(
                "<p>您的答复（{}）已于{}提交，已记录在案。</p>{}<p>此链接可再次打开以查看答复情况。</p>",
                esc(&o.label),
                esc(&beijing(now)),
                if stored.is_empty() {
                    String::new()
                } else {
                    format!("<p>附件{}个已一并提交。</p>", stored.len())
                }
            ),
        ),
        Err(ServiceError::Engine(e)) => {
            undo(&p);
            form_page(&p, &token, &n, &values, Some(&refusal(&e, &n.def)))
        }
        Err(e) => {
            undo(&p);
            unavailable(&e)
        }
    }
}

/// A PDF, shown inline in the browser's viewer (no page policy: the viewer
/// is not a page of ours), never cached or sniffed as anything else, and
/// saved under `filename` (RFC 6266, its UTF-8 name percent-encoded as RFC
/// 8187 says, with an ASCII fallback).
pub(crate) fn pdf_response(pdf: Vec<u8>, filename: &str) -> Response {
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut r = (StatusCode::OK, pdf).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "inline; filename=\"document.pdf\"; filename*=UTF-8''{encoded}"
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// The PDF the document writer wrote for `document` of the notice's task,
/// if it is in the documents directory.
async fn written_pdf(
    p: &Portal,
    root: &std::path::Path,
    n: &Notice,
    document: &str,
) -> Option<Vec<u8>> {
    use duban_engine::store::Store;
    let rows = p.engine.store().outbox_of(&n.state.id).await.ok()?;
    let row = rows.iter().rev().find(|r| {
        r.issued_document().is_some_and(|d| {
            d.document == document && d.task.as_deref() == Some(n.claims.task.as_str())
        })
    })?;
    let [_, _, pdf] = duban_notifiers::documents::paths(root, row, document);
    std::fs::read(pdf).ok()
}

/// A document of the notice, as it was issued: the PDF the document writer
/// wrote, else typeset now with the instance's values and the instant the
/// notice was sent (`?format=html`: the web page).
async fn document(
    State(p): State<Portal>,
    Path((token, document)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    let now = (p.clock)();
    let n = match notice(&p, &token, now).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let t = n.task();
    let issued = match &n.def.steps[&t.step].kind {
        StepKind::Notice { documents, .. } => documents.contains(&document),
        _ => false,
    };
    if !issued {
        return page(
            StatusCode::NOT_FOUND,
            "文书不存在",
            "<p>此事项没有这份文书。</p>",
        );
    }
    let dir = p.engine.directory();
    let parts = duban_notifiers::documents::document_parts(
        &n.def,
        &n.state,
        duban_engine::simulate::Issued {
            document: &document,
            step: &t.step,
            task: Some(&n.claims.task),
        },
        dir.as_ref(),
        t.opened_at,
    );
    let html = query.get("format").is_some_and(|f| f == "html");
    let shown = match parts {
        Ok(parts) if html => Ok(Err(duban_notifiers::render::compose(&parts).html)),
        Ok(parts) => {
            let title = parts.title.clone();
            // The PDF `serve` wrote when the document was issued, when it
            // is there: the very file, and no typesetting per request.
            let written = match &p.files {
                Some(root) => written_pdf(&p, root, &n, &document).await,
                None => None,
            };
            match written {
                Some(pdf) => Ok(Ok((title, pdf))),
                None => duban_notifiers::documents::pdf(parts)
                    .await
                    .map(|pdf| Ok((title, pdf)))
                    .map_err(|e| e.to_string()),
            }
        }
        Err(e) => Err(e),
    };
    match shown {
        Ok(Err(html)) => {
            let mut resp = page(StatusCode::OK, "", "");
            *resp.body_mut() = axum::body::Body::from(html);
            resp
        }
        Ok(Ok((title, pdf))) => pdf_response(pdf, &format!("{title}.pdf")),
        Err(e) => {
            tracing::error!(error = %e, document = %document, "portal: a document did not render");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "暂时无法显示",
                "<p>文书暂时无法显示，请稍后再试，或查阅通知邮件所附文书。</p>",
            )
        }
    }
}

/// An attachment given with the notice's answer, as a download.
async fn attachment(
    State(p): State<Portal>,
    Path((token, number)): Path<(String, String)>,
) -> Response {
    let now = (p.clock)();
    let n = match notice(&p, &token, now).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let found = p.files.as_ref().and_then(|root| {
        number
            .parse()
            .ok()
            .and_then(|k| files::read(root, &n.claims.instance, &n.claims.task, k))
    });
    match found {
        Some((s, bytes)) => files::download(&s, bytes),
        None => page(StatusCode::NOT_FOUND, "附件不存在", "<p>没有这个附件。</p>"),
    }
}
