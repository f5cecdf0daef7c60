//! Merchant API keys (issue 14): the format, the keyed hash, the store's SQL
//! (`merchant_api_key`, in the merchant's shard) and [`KeyRing`], the in-memory view every
//! ingest instance checks requests against.
//!
//! - **Format** `prk_<env>_<12 hex>_<64 hex>`: `prk_<env>_<12 hex>` is the public prefix
//!   (lookup and display, 48 random bits), the rest is 32 random bytes of secret.
//! - **Stored** as `BLAKE3-keyed(server key, whole key)` plus the prefix, never in clear.
//!   The server key is derived from a secret file (at least 32 bytes). A keyed hash is as
//!   fast to check as a lookup (well under a microsecond for 86 bytes), so every request
//!   can be checked; Argon2 or PBKDF2 would cost milliseconds per request, and buy nothing
//!   against guessing 256 random bits.
//! - **Checked** in constant time: a well-formed key is always hashed and compared, against
//!   a dummy when its prefix is unknown, so an unknown prefix and a wrong secret take the
//!   same path and get the same answer.
//! - **Revoked or rolled** keys reach every instance through [`KeyRing::refresh`] (run each
//!   second): it reads the rows whose `updated_at` moved, by index `ix_updated`.

use crate::{datetime, epoch_ms, DbError, Result, Shards};
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SCHEME: &str = "prk_";
const PREFIX_HEX: usize = 12;
const SECRET_HEX: usize = 64;
/// Context string of the hash key's derivation; changing it invalidates every key.
const DERIVE_CONTEXT: &str = "payrail 2026-12 merchant API key hash v1";
/// Re-read this much before the newest `updated_at` seen, so a write that committed after
/// a younger one was read is not missed (applying a row twice is harmless).
const REFRESH_OVERLAP_MS: i64 = 5_000;

/// What a shard's refresh has read up to.
#[derive(Clone, Copy)]
struct Watermark {
    /// The newest `updated_at` seen (ms).
    newest_ms: i64,
    /// When `newest_ms` last moved; `None` once a read that began more than
    /// [`REFRESH_OVERLAP_MS`] later has covered the overlap (settled).
    moved: Option<Instant>,
}

impl Watermark {
    /// The `updated_at >= ?` bound of the next read. While the newest change is younger
    /// than the overlap, a write stamped before it may still commit, so the read goes back
    /// [`REFRESH_OVERLAP_MS`]; once settled, only younger rows. Anchoring the overlap at
    /// the newest row forever re-read every key written in the last 5 s before it, once a
    /// second on each instance: after `cargo xtask bench` created its 1,000 keys, each
    /// ingest re-read and re-inserted ~1,000 rows a second (18,000 allocations a second on
    /// the idle appliance, `payrail_heap_allocations_total`). Keys are written by the
    /// admin API (monitoring) with its clock; a second writer whose clock runs behind the
    /// first by more than the overlap could go unseen, as before.
    fn since_ms(&self) -> i64 {
        match self.moved {
            Some(_) => self.newest_ms - REFRESH_OVERLAP_MS,
            None => self.newest_ms + 1,
        }
    }

    /// The watermark after a read that began at `began`, ended at `now` and saw rows up
    /// to `newest_ms`.
    fn after_read(self, newest_ms: i64, began: Instant, now: Instant) -> Self {
        let overlap = Duration::from_millis(REFRESH_OVERLAP_MS as u64);
        Self {
            newest_ms: newest_ms.max(self.newest_ms),
            moved: if newest_ms > self.newest_ms {
                Some(now)
            } else {
                // Settled once a read that began an overlap after the last move is done.
                self.moved.filter(|moved| began < *moved + overlap)
            },
        }
    }
}

/// The server-side key of the keyed hash, from a secret file.
#[derive(Clone)]
pub struct KeyHasher([u8; 32]);

impl KeyHasher {
    /// Reads the secret file; it must hold at least 32 bytes (e.g. 64 hex characters).
    pub fn from_file(path: &Path) -> std::result::Result<Self, String> {
        let secret = payrail_core::config::read_secret(path).map_err(|e| e.to_string())?;
        Self::from_secret(secret.as_bytes())
            .map_err(|problem| format!("{}: {problem}", path.display()))
    }

    pub fn from_secret(secret: &[u8]) -> std::result::Result<Self, String> {
        if secret.len() < 32 {
            return Err(format!(
                "the API key hash secret must hold at least 32 bytes, it holds {}",
                secret.len()
            ));
        }
        Ok(Self(blake3::derive_key(DERIVE_CONTEXT, secret)))
    }

    pub fn hash(&self, key: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.0, key).as_bytes()
    }
}

/// A key just made: `secret` is the whole key, shown to the caller once.
pub struct NewKey {
    pub key_id: String,
    pub prefix: String,
    pub secret: String,
    pub hash: [u8; 32],
}

/// The key's environment word (`live`, `test`): 1–8 lowercase letters.
pub fn valid_environment(env: &str) -> bool {
    (1..=8).contains(&env.len()) && env.bytes().all(|b| b.is_ascii_lowercase())
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
}

/// A new key for environment `env` (see [`valid_environment`]), from the OS's CSPRNG.
pub fn generate(env: &str, hasher: &KeyHasher) -> std::result::Result<NewKey, String> {
    if !valid_environment(env) {
        return Err(format!(
            "key environment {env:?} must be 1-8 lowercase letters"
        ));
    }
    let mut random = [0u8; PREFIX_HEX / 2 + SECRET_HEX / 2];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness from the OS: {e}"))?;
    let mut prefix = String::with_capacity(SCHEME.len() + env.len() + 1 + PREFIX_HEX);
    prefix.push_str(SCHEME);
    prefix.push_str(env);
    prefix.push('_');
    let id_start = prefix.len();
    push_hex(&mut prefix, &random[..PREFIX_HEX / 2]);
    let key_id = format!("key_{}", &prefix[id_start..]);
    let mut secret = String::with_capacity(prefix.len() + 1 + SECRET_HEX);
    secret.push_str(&prefix);
    secret.push('_');
    push_hex(&mut secret, &random[PREFIX_HEX / 2..]);
    random.fill(0);
    let hash = hasher.hash(secret.as_bytes());
    Ok(NewKey {
        key_id,
        prefix,
        secret,
        hash,
    })
}

/// The public prefix of a well-formed key (`prk_<env>_<12 hex>`), or None.
pub fn prefix_of(key: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(key).ok()?;
    let rest = text.strip_prefix(SCHEME)?;
    let (env, rest) = rest.split_once('_')?;
    if !valid_environment(env) || rest.len() != PREFIX_HEX + 1 + SECRET_HEX {
        return None;
    }
    let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let (id, secret) = rest.split_at(PREFIX_HEX);
    let secret = secret.strip_prefix('_')?;
    if !lower_hex(id) || !lower_hex(secret) {
        return None;
    }
    Some(&text[..SCHEME.len() + env.len() + 1 + PREFIX_HEX])
}

/// A key id as the admin API takes it (`key_<12 hex>`).
pub fn valid_key_id(key_id: &str) -> bool {
    key_id.len() == 4 + PREFIX_HEX
        && key_id.starts_with("key_")
        && key_id[4..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

// ---------------------------------------------------------------------------------------
// The store (the admin side: monitoring's API and its CLI).

/// What the key list shows: never the secret, never its hash.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub key_id: String,
    pub prefix: String,
    pub merchant_id: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub rolled_to: Option<String>,
}

const INFO_COLUMNS: &str =
    "key_id, prefix, merchant_id, created_at, expires_at, revoked_at, last_used_at, rolled_to";

fn optional_ms(value: &Value) -> Option<i64> {
    match value {
        Value::NULL => None,
        other => Some(epoch_ms(other)),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

fn info(row: &Row) -> KeyInfo {
    let get = |i: usize| row.as_ref(i).cloned().unwrap_or(Value::NULL);
    KeyInfo {
        key_id: text(&get(0)),
        prefix: text(&get(1)),
        merchant_id: text(&get(2)),
        created_at: epoch_ms(&get(3)),
        expires_at: optional_ms(&get(4)),
        revoked_at: optional_ms(&get(5)),
        last_used_at: optional_ms(&get(6)),
        rolled_to: match get(7) {
            Value::NULL => None,
            v => Some(text(&v)),
        },
    }
}

/// Stores a new key; `updated_at` is the database's clock, as every ring's watermark is.
const INSERT_KEY: &str =
    "INSERT INTO merchant_api_key (key_id, prefix, merchant_id, key_hash, created_at, updated_at) \
     VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(3))";

fn insert_params(key: &NewKey, merchant: &str, now_ms: i64) -> mysql_async::Params {
    (
        key.key_id.as_str(),
        key.prefix.as_str(),
        merchant.as_bytes(),
        &key.hash[..],
        datetime(now_ms),
    )
        .into()
}

/// The list entry of a key just stored.
fn fresh_info(key: &NewKey, merchant: &str, now_ms: i64) -> KeyInfo {
    KeyInfo {
        key_id: key.key_id.clone(),
        prefix: key.prefix.clone(),
        merchant_id: merchant.to_owned(),
        created_at: now_ms,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        rolled_to: None,
    }
}

/// Stores a new key for `merchant` (in the merchant's shard). A prefix collision (48
/// random bits) is retried with a new key.
pub async fn create(
    shards: &Shards,
    merchant: &str,
    env: &str,
    hasher: &KeyHasher,
    now_ms: i64,
) -> Result<(NewKey, KeyInfo)> {
    let shard = payrail_core::shard::shard_for_merchant(merchant, shards.count());
    let mut conn = shards.conn(shard).await?;
    for _ in 0..3 {
        let key = generate(env, hasher).map_err(|message| DbError::Query { shard, message })?;
        let inserted = shards
            .bounded(shard, async {
                conn.exec_drop(INSERT_KEY, insert_params(&key, merchant, now_ms))
                    .await
                    .map_err(|e| DbError::classify(shard, e))
            })
            .await;
        match inserted {
            Ok(()) => {
                let info = fresh_info(&key, merchant, now_ms);
                return Ok((key, info));
            }
            Err(DbError::Duplicate { .. }) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(DbError::Query {
        shard,
        message: "three key prefixes in a row collided".to_owned(),
    })
}

/// Every key of `merchant`, newest first (revoked ones included, marked).
pub async fn list(shards: &Shards, merchant: &str) -> Result<Vec<KeyInfo>> {
    let shard = payrail_core::shard::shard_for_merchant(merchant, shards.count());
    let mut conn = shards.conn(shard).await?;
    let rows: Vec<Row> = shards
        .bounded(shard, async {
            conn.exec(
                format!("SELECT {INFO_COLUMNS} FROM merchant_api_key WHERE merchant_id = ? ORDER BY created_at DESC LIMIT 1000"),
                (merchant.as_bytes(),),
            )
            .await
            .map_err(|e| DbError::classify(shard, e))
        })
        .await?;
    Ok(rows.iter().map(info).collect())
}

/// Why a roll or a revoke did nothing.
#[derive(Debug)]
pub enum Refused {
    /// No such key for this merchant.
    NotFound,
    /// The key is revoked already.
    Revoked,
    /// The key was rolled before (its successor is named): roll that one.
    Rolled(String),
}

/// Rolls `key_id`: a new key now, and the old one expires after `overlap_ms` (both work in
/// between). One transaction on the merchant's shard.
pub async fn roll(
    shards: &Shards,
    merchant: &str,
    key_id: &str,
    overlap_ms: i64,
    env: &str,
    hasher: &KeyHasher,
    now_ms: i64,
) -> Result<std::result::Result<(NewKey, KeyInfo, KeyInfo), Refused>> {
    let shard = payrail_core::shard::shard_for_merchant(merchant, shards.count());
    let mut conn = shards.conn(shard).await?;
    shards
        .bounded(shard, async {
            let classify = |e| DbError::classify(shard, e);
            let mut tx = conn
                .start_transaction(mysql_async::TxOpts::default())
                .await
                .map_err(classify)?;
            let old: Option<Row> = tx
                .exec_first(
                    format!("SELECT {INFO_COLUMNS} FROM merchant_api_key WHERE key_id = ? AND merchant_id = ? FOR UPDATE"),
                    (key_id, merchant.as_bytes()),
                )
                .await
                .map_err(classify)?;
            let Some(old) = old.as_ref().map(info) else {
                return Ok(Err(Refused::NotFound));
            };
            if old.revoked_at.is_some() {
                return Ok(Err(Refused::Revoked));
            }
            if let Some(next) = old.rolled_to.clone() {
                return Ok(Err(Refused::Rolled(next)));
            }
            let key = generate(env, hasher).map_err(|message| DbError::Query { shard, message })?;
            tx.exec_drop(INSERT_KEY, insert_params(&key, merchant, now_ms))
                .await
                .map_err(classify)?;
            let expires = match old.expires_at {
                Some(at) => at.min(now_ms + overlap_ms),
                None => now_ms + overlap_ms,
            };
            tx.exec_drop(
                "UPDATE merchant_api_key SET expires_at = ?, rolled_to = ?, updated_at = UTC_TIMESTAMP(3) WHERE key_id = ?",
                (datetime(expires), key.key_id.as_str(), key_id),
            )
            .await
            .map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            let new_info = fresh_info(&key, merchant, now_ms);
            let old_info = KeyInfo {
                expires_at: Some(expires),
                rolled_to: Some(key.key_id.clone()),
                ..old
            };
            Ok(Ok((key, new_info, old_info)))
        })
        .await
}

/// Revokes `key_id` at once (every ingest instance refuses it within its refresh).
pub async fn revoke(
    shards: &Shards,
    merchant: &str,
    key_id: &str,
    now_ms: i64,
) -> Result<std::result::Result<(), Refused>> {
    let shard = payrail_core::shard::shard_for_merchant(merchant, shards.count());
    let mut conn = shards.conn(shard).await?;
    shards
        .bounded(shard, async {
            let classify = |e| DbError::classify(shard, e);
            conn.exec_drop(
                "UPDATE merchant_api_key SET revoked_at = ?, updated_at = UTC_TIMESTAMP(3) \
                 WHERE key_id = ? AND merchant_id = ? AND revoked_at IS NULL",
                (datetime(now_ms), key_id, merchant.as_bytes()),
            )
            .await
            .map_err(classify)?;
            if conn.affected_rows() == 1 {
                return Ok(Ok(()));
            }
            let exists: Option<Row> = conn
                .exec_first(
                    "SELECT 1 FROM merchant_api_key WHERE key_id = ? AND merchant_id = ?",
                    (key_id, merchant.as_bytes()),
                )
                .await
                .map_err(classify)?;
            Ok(Err(if exists.is_some() {
                Refused::Revoked
            } else {
                Refused::NotFound
            }))
        })
        .await
}

// ---------------------------------------------------------------------------------------
// The ring (the request side: every ingest instance).

/// One usable key, as an instance holds it.
pub struct Entry {
    pub key_id: String,
    pub merchant: Arc<str>,
    pub shard: u16,
    hash: [u8; 32],
    /// Epoch ms after which the key is refused; `i64::MAX` when it never expires.
    expires_at_ms: i64,
    last_used_ms: AtomicI64,
    flushed_ms: AtomicI64,
}

pub enum Check {
    Valid(Arc<Entry>),
    /// Unknown, wrong, expired or revoked: one answer for all of them.
    Invalid,
    /// The key's shard has not been read yet (it was down since start): a 503, not a 401.
    NotLoaded,
}

/// The keys of every shard, refreshed from the store.
pub struct KeyRing {
    keys: RwLock<HashMap<String, Arc<Entry>>>,
    loaded: Vec<AtomicBool>,
    watermarks: Mutex<Vec<Watermark>>,
    /// Compared with when the prefix is unknown, so both paths cost the same.
    dummy: [u8; 32],
}

impl KeyRing {
    pub fn new(shard_count: u16) -> Self {
        Self {
            keys: RwLock::new(HashMap::new()),
            loaded: (0..shard_count).map(|_| AtomicBool::new(false)).collect(),
            watermarks: Mutex::new(vec![
                Watermark {
                    newest_ms: 0,
                    moved: Some(Instant::now()),
                };
                usize::from(shard_count)
            ]),
            dummy: [0x5a; 32],
        }
    }

    pub fn len(&self) -> usize {
        self.keys.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all_loaded(&self) -> bool {
        self.loaded.iter().all(|l| l.load(Ordering::Acquire))
    }

    /// Checks a presented key (the bytes after `Bearer `).
    pub fn check(&self, hasher: &KeyHasher, presented: &[u8], now_ms: i64) -> Check {
        let Some(prefix) = prefix_of(presented) else {
            return Check::Invalid;
        };
        let given = blake3::Hash::from(hasher.hash(presented));
        let entry = self.keys.read().get(prefix).cloned();
        let expected = blake3::Hash::from(entry.as_ref().map_or(self.dummy, |e| e.hash));
        // blake3::Hash's equality is constant-time.
        let matches = given == expected;
        match entry {
            Some(entry) if matches && now_ms < entry.expires_at_ms => {
                entry.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
                Check::Valid(entry)
            }
            Some(_) => Check::Invalid,
            None if self.all_loaded() => Check::Invalid,
            None => Check::NotLoaded,
        }
    }

    /// Reads what changed on `shard` since the last refresh and applies it.
    pub async fn refresh(&self, shards: &Shards, shard: u16) -> Result<usize> {
        let index = usize::from(shard) - 1;
        let mark = self.watermarks.lock()[index];
        let began = Instant::now();
        let mut conn = shards.conn(shard).await?;
        let rows: Vec<Row> = shards
            .bounded(shard, async {
                conn.exec(
                    "SELECT key_id, prefix, merchant_id, key_hash, expires_at, revoked_at, updated_at \
                     FROM merchant_api_key WHERE updated_at >= ?",
                    (datetime(mark.since_ms()),),
                )
                .await
                .map_err(|e| DbError::classify(shard, e))
            })
            .await?;
        let mut newest = mark.newest_ms;
        let changed = rows.len();
        {
            let mut keys = self.keys.write();
            for row in &rows {
                let get = |i: usize| row.as_ref(i).cloned().unwrap_or(Value::NULL);
                let prefix = text(&get(1));
                newest = newest.max(epoch_ms(&get(6)));
                let hash: Option<[u8; 32]> = match get(3) {
                    Value::Bytes(b) => b.try_into().ok(),
                    _ => None,
                };
                let revoked = !matches!(get(5), Value::NULL);
                let Some(hash) = hash.filter(|_| !revoked) else {
                    keys.remove(&prefix);
                    continue;
                };
                let expires_at_ms = optional_ms(&get(4)).unwrap_or(i64::MAX);
                // A changed row keeps what this instance knows of the key's use.
                let (last_used, flushed) = keys.get(&prefix).map_or((0, 0), |e| {
                    (
                        e.last_used_ms.load(Ordering::Relaxed),
                        e.flushed_ms.load(Ordering::Relaxed),
                    )
                });
                keys.insert(
                    prefix,
                    Arc::new(Entry {
                        key_id: text(&get(0)),
                        merchant: Arc::from(text(&get(2))),
                        shard,
                        hash,
                        expires_at_ms,
                        last_used_ms: AtomicI64::new(last_used),
                        flushed_ms: AtomicI64::new(flushed),
                    }),
                );
            }
        }
        self.watermarks.lock()[index] = mark.after_read(newest, began, Instant::now());
        self.loaded[index].store(true, Ordering::Release);
        Ok(changed)
    }

    /// [`Self::refresh`] of every shard, each on its own: a down shard delays only its own
    /// keys. Returns the shards that could not be read.
    pub async fn refresh_all(&self, shards: &Shards) -> Vec<(u16, DbError)> {
        let mut failed = Vec::new();
        for shard in shards.numbers() {
            if let Err(error) = self.refresh(shards, shard).await {
                failed.push((shard, error));
            }
        }
        failed
    }

    /// Writes `last_used_at` for the keys used since the last flush: one statement per
    /// shard, off the request path.
    pub async fn flush_last_used(&self, shards: &Shards) -> Result<usize> {
        let mut by_shard: HashMap<u16, Vec<(String, i64)>> = HashMap::new();
        for entry in self.keys.read().values() {
            let used = entry.last_used_ms.load(Ordering::Relaxed);
            if used > entry.flushed_ms.load(Ordering::Relaxed) {
                by_shard
                    .entry(entry.shard)
                    .or_default()
                    .push((entry.key_id.clone(), used));
                entry.flushed_ms.store(used, Ordering::Relaxed);
            }
        }
        let mut written = 0;
        for (shard, used) in by_shard {
            for chunk in used.chunks(500) {
                let mut sql = String::from("UPDATE merchant_api_key SET last_used_at = GREATEST(COALESCE(last_used_at, '1970-01-01'), CASE key_id");
                let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * 3);
                for (key_id, at) in chunk {
                    sql.push_str(" WHEN ? THEN ?");
                    params.push(Value::from(key_id.as_str()));
                    params.push(datetime(*at));
                }
                sql.push_str(" END) WHERE key_id IN (");
                for (i, (key_id, _)) in chunk.iter().enumerate() {
                    sql.push_str(if i == 0 { "?" } else { ", ?" });
                    params.push(Value::from(key_id.as_str()));
                }
                sql.push(')');
                let mut conn = shards.conn(shard).await?;
                shards
                    .bounded(shard, async {
                        conn.exec_drop(sql, params)
                            .await
                            .map_err(|e| DbError::classify(shard, e))
                    })
                    .await?;
                written += chunk.len();
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_overlap_settles_once_a_later_read_covered_it() {
        let t0 = Instant::now();
        let fresh = Watermark {
            newest_ms: 10_000,
            moved: Some(t0),
        };
        assert_eq!(fresh.since_ms(), 10_000 - REFRESH_OVERLAP_MS);
        // A read that began inside the overlap keeps it.
        let inside = fresh.after_read(
            10_000,
            t0 + Duration::from_secs(4),
            t0 + Duration::from_secs(4),
        );
        assert_eq!(inside.since_ms(), 10_000 - REFRESH_OVERLAP_MS);
        // One that began after it settles: only younger rows from now on.
        let settled = inside.after_read(
            10_000,
            t0 + Duration::from_secs(6),
            t0 + Duration::from_secs(6),
        );
        assert_eq!(settled.since_ms(), 10_001);
        // A younger row opens the overlap again, from the new newest.
        let moved = settled.after_read(
            20_000,
            t0 + Duration::from_secs(7),
            t0 + Duration::from_secs(7),
        );
        assert_eq!(moved.since_ms(), 20_000 - REFRESH_OVERLAP_MS);
        assert_eq!(moved.newest_ms, 20_000);
    }

    fn hasher() -> KeyHasher {
        KeyHasher::from_secret(&[7u8; 32]).expect("32 bytes")
    }

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let h = hasher();
        let a = generate("live", &h).expect("key");
        let b = generate("live", &h).expect("key");
        assert_ne!(a.secret, b.secret);
        assert_eq!(prefix_of(a.secret.as_bytes()), Some(a.prefix.as_str()));
        assert!(a.secret.len() >= 32 + 21);
        assert!(valid_key_id(&a.key_id));
        assert_eq!(a.hash, h.hash(a.secret.as_bytes()));
        assert_ne!(a.hash, hasher_other().hash(a.secret.as_bytes()));
    }

    fn hasher_other() -> KeyHasher {
        KeyHasher::from_secret(&[8u8; 32]).expect("32 bytes")
    }

    #[test]
    fn malformed_keys_have_no_prefix() {
        let h = hasher();
        let key = generate("live", &h).expect("key").secret;
        assert!(prefix_of(key.to_uppercase().as_bytes()).is_none());
        assert!(prefix_of(&key.as_bytes()[..key.len() - 1]).is_none());
        assert!(prefix_of(format!("{key}0").as_bytes()).is_none());
        assert!(prefix_of(b"").is_none());
        assert!(prefix_of(key.replace("prk_", "prq_").as_bytes()).is_none());
        assert!(KeyHasher::from_secret(b"short").is_err());
    }

    #[test]
    fn the_ring_refuses_unknown_wrong_and_expired_keys() {
        let h = hasher();
        let ring = KeyRing::new(1);
        ring.loaded[0].store(true, Ordering::Release);
        let key = generate("live", &h).expect("key");
        ring.keys.write().insert(
            key.prefix.clone(),
            Arc::new(Entry {
                key_id: key.key_id.clone(),
                merchant: Arc::from("M-1"),
                shard: 1,
                hash: key.hash,
                expires_at_ms: 1_000,
                last_used_ms: AtomicI64::new(0),
                flushed_ms: AtomicI64::new(0),
            }),
        );
        assert!(
            matches!(ring.check(&h, key.secret.as_bytes(), 999), Check::Valid(e) if &*e.merchant == "M-1")
        );
        assert!(matches!(
            ring.check(&h, key.secret.as_bytes(), 1_000),
            Check::Invalid
        ));
        let mut wrong = key.secret.clone().into_bytes();
        let last = wrong.len() - 1;
        wrong[last] = if wrong[last] == b'0' { b'1' } else { b'0' };
        assert!(matches!(ring.check(&h, &wrong, 0), Check::Invalid));
        let other = generate("live", &h).expect("key");
        assert!(matches!(
            ring.check(&h, other.secret.as_bytes(), 0),
            Check::Invalid
        ));
        ring.loaded[0].store(false, Ordering::Release);
        assert!(matches!(
            ring.check(&h, other.secret.as_bytes(), 0),
            Check::NotLoaded
        ));
    }

    /// The cost of one check (keyed hash + lookup) with 1,000 keys in the ring:
    /// `cargo test --release -p payrail-db -- --ignored --nocapture check_cost`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn check_cost() {
        let h = hasher();
        let ring = KeyRing::new(1);
        ring.loaded[0].store(true, Ordering::Release);
        let mut keys = Vec::new();
        for n in 0..1000 {
            let key = generate("live", &h).expect("key");
            ring.keys.write().insert(
                key.prefix.clone(),
                Arc::new(Entry {
                    key_id: key.key_id.clone(),
                    merchant: Arc::from(format!("M-{n}")),
                    shard: 1,
                    hash: key.hash,
                    expires_at_ms: i64::MAX,
                    last_used_ms: AtomicI64::new(0),
                    flushed_ms: AtomicI64::new(0),
                }),
            );
            keys.push(key.secret);
        }
        let rounds = 200_000;
        let started = std::time::Instant::now();
        let mut valid = 0;
        for i in 0..rounds {
            if matches!(
                ring.check(&h, keys[i % keys.len()].as_bytes(), 1),
                Check::Valid(_)
            ) {
                valid += 1;
            }
        }
        let per = started.elapsed().as_nanos() as f64 / rounds as f64;
        assert_eq!(valid, rounds);
        println!("one key check: {per:.0} ns");
    }
}
