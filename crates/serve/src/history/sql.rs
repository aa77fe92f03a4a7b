//! Every statement of the history, written once for both databases.
//!
//! Statements are written in the SQL both SQLite and PostgreSQL accept, with
//! SQLite's numbered placeholders (`?1`); [`postgres`] turns those into
//! PostgreSQL's (`$1`). A statement's parameters are built beside it, as
//! [`Value`]s both drivers bind, and a run is read back by one mapper,
//! [`run_row`], over either driver's row. What truly differs (time
//! arithmetic for leases, replicas, SQLite's own integrity check) stays in
//! its backend.

use super::{ApprovalRecord, EXPIRED, Ended, HistoryCause, OriginColumns, RunRow, RunStatus};

/// The columns [`run_row`] reads, in order.
macro_rules! run_columns {
    () => {
        "id, plugin, version, digest, trigger, schedule, planned_at, event_id, event_type, started_at, ended_at, status, output, error, api_calls, writes, dry_run, logs, plan, input, devices_changed, approval_needed, expires_at, decision, decided_by, decided_at, decision_reason, divergence, replica"
    };
}

/// One parameter of a statement, as both drivers bind it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    /// Text, or NULL.
    Text(Option<String>),
    /// A 64-bit integer.
    Int(i64),
    /// A boolean (SQLite keeps 0 or 1).
    Bool(bool),
    /// A float.
    Real(f64),
    /// Bytes, or NULL (the state's keys and values: compared byte by byte in both databases).
    Blob(Option<Vec<u8>>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(Some(s.to_owned()))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(Some(s))
    }
}

impl From<Option<String>> for Value {
    fn from(s: Option<String>) -> Self {
        Value::Text(s)
    }
}

impl From<Option<&str>> for Value {
    fn from(s: Option<&str>) -> Self {
        Value::Text(s.map(str::to_owned))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Text(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Text(None) => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(n) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(*n)),
            Value::Bool(b) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(i64::from(*b))),
            Value::Real(f) => ToSqlOutput::Owned(rusqlite::types::Value::Real(*f)),
            Value::Blob(Some(b)) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Blob(None) => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

impl Value {
    /// The value as the PostgreSQL driver binds it.
    fn postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Value::Text(s) => s,
            Value::Int(n) => n,
            Value::Bool(b) => b,
            Value::Real(f) => f,
            Value::Blob(b) => b,
        }
    }
}

impl tokio_postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // Only the checked call reaches through a trait object.
        self.postgres().to_sql_checked(ty, out)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <Option<String>>::accepts(ty)
            || i64::accepts(ty)
            || bool::accepts(ty)
            || f64::accepts(ty)
            || <Option<Vec<u8>>>::accepts(ty)
    }

    /// Checked against the value's own type, not the union [`Self::accepts`] answers for.
    fn to_sql_checked(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.postgres().to_sql_checked(ty, out)
    }
}

/// A statement and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Query {
    /// The statement, with `?N` placeholders.
    pub sql: &'static str,
    /// Its parameters, in placeholder order.
    pub params: Vec<Value>,
    /// A write that must change exactly one row, or its whole transaction
    /// is rolled back (a state write made on a version that is gone): what
    /// it changes, and the key.
    pub must_change: Option<(&'static str, String)>,
}

impl Query {
    pub fn new(sql: &'static str, params: Vec<Value>) -> Self {
        Self {
            sql,
            params,
            must_change: None,
        }
    }

    /// The statement, which must change exactly one row; `what` says what
    /// it changes (`key`), for the error that rolls its transaction back.
    fn must_change(mut self, what: &'static str, key: &str) -> Self {
        self.must_change = Some((what, key.to_owned()));
        self
    }

    /// The error when a [`Query::must_change`] statement changed `changed` rows.
    pub fn unchanged(&self, changed: u64) -> Option<HistoryCause> {
        let (what, key) = self.must_change.as_ref().filter(|_| changed != 1)?;
        Some(HistoryCause::StateChanged {
            what,
            key: key.clone(),
        })
    }

    /// Whether it returns rows (a `SELECT`, or a write `RETURNING` them).
    pub fn returns_rows(&self) -> bool {
        let sql = self.sql.trim_start();
        sql.starts_with("SELECT") || sql.contains(" RETURNING ")
    }
}

/// A statement in PostgreSQL's dialect: each `?N` becomes `$N`, and the
/// bytes type is `BYTEA` where SQLite's is `BLOB`. (No statement here has
/// a `?` or `AS BLOB` inside a string.)
pub(super) fn postgres(sql: &str) -> String {
    placeholders(sql).replace(" AS BLOB)", " AS BYTEA)")
}

fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// Claims a run: inserted `running`, unless its (schedule, planned time) or event already has one.
pub(super) fn insert_run(
    id: &str,
    plugin: &str,
    version: &str,
    digest: &str,
    origin: &OriginColumns,
    at: &str,
    replica: Option<&str>,
) -> Query {
    Query::new(
        "INSERT INTO runs (id, plugin, version, digest, trigger, schedule, planned_at, event_id, event_type, started_at, status, replica)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'running', ?11) ON CONFLICT DO NOTHING",
        vec![
            id.into(),
            plugin.into(),
            version.into(),
            digest.into(),
            origin.trigger.into(),
            origin.schedule.clone().into(),
            origin.planned_at.clone().into(),
            origin.event_id.clone().into(),
            origin.event_type.clone().into(),
            at.into(),
            replica.into(),
        ],
    )
}

/// A planned run not started, and why.
pub(super) fn insert_skip(
    id: &str,
    plugin: &str,
    origin: &OriginColumns,
    why: &str,
    at: &str,
    replica: Option<&str>,
) -> Query {
    Query::new(
        "INSERT INTO runs (id, plugin, trigger, schedule, planned_at, event_id, event_type, started_at, ended_at, status, error, replica)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 'skipped', ?9, ?10) ON CONFLICT DO NOTHING",
        vec![
            id.into(),
            plugin.into(),
            origin.trigger.into(),
            origin.schedule.clone().into(),
            origin.planned_at.clone().into(),
            origin.event_id.clone().into(),
            origin.event_type.clone().into(),
            at.into(),
            why.into(),
            replica.into(),
        ],
    )
}

/// A webhook delivery and what became of it.
pub(super) fn insert_delivery(
    plugin: &str,
    event_id: Option<&str>,
    verdict: &str,
    detail: &str,
    at: &str,
) -> Query {
    Query::new(
        "INSERT INTO deliveries (plugin, event_id, received_at, verdict, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        vec![
            plugin.into(),
            event_id.into(),
            at.into(),
            verdict.into(),
            detail.into(),
        ],
    )
}

/// The delivery of the event run `id` was claimed for: `accepted` with the
/// run's id when the claim inserted it, `duplicate` when the event already
/// had a run (written in the claim's transaction, after it).
pub(super) fn insert_claimed_delivery(
    id: &str,
    plugin: &str,
    event_id: Option<&str>,
    at: &str,
) -> Query {
    Query::new(
        "INSERT INTO deliveries (plugin, event_id, received_at, verdict, detail)
         SELECT CAST(?2 AS TEXT), CAST(?3 AS TEXT), CAST(?4 AS TEXT),
                CASE WHEN EXISTS (SELECT 1 FROM runs WHERE id = ?1) THEN 'accepted' ELSE 'duplicate' END,
                CASE WHEN EXISTS (SELECT 1 FROM runs WHERE id = ?1) THEN CAST(?1 AS TEXT) ELSE 'this event already started a run' END",
        vec![id.into(), plugin.into(), event_id.into(), at.into()],
    )
}

/// How a run ended; `plan` and `input` keep what is recorded when absent.
pub(super) fn finish(
    id: &str,
    status: RunStatus,
    ended: Ended,
    dry_run: bool,
    input: Option<String>,
    at: &str,
) -> Query {
    Query::new(
        "UPDATE runs SET ended_at = ?2, status = ?3, output = ?4, error = ?5, api_calls = ?6, writes = ?7, dry_run = ?8, logs = ?9,
         plan = COALESCE(?10, plan), devices_changed = ?11, divergence = ?12, input = COALESCE(?13, input) WHERE id = ?1",
        vec![
            id.into(),
            at.into(),
            status.as_str().into(),
            ended.output.into(),
            ended.error.into(),
            ended.api_calls.into(),
            ended.writes.into(),
            dry_run.into(),
            ended.logs.into(),
            ended.plan.into(),
            ended.devices_changed.into(),
            ended.divergence.into(),
            input.into(),
        ],
    )
}

/// A running run whose plan waits for approval until `expires_at`.
pub(super) fn await_approval(
    id: &str,
    ended: Ended,
    input: String,
    needed: String,
    expires_at: &str,
) -> Query {
    Query::new(
        "UPDATE runs SET status = 'awaiting-approval', output = ?2, error = ?3, api_calls = ?4, writes = ?5, dry_run = TRUE, logs = ?6,
         plan = ?7, devices_changed = ?8, input = ?9, approval_needed = ?10, expires_at = ?11 WHERE id = ?1 AND status = 'running'",
        vec![
            id.into(),
            ended.output.into(),
            ended.error.into(),
            ended.api_calls.into(),
            ended.writes.into(),
            ended.logs.into(),
            ended.plan.into(),
            ended.devices_changed.into(),
            input.into(),
            needed.into(),
            expires_at.into(),
        ],
    )
}

/// A waiting plan past its expiry, expired; returns its expiry.
pub(super) fn expire_if_overdue(id: &str, at: &str) -> Query {
    Query::new(
        "UPDATE runs SET status = 'expired', ended_at = ?2, error = ?3
         WHERE id = ?1 AND status = 'awaiting-approval' AND expires_at <= ?2 RETURNING expires_at",
        vec![id.into(), at.into(), EXPIRED.into()],
    )
}

/// The decision on a plan still waiting and not past its expiry (a rejected one ends there).
pub(super) fn decide(id: &str, approve: bool, by: &str, reason: Option<&str>, at: &str) -> Query {
    let status = if approve { "approved" } else { "rejected" };
    Query::new(
        "UPDATE runs SET status = ?2, decision = ?2, decided_by = ?3, decided_at = ?4, decision_reason = ?5,
         ended_at = CASE WHEN ?2 = 'rejected' THEN ?4 ELSE ended_at END
         WHERE id = ?1 AND status = 'awaiting-approval' AND (expires_at IS NULL OR expires_at > ?4)",
        vec![id.into(), status.into(), by.into(), at.into(), reason.into()],
    )
}

/// A run's status.
pub(super) fn status(id: &str) -> Query {
    Query::new("SELECT status FROM runs WHERE id = ?1", vec![id.into()])
}

/// Every waiting plan past its expiry, expired; returns (id, plugin) of each.
pub(super) fn expire_overdue(at: &str) -> Query {
    Query::new(
        "UPDATE runs SET status = 'expired', ended_at = ?1, error = ?2
         WHERE status = 'awaiting-approval' AND expires_at <= ?1 RETURNING id, plugin",
        vec![at.into(), EXPIRED.into()],
    )
}

/// An approved run taken to be applied; returns the run ([`run_columns`]).
pub(super) fn start_approved(id: &str, replica: Option<&str>) -> Query {
    Query::new(
        concat!(
            "UPDATE runs SET status = 'running', dry_run = FALSE, replica = ?2 WHERE id = ?1 AND status = 'approved' RETURNING ",
            run_columns!()
        ),
        vec![id.into(), replica.into()],
    )
}

/// A run that could not start.
pub(super) fn fail(id: &str, error: &str, at: &str) -> Query {
    Query::new(
        "UPDATE runs SET ended_at = ?2, status = 'failed', error = ?3 WHERE id = ?1",
        vec![id.into(), at.into(), error.into()],
    )
}

/// A running run ended as `status` (`interrupted`, `skipped`), and why.
pub(super) fn end_running(id: &str, status: RunStatus, why: &str, at: &str) -> Query {
    Query::new(
        "UPDATE runs SET status = ?4, ended_at = ?2, error = ?3 WHERE id = ?1 AND status = 'running'",
        vec![id.into(), at.into(), why.into(), status.as_str().into()],
    )
}

/// The latest planned time recorded for a schedule.
pub(super) fn last_planned(plugin: &str, schedule: &str) -> Query {
    Query::new(
        "SELECT max(planned_at) FROM runs WHERE plugin = ?1 AND schedule = ?2",
        vec![plugin.into(), schedule.into()],
    )
}

/// A plugin's deliveries: (event id, verdict, detail), oldest first.
pub(super) fn deliveries(plugin: &str) -> Query {
    Query::new(
        "SELECT event_id, verdict, detail FROM deliveries WHERE plugin = ?1 ORDER BY id",
        vec![plugin.into()],
    )
}

/// Runs, newest first, optionally of one plugin and one status ([`run_columns`]).
pub(super) fn list(plugin: Option<&str>, status: Option<RunStatus>, limit: usize) -> Query {
    Query::new(
        concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE (CAST(?1 AS TEXT) IS NULL OR plugin = ?1) AND (CAST(?2 AS TEXT) IS NULL OR status = ?2)
             ORDER BY started_at DESC, id DESC LIMIT ?3"
        ),
        vec![
            plugin.into(),
            status.map(RunStatus::as_str).into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
        ],
    )
}

/// One run ([`run_columns`]).
pub(super) fn get(id: &str) -> Query {
    Query::new(
        concat!("SELECT ", run_columns!(), " FROM runs WHERE id = ?1"),
        vec![id.into()],
    )
}

/// The plugin's lease given back by `holder`.
pub(super) fn release_lease(plugin: &str, holder: &str) -> Query {
    Query::new(
        "DELETE FROM leases WHERE plugin = ?1 AND holder = ?2",
        vec![plugin.into(), holder.into()],
    )
}

/// Whatever lease run `id` holds, given back (with the write ending the run).
pub(super) fn release_held(id: &str) -> Query {
    Query::new("DELETE FROM leases WHERE holder = ?1", vec![id.into()])
}

/// A key as the state table holds it: its UTF-8 bytes, so keys sort and
/// match by prefix byte by byte in both databases.
fn key(k: &str) -> Value {
    Value::Blob(Some(k.as_bytes().to_vec()))
}

/// A key's committed value and version.
pub(super) fn state_get(plugin: &str, k: &str) -> Query {
    Query::new(
        "SELECT value, version FROM state WHERE plugin = ?1 AND key = ?2",
        vec![plugin.into(), key(k)],
    )
}

/// Committed entries whose keys start with `prefix`, after `after`, in byte order.
pub(super) fn state_list(plugin: &str, prefix: &str, after: Option<&str>, limit: u32) -> Query {
    Query::new(
        "SELECT key, value, version FROM state
         WHERE plugin = ?1 AND substr(key, 1, length(CAST(?2 AS BLOB))) = CAST(?2 AS BLOB)
           AND (CAST(?3 AS BLOB) IS NULL OR key > CAST(?3 AS BLOB))
         ORDER BY key LIMIT ?4",
        vec![
            plugin.into(),
            key(prefix),
            Value::Blob(after.map(|a| a.as_bytes().to_vec())),
            i64::from(limit).into(),
        ],
    )
}

/// How many keys a plugin holds, and their bytes with their values.
pub(super) fn state_usage(plugin: &str) -> Query {
    Query::new(
        "SELECT count(*), COALESCE(sum(length(key) + length(value)), 0) FROM state WHERE plugin = ?1",
        vec![plugin.into()],
    )
}

/// A run's change to one key, made only on the version the run saw: a key
/// changed under the run fails the whole commit.
pub(super) fn state_commit(
    plugin: &str,
    change: &levelhost_runtime::state::StateChange,
    run: &str,
    at: &str,
) -> Option<Query> {
    let version = i64::try_from(change.version).unwrap_or(i64::MAX);
    let base = change.base.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
    Some(match (&change.value, base) {
        (Some(value), None) => Query::new(
            "INSERT INTO state (plugin, key, value, version, updated_at, updated_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            vec![
                plugin.into(),
                key(&change.key),
                Value::Blob(Some(value.clone())),
                version.into(),
                at.into(),
                run.into(),
            ],
        )
        .must_change("a key the run saw without a value now has one", &change.key),
        (Some(value), Some(base)) => Query::new(
            "UPDATE state SET value = ?3, version = ?4, updated_at = ?5, updated_by = ?6
             WHERE plugin = ?1 AND key = ?2 AND version = ?7",
            vec![
                plugin.into(),
                key(&change.key),
                Value::Blob(Some(value.clone())),
                version.into(),
                at.into(),
                run.into(),
                base.into(),
            ],
        )
        .must_change("a key changed after the run read it", &change.key),
        (None, Some(base)) => Query::new(
            "DELETE FROM state WHERE plugin = ?1 AND key = ?2 AND version = ?3",
            vec![plugin.into(), key(&change.key), base.into()],
        )
        .must_change(
            "a key the run deleted changed after the run read it",
            &change.key,
        ),
        (None, None) => return None,
    })
}

/// An operator's value for a key, whatever it held (`levelhost state set`).
pub(super) fn state_put(plugin: &str, k: &str, value: &[u8], by: &str, at: &str) -> Query {
    Query::new(
        "INSERT INTO state (plugin, key, value, version, updated_at, updated_by)
         VALUES (?1, ?2, ?3, 1, ?4, ?5)
         ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, version = state.version + 1,
             updated_at = excluded.updated_at, updated_by = excluded.updated_by
         RETURNING version",
        vec![
            plugin.into(),
            key(k),
            Value::Blob(Some(value.to_vec())),
            at.into(),
            by.into(),
        ],
    )
}

/// An operator's deletion of a key (`levelhost state delete`).
pub(super) fn state_remove(plugin: &str, k: &str) -> Query {
    Query::new(
        "DELETE FROM state WHERE plugin = ?1 AND key = ?2",
        vec![plugin.into(), key(k)],
    )
}

/// Every key of a plugin, removed (an uninstall with `--purge-state`).
pub(super) fn state_purge(plugin: &str) -> Query {
    Query::new("DELETE FROM state WHERE plugin = ?1", vec![plugin.into()])
}

/// A state entry: (key, value, version), as [`state_list`] returns it.
pub(super) fn state_entry(r: &Row) -> Result<(String, Vec<u8>, i64), HistoryCause> {
    Ok((
        String::from_utf8_lossy(&r.bytes(0)?).into_owned(),
        r.bytes(1)?,
        r.int(2)?,
    ))
}

/// Whether the database answers.
pub(super) fn ping() -> Query {
    Query::new("SELECT 1", Vec::new())
}

/// One column of a row read back, whichever driver read it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell {
    /// NULL.
    Null,
    /// An integer (SQLite's booleans too).
    Int(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(String),
    /// A boolean (PostgreSQL's).
    Bool(bool),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Cell {
    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "NULL",
            Cell::Int(_) => "an integer",
            Cell::Real(_) => "a float",
            Cell::Text(_) => "text",
            Cell::Bool(_) => "a boolean",
            Cell::Bytes(_) => "bytes",
        }
    }
}

/// One row read back.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Row(pub Vec<Cell>);

/// What one statement of a write did: the rows it changed, and those it returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Outcome {
    /// Rows inserted, updated or deleted.
    pub changed: u64,
    /// Rows returned (`RETURNING`, `SELECT`).
    pub rows: Vec<Row>,
}

impl Row {
    /// A SQLite row, by the types its cells hold.
    pub fn from_sqlite(r: &rusqlite::Row<'_>, columns: usize) -> rusqlite::Result<Self> {
        use rusqlite::types::ValueRef;
        (0..columns)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) => Cell::Int(n),
                    ValueRef::Real(f) => Cell::Real(f),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
                })
            })
            .collect::<rusqlite::Result<_>>()
            .map(Row)
    }

    /// A PostgreSQL row, by its columns' types.
    pub fn from_postgres(r: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        use tokio_postgres::types::Type;
        r.columns()
            .iter()
            .enumerate()
            .map(|(i, column)| {
                let ty = column.type_();
                Ok(if *ty == Type::INT8 {
                    r.try_get::<_, Option<i64>>(i)?
                        .map_or(Cell::Null, Cell::Int)
                } else if *ty == Type::INT4 {
                    r.try_get::<_, Option<i32>>(i)?
                        .map_or(Cell::Null, |n| Cell::Int(i64::from(n)))
                } else if *ty == Type::BOOL {
                    r.try_get::<_, Option<bool>>(i)?
                        .map_or(Cell::Null, Cell::Bool)
                } else if *ty == Type::FLOAT8 {
                    r.try_get::<_, Option<f64>>(i)?
                        .map_or(Cell::Null, Cell::Real)
                } else if *ty == Type::BYTEA {
                    r.try_get::<_, Option<Vec<u8>>>(i)?
                        .map_or(Cell::Null, Cell::Bytes)
                } else {
                    r.try_get::<_, Option<String>>(i)?
                        .map_or(Cell::Null, Cell::Text)
                })
            })
            .collect::<Result<_, _>>()
            .map(Row)
    }

    fn cell(&self, i: usize) -> &Cell {
        self.0.get(i).unwrap_or(&Cell::Null)
    }

    fn wrong(&self, index: usize, wanted: &'static str) -> HistoryCause {
        HistoryCause::Column {
            index,
            wanted,
            found: self.cell(index).kind(),
        }
    }
}

/// Reading a row's columns by index.
pub(super) trait Cells {
    /// A text column that is never NULL.
    fn string(&self, i: usize) -> Result<String, HistoryCause>;
    /// A text column that may be NULL.
    fn text(&self, i: usize) -> Result<Option<String>, HistoryCause>;
    /// An integer column.
    fn int(&self, i: usize) -> Result<i64, HistoryCause>;
    /// A boolean column (SQLite's 0 or 1).
    fn boolean(&self, i: usize) -> Result<bool, HistoryCause>;
    /// A bytes column.
    fn bytes(&self, i: usize) -> Result<Vec<u8>, HistoryCause>;
}

impl Cells for Row {
    fn string(&self, i: usize) -> Result<String, HistoryCause> {
        match self.cell(i) {
            Cell::Text(t) => Ok(t.clone()),
            _ => Err(self.wrong(i, "text")),
        }
    }
    fn text(&self, i: usize) -> Result<Option<String>, HistoryCause> {
        match self.cell(i) {
            Cell::Null => Ok(None),
            _ => self.string(i).map(Some),
        }
    }
    fn int(&self, i: usize) -> Result<i64, HistoryCause> {
        match self.cell(i) {
            Cell::Int(n) => Ok(*n),
            _ => Err(self.wrong(i, "an integer")),
        }
    }
    fn boolean(&self, i: usize) -> Result<bool, HistoryCause> {
        match self.cell(i) {
            Cell::Bool(b) => Ok(*b),
            Cell::Int(n) => Ok(*n != 0),
            _ => Err(self.wrong(i, "a boolean")),
        }
    }
    fn bytes(&self, i: usize) -> Result<Vec<u8>, HistoryCause> {
        match self.cell(i) {
            Cell::Bytes(b) => Ok(b.clone()),
            _ => Err(self.wrong(i, "bytes")),
        }
    }
}

/// A JSON column (unreadable JSON reads as absent).
fn json(r: &Row, i: usize) -> Result<Option<serde_json::Value>, HistoryCause> {
    Ok(r.text(i)?.and_then(|t| serde_json::from_str(&t).ok()))
}

/// A run, from a row of [`run_columns`].
pub(super) fn run_row(r: &Row) -> Result<RunRow, HistoryCause> {
    Ok(RunRow {
        id: r.string(0)?,
        plugin: r.string(1)?,
        version: r.string(2)?,
        digest: r.string(3)?,
        trigger: r.string(4)?,
        schedule: r.text(5)?,
        planned_at: r.text(6)?,
        event_id: r.text(7)?,
        event_type: r.text(8)?,
        started_at: r.string(9)?,
        ended_at: r.text(10)?,
        status: r.string(11)?,
        output: r.text(12)?,
        error: r.text(13)?,
        api_calls: r.int(14)?,
        writes: r.int(15)?,
        dry_run: r.boolean(16)?,
        logs: json(r, 17)?,
        plan: json(r, 18)?,
        input: json(r, 19)?,
        devices_changed: r.int(20)?,
        approval: match r.text(22)? {
            None => None,
            Some(expires_at) => Some(ApprovalRecord {
                needed: json(r, 21)?
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default(),
                expires_at,
                decision: r.text(23)?,
                decided_by: r.text(24)?,
                decided_at: r.text(25)?,
                reason: r.text(26)?,
            }),
        },
        divergence: json(r, 27)?,
        replica: r.text(28)?,
    })
}

/// (id, plugin), as [`expire_overdue`] returns them.
pub(super) fn id_and_plugin(r: &Row) -> Result<(String, String), HistoryCause> {
    Ok((r.string(0)?, r.string(1)?))
}

/// (event id, verdict, detail), as [`deliveries`] returns them.
pub(super) fn delivery(r: &Row) -> Result<(Option<String>, String, String), HistoryCause> {
    Ok((r.text(0)?, r.string(1)?, r.string(2)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_postgres_ones() {
        assert_eq!(
            postgres("UPDATE t SET a = ?2, b = ?10 WHERE id = ?1 AND c <> '?'"),
            "UPDATE t SET a = $2, b = $10 WHERE id = $1 AND c <> '?'"
        );
        assert_eq!(
            postgres("SELECT CAST(?1 AS BLOB)"),
            "SELECT CAST($1 AS BYTEA)"
        );
    }

    #[test]
    fn statements_that_return_rows_are_known() {
        assert!(get("r").returns_rows());
        assert!(expire_overdue("t").returns_rows());
        assert!(!fail("r", "e", "t").returns_rows());
        assert!(!insert_claimed_delivery("r", "p", None, "t").returns_rows());
    }

    #[test]
    fn every_run_column_is_read() {
        assert_eq!(run_columns!().split(',').count(), 29);
    }
}
