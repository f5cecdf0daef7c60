//! Idempotency: byte-identical replays, 422 on a changed body, one payment and one PG call
//! under concurrent retries, and exact behaviour with Redis gone.

use payrail_tests::authorize_body;
use payrail_tests::http;
use payrail_tests::stack::TestStack;
use serde_json::json;
use std::sync::{Arc, Barrier};

#[test]
fn replays_are_byte_identical_and_changed_bodies_are_refused() {
    let stack = TestStack::start("idempotency_replay");
    let addr = stack.addr();
    let first = http::post(
        addr,
        "/api/payments/authorize",
        &authorize_body("M-1", 1234, "k-1"),
    );
    assert_eq!(first.status, 200);
    assert_eq!(first.header("Idempotent-Replayed"), None);
    // Same request, fields in another order and other whitespace: the same request.
    let reordered =
        br#"{ "idempotencyKey":"k-1", "currency":"KRW", "amount":1234, "merchantId":"M-1" }"#;
    let again = http::request(
        addr,
        "POST",
        "/api/payments/authorize",
        &[("Content-Type", "application/json")],
        Some(reordered),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.status, 200);
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(again.body, first.body, "a replay must be byte-identical");
    // The key in the header instead of the body: the same request too.
    let header_only = br#"{"merchantId":"M-1","amount":1234,"currency":"KRW"}"#;
    let by_header = http::request(
        addr,
        "POST",
        "/api/payments/authorize",
        &[
            ("Content-Type", "application/json"),
            ("Idempotency-Key", "k-1"),
        ],
        Some(header_only),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_header.body, first.body);
    // A changed amount or currency: 422, nothing written.
    for changed in [
        authorize_body("M-1", 1235, "k-1"),
        json!({"merchantId": "M-1", "amount": 1234, "currency": "USD", "idempotencyKey": "k-1"}),
    ] {
        let reply = http::post(addr, "/api/payments/authorize", &changed);
        assert_eq!(reply.status, 422, "{}", reply.text());
        assert_eq!(reply.code(), "IDEMPOTENCY_KEY_MISMATCH");
    }
    // Keys are per merchant and exact (case matters).
    assert_eq!(
        http::post(
            addr,
            "/api/payments/authorize",
            &authorize_body("M-3", 1234, "k-1")
        )
        .header("Idempotent-Replayed"),
        None
    );
    assert_eq!(
        http::post(
            addr,
            "/api/payments/authorize",
            &authorize_body("M-1", 1234, "K-1")
        )
        .header("Idempotent-Replayed"),
        None
    );
    assert_eq!(stack.count_all("SELECT COUNT(*) FROM payment"), 3);
    assert_eq!(stack.pg_stats()["calls"]["authorize"], 3);

    // The replay also comes from MariaDB when Redis lost the entry (flushed).
    assert_eq!(stack.redis.cli(&["FLUSHALL"]), "OK");
    let from_db = http::post(
        addr,
        "/api/payments/authorize",
        &authorize_body("M-1", 1234, "k-1"),
    );
    assert_eq!(from_db.body, first.body);
    assert_eq!(from_db.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(
        stack.pg_stats()["calls"]["authorize"],
        3,
        "a replay never calls the PG"
    );
}

#[test]
fn fifty_concurrent_retries_make_one_payment_and_one_pg_call() {
    let stack = TestStack::start("idempotency_concurrent");
    // Slow PG so every retry arrives while the first is in flight.
    stack.pg_control(json!({"latencyMinMs": 300, "latencyMaxMs": 300}));
    let addr = stack.addr().to_owned();
    let barrier = Arc::new(Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let addr = addr.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                http::post(
                    &addr,
                    "/api/payments/authorize",
                    &authorize_body("M-50", 5000, "same-key"),
                )
            })
        })
        .collect();
    let replies: Vec<_> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| panic!("client thread panicked"))
        })
        .collect();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let in_use = replies
        .iter()
        .filter(|r| r.status == 409 && r.code() == "IDEMPOTENCY_KEY_IN_USE")
        .count();
    assert!(ok >= 1, "one request must win");
    assert_eq!(
        ok + in_use,
        50,
        "every other request is a replay or 409 in use: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let ids: std::collections::HashSet<u64> = replies
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.json()["paymentId"].as_u64())
        .collect();
    assert_eq!(ids.len(), 1, "all successful answers name the same payment");
    assert_eq!(stack.count_all("SELECT COUNT(*) FROM payment"), 1);
    assert_eq!(
        stack.pg_stats()["calls"]["authorize"],
        1,
        "the PG is called exactly once"
    );
    assert_eq!(stack.pg_records("authorize").len(), 1);
    // After completion every retry replays.
    let later = http::post(
        &addr,
        "/api/payments/authorize",
        &authorize_body("M-50", 5000, "same-key"),
    );
    assert_eq!(later.status, 200);
    assert_eq!(later.header("Idempotent-Replayed"), Some("true"));
}

#[test]
fn redis_down_fails_open_and_idempotency_stays_exact() {
    let mut stack = TestStack::start("idempotency_redis_down");
    let addr = stack.addr().to_owned();
    let first = http::post(
        &addr,
        "/api/payments/authorize",
        &authorize_body("M-8", 100, "before-outage"),
    );
    assert_eq!(first.status, 200);

    stack.redis.stop();
    let mut ids = Vec::new();
    for i in 0..20 {
        let reply = http::post(
            &addr,
            "/api/payments/authorize",
            &authorize_body("M-8", 100, &format!("during-{i}")),
        );
        assert_eq!(
            reply.status,
            200,
            "authorizations go on without Redis: {}",
            reply.text()
        );
        ids.push(reply.json()["paymentId"].as_u64().unwrap_or(0));
    }
    // Replays come from MariaDB, exact, with no new PG call.
    let calls = stack.pg_stats()["calls"]["authorize"].as_u64().unwrap_or(0);
    let replay = http::post(
        &addr,
        "/api/payments/authorize",
        &authorize_body("M-8", 100, "before-outage"),
    );
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.header("Idempotent-Replayed"), Some("true"));
    let replay = http::post(
        &addr,
        "/api/payments/authorize",
        &authorize_body("M-8", 100, "during-3"),
    );
    assert_eq!(replay.json()["paymentId"].as_u64(), Some(ids[3]));
    assert_eq!(
        http::post(
            &addr,
            "/api/payments/authorize",
            &authorize_body("M-8", 101, "during-3")
        )
        .status,
        422
    );
    assert_eq!(
        stack.pg_stats()["calls"]["authorize"].as_u64().unwrap_or(0),
        calls
    );
    let metrics = http::get(&addr, "/metrics").text();
    let counted =
        payrail_tests::metric_value(&metrics, "payrail_rate_limit_fail_open_total", "authorize")
            .unwrap_or(0.0);
    assert!(counted >= 20.0, "fail-opens are counted: {counted}");
    assert_eq!(stack.count_all("SELECT COUNT(*) FROM payment"), 21);

    // Redis back: caching resumes.
    let dir = stack.dir.clone();
    stack.redis.restart(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(payrail_tests::wait_until(
        std::time::Duration::from_secs(10),
        || {
            http::post(
                &addr,
                "/api/payments/authorize",
                &authorize_body("M-8", 100, "after-outage"),
            )
            .status
                == 200
                && stack
                    .redis
                    .cli(&["EXISTS", "payrail:idem:M-8:after-outage"])
                    == "1"
        }
    ));
}
