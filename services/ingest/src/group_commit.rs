//! Group commit: many requests' writes in one durable transaction.
//!
//! With `innodb_flush_log_at_trx_commit=1` every COMMIT waits for an fsync; one
//! transaction per request would cap throughput at the disk's fsync rate. Instead each
//! shard has a bounded queue and `writers_per_shard` writer tasks. A writer takes what is
//! queued (up to `batch_size_max`), writes it with multi-row statements in one transaction
//! and commits once; while it commits, new writes queue up and form the next batch, so
//! batches grow with load and a lone request never waits for company.
//!
//! No shared fate: if a batch fails for any reason other than the shard being down, it is
//! rolled back and every write in it is retried alone (a few at a time, in parallel), so
//! one bad row (a racing duplicate, a constraint, a lock wait past the session's
//! `innodb_lock_wait_timeout`) fails only its own request. No request is answered before
//! the transaction holding its write has committed: replies are sent after COMMIT returns.
//!
//! A lost COMMIT answer (the connection dropped or the batch timed out after COMMIT was
//! sent) is not a failure yet: the writer reads, with a locking read that waits until the
//! old transaction has ended (killing its session if it holds on), whether the batch's rows
//! are there (each write leaves a row only this batch can have written: the idempotency
//! record under the request's owner token). Committed, everyone is answered as if COMMIT
//! had returned; rolled back, the writes are retried alone; if the shard cannot be asked,
//! the requests get 503 (outcome unknown to the client, who retries with the same key and
//! finds it).

use crate::metrics::Metrics;
use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, TxOpts, Value};
use payrail_db::{datetime, row_placeholders, DbError, Shards};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Reserve an idempotency key before calling the PG.
#[derive(Debug, Clone)]
pub struct ReserveOp {
    pub merchant_id: String,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub owner_token: i64,
    pub payment_id: u64,
}

/// The idempotency record as found after the reservation attempt.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub fingerprint: String,
    pub state: String,
    pub owner_token: i64,
    pub payment_id: u64,
    pub response_status: Option<u16>,
    pub response_body: Option<Vec<u8>>,
    pub lease_expired: bool,
}

#[derive(Debug, Clone)]
pub struct PaymentRow {
    pub payment_id: u64,
    pub merchant_id: String,
    pub status: &'static str,
    pub amount: i64,
    pub capture_requested_amount: i64,
    pub currency: String,
    pub idempotency_key: String,
    pub approval_number: Option<String>,
    pub pg_transaction_id: Option<String>,
    pub at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub event_id: u64,
    pub topic: &'static str,
    pub event_type: &'static str,
    pub payload: Vec<u8>,
}

/// Write the authorized (or declined) payment, its history, its outbox events and the
/// completed idempotency record, all in the same transaction.
#[derive(Debug, Clone)]
pub struct FinalizeOp {
    pub payment: PaymentRow,
    pub history: Vec<&'static str>,
    pub events: Vec<EventRow>,
    pub fingerprint: String,
    pub owner_token: i64,
    pub response_status: u16,
    pub response_body: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Op {
    Reserve(ReserveOp),
    Finalize(FinalizeOp),
}

enum Reply {
    Reserve(oneshot::Sender<Result<Reservation, DbError>>),
    Finalize(oneshot::Sender<Result<(), DbError>>),
}

struct Pending {
    op: Op,
    reply: Reply,
}

enum OpResult {
    Reserve(Reservation),
    Finalize,
}

pub struct GroupCommit {
    /// One bounded queue per shard (index = shard - 1).
    queues: Vec<mpsc::Sender<Pending>>,
}

impl GroupCommit {
    pub fn start(
        shards: Arc<Shards>,
        metrics: Arc<Metrics>,
        config: crate::config::GroupCommitConfig,
        lease_ms: u64,
        outbox: Arc<payrail_outbox::Outbox>,
    ) -> Self {
        let mut queues = Vec::new();
        for shard in shards.numbers() {
            let (sender, receiver) = mpsc::channel(config.queue_depth_max);
            let receiver = Arc::new(Mutex::new(receiver));
            for _ in 0..config.writers_per_shard {
                let writer = Writer {
                    shard,
                    shards: shards.clone(),
                    metrics: metrics.clone(),
                    receiver: receiver.clone(),
                    batch_size_max: config.batch_size_max,
                    lease_ms,
                    outbox: outbox.clone(),
                    session: parking_lot::Mutex::new(None),
                };
                tokio::spawn(writer.run());
            }
            queues.push(sender);
        }
        Self { queues }
    }

    fn enqueue(&self, shard: u16, pending: Pending) -> Result<(), DbError> {
        let queue =
            self.queues
                .get(usize::from(shard).wrapping_sub(1))
                .ok_or(DbError::Unavailable {
                    shard,
                    message: "no such shard".into(),
                })?;
        queue.try_send(pending).map_err(|_| DbError::Unavailable {
            shard,
            message: "write queue full".into(),
        })
    }

    pub async fn reserve(&self, shard: u16, op: ReserveOp) -> Result<Reservation, DbError> {
        let (sender, receiver) = oneshot::channel();
        self.enqueue(
            shard,
            Pending {
                op: Op::Reserve(op),
                reply: Reply::Reserve(sender),
            },
        )?;
        receiver.await.unwrap_or_else(|_| {
            Err(DbError::Unavailable {
                shard,
                message: "writer stopped".into(),
            })
        })
    }

    pub async fn finalize(&self, shard: u16, op: FinalizeOp) -> Result<(), DbError> {
        let (sender, receiver) = oneshot::channel();
        self.enqueue(
            shard,
            Pending {
                op: Op::Finalize(op),
                reply: Reply::Finalize(sender),
            },
        )?;
        receiver.await.unwrap_or_else(|_| {
            Err(DbError::Unavailable {
                shard,
                message: "writer stopped".into(),
            })
        })
    }
}

struct Writer {
    shard: u16,
    shards: Arc<Shards>,
    metrics: Arc<Metrics>,
    /// Shared by the shard's writers: whoever holds the lock drains the next batch.
    receiver: Arc<Mutex<mpsc::Receiver<Pending>>>,
    batch_size_max: usize,
    lease_ms: u64,
    /// Wakes this shard's outbox relay after a commit that wrote events.
    outbox: Arc<payrail_outbox::Outbox>,
    /// This writer's own connection between batches, and when it was last used
    /// ([`Writer::execute`]).
    session: parking_lot::Mutex<Option<(mysql_async::Conn, Instant)>>,
}

impl Writer {
    async fn run(self) {
        let shard_label = self.shard.to_string();
        let mut batch: Vec<Pending> = Vec::with_capacity(self.batch_size_max);
        loop {
            {
                let mut receiver = self.receiver.lock().await;
                match receiver.recv().await {
                    Some(first) => batch.push(first),
                    None => return,
                }
                while batch.len() < self.batch_size_max {
                    match receiver.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
            }
            self.metrics
                .group_commit_batch_size
                .with_label_values(&[&shard_label])
                .observe(batch.len() as f64);
            let started = Instant::now();
            let ops: Vec<&Op> = batch.iter().map(|p| &p.op).collect();
            let result = self.write(&ops, true).await;
            self.metrics
                .group_commit_duration
                .with_label_values(&[&shard_label])
                .observe(started.elapsed().as_secs_f64());
            if result.is_ok()
                && batch
                    .iter()
                    .any(|p| matches!(&p.op, Op::Finalize(f) if !f.events.is_empty()))
            {
                self.outbox.committed(self.shard);
            }
            match result {
                Ok(results) => {
                    for (pending, result) in batch.drain(..).zip(results) {
                        deliver(pending.reply, Ok(result));
                    }
                }
                Err(error) if error.is_unavailable() || batch.len() == 1 => {
                    for pending in batch.drain(..) {
                        deliver(pending.reply, Err(error.clone()));
                    }
                }
                Err(error) => {
                    tracing::info!(shard = self.shard, %error, size = batch.len(), "batch failed; retrying its writes one by one");
                    self.metrics
                        .group_commit_isolated_retries
                        .with_label_values(&[&shard_label])
                        .inc();
                    // A few at a time: alone, each is one short transaction, and a batch
                    // of 64 done serially would hold its requests for 64 round trips.
                    let writer = &self;
                    let mut alone = futures_util::stream::iter(batch.drain(..))
                        .map(|pending| async move {
                            let result = writer.write(&[&pending.op], false).await;
                            (pending, result)
                        })
                        .buffer_unordered(ISOLATED_PARALLEL);
                    while let Some((pending, result)) = alone.next().await {
                        deliver(pending.reply, result.map(|mut r| r.remove(0)));
                    }
                }
            }
        }
    }

    /// Writes `ops` in one transaction under the query timeout; a lost COMMIT answer is
    /// resolved before this returns. Results in the order of `ops`. `own_session`: see
    /// [`Writer::execute`].
    async fn write(&self, ops: &[&Op], own_session: bool) -> Result<Vec<OpResult>, DbError> {
        let session = AtomicU32::new(0);
        let commit_sent = AtomicBool::new(false);
        let result = self
            .shards
            .bounded(
                self.shard,
                self.execute(ops, &session, &commit_sent, own_session),
            )
            .await;
        match result {
            // A server's error answer to COMMIT is a definite rollback; a lost connection
            // or a timeout after COMMIT was sent leaves the outcome open.
            Err(error) if error.is_unavailable() && commit_sent.load(Ordering::Acquire) => {
                self.resolve(ops, session.load(Ordering::Acquire), error)
                    .await
            }
            other => other,
        }
    }

    /// The COMMIT of `ops` was sent on session `session` and its answer lost (`error`):
    /// reads whether the batch committed once its transaction has ended.
    async fn resolve(
        &self,
        ops: &[&Op],
        session: u32,
        error: DbError,
    ) -> Result<Vec<OpResult>, DbError> {
        let shard = self.shard;
        let label = shard.to_string();
        tracing::warn!(shard, session, %error, size = ops.len(), "group commit: COMMIT answer lost; checking what committed");
        let keys: Vec<(&str, &str)> = ops.iter().map(|op| op.key()).collect();
        let checked = self
            .shards
            .bounded(shard, async {
                let classify = |e| DbError::classify(shard, e);
                let mut conn = self.shards.conn(shard).await?;
                // A locking read of the batch's records waits while the old transaction
                // still holds them (its COMMIT in progress), so what it reads is final. A
                // session whose COMMIT never arrived (a cut link) would hold them until
                // the server notices; one lock wait past the session's timeout, and it is
                // killed so that its transaction rolls back.
                let (sql, params) = records_select(&keys, true);
                match conn.exec(sql.clone(), params.clone()).await {
                    Ok(rows) => return Ok(rows),
                    Err(first) => {
                        tracing::warn!(shard, session, error = %first, "group commit: the lost COMMIT's rows are still locked; killing its session");
                        let _ = conn.query_drop(format!("KILL CONNECTION {session}")).await;
                    }
                }
                conn.exec(sql, params).await.map_err(classify)
            })
            .await
            .map(|rows: Vec<mysql_async::Row>| rows.into_iter().map(record_row).collect::<Vec<_>>());
        let found = match checked {
            Ok(found) => found,
            Err(check) => {
                tracing::warn!(shard, %check, "group commit: could not check a lost COMMIT; answering 503");
                self.metrics
                    .group_commit_resolved
                    .with_label_values(&[&label, "unknown"])
                    .inc();
                return Err(error);
            }
        };
        // Each op's own row: a finalize's record COMPLETED under its owner token, a new
        // reservation's record under its token. One is enough: the batch is atomic.
        let committed = ops.iter().any(|op| {
            let (merchant, key) = op.key();
            found.iter().any(|(m, k, r)| {
                m == merchant.as_bytes()
                    && k == key.as_bytes()
                    && match op {
                        Op::Finalize(f) => r.owner_token == f.owner_token && r.state == "COMPLETED",
                        Op::Reserve(o) => r.owner_token == o.owner_token,
                    }
            })
        });
        let outcome = if committed {
            "committed"
        } else {
            "rolled_back"
        };
        self.metrics
            .group_commit_resolved
            .with_label_values(&[&label, outcome])
            .inc();
        tracing::warn!(shard, outcome, "group commit: lost COMMIT resolved");
        if committed {
            results(shard, ops, &found)
        } else if ops.len() == 1 {
            // Nothing of it is there: written again, alone, under the timeout.
            self.shards
                .bounded(
                    shard,
                    self.execute(ops, &AtomicU32::new(0), &AtomicBool::new(false), false),
                )
                .await
        } else {
            // Retried one by one by the caller.
            Err(DbError::Query {
                shard,
                message: format!("batch rolled back after a lost COMMIT ({error})"),
            })
        }
    }

    /// One transaction for all of `ops`; results in the same order. Records the session
    /// id, and when COMMIT is sent, for [`Writer::resolve`]. With `own_session` (the batch
    /// path) it runs on the writer's own connection, whose transactions need no `START
    /// TRANSACTION` round trip (autocommit is off, [`Shards::session`]); one fewer round
    /// trip per batch, which at 500 authorizations/s is about one per authorization. The
    /// isolated retries, a few at once, take pooled connections.
    async fn execute(
        &self,
        ops: &[&Op],
        session: &AtomicU32,
        commit_sent: &AtomicBool,
        own_session: bool,
    ) -> Result<Vec<OpResult>, DbError> {
        let shard = self.shard;
        let classify = |e| DbError::classify(shard, e);
        if !own_session {
            let mut conn = self.shards.conn(shard).await?;
            session.store(conn.id(), Ordering::Release);
            let mut tx = conn
                .start_transaction(TxOpts::default())
                .await
                .map_err(classify)?;
            let found = self.statements(&mut tx, ops).await?;
            commit_sent.store(true, Ordering::Release);
            tx.commit().await.map_err(classify)?;
            return results(shard, ops, &found);
        }
        // Taken out while in use: if this future is dropped (the query timeout) the
        // connection goes with it, closed, and the server rolls back what was open. One
        // idle for longer than the pool keeps its connections is replaced, so a quiet
        // appliance never meets a session the server has timed out.
        let cached = self.session.lock().take();
        let mut conn = match cached {
            Some((conn, last_used)) if last_used.elapsed() < SESSION_IDLE_MAX => conn,
            _ => self.shards.session(shard).await?,
        };
        session.store(conn.id(), Ordering::Release);
        match self.statements(&mut conn, ops).await {
            Ok(found) => {
                commit_sent.store(true, Ordering::Release);
                conn.query_drop("COMMIT").await.map_err(classify)?;
                *self.session.lock() = Some((conn, Instant::now()));
                results(shard, ops, &found)
            }
            Err(error) => {
                // The session is kept only once its transaction has ended.
                if conn.query_drop("ROLLBACK").await.is_ok() {
                    *self.session.lock() = Some((conn, Instant::now()));
                }
                Err(error)
            }
        }
    }

    /// The statements of one transaction for all of `ops`, on `q` (a pooled connection's
    /// transaction or the writer's own session); returns the reservations' records.
    async fn statements<Q: Queryable + Affected>(
        &self,
        q: &mut Q,
        ops: &[&Op],
    ) -> Result<Vec<Record>, DbError> {
        let shard = self.shard;
        let classify = |e| DbError::classify(shard, e);
        let reserves: Vec<&ReserveOp> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Reserve(r) => Some(r),
                Op::Finalize(_) => None,
            })
            .collect();
        let finals: Vec<&FinalizeOp> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Finalize(f) => Some(f),
                Op::Reserve(_) => None,
            })
            .collect();

        if !finals.is_empty() {
            let (sql, params) = finalize_payments(&finals);
            q.exec_drop(sql, params).await.map_err(classify)?;
            if let Some((sql, params)) = finalize_history(&finals) {
                q.exec_drop(sql, params).await.map_err(classify)?;
            }
            if let Some((sql, params)) = finalize_events(&finals) {
                q.exec_drop(sql, params).await.map_err(classify)?;
            }
            let (sql, params) = finalize_idempotency(&finals, self.lease_ms);
            q.exec_drop(sql, params).await.map_err(classify)?;
            // Each record counts 2 when its owner completed it, 0 when someone else owns
            // it now (a takeover, or the resolver): that write must not commit. The batch
            // is retried one by one, and the loser gets `Duplicate` and replays the record.
            if q.affected() != 2 * finals.len() as u64 {
                return Err(DbError::Duplicate {
                    shard,
                    message: "the idempotency record has another owner now".into(),
                });
            }
        }

        let mut found: Vec<Record> = Vec::new();
        if !reserves.is_empty() {
            let (sql, params) = reserve_insert(&reserves, self.lease_ms);
            q.exec_drop(sql, params).await.map_err(classify)?;
            if q.affected() == reserves.len() as u64 {
                // Every key was new, so every record is the one just written: no need to
                // read them back (the common case, one statement saved per batch).
                for r in &reserves {
                    found.push((
                        r.merchant_id.as_bytes().to_vec(),
                        r.idempotency_key.as_bytes().to_vec(),
                        Reservation {
                            fingerprint: r.fingerprint.clone(),
                            state: "IN_PROGRESS".to_owned(),
                            owner_token: r.owner_token,
                            payment_id: r.payment_id,
                            response_status: None,
                            response_body: None,
                            lease_expired: false,
                        },
                    ));
                }
            }
        }
        if !reserves.is_empty() && found.is_empty() {
            let keys: Vec<(&str, &str)> = reserves
                .iter()
                .map(|r| (r.merchant_id.as_str(), r.idempotency_key.as_str()))
                .collect();
            let (sql, params) = records_select(&keys, true);
            let rows: Vec<mysql_async::Row> = q.exec(sql, params).await.map_err(classify)?;
            found.extend(rows.into_iter().map(record_row));
        }
        Ok(found)
    }
}

/// The affected-row count of the last statement, on a connection or in a transaction.
trait Affected {
    fn affected(&self) -> u64;
}

impl Affected for mysql_async::Conn {
    fn affected(&self) -> u64 {
        self.affected_rows()
    }
}

impl Affected for mysql_async::Transaction<'_> {
    fn affected(&self) -> u64 {
        self.affected_rows()
    }
}

/// A writer's own session idle longer than this is closed and replaced (the pools'
/// `inactive_connection_ttl`).
const SESSION_IDLE_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Writes of one failed batch retried alone at once, per writer.
const ISOLATED_PARALLEL: usize = 4;

impl Op {
    /// The idempotency record the op writes: (merchant, key).
    fn key(&self) -> (&str, &str) {
        match self {
            Op::Reserve(r) => (&r.merchant_id, &r.idempotency_key),
            Op::Finalize(f) => (&f.payment.merchant_id, &f.payment.idempotency_key),
        }
    }
}

type Record = (Vec<u8>, Vec<u8>, Reservation);

fn record_row(mut row: mysql_async::Row) -> Record {
    let merchant: Vec<u8> = row.take(0).unwrap_or_default();
    let key: Vec<u8> = row.take(1).unwrap_or_default();
    (merchant, key, Reservation::from_row(&mut row, 2))
}

impl Reservation {
    /// From `row`'s columns `request_fingerprint, state, owner_token, payment_id,
    /// response_status, response_body, lease_until < UTC_TIMESTAMP(3)`, the first at `at`.
    pub fn from_row(row: &mut mysql_async::Row, at: usize) -> Self {
        Self {
            fingerprint: row.take(at).unwrap_or_default(),
            state: row.take(at + 1).unwrap_or_default(),
            owner_token: row.take(at + 2).unwrap_or_default(),
            payment_id: row.take(at + 3).unwrap_or_default(),
            response_status: row.take(at + 4).unwrap_or_default(),
            response_body: row.take(at + 5).unwrap_or_default(),
            lease_expired: row.take::<i64, _>(at + 6).unwrap_or_default() == 1,
        }
    }
}

/// The committed batch's results in the order of `ops`; a reservation's from `found`.
fn results(shard: u16, ops: &[&Op], found: &[Record]) -> Result<Vec<OpResult>, DbError> {
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Finalize(_) => results.push(OpResult::Finalize),
            Op::Reserve(r) => {
                let reservation = found
                    .iter()
                    .find(|(m, k, _)| {
                        m == r.merchant_id.as_bytes() && k == r.idempotency_key.as_bytes()
                    })
                    .map(|(_, _, res)| res.clone())
                    .ok_or_else(|| DbError::Query {
                        shard,
                        message: "idempotency record vanished after insert".into(),
                    })?;
                results.push(OpResult::Reserve(reservation));
            }
        }
    }
    Ok(results)
}

fn deliver(reply: Reply, result: Result<OpResult, DbError>) {
    // A dropped receiver means the request timed out on the bridge; the write stands and
    // a retry with the same idempotency key will find it.
    match (reply, result) {
        (Reply::Reserve(s), Ok(OpResult::Reserve(r))) => {
            let _ = s.send(Ok(r));
        }
        (Reply::Finalize(s), Ok(OpResult::Finalize)) => {
            let _ = s.send(Ok(()));
        }
        (Reply::Reserve(s), Err(e)) => {
            let _ = s.send(Err(e));
        }
        (Reply::Finalize(s), Err(e)) => {
            let _ = s.send(Err(e));
        }
        (Reply::Reserve(s), Ok(_)) => {
            let _ = s.send(Err(DbError::Query {
                shard: 0,
                message: "result mismatch".into(),
            }));
        }
        (Reply::Finalize(s), Ok(_)) => {
            let _ = s.send(Err(DbError::Query {
                shard: 0,
                message: "result mismatch".into(),
            }));
        }
    }
}

fn bytes(text: &str) -> Value {
    Value::Bytes(text.as_bytes().to_vec())
}

fn optional(text: &Option<String>) -> Value {
    text.as_deref().map_or(Value::NULL, bytes)
}

fn finalize_payments(finals: &[&FinalizeOp]) -> (String, Params) {
    let sql = format!(
        "INSERT INTO payment (payment_id, merchant_id, status, amount, capture_requested_amount, currency, idempotency_key, \
         approval_number, pg_transaction_id, created_at, updated_at) VALUES {}",
        row_placeholders(finals.len(), "(?,?,?,?,?,?,?,?,?,?,?)")
    );
    let mut params = Vec::with_capacity(finals.len() * 11);
    for f in finals {
        let p = &f.payment;
        params.extend([
            Value::UInt(p.payment_id),
            bytes(&p.merchant_id),
            bytes(p.status),
            Value::Int(p.amount),
            Value::Int(p.capture_requested_amount),
            bytes(&p.currency),
            bytes(&p.idempotency_key),
            optional(&p.approval_number),
            optional(&p.pg_transaction_id),
            datetime(p.at_ms),
            datetime(p.at_ms),
        ]);
    }
    (sql, Params::Positional(params))
}

fn finalize_history(finals: &[&FinalizeOp]) -> Option<(String, Params)> {
    let rows: usize = finals.iter().map(|f| f.history.len()).sum();
    if rows == 0 {
        return None;
    }
    let sql = format!(
        "INSERT INTO payment_status_history (payment_id, status, at) VALUES {}",
        row_placeholders(rows, "(?,?,?)")
    );
    let mut params = Vec::with_capacity(rows * 3);
    for f in finals {
        for status in &f.history {
            params.extend([
                Value::UInt(f.payment.payment_id),
                bytes(status),
                datetime(f.payment.at_ms),
            ]);
        }
    }
    Some((sql, Params::Positional(params)))
}

fn finalize_events(finals: &[&FinalizeOp]) -> Option<(String, Params)> {
    let rows: usize = finals.iter().map(|f| f.events.len()).sum();
    if rows == 0 {
        return None;
    }
    let sql = format!(
        "INSERT INTO outbox_event (event_id, payment_id, merchant_id, topic, event_type, payload, created_at) VALUES {}",
        row_placeholders(rows, "(?,?,?,?,?,?,?)")
    );
    let mut params = Vec::with_capacity(rows * 7);
    for f in finals {
        for e in &f.events {
            params.extend([
                Value::UInt(e.event_id),
                Value::UInt(f.payment.payment_id),
                bytes(&f.payment.merchant_id),
                bytes(e.topic),
                bytes(e.event_type),
                Value::Bytes(e.payload.clone()),
                datetime(f.payment.at_ms),
            ]);
        }
    }
    Some((sql, Params::Positional(params)))
}

/// Completes the idempotency records. Written as an upsert so one statement covers the
/// whole batch; the row exists (reserved earlier), so it always takes the UPDATE branch,
/// and changes the row only while the writer still owns it.
fn finalize_idempotency(finals: &[&FinalizeOp], lease_ms: u64) -> (String, Params) {
    let sql = format!(
        "INSERT INTO idempotency_record (merchant_id, idempotency_key, request_fingerprint, state, owner_token, payment_id, \
         response_status, response_body, created_at, lease_until) VALUES {} \
         ON DUPLICATE KEY UPDATE state = IF(owner_token = VALUES(owner_token), VALUES(state), state), \
         response_status = IF(owner_token = VALUES(owner_token), VALUES(response_status), response_status), \
         response_body = IF(owner_token = VALUES(owner_token), VALUES(response_body), response_body)",
        row_placeholders(
            finals.len(),
            &format!("(?,?,?,'COMPLETED',?,?,?,?,UTC_TIMESTAMP(3),UTC_TIMESTAMP(3) + INTERVAL {} MICROSECOND)", lease_ms * 1000)
        )
    );
    let mut params = Vec::with_capacity(finals.len() * 7);
    for f in finals {
        params.extend([
            bytes(&f.payment.merchant_id),
            bytes(&f.payment.idempotency_key),
            bytes(&f.fingerprint),
            Value::Int(f.owner_token),
            Value::UInt(f.payment.payment_id),
            Value::UInt(u64::from(f.response_status)),
            Value::Bytes(f.response_body.clone()),
        ]);
    }
    (sql, Params::Positional(params))
}

/// Reserves keys; a key that exists already is left alone (`INSERT IGNORE`), and the
/// SELECT that follows tells each request whether the record is its own.
fn reserve_insert(reserves: &[&ReserveOp], lease_ms: u64) -> (String, Params) {
    let sql = format!(
        "INSERT IGNORE INTO idempotency_record (merchant_id, idempotency_key, request_fingerprint, state, owner_token, \
         payment_id, created_at, lease_until) VALUES {}",
        row_placeholders(
            reserves.len(),
            &format!("(?,?,?,'IN_PROGRESS',?,?,UTC_TIMESTAMP(3),UTC_TIMESTAMP(3) + INTERVAL {} MICROSECOND)", lease_ms * 1000)
        )
    );
    let mut params = Vec::with_capacity(reserves.len() * 5);
    for r in reserves {
        params.extend([
            bytes(&r.merchant_id),
            bytes(&r.idempotency_key),
            bytes(&r.fingerprint),
            Value::Int(r.owner_token),
            Value::UInt(r.payment_id),
        ]);
    }
    (sql, Params::Positional(params))
}

/// The idempotency records of `keys` (merchant, key), read for [`record_row`]; `locking`
/// inside the reserving transaction.
fn records_select(keys: &[(&str, &str)], locking: bool) -> (String, Params) {
    let sql = format!(
        "SELECT merchant_id, idempotency_key, request_fingerprint, state, owner_token, payment_id, response_status, \
         response_body, lease_until < UTC_TIMESTAMP(3) FROM idempotency_record WHERE (merchant_id, idempotency_key) IN ({}){}",
        row_placeholders(keys.len(), "(?,?)"),
        if locking { " LOCK IN SHARE MODE" } else { "" }
    );
    let mut params = Vec::with_capacity(keys.len() * 2);
    for (merchant, key) in keys {
        params.extend([bytes(merchant), bytes(key)]);
    }
    (sql, Params::Positional(params))
}
