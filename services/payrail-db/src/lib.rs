//! payrail's state stores: MariaDB, sharded by merchant, and Redis.
//!
//! - [`shards`]: one bounded `mysql_async` pool per shard, built from config with every
//!   option set explicitly, and a timeout around each use.
//! - [`migrate`]: versioned schema migrations (`migrations/*.sql`), applied once per shard
//!   under a named lock so several instances can start together.
//! - [`history`]: a payment's state history, appended inside the caller's transaction.
//! - [`retention`]: rows past their retention (published outbox events, idempotency
//!   records, finished jobs) deleted in small batches.
//! - [`sequence`]: global ids handed out in blocks from each shard's `id_sequence` row.
//! - [`api_keys`]: merchant API keys: format, keyed hash, store, and the ring ingest checks.
//! - [`redis`]: the Redis client every service builds alike (password file, TLS with a CA).
//! - [`error`]: what callers need to tell apart: shard down, duplicate key, anything else.

pub mod api_keys;
pub mod error;
pub mod history;
pub mod migrate;
pub mod redis;
pub mod retention;
pub mod sequence;
pub mod shards;

pub use error::{datetime, epoch_ms, DbError, Result};

/// Rows per multi-row statement of a batch of unbounded size (the ledger's postings, the
/// workers' job intake). mysql_async prepares and caches, per connection and up to
/// `statement_cache_size` (512) texts, a statement for every distinct SQL text; a
/// multi-row statement's text differs with its row count, and its cached metadata grows
/// with its parameters. Batches of up to 2,000 rows thus filled every connection's cache
/// with statements of up to 16,000 parameters: the 30-minute soak at 300 it/s
/// (`k6/results/soak-20261206T114836Z.md`) saw the ledger's RSS reach 1.5 GB and the
/// workers' 0.5 GB, still growing. [`statement_chunks`] splits batches into statements of
/// at most this many rows and of a few sizes.
pub const STATEMENT_ROWS_MAX: usize = 32;

/// Batches of up to this many rows go in one statement of their exact size; larger ones in
/// power-of-two parts (see [`statement_chunks`]).
pub const STATEMENT_ROWS_EXACT: usize = 8;

/// `rows` in slices for multi-row statements: as many of [`STATEMENT_ROWS_MAX`] as fit,
/// then the rest in one slice when it has at most [`STATEMENT_ROWS_EXACT`] rows, else in
/// descending powers of two down to that (45 rows: 32, 8, 5; 7 rows: 7). A call site thus
/// prepares at most ten statement texts on each connection (1 to 8, 16 and 32 rows), not
/// one per batch size, and the small batches of a light load still take one statement.
/// With one text per size from 1 to 32 rows, the workers' cached metadata grew by about
/// 2 MB a minute at 150 it/s (`k6/results/soak-20261206T150330Z.md`).
pub fn statement_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (chunk, tail) = rest.split_at(statement_rows(rest.len()));
        rest = tail;
        Some(chunk)
    })
}

/// The rows of the next statement for `n` rows left (see [`statement_chunks`]).
fn statement_rows(n: usize) -> usize {
    if n >= STATEMENT_ROWS_MAX {
        STATEMENT_ROWS_MAX
    } else if n <= STATEMENT_ROWS_EXACT {
        n
    } else {
        1 << n.ilog2()
    }
}

/// `rows` copies of a row's placeholder group, comma-separated, for a multi-row
/// statement: `row_placeholders(2, "(?,?)")` is `(?,?),(?,?)`.
pub fn row_placeholders(rows: usize, group: &str) -> String {
    let mut out = String::with_capacity(rows * (group.len() + 1));
    for i in 0..rows {
        if i > 0 {
            out.push(',');
        }
        out.push_str(group);
    }
    out
}

/// The placeholders of an `IN (…)` list of ids, [`STATEMENT_ROWS_MAX`] of them, for
/// [`padded_id_lists`].
pub const ID_LIST: &str = "?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?";

/// `ids` as the parameters of `IN ({ID_LIST})` lists, one statement each: chunks of exactly
/// [`STATEMENT_ROWS_MAX`] values, the last padded by repeating its last id (a row matches
/// an `IN` list once however often its value appears). A call site then prepares one
/// statement text instead of one per list length (see [`STATEMENT_ROWS_MAX`]).
pub fn padded_id_lists(ids: &[u64]) -> impl Iterator<Item = Vec<mysql_async::Value>> + '_ {
    ids.chunks(STATEMENT_ROWS_MAX).map(|chunk| {
        let last = chunk.last().copied().unwrap_or_default();
        (0..STATEMENT_ROWS_MAX)
            .map(|i| mysql_async::Value::UInt(chunk.get(i).copied().unwrap_or(last)))
            .collect()
    })
}

/// `idempotency_record` rows of authorizations whose PG outcome is not resolved yet: the
/// answer was lost (`UNKNOWN`), the resolver is on it (`RESOLVING`), or the request's
/// owner died before its commit (`IN_PROGRESS` past its lease). ingest's resolver, the
/// admin API and reconciliation all count by this predicate (index `ix_unresolved`).
pub const UNRESOLVED: &str = "(state IN ('UNKNOWN', 'RESOLVING') OR (state = 'IN_PROGRESS' AND lease_until < UTC_TIMESTAMP(3)))";

/// Since when an unresolved record's outcome has been open: the lost answer, or the
/// request's start for a dead owner.
pub const UNRESOLVED_SINCE: &str = "COALESCE(unknown_since, created_at)";
pub use shards::{PoolConfig, ShardConfig, Shards};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_chunks_come_in_ten_sizes_and_cover_every_row_in_order() {
        let rows: Vec<usize> = (0..109).collect();
        let sizes: Vec<usize> = statement_chunks(&rows).map(<[usize]>::len).collect();
        assert_eq!(sizes, vec![32, 32, 32, 8, 5]);
        let joined: Vec<usize> = statement_chunks(&rows).flatten().copied().collect();
        assert_eq!(joined, rows);
        let mut texts = std::collections::BTreeSet::new();
        for n in 0..=200usize {
            let v = vec![0u8; n];
            texts.extend(statement_chunks(&v).map(<[u8]>::len));
            assert_eq!(statement_chunks(&v).map(<[u8]>::len).sum::<usize>(), n);
            if (1..=STATEMENT_ROWS_EXACT).contains(&n) {
                assert_eq!(statement_chunks(&v).count(), 1);
            }
        }
        assert_eq!(
            texts.into_iter().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6, 7, 8, 16, 32]
        );
    }

    #[test]
    fn row_placeholders_repeat_the_group() {
        assert_eq!(row_placeholders(0, "(?,?)"), "");
        assert_eq!(row_placeholders(1, "(?,?)"), "(?,?)");
        assert_eq!(row_placeholders(3, "(?)"), "(?),(?),(?)");
    }

    #[test]
    fn id_lists_have_one_length_and_cover_every_id_once() {
        assert_eq!(ID_LIST.split(',').count(), STATEMENT_ROWS_MAX);
        let ids: Vec<u64> = (1..=70).collect();
        let lists: Vec<Vec<mysql_async::Value>> = padded_id_lists(&ids).collect();
        assert_eq!(lists.len(), 3);
        assert!(lists.iter().all(|l| l.len() == STATEMENT_ROWS_MAX));
        let mut seen: Vec<u64> = lists
            .iter()
            .flatten()
            .map(|v| match v {
                mysql_async::Value::UInt(n) => *n,
                _ => 0,
            })
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, ids);
        assert_eq!(padded_id_lists(&[]).count(), 0);
    }
}
