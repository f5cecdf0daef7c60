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
    /// File holding the admin bearer token (never the token itself).
    pub token_file: PathBuf,
    /// Every write is appended here as one JSON line (who, what, result).
    pub audit_log: PathBuf,
    pub shards: Vec<ShardConfig>,
    #[serde(default)]
    pub pool: PoolConfig,
    pub redis: RedisConfig,
    #[serde(default)]
    pub http: payrail_http::ServerConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`, without the password.
    pub url: String,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The key prefix ingest uses (`payrail:` by default).
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
}

fn default_prefix() -> String {
    "payrail:".into()
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        if self.shards.is_empty() {
            return Err("shards must list at least one shard".into());
        }
        Ok(())
    }
}
