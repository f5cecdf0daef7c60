//! Kafka, the way every payrail service uses it.
//!
//! - [`topics`]: the topics of `system.md` with their partition counts.
//! - [`settings`]: producer and consumer settings, every option passed explicitly
//!   (idempotent producer, `acks=all`, offsets committed only after they are stored) instead of library defaults.
//! - [`admin`]: creates missing topics at start-up.
//! - [`dlq`]: the dead-letter message, in the reference system's format, and sending it.
//! - [`consumer`]: batches in, offsets stored after the effect is durable, a rejoin watchdog.
//! - [`lanes`]: a lane per shard, so one shard's outage does not stall the others' events.
//! - [`producer`]: the producer every service sends with (a future per message).
//! - [`probe`]: whether the broker answers, for each service's `/health`.

pub mod admin;
pub mod consumer;
pub mod dlq;
pub mod lanes;
pub mod probe;
pub mod producer;
pub mod settings;
pub mod topics;

pub use probe::BrokerProbe;
pub use producer::Producer;
pub use settings::KafkaConfig;
