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

/// The file a running `serve` keeps its process id in, beside its history:
/// `NAME-serve.pid` for a config `NAME.toml` (`levelhost-serve.pid` for the
/// default), so serves of two configs sharing a folder each have their own.
fn pid_file(database: &Path, config: &Path) -> PathBuf {
    let name = config
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "levelhost".to_owned());
    database
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(format!("{name}-serve.pid"))
}

/// Where a `serve` writes the verdict on each reload, beside its pid file
/// (`NAME-serve.reload`): `levelhost reload` waits for the next one.
fn verdict_file(pid_file: &Path) -> PathBuf {
    pid_file.with_extension("reload")
}

/// A `serve`'s verdict on its last reload.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ReloadVerdict {
    /// Counts the reloads of this `serve` process; 0 when it has made none yet.
    seq: u64,
    /// The process that wrote it.
    pid: u32,
    /// Whether the new configuration is in use.
    ok: bool,
    /// What was refused, and why; empty when `ok`.
    error: String,
}

impl ReloadVerdict {
    fn read(path: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Writes the verdict whole (beside the file, then renamed into place),
    /// so a reader never sees half of one.
    fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("reload.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).unwrap_or_default())?;
        std::fs::rename(&tmp, path)
    }
}

/// A running `serve`'s pid file, locked for as long as the process lives
/// (the lock goes with the process, even on kill -9), so `levelhost reload`
/// tells a running serve from a file left by one that ended, and never
/// signals another process that has since been given the same id.
struct PidFile {
    path: PathBuf,
    /// Holds the lock.
    _file: std::fs::File,
}

impl PidFile {
    /// Locks `path` and writes this process's id in it; refuses when a
    /// `serve` of the same config holds it.
    fn take(path: &Path) -> anyhow::Result<Self> {
        use std::io::Write as _;
        loop {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let other = std::fs::read_to_string(path).unwrap_or_default();
                    anyhow::bail!(
                        "another levelhost serve (process {}) runs with this config ({} is locked)",
                        other.trim(),
                        path.display()
                    );
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
            // A serve that ended between our open and lock removed the file:
            // lock the one now at the path instead.
            if !still_at(&file, path) {
                continue;
            }
            file.set_len(0)
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            return Ok(Self {
                path: path.to_owned(),
                _file: file,
            });
        }
    }

    /// The process id of the `serve` holding `path`.
    fn running(path: &Path) -> anyhow::Result<String> {
        let not_running = || {
            format!(
                "no levelhost serve is running with this config ({} is missing)",
                path.display()
            )
        };
        let file = std::fs::File::open(path).with_context(not_running)?;
        match file.try_lock_shared() {
            Ok(()) => anyhow::bail!(
                "no levelhost serve is running with this config: {} is left from one that ended",
                path.display()
            ),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e)
                    .with_context(|| format!("cannot read the lock of {}", path.display()));
            }
        }
        let text = std::fs::read_to_string(path).with_context(not_running)?;
        let id = text.trim();
        anyhow::ensure!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
            "{} does not hold a process id (is serve still starting?)",
            path.display()
        );
        Ok(id.to_owned())
    }
}

impl Drop for PidFile {
    /// Removed while still locked, so no other serve's file is removed.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether `file` is the file at `path` (not one removed since it was opened).
fn still_at(file: &std::fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(open), Ok(now)) => open.dev() == now.dev() && open.ino() == now.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

impl ServeArgs {
    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully; reloads
    /// keys, grants and plugins on SIGHUP (`levelhost reload`).
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let config = HostConfig::load(&self.config)?;
        let runner = super::runner_with(Some(config.pooling()))?;
        let mut stop = super::signal::listen();
        let mut hangups = super::signal::hangups();
        let pid_path = pid_file(&config.serve.database, &self.config);
        let pid = PidFile::take(&pid_path)?;
        let verdicts = verdict_file(&pid_path);
        let mut verdict = ReloadVerdict {
            seq: 0,
            pid: std::process::id(),
            ok: true,
            error: String::new(),
        };
        if let Err(e) = verdict.write(&verdicts) {
            tracing::warn!("cannot write {}: {e}", verdicts.display());
        }
        let mut clients = crate::loader::Clients::of(&config, None).await?;
        let handle = crate::loader::serve_with(config, runner.clone(), &clients).await?;
        println!(
            "levelhost serve on http://{} (GET /healthz, POST /hooks/PLUGIN)",
            handle.addr
        );
        if let Some(console) = handle.console_addr {
            println!("console and /metrics on http://{console}/login?token=...");
        }
        if let Some(gateway) = handle.gateway_addr {
            let scheme = if handle.gateway_tls().is_some() {
                "https"
            } else {
                "http"
            };
            println!("gateway for scripts and tools on {scheme}://{gateway}/v2");
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
                    verdict.seq += 1;
                    match reloaded {
                        Ok(now) => {
                            clients = now;
                            verdict.ok = true;
                            verdict.error.clear();
                        }
                        Err(e) => {
                            tracing::error!(
                                "reload refused, the running configuration stays in use: {e:#}"
                            );
                            verdict.ok = false;
                            verdict.error = format!("{e:#}");
                        }
                    }
                    if let Err(e) = verdict.write(&verdicts) {
                        tracing::warn!("cannot write {}: {e}", verdicts.display());
                    }
                }
            }
        };
        tracing::info!("{signal}: shutting down; no new runs, waiting for running ones");
        handle.shutdown().await;
        let _ = std::fs::remove_file(&verdicts);
        drop(pid);
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

/// How long `levelhost reload` waits for `serve`'s verdict: a reload
/// verifies changed keys at Level and compiles changed plugins.
const RELOAD_VERDICT_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

impl ReloadArgs {
    /// Sends SIGHUP to the running `serve` of this config (its process id is
    /// in its locked pid file beside the history), then waits for its
    /// verdict: exits 0 only when the new configuration is in use.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let records = RecordPaths::load(&self.config)?;
        let pid_path = pid_file(&records.database, &self.config);
        let id = PidFile::running(&pid_path)?;
        let id = id.as_str();
        let verdicts = verdict_file(&pid_path);
        let before = ReloadVerdict::read(&verdicts)
            .filter(|v| v.pid.to_string() == id)
            .map_or(0, |v| v.seq);
        let sent = std::process::Command::new("kill")
            .args(["-HUP", id])
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(
            sent.success(),
            "no `levelhost serve` runs as process {id} any more"
        );
        let deadline = std::time::Instant::now() + RELOAD_VERDICT_WAIT;
        loop {
            if let Some(verdict) = ReloadVerdict::read(&verdicts)
                && verdict.pid.to_string() == id
                && verdict.seq > before
            {
                if verdict.ok {
                    eprintln!(
                        "levelhost serve (process {id}) reloaded {}",
                        self.config.display()
                    );
                    return Ok(ExitStatus::Success);
                }
                eprintln!(
                    "error: levelhost serve (process {id}) refused the reload and keeps its running configuration: {}",
                    verdict.error
                );
                return Ok(ExitStatus::Failure);
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!(
                    "levelhost serve (process {id}) gave no verdict on the reload within {} s; its log says whether it reloaded",
                    RELOAD_VERDICT_WAIT.as_secs()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
