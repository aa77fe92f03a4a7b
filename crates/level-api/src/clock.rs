//! The one clock format levelhost writes: Level's ISO-8601 UTC with milliseconds.

use chrono::{DateTime, TimeZone, Timelike as _, Utc};

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
    // Every audit record and run carries one, so the usual case (1970 to
    // 9999, no leap second) is written by hand from the Unix time; the rest
    // takes chrono's own path.
    u64::try_from(t.timestamp())
        .ok()
        .filter(|_| t.nanosecond() < 1_000_000_000)
        .and_then(|secs| unix(secs, t.timestamp_subsec_millis()))
        .unwrap_or_else(|| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// The current time, formatted by [`timestamp`], read from the system clock
/// without going through a `DateTime`: every audit record takes one.
pub fn now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|since| unix(since.as_secs(), since.subsec_millis()))
        .unwrap_or_else(|| timestamp(Utc::now()))
}

/// `secs` after the Unix epoch and `millis`, as `timestamp` writes them:
/// the date by Howard Hinnant's days-to-civil algorithm, each field written
/// digit by digit into a template (formatting seven padded fields cost more
/// than the rest of an audit record). `None` past the year 9999.
fn unix(secs: u64, millis: u32) -> Option<String> {
    let days = secs / 86_400;
    let of_day = u32::try_from(secs % 86_400).ok()?;
    // Days since 0000-03-01, in 400-year eras of 146,097 days.
    let z = days.checked_add(719_468)?;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).ok()?;
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).ok()?;
    let year = era * 400 + yoe + u64::from(month <= 2);
    let year = u32::try_from(year).ok().filter(|y| *y <= 9999)?;
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let fields = [
        (0, 4, year),
        (5, 2, month),
        (8, 2, day),
        (11, 2, of_day / 3600),
        (14, 2, of_day / 60 % 60),
        (17, 2, of_day % 60),
        (20, 3, millis),
    ];
    for (at, width, mut value) in fields {
        for digit in out[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
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
    fn the_system_clock_path_writes_what_chrono_writes() {
        let chrono_way = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let mut secs: u64 = 0;
        let mut step: u64 = 1;
        while secs < 253_402_300_800 {
            let millis = (secs % 1000) as u32;
            let t = DateTime::from_timestamp(secs as i64, millis * 1_000_000).unwrap();
            assert_eq!(
                unix(secs, millis).as_deref(),
                Some(chrono_way(t).as_str()),
                "{secs}"
            );
            secs += step;
            step = step * 3 / 2 + 86_399;
        }
        // Every day of 2000 to 2004 (2000 a leap year though a century) and
        // around 2100-03-01 (a century, not a leap year), at its last second.
        for day in (10_900..12_500).chain(47_400..47_600) {
            let secs = day * 86_400 + 86_399;
            let t = DateTime::from_timestamp(secs as i64, 999_000_000).unwrap();
            assert_eq!(unix(secs, 999).as_deref(), Some(chrono_way(t).as_str()));
        }
        assert_eq!(
            unix(253_402_300_799, 0).as_deref(),
            Some("9999-12-31T23:59:59.000Z")
        );
        assert_eq!(unix(253_402_300_800, 0), None);
        assert_eq!(now().len(), 24);
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
        // Outside 1970 to 9999, chrono's own path.
        for far in [
            Utc.with_ymd_and_hms(12345, 1, 1, 0, 0, 0),
            Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 59),
        ] {
            let far = far.single().unwrap();
            assert_eq!(timestamp(far), chrono_way(far));
        }
    }
}
