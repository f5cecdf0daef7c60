//! The harness behind `cargo xtask` and the integration tests.
//!
//! - [`process`]: child processes with log files, stopped on drop (or detached for `up`).
//! - [`mariadb`]: a MariaDB server of our own (data dir, port, durable settings).
//! - [`redis`]: a Redis server of our own.
//! - [`kafka`]: a Kafka-protocol broker of our own (nisshi) and a test consumer.
//! - [`services`]: config files and processes for pg-mock and ingest.
//! - [`http`]: a small blocking HTTP/1.1 client that can also send malformed bytes.
//! - [`stack`]: a per-test stack: its own databases on the shared shards, its own Redis,
//!   pg-mock and ingest instances, all on free loopback ports.

pub mod appliance;
pub mod bench;
pub mod bench_report;
pub mod certs;
pub mod chaos;
pub mod hosts;
pub mod http;
pub mod kafka;
pub mod load;
pub mod mariadb;
pub mod mcp;
pub mod process;
pub mod redis;
pub mod services;
pub mod soak;
pub mod sqlproxy;
pub mod stack;

use std::path::PathBuf;

/// The workspace root (two levels above this crate's manifest).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where release binaries are.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("PAYRAIL_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release"))
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// Runs `program` with `args` to completion; an error names the command and its stderr.
pub fn run_tool(program: &str, args: &[&str]) -> Result<(), String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    check()
}

/// A valid authorize body.
pub fn authorize_body(merchant_id: &str, amount: i64, key: &str) -> serde_json::Value {
    serde_json::json!({ "merchantId": merchant_id, "amount": amount, "currency": "KRW", "idempotencyKey": key })
}

/// Stands in for the settlement worker (the event pipeline's job): marks a capture as
/// settled the way the worker will, so refund paths can be tested on their own.
pub fn settle(stack: &stack::TestStack, payment_id: u64) {
    let shard = (payment_id >> 42) as usize;
    stack.rows(
        shard,
        &format!("UPDATE payment SET status = 'CAPTURED', captured_amount = capture_requested_amount WHERE payment_id = {payment_id} AND status = 'CAPTURE_REQUESTED'"),
    );
}

/// The sum of the samples of metric `name` in a Prometheus text exposition whose labels
/// contain `labels` (for instance `shard="1"`; `""` for every sample); `None` when no
/// sample matches.
pub fn metric_value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && l.contains(labels)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// Every metric name the Grafana dashboards query (`nixos-modules/dashboards/*.json`),
/// histogram suffixes removed, for checking them against a running stack's `/metrics`.
pub fn dashboard_metrics() -> std::collections::BTreeSet<String> {
    let dir = repo_root().join("nixos-modules/dashboards");
    let mut names = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("payrail_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            names.insert(base.to_owned());
            rest = &tail[end..];
        }
    }
    names
}

/// Every panel query of the Grafana dashboards: (dashboard file, panel title, expr).
pub fn dashboard_queries() -> Vec<(String, String, String)> {
    let dir = repo_root().join("nixos-modules/dashboards");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let file = entry.file_name().to_string_lossy().into_owned();
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    let title = panel["title"].as_str().unwrap_or("").to_owned();
                    queries.push((file.clone(), title, expr.to_owned()));
                }
            }
        }
    }
    queries.sort();
    queries
}

/// `bytes` random bytes from /dev/urandom as hex (test tokens and passwords).
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut buffer);
    }
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod metric_value_tests {
    #[test]
    fn sums_the_matching_samples_of_one_metric() {
        let text = "# HELP x_total y\nx_total{shard=\"1\"} 2\nx_total{shard=\"2\"} 3\nx_total_other 7\nplain 4\n";
        assert_eq!(super::metric_value(text, "x_total", ""), Some(5.0));
        assert_eq!(
            super::metric_value(text, "x_total", "shard=\"2\""),
            Some(3.0)
        );
        assert_eq!(super::metric_value(text, "plain", ""), Some(4.0));
        assert_eq!(super::metric_value(text, "x_total", "shard=\"9\""), None);
    }
}
