//! The admin API (monitoring) against real shards and Redis: token required, every shard
//! read, a merchant's rate limit reset, the Redis idempotency layer cleared while MariaDB
//! keeps idempotency exact, every write audit-logged, real status codes.

use payrail_tests::stack::{Options, TestStack};
use payrail_tests::{authorize_body, free_port, http, services};
use std::path::PathBuf;

const TOKEN: &str = "test-admin-token-0123456789abcdef0123";

fn admin(addr: &str, method: &str, path: &str, token: Option<&str>) -> http::Reply {
    http::admin(addr, method, path, token, None)
}

/// Monitoring on the stack's shards and Redis, with [`TOKEN`] as its write-scoped admin
/// token: (the process, its address, its directory).
fn start_monitoring(stack: &TestStack) -> (payrail_tests::process::Proc, String, PathBuf) {
    let dir = stack.dir.join("monitoring");
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    let listen = format!("127.0.0.1:{}", free_port());
    let monitoring = services::start_monitoring(&dir, &listen, &token_file, &stack.settings[0], "")
        .expect("monitoring starts");
    (monitoring, listen, dir)
}

#[test]
fn admin_api_reads_every_shard_and_audits_its_writes() {
    let mut stack = TestStack::start_with(
        "monitoring",
        Options {
            ingest_toml: "[rate_limits.authorize]\nlimit = 3\nwindow_ms = 60000\n".into(),
            ..Options::default()
        },
    );
    let (_monitoring, listen, dir) = start_monitoring(&stack);
    let audit = dir.join("audit.jsonl");

    // Payments on both shards (odd merchant numbers → shard 2, even → shard 1).
    let api = stack.addr().to_owned();
    let mut authorized = 0;
    for (merchant, n) in [("MERCHANT-7", 3), ("MERCHANT-8", 2)] {
        for i in 0..n {
            let reply = http::post(
                &api,
                "/api/payments/authorize",
                &authorize_body(merchant, 1000, &format!("{merchant}-{i}")),
            );
            assert_eq!(reply.status, 200, "{}", reply.text());
            authorized += 1;
        }
    }

    // No token, a wrong token: 401, nothing read.
    for token in [None, Some("wrong-token-of-same-len")] {
        let reply = admin(&listen, "GET", "/api/admin/stats", token);
        assert_eq!(reply.status, 401, "{}", reply.text());
        assert_eq!(reply.code(), "UNAUTHORIZED");
    }

    let stats = admin(&listen, "GET", "/api/admin/stats", Some(TOKEN)).json();
    let shards = stats["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 2, "{stats}");
    assert!(shards.iter().all(|s| s["up"] == true), "{stats}");
    let total: i64 = shards
        .iter()
        .filter_map(|s| s["payments"]["AUTHORIZED"].as_i64())
        .sum();
    assert_eq!(total, authorized, "{stats}");
    assert!(
        shards
            .iter()
            .all(|s| s["payments"]["AUTHORIZED"].as_i64().unwrap_or(0) > 0),
        "payments on both shards: {stats}"
    );

    let recent = admin(
        &listen,
        "GET",
        "/api/admin/payments?merchantId=MERCHANT-7&limit=10",
        Some(TOKEN),
    )
    .json();
    let payments = recent["payments"].as_array().expect("payments");
    assert_eq!(payments.len(), 3, "{recent}");
    assert!(payments.iter().all(|p| p["merchantId"] == "MERCHANT-7"));
    let all = admin(&listen, "GET", "/api/admin/payments?limit=4", Some(TOKEN)).json();
    assert_eq!(
        all["payments"].as_array().map(Vec::len),
        Some(4),
        "limit honoured across shards: {all}"
    );

    // The rate limit: exhausted, reset by the admin, then the merchant is served again.
    let over = http::post(
        &api,
        "/api/payments/authorize",
        &authorize_body("MERCHANT-7", 1000, "MERCHANT-7-over"),
    );
    assert_eq!(over.status, 429, "{}", over.text());
    let reset = admin(
        &listen,
        "POST",
        "/api/admin/rate-limits/MERCHANT-7/reset",
        Some(TOKEN),
    );
    assert_eq!(reset.status, 200, "{}", reset.text());
    assert!(
        reset.json()["countersDeleted"].as_i64().unwrap_or(0) >= 1,
        "{}",
        reset.text()
    );
    let again = http::post(
        &api,
        "/api/payments/authorize",
        &authorize_body("MERCHANT-7", 1000, "MERCHANT-7-over"),
    );
    assert_eq!(again.status, 200, "{}", again.text());

    // The Redis idempotency layer cleared: a retry is still a replay (from MariaDB).
    let cleared = admin(
        &listen,
        "POST",
        "/api/admin/idempotency-cache/clear",
        Some(TOKEN),
    );
    assert_eq!(cleared.status, 200, "{}", cleared.text());
    assert!(
        cleared.json()["cleared"].as_i64().unwrap_or(0) >= 1,
        "{}",
        cleared.text()
    );
    let replay = http::post(
        &api,
        "/api/payments/authorize",
        &authorize_body("MERCHANT-8", 1000, "MERCHANT-8-0"),
    );
    assert_eq!(replay.status, 200);
    assert_eq!(replay.header("Idempotent-Replayed"), Some("true"));
    let stats = admin(&listen, "GET", "/api/admin/stats", Some(TOKEN)).json();
    let total: i64 = stats["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["payments"]["AUTHORIZED"].as_i64())
        .sum();
    assert_eq!(total, authorized + 1, "the replay made no payment: {stats}");

    // Bad input and unknown routes: clear 4xx.
    assert_eq!(
        admin(
            &listen,
            "POST",
            "/api/admin/rate-limits/not%20a%20merchant/reset",
            Some(TOKEN)
        )
        .status,
        400
    );
    assert_eq!(
        admin(&listen, "GET", "/api/admin/nothing-here", Some(TOKEN)).status,
        404
    );

    // Redis down: the write answers 503, and is audited as failed.
    stack.redis.stop();
    let down = admin(
        &listen,
        "POST",
        "/api/admin/rate-limits/MERCHANT-7/reset",
        Some(TOKEN),
    );
    assert_eq!(down.status, 503, "{}", down.text());

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let actions: Vec<(&str, i64)> = lines
        .iter()
        .map(|l| {
            (
                l["action"].as_str().unwrap_or(""),
                l["status"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("rate-limit-reset", 200),
            ("idempotency-cache-clear", 200),
            ("rate-limit-reset", 503)
        ],
        "every write audited once with its outcome"
    );
}

/// Synthetic history on shard 1, rows `from..to` of 200,000: DECLINED payments spread over
/// 30 days (every 4th with a balanced hold and release in the ledger), every 10th with a
/// finished job of each kind, every 2nd with a published outbox event and an idempotency
/// record (of the last 17 hours). DECLINED needs no PG record, so the whole history
/// reconciles clean.
fn seed_history(shard: &payrail_tests::mariadb::MariaDb, database: &str, from: u64, to: u64) {
    let base = (1u64 << 42) + 10_000_000;
    let seq = format!("seq_{from}_to_{}", to - 1);
    // Ids grow with time, as the sequence gives them: row 200,000 is the newest.
    let at = "UTC_TIMESTAMP(3) - INTERVAL (200001 - seq) * 13 SECOND";
    let mut sql = format!(
        "INSERT INTO payment (payment_id, merchant_id, status, amount, currency, idempotency_key, created_at, updated_at) \
         SELECT {base} + seq, CONCAT('SYN-', seq MOD 50), 'DECLINED', 1000, 'KRW', CONCAT('syn-', seq), {at}, {at} FROM {seq};\n"
    );
    for (event, account, debit, credit) in [
        (0, "holds", 1000, 0),
        (0, "pg_authorizations", 0, 1000),
        (1, "holds", 0, 1000),
        (1, "pg_authorizations", 1000, 0),
    ] {
        sql.push_str(&format!(
            "INSERT INTO ledger_entry (event_id, payment_id, merchant_id, account, debit, credit, currency, at) \
             SELECT {base} + seq * 2 + {event}, {base} + seq, CONCAT('SYN-', seq MOD 50), CONCAT('{account}:SYN-', seq MOD 50), {debit}, {credit}, 'KRW', {at} \
             FROM {seq} WHERE seq MOD 4 = 0;\n"
        ));
    }
    for table in ["settlement_request", "refund_request", "void_request"] {
        sql.push_str(&format!(
            "INSERT INTO {table} (job_id, payment_id, merchant_id, amount, currency, status, attempts, next_attempt_at, source_event_id, source_partition, source_offset, source_payload, created_at, updated_at) \
             SELECT {base} + seq, {base} + seq, CONCAT('SYN-', seq MOD 50), 1000, 'KRW', IF(seq MOD 20 = 0, 'FAILED', 'SUCCEEDED'), 1 + seq MOD 3, {at}, seq, 0, seq, '', {at}, {at} \
             FROM {seq} WHERE seq MOD 10 = 0;\n"
        ));
    }
    let recent = "UTC_TIMESTAMP(3) - INTERVAL (200001 - seq) * 300000 MICROSECOND";
    sql.push_str(&format!(
        "INSERT INTO outbox_event (event_id, payment_id, merchant_id, topic, event_type, payload, created_at, published_at) \
         SELECT {base} + seq, {base} + seq, CONCAT('SYN-', seq MOD 50), 'payment.declined', 'PAYMENT_DECLINED', '{{}}', {at}, {at} + INTERVAL 50000 MICROSECOND \
         FROM {seq} WHERE seq MOD 2 = 0;\n\
         INSERT INTO idempotency_record (merchant_id, idempotency_key, request_fingerprint, state, owner_token, payment_id, response_status, created_at, lease_until) \
         SELECT CONCAT('SYN-', seq MOD 50), CONCAT('syn-', seq), 'synthetic', 'COMPLETED', 0, {base} + seq, 402, {recent}, {recent} \
         FROM {seq} WHERE seq MOD 2 = 0;\n\
         ANALYZE TABLE payment, ledger_entry, settlement_request, refund_request, void_request, outbox_event, idempotency_record;"
    ));
    shard
        .sql(database, &sql)
        .unwrap_or_else(|e| panic!("seeding rows {from}..{to}: {e}"));
}

/// Issue 13, part 5: with 200,000 payments (and their ledger lines, jobs, outbox events
/// and idempotency records) on a shard, every statement the appliance's services sent to
/// the shards while the admin API answered each of its reads and the reconciliation ran
/// reads along an index (`EXPLAIN` of each, as logged by the general log); the admin's
/// payment list pages by keyset; and the reconciliation's peak memory does not grow with
/// the tables (20,000 payments against 200,000).
#[test]
fn admin_and_reconciliation_reads_use_indexes_and_bounded_memory() {
    let stack = TestStack::start_with(
        "bounded_reads",
        Options {
            own_shards: true,
            ..Options::default()
        },
    );
    let settings = &stack.settings[0];
    let (_monitoring, listen, _) = start_monitoring(&stack);
    let ledger = services::WorkerSettings {
        service: "ledger".into(),
        listen: format!("127.0.0.1:{}", free_port()),
        shards: settings.shards.clone(),
        db_password_file: settings.db_password_file.clone(),
        bootstrap_servers: "127.0.0.1:9".into(),
        kafka_toml: String::new(),
        pg_url: format!("http://{}", stack.pg_addr),
        extra_toml: String::new(),
    };
    let ledger_config = stack.dir.join("ledger.toml");
    std::fs::write(&ledger_config, services::ledger_config(&ledger)).expect("ledger config");
    let shard = &stack.shards[0];
    seed_history(shard, &stack.database, 1, 20_001);
    let (clean, report, small_kib) = services::reconcile_measured(&ledger_config);
    assert!(clean, "{report}");
    assert!(report.contains("20000 payments"), "{report}");
    seed_history(shard, &stack.database, 20_001, 200_001);

    for s in &stack.shards {
        s.root_sql("SET GLOBAL log_output = 'TABLE'; TRUNCATE mysql.general_log; SET GLOBAL general_log = ON")
            .expect("general log on");
    }
    for path in [
        "/api/admin/stats",
        "/api/admin/payments?limit=50",
        "/api/admin/payments?merchantId=SYN-7&limit=50",
        "/api/admin/jobs",
        "/api/admin/unresolved",
        "/api/admin/throughput?minutes=60",
        "/api/admin/outbox",
    ] {
        let reply = admin(&listen, "GET", path, Some(TOKEN));
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    // Pages by keyset: the second page continues below the first, with no overlap.
    let first = admin(&listen, "GET", "/api/admin/payments?limit=5", Some(TOKEN)).json();
    let cursor = first["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = admin(
        &listen,
        "GET",
        &format!("/api/admin/payments?limit=5&cursor={cursor}"),
        Some(TOKEN),
    )
    .json();
    let ids = |page: &serde_json::Value| -> Vec<u64> {
        page["payments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["paymentId"].as_u64())
            .collect()
    };
    // The newest synthetic rows are the last: 200,000, 199,999, ...
    let base = (1u64 << 42) + 10_000_000;
    let rows = |from: u64| (0..5).map(|n| base + from - n).collect::<Vec<_>>();
    assert_eq!(ids(&first), rows(200_000), "{first}");
    assert_eq!(ids(&second), rows(199_995), "{second}");
    let bad = admin(
        &listen,
        "GET",
        "/api/admin/payments?cursor=1:2",
        Some(TOKEN),
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    let (clean, report, large_kib) = services::reconcile_measured(&ledger_config);
    for s in &stack.shards {
        s.root_sql("SET GLOBAL general_log = OFF")
            .expect("general log off");
    }
    assert!(clean, "{report}");
    assert!(report.contains("200000 payments"), "{report}");
    eprintln!("reconciliation peak RSS: {small_kib} KiB over 20,000 payments, {large_kib} KiB over 200,000");
    assert!(
        large_kib < small_kib + 4 * 1024 && large_kib < 64 * 1024,
        "reconciliation memory grew with the tables: {small_kib} KiB → {large_kib} KiB"
    );

    // EXPLAIN every distinct SELECT the services sent meanwhile (the test's own root
    // sessions excluded), with its logged parameters.
    let mut violations = Vec::new();
    let mut explained = 0;
    for (n, s) in stack.shards.iter().enumerate() {
        let logged = s
            .root_sql(
                "SELECT REPLACE(REPLACE(argument, '\\n', ' '), '\\t', ' ') FROM mysql.general_log \
                 WHERE user_host LIKE 'payrail%' AND command_type IN ('Query', 'Execute') \
                 AND argument LIKE 'SELECT%FROM%'",
            )
            .expect("general log");
        let mut seen = std::collections::BTreeSet::new();
        for row in logged {
            let statement = row[0].clone();
            // A prepared statement's text; its executions are logged with their values.
            if statement.contains('?') {
                continue;
            }
            let shape: String = statement.chars().filter(|c| !c.is_ascii_digit()).collect();
            if !seen.insert(shape) {
                continue;
            }
            explained += 1;
            let plan = s
                .sql(&stack.database, &format!("EXPLAIN {statement}"))
                .unwrap_or_else(|e| panic!("EXPLAIN {statement}: {e}"));
            for step in plan {
                // id, select_type, table, type, possible_keys, key, key_len, ref, rows, Extra
                let (access, rows, extra) = (&step[3], &step[8], step.get(9).map_or("", |e| e));
                let rows: u64 = rows.parse().unwrap_or(0);
                // A scan of the table, or of an index and each row it points to; a plan
                // over a table of a few rows (shard 2 here) shows only that it is small.
                let full_scan = access == "ALL";
                let index_rows_scan = access == "index" && !extra.contains("Using index");
                if (full_scan || index_rows_scan) && rows >= 1000 {
                    violations.push(format!("shard {}: {statement}\n    → {step:?}", n + 1));
                }
            }
        }
    }
    assert!(explained >= 15, "only {explained} statements logged");
    assert!(
        violations.is_empty(),
        "reads that scan a table:\n{}",
        violations.join("\n")
    );
}
