//! monitoring: the admin API (`/api/admin/**`, behind the gateway), token-protected.
//!
//! - [`admin`]: the reads across every shard and the audit-logged writes.
//! - [`config`]: the TOML config.
//!
//! Not built yet (issue 6): DLQ viewer/replay, topic offsets and consumer lag, breaker
//! states of every instance, the reconciliation report, the k6 runner, the
//! circuit-breaker drill, the dashboard page and the MCP server.

mod admin;
mod config;

use mimalloc::MiMalloc;
use payrail_http::{error_body, Bridge, Handler, Request, Response};
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

struct Routes {
    admin: Arc<admin::Admin>,
    token: String,
    bridge: Bridge,
}

/// Compares without an early exit, so response timing does not reveal the token.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl Handler for Routes {
    fn handle(&self, request: &Request<'_>, response: &mut Response) {
        if request.path == "/health" {
            response.json(200, b"{\"status\":\"UP\"}");
            return;
        }
        let authorized = request
            .header("authorization")
            .and_then(|v| v.strip_prefix(b"Bearer "))
            .is_some_and(|t| token_matches(t, self.token.as_bytes()));
        if !authorized {
            error_body::write(
                response,
                401,
                "UNAUTHORIZED",
                "send Authorization: Bearer <admin token>",
                None,
            );
            response.header("WWW-Authenticate", "Bearer");
            return;
        }
        let admin = self.admin.clone();
        let request_id = request.request_id.unwrap_or("-").to_owned();
        let segments: Vec<&str> = request.path.trim_end_matches('/').split('/').collect();
        let call = match (request.method, segments.as_slice()) {
            ("GET", ["", "api", "admin", "stats"]) => {
                self.bridge.call(async move { admin.stats().await })
            }
            ("GET", ["", "api", "admin", "payments"]) => {
                let merchant = request.query_param("merchantId").map(str::to_owned);
                let limit = request
                    .query_param("limit")
                    .and_then(|l| l.parse::<u64>().ok())
                    .unwrap_or(50)
                    .clamp(1, 500);
                self.bridge
                    .call(async move { admin.recent(merchant.as_deref(), limit).await })
            }
            ("POST", ["", "api", "admin", "rate-limits", merchant, "reset"]) => {
                if payrail_core::validate::merchant_id(merchant).is_err() {
                    error_body::write(
                        response,
                        400,
                        "VALIDATION_ERROR",
                        "not a valid merchantId",
                        None,
                    );
                    return;
                }
                let merchant = (*merchant).to_owned();
                self.bridge
                    .call(async move { admin.reset_rate_limit(&merchant, &request_id).await })
            }
            ("POST", ["", "api", "admin", "idempotency-cache", "clear"]) => self
                .bridge
                .call(async move { admin.clear_idempotency_cache(&request_id).await }),
            _ => {
                error_body::write(response, 404, "NOT_FOUND", "no such admin route", None);
                return;
            }
        };
        match call {
            Ok(answer) => response.json(answer.status, answer.body.to_string().as_bytes()),
            Err(e) => {
                error_body::write(response, 503, "UPSTREAM_UNAVAILABLE", &e.to_string(), None)
            }
        }
    }
}

fn main() {
    if let Err(error) = run() {
        eprintln!("monitoring: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Some((_, config)) = payrail_core::config::startup::<config::Config>("monitoring")? else {
        return Ok(());
    };
    let token = payrail_core::config::read_secret(&config.token_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("monitoring-io")
        .enable_all()
        .build()?;
    let shards = payrail_db::Shards::new(&config.shards, &config.pool)?;
    let mut info = redis::IntoConnectionInfo::into_connection_info(config.redis.url.as_str())?;
    if let Some(path) = &config.redis.password_file {
        let password = payrail_core::config::read_secret(path)?;
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    let redis = redis::Client::open(info)?;
    let admin = Arc::new(admin::Admin {
        config: config.clone(),
        shards,
        redis,
    });
    let in_flight = prometheus::IntGauge::new("bridge_in_flight", "unregistered")?;
    let bridge = Bridge::new(
        runtime.handle().clone(),
        256,
        Duration::from_secs(30),
        in_flight,
    );
    may::config().set_workers(1);
    let listener = may::net::TcpListener::bind(&config.listen)?;
    tracing::info!(listen = %listener.local_addr()?, "monitoring listening");
    let server = payrail_http::server::serve(
        listener,
        config.http.clone(),
        Arc::new(Routes {
            admin,
            token,
            bridge,
        }),
    );
    let _ = server.join();
    drop(runtime);
    Ok(())
}
