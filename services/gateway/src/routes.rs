//! The gateway's routes: `/api/payments/**` → ingest, `/api/admin/**` and the admin
//! dashboard `/admin` → monitoring,
//! `/health` and `/metrics` of its own. CORS and request ids for all of them.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::{self, Forward, Outcome};
use crate::upstream::{HttpClient, Pool};
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use payrail_http::{error_body, Bridge, BridgeError, Handler, Request, Response};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub struct Gateway {
    pub config: Config,
    pub payments: Arc<Pool>,
    pub admin: Arc<Pool>,
    pub client: HttpClient,
    pub metrics: Arc<Metrics>,
    pub bridge: Bridge,
    /// Request ids: a per-process random prefix and a counter (unique without a syscall).
    pub id_prefix: u64,
    pub id_counter: AtomicU64,
    pub throttle: crate::throttle::Throttle,
}

#[derive(Clone, Copy)]
enum Route {
    Payments,
    Admin,
    Health,
    Metrics,
    NotFound,
}

impl Route {
    fn of(path: &str) -> Self {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if under("/api/payments") {
            Route::Payments
        } else if under("/api/admin") || under("/admin") {
            Route::Admin
        } else if path == "/health" {
            Route::Health
        } else if path == "/metrics" {
            Route::Metrics
        } else {
            Route::NotFound
        }
    }

    fn label(self) -> &'static str {
        match self {
            Route::Payments => "payments",
            Route::Admin => "admin",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::NotFound => "not_found",
        }
    }
}

/// A client-supplied request id is kept when it is short and printable.
fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Content types we pass through, as the static strings the response type keeps.
fn content_type(headers: &hyper::HeaderMap) -> &'static str {
    let value = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if value.starts_with("application/json") {
        "application/json"
    } else if value.starts_with("text/html") {
        "text/html; charset=utf-8"
    } else if value.starts_with("text/plain") {
        "text/plain; charset=utf-8"
    } else if value.starts_with("text/event-stream") {
        "text/event-stream"
    } else {
        "application/octet-stream"
    }
}

impl Gateway {
    fn request_id(&self, request: &Request<'_>) -> String {
        match request.request_id {
            Some(id) if valid_request_id(id) => id.to_owned(),
            _ => {
                let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
                format!("{:08x}{:08x}", self.id_prefix as u32, n as u32)
            }
        }
    }

    /// Adds the CORS headers for an allowed `Origin`. Returns false for a disallowed one.
    fn cors(&self, request: &Request<'_>, response: &mut Response) -> bool {
        let Some(origin) = request
            .header("origin")
            .and_then(|v| std::str::from_utf8(v).ok())
        else {
            return true;
        };
        if self
            .config
            .cors_allowed_origins
            .iter()
            .any(|allowed| allowed == origin)
        {
            response.header("Access-Control-Allow-Origin", origin);
            response.header("Vary", "Origin");
            response.header(
                "Access-Control-Expose-Headers",
                "X-Request-Id, Retry-After, Idempotent-Replayed",
            );
            true
        } else {
            false
        }
    }

    fn preflight(&self, request: &Request<'_>, response: &mut Response) {
        if request.header("origin").is_some() && self.cors(request, response) {
            response.status(204);
            response.header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
            response.header(
                "Access-Control-Allow-Headers",
                "Content-Type, Authorization, Idempotency-Key, X-Request-Id",
            );
            response.header("Access-Control-Max-Age", "600");
        } else {
            self.refuse_origin(response);
        }
    }

    fn refuse_origin(&self, response: &mut Response) {
        self.metrics.cors_rejections.inc();
        error_body::write(
            response,
            403,
            "CORS_ORIGIN_NOT_ALLOWED",
            "this origin is not in the gateway's CORS allow-list",
            None,
        );
    }

    fn throttled(&self, response: &mut Response, seconds: u64) {
        self.metrics.auth_throttled.inc();
        response.reset();
        error_body::write(
            response,
            429,
            "TOO_MANY_FAILED_ATTEMPTS",
            "too many failed authentications from this address or for this key; retry after the Retry-After delay",
            None,
        );
        response.header_u64("Retry-After", seconds);
    }

    fn health(&self, response: &mut Response) {
        let mut body = String::from("{\"status\":\"");
        let up = self.payments.any_usable();
        body.push_str(if up { "UP" } else { "DOWN" });
        // "off" when any payment instance trusts the merchantId a request names.
        body.push_str(if self.payments.any_merchant_auth_off() {
            "\",\"merchantAuth\":\"off"
        } else {
            "\",\"merchantAuth\":\"required"
        });
        body.push_str("\",\"checks\":{");
        self.payments.health_json(&mut body);
        self.admin.health_json(&mut body);
        body.push_str("}}");
        response.json(if up { 200 } else { 503 }, body.as_bytes());
    }

    fn proxy(
        &self,
        pool: &Arc<Pool>,
        request: &Request<'_>,
        request_id: &str,
        response: &mut Response,
    ) {
        if pool.members.is_empty() {
            error_body::write(
                response,
                503,
                "UPSTREAM_UNAVAILABLE",
                "no upstream is configured for this route",
                None,
            );
            return;
        }
        let Ok(method) = hyper::Method::from_bytes(request.method.as_bytes()) else {
            error_body::write(response, 405, "METHOD_NOT_ALLOWED", "unknown method", None);
            return;
        };
        let mut path_and_query =
            String::with_capacity(request.path.len() + request.query.len() + 1);
        path_and_query.push_str(request.path);
        if !request.query.is_empty() {
            path_and_query.push('?');
            path_and_query.push_str(request.query);
        }
        let mut headers = Vec::with_capacity(request.headers.len() + 1);
        for header in request.headers {
            if proxy::hop_by_hop(header.name) || header.name.eq_ignore_ascii_case("x-request-id") {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(header.name.as_bytes()),
                HeaderValue::from_bytes(header.value),
            ) {
                headers.push((name, value));
            }
        }
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.push((HeaderName::from_static("x-request-id"), value));
        }
        let forward = Forward {
            method,
            path_and_query,
            headers,
            body: Bytes::copy_from_slice(request.body),
        };
        self.metrics.in_flight.inc();
        let outcome = self.bridge.call(proxy::forward(
            pool.clone(),
            self.client.clone(),
            self.config.upstream.clone(),
            self.metrics.clone(),
            forward,
        ));
        self.metrics.in_flight.dec();
        match outcome {
            Ok(Outcome::Answered {
                status,
                headers,
                body,
            }) => {
                response.status(status);
                response.content_type(content_type(&headers));
                for (name, value) in &headers {
                    let name = name.as_str();
                    if proxy::hop_by_hop(name)
                        || name == "content-type"
                        || name == "x-request-id"
                        || name.starts_with("access-control-")
                    {
                        continue;
                    }
                    if let Ok(value) = value.to_str() {
                        response.header(name, value);
                    }
                }
                let out = response.body_mut();
                out.clear();
                out.extend_from_slice(&body);
            }
            Ok(Outcome::Timeout) | Err(BridgeError::Timeout) => error_body::write(
                response,
                504,
                "UPSTREAM_TIMEOUT",
                "the payment service did not answer in time; the outcome is unknown: check the payment before retrying without an idempotency key",
                None,
            ),
            Ok(Outcome::Unavailable) | Err(BridgeError::Gone) => {
                error_body::write(
                    response,
                    503,
                    "UPSTREAM_UNAVAILABLE",
                    "no instance of the payment service is reachable; retry shortly",
                    None,
                );
                response.header("Retry-After", "1");
            }
            Ok(Outcome::Unknown) => error_body::write(
                response,
                503,
                "UPSTREAM_UNAVAILABLE",
                "the instance handling the request failed; the outcome is unknown: check the payment, or send an idempotencyKey so a retry is safe",
                None,
            ),
            Err(BridgeError::Overloaded) => {
                error_body::write(
                    response,
                    503,
                    "UPSTREAM_UNAVAILABLE",
                    "the gateway has too many requests in flight; retry shortly",
                    None,
                );
                response.header("Retry-After", "1");
            }
        }
    }
}

impl Handler for Gateway {
    fn handle(&self, request: &Request<'_>, response: &mut Response) {
        let started = Instant::now();
        let route = Route::of(request.path);
        let request_id = self.request_id(request);
        if request.method == "OPTIONS" {
            self.preflight(request, response);
        } else if !self.cors(request, response) {
            self.refuse_origin(response);
        } else {
            match route {
                Route::Payments | Route::Admin => {
                    let pool = if matches!(route, Route::Payments) {
                        &self.payments
                    } else {
                        &self.admin
                    };
                    // Only one Authorization header names a prefix; ingest refuses more.
                    let prefix = request
                        .header("authorization")
                        .filter(|_| matches!(route, Route::Payments))
                        .and_then(crate::throttle::key_prefix);
                    let (address_wait, prefix_wait) = self.throttle.blocked(request.peer, prefix);
                    if let Some(seconds) = address_wait {
                        self.throttled(response, seconds);
                    } else {
                        self.proxy(pool, request, &request_id, response);
                        if response.status_code() == 401 {
                            self.metrics.auth_failures.inc();
                            self.throttle.failed(request.peer, prefix);
                            if let Some(seconds) = prefix_wait {
                                self.throttled(response, seconds);
                            }
                        }
                    }
                }
                Route::Health => self.health(response),
                Route::Metrics => {
                    let body = payrail_core::telemetry::render(&self.metrics.registry);
                    response.content_type("text/plain; version=0.0.4");
                    response.status(200);
                    let out = response.body_mut();
                    out.clear();
                    out.extend_from_slice(&body);
                }
                Route::NotFound => error_body::write(
                    response,
                    404,
                    "NOT_FOUND",
                    "no such route: the API is under /api/payments and /api/admin",
                    None,
                ),
            }
        }
        // The server echoes a client's own id; a generated one is added here.
        if request.request_id.is_none_or(|id| !valid_request_id(id)) {
            response.header("X-Request-Id", &request_id);
        }
        let mut status = itoa::Buffer::new();
        self.metrics
            .requests
            .with_label_values(&[route.label(), status.format(response.status_code())])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[route.label()])
            .observe(started.elapsed().as_secs_f64());
    }
}
