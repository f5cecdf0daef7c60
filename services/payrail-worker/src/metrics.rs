//! A worker's metrics.

use payrail_core::telemetry::register;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub intake: IntCounterVec,
    pub outcomes: IntCounterVec,
    pub attempts: Histogram,
    pub pg_duration: Histogram,
    /// Finished jobs deleted after `retention.finished_job_seconds`.
    pub jobs_purged: IntCounter,
}

impl Metrics {
    pub fn new(service: &str, instance: &str) -> Result<Self, prometheus::Error> {
        let registry = payrail_core::telemetry::registry(service, instance)?;
        let r = &registry;
        Ok(Self {
            intake: register(
                r,
                IntCounterVec::new(
                    Opts::new("worker_intake_total", "request events taken in, by result"),
                    &["result"],
                )?,
            ),
            outcomes: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "worker_jobs_total",
                        "PG attempts by outcome (succeeded, retry, failed, unknown)",
                    ),
                    &["outcome"],
                )?,
            ),
            attempts: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "worker_attempts_per_job",
                        "PG attempts a finished job needed",
                    )
                    .buckets(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0]),
                )?,
            ),
            pg_duration: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("worker_pg_call_duration_seconds", "PG call latency")
                        .buckets(payrail_core::telemetry::LATENCY_BUCKETS.to_vec()),
                )?,
            ),
            jobs_purged: register(
                r,
                IntCounter::new(
                    "worker_jobs_purged_total",
                    "finished jobs deleted after retention",
                )?,
            ),
            registry,
        })
    }
}
