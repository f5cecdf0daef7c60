//! Operations against a real stack (MariaDB shards, Redis, a Kafka-protocol broker, ingest,
//! both workers, the ledger, pg-mock) with monitoring configured as in production:
//!
//! 1. the admin reads: job success rates and retry distribution, throughput, outbox lag,
//!    topic offsets and consumer lag, dead letters, breakers, reconciliation; bad input
//!    is a 4xx that changes nothing;
//! 2. the dashboard in headless Chromium: log in, run a k6 scenario, the chart updates,
//!    the void dead letter is replayed, and the replay releases the failed capture's hold
//!    at the PG (reconciliation clean again);
//! 3. the k6 history and its report survive a restart of monitoring;
//! 4. the circuit-breaker drill passes its nine steps against a SIGSTOPped broker, and a
//!    drill whose "outage" does not stop the broker fails at step 4;
//! 5. every write is in the audit log.

use payrail_tests::process::Proc;
use payrail_tests::stack::{Options, TestStack};
use payrail_tests::{authorize_body, free_port, http, repo_root, services, wait_until};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const TOKEN: &str = "operations-admin-token-0123456789abcdef";

fn get(addr: &str, path: &str) -> Value {
    let reply = http::admin(addr, "GET", path, Some(TOKEN), None);
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
    reply.json()
}

fn post(addr: &str, path: &str, body: Value) -> http::Reply {
    http::admin(addr, "POST", path, Some(TOKEN), Some(&body))
}

fn status_of(stack: &TestStack, payment_id: u64) -> String {
    let shard = (payment_id >> 42) as usize;
    stack
        .rows(
            shard,
            &format!("SELECT status FROM payment WHERE payment_id = {payment_id}"),
        )
        .first()
        .and_then(|r| r.first().cloned())
        .unwrap_or_default()
}

/// Starts monitoring for `stack` with every optional part configured; `drill_stop` is the
/// drill's stop command.
fn start_monitoring(stack: &TestStack, name: &str, listen: &str, drill: &str) -> Proc {
    let dir = stack.dir.join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    let key_hash_file = dir.join("api-key-hash");
    std::fs::write(&key_hash_file, "operations-api-key-hash-0123456789abcdef\n").expect("hash key");
    let ingest = &stack.settings[0];
    let ledger_config = &stack.workers[2].1;
    let mut instances: Vec<String> = stack
        .settings
        .iter()
        .map(|s| {
            format!(
                "{{ name = \"{}\", url = \"http://{}\" }}",
                s.instance, s.listen
            )
        })
        .collect();
    for settings in &stack.worker_settings {
        instances.push(format!(
            "{{ name = \"{}\", url = \"http://{}\" }}",
            settings.service, settings.listen
        ));
    }
    let bootstrap = stack
        .broker
        .as_ref()
        .map(|b| b.bootstrap())
        .unwrap_or_default();
    let extra = format!(
        "scrape_interval_ms = 500\n\
         reconcile_command = [\"{}\", \"--config\", \"{}\", \"reconcile\"]\n\
         instances = [{}]\n\n\
         [kafka]\nbootstrap_servers = \"{bootstrap}\"\n\n\
         [k6]\nscenarios_dir = \"{}\"\nbase_url = \"http://{}\"\nrate_max = 500\nduration_max_s = 60\n\n\
         [drill]\n{drill}base_url = \"http://{}\"\n\n\
         [api_keys]\nhash_key_file = \"{}\"\n",
        payrail_tests::bin_dir().join("ledger").display(),
        ledger_config.display(),
        instances.join(", "),
        repo_root().join("k6").display(),
        ingest.listen,
        ingest.listen,
        key_hash_file.display(),
    );
    services::start_monitoring(&dir, listen, &token_file, ingest, &extra).expect("monitoring")
}

fn drill_commands(stop: &str, resume: &str, extra: &str) -> String {
    format!("stop_broker = {stop}\nresume_broker = {resume}\n{extra}")
}

fn run_drill(addr: &str) -> Value {
    let started = post(addr, "/api/admin/drills", json!({}));
    assert_eq!(started.status, 202, "{}", started.text());
    let id = started.json()["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        post(addr, "/api/admin/drills", json!({})).status,
        409,
        "one drill at a time"
    );
    let mut record = Value::Null;
    assert!(
        wait_until(Duration::from_secs(240), || {
            record = get(addr, &format!("/api/admin/drills/{id}"));
            record["status"] != "RUNNING"
        }),
        "the drill did not finish: {record}"
    );
    record
}

fn audit_actions(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|l| format!("{} {}", l["action"].as_str().unwrap_or(""), l["status"]))
        .collect()
}

#[test]
fn operations_dashboard_k6_runner_dlq_replay_and_breaker_drill() {
    let stack = TestStack::start_with(
        "operations",
        Options {
            // Two instances: the drill must follow the breakers that opened, not any.
            ingest_instances: 2,
            workers: true,
            worker_toml:
                "[retry]\nattempts_max = 2\nbackoff_initial_ms = 50\nbackoff_max_ms = 100\n".into(),
            // The drill's breaker: quick to judge, a short open window, so the drill takes
            // seconds; the broker's timeouts are what opens it.
            ingest_toml:
                "[relay.breaker]\nminimum_calls = 5\nopen_wait_ms = 3000\nhalf_open_probes = 3\n"
                    .into(),
            kafka_toml: "message_timeout_ms = 3000\nrequest_timeout_ms = 2000\n".into(),
            ..Options::default()
        },
    );
    let api = stack.addr().to_owned();
    let broker_pid = stack
        .broker
        .as_ref()
        .and_then(|b| b.pid())
        .expect("broker pid");
    let listen = format!("127.0.0.1:{}", free_port());
    let drill = drill_commands(
        &format!("[\"kill\", \"-STOP\", \"{broker_pid}\"]"),
        &format!("[\"kill\", \"-CONT\", \"{broker_pid}\"]"),
        "open_within_s = 60\nclose_within_s = 90\n",
    );
    let mut monitoring = start_monitoring(&stack, "monitoring", &listen, &drill);
    let audit = stack.dir.join("monitoring/audit.jsonl");

    // A healthy payment and one whose capture fails for good → a settlement dead letter.
    let authorize = |merchant: &str, key: &str| {
        let reply = http::post(
            &api,
            "/api/payments/authorize",
            &authorize_body(merchant, 1200, key),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["paymentId"].as_u64().unwrap_or(0)
    };
    let healthy = authorize("M-2", "ops-healthy");
    let doomed = authorize("M-13", "ops-doomed");
    stack.pg_control(json!({"merchantId": "M-13", "failureRate": 1.0}));
    for (id, merchant) in [(healthy, "M-2"), (doomed, "M-13")] {
        let reply = http::post(
            &api,
            &format!("/api/payments/capture/{id}"),
            &json!({ "merchantId": merchant }),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert!(wait_until(Duration::from_secs(60), || status_of(
        &stack, doomed
    )
        == "CAPTURE_FAILED"));
    assert!(wait_until(Duration::from_secs(60), || status_of(
        &stack, healthy
    ) == "CAPTURED"));

    // 1. The reads.
    let jobs = get(&listen, "/api/admin/jobs");
    assert!(
        jobs["void"]["byStatus"].is_object(),
        "void jobs listed: {jobs}"
    );
    let unresolved = get(&listen, "/api/admin/unresolved");
    assert_eq!(
        unresolved["unresolved"],
        json!([]),
        "nothing unknown here: {unresolved}"
    );
    assert_eq!(unresolved["slaSeconds"], 60, "{unresolved}");
    assert_eq!(jobs["settlement"]["byStatus"]["SUCCEEDED"], 1, "{jobs}");
    assert_eq!(jobs["settlement"]["byStatus"]["FAILED"], 1, "{jobs}");
    assert_eq!(jobs["settlement"]["successRate"], 0.5, "{jobs}");
    let attempts = jobs["settlement"]["attempts"].as_array().expect("attempts");
    assert!(
        attempts.contains(&json!({"attempts": 2, "jobs": 1})),
        "the failed job took both attempts: {jobs}"
    );
    let throughput = get(&listen, "/api/admin/throughput?minutes=5");
    let created: i64 = throughput["minutes"]
        .as_array()
        .expect("minutes")
        .iter()
        .filter_map(|m| m["payments"].as_i64())
        .sum();
    assert_eq!(created, 2, "{throughput}");
    let mut outbox = Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            outbox = get(&listen, "/api/admin/outbox");
            outbox["shards"]
                .as_array()
                .is_some_and(|s| s.iter().all(|x| x["backlog"] == 0))
        }),
        "{outbox}"
    );
    let mut kafka = Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            kafka = get(&listen, "/api/admin/kafka");
            let settlement = kafka["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|g| g["group"] == "settlement-worker");
            settlement.is_some_and(|g| {
                g["lag"] == 0
                    && g["topics"]
                        .to_string()
                        .contains("payment.capture-requested")
            })
        }),
        "the settlement worker's committed offsets are read, lag 0 once drained: {kafka}"
    );
    let capture_requested = kafka["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|t| t["topic"] == "payment.capture-requested")
        .expect("topic listed");
    assert_eq!(capture_requested["messages"], 2, "{kafka}");
    let letters = get(&listen, "/api/admin/dlq/settlement.dlq");
    assert_eq!(letters["total"], 1, "{letters}");
    let letter = &letters["messages"][0];
    assert_eq!(
        letter["letter"]["originalTopic"],
        "payment.capture-requested"
    );
    assert_eq!(letter["letter"]["errorType"], "RetriesExhausted");
    // Bad input: 4xx, nothing replayed.
    for (path, body, status) in [
        (
            "/api/admin/dlq/payment.captured/replay",
            json!({"partition": 0, "offset": 0}),
            404,
        ),
        (
            "/api/admin/dlq/settlement.dlq/replay",
            json!({"partition": 0}),
            400,
        ),
        (
            "/api/admin/dlq/settlement.dlq/replay",
            json!({"partition": 0, "offset": 999}),
            404,
        ),
        (
            "/api/admin/loadtests",
            json!({"scenario": "../etc/passwd", "rate": 10, "durationSeconds": 5}),
            400,
        ),
        (
            "/api/admin/loadtests",
            json!({"scenario": "authorize", "rate": 100000, "durationSeconds": 5}),
            400,
        ),
    ] {
        let reply = post(&listen, path, body);
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
    }
    assert_eq!(
        http::admin(&listen, "GET", "/api/admin/kafka", None, None).status,
        401
    );
    assert_eq!(
        status_of(&stack, doomed),
        "CAPTURE_FAILED",
        "nothing replayed by bad input"
    );
    let breakers = get(&listen, "/api/admin/breakers");
    let ingest = breakers["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["name"] == "ingest-1")
        .expect("ingest-1 scraped");
    assert_eq!(ingest["up"], true, "{breakers}");
    assert_eq!(
        ingest["breakers"]["kafka-publisher"], "CLOSED",
        "{breakers}"
    );
    assert_eq!(ingest["breakers"]["pg-authorize"], "CLOSED", "{breakers}");
    // The failed capture's release met the same outage: its void is a dead letter too, and
    // the reconciliation names the hold the PG still keeps.
    assert!(
        wait_until(Duration::from_secs(60), || stack.count_all(&format!(
            "SELECT COUNT(*) FROM void_request WHERE job_id = {doomed} AND status = 'FAILED'"
        )) == 1),
        "the release void failed for good"
    );
    let reconciliation = get(&listen, "/api/admin/reconciliation");
    assert_eq!(reconciliation["clean"], false, "{reconciliation}");
    assert!(
        reconciliation.to_string().contains(&format!(
            "payment {doomed} (CAPTURE_FAILED): the PG still holds"
        )),
        "{reconciliation}"
    );

    // 2. The dashboard in Chromium: k6 run, chart, DLQ replay (the PG has recovered), the
    //    merchant_auth = off warning, a merchant key created and rolled.
    stack.pg_control(json!({"merchantId": "M-13", "failureRate": 0.0}));
    let shots = repo_root().join("target/dashboard-screenshots");
    let output = std::process::Command::new("node")
        .arg(repo_root().join("tests/browser/dashboard.mjs"))
        .env("DASHBOARD_URL", format!("http://{listen}/admin"))
        .env("ADMIN_TOKEN", TOKEN)
        .env("SCREENSHOTS", &shots)
        .env("DLQ_TOPIC", "void.dlq")
        .env("NODE_PATH", repo_root().join("tests/browser/node_modules"))
        .current_dir(repo_root().join("tests/browser"))
        .output()
        .expect("node runs (apt nodejs; npm ci in tests/browser)");
    let seen = String::from_utf8_lossy(&output.stdout).to_string();
    println!("dashboard: {seen}\nscreenshots in {}", shots.display());
    assert!(
        output.status.success(),
        "dashboard test: {seen}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for shot in [
        "1-login",
        "3-k6-report",
        "4-overview-chart",
        "5-dlq-replayed",
        "6-keys",
    ] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot} saved");
    }
    assert!(
        wait_until(Duration::from_secs(60), || {
            http::get(&stack.pg_addr, &format!("/v1/transactions/void-{doomed}")).json()["decision"]
                == "APPROVED"
        }),
        "the void dead letter replayed from the dashboard releases the hold at the PG"
    );
    assert_eq!(
        status_of(&stack, doomed),
        "CAPTURE_FAILED",
        "released, never captured"
    );
    let reconciliation = get(&listen, "/api/admin/reconciliation");
    assert_eq!(reconciliation["clean"], true, "{reconciliation}");

    // 3. The k6 run is in the history with its summary; it and its report survive a restart.
    let runs = get(&listen, "/api/admin/loadtests");
    assert_eq!(
        runs["runs"].as_array().map(Vec::len),
        Some(1),
        "one run: {runs}"
    );
    let run = runs["runs"][0].clone();
    assert_eq!(run["scenario"], "authorize", "{runs}");
    assert_eq!(run["status"], "PASSED", "{runs}");
    let id = run["id"].as_str().unwrap_or_default().to_owned();
    let report = get(&listen, &format!("/api/admin/reports/loadtests/{id}"));
    let requests = report["throughput"]["requests"].as_f64().unwrap_or(0.0);
    assert!(requests >= 250.0, "about 50/s for 6 s: {report}");
    assert!(report["latencyMs"]["p99"].as_f64().is_some(), "{report}");
    assert_eq!(
        report["checks"].as_array().map(Vec::len),
        Some(4),
        "{report}"
    );
    assert_eq!(
        report["llm"]["available"], false,
        "no key configured: {report}"
    );
    monitoring.stop();
    let monitoring = start_monitoring(&stack, "monitoring", &listen, &drill);
    let after = get(&listen, &format!("/api/admin/loadtests/{id}"));
    assert_eq!(
        after["status"], "PASSED",
        "history survives a restart: {after}"
    );
    assert!(after["summary"]["metrics"]["http_reqs"]["count"]
        .as_f64()
        .is_some());

    // 4. The drill: nine steps against a SIGSTOPped broker.
    let record = run_drill(&listen);
    let statuses: Vec<String> = record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["name"].as_str().unwrap_or(""),
                s["status"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(record["status"], "PASSED", "{statuses:#?}\n{record}");
    assert_eq!(statuses.len(), 9);
    assert!(
        statuses.iter().all(|s| s.ends_with("PASSED")),
        "{statuses:#?}"
    );
    assert_eq!(record["traffic"]["failed"], 0, "{record}");
    let left_open = record["steps"][6]["detail"]["breakers"]
        .as_object()
        .is_some_and(|b| b.values().any(|s| s == "OPEN"));
    assert!(
        !left_open,
        "step 7 passes only once every opened breaker left OPEN: {record}"
    );
    let drill_report = get(
        &listen,
        &format!(
            "/api/admin/reports/drills/{}",
            record["id"].as_str().unwrap_or("")
        ),
    );
    assert_eq!(drill_report["status"], "PASSED", "{drill_report}");
    assert!(
        drill_report["findings"][0]
            .as_str()
            .is_some_and(|f| f.contains("opened")),
        "{drill_report}"
    );
    assert!(wait_until(Duration::from_secs(60), || get(
        &listen,
        "/api/admin/reconciliation"
    )["clean"]
        == true));

    // A drill whose "outage" does not stop anything: the breaker never opens → FAILED.
    let listen_noop = format!("127.0.0.1:{}", free_port());
    let _noop = start_monitoring(
        &stack,
        "monitoring-noop",
        &listen_noop,
        &drill_commands("[\"true\"]", "[\"true\"]", "open_within_s = 5\n"),
    );
    let failed = run_drill(&listen_noop);
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(failed["steps"][3]["status"], "FAILED", "{failed}");
    assert!(failed["steps"][3]["detail"]["reason"]
        .to_string()
        .contains("never opened"));

    // 5. Every write audited: the k6 start, the replay, the drill.
    let actions = audit_actions(&audit);
    for expected in ["load-test-start 202", "dlq-replay 200", "drill-start 202"] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} in {actions:?}"
        );
    }
    assert!(
        actions.iter().any(|a| a == "dlq-replay 404"),
        "refused writes are audited too: {actions:?}"
    );
    drop(monitoring);
}
