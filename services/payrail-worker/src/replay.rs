//! `<worker> --config FILE replay-dlq`: re-sends every message of the worker's DLQ topic
//! not yet replayed to its original topic, with the replay header. The intake re-arms the
//! failed job; a job that succeeded meanwhile is left alone, so replaying twice changes
//! nothing. Progress is the consumer group `<service>-dlq-replay`.

use crate::config::WorkerConfig;
use crate::job::JobKind;
use payrail_kafka::dlq::DeadLetter;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use std::time::{Duration, Instant};

/// How long the group may take to assign the DLQ's partitions before the replay gives up.
const ASSIGNMENT_MAX: Duration = Duration::from_secs(30);

/// Returns how many messages were replayed; stops after `idle` without new messages.
pub async fn replay<K: JobKind>(config: &WorkerConfig, idle: Duration) -> Result<usize, String> {
    let group = format!("{}-dlq-replay", K::SERVICE);
    let consumer: StreamConsumer = config
        .kafka
        .consumer(&group, &group)
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    consumer
        .subscribe(&[K::DLQ_TOPIC])
        .map_err(|e| format!("subscribe {}: {e}", K::DLQ_TOPIC))?;
    let producer = payrail_kafka::Producer::create(&config.kafka.producer(&group))
        .map_err(|e| format!("producer: {e}"))?;
    let mut replayed = 0;
    // The idle clock starts once the group has handed us the partitions: a broker delays
    // the first rebalance of an empty group (Kafka's group.initial.rebalance.delay.ms,
    // 3 s by default), which is as long as `idle` itself.
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    loop {
        let wait = match quiet_since {
            Some(since) => idle.saturating_sub(since.elapsed()),
            None => Duration::from_millis(200),
        };
        let message = match tokio::time::timeout(wait, consumer.recv()).await {
            Err(_) if quiet_since.is_some() => break,
            Err(_) => {
                let assigned = consumer.assignment().is_ok_and(|a| a.count() > 0);
                if assigned {
                    quiet_since = Some(Instant::now());
                } else if started.elapsed() > ASSIGNMENT_MAX {
                    return Err(format!(
                        "no partition of {} assigned within {ASSIGNMENT_MAX:?}",
                        K::DLQ_TOPIC
                    ));
                }
                continue;
            }
            Ok(Err(error)) => return Err(format!("receive: {error}")),
            Ok(Ok(message)) => {
                quiet_since = Some(Instant::now());
                message
            }
        };
        let letter: Option<DeadLetter> = message
            .payload()
            .and_then(|p| serde_json::from_slice(p).ok());
        match letter {
            Some(letter) if letter.original_topic == K::SOURCE_TOPIC => {
                let key = message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                let record = payrail_kafka::dlq::replay_record(&letter, &key);
                producer
                    .send(record, Duration::from_secs(10))
                    .await
                    .map_err(|e| format!("re-send: {e}"))?;
                replayed += 1;
            }
            _ => tracing::warn!(
                offset = message.offset(),
                "skipping a DLQ message that is not a replayable request"
            ),
        }
        consumer
            .commit_message(&message, CommitMode::Sync)
            .map_err(|e| format!("commit: {e}"))?;
    }
    Ok(replayed)
}
