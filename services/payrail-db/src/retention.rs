//! Bounded growth: rows past their retention are deleted in small batches.
//!
//! Each batch is its own short READ COMMITTED transaction: at REPEATABLE READ a range
//! delete also locks the gap after the range it scans, and for the outbox that gap is where
//! every new unpublished row is inserted (`ix_unpublished` sorts NULL first), so a purge
//! would hold authorizations back for as long as a batch takes.

use crate::error::{DbError, Result};
use crate::shards::Shards;
use mysql_async::prelude::Queryable;
use mysql_async::{IsolationLevel, TxOpts};
use std::time::Duration;

/// Published outbox events: the broker has them, nothing reads them again.
pub const OUTBOX_PUBLISHED: &str =
    "DELETE FROM outbox_event WHERE published_at < UTC_TIMESTAMP(3) - INTERVAL ? SECOND LIMIT ?";

/// Idempotency records past their retention (their keys may be used again after it).
pub const IDEMPOTENCY_RECORDS: &str =
    "DELETE FROM idempotency_record WHERE created_at < UTC_TIMESTAMP(3) - INTERVAL ? SECOND LIMIT ?";

/// Finished jobs (`SUCCEEDED`, `FAILED`) of a worker's job table (index `ix_due`): a job
/// row is read again only by a DLQ replay within the retention.
pub fn finished_jobs(table: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE status IN ('SUCCEEDED', 'FAILED') \
         AND next_attempt_at < UTC_TIMESTAMP(3) - INTERVAL ? SECOND LIMIT ?"
    )
}

/// Runs `delete` (one of the statements above: its parameters are the retention in
/// seconds and the batch size) on `shard` until a batch deletes fewer than `batch_size`
/// rows. Returns how many rows went.
async fn purge(
    shards: &Shards,
    shard: u16,
    delete: &str,
    retention_seconds: u64,
    batch_size: u64,
) -> Result<u64> {
    let mut total = 0;
    loop {
        let deleted = shards
            .bounded(shard, async {
                let classify = |e| DbError::classify(shard, e);
                let mut conn = shards.conn(shard).await?;
                let mut opts = TxOpts::default();
                opts.with_isolation_level(IsolationLevel::ReadCommitted);
                let mut tx = conn.start_transaction(opts).await.map_err(classify)?;
                tx.exec_drop(delete, (retention_seconds, batch_size))
                    .await
                    .map_err(classify)?;
                let deleted = tx.affected_rows();
                tx.commit().await.map_err(classify)?;
                Ok(deleted)
            })
            .await?;
        total += deleted;
        if deleted < batch_size {
            return Ok(total);
        }
    }
}

/// One purge loop: what it deletes, after how long, how often and in what batches.
pub struct Policy {
    /// What the loop deletes, for its log lines ("outbox", "finished-job", …).
    pub what: &'static str,
    /// One of the statements above.
    pub delete: String,
    pub retention_seconds: u64,
    pub interval_seconds: u64,
    pub batch_size: u64,
}

/// Purges `policy` on every shard every `interval_seconds`, forever, calling
/// `deleted(shard, rows)` after each shard's round. A shard that fails is logged and tried
/// again next round. Every instance of a service runs its loop; two purging at once delete
/// disjoint or already-deleted rows.
pub async fn run(shards: &Shards, policy: Policy, mut deleted: impl FnMut(u16, u64)) {
    let mut interval = tokio::time::interval(Duration::from_secs(policy.interval_seconds.max(1)));
    loop {
        interval.tick().await;
        for shard in shards.numbers() {
            match purge(
                shards,
                shard,
                &policy.delete,
                policy.retention_seconds,
                policy.batch_size.max(1),
            )
            .await
            {
                Ok(rows) => deleted(shard, rows),
                Err(error) => {
                    tracing::warn!(shard, %error, what = policy.what, "purge failed; will retry")
                }
            }
        }
    }
}
