//! The Markdown report of a `cargo xtask bench` result, with SVG charts beside it:
//! latency and throughput over time, server CPU per payment by process. Compared with the
//! previous result of the same kind and with the reference system's published figures.

use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// The reference system's published figures (../shared/reference/peers.md): 1,050
/// authorize req/s at p95 29 ms on two 4-core VMs; full flow 300 it/s at p95 25.5 ms,
/// p99 471 ms.
const REFERENCE: [(&str, &str); 4] = [
    ("authorize rate", "1,050/s on 8 vCPU (≈130/s per core)"),
    ("authorize p95", "29 ms"),
    ("full flow", "300 it/s, p95 25.5 ms, p99 471 ms"),
    ("CPU per payment", "not published"),
];

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.3}"),
        None => "—".into(),
    }
}

fn ratio(now: &Value, before: &Value) -> String {
    match (now.as_f64(), before.as_f64()) {
        (Some(n), Some(b)) if b != 0.0 => format!("{:.2}×", n / b),
        _ => "—".into(),
    }
}

/// A named, coloured line of (x, y) points.
pub(crate) type Line<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A line chart of `lines` over x in `x_unit` (the legend wraps after six names).
pub(crate) fn line_chart(title: &str, unit: &str, x_unit: &str, lines: &[Line]) -> String {
    let rows = lines.len().div_ceil(6).max(1) as f64;
    let (w, h, pad) = (720.0, 244.0 + 16.0 * rows, 32.0 + 16.0 * rows);
    let max_x = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_y = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/><text x=\"{pad}\" y=\"16\" font-size=\"13\">{title}</text>\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/><line x1=\"{pad}\" y1=\"24\" x2=\"{pad}\" y2=\"{}\" stroke=\"#888\"/>\
         <text x=\"4\" y=\"30\">{max_y:.0} {unit}</text><text x=\"{}\" y=\"{}\">{max_x:.0} {x_unit}</text>",
        h - pad,
        w - 10.0,
        h - pad,
        h - pad,
        w - 50.0,
        h - pad + 16.0
    );
    for (i, (name, colour, points)) in lines.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    pad + x / max_x * (w - pad - 10.0),
                    (h - pad) - y / max_y * (h - pad - 24.0)
                )
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>",
            path.join(" "),
            pad + 10.0 + 110.0 * (i % 6) as f64,
            h - pad + 32.0 + 16.0 * (i / 6) as f64
        );
    }
    svg + "</svg>\n"
}

/// Horizontal bars: server CPU ms per iteration by process.
fn bar_chart(title: &str, bars: &[(String, f64)]) -> String {
    let (w, row, left) = (720.0, 20.0, 150.0);
    let h = 30.0 + row * bars.len() as f64;
    let max = bars.iter().map(|b| b.1).fold(0.001, f64::max);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/><text x=\"4\" y=\"16\" font-size=\"13\">{title}</text>"
    );
    for (i, (name, value)) in bars.iter().enumerate() {
        let y = 26.0 + row * i as f64;
        let width = value / max * (w - left - 80.0);
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{}\">{name}</text><rect x=\"{left}\" y=\"{y}\" width=\"{width:.1}\" height=\"{}\" fill=\"#4a7ab5\"/>\
             <text x=\"{:.1}\" y=\"{}\">{value:.3} ms</text>",
            y + 12.0,
            row - 6.0,
            left + width + 4.0,
            y + 12.0
        );
    }
    svg + "</svg>\n"
}

fn series_points(series: &Value, index: usize) -> Vec<(f64, f64)> {
    series
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p[0].as_f64()?, p[index].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn by_process(phase: &Value) -> Vec<(String, f64)> {
    let mut bars: Vec<(String, f64)> = phase["cpuMsPerIterationByProcess"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0)))
                .collect()
        })
        .unwrap_or_default();
    bars.sort_by(|a, b| b.1.total_cmp(&a.1));
    bars
}

/// Writes `bench-<stamp>.md` and its SVG charts into `dir`.
pub fn write(dir: &Path, stamp: &str, r: &Value, previous: Option<&Value>) -> Result<(), String> {
    let base = format!("bench-{stamp}");
    let phases = &r["phases"];
    let mut md = String::new();
    let m = &r["machine"];
    let (title, flag) = if r["quick"] == Value::Bool(true) {
        (" (quick: a smoke run, not figures)", " --quick")
    } else {
        ("", "")
    };
    let _ = writeln!(md, "# payrail benchmark {stamp}{title}\n");
    let _ = writeln!(
        md,
        "`cargo xtask bench{flag}`, {} s.\n",
        r["durationSeconds"]
    );
    let _ = writeln!(md, "## Machine\n\n| | |\n|---|---|");
    let _ = writeln!(
        md,
        "| CPU | {} |\n| cores | {} |\n| memory | {} GiB |\n| kernel | {} |",
        m["cpuModel"].as_str().unwrap_or(""),
        m["cores"],
        m["memoryGiB"],
        m["kernel"].as_str().unwrap_or("")
    );
    for (k, v) in r["versions"].as_object().into_iter().flatten() {
        let _ = writeln!(md, "| {k} | {} |", v.as_str().unwrap_or(""));
    }
    for (k, v) in r["config"].as_object().into_iter().flatten() {
        let _ = writeln!(md, "| {k} | {} |", v.as_str().unwrap_or(""));
    }

    let _ = writeln!(md, "\n## Runs\n\n| phase | rate | s | iterations | requests | failed | dropped | p50 ms | p95 ms | p99 ms | thresholds |\n|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, p) in phases.as_object().into_iter().flatten() {
        if p.get("script").is_none() {
            continue;
        }
        let l = &p["latencyMs"];
        let _ = writeln!(
            md,
            "| {name} ({}) | {} | {} | {} | {} | {:.3} % | {} | {} | {} | {} | {} |",
            p["script"].as_str().unwrap_or(""),
            p["rate"],
            p["seconds"],
            f(&p["iterations"]),
            f(&p["requests"]),
            p["failedRate"].as_f64().unwrap_or(0.0) * 100.0,
            f(&p["droppedIterations"]),
            f(&l["p50"]),
            f(&l["p95"]),
            f(&l["p99"]),
            if p["thresholdsPassed"] == Value::Bool(true) {
                "pass"
            } else {
                "FAIL"
            }
        );
    }
    let flow = &phases["fullFlow"];
    let _ = writeln!(
        md,
        "\nFull flow: drained {} s and reconciled {} s after k6 ended (clean: {}).",
        f(&flow["drainSeconds"]),
        f(&flow["reconcileSeconds"]),
        flow["reconciled"]
    );
    if let Some(max) = phases.get("maxRate") {
        let _ = writeln!(
            md,
            "\nHighest authorize rate with {}: **{}/s**. Steps: {}.",
            max["bound"].as_str().unwrap_or(""),
            max["highestPassing"],
            max["steps"]
                .as_array()
                .map(|s| s
                    .iter()
                    .map(|x| format!(
                        "{}/s p99 {} ms {}",
                        x["rate"],
                        f(&x["p99"]),
                        if x["ok"] == Value::Bool(true) {
                            "ok"
                        } else {
                            "over"
                        }
                    ))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
    }

    let _ = writeln!(md, "\n## CPU per payment\n\nServer CPU (every appliance process, from `/proc/<pid>/stat` before and after the run) per iteration; machine = every core's busy time (k6 included).\n\n| process | per authorization (ms) | per full-flow iteration (ms) |\n|---|---|---|");
    let auth = &phases["cpuAuthorize"];
    for (name, v) in by_process(auth) {
        let _ = writeln!(
            md,
            "| {name} | {v:.3} | {} |",
            f(&flow["cpuMsPerIterationByProcess"][&name])
        );
    }
    let _ = writeln!(
        md,
        "| **server total** | **{}** | **{}** |\n| machine total | {} | {} |",
        f(&auth["serverCpuMsPerIteration"]),
        f(&flow["serverCpuMsPerIteration"]),
        f(&auth["machineCpuMsPerIteration"]),
        f(&flow["machineCpuMsPerIteration"])
    );
    let counted = auth["allocationsPerIterationByProcess"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if !counted.is_empty() {
        let _ = writeln!(md, "\nHeap allocations (`payrail_heap_allocations_total` before and after; ingest's include its relay publishing the events, and every process's include its background work, measured alone in the idle phase):\n\n| process | per authorization | per full-flow iteration | per second idle |\n|---|---|---|---|");
        for (name, v) in &counted {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} |",
                f(v),
                f(&flow["allocationsPerIterationByProcess"][name]),
                f(&phases["idle"]["allocationsPerSecond"][name])
            );
        }
    }
    let _ = writeln!(
        md,
        "\nIdle appliance: {} % of one core.",
        f(&phases["idle"]["percentOfOneCore"])
    );
    let _ = writeln!(md, "\n![CPU per authorization]({base}-cpu.svg)\n");

    let _ = writeln!(
        md,
        "## Memory\n\n| process | peak RSS MB | now MB | of which live heap MB |\n|---|---|---|---|"
    );
    for (k, v) in r["rss"].as_object().into_iter().flatten() {
        // Live heap: `payrail_heap_live_bytes`, where the allocator is counted.
        let live = match &v["liveHeapMB"] {
            Value::Number(n) => n.to_string(),
            _ => "–".to_owned(),
        };
        let _ = writeln!(md, "| {k} | {} | {} | {live} |", v["peakMB"], v["nowMB"]);
    }

    let _ = writeln!(md, "\n## Over time\n\n![latency]({base}-latency.svg)\n\n![throughput]({base}-throughput.svg)\n");

    let _ = writeln!(md, "## Compared with\n\n### The previous result");
    match previous {
        Some(p) => {
            let _ = writeln!(
                md,
                "\n{} on {} ({}).\n\n| figure | now | then | now/then |\n|---|---|---|---|",
                p["time"].as_str().unwrap_or(""),
                p["machine"]["cpuModel"].as_str().unwrap_or(""),
                p["versions"]["payrail"].as_str().unwrap_or("")
            );
            let rows: [(&str, &[&str]); 7] = [
                (
                    "server CPU per authorization (ms)",
                    &["cpuAuthorize", "serverCpuMsPerIteration"],
                ),
                (
                    "server CPU per full-flow iteration (ms)",
                    &["fullFlow", "serverCpuMsPerIteration"],
                ),
                (
                    "seed authorize p95 (ms)",
                    &["seedAuthorize", "latencyMs", "p95"],
                ),
                (
                    "seed authorize p99 (ms)",
                    &["seedAuthorize", "latencyMs", "p99"],
                ),
                ("full flow p99 (ms)", &["fullFlow", "latencyMs", "p99"]),
                ("max authorize rate (/s)", &["maxRate", "highestPassing"]),
                ("idle (% of one core)", &["idle", "percentOfOneCore"]),
            ];
            for (label, path) in rows {
                let pick = |v: &Value| {
                    path.iter()
                        .fold(v["phases"].clone(), |acc, k| acc[*k].clone())
                };
                let (now, then) = (pick(r), pick(p));
                let _ = writeln!(
                    md,
                    "| {label} | {} | {} | {} |",
                    f(&now),
                    f(&then),
                    ratio(&now, &then)
                );
            }
        }
        None => {
            let _ = writeln!(md, "\nNo earlier result of this kind here.");
        }
    }
    let _ = writeln!(md, "\n### The reference system's published figures\n\n| figure | reference (Java/Spring, two 4-core VMs) | payrail, this run |\n|---|---|---|");
    let seed = &phases["seedAuthorize"];
    let ours = [
        match phases["maxRate"]["highestPassing"].as_u64() {
            Some(rate) => format!("max {rate}/s on {} cores, co-located with k6", m["cores"]),
            None => "not measured in this run".into(),
        },
        match seed["latencyMs"]["p95"].as_f64() {
            Some(p95) => format!("{p95:.1} ms at 1,050/s"),
            None => "not measured in this run".into(),
        },
        format!(
            "{} it/s, p95 {} ms, p99 {} ms",
            flow["rate"],
            f(&flow["latencyMs"]["p95"]),
            f(&flow["latencyMs"]["p99"])
        ),
        format!(
            "{} ms per authorization, {} ms per full flow",
            f(&auth["serverCpuMsPerIteration"]),
            f(&flow["serverCpuMsPerIteration"])
        ),
    ];
    for ((label, theirs), ours) in REFERENCE.iter().zip(ours) {
        let _ = writeln!(md, "| {label} | {theirs} | {ours} |");
    }

    let write =
        |name: &str, text: String| std::fs::write(dir.join(name), text).map_err(|e| e.to_string());
    write(&format!("{base}.md"), md)?;
    let (lat_key, lat_title) = if phases.get("seedAuthorize").is_some() {
        ("seedAuthorize", "authorize at 1,050/s: latency per second")
    } else {
        ("cpuAuthorize", "authorize: latency per second")
    };
    let s = &r["series"];
    write(
        &format!("{base}-latency.svg"),
        line_chart(
            lat_title,
            "ms",
            "s",
            &[
                ("p50", "#4a7ab5", series_points(&s[lat_key], 2)),
                ("p99", "#c0392b", series_points(&s[lat_key], 3)),
                ("full flow p99", "#27ae60", series_points(&s["fullFlow"], 3)),
            ],
        ),
    )?;
    write(
        &format!("{base}-throughput.svg"),
        line_chart(
            "requests per second",
            "/s",
            "s",
            &[
                (lat_key, "#4a7ab5", series_points(&s[lat_key], 1)),
                ("fullFlow", "#27ae60", series_points(&s["fullFlow"], 1)),
            ],
        ),
    )?;
    write(
        &format!("{base}-cpu.svg"),
        bar_chart(
            "server CPU per authorization, by process",
            &by_process(auth),
        ),
    )?;
    Ok(())
}
