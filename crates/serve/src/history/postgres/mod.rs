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
//! The history, the audit store and the rate budgets are asked from async
//! code, so they drive `tokio-postgres` and its `deadpool` pool on the
//! caller's runtime.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Manager, Pool};
use tokio_postgres::NoTls;

use super::sql::{self, Cells, Outcome, Query, Row};
use super::{Backend, HistoryCause, HistoryError, ReplicaRow};
use level_api::clock::now;

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
    (
        5,
        "
CREATE TABLE state (
    plugin TEXT NOT NULL,
    key BYTEA NOT NULL,
    value BYTEA NOT NULL,
    version BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (plugin, key)
);
",
    ),
    (6, "ALTER TABLE audit ADD COLUMN bytes BIGINT;"),
    // Which replicas run schedules (`serve`): only they share the schedules.
    // A `levelhost run` or `apply` says it is alive too, but claims no
    // planned time, so it must not own any.
    (
        7,
        "ALTER TABLE replicas ADD COLUMN schedules BOOLEAN NOT NULL DEFAULT false;",
    ),
];

/// The key of the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x6c65_7665_6c68_6f73;

/// How long a replica may be silent before its runs are taken as cut off,
/// when nothing says otherwise (at start-up).
const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// Applies the migrations not yet applied, under the advisory lock.
async fn migrate(pool: &Pool) -> PgResult<()> {
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
}

/// How often a replica that has made a run says it is alive.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// Registers a replica, or says it is still alive.
const REGISTER: &str =
    "INSERT INTO replicas (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()";

/// A PostgreSQL history, as one replica sees it.
pub(super) struct PgHistory {
    pool: Pool,
    label: PathBuf,
    replica: String,
    /// The task saying the replica is alive, once it has made a run; it ends with the history.
    alive: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for PgHistory {
    fn drop(&mut self) {
        let alive = self
            .alive
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(task) = alive.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for PgHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgHistory")
            .field("database", &self.label)
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

/// A pool of up to `size` connections to `url`, the migrations not yet
/// applied applied, and the URL as errors name the database.
async fn migrated_pool(
    url: &str,
    password: Option<&str>,
    size: usize,
) -> Result<(Pool, PathBuf), HistoryError> {
    let label = PathBuf::from(url);
    let fail = |source: HistoryCause| HistoryError {
        path: label.clone(),
        source,
    };
    let pool = pool(url, password, size).map_err(fail)?;
    migrate(&pool).await.map_err(fail)?;
    Ok((pool, label))
}

/// The parameters of a shared statement, as the driver takes them.
fn refs(params: &[sql::Value]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// Runs one shared statement on `client` (a connection or a transaction):
/// the rows it changed, and those it returned.
async fn run<C: deadpool_postgres::GenericClient>(client: &C, q: &Query) -> PgResult<Outcome> {
    let statement = sql::postgres(q.sql);
    let params = refs(&q.params);
    if !q.returns_rows() {
        let changed = client.execute(statement.as_str(), &params).await?;
        if let Some(unchanged) = q.unchanged(changed) {
            return Err(unchanged);
        }
        return Ok(Outcome {
            changed,
            rows: Vec::new(),
        });
    }
    let rows = client
        .query(statement.as_str(), &params)
        .await?
        .iter()
        .map(Row::from_postgres)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Outcome {
        changed: rows.len() as u64,
        rows,
    })
}

impl PgHistory {
    /// Connects, applies the migrations not yet applied; the replica is
    /// registered with its first run.
    pub(super) async fn connect(url: &str, password: Option<&str>) -> Result<Self, HistoryError> {
        let (pool, label) = migrated_pool(url, password, 8).await?;
        Ok(Self {
            pool,
            label,
            replica: format!("replica_{:016x}", rand::random::<u64>()),
            alive: Mutex::new(None),
        })
    }

    fn error(&self, source: HistoryCause) -> HistoryError {
        HistoryError {
            path: self.label.clone(),
            source,
        }
    }

    /// One statement of this backend's own (in PostgreSQL's placeholders).
    async fn execute_own(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, HistoryError> {
        let client = self.pool.get().await.map_err(|e| self.error(e.into()))?;
        client
            .execute(statement, params)
            .await
            .map_err(|e| self.error(e.into()))
    }

    /// From this process's first run on, says every [`KEEPALIVE`] that the
    /// replica is alive, for as long as the history lives: a run made by
    /// `levelhost run` is not taken for cut off while it goes on. (Reading
    /// the history, as `levelhost status` does, registers no replica.)
    fn keep_alive(&self) {
        let mut alive = self
            .alive
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if alive.is_some() {
            return;
        }
        let (pool, replica) = (self.pool.clone(), self.replica.clone());
        let task = tokio::spawn(async move {
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
        *alive = Some(task.abort_handle());
    }

    /// Marks `running` runs of replicas silent for longer than `lease` (and of none) as interrupted.
    async fn reap(&self, lease: Duration, why: &str) -> Result<usize, HistoryError> {
        let cut = self
            .execute_own(
                "UPDATE runs SET status = 'interrupted', ended_at = $1, error = $2
                 WHERE status = 'running' AND replica IS DISTINCT FROM $3
                   AND (replica IS NULL OR replica NOT IN (
                       SELECT id FROM replicas WHERE heartbeat_at > now() - make_interval(secs => $4)))",
                &[&now(), &why, &self.replica, &lease.as_secs_f64()],
            )
            .await?;
        Ok(usize::try_from(cut).unwrap_or(usize::MAX))
    }
}

#[async_trait::async_trait]
impl Backend for PgHistory {
    fn location(&self) -> &std::path::Path {
        &self.label
    }

    /// One statement runs alone; several, in one transaction.
    async fn write(&self, statements: Vec<Query>) -> Result<Vec<Outcome>, HistoryError> {
        async {
            let mut client = self.pool.get().await?;
            if let [statement] = statements.as_slice() {
                return Ok(vec![run(&client, statement).await?]);
            }
            let tx = client.transaction().await?;
            let mut done = Vec::with_capacity(statements.len());
            for statement in &statements {
                done.push(run(&tx, statement).await?);
            }
            tx.commit().await?;
            PgResult::Ok(done)
        }
        .await
        .map_err(|e| self.error(e))
    }

    async fn read(&self, statement: Query) -> Result<Vec<Row>, HistoryError> {
        async {
            let client = self.pool.get().await?;
            PgResult::Ok(run(&client, &statement).await?.rows)
        }
        .await
        .map_err(|e| self.error(e))
    }

    /// Registers the replica (or says it is alive), and from then on keeps
    /// saying so.
    async fn register(&self) -> Result<(), HistoryError> {
        self.execute_own(REGISTER, &[&self.replica]).await?;
        self.keep_alive();
        Ok(())
    }

    async fn interrupt_running(&self, why: &str) -> Result<usize, HistoryError> {
        self.reap(DEFAULT_LEASE, why).await
    }

    fn leases_with_claims(&self) -> bool {
        false
    }

    async fn integrity_check(&self) -> Result<String, HistoryError> {
        let one = self.read(sql::ping()).await?;
        let answered = one.first().map(|r| r.int(0));
        Ok(if matches!(answered, Some(Ok(1))) {
            "ok"
        } else {
            "unexpected answer"
        }
        .to_owned())
    }

    /// Lease times here are the database's clock, which every replica shares.
    fn take_lease(&self, plugin: &str, holder: &str, lease: Duration) -> Query {
        Query::new(
            "INSERT INTO leases (plugin, holder, replica, expires_at) VALUES (?1, ?2, ?3, now() + make_interval(secs => ?4))
             ON CONFLICT (plugin) DO UPDATE SET holder = EXCLUDED.holder, replica = EXCLUDED.replica, expires_at = EXCLUDED.expires_at
             WHERE leases.expires_at < now() OR leases.holder = EXCLUDED.holder
                OR NOT EXISTS (SELECT 1 FROM runs WHERE runs.id = leases.holder AND runs.status = 'running')",
            vec![
                plugin.into(),
                holder.into(),
                self.replica.as_str().into(),
                sql::Value::Real(lease.as_secs_f64()),
            ],
        )
    }

    fn renew_lease(&self, plugin: &str, holder: &str, lease: Duration) -> Query {
        Query::new(
            "UPDATE leases SET expires_at = now() + make_interval(secs => ?3) WHERE plugin = ?1 AND holder = ?2",
            vec![
                plugin.into(),
                holder.into(),
                sql::Value::Real(lease.as_secs_f64()),
            ],
        )
    }

    fn replica(&self) -> Option<&str> {
        Some(&self.replica)
    }

    async fn replicas(&self) -> Result<Vec<ReplicaRow>, HistoryError> {
        let client = self.pool.get().await.map_err(|e| self.error(e.into()))?;
        let rows = client
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
            .await
            .map_err(|e| self.error(e.into()))?;
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
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| self.error(e.into()))
    }

    async fn stop_scheduling(&self) -> Result<(), HistoryError> {
        self.execute_own(
            "UPDATE replicas SET schedules = false WHERE id = $1",
            &[&self.replica],
        )
        .await
        .map(drop)
    }

    async fn live_replicas(&self, lease: Duration) -> Result<Vec<String>, HistoryError> {
        async {
            let client = self.pool.get().await?;
            let rows = client
                .query(
                    "SELECT id FROM replicas WHERE schedules AND heartbeat_at > now() - make_interval(secs => $1) ORDER BY id",
                    &[&lease.as_secs_f64()],
                )
                .await?;
            let ids = rows
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<Vec<String>, tokio_postgres::Error>>()?;
            PgResult::Ok(ids)
        }
        .await
        .map_err(|e| self.error(e))
    }

    async fn heartbeat(&self, lease: Duration) -> Result<usize, HistoryError> {
        // Only `serve` heartbeats: it runs schedules, so it shares them.
        self.execute_own(
            "INSERT INTO replicas (id, schedules) VALUES ($1, true)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), schedules = true",
            &[&self.replica],
        )
        .await?;
        // The leases of runs still going here last another lease from now.
        self.execute_own(
            "UPDATE leases SET expires_at = now() + make_interval(secs => $2) WHERE replica = $1",
            &[&self.replica, &lease.as_secs_f64()],
        )
        .await?;
        self.reap(
            lease,
            "the replica running it stopped answering (no heartbeat within the lease)",
        )
        .await
    }
}
