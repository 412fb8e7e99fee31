//! Prometheus metrics. Counters and histograms are recorded where things happen
//! (`payhook_webhooks_received_total`, `payhook_processing_attempts_total`,
//! `payhook_processing_seconds`); the inbox depth and the outbox backlog are read
//! from the store at each scrape, so they are right even with several instances.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use payhook_domain::ports::{Outbox, ReconcileQueue, StoreError, WebhookInbox};
use payhook_domain::InboxStatus;
use std::sync::OnceLock;

/// Each histogram's buckets, fitted to what it measures.
pub const BUCKETS: &[(&str, &[f64])] = &[
    // From a body read to its answer: milliseconds normally; providers give up at
    // 10 (Stripe) to 30 s (Xendit), so the top buckets show how close a slow store came.
    (
        "payhook_webhook_ack_seconds",
        &[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ],
    ),
    // One event's application: sub-millisecond in a batch; seconds when it waits
    // for a provider's API (QPay, JunglePay confirmations; 30 s timeout).
    (
        "payhook_processing_seconds",
        &[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ],
    ),
    // Deliveries per group-commit transaction: 1 when idle, up to 128 under load.
    (
        "payhook_ingest_batch_size",
        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
    ),
];

/// The process-wide recorder (the `metrics` macros write to one global recorder).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = BUCKETS
                .iter()
                .try_fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
                    builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
                })
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
    reconcile: &dyn ReconcileQueue,
) -> Result<String, StoreError> {
    let depth = inbox.depth().await?;
    for status in InboxStatus::ALL {
        let n = depth.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
        metrics::gauge!("payhook_inbox_events", "status" => status.as_str()).set(n as f64);
    }
    metrics::gauge!("payhook_outbox_backlog").set(outbox.backlog().await? as f64);
    metrics::gauge!("payhook_outbox_dead").set(outbox.dead_count().await? as f64);
    metrics::gauge!("payhook_reconcile_due").set(reconcile.count_due_checks(chrono::Utc::now()).await? as f64);
    Ok(handle.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_histogram_has_buckets_in_the_units_it_records() {
        let handle = handle();
        metrics::histogram!("payhook_ingest_batch_size").record(100.0);
        metrics::histogram!("payhook_webhook_ack_seconds", "provider" => "stripe").record(12.0);
        let text = handle.render();
        // A batch of 100 falls between 64 and 128, not past a seconds-sized top bucket.
        assert!(text.contains("payhook_ingest_batch_size_bucket{le=\"128\"}"), "{text}");
        assert!(
            !text.contains("payhook_ingest_batch_size_bucket{le=\"0.001\"}"),
            "{text}"
        );
        // An ACK of 12 s (a provider about to give up) is told from one of 2.5 s.
        assert!(
            text.contains("payhook_webhook_ack_seconds_bucket{provider=\"stripe\",le=\"30\"}"),
            "{text}"
        );
        for (name, buckets) in BUCKETS {
            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{name}: buckets ascend");
        }
    }
}
