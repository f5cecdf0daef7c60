//! A payment's state history, appended inside the caller's transaction.

use crate::error::{datetime, DbError, Result};
use mysql_async::prelude::Queryable;

/// Appends `status` at `at_ms` to the payment's history.
pub async fn append<Q: Queryable>(
    q: &mut Q,
    shard: u16,
    payment_id: u64,
    status: &str,
    at_ms: i64,
) -> Result<()> {
    q.exec_drop(
        "INSERT INTO payment_status_history (payment_id, status, at) VALUES (?, ?, ?)",
        (payment_id, status, datetime(at_ms)),
    )
    .await
    .map_err(|e| DbError::classify(shard, e))
}
