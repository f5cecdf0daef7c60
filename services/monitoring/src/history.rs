//! Load-test runs and drills as JSON files under the state dir, one per record, so the
//! history survives restarts. A record found `RUNNING` at startup belonged to a process
//! that died: it is marked `INTERRUPTED`.

use serde_json::Value as Json;
use std::path::{Path, PathBuf};

pub struct History {
    dir: PathBuf,
}

impl History {
    pub fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let history = Self {
            dir: dir.to_owned(),
        };
        for mut record in history.list() {
            if record["status"] == "RUNNING" {
                record["status"] = "INTERRUPTED".into();
                history.save(&record);
            }
        }
        Ok(history)
    }

    /// Where a record's side files (k6 output, summary) go.
    pub fn path(&self, id: &str, suffix: &str) -> PathBuf {
        self.dir.join(format!("{id}{suffix}"))
    }

    /// Writes `record` (which has an `id`) atomically: temp file, then rename.
    pub fn save(&self, record: &Json) {
        let Some(id) = record["id"].as_str() else {
            return;
        };
        let path = self.path(id, ".json");
        let temp = self.path(id, ".json.tmp");
        let written = std::fs::write(&temp, record.to_string().as_bytes())
            .and_then(|()| std::fs::rename(&temp, &path));
        if let Err(e) = written {
            tracing::error!(error = %e, path = %path.display(), "history record not saved");
        }
    }

    pub fn get(&self, id: &str) -> Option<Json> {
        if !valid_id(id) {
            return None;
        }
        let text = std::fs::read(self.path(id, ".json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Every record, newest first.
    pub fn list(&self) -> Vec<Json> {
        let mut records: Vec<Json> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    // `<id>.json` only: side files (`<id>.summary.json`) are not records.
                    .filter(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.strip_suffix(".json").is_some_and(valid_id)
                    })
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .filter_map(|b| serde_json::from_slice(&b).ok())
                    .collect()
            })
            .unwrap_or_default();
        records.sort_by(|a: &Json, b: &Json| b["id"].as_str().cmp(&a["id"].as_str()));
        records
    }
}

/// Ids are ours (`<kind>-<epoch ms>`); anything else in a URL is refused before it
/// reaches the file system.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 40 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub fn new_id(kind: &str) -> String {
    format!("{kind}-{}", payrail_core::time::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_records_not_side_files_and_marks_dead_runs_interrupted() {
        let dir = std::env::temp_dir().join(format!("payrail-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let history = History::open(&dir).expect("open");
        history.save(&serde_json::json!({ "id": "k6-1", "status": "PASSED" }));
        history.save(&serde_json::json!({ "id": "k6-2", "status": "RUNNING" }));
        std::fs::write(history.path("k6-1", ".summary.json"), b"{}").expect("side file");
        let reopened = History::open(&dir).expect("reopen");
        let ids: Vec<String> = reopened
            .list()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["id"].as_str().unwrap_or(""),
                    r["status"].as_str().unwrap_or("")
                )
            })
            .collect();
        assert_eq!(ids, ["k6-2 INTERRUPTED", "k6-1 PASSED"]);
        assert!(reopened.get("../k6-1").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
