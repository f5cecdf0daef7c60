//! Wire types of the PG API.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Authorize,
    Capture,
    Refund,
    Void,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::Authorize,
        Operation::Capture,
        Operation::Refund,
        Operation::Void,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::Authorize => "authorize",
            Operation::Capture => "capture",
            Operation::Refund => "refund",
            Operation::Void => "void",
        }
    }

    pub const fn path(self) -> &'static str {
        match self {
            Operation::Authorize => "/v1/authorize",
            Operation::Capture => "/v1/capture",
            Operation::Refund => "/v1/refund",
            Operation::Void => "/v1/void",
        }
    }

    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.path() == path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PgRequest {
    /// Idempotency id of this operation at the PG (`auth-<paymentId>`, `refund-<refundId>`…).
    pub request_id: String,
    pub merchant_id: String,
    pub payment_id: u64,
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PgDecision {
    Approved,
    Declined,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PgReply {
    pub request_id: String,
    pub decision: PgDecision,
    pub transaction_id: String,
    pub approval_number: String,
    pub decline_reason: Option<String>,
    /// True when this answers a repeated `requestId`.
    pub replayed: bool,
}

/// One record of the PG's own books (what `GET /v1/records` lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PgRecord {
    pub operation: Operation,
    pub request_id: String,
    pub merchant_id: String,
    pub payment_id: u64,
    pub amount: i64,
    pub currency: String,
    pub decision: PgDecision,
    pub transaction_id: String,
    pub approval_number: String,
    pub decline_reason: Option<String>,
    pub at_ms: i64,
    /// Position in the PG's books (1, 2, …); absent in journals written before it existed.
    #[serde(default)]
    pub sequence: u64,
}

impl PgRecord {
    /// The answer this record gives: to the request that made it (`replayed: false`), to a
    /// repeat of its request id, or to a status inquiry.
    pub fn reply(&self, replayed: bool) -> PgReply {
        PgReply {
            request_id: self.request_id.clone(),
            decision: self.decision,
            transaction_id: self.transaction_id.clone(),
            approval_number: self.approval_number.clone(),
            decline_reason: self.decline_reason.clone(),
            replayed,
        }
    }
}

/// What one payment's approved PG records add up to: the PG's own view of it, which pg-mock
/// enforces and reconciliation compares with payrail's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PgTotals {
    /// The approved authorization's amount (0: none).
    pub authorized: i64,
    pub captured: i64,
    pub refunded: i64,
    pub voided: bool,
}

impl PgTotals {
    /// Adds one record of the payment; declined records change nothing.
    pub fn add(&mut self, record: &PgRecord) {
        if record.decision != PgDecision::Approved {
            return;
        }
        match record.operation {
            Operation::Authorize => self.authorized = record.amount,
            Operation::Capture => self.captured += record.amount,
            Operation::Refund => self.refunded += record.amount,
            Operation::Void => self.voided = true,
        }
    }

    /// The cardholder's funds are held: an approved authorization neither captured (a
    /// capture releases the rest) nor voided.
    pub fn hold(&self) -> bool {
        self.authorized > 0 && !self.voided && self.captured == 0
    }
}
