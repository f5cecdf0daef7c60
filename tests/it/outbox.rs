//! The outbox relay against a real Kafka-protocol broker: every committed event reaches
//! its topic, one relay per shard, nothing lost when a relay dies or the broker is down.

use payrail_tests::http;
use payrail_tests::kafka::{read_topic, Received};
use payrail_tests::stack::{Options, TestStack};
use payrail_tests::{authorize_body, wait_until};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

fn kafka_options(instances: usize, ingest_toml: &str, kafka_toml: &str) -> Options {
    Options {
        ingest_instances: instances,
        kafka: true,
        ingest_toml: ingest_toml.into(),
        kafka_toml: kafka_toml.into(),
        ..Options::default()
    }
}

/// Reads `topic` until it has seen every id in `expected`; returns the distinct ids seen
/// and the number of messages (duplicates included).
fn ids_on_topic(
    stack: &TestStack,
    topic: &str,
    expected: &BTreeSet<u64>,
) -> (BTreeSet<u64>, usize, Vec<Received>) {
    let bootstrap = stack
        .broker
        .as_ref()
        .map(|b| b.bootstrap())
        .unwrap_or_default();
    let messages = read_topic(&bootstrap, topic, Duration::from_secs(60), |got| {
        let seen: BTreeSet<u64> = got
            .iter()
            .filter_map(|m| m.payload["eventId"].as_u64())
            .collect();
        expected.is_subset(&seen)
    });
    let seen = messages
        .iter()
        .filter_map(|m| m.payload["eventId"].as_u64())
        .collect();
    (seen, messages.len(), messages)
}

/// The broker process's pid, for SIGSTOP / SIGCONT.
fn broker_pid(stack: &TestStack) -> u32 {
    stack
        .broker
        .as_ref()
        .and_then(|b| b.pid())
        .unwrap_or_default()
}

fn leaders(stack: &TestStack, shard: u16) -> usize {
    stack
        .addrs
        .iter()
        .filter(|addr| shard_metric(addr, "payrail_outbox_relay_leader", shard) == 1.0)
        .count()
}

#[test]
fn every_event_reaches_kafka_with_one_relay_per_shard() {
    let stack = TestStack::start_with(
        "outbox_flow",
        // The default lease. The producer's message timeout is a third of the lease: with
        // the takeover tests' 2 s lease a broker answer slower than 0.67 s fails its send,
        // and a few such failures open the publisher breaker for 30 s.
        kafka_options(2, "", ""),
    );
    let mut ids = Vec::new();
    for i in 0..200 {
        let addr = &stack.addrs[i % 2];
        let reply = http::post(
            addr,
            "/api/payments/authorize",
            &authorize_body(&format!("M-{}", i % 20), 100 + i as i64, &format!("o-{i}")),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        ids.push((
            format!("M-{}", i % 20),
            reply.json()["paymentId"].as_u64().unwrap_or(0),
        ));
    }
    for (i, (merchant, id)) in ids.iter().enumerate() {
        let path = if i % 2 == 0 {
            format!("/api/payments/capture/{id}")
        } else if i % 5 == 1 {
            format!("/api/payments/void/{id}")
        } else {
            continue;
        };
        assert_eq!(
            http::post(stack.addr(), &path, &json!({"merchantId": merchant})).status,
            200
        );
    }
    assert!(
        wait_until(Duration::from_secs(60), || stack.outbox_backlog() == 0),
        "the outbox must drain:\n{}",
        stack.relay_diagnostics()
    );
    for topic in [
        "payment.authorized",
        "payment.capture-requested",
        "payment.void-requested",
    ] {
        let expected = stack.outbox_event_ids(topic);
        assert!(!expected.is_empty());
        let (seen, _, messages) = ids_on_topic(&stack, topic, &expected);
        assert_eq!(seen, expected, "{topic}: exactly the committed events");
        for m in &messages {
            assert_eq!(
                m.key,
                m.payload["paymentId"].as_u64().unwrap_or(0).to_string(),
                "key = paymentId"
            );
            assert_eq!(
                m.event_id_header
                    .as_deref()
                    .and_then(|h| h.parse::<u64>().ok()),
                m.payload["eventId"].as_u64()
            );
            assert!(
                m.payload["merchantId"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "every event names its merchant"
            );
        }
    }
    for shard in [1, 2] {
        assert_eq!(
            leaders(&stack, shard),
            1,
            "exactly one relay publishes shard {shard}"
        );
    }
    let lag = http::get(stack.addr(), "/metrics").text();
    assert!(lag.contains("payrail_outbox_lag_seconds_count"));
}

#[test]
fn a_relay_killed_mid_stream_loses_nothing() {
    let mut stack = TestStack::start_with(
        "outbox_relay_killed",
        kafka_options(2, "[relay]\nlease_ms = 2000\nbatch_size_max = 20\n", ""),
    );
    let survivor = stack.addrs[1].clone();
    let writer = std::thread::spawn(move || {
        for i in 0..300 {
            let reply = http::post(
                &survivor,
                "/api/payments/authorize",
                &authorize_body(&format!("M-{}", i % 7), 10, &format!("k-{i}")),
            );
            assert_eq!(reply.status, 200, "{}", reply.text());
        }
    });
    std::thread::sleep(Duration::from_millis(400));
    stack.ingests[0].kill();
    writer.join().unwrap_or_else(|_| panic!("writer failed"));
    assert!(
        wait_until(Duration::from_secs(60), || stack.outbox_backlog() == 0),
        "the surviving relay must take over and drain:\n{}",
        stack.relay_diagnostics()
    );
    let expected = stack.outbox_event_ids("payment.authorized");
    assert_eq!(expected.len(), 300);
    let (seen, messages, _) = ids_on_topic(&stack, "payment.authorized", &expected);
    assert_eq!(seen, expected, "no event lost, none invented");
    eprintln!("relay killed: {} messages for {} events ({} redelivered, deduplicated by eventId downstream)", messages, expected.len(), messages - expected.len());
}

#[test]
fn a_broker_outage_opens_the_breaker_and_the_backlog_drains() {
    let mut stack = TestStack::start_with(
        "outbox_broker_outage",
        kafka_options(
            1,
            "[relay.breaker]\nminimum_calls = 5\nopen_wait_ms = 3000\nhalf_open_probes = 3\n",
            "message_timeout_ms = 2000\nrequest_timeout_ms = 1000\n",
        ),
    );
    let addr = stack.addr().to_owned();
    assert_eq!(
        http::post(
            &addr,
            "/api/payments/authorize",
            &authorize_body("M-1", 10, "before")
        )
        .status,
        200
    );
    assert!(wait_until(Duration::from_secs(20), || stack
        .outbox_backlog()
        == 0));
    // A broker that runs but does not answer shows in `/health` without any traffic.
    let kafka_check = |addr: &str| {
        let health = http::get(addr, "/health").json();
        (
            health["status"].as_str().unwrap_or_default().to_owned(),
            health["checks"]["kafka"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    assert!(
        wait_until(Duration::from_secs(15), || kafka_check(&addr)
            == ("UP".into(), "UP".into())),
        "the broker answers: {:?}",
        kafka_check(&addr)
    );
    let broker_pid = broker_pid(&stack);
    payrail_tests::process::signal(broker_pid, "STOP");
    let silent = wait_until(Duration::from_secs(15), || {
        kafka_check(&addr) == ("DEGRADED".into(), "DOWN".into())
    });
    let during = kafka_check(&addr);
    payrail_tests::process::signal(broker_pid, "CONT");
    assert!(silent, "a paused broker shows as DOWN: {during:?}");
    assert!(
        wait_until(Duration::from_secs(15), || kafka_check(&addr)
            == ("UP".into(), "UP".into())),
        "and UP again once it answers: {:?}",
        kafka_check(&addr)
    );
    if let Some(b) = stack.broker.as_mut() {
        b.stop();
    }
    // 30 s of outage, four authorizations a second.
    let mut opened = false;
    for i in 0..120 {
        let reply = http::post(
            &addr,
            "/api/payments/authorize",
            &authorize_body(&format!("M-{}", i % 3), 10, &format!("during-{i}")),
        );
        assert_eq!(
            reply.status,
            200,
            "authorizations keep answering while the broker is down: {}",
            reply.text()
        );
        opened |= http::get(&addr, "/health").json()["checks"]["kafka-publisher-breaker"] == "OPEN";
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        opened,
        "the kafka-publisher breaker must open during the outage"
    );
    assert!(stack.outbox_backlog() > 0, "events wait in the outbox");
    if let Some(b) = stack.broker.as_mut() {
        b.restart().unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(
        wait_until(Duration::from_secs(60), || stack.outbox_backlog() == 0),
        "the backlog drains after recovery:\n{}",
        stack.relay_diagnostics()
    );
    let expected = stack.outbox_event_ids("payment.authorized");
    assert_eq!(expected.len(), 121);
    let (seen, _, _) = ids_on_topic(&stack, "payment.authorized", &expected);
    assert_eq!(seen, expected);
    assert!(wait_until(Duration::from_secs(20), || http::get(
        &addr, "/health"
    )
    .json()["checks"]["kafka-publisher-breaker"]
        == "CLOSED"));
}

/// `name{…shard="N"…}` from one instance's `/metrics`.
fn shard_metric(addr: &str, name: &str, shard: u16) -> f64 {
    payrail_tests::metric_value(
        &http::get(addr, "/metrics").text(),
        name,
        &format!("shard=\"{shard}\""),
    )
    .unwrap_or(-1.0)
}

/// The lease holder of shard 1 is stalled (SIGSTOP) mid-round, with its sends waiting on
/// a paused broker, until another relay has taken the lease over. Once resumed it sends
/// nothing more and marks nothing: its own queued sends ran out before its lease did, and
/// its marks are fenced by the lease epoch. Every event still reaches the topic.
#[test]
fn a_relay_stalled_past_its_lease_sends_and_marks_nothing_after_a_takeover() {
    let stack = TestStack::start_with(
        "outbox_relay_fenced",
        kafka_options(2, "[relay]\nlease_ms = 2000\nbatch_size_max = 20\n", ""),
    );
    assert!(
        wait_until(Duration::from_secs(20), || leaders(&stack, 1) == 1),
        "one relay leads shard 1"
    );
    let leads = |addr: &str| shard_metric(addr, "payrail_outbox_relay_leader", 1) == 1.0;
    let holder = if leads(&stack.addrs[0]) { 0 } else { 1 };
    let (stale, other) = (stack.addrs[holder].clone(), stack.addrs[1 - holder].clone());
    let stale_pid = stack.ingests[holder].pid().unwrap_or_default();
    let broker_pid = broker_pid(&stack);
    // Events keep coming through the other instance the whole time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (other, stop) = (other.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = http::post(
                    &other,
                    "/api/payments/authorize",
                    &authorize_body(&format!("M-{}", i % 9), 10, &format!("f-{i}")),
                );
                assert_eq!(reply.status, 200, "{}", reply.text());
                i += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // The holder's round waits on the paused broker; then the holder itself stalls.
    payrail_tests::process::signal(broker_pid, "STOP");
    std::thread::sleep(Duration::from_millis(500));
    let sent = shard_metric(&stale, "payrail_outbox_sent_total", 1);
    let marked = shard_metric(&stale, "payrail_outbox_marked_total", 1);
    assert!(sent > 0.0, "the holder was publishing");
    payrail_tests::process::signal(stale_pid, "STOP");
    assert!(
        wait_until(Duration::from_secs(15), || leads(&other)),
        "the other relay takes the lease over"
    );
    payrail_tests::process::signal(stale_pid, "CONT");
    std::thread::sleep(Duration::from_secs(1));
    payrail_tests::process::signal(broker_pid, "CONT");
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap_or_else(|_| panic!("writer failed"));
    assert!(
        wait_until(Duration::from_secs(60), || stack.outbox_backlog() == 0),
        "the new holder drains the outbox:\n{}",
        stack.relay_diagnostics()
    );
    assert_eq!(
        shard_metric(&stale, "payrail_outbox_sent_total", 1),
        sent,
        "the stalled relay sent nothing after it resumed"
    );
    assert_eq!(
        shard_metric(&stale, "payrail_outbox_marked_total", 1),
        marked,
        "the stalled relay marked nothing after it resumed"
    );
    assert!(!leads(&stale), "the stalled relay knows it lost the lease");
    let expected = stack.outbox_event_ids("payment.authorized");
    let (seen, _, _) = ids_on_topic(&stack, "payment.authorized", &expected);
    assert_eq!(seen, expected, "no event lost, none invented");
}
