//! `levelhost replay`: runs a recorded run again, offline, and shows where
//! it parts from the recording.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use levelhost_testing::transcript::{self, Transcript};

use super::ExitStatus;

/// Arguments of `levelhost replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A transcript written by `levelhost run --record FILE`.
    pub transcript: PathBuf,
    /// Run this component instead of the recorded one: what would it have
    /// done with the same data?
    #[arg(long)]
    pub component: Option<PathBuf>,
}

impl ReplayArgs {
    /// Replays the run, prints its output and plan, and then either that it
    /// did exactly what the recorded run did (exit 0) or where it differs (exit 1).
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let recorded = Transcript::load(&self.transcript)?;
        let component = match (&self.component, &recorded.component) {
            (Some(path), _) => path.clone(),
            (None, Some(path)) => path.clone(),
            (None, None) => bail!(
                "{} does not say where its component was: name one with --component",
                self.transcript.display()
            ),
        };
        let runner = super::runner()?;
        let plugin = runner
            .load_file(&component)
            .with_context(|| format!("{}", component.display()))?;
        eprintln!(
            "replaying {} {} ({} Level answers, {} host calls recorded) with {}; nothing is sent to Level",
            recorded.plugin,
            recorded.version,
            recorded.exchanges.len(),
            recorded.calls.len(),
            component.display()
        );
        let replay = transcript::replay(&runner, &plugin, &recorded).await?;
        super::run::print_report(&replay.report, recorded.dry_run);
        if replay.differences.is_empty() {
            eprintln!(
                "identical: the same {} host calls, output and plan as the recorded run",
                recorded.calls.len()
            );
            return Ok(ExitStatus::Success);
        }
        eprintln!("diverged from the recorded run:");
        for difference in &replay.differences {
            eprintln!("  {difference}");
        }
        Ok(ExitStatus::Failure)
    }
}
