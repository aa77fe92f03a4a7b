//! Durable run history: every run, what started it, how it ended. A
//! scheduled run is keyed by (plugin, schedule, planned time) and an event
//! run by (plugin, event id), with unique indexes, so neither can start
//! twice, even across a crash and restart.
//!
//! The history is the bottom layer of `serve`: it imports nothing from the
//! executor, approvals or console. One trait, [`HistoryBackend`], is what
//! the rest of the host asks; two backends answer it: SQLite ([`sqlite`],
//! the embedded default) and PostgreSQL ([`postgres`], shared by replicas).
//! Every statement both run is written once, in [`sql`]; each backend holds
//! only what truly differs (transactions, lease time, replicas).

use std::path::{Path, PathBuf};

use serde::Serialize;

use levelhost_runtime::level::PlanEntry;
use levelhost_runtime::runner::{RunFailure, RunReport, new_run_id};
use levelhost_runtime::state::{StateFuture, StateStore, StateStoreError, StateUsage, StoredValue};

mod origin;
mod postgres;
mod sql;
mod sqlite;

pub use origin::Origin;
pub use postgres::{PgAudit, PgRateBudgets};
use sql::{Cells, Outcome, Query, Row};
use sqlite::SqliteHistory;

/// Why a plan that waited too long was not applied, as its run records it.
pub const EXPIRED: &str = "the plan was not approved in time; nothing was applied";

/// A planned run that was not started, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// The plugin.
    pub plugin: String,
    /// What planned it.
    pub origin: Origin,
    /// Why it did not start.
    pub why: String,
}

/// The history database cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error("history {}", path.display())]
pub struct HistoryError {
    /// The database file.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: HistoryCause,
}

/// What went wrong with the history database.
#[derive(Debug, thiserror::Error)]
pub enum HistoryCause {
    /// SQLite refused or failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// Its directory could not be made.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The batch a write was part of could not be committed.
    #[error("cannot commit")]
    Commit(#[source] std::sync::Arc<rusqlite::Error>),
    /// The writer thread (or the audit's PostgreSQL runtime) is gone.
    #[error("the history writer stopped")]
    WriterStopped,
    /// PostgreSQL refused or failed.
    #[error(transparent)]
    Postgres(tokio_postgres::Error),
    /// A column read back is not what the statement's mapper expects.
    #[error("column {index} is {found}, not {wanted}")]
    Column {
        /// Its index.
        index: usize,
        /// What the mapper reads.
        wanted: &'static str,
        /// What it holds.
        found: &'static str,
    },
    /// A run's state write was made on a version of the key that is gone:
    /// nothing of the run's commit was kept.
    #[error("the plugin's state changed under the run ({what}: {key:?})")]
    StateChanged {
        /// What changed.
        what: &'static str,
        /// The key.
        key: String,
    },
    /// The database answered something the history does not expect.
    #[error("unexpected answer: {0}")]
    Answer(&'static str),
    /// No PostgreSQL connection could be had.
    #[error("no connection")]
    Pool(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// How a run ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Started and not finished.
    Running,
    /// Produced its output.
    Ok,
    /// Failed: its own error, a crash, or output that is not JSON.
    Failed,
    /// Exceeded its time limit.
    TimedOut,
    /// Exceeded another limit.
    LimitExceeded,
    /// Failed after the gate refused one of its calls.
    Denied,
    /// The host stopped (or crashed) while it ran.
    Interrupted,
    /// Not started: the previous run of the plugin was still running.
    Skipped,
    /// Its plan is over the plugin's approval policy and waits for a person.
    AwaitingApproval,
    /// Its plan was approved; about to be applied.
    Approved,
    /// Its plan was rejected: nothing was applied.
    Rejected,
    /// Its plan was not approved in time: nothing was applied.
    Expired,
    /// Applying its approved plan, it tried a write the plan did not hold;
    /// that write was denied.
    Diverged,
}

impl RunStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed-out",
            RunStatus::LimitExceeded => "limit-exceeded",
            RunStatus::Denied => "denied",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Skipped => "skipped",
            RunStatus::AwaitingApproval => "awaiting-approval",
            RunStatus::Approved => "approved",
            RunStatus::Rejected => "rejected",
            RunStatus::Expired => "expired",
            RunStatus::Diverged => "diverged",
        }
    }

    /// Every status, for parsing and help.
    pub const ALL: [RunStatus; 13] = [
        RunStatus::Running,
        RunStatus::Ok,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::LimitExceeded,
        RunStatus::Denied,
        RunStatus::Interrupted,
        RunStatus::Skipped,
        RunStatus::AwaitingApproval,
        RunStatus::Approved,
        RunStatus::Rejected,
        RunStatus::Expired,
        RunStatus::Diverged,
    ];

    /// The status of a finished run.
    pub fn of(report: &RunReport) -> Self {
        if !report.divergence.is_empty() {
            return RunStatus::Diverged;
        }
        match &report.outcome {
            Ok(_) => RunStatus::Ok,
            Err(RunFailure::TimedOut(_)) => RunStatus::TimedOut,
            Err(RunFailure::LimitExceeded { .. }) => RunStatus::LimitExceeded,
            Err(_) if report.audit.iter().any(|r| !r.allowed) => RunStatus::Denied,
            Err(_) => RunStatus::Failed,
        }
    }
}

/// A status name that is not one a run can have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {name:?}; one of {}", RunStatus::ALL.map(RunStatus::as_str).join(", "))]
pub struct UnknownStatus {
    /// The name given.
    pub name: String,
}

impl std::str::FromStr for RunStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus { name: s.to_owned() })
    }
}

/// The history's columns for a run's origin.
struct OriginColumns {
    trigger: &'static str,
    schedule: Option<String>,
    planned_at: Option<String>,
    event_id: Option<String>,
    event_type: Option<String>,
}

impl OriginColumns {
    fn of(origin: &Origin) -> Self {
        let mut columns = Self {
            trigger: origin.kind(),
            schedule: None,
            planned_at: None,
            event_id: None,
            event_type: None,
        };
        match origin {
            Origin::Manual => {}
            Origin::Schedule { schedule, planned } => {
                columns.schedule = Some(schedule.clone());
                columns.planned_at = Some(planned.clone());
            }
            Origin::Event {
                event_id,
                event_type,
            } => {
                columns.event_id = Some(event_id.clone());
                columns.event_type = Some(event_type.clone());
            }
        }
        columns
    }
}

/// One run, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    /// Run id.
    pub id: String,
    /// Plugin.
    pub plugin: String,
    /// Plugin version.
    pub version: String,
    /// Component digest.
    pub digest: String,
    /// `manual`, `schedule` or `event`.
    pub trigger: String,
    /// Cron pattern.
    pub schedule: Option<String>,
    /// Planned time.
    pub planned_at: Option<String>,
    /// Event id.
    pub event_id: Option<String>,
    /// Event type.
    pub event_type: Option<String>,
    /// Start.
    pub started_at: String,
    /// End.
    pub ended_at: Option<String>,
    /// Status.
    pub status: String,
    /// Output document.
    pub output: Option<String>,
    /// Error.
    pub error: Option<String>,
    /// Level calls made.
    pub api_calls: i64,
    /// Writes made (or planned, in a dry run).
    pub writes: i64,
    /// Whether it was a dry run: writes planned, none sent.
    pub dry_run: bool,
    /// What the plugin logged: `{"log": [...], "stdout": "...", "stderr": "..."}`,
    /// bounded by its grant's `max_log_kb`; absent when it logged nothing.
    pub logs: Option<serde_json::Value>,
    /// The writes a dry run planned; for a run with an approval policy, its plan.
    pub plan: Option<serde_json::Value>,
    /// The input the run was given.
    pub input: Option<serde_json::Value>,
    /// Distinct devices changed (or planned to be).
    pub devices_changed: i64,
    /// For a plan that waited: why, until when, and who decided.
    pub approval: Option<ApprovalRecord>,
    /// For a run held to an approved plan: what it did outside the plan, and
    /// what of the plan it did not do.
    pub divergence: Option<serde_json::Value>,
    /// The `serve` replica that ran it, in a history replicas share.
    pub replica: Option<String>,
}

/// A plan's wait for approval, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalRecord {
    /// Why the plan waits (which limits of the policy it is over).
    pub needed: Vec<String>,
    /// When the wait ends unapproved.
    pub expires_at: String,
    /// `approved` or `rejected`, once decided.
    pub decision: Option<String>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

/// What became of a decision on a waiting plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Recorded.
    Done,
    /// No run has this id.
    Unknown,
    /// The run is not waiting for approval: its status.
    NotWaiting(String),
    /// The wait ended before the decision: now recorded as expired.
    Expired(String),
}

/// Whether a run may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// It is recorded as running: start it.
    Started,
    /// The same (schedule, planned time) or event already has a run: do not start.
    AlreadyClaimed,
}

impl Claim {
    /// The claim an insert made: `Started` when it inserted the run's row.
    fn inserted<N: PartialEq + From<u8>>(rows: N) -> Self {
        if rows == N::from(1) {
            Claim::Started
        } else {
            Claim::AlreadyClaimed
        }
    }
}

/// What each database does its own way; everything else the history does
/// is written once, in [`History`], from the statements of [`sql`].
#[async_trait::async_trait]
trait Backend: Send + Sync + std::fmt::Debug {
    /// Where the database is (a file, a URL), for messages.
    fn location(&self) -> &Path;
    /// Runs `statements` in one transaction, in order; what each did. Every
    /// write is durable when this returns.
    async fn write(&self, statements: Vec<Query>) -> Result<Vec<Outcome>, HistoryError>;
    /// The rows of one read.
    async fn read(&self, statement: Query) -> Result<Vec<Row>, HistoryError>;
    /// Says this replica is alive before it claims a run (a shared history).
    async fn register(&self) -> Result<(), HistoryError> {
        Ok(())
    }
    /// Whether a plugin's lease may be taken in the transaction that claims
    /// its run. SQLite's one writer runs each write after the last, so the
    /// lease statement sees every claim before it; in PostgreSQL a
    /// concurrent claim's lease statement would judge the holder's run by a
    /// snapshot from before that run was committed, so there the lease is
    /// taken once the claim is.
    fn leases_with_claims(&self) -> bool {
        true
    }
    /// The statement taking the plugin's lease for `holder` (see
    /// [`History::take_lease`]): lease time is each database's own.
    fn take_lease(&self, plugin: &str, holder: &str, lease: std::time::Duration) -> Query;
    /// The statement renewing it (see [`History::renew_lease`]).
    fn renew_lease(&self, plugin: &str, holder: &str, lease: std::time::Duration) -> Query;
    /// See [`History::interrupt_running`].
    async fn interrupt_running(&self, why: &str) -> Result<usize, HistoryError>;
    /// See [`History::integrity_check`].
    async fn integrity_check(&self) -> Result<String, HistoryError>;
    /// This process's replica id, in a history replicas share.
    fn replica(&self) -> Option<&str> {
        None
    }
    /// See [`History::heartbeat`].
    async fn heartbeat(&self, lease: std::time::Duration) -> Result<usize, HistoryError> {
        let _ = lease;
        Ok(0)
    }
    /// See [`History::replicas`].
    async fn replicas(&self) -> Result<Vec<ReplicaRow>, HistoryError> {
        Ok(Vec::new())
    }
    /// See [`History::stop_scheduling`].
    async fn stop_scheduling(&self) -> Result<(), HistoryError> {
        Ok(())
    }
    /// See [`History::live_replicas`].
    async fn live_replicas(&self, lease: std::time::Duration) -> Result<Vec<String>, HistoryError> {
        let _ = lease;
        Ok(Vec::new())
    }
}

/// One replica of a shared history, as `levelhost status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaRow {
    /// Its id (as runs record it).
    pub id: String,
    /// When it started (ISO-8601 UTC).
    pub started_at: String,
    /// When it last said it was alive.
    pub heartbeat_at: String,
    /// How many seconds ago that was, by the database's clock.
    pub silent_secs: f64,
    /// Its runs recorded as running.
    pub running: i64,
}

/// The run history, in whichever database the config names: SQLite
/// (embedded, the default) or PostgreSQL (shared by several `serve`
/// replicas). Every write is durable when it returns.
pub struct History {
    backend: Box<dyn Backend>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.backend.fmt(f)
    }
}

/// Where the history is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryLocation {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by every replica.
    Postgres {
        /// `postgres://user@host:port/database` (no password).
        url: String,
        /// The password, read from its source.
        password: Option<String>,
    },
}

impl History {
    /// Opens (or creates) a SQLite history.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        Ok(Self {
            backend: Box::new(SqliteHistory::open(path)?),
        })
    }

    /// Opens the history at `location`, applying the schema's migrations.
    pub async fn connect(location: &HistoryLocation) -> Result<Self, HistoryError> {
        match location {
            HistoryLocation::Sqlite(path) => Self::open(path),
            HistoryLocation::Postgres { url, password } => Ok(Self {
                backend: Box::new(postgres::PgHistory::connect(url, password.as_deref()).await?),
            }),
        }
    }

    /// One write; how many rows it changed.
    async fn execute(&self, statement: Query) -> Result<u64, HistoryError> {
        let done = self.backend.write(vec![statement]).await?;
        Ok(done.first().map_or(0, |o| o.changed))
    }

    /// One write that returns rows (`RETURNING`), each read by `map`.
    async fn write_rows<T>(
        &self,
        statement: Query,
        map: fn(&Row) -> Result<T, HistoryCause>,
    ) -> Result<Vec<T>, HistoryError> {
        let done = self.backend.write(vec![statement]).await?;
        let rows = done.into_iter().next().map(|o| o.rows).unwrap_or_default();
        self.map(&rows, map)
    }

    /// One read, each row read by `map`.
    async fn read<T>(
        &self,
        statement: Query,
        map: fn(&Row) -> Result<T, HistoryCause>,
    ) -> Result<Vec<T>, HistoryError> {
        let rows = self.backend.read(statement).await?;
        self.map(&rows, map)
    }

    fn map<T>(
        &self,
        rows: &[Row],
        map: fn(&Row) -> Result<T, HistoryCause>,
    ) -> Result<Vec<T>, HistoryError> {
        rows.iter()
            .map(map)
            .collect::<Result<_, _>>()
            .map_err(|source| self.error(source))
    }

    fn error(&self, source: HistoryCause) -> HistoryError {
        HistoryError {
            path: self.backend.location().to_owned(),
            source,
        }
    }

    /// Records a run as running, unless its (schedule, planned time) or event already has one.
    pub async fn claim(
        &self,
        id: &str,
        plugin: &str,
        version: &str,
        digest: &str,
        origin: &Origin,
    ) -> Result<Claim, HistoryError> {
        let (claim, _) = self
            .insert_run(id, plugin, version, digest, origin, false, None)
            .await?;
        Ok(claim)
    }

    /// Claims an event's run and records its delivery in one transaction:
    /// `accepted` with the run's id, or `duplicate` when the event already
    /// started a run.
    pub async fn claim_delivery(
        &self,
        id: &str,
        plugin: &str,
        version: &str,
        digest: &str,
        origin: &Origin,
    ) -> Result<Claim, HistoryError> {
        let (claim, _) = self
            .insert_run(id, plugin, version, digest, origin, true, None)
            .await?;
        Ok(claim)
    }

    /// Claims a run (recording its event's delivery with `delivery`) and, in
    /// the same transaction, tries to take its plugin's lease for `lease`:
    /// the claim, and whether the run holds the lease. Every way a run is
    /// recorded as ended gives the lease back in the same transaction.
    #[allow(
        clippy::too_many_arguments,
        reason = "a run is claimed with what it is recorded with, each its own column"
    )]
    pub async fn claim_leased(
        &self,
        id: &str,
        plugin: &str,
        version: &str,
        digest: &str,
        origin: &Origin,
        delivery: bool,
        lease: std::time::Duration,
    ) -> Result<(Claim, bool), HistoryError> {
        self.insert_run(id, plugin, version, digest, origin, delivery, Some(lease))
            .await
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "a run is claimed with what it is recorded with, each its own column"
    )]
    async fn insert_run(
        &self,
        id: &str,
        plugin: &str,
        version: &str,
        digest: &str,
        origin: &Origin,
        delivery: bool,
        lease: Option<std::time::Duration>,
    ) -> Result<(Claim, bool), HistoryError> {
        // The replica is known (alive) before its run is, so no survivor takes the run for cut off.
        self.backend.register().await?;
        let origin = OriginColumns::of(origin);
        let at = level_api::clock::now();
        let replica = self.backend.replica();
        let mut statements = vec![sql::insert_run(
            id, plugin, version, digest, &origin, &at, replica,
        )];
        if delivery {
            statements.push(sql::insert_claimed_delivery(
                id,
                plugin,
                origin.event_id.as_deref(),
                &at,
            ));
        }
        let together = lease.filter(|_| self.backend.leases_with_claims());
        if let Some(lease) = together {
            statements.push(self.backend.take_lease(plugin, id, lease));
        }
        let done = self.backend.write(statements).await?;
        let claim = Claim::inserted(done.first().map_or(0, |o| o.changed));
        let leased = match (lease, together) {
            _ if claim != Claim::Started => false,
            (Some(_), Some(_)) => done.last().is_some_and(|o| o.changed == 1),
            (Some(lease), None) => self.take_lease(plugin, id, lease).await?,
            (None, _) => false,
        };
        Ok((claim, leased))
    }

    /// One write ending run `id`, with the plugin's lease it holds given back.
    async fn end(&self, id: &str, statement: Query) -> Result<(), HistoryError> {
        self.backend
            .write(vec![statement, sql::release_held(id)])
            .await
            .map(drop)
    }

    /// Records planned runs that were not started, each under a new run id,
    /// in one transaction.
    pub async fn record_skips(&self, skips: &[Skipped]) -> Result<(), HistoryError> {
        let at = level_api::clock::now();
        let replica = self.backend.replica();
        let statements = skips
            .iter()
            .map(|skip| {
                let origin = OriginColumns::of(&skip.origin);
                sql::insert_skip(
                    &new_run_id(),
                    &skip.plugin,
                    &origin,
                    &skip.why,
                    &at,
                    replica,
                )
            })
            .collect();
        self.backend.write(statements).await.map(drop)
    }

    /// Records how a run ended, with what it logged and its plan: a dry
    /// run's own, or the plan a run was held to (`None` keeps the one
    /// recorded). A run that ended `ok`, not a dry run, commits its state
    /// changes in the same transaction; if the state changed under it (a
    /// key's version is gone), nothing of its state is kept and it is
    /// recorded `failed`, saying so. Returns why, for such a run (`None`:
    /// recorded as the report says).
    pub async fn finish(
        &self,
        id: &str,
        report: &RunReport,
        dry_run: bool,
        plan: Option<&[PlanEntry]>,
        input: Option<&serde_json::Value>,
    ) -> Result<Option<String>, HistoryError> {
        let at = level_api::clock::now();
        let status = RunStatus::of(report);
        let mut statements = vec![
            sql::finish(
                id,
                status,
                Ended::of(report, plan),
                dry_run,
                input.map(ToString::to_string),
                &at,
            ),
            sql::release_held(id),
        ];
        if status == RunStatus::Ok && !dry_run {
            statements.extend(
                report
                    .state
                    .iter()
                    .filter_map(|change| sql::state_commit(&report.plugin, change, id, &at)),
            );
        }
        match self.backend.write(statements).await {
            Ok(_) => Ok(None),
            Err(HistoryError {
                source: HistoryCause::StateChanged { what, key },
                ..
            }) => {
                let why = format!(
                    "the plugin's state changed under the run ({what}: {key:?}); none of its state writes were kept"
                );
                self.finish_failed(id, report, dry_run, plan, input, &why)
                    .await?;
                Ok(Some(why))
            }
            Err(e) => Err(e),
        }
    }

    /// Records a run that ended `ok` as failed after all, and why.
    async fn finish_failed(
        &self,
        id: &str,
        report: &RunReport,
        dry_run: bool,
        plan: Option<&[PlanEntry]>,
        input: Option<&serde_json::Value>,
        why: &str,
    ) -> Result<(), HistoryError> {
        let at = level_api::clock::now();
        let mut ended = Ended::of(report, plan);
        ended.output = None;
        ended.error = Some(why.to_owned());
        let q = sql::finish(
            id,
            RunStatus::Failed,
            ended,
            dry_run,
            input.map(ToString::to_string),
            &at,
        );
        self.end(id, q).await
    }

    /// Records a run whose plan is over its plugin's approval policy: it
    /// waits, with its plan and input, until `expires_at`.
    pub async fn await_approval(
        &self,
        id: &str,
        report: &RunReport,
        input: &serde_json::Value,
        needed: &[String],
        expires_at: &str,
    ) -> Result<(), HistoryError> {
        let q = sql::await_approval(
            id,
            Ended::of(report, Some(&report.plan)),
            input.to_string(),
            serde_json::json!(needed).to_string(),
            expires_at,
        );
        self.end(id, q).await
    }

    /// Approves or rejects a waiting plan, atomically: only a run still
    /// `awaiting-approval` and not past its expiry changes, so two people
    /// deciding at once (on any replicas) decide once, and a plan is
    /// approved at most once.
    pub async fn decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Decided, HistoryError> {
        let at = level_api::clock::now();
        let done = self
            .backend
            .write(vec![
                sql::expire_if_overdue(id, &at),
                sql::decide(id, approve, by, reason, &at),
                sql::status(id),
            ])
            .await?;
        let [expired, decided, status] = done.as_slice() else {
            return Err(self.error(HistoryCause::Answer("three outcomes for three statements")));
        };
        if let Some(row) = expired.rows.first() {
            return Ok(Decided::Expired(row.string(0).map_err(|e| self.error(e))?));
        }
        if decided.changed == 1 {
            return Ok(Decided::Done);
        }
        Ok(match status.rows.first() {
            Some(row) => Decided::NotWaiting(row.string(0).map_err(|e| self.error(e))?),
            None => Decided::Unknown,
        })
    }

    /// Marks every waiting plan past its expiry as expired; returns the
    /// (run, plugin) of each.
    pub async fn expire_overdue(&self) -> Result<Vec<(String, String)>, HistoryError> {
        self.write_rows(
            sql::expire_overdue(&level_api::clock::now()),
            sql::id_and_plugin,
        )
        .await
    }

    /// Takes an approved run to apply it: `running` again, atomically, so
    /// it is applied once however many hosts or commands try. `None` when the
    /// run is not (or no longer) approved.
    pub async fn start_approved(&self, id: &str) -> Result<Option<RunRow>, HistoryError> {
        self.backend.register().await?;
        let q = sql::start_approved(id, self.backend.replica());
        Ok(self.write_rows(q, sql::run_row).await?.into_iter().next())
    }

    /// Records a run that could not start (bad input, a scope Level does not match).
    pub async fn fail(&self, id: &str, error: &str) -> Result<(), HistoryError> {
        let q = sql::fail(id, error, &level_api::clock::now());
        self.end(id, q).await
    }

    /// Records a claimed run that was not started after all, and why.
    pub async fn skip_claimed(&self, id: &str, why: &str) -> Result<(), HistoryError> {
        let q = sql::end_running(id, RunStatus::Skipped, why, &level_api::clock::now());
        self.end(id, q).await
    }

    /// Takes the plugin's lease for `holder` (a run) for `lease`, so no other
    /// process sharing this history (a `serve`, a replica, a `levelhost run`
    /// or `apply`) runs the plugin at once; `false` while another run holds
    /// it, the lease has not lapsed and that run is still `running` (a run a
    /// crash cut off, once recorded `interrupted`, holds nothing).
    pub async fn take_lease(
        &self,
        plugin: &str,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<bool, HistoryError> {
        let q = self.backend.take_lease(plugin, holder, lease);
        Ok(self.execute(q).await? == 1)
    }

    /// Extends `holder`'s lease of the plugin by `lease` from now; `false`
    /// when it no longer holds it.
    pub async fn renew_lease(
        &self,
        plugin: &str,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<bool, HistoryError> {
        let q = self.backend.renew_lease(plugin, holder, lease);
        Ok(self.execute(q).await? == 1)
    }

    /// Gives the plugin's lease back.
    pub async fn release_lease(&self, plugin: &str, holder: &str) -> Result<(), HistoryError> {
        self.execute(sql::release_lease(plugin, holder))
            .await
            .map(drop)
    }

    /// At start-up: marks runs a crash left `running` as interrupted (in a
    /// shared history, only those of replicas no longer alive).
    pub async fn interrupt_running(&self, why: &str) -> Result<usize, HistoryError> {
        self.backend.interrupt_running(why).await
    }

    /// Marks one run as interrupted.
    pub async fn interrupt(&self, id: &str, why: &str) -> Result<(), HistoryError> {
        let q = sql::end_running(id, RunStatus::Interrupted, why, &level_api::clock::now());
        self.end(id, q).await
    }

    /// The latest planned time recorded for a schedule.
    pub async fn last_planned(
        &self,
        plugin: &str,
        schedule: &str,
    ) -> Result<Option<String>, HistoryError> {
        let found = self
            .read(sql::last_planned(plugin, schedule), |r| r.text(0))
            .await?;
        Ok(found.into_iter().next().flatten())
    }

    /// Records a webhook delivery and what became of it.
    pub async fn record_delivery(
        &self,
        plugin: &str,
        event_id: Option<&str>,
        verdict: &str,
        detail: &str,
    ) -> Result<(), HistoryError> {
        let q = sql::insert_delivery(plugin, event_id, verdict, detail, &level_api::clock::now());
        self.execute(q).await.map(drop)
    }

    /// Deliveries of a plugin: (event id, verdict, detail), oldest first.
    pub async fn deliveries(
        &self,
        plugin: &str,
    ) -> Result<Vec<(Option<String>, String, String)>, HistoryError> {
        self.read(sql::deliveries(plugin), sql::delivery).await
    }

    /// Runs, newest first, optionally of one plugin and one status.
    pub async fn list(
        &self,
        plugin: Option<&str>,
        status: Option<RunStatus>,
        limit: usize,
    ) -> Result<Vec<RunRow>, HistoryError> {
        self.read(sql::list(plugin, status, limit), sql::run_row)
            .await
    }

    /// One run.
    pub async fn get(&self, id: &str) -> Result<Option<RunRow>, HistoryError> {
        Ok(self
            .read(sql::get(id), sql::run_row)
            .await?
            .into_iter()
            .next())
    }

    /// The database's own soundness check: `ok` when sound.
    pub async fn integrity_check(&self) -> Result<String, HistoryError> {
        self.backend.integrity_check().await
    }

    /// Whether the database answers at all (cheap: for `/healthz`).
    pub async fn ping(&self) -> Result<(), HistoryError> {
        self.read(sql::ping(), |r| r.int(0)).await.map(drop)
    }

    /// This process's replica id, in a history replicas share.
    pub fn replica(&self) -> Option<&str> {
        self.backend.replica()
    }

    /// Says this replica is alive (a shared history), and marks the runs of
    /// replicas silent for longer than `lease` as interrupted; returns how many.
    pub async fn heartbeat(&self, lease: std::time::Duration) -> Result<usize, HistoryError> {
        self.backend.heartbeat(lease).await
    }

    /// The replicas sharing this history, most recently heard from first
    /// (none in a history of one process).
    pub async fn replicas(&self) -> Result<Vec<ReplicaRow>, HistoryError> {
        self.backend.replicas().await
    }

    /// Says this replica runs no more schedules (it is shutting down), so the
    /// others take its schedules over at their next heartbeat.
    pub async fn stop_scheduling(&self) -> Result<(), HistoryError> {
        self.backend.stop_scheduling().await
    }

    /// The ids of the replicas running schedules (`serve`s that heartbeat)
    /// heard from within `lease`, in order (none in a history of one
    /// process): those the schedules are shared among. A `levelhost run`
    /// sharing the history is alive too, but owns no schedule.
    pub async fn live_replicas(
        &self,
        lease: std::time::Duration,
    ) -> Result<Vec<String>, HistoryError> {
        self.backend.live_replicas(lease).await
    }
}

/// A plugin's state, as operators see it (`levelhost state`, the console).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateEntry {
    /// The key.
    pub key: String,
    /// The value, as UTF-8 text when it is text.
    pub text: Option<String>,
    /// The value's bytes.
    pub bytes: usize,
    /// Its version.
    pub version: u64,
}

impl StateEntry {
    /// An entry as operators see it.
    pub fn of(key: String, value: StoredValue) -> Self {
        Self {
            key,
            bytes: value.value.len(),
            text: String::from_utf8(value.value).ok(),
            version: value.version,
        }
    }
}

impl History {
    /// A plugin's committed state entries whose keys start with `prefix`,
    /// after `after`, in byte order of their keys, at most `limit`, with
    /// their values.
    pub async fn state_entries(
        &self,
        plugin: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, StoredValue)>, HistoryError> {
        let rows = self
            .read(
                sql::state_list(plugin, prefix, after, limit),
                sql::state_entry,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(key, value, version)| {
                (
                    key,
                    StoredValue {
                        value,
                        version: u64::try_from(version).unwrap_or(0),
                    },
                )
            })
            .collect())
    }

    /// Sets a key of a plugin's state, whatever it held, as an operator
    /// (`by`) does; returns its new version.
    pub async fn set_state(
        &self,
        plugin: &str,
        key: &str,
        value: &[u8],
        by: &str,
    ) -> Result<i64, HistoryError> {
        let q = sql::state_put(plugin, key, value, by, &level_api::clock::now());
        let versions = self.write_rows(q, |r| r.int(0)).await?;
        Ok(versions.first().copied().unwrap_or(0))
    }

    /// Deletes a key of a plugin's state; returns whether it had a value.
    pub async fn delete_state(&self, plugin: &str, key: &str) -> Result<bool, HistoryError> {
        Ok(self.execute(sql::state_remove(plugin, key)).await? == 1)
    }

    /// Removes every key of a plugin's state; returns how many there were.
    pub async fn purge_state(&self, plugin: &str) -> Result<u64, HistoryError> {
        self.execute(sql::state_purge(plugin)).await
    }

    /// How much state a plugin holds.
    pub async fn state_usage(&self, plugin: &str) -> Result<StateUsage, HistoryError> {
        let found = self
            .read(sql::state_usage(plugin), |r| {
                Ok(StateUsage {
                    keys: u64::try_from(r.int(0)?).unwrap_or(0),
                    bytes: u64::try_from(r.int(1)?).unwrap_or(0),
                })
            })
            .await?;
        Ok(found.into_iter().next().unwrap_or_default())
    }
}

/// The history is where runs read their plugin's committed state.
impl StateStore for History {
    fn get<'a>(&'a self, plugin: &'a str, key: &'a str) -> StateFuture<'a, Option<StoredValue>> {
        Box::pin(async move {
            let found = self
                .read(sql::state_get(plugin, key), |r| {
                    Ok(StoredValue {
                        value: r.bytes(0)?,
                        version: u64::try_from(r.int(1)?).unwrap_or(0),
                    })
                })
                .await
                .map_err(|e| StateStoreError(Box::new(e)))?;
            Ok(found.into_iter().next())
        })
    }

    fn list<'a>(
        &'a self,
        plugin: &'a str,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: u32,
    ) -> StateFuture<'a, Vec<(String, StoredValue)>> {
        Box::pin(async move {
            self.state_entries(plugin, prefix, after, limit)
                .await
                .map_err(|e| StateStoreError(Box::new(e)))
        })
    }

    fn usage<'a>(&'a self, plugin: &'a str) -> StateFuture<'a, StateUsage> {
        Box::pin(async move {
            self.state_usage(plugin)
                .await
                .map_err(|e| StateStoreError(Box::new(e)))
        })
    }
}

/// What a finished run records, as the history's columns hold it.
struct Ended {
    output: Option<String>,
    error: Option<String>,
    logs: Option<String>,
    plan: Option<String>,
    api_calls: i64,
    writes: i64,
    devices_changed: i64,
    /// How an approved run parted from its plan (writes denied, planned writes not made).
    divergence: Option<String>,
}

impl Ended {
    fn of(report: &RunReport, plan: Option<&[PlanEntry]>) -> Self {
        let (output, error) = match &report.outcome {
            Ok(out) => (Some(out.to_string()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let logged =
            !report.logs.is_empty() || !report.stdout.is_empty() || !report.stderr.is_empty();
        Self {
            output,
            error,
            logs: logged.then(|| {
                serde_json::json!({"log": report.logs, "stdout": report.stdout, "stderr": report.stderr})
                    .to_string()
            }),
            plan: plan.map(|p| serde_json::json!(p).to_string()),
            api_calls: report.api_calls as i64,
            writes: report.writes as i64,
            devices_changed: report.devices_changed as i64,
            divergence: (!report.divergence.is_empty() || !report.unapplied.is_empty()).then(
                || {
                    serde_json::json!({"denied": report.divergence, "unapplied": report.unapplied})
                        .to_string()
                },
            ),
        }
    }
}
