//! The one run lifecycle: claim -> run -> record, for every run levelhost
//! makes, whether started by hand (`levelhost run`), by a schedule or by a
//! Level event.
//!
//! A run is claimed in the history before it starts, so each (schedule,
//! planned time) and each event id starts at most once, even across a
//! crash; it then runs, and how it ended is recorded. The executor knows
//! every run it has claimed and not yet recorded, so shutdown can record
//! the ones it cuts off. History calls run on tokio's blocking pool, never
//! on an async worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use levelhost_core::Chain;
use levelhost_runtime::audit::{AuditError, AuditLog, AuditRecord};
use levelhost_runtime::error::HostError;
use levelhost_runtime::runner::{PluginRunner, RunReport, RunRequest, Trigger, new_run_id};

use crate::history::{Claim, History, HistoryError, RunStatus};
use crate::plugin::ServedPlugin;

/// What started a run: the one description of it, for the history and for the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// By hand.
    Manual,
    /// A schedule, at its planned time.
    Schedule {
        /// The schedule's key in the history (its index and pattern).
        schedule: String,
        /// The planned time (ISO-8601 UTC).
        planned: String,
    },
    /// A Level event.
    Event {
        /// The event's id: one run per id.
        event_id: String,
        /// The event type, such as `alert_active`.
        event_type: String,
    },
}

impl Origin {
    /// `manual`, `schedule` or `event`, as recorded.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Manual => "manual",
            Origin::Schedule { .. } => "schedule",
            Origin::Event { .. } => "event",
        }
    }

    /// What the plugin is told started it.
    pub fn trigger(&self) -> Trigger {
        match self {
            Origin::Manual => Trigger::Manual,
            Origin::Schedule { planned, .. } => Trigger::Schedule {
                planned: planned.clone(),
            },
            Origin::Event { event_type, .. } => Trigger::Event {
                event_type: event_type.clone(),
            },
        }
    }
}

/// A run claimed in the history and not yet run. Hand it to [`Executor::run`].
#[derive(Debug)]
#[must_use = "a claimed run stays `running` in the history until it is run"]
pub struct Claimed {
    /// The run's id.
    pub id: String,
    origin: Origin,
}

/// Why a run could not be claimed, run or recorded.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// The history could not be written.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The run could not start (bad input, a scope Level does not have, ...).
    #[error(transparent)]
    Host(#[from] HostError),
    /// The audit log could not be written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A history call's blocking task ended without an answer.
    #[error("the history task stopped")]
    Task(#[from] tokio::task::JoinError),
}

/// A claimed run, as the audit names it.
#[derive(Debug, Clone)]
struct OpenRun {
    plugin: String,
    version: String,
    digest: String,
    started: std::time::Instant,
}

/// Claims, runs and records runs. One per process.
pub struct Executor {
    runner: PluginRunner,
    history: Option<Arc<History>>,
    audit: Option<AuditLog>,
    /// Claimed and not yet recorded, by run id.
    open: Mutex<HashMap<String, OpenRun>>,
}

impl Executor {
    /// An executor running plugins with `runner`, recording runs in
    /// `history` (none: runs are not recorded, as for dry runs) and host
    /// calls in `audit`.
    pub fn new(
        runner: PluginRunner,
        history: Option<Arc<History>>,
        audit: Option<AuditLog>,
    ) -> Self {
        Self {
            runner,
            history,
            audit,
            open: Mutex::default(),
        }
    }

    /// Runs with `f` on the blocking pool; `Ok(None)` when nothing is recorded.
    async fn with_history<T: Send + 'static>(
        &self,
        f: impl FnOnce(&History) -> Result<T, HistoryError> + Send + 'static,
    ) -> Result<Option<T>, ExecuteError> {
        let Some(history) = self.history.clone() else {
            return Ok(None);
        };
        Ok(Some(
            tokio::task::spawn_blocking(move || f(&history)).await??,
        ))
    }

    /// Claims a run of `plugin` for `origin`. `None` when its (schedule,
    /// planned time) or its event already started a run.
    pub async fn claim(
        &self,
        plugin: &ServedPlugin,
        origin: Origin,
    ) -> Result<Option<Claimed>, ExecuteError> {
        self.claim_with(plugin, origin, false).await
    }

    /// Claims the run of a webhook delivery and records the delivery
    /// (`accepted` or `duplicate`) in the same transaction.
    pub async fn claim_delivery(
        &self,
        plugin: &ServedPlugin,
        origin: Origin,
    ) -> Result<Option<Claimed>, ExecuteError> {
        self.claim_with(plugin, origin, true).await
    }

    async fn claim_with(
        &self,
        plugin: &ServedPlugin,
        origin: Origin,
        delivery: bool,
    ) -> Result<Option<Claimed>, ExecuteError> {
        let id = new_run_id();
        let (run, name, version, digest, recorded) = (
            id.clone(),
            plugin.name.clone(),
            plugin.version.clone(),
            plugin.plugin.digest.clone(),
            origin.clone(),
        );
        let claim = self
            .with_history(move |h| {
                if delivery {
                    h.claim_delivery(&run, &name, &version, &digest, &recorded)
                } else {
                    h.claim(&run, &name, &version, &digest, &recorded)
                }
            })
            .await?;
        if claim == Some(Claim::AlreadyClaimed) {
            return Ok(None);
        }
        self.lock_open().insert(
            id.clone(),
            OpenRun {
                plugin: plugin.name.clone(),
                version: plugin.version.clone(),
                digest: plugin.plugin.digest.clone(),
                started: std::time::Instant::now(),
            },
        );
        Ok(Some(Claimed { id, origin }))
    }

    /// Records a planned run that was not started, and why.
    pub async fn skip(
        &self,
        plugin: &ServedPlugin,
        origin: Origin,
        why: &str,
    ) -> Result<(), ExecuteError> {
        let (id, name, why) = (new_run_id(), plugin.name.clone(), why.to_owned());
        self.with_history(move |h| h.record_skip(&id, &name, &origin, &why))
            .await?;
        Ok(())
    }

    /// Runs a claimed run of `plugin` with `input` and records how it ended.
    /// A run that could not start is recorded as failed and returned as the error.
    pub async fn run(
        &self,
        plugin: &ServedPlugin,
        claimed: Claimed,
        input: &serde_json::Value,
        options: RunOptions,
    ) -> Result<RunReport, ExecuteError> {
        let id = claimed.id.clone();
        let request = RunRequest {
            input: input.to_string(),
            trigger: claimed.origin.trigger(),
            run_id: id.clone(),
            grant: plugin.grant.clone(),
            version: plugin.version.clone(),
            dry_run: options.dry_run,
            audit: self.audit.clone(),
            echo_logs: options.echo_logs,
            tape: options.tape,
        };
        let result = self
            .runner
            .run(&plugin.plugin, plugin.client.clone(), request)
            .await;
        let recorded = match &result {
            Ok(report) => {
                let status = RunStatus::of(report);
                tracing::info!(plugin = %plugin.name, run = %id, status = status.as_str(), calls = report.api_calls, "run finished");
                let (run, report) = (id.clone(), report.clone());
                let dry_run = options.dry_run;
                self.with_history(move |h| h.finish(&run, &report, dry_run))
                    .await
            }
            Err(e) => {
                tracing::warn!(plugin = %plugin.name, run = %id, "run could not start: {}", Chain(e));
                let (run, error) = (id.clone(), Chain(e).to_string());
                self.with_history(move |h| h.fail(&run, &error)).await
            }
        };
        self.lock_open().remove(&id);
        recorded?;
        Ok(result?)
    }

    /// Records every claimed run not yet recorded as interrupted (call it
    /// once their tasks are stopped), with the run-end audit record each
    /// would have written, and returns how many there were.
    pub async fn interrupt_open(&self, why: &str) -> Result<usize, ExecuteError> {
        let cut: Vec<(String, OpenRun)> = self.lock_open().drain().collect();
        if let Some(audit) = &self.audit {
            for (id, run) in &cut {
                audit.append(&run_end(id, run, why))?;
            }
            let audit = audit.clone();
            tokio::task::spawn_blocking(move || audit.sync()).await??;
        }
        let count = cut.len();
        let why = why.to_owned();
        self.with_history(move |h| {
            for (id, _) in &cut {
                h.interrupt(id, &why)?;
            }
            Ok(())
        })
        .await?;
        Ok(count)
    }

    /// How many claimed runs are not yet recorded.
    pub fn open_runs(&self) -> usize {
        self.lock_open().len()
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashMap<String, OpenRun>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How to run a claimed run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Plan writes instead of sending them.
    pub dry_run: bool,
    /// Echo the plugin's log lines to the host's log as they arrive.
    pub echo_logs: bool,
    /// Record the guest's clocks and random numbers on this tape (`levelhost run --record`).
    pub tape: Option<levelhost_runtime::tape::Tape>,
}

/// The audit record that ends a run cut off before it could write its own.
fn run_end(id: &str, run: &OpenRun, why: &str) -> AuditRecord {
    AuditRecord {
        time: level_api::clock::now(),
        plugin: run.plugin.clone(),
        version: run.version.clone(),
        digest: run.digest.clone(),
        run_id: id.to_owned(),
        operation: "run".to_owned(),
        targets: Vec::new(),
        allowed: true,
        reason: Some(format!("interrupted: {why}")),
        upstream_status: None,
        latency_ms: u64::try_from(run.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        dry_run: false,
        requests: 0,
        stage: Default::default(),
    }
}
