//! `levelhost dev`: build, run, and again on every save, against one simulator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use level_sim::{SimConfig, Simulator};

use super::ExitStatus;

/// How long `dev` lets a burst of file events (an editor's save) settle
/// before it builds.
const SETTLE: Duration = Duration::from_millis(100);

/// Folders `dev` does not watch: build outputs, installed tools, generated bindings.
const UNWATCHED: [&str; 9] = [
    "target",
    "node_modules",
    ".levelhost",
    ".venv",
    "gen",
    "go-pkg",
    "__pycache__",
    ".git",
    "types",
];

/// Arguments of `levelhost dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The plugin project (made by `levelhost new`).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The runs' input, a JSON document (default `{}`).
    #[arg(long)]
    pub input: Option<String>,
    /// Start every run from a fresh organization; by default what one run
    /// changes is there for the next, as long as `dev` runs.
    #[arg(long)]
    pub reset: bool,
    /// Plan writes instead of making them, and print the plan.
    #[arg(long)]
    pub dry_run: bool,
}

impl DevArgs {
    /// Builds and runs the project, then again after every change, until Ctrl-C.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let input: serde_json::Value = match &self.input {
            Some(text) => serde_json::from_str(text).context("--input is not valid JSON")?,
            None => serde_json::json!({}),
        };
        let sim = Simulator::start(SimConfig::default(), Simulator::seeded()).await?;
        eprintln!(
            "dev: a simulated organization at {} for as long as this runs{}; Ctrl-C to stop",
            sim.base_url(),
            if self.reset {
                ", reset before every run"
            } else {
                " (changes carry over from run to run; --reset starts each run afresh)"
            }
        );
        let runner = super::runner()?;
        let mut stop = super::signal::listen();
        let (events, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    let _ = events.send(event);
                }
            })
            .context("cannot watch the project's files")?;
        notify::Watcher::watch(&mut watcher, &self.dir, notify::RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch {}", self.dir.display()))?;
        loop {
            let seen = self.build_and_run(&runner, &sim, &input).await;
            eprintln!("dev: watching {} for changes", self.dir.display());
            tokio::select! {
                () = changed(&self.dir, &seen, &mut changes) => {}
                signal = stop.stopped() => {
                    eprintln!("dev: stopped by {signal}");
                    sim.stop().await;
                    return Ok(ExitStatus::Success);
                }
            }
            eprintln!("dev: a file changed; building again");
        }
    }

    /// One round: build, then run against `sim`, and return the project's
    /// files as the build left them (what the build itself writes is no
    /// change; a save during the run is). Failures are printed, not fatal:
    /// the next save tries again.
    async fn build_and_run(
        &self,
        runner: &levelhost_runtime::runner::PluginRunner,
        sim: &Simulator,
        input: &serde_json::Value,
    ) -> BTreeMap<PathBuf, SystemTime> {
        let build = super::new::BuildArgs {
            dir: self.dir.clone(),
        };
        let built = build.execute().await;
        let seen = snapshot(&self.dir);
        match built {
            Err(e) => eprintln!("dev: the build failed: {e:#}"),
            Ok(_) => {
                if let Err(e) = self.run(runner, sim, input).await {
                    eprintln!("dev: cannot run: {e:#}");
                }
            }
        }
        seen
    }

    async fn run(
        &self,
        runner: &levelhost_runtime::runner::PluginRunner,
        sim: &Simulator,
        input: &serde_json::Value,
    ) -> anyhow::Result<()> {
        if self.reset {
            *sim.tenant() = Simulator::seeded();
        }
        let wasm = self.dir.join("plugin.wasm");
        let (report, _) = super::run::run_on(runner, &wasm, sim, input, self.dry_run, None).await?;
        for denial in report.audit.iter().filter(|r| !r.allowed) {
            eprintln!(
                "dev: {} was refused: {}",
                denial.operation,
                denial.reason.as_deref().unwrap_or("denied")
            );
        }
        super::run::print_report(&report, self.dry_run);
        Ok(())
    }
}

/// Whether `path` is one of the project's own files: not in a folder of
/// build outputs, tools or generated bindings, and not a component.
fn watched(dir: &Path, path: &Path) -> bool {
    let inside = path.strip_prefix(dir).unwrap_or(path);
    let generated = inside
        .components()
        .any(|c| UNWATCHED.iter().any(|u| c.as_os_str() == *u));
    !generated && path.extension().is_none_or(|e| e != "wasm")
}

/// Each watched file's modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                if !UNWATCHED.iter().any(|u| entry.file_name() == *u) {
                    pending.push(path);
                }
            } else if watched(dir, &path)
                && let Ok(modified) = meta.modified()
            {
                files.insert(path, modified);
            }
        }
    }
    files
}

/// Returns once a watched file is added, removed or modified since `seen`.
/// The file system's events wake it and the snapshot decides, so an event
/// the build's own writes deliver late is no change.
async fn changed(
    dir: &Path,
    seen: &BTreeMap<PathBuf, SystemTime>,
    changes: &mut tokio::sync::mpsc::UnboundedReceiver<notify::Event>,
) {
    use notify::EventKind;
    while let Some(event) = changes.recv().await {
        let edits = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
        );
        if !edits || !event.paths.iter().any(|p| watched(dir, p)) {
            continue;
        }
        // Let the burst of events a save makes settle.
        tokio::time::sleep(SETTLE).await;
        while changes.try_recv().is_ok() {}
        if snapshot(dir) != *seen {
            return;
        }
    }
    // The watcher is gone: nothing will change any more.
    std::future::pending::<()>().await;
}
