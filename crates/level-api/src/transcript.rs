//! What a client sent to Level and what Level answered, kept so a run can be
//! replayed offline: a [`Recorder`] in [`crate::ClientConfig`] collects one
//! [`Exchange`] per attempt, retries included.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// One request to Level and its answer. Headers are not kept (the key is
/// one of them), and the answer's body is kept as the client read it, after
/// the key was scrubbed from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// The HTTP method.
    pub method: String,
    /// The path and query under the base URL, such as `/v2/devices?limit=100`.
    pub path: String,
    /// The request's JSON body, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The status Level answered; 0 when no answer arrived.
    pub status: u16,
    /// Level's `Retry-After` header, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    /// The answer's body (or, with status 0, why there was none).
    pub response: String,
}

/// Where a client (and each of its clones) records its exchanges.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Exchange>>>);

impl Recorder {
    /// A recorder with nothing recorded yet.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&self, exchange: Exchange) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(exchange);
    }

    /// Every exchange so far, in the order they happened.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
