//! Authorization expiry: an `AUTHORIZED` payment older than `expiry.authorization_ttl_seconds`
//! (default 7 days) is voided at the PG like a merchant's void (`VOID_REQUESTED`, then the
//! settlement worker's void) and ends `EXPIRED`, so no hold outlives its authorization.

use crate::App;
use mysql_async::prelude::Queryable;
use payrail_db::DbError;
use std::sync::Arc;
use std::time::Duration;

/// Per shard, forever.
pub async fn run(app: Arc<App>, shard: u16) {
    let config = app.config.expiry;
    let mut interval = tokio::time::interval(Duration::from_millis(config.interval_ms.max(100)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let before_ms =
            payrail_core::time::now_ms() - config.authorization_ttl_seconds as i64 * 1000;
        let due = match due(&app, shard, before_ms).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(shard, %error, "expiry: scan failed; will retry");
                continue;
            }
        };
        for (payment_id, merchant_id) in due {
            let outcome =
                crate::payments::expire(&app, shard, payment_id, &merchant_id, before_ms).await;
            if outcome.status == 200 {
                app.metrics.authorizations_expired.inc();
                tracing::info!(payment_id, "authorization expired; void requested");
            }
        }
    }
}

/// AUTHORIZED payments untouched since `before_ms` (index `ix_status_updated`).
async fn due(app: &App, shard: u16, before_ms: i64) -> Result<Vec<(u64, String)>, DbError> {
    app.shards
        .bounded(shard, async {
            let mut conn = app.shards.conn(shard).await?;
            let rows: Vec<(u64, Vec<u8>)> = conn
                .exec(
                    "SELECT payment_id, merchant_id FROM payment WHERE status = 'AUTHORIZED' AND updated_at < ? LIMIT ?",
                    (payrail_db::datetime(before_ms), app.config.expiry.batch_size),
                )
                .await
                .map_err(|e| DbError::classify(shard, e))?;
            Ok(rows
                .into_iter()
                .map(|(id, m)| (id, String::from_utf8_lossy(&m).into_owned()))
                .collect())
        })
        .await
}
