//! Idempotency of authorizations.
//!
//! MariaDB is the truth: before the PG is called, the request reserves
//! (merchantId, idempotencyKey) in `idempotency_record` inside a group-commit batch, with
//! its own owner token, the payment id it will use and a lease. Only the owner calls the
//! PG, with request id `auth-<paymentId>`. A concurrent retry finds the record
//! IN_PROGRESS and gets 409 `IDEMPOTENCY_KEY_IN_USE`; a retry after completion replays the
//! stored answer byte for byte; a retry with a different body gets 422. If the owner dies
//! (or the PG fails and the owner releases the lease), a later retry takes the record over
//! and calls the PG again with the *same* request id, which the PG answers idempotently:
//! the PG authorizes at most once per key, even with Redis down.
//!
//! A PG call whose answer was lost leaves the record `UNKNOWN` with its lease ended: the
//! client's retry takes it over and asks the PG again with the same request id (the
//! definitive answer), and if no client comes back the resolver (`resolver.rs`) decides.
//! While the resolver works on a record it is `RESOLVING`, which no client can take over.
//!
//! Redis is a cache of completed answers, written only after the commit.

use crate::group_commit::Reservation;
use crate::App;
use mysql_async::prelude::Queryable;
use payrail_db::{retention, DbError, Shards};
use std::sync::Arc;

/// What identifies "the same request" for a key: everything in the body except the key
/// and the merchant (which are the key's scope). Two bodies that differ only in field order
/// or whitespace are the same request.
pub fn fingerprint(amount: i64, currency: &str, automatic_capture: bool) -> String {
    format!(
        "{amount}|{currency}|{}",
        if automatic_capture {
            "automatic"
        } else {
            "manual"
        }
    )
}

/// Redis value of a completed answer: `fingerprint \n status \n body`.
pub fn encode_cached(fingerprint: &str, status: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fingerprint.len() + body.len() + 8);
    out.extend_from_slice(fingerprint.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

pub fn decode_cached(value: &[u8]) -> Option<(&str, u16, &[u8])> {
    let first = value.iter().position(|&b| b == b'\n')?;
    let rest = &value[first + 1..];
    let second = rest.iter().position(|&b| b == b'\n')?;
    let fingerprint = std::str::from_utf8(&value[..first]).ok()?;
    let status: u16 = std::str::from_utf8(&rest[..second]).ok()?.parse().ok()?;
    Some((fingerprint, status, &rest[second + 1..]))
}

/// Takes over an IN_PROGRESS record whose lease ran out. True if this request now owns it.
pub async fn take_over(
    shards: &Shards,
    shard: u16,
    merchant_id: &str,
    key: &str,
    old_owner: i64,
    new_owner: i64,
    lease_ms: u64,
) -> Result<bool, DbError> {
    shards
        .bounded(shard, async {
            let mut conn = shards.conn(shard).await?;
            conn.exec_drop(
                format!(
                    "UPDATE idempotency_record SET owner_token = ?, state = 'IN_PROGRESS', lease_until = UTC_TIMESTAMP(3) + INTERVAL {} MICROSECOND \
                     WHERE merchant_id = ? AND idempotency_key = ? AND owner_token = ? AND state IN ('IN_PROGRESS', 'UNKNOWN') \
                     AND lease_until < UTC_TIMESTAMP(3)",
                    lease_ms * 1000
                ),
                (new_owner, merchant_id.as_bytes(), key.as_bytes(), old_owner),
            )
            .await
            .map_err(|e| DbError::classify(shard, e))?;
            Ok(conn.affected_rows() == 1)
        })
        .await
}

/// Ends this request's lease early (the PG failed): the client's retry may take the key
/// over at once instead of waiting for the lease to run out.
pub async fn release(shards: &Shards, shard: u16, merchant_id: &str, key: &str, owner: i64) {
    let result = shards
        .bounded(shard, async {
            let mut conn = shards.conn(shard).await?;
            conn.exec_drop(
                "UPDATE idempotency_record SET lease_until = UTC_TIMESTAMP(3) - INTERVAL 1 SECOND \
                 WHERE merchant_id = ? AND idempotency_key = ? AND owner_token = ? AND state = 'IN_PROGRESS'",
                (merchant_id.as_bytes(), key.as_bytes(), owner),
            )
            .await
            .map_err(|e| DbError::classify(shard, e))
        })
        .await;
    if let Err(error) = result {
        // Harmless: the lease runs out by itself.
        tracing::warn!(%error, "could not release an idempotency lease");
    }
}

/// The PG's answer was lost: the record becomes `UNKNOWN` (since the first time this
/// happened), its lease ends so the client's retry can ask the PG again at once, and the
/// resolver takes it if no client does.
pub async fn mark_unknown(shards: &Shards, shard: u16, merchant_id: &str, key: &str, owner: i64) {
    let result = shards
        .bounded(shard, async {
            let mut conn = shards.conn(shard).await?;
            conn.exec_drop(
                "UPDATE idempotency_record SET state = 'UNKNOWN', unknown_since = COALESCE(unknown_since, UTC_TIMESTAMP(3)), \
                 lease_until = UTC_TIMESTAMP(3) - INTERVAL 1 SECOND \
                 WHERE merchant_id = ? AND idempotency_key = ? AND owner_token = ? AND state = 'IN_PROGRESS'",
                (merchant_id.as_bytes(), key.as_bytes(), owner),
            )
            .await
            .map_err(|e| DbError::classify(shard, e))
        })
        .await;
    if let Err(error) = result {
        // Still safe: the record stays IN_PROGRESS, its lease runs out and the resolver
        // finds it then.
        tracing::warn!(%error, "could not mark an idempotency record unknown");
    }
}

/// The record for a key, if any (used after a racing finalize lost).
pub async fn read(
    shards: &Shards,
    shard: u16,
    merchant_id: &str,
    key: &str,
) -> Result<Option<Reservation>, DbError> {
    shards
        .bounded(shard, async {
            let mut conn = shards.conn(shard).await?;
            let row: Option<mysql_async::Row> = conn
                .exec_first(
                    "SELECT request_fingerprint, state, owner_token, payment_id, response_status, response_body, \
                     lease_until < UTC_TIMESTAMP(3) FROM idempotency_record WHERE merchant_id = ? AND idempotency_key = ?",
                    (merchant_id.as_bytes(), key.as_bytes()),
                )
                .await
                .map_err(|e| DbError::classify(shard, e))?;
            Ok(row.map(|mut row| Reservation::from_row(&mut row, 0)))
        })
        .await
}

/// Deletes records older than the retention, in small batches, on every shard, forever.
pub async fn purge_loop(app: Arc<App>) {
    let config = app.config.idempotency;
    let policy = retention::Policy {
        what: "idempotency",
        delete: retention::IDEMPOTENCY_RECORDS.to_owned(),
        retention_seconds: config.retention_seconds,
        interval_seconds: config.purge_interval_seconds,
        batch_size: config.purge_batch_size,
    };
    retention::run(&app.shards, policy, |_, rows| {
        app.metrics.idempotency_purged.inc_by(rows)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_values_round_trip() {
        let body = b"{\"a\":\"x\ny\"}";
        let value = encode_cached("100|KRW|manual", 402, body);
        assert_eq!(
            decode_cached(&value),
            Some(("100|KRW|manual", 402, &body[..]))
        );
        assert_eq!(decode_cached(b"garbage"), None);
    }

    #[test]
    fn fingerprints_differ_by_amount_currency_and_mode() {
        let base = fingerprint(100, "KRW", false);
        assert_ne!(base, fingerprint(101, "KRW", false));
        assert_ne!(base, fingerprint(100, "USD", false));
        assert_ne!(base, fingerprint(100, "KRW", true));
    }
}
