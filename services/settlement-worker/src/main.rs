//! settlement-worker: captures at the PG what `payment.capture-requested` asks for.
//! The machinery (intake, scheduler, retries, DLQ) is `payrail-worker`; this file says
//! what a capture changes.

use mimalloc::MiMalloc;
use mysql_async::prelude::Queryable;
use payrail_core::event::{self, Event, Extra};
use payrail_db::DbError;
use payrail_pg::{Operation, PgReply};
use payrail_worker::job::{Intake, Job, JobKind, Tx};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

struct Settlement;

impl JobKind for Settlement {
    const SERVICE: &'static str = "settlement-worker";
    const TABLE: &'static str = "settlement_request";
    const SOURCE_TOPIC: &'static str = payrail_kafka::topics::CAPTURE_REQUESTED;
    const DLQ_TOPIC: &'static str = payrail_kafka::topics::SETTLEMENT_DLQ;
    const GROUP_ID: &'static str = "settlement-worker";
    const OPERATION: Operation = Operation::Capture;

    fn intake(e: &serde_json::Value) -> Option<Intake> {
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
        tx.exec_drop(
            "UPDATE payment SET status = 'CAPTURED', updated_at = ? WHERE payment_id = ? AND status = 'CAPTURE_REQUESTED'",
            (payrail_db::datetime(now_ms), job.payment_id),
        )
        .await
        .map_err(classify)?;
        if tx.affected_rows() != 1 {
            // Voided or changed meanwhile: the PG capture stands in the PG's records and
            // reconciliation reports it; nothing to announce here.
            return Ok(());
        }
        let authorized: Option<i64> = tx
            .exec_first(
                "SELECT amount FROM payment WHERE payment_id = ?",
                (job.payment_id,),
            )
            .await
            .map_err(classify)?;
        payrail_db::outbox::history(tx, shard, job.payment_id, "CAPTURED", now_ms).await?;
        let extra = [
            (
                "authorizedAmount",
                Extra::Number(authorized.unwrap_or(job.amount)),
            ),
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
        payrail_db::outbox::insert(tx, shard, payrail_kafka::topics::CAPTURED, &captured).await
    }

    async fn fail(
        tx: &mut Tx<'_>,
        shard: u16,
        job: &Job,
        _reason: &str,
        _event_id: u64,
        now_ms: i64,
    ) -> Result<(), DbError> {
        tx.exec_drop(
            "UPDATE payment SET status = 'CAPTURE_FAILED', updated_at = ? WHERE payment_id = ? AND status = 'CAPTURE_REQUESTED'",
            (payrail_db::datetime(now_ms), job.payment_id),
        )
        .await
        .map_err(|e| DbError::classify(shard, e))?;
        if tx.affected_rows() == 1 {
            payrail_db::outbox::history(tx, shard, job.payment_id, "CAPTURE_FAILED", now_ms)
                .await?;
        }
        Ok(())
    }

    async fn rearm(tx: &mut Tx<'_>, shard: u16, job_id: u64) -> Result<bool, DbError> {
        let now_ms = payrail_core::time::now_ms();
        tx.exec_drop(
            "UPDATE payment SET status = 'CAPTURE_REQUESTED', updated_at = ? WHERE payment_id = ? AND status = 'CAPTURE_FAILED'",
            (payrail_db::datetime(now_ms), job_id),
        )
        .await
        .map_err(|e| DbError::classify(shard, e))?;
        if tx.affected_rows() != 1 {
            return Ok(false);
        }
        payrail_db::outbox::history(tx, shard, job_id, "CAPTURE_REQUESTED", now_ms).await?;
        Ok(true)
    }
}

fn main() {
    if let Err(error) = payrail_worker::service::run::<Settlement>() {
        eprintln!("settlement-worker: {error}");
        std::process::exit(1);
    }
}
