//! Kafka → job rows, through a lane per shard (`payrail_kafka::lanes`), so a shard that is
//! down holds up only its own jobs. The offset is committed after the job row's
//! transaction commits; a crash in between redelivers the message and `INSERT IGNORE`
//! makes it a no-op.

use crate::job::{Intake, JobKind};
use crate::service::Worker;
use mysql_async::prelude::Queryable;
use mysql_async::TxOpts;
use mysql_async::{Params, Value};
use payrail_db::{datetime, DbError};
use payrail_kafka::lanes::Lanes;
use rdkafka::message::{Headers, Message, OwnedMessage};
use std::sync::Arc;
use std::time::Duration;

pub use payrail_kafka::dlq::REPLAY_HEADER;

/// One message's job, with where it came from.
struct Arrival {
    intake: Intake,
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
    replay: bool,
}

/// Persists a batch of jobs on one shard in one transaction (multi-row `INSERT IGNORE`),
/// then re-arms failed jobs that a DLQ replay asked for.
async fn persist<K: JobKind>(
    worker: &Worker<K>,
    shard: u16,
    arrivals: &[&Arrival],
) -> Result<(), DbError> {
    let shards = &worker.shards;
    shards
        .bounded(shard, async {
            let classify = |e| DbError::classify(shard, e);
            let mut conn = shards.conn(shard).await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(classify)?;
            let now = datetime(payrail_core::time::now_ms());
            // In statements of a few sizes (`payrail_db::statement_chunks`).
            for chunk in payrail_db::statement_chunks(arrivals) {
                let mut sql = format!(
                    "INSERT IGNORE INTO {} (job_id, payment_id, merchant_id, amount, currency, status, attempts, next_attempt_at, \
                     source_event_id, source_partition, source_offset, source_payload, created_at, updated_at) VALUES ",
                    K::TABLE
                );
                sql.push_str(&payrail_db::row_placeholders(
                    chunk.len(),
                    "(?, ?, ?, ?, ?, 'PENDING', 0, ?, ?, ?, ?, ?, ?, ?)",
                ));
                let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * 12);
                for a in chunk {
                    params.extend([
                        Value::UInt(a.intake.job_id),
                        Value::UInt(a.intake.payment_id),
                        Value::Bytes(a.intake.merchant_id.as_bytes().to_vec()),
                        Value::Int(a.intake.amount),
                        Value::Bytes(a.intake.currency.as_bytes().to_vec()),
                        now.clone(),
                        Value::UInt(a.intake.event_id),
                        Value::Int(i64::from(a.partition)),
                        Value::Int(a.offset),
                        Value::Bytes(a.payload.clone()),
                        now.clone(),
                        now.clone(),
                    ]);
                }
                tx.exec_drop(sql, Params::Positional(params)).await.map_err(classify)?;
            }
            for a in arrivals.iter().filter(|a| a.replay) {
                // A replayed DLQ message: re-arm the failed job (a succeeded one stays as it
                // is, so replaying twice changes nothing).
                tx.exec_drop(
                    format!("UPDATE {} SET status = 'PENDING', attempts = 0, next_attempt_at = ?, updated_at = ? WHERE job_id = ? AND status = 'FAILED'", K::TABLE),
                    (now.clone(), now.clone(), a.intake.job_id),
                )
                .await
                .map_err(classify)?;
                if tx.affected_rows() == 1 {
                    if K::rearm(&mut tx, shard, a.intake.job_id).await? {
                        tracing::info!(job_id = a.intake.job_id, "failed job re-armed by a DLQ replay");
                    } else {
                        tx.exec_drop(format!("UPDATE {} SET status = 'FAILED' WHERE job_id = ?", K::TABLE), (a.intake.job_id,)).await.map_err(classify)?;
                    }
                }
            }
            tx.commit().await.map_err(classify)
        })
        .await
}

async fn dead_letter<K: JobKind>(
    worker: &Worker<K>,
    message: &OwnedMessage,
    error_type: &str,
    error_message: &str,
) {
    let now = payrail_core::time::rfc3339(payrail_core::time::now_ms());
    payrail_kafka::dlq::send(
        &worker.producer,
        message,
        K::DLQ_TOPIC,
        error_type,
        error_message,
        now,
    )
    .await;
}

pub async fn run<K: JobKind>(worker: Arc<Worker<K>>) {
    let client_id = format!("{}-{}", K::SERVICE, worker.config.instance);
    let mut consumer = match payrail_kafka::consumer::BatchConsumer::subscribe(
        &worker.config.kafka,
        &client_id,
        K::GROUP_ID,
        &[K::SOURCE_TOPIC],
    )
    .await
    {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "kafka consumer");
            return;
        }
    };
    let batch_max = worker.config.scheduler.intake_batch_size;
    // A lane per shard persists that shard's jobs: a shard that is down holds up only its
    // own (see `payrail_kafka::lanes`).
    let mut lanes = {
        let worker = Arc::clone(&worker);
        let shards: Vec<u16> = worker.shards.numbers().collect();
        Lanes::start(
            shards,
            batch_max,
            worker.config.kafka.lanes_max_waiting,
            move |shard, arrivals: Arc<Vec<Arrival>>| {
                let worker = Arc::clone(&worker);
                async move {
                    let refs: Vec<&Arrival> = arrivals.iter().collect();
                    persist(&worker, shard, &refs)
                        .await
                        .map_err(|e| format!("could not persist jobs: {e}"))?;
                    worker
                        .metrics
                        .intake
                        .with_label_values(&["persisted"])
                        .inc_by(arrivals.len() as u64);
                    worker.job_arrived(shard);
                    Ok(())
                }
            },
        )
    };
    loop {
        let batch = consumer
            .next_batch(batch_max, Duration::from_millis(2), lanes.idle())
            .await;
        for message in &batch {
            let replay = message
                .headers()
                .is_some_and(|h| h.iter().any(|h| h.key == REPLAY_HEADER));
            let parsed = message
                .payload()
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                .and_then(|v| K::intake(&v));
            let shard = parsed
                .as_ref()
                .and_then(|i| payrail_core::id::shard_of(i.payment_id))
                .filter(|s| *s <= worker.shards.count());
            match (parsed, shard) {
                (Some(intake), Some(shard)) => lanes.dispatch(
                    shard,
                    message,
                    Arrival {
                        intake,
                        partition: message.partition(),
                        offset: message.offset(),
                        payload: message.payload().unwrap_or_default().to_vec(),
                        replay,
                    },
                ),
                _ => {
                    dead_letter(
                        &worker,
                        message,
                        "PoisonMessage",
                        "not a request event this worker understands",
                    )
                    .await;
                    worker.metrics.intake.with_label_values(&["poison"]).inc();
                    lanes.skip(message);
                }
            }
        }
        // Offsets past what the lanes have persisted (or dead-lettered) are stored.
        lanes.settle(&consumer);
    }
}
