//! Domain rules that every payrail service shares.
//!
//! - [`id`]: the global id scheme (`shard << 42 | sequence`, always below 2^53).
//! - [`shard`]: merchant → shard routing.
//! - [`validate`]: field rules of the REST API contract.
//! - [`status`]: the payment state machine's states.
//! - [`event`]: event types and payloads. [`json`]: JSON string escaping.
//! - [`time`]: RFC 3339 timestamps with milliseconds, UTC. [`url`]: percent-encoding.
//! - [`breaker`]: a time-window circuit breaker counting successes, failures and slow calls.
//! - [`poll`]: the backing-off wait of a loop that polls a table for work.
//! - [`config`]: TOML config files with `deny_unknown_fields` and `--check-config`.
//! - [`telemetry`]: tracing setup and the Prometheus text endpoint.
//! - [`alloc`]: a global allocator wrapper that counts heap allocations.

/// The only unsafe code of the workspace: a `GlobalAlloc` impl, which is an unsafe trait,
/// forwarding every call unchanged to the wrapped allocator.
#[allow(unsafe_code)]
pub mod alloc;
pub mod breaker;
pub mod config;
pub mod event;
pub mod id;
pub mod json;
pub mod poll;
pub mod shard;
pub mod status;
pub mod telemetry;
pub mod time;
pub mod url;
pub mod validate;
