//! `levelhost check`.

use std::path::PathBuf;

use anyhow::Context as _;

use super::ExitStatus;
use crate::config::{HostConfig, PluginSource};
use crate::env_vars::EnvVars;
use levelhost_runtime::error::HostError;
use levelhost_runtime::runner::{PluginRunner, resolve_scopes};

/// Arguments of `levelhost check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
    /// Do not ask Level to resolve group scopes.
    #[arg(long)]
    pub offline: bool,
}

impl CheckArgs {
    /// Checks the whole configuration and prints each plugin's effective grant.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let config = HostConfig::load(&self.config)?;
        config
            .check_keys()
            .with_context(|| self.config.display().to_string())?;
        let runner = super::runner()?;
        println!(
            "{}: {} keys, {} plugins",
            self.config.display(),
            config.keys.len(),
            config.plugins.len()
        );
        for plugin in config.plugins.values() {
            let (loaded, vetting) = crate::loader::load_installed(&runner, plugin, &config.trust)?;
            if !self.offline && plugin.grant.scopes.groups.is_some() {
                let client = crate::loader::client(&config, &plugin.key)?;
                if let Err(e) = resolve_scopes(&client, &plugin.grant).await {
                    return Err(match e {
                        HostError::Scope { error, .. } => {
                            plugin.scope_error(&error, &self.config).into()
                        }
                        other => other.into(),
                    });
                }
            }
            println!();
            println!(
                "{} {} ({}), key {}, component {}",
                plugin.name,
                plugin.manifest.version,
                plugin.manifest.description,
                plugin.key,
                loaded.digest
            );
            match &plugin.source {
                PluginSource::Package { dir, pinned } => println!(
                    "  package {}, pinned to {}, {vetting}",
                    dir.display(),
                    pinned.as_deref().unwrap_or("no digest")
                ),
                PluginSource::Component(path) => {
                    println!("  component {}, {vetting}", path.display());
                }
            }
            for line in plugin.grant.describe() {
                println!("  {line}");
            }
            for warning in PluginRunner::ungranted_imports(&loaded, &plugin.grant) {
                println!("  warning: {warning}");
            }
            let beyond = plugin.beyond_manifest();
            if !beyond.is_empty() {
                println!(
                    "  warning: the grant gives {}, which its manifest does not ask for; remove them from plugins.{}.capabilities unless you mean to widen it",
                    levelhost_core::capability::join(&beyond),
                    plugin.name
                );
            }
            if plugin.grant.scopes.groups.is_none()
                && plugin.grant.capabilities.iter().any(|c| c.is_write())
            {
                println!(
                    "  note: the grant is not limited to any group: it may change devices anywhere in the organization"
                );
            }
            let not_granted = plugin.not_granted();
            if !not_granted.is_empty() {
                println!(
                    "  warning: its manifest also asks for {}, which the grant does not give; calls that need them are denied",
                    levelhost_core::capability::join(&not_granted)
                );
            }
        }
        println!("\nOK");
        Ok(ExitStatus::Success)
    }
}
