//! `levelhost serve`.

use std::path::PathBuf;

use super::ExitStatus;
use crate::config::HostConfig;
use crate::env_vars::EnvVars;

/// Arguments of `levelhost serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file.
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
}

impl ServeArgs {
    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let config = HostConfig::load(&self.config)?;
        let runner = super::runner_with(Some(config.pooling()))?;
        let handle = crate::loader::serve(config, Some(runner)).await?;
        println!(
            "levelhost serve on http://{} (GET /healthz, POST /hooks/PLUGIN)",
            handle.addr
        );
        let signal = super::signal::stop().await;
        tracing::info!("{signal}: shutting down; no new runs, waiting for running ones");
        handle.shutdown().await;
        Ok(ExitStatus::Success)
    }
}
