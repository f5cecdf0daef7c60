//! mcp: a Model Context Protocol server on stdio, so an assistant (Claude Desktop, an IDE)
//! can ask the appliance what is going on. It is a client of the monitoring service's
//! admin API and holds no state of its own: every tool is one or two admin API reads,
//! answered as JSON. Reads only; writes stay with an operator on the dashboard.
//!
//! `mcp --config mcp.toml` (see the README for a client config). stdout carries the
//! protocol alone; logs go to stderr.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use mimalloc::MiMalloc;
use payrail_core::config::Validate;
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{schemars, tool, tool_handler, tool_router, ServerHandler, ServiceExt};
use serde::Deserialize;
use serde_json::Value as Json;
use std::path::PathBuf;
use std::time::Duration;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The admin API: monitoring (`http://10.0.0.1:8087`) or the gateway over TLS
    /// (`https://payments.example.com`).
    admin_url: String,
    /// File holding the admin bearer token: a read-only one (`scope = "read"`) is enough.
    token_file: PathBuf,
    /// A PEM file of CA certificates to trust for an https `admin_url` besides the
    /// compiled-in public roots (a private or self-signed CA).
    #[serde(default)]
    ca_file: Option<PathBuf>,
    /// Per-call budget. Default 60 000 ms (a reconciliation can take a while).
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
}

fn default_timeout() -> u64 {
    60_000
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        if !self.admin_url.starts_with("http://") && !self.admin_url.starts_with("https://") {
            return Err("admin_url must start with http:// or https://".into());
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Payrail {
    base: String,
    token: String,
    timeout: Duration,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    #[allow(dead_code)] // read by the code #[tool_handler] generates
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct PaymentsQuery {
    #[schemars(description = "only this merchant's payments")]
    merchant_id: Option<String>,
    #[schemars(description = "how many, newest first (1-500, default 20)")]
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct DlqQuery {
    #[schemars(description = "payment.dlq, settlement.dlq, refund.dlq or void.dlq")]
    topic: String,
    #[schemars(description = "how many, newest first (1-500, default 20)")]
    limit: Option<u32>,
}

/// A tool's answer: the admin API's JSON, or an error result the model can read.
fn answer(result: Result<Json, String>) -> CallToolResult {
    match result {
        Ok(body) => CallToolResult::success(vec![ContentBlock::text(
            serde_json::to_string_pretty(&body).unwrap_or_default(),
        )]),
        Err(e) => CallToolResult::error(vec![ContentBlock::text(e)]),
    }
}

impl Payrail {
    async fn get(&self, path: &str) -> Result<Json, String> {
        let request = hyper::Request::get(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("monitoring unreachable: {e}"))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let json: Json = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            if status == 200 {
                Ok(json)
            } else {
                Err(format!(
                    "HTTP {status}: {}",
                    json["message"].as_str().unwrap_or("")
                ))
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }

    /// The report of the newest record listed under `list[key]`.
    async fn latest_report(&self, list: &str, key: &str, report: &str) -> Result<Json, String> {
        let listed = self.get(list).await?;
        let Some(id) = listed[key][0]["id"].as_str() else {
            return Err(format!("nothing recorded yet ({list} is empty)"));
        };
        self.get(&format!("{report}/{id}")).await
    }
}

#[tool_router]
impl Payrail {
    #[tool(
        description = "Recent payments across every shard, newest first, optionally of one merchant."
    )]
    async fn query_payments(&self, Parameters(q): Parameters<PaymentsQuery>) -> CallToolResult {
        let limit = q.limit.unwrap_or(20).clamp(1, 500);
        let mut path = format!("/api/admin/payments?limit={limit}");
        if let Some(m) = q.merchant_id {
            path.push_str(&format!(
                "&merchantId={}",
                payrail_core::url::encode_component(&m)
            ));
        }
        answer(self.get(&path).await)
    }

    #[tool(
        description = "Statistics: payments by status and shard, settlement and refund success rates and retry distribution, outbox backlog and lag."
    )]
    async fn statistics(&self) -> CallToolResult {
        let result = async {
            Ok(serde_json::json!({
                "payments": self.get("/api/admin/stats").await?,
                "jobs": self.get("/api/admin/jobs").await?,
                "outbox": self.get("/api/admin/outbox").await?,
            }))
        }
        .await;
        answer(result)
    }

    #[tool(
        description = "Three-way reconciliation of payments, the ledger and the payment gateway's records: clean or each mismatch."
    )]
    async fn reconciliation_report(&self) -> CallToolResult {
        answer(self.get("/api/admin/reconciliation").await)
    }

    #[tool(
        description = "Circuit-breaker states (CLOSED, OPEN, HALF_OPEN) of every service instance."
    )]
    async fn breaker_states(&self) -> CallToolResult {
        answer(self.get("/api/admin/breakers").await)
    }

    #[tool(
        description = "Dead-letter messages of one DLQ topic, newest first, with the error that sent each there."
    )]
    async fn dlq_messages(&self, Parameters(q): Parameters<DlqQuery>) -> CallToolResult {
        let limit = q.limit.unwrap_or(20).clamp(1, 500);
        answer(
            self.get(&format!(
                "/api/admin/dlq/{}?limit={limit}",
                payrail_core::url::encode_component(&q.topic)
            ))
            .await,
        )
    }

    #[tool(
        description = "Kafka topic offsets and each consumer group's lag per topic and partition."
    )]
    async fn consumer_lag(&self) -> CallToolResult {
        answer(self.get("/api/admin/kafka").await)
    }

    #[tool(
        description = "Analysis report of the latest k6 load test: throughput, latency percentiles against targets, errors, bottleneck hints, recommendations."
    )]
    async fn analyse_latest_load_test(&self) -> CallToolResult {
        answer(
            self.latest_report(
                "/api/admin/loadtests",
                "runs",
                "/api/admin/reports/loadtests",
            )
            .await,
        )
    }

    #[tool(
        description = "Analysis report of the latest circuit-breaker drill: each step's result, findings, recommendations."
    )]
    async fn analyse_latest_drill(&self) -> CallToolResult {
        answer(
            self.latest_report("/api/admin/drills", "drills", "/api/admin/reports/drills")
                .await,
        )
    }

    #[tool(description = "Analysis report of the live metrics of the last minute.")]
    async fn analyse_live_metrics(&self) -> CallToolResult {
        answer(self.get("/api/admin/reports/live").await)
    }
}

#[tool_handler]
impl ServerHandler for Payrail {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("payrail", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "payrail, a payment processing appliance. Tools read its admin API: payments, \
                 statistics, reconciliation, breakers, dead letters, consumer lag, and analyses of \
                 the latest load test, drill and live metrics.",
            )
    }
}

fn main() {
    if let Err(error) = run() {
        eprintln!("mcp: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Some((_, config)) = payrail_core::config::startup::<Config>("mcp")? else {
        return Ok(());
    };
    let token = payrail_core::config::read_secret(&config.token_file)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tls = tls_config(config.ca_file.as_deref())?;
    runtime.block_on(async {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let server = Payrail {
            base: config.admin_url.trim_end_matches('/').to_owned(),
            token,
            timeout: Duration::from_millis(config.timeout_ms),
            client: Client::builder(TokioExecutor::new()).build(connector),
            tool_router: Payrail::tool_router(),
        };
        let service = server.serve(rmcp::transport::stdio()).await?;
        service.waiting().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

/// The compiled-in public roots (a static binary needs no CA bundle on the host), plus the
/// CA certificates of `ca_file`.
fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, Box<dyn std::error::Error>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
        {
            roots
                .add(cert.map_err(|e| format!("{}: {e}", path.display()))?)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
