//! Upstream pools: round robin over the instances that pass their health checks and are
//! not ejected after a failed connect.

use crate::config::HealthConfig;
use crate::metrics::Metrics;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive client shared by every pool; hyper keeps idle connections per host.
pub fn client(connect_timeout: Duration, pool_idle_max: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(pool_idle_max)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

pub struct Member {
    /// `http://host:port`
    pub base: String,
    /// As the active checks see it (starts healthy so a fresh gateway serves at once).
    healthy: AtomicBool,
    fails: AtomicU32,
    passes: AtomicU32,
    /// Skipped until this time (ms since the epoch) after a failed connect.
    ejected_until_ms: AtomicI64,
    /// Its last healthy `/health` said `"merchantAuth":"off"` (an ingest instance that
    /// trusts the `merchantId` a request names).
    merchant_auth_off: AtomicBool,
}

pub struct Pool {
    pub name: &'static str,
    pub members: Vec<Member>,
    next: AtomicUsize,
}

impl Pool {
    pub fn new(name: &'static str, bases: &[String]) -> Self {
        Self {
            name,
            members: bases
                .iter()
                .map(|base| Member {
                    base: base.clone(),
                    healthy: AtomicBool::new(true),
                    fails: AtomicU32::new(0),
                    passes: AtomicU32::new(0),
                    ejected_until_ms: AtomicI64::new(0),
                    merchant_auth_off: AtomicBool::new(false),
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    fn usable(&self, index: usize, now_ms: i64) -> bool {
        let member = &self.members[index];
        member.healthy.load(Ordering::Relaxed)
            && member.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// The next usable instance in round-robin order that is not in `tried` (a bit set).
    /// When none is usable, the least recently failed untried one (better a try than a
    /// certain 503 when every check is failing at once, e.g. a gateway-side hiccup).
    pub fn pick(&self, tried: u64) -> Option<usize> {
        let n = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = payrail_core::time::now_ms();
        let untried = |i: &usize| *i >= 64 || tried & (1 << i) == 0;
        (0..n)
            .map(|k| (start + k) % n)
            .filter(untried)
            .find(|i| self.usable(*i, now))
            .or_else(|| {
                (0..n)
                    .filter(untried)
                    .min_by_key(|i| self.members[*i].ejected_until_ms.load(Ordering::Relaxed))
            })
    }

    /// True when at least one instance is in rotation.
    pub fn any_usable(&self) -> bool {
        let now = payrail_core::time::now_ms();
        (0..self.members.len()).any(|i| self.usable(i, now))
    }

    /// Passive ejection: a connect to this instance failed.
    pub fn eject(&self, index: usize, eject: Duration, metrics: &Metrics) {
        let until = payrail_core::time::now_ms() + eject.as_millis() as i64;
        self.members[index]
            .ejected_until_ms
            .store(until, Ordering::Relaxed);
        metrics
            .upstream_ejections
            .with_label_values(&[self.name, &self.members[index].base])
            .inc();
    }

    fn record_check(&self, index: usize, ok: bool, health: &HealthConfig, metrics: &Metrics) {
        let member = &self.members[index];
        if ok {
            member.fails.store(0, Ordering::Relaxed);
            let passes = member.passes.fetch_add(1, Ordering::Relaxed) + 1;
            if !member.healthy.load(Ordering::Relaxed) && passes >= health.pass_after {
                member.healthy.store(true, Ordering::Relaxed);
                member.ejected_until_ms.store(0, Ordering::Relaxed);
                tracing::info!(pool = self.name, upstream = %member.base, "upstream back in rotation");
            }
        } else {
            member.passes.store(0, Ordering::Relaxed);
            let fails = member.fails.fetch_add(1, Ordering::Relaxed) + 1;
            if member.healthy.load(Ordering::Relaxed) && fails >= health.fail_after {
                member.healthy.store(false, Ordering::Relaxed);
                tracing::warn!(pool = self.name, upstream = %member.base, "upstream out of rotation: health checks failing");
            }
        }
        metrics
            .upstream_healthy
            .with_label_values(&[self.name, &member.base])
            .set(i64::from(member.healthy.load(Ordering::Relaxed)));
    }

    /// True when an instance's last `/health` said it runs `merchant_auth = "off"`.
    pub fn any_merchant_auth_off(&self) -> bool {
        self.members
            .iter()
            .any(|m| m.merchant_auth_off.load(Ordering::Relaxed))
    }

    /// `{"upstream":"UP"|"DOWN",...}` for the gateway's `/health`.
    pub fn health_json(&self, out: &mut String) {
        let now = payrail_core::time::now_ms();
        for (i, member) in self.members.iter().enumerate() {
            if !out.ends_with('{') {
                out.push(',');
            }
            out.push_str(&format!(
                "\"{}:{}\":\"{}\"",
                self.name,
                member.base,
                if self.usable(i, now) { "UP" } else { "DOWN" }
            ));
        }
    }
}

/// Checks every instance of `pool` every `interval_ms`: `GET /health` must answer 200
/// within the timeout (ingest answers 200 while any shard serves).
pub async fn health_loop(
    pool: Arc<Pool>,
    client: HttpClient,
    health: HealthConfig,
    metrics: Arc<Metrics>,
) {
    let mut interval = tokio::time::interval(Duration::from_millis(health.interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let checks = pool.members.iter().enumerate().map(|(i, member)| {
            let client = client.clone();
            let uri = format!("{}/health", member.base);
            let timeout = Duration::from_millis(health.timeout_ms);
            async move {
                // 200 within the timeout, and the body read (it names the merchant_auth mode).
                let check = async {
                    let uri = uri.parse::<hyper::Uri>().ok()?;
                    let request = hyper::Request::get(uri)
                        .body(Full::new(Bytes::new()))
                        .ok()?;
                    let response = client.request(request).await.ok()?;
                    if response.status() != 200 {
                        return None;
                    }
                    let body = http_body_util::BodyExt::collect(response.into_body())
                        .await
                        .ok()?
                        .to_bytes();
                    Some(contains(&body, b"\"merchantAuth\":\"off\""))
                };
                let answer = tokio::time::timeout(timeout, check).await.ok().flatten();
                (i, answer)
            }
        });
        let mut results = Vec::with_capacity(pool.members.len());
        for check in checks {
            results.push(tokio::spawn(check));
        }
        for result in results {
            if let Ok((i, answer)) = result.await {
                if let Some(off) = answer {
                    pool.members[i]
                        .merchant_auth_off
                        .store(off, Ordering::Relaxed);
                }
                pool.record_check(i, answer.is_some(), &health, &metrics);
            }
        }
    }
}

/// Whether `needle` occurs in `haystack` (a `/health` body: a few hundred bytes).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
