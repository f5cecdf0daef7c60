//! ingest's config file. Every limit is here, with the reason it exists.

use payrail_core::breaker::BreakerConfig;
use payrail_core::config::Validate;
use payrail_db::{PoolConfig, ShardConfig};
use payrail_http::ServerConfig;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the payment API, like `127.0.0.1:8081`.
    pub listen: String,
    /// Name of this instance in logs and metrics (`ingest-1`).
    #[serde(default = "default_instance")]
    pub instance: String,
    /// The shards, numbered 1..=N. The shard count is part of the routing rule: changing
    /// it moves merchants, so it is fixed for the life of a deployment.
    pub shards: Vec<ShardConfig>,
    #[serde(default)]
    pub pool: PoolConfig,
    pub redis: RedisConfig,
    pub pg: PgConfig,
    #[serde(default)]
    pub rate_limits: RateLimits,
    #[serde(default)]
    pub idempotency: IdempotencyConfig,
    #[serde(default)]
    pub group_commit: GroupCommitConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The broker the outbox relay publishes to; without it the relay does not run and
    /// events wait in the outbox.
    #[serde(default)]
    pub kafka: Option<payrail_kafka::KafkaConfig>,
    #[serde(default)]
    pub relay: payrail_outbox::RelayConfig,
    #[serde(default)]
    pub resolver: ResolverConfig,
    #[serde(default)]
    pub expiry: ExpiryConfig,
    #[serde(default)]
    pub http: ServerConfig,
    /// Accepted ISO 4217 currencies. Default KRW, USD, EUR, JPY, GBP, CNY.
    #[serde(default = "default_currencies")]
    pub currencies: Vec<String>,
    /// Ids reserved from a shard's sequence at a time; larger blocks mean fewer round trips,
    /// smaller ones keep ids closer to time order across instances. Default 1 000.
    #[serde(default = "default_id_block_size")]
    pub id_block_size: u64,
    /// Whether payment routes need a merchant API key (`Authorization: Bearer <key>`), which
    /// then decides the merchant. `off` trusts the `merchantId` a request names (reference
    /// clients only; logged as a warning and shown on `/health`). Default `required`.
    #[serde(default)]
    pub merchant_auth: MerchantAuth,
    #[serde(default)]
    pub api_keys: ApiKeysConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MerchantAuth {
    #[default]
    Required,
    Off,
}

impl MerchantAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            MerchantAuth::Required => "required",
            MerchantAuth::Off => "off",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// The secret file (at least 32 bytes) the keys' BLAKE3 hash is keyed with; the same
    /// file as monitoring's. Required when `merchant_auth = "required"`.
    pub hash_key_file: Option<PathBuf>,
    /// How often the key store is read for created, rolled and revoked keys: a revoked key
    /// is refused on every instance within this (issue 14 asks 5 s). Default 1 000 ms.
    pub refresh_interval_ms: u64,
    /// How often `lastUsedAt` is written (one statement per shard). Default 30 000 ms.
    pub last_used_flush_ms: u64,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        Self {
            hash_key_file: None,
            refresh_interval_ms: 1_000,
            last_used_flush_ms: 30_000,
        }
    }
}

fn default_instance() -> String {
    "ingest".into()
}

fn default_currencies() -> Vec<String> {
    ["KRW", "USD", "EUR", "JPY", "GBP", "CNY"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

fn default_id_block_size() -> u64 {
    1000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`, or `rediss://` for TLS; without the password.
    pub url: String,
    /// File holding the Redis password, if Redis requires one.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// With a `rediss://` url: the PEM file of the CA Redis's certificate must chain to
    /// (the system roots without it).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Longest a Redis call may take before the request goes on without Redis (fail-open
    /// for rate limits, MariaDB for idempotency). Default 100 ms.
    #[serde(default = "default_redis_timeout")]
    pub timeout_ms: u64,
    /// Prefix of every key, so several deployments (or tests) can share one Redis.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
}

fn default_redis_timeout() -> u64 {
    100
}

fn default_prefix() -> String {
    "payrail:".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    /// Base URL of the PG, like `http://127.0.0.1:8090`.
    pub base_url: String,
    /// Longest an authorization call may take. Default 2 000 ms.
    #[serde(default = "default_pg_timeout")]
    pub timeout_ms: u64,
    /// Default 500 ms.
    #[serde(default = "default_pg_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Idle keep-alive connections kept to the PG. Default 256.
    #[serde(default = "default_pg_idle")]
    pub pool_idle_max: usize,
    /// The authorization circuit breaker.
    #[serde(default)]
    pub breaker: BreakerConfig,
}

fn default_pg_timeout() -> u64 {
    2000
}
fn default_pg_connect_timeout() -> u64 {
    500
}
fn default_pg_idle() -> usize {
    256
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per merchant per window; 0 disables the limit.
    pub limit: u64,
    pub window_ms: u64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Default 48 000 per 60 s.
    pub authorize: RateLimit,
    /// Default 48 000 per 60 s.
    pub capture: RateLimit,
    /// Default 30 000 per 60 s.
    pub refund: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            authorize: RateLimit {
                limit: 48_000,
                window_ms: 60_000,
            },
            capture: RateLimit {
                limit: 48_000,
                window_ms: 60_000,
            },
            refund: RateLimit {
                limit: 30_000,
                window_ms: 60_000,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// How long Redis keeps a completed answer for fast replays. Default 600 s.
    pub cache_ttl_seconds: u64,
    /// How long MariaDB keeps idempotency records (at least 24 h). Default 86 400 s.
    pub retention_seconds: u64,
    /// How often the purge job runs. Default 60 s.
    pub purge_interval_seconds: u64,
    /// Rows deleted per purge statement, so a purge never holds long locks. Default 5 000.
    pub purge_batch_size: u64,
    /// How long a request owns its key while it calls the PG. After this a retry may take
    /// the key over (its owner presumably crashed) and repeats the PG call with the same
    /// request id, which the PG answers idempotently. Default 30 000 ms.
    pub lease_ms: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            cache_ttl_seconds: 600,
            retention_seconds: 86_400,
            purge_interval_seconds: 60,
            purge_batch_size: 5_000,
            lease_ms: 30_000,
        }
    }
}

/// The resolver of authorizations whose PG outcome is unknown (answer lost, or the request's
/// owner died between the PG's answer and the commit). See `resolver.rs`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResolverConfig {
    /// How long the client has, after its request's lease ran out, to come back with its
    /// key and get the PG's answer itself; after that the resolver decides (and voids a
    /// granted authorization nobody is waiting for). Default 15 000 ms.
    pub abandon_after_ms: u64,
    /// Scan interval per shard. Default 2 000 ms.
    pub interval_ms: u64,
    /// Records resolved per scan and shard. Default 100.
    pub batch_size: u64,
    /// While the PG cannot be asked: first retry after this, doubling. Default 2 000 ms.
    pub backoff_initial_ms: u64,
    /// The cap of that backoff: an unknown outcome is asked about at least this often,
    /// forever (it is never guessed). Default 60 000 ms.
    pub backoff_max_ms: u64,
    /// How long one resolver instance owns a record while it works on it. Default 30 000 ms.
    pub lease_ms: u64,
    /// The resolution SLA: unknown outcomes older than this count as overdue (metric,
    /// admin view, reconciliation). Default 60 000 ms.
    pub sla_ms: u64,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            abandon_after_ms: 15_000,
            interval_ms: 2_000,
            batch_size: 100,
            backoff_initial_ms: 2_000,
            backoff_max_ms: 60_000,
            lease_ms: 30_000,
            sla_ms: 60_000,
        }
    }
}

/// Authorization expiry: an AUTHORIZED payment older than the TTL is voided at the PG.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpiryConfig {
    /// Default 604 800 s (7 days, as card networks allow); as low as 1 s for tests.
    pub authorization_ttl_seconds: u64,
    /// Sweep interval per shard. Default 10 000 ms.
    pub interval_ms: u64,
    /// Payments expired per sweep and shard. Default 200.
    pub batch_size: u64,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        Self {
            authorization_ttl_seconds: 7 * 86_400,
            interval_ms: 10_000,
            batch_size: 200,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupCommitConfig {
    /// Most writes in one transaction. Default 64.
    pub batch_size_max: usize,
    /// Transactions in flight per shard. While they commit, new writes queue up and form
    /// the next batch. Default 2.
    pub writers_per_shard: usize,
    /// Writes waiting per shard at most; beyond that requests get 503 instead of queueing
    /// without bound. Default 4 096.
    pub queue_depth_max: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self {
            batch_size_max: 64,
            writers_per_shard: 2,
            queue_depth_max: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// may worker threads (HTTP). Default 2.
    pub may_worker_threads: usize,
    /// tokio worker threads (MariaDB, Redis, PG). Default 2.
    pub tokio_worker_threads: usize,
    /// Coroutine stack in words (8 bytes); stacks do not grow. Default 16 384 (128 KiB).
    pub coroutine_stack_words: usize,
    /// Requests in flight on the bridge at most; more get 503. Default 4 096.
    pub in_flight_max: usize,
    /// Longest a request waits for its async work. Default 10 000 ms.
    pub request_timeout_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            may_worker_threads: 2,
            tokio_worker_threads: 2,
            coroutine_stack_words: 16 * 1024,
            in_flight_max: 4096,
            request_timeout_ms: 10_000,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        if self.shards.is_empty() {
            return Err("at least one shard is required".into());
        }
        if self.idempotency.retention_seconds < 86_400 {
            return Err("idempotency.retention_seconds must be at least 86400 (24 h)".into());
        }
        if self.group_commit.batch_size_max == 0 || self.group_commit.writers_per_shard == 0 {
            return Err(
                "group_commit.batch_size_max and writers_per_shard must be at least 1".into(),
            );
        }
        if self.currencies.is_empty() {
            return Err("currencies must not be empty".into());
        }
        if self.merchant_auth == MerchantAuth::Required && self.api_keys.hash_key_file.is_none() {
            return Err(
                "merchant_auth = \"required\" needs api_keys.hash_key_file (or set merchant_auth = \"off\" for reference clients)"
                    .into(),
            );
        }
        if !(100..=5_000).contains(&self.api_keys.refresh_interval_ms) {
            return Err("api_keys.refresh_interval_ms must be 100..=5000 (revocations reach every instance within it)".into());
        }
        for limit in [
            self.rate_limits.authorize,
            self.rate_limits.capture,
            self.rate_limits.refund,
        ] {
            if limit.limit > 0 && limit.window_ms == 0 {
                return Err("a rate limit needs a window_ms above 0".into());
            }
        }
        if self.expiry.authorization_ttl_seconds == 0 {
            return Err("expiry.authorization_ttl_seconds must be at least 1".into());
        }
        let r = &self.resolver;
        if r.interval_ms == 0 || r.batch_size == 0 || r.backoff_initial_ms == 0 || r.lease_ms == 0 {
            return Err(
                "resolver interval_ms, batch_size, backoff_initial_ms and lease_ms must be above 0"
                    .into(),
            );
        }
        if r.backoff_max_ms < r.backoff_initial_ms {
            return Err("resolver.backoff_max_ms must be at least backoff_initial_ms".into());
        }
        if self.runtime.may_worker_threads == 0 || self.runtime.tokio_worker_threads == 0 {
            return Err("runtime thread counts must be at least 1".into());
        }
        Ok(())
    }
}
