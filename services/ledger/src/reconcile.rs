//! `ledger --config FILE reconcile`: three-way reconciliation of payments, ledger and the
//! PG's own records, over every shard. Unlike the reference's "total debits = total
//! credits" (true by construction), each check compares two independent records and can
//! fail: a report line per finding, naming the payment and what to do, and exit status 1.
//!
//! It streams: per shard, payments in keyset chunks of `reconcile_chunk` ids; for each
//! chunk's id range the ledger's nets and the PG's records of the same range
//! (`GET /v1/records?fromPaymentId&toPaymentId`; ids carry their shard, so ranges
//! partition the PG's books too), and the balance of each event posted in that range.
//! Every read is a range on an index (`tests/it/monitoring.rs` checks with `EXPLAIN`);
//! memory is bounded by the chunk, not by the tables.
//!
//! What a payment's state says the other two must show:
//!
//! | status | PG hold | PG captured | ledger hold | ledger payable |
//! |---|---|---|---|---|
//! | AUTHORIZED, CAPTURE_REQUESTED, VOID_FAILED | yes | 0 | amount | 0 |
//! | VOID_REQUESTED (void in flight) | either | 0 | amount | 0 |
//! | CAPTURED, PARTIALLY_REFUNDED, REFUND_*, REFUNDED | no (released) | capturedAmount | 0 | captured − refunded |
//! | VOIDED, EXPIRED, CAPTURE_FAILED | no | 0 | 0 | 0 |
//! | DECLINED, FAILED | no approved authorization | 0 | 0 | 0 |
//!
//! A PG hold is an approved authorization that was neither captured nor voided.

use crate::Ledger;
use mysql_async::prelude::Queryable;
use mysql_async::Row;
use payrail_core::id::{ID_LIMIT, SHARD_SHIFT};
use payrail_pg::protocol::PgRecord;
use payrail_pg::PgTotals;
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
struct Payment {
    status: String,
    amount: i64,
    captured: i64,
    refunded: i64,
    pending: i64,
    /// What a capture asked for: while it settles, refunds accepted meanwhile are
    /// bounded by it (schema version 5).
    capture_requested: i64,
}

impl Payment {
    /// What refunds (done and pending) may add up to in this state.
    fn refund_ceiling(&self) -> i64 {
        if self.status == "CAPTURE_REQUESTED" {
            self.capture_requested
        } else {
            self.captured
        }
    }
}

/// What the PG's records say of one payment.
type Pg = PgTotals;

fn settled(status: &str) -> bool {
    matches!(
        status,
        "CAPTURED" | "REFUND_REQUESTED" | "PARTIALLY_REFUNDED" | "REFUNDED" | "REFUND_FAILED"
    )
}

/// States whose authorization is live: the ledger holds the amount.
fn held(status: &str) -> bool {
    matches!(
        status,
        "AUTHORIZED" | "CAPTURE_REQUESTED" | "VOID_REQUESTED" | "VOID_FAILED"
    )
}

fn never_authorized(status: &str) -> bool {
    matches!(status, "DECLINED" | "FAILED")
}

fn sums(records: &[PgRecord]) -> BTreeMap<u64, Pg> {
    let mut sums: BTreeMap<u64, Pg> = BTreeMap::new();
    for r in records {
        sums.entry(r.payment_id).or_default().add(r);
    }
    sums
}

/// The findings for one payment.
fn check(report: &mut Vec<String>, id: u64, p: &Payment, ledger: (i64, i64), pg: Option<Pg>) {
    let st = p.status.as_str();
    if p.captured > p.amount || p.refunded + p.pending > p.refund_ceiling() {
        report.push(format!("MISMATCH payment {id} ({st}): amounts out of bounds (amount {}, captured {}, refunded {}, pending {}) → a bug: stop writes to this payment and investigate", p.amount, p.captured, p.refunded, p.pending));
    }
    if !settled(st) && p.captured != 0 {
        report.push(format!(
            "MISMATCH payment {id} ({st}): reports capturedAmount {} but was never captured",
            p.captured
        ));
    }
    let (payable, hold) = ledger;
    let expected_payable = if settled(st) {
        p.captured - p.refunded
    } else {
        0
    };
    if payable != expected_payable {
        report.push(format!("MISMATCH payment {id} ({st}): ledger merchant_payable net {payable}, payment says {expected_payable} → check the payment's events reached the ledger (payment.dlq)"));
    }
    let expected_hold = if held(st) { p.amount } else { 0 };
    if hold != expected_hold {
        report.push(format!("MISMATCH payment {id} ({st}): ledger hold {hold}, expected {expected_hold} → check the payment's events reached the ledger (payment.dlq)"));
    }
    let Some(pg) = pg else { return };
    if never_authorized(st) {
        if pg.authorized > 0 {
            report.push(format!("MISMATCH payment {id} ({st}): the PG approved an authorization payrail reports as not made → void it at the PG (void-{id}) and investigate"));
        }
    } else if pg.authorized == 0 {
        report.push(format!("MISMATCH payment {id} ({st}): no approved authorization at the PG → investigate the PG's records for auth-{id}"));
    }
    if pg.hold() {
        let allowed = held(st);
        if !allowed {
            report.push(format!("MISMATCH payment {id} ({st}): the PG still holds the authorization of a payment that is not live → void it at the PG (replay void.dlq, or void-{id})"));
        }
    } else if matches!(st, "AUTHORIZED" | "CAPTURE_REQUESTED" | "VOID_FAILED") && pg.authorized > 0
    {
        report.push(format!("MISMATCH payment {id} ({st}): payrail counts a live authorization the PG no longer holds (captured {}, voided {}) → correct the payment from the PG's records", pg.captured, pg.voided));
    }
    let expected_capture = if settled(st) { p.captured } else { 0 };
    if pg.captured != expected_capture {
        report.push(format!("MISMATCH payment {id} ({st}): PG captured {}, payment says {expected_capture} → correct the payment (or the PG) from the other's record", pg.captured));
    }
    if pg.refunded != p.refunded {
        report.push(format!("MISMATCH payment {id} ({st}): PG refunded {}, payment says {} → check the refund jobs (refund.dlq)", pg.refunded, p.refunded));
    }
}

fn unknown_payment_records(
    report: &mut Vec<String>,
    pg: &BTreeMap<u64, Pg>,
    known: impl Fn(u64) -> bool,
) {
    for (id, s) in pg {
        // Declined requests for a payment that does not exist moved no money.
        let effect = s.authorized > 0 || s.captured != 0 || s.refunded != 0 || s.voided;
        if effect && !known(*id) {
            let what = if s.hold() {
                "holding an authorization"
            } else {
                "without a hold"
            };
            report.push(format!("MISMATCH the PG has records for payment {id} ({what}) that payrail has no payment for → the resolver should have recorded it: check ingest's resolver; void-{id} at the PG if it holds"));
        }
    }
}

struct Totals {
    payments: u64,
    with_ledger: u64,
    shards: u16,
}

/// Returns the report's lines and whether everything reconciled.
pub async fn reconcile(
    ledger: &Ledger,
    pg: Option<&payrail_pg::PgClient>,
) -> Result<(Vec<String>, bool), String> {
    let mut report = Vec::new();
    let chunk = ledger.config.reconcile_chunk.max(1);
    let sla_us = ledger.config.reconcile_unknown_sla_seconds * 1_000_000;
    let mut totals = Totals {
        payments: 0,
        with_ledger: 0,
        shards: 0,
    };
    for shard in ledger.shards.numbers() {
        let mut conn = ledger.shards.conn(shard).await.map_err(|e| e.to_string())?;
        let first = u64::from(shard) << SHARD_SHIFT;
        let last = ((u64::from(shard) + 1) << SHARD_SHIFT) - 1;
        let mut cursor = first;
        let mut any = false;
        loop {
            let rows: Vec<Row> = conn
                .exec(
                    "SELECT payment_id, status, amount, captured_amount, refunded_amount, refund_pending_amount, capture_requested_amount FROM payment \
                     WHERE payment_id >= ? AND payment_id <= ? ORDER BY payment_id LIMIT ?",
                    (cursor, last, chunk),
                )
                .await
                .map_err(|e| format!("shard {shard}: {e}"))?;
            let full = rows.len() as u64 == chunk;
            let mut payments: BTreeMap<u64, Payment> = BTreeMap::new();
            for mut row in rows {
                let id: u64 = row.take(0).unwrap_or_default();
                payments.insert(
                    id,
                    Payment {
                        status: row.take(1).unwrap_or_default(),
                        amount: row.take(2).unwrap_or_default(),
                        captured: row.take(3).unwrap_or_default(),
                        refunded: row.take(4).unwrap_or_default(),
                        pending: row.take(5).unwrap_or_default(),
                        capture_requested: row.take(6).unwrap_or_default(),
                    },
                );
            }
            // This chunk covers ids cursor..=end; the last chunk reaches the shard's end, so
            // ledger lines and PG records past the last payment are compared too.
            let end = match payments.keys().next_back() {
                Some(&id) if full => id,
                _ => last,
            };
            any |= !payments.is_empty();
            totals.payments += payments.len() as u64;
            let nets: Vec<(u64, i64, i64)> = conn
                .exec(
                    "SELECT payment_id, \
                       CAST(SUM(CASE WHEN account LIKE 'merchant_payable:%' THEN credit - debit ELSE 0 END) AS SIGNED), \
                       CAST(SUM(CASE WHEN account LIKE 'holds:%' THEN debit - credit ELSE 0 END) AS SIGNED) \
                     FROM ledger_entry WHERE payment_id >= ? AND payment_id <= ? GROUP BY payment_id",
                    (cursor, end),
                )
                .await
                .map_err(|e| format!("shard {shard}: {e}"))?;
            totals.with_ledger += nets.len() as u64;
            let nets: BTreeMap<u64, (i64, i64)> =
                nets.into_iter().map(|(id, a, b)| (id, (a, b))).collect();
            let pg_sums = match pg {
                Some(pg) => Some(sums(
                    &pg.records_between(cursor, end)
                        .await
                        .map_err(|e| format!("pg records: {e}"))?,
                )),
                None => None,
            };
            for (id, p) in &payments {
                let ledger_net = nets.get(id).copied().unwrap_or((0, 0));
                let pg_view = pg_sums
                    .as_ref()
                    .map(|s| s.get(id).copied().unwrap_or_default());
                check(&mut report, *id, p, ledger_net, pg_view);
            }
            for id in nets.keys() {
                if !payments.contains_key(id) {
                    report.push(format!("MISMATCH ledger entries for unknown payment {id} → investigate the events that posted them"));
                }
            }
            if let Some(pg_sums) = &pg_sums {
                unknown_payment_records(&mut report, pg_sums, |id| payments.contains_key(&id));
            }
            // An event posts for one payment, so the chunk's id range holds all its lines.
            let unbalanced: Vec<u64> = conn
                .exec(
                    "SELECT event_id FROM ledger_entry WHERE payment_id >= ? AND payment_id <= ? \
                     GROUP BY event_id HAVING SUM(debit) <> SUM(credit)",
                    (cursor, end),
                )
                .await
                .map_err(|e| format!("shard {shard}: {e}"))?;
            for event in unbalanced {
                report.push(format!(
                    "MISMATCH shard {shard} event {event}: ledger lines do not balance → a bug in the posting of this event"
                ));
            }
            if end >= last {
                break;
            }
            cursor = end + 1;
        }
        totals.shards += u16::from(any);
        let overdue: Vec<(u64, String)> = conn
            .query(format!(
                "SELECT payment_id, state FROM idempotency_record WHERE {unresolved} \
                 AND {since} < UTC_TIMESTAMP(3) - INTERVAL {sla_us} MICROSECOND LIMIT 1000",
                unresolved = payrail_db::UNRESOLVED,
                since = payrail_db::UNRESOLVED_SINCE,
            ))
            .await
            .map_err(|e| format!("shard {shard}: {e}"))?;
        for (id, state) in overdue {
            report.push(format!("MISMATCH payment {id}: its authorization's PG outcome is still unknown ({state}) past the resolution SLA → check ingest's resolver and the PG"));
        }
    }
    if let Some(pg) = pg {
        // Records of ids no configured shard owns.
        let count = u64::from(ledger.shards.count());
        for (from, to) in [
            (0, (1u64 << SHARD_SHIFT) - 1),
            ((count + 1) << SHARD_SHIFT, ID_LIMIT - 1),
        ] {
            if from > to {
                continue;
            }
            let records = pg
                .records_between(from, to)
                .await
                .map_err(|e| format!("pg records: {e}"))?;
            unknown_payment_records(&mut report, &sums(&records), |_| false);
        }
    }
    let ok = report.is_empty();
    report.push(format!(
        "{}: {} payments on {} shard(s), {} with ledger entries{}",
        if ok { "RECONCILED" } else { "NOT RECONCILED" },
        totals.payments,
        totals.shards,
        totals.with_ledger,
        if pg.is_some() {
            ", PG records compared"
        } else {
            ", PG not compared (no pg_base_url)"
        }
    ));
    Ok((report, ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(status: &str, amount: i64, captured: i64) -> Payment {
        Payment {
            status: status.into(),
            amount,
            captured,
            refunded: 0,
            pending: 0,
            capture_requested: 0,
        }
    }

    fn findings(p: &Payment, ledger: (i64, i64), pg: Pg) -> Vec<String> {
        let mut report = Vec::new();
        check(&mut report, 7, p, ledger, Some(pg));
        report
    }

    #[test]
    fn consistent_payments_reconcile() {
        let held = Pg {
            authorized: 100,
            ..Pg::default()
        };
        assert!(findings(&payment("AUTHORIZED", 100, 0), (0, 100), held).is_empty());
        let captured = Pg {
            authorized: 100,
            captured: 60,
            ..Pg::default()
        };
        assert!(findings(&payment("CAPTURED", 100, 60), (60, 0), captured).is_empty());
        let voided = Pg {
            authorized: 100,
            voided: true,
            ..Pg::default()
        };
        for st in ["VOIDED", "EXPIRED", "CAPTURE_FAILED"] {
            assert!(
                findings(&payment(st, 100, 0), (0, 0), voided).is_empty(),
                "{st}"
            );
        }
        assert!(findings(&payment("FAILED", 100, 0), (0, 0), Pg::default()).is_empty());
        // A refund accepted while the capture settles is bounded by the requested amount.
        let settling = Payment {
            pending: 60,
            capture_requested: 60,
            ..payment("CAPTURE_REQUESTED", 100, 0)
        };
        assert!(findings(&settling, (0, 100), held).is_empty());
    }

    #[test]
    fn each_mismatch_kind_is_found() {
        let held = Pg {
            authorized: 100,
            ..Pg::default()
        };
        // A voided, expired or failed payment still held at the PG.
        for st in ["VOIDED", "EXPIRED", "CAPTURE_FAILED"] {
            let f = findings(&payment(st, 100, 0), (0, 0), held);
            assert!(f.iter().any(|l| l.contains("still holds")), "{st}: {f:?}");
        }
        // Captured amounts that differ.
        let captured = Pg {
            authorized: 100,
            captured: 50,
            ..Pg::default()
        };
        assert!(!findings(&payment("CAPTURED", 100, 60), (60, 0), captured).is_empty());
        // A ledger hold that differs from the live authorization.
        assert!(!findings(&payment("AUTHORIZED", 100, 0), (0, 0), held).is_empty());
        // capturedAmount reported for a payment never captured.
        assert!(!findings(&payment("CAPTURE_REQUESTED", 100, 100), (0, 100), held).is_empty());
        // Refunds past what the settling capture asked for.
        let over = Payment {
            pending: 61,
            capture_requested: 60,
            ..payment("CAPTURE_REQUESTED", 100, 0)
        };
        assert!(findings(&over, (0, 100), held)
            .iter()
            .any(|l| l.contains("out of bounds")));
        // A PG hold without any payment.
        let mut report = Vec::new();
        let pg: BTreeMap<u64, Pg> = [(9, held)].into();
        unknown_payment_records(&mut report, &pg, |_| false);
        assert!(report[0].contains("payment 9"));
    }
}
