//! A paced load of authorizations for fault tests, recording every answer with its time,
//! so a test can say which errors happened during a fault and that none happened after.
//! (k6 runs the throughput checks; this is for per-request evidence.)

use crate::http;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Sample {
    /// When the request was sent, since the load started.
    pub sent: Duration,
    /// 0 when the connection itself failed.
    pub status: u16,
    pub code: String,
    pub merchant: String,
    pub amount: i64,
    pub key: String,
    pub payment_id: Option<u64>,
}

/// Sends `rate` authorizations per second to `addr` for `duration` over `threads`
/// threads; request `i` goes to merchant `merchant(i)` with key `<run>-<i>`.
pub fn authorizations(
    addr: &str,
    run: &str,
    rate: u32,
    duration: Duration,
    threads: usize,
    merchant: fn(u64) -> String,
) -> Vec<Sample> {
    let start = Instant::now();
    let total = (u128::from(rate) * duration.as_millis() / 1000) as u64;
    let addr: Arc<str> = addr.into();
    let run: Arc<str> = run.into();
    let workers: Vec<_> = (0..threads as u64)
        .map(|t| {
            let addr = addr.clone();
            let run = run.clone();
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                let mut i = t;
                while i < total {
                    let due = start + Duration::from_micros(i * 1_000_000 / u64::from(rate));
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let merchant_id = merchant(i);
                    let key = format!("{run}-{i}");
                    let amount = 1000 + (i % 500) as i64;
                    let body = crate::authorize_body(&merchant_id, amount, &key)
                        .to_string()
                        .into_bytes();
                    let sent = start.elapsed();
                    let reply = http::request(
                        &addr,
                        "POST",
                        "/api/payments/authorize",
                        &[("Content-Type", "application/json")],
                        Some(&body),
                    );
                    samples.push(match reply {
                        Ok(reply) => Sample {
                            sent,
                            status: reply.status,
                            code: reply.code(),
                            merchant: merchant_id,
                            amount,
                            key,
                            payment_id: reply.json()["paymentId"].as_u64(),
                        },
                        Err(_) => Sample {
                            sent,
                            status: 0,
                            code: "CONNECTION_FAILED".into(),
                            merchant: merchant_id,
                            amount,
                            key,
                            payment_id: None,
                        },
                    });
                    i += threads as u64;
                }
                samples
            })
        })
        .collect();
    let mut samples: Vec<Sample> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap_or_default())
        .collect();
    samples.sort_by_key(|s| s.sent);
    samples
}

/// Retries `sample` as a client would (same key, same body) until it is answered 200 or
/// `timeout` passes; returns the final answer's status and payment id.
pub fn retry_until_ok(addr: &str, sample: &Sample, timeout: Duration) -> (u16, Option<u64>) {
    let body = crate::authorize_body(&sample.merchant, sample.amount, &sample.key);
    let mut last = (sample.status, sample.payment_id);
    crate::wait_until(timeout, || {
        if let Ok(reply) = http::request(
            addr,
            "POST",
            "/api/payments/authorize",
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        ) {
            last = (reply.status, reply.json()["paymentId"].as_u64());
        }
        last.0 == 200
    });
    last
}

/// [`retry_until_ok`] for every sample, over eight threads (the retries of one fault wait
/// for the same lease, so they wait together). Answers in the order of `samples`.
pub fn retry_all(addr: &str, samples: &[&Sample], timeout: Duration) -> Vec<(u16, Option<u64>)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = samples
            .chunks(samples.len().div_ceil(8).max(1))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|s| retry_until_ok(addr, s, timeout))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}
