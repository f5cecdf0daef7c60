//! Event types and payloads. Every event: `{ eventId, type, paymentId, merchantId, amount,
//! currency, occurredAt, status, …extra }`; `eventId` is a global id, stable across
//! redeliveries, so every consumer can de-duplicate on it.

use crate::json::push_string;
use crate::time::push_rfc3339;

pub const AUTHORIZED: &str = "PAYMENT_AUTHORIZED";
pub const CAPTURE_REQUESTED: &str = "PAYMENT_CAPTURE_REQUESTED";
pub const CAPTURED: &str = "PAYMENT_CAPTURED";
pub const CAPTURE_FAILED: &str = "PAYMENT_CAPTURE_FAILED";
pub const REFUND_REQUESTED: &str = "PAYMENT_REFUND_REQUESTED";
pub const REFUNDED: &str = "PAYMENT_REFUNDED";
pub const REFUND_FAILED: &str = "PAYMENT_REFUND_FAILED";
pub const VOIDED: &str = "PAYMENT_VOIDED";
pub const VOID_REQUESTED: &str = "PAYMENT_VOID_REQUESTED";

/// Why a void was asked for (`reason` of a void-requested event): it decides the state the
/// payment ends in once the PG voided (`VOIDED`, `EXPIRED`, or unchanged `CAPTURE_FAILED`).
pub const VOID_REASON_MERCHANT: &str = "merchant";
pub const VOID_REASON_EXPIRED: &str = "expired";
pub const VOID_REASON_CAPTURE_FAILED: &str = "capture_failed";
/// An authorization whose client never came back (the resolver voids it itself).
pub const VOID_REASON_ABANDONED: &str = "abandoned";

pub enum Extra<'a> {
    Text(&'a str),
    Number(i64),
}

pub struct Event<'a> {
    pub event_id: u64,
    pub event_type: &'a str,
    pub payment_id: u64,
    pub merchant_id: &'a str,
    /// The amount this event moves.
    pub amount: i64,
    pub currency: &'a str,
    pub status: &'a str,
    pub occurred_at_ms: i64,
    pub extra: &'a [(&'a str, Extra<'a>)],
}

impl Event<'_> {
    pub fn payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"eventId\":");
        out.extend_from_slice(self.event_id.to_string().as_bytes());
        out.extend_from_slice(b",\"type\":");
        push_string(&mut out, self.event_type);
        out.extend_from_slice(b",\"paymentId\":");
        out.extend_from_slice(self.payment_id.to_string().as_bytes());
        out.extend_from_slice(b",\"merchantId\":");
        push_string(&mut out, self.merchant_id);
        out.extend_from_slice(b",\"amount\":");
        out.extend_from_slice(self.amount.to_string().as_bytes());
        out.extend_from_slice(b",\"currency\":");
        push_string(&mut out, self.currency);
        out.extend_from_slice(b",\"occurredAt\":\"");
        let mut at = String::with_capacity(24);
        push_rfc3339(&mut at, self.occurred_at_ms);
        out.extend_from_slice(at.as_bytes());
        out.extend_from_slice(b"\",\"status\":");
        push_string(&mut out, self.status);
        for (name, value) in self.extra {
            out.push(b',');
            push_string(&mut out, name);
            out.push(b':');
            match value {
                Extra::Text(text) => push_string(&mut out, text),
                Extra::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
            }
        }
        out.push(b'}');
        out
    }
}
