//! Merchant authentication of the payment routes (issue 14).
//!
//! With `merchant_auth = "required"` (the default) every payment route needs
//! `Authorization: Bearer <merchant API key>`, and the key decides the merchant: a
//! `merchantId` in the body or query may be left out, and a different one is 403. The
//! check is a keyed hash and one map lookup in this instance's [`KeyRing`]
//! (payrail-db `api_keys`), which [`refresh_loop`] keeps current: created, rolled and
//! revoked keys reach every instance within `api_keys.refresh_interval_ms` (1 s).
//!
//! Failed attempts are throttled at the gateway, which sees the client's address and
//! counts these 401 answers per address and per key prefix.

use crate::config::MerchantAuth;
use crate::App;
use payrail_db::api_keys::{Check, KeyHasher, KeyRing};
use payrail_http::{error_body, Request, Response};
use std::sync::Arc;
use std::time::Duration;

/// Longer than any key we issue (86 bytes) with room to spare; longer is refused unread.
const HEADER_MAX: usize = 256;

pub struct MerchantKeys {
    pub ring: KeyRing,
    pub hasher: KeyHasher,
}

impl MerchantKeys {
    pub fn load(config: &crate::config::Config, shard_count: u16) -> Result<Option<Self>, String> {
        if config.merchant_auth == MerchantAuth::Off {
            return Ok(None);
        }
        let path = config
            .api_keys
            .hash_key_file
            .as_ref()
            .ok_or("api_keys.hash_key_file is required")?;
        Ok(Some(Self {
            ring: KeyRing::new(shard_count),
            hasher: KeyHasher::from_file(path)?,
        }))
    }
}

/// Who the request acts for.
pub enum Caller {
    /// `merchant_auth = "off"`: the request names its merchant.
    Unauthenticated,
    /// The key's merchant.
    Merchant(Arc<str>),
}

impl Caller {
    pub fn merchant(&self) -> Option<&str> {
        match self {
            Caller::Unauthenticated => None,
            Caller::Merchant(m) => Some(m),
        }
    }
}

fn refuse(
    app: &App,
    response: &mut Response,
    status: u16,
    reason: &str,
    code: &str,
    message: &str,
) {
    app.metrics.auth_failures.with_label_values(&[reason]).inc();
    error_body::write(response, status, code, message, None);
    if status == 401 {
        response.header("WWW-Authenticate", "Bearer realm=\"payrail\"");
    }
}

/// The caller of a payment request, or `None` when the refusal has been written.
pub fn authenticate(app: &App, request: &Request<'_>, response: &mut Response) -> Option<Caller> {
    let Some(keys) = app.keys.as_ref() else {
        return Some(Caller::Unauthenticated);
    };
    match request.header_count("authorization") {
        0 => {
            refuse(
                app,
                response,
                401,
                "missing",
                "UNAUTHORIZED",
                "send Authorization: Bearer <merchant API key>",
            );
            return None;
        }
        1 => {}
        _ => {
            refuse(
                app,
                response,
                400,
                "malformed",
                "MALFORMED_REQUEST",
                "send exactly one Authorization header",
            );
            return None;
        }
    }
    let value = request.header("authorization").unwrap_or_default();
    let token = if value.len() > HEADER_MAX {
        None
    } else {
        value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        refuse(
            app,
            response,
            401,
            "malformed",
            "UNAUTHORIZED",
            "send Authorization: Bearer <merchant API key>",
        );
        return None;
    };
    match keys
        .ring
        .check(&keys.hasher, token, payrail_core::time::now_ms())
    {
        Check::Valid(entry) => Some(Caller::Merchant(entry.merchant.clone())),
        // One answer for an unknown prefix, a wrong secret, an expired, rolled-past or
        // revoked key, and a malformed one: nothing tells a guesser which part was wrong.
        Check::Invalid => {
            refuse(
                app,
                response,
                401,
                "invalid",
                "INVALID_API_KEY",
                "the API key is not valid",
            );
            None
        }
        Check::NotLoaded => {
            refuse(
                app,
                response,
                503,
                "not_loaded",
                "KEY_STORE_UNAVAILABLE",
                "the API key store has not been read yet; retry shortly",
            );
            response.header("Retry-After", "1");
            None
        }
    }
}

/// Keeps the ring current (every `refresh_interval_ms`, each shard on its own so a down
/// shard delays only its own keys) and writes `lastUsedAt` now and then.
pub async fn refresh_loop(app: Arc<App>) {
    let Some(keys) = app.keys.as_ref() else {
        return;
    };
    let config = &app.config.api_keys;
    let mut interval = tokio::time::interval(Duration::from_millis(config.refresh_interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let flush_every = Duration::from_millis(config.last_used_flush_ms);
    let mut last_flush = std::time::Instant::now();
    // The shards that failed last round: each outage is logged once, when it starts.
    let mut failing: Vec<u16> = Vec::new();
    loop {
        interval.tick().await;
        let failed = keys.ring.refresh_all(&app.shards).await;
        for (shard, error) in &failed {
            if !failing.contains(shard) {
                tracing::warn!(shard, %error, "API keys not refreshed; keeping the last view");
            }
        }
        failing = failed.into_iter().map(|(shard, _)| shard).collect();
        app.metrics.api_keys.set(keys.ring.len() as i64);
        if last_flush.elapsed() >= flush_every {
            last_flush = std::time::Instant::now();
            if let Err(error) = keys.ring.flush_last_used(&app.shards).await {
                tracing::warn!(%error, "lastUsedAt not written this round");
            }
        }
    }
}
