//! The broker as an operator sees it: every topic's offsets, each consumer group's
//! committed offsets and lag, the dead letters, and the replay of one dead letter.
//!
//! librdkafka's metadata and offset calls block, so each runs on tokio's blocking pool.
//! The consumers used here never join their group and never commit: they only read the
//! groups' committed offsets (`OffsetFetch`) and the partitions' watermarks.

use payrail_kafka::dlq::DeadLetter;
use payrail_kafka::{topics, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

pub const DLQ_TOPICS: [&str; 4] = [
    topics::PAYMENT_DLQ,
    topics::SETTLEMENT_DLQ,
    topics::REFUND_DLQ,
    topics::VOID_DLQ,
];

pub struct Kafka {
    config: KafkaConfig,
    /// One offset reader per consumer group, created once.
    groups: Vec<(String, Arc<BaseConsumer>)>,
    producer: payrail_kafka::Producer,
}

#[derive(Debug)]
pub enum KafkaError {
    /// The broker did not answer: 503.
    Unavailable(String),
    /// No such message: 404.
    NotFound(String),
    /// The message is not a dead letter we can replay: 422.
    NotReplayable(String),
}

impl std::fmt::Display for KafkaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(m) | Self::NotFound(m) | Self::NotReplayable(m) => f.write_str(m),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> KafkaError {
    KafkaError::Unavailable(format!("kafka: {e}"))
}

impl Kafka {
    pub fn new(config: &KafkaConfig, groups: &[String]) -> Result<Self, String> {
        let groups = groups
            .iter()
            .map(|group| {
                let consumer: BaseConsumer = config
                    .consumer(&format!("monitoring-lag-{group}"), group)
                    .set("enable.auto.commit", "false")
                    .create()
                    .map_err(|e| format!("consumer for {group}: {e}"))?;
                Ok((group.clone(), Arc::new(consumer)))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let producer = payrail_kafka::Producer::create(&config.producer("monitoring-dlq-replay"))
            .map_err(|e| format!("producer: {e}"))?;
        Ok(Self {
            config: config.clone(),
            groups,
            producer,
        })
    }

    /// Every topic's partitions (low and high watermarks, message count), and for each
    /// consumer group its committed offset and lag on every partition of the topics it
    /// has committed on.
    pub async fn offsets(&self) -> Result<Json, KafkaError> {
        let groups = self.groups.clone();
        tokio::task::spawn_blocking(move || offsets_blocking(&groups))
            .await
            .map_err(unavailable)?
    }

    /// The last `limit` dead letters of `topic`, newest first.
    pub async fn dead_letters(&self, topic: &str, limit: usize) -> Result<Json, KafkaError> {
        let config = self.config.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || dead_letters_blocking(&config, &topic, limit))
            .await
            .map_err(unavailable)?
    }

    /// Re-sends the dead letter at `topic`/`partition`/`offset` to its original topic
    /// with the replay header, so the worker re-arms the failed job (a job that succeeded
    /// meanwhile is left alone; the ledger ignores an event it already booked).
    pub async fn replay(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Json, KafkaError> {
        let config = self.config.clone();
        let owned = topic.to_owned();
        let (key, letter) =
            tokio::task::spawn_blocking(move || read_one(&config, &owned, partition, offset))
                .await
                .map_err(unavailable)??;
        let known = topics::ALL
            .iter()
            .any(|(t, _)| *t == letter.original_topic && !DLQ_TOPICS.contains(t));
        if !known {
            return Err(KafkaError::NotReplayable(format!(
                "the dead letter names {:?}, not a payment topic",
                letter.original_topic
            )));
        }
        let record = payrail_kafka::dlq::replay_record(&letter, &key);
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(unavailable)?;
        Ok(json!({
            "from": { "topic": topic, "partition": partition, "offset": offset },
            "to": { "topic": letter.original_topic, "partition": delivery.partition, "offset": delivery.offset },
            "key": key,
        }))
    }
}

fn offsets_blocking(groups: &[(String, Arc<BaseConsumer>)]) -> Result<Json, KafkaError> {
    let Some((_, reader)) = groups.first() else {
        return Ok(json!({ "topics": [], "groups": [] }));
    };
    let metadata = reader.fetch_metadata(None, TIMEOUT).map_err(unavailable)?;
    let mut watermarks = Vec::new();
    let mut topics_json = Vec::new();
    for topic in metadata.topics() {
        if topic.name().starts_with("__") {
            continue;
        }
        let mut partitions = Vec::new();
        let mut messages = 0;
        for partition in topic.partitions() {
            let (low, high) = reader
                .fetch_watermarks(topic.name(), partition.id(), TIMEOUT)
                .map_err(unavailable)?;
            messages += high - low;
            watermarks.push((topic.name().to_owned(), partition.id(), high));
            partitions.push(json!({ "partition": partition.id(), "low": low, "high": high }));
        }
        topics_json
            .push(json!({ "topic": topic.name(), "messages": messages, "partitions": partitions }));
    }
    topics_json.sort_by(|a, b| a["topic"].as_str().cmp(&b["topic"].as_str()));
    let mut groups_json = Vec::new();
    for (group, consumer) in groups {
        let mut wanted = TopicPartitionList::new();
        for (topic, partition, _) in &watermarks {
            wanted.add_partition(topic, *partition);
        }
        let committed = consumer
            .committed_offsets(wanted, TIMEOUT)
            .map_err(unavailable)?;
        let mut by_topic: std::collections::BTreeMap<String, (i64, Vec<Json>)> = Default::default();
        for element in committed.elements() {
            let Offset::Offset(at) = element.offset() else {
                continue;
            };
            let high = watermarks
                .iter()
                .find(|(t, p, _)| t == element.topic() && *p == element.partition())
                .map(|w| w.2)
                .unwrap_or(at);
            let lag = (high - at).max(0);
            let entry = by_topic.entry(element.topic().to_owned()).or_default();
            entry.0 += lag;
            entry.1.push(json!({ "partition": element.partition(), "committed": at, "high": high, "lag": lag }));
        }
        let total: i64 = by_topic.values().map(|v| v.0).sum();
        let topics: Vec<Json> = by_topic
            .into_iter()
            .map(|(topic, (lag, partitions))| json!({ "topic": topic, "lag": lag, "partitions": partitions }))
            .collect();
        groups_json.push(json!({ "group": group, "lag": total, "topics": topics }));
    }
    Ok(json!({ "topics": topics_json, "groups": groups_json }))
}

fn reader(config: &KafkaConfig) -> Result<BaseConsumer, KafkaError> {
    config
        .consumer("monitoring-dlq-reader", "monitoring-dlq-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_uncommitted")
        .create()
        .map_err(unavailable)
}

fn dead_letters_blocking(
    config: &KafkaConfig,
    topic: &str,
    limit: usize,
) -> Result<Json, KafkaError> {
    let consumer = reader(config)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(unavailable)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    let mut total = 0;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut ends = std::collections::HashMap::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, TIMEOUT)
            .map_err(unavailable)?;
        total += high - low;
        if high > low {
            let from = low.max(high - limit as i64);
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(from))
                .map_err(unavailable)?;
            remaining += high - from;
            ends.insert(partition, high);
        }
    }
    let mut letters = Vec::new();
    if remaining > 0 {
        consumer.assign(&assignment).map_err(unavailable)?;
        let deadline = std::time::Instant::now() + TIMEOUT;
        while remaining > 0 && std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message))
                    if ends
                        .get(&message.partition())
                        .is_some_and(|end| message.offset() < *end) =>
                {
                    remaining -= 1;
                    letters.push(letter_json(&message));
                }
                Some(Err(e)) => return Err(unavailable(e)),
                Some(Ok(_)) | None => {}
            }
        }
    }
    letters.sort_by(|a, b| b["timestamp"].as_str().cmp(&a["timestamp"].as_str()));
    letters.truncate(limit);
    Ok(json!({ "topic": topic, "total": total, "messages": letters }))
}

fn letter_json(message: &impl Message) -> Json {
    let key = message
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned());
    let letter: Option<DeadLetter> = message
        .payload()
        .and_then(|p| serde_json::from_slice(p).ok());
    json!({
        "partition": message.partition(),
        "offset": message.offset(),
        "key": key,
        "timestamp": letter.as_ref().map(|l| l.timestamp.clone()),
        "letter": letter,
    })
}

fn read_one(
    config: &KafkaConfig,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(String, DeadLetter), KafkaError> {
    let consumer = reader(config)?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, TIMEOUT)
        .map_err(|e| match e.rdkafka_error_code() {
            Some(rdkafka::types::RDKafkaErrorCode::UnknownPartition)
            | Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition) => {
                KafkaError::NotFound(format!("{topic} has no partition {partition}"))
            }
            _ => unavailable(e),
        })?;
    if offset < low || offset >= high {
        return Err(KafkaError::NotFound(format!(
            "{topic}/{partition} holds offsets {low}..{high}, not {offset}"
        )));
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .map_err(unavailable)?;
    consumer.assign(&assignment).map_err(unavailable)?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) if message.offset() == offset => {
                let key = message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                let letter: DeadLetter = message
                    .payload()
                    .and_then(|p| serde_json::from_slice(p).ok())
                    .ok_or_else(|| {
                        KafkaError::NotReplayable(format!(
                            "{topic}/{partition}@{offset} is not a dead letter"
                        ))
                    })?;
                return Ok((key, letter));
            }
            Some(Ok(_)) | None => {}
            Some(Err(e)) => return Err(unavailable(e)),
        }
    }
    Err(unavailable(format!(
        "{topic}/{partition}@{offset} not read within {TIMEOUT:?}"
    )))
}
