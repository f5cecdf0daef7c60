//! State transitions under races, and shard routing with two ingest instances.

use payrail_tests::http::{self, Reply};
use payrail_tests::stack::{Options, TestStack};
use payrail_tests::{authorize_body, settle};
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};

/// Sends `requests` at once (one thread each, released together).
fn race(addr: &str, requests: Vec<(String, serde_json::Value)>) -> Vec<Reply> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let handles: Vec<_> = requests
        .into_iter()
        .map(|(path, body)| {
            let addr = addr.to_owned();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                http::post(&addr, &path, &body)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| panic!("client thread panicked"))
        })
        .collect()
}

fn statuses(replies: &[Reply]) -> Vec<u16> {
    let mut s: Vec<u16> = replies.iter().map(|r| r.status).collect();
    s.sort_unstable();
    s
}

#[test]
fn concurrent_transitions_apply_once() {
    let stack = TestStack::start("concurrency_transitions");
    let addr = stack.addr();
    let new_payment = |key: &str, amount: i64| {
        let reply = http::post(
            addr,
            "/api/payments/authorize",
            &authorize_body("M-2", amount, key),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["paymentId"].as_u64().unwrap_or(0)
    };

    for round in 0..5 {
        // Ten captures at once: one wins.
        let id = new_payment(&format!("double-capture-{round}"), 1000);
        let replies = race(
            addr,
            (0..10)
                .map(|_| {
                    (
                        format!("/api/payments/capture/{id}"),
                        json!({"merchantId": "M-2"}),
                    )
                })
                .collect(),
        );
        assert_eq!(statuses(&replies), [vec![200], vec![409; 9]].concat());
        assert_eq!(stack.count(1, &format!("SELECT COUNT(*) FROM outbox_event WHERE payment_id = {id} AND topic = 'payment.capture-requested'")), 1);
        assert_eq!(stack.count(1, &format!("SELECT COUNT(*) FROM payment_status_history WHERE payment_id = {id} AND status = 'CAPTURE_REQUESTED'")), 1);

        // Capture against void: exactly one of them.
        let id = new_payment(&format!("capture-vs-void-{round}"), 1000);
        let replies = race(
            addr,
            vec![
                (
                    format!("/api/payments/capture/{id}"),
                    json!({"merchantId": "M-2"}),
                ),
                (
                    format!("/api/payments/void/{id}"),
                    json!({"merchantId": "M-2"}),
                ),
            ],
        );
        assert_eq!(statuses(&replies), vec![200, 409]);
        let status = stack.rows(
            1,
            &format!("SELECT status FROM payment WHERE payment_id = {id}"),
        )[0][0]
            .clone();
        assert!(status == "CAPTURE_REQUESTED" || status == "VOID_REQUESTED");
        assert_eq!(stack.count(1, &format!("SELECT COUNT(*) FROM outbox_event WHERE payment_id = {id} AND topic <> 'payment.authorized'")), 1);

        // Eight refunds of 300 against 1000 captured: at most three succeed, the sum
        // never exceeds the captured amount.
        let id = new_payment(&format!("refund-race-{round}"), 1000);
        assert_eq!(
            http::post(
                addr,
                &format!("/api/payments/capture/{id}"),
                &json!({"merchantId": "M-2"})
            )
            .status,
            200
        );
        settle(&stack, id);
        let replies = race(
            addr,
            (0..8)
                .map(|_| {
                    (
                        format!("/api/payments/refund/{id}"),
                        json!({"merchantId": "M-2", "reason": "race", "amount": 300}),
                    )
                })
                .collect(),
        );
        let ok = replies.iter().filter(|r| r.status == 200).count();
        assert_eq!(ok, 3, "{:?}", statuses(&replies));
        assert!(replies
            .iter()
            .all(|r| r.status == 200 || r.code() == "REFUND_CONFLICT"));
        assert_eq!(
            stack.count(
                1,
                &format!("SELECT SUM(amount) FROM refund WHERE payment_id = {id}")
            ),
            900
        );
        assert_eq!(
            stack.count(
                1,
                &format!("SELECT refund_pending_amount FROM payment WHERE payment_id = {id}")
            ),
            900
        );
    }
}

#[test]
fn refund_idempotency_keys() {
    let stack = TestStack::start("concurrency_refund_keys");
    let addr = stack.addr();
    let id = http::post(
        addr,
        "/api/payments/authorize",
        &authorize_body("M-4", 1000, "refund-keys"),
    )
    .json()["paymentId"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        http::post(
            addr,
            &format!("/api/payments/capture/{id}"),
            &json!({"merchantId": "M-4"})
        )
        .status,
        200
    );
    settle(&stack, id);
    let body =
        json!({"merchantId": "M-4", "reason": "partial", "amount": 100, "idempotencyKey": "r-1"});
    let replies = race(
        addr,
        (0..6)
            .map(|_| (format!("/api/payments/refund/{id}"), body.clone()))
            .collect(),
    );
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        statuses(&replies)
    );
    assert_eq!(
        replies
            .iter()
            .filter(|r| r.header("Idempotent-Replayed").is_none())
            .count(),
        1
    );
    assert_eq!(
        stack.count(
            1,
            &format!("SELECT COUNT(*) FROM refund WHERE payment_id = {id}")
        ),
        1
    );
    let changed = http::post(
        addr,
        &format!("/api/payments/refund/{id}"),
        &json!({"merchantId": "M-4", "reason": "partial", "amount": 200, "idempotencyKey": "r-1"}),
    );
    assert_eq!(changed.status, 422);
    assert_eq!(
        stack.count(
            1,
            &format!("SELECT COUNT(*) FROM refund WHERE payment_id = {id}")
        ),
        1
    );
}

#[test]
fn shard_routing_and_global_ids_with_two_instances() {
    let stack = TestStack::start_with(
        "concurrency_shards",
        Options {
            ingest_instances: 2,
            ..Options::default()
        },
    );
    let mut ids = HashSet::new();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let addr = stack.addrs[t % 2].clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let merchant = format!("MERCHANT-{}", t * 1000 + i);
                        let reply = http::post(
                            &addr,
                            "/api/payments/authorize",
                            &authorize_body(&merchant, 10, &format!("k-{t}-{i}")),
                        );
                        assert_eq!(reply.status, 200, "{}", reply.text());
                        (merchant, reply.json()["paymentId"].as_u64().unwrap_or(0))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for handle in handles {
        for (merchant, id) in handle
            .join()
            .unwrap_or_else(|_| panic!("client thread panicked"))
        {
            let digits: u64 = merchant
                .trim_start_matches("MERCHANT-")
                .parse()
                .unwrap_or(0);
            let shard = if digits.is_multiple_of(2) { 1 } else { 2 };
            assert_eq!(id >> 42, shard, "{merchant} → shard {shard}, id {id}");
            assert!(id < 1 << 53);
            assert!(ids.insert(id), "id {id} issued twice");
            // The id alone finds the payment, through either instance.
            let reply = http::get(
                &stack.addrs[(id % 2) as usize],
                &format!("/api/payments/{id}?merchantId={merchant}"),
            );
            assert_eq!(reply.status, 200);
        }
    }
    assert_eq!(
        stack.count(1, "SELECT COUNT(*) FROM payment")
            + stack.count(2, "SELECT COUNT(*) FROM payment"),
        200
    );
    assert_eq!(
        stack.count(
            1,
            "SELECT COUNT(*) FROM payment WHERE payment_id >> 42 <> 1"
        ),
        0
    );
    assert_eq!(
        stack.count(
            2,
            "SELECT COUNT(*) FROM payment WHERE payment_id >> 42 <> 2"
        ),
        0
    );
    // Group commit: batch sizes are recorded.
    let metrics = http::get(stack.addr(), "/metrics").text();
    assert!(metrics.contains("payrail_group_commit_batch_size_count{"));
}
