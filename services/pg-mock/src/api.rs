//! pg-mock's HTTP routes.

use crate::config::{Behaviour, Config};
use crate::ledger::Ledger;
use parking_lot::Mutex;
use payrail_http::{error_body, Handler, Request, Response};
use payrail_pg::{Operation, PgRequest};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What an override applies to: (merchant, operation), `None` meaning any.
type Scope = (Option<String>, Option<Operation>);

pub struct Api {
    ledger: Mutex<Ledger>,
    /// The configured behaviour, replaceable at run time.
    behaviour: Mutex<Behaviour>,
    /// Overrides set through `POST /v1/control`, per (merchant, operation); `None` is "any".
    overrides: Mutex<HashMap<Scope, Behaviour>>,
    /// Calls received per operation (`Operation::ALL` order), failures injected included:
    /// tests assert "the PG was called once", not only "one record exists".
    calls: [AtomicU64; 4],
    failures: [AtomicU64; 4],
    /// Calls applied whose answer was then lost (apply-then-fail and apply-then-drop).
    lost_answers: [AtomicU64; 4],
    /// splitmix64 state: a lock-free random source (may coroutines must not hold
    /// thread-local state across yields, so no thread-local RNG here).
    random: AtomicU64,
}

/// `POST /v1/control`: change behaviour for one merchant and/or one operation
/// (`authorize`, `capture`, `refund`, `void`), or for everything when both are absent.
/// `reset: true` drops every override first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Control {
    merchant_id: Option<String>,
    operation: Option<String>,
    #[serde(default)]
    reset: bool,
    apply_then_fail_rate: Option<f64>,
    apply_then_drop_rate: Option<f64>,
    latency_min_ms: Option<u64>,
    latency_max_ms: Option<u64>,
    failure_rate: Option<f64>,
    decline_rate: Option<f64>,
}

fn op_index(op: Operation) -> usize {
    match op {
        Operation::Authorize => 0,
        Operation::Capture => 1,
        Operation::Refund => 2,
        Operation::Void => 3,
    }
}

impl Api {
    pub fn new(config: Config, ledger: Ledger) -> Self {
        Self {
            ledger: Mutex::new(ledger),
            behaviour: Mutex::new(config.behaviour),
            overrides: Mutex::new(HashMap::new()),
            calls: Default::default(),
            failures: Default::default(),
            lost_answers: Default::default(),
            random: AtomicU64::new(payrail_core::time::now_ms() as u64 | 1),
        }
    }

    /// A uniform number in [0, 1).
    fn uniform(&self) -> f64 {
        let mut z = self
            .random
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The most specific override: (merchant, operation), then (merchant, any), then
    /// (any, operation), then the configured behaviour.
    fn behaviour_for(&self, merchant_id: Option<&str>, operation: Option<Operation>) -> Behaviour {
        let overrides = self.overrides.lock();
        let merchant = merchant_id.map(str::to_owned);
        let candidates = [
            (merchant.clone(), operation),
            (merchant, None),
            (None, operation),
        ];
        for key in candidates {
            if key.0.is_none() && key.1.is_none() {
                continue;
            }
            if let Some(b) = overrides.get(&key) {
                return *b;
            }
        }
        *self.behaviour.lock()
    }

    fn operate(&self, operation: Operation, request: &Request<'_>, response: &mut Response) {
        let pg_request: PgRequest = match serde_json::from_slice(request.body) {
            Ok(r) => r,
            Err(error) => {
                error_body::write(response, 400, "MALFORMED_JSON", &error.to_string(), None);
                return;
            }
        };
        self.calls[op_index(operation)].fetch_add(1, Ordering::Relaxed);
        let behaviour = self.behaviour_for(Some(&pg_request.merchant_id), Some(operation));
        let spread = behaviour.latency_max_ms - behaviour.latency_min_ms;
        let latency = behaviour.latency_min_ms + (self.uniform() * (spread + 1) as f64) as u64;
        if latency > 0 {
            may::coroutine::sleep(Duration::from_millis(latency));
        }
        // One draw decides the fault, so the three rates partition the calls.
        let fault = self.uniform();
        if fault < behaviour.failure_rate {
            self.failures[op_index(operation)].fetch_add(1, Ordering::Relaxed);
            error_body::write(response, 503, "PG_FAILURE", "injected failure", None);
            return;
        }
        let decline = self.uniform() < behaviour.decline_rate;
        let reply = self.ledger.lock().execute(
            operation,
            &pg_request,
            decline,
            payrail_core::time::now_ms(),
        );
        let fault = fault - behaviour.failure_rate;
        if fault < behaviour.apply_then_fail_rate {
            self.lost_answers[op_index(operation)].fetch_add(1, Ordering::Relaxed);
            error_body::write(
                response,
                503,
                "PG_FAILURE",
                "injected failure after applying",
                None,
            );
            return;
        }
        if fault - behaviour.apply_then_fail_rate < behaviour.apply_then_drop_rate {
            self.lost_answers[op_index(operation)].fetch_add(1, Ordering::Relaxed);
            response.abort();
            return;
        }
        match serde_json::to_vec(&reply) {
            Ok(body) => response.json(200, &body),
            Err(error) => error_body::write(response, 500, "INTERNAL", &error.to_string(), None),
        }
    }

    fn control(&self, request: &Request<'_>, response: &mut Response) {
        let control: Control = match serde_json::from_slice(request.body) {
            Ok(c) => c,
            Err(error) => {
                error_body::write(response, 400, "MALFORMED_JSON", &error.to_string(), None);
                return;
            }
        };
        if control.reset {
            self.overrides.lock().clear();
        }
        let operation = match control.operation.as_deref() {
            None => None,
            Some(name) => match Operation::ALL.into_iter().find(|op| op.as_str() == name) {
                Some(op) => Some(op),
                None => {
                    error_body::write(
                        response,
                        400,
                        "VALIDATION_FAILED",
                        "operation must be authorize, capture, refund or void",
                        None,
                    );
                    return;
                }
            },
        };
        let mut behaviour = self.behaviour_for(control.merchant_id.as_deref(), operation);
        if let Some(v) = control.latency_min_ms {
            behaviour.latency_min_ms = v;
        }
        if let Some(v) = control.latency_max_ms {
            behaviour.latency_max_ms = v;
        }
        if let Some(v) = control.failure_rate {
            behaviour.failure_rate = v;
        }
        if let Some(v) = control.decline_rate {
            behaviour.decline_rate = v;
        }
        if let Some(v) = control.apply_then_fail_rate {
            behaviour.apply_then_fail_rate = v;
        }
        if let Some(v) = control.apply_then_drop_rate {
            behaviour.apply_then_drop_rate = v;
        }
        if let Err(message) = behaviour.check() {
            error_body::write(response, 400, "VALIDATION_FAILED", &message, None);
            return;
        }
        match (control.merchant_id, operation) {
            (None, None) => *self.behaviour.lock() = behaviour,
            key => {
                self.overrides.lock().insert(key, behaviour);
            }
        }
        response.json(200, b"{\"status\":\"ok\"}");
    }

    fn records(&self, request: &Request<'_>, response: &mut Response) {
        let operation = request
            .query_param("operation")
            .and_then(|o| Operation::ALL.into_iter().find(|op| op.as_str() == o));
        let merchant = request.query_param("merchantId");
        let ledger = self.ledger.lock();
        let range = (
            request
                .query_param("fromPaymentId")
                .and_then(|v| v.parse::<u64>().ok()),
            request
                .query_param("toPaymentId")
                .and_then(|v| v.parse::<u64>().ok()),
        );
        let records = match range {
            (Some(from), Some(to)) => {
                let limit = request
                    .query_param("limit")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(usize::MAX);
                ledger.records_between(from, to, limit)
            }
            _ => ledger.records(operation, merchant),
        };
        match serde_json::to_vec(&serde_json::json!({ "records": records })) {
            Ok(body) => response.json(200, &body),
            Err(error) => error_body::write(response, 500, "INTERNAL", &error.to_string(), None),
        }
    }

    /// `POST /v1/records/tamper`: `{requestId, amount?, decision?}` changes a record in
    /// memory, for tests of the reconciliation. Not part of any real PG's API.
    fn tamper(&self, request: &Request<'_>, response: &mut Response) {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        struct Tamper {
            request_id: String,
            amount: Option<i64>,
            decision: Option<payrail_pg::PgDecision>,
        }
        let tamper: Tamper = match serde_json::from_slice(request.body) {
            Ok(t) => t,
            Err(error) => {
                error_body::write(response, 400, "MALFORMED_JSON", &error.to_string(), None);
                return;
            }
        };
        if self
            .ledger
            .lock()
            .tamper(&tamper.request_id, tamper.amount, tamper.decision)
        {
            response.json(200, b"{\"status\":\"ok\"}");
        } else {
            error_body::write(
                response,
                404,
                "NOT_FOUND",
                "no transaction with this request id",
                None,
            );
        }
    }

    /// `GET /v1/transactions/{requestId}`: the status inquiry real PGs offer.
    fn transaction(&self, request_id: &str, response: &mut Response) {
        let ledger = self.ledger.lock();
        match ledger.transaction(request_id).map(serde_json::to_vec) {
            Some(Ok(body)) => response.json(200, &body),
            Some(Err(error)) => {
                error_body::write(response, 500, "INTERNAL", &error.to_string(), None)
            }
            None => error_body::write(
                response,
                404,
                "NOT_FOUND",
                "no transaction with this request id",
                None,
            ),
        }
    }

    fn stats(&self, response: &mut Response) {
        let mut calls = serde_json::Map::new();
        let mut failures = serde_json::Map::new();
        let mut lost = serde_json::Map::new();
        for op in Operation::ALL {
            calls.insert(
                op.as_str().into(),
                self.calls[op_index(op)].load(Ordering::Relaxed).into(),
            );
            failures.insert(
                op.as_str().into(),
                self.failures[op_index(op)].load(Ordering::Relaxed).into(),
            );
            lost.insert(
                op.as_str().into(),
                self.lost_answers[op_index(op)]
                    .load(Ordering::Relaxed)
                    .into(),
            );
        }
        let body = serde_json::json!({ "calls": calls, "failures": failures, "lostAnswers": lost });
        response.json(200, body.to_string().as_bytes());
    }
}

impl Handler for Api {
    fn handle(&self, request: &Request<'_>, response: &mut Response) {
        match (request.method, request.path) {
            ("POST", "/v1/control") => self.control(request, response),
            ("POST", "/v1/records/tamper") => self.tamper(request, response),
            ("GET", "/v1/records") => self.records(request, response),
            ("GET", "/v1/stats") => self.stats(response),
            ("GET", "/health") => response.json(200, b"{\"status\":\"UP\"}"),
            ("GET", path) if path.starts_with("/v1/transactions/") => {
                self.transaction(&path["/v1/transactions/".len()..], response)
            }
            ("POST", path) => match Operation::from_path(path) {
                Some(op) => self.operate(op, request, response),
                None => error_body::write(response, 404, "NOT_FOUND", "no such route", None),
            },
            _ => error_body::write(response, 404, "NOT_FOUND", "no such route", None),
        }
    }
}
