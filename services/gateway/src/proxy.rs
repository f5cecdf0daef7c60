//! Forwarding one request: pick an instance, send, and decide whether a failure may be
//! sent to another instance.
//!
//! Re-sending is safe only when the first instance cannot have acted on the request:
//! the connection failed before anything was sent (connect refused or timed out), or the
//! request is idempotent by itself (GET/HEAD, or it carries an idempotency key, so the
//! second instance replays or continues the first one's work instead of repeating it).
//! A POST without a key that fails mid-flight is answered 503 with "outcome unknown",
//! never re-sent: a second refund would be a second refund.

use crate::config::UpstreamConfig;
use crate::metrics::Metrics;
use crate::upstream::{HttpClient, Pool};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The request, owned so it can cross to tokio and be sent more than once.
pub struct Forward {
    pub method: hyper::Method,
    pub path_and_query: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

pub enum Outcome {
    Answered {
        status: u16,
        headers: hyper::HeaderMap,
        body: Bytes,
    },
    /// The time budget ran out (504).
    Timeout,
    /// No instance could take it (503 with Retry-After).
    Unavailable,
    /// An instance failed mid-request and re-sending is not safe (503, outcome unknown).
    Unknown,
}

/// Headers a proxy must not forward (hop-by-hop) or that the server writes itself.
pub fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

impl Forward {
    /// True when the request may run twice without a second effect.
    fn resend_safe(&self) -> bool {
        if matches!(self.method, hyper::Method::GET | hyper::Method::HEAD) {
            return true;
        }
        if self
            .headers
            .iter()
            .any(|(name, value)| name == "idempotency-key" && !value.is_empty())
        {
            return true;
        }
        // Only parsed on this cold path (a failed attempt).
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("idempotencyKey")
                    .and_then(|k| k.as_str())
                    .map(|k| !k.is_empty())
            })
            .unwrap_or(false)
    }

    fn request(&self, base: &str) -> Option<hyper::Request<Full<Bytes>>> {
        let uri: hyper::Uri = format!("{base}{}", self.path_and_query).parse().ok()?;
        let mut builder = hyper::Request::builder()
            .method(self.method.clone())
            .uri(uri);
        if let Some(headers) = builder.headers_mut() {
            for (name, value) in &self.headers {
                headers.append(name.clone(), value.clone());
            }
        }
        builder.body(Full::new(self.body.clone())).ok()
    }
}

pub async fn forward(
    pool: Arc<Pool>,
    client: HttpClient,
    config: UpstreamConfig,
    metrics: Arc<Metrics>,
    request: Forward,
) -> Outcome {
    let deadline = Instant::now() + Duration::from_millis(config.request_timeout_ms);
    let mut tried: u64 = 0;
    let mut outcome = Outcome::Unavailable;
    for attempt in 0..config.attempts_max {
        let Some(index) = pool.pick(tried) else {
            break;
        };
        if index < 64 {
            tried |= 1 << index;
        }
        let base = pool.members[index].base.as_str();
        let Some(upstream_request) = request.request(base) else {
            return Outcome::Unavailable;
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Outcome::Timeout;
        }
        if attempt > 0 {
            tracing::debug!(upstream = base, attempt, "re-sending to another instance");
        }
        let started = Instant::now();
        let result = tokio::time::timeout(remaining, async {
            let response = client.request(upstream_request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, config.response_size_max_bytes)
                .collect()
                .await
                .map(|collected| collected.to_bytes());
            Ok::<_, hyper_util::client::legacy::Error>((parts, body))
        })
        .await;
        metrics
            .upstream_duration
            .with_label_values(&[pool.name, base])
            .observe(started.elapsed().as_secs_f64());
        let label = |outcome: &str| {
            metrics
                .upstream_requests
                .with_label_values(&[pool.name, base, outcome])
                .inc();
        };
        match result {
            Err(_) => {
                label("timeout");
                return Outcome::Timeout;
            }
            Ok(Ok((parts, Ok(body)))) => {
                label("answered");
                return Outcome::Answered {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    body,
                };
            }
            Ok(Err(error)) if error.is_connect() => {
                // Nothing reached the instance: eject it and try the next one.
                label("connect_error");
                pool.eject(index, Duration::from_millis(config.eject_ms), &metrics);
                metrics.retries.with_label_values(&["connect"]).inc();
                outcome = Outcome::Unavailable;
            }
            Ok(Err(_)) | Ok(Ok((_, Err(_)))) => {
                label("error");
                if !request.resend_safe() {
                    return Outcome::Unknown;
                }
                metrics.retries.with_label_values(&["idempotent"]).inc();
                outcome = Outcome::Unknown;
            }
        }
    }
    outcome
}
