//! The audit in the database the replicas share.

use std::path::PathBuf;

use super::{HistoryCause, HistoryError, PgResult, migrated_pool};
use deadpool_postgres::Pool;
use levelhost_runtime::audit::{AuditCause, AuditError, AuditFilter, AuditRecord, AuditStore};

/// The audit in the database the replicas share: the fields of the JSON
/// lines as columns, so `levelhost audit` and the console read every
/// replica's records from any of them. Each record is committed before
/// `append` returns, so a write's `sending` record is in the database
/// before the write leaves for Level.
pub struct PgAudit {
    pool: Pool,
    label: PathBuf,
}

impl std::fmt::Debug for PgAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAudit")
            .field("database", &self.label)
            .finish_non_exhaustive()
    }
}

impl PgAudit {
    /// Connects to the database at `url` (applying the migrations not yet applied).
    pub async fn connect(url: &str, password: Option<&str>) -> Result<Self, HistoryError> {
        let (pool, label) = migrated_pool(url, password, 4).await?;
        Ok(Self { pool, label })
    }

    fn failed(&self, source: HistoryCause) -> AuditError {
        AuditError {
            path: self.label.clone(),
            source: AuditCause::Store(Box::new(HistoryError {
                path: self.label.clone(),
                source,
            })),
        }
    }
}

#[async_trait::async_trait]
impl AuditStore for PgAudit {
    fn location(&self) -> &std::path::Path {
        &self.label
    }

    async fn append(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let r = record.clone();
        let names = serde_json::to_string(&r.names).unwrap_or_else(|_| "{}".to_owned());
        let stage = serde_json::to_value(r.stage)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let pool = &self.pool;
        async move {
                pool.get()
                    .await?
                    .execute(
                        "INSERT INTO audit (time, plugin, version, digest, run_id, operation, targets, allowed, reason, upstream_status, latency_ms, dry_run, requests, stage, names, bytes)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                        &[
                            &r.time,
                            &&*r.plugin,
                            &&*r.version,
                            &&*r.digest,
                            &&*r.run_id,
                            &r.operation,
                            &r.targets,
                            &r.allowed,
                            &r.reason,
                            &r.upstream_status.map(i32::from),
                            &i64::try_from(r.latency_ms).unwrap_or(i64::MAX),
                            &r.dry_run,
                            &i64::from(r.requests),
                            &stage,
                            &names,
                            &r.bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                        ],
                    )
                    .await?;
                PgResult::Ok(())
            }
            .await
            .map_err(|e| self.failed(e))
    }

    /// Every record was committed as it was appended.
    async fn sync(&self) -> Result<(), AuditError> {
        Ok(())
    }

    async fn read(&self, filter: &AuditFilter) -> Result<(Vec<AuditRecord>, usize), AuditError> {
        let pool = &self.pool;
        async move {
                let rows = pool
                    .get()
                    .await?
                    .query(
                        "SELECT time, plugin, version, digest, run_id, operation, targets, allowed, reason, upstream_status, latency_ms, dry_run, requests, stage, names, bytes FROM audit
                         WHERE ($1::TEXT IS NULL OR plugin = $1) AND ($2::TEXT IS NULL OR run_id = $2) AND (NOT $3 OR NOT allowed) ORDER BY id",
                        &[&filter.plugin, &filter.run_id, &filter.denied],
                    )
                    .await?;
                let mut records = Vec::with_capacity(rows.len());
                let mut skipped = 0;
                for r in rows {
                    let stage: String = r.try_get(13)?;
                    let (Ok(stage), Ok(upstream), Ok(latency), Ok(requests)) = (
                        serde_json::from_value(serde_json::Value::String(stage)),
                        r.try_get::<_, Option<i32>>(9)
                            .map(|s| s.and_then(|s| u16::try_from(s).ok())),
                        r.try_get::<_, i64>(10).map(|l| u64::try_from(l).unwrap_or(0)),
                        r.try_get::<_, i64>(12).map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                    ) else {
                        skipped += 1;
                        continue;
                    };
                    records.push(AuditRecord {
                        time: r.try_get(0)?,
                        plugin: r.try_get::<_, &str>(1)?.into(),
                        version: r.try_get::<_, &str>(2)?.into(),
                        digest: r.try_get::<_, &str>(3)?.into(),
                        run_id: r.try_get::<_, &str>(4)?.into(),
                        operation: r.try_get::<_, String>(5)?.into(),
                        targets: r.try_get(6)?,
                        names: serde_json::from_str(&r.try_get::<_, String>(14)?)
                            .unwrap_or_default(),
                        allowed: r.try_get(7)?,
                        reason: r.try_get(8)?,
                        upstream_status: upstream,
                        latency_ms: latency,
                        dry_run: r.try_get(11)?,
                        requests,
                        bytes: r
                            .try_get::<_, Option<i64>>(15)?
                            .and_then(|b| u64::try_from(b).ok()),
                        stage,
                    });
                }
                PgResult::Ok((records, skipped))
            }
            .await
            .map_err(|e| self.failed(e))
    }
}
