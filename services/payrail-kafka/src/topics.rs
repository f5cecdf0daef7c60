//! Topics (`shared/spec/system.md`). Key = paymentId, so one payment's events stay in one
//! partition, in order.

pub const AUTHORIZED: &str = "payment.authorized";
pub const CAPTURE_REQUESTED: &str = "payment.capture-requested";
pub const CAPTURED: &str = "payment.captured";
pub const REFUND_REQUESTED: &str = "payment.refund-requested";
pub const REFUNDED: &str = "payment.refunded";
pub const VOIDED: &str = "payment.voided";
pub const VOID_REQUESTED: &str = "payment.void-requested";
pub const CAPTURE_FAILED: &str = "payment.capture-failed";
pub const VOID_DLQ: &str = "void.dlq";
pub const PAYMENT_DLQ: &str = "payment.dlq";
pub const SETTLEMENT_DLQ: &str = "settlement.dlq";
pub const REFUND_DLQ: &str = "refund.dlq";

/// Every topic and its partition count.
pub const ALL: [(&str, i32); 12] = [
    (AUTHORIZED, 6),
    (CAPTURE_REQUESTED, 6),
    (CAPTURED, 6),
    (REFUND_REQUESTED, 6),
    (REFUNDED, 6),
    (VOIDED, 6),
    (VOID_REQUESTED, 6),
    (CAPTURE_FAILED, 6),
    (PAYMENT_DLQ, 3),
    (SETTLEMENT_DLQ, 3),
    (REFUND_DLQ, 3),
    (VOID_DLQ, 3),
];
