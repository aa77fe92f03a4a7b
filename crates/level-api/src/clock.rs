//! The one clock format levelhost writes: Level's ISO-8601 UTC with milliseconds.

use chrono::{DateTime, TimeZone, Utc};

/// Formats a time the way Level does: ISO-8601 UTC with milliseconds, `2025-03-15T14:30:00.000Z`.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let t = Utc.with_ymd_and_hms(2025, 3, 15, 14, 30, 0).single().unwrap()
///     + chrono::TimeDelta::milliseconds(250);
/// assert_eq!(level_api::clock::timestamp(t), "2025-03-15T14:30:00.250Z");
/// ```
pub fn timestamp<Tz: TimeZone>(t: DateTime<Tz>) -> String {
    t.with_timezone(&Utc)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
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
}
