//! ledger (the consumer-worker): the double-entry ledger and reconciliation.
//!
//! - [`entries`]: the chart of accounts and each event's balanced lines.
//! - [`consumer`]: batched, idempotent application of events, poison to `payment.dlq`.
//! - [`reconcile`]: the `reconcile` command (payments vs ledger vs the PG).

mod consumer;
mod entries;
mod reconcile;

use mimalloc::MiMalloc;
use payrail_core::config::Validate;
use payrail_core::telemetry::register;
use payrail_db::{PoolConfig, ShardConfig, Shards};
use payrail_http::{error_body, Handler, Request, Response};
use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `/health` and `/metrics`.
    pub listen: String,
    #[serde(default = "default_instance")]
    pub instance: String,
    pub shards: Vec<ShardConfig>,
    #[serde(default)]
    pub pool: PoolConfig,
    pub kafka: payrail_kafka::KafkaConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    /// The PG, for the three-way `reconcile` command; without it the PG is not compared.
    #[serde(default)]
    pub pg_base_url: Option<String>,
    /// `reconcile`: payments read per chunk (memory is bounded by the chunk, not the
    /// table). Default 1 000.
    #[serde(default = "default_reconcile_chunk")]
    pub reconcile_chunk: u64,
    /// `reconcile`: an authorization whose PG outcome is still unknown after this long is
    /// a finding (the resolver's SLA). Default 60 s.
    #[serde(default = "default_unknown_sla")]
    pub reconcile_unknown_sla_seconds: u64,
    #[serde(default)]
    pub http: payrail_http::ServerConfig,
}

fn default_reconcile_chunk() -> u64 {
    1000
}

fn default_unknown_sla() -> u64 {
    60
}

fn default_instance() -> String {
    "ledger".into()
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Events applied per batch at most. Default 500.
    pub size_max: usize,
    /// How long to wait for more events before applying a partial batch. Default 10 ms.
    pub linger_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            size_max: 500,
            linger_ms: 10,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        if self.shards.is_empty() || self.batch.size_max == 0 {
            return Err("at least one shard and a batch size of at least 1 are required".into());
        }
        Ok(())
    }
}

pub struct Metrics {
    registry: Registry,
    applied: IntCounter,
    duplicates: IntCounter,
    poison: IntCounter,
    batch_size: Histogram,
}

impl Metrics {
    fn new(instance: &str) -> Result<Self, prometheus::Error> {
        let registry = payrail_core::telemetry::registry("ledger", instance)?;
        let r = &registry;
        let applied = register(
            r,
            IntCounter::new(
                "ledger_events_applied_total",
                "events written to the ledger",
            )?,
        );
        let duplicates = register(
            r,
            IntCounter::new(
                "ledger_events_duplicate_total",
                "redelivered events skipped",
            )?,
        );
        let poison = register(
            r,
            IntCounter::new("ledger_events_poison_total", "messages sent to payment.dlq")?,
        );
        let batch_size = register(
            r,
            Histogram::with_opts(
                HistogramOpts::new("ledger_batch_size", "events per ledger batch")
                    .buckets(vec![1.0, 4.0, 16.0, 64.0, 128.0, 256.0, 500.0]),
            )?,
        );
        Ok(Self {
            registry,
            applied,
            duplicates,
            poison,
            batch_size,
        })
    }
}

pub struct Ledger {
    pub config: Config,
    /// One bounded pool per shard; the ledger lives beside the payments it describes.
    pub shards: Arc<Shards>,
    /// For poison messages.
    pub producer: payrail_kafka::Producer,
    pub metrics: Metrics,
    /// Whether the broker answers (`/health`), probed on `producer`'s connection.
    pub broker: Arc<payrail_kafka::BrokerProbe>,
}

struct Ops(Arc<Ledger>);

impl Handler for Ops {
    fn handle(&self, request: &Request<'_>, response: &mut Response) {
        match (request.method, request.path) {
            ("GET", "/health") => {
                response.json(200, &payrail_kafka::probe::health_body(&self.0.broker))
            }
            ("GET", "/metrics") => {
                response.json(
                    200,
                    &payrail_core::telemetry::render(&self.0.metrics.registry),
                );
                response.content_type("text/plain; version=0.0.4");
            }
            _ => error_body::write(response, 404, "NOT_FOUND", "no such route", None),
        }
    }
}

fn main() {
    if let Err(error) = run() {
        eprintln!("ledger: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Some((args, config)) = payrail_core::config::startup::<Config>("ledger")? else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ledger")
        .enable_all()
        .build()?;
    let shards = Arc::new(Shards::new(&config.shards, &config.pool)?);
    let producer = payrail_kafka::Producer::create(&config.kafka.producer("ledger-dlq"))
        .map_err(|e| format!("kafka producer: {e}"))?;
    let ledger = Arc::new(Ledger {
        metrics: Metrics::new(&config.instance)?,
        shards: shards.clone(),
        producer,
        broker: Arc::default(),
        config: config.clone(),
    });
    match args.command.as_deref() {
        None => {}
        Some("reconcile") => {
            let pg = config.pg_base_url.as_deref().map(|url| {
                payrail_pg::PgClient::new(url, Duration::from_secs(30), Duration::from_secs(2), 4)
            });
            let (report, ok) = runtime.block_on(reconcile::reconcile(&ledger, pg.as_ref()))?;
            for line in report {
                println!("{line}");
            }
            if !ok {
                std::process::exit(1);
            }
            return Ok(());
        }
        Some(other) => return Err(format!("unknown command {other} (known: reconcile)").into()),
    }
    runtime.block_on(async {
        for shard in shards.numbers() {
            while let Err(error) = payrail_db::migrate::migrate_shard(&shards, shard).await {
                tracing::warn!(shard, %error, "schema not ready; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    runtime.spawn(consumer::run(ledger.clone()));
    let probed = Arc::downgrade(&ledger);
    runtime.spawn(
        ledger
            .broker
            .clone()
            .run(payrail_kafka::topics::AUTHORIZED, move || {
                probed.upgrade().map(|l| l.producer.clone())
            }),
    );
    payrail_http::runtime::configure_may(1, 16 * 1024);
    let listener = payrail_http::server::bind(&config.listen)?;
    tracing::info!(listen = %listener.local_addr()?, "ledger running");
    let server = payrail_http::server::serve(listener, config.http.clone(), Arc::new(Ops(ledger)));
    let _ = server.join();
    drop(runtime);
    Ok(())
}
