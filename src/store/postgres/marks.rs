//! The inbox's dedup marks, written through the store in the door's transaction.

use std::time::Duration;

use super::error::store_error;
use super::store::{secs, PostgresStore};
use crate::store::{stored_key, Marked, StoreError, StoreErrorKind};

impl PostgresStore {
    /// Marks each of `keys` (distinct) completed for its window on `conn`, in one
    /// statement, unless a live mark is there: each key's outcome, in the order given.
    pub(crate) async fn mark_many(
        &self,
        conn: &mut sqlx::PgConnection,
        keys: &[(&str, Duration)],
    ) -> Result<Vec<Marked>, StoreError> {
        let stored: Vec<Vec<u8>> = keys
            .iter()
            .map(|(key, _)| stored_key(key).into_owned())
            .collect();
        let keep: Vec<f64> = keys.iter().map(|&(_, window)| secs(window)).collect();
        let rows: Vec<(i64, bool, Option<bool>)> = sqlx::query_as(self.sql.mark_many.clone())
            .bind(stored)
            .bind(keep)
            .fetch_all(&mut *conn)
            .await
            .map_err(store_error)?;
        let mut marked = vec![None; keys.len()];
        for (n, taken, completed) in rows {
            let Some(slot) = usize::try_from(n - 1)
                .ok()
                .and_then(|at| marked.get_mut(at))
            else {
                continue;
            };
            *slot = Some(if taken {
                Marked::Fresh
            } else {
                Marked::live(completed)
            });
        }
        // Every key has its row: an answer missing would be a delivery neither queued nor
        // refused.
        marked
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| StoreError::new(StoreErrorKind::Backend, "a mark's outcome is missing"))
    }
}
