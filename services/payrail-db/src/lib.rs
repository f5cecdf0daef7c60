//! MariaDB, sharded by merchant.
//!
//! - [`shards`]: one bounded `mysql_async` pool per shard, built from config with every
//!   option set explicitly, and a timeout around each use.
//! - [`migrate`]: versioned schema migrations (`migrations/*.sql`), applied once per shard
//!   under a named lock so several instances can start together.
//! - [`outbox`]: outbox and history rows inside the caller's transaction.
//! - [`sequence`]: global ids handed out in blocks from each shard's `id_sequence` row.
//! - [`error`]: what callers need to tell apart: shard down, duplicate key, anything else.

pub mod error;
pub mod migrate;
pub mod outbox;
pub mod sequence;
pub mod shards;

pub use error::{datetime, epoch_ms, DbError, Result};
pub use shards::{PoolConfig, ShardConfig, Shards};
