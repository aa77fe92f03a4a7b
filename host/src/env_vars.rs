//! Every environment variable levelhost reads, in one place, and the only
//! code that reads the environment (a clippy lint keeps it so).

use std::ffi::OsString;

/// Environment variables read by levelhost.
pub struct EnvVars;

impl EnvVars {
    /// The configuration file (default `levelhost.toml`).
    pub const LEVELHOST_CONFIG: &'static str = "LEVELHOST_CONFIG";
    /// Where compiled components are cached; `off` turns the cache off.
    pub const LEVELHOST_CACHE_DIR: &'static str = "LEVELHOST_CACHE_DIR";
    /// The user's cache folder, under which levelhost keeps its own.
    pub const XDG_CACHE_HOME: &'static str = "XDG_CACHE_HOME";
    /// The user's home folder.
    pub const HOME: &'static str = "HOME";
    /// The user name for OCI registries (with the password below).
    pub const LEVELHOST_REGISTRY_USERNAME: &'static str = "LEVELHOST_REGISTRY_USERNAME";
    /// The password or token for OCI registries.
    pub const LEVELHOST_REGISTRY_PASSWORD: &'static str = "LEVELHOST_REGISTRY_PASSWORD";
    /// The catalog directory `levelhost catalog` uses (default `catalog`).
    pub const LEVELHOST_CATALOG: &'static str = "LEVELHOST_CATALOG";
    /// The log filter, as for `tracing_subscriber::EnvFilter`.
    pub const LEVELHOST_LOG: &'static str = "LEVELHOST_LOG";
    /// Set by `levelhost build` for a project's `build.sh`: the WIT package
    /// to build against, whose `plugin` world imports only the interfaces the
    /// project's manifest asks for.
    pub const LEVELHOST_WIT: &'static str = "LEVELHOST_WIT";
    /// Set by `levelhost build` for a project's `build.sh`: the levelhost
    /// executable, whose `wit` steps the C and Go builds use.
    pub const LEVELHOST: &'static str = "LEVELHOST";
    /// Set (to anything but empty) to turn colour off, as no-color.org asks.
    pub const NO_COLOR: &'static str = "NO_COLOR";
    /// Where cargo puts its builds (`levelhost demo` builds the example plugins).
    pub const CARGO_TARGET_DIR: &'static str = "CARGO_TARGET_DIR";
    /// Who is running levelhost: recorded as who approved or rejected a plan, unless `--by` says.
    pub const USER: &'static str = "USER";
    /// The cargo that runs levelhost, if it does.
    pub const CARGO: &'static str = "CARGO";

    /// The value of `name`, if it is set.
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the one place levelhost reads its environment"
    )]
    pub fn var_os(name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }

    /// The value of `name`, if it is set and is Unicode.
    pub fn var(name: &str) -> Option<String> {
        Self::var_os(name).and_then(|v| v.into_string().ok())
    }
}
