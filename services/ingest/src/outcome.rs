//! What a request's async work hands back to the HTTP coroutine: status, body and the
//! few headers that depend on the result.

use payrail_db::DbError;
use payrail_http::error_body::{self, Detail};

pub struct Outcome {
    pub status: u16,
    pub body: Vec<u8>,
    /// `Idempotent-Replayed: true`.
    pub replayed: bool,
    /// `Retry-After: N` seconds.
    pub retry_after_seconds: Option<u64>,
}

impl Outcome {
    pub fn ok(body: Vec<u8>) -> Self {
        Self::with_status(200, body)
    }

    pub fn with_status(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            body,
            replayed: false,
            retry_after_seconds: None,
        }
    }

    pub fn error(status: u16, code: &str, message: &str, payment_id: Option<u64>) -> Self {
        Self::error_with(status, code, message, payment_id, &[], None)
    }

    pub fn error_with(
        status: u16,
        code: &str,
        message: &str,
        payment_id: Option<u64>,
        details: &[Detail<'_>],
        status_field: Option<&str>,
    ) -> Self {
        let mut body = Vec::with_capacity(128);
        error_body::encode(&mut body, code, message, payment_id, details, status_field);
        Self::with_status(status, body)
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds.max(1));
        self
    }

    /// A state conflict: 409 with the payment's current status.
    pub fn conflict(code: &str, message: &str, payment_id: u64, status: &str) -> Self {
        Self::error_with(409, code, message, Some(payment_id), &[], Some(status))
    }

    pub fn not_found() -> Self {
        Self::error(404, "NOT_FOUND", "no such payment for this merchant", None)
    }

    /// A database failure. A shard that is down is a 503 the client can retry; anything
    /// else is our bug, logged and answered 500 without details.
    pub fn from_db(error: &DbError) -> Self {
        if error.is_unavailable() {
            tracing::warn!(%error, "shard unavailable");
            Self::error(
                503,
                "SHARD_UNAVAILABLE",
                "the payment store for this merchant is unavailable; retry shortly",
                None,
            )
            .retry_after(1)
        } else if matches!(error, DbError::LockConflict { .. }) {
            Self::error(
                503,
                "SHARD_UNAVAILABLE",
                "the payment store is busy; retry shortly",
                None,
            )
            .retry_after(1)
        } else {
            tracing::error!(%error, "database error");
            Self::error(500, "INTERNAL", "internal error", None)
        }
    }

    pub fn overloaded() -> Self {
        Self::error(
            503,
            "OVERLOADED",
            "too many requests in flight; retry shortly",
            None,
        )
        .retry_after(1)
    }
}
