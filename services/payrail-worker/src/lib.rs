//! The settlement and refund workers' shared machinery.
//!
//! - [`job`]: what a job is, and the [`job::JobKind`] trait a worker implements (which
//!   topic, which table, what success and failure change).
//! - [`intake`]: consumes the request topic and persists one job row per request on the
//!   payment's shard (`INSERT IGNORE`, so a redelivery is a no-op); the offset is committed
//!   only after the database commit.
//! - [`scheduler`]: per shard, claims due jobs (`FOR UPDATE SKIP LOCKED`), calls the PG
//!   outside any transaction with an idempotent request id, then records the outcome:
//!   success, a retry at `now + backoff with jitter`, or after the last attempt the failed
//!   state and a DLQ message, both through the outbox in one transaction. First attempts
//!   and retries take the same path, on every shard.
//! - [`replay`]: the `replay-dlq` command.
//! - [`config`], [`metrics`], [`service`]: wiring, `/health` and `/metrics`.

pub mod config;
pub mod intake;
pub mod job;
pub mod metrics;
pub mod replay;
pub mod scheduler;
pub mod service;
