//! Timestamps: milliseconds since the Unix epoch, rendered as RFC 3339 UTC with
//! milliseconds (`2026-11-24T06:00:00.000Z`).
//!
//! Hand-written rather than pulling a date crate: the API needs exactly one format, the
//! database hands back broken-down fields, and the conversion is Howard Hinnant's
//! well-known days-from-civil algorithm, tested below against known dates.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millisecond: u16,
}

pub fn to_civil(epoch_ms: i64) -> Civil {
    let days = epoch_ms.div_euclid(86_400_000);
    let ms_of_day = epoch_ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    Civil {
        year,
        month,
        day,
        hour: (ms_of_day / 3_600_000) as u8,
        minute: (ms_of_day / 60_000 % 60) as u8,
        second: (ms_of_day / 1000 % 60) as u8,
        millisecond: (ms_of_day % 1000) as u16,
    }
}

pub fn from_civil(c: Civil) -> i64 {
    let year = i64::from(c.year) - i64::from(c.month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(c.month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(c.day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400_000
        + i64::from(c.hour) * 3_600_000
        + i64::from(c.minute) * 60_000
        + i64::from(c.second) * 1000
        + i64::from(c.millisecond)
}

/// Appends `2026-11-24T06:00:00.000Z` to `out`.
pub fn push_rfc3339(out: &mut String, epoch_ms: i64) {
    use std::fmt::Write;
    let c = to_civil(epoch_ms);
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millisecond
    );
}

pub fn rfc3339(epoch_ms: i64) -> String {
    let mut out = String::with_capacity(24);
    push_rfc3339(&mut out, epoch_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_500_000_123), "2026-11-24T06:00:00.123Z");
    }

    #[test]
    fn civil_round_trip() {
        let mut ms = -5_000_000_000_000i64;
        while ms < 5_000_000_000_000 {
            assert_eq!(from_civil(to_civil(ms)), ms);
            ms += 7_777_777_777;
        }
    }
}
