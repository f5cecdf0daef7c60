//! Versioned schema migrations, applied idempotently.
//!
//! `schema_migrations` records each applied version. A named lock (`GET_LOCK`) makes
//! concurrent starters (two ingest instances, a worker) apply each version once; every
//! migration is itself written to be re-runnable, because MariaDB commits DDL implicitly.

use crate::error::{DbError, Result};
use crate::shards::Shards;
use mysql_async::prelude::Queryable;

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Append only: never edit one that has shipped.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "payments",
        sql: include_str!("../migrations/0001_payments.sql"),
    },
    Migration {
        version: 2,
        name: "pipeline",
        sql: include_str!("../migrations/0002_pipeline.sql"),
    },
    Migration {
        version: 3,
        name: "pg lifecycle",
        sql: include_str!("../migrations/0003_pg_lifecycle.sql"),
    },
    Migration {
        version: 4,
        name: "api keys",
        sql: include_str!("../migrations/0004_api_keys.sql"),
    },
    Migration {
        version: 5,
        name: "refund while settling",
        sql: include_str!("../migrations/0005_refund_while_settling.sql"),
    },
    Migration {
        version: 6,
        name: "relay epoch",
        sql: include_str!("../migrations/0006_relay_epoch.sql"),
    },
    Migration {
        version: 7,
        name: "admin indexes",
        sql: include_str!("../migrations/0007_admin_indexes.sql"),
    },
];

/// Splits a migration file into statements: `;` at the end of a line ends one, `--`
/// lines are comments.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_owned());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// Applies every pending migration on every shard. Returns how many were applied.
pub async fn migrate_all(shards: &Shards) -> Result<usize> {
    let mut applied = 0;
    for shard in shards.numbers() {
        applied += migrate_shard(shards, shard).await?;
    }
    Ok(applied)
}

pub async fn migrate_shard(shards: &Shards, shard: u16) -> Result<usize> {
    let mut conn = shards.conn(shard).await?;
    let classify = |e| DbError::classify(shard, e);
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
           version INT NOT NULL PRIMARY KEY,
           name VARCHAR(64) NOT NULL,
           applied_at DATETIME(3) NOT NULL
         ) ENGINE=InnoDB",
    )
    .await
    .map_err(classify)?;
    let locked: Option<i64> = conn
        .query_first("SELECT GET_LOCK('payrail_migrate', 60)")
        .await
        .map_err(classify)?;
    if locked != Some(1) {
        return Err(DbError::Unavailable {
            shard,
            message: "could not take the migration lock within 60 s".to_owned(),
        });
    }
    let mut applied = 0;
    let result = async {
        for migration in MIGRATIONS {
            let done: Option<u32> = conn
                .exec_first("SELECT version FROM schema_migrations WHERE version = ?", (migration.version,))
                .await
                .map_err(classify)?;
            if done.is_some() {
                continue;
            }
            for statement in statements(migration.sql) {
                conn.query_drop(statement).await.map_err(classify)?;
            }
            conn.exec_drop(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, UTC_TIMESTAMP(3))",
                (migration.version, migration.name),
            )
            .await
            .map_err(classify)?;
            tracing::info!(shard, version = migration.version, name = migration.name, "migration applied");
            applied += 1;
        }
        Ok::<_, DbError>(())
    }
    .await;
    let _ = conn
        .query_drop("SELECT RELEASE_LOCK('payrail_migrate')")
        .await;
    result.map(|()| applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_on_line_ending_semicolons() {
        let parts = statements("-- c\nCREATE TABLE a (x INT);\n\nINSERT INTO a VALUES (1), (2);\n");
        assert_eq!(
            parts,
            vec!["CREATE TABLE a (x INT)", "INSERT INTO a VALUES (1), (2)"]
        );
    }

    #[test]
    fn versions_are_increasing() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        for m in MIGRATIONS {
            assert!(!statements(m.sql).is_empty());
        }
    }
}
