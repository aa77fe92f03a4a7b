//! `levelhost run`.

use std::path::PathBuf;

use anyhow::Context as _;

use super::ExitStatus;
use crate::client::{ApiKey, ClientConfig, LevelClient};
use crate::env_vars::EnvVars;
use crate::runtime::{PluginRunner, RunReport, RunRequest};
use crate::sim::{SimConfig, Simulator};

/// Arguments of `levelhost run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The plugin component (a `.wasm` file built for wasm32-wasip2).
    pub plugin: PathBuf,
    /// The run's input, a JSON document.
    #[arg(long, default_value = "{}")]
    pub input: String,
    /// Level's base URL.
    #[arg(long, env = EnvVars::LEVEL_BASE_URL, default_value = "https://api.level.io")]
    pub base_url: String,
    /// Run against a fresh built-in simulator instead of Level (no key needed).
    #[arg(long, conflicts_with = "base_url")]
    pub sim: bool,
}

impl RunArgs {
    /// Runs the plugin once and prints its output.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        serde_json::from_str::<serde_json::Value>(&self.input)
            .context("--input is not valid JSON")?;
        let runner = PluginRunner::new()?;
        let plugin = runner.load_file(&self.plugin)?;
        let (sim, client) = if self.sim {
            let sim = Simulator::start(SimConfig::default(), Simulator::seeded()).await?;
            let client = LevelClient::new(
                ClientConfig::new(sim.base_url()),
                ApiKey::new(sim.read_write_key()),
            )?;
            (Some(sim), client)
        } else {
            // The key is read from the environment, never from the command line,
            // where other users of the machine could see it.
            let key = std::env::var(EnvVars::LEVEL_API_KEY).with_context(|| {
                format!(
                    "set {} to a Level API key, or pass --sim to use the built-in simulator",
                    EnvVars::LEVEL_API_KEY
                )
            })?;
            (
                None,
                LevelClient::new(ClientConfig::new(&self.base_url), ApiKey::new(key))?,
            )
        };
        let mut request = RunRequest::manual(self.input);
        request.echo_logs = true;
        let report = runner.run(&plugin, client, request).await?;
        if let Some(sim) = sim {
            sim.stop().await;
        }
        Ok(print_report(&report))
    }
}

/// Prints a run's output on stdout (or its failure on stderr) and returns the exit status.
pub(crate) fn print_report(report: &RunReport) -> ExitStatus {
    for (name, text) in [("stdout", &report.stdout), ("stderr", &report.stderr)] {
        for line in text.lines() {
            tracing::info!("plugin {name}: {line}");
        }
    }
    tracing::info!(
        run = %report.run_id,
        calls = report.api_calls,
        "{} finished in {:.0?}",
        report.plugin,
        report.duration
    );
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
