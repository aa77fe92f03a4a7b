//! Every key's rate budget in the database the replicas share.

use super::*;

/// Every key's rate budget in the database the replicas share (a token
/// bucket per key name, on the database's clock), so replicas on one key
/// stay within Level's limit together and a 429 pauses the key for all.
/// The table is made by the history's migrations (applied when a replica's
/// history connects, before any plugin runs).
#[derive(Clone)]
pub struct PgRateBudgets {
    pool: Pool,
}

impl std::fmt::Debug for PgRateBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRateBudgets").finish_non_exhaustive()
    }
}

impl PgRateBudgets {
    /// Budgets in the database at `url`; connections are made on the
    /// runtime of the first request that needs one.
    pub fn new(url: &str, password: Option<&str>) -> Result<Self, HistoryError> {
        Ok(Self {
            pool: pool(url, password, 4).map_err(|source| HistoryError {
                path: PathBuf::from(url),
                source,
            })?,
        })
    }

    async fn take_one(&self, key: &str, per_minute: u32, burst: u32) -> PgResult<Option<Duration>> {
        let capacity = f64::from(burst.max(1));
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO rate_budgets (key, tokens, at) VALUES ($1, $2, EXTRACT(EPOCH FROM clock_timestamp())::float8) ON CONFLICT (key) DO NOTHING",
            &[&key, &capacity],
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT tokens, at, paused_until, EXTRACT(EPOCH FROM clock_timestamp())::float8 FROM rate_budgets WHERE key = $1 FOR UPDATE",
                &[&key],
            )
            .await?;
        let (tokens, at, paused_until, now): (f64, f64, f64, f64) = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        );
        if paused_until > now {
            tx.commit().await?;
            return Ok(Some(Duration::from_secs_f64(paused_until - now)));
        }
        let (left, wait) = level_api::RateBudget::take_from(tokens, now - at, per_minute, burst);
        tx.execute(
            "UPDATE rate_budgets SET tokens = $2, at = $3 WHERE key = $1",
            &[&key, &left, &now],
        )
        .await?;
        tx.commit().await?;
        Ok(wait)
    }

    async fn pause_key(&self, key: &str, wait: Duration) -> PgResult<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO rate_budgets AS b (key, tokens, at, paused_until)
                 VALUES ($1, 0, EXTRACT(EPOCH FROM clock_timestamp())::float8, EXTRACT(EPOCH FROM clock_timestamp())::float8 + $2)
                 ON CONFLICT (key) DO UPDATE SET tokens = 0, at = EXCLUDED.at, paused_until = GREATEST(b.paused_until, EXCLUDED.paused_until)",
                &[&key, &wait.as_secs_f64()],
            )
            .await?;
        Ok(())
    }
}

impl level_api::SharedBudget for PgRateBudgets {
    fn take<'a>(
        &'a self,
        key: &'a str,
        per_minute: u32,
        burst: u32,
    ) -> level_api::BoxFuture<'a, Result<Option<Duration>, level_api::SharedBudgetError>> {
        Box::pin(async move { Ok(self.take_one(key, per_minute, burst).await?) })
    }

    fn pause<'a>(
        &'a self,
        key: &'a str,
        wait: Duration,
    ) -> level_api::BoxFuture<'a, Result<(), level_api::SharedBudgetError>> {
        Box::pin(async move { Ok(self.pause_key(key, wait).await?) })
    }
}
