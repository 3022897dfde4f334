//! Idempotency keys: the stored response of a request a client may retry (the `Idempotency-Key`
//! header), so a retried POST returns the first answer instead of acting twice.
//!
//! Invariants: a key is unique per user (primary key `(user_id, key)`), so two users' keys never
//! collide; the first [`Store::put_idempotency`] wins and a second one is
//! [`StoreError::Conflict`] (two racing retries: the loser reads the winner's response). Keys go
//! with their user and are pruned by age with [`Store::delete_idempotency_before`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::codec::{self, FromAnyRow, execute, fetch_opt, instant_text};
use super::{Store, StoreError};

/// A stored response: `idempotency_keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRow {
    /// The client's key.
    pub key: String,
    /// Whose request (keys are scoped per user).
    pub user_id: String,
    /// The response to replay, as the API serialised it (opaque here).
    pub response_json: String,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

impl FromAnyRow for IdempotencyRow {
    const WHAT: &'static str = "idempotency key";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(IdempotencyRow {
            key: codec::text(row, "key")?,
            user_id: codec::text(row, "user_id")?,
            response_json: codec::text(row, "response_json")?,
            created_at: codec::instant(row, "created_at")?,
        })
    }
}

impl Store {
    /// The stored response for `user_id`'s `key`, if any.
    pub async fn find_idempotency(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRow>, StoreError> {
        let query = sqlx::query(
            "SELECT key, user_id, response_json, created_at FROM idempotency_keys \
             WHERE user_id = $1 AND key = $2",
        )
        .bind(user_id)
        .bind(key);
        fetch_opt(&self.pool, query).await
    }

    /// Stores a response. [`StoreError::Conflict`] if this user already stored one for the key.
    pub async fn put_idempotency(&self, row: &IdempotencyRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO idempotency_keys (key, user_id, response_json, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&row.key)
        .bind(&row.user_id)
        .bind(&row.response_json)
        .bind(instant_text(row.created_at));
        execute(&self.pool, query, "idempotency key")
            .await
            .map(drop)
    }

    /// Deletes keys stored before `cutoff`; returns how many.
    pub async fn delete_idempotency_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let query = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(instant_text(cutoff));
        execute(&self.pool, query, "idempotency key").await
    }
}
