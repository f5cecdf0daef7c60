//! Every payments endpoint and its error codes, against real MariaDB, Redis and pg-mock.

use payrail_tests::http::{self, Reply};
use payrail_tests::stack::{Options, TestStack};
use payrail_tests::{authorize_body, settle};
use serde_json::json;

fn authorize(stack: &TestStack, merchant: &str, amount: i64, key: &str) -> Reply {
    http::post(
        stack.addr(),
        "/api/payments/authorize",
        &authorize_body(merchant, amount, key),
    )
}

fn id_of(reply: &Reply) -> u64 {
    reply.json()["paymentId"]
        .as_u64()
        .unwrap_or_else(|| panic!("no paymentId in {}", reply.text()))
}

#[test]
fn authorize_capture_refund_void_and_reads() {
    let stack = TestStack::start("payments_api_flow");
    let addr = stack.addr();

    // Authorize: 200 AUTHORIZED with every contract field, on the merchant's shard.
    let reply = authorize(&stack, "MERCHANT-123", 50_000, "order-1");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    for field in [
        "paymentId",
        "merchantId",
        "status",
        "amount",
        "capturedAmount",
        "refundedAmount",
        "currency",
        "approvalNumber",
        "createdAt",
        "updatedAt",
        "ledgerEntries",
        "message",
    ] {
        assert!(body.get(field).is_some(), "missing {field} in {body}");
    }
    assert_eq!(body["status"], "AUTHORIZED");
    let id = id_of(&reply);
    assert_eq!(id >> 42, 2, "MERCHANT-123 (odd) lives on shard 2");
    assert!(id < 1 << 53);
    assert_eq!(
        stack.count(
            2,
            &format!("SELECT COUNT(*) FROM payment WHERE payment_id = {id}")
        ),
        1
    );
    assert_eq!(
        stack.count(
            1,
            &format!("SELECT COUNT(*) FROM payment WHERE payment_id = {id}")
        ),
        0
    );
    assert_eq!(stack.count(2, &format!("SELECT COUNT(*) FROM outbox_event WHERE payment_id = {id} AND topic = 'payment.authorized'")), 1);

    // Partial capture.
    let reply = http::post(
        addr,
        &format!("/api/payments/capture/{id}"),
        &json!({"merchantId": "MERCHANT-123", "amount": 30_000}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], "CAPTURE_REQUESTED");
    assert_eq!(
        reply.json()["capturedAmount"],
        0,
        "nothing captured until the PG did"
    );
    assert_eq!(reply.json()["captureRequestedAmount"], 30_000);
    assert_eq!(stack.count(2, &format!("SELECT COUNT(*) FROM outbox_event WHERE payment_id = {id} AND topic = 'payment.capture-requested'")), 1);
    let event: serde_json::Value = serde_json::from_str(&stack.rows(2, &format!("SELECT payload FROM outbox_event WHERE payment_id = {id} AND topic = 'payment.capture-requested'"))[0][0]).unwrap_or_default();
    assert_eq!(event["merchantId"], "MERCHANT-123");
    assert_eq!(event["amount"], 30_000);
    assert!(event["eventId"].as_u64().is_some());

    // A second capture conflicts and names the current status.
    let reply = http::post(
        addr,
        &format!("/api/payments/capture/{id}"),
        &json!({"merchantId": "MERCHANT-123"}),
    );
    assert_eq!(reply.status, 409);
    assert_eq!(reply.code(), "CAPTURE_CONFLICT");
    assert_eq!(reply.json()["status"], "CAPTURE_REQUESTED");
    assert_eq!(reply.json()["paymentId"].as_u64(), Some(id));

    // While the capture settles a refund is accepted against what the capture asked for
    // (tests/it/pipeline.rs follows one through); more than that is refused.
    let reply = http::post(
        addr,
        &format!("/api/payments/refund/{id}"),
        &json!({"merchantId": "MERCHANT-123", "reason": "customer request", "amount": 30_001}),
    );
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert_eq!(reply.code(), "REFUND_CONFLICT");
    assert_eq!(reply.json()["status"], "CAPTURE_REQUESTED");

    // Settled: two partial refunds, then nothing refundable remains.
    settle(&stack, id);
    let refund = |amount: Option<i64>| {
        let mut body = json!({"merchantId": "MERCHANT-123", "reason": "customer request"});
        if let Some(a) = amount {
            body["amount"] = json!(a);
        }
        http::post(addr, &format!("/api/payments/refund/{id}"), &body)
    };
    let reply = refund(Some(10_000));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], "REFUND_REQUESTED");
    assert_eq!(reply.json()["refunds"].as_array().map(Vec::len), Some(1));
    let reply = refund(Some(25_000));
    assert_eq!(
        reply.status,
        409,
        "refund above the remaining 20000 must conflict: {}",
        reply.text()
    );
    let reply = refund(None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["refunds"][1]["amount"], 20_000);
    // The answer is rendered before its rows are written: its lists are what a read right
    // after it finds.
    let read = http::get(addr, &format!("/api/payments/{id}?merchantId=MERCHANT-123")).json();
    for list in ["refunds", "history", "ledgerEntries"] {
        assert_eq!(reply.json()[list], read[list], "{list}");
    }
    let reply = refund(Some(1));
    assert_eq!(reply.status, 409);
    assert_eq!(reply.code(), "REFUND_CONFLICT");
    assert_eq!(
        stack.count(
            2,
            &format!("SELECT SUM(amount) FROM refund WHERE payment_id = {id}")
        ),
        30_000
    );
    assert_eq!(stack.count(2, &format!("SELECT COUNT(*) FROM outbox_event WHERE payment_id = {id} AND topic = 'payment.refund-requested'")), 2);

    // GET: refunds and history; another merchant sees nothing.
    let reply = http::get(addr, &format!("/api/payments/{id}?merchantId=MERCHANT-123"));
    assert_eq!(reply.status, 200);
    let statuses: Vec<String> = reply.json()["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| e["status"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        statuses,
        vec![
            "AUTHORIZED",
            "CAPTURE_REQUESTED",
            "REFUND_REQUESTED",
            "REFUND_REQUESTED"
        ]
    );
    assert_eq!(
        http::get(addr, &format!("/api/payments/{id}?merchantId=MERCHANT-125")).status,
        404
    );
    assert_eq!(
        http::post(
            addr,
            &format!("/api/payments/capture/{id}"),
            &json!({"merchantId": "MERCHANT-125"})
        )
        .status,
        404
    );

    // Void: only from AUTHORIZED.
    let other = id_of(&authorize(&stack, "MERCHANT-123", 7_000, "order-2"));
    let reply = http::post(
        addr,
        &format!("/api/payments/void/{other}"),
        &json!({"merchantId": "MERCHANT-123"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json()["status"],
        "VOID_REQUESTED",
        "VOIDED only once the PG voided"
    );
    assert_eq!(stack.count(2, &format!("SELECT COUNT(*) FROM outbox_event WHERE payment_id = {other} AND topic = 'payment.void-requested'")), 1);
    let reply = http::post(
        addr,
        &format!("/api/payments/void/{other}"),
        &json!({"merchantId": "MERCHANT-123"}),
    );
    assert_eq!(reply.status, 409);
    assert_eq!(reply.code(), "VOID_CONFLICT");
    let reply = http::post(
        addr,
        &format!("/api/payments/capture/{other}"),
        &json!({"merchantId": "MERCHANT-123"}),
    );
    assert_eq!(reply.code(), "CAPTURE_CONFLICT");
    let reply = http::post(
        addr,
        &format!("/api/payments/void/{id}"),
        &json!({"merchantId": "MERCHANT-123"}),
    );
    assert_eq!(reply.code(), "VOID_CONFLICT");

    // Capture above the authorized amount: 400, nothing changes.
    let third = id_of(&authorize(&stack, "MERCHANT-123", 1_000, "order-3"));
    let reply = http::post(
        addr,
        &format!("/api/payments/capture/{third}"),
        &json!({"merchantId": "MERCHANT-123", "amount": 1_001}),
    );
    assert_eq!(reply.status, 400);
    assert_eq!(
        stack.rows(
            2,
            &format!("SELECT status FROM payment WHERE payment_id = {third}")
        )[0][0],
        "AUTHORIZED"
    );

    // Unknown payment ids: on no shard, or simply absent.
    assert_eq!(
        http::get(addr, "/api/payments/12?merchantId=MERCHANT-123").status,
        404
    );
    assert_eq!(
        http::get(
            addr,
            &format!(
                "/api/payments/{}?merchantId=MERCHANT-123",
                (2u64 << 42) + 999_999
            )
        )
        .status,
        404
    );
    assert_eq!(
        http::get(
            addr,
            &format!("/api/payments/{}?merchantId=MERCHANT-123", (7u64 << 42) + 1)
        )
        .status,
        404
    );
}

#[test]
fn list_is_newest_first_and_paginates() {
    let stack = TestStack::start("payments_api_list");
    let addr = stack.addr();
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(id_of(&authorize(
            &stack,
            "M-42",
            100 + i,
            &format!("list-{i}"),
        )));
    }
    authorize(&stack, "M-44", 100, "other-merchant");
    let capture = http::post(
        addr,
        &format!("/api/payments/capture/{}", ids[0]),
        &json!({"merchantId": "M-42"}),
    );
    assert_eq!(capture.status, 200);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/payments?merchantId=M-42&limit=3&cursor={c}"),
            None => "/api/payments?merchantId=M-42&limit=3".to_owned(),
        };
        let reply = http::get(addr, &path);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        for p in body["payments"].as_array().cloned().unwrap_or_default() {
            assert_eq!(p["merchantId"], "M-42");
            seen.push(p["paymentId"].as_u64().unwrap_or(0));
        }
        match body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected, "all payments, newest first, each once");

    let reply = http::get(
        addr,
        "/api/payments?merchantId=M-42&status=CAPTURE_REQUESTED",
    );
    let only: Vec<u64> = reply.json()["payments"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["paymentId"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(only, vec![ids[0]]);
    assert_eq!(
        http::get(addr, "/api/payments?merchantId=M-42&limit=201").status,
        400
    );
    assert_eq!(
        http::get(addr, "/api/payments?merchantId=M-42&status=NOPE").status,
        400
    );
    assert_eq!(http::get(addr, "/api/payments").status, 400);
}

#[test]
fn declines_automatic_capture_and_pg_outage() {
    let stack = TestStack::start_with(
        "payments_api_pg",
        Options {
            ingest_toml:
                "[pg.breaker]\nminimum_calls = 4\nopen_wait_ms = 2000\nhalf_open_probes = 1\n"
                    .into(),
            ..Options::default()
        },
    );
    let addr = stack.addr();

    // A decline is 402, stored as DECLINED, and replayed for the same key.
    stack.pg_control(json!({"merchantId": "M-402", "declineRate": 1.0}));
    let reply = authorize(&stack, "M-402", 500, "declined-1");
    assert_eq!(reply.status, 402, "{}", reply.text());
    assert_eq!(reply.code(), "PAYMENT_DECLINED");
    let id = reply.json()["paymentId"].as_u64().unwrap_or(0);
    assert_eq!(
        stack.rows(
            1,
            &format!("SELECT status FROM payment WHERE payment_id = {id}")
        )[0][0],
        "DECLINED"
    );
    assert_eq!(
        stack.count(
            1,
            &format!("SELECT COUNT(*) FROM outbox_event WHERE payment_id = {id}")
        ),
        0
    );
    let again = authorize(&stack, "M-402", 500, "declined-1");
    assert_eq!(again.status, 402);
    assert_eq!(again.body, reply.body);
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));

    // capture = automatic: authorized and capture requested in one call, two events.
    let mut body = authorize_body("M-7", 900, "auto-1");
    body["capture"] = json!("automatic");
    let reply = http::post(addr, "/api/payments/authorize", &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], "CAPTURE_REQUESTED");
    assert_eq!(reply.json()["capturedAmount"], 0);
    assert_eq!(reply.json()["captureRequestedAmount"], 900);
    let id = reply.json()["paymentId"].as_u64().unwrap_or(0);
    assert_eq!(
        stack.count(
            2,
            &format!("SELECT COUNT(*) FROM outbox_event WHERE payment_id = {id}")
        ),
        2
    );

    // PG answering 5xx: the PG may have applied the call, so the outcome is unknown: 503
    // PG_OUTCOME_UNKNOWN with Retry-After, no payment written; then the breaker opens and
    // answers PG_UNAVAILABLE without calling the PG.
    stack.pg_control(json!({"failureRate": 1.0}));
    let before = stack.count_all("SELECT COUNT(*) FROM payment");
    for i in 0..4 {
        let reply = authorize(&stack, "M-9", 100, &format!("outage-{i}"));
        assert_eq!(reply.status, 503, "{}", reply.text());
        // The breaker may open before the fourth.
        let expected: &[&str] = if i == 0 {
            &["PG_OUTCOME_UNKNOWN"]
        } else {
            &["PG_OUTCOME_UNKNOWN", "PG_UNAVAILABLE"]
        };
        assert!(
            expected.contains(&reply.code().as_str()),
            "{}",
            reply.text()
        );
        assert!(reply.header("Retry-After").is_some());
    }
    let calls = stack.pg_stats()["calls"]["authorize"].as_u64().unwrap_or(0);
    let reply = authorize(&stack, "M-9", 100, "outage-open");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.code(), "PG_UNAVAILABLE");
    assert_eq!(
        stack.pg_stats()["calls"]["authorize"].as_u64().unwrap_or(0),
        calls,
        "an open breaker must not call the PG"
    );
    let health = http::get(addr, "/health").json();
    assert_eq!(health["checks"]["pg-authorize-breaker"], "OPEN");
    assert_eq!(stack.count_all("SELECT COUNT(*) FROM payment"), before);

    // PG back: after the open wait, a probe closes the breaker and the same key succeeds.
    stack.pg_control(json!({"failureRate": 0.0}));
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let reply = authorize(&stack, "M-9", 100, "outage-0");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let metrics = http::get(addr, "/metrics").text();
    for name in [
        "payrail_http_requests_total",
        "payrail_group_commit_batch_size",
        "payrail_circuit_breaker_state",
        "payrail_idempotent_replays_total",
        "payrail_pg_calls_total",
    ] {
        assert!(metrics.contains(name), "metric {name} missing");
    }
}

#[test]
fn unknown_routes_and_methods() {
    let stack = TestStack::start("payments_api_routes");
    let addr = stack.addr();
    let reply = http::get(addr, "/api/nothing");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.code(), "NOT_FOUND");
    let reply = http::get(addr, "/api/payments/authorize");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.code(), "METHOD_NOT_ALLOWED");
    let reply = http::request(addr, "DELETE", "/api/payments/123", &[], None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.status, 405);
    assert_eq!(http::get(addr, "/health").json()["status"], "UP");
}

#[test]
fn a_shard_outage_is_a_clear_503_and_loses_nothing() {
    let mut stack = TestStack::start_with(
        "payments_api_shard_outage",
        Options {
            own_shards: true,
            ..Options::default()
        },
    );
    let addr = stack.addr().to_owned();
    // MERCHANT-1 lives on shard 2, MERCHANT-2 on shard 1.
    let committed = id_of(&authorize(&stack, "MERCHANT-1", 100, "before"));
    if let Some(p) = stack.shards[1].proc_mut() {
        p.kill();
    }
    let reply = authorize(&stack, "MERCHANT-1", 100, "during");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.code(), "SHARD_UNAVAILABLE");
    assert!(reply.header("Retry-After").is_some());
    let reply = http::get(
        &addr,
        &format!("/api/payments/{committed}?merchantId=MERCHANT-1"),
    );
    assert_eq!(reply.status, 503);
    assert_eq!(reply.code(), "SHARD_UNAVAILABLE");
    // The other shard's merchants are still served, and health says so.
    assert_eq!(
        authorize(&stack, "MERCHANT-2", 100, "other-shard").status,
        200
    );
    assert!(payrail_tests::wait_until(
        std::time::Duration::from_secs(5),
        || http::get(&addr, "/health").json()["status"] == "DEGRADED"
    ));
    assert_eq!(
        http::get(&addr, "/health").json()["checks"]["mariadb-shard2"],
        "DOWN"
    );

    // Back: the committed payment is there, the failed request can be retried with its key.
    stack.shards[1].restart().unwrap_or_else(|e| panic!("{e}"));
    assert!(payrail_tests::wait_until(
        std::time::Duration::from_secs(20),
        || authorize(&stack, "MERCHANT-1", 100, "during").status == 200
    ));
    assert_eq!(
        http::get(
            &addr,
            &format!("/api/payments/{committed}?merchantId=MERCHANT-1")
        )
        .status,
        200
    );
    assert_eq!(stack.count(2, "SELECT COUNT(*) FROM payment"), 2);
    assert_eq!(stack.count(1, "SELECT COUNT(*) FROM payment"), 1);
}
