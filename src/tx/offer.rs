//! What the layer holds of a store's transactions, whatever the database: written without
//! sqlx, so the layer's code is one with or without the SQL stores.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::store::{BoxFuture, ClaimToken, IdempotencyStore, StoreError};

/// The transactions of a layer's store, as the layer holds them: one slot per claimed
/// delivery, put where the [`Tx`](super::Tx) extractor finds it.
pub(crate) trait Transactions: fmt::Debug + Send + Sync {
    /// A slot for the delivery whose request has `extensions`, put in them.
    fn offer(&self, extensions: &mut http::Extensions) -> Arc<dyn Offered>;
}

/// One delivery's slot, as the layer settles it.
pub(crate) trait Offered: Send + Sync {
    /// Completes the claim in the handler's transaction and commits it, or rolls it back.
    fn finish(
        &self,
        complete: bool,
        key: Arc<str>,
        token: ClaimToken,
        keep_for: Duration,
    ) -> Finish;

    /// Nobody waits for the delivery any more: its transaction is rolled back when the
    /// handler gives it back, then `release` runs, all on the runtime for at most `limit`.
    /// `false` where the handler never took it.
    fn abandon(&self, release: BoxFuture<()>, limit: Duration) -> bool;
}

/// What settling a delivery's slot comes to.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) enum Finish {
    /// The handler never took the transaction: the claim settles through the store.
    NotBegun,
    /// Completing: whether it committed (`false`: the claim was lost, nothing committed).
    /// Rolling back: `true` once it is.
    Open(BoxFuture<Result<bool, StoreError>>),
    /// The handler still held its `Tx` when it answered: it is rolled back when it comes
    /// back, and nothing commits.
    Kept,
}

/// The transactions of `store` if it is a store on a SQL database, `None` otherwise.
pub(crate) fn transactions<S: IdempotencyStore>(store: &S) -> Option<Arc<dyn Transactions>> {
    let any: &dyn Any = store;
    #[cfg(feature = "postgres")]
    if let Some(store) = any.downcast_ref::<crate::store::PostgresStore>() {
        return Some(Arc::new(super::inline::Of(Arc::new(store.clone()))));
    }
    #[cfg(feature = "sqlite")]
    if let Some(store) = any.downcast_ref::<crate::store::SqliteStore>() {
        return Some(Arc::new(super::inline::Of(Arc::new(store.clone()))));
    }
    let _ = any;
    None
}
