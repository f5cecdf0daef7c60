//! Money right at the PG (issue 12): every state the API reports has its counterpart in the
//! PG's own records, lost answers are resolved and never guessed, and the three-way
//! reconciliation finds each kind of mismatch.

use payrail_tests::http::{self, Reply};
use payrail_tests::stack::{Options, TestStack};
use payrail_tests::{authorize_body, wait_until};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn with_workers(ingest_toml: &str, worker_toml: &str) -> Options {
    Options {
        workers: true,
        ingest_toml: ingest_toml.into(),
        worker_toml: worker_toml.into(),
        ..Options::default()
    }
}

fn post(stack: &TestStack, path: &str, body: Value) -> Reply {
    http::post(stack.addr(), path, &body)
}

fn shard(id: u64) -> usize {
    (id >> 42) as usize
}

fn wait_status(stack: &TestStack, id: u64, status: &str) -> bool {
    wait_until(Duration::from_secs(60), || stack.status_of(id) == status)
}

/// The PG's records of one payment.
fn pg_records_of(stack: &TestStack, id: u64) -> Vec<Value> {
    http::get(
        &stack.pg_addr,
        &format!("/v1/records?fromPaymentId={id}&toPaymentId={id}"),
    )
    .json()["records"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Approved PG records of one payment and operation: (count, summed amount).
fn pg_approved(stack: &TestStack, id: u64, operation: &str) -> (usize, i64) {
    let records: Vec<Value> = pg_records_of(stack, id)
        .into_iter()
        .filter(|r| r["operation"] == operation && r["decision"] == "APPROVED")
        .collect();
    (
        records.len(),
        records.iter().filter_map(|r| r["amount"].as_i64()).sum(),
    )
}

/// The ledger's net of `account_prefix` lines for a payment (debits − credits).
fn ledger_net(stack: &TestStack, id: u64, account_prefix: &str) -> i64 {
    stack.count(shard(id), &format!("SELECT CAST(COALESCE(SUM(debit - credit), 0) AS SIGNED) FROM ledger_entry WHERE payment_id = {id} AND account LIKE '{account_prefix}:%'"))
}

#[test]
fn void_partial_capture_failed_capture_and_expiry_reach_the_pg() {
    let stack = TestStack::start_with(
        "pg_lifecycle",
        with_workers(
            "[expiry]\nauthorization_ttl_seconds = 8\ninterval_ms = 500\n",
            "[retry]\nattempts_max = 2\nbackoff_initial_ms = 50\nbackoff_max_ms = 100\n",
        ),
    );
    let expiring = stack.authorize("M-EXP", 700, "expiring");

    // Void: VOID_REQUESTED until the PG voided, then VOIDED and the ledger's hold released.
    let voided = stack.authorize("M-V", 1000, "to-void");
    let reply = post(
        &stack,
        &format!("/api/payments/void/{voided}"),
        json!({"merchantId": "M-V"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], "VOID_REQUESTED");
    assert!(wait_status(&stack, voided, "VOIDED"));
    assert_eq!(pg_approved(&stack, voided, "void"), (1, 1000));

    // Partial capture: 600 of 1 000 captured, the rest released at the PG (one capture per
    // authorization) and in the ledger.
    let partial = stack.authorize("M-P", 1000, "to-capture");
    let reply = post(
        &stack,
        &format!("/api/payments/capture/{partial}"),
        json!({"merchantId": "M-P", "amount": 600}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["capturedAmount"], 0);
    assert_eq!(reply.json()["captureRequestedAmount"], 600);
    assert!(wait_status(&stack, partial, "CAPTURED"));
    let view = http::get(
        stack.addr(),
        &format!("/api/payments/{partial}?merchantId=M-P"),
    )
    .json();
    assert_eq!(view["capturedAmount"], 600, "{view}");
    assert_eq!(view["captureRequestedAmount"], 600, "{view}");
    assert_eq!(pg_approved(&stack, partial, "capture"), (1, 600));
    let more = http::post(
        &stack.pg_addr,
        "/v1/capture",
        &json!({"requestId": "capture-more", "merchantId": "M-P", "paymentId": partial, "amount": 100, "currency": "KRW"}),
    );
    assert_eq!(
        more.json()["decision"],
        "DECLINED",
        "the rest of the hold was released: {}",
        more.text()
    );

    // A capture that fails for good: CAPTURE_FAILED, payment.capture-failed, and the
    // authorization voided at the PG (the PG fails captures only, for this merchant).
    let failing = stack.authorize("M-F", 1000, "to-fail");
    stack.pg_control(json!({"merchantId": "M-F", "operation": "capture", "failureRate": 1.0}));
    let reply = post(
        &stack,
        &format!("/api/payments/capture/{failing}"),
        json!({"merchantId": "M-F"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(wait_status(&stack, failing, "CAPTURE_FAILED"));
    assert_eq!(stack.count(shard(failing), &format!("SELECT COUNT(*) FROM outbox_event WHERE payment_id = {failing} AND topic = 'payment.capture-failed'")), 1);
    assert!(
        wait_until(Duration::from_secs(60), || pg_approved(
            &stack, failing, "void"
        )
        .0 == 1),
        "the failed capture's hold is released at the PG: {:?}",
        pg_records_of(&stack, failing)
    );
    assert_eq!(pg_approved(&stack, failing, "capture"), (0, 0));
    let view = http::get(
        stack.addr(),
        &format!("/api/payments/{failing}?merchantId=M-F"),
    )
    .json();
    assert_eq!(view["capturedAmount"], 0, "never captured: {view}");

    // A capture the PG applied although every answer was lost (applied, then 503) is
    // found by the status inquiry once retries run out: CAPTURED, never CAPTURE_FAILED.
    let lost = stack.authorize("M-A", 1000, "answers-lost");
    stack
        .pg_control(json!({"merchantId": "M-A", "operation": "capture", "applyThenFailRate": 1.0}));
    let reply = post(
        &stack,
        &format!("/api/payments/capture/{lost}"),
        json!({"merchantId": "M-A"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        wait_until(Duration::from_secs(60), || stack.status_of(lost)
            != "CAPTURE_REQUESTED"),
        "the capture settles"
    );
    assert_eq!(stack.status_of(lost), "CAPTURED", "the PG did capture it");
    assert_eq!(pg_approved(&stack, lost, "capture"), (1, 1000));
    assert_eq!(
        pg_approved(&stack, lost, "void"),
        (0, 0),
        "nothing released"
    );

    // Refund replays are byte-identical, also after the payment moved on.
    let refund = |key: &str, amount: i64| {
        post(
            &stack,
            &format!("/api/payments/refund/{partial}"),
            json!({"merchantId": "M-P", "amount": amount, "reason": "customer", "idempotencyKey": key}),
        )
    };
    let first = refund("refund-1", 100);
    assert_eq!(first.status, 200, "{}", first.text());
    let again = refund("refund-1", 100);
    assert_eq!(
        again.text(),
        first.text(),
        "the first answer, byte for byte"
    );
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(refund("refund-2", 50).status, 200);
    assert!(wait_status(&stack, partial, "PARTIALLY_REFUNDED"));
    let later = refund("refund-1", 100);
    assert_eq!(
        later.text(),
        first.text(),
        "the payment moved on; the replay still answers what was answered"
    );
    assert_eq!(refund("refund-1", 101).status, 422);

    // Expiry: AUTHORIZED past its TTL is voided at the PG and ends EXPIRED.
    assert!(wait_status(&stack, expiring, "EXPIRED"));
    assert_eq!(pg_approved(&stack, expiring, "void"), (1, 700));
    let history: Vec<String> = stack
        .rows(shard(expiring), &format!("SELECT status FROM payment_status_history WHERE payment_id = {expiring} ORDER BY id"))
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(history, ["AUTHORIZED", "VOID_REQUESTED", "EXPIRED"]);

    stack.assert_reconciled();
    for id in [voided, partial, failing, expiring, lost] {
        assert_eq!(
            ledger_net(&stack, id, "holds"),
            0,
            "payment {id}: hold released"
        );
    }
    assert_eq!(-ledger_net(&stack, partial, "merchant_payable"), 600 - 150);
}

/// A client's view of one authorization key.
#[derive(Debug, Clone)]
struct Attempted {
    key: String,
    merchant: String,
    amount: i64,
    /// The definitive answer's status and payment id; none while unknown.
    answer: Option<(u16, u64)>,
    /// When the client was told PG_OUTCOME_UNKNOWN and stopped asking.
    abandoned_at: Option<Instant>,
}

/// Sends the authorization until a definitive answer (or, when `abandon`, gives up at the
/// first unknown outcome, as a client that crashed would), waiting what `Retry-After` says:
/// 30 % lost answers can open the PG breaker, whose 503 `PG_UNAVAILABLE` asks for longer.
fn authorize_until_definitive(stack: &TestStack, a: &mut Attempted, abandon: bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let reply = http::post(
            stack.addr(),
            "/api/payments/authorize",
            &authorize_body(&a.merchant, a.amount, &a.key),
        );
        match reply.status {
            200 | 402 => {
                a.answer = Some((
                    reply.status,
                    reply.json()["paymentId"].as_u64().unwrap_or(0),
                ));
                return;
            }
            503 | 409 => {
                let retry_after: u64 = reply
                    .header("Retry-After")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no Retry-After: {}", reply.text()));
                if abandon && reply.code() == "PG_OUTCOME_UNKNOWN" {
                    a.abandoned_at = Some(Instant::now());
                    return;
                }
                // A retry with the key is the client's part; sooner than asked is fine for
                // an unknown outcome (1 s), the breaker's wait is honoured.
                let wait = if reply.code() == "PG_UNAVAILABLE" {
                    retry_after * 1000
                } else {
                    100
                };
                std::thread::sleep(Duration::from_millis(wait));
            }
            other => panic!("authorize {}: {other} {}", a.key, reply.text()),
        }
    }
    panic!("{}: no definitive answer within 120 s", a.key);
}

/// POSTs until 200 (retrying 503s and the 409 of a capture still settling).
fn post_until_ok(stack: &TestStack, path: &str, body: Value) -> Reply {
    for _ in 0..200 {
        let reply = post(stack, path, body.clone());
        if reply.status == 200 {
            return reply;
        }
        assert!(
            matches!(reply.status, 503 | 409),
            "{path}: {} {}",
            reply.status,
            reply.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{path}: never 200");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[test]
fn lost_answers_at_every_pg_operation_leave_one_effect_and_no_orphan_hold() {
    let n = 400;
    let stack = TestStack::start_with(
        "pg_lost_answers",
        with_workers(
            // A 3 s open wait: the breaker may open under 30 % lost answers (it counts them
            // as failures, as it should), and clients then wait for its Retry-After.
            "[resolver]\ninterval_ms = 500\n\n[pg.breaker]\nopen_wait_ms = 3000\n",
            "[retry]\nbackoff_initial_ms = 50\nbackoff_max_ms = 400\n",
        ),
    );
    // 20 % of every PG operation applied and then the connection dropped, 10 % applied
    // and then answered 503.
    stack.pg_control(json!({"applyThenDropRate": 0.2, "applyThenFailRate": 0.1}));
    let mut attempts: Vec<Attempted> = (0..n)
        .map(|i| Attempted {
            key: format!("lost-{i}"),
            merchant: format!("M-L{}", i % 10),
            amount: 1000 + i as i64,
            answer: None,
            abandoned_at: None,
        })
        .collect();
    // Every 8th client walks away at its first unknown outcome; the resolver must settle it.
    std::thread::scope(|scope| {
        for (t, chunk) in attempts.chunks_mut(n / 8).enumerate() {
            let stack = &stack;
            scope.spawn(move || {
                for (j, a) in chunk.iter_mut().enumerate() {
                    authorize_until_definitive(stack, a, (t + j) % 8 == 0);
                }
            });
        }
    });
    let abandoned: Vec<&Attempted> = attempts
        .iter()
        .filter(|a| a.abandoned_at.is_some())
        .collect();
    assert!(
        !abandoned.is_empty(),
        "some clients walked away from an unknown outcome"
    );

    // Lifecycle of the answered ones, through the same faulty PG.
    let authorized: Vec<(usize, &Attempted, u64)> = attempts
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a.answer {
            Some((200, id)) => Some((i, a, id)),
            _ => None,
        })
        .collect();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (stack, authorized) = (&stack, &authorized);
            scope.spawn(move || {
                for (i, a, id) in authorized.iter().filter(|(i, _, _)| i % 8 == t) {
                    let (path, body) = match i % 4 {
                        1 => ("capture", json!({"merchantId": a.merchant, "amount": a.amount / 2})),
                        2 => ("void", json!({"merchantId": a.merchant})),
                        _ => ("capture", json!({"merchantId": a.merchant})),
                    };
                    post_until_ok(stack, &format!("/api/payments/{path}/{id}"), body);
                    if i % 4 == 3 {
                        post_until_ok(
                            stack,
                            &format!("/api/payments/refund/{id}"),
                            json!({"merchantId": a.merchant, "reason": "lost", "idempotencyKey": format!("r-{i}")}),
                        );
                    }
                }
            });
        }
    });

    // Every abandoned key resolved: time from the unknown answer to the stored answer.
    let mut resolved_after: BTreeMap<String, f64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while resolved_after.len() < abandoned.len() && Instant::now() < deadline {
        for a in &abandoned {
            if resolved_after.contains_key(&a.key) {
                continue;
            }
            let shard = payrail_core::shard::shard_for_merchant(&a.merchant, 2) as usize;
            let done = stack.count(shard, &format!("SELECT COUNT(*) FROM idempotency_record WHERE idempotency_key = '{}' AND state = 'COMPLETED'", a.key));
            if done == 1 {
                let at = a
                    .abandoned_at
                    .map(|t| t.elapsed().as_secs_f64())
                    .unwrap_or(0.0);
                resolved_after.insert(a.key.clone(), at);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        resolved_after.len(),
        abandoned.len(),
        "every unknown outcome resolved"
    );
    let mut times: Vec<f64> = resolved_after.values().copied().collect();
    times.sort_by(f64::total_cmp);
    eprintln!(
        "lost answers: {} of {n} clients walked away from an unknown outcome; resolved after p50 {:.1} s, p99 {:.1} s, max {:.1} s (resolver defaults: abandon_after 15 s, interval 0.5 s here)",
        abandoned.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(0.0)
    );
    assert!(
        percentile(&times, 0.99) <= 60.0,
        "resolution within the 60 s SLA"
    );
    // The walked-away clients come back: a definitive answer, never another authorization.
    for a in &abandoned {
        let reply = http::post(
            stack.addr(),
            "/api/payments/authorize",
            &authorize_body(&a.merchant, a.amount, &a.key),
        );
        assert!(
            matches!(reply.status, 200 | 402),
            "{}: {}",
            a.key,
            reply.text()
        );
        assert_eq!(reply.header("Idempotent-Replayed"), Some("true"));
        let status = reply.json()["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            matches!(status.as_str(), "VOIDED" | "FAILED" | "DECLINED"),
            "{}: nobody waited for it, so it is not live: {}",
            a.key,
            reply.text()
        );
    }

    // Drained: nothing requested is still pending.
    assert!(
        wait_until(Duration::from_secs(120), || {
            let s = stack.statuses();
            ["CAPTURE_REQUESTED", "VOID_REQUESTED", "REFUND_REQUESTED"]
                .iter()
                .all(|k| !s.contains_key(*k))
        }),
        "the pipeline drains: {:?}",
        stack.statuses()
    );
    let stats = stack.pg_stats();
    for op in ["authorize", "capture", "refund", "void"] {
        assert!(
            stats["lostAnswers"][op].as_u64().unwrap_or(0) > 0,
            "answers were lost at {op}: {stats}"
        );
    }
    // One payment per key, one PG effect per operation.
    assert_eq!(stack.count_all("SELECT COUNT(*) FROM payment"), n as i64);
    let statuses = stack.statuses();
    let count = |s: &str| statuses.get(s).copied().unwrap_or(0);
    let approved = |op: &str| {
        stack
            .pg_records(op)
            .iter()
            .filter(|r| r["decision"] == "APPROVED")
            .count() as i64
    };
    assert_eq!(
        approved("authorize"),
        n as i64 - count("FAILED") - count("DECLINED")
    );
    assert_eq!(
        approved("capture"),
        count("CAPTURED") + count("REFUNDED") + count("PARTIALLY_REFUNDED")
    );
    assert_eq!(approved("void"), count("VOIDED"));
    assert_eq!(
        approved("refund"),
        count("REFUNDED") + count("PARTIALLY_REFUNDED")
    );
    eprintln!("lost answers: final states {statuses:?}; PG stats {stats}");
    stack.assert_reconciled();
}

#[test]
fn an_ingest_killed_between_pg_approval_and_commit_leaves_no_hold_behind() {
    let mut stack = TestStack::start_with(
        "pg_ingest_killed",
        Options {
            ingest_instances: 2,
            pg_behaviour: "latency_min_ms = 300\nlatency_max_ms = 400".into(),
            ..with_workers("", "")
        },
    );
    let victim = stack.addrs[0].clone();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let sent = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (victim, stop, sent) = (&victim, &stop, &sent);
            scope.spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = authorize_body(&format!("M-K{t}"), 500, &format!("kill-{t}-{i}"));
                    let _ = http::request(
                        victim,
                        "POST",
                        "/api/payments/authorize",
                        &[("Content-Type", "application/json")],
                        Some(body.to_string().as_bytes()),
                    );
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_millis(1500));
        stack.ingests[0].kill();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let killed_at = Instant::now();
    // Requests the PG was still working on when ingest died: approved, no payment row.
    std::thread::sleep(Duration::from_millis(600));
    let orphans: Vec<u64> = stack
        .pg_records("authorize")
        .iter()
        .filter(|r| r["decision"] == "APPROVED")
        .filter_map(|r| r["paymentId"].as_u64())
        .filter(|id| {
            stack.count(
                shard(*id),
                &format!("SELECT COUNT(*) FROM payment WHERE payment_id = {id}"),
            ) == 0
        })
        .collect();
    assert!(
        !orphans.is_empty(),
        "the kill caught authorizations between the PG and the commit ({} sent)",
        sent.into_inner()
    );
    // The surviving instance's resolver voids each one within the SLA (defaults: the
    // 30 s lease + 15 s for the client to come back + a 2 s scan).
    for id in &orphans {
        assert!(
            wait_until(
                Duration::from_secs(60).saturating_sub(killed_at.elapsed()),
                || pg_approved(&stack, *id, "void").0 == 1
            ),
            "orphaned hold of payment {id} voided at the PG within 60 s of the crash"
        );
        assert_eq!(stack.status_of(*id), "VOIDED");
    }
    eprintln!(
        "ingest killed: {} orphaned holds, all voided at the PG {:.1} s after the kill",
        orphans.len(),
        killed_at.elapsed().as_secs_f64()
    );
    stack.assert_reconciled();
}

#[test]
fn reconciliation_names_each_seeded_mismatch_and_passes_once_repaired() {
    let stack = TestStack::start_with("pg_reconcile", with_workers("", ""));
    let held = stack.authorize("M-R1", 800, "held");
    let captured = stack.authorize("M-R2", 900, "captured");
    let voided = stack.authorize("M-R3", 700, "voided");
    assert_eq!(
        post(
            &stack,
            &format!("/api/payments/capture/{captured}"),
            json!({"merchantId": "M-R2"})
        )
        .status,
        200
    );
    assert_eq!(
        post(
            &stack,
            &format!("/api/payments/void/{voided}"),
            json!({"merchantId": "M-R3"})
        )
        .status,
        200
    );
    assert!(wait_status(&stack, captured, "CAPTURED"));
    assert!(wait_status(&stack, voided, "VOIDED"));
    stack.assert_reconciled();

    let tamper = |request_id: String, change: Value| {
        let mut body = change;
        body["requestId"] = json!(request_id);
        let reply = http::post(&stack.pg_addr, "/v1/records/tamper", &body);
        assert_eq!(reply.status, 200, "{}", reply.text());
    };
    let sql = |id: u64, statement: String| {
        stack.rows(shard(id), &statement);
    };
    let expect_finding = |what: &str, id: u64| {
        let (clean, report) = stack.reconcile();
        assert!(!clean, "{what}: reconciliation must fail:\n{report}");
        assert!(
            report.contains(&format!("payment {id}")),
            "{what}: the finding names payment {id}:\n{report}"
        );
        assert!(report.contains('→'), "{what}: says what to do:\n{report}");
    };
    let expect_clean = |what: &str| {
        let (clean, report) = stack.reconcile();
        assert!(clean, "{what} repaired: clean again:\n{report}");
    };

    // The PG's record: captured amounts differ.
    tamper(format!("capture-{captured}"), json!({"amount": 899}));
    expect_finding("PG capture differs", captured);
    tamper(format!("capture-{captured}"), json!({"amount": 900}));
    expect_clean("PG capture");

    // A voided payment still held at the PG.
    tamper(format!("void-{voided}"), json!({"decision": "DECLINED"}));
    expect_finding("voided but held at the PG", voided);
    tamper(format!("void-{voided}"), json!({"decision": "APPROVED"}));
    expect_clean("PG void");

    // A PG hold without any payment.
    let ghost = held + 1_000;
    let reply = http::post(
        &stack.pg_addr,
        "/v1/authorize",
        &json!({"requestId": format!("auth-{ghost}"), "merchantId": "M-R1", "paymentId": ghost, "amount": 5, "currency": "KRW"}),
    );
    assert_eq!(reply.status, 200);
    expect_finding("PG hold without a payment", ghost);
    tamper(format!("auth-{ghost}"), json!({"decision": "DECLINED"}));
    expect_clean("ghost hold");

    // The ledger: a hold that differs from the live authorization.
    sql(held, format!("UPDATE ledger_entry SET debit = debit + 1 WHERE payment_id = {held} AND account LIKE 'holds:%' AND debit > 0"));
    expect_finding("ledger hold differs", held);
    sql(held, format!("UPDATE ledger_entry SET debit = debit - 1 WHERE payment_id = {held} AND account LIKE 'holds:%' AND debit > 0"));
    expect_clean("ledger");

    // The payment: captured amount differs from the PG and the ledger.
    sql(
        captured,
        format!("UPDATE payment SET captured_amount = 850 WHERE payment_id = {captured}"),
    );
    expect_finding("payment captured differs", captured);
    sql(
        captured,
        format!("UPDATE payment SET captured_amount = 900 WHERE payment_id = {captured}"),
    );
    expect_clean("payment");

    // An unknown outcome older than the resolution SLA (kept from the resolver by a lease).
    let stuck = held + 2_000;
    sql(held, format!("INSERT INTO idempotency_record (merchant_id, idempotency_key, request_fingerprint, state, owner_token, payment_id, created_at, lease_until, unknown_since) \
         VALUES ('M-R1', 'stuck', '5|KRW|manual', 'UNKNOWN', 1, {stuck}, UTC_TIMESTAMP(3) - INTERVAL 5 MINUTE, UTC_TIMESTAMP(3) + INTERVAL 1 HOUR, UTC_TIMESTAMP(3) - INTERVAL 2 MINUTE)"));
    expect_finding("unknown outcome past the SLA", stuck);
    sql(
        held,
        "DELETE FROM idempotency_record WHERE idempotency_key = 'stuck'".into(),
    );
    expect_clean("unknown outcome");
}
