//! The store's table: made at start, and kept to its live marks.

use std::time::Duration;

use super::error::store_error;
use super::store::PostgresStore;
use crate::store::StoreError;

/// Rows deleted per statement by [`PostgresStore::cleanup`], so that no statement holds
/// many locks or runs for long.
const CLEANUP_BATCH: i64 = 10_000;

impl PostgresStore {
    /// Creates the table and its index if they do not exist. Safe to call from every replica
    /// at start: an advisory lock makes concurrent calls wait for each other.
    ///
    /// ```no_run
    /// # async fn doc(store: tower_webhook::store::PostgresStore) -> Result<(), tower_webhook::store::StoreError> {
    /// // At start, from every replica: they wait for each other.
    /// store.create_table().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tower-webhook:' || $1))")
            .bind(&*self.table)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(self.sql.create_table.clone())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(self.sql.create_index.clone())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    /// Deletes expired rows, in batches, and returns how many it deleted.
    ///
    /// ```no_run
    /// # async fn doc(store: tower_webhook::store::PostgresStore) -> Result<(), tower_webhook::store::StoreError> {
    /// let deleted = store.cleanup().await?;
    /// println!("deleted {deleted} expired claims");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cleanup(&self) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let batch = sqlx::query(self.sql.cleanup.clone())
                .bind(CLEANUP_BATCH)
                .execute(&self.pool)
                .await
                .map_err(store_error)?
                .rows_affected();
            deleted += batch;
            if batch < CLEANUP_BATCH.unsigned_abs() {
                return Ok(deleted);
            }
        }
    }

    /// Runs [`cleanup`](Self::cleanup) every `every` on the Tokio runtime, logging failures.
    /// It runs until the returned handle is aborted or the runtime shuts down.
    ///
    /// ```no_run
    /// # async fn doc(store: tower_webhook::store::PostgresStore) {
    /// let cleanup = store.spawn_cleanup(std::time::Duration::from_secs(3600));
    /// // ... and at shutdown:
    /// cleanup.abort();
    /// # }
    /// ```
    pub fn spawn_cleanup(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match store.cleanup().await {
                    Ok(deleted) => {
                        tracing::debug!(deleted, table = %store.table, "webhook claims cleaned up");
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, table = %store.table, "webhook claims cleanup failed");
                    }
                }
            }
        })
    }
}
