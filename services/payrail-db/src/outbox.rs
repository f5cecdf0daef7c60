//! Writing to the transactional outbox inside the caller's transaction.

use crate::error::{datetime, DbError, Result};
use mysql_async::prelude::Queryable;
use payrail_core::event::Event;

/// Inserts `event` for `topic`; the relay publishes it after the transaction commits.
pub async fn insert<Q: Queryable>(
    q: &mut Q,
    shard: u16,
    topic: &str,
    event: &Event<'_>,
) -> Result<()> {
    q.exec_drop(
        "INSERT INTO outbox_event (event_id, payment_id, merchant_id, topic, event_type, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            event.event_id,
            event.payment_id,
            event.merchant_id.as_bytes(),
            topic,
            event.event_type,
            event.payload(),
            datetime(event.occurred_at_ms),
        ),
    )
    .await
    .map_err(|e| DbError::classify(shard, e))
}

/// Appends a state to the payment's history.
pub async fn history<Q: Queryable>(
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
