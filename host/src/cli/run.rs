//! `levelhost run`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::ExitStatus;
use crate::audit::AuditLog;
use crate::client::{ClientConfig, LevelClient};
use crate::config::HostConfig;
use crate::env_vars::EnvVars;
use crate::grant::Grant;
use crate::history::{History, RunOrigin};
use crate::runtime::{PluginRunner, RunReport, RunRequest};
use crate::sim::{SimConfig, Simulator};

/// Arguments of `levelhost run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A plugin installed in the config, by name; or, with --sim, a component file (`.wasm`).
    pub plugin: String,
    /// The run's input, a JSON document (default: the input in the config, else `{}`).
    #[arg(long)]
    pub input: Option<String>,
    /// The configuration file.
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
    /// Send no write to Level: print what the plugin would change instead. Reads still happen.
    #[arg(long)]
    pub dry_run: bool,
    /// Run a component file against a fresh built-in simulator, with every capability.
    #[arg(long)]
    pub sim: bool,
}

impl RunArgs {
    /// Runs the plugin once and prints its output.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let input = match &self.input {
            Some(text) => Some(
                serde_json::from_str::<serde_json::Value>(text)
                    .context("--input is not valid JSON")?,
            ),
            None => None,
        };
        let runner = super::runner()?;
        if self.sim {
            return self.run_on_simulator(&runner, input).await;
        }
        if self.plugin.ends_with(".wasm") && !self.config.exists() {
            bail!(
                "a component file runs only against the built-in simulator (add --sim); to run it against \
                 Level, install it with a grant in {} and run it by name",
                self.config.display()
            );
        }
        let config = HostConfig::load(&self.config)?;
        let plugin = config.plugin(&self.plugin).map_err(anyhow::Error::msg)?;
        let input = input.unwrap_or_else(|| plugin.input.clone());
        plugin.manifest.check_input(&input).map_err(|e| {
            anyhow::anyhow!(
                "the input does not match {}'s input schema: {e}",
                plugin.name
            )
        })?;
        let key = config
            .keys
            .get(&plugin.key)
            .context("the plugin's key is not defined")?
            .load()
            .map_err(anyhow::Error::msg)?;
        let mut client_config = ClientConfig::new(&config.base_url);
        client_config.timeout = config.timeout;
        let client = LevelClient::new(client_config, key)?;
        let (loaded, _) = runner.load_installed(plugin, &config.trust)?;
        let audit = AuditLog::open(&config.audit_path)?;
        let request = RunRequest {
            grant: plugin.grant.clone(),
            version: plugin.manifest.version.clone(),
            dry_run: self.dry_run,
            audit: Some(audit),
            echo_logs: true,
            ..RunRequest::manual(input.to_string())
        };
        // Manual runs go into the run history too (dry runs change nothing, so they do not).
        let history = if self.dry_run {
            None
        } else {
            Some(History::open(&config.serve.database)?)
        };
        if let Some(history) = &history {
            history.claim(
                &request.run_id,
                &plugin.name,
                &request.version,
                &loaded.digest,
                &RunOrigin::manual(),
            )?;
        }
        let run_id = request.run_id.clone();
        let report = match runner.run(&loaded, client, request).await {
            Ok(report) => report,
            Err(e) => {
                if let Some(history) = &history {
                    history.fail(&run_id, &e.to_string())?;
                }
                return Err(e.into());
            }
        };
        if let Some(history) = &history {
            history.finish(&run_id, &report)?;
        }
        Ok(print_report(&report, self.dry_run))
    }

    async fn run_on_simulator(
        &self,
        runner: &PluginRunner,
        input: Option<serde_json::Value>,
    ) -> anyhow::Result<ExitStatus> {
        let path = Path::new(&self.plugin);
        let plugin = runner.load_file(path)?;
        let sim = Simulator::start(SimConfig::default(), Simulator::seeded()).await?;
        let client = LevelClient::new(
            ClientConfig::new(sim.base_url()),
            crate::client::ApiKey::new(sim.read_write_key()),
        )?;
        let request = RunRequest {
            grant: Grant::unrestricted(&plugin.name),
            dry_run: self.dry_run,
            echo_logs: true,
            ..RunRequest::manual(input.unwrap_or_else(|| serde_json::json!({})).to_string())
        };
        let report = runner.run(&plugin, client, request).await?;
        sim.stop().await;
        Ok(print_report(&report, self.dry_run))
    }
}

/// Prints a run's output on stdout (or its failure on stderr), and in a
/// dry run the plan, and returns the exit status.
pub(crate) fn print_report(report: &RunReport, dry_run: bool) -> ExitStatus {
    for (name, text) in [("stdout", &report.stdout), ("stderr", &report.stderr)] {
        for line in text.lines() {
            tracing::info!("plugin {name}: {line}");
        }
    }
    let denied = report.audit.iter().filter(|r| !r.allowed).count();
    tracing::info!(
        run = %report.run_id,
        calls = report.api_calls,
        writes = report.writes,
        denied,
        "{} finished in {:.0?}",
        report.plugin,
        report.duration
    );
    if dry_run {
        eprintln!(
            "Plan (dry run: nothing was sent to Level), {} writes:",
            report.plan.len()
        );
        for entry in &report.plan {
            eprintln!("  {} {}", entry.operation, entry.request);
        }
    }
    match &report.outcome {
        Ok(output) => {
            println!(
                "{}",
                serde_json::to_string_pretty(output).unwrap_or_else(|_| output.to_string())
            );
            ExitStatus::Success
        }
        Err(failure) => {
            eprintln!(
                "error: {} run {} failed: {failure}",
                report.plugin, report.run_id
            );
            ExitStatus::Failure
        }
    }
}
