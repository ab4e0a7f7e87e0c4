//! The JSON API (`/api/v1`), for other government systems: the same
//! actions as the pages, authorised by bearer tokens (`duban token create
//! --person P | --role R`, stored hashed, revocable at once).
//!
//! A person's token acts as that person: the engine decides, as for every
//! actor, whether they may act on a task (an assignee, or a holder of its
//! role), and the history names them. A role's token reads the tasks of
//! the role's holders and completes nothing. Every error is JSON,
//! `{"code": …, "message": …}`, with the engine's stable code (`R029`) where
//! there is one; no response carries SQL or an internal error text.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /api/v1/tasks` | the open tasks the token may see |
//! | `GET /api/v1/overdue` | those past their cut-off |
//! | `POST /api/v1/tasks/TASK/complete` `{"outcome": …, "variables": {…}}` | complete a task |
//! | `POST /api/v1/tasks/TASK/receive` | record receipt of a notice |
//! | `GET /api/v1/instances/ID` | an instance the token's person (or role) has a task in |
//! | `POST /api/v1/messages` `{"name": …, "key": …, "variables": {…}}` | deliver a message to the instances waiting for it (a person of `supervision_office`) |

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use duban_engine::runtime::{Directory, EngineError, Event};
use duban_engine::service::{ServiceError, Values};
use duban_engine::store::ApiToken;
use serde_json::{json, Value};

use crate::Portal;

/// The API's routes.
pub(crate) fn routes() -> Router<Portal> {
    Router::new()
        .route("/api/v1/tasks", get(tasks))
        .route("/api/v1/overdue", get(overdue))
        .route("/api/v1/tasks/{task}/complete", post(complete))
        .route("/api/v1/tasks/{task}/receive", post(receive))
        .route("/api/v1/instances/{id}", get(instance))
        .route("/api/v1/messages", post(message))
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "code": code, "message": message.into() })),
    )
        .into_response()
}

/// A service error as the API answers it.
fn failed(e: ServiceError) -> Response {
    match e {
        ServiceError::Engine(e) => {
            let status = match e {
                EngineError::NotPermitted { .. } | EngineError::Recused { .. } => {
                    StatusCode::FORBIDDEN
                }
                EngineError::UnknownTask(_) | EngineError::NoInstance => StatusCode::NOT_FOUND,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            error(status, e.code(), e.message())
        }
        ServiceError::UnknownInstance(_) | ServiceError::BadTaskId(_) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such task or instance",
        ),
        ServiceError::Store(duban_engine::store::StoreError::Conflict(_)) => error(
            StatusCode::CONFLICT,
            "conflict",
            "the instance changed meanwhile; read it again and retry",
        ),
        other => {
            tracing::error!(error = %other, "api: the store failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service cannot answer now; nothing was changed",
            )
        }
    }
}

/// The JSON body of the `shape` described, or the 400 to answer with.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not {shape}: {e}"),
        )
    })
}

/// The token of the request, or the 401 to answer with.
async fn token(p: &Portal, headers: &HeaderMap) -> Result<ApiToken, Response> {
    let unauthorized = || {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "give a valid token: `Authorization: Bearer dbn.…` (`duban token create`)",
        )
    };
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    match p.engine.authenticate(bearer.trim()).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(unauthorized()),
        Err(e) => Err(failed(e)),
    }
}

/// The person the request's token acts as: 401 without a valid token,
/// 403 for a role's token, which reads only.
async fn acting(p: &Portal, headers: &HeaderMap) -> Result<String, Response> {
    let t = token(p, headers).await?;
    t.person.ok_or_else(|| {
        error(
            StatusCode::FORBIDDEN,
            "read_only",
            "a role's token reads; acting on a task takes a person's token (`duban token create --person`)",
        )
    })
}

async fn tasks(State(p): State<Portal>, headers: HeaderMap) -> Response {
    let t = match token(&p, &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    match p.engine.tasks_of(&t).await {
        Ok(rows) => Json(json!(rows)).into_response(),
        Err(e) => failed(e),
    }
}

async fn overdue(State(p): State<Portal>, headers: HeaderMap) -> Response {
    let t = match token(&p, &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let now = (p.clock)();
    match p.engine.tasks_of(&t).await {
        Ok(rows) => {
            let late: Vec<_> = rows
                .into_iter()
                .filter(|r| r.due.is_some_and(|d| d < now))
                .map(|r| {
                    let days = crate::days_overdue(r.last_day.as_deref(), now);
                    let mut v = json!(r);
                    v["days_overdue"] = json!(days);
                    v
                })
                .collect();
            Json(json!(late)).into_response()
        }
        Err(e) => failed(e),
    }
}

async fn complete(
    State(p): State<Portal>,
    Path(task): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let who = match acting(&p, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        outcome: String,
        #[serde(default)]
        variables: BTreeMap<String, Value>,
    }
    let b: Body = match parse(&body, r#"{"outcome": …, "variables": {…}}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let now = (p.clock)();
    match p
        .engine
        .complete(&task, &b.outcome, Values::Json(b.variables), &who, now)
        .await
    {
        Ok(tr) => Json(json!({ "instance": tr.state.id, "status": tr.state.status.name() }))
            .into_response(),
        Err(e) => failed(e),
    }
}

async fn receive(
    State(p): State<Portal>,
    Path(task): Path<String>,
    headers: HeaderMap,
) -> Response {
    let who = match acting(&p, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some((instance, _)) = task.split_once('.') else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such task or instance",
        );
    };
    let event = Event::Receive {
        task: task.clone(),
        actor: who,
    };
    match p.engine.apply(instance, &event, (p.clock)()).await {
        Ok(tr) => Json(json!({ "instance": tr.state.id, "status": tr.state.status.name() }))
            .into_response(),
        Err(e) => failed(e),
    }
}

async fn instance(State(p): State<Portal>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let t = match token(&p, &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let s = match p.engine.instance(&id).await {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let people: Vec<String> = match (&t.person, &t.role) {
        (Some(person), _) => vec![person.clone()],
        (None, Some(role)) => p
            .engine
            .directory()
            .holders(role, None)
            .into_iter()
            .map(|h| h.id)
            .collect(),
        (None, None) => Vec::new(),
    };
    let theirs = s
        .tasks
        .values()
        .any(|task| task.assignees.iter().any(|a| people.contains(a)));
    if !theirs {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token's person (or role) has no task in this instance",
        );
    }
    Json(json!(s)).into_response()
}

/// Delivers a message (`wait_message` steps) as the token's person, who
/// must hold the supervision office's role: a message moves a case on, as
/// `duban message` does for an administrator. The history names the sender.
async fn message(State(p): State<Portal>, headers: HeaderMap, body: Bytes) -> Response {
    let who = match acting(&p, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !crate::staff::is_office(&p, &who) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "sending a message takes a person of the role `{}`",
                crate::staff::OFFICE_ROLE
            ),
        );
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: String,
        key: String,
        #[serde(default)]
        variables: BTreeMap<String, Value>,
    }
    let b: Body = match parse(&body, r#"{"name": …, "key": …, "variables": {…}}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match p
        .engine
        .message_from(
            &b.name,
            &b.key,
            Values::Json(b.variables),
            Some(&who),
            (p.clock)(),
        )
        .await
    {
        Ok(ids) => Json(json!({ "delivered_to": ids })).into_response(),
        Err(ServiceError::Engine(e @ EngineError::NotAwaited { .. })) => {
            error(StatusCode::NOT_FOUND, e.code(), e.message())
        }
        Err(e) => failed(e),
    }
}
