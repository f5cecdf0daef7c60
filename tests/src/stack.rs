//! A stack per test: its own databases on the shared MariaDB shards (started once by
//! `cargo xtask test`), its own Redis, pg-mock and ingest processes on free ports. Tests
//! never share state, so they run in parallel.

use crate::mariadb::MariaDb;
use crate::process::Proc;
use crate::redis::Redis;
use crate::services::{self, IngestSettings, ShardAddress};
use std::path::PathBuf;

/// Counts a shard's unpublished outbox events.
const UNPUBLISHED: &str = "SELECT COUNT(*) FROM outbox_event WHERE published_at IS NULL";

pub struct Options {
    pub ingest_instances: usize,
    /// TOML tables appended to every ingest config.
    pub ingest_toml: String,
    /// Lines of pg-mock's `[behaviour]` table.
    pub pg_behaviour: String,
    /// Start two MariaDB servers for this stack alone (for tests that stop a shard).
    pub own_shards: bool,
    /// Own shards and Redis that speak only TLS, with certificates from a CA of the
    /// stack's own (`pki/ca.pem`); ingest trusts that CA alone.
    pub store_tls: bool,
    /// Start a broker and let ingest's outbox relay publish to it.
    pub kafka: bool,
    /// Extra lines for ingest's `[kafka]` table.
    pub kafka_toml: String,
    /// Start the settlement and refund workers (implies `kafka`).
    pub workers: bool,
    /// TOML tables appended to both workers' configs.
    pub worker_toml: String,
    /// Extra lines for the workers' `[kafka]` table.
    pub worker_kafka_toml: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ingest_instances: 1,
            ingest_toml: String::new(),
            pg_behaviour: "latency_min_ms = 1\nlatency_max_ms = 3".into(),
            own_shards: false,
            store_tls: false,
            kafka: false,
            kafka_toml: String::new(),
            workers: false,
            worker_toml: String::new(),
            worker_kafka_toml: String::new(),
        }
    }
}

pub struct TestStack {
    pub name: String,
    pub dir: PathBuf,
    pub database: String,
    pub shards: Vec<MariaDb>,
    pub redis: Redis,
    /// The CA the shards' and Redis's certificates chain to, with [`Options::store_tls`].
    pub store_ca: Option<PathBuf>,
    pub pg: Proc,
    pub pg_addr: String,
    pub ingests: Vec<Proc>,
    pub addrs: Vec<String>,
    pub settings: Vec<IngestSettings>,
    pub broker: Option<crate::kafka::Broker>,
    /// Worker processes with their config files, by service name.
    pub workers: Vec<(Proc, PathBuf)>,
    pub worker_settings: Vec<services::WorkerSettings>,
}

/// `PAYRAIL_TEST_SHARDS="3307=/dir/shard1,3308=/dir/shard2"` and
/// `PAYRAIL_TEST_DB_PASSWORD_FILE`, set by `cargo xtask test`.
fn shared_shards() -> (Vec<MariaDb>, PathBuf) {
    let spec = std::env::var("PAYRAIL_TEST_SHARDS").unwrap_or_else(|_| {
        panic!("PAYRAIL_TEST_SHARDS is not set: run the integration tests with `cargo xtask test`")
    });
    let password_file = PathBuf::from(
        std::env::var("PAYRAIL_TEST_DB_PASSWORD_FILE").unwrap_or_else(|_| {
            panic!("PAYRAIL_TEST_DB_PASSWORD_FILE is not set: use `cargo xtask test`")
        }),
    );
    let password = std::fs::read_to_string(&password_file)
        .unwrap_or_default()
        .trim()
        .to_owned();
    let shards = spec
        .split(',')
        .map(|entry| {
            let (port, dir) = entry
                .split_once('=')
                .unwrap_or_else(|| panic!("bad PAYRAIL_TEST_SHARDS entry {entry}"));
            MariaDb::attach(
                &PathBuf::from(dir),
                port.parse()
                    .unwrap_or_else(|_| panic!("bad port in {entry}")),
                &password,
            )
        })
        .collect();
    (shards, password_file)
}

impl TestStack {
    pub fn start(name: &str) -> Self {
        Self::start_with(name, Options::default())
    }

    pub fn start_with(name: &str, options: Options) -> Self {
        let dir = crate::repo_root().join("target/test-stacks").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        // With store_tls: one CA, and a certificate for 127.0.0.1 the shards and Redis share.
        let pki = options.store_tls.then(|| {
            let pki = dir.join("pki");
            let ca = crate::certs::ca(&pki, "ca").unwrap_or_else(|e| panic!("{e}"));
            let server = crate::certs::server(&pki, &ca, "store", "127.0.0.1")
                .unwrap_or_else(|e| panic!("{e}"));
            (ca, server)
        });
        let (shards, password_file) = if options.own_shards || options.store_tls {
            let password_file = dir.join("db-password");
            std::fs::write(&password_file, "payrail-own\n").unwrap_or_else(|e| panic!("{e}"));
            let shards = (1..=2)
                .map(|n| {
                    let mut args = crate::mariadb::test_sizing_args();
                    if let Some((_, server)) = &pki {
                        args.extend(crate::mariadb::tls_only_args(&server.cert, &server.key));
                    }
                    MariaDb::start_with(
                        &dir.join(format!("shard{n}")),
                        crate::free_port(),
                        "127.0.0.1",
                        "payrail-own",
                        args,
                    )
                    .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect();
            (shards, password_file)
        } else {
            shared_shards()
        };
        let database = format!("t_{name}");
        for shard in &shards {
            shard
                .root_sql(&format!(
                    "DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database}"
                ))
                .unwrap_or_else(|e| panic!("create database {database}: {e}"));
        }
        let redis = match &pki {
            None => Redis::start(&dir, crate::free_port(), "127.0.0.1"),
            Some((ca, server)) => Redis::start_tls(
                &dir,
                crate::free_port(),
                "127.0.0.1",
                &server.cert,
                &server.key,
                &ca.cert,
            ),
        }
        .unwrap_or_else(|e| panic!("{e}"));
        let store_ca = pki.map(|(ca, _)| ca.cert);
        let pg_addr = format!("127.0.0.1:{}", crate::free_port());
        let pg = services::start_pg_mock(&dir, &pg_addr, &options.pg_behaviour)
            .unwrap_or_else(|e| panic!("{e}"));
        let broker = (options.kafka || options.workers).then(|| {
            crate::kafka::Broker::start(
                &dir.join("broker"),
                crate::free_port(),
                "127.0.0.1",
                "127.0.0.1",
            )
            .unwrap_or_else(|e| panic!("{e}"))
        });
        let kafka_toml = broker
            .as_ref()
            .map(|b| {
                format!(
                    "\n[kafka]\nbootstrap_servers = \"{}\"\n{}\n",
                    b.bootstrap(),
                    options.kafka_toml
                )
            })
            .unwrap_or_default();
        let mut stack = Self {
            name: name.to_owned(),
            dir,
            database,
            shards,
            redis,
            store_ca,
            pg,
            pg_addr,
            ingests: Vec::new(),
            addrs: Vec::new(),
            settings: Vec::new(),
            broker,
            workers: Vec::new(),
            worker_settings: Vec::new(),
        };
        for i in 1..=options.ingest_instances {
            let settings = IngestSettings {
                instance: format!("ingest-{i}"),
                listen: format!("127.0.0.1:{}", crate::free_port()),
                shards: stack
                    .shards
                    .iter()
                    .enumerate()
                    .map(|(n, s)| ShardAddress {
                        number: n as u16 + 1,
                        host: "127.0.0.1".into(),
                        port: s.port,
                        database: stack.database.clone(),
                        tls_ca_file: stack.store_ca.clone(),
                    })
                    .collect(),
                db_password_file: password_file.clone(),
                redis_url: stack.redis.url(),
                redis_key_prefix: "payrail:".into(),
                redis_tls_ca_file: stack.store_ca.clone(),
                pg_url: format!("http://{}", stack.pg_addr),
                // Tests on a bare stack name their merchants; the attack suite runs the
                // whole appliance with keys.
                api_key_hash_file: None,
                extra_toml: format!("{}{kafka_toml}", options.ingest_toml),
            };
            let proc =
                services::start_ingest(&stack.dir, &settings).unwrap_or_else(|e| panic!("{e}"));
            stack.addrs.push(settings.listen.clone());
            stack.settings.push(settings);
            stack.ingests.push(proc);
        }
        if options.workers {
            for service in ["settlement-worker", "refund-worker"] {
                let settings = services::WorkerSettings {
                    service: service.into(),
                    listen: format!("127.0.0.1:{}", crate::free_port()),
                    shards: stack.settings[0].shards.clone(),
                    db_password_file: password_file.clone(),
                    bootstrap_servers: stack
                        .broker
                        .as_ref()
                        .map(|b| b.bootstrap())
                        .unwrap_or_default(),
                    kafka_toml: options.worker_kafka_toml.clone(),
                    pg_url: format!("http://{}", stack.pg_addr),
                    extra_toml: options.worker_toml.clone(),
                };
                let started =
                    services::start_worker(&stack.dir, &settings).unwrap_or_else(|e| panic!("{e}"));
                stack.workers.push(started);
                stack.worker_settings.push(settings);
            }
            let mut settings = stack.worker_settings[0].clone();
            settings.service = "ledger".into();
            settings.listen = format!("127.0.0.1:{}", crate::free_port());
            let started =
                services::start_ledger(&stack.dir, &settings).unwrap_or_else(|e| panic!("{e}"));
            stack.workers.push(started);
            stack.worker_settings.push(settings);
        }
        stack
    }

    /// Runs `<service> replay-dlq` with the stack's worker config; returns its output.
    pub fn replay_dlq(&self, service: &str) -> String {
        let (_, config) = self
            .workers
            .iter()
            .find(|(p, _)| p.name == service)
            .unwrap_or_else(|| panic!("no worker {service}"));
        let output = std::process::Command::new(crate::bin_dir().join(service))
            .arg("--config")
            .arg(config)
            .arg("replay-dlq")
            .output()
            .unwrap_or_else(|e| panic!("{service} replay-dlq: {e}"));
        assert!(
            output.status.success(),
            "replay-dlq failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the ledger applied every ledger-relevant event in the outbox, then runs
    /// the reconciliation and asserts it is clean.
    pub fn assert_reconciled(&self) {
        let events = "SELECT COUNT(*) FROM outbox_event WHERE topic IN ('payment.authorized', 'payment.captured', 'payment.capture-failed', 'payment.voided', 'payment.refunded')";
        // Voids (a merchant's, an expiry's, a failed capture's release) finish at the PG
        // before the PG's books can agree.
        let caught_up = crate::wait_until(std::time::Duration::from_secs(60), || {
            self.outbox_backlog() == 0
                && self.count_all("SELECT COUNT(*) FROM void_request WHERE status = 'PENDING'") == 0
                && self.count_all("SELECT COUNT(*) FROM ledger_event") == self.count_all(events)
        });
        assert!(caught_up, "the ledger did not catch up with the outbox");
        let (clean, report) = self.reconcile();
        assert!(clean, "reconciliation must be clean:\n{report}");
    }

    /// Runs `ledger reconcile`: (clean?, report).
    pub fn reconcile(&self) -> (bool, String) {
        let (_, config) = self
            .workers
            .iter()
            .find(|(p, _)| p.name == "ledger")
            .unwrap_or_else(|| panic!("no ledger in this stack"));
        services::reconcile(config)
    }

    /// Payments per status over every shard.
    pub fn statuses(&self) -> std::collections::BTreeMap<String, i64> {
        let mut out = std::collections::BTreeMap::new();
        for shard in 1..=self.shards.len() {
            for row in self.rows(
                shard,
                "SELECT status, COUNT(*) FROM payment GROUP BY status",
            ) {
                *out.entry(row[0].clone()).or_insert(0) += row[1].parse::<i64>().unwrap_or(0);
            }
        }
        out
    }

    /// Authorizes through the first ingest instance; asserts 200 and returns the payment id.
    pub fn authorize(&self, merchant: &str, amount: i64, key: &str) -> u64 {
        let reply = crate::http::post(
            self.addr(),
            "/api/payments/authorize",
            &crate::authorize_body(merchant, amount, key),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["paymentId"].as_u64().unwrap_or(0)
    }

    /// A payment's status as its shard has it ("" when there is no such row).
    pub fn status_of(&self, payment_id: u64) -> String {
        self.rows(
            (payment_id >> 42) as usize,
            &format!("SELECT status FROM payment WHERE payment_id = {payment_id}"),
        )
        .first()
        .map(|r| r[0].clone())
        .unwrap_or_default()
    }

    /// The first ingest instance's address.
    pub fn addr(&self) -> &str {
        &self.addrs[0]
    }

    /// `SELECT COUNT(*)`-style query on one shard (1-based) of this test's database.
    pub fn count(&self, shard: usize, sql: &str) -> i64 {
        self.shards[shard - 1].count(&self.database, sql)
    }

    /// The same count over every shard.
    pub fn count_all(&self, sql: &str) -> i64 {
        (1..=self.shards.len()).map(|s| self.count(s, sql)).sum()
    }

    pub fn rows(&self, shard: usize, sql: &str) -> Vec<Vec<String>> {
        self.shards[shard - 1]
            .sql(&self.database, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Unpublished outbox events over every shard.
    pub fn outbox_backlog(&self) -> i64 {
        self.count_all(UNPUBLISHED)
    }

    /// For a failure message when the outbox does not drain: the backlog per shard and
    /// the last warnings the services logged about relaying and the broker.
    pub fn relay_diagnostics(&self) -> String {
        let mut out: Vec<String> = (1..=self.shards.len())
            .map(|s| format!("shard {s}: {} unpublished", self.count(s, UNPUBLISHED)))
            .collect();
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| {
                    (l.contains("WARN") || l.contains("ERROR"))
                        && (l.contains("relay") || l.contains("kafka") || l.contains("breaker"))
                })
                .collect();
            let name = log.file_name().unwrap_or_default().to_string_lossy();
            out.extend(
                lines[lines.len().saturating_sub(10)..]
                    .iter()
                    .map(|l| format!("{name}: {l}")),
            );
        }
        out.join("\n")
    }

    /// Every event id the outbox holds for `topic`, over every shard.
    pub fn outbox_event_ids(&self, topic: &str) -> std::collections::BTreeSet<u64> {
        (1..=self.shards.len())
            .flat_map(|s| {
                self.rows(
                    s,
                    &format!("SELECT event_id FROM outbox_event WHERE topic = '{topic}'"),
                )
            })
            .filter_map(|row| row.first().and_then(|v| v.parse().ok()))
            .collect()
    }

    /// pg-mock's call counters: `{"calls":{"authorize":n,…},"failures":{…}}`.
    pub fn pg_stats(&self) -> serde_json::Value {
        crate::http::get(&self.pg_addr, "/v1/stats").json()
    }

    pub fn pg_records(&self, operation: &str) -> Vec<serde_json::Value> {
        crate::http::get(&self.pg_addr, &format!("/v1/records?operation={operation}")).json()
            ["records"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn pg_control(&self, control: serde_json::Value) {
        let reply = crate::http::post(&self.pg_addr, "/v1/control", &control);
        assert_eq!(reply.status, 200, "pg-mock control: {}", reply.text());
    }
}
