//! Everything a request needs, built once at start-up.

use crate::config::Config;
use crate::group_commit::GroupCommit;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::rate_limit::Redis;
use payrail_core::breaker::CircuitBreaker;
use payrail_db::sequence::Sequences;
use payrail_db::Shards;
use payrail_pg::PgClient;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct App {
    pub config: Config,
    /// One bounded pool per shard.
    pub shards: Arc<Shards>,
    /// Id blocks, so most ids cost no round trip.
    pub sequences: Sequences,
    /// Rate limits and the replay cache; optional for correctness.
    pub redis: Redis,
    /// Keep-alive client to the PG.
    pub pg: PgClient,
    /// Stops calling a failing PG so requests fail fast with 503 instead of piling up.
    pub pg_breaker: CircuitBreaker,
    /// Per-shard write queues and their writers.
    pub group_commit: GroupCommit,
    pub metrics: Arc<Metrics>,
    pub health: Health,
    /// Wakes a shard's outbox relay right after a commit that wrote events.
    /// Wakes this process's relay when events were committed.
    pub outbox: Arc<payrail_outbox::Outbox>,
    /// The outbox relay, when a broker is configured.
    pub relay: std::sync::OnceLock<Arc<payrail_outbox::Relay>>,
    /// Merchant API keys; `None` with `merchant_auth = "off"`.
    pub keys: Option<crate::merchant_auth::MerchantKeys>,
    /// Source of idempotency owner tokens.
    owner_tokens: AtomicU64,
}

impl App {
    /// Must run inside the tokio runtime (the group-commit writers are spawned on it).
    pub fn build(config: Config) -> Result<Arc<Self>, String> {
        let metrics =
            Arc::new(Metrics::new(&config.instance).map_err(|e| format!("metrics: {e}"))?);
        let shards = Arc::new(Shards::new(&config.shards, &config.pool)?);
        let sequences = Sequences::new(shards.count(), config.id_block_size);
        let redis = Redis::new(&config.redis)?;
        let pg = PgClient::new(
            &config.pg.base_url,
            Duration::from_millis(config.pg.timeout_ms),
            Duration::from_millis(config.pg.connect_timeout_ms),
            config.pg.pool_idle_max,
        );
        let pg_breaker = CircuitBreaker::new("pg-authorize", config.pg.breaker.clone());
        let outbox = payrail_outbox::Outbox::new(shards.count());
        let group_commit = GroupCommit::start(
            shards.clone(),
            metrics.clone(),
            config.group_commit,
            config.idempotency.lease_ms,
            outbox.clone(),
        );
        let health = Health::new(shards.count());
        let keys = crate::merchant_auth::MerchantKeys::load(&config, shards.count())?;
        metrics
            .merchant_auth_required
            .set(i64::from(keys.is_some()));
        let seed = (payrail_core::time::now_ms() as u64) ^ (u64::from(std::process::id()) << 32);
        Ok(Arc::new(Self {
            config,
            shards,
            sequences,
            redis,
            pg,
            pg_breaker,
            group_commit,
            metrics,
            health,
            outbox,
            keys,
            relay: std::sync::OnceLock::new(),
            owner_tokens: AtomicU64::new(seed),
        }))
    }

    /// Tells the shard's relay that events were committed.
    pub fn outbox_committed(&self, shard: u16) {
        self.outbox.committed(shard);
    }

    /// A fresh token naming this request as the owner of an idempotency record
    /// (splitmix64 over a counter: unique per process, unpredictable across processes).
    pub fn owner_token(&self) -> i64 {
        let mut z = self
            .owner_tokens
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as i64
    }
}
