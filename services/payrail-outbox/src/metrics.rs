//! The relay's metrics, registered in the registry of the service that runs it.

use payrail_core::telemetry::{register, LATENCY_BUCKETS};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

pub struct Metrics {
    /// Events handed to the producer.
    pub sent: IntCounterVec,
    /// Events the broker confirmed.
    pub published: IntCounterVec,
    /// Rows this relay marked published (under its lease epoch).
    pub marked: IntCounterVec,
    /// Rounds cut short by the fence: sends stopped or marks refused because the lease
    /// was lost or about to run out.
    pub fenced: IntCounterVec,
    /// Published events deleted after `relay.retention_seconds`.
    pub purged: IntCounterVec,
    pub publish_failures: IntCounterVec,
    pub lag: HistogramVec,
    pub backlog: IntGaugeVec,
    pub leader: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str) -> Result<IntCounterVec, prometheus::Error> {
    Ok(register(
        r,
        IntCounterVec::new(Opts::new(name, help), &["shard"])?,
    ))
}

impl Metrics {
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            sent: counter(r, "outbox_sent_total", "outbox events handed to the producer")?,
            published: counter(
                r,
                "outbox_published_total",
                "outbox events confirmed by the broker",
            )?,
            marked: counter(
                r,
                "outbox_marked_total",
                "outbox rows marked published under this relay's lease epoch",
            )?,
            fenced: counter(
                r,
                "outbox_relay_fenced_total",
                "relay rounds stopped by the lease fence (lease lost or about to run out)",
            )?,
            purged: counter(
                r,
                "outbox_purged_total",
                "published outbox events deleted after retention",
            )?,
            publish_failures: counter(
                r,
                "outbox_publish_failures_total",
                "outbox events the broker did not confirm",
            )?,
            lag: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "outbox_lag_seconds",
                        "commit to broker confirmation, per event",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["shard"],
                )?,
            ),
            backlog: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "outbox_backlog",
                        "unpublished outbox events (counted by the shard's lease holder; 0 elsewhere)",
                    ),
                    &["shard"],
                )?,
            ),
            leader: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "outbox_relay_leader",
                        "1 while this instance holds the shard's relay lease",
                    ),
                    &["shard"],
                )?,
            ),
        })
    }
}
