//! Prometheus metrics. Counters and histograms are recorded where things happen
//! (`payhook_webhooks_received_total`, `payhook_processing_attempts_total`,
//! `payhook_processing_seconds`); the inbox depth and the outbox backlog are read
//! from the store at each scrape, so they are right even with several instances.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use payhook_domain::ports::{Outbox, StoreError, WebhookInbox};
use payhook_domain::InboxStatus;
use std::sync::OnceLock;

/// The process-wide recorder (the `metrics` macros write to one global recorder).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder already installed (an embedding program's) keeps its place.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Refreshes the gauges read from the store, then renders everything.
pub async fn render(
    handle: &PrometheusHandle,
    inbox: &dyn WebhookInbox,
    outbox: &dyn Outbox,
) -> Result<String, StoreError> {
    let depth = inbox.depth().await?;
    for status in InboxStatus::ALL {
        let n = depth.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
        metrics::gauge!("payhook_inbox_events", "status" => status.as_str()).set(n as f64);
    }
    metrics::gauge!("payhook_outbox_backlog").set(outbox.backlog().await? as f64);
    metrics::gauge!("payhook_outbox_dead").set(outbox.dead_count().await? as f64);
    Ok(handle.render())
}
