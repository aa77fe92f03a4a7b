//! `levelhost approvals`, `approve`, `reject` and `apply`: the person's side
//! of plans that wait for approval. Deciding needs the history and the
//! audit log only, no Level key; applying needs the plugin and its key.

use std::path::PathBuf;

use anyhow::Context as _;

use super::ExitStatus;
use crate::config::{HostConfig, RecordPaths};
use crate::env_vars::EnvVars;
use levelhost_core::plan::PlanEntry;
use levelhost_runtime::audit::AuditLog;
use levelhost_serve::approvals::{Decision, decide};
use levelhost_serve::history::{History, RunRow, RunStatus};
use levelhost_serve::{Executor, RunOptions};

/// Arguments of `levelhost approvals`.
#[derive(Debug, clap::Args)]
pub struct ApprovalsArgs {
    /// The configuration file (for the history and audit log's paths).
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
    /// Print a JSON array, one object per waiting run: `run`, `plugin`,
    /// `version`, `started_at`, `expires_at`, `needed` (why it waits),
    /// `writes`, `devices_changed`, `plan` (the planned writes) and
    /// `plan_in_words`.
    #[arg(long)]
    pub json: bool,
}

/// One waiting run, as `levelhost approvals --json` prints it.
#[derive(Debug, serde::Serialize)]
struct WaitingRun {
    run: String,
    plugin: String,
    version: String,
    started_at: String,
    expires_at: String,
    needed: Vec<String>,
    writes: i64,
    devices_changed: i64,
    plan: Vec<PlanEntry>,
    plan_in_words: Vec<String>,
}

impl WaitingRun {
    fn of(row: RunRow) -> Self {
        let plan: Vec<PlanEntry> = row
            .plan
            .and_then(|p| serde_json::from_value(p).ok())
            .unwrap_or_default();
        let (needed, expires_at) = row
            .approval
            .map(|a| (a.needed, a.expires_at))
            .unwrap_or_default();
        Self {
            run: row.id,
            plugin: row.plugin,
            version: row.version,
            started_at: row.started_at,
            expires_at,
            needed,
            writes: plan.len() as i64,
            devices_changed: row.devices_changed,
            plan_in_words: levelhost_core::plan::in_words(&plan),
            plan,
        }
    }
}

/// The history and audit log a config names.
async fn records(config: &std::path::Path) -> anyhow::Result<(History, AuditLog)> {
    let at = RecordPaths::load(config)?;
    Ok((at.open_history().await?, at.open_audit().await?))
}

impl ApprovalsArgs {
    /// Lists waiting plans (first recording those past their time as expired).
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let (history, audit) = records(&self.config).await?;
        levelhost_serve::approvals::expire_overdue(&history, Some(&audit)).await?;
        let mut waiting: Vec<WaitingRun> = history
            .list(None, Some(RunStatus::AwaitingApproval), 1000)
            .await?
            .into_iter()
            .map(WaitingRun::of)
            .collect();
        waiting.reverse();
        if self.json {
            println!("{}", serde_json::to_string_pretty(&waiting)?);
            return Ok(ExitStatus::Success);
        }
        if waiting.is_empty() {
            eprintln!("no plan waits for approval");
        }
        for w in &waiting {
            println!(
                "{}  {} {}  planned {}, expires {}",
                w.run, w.plugin, w.version, w.started_at, w.expires_at
            );
            println!("  waits because: {}", w.needed.join("; "));
            for line in &w.plan_in_words {
                println!("  {line}");
            }
        }
        Ok(ExitStatus::Success)
    }
}

/// Arguments of `levelhost approve`.
#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// The run whose plan to approve.
    pub run: String,
    /// Why, for the history and the audit log.
    #[arg(long)]
    pub reason: Option<String>,
    /// Who approves (default: the user running levelhost).
    #[arg(long)]
    pub by: Option<String>,
    /// The configuration file.
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
}

/// Arguments of `levelhost reject`.
#[derive(Debug, clap::Args)]
pub struct RejectArgs {
    /// The run whose plan to reject.
    pub run: String,
    /// Why, for the history and the audit log.
    #[arg(long)]
    pub reason: String,
    /// Who rejects (default: the user running levelhost).
    #[arg(long)]
    pub by: Option<String>,
    /// The configuration file.
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
}

/// Records a decision on run `run` by `by` (default: `$USER`); returns who decided.
async fn record_decision(
    config: &std::path::Path,
    run: &str,
    decision: Decision,
    by: Option<String>,
    reason: Option<&str>,
) -> anyhow::Result<String> {
    let (history, audit) = records(config).await?;
    let by = by
        .or_else(|| EnvVars::var(EnvVars::USER))
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    decide(&history, &audit, run, decision, &by, reason).await?;
    Ok(by)
}

impl DecideArgs {
    /// Approves the plan.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let by = record_decision(
            &self.config,
            &self.run,
            Decision::Approve,
            self.by,
            self.reason.as_deref(),
        )
        .await?;
        eprintln!(
            "approved run {run} (by {by}). A running `levelhost serve` applies it within seconds; \
             without one, apply it with `levelhost apply {run}`.",
            run = self.run
        );
        Ok(ExitStatus::Success)
    }
}

impl RejectArgs {
    /// Rejects the plan.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let by = record_decision(
            &self.config,
            &self.run,
            Decision::Reject,
            self.by,
            Some(&self.reason),
        )
        .await?;
        eprintln!(
            "rejected run {} (by {by}); nothing of its plan is applied",
            self.run
        );
        Ok(ExitStatus::Success)
    }
}

/// Arguments of `levelhost apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The approved run to apply.
    pub run: String,
    /// The configuration file.
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
}

impl ApplyArgs {
    /// Applies an approved plan, held to it, and prints the run's output.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let config = HostConfig::load(&self.config)?;
        let history = config.records.open_history().await?;
        let row = history.get(&self.run).await?.with_context(|| {
            format!("no run {} in {}", self.run, config.serve.database.display())
        })?;
        if row.status != RunStatus::Approved.as_str() {
            anyhow::bail!(
                "run {} is {}, not approved; only an approved plan is applied, and only once",
                self.run,
                row.status
            );
        }
        let plugin = config.plugin(&row.plugin)?;
        let runner = super::runner()?;
        let client = crate::loader::client(&config, &plugin.key)?;
        let served = super::run::served(&runner, &config, plugin, client)?;
        let executor: Executor = super::run::executor(runner, &config).await?;
        let mut stop = super::signal::listen();
        let claimed = executor
            .claim_approved(&served, &self.run)
            .await?
            .with_context(|| format!("run {} was applied by another process first", self.run))?;
        let options = RunOptions {
            echo_logs: true,
            ..RunOptions::default()
        };
        tokio::select! {
            finished = executor.run(&served, claimed, &serde_json::Value::Null, options) => {
                Ok(super::run::print_finished(&finished?, false))
            }
            signal = stop.stopped() => {
                executor
                    .interrupt_open(&format!("levelhost apply was stopped by {signal}"))
                    .await?;
                eprintln!("error: run {} was stopped by {signal}; recorded as interrupted", self.run);
                Ok(ExitStatus::Stopped(signal))
            }
        }
    }
}
