//! A client-side rate budget shared by every plugin that uses one key, so
//! concurrent plugins do not trip Level's rate limit for each other.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// A token bucket for one API key. Waiting requests are served in arrival
/// order (the lock is fair), so no plugin starves another; a 429 from Level
/// pauses the whole key.
#[derive(Debug)]
pub struct RateBudget {
    per_minute: u32,
    burst: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    at: Instant,
    paused_until: Option<Instant>,
}

impl RateBudget {
    /// A budget of `per_minute` requests a minute, of which `burst` may go at once; it starts full.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let burst = burst.max(1);
        Self {
            per_minute: per_minute.max(1),
            burst,
            state: Mutex::new(State {
                tokens: f64::from(burst),
                at: Instant::now(),
                paused_until: None,
            }),
        }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        let capacity = f64::from(self.burst);
        let rate = f64::from(self.per_minute) / 60.0;
        // Holding the lock while waiting keeps the queue in arrival order.
        let mut state = self.state.lock().await;
        loop {
            let now = Instant::now();
            if let Some(until) = state.paused_until {
                if until > now {
                    tokio::time::sleep_until(until).await;
                    continue;
                }
                state.paused_until = None;
            }
            let elapsed = now.saturating_duration_since(state.at).as_secs_f64();
            state.tokens = (state.tokens + elapsed * rate).min(capacity);
            state.at = now;
            if state.tokens >= 1.0 {
                state.tokens -= 1.0;
                return;
            }
            let wait = Duration::from_secs_f64((1.0 - state.tokens) / rate);
            tokio::time::sleep(wait).await;
        }
    }

    /// Pauses every request on this key for `wait` (Level answered 429), and empties the bucket.
    pub async fn pause(&self, wait: Duration) {
        let mut state = self.state.lock().await;
        let until = Instant::now() + wait;
        state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
        state.tokens = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_spaces_requests_out_after_the_burst() {
        let budget = RateBudget::new(60, 60);
        let start = Instant::now();
        for _ in 0..62 {
            budget.acquire().await;
        }
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(1900) && waited < Duration::from_millis(2100),
            "{waited:?}"
        );
        budget.pause(Duration::from_secs(5)).await;
        let before = Instant::now();
        budget.acquire().await;
        assert!(before.elapsed() >= Duration::from_secs(5));
    }
}
