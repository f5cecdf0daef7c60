//! Per shard: claim due jobs, call the PG, record the outcome.

use crate::job::{Job, JobKind};
use crate::service::Worker;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, TxOpts};
use payrail_db::sequence::Kind;
use payrail_db::{datetime, DbError};
use payrail_kafka::dlq::DeadLetter;
use payrail_pg::{PgDecision, PgRequest};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Claims due jobs by pushing their `next_attempt_at` past the claim timeout: a worker
/// that dies mid-call leaves its jobs due again later, and `SKIP LOCKED` keeps concurrent
/// schedulers (several worker processes) off each other's rows.
async fn claim<K: JobKind>(worker: &Worker<K>, shard: u16) -> Result<Vec<Job>, DbError> {
    let config = worker.config.scheduler;
    worker
        .shards
        .bounded(shard, async {
            let classify = |e| DbError::classify(shard, e);
            let mut conn = worker.shards.conn(shard).await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(classify)?;
            let rows: Vec<Row> = tx
                .exec(
                    format!(
                        "SELECT job_id, payment_id, merchant_id, amount, currency, attempts, source_partition, source_offset, source_payload \
                         FROM {} WHERE status = 'PENDING' AND next_attempt_at <= UTC_TIMESTAMP(3) ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED",
                        K::TABLE
                    ),
                    (config.claim_batch_size as u64,),
                )
                .await
                .map_err(classify)?;
            let jobs: Vec<Job> = rows
                .into_iter()
                .map(|mut row| Job {
                    job_id: row.take(0).unwrap_or_default(),
                    payment_id: row.take(1).unwrap_or_default(),
                    merchant_id: row.take::<Vec<u8>, _>(2).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default(),
                    amount: row.take(3).unwrap_or_default(),
                    currency: row.take(4).unwrap_or_default(),
                    attempts: row.take(5).unwrap_or_default(),
                    source_topic: K::SOURCE_TOPIC,
                    source_partition: row.take(6).unwrap_or_default(),
                    source_offset: row.take(7).unwrap_or_default(),
                    source_payload: row.take(8).unwrap_or_default(),
                })
                .collect();
            // In lists of one length (`payrail_db::padded_id_lists`).
            let ids: Vec<u64> = jobs.iter().map(|j| j.job_id).collect();
            let claim = format!(
                "UPDATE {} SET next_attempt_at = UTC_TIMESTAMP(3) + INTERVAL {} MICROSECOND WHERE job_id IN ({})",
                K::TABLE,
                config.claim_timeout_ms * 1000,
                payrail_db::ID_LIST
            );
            for list in payrail_db::padded_id_lists(&ids) {
                tx.exec_drop(claim.as_str(), list)
                    .await
                    .map_err(classify)?;
            }
            tx.commit().await.map_err(classify)?;
            Ok(jobs)
        })
        .await
}

/// Runs an outcome's transaction again (up to 3 more times, a few ms apart) when it lost a
/// deadlock or a lock wait: the conflict is transient, and a job whose outcome was not
/// recorded would otherwise wait out its whole claim timeout before it is tried again.
async fn retry_on_lock_conflict<F, Fut>(mut transaction: F) -> Result<(), DbError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), DbError>>,
{
    let mut tries = 0;
    loop {
        match transaction().await {
            Err(DbError::LockConflict { .. }) if tries < 3 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(5 << tries)).await;
            }
            other => return other,
        }
    }
}

/// Exponential backoff with "equal jitter": half fixed, half random, so retries of many
/// jobs that failed together spread out.
fn backoff_ms(initial_ms: u64, max_ms: u64, attempt: u32) -> u64 {
    let exponential = initial_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
        .min(max_ms);
    exponential / 2 + fastrand::u64(0..=exponential / 2)
}

async fn record_success<K: JobKind>(
    worker: &Worker<K>,
    shard: u16,
    job: &Job,
    reply: &payrail_pg::PgReply,
) -> Result<(), DbError> {
    let event_id = worker
        .sequences
        .next_id(&worker.shards, shard, Kind::Event)
        .await?;
    retry_on_lock_conflict(|| {
        worker
            .shards
            .bounded(shard, async {
            let classify = |e| DbError::classify(shard, e);
            let mut conn = worker.shards.conn(shard).await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(classify)?;
            let now = payrail_core::time::now_ms();
            tx.exec_drop(
                format!(
                    "UPDATE {} SET status = 'SUCCEEDED', attempts = attempts + 1, pg_transaction_id = ?, last_error = NULL, updated_at = ? \
                     WHERE job_id = ? AND status = 'PENDING'",
                    K::TABLE
                ),
                (reply.transaction_id.as_str(), datetime(now), job.job_id),
            )
            .await
            .map_err(classify)?;
            if tx.affected_rows() == 1 {
                K::succeed(&mut tx, shard, job, reply, event_id, now).await?;
            }
            tx.commit().await.map_err(classify)
            })
    })
    .await
}

async fn record_retry<K: JobKind>(
    worker: &Worker<K>,
    shard: u16,
    job: &Job,
    error: &str,
) -> Result<(), DbError> {
    let retry = worker.config.retry;
    let delay = backoff_ms(
        retry.backoff_initial_ms,
        retry.backoff_max_ms,
        job.attempts + 1,
    );
    retry_on_lock_conflict(|| {
        worker
            .shards
            .bounded(shard, async {
            let mut conn = worker.shards.conn(shard).await?;
            conn.exec_drop(
                format!(
                    "UPDATE {} SET attempts = attempts + 1, next_attempt_at = UTC_TIMESTAMP(3) + INTERVAL {} MICROSECOND, last_error = ?, updated_at = UTC_TIMESTAMP(3) \
                     WHERE job_id = ? AND status = 'PENDING'",
                    K::TABLE,
                    delay * 1000
                ),
                (truncate(error, 255), job.job_id),
            )
            .await
            .map_err(|e| DbError::classify(shard, e))
            })
    })
    .await
}

async fn record_failure<K: JobKind>(
    worker: &Worker<K>,
    shard: u16,
    job: &Job,
    reason: &str,
) -> Result<(), DbError> {
    let mut ids = Vec::with_capacity(3);
    worker
        .sequences
        .next_ids(&worker.shards, shard, Kind::Event, 3, &mut ids)
        .await?;
    retry_on_lock_conflict(|| {
        worker
            .shards
            .bounded(shard, async {
            let classify = |e| DbError::classify(shard, e);
            let mut conn = worker.shards.conn(shard).await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(classify)?;
            let now = payrail_core::time::now_ms();
            tx.exec_drop(
                format!("UPDATE {} SET status = 'FAILED', attempts = attempts + 1, last_error = ?, updated_at = ? WHERE job_id = ? AND status = 'PENDING'", K::TABLE),
                (truncate(reason, 255), datetime(now), job.job_id),
            )
            .await
            .map_err(classify)?;
            if tx.affected_rows() == 1 {
                K::fail(&mut tx, shard, job, reason, [ids[0], ids[2]], now).await?;
                // The dead letter goes out through the outbox, in this transaction: it
                // cannot be lost, and it is written once.
                let letter = DeadLetter {
                    original_topic: job.source_topic.to_owned(),
                    partition: job.source_partition,
                    offset: job.source_offset,
                    payload: String::from_utf8_lossy(&job.source_payload).into_owned(),
                    error_type: "RetriesExhausted".to_owned(),
                    error_message: reason.to_owned(),
                    timestamp: payrail_core::time::rfc3339(now),
                    retry_count: job.attempts + 1,
                };
                tx.exec_drop(
                    "INSERT INTO outbox_event (event_id, payment_id, merchant_id, topic, event_type, payload, created_at) VALUES (?, ?, ?, ?, 'DEAD_LETTER', ?, ?)",
                    (ids[1], job.payment_id, job.merchant_id.as_bytes(), K::DLQ_TOPIC, serde_json::to_vec(&letter).unwrap_or_default(), datetime(now)),
                )
                .await
                .map_err(classify)?;
            }
            tx.commit().await.map_err(classify)
            })
    })
    .await
}

/// The PG's answer (from the call or the status inquiry): success, or a decline, which is final.
async fn record_answer<K: JobKind>(
    worker: &Worker<K>,
    shard: u16,
    job: &Job,
    reply: &payrail_pg::PgReply,
) -> Result<&'static str, DbError> {
    if reply.decision == PgDecision::Approved {
        return record_success(worker, shard, job, reply)
            .await
            .map(|()| "succeeded");
    }
    let reason = format!(
        "declined by the PG: {}",
        reply.decline_reason.as_deref().unwrap_or("no reason")
    );
    record_failure(worker, shard, job, &reason)
        .await
        .map(|()| "failed")
}

/// The status inquiry after the last attempt. It waits one PG timeout first: a request
/// that timed out may still be on its way into the PG, and asking at once could find
/// nothing although the PG is about to apply it.
async fn inquire<K: JobKind>(
    worker: &Worker<K>,
    request_id: &str,
) -> Result<Option<payrail_pg::PgReply>, payrail_pg::PgError> {
    tokio::time::sleep(Duration::from_millis(worker.config.pg.timeout_ms)).await;
    Ok(worker.pg.status(request_id).await?.map(|r| r.reply(true)))
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

async fn process<K: JobKind>(worker: Arc<Worker<K>>, shard: u16, job: Job) {
    let request = PgRequest {
        request_id: K::request_id(&job),
        merchant_id: job.merchant_id.clone(),
        payment_id: job.payment_id,
        amount: job.amount,
        currency: job.currency.clone(),
    };
    let started = Instant::now();
    let result = worker.pg.call(K::OPERATION, &request).await;
    worker
        .metrics
        .pg_duration
        .observe(started.elapsed().as_secs_f64());
    let attempts_max = worker.config.retry.attempts_max;
    let outcome = match &result {
        Ok(reply) => record_answer(&worker, shard, &job, reply).await,
        Err(error) if job.attempts + 1 >= attempts_max => {
            // Out of retries, but "no answer" is not "no": ask the PG what it did with this
            // request id before anything is declared failed.
            match inquire(&worker, &request.request_id).await {
                Ok(Some(reply)) => record_answer(&worker, shard, &job, &reply).await,
                Ok(None) => {
                    let reason = format!("PG unavailable after {attempts_max} attempts ({error}); the PG has no record of the request");
                    record_failure(&worker, shard, &job, &reason)
                        .await
                        .map(|()| "failed")
                }
                Err(inquiry) => {
                    // Unknown stays unknown: retried at the backoff cap until the PG answers.
                    tracing::warn!(job_id = job.job_id, %inquiry, "out of retries and the PG cannot be asked; the outcome stays unknown");
                    record_retry(
                        &worker,
                        shard,
                        &job,
                        &format!("outcome unknown: {error}; status inquiry: {inquiry}"),
                    )
                    .await
                    .map(|()| "unknown")
                }
            }
        }
        Err(error) => record_retry(&worker, shard, &job, &error.to_string())
            .await
            .map(|()| "retry"),
    };
    match outcome {
        Ok(label) => {
            // An outcome may have written events (captured, refunded, a dead letter).
            if label != "retry" {
                worker.outbox.committed(shard);
            }
            worker.metrics.outcomes.with_label_values(&[label]).inc();
            if !matches!(label, "retry" | "unknown") {
                worker.metrics.attempts.observe(f64::from(job.attempts + 1));
            }
        }
        // The claim runs out and the job is tried again; the PG request id keeps that safe.
        Err(error) => {
            tracing::warn!(job_id = job.job_id, %error, "could not record a job outcome; it will be retried")
        }
    }
}

pub async fn run<K: JobKind>(worker: Arc<Worker<K>>, shard: u16) {
    let mut poll = payrail_core::poll::IdlePoll::new(
        Duration::from_millis(worker.config.scheduler.poll_interval_ms),
        Duration::from_millis(worker.config.scheduler.idle_poll_max_ms),
    );
    loop {
        let jobs = match claim(&worker, shard).await {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::warn!(shard, %error, "claiming jobs failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if jobs.is_empty() {
            let arrived = worker.arrivals[usize::from(shard) - 1].notified();
            if tokio::time::timeout(poll.idle(), arrived).await.is_ok() {
                poll.busy();
            }
            continue;
        }
        poll.busy();
        for job in jobs {
            // The semaphore bounds PG calls in flight across all shards.
            let Ok(permit) = worker.pg_slots.clone().acquire_owned().await else {
                return;
            };
            let worker = worker.clone();
            tokio::spawn(async move {
                process(worker, shard, job).await;
                drop(permit);
            });
        }
    }
}

/// Deletes kind `K`'s finished jobs past `retention.finished_job_seconds` on every
/// shard, in small batches, forever (`payrail_db::retention`).
pub async fn purge_loop<K: JobKind>(worker: Arc<Worker<K>>) {
    let config = worker.config.retention;
    let policy = payrail_db::retention::Policy {
        what: "finished-job",
        delete: payrail_db::retention::finished_jobs(K::TABLE),
        retention_seconds: config.finished_job_seconds,
        interval_seconds: config.purge_interval_seconds,
        batch_size: config.purge_batch_size,
    };
    payrail_db::retention::run(&worker.shards, policy, |_, rows| {
        worker.metrics.jobs_purged.inc_by(rows)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        for attempt in 1..20 {
            let exponential = (500u64 << (attempt - 1).min(30)).min(60_000);
            let b = backoff_ms(500, 60_000, attempt);
            assert!(
                b >= exponential / 2 && b <= exponential,
                "attempt {attempt}: {b}"
            );
        }
    }
}
