//! When a failed Level call is tried again, and after how long.

use std::time::Duration;

use super::ClientError;

/// How the client retries. A 429 is retried for every method because Level
/// did not act on the request; a 5xx or a network failure only for safe
/// methods, since a write may have been applied before the failure.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the first retry of a 5xx or network failure; doubles each time.
    pub base_delay: Duration,
    /// Longest wait between attempts, whatever `Retry-After` asks for.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`, or `None` to give up.
    pub(crate) fn delay(&self, attempt: u32, safe: bool, err: &ClientError) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let backoff = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let wait = match err {
            ClientError::Status {
                status: 429,
                retry_after,
                ..
            } => retry_after.unwrap_or(backoff),
            ClientError::Status { status, .. } if *status >= 500 && safe => backoff,
            ClientError::Transport(_) if safe => backoff,
            _ => return None,
        };
        Some(with_jitter(wait.min(self.max_delay)))
    }
}

/// Adds up to 10% (at least 1 ms) of random delay so many clients that were
/// told to wait the same time do not all come back at once.
fn with_jitter(wait: Duration) -> Duration {
    let spread = (wait / 10).max(Duration::from_millis(1));
    let extra = rand::random_range(0..=spread.as_micros().min(u128::from(u64::MAX)) as u64);
    wait + Duration::from_micros(extra)
}

/// Parses `Retry-After` as seconds or as an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) is RFC 2822's form.
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, retry_after: Option<Duration>) -> ClientError {
        ClientError::Status {
            status,
            message: String::new(),
            retry_after,
        }
    }

    #[test]
    fn rate_limits_are_retried_for_writes_but_server_errors_are_not() {
        let policy = RetryPolicy::default();
        let wait = policy
            .delay(1, false, &status(429, Some(Duration::from_secs(2))))
            .unwrap();
        assert!(wait >= Duration::from_secs(2) && wait <= Duration::from_millis(2200));
        assert!(policy.delay(1, false, &status(503, None)).is_none());
        assert!(policy.delay(1, true, &status(503, None)).is_some());
        assert!(policy.delay(1, true, &status(404, None)).is_none());
        assert!(policy.delay(4, true, &status(429, None)).is_none());
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
