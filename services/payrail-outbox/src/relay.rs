//! The outbox relay: publishes each shard's `outbox_event` rows to Kafka.
//!
//! - Exactly one relay per shard at a time. Every service that writes events runs a relay
//!   task per shard; only the holder of the shard's row in `outbox_relay_lease` publishes.
//!   A renewal task of its own renews the lease every third of `lease_ms`, so a slow round
//!   does not let it lapse; if the holder dies or stalls, another takes over once it runs
//!   out.
//! - Fenced. Taking a lapsed lease bumps its `epoch`. The holder knows locally (monotonic
//!   clock) until when its lease is valid, and hands an event to the producer only while
//!   more than the producer's message timeout remains, so every send it made is delivered
//!   or failed before anyone else can hold the lease. Marking rows published is one
//!   statement joined with the lease row on holder and epoch: a relay that stalled past its
//!   lease (SIGSTOP, a long GC-like pause) sends nothing and marks nothing afterwards.
//! - No skipped events: each round reads the oldest unpublished rows by `seq`
//!   (`published_at IS NULL`), never "everything after the last id I saw", so a slow
//!   transaction whose rows commit late is published in a later round.
//! - Marked published only after the broker's delivery report (idempotent producer,
//!   `acks=all`). A relay killed between sending and marking leaves the rows unpublished;
//!   the next holder sends them again and consumers drop the duplicates by `eventId`.
//! - The `kafka-publisher` circuit breaker counts every event as a call. While OPEN the
//!   relay does not send; HALF_OPEN lets a few probe events through.

use crate::metrics::Metrics;
use crate::RelayConfig;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};
use payrail_core::breaker::CircuitBreaker;
use payrail_db::{epoch_ms, DbError, Shards};
use payrail_kafka::Producer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Marks a list of claimed rows published, fenced by the lease row's holder and epoch.
static MARK_PUBLISHED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE outbox_event e JOIN outbox_relay_lease l \
           ON l.id = 1 AND l.holder = ? AND l.epoch = ? AND l.lease_until > UTC_TIMESTAMP(3) \
         SET e.published_at = UTC_TIMESTAMP(3) \
         WHERE e.published_at IS NULL AND e.seq IN ({})",
        payrail_db::ID_LIST
    )
});

/// Wakes a shard's relay in this process when events were committed, so a quiet relay
/// does not wait out its idle poll.
pub struct Outbox {
    wake: Vec<Notify>,
}

impl Outbox {
    pub fn new(shards: u16) -> Arc<Self> {
        Arc::new(Self {
            wake: (0..shards).map(|_| Notify::new()).collect(),
        })
    }

    /// Tells the shard's relay that events were committed.
    pub fn committed(&self, shard: u16) {
        if let Some(wake) = self.wake.get(usize::from(shard).wrapping_sub(1)) {
            wake.notify_one();
        }
    }
}

/// The lease this process holds on one shard, if any: its epoch and until when it is
/// valid by the local monotonic clock.
#[derive(Default)]
struct Lease {
    held: parking_lot::Mutex<Option<(u64, Instant)>>,
    acquired: Notify,
}

pub struct Relay {
    shards: Arc<Shards>,
    config: RelayConfig,
    metrics: Metrics,
    outbox: Arc<Outbox>,
    leases: Vec<Lease>,
    /// Replaced by a fresh producer after an outage (see [`Relay::renew_producer`]).
    producer: parking_lot::Mutex<Producer>,
    kafka: payrail_kafka::KafkaConfig,
    client_id: String,
    /// Set once the producer was renewed for the current outage; cleared by a success.
    renewed: AtomicBool,
    /// Shared by every shard's relay task in this process: the broker is one dependency.
    pub breaker: CircuitBreaker,
    /// Whether the broker answers (`/health`), asked on the relay's producer.
    pub broker: Arc<payrail_kafka::BrokerProbe>,
    /// Names this process in `outbox_relay_lease`.
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
    /// A relay for every shard of `shards`, publishing to `kafka`; `instance` names this
    /// process (with its pid) as a lease holder, and its metrics go to `registry`.
    pub fn new(
        shards: Arc<Shards>,
        config: RelayConfig,
        kafka: &payrail_kafka::KafkaConfig,
        instance: &str,
        registry: &prometheus::Registry,
        outbox: Arc<Outbox>,
    ) -> Result<Arc<Self>, String> {
        let client_id = format!("{instance}-relay");
        let mut kafka = kafka.clone();
        // A send is delivered or failed within this; the fence keeps more than it in hand.
        kafka.message_timeout_ms = kafka.message_timeout_ms.min(config.lease_ms / 3).max(1);
        let producer = Producer::create(&kafka.producer(&client_id))
            .map_err(|e| format!("kafka producer: {e}"))?;
        let nonce = payrail_core::time::now_ms() as u64 ^ (u64::from(std::process::id()) << 40);
        Ok(Arc::new(Self {
            leases: shards.numbers().map(|_| Lease::default()).collect(),
            shards,
            metrics: Metrics::new(registry).map_err(|e| format!("relay metrics: {e}"))?,
            outbox,
            producer: parking_lot::Mutex::new(producer),
            kafka,
            client_id,
            renewed: AtomicBool::new(false),
            breaker: CircuitBreaker::new("kafka-publisher", config.breaker.clone()),
            broker: Arc::default(),
            config,
            holder: format!("{instance}:{}:{nonce:x}", std::process::id()),
        }))
    }

    /// Ensures the topics (retried: the broker may start after us), then runs, per shard,
    /// the lease renewal and the publishing loop, and the backlog count and the purge.
    pub fn start(self: &Arc<Self>) {
        let relay = Arc::clone(self);
        tokio::spawn(async move {
            while let Err(error) =
                payrail_kafka::admin::ensure_topics(&relay.kafka, &payrail_kafka::topics::ALL).await
            {
                tracing::warn!(%error, "kafka topics not ensured yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            for shard in relay.shards.numbers() {
                tokio::spawn(Arc::clone(&relay).hold(shard));
                tokio::spawn(Arc::clone(&relay).run_shard(shard));
            }
        });
        tokio::spawn(Arc::clone(self).backlog_loop());
        tokio::spawn(Arc::clone(self).purge_loop());
        let relay = Arc::downgrade(self);
        tokio::spawn(
            Arc::clone(&self.broker).run(payrail_kafka::topics::AUTHORIZED, move || {
                relay.upgrade().map(|r| r.producer.lock().clone())
            }),
        );
    }

    fn lease_of(&self, shard: u16) -> &Lease {
        &self.leases[usize::from(shard) - 1]
    }

    /// The epoch of the lease this process holds on `shard`, if it is valid for longer
    /// than `margin`.
    fn held(&self, shard: u16, margin: Duration) -> Option<u64> {
        let held = *self.lease_of(shard).held.lock();
        held.filter(|(_, until)| Instant::now() + margin < *until)
            .map(|(epoch, _)| epoch)
    }

    /// The producer's message timeout: no send starts with less than this of the lease left.
    fn send_margin(&self) -> Duration {
        Duration::from_millis(self.kafka.message_timeout_ms)
    }

    /// Replaces the producer once per outage, when the breaker has opened. A new producer
    /// gets a new producer id from the broker when it is back, instead of resuming an
    /// idempotent session the broker may have lost (tansu 0.6's SQLite storage panics on
    /// the resumed session after a restart; Apache Kafka would fence it with an epoch
    /// bump). Messages queued in the old one fail and stay unpublished in the outbox.
    fn renew_producer(&self) {
        if self.renewed.swap(true, Ordering::AcqRel) {
            return;
        }
        match Producer::create(&self.kafka.producer(&self.client_id)) {
            Ok(producer) => {
                *self.producer.lock() = producer;
                tracing::warn!("outbox relay: kafka producer renewed after failures");
            }
            Err(error) => {
                self.renewed.store(false, Ordering::Release);
                tracing::error!(%error, "outbox relay: could not renew the kafka producer");
            }
        }
    }

    /// Takes or renews the shard's lease. The epoch and the lease's remaining time when
    /// this process holds it.
    async fn lease(&self, shard: u16) -> Result<Option<(u64, Duration)>, DbError> {
        let lease_us = self.config.lease_ms * 1000;
        self.shards
            .bounded(shard, async {
                let classify = |e| DbError::classify(shard, e);
                let mut conn = self.shards.conn(shard).await?;
                // Assignments run left to right: `epoch` grows when the lease had run out,
                // `holder` changes only when the lease is ours or had run out, and
                // `lease_until` moves only when `holder` is (now) ours.
                conn.exec_drop(
                    format!(
                        "INSERT INTO outbox_relay_lease (id, holder, lease_until, epoch) VALUES (1, ?, UTC_TIMESTAMP(3) + INTERVAL {lease_us} MICROSECOND, 1) \
                         ON DUPLICATE KEY UPDATE \
                           epoch = IF(lease_until < UTC_TIMESTAMP(3), epoch + 1, epoch), \
                           holder = IF(holder = VALUES(holder) OR lease_until < UTC_TIMESTAMP(3), VALUES(holder), holder), \
                           lease_until = IF(holder = VALUES(holder), VALUES(lease_until), lease_until)"
                    ),
                    (self.holder.as_str(),),
                )
                .await
                .map_err(classify)?;
                let row: Option<(String, u64, i64)> = conn
                    .query_first(
                        "SELECT holder, epoch, TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(3), lease_until) FROM outbox_relay_lease WHERE id = 1",
                    )
                    .await
                    .map_err(classify)?;
                Ok(row
                    .filter(|(holder, _, _)| *holder == self.holder)
                    .map(|(_, epoch, remaining_us)| {
                        (epoch, Duration::from_micros(remaining_us.max(0) as u64))
                    }))
            })
            .await
    }

    /// Renews the shard's lease every third of it, independently of publishing rounds.
    async fn hold(self: Arc<Self>, shard: u16) {
        let shard_label = shard.to_string();
        let every = Duration::from_millis(self.config.lease_ms / 3);
        loop {
            // The lease counts from before the statement, so the local deadline is never
            // later than the database's.
            let asked = Instant::now();
            let lease = self.lease_of(shard);
            match self.lease(shard).await {
                Ok(Some((epoch, remaining))) => {
                    let before = lease.held.lock().replace((epoch, asked + remaining));
                    if before.map(|(e, _)| e) != Some(epoch) {
                        tracing::info!(shard, epoch, "outbox relay: lease taken");
                        lease.acquired.notify_one();
                    }
                    self.metrics
                        .leader
                        .with_label_values(&[&shard_label])
                        .set(1);
                }
                Ok(None) => {
                    if lease.held.lock().take().is_some() {
                        tracing::warn!(shard, "outbox relay: lease lost to another relay");
                    }
                    self.metrics
                        .leader
                        .with_label_values(&[&shard_label])
                        .set(0);
                }
                // The lease, if held, runs out by its local deadline.
                Err(error) => tracing::warn!(shard, %error, "outbox relay: lease renewal failed"),
            }
            tokio::time::sleep(every).await;
        }
    }

    async fn claim(&self, shard: u16, limit: usize) -> Result<Vec<Pending>, DbError> {
        self.shards
            .bounded(shard, async {
                let mut conn = self.shards.conn(shard).await?;
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

    /// Marks `seqs` published if this process still holds the lease under `epoch`
    /// (checked in the statement itself), in lists of one length
    /// (`payrail_db::padded_id_lists`). Returns the rows marked.
    async fn mark_published(&self, shard: u16, epoch: u64, seqs: &[u64]) -> Result<u64, DbError> {
        self.shards
            .bounded(shard, async {
                let mut conn = self.shards.conn(shard).await?;
                let mut marked = 0;
                for list in payrail_db::padded_id_lists(seqs) {
                    let mut params: Vec<Value> = Vec::with_capacity(list.len() + 2);
                    params.push(Value::Bytes(self.holder.as_bytes().to_vec()));
                    params.push(Value::UInt(epoch));
                    params.extend(list);
                    conn.exec_drop(MARK_PUBLISHED.as_str(), params)
                        .await
                        .map_err(|e| DbError::classify(shard, e))?;
                    marked += conn.affected_rows();
                }
                Ok(marked)
            })
            .await
    }

    /// Sends `events` (those the breaker and the fence admit) and returns the seqs the
    /// broker confirmed, the failures, and whether the fence stopped the round.
    async fn publish(&self, shard: u16, epoch: u64, events: &[Pending]) -> (Vec<u64>, usize, bool) {
        let shard_label = shard.to_string();
        let producer = self.producer.lock().clone();
        let mut in_flight = Vec::with_capacity(events.len());
        let mut fenced = false;
        for event in events {
            if self.held(shard, self.send_margin()) != Some(epoch) {
                fenced = true;
                break;
            }
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
            match producer.enqueue(record) {
                Ok(delivery) => {
                    self.metrics.sent.with_label_values(&[&shard_label]).inc();
                    in_flight.push((event, permit, delivery));
                }
                Err(error) => {
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
            let ok = delivery.await.is_ok();
            self.breaker
                .record(permit, ok, started.elapsed().as_millis() as u64);
            if ok {
                delivered.push(event.seq);
                let lag =
                    (payrail_core::time::now_ms() - event.created_at_ms).max(0) as f64 / 1000.0;
                self.metrics
                    .lag
                    .with_label_values(&[&shard_label])
                    .observe(lag);
            } else {
                failed += 1;
            }
        }
        (delivered, failed, fenced)
    }

    /// One shard's publishing loop, forever; it publishes only while holding the lease.
    async fn run_shard(self: Arc<Self>, shard: u16) {
        let config = self.config.clone();
        let shard_label = shard.to_string();
        let labels = [shard_label.as_str()];
        // Known label values start at 0, so dashboards see the series before a failure.
        for counter in [
            &self.metrics.publish_failures,
            &self.metrics.published,
            &self.metrics.sent,
            &self.metrics.marked,
            &self.metrics.fenced,
        ] {
            counter.with_label_values(&labels).inc_by(0);
        }
        let mut poll = payrail_core::poll::IdlePoll::new(
            Duration::from_millis(config.poll_interval_ms),
            Duration::from_millis(config.idle_poll_max_ms),
        );
        let mut backoff = Duration::from_millis(config.backoff_initial_ms);
        let lease = self.lease_of(shard);
        loop {
            let Some(epoch) = self.held(shard, self.send_margin()) else {
                let _ = tokio::time::timeout(
                    Duration::from_millis(config.lease_ms / 3),
                    lease.acquired.notified(),
                )
                .await;
                continue;
            };
            let events = match self.claim(shard, config.batch_size_max).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(shard, %error, "outbox relay: reading the outbox failed");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            if events.is_empty() {
                let wake = self.outbox.wake[usize::from(shard) - 1].notified();
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
            let (delivered, failed, mut fenced) = self.publish(shard, epoch, &events).await;
            if !delivered.is_empty() {
                self.metrics
                    .published
                    .with_label_values(&labels)
                    .inc_by(delivered.len() as u64);
                match self.mark_published(shard, epoch, &delivered).await {
                    Ok(marked) => {
                        self.metrics
                            .marked
                            .with_label_values(&labels)
                            .inc_by(marked);
                        // Fewer rows than confirmed: another relay marked them, or the
                        // lease moved on and the statement's fence refused them.
                        if marked < delivered.len() as u64
                            && self.held(shard, Duration::ZERO) != Some(epoch)
                        {
                            fenced = true;
                        }
                    }
                    // The events reached Kafka; they will be sent again and deduplicated.
                    Err(error) => tracing::warn!(
                        shard,
                        %error,
                        "outbox relay: marking events published failed"
                    ),
                }
            }
            if fenced {
                self.metrics.fenced.with_label_values(&labels).inc();
                tracing::warn!(
                    shard,
                    epoch,
                    "outbox relay: the lease ran out or moved on mid-round; stopped sending and marking"
                );
                continue;
            }
            if failed == 0 && !delivered.is_empty() {
                self.renewed.store(false, Ordering::Release);
            } else if self.breaker.state() == payrail_core::breaker::State::Open {
                self.renew_producer();
            }
            if failed > 0 || delivered.is_empty() {
                self.metrics
                    .publish_failures
                    .with_label_values(&labels)
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

    /// Counts unpublished events every few seconds on the shards whose lease this process
    /// holds (the backlog gauge; 0 on the others, so a sum over processes is the backlog).
    async fn backlog_loop(self: Arc<Self>) {
        let mut interval = tokio::time::interval(Duration::from_secs(2));
        loop {
            interval.tick().await;
            for shard in self.shards.numbers() {
                let gauge = self
                    .metrics
                    .backlog
                    .with_label_values(&[&shard.to_string()]);
                if self.held(shard, Duration::ZERO).is_none() {
                    gauge.set(0);
                    continue;
                }
                let count = self
                    .shards
                    .bounded(shard, async {
                        let mut conn = self.shards.conn(shard).await?;
                        let n: Option<i64> = conn
                            .query_first(
                                "SELECT COUNT(*) FROM outbox_event WHERE published_at IS NULL",
                            )
                            .await
                            .map_err(|e| DbError::classify(shard, e))?;
                        Ok(n.unwrap_or(0))
                    })
                    .await;
                if let Ok(n) = count {
                    gauge.set(n);
                }
            }
        }
    }

    /// Deletes published events past `relay.retention_seconds` on every shard, in small
    /// batches, every `relay.purge_interval_seconds` (`payrail_db::retention`).
    async fn purge_loop(self: Arc<Self>) {
        let policy = payrail_db::retention::Policy {
            what: "outbox",
            delete: payrail_db::retention::OUTBOX_PUBLISHED.to_owned(),
            retention_seconds: self.config.retention_seconds,
            interval_seconds: self.config.purge_interval_seconds,
            batch_size: self.config.purge_batch_size,
        };
        payrail_db::retention::run(&self.shards, policy, |shard, rows| {
            self.metrics
                .purged
                .with_label_values(&[&shard.to_string()])
                .inc_by(rows)
        })
        .await
    }
}
