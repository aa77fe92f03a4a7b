//! The one clock format levelhost writes: Level's ISO-8601 UTC with milliseconds.

use time::{OffsetDateTime, UtcOffset};

/// Formats a time the way Level does: ISO-8601 UTC with milliseconds, `2025-03-15T14:30:00.000Z`.
///
/// ```
/// let t = time::macros::datetime!(2025-03-15 14:30:00.250 UTC);
/// assert_eq!(level_api::clock::timestamp(t), "2025-03-15T14:30:00.250Z");
/// ```
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The current time, formatted by [`timestamp`].
pub fn now() -> String {
    timestamp(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let t = time::macros::datetime!(2025-01-02 03:04:05.006 +02:00);
        assert_eq!(timestamp(t), "2025-01-02T01:04:05.006Z");
    }
}
