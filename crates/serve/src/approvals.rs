//! Deciding on plans that wait for approval: approve, reject, and the audit
//! records of each decision. Deciding writes the history and the audit log
//! only; it needs no Level key. Applying an approved plan is the executor's
//! ([`crate::Executor::claim_approved`]).

use levelhost_runtime::audit::{AuditError, AuditLog, AuditRecord};

use crate::history::{Decided, History, HistoryError};

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let the plan be applied.
    Approve,
    /// Apply nothing.
    Reject,
}

/// Why a decision could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The history could not be read or written.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The audit log could not be written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// No run has this id.
    #[error("no run {0} in the history")]
    Unknown(String),
    /// The run is not waiting for a decision.
    #[error("run {run} is {status}, not awaiting approval; nothing was changed")]
    NotWaiting {
        /// The run.
        run: String,
        /// Its status.
        status: String,
    },
    /// The wait ended before the decision.
    #[error("run {run}'s plan expired at {at} before it was decided; nothing will be applied")]
    Expired {
        /// The run.
        run: String,
        /// When it expired.
        at: String,
    },
}

/// Records `decision` on waiting run `run` by `by`, in the history and the
/// audit log. Atomic: a run is decided once, and never after it expired.
pub async fn decide(
    history: &History,
    audit: &AuditLog,
    run: &str,
    decision: Decision,
    by: &str,
    reason: Option<&str>,
) -> Result<(), DecideError> {
    let approve = decision == Decision::Approve;
    let plugin = history
        .get(run)
        .await?
        .map(|r| r.plugin)
        .unwrap_or_default();
    match history.decide(run, approve, by, reason).await? {
        Decided::Done => {}
        Decided::Unknown => return Err(DecideError::Unknown(run.to_owned())),
        Decided::NotWaiting(status) => {
            return Err(DecideError::NotWaiting {
                run: run.to_owned(),
                status,
            });
        }
        Decided::Expired(at) => {
            audit.append(&expired_record(run, &plugin)).await?;
            audit.sync().await?;
            return Err(DecideError::Expired {
                run: run.to_owned(),
                at,
            });
        }
    }
    let (operation, verb) = if approve {
        ("approve", "approved")
    } else {
        ("reject", "rejected")
    };
    let why = match reason {
        Some(reason) => format!("{verb} by {by}: {reason}"),
        None => format!("{verb} by {by}"),
    };
    audit
        .append(&decision_record(run, &plugin, operation, why))
        .await?;
    audit.sync().await?;
    Ok(())
}

pub use crate::history::EXPIRED;

/// The audit record of a plan that expired.
pub fn expired_record(run: &str, plugin: &str) -> AuditRecord {
    decision_record(run, plugin, "expire", EXPIRED.to_owned())
}

/// Marks waiting plans past their time as expired, each with its audit
/// record (made durable); returns each one's (run, plugin).
pub async fn expire_overdue(
    history: &History,
    audit: Option<&AuditLog>,
) -> Result<Vec<(String, String)>, DecideError> {
    let expired = history.expire_overdue().await?;
    if let Some(audit) = audit.filter(|_| !expired.is_empty()) {
        for (run, plugin) in &expired {
            audit.append(&expired_record(run, plugin)).await?;
        }
        audit.sync().await?;
    }
    Ok(expired)
}

/// The audit record of a decision on a plan (`approve`, `reject`, `expire`).
pub fn decision_record(run: &str, plugin: &str, operation: &str, reason: String) -> AuditRecord {
    AuditRecord {
        time: level_api::clock::now(),
        plugin: plugin.into(),
        version: "".into(),
        digest: "".into(),
        run_id: run.into(),
        operation: operation.to_owned().into(),
        targets: Vec::new(),
        names: Default::default(),
        allowed: true,
        reason: Some(reason),
        upstream_status: None,
        latency_ms: 0,
        dry_run: false,
        requests: 0,
        bytes: None,
        stage: Default::default(),
    }
}
