//! The chart of accounts and the entries each event writes.
//!
//! Accounts, per merchant `m` and currency `c` (a TigerBeetle-style two-phase model):
//! - `holds:m:c` / `holds_offset:m:c`: an authorization is a pending hold (debit holds,
//!   credit offset); capture (of any part), void, expiry and a capture that failed for good
//!   release all of it (the reverse): the PG releases the remainder of a partial capture.
//! - `merchant_payable:m:c`: what the merchant is owed (credit on capture, debit on refund).
//! - `pg_receivable:c`: what the PG owes us (debit on capture, credit on refund).
//!
//! Every event's lines balance (debits = credits). For a payment, `merchant_payable`'s
//! credits minus debits equal capturedAmount − refundedAmount, and the holds net to zero
//! once it is captured or voided: that is what reconciliation checks.

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub account: String,
    pub debit: i64,
    pub credit: i64,
}

/// What an event means for the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub event_id: u64,
    pub event_type: String,
    pub payment_id: u64,
    pub merchant_id: String,
    pub currency: String,
    pub lines: Vec<Line>,
}

fn transfer(lines: &mut Vec<Line>, debit: String, credit: String, amount: i64) {
    lines.push(Line {
        account: debit,
        debit: amount,
        credit: 0,
    });
    lines.push(Line {
        account: credit,
        debit: 0,
        credit: amount,
    });
}

/// The posting for an event, or why it cannot be one (a poison message).
pub fn posting(event: &serde_json::Value) -> Result<Posting, String> {
    let field = |name: &str| event.get(name).ok_or_else(|| format!("missing {name}"));
    let event_id = field("eventId")?.as_u64().ok_or("eventId is not an id")?;
    let payment_id = field("paymentId")?
        .as_u64()
        .ok_or("paymentId is not an id")?;
    let merchant = field("merchantId")?
        .as_str()
        .ok_or("merchantId is not a string")?
        .to_owned();
    payrail_core::validate::merchant_id(&merchant).map_err(|p| format!("merchantId {p}"))?;
    let currency = field("currency")?
        .as_str()
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        .ok_or("currency is not a code")?
        .to_owned();
    let amount = field("amount")?
        .as_i64()
        .filter(|a| *a > 0)
        .ok_or("amount is not a positive integer")?;
    let event_type = field("type")?
        .as_str()
        .ok_or("type is not a string")?
        .to_owned();
    let holds = format!("holds:{merchant}:{currency}");
    let offset = format!("holds_offset:{merchant}:{currency}");
    let payable = format!("merchant_payable:{merchant}:{currency}");
    let receivable = format!("pg_receivable:{currency}");
    let mut lines = Vec::with_capacity(4);
    match event_type.as_str() {
        payrail_core::event::AUTHORIZED => transfer(&mut lines, holds, offset, amount),
        payrail_core::event::CAPTURED => {
            let authorized = event
                .get("authorizedAmount")
                .and_then(|a| a.as_i64())
                .filter(|a| *a >= amount)
                .ok_or("authorizedAmount missing or below amount")?;
            transfer(&mut lines, offset, holds, authorized);
            transfer(&mut lines, receivable, payable, amount);
        }
        // An expiry is a void too (its event says `status: EXPIRED`).
        payrail_core::event::VOIDED => transfer(&mut lines, offset, holds, amount),
        payrail_core::event::CAPTURE_FAILED => {
            let authorized = event
                .get("authorizedAmount")
                .and_then(|a| a.as_i64())
                .filter(|a| *a > 0)
                .ok_or("authorizedAmount missing")?;
            transfer(&mut lines, offset, holds, authorized);
        }
        payrail_core::event::REFUNDED => transfer(&mut lines, payable, receivable, amount),
        other => return Err(format!("event type {other} has no ledger meaning")),
    }
    assert_eq!(
        lines.iter().map(|l| l.debit).sum::<i64>(),
        lines.iter().map(|l| l.credit).sum::<i64>(),
        "unbalanced posting"
    );
    Ok(Posting {
        event_id,
        event_type,
        payment_id,
        merchant_id: merchant,
        currency,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(t: &str, amount: i64) -> serde_json::Value {
        json!({"eventId": 1, "type": t, "paymentId": 5, "merchantId": "M-1", "currency": "KRW", "amount": amount, "authorizedAmount": 100})
    }

    fn net(postings: &[Posting], account: &str) -> i64 {
        postings
            .iter()
            .flat_map(|p| &p.lines)
            .filter(|l| l.account == account)
            .map(|l| l.credit - l.debit)
            .sum()
    }

    #[test]
    fn a_payment_nets_to_captured_minus_refunded_and_releases_its_hold() {
        let postings: Vec<Posting> = [
            event("PAYMENT_AUTHORIZED", 100),
            event("PAYMENT_CAPTURED", 80),
            event("PAYMENT_REFUNDED", 30),
        ]
        .iter()
        .map(|e| posting(e).expect("valid"))
        .collect();
        assert_eq!(net(&postings, "merchant_payable:M-1:KRW"), 50);
        assert_eq!(net(&postings, "holds:M-1:KRW"), 0);
        assert_eq!(net(&postings, "pg_receivable:KRW"), -50);
        for p in &postings {
            assert_eq!(
                p.lines.iter().map(|l| l.debit).sum::<i64>(),
                p.lines.iter().map(|l| l.credit).sum::<i64>()
            );
        }
    }

    #[test]
    fn a_void_releases_the_hold() {
        let postings: Vec<Posting> = [
            event("PAYMENT_AUTHORIZED", 100),
            event("PAYMENT_VOIDED", 100),
        ]
        .iter()
        .map(|e| posting(e).expect("valid"))
        .collect();
        assert_eq!(net(&postings, "holds:M-1:KRW"), 0);
        assert_eq!(net(&postings, "merchant_payable:M-1:KRW"), 0);
    }

    #[test]
    fn a_capture_that_failed_for_good_releases_the_whole_hold() {
        let postings: Vec<Posting> = [
            event("PAYMENT_AUTHORIZED", 100),
            event("PAYMENT_CAPTURE_FAILED", 60),
        ]
        .iter()
        .map(|e| posting(e).expect("valid"))
        .collect();
        assert_eq!(net(&postings, "holds:M-1:KRW"), 0);
        assert_eq!(net(&postings, "merchant_payable:M-1:KRW"), 0);
    }

    #[test]
    fn poison_is_refused_with_a_reason() {
        assert!(posting(&json!({"eventId": 1})).is_err());
        assert!(posting(&event("PAYMENT_SOMETHING", 1)).is_err());
        assert!(
            posting(&event("PAYMENT_CAPTURED", 200)).is_err(),
            "capture above authorization"
        );
        assert!(posting(&json!({"eventId": 1, "type": "PAYMENT_REFUNDED", "paymentId": 5, "merchantId": "M 1", "currency": "KRW", "amount": 1})).is_err());
    }
}
