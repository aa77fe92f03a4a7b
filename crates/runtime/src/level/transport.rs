//! Where a run's requests go. Every request a host function makes leaves
//! through [`Transport::send`]; in a dry run, writes stop here and become the
//! run's plan instead (reads still go to Level, so the plan is made on real data).

use level_api::{ClientError, LevelClient};

use super::PlanEntry;

/// The run's way to Level: its client, and whether writes are sent or planned.
#[derive(Debug)]
pub(super) struct Transport {
    client: LevelClient,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    /// Every request is sent.
    Live,
    /// Reads are sent; writes are recorded in the plan.
    DryRun { plan: Vec<PlanEntry> },
}

impl Transport {
    pub(super) fn new(client: LevelClient, dry_run: bool) -> Self {
        let mode = if dry_run {
            Mode::DryRun { plan: Vec::new() }
        } else {
            Mode::Live
        };
        Self { client, mode }
    }

    /// Sends one request to Level.
    pub(super) async fn send<T, F>(
        &self,
        f: impl FnOnce(LevelClient) -> F,
    ) -> Result<T, ClientError>
    where
        F: Future<Output = Result<T, ClientError>>,
    {
        f(self.client.clone()).await
    }

    /// Whether writes are planned instead of sent.
    pub(super) fn plans_writes(&self) -> bool {
        matches!(self.mode, Mode::DryRun { .. })
    }

    /// Adds a write to the plan (a live run has none, and ignores it).
    pub(super) fn plan(&mut self, entry: PlanEntry) {
        if let Mode::DryRun { plan } = &mut self.mode {
            plan.push(entry);
        }
    }

    /// The plan so far, taken out.
    pub(super) fn take_plan(&mut self) -> Vec<PlanEntry> {
        match &mut self.mode {
            Mode::DryRun { plan } => std::mem::take(plan),
            Mode::Live => Vec::new(),
        }
    }
}
