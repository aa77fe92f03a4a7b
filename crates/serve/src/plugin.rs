//! What `serve` is given to run: each plugin loaded and ready, with its
//! grant, its Level client, its schedules and its events, and the service's
//! own options. The `levelhost` binary builds them from `levelhost.toml`.

use std::path::PathBuf;
use std::time::Duration;

use level_api::LevelClient;
use levelhost_core::grant::Grant;
use levelhost_runtime::engine::LoadedPlugin;

/// What to do when a schedule fires while the plugin's previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Do not start; record the planned run as skipped.
    Skip,
    /// Start as soon as the previous run ends.
    Queue,
}

/// What to do, on start-up, with planned times missed while the host was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Nothing: the next planned time is the next run.
    Skip,
    /// Run once, for the latest missed time, if it is within the window.
    Once,
}

/// A cron schedule of a plugin.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The pattern as written (5 fields, or 6 with seconds first).
    pub pattern: String,
    /// The parsed pattern.
    pub cron: croner::Cron,
    /// The time zone the pattern is read in.
    pub timezone: chrono_tz::Tz,
    /// The run's input; the plugin's input when absent.
    pub input: Option<serde_json::Value>,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Catch-up policy.
    pub catch_up: CatchUp,
    /// How far back catch-up looks.
    pub catch_up_window: Duration,
    /// Up to this much random delay before each run.
    pub jitter: Duration,
}

impl Schedule {
    /// The first time the schedule fires strictly after `after`, read in its
    /// time zone; `None` when no date matches it. The one way levelhost
    /// computes a next run: the scheduler walks with it, and `status` and the
    /// console show it.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.timezone), false)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

/// One plugin, loaded and ready for `serve` to run.
#[derive(Clone)]
pub struct ServedPlugin {
    /// The name in the config.
    pub name: String,
    /// The manifest's version, for the history and the audit log.
    pub version: String,
    /// The compiled, linked component.
    pub plugin: LoadedPlugin,
    /// The client of the plugin's key (shared with every plugin on that key, and so its rate budget).
    pub client: LevelClient,
    /// The key's name in the config (for metrics; never the key itself).
    pub key: String,
    /// Who vetted its package, or that it is an unsigned local component, for the console.
    pub vetting: String,
    /// What it may do.
    pub grant: Grant,
    /// Its default input.
    pub input: serde_json::Value,
    /// Its schedules.
    pub schedules: Vec<Schedule>,
    /// Its Level events, if it takes them.
    pub events: Option<Events>,
    /// When its plans wait for a person; none: it runs straight away.
    pub approval: Option<levelhost_core::plan::ApprovalPolicy>,
    /// The host's connections to other systems (its grant says which it may call).
    pub connections: std::sync::Arc<levelhost_runtime::outbound::Connections>,
}

/// How a plugin takes Level's webhook deliveries.
#[derive(Clone)]
pub struct Events {
    /// The webhook's secret, read from its source.
    pub secret: String,
    /// Event types it runs on; all when absent.
    pub types: Option<Vec<String>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("secret", &"<redacted>")
            .field("types", &self.types)
            .finish()
    }
}

/// Where and how `serve` listens, records and stops.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where the events endpoint and `/healthz` listen.
    pub addr: String,
    /// The run history database (SQLite); kept for files beside it.
    pub database: PathBuf,
    /// Where the history is: that SQLite file, or a PostgreSQL database
    /// replicas share.
    pub history: crate::history::HistoryLocation,
    /// In a shared history: how long a replica may be silent before a
    /// survivor marks its runs as interrupted.
    pub lease: Duration,
    /// The audit log (a file, or the database replicas share).
    pub audit: levelhost_runtime::audit::AuditLog,
    /// How long shutdown waits for running plugins.
    pub shutdown_grace: Duration,
    /// Largest webhook body accepted.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's headers, or its body.
    pub read_timeout: Duration,
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// The operator console and `/metrics`, on their own address; none: off.
    pub console: Option<crate::console::ConsoleOptions>,
    /// The gateway for scripts and tools, on its own address; none: off.
    pub gateway: Option<GatewayOptions>,
}

/// The gateway as part of `serve`.
#[derive(Clone)]
pub struct GatewayOptions {
    /// The gateway and its clients (a reload replaces them).
    pub gateway: std::sync::Arc<levelhost_gateway::Gateway>,
    /// Where it listens.
    pub addr: String,
    /// HTTPS, when configured.
    pub tls: Option<levelhost_gateway::tls::Certificates>,
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}
