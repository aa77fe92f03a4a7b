//! The run history in PostgreSQL, shared by every `serve` replica.
//!
//! The same unique indexes as SQLite's make each (plugin, schedule, planned
//! time) and each (plugin, event id) start once across the cluster; every
//! run records the replica that claimed it; replicas heartbeat, and a run
//! claimed by a replica silent for longer than the lease is marked
//! `interrupted` by a survivor. The schema is versioned: migrations run at
//! start-up under an advisory lock, so replicas starting together apply each
//! once.
//!
//! The history's callers are synchronous (they run on tokio's blocking
//! pool), so this backend drives `tokio-postgres` and its `deadpool` pool on
//! a small runtime of its own and waits for each answer.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, Pool};
use tokio_postgres::NoTls;

use super::{
    ApprovalRecord, Claim, Decided, EXPIRED, Ended, HistoryBackend, HistoryCause, HistoryError,
    Origin, OriginColumns, ReplicaRow, RunRow, RunStatus, now,
};
use levelhost_runtime::audit::{AuditCause, AuditError, AuditFilter, AuditRecord, AuditStore};
use levelhost_runtime::level::PlanEntry;
use levelhost_runtime::runner::RunReport;

mod audit;
mod budgets;

pub use audit::PgAudit;
pub use budgets::PgRateBudgets;

/// Each migration, in order: its version and its statements.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "
CREATE TABLE runs (
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
    api_calls BIGINT NOT NULL DEFAULT 0,
    writes BIGINT NOT NULL DEFAULT 0,
    dry_run BOOLEAN NOT NULL DEFAULT FALSE,
    logs TEXT,
    plan TEXT,
    input TEXT,
    devices_changed BIGINT NOT NULL DEFAULT 0,
    approval_needed TEXT,
    expires_at TEXT,
    decision TEXT,
    decided_by TEXT,
    decided_at TEXT,
    decision_reason TEXT,
    divergence TEXT,
    replica TEXT
);
CREATE UNIQUE INDEX runs_planned ON runs(plugin, schedule, planned_at) WHERE planned_at IS NOT NULL;
CREATE UNIQUE INDEX runs_event ON runs(plugin, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX runs_plugin ON runs(plugin, started_at);
CREATE INDEX runs_status ON runs(status);
CREATE TABLE deliveries (
    id BIGSERIAL PRIMARY KEY,
    plugin TEXT NOT NULL,
    event_id TEXT,
    received_at TEXT NOT NULL,
    verdict TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
",
    ),
    (
        2,
        "
CREATE TABLE leases (
    plugin TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    replica TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
",
    ),
    (
        3,
        "
CREATE TABLE rate_budgets (
    key TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    paused_until DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    time TEXT NOT NULL,
    plugin TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    run_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    targets TEXT[] NOT NULL,
    allowed BOOLEAN NOT NULL,
    reason TEXT,
    upstream_status INTEGER,
    latency_ms BIGINT NOT NULL,
    dry_run BOOLEAN NOT NULL,
    requests BIGINT NOT NULL,
    stage TEXT NOT NULL
);
CREATE INDEX audit_run ON audit(run_id);
CREATE INDEX audit_plugin ON audit(plugin, id);
",
    ),
    (
        4,
        "ALTER TABLE audit ADD COLUMN names TEXT NOT NULL DEFAULT '{}';",
    ),
];

/// The key of the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x6c65_7665_6c68_6f73;

/// How long a replica may be silent before its runs are taken as cut off,
/// when nothing says otherwise (at start-up).
const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// A pool of connections driven on a small runtime of its own, for callers
/// that wait for each answer (the history's callers run on tokio's blocking
/// pool or are synchronous).
struct Db {
    pool: Pool,
    runtime: Option<tokio::runtime::Runtime>,
    label: PathBuf,
}

impl Drop for Db {
    fn drop(&mut self) {
        // A runtime may not be dropped in place inside another; let it go in the background.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Db {
    /// Connects (lazily) and applies the migrations not yet applied.
    fn connect(url: &str, password: Option<&str>, size: usize) -> Result<Self, HistoryError> {
        let label = PathBuf::from(url);
        let fail = |source: HistoryCause| HistoryError {
            path: label.clone(),
            source,
        };
        let pool = pool(url, password, size).map_err(fail)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("levelhost-postgres")
            .enable_all()
            .build()
            .map_err(|e| fail(e.into()))?;
        let db = Self {
            pool,
            runtime: Some(runtime),
            label,
        };
        db.block(|pool| async move {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            // Checked rather than `IF NOT EXISTS`, which has the server send a notice each time.
            let made: bool = tx
                .query_one(
                    "SELECT to_regclass('levelhost_migrations') IS NOT NULL",
                    &[],
                )
                .await?
                .try_get(0)?;
            if !made {
                tx.batch_execute(
                    "CREATE TABLE levelhost_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                )
                .await?;
            }
            let applied: Option<i32> = tx
                .query_one("SELECT max(version) FROM levelhost_migrations", &[])
                .await?
                .try_get(0)?;
            for (version, statements) in MIGRATIONS {
                if applied.is_some_and(|a| a >= *version) {
                    continue;
                }
                tx.batch_execute(statements).await?;
                tx.execute(
                    "INSERT INTO levelhost_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })?;
        Ok(db)
    }

    fn error(&self, source: HistoryCause) -> HistoryError {
        HistoryError {
            path: self.label.clone(),
            source,
        }
    }

    /// Runs `f` with the pool on this runtime and waits for it.
    fn block<T, F>(&self, f: impl FnOnce(Pool) -> F) -> Result<T, HistoryError>
    where
        T: Send + 'static,
        F: Future<Output = PgResult<T>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(self.error(HistoryCause::WriterStopped));
        };
        let work = f(self.pool.clone());
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = answer.send(work.await);
        });
        answered
            .recv()
            .map_err(|_| self.error(HistoryCause::WriterStopped))?
            .map_err(|e| self.error(e))
    }
}

/// How often a replica that has made a run says it is alive.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// Registers a replica, or says it is still alive.
const REGISTER: &str =
    "INSERT INTO replicas (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()";

/// A PostgreSQL history, as one replica sees it.
pub(super) struct PgHistory {
    db: Db,
    replica: String,
    alive: AtomicBool,
}

impl std::fmt::Debug for PgHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgHistory")
            .field("database", &self.db.label)
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

impl From<tokio_postgres::Error> for HistoryCause {
    fn from(e: tokio_postgres::Error) -> Self {
        HistoryCause::Postgres(e)
    }
}

impl From<deadpool_postgres::PoolError> for HistoryCause {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        HistoryCause::Pool(Box::new(e))
    }
}

type PgResult<T> = Result<T, HistoryCause>;

/// A pool of up to `size` connections to `url`; they are made when first needed.
fn pool(url: &str, password: Option<&str>, size: usize) -> PgResult<Pool> {
    let mut config: tokio_postgres::Config = url.parse()?;
    if let Some(password) = password {
        config.password(password);
    }
    config.connect_timeout(Duration::from_secs(10));
    Pool::builder(Manager::new(config, NoTls))
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| HistoryCause::Pool(Box::new(e)))
}

/// The columns [`run_row`] reads, in order.
const COLUMNS: &str = "id, plugin, version, digest, trigger, schedule, planned_at, event_id, event_type, started_at, ended_at, status, output, error, api_calls, writes, dry_run, logs, plan, input, devices_changed, approval_needed, expires_at, decision, decided_by, decided_at, decision_reason, divergence, replica";

fn json(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn run_row(r: &tokio_postgres::Row) -> PgResult<RunRow> {
    let expires_at: Option<String> = r.try_get(22)?;
    Ok(RunRow {
        id: r.try_get(0)?,
        plugin: r.try_get(1)?,
        version: r.try_get(2)?,
        digest: r.try_get(3)?,
        trigger: r.try_get(4)?,
        schedule: r.try_get(5)?,
        planned_at: r.try_get(6)?,
        event_id: r.try_get(7)?,
        event_type: r.try_get(8)?,
        started_at: r.try_get(9)?,
        ended_at: r.try_get(10)?,
        status: r.try_get(11)?,
        output: r.try_get(12)?,
        error: r.try_get(13)?,
        api_calls: r.try_get(14)?,
        writes: r.try_get(15)?,
        dry_run: r.try_get(16)?,
        logs: json(r.try_get(17)?),
        plan: json(r.try_get(18)?),
        input: json(r.try_get(19)?),
        devices_changed: r.try_get(20)?,
        approval: match expires_at {
            None => None,
            Some(expires_at) => Some(ApprovalRecord {
                needed: json(r.try_get(21)?)
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default(),
                expires_at,
                decision: r.try_get(23)?,
                decided_by: r.try_get(24)?,
                decided_at: r.try_get(25)?,
                reason: r.try_get(26)?,
            }),
        },
        divergence: json(r.try_get(27)?),
        replica: r.try_get(28)?,
    })
}

impl PgHistory {
    /// Connects, applies the migrations not yet applied and registers this replica.
    pub(super) fn connect(url: &str, password: Option<&str>) -> Result<Self, HistoryError> {
        Ok(Self {
            db: Db::connect(url, password, 8)?,
            replica: format!("replica_{:016x}", rand::random::<u64>()),
            alive: AtomicBool::new(false),
        })
    }

    /// From this process's first run on, says every [`KEEPALIVE`] that the
    /// replica is alive, for as long as the process lives: a run made by
    /// `levelhost run` is not taken for cut off while it goes on. (Reading
    /// the history, as `levelhost status` does, registers no replica.)
    fn keep_alive(&self) {
        if self.alive.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(runtime) = &self.db.runtime else {
            return;
        };
        let (pool, replica) = (self.db.pool.clone(), self.replica.clone());
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(KEEPALIVE);
            loop {
                tick.tick().await;
                if let Ok(client) = pool.get().await
                    && let Err(e) = client.execute(REGISTER, &[&replica]).await
                {
                    tracing::warn!(replica, "cannot say the replica is alive: {e}");
                }
            }
        });
    }

    /// Runs `f` with the pool and waits for it.
    fn block<T, F>(&self, f: impl FnOnce(Pool) -> F) -> Result<T, HistoryError>
    where
        T: Send + 'static,
        F: Future<Output = PgResult<T>> + Send + 'static,
    {
        self.db.block(f)
    }

    fn insert_run(
        &self,
        id: &str,
        plugin: &str,
        version: &str,
        digest: &str,
        origin: &Origin,
        delivery: bool,
    ) -> Result<Claim, HistoryError> {
        let o = OriginColumns::of(origin);
        let (id, plugin, version, digest, replica) = (
            id.to_owned(),
            plugin.to_owned(),
            version.to_owned(),
            digest.to_owned(),
            self.replica.clone(),
        );
        let claim = self.block(move |pool| async move {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            // The replica is known (alive) before its run is, so no survivor takes the run for cut off.
            tx.execute(REGISTER, &[&replica]).await?;
            let inserted = tx
                .execute(
                    "INSERT INTO runs (id, plugin, version, digest, trigger, schedule, planned_at, event_id, event_type, started_at, status, replica)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running', $11) ON CONFLICT DO NOTHING",
                    &[&id, &plugin, &version, &digest, &o.trigger, &o.schedule, &o.planned_at, &o.event_id, &o.event_type, &now(), &replica],
                )
                .await?;
            let claim = if inserted == 1 {
                Claim::Started
            } else {
                Claim::AlreadyClaimed
            };
            if delivery {
                let (verdict, detail) = claim.delivery(&id);
                tx.execute(
                    "INSERT INTO deliveries (plugin, event_id, received_at, verdict, detail) VALUES ($1, $2, $3, $4, $5)",
                    &[&plugin, &o.event_id, &now(), &verdict, &detail],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(claim)
        })?;
        self.keep_alive();
        Ok(claim)
    }

    /// Marks `running` runs of replicas silent for longer than `lease` (and of none) as interrupted.
    fn reap(&self, lease: Duration, why: String) -> Result<usize, HistoryError> {
        let (me, lease_secs) = (self.replica.clone(), lease.as_secs_f64());
        self.block(move |pool| async move {
            let client = pool.get().await?;
            let cut = client
                .execute(
                    "UPDATE runs SET status = 'interrupted', ended_at = $1, error = $2
                     WHERE status = 'running' AND replica IS DISTINCT FROM $3
                       AND (replica IS NULL OR replica NOT IN (
                           SELECT id FROM replicas WHERE heartbeat_at > now() - make_interval(secs => $4)))",
                    &[&now(), &why, &me, &lease_secs],
                )
                .await?;
            Ok(usize::try_from(cut).unwrap_or(usize::MAX))
        })
    }

    /// One statement that changes rows, with owned parameters.
    fn execute(&self, sql: &'static str, params: Vec<Param>) -> Result<u64, HistoryError> {
        self.block(move |pool| async move {
            let client = pool.get().await?;
            Ok(client.execute(sql, &refs(&params)).await?)
        })
    }

    /// Runs matching one statement, with owned parameters.
    fn rows(&self, sql: String, params: Vec<Param>) -> Result<Vec<RunRow>, HistoryError> {
        self.block(move |pool| async move {
            let client = pool.get().await?;
            client
                .query(&sql, &refs(&params))
                .await?
                .iter()
                .map(run_row)
                .collect()
        })
    }
}

type Param = Box<dyn tokio_postgres::types::ToSql + Send + Sync>;

/// Owned parameters as the driver takes them.
fn refs(params: &[Param]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| &**p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

fn p<T: tokio_postgres::types::ToSql + Send + Sync + 'static>(value: T) -> Param {
    Box::new(value)
}

impl HistoryBackend for PgHistory {
    fn claim(
        &self,
        id: &str,
        plugin: &str,
        version: &str,
        digest: &str,
        origin: &Origin,
    ) -> Result<Claim, HistoryError> {
        self.insert_run(id, plugin, version, digest, origin, false)
    }

    fn claim_delivery(
        &self,
        id: &str,
        plugin: &str,
        version: &str,
        digest: &str,
        origin: &Origin,
    ) -> Result<Claim, HistoryError> {
        self.insert_run(id, plugin, version, digest, origin, true)
    }

    fn record_skip(
        &self,
        id: &str,
        plugin: &str,
        origin: &Origin,
        why: &str,
    ) -> Result<Claim, HistoryError> {
        let o = OriginColumns::of(origin);
        let at = now();
        let inserted = self.execute(
            "INSERT INTO runs (id, plugin, trigger, schedule, planned_at, event_id, event_type, started_at, ended_at, status, error, replica)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 'skipped', $9, $10) ON CONFLICT DO NOTHING",
            vec![
                p(id.to_owned()),
                p(plugin.to_owned()),
                p(o.trigger),
                p(o.schedule),
                p(o.planned_at),
                p(o.event_id),
                p(o.event_type),
                p(at),
                p(why.to_owned()),
                p(self.replica.clone()),
            ],
        )?;
        Ok(if inserted == 1 {
            Claim::Started
        } else {
            Claim::AlreadyClaimed
        })
    }

    fn finish(
        &self,
        id: &str,
        report: &RunReport,
        dry_run: bool,
        plan: Option<&[PlanEntry]>,
        input: Option<&serde_json::Value>,
    ) -> Result<(), HistoryError> {
        let status = RunStatus::of(report);
        let ended = Ended::of(report, plan);
        self.execute(
            "UPDATE runs SET ended_at = $2, status = $3, output = $4, error = $5, api_calls = $6, writes = $7, dry_run = $8, logs = $9,
             plan = COALESCE($10, plan), devices_changed = $11, divergence = $12, input = COALESCE($13, input) WHERE id = $1",
            vec![
                p(id.to_owned()),
                p(now()),
                p(status.as_str()),
                p(ended.output),
                p(ended.error),
                p(ended.api_calls),
                p(ended.writes),
                p(dry_run),
                p(ended.logs),
                p(ended.plan),
                p(ended.devices_changed),
                p(ended.divergence),
                p(input.map(ToString::to_string)),
            ],
        )
        .map(drop)
    }

    fn await_approval(
        &self,
        id: &str,
        report: &RunReport,
        input: &serde_json::Value,
        needed: &[String],
        expires_at: &str,
    ) -> Result<(), HistoryError> {
        let ended = Ended::of(report, Some(&report.plan));
        self.execute(
            "UPDATE runs SET status = 'awaiting-approval', output = $2, error = $3, api_calls = $4, writes = $5, dry_run = TRUE, logs = $6,
             plan = $7, devices_changed = $8, input = $9, approval_needed = $10, expires_at = $11 WHERE id = $1 AND status = 'running'",
            vec![
                p(id.to_owned()),
                p(ended.output),
                p(ended.error),
                p(ended.api_calls),
                p(ended.writes),
                p(ended.logs),
                p(ended.plan),
                p(ended.devices_changed),
                p(input.to_string()),
                p(serde_json::json!(needed).to_string()),
                p(expires_at.to_owned()),
            ],
        )
        .map(drop)
    }

    fn decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Decided, HistoryError> {
        let (id, by, reason) = (id.to_owned(), by.to_owned(), reason.map(str::to_owned));
        self.block(move |pool| async move {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let found = tx
                .query_opt(
                    "SELECT status, expires_at FROM runs WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await?;
            let at = now();
            let decided = match found {
                None => Decided::Unknown,
                Some(row) => {
                    let status: String = row.try_get(0)?;
                    let expires: Option<String> = row.try_get(1)?;
                    if status != RunStatus::AwaitingApproval.as_str() {
                        Decided::NotWaiting(status)
                    } else if let Some(expires) = expires.filter(|e| *e <= at) {
                        tx.execute(
                            "UPDATE runs SET status = 'expired', ended_at = $2, error = $3 WHERE id = $1",
                            &[&id, &at, &EXPIRED],
                        )
                        .await?;
                        Decided::Expired(expires)
                    } else {
                        let status = if approve { "approved" } else { "rejected" };
                        tx.execute(
                            "UPDATE runs SET status = $2, decision = $2, decided_by = $3, decided_at = $4, decision_reason = $5,
                             ended_at = CASE WHEN $2 = 'rejected' THEN $4 ELSE ended_at END WHERE id = $1",
                            &[&id, &status, &by, &at, &reason],
                        )
                        .await?;
                        Decided::Done
                    }
                }
            };
            tx.commit().await?;
            Ok(decided)
        })
    }

    fn expire_overdue(&self) -> Result<Vec<(String, String)>, HistoryError> {
        self.block(|pool| async move {
            let client = pool.get().await?;
            let at = now();
            let rows = client
                .query(
                    "UPDATE runs SET status = 'expired', ended_at = $1, error = $2
                     WHERE status = 'awaiting-approval' AND expires_at <= $1 RETURNING id, plugin",
                    &[&at, &EXPIRED],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    fn start_approved(&self, id: &str) -> Result<Option<RunRow>, HistoryError> {
        self.execute(REGISTER, vec![p(self.replica.clone())])?;
        self.keep_alive();
        let rows = self.rows(
            format!(
                "UPDATE runs SET status = 'running', dry_run = FALSE, replica = $2 WHERE id = $1 AND status = 'approved' RETURNING {COLUMNS}"
            ),
            vec![p(id.to_owned()), p(self.replica.clone())],
        )?;
        Ok(rows.into_iter().next())
    }

    fn fail(&self, id: &str, error: &str) -> Result<(), HistoryError> {
        self.execute(
            "UPDATE runs SET ended_at = $2, status = 'failed', error = $3 WHERE id = $1",
            vec![p(id.to_owned()), p(now()), p(error.to_owned())],
        )
        .map(drop)
    }

    fn interrupt_running(&self, why: &str) -> Result<usize, HistoryError> {
        self.reap(DEFAULT_LEASE, why.to_owned())
    }

    fn interrupt(&self, id: &str, why: &str) -> Result<(), HistoryError> {
        self.execute(
            "UPDATE runs SET status = 'interrupted', ended_at = $2, error = $3 WHERE id = $1 AND status = 'running'",
            vec![p(id.to_owned()), p(now()), p(why.to_owned())],
        )
        .map(drop)
    }

    fn last_planned(&self, plugin: &str, schedule: &str) -> Result<Option<String>, HistoryError> {
        let (plugin, schedule) = (plugin.to_owned(), schedule.to_owned());
        self.block(move |pool| async move {
            let client = pool.get().await?;
            Ok(client
                .query_one(
                    "SELECT max(planned_at) FROM runs WHERE plugin = $1 AND schedule = $2",
                    &[&plugin, &schedule],
                )
                .await?
                .try_get(0)?)
        })
    }

    fn record_delivery(
        &self,
        plugin: &str,
        event_id: Option<&str>,
        verdict: &str,
        detail: &str,
    ) -> Result<(), HistoryError> {
        self.execute(
            "INSERT INTO deliveries (plugin, event_id, received_at, verdict, detail) VALUES ($1, $2, $3, $4, $5)",
            vec![
                p(plugin.to_owned()),
                p(event_id.map(str::to_owned)),
                p(now()),
                p(verdict.to_owned()),
                p(detail.to_owned()),
            ],
        )
        .map(drop)
    }

    fn deliveries(
        &self,
        plugin: &str,
    ) -> Result<Vec<(Option<String>, String, String)>, HistoryError> {
        let plugin = plugin.to_owned();
        self.block(move |pool| async move {
            let client = pool.get().await?;
            client
                .query(
                    "SELECT event_id, verdict, detail FROM deliveries WHERE plugin = $1 ORDER BY id",
                    &[&plugin],
                )
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect()
        })
    }

    fn list(
        &self,
        plugin: Option<&str>,
        status: Option<RunStatus>,
        limit: usize,
    ) -> Result<Vec<RunRow>, HistoryError> {
        self.rows(
            format!(
                "SELECT {COLUMNS} FROM runs WHERE ($1::TEXT IS NULL OR plugin = $1) AND ($2::TEXT IS NULL OR status = $2)
                 ORDER BY started_at DESC, id DESC LIMIT $3"
            ),
            vec![
                p(plugin.map(str::to_owned)),
                p(status.map(|s| s.as_str().to_owned())),
                p(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )
    }

    fn get(&self, id: &str) -> Result<Option<RunRow>, HistoryError> {
        Ok(self
            .rows(
                format!("SELECT {COLUMNS} FROM runs WHERE id = $1"),
                vec![p(id.to_owned())],
            )?
            .into_iter()
            .next())
    }

    fn integrity_check(&self) -> Result<String, HistoryError> {
        self.block(|pool| async move {
            let client = pool.get().await?;
            let one: i32 = client.query_one("SELECT 1", &[]).await?.try_get(0)?;
            Ok(if one == 1 { "ok" } else { "unexpected answer" }.to_owned())
        })
    }

    fn ping(&self) -> Result<(), HistoryError> {
        self.integrity_check().map(drop)
    }

    fn skip_claimed(&self, id: &str, why: &str) -> Result<(), HistoryError> {
        self.execute(
            "UPDATE runs SET status = 'skipped', ended_at = $2, error = $3 WHERE id = $1 AND status = 'running'",
            vec![p(id.to_owned()), p(now()), p(why.to_owned())],
        )
        .map(drop)
    }

    fn take_lease(
        &self,
        plugin: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, HistoryError> {
        let taken = self.execute(
            "INSERT INTO leases (plugin, holder, replica, expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4))
             ON CONFLICT (plugin) DO UPDATE SET holder = EXCLUDED.holder, replica = EXCLUDED.replica, expires_at = EXCLUDED.expires_at
             WHERE leases.expires_at < now() OR leases.holder = EXCLUDED.holder
                OR NOT EXISTS (SELECT 1 FROM runs WHERE runs.id = leases.holder AND runs.status = 'running')",
            vec![
                p(plugin.to_owned()),
                p(holder.to_owned()),
                p(self.replica.clone()),
                p(lease.as_secs_f64()),
            ],
        )?;
        Ok(taken == 1)
    }

    fn renew_lease(
        &self,
        plugin: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, HistoryError> {
        let renewed = self.execute(
            "UPDATE leases SET expires_at = now() + make_interval(secs => $3) WHERE plugin = $1 AND holder = $2",
            vec![
                p(plugin.to_owned()),
                p(holder.to_owned()),
                p(lease.as_secs_f64()),
            ],
        )?;
        Ok(renewed == 1)
    }

    fn release_lease(&self, plugin: &str, holder: &str) -> Result<(), HistoryError> {
        self.execute(
            "DELETE FROM leases WHERE plugin = $1 AND holder = $2",
            vec![p(plugin.to_owned()), p(holder.to_owned())],
        )
        .map(drop)
    }

    fn replica(&self) -> Option<&str> {
        Some(&self.replica)
    }

    fn replicas(&self) -> Result<Vec<ReplicaRow>, HistoryError> {
        self.block(|pool| async move {
            let rows = pool
                .get()
                .await?
                .query(
                    "SELECT r.id,
                            to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                            to_char(r.heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                            EXTRACT(EPOCH FROM now() - r.heartbeat_at)::float8,
                            (SELECT count(*) FROM runs WHERE runs.replica = r.id AND runs.status = 'running')
                     FROM replicas r WHERE r.heartbeat_at > now() - interval '1 day'
                     ORDER BY r.heartbeat_at DESC LIMIT 100",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(ReplicaRow {
                        id: r.try_get(0)?,
                        started_at: r.try_get(1)?,
                        heartbeat_at: r.try_get(2)?,
                        silent_secs: r.try_get(3)?,
                        running: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    fn heartbeat(&self, lease: Duration) -> Result<usize, HistoryError> {
        self.execute(REGISTER, vec![p(self.replica.clone())])?;
        // The leases of runs still going here last another lease from now.
        self.execute(
            "UPDATE leases SET expires_at = now() + make_interval(secs => $2) WHERE replica = $1",
            vec![p(self.replica.clone()), p(lease.as_secs_f64())],
        )?;
        self.reap(
            lease,
            "the replica running it stopped answering (no heartbeat within the lease)".to_owned(),
        )
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("database", &self.label)
            .finish_non_exhaustive()
    }
}
