//! `ledger --config FILE reconcile`: three-way reconciliation of payments, ledger and the
//! PG's own records, over every shard. Unlike the reference's "total debits = total
//! credits" (true by construction), each check compares two independent records and can
//! fail: a report line per mismatch, exit status 1.

use crate::Ledger;
use mysql_async::prelude::Queryable;
use mysql_async::Row;
use payrail_pg::{Operation, PgDecision};
use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
struct Payment {
    shard: u16,
    status: String,
    amount: i64,
    captured: i64,
    refunded: i64,
    pending: i64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    authorized: bool,
    captured: i64,
    refunded: i64,
}

fn settled(status: &str) -> bool {
    matches!(
        status,
        "CAPTURED" | "REFUND_REQUESTED" | "PARTIALLY_REFUNDED" | "REFUNDED" | "REFUND_FAILED"
    )
}

fn held(status: &str) -> bool {
    matches!(
        status,
        "AUTHORIZED" | "CAPTURE_REQUESTED" | "CAPTURE_FAILED"
    )
}

/// Returns the report's lines and whether everything reconciled.
pub async fn reconcile(
    ledger: &Ledger,
    pg: Option<&payrail_pg::PgClient>,
) -> Result<(Vec<String>, bool), String> {
    let mut report = Vec::new();
    let mut payments: HashMap<u64, Payment> = HashMap::new();
    let mut ledger_nets: HashMap<u64, (i64, i64)> = HashMap::new();
    for shard in ledger.shards.numbers() {
        let mut conn = ledger.shards.conn(shard).await.map_err(|e| e.to_string())?;
        let rows: Vec<Row> = conn
            .query("SELECT payment_id, status, amount, captured_amount, refunded_amount, refund_pending_amount FROM payment")
            .await
            .map_err(|e| format!("shard {shard}: {e}"))?;
        for mut row in rows {
            let id: u64 = row.take(0).unwrap_or_default();
            payments.insert(
                id,
                Payment {
                    shard,
                    status: row.take(1).unwrap_or_default(),
                    amount: row.take(2).unwrap_or_default(),
                    captured: row.take(3).unwrap_or_default(),
                    refunded: row.take(4).unwrap_or_default(),
                    pending: row.take(5).unwrap_or_default(),
                },
            );
        }
        let nets: Vec<(u64, i64, i64)> = conn
            .query(
                "SELECT payment_id, \
                   CAST(SUM(CASE WHEN account LIKE 'merchant_payable:%' THEN credit - debit ELSE 0 END) AS SIGNED), \
                   CAST(SUM(CASE WHEN account LIKE 'holds:%' THEN debit - credit ELSE 0 END) AS SIGNED) \
                 FROM ledger_entry GROUP BY payment_id",
            )
            .await
            .map_err(|e| format!("shard {shard}: {e}"))?;
        for (id, payable, hold) in nets {
            ledger_nets.insert(id, (payable, hold));
        }
        let unbalanced: Vec<u64> = conn
            .query("SELECT event_id FROM ledger_entry GROUP BY event_id HAVING SUM(debit) <> SUM(credit)")
            .await
            .map_err(|e| format!("shard {shard}: {e}"))?;
        for event in unbalanced {
            report.push(format!(
                "MISMATCH shard {shard} event {event}: ledger lines do not balance"
            ));
        }
    }
    for (id, p) in &payments {
        if p.captured > p.amount || p.refunded + p.pending > p.captured {
            report.push(format!("MISMATCH payment {id}: amounts out of bounds (amount {}, captured {}, refunded {}, pending {})", p.amount, p.captured, p.refunded, p.pending));
        }
        let (payable, hold) = ledger_nets.get(id).copied().unwrap_or((0, 0));
        let expected_payable = if settled(&p.status) {
            p.captured - p.refunded
        } else {
            0
        };
        if payable != expected_payable {
            report.push(format!("MISMATCH payment {id} ({}): ledger merchant_payable net {payable}, payment says {expected_payable}", p.status));
        }
        let expected_hold = if held(&p.status) { p.amount } else { 0 };
        if hold != expected_hold {
            report.push(format!(
                "MISMATCH payment {id} ({}): ledger hold {hold}, expected {expected_hold}",
                p.status
            ));
        }
    }
    for id in ledger_nets.keys() {
        if !payments.contains_key(id) {
            report.push(format!("MISMATCH ledger entries for unknown payment {id}"));
        }
    }
    if let Some(pg) = pg {
        let records = pg.records().await.map_err(|e| format!("pg records: {e}"))?;
        let mut sums: HashMap<u64, Sums> = HashMap::new();
        for r in records
            .iter()
            .filter(|r| r.decision == PgDecision::Approved)
        {
            let s = sums.entry(r.payment_id).or_default();
            match r.operation {
                Operation::Authorize => s.authorized = true,
                Operation::Capture => s.captured += r.amount,
                Operation::Refund => s.refunded += r.amount,
                Operation::Void => {}
            }
        }
        for (id, p) in &payments {
            let s = sums.get(id).copied().unwrap_or_default();
            if p.status != "DECLINED" && !s.authorized {
                report.push(format!(
                    "MISMATCH payment {id}: no approved authorization at the PG"
                ));
            }
            let expected_capture = if settled(&p.status) { p.captured } else { 0 };
            if s.captured != expected_capture {
                report.push(format!(
                    "MISMATCH payment {id} ({}): PG captured {}, payment says {expected_capture}",
                    p.status, s.captured
                ));
            }
            if s.refunded != p.refunded {
                report.push(format!(
                    "MISMATCH payment {id}: PG refunded {}, payment says {}",
                    s.refunded, p.refunded
                ));
            }
        }
        for id in sums.keys() {
            if !payments.contains_key(id) {
                report.push(format!(
                    "MISMATCH the PG has records for unknown payment {id}"
                ));
            }
        }
    }
    let ok = report.is_empty();
    let shards = payments
        .values()
        .map(|p| p.shard)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    report.push(format!(
        "{}: {} payments on {} shard(s), {} with ledger entries{}",
        if ok { "RECONCILED" } else { "NOT RECONCILED" },
        payments.len(),
        shards,
        ledger_nets.len(),
        if pg.is_some() {
            ", PG records compared"
        } else {
            ", PG not compared (no pg_base_url)"
        }
    ));
    Ok((report, ok))
}
