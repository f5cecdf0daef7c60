//! The PG (payment gateway) protocol and client.
//!
//! - [`protocol`]: requests and answers of `POST /v1/{authorize,capture,refund,void}`.
//!   Every request carries a `requestId`; the PG treats a repeated id as the same
//!   operation and answers with its first result, which is what makes retries safe.
//! - [`client`]: a keep-alive HTTP/1.1 client with a per-call timeout.

pub mod client;
pub mod protocol;

pub use client::{PgClient, PgError};
pub use protocol::{Operation, PgDecision, PgReply, PgRequest, PgTotals};
