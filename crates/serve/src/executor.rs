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
//!
//! A plugin with an approval policy runs in two steps under the same run
//! id: first as a dry run, whose plan is checked against the policy; a plan
//! within it is applied at once, one over it is recorded as
//! `awaiting-approval` and applied only once a person approves it
//! ([`Executor::claim_approved`]). Either way the real run is held to the
//! plan by the gate: a write the plan does not hold is denied, and the run
//! ends `diverged`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use levelhost_core::Chain;
use levelhost_runtime::audit::{AuditError, AuditLog, AuditRecord};
use levelhost_runtime::error::HostError;
use levelhost_runtime::runner::{PluginRunner, RunReport, RunRequest, new_run_id};

use crate::history::{Claim, History, HistoryError, RunRow, RunStatus, Skipped};
use crate::metrics::Metrics;
use crate::plugin::ServedPlugin;
use levelhost_runtime::level::PlanEntry;

pub use crate::history::Origin;

/// A run claimed in the history and not yet run. Hand it to [`Executor::run`].
#[derive(Debug)]
#[must_use = "a claimed run stays `running` in the history until it is run"]
pub struct Claimed {
    /// The run's id.
    pub id: String,
    origin: Origin,
    /// For an approved run: the plan it is held to, and its recorded input.
    approved: Option<(Vec<PlanEntry>, serde_json::Value)>,
    /// Whether the claim took the plugin's lease for the run already.
    leased: bool,
}

/// How a run ended, as recorded.
#[derive(Debug, Clone)]
pub struct Finished {
    /// What the run produced (for a plan that waits: the dry run's).
    pub report: RunReport,
    /// Its status in the history.
    pub status: RunStatus,
    /// For a plan over its plugin's approval policy: why it waits, and until when.
    pub waiting: Option<Waiting>,
}

/// A plan waiting for a person.
#[derive(Debug, Clone)]
pub struct Waiting {
    /// Which limits of the policy it is over.
    pub needed: Vec<String>,
    /// When it expires unapproved.
    pub expires_at: String,
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
    /// Waiting plans could not be expired.
    #[error(transparent)]
    Decide(#[from] crate::approvals::DecideError),
    /// A history call's blocking task ended without an answer.
    #[error("the history task stopped")]
    Task(#[from] tokio::task::JoinError),
    /// The process began stopping while the run waited for its plugin's lease.
    #[error("run {run} did not start: the process is stopping")]
    NotStarted {
        /// The run.
        run: String,
    },
    /// An approved run cannot be applied as approved.
    #[error("run {run}: {why}")]
    Approval {
        /// The run.
        run: String,
        /// Why.
        why: String,
    },
}

/// A claimed run, as the audit names it.
#[derive(Debug, Clone)]
struct OpenRun {
    plugin: String,
    version: String,
    digest: String,
    started: std::time::Instant,
}

/// What a run does when another run of its plugin is going, in this
/// process or in any other sharing the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Do not start: the run is recorded `skipped`, saying why (a schedule
    /// with `overlap = "skip"`).
    Skip,
    /// Wait for it to end.
    Wait,
}

/// How long a plugin's lease lasts unless renewed, by default. A process
/// killed while it runs the plugin holds it no longer than this.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a run waiting for its plugin's lease asks again.
const LEASE_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Why a claimed run is recorded skipped when another holds its plugin's lease.
pub const ANOTHER_RUN_GOING: &str =
    "another run of the plugin was going (in this or another process sharing the history)";

/// Ends a background task when dropped: a run's lease renewal stops with
/// the run, however the run's future ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Claims, runs and records runs. One per process. Every run of every entry
/// point (`levelhost run`, `apply`, schedules, events, approved plans) goes
/// through [`Executor::run`]: claim, the plugin's lease in the history, run,
/// record, audit the run's end.
pub struct Executor {
    runner: PluginRunner,
    history: Option<Arc<History>>,
    audit: Option<AuditLog>,
    /// Claimed and not yet recorded, by run id.
    open: Mutex<HashMap<String, OpenRun>>,
    metrics: Option<Arc<Metrics>>,
    /// How long a plugin's lease lasts before it is renewed.
    lease: std::time::Duration,
    /// Set once the process is stopping: a run waiting for its plugin's lease gives up.
    stopping: Option<tokio::sync::watch::Receiver<bool>>,
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
            metrics: None,
            lease: DEFAULT_LEASE,
            stopping: None,
        }
    }

    /// Holds each plugin's lease for `lease` at a time, renewed while its run goes.
    pub fn with_lease(mut self, lease: std::time::Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Gives up waiting for a lease once `stopping` turns true.
    pub fn with_stopping(mut self, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        self.stopping = Some(stopping);
        self
    }

    /// Counts every run it records in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The audit log runs and decisions are recorded in.
    pub fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    fn count(&self, plugin: &str, status: RunStatus, report: Option<&RunReport>) {
        if let Some(metrics) = &self.metrics {
            metrics.run(plugin, status.as_str(), report);
        }
    }

    /// Asks the history with `f`; `Ok(None)` when nothing is recorded.
    async fn with_history<'a, T, F>(
        &'a self,
        f: impl FnOnce(&'a History) -> F,
    ) -> Result<Option<T>, ExecuteError>
    where
        F: Future<Output = Result<T, HistoryError>> + 'a,
    {
        match &self.history {
            Some(history) => Ok(Some(f(history).await?)),
            None => Ok(None),
        }
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
        let (name, version, digest) = (&plugin.name, &plugin.version, &plugin.plugin.digest);
        let claim = self
            .with_history(|h| {
                h.claim_leased(&id, name, version, digest, &origin, delivery, self.lease)
            })
            .await?;
        let leased = match claim {
            Some((Claim::AlreadyClaimed, _)) => return Ok(None),
            Some((Claim::Started, leased)) => leased,
            None => false,
        };
        self.lock_open().insert(
            id.clone(),
            OpenRun {
                plugin: plugin.name.clone(),
                version: plugin.version.clone(),
                digest: plugin.plugin.digest.to_string(),
                started: std::time::Instant::now(),
            },
        );
        Ok(Some(Claimed {
            id,
            origin,
            approved: None,
            leased,
        }))
    }

    /// Takes an approved run of `plugin` to apply it (see
    /// [`History::start_approved`]): `None` when it is not approved, or
    /// another host or command took it first. An approved plan made by
    /// another version of the plugin is not applied: the run fails, saying so.
    pub async fn claim_approved(
        &self,
        plugin: &ServedPlugin,
        run: &str,
    ) -> Result<Option<Claimed>, ExecuteError> {
        let id = run.to_owned();
        let Some(Some(row)) = self.with_history(|h| h.start_approved(&id)).await? else {
            return Ok(None);
        };
        self.lock_open().insert(
            row.id.clone(),
            OpenRun {
                plugin: plugin.name.clone(),
                version: plugin.version.clone(),
                digest: plugin.plugin.digest.to_string(),
                started: std::time::Instant::now(),
            },
        );
        let refuse = |why: String| ExecuteError::Approval {
            run: row.id.clone(),
            why,
        };
        let checked = if row.plugin != plugin.name {
            Err(refuse(format!(
                "it is a run of {}, not {}",
                row.plugin, plugin.name
            )))
        } else if *row.digest != *plugin.plugin.digest {
            Err(refuse(format!(
                "{} changed since the plan was made ({} then, {} now); nothing was applied: run it again for a new plan",
                plugin.name, row.digest, plugin.plugin.digest
            )))
        } else {
            approved_plan(&row).map_err(refuse)
        };
        match checked {
            Ok((plan, input)) => Ok(Some(Claimed {
                id: row.id.clone(),
                origin: Origin::of(&row),
                approved: Some((plan, input)),
                leased: false,
            })),
            Err(e) => {
                let (run, error) = (row.id.clone(), e.to_string());
                self.with_history(|h| h.fail(&run, &error)).await?;
                self.lock_open().remove(&row.id);
                Err(e)
            }
        }
    }

    /// Records a claimed run that is not started after all, and why.
    pub async fn skip_claimed(&self, claimed: Claimed, why: &str) -> Result<(), ExecuteError> {
        let (id, why) = (claimed.id.clone(), why.to_owned());
        let plugin = self.lock_open().remove(&claimed.id).map(|r| r.plugin);
        self.with_history(|h| h.skip_claimed(&id, &why)).await?;
        if let Some(plugin) = plugin {
            self.count(&plugin, RunStatus::Skipped, None);
        }
        Ok(())
    }

    /// Records planned runs that were not started, in one transaction.
    pub async fn skip_all(&self, skips: &[Skipped]) -> Result<(), ExecuteError> {
        self.with_history(|h| h.record_skips(skips)).await?;
        for skip in skips {
            self.count(&skip.plugin, RunStatus::Skipped, None);
        }
        Ok(())
    }

    /// Runs a claimed run of `plugin` with `input` and records how it ended.
    /// A run that could not start is recorded as failed and returned as the error.
    ///
    /// A plugin with an approval policy (and not asked for a dry run) runs
    /// as a dry run first: a plan over the policy is recorded as
    /// `awaiting-approval` and returned as [`Finished::waiting`]; one within
    /// it is applied at once, held to the plan. An approved run (from
    /// [`Executor::claim_approved`]) runs held to its plan with its recorded
    /// input; `input` is not used.
    pub async fn run(
        &self,
        plugin: &ServedPlugin,
        claimed: Claimed,
        input: &serde_json::Value,
        options: RunOptions,
    ) -> Result<Finished, ExecuteError> {
        let id = claimed.id.clone();
        self.run_when_free(plugin, claimed, input, options, Busy::Wait)
            .await?
            .ok_or(ExecuteError::NotStarted { run: id })
    }

    /// Runs a claimed run once it holds its plugin's lease; with
    /// [`Busy::Skip`], records it skipped instead when another run holds it.
    /// `None`: it did not run (skipped, or the process is stopping).
    pub async fn run_when_free(
        &self,
        plugin: &ServedPlugin,
        claimed: Claimed,
        input: &serde_json::Value,
        options: RunOptions,
        busy: Busy,
    ) -> Result<Option<Finished>, ExecuteError> {
        let id = claimed.id.clone();
        let taken = if claimed.leased {
            Ok(true)
        } else {
            self.take_lease(&plugin.name, &id, busy).await
        };
        let taken = match taken {
            Ok(taken) => taken,
            Err(e) => {
                // Not known to be the only run of its plugin: it does not
                // start, and is recorded as failed, saying why.
                self.lock_open().remove(&id);
                self.count(&plugin.name, RunStatus::Failed, None);
                let (run, error) = (
                    id.clone(),
                    format!("cannot take the plugin's lease: {}", Chain(&e)),
                );
                if let Err(recording) = self.with_history(|h| h.fail(&run, &error)).await {
                    tracing::error!(plugin = %plugin.name, run = %id, "{}", Chain(&recording));
                }
                return Err(e);
            }
        };
        if !taken {
            if busy == Busy::Skip {
                tracing::info!(plugin = %plugin.name, run = %id, "skipped: {ANOTHER_RUN_GOING}");
                self.skip_claimed(claimed, ANOTHER_RUN_GOING).await?;
            }
            return Ok(None);
        }
        let renewing = self.renew_lease(&plugin.name, &id);
        let result = self.run_steps(plugin, &claimed, input, options).await;
        drop(renewing);
        if result.is_err() {
            // Recorded as ended, a run gives its lease back in the same
            // transaction; one whose end was not recorded gives it back here.
            self.release_lease(&plugin.name, &id).await;
        }
        self.lock_open().remove(&id);
        result.map(Some)
    }

    /// Takes the plugin's lease for run `id`: at once, or (waiting) once the
    /// run holding it ends. `false` when it is held and `busy` is
    /// [`Busy::Skip`], or the process began stopping while it waited.
    async fn take_lease(&self, plugin: &str, id: &str, busy: Busy) -> Result<bool, ExecuteError> {
        let lease = self.lease;
        let mut said = false;
        loop {
            let (name, holder) = (plugin.to_owned(), id.to_owned());
            match self
                .with_history(|h| h.take_lease(&name, &holder, lease))
                .await?
            {
                None | Some(true) => return Ok(true),
                Some(false) if busy == Busy::Skip => return Ok(false),
                Some(false) => {}
            }
            if self.stopping.as_ref().is_some_and(|s| *s.borrow()) {
                return Ok(false);
            }
            if !said {
                tracing::info!(plugin, run = %id, "waiting: another run of the plugin is going");
                said = true;
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

    /// Renews run `id`'s lease of `plugin` every quarter lease until the
    /// returned guard is dropped.
    fn renew_lease(&self, plugin: &str, id: &str) -> Option<AbortOnDrop> {
        let history = self.history.clone()?;
        let (plugin, id, lease) = (plugin.to_owned(), id.to_owned(), self.lease);
        Some(AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 4).await;
                if let Err(e) = history.renew_lease(&plugin, &id, lease).await {
                    tracing::error!("cannot renew a plugin's lease: {}", Chain(&e));
                }
            }
        })))
    }

    async fn release_lease(&self, plugin: &str, id: &str) {
        let (name, holder) = (plugin.to_owned(), id.to_owned());
        if let Err(e) = self.with_history(|h| h.release_lease(&name, &holder)).await {
            tracing::error!(plugin, "cannot give the plugin's lease back: {}", Chain(&e));
        }
    }

    async fn run_steps(
        &self,
        plugin: &ServedPlugin,
        claimed: &Claimed,
        input: &serde_json::Value,
        options: RunOptions,
    ) -> Result<Finished, ExecuteError> {
        if let Some((plan, input)) = &claimed.approved {
            return self
                .run_once(plugin, claimed, input, options, Some(plan.clone()))
                .await;
        }
        let Some(policy) = plugin.approval.as_ref().filter(|_| !options.dry_run) else {
            return self.run_once(plugin, claimed, input, options, None).await;
        };
        // The plan: a dry run under the same run id, not recorded as finished.
        let planning = RunOptions {
            dry_run: true,
            ..options.clone()
        };
        let report = match self.start(plugin, claimed, input, &planning, None).await {
            Ok(report) => report,
            Err(e) => return Err(self.record_start_failure(plugin, &claimed.id, e).await),
        };
        if report.outcome.is_err() {
            // It failed while planning: that is how the run ended.
            return self
                .record(plugin, &claimed.id, report, true, None, input)
                .await;
        }
        let needed = policy.reasons(&report.plan, report.devices_changed);
        if needed.is_empty() {
            tracing::info!(plugin = %plugin.name, run = %claimed.id, writes = report.plan.len(), "the plan is within the approval policy; applying it");
            let plan = report.plan;
            return self
                .run_once(plugin, claimed, input, options, Some(plan))
                .await;
        }
        let expires_at = level_api::clock::timestamp(
            chrono::Utc::now()
                + chrono::TimeDelta::from_std(policy.ttl()).unwrap_or(chrono::TimeDelta::MAX),
        );
        tracing::warn!(plugin = %plugin.name, run = %claimed.id, "the plan waits for approval: {}", needed.join("; "));
        let (run, saved, input, why, until) = (
            claimed.id.clone(),
            report.clone(),
            input.clone(),
            needed.clone(),
            expires_at.clone(),
        );
        self.with_history(|h| h.await_approval(&run, &saved, &input, &why, &until))
            .await?;
        self.count(&plugin.name, RunStatus::AwaitingApproval, Some(&report));
        Ok(Finished {
            report,
            status: RunStatus::AwaitingApproval,
            waiting: Some(Waiting { needed, expires_at }),
        })
    }

    /// One run, recorded: the plan it is held to, if any, is kept with it.
    async fn run_once(
        &self,
        plugin: &ServedPlugin,
        claimed: &Claimed,
        input: &serde_json::Value,
        options: RunOptions,
        held_to: Option<Vec<PlanEntry>>,
    ) -> Result<Finished, ExecuteError> {
        let dry_run = options.dry_run;
        match self
            .start(plugin, claimed, input, &options, held_to.clone())
            .await
        {
            Ok(report) => {
                let plan = if dry_run {
                    Some(report.plan.clone())
                } else {
                    held_to
                };
                self.record(plugin, &claimed.id, report, dry_run, plan, input)
                    .await
            }
            Err(e) => Err(self.record_start_failure(plugin, &claimed.id, e).await),
        }
    }

    async fn start(
        &self,
        plugin: &ServedPlugin,
        claimed: &Claimed,
        input: &serde_json::Value,
        options: &RunOptions,
        held_to: Option<Vec<PlanEntry>>,
    ) -> Result<RunReport, HostError> {
        let request = RunRequest {
            input: input.to_string(),
            trigger: claimed.origin.trigger(),
            run_id: claimed.id.clone(),
            grant: plugin.grant.clone(),
            version: plugin.version.clone(),
            dry_run: options.dry_run,
            audit: self.audit.clone(),
            echo_logs: options.echo_logs,
            tape: options.tape.clone(),
            approved: held_to,
            state: self.history.clone().map(|h| {
                let store: Arc<dyn levelhost_runtime::state::StateStore> = h;
                match &options.state {
                    Some(recorder) => recorder.wrap(store),
                    None => store,
                }
            }),
            connections: Some(plugin.connections.clone()),
            http_tape: options.http_tape.clone(),
        };
        self.runner
            .run(&plugin.plugin, plugin.client.clone(), request)
            .await
    }

    async fn record(
        &self,
        plugin: &ServedPlugin,
        id: &str,
        report: RunReport,
        dry_run: bool,
        plan: Option<Vec<PlanEntry>>,
        input: &serde_json::Value,
    ) -> Result<Finished, ExecuteError> {
        let status = RunStatus::of(&report);
        let input = input.clone();
        tracing::info!(plugin = %plugin.name, run = %id, status = status.as_str(), calls = report.api_calls, "run finished");
        if status == RunStatus::Diverged {
            tracing::warn!(plugin = %plugin.name, run = %id, "the run diverged from its approved plan: {}", report.divergence.join("; "));
        }
        let not_kept = self
            .with_history(|h| h.finish(id, &report, dry_run, plan.as_deref(), Some(&input)))
            .await?
            .flatten();
        let mut report = report;
        let mut status = status;
        if let Some(why) = not_kept {
            // Its state changed under it: recorded failed, its state untouched.
            tracing::warn!(plugin = %plugin.name, run = %id, "{why}");
            report.outcome = Err(levelhost_runtime::runner::RunFailure::StateNotKept(why));
            status = RunStatus::Failed;
        }
        self.count(&plugin.name, status, Some(&report));
        Ok(Finished {
            report,
            status,
            waiting: None,
        })
    }

    async fn record_start_failure(
        &self,
        plugin: &ServedPlugin,
        id: &str,
        e: HostError,
    ) -> ExecuteError {
        tracing::warn!(plugin = %plugin.name, run = %id, "run could not start: {}", Chain(&e));
        let (run, error) = (id.to_owned(), Chain(&e).to_string());
        self.count(&plugin.name, RunStatus::Failed, None);
        match self.with_history(|h| h.fail(&run, &error)).await {
            Ok(_) => e.into(),
            Err(recording) => recording,
        }
    }

    /// Marks waiting plans past their expiry as expired, each with an audit
    /// record; returns how many.
    pub async fn expire_overdue(&self) -> Result<usize, ExecuteError> {
        let Some(history) = &self.history else {
            return Ok(0);
        };
        let expired = crate::approvals::expire_overdue(history, self.audit.as_ref()).await?;
        for (_, plugin) in &expired {
            self.count(plugin, RunStatus::Expired, None);
        }
        Ok(expired.len())
    }

    /// Records every claimed run not yet recorded as interrupted (call it
    /// once their tasks are stopped), with the run-end audit record each
    /// would have written, and returns how many there were.
    pub async fn interrupt_open(&self, why: &str) -> Result<usize, ExecuteError> {
        let cut: Vec<(String, OpenRun)> = self.lock_open().drain().collect();
        // Their leases go back now, not when they lapse.
        for (id, run) in &cut {
            self.release_lease(&run.plugin, id).await;
        }
        if let Some(audit) = &self.audit {
            for (id, run) in &cut {
                audit.append(&run_end(id, run, why)).await?;
            }
            audit.sync().await?;
        }
        let count = cut.len();
        for (_, run) in &cut {
            self.count(&run.plugin, RunStatus::Interrupted, None);
        }
        if let Some(history) = &self.history {
            for (id, _) in &cut {
                history.interrupt(id, why).await?;
            }
        }
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

/// The plan and input an approved run is applied with.
fn approved_plan(row: &RunRow) -> Result<(Vec<PlanEntry>, serde_json::Value), String> {
    let plan = row.plan.clone().ok_or("the history holds no plan for it")?;
    let plan: Vec<PlanEntry> = serde_json::from_value(plan)
        .map_err(|e| format!("its recorded plan cannot be read: {e}"))?;
    let input = row
        .input
        .clone()
        .ok_or("the history holds no input for it")?;
    Ok((plan, input))
}

impl Origin {
    /// What started a recorded run.
    pub fn of(row: &RunRow) -> Self {
        match (
            row.trigger.as_str(),
            row.schedule.clone(),
            row.planned_at.clone(),
            row.event_id.clone(),
        ) {
            ("schedule", Some(schedule), Some(planned), _) => {
                Origin::Schedule { schedule, planned }
            }
            ("event", _, _, Some(event_id)) => Origin::Event {
                event_id,
                event_type: row.event_type.clone().unwrap_or_default(),
            },
            _ => Origin::Manual,
        }
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
    /// Record what the run reads of its plugin's state (`levelhost run --record`).
    pub state: Option<levelhost_runtime::state::StateRecorder>,
    /// Record the run's requests to other systems on this tape (`levelhost run --record`).
    pub http_tape: Option<levelhost_runtime::outbound::HttpTape>,
}

/// The audit record that ends a run cut off before it could write its own.
fn run_end(id: &str, run: &OpenRun, why: &str) -> AuditRecord {
    AuditRecord {
        time: level_api::clock::now(),
        plugin: run.plugin.as_str().into(),
        version: run.version.as_str().into(),
        digest: run.digest.as_str().into(),
        run_id: id.into(),
        operation: "run".into(),
        targets: Vec::new(),
        names: Default::default(),
        allowed: true,
        reason: Some(format!("interrupted: {why}")),
        upstream_status: None,
        latency_ms: u64::try_from(run.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        dry_run: false,
        requests: 0,
        bytes: None,
        stage: Default::default(),
    }
}
