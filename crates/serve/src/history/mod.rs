//! Durable run history in SQLite (WAL): every run, what started it, how it
//! ended. A scheduled run is keyed by (plugin, schedule, planned time) and an
//! event run by (plugin, event id), with unique indexes, so neither can
//! start twice, even across a crash and restart.
//!
//! Every write goes to one writer thread, which commits whatever writes are
//! waiting together, in one transaction with one fsync (`synchronous=FULL`):
//! a write returns only once it is durable, and a burst of writes (a flood
//! of webhook deliveries) shares fsyncs instead of queueing for one each.
//! Each write runs in its own savepoint, so one that fails changes nothing
//! and leaves the others of its batch alone. Reads use their own connection.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use levelhost_runtime::level::PlanEntry;
use levelhost_runtime::runner::{RunFailure, RunReport};

mod origin;
mod postgres;

pub use origin::Origin;
pub use postgres::{PgAudit, PgRateBudgets};

/// Why a plan that waited too long was not applied, as its run records it.
pub const EXPIRED: &str = "the plan was not approved in time; nothing was applied";

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
    /// The writer thread (or the PostgreSQL runtime) is gone.
    #[error("the history writer stopped")]
    WriterStopped,
    /// PostgreSQL refused or failed.
    #[error(transparent)]
    Postgres(tokio_postgres::Error),
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

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?}; one of {}",
                    RunStatus::ALL.map(RunStatus::as_str).join(", ")
                )
            })
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
    /// How the delivery of run `id`'s event is recorded after this claim: its verdict and detail.
    fn delivery(self, id: &str) -> (&'static str, String) {
        match self {
            Claim::Started => ("accepted", id.to_owned()),
            Claim::AlreadyClaimed => ("duplicate", "this event already started a run".to_owned()),
        }
    }
}

/// What a history keeps and answers, whichever database holds it: SQLite
/// (embedded, the default) or PostgreSQL (shared by several `serve`
/// replicas). Every write is durable when it returns.
pub trait HistoryBackend: Send + Sync + std::fmt::Debug {
    /// Records a run as running, unless its (schedule, planned time) or event already has one.
    fn claim(
        &self,
        id: &str,
        plugin: &str,
        version: &str,
        digest: &str,
        origin: &Origin,
    ) -> Result<Claim, HistoryError>;
    /// Claims an event's run and records its delivery in one transaction.
    fn claim_delivery(
        &self,
        id: &str,
        plugin: &str,
        version: &str,
        digest: &str,
        origin: &Origin,
    ) -> Result<Claim, HistoryError>;
    /// Records a planned run that was not started, and why.
    fn record_skip(
        &self,
        id: &str,
        plugin: &str,
        origin: &Origin,
        why: &str,
    ) -> Result<Claim, HistoryError>;
    /// Records how a run ended.
    fn finish(
        &self,
        id: &str,
        report: &RunReport,
        dry_run: bool,
        plan: Option<&[PlanEntry]>,
        input: Option<&serde_json::Value>,
    ) -> Result<(), HistoryError>;
    /// Records a run whose plan waits for approval until `expires_at`.
    fn await_approval(
        &self,
        id: &str,
        report: &RunReport,
        input: &serde_json::Value,
        needed: &[String],
        expires_at: &str,
    ) -> Result<(), HistoryError>;
    /// Approves or rejects a waiting plan, atomically.
    fn decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Decided, HistoryError>;
    /// Marks waiting plans past their expiry as expired; returns (run, plugin) of each.
    fn expire_overdue(&self) -> Result<Vec<(String, String)>, HistoryError>;
    /// Takes an approved run to apply it, atomically; `None` when it is not approved.
    fn start_approved(&self, id: &str) -> Result<Option<RunRow>, HistoryError>;
    /// Records a run that could not start.
    fn fail(&self, id: &str, error: &str) -> Result<(), HistoryError>;
    /// Records a claimed run that was not started after all, and why.
    fn skip_claimed(&self, id: &str, why: &str) -> Result<(), HistoryError>;
    /// Takes the plugin's lease for `holder` (a run) for `lease`, so no other
    /// process sharing this history (a `serve`, a replica, a `levelhost run`
    /// or `apply`) runs the plugin at once; `false` while another run holds
    /// it, the lease has not lapsed and that run is still `running` (a run a
    /// crash cut off, once recorded `interrupted`, holds nothing).
    fn take_lease(
        &self,
        plugin: &str,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<bool, HistoryError>;
    /// Extends `holder`'s lease of the plugin by `lease` from now; `false`
    /// when it no longer holds it.
    fn renew_lease(
        &self,
        plugin: &str,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<bool, HistoryError>;
    /// Gives the plugin's lease back.
    fn release_lease(&self, plugin: &str, holder: &str) -> Result<(), HistoryError>;
    /// At start-up: marks runs a crash left `running` as interrupted (in a
    /// shared history, only those of replicas no longer alive).
    fn interrupt_running(&self, why: &str) -> Result<usize, HistoryError>;
    /// Marks one run as interrupted.
    fn interrupt(&self, id: &str, why: &str) -> Result<(), HistoryError>;
    /// The latest planned time recorded for a schedule.
    fn last_planned(&self, plugin: &str, schedule: &str) -> Result<Option<String>, HistoryError>;
    /// Records a webhook delivery and what became of it.
    fn record_delivery(
        &self,
        plugin: &str,
        event_id: Option<&str>,
        verdict: &str,
        detail: &str,
    ) -> Result<(), HistoryError>;
    /// Deliveries of a plugin: (event id, verdict, detail), oldest first.
    fn deliveries(
        &self,
        plugin: &str,
    ) -> Result<Vec<(Option<String>, String, String)>, HistoryError>;
    /// Runs, newest first, optionally of one plugin and one status.
    fn list(
        &self,
        plugin: Option<&str>,
        status: Option<RunStatus>,
        limit: usize,
    ) -> Result<Vec<RunRow>, HistoryError>;
    /// One run.
    fn get(&self, id: &str) -> Result<Option<RunRow>, HistoryError>;
    /// The database's own soundness check: `ok` when sound.
    fn integrity_check(&self) -> Result<String, HistoryError>;
    /// Whether the database answers at all (cheap: for `/healthz`).
    fn ping(&self) -> Result<(), HistoryError>;
    /// This process's replica id, in a history replicas share.
    fn replica(&self) -> Option<&str> {
        None
    }
    /// Says this replica is alive (a shared history), and marks the runs of
    /// replicas silent for longer than `lease` as interrupted; returns how many.
    fn heartbeat(&self, lease: std::time::Duration) -> Result<usize, HistoryError> {
        let _ = lease;
        Ok(0)
    }
    /// The replicas sharing this history, most recently heard from first
    /// (none in a history of one process).
    fn replicas(&self) -> Result<Vec<ReplicaRow>, HistoryError> {
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

/// The run history, in whichever database the config names.
pub struct History {
    backend: Box<dyn HistoryBackend>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.backend.fmt(f)
    }
}

impl std::ops::Deref for History {
    type Target = dyn HistoryBackend;
    fn deref(&self) -> &Self::Target {
        &*self.backend
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
    pub fn connect(location: &HistoryLocation) -> Result<Self, HistoryError> {
        match location {
            HistoryLocation::Sqlite(path) => Self::open(path),
            HistoryLocation::Postgres { url, password } => Ok(Self {
                backend: Box::new(postgres::PgHistory::connect(url, password.as_deref())?),
            }),
        }
    }
}

/// The run history in SQLite: the embedded default.
#[derive(Debug)]
pub struct SqliteHistory {
    path: PathBuf,
    /// Reads.
    conn: Mutex<Connection>,
    /// Writes, to the writer thread.
    writes: Mutex<mpsc::Sender<Write>>,
}

/// One write: it runs its statements on the writer's connection (inside a
/// savepoint) and says whether they succeeded; the finisher it returns is
/// handed the batch's commit outcome and answers the caller.
type Write = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;
type Finish = Box<dyn FnOnce(Result<(), std::sync::Arc<rusqlite::Error>>) + Send>;

/// Writes committed together at most.
const MAX_BATCH: usize = 512;

/// The writer thread: takes every write waiting, runs each in a savepoint of
/// one transaction, commits once, and answers each.
fn writer(mut conn: Connection, writes: mpsc::Receiver<Write>) {
    while let Ok(first) = writes.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match writes.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                // The writes are dropped unanswered: each caller gets an error.
                tracing::error!("history: cannot begin a transaction: {e}");
                continue;
            }
        };
        let mut finishers = Vec::with_capacity(batch.len());
        let mut tx = tx;
        for write in batch {
            let finish = match tx.savepoint() {
                Ok(sp) => {
                    let (ok, finish) = write(&sp);
                    let released = if ok { sp.commit() } else { sp.finish() };
                    if let Err(e) = released {
                        tracing::error!("history: savepoint: {e}");
                    }
                    finish
                }
                Err(e) => {
                    let why = e.to_string();
                    Box::new(move |_: Result<(), std::sync::Arc<rusqlite::Error>>| {
                        tracing::error!("history: cannot open a savepoint: {why}");
                    })
                }
            };
            finishers.push(finish);
        }
        let committed = tx.commit().map_err(std::sync::Arc::new);
        for finish in finishers {
            finish(committed.clone());
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    plugin TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    digest TEXT NOT NULL DEFAULT '',
    trigger TEXT NOT NULL,
    schedule TEXT,
    planned_at TEXT,
    event_id TEXT,
    event_type TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    api_calls INTEGER NOT NULL DEFAULT 0,
    writes INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_planned ON runs(plugin, schedule, planned_at) WHERE planned_at IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS runs_event ON runs(plugin, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_plugin ON runs(plugin, started_at);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    plugin TEXT NOT NULL,
    event_id TEXT,
    received_at TEXT NOT NULL,
    verdict TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    plugin TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
";

/// Milliseconds since the Unix epoch, `ahead` from now: lease times in SQLite.
fn epoch_ms(ahead: std::time::Duration) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from((now + ahead).as_millis()).unwrap_or(i64::MAX)
}

use level_api::clock::now;

impl SqliteHistory {
    /// Opens (or creates) the database, in WAL mode with full sync, and starts its writer.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        let err = |e: rusqlite::Error| HistoryError {
            path: path.to_owned(),
            source: e.into(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| HistoryError {
                path: path.to_owned(),
                source: e.into(),
            })?;
        }
        let connect = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            // First, so that every statement after it (switching to WAL
            // included) waits for another process's lock instead of failing.
            conn.busy_timeout(OPEN_WAIT)?;
            use_wal(&conn)?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            Ok(conn)
        };
        let mut write_conn = connect().map_err(err)?;
        create_schema(&mut write_conn).map_err(err)?;
        let read_conn = connect().map_err(err)?;
        let (writes, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("levelhost-history".to_owned())
            .spawn(move || writer(write_conn, queue))
            .map_err(|e| HistoryError {
                path: path.to_owned(),
                source: e.into(),
            })?;
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(read_conn),
            writes: Mutex::new(writes),
        })
    }

    fn error(&self, source: HistoryCause) -> HistoryError {
        HistoryError {
            path: self.path.clone(),
            source,
        }
    }

    /// A read, on the read connection.
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, HistoryError> {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&conn).map_err(|e| self.error(e.into()))
    }

    /// A write, through the writer: returns once it is committed (with
    /// whatever other writes were waiting) and synced.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let write: Write = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |committed| {
                let _ = reply.send(match (result, committed) {
                    (Err(e), _) => Err(HistoryCause::Sqlite(e)),
                    (Ok(_), Err(why)) => Err(HistoryCause::Commit(why)),
                    (Ok(value), Ok(())) => Ok(value),
                });
            });
            (ok, finish)
        });
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(write)
            .map_err(|_| self.error(HistoryCause::WriterStopped))?;
        answer
            .recv()
            .map_err(|_| self.error(HistoryCause::WriterStopped))?
            .map_err(|source| self.error(source))
    }
}

impl HistoryBackend for SqliteHistory {
    /// Records a run as running, unless its (schedule, planned time) or event already has one.
    fn claim(
        &self,
        id: &str,
        plugin: &str,
        version: &str,
        digest: &str,
        origin: &Origin,
    ) -> Result<Claim, HistoryError> {
        let run = NewRun::new(id, plugin, version, digest, origin);
        self.write(move |c| run.insert(c))
    }

    /// Claims an event's run and records its delivery in one transaction:
    /// `accepted` with the run's id, or `duplicate` when the event already
    /// started a run.
    fn claim_delivery(
        &self,
        id: &str,
        plugin: &str,
        version: &str,
        digest: &str,
        origin: &Origin,
    ) -> Result<Claim, HistoryError> {
        let run = NewRun::new(id, plugin, version, digest, origin);
        self.write(move |c| {
            let claim = run.insert(c)?;
            let (verdict, detail) = claim.delivery(&run.id);
            insert_delivery(
                c,
                &run.plugin,
                run.origin.event_id.as_deref(),
                verdict,
                &detail,
            )?;
            Ok(claim)
        })
    }

    /// Records a planned run that was not started because the previous one was still running.
    fn record_skip(
        &self,
        id: &str,
        plugin: &str,
        origin: &Origin,
        why: &str,
    ) -> Result<Claim, HistoryError> {
        let run = NewRun::new(id, plugin, "", "", origin);
        let why = why.to_owned();
        self.write(move |c| {
            let origin = &run.origin;
            let at = now();
            let inserted = c.execute(
                "INSERT OR IGNORE INTO runs (id, plugin, trigger, schedule, planned_at, event_id, event_type, started_at, ended_at, status, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 'skipped', ?9)",
                params![run.id, run.plugin, origin.trigger, origin.schedule, origin.planned_at, origin.event_id, origin.event_type, at, why],
            )?;
            Ok(if inserted == 1 { Claim::Started } else { Claim::AlreadyClaimed })
        })
    }

    /// Records how a run ended, with what it logged and its plan: a dry
    /// run's own, or the plan a run was held to (`None` keeps the one recorded).
    fn finish(
        &self,
        id: &str,
        report: &RunReport,
        dry_run: bool,
        plan: Option<&[PlanEntry]>,
        input: Option<&serde_json::Value>,
    ) -> Result<(), HistoryError> {
        let status = RunStatus::of(report);
        let input = input.map(ToString::to_string);
        let ended = Ended::of(report, plan);
        let id = id.to_owned();
        self.write(move |c| {
            c.execute(
                "UPDATE runs SET ended_at = ?2, status = ?3, output = ?4, error = ?5, api_calls = ?6, writes = ?7, dry_run = ?8, logs = ?9,
                 plan = COALESCE(?10, plan), devices_changed = ?11, divergence = ?12, input = COALESCE(?13, input) WHERE id = ?1",
                params![id, now(), status.as_str(), ended.output, ended.error, ended.api_calls, ended.writes, dry_run, ended.logs, ended.plan, ended.devices_changed, ended.divergence, input],
            )
            .map(drop)
        })
    }

    /// Records a run whose plan is over its plugin's approval policy: it
    /// waits, with its plan and input, until `expires_at`.
    fn await_approval(
        &self,
        id: &str,
        report: &RunReport,
        input: &serde_json::Value,
        needed: &[String],
        expires_at: &str,
    ) -> Result<(), HistoryError> {
        let ended = Ended::of(report, Some(&report.plan));
        let (id, input, needed, expires_at) = (
            id.to_owned(),
            input.to_string(),
            serde_json::json!(needed).to_string(),
            expires_at.to_owned(),
        );
        self.write(move |c| {
            c.execute(
                "UPDATE runs SET status = 'awaiting-approval', output = ?2, error = ?3, api_calls = ?4, writes = ?5, dry_run = 1, logs = ?6,
                 plan = ?7, devices_changed = ?8, input = ?9, approval_needed = ?10, expires_at = ?11 WHERE id = ?1 AND status = 'running'",
                params![id, ended.output, ended.error, ended.api_calls, ended.writes, ended.logs, ended.plan, ended.devices_changed, input, needed, expires_at],
            )
            .map(drop)
        })
    }

    /// Approves or rejects a waiting plan, atomically: only a run still
    /// `awaiting-approval` and not past its expiry changes, so two people
    /// deciding at once decide once, and a plan is approved at most once.
    fn decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Decided, HistoryError> {
        let (id, by, reason) = (id.to_owned(), by.to_owned(), reason.map(str::to_owned));
        self.write(move |c| {
            let found: Option<(String, Option<String>)> = c
                .query_row(
                    "SELECT status, expires_at FROM runs WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let at = now();
            match found {
                None => Ok(Decided::Unknown),
                Some((status, _)) if status != RunStatus::AwaitingApproval.as_str() => {
                    Ok(Decided::NotWaiting(status))
                }
                Some((_, Some(expires))) if expires <= at => {
                    expire(c, &id, &at)?;
                    Ok(Decided::Expired(expires))
                }
                Some(_) => {
                    let (status, decision) = if approve {
                        ("approved", "approved")
                    } else {
                        ("rejected", "rejected")
                    };
                    c.execute(
                        "UPDATE runs SET status = ?2, decision = ?3, decided_by = ?4, decided_at = ?5, decision_reason = ?6,
                         ended_at = CASE WHEN ?2 = 'rejected' THEN ?5 ELSE ended_at END WHERE id = ?1",
                        params![id, status, decision, by, at, reason],
                    )?;
                    Ok(Decided::Done)
                }
            }
        })
    }

    /// Marks every waiting plan past its expiry as expired; returns the
    /// (run, plugin) of each.
    fn expire_overdue(&self) -> Result<Vec<(String, String)>, HistoryError> {
        self.write(|c| {
            let at = now();
            let mut stmt = c.prepare(
                "SELECT id, plugin FROM runs WHERE status = 'awaiting-approval' AND expires_at <= ?1",
            )?;
            let due: Vec<(String, String)> = stmt
                .query_map(params![at], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (id, _) in &due {
                expire(c, id, &at)?;
            }
            Ok(due)
        })
    }

    /// Takes an approved run to apply it: `running` again, atomically, so
    /// it is applied once however many hosts or commands try. `None` when the
    /// run is not (or no longer) approved.
    fn start_approved(&self, id: &str) -> Result<Option<RunRow>, HistoryError> {
        let id = id.to_owned();
        self.write(move |c| {
            let taken = c.execute(
                "UPDATE runs SET status = 'running', dry_run = 0 WHERE id = ?1 AND status = 'approved'",
                params![id],
            )?;
            if taken == 0 {
                return Ok(None);
            }
            c.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                params![id],
                row,
            )
            .optional()
        })
    }

    /// Records a run that could not start (bad input, a scope Level does not match).
    fn fail(&self, id: &str, error: &str) -> Result<(), HistoryError> {
        let (id, error) = (id.to_owned(), error.to_owned());
        self.write(move |c| {
            c.execute(
                "UPDATE runs SET ended_at = ?2, status = 'failed', error = ?3 WHERE id = ?1",
                params![id, now(), error],
            )
            .map(drop)
        })
    }

    /// Marks every run still recorded as running as interrupted; returns how many.
    /// Called at start-up (after a crash) and at shutdown (for runs cut off).
    fn interrupt_running(&self, why: &str) -> Result<usize, HistoryError> {
        let why = why.to_owned();
        self.write(move |c| {
            c.execute(
                "UPDATE runs SET status = 'interrupted', ended_at = ?1, error = ?2 WHERE status = 'running'",
                params![now(), why],
            )
        })
    }

    /// Marks one run as interrupted.
    fn interrupt(&self, id: &str, why: &str) -> Result<(), HistoryError> {
        let (id, why) = (id.to_owned(), why.to_owned());
        self.write(move |c| {
            c.execute(
                "UPDATE runs SET status = 'interrupted', ended_at = ?2, error = ?3 WHERE id = ?1 AND status = 'running'",
                params![id, now(), why],
            )
            .map(drop)
        })
    }

    /// The latest planned time recorded for a schedule.
    fn last_planned(&self, plugin: &str, schedule: &str) -> Result<Option<String>, HistoryError> {
        self.with(|c| {
            c.query_row(
                "SELECT max(planned_at) FROM runs WHERE plugin = ?1 AND schedule = ?2",
                params![plugin, schedule],
                |r| r.get::<_, Option<String>>(0),
            )
        })
    }

    /// Records a webhook delivery and what became of it.
    fn record_delivery(
        &self,
        plugin: &str,
        event_id: Option<&str>,
        verdict: &str,
        detail: &str,
    ) -> Result<(), HistoryError> {
        let (plugin, event_id, verdict, detail) = (
            plugin.to_owned(),
            event_id.map(str::to_owned),
            verdict.to_owned(),
            detail.to_owned(),
        );
        self.write(move |c| insert_delivery(c, &plugin, event_id.as_deref(), &verdict, &detail))
    }

    /// Deliveries of a plugin: (event id, verdict, detail), oldest first.
    fn deliveries(
        &self,
        plugin: &str,
    ) -> Result<Vec<(Option<String>, String, String)>, HistoryError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT event_id, verdict, detail FROM deliveries WHERE plugin = ?1 ORDER BY id",
            )?;
            let rows =
                stmt.query_map(params![plugin], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }

    /// Runs, newest first, optionally of one plugin and one status.
    fn list(
        &self,
        plugin: Option<&str>,
        status: Option<RunStatus>,
        limit: usize,
    ) -> Result<Vec<RunRow>, HistoryError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR plugin = ?1) AND (?2 IS NULL OR status = ?2)
                 ORDER BY started_at DESC, rowid DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![plugin, status.map(RunStatus::as_str), limit as i64], row)?;
            rows.collect()
        })
    }

    /// One run.
    fn get(&self, id: &str) -> Result<Option<RunRow>, HistoryError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                params![id],
                row,
            )
            .optional()
        })
    }

    /// SQLite's own integrity check: `ok` when the database is sound.
    fn integrity_check(&self) -> Result<String, HistoryError> {
        self.with(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
    }

    fn ping(&self) -> Result<(), HistoryError> {
        self.with(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .map(drop)
    }

    fn skip_claimed(&self, id: &str, why: &str) -> Result<(), HistoryError> {
        let (id, why) = (id.to_owned(), why.to_owned());
        self.write(move |c| {
            c.execute(
                "UPDATE runs SET status = 'skipped', ended_at = ?2, error = ?3 WHERE id = ?1 AND status = 'running'",
                params![id, now(), why],
            )
            .map(drop)
        })
    }

    fn take_lease(
        &self,
        plugin: &str,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<bool, HistoryError> {
        let (plugin, holder) = (plugin.to_owned(), holder.to_owned());
        let (now, until) = (epoch_ms(std::time::Duration::ZERO), epoch_ms(lease));
        self.write(move |c| {
            c.execute(
                "INSERT INTO leases (plugin, holder, expires_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (plugin) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms
                 WHERE leases.expires_at_ms < ?4 OR leases.holder = excluded.holder
                    OR NOT EXISTS (SELECT 1 FROM runs WHERE runs.id = leases.holder AND runs.status = 'running')",
                params![plugin, holder, until, now],
            )
            .map(|n| n == 1)
        })
    }

    fn renew_lease(
        &self,
        plugin: &str,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<bool, HistoryError> {
        let (plugin, holder, until) = (plugin.to_owned(), holder.to_owned(), epoch_ms(lease));
        self.write(move |c| {
            c.execute(
                "UPDATE leases SET expires_at_ms = ?3 WHERE plugin = ?1 AND holder = ?2",
                params![plugin, holder, until],
            )
            .map(|n| n == 1)
        })
    }

    fn release_lease(&self, plugin: &str, holder: &str) -> Result<(), HistoryError> {
        let (plugin, holder) = (plugin.to_owned(), holder.to_owned());
        self.write(move |c| {
            c.execute(
                "DELETE FROM leases WHERE plugin = ?1 AND holder = ?2",
                params![plugin, holder],
            )
            .map(drop)
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

fn expire(c: &Connection, id: &str, at: &str) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE runs SET status = 'expired', ended_at = ?2, error = ?3
         WHERE id = ?1 AND status = 'awaiting-approval'",
        params![id, at, EXPIRED],
    )
    .map(drop)
}

/// A run about to be claimed, with what it is recorded with.
struct NewRun {
    id: String,
    plugin: String,
    version: String,
    digest: String,
    origin: OriginColumns,
}

impl NewRun {
    fn new(id: &str, plugin: &str, version: &str, digest: &str, origin: &Origin) -> Self {
        Self {
            id: id.to_owned(),
            plugin: plugin.to_owned(),
            version: version.to_owned(),
            digest: digest.to_owned(),
            origin: OriginColumns::of(origin),
        }
    }

    fn insert(&self, c: &Connection) -> rusqlite::Result<Claim> {
        let origin = &self.origin;
        let inserted = c.execute(
            "INSERT OR IGNORE INTO runs (id, plugin, version, digest, trigger, schedule, planned_at, event_id, event_type, started_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'running')",
            params![self.id, self.plugin, self.version, self.digest, origin.trigger, origin.schedule, origin.planned_at, origin.event_id, origin.event_type, now()],
        )?;
        Ok(if inserted == 1 {
            Claim::Started
        } else {
            Claim::AlreadyClaimed
        })
    }
}

fn insert_delivery(
    c: &Connection,
    plugin: &str,
    event_id: Option<&str>,
    verdict: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO deliveries (plugin, event_id, received_at, verdict, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![plugin, event_id, now(), verdict, detail],
    )
    .map(drop)
}

/// Columns added since the first schema, added to an older database at open.
const ADDED_COLUMNS: [(&str, &str); 13] = [
    ("dry_run", "INTEGER NOT NULL DEFAULT 0"),
    ("logs", "TEXT"),
    ("plan", "TEXT"),
    ("input", "TEXT"),
    ("devices_changed", "INTEGER NOT NULL DEFAULT 0"),
    ("approval_needed", "TEXT"),
    ("expires_at", "TEXT"),
    ("decision", "TEXT"),
    ("decided_by", "TEXT"),
    ("decided_at", "TEXT"),
    ("decision_reason", "TEXT"),
    ("divergence", "TEXT"),
    ("replica", "TEXT"),
];

/// How long opening the history waits for another process's lock.
const OPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Puts the database in WAL mode. Switching a new database to WAL needs it
/// to itself, and SQLite answers "locked" at once rather than waiting when
/// another process is switching it too; so this retries, as the busy
/// timeout would, for up to [`OPEN_WAIT`].
fn use_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + OPEN_WAIT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            done => return done,
        }
    }
}

/// Creates the tables and adds missing columns under the database's write
/// lock, so processes opening a new history at the same moment (`serve`
/// starting while `levelhost status` reads) neither collide nor see half a
/// schema.
fn create_schema(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    migrate(&tx)?;
    tx.commit()
}

fn migrate(c: &Connection) -> rusqlite::Result<()> {
    let mut stmt = c.prepare("SELECT name FROM pragma_table_info('runs')")?;
    let have: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, kind) in ADDED_COLUMNS {
        if !have.iter().any(|h| h == name) {
            c.execute_batch(&format!("ALTER TABLE runs ADD COLUMN {name} {kind}"))?;
        }
    }
    Ok(())
}

/// The columns [`row`] reads, in order.
const RUN_COLUMNS: &str = "id, plugin, version, digest, trigger, schedule, planned_at, event_id, event_type, started_at, ended_at, status, output, error, api_calls, writes, dry_run, logs, plan, input, devices_changed, approval_needed, expires_at, decision, decided_by, decided_at, decision_reason, divergence, replica";

fn json_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    Ok(r.get::<_, Option<String>>(i)?
        .and_then(|text| serde_json::from_str(&text).ok()))
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        plugin: r.get(1)?,
        version: r.get(2)?,
        digest: r.get(3)?,
        trigger: r.get(4)?,
        schedule: r.get(5)?,
        planned_at: r.get(6)?,
        event_id: r.get(7)?,
        event_type: r.get(8)?,
        started_at: r.get(9)?,
        ended_at: r.get(10)?,
        status: r.get(11)?,
        output: r.get(12)?,
        error: r.get(13)?,
        api_calls: r.get(14)?,
        writes: r.get(15)?,
        dry_run: r.get(16)?,
        logs: json_column(r, 17)?,
        plan: json_column(r, 18)?,
        input: json_column(r, 19)?,
        devices_changed: r.get(20)?,
        approval: match r.get::<_, Option<String>>(22)? {
            None => None,
            Some(expires_at) => Some(ApprovalRecord {
                needed: json_column(r, 21)?
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default(),
                expires_at,
                decision: r.get(23)?,
                decided_by: r.get(24)?,
                decided_at: r.get(25)?,
                reason: r.get(26)?,
            }),
        },
        divergence: json_column(r, 27)?,
        replica: r.get(28)?,
    })
}
