//! Kafka → job rows. The offset is committed after the job row's transaction commits; a
//! crash in between redelivers the message and `INSERT IGNORE` makes it a no-op.

use crate::job::{Intake, JobKind};
use crate::service::Worker;
use mysql_async::prelude::Queryable;
use mysql_async::TxOpts;
use payrail_db::{datetime, DbError};
use payrail_kafka::dlq::DeadLetter;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::FutureRecord;
use std::sync::Arc;
use std::time::Duration;

/// Header a DLQ replay puts on the message it re-sends.
pub const REPLAY_HEADER: &str = "payrail-dlq-replay";

async fn persist<K: JobKind>(
    worker: &Worker<K>,
    shard: u16,
    intake: &Intake,
    message: &BorrowedMessage<'_>,
    replay: bool,
) -> Result<(), DbError> {
    let shards = &worker.shards;
    shards
        .bounded(shard, async {
            let classify = |e| DbError::classify(shard, e);
            let mut conn = shards.conn(shard).await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(classify)?;
            let now = payrail_core::time::now_ms();
            tx.exec_drop(
                format!(
                    "INSERT IGNORE INTO {} (job_id, payment_id, merchant_id, amount, currency, status, attempts, next_attempt_at, \
                     source_event_id, source_partition, source_offset, source_payload, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, 'PENDING', 0, ?, ?, ?, ?, ?, ?, ?)",
                    K::TABLE
                ),
                (
                    intake.job_id,
                    intake.payment_id,
                    intake.merchant_id.as_bytes(),
                    intake.amount,
                    intake.currency.as_str(),
                    datetime(now),
                    intake.event_id,
                    message.partition(),
                    message.offset(),
                    message.payload().unwrap_or_default(),
                    datetime(now),
                    datetime(now),
                ),
            )
            .await
            .map_err(classify)?;
            if replay && tx.affected_rows() == 0 {
                // A replayed DLQ message: re-arm the failed job (a succeeded one stays
                // as it is, so replaying twice changes nothing).
                tx.exec_drop(
                    format!("UPDATE {} SET status = 'PENDING', attempts = 0, next_attempt_at = ?, updated_at = ? WHERE job_id = ? AND status = 'FAILED'", K::TABLE),
                    (datetime(now), datetime(now), intake.job_id),
                )
                .await
                .map_err(classify)?;
                if tx.affected_rows() == 1 {
                    if K::rearm(&mut tx, shard, intake.job_id).await? {
                        tracing::info!(job_id = intake.job_id, "failed job re-armed by a DLQ replay");
                    } else {
                        tx.exec_drop(format!("UPDATE {} SET status = 'FAILED' WHERE job_id = ?", K::TABLE), (intake.job_id,)).await.map_err(classify)?;
                    }
                }
            }
            tx.commit().await.map_err(classify)
        })
        .await
}

async fn dead_letter<K: JobKind>(
    worker: &Worker<K>,
    message: &BorrowedMessage<'_>,
    error_type: &str,
    error_message: &str,
) {
    let letter = DeadLetter {
        original_topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        payload: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
        error_type: error_type.to_owned(),
        error_message: error_message.to_owned(),
        timestamp: payrail_core::time::rfc3339(payrail_core::time::now_ms()),
        retry_count: 0,
    };
    let body = serde_json::to_vec(&letter).unwrap_or_default();
    let key = message
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    loop {
        let record = FutureRecord::to(K::DLQ_TOPIC).key(&key).payload(&body);
        match worker.producer.send(record, Duration::from_secs(5)).await {
            Ok(_) => return,
            Err((error, _)) => {
                tracing::warn!(%error, "could not write a poison message to the DLQ; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

pub async fn run<K: JobKind>(worker: Arc<Worker<K>>) {
    let consumer: StreamConsumer = match worker
        .config
        .kafka
        .consumer(
            &format!("{}-{}", K::SERVICE, worker.config.instance),
            K::GROUP_ID,
        )
        .create()
    {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "kafka consumer");
            return;
        }
    };
    while let Err(error) = consumer.subscribe(&[K::SOURCE_TOPIC]) {
        tracing::warn!(%error, "subscribe failed; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    loop {
        let message = match consumer.recv().await {
            Ok(m) => m,
            Err(error) => {
                tracing::warn!(%error, "kafka receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
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
            (Some(intake), Some(shard)) => {
                let mut backoff = Duration::from_millis(100);
                // Database trouble is transient: retry until it works, never DLQ.
                while let Err(error) = persist(&worker, shard, &intake, &message, replay).await {
                    tracing::warn!(%error, "could not persist a job; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                worker
                    .metrics
                    .intake
                    .with_label_values(&["persisted"])
                    .inc();
                worker.job_arrived(shard);
            }
            _ => {
                dead_letter(
                    &worker,
                    &message,
                    "PoisonMessage",
                    "not a request event this worker understands",
                )
                .await;
                worker.metrics.intake.with_label_values(&["poison"]).inc();
            }
        }
        if let Err(error) = consumer.commit_message(&message, CommitMode::Async) {
            tracing::warn!(%error, "offset commit failed; the message may be redelivered (harmless)");
        }
    }
}
