//! `levelhost serve`.

use std::path::PathBuf;

use super::ExitStatus;
use crate::config::HostConfig;
use crate::env_vars::EnvVars;
use crate::serve::Service;

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
        let handle = Service::start_with(config, runner).await?;
        println!(
            "levelhost serve on http://{} (GET /healthz, POST /hooks/PLUGIN)",
            handle.addr
        );
        wait_for_signal().await;
        tracing::info!("shutting down: no new runs; waiting for running ones");
        handle.shutdown().await;
        Ok(ExitStatus::Success)
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
