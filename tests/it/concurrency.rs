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

/// Group commit without shared fate. A batch in which one write hits a unique-key race
/// fails only that write (the rest are written again alone); a batch whose COMMIT answer
/// is lost is resolved by reading what committed before anyone is answered. Every
/// answer matches the rows.
#[test]
fn group_commit_answers_match_the_rows_after_a_conflict_and_a_lost_commit() {
    let stack = TestStack::start("group_commit_faults");
    // A second ingest reaches shard 1 through a proxy that can lose a COMMIT's answer.
    let proxy = payrail_tests::sqlproxy::SqlProxy::start(stack.shards[0].port);
    let mut settings = stack.settings[0].clone();
    settings.instance = "ingest-proxied".into();
    settings.listen = format!("127.0.0.1:{}", payrail_tests::free_port());
    settings.shards[0].port = proxy.port;
    // TCP through the proxy, not the server's Unix socket.
    let config = stack.dir.join("ingest-proxied.toml");
    let toml = payrail_tests::services::ingest_config(&settings).replacen(
        &format!("port = {}\n", proxy.port),
        &format!("port = {}\nprefer_socket = false\n", proxy.port),
        1,
    );
    assert!(toml.contains("prefer_socket = false"));
    std::fs::write(&config, toml).unwrap_or_else(|e| panic!("{e}"));
    let _proxied = payrail_tests::services::launch(
        "ingest-proxied",
        "ingest",
        &settings.listen,
        &config,
        &stack.dir.join("ingest-proxied.log"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let addr = settings.listen.clone();
    // MERCHANT-2 lives on shard 1.
    let authorize_all = |round: &str| {
        let requests = (0..8)
            .map(|i| {
                (
                    "/api/payments/authorize".to_owned(),
                    authorize_body("MERCHANT-2", 100, &format!("{round}-{i}")),
                )
            })
            .collect();
        race(&addr, requests)
    };
    let stored = |id: u64| {
        stack.count(
            1,
            &format!("SELECT COUNT(*) FROM payment WHERE payment_id = {id} AND merchant_id = 'MERCHANT-2' AND status = 'AUTHORIZED'"),
        )
    };
    let warm = http::post(
        &addr,
        "/api/payments/authorize",
        &authorize_body("MERCHANT-2", 100, "warm"),
    );
    assert_eq!(warm.status, 200, "{}", warm.text());
    let first = warm.json()["paymentId"].as_u64().unwrap_or_default();

    // 1. A unique-key race: a row squats on one of the next payment ids. Whether the
    // squatted write shares a batch with others depends on timing (it fails alone when it
    // is alone), so rounds repeat until one batch was isolated; every round's answers
    // must match the rows.
    let isolated_retries = || {
        payrail_tests::metric_value(
            &http::get(&addr, "/metrics").text(),
            "payrail_group_commit_isolated_retries_total",
            "",
        )
        .unwrap_or(0.0)
    };
    let mut last = first;
    let mut rounds = 0;
    while rounds < 5 && (rounds == 0 || isolated_retries() == 0.0) {
        rounds += 1;
        let squatted = last + 3;
        stack.rows(
            1,
            &format!(
                "INSERT INTO payment (payment_id, merchant_id, status, amount, currency, idempotency_key, created_at, updated_at) \
                 VALUES ({squatted}, 'SQUATTER-2', 'DECLINED', 1, 'KRW', 'squat-{rounds}', UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))"
            ),
        );
        let replies = authorize_all(&format!("race-{rounds}"));
        let ok: Vec<u64> = replies
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.json()["paymentId"].as_u64().unwrap_or_default())
            .collect();
        assert_eq!(
            ok.len(),
            7,
            "only the squatted write fails: {:?}",
            statuses(&replies)
        );
        for id in &ok {
            assert_eq!(
                stored(*id),
                1,
                "payment {id} was answered 200 and is stored"
            );
        }
        assert!(!ok.contains(&squatted));
        assert_eq!(
            stack.count(
                1,
                "SELECT COUNT(*) FROM payment WHERE merchant_id = 'MERCHANT-2'"
            ),
            1 + 7 * rounds,
            "the warm-up and seven a round"
        );
        last = ok.iter().copied().max().unwrap_or(last).max(squatted);
    }
    assert!(
        isolated_retries() > 0.0,
        "in {rounds} rounds a batch with the conflicting write was retried write by write"
    );

    // 2. A lost COMMIT answer, under eight concurrent authorizations.
    proxy.lose_next_commit();
    let replies = authorize_all("lost");
    assert_eq!(
        proxy.lost(),
        1,
        "a COMMIT answer was lost; queries: {:?}",
        proxy.queries.lock().map(|q| q.clone()).unwrap_or_default()
    );
    assert_eq!(
        statuses(&replies),
        vec![200; 8],
        "the lost COMMIT was resolved, not failed"
    );
    for reply in &replies {
        let id = reply.json()["paymentId"].as_u64().unwrap_or_default();
        assert_eq!(stored(id), 1, "payment {id} was answered 200 and is stored");
    }
    let metrics = http::get(&addr, "/metrics").text();
    let resolved = payrail_tests::metric_value(
        &metrics,
        "payrail_group_commit_resolved_total",
        "outcome=\"committed\"",
    )
    .unwrap_or(0.0);
    assert!(
        resolved >= 1.0,
        "a group-commit batch's lost COMMIT was resolved as committed"
    );
}
