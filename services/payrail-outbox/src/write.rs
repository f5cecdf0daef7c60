//! Writing an event to the outbox inside the caller's transaction.

use mysql_async::prelude::Queryable;
use payrail_core::event::Event;
use payrail_db::{datetime, DbError};

/// Inserts `event` for `topic`; the relay publishes it after the transaction commits.
pub async fn insert<Q: Queryable>(
    q: &mut Q,
    shard: u16,
    topic: &str,
    event: &Event<'_>,
) -> Result<(), DbError> {
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
