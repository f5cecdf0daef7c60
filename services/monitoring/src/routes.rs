//! The HTTP routes of monitoring. `/health` and the dashboard page are public (the page
//! asks for the token and sends it with every API call); everything under `/api/admin`
//! needs `Authorization: Bearer <admin token>`: a `read` token may GET, a `write` token
//! may also POST and DELETE. Writes are audit-logged with the token's name.

use crate::admin::{answer, error as fail, Admin, Answer, Cursor, Who};
use crate::config::{Config, Scope};
use crate::drill::Drills;
use crate::kafka::{Kafka, KafkaError, DLQ_TOPICS};
use crate::keys::{self, Keys};
use crate::llm::Llm;
use crate::loadtest::{LoadTests, StartError};
use crate::report;
use crate::scrape::Scraper;
use crate::tokens::Tokens;
use payrail_http::{error_body, Bridge, Handler, Request, Response};
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::Duration;

/// The dashboard: one page, no build step (plain HTML, CSS and JavaScript).
const DASHBOARD: &[u8] = include_bytes!("../static/dashboard.html");

/// Everything the routes operate on.
pub struct Ops {
    pub config: Config,
    pub admin: Arc<Admin>,
    pub kafka: Option<Arc<Kafka>>,
    pub scraper: Arc<Scraper>,
    pub loadtests: Option<Arc<LoadTests>>,
    pub drills: Option<Arc<Drills>>,
    pub llm: Llm,
    /// Merchant API keys, when `[api_keys]` is configured.
    pub keys: Option<Arc<Keys>>,
}

pub struct Routes {
    pub ops: Arc<Ops>,
    pub tokens: Tokens,
    pub bridge: Bridge,
}

fn not_configured(what: &str) -> Answer {
    fail(
        503,
        "NOT_CONFIGURED",
        format!("{what} is not configured on this monitoring instance"),
    )
}

fn kafka_error(e: KafkaError) -> Answer {
    match e {
        KafkaError::Unavailable(m) => fail(503, "UPSTREAM_UNAVAILABLE", m),
        KafkaError::NotFound(m) => fail(404, "NOT_FOUND", m),
        KafkaError::NotReplayable(m) => fail(422, "NOT_REPLAYABLE", m),
    }
}

fn json_body(request: &Request<'_>) -> Result<Json, Answer> {
    if request.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(request.body)
        .map_err(|e| fail(400, "VALIDATION_ERROR", format!("body is not JSON: {e}")))
}

impl Handler for Routes {
    fn handle(&self, request: &Request<'_>, response: &mut Response) {
        match request.path {
            "/health" => {
                response.json(200, b"{\"status\":\"UP\"}");
                return;
            }
            "/" | "/admin" | "/admin/" => {
                response.content_type("text/html; charset=utf-8");
                response.header("Cache-Control", "no-store");
                response.header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'");
                response.status(200);
                response.body_mut().extend_from_slice(DASHBOARD);
                return;
            }
            _ => {}
        }
        let token = if request.header_count("authorization") == 1 {
            self.tokens.find(request.header("authorization"))
        } else {
            None
        };
        let Some(token) = token else {
            error_body::write(
                response,
                401,
                "UNAUTHORIZED",
                "send Authorization: Bearer <admin token>",
                None,
            );
            response.header("WWW-Authenticate", "Bearer realm=\"payrail-admin\"");
            return;
        };
        if request.method != "GET" && token.scope != Scope::Write {
            error_body::write(
                response,
                403,
                "INSUFFICIENT_SCOPE",
                "this admin token is read-only; writes need a token with scope \"write\"",
                None,
            );
            return;
        }
        let who = Who {
            actor: token.name.clone(),
            request_id: request.request_id.unwrap_or("-").to_owned(),
        };
        let result = match self.route(request, who) {
            Ok(answer) => answer,
            Err(answer) => answer,
        };
        if result.body.get("key").is_some() {
            // A new key's secret: shown once, kept by nobody in between.
            response.header("Cache-Control", "no-store");
        }
        response.json(result.status, result.body.to_string().as_bytes());
    }
}

impl Routes {
    /// Runs `future` on tokio; the bridge's own failure (overload, timeout) is a 503.
    fn call<F>(&self, future: F) -> Answer
    where
        F: std::future::Future<Output = Answer> + Send + 'static,
    {
        self.bridge
            .call(future)
            .unwrap_or_else(|e| fail(503, "UPSTREAM_UNAVAILABLE", e))
    }

    fn route(&self, request: &Request<'_>, who: Who) -> Result<Answer, Answer> {
        let ops = self.ops.clone();
        let segments: Vec<&str> = request.path.trim_end_matches('/').split('/').collect();
        let ["", "api", "admin", rest @ ..] = segments.as_slice() else {
            return Err(fail(404, "NOT_FOUND", "no such admin route"));
        };
        let number = |name: &str, default: u64, max: u64| {
            request
                .query_param(name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
                .clamp(1, max)
        };
        Ok(match (request.method, rest) {
            ("GET", ["stats"]) => self.call(async move { ops.admin.stats().await }),
            ("GET", ["payments"]) => {
                let merchant = request.query_param("merchantId").map(str::to_owned);
                let limit = number("limit", 50, 500);
                let cursor = match request.query_param("cursor") {
                    None => Cursor::default(),
                    Some(text) => Cursor::parse(text).ok_or_else(|| {
                        fail(
                            400,
                            "INVALID_CURSOR",
                            "cursor must be a nextCursor of a previous page",
                        )
                    })?,
                };
                self.call(
                    async move { ops.admin.recent(merchant.as_deref(), limit, &cursor).await },
                )
            }
            ("GET", ["jobs"]) => self.call(async move { ops.admin.jobs().await }),
            ("GET", ["unresolved"]) => {
                let sla = number("slaSeconds", 60, 86_400);
                self.call(async move { ops.admin.unresolved(sla).await })
            }
            ("GET", ["throughput"]) => {
                let minutes = number("minutes", 60, 1440) as u32;
                self.call(async move { ops.admin.throughput(minutes).await })
            }
            ("GET", ["outbox"]) => self.call(async move { ops.admin.outbox().await }),
            ("GET", ["breakers"]) => answer(200, ops.scraper.breakers()),
            ("GET", ["metrics", "live"]) => {
                let since = request
                    .query_param("since")
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0);
                answer(200, json!({ "points": ops.scraper.points(since) }))
            }
            ("GET", ["kafka"]) => {
                let Some(kafka) = ops.kafka.clone() else {
                    return Err(not_configured("kafka"));
                };
                self.call(async move {
                    kafka
                        .offsets()
                        .await
                        .map_or_else(kafka_error, |b| answer(200, b))
                })
            }
            ("GET", ["dlq"]) => answer(200, json!({ "topics": DLQ_TOPICS })),
            ("GET", ["dlq", topic]) => {
                let topic = dlq_topic(topic)?;
                let Some(kafka) = ops.kafka.clone() else {
                    return Err(not_configured("kafka"));
                };
                let limit = number("limit", 50, 500) as usize;
                self.call(async move {
                    kafka
                        .dead_letters(topic, limit)
                        .await
                        .map_or_else(kafka_error, |b| answer(200, b))
                })
            }
            ("POST", ["dlq", topic, "replay"]) => {
                let topic = dlq_topic(topic)?;
                let body = json_body(request)?;
                let (Some(partition), Some(offset)) = (
                    body["partition"]
                        .as_i64()
                        .and_then(|p| i32::try_from(p).ok()),
                    body["offset"].as_i64(),
                ) else {
                    return Err(fail(
                        400,
                        "VALIDATION_ERROR",
                        "send {\"partition\": n, \"offset\": n}",
                    ));
                };
                let Some(kafka) = ops.kafka.clone() else {
                    return Err(not_configured("kafka"));
                };
                self.call(async move {
                    let result = kafka
                        .replay(topic, partition, offset)
                        .await
                        .map_or_else(kafka_error, |b| answer(200, b));
                    let target = format!("{topic}/{partition}@{offset}");
                    ops.admin.audit("dlq-replay", &target, &result, &who);
                    result
                })
            }
            ("GET", ["reconciliation"]) => {
                let command = ops.config.reconcile_command.clone();
                if command.is_empty() {
                    return Err(not_configured("reconcile_command"));
                }
                self.call(async move { reconciliation(&command).await })
            }
            ("GET", ["loadtests"]) => {
                let Some(runs) = ops.loadtests.clone() else {
                    return Err(not_configured("k6"));
                };
                answer(
                    200,
                    json!({ "scenarios": runs.scenarios(), "runs": runs.list() }),
                )
            }
            ("GET", ["loadtests", id]) => {
                let Some(runs) = ops.loadtests.clone() else {
                    return Err(not_configured("k6"));
                };
                runs.get(id).map_or_else(
                    || fail(404, "NOT_FOUND", "no such load test"),
                    |r| answer(200, r),
                )
            }
            ("POST", ["loadtests"]) => {
                let Some(runs) = ops.loadtests.clone() else {
                    return Err(not_configured("k6"));
                };
                let body = json_body(request)?;
                let scenario = body["scenario"].as_str().unwrap_or_default().to_owned();
                let rate = body["rate"]
                    .as_u64()
                    .and_then(|r| u32::try_from(r).ok())
                    .unwrap_or(0);
                let duration = body["durationSeconds"]
                    .as_u64()
                    .and_then(|d| u32::try_from(d).ok())
                    .unwrap_or(0);
                // Spawning k6 needs the runtime's reactor: do it on tokio.
                self.call(async move {
                    let result = match runs.start(&scenario, rate, duration) {
                        Ok(record) => answer(202, record),
                        Err(StartError::Invalid(m)) => fail(400, "VALIDATION_ERROR", m),
                        Err(StartError::Busy(m)) => fail(409, "LOAD_TEST_RUNNING", m),
                        Err(StartError::Failed(m)) => fail(503, "K6_UNAVAILABLE", m),
                    };
                    let target = format!("{scenario} rate={rate} duration={duration}s");
                    ops.admin.audit("load-test-start", &target, &result, &who);
                    result
                })
            }
            ("GET", ["drills"]) => {
                let Some(drills) = ops.drills.clone() else {
                    return Err(not_configured("drill"));
                };
                answer(200, json!({ "drills": drills.history.list() }))
            }
            ("GET", ["drills", id]) => {
                let Some(drills) = ops.drills.clone() else {
                    return Err(not_configured("drill"));
                };
                drills.get(id).map_or_else(
                    || fail(404, "NOT_FOUND", "no such drill"),
                    |r| answer(200, r),
                )
            }
            ("POST", ["drills"]) => {
                let Some(drills) = ops.drills.clone() else {
                    return Err(not_configured("drill"));
                };
                self.call(async move {
                    let result = match drills.start() {
                        Some(record) => answer(202, record),
                        None => fail(409, "DRILL_RUNNING", "a drill is already running"),
                    };
                    ops.admin.audit("drill-start", "broker", &result, &who);
                    result
                })
            }
            ("GET", ["reports", "loadtests", id]) => {
                let Some(runs) = ops.loadtests.clone() else {
                    return Err(not_configured("k6"));
                };
                let Some(run) = runs.get(id) else {
                    return Err(fail(404, "NOT_FOUND", "no such load test"));
                };
                if run["status"] == "RUNNING" {
                    return Err(fail(409, "LOAD_TEST_RUNNING", "the run has not finished"));
                }
                let from = run["startedAtMs"].as_i64().unwrap_or(0);
                let to = run["finishedAtMs"].as_i64().unwrap_or(i64::MAX);
                self.call(async move {
                    let mut context = context(&ops, from).await;
                    context
                        .points
                        .retain(|p| p["t"].as_i64().is_some_and(|t| t <= to));
                    let mut body = report::load_test(&run, &context);
                    body["llm"] = ops.llm.summarize(&body).await;
                    answer(200, body)
                })
            }
            ("GET", ["reports", "drills", id]) => {
                let Some(drills) = ops.drills.clone() else {
                    return Err(not_configured("drill"));
                };
                let Some(record) = drills.get(id) else {
                    return Err(fail(404, "NOT_FOUND", "no such drill"));
                };
                self.call(async move {
                    let mut body = report::drill(&record);
                    body["llm"] = ops.llm.summarize(&body).await;
                    answer(200, body)
                })
            }
            ("GET", ["reports", "live"]) => self.call(async move {
                let since = payrail_core::time::now_ms() - 60_000;
                let context = context(&ops, since).await;
                let mut body = report::live(&context);
                body["llm"] = ops.llm.summarize(&body).await;
                answer(200, body)
            }),
            ("POST", ["rate-limits", merchant, "reset"]) => {
                if payrail_core::validate::merchant_id(merchant).is_err() {
                    return Err(fail(400, "VALIDATION_ERROR", "not a valid merchantId"));
                }
                let merchant = (*merchant).to_owned();
                self.call(async move { ops.admin.reset_rate_limit(&merchant, &who).await })
            }
            ("POST", ["idempotency-cache", "clear"]) => {
                self.call(async move { ops.admin.clear_idempotency_cache(&who).await })
            }
            (method, ["merchants", merchant, "keys", tail @ ..]) => {
                if payrail_core::validate::merchant_id(merchant).is_err() {
                    return Err(fail(400, "VALIDATION_ERROR", "not a valid merchantId"));
                }
                let Some(keys) = ops.keys.clone() else {
                    return Err(not_configured("api_keys"));
                };
                let merchant = (*merchant).to_owned();
                let key_id = match tail {
                    [] => None,
                    [id, ..] if payrail_db::api_keys::valid_key_id(id) => Some((*id).to_owned()),
                    _ => {
                        return Err(fail(
                            404,
                            "NOT_FOUND",
                            "no such key (key ids look like key_<12 hex>)",
                        ))
                    }
                };
                match (method, tail, key_id) {
                    ("POST", [], None) => {
                        self.call(
                            async move { keys::create(&ops.admin, &keys, &merchant, &who).await },
                        )
                    }
                    ("GET", [], None) => {
                        self.call(async move { keys::list(&ops.admin, &merchant).await })
                    }
                    ("POST", [_, "roll"], Some(key_id)) => {
                        let body = json_body(request)?;
                        let overlap = match &body["overlapSeconds"] {
                            Json::Null => None,
                            v => {
                                Some(v.as_u64().filter(|s| *s <= 30 * 86_400).ok_or_else(|| {
                                    fail(
                                        400,
                                        "VALIDATION_ERROR",
                                        "overlapSeconds must be an integer from 0 to 2592000",
                                    )
                                })?)
                            }
                        };
                        self.call(async move {
                            keys::roll(&ops.admin, &keys, &merchant, &key_id, overlap, &who).await
                        })
                    }
                    ("DELETE", [_], Some(key_id)) => self.call(async move {
                        keys::revoke(&ops.admin, &merchant, &key_id, &who).await
                    }),
                    _ => fail(404, "NOT_FOUND", "no such admin route"),
                }
            }
            _ => fail(404, "NOT_FOUND", "no such admin route"),
        })
    }
}

fn dlq_topic(name: &str) -> Result<&'static str, Answer> {
    DLQ_TOPICS
        .iter()
        .find(|t| **t == name)
        .copied()
        .ok_or_else(|| {
            fail(
                404,
                "NOT_FOUND",
                format!("not a DLQ topic (known: {})", DLQ_TOPICS.join(", ")),
            )
        })
}

/// The state of the system for a report: points since `since_ms`, breakers, backlog, lag.
async fn context(ops: &Ops, since_ms: i64) -> report::Context {
    let outbox_backlog = ops.admin.outbox_backlog().await;
    let mut consumer_lag = Vec::new();
    if let Some(kafka) = &ops.kafka {
        if let Ok(offsets) = kafka.offsets().await {
            for group in offsets["groups"].as_array().into_iter().flatten() {
                consumer_lag.push((
                    group["group"].as_str().unwrap_or_default().to_owned(),
                    group["lag"].as_i64().unwrap_or(0),
                ));
            }
        }
    }
    report::Context {
        points: ops.scraper.points(since_ms),
        breakers: ops.scraper.breakers(),
        outbox_backlog,
        consumer_lag,
    }
}

/// Runs the reconcile command: its report lines, and whether everything reconciled
/// (exit 0). A command that cannot run, or runs too long, is a 503.
async fn reconciliation(command: &[String]) -> Answer {
    let Some((program, args)) = command.split_first() else {
        return not_configured("reconcile_command");
    };
    let run = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(Duration::from_secs(50), run).await {
        Err(_) => return fail(503, "RECONCILE_TIMEOUT", "reconciliation took over 50 s"),
        Ok(Err(e)) => return fail(503, "RECONCILE_UNAVAILABLE", format!("{program}: {e}")),
        Ok(Ok(output)) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    match output.status.code() {
        Some(0) | Some(1) => answer(
            200,
            json!({
                "clean": output.status.success(),
                "report": lines,
                "checkedAt": payrail_core::time::rfc3339(payrail_core::time::now_ms()),
            }),
        ),
        _ => fail(
            503,
            "RECONCILE_UNAVAILABLE",
            format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ),
    }
}
