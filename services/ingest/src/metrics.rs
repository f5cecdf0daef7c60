//! ingest's metrics. Label sets are bounded: routes are a fixed list, statuses are HTTP
//! codes, shards are numbers from config.

use payrail_core::telemetry::register;
use payrail_core::telemetry::LATENCY_BUCKETS;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub idempotent_replays: IntCounterVec,
    pub rate_limit_rejections: IntCounterVec,
    pub rate_limit_fail_open: IntCounterVec,
    pub redis_errors: IntCounter,
    pub group_commit_batch_size: HistogramVec,
    pub group_commit_duration: HistogramVec,
    pub group_commit_isolated_retries: IntCounterVec,
    /// Batches whose COMMIT's answer was lost (connection lost, timed out), by what the
    /// check found (`committed`, `rolled_back`, `unknown`).
    pub group_commit_resolved: IntCounterVec,
    pub breaker_state: IntGaugeVec,
    pub pg_calls: IntCounterVec,
    pub pg_duration: Histogram,
    pub in_flight: IntGauge,
    pub idempotency_purged: IntCounter,
    /// PG calls whose outcome became unknown (answer lost), by operation.
    pub pg_unknown_outcomes: IntCounterVec,
    /// Unknown outcomes resolved, by what the PG said (`approved_voided`, `declined`,
    /// `not_applied`, `void_refused`).
    pub pg_resolutions: IntCounterVec,
    /// From the unknown outcome (or the abandoned lease) to its resolution.
    pub pg_resolution_seconds: Histogram,
    /// Authorizations not yet resolved, per shard, and those older than the SLA.
    pub pg_unresolved: IntGaugeVec,
    pub pg_unresolved_overdue: IntGaugeVec,
    /// AUTHORIZED payments past their TTL sent to be voided.
    pub authorizations_expired: IntCounter,
    /// Payment requests refused for their API key, by reason (`missing`, `malformed`,
    /// `invalid`, `mismatch`, `not_loaded`).
    pub auth_failures: IntCounterVec,
    /// Usable API keys this instance holds.
    pub api_keys: IntGauge,
    /// 1 when payment routes need a merchant API key, 0 with `merchant_auth = "off"` (the
    /// dashboard warns).
    pub merchant_auth_required: IntGauge,
}

impl Metrics {
    pub fn new(instance: &str) -> Result<Self, prometheus::Error> {
        let registry = payrail_core::telemetry::registry("ingest", instance)?;
        registry.register(Box::new(payrail_core::alloc::AllocationsCollector::new()?))?;
        let r = &registry;
        let metrics = Self {
            requests: register(
                r,
                IntCounterVec::new(
                    Opts::new("http_requests_total", "HTTP requests by route and status"),
                    &["route", "status"],
                )?,
            ),
            request_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "http_request_duration_seconds",
                        "HTTP request latency by route",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["route"],
                )?,
            ),
            idempotent_replays: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "idempotent_replays_total",
                        "answers replayed for a repeated idempotency key, by layer",
                    ),
                    &["layer"],
                )?,
            ),
            rate_limit_rejections: register(
                r,
                IntCounterVec::new(
                    Opts::new("rate_limit_rejections_total", "requests refused with 429"),
                    &["action"],
                )?,
            ),
            rate_limit_fail_open: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "rate_limit_fail_open_total",
                        "requests let through because Redis was unavailable",
                    ),
                    &["action"],
                )?,
            ),
            redis_errors: register(
                r,
                IntCounter::new("redis_errors_total", "failed or timed out Redis calls")?,
            ),
            group_commit_batch_size: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "group_commit_batch_size",
                        "writes per group-commit transaction",
                    )
                    .buckets(vec![
                        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 48.0, 64.0, 128.0, 256.0,
                    ]),
                    &["shard"],
                )?,
            ),
            group_commit_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "group_commit_duration_seconds",
                        "group-commit transaction time, first statement to COMMIT",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["shard"],
                )?,
            ),
            group_commit_isolated_retries: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "group_commit_isolated_retries_total",
                        "batches that failed and were retried one write at a time",
                    ),
                    &["shard"],
                )?,
            ),
            group_commit_resolved: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "group_commit_resolved_total",
                        "batches whose COMMIT answer was lost, by what the check found",
                    ),
                    &["shard", "outcome"],
                )?,
            ),
            breaker_state: register(
                r,
                IntGaugeVec::new(
                    Opts::new("circuit_breaker_state", "0 closed, 1 open, 2 half-open"),
                    &["breaker"],
                )?,
            ),
            pg_calls: register(
                r,
                IntCounterVec::new(
                    Opts::new("pg_calls_total", "PG calls by operation and outcome"),
                    &["operation", "outcome"],
                )?,
            ),
            pg_duration: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("pg_call_duration_seconds", "PG call latency")
                        .buckets(LATENCY_BUCKETS.to_vec()),
                )?,
            ),
            in_flight: register(
                r,
                IntGauge::new("bridge_in_flight", "requests waiting on the async runtime")?,
            ),
            idempotency_purged: register(
                r,
                IntCounter::new(
                    "idempotency_records_purged_total",
                    "idempotency records deleted after retention",
                )?,
            ),
            pg_unknown_outcomes: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "pg_unknown_outcomes_total",
                        "PG calls whose answer was lost (timeout, dropped connection, 5xx)",
                    ),
                    &["operation"],
                )?,
            ),
            pg_resolutions: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "pg_resolutions_total",
                        "unknown authorization outcomes resolved, by what the PG said",
                    ),
                    &["result"],
                )?,
            ),
            pg_resolution_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "pg_resolution_seconds",
                        "time from a lost PG answer to its resolution",
                    )
                    .buckets(vec![
                        1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0, 900.0,
                    ]),
                )?,
            ),
            pg_unresolved: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "pg_unresolved",
                        "authorizations whose PG outcome is not resolved yet",
                    ),
                    &["shard"],
                )?,
            ),
            pg_unresolved_overdue: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "pg_unresolved_overdue",
                        "unresolved authorizations older than the resolution SLA",
                    ),
                    &["shard"],
                )?,
            ),
            authorizations_expired: register(
                r,
                IntCounter::new(
                    "authorizations_expired_total",
                    "AUTHORIZED payments past their TTL sent to be voided at the PG",
                )?,
            ),
            auth_failures: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "auth_failures_total",
                        "payment requests refused for their merchant API key, by reason",
                    ),
                    &["reason"],
                )?,
            ),
            api_keys: register(
                r,
                IntGauge::new("api_keys", "usable merchant API keys this instance holds")?,
            ),
            merchant_auth_required: register(
                r,
                IntGauge::new(
                    "merchant_auth_required",
                    "1 when payment routes need a merchant API key, 0 when merchant_auth = off",
                )?,
            ),
            registry,
        };
        // Series that exist from the start, so dashboards show 0 rather than no data.
        for operation in ["authorize", "void"] {
            metrics.pg_unknown_outcomes.with_label_values(&[operation]);
        }
        for reason in ["missing", "malformed", "invalid", "mismatch", "not_loaded"] {
            metrics.auth_failures.with_label_values(&[reason]);
        }
        Ok(metrics)
    }
}
