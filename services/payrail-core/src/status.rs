//! Payment and refund states (`shared/spec/api.md`, "Payment states").

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    Authorized,
    Declined,
    CaptureRequested,
    Captured,
    CaptureFailed,
    RefundRequested,
    PartiallyRefunded,
    Refunded,
    RefundFailed,
    /// A void (the merchant's, or an expiry's) waits for the PG.
    VoidRequested,
    Voided,
    /// Voided at the PG because it stayed AUTHORIZED longer than `authorization_ttl`.
    Expired,
    /// The PG refused the void: the hold stands (reconciliation reports it).
    VoidFailed,
    /// The authorization never reached the PG (its outcome was resolved as "not applied").
    Failed,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 14] = [
        Self::Authorized,
        Self::Declined,
        Self::CaptureRequested,
        Self::Captured,
        Self::CaptureFailed,
        Self::RefundRequested,
        Self::PartiallyRefunded,
        Self::Refunded,
        Self::RefundFailed,
        Self::VoidRequested,
        Self::Voided,
        Self::Expired,
        Self::VoidFailed,
        Self::Failed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "AUTHORIZED",
            Self::Declined => "DECLINED",
            Self::CaptureRequested => "CAPTURE_REQUESTED",
            Self::Captured => "CAPTURED",
            Self::CaptureFailed => "CAPTURE_FAILED",
            Self::RefundRequested => "REFUND_REQUESTED",
            Self::PartiallyRefunded => "PARTIALLY_REFUNDED",
            Self::Refunded => "REFUNDED",
            Self::RefundFailed => "REFUND_FAILED",
            Self::VoidRequested => "VOID_REQUESTED",
            Self::Voided => "VOIDED",
            Self::Expired => "EXPIRED",
            Self::VoidFailed => "VOID_FAILED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(PaymentStatus::parse("captured"), None);
    }
}
