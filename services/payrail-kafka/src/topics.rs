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

/// Every topic and the partition count ingest creates it with when it is missing (the
/// local stack's broker and the tests; vm1.nix creates production's on Apache Kafka with
/// 6 and 3).
///
/// One partition each: nisshi reads every partition of a Fetch from storage again on
/// each of its wait rounds, so its cost grows with the partitions a consumer holds, and
/// with one consumer instance per service more partitions buy no parallelism. Measured on
/// the local stack (AMD EPYC, 2 cores, fresh broker, k6 authorize 500/s for 20 s, server
/// CPU from `/proc`): 6 partitions 3.40 ms per authorization (broker 0.76), p99 653 ms,
/// idle broker 23 % of a core; 1 partition 2.70 ms (broker 0.31), p99 43 ms, idle 8 %.
pub const ALL: [(&str, i32); 12] = [
    (AUTHORIZED, 1),
    (CAPTURE_REQUESTED, 1),
    (CAPTURED, 1),
    (REFUND_REQUESTED, 1),
    (REFUNDED, 1),
    (VOIDED, 1),
    (VOID_REQUESTED, 1),
    (CAPTURE_FAILED, 1),
    (PAYMENT_DLQ, 1),
    (SETTLEMENT_DLQ, 1),
    (REFUND_DLQ, 1),
    (VOID_DLQ, 1),
];
