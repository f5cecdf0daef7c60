//! `<worker> --config FILE replay-dlq`: re-sends every message of the worker's DLQ topic
//! not yet replayed to its original topic, with the replay header. The intake re-arms the
//! failed job; a job that succeeded meanwhile is left alone, so replaying twice changes
//! nothing. Progress is the consumer group `<service>-dlq-replay`.

use crate::config::WorkerConfig;
use crate::job::JobKind;
use payrail_kafka::dlq::DeadLetter;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use std::time::Duration;

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
    let producer: FutureProducer = config
        .kafka
        .producer(&group)
        .create()
        .map_err(|e| format!("producer: {e}"))?;
    let mut replayed = 0;
    loop {
        let message = match tokio::time::timeout(idle, consumer.recv()).await {
            Err(_) => break,
            Ok(Err(error)) => return Err(format!("receive: {error}")),
            Ok(Ok(message)) => message,
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
                    .map_err(|(e, _)| format!("re-send: {e}"))?;
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
