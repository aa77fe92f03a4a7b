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
    written(
        t.year().unsigned_abs(),
        [t.month(), t.day(), t.hour(), t.minute(), t.second()],
        t.nanosecond() / 1_000_000,
    )
}

/// `year-month-dayThour:minute:second.millisZ`, each field zero-padded.
fn written(year: u32, [month, day, hour, minute, second]: [u32; 5], millis: u32) -> String {
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let fields = [
        (0, 4, year),
        (5, 2, month),
        (8, 2, day),
        (11, 2, hour),
        (14, 2, minute),
        (17, 2, second),
        (20, 3, millis),
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
///
/// Read from the system clock and turned into a civil date directly (the
/// days-to-date algorithm of Howard Hinnant's `chrono` paper), without
/// going through a `DateTime`: every audit record takes one.
pub fn now() -> String {
    let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
        return timestamp(Utc::now());
    };
    unix(since.as_secs(), since.subsec_millis()).unwrap_or_else(|| timestamp(Utc::now()))
}

/// `secs` after the Unix epoch, formatted by [`timestamp`]; `None` past year 9999.
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
    Some(written(
        year,
        [month, day, of_day / 3600, of_day / 60 % 60, of_day % 60],
        millis,
    ))
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
        let mut secs: u64 = 0;
        let mut step: u64 = 1;
        while secs < 253_402_300_800 {
            let millis = (secs % 1000) as u32;
            let t = DateTime::from_timestamp(secs as i64, millis * 1_000_000).unwrap();
            assert_eq!(
                unix(secs, millis).as_deref(),
                Some(timestamp(t).as_str()),
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
            assert_eq!(unix(secs, 999).as_deref(), Some(timestamp(t).as_str()));
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
        let far = Utc.with_ymd_and_hms(12345, 1, 1, 0, 0, 0).single().unwrap();
        assert_eq!(timestamp(far), chrono_way(far));
    }
}
