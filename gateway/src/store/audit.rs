//! The audit log: an append-only record of who did what to what, from where.
//!
//! Invariants: entries are only appended, never changed; `actor` and `target` are plain text
//! (ids or names), not foreign keys, so an entry outlives the account or object it mentions.
//! Reading is newest first, by [`AuditFilter`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::codec::{self, FromAnyRow, execute, fetch_all, instant_text};
use super::{Store, StoreError};

/// One audit entry: `audit_log`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    /// `aud_…`.
    pub id: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it: a user id, a token id, or `system`.
    pub actor: String,
    /// What was done, a stable token such as `login.failed` or `series.create`.
    pub action: String,
    /// What it was done to (an id), or empty.
    pub target: String,
    /// Free-form detail (often JSON), or empty.
    pub detail: String,
    /// The client's address, or empty.
    pub ip: String,
}

/// Which audit entries to list; `None` fields do not filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only entries at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only entries before this instant.
    pub before: Option<DateTime<Utc>>,
    /// At most this many entries (the newest).
    pub limit: u32,
}

impl Default for AuditFilter {
    fn default() -> Self {
        AuditFilter {
            actor: None,
            action: None,
            target: None,
            since: None,
            before: None,
            limit: 100,
        }
    }
}

impl FromAnyRow for AuditRow {
    const WHAT: &'static str = "audit entry";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(AuditRow {
            id: codec::text(row, "id")?,
            at: codec::instant(row, "at")?,
            actor: codec::text(row, "actor")?,
            action: codec::text(row, "action")?,
            target: codec::text(row, "target")?,
            detail: codec::text(row, "detail")?,
            ip: codec::text(row, "ip")?,
        })
    }
}

impl Store {
    /// Appends an entry.
    pub async fn append_audit(&self, entry: &AuditRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO audit_log (id, at, actor, action, target, detail, ip) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&entry.id)
        .bind(instant_text(entry.at))
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.detail)
        .bind(&entry.ip);
        execute(&self.pool, query, "audit entry").await.map(drop)
    }

    /// The newest entries that match `filter`, newest first.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let query = sqlx::query(
            "SELECT id, at, actor, action, target, detail, ip FROM audit_log \
             WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2) \
             AND ($3 IS NULL OR target = $3) AND ($4 IS NULL OR at >= $4) \
             AND ($5 IS NULL OR at < $5) \
             ORDER BY at DESC, id DESC LIMIT $6",
        )
        .bind(&filter.actor)
        .bind(&filter.action)
        .bind(&filter.target)
        .bind(filter.since.map(instant_text))
        .bind(filter.before.map(instant_text))
        .bind(i64::from(filter.limit));
        fetch_all(&self.pool, query).await
    }
}
