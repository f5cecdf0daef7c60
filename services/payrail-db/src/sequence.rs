//! Global ids, handed out in blocks.
//!
//! Each shard keeps one `id_sequence` row per kind (payment, refund, event). An instance
//! reserves `block_size` values with one statement (`LAST_INSERT_ID(next_value + n)`,
//! atomic under the row lock) and then issues ids from memory. Several instances writing
//! to one shard get disjoint blocks, so ids never collide; ids from one instance increase,
//! and across instances they interleave by block, roughly in time order.

use crate::error::{DbError, Result};
use crate::shards::Shards;
use mysql_async::prelude::Queryable;
use parking_lot::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Payment,
    Refund,
    Event,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Payment => "payment",
            Kind::Refund => "refund",
            Kind::Event => "event",
        }
    }

    fn index(self) -> usize {
        match self {
            Kind::Payment => 0,
            Kind::Refund => 1,
            Kind::Event => 2,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Block {
    next: u64,
    end: u64,
}

/// Id blocks for every shard and kind.
pub struct Sequences {
    /// `blocks[shard - 1][kind]`: the unused rest of the current block. A plain mutex: it
    /// is held for a few instructions, never across an await.
    blocks: Vec<[Mutex<Block>; 3]>,
    /// Serialises refills per shard so a burst does not reserve several blocks at once.
    refill: Vec<tokio::sync::Mutex<()>>,
    block_size: u64,
}

impl Sequences {
    pub fn new(shard_count: u16, block_size: u64) -> Self {
        assert!(block_size >= 1);
        Self {
            blocks: (0..shard_count)
                .map(|_| {
                    [
                        Mutex::new(Block::default()),
                        Mutex::new(Block::default()),
                        Mutex::new(Block::default()),
                    ]
                })
                .collect(),
            refill: (0..shard_count)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            block_size,
        }
    }

    fn take(&self, shard: u16, kind: Kind, count: usize, out: &mut Vec<u64>) -> bool {
        let mut block = self.blocks[usize::from(shard) - 1][kind.index()].lock();
        if block.end - block.next < count as u64 {
            return false;
        }
        for _ in 0..count {
            out.push(payrail_core::id::compose(shard, block.next));
            block.next += 1;
        }
        true
    }

    /// `count` fresh ids of `kind` on `shard`, appended to `out`.
    pub async fn next_ids(
        &self,
        shards: &Shards,
        shard: u16,
        kind: Kind,
        count: usize,
        out: &mut Vec<u64>,
    ) -> Result<()> {
        if shard == 0 || usize::from(shard) > self.blocks.len() {
            return Err(DbError::Unavailable {
                shard,
                message: "no such shard".to_owned(),
            });
        }
        loop {
            if self.take(shard, kind, count, out) {
                return Ok(());
            }
            let _guard = self.refill[usize::from(shard) - 1].lock().await;
            if self.take(shard, kind, count, out) {
                return Ok(());
            }
            let size = self.block_size.max(count as u64);
            let end = shards
                .bounded(shard, async {
                    let mut conn = shards.conn(shard).await?;
                    conn.exec_drop(
                        "UPDATE id_sequence SET next_value = LAST_INSERT_ID(next_value + ?) WHERE name = ?",
                        (size, kind.name()),
                    )
                    .await
                    .map_err(|e| DbError::classify(shard, e))?;
                    if conn.affected_rows() != 1 {
                        return Err(DbError::Query {
                            shard,
                            message: format!("id_sequence row '{}' missing: run migrations", kind.name()),
                        });
                    }
                    Ok(conn.last_insert_id().unwrap_or(0))
                })
                .await?;
            assert!(
                end >= size && end - 1 <= payrail_core::id::SEQUENCE_MAX,
                "id sequence exhausted on shard {shard}"
            );
            // The rest of an older block is dropped: ids must only be handed out once, and
            // a gap costs nothing.
            *self.blocks[usize::from(shard) - 1][kind.index()].lock() = Block {
                next: end - size,
                end,
            };
        }
    }

    pub async fn next_id(&self, shards: &Shards, shard: u16, kind: Kind) -> Result<u64> {
        let mut out = Vec::with_capacity(1);
        self.next_ids(shards, shard, kind, 1, &mut out).await?;
        Ok(out[0])
    }
}
