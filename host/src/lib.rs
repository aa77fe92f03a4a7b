//! The `levelhost` command: the CLI, reading `levelhost.toml` ([`config`]),
//! putting it to use ([`loader`]) and installing packages ([`install`]).
//! The work itself is done by the workspace's crates: `level-api` talks to
//! Level, `levelhost-core` decides, `levelhost-runtime` runs plugins,
//! `levelhost-packages` verifies them and `levelhost-serve` schedules them.
pub mod cli;
pub mod config;
pub mod env_vars;
pub mod install;
pub mod loader;
