//! ingest: the payment API.
//!
//! - [`routes`]: HTTP routes on may coroutines; each request's I/O crosses to tokio once.
//! - [`merchant_auth`]: the merchant API key of every payment request decides its merchant.
//! - [`parse`]: request bodies → validated inputs, or the exact 4xx of the contract.
//! - [`authorize`]: the authorize path (rate limit, idempotency, PG, group commit).
//! - [`payments`]: capture, refund, void and the read API.
//! - [`group_commit`]: batched durable writes per shard.
//! - [`events`]: event topics and payloads written to the outbox (`payrail_outbox`) with
//!   each state change; the outbox's relay runs here and in both workers.
//! - [`idempotency`]: key reservation, takeover, replay encoding and the purge job.
//! - [`resolver`]: per shard, resolves authorizations whose PG outcome is unknown.
//! - [`expiry`]: per shard, voids authorizations older than their TTL.
//! - [`rate_limit`]: Redis: per-merchant limits and the replay cache in one script.
//! - [`render`]: the payment JSON. [`outcome`]: status, body and headers of an answer.
//! - [`config`], [`metrics`], [`health`], [`app`]: wiring.

mod app;
mod authorize;
mod config;
mod events;
mod expiry;
mod group_commit;
mod health;
mod idempotency;
mod merchant_auth;
mod metrics;
mod outcome;
mod parse;
mod payments;
mod rate_limit;
mod render;
mod resolver;
mod routes;

pub use app::App;

use mimalloc::MiMalloc;
use payrail_http::Bridge;
use std::sync::Arc;
use std::time::Duration;

/// mimalloc, with every allocation counted (`payrail_heap_allocations_total`, for the
/// bench's allocations per request).
#[global_allocator]
static GLOBAL: payrail_core::alloc::Counting<MiMalloc> = payrail_core::alloc::Counting(MiMalloc);

fn main() {
    if let Err(error) = run() {
        eprintln!("ingest: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Some((args, config)) = payrail_core::config::startup::<config::Config>("ingest")? else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.runtime.tokio_worker_threads)
        .thread_name("ingest-io")
        .enable_all()
        .build()?;

    if args.command.as_deref() == Some("migrate") {
        let shards = payrail_db::Shards::new(&config.shards, &config.pool)?;
        let applied = runtime.block_on(payrail_db::migrate::migrate_all(&shards))?;
        println!("ingest: {applied} migration(s) applied");
        return Ok(());
    }
    if let Some(other) = args.command {
        return Err(format!("unknown command {other} (known: migrate)").into());
    }

    let app = runtime.block_on(async {
        // Migrations first: a shard that is down is retried, because serving without the
        // schema would only produce errors.
        let app = App::build(config.clone())?;
        for shard in app.shards.numbers() {
            loop {
                match payrail_db::migrate::migrate_shard(&app.shards, shard).await {
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(shard, %error, "migrations not applied yet; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        Ok::<_, String>(app)
    })?;
    if let Some(kafka) = config.kafka.clone() {
        let relay = runtime.block_on(async {
            payrail_outbox::Relay::new(
                app.shards.clone(),
                config.relay.clone(),
                &kafka,
                &config.instance,
                &app.metrics.registry,
                app.outbox.clone(),
            )
        })?;
        let _ = app.relay.set(relay.clone());
        runtime.block_on(async { relay.start() });
    }
    if let Some(keys) = app.keys.as_ref() {
        // A first read before listening, so the first requests find their keys; a shard
        // that is down now is read by the refresh loop once it is back.
        for (shard, error) in runtime.block_on(keys.ring.refresh_all(&app.shards)) {
            tracing::warn!(shard, %error, "API keys not read yet");
        }
        tracing::info!(
            keys = keys.ring.len(),
            "merchant_auth = required: payment routes need a merchant API key"
        );
    } else {
        tracing::warn!("merchant_auth = \"off\": payment routes trust the merchantId a request names; use this for reference clients only, never in production");
    }
    runtime.spawn(merchant_auth::refresh_loop(app.clone()));
    runtime.spawn(health::check_loop(app.clone()));
    runtime.spawn(idempotency::purge_loop(app.clone()));
    for shard in app.shards.numbers() {
        runtime.spawn(resolver::run(app.clone(), shard));
        runtime.spawn(expiry::run(app.clone(), shard));
    }

    payrail_http::runtime::configure_may(
        config.runtime.may_worker_threads,
        config.runtime.coroutine_stack_words,
    );
    let bridge = Bridge::new(
        runtime.handle().clone(),
        config.runtime.in_flight_max,
        Duration::from_millis(config.runtime.request_timeout_ms),
        app.metrics.in_flight.clone(),
    );
    let listener = payrail_http::server::bind(&config.listen)?;
    tracing::info!(listen = %listener.local_addr()?, instance = %config.instance, shards = app.shards.count(), "ingest listening");
    let api = Arc::new(routes::Api { app, bridge });
    let server = payrail_http::server::serve(listener, config.http.clone(), api);
    let _ = server.join();
    drop(runtime);
    Ok(())
}
