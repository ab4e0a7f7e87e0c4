//! The staff's pages: sign-in by a short-lived link sent to the person's
//! email, an inbox of their open tasks, and the task page with its form and
//! the instance's timeline (issue 14).
//!
//! - `GET /staff` asks for the email address; `POST /staff/signin` sends, if
//!   the address is a person's of the directory, a link valid for
//!   [`SIGNIN_MINUTES`] (the answer is the same either way, so the page
//!   tells nobody which addresses exist).
//! - `GET /staff/s/TOKEN` turns a valid sign-in link into a session: a
//!   cookie `duban_session` holding a signed token of purpose `session`
//!   ([`SESSION_HOURS`]), HttpOnly, SameSite=Strict, Secure under https,
//!   limited to `/staff`.
//! - `GET /staff/inbox` lists the person's open tasks with their last day,
//!   yellow when it is at most [`SOON_DAYS`] days away, red when past.
//! - `GET|POST /staff/t/TASK` shows and completes a task of theirs; anyone
//!   else's is 403, and the engine, which checks every actor, refuses it too.
//! - `GET /staff/i/INSTANCE` is the instance page: every step of its
//!   process in order, marked done, open or not reached, with where each
//!   leads (the process's graph as a list, readable without JavaScript), the
//!   attachments the agencies gave, and the timeline. It is for a person
//!   with a task in the instance and for holders of [`OFFICE_ROLE`].
//!
//! Tokens of one purpose (a notice's answer link, a sign-in link, a
//! session) are refused for another.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::Duration;
use duban_engine::runtime::Directory;
use duban_engine::service::{ServiceError, Values};
use duban_engine::store::TaskFilter;
use duban_notifiers::links::Claims;

use crate::{beijing, esc, outcome_form, page, refusal, unavailable, Portal};

/// How long a sign-in link works.
pub const SIGNIN_MINUTES: i64 = 15;
/// How long a session lasts.
pub const SESSION_HOURS: i64 = 8;
/// A task whose last day is this close shows yellow in the inbox.
pub const SOON_DAYS: i64 = 3;

const COOKIE: &str = "duban_session";

pub(crate) fn routes() -> Router<Portal> {
    Router::new()
        .route("/staff", get(signin_page))
        .route("/staff/signin", post(signin))
        .route("/staff/s/{token}", get(session))
        .route("/staff/inbox", get(inbox))
        .route("/staff/t/{task}", get(task).post(complete))
        .route("/staff/i/{instance}", get(instance_page))
        .route("/staff/i/{instance}/a/{task}/{n}", get(instance_attachment))
        .route("/staff/i/{instance}/case-file.pdf", get(case_file))
        .route("/staff/overdue", get(overdue_page))
        .route("/staff/overdue.csv", get(overdue_csv))
}

/// The role whose holders see the overdue-warning page (超期预警): the
/// supervision office of the process library.
pub const OFFICE_ROLE: &str = "supervision_office";

/// One overdue item of the warning page.
struct Late {
    agency: String,
    name: String,
    step: String,
    instance: String,
    task: String,
    last_day: String,
    days: i64,
}

/// Whether `who` holds [`OFFICE_ROLE`].
pub(crate) fn is_office(p: &Portal, who: &str) -> bool {
    p.engine
        .directory()
        .person(who)
        .is_some_and(|x| x.roles.iter().any(|r| r == OFFICE_ROLE))
}

/// Every open task past its cut-off, by recipient (agency or person) and
/// step, longest overdue first; 403 unless the person holds [`OFFICE_ROLE`].
async fn overdue_items(p: &Portal, headers: &HeaderMap) -> Result<Vec<Late>, Response> {
    let who = person(p, headers)?;
    let dir = p.engine.directory();
    if !is_office(p, &who) {
        return Err(page(
            StatusCode::FORBIDDEN,
            "无权查看",
            "<p>超期预警仅供行政执法监督机构查看。</p>",
        ));
    }
    let now = (p.clock)();
    let rows = p
        .engine
        .tasks(&TaskFilter {
            overdue_at: Some(now),
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(&e))?;
    let mut out = Vec::new();
    for r in rows {
        let days = crate::days_overdue(r.last_day.as_deref(), now);
        for a in &r.assignees {
            let name = dir
                .agency(a)
                .map(|x| x.name)
                .or_else(|| dir.person(a).map(|x| x.name))
                .unwrap_or_else(|| a.clone());
            out.push(Late {
                agency: a.clone(),
                name,
                step: r.step.clone(),
                instance: r.instance.clone(),
                task: r.id.clone(),
                last_day: r.last_day.clone().unwrap_or_default(),
                days,
            });
        }
    }
    out.sort_by(|a, b| (&a.agency, &a.step, -a.days).cmp(&(&b.agency, &b.step, -b.days)));
    Ok(out)
}

async fn overdue_page(State(p): State<Portal>, headers: HeaderMap) -> Response {
    let items = match overdue_items(&p, &headers).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let mut body = format!(
        "<p>共{}项超期未办结。<a href=\"/staff/overdue.csv\">下载CSV</a></p>",
        items.len()
    );
    let mut current = None;
    for i in &items {
        if current != Some(&i.agency) {
            if current.is_some() {
                body.push_str("</ul>");
            }
            body.push_str(&format!("<h2>{}</h2><ul>", esc(&i.name)));
            current = Some(&i.agency);
        }
        body.push_str(&format!(
            "<li style=\"background:#fdd\">{}：事项{}（{}），期限{}，已超期{}日</li>",
            esc(&i.step),
            esc(&i.instance),
            esc(&i.task),
            esc(&i.last_day),
            i.days
        ));
    }
    if current.is_some() {
        body.push_str("</ul>");
    }
    page(StatusCode::OK, "超期预警", &body)
}

/// A CSV field, quoted when it must be, and never read as a formula by a
/// spreadsheet.
fn csv(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

async fn overdue_csv(State(p): State<Portal>, headers: HeaderMap) -> Response {
    let items = match overdue_items(&p, &headers).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    // A byte-order mark, so spreadsheet programs read the Chinese as UTF-8.
    let mut out = String::from("\u{feff}单位编号,单位,步骤,事项,任务,期限,超期天数\r\n");
    for i in &items {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\r\n",
            csv(&i.agency),
            csv(&i.name),
            csv(&i.step),
            csv(&i.instance),
            csv(&i.task),
            csv(&i.last_day),
            i.days
        ));
    }
    let mut r = (StatusCode::OK, out).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"overdue.csv\""),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn signin_page() -> Response {
    page(
        StatusCode::OK,
        "工作人员登录",
        "<form method=\"post\" action=\"/staff/signin\"><label for=\"email\">电子邮箱</label>\
         <input type=\"email\" name=\"email\" id=\"email\" required><button type=\"submit\">发送登录链接</button></form>",
    )
}

fn please_sign_in() -> Response {
    page(
        StatusCode::UNAUTHORIZED,
        "请先登录",
        "<p>登录已失效或尚未登录。<a href=\"/staff\">点此登录</a>。</p>",
    )
}

async fn signin(State(p): State<Portal>, Form(form): Form<BTreeMap<String, String>>) -> Response {
    let Some(mailer) = p.mailer.clone() else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "无法发送登录链接",
            "<p>本系统未配置电子邮件，无法发送登录链接。请联系系统管理员。</p>",
        );
    };
    let email = form
        .get("email")
        .map(|e| e.trim().to_lowercase())
        .unwrap_or_default();
    let person = p
        .engine
        .directory()
        .people
        .iter()
        .find(|x| x.email.as_deref().map(str::to_lowercase) == Some(email.clone()))
        .cloned();
    if let Some(person) = person.filter(|_| !email.is_empty()) {
        let now = (p.clock)();
        let token = p.links.sign(&Claims {
            recipient: person.id.clone(),
            expires: (now + Duration::minutes(SIGNIN_MINUTES)).timestamp(),
            purpose: "signin".into(),
            ..Default::default()
        });
        let link = format!("{}/staff/s/{token}", p.links.base_url());
        let text = format!(
            "{}：\n\n请在{SIGNIN_MINUTES}分钟内打开以下链接登录督办系统：\n{link}\n\n如非本人操作，请忽略本邮件。",
            person.name
        );
        let m = duban_notifiers::Message {
            key: format!("signin-{}-{}", person.id, now.timestamp_millis()),
            template: "staff_signin".into(),
            to: vec![duban_notifiers::Recipient {
                id: person.id.clone(),
                name: person.name.clone(),
                email: person.email.clone(),
                mobile: None,
            }],
            subject: "督办系统登录链接".into(),
            html: format!("<p>{}</p>", esc(&text).replace('\n', "<br>")),
            text,
            sms: String::new(),
            sms_params: BTreeMap::new(),
            attachments: Vec::new(),
        };
        if let Err(e) = duban_notifiers::Notifier::send(mailer.as_ref(), &m).await {
            tracing::warn!(person = %person.id, error = %e, "portal: the sign-in email was not sent");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "暂时无法发送",
                "<p>登录链接暂时无法发送，请稍后再试。</p>",
            );
        }
    }
    page(
        StatusCode::OK,
        "登录链接已发送",
        &format!(
            "<p>如该邮箱已在本系统登记，登录链接已发送至该邮箱，{SIGNIN_MINUTES}分钟内有效。</p>"
        ),
    )
}

async fn session(State(p): State<Portal>, Path(token): Path<String>) -> Response {
    let now = (p.clock)();
    match p.links.verify(&token, now) {
        Ok(c) if c.purpose == "signin" => {
            let s = p.links.sign(&Claims {
                recipient: c.recipient,
                expires: (now + Duration::hours(SESSION_HOURS)).timestamp(),
                purpose: "session".into(),
                ..Default::default()
            });
            let secure = if p.links.base_url().starts_with("https://") {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{COOKIE}={s}; HttpOnly; SameSite=Strict; Path=/staff; Max-Age={}{secure}",
                SESSION_HOURS * 3600
            );
            let mut r = (StatusCode::SEE_OTHER, "").into_response();
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/staff/inbox"));
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        _ => page(
            StatusCode::BAD_REQUEST,
            "登录链接无效",
            "<p>登录链接无效或已过期。<a href=\"/staff\">重新获取登录链接</a>。</p>",
        ),
    }
}

/// The person of the request's session, or the page to answer with.
fn person(p: &Portal, headers: &HeaderMap) -> Result<String, Response> {
    let token = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| {
            kv.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        })
        .next()
        .ok_or_else(please_sign_in)?;
    match p.links.verify(&token, (p.clock)()) {
        Ok(c) if c.purpose == "session" => Ok(c.recipient),
        _ => Err(please_sign_in()),
    }
}

async fn inbox(State(p): State<Portal>, headers: HeaderMap) -> Response {
    let who = match person(&p, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let rows = match p
        .engine
        .tasks(&TaskFilter {
            assignee: Some(who.clone()),
            ..Default::default()
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    let now = (p.clock)();
    let today = now
        .with_timezone(&duban_engine::calendar::LEGAL_TZ)
        .date_naive();
    let name = p
        .engine
        .directory()
        .person(&who)
        .map_or_else(|| who.clone(), |x| x.name);
    let mut body = format!("<p>{}，您有{}项待办事项。</p><ul>", esc(&name), rows.len());
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for r in &rows {
        if !names.contains_key(&r.instance) {
            names.insert(r.instance.clone(), String::new());
        }
    }
    let mut steps: BTreeMap<(String, String), String> = BTreeMap::new();
    for id in names.keys() {
        let Ok(s) = p.engine.instance(id).await else {
            continue;
        };
        if let Ok(d) = p.engine.definition(&s.definition, Some(s.version)).await {
            for (sid, st) in &d.steps {
                steps.insert((id.clone(), sid.clone()), st.name.clone());
            }
        }
    }
    for r in &rows {
        let step_name = steps
            .get(&(r.instance.clone(), r.step.clone()))
            .cloned()
            .unwrap_or_else(|| r.step.clone());
        let (style, due) = match (r.due, &r.last_day) {
            (Some(d), Some(last)) => {
                let last_day = chrono::NaiveDate::parse_from_str(last, "%Y-%m-%d").ok();
                let style = if d < now {
                    " style=\"background:#fdd\""
                } else if last_day.is_some_and(|l| (l - today).num_days() <= SOON_DAYS) {
                    " style=\"background:#ffc\""
                } else {
                    ""
                };
                (style, format!("，期限{}", esc(last)))
            }
            _ => ("", String::new()),
        };
        body.push_str(&format!(
            "<li{style}><a href=\"/staff/t/{0}\">{1}</a>（<a href=\"/staff/i/{2}\">事项{2}</a>{due}）</li>",
            esc(&r.id),
            esc(&step_name),
            esc(&r.instance)
        ));
    }
    body.push_str("</ul>");
    page(StatusCode::OK, "待办事项", &body)
}

fn forbidden() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "无权办理",
        "<p>此事项不属于您，或您无权办理。<a href=\"/staff/inbox\">返回待办事项</a>。</p>",
    )
}

/// The task page of `task` for `who`: 403 unless it is theirs.
async fn task_page(
    p: &Portal,
    who: &str,
    task: &str,
    values: &BTreeMap<String, String>,
    error: Option<&str>,
) -> Response {
    let Some((instance, _)) = task.split_once('.') else {
        return forbidden();
    };
    let state = match p.engine.instance(instance).await {
        Ok(s) => s,
        Err(ServiceError::UnknownInstance(_)) => return forbidden(),
        Err(e) => return unavailable(&e),
    };
    let Some(t) = state
        .tasks
        .get(task)
        .filter(|t| t.assignees.iter().any(|a| a == who))
    else {
        return forbidden();
    };
    let def = match p
        .engine
        .definition(&state.definition, Some(state.version))
        .await
    {
        Ok(d) => d,
        Err(e) => return unavailable(&e),
    };
    let step = &def.steps[&t.step];
    let mut body = String::new();
    if let Some(d) = &step.description {
        body.push_str(&format!("<p>{}</p>", esc(d)));
    }
    if let Some(d) = &t.deadline {
        body.push_str(&format!(
            "<div class=\"due\"><p>办理期限：<strong>{}</strong>前</p><p>{}</p></div>",
            esc(&d.last_day.format("%Y年%-m月%-d日").to_string()),
            esc(&d.explanation)
        ));
    }
    match &t.closed {
        Some(c) => body.push_str(&format!(
            "<p>已于{}办结（{}）。</p>",
            esc(&beijing(c.at)),
            esc(&c.outcome)
        )),
        None => body.push_str(&outcome_form(
            &format!("/staff/t/{task}"),
            &p.links.form_secret(&format!("staff:{task}:{who}")),
            &def,
            step,
            values,
            error,
            false,
        )),
    }
    body.push_str(&format!(
        "<p><a href=\"/staff/i/{0}\">查看事项{0}的全部步骤</a></p>",
        esc(instance)
    ));
    match timeline(p, instance, &def).await {
        Ok(t) => body.push_str(&t),
        Err(r) => return r,
    }
    page(StatusCode::OK, &step.name, &body)
}

async fn task(State(p): State<Portal>, Path(task): Path<String>, headers: HeaderMap) -> Response {
    match person(&p, &headers) {
        Ok(who) => task_page(&p, &who, &task, &BTreeMap::new(), None).await,
        Err(r) => r,
    }
}

async fn complete(
    State(p): State<Portal>,
    Path(task): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let who = match person(&p, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let mut values = BTreeMap::new();
    for (k, v) in form {
        if values.insert(k, v).is_some() {
            return page(
                StatusCode::BAD_REQUEST,
                "表单有误",
                "<p>表单中有重复的项目。</p>",
            );
        }
    }
    if !values
        .get("_form")
        .is_some_and(|s| p.links.form_secret_ok(&format!("staff:{task}:{who}"), s))
    {
        return page(
            StatusCode::FORBIDDEN,
            "表单已失效",
            "<p>此表单不是由本系统为您生成的，或已失效。请重新打开事项后填写。</p>",
        );
    }
    let Some(outcome) = values.get("_outcome").cloned() else {
        return task_page(&p, &who, &task, &values, Some("请选择办理结果")).await;
    };
    let given: Vec<(String, String)> = values
        .iter()
        .filter(|(k, v)| !k.starts_with('_') && !v.trim().is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match p
        .engine
        .complete(&task, &outcome, Values::Text(given), &who, (p.clock)())
        .await
    {
        Ok(_) => page(
            StatusCode::OK,
            "已办理",
            "<p>已提交，已记录在案。<a href=\"/staff/inbox\">返回待办事项</a>。</p>",
        ),
        Err(ServiceError::Engine(e)) => match e {
            duban_engine::runtime::EngineError::NotPermitted { .. }
            | duban_engine::runtime::EngineError::Recused { .. } => forbidden(),
            e => {
                let def = match p
                    .engine
                    .instance(task.split('.').next().unwrap_or(""))
                    .await
                {
                    Ok(s) => p
                        .engine
                        .definition(&s.definition, Some(s.version))
                        .await
                        .ok(),
                    Err(_) => None,
                };
                let why = match def {
                    Some(d) => refusal(&e, &d),
                    None => e.code().to_string(),
                };
                task_page(&p, &who, &task, &values, Some(&why)).await
            }
        },
        Err(ServiceError::UnknownInstance(_) | ServiceError::BadTaskId(_)) => forbidden(),
        Err(e) => unavailable(&e),
    }
}

/// The instance's history as a list, in Chinese, naming who acted.
async fn timeline(
    p: &Portal,
    instance: &str,
    def: &duban_engine::definition::Definition,
) -> Result<String, Response> {
    let h = p
        .engine
        .history(instance)
        .await
        .map_err(|e| unavailable(&e))?;
    let dir = p.engine.directory();
    let mut out = String::from("<h2>办理经过</h2><ul>");
    for l in h {
        let who = match l.actor.as_str() {
            "engine" => "系统".to_string(),
            a => dir
                .person(a)
                .map(|x| x.name)
                .or_else(|| dir.agency(a).map(|x| x.name))
                .unwrap_or_else(|| a.to_string()),
        };
        let step = l
            .step_after
            .as_ref()
            .or(l.step_before.as_ref())
            .and_then(|s| def.steps.get(s))
            .map(|s| format!("：{}", s.name))
            .unwrap_or_default();
        let note = Some(duban_notifiers::case_file::note_in_chinese(def, &l))
            .filter(|n| !n.is_empty())
            .map(|n| format!("（{n}）"))
            .unwrap_or_default();
        out.push_str(&format!(
            "<li>{} {} {}{}{}</li>",
            esc(&beijing(l.at)),
            esc(&who),
            esc(l.what.label()),
            esc(&step),
            esc(&note)
        ));
    }
    out.push_str("</ul>");
    Ok(out)
}

/// The instance `id` if the person signed in with `headers` may see it:
/// they have (or had) a task in it, or hold [`OFFICE_ROLE`]; 401 without a
/// session, 403 otherwise, the same page whether or not the instance exists.
async fn visible_instance(
    p: &Portal,
    headers: &HeaderMap,
    id: &str,
) -> Result<duban_engine::runtime::InstanceState, Response> {
    let who = person(p, headers)?;
    let who = who.as_str();
    let state = match p.engine.instance(id).await {
        Ok(s) => s,
        Err(ServiceError::UnknownInstance(_)) => return Err(forbidden()),
        Err(e) => return Err(unavailable(&e)),
    };
    let office = is_office(p, who);
    let theirs = state
        .tasks
        .values()
        .any(|t| t.assignees.iter().any(|a| a == who));
    if office || theirs {
        Ok(state)
    } else {
        Err(forbidden())
    }
}

async fn instance_page(
    State(p): State<Portal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    use duban_engine::definition::flow::{self, EdgeKind};
    use duban_engine::definition::StepKind;
    let state = match visible_instance(&p, &headers, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let def = match p
        .engine
        .definition(&state.definition, Some(state.version))
        .await
    {
        Ok(d) => d,
        Err(e) => return unavailable(&e),
    };
    let history = match p.engine.history(&id).await {
        Ok(h) => h,
        Err(e) => return unavailable(&e),
    };
    let status = match &state.status {
        duban_engine::runtime::Status::Running => "办理中".to_string(),
        duban_engine::runtime::Status::Completed { .. } => "已办结".to_string(),
        duban_engine::runtime::Status::Cancelled { reason } => format!("已撤销（{reason}）"),
        duban_engine::runtime::Status::Stuck { .. } => "处理故障，待管理员处置".to_string(),
    };
    let mut body = format!(
        "<p>{}（第{}版），事项{}：<strong>{}</strong></p>",
        esc(&def.name),
        state.version,
        esc(&id),
        esc(&status)
    );
    body.push_str("<h2>步骤</h2><ol class=\"steps\">");
    let name = |s: &str| {
        def.steps
            .get(s)
            .map_or_else(|| s.to_string(), |x| x.name.clone())
    };
    for (sid, step) in &def.steps {
        let open = state
            .tasks
            .values()
            .any(|t| &t.step == sid && t.closed.is_none())
            || state.waits.contains_key(sid);
        let done = history
            .iter()
            .any(|l| l.step_before.as_deref() == Some(sid) || l.step_after.as_deref() == Some(sid));
        let (mark, style) = if open {
            ("办理中", " style=\"background:#ffc\"")
        } else if done {
            ("已经过", "")
        } else {
            ("未到", " style=\"color:#777\"")
        };
        let mut leads = Vec::new();
        match &step.kind {
            StepKind::Task { outcomes, .. } | StepKind::Notice { outcomes, .. } => {
                for o in outcomes.values() {
                    leads.push(format!("{} → {}", o.label, name(&o.next)));
                }
                for e in flow::step_edges(sid, step) {
                    if e.kind == EdgeKind::Expiry {
                        leads.push(format!("期限届满 → {}", name(&e.to)));
                    }
                }
            }
            _ => {
                for e in flow::step_edges(sid, step) {
                    let why = match e.kind {
                        EdgeKind::Branch => "条件成立时",
                        EdgeKind::Default => "其他情形",
                        EdgeKind::Split => "同时",
                        EdgeKind::Expiry => "期限届满",
                        _ => "然后",
                    };
                    leads.push(format!("{why} → {}", name(&e.to)));
                }
            }
        }
        body.push_str(&format!(
            "<li{style}><strong>{}</strong>（{mark}）{}</li>",
            esc(&step.name),
            if leads.is_empty() {
                String::new()
            } else {
                format!("<br>{}", esc(&leads.join("；")))
            }
        ));
    }
    body.push_str("</ol>");
    if let Some(root) = &p.files {
        let mut any = false;
        for t in state.tasks.values() {
            let given = crate::files::list(root, &id, &t.id);
            if given.is_empty() {
                continue;
            }
            if !any {
                body.push_str("<h2>附件</h2><ul>");
                any = true;
            }
            for a in given {
                body.push_str(&format!(
                    "<li>{}：<a href=\"/staff/i/{}/a/{}/{}\" download>{}</a></li>",
                    esc(&name(&t.step)),
                    esc(&id),
                    esc(&t.id),
                    a.n,
                    esc(&a.name)
                ));
            }
        }
        if any {
            body.push_str("</ul>");
        }
    }
    match timeline(&p, &id, &def).await {
        Ok(t) => body.push_str(&t),
        Err(r) => return r,
    }
    body.push_str(&format!(
        "<p><a href=\"/staff/i/{}/case-file.pdf\">案卷（PDF）</a>：封面、办理经过、期限和全部文书</p>",
        esc(&id)
    ));
    page(StatusCode::OK, &def.name, &body)
}

/// The case file (案卷) of an instance the person may see, as PDF.
async fn case_file(
    State(p): State<Portal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = visible_instance(&p, &headers, &id).await {
        return r;
    }
    let now = (p.clock)();
    let case = match duban_notifiers::case_file::build(&p.engine, &id, now).await {
        Ok(c) => c,
        Err(e) => return unavailable(&e),
    };
    match duban_notifiers::case_file::pdf(case).await {
        Ok(pdf) => crate::pdf_response(pdf, &format!("案卷-{id}.pdf")),
        Err(e) => {
            tracing::error!(error = %e, instance = %id, "portal: a case file was not typeset");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "暂时无法生成案卷",
                "<p>案卷暂时无法生成，请联系管理员（详见服务日志）。</p>",
            )
        }
    }
}

async fn instance_attachment(
    State(p): State<Portal>,
    Path((id, task, n)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let state = match visible_instance(&p, &headers, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let found = p
        .files
        .as_ref()
        .filter(|_| state.tasks.contains_key(&task))
        .and_then(|root| {
            n.parse()
                .ok()
                .and_then(|k| crate::files::read(root, &id, &task, k))
        });
    match found {
        Some((s, bytes)) => crate::files::download(&s, bytes),
        None => page(StatusCode::NOT_FOUND, "附件不存在", "<p>没有这个附件。</p>"),
    }
}
