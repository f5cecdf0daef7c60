//! The circuit-breaker drill: the reference system's nine steps, run against the live
//! stack by stopping and resuming the broker process. Each step records pass/fail and what
//! it saw; the drill fails when the breaker never opened. The broker is resumed whatever
//! happens, and authorizations keep flowing throughout: the outbox must keep every one.

use crate::admin::Admin;
use crate::config::DrillConfig;
use crate::history::{new_id, History};
use crate::scrape::Scraper;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const STEPS: [&str; 9] = [
    "baseline",
    "broker outage",
    "payments accepted during the outage",
    "breaker OPEN",
    "fast failure",
    "wait for the open window",
    "HALF_OPEN",
    "probes succeed",
    "CLOSED and drained",
];

pub struct Drills {
    config: DrillConfig,
    pub history: History,
    admin: Arc<Admin>,
    scraper: Arc<Scraper>,
    client: Client<HttpConnector, Full<Bytes>>,
    running: AtomicBool,
    current: Mutex<Option<Json>>,
}

/// Authorizations sent during a drill and how they were answered.
#[derive(Default)]
struct Traffic {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    slowest_ms: AtomicU64,
}

impl Drills {
    pub fn new(
        config: DrillConfig,
        history: History,
        admin: Arc<Admin>,
        scraper: Arc<Scraper>,
    ) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        Arc::new(Self {
            config,
            history,
            admin,
            scraper,
            client: Client::builder(TokioExecutor::new()).build(connector),
            running: AtomicBool::new(false),
            current: Mutex::new(None),
        })
    }

    /// Starts a drill; `None` when one is already running.
    pub fn start(self: &Arc<Self>) -> Option<Json> {
        if self.running.swap(true, Ordering::AcqRel) {
            return None;
        }
        let now = payrail_core::time::now_ms();
        let record = json!({
            "id": new_id("drill"),
            "kind": "drill",
            "status": "RUNNING",
            "breaker": self.config.breaker,
            "startedAt": payrail_core::time::rfc3339(now),
            "startedAtMs": now,
            "steps": STEPS.iter().enumerate().map(|(i, name)| json!({
                "step": i + 1, "name": name, "status": "PENDING", "detail": null,
            })).collect::<Vec<_>>(),
        });
        self.history.save(&record);
        *self.current.lock() = Some(record.clone());
        let drills = self.clone();
        tokio::spawn(async move {
            drills.run().await;
            drills.running.store(false, Ordering::Release);
        });
        Some(record)
    }

    /// A drill's record; the running one as it is now.
    pub fn get(&self, id: &str) -> Option<Json> {
        if let Some(current) = &*self.current.lock() {
            if current["id"] == id {
                return Some(current.clone());
            }
        }
        self.history.get(id)
    }

    fn step(&self, number: usize, status: &str, detail: impl Into<Json>) {
        let mut current = self.current.lock();
        if let Some(record) = current.as_mut() {
            record["steps"][number - 1]["status"] = status.into();
            record["steps"][number - 1]["detail"] = detail.into();
            record["steps"][number - 1]["at"] =
                payrail_core::time::rfc3339(payrail_core::time::now_ms()).into();
            self.history.save(record);
        }
        tracing::info!(step = number, status, "drill");
    }

    fn states(&self) -> std::collections::BTreeMap<String, String> {
        self.scraper.breaker_states(&self.config.breaker)
    }

    /// Polls the scraped breaker states of `instances` (every instance with the breaker
    /// when `None`) until `done` holds for any of them (`any`) or for all; gives up after
    /// `within`.
    async fn wait_for(
        &self,
        within: Duration,
        instances: Option<&BTreeSet<String>>,
        any: bool,
        done: impl Fn(&str) -> bool,
    ) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let states: Vec<String> = self
                .states()
                .into_iter()
                .filter(|(name, _)| instances.is_none_or(|set| set.contains(name)))
                .map(|(_, state)| state)
                .collect();
            let hit = if any {
                states.iter().any(|s| done(s))
            } else {
                !states.is_empty() && states.iter().all(|s| done(s))
            };
            if hit {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    async fn backlog(&self) -> Option<i64> {
        self.admin.outbox_backlog().await
    }

    async fn authorize(&self, n: u64) -> Result<u64, String> {
        let body = json!({
            "merchantId": format!("DRILL-{}", n % 16),
            "amount": 1000 + (n % 100) as i64,
            "currency": "KRW",
            "idempotencyKey": format!("drill-{}-{n}", payrail_core::time::now_ms()),
        });
        let request = hyper::Request::post(format!(
            "{}/api/payments/authorize",
            self.config.base_url.trim_end_matches('/')
        ))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            Ok::<u16, String>(status)
        })
        .await
        .map_err(|_| "no answer within 10 s".to_owned())??;
        let ms = started.elapsed().as_millis() as u64;
        if answer == 200 {
            Ok(ms)
        } else {
            Err(format!("HTTP {answer}"))
        }
    }

    async fn command(argv: &[String]) -> Result<(), String> {
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let output = tokio::process::Command::new(program)
            .args(args)
            .output()
            .await
            .map_err(|e| format!("{program}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}: {} {}",
                argv.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    async fn run(self: &Arc<Self>) {
        let traffic = Arc::new(Traffic::default());
        let stop_traffic = Arc::new(AtomicBool::new(false));
        let passed = self.steps(&traffic, &stop_traffic).await;
        stop_traffic.store(true, Ordering::Release);
        let mut current = self.current.lock();
        if let Some(record) = current.as_mut() {
            record["status"] = if passed { "PASSED" } else { "FAILED" }.into();
            record["finishedAt"] = payrail_core::time::rfc3339(payrail_core::time::now_ms()).into();
            record["finishedAtMs"] = json!(payrail_core::time::now_ms());
            record["traffic"] = json!({
                "sent": traffic.sent.load(Ordering::Acquire),
                "ok": traffic.ok.load(Ordering::Acquire),
                "failed": traffic.failed.load(Ordering::Acquire),
                "slowestMs": traffic.slowest_ms.load(Ordering::Acquire),
            });
            self.history.save(record);
        }
        *current = None;
    }

    /// The nine steps; false as soon as one fails (later ones stay PENDING). The broker
    /// is resumed before returning, whatever happened.
    async fn steps(self: &Arc<Self>, traffic: &Arc<Traffic>, stop: &Arc<AtomicBool>) -> bool {
        // 1. Baseline: the breaker is CLOSED everywhere and a payment goes through.
        let states = self.states();
        let baseline = self.authorize(0).await;
        if states.is_empty() || states.values().any(|s| s != "CLOSED") || baseline.is_err() {
            self.step(
                1,
                "FAILED",
                json!({ "breakers": states, "authorize": baseline }),
            );
            return false;
        }
        self.step(1, "PASSED", json!({ "breakers": states, "authorizeMs": baseline.ok(), "outboxBacklog": self.backlog().await }));

        // Steady traffic for the rest of the drill: 5 authorizations per second.
        let drills = self.clone();
        let (t, s) = (traffic.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 1;
            while !s.load(Ordering::Acquire) {
                let (d, t) = (drills.clone(), t.clone());
                tokio::spawn(async move {
                    t.sent.fetch_add(1, Ordering::AcqRel);
                    match d.authorize(n).await {
                        Ok(ms) => {
                            t.ok.fetch_add(1, Ordering::AcqRel);
                            t.slowest_ms.fetch_max(ms, Ordering::AcqRel);
                        }
                        Err(_) => {
                            t.failed.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                });
                n += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });

        // 2. Broker outage.
        if let Err(e) = Self::command(&self.config.stop_broker).await {
            self.step(2, "FAILED", e);
            return false;
        }
        self.step(2, "PASSED", self.config.stop_broker.join(" "));
        let opened = self.outage_steps(traffic).await;
        // 6. (also on failure) Resume the broker.
        let resumed = Self::command(&self.config.resume_broker).await;
        let Some(opened) = opened else {
            if let Err(e) = resumed {
                tracing::error!(error = %e, "drill: the broker could not be resumed");
            }
            return false;
        };
        self.recovery_steps(resumed, &opened, traffic, stop).await
    }

    /// Steps 3–5, while the broker is down; the instances whose breaker opened, `None`
    /// when a step failed.
    async fn outage_steps(&self, traffic: &Traffic) -> Option<BTreeSet<String>> {
        // 3. Payments are still accepted: the outbox keeps their events.
        let before = traffic.ok.load(Ordering::Acquire);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let accepted = traffic.ok.load(Ordering::Acquire) - before;
        let failed = traffic.failed.load(Ordering::Acquire);
        if accepted == 0 || failed > 0 {
            self.step(
                3,
                "FAILED",
                json!({ "accepted": accepted, "failed": failed }),
            );
            return None;
        }
        self.step(
            3,
            "PASSED",
            json!({ "acceptedIn2s": accepted, "outboxBacklog": self.backlog().await }),
        );

        // 4. The publisher's breaker opens.
        let started = Instant::now();
        let opened = self
            .wait_for(
                Duration::from_secs(self.config.open_within_s),
                None,
                true,
                |s| s == "OPEN",
            )
            .await;
        if !opened {
            self.step(4, "FAILED", json!({
                "reason": format!("the breaker never opened within {} s", self.config.open_within_s),
                "breakers": self.states(),
            }));
            return None;
        }
        let states = self.states();
        let opened: BTreeSet<String> = states
            .iter()
            .filter(|(_, s)| *s == "OPEN")
            .map(|(name, _)| name.clone())
            .collect();
        self.step(
            4,
            "PASSED",
            json!({ "openedAfterMs": started.elapsed().as_millis() as u64, "breakers": states }),
        );

        // 5. Fast failure: with the breaker open nothing waits on the broker; payments
        // are answered at once and their events wait in the outbox.
        let slowest_before = traffic.slowest_ms.swap(0, Ordering::AcqRel);
        let backlog_before = self.backlog().await.unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let slowest = traffic.slowest_ms.load(Ordering::Acquire);
        traffic
            .slowest_ms
            .fetch_max(slowest_before, Ordering::AcqRel);
        let backlog_after = self.backlog().await.unwrap_or(0);
        let fast = slowest < 1_000 && traffic.failed.load(Ordering::Acquire) == 0;
        self.step(
            5,
            if fast && backlog_after > backlog_before {
                "PASSED"
            } else {
                "FAILED"
            },
            json!({
                "slowestAuthorizeMs": slowest,
                "outboxBacklogBefore": backlog_before,
                "outboxBacklogAfter": backlog_after,
            }),
        );
        (fast && backlog_after > backlog_before).then_some(opened)
    }

    /// Steps 6–9, once the broker is back.
    async fn recovery_steps(
        &self,
        resumed: Result<(), String>,
        opened: &BTreeSet<String>,
        traffic: &Traffic,
        stop: &AtomicBool,
    ) -> bool {
        // 6. Wait: the breaker stays open for its window, then lets probes through.
        if let Err(e) = resumed {
            self.step(6, "FAILED", e);
            return false;
        }
        self.step(
            6,
            "PASSED",
            json!({ "resumed": self.config.resume_broker.join(" ") }),
        );

        // 7. HALF_OPEN (or straight to CLOSED when the half-open window is shorter than a
        // scrape interval: then the probes' success is what step 8 checks).
        let started = Instant::now();
        let within = Duration::from_secs(self.config.close_within_s);
        // Every breaker that opened leaves OPEN; whether HALF_OPEN was seen on the way is
        // recorded (it can be shorter than a scrape interval).
        let observed = std::sync::atomic::AtomicBool::new(false);
        let half_open = self
            .wait_for(within, Some(opened), false, |s| {
                if s == "HALF_OPEN" {
                    observed.store(true, Ordering::Relaxed);
                }
                s != "OPEN"
            })
            .await;
        let seen = self.states();
        if !half_open {
            self.step(7, "FAILED", json!({ "breakers": seen }));
            return false;
        }
        let observed = observed.load(Ordering::Relaxed);
        self.step(
            7,
            "PASSED",
            json!({
                "afterMs": started.elapsed().as_millis() as u64,
                "observedHalfOpen": observed,
                "breakers": seen,
            }),
        );

        // 8. Probes succeed: the backlog shrinks.
        let peak = self.backlog().await.unwrap_or(0);
        let deadline = Instant::now() + within;
        let mut now = peak;
        while Instant::now() < deadline {
            now = self.backlog().await.unwrap_or(peak);
            if now < peak || peak == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if now >= peak && peak > 0 {
            self.step(8, "FAILED", json!({ "outboxBacklog": now }));
            return false;
        }
        self.step(
            8,
            "PASSED",
            json!({ "outboxBacklogPeak": peak, "outboxBacklogNow": now }),
        );

        // 9. CLOSED everywhere and the backlog drained; no authorization failed. The
        // drill's own traffic stops first, so "drained" can be exact.
        stop.store(true, Ordering::Release);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let closed = self.wait_for(within, None, false, |s| s == "CLOSED").await;
        let deadline = Instant::now() + within;
        let mut backlog = self.backlog().await;
        while backlog != Some(0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            backlog = self.backlog().await;
        }
        let failed = traffic.failed.load(Ordering::Acquire);
        let ok = closed && backlog == Some(0) && failed == 0;
        self.step(
            9,
            if ok { "PASSED" } else { "FAILED" },
            json!({
                "breakers": self.states(),
                "outboxBacklog": backlog,
                "authorizationsFailed": failed,
            }),
        );
        ok
    }
}
