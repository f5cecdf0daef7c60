//! The payment object of the API, written straight into the response buffer.
//!
//! Hand-written rather than serde: the field order is part of the contract (the reference
//! clients and byte-identical replays depend on stable output) and this runs on every
//! answer. Strings that come from clients are escaped; the rest are ids, numbers and
//! validated codes.

use payrail_core::status::PaymentStatus;
use payrail_core::time::push_rfc3339;
use payrail_http::error_body::push_json_string;

#[derive(Debug, Clone)]
pub struct PaymentView {
    pub payment_id: u64,
    pub merchant_id: String,
    pub status: PaymentStatus,
    pub amount: i64,
    /// What the PG captured: 0 until the payment is CAPTURED.
    pub captured_amount: i64,
    /// What a capture asked for (0 before one was requested).
    pub capture_requested_amount: i64,
    pub refunded_amount: i64,
    pub currency: String,
    pub approval_number: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct RefundView {
    pub refund_id: u64,
    pub amount: i64,
    pub status: String,
    pub reason: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct HistoryView {
    pub status: String,
    pub at_ms: i64,
}

/// One ledger line of the payment, as `ledgerEntries` shows it.
#[derive(Debug, Clone)]
pub struct LedgerView {
    pub account: String,
    pub debit: i64,
    pub credit: i64,
    pub currency: String,
    pub at_ms: i64,
}

/// What goes around the core fields.
pub struct Extras<'a> {
    pub refunds: Option<&'a [RefundView]>,
    pub history: Option<&'a [HistoryView]>,
    /// The payment's ledger lines; none yet is `[]`.
    pub ledger: Option<&'a [LedgerView]>,
    pub message: &'a str,
}

fn push_number(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn push_time(out: &mut Vec<u8>, epoch_ms: i64) {
    let mut text = String::with_capacity(24);
    push_rfc3339(&mut text, epoch_ms);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

pub fn payment(out: &mut Vec<u8>, p: &PaymentView, extras: &Extras<'_>) {
    out.extend_from_slice(b"{\"paymentId\":");
    out.extend_from_slice(itoa::Buffer::new().format(p.payment_id).as_bytes());
    out.extend_from_slice(b",\"merchantId\":");
    push_json_string(out, &p.merchant_id);
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(p.status.as_str().as_bytes());
    out.extend_from_slice(b"\",\"amount\":");
    push_number(out, p.amount);
    out.extend_from_slice(b",\"capturedAmount\":");
    push_number(out, p.captured_amount);
    out.extend_from_slice(b",\"captureRequestedAmount\":");
    push_number(out, p.capture_requested_amount);
    out.extend_from_slice(b",\"refundedAmount\":");
    push_number(out, p.refunded_amount);
    out.extend_from_slice(b",\"currency\":");
    push_json_string(out, &p.currency);
    out.extend_from_slice(b",\"approvalNumber\":");
    match &p.approval_number {
        Some(a) => push_json_string(out, a),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"createdAt\":");
    push_time(out, p.created_at_ms);
    out.extend_from_slice(b",\"updatedAt\":");
    push_time(out, p.updated_at_ms);
    if let Some(refunds) = extras.refunds {
        out.extend_from_slice(b",\"refunds\":[");
        for (i, r) in refunds.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"refundId\":");
            out.extend_from_slice(itoa::Buffer::new().format(r.refund_id).as_bytes());
            out.extend_from_slice(b",\"amount\":");
            push_number(out, r.amount);
            out.extend_from_slice(b",\"status\":");
            push_json_string(out, &r.status);
            out.extend_from_slice(b",\"reason\":");
            push_json_string(out, &r.reason);
            out.extend_from_slice(b",\"createdAt\":");
            push_time(out, r.created_at_ms);
            out.push(b'}');
        }
        out.push(b']');
    }
    if let Some(history) = extras.history {
        out.extend_from_slice(b",\"history\":[");
        for (i, h) in history.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"status\":");
            push_json_string(out, &h.status);
            out.extend_from_slice(b",\"at\":");
            push_time(out, h.at_ms);
            out.push(b'}');
        }
        out.push(b']');
    }
    out.extend_from_slice(b",\"ledgerEntries\":[");
    for (i, l) in extras.ledger.unwrap_or(&[]).iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"account\":");
        push_json_string(out, &l.account);
        out.extend_from_slice(b",\"debit\":");
        push_number(out, l.debit);
        out.extend_from_slice(b",\"credit\":");
        push_number(out, l.credit);
        out.extend_from_slice(b",\"currency\":");
        push_json_string(out, &l.currency);
        out.extend_from_slice(b",\"at\":");
        push_time(out, l.at_ms);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"message\":");
    push_json_string(out, extras.message);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_order_matches_the_contract() {
        let view = PaymentView {
            payment_id: 4_398_046_511_104,
            merchant_id: "MERCHANT-123".into(),
            status: PaymentStatus::Authorized,
            amount: 50000,
            captured_amount: 0,
            capture_requested_amount: 0,
            refunded_amount: 0,
            currency: "KRW".into(),
            approval_number: Some("APP1A2B3C4D".into()),
            created_at_ms: 1_795_500_000_000,
            updated_at_ms: 1_795_500_000_000,
        };
        let mut out = Vec::new();
        payment(
            &mut out,
            &view,
            &Extras {
                refunds: None,
                history: None,
                ledger: None,
                message: "authorized",
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            r#"{"paymentId":4398046511104,"merchantId":"MERCHANT-123","status":"AUTHORIZED","amount":50000,"capturedAmount":0,"captureRequestedAmount":0,"refundedAmount":0,"currency":"KRW","approvalNumber":"APP1A2B3C4D","createdAt":"2026-11-24T06:00:00.000Z","updatedAt":"2026-11-24T06:00:00.000Z","ledgerEntries":[],"message":"authorized"}"#
        );
    }
}
