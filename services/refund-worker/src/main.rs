//! refund-worker: refunds at the PG what `payment.refund-requested` asks for, and
//! announces each refund exactly once (`payment.refunded`), guarded by the refund row's
//! own conditional update. The machinery is `payrail-worker`.

use mimalloc::MiMalloc;
use mysql_async::prelude::Queryable;
use payrail_core::event::{self, Event, Extra};
use payrail_db::DbError;
use payrail_pg::{Operation, PgReply};
use payrail_worker::job::{Intake, Job, JobKind, Tx};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

struct Refund;

impl JobKind for Refund {
    const SERVICE: &'static str = "refund-worker";
    const TABLE: &'static str = "refund_request";
    const SOURCE_TOPIC: &'static str = payrail_kafka::topics::REFUND_REQUESTED;
    const DLQ_TOPIC: &'static str = payrail_kafka::topics::REFUND_DLQ;
    const GROUP_ID: &'static str = "refund-worker";
    const OPERATION: Operation = Operation::Refund;

    fn intake(e: &serde_json::Value) -> Option<Intake> {
        Some(Intake {
            job_id: e["refundId"].as_u64()?,
            payment_id: e["paymentId"].as_u64()?,
            merchant_id: e["merchantId"].as_str()?.to_owned(),
            amount: e["amount"].as_i64().filter(|a| *a > 0)?,
            currency: e["currency"].as_str()?.to_owned(),
            event_id: e["eventId"].as_u64()?,
        })
    }

    fn request_id(job: &Job) -> String {
        format!("refund-{}", job.job_id)
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
        let at = payrail_db::datetime(now_ms);
        tx.exec_drop("UPDATE refund SET status = 'REFUNDED', updated_at = ? WHERE refund_id = ? AND status = 'REQUESTED'", (at.clone(), job.job_id))
            .await
            .map_err(classify)?;
        if tx.affected_rows() != 1 {
            return Ok(());
        }
        // Assignments run left to right: the status is decided on the amounts before this
        // refund moves from pending to refunded.
        tx.exec_drop(
            "UPDATE payment SET \
               status = CASE WHEN refund_pending_amount - ? > 0 THEN 'REFUND_REQUESTED' \
                             WHEN refunded_amount + ? >= captured_amount THEN 'REFUNDED' \
                             ELSE 'PARTIALLY_REFUNDED' END, \
               refunded_amount = refunded_amount + ?, refund_pending_amount = refund_pending_amount - ?, updated_at = ? \
             WHERE payment_id = ?",
            (job.amount, job.amount, job.amount, job.amount, at, job.payment_id),
        )
        .await
        .map_err(classify)?;
        let status: Option<String> = tx
            .exec_first(
                "SELECT status FROM payment WHERE payment_id = ?",
                (job.payment_id,),
            )
            .await
            .map_err(classify)?;
        let status = status.unwrap_or_default();
        payrail_db::history::append(tx, shard, job.payment_id, &status, now_ms).await?;
        let extra = [
            ("refundId", Extra::Number(job.job_id as i64)),
            ("transactionId", Extra::Text(&reply.transaction_id)),
        ];
        let refunded = Event {
            event_id,
            event_type: event::REFUNDED,
            payment_id: job.payment_id,
            merchant_id: &job.merchant_id,
            amount: job.amount,
            currency: &job.currency,
            status: &status,
            occurred_at_ms: now_ms,
            extra: &extra,
        };
        payrail_outbox::insert(tx, shard, payrail_kafka::topics::REFUNDED, &refunded).await
    }

    async fn fail(
        tx: &mut Tx<'_>,
        shard: u16,
        job: &Job,
        _reason: &str,
        _event_ids: [u64; 2],
        now_ms: i64,
    ) -> Result<(), DbError> {
        let classify = |e| DbError::classify(shard, e);
        let at = payrail_db::datetime(now_ms);
        tx.exec_drop("UPDATE refund SET status = 'FAILED', updated_at = ? WHERE refund_id = ? AND status = 'REQUESTED'", (at.clone(), job.job_id))
            .await
            .map_err(classify)?;
        if tx.affected_rows() != 1 {
            return Ok(());
        }
        tx.exec_drop(
            "UPDATE payment SET \
               status = CASE WHEN refund_pending_amount - ? > 0 THEN 'REFUND_REQUESTED' \
                             WHEN refunded_amount > 0 THEN 'PARTIALLY_REFUNDED' ELSE 'REFUND_FAILED' END, \
               refund_pending_amount = refund_pending_amount - ?, updated_at = ? \
             WHERE payment_id = ?",
            (job.amount, job.amount, at, job.payment_id),
        )
        .await
        .map_err(classify)?;
        let status: Option<String> = tx
            .exec_first(
                "SELECT status FROM payment WHERE payment_id = ?",
                (job.payment_id,),
            )
            .await
            .map_err(classify)?;
        payrail_db::history::append(
            tx,
            shard,
            job.payment_id,
            &status.unwrap_or_default(),
            now_ms,
        )
        .await
    }

    async fn rearm(tx: &mut Tx<'_>, shard: u16, job_id: u64) -> Result<bool, DbError> {
        let classify = |e| DbError::classify(shard, e);
        let now_ms = payrail_core::time::now_ms();
        let at = payrail_db::datetime(now_ms);
        let row: Option<(u64, i64)> = tx
            .exec_first(
                "SELECT payment_id, amount FROM refund WHERE refund_id = ? AND status = 'FAILED'",
                (job_id,),
            )
            .await
            .map_err(classify)?;
        let Some((payment_id, amount)) = row else {
            return Ok(false);
        };
        tx.exec_drop(
            "UPDATE payment SET status = 'REFUND_REQUESTED', refund_pending_amount = refund_pending_amount + ?, updated_at = ? \
             WHERE payment_id = ? AND refunded_amount + refund_pending_amount + ? <= captured_amount",
            (amount, at.clone(), payment_id, amount),
        )
        .await
        .map_err(classify)?;
        if tx.affected_rows() != 1 {
            return Ok(false);
        }
        tx.exec_drop(
            "UPDATE refund SET status = 'REQUESTED', updated_at = ? WHERE refund_id = ?",
            (at, job_id),
        )
        .await
        .map_err(classify)?;
        payrail_db::history::append(tx, shard, payment_id, "REFUND_REQUESTED", now_ms).await?;
        Ok(true)
    }
}

fn main() {
    if let Err(error) = payrail_worker::service::run::<Refund>() {
        eprintln!("refund-worker: {error}");
        std::process::exit(1);
    }
}
