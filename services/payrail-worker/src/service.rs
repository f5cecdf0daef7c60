//! A worker process: config, runtime, intake, schedulers, `/health` and `/metrics`.

use crate::config::WorkerConfig;
use crate::job::JobKind;
use crate::metrics::Metrics;
use payrail_db::sequence::Sequences;
use payrail_db::Shards;
use payrail_http::{error_body, Handler, Request, Response};
use payrail_pg::PgClient;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

pub struct Worker<K: JobKind> {
    pub config: WorkerConfig,
    /// One bounded pool per shard.
    pub shards: Arc<Shards>,
    /// Event ids for the events this worker writes.
    pub sequences: Arc<Sequences>,
    pub pg: PgClient,
    /// Bounds PG calls in flight, so a slow PG turns into a queue of due jobs in the
    /// database rather than unbounded tasks in memory. One per process: every job kind
    /// the process runs draws from it.
    pub pg_slots: Arc<tokio::sync::Semaphore>,
    /// For poison messages, which go straight to the DLQ topic.
    pub producer: payrail_kafka::Producer,
    pub metrics: Metrics,
    /// Wakes this process's outbox relay after an outcome wrote events.
    pub outbox: Arc<payrail_outbox::Outbox>,
    /// Wakes a shard's scheduler when the intake persisted a job.
    pub arrivals: Vec<tokio::sync::Notify>,
    kind: PhantomData<K>,
}

impl<K: JobKind> Worker<K> {
    pub fn job_arrived(&self, shard: u16) {
        if let Some(n) = self.arrivals.get(usize::from(shard).wrapping_sub(1)) {
            n.notify_one();
        }
    }
}

/// The worker's `/health` and `/metrics`, over every job kind the process runs.
struct Ops {
    registries: Vec<prometheus::Registry>,
    /// Whether the broker answers, probed on the relay's producer.
    broker: Arc<payrail_kafka::BrokerProbe>,
}

impl Handler for Ops {
    fn handle(&self, request: &Request<'_>, response: &mut Response) {
        match (request.method, request.path) {
            ("GET", "/health") => {
                response.json(200, &payrail_kafka::probe::health_body(&self.broker))
            }
            ("GET", "/metrics") => {
                response.json(200, &payrail_core::telemetry::render_all(&self.registries));
                response.content_type("text/plain; version=0.0.4");
            }
            _ => error_body::write(response, 404, "NOT_FOUND", "no such route", None),
        }
    }
}

/// One job kind a worker process runs: how to start it and how to replay its DLQ.
pub struct KindEntry {
    pub service: &'static str,
    pub dlq_topic: &'static str,
    start: fn(
        &tokio::runtime::Runtime,
        &WorkerConfig,
        &Shared,
    ) -> Result<prometheus::Registry, String>,
    replay: fn(&tokio::runtime::Runtime, &WorkerConfig) -> Result<usize, String>,
}

/// The entry of kind `K`.
pub fn entry<K: JobKind>() -> KindEntry {
    KindEntry {
        service: K::SERVICE,
        dlq_topic: K::DLQ_TOPIC,
        start: start::<K>,
        replay: |runtime, config| {
            runtime.block_on(crate::replay::replay::<K>(config, Duration::from_secs(3)))
        },
    }
}

/// What the job kinds of one process share: pools, id blocks, the PG client and its
/// in-flight bound, the DLQ producer.
pub struct Shared {
    shards: Arc<Shards>,
    sequences: Arc<Sequences>,
    pg: PgClient,
    pg_slots: Arc<tokio::sync::Semaphore>,
    producer: payrail_kafka::Producer,
    outbox: Arc<payrail_outbox::Outbox>,
}

/// Starts kind `K`'s intake and per-shard schedulers; returns its metrics.
fn start<K: JobKind>(
    runtime: &tokio::runtime::Runtime,
    config: &WorkerConfig,
    shared: &Shared,
) -> Result<prometheus::Registry, String> {
    let shards = &shared.shards;
    let worker = Arc::new(Worker::<K> {
        sequences: shared.sequences.clone(),
        pg: shared.pg.clone(),
        pg_slots: shared.pg_slots.clone(),
        producer: shared.producer.clone(),
        outbox: shared.outbox.clone(),
        metrics: Metrics::new(K::SERVICE, &config.instance).map_err(|e| e.to_string())?,
        arrivals: shards
            .numbers()
            .map(|_| tokio::sync::Notify::new())
            .collect(),
        shards: shards.clone(),
        config: config.clone(),
        kind: PhantomData,
    });
    runtime.spawn(crate::intake::run(worker.clone()));
    for shard in shards.numbers() {
        runtime.spawn(crate::scheduler::run(worker.clone(), shard));
    }
    runtime.spawn(crate::scheduler::purge_loop(worker.clone()));
    Ok(worker.metrics.registry.clone())
}

/// Runs the worker `K` until the process ends.
pub fn run<K: JobKind>() -> Result<(), Box<dyn std::error::Error>> {
    run_kinds(K::SERVICE, &[entry::<K>()])
}

/// Runs a worker process `service` with every kind in `kinds` (the settlement worker runs
/// captures and voids), sharing config, pools and the `/metrics` endpoint.
pub fn run_kinds(
    service: &'static str,
    kinds: &[KindEntry],
) -> Result<(), Box<dyn std::error::Error>> {
    let Some((args, config)) = payrail_core::config::startup::<WorkerConfig>(service)? else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(service)
        .enable_all()
        .build()?;
    match args.command.as_deref() {
        None => {}
        Some("replay-dlq") => {
            for kind in kinds {
                let count = (kind.replay)(&runtime, &config)?;
                println!(
                    "{}: replayed {count} message(s) from {}",
                    kind.service, kind.dlq_topic
                );
            }
            return Ok(());
        }
        Some(other) => return Err(format!("unknown command {other} (known: replay-dlq)").into()),
    }
    let shards = Arc::new(Shards::new(&config.shards, &config.pool)?);
    runtime.block_on(async {
        for shard in shards.numbers() {
            while let Err(error) = payrail_db::migrate::migrate_shard(&shards, shard).await {
                tracing::warn!(shard, %error, "schema not ready; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let producer =
        payrail_kafka::Producer::create(&config.kafka.producer(&format!("{service}-dlq")))
            .map_err(|e| format!("kafka producer: {e}"))?;
    let shared = Shared {
        sequences: Arc::new(Sequences::new(shards.count(), 1000)),
        pg: PgClient::new(
            &config.pg.base_url,
            Duration::from_millis(config.pg.timeout_ms),
            Duration::from_millis(500),
            config.scheduler.concurrency_max,
        ),
        pg_slots: Arc::new(tokio::sync::Semaphore::new(
            config.scheduler.concurrency_max,
        )),
        producer,
        outbox: payrail_outbox::Outbox::new(shards.count()),
        shards,
    };
    let mut registries = Vec::with_capacity(kinds.len() + 1);
    // The events this process writes (captured, refunded, dead letters) are published by
    // a relay of its own as well as ingest's: one of them holds each shard's lease, so
    // settlement results reach Kafka with every ingest down.
    let relay_registry = payrail_core::telemetry::registry(service, &config.instance)?;
    let relay = runtime.block_on(async {
        payrail_outbox::Relay::new(
            shared.shards.clone(),
            config.relay.clone(),
            &config.kafka,
            &config.instance,
            &relay_registry,
            shared.outbox.clone(),
        )
    })?;
    runtime.block_on(async { relay.start() });
    registries.push(relay_registry);
    for kind in kinds {
        registries.push((kind.start)(&runtime, &config, &shared)?);
    }
    payrail_http::runtime::configure_may(1, 16 * 1024);
    let listener = payrail_http::server::bind(&config.listen)?;
    tracing::info!(listen = %listener.local_addr()?, service, "worker running");
    let ops = Ops {
        registries,
        broker: relay.broker.clone(),
    };
    let server = payrail_http::server::serve(listener, config.http.clone(), Arc::new(ops));
    let _ = server.join();
    drop(runtime);
    Ok(())
}
