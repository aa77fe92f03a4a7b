//! Every environment variable levelhost reads, in one place.

/// Environment variables read by levelhost.
pub struct EnvVars;

impl EnvVars {
    /// The configuration file (default `levelhost.toml`).
    pub const LEVELHOST_CONFIG: &'static str = "LEVELHOST_CONFIG";
    /// The log filter, as for `tracing_subscriber::EnvFilter`.
    pub const LEVELHOST_LOG: &'static str = "LEVELHOST_LOG";
}
