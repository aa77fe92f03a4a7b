//! The command line: `Cli`, its subcommands (one file each) and their exit statuses.

mod approvals;
mod audit;
mod catalog;
mod check;
mod demo;
mod dev;
mod gateway;
mod init;
mod key;
mod new;
mod plugin;
mod replay;
mod run;
mod runs;
mod serve;
mod signal;
mod sim;
mod state;
mod table;
mod test;
mod wit;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::env_vars::EnvVars;

/// Run sandboxed WebAssembly plugins against the Level RMM API, each within its grant.
#[derive(Debug, Parser)]
#[command(name = "levelhost", version, about, max_term_width = 100)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
    /// Log more (-v: debug, -vv: trace). LEVELHOST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// levelhost's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one plugin once, within its grant, and print its output as JSON.
    Run(run::RunArgs),
    /// Run a recorded run again, offline, and show where it differs from the recording.
    Replay(replay::ReplayArgs),
    /// Write a commented levelhost.toml to start from.
    Init(init::InitArgs),
    /// Check the configuration and print each plugin's effective grant in plain words.
    Check(check::CheckArgs),
    /// List the runs whose plans wait for approval, with each plan in words.
    Approvals(approvals::ApprovalsArgs),
    /// Approve a waiting plan: a running `serve` (or `levelhost apply`) then applies exactly it.
    Approve(approvals::DecideArgs),
    /// Reject a waiting plan: nothing of it is applied.
    Reject(approvals::RejectArgs),
    /// Apply an approved plan now, from this process (`serve` does it by itself).
    Apply(approvals::ApplyArgs),
    /// Show the audit log: every host call, allowed or denied, and why.
    Audit(audit::AuditArgs),
    /// Run every plugin on its schedules and on Level's webhook events, until stopped.
    Serve(serve::ServeArgs),
    /// Ask a running `serve` to reload its keys, grants and plugins (as SIGHUP does).
    Reload(serve::ReloadArgs),
    /// Show the run history.
    Runs(runs::RunsArgs),
    /// Show what runs logged (log lines, stdout, stderr), or follow them as they end.
    Logs(runs::LogsArgs),
    /// Show each plugin's next run, last run and last status.
    Status(runs::StatusArgs),
    /// See and fix a plugin's durable state: list, get, set, delete, purge (changes are audited).
    State(state::StateArgs),
    /// Start the built-in Level API simulator on loopback.
    Sim(sim::SimArgs),
    /// Create a plugin project in Rust, JavaScript, TypeScript, Python, Go or C.
    New(new::NewArgs),
    /// Build a plugin project into plugin.wasm (runs its build.sh) and check it against plugin.toml.
    Build(new::BuildArgs),
    /// Build and run a plugin project against one simulator, and again on every save.
    Dev(dev::DevArgs),
    /// Run a plugin project's tests (tests.toml) against the simulator, under its manifest's grant.
    Test(test::TestArgs),
    /// Package, sign, verify, compare, push, pull and install plugins.
    Plugin(plugin::PluginArgs),
    /// Share packages through a catalog directory: add, list, search, install.
    Catalog(catalog::CatalogArgs),
    /// Print a shell completion script: `levelhost completions bash > /etc/bash_completion.d/levelhost`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The WIT steps of a C or Go plugin's build (bindings, componentize), used by its build.sh.
    Wit(wit::WitArgs),
    /// Make reviewers' signing keys.
    Key(key::KeyArgs),
    /// Show levelhost at work: start the simulator and run the example plugins against it.
    Demo(demo::DemoArgs),
    /// Serve Level's REST API to scripts and tools, each with its own client key and grant.
    Gateway(gateway::GatewayArgs),
    /// Manage the gateway's clients: `client key NAME` makes a new key.
    Client(gateway::ClientArgs),
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything worked.
    Success,
    /// The plugin ran and failed.
    Failure,
    /// A signal stopped the command (130 for Ctrl-C, 143 for SIGTERM).
    Stopped(signal::Stop),
    /// The run's plan waits for a person to approve it (exit code 3).
    Waiting,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::Failure => ExitCode::from(1),
            ExitStatus::Stopped(signal) => ExitCode::from(signal.exit_code()),
            ExitStatus::Waiting => ExitCode::from(3),
        }
    }
}

impl Command {
    /// Runs the subcommand.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        match self {
            Command::Run(args) => args.execute().await,
            Command::Check(args) => args.execute().await,
            Command::Init(args) => args.execute().await,
            Command::Replay(args) => args.execute().await,
            Command::Audit(args) => args.execute().await,
            Command::Approvals(args) => args.execute().await,
            Command::Approve(args) => args.execute().await,
            Command::Reject(args) => args.execute().await,
            Command::Apply(args) => args.execute().await,
            Command::Serve(args) => args.execute().await,
            Command::Reload(args) => args.execute().await,
            Command::Runs(args) => args.execute().await,
            Command::Logs(args) => args.execute().await,
            Command::State(args) => args.execute().await,
            Command::Status(args) => args.execute().await,
            Command::Sim(args) => args.execute().await,
            Command::Demo(args) => args.execute().await,
            Command::New(args) => args.execute().await,
            Command::Build(args) => args.execute().await,
            Command::Test(args) => args.execute().await,
            Command::Dev(args) => args.execute().await,
            Command::Plugin(args) => args.execute().await,
            Command::Catalog(args) => args.execute().await,
            Command::Key(args) => args.execute().await,
            Command::Gateway(args) => args.execute().await,
            Command::Client(args) => args.execute().await,
            Command::Wit(args) => args.execute().await,
            Command::Completions { shell } => {
                use clap::CommandFactory as _;
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "levelhost",
                    &mut std::io::stdout(),
                );
                Ok(ExitStatus::Success)
            }
        }
    }
}

/// Where compiled components are cached: `LEVELHOST_CACHE_DIR` (`off` for
/// none), else `$XDG_CACHE_HOME/levelhost`, else `~/.cache/levelhost`.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    match EnvVars::var_os(EnvVars::LEVELHOST_CACHE_DIR) {
        Some(dir) if dir == "off" => None,
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => EnvVars::var_os(EnvVars::XDG_CACHE_HOME)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| EnvVars::var_os(EnvVars::HOME).map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("levelhost")),
    }
}

/// A runner with the compile cache, falling back to none if it cannot be used.
pub(crate) fn runner() -> anyhow::Result<levelhost_runtime::runner::PluginRunner> {
    runner_with(None)
}

/// [`runner`], with instances from a pool when `pooling` is given.
pub(crate) fn runner_with(
    pooling: Option<levelhost_runtime::engine::Pooling>,
) -> anyhow::Result<levelhost_runtime::runner::PluginRunner> {
    use levelhost_runtime::runner::PluginRunner;
    let dir = cache_dir();
    match PluginRunner::with_options(dir.as_deref(), pooling) {
        Ok(runner) => Ok(runner),
        Err(e) if dir.is_some() => {
            tracing::warn!("{e}; compiling without a cache");
            Ok(PluginRunner::with_options(None, pooling)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Logs go to stderr, so stdout carries only a command's output.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env(EnvVars::LEVELHOST_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colour only on a terminal, and never when NO_COLOR is set (no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && EnvVars::var_os(EnvVars::NO_COLOR).is_none_or(|v| v.is_empty()),
        )
        .without_time()
        .try_init();
}
