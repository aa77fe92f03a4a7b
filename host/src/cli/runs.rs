//! `levelhost runs`, `levelhost logs` and `levelhost status`.

use std::path::PathBuf;

use chrono::Utc;

use super::ExitStatus;
use super::table::Table;
use crate::config::{HostConfig, RecordPaths};
use crate::env_vars::EnvVars;
use std::str::FromStr as _;

use levelhost_serve::history::RunStatus;

/// Arguments of `levelhost runs`.
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// `show ID` prints one run in full.
    #[command(subcommand)]
    pub show: Option<RunsCommand>,
    /// The configuration file (for the history database's path).
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml", global = true)]
    pub config: PathBuf,
    /// Only this plugin's runs.
    #[arg(long)]
    pub plugin: Option<String>,
    /// Only runs with this status: running, ok, failed, timed-out, limit-exceeded, denied, interrupted, skipped,
    /// awaiting-approval, approved, rejected, expired, diverged.
    #[arg(long, value_parser = RunStatus::from_str)]
    pub status: Option<RunStatus>,
    /// At most this many runs, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print the runs as a JSON array of run objects (the shape `runs show` prints).
    #[arg(long)]
    pub json: bool,
}

/// `levelhost runs show`.
#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// Print one run in full, as JSON.
    Show {
        /// The run id.
        id: String,
    },
}

impl RunsArgs {
    /// Lists runs, or shows one.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let records_at = RecordPaths::load(&self.config)?;
        let history = records_at.open_history().await?;
        if let Some(RunsCommand::Show { id }) = self.show {
            let run = history.get(&id).await?.ok_or_else(|| {
                anyhow::anyhow!("no run {id} in {}", records_at.database.display())
            })?;
            println!("{}", serde_json::to_string_pretty(&run)?);
            return Ok(ExitStatus::Success);
        }
        let runs = history
            .list(self.plugin.as_deref(), self.status, self.limit)
            .await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&runs)?);
            return Ok(ExitStatus::Success);
        }
        let shared = runs.iter().any(|r| r.replica.is_some());
        let mut table = Table::new(if shared {
            &[
                "RUN", "PLUGIN", "STATUS", "STARTED", "ORIGIN", "CALLS", "WRITES", "REPLICA",
                "NOTE",
            ]
        } else {
            &[
                "RUN", "PLUGIN", "STATUS", "STARTED", "ORIGIN", "CALLS", "WRITES", "NOTE",
            ]
        });
        for r in &runs {
            let origin = match r.trigger.as_str() {
                "schedule" => format!("schedule {}", r.planned_at.as_deref().unwrap_or("?")),
                "event" => format!("event {}", r.event_type.as_deref().unwrap_or("?")),
                other => other.to_owned(),
            };
            let mut note = if r.dry_run { "(dry run) " } else { "" }.to_owned();
            note.push_str(r.error.as_deref().unwrap_or_default());
            let mut row = vec![
                r.id.clone(),
                r.plugin.clone(),
                r.status.clone(),
                r.started_at.clone(),
                origin,
                r.api_calls.to_string(),
                r.writes.to_string(),
            ];
            if shared {
                row.push(r.replica.clone().unwrap_or_else(|| "-".to_owned()));
            }
            row.push(note);
            table.row(row);
        }
        print!("{}", table.render());
        eprintln!("{} runs", runs.len());
        Ok(ExitStatus::Success)
    }
}

/// Arguments of `levelhost logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// One run's logs; without it, the latest runs' (of `--plugin`, if given).
    pub run: Option<String>,
    /// The configuration file (for the history database's path).
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
    /// Only this plugin's runs.
    #[arg(long)]
    pub plugin: Option<String>,
    /// The logs of this many latest runs, oldest first.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Keep printing the logs of runs as they end (of a running `serve`), until Ctrl-C.
    #[arg(long, short = 'f', conflicts_with = "run")]
    pub follow: bool,
}

impl LogsArgs {
    /// Prints what runs logged: their log lines, stdout and stderr.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let records_at = RecordPaths::load(&self.config)?;
        let history = records_at.open_history().await?;
        if let Some(id) = &self.run {
            let run = history.get(id).await?.ok_or_else(|| {
                anyhow::anyhow!("no run {id} in {}", records_at.database.display())
            })?;
            print_logs(&run);
            return Ok(ExitStatus::Success);
        }
        let mut shown = std::collections::HashSet::new();
        loop {
            let mut runs = history
                .list(self.plugin.as_deref(), None, self.limit.max(1))
                .await?;
            runs.reverse();
            for run in runs {
                if run.status != "running" && shown.insert(run.id.clone()) {
                    print_logs(&run);
                }
            }
            if !self.follow {
                return Ok(ExitStatus::Success);
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

/// One run's logs, each line prefixed with the run and the plugin.
fn print_logs(run: &levelhost_serve::history::RunRow) {
    let prefix = format!("{} {}", run.id, run.plugin);
    let Some(logs) = &run.logs else {
        println!("{prefix} ({}, logged nothing)", run.status);
        return;
    };
    for line in logs["log"].as_array().into_iter().flatten() {
        let fields: String = line["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|kv| {
                Some(format!(
                    " {}={}",
                    kv.get(0)?.as_str()?,
                    kv.get(1)?.as_str()?
                ))
            })
            .collect();
        println!(
            "{prefix} {:<5} {}{fields}",
            line["level"].as_str().unwrap_or("info"),
            line["message"].as_str().unwrap_or_default()
        );
    }
    for stream in ["stdout", "stderr"] {
        for text in logs[stream].as_str().unwrap_or_default().lines() {
            println!("{prefix} {stream} {text}");
        }
    }
}

/// Arguments of `levelhost status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The configuration file.
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
    /// Print a JSON array: per plugin `plugin`, `next_run`, `last_run`, `last_status`,
    /// `last_replica` (null when none) and `takes_events`.
    #[arg(long)]
    pub json: bool,
}

/// One plugin's line of `levelhost status`, and its `--json` shape.
#[derive(Debug, serde::Serialize)]
struct PluginStatus {
    plugin: String,
    next_run: Option<String>,
    last_run: Option<String>,
    last_status: Option<String>,
    /// In a history replicas share, the replica that made the last run.
    last_replica: Option<String>,
    takes_events: bool,
}

/// The gateway's clients: each one's last request on record (from the audit,
/// which every gateway request writes, whichever process served it) and its
/// denials.
async fn print_clients(config: &HostConfig) -> anyhow::Result<()> {
    let audit = config.records.open_audit().await?;
    let (records, _) = audit
        .read(&levelhost_runtime::audit::AuditFilter::default())
        .await?;
    let mut table = Table::new(&["CLIENT", "LAST USE", "DENIED", "CLIENT KEY"]);
    for client in config.clients.values() {
        let principal = format!("client:{}", client.name);
        let own: Vec<_> = records.iter().filter(|r| *r.plugin == *principal).collect();
        let last = own.iter().map(|r| r.time.as_str()).max();
        let denied = own.iter().filter(|r| !r.allowed).count();
        table.row(vec![
            client.name.clone(),
            last.unwrap_or("never").to_owned(),
            denied.to_string(),
            match &client.client_key {
                None => "none yet".to_owned(),
                Some(_) => "set".to_owned(),
            },
        ]);
    }
    println!();
    print!("{}", table.render());
    Ok(())
}

impl StatusArgs {
    /// Shows each plugin's next run, last run and last status.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let config = HostConfig::load(&self.config)?;
        let history = config.records.open_history().await?;
        let mut statuses = Vec::new();
        for plugin in config.plugins.values() {
            let next = plugin
                .schedules
                .iter()
                .filter_map(|s| s.next_after(Utc::now()))
                .min();
            let last = history.list(Some(&plugin.name), None, 1).await?;
            let last = last.first();
            statuses.push(PluginStatus {
                plugin: plugin.name.clone(),
                next_run: next.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                last_run: last.map(|r| r.started_at.clone()),
                last_status: last.map(|r| r.status.clone()),
                last_replica: last.and_then(|r| r.replica.clone()),
                takes_events: plugin.events.is_some(),
            });
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&statuses)?);
            return Ok(ExitStatus::Success);
        }
        let shared = history.replica().is_some();
        let mut headers = vec!["PLUGIN", "NEXT RUN", "LAST RUN", "LAST STATUS", "EVENTS"];
        if shared {
            headers.push("LAST REPLICA");
        }
        let mut table = Table::new(&headers);
        for s in statuses {
            let mut row = vec![
                s.plugin,
                s.next_run.unwrap_or_else(|| "-".to_owned()),
                s.last_run.unwrap_or_else(|| "-".to_owned()),
                s.last_status.unwrap_or_else(|| "never ran".to_owned()),
                if s.takes_events { "yes" } else { "no" }.to_owned(),
            ];
            if shared {
                row.push(s.last_replica.unwrap_or_else(|| "-".to_owned()));
            }
            table.row(row);
        }
        print!("{}", table.render());
        if !config.clients.is_empty() {
            print_clients(&config).await?;
        }
        let replicas = history.replicas().await?;
        if !replicas.is_empty() {
            let mut table = Table::new(&["REPLICA", "STARTED", "LAST HEARTBEAT", "RUNNING"]);
            for r in replicas {
                table.row(vec![
                    r.id,
                    r.started_at,
                    format!("{} ({:.0}s ago)", r.heartbeat_at, r.silent_secs),
                    r.running.to_string(),
                ]);
            }
            println!();
            print!("{}", table.render());
        }
        Ok(ExitStatus::Success)
    }
}
