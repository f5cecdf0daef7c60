//! Config files and processes for payrail's own services.

use crate::process::Proc;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ShardAddress {
    pub number: u16,
    pub host: String,
    pub port: u16,
    pub database: String,
    /// The CA of a TLS-only shard (its connections then use TLS).
    pub tls_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub instance: String,
    pub listen: String,
    pub shards: Vec<ShardAddress>,
    pub db_password_file: PathBuf,
    pub redis_url: String,
    pub redis_key_prefix: String,
    /// The CA of a TLS-only Redis (with a `rediss://` url).
    pub redis_tls_ca_file: Option<PathBuf>,
    pub pg_url: String,
    /// The API key hash secret: `Some` runs with `merchant_auth = "required"`, `None` with
    /// `"off"` (tests that name their merchants, as reference clients do).
    pub api_key_hash_file: Option<PathBuf>,
    /// Extra TOML tables appended verbatim (test overrides such as `[rate_limits.authorize]`).
    pub extra_toml: String,
}

/// The `[[shards]]` tables every service's config carries.
pub fn shards_toml(shards: &[ShardAddress], password_file: &Path) -> String {
    shards
        .iter()
        .map(|shard| {
            format!(
                "[[shards]]\nnumber = {}\nhost = \"{}\"\nport = {}\ndatabase = \"{}\"\nuser = \"payrail\"\npassword_file = \"{}\"\n{}\n",
                shard.number,
                shard.host,
                shard.port,
                shard.database,
                password_file.display(),
                tls_ca_line(shard.tls_ca_file.as_deref()),
            )
        })
        .collect()
}

/// `tls_ca_file = "…"` and a newline, or nothing.
fn tls_ca_line(file: Option<&Path>) -> String {
    file.map(|f| format!("tls_ca_file = \"{}\"\n", f.display()))
        .unwrap_or_default()
}

pub fn ingest_config(s: &IngestSettings) -> String {
    let auth = match &s.api_key_hash_file {
        Some(file) => format!(
            "merchant_auth = \"required\"\n\n[api_keys]\nhash_key_file = \"{}\"\n",
            file.display()
        ),
        None => "merchant_auth = \"off\"\n".to_owned(),
    };
    let mut out = format!(
        "listen = \"{}\"\ninstance = \"{}\"\n{auth}\n[redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\n{}\n[pg]\nbase_url = \"{}\"\n\n",
        s.listen,
        s.instance,
        s.redis_url,
        s.redis_key_prefix,
        tls_ca_line(s.redis_tls_ca_file.as_deref()),
        s.pg_url
    );
    out.push_str(&shards_toml(&s.shards, &s.db_password_file));
    out.push_str(&s.extra_toml);
    out
}

pub fn pg_mock_config(listen: &str, journal: &Path, behaviour_toml: &str) -> String {
    format!(
        "listen = \"{listen}\"\njournal_path = \"{}\"\n\n[behaviour]\n{behaviour_toml}\n",
        journal.display()
    )
}

/// Waits until `GET /health` on `addr` answers 200.
pub fn wait_healthy(addr: &str, timeout: Duration) -> bool {
    crate::wait_until(timeout, || {
        crate::http::request(addr, "GET", "/health", &[], None)
            .map(|r| r.status == 200)
            .unwrap_or(false)
    })
}

pub fn start_pg_mock(dir: &Path, listen: &str, behaviour_toml: &str) -> Result<Proc, String> {
    let config = dir.join("pg-mock.toml");
    std::fs::write(
        &config,
        pg_mock_config(listen, &dir.join("pg-journal.jsonl"), behaviour_toml),
    )
    .map_err(|e| e.to_string())?;
    launch(
        "pg-mock",
        "pg-mock",
        listen,
        &config,
        &dir.join("pg-mock.log"),
    )
}

/// Starts `binary --config config` on the host that owns `listen` (see [`crate::hosts`]),
/// logging to `log`, and waits until its `/health` answers.
pub fn launch(
    name: &str,
    binary: &str,
    listen: &str,
    config: &Path,
    log: &Path,
) -> Result<Proc, String> {
    let proc = spawn(name, binary, listen, config, log)?;
    if !wait_healthy(listen, Duration::from_secs(60)) {
        return Err(format!(
            "{name} did not become healthy; see {}",
            log.display()
        ));
    }
    Ok(proc)
}

/// Starts `binary --config config` without waiting for it.
pub fn spawn(
    name: &str,
    binary: &str,
    listen: &str,
    config: &Path,
    log: &Path,
) -> Result<Proc, String> {
    let mut command = crate::hosts::command(listen, crate::bin_dir().join(binary));
    command.arg("--config").arg(config);
    Proc::spawn(name, command, log).map_err(|e| format!("{name}: {e} (run cargo build --release)"))
}

pub fn start_ingest(dir: &Path, settings: &IngestSettings) -> Result<Proc, String> {
    let config = write_ingest_config(dir, settings)?;
    launch(
        &settings.instance,
        "ingest",
        &settings.listen,
        &config,
        &ingest_log(dir, settings),
    )
}

/// Starts an ingest instance without waiting for it to be healthy (one that is not
/// meant to reach its stores).
pub fn spawn_ingest(dir: &Path, settings: &IngestSettings) -> Result<Proc, String> {
    let config = write_ingest_config(dir, settings)?;
    spawn(
        &settings.instance,
        "ingest",
        &settings.listen,
        &config,
        &ingest_log(dir, settings),
    )
}

fn write_ingest_config(dir: &Path, settings: &IngestSettings) -> Result<PathBuf, String> {
    let config = dir.join(format!("{}.toml", settings.instance));
    std::fs::write(&config, ingest_config(settings)).map_err(|e| e.to_string())?;
    Ok(config)
}

pub fn ingest_log(dir: &Path, settings: &IngestSettings) -> PathBuf {
    dir.join(format!("{}.log", settings.instance))
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// `settlement-worker` or `refund-worker`: the binary and the instance name.
    pub service: String,
    pub listen: String,
    pub shards: Vec<ShardAddress>,
    pub db_password_file: PathBuf,
    pub bootstrap_servers: String,
    /// Extra lines for the `[kafka]` table.
    pub kafka_toml: String,
    pub pg_url: String,
    /// Extra TOML tables appended verbatim (`[retry]`, `[scheduler]`).
    pub extra_toml: String,
}

pub fn worker_config(s: &WorkerSettings) -> String {
    let mut out = format!(
        "listen = \"{}\"\ninstance = \"{}\"\n\n[kafka]\nbootstrap_servers = \"{}\"\n{}\n\n[pg]\nbase_url = \"{}\"\n\n",
        s.listen, s.service, s.bootstrap_servers, s.kafka_toml, s.pg_url
    );
    out.push_str(&shards_toml(&s.shards, &s.db_password_file));
    out.push_str(&s.extra_toml);
    out
}

/// Writes the worker's config to `dir/<service>.toml` and starts it.
pub fn start_worker(dir: &Path, settings: &WorkerSettings) -> Result<(Proc, PathBuf), String> {
    let config = dir.join(format!("{}.toml", settings.service));
    std::fs::write(&config, worker_config(settings)).map_err(|e| e.to_string())?;
    let log = dir.join(format!("{}.log", settings.service));
    let proc = launch(
        &settings.service,
        &settings.service,
        &settings.listen,
        &config,
        &log,
    )?;
    Ok((proc, config))
}

pub fn ledger_config(s: &WorkerSettings) -> String {
    let mut out = format!(
        "listen = \"{}\"\ninstance = \"ledger\"\npg_base_url = \"{}\"\n\n[kafka]\nbootstrap_servers = \"{}\"\n{}\n\n",
        s.listen, s.pg_url, s.bootstrap_servers, s.kafka_toml
    );
    out.push_str(&shards_toml(&s.shards, &s.db_password_file));
    out
}

/// Writes the ledger's config to `dir/ledger.toml` and starts it.
pub fn start_ledger(dir: &Path, settings: &WorkerSettings) -> Result<(Proc, PathBuf), String> {
    let config = dir.join("ledger.toml");
    std::fs::write(&config, ledger_config(settings)).map_err(|e| e.to_string())?;
    let proc = launch(
        "ledger",
        "ledger",
        &settings.listen,
        &config,
        &dir.join("ledger.log"),
    )?;
    Ok((proc, config))
}

/// Writes the gateway's config to `dir/gateway.toml` and starts it on the host of the
/// first `listen` address. `extra_toml` is appended verbatim (`[health]`, `[upstream]`).
pub fn start_gateway(
    dir: &Path,
    listen: &[String],
    payments: &[String],
    admin: &[String],
    extra_toml: &str,
) -> Result<Proc, String> {
    let quoted = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [{}]\npayments = [{}]\nadmin = [{}]\ncors_allowed_origins = [\"http://127.0.0.1:8080\"]\n{extra_toml}\n",
            quoted(listen),
            quoted(payments),
            quoted(admin)
        ),
    )
    .map_err(|e| e.to_string())?;
    launch(
        "gateway",
        "gateway",
        &listen[0],
        &config,
        &dir.join("gateway.log"),
    )
}

/// Writes monitoring's config to `dir/monitoring.toml` and starts it. `token_file` holds
/// the write-scoped admin token named `operator` (more tokens can come in `extra_toml`);
/// writes are audit-logged to `dir/audit.jsonl`.
/// `extra_toml` holds the optional tables (kafka, instances, k6, drill, ...).
pub fn start_monitoring(
    dir: &Path,
    listen: &str,
    token_file: &Path,
    ingest: &IngestSettings,
    extra_toml: &str,
) -> Result<Proc, String> {
    let config = dir.join("monitoring.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\naudit_log = \"{}\"\nstate_dir = \"{}\"\n{extra_toml}\n\n[[admin_tokens]]\nname = \"operator\"\nscope = \"write\"\nfile = \"{}\"\n\n[redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\n{}\n{}",
            dir.join("audit.jsonl").display(),
            dir.join("state").display(),
            token_file.display(),
            ingest.redis_url,
            ingest.redis_key_prefix,
            tls_ca_line(ingest.redis_tls_ca_file.as_deref()),
            shards_toml(&ingest.shards, &ingest.db_password_file)
        ),
    )
    .map_err(|e| e.to_string())?;
    launch(
        "monitoring",
        "monitoring",
        listen,
        &config,
        &dir.join("monitoring.log"),
    )
}

/// Runs `ledger --config <config> reconcile`: (clean?, its report).
pub fn reconcile(ledger_config: &Path) -> (bool, String) {
    let (clean, report, _) = reconcile_measured(ledger_config);
    (clean, report)
}

/// [`reconcile`], also returning the process's peak resident memory (`VmHWM`, KiB),
/// read from `/proc` until it exits.
pub fn reconcile_measured(ledger_config: &Path) -> (bool, String, u64) {
    let out = ledger_config.with_extension("reconcile.out");
    let file = std::fs::File::create(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let mut child = std::process::Command::new(crate::bin_dir().join("ledger"))
        .arg("--config")
        .arg(ledger_config)
        .arg("reconcile")
        .stdout(file.try_clone().unwrap_or_else(|e| panic!("{e}")))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("ledger reconcile: {e}"));
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Some(hwm) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak_kib = peak_kib.max(hwm);
        }
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let report = std::fs::read_to_string(&out).unwrap_or_default();
    (status.success(), report, peak_kib)
}

/// Starts Prometheus (Debian's `prometheus`) on `listen`, scraping each (job, address)
/// every 5 s as vm1.nix's does (every second cost the idle appliance 0.5 % of a core more
/// in Prometheus and the scraped services); waits until it is ready.
pub fn start_prometheus(
    dir: &Path,
    listen: &str,
    targets: &[(String, String)],
) -> Result<Proc, String> {
    std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
    let mut config = String::from(
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\nscrape_configs:\n",
    );
    let mut jobs: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (job, address) in targets {
        jobs.entry(job.as_str())
            .or_default()
            .push(format!("\"{address}\""));
    }
    for (job, addresses) in jobs {
        config.push_str(&format!(
            "  - job_name: \"{job}\"\n    static_configs:\n      - targets: [{}]\n",
            addresses.join(", ")
        ));
    }
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config).map_err(|e| e.to_string())?;
    let mut command = crate::hosts::command(listen, "prometheus");
    command
        .arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={listen}"))
        .arg("--storage.tsdb.retention.time=1d");
    let proc = Proc::spawn("prometheus", command, &dir.join("prometheus.log"))
        .map_err(|e| format!("prometheus: {e} (apt-get install prometheus)"))?;
    let ready = crate::wait_until(Duration::from_secs(60), || {
        crate::http::request(listen, "GET", "/-/ready", &[], None).is_ok_and(|r| r.status == 200)
    });
    if !ready {
        return Err(format!(
            "prometheus not ready; see {}",
            dir.join("prometheus.log").display()
        ));
    }
    Ok(proc)
}

/// Runs a PromQL instant query; the result vector.
pub fn prometheus_query(listen: &str, expr: &str) -> Result<Vec<serde_json::Value>, String> {
    let encoded = payrail_core::url::encode_component(expr);
    let reply = crate::http::request(
        listen,
        "GET",
        &format!("/api/v1/query?query={encoded}"),
        &[],
        None,
    )
    .map_err(|e| e.to_string())?;
    let body = reply.json();
    if body["status"] != "success" {
        return Err(format!("{expr}: {body}"));
    }
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}
