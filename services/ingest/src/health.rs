//! Dependency health, checked in the background once a second so `/health` answers
//! without I/O.

use crate::App;
use mysql_async::prelude::Queryable;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Health {
    shards_up: Vec<AtomicBool>,
    redis_up: AtomicBool,
}

impl Health {
    pub fn new(shard_count: u16) -> Self {
        Self {
            shards_up: (0..shard_count).map(|_| AtomicBool::new(false)).collect(),
            redis_up: AtomicBool::new(false),
        }
    }

    /// `(status code, body)`: 200 while at least one shard serves (merchants on a healthy
    /// shard are still served; the others get 503 SHARD_UNAVAILABLE per request), 503 when
    /// no shard does. Redis down is reported but is not fatal (fail-open).
    pub fn report(
        &self,
        breaker_state: &str,
        publisher: Option<(&str, &payrail_kafka::BrokerProbe)>,
        merchant_auth: &str,
    ) -> (u16, Vec<u8>) {
        let up: Vec<bool> = self
            .shards_up
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect();
        let all = up.iter().all(|u| *u);
        let any = up.iter().any(|u| *u);
        // A broker that does not answer degrades the instance but does not stop it:
        // authorizations commit their events to the outbox, which waits for the broker.
        let broker_down = publisher.is_some_and(|(_, broker)| broker.down());
        let status = if all && !broker_down {
            "UP"
        } else if any {
            "DEGRADED"
        } else {
            "DOWN"
        };
        let mut body =
            format!("{{\"status\":\"{status}\",\"merchantAuth\":\"{merchant_auth}\",\"checks\":{{");
        for (i, u) in up.iter().enumerate() {
            body.push_str(&format!(
                "\"mariadb-shard{}\":\"{}\",",
                i + 1,
                if *u { "UP" } else { "DOWN" }
            ));
        }
        if let Some((state, broker)) = publisher {
            body.push_str(&format!(
                "\"kafka\":\"{}\",\"kafka-publisher-breaker\":\"{state}\",",
                broker.state()
            ));
        }
        body.push_str(&format!(
            "\"redis\":\"{}\",\"pg-authorize-breaker\":\"{breaker_state}\"}}}}",
            if self.redis_up.load(Ordering::Relaxed) {
                "UP"
            } else {
                "DOWN"
            }
        ));
        (if any { 200 } else { 503 }, body.into_bytes())
    }
}

pub async fn check_loop(app: Arc<App>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        interval.tick().await;
        for shard in app.shards.numbers() {
            let ok = tokio::time::timeout(Duration::from_secs(1), async {
                let mut conn = app.shards.conn(shard).await.ok()?;
                conn.query_drop("SELECT 1").await.ok()
            })
            .await
            .ok()
            .flatten()
            .is_some();
            app.health.shards_up[usize::from(shard) - 1].store(ok, Ordering::Relaxed);
        }
        app.health
            .redis_up
            .store(app.redis.ping().await, Ordering::Relaxed);
        app.metrics
            .breaker_state
            .with_label_values(&[app.pg_breaker.name()])
            .set(app.pg_breaker.state().gauge_value());
        if let Some(relay) = app.relay.get() {
            app.metrics
                .breaker_state
                .with_label_values(&[relay.breaker.name()])
                .set(relay.breaker.state().gauge_value());
        }
    }
}
