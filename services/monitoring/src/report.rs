//! Analysis reports: deterministic, from numbers only, for a k6 run, a drill, or the live
//! metrics. Each report has the measured figures, each figure against its target, the
//! error breakdown, bottleneck hints read from the metrics at the time, and
//! recommendations that follow from the hints. The same input gives the same report.

use serde_json::{json, Value as Json};

/// The targets of the issues: p95 ≤ 15 ms and p99 ≤ 50 ms per request, at most 0.1 %
/// errors, and the offered rate actually achieved (≥ 95 %).
pub const P95_TARGET_MS: f64 = 15.0;
pub const P99_TARGET_MS: f64 = 50.0;
pub const ERROR_RATE_TARGET: f64 = 0.001;
pub const RATE_ACHIEVED_TARGET: f64 = 0.95;

/// What the system looked like around the report's time window.
#[derive(Default)]
pub struct Context {
    /// Scraped points of the window (rps, errorsPerSecond, p50Ms, p95Ms, p99Ms).
    pub points: Vec<Json>,
    /// Every instance and its breakers.
    pub breakers: Json,
    /// Total unpublished outbox events now.
    pub outbox_backlog: Option<i64>,
    /// Consumer groups and their lag now.
    pub consumer_lag: Vec<(String, i64)>,
}

fn check(name: &str, value: Option<f64>, target: f64, lower_is_better: bool, unit: &str) -> Json {
    let met = value.map(|v| {
        if lower_is_better {
            v <= target
        } else {
            v >= target
        }
    });
    json!({
        "name": name,
        "value": value.map(|v| (v * 1000.0).round() / 1000.0),
        "target": format!("{} {target}{unit}", if lower_is_better { "≤" } else { "≥" }),
        "met": met,
    })
}

/// Hints from the system's state: what was saturated or broken around the window.
fn hints(context: &Context, p95_over: bool, hints: &mut Vec<String>, advice: &mut Vec<String>) {
    let open: Vec<String> = context.breakers["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| {
            let name = i["name"].as_str().unwrap_or("?").to_owned();
            i["breakers"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, s)| *s != "CLOSED")
                .map(move |(b, s)| format!("{name}: {b} {}", s.as_str().unwrap_or("?")))
        })
        .collect();
    if !open.is_empty() {
        hints.push(format!("breakers not CLOSED: {}", open.join(", ")));
        advice.push(
            "find the failing dependency behind the open breaker before load-testing again".into(),
        );
    }
    let down: Vec<&str> = context.breakers["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["up"] == false)
        .filter_map(|i| i["name"].as_str())
        .collect();
    if !down.is_empty() {
        hints.push(format!(
            "instances not answering /metrics: {}",
            down.join(", ")
        ));
    }
    if let Some(backlog) = context.outbox_backlog.filter(|b| *b > 1_000) {
        hints.push(format!(
            "outbox backlog {backlog} events: the relay or the broker is behind"
        ));
        advice.push("check the broker's throughput and relay.batch_size_max".into());
    }
    for (group, lag) in context.consumer_lag.iter().filter(|(_, lag)| *lag > 1_000) {
        hints.push(format!("consumer group {group} lags {lag} messages"));
        advice.push(format!("add {group} instances or raise its batch size"));
    }
    let p95s: Vec<f64> = context
        .points
        .iter()
        .filter_map(|p| p["p95Ms"].as_f64())
        .collect();
    if p95s.len() >= 4 {
        let half = p95s.len() / 2;
        let first = p95s[..half].iter().sum::<f64>() / half as f64;
        let second = p95s[half..].iter().sum::<f64>() / (p95s.len() - half) as f64;
        if second > first * 1.5 && second > P95_TARGET_MS {
            hints.push(format!(
                "p95 rose during the run ({first:.1} → {second:.1} ms): a queue is building up, the offered rate is above capacity"
            ));
            advice.push("lower the rate to find the knee, or add capacity where the queue builds (see backlog and lag)".into());
        }
    }
    if p95_over && hints.is_empty() {
        hints.push("latency above target with no broken dependency and no backlog: CPU is the likely limit (on a 2-core machine the load generator shares it)".into());
        advice.push("compare per-process CPU (pidstat) and run k6 from another machine to separate generator and system".into());
    }
}

/// The report of a finished k6 run (its record holds k6's summary export).
pub fn load_test(run: &Json, context: &Context) -> Json {
    let metrics = &run["summary"]["metrics"];
    let duration = &metrics["http_req_duration"];
    let requests = metrics["http_reqs"]["count"].as_f64();
    let rate = metrics["http_reqs"]["rate"].as_f64();
    // In k6's summary export a Rate's `passes` counts true values: for http_req_failed
    // that is the failed requests.
    let failed = metrics["http_req_failed"]["passes"].as_f64().unwrap_or(0.0);
    let error_rate = requests.filter(|r| *r > 0.0).map(|r| failed / r);
    let p95 = duration["p(95)"].as_f64();
    let p99 = duration["p(99)"].as_f64();
    let offered = run["rate"].as_f64();
    // An iteration of a multi-request scenario makes several requests: compare
    // iterations with the offered rate.
    let iterations = metrics["iterations"]["rate"].as_f64();
    let achieved = iterations.zip(offered).map(|(i, o)| i / o);
    let dropped = metrics["dropped_iterations"]["count"]
        .as_f64()
        .unwrap_or(0.0);

    let checks = vec![
        check("p95 latency (ms)", p95, P95_TARGET_MS, true, " ms"),
        check("p99 latency (ms)", p99, P99_TARGET_MS, true, " ms"),
        check("error rate", error_rate, ERROR_RATE_TARGET, true, ""),
        check(
            "offered rate achieved",
            achieved,
            RATE_ACHIEVED_TARGET,
            false,
            "",
        ),
    ];
    let mut errors = Vec::new();
    if failed > 0.0 {
        errors.push(
            json!({ "what": "HTTP requests failed (status ≥ 400 or no answer)", "count": failed }),
        );
    }
    for (name, check) in run["summary"]["root_group"]["checks"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if check["fails"].as_f64().unwrap_or(0.0) > 0.0 {
            errors
                .push(json!({ "what": format!("check failed: {name}"), "count": check["fails"] }));
        }
    }
    if dropped > 0.0 {
        errors.push(json!({ "what": "iterations k6 dropped (no free VU at their start time)", "count": dropped }));
    }
    let mut hint_list: Vec<String> = Vec::new();
    let mut advice: Vec<String> = Vec::new();
    if dropped > 0.0 {
        hint_list
            .push("k6 ran out of VUs: responses were slower than the arrival rate allows".into());
    }
    let p95_over = p95.is_some_and(|p| p > P95_TARGET_MS);
    hints(context, p95_over, &mut hint_list, &mut advice);
    if advice.is_empty() && checks.iter().all(|c| c["met"] == true) {
        advice.push("every target met: raise the rate to find the knee".into());
    }
    json!({
        "kind": "load-test",
        "run": run["id"],
        "scenario": run["scenario"],
        "status": run["status"],
        "throughput": {
            "requests": requests,
            "requestsPerSecond": rate,
            "iterationsPerSecond": iterations,
            "offeredPerSecond": offered,
        },
        "latencyMs": {
            "avg": duration["avg"], "p50": duration["med"], "p90": duration["p(90)"],
            "p95": p95, "p99": p99, "max": duration["max"],
        },
        "checks": checks,
        "errors": errors,
        "hints": hint_list,
        "recommendations": advice,
    })
}

/// The report of a drill.
pub fn drill(record: &Json) -> Json {
    let steps = record["steps"].as_array().cloned().unwrap_or_default();
    let failed: Vec<&Json> = steps.iter().filter(|s| s["status"] == "FAILED").collect();
    let opened_after = steps
        .get(3)
        .and_then(|s| s["detail"]["openedAfterMs"].as_u64());
    let mut findings: Vec<String> = Vec::new();
    let mut advice: Vec<String> = Vec::new();
    if let Some(ms) = opened_after {
        findings.push(format!(
            "the breaker opened {:.1} s into the outage",
            ms as f64 / 1000.0
        ));
        if ms > 20_000 {
            advice.push("the breaker took over 20 s to open: lower kafka.message_timeout_ms or relay.breaker.minimum_calls".into());
        }
    }
    if let Some(step) = failed.first() {
        findings.push(format!(
            "step {} ({}) failed: {}",
            step["step"],
            step["name"].as_str().unwrap_or("?"),
            step["detail"]
        ));
        if step["step"] == 4 {
            advice.push("the breaker never opened: check that the relay counts broker timeouts as failures and that the stop command really stops the broker".into());
        }
    }
    if steps
        .get(6)
        .is_some_and(|s| s["detail"]["observedHalfOpen"] == false)
    {
        findings.push(
            "HALF_OPEN lasted less than a scrape interval (the probes succeeded at once)".into(),
        );
    }
    let traffic = &record["traffic"];
    if traffic["failed"].as_u64().unwrap_or(0) > 0 {
        advice.push("authorizations failed during the outage: the outbox should keep the API answering; check ingest logs".into());
    }
    if advice.is_empty() && failed.is_empty() && record["status"] == "PASSED" {
        advice.push("the drill passed: nothing to change".into());
    }
    json!({
        "kind": "drill",
        "drill": record["id"],
        "status": record["status"],
        "steps": steps.iter().map(|s| json!({ "step": s["step"], "name": s["name"], "status": s["status"] })).collect::<Vec<_>>(),
        "traffic": traffic,
        "findings": findings,
        "recommendations": advice,
    })
}

/// The report of the live metrics: the last minute of scraped points.
pub fn live(context: &Context) -> Json {
    let points = &context.points;
    let avg = |key: &str| {
        let values: Vec<f64> = points.iter().filter_map(|p| p[key].as_f64()).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let max = |key: &str| {
        points
            .iter()
            .filter_map(|p| p[key].as_f64())
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let rps = avg("rps");
    let errors = avg("errorsPerSecond");
    let error_rate = rps.zip(errors).and_then(|(r, e)| (r > 0.0).then(|| e / r));
    let p95 = max("p95Ms");
    let checks = vec![
        check(
            "worst p95 of the last minute (ms)",
            p95,
            P95_TARGET_MS,
            true,
            " ms",
        ),
        check(
            "worst p99 of the last minute (ms)",
            max("p99Ms"),
            P99_TARGET_MS,
            true,
            " ms",
        ),
        check("5xx rate", error_rate, ERROR_RATE_TARGET, true, ""),
    ];
    let mut hint_list: Vec<String> = Vec::new();
    let mut advice: Vec<String> = Vec::new();
    hints(
        context,
        p95.is_some_and(|p| p > P95_TARGET_MS),
        &mut hint_list,
        &mut advice,
    );
    json!({
        "kind": "live",
        "window": { "points": points.len() },
        "throughput": { "requestsPerSecond": rps, "errorsPerSecond": errors },
        "checks": checks,
        "outboxBacklog": context.outbox_backlog,
        "consumerLag": context.consumer_lag.iter().map(|(g, l)| json!({ "group": g, "lag": l })).collect::<Vec<_>>(),
        "hints": hint_list,
        "recommendations": advice,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p95: f64, failed: f64) -> Json {
        json!({
            "id": "k6-1", "scenario": "authorize", "status": "PASSED", "rate": 100,
            "summary": { "metrics": {
                "http_reqs": { "count": 1000.0, "rate": 100.0 },
                "iterations": { "count": 1000.0, "rate": 99.0 },
                "http_req_failed": { "passes": failed, "fails": 1000.0 - failed, "value": failed / 1000.0 },
                "http_req_duration": { "avg": 5.0, "med": 4.0, "p(90)": 8.0, "p(95)": p95, "p(99)": 20.0, "max": 40.0 },
            }, "root_group": { "checks": { "status 200": { "passes": 1000 - failed as i64, "fails": failed as i64 } } } }
        })
    }

    #[test]
    fn a_run_within_targets_meets_every_check() {
        let report = load_test(&run(9.0, 0.0), &Context::default());
        assert!(
            report["checks"]
                .as_array()
                .expect("checks")
                .iter()
                .all(|c| c["met"] == true),
            "{report}"
        );
        assert!(report["errors"].as_array().expect("errors").is_empty());
        assert_eq!(
            report["recommendations"][0],
            "every target met: raise the rate to find the knee"
        );
    }

    #[test]
    fn a_slow_failing_run_names_its_errors_and_a_hint() {
        let context = Context {
            outbox_backlog: Some(5_000),
            consumer_lag: vec![("ledger".into(), 2_000)],
            ..Context::default()
        };
        let report = load_test(&run(30.0, 20.0), &context);
        let failed: Vec<&str> = report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|c| c["met"] == false)
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(failed, ["p95 latency (ms)", "error rate"]);
        assert_eq!(
            report["errors"].as_array().expect("errors").len(),
            2,
            "{report}"
        );
        let hints = report["hints"].to_string();
        assert!(
            hints.contains("outbox backlog 5000") && hints.contains("ledger lags 2000"),
            "{hints}"
        );
    }

    #[test]
    fn a_drill_whose_breaker_never_opened_says_so() {
        let record = json!({ "id": "drill-1", "status": "FAILED", "traffic": { "failed": 0 }, "steps": [
            { "step": 1, "name": "baseline", "status": "PASSED" },
            { "step": 2, "name": "broker outage", "status": "PASSED" },
            { "step": 3, "name": "payments accepted", "status": "PASSED" },
            { "step": 4, "name": "breaker OPEN", "status": "FAILED", "detail": { "reason": "never" } },
        ]});
        let report = drill(&record);
        assert!(
            report["findings"][0]
                .as_str()
                .expect("finding")
                .starts_with("step 4"),
            "{report}"
        );
        assert!(report["recommendations"][0]
            .as_str()
            .expect("advice")
            .contains("never opened"));
    }
}
