//! Capture, refund, void and the read API.
//!
//! Every state change is one short transaction on the payment's shard: a conditional
//! UPDATE (`… WHERE status = <expected>`, plus the amount bounds) whose affected-row count
//! decides, then the history row and the outbox event, then COMMIT. Two concurrent
//! captures, a capture racing a void, or two refunds summing past the captured amount:
//! exactly one UPDATE matches, the others get 409. The schema's CHECK constraint backs the
//! amount rules up. (InnoDB already shares one fsync among concurrently committing
//! transactions, so these single-request transactions still commit in groups.)

use crate::events::{self, Extra};
use crate::outcome::Outcome;
use crate::parse::{CaptureInput, RefundInput, VoidInput};
use crate::rate_limit::{Action, Admission};
use crate::render::{self, Extras, HistoryView, LedgerView, PaymentView, RefundView};
use crate::App;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, TxOpts, Value};
use payrail_core::status::PaymentStatus;
use payrail_db::sequence::Kind;
use payrail_db::{datetime, epoch_ms, DbError};
use payrail_http::error_body::Detail;
use std::sync::Arc;

/// A refund asked for while its capture settles: the settlement worker moves it to
/// `REQUESTED` (and announces it) once the PG has captured, or to `CANCELLED`.
const REFUND_AWAITING_CAPTURE: &str = "AWAITING_CAPTURE";

const PAYMENT_COLUMNS: &str =
    "payment_id, merchant_id, status, amount, captured_amount, refunded_amount, currency, \
                               approval_number, created_at, updated_at, refund_pending_amount, capture_requested_amount";
/// The number of columns in [`PAYMENT_COLUMNS`]: a query that selects more after them
/// reads its own from this index on.
const PAYMENT_COLUMN_COUNT: usize = 12;

struct Loaded {
    view: PaymentView,
    refund_pending_amount: i64,
}

fn text(row: &mut Row, index: usize) -> String {
    match row.take::<Value, _>(index) {
        Some(Value::Bytes(bytes)) => String::from_utf8(bytes).unwrap_or_default(),
        _ => String::new(),
    }
}

fn payment_from_row(mut row: Row) -> Option<Loaded> {
    let payment_id: u64 = row.take(0)?;
    let merchant_id = text(&mut row, 1);
    let status = PaymentStatus::parse(&text(&mut row, 2))?;
    let amount: i64 = row.take(3)?;
    let captured_amount: i64 = row.take(4)?;
    let refunded_amount: i64 = row.take(5)?;
    let currency = text(&mut row, 6);
    let approval_number: Option<String> = row.take(7)?;
    let created: Value = row.take(8)?;
    let updated: Value = row.take(9)?;
    let refund_pending_amount: i64 = row.take(10)?;
    let capture_requested_amount: i64 = row.take(11)?;
    Some(Loaded {
        view: PaymentView {
            payment_id,
            merchant_id,
            status,
            amount,
            captured_amount,
            capture_requested_amount,
            refunded_amount,
            currency,
            approval_number,
            created_at_ms: epoch_ms(&created),
            updated_at_ms: epoch_ms(&updated),
        },
        refund_pending_amount,
    })
}

async fn load_payment<Q: Queryable>(
    q: &mut Q,
    shard: u16,
    payment_id: u64,
    for_update: bool,
) -> Result<Option<Loaded>, DbError> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payment WHERE payment_id = ?{}",
        if for_update { " FOR UPDATE" } else { "" }
    );
    let row: Option<Row> = q
        .exec_first(sql, (payment_id,))
        .await
        .map_err(|e| DbError::classify(shard, e))?;
    Ok(row.and_then(payment_from_row))
}

/// A payment's refunds, state history and ledger lines.
struct Details {
    refunds: Vec<RefundView>,
    history: Vec<HistoryView>,
    ledger: Vec<LedgerView>,
}

/// One round trip for all three lists: refunds (kind 1), history (2) and ledger lines (3),
/// in one `UNION ALL` with a shared column layout, ordered by kind and then by row id.
async fn load_details<Q: Queryable>(
    q: &mut Q,
    shard: u16,
    payment_id: u64,
) -> Result<Details, DbError> {
    let rows: Vec<Row> = q
        .exec(
            "SELECT 1 AS kind, refund_id AS ord, amount AS n1, 0 AS n2, status AS s1, reason AS s2, created_at AS at FROM refund WHERE payment_id = ? \
             UNION ALL SELECT 2, id, 0, 0, status, '', at FROM payment_status_history WHERE payment_id = ? \
             UNION ALL SELECT 3, entry_id, debit, credit, account, currency, at FROM ledger_entry WHERE payment_id = ? \
             ORDER BY kind, ord",
            (payment_id, payment_id, payment_id),
        )
        .await
        .map_err(|e| DbError::classify(shard, e))?;
    let mut details = Details {
        refunds: Vec::new(),
        history: Vec::new(),
        ledger: Vec::new(),
    };
    for mut row in rows {
        let at_ms = row
            .take::<Value, _>(6)
            .map(|v| epoch_ms(&v))
            .unwrap_or_default();
        match row.take::<i64, _>(0) {
            Some(1) => details.refunds.push(RefundView {
                refund_id: row.take(1).unwrap_or_default(),
                amount: row.take(2).unwrap_or_default(),
                status: text(&mut row, 4),
                reason: text(&mut row, 5),
                created_at_ms: at_ms,
            }),
            Some(2) => details.history.push(HistoryView {
                status: text(&mut row, 4),
                at_ms,
            }),
            Some(3) => details.ledger.push(LedgerView {
                account: text(&mut row, 4),
                debit: row.take(2).unwrap_or_default(),
                credit: row.take(3).unwrap_or_default(),
                currency: text(&mut row, 5),
                at_ms,
            }),
            _ => {}
        }
    }
    Ok(details)
}

fn full_body(view: &PaymentView, details: &Details, message: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(1024);
    render::payment(
        &mut body,
        view,
        &Extras {
            refunds: Some(&details.refunds),
            history: Some(&details.history),
            ledger: Some(&details.ledger),
            message,
        },
    );
    body
}

async fn rate_limited(app: &App, action: Action, merchant_id: &str) -> Option<Outcome> {
    let limit = match action {
        Action::Authorize => app.config.rate_limits.authorize,
        Action::Capture => app.config.rate_limits.capture,
        Action::Refund => app.config.rate_limits.refund,
    };
    match app
        .redis
        .admit(&app.metrics, action, limit, merchant_id, None)
        .await
    {
        Admission::Limited { retry_after_ms } => Some(
            Outcome::error(
                429,
                "RATE_LIMIT_EXCEEDED",
                &format!(
                    "{} rate limit exceeded for this merchant; retry after the Retry-After delay",
                    action.as_str()
                ),
                None,
            )
            .retry_after(retry_after_ms.div_ceil(1000)),
        ),
        _ => None,
    }
}

/// The part of a state change every transition shares: history row and outbox event.
async fn record_transition<Q: Queryable>(
    q: &mut Q,
    shard: u16,
    view: &PaymentView,
    event: (u64, &'static str, &'static str),
    event_amount: i64,
    now: i64,
    extra: &[(&str, Extra<'_>)],
) -> Result<(), DbError> {
    payrail_db::history::append(q, shard, view.payment_id, view.status.as_str(), now).await?;
    let (event_id, topic, event_type) = event;
    let event = payrail_core::event::Event {
        event_id,
        event_type,
        payment_id: view.payment_id,
        merchant_id: &view.merchant_id,
        amount: event_amount,
        currency: &view.currency,
        status: view.status.as_str(),
        occurred_at_ms: now,
        extra,
    };
    payrail_outbox::insert(q, shard, topic, &event).await
}

/// Why a conditional update matched nothing: 404 for a missing or foreign payment, else
/// the conflict with the payment's current status.
fn explain(
    loaded: Option<Loaded>,
    merchant_id: &str,
    conflict: impl FnOnce(&Loaded) -> Outcome,
) -> Outcome {
    match loaded {
        Some(l) if l.view.merchant_id == merchant_id => conflict(&l),
        _ => Outcome::not_found(),
    }
}

/// One conditional state change shared by capture and void: the UPDATE decides (by its
/// affected-row count), then the history row and the outbox event, in one transaction.
struct Transition<C> {
    /// `UPDATE payment … WHERE payment_id = ? AND merchant_id = ? AND status = <expected> …`
    update_sql: &'static str,
    update_params: mysql_async::Params,
    event: (&'static str, &'static str),
    /// The amount the event moves, from the payment after the change.
    event_amount: fn(&PaymentView) -> i64,
    /// Extra fields of the event.
    extra: &'static [(&'static str, Extra<'static>)],
    message: &'static str,
    /// The answer when the UPDATE matched nothing and the payment is the merchant's.
    conflict: C,
}

async fn transition<C: FnOnce(&Loaded) -> Outcome + Send>(
    app: &App,
    shard: u16,
    payment_id: u64,
    merchant_id: &str,
    now: i64,
    t: Transition<C>,
) -> Outcome {
    let event_id = match app.sequences.next_id(&app.shards, shard, Kind::Event).await {
        Ok(id) => id,
        Err(error) => return Outcome::from_db(&error),
    };
    let result = app
        .shards
        .bounded(shard, async {
            let classify = |e| DbError::classify(shard, e);
            let mut conn = app.shards.conn(shard).await?;
            let mut tx = conn
                .start_transaction(TxOpts::default())
                .await
                .map_err(classify)?;
            tx.exec_drop(t.update_sql, t.update_params)
                .await
                .map_err(classify)?;
            if tx.affected_rows() != 1 {
                let loaded = load_payment(&mut tx, shard, payment_id, false).await?;
                tx.rollback().await.map_err(classify)?;
                return Ok(explain(loaded, merchant_id, t.conflict));
            }
            let view = load_payment(&mut tx, shard, payment_id, false)
                .await?
                .ok_or(DbError::Query {
                    shard,
                    message: "changed payment vanished".into(),
                })?
                .view;
            assert!(
                view.capture_requested_amount <= view.amount,
                "capture requested above the authorization"
            );
            let (topic, event_type) = t.event;
            record_transition(
                &mut tx,
                shard,
                &view,
                (event_id, topic, event_type),
                (t.event_amount)(&view),
                now,
                t.extra,
            )
            .await?;
            let details = load_details(&mut tx, shard, payment_id).await?;
            tx.commit().await.map_err(classify)?;
            app.outbox_committed(shard);
            Ok(Outcome::ok(full_body(&view, &details, t.message)))
        })
        .await;
    result.unwrap_or_else(|error| Outcome::from_db(&error))
}

pub async fn capture(app: Arc<App>, shard: u16, payment_id: u64, input: CaptureInput) -> Outcome {
    if let Some(limited) = rate_limited(&app, Action::Capture, &input.merchant_id).await {
        return limited;
    }
    let now = payrail_core::time::now_ms();
    let update = Transition {
        update_sql: "UPDATE payment SET status = 'CAPTURE_REQUESTED', capture_requested_amount = COALESCE(?, amount), updated_at = ? \
                     WHERE payment_id = ? AND merchant_id = ? AND status = 'AUTHORIZED' AND COALESCE(?, amount) <= amount",
        update_params: (input.amount, datetime(now), payment_id, input.merchant_id.as_bytes(), input.amount).into(),
        event: (events::TOPIC_CAPTURE_REQUESTED, events::TYPE_CAPTURE_REQUESTED),
        event_amount: |view| view.capture_requested_amount,
        extra: &[],
        message: "capture requested",
        conflict: |l: &Loaded| {
            if l.view.status == PaymentStatus::Authorized {
                Outcome::error_with(
                    400,
                    "VALIDATION_FAILED",
                    "amount exceeds the authorized amount",
                    Some(payment_id),
                    &[Detail { field: "amount", problem: "must not exceed the authorized amount" }],
                    None,
                )
            } else {
                Outcome::conflict("CAPTURE_CONFLICT", "only an AUTHORIZED payment can be captured", payment_id, l.view.status.as_str())
            }
        },
    };
    transition(&app, shard, payment_id, &input.merchant_id, now, update).await
}

/// `VOID_REQUESTED` and a `payment.void-requested` event: the settlement worker voids at
/// the PG (request id `void-<paymentId>`) and only then is the payment `VOIDED` and the
/// ledger's hold released. The PG is never called inside this transaction.
pub async fn void(app: Arc<App>, shard: u16, payment_id: u64, input: VoidInput) -> Outcome {
    let now = payrail_core::time::now_ms();
    let update = Transition {
        update_sql: "UPDATE payment SET status = 'VOID_REQUESTED', updated_at = ? WHERE payment_id = ? AND merchant_id = ? AND status = 'AUTHORIZED'",
        update_params: (datetime(now), payment_id, input.merchant_id.as_bytes()).into(),
        event: (events::TOPIC_VOID_REQUESTED, events::TYPE_VOID_REQUESTED),
        event_amount: |view| view.amount,
        extra: &[("reason", Extra::Text(events::VOID_REASON_MERCHANT))],
        message: "void requested",
        conflict: |l: &Loaded| Outcome::conflict("VOID_CONFLICT", "only an AUTHORIZED payment can be voided", payment_id, l.view.status.as_str()),
    };
    transition(&app, shard, payment_id, &input.merchant_id, now, update).await
}

/// Authorization expiry: an `AUTHORIZED` payment untouched since `before_ms` is voided at
/// the PG like a merchant's void, and ends `EXPIRED`. The conditional update makes a
/// racing capture or void (or another ingest instance's sweep) win or lose cleanly.
pub async fn expire(
    app: &App,
    shard: u16,
    payment_id: u64,
    merchant_id: &str,
    before_ms: i64,
) -> Outcome {
    let now = payrail_core::time::now_ms();
    let update = Transition {
        update_sql: "UPDATE payment SET status = 'VOID_REQUESTED', updated_at = ? WHERE payment_id = ? AND merchant_id = ? AND status = 'AUTHORIZED' AND updated_at < ?",
        update_params: (datetime(now), payment_id, merchant_id.as_bytes(), datetime(before_ms)).into(),
        event: (events::TOPIC_VOID_REQUESTED, events::TYPE_VOID_REQUESTED),
        event_amount: |view| view.amount,
        extra: &[("reason", Extra::Text(events::VOID_REASON_EXPIRED))],
        message: "expiry requested",
        conflict: |l: &Loaded| Outcome::conflict("VOID_CONFLICT", "no longer an expirable authorization", payment_id, l.view.status.as_str()),
    };
    transition(app, shard, payment_id, merchant_id, now, update).await
}

fn refund_fingerprint(input: &RefundInput) -> String {
    match input.amount {
        Some(amount) => format!("{amount}|{}", input.reason),
        None => format!("rest|{}", input.reason),
    }
}

pub async fn refund(app: Arc<App>, shard: u16, payment_id: u64, input: RefundInput) -> Outcome {
    if let Some(limited) = rate_limited(&app, Action::Refund, &input.merchant_id).await {
        return limited;
    }
    let mut ids = Vec::with_capacity(2);
    if let Err(error) = app
        .sequences
        .next_ids(&app.shards, shard, Kind::Event, 1, &mut ids)
        .await
    {
        return Outcome::from_db(&error);
    }
    if let Err(error) = app
        .sequences
        .next_ids(&app.shards, shard, Kind::Refund, 1, &mut ids)
        .await
    {
        return Outcome::from_db(&error);
    }
    let (event_id, refund_id) = (ids[0], ids[1]);
    let fingerprint = refund_fingerprint(&input);
    let result = app
        .shards
        .bounded(shard, async {
            let classify = |e| DbError::classify(shard, e);
            let mut conn = app.shards.conn(shard).await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(classify)?;
            // The payment row lock orders concurrent refunds of one payment, so the
            // idempotency check cannot race its own insert. The same round trip reads the
            // refund this key made before, if any (fingerprint and first answer): in
            // subqueries correlated with the locked row, so they run once its lock is held
            // (uncorrelated, MariaDB evaluated them before the lock wait, and of six
            // concurrent retries with one key the waiters missed the first one's refund).
            let key = input.idempotency_key.as_deref().map(str::as_bytes);
            let row: Option<Row> = tx
                .exec_first(
                    format!(
                        "SELECT {PAYMENT_COLUMNS}, \
                         (SELECT r.request_fingerprint FROM refund r WHERE r.payment_id = payment.payment_id AND r.idempotency_key = ?), \
                         (SELECT r.response_body FROM refund r WHERE r.payment_id = payment.payment_id AND r.idempotency_key = ?) \
                         FROM payment WHERE payment_id = ? FOR UPDATE"
                    ),
                    (key, key, payment_id),
                )
                .await
                .map_err(classify)?;
            let Some((loaded, existing)) = row.and_then(|mut row| {
                let fingerprint: Option<String> = row.take(PAYMENT_COLUMN_COUNT)?;
                let first_answer: Option<Vec<u8>> = row.take(PAYMENT_COLUMN_COUNT + 1)?;
                Some((payment_from_row(row)?, fingerprint.map(|f| (f, first_answer))))
            }) else {
                tx.rollback().await.map_err(classify)?;
                return Ok(Outcome::not_found());
            };
            if loaded.view.merchant_id != input.merchant_id {
                tx.rollback().await.map_err(classify)?;
                return Ok(Outcome::not_found());
            }
            // A key's earlier refund (none without a key: the subqueries matched nothing).
            if let Some((existing, first_answer)) = existing {
                if existing != fingerprint {
                    tx.rollback().await.map_err(classify)?;
                    return Ok(Outcome::error(422, "IDEMPOTENCY_KEY_MISMATCH", "this refund idempotency key was used with a different amount or reason", Some(payment_id)));
                }
                app.metrics.idempotent_replays.with_label_values(&["refund"]).inc();
                // The first answer, byte for byte, whatever happened to the payment since.
                // (Refunds written before schema version 3 kept no answer: render now.)
                let body = match first_answer {
                    Some(body) => body,
                    None => {
                        let details = load_details(&mut tx, shard, payment_id).await?;
                        full_body(&loaded.view, &details, "refund requested")
                    }
                };
                tx.rollback().await.map_err(classify)?;
                let mut outcome = Outcome::ok(body);
                outcome.replayed = true;
                return Ok(outcome);
            }
            let status = loaded.view.status;
            // While the capture settles the refund is accepted against what the capture
            // asked for and waits (AWAITING_CAPTURE); the settlement worker hands it on
            // once the PG has captured, or cancels it if the capture fails for good.
            let settling = status == PaymentStatus::CaptureRequested;
            if !settling && !matches!(status, PaymentStatus::Captured | PaymentStatus::PartiallyRefunded | PaymentStatus::RefundRequested | PaymentStatus::RefundFailed) {
                tx.rollback().await.map_err(classify)?;
                return Ok(Outcome::conflict("REFUND_CONFLICT", "only a captured payment (or one whose capture is settling) can be refunded", payment_id, status.as_str()));
            }
            let ceiling = if settling { loaded.view.capture_requested_amount } else { loaded.view.captured_amount };
            let refundable = ceiling - loaded.view.refunded_amount - loaded.refund_pending_amount;
            let amount = input.amount.unwrap_or(refundable);
            if refundable <= 0 || amount > refundable {
                tx.rollback().await.map_err(classify)?;
                let message = if refundable <= 0 { "nothing refundable remains".to_owned() } else { format!("amount exceeds the refundable remainder of {refundable}") };
                return Ok(Outcome::conflict("REFUND_CONFLICT", &message, payment_id, status.as_str()));
            }
            let now = payrail_core::time::now_ms();
            let reserve = if settling {
                "UPDATE payment SET refund_pending_amount = refund_pending_amount + ?, updated_at = ? \
                 WHERE payment_id = ? AND status = 'CAPTURE_REQUESTED' \
                 AND refunded_amount + refund_pending_amount + ? <= capture_requested_amount"
            } else {
                "UPDATE payment SET status = 'REFUND_REQUESTED', refund_pending_amount = refund_pending_amount + ?, updated_at = ? \
                 WHERE payment_id = ? AND status IN ('CAPTURED', 'PARTIALLY_REFUNDED', 'REFUND_REQUESTED', 'REFUND_FAILED') \
                 AND refunded_amount + refund_pending_amount + ? <= captured_amount"
            };
            tx.exec_drop(reserve, (amount, datetime(now), payment_id, amount))
                .await
                .map_err(classify)?;
            if tx.affected_rows() != 1 {
                tx.rollback().await.map_err(classify)?;
                return Ok(Outcome::conflict("REFUND_CONFLICT", "the payment changed; nothing refundable for this amount", payment_id, status.as_str()));
            }
            // The answer is rendered before the refund row is written, so the row carries
            // it (the first answer a retry with this key gets back) and needs no second
            // write: the lists as they are, plus what this transaction adds, in the order a
            // read after it would give (refunds by id, history by insertion).
            let refund_status = if settling { REFUND_AWAITING_CAPTURE } else { "REQUESTED" };
            let mut details = load_details(&mut tx, shard, payment_id).await?;
            let at = details.refunds.partition_point(|r| r.refund_id < refund_id);
            details.refunds.insert(
                at,
                RefundView {
                    refund_id,
                    amount,
                    status: refund_status.to_owned(),
                    reason: input.reason.clone(),
                    created_at_ms: now,
                },
            );
            let mut view = loaded.view;
            view.updated_at_ms = now;
            let message = if settling {
                "refund accepted; it goes to the PG once the capture has settled"
            } else {
                view.status = PaymentStatus::RefundRequested;
                details.history.push(HistoryView {
                    status: view.status.as_str().to_owned(),
                    at_ms: now,
                });
                "refund requested"
            };
            let body = full_body(&view, &details, message);
            tx.exec_drop(
                "INSERT INTO refund (refund_id, payment_id, merchant_id, amount, status, reason, idempotency_key, request_fingerprint, created_at, updated_at, request_event_id, response_body) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    refund_id,
                    payment_id,
                    input.merchant_id.as_bytes(),
                    amount,
                    refund_status,
                    input.reason.as_str(),
                    input.idempotency_key.as_deref().map(str::as_bytes),
                    fingerprint.as_str(),
                    datetime(now),
                    datetime(now),
                    event_id,
                    input.idempotency_key.is_some().then_some(body.as_slice()),
                ),
            )
            .await
            .map_err(classify)?;
            if !settling {
                let extra = [("refundId", Extra::Number(refund_id as i64)), ("reason", Extra::Text(&input.reason))];
                record_transition(&mut tx, shard, &view, (event_id, events::TOPIC_REFUND_REQUESTED, events::TYPE_REFUND_REQUESTED), amount, now, &extra).await?;
            }
            tx.commit().await.map_err(classify)?;
            app.outbox_committed(shard);
            Ok(Outcome::ok(body))
        })
        .await;
    match result {
        Ok(outcome) => outcome,
        Err(DbError::Duplicate { .. }) => Outcome::error(
            409,
            "IDEMPOTENCY_KEY_IN_USE",
            "a refund with this idempotency key is being processed; retry shortly",
            Some(payment_id),
        )
        .retry_after(1),
        Err(error) => Outcome::from_db(&error),
    }
}

pub async fn get(app: Arc<App>, shard: u16, payment_id: u64, merchant_id: String) -> Outcome {
    let result = app
        .shards
        .bounded(shard, async {
            let mut conn = app.shards.conn(shard).await?;
            let Some(loaded) = load_payment(&mut conn, shard, payment_id, false).await? else {
                return Ok(Outcome::not_found());
            };
            if loaded.view.merchant_id != merchant_id {
                return Ok(Outcome::not_found());
            }
            let details = load_details(&mut conn, shard, payment_id).await?;
            Ok(Outcome::ok(full_body(&loaded.view, &details, "ok")))
        })
        .await;
    result.unwrap_or_else(|error| Outcome::from_db(&error))
}

pub struct ListQuery {
    pub merchant_id: String,
    pub status: Option<PaymentStatus>,
    pub limit: u32,
    pub cursor: Option<u64>,
}

pub async fn list(app: Arc<App>, query: ListQuery) -> Outcome {
    let shard = payrail_core::shard::shard_for_merchant(&query.merchant_id, app.shards.count());
    let result = app
        .shards
        .bounded(shard, async {
            let mut conn = app.shards.conn(shard).await?;
            let mut sql = format!("SELECT {PAYMENT_COLUMNS} FROM payment WHERE merchant_id = ?");
            let mut params: Vec<Value> = vec![Value::Bytes(query.merchant_id.as_bytes().to_vec())];
            if let Some(status) = query.status {
                sql.push_str(" AND status = ?");
                params.push(Value::Bytes(status.as_str().as_bytes().to_vec()));
            }
            if let Some(cursor) = query.cursor {
                sql.push_str(" AND payment_id < ?");
                params.push(Value::UInt(cursor));
            }
            sql.push_str(" ORDER BY payment_id DESC LIMIT ?");
            params.push(Value::UInt(u64::from(query.limit) + 1));
            let rows: Vec<Row> = conn
                .exec(sql, params)
                .await
                .map_err(|e| DbError::classify(shard, e))?;
            let mut payments: Vec<PaymentView> = rows
                .into_iter()
                .filter_map(payment_from_row)
                .map(|l| l.view)
                .collect();
            let next_cursor = if payments.len() > query.limit as usize {
                payments.truncate(query.limit as usize);
                payments.last().map(|p| p.payment_id)
            } else {
                None
            };
            let mut body = Vec::with_capacity(64 + payments.len() * 360);
            body.extend_from_slice(b"{\"payments\":[");
            for (i, p) in payments.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                render::payment(
                    &mut body,
                    p,
                    &Extras {
                        refunds: None,
                        history: None,
                        ledger: None,
                        message: "ok",
                    },
                );
            }
            body.extend_from_slice(b"],\"nextCursor\":");
            match next_cursor {
                Some(c) => {
                    body.push(b'"');
                    body.extend_from_slice(itoa::Buffer::new().format(c).as_bytes());
                    body.push(b'"');
                }
                None => body.extend_from_slice(b"null"),
            }
            body.push(b'}');
            Ok(Outcome::ok(body))
        })
        .await;
    result.unwrap_or_else(|error| Outcome::from_db(&error))
}
