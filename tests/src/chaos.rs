//! `cargo xtask chaos --seed N --minutes M`: the whole appliance on the two-host mirror,
//! full-flow load through the gateway, and a schedule of faults drawn from the seed:
//! SIGKILL and restart of each kind of service, SIGSTOP/SIGCONT of the broker, Redis and
//! one MariaDB shard, the vm1 link cut and healed, and PG answers lost (applied, then an
//! error or a dropped connection). Faults overlap. Then every fault is healed, every
//! request that got no clear answer is retried with its key as a client would, the
//! pipeline drains, and the invariants of `system.md` are checked (see [`verdict`]).
//!
//! The schedule is a pure function of the seed ([`schedule`]): the same seed gives the
//! same faults at the same offsets, printed before the run and as each one happens. The
//! timing of the load around them is the machine's, so a failing seed is re-run a few
//! times before it becomes a regression case (`tests/it/chaos.rs`).
//! Like Jepsen: real processes, real faults, a checker at the end; like TigerBeetle's
//! VOPR: reproducible from a seed.

use crate::appliance::Appliance;
use crate::hosts::TwoHost;
use crate::http;
use crate::process::signal;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// splitmix64: a small, well-mixed generator, so a schedule depends on the seed alone
/// (no crate whose stream could change with its version).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// Services killed with SIGKILL and started again (each kind; ingest by instance).
const KILLABLE: [&str; 7] = [
    "ingest-1",
    "ingest-2",
    "gateway",
    "settlement-worker",
    "refund-worker",
    "ledger",
    "monitoring",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, then started again after the fault's duration.
    Kill(&'static str),
    /// SIGSTOP, then SIGCONT: `broker`, `redis`, `shard1` or `shard2`.
    Pause(&'static str),
    /// vm1's link down, then up.
    CutVm1,
    /// pg-mock applies 15 % of calls and fails the answer, 15 % and drops it.
    PgLostAnswers,
}

impl Fault {
    /// What the fault holds, so two faults on one target never overlap.
    fn target(&self) -> &'static str {
        match self {
            Fault::Kill(name) | Fault::Pause(name) => name,
            Fault::CutVm1 => "vm1-link",
            Fault::PgLostAnswers => "pg",
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill(_) => "kill",
            Fault::Pause(_) => "pause",
            Fault::CutVm1 => "link cut",
            Fault::PgLostAnswers => "PG lost answers",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Kill(name) => write!(f, "SIGKILL {name}, restart"),
            Fault::Pause(name) => write!(f, "SIGSTOP {name}, SIGCONT"),
            Fault::CutVm1 => write!(f, "cut vm1 ↔ vm2, heal"),
            Fault::PgLostAnswers => write!(f, "PG loses 30 % of answers"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: Duration,
    pub lasts: Duration,
    pub fault: Fault,
}

/// The faults of a run of `length`: one every 4–12 s from 10 s in, each lasting 3–12 s
/// (a link cut 3–8 s), none in the last 20 s; a fault whose target is still under an
/// earlier one is drawn again. The paused shard is the seed's choice for the whole run.
pub fn schedule(seed: u64, length: Duration) -> Vec<Event> {
    let mut rng = Rng(seed);
    let shard = if rng.next().is_multiple_of(2) {
        "shard1"
    } else {
        "shard2"
    };
    let mut kinds: Vec<Fault> = KILLABLE.iter().map(|s| Fault::Kill(s)).collect();
    kinds.extend([
        Fault::Pause("broker"),
        Fault::Pause("redis"),
        Fault::Pause(shard),
        Fault::CutVm1,
        Fault::PgLostAnswers,
    ]);
    let mut events: Vec<Event> = Vec::new();
    let mut at = Duration::from_secs(10);
    let end = length.saturating_sub(Duration::from_secs(20));
    while at < end {
        let fault = kinds[(rng.next() % kinds.len() as u64) as usize].clone();
        let longest = if fault == Fault::CutVm1 { 8 } else { 12 };
        let lasts = Duration::from_secs(rng.between(3, longest));
        let busy = events
            .iter()
            .any(|e| e.fault.target() == fault.target() && e.at + e.lasts > at);
        if !busy {
            events.push(Event {
                at,
                lasts: lasts.min(end - at),
                fault,
            });
        }
        at += Duration::from_secs(rng.between(4, 12));
    }
    events
}

pub struct Options {
    pub seed: u64,
    pub length: Duration,
    /// Full-flow iterations per second offered.
    pub rate: u32,
    /// Where the appliance's state and the run's report go.
    pub dir_name: String,
    /// Mirror namespaces' name and subnet.
    pub mirror: (String, u8),
}

/// One request a client made, and what it finally got.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    body: serde_json::Value,
    /// Statuses, first try and then each retry.
    statuses: Vec<u16>,
    /// The last answer's error code, and the first's.
    code: String,
    first_code: String,
    payment_id: Option<u64>,
}

impl Call {
    fn last(&self) -> u16 {
        self.statuses.last().copied().unwrap_or(0)
    }

    /// No clear answer yet: the client must retry with the same key. That includes a 409
    /// saying the key is still being processed (by a request cut off in a killed ingest,
    /// whose reservation holds until its lease runs out).
    fn unclear(&self) -> bool {
        unclear(self.last()) || self.code == "IDEMPOTENCY_KEY_IN_USE"
    }
}

/// How long clients retry, after the run, what got no clear answer.
const RETRY_FOR: Duration = Duration::from_secs(150);

fn unclear(status: u16) -> bool {
    matches!(status, 0 | 429 | 502 | 503 | 504)
}

fn send(gateway: &str, call: &mut Call) {
    let body = call.body.to_string().into_bytes();
    let status = match http::request(
        gateway,
        "POST",
        &call.path,
        &[("Content-Type", "application/json")],
        Some(&body),
    ) {
        Ok(reply) => {
            if let Some(id) = reply.json()["paymentId"].as_u64() {
                call.payment_id = Some(id);
            }
            call.code = reply.code();
            reply.status
        }
        Err(_) => {
            call.code.clear();
            0
        }
    };
    if call.statuses.is_empty() {
        call.first_code = call.code.clone();
    }
    call.statuses.push(status);
}

/// Authorize, capture (whole or half), and for every second payment a partial refund
/// with its own key, as the reference's full flow does. A step without a clear answer
/// ends the iteration; the request is retried after the run.
fn iteration(gateway: &str, seed: u64, i: u64, calls: &Mutex<Vec<Call>>) {
    let merchant = format!("MERCHANT-{}", i % 20);
    let amount = 1_000 + (i * 7919 % 9_000) as i64;
    let step = |path: String, body: serde_json::Value| {
        let mut call = Call {
            path,
            body,
            statuses: Vec::new(),
            code: String::new(),
            first_code: String::new(),
            payment_id: None,
        };
        send(gateway, &mut call);
        let ok = call.last() == 200;
        let id = call.payment_id;
        calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
        ok.then_some(id).flatten()
    };
    let Some(id) = step(
        "/api/payments/authorize".into(),
        crate::authorize_body(&merchant, amount, &format!("chaos-{seed}-{i}")),
    ) else {
        return;
    };
    std::thread::sleep(Duration::from_millis(50));
    let captured = if i.is_multiple_of(3) {
        amount / 2
    } else {
        amount
    };
    if step(
        format!("/api/payments/capture/{id}"),
        serde_json::json!({ "merchantId": merchant, "amount": captured }),
    )
    .is_none()
    {
        return;
    }
    if i.is_multiple_of(2) {
        std::thread::sleep(Duration::from_millis(50));
        step(
            format!("/api/payments/refund/{id}"),
            serde_json::json!({ "merchantId": merchant, "amount": captured / 3, "reason": "chaos", "idempotencyKey": format!("chaos-refund-{seed}-{i}") }),
        );
    }
}

/// The run's outcome: what was injected, what the clients saw, what the checker found.
pub struct Verdict {
    pub seed: u64,
    pub faults: BTreeMap<&'static str, usize>,
    /// First answers by status and, for errors, code (`409 REFUND_CONFLICT`).
    pub answers: BTreeMap<String, usize>,
    pub iterations: u64,
    pub violations: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "chaos seed {}: {}",
            self.seed,
            if self.passed() { "PASS" } else { "FAIL" }
        )?;
        writeln!(f, "  faults injected: {:?}", self.faults)?;
        writeln!(
            f,
            "  iterations {}, first answers: {:?}",
            self.iterations, self.answers
        )?;
        for v in &self.violations {
            writeln!(f, "  VIOLATION {v}")?;
        }
        Ok(())
    }
}

/// What the schedule acts on: the appliance's processes, pg-mock's behaviour and the
/// mirror's vm1 link.
struct Faults<'a> {
    appliance: &'a mut Appliance,
    mirror: &'a TwoHost,
}

impl Faults<'_> {
    fn pid(&self, target: &str) -> Option<u32> {
        match target {
            "shard1" => self.appliance.shards[0].pid(),
            "shard2" => self.appliance.shards[1].pid(),
            name => self
                .appliance
                .procs
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, p)| p.pid()),
        }
    }

    fn begin(&mut self, fault: &Fault) -> Result<(), String> {
        match fault {
            Fault::Kill(name) => {
                if let Some(proc) = self.appliance.proc_mut(name) {
                    proc.kill();
                }
            }
            Fault::Pause(target) => {
                if let Some(pid) = self.pid(target) {
                    signal(pid, "STOP");
                }
            }
            Fault::CutVm1 => self.mirror.cut()?,
            Fault::PgLostAnswers => pg_lost_answers(&self.appliance.layout.pg(), 0.15)?,
        }
        Ok(())
    }

    fn end(&mut self, fault: &Fault) -> Result<(), String> {
        match fault {
            Fault::Kill(name) => self.appliance.restart(name)?,
            Fault::Pause(target) => {
                if let Some(pid) = self.pid(target) {
                    signal(pid, "CONT");
                }
            }
            Fault::CutVm1 => self.mirror.heal()?,
            Fault::PgLostAnswers => pg_lost_answers(&self.appliance.layout.pg(), 0.0)?,
        }
        Ok(())
    }
}

fn pg_lost_answers(pg: &str, rate: f64) -> Result<(), String> {
    let body = serde_json::json!({ "applyThenFailRate": rate, "applyThenDropRate": rate });
    match http::request(
        pg,
        "POST",
        "/v1/control",
        &[("Content-Type", "application/json")],
        Some(body.to_string().as_bytes()),
    ) {
        Ok(reply) if reply.status == 200 => Ok(()),
        Ok(reply) => Err(format!("pg-mock control: {}", reply.text())),
        Err(e) => Err(format!("pg-mock control: {e}")),
    }
}

fn log(started: Instant, line: &str) {
    let t = started.elapsed();
    println!(
        "[chaos {:>4}.{} s] {line}",
        t.as_secs(),
        t.subsec_millis() / 100
    );
}

/// Starts the appliance, runs the load and the schedule, heals, retries, drains and checks.
pub fn run(options: &Options) -> Result<Verdict, String> {
    let events = schedule(options.seed, options.length);
    println!(
        "chaos seed {}: {} s of full flow at {} it/s, {} faults:",
        options.seed,
        options.length.as_secs(),
        options.rate,
        events.len()
    );
    for e in &events {
        println!(
            "  at {:>4} s for {:>2} s: {}",
            e.at.as_secs(),
            e.lasts.as_secs(),
            e.fault
        );
    }
    let (mirror, mut appliance, _) = Appliance::start_on_mirror(
        &options.mirror.0,
        options.mirror.1,
        &options.dir_name,
        crate::kafka::storage_engine(),
        |_| {},
    )?;
    let result = exercise(options, &events, &mut appliance, &mirror);
    appliance.finish_on_mirror(mirror, matches!(&result, Ok(v) if v.passed()), "chaos");
    result
}

fn exercise(
    options: &Options,
    events: &[Event],
    appliance: &mut Appliance,
    mirror: &TwoHost,
) -> Result<Verdict, String> {
    let gateway = appliance.layout.gateway();
    let calls = Arc::new(Mutex::new(Vec::<Call>::new()));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let load: Vec<_> = (0..32)
        .map(|_| {
            let (gateway, calls, next) = (gateway.clone(), calls.clone(), next.clone());
            let (seed, rate, length) = (options.seed, u64::from(options.rate), options.length);
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let due = Duration::from_micros(i * 1_000_000 / rate);
                if due >= length {
                    break;
                }
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
                iteration(&gateway, seed, i, &calls);
            })
        })
        .collect();

    // The schedule, as begin and end steps in time order.
    let mut steps: Vec<(Duration, bool, &Event)> = events
        .iter()
        .flat_map(|e| [(e.at, true, e), (e.at + e.lasts, false, e)])
        .collect();
    steps.sort_by_key(|(at, begin, _)| (*at, *begin));
    let mut faults = Faults { appliance, mirror };
    let mut violations = Vec::new();
    let mut injected: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (at, begin, event) in &steps {
        if let Some(wait) = at.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let outcome = if *begin {
            *injected.entry(event.fault.kind()).or_default() += 1;
            log(started, &format!("begin {}", event.fault));
            faults.begin(&event.fault)
        } else {
            log(started, &format!("end   {}", event.fault));
            faults.end(&event.fault)
        };
        if let Err(e) = outcome {
            violations.push(format!(
                "the fault could not be applied: {}: {e}",
                event.fault
            ));
        }
    }
    for worker in load {
        let _ = worker.join();
    }
    log(
        started,
        "load done; retrying every request without a clear answer",
    );
    let appliance = faults.appliance;
    let mut calls = std::mem::take(&mut *calls.lock().unwrap_or_else(|e| e.into_inner()));
    let iterations = next
        .load(Ordering::Relaxed)
        .min(options.length.as_secs() * u64::from(options.rate));
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for call in &calls {
        let answer = format!("{} {}", call.statuses[0], call.first_code);
        *answers.entry(answer.trim_end().to_owned()).or_default() += 1;
    }
    // A client retries with the same key (a capture has none: its retry finds the state).
    std::thread::scope(|scope| {
        let pending: Vec<&mut Call> = calls.iter_mut().filter(|c| c.unclear()).collect();
        let per = pending.len().div_ceil(8).max(1);
        let mut chunks: Vec<Vec<&mut Call>> = Vec::new();
        let mut pending = pending.into_iter().peekable();
        while pending.peek().is_some() {
            chunks.push(pending.by_ref().take(per).collect());
        }
        for chunk in chunks {
            let gateway = &gateway;
            scope.spawn(move || {
                // Round-robin, so calls waiting out one lease wait together.
                let mut chunk = chunk;
                let deadline = Instant::now() + RETRY_FOR;
                while chunk.iter().any(|c| c.unclear()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(500));
                    for call in chunk.iter_mut().filter(|c| c.unclear()) {
                        send(gateway, call);
                    }
                }
            });
        }
    });
    log(started, "retries done; waiting for the pipeline to drain");
    check(appliance, &calls, &mut violations);
    log(started, "checked");
    Ok(Verdict {
        seed: options.seed,
        faults: injected,
        answers,
        iterations,
        violations,
    })
}

/// The invariants of `system.md` after the run:
/// - every answer was clear (no 500, nothing but 200, 402, 409 and the retryable ones), and
///   every request without one got one when retried with its key (every key resolved);
/// - every payment answered 200 exists with its amount (no acknowledged payment lost);
/// - one payment per authorization key and one PG authorization per payment, at most one
///   PG capture per payment (no duplicate effect at the PG);
/// - every capture answered 200 left the payment captured or settling to its end state;
/// - the pipeline drains (outbox, jobs, unresolved PG outcomes) and the three-way
///   reconciliation is clean (ledger balanced per event and per payment, PG agrees).
fn check(appliance: &Appliance, calls: &[Call], violations: &mut Vec<String>) {
    let gateway = appliance.layout.gateway();
    for call in calls {
        if call.statuses.contains(&500) {
            violations.push(format!("500 for {} {}", call.path, call.body));
        }
        if let Some(s) = call
            .statuses
            .iter()
            .find(|s| !matches!(**s, 200 | 402 | 409) && !unclear(**s))
        {
            violations.push(format!("answer {s} for {} {}", call.path, call.body));
        }
        if call.unclear() {
            violations.push(format!(
                "no clear answer after 150 s of retries: {} {} ({:?} {})",
                call.path, call.body, call.statuses, call.code
            ));
        }
    }
    for call in calls
        .iter()
        .filter(|c| c.path.ends_with("/authorize") && !matches!(c.last(), 200 | 402))
    {
        violations.push(format!(
            "authorization {} ended {:?} {}",
            call.body, call.statuses, call.code
        ));
    }
    let authorized: Vec<&Call> = calls
        .iter()
        .filter(|c| c.path.ends_with("/authorize") && c.last() == 200)
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for call in &authorized {
        let Some(id) = call.payment_id else {
            violations.push(format!("200 without a payment id: {}", call.body));
            continue;
        };
        if !ids.insert(id) {
            violations.push(format!("payment {id} answered for two keys"));
        }
        let merchant = call.body["merchantId"].as_str().unwrap_or("");
        let reply = http::get(
            &gateway,
            &format!("/api/payments/{id}?merchantId={merchant}"),
        );
        if reply.status != 200 || reply.json()["amount"] != call.body["amount"] {
            violations.push(format!(
                "payment {id} answered 200 but reads {}: {}",
                reply.status,
                reply.text()
            ));
        }
    }
    let drained = crate::wait_until(Duration::from_secs(240), || {
        appliance.shards.iter().all(|db| {
            db.count(
                "payrail",
                &format!(
                    "SELECT (SELECT COUNT(*) FROM payment WHERE status IN ('CAPTURE_REQUESTED','REFUND_REQUESTED','VOID_REQUESTED')) \
                     + (SELECT COUNT(*) FROM refund WHERE status = 'REQUESTED') \
                     + (SELECT COUNT(*) FROM outbox_event WHERE published_at IS NULL) \
                     + (SELECT COUNT(*) FROM idempotency_record WHERE {})",
                    payrail_db::UNRESOLVED
                ),
            ) == 0
        })
    });
    if !drained {
        violations.push("the pipeline did not drain within 240 s of the retries".into());
    }
    let in_db: i64 = appliance
        .shards
        .iter()
        .map(|db| {
            db.count(
                "payrail",
                "SELECT COUNT(*) FROM payment WHERE status NOT IN ('DECLINED', 'FAILED')",
            )
        })
        .sum();
    if in_db != ids.len() as i64 {
        violations.push(format!(
            "{in_db} authorized payments in the shards, {} authorization keys answered 200",
            ids.len()
        ));
    }
    let pg = appliance.layout.pg();
    let records = |operation: &str| -> Vec<u64> {
        http::get(&pg, &format!("/v1/records?operation={operation}")).json()["records"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter(|r| {
                        !r["decision"]
                            .as_str()
                            .unwrap_or("")
                            .eq_ignore_ascii_case("declined")
                    })
                    .filter_map(|r| r["paymentId"].as_u64())
                    .collect()
            })
            .unwrap_or_default()
    };
    let pg_authorizations = records("authorize");
    if pg_authorizations.len() != ids.len() {
        violations.push(format!(
            "the PG holds {} authorizations for {} payments",
            pg_authorizations.len(),
            ids.len()
        ));
    }
    let mut captures: BTreeMap<u64, usize> = BTreeMap::new();
    for id in records("capture") {
        *captures.entry(id).or_default() += 1;
    }
    for (id, n) in captures.iter().filter(|(_, n)| **n > 1) {
        violations.push(format!("payment {id} captured {n} times at the PG"));
    }
    for call in calls
        .iter()
        .filter(|c| c.path.contains("/capture/") && c.last() == 200)
    {
        let id = call.path.rsplit('/').next().unwrap_or("");
        let merchant = call.body["merchantId"].as_str().unwrap_or("");
        let status = http::get(
            &gateway,
            &format!("/api/payments/{id}?merchantId={merchant}"),
        )
        .json()["status"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if matches!(status.as_str(), "AUTHORIZED" | "VOIDED" | "") {
            violations.push(format!("capture of {id} answered 200, payment is {status}"));
        }
    }
    let mut report = String::new();
    let clean = crate::wait_until(Duration::from_secs(60), || {
        let (ok, text) = appliance.reconcile();
        report = text;
        ok
    });
    if !clean {
        violations.push(format!("reconciliation:\n{report}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule_of_every_kind_of_fault() {
        let two_minutes = Duration::from_secs(110);
        for seed in [1, 2] {
            let events = schedule(seed, two_minutes);
            assert_eq!(events, schedule(seed, two_minutes), "seed {seed}");
            assert!(events.len() >= 8, "seed {seed}: {events:?}");
            assert!(events
                .iter()
                .all(|e| e.at + e.lasts <= two_minutes - Duration::from_secs(20)));
        }
        assert_ne!(schedule(1, two_minutes), schedule(2, two_minutes));
        // Over the two test seeds, every kind of fault happens.
        let kinds: std::collections::BTreeSet<&str> = [1, 2]
            .iter()
            .flat_map(|s| schedule(*s, two_minutes))
            .map(|e| e.fault.kind())
            .collect();
        assert_eq!(kinds.len(), 4, "{kinds:?}");
    }
}
