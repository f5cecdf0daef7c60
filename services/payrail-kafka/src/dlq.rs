//! The dead-letter message, in the reference system's format, so its admin tools read ours.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub original_topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The original message, as text.
    pub payload: String,
    pub error_type: String,
    pub error_message: String,
    /// RFC 3339 UTC.
    pub timestamp: String,
    pub retry_count: u32,
}
