//! Level failures as the WIT `error` a plugin sees.

use crate::bindings::types::{self, Denial, Error, UpstreamError};
use level_api::ClientError;

/// The error of a `level:api` host function: a WIT `error` returned to the
/// plugin, or a host fault that traps it.
#[derive(Debug)]
pub enum LevelError {
    /// Returned to the plugin as the WIT `error`.
    Guest(Error),
    /// Ends the run with a trap.
    Trap(wasmtime::Error),
}

impl LevelError {
    /// A denial naming the capability the call needs.
    pub fn denied(capability: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Guest(Error::Denied(Denial {
            capability: capability.into(),
            reason: reason.into(),
        }))
    }

    /// A run limit reached: ends the run with a trap the runner reports as [`LimitExceeded`].
    pub fn limit(limit: &'static str, detail: String) -> Self {
        Self::Trap(wasmtime::Error::new(LimitExceeded { limit, detail }))
    }

    /// Invalid arguments from the plugin.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::Guest(Error::InvalidInput(message.into()))
    }
}

/// A run limit was reached; carried in the trap that ends the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit {limit} exceeded: {detail}")]
pub struct LimitExceeded {
    /// The limit's name, as in the config.
    pub limit: &'static str,
    /// What happened.
    pub detail: String,
}

impl From<ClientError> for LevelError {
    fn from(err: ClientError) -> Self {
        let message = err.to_string();
        Self::Guest(match err {
            ClientError::Status {
                status,
                message,
                retry_after,
            } => match status {
                400 => Error::InvalidInput(message),
                401 | 403 => Error::Unauthorized(message),
                404 => Error::NotFound(message),
                422 => Error::Conflict(message),
                429 => Error::RateLimited(
                    retry_after
                        .map_or(1, |d| u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX)),
                ),
                _ => Error::Upstream(UpstreamError { status, message }),
            },
            ClientError::Decode { .. } | ClientError::ResponseTooLarge { .. } => {
                Error::Upstream(UpstreamError {
                    status: 200,
                    message,
                })
            }
            ClientError::InvalidId { .. } => Error::InvalidInput(message),
            ClientError::Transport(_)
            | ClientError::InvalidBaseUrl { .. }
            | ClientError::InvalidKey => Error::Upstream(UpstreamError { status: 0, message }),
        })
    }
}

impl types::Host for super::LevelCtx {
    fn convert_error(&mut self, err: LevelError) -> wasmtime::Result<Error> {
        match err {
            LevelError::Guest(e) => Ok(e),
            LevelError::Trap(e) => Err(e),
        }
    }
}

/// A WIT `error` in words, for logs and run reports.
pub fn describe(err: &Error) -> String {
    match err {
        Error::Denied(d) if d.capability.is_empty() => format!("denied: {}", d.reason),
        Error::Denied(d) => format!("denied (needs {}): {}", d.capability, d.reason),
        Error::NotFound(m) => format!("not found: {m}"),
        Error::InvalidInput(m) => format!("invalid input: {m}"),
        Error::Conflict(m) => format!("conflict: {m}"),
        Error::RateLimited(s) => format!("rate limited (retry in {s}s)"),
        Error::Unauthorized(m) => format!("unauthorized: {m}"),
        Error::LimitExceeded(m) => format!("limit exceeded: {m}"),
        // Status 0: no answer arrived. A success status: the answer could not be read.
        Error::Upstream(u) if u.status == 0 => format!("Level could not be reached: {}", u.message),
        Error::Upstream(u) if (200..300).contains(&u.status) => {
            format!("Level's answer could not be read: {}", u.message)
        }
        Error::Upstream(u) => format!("Level answered {}: {}", u.status, u.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(status: u16) -> String {
        describe(&Error::Upstream(UpstreamError {
            status,
            message: "details".to_owned(),
        }))
    }

    /// Issue 13, point 8: a transport failure is not "Level error 0" and an
    /// unreadable answer is not "Level error 200".
    #[test]
    fn upstream_failures_say_what_happened() {
        assert_eq!(upstream(0), "Level could not be reached: details");
        assert_eq!(upstream(200), "Level's answer could not be read: details");
        assert_eq!(upstream(502), "Level answered 502: details");
    }
}
