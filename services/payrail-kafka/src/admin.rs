//! Topic creation at start-up.

use crate::settings::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// Creates every topic in `topics` that does not exist yet (replication 1: one broker).
pub async fn ensure_topics(config: &KafkaConfig, topics: &[(&str, i32)]) -> Result<(), String> {
    let mut client_config = rdkafka::ClientConfig::new();
    client_config
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("request.timeout.ms", config.request_timeout_ms.to_string());
    let admin: AdminClient<DefaultClientContext> = client_config
        .create()
        .map_err(|e| format!("kafka admin client: {e}"))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_millis(config.request_timeout_ms)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| format!("create topics: {e}"))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("create topic {name}: {code}")),
        }
    }
    Ok(())
}
