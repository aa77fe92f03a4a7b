//! What a client has done, for metrics: requests by operation and HTTP
//! status, 429s, and time spent waiting for the key's rate budget. Shared by
//! every clone of a client, so every plugin on one key counts together.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters of one client (one key).
#[derive(Debug, Default)]
pub struct ClientStats {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    rate_limited: AtomicU64,
    budget_wait_micros: AtomicU64,
}

impl ClientStats {
    /// Counts one answered (or unanswered: status 0) request.
    pub(crate) fn request(&self, operation: &'static str, status: u16) {
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *requests.entry((operation, status)).or_default() += 1;
        if status == 429 {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds time spent waiting for the rate budget.
    pub(crate) fn waited(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.budget_wait_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Requests sent, by (operation, HTTP status; 0 when no answer came).
    pub fn requests(&self) -> Vec<(&'static str, u16, u64)> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|((op, status), n)| (*op, *status, *n))
            .collect()
    }

    /// Answers with status 429.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// Time spent waiting for the key's rate budget (its own limit and Level's `Retry-After`).
    pub fn budget_wait(&self) -> Duration {
        Duration::from_micros(self.budget_wait_micros.load(Ordering::Relaxed))
    }
}
