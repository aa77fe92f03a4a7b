//! The one clock format levelhost writes: Level's ISO-8601 UTC with milliseconds.

use chrono::{DateTime, Datelike as _, TimeZone, Timelike as _, Utc};

/// Formats a time the way Level does: ISO-8601 UTC with milliseconds, `2025-03-15T14:30:00.000Z`.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let t = Utc.with_ymd_and_hms(2025, 3, 15, 14, 30, 0).single().unwrap()
///     + chrono::TimeDelta::milliseconds(250);
/// assert_eq!(level_api::clock::timestamp(t), "2025-03-15T14:30:00.250Z");
/// ```
pub fn timestamp<Tz: TimeZone>(t: DateTime<Tz>) -> String {
    let t = t.with_timezone(&Utc);
    // Every audit record and run carries one: written digit by digit into a
    // template, as formatting seven padded fields costs more than the rest of
    // an audit record. Years outside four digits and leap seconds take
    // chrono's own path.
    if !(0..=9999).contains(&t.year()) || t.nanosecond() >= 1_000_000_000 {
        return t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    }
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let fields = [
        (0, 4, t.year().unsigned_abs()),
        (5, 2, t.month()),
        (8, 2, t.day()),
        (11, 2, t.hour()),
        (14, 2, t.minute()),
        (17, 2, t.second()),
        (20, 3, t.nanosecond() / 1_000_000),
    ];
    for (at, width, mut value) in fields {
        for digit in out[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The current time, formatted by [`timestamp`].
pub fn now() -> String {
    timestamp(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let t = chrono::FixedOffset::east_opt(2 * 3600)
            .and_then(|tz| tz.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).single())
            .unwrap()
            + chrono::TimeDelta::milliseconds(6);
        assert_eq!(timestamp(t), "2025-01-02T01:04:05.006Z");
    }

    #[test]
    fn the_fast_path_writes_what_chrono_writes() {
        let chrono_way = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let mut t = Utc
            .with_ymd_and_hms(1999, 12, 31, 23, 59, 59)
            .single()
            .unwrap();
        for step in 0..2000 {
            assert_eq!(timestamp(t), chrono_way(t));
            t += chrono::TimeDelta::milliseconds(7919 * step + 1)
                + chrono::TimeDelta::nanoseconds(999_999);
        }
        let far = Utc.with_ymd_and_hms(12345, 1, 1, 0, 0, 0).single().unwrap();
        assert_eq!(timestamp(far), chrono_way(far));
    }
}
