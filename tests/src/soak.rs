//! `cargo xtask soak [--minutes M] [--rate R] [--retention S]`: the reference's full flow
//! for a long time, to show what grows and what does not (issue 13's soak).
//!
//! It runs on an appliance of its own (two-host mirror `prsk`, durable defaults: nisshi on
//! SQLite, full-size shards with `innodb_flush_log_at_trx_commit = 1`, merchant keys on),
//! with the retention of published outbox events and finished jobs shortened from 7 days
//! to `S` seconds (default 300), so that it applies within the run. k6 runs in one-minute
//! segments; after each, while the next starts, it records:
//! - that minute's k6 figures (iterations, dropped, failures, p95, p99) and the server CPU
//!   per iteration (`/proc/<pid>/stat` of every appliance process);
//! - the RSS of every process;
//! - the rows of every table of each shard (`COUNT(*)`), and each store's size on disk;
//! - the prepared statements each shard holds open (bounded when every call site's
//!   statement texts are).
//!
//! Then it waits for the drain, reconciles, and writes `soak-<time>.json` and `.md` with
//! SVG charts (RSS by process, rows by table) into `k6/results`. Idempotency records are
//! kept for at least 24 h (ingest refuses less) and payments, refunds and the ledger are
//! the business's records: those grow with the traffic by design, and the report says so.

use crate::appliance::Appliance;
use crate::bench::{self, Target};
use crate::bench_report::{line_chart, Line};
use crate::{repo_root, services, wait_until};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub struct Options {
    pub minutes: u32,
    /// Full-flow iterations per second offered.
    pub rate: u32,
    /// Seconds each k6 segment runs (60 for `cargo xtask soak`; shorter in the test).
    pub segment_seconds: u32,
    pub retention_seconds: u64,
    /// Full-size shards, as `cargo xtask up` runs them (false: test-sized, for a short
    /// run beside other tests).
    pub full_size: bool,
    /// Mirror namespaces' name and subnet, and the appliance's directory name.
    pub mirror: (String, u8),
    pub dir_name: String,
    pub out_dir: PathBuf,
}

/// Tables whose size a retention bounds (and which must therefore level off).
pub const RETAINED: [&str; 4] = [
    "outbox_event",
    "settlement_request",
    "refund_request",
    "void_request",
];

fn progress(text: &str) {
    eprintln!("[soak] {text}");
}

/// Bytes under `dir` (a store's data directory).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Rows of every table of every shard, summed over the shards, and the shards' and the
/// broker's size on disk in MB.
fn tables_and_disk(appliance: &Appliance) -> (BTreeMap<String, i64>, BTreeMap<String, f64>) {
    let mut rows = BTreeMap::new();
    let mut disk = BTreeMap::new();
    for (n, shard) in appliance.shards.iter().enumerate() {
        let tables = shard
            .sql(
                "information_schema",
                "SELECT table_name FROM tables WHERE table_schema = 'payrail' ORDER BY 1",
            )
            .unwrap_or_default();
        let counts = tables
            .iter()
            .filter_map(|r| r.first())
            .map(|t| format!("SELECT '{t}', COUNT(*) FROM `{t}`"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        if !counts.is_empty() {
            for row in shard.sql("payrail", &counts).unwrap_or_default() {
                if let [table, count] = &row[..] {
                    *rows.entry(table.clone()).or_default() += count.parse::<i64>().unwrap_or(0);
                }
            }
        }
        let mb = dir_bytes(&appliance.dir.join(format!("shard{}", n + 1))) as f64 / 1e6;
        disk.insert(format!("mariadb-shard{}", n + 1), mb);
    }
    disk.insert(
        "broker".into(),
        dir_bytes(&appliance.dir.join("broker")) as f64 / 1e6,
    );
    (rows, disk)
}

/// Prepared statements each shard's server holds open (`Prepared_stmt_count`). Every
/// statement text a client caches stays prepared on its connection, so this grows with
/// the number of distinct texts and stays flat once each call site has all of its own.
fn prepared_statements(appliance: &Appliance) -> BTreeMap<String, f64> {
    appliance
        .shards
        .iter()
        .enumerate()
        .map(|(n, shard)| {
            let count = shard
                .sql(
                    "information_schema",
                    "SELECT VARIABLE_VALUE FROM GLOBAL_STATUS WHERE VARIABLE_NAME = 'PREPARED_STMT_COUNT'",
                )
                .ok()
                .and_then(|rows| rows.first()?.first()?.parse::<f64>().ok())
                .unwrap_or(0.0);
            (format!("mariadb-shard{}", n + 1), count)
        })
        .collect()
}

fn rss_mb(procs: &[(String, u32)]) -> BTreeMap<String, f64> {
    procs
        .iter()
        .filter_map(|(name, pid)| {
            Some((
                name.clone(),
                bench::status_kb(*pid, "VmRSS")? as f64 / 1024.0,
            ))
        })
        .collect()
}

/// Runs the soak and writes its report; returns the JSON file's path.
pub fn run(options: &Options) -> Result<PathBuf, String> {
    let (mirror, appliance, procs) = Appliance::start_on_mirror(
        &options.mirror.0,
        options.mirror.1,
        &options.dir_name,
        crate::kafka::storage_engine(),
        |l| {
            l.merchant_auth = true;
            l.test_sizing = !options.full_size;
            l.retention_seconds = Some(options.retention_seconds);
        },
    )?;
    let result = soak(options, &appliance, procs, &mirror);
    appliance.finish_on_mirror(mirror, result.is_ok(), "soak");
    result
}

fn soak(
    options: &Options,
    appliance: &Appliance,
    procs: Vec<(String, u32)>,
    mirror: &crate::hosts::TwoHost,
) -> Result<PathBuf, String> {
    let token = std::fs::read_to_string(appliance.admin_token_file())
        .map_err(|e| format!("admin token: {e}"))?;
    let mut target = Target {
        gateway: appliance.layout.gateway(),
        procs,
        client: Some(mirror),
        admin_token: token.trim().to_owned(),
        ledger_config: appliance.dir.join("ledger/ledger.toml"),
        config: Vec::new(),
        keys_file: None,
        counted: Vec::new(),
    };
    target.keys_file = bench::merchant_keys(&target)?;
    let started = SystemTime::now();
    let stamp = bench::utc_stamp(started);
    let work = repo_root().join("target/soak").join(&stamp);
    let clock = Instant::now();
    let mut samples = Vec::new();
    let sample = |minute: u32, k6: Value| {
        let (rows, disk) = tables_and_disk(appliance);
        json!({
            "minute": minute,
            "atSeconds": clock.elapsed().as_secs(),
            "k6": k6,
            "rssMB": rss_mb(&target.procs),
            "rows": rows,
            "diskMB": disk,
            "preparedStatements": prepared_statements(appliance),
        })
    };
    samples.push(sample(0, Value::Null));
    for minute in 1..=options.minutes {
        let (run, cpu, _) = bench::measure_cpu(&target.procs, || {
            bench::k6(
                &target,
                "full-flow.js",
                options.rate,
                options.segment_seconds,
                &work,
                false,
            )
        });
        let run = run?;
        let m = |name: &str, stat: &str| bench::metric(&run.summary, name, stat);
        let iterations = m("iterations", "count").max(1.0);
        let k6 = json!({
            "iterations": m("iterations", "count"),
            "dropped": m("dropped_iterations", "count"),
            "failedRate": m("http_req_failed", "value"),
            "p95": m("http_req_duration", "p(95)"),
            "p99": m("http_req_duration", "p(99)"),
            "thresholdsPassed": run.thresholds_ok,
            "serverCpuMsPerIteration": cpu.values().sum::<f64>() * 1000.0 / iterations,
        });
        let s = sample(minute, k6);
        progress(&format!(
            "minute {minute}/{}: {} iterations, p99 {:.0} ms, outbox rows {}, RSS ingest-1 {:.0} MB",
            options.minutes,
            s["k6"]["iterations"],
            s["k6"]["p99"].as_f64().unwrap_or(0.0),
            s["rows"]["outbox_event"],
            s["rssMB"]["ingest-1"].as_f64().unwrap_or(0.0),
        ));
        samples.push(s);
    }
    let drained = bench::drain_seconds(&target, Duration::from_secs(300));
    let mut report = String::new();
    let reconciled = wait_until(Duration::from_secs(120), || {
        let (ok, text) = services::reconcile(&target.ledger_config);
        report = text;
        ok
    });
    progress(&format!(
        "drained in {drained:?} s, reconciled: {reconciled}"
    ));
    let result = json!({
        "time": stamp,
        "machine": bench::machine(),
        "versions": bench::versions(),
        "config": {
            "minutes": options.minutes,
            "segmentSeconds": options.segment_seconds,
            "rate": options.rate,
            "retentionSeconds": options.retention_seconds,
            "purgeIntervalSeconds": (options.retention_seconds / 10).max(1),
            "layout": "two-host mirror (vm1 netns, vm2 host, k6 in the client netns)",
            "broker storage": crate::kafka::storage_engine(),
            "merchant_auth": "required",
            "MariaDB": format!(
                "2 shards, innodb_flush_log_at_trx_commit = 1, {}",
                if options.full_size { "full size" } else { "test-sized" }
            ),
        },
        "samples": samples,
        "drainSeconds": drained,
        "reconciled": reconciled,
        "reconcileReport": (!reconciled).then_some(report),
    });
    std::fs::create_dir_all(&options.out_dir).map_err(|e| e.to_string())?;
    let json_file = options.out_dir.join(format!("soak-{stamp}.json"));
    std::fs::write(
        &json_file,
        serde_json::to_string_pretty(&result).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    write_report(&options.out_dir, &stamp, &result)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(json_file)
}

/// Per series of `field` (`rssMB`, `rows`, `diskMB`): (name, value each minute).
fn series(samples: &[Value], field: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples {
        let minute = s["minute"].as_f64().unwrap_or(0.0);
        for (name, v) in s[field].as_object().into_iter().flatten() {
            if let Some(v) = v.as_f64() {
                out.entry(name.clone()).or_default().push((minute, v));
            }
        }
    }
    out
}

/// The value at the run's middle, at its end, and the change between them in % of the
/// former: what "flat" means in the report (a purge cycle's sawtooth included).
pub fn second_half_growth(points: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let last = points.last()?;
    let middle = points.iter().find(|p| p.0 >= last.0 / 2.0)?;
    (middle.1 > 0.0).then(|| (middle.1, last.1, (last.1 - middle.1) / middle.1 * 100.0))
}

const COLOURS: [&str; 12] = [
    "#4a7ab5", "#c0392b", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#2c3e50", "#f39c12",
    "#7f8c8d", "#e84393", "#0984e3", "#6ab04c",
];

fn chart(
    title: &str,
    unit: &str,
    lines: &BTreeMap<String, Vec<(f64, f64)>>,
    pick: impl Fn(&str) -> bool,
) -> String {
    let picked: Vec<Line> = lines
        .iter()
        .filter(|(name, _)| pick(name))
        .enumerate()
        .map(|(i, (name, points))| (name.as_str(), COLOURS[i % COLOURS.len()], points.clone()))
        .collect();
    line_chart(title, unit, "min", &picked)
}

/// Writes `soak-<stamp>.md` and its SVG charts into `dir`.
pub fn write_report(dir: &Path, stamp: &str, r: &Value) -> Result<(), String> {
    let samples = r["samples"].as_array().cloned().unwrap_or_default();
    let rss = series(&samples, "rssMB");
    let rows = series(&samples, "rows");
    let disk = series(&samples, "diskMB");
    let prepared = series(&samples, "preparedStatements");
    let base = format!("soak-{stamp}");
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    let store = |n: &str| n.starts_with("mariadb") || n == "broker" || n == "redis";
    write(
        &format!("{base}-rss-services.svg"),
        chart("RSS of each service (MB)", "MB", &rss, |n| !store(n)),
    )?;
    write(
        &format!("{base}-rss-stores.svg"),
        chart("RSS of each store (MB)", "MB", &rss, store),
    )?;
    write(
        &format!("{base}-rows-retained.svg"),
        chart("rows under retention (both shards)", "rows", &rows, |n| {
            RETAINED.contains(&n)
        }),
    )?;
    write(
        &format!("{base}-rows-records.svg"),
        chart("rows kept as records (both shards)", "rows", &rows, |n| {
            !RETAINED.contains(&n) && rows[n].iter().any(|p| p.1 > 100.0)
        }),
    )?;
    let c = &r["config"];
    let m = &r["machine"];
    let mut md = String::new();
    let _ = writeln!(md, "# Soak {stamp}\n");
    let _ = writeln!(
        md,
        "`cargo xtask soak --minutes {} --rate {} --retention {}`: k6 `full-flow.js` at {} it/s in {}-second segments; retention of published outbox events and finished jobs {} s (purge every {} s).\n",
        c["minutes"], c["rate"], c["retentionSeconds"], c["rate"], c["segmentSeconds"], c["retentionSeconds"], c["purgeIntervalSeconds"]
    );
    let _ = writeln!(
        md,
        "## Machine\n\n{} ({} cores, {} GiB), kernel {}; payrail {}; {}.\n",
        m["cpuModel"].as_str().unwrap_or("?"),
        m["cores"],
        m["memoryGiB"],
        m["kernel"].as_str().unwrap_or("?"),
        r["versions"]["payrail"].as_str().unwrap_or("?"),
        r["versions"]["broker"].as_str().unwrap_or("?"),
    );
    for (k, v) in c.as_object().into_iter().flatten() {
        if let Some(v) = v.as_str() {
            let _ = writeln!(md, "- {k}: {v}");
        }
    }
    let _ = writeln!(
        md,
        "\nAfter the load: drained in {} s, reconciliation clean: {}.\n",
        r["drainSeconds"]
            .as_f64()
            .map_or("—".into(), |d| format!("{d:.1}")),
        r["reconciled"]
    );
    let _ = writeln!(md, "## Growth over the second half\n");
    let _ = writeln!(
        md,
        "Change from the middle of the run to its end (a table under retention saws between purges).\n\n| series | at the middle | at the end | change |\n|---|---|---|---|"
    );
    for (kind, lines) in [
        ("RSS MB", &rss),
        ("rows", &rows),
        ("disk MB", &disk),
        ("prepared statements", &prepared),
    ] {
        for (name, points) in lines {
            let Some((middle, last, growth)) = second_half_growth(points) else {
                continue;
            };
            let _ = writeln!(
                md,
                "| {kind}: {name}{} | {middle:.0} | {last:.0} | {growth:+.1} % |",
                if kind == "rows" && RETAINED.contains(&name.as_str()) {
                    " (retained)"
                } else {
                    ""
                }
            );
        }
    }
    let _ = writeln!(md, "\n## Charts\n");
    for (file, alt) in [
        ("rss-services", "RSS of each service"),
        ("rss-stores", "RSS of each store"),
        ("rows-retained", "rows under retention"),
        ("rows-records", "rows kept as records"),
    ] {
        let _ = writeln!(md, "![{alt}]({base}-{file}.svg)\n");
    }
    let _ = writeln!(
        md,
        "## Each minute\n\n| minute | iterations | dropped | failed | p95 ms | p99 ms | server CPU ms/it | outbox rows | job rows | payment rows | RSS services MB | RSS stores MB |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in &samples {
        let k = &s["k6"];
        let f =
            |v: &Value, digits: usize| v.as_f64().map_or("—".into(), |x| format!("{x:.digits$}"));
        let jobs: i64 = RETAINED[1..]
            .iter()
            .map(|t| s["rows"][*t].as_i64().unwrap_or(0))
            .sum();
        let (services_mb, stores_mb) =
            s["rssMB"]
                .as_object()
                .into_iter()
                .flatten()
                .fold((0.0, 0.0), |(a, b), (n, v)| {
                    let v = v.as_f64().unwrap_or(0.0);
                    if store(n) {
                        (a, b + v)
                    } else {
                        (a + v, b)
                    }
                });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {jobs} | {} | {services_mb:.0} | {stores_mb:.0} |",
            s["minute"],
            f(&k["iterations"], 0),
            f(&k["dropped"], 0),
            k["failedRate"].as_f64().map_or("—".into(), |x| format!("{:.2} %", x * 100.0)),
            f(&k["p95"], 1),
            f(&k["p99"], 1),
            f(&k["serverCpuMsPerIteration"], 2),
            s["rows"]["outbox_event"],
            s["rows"]["payment"],
        );
    }
    write(&format!("{base}.md"), md)
}

#[cfg(test)]
mod tests {
    use super::second_half_growth;

    #[test]
    fn growth_is_measured_over_the_second_half() {
        let flat = [
            (0.0, 0.0),
            (1.0, 50.0),
            (2.0, 100.0),
            (3.0, 104.0),
            (4.0, 95.0),
        ];
        assert_eq!(second_half_growth(&flat), Some((100.0, 95.0, -5.0)));
        let linear = [
            (0.0, 0.0),
            (1.0, 10.0),
            (2.0, 20.0),
            (3.0, 30.0),
            (4.0, 40.0),
        ];
        assert_eq!(second_half_growth(&linear), Some((20.0, 40.0, 100.0)));
        assert_eq!(second_half_growth(&[]), None);
    }
}
