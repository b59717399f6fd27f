//! The inline side: a store whose database a handler's transaction shares, and the claim's
//! completion written in that transaction.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Database, Pool};

use super::{
    roll_back, roll_back_checked, EndedByHandler, Finish, Offered, Orphan, Slot, Taken,
    Transactions,
};
use crate::store::{BoxFuture, ClaimToken, IdempotencyStore, StoreError, StoreErrorKind};

/// A store on a SQL database: a handler's transaction can be opened on its pool, and the
/// claim completed in it.
pub(crate) trait TxStore: IdempotencyStore + Clone {
    type Db: Database + super::StillOpen;
    /// The statement that begins a handler's transaction, where not the database's default.
    const BEGIN: Option<&'static str>;

    fn tx_pool(&self) -> &Pool<Self::Db>;

    /// The turns of the database's writers (see [`writers`](super::writers)), shared by the
    /// store's clones.
    fn tx_writers(&self) -> &Arc<crate::store::writers::Writers>;

    /// Completes the claim of `key` held by `token` in `conn` (the handler's transaction),
    /// as [`IdempotencyStore::complete`] does: `false` where `token` no longer holds it.
    fn complete_in<'a>(
        &'a self,
        conn: &'a mut <Self::Db as Database>::Connection,
        key: &'a str,
        token: &'a ClaimToken,
        keep_for: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'a;

    /// A store error from sqlx's.
    fn error(err: sqlx::Error) -> StoreError;
}

/// The transactions of the store `S`.
pub(super) struct Of<S>(pub(super) Arc<S>);

impl<S: TxStore> fmt::Debug for Of<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Transactions").field(&S::Db::NAME).finish()
    }
}

impl<S: TxStore> Transactions for Of<S> {
    fn offer(&self, extensions: &mut http::Extensions) -> Arc<dyn Offered> {
        let pool = self.0.tx_pool().clone();
        let slot = Slot::new(pool, S::BEGIN, Arc::clone(self.0.tx_writers()));
        extensions.insert(Arc::clone(&slot));
        Arc::new(Offer {
            slot,
            store: Arc::clone(&self.0),
        })
    }
}

struct Offer<S: TxStore> {
    slot: Arc<Slot<S::Db>>,
    store: Arc<S>,
}

impl<S: TxStore> Offered for Offer<S> {
    fn finish(
        &self,
        complete: bool,
        key: Arc<str>,
        token: ClaimToken,
        keep_for: Duration,
    ) -> Finish {
        let tx = match self.slot.take() {
            Taken::NotBegun => return Finish::NotBegun,
            Taken::StillLent => return Finish::Kept,
            Taken::Open(tx) => tx,
        };
        if !complete {
            return Finish::Open(Box::pin(async move {
                roll_back_checked(tx).await;
                Ok(true)
            }));
        }
        let store = Arc::clone(&self.store);
        Finish::Open(Box::pin(async move {
            let mut tx = tx.or_roll_back().await.map_err(|err| {
                err.map_or_else(
                    || StoreError::new(StoreErrorKind::Backend, EndedByHandler),
                    S::error,
                )
            })?;
            match store.complete_in(&mut tx, &key, &token, keep_for).await {
                Ok(true) => tx.commit().await.map(|()| true).map_err(S::error),
                fenced => {
                    roll_back(tx).await;
                    fenced
                }
            }
        }))
    }

    fn abandon(&self, release: BoxFuture<()>, limit: Duration) -> bool {
        let orphan: Orphan<S::Db> = Box::new(move |tx| {
            let finish = async move {
                if let Some(tx) = tx {
                    roll_back(tx).await;
                }
                release.await;
            };
            if !crate::pipeline::runtime::finish_in_background(finish, limit) {
                tracing::debug!("no Tokio runtime to roll back an abandoned transaction on; it ends with its connection");
            }
        });
        self.slot.orphan(orphan)
    }
}
