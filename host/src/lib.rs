//! levelhost
pub mod bindings;
pub mod cli;
pub mod client;
pub mod engine;
pub mod env_vars;
pub mod error;
pub mod level;
pub mod runtime;
pub mod sim;
