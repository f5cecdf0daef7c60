//! The relay's settings: the `[relay]` table of every service that runs it.

use payrail_core::breaker::BreakerConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Events claimed and published per round. Default 500.
    pub batch_size_max: usize,
    /// How often a relay looks for events committed by other instances (its own commits
    /// wake it at once) while it finds some. Default 50 ms.
    pub poll_interval_ms: u64,
    /// While it finds none, the wait doubles up to this (`payrail_core::poll`), so another
    /// instance's first event after a quiet spell waits up to this long. Default 1 000 ms.
    pub idle_poll_max_ms: u64,
    /// How long a relay holds a shard after its last renewal (every third of it); another
    /// instance takes the shard over after this if the holder dies or stalls. The holder
    /// stops sending while less than its producer's message timeout (a third of the
    /// lease) remains, so none of its sends can land after a takeover. Default 10 000 ms.
    pub lease_ms: u64,
    /// First and longest wait after a failed round. Defaults 100 ms and 5 000 ms.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// The `kafka-publisher` breaker: OPEN at ≥ 50 % failures or ≥ 50 % calls slower than
    /// 2 s over ≥ 5 calls; HALF_OPEN after 30 s with 3 probes.
    pub breaker: BreakerConfig,
    /// How long published events stay in `outbox_event` (for inspection) before they are
    /// deleted, so the table stays the size of a week's traffic. Default 604 800 s (7 days).
    pub retention_seconds: u64,
    /// How often the purge runs. Default 60 s.
    pub purge_interval_seconds: u64,
    /// Rows deleted per purge transaction, so no batch holds locks for long. Default 1 000.
    pub purge_batch_size: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size_max: 500,
            poll_interval_ms: 50,
            idle_poll_max_ms: 1_000,
            lease_ms: 10_000,
            backoff_initial_ms: 100,
            backoff_max_ms: 5_000,
            breaker: BreakerConfig {
                minimum_calls: 5,
                ..BreakerConfig::default()
            },
            retention_seconds: 604_800,
            purge_interval_seconds: 60,
            purge_batch_size: 1_000,
        }
    }
}
