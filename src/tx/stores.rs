//! The stores a `Tx` runs on: each one's pool, writers, and completion of a claim in the
//! handler's transaction.

use std::sync::Arc;
use std::time::Duration;

use super::TxStore;
use crate::store::writers::Writers;
use crate::store::{ClaimToken, StoreError};

#[cfg(feature = "postgres")]
impl TxStore for crate::store::PostgresStore {
    type Db = sqlx::Postgres;
    const BEGIN: Option<&'static str> = None;

    fn tx_pool(&self) -> &sqlx::PgPool {
        self.pool()
    }

    fn tx_writers(&self) -> &Arc<Writers> {
        self.writers()
    }

    async fn complete_in(
        &self,
        conn: &mut sqlx::PgConnection,
        key: &str,
        token: &ClaimToken,
        keep_for: Duration,
    ) -> Result<bool, StoreError> {
        self.complete_on(conn, key, token, keep_for).await
    }

    fn error(err: sqlx::Error) -> StoreError {
        crate::store::postgres::store_error(err)
    }
}

#[cfg(feature = "sqlite")]
impl TxStore for crate::store::SqliteStore {
    type Db = sqlx::Sqlite;
    // The write lock from the start: a transaction that read first and wrote later could
    // not take it while another writer held it, and would fail rather than wait.
    const BEGIN: Option<&'static str> = Some(crate::store::sqlite::BEGIN_IMMEDIATE);

    fn tx_pool(&self) -> &sqlx::SqlitePool {
        self.pool()
    }

    fn tx_writers(&self) -> &Arc<Writers> {
        self.writers()
    }

    async fn complete_in(
        &self,
        conn: &mut sqlx::SqliteConnection,
        key: &str,
        token: &ClaimToken,
        keep_for: Duration,
    ) -> Result<bool, StoreError> {
        self.complete_on(conn, key, token, keep_for).await
    }

    fn error(err: sqlx::Error) -> StoreError {
        crate::store::sqlite::store_error(err)
    }
}
