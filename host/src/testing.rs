//! Testing plugins against the simulator, from a plugin's own test suite.
//!
//! Add `level-host` as a dev-dependency of the plugin, build the plugin for
//! `wasm32-wasip2`, and run it against a fresh seeded organization:
//!
//! ```no_run
//! # async fn demo() -> Result<(), level_host::error::HostError> {
//! use level_host::testing::run_on_simulator;
//! let (report, after) = run_on_simulator(
//!     "target/wasm32-wasip2/release/my_plugin.wasm".as_ref(),
//!     serde_json::json!({"days": 30}),
//!     None,
//! )
//! .await?;
//! assert!(report.outcome.is_ok());
//! assert!(after.tags.iter().any(|t| t.name == "stale"));
//! # Ok(()) }
//! ```

use std::path::Path;

use crate::client::{ApiKey, ClientConfig, LevelClient};
use crate::error::HostError;
use crate::grant::Grant;
use crate::runtime::{PluginRunner, RunReport, RunRequest};
use crate::sim::{Fixture, SimConfig, Simulator};

/// Runs the component at `path` once with `input` against a fresh seeded
/// simulator (no rate limit), under `grant` (every capability when `None`),
/// and returns the run's report and the organization as the run left it.
pub async fn run_on_simulator(
    path: &Path,
    input: serde_json::Value,
    grant: Option<Grant>,
) -> Result<(RunReport, Fixture), HostError> {
    let runner = PluginRunner::new()?;
    let plugin = runner.load_file(path)?;
    let config = SimConfig {
        rate_limit: None,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config, Simulator::seeded())
        .await
        .map_err(|e| HostError::Engine(format!("cannot start the simulator: {e}")))?;
    let client = LevelClient::new(
        ClientConfig::new(sim.base_url()),
        ApiKey::new(sim.read_write_key()),
    )
    .map_err(|e| HostError::Engine(e.to_string()))?;
    let request = RunRequest {
        grant: grant.unwrap_or_else(|| Grant::unrestricted(&plugin.name)),
        ..RunRequest::manual(input.to_string())
    };
    let report = runner.run(&plugin, client, request).await?;
    let after = sim.tenant().to_fixture();
    sim.stop().await;
    Ok((report, after))
}
