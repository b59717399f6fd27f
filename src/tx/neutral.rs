//! Statements a [`Tx`](super::Tx) runs the same way on SQLite and PostgreSQL, for an app
//! written once for either database: `$1`, `$2`, ... placeholders (both read them), values
//! of one small type, rows read back as values. Code generic over the inbox's
//! [`Dialect`](crate::inbox::Dialect) calls them on a `Tx<D::Db>` with no bound of its own.

use std::future::Future;
use std::pin::Pin;

use super::StillOpen;

/// The kind of a [`SqlValue`]: what a NULL is bound as (PostgreSQL types every parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SqlKind {
    /// `BOOLEAN`.
    Bool,
    /// A 64-bit integer: `BIGINT` (`INTEGER` on SQLite).
    Int,
    /// A double: `DOUBLE PRECISION` (`REAL` on SQLite).
    Float,
    /// `TEXT`.
    Text,
    /// Bytes: `BYTEA` (`BLOB` on SQLite).
    Bytes,
}

/// A value bound to a statement of [`Tx::execute`](super::Tx::execute) or
/// [`Tx::fetch_all`](super::Tx::fetch_all), or read from a column of a [`SqlRow`].
///
/// ```
/// use tower_webhook::{SqlKind, SqlValue};
///
/// assert_eq!(SqlValue::from("evt_1"), SqlValue::Text("evt_1".to_owned()));
/// assert_eq!(SqlValue::from(42_i64), SqlValue::Int(42));
/// assert_eq!(SqlValue::from(None::<i64>), SqlValue::Null(SqlKind::Int));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SqlValue {
    /// NULL, bound as a NULL of its kind. A NULL column reads as `Null(SqlKind::Text)`.
    Null(SqlKind),
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer (smaller integer columns read as it too).
    Int(i64),
    /// A double (`REAL` columns read as it too).
    Float(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl SqlValue {
    /// The integer, where this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The text, where this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The bytes, where these are bytes.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null(_))
    }
}

/// `From` for each type a value can be, and a typed NULL for its `Option`.
macro_rules! values {
    ($($from:ty => $variant:ident($convert:expr), $kind:ident;)*) => {$(
        impl From<$from> for SqlValue {
            fn from(value: $from) -> Self {
                Self::$variant($convert(value))
            }
        }

        impl From<Option<$from>> for SqlValue {
            fn from(value: Option<$from>) -> Self {
                value.map_or(Self::Null(SqlKind::$kind), Self::from)
            }
        }
    )*};
}

values! {
    bool => Bool(|b| b), Bool;
    i64 => Int(|n| n), Int;
    i32 => Int(i64::from), Int;
    u32 => Int(i64::from), Int;
    f64 => Float(|x| x), Float;
    String => Text(|s| s), Text;
    &str => Text(str::to_owned), Text;
    Vec<u8> => Bytes(|b| b), Bytes;
    &[u8] => Bytes(<[u8]>::to_vec), Bytes;
}

/// A row read by [`Tx::fetch_all`](super::Tx::fetch_all): its columns' values, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRow(pub(crate) Vec<SqlValue>);

impl SqlRow {
    /// The value of column `index` (from 0), if there is one.
    pub fn get(&self, index: usize) -> Option<&SqlValue> {
        self.0.get(index)
    }

    /// Every column's value, in order.
    pub fn values(&self) -> &[SqlValue] {
        &self.0
    }
}

/// A future borrowing the connection.
type Running<'c, T> = Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

/// A database a [`Tx`](super::Tx) runs neutral statements on: `sqlx::Sqlite` or
/// `sqlx::Postgres`. Public in a private module: the `Tx` methods name it, and no one
/// outside the crate can implement it.
#[allow(unreachable_pub)]
pub trait Neutral: StillOpen {
    /// Runs `sql` with `args` on `conn`: how many rows it changed.
    fn execute<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        args: &'c [SqlValue],
    ) -> Running<'c, u64>;
    /// The rows `sql` reads with `args` on `conn`.
    fn fetch_all<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        args: &'c [SqlValue],
    ) -> Running<'c, Vec<SqlRow>>;
}

/// [`Neutral`] for a database of sqlx: its arguments bound, its columns read by trying the
/// kinds in turn (sqlx refuses a type that does not fit the column's).
macro_rules! neutral {
    ($db:ty) => {
        impl Neutral for $db {
            fn execute<'c>(
                conn: &'c mut Self::Connection,
                sql: &'c str,
                args: &'c [SqlValue],
            ) -> Running<'c, u64> {
                Box::pin(async move {
                    let query = sqlx::query_with(sqlx::AssertSqlSafe(sql), bind::<$db>(args)?);
                    Ok(query.execute(conn).await?.rows_affected())
                })
            }

            fn fetch_all<'c>(
                conn: &'c mut Self::Connection,
                sql: &'c str,
                args: &'c [SqlValue],
            ) -> Running<'c, Vec<SqlRow>> {
                Box::pin(async move {
                    use sqlx::{Row as _, ValueRef as _};
                    let query = sqlx::query_with(sqlx::AssertSqlSafe(sql), bind::<$db>(args)?);
                    let rows = query.fetch_all(conn).await?;
                    rows.iter()
                        .map(|row| {
                            (0..row.len())
                                .map(|i| {
                                    if row.try_get_raw(i)?.is_null() {
                                        return Ok(SqlValue::Null(SqlKind::Text));
                                    }
                                    row.try_get::<i64, _>(i)
                                        .map(SqlValue::Int)
                                        .or_else(|_| row.try_get::<i32, _>(i).map(SqlValue::from))
                                        .or_else(|_| row.try_get::<f64, _>(i).map(SqlValue::Float))
                                        .or_else(|_| row.try_get::<bool, _>(i).map(SqlValue::Bool))
                                        .or_else(|_| {
                                            row.try_get::<String, _>(i).map(SqlValue::Text)
                                        })
                                        .or_else(|_| {
                                            row.try_get::<Vec<u8>, _>(i).map(SqlValue::Bytes)
                                        })
                                })
                                .collect::<Result<Vec<_>, sqlx::Error>>()
                                .map(SqlRow)
                        })
                        .collect()
                })
            }
        }
    };
}

/// `args` as `DB` binds them.
fn bind<'a, DB>(args: &'a [SqlValue]) -> Result<<DB as sqlx::Database>::Arguments, sqlx::Error>
where
    DB: sqlx::Database,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a [u8]: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<bool>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<f64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a [u8]>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    use sqlx::Arguments as _;
    let mut bound = <DB as sqlx::Database>::Arguments::default();
    for arg in args {
        match arg {
            SqlValue::Null(SqlKind::Bool) => bound.add(None::<bool>),
            SqlValue::Null(SqlKind::Int) => bound.add(None::<i64>),
            SqlValue::Null(SqlKind::Float) => bound.add(None::<f64>),
            SqlValue::Null(SqlKind::Text) => bound.add(None::<&str>),
            SqlValue::Null(SqlKind::Bytes) => bound.add(None::<&[u8]>),
            SqlValue::Bool(b) => bound.add(*b),
            SqlValue::Int(n) => bound.add(*n),
            SqlValue::Float(x) => bound.add(*x),
            SqlValue::Text(text) => bound.add(text.as_str()),
            SqlValue::Bytes(bytes) => bound.add(bytes.as_slice()),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(bound)
}

#[cfg(feature = "sqlite")]
neutral!(sqlx::Sqlite);
#[cfg(feature = "postgres")]
neutral!(sqlx::Postgres);

impl<DB: Neutral> super::Tx<DB> {
    /// Runs `sql` with `args` in the transaction, the same way on SQLite and PostgreSQL
    /// (`$1`, `$2`, ... placeholders): how many rows it changed. For an app written once for
    /// either database; sqlx's own API, through the `Tx`'s connection, stays there for the
    /// rest.
    ///
    /// One handler for an inbox on either database, its `Tx` included:
    ///
    /// ```no_run
    /// # #[cfg(all(feature = "inbox-sqlite", feature = "inbox-postgres"))] {
    /// use tower_webhook::inbox::{Dialect, Inbox};
    /// use tower_webhook::{Event, Tx};
    ///
    /// async fn record<D: Dialect>(event: Event, mut tx: Tx<D::Db>) -> Result<(), sqlx::Error> {
    ///     let size = i64::try_from(event.body().len()).unwrap_or(i64::MAX);
    ///     tx.execute(
    ///         "INSERT INTO seen (event_id, bytes) VALUES ($1, $2)",
    ///         &[event.id().into(), size.into()],
    ///     )
    ///     .await?;
    ///     Ok(()) // committed with the job's completion
    /// }
    ///
    /// async fn work_on<D: Dialect>(inbox: Inbox<D>) {
    ///     let _ = inbox.worker(record::<D>).run().await;
    /// }
    /// # }
    /// ```
    pub async fn execute(&mut self, sql: &str, args: &[SqlValue]) -> Result<u64, sqlx::Error> {
        DB::execute(self, sql, args).await
    }

    /// The rows `sql` reads with `args` in the transaction, the same way on SQLite and
    /// PostgreSQL: each a [`SqlRow`] of [`SqlValue`]s. Each column must be a boolean, an
    /// integer, a double, text or bytes (cast any other in the statement, as
    /// `CAST(created_at AS TEXT)`): a column of another type fails the call with sqlx's
    /// error.
    pub async fn fetch_all(
        &mut self,
        sql: &str,
        args: &[SqlValue],
    ) -> Result<Vec<SqlRow>, sqlx::Error> {
        DB::fetch_all(self, sql, args).await
    }
}
