//! Throttling failed authentication (issue 14): the gateway is the one place that sees
//! the client's address, so it counts the 401 answers of its upstreams (a merchant API key
//! or an admin token refused) per client address and per API key prefix, and once either
//! has failed `failures_max` times in a window it answers 429 `TOO_MANY_FAILED_ATTEMPTS`
//! with `Retry-After` until the window ends. An address over budget is refused without
//! asking the upstream. A prefix over budget still reaches it, and only a refusal is
//! turned into the 429: so whoever knows a key's (displayed) prefix cannot lock its owner
//! out by failing on purpose, while a guesser gets nothing but 429s.
//!
//! A guesser rotating addresses is still held by the prefix count; one rotating prefixes
//! by the address count. Successful requests cost one atomic load while nothing is
//! counted, one map lookup otherwise. The map is bounded: past `entries_max` the expired
//! windows are dropped, then the oldest.

use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Failed attempts allowed per address and per key prefix in one window. Default 20.
    pub failures_max: u32,
    /// The window. Default 60 000 ms.
    pub window_ms: u64,
    /// Addresses and prefixes tracked at most. Default 100 000.
    pub entries_max: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            failures_max: 20,
            window_ms: 60_000,
            entries_max: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Address(IpAddr),
    Prefix(Box<[u8]>),
}

struct Window {
    started: Instant,
    failures: u32,
}

pub struct Throttle {
    config: ThrottleConfig,
    windows: Mutex<HashMap<Subject, Window>>,
    tracked: AtomicUsize,
}

/// The part of a bearer token that names a key without its secret: `prk_<env>_<12 hex>`
/// for our keys (up to the second `_` after the scheme), else the first 21 bytes.
pub fn key_prefix(authorization: &[u8]) -> Option<&[u8]> {
    let token = authorization.strip_prefix(b"Bearer ")?;
    let mut underscores = 0;
    for (i, b) in token.iter().enumerate() {
        if *b == b'_' {
            underscores += 1;
            if underscores == 3 {
                return Some(&token[..i]);
            }
        }
        if i == 32 {
            break;
        }
    }
    Some(&token[..token.len().min(21)])
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            windows: Mutex::new(HashMap::new()),
            tracked: AtomicUsize::new(0),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_millis(self.config.window_ms)
    }

    /// Seconds to wait, for the address and for the prefix, when over budget.
    pub fn blocked(
        &self,
        address: Option<IpAddr>,
        prefix: Option<&[u8]>,
    ) -> (Option<u64>, Option<u64>) {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return (None, None);
        }
        let now = Instant::now();
        let windows = self.windows.lock();
        let over = |subject: Subject| {
            windows.get(&subject).and_then(|w| {
                let left = self.window().checked_sub(now.duration_since(w.started))?;
                (w.failures >= self.config.failures_max).then(|| left.as_secs().max(1))
            })
        };
        let by_address = address.and_then(|a| over(Subject::Address(a)));
        let by_prefix = prefix.and_then(|p| over(Subject::Prefix(p.into())));
        (by_address, by_prefix)
    }

    /// Counts one refused attempt.
    pub fn failed(&self, address: Option<IpAddr>, prefix: Option<&[u8]>) {
        let now = Instant::now();
        let window = self.window();
        let mut windows = self.windows.lock();
        if windows.len() >= self.config.entries_max {
            windows.retain(|_, w| now.duration_since(w.started) < window);
            if windows.len() >= self.config.entries_max {
                if let Some(oldest) = windows
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(s, _)| s.clone())
                {
                    windows.remove(&oldest);
                }
            }
        }
        let subjects = address
            .map(Subject::Address)
            .into_iter()
            .chain(prefix.map(|p| Subject::Prefix(p.into())));
        for subject in subjects {
            let entry = windows.entry(subject).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now.duration_since(entry.started) >= window {
                entry.started = now;
                entry.failures = 0;
            }
            entry.failures = entry.failures.saturating_add(1);
        }
        self.tracked.store(windows.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_stop_before_the_secret() {
        let key = b"Bearer prk_live_0123456789ab_ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
        assert_eq!(key_prefix(key), Some(&b"prk_live_0123456789ab"[..]));
        assert_eq!(key_prefix(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(key_prefix(b"Basic abc"), None);
    }

    #[test]
    fn over_budget_is_blocked_per_address_and_per_prefix() {
        let t = Throttle::new(ThrottleConfig {
            failures_max: 3,
            window_ms: 60_000,
            entries_max: 10,
        });
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(t.blocked(Some(a), None), (None, None));
        for _ in 0..3 {
            t.failed(Some(a), Some(b"prk_live_1"));
        }
        assert!(t.blocked(Some(a), None).0.is_some());
        assert!(t.blocked(Some(b), Some(b"prk_live_1")).1.is_some());
        assert!(t.blocked(Some(b), Some(b"prk_live_1")).0.is_none());
        assert_eq!(t.blocked(Some(b), Some(b"prk_live_2")), (None, None));
        for i in 0..20u8 {
            t.failed(Some([10, 1, 0, i].into()), None);
        }
        assert!(t.windows.lock().len() <= 10);
    }
}
