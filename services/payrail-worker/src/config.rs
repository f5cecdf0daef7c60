//! A worker's config file.

use payrail_core::config::Validate;
use payrail_db::{PoolConfig, ShardConfig};
use payrail_http::ServerConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// `/health` and `/metrics`, like `127.0.0.1:8084`.
    pub listen: String,
    #[serde(default = "default_instance")]
    pub instance: String,
    pub shards: Vec<ShardConfig>,
    #[serde(default)]
    pub pool: PoolConfig,
    pub kafka: payrail_kafka::KafkaConfig,
    pub pg: PgConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The outbox relay this process runs (see `payrail_outbox`).
    #[serde(default)]
    pub relay: payrail_outbox::RelayConfig,
    #[serde(default)]
    pub http: ServerConfig,
}

/// Finished jobs are deleted after a while, so the job tables stay the size of the
/// retention's traffic.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// How long a `SUCCEEDED` or `FAILED` job row stays (a DLQ replay re-arms a failed
    /// job from it). Default 604 800 s (7 days).
    pub finished_job_seconds: u64,
    /// How often the purge runs. Default 60 s.
    pub purge_interval_seconds: u64,
    /// Rows deleted per purge transaction. Default 1 000.
    pub purge_batch_size: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            finished_job_seconds: 604_800,
            purge_interval_seconds: 60,
            purge_batch_size: 1_000,
        }
    }
}

fn default_instance() -> String {
    "worker".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    pub base_url: String,
    /// Default 5 000 ms.
    #[serde(default = "default_pg_timeout")]
    pub timeout_ms: u64,
}

fn default_pg_timeout() -> u64 {
    5_000
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// PG attempts per job before it fails for good. Default 10.
    pub attempts_max: u32,
    /// Wait after the first failure; doubles each time. Default 500 ms.
    pub backoff_initial_ms: u64,
    /// Longest wait between attempts. Default 60 000 ms.
    pub backoff_max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts_max: 10,
            backoff_initial_ms: 500,
            backoff_max_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// How often a scheduler looks for due jobs while it finds some (new jobs from its
    /// own intake wake it at once). Default 100 ms.
    pub poll_interval_ms: u64,
    /// While it finds none, the wait doubles up to this (`payrail_core::poll`), so a retry
    /// falling due in a quiet spell starts up to this late. Default 1 000 ms.
    pub idle_poll_max_ms: u64,
    /// Jobs claimed per round and shard. Default 200.
    pub claim_batch_size: usize,
    /// A claimed job not finished in this time is due again (its worker died). Default 30 000 ms.
    pub claim_timeout_ms: u64,
    /// PG calls in flight per worker process. Default 64.
    pub concurrency_max: usize,
    /// Request events persisted per intake transaction at most. Default 500.
    pub intake_batch_size: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 100,
            idle_poll_max_ms: 1_000,
            claim_batch_size: 200,
            claim_timeout_ms: 30_000,
            concurrency_max: 64,
            intake_batch_size: 500,
        }
    }
}

impl Validate for WorkerConfig {
    fn validate(&self) -> Result<(), String> {
        if self.shards.is_empty() {
            return Err("at least one shard is required".into());
        }
        if self.retry.attempts_max == 0
            || self.scheduler.concurrency_max == 0
            || self.scheduler.claim_batch_size == 0
        {
            return Err("retry.attempts_max, scheduler.concurrency_max and claim_batch_size must be at least 1".into());
        }
        Ok(())
    }
}
