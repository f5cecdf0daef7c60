//! Per-merchant rate limits: 429 with Retry-After, refusals do not consume budget, every
//! counter has a TTL, and the budget comes back after the window.

use payrail_tests::authorize_body;
use payrail_tests::http;
use payrail_tests::stack::{Options, TestStack};
use std::time::{Duration, Instant};

#[test]
fn limits_refuse_with_retry_after_and_recover() {
    let stack = TestStack::start_with(
        "rate_limit",
        Options {
            ingest_toml: "[rate_limits.authorize]\nlimit = 5\nwindow_ms = 3000\n[rate_limits.capture]\nlimit = 2\nwindow_ms = 60000\n".into(),
            ..Options::default()
        },
    );
    let addr = stack.addr();
    let started = Instant::now();
    let statuses: Vec<u16> = (0..9)
        .map(|i| {
            http::post(
                addr,
                "/api/payments/authorize",
                &authorize_body("M-6", 10, &format!("rl-{i}")),
            )
            .status
        })
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429, 429, 429, 429]);
    let refused = http::post(
        addr,
        "/api/payments/authorize",
        &authorize_body("M-6", 10, "rl-x"),
    );
    assert_eq!(refused.status, 429);
    assert_eq!(refused.code(), "RATE_LIMIT_EXCEEDED");
    let retry_after: u64 = refused
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
    // Refusals did not count, and the counter expires.
    assert_eq!(stack.redis.cli(&["GET", "payrail:rl:authorize:M-6"]), "5");
    let ttl: i64 = stack
        .redis
        .cli(&["PTTL", "payrail:rl:authorize:M-6"])
        .parse()
        .unwrap_or(-1);
    assert!(
        ttl > 0 && ttl <= 3000,
        "counter must carry a TTL, got {ttl}"
    );
    // Other merchants and other actions have their own budgets.
    assert_eq!(
        http::post(
            addr,
            "/api/payments/authorize",
            &authorize_body("M-8", 10, "rl-other")
        )
        .status,
        200
    );
    assert_eq!(
        stack.count_all("SELECT COUNT(*) FROM payment"),
        6,
        "refused requests write nothing"
    );

    // After the window: exactly the budget again.
    std::thread::sleep(
        Duration::from_millis(3100).saturating_sub(started.elapsed()) + Duration::from_millis(100),
    );
    let statuses: Vec<u16> = (0..6)
        .map(|i| {
            http::post(
                addr,
                "/api/payments/authorize",
                &authorize_body("M-6", 10, &format!("rl-2-{i}")),
            )
            .status
        })
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429]);

    // Capture has its own limit.
    let ids: Vec<u64> = (0..3)
        .map(|i| {
            http::post(
                addr,
                "/api/payments/authorize",
                &authorize_body("M-10", 10, &format!("c-{i}")),
            )
            .json()["paymentId"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect();
    let captures: Vec<u16> = ids
        .iter()
        .map(|id| {
            http::post(
                addr,
                &format!("/api/payments/capture/{id}"),
                &serde_json::json!({"merchantId": "M-10"}),
            )
            .status
        })
        .collect();
    assert_eq!(captures, vec![200, 200, 429]);
}
