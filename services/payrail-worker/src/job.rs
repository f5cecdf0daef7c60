//! Jobs and the trait each worker implements.

use payrail_db::DbError;
use payrail_pg::{Operation, PgReply};
use std::future::Future;

/// What the intake extracts from a request event.
#[derive(Debug, Clone)]
pub struct Intake {
    /// Primary key of the job row (payment id for settlements, refund id for refunds).
    pub job_id: u64,
    pub payment_id: u64,
    pub merchant_id: String,
    pub amount: i64,
    pub currency: String,
    pub event_id: u64,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub job_id: u64,
    pub payment_id: u64,
    pub merchant_id: String,
    pub amount: i64,
    pub currency: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub source_topic: &'static str,
    pub source_partition: i32,
    pub source_offset: i64,
    pub source_payload: Vec<u8>,
}

pub type Tx<'a> = mysql_async::Transaction<'a>;

/// One kind of PG job: its topics, its table and what its outcomes change. The changes
/// run inside the transaction that also marks the job row, so job and payment state move
/// together.
pub trait JobKind: Send + Sync + 'static {
    /// Service name in logs and metrics.
    const SERVICE: &'static str;
    /// The job table (`settlement_request`, `refund_request`).
    const TABLE: &'static str;
    const SOURCE_TOPIC: &'static str;
    const DLQ_TOPIC: &'static str;
    const GROUP_ID: &'static str;
    const OPERATION: Operation;

    /// The job a request event asks for; `None` for a message that is not one (poison).
    fn intake(event: &serde_json::Value) -> Option<Intake>;

    /// The PG request id: the same for every attempt of a job, so the PG applies it once.
    fn request_id(job: &Job) -> String;

    /// Applies a PG approval: state change, history and the success event (`event_id`).
    fn succeed<'a>(
        tx: &'a mut Tx<'_>,
        shard: u16,
        job: &'a Job,
        reply: &'a PgReply,
        event_id: u64,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), DbError>> + Send + 'a;

    /// Applies a final failure: the failed state, history and up to two events
    /// (`event_ids`); the DLQ message is written by the scheduler. Only called once the PG
    /// said no, or said it never applied the request.
    fn fail<'a>(
        tx: &'a mut Tx<'_>,
        shard: u16,
        job: &'a Job,
        reason: &'a str,
        event_ids: [u64; 2],
        now_ms: i64,
    ) -> impl Future<Output = Result<(), DbError>> + Send + 'a;

    /// A DLQ replay of a failed job: put the payment back into the state that lets the job
    /// run again. False when it can no longer run (the payment moved on); the intake then
    /// leaves the job failed.
    fn rearm<'a>(
        tx: &'a mut Tx<'_>,
        shard: u16,
        job_id: u64,
    ) -> impl Future<Output = Result<bool, DbError>> + Send + 'a;
}
