//! The store's table: its name, checked, and the statements on it, made once.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

/// The statements of one table, made once. Each is shared with every query that runs it,
/// as sqlx's `SqlStr` (no copy per query). They are safe to run as they are: the only part
/// not written here is the table's name, which `table_parts` checks to be plain identifiers.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) create_table: SqlStr,
    pub(crate) create_index: SqlStr,
    pub(crate) claim: SqlStr,
    pub(crate) complete: SqlStr,
    pub(crate) release: SqlStr,
    /// One completion in a handler's transaction, by the clock (`now()` is the time the
    /// transaction began, which may be before the lease ran out).
    pub(crate) complete_in: SqlStr,
    pub(crate) cleanup: SqlStr,
    #[cfg(feature = "inbox-postgres")]
    pub(crate) mark_many: SqlStr,
}

impl Sql {
    pub(crate) fn new(schema: Option<&str>, name: &str) -> Self {
        let qualified = match schema {
            Some(schema) => format!("\"{schema}\".\"{name}\""),
            None => format!("\"{name}\""),
        };
        let t = qualified;
        let sql = |text: String| AssertSqlSafe(Arc::<str>::from(text)).into_sql_str();
        Self {
            create_table: sql(format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    key BYTEA PRIMARY KEY,
                    token TEXT,
                    completed BOOLEAN NOT NULL DEFAULT FALSE,
                    expires_at TIMESTAMPTZ NOT NULL
                )"
            )),
            create_index: sql(format!(
                "CREATE INDEX IF NOT EXISTS \"{name}_expires_at_idx\" ON {t} (expires_at)"
            )),
            // Each statement carries a batch of calls (see `batch`): arrays, one element per
            // call, numbered by `WITH ORDINALITY`, and it answers each call by its number. The
            // keys of a batch are distinct and sorted, so that statements lock rows in one
            // order (see `statements::DEADLOCK_RETRIES` for where they cannot).
            //
            // A row the INSERT did not take is read from the statement's snapshot. If that
            // row is missing or expired there, another claim took the key after the
            // snapshot: it is in flight.
            //
            // Each statement sets `synchronous_commit` for its own transaction (`set_config`
            // with `is_local`): one round trip, and the pool's sessions keep their setting.
            //
            // `now()` is when the statement's transaction began, before a wait for a lock at
            // Bind; `clock_timestamp()` is the time as each row is written. A claim that would
            // be written more than its own budget (`budget`, seconds: what is left of its
            // statement timeout) after that writes nothing and answers `late`: its caller has
            // given up on it, and a claim nobody holds would make every retry wait for its
            // lease.
            //
            // The budget is checked as each row is written, not once as the statement starts:
            // the INSERT has no ORDER BY (the keys come sorted, see above), so the scan of
            // `input` filters a row only when the INSERT asks for it, after the rows before it
            // were written and any lock they waited for was granted. A row that meets a live
            // one is checked again after its wait, in the conflict's WHERE.
            claim: sql(format!(
                "WITH input AS (
                    SELECT * FROM unnest($1::bytea[], $2::text[], $3::float8[], $4::float8[])
                        WITH ORDINALITY AS r(key, token, lease, budget, n)
                ), taken AS (
                    INSERT INTO {t} AS c (key, token, completed, expires_at)
                    SELECT key, token, FALSE, now() + make_interval(secs => lease) FROM input
                    WHERE clock_timestamp() < now() + make_interval(secs => budget)
                    ON CONFLICT (key) DO UPDATE
                        SET token = excluded.token, completed = FALSE, expires_at = excluded.expires_at
                        WHERE c.expires_at <= now()
                        AND clock_timestamp() < now() + make_interval(secs => (
                            SELECT i.budget FROM input AS i WHERE i.key = excluded.key
                        ))
                    RETURNING c.key
                )
                SELECT input.n, CASE
                    WHEN taken.key IS NOT NULL THEN 'acquired'
                    WHEN clock_timestamp() >= now() + make_interval(secs => input.budget) THEN 'late'
                    WHEN EXISTS (
                        SELECT 1 FROM {t} WHERE key = input.key AND completed AND expires_at > now()
                    ) THEN 'completed'
                    ELSE 'in_flight'
                END
                FROM input LEFT JOIN taken ON taken.key = input.key
                CROSS JOIN (SELECT set_config('synchronous_commit', $5, true)) AS commit_mode"
            )),
            // `c.expires_at - now() > '0'` rather than `c.expires_at > now()`: the same test,
            // in a form the index on `expires_at` cannot serve, so that the plan always finds
            // the rows by their keys, whatever the table's statistics say.
            complete: sql(format!(
                "UPDATE {t} AS c
                SET completed = TRUE, token = NULL, expires_at = now() + make_interval(secs => r.keep)
                FROM unnest($1::bytea[], $2::text[], $3::float8[]) WITH ORDINALITY AS r(key, token, keep, n)
                WHERE c.key = r.key AND c.token = r.token AND NOT c.completed
                AND c.expires_at - now() > interval '0'
                AND (SELECT set_config('synchronous_commit', $4, true)) IS NOT NULL
                RETURNING r.n"
            )),
            release: sql(format!(
                "DELETE FROM {t} AS c
                USING unnest($1::bytea[], $2::text[]) WITH ORDINALITY AS r(key, token, n)
                WHERE c.key = r.key AND c.token = r.token AND NOT c.completed
                AND c.expires_at - now() > interval '0'
                AND (SELECT set_config('synchronous_commit', $3, true)) IS NOT NULL
                RETURNING r.n"
            )),
            complete_in: sql(format!(
                "UPDATE {t}
                SET completed = TRUE, token = NULL,
                    expires_at = clock_timestamp() + make_interval(secs => $3)
                WHERE key = $1 AND token = $2 AND NOT completed
                AND expires_at - clock_timestamp() > interval '0'"
            )),
            // The outer condition is checked again on rows a concurrent claim just took, so
            // that cleanup never deletes a live claim.
            cleanup: sql(format!(
                "DELETE FROM {t}
                WHERE key IN (SELECT key FROM {t} WHERE expires_at <= now() LIMIT $1)
                AND expires_at <= now()"
            )),
            #[cfg(feature = "inbox-postgres")]
            mark_many: sql(mark_many(&t)),
        }
    }
}

/// The inbox's marks, written in its door's transaction: each of many distinct keys, fresh
/// or expired, is marked completed for its dedup window, in the order of the keys; a live
/// one is left as it is (a concurrent batch with the same key waits for this transaction,
/// then finds the mark). The commit of the transaction is made to wait for the disk. The rows a data-modifying
/// CTE writes are not seen by the rest of the statement: the completed flag read for a key
/// not taken is the live mark's, as it was.
#[cfg(feature = "inbox-postgres")]
fn mark_many(t: &str) -> String {
    format!(
        "WITH input AS (
            SELECT * FROM unnest($1::bytea[], $2::float8[]) WITH ORDINALITY AS r(key, keep, n)
        ), taken AS (
            INSERT INTO {t} AS c (key, token, completed, expires_at)
            SELECT key, NULL, TRUE, now() + make_interval(secs => keep)
            FROM input ORDER BY key
            ON CONFLICT (key) DO UPDATE
                SET token = NULL, completed = TRUE, expires_at = excluded.expires_at
                WHERE c.expires_at <= now()
            RETURNING c.key
        )
        SELECT input.n, taken.key IS NOT NULL,
            (SELECT completed FROM {t} AS live WHERE live.key = input.key)
        FROM input LEFT JOIN taken ON taken.key = input.key
        CROSS JOIN (SELECT set_config('synchronous_commit', 'on', true)) AS commit_mode"
    )
}

/// The optional schema and the table of `schema.table` or `table`, if each is a plain
/// identifier that fits.
pub(crate) fn table_parts(name: &str) -> Option<(Option<&str>, &str)> {
    let (schema, table) = match name.split_once('.') {
        Some((schema, table)) => (Some(schema), table),
        None => (None, name),
    };
    let valid = schema.is_none_or(|schema| is_identifier(schema, 63)) && is_identifier(table, 40);
    valid.then_some((schema, table))
}

fn is_identifier(part: &str, max_len: usize) -> bool {
    let mut chars = part.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && part.len() <= max_len
}

/// A table name [`PostgresStore::with_table`](super::PostgresStore::with_table) refused.
///
/// ```
/// use tower_webhook::store::PostgresStore;
/// use tower_webhook::store::postgres::sqlx::postgres::PgPoolOptions;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = PgPoolOptions::new().connect_lazy("postgres://postgres@127.0.0.1:5432/app")?;
/// let err = PostgresStore::new(pool).with_table("1st-table").unwrap_err();
/// assert!(err.to_string().starts_with("invalid table name"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTableName {
    pub(crate) name: String,
}

impl fmt::Display for InvalidTableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid table name {:?}: use `table` or `schema.table`, each a plain identifier \
             (letters, digits, `_`), the table at most 40 characters",
            self.name
        )
    }
}

impl Error for InvalidTableName {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        for ok in ["webhook_claims", "_t", "app.webhook_claims", "T1"] {
            assert!(table_parts(ok).is_some(), "{ok}");
        }
        let long = "t".repeat(41);
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "a;drop table x",
            "\"quoted\"",
            "a.b.c",
            ".t",
            "s.",
            "ünï",
            long.as_str(),
        ] {
            assert!(table_parts(bad).is_none(), "{bad}");
        }
        assert_eq!(table_parts("app.claims"), Some((Some("app"), "claims")));
    }
}
