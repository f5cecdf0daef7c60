//! A circuit breaker over a time-based sliding window.
//!
//! Unlike the reference system's breaker (which recorded only failures while CLOSED, so any
//! five failures however far apart opened it), every call's outcome enters the window:
//! successes, failures and slow calls, in one-second buckets. The breaker opens when, over
//! at least `minimum_calls` calls in the window, the failure rate or the slow-call rate
//! reaches its threshold. After `open_wait_ms` it lets `half_open_probes` calls through;
//! all of them succeeding closes it, any failure re-opens it.

use parking_lot::Mutex;
use serde::Deserialize;
use std::time::Instant;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Length of the sliding window. Default 10 000 ms (ten one-second buckets).
    pub window_ms: u64,
    /// Calls the window must hold before rates are judged. Default 10.
    pub minimum_calls: u32,
    /// Failure rate (percent) at which the breaker opens. Default 50.
    pub failure_rate_threshold_percent: u32,
    /// Slow-call rate (percent) at which the breaker opens. Default 50.
    pub slow_call_rate_threshold_percent: u32,
    /// A call slower than this counts as slow. Default 2 000 ms.
    pub slow_call_duration_ms: u64,
    /// How long the breaker stays OPEN before probing. Default 30 000 ms.
    pub open_wait_ms: u64,
    /// Probe calls allowed in HALF_OPEN. Default 3.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window_ms: 10_000,
            minimum_calls: 10,
            failure_rate_threshold_percent: 50,
            slow_call_rate_threshold_percent: 50,
            slow_call_duration_ms: 2_000,
            open_wait_ms: 30_000,
            half_open_probes: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Open => "OPEN",
            State::HalfOpen => "HALF_OPEN",
        }
    }

    /// 0 = CLOSED, 1 = OPEN, 2 = HALF_OPEN: the value of the `*_circuit_breaker_state` gauges.
    pub const fn gauge_value(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

/// Proof that a call was allowed; hand it back to [`CircuitBreaker::record`].
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    probe: bool,
    generation: u64,
}

/// The call was not allowed; retry after this many milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub retry_after_ms: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    calls: u32,
    failures: u32,
    slow: u32,
}

#[derive(Debug)]
struct Inner {
    state: State,
    opened_at_ms: u64,
    buckets: Vec<Bucket>,
    probes_issued: u32,
    probes_succeeded: u32,
    /// Bumped on every state change so outcomes of calls admitted under an older state
    /// (a slow call that started while CLOSED and ends while HALF_OPEN) are not counted
    /// as probes.
    generation: u64,
}

/// Snapshot for `/health`, metrics and the admin API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub state: State,
    pub calls: u32,
    pub failures: u32,
    pub slow: u32,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    name: &'static str,
    config: BreakerConfig,
    epoch: Instant,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    pub fn new(name: &'static str, config: BreakerConfig) -> Self {
        let bucket_count = config.window_ms.div_ceil(1000).max(1) as usize;
        Self {
            name,
            config,
            epoch: Instant::now(),
            inner: Mutex::new(Inner {
                state: State::Closed,
                opened_at_ms: 0,
                buckets: vec![Bucket::default(); bucket_count],
                probes_issued: 0,
                probes_succeeded: 0,
                generation: 0,
            }),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn try_acquire(&self) -> Result<Permit, Rejected> {
        self.try_acquire_at(self.now_ms())
    }

    pub fn try_acquire_at(&self, now_ms: u64) -> Result<Permit, Rejected> {
        let mut inner = self.inner.lock();
        match inner.state {
            State::Closed => Ok(Permit {
                probe: false,
                generation: inner.generation,
            }),
            State::Open => {
                let open_until = inner.opened_at_ms + self.config.open_wait_ms;
                if now_ms < open_until {
                    return Err(Rejected {
                        retry_after_ms: open_until - now_ms,
                    });
                }
                self.transition(&mut inner, State::HalfOpen, now_ms);
                inner.probes_issued = 1;
                Ok(Permit {
                    probe: true,
                    generation: inner.generation,
                })
            }
            State::HalfOpen => {
                if inner.probes_issued < self.config.half_open_probes {
                    inner.probes_issued += 1;
                    Ok(Permit {
                        probe: true,
                        generation: inner.generation,
                    })
                } else {
                    Err(Rejected {
                        retry_after_ms: 1000,
                    })
                }
            }
        }
    }

    /// Whether a call would be admitted now, without taking a permit (a HALF_OPEN probe
    /// is not used up by asking).
    pub fn check(&self) -> Result<(), Rejected> {
        let now_ms = self.now_ms();
        let inner = self.inner.lock();
        match inner.state {
            State::Closed => Ok(()),
            State::Open => {
                let open_until = inner.opened_at_ms + self.config.open_wait_ms;
                if now_ms < open_until {
                    Err(Rejected {
                        retry_after_ms: open_until - now_ms,
                    })
                } else {
                    Ok(())
                }
            }
            State::HalfOpen if inner.probes_issued < self.config.half_open_probes => Ok(()),
            State::HalfOpen => Err(Rejected {
                retry_after_ms: 1000,
            }),
        }
    }

    /// Records the outcome of an admitted call.
    pub fn record(&self, permit: Permit, success: bool, duration_ms: u64) {
        self.record_at(permit, success, duration_ms, self.now_ms());
    }

    pub fn record_at(&self, permit: Permit, success: bool, duration_ms: u64, now_ms: u64) {
        let slow = duration_ms >= self.config.slow_call_duration_ms;
        let mut inner = self.inner.lock();
        if permit.generation != inner.generation {
            return;
        }
        if permit.probe {
            if success && !slow {
                inner.probes_succeeded += 1;
                if inner.probes_succeeded >= self.config.half_open_probes {
                    self.transition(&mut inner, State::Closed, now_ms);
                }
            } else {
                self.transition(&mut inner, State::Open, now_ms);
            }
            return;
        }
        let second = now_ms / 1000;
        let index = (second % inner.buckets.len() as u64) as usize;
        let bucket = &mut inner.buckets[index];
        if bucket.second != second {
            *bucket = Bucket {
                second,
                ..Bucket::default()
            };
        }
        bucket.calls += 1;
        bucket.failures += u32::from(!success);
        bucket.slow += u32::from(slow);
        let totals = Self::totals(&inner, now_ms);
        if totals.calls >= self.config.minimum_calls
            && (totals.failures * 100 >= self.config.failure_rate_threshold_percent * totals.calls
                || totals.slow * 100 >= self.config.slow_call_rate_threshold_percent * totals.calls)
        {
            self.transition(&mut inner, State::Open, now_ms);
        }
    }

    fn totals(inner: &Inner, now_ms: u64) -> Snapshot {
        let second = now_ms / 1000;
        let span = inner.buckets.len() as u64;
        let mut snapshot = Snapshot {
            state: inner.state,
            calls: 0,
            failures: 0,
            slow: 0,
        };
        for bucket in &inner.buckets {
            if bucket.calls > 0 && second.saturating_sub(bucket.second) < span {
                snapshot.calls += bucket.calls;
                snapshot.failures += bucket.failures;
                snapshot.slow += bucket.slow;
            }
        }
        snapshot
    }

    fn transition(&self, inner: &mut Inner, to: State, now_ms: u64) {
        if inner.state == to {
            return;
        }
        tracing::warn!(
            breaker = self.name,
            from = inner.state.as_str(),
            to = to.as_str(),
            "circuit breaker state change"
        );
        inner.state = to;
        inner.generation += 1;
        inner.probes_issued = 0;
        inner.probes_succeeded = 0;
        if to == State::Open {
            inner.opened_at_ms = now_ms;
        }
        if to == State::Closed {
            inner
                .buckets
                .iter_mut()
                .for_each(|b| *b = Bucket::default());
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner.lock();
        Self::totals(&inner, self.now_ms())
    }

    pub fn state(&self) -> State {
        self.inner.lock().state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            BreakerConfig {
                minimum_calls: 5,
                open_wait_ms: 30_000,
                half_open_probes: 3,
                ..BreakerConfig::default()
            },
        )
    }

    #[test]
    fn successes_count_so_scattered_failures_do_not_open() {
        let b = breaker();
        for i in 0..100 {
            let p = b.try_acquire_at(i * 10).expect("closed");
            b.record_at(p, i % 10 != 0, 5, i * 10);
        }
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn opens_at_half_failures_then_probes_and_closes() {
        let b = breaker();
        for i in 0..6 {
            let p = b.try_acquire_at(100 + i).expect("closed");
            b.record_at(p, i % 2 == 0, 5, 100 + i);
        }
        assert_eq!(b.state(), State::Open);
        let rejected = b.try_acquire_at(1000).expect_err("open");
        assert_eq!(rejected.retry_after_ms, 30_000 + 105 - 1000);
        // After the wait: three probes, a fourth is refused while they run.
        let probes: Vec<Permit> = (0..3)
            .map(|_| b.try_acquire_at(31_000).expect("probe"))
            .collect();
        assert_eq!(b.state(), State::HalfOpen);
        assert!(b.try_acquire_at(31_000).is_err());
        for p in probes {
            b.record_at(p, true, 5, 31_001);
        }
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = breaker();
        for i in 0..5 {
            let p = b.try_acquire_at(i).expect("closed");
            b.record_at(p, false, 5, i);
        }
        assert_eq!(b.state(), State::Open);
        let p = b.try_acquire_at(40_000).expect("probe");
        b.record_at(p, false, 5, 40_001);
        assert_eq!(b.state(), State::Open);
        assert!(b.try_acquire_at(40_002).is_err());
    }

    #[test]
    fn slow_calls_open_it() {
        let b = breaker();
        for i in 0..5 {
            let p = b.try_acquire_at(i).expect("closed");
            b.record_at(p, true, 2_500, i);
        }
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn old_failures_leave_the_window() {
        let b = breaker();
        for i in 0..4 {
            let p = b.try_acquire_at(i).expect("closed");
            b.record_at(p, false, 5, i);
        }
        // Twenty seconds later the four failures are out of the ten-second window.
        let p = b.try_acquire_at(20_000).expect("closed");
        b.record_at(p, false, 5, 20_000);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.snapshot().calls, 1);
    }
}
