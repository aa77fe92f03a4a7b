//! `levelhost serve`: runs every plugin's schedules and takes Level's webhook
//! deliveries, recording every run in the [`history`] database.
//!
//! [`service::Service`] is given loaded plugins ([`plugin::ServedPlugin`]);
//! reading the configuration, verifying packages and building clients is
//! the `levelhost` binary's work.

pub mod approvals;
pub mod console;
pub mod executor;
pub mod history;
pub mod metrics;
pub mod plugin;
pub mod scheduler;
pub mod service;
pub mod shard;
mod webhooks;

pub use executor::{Busy, Claimed, ExecuteError, Executor, Finished, Origin, RunOptions, Waiting};
pub use plugin::{CatchUp, Events, GatewayOptions, Overlap, Schedule, ServeOptions, ServedPlugin};
pub use service::{Handle, ServeError, Service, accept_loop};
