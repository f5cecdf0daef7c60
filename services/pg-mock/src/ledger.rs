//! The PG's own records.
//!
//! One record per (operation, requestId): a repeated request id gets the first answer
//! back (`replayed: true`) and changes nothing, which is what lets payrail retry any PG
//! call safely. Capture and refund check amounts against the authorization, so the PG's
//! records are an independent third party for reconciliation.

use payrail_pg::{Operation, PgDecision, PgReply, PgRequest, PgTotals};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

pub use payrail_pg::protocol::PgRecord as Record;

/// Per-payment totals the PG enforces. One authorization takes one capture: the capture
/// settles its amount and releases the rest of the hold, as card networks do.
type Totals = PgTotals;

pub struct Ledger {
    /// Every record, in the order the PG made them (`sequence` = index + 1).
    records: Vec<Record>,
    /// (operation, requestId) → index: the idempotency of every operation.
    by_request: HashMap<(Operation, String), usize>,
    /// requestId → index, for the status inquiry (request ids carry their operation's
    /// prefix, so they are unique across operations).
    by_id: HashMap<String, usize>,
    /// paymentId → indexes, for reconciliation by payment-id range.
    by_payment: BTreeMap<u64, Vec<usize>>,
    totals: HashMap<u64, Totals>,
    journal: Option<File>,
}

impl Ledger {
    pub fn open(journal_path: Option<&Path>) -> std::io::Result<Self> {
        let mut ledger = Self {
            records: Vec::new(),
            by_request: HashMap::new(),
            by_id: HashMap::new(),
            by_payment: BTreeMap::new(),
            totals: HashMap::new(),
            journal: None,
        };
        if let Some(path) = journal_path {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if path.exists() {
                for line in BufReader::new(File::open(path)?).lines() {
                    let line = line?;
                    // A torn last line (crash mid-write) is skipped: that record's caller
                    // never got an answer and will retry with the same request id.
                    if let Ok(record) = serde_json::from_str::<Record>(&line) {
                        ledger.apply(record);
                    }
                }
            }
            ledger.journal = Some(OpenOptions::new().create(true).append(true).open(path)?);
        }
        Ok(ledger)
    }

    fn apply(&mut self, mut record: Record) {
        self.totals
            .entry(record.payment_id)
            .or_default()
            .add(&record);
        let index = self.records.len();
        record.sequence = index as u64 + 1;
        self.by_request
            .insert((record.operation, record.request_id.clone()), index);
        self.by_id.insert(record.request_id.clone(), index);
        self.by_payment
            .entry(record.payment_id)
            .or_default()
            .push(index);
        self.records.push(record);
    }

    /// Applies `request` once; a repeat returns the first answer.
    pub fn execute(
        &mut self,
        operation: Operation,
        request: &PgRequest,
        decline: bool,
        now_ms: i64,
    ) -> PgReply {
        if let Some(&index) = self
            .by_request
            .get(&(operation, request.request_id.clone()))
        {
            return self.records[index].reply(true);
        }
        let totals = self
            .totals
            .get(&request.payment_id)
            .copied()
            .unwrap_or_default();
        let refusal = match operation {
            Operation::Authorize if decline => Some("declined by issuer"),
            Operation::Authorize => None,
            Operation::Capture if totals.authorized == 0 => {
                Some("no authorization for this payment")
            }
            Operation::Capture if totals.voided => Some("authorization was voided"),
            Operation::Capture if totals.captured > 0 => Some("authorization already captured"),
            Operation::Capture if request.amount > totals.authorized => {
                Some("capture exceeds the authorized amount")
            }
            Operation::Refund if totals.refunded + request.amount > totals.captured => {
                Some("refund exceeds the captured amount")
            }
            Operation::Void if totals.authorized == 0 => Some("no authorization for this payment"),
            Operation::Void if totals.captured > 0 => Some("payment already captured"),
            _ => None,
        };
        let sequence = self.records.len() as u64 + 1;
        let record = Record {
            operation,
            request_id: request.request_id.clone(),
            merchant_id: request.merchant_id.clone(),
            payment_id: request.payment_id,
            amount: request.amount,
            currency: request.currency.clone(),
            decision: if refusal.is_some() {
                PgDecision::Declined
            } else {
                PgDecision::Approved
            },
            transaction_id: format!("txn_{sequence:010}"),
            approval_number: format!(
                "APP{:08X}",
                (request.payment_id ^ sequence.wrapping_mul(0x9E37_79B9)) as u32
            ),
            decline_reason: refusal.map(str::to_owned),
            at_ms: now_ms,
            sequence,
        };
        if let Some(journal) = self.journal.as_mut() {
            // Blocking append on a may worker: a few microseconds into the page cache, and
            // this is a test double, not the hot path of the system under test.
            if let Ok(mut line) = serde_json::to_vec(&record) {
                line.push(b'\n');
                if let Err(error) = journal.write_all(&line) {
                    tracing::error!(%error, "pg-mock journal write failed");
                }
            }
        }
        let answer = record.reply(false);
        self.apply(record);
        answer
    }

    /// Changes a record in memory (not in the journal): tests seed mismatches the
    /// reconciliation must find, then put the record back. False for an unknown id.
    pub fn tamper(
        &mut self,
        request_id: &str,
        amount: Option<i64>,
        decision: Option<PgDecision>,
    ) -> bool {
        let Some(&index) = self.by_id.get(request_id) else {
            return false;
        };
        let record = &mut self.records[index];
        if let Some(amount) = amount {
            record.amount = amount;
        }
        if let Some(decision) = decision {
            record.decision = decision;
        }
        let payment_id = record.payment_id;
        let mut totals = Totals::default();
        for &i in self.by_payment.get(&payment_id).into_iter().flatten() {
            totals.add(&self.records[i]);
        }
        self.totals.insert(payment_id, totals);
        true
    }

    /// The status inquiry: the record a request id made, if any.
    pub fn transaction(&self, request_id: &str) -> Option<&Record> {
        self.by_id.get(request_id).map(|&i| &self.records[i])
    }

    pub fn records(&self, operation: Option<Operation>, merchant_id: Option<&str>) -> Vec<&Record> {
        self.records
            .iter()
            .filter(|r| operation.is_none_or(|op| r.operation == op))
            .filter(|r| merchant_id.is_none_or(|m| r.merchant_id == m))
            .collect()
    }

    /// Records of payments with ids in `from..=to`, by payment id and then in PG order, at
    /// most `limit` payments' worth: reconciliation reads the PG in bounded chunks.
    pub fn records_between(&self, from: u64, to: u64, limit: usize) -> Vec<&Record> {
        self.by_payment
            .range(from..=to)
            .take(limit)
            .flat_map(|(_, indexes)| indexes.iter().map(|&i| &self.records[i]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, payment_id: u64, amount: i64) -> PgRequest {
        PgRequest {
            request_id: id.into(),
            merchant_id: "M-1".into(),
            payment_id,
            amount,
            currency: "KRW".into(),
        }
    }

    #[test]
    fn repeated_request_ids_replay_the_first_answer() {
        let mut ledger = Ledger::open(None).expect("memory ledger");
        let first = ledger.execute(Operation::Authorize, &request("auth-1", 1, 100), false, 0);
        let again = ledger.execute(Operation::Authorize, &request("auth-1", 1, 100), true, 0);
        assert_eq!(first.transaction_id, again.transaction_id);
        assert!(again.replayed && !first.replayed);
        assert_eq!(ledger.records(Some(Operation::Authorize), None).len(), 1);
        assert_eq!(
            ledger.transaction("auth-1").map(|r| r.sequence),
            Some(1),
            "the status inquiry finds the record"
        );
        assert!(ledger.transaction("auth-2").is_none());
        assert_eq!(ledger.records_between(0, 1, 10).len(), 1);
        assert_eq!(ledger.records_between(2, 9, 10).len(), 0);
    }

    #[test]
    fn captures_and_refunds_are_bounded() {
        let mut ledger = Ledger::open(None).expect("memory ledger");
        ledger.execute(Operation::Authorize, &request("a", 7, 100), false, 0);
        assert_eq!(
            ledger
                .execute(Operation::Capture, &request("c", 7, 101), false, 0)
                .decision,
            PgDecision::Declined
        );
        assert_eq!(
            ledger
                .execute(Operation::Capture, &request("c2", 7, 60), false, 0)
                .decision,
            PgDecision::Approved
        );
        assert_eq!(
            ledger
                .execute(Operation::Capture, &request("c3", 7, 10), false, 0)
                .decision,
            PgDecision::Declined,
            "one capture per authorization: the rest was released"
        );
        assert_eq!(
            ledger
                .execute(Operation::Refund, &request("r1", 7, 50), false, 0)
                .decision,
            PgDecision::Approved
        );
        assert_eq!(
            ledger
                .execute(Operation::Refund, &request("r2", 7, 11), false, 0)
                .decision,
            PgDecision::Declined
        );
    }

    #[test]
    fn journal_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("pg-mock-journal-{}", std::process::id()));
        let path = dir.join("journal.jsonl");
        let _ = std::fs::remove_file(&path);
        {
            let mut ledger = Ledger::open(Some(&path)).expect("open");
            ledger.execute(Operation::Authorize, &request("auth-9", 9, 10), false, 0);
        }
        let mut reopened = Ledger::open(Some(&path)).expect("reopen");
        assert!(
            reopened
                .execute(Operation::Authorize, &request("auth-9", 9, 10), false, 0)
                .replayed
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
