//! levelhost runs sandboxed WebAssembly plugins against the Level RMM API,
//! each within its grant.
//!
//! - [`runtime::PluginRunner`] loads components and runs them, one fresh store per run;
//! - [`gate::Gate`] decides every call a plugin makes: capabilities, scopes, budgets;
//! - [`level`] implements the `level:api` WIT interfaces on top of [`client::LevelClient`],
//!   the only code that talks to Level;
//! - [`config`] and [`manifest`] read `levelhost.toml` and `plugin.toml`;
//! - [`serve`] runs schedules and webhook events, recorded in [`history`];
//! - [`sim`] is a Level API simulator, and [`testing`] runs a plugin against it.
pub mod audit;
pub mod bindings;
pub mod capability;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod env_vars;
pub mod error;
pub mod gate;
pub mod grant;
pub mod history;
pub mod install;
pub mod level;
pub mod location;
pub mod manifest;
pub mod oci;
pub mod package;
pub mod runtime;
pub mod serve;
pub mod sim;
pub mod testing;
pub mod trust;
