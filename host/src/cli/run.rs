//! `levelhost run`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};

use super::ExitStatus;
use crate::config::HostConfig;
use crate::env_vars::EnvVars;
use level_sim::{SimConfig, Simulator};
use levelhost_core::capability;
use levelhost_core::grant::Grant;
use levelhost_core::manifest::PluginManifest;
use levelhost_packages::installed::PluginSource;
use levelhost_runtime::engine::LoadedPlugin;
use levelhost_runtime::runner::{PluginRunner, RunReport, RunRequest};
use levelhost_serve::history::RunStatus;
use levelhost_serve::{Executor, Finished, Origin, RunOptions, ServedPlugin};
use levelhost_testing::transcript::{Recording, Transcript};

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
    /// Run a component file against a fresh built-in simulator. With a
    /// `plugin.toml` beside the component, its input schema applies and the
    /// grant is exactly its capabilities, as an operator's least-privilege
    /// grant would be; with none, every capability.
    #[arg(long)]
    pub sim: bool,
    /// Record the run in FILE (a transcript: input, grant, every Level request
    /// and answer, every host call, the clocks and random numbers the plugin
    /// saw; no key), for `levelhost replay` and `levelhost test`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
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
        if let Some(file) = &self.record {
            Transcript::check_writable(file)?;
        }
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
        let plugin = config.plugin(&self.plugin)?;
        let input = input.unwrap_or_else(|| plugin.input.clone());
        plugin.manifest.check_input(&input).map_err(|e| {
            anyhow::anyhow!(
                "the input does not match {}'s input schema: {e}",
                plugin.name
            )
        })?;
        let recording = self.record.as_ref().map(|_| Recording::start());
        let mut client = crate::loader::client(&config, &plugin.key)?;
        if let Some(recording) = &recording {
            client = recording.client(client);
        }
        let served = served(&runner, &config, plugin, client)?;
        let executor = executor(runner, &config).await?;
        // Listen before the run is claimed: a signal from then on is handled, not fatal.
        let mut stop = super::signal::listen();
        let claimed = executor
            .claim(&served, Origin::Manual)
            .await?
            .context("a manual run cannot have been claimed before")?;
        let options = RunOptions {
            dry_run: self.dry_run,
            echo_logs: true,
            tape: recording.as_ref().map(|r| r.tape.clone()),
            state: recording.as_ref().map(|r| r.state.clone()),
            http_tape: recording.as_ref().map(|r| r.http.clone()),
        };
        let run_id = claimed.id.clone();
        tokio::select! {
            finished = executor.run(&served, claimed, &input, options) => {
                let finished = finished?;
                let report = &finished.report;
                if let (Some(recording), Some(file)) = (&recording, &self.record) {
                    let component = match &plugin.source {
                        PluginSource::Component(path) => path.clone(),
                        PluginSource::Package { dir, .. } => dir.join(levelhost_packages::package::COMPONENT_FILE),
                    };
                    let transcript = Transcript {
                        component: Some(component),
                        ..recording.finish(report, input.clone(), served.grant.clone(), &served.version, self.dry_run)
                    };
                    save(&transcript, file)?;
                }
                Ok(print_finished(&finished, self.dry_run))
            }
            signal = stop.stopped() => {
                // The run's future is dropped here, so the plugin stops; record that.
                executor
                    .interrupt_open(&format!("levelhost run was stopped by {signal}"))
                    .await?;
                eprintln!("error: {} run {run_id} was stopped by {signal}; recorded as interrupted", served.name);
                Ok(ExitStatus::Stopped(signal))
            }
        }
    }

    async fn run_on_simulator(
        &self,
        runner: &PluginRunner,
        input: Option<serde_json::Value>,
    ) -> anyhow::Result<ExitStatus> {
        let input = input.unwrap_or_else(|| serde_json::json!({}));
        let sim = Simulator::start(SimConfig::default(), Simulator::seeded()).await?;
        let recording = self.record.as_ref().map(|_| Recording::start());
        let component = Path::new(&self.plugin);
        let (report, grant) = run_on(
            runner,
            component,
            &sim,
            &input,
            self.dry_run,
            recording.as_ref(),
        )
        .await?;
        sim.stop().await;
        if let (Some(recording), Some(file)) = (&recording, &self.record) {
            let transcript = Transcript {
                component: Some(std::path::absolute(component)?),
                ..recording.finish(&report, input, grant, "0.0.0", self.dry_run)
            };
            save(&transcript, file)?;
        }
        Ok(print_report(&report, self.dry_run))
    }
}

/// An installed plugin ready to run once by hand, with `client`.
pub(crate) fn served(
    runner: &PluginRunner,
    config: &HostConfig,
    plugin: &crate::config::PluginConfig,
    client: level_api::LevelClient,
) -> anyhow::Result<ServedPlugin> {
    let connections = Arc::new(config.load_connections()?);
    let (served, warnings) =
        crate::loader::served_plugin(runner, plugin, &config.trust, client, connections)?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    Ok(served)
}

/// An executor recording in the config's history and audit log: runs by
/// hand go into the history too, dry runs with their plan.
pub(crate) async fn executor(
    runner: PluginRunner,
    config: &HostConfig,
) -> anyhow::Result<Executor> {
    let audit = config.records.open_audit().await?;
    let history = Arc::new(config.records.open_history().await?);
    Ok(Executor::new(runner, Some(history), Some(audit)).with_lease(config.records.lease()))
}

/// Prints how a recorded run ended: its output, a plan that waits for
/// approval, or how it diverged from its approved plan.
pub(crate) fn print_finished(finished: &Finished, dry_run: bool) -> ExitStatus {
    let report = &finished.report;
    if let Some(waiting) = &finished.waiting {
        eprintln!(
            "{} run {} waits for approval ({}). Its plan, {} writes (nothing was sent to Level):",
            report.plugin,
            report.run_id,
            waiting.needed.join("; "),
            report.plan.len()
        );
        for line in levelhost_core::plan::in_words(&report.plan) {
            eprintln!("  {line}");
        }
        eprintln!(
            "Approve it with `levelhost approve {run}` or reject it with `levelhost reject {run} --reason ...`; \
             unless approved by {} it expires and nothing is applied.",
            waiting.expires_at,
            run = report.run_id
        );
        println!(
            "{}",
            serde_json::json!({"run": report.run_id, "status": finished.status.as_str(), "needed": waiting.needed, "expires_at": waiting.expires_at})
        );
        return ExitStatus::Waiting;
    }
    let status = print_report(report, dry_run);
    if finished.status == RunStatus::Diverged {
        eprintln!(
            "error: {} run {} diverged from its approved plan; the writes outside it were denied:",
            report.plugin, report.run_id
        );
        for why in &report.divergence {
            eprintln!("  {why}");
        }
        return ExitStatus::Failure;
    }
    if !report.unapplied.is_empty() {
        eprintln!(
            "note: {} writes of the approved plan were not made (the plugin no longer wanted them; they are not forced):",
            report.unapplied.len()
        );
        for line in levelhost_core::plan::in_words(&report.unapplied) {
            eprintln!("  {line}");
        }
    }
    status
}

/// Writes a recorded run's transcript and says what it holds.
fn save(transcript: &Transcript, file: &Path) -> anyhow::Result<()> {
    transcript.save(file)?;
    eprintln!(
        "recorded the run in {}: {} Level requests, {} host calls (replay it with `levelhost replay {}`)",
        file.display(),
        transcript.exchanges.len(),
        transcript.calls.len(),
        file.display()
    );
    Ok(())
}

/// Runs `component` once against `sim`, as its author would during
/// development: under the grant of the `plugin.toml` beside it
/// ([`grant_beside`]), its log lines echoed as they come, into `recording`
/// if given. Returns the run and its grant.
pub(crate) async fn run_on(
    runner: &PluginRunner,
    component: &Path,
    sim: &Simulator,
    input: &serde_json::Value,
    dry_run: bool,
    recording: Option<&Recording>,
) -> anyhow::Result<(RunReport, Grant)> {
    let plugin = runner.load_file(component)?;
    let grant = grant_beside(component, &plugin, input)?;
    let mut client = levelhost_testing::client_of(sim)?;
    if let Some(recording) = recording {
        client = recording.client(client);
    }
    let request = RunRequest {
        grant: grant.clone(),
        dry_run,
        echo_logs: true,
        tape: recording.map(|r| r.tape.clone()),
        state: recording.map(|r| {
            r.state
                .wrap(Arc::new(levelhost_runtime::state::MemoryState::default()))
        }),
        http_tape: recording.map(|r| r.http.clone()),
        ..RunRequest::manual(input.to_string())
    };
    Ok((runner.run(&plugin, client, request).await?, grant))
}

/// The grant a component runs with against the simulator: exactly the
/// capabilities of the `plugin.toml` beside it, whose input schema `input`
/// must match; every capability when there is none. Says which on stderr.
pub(crate) fn grant_beside(
    component: &Path,
    plugin: &LoadedPlugin,
    input: &serde_json::Value,
) -> anyhow::Result<Grant> {
    let manifest_path = component
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("plugin.toml");
    let grant = if manifest_path.is_file() {
        let manifest = PluginManifest::load(&manifest_path)?;
        manifest.check_input(input).map_err(|e| {
            anyhow::anyhow!(
                "the input does not match the input schema of {}: {e}",
                manifest_path.display()
            )
        })?;
        eprintln!(
            "using {}: the grant is exactly its capabilities ({})",
            manifest_path.display(),
            capability::join(&manifest.capabilities)
        );
        Grant::exactly(&plugin.name, manifest.capabilities)
    } else {
        eprintln!(
            "no plugin.toml beside {}: running with every capability",
            component.display()
        );
        Grant::unrestricted(&plugin.name)
    };
    for warning in PluginRunner::ungranted_imports(plugin, &grant) {
        eprintln!("warning: {warning}");
    }
    Ok(grant)
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
            eprintln!("  {}", entry.in_words());
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
