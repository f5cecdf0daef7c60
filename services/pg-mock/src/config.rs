//! pg-mock's config file.

use payrail_core::config::Validate;
use payrail_http::ServerConfig;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on, like `127.0.0.1:8090`.
    pub listen: String,
    /// Append-only record journal, replayed at start; none keeps records in memory only.
    #[serde(default)]
    pub journal_path: Option<PathBuf>,
    /// Behaviour for every merchant unless overridden at run time with `POST /v1/control`.
    #[serde(default)]
    pub behaviour: Behaviour,
    /// may worker threads. Default 1: the mock should leave the cores to the system under test.
    #[serde(default = "one")]
    pub worker_threads: usize,
    /// Coroutine stack in words (8 bytes). Default 16 384 (128 KiB).
    #[serde(default = "stack_words")]
    pub coroutine_stack_words: usize,
    #[serde(default)]
    pub http: ServerConfig,
}

fn one() -> usize {
    1
}

fn stack_words() -> usize {
    16 * 1024
}

/// How the PG answers.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct Behaviour {
    /// Shortest simulated processing time. Default 5 ms (the reference system's yml default).
    pub latency_min_ms: u64,
    /// Longest simulated processing time. Default 15 ms.
    pub latency_max_ms: u64,
    /// Share of calls answered 503 (an outage; nothing recorded). Default 0.
    pub failure_rate: f64,
    /// Share of calls applied and then answered 503: the caller cannot tell this from an
    /// outage, but the PG's books changed. Default 0.
    pub apply_then_fail_rate: f64,
    /// Share of calls applied and then left unanswered (the connection is closed): the
    /// answer is lost on the way back. Default 0.
    pub apply_then_drop_rate: f64,
    /// Share of new authorizations declined. Default 0.
    pub decline_rate: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            latency_min_ms: 5,
            latency_max_ms: 15,
            failure_rate: 0.0,
            apply_then_fail_rate: 0.0,
            apply_then_drop_rate: 0.0,
            decline_rate: 0.0,
        }
    }
}

impl Behaviour {
    pub fn check(&self) -> Result<(), String> {
        if self.latency_min_ms > self.latency_max_ms {
            return Err("latency_min_ms must not exceed latency_max_ms".into());
        }
        let rates = [
            self.failure_rate,
            self.apply_then_fail_rate,
            self.apply_then_drop_rate,
            self.decline_rate,
        ];
        if rates.iter().any(|r| !(0.0..=1.0).contains(r)) {
            return Err("every rate must be within 0..=1".into());
        }
        if self.failure_rate + self.apply_then_fail_rate + self.apply_then_drop_rate > 1.0 {
            return Err(
                "failure_rate + apply_then_fail_rate + apply_then_drop_rate must not exceed 1"
                    .into(),
            );
        }
        Ok(())
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        self.behaviour.check()?;
        if self.worker_threads == 0 {
            return Err("worker_threads must be at least 1".into());
        }
        Ok(())
    }
}
