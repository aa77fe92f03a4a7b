//! `levelhost state`: see and fix a plugin's durable state, audited.

use std::path::PathBuf;

use anyhow::Context as _;

use super::ExitStatus;
use super::table::Table;
use crate::config::RecordPaths;
use crate::env_vars::EnvVars;
use levelhost_runtime::audit::{AuditLog, AuditRecord};
use levelhost_serve::history::{History, StateEntry};

/// Arguments of `levelhost state`.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: StateCommand,
    /// The configuration file (for the history database).
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml", global = true)]
    pub config: PathBuf,
    /// Print JSON: `list` an array of entries, `get` one entry (`null` when the key has no value).
    #[arg(long, global = true)]
    pub json: bool,
}

/// `levelhost state` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// List a plugin's keys, their sizes and versions (values too with --json).
    List {
        /// The plugin.
        plugin: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Print one key's value.
    Get {
        /// The plugin.
        plugin: String,
        /// The key.
        key: String,
    },
    /// Set one key's value (text), whatever it held; audited.
    Set {
        /// The plugin.
        plugin: String,
        /// The key.
        key: String,
        /// The value, as text.
        value: String,
    },
    /// Delete one key; audited.
    Delete {
        /// The plugin.
        plugin: String,
        /// The key.
        key: String,
    },
    /// Delete every key of a plugin (after removing it from the config, say); audited.
    Purge {
        /// The plugin.
        plugin: String,
    },
}

/// Who is acting, for the audit: `$USER`, or `unknown`.
fn operator() -> String {
    EnvVars::var(EnvVars::USER)
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The audit record of an operator's change to a plugin's state.
fn record(plugin: &str, operation: &str, targets: Vec<String>, by: &str) -> AuditRecord {
    AuditRecord {
        time: level_api::clock::now(),
        plugin: plugin.into(),
        version: "".into(),
        digest: "".into(),
        run_id: format!("operator:{by}").into(),
        operation: operation.to_owned().into(),
        targets,
        names: Default::default(),
        allowed: true,
        reason: Some(format!("by {by} (levelhost state)")),
        upstream_status: None,
        latency_ms: 0,
        dry_run: false,
        requests: 0,
        bytes: None,
        stage: levelhost_core::audit::Stage::Done,
    }
}

async fn audit(log: &AuditLog, record: AuditRecord) -> anyhow::Result<()> {
    log.append(&record).await?;
    log.sync().await?;
    Ok(())
}

/// Deletes every key of `plugin`'s state, with its audit record; returns how many there were.
pub(crate) async fn purge(
    at: &RecordPaths,
    history: &History,
    plugin: &str,
) -> anyhow::Result<u64> {
    let log = at.open_audit().await?;
    let removed = history.purge_state(plugin).await?;
    audit(
        &log,
        record(
            plugin,
            "state-purge",
            vec!["state:*".to_owned()],
            &operator(),
        ),
    )
    .await?;
    Ok(removed)
}

/// Every entry of `plugin` starting with `prefix`, walking the pages.
async fn entries(history: &History, plugin: &str, prefix: &str) -> anyhow::Result<Vec<StateEntry>> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = history
            .state_entries(plugin, prefix, after.as_deref(), 500)
            .await?;
        let full = page.len() == 500;
        after = page.last().map(|(k, _)| k.clone());
        all.extend(page.into_iter().map(|(key, v)| StateEntry::of(key, v)));
        if !full {
            return Ok(all);
        }
    }
}

impl StateArgs {
    /// Runs the subcommand.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let at = RecordPaths::load(&self.config)?;
        let history = at.open_history().await?;
        match self.command {
            StateCommand::List { plugin, prefix } => {
                let all = entries(&history, &plugin, &prefix).await?;
                if self.json {
                    println!("{}", serde_json::to_string_pretty(&all)?);
                    return Ok(ExitStatus::Success);
                }
                if all.is_empty() {
                    println!(
                        "{plugin} holds no state{}",
                        if prefix.is_empty() {
                            String::new()
                        } else {
                            format!(" under {prefix:?}")
                        }
                    );
                    return Ok(ExitStatus::Success);
                }
                let mut table = Table::new(&["KEY", "BYTES", "VERSION"]);
                for e in &all {
                    table.row(vec![
                        e.key.clone(),
                        e.bytes.to_string(),
                        e.version.to_string(),
                    ]);
                }
                print!("{}", table.render());
                let usage = history.state_usage(&plugin).await?;
                println!(
                    "{} keys, {} bytes of keys and values",
                    usage.keys, usage.bytes
                );
            }
            StateCommand::Get { plugin, key } => {
                let found = history
                    .state_entries(&plugin, &key, None, 1)
                    .await?
                    .into_iter()
                    .find(|(k, _)| *k == key)
                    .map(|(k, v)| StateEntry::of(k, v));
                if self.json {
                    println!("{}", serde_json::to_string_pretty(&found)?);
                    return Ok(ExitStatus::Success);
                }
                let entry = found.with_context(|| format!("{plugin} has no state key {key:?}"))?;
                match &entry.text {
                    Some(text) => println!("{text}"),
                    None => println!("({} bytes, not text)", entry.bytes),
                }
            }
            StateCommand::Set { plugin, key, value } => {
                let log = at.open_audit().await?;
                let by = operator();
                let version = history
                    .set_state(&plugin, &key, value.as_bytes(), &by)
                    .await?;
                audit(
                    &log,
                    record(&plugin, "state-set", vec![format!("state:{key}")], &by),
                )
                .await?;
                eprintln!("set {plugin}'s state key {key:?} (version {version})");
            }
            StateCommand::Delete { plugin, key } => {
                let log = at.open_audit().await?;
                let by = operator();
                if !history.delete_state(&plugin, &key).await? {
                    anyhow::bail!("{plugin} has no state key {key:?}; nothing was deleted");
                }
                audit(
                    &log,
                    record(&plugin, "state-delete", vec![format!("state:{key}")], &by),
                )
                .await?;
                eprintln!("deleted {plugin}'s state key {key:?}");
            }
            StateCommand::Purge { plugin } => {
                let log = at.open_audit().await?;
                let by = operator();
                let removed = history.purge_state(&plugin).await?;
                audit(
                    &log,
                    record(&plugin, "state-purge", vec!["state:*".to_owned()], &by),
                )
                .await?;
                eprintln!("removed {removed} keys of {plugin}'s state");
            }
        }
        Ok(ExitStatus::Success)
    }
}
