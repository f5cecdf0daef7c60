//! Whether the broker answers, for each service's `/health`.
//!
//! A broker can run and not answer (paused, wedged on its storage): its port is open, so
//! nothing fails until a request times out, and a service without traffic never sends
//! one. The probe asks for one topic's metadata every [`INTERVAL`] on the service's own
//! producer connection and calls the broker down when no answer comes within
//! [`TIMEOUT`], the bound `cargo xtask status` uses too: one small request per service
//! every five seconds. Its cost is below this VM's noise: with it switched on and off in
//! the same binaries, the broker's CPU per authorization did not change
//! (`k6/results/probe-ab-20261207.txt`).

use crate::Producer;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the broker is asked.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How long an answer may take before the broker counts as down.
pub const TIMEOUT: Duration = Duration::from_secs(3);

// 0 (the default): not probed yet, "UNKNOWN".
const UP: u8 = 1;
const DOWN: u8 = 2;

/// The last probe's result.
#[derive(Debug, Default)]
pub struct BrokerProbe {
    state: AtomicU8,
}

impl BrokerProbe {
    /// Probes until `producer` returns `None` (its owner is gone). `producer` is called
    /// for each probe, so a service that replaces its producer (the relay after an outage)
    /// is probed on the one it uses, and an old one is not kept alive by the probe.
    pub async fn run<F>(self: Arc<Self>, topic: &'static str, producer: F)
    where
        F: Fn() -> Option<Producer>,
    {
        while let Some(current) = producer() {
            let answered =
                tokio::task::spawn_blocking(move || current.broker_answers(topic, TIMEOUT))
                    .await
                    .unwrap_or(false);
            let now = if answered { UP } else { DOWN };
            if self.state.swap(now, Ordering::Relaxed) != now {
                if answered {
                    tracing::info!(topic, "kafka: the broker answers");
                } else {
                    tracing::warn!(
                        topic,
                        timeout_ms = TIMEOUT.as_millis() as u64,
                        "kafka: the broker does not answer"
                    );
                }
            }
            tokio::time::sleep(INTERVAL).await;
        }
    }

    /// `"UP"`, `"DOWN"`, or `"UNKNOWN"` before the first answer or timeout.
    pub fn state(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            UP => "UP",
            DOWN => "DOWN",
            _ => "UNKNOWN",
        }
    }

    /// True while the last probe went unanswered (not before the first probe).
    pub fn down(&self) -> bool {
        self.state.load(Ordering::Relaxed) == DOWN
    }
}

/// A consumer's `/health` body (the workers, the ledger): `DEGRADED` while the broker
/// does not answer, since no work reaches the service then; always 200, for the process
/// itself runs.
pub fn health_body(probe: &BrokerProbe) -> Vec<u8> {
    format!(
        "{{\"status\":\"{}\",\"checks\":{{\"kafka\":\"{}\"}}}}",
        if probe.down() { "DEGRADED" } else { "UP" },
        probe.state()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_is_degraded_only_while_the_broker_does_not_answer() {
        let probe = BrokerProbe::default();
        assert_eq!(
            health_body(&probe),
            br#"{"status":"UP","checks":{"kafka":"UNKNOWN"}}"#
        );
        probe.state.store(DOWN, Ordering::Relaxed);
        assert_eq!(
            health_body(&probe),
            br#"{"status":"DEGRADED","checks":{"kafka":"DOWN"}}"#
        );
        probe.state.store(UP, Ordering::Relaxed);
        assert_eq!(
            health_body(&probe),
            br#"{"status":"UP","checks":{"kafka":"UP"}}"#
        );
    }
}
