//! The host side of the `level:api` interfaces: one file per WIT interface.
//!
//! [`LevelCtx`] is the per-run state every host function works on: the
//! plugin's Level client (which alone holds the API key), the run's log and
//! its counters. Each host function converts its WIT arguments, calls the
//! client, and converts the answer back; a Level failure becomes the WIT
//! `error` the plugin can match on, never a trap.

mod alerts;
mod automations;
mod custom_field_values;
mod custom_fields;
mod devices;
mod error;
mod groups;
mod log;
mod tags;

use std::time::Duration;

use wasmtime::component::{HasData, Linker};

use crate::bindings::types::PageRequest;
use crate::client::{LevelClient, PageParams};
pub use error::{LevelError, describe};
pub use log::{LogLine, LogSink};

/// Per-run state of the `level:api` host functions.
#[derive(Debug)]
pub struct LevelCtx {
    client: LevelClient,
    /// Log lines the plugin wrote.
    pub log: LogSink,
    /// Level calls made so far in this run.
    pub api_calls: u64,
    /// Time spent waiting for Level.
    pub api_time: Duration,
}

impl LevelCtx {
    /// A context whose calls go through `client`.
    pub fn new(client: LevelClient, log: LogSink) -> Self {
        Self {
            client,
            log,
            api_calls: 0,
            api_time: Duration::ZERO,
        }
    }

    /// Runs one Level call, counting it.
    async fn call<T, F>(&mut self, f: impl FnOnce(LevelClient) -> F) -> Result<T, LevelError>
    where
        F: Future<Output = Result<T, crate::client::ClientError>>,
    {
        self.api_calls += 1;
        let started = std::time::Instant::now();
        let result = f(self.client.clone()).await;
        self.api_time += started.elapsed();
        result.map_err(LevelError::from)
    }
}

/// The [`HasData`] marker that projects a store's data to its [`LevelCtx`].
pub struct Level;

impl HasData for Level {
    type Data<'a> = &'a mut LevelCtx;
}

/// Links every `level:api` interface into `linker`, reading the context with `get`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut LevelCtx,
) -> wasmtime::Result<()> {
    use crate::bindings::level::api;
    api::types::add_to_linker::<T, Level>(linker, get)?;
    api::alerts::add_to_linker::<T, Level>(linker, get)?;
    api::custom_fields::add_to_linker::<T, Level>(linker, get)?;
    api::custom_field_values::add_to_linker::<T, Level>(linker, get)?;
    api::devices::add_to_linker::<T, Level>(linker, get)?;
    api::groups::add_to_linker::<T, Level>(linker, get)?;
    api::tags::add_to_linker::<T, Level>(linker, get)?;
    api::automations::add_to_linker::<T, Level>(linker, get)?;
    api::log::add_to_linker::<T, Level>(linker, get)?;
    Ok(())
}

fn page(page: PageRequest) -> PageParams {
    PageParams {
        limit: page.limit,
        starting_after: page.starting_after,
        ending_before: page.ending_before,
    }
}
