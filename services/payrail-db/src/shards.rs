//! One connection pool per shard.

use crate::error::{DbError, Result};
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts};
use serde::Deserialize;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// Shard number, 1-based; it is the high part of every id the shard issues.
    pub number: u16,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    /// File holding the password (NixOS `LoadCredential`); none for passwordless local users.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA the shard's server certificate must chain to. Set, every
    /// connection to the shard is TLS (1.2 or 1.3, rustls), verified against this CA alone
    /// and against `host` (a DNS name or IP in the certificate's subjectAltName); a shard
    /// that does not offer TLS is unavailable, never reached in clear. For links that leave
    /// the host; loopback links stay plain.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// When `host` is a loopback address, reconnect over the server's Unix socket (its
    /// `@@socket`): cheaper than loopback TCP. Off forces TCP, e.g. through a proxy in
    /// front of the shard. Default true.
    #[serde(default = "default_prefer_socket")]
    pub prefer_socket: bool,
}

fn default_prefer_socket() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Connections kept open per shard. Default 2.
    pub connections_min: usize,
    /// Connections at most per shard: bounds the load one instance puts on a shard.
    /// Default 24.
    pub connections_max: usize,
    /// Prepared statements cached per connection (each stays prepared on the server too).
    /// Every distinct statement text is one: multi-row statements come in a few sizes
    /// (`statement_chunks`, `padded_id_lists`; ingest's group commit has one per batch size
    /// up to its `batch_size_max`), so the texts in use stay under this. Default 512.
    pub statement_cache_size: usize,
    /// Longest a query, a transaction step or a wait for a pooled connection may take
    /// before the shard is treated as unavailable. Default 3 000 ms.
    pub query_timeout_ms: u64,
    /// `innodb_lock_wait_timeout` of every session, shorter than `query_timeout_ms`: a
    /// statement waiting on a row lock fails on the server, which releases what its
    /// transaction holds. Without it a client that gave up left its transaction waiting
    /// (and holding its own locks) for the server's 50 s default, and every transaction
    /// queued behind it timed out too. Default 1 s.
    pub lock_wait_timeout_seconds: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            connections_min: 2,
            connections_max: 24,
            statement_cache_size: 512,
            query_timeout_ms: 3_000,
            lock_wait_timeout_seconds: 1,
        }
    }
}

pub struct Shards {
    /// Index i holds shard number i + 1.
    pools: Vec<Pool>,
    /// Per shard, the pool's connection options with autocommit off, for [`Shards::session`].
    sessions: Vec<Opts>,
    query_timeout: Duration,
}

impl Shards {
    /// Builds the pools; connections open lazily, so a shard that is down at start-up
    /// does not stop the service (its requests answer 503 until it is back).
    pub fn new(shards: &[ShardConfig], pool: &PoolConfig) -> std::result::Result<Self, String> {
        let mut sorted: Vec<&ShardConfig> = shards.iter().collect();
        sorted.sort_by_key(|s| s.number);
        for (i, shard) in sorted.iter().enumerate() {
            if usize::from(shard.number) != i + 1 {
                return Err(format!(
                    "shards must be numbered 1..={} without gaps",
                    sorted.len()
                ));
            }
        }
        let constraints = PoolConstraints::new(pool.connections_min, pool.connections_max)
            .ok_or("pool connections_min must not exceed connections_max")?;
        if pool.lock_wait_timeout_seconds == 0
            || pool.lock_wait_timeout_seconds * 1000 >= pool.query_timeout_ms
        {
            return Err("pool lock_wait_timeout_seconds must be at least 1 and shorter than query_timeout_ms".into());
        }
        let mut pools = Vec::with_capacity(sorted.len());
        let mut sessions = Vec::with_capacity(sorted.len());
        for shard in sorted {
            let password = match &shard.password_file {
                Some(path) => {
                    Some(payrail_core::config::read_secret(path).map_err(|e| e.to_string())?)
                }
                None => None,
            };
            let ssl = match &shard.tls_ca_file {
                // Read now, so a missing file stops start-up instead of every connection.
                Some(path) => {
                    let ca = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                    Some(
                        SslOpts::default()
                            .with_root_certs(vec![ca.into()])
                            .with_disable_built_in_roots(true),
                    )
                }
                None => None,
            };
            let lock_wait = format!(
                "SET SESSION innodb_lock_wait_timeout = {}",
                pool.lock_wait_timeout_seconds
            );
            let opts = OptsBuilder::default()
                .ip_or_hostname(shard.host.clone())
                .ssl_opts(ssl)
                .tcp_port(shard.port)
                .prefer_socket(shard.prefer_socket)
                .db_name(Some(shard.database.clone()))
                .user(Some(shard.user.clone()))
                .pass(password)
                .tcp_nodelay(true)
                .stmt_cache_size(pool.statement_cache_size)
                .init(vec![lock_wait.clone()])
                .wait_timeout(Some(28_800));
            sessions.push(Opts::from(
                opts.clone()
                    .init(vec![lock_wait, "SET SESSION autocommit = 0".to_owned()]),
            ));
            let opts = opts.pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    // No COM_RESET_CONNECTION when a connection returns to the pool: it
                    // costs a round trip and drops the server's prepared statements, so
                    // every query was prepared again (measured: prepares ≈ executes).
                    // Nothing here leaves session state behind (transactions end by
                    // commit or rollback; the migration lock is released explicitly).
                    .with_reset_connection(false)
                    .with_inactive_connection_ttl(Duration::from_secs(60))
                    .with_ttl_check_interval(Duration::from_secs(30)),
            );
            pools.push(Pool::new(opts));
        }
        Ok(Self {
            pools,
            sessions,
            query_timeout: Duration::from_millis(pool.query_timeout_ms),
        })
    }

    pub fn count(&self) -> u16 {
        self.pools.len() as u16
    }

    pub fn numbers(&self) -> impl Iterator<Item = u16> {
        1..=self.count()
    }

    pub fn query_timeout(&self) -> Duration {
        self.query_timeout
    }

    /// A connection to `shard`, or `Unavailable` when none comes within the timeout.
    pub async fn conn(&self, shard: u16) -> Result<Conn> {
        let pool = of_shard(&self.pools, shard)?;
        self.bounded(shard, async {
            pool.get_conn()
                .await
                .map_err(|e| DbError::classify(shard, e))
        })
        .await
    }

    /// A connection of its own to `shard`, outside the pool, with autocommit off: each
    /// statement joins the session's open transaction (or opens one), and COMMIT or
    /// ROLLBACK ends it, so a transaction costs no `START TRANSACTION` round trip. For a
    /// long-lived writer that runs transactions back to back and ends every one; it never
    /// goes back to a pool, and dropping it closes it (the server rolls back what is open).
    pub async fn session(&self, shard: u16) -> Result<Conn> {
        let opts = of_shard(&self.sessions, shard)?;
        self.bounded(shard, async {
            Conn::new(opts.clone())
                .await
                .map_err(|e| DbError::classify(shard, e))
        })
        .await
    }

    /// Runs `future` under the query timeout.
    pub async fn bounded<T>(
        &self,
        shard: u16,
        future: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.query_timeout, future).await {
            Ok(result) => result,
            Err(_) => Err(DbError::timeout(shard)),
        }
    }
}

/// Shard `shard`'s entry of a per-shard list (index = shard - 1).
fn of_shard<T>(items: &[T], shard: u16) -> Result<&T> {
    items
        .get(usize::from(shard).wrapping_sub(1))
        .ok_or(DbError::Unavailable {
            shard,
            message: "no such shard".to_owned(),
        })
}
