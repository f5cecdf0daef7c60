//! settlement-worker: captures at the PG what `payment.capture-requested` asks for, and
//! voids at the PG what `payment.void-requested` asks for (a merchant's void, an expired
//! authorization, the release of a capture that failed for good). The machinery (intake,
//! scheduler, retries, status inquiry, DLQ) is `payrail-worker`; this file says what a
//! capture and a void change.
//!
//! A capture settles the requested amount and the PG releases the rest of the hold (one
//! capture per authorization). A capture that fails for good ends `CAPTURE_FAILED`, tells
//! the ledger (`payment.capture-failed`: the hold is released) and asks for the void that
//! releases the authorization at the PG, so no hold outlives a payment that is not live.
//!
//! Refunds accepted while the capture settled (`AWAITING_CAPTURE`) follow the capture: the
//! transaction that records it hands them to the refund worker (`REQUESTED` and their
//! `payment.refund-requested`); the one that records a capture failed for good cancels
//! them (`CANCELLED`, their reservation released).

use mimalloc::MiMalloc;
use mysql_async::prelude::Queryable;
use payrail_core::event::{self, Event, Extra};
use payrail_db::DbError;
use payrail_pg::{Operation, PgReply};
use payrail_worker::job::{Intake, Job, JobKind, Tx};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

struct Settlement;

/// The payment's authorized amount, which the ledger's hold release needs (the job's own
/// amount is what was asked to be captured), and what refunds accepted while the capture
/// settled have reserved (`refund_pending_amount`; 0 when none waits).
async fn authorized_and_pending(
    tx: &mut Tx<'_>,
    shard: u16,
    job: &Job,
) -> Result<(i64, i64), DbError> {
    let row: Option<(i64, i64)> = tx
        .exec_first(
            "SELECT amount, refund_pending_amount FROM payment WHERE payment_id = ?",
            (job.payment_id,),
        )
        .await
        .map_err(|e| DbError::classify(shard, e))?;
    Ok(row.unwrap_or((job.amount, 0)))
}

/// A refund accepted while its capture settled.
struct WaitingRefund {
    refund_id: u64,
    amount: i64,
    reason: String,
    /// The id of its `payment.refund-requested`, drawn by ingest when it accepted the
    /// refund, so nothing is drawn inside the caller's transaction.
    event_id: u64,
}

/// Moves the payment's waiting refunds (`AWAITING_CAPTURE`) to `status` and returns them.
/// The update goes by primary key: a range update on the refund table's payment index
/// would also lock the gap after this payment's refunds, where other payments' refunds are
/// being inserted. The set cannot change under us: the caller's UPDATE holds the payment
/// row, which ingest's refund path locks first too.
async fn move_waiting_refunds(
    tx: &mut Tx<'_>,
    shard: u16,
    payment_id: u64,
    status: &str,
    now_ms: i64,
) -> Result<Vec<WaitingRefund>, DbError> {
    let classify = |e| DbError::classify(shard, e);
    let rows: Vec<(u64, i64, String, u64)> = tx
        .exec(
            "SELECT refund_id, amount, reason, request_event_id FROM refund WHERE payment_id = ? AND status = 'AWAITING_CAPTURE' ORDER BY refund_id",
            (payment_id,),
        )
        .await
        .map_err(classify)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // In lists of one length (`payrail_db::padded_id_lists`).
    let ids: Vec<u64> = rows.iter().map(|r| r.0).collect();
    let update = format!(
        "UPDATE refund SET status = ?, updated_at = ? WHERE refund_id IN ({}) AND status = 'AWAITING_CAPTURE'",
        payrail_db::ID_LIST
    );
    for list in payrail_db::padded_id_lists(&ids) {
        let mut params = vec![
            mysql_async::Value::from(status),
            payrail_db::datetime(now_ms),
        ];
        params.extend(list);
        tx.exec_drop(update.as_str(), params)
            .await
            .map_err(classify)?;
    }
    Ok(rows
        .into_iter()
        .map(|(refund_id, amount, reason, event_id)| WaitingRefund {
            refund_id,
            amount,
            reason,
            event_id,
        })
        .collect())
}

/// Hands the refunds that waited for this capture to the refund worker: each becomes
/// `REQUESTED` and its `payment.refund-requested` is written here, in the transaction that
/// records the capture, so none is sent to the PG before the capture it refunds.
async fn release_waiting_refunds(
    tx: &mut Tx<'_>,
    shard: u16,
    job: &Job,
    now_ms: i64,
) -> Result<(), DbError> {
    let waiting = move_waiting_refunds(tx, shard, job.payment_id, "REQUESTED", now_ms).await?;
    if waiting.is_empty() {
        return Ok(());
    }
    payrail_db::history::append(tx, shard, job.payment_id, "REFUND_REQUESTED", now_ms).await?;
    for refund in &waiting {
        let extra = [
            ("refundId", Extra::Number(refund.refund_id as i64)),
            ("reason", Extra::Text(&refund.reason)),
        ];
        let requested = Event {
            event_id: refund.event_id,
            event_type: event::REFUND_REQUESTED,
            payment_id: job.payment_id,
            merchant_id: &job.merchant_id,
            amount: refund.amount,
            currency: &job.currency,
            status: "REFUND_REQUESTED",
            occurred_at_ms: now_ms,
            extra: &extra,
        };
        payrail_outbox::insert(
            tx,
            shard,
            payrail_kafka::topics::REFUND_REQUESTED,
            &requested,
        )
        .await?;
    }
    Ok(())
}

/// A job per payment (captures and voids: one of each at most), keyed by the payment id.
fn payment_job(e: &serde_json::Value) -> Option<Intake> {
    let payment_id = e["paymentId"].as_u64()?;
    Some(Intake {
        job_id: payment_id,
        payment_id,
        merchant_id: e["merchantId"].as_str()?.to_owned(),
        amount: e["amount"].as_i64().filter(|a| *a > 0)?,
        currency: e["currency"].as_str()?.to_owned(),
        event_id: e["eventId"].as_u64()?,
    })
}

impl JobKind for Settlement {
    const SERVICE: &'static str = "settlement-worker";
    const TABLE: &'static str = "settlement_request";
    const SOURCE_TOPIC: &'static str = payrail_kafka::topics::CAPTURE_REQUESTED;
    const DLQ_TOPIC: &'static str = payrail_kafka::topics::SETTLEMENT_DLQ;
    const GROUP_ID: &'static str = "settlement-worker";
    const OPERATION: Operation = Operation::Capture;

    fn intake(e: &serde_json::Value) -> Option<Intake> {
        payment_job(e)
    }

    fn request_id(job: &Job) -> String {
        format!("capture-{}", job.payment_id)
    }

    async fn succeed(
        tx: &mut Tx<'_>,
        shard: u16,
        job: &Job,
        reply: &PgReply,
        event_id: u64,
        now_ms: i64,
    ) -> Result<(), DbError> {
        let classify = |e| DbError::classify(shard, e);
        // Refunds accepted while the capture settled (their amount is reserved in
        // refund_pending_amount) make the payment REFUND_REQUESTED at once.
        tx.exec_drop(
            "UPDATE payment SET status = IF(refund_pending_amount > 0, 'REFUND_REQUESTED', 'CAPTURED'), captured_amount = ?, updated_at = ? \
             WHERE payment_id = ? AND status = 'CAPTURE_REQUESTED'",
            (job.amount, payrail_db::datetime(now_ms), job.payment_id),
        )
        .await
        .map_err(classify)?;
        if tx.affected_rows() != 1 {
            // Voided or changed meanwhile: the PG capture stands in the PG's records and
            // reconciliation reports it; nothing to announce here.
            return Ok(());
        }
        let (authorized, refunds_pending) = authorized_and_pending(tx, shard, job).await?;
        payrail_db::history::append(tx, shard, job.payment_id, "CAPTURED", now_ms).await?;
        let extra = [
            ("authorizedAmount", Extra::Number(authorized)),
            ("transactionId", Extra::Text(&reply.transaction_id)),
        ];
        let captured = Event {
            event_id,
            event_type: event::CAPTURED,
            payment_id: job.payment_id,
            merchant_id: &job.merchant_id,
            amount: job.amount,
            currency: &job.currency,
            status: "CAPTURED",
            occurred_at_ms: now_ms,
            extra: &extra,
        };
        payrail_outbox::insert(tx, shard, payrail_kafka::topics::CAPTURED, &captured).await?;
        if refunds_pending == 0 {
            // No refund waits (the common case): no need to look.
            return Ok(());
        }
        release_waiting_refunds(tx, shard, job, now_ms).await
    }

    async fn fail(
        tx: &mut Tx<'_>,
        shard: u16,
        job: &Job,
        reason: &str,
        event_ids: [u64; 2],
        now_ms: i64,
    ) -> Result<(), DbError> {
        let classify = |e| DbError::classify(shard, e);
        // Refunds that waited for this capture are cancelled and their reservation released.
        tx.exec_drop(
            "UPDATE payment SET status = 'CAPTURE_FAILED', refund_pending_amount = 0, updated_at = ? WHERE payment_id = ? AND status = 'CAPTURE_REQUESTED'",
            (payrail_db::datetime(now_ms), job.payment_id),
        )
        .await
        .map_err(classify)?;
        if tx.affected_rows() != 1 {
            return Ok(());
        }
        move_waiting_refunds(tx, shard, job.payment_id, "CANCELLED", now_ms).await?;
        let (authorized, _) = authorized_and_pending(tx, shard, job).await?;
        payrail_db::history::append(tx, shard, job.payment_id, "CAPTURE_FAILED", now_ms).await?;
        let failed_extra = [
            ("authorizedAmount", Extra::Number(authorized)),
            ("reason", Extra::Text(reason)),
        ];
        let failed = Event {
            event_id: event_ids[0],
            event_type: event::CAPTURE_FAILED,
            payment_id: job.payment_id,
            merchant_id: &job.merchant_id,
            amount: job.amount,
            currency: &job.currency,
            status: "CAPTURE_FAILED",
            occurred_at_ms: now_ms,
            extra: &failed_extra,
        };
        payrail_outbox::insert(tx, shard, payrail_kafka::topics::CAPTURE_FAILED, &failed).await?;
        // Release the authorization at the PG: the void worker's job, like any void.
        let void_extra = [("reason", Extra::Text(event::VOID_REASON_CAPTURE_FAILED))];
        let void = Event {
            event_id: event_ids[1],
            event_type: event::VOID_REQUESTED,
            payment_id: job.payment_id,
            merchant_id: &job.merchant_id,
            amount: authorized,
            currency: &job.currency,
            status: "CAPTURE_FAILED",
            occurred_at_ms: now_ms,
            extra: &void_extra,
        };
        payrail_outbox::insert(tx, shard, payrail_kafka::topics::VOID_REQUESTED, &void).await
    }

    /// A failed capture has released its authorization (its void was asked for in the same
    /// transaction), so a replayed capture cannot run: the PG would refuse it. The merchant
    /// authorizes again instead.
    async fn rearm(_tx: &mut Tx<'_>, _shard: u16, _job_id: u64) -> Result<bool, DbError> {
        Ok(false)
    }
}

/// Voids at the PG (request id `void-<paymentId>`, one per payment). What the payment
/// becomes depends on why the void was asked for (the event's `reason`).
struct Void;

fn void_reason(job: &Job) -> String {
    serde_json::from_slice::<serde_json::Value>(&job.source_payload)
        .ok()
        .and_then(|e| e["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| event::VOID_REASON_MERCHANT.to_owned())
}

impl JobKind for Void {
    const SERVICE: &'static str = "void-worker";
    const TABLE: &'static str = "void_request";
    const SOURCE_TOPIC: &'static str = payrail_kafka::topics::VOID_REQUESTED;
    const DLQ_TOPIC: &'static str = payrail_kafka::topics::VOID_DLQ;
    const GROUP_ID: &'static str = "void-worker";
    const OPERATION: Operation = Operation::Void;

    fn intake(e: &serde_json::Value) -> Option<Intake> {
        payment_job(e)
    }

    fn request_id(job: &Job) -> String {
        format!("void-{}", job.payment_id)
    }

    async fn succeed(
        tx: &mut Tx<'_>,
        shard: u16,
        job: &Job,
        reply: &PgReply,
        event_id: u64,
        now_ms: i64,
    ) -> Result<(), DbError> {
        let reason = void_reason(job);
        let status = match reason.as_str() {
            event::VOID_REASON_EXPIRED => "EXPIRED",
            event::VOID_REASON_CAPTURE_FAILED => {
                // The ledger released the hold with `payment.capture-failed`; the payment
                // stays CAPTURE_FAILED. Nothing more to announce.
                return Ok(());
            }
            _ => "VOIDED",
        };
        tx.exec_drop(
            "UPDATE payment SET status = ?, updated_at = ? WHERE payment_id = ? AND status = 'VOID_REQUESTED'",
            (status, payrail_db::datetime(now_ms), job.payment_id),
        )
        .await
        .map_err(|e| DbError::classify(shard, e))?;
        if tx.affected_rows() != 1 {
            return Ok(());
        }
        payrail_db::history::append(tx, shard, job.payment_id, status, now_ms).await?;
        let extra = [
            ("reason", Extra::Text(&reason)),
            ("transactionId", Extra::Text(&reply.transaction_id)),
        ];
        let voided = Event {
            event_id,
            event_type: event::VOIDED,
            payment_id: job.payment_id,
            merchant_id: &job.merchant_id,
            amount: job.amount,
            currency: &job.currency,
            status,
            occurred_at_ms: now_ms,
            extra: &extra,
        };
        payrail_outbox::insert(tx, shard, payrail_kafka::topics::VOIDED, &voided).await
    }

    async fn fail(
        tx: &mut Tx<'_>,
        shard: u16,
        job: &Job,
        _reason: &str,
        _event_ids: [u64; 2],
        now_ms: i64,
    ) -> Result<(), DbError> {
        // The hold stands at the PG and in the ledger; reconciliation reports it until a
        // DLQ replay voids it. (A failed release of a failed capture changes no state.)
        tx.exec_drop(
            "UPDATE payment SET status = 'VOID_FAILED', updated_at = ? WHERE payment_id = ? AND status = 'VOID_REQUESTED'",
            (payrail_db::datetime(now_ms), job.payment_id),
        )
        .await
        .map_err(|e| DbError::classify(shard, e))?;
        if tx.affected_rows() == 1 {
            payrail_db::history::append(tx, shard, job.payment_id, "VOID_FAILED", now_ms).await?;
        }
        Ok(())
    }

    async fn rearm(tx: &mut Tx<'_>, shard: u16, job_id: u64) -> Result<bool, DbError> {
        let classify = |e| DbError::classify(shard, e);
        let now_ms = payrail_core::time::now_ms();
        let status: Option<String> = tx
            .exec_first("SELECT status FROM payment WHERE payment_id = ?", (job_id,))
            .await
            .map_err(classify)?;
        match status.as_deref() {
            Some("VOID_FAILED") => {
                tx.exec_drop(
                    "UPDATE payment SET status = 'VOID_REQUESTED', updated_at = ? WHERE payment_id = ? AND status = 'VOID_FAILED'",
                    (payrail_db::datetime(now_ms), job_id),
                )
                .await
                .map_err(classify)?;
                payrail_db::history::append(tx, shard, job_id, "VOID_REQUESTED", now_ms).await?;
                Ok(true)
            }
            // The release of a failed capture: try the void again.
            Some("CAPTURE_FAILED") => Ok(true),
            _ => Ok(false),
        }
    }
}

fn main() {
    let kinds = [
        payrail_worker::service::entry::<Settlement>(),
        payrail_worker::service::entry::<Void>(),
    ];
    if let Err(error) = payrail_worker::service::run_kinds(Settlement::SERVICE, &kinds) {
        eprintln!("settlement-worker: {error}");
        std::process::exit(1);
    }
}
