//! Per-merchant rate limits in Redis, and the idempotent-replay lookup in the same round
//! trip.
//!
//! One Lua script, run atomically by Redis: it checks the merchant's counter for the
//! action, refuses without counting when the budget is spent (so rejected requests do not
//! consume it), otherwise counts the request and sets the window's expiry in the same
//! script (no counter without a TTL can be left behind, unlike INCR-then-EXPIRE), and
//! then returns the cached answer for the idempotency key if there is one. A replay
//! therefore counts against the limit like any request; a refusal does not.
//!
//! Redis is optional for correctness: when it errors or times out the request is let
//! through (fail-open, counted and logged) and idempotency falls back to MariaDB.

use crate::config::RateLimit;
use crate::metrics::Metrics;
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

const SCRIPT: &str = r#"
-- KEYS[1]: rate counter, KEYS[2]: idempotency cache entry (optional)
-- ARGV[1]: limit (0 = no limit), ARGV[2]: window in ms
local limit = tonumber(ARGV[1])
if limit > 0 then
  local count = tonumber(redis.call('GET', KEYS[1]) or '0')
  if count >= limit then
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[1], ARGV[2])
      ttl = tonumber(ARGV[2])
    end
    return {2, ttl}
  end
  redis.call('INCR', KEYS[1])
  if redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
end
if KEYS[2] then
  local cached = redis.call('GET', KEYS[2])
  if cached then
    return {1, cached}
  end
end
return {0, 0}
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Authorize,
    Capture,
    Refund,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Authorize => "authorize",
            Action::Capture => "capture",
            Action::Refund => "refund",
        }
    }
}

pub enum Admission {
    /// Go ahead.
    Allowed,
    /// Over the limit: answer 429 with `Retry-After`.
    Limited { retry_after_ms: u64 },
    /// A completed answer for this idempotency key is cached.
    Cached(Vec<u8>),
}

pub struct Redis {
    manager: ConnectionManager,
    script: redis::Script,
    timeout: Duration,
    prefix: String,
    /// Last time a fail-open was logged (ms), so an outage logs once a second, not per request.
    last_warning_ms: AtomicI64,
}

impl Redis {
    /// Connects lazily: Redis being down at start-up does not stop ingest.
    pub fn new(config: &crate::config::RedisConfig) -> Result<Self, String> {
        let client = payrail_db::redis::client(
            &config.url,
            config.password_file.as_deref(),
            config.tls_ca_file.as_deref(),
        )?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| format!("redis: {e}"))?;
        Ok(Self {
            manager,
            script: redis::Script::new(SCRIPT),
            timeout,
            prefix: config.key_prefix.clone(),
            last_warning_ms: AtomicI64::new(0),
        })
    }

    pub fn rate_key(&self, action: Action, merchant_id: &str) -> String {
        format!("{}rl:{}:{}", self.prefix, action.as_str(), merchant_id)
    }

    /// Key of a cached authorize answer. The idempotency key is printable ASCII and may
    /// contain ':', so the merchant id (which cannot) comes first and the key last.
    pub fn idempotency_key(&self, merchant_id: &str, idempotency_key: &str) -> String {
        format!("{}idem:{}:{}", self.prefix, merchant_id, idempotency_key)
    }

    pub fn warn_throttled(&self, message: &str, error: &str) {
        let now = payrail_core::time::now_ms();
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if now - last >= 1000
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error, "{message}");
        }
    }

    /// Rate limit, then cached answer, in one round trip.
    pub async fn admit(
        &self,
        metrics: &Metrics,
        action: Action,
        limit: RateLimit,
        merchant_id: &str,
        cache_key: Option<&str>,
    ) -> Admission {
        let mut invocation = self.script.key(self.rate_key(action, merchant_id));
        if let Some(key) = cache_key {
            invocation.key(key);
        }
        invocation.arg(limit.limit).arg(limit.window_ms);
        let mut connection = self.manager.clone();
        let call = invocation.invoke_async::<(i64, redis::Value)>(&mut connection);
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("timed out".to_owned()),
        };
        match result {
            Ok((2, redis::Value::Int(ttl))) => {
                metrics
                    .rate_limit_rejections
                    .with_label_values(&[action.as_str()])
                    .inc();
                Admission::Limited {
                    retry_after_ms: ttl.max(1) as u64,
                }
            }
            Ok((1, redis::Value::BulkString(bytes))) => Admission::Cached(bytes),
            Ok(_) => Admission::Allowed,
            Err(error) => {
                metrics.redis_errors.inc();
                metrics
                    .rate_limit_fail_open
                    .with_label_values(&[action.as_str()])
                    .inc();
                self.warn_throttled(
                    "redis unavailable: rate limit fails open, idempotency falls back to MariaDB",
                    &error,
                );
                Admission::Allowed
            }
        }
    }

    /// Caches a completed answer. Called only after the MariaDB commit.
    pub async fn store(&self, metrics: &Metrics, key: String, value: Vec<u8>, ttl_seconds: u64) {
        let mut connection = self.manager.clone();
        let mut command = redis::cmd("SET");
        command.arg(&key).arg(value).arg("EX").arg(ttl_seconds);
        let call = command.query_async::<()>(&mut connection);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                metrics.redis_errors.inc();
                self.warn_throttled("redis unavailable: answer not cached", &error.to_string());
            }
            Err(_) => {
                metrics.redis_errors.inc();
                self.warn_throttled("redis unavailable: answer not cached", "timed out");
            }
        }
    }

    pub async fn ping(&self) -> bool {
        let mut connection = self.manager.clone();
        let command = redis::cmd("PING");
        let call = command.query_async::<String>(&mut connection);
        matches!(tokio::time::timeout(self.timeout, call).await, Ok(Ok(_)))
    }
}
