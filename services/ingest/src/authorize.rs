//! `POST /api/payments/authorize`: the hot path.
//!
//! 1. One Redis round trip: rate limit, then a cached answer for the key (replay or 422).
//! 2. Reserve the key in MariaDB (group commit); someone else's record means replay, 422,
//!    409 in use, or — if its lease ran out — take it over.
//! 3. Call the PG through the circuit breaker with request id `auth-<paymentId>`.
//! 4. Write payment, history, outbox events and the completed idempotency record in one
//!    group-commit transaction; answer only after COMMIT; then cache the answer in Redis.

use crate::events::{self, Extra};
use crate::group_commit::{EventRow, FinalizeOp, PaymentRow, Reservation, ReserveOp};
use crate::idempotency::{self, encode_cached, fingerprint};
use crate::outcome::Outcome;
use crate::parse::{AuthorizeInput, CaptureMode};
use crate::rate_limit::{Action, Admission};
use crate::render::{self, Extras, PaymentView};
use crate::App;
use payrail_core::shard::shard_for_merchant;
use payrail_core::status::PaymentStatus;
use payrail_db::sequence::Kind;
use payrail_db::DbError;
use payrail_pg::{Operation, PgDecision, PgRequest};
use std::sync::Arc;
use std::time::Instant;

fn replay(app: &App, layer: &str, status: u16, body: &[u8]) -> Outcome {
    app.metrics
        .idempotent_replays
        .with_label_values(&[layer])
        .inc();
    let mut outcome = Outcome::with_status(status, body.to_vec());
    outcome.replayed = true;
    outcome
}

fn mismatch() -> Outcome {
    Outcome::error(
        422,
        "IDEMPOTENCY_KEY_MISMATCH",
        "this idempotency key was used with a different request body; use a new key for a new payment",
        None,
    )
}

fn in_use(payment_id: u64) -> Outcome {
    Outcome::error(
        409,
        "IDEMPOTENCY_KEY_IN_USE",
        "a request with this idempotency key is still being processed; retry shortly",
        Some(payment_id),
    )
    .retry_after(1)
}

/// 503 `PG_OUTCOME_UNKNOWN`: the PG's answer was lost and is being resolved.
pub fn unknown_outcome(payment_id: u64) -> Outcome {
    Outcome::error(
        503,
        "PG_OUTCOME_UNKNOWN",
        "the payment gateway's answer was lost; the outcome is being resolved: retry with the same idempotency key for the definitive answer",
        Some(payment_id),
    )
    .retry_after(1)
}

/// Decides what an existing record means for this request. `None`: the caller owns the
/// record now and goes on with the payment id inside.
async fn resolve(
    app: &App,
    shard: u16,
    input: &AuthorizeInput,
    fingerprint: &str,
    owner: i64,
    record: Reservation,
) -> Result<u64, Outcome> {
    if record.owner_token == owner {
        return Ok(record.payment_id);
    }
    if record.fingerprint != fingerprint {
        return Err(mismatch());
    }
    if record.state == "COMPLETED" {
        let status = record.response_status.unwrap_or(200);
        let body = record.response_body.unwrap_or_default();
        // Refill the cache so the next retry is answered by Redis.
        let key = app
            .redis
            .idempotency_key(&input.merchant_id, &input.idempotency_key);
        app.redis
            .store(
                &app.metrics,
                key,
                encode_cached(fingerprint, status, &body),
                app.config.idempotency.cache_ttl_seconds,
            )
            .await;
        return Err(replay(app, "mariadb", status, &body));
    }
    if record.state == "RESOLVING" {
        // The resolver is asking the PG (or voiding what nobody came back for).
        return Err(unknown_outcome(record.payment_id));
    }
    if !record.lease_expired {
        return Err(in_use(record.payment_id));
    }
    match idempotency::take_over(
        &app.shards,
        shard,
        &input.merchant_id,
        &input.idempotency_key,
        record.owner_token,
        owner,
        app.config.idempotency.lease_ms,
    )
    .await
    {
        Ok(true) => {
            tracing::info!(
                payment_id = record.payment_id,
                "took over an expired idempotency lease"
            );
            Ok(record.payment_id)
        }
        Ok(false) => Err(in_use(record.payment_id)),
        Err(error) => Err(Outcome::from_db(&error)),
    }
}

pub async fn authorize(app: Arc<App>, input: AuthorizeInput) -> Outcome {
    let shard = shard_for_merchant(&input.merchant_id, app.shards.count());
    let automatic = input.capture == CaptureMode::Automatic;
    let fingerprint = fingerprint(input.amount, &input.currency, automatic);
    let cache_key = app
        .redis
        .idempotency_key(&input.merchant_id, &input.idempotency_key);

    // 1. Rate limit and cached replay.
    match app
        .redis
        .admit(
            &app.metrics,
            Action::Authorize,
            app.config.rate_limits.authorize,
            &input.merchant_id,
            Some(&cache_key),
        )
        .await
    {
        Admission::Limited { retry_after_ms } => {
            return Outcome::error(429, "RATE_LIMIT_EXCEEDED", "authorize rate limit exceeded for this merchant; retry after the Retry-After delay", None)
                .retry_after(retry_after_ms.div_ceil(1000));
        }
        Admission::Cached(value) => {
            if let Some((cached_fingerprint, status, body)) = idempotency::decode_cached(&value) {
                if cached_fingerprint != fingerprint {
                    return mismatch();
                }
                return replay(&app, "redis", status, body);
            }
        }
        Admission::Allowed => {}
    }

    // 2. Reserve the key.
    let new_payment_id = match app
        .sequences
        .next_id(&app.shards, shard, Kind::Payment)
        .await
    {
        Ok(id) => id,
        Err(error) => return Outcome::from_db(&error),
    };
    let owner = app.owner_token();
    let reserve = ReserveOp {
        merchant_id: input.merchant_id.clone(),
        idempotency_key: input.idempotency_key.clone(),
        fingerprint: fingerprint.clone(),
        owner_token: owner,
        payment_id: new_payment_id,
    };
    let record = match app.group_commit.reserve(shard, reserve).await {
        Ok(record) => record,
        Err(error) => return Outcome::from_db(&error),
    };
    let payment_id = match resolve(&app, shard, &input, &fingerprint, owner, record).await {
        Ok(id) => id,
        Err(outcome) => return outcome,
    };

    // 3. The PG, through the breaker. Never inside a database transaction.
    let permit = match app.pg_breaker.try_acquire() {
        Ok(permit) => permit,
        Err(rejected) => {
            app.metrics
                .pg_calls
                .with_label_values(&["authorize", "breaker_open"])
                .inc();
            idempotency::release(
                &app.shards,
                shard,
                &input.merchant_id,
                &input.idempotency_key,
                owner,
            )
            .await;
            return Outcome::error(
                503,
                "PG_UNAVAILABLE",
                "the payment gateway is unavailable (circuit open); retry later",
                None,
            )
            .retry_after(rejected.retry_after_ms.div_ceil(1000));
        }
    };
    let request = PgRequest {
        request_id: format!("auth-{payment_id}"),
        merchant_id: input.merchant_id.clone(),
        payment_id,
        amount: input.amount,
        currency: input.currency.clone(),
    };
    let started = Instant::now();
    let result = app.pg.call(Operation::Authorize, &request).await;
    let elapsed = started.elapsed();
    app.pg_breaker
        .record(permit, result.is_ok(), elapsed.as_millis() as u64);
    app.metrics.pg_duration.observe(elapsed.as_secs_f64());
    let reply = match result {
        Ok(reply) => {
            app.metrics
                .pg_calls
                .with_label_values(&["authorize", "ok"])
                .inc();
            reply
        }
        Err(error) if error.outcome_unknown() => {
            // The PG may have authorized: a state, not a guess. The client's retry with
            // this key asks the PG again (same request id, so at most one authorization);
            // if it never comes, the resolver asks and voids what nobody is waiting for.
            app.metrics
                .pg_calls
                .with_label_values(&["authorize", "unknown"])
                .inc();
            app.metrics
                .pg_unknown_outcomes
                .with_label_values(&["authorize"])
                .inc();
            tracing::warn!(payment_id, %error, "pg authorization outcome unknown");
            idempotency::mark_unknown(
                &app.shards,
                shard,
                &input.merchant_id,
                &input.idempotency_key,
                owner,
            )
            .await;
            return unknown_outcome(payment_id);
        }
        Err(error) => {
            app.metrics
                .pg_calls
                .with_label_values(&["authorize", "error"])
                .inc();
            tracing::warn!(payment_id, %error, "pg authorization failed");
            idempotency::release(
                &app.shards,
                shard,
                &input.merchant_id,
                &input.idempotency_key,
                owner,
            )
            .await;
            return Outcome::error(
                503,
                "PG_UNAVAILABLE",
                "the payment gateway did not answer; retry with the same idempotency key",
                None,
            )
            .retry_after(1);
        }
    };

    // 4. One transaction: payment, history, outbox, idempotency record.
    let decided = Decided {
        payment_id,
        merchant_id: &input.merchant_id,
        idempotency_key: &input.idempotency_key,
        amount: input.amount,
        currency: &input.currency,
        automatic,
        fingerprint: &fingerprint,
        owner,
        pg: if reply.decision == PgDecision::Approved {
            PgOutcome::Approved
        } else {
            PgOutcome::Declined
        },
        approval_number: &reply.approval_number,
        transaction_id: &reply.transaction_id,
        decline_reason: reply.decline_reason.as_deref(),
    };
    let (response_status, body) = match commit(&app, shard, &decided).await {
        Ok(answer) => answer,
        Err(DbError::Duplicate { .. }) => {
            // Another owner (after a lease takeover) finished first: answer what it stored.
            return match idempotency::read(
                &app.shards,
                shard,
                &input.merchant_id,
                &input.idempotency_key,
            )
            .await
            {
                Ok(Some(record)) if record.state == "COMPLETED" => replay(
                    &app,
                    "mariadb",
                    record.response_status.unwrap_or(200),
                    &record.response_body.unwrap_or_default(),
                ),
                Ok(_) => in_use(payment_id),
                Err(error) => Outcome::from_db(&error),
            };
        }
        Err(error) => return Outcome::from_db(&error),
    };

    // Committed: now (and only now) cache the answer.
    let cached = encode_cached(&fingerprint, response_status, &body);
    let cache_app = app.clone();
    tokio::spawn(async move {
        cache_app
            .redis
            .store(
                &cache_app.metrics,
                cache_key,
                cached,
                cache_app.config.idempotency.cache_ttl_seconds,
            )
            .await;
    });
    Outcome::with_status(response_status, body)
}

/// What the PG decided for an authorization, as far as the payment row is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgOutcome {
    Approved,
    Declined,
    /// The resolver found no PG record: the request never reached the PG.
    NotApplied,
    /// The resolver found an approval nobody came back for, and voided it at the PG.
    ApprovedThenVoided,
    /// The resolver found an approval nobody came back for, and the PG refused the void.
    ApprovedVoidRefused,
}

/// One authorization's decision, ready to be committed.
pub struct Decided<'a> {
    pub payment_id: u64,
    pub merchant_id: &'a str,
    pub idempotency_key: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub automatic: bool,
    pub fingerprint: &'a str,
    /// The idempotency record's owner token (the request's, or the resolver's).
    pub owner: i64,
    pub pg: PgOutcome,
    pub approval_number: &'a str,
    pub transaction_id: &'a str,
    pub decline_reason: Option<&'a str>,
}

/// Writes the payment, its history, its outbox events and the completed idempotency record
/// in one group-commit transaction, and returns the answer stored with the key. The
/// authorize path and the resolver both end here, so a client's retry gets the same answer
/// whoever decided.
pub async fn commit(app: &App, shard: u16, d: &Decided<'_>) -> Result<(u16, Vec<u8>), DbError> {
    let now = payrail_core::time::now_ms();
    let approved = matches!(
        d.pg,
        PgOutcome::Approved | PgOutcome::ApprovedThenVoided | PgOutcome::ApprovedVoidRefused
    );
    let status = match d.pg {
        PgOutcome::Declined => PaymentStatus::Declined,
        PgOutcome::NotApplied => PaymentStatus::Failed,
        PgOutcome::ApprovedThenVoided => PaymentStatus::Voided,
        PgOutcome::ApprovedVoidRefused => PaymentStatus::VoidFailed,
        PgOutcome::Approved if d.automatic => PaymentStatus::CaptureRequested,
        PgOutcome::Approved => PaymentStatus::Authorized,
    };
    let view = PaymentView {
        payment_id: d.payment_id,
        merchant_id: d.merchant_id.to_owned(),
        status,
        amount: d.amount,
        captured_amount: 0,
        capture_requested_amount: if status == PaymentStatus::CaptureRequested {
            d.amount
        } else {
            0
        },
        refunded_amount: 0,
        currency: d.currency.to_owned(),
        approval_number: approved.then(|| d.approval_number.to_owned()),
        created_at_ms: now,
        updated_at_ms: now,
    };
    let mut history = Vec::with_capacity(2);
    let mut kinds: Vec<(&'static str, &'static str)> = Vec::with_capacity(2);
    if approved {
        history.push(PaymentStatus::Authorized.as_str());
        kinds.push((events::TOPIC_AUTHORIZED, events::TYPE_AUTHORIZED));
    }
    match status {
        PaymentStatus::CaptureRequested => kinds.push((
            events::TOPIC_CAPTURE_REQUESTED,
            events::TYPE_CAPTURE_REQUESTED,
        )),
        PaymentStatus::Voided => kinds.push((events::TOPIC_VOIDED, events::TYPE_VOIDED)),
        _ => {}
    }
    if status != PaymentStatus::Authorized {
        history.push(status.as_str());
    }
    let mut event_ids = Vec::with_capacity(kinds.len());
    if !kinds.is_empty() {
        app.sequences
            .next_ids(&app.shards, shard, Kind::Event, kinds.len(), &mut event_ids)
            .await?;
    }
    let extra = [
        ("approvalNumber", Extra::Text(d.approval_number)),
        ("transactionId", Extra::Text(d.transaction_id)),
        ("reason", Extra::Text(events::VOID_REASON_ABANDONED)),
    ];
    let events: Vec<EventRow> = kinds
        .iter()
        .zip(&event_ids)
        .map(|(&(topic, event_type), &event_id)| {
            // The authorized event names the authorization; a void event also says why.
            let extra = if event_type == events::TYPE_VOIDED {
                &extra[..]
            } else {
                &extra[..2]
            };
            // The authorized event announces AUTHORIZED whatever followed it.
            let status = if event_type == events::TYPE_AUTHORIZED {
                PaymentStatus::Authorized
            } else {
                view.status
            };
            EventRow {
                event_id,
                topic,
                event_type,
                payload: events::payload(event_id, event_type, &view, status, d.amount, now, extra),
            }
        })
        .collect();
    let (response_status, body) = match d.pg {
        PgOutcome::Declined => {
            let message = format!(
                "the issuer declined the authorization: {}",
                d.decline_reason.unwrap_or("declined")
            );
            let outcome = Outcome::error_with(
                402,
                "PAYMENT_DECLINED",
                &message,
                Some(d.payment_id),
                &[],
                Some("DECLINED"),
            );
            (402, outcome.body)
        }
        PgOutcome::NotApplied => {
            let outcome = Outcome::error_with(
                402,
                "PAYMENT_FAILED",
                "the authorization never reached the payment gateway and nothing was authorized; use a new idempotency key to try again",
                Some(d.payment_id),
                &[],
                Some("FAILED"),
            );
            (402, outcome.body)
        }
        _ => {
            let mut body = Vec::with_capacity(384);
            let message = match status {
                PaymentStatus::CaptureRequested => "authorized and capture requested",
                PaymentStatus::Voided => "authorized, then voided: the answer was lost and the client did not come back in time",
                PaymentStatus::VoidFailed => "authorized; the answer was lost and the payment gateway refused to void it",
                _ => "authorized",
            };
            render::payment(
                &mut body,
                &view,
                &Extras {
                    refunds: None,
                    history: None,
                    ledger: None,
                    message,
                },
            );
            (200, body)
        }
    };
    let finalize = FinalizeOp {
        payment: PaymentRow {
            payment_id: d.payment_id,
            merchant_id: d.merchant_id.to_owned(),
            status: status.as_str(),
            amount: d.amount,
            capture_requested_amount: view.capture_requested_amount,
            currency: d.currency.to_owned(),
            idempotency_key: d.idempotency_key.to_owned(),
            approval_number: view.approval_number.clone(),
            pg_transaction_id: (d.pg != PgOutcome::NotApplied).then(|| d.transaction_id.to_owned()),
            at_ms: now,
        },
        history,
        events,
        fingerprint: d.fingerprint.to_owned(),
        owner_token: d.owner,
        response_status,
        response_body: body.clone(),
    };
    app.group_commit.finalize(shard, finalize).await?;
    Ok((response_status, body))
}
