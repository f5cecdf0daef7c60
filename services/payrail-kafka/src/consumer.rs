//! The consuming side every payrail consumer shares: receive a batch, hand its events to
//! their shards' lanes ([`crate::lanes`]), which make them durable; the offsets past them
//! are stored once they are.
//!
//! Offsets: consumers run with `enable.auto.offset.store=false` and `enable.auto.commit=true`,
//! so librdkafka commits, every `commit_interval_ms` and on rebalance or close, only the
//! offsets we *stored*, and we store them only once a batch's effect is durable. That keeps
//! "commit after the database commit" while the broker sees a few commits a second
//! instead of one per batch. A crash loses at most one interval of commits: a harmless
//! redelivery, since every consumer deduplicates by `eventId` or job id.
//!
//! Rejoin watchdog: a member that holds no partition for `rejoin_after_ms` leaves and
//! joins again as a new member. A group whose elected leader died without leaving can
//! otherwise hand every live member an empty assignment until something else triggers a
//! rebalance (seen with tansu after a broker restart). Run at most as many instances of
//! one consumer as its topics have partitions, or the spare ones rejoin periodically.

use crate::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::TopicPartitionList;
use std::time::{Duration, Instant};

pub struct BatchConsumer {
    config: KafkaConfig,
    client_id: String,
    group_id: String,
    topics: Vec<String>,
    consumer: StreamConsumer,
    /// Since when this member has held no partition (None while it holds some).
    unassigned_since: Option<Instant>,
}

impl BatchConsumer {
    /// Creates the consumer and subscribes, retrying until the subscription is accepted.
    pub async fn subscribe(
        config: &KafkaConfig,
        client_id: &str,
        group_id: &str,
        topics: &[&str],
    ) -> Result<Self, String> {
        let consumer = Self::connect(config, client_id, group_id, topics).await?;
        Ok(Self {
            config: config.clone(),
            client_id: client_id.to_owned(),
            group_id: group_id.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            consumer,
            unassigned_since: None,
        })
    }

    async fn connect(
        config: &KafkaConfig,
        client_id: &str,
        group_id: &str,
        topics: &[&str],
    ) -> Result<StreamConsumer, String> {
        let consumer: StreamConsumer = config
            .consumer(client_id, group_id)
            .create()
            .map_err(|e| format!("kafka consumer: {e}"))?;
        while let Err(error) = consumer.subscribe(topics) {
            tracing::warn!(%error, "subscribe failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(consumer)
    }

    /// Waits for at least one message, then takes what follows within `linger` of the
    /// previous one, up to `max` messages. With `idle`, returns an empty batch when no
    /// message came within it (so the caller can settle its shard lanes).
    pub async fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
        idle: Option<Duration>,
    ) -> Vec<OwnedMessage> {
        let mut batch = Vec::with_capacity(max);
        let wait = idle.unwrap_or(Duration::from_secs(2));
        loop {
            match tokio::time::timeout(wait, self.consumer.recv()).await {
                Ok(Ok(m)) => {
                    batch.push(m.detach());
                    self.unassigned_since = None;
                    break;
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "kafka receive failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(_) => {
                    self.watch_assignment().await;
                    if idle.is_some() {
                        return batch;
                    }
                }
            }
        }
        while batch.len() < max {
            match tokio::time::timeout(linger, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m.detach()),
                _ => break,
            }
        }
        batch
    }

    async fn watch_assignment(&mut self) {
        let assigned = self
            .consumer
            .assignment()
            .map(|list| list.count() > 0)
            .unwrap_or(false);
        if assigned {
            self.unassigned_since = None;
            return;
        }
        let since = *self.unassigned_since.get_or_insert_with(Instant::now);
        if since.elapsed() < Duration::from_millis(self.config.rejoin_after_ms) {
            return;
        }
        tracing::warn!(
            group = %self.group_id,
            "no partition assigned for a while; leaving and joining the group again"
        );
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        match Self::connect(&self.config, &self.client_id, &self.group_id, &topics).await {
            Ok(consumer) => {
                // Dropping the old consumer closes it: it leaves the group.
                self.consumer = consumer;
                self.unassigned_since = None;
            }
            Err(error) => tracing::error!(%error, "could not create a new consumer"),
        }
    }

    /// Stores `offsets` (each the next offset to consume) for the next periodic commit.
    /// Store only offsets whose messages' effects are durable.
    pub fn store(&self, offsets: &TopicPartitionList) {
        if let Err(error) = self.consumer.store_offsets(offsets) {
            // A partition revoked meanwhile: its new owner redelivers (harmless).
            tracing::warn!(%error, "storing offsets failed; events may be redelivered (harmless)");
        }
    }

    /// Pauses fetching on every assigned partition; polling goes on, so the member stays
    /// in its group. True when paused.
    pub fn pause_all(&self) -> bool {
        match self.consumer.assignment() {
            Ok(list) => self.consumer.pause(&list).is_ok(),
            Err(_) => false,
        }
    }

    /// Resumes fetching on every assigned partition. True when resumed.
    pub fn resume_all(&self) -> bool {
        match self.consumer.assignment() {
            Ok(list) => self.consumer.resume(&list).is_ok(),
            Err(_) => false,
        }
    }
}
