//! A client-side rate budget shared by every plugin that uses one key, so
//! concurrent plugins do not trip Level's rate limit for each other; with a
//! [`SharedBudget`], shared by every process that uses the key too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// A future a [`SharedBudget`] answers with.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a [`SharedBudget`] could not answer (its store is unreachable, say).
pub type SharedBudgetError = Box<dyn std::error::Error + Send + Sync>;

/// A key's budget kept where several processes see it (the replicas of
/// `serve` on one database), so together they stay within Level's limit,
/// and a 429 one of them gets pauses the key for all.
pub trait SharedBudget: Send + Sync + std::fmt::Debug {
    /// Takes one request from `key`'s bucket (`per_minute`, at most `burst`
    /// at once): `None` when taken, or how long to wait before asking again.
    fn take<'a>(
        &'a self,
        key: &'a str,
        per_minute: u32,
        burst: u32,
    ) -> BoxFuture<'a, Result<Option<Duration>, SharedBudgetError>>;

    /// Pauses `key` for `wait` and empties its bucket.
    fn pause<'a>(
        &'a self,
        key: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<(), SharedBudgetError>>;
}

/// A token bucket for one API key. Waiting requests are served in arrival
/// order (the lock is fair), so no plugin starves another; a 429 from Level
/// pauses the whole key.
#[derive(Debug)]
pub struct RateBudget {
    per_minute: u32,
    burst: u32,
    state: Mutex<State>,
    shared: Option<(Arc<dyn SharedBudget>, String)>,
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
            shared: None,
        }
    }

    /// This budget kept also in `store` under `key`, with every other
    /// process that uses the key: a request needs a token from both.
    pub fn shared(mut self, store: Arc<dyn SharedBudget>, key: impl Into<String>) -> Self {
        self.shared = Some((store, key.into()));
        self
    }

    /// One request asking a bucket of `per_minute` (at most `burst` kept)
    /// that held `tokens` `elapsed_secs` ago: the tokens left, and `None`
    /// when the request may go now, else how long until it may. The one
    /// token-bucket rule, for this process's bucket and for shared ones.
    pub fn take_from(
        tokens: f64,
        elapsed_secs: f64,
        per_minute: u32,
        burst: u32,
    ) -> (f64, Option<Duration>) {
        let rate = f64::from(per_minute.max(1)) / 60.0;
        let tokens = (tokens + elapsed_secs.max(0.0) * rate).min(f64::from(burst.max(1)));
        if tokens >= 1.0 {
            (tokens - 1.0, None)
        } else {
            (tokens, Some(Duration::from_secs_f64((1.0 - tokens) / rate)))
        }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
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
            let (left, wait) = Self::take_from(state.tokens, elapsed, self.per_minute, self.burst);
            state.tokens = left;
            state.at = now;
            match wait {
                None => break,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
        // Still in arrival order: the lock is held while the shared bucket is asked.
        if let Some((store, key)) = &self.shared {
            loop {
                match store.take(key, self.per_minute, self.burst).await {
                    Ok(None) => return,
                    Ok(Some(wait)) => tokio::time::sleep(wait).await,
                    Err(e) => {
                        // This process's own bucket has already paced the request.
                        tracing::warn!(
                            key,
                            "the shared rate budget cannot be reached, so this request is paced by this process alone: {e}"
                        );
                        return;
                    }
                }
            }
        }
    }

    /// Pauses every request on this key for `wait` (Level answered 429), and empties the bucket.
    pub async fn pause(&self, wait: Duration) {
        let mut state = self.state.lock().await;
        let until = Instant::now() + wait;
        state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
        state.tokens = 0.0;
        drop(state);
        if let Some((store, key)) = &self.shared
            && let Err(e) = store.pause(key, wait).await
        {
            tracing::warn!(key, "could not pause the shared rate budget: {e}");
        }
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

    /// One bucket for every budget that shares it, as a database would keep it.
    #[derive(Debug, Default)]
    struct OneBucket(std::sync::Mutex<Option<(f64, Instant, Option<Instant>)>>);

    impl SharedBudget for OneBucket {
        fn take<'a>(
            &'a self,
            _key: &'a str,
            per_minute: u32,
            burst: u32,
        ) -> BoxFuture<'a, Result<Option<Duration>, SharedBudgetError>> {
            Box::pin(async move {
                let now = Instant::now();
                let mut state = self.0.lock().unwrap();
                let (tokens, at, paused) = state.get_or_insert((f64::from(burst), now, None));
                if let Some(until) = *paused
                    && until > now
                {
                    return Ok(Some(until - now));
                }
                let (left, wait) =
                    RateBudget::take_from(*tokens, (now - *at).as_secs_f64(), per_minute, burst);
                (*tokens, *at) = (left, now);
                Ok(wait)
            })
        }

        fn pause<'a>(
            &'a self,
            _key: &'a str,
            wait: Duration,
        ) -> BoxFuture<'a, Result<(), SharedBudgetError>> {
            Box::pin(async move {
                let mut state = self.0.lock().unwrap();
                let now = Instant::now();
                let (tokens, _, paused) = state.get_or_insert((0.0, now, None));
                *tokens = 0.0;
                *paused = Some(now + wait);
                Ok(())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn budgets_sharing_a_store_stay_within_one_limit_and_pause_together() {
        let store: Arc<dyn SharedBudget> = Arc::new(OneBucket::default());
        let replicas: Vec<RateBudget> = (0..3)
            .map(|_| RateBudget::new(60, 2).shared(store.clone(), "rw"))
            .collect();
        let start = Instant::now();
        // Each replica alone could send 2 at once and then 1 a second; together they share that.
        for _ in 0..2 {
            for budget in &replicas {
                budget.acquire().await;
            }
        }
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(3900) && waited < Duration::from_millis(4200),
            "6 requests, 2 at once and 1 a second after: {waited:?}"
        );
        // A 429 one replica gets pauses the others.
        replicas[0].pause(Duration::from_secs(10)).await;
        let before = Instant::now();
        replicas[2].acquire().await;
        assert!(before.elapsed() >= Duration::from_secs(10));
    }
}
