//! HTTP for payrail's request path.
//!
//! - [`server`]: an HTTP/1.1 keep-alive server, one may coroutine per connection, with the
//!   limits a payment API needs (connection cap, header and body size, read timeouts).
//! - [`request`] / [`response`]: borrowed requests and reusable response buffers.
//! - [`bridge`]: runs a future on a tokio runtime and parks the calling coroutine (not its
//!   thread) until the answer comes back, with a bound on calls in flight.
//! - [`tls`]: rustls on the same loop (TLS 1.2+, certificate reload, HSTS).
//! - [`error_body`]: the API's error body and codes (`shared/spec/api.md`).
//! - [`runtime`]: may's scheduler settings, the same in every service.
//!
//! Why not may_minihttp's server loop: version 0.1.11 unwraps the `Content-Length` header
//! (a malformed one panics the connection), drops a malformed request's connection without
//! any answer, only takes `&'static str` response headers (no `Retry-After: N`), and has
//! no read timeouts, so a slow client holds a coroutine forever. The loop here keeps its
//! design (a coroutine per connection on may's fixed stacks, buffers reused per
//! connection, httparse for the head) and adds what a payment API needs.

pub mod bridge;
pub mod error_body;
pub mod request;
pub mod response;
pub mod runtime;
pub mod server;
pub mod tls;

pub use bridge::{Bridge, BridgeError};
pub use request::Request;
pub use response::Response;
pub use server::{Handler, ServerConfig};
