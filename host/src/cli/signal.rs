//! The signals that stop levelhost: Ctrl-C (SIGINT) and SIGTERM.

use std::fmt;

/// A signal that asked levelhost to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Ctrl-C.
    Interrupt,
    /// SIGTERM (a service manager, `kill`).
    Terminate,
}

impl Stop {
    /// The exit code of a process stopped by this signal: 128 + its number.
    pub fn exit_code(self) -> u8 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        }
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
        })
    }
}

/// Waits for Ctrl-C or SIGTERM. If a handler cannot be installed, waits
/// for the other one only; if neither can be, never returns.
pub async fn stop() -> Stop {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = term.recv() => Stop::Terminate,
                Ok(()) = tokio::signal::ctrl_c() => Stop::Interrupt,
            };
        }
    }
    match tokio::signal::ctrl_c().await {
        Ok(()) => Stop::Interrupt,
        Err(_) => std::future::pending().await,
    }
}
