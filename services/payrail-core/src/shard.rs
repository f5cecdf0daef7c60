//! Merchant → shard routing.
//!
//! The rule (kept from the reference system, whose code is the authority, not its README):
//! take the decimal digits of `merchantId` in order as one number `n`; the shard is
//! `n mod shard_count + 1`. With two shards, even numbers go to shard 1 and odd numbers to
//! shard 2; a merchant id without digits goes to shard 1. The remainder is computed digit
//! by digit, so arbitrarily long digit runs never overflow (the reference fell back to
//! shard 1 on overflow, which split a merchant's payments when its number grew).

/// The 1-based shard that holds `merchant_id`'s payments.
pub fn shard_for_merchant(merchant_id: &str, shard_count: u16) -> u16 {
    assert!(shard_count >= 1, "shard_count must be at least 1");
    let modulus = u32::from(shard_count);
    let mut remainder: u32 = 0;
    for byte in merchant_id.bytes() {
        if byte.is_ascii_digit() {
            remainder = (remainder * 10 + u32::from(byte - b'0')) % modulus;
        }
    }
    remainder as u16 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_decides_with_two_shards() {
        assert_eq!(shard_for_merchant("MERCHANT-123", 2), 2);
        assert_eq!(shard_for_merchant("MERCHANT-124", 2), 1);
        assert_eq!(shard_for_merchant("K6TEST", 2), 1);
        assert_eq!(shard_for_merchant("MOCK-MERCHANT", 2), 1);
        assert_eq!(shard_for_merchant("a1b2", 2), 1); // 12
        assert_eq!(shard_for_merchant("a1b3", 2), 2); // 13
    }

    #[test]
    fn long_digit_runs_do_not_overflow() {
        let id = "9".repeat(32);
        assert_eq!(shard_for_merchant(&id, 2), 2);
        // 10^32 - 1 = 99..9 (32 nines); mod 7 computed independently in u128.
        let n: u128 = 10u128.pow(32) - 1;
        assert_eq!(shard_for_merchant(&id, 7), (n % 7) as u16 + 1);
    }

    #[test]
    fn one_shard_takes_everything() {
        assert_eq!(shard_for_merchant("M-7", 1), 1);
    }
}
