//! The transactional outbox: topics, event types and event payloads.
//!
//! Events are rows of `outbox_event`, written in the same transaction as the state change
//! they announce (see `group_commit` for authorizations and `payments` for captures,
//! refunds and voids). Every event carries a stable `eventId` (a global id, unique across
//! shards) and the `merchantId`, so consumers can de-duplicate and route without guessing.
//! The relay that publishes these rows to Kafka is part of the event pipeline.

use crate::render::PaymentView;
use payrail_core::time::push_rfc3339;
use payrail_http::error_body::push_json_string;

pub const TOPIC_AUTHORIZED: &str = "payment.authorized";
pub const TOPIC_CAPTURE_REQUESTED: &str = "payment.capture-requested";
pub const TOPIC_REFUND_REQUESTED: &str = "payment.refund-requested";
pub const TOPIC_VOIDED: &str = "payment.voided";

pub const TYPE_AUTHORIZED: &str = "PAYMENT_AUTHORIZED";
pub const TYPE_CAPTURE_REQUESTED: &str = "PAYMENT_CAPTURE_REQUESTED";
pub const TYPE_REFUND_REQUESTED: &str = "PAYMENT_REFUND_REQUESTED";
pub const TYPE_VOIDED: &str = "PAYMENT_VOIDED";

/// The event's JSON: `{ eventId, type, paymentId, merchantId, amount, currency,
/// occurredAt, status, …extra }`. `amount` is the amount this event moves (the captured
/// amount for a capture request, the refund's amount for a refund request).
pub fn payload(
    event_id: u64,
    event_type: &str,
    payment: &PaymentView,
    amount: i64,
    occurred_at_ms: i64,
    extra: &[(&str, Extra<'_>)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"eventId\":");
    out.extend_from_slice(itoa::Buffer::new().format(event_id).as_bytes());
    out.extend_from_slice(b",\"type\":");
    push_json_string(&mut out, event_type);
    out.extend_from_slice(b",\"paymentId\":");
    out.extend_from_slice(itoa::Buffer::new().format(payment.payment_id).as_bytes());
    out.extend_from_slice(b",\"merchantId\":");
    push_json_string(&mut out, &payment.merchant_id);
    out.extend_from_slice(b",\"amount\":");
    out.extend_from_slice(itoa::Buffer::new().format(amount).as_bytes());
    out.extend_from_slice(b",\"currency\":");
    push_json_string(&mut out, &payment.currency);
    out.extend_from_slice(b",\"occurredAt\":\"");
    let mut at = String::with_capacity(24);
    push_rfc3339(&mut at, occurred_at_ms);
    out.extend_from_slice(at.as_bytes());
    out.extend_from_slice(b"\",\"status\":");
    push_json_string(&mut out, payment.status.as_str());
    for (name, value) in extra {
        out.push(b',');
        push_json_string(&mut out, name);
        out.push(b':');
        match value {
            Extra::Text(text) => push_json_string(&mut out, text),
            Extra::Number(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        }
    }
    out.push(b'}');
    out
}

pub enum Extra<'a> {
    Text(&'a str),
    Number(i64),
}
