//! The gateway's metrics. Label sets are bounded: routes are a fixed list, upstreams come
//! from config, statuses are HTTP codes.

use payrail_core::telemetry::register;
use payrail_core::telemetry::LATENCY_BUCKETS;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub upstream_healthy: IntGaugeVec,
    pub upstream_ejections: IntCounterVec,
    pub retries: IntCounterVec,
    pub in_flight: IntGauge,
    pub cors_rejections: IntCounter,
    /// Requests answered 429 because their address or key prefix failed too often.
    pub auth_throttled: IntCounter,
    /// Refused authentications (401 from an upstream) counted by the throttle.
    pub auth_failures: IntCounter,
}

impl Metrics {
    pub fn new(instance: &str) -> Result<Self, prometheus::Error> {
        let registry = payrail_core::telemetry::registry("gateway", instance)?;
        registry.register(Box::new(payrail_core::alloc::AllocationsCollector::new()?))?;
        let r = &registry;
        Ok(Self {
            requests: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gateway_requests_total",
                        "requests answered by the gateway, by route and status",
                    ),
                    &["route", "status"],
                )?,
            ),
            request_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "gateway_request_duration_seconds",
                        "time from the request's last byte to the answer, by route",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["route"],
                )?,
            ),
            upstream_requests: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gateway_upstream_requests_total",
                        "attempts sent to an upstream instance, by outcome (answered, connect_error, error, timeout)",
                    ),
                    &["pool", "upstream", "outcome"],
                )?,
            ),
            upstream_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "gateway_upstream_duration_seconds",
                        "one attempt's time at an upstream instance",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["pool", "upstream"],
                )?,
            ),
            upstream_healthy: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "gateway_upstream_healthy",
                        "1 while the instance passes its health checks",
                    ),
                    &["pool", "upstream"],
                )?,
            ),
            upstream_ejections: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gateway_upstream_ejections_total",
                        "instances skipped after a failed connect",
                    ),
                    &["pool", "upstream"],
                )?,
            ),
            retries: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gateway_retries_total",
                        "requests sent again to another instance, by reason",
                    ),
                    &["reason"],
                )?,
            ),
            in_flight: register(
                r,
                IntGauge::new(
                    "gateway_in_flight_requests",
                    "requests waiting for an upstream",
                )?,
            ),
            cors_rejections: register(
                r,
                IntCounter::new(
                    "gateway_cors_rejections_total",
                    "preflight requests from origins not in the allow-list",
                )?,
            ),
            auth_throttled: register(
                r,
                IntCounter::new(
                    "gateway_auth_throttled_total",
                    "requests refused 429 after too many failed authentications from their address or key prefix",
                )?,
            ),
            auth_failures: register(
                r,
                IntCounter::new(
                    "gateway_auth_failures_total",
                    "refused authentications (401 from an upstream) counted by the throttle",
                )?,
            ),
            registry,
        })
    }
}
