//! The event pipeline end to end: ingest → outbox relay → Kafka → settlement and refund
//! workers → PG, with failures, retries, the DLQ and its replay.

use payrail_tests::http;
use payrail_tests::kafka::read_topic;
use payrail_tests::stack::{Options, TestStack};
use payrail_tests::wait_until;
use serde_json::json;
use std::time::Duration;

fn pipeline(worker_toml: &str) -> Options {
    Options {
        workers: true,
        worker_toml: worker_toml.into(),
        ..Options::default()
    }
}

fn post_ok(stack: &TestStack, path: &str, body: serde_json::Value) {
    let reply = http::post(stack.addr(), path, &body);
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
}

/// Runs `f` over `items` from four threads, with each item's index.
fn for_each_parallel<T: Sync>(items: &[T], f: impl Fn(usize, &T) + Sync) {
    std::thread::scope(|scope| {
        for t in 0..4 {
            let f = &f;
            scope.spawn(move || {
                for (i, item) in items.iter().enumerate().filter(|(i, _)| i % 4 == t) {
                    f(i, item);
                }
            });
        }
    });
}

#[test]
fn the_flow_settles_captures_and_refunds_exactly_once() {
    let stack = TestStack::start_with("pipeline_flow", pipeline(""));
    // 2,000 payments from four client threads.
    let n = 2000;
    let payments: Vec<(String, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let stack = &stack;
                scope.spawn(move || {
                    (t * n / 4..(t + 1) * n / 4)
                        .map(|i| {
                            let merchant = format!("M-{}", i % 25);
                            let id = stack.authorize(&merchant, 10_000, &format!("flow-{i}"));
                            (merchant, id)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    // Every 10th is voided; the rest are captured.
    for_each_parallel(&payments, |i, (merchant, id)| {
        let action = if i % 10 == 9 { "void" } else { "capture" };
        post_ok(
            &stack,
            &format!("/api/payments/{action}/{id}"),
            json!({"merchantId": merchant}),
        );
    });
    assert!(
        wait_until(Duration::from_secs(90), || {
            let statuses = stack.statuses();
            !statuses.contains_key("CAPTURE_REQUESTED") && !statuses.contains_key("VOID_REQUESTED")
        }),
        "captures and voids settle: {:?}",
        stack.statuses()
    );
    // Refunds: a third in full, a third in two partial refunds, the rest not refunded.
    for_each_parallel(&payments, |i, (merchant, id)| {
        if i % 10 == 9 {
            return;
        }
        match i % 3 {
            0 => post_ok(
                &stack,
                &format!("/api/payments/refund/{id}"),
                json!({"merchantId": merchant, "reason": "full"}),
            ),
            1 => {
                post_ok(
                    &stack,
                    &format!("/api/payments/refund/{id}"),
                    json!({"merchantId": merchant, "reason": "part", "amount": 4000}),
                );
                post_ok(
                    &stack,
                    &format!("/api/payments/refund/{id}"),
                    json!({"merchantId": merchant, "reason": "part", "amount": 1000}),
                );
            }
            _ => {}
        }
    });
    assert!(
        wait_until(Duration::from_secs(90), || !stack
            .statuses()
            .contains_key("REFUND_REQUESTED")),
        "refunds settle: {:?}",
        stack.statuses()
    );
    let statuses = stack.statuses();
    let voided = (0..n).filter(|i| i % 10 == 9).count() as i64;
    let full = (0..n).filter(|i| i % 10 != 9 && i % 3 == 0).count() as i64;
    let partial = (0..n).filter(|i| i % 10 != 9 && i % 3 == 1).count() as i64;
    let captured = n as i64 - voided - full - partial;
    assert_eq!(statuses.get("VOIDED"), Some(&voided));
    assert_eq!(statuses.get("REFUNDED"), Some(&full));
    assert_eq!(statuses.get("PARTIALLY_REFUNDED"), Some(&partial));
    assert_eq!(statuses.get("CAPTURED"), Some(&captured), "{statuses:?}");
    // Exactly once, as the PG saw it: one capture per captured payment, refunds summing
    // to what the payments say.
    let captures = stack.pg_records("capture");
    assert_eq!(captures.len() as i64, n as i64 - voided);
    assert_eq!(
        stack.pg_records("void").len() as i64,
        voided,
        "every void reached the PG once"
    );
    let refunds = stack.pg_records("refund");
    assert_eq!(refunds.len() as i64, full + 2 * partial);
    let pg_refunded: i64 = refunds.iter().filter_map(|r| r["amount"].as_i64()).sum();
    assert_eq!(
        stack.count_all("SELECT COALESCE(SUM(refunded_amount), 0) FROM payment"),
        pg_refunded
    );
    assert_eq!(stack.count_all("SELECT COUNT(*) FROM payment WHERE refunded_amount > captured_amount OR refund_pending_amount <> 0"), 0);
    // One payment.captured per capture and one payment.refunded per refund.
    assert_eq!(
        stack.count_all("SELECT COUNT(*) FROM outbox_event WHERE topic = 'payment.captured'"),
        n as i64 - voided
    );
    assert_eq!(
        stack.count_all("SELECT COUNT(*) FROM outbox_event WHERE topic = 'payment.refunded'"),
        full + 2 * partial
    );
    assert_eq!(
        stack.count_all("SELECT COUNT(*) FROM outbox_event WHERE topic LIKE '%dlq'"),
        0,
        "no dead letters"
    );

    // The ledger: every ledger-relevant event applied once, balanced, and the three-way
    // reconciliation (payments, ledger, the PG's records) is clean.
    stack.assert_reconciled();
    assert_eq!(
        stack.count_all("SELECT COUNT(*) FROM (SELECT event_id FROM ledger_entry GROUP BY event_id HAVING SUM(debit) <> SUM(credit)) x"),
        0
    );
    // A redelivery changes nothing: three payments' ledger events are published again (as
    // after a relay that died between sending and marking) and the ledger skips each one,
    // also when a batch mixes them with nothing new (its multi-row insert then fails on the
    // duplicate key and the batch goes row by row).
    let ledger = stack
        .worker_settings
        .iter()
        .find(|s| s.service == "ledger")
        .map(|s| s.listen.clone())
        .expect("a ledger");
    let skipped = || {
        payrail_tests::metric_value(
            &http::get(&ledger, "/metrics").text(),
            "payrail_ledger_events_duplicate_total",
            "",
        )
        .unwrap_or(-1.0)
    };
    let skipped_before = skipped();
    let entries_before = stack.count_all("SELECT COUNT(*) FROM ledger_entry");
    let ledger_topics =
        "topic IN ('payment.authorized', 'payment.captured', 'payment.voided', 'payment.refunded')";
    let mut again = 0;
    for (_, id) in &payments[..3] {
        let shard = (id >> 42) as usize;
        again += stack.rows(
            shard,
            &format!(
                "SELECT COUNT(*) FROM outbox_event WHERE payment_id = {id} AND {ledger_topics}"
            ),
        )[0][0]
            .parse::<i64>()
            .unwrap_or(0);
        stack.rows(shard, &format!("UPDATE outbox_event SET published_at = NULL WHERE payment_id = {id} AND {ledger_topics}"));
    }
    assert!(again >= 6, "three payments' events: {again}");
    assert!(
        wait_until(Duration::from_secs(30), || skipped()
            >= skipped_before + again as f64),
        "the ledger skipped {} of {again} redelivered events",
        skipped() - skipped_before
    );
    assert_eq!(
        stack.count_all("SELECT COUNT(*) FROM ledger_entry"),
        entries_before,
        "a redelivered event posted nothing"
    );
    stack.assert_reconciled();

    let (merchant, id) = &payments[1];
    let view = http::get(
        stack.addr(),
        &format!("/api/payments/{id}?merchantId={merchant}"),
    )
    .json();
    let entries = view["ledgerEntries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        entries.len(),
        10,
        "authorize 2 lines, capture 4 (hold release + posting), two refunds 2 each: {view}"
    );

    // Reconciliation can fail: a payment whose books disagree is named.
    let tampered = payments[4].1;
    stack.rows(
        (tampered >> 42) as usize,
        &format!("UPDATE payment SET refunded_amount = refunded_amount - 1 WHERE payment_id = {tampered}"),
    );
    let (clean, report) = stack.reconcile();
    assert!(
        !clean,
        "a tampered payment must fail reconciliation:\n{report}"
    );
    assert!(report.contains(&format!("payment {tampered}")), "{report}");
}

#[test]
fn a_pg_failing_30_percent_still_settles_everything() {
    let stack = TestStack::start_with(
        "pipeline_flaky_pg",
        pipeline("[retry]\nbackoff_initial_ms = 50\nbackoff_max_ms = 400\n"),
    );
    let mut payments = Vec::new();
    for i in 0..100 {
        let merchant = format!("M-{}", i % 9);
        let id = stack.authorize(&merchant, 500, &format!("flaky-{i}"));
        payments.push((merchant, id));
    }
    stack.pg_control(json!({"failureRate": 0.3}));
    for (merchant, id) in &payments {
        post_ok(
            &stack,
            &format!("/api/payments/capture/{id}"),
            json!({"merchantId": merchant}),
        );
    }
    assert!(
        wait_until(Duration::from_secs(90), || stack.statuses().get("CAPTURED")
            == Some(&100)),
        "{:?}",
        stack.statuses()
    );
    let retried = stack.count_all("SELECT COUNT(*) FROM settlement_request WHERE attempts > 1");
    assert!(retried > 0, "with 30 % failures some captures need retries");
    assert_eq!(
        stack.count_all("SELECT COUNT(*) FROM settlement_request WHERE status <> 'SUCCEEDED'"),
        0
    );
    assert_eq!(
        stack.pg_records("capture").len(),
        100,
        "retries never capture twice"
    );
    eprintln!(
        "30 % PG failures: {retried} of 100 captures needed a retry; attempts max {}",
        stack.count_all("SELECT COALESCE(MAX(attempts), 0) FROM settlement_request")
    );
    stack.assert_reconciled();
}

#[test]
fn retries_run_out_into_the_dlq_and_the_hold_is_released_once() {
    let stack = TestStack::start_with(
        "pipeline_dlq",
        pipeline("[retry]\nattempts_max = 3\nbackoff_initial_ms = 50\nbackoff_max_ms = 100\n"),
    );
    let healthy = stack.authorize("M-2", 700, "healthy");
    let doomed = stack.authorize("M-13", 900, "doomed");
    stack.pg_control(json!({"merchantId": "M-13", "failureRate": 1.0}));
    post_ok(
        &stack,
        &format!("/api/payments/capture/{doomed}"),
        json!({"merchantId": "M-13"}),
    );
    post_ok(
        &stack,
        &format!("/api/payments/capture/{healthy}"),
        json!({"merchantId": "M-2"}),
    );
    assert!(wait_until(Duration::from_secs(60), || stack
        .status_of(doomed)
        == "CAPTURE_FAILED"));
    assert_eq!(
        stack.status_of(healthy),
        "CAPTURED",
        "one merchant's failures do not hold others back"
    );
    assert_eq!(
        stack.count(
            (doomed >> 42) as usize,
            &format!("SELECT attempts FROM settlement_request WHERE job_id = {doomed}")
        ),
        3
    );
    let bootstrap = stack
        .broker
        .as_ref()
        .map(|b| b.bootstrap())
        .unwrap_or_default();
    let letters = read_topic(&bootstrap, "settlement.dlq", Duration::from_secs(30), |m| {
        !m.is_empty()
    });
    assert_eq!(letters.len(), 1, "one dead letter");
    let letter = &letters[0].payload;
    assert_eq!(letter["originalTopic"], "payment.capture-requested");
    assert_eq!(letter["retryCount"], 3);
    assert_eq!(letter["errorType"], "RetriesExhausted");
    assert!(letter["payload"]
        .as_str()
        .is_some_and(|p| p.contains(&doomed.to_string())));

    // A capture that failed for good released its authorization: the ledger with
    // payment.capture-failed, the PG with a void once the PG answers again.
    assert_eq!(stack.count_all(&format!("SELECT COUNT(*) FROM outbox_event WHERE topic = 'payment.capture-failed' AND payment_id = {doomed}")), 1);
    stack.pg_control(json!({"merchantId": "M-13", "failureRate": 0.0}));
    let voided_at_pg = || {
        stack
            .pg_records("void")
            .iter()
            .filter(|r| r["paymentId"].as_u64() == Some(doomed) && r["decision"] == "APPROVED")
            .count()
    };
    // The release void met the same outage; the replay of both DLQs sends it again. A
    // replay cannot capture a released authorization: the payment stays failed.
    let replayed = stack.replay_dlq("settlement-worker");
    assert!(
        replayed.contains("settlement-worker: replayed 1"),
        "{replayed}"
    );
    assert!(
        wait_until(Duration::from_secs(60), || voided_at_pg() == 1),
        "the failed capture's authorization is voided at the PG"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stack.status_of(doomed), "CAPTURE_FAILED");
    let captures = stack
        .pg_records("capture")
        .into_iter()
        .filter(|r| r["paymentId"].as_u64() == Some(doomed) && r["decision"] == "APPROVED")
        .count();
    assert_eq!(captures, 0);
    assert_eq!(voided_at_pg(), 1, "one void");
    stack.assert_reconciled();
}

#[test]
fn a_killed_worker_resumes_without_double_effects() {
    // A killed consumer's group membership lingers until the rebalance timeout
    // (max.poll.interval.ms) with tansu; 20 s keeps the test short.
    let mut stack = TestStack::start_with(
        "pipeline_worker_killed",
        Options {
            worker_kafka_toml: "max_poll_interval_ms = 20000\nsession_timeout_ms = 6000".into(),
            ..pipeline("[scheduler]\nclaim_timeout_ms = 3000\n")
        },
    );
    let mut payments = Vec::new();
    for i in 0..150 {
        let merchant = format!("M-{}", i % 5);
        payments.push((
            merchant.clone(),
            stack.authorize(&merchant, 300, &format!("kill-{i}")),
        ));
    }
    stack.pg_control(json!({"latencyMinMs": 20, "latencyMaxMs": 40}));
    for (merchant, id) in &payments {
        post_ok(
            &stack,
            &format!("/api/payments/capture/{id}"),
            json!({"merchantId": merchant}),
        );
    }
    // Kill the settlement worker mid-stream (jobs claimed, PG calls in flight, offsets
    // not all committed), then start it again.
    std::thread::sleep(Duration::from_millis(300));
    // The ledger too: batches applied and committed, offsets not yet committed.
    let ledger_settings = stack.worker_settings[2].clone();
    stack.workers[2].0.kill();
    let restarted_ledger = payrail_tests::services::start_ledger(&stack.dir, &ledger_settings)
        .unwrap_or_else(|e| panic!("{e}"));
    stack.workers[2] = restarted_ledger;
    let settings = stack.worker_settings[0].clone();
    stack.workers[0].0.kill();
    let restarted = payrail_tests::services::start_worker(&stack.dir, &settings)
        .unwrap_or_else(|e| panic!("{e}"));
    stack.workers[0] = restarted;
    assert!(
        wait_until(Duration::from_secs(90), || stack.statuses().get("CAPTURED")
            == Some(&150)),
        "{:?}",
        stack.statuses()
    );
    assert_eq!(
        stack.pg_records("capture").len(),
        150,
        "one PG capture per payment"
    );
    assert_eq!(
        stack.count_all("SELECT COUNT(*) FROM outbox_event WHERE topic = 'payment.captured'"),
        150,
        "one event per capture"
    );
    stack.assert_reconciled();
}

/// A refund asked for while its capture settles is accepted (`AWAITING_CAPTURE`, its amount
/// reserved against the requested capture) and sent to the PG only once the capture has
/// settled; if the capture fails for good, the refund is cancelled and nothing is refunded.
#[test]
fn a_refund_waits_for_its_settling_capture_or_is_cancelled_with_it() {
    let stack = TestStack::start_with(
        "pipeline_refund_waits",
        pipeline("[retry]\nattempts_max = 3\nbackoff_initial_ms = 1000\nbackoff_max_ms = 1000\n"),
    );
    let settles = stack.authorize("M-21", 1_000, "settles");
    let fails = stack.authorize("M-22", 800, "fails");
    // Both merchants' captures fail at the PG for now, so both stay CAPTURE_REQUESTED.
    for merchant in ["M-21", "M-22"] {
        stack.pg_control(
            json!({"merchantId": merchant, "operation": "capture", "failureRate": 1.0}),
        );
    }
    post_ok(
        &stack,
        &format!("/api/payments/capture/{settles}"),
        json!({"merchantId": "M-21", "amount": 900}),
    );
    post_ok(
        &stack,
        &format!("/api/payments/capture/{fails}"),
        json!({"merchantId": "M-22"}),
    );
    let refund = |id: u64, merchant: &str, amount: i64, key: &str| {
        http::post(
            stack.addr(),
            &format!("/api/payments/refund/{id}"),
            &json!({"merchantId": merchant, "reason": "waits", "amount": amount, "idempotencyKey": key}),
        )
    };
    let first = refund(settles, "M-21", 300, "w-1");
    assert_eq!(first.status, 200, "{}", first.text());
    let body = first.json();
    assert_eq!(body["status"], "CAPTURE_REQUESTED", "{body}");
    assert_eq!(body["refunds"][0]["status"], "AWAITING_CAPTURE", "{body}");
    let second = refund(settles, "M-21", 600, "w-2");
    assert_eq!(second.status, 200, "{}", second.text());
    // Bounded by what the capture asked for (900), not by the authorization (1,000).
    let over = refund(settles, "M-21", 1, "w-3");
    assert_eq!(over.status, 409, "{}", over.text());
    assert_eq!(over.code(), "REFUND_CONFLICT");
    let doomed = refund(fails, "M-22", 800, "w-4");
    assert_eq!(doomed.status, 200, "{}", doomed.text());
    assert_eq!(
        stack.pg_records("refund").len(),
        0,
        "nothing is refunded before its capture"
    );

    // The PG takes M-21's captures again: the capture settles, then both refunds run.
    stack.pg_control(json!({"merchantId": "M-21", "operation": "capture", "failureRate": 0.0}));
    assert!(
        wait_until(Duration::from_secs(60), || stack.status_of(settles)
            == "REFUNDED"),
        "settling capture then refunds: {}",
        stack.status_of(settles)
    );
    assert!(
        wait_until(Duration::from_secs(60), || stack.status_of(fails)
            == "CAPTURE_FAILED"),
        "the failing capture fails: {}",
        stack.status_of(fails)
    );
    let shard = |id: u64| (id >> 42) as usize;
    let refund_rows = |id: u64| {
        stack.rows(
            shard(id),
            &format!(
                "SELECT amount, status FROM refund WHERE payment_id = {id} ORDER BY refund_id"
            ),
        )
    };
    assert_eq!(
        refund_rows(settles),
        vec![
            vec!["300".to_owned(), "REFUNDED".to_owned()],
            vec!["600".to_owned(), "REFUNDED".to_owned()]
        ]
    );
    assert_eq!(
        refund_rows(fails),
        vec![vec!["800".to_owned(), "CANCELLED".to_owned()]]
    );
    let amounts = |id: u64| {
        stack.rows(
            shard(id),
            &format!("SELECT captured_amount, refunded_amount, refund_pending_amount FROM payment WHERE payment_id = {id}"),
        )
    };
    assert_eq!(amounts(settles), vec![vec!["900", "900", "0"]]);
    assert_eq!(amounts(fails), vec![vec!["0", "0", "0"]]);
    // The PG refunded exactly the two waiting refunds, after the capture, and nothing of
    // the failed one.
    let refunded_at_pg: Vec<(u64, i64)> = stack
        .pg_records("refund")
        .iter()
        .filter(|r| r["decision"] == "APPROVED")
        .map(|r| {
            (
                r["paymentId"].as_u64().unwrap_or(0),
                r["amount"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(refunded_at_pg.len(), 2, "{refunded_at_pg:?}");
    assert!(refunded_at_pg.iter().all(|(id, _)| *id == settles));
    assert_eq!(refunded_at_pg.iter().map(|(_, a)| a).sum::<i64>(), 900);
    // A retry of an accepted refund replays its first answer byte for byte.
    let again = refund(settles, "M-21", 300, "w-1");
    assert_eq!(again.status, 200);
    assert_eq!(again.text(), first.text());
    stack.assert_reconciled();
}

/// Bounded growth: published outbox events and finished jobs past their retention are
/// deleted; younger ones, unpublished events and pending jobs stay.
#[test]
fn retention_purges_published_events_and_finished_jobs_only_when_old() {
    let stack = TestStack::start_with(
        "pipeline_retention",
        Options {
            ingest_toml: "[relay]\nretention_seconds = 3600\npurge_interval_seconds = 1\n".into(),
            ..pipeline("[retention]\nfinished_job_seconds = 3600\npurge_interval_seconds = 1\n")
        },
    );
    let ids: Vec<u64> = (0..6)
        .map(|i| stack.authorize("M-3", 1_000, &format!("retention-{i}")))
        .collect();
    for id in &ids {
        post_ok(
            &stack,
            &format!("/api/payments/capture/{id}"),
            json!({"merchantId": "M-3"}),
        );
    }
    assert!(
        wait_until(Duration::from_secs(60), || ids
            .iter()
            .all(|id| stack.status_of(*id) == "CAPTURED")
            && stack.outbox_backlog() == 0),
        "captured and published"
    );
    let shard = (ids[0] >> 42) as usize;
    let (old, young) = ids.split_at(3);
    let list = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    // Age half of everything by two hours.
    stack.rows(shard, &format!("UPDATE outbox_event SET created_at = created_at - INTERVAL 2 HOUR, published_at = published_at - INTERVAL 2 HOUR WHERE payment_id IN ({})", list(old)));
    stack.rows(shard, &format!("UPDATE settlement_request SET next_attempt_at = next_attempt_at - INTERVAL 2 HOUR WHERE job_id IN ({})", list(old)));
    let events_of = |ids: &[u64]| {
        stack.count(
            shard,
            &format!(
                "SELECT COUNT(*) FROM outbox_event WHERE payment_id IN ({})",
                list(ids)
            ),
        )
    };
    let jobs_of = |ids: &[u64]| {
        stack.count(
            shard,
            &format!(
                "SELECT COUNT(*) FROM settlement_request WHERE job_id IN ({})",
                list(ids)
            ),
        )
    };
    let young_events = events_of(young);
    assert!(
        young_events >= 6,
        "authorized and capture-requested per young payment"
    );
    assert!(
        wait_until(Duration::from_secs(30), || events_of(old) == 0
            && jobs_of(old) == 0),
        "old published events and old finished jobs purged: {} events, {} jobs left",
        events_of(old),
        jobs_of(old)
    );
    assert_eq!(events_of(young), young_events, "young events stay");
    assert_eq!(jobs_of(young), 3, "young jobs stay");
    // The payments themselves are never purged.
    assert_eq!(
        stack.count(
            shard,
            &format!(
                "SELECT COUNT(*) FROM payment WHERE payment_id IN ({})",
                list(&ids)
            )
        ),
        6
    );
}

/// Authorizes and captures `n` payments of `merchant` ("{round}-{i}" keys); their ids.
fn capture_all(stack: &TestStack, merchant: &str, round: &str, n: usize) -> Vec<u64> {
    let ids: Vec<u64> = (0..n)
        .map(|i| stack.authorize(merchant, 1_000, &format!("{round}-{i}")))
        .collect();
    for id in &ids {
        post_ok(
            stack,
            &format!("/api/payments/capture/{id}"),
            json!({"merchantId": merchant}),
        );
    }
    ids
}

/// Leaves shard-1 events in Kafka when shard 1 goes down: the consumers are paused (well
/// inside their session timeout) while `n` payments of MERCHANT-2 (shard 1) are captured
/// and published, then shard 1's MariaDB is killed and the consumers resume. The ids.
fn strand_on_shard_1(stack: &mut TestStack, round: &str, n: usize) -> Vec<u64> {
    let consumers: Vec<u32> = stack.workers.iter().filter_map(|(p, _)| p.pid()).collect();
    for pid in &consumers {
        payrail_tests::process::signal(*pid, "STOP");
    }
    let stranded = capture_all(stack, "MERCHANT-2", round, n);
    assert!(
        wait_until(Duration::from_secs(5), || stack.count(
            1,
            "SELECT COUNT(*) FROM outbox_event WHERE published_at IS NULL"
        ) == 0),
        "shard 1's events were not published"
    );
    if let Some(p) = stack.shards[0].proc_mut() {
        p.kill();
    }
    for pid in &consumers {
        payrail_tests::process::signal(*pid, "CONT");
    }
    stranded
}

/// No consumer left or was evicted from its group (librdkafka's max-poll eviction, or our
/// rejoin watchdog).
fn assert_no_eviction(stack: &TestStack) {
    for log in ["settlement-worker.log", "refund-worker.log", "ledger.log"] {
        let text = std::fs::read_to_string(stack.dir.join(log)).unwrap_or_default();
        for eviction in [
            "max.poll.interval",
            "MAXPOLL",
            "leaving and joining the group",
        ] {
            assert!(
                !text.contains(eviction),
                "{log} shows a group eviction: {eviction}"
            );
        }
    }
}

/// Shard 1's MariaDB down for 60 s under load: shard 2's captures and refunds settle and
/// reach the ledger as fast as before, shard 1's events already in Kafka wait in their
/// lanes and are applied once it is back, and no consumer leaves its group.
#[test]
fn a_shard_down_holds_up_only_its_own_events() {
    let mut stack = TestStack::start_with(
        "pipeline_shard_down",
        Options {
            own_shards: true,
            ..pipeline("")
        },
    );
    // MERCHANT-1 lives on shard 2, MERCHANT-2 on shard 1.
    let (up, down) = ("MERCHANT-1", "MERCHANT-2");
    let probe = stack.authorize(up, 100, "probe-up");
    assert_eq!(payrail_core::id::shard_of(probe), Some(2));
    assert_eq!(
        payrail_core::id::shard_of(stack.authorize(down, 100, "probe-down")),
        Some(1)
    );
    let in_list = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    // Ten shard-2 payments authorized and captured; how long until all are captured at
    // the PG and posted in the ledger (authorization and capture).
    let settle_lag = |stack: &TestStack, round: &str| -> Duration {
        let ids = capture_all(stack, up, round, 10);
        let started = std::time::Instant::now();
        let list = in_list(&ids);
        assert!(
            wait_until(Duration::from_secs(30), || {
                stack.count(2, &format!("SELECT COUNT(*) FROM payment WHERE status = 'CAPTURED' AND payment_id IN ({list})")) == 10
                    && stack.count(2, &format!("SELECT COUNT(*) FROM ledger_event WHERE payment_id IN ({list})")) == 20
            }),
            "{round}: shard 2's captures did not settle and post within 30 s"
        );
        started.elapsed()
    };
    let before = settle_lag(&stack, "before");

    // Shard 1's events in Kafka when it goes down.
    let stranded = strand_on_shard_1(&mut stack, "stranded", 10);

    // 60 s of outage under load on both shards' merchants (shard 1's get 503), with a
    // lag probe on shard 2 every round.
    let outage = std::time::Instant::now();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut lags = Vec::new();
    /// Stops the load when the probes end, also when one fails (or the scope would wait
    /// for the load thread forever).
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let (stack_ref, stop) = (&stack, &stop);
        let _stop_load = StopOnDrop(stop);
        scope.spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for merchant in [up, down] {
                    let reply = http::post(
                        stack_ref.addr(),
                        "/api/payments/authorize",
                        &payrail_tests::authorize_body(merchant, 500, &format!("load-{i}")),
                    );
                    if reply.status == 200 {
                        let id = reply.json()["paymentId"].as_u64().unwrap_or_default();
                        post_ok(
                            stack_ref,
                            &format!("/api/payments/capture/{id}"),
                            json!({"merchantId": merchant}),
                        );
                        let _ = http::post(
                            stack_ref.addr(),
                            &format!("/api/payments/refund/{id}"),
                            &json!({"merchantId": merchant, "reason": "load", "amount": 200, "idempotencyKey": format!("load-refund-{i}")}),
                        );
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut round = 0;
        while outage.elapsed() < Duration::from_secs(60) {
            lags.push(settle_lag(stack_ref, &format!("during-{round}")));
            round += 1;
            std::thread::sleep(Duration::from_secs(3));
        }
    });
    let worst = lags.iter().max().copied().unwrap_or_default();
    assert!(
        worst <= before * 3 + Duration::from_secs(2),
        "shard 2 slowed down while shard 1 was down: {before:?} before, {lags:?} during"
    );
    stack.shards[0].restart().unwrap_or_else(|e| panic!("{e}"));
    let list = in_list(&stranded);
    assert!(
        wait_until(Duration::from_secs(60), || {
            stack.count(1, &format!("SELECT COUNT(*) FROM payment WHERE status = 'CAPTURED' AND payment_id IN ({list})")) == 10
                && stack.count(1, &format!("SELECT COUNT(*) FROM ledger_event WHERE payment_id IN ({list})")) == 20
        }),
        "shard 1's events were not applied after it came back: {:?}",
        stack.rows(
            1,
            &format!("SELECT payment_id, status FROM payment WHERE payment_id IN ({list})")
        )
    );
    let captures = stack.pg_records("capture");
    for id in &stranded {
        let at_pg = captures
            .iter()
            .filter(|r| r["paymentId"].as_u64() == Some(*id))
            .count();
        assert_eq!(at_pg, 1, "payment {id}: one capture at the PG");
    }
    assert_no_eviction(&stack);
    assert!(
        wait_until(Duration::from_secs(60), || stack.outbox_backlog() == 0),
        "the outbox did not drain:\n{}",
        stack.relay_diagnostics()
    );
    stack.assert_reconciled();
}

/// The workers publish their own events: with every ingest instance stopped, captures
/// (and the refunds waiting on them) still settle at the PG, their `payment.captured`,
/// `payment.refund-requested` and `payment.refunded` events are relayed by the workers, and
/// the ledger posts them.
#[test]
fn with_every_ingest_down_captures_and_refunds_still_settle_and_post() {
    let mut stack = TestStack::start_with(
        "pipeline_no_ingest",
        Options {
            ingest_toml: "[relay]\nlease_ms = 2000\n".into(),
            ..pipeline("[relay]\nlease_ms = 2000\n")
        },
    );
    let n = 20;
    let ids: Vec<u64> = (0..n)
        .map(|i| stack.authorize(&format!("M-{i}"), 1_000, &format!("alone-{i}")))
        .collect();
    // Captures answered slowly (under the workers' 5 s PG timeout), so they settle after
    // ingest is gone.
    stack.pg_control(json!({"latencyMinMs": 3500, "latencyMaxMs": 4000}));
    for (i, id) in ids.iter().enumerate() {
        let merchant = format!("M-{i}");
        post_ok(
            &stack,
            &format!("/api/payments/capture/{id}"),
            json!({"merchantId": merchant}),
        );
        post_ok(
            &stack,
            &format!("/api/payments/refund/{id}"),
            json!({"merchantId": merchant, "reason": "alone", "amount": 300, "idempotencyKey": format!("alone-refund-{i}")}),
        );
    }
    // ingest's relay has published the capture requests; then every ingest stops.
    assert!(
        wait_until(Duration::from_secs(20), || stack.outbox_backlog() == 0),
        "ingest published its events:\n{}",
        stack.relay_diagnostics()
    );
    for ingest in &mut stack.ingests {
        ingest.kill();
    }
    assert_eq!(
        stack.count_all("SELECT COUNT(*) FROM payment WHERE status = 'CAPTURE_REQUESTED'"),
        n,
        "the captures settle after ingest is gone"
    );
    assert!(
        wait_until(Duration::from_secs(90), || stack
            .statuses()
            .get("PARTIALLY_REFUNDED")
            == Some(&n)),
        "captures and refunds settle with no ingest running: {:?}",
        stack.statuses()
    );
    assert!(
        wait_until(Duration::from_secs(60), || {
            stack.count_all(
            "SELECT COUNT(*) FROM ledger_event WHERE event_type IN ('PAYMENT_CAPTURED', 'PAYMENT_REFUNDED')"
        ) == 2 * n
        }),
        "the ledger posts the workers' events: {}",
        stack.count_all("SELECT COUNT(*) FROM ledger_event")
    );
    assert_eq!(
        stack.outbox_backlog(),
        0,
        "the workers' relays drained the outbox"
    );
    stack.assert_reconciled();
}

/// Past `kafka.lanes_max_waiting` the consumers pause fetching (still polling, so they keep
/// their group membership) and resume once their lanes drain: nothing is lost or applied
/// twice across the pause.
#[test]
fn full_lanes_pause_fetching_and_lose_nothing() {
    let mut stack = TestStack::start_with(
        "pipeline_lanes_full",
        Options {
            own_shards: true,
            worker_kafka_toml: "lanes_max_waiting = 4".into(),
            ..pipeline("")
        },
    );
    // MERCHANT-1 lives on shard 2, MERCHANT-2 on shard 1.
    // Shard 1's events reach Kafka, then shard 1 goes down under the paused consumers.
    let stranded = strand_on_shard_1(&mut stack, "full", 20);
    // Shard 2's events arrive while the lanes are full.
    let others = capture_all(&stack, "MERCHANT-1", "other", 10);
    let paused = |log: &str| {
        std::fs::read_to_string(stack.dir.join(log))
            .unwrap_or_default()
            .contains("shard lanes full: pausing consumption")
    };
    assert!(
        wait_until(Duration::from_secs(20), || paused("ledger.log")
            && paused("settlement-worker.log")),
        "the ledger and the settlement worker paused fetching"
    );
    std::thread::sleep(Duration::from_secs(5));
    stack.shards[0].restart().unwrap_or_else(|e| panic!("{e}"));
    for (shard, ids) in [(1, &stranded), (2, &others)] {
        let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let n = ids.len() as i64;
        assert!(
            wait_until(Duration::from_secs(60), || {
                stack.count(shard, &format!("SELECT COUNT(*) FROM payment WHERE status = 'CAPTURED' AND payment_id IN ({list})")) == n
                    && stack.count(shard, &format!("SELECT COUNT(*) FROM ledger_event WHERE payment_id IN ({list})")) == 2 * n
            }),
            "shard {shard}: every payment captured and posted after the pause: {:?}",
            stack.statuses()
        );
    }
    assert_eq!(
        stack.pg_records("capture").len(),
        30,
        "one PG capture per payment"
    );
    assert_no_eviction(&stack);
    stack.assert_reconciled();
}
