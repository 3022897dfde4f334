//! Recording classrooms (录播教室): the last state each recorder reported, and the archive of
//! recorded lessons (课堂实录).
//!
//! Invariants: a classroom has at most one status row, replaced by every report and deleted with
//! the classroom. A lesson references an existing classroom and school (and keeps them from being
//! deleted: recordings are evidence); its id is chosen by the recorder, and a second insert of the
//! same id is [`StoreError::Conflict`] — deciding whether that is a harmless retry is the caller's
//! business. Both JSON columns are kept as text, verbatim.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::codec::{self, FromAnyRow, date_text, execute, fetch_all, fetch_opt, instant_text};
use super::{Store, StoreError};

/// The last report of a classroom's recorder: `recorder_status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecorderStatusRow {
    /// The recording classroom.
    pub classroom_id: String,
    /// The report as the recorder sent it (a JSON object).
    pub body: serde_json::Value,
    /// When the gateway received it.
    pub reported_at: DateTime<Utc>,
}

/// One recorded lesson: `lessons`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LessonRow {
    /// Chosen by the recorder (`les_…`), stable across its retries.
    pub id: String,
    /// The recording classroom.
    pub classroom_id: String,
    /// The classroom's school.
    pub school_id: String,
    /// The timetable series, for a timetabled lesson.
    pub series_id: Option<String>,
    /// The school-local date of a timetabled lesson.
    pub date: Option<NaiveDate>,
    /// Its period (节次).
    pub period: Option<u8>,
    /// Title in the archive.
    pub title: String,
    /// The teacher's name.
    pub teacher: String,
    /// The subject's name.
    pub subject: String,
    /// First frame.
    pub started_at: DateTime<Utc>,
    /// Last frame (after `started_at`).
    pub ended_at: DateTime<Utc>,
    /// Where the files are: `file:///…` or `s3://bucket/key`.
    pub archive_uri: String,
    /// The whole registration as posted (files, gaps, parts, …).
    pub metadata: serde_json::Value,
    /// When the gateway registered it.
    pub registered_at: DateTime<Utc>,
}

/// Which lessons to list; `None` fields do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LessonFilter {
    /// Only lessons of schools of this district.
    pub district_id: Option<String>,
    /// Only this school's.
    pub school_id: Option<String>,
    /// Only this classroom's.
    pub classroom_id: Option<String>,
    /// Only lessons that started at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only lessons that started before this instant.
    pub before: Option<DateTime<Utc>>,
}

impl FromAnyRow for RecorderStatusRow {
    const WHAT: &'static str = "recorder status";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(RecorderStatusRow {
            classroom_id: codec::text(row, "classroom_id")?,
            body: codec::json(row, "body")?,
            reported_at: codec::instant(row, "reported_at")?,
        })
    }
}

impl FromAnyRow for LessonRow {
    const WHAT: &'static str = "lesson";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(LessonRow {
            id: codec::text(row, "id")?,
            classroom_id: codec::text(row, "classroom_id")?,
            school_id: codec::text(row, "school_id")?,
            series_id: codec::opt_text(row, "series_id")?,
            date: codec::opt_date(row, "date")?,
            period: codec::opt_small(row, "period")?,
            title: codec::text(row, "title")?,
            teacher: codec::text(row, "teacher")?,
            subject: codec::text(row, "subject")?,
            started_at: codec::instant(row, "started_at")?,
            ended_at: codec::instant(row, "ended_at")?,
            archive_uri: codec::text(row, "archive_uri")?,
            metadata: codec::json(row, "metadata")?,
            registered_at: codec::instant(row, "registered_at")?,
        })
    }
}

/// The standard column list of `lessons`.
macro_rules! lesson_columns {
    () => {
        "l.id, l.classroom_id, l.school_id, l.series_id, l.date, l.period, l.title, l.teacher, \
         l.subject, l.started_at, l.ended_at, l.archive_uri, l.metadata, l.registered_at"
    };
}

impl Store {
    /// Replaces the recorder status of a classroom.
    pub async fn put_recorder_status(&self, status: &RecorderStatusRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO recorder_status (classroom_id, body, reported_at) VALUES ($1, $2, $3) \
             ON CONFLICT (classroom_id) DO UPDATE SET body = excluded.body, \
             reported_at = excluded.reported_at",
        )
        .bind(&status.classroom_id)
        .bind(status.body.to_string())
        .bind(instant_text(status.reported_at));
        execute(&self.pool, query, "recorder status")
            .await
            .map(drop)
    }

    /// The last recorder status of a classroom, if it ever reported.
    pub async fn find_recorder_status(
        &self,
        classroom_id: &str,
    ) -> Result<Option<RecorderStatusRow>, StoreError> {
        let query = sqlx::query(
            "SELECT classroom_id, body, reported_at FROM recorder_status WHERE classroom_id = $1",
        )
        .bind(classroom_id);
        fetch_opt(&self.pool, query).await
    }

    /// Registers a lesson. [`StoreError::Conflict`] if its id is taken.
    pub async fn insert_lesson(&self, lesson: &LessonRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO lessons (id, classroom_id, school_id, series_id, date, period, title, \
             teacher, subject, started_at, ended_at, archive_uri, metadata, registered_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&lesson.id)
        .bind(&lesson.classroom_id)
        .bind(&lesson.school_id)
        .bind(&lesson.series_id)
        .bind(lesson.date.map(date_text))
        .bind(lesson.period.map(i64::from))
        .bind(&lesson.title)
        .bind(&lesson.teacher)
        .bind(&lesson.subject)
        .bind(instant_text(lesson.started_at))
        .bind(instant_text(lesson.ended_at))
        .bind(&lesson.archive_uri)
        .bind(lesson.metadata.to_string())
        .bind(instant_text(lesson.registered_at));
        execute(&self.pool, query, "lesson").await.map(drop)
    }

    /// The lesson `id`, if registered.
    pub async fn find_lesson(&self, id: &str) -> Result<Option<LessonRow>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            lesson_columns!(),
            " FROM lessons l WHERE l.id = $1"
        ))
        .bind(id);
        fetch_opt(&self.pool, query).await
    }

    /// The newest `limit` lessons that match `filter`, newest first (by start).
    pub async fn list_lessons(
        &self,
        filter: &LessonFilter,
        limit: u32,
    ) -> Result<Vec<LessonRow>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            lesson_columns!(),
            " FROM lessons l JOIN schools s ON s.id = l.school_id \
             WHERE ($1 IS NULL OR s.district_id = $1) AND ($2 IS NULL OR l.school_id = $2) \
             AND ($3 IS NULL OR l.classroom_id = $3) AND ($4 IS NULL OR l.started_at >= $4) \
             AND ($5 IS NULL OR l.started_at < $5) \
             ORDER BY l.started_at DESC, l.id DESC LIMIT $6"
        ))
        .bind(&filter.district_id)
        .bind(&filter.school_id)
        .bind(&filter.classroom_id)
        .bind(filter.since.map(instant_text))
        .bind(filter.before.map(instant_text))
        .bind(i64::from(limit));
        fetch_all(&self.pool, query).await
    }
}
