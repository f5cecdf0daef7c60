//! Field rules of the REST API contract (`shared/spec/api.md`).
//!
//! Each check returns the `problem` text of the error body's `details` entry, so the
//! message a client sees says what to change.

/// Largest amount in minor units.
pub const AMOUNT_MAX: i64 = 1_000_000_000_000;
pub const MERCHANT_ID_LEN_MAX: usize = 32;
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 64;
pub const REASON_LEN_MAX: usize = 128;

/// `merchantId`: 1..32 chars of `[A-Za-z0-9_-]`.
pub fn merchant_id(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("must not be empty");
    }
    if value.len() > MERCHANT_ID_LEN_MAX {
        return Err("must be at most 32 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("must match [A-Za-z0-9_-]");
    }
    Ok(())
}

/// `amount`: 1 ..= 1_000_000_000_000 minor units.
pub fn amount(value: i64) -> Result<(), &'static str> {
    if value < 1 {
        return Err("must be >= 1");
    }
    if value > AMOUNT_MAX {
        return Err("must be <= 1000000000000");
    }
    Ok(())
}

/// `idempotencyKey`: 1..64 printable ASCII characters (space through tilde).
pub fn idempotency_key(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("must not be empty");
    }
    if value.len() > IDEMPOTENCY_KEY_LEN_MAX {
        return Err("must be at most 64 characters");
    }
    if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err("must be printable ASCII");
    }
    Ok(())
}

/// `reason`: 1..128 characters, no control characters.
pub fn reason(value: &str) -> Result<(), &'static str> {
    if value.trim().is_empty() {
        return Err("must not be empty");
    }
    if value.chars().count() > REASON_LEN_MAX {
        return Err("must be at most 128 characters");
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(())
}

/// `currency`: one of the configured ISO 4217 alphabetic codes.
pub fn currency(value: &str, allowed: &[String]) -> Result<(), &'static str> {
    if value.len() != 3 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err("must be a 3-letter upper-case ISO 4217 code");
    }
    if !allowed.iter().any(|c| c == value) {
        return Err("is not an accepted currency");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchant_ids() {
        assert!(merchant_id("MERCHANT-123").is_ok());
        assert!(merchant_id("a_b-C9").is_ok());
        assert!(merchant_id("").is_err());
        assert!(merchant_id(&"x".repeat(33)).is_err());
        assert!(merchant_id(&"x".repeat(32)).is_ok());
        assert!(merchant_id("M 1").is_err());
        assert!(merchant_id("M\u{e9}").is_err());
    }

    #[test]
    fn amounts() {
        assert!(amount(1).is_ok());
        assert!(amount(AMOUNT_MAX).is_ok());
        assert!(amount(0).is_err());
        assert!(amount(-5).is_err());
        assert!(amount(AMOUNT_MAX + 1).is_err());
    }

    #[test]
    fn idempotency_keys() {
        assert!(idempotency_key("order-1").is_ok());
        assert!(idempotency_key("a b ~").is_ok());
        assert!(idempotency_key("").is_err());
        assert!(idempotency_key(&"k".repeat(65)).is_err());
        assert!(idempotency_key("tab\there").is_err());
        assert!(idempotency_key("\u{e9}").is_err());
    }

    #[test]
    fn currencies() {
        let allowed: Vec<String> = ["KRW", "USD"].iter().map(|s| s.to_string()).collect();
        assert!(currency("KRW", &allowed).is_ok());
        assert!(currency("krw", &allowed).is_err());
        assert!(currency("EUR", &allowed).is_err());
        assert!(currency("KRWX", &allowed).is_err());
    }

    #[test]
    fn reasons() {
        assert!(reason("customer request").is_ok());
        assert!(reason("  ").is_err());
        assert!(reason(&"r".repeat(129)).is_err());
        assert!(reason("line\nbreak").is_err());
    }
}
