//! The run history in SQLite (WAL): the embedded default.
//!
//! Every write goes to one writer thread, which commits whatever writes are
//! waiting together, in one transaction with one fsync (`synchronous=FULL`):
//! a write returns only once it is durable, and a burst of writes (a flood
//! of webhook deliveries) shares fsyncs instead of queueing for one each.
//! Each write runs in its own savepoint, so one that fails changes nothing
//! and leaves the others of its batch alone. Reads use their own connection,
//! on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};

use super::sql::{Outcome, Query, Row};
use super::{Backend, HistoryCause, HistoryError};
use level_api::clock::now;

/// The run history in SQLite: the embedded default.
#[derive(Debug)]
pub(super) struct SqliteHistory {
    path: PathBuf,
    /// Reads.
    conn: Arc<Mutex<Connection>>,
    /// Writes, to the writer thread.
    writes: Mutex<mpsc::Sender<Write>>,
}

/// One write: it runs its statements on the writer's connection (inside a
/// savepoint) and says whether they succeeded (a failed one is rolled back
/// whole); the finisher it returns is handed the batch's commit outcome and
/// answers the caller.
type Write = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;
type Finish = Box<dyn FnOnce(Result<(), Arc<rusqlite::Error>>) + Send>;

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
                    Box::new(move |_: Result<(), Arc<rusqlite::Error>>| {
                        tracing::error!("history: cannot open a savepoint: {why}");
                    })
                }
            };
            finishers.push(finish);
        }
        let committed = tx.commit().map_err(Arc::new);
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
CREATE TABLE IF NOT EXISTS state (
    plugin TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (plugin, key)
);
";

/// Milliseconds since the Unix epoch, `ahead` from now: lease times in SQLite.
fn epoch_ms(ahead: std::time::Duration) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from((now + ahead).as_millis()).unwrap_or(i64::MAX)
}

/// Runs one statement: the rows it changed, and those it returned.
fn run(c: &Connection, q: &Query) -> Result<Outcome, HistoryCause> {
    let params = rusqlite::params_from_iter(&q.params);
    if !q.returns_rows() {
        let changed = c.execute(q.sql, params)? as u64;
        if let Some(unchanged) = q.unchanged(changed) {
            return Err(unchanged);
        }
        return Ok(Outcome {
            changed,
            rows: Vec::new(),
        });
    }
    let mut stmt = c.prepare_cached(q.sql)?;
    let columns = stmt.column_count();
    let rows = stmt
        .query_map(params, |r| Row::from_sqlite(r, columns))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Outcome {
        changed: rows.len() as u64,
        rows,
    })
}

impl SqliteHistory {
    /// Opens (or creates) the database, in WAL mode with full sync, and starts its writer.
    pub(super) fn open(path: &Path) -> Result<Self, HistoryError> {
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
            conn: Arc::new(Mutex::new(read_conn)),
            writes: Mutex::new(writes),
        })
    }

    fn error(&self, source: HistoryCause) -> HistoryError {
        HistoryError {
            path: self.path.clone(),
            source,
        }
    }

    /// A read, on the read connection, on the blocking pool.
    async fn read_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, HistoryCause> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let conn = self.conn.clone();
        let read = tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&conn)
        });
        match read.await {
            Ok(result) => result.map_err(|e| self.error(e)),
            Err(_) => Err(self.error(HistoryCause::WriterStopped)),
        }
    }

    /// A write, through the writer: returns once it is committed (with
    /// whatever other writes were waiting) and synced.
    async fn write_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, HistoryCause> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let write: Write = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |committed| {
                let _ = reply.send(match (result, committed) {
                    (Err(e), _) => Err(e),
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
            .await
            .map_err(|_| self.error(HistoryCause::WriterStopped))?
            .map_err(|source| self.error(source))
    }
}

#[async_trait::async_trait]
impl Backend for SqliteHistory {
    fn location(&self) -> &Path {
        &self.path
    }

    /// The statements run in one savepoint of the writer's next batch.
    async fn write(&self, statements: Vec<Query>) -> Result<Vec<Outcome>, HistoryError> {
        self.write_with(move |c| statements.iter().map(|q| run(c, q)).collect())
            .await
    }

    async fn read(&self, statement: Query) -> Result<Vec<Row>, HistoryError> {
        self.read_with(move |c| run(c, &statement).map(|o| o.rows))
            .await
    }

    /// Every run still recorded as running, interrupted (at start-up, after a crash).
    async fn interrupt_running(&self, why: &str) -> Result<usize, HistoryError> {
        let why = why.to_owned();
        self.write_with(move |c| {
            Ok(c.execute(
                "UPDATE runs SET status = 'interrupted', ended_at = ?1, error = ?2 WHERE status = 'running'",
                params![now(), why],
            )?)
        })
        .await
    }

    /// SQLite's own integrity check: `ok` when the database is sound.
    async fn integrity_check(&self) -> Result<String, HistoryError> {
        self.read_with(|c| Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
            .await
    }

    /// Lease times in SQLite are this machine's milliseconds since the epoch
    /// (every process sharing the file shares the clock).
    fn take_lease(&self, plugin: &str, holder: &str, lease: std::time::Duration) -> Query {
        Query::new(
            "INSERT INTO leases (plugin, holder, expires_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (plugin) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms
             WHERE leases.expires_at_ms < ?4 OR leases.holder = excluded.holder
                OR NOT EXISTS (SELECT 1 FROM runs WHERE runs.id = leases.holder AND runs.status = 'running')",
            vec![
                plugin.into(),
                holder.into(),
                epoch_ms(lease).into(),
                epoch_ms(std::time::Duration::ZERO).into(),
            ],
        )
    }

    fn renew_lease(&self, plugin: &str, holder: &str, lease: std::time::Duration) -> Query {
        Query::new(
            "UPDATE leases SET expires_at_ms = ?3 WHERE plugin = ?1 AND holder = ?2",
            vec![plugin.into(), holder.into(), epoch_ms(lease).into()],
        )
    }
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
