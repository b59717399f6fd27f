//! The store's calls: each claim, completion and release goes through its batcher, so that
//! calls that arrive while the database is busy share one statement.

use std::time::Duration;

use super::error::unanswered;
use super::statements::{ClaimCall, SettleCall};
use super::store::{secs, PostgresStore};
use crate::store::{stored_key, Claim, ClaimToken, IdempotencyStore, StoreError};

impl IdempotencyStore for PostgresStore {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let call = ClaimCall {
            key: stored_key(key).into_owned(),
            token: ClaimToken::random(),
            lease: secs(lease),
        };
        self.batchers()
            .claims
            .call(call)
            .await
            .map_err(unanswered)?
    }

    async fn complete(
        &self,
        key: &str,
        token: &ClaimToken,
        keep_for: Duration,
    ) -> Result<bool, StoreError> {
        let call = SettleCall {
            key: stored_key(key).into_owned(),
            token: token.clone(),
            keep_for: secs(keep_for),
        };
        self.batchers()
            .completions
            .call(call)
            .await
            .map_err(unanswered)?
    }

    async fn release(&self, key: &str, token: &ClaimToken) -> Result<bool, StoreError> {
        let call = SettleCall {
            key: stored_key(key).into_owned(),
            token: token.clone(),
            keep_for: 0.0,
        };
        self.batchers()
            .releases
            .call(call)
            .await
            .map_err(unanswered)?
    }
}
