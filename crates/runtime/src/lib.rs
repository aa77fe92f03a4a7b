//! Runs `level:api` plugin components in wasmtime, each in a fresh sandboxed
//! store per run, every Level call decided by the run's gate.
//!
//! - [`runner::PluginRunner`] loads components and runs them;
//! - [`engine`] is the wasmtime engine and the compiled, linked component;
//! - [`level`] implements the `level:api` WIT interfaces on top of
//!   [`level_api::LevelClient`], the only code that talks to Level;
//! - [`bindings`] holds the one `bindgen!`;
//! - [`outbound`] sends a plugin's `wasi:http` requests to the grant's
//!   connections, each through the same gate, with credentials only the host holds;
//! - [`audit`] appends a record for every host call;
//! - [`state`] is a plugin's durable state as a run sees it.

pub mod audit;
pub mod bindings;
pub mod engine;
pub mod error;
pub mod level;
pub mod outbound;
pub mod runner;
pub mod state;
pub mod tape;
