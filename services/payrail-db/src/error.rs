//! Database errors, sorted by what the caller does about them.

#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// The shard cannot be reached or did not answer in time: answer 503 SHARD_UNAVAILABLE.
    #[error("shard {shard} unavailable: {message}")]
    Unavailable { shard: u16, message: String },
    /// A unique key was violated (MariaDB error 1062).
    #[error("duplicate key on shard {shard}: {message}")]
    Duplicate { shard: u16, message: String },
    /// A CHECK constraint failed (MariaDB error 4025): an invariant the code should have
    /// guarded was about to break, and the database refused.
    #[error("check constraint on shard {shard}: {message}")]
    Constraint { shard: u16, message: String },
    /// Deadlock or lock wait timeout (1213, 1205): safe to retry the transaction.
    #[error("lock conflict on shard {shard}: {message}")]
    LockConflict { shard: u16, message: String },
    /// Anything else the server refused: a bug in our SQL or schema drift.
    #[error("query failed on shard {shard}: {message}")]
    Query { shard: u16, message: String },
}

pub type Result<T> = std::result::Result<T, DbError>;

impl DbError {
    pub fn classify(shard: u16, error: mysql_async::Error) -> Self {
        match error {
            mysql_async::Error::Server(server) => {
                let message = server.message.clone();
                match server.code {
                    1062 => DbError::Duplicate { shard, message },
                    4025 | 3819 => DbError::Constraint { shard, message },
                    1213 | 1205 => DbError::LockConflict { shard, message },
                    // Server shutting down, too many connections, read-only: the shard is
                    // not serving.
                    1053 | 1040 | 1290 | 1927 => DbError::Unavailable { shard, message },
                    _ => DbError::Query { shard, message },
                }
            }
            other => DbError::Unavailable {
                shard,
                message: other.to_string(),
            },
        }
    }

    pub fn timeout(shard: u16) -> Self {
        DbError::Unavailable {
            shard,
            message: "timed out".to_owned(),
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable { .. })
    }

    pub fn shard(&self) -> u16 {
        match self {
            DbError::Unavailable { shard, .. }
            | DbError::Duplicate { shard, .. }
            | DbError::Constraint { shard, .. }
            | DbError::LockConflict { shard, .. }
            | DbError::Query { shard, .. } => *shard,
        }
    }
}

/// A `DATETIME(3)` parameter from epoch milliseconds (UTC).
pub fn datetime(epoch_ms: i64) -> mysql_async::Value {
    let c = payrail_core::time::to_civil(epoch_ms);
    mysql_async::Value::Date(
        c.year.clamp(0, 9999) as u16,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        u32::from(c.millisecond) * 1000,
    )
}

/// Epoch milliseconds from a `DATETIME(3)` column value.
pub fn epoch_ms(value: &mysql_async::Value) -> i64 {
    match value {
        mysql_async::Value::Date(year, month, day, hour, minute, second, micros) => {
            payrail_core::time::from_civil(payrail_core::time::Civil {
                year: i32::from(*year),
                month: *month,
                day: *day,
                hour: *hour,
                minute: *minute,
                second: *second,
                millisecond: (*micros / 1000) as u16,
            })
        }
        _ => 0,
    }
}
