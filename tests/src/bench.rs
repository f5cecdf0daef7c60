//! `cargo xtask bench`: the appliance's performance, measured the same way every time, on
//! the running local stack (durable defaults: nisshi on SQLite, MariaDB with
//! `innodb_flush_log_at_trx_commit = 1`, pg-mock at 5–15 ms), k6 from the load client's
//! namespace when the two-host mirror is up.
//!
//! Phases (full / `--quick`):
//! 1. CPU per authorization: `k6/authorize.js` at a rate that does not saturate
//!    (500/s for 30 s / 100/s for 8 s); server CPU of every appliance process from
//!    `/proc/<pid>/stat` before and after, divided by the iterations;
//! 2. the reference's authorize run: 1,050/s for 60 s (skipped in quick mode);
//! 3. the reference's full flow: 300 it/s for 60 s (20 it/s for 8 s) with CPU per
//!    iteration, then the time until the pipeline has drained and reconciliation is clean;
//! 4. the highest authorize rate with p99 ≤ 50 ms and ≤ 0.1 % errors (open model, rates
//!    ×1.25 from 1,000/s, 15 s each; skipped in quick mode);
//! 5. idle CPU of the whole appliance (10 s / 3 s);
//! 6. peak and current RSS of every process.
//!
//! Phases 1 and 3 also count heap allocations per iteration in ingest and the gateway
//! (`payrail_heap_allocations_total` before and after, from their `/metrics`): ingest's
//! figure is its request path plus the relay publishing the request's events.
//!
//! It records the machine (CPU model, cores, memory, kernel), versions and configuration,
//! and writes `<out>/bench-<UTC time>.json` and `.md` with SVG charts (latency and
//! throughput over time, CPU per process), compared with the previous result in `<out>`
//! and with the reference system's published figures. Numbers hold only for the machine
//! they were measured on; the ratios within one run (CPU per payment by process) travel.

use crate::hosts::TwoHost;
use crate::{http, repo_root, services, wait_until};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the bench runs against.
#[derive(Clone)]
pub struct Target<'a> {
    /// The gateway as the load client reaches it (`host:port`).
    pub gateway: String,
    /// The appliance's processes by name (MariaDB shards, Redis, the broker, services).
    pub procs: Vec<(String, u32)>,
    /// The load client's namespace, when the two-host mirror runs.
    pub client: Option<&'a TwoHost>,
    /// The admin API's bearer token (drain checks through `/api/admin/stats`).
    pub admin_token: String,
    /// The ledger's config, for `ledger reconcile`.
    pub ledger_config: PathBuf,
    /// Facts about the configuration to record (broker storage, PG latency, layout).
    pub config: Vec<(String, String)>,
    /// k6's `KEYS_FILE` (set by [`run`] when merchant_auth is on).
    pub keys_file: Option<PathBuf>,
    /// Services that count their heap allocations: (name as in `procs`, `host:port` of
    /// their `/metrics`).
    pub counted: Vec<(String, String)>,
}

/// The services that count their allocations (both ingest instances and the gateway), as
/// [`Target::counted`] lists them for `layout`.
pub fn counted(layout: &crate::appliance::Layout) -> Vec<(String, String)> {
    vec![
        ("ingest-1".into(), layout.ingest(1)),
        ("ingest-2".into(), layout.ingest(2)),
        ("gateway".into(), layout.gateway()),
    ]
}

/// Allocations between two [`allocations`] readings, divided by `per` (iterations or
/// seconds), for the services read both times.
fn allocations_per(
    before: &BTreeMap<String, f64>,
    after: BTreeMap<String, f64>,
    per: f64,
) -> BTreeMap<String, f64> {
    after
        .into_iter()
        .filter_map(|(name, count)| Some((name.clone(), (count - before.get(&name)?) / per)))
        .collect()
}

/// `payrail_heap_allocations_total` of every service in `target.counted` that answers.
fn allocations(target: &Target) -> BTreeMap<String, f64> {
    counted_metric(target, "payrail_heap_allocations_total")
}

/// `metric` of every service in `target.counted` (those whose allocator is
/// `payrail_core::alloc::Counting`) that answers.
fn counted_metric(target: &Target, metric: &str) -> BTreeMap<String, f64> {
    target
        .counted
        .iter()
        .filter_map(|(name, addr)| {
            let reply = http::request(addr, "GET", "/metrics", &[], None).ok()?;
            let value = crate::metric_value(&reply.text(), metric, "")?;
            Some((name.clone(), value))
        })
        .collect()
}

pub struct Options {
    pub quick: bool,
    /// Where the JSON, the report and its charts go (`k6/results` for `cargo xtask bench`).
    pub out_dir: PathBuf,
}

fn progress(step: &str, text: &str) {
    eprintln!("[bench {step}] {text}");
}

/// utime + stime of a process, in seconds (`/proc/<pid>/stat`, clock ticks of 1/100 s,
/// the Linux default `CLK_TCK`).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Busy CPU seconds of the whole machine (`/proc/stat`, every core): k6 included.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    let busy: u64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .take(6)
        .map(|(_, x)| x)
        .sum();
    busy as f64 / 100.0
}

pub(crate) fn status_kb(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The CPU every appliance process used while `work` ran, by process, in seconds.
pub(crate) fn measure_cpu<T>(
    procs: &[(String, u32)],
    work: impl FnOnce() -> T,
) -> (T, BTreeMap<String, f64>, f64) {
    let before: Vec<Option<f64>> = procs.iter().map(|(_, p)| cpu_seconds(*p)).collect();
    let machine_before = machine_busy_seconds();
    let out = work();
    let machine = machine_busy_seconds() - machine_before;
    let mut used = BTreeMap::new();
    for ((name, pid), before) in procs.iter().zip(before) {
        if let (Some(b), Some(a)) = (before, cpu_seconds(*pid)) {
            // Both ingest instances (and both shards) are listed separately.
            used.insert(name.clone(), a - b);
        }
    }
    (out, used, machine)
}

/// One second of a run: (second since the start, requests, p50 ms, p99 ms).
type Series = (u32, f64, f64, f64);

/// One k6 run's figures.
pub(crate) struct K6Run {
    pub(crate) summary: Value,
    pub(crate) thresholds_ok: bool,
    /// Per second since the start: (second, requests, p50 ms, p99 ms).
    series: Vec<Series>,
}

pub(crate) fn metric(summary: &Value, name: &str, stat: &str) -> f64 {
    summary["metrics"][name][stat].as_f64().unwrap_or(0.0)
}

/// Merchants the scenarios spread over (their default `MERCHANTS`).
const MERCHANTS: usize = 1000;

/// With merchant_auth on (the gateway answers a keyless read 401), a JSON file of one key
/// per scenario merchant for k6's `KEYS_FILE`, made through the admin API before any
/// measurement, so creating keys costs no phase CPU. A file from an earlier run is reused
/// while its first key still works. One file per gateway address: the quick bench and the
/// short soak run side by side in one test binary, each on its own appliance, and a shared
/// file let one run's k6 read the other appliance's keys (every request of the soak's
/// first segment failed, in about a millisecond each, in a fresh-clone run).
pub(crate) fn merchant_keys(target: &Target) -> Result<Option<PathBuf>, String> {
    let host_gateway = target.gateway.as_str();
    let keyless = crate::http::request(host_gateway, "GET", "/api/payments?limit=1", &[], None)
        .map_err(|e| format!("gateway: {e}"))?;
    if keyless.status != 401 {
        return Ok(None);
    }
    let file = repo_root().join(format!(
        "target/bench/merchant-keys-{}.json",
        host_gateway.replace([':', '.'], "-")
    ));
    if let Ok(text) = std::fs::read_to_string(&file) {
        let keys: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(key) = keys["MERCHANT-0"].as_str() {
            let bearer = format!("Bearer {key}");
            let reply = crate::http::request(
                host_gateway,
                "GET",
                "/api/payments?limit=1",
                &[("Authorization", &bearer)],
                None,
            )
            .map_err(|e| format!("gateway: {e}"))?;
            if reply.status == 200 {
                return Ok(Some(file));
            }
        }
    }
    let mut keys = serde_json::Map::new();
    for n in 0..MERCHANTS {
        let merchant = format!("MERCHANT-{n}");
        let reply = crate::http::admin(
            host_gateway,
            "POST",
            &format!("/api/admin/merchants/{merchant}/keys"),
            Some(&target.admin_token),
            None,
        );
        if reply.status != 201 {
            return Err(format!(
                "key for {merchant}: {} {}",
                reply.status,
                reply.text()
            ));
        }
        keys.insert(merchant, reply.json()["key"].clone());
    }
    // Each ingest learns new keys at its next key-ring refresh (`api_keys.
    // refresh_interval_ms`, 1 s by default): the measured phases start after two (a fresh
    // bench's first phase had 5 of 15,001 answered 401 when it began at once). Not polled:
    // the gateway answers a client's repeated 401s with 429s.
    std::thread::sleep(std::time::Duration::from_secs(2));
    std::fs::create_dir_all(repo_root().join("target/bench")).map_err(|e| e.to_string())?;
    std::fs::write(&file, Value::Object(keys).to_string()).map_err(|e| e.to_string())?;
    Ok(Some(file))
}

/// Runs k6 `script` at `rate` for `seconds` from the load client. With `series`, every
/// request's latency goes through a CSV for the per-second series (for a long run that
/// file grows by gigabytes: a soak reads only the summary).
pub(crate) fn k6(
    target: &Target,
    script: &str,
    rate: u32,
    seconds: u32,
    work: &Path,
    series: bool,
) -> Result<K6Run, String> {
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let tag = format!("{script}-{rate}");
    let summary_file = work.join(format!("{tag}.summary.json"));
    let csv_file = work.join(format!("{tag}.csv"));
    let mut command = match target.client {
        Some(mirror) => mirror.client_command("k6"),
        None => Command::new("k6"),
    };
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    command
        .arg("run")
        .arg("--quiet")
        .arg("--summary-export")
        .arg(&summary_file)
        .args(series.then(|| format!("--out=csv={}", csv_file.display())))
        .args(["-e", &format!("BASE_URL=http://{}", target.gateway)])
        .args(["-e", &format!("RATE={rate}")])
        .args(["-e", &format!("DURATION={seconds}s")])
        .args(["-e", &format!("RUN_ID=bench-{run_id}")])
        .args(
            target
                .keys_file
                .iter()
                .flat_map(|f| ["-e".to_owned(), format!("KEYS_FILE={}", f.display())]),
        )
        .arg(repo_root().join("k6").join(script))
        .env("K6_CSV_TIME_FORMAT", "unix_milli");
    let output = command.output().map_err(|e| format!("k6: {e}"))?;
    // 99: thresholds crossed (recorded, not an error of the bench).
    let code = output.status.code().unwrap_or(-1);
    if code != 0 && code != 99 {
        return Err(format!(
            "k6 {script} failed ({code}): {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(&summary_file).map_err(|e| format!("k6 summary: {e}"))?,
    )
    .map_err(|e| format!("k6 summary: {e}"))?;
    let series = if series {
        latency_series(&csv_file)
    } else {
        Vec::new()
    };
    let _ = std::fs::remove_file(&csv_file);
    Ok(K6Run {
        summary,
        thresholds_ok: code == 0,
        series,
    })
}

/// Requests, p50 and p99 of `http_req_duration` per second, from k6's CSV output.
fn latency_series(csv: &Path) -> Vec<Series> {
    let text = std::fs::read_to_string(csv).unwrap_or_default();
    let mut per_second: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("http_req_duration,")) {
        let mut cols = line.split(',');
        let (_, Some(ts), Some(value)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        if let (Ok(ts), Ok(value)) = (ts.parse::<u64>(), value.parse::<f64>()) {
            // Seconds or milliseconds, whichever k6 wrote.
            let second = if ts > 10_000_000_000 { ts / 1000 } else { ts };
            per_second.entry(second).or_default().push(value);
        }
    }
    let first = per_second.keys().next().copied().unwrap_or(0);
    per_second
        .into_iter()
        .map(|(second, mut values)| {
            values.sort_by(f64::total_cmp);
            let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
            (
                (second - first) as u32,
                values.len() as f64,
                at(0.5),
                at(0.99),
            )
        })
        .collect()
}

/// Outbox backlog plus payments waiting for a worker, over every shard (admin API).
fn pipeline_pending(target: &Target) -> Option<i64> {
    let bearer = format!("Bearer {}", target.admin_token);
    let reply = http::request(
        &target.gateway,
        "GET",
        "/api/admin/stats",
        &[("Authorization", bearer.as_str())],
        None,
    )
    .ok()?;
    let stats = reply.json();
    let shards = stats["shards"].as_array()?;
    let mut pending = 0;
    for shard in shards {
        pending += shard["outboxBacklog"].as_i64()?;
        for status in ["CAPTURE_REQUESTED", "REFUND_REQUESTED"] {
            pending += shard["payments"][status].as_i64().unwrap_or(0);
        }
    }
    Some(pending)
}

pub(crate) fn drain_seconds(target: &Target, limit: Duration) -> Option<f64> {
    let start = Instant::now();
    wait_until(limit, || pipeline_pending(target) == Some(0)).then(|| start.elapsed().as_secs_f64())
}

/// A k6 phase with CPU accounting: figures, CPU ms per iteration by process, series.
fn phase(
    target: &Target,
    script: &str,
    rate: u32,
    seconds: u32,
    work: &Path,
) -> Result<(Value, Vec<Series>), String> {
    let allocations_before = allocations(target);
    let (run, cpu, machine) = measure_cpu(&target.procs, || {
        k6(target, script, rate, seconds, work, true)
    });
    let run = run?;
    let iterations = metric(&run.summary, "iterations", "count").max(1.0);
    let allocations_per_iteration =
        allocations_per(&allocations_before, allocations(target), iterations);
    let per_iteration: BTreeMap<String, f64> = cpu
        .iter()
        .map(|(name, s)| (name.clone(), s * 1000.0 / iterations))
        .collect();
    let server: f64 = per_iteration.values().sum();
    let figures = json!({
        "script": script,
        "rate": rate,
        "seconds": seconds,
        "iterations": iterations,
        "requests": metric(&run.summary, "http_reqs", "count"),
        "droppedIterations": metric(&run.summary, "dropped_iterations", "count"),
        "failedRate": metric(&run.summary, "http_req_failed", "value"),
        "latencyMs": {
            "p50": metric(&run.summary, "http_req_duration", "med"),
            "p95": metric(&run.summary, "http_req_duration", "p(95)"),
            "p99": metric(&run.summary, "http_req_duration", "p(99)"),
            "max": metric(&run.summary, "http_req_duration", "max"),
        },
        "thresholdsPassed": run.thresholds_ok,
        "serverCpuMsPerIteration": server,
        "machineCpuMsPerIteration": machine * 1000.0 / iterations,
        "cpuMsPerIterationByProcess": per_iteration,
        "allocationsPerIterationByProcess": allocations_per_iteration,
    });
    Ok((figures, run.series))
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_else(|| "not found".into())
}

pub(crate) fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_default();
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    json!({
        "cpuModel": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memoryGiB": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

pub(crate) fn versions() -> Value {
    let root = repo_root();
    let root = root.to_string_lossy();
    json!({
        "payrail": command_line("git", &["-C", &root, "describe", "--always", "--dirty"]),
        "rustc": command_line("rustc", &["--version"]),
        "broker": format!("{} {}", crate::kafka::BROKER, crate::kafka::BROKER_VERSION),
        "mariadb": command_line("mariadbd", &["--version"]),
        "redis": command_line("redis-server", &["--version"]),
        "k6": command_line("k6", &["version"]),
    })
}

/// Runs every phase and writes `bench-<time>.json` and `.md` (with SVG charts) into
/// `options.out_dir`. Returns the JSON file's path.
pub fn run(target: &Target, options: &Options) -> Result<PathBuf, String> {
    let keys_file = merchant_keys(target)?;
    let merchant_auth = if keys_file.is_some() {
        "required"
    } else {
        "off"
    };
    progress("0", &format!("merchant_auth = {merchant_auth}"));
    let mut target = target.clone();
    target
        .config
        .push(("merchant_auth".into(), merchant_auth.into()));
    target.keys_file = keys_file;
    let target = &target;
    let started = SystemTime::now();
    let stamp = utc_stamp(started);
    let work = repo_root().join("target/bench").join(&stamp);
    let (steps, quick) = (if options.quick { 4 } else { 6 }, options.quick);
    let mut step = 0;
    let mut next = |name: &str| {
        step += 1;
        format!("{step}/{steps} {name}")
    };
    let mut phases = serde_json::Map::new();
    let mut series = serde_json::Map::new();

    let s = next("cpu per authorization");
    let (rate, secs) = if quick { (100, 8) } else { (500, 30) };
    progress(&s, &format!("k6 authorize.js at {rate}/s for {secs} s"));
    let (figures, lat) = phase(target, "authorize.js", rate, secs, &work)?;
    progress(
        &s,
        &format!(
            "server CPU {:.3} ms per authorization",
            figures["serverCpuMsPerIteration"].as_f64().unwrap_or(0.0)
        ),
    );
    phases.insert("cpuAuthorize".into(), figures);
    series.insert("cpuAuthorize".into(), json!(lat));
    let _ = drain_seconds(target, Duration::from_secs(60));

    if !quick {
        let s = next("reference authorize run");
        progress(&s, "k6 authorize.js at 1,050/s for 60 s");
        let (figures, lat) = phase(target, "authorize.js", 1050, 60, &work)?;
        progress(
            &s,
            &format!(
                "p95 {:.1} ms, p99 {:.1} ms",
                figures["latencyMs"]["p95"].as_f64().unwrap_or(0.0),
                figures["latencyMs"]["p99"].as_f64().unwrap_or(0.0)
            ),
        );
        phases.insert("seedAuthorize".into(), figures);
        series.insert("seedAuthorize".into(), json!(lat));
        let _ = drain_seconds(target, Duration::from_secs(120));
    }

    let s = next("full flow");
    let (rate, secs) = if quick { (20, 8) } else { (300, 60) };
    progress(&s, &format!("k6 full-flow.js at {rate} it/s for {secs} s"));
    let (mut figures, lat) = phase(target, "full-flow.js", rate, secs, &work)?;
    let drained = drain_seconds(target, Duration::from_secs(300));
    let reconcile_start = Instant::now();
    let mut report = String::new();
    let clean = wait_until(Duration::from_secs(120), || {
        let (ok, text) = services::reconcile(&target.ledger_config);
        report = text;
        ok
    });
    figures["drainSeconds"] = json!(drained);
    figures["reconcileSeconds"] = json!(clean.then(|| reconcile_start.elapsed().as_secs_f64()));
    figures["reconciled"] = json!(clean);
    if !clean {
        figures["reconcileReport"] = json!(report);
    }
    progress(
        &s,
        &format!(
            "server CPU {:.3} ms per iteration, drained in {drained:?} s, reconciled: {clean}",
            figures["serverCpuMsPerIteration"].as_f64().unwrap_or(0.0)
        ),
    );
    phases.insert("fullFlow".into(), figures);
    series.insert("fullFlow".into(), json!(lat));

    if !quick {
        let s = next("max rate");
        let mut rate = 1000u32;
        let mut best = json!(null);
        let mut steps_run = Vec::new();
        loop {
            progress(&s, &format!("authorize at {rate}/s for 15 s"));
            let (figures, _) = phase(target, "authorize.js", rate, 15, &work)?;
            let p99 = figures["latencyMs"]["p99"].as_f64().unwrap_or(f64::MAX);
            let failed = figures["failedRate"].as_f64().unwrap_or(1.0);
            let dropped =
                figures["droppedIterations"].as_f64().unwrap_or(0.0) / f64::from(rate * 15);
            let ok = p99 <= 50.0 && failed <= 0.001 && dropped <= 0.001;
            steps_run.push(json!({"rate": rate, "p99": p99, "failedRate": failed, "droppedShare": dropped, "ok": ok}));
            let _ = drain_seconds(target, Duration::from_secs(120));
            if !ok || rate >= 8000 {
                break;
            }
            best = json!(rate);
            rate = rate * 5 / 4;
        }
        phases.insert("maxRate".into(), json!({"highestPassing": best, "steps": steps_run, "bound": "p99 <= 50 ms, errors <= 0.1 %, dropped <= 0.1 %"}));
    }

    let s = next("idle");
    let secs = if quick { 3 } else { 10 };
    let allocations_before = allocations(target);
    let ((), cpu, _) = measure_cpu(&target.procs, || {
        std::thread::sleep(Duration::from_secs(secs))
    });
    let allocations_per_second =
        allocations_per(&allocations_before, allocations(target), secs as f64);
    let idle_percent: f64 = cpu.values().sum::<f64>() / secs as f64 * 100.0;
    progress(&s, &format!("{idle_percent:.1} % of one core"));
    phases.insert("idle".into(), json!({"seconds": secs, "percentOfOneCore": idle_percent, "byProcess": cpu.iter().map(|(n, c)| (n.clone(), json!(c / secs as f64 * 100.0))).collect::<serde_json::Map<_, _>>(), "allocationsPerSecond": allocations_per_second}));

    let s = next("memory");
    // What the program holds of its RSS, where the allocator counts it.
    let live = counted_metric(target, "payrail_heap_live_bytes");
    let rss: serde_json::Map<String, Value> = target
        .procs
        .iter()
        .map(|(name, pid)| (name.clone(), json!({"peakMB": status_kb(*pid, "VmHWM").map(|k| k / 1024), "nowMB": status_kb(*pid, "VmRSS").map(|k| k / 1024), "liveHeapMB": live.get(name).map(|b| (b / 1_048_576.0).round())})))
        .collect();
    progress(&s, &format!("{} processes", rss.len()));

    let result = json!({
        "time": stamp,
        "quick": quick,
        "machine": machine(),
        "versions": versions(),
        "config": target.config.iter().cloned().collect::<BTreeMap<_, _>>(),
        "phases": phases,
        "rss": rss,
        "series": series,
        "durationSeconds": started.elapsed().map(|d| d.as_secs()).unwrap_or(0),
    });
    std::fs::create_dir_all(&options.out_dir).map_err(|e| e.to_string())?;
    let previous = previous_result(&options.out_dir, quick);
    let json_file = options.out_dir.join(format!("bench-{stamp}.json"));
    std::fs::write(
        &json_file,
        serde_json::to_string_pretty(&result).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    crate::bench_report::write(&options.out_dir, &stamp, &result, previous.as_ref())?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(json_file)
}

/// The newest earlier result of the same kind (quick or full) in `dir`.
fn previous_result(dir: &Path, quick: bool) -> Option<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("bench-") && n.ends_with(".json")
            })
        })
        .collect();
    files.sort();
    files.into_iter().rev().find_map(|f| {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(f).ok()?).ok()?;
        (v["quick"].as_bool() == Some(quick)).then_some(v)
    })
}

/// `20261201T103000Z`, from the system clock (UTC, no time-zone database needed).
pub fn utc_stamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The checks `cargo xtask bench --quick` must pass inside `cargo xtask test`: the report
/// exists and the numbers are sane (never a timing bound).
pub fn check_sane(result: &Value, out_dir: &Path) -> Result<(), String> {
    let stamp = result["time"].as_str().unwrap_or("");
    let report = out_dir.join(format!("bench-{stamp}.md"));
    let text =
        std::fs::read_to_string(&report).map_err(|e| format!("{}: {e}", report.display()))?;
    for section in ["## Machine", "## CPU per payment", "## Compared with"] {
        if !text.contains(section) {
            return Err(format!("report lacks {section}"));
        }
    }
    for phase in ["cpuAuthorize", "fullFlow"] {
        let p = &result["phases"][phase];
        let cpu = p["serverCpuMsPerIteration"].as_f64().unwrap_or(-1.0);
        if !(cpu > 0.0 && cpu < 1000.0) {
            return Err(format!(
                "{phase}: server CPU per iteration {cpu} ms is not sane"
            ));
        }
        if p["iterations"].as_f64().unwrap_or(0.0) < 10.0 {
            return Err(format!("{phase}: too few iterations: {p}"));
        }
        let processes = p["cpuMsPerIterationByProcess"]
            .as_object()
            .map_or(0, |m| m.len());
        if processes < 8 {
            return Err(format!("{phase}: CPU of only {processes} processes"));
        }
        // Every authorization allocates in the gateway and in one ingest.
        let counted = &p["allocationsPerIterationByProcess"];
        let ingest: f64 = ["ingest-1", "ingest-2"]
            .iter()
            .filter_map(|n| counted[*n].as_f64())
            .sum();
        if !(ingest >= 1.0 && counted["gateway"].as_f64().unwrap_or(0.0) >= 1.0) {
            return Err(format!("{phase}: allocations not counted: {counted}"));
        }
    }
    if result["phases"]["fullFlow"]["reconciled"] != json!(true) {
        return Err(format!(
            "full flow did not reconcile: {}",
            result["phases"]["fullFlow"]
        ));
    }
    if result["rss"]
        .as_object()
        .is_none_or(|m| m.values().any(|v| v["peakMB"].as_u64().unwrap_or(0) == 0))
    {
        return Err(format!("RSS missing: {}", result["rss"]));
    }
    // The counted services report a live heap, and it is part of their RSS.
    for name in ["ingest-1", "ingest-2", "gateway"] {
        let m = &result["rss"][name];
        let (live, now) = (m["liveHeapMB"].as_f64(), m["nowMB"].as_f64());
        if !matches!((live, now), (Some(l), Some(n)) if l >= 0.0 && l <= n) {
            return Err(format!("{name}: live heap not sane: {m}"));
        }
    }
    if result["machine"]["cpuModel"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        return Err("machine CPU model not recorded".into());
    }
    Ok(())
}
