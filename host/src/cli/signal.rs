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

/// Ctrl-C and SIGTERM, listened for from the moment [`listen`] returns, so
/// a signal that arrives before anything awaits it is not lost (nor does it
/// kill the process the default way).
pub struct Listener {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

/// Starts listening for Ctrl-C and SIGTERM now.
pub fn listen() -> Listener {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        Listener {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }
    #[cfg(not(unix))]
    {
        Listener {}
    }
}

impl Listener {
    /// Waits for Ctrl-C or SIGTERM. A signal whose handler could not be
    /// installed is not waited for; with neither, this never returns.
    pub async fn stopped(&mut self) -> Stop {
        #[cfg(unix)]
        {
            async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = next(&mut self.interrupt) => Stop::Interrupt,
                () = next(&mut self.terminate) => Stop::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => Stop::Interrupt,
                Err(_) => std::future::pending().await,
            }
        }
    }
}

/// SIGHUP, which asks `serve` to reload its configuration, listened for from
/// the moment [`hangups`] returns.
pub struct Hangups {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

/// Starts listening for SIGHUP now.
pub fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        Hangups {
            hangup: signal(SignalKind::hangup()).ok(),
        }
    }
    #[cfg(not(unix))]
    {
        Hangups {}
    }
}

impl Hangups {
    /// Waits for the next SIGHUP (never, where there is none).
    pub async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.hangup {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}
