//! The archive's work around a recorded lesson: who is assigned to review it
//! (`review_assignments`), publishing and deleting it, its clip exports (`clips`, 晒课), and the
//! live rooms open now (from `attendance`), which the recorder follows.
//!
//! Invariants: a lesson's assignments are replaced as a whole, in one transaction; deleting a
//! lesson deletes its assignments, comments, reviews, S-T results and clips with it (the
//! migration's cascades). A clip moves `queued → rendering → done | failed` and only the
//! rendering job writes it after it is created.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::codec::{
    self, FromAnyRow, date_text, execute, execute_one, fetch_all, fetch_opt, instant_text,
};
use super::{Store, StoreError};

/// One reviewer assigned to one lesson: `review_assignments`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRow {
    /// The lesson.
    pub lesson_id: String,
    /// The assigned account.
    pub reviewer_id: String,
    /// Who assigned it.
    pub assigned_by: String,
    /// When.
    pub assigned_at: DateTime<Utc>,
}

impl FromAnyRow for AssignmentRow {
    const WHAT: &'static str = "review assignment";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(AssignmentRow {
            lesson_id: codec::text(row, "lesson_id")?,
            reviewer_id: codec::text(row, "reviewer_id")?,
            assigned_by: codec::text(row, "assigned_by")?,
            assigned_at: codec::instant(row, "assigned_at")?,
        })
    }
}

/// Where a clip export is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipState {
    /// Accepted, not started.
    Queued,
    /// The renderer is working on it.
    Rendering,
    /// The file is ready.
    Done,
    /// The renderer failed (`error` says why).
    Failed,
}

impl ClipState {
    /// The stored token.
    pub fn as_str(self) -> &'static str {
        match self {
            ClipState::Queued => "queued",
            ClipState::Rendering => "rendering",
            ClipState::Done => "done",
            ClipState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => ClipState::Queued,
            "rendering" => ClipState::Rendering,
            "done" => ClipState::Done,
            "failed" => ClipState::Failed,
            _ => return None,
        })
    }
}

/// A clip export of a lesson: `clips`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipRow {
    /// `clp_…`.
    pub id: String,
    /// The lesson it cuts.
    pub lesson_id: String,
    /// Who asked for it.
    pub requested_by: String,
    /// Start on the lesson's timeline.
    pub start_ms: i64,
    /// End (exclusive).
    pub end_ms: i64,
    /// The title card (course, grade, edition, teacher, school), JSON.
    pub title_card: serde_json::Value,
    /// Where it is.
    pub state: ClipState,
    /// 0..=1.
    pub progress: f64,
    /// Why it failed.
    pub error: Option<String>,
    /// The rendered file, when done.
    pub file: Option<String>,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl FromAnyRow for ClipRow {
    const WHAT: &'static str = "clip";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let state = codec::text(row, "state")?;
        Ok(ClipRow {
            id: codec::text(row, "id")?,
            lesson_id: codec::text(row, "lesson_id")?,
            requested_by: codec::text(row, "requested_by")?,
            start_ms: row.try_get("start_ms")?,
            end_ms: row.try_get("end_ms")?,
            title_card: codec::json(row, "title_card")?,
            state: ClipState::parse(&state).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown clip state {state:?}").into())
            })?,
            progress: row.try_get("progress")?,
            error: codec::opt_text(row, "error")?,
            file: codec::opt_text(row, "file")?,
            created_at: codec::instant(row, "created_at")?,
            updated_at: codec::instant(row, "updated_at")?,
        })
    }
}

/// The standard column list of `clips` (progress read as double on both databases).
macro_rules! clip_columns {
    () => {
        "id, lesson_id, requested_by, start_ms, end_ms, title_card, state, \
         CAST(progress AS DOUBLE PRECISION) AS progress, error, file, created_at, updated_at"
    };
}

/// A live room with someone (not the recorder) in it: a series on a date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRoomRow {
    /// The series.
    pub series_id: String,
    /// The school-local date.
    pub date: NaiveDate,
    /// The earliest join of those still present.
    pub opened_at: DateTime<Utc>,
}

impl FromAnyRow for OpenRoomRow {
    const WHAT: &'static str = "attendance";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(OpenRoomRow {
            series_id: codec::text(row, "series_id")?,
            date: codec::date(row, "date")?,
            opened_at: codec::instant(row, "opened_at")?,
        })
    }
}

impl Store {
    /// Replaces the reviewers assigned to a lesson, in one transaction.
    pub async fn set_review_assignments(
        &self,
        lesson_id: &str,
        reviewer_ids: &[String],
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let clear =
            sqlx::query("DELETE FROM review_assignments WHERE lesson_id = $1").bind(lesson_id);
        execute(&mut *tx, clear, "review assignment").await?;
        for reviewer in reviewer_ids {
            let add = sqlx::query(
                "INSERT INTO review_assignments (lesson_id, reviewer_id, assigned_by, assigned_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(lesson_id)
            .bind(reviewer)
            .bind(by)
            .bind(instant_text(at));
            execute(&mut *tx, add, "review assignment").await?;
        }
        tx.commit()
            .await
            .map_err(StoreError::db("review assignment"))
    }

    /// The reviewers assigned to a lesson, by account id.
    pub async fn list_review_assignments(
        &self,
        lesson_id: &str,
    ) -> Result<Vec<AssignmentRow>, StoreError> {
        let query = sqlx::query(
            "SELECT lesson_id, reviewer_id, assigned_by, assigned_at FROM review_assignments \
             WHERE lesson_id = $1 ORDER BY reviewer_id",
        )
        .bind(lesson_id);
        fetch_all(&self.pool, query).await
    }

    /// The lessons assigned to an account, by id.
    pub async fn list_assigned_lessons(
        &self,
        reviewer_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT lesson_id FROM review_assignments WHERE reviewer_id = $1")
            .bind(reviewer_id)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::db("review assignment"))?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("lesson_id"))
            .collect::<Result<_, _>>()
            .map_err(StoreError::db("review assignment"))
    }

    /// Publishes or hides a lesson. [`StoreError::NotFound`] if there is none.
    pub async fn set_lesson_published(&self, id: &str, published: bool) -> Result<(), StoreError> {
        let query = sqlx::query("UPDATE lessons SET published = $2 WHERE id = $1")
            .bind(id)
            .bind(i64::from(published));
        execute_one(&self.pool, query, "lesson", id).await
    }

    /// Deletes a lesson and (by cascade) everything hanging off it.
    pub async fn delete_lesson(&self, id: &str) -> Result<(), StoreError> {
        let query = sqlx::query("DELETE FROM lessons WHERE id = $1").bind(id);
        execute_one(&self.pool, query, "lesson", id).await
    }

    /// Records a new clip export.
    pub async fn insert_clip(&self, clip: &ClipRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO clips (id, lesson_id, requested_by, start_ms, end_ms, title_card, state, \
             progress, error, file, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&clip.id)
        .bind(&clip.lesson_id)
        .bind(&clip.requested_by)
        .bind(clip.start_ms)
        .bind(clip.end_ms)
        .bind(clip.title_card.to_string())
        .bind(clip.state.as_str())
        .bind(clip.progress)
        .bind(&clip.error)
        .bind(&clip.file)
        .bind(instant_text(clip.created_at))
        .bind(instant_text(clip.updated_at));
        execute(&self.pool, query, "clip").await.map(drop)
    }

    /// The clip `id`, if any.
    pub async fn find_clip(&self, id: &str) -> Result<Option<ClipRow>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            clip_columns!(),
            " FROM clips WHERE id = $1"
        ))
        .bind(id);
        fetch_opt(&self.pool, query).await
    }

    /// The clips of a lesson, newest first.
    pub async fn list_clips(&self, lesson_id: &str) -> Result<Vec<ClipRow>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            clip_columns!(),
            " FROM clips WHERE lesson_id = $1 ORDER BY created_at DESC, id DESC"
        ))
        .bind(lesson_id);
        fetch_all(&self.pool, query).await
    }

    /// Moves a clip on: its state, progress, error and file. A clip deleted meanwhile (with its
    /// lesson) is not an error: there is nothing left to update.
    pub async fn update_clip(
        &self,
        id: &str,
        state: ClipState,
        progress: f64,
        error: Option<&str>,
        file: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let query = sqlx::query(
            "UPDATE clips SET state = $2, progress = $3, error = $4, file = $5, updated_at = $6 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(progress)
        .bind(error)
        .bind(file)
        .bind(instant_text(at));
        execute(&self.pool, query, "clip").await
    }

    /// Fails the clips a previous run left queued or rendering (their render died with it).
    /// Returns how many.
    pub async fn fail_unfinished_clips(&self, at: DateTime<Utc>) -> Result<u64, StoreError> {
        let query = sqlx::query(
            "UPDATE clips SET state = 'failed', \
             error = '渲染被服务重启打断，请重新导出 / interrupted by a restart: export again', \
             updated_at = $1 WHERE state IN ('queued', 'rendering')",
        )
        .bind(instant_text(at));
        execute(&self.pool, query, "clip").await
    }

    /// Live rooms with a participant other than a recorder present (joined, no leave seen), on
    /// `since` or later, by series and date.
    pub async fn list_open_rooms(&self, since: NaiveDate) -> Result<Vec<OpenRoomRow>, StoreError> {
        let query = sqlx::query(
            "SELECT series_id, date, MIN(joined_at) AS opened_at FROM attendance \
             WHERE left_at IS NULL AND role <> 'recorder' AND date >= $1 \
             GROUP BY series_id, date ORDER BY series_id, date",
        )
        .bind(date_text(since));
        fetch_all(&self.pool, query).await
    }
}
