//! The dead-letter message, in the reference system's format, so its admin tools read ours.

use serde::{Deserialize, Serialize};

/// Header a DLQ replay puts on the message it re-sends: the worker intake re-arms the
/// failed job it names (a job that succeeded meanwhile is left alone).
pub const REPLAY_HEADER: &str = "payrail-dlq-replay";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub original_topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The original message, as text.
    pub payload: String,
    pub error_type: String,
    pub error_message: String,
    /// RFC 3339 UTC.
    pub timestamp: String,
    pub retry_count: u32,
}

/// The record a replay re-sends: the dead letter's original payload to its original topic,
/// under `key`, with [`REPLAY_HEADER`].
pub fn replay_record<'a>(
    letter: &'a DeadLetter,
    key: &'a str,
) -> rdkafka::producer::FutureRecord<'a, str, str> {
    let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: REPLAY_HEADER,
        value: Some("1"),
    });
    rdkafka::producer::FutureRecord::to(&letter.original_topic)
        .key(key)
        .payload(letter.payload.as_str())
        .headers(headers)
}

/// Sends `message` to `dlq_topic` as a dead letter, retrying until the broker takes it
/// (the caller commits the message's offset only afterwards, so nothing is lost).
pub async fn send(
    producer: &crate::Producer,
    message: &rdkafka::message::OwnedMessage,
    dlq_topic: &str,
    error_type: &str,
    error_message: &str,
    timestamp: String,
) {
    use rdkafka::message::Message;
    let letter = DeadLetter {
        original_topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        payload: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
        error_type: error_type.to_owned(),
        error_message: error_message.to_owned(),
        timestamp,
        retry_count: 0,
    };
    let body = serde_json::to_vec(&letter).unwrap_or_default();
    let key = message
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    loop {
        let record = rdkafka::producer::FutureRecord::to(dlq_topic)
            .key(&key)
            .payload(&body);
        match producer
            .send(record, std::time::Duration::from_secs(5))
            .await
        {
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%error, topic = dlq_topic, "could not write a dead letter; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}
