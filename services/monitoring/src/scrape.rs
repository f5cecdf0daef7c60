//! Scrapes every configured instance's `/metrics` once per interval: the circuit-breaker
//! state of every instance, and a ring of per-interval points (throughput, errors, latency
//! percentiles) that the dashboard charts and the reports read. Only the last hour is kept
//! (a bounded ring), Prometheus keeps the long history.

use crate::config::Config;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_millis(500)));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// GETs `url` within `timeout`: (status, body).
pub async fn get(
    client: &HttpClient,
    url: &str,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let fetch = async {
        let response = client.get(uri).await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("{url}: no answer within {timeout:?}"))?
}

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text exposition format (what our services write: no timestamps, label values
/// without embedded quotes). Comment and malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        let labels = labels
            .split("\",")
            .filter_map(|pair| {
                let (k, v) = pair.split_once("=\"")?;
                Some((k.trim().to_owned(), v.trim_end_matches('"').to_owned()))
            })
            .collect();
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

/// The `q` quantile (0..1) of a cumulative histogram given as (upper bound, count), by
/// linear interpolation inside the bucket, as Prometheus' `histogram_quantile` does.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let width = count - lower.1;
            let within = if width > 0.0 {
                (rank - lower.1) / width
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * within);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

#[derive(Debug, Clone, Default)]
struct Totals {
    requests: f64,
    errors: f64,
    buckets: BTreeMap<u64, f64>,
}

/// What one scrape of every instance found.
#[derive(Debug, Clone, Default)]
struct Scrape {
    at_ms: i64,
    instances: Vec<Json>,
    totals: Totals,
}

pub struct Scraper {
    config: Config,
    client: HttpClient,
    last: Mutex<Option<Scrape>>,
    points: Mutex<VecDeque<Json>>,
}

const POINTS_MAX: usize = 3_600;
/// The request counter and latency histogram of the payment API (every ingest instance).
const REQUESTS: &str = "payrail_http_requests_total";
const LATENCY: &str = "payrail_http_request_duration_seconds_bucket";
const BREAKER: &str = "payrail_circuit_breaker_state";
/// ingest's `merchant_auth` (1 required, 0 off).
const MERCHANT_AUTH: &str = "payrail_merchant_auth_required";

fn breaker_name(value: f64) -> &'static str {
    match value as i64 {
        0 => "CLOSED",
        1 => "OPEN",
        2 => "HALF_OPEN",
        _ => "UNKNOWN",
    }
}

impl Scraper {
    pub fn new(config: Config) -> Arc<Self> {
        Arc::new(Self {
            config,
            client: client(),
            last: Mutex::new(None),
            points: Mutex::new(VecDeque::with_capacity(POINTS_MAX)),
        })
    }

    pub async fn run(self: Arc<Self>) {
        let interval = Duration::from_millis(self.config.scrape_interval_ms);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.scrape_once().await;
        }
    }

    async fn scrape_once(&self) {
        let timeout = Duration::from_millis(self.config.scrape_interval_ms.max(500));
        // One task per instance, so a slow one does not delay the others' samples.
        let tasks: Vec<_> = self
            .config
            .instances
            .iter()
            .map(|instance| {
                let client = self.client.clone();
                let url = format!("{}/metrics", instance.url.trim_end_matches('/'));
                tokio::spawn(async move { get(&client, &url, timeout).await })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for (instance, task) in self.config.instances.iter().zip(tasks) {
            let result = task.await.unwrap_or_else(|e| Err(e.to_string()));
            results.push((instance, result));
        }
        let mut scrape = Scrape {
            at_ms: payrail_core::time::now_ms(),
            ..Scrape::default()
        };
        for (instance, result) in results {
            let mut breakers = serde_json::Map::new();
            let mut merchant_auth = Json::Null;
            let up = match result {
                Ok((200, body)) => {
                    for sample in parse(&String::from_utf8_lossy(&body)) {
                        if sample.name == MERCHANT_AUTH {
                            merchant_auth = json!(if sample.value > 0.5 {
                                "required"
                            } else {
                                "off"
                            });
                        } else if sample.name == BREAKER {
                            let name = sample.labels.get("breaker").cloned().unwrap_or_default();
                            breakers.insert(name, json!(breaker_name(sample.value)));
                        } else if sample.name == REQUESTS {
                            scrape.totals.requests += sample.value;
                            if sample
                                .labels
                                .get("status")
                                .is_some_and(|s| s.starts_with('5'))
                            {
                                scrape.totals.errors += sample.value;
                            }
                        } else if sample.name == LATENCY {
                            let bound = sample
                                .labels
                                .get("le")
                                .and_then(|le| le.parse::<f64>().ok())
                                .unwrap_or(f64::INFINITY);
                            // Keyed by the bound's bits: every instance has the same buckets.
                            *scrape.totals.buckets.entry(bound.to_bits()).or_default() +=
                                sample.value;
                        }
                    }
                    json!(true)
                }
                Ok((status, _)) => json!(format!("HTTP {status}")),
                Err(e) => json!(e),
            };
            scrape.instances.push(json!({
                "name": instance.name,
                "url": instance.url,
                "up": up == json!(true),
                "error": if up == json!(true) { Json::Null } else { up },
                "breakers": breakers,
                "merchantAuth": merchant_auth,
            }));
        }
        let previous = self.last.lock().replace(scrape.clone());
        if let Some(previous) = previous {
            if let Some(point) = point(&previous, &scrape) {
                let mut points = self.points.lock();
                if points.len() == POINTS_MAX {
                    points.pop_front();
                }
                points.push_back(point);
            }
        }
    }

    /// Every instance and its breakers, as last scraped.
    pub fn breakers(&self) -> Json {
        match &*self.last.lock() {
            Some(scrape) => json!({
                "scrapedAt": payrail_core::time::rfc3339(scrape.at_ms),
                "instances": scrape.instances,
            }),
            None => json!({ "scrapedAt": null, "instances": [] }),
        }
    }

    /// The state of `breaker` on every instance that has it (instance name → state).
    pub fn breaker_states(&self, breaker: &str) -> BTreeMap<String, String> {
        let last = self.last.lock();
        let Some(scrape) = &*last else {
            return BTreeMap::new();
        };
        scrape
            .instances
            .iter()
            .filter_map(|i| {
                let state = i["breakers"][breaker].as_str()?;
                Some((i["name"].as_str()?.to_owned(), state.to_owned()))
            })
            .collect()
    }

    /// The points since `since_ms` (all kept points when 0).
    pub fn points(&self, since_ms: i64) -> Vec<Json> {
        self.points
            .lock()
            .iter()
            .filter(|p| p["t"].as_i64().unwrap_or_default() > since_ms)
            .cloned()
            .collect()
    }
}

/// The change between two scrapes as a point: requests/s, 5xx/s, latency percentiles in ms
/// of the requests that arrived in between (none when no request did).
fn point(before: &Scrape, after: &Scrape) -> Option<Json> {
    let seconds = (after.at_ms - before.at_ms) as f64 / 1000.0;
    if seconds <= 0.0 {
        return None;
    }
    // A restarted instance resets its counters: clamp at zero rather than go negative.
    let requests = (after.totals.requests - before.totals.requests).max(0.0);
    let errors = (after.totals.errors - before.totals.errors).max(0.0);
    let buckets: Vec<(f64, f64)> = after
        .totals
        .buckets
        .iter()
        .map(|(bits, count)| {
            let old = before.totals.buckets.get(bits).copied().unwrap_or_default();
            (f64::from_bits(*bits), (count - old).max(0.0))
        })
        .collect();
    let mut sorted = buckets;
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let ms = |q| quantile(&sorted, q).map(|s| (s * 1000.0 * 100.0).round() / 100.0);
    Some(json!({
        "t": after.at_ms,
        "rps": (requests / seconds * 10.0).round() / 10.0,
        "errorsPerSecond": (errors / seconds * 10.0).round() / 10.0,
        "p50Ms": ms(0.5),
        "p95Ms": ms(0.95),
        "p99Ms": ms(0.99),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_values() {
        let text = "# HELP x y\npayrail_circuit_breaker_state{breaker=\"kafka-publisher\",instance_name=\"ingest-1\",service=\"ingest\"} 1\nplain 2.5\nbroken line\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].labels["breaker"], "kafka-publisher");
        assert_eq!(samples[0].labels["instance_name"], "ingest-1");
        assert_eq!(samples[0].value, 1.0);
        assert_eq!(samples[1].name, "plain");
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        let buckets = [(0.01, 50.0), (0.02, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(&buckets, 0.5), Some(0.01));
        let p75 = quantile(&buckets, 0.75).expect("data");
        assert!((p75 - 0.015).abs() < 1e-9, "{p75}");
        assert_eq!(quantile(&[(0.01, 0.0)], 0.5), None);
    }
}
