//! monitoring: the admin API (`/api/admin/**`, behind the gateway) and the admin
//! dashboard (`/admin`), token-protected.
//!
//! - [`admin`]: the reads across every shard and the audit-logged writes.
//! - [`kafka`]: topic offsets, consumer lag, dead letters and their replay.
//! - [`scrape`]: every instance's `/metrics`: breakers, live throughput and latency.
//! - [`loadtest`]: the k6 runner and its history.
//! - [`drill`]: the circuit-breaker drill.
//! - [`report`]: deterministic analysis reports (and [`llm`], the optional summary).
//! - [`routes`]: the HTTP routes; [`config`]: the TOML config.

mod admin;
mod config;
mod drill;
mod history;
mod kafka;
mod keys;
mod llm;
mod loadtest;
mod report;
mod routes;
mod scrape;
mod tokens;

use mimalloc::MiMalloc;
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    if let Err(error) = run() {
        eprintln!("monitoring: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Some((args, config)) = payrail_core::config::startup::<config::Config>("monitoring")?
    else {
        return Ok(());
    };
    let tokens = tokens::Tokens::load(&config)?;
    let keys = match &config.api_keys {
        Some(k) => Some(Arc::new(keys::Keys::load(k)?)),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("monitoring-io")
        .enable_all()
        .build()?;
    let _guard = runtime.enter();
    let shards = payrail_db::Shards::new(&config.shards, &config.pool)?;
    let redis = payrail_db::redis::client(
        &config.redis.url,
        config.redis.password_file.as_deref(),
        config.redis.tls_ca_file.as_deref(),
    )?;
    let admin = Arc::new(admin::Admin {
        config: config.clone(),
        shards,
        redis,
    });
    if let Some(command) = args.command.as_deref() {
        return run_command(&runtime, &admin, keys.as_deref(), command, &args.operands);
    }
    let kafka = match &config.kafka {
        Some(k) => Some(Arc::new(kafka::Kafka::new(k, &config.consumer_groups)?)),
        None => None,
    };
    let scraper = scrape::Scraper::new(config.clone());
    runtime.spawn(scraper.clone().run());
    let loadtests = match &config.k6 {
        Some(k6) => Some(loadtest::LoadTests::new(
            k6.clone(),
            history::History::open(&config.state_dir.join("loadtests"))?,
        )),
        None => None,
    };
    let drills = match &config.drill {
        Some(drill) => Some(drill::Drills::new(
            drill.clone(),
            history::History::open(&config.state_dir.join("drills"))?,
            admin.clone(),
            scraper.clone(),
        )),
        None => None,
    };
    let llm = llm::Llm::new(&config.llm)?;
    let in_flight = prometheus::IntGauge::new("bridge_in_flight", "unregistered")?;
    let bridge = payrail_http::Bridge::new(
        runtime.handle().clone(),
        256,
        Duration::from_secs(60),
        in_flight,
    );
    payrail_http::runtime::configure_may(1, may::config().get_stack_size());
    let listener = payrail_http::server::bind(&config.listen)?;
    tracing::info!(listen = %listener.local_addr()?, "monitoring listening");
    let server = payrail_http::server::serve(
        listener,
        config.http.clone(),
        Arc::new(routes::Routes {
            ops: Arc::new(routes::Ops {
                config: config.clone(),
                admin,
                kafka,
                scraper,
                loadtests,
                drills,
                llm,
                keys,
            }),
            tokens,
            bridge,
        }),
    );
    let _ = server.join();
    drop(runtime);
    Ok(())
}

/// `monitoring --config FILE create-key <merchantId>`: the first key of a fresh appliance
/// (or any later one) without the HTTP API. Prints the key once, on stdout, and writes the
/// audit line as `cli`.
fn run_command(
    runtime: &tokio::runtime::Runtime,
    admin: &admin::Admin,
    keys: Option<&keys::Keys>,
    command: &str,
    operands: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    match (command, operands) {
        ("create-key", [merchant]) => {
            payrail_core::validate::merchant_id(merchant)
                .map_err(|problem| format!("merchantId {problem}"))?;
            let keys = keys.ok_or("create-key needs [api_keys] in the config")?;
            let who = admin::Who {
                actor: "cli".to_owned(),
                request_id: "-".to_owned(),
            };
            let answer = runtime.block_on(keys::create(admin, keys, merchant, &who));
            if answer.status != 201 {
                return Err(format!("create-key: {}", answer.body).into());
            }
            println!("{}", answer.body);
            Ok(())
        }
        _ => Err(format!(
            "unknown command {command} {operands:?} (known: create-key <merchantId>)"
        )
        .into()),
    }
}
