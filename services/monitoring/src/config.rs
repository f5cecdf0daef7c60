//! monitoring's TOML config.

use payrail_core::config::Validate;
use payrail_db::{PoolConfig, ShardConfig};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `host:port` to listen on.
    pub listen: String,
    /// File holding an admin bearer token with write scope, named `admin` in the audit log
    /// (never the token itself). Kept for existing configs; `admin_tokens` names each.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Named admin tokens, each with a scope. At least one token (here or `token_file`) is
    /// required, and each must hold at least 32 bytes.
    #[serde(default)]
    pub admin_tokens: Vec<AdminToken>,
    /// Merchant API keys: without this table the key routes answer 503 "not configured".
    #[serde(default)]
    pub api_keys: Option<ApiKeysConfig>,
    /// Every write is appended here as one JSON line (who, what, result).
    pub audit_log: PathBuf,
    /// Where load-test runs and drills are kept (survives restarts).
    pub state_dir: PathBuf,
    pub shards: Vec<ShardConfig>,
    #[serde(default)]
    pub pool: PoolConfig,
    pub redis: RedisConfig,
    /// The broker, for topic offsets, consumer lag and the DLQs. Without it those
    /// endpoints answer 503 "not configured".
    #[serde(default)]
    pub kafka: Option<payrail_kafka::KafkaConfig>,
    /// Consumer groups whose lag is reported.
    #[serde(default = "default_groups")]
    pub consumer_groups: Vec<String>,
    /// Every service instance whose `/metrics` is scraped (breakers, live throughput and
    /// latency).
    #[serde(default)]
    pub instances: Vec<Instance>,
    /// How often instances are scraped. Default 1 000 ms.
    #[serde(default = "default_scrape_interval")]
    pub scrape_interval_ms: u64,
    /// The command printing the three-way reconciliation report (exit 0 = clean), e.g.
    /// `["ledger", "--config", "/etc/payrail/ledger.toml", "reconcile"]`.
    #[serde(default)]
    pub reconcile_command: Vec<String>,
    #[serde(default)]
    pub k6: Option<K6Config>,
    #[serde(default)]
    pub drill: Option<DrillConfig>,
    #[serde(default)]
    pub llm: LlmConfig,
    #[serde(default)]
    pub http: payrail_http::ServerConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    /// Who the token is, in the audit log (`operator`, `mcp`): 1-32 of `[a-z0-9_-]`.
    pub name: String,
    pub scope: Scope,
    /// The file holding the token.
    pub file: PathBuf,
}

/// What a token may do: `read` (every GET) or `write` (everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// The secret file the keys' hash is keyed with: the same file as ingest's.
    pub hash_key_file: PathBuf,
    /// The environment word in new keys (`prk_<env>_…`). Default `live`.
    #[serde(default = "default_key_environment")]
    pub environment: String,
    /// How long a rolled key keeps working next to its successor. Default 24 h.
    #[serde(default = "default_roll_overlap")]
    pub roll_overlap_seconds: u64,
}

fn default_key_environment() -> String {
    "live".into()
}

fn default_roll_overlap() -> u64 {
    86_400
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// A name unique in the list, e.g. `ingest-1`.
    pub name: String,
    /// Its base URL, e.g. `http://10.0.0.2:8081`.
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`, or `rediss://` for TLS; without the password.
    pub url: String,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// With a `rediss://` url: the PEM file of the CA Redis's certificate must chain to
    /// (the system roots without it).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// The key prefix ingest uses (`payrail:` by default).
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K6Config {
    /// The k6 binary.
    #[serde(default = "default_k6")]
    pub binary: PathBuf,
    /// The folder of scenarios (`<name>.js`); only those can be started.
    pub scenarios_dir: PathBuf,
    /// The payment API the scenarios load (the gateway).
    pub base_url: String,
    /// A write-scoped admin token the scenarios create their merchants' API keys with
    /// (`ADMIN_TOKEN`); without it they send no key (merchant_auth = "off").
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// Upper bounds an operator cannot exceed from the dashboard.
    #[serde(default = "default_max_rate")]
    pub rate_max: u32,
    #[serde(default = "default_max_duration")]
    pub duration_max_s: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// Stops the broker (e.g. `["kill", "-STOP", "1234"]` or
    /// `["systemctl", "kill", "-s", "STOP", "apache-kafka.service"]`).
    pub stop_broker: Vec<String>,
    /// Resumes it.
    pub resume_broker: Vec<String>,
    /// The payment API the drill sends its authorizations to.
    pub base_url: String,
    /// The breaker the drill watches, on every instance that has it.
    #[serde(default = "default_drill_breaker")]
    pub breaker: String,
    /// How long to wait for the breaker to open, then to close again. Defaults 60 s, 120 s.
    #[serde(default = "default_open_within")]
    pub open_within_s: u64,
    #[serde(default = "default_close_within")]
    pub close_within_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// A file holding an Anthropic API key. Without it reports are deterministic only.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    #[serde(default = "default_llm_model")]
    pub model: String,
    /// The Messages API's base URL.
    #[serde(default = "default_llm_base_url")]
    pub base_url: String,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            api_key_file: None,
            model: default_llm_model(),
            base_url: default_llm_base_url(),
        }
    }
}

fn default_llm_base_url() -> String {
    "https://api.anthropic.com".into()
}

fn default_groups() -> Vec<String> {
    ["settlement-worker", "refund-worker", "ledger"]
        .map(String::from)
        .to_vec()
}

fn default_scrape_interval() -> u64 {
    1_000
}

fn default_prefix() -> String {
    "payrail:".into()
}

fn default_k6() -> PathBuf {
    "k6".into()
}

fn default_max_rate() -> u32 {
    2_000
}

fn default_max_duration() -> u32 {
    600
}

fn default_drill_breaker() -> String {
    "kafka-publisher".into()
}

fn default_open_within() -> u64 {
    60
}

fn default_close_within() -> u64 {
    120
}

fn default_llm_model() -> String {
    "claude-sonnet-4-5".into()
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        if self.shards.is_empty() {
            return Err("shards must list at least one shard".into());
        }
        if self.token_file.is_none() && self.admin_tokens.is_empty() {
            return Err("name at least one admin token (admin_tokens or token_file)".into());
        }
        let mut token_names: Vec<&str> =
            self.admin_tokens.iter().map(|t| t.name.as_str()).collect();
        if self.token_file.is_some() {
            token_names.push("admin");
        }
        for name in &token_names {
            if name.is_empty()
                || name.len() > 32
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "admin token name {name:?} must be 1-32 of [a-z0-9_-]"
                ));
            }
        }
        token_names.sort_unstable();
        if token_names.windows(2).any(|w| w[0] == w[1]) {
            return Err("admin token names must be unique (token_file is named \"admin\")".into());
        }
        if let Some(keys) = &self.api_keys {
            if !payrail_db::api_keys::valid_environment(&keys.environment) {
                return Err("api_keys.environment must be 1-8 lowercase letters".into());
            }
        }
        let mut names: Vec<&str> = self.instances.iter().map(|i| i.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("instances: names must be unique".into());
        }
        if self.instances.iter().any(|i| !i.url.starts_with("http://")) {
            return Err("instances: url must start with http://".into());
        }
        if self.scrape_interval_ms < 100 {
            return Err("scrape_interval_ms must be at least 100".into());
        }
        if let Some(drill) = &self.drill {
            if drill.stop_broker.is_empty() || drill.resume_broker.is_empty() {
                return Err("drill: stop_broker and resume_broker must name a command".into());
            }
        }
        Ok(())
    }
}
