//! The HTTP routes of ingest. Runs on may coroutines: parses and validates in place, then
//! hands the request's whole I/O to tokio in one bridge call and writes the outcome.

use crate::merchant_auth::{self, Caller};
use crate::outcome::Outcome;
use crate::parse::{self, Rejection, MERCHANT_MISMATCH};
use crate::payments::{self, ListQuery};
use crate::{authorize, App};
use payrail_core::status::PaymentStatus;
use payrail_http::error_body::{self, Detail};
use payrail_http::{Bridge, BridgeError, Handler, Request, Response};
use std::sync::Arc;
use std::time::Instant;

pub struct Api {
    pub app: Arc<App>,
    pub bridge: Bridge,
}

/// Route labels for metrics: a fixed set, never a raw path.
const ROUTE_AUTHORIZE: &str = "authorize";
const ROUTE_CAPTURE: &str = "capture";
const ROUTE_REFUND: &str = "refund";
const ROUTE_VOID: &str = "void";
const ROUTE_GET: &str = "get";
const ROUTE_LIST: &str = "list";
const ROUTE_HEALTH: &str = "health";
const ROUTE_METRICS: &str = "metrics";
const ROUTE_UNKNOWN: &str = "unknown";

fn write_outcome(response: &mut Response, outcome: Outcome) {
    response.json(outcome.status, &outcome.body);
    if outcome.replayed {
        response.header("Idempotent-Replayed", "true");
    }
    if let Some(seconds) = outcome.retry_after_seconds {
        response.header_u64("Retry-After", seconds);
    }
}

fn write_rejection(response: &mut Response, rejection: &Rejection, payment_id: Option<u64>) {
    let details: Vec<Detail<'_>> = rejection
        .details
        .iter()
        .map(|(field, problem)| Detail { field, problem })
        .collect();
    // Naming another merchant than the key's is forbidden, not malformed.
    let status = if rejection.code == MERCHANT_MISMATCH {
        403
    } else {
        400
    };
    error_body::write_with(
        response,
        status,
        rejection.code,
        &rejection.message,
        payment_id,
        &details,
        None,
    );
}

fn method_not_allowed(response: &mut Response, allowed: &str) {
    error_body::write(
        response,
        405,
        "METHOD_NOT_ALLOWED",
        &format!("use {allowed} on this path"),
        None,
    );
    response.header("Allow", allowed);
}

fn not_found(response: &mut Response) {
    error_body::write(response, 404, "NOT_FOUND", "no such route", None);
}

/// The body of a POST, after the content-type check. `None` means an error was written.
fn json_body(request: &Request<'_>, response: &mut Response) -> Option<Vec<u8>> {
    if !request.is_json() {
        error_body::write(
            response,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the body as application/json",
            None,
        );
        return None;
    }
    Some(request.body.to_vec())
}

fn header_text<'a>(
    request: &Request<'a>,
    name: &str,
    response: &mut Response,
) -> Result<Option<&'a str>, ()> {
    if request.header_count(name) > 1 {
        error_body::write(
            response,
            400,
            "VALIDATION_FAILED",
            &format!("send at most one {name} header"),
            None,
        );
        return Err(());
    }
    match request.header(name) {
        None => Ok(None),
        Some(value) => match std::str::from_utf8(value) {
            Ok(text) => Ok(Some(text)),
            Err(_) => {
                error_body::write(
                    response,
                    400,
                    "VALIDATION_FAILED",
                    &format!("{name} must be ASCII"),
                    None,
                );
                Err(())
            }
        },
    }
}

impl Api {
    /// The request's caller; `None` when the refusal (401, 400, 503) has been written.
    fn caller(&self, request: &Request<'_>, response: &mut Response) -> Option<Caller> {
        merchant_auth::authenticate(&self.app, request, response)
    }

    fn reject(&self, response: &mut Response, rejection: &Rejection, payment_id: Option<u64>) {
        if rejection.code == MERCHANT_MISMATCH {
            self.app
                .metrics
                .auth_failures
                .with_label_values(&["mismatch"])
                .inc();
            // Not even the path's own id comes back: the answer says nothing about it.
            return write_rejection(response, rejection, None);
        }
        write_rejection(response, rejection, payment_id);
    }

    fn run<F>(&self, response: &mut Response, future: F)
    where
        F: std::future::Future<Output = Outcome> + Send + 'static,
    {
        match self.bridge.call(future) {
            Ok(outcome) => write_outcome(response, outcome),
            Err(BridgeError::Overloaded) => write_outcome(response, Outcome::overloaded()),
            Err(BridgeError::Timeout) | Err(BridgeError::Gone) => write_outcome(
                response,
                Outcome::error(
                    503,
                    "UPSTREAM_UNAVAILABLE",
                    "the request did not finish in time; retry with the same idempotency key",
                    None,
                )
                .retry_after(1),
            ),
        }
    }

    /// Resolves `{paymentId}` to its shard; writes 400/404 and returns None otherwise.
    fn payment_shard(&self, segment: &str, response: &mut Response) -> Option<(u64, u16)> {
        let id = match parse::payment_id(segment) {
            Ok(id) => id,
            Err(rejection) => {
                write_rejection(response, &rejection, None);
                return None;
            }
        };
        match payrail_core::id::shard_of(id) {
            Some(shard) if shard <= self.app.shards.count() => Some((id, shard)),
            _ => {
                write_outcome(response, Outcome::not_found());
                None
            }
        }
    }

    fn authorize(&self, request: &Request<'_>, response: &mut Response) {
        let Some(caller) = self.caller(request, response) else {
            return;
        };
        let Some(mut body) = json_body(request, response) else {
            return;
        };
        let Ok(header_key) = header_text(request, "idempotency-key", response) else {
            return;
        };
        match parse::authorize(
            &mut body,
            header_key,
            &self.app.config.currencies,
            caller.merchant(),
        ) {
            Ok(input) => self.run(response, authorize::authorize(self.app.clone(), input)),
            Err(rejection) => self.reject(response, &rejection, None),
        }
    }

    fn capture(&self, segment: &str, request: &Request<'_>, response: &mut Response) {
        let Some(caller) = self.caller(request, response) else {
            return;
        };
        let Some(mut body) = json_body(request, response) else {
            return;
        };
        let Some((id, shard)) = self.payment_shard(segment, response) else {
            return;
        };
        match parse::capture(&mut body, caller.merchant()) {
            Ok(input) => self.run(
                response,
                payments::capture(self.app.clone(), shard, id, input),
            ),
            Err(rejection) => self.reject(response, &rejection, Some(id)),
        }
    }

    fn refund(&self, segment: &str, request: &Request<'_>, response: &mut Response) {
        let Some(caller) = self.caller(request, response) else {
            return;
        };
        let Some(mut body) = json_body(request, response) else {
            return;
        };
        let Ok(header_key) = header_text(request, "idempotency-key", response) else {
            return;
        };
        let Some((id, shard)) = self.payment_shard(segment, response) else {
            return;
        };
        match parse::refund(&mut body, header_key, caller.merchant()) {
            Ok(input) => self.run(
                response,
                payments::refund(self.app.clone(), shard, id, input),
            ),
            Err(rejection) => self.reject(response, &rejection, Some(id)),
        }
    }

    fn void(&self, segment: &str, request: &Request<'_>, response: &mut Response) {
        let Some(caller) = self.caller(request, response) else {
            return;
        };
        let Some(mut body) = json_body(request, response) else {
            return;
        };
        let Some((id, shard)) = self.payment_shard(segment, response) else {
            return;
        };
        match parse::void(&mut body, caller.merchant()) {
            Ok(input) => self.run(response, payments::void(self.app.clone(), shard, id, input)),
            Err(rejection) => self.reject(response, &rejection, Some(id)),
        }
    }

    /// The merchant of a read: the key's (a `merchantId` query parameter may repeat it, not
    /// contradict it), or with merchant auth off the required parameter.
    fn merchant_param(&self, request: &Request<'_>, response: &mut Response) -> Option<String> {
        let caller = self.caller(request, response)?;
        let named = request.query_param("merchantId");
        if let Some(own) = caller.merchant() {
            // An empty parameter names no merchant.
            return match parse::own_merchant(own, named.filter(|n| !n.is_empty())) {
                Ok(merchant) => Some(merchant),
                Err(rejection) => {
                    self.reject(response, &rejection, None);
                    None
                }
            };
        }
        let merchant = named.unwrap_or("");
        if let Err(problem) = payrail_core::validate::merchant_id(merchant) {
            let details = [Detail {
                field: "merchantId",
                problem,
            }];
            error_body::write_with(
                response,
                400,
                "VALIDATION_FAILED",
                &format!("query parameter merchantId {problem}"),
                None,
                &details,
                None,
            );
            return None;
        }
        Some(merchant.to_owned())
    }

    fn get(&self, segment: &str, request: &Request<'_>, response: &mut Response) {
        let Some(merchant) = self.merchant_param(request, response) else {
            return;
        };
        let Some((id, shard)) = self.payment_shard(segment, response) else {
            return;
        };
        self.run(
            response,
            payments::get(self.app.clone(), shard, id, merchant),
        );
    }

    fn list(&self, request: &Request<'_>, response: &mut Response) {
        let Some(merchant_id) = self.merchant_param(request, response) else {
            return;
        };
        let invalid = |response: &mut Response, field: &str, problem: &str| {
            let details = [Detail { field, problem }];
            error_body::write_with(
                response,
                400,
                "VALIDATION_FAILED",
                &format!("query parameter {field} {problem}"),
                None,
                &details,
                None,
            );
        };
        let status = match request.query_param("status") {
            None | Some("") => None,
            Some(text) => match PaymentStatus::parse(text) {
                Some(s) => Some(s),
                None => return invalid(response, "status", "is not a payment status"),
            },
        };
        let limit = match request.query_param("limit") {
            None | Some("") => 50,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=200).contains(&n) => n,
                _ => return invalid(response, "limit", "must be an integer from 1 to 200"),
            },
        };
        let cursor = match request.query_param("cursor") {
            None | Some("") => None,
            Some(text) => match parse::payment_id(text) {
                Ok(c) => Some(c),
                Err(_) => return invalid(response, "cursor", "is not a cursor this API returned"),
            },
        };
        self.run(
            response,
            payments::list(
                self.app.clone(),
                ListQuery {
                    merchant_id,
                    status,
                    limit,
                    cursor,
                },
            ),
        );
    }

    fn dispatch(&self, request: &Request<'_>, response: &mut Response) -> &'static str {
        let path = request.path;
        let method = request.method;
        match path {
            "/health" => {
                if method != "GET" {
                    method_not_allowed(response, "GET");
                } else {
                    let relay = self.app.relay.get();
                    let (status, body) = self.app.health.report(
                        self.app.pg_breaker.state().as_str(),
                        relay.map(|r| (r.breaker.state().as_str(), r.broker.as_ref())),
                        self.app.config.merchant_auth.as_str(),
                    );
                    response.json(status, &body);
                }
                return ROUTE_HEALTH;
            }
            "/metrics" => {
                if method != "GET" {
                    method_not_allowed(response, "GET");
                } else {
                    let body = payrail_core::telemetry::render(&self.app.metrics.registry);
                    response.json(200, &body);
                    response.content_type("text/plain; version=0.0.4");
                }
                return ROUTE_METRICS;
            }
            "/api/payments/authorize" => {
                if method == "POST" {
                    self.authorize(request, response);
                } else {
                    method_not_allowed(response, "POST");
                }
                return ROUTE_AUTHORIZE;
            }
            "/api/payments" | "/api/payments/" => {
                if method == "GET" {
                    self.list(request, response);
                } else {
                    method_not_allowed(response, "GET");
                }
                return ROUTE_LIST;
            }
            _ => {}
        }
        let actions: [(&str, &'static str); 3] = [
            ("/api/payments/capture/", ROUTE_CAPTURE),
            ("/api/payments/refund/", ROUTE_REFUND),
            ("/api/payments/void/", ROUTE_VOID),
        ];
        for (prefix, route) in actions {
            if let Some(segment) = path.strip_prefix(prefix) {
                if method != "POST" {
                    method_not_allowed(response, "POST");
                } else if route == ROUTE_CAPTURE {
                    self.capture(segment, request, response);
                } else if route == ROUTE_REFUND {
                    self.refund(segment, request, response);
                } else {
                    self.void(segment, request, response);
                }
                return route;
            }
        }
        if let Some(segment) = path.strip_prefix("/api/payments/") {
            if !segment.contains('/') {
                if method == "GET" {
                    self.get(segment, request, response);
                } else {
                    method_not_allowed(response, "GET");
                }
                return ROUTE_GET;
            }
        }
        not_found(response);
        ROUTE_UNKNOWN
    }
}

impl Handler for Api {
    fn handle(&self, request: &Request<'_>, response: &mut Response) {
        let started = Instant::now();
        let route = self.dispatch(request, response);
        let metrics = &self.app.metrics;
        let status = response.status_code();
        metrics
            .requests
            .with_label_values(&[route, itoa::Buffer::new().format(status)])
            .inc();
        metrics
            .request_duration
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
    }
}
