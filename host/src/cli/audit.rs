//! `levelhost audit`.

use std::path::PathBuf;

use super::ExitStatus;
use crate::config::RecordPaths;
use crate::env_vars::EnvVars;
use levelhost_core::audit::{AuditRecord, Stage};
use levelhost_runtime::audit::AuditFilter;

/// Arguments of `levelhost audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// The configuration file (for the audit log's path).
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
    /// Only this plugin's calls.
    #[arg(long)]
    pub plugin: Option<String>,
    /// Only refused calls.
    #[arg(long)]
    pub denied: bool,
    /// Only this run's calls.
    #[arg(long)]
    pub run: Option<String>,
    /// Print JSON lines instead of a table (every record, each stage included).
    #[arg(long)]
    pub json: bool,
    /// Show each write's "sending" record too, with a STAGE column. By
    /// default a call is one row: its outcome, or, for a write whose outcome
    /// never arrived (the host was killed), the record that it was sent.
    #[arg(long)]
    pub stages: bool,
}

impl AuditArgs {
    /// Prints the matching audit records.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let records_at = RecordPaths::load(&self.config)?;
        let filter = AuditFilter {
            plugin: self.plugin,
            denied: self.denied,
            run_id: self.run,
        };
        let audit = records_at.open_audit().await?;
        let (records, skipped) = audit.read(&filter).await?;
        if self.json {
            for r in &records {
                println!("{}", serde_json::to_string(r)?);
            }
        } else {
            let shown = if self.stages {
                records.iter().collect()
            } else {
                one_row_per_call(&records)
            };
            let mut headers = vec!["TIME", "PLUGIN", "RUN", "CALL", "VERDICT", "STATUS", "MS"];
            if self.stages {
                headers.push("STAGE");
            }
            headers.extend(["TARGETS", "WHY"]);
            let mut table = super::table::Table::new(&headers);
            for r in shown {
                let mut row = vec![
                    r.time.clone(),
                    r.plugin.to_string(),
                    r.run_id.to_string(),
                    r.operation.to_string(),
                    verdict(r).to_owned(),
                    r.upstream_status
                        .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                    r.latency_ms.to_string(),
                ];
                if self.stages {
                    row.push(stage(r).to_owned());
                }
                row.push(r.targets_in_words(5));
                row.push(r.reason.clone().unwrap_or_default());
                table.row(row);
            }
            print!("{}", table.render());
        }
        if skipped > 0 {
            eprintln!(
                "warning: skipped {skipped} lines of {} that are not audit records",
                audit.path().display()
            );
        }
        eprintln!("{} records", records.len());
        Ok(ExitStatus::Success)
    }
}

/// The records a person reads: one per call. A write's "sending" record is
/// left out when a later record of the same run tells how that call ended;
/// one with no such record (the host was killed while it was out) stays.
/// One pass from the end, so a long audit log costs no more than reading it.
fn one_row_per_call(records: &[AuditRecord]) -> Vec<&AuditRecord> {
    let mut ended = std::collections::HashSet::new();
    let mut shown: Vec<&AuditRecord> = records
        .iter()
        .rev()
        .filter(|r| {
            let call = (&r.run_id, &r.operation, &r.targets);
            if r.stage == Stage::Sending {
                !ended.contains(&call)
            } else {
                ended.insert(call);
                true
            }
        })
        .collect();
    shown.reverse();
    shown
}

/// What became of the call, in a word; a run's own record says how the run ended.
fn verdict(r: &AuditRecord) -> &'static str {
    match (r.operation.as_ref(), r.stage, r.allowed, r.dry_run) {
        ("run", ..) if r.reason.is_some() => "run failed",
        ("run", ..) => "run ok",
        ("approve" | "reject" | "expire", ..) => "decided",
        (_, Stage::Sending, ..) => "sent",
        (_, Stage::CutOff, ..) => "cut off",
        (_, _, false, _) => "DENIED",
        (_, _, true, true) => "planned",
        (_, _, true, false) if r.reason.is_some() => "failed",
        (_, _, true, false) => "allowed",
    }
}

fn stage(r: &AuditRecord) -> &'static str {
    match r.stage {
        Stage::Done => "done",
        Stage::Sending => "sending",
        Stage::CutOff => "cut-off",
    }
}
