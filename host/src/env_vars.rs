//! Every environment variable levelhost reads, in one place.

/// Environment variables read by levelhost.
pub struct EnvVars;

impl EnvVars {
    /// The Level API key for `levelhost run` without a config file.
    pub const LEVEL_API_KEY: &'static str = "LEVEL_API_KEY";
    /// Level's base URL.
    pub const LEVEL_BASE_URL: &'static str = "LEVEL_BASE_URL";
    /// The configuration file (default `levelhost.toml`).
    pub const LEVELHOST_CONFIG: &'static str = "LEVELHOST_CONFIG";
    /// The log filter, as for `tracing_subscriber::EnvFilter`.
    pub const LEVELHOST_LOG: &'static str = "LEVELHOST_LOG";
}
