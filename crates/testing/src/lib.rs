//! Testing plugins against the simulator, from a plugin's own test suite.
//!
//! Add `levelhost-testing` as a dev-dependency of the plugin, build the
//! plugin for `wasm32-wasip2`, and run it against a fresh seeded organization:
//!
//! ```no_run
//! # async fn demo() -> Result<(), levelhost_testing::TestingError> {
//! use levelhost_testing::run_on_simulator;
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
//!
//! [`HostCalls`] calls the host side of the `level:api` interfaces directly,
//! with no component, so the gate and the host functions can be tested by
//! the thousand.
//!
//! This crate pulls in the runtime and the simulator only: no SQLite, no
//! OCI client, no command line.

pub mod cases;
pub mod transcript;

use std::path::Path;

use level_api::{ApiKey, ClientConfig, ClientError, LevelClient};
use level_sim::{Fixture, SimConfig, SimError, Simulator};
use levelhost_core::gate::Gate;
use levelhost_core::grant::Grant;
use levelhost_runtime::audit::AuditRecord;
use levelhost_runtime::error::HostError;
use levelhost_runtime::level::{LevelCtx, LogSink, PlanEntry, RunInfo};
use levelhost_runtime::runner::{PluginRunner, RunReport, RunRequest, resolve_scopes};

pub use levelhost_runtime::runner::RunFailure;

/// Why a test run could not be made (a plugin that fails is a [`RunReport`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum TestingError {
    /// The plugin could not be loaded or started.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The simulator could not start.
    #[error("cannot start the Level simulator")]
    Simulator(#[source] SimError),
    /// The client of the simulator could not be built.
    #[error("cannot build a Level client for the simulator")]
    Client(#[source] ClientError),
    /// A file (a fixture, a transcript) could not be read or written.
    #[error("{}: cannot {doing}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// `read` or `write`.
        doing: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is not what it should be.
    #[error("{}:{}:{}: {what}", path.display(), source.line(), source.column())]
    Json {
        /// The file.
        path: std::path::PathBuf,
        /// What it should have been, such as "not a levelhost transcript".
        what: &'static str,
        /// Where and why.
        #[source]
        source: serde_json::Error,
    },
    /// A fixture names objects that do not fit together.
    #[error("{}", path.display())]
    Fixture {
        /// The fixture file.
        path: std::path::PathBuf,
        /// What is wrong.
        #[source]
        source: level_sim::FixtureError,
    },
    /// A transcript in a format this build does not read.
    #[error("{}: transcript format {found} is not the one this levelhost reads ({})", path.display(), transcript::FORMAT)]
    TranscriptFormat {
        /// The transcript.
        path: std::path::PathBuf,
        /// Its format version.
        found: u32,
    },
    /// A test case in `tests.toml` cannot be run as written.
    #[error("{}: test {case:?}: {problem}", file.display())]
    Case {
        /// The tests file.
        file: std::path::PathBuf,
        /// The case's name.
        case: String,
        /// What is wrong.
        problem: String,
    },
    /// The loopback server that answers a replay could not start.
    #[error("cannot start the replay server")]
    ReplayServer(#[source] std::io::Error),
    /// A stand-in for a recorded or stated connection could not be set up.
    #[error("cannot set up a stand-in connection")]
    Connection(#[source] levelhost_runtime::outbound::ConnectionError),
}

/// Reads a JSON file into `T`; an error names the file, line and column,
/// and `what` it should have been (such as "not a levelhost transcript").
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<T, TestingError> {
    let text = std::fs::read_to_string(path).map_err(|source| TestingError::File {
        path: path.to_owned(),
        doing: "read",
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| TestingError::Json {
        path: path.to_owned(),
        what,
        source,
    })
}

/// Starts a simulator holding `tenant`, with no rate limit: a test's runs
/// should not wait for Level's budget.
pub async fn start_simulator(tenant: level_sim::Tenant) -> Result<Simulator, TestingError> {
    start_simulator_with(tenant, level_sim::Variants::default()).await
}

/// [`start_simulator`], behaving as `variants` say where Level's behaviour is unconfirmed.
pub async fn start_simulator_with(
    tenant: level_sim::Tenant,
    variants: level_sim::Variants,
) -> Result<Simulator, TestingError> {
    let config = SimConfig {
        rate_limit: None,
        variants,
        ..SimConfig::default()
    };
    Simulator::start(config, tenant)
        .await
        .map_err(TestingError::Simulator)
}

/// A client of `sim` with its read-write key.
pub fn client_of(sim: &Simulator) -> Result<LevelClient, TestingError> {
    LevelClient::new(
        ClientConfig::new(sim.base_url()),
        ApiKey::new(sim.read_write_key()),
    )
    .map_err(TestingError::Client)
}

/// Runs the component at `path` once with `input` against a fresh seeded
/// simulator (no rate limit), under `grant` (every capability when `None`),
/// and returns the run's report and the organization as the run left it.
pub async fn run_on_simulator(
    path: &Path,
    input: serde_json::Value,
    grant: Option<Grant>,
) -> Result<(RunReport, Fixture), TestingError> {
    let runner = PluginRunner::new()?;
    let plugin = runner.load_file(path)?;
    let sim = start_simulator(Simulator::seeded()).await?;
    let client = client_of(&sim)?;
    let request = RunRequest {
        grant: grant.unwrap_or_else(|| Grant::unrestricted(&plugin.name)),
        ..RunRequest::manual(input.to_string())
    };
    let report = runner.run(&plugin, client, request).await?;
    let after = sim.tenant().to_fixture();
    sim.stop().await;
    Ok((report, after))
}

/// The host side of `level:api`, called directly (no component) against a
/// simulator: the per-run context a plugin's calls would go through, with
/// the gate of `grant`. Call the interfaces' `Host` traits on [`HostCalls::ctx`]:
///
/// ```no_run
/// # async fn demo() -> Result<(), levelhost_testing::TestingError> {
/// use levelhost_runtime::bindings::tags::Host as _;
/// use levelhost_testing::HostCalls;
/// let grant = levelhost_core::grant::Grant::unrestricted("probe");
/// let mut calls = HostCalls::start(grant, level_sim::Simulator::seeded(), false).await?;
/// let created = calls.ctx.create_tag("stale".to_owned()).await;
/// assert!(created.is_ok());
/// assert_eq!(calls.audit().len(), 1);
/// # Ok(()) }
/// ```
pub struct HostCalls {
    /// The simulator the calls go to.
    pub sim: Simulator,
    /// The run's context: call `Host` trait methods on it.
    pub ctx: LevelCtx,
}

impl HostCalls {
    /// A context under `grant` against a new simulator holding `tenant` (no
    /// rate limit), planning writes instead of sending them when `dry_run`.
    pub async fn start(
        grant: Grant,
        tenant: level_sim::Tenant,
        dry_run: bool,
    ) -> Result<Self, TestingError> {
        let sim = start_simulator(tenant).await?;
        let client = client_of(&sim)?;
        let scopes = resolve_scopes(&client, &grant).await?;
        let run = RunInfo {
            plugin: grant.plugin.as_str().into(),
            version: "0.0.0".into(),
            digest: "sha256:none".into(),
            run_id: levelhost_runtime::runner::new_run_id().into(),
        };
        let log = LogSink {
            max_bytes: usize::MAX,
            ..LogSink::default()
        };
        let ctx = LevelCtx::new(
            client,
            levelhost_runtime::level::SharedGate::new(Gate::new(grant, scopes)),
            run,
            None,
            log,
            dry_run,
        );
        Ok(Self { sim, ctx })
    }

    /// Every call audited so far.
    pub fn audit(&self) -> &[AuditRecord] {
        &self.ctx.audit_records
    }

    /// The writes planned so far (a dry run), taken out.
    pub fn take_plan(&mut self) -> Vec<PlanEntry> {
        self.ctx.take_plan()
    }
}
