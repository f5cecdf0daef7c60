//! The outbox relay: publishes each shard's `outbox_event` rows to Kafka.
//!
//! - Exactly one relay per shard at a time: every ingest instance runs a relay task per
//!   shard, but only the holder of the shard's row in `outbox_relay_lease` publishes. It
//!   renews the lease every round; if it dies, another instance takes over when the lease
//!   runs out.
//! - No skipped events: each round reads the oldest unpublished rows by `seq`
//!   (`published_at IS NULL`), never "everything after the last id I saw", so a slow
//!   transaction whose rows commit late is published in a later round.
//! - Marked published only after the broker's delivery report (idempotent producer,
//!   `acks=all`). A relay killed between sending and marking leaves the rows unpublished;
//!   the next holder sends them again and consumers drop the duplicates by `eventId`.
//! - The `kafka-publisher` circuit breaker counts every event as a call. While OPEN the
//!   relay does not send; HALF_OPEN lets a few probe events through.

use crate::App;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};
use payrail_core::breaker::CircuitBreaker;
use payrail_db::{epoch_ms, DbError};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Relay {
    /// Replaced by a fresh producer after an outage (see [`Relay::renew_producer`]).
    producer: parking_lot::Mutex<FutureProducer>,
    kafka: payrail_kafka::KafkaConfig,
    client_id: String,
    /// Set once the producer was renewed for the current outage; cleared by a success.
    renewed: std::sync::atomic::AtomicBool,
    /// Shared by every shard's relay task in this instance: the broker is one dependency.
    pub breaker: CircuitBreaker,
    /// Names this instance in `outbox_relay_lease`.
    holder: String,
}

struct Pending {
    seq: u64,
    event_id: u64,
    payment_id: u64,
    topic: String,
    event_type: String,
    payload: Vec<u8>,
    created_at_ms: i64,
}

impl Relay {
    pub fn new(app: &App, kafka: &payrail_kafka::KafkaConfig) -> Result<Self, String> {
        let client_id = format!("{}-relay", app.config.instance);
        let producer: FutureProducer = kafka
            .producer(&client_id)
            .create()
            .map_err(|e| format!("kafka producer: {e}"))?;
        Ok(Self {
            producer: parking_lot::Mutex::new(producer),
            kafka: kafka.clone(),
            client_id,
            renewed: std::sync::atomic::AtomicBool::new(false),
            breaker: CircuitBreaker::new("kafka-publisher", app.config.relay.breaker.clone()),
            holder: format!(
                "{}:{}:{:x}",
                app.config.instance,
                std::process::id(),
                app.owner_token() as u64
            ),
        })
    }

    /// Replaces the producer once per outage, when the breaker has opened. A new producer
    /// gets a new producer id from the broker when it is back, instead of resuming an
    /// idempotent session the broker may have lost (tansu 0.6's SQLite storage panics on
    /// the resumed session after a restart; Apache Kafka would fence it with an epoch
    /// bump). Messages queued in the old one fail and stay unpublished in the outbox.
    fn renew_producer(&self) {
        if self.renewed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        match self
            .kafka
            .producer(&self.client_id)
            .create::<FutureProducer>()
        {
            Ok(producer) => {
                *self.producer.lock() = producer;
                tracing::warn!("outbox relay: kafka producer renewed after failures");
            }
            Err(error) => {
                self.renewed
                    .store(false, std::sync::atomic::Ordering::Release);
                tracing::error!(%error, "outbox relay: could not renew the kafka producer");
            }
        }
    }

    /// Takes or renews the shard's lease. True when this instance holds it.
    async fn lease(&self, app: &App, shard: u16) -> Result<bool, DbError> {
        let lease_us = app.config.relay.lease_ms * 1000;
        app.shards
            .bounded(shard, async {
                let classify = |e| DbError::classify(shard, e);
                let mut conn = app.shards.conn(shard).await?;
                // Assignments run left to right: `holder` changes only when the lease is
                // ours or expired, and `lease_until` moves only when `holder` is (now) ours.
                conn.exec_drop(
                    format!(
                        "INSERT INTO outbox_relay_lease (id, holder, lease_until) VALUES (1, ?, UTC_TIMESTAMP(3) + INTERVAL {lease_us} MICROSECOND) \
                         ON DUPLICATE KEY UPDATE \
                           holder = IF(holder = VALUES(holder) OR lease_until < UTC_TIMESTAMP(3), VALUES(holder), holder), \
                           lease_until = IF(holder = VALUES(holder), VALUES(lease_until), lease_until)"
                    ),
                    (self.holder.as_str(),),
                )
                .await
                .map_err(classify)?;
                let holder: Option<String> = conn.query_first("SELECT holder FROM outbox_relay_lease WHERE id = 1").await.map_err(classify)?;
                Ok(holder.as_deref() == Some(self.holder.as_str()))
            })
            .await
    }

    async fn claim(&self, app: &App, shard: u16, limit: usize) -> Result<Vec<Pending>, DbError> {
        app.shards
            .bounded(shard, async {
                let mut conn = app.shards.conn(shard).await?;
                let rows: Vec<Row> = conn
                    .exec(
                        "SELECT seq, event_id, payment_id, topic, event_type, payload, created_at FROM outbox_event \
                         WHERE published_at IS NULL ORDER BY seq LIMIT ?",
                        (limit as u64,),
                    )
                    .await
                    .map_err(|e| DbError::classify(shard, e))?;
                Ok(rows
                    .into_iter()
                    .map(|mut row| Pending {
                        seq: row.take(0).unwrap_or_default(),
                        event_id: row.take(1).unwrap_or_default(),
                        payment_id: row.take(2).unwrap_or_default(),
                        topic: row.take(3).unwrap_or_default(),
                        event_type: row.take(4).unwrap_or_default(),
                        payload: row.take(5).unwrap_or_default(),
                        created_at_ms: row.take::<Value, _>(6).map(|v| epoch_ms(&v)).unwrap_or_default(),
                    })
                    .collect())
            })
            .await
    }

    async fn mark_published(&self, app: &App, shard: u16, seqs: &[u64]) -> Result<(), DbError> {
        let placeholders = vec!["?"; seqs.len()].join(",");
        let params: Vec<Value> = seqs.iter().map(|s| Value::UInt(*s)).collect();
        app.shards
            .bounded(shard, async {
                let mut conn = app.shards.conn(shard).await?;
                conn.exec_drop(
                    format!("UPDATE outbox_event SET published_at = UTC_TIMESTAMP(3) WHERE published_at IS NULL AND seq IN ({placeholders})"),
                    params,
                )
                .await
                .map_err(|e| DbError::classify(shard, e))
            })
            .await
    }

    /// Sends `events` (those the breaker admits) and returns the seqs the broker confirmed.
    async fn publish(&self, app: &App, shard: u16, events: &[Pending]) -> (Vec<u64>, usize) {
        let shard_label = shard.to_string();
        let producer = self.producer.lock().clone();
        let mut in_flight = Vec::with_capacity(events.len());
        for event in events {
            let Ok(permit) = self.breaker.try_acquire() else {
                break;
            };
            let key = event.payment_id.to_string();
            let event_id = event.event_id.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "eventId",
                    value: Some(event_id.as_str()),
                })
                .insert(Header {
                    key: "type",
                    value: Some(event.event_type.as_str()),
                });
            let record = FutureRecord::to(&event.topic)
                .key(&key)
                .payload(&event.payload)
                .headers(headers);
            match producer.send_result(record) {
                Ok(delivery) => in_flight.push((event, permit, delivery)),
                Err((error, _)) => {
                    // Queue full or the producer is shutting down: stop this round.
                    self.breaker.record(permit, false, 0);
                    tracing::warn!(shard, %error, "outbox relay could not enqueue");
                    break;
                }
            }
        }
        let started = Instant::now();
        let mut delivered = Vec::with_capacity(in_flight.len());
        let mut failed = 0;
        for (event, permit, delivery) in in_flight {
            let ok = matches!(delivery.await, Ok(Ok(_)));
            self.breaker
                .record(permit, ok, started.elapsed().as_millis() as u64);
            if ok {
                delivered.push(event.seq);
                let lag =
                    (payrail_core::time::now_ms() - event.created_at_ms).max(0) as f64 / 1000.0;
                app.metrics
                    .outbox_lag
                    .with_label_values(&[&shard_label])
                    .observe(lag);
            } else {
                failed += 1;
            }
        }
        (delivered, failed)
    }

    /// One shard's relay loop, forever.
    pub async fn run_shard(self: Arc<Self>, app: Arc<App>, shard: u16) {
        let config = app.config.relay.clone();
        let shard_label = shard.to_string();
        // Known label values start at 0, so dashboards see the series before a failure.
        for counter in [
            &app.metrics.outbox_publish_failures,
            &app.metrics.outbox_published,
        ] {
            counter.with_label_values(&[&shard_label]).inc_by(0);
        }
        let mut poll = payrail_core::poll::IdlePoll::new(
            Duration::from_millis(config.poll_interval_ms),
            Duration::from_millis(config.idle_poll_max_ms),
        );
        let mut backoff = Duration::from_millis(config.backoff_initial_ms);
        let mut last_renewal: Option<Instant> = None;
        loop {
            let renew_due = last_renewal
                .is_none_or(|at| at.elapsed() >= Duration::from_millis(config.lease_ms / 3));
            if renew_due {
                match self.lease(&app, shard).await {
                    Ok(true) => last_renewal = Some(Instant::now()),
                    Ok(false) => {
                        last_renewal = None;
                        app.metrics
                            .outbox_relay_leader
                            .with_label_values(&[&shard_label])
                            .set(0);
                        tokio::time::sleep(Duration::from_millis(config.lease_ms / 3)).await;
                        continue;
                    }
                    Err(error) => {
                        last_renewal = None;
                        tracing::warn!(shard, %error, "outbox relay: lease check failed");
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                }
            }
            app.metrics
                .outbox_relay_leader
                .with_label_values(&[&shard_label])
                .set(1);
            let events = match self.claim(&app, shard, config.batch_size_max).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(shard, %error, "outbox relay: reading the outbox failed");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            if events.is_empty() {
                let wake = app.outbox_notify[usize::from(shard) - 1].notified();
                if tokio::time::timeout(poll.idle(), wake).await.is_ok() {
                    poll.busy();
                }
                continue;
            }
            poll.busy();
            if let Err(rejected) = self.breaker.check() {
                tokio::time::sleep(Duration::from_millis(
                    rejected.retry_after_ms.clamp(10, 1000),
                ))
                .await;
                continue;
            }
            let (delivered, failed) = self.publish(&app, shard, &events).await;
            if !delivered.is_empty() {
                if let Err(error) = self.mark_published(&app, shard, &delivered).await {
                    // The events reached Kafka; they will be sent again and deduplicated.
                    tracing::warn!(shard, %error, "outbox relay: marking events published failed");
                }
                app.metrics
                    .outbox_published
                    .with_label_values(&[&shard_label])
                    .inc_by(delivered.len() as u64);
            }
            if failed == 0 && !delivered.is_empty() {
                self.renewed
                    .store(false, std::sync::atomic::Ordering::Release);
            } else if self.breaker.state() == payrail_core::breaker::State::Open {
                self.renew_producer();
            }
            if failed > 0 || delivered.is_empty() {
                app.metrics
                    .outbox_publish_failures
                    .with_label_values(&[&shard_label])
                    .inc_by(failed as u64);
                tracing::warn!(
                    shard,
                    failed,
                    "outbox relay: publishing failed; backing off"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(config.backoff_max_ms));
            } else {
                backoff = Duration::from_millis(config.backoff_initial_ms);
            }
        }
    }
}

/// Deletes published events past `relay.retention_seconds` on every shard, in small
/// batches, every `relay.purge_interval_seconds` (`payrail_db::retention`).
pub async fn purge_loop(app: Arc<App>) {
    let config = &app.config.relay;
    let policy = payrail_db::retention::Policy {
        what: "outbox",
        delete: payrail_db::retention::OUTBOX_PUBLISHED.to_owned(),
        retention_seconds: config.retention_seconds,
        interval_seconds: config.purge_interval_seconds,
        batch_size: config.purge_batch_size,
    };
    payrail_db::retention::run(&app.shards, policy, |shard, rows| {
        app.metrics
            .outbox_purged
            .with_label_values(&[&shard.to_string()])
            .inc_by(rows)
    })
    .await
}

/// Counts unpublished events per shard every few seconds (the backlog gauge).
pub async fn backlog_loop(app: Arc<App>) {
    let mut interval = tokio::time::interval(Duration::from_secs(2));
    loop {
        interval.tick().await;
        for shard in app.shards.numbers() {
            let count = app
                .shards
                .bounded(shard, async {
                    let mut conn = app.shards.conn(shard).await?;
                    let n: Option<i64> = conn
                        .query_first("SELECT COUNT(*) FROM outbox_event WHERE published_at IS NULL")
                        .await
                        .map_err(|e| DbError::classify(shard, e))?;
                    Ok(n.unwrap_or(0))
                })
                .await;
            if let Ok(n) = count {
                app.metrics
                    .outbox_backlog
                    .with_label_values(&[&shard.to_string()])
                    .set(n);
            }
        }
    }
}
