//! Shared helpers of the test guests. Each guest is a `src/bin/*.rs` that
//! exports the `level:api` handler; `artifacts/build.rs` compiles them.

use levelhost_sdk::bindings::level::api::types::Error;
use serde_json::{Value, json};

/// A WIT `error` as JSON, `{"kind": ..., "message": ...}`, so tests can assert on the case.
pub fn error_json(err: &Error) -> Value {
    let (kind, message) = match err {
        Error::Denied(d) => ("denied", format!("{}: {}", d.capability, d.reason)),
        Error::NotFound(m) => ("not-found", m.clone()),
        Error::InvalidInput(m) => ("invalid-input", m.clone()),
        Error::Conflict(m) => ("conflict", m.clone()),
        Error::RateLimited(s) => ("rate-limited", s.to_string()),
        Error::Unauthorized(m) => ("unauthorized", m.clone()),
        Error::LimitExceeded(m) => ("limit-exceeded", m.clone()),
        Error::Upstream(u) => ("upstream", format!("{}: {}", u.status, u.message)),
    };
    json!({ "kind": kind, "message": message })
}

/// `{"ok": value}` or `{"error": {...}}`.
pub fn outcome(result: Result<Value, Error>) -> Value {
    match result {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "error": error_json(&e) }),
    }
}
