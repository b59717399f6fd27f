//! The inbox's schema: versioned migrations, each dialect's own, run once per database.
//!
//! The version is the number of migrations the database has had, kept in
//! `webhook_inbox_schema`. A start with the schema in place reads it, and takes no lock and
//! writes nothing; otherwise the missing migrations run in one transaction, one process at
//! a time (PostgreSQL's advisory lock; SQLite's write lock), each looking again once it is
//! its turn.

use super::dialect::{self, begin, Arg, Backend, Pool};
use super::error::{InboxError, InboxErrorKind};

/// The version of the schema in the database: 0 where there is none.
async fn version<D: Backend>(conn: &mut dialect::Conn<D>) -> Result<usize, InboxError> {
    let tables: Vec<(i64,)> = D::fetch_on(conn, D::SCHEMA_TABLE, &[]).await?;
    if !matches!(tables.first(), Some(&(n,)) if n > 0) {
        return Ok(0);
    }
    let rows: Vec<(i64,)> = D::fetch_on(
        conn,
        "SELECT COALESCE(MAX(version), 0) FROM webhook_inbox_schema",
        &[],
    )
    .await?;
    Ok(rows
        .first()
        .map_or(0, |&(n,)| usize::try_from(n).unwrap_or(0)))
}

/// Brings the inbox's schema in `pool` to the current version.
pub(crate) async fn migrate<D: Backend>(pool: &Pool<D>) -> Result<(), InboxError> {
    let current = D::MIGRATIONS.len();
    {
        let mut conn = pool.acquire().await.map_err(D::error)?;
        if version::<D>(&mut conn).await? == current {
            return Ok(());
        }
    }
    let mut tx = begin::<D>(pool).await?;
    if let Some(lock) = D::MIGRATION_LOCK {
        D::execute_on(&mut tx, lock, &[]).await?;
    }
    let found = version::<D>(&mut tx).await?;
    if found > current {
        return Err(InboxError::new(
            InboxErrorKind::Database,
            format!(
                "the inbox's schema is at version {found}, newer than this build's {current}: \
                 run a newer tower-webhook"
            ),
        ));
    }
    if found == current {
        return tx.commit().await.map_err(D::error);
    }
    D::execute_on(
        &mut tx,
        "CREATE TABLE IF NOT EXISTS webhook_inbox_schema (version BIGINT NOT NULL)",
        &[],
    )
    .await?;
    for migration in &D::MIGRATIONS[found..] {
        for statement in *migration {
            D::execute_on(&mut tx, statement, &[]).await?;
        }
    }
    let version = Arg::Int(i64::try_from(current).unwrap_or(i64::MAX));
    D::execute_on(
        &mut tx,
        "INSERT INTO webhook_inbox_schema (version) VALUES ($1)",
        &[version],
    )
    .await?;
    tx.commit().await.map_err(D::error)
}
