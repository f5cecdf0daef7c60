//! Kafka, the way every payrail service uses it.
//!
//! - [`topics`]: the topics of `system.md` with their partition counts.
//! - [`settings`]: producer and consumer settings, every option passed explicitly
//!   (idempotent producer, `acks=all`, manual offset commits) instead of library defaults.
//! - [`admin`]: creates missing topics at start-up.
//! - [`dlq`]: the dead-letter message, in the reference system's format, and sending it.
//! - [`offsets`]: committing past a processed batch.

pub mod admin;
pub mod dlq;
pub mod offsets;
pub mod settings;
pub mod topics;

pub use settings::KafkaConfig;
