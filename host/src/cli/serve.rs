//! `levelhost serve` and `levelhost reload`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::ExitStatus;
use crate::config::{HostConfig, RecordPaths};
use crate::env_vars::EnvVars;

/// Arguments of `levelhost serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file.
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
}

/// The file a running `serve` keeps its process id in, beside its history.
fn pid_file(database: &Path) -> PathBuf {
    database
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("levelhost-serve.pid")
}

impl ServeArgs {
    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully; reloads
    /// keys, grants and plugins on SIGHUP (`levelhost reload`).
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let config = HostConfig::load(&self.config)?;
        let runner = super::runner_with(Some(config.pooling()))?;
        let mut stop = super::signal::listen();
        let mut hangups = super::signal::hangups();
        let mut clients = crate::loader::Clients::of(&config, None).await?;
        let pid = pid_file(&config.serve.database);
        let handle = crate::loader::serve_with(config, runner.clone(), &clients).await?;
        std::fs::write(&pid, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write {}", pid.display()))?;
        println!(
            "levelhost serve on http://{} (GET /healthz, POST /hooks/PLUGIN)",
            handle.addr
        );
        if let Some(console) = handle.console_addr {
            println!("console and /metrics on http://{console}/login?token=...");
        }
        let signal = loop {
            tokio::select! {
                signal = stop.stopped() => break signal,
                () = hangups.next() => {
                    tracing::info!("SIGHUP: reloading {}", self.config.display());
                    let reloaded = match HostConfig::load(&self.config) {
                        Ok(config) => crate::loader::reload(&handle, &config, &runner, &clients)
                            .await
                            .map_err(anyhow::Error::from),
                        Err(e) => Err(e.into()),
                    };
                    match reloaded {
                        Ok(now) => clients = now,
                        Err(e) => tracing::error!(
                            "reload refused, the running configuration stays in use: {e:#}"
                        ),
                    }
                }
            }
        };
        tracing::info!("{signal}: shutting down; no new runs, waiting for running ones");
        handle.shutdown().await;
        let _ = std::fs::remove_file(&pid);
        Ok(ExitStatus::Success)
    }
}

/// Arguments of `levelhost reload`.
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// The configuration file of the running `serve`.
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
}

impl ReloadArgs {
    /// Sends SIGHUP to the `serve` whose process id is beside the config's history.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let records = RecordPaths::load(&self.config)?;
        let pid = pid_file(&records.database);
        let text = std::fs::read_to_string(&pid).with_context(|| {
            format!(
                "no running `levelhost serve` for this config ({} is missing)",
                pid.display()
            )
        })?;
        let id = text.trim();
        anyhow::ensure!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
            "{} does not hold a process id",
            pid.display()
        );
        let sent = std::process::Command::new("kill")
            .args(["-HUP", id])
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(
            sent.success(),
            "no `levelhost serve` runs as process {id} any more"
        );
        eprintln!("asked levelhost serve (process {id}) to reload; its log says whether it did");
        Ok(ExitStatus::Success)
    }
}
