//! `levelhost audit`.

use std::path::PathBuf;

use super::ExitStatus;
use crate::config::RecordPaths;
use crate::env_vars::EnvVars;
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
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
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
        let audit = records_at.open_audit()?;
        let (records, skipped) = audit.read(&filter)?;
        for r in &records {
            if self.json {
                println!("{}", serde_json::to_string(r)?);
            } else {
                let verdict = match (r.allowed, r.dry_run) {
                    (false, _) => "DENIED",
                    (true, true) => "planned",
                    (true, false) => "allowed",
                };
                println!(
                    "{} {} {} {:<20} {:<7} {:>4} {:>5}ms {}{}",
                    r.time,
                    r.plugin,
                    r.run_id,
                    r.operation,
                    verdict,
                    r.upstream_status
                        .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                    r.latency_ms,
                    r.targets.join(","),
                    r.reason
                        .as_ref()
                        .map_or_else(String::new, |why| format!("  ({why})")),
                );
            }
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
