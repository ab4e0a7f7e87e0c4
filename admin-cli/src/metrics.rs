//! `/healthz` and `/metrics` of `duban serve` (`[metrics] listen`).
//!
//! `/healthz` answers 200 `ok` when the store answers, 503 with the reason
//! otherwise; `/metrics` is [`duban_engine::metrics::render`] at the
//! engine's clock. Neither needs a token: bind it to an address only the
//! monitoring reaches (the default example uses 127.0.0.1).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use duban_engine::serve::{Clock, SystemClock};
use duban_engine::service::Engine;
use duban_engine::store::{SqlStore, Store};

type Shared = (Arc<Engine<SqlStore>>, SystemClock);

/// The router of the two paths.
pub fn router(engine: Arc<Engine<SqlStore>>, clock: SystemClock) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new((engine, clock)))
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    match s.0.store().outbox_pending().await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => unavailable(&e),
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    match duban_engine::metrics::render(&s.0, s.1.now()).await {
        Ok(text) => (
            [(header::CONTENT_TYPE, duban_engine::metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(e) => unavailable(&e),
    }
}

/// 503, saying only that the store does not answer (the error itself goes
/// to the log: it may name hosts an outside caller need not see).
fn unavailable(e: &duban_engine::store::StoreError) -> Response {
    tracing::warn!(error = %e, "metrics: the store does not answer");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the store does not answer\n",
    )
        .into_response()
}
