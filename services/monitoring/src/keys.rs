//! Merchant API keys, the admin side (issue 14): create, list, roll, revoke. Routes under
//! `/api/admin/merchants/{merchantId}/keys`, the dashboard's Keys panel, and the
//! `monitoring create-key <merchantId>` command for the first key of a fresh appliance.
//!
//! The secret is in the answer to a create or a roll, once, with `Cache-Control:
//! no-store`; it is never logged (the audit log names the key id) and never stored.

use crate::admin::{answer, error, Admin, Answer, Who};
use crate::config::ApiKeysConfig;
use payrail_db::api_keys::{self, KeyHasher, KeyInfo, NewKey, Refused};
use payrail_db::DbError;
use serde_json::json;

pub struct Keys {
    pub config: ApiKeysConfig,
    pub hasher: KeyHasher,
}

impl Keys {
    pub fn load(config: &ApiKeysConfig) -> Result<Self, String> {
        Ok(Self {
            hasher: KeyHasher::from_file(&config.hash_key_file)?,
            config: config.clone(),
        })
    }
}

fn rfc3339(ms: Option<i64>) -> serde_json::Value {
    ms.map_or(serde_json::Value::Null, |ms| {
        json!(payrail_core::time::rfc3339(ms))
    })
}

fn shown(info: &KeyInfo) -> serde_json::Value {
    let now = payrail_core::time::now_ms();
    let status = if info.revoked_at.is_some() {
        "revoked"
    } else if info.expires_at.is_some_and(|at| at <= now) {
        "expired"
    } else if info.expires_at.is_some() {
        "expiring"
    } else {
        "active"
    };
    json!({
        "keyId": info.key_id,
        "prefix": info.prefix,
        "merchantId": info.merchant_id,
        "status": status,
        "createdAt": payrail_core::time::rfc3339(info.created_at),
        "expiresAt": rfc3339(info.expires_at),
        "revokedAt": rfc3339(info.revoked_at),
        "lastUsedAt": rfc3339(info.last_used_at),
        "rolledTo": info.rolled_to,
    })
}

fn with_secret(key: &NewKey, info: &KeyInfo) -> serde_json::Value {
    let mut body = shown(info);
    body["key"] = json!(key.secret);
    body
}

fn db_error(e: DbError) -> Answer {
    if e.is_unavailable() {
        error(503, "SHARD_UNAVAILABLE", e)
    } else {
        error(500, "INTERNAL", e)
    }
}

fn refused(r: Refused) -> Answer {
    match r {
        Refused::NotFound => error(404, "NOT_FOUND", "no such key for this merchant"),
        Refused::Revoked => error(409, "KEY_REVOKED", "the key is revoked"),
        Refused::Rolled(next) => error(
            409,
            "KEY_ALREADY_ROLLED",
            format!("the key was rolled to {next} already; roll that one"),
        ),
    }
}

pub async fn create(admin: &Admin, keys: &Keys, merchant: &str, who: &Who) -> Answer {
    let result = match api_keys::create(
        &admin.shards,
        merchant,
        &keys.config.environment,
        &keys.hasher,
        payrail_core::time::now_ms(),
    )
    .await
    {
        Ok((key, info)) => answer(201, with_secret(&key, &info)),
        Err(e) => db_error(e),
    };
    let target = format!(
        "{merchant}/{}",
        result.body["keyId"].as_str().unwrap_or("-")
    );
    admin.audit("api-key-create", &target, &result, who);
    result
}

pub async fn list(admin: &Admin, merchant: &str) -> Answer {
    match api_keys::list(&admin.shards, merchant).await {
        Ok(list) => answer(
            200,
            json!({ "merchantId": merchant, "keys": list.iter().map(shown).collect::<Vec<_>>() }),
        ),
        Err(e) => db_error(e),
    }
}

pub async fn roll(
    admin: &Admin,
    keys: &Keys,
    merchant: &str,
    key_id: &str,
    overlap_seconds: Option<u64>,
    who: &Who,
) -> Answer {
    let overlap = overlap_seconds.unwrap_or(keys.config.roll_overlap_seconds);
    let result = match api_keys::roll(
        &admin.shards,
        merchant,
        key_id,
        (overlap as i64).saturating_mul(1000),
        &keys.config.environment,
        &keys.hasher,
        payrail_core::time::now_ms(),
    )
    .await
    {
        Ok(Ok((key, info, previous))) => {
            let mut body = with_secret(&key, &info);
            body["previous"] = shown(&previous);
            answer(201, body)
        }
        Ok(Err(r)) => refused(r),
        Err(e) => db_error(e),
    };
    admin.audit(
        "api-key-roll",
        &format!("{merchant}/{key_id}"),
        &result,
        who,
    );
    result
}

pub async fn revoke(admin: &Admin, merchant: &str, key_id: &str, who: &Who) -> Answer {
    let now = payrail_core::time::now_ms();
    let result = match api_keys::revoke(&admin.shards, merchant, key_id, now).await {
        Ok(Ok(())) => answer(
            200,
            json!({ "keyId": key_id, "merchantId": merchant, "status": "revoked", "revokedAt": payrail_core::time::rfc3339(now) }),
        ),
        Ok(Err(r)) => refused(r),
        Err(e) => db_error(e),
    };
    admin.audit(
        "api-key-revoke",
        &format!("{merchant}/{key_id}"),
        &result,
        who,
    );
    result
}
