//! Kafka → ledger entries, in batches. Each shard's lane applies its events in one
//! transaction per batch, so a shard that is down holds up only its own events:
//! an event's `ledger_event` row and its lines commit together, and an event whose row
//! exists already (a redelivery) is skipped. Offsets are stored for commit after the commits.
//! Database errors are transient: the lane retries the batch, never dead-letters it. A message
//! that is not a valid event goes to `payment.dlq` in the reference format.

use crate::entries::{posting, Line, Posting};
use crate::Ledger;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, TxOpts, Value};
use payrail_db::{datetime, DbError};
use payrail_kafka::lanes::Lanes;
use payrail_kafka::topics;
use rdkafka::message::{Message, OwnedMessage};
use std::sync::Arc;
use std::time::Duration;

pub const TOPICS: [&str; 5] = [
    topics::AUTHORIZED,
    topics::CAPTURED,
    topics::CAPTURE_FAILED,
    topics::VOIDED,
    topics::REFUNDED,
];

async fn apply(
    ledger: &Ledger,
    shard: u16,
    postings: &[Posting],
) -> Result<(usize, usize), DbError> {
    ledger
        .shards
        .bounded(shard, async {
            let classify = |e| DbError::classify(shard, e);
            let mut conn = ledger.shards.conn(shard).await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(classify)?;
            let now = datetime(payrail_core::time::now_ms());
            let mut fresh: Vec<&Posting> = Vec::with_capacity(postings.len());
            let mut duplicates = 0;
            // A chunk's events in one multi-row INSERT: a redelivery is rare, and a
            // duplicate key fails the whole statement (InnoDB rolls back that statement
            // only), so then that chunk goes row by row to tell which were applied before.
            // One statement per chunk instead of one per event: the general log counted 3.6
            // single-row inserts per full-flow iteration on a shard.
            let insert = |rows: &[Posting]| {
                let mut sql = String::from("INSERT INTO ledger_event (event_id, payment_id, event_type, applied_at) VALUES ");
                sql.push_str(&payrail_db::row_placeholders(rows.len(), "(?,?,?,?)"));
                let mut params = Vec::with_capacity(rows.len() * 4);
                for p in rows {
                    params.extend([
                        Value::UInt(p.event_id),
                        Value::UInt(p.payment_id),
                        Value::Bytes(p.event_type.as_bytes().to_vec()),
                        now.clone(),
                    ]);
                }
                (sql, Params::Positional(params))
            };
            for chunk in payrail_db::statement_chunks(postings) {
                let (sql, params) = insert(chunk);
                match tx.exec_drop(sql, params).await.map_err(classify) {
                    Ok(()) => {
                        fresh.extend(chunk);
                        continue;
                    }
                    Err(DbError::Duplicate { .. }) => {}
                    Err(other) => return Err(other),
                }
                for p in chunk {
                    let (sql, params) = insert(std::slice::from_ref(p));
                    match tx.exec_drop(sql, params).await.map_err(classify) {
                        Ok(()) => fresh.push(p),
                        // Applied before (or twice in this batch): the redelivery is a no-op.
                        Err(DbError::Duplicate { .. }) => duplicates += 1,
                        Err(other) => return Err(other),
                    }
                }
            }
            // In statements of a few sizes (`payrail_db::statement_chunks`).
            let lines: Vec<(&Posting, &Line)> = fresh
                .iter()
                .flat_map(|p| p.lines.iter().map(move |line| (*p, line)))
                .collect();
            for chunk in payrail_db::statement_chunks(&lines) {
                let mut sql = String::from("INSERT INTO ledger_entry (event_id, payment_id, merchant_id, account, debit, credit, currency, at) VALUES ");
                sql.push_str(&payrail_db::row_placeholders(chunk.len(), "(?,?,?,?,?,?,?,?)"));
                let mut params = Vec::with_capacity(chunk.len() * 8);
                for (p, line) in chunk {
                    params.extend([
                        Value::UInt(p.event_id),
                        Value::UInt(p.payment_id),
                        Value::Bytes(p.merchant_id.as_bytes().to_vec()),
                        Value::Bytes(line.account.as_bytes().to_vec()),
                        Value::Int(line.debit),
                        Value::Int(line.credit),
                        Value::Bytes(p.currency.as_bytes().to_vec()),
                        now.clone(),
                    ]);
                }
                tx.exec_drop(sql, Params::Positional(params)).await.map_err(classify)?;
            }
            tx.commit().await.map_err(classify)?;
            Ok((fresh.len(), duplicates))
        })
        .await
}

async fn dead_letter(ledger: &Ledger, message: &OwnedMessage, reason: &str) {
    let now = payrail_core::time::rfc3339(payrail_core::time::now_ms());
    payrail_kafka::dlq::send(
        &ledger.producer,
        message,
        topics::PAYMENT_DLQ,
        "PoisonMessage",
        reason,
        now,
    )
    .await;
}

pub async fn run(ledger: Arc<Ledger>) {
    let client_id = format!("ledger-{}", ledger.config.instance);
    let mut consumer = match payrail_kafka::consumer::BatchConsumer::subscribe(
        &ledger.config.kafka,
        &client_id,
        "ledger",
        &TOPICS,
    )
    .await
    {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "kafka consumer");
            return;
        }
    };
    // A lane per shard applies that shard's postings: a shard that is down holds up only
    // its own (see `payrail_kafka::lanes`).
    let mut lanes = {
        let ledger = Arc::clone(&ledger);
        let shards: Vec<u16> = ledger.shards.numbers().collect();
        Lanes::start(
            shards,
            ledger.config.batch.size_max,
            ledger.config.kafka.lanes_max_waiting,
            move |shard, postings: Arc<Vec<Posting>>| {
                let ledger = Arc::clone(&ledger);
                async move {
                    let (applied, duplicates) = apply(&ledger, shard, &postings)
                        .await
                        .map_err(|e| e.to_string())?;
                    ledger.metrics.applied.inc_by(applied as u64);
                    ledger.metrics.duplicates.inc_by(duplicates as u64);
                    Ok(())
                }
            },
        )
    };
    let linger = Duration::from_millis(ledger.config.batch.linger_ms);
    loop {
        let batch = consumer
            .next_batch(ledger.config.batch.size_max, linger, lanes.idle())
            .await;
        if !batch.is_empty() {
            ledger.metrics.batch_size.observe(batch.len() as f64);
        }
        for message in &batch {
            let parsed = message
                .payload()
                .ok_or_else(|| "empty message".to_owned())
                .and_then(|p| {
                    serde_json::from_slice::<serde_json::Value>(p)
                        .map_err(|e| format!("not JSON: {e}"))
                })
                .and_then(|v| posting(&v))
                .and_then(|p| {
                    match payrail_core::id::shard_of(p.payment_id)
                        .filter(|s| *s <= ledger.shards.count())
                    {
                        Some(shard) => Ok((shard, p)),
                        None => Err("paymentId names no shard of this deployment".to_owned()),
                    }
                });
            match parsed {
                Ok((shard, p)) => lanes.dispatch(shard, message, p),
                Err(reason) => {
                    dead_letter(&ledger, message, &reason).await;
                    ledger.metrics.poison.inc();
                    lanes.skip(message);
                }
            }
        }
        // Offsets past what the lanes have applied (or dead-lettered) are stored.
        lanes.settle(&consumer);
    }
}
