//! The events ingest announces: their topics, types and payloads.
//!
//! Each goes into the outbox (`payrail_outbox`) in the same transaction as the state
//! change it announces (see `group_commit` for authorizations and `payments` for captures,
//! refunds and voids); the relay publishes them to Kafka.

use crate::render::PaymentView;
pub use payrail_core::event::Extra;
use payrail_core::event::{self, Event};
pub use payrail_core::event::{VOID_REASON_ABANDONED, VOID_REASON_EXPIRED, VOID_REASON_MERCHANT};
use payrail_core::status::PaymentStatus;
pub use payrail_kafka::topics::{
    AUTHORIZED as TOPIC_AUTHORIZED, CAPTURE_REQUESTED as TOPIC_CAPTURE_REQUESTED,
    REFUND_REQUESTED as TOPIC_REFUND_REQUESTED, VOIDED as TOPIC_VOIDED,
    VOID_REQUESTED as TOPIC_VOID_REQUESTED,
};

pub const TYPE_AUTHORIZED: &str = event::AUTHORIZED;
pub const TYPE_CAPTURE_REQUESTED: &str = event::CAPTURE_REQUESTED;
pub const TYPE_REFUND_REQUESTED: &str = event::REFUND_REQUESTED;
pub const TYPE_VOIDED: &str = event::VOIDED;
pub const TYPE_VOID_REQUESTED: &str = event::VOID_REQUESTED;

/// The event's JSON for `payment`, announcing `status`. `amount` is the amount this event
/// moves (the captured amount for a capture request, the refund's for a refund).
pub fn payload(
    event_id: u64,
    event_type: &str,
    payment: &PaymentView,
    status: PaymentStatus,
    amount: i64,
    occurred_at_ms: i64,
    extra: &[(&str, Extra<'_>)],
) -> Vec<u8> {
    Event {
        event_id,
        event_type,
        payment_id: payment.payment_id,
        merchant_id: &payment.merchant_id,
        amount,
        currency: &payment.currency,
        status: status.as_str(),
        occurred_at_ms,
        extra,
    }
    .payload()
}
