//! levelhost
pub mod audit;
pub mod bindings;
pub mod capability;
pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod env_vars;
pub mod error;
pub mod gate;
pub mod grant;
pub mod level;
pub mod location;
pub mod manifest;
pub mod runtime;
pub mod sim;
