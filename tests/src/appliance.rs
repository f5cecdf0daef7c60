//! The whole appliance placed on two hosts as `system.md` places it, the same way
//! `vm1.nix` and `vm2.nix` do:
//!
//! - vm1 (state host): MariaDB shard 1, Redis, the Kafka-protocol broker, ingest #1,
//!   monitoring (the admin API and dashboard), Prometheus;
//! - vm2 (app host): MariaDB shard 2, gateway, ingest #2, ledger, settlement-worker,
//!   refund-worker, pg-mock.
//!
//! With [`crate::hosts::TwoHost`] vm1 is a network namespace; without it (single-namespace
//! layout) both hosts are 127.0.0.1. `cargo xtask up` and the two-host test both start
//! the stack through [`Appliance::start`].

use crate::kafka::Broker;
use crate::mariadb::MariaDb;
use crate::process::Proc;
use crate::redis::Redis;
use crate::services::{self, IngestSettings, ShardAddress, WorkerSettings};
use std::path::{Path, PathBuf};

/// Every process's pid by name, as [`Appliance::start`] reports them.
pub type Pids = Vec<(String, u32)>;

/// pg-mock's behaviour on the local stack and the mirrored tests: the reference's uniform
/// 5–15 ms per call.
pub const PG_BEHAVIOUR: &str = "latency_min_ms = 5\nlatency_max_ms = 15";

/// Where each service listens. Ports are the same on every layout; hosts differ.
#[derive(Debug, Clone)]
pub struct Layout {
    pub vm1: String,
    pub vm2: String,
    /// Extra gateway listen addresses (e.g. `127.0.0.1:8080` for the local stack).
    pub gateway_extra_listen: Vec<String>,
    /// Appended to pg-mock's config (latency, failure rates).
    pub pg_behaviour: String,
    /// The broker's storage engine (`crate::kafka::SQLITE` or `MEMORY`).
    pub kafka_storage: &'static str,
    /// `merchant_auth = "required"` on both ingest instances (the default of `cargo xtask
    /// up`); false is `"off"`, for reference clients that send no key.
    pub merchant_auth: bool,
    /// Appended to the gateway's config (e.g. `[auth_throttle]` for the attack suite).
    pub gateway_toml: String,
    /// MariaDB and Redis speak only TLS, each host's with a certificate for its address
    /// from a CA of the appliance's own (`pki/`), and every service trusts that CA alone:
    /// `payrail.hosts.storeTls` of the NixOS hosts (where loopback links stay plain; here
    /// every link uses TLS).
    pub store_tls: bool,
    /// Shards sized for tests ([`crate::mariadb::test_sizing_args`]); `cargo xtask up` and
    /// the bench keep the full size.
    pub test_sizing: bool,
    /// Shortens the retention of published outbox events and finished jobs (7 days by
    /// default) to this many seconds, with a purge every tenth of it, so that a soak sees
    /// it apply.
    pub retention_seconds: Option<u64>,
}

impl Layout {
    /// The `[relay]` (and, for a worker, `[retention]`) tables for
    /// [`Layout::retention_seconds`]; empty when it is not set.
    fn retention_toml(&self, worker: bool) -> String {
        let Some(seconds) = self.retention_seconds else {
            return String::new();
        };
        let every = (seconds / 10).max(1);
        let mut toml =
            format!("[relay]\nretention_seconds = {seconds}\npurge_interval_seconds = {every}\n");
        if worker {
            toml += &format!(
                "[retention]\nfinished_job_seconds = {seconds}\npurge_interval_seconds = {every}\n"
            );
        }
        toml
    }
}

/// `PAYRAIL_STORE_TLS=on` runs MariaDB and Redis TLS-only ([`Layout::store_tls`]), to
/// measure what TLS to the stores costs.
pub fn store_tls_from_env() -> bool {
    std::env::var("PAYRAIL_STORE_TLS").is_ok_and(|v| v == "on")
}

/// `PAYRAIL_MERCHANT_AUTH=off` turns merchant API keys off (reference clients).
pub fn merchant_auth_from_env() -> bool {
    std::env::var("PAYRAIL_MERCHANT_AUTH").map_or(true, |v| v != "off")
}

pub const SHARD_PORTS: [u16; 2] = [3307, 3308];
pub const REDIS_PORT: u16 = 6380;
pub const KAFKA_PORT: u16 = 9092;
pub const PG_PORT: u16 = 8090;
pub const GATEWAY_PORT: u16 = 8080;
pub const INGEST_PORTS: [u16; 2] = [8081, 8082];
/// The admin API (monitoring), on vm1.
pub const MONITORING_PORT: u16 = 8087;
/// Prometheus, on vm1 as in vm1.nix.
pub const PROMETHEUS_PORT: u16 = 9090;
/// `/health` and `/metrics` of the workers and the ledger (all on vm2).
pub const WORKER_PORTS: [(&str, u16); 3] = [
    ("settlement-worker", 8084),
    ("refund-worker", 8085),
    ("ledger", 8086),
];

impl Layout {
    pub fn shard_host(&self, number: u16) -> &str {
        if number == 1 {
            &self.vm1
        } else {
            &self.vm2
        }
    }
    pub fn gateway(&self) -> String {
        format!("{}:{GATEWAY_PORT}", self.vm2)
    }
    pub fn ingest(&self, number: usize) -> String {
        let host = if number == 1 { &self.vm1 } else { &self.vm2 };
        format!("{host}:{}", INGEST_PORTS[number - 1])
    }
    pub fn prometheus(&self) -> String {
        format!("{}:{PROMETHEUS_PORT}", self.vm1)
    }
    pub fn monitoring(&self) -> String {
        format!("{}:{MONITORING_PORT}", self.vm1)
    }
    pub fn pg(&self) -> String {
        format!("{}:{PG_PORT}", self.vm2)
    }
    pub fn worker(&self, service: &str) -> Option<String> {
        WORKER_PORTS
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, port)| format!("{}:{port}", self.vm2))
    }
    pub fn kafka(&self) -> String {
        format!("{}:{KAFKA_PORT}", self.vm1)
    }
    /// Both shards, reached over TLS with `tls_ca_file` (see [`Layout::store_tls`]).
    pub fn shards(&self, tls_ca_file: Option<&Path>) -> Vec<ShardAddress> {
        (1..=2u16)
            .map(|number| ShardAddress {
                number,
                host: self.shard_host(number).to_owned(),
                port: SHARD_PORTS[usize::from(number) - 1],
                database: "payrail".into(),
                tls_ca_file: tls_ca_file.map(Path::to_owned),
            })
            .collect()
    }
}

/// The CA and each host's certificate (for its address) of [`Layout::store_tls`].
struct StorePki {
    ca: crate::certs::Ca,
    vm1: crate::certs::ServerCert,
    vm2: crate::certs::ServerCert,
    vm1_address: String,
}

impl StorePki {
    fn create(dir: &Path, layout: &Layout) -> Result<Self, String> {
        let ca = crate::certs::ca(dir, "ca")?;
        Ok(Self {
            vm1: crate::certs::server(dir, &ca, "vm1", &layout.vm1)?,
            vm2: crate::certs::server(dir, &ca, "vm2", &layout.vm2)?,
            ca,
            vm1_address: layout.vm1.clone(),
        })
    }

    /// The certificate of the host at `address`.
    fn host(&self, address: &str) -> &crate::certs::ServerCert {
        if address == self.vm1_address {
            &self.vm1
        } else {
            &self.vm2
        }
    }
}

/// monitoring's tables for this layout: the broker, every instance to scrape, the
/// reconcile command, the k6 runner (the repo's scenarios, against the gateway) and the
/// drill (SIGSTOP / SIGCONT of the broker process).
fn monitoring_toml(layout: &Layout, dir: &Path, broker_pid: u32) -> String {
    let mut instances: Vec<(String, String)> = (1..=2)
        .map(|n| (format!("ingest-{n}"), layout.ingest(n)))
        .collect();
    instances.push(("gateway".into(), layout.gateway()));
    instances.extend(
        WORKER_PORTS
            .iter()
            .filter_map(|(s, _)| Some(((*s).to_owned(), layout.worker(s)?))),
    );
    let instances: Vec<String> = instances
        .into_iter()
        .map(|(name, addr)| format!("{{ name = \"{name}\", url = \"http://{addr}\" }}"))
        .collect();
    let ledger = crate::bin_dir().join("ledger");
    format!(
        "reconcile_command = [\"{}\", \"--config\", \"{}\", \"reconcile\"]\n\
         instances = [{}]\n\n\
         [kafka]\nbootstrap_servers = \"{}\"\n\n\
         [k6]\nscenarios_dir = \"{}\"\nbase_url = \"http://{}\"\nadmin_token_file = \"{}\"\n\n\
         [drill]\nstop_broker = [\"kill\", \"-STOP\", \"{broker_pid}\"]\nresume_broker = [\"kill\", \"-CONT\", \"{broker_pid}\"]\nbase_url = \"http://{}\"\n",
        ledger.display(),
        dir.join("ledger/ledger.toml").display(),
        instances.join(", "),
        layout.kafka(),
        crate::repo_root().join("k6").display(),
        layout.gateway(),
        dir.join("monitoring/admin-token").display(),
        layout.gateway(),
    )
}

pub struct Appliance {
    pub layout: Layout,
    pub dir: PathBuf,
    pub password_file: PathBuf,
    pub shards: Vec<MariaDb>,
    /// Every process but the shards, by name, in start order.
    pub procs: Vec<(String, Proc)>,
}

impl Appliance {
    /// Starts everything under `dir`, in dependency order, each process waited for.
    /// `on_start` sees each (name, pid) as soon as it runs (for a pid file).
    pub fn start(
        dir: &Path,
        layout: Layout,
        password: &str,
        password_file: &Path,
        mut on_start: impl FnMut(&str, u32) -> Result<(), String>,
    ) -> Result<Self, String> {
        let mut appliance = Self {
            layout: layout.clone(),
            dir: dir.to_owned(),
            password_file: password_file.to_owned(),
            shards: Vec::new(),
            procs: Vec::new(),
        };
        let pki = if layout.store_tls {
            Some(StorePki::create(&dir.join("pki"), &layout)?)
        } else {
            None
        };
        let ca = pki.as_ref().map(|p| p.ca.cert.clone());
        let shards = layout.shards(ca.as_deref());
        for shard in &shards {
            let mut args = match &pki {
                Some(p) => {
                    let server = p.host(&shard.host);
                    crate::mariadb::tls_only_args(&server.cert, &server.key)
                }
                None => Vec::new(),
            };
            if layout.test_sizing {
                args.extend(crate::mariadb::test_sizing_args());
            }
            let db = MariaDb::start_with(
                &dir.join(format!("shard{}", shard.number)),
                shard.port,
                &shard.host,
                password,
                args,
            )?;
            db.root_sql("CREATE DATABASE IF NOT EXISTS payrail")?;
            on_start(
                &format!("mariadb-shard{}", shard.number),
                db.pid().unwrap_or(0),
            )?;
            appliance.shards.push(db);
        }
        let redis = match &pki {
            Some(p) => {
                let server = p.host(&layout.vm1);
                Redis::start_tls(
                    &dir.join("redis"),
                    REDIS_PORT,
                    &layout.vm1,
                    &server.cert,
                    &server.key,
                    &p.ca.cert,
                )?
            }
            None => Redis::start(&dir.join("redis"), REDIS_PORT, &layout.vm1)?,
        };
        let redis_url = redis.url();
        appliance.add("redis", redis.into_proc(), &mut on_start)?;
        let broker = Broker::start_with(
            &dir.join("broker"),
            KAFKA_PORT,
            &layout.vm1,
            &layout.vm1,
            layout.kafka_storage,
        )?;
        appliance.add("broker", broker.into_proc(), &mut on_start)?;
        let pg_dir = dir.join("pg-mock");
        std::fs::create_dir_all(&pg_dir).map_err(|e| e.to_string())?;
        let pg = services::start_pg_mock(&pg_dir, &layout.pg(), &layout.pg_behaviour)?;
        appliance.add("pg-mock", Some(pg), &mut on_start)?;
        // The keyed hash's secret, shared by ingest (checks) and monitoring (issues keys).
        let api_key_hash = dir.join("api-key-hash");
        if !api_key_hash.exists() {
            std::fs::write(&api_key_hash, format!("{}\n", crate::random_hex(32)))
                .map_err(|e| e.to_string())?;
        }
        for number in 1..=2 {
            let settings = IngestSettings {
                instance: format!("ingest-{number}"),
                listen: layout.ingest(number),
                shards: shards.clone(),
                db_password_file: password_file.to_owned(),
                redis_url: redis_url.clone(),
                redis_key_prefix: "payrail:".into(),
                pg_url: format!("http://{}", layout.pg()),
                api_key_hash_file: layout.merchant_auth.then(|| api_key_hash.clone()),
                redis_tls_ca_file: ca.clone(),
                extra_toml: format!(
                    "[kafka]\nbootstrap_servers = \"{}\"\n{}",
                    layout.kafka(),
                    layout.retention_toml(false)
                ),
            };
            let ingest_dir = dir.join(&settings.instance);
            std::fs::create_dir_all(&ingest_dir).map_err(|e| e.to_string())?;
            let proc = services::start_ingest(&ingest_dir, &settings)?;
            appliance.add(&settings.instance, Some(proc), &mut on_start)?;
        }
        for (service, _) in WORKER_PORTS {
            let settings = WorkerSettings {
                service: service.into(),
                listen: layout.worker(service).unwrap_or_default(),
                shards: shards.clone(),
                db_password_file: password_file.to_owned(),
                bootstrap_servers: layout.kafka(),
                kafka_toml: String::new(),
                pg_url: format!("http://{}", layout.pg()),
                // The ledger relays nothing and keeps no jobs.
                extra_toml: if service == "ledger" {
                    String::new()
                } else {
                    layout.retention_toml(true)
                },
            };
            let worker_dir = dir.join(service);
            std::fs::create_dir_all(&worker_dir).map_err(|e| e.to_string())?;
            let (proc, _) = if service == "ledger" {
                services::start_ledger(&worker_dir, &settings)?
            } else {
                services::start_worker(&worker_dir, &settings)?
            };
            appliance.add(service, Some(proc), &mut on_start)?;
        }
        let monitoring_dir = dir.join("monitoring");
        std::fs::create_dir_all(&monitoring_dir).map_err(|e| e.to_string())?;
        let token_file = appliance.admin_token_file();
        let read_token_file = appliance.read_token_file();
        for file in [&token_file, &read_token_file] {
            if !file.exists() {
                std::fs::write(file, format!("{}\n", crate::random_hex(32)))
                    .map_err(|e| e.to_string())?;
            }
        }
        let ingest1 = IngestSettings {
            instance: "monitoring".into(),
            listen: layout.monitoring(),
            shards: shards.clone(),
            db_password_file: password_file.to_owned(),
            redis_url: redis_url.clone(),
            redis_key_prefix: "payrail:".into(),
            pg_url: String::new(),
            api_key_hash_file: None,
            redis_tls_ca_file: ca.clone(),
            extra_toml: String::new(),
        };
        let broker_pid = appliance
            .procs
            .iter()
            .find(|(n, _)| n == "broker")
            .and_then(|(_, p)| p.pid())
            .unwrap_or(0);
        let monitoring = services::start_monitoring(
            &monitoring_dir,
            &layout.monitoring(),
            &token_file,
            &ingest1,
            &format!(
                "{}\n[[admin_tokens]]\nname = \"mcp\"\nscope = \"read\"\nfile = \"{}\"\n\n[api_keys]\nhash_key_file = \"{}\"\n",
                monitoring_toml(&layout, dir, broker_pid),
                read_token_file.display(),
                api_key_hash.display()
            ),
        )?;
        appliance.add("monitoring", Some(monitoring), &mut on_start)?;
        let gateway_dir = dir.join("gateway");
        std::fs::create_dir_all(&gateway_dir).map_err(|e| e.to_string())?;
        let mut listen = vec![layout.gateway()];
        listen.extend(layout.gateway_extra_listen.iter().cloned());
        let gateway = services::start_gateway(
            &gateway_dir,
            &listen,
            &[
                format!("http://{}", layout.ingest(1)),
                format!("http://{}", layout.ingest(2)),
            ],
            &[format!("http://{}", layout.monitoring())],
            &layout.gateway_toml,
        )?;
        appliance.add("gateway", Some(gateway), &mut on_start)?;
        let mut targets: Vec<(String, String)> = (1..=2)
            .map(|n| ("ingest".to_owned(), layout.ingest(n)))
            .collect();
        targets.push(("gateway".into(), layout.gateway()));
        targets.extend(
            WORKER_PORTS
                .iter()
                .filter_map(|(s, _)| Some(((*s).to_owned(), layout.worker(s)?))),
        );
        let prometheus =
            services::start_prometheus(&dir.join("prometheus"), &layout.prometheus(), &targets)?;
        appliance.add("prometheus", Some(prometheus), &mut on_start)?;
        Ok(appliance)
    }

    fn add(
        &mut self,
        name: &str,
        proc: Option<Proc>,
        on_start: &mut impl FnMut(&str, u32) -> Result<(), String>,
    ) -> Result<(), String> {
        if let Some(proc) = proc {
            on_start(name, proc.pid().unwrap_or(0))?;
            self.procs.push((name.to_owned(), proc));
        }
        Ok(())
    }

    /// A test's own appliance on a new two-host mirror (namespaces `name`, subnet
    /// 10.77.`subnet`.0/24), state under `target/<dir_name>-<pid>`, pg-mock at 5–15 ms, the
    /// broker on `kafka_storage`, merchant auth off unless `tune` turns it on. Returns the mirror, the appliance and every process's pid
    /// by name (the shards included).
    pub fn start_on_mirror(
        name: &str,
        subnet: u8,
        dir_name: &str,
        kafka_storage: &'static str,
        tune: impl FnOnce(&mut Layout),
    ) -> Result<(crate::hosts::TwoHost, Self, Pids), String> {
        let mirror = crate::hosts::TwoHost::create(name, subnet)?;
        let dir = crate::repo_root().join(format!("target/{dir_name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let password = format!("{dir_name}-test");
        let password_file = dir.join("db-password");
        std::fs::write(&password_file, format!("{password}\n")).map_err(|e| e.to_string())?;
        let mut layout = Layout {
            vm1: mirror.vm1.clone(),
            vm2: mirror.vm2.clone(),
            gateway_extra_listen: Vec::new(),
            pg_behaviour: PG_BEHAVIOUR.into(),
            kafka_storage,
            merchant_auth: false,
            gateway_toml: String::new(),
            store_tls: false,
            test_sizing: true,
            retention_seconds: None,
        };
        tune(&mut layout);
        let mut pids = Vec::new();
        let appliance = Self::start(&dir, layout, &password, &password_file, |name, pid| {
            pids.push((name.to_owned(), pid));
            Ok(())
        })?;
        Ok((mirror, appliance, pids))
    }

    /// Starts service `name` again after a crash, from the config and into the log it was
    /// started with, without waiting for it: a dependency may be down, and the service
    /// must come up on its own once it returns.
    pub fn restart(&mut self, name: &str) -> Result<(), String> {
        let (binary, listen) = match name {
            "ingest-1" => ("ingest", self.layout.ingest(1)),
            "ingest-2" => ("ingest", self.layout.ingest(2)),
            "gateway" => ("gateway", self.layout.gateway()),
            "monitoring" => ("monitoring", self.layout.monitoring()),
            service => (
                service,
                self.layout
                    .worker(service)
                    .ok_or_else(|| format!("no service {service} to restart"))?,
            ),
        };
        let dir = self.dir.join(name);
        let proc = services::spawn(
            name,
            binary,
            &listen,
            &dir.join(format!("{name}.toml")),
            &dir.join(format!("{name}.log")),
        )?;
        match self.procs.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = proc,
            None => self.procs.push((name.to_owned(), proc)),
        }
        Ok(())
    }

    /// Runs `ledger reconcile` against this appliance: (clean?, report).
    pub fn reconcile(&self) -> (bool, String) {
        services::reconcile(&self.dir.join("ledger/ledger.toml"))
    }

    /// The admin API's write-scoped bearer token, `operator` (created on first start).
    pub fn admin_token_file(&self) -> PathBuf {
        self.dir.join("monitoring").join("admin-token")
    }

    /// The read-only admin token, `mcp` (created on first start).
    pub fn read_token_file(&self) -> PathBuf {
        self.dir.join("monitoring").join("read-token")
    }

    /// A new API key for `merchant`, made with `monitoring create-key` (the CLI path of a
    /// fresh appliance). Returns the key.
    pub fn create_key(&self, merchant: &str) -> Result<String, String> {
        let output = std::process::Command::new(crate::bin_dir().join("monitoring"))
            .arg("--config")
            .arg(self.dir.join("monitoring/monitoring.toml"))
            .args(["create-key", merchant])
            .output()
            .map_err(|e| format!("monitoring create-key: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "monitoring create-key: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let body: serde_json::Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("monitoring create-key printed no JSON: {e}"))?;
        body["key"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("monitoring create-key: no key in {body}"))
    }

    pub fn proc_mut(&mut self, name: &str) -> Option<&mut Proc> {
        self.procs
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
    }

    /// Leaves every process running (the local stack outlives `xtask up`).
    pub fn detach(self) {
        for (_, proc) in self.procs {
            proc.detach();
        }
        for shard in self.shards {
            shard.detach();
        }
    }

    /// Stops services before the stores they write to.
    pub fn stop(mut self) {
        while let Some((_, mut proc)) = self.procs.pop() {
            proc.stop();
        }
        for mut shard in self.shards.drain(..) {
            if let Some(p) = shard.proc_mut() {
                p.stop();
            }
        }
    }

    /// Ends a run on the mirror (chaos, soak): stops everything and removes the mirror;
    /// the appliance's directory goes when the run `passed`, else it is kept for its logs
    /// and data, and `what` says where.
    pub fn finish_on_mirror(self, mirror: crate::hosts::TwoHost, passed: bool, what: &str) {
        let dir = self.dir.clone();
        self.stop();
        mirror.destroy();
        if passed {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            println!(
                "{what}: the appliance's logs and data are kept in {}",
                dir.display()
            );
        }
    }
}
