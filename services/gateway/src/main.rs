//! gateway: the single entry point (`:8080`).
//!
//! - [`routes`]: `/api/payments/**` → ingest, `/api/admin/**` → monitoring, CORS
//!   allow-list, request ids, `/health`, `/metrics`.
//! - [`proxy`]: one request forwarded, with the rule for when re-sending is safe.
//! - [`throttle`]: failed authentications counted per client address and key prefix (429).
//! - [`upstream`]: pools, round robin, active health checks, passive ejection.
//! - [`config`], [`metrics`]: wiring.
//!
//! Same design as ingest: HTTP connections on may coroutines (our HTTP/1.1 loop in
//! payrail-http, see its docs for why not may_minihttp's), upstream I/O on tokio with
//! hyper's keep-alive pool, one bridge hop per request.

mod config;
mod metrics;
mod proxy;
mod routes;
mod throttle;
mod upstream;

use mimalloc::MiMalloc;
use payrail_http::Bridge;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// mimalloc, with every allocation counted (`payrail_heap_allocations_total`, for the
/// bench's allocations per request).
#[global_allocator]
static GLOBAL: payrail_core::alloc::Counting<MiMalloc> = payrail_core::alloc::Counting(MiMalloc);

fn main() {
    if let Err(error) = run() {
        eprintln!("gateway: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Some((args, config)) = payrail_core::config::startup::<config::Config>("gateway")? else {
        return Ok(());
    };
    if let Some(other) = args.command {
        return Err(format!("unknown command {other} (the gateway has none)").into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.runtime.tokio_worker_threads)
        .thread_name("gateway-io")
        .enable_all()
        .build()?;
    let metrics = Arc::new(metrics::Metrics::new(&config.instance)?);
    // Known label values start at 0, so dashboards see the series before the first event.
    for reason in ["connect", "idempotent"] {
        metrics.retries.with_label_values(&[reason]).inc_by(0);
    }
    let client = {
        let _guard = runtime.enter();
        upstream::client(
            Duration::from_millis(config.upstream.connect_timeout_ms),
            config.upstream.pool_idle_max,
        )
    };
    let payments = Arc::new(upstream::Pool::new("payments", &config.payments));
    let admin = Arc::new(upstream::Pool::new("admin", &config.admin));
    for pool in [&payments, &admin] {
        runtime.spawn(upstream::health_loop(
            pool.clone(),
            client.clone(),
            config.health.clone(),
            metrics.clone(),
        ));
    }

    payrail_http::runtime::configure_may(
        config.runtime.may_worker_threads,
        config.runtime.coroutine_stack_words,
    );
    let bridge = Bridge::new(
        runtime.handle().clone(),
        config.runtime.in_flight_max,
        Duration::from_millis(config.upstream.request_timeout_ms + 1_000),
        prometheus::IntGauge::new("bridge_in_flight", "unregistered")?,
    );
    let gateway = Arc::new(routes::Gateway {
        config: config.clone(),
        payments,
        admin,
        client,
        metrics: metrics.clone(),
        bridge,
        id_prefix: fastrand::u64(..),
        id_counter: AtomicU64::new(0),
        throttle: throttle::Throttle::new(config.auth_throttle.clone()),
    });
    let draining = Arc::new(AtomicBool::new(false));
    let tls = match &config.tls {
        Some(t) => Some(Arc::new(payrail_http::tls::Tls::new(
            &t.cert_file,
            &t.key_file,
            t.hsts_max_age_seconds,
        )?)),
        None => None,
    };
    if let (Some(t), Some(tls)) = (&config.tls, &tls) {
        for address in &t.listen {
            let listener = payrail_http::server::bind(address)?;
            tracing::info!(listen = %listener.local_addr()?, "gateway listening (TLS)");
            let _server = payrail_http::server::serve_tls(
                listener,
                config.http.clone(),
                gateway.clone(),
                draining.clone(),
                Some(tls.clone()),
            );
        }
    }
    for address in &config.listen {
        let listener = payrail_http::server::bind(address)?;
        tracing::info!(listen = %listener.local_addr()?, upstreams = config.payments.len(), "gateway listening");
        let _server = payrail_http::server::serve_draining(
            listener,
            config.http.clone(),
            gateway.clone(),
            draining.clone(),
        );
    }

    // Graceful shutdown: on SIGTERM or SIGINT stop taking connections, let the requests
    // in flight finish (bounded), then exit.
    let drain_timeout = Duration::from_millis(config.runtime.drain_timeout_ms);
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = hup.recv() => match &tls {
                    Some(tls) => match tls.reload() {
                        Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                        Err(error) => tracing::error!(%error, "SIGHUP: TLS certificate not reloaded; the old one stays"),
                    },
                    None => tracing::info!("SIGHUP: no TLS configured; nothing to reload"),
                },
            }
        }
        draining.store(true, Ordering::Release);
        let started = Instant::now();
        tracing::info!(in_flight = metrics.in_flight.get(), "draining");
        while metrics.in_flight.get() > 0 && started.elapsed() < drain_timeout {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(in_flight = metrics.in_flight.get(), "drained; exiting");
        Ok::<_, std::io::Error>(())
    })?;
    // The may coroutines hold open keep-alive connections; the process exit closes them.
    std::process::exit(0);
}
