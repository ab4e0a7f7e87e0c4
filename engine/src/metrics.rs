//! What an operator watches, in the Prometheus text format: instances by
//! status, open and overdue tasks, timers waiting and due with the lag of
//! the oldest, outbox rows by kind and status, and the transitions this
//! engine committed. `duban serve` serves it at `/metrics` when
//! `[metrics] listen` is set (docs/operations.md lists the series).
//!
//! The gauges are read from the store at each scrape (one grouped query per
//! table), so several engine processes on one PostgreSQL database report
//! the same counts; only `duban_transitions_total` is this process's own.
//! Encoding is `prometheus-client`'s, not hand-written.

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::service::Engine;
use crate::store::{Store, StoreError};

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// The metrics of `engine` at `now`, as OpenMetrics text.
pub async fn render<S: Store>(
    engine: &Engine<S>,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let stats = engine.store().stats(now).await?;
    let mut registry = Registry::with_prefix("duban");

    let instances = Family::<Labels, Gauge>::default();
    // Every status is reported, 0 when none is in it, so a panel or an
    // alert on `stuck` has a series from the start.
    for status in ["running", "completed", "cancelled", "stuck"] {
        let _ = instances.get_or_create(&vec![("status", status.to_string())]);
    }
    for (status, n) in &stats.instances {
        instances
            .get_or_create(&vec![("status", status.clone())])
            .set(*n as i64);
    }
    registry.register("instances", "Process instances by status", instances);

    let gauge = |v: u64| {
        let g = Gauge::<i64>::default();
        g.set(v as i64);
        g
    };
    registry.register(
        "tasks_open",
        "Open tasks and notices",
        gauge(stats.open_tasks),
    );
    registry.register(
        "tasks_overdue",
        "Open tasks and notices past their deadline",
        gauge(stats.overdue_tasks),
    );
    registry.register(
        "timers_pending",
        "Timers waiting to be applied, due or not (not those held for a stuck instance)",
        gauge(stats.timers),
    );
    registry.register(
        "timers_due",
        "Timers due now and not yet applied",
        gauge(stats.timers_due),
    );
    let lag = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    lag.set(
        stats
            .oldest_due
            .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
    );
    registry.register(
        "timer_lag_seconds",
        "How long the oldest due timer has waited (0 when none is due)",
        lag,
    );

    let outbox = Family::<Labels, Gauge>::default();
    // The series an alert watches exist from the start, at 0.
    for kind in ["email", "sms", "render_document"] {
        for status in ["pending", "dead"] {
            let _ = outbox.get_or_create(&vec![
                ("kind", kind.to_string()),
                ("status", status.to_string()),
            ]);
        }
    }
    for (kind, status, n) in &stats.outbox {
        outbox
            .get_or_create(&vec![("kind", kind.clone()), ("status", status.clone())])
            .set(*n as i64);
    }
    registry.register(
        "outbox_rows",
        "Outbox rows (emails, SMS, documents, calls) by kind and status",
        outbox,
    );

    let transitions = Counter::<u64>::default();
    transitions.inc_by(engine.transitions());
    registry.register(
        "transitions",
        "Transitions this engine process committed since it started",
        transitions,
    );

    let mut text = String::new();
    encode(&mut text, &registry)
        .map_err(|e| StoreError::Database(format!("encoding metrics: {e}")))?;
    Ok(text)
}
