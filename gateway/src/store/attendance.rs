//! Attendance: who joined which lesson (a series on a date), in which role, from when to when.
//! The evidence behind participation and training-hour reports.
//!
//! Invariants: a record references an existing series (and so keeps that series from being
//! deleted); `participant` is plain text (a user or classroom id), so the record outlives the
//! account. A join is one row; [`Store::record_leave`] sets `left_at` once, and a second leave
//! keeps the first time.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::codec::{self, FromAnyRow, date_text, execute, fetch_all, instant_text, require};
use super::{Store, StoreError};

/// One join of one participant: `attendance`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttendanceRow {
    /// `att_…`.
    pub id: String,
    /// The series.
    pub series_id: String,
    /// The date of the occurrence (school local date).
    pub date: NaiveDate,
    /// Who joined: a user or classroom id.
    pub participant: String,
    /// In what role, as the join token said (e.g. `lead`, `assistant`, `classroom`, `observer`).
    pub role: String,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
    /// When they left; `None` while present (or if the leave was never seen).
    pub left_at: Option<DateTime<Utc>>,
}

impl FromAnyRow for AttendanceRow {
    const WHAT: &'static str = "attendance";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(AttendanceRow {
            id: codec::text(row, "id")?,
            series_id: codec::text(row, "series_id")?,
            date: codec::date(row, "date")?,
            participant: codec::text(row, "participant")?,
            role: codec::text(row, "role")?,
            joined_at: codec::instant(row, "joined_at")?,
            left_at: codec::opt_instant(row, "left_at")?,
        })
    }
}

impl Store {
    /// Records a join.
    pub async fn record_join(&self, record: &AttendanceRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO attendance (id, series_id, date, participant, role, joined_at, left_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&record.id)
        .bind(&record.series_id)
        .bind(date_text(record.date))
        .bind(&record.participant)
        .bind(&record.role)
        .bind(instant_text(record.joined_at))
        .bind(record.left_at.map(instant_text));
        execute(&self.pool, query, "attendance").await.map(drop)
    }

    /// Records the leave of join `id` at `at`. Returns `false` if it had already left (the first
    /// time is kept); [`StoreError::NotFound`] if there is no such join.
    pub async fn record_leave(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let query =
            sqlx::query("UPDATE attendance SET left_at = $2 WHERE id = $1 AND left_at IS NULL")
                .bind(id)
                .bind(instant_text(at));
        if execute(&self.pool, query, "attendance").await? > 0 {
            return Ok(true);
        }
        let exists = sqlx::query("SELECT id FROM attendance WHERE id = $1").bind(id);
        require(&self.pool, exists, "attendance", id).await?;
        Ok(false)
    }

    /// Closes every join still open at `at`: for an SFU that starts (nobody can be in its rooms
    /// yet), so that a process that died without recording the leaves does not leave classes
    /// that look live forever. Returns how many were closed.
    pub async fn close_open_attendance(&self, at: DateTime<Utc>) -> Result<u64, StoreError> {
        let query = sqlx::query("UPDATE attendance SET left_at = $1 WHERE left_at IS NULL")
            .bind(instant_text(at));
        execute(&self.pool, query, "attendance").await
    }

    /// The attendance of a series, on one date or (with `None`) on every date, by join time.
    pub async fn list_attendance(
        &self,
        series_id: &str,
        date: Option<NaiveDate>,
    ) -> Result<Vec<AttendanceRow>, StoreError> {
        let query = sqlx::query(
            "SELECT id, series_id, date, participant, role, joined_at, left_at FROM attendance \
             WHERE series_id = $1 AND ($2 IS NULL OR date = $2) ORDER BY date, joined_at, id",
        )
        .bind(series_id)
        .bind(date.map(date_text));
        fetch_all(&self.pool, query).await
    }
}
