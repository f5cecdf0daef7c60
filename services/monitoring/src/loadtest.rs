//! The k6 runner: starts a scenario of `k6/` at a chosen rate and duration, keeps its
//! output as progress, stores k6's summary JSON and keeps every run in the history.
//! One run at a time: a second start while one runs is 409.

use crate::config::K6Config;
use crate::history::{new_id, History};
use parking_lot::Mutex;
use serde_json::{json, Value as Json};
use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, BufReader};

const OUTPUT_LINES_MAX: usize = 200;

pub struct LoadTests {
    config: K6Config,
    pub history: History,
    active: Mutex<Option<Active>>,
}

struct Active {
    id: String,
    output: VecDeque<String>,
}

pub enum StartError {
    Invalid(String),
    Busy(String),
    Failed(String),
}

impl LoadTests {
    pub fn new(config: K6Config, history: History) -> Arc<Self> {
        Arc::new(Self {
            config,
            history,
            active: Mutex::new(None),
        })
    }

    /// The scenarios that can be started: the `.js` files of the scenarios folder.
    pub fn scenarios(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.config.scenarios_dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .strip_suffix(".js")
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Validates and starts a run; returns its record.
    pub fn start(
        self: &Arc<Self>,
        scenario: &str,
        rate: u32,
        duration_s: u32,
    ) -> Result<Json, StartError> {
        if !self.scenarios().iter().any(|s| s == scenario) {
            return Err(StartError::Invalid(format!(
                "unknown scenario {scenario:?} (known: {})",
                self.scenarios().join(", ")
            )));
        }
        if rate == 0 || rate > self.config.rate_max {
            return Err(StartError::Invalid(format!(
                "rate must be 1..={} requests per second",
                self.config.rate_max
            )));
        }
        if duration_s == 0 || duration_s > self.config.duration_max_s {
            return Err(StartError::Invalid(format!(
                "durationSeconds must be 1..={}",
                self.config.duration_max_s
            )));
        }
        let mut active = self.active.lock();
        if let Some(running) = &*active {
            return Err(StartError::Busy(format!(
                "load test {} is running",
                running.id
            )));
        }
        let id = new_id("k6");
        let summary = self.history.path(&id, ".summary.json");
        let mut command = tokio::process::Command::new(&self.config.binary);
        // With merchant_auth on, the scenario makes its merchants' keys through the admin
        // API (and revokes them after). In the environment, not on the command line.
        if let Some(file) = &self.config.admin_token_file {
            let token = payrail_core::config::read_secret(file)
                .map_err(|e| StartError::Failed(e.to_string()))?;
            command.env("ADMIN_TOKEN", token.trim());
        }
        command
            .arg("run")
            .arg("--no-color")
            .arg("--summary-trend-stats")
            .arg("avg,min,med,max,p(90),p(95),p(99)")
            .arg("--summary-export")
            .arg(&summary)
            .arg("-e")
            .arg(format!("BASE_URL={}", self.config.base_url))
            .arg("-e")
            .arg(format!("RATE={rate}"))
            .arg("-e")
            .arg(format!("DURATION={duration_s}s"))
            .arg("-e")
            .arg(format!("RUN_ID={id}"))
            .arg(self.config.scenarios_dir.join(format!("{scenario}.js")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| StartError::Failed(format!("k6: {e}")))?;
        let record = json!({
            "id": id,
            "kind": "k6",
            "scenario": scenario,
            "rate": rate,
            "durationSeconds": duration_s,
            "baseUrl": self.config.base_url,
            "status": "RUNNING",
            "startedAt": payrail_core::time::rfc3339(payrail_core::time::now_ms()),
            "startedAtMs": payrail_core::time::now_ms(),
        });
        self.history.save(&record);
        *active = Some(Active {
            id: id.clone(),
            output: VecDeque::new(),
        });
        drop(active);
        let runs = self.clone();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let mut finished = record.clone();
        tokio::spawn(async move {
            let out = tokio::spawn(collect(runs.clone(), stdout));
            let err = tokio::spawn(collect(runs.clone(), stderr));
            let status = child.wait().await;
            let _ = out.await;
            let _ = err.await;
            let code = status.as_ref().ok().and_then(|s| s.code());
            // k6 exits 99 when a threshold is crossed; any other non-zero is an error.
            finished["status"] = match code {
                Some(0) => "PASSED",
                Some(99) => "THRESHOLDS_FAILED",
                _ => "ERROR",
            }
            .into();
            finished["exitCode"] = json!(code);
            finished["finishedAt"] =
                payrail_core::time::rfc3339(payrail_core::time::now_ms()).into();
            finished["finishedAtMs"] = json!(payrail_core::time::now_ms());
            if let Ok(text) = std::fs::read(runs.history.path(&id, ".summary.json")) {
                finished["summary"] = serde_json::from_slice(&text).unwrap_or(Json::Null);
            }
            let output: Vec<String> = runs
                .active
                .lock()
                .take()
                .map(|a| a.output.into_iter().collect())
                .unwrap_or_default();
            finished["output"] = json!(output);
            runs.history.save(&finished);
            tracing::info!(id, status = %finished["status"], "load test finished");
        });
        Ok(record)
    }

    /// A run's record; a running one carries its latest output lines as progress.
    pub fn get(&self, id: &str) -> Option<Json> {
        let mut record = self.history.get(id)?;
        if let Some(active) = &*self.active.lock() {
            if active.id == id {
                record["output"] = json!(active.output);
                record["progress"] = json!(active
                    .output
                    .iter()
                    .rev()
                    .find(|l| l.contains("running (") || l.contains("default ["))
                    .cloned());
            }
        }
        Some(record)
    }

    /// Every run, newest first, without the bulky parts.
    pub fn list(&self) -> Vec<Json> {
        self.history
            .list()
            .into_iter()
            .map(|mut r| {
                if let Some(o) = r.as_object_mut() {
                    o.remove("output");
                    o.remove("summary");
                }
                r
            })
            .collect()
    }
}

async fn collect(runs: Arc<LoadTests>, stream: Option<impl tokio::io::AsyncRead + Unpin>) {
    let Some(stream) = stream else { return };
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            continue;
        }
        if let Some(active) = &mut *runs.active.lock() {
            if active.output.len() == OUTPUT_LINES_MAX {
                active.output.pop_front();
            }
            active.output.push_back(line);
        }
    }
}
