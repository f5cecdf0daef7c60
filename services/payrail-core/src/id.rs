//! Global ids for payments, refunds and events.
//!
//! An id is `shard << SHARD_SHIFT | sequence`. The shard number (1-based) lives in the
//! high bits so any service can route an id to its shard without a lookup table, and the
//! sequence comes from per-shard blocks (see `payrail-db`'s `sequence` module), so ids
//! increase roughly with time, which keeps InnoDB's clustered index append-mostly.
//! With 42 sequence bits and 11 shard bits every id stays below 2^53 and survives a
//! round trip through a JavaScript number.

/// Bits reserved for the per-shard sequence.
pub const SHARD_SHIFT: u32 = 42;
/// Largest shard number an id can name.
pub const SHARD_MAX: u16 = (1 << (53 - SHARD_SHIFT)) - 1;
/// Largest sequence value inside one shard.
pub const SEQUENCE_MAX: u64 = (1 << SHARD_SHIFT) - 1;
/// Every id is strictly below this (2^53).
pub const ID_LIMIT: u64 = 1 << 53;

/// Builds an id from a shard number (1..=SHARD_MAX) and a sequence value.
pub fn compose(shard: u16, sequence: u64) -> u64 {
    assert!(
        (1..=SHARD_MAX).contains(&shard),
        "shard {shard} out of range"
    );
    assert!(sequence <= SEQUENCE_MAX, "sequence {sequence} out of range");
    (u64::from(shard) << SHARD_SHIFT) | sequence
}

/// The shard an id names, or `None` when the id cannot be one of ours.
pub fn shard_of(id: u64) -> Option<u16> {
    if id >= ID_LIMIT {
        return None;
    }
    let shard = (id >> SHARD_SHIFT) as u16;
    (shard >= 1).then_some(shard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_id_of_shard_one_matches_the_api_example() {
        assert_eq!(compose(1, 0), 4_398_046_511_104);
    }

    #[test]
    fn ids_name_their_shard_and_stay_below_2_pow_53() {
        for shard in [1, 2, 7, SHARD_MAX] {
            for sequence in [0, 1, 12345, SEQUENCE_MAX] {
                let id = compose(shard, sequence);
                assert!(id < ID_LIMIT);
                assert_eq!(shard_of(id), Some(shard));
            }
        }
    }

    #[test]
    fn no_collision_across_shards() {
        let a: Vec<u64> = (0..1000).map(|s| compose(1, s)).collect();
        let b: Vec<u64> = (0..1000).map(|s| compose(2, s)).collect();
        assert!(a.iter().all(|id| !b.contains(id)));
    }

    #[test]
    fn ids_outside_the_scheme_name_no_shard() {
        assert_eq!(shard_of(0), None);
        assert_eq!(shard_of(12), None);
        assert_eq!(shard_of(ID_LIMIT), None);
        assert_eq!(shard_of(u64::MAX), None);
    }
}
