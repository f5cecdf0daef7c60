//! The admin API of `shared/spec/api.md`: reads across every shard, and the writes an
//! operator needs (rate-limit reset, idempotency cache clear), each audit-logged.
//! Every answer uses a real status code: 401 without a valid token, 404 for an unknown
//! route, 503 when the data cannot be read (no shard up, Redis down).

use crate::config::Config;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};
use payrail_db::{epoch_ms, Shards};
use serde_json::{json, Value as Json};
use std::io::Write;

pub struct Admin {
    pub config: Config,
    pub shards: Shards,
    pub redis: redis::Client,
}

/// Who asked: the admin token's name and the request id, for the audit log.
pub struct Who {
    pub actor: String,
    pub request_id: String,
}

/// An answer: status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Json,
}

/// Where a page of [`Admin::recent`] starts on each shard: below this payment id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cursor(std::collections::BTreeMap<u16, u64>);

impl Cursor {
    /// `1.<id>-2.<id>` (characters a URL carries unencoded); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let mut positions = std::collections::BTreeMap::new();
        for part in text.split('-').filter(|p| !p.is_empty()) {
            let (shard, id) = part.split_once('.')?;
            positions.insert(shard.parse().ok()?, id.parse().ok()?);
        }
        Some(Self(positions))
    }

    /// The exclusive upper bound on `shard`: its position, or past its last id.
    fn before(&self, shard: u16) -> u64 {
        self.0
            .get(&shard)
            .copied()
            .unwrap_or((u64::from(shard) + 1) << payrail_core::id::SHARD_SHIFT)
    }

    fn lower(&mut self, shard: u16, id: u64) {
        let position = self.0.entry(shard).or_insert(id);
        *position = (*position).min(id);
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (shard, id) in &self.0 {
            write!(f, "{}{shard}.{id}", if first { "" } else { "-" })?;
            first = false;
        }
        Ok(())
    }
}

/// payment id, merchant id, state, age in ms, resolver attempts, next attempt.
type UnresolvedRow = (u64, Vec<u8>, String, i64, u32, Option<String>);

pub fn answer(status: u16, body: Json) -> Answer {
    Answer { status, body }
}

pub fn ok(body: Json) -> Answer {
    answer(200, body)
}

/// An error answer in the API's error shape.
pub fn error(status: u16, code: &str, message: impl std::fmt::Display) -> Answer {
    answer(
        status,
        json!({ "code": code, "message": message.to_string() }),
    )
}

impl Admin {
    /// Payments by status and the outbox backlog, per shard. A shard that does not answer
    /// is reported `up: false`; 503 only when none answers.
    pub async fn stats(&self) -> Answer {
        let mut shards = Vec::new();
        let mut any_up = false;
        for shard in self.shards.numbers() {
            let result = self
                .shards
                .bounded(shard, async {
                    let mut conn = self.shards.conn(shard).await?;
                    let classify = |e| payrail_db::DbError::classify(shard, e);
                    let rows: Vec<(String, i64)> = conn
                        .query("SELECT status, COUNT(*) FROM payment GROUP BY status")
                        .await
                        .map_err(classify)?;
                    let backlog: Option<i64> = conn
                        .query_first("SELECT COUNT(*) FROM outbox_event WHERE published_at IS NULL")
                        .await
                        .map_err(classify)?;
                    Ok((rows, backlog.unwrap_or(0)))
                })
                .await;
            shards.push(match result {
                Ok((rows, backlog)) => {
                    any_up = true;
                    let by_status: serde_json::Map<String, Json> =
                        rows.into_iter().map(|(s, n)| (s, json!(n))).collect();
                    json!({ "shard": shard, "up": true, "payments": by_status, "outboxBacklog": backlog })
                }
                Err(e) => json!({ "shard": shard, "up": false, "error": e.to_string() }),
            });
        }
        if any_up {
            ok(json!({ "shards": shards }))
        } else {
            error(503, "SHARD_UNAVAILABLE", "no shard answered")
        }
    }

    /// The newest payments across every shard, optionally of one merchant, a page at a
    /// time. Each shard is read newest first along an index (the primary key, or
    /// `ix_merchant` for one merchant), from where the previous page left it: `cursor` is
    /// the `nextCursor` of that page, one position per shard (`1.<id>-2.<id>`), so a page
    /// costs `limit` rows per shard however large the table.
    pub async fn recent(&self, merchant_id: Option<&str>, limit: u64, cursor: &Cursor) -> Answer {
        let mut payments: Vec<(i64, u16, u64, Json)> = Vec::new();
        let mut any_up = false;
        // A shard that filled its page may hold more.
        let mut more = false;
        for shard in self.shards.numbers() {
            let merchant = merchant_id.map(|m| m.as_bytes().to_vec());
            let before = cursor.before(shard);
            let result = self
                .shards
                .bounded(shard, async {
                    let mut conn = self.shards.conn(shard).await?;
                    let columns = "SELECT payment_id, merchant_id, status, amount, currency, created_at FROM payment";
                    let rows: Vec<Row> = match merchant {
                        Some(merchant) => conn.exec(
                            format!("{columns} WHERE merchant_id = ? AND payment_id < ? ORDER BY payment_id DESC LIMIT ?"),
                            (merchant, before, limit),
                        ),
                        None => conn.exec(
                            format!("{columns} WHERE payment_id < ? ORDER BY payment_id DESC LIMIT ?"),
                            (before, limit),
                        ),
                    }
                    .await
                    .map_err(|e| payrail_db::DbError::classify(shard, e))?;
                    Ok(rows)
                })
                .await;
            let Ok(rows) = result else { continue };
            any_up = true;
            more |= rows.len() as u64 == limit;
            for mut row in rows {
                let created = row
                    .take::<Value, _>(5)
                    .map(|v| epoch_ms(&v))
                    .unwrap_or_default();
                let text = |v: Option<Vec<u8>>| {
                    String::from_utf8(v.unwrap_or_default()).unwrap_or_default()
                };
                let id = row.take::<u64, _>(0).unwrap_or_default();
                payments.push((
                    created,
                    shard,
                    id,
                    json!({
                        "paymentId": id,
                        "merchantId": text(row.take(1)),
                        "status": text(row.take(2)),
                        "amount": row.take::<i64, _>(3).unwrap_or_default(),
                        "currency": text(row.take(4)),
                        "createdAt": payrail_core::time::rfc3339(created),
                        "shard": shard,
                    }),
                ));
            }
        }
        if !any_up {
            return error(503, "SHARD_UNAVAILABLE", "no shard answered");
        }
        payments.sort_by_key(|p| std::cmp::Reverse((p.0, p.2)));
        payments.truncate(limit as usize);
        // The next page starts, on each shard, below the oldest row this page took from it;
        // a shard this page took nothing from stays where it was.
        let mut next = cursor.clone();
        for (_, shard, id, _) in &payments {
            next.lower(*shard, *id);
        }
        ok(json!({
            "payments": payments.into_iter().map(|p| p.3).collect::<Vec<_>>(),
            "nextCursor": more.then(|| next.to_string()),
        }))
    }

    /// Runs `read` on every shard and collects the shards that answered; 503 when none
    /// did. A shard that fails is listed under `unavailableShards`.
    async fn each_shard<T, F, Fut>(&self, read: F) -> Result<(Vec<(u16, T)>, Vec<u16>), Answer>
    where
        F: Fn(u16, mysql_async::Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, mysql_async::Error>>,
    {
        let mut answered = Vec::new();
        let mut down = Vec::new();
        for shard in self.shards.numbers() {
            let result = self
                .shards
                .bounded(shard, async {
                    let conn = self.shards.conn(shard).await?;
                    read(shard, conn)
                        .await
                        .map_err(|e| payrail_db::DbError::classify(shard, e))
                })
                .await;
            match result {
                Ok(value) => answered.push((shard, value)),
                Err(_) => down.push(shard),
            }
        }
        if answered.is_empty() {
            return Err(error(503, "SHARD_UNAVAILABLE", "no shard answered"));
        }
        Ok((answered, down))
    }

    /// Unpublished outbox events over the shards that answered; `None` when none did.
    pub async fn outbox_backlog(&self) -> Option<i64> {
        let stats = self.stats().await;
        (stats.status == 200).then(|| {
            stats.body["shards"]
                .as_array()
                .map(|s| s.iter().filter_map(|x| x["outboxBacklog"].as_i64()).sum())
                .unwrap_or(0)
        })
    }

    /// Settlement, refund and void jobs: outcomes, success rate of the finished ones, and
    /// how many attempts they took (the retry distribution).
    pub async fn jobs(&self) -> Answer {
        let read = |_, mut conn: mysql_async::Conn| async move {
            let mut out = Vec::new();
            for table in ["settlement_request", "refund_request", "void_request"] {
                let rows: Vec<(String, i64, i64)> = conn
                    .query(format!(
                        "SELECT status, attempts, COUNT(*) FROM {table} GROUP BY status, attempts"
                    ))
                    .await?;
                out.push((table, rows));
            }
            Ok(out)
        };
        let (answered, down) = match self.each_shard(read).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        let mut body = serde_json::Map::new();
        for (kind, table) in [
            ("settlement", "settlement_request"),
            ("refund", "refund_request"),
            ("void", "void_request"),
        ] {
            let mut by_status: std::collections::BTreeMap<String, i64> = Default::default();
            let mut attempts: std::collections::BTreeMap<i64, i64> = Default::default();
            for (_, tables) in &answered {
                for (t, rows) in tables {
                    if *t != table {
                        continue;
                    }
                    for (status, tries, count) in rows {
                        *by_status.entry(status.clone()).or_default() += count;
                        if status != "PENDING" {
                            *attempts.entry(*tries).or_default() += count;
                        }
                    }
                }
            }
            let succeeded = by_status.get("SUCCEEDED").copied().unwrap_or(0);
            let failed = by_status.get("FAILED").copied().unwrap_or(0);
            let finished = succeeded + failed;
            body.insert(
                kind.into(),
                json!({
                    "byStatus": by_status,
                    "successRate": (finished > 0).then(|| succeeded as f64 / finished as f64),
                    "attempts": attempts.iter().map(|(a, n)| json!({ "attempts": a, "jobs": n })).collect::<Vec<_>>(),
                }),
            );
        }
        body.insert("unavailableShards".into(), json!(down));
        ok(Json::Object(body))
    }

    /// Authorizations whose PG outcome is not resolved yet (answer lost, or the request's
    /// owner died before the commit), oldest first, at most 100 per shard: what ingest's
    /// resolver is working on. `overdue` is past `sla_seconds`.
    pub async fn unresolved(&self, sla_seconds: u64) -> Answer {
        let read = |_, mut conn: mysql_async::Conn| async move {
            let rows: Vec<UnresolvedRow> = conn
                .query(
                    format!(
                        "SELECT payment_id, merchant_id, state, \
                         CAST(TIMESTAMPDIFF(MICROSECOND, {since}, UTC_TIMESTAMP(3)) DIV 1000 AS SIGNED), \
                         resolve_attempts, DATE_FORMAT(resolve_at, '%Y-%m-%dT%H:%i:%s.%fZ') \
                         FROM idempotency_record WHERE {unresolved} ORDER BY created_at LIMIT 100",
                        since = payrail_db::UNRESOLVED_SINCE,
                        unresolved = payrail_db::UNRESOLVED,
                    ),
                )
                .await?;
            Ok(rows)
        };
        let (answered, down) = match self.each_shard(read).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        let mut list = Vec::new();
        let mut overdue = 0;
        for (shard, rows) in answered {
            for (payment_id, merchant, state, age_ms, attempts, next) in rows {
                let late = age_ms >= (sla_seconds * 1000) as i64;
                overdue += i64::from(late);
                list.push(json!({
                    "shard": shard,
                    "paymentId": payment_id,
                    "merchantId": String::from_utf8_lossy(&merchant),
                    "state": state,
                    "ageMs": age_ms,
                    "resolveAttempts": attempts,
                    "nextAttemptAt": next,
                    "overdue": late,
                }));
            }
        }
        ok(json!({
            "unresolved": list,
            "overdue": overdue,
            "slaSeconds": sla_seconds,
            "unavailableShards": down,
        }))
    }

    /// Payments created per minute over the last `minutes` minutes, all shards together.
    pub async fn throughput(&self, minutes: u32) -> Answer {
        let read = |_, mut conn: mysql_async::Conn| async move {
            let rows: Vec<(String, i64)> = conn
                .exec(
                    "SELECT DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:00Z'), COUNT(*) FROM payment \
                     WHERE created_at >= UTC_TIMESTAMP(3) - INTERVAL ? MINUTE GROUP BY 1",
                    (minutes,),
                )
                .await?;
            Ok(rows)
        };
        let (answered, down) = match self.each_shard(read).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        let mut per_minute: std::collections::BTreeMap<String, i64> = Default::default();
        for (_, rows) in answered {
            for (minute, count) in rows {
                *per_minute.entry(minute).or_default() += count;
            }
        }
        ok(json!({
            "minutes": per_minute.into_iter().map(|(m, n)| json!({ "minute": m, "payments": n })).collect::<Vec<_>>(),
            "unavailableShards": down,
        }))
    }

    /// The outbox per shard: unpublished events, the age of the oldest one, and the
    /// publish lag (commit → broker ack) of the last minute's events.
    pub async fn outbox(&self) -> Answer {
        let read = |_, mut conn: mysql_async::Conn| async move {
            let row: Option<(i64, Option<f64>)> = conn
                .query_first(
                    "SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN(created_at), UTC_TIMESTAMP(3)) / 1000 \
                     FROM outbox_event WHERE published_at IS NULL",
                )
                .await?;
            let lag: Option<(Option<f64>, Option<f64>, i64)> = conn
                .query_first(
                    "SELECT AVG(TIMESTAMPDIFF(MICROSECOND, created_at, published_at)) / 1000, \
                     MAX(TIMESTAMPDIFF(MICROSECOND, created_at, published_at)) / 1000, COUNT(*) \
                     FROM outbox_event WHERE published_at >= UTC_TIMESTAMP(3) - INTERVAL 1 MINUTE",
                )
                .await?;
            Ok((row.unwrap_or((0, None)), lag.unwrap_or((None, None, 0))))
        };
        let (answered, down) = match self.each_shard(read).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        let shards: Vec<Json> = answered
            .into_iter()
            .map(|(shard, ((backlog, oldest), (avg, max, published)))| {
                json!({
                    "shard": shard,
                    "backlog": backlog,
                    "oldestUnpublishedMs": oldest,
                    "lastMinute": { "published": published, "avgLagMs": avg, "maxLagMs": max },
                })
            })
            .collect();
        ok(json!({ "shards": shards, "unavailableShards": down }))
    }

    /// Deletes a merchant's rate-limit counters (every action): its budget is whole again.
    pub async fn reset_rate_limit(&self, merchant_id: &str, who: &Who) -> Answer {
        let prefix = &self.config.redis.key_prefix;
        let keys: Vec<String> = ["authorize", "capture", "refund"]
            .iter()
            .map(|action| format!("{prefix}rl:{action}:{merchant_id}"))
            .collect();
        let result = async {
            let mut conn = self.redis.get_multiplexed_async_connection().await?;
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<i64>(&mut conn)
                .await
        }
        .await;
        let answer = match result {
            Ok(deleted) => ok(json!({ "merchantId": merchant_id, "countersDeleted": deleted })),
            Err(e) => error(503, "UPSTREAM_UNAVAILABLE", format!("redis: {e}")),
        };
        self.audit("rate-limit-reset", merchant_id, &answer, who);
        answer
    }

    /// Clears the Redis idempotency cache layer (MariaDB keeps idempotency exact; the next
    /// retry of a key is answered from MariaDB and refills the cache).
    pub async fn clear_idempotency_cache(&self, who: &Who) -> Answer {
        let pattern = format!("{}idem:*", self.config.redis.key_prefix);
        let result = async {
            let mut conn = self.redis.get_multiplexed_async_connection().await?;
            let mut cursor: u64 = 0;
            let mut cleared: i64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await?;
                if !keys.is_empty() {
                    cleared += redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async::<i64>(&mut conn)
                        .await?;
                }
                if next == 0 {
                    break Ok::<_, redis::RedisError>(cleared);
                }
                cursor = next;
            }
        }
        .await;
        let answer = match result {
            Ok(cleared) => ok(json!({ "cleared": cleared })),
            Err(e) => error(503, "UPSTREAM_UNAVAILABLE", format!("redis: {e}")),
        };
        self.audit("idempotency-cache-clear", "*", &answer, who);
        answer
    }

    /// One JSON line per write: when, who (the token's name), what, on what, the outcome,
    /// the request id. A small synchronous append: admin writes are rare, and an audit line
    /// must not be dropped.
    pub fn audit(&self, action: &str, target: &str, answer: &Answer, who: &Who) {
        let line = json!({
            "at": payrail_core::time::rfc3339(payrail_core::time::now_ms()),
            "actor": who.actor,
            "action": action,
            "target": target,
            "status": answer.status,
            "requestId": who.request_id,
        });
        tracing::info!(%line, "admin write");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.audit_log)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            tracing::error!(error = %e, "audit log not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn a_cursor_round_trips_and_moves_only_down() {
        let mut cursor = Cursor::default();
        assert_eq!(cursor.before(1), 2 << payrail_core::id::SHARD_SHIFT);
        cursor.lower(2, 900);
        cursor.lower(2, 950);
        cursor.lower(1, 40);
        let text = cursor.to_string();
        assert_eq!(text, "1.40-2.900");
        assert_eq!(Cursor::parse(&text), Some(cursor));
        assert_eq!(Cursor::parse(""), Some(Cursor::default()));
        for bad in ["1:40", "x.1", "1.-5", "1.40,2.9"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
