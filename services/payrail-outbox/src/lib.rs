//! The transactional outbox, in one place.
//!
//! - [`write`]: an event is a row of `outbox_event`, inserted in the same transaction as
//!   the state change it announces (ingest's group commit inserts its rows in the batch's
//!   transaction with the same columns).
//! - [`relay`]: publishes each shard's unpublished rows to Kafka in `seq` order. Every
//!   service that writes events (ingest, the settlement and refund workers) runs a relay
//!   task per shard; only the holder of the shard's fenced lease publishes, so a shard's
//!   events are published while any of them runs.
//! - [`config`]: the relay's settings, the `[relay]` table of each of those services.
//! - Published rows are purged after `relay.retention_seconds` (`payrail_db::retention`).

pub mod config;
pub mod metrics;
pub mod relay;
pub mod write;

pub use config::RelayConfig;
pub use relay::{Outbox, Relay};
pub use write::insert;
