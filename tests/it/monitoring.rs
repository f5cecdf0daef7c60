//! The admin API (monitoring) against real shards and Redis: token required, every shard
//! read, a merchant's rate limit reset, the Redis idempotency layer cleared while MariaDB
//! keeps idempotency exact, every write audit-logged, real status codes.

use payrail_tests::stack::{Options, TestStack};
use payrail_tests::{authorize_body, free_port, http, services};

const TOKEN: &str = "test-admin-token-0123456789abcdef0123";

fn admin(addr: &str, method: &str, path: &str, token: Option<&str>) -> http::Reply {
    http::admin(addr, method, path, token, None)
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
    let settings = stack.settings[0].clone();
    let dir = stack.dir.join("monitoring");
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    let audit = dir.join("audit.jsonl");
    let listen = format!("127.0.0.1:{}", free_port());
    let _monitoring = services::start_monitoring(&dir, &listen, &token_file, &settings, "")
        .expect("monitoring starts");

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
