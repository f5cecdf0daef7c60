//! The resolver: every authorization whose PG outcome is unknown ends resolved, by asking
//! the PG, never by guessing.
//!
//! An authorization's outcome is unknown when the PG's answer was lost (timeout, dropped
//! connection, 5xx: the record is `UNKNOWN`) or when its request died between the PG's
//! answer and the commit (the record stays `IN_PROGRESS` and its lease runs out). The
//! client's retry with the same key resolves it itself, by asking the PG again with the
//! same request id. If no client has come back `abandon_after_ms` after the lease ended,
//! the resolver on that shard claims the record (`RESOLVING`, which no client can take
//! over), asks the PG for `auth-<paymentId>` (`GET /v1/transactions/{requestId}`) and:
//!
//! - no record: the request never reached the PG → payment `FAILED`, answer 402;
//! - declined → payment `DECLINED`, answer 402, as the authorize path would have;
//! - approved → nobody is waiting for this hold: void it at the PG (`void-<paymentId>`),
//!   then payment `VOIDED` with its authorized and voided events (the ledger holds and
//!   releases), answer 200 with that payment; a refused void is `VOID_FAILED` (the hold
//!   stands and reconciliation reports it).
//!
//! The answer is stored with the key, so a client that comes back later gets it. While
//! the PG cannot be asked, the record waits with a persisted schedule (`resolve_at`,
//! `resolve_attempts`, backoff doubling up to `backoff_max_ms`) and is asked again, forever.
//! Several ingest instances run resolvers; the conditional claim gives each record to one.

use crate::authorize::{self, Decided, PgOutcome};
use crate::config::ResolverConfig;
use crate::App;
use mysql_async::prelude::Queryable;
use mysql_async::Row;
use payrail_db::DbError;
use payrail_pg::{Operation, PgDecision, PgRequest};
use std::sync::Arc;
use std::time::Duration;

/// A record whose outcome is unknown, as the scan found it.
struct Unresolved {
    merchant_id: String,
    key: String,
    fingerprint: String,
    owner_token: i64,
    payment_id: u64,
    /// Since the answer was lost (or the request began, for a dead owner).
    age_ms: i64,
    attempts: u32,
}

/// amount, currency and capture mode back from the key's fingerprint
/// (`idempotency::fingerprint`).
fn parse_fingerprint(fingerprint: &str) -> Option<(i64, String, bool)> {
    let mut parts = fingerprint.split('|');
    let amount = parts.next()?.parse().ok()?;
    let currency = parts.next()?.to_owned();
    let automatic = parts.next()? == "automatic";
    Some((amount, currency, automatic))
}

fn backoff_ms(config: &ResolverConfig, attempts: u32) -> u64 {
    config
        .backoff_initial_ms
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(30))
        .min(config.backoff_max_ms)
}

/// Per shard, forever: refresh the gauges, then resolve what is due.
pub async fn run(app: Arc<App>, shard: u16) {
    let config = app.config.resolver;
    let mut interval = tokio::time::interval(Duration::from_millis(config.interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let label = shard.to_string();
    loop {
        interval.tick().await;
        match gauges(&app, shard).await {
            Ok((unresolved, overdue)) => {
                app.metrics
                    .pg_unresolved
                    .with_label_values(&[&label])
                    .set(unresolved);
                app.metrics
                    .pg_unresolved_overdue
                    .with_label_values(&[&label])
                    .set(overdue);
            }
            Err(error) => tracing::warn!(shard, %error, "resolver: counting failed"),
        }
        let due = match due(&app, shard).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(shard, %error, "resolver: scan failed; will retry");
                continue;
            }
        };
        for record in due {
            if let Err(error) = resolve(&app, shard, &record).await {
                tracing::warn!(shard, payment_id = record.payment_id, %error, "resolver: could not resolve; will retry");
            }
        }
    }
}

async fn gauges(app: &App, shard: u16) -> Result<(i64, i64), DbError> {
    let sla_us = app.config.resolver.sla_ms * 1000;
    app.shards
        .bounded(shard, async {
            let mut conn = app.shards.conn(shard).await?;
            let row: Option<(i64, i64)> = conn
                .query_first(format!(
                    "SELECT COUNT(*), CAST(COALESCE(SUM({since} < UTC_TIMESTAMP(3) - INTERVAL {sla_us} MICROSECOND), 0) AS SIGNED) \
                     FROM idempotency_record WHERE {unresolved}",
                    since = payrail_db::UNRESOLVED_SINCE,
                    unresolved = payrail_db::UNRESOLVED,
                ))
                .await
                .map_err(|e| DbError::classify(shard, e))?;
            Ok(row.unwrap_or((0, 0)))
        })
        .await
}

async fn due(app: &App, shard: u16) -> Result<Vec<Unresolved>, DbError> {
    let config = app.config.resolver;
    app.shards
        .bounded(shard, async {
            let mut conn = app.shards.conn(shard).await?;
            let rows: Vec<Row> = conn
                .exec(
                    format!(
                        "SELECT merchant_id, idempotency_key, request_fingerprint, owner_token, payment_id, \
                         CAST(TIMESTAMPDIFF(MICROSECOND, {since}, UTC_TIMESTAMP(3)) DIV 1000 AS SIGNED), resolve_attempts \
                         FROM idempotency_record WHERE state IN ('IN_PROGRESS', 'UNKNOWN', 'RESOLVING') \
                         AND lease_until < UTC_TIMESTAMP(3) - INTERVAL {} MICROSECOND \
                         AND (resolve_at IS NULL OR resolve_at <= UTC_TIMESTAMP(3)) LIMIT ?",
                        config.abandon_after_ms * 1000,
                        since = payrail_db::UNRESOLVED_SINCE,
                    ),
                    (config.batch_size,),
                )
                .await
                .map_err(|e| DbError::classify(shard, e))?;
            Ok(rows
                .into_iter()
                .map(|mut row| Unresolved {
                    merchant_id: row
                        .take::<Vec<u8>, _>(0)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default(),
                    key: row
                        .take::<Vec<u8>, _>(1)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default(),
                    fingerprint: row.take(2).unwrap_or_default(),
                    owner_token: row.take(3).unwrap_or_default(),
                    payment_id: row.take(4).unwrap_or_default(),
                    age_ms: row.take(5).unwrap_or_default(),
                    attempts: row.take(6).unwrap_or_default(),
                })
                .collect())
        })
        .await
}

/// Claims the record for this resolver: true if it is ours now.
async fn claim(app: &App, shard: u16, record: &Unresolved, owner: i64) -> Result<bool, DbError> {
    let lease_us = app.config.resolver.lease_ms * 1000;
    app.shards
        .bounded(shard, async {
            let mut conn = app.shards.conn(shard).await?;
            conn.exec_drop(
                format!(
                    "UPDATE idempotency_record SET owner_token = ?, state = 'RESOLVING', resolve_at = NULL, \
                     resolve_attempts = resolve_attempts + 1, lease_until = UTC_TIMESTAMP(3) + INTERVAL {lease_us} MICROSECOND \
                     WHERE merchant_id = ? AND idempotency_key = ? AND owner_token = ? \
                     AND state IN ('IN_PROGRESS', 'UNKNOWN', 'RESOLVING') AND lease_until < UTC_TIMESTAMP(3)"
                ),
                (owner, record.merchant_id.as_bytes(), record.key.as_bytes(), record.owner_token),
            )
            .await
            .map_err(|e| DbError::classify(shard, e))?;
            Ok(conn.affected_rows() == 1)
        })
        .await
}

/// The PG could not be asked (or could not void): try again after the backoff. `state`
/// is `UNKNOWN` when nothing was done at the PG (a client's retry may take the key over
/// again) and `RESOLVING` once a void may have been sent (only a resolver may go on).
async fn defer(
    app: &App,
    shard: u16,
    record: &Unresolved,
    owner: i64,
    state: &str,
) -> Result<(), DbError> {
    let config = app.config.resolver;
    let delay_us = backoff_ms(&config, record.attempts + 1) * 1000;
    let expired_us = (config.abandon_after_ms + 1000) * 1000;
    app.shards
        .bounded(shard, async {
            let mut conn = app.shards.conn(shard).await?;
            conn.exec_drop(
                format!(
                    "UPDATE idempotency_record SET state = ?, unknown_since = COALESCE(unknown_since, UTC_TIMESTAMP(3)), \
                     resolve_at = UTC_TIMESTAMP(3) + INTERVAL {delay_us} MICROSECOND, \
                     lease_until = UTC_TIMESTAMP(3) - INTERVAL {expired_us} MICROSECOND \
                     WHERE merchant_id = ? AND idempotency_key = ? AND owner_token = ? AND state = 'RESOLVING'"
                ),
                (state, record.merchant_id.as_bytes(), record.key.as_bytes(), owner),
            )
            .await
            .map_err(|e| DbError::classify(shard, e))
        })
        .await
}

async fn resolve(app: &App, shard: u16, record: &Unresolved) -> Result<(), DbError> {
    let Some((amount, currency, automatic)) = parse_fingerprint(&record.fingerprint) else {
        tracing::error!(payment_id = record.payment_id, fingerprint = %record.fingerprint, "resolver: unreadable fingerprint");
        return Ok(());
    };
    let owner = app.owner_token();
    if !claim(app, shard, record, owner).await? {
        return Ok(()); // a client's retry or another resolver got there first
    }
    let payment_id = record.payment_id;
    let request_id = format!("auth-{payment_id}");
    let found = match app.pg.status(&request_id).await {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(payment_id, %error, "resolver: the PG cannot be asked yet");
            return defer(app, shard, record, owner, "UNKNOWN").await;
        }
    };
    let (pg, approval_number, transaction_id, decline_reason) = match &found {
        None => (PgOutcome::NotApplied, String::new(), String::new(), None),
        Some(r) if r.decision == PgDecision::Declined => (
            PgOutcome::Declined,
            r.approval_number.clone(),
            r.transaction_id.clone(),
            r.decline_reason.clone(),
        ),
        Some(r) => {
            let void = PgRequest {
                request_id: format!("void-{payment_id}"),
                merchant_id: record.merchant_id.clone(),
                payment_id,
                amount: r.amount,
                currency: r.currency.clone(),
            };
            let outcome = match app.pg.call(Operation::Void, &void).await {
                Ok(reply) if reply.decision == PgDecision::Approved => {
                    PgOutcome::ApprovedThenVoided
                }
                Ok(reply) => {
                    tracing::error!(payment_id, reason = ?reply.decline_reason, "resolver: the PG refused to void an abandoned authorization");
                    PgOutcome::ApprovedVoidRefused
                }
                Err(error) => {
                    if error.outcome_unknown() {
                        app.metrics
                            .pg_unknown_outcomes
                            .with_label_values(&["void"])
                            .inc();
                    }
                    tracing::warn!(payment_id, %error, "resolver: void not confirmed yet");
                    return defer(app, shard, record, owner, "RESOLVING").await;
                }
            };
            (
                outcome,
                r.approval_number.clone(),
                r.transaction_id.clone(),
                None,
            )
        }
    };
    let decided = Decided {
        payment_id,
        merchant_id: &record.merchant_id,
        idempotency_key: &record.key,
        amount,
        currency: &currency,
        automatic,
        fingerprint: &record.fingerprint,
        owner,
        pg,
        approval_number: &approval_number,
        transaction_id: &transaction_id,
        decline_reason: decline_reason.as_deref(),
    };
    match authorize::commit(app, shard, &decided).await {
        // A client's request committed this payment first (it owned the key before us).
        Ok(_) | Err(DbError::Duplicate { .. }) => {}
        Err(error) => return Err(error),
    }
    let result = match pg {
        PgOutcome::NotApplied => "not_applied",
        PgOutcome::Declined => "declined",
        PgOutcome::ApprovedThenVoided => "approved_voided",
        PgOutcome::ApprovedVoidRefused => "void_refused",
        PgOutcome::Approved => "approved",
    };
    app.metrics
        .pg_resolutions
        .with_label_values(&[result])
        .inc();
    app.metrics
        .pg_resolution_seconds
        .observe(record.age_ms.max(0) as f64 / 1000.0);
    tracing::info!(
        payment_id,
        result,
        age_ms = record.age_ms,
        "resolver: unknown authorization outcome resolved"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_back() {
        let fp = crate::idempotency::fingerprint(1500, "KRW", true);
        assert_eq!(parse_fingerprint(&fp), Some((1500, "KRW".into(), true)));
        assert_eq!(parse_fingerprint("x"), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = ResolverConfig::default();
        assert_eq!(backoff_ms(&config, 1), 2_000);
        assert_eq!(backoff_ms(&config, 2), 4_000);
        assert_eq!(backoff_ms(&config, 40), 60_000);
    }
}
