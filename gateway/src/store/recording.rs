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
pub use duet_gateway_proto::LessonKind;

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
    /// A recording classroom's lesson or a recorded live class.
    pub kind: LessonKind,
    /// For a live class: its series' pairing, whose schools may see it.
    pub pairing_id: Option<String>,
    /// Whether people beyond the school's admins and the district see it.
    pub published: bool,
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
    /// Only this teacher's (the name, exactly).
    pub teacher: Option<String>,
    /// Only this subject's (the name, exactly).
    pub subject: Option<String>,
    /// Only lessons of this pairing.
    pub pairing_id: Option<String>,
    /// Only lessons of this kind.
    pub kind: Option<LessonKind>,
    /// Only lessons whose title, teacher or subject contains this text.
    pub text: Option<String>,
    /// Narrows to what a caller may possibly see (the policy decides on each row afterwards).
    pub visible_to: Option<LessonVisibility>,
}

/// A superset of the lessons a caller may see, for the listing's query: the caller's school (its
/// own lessons and live lessons of its pairings, when `school` is set) and the lessons assigned
/// to the account `user`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LessonVisibility {
    /// The caller's school, if school-bound.
    pub school: Option<String>,
    /// The caller's account, for assigned lessons.
    pub user: String,
}

/// A listed lesson with its review summary.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedLesson {
    /// The lesson.
    pub lesson: LessonRow,
    /// How many reviewers scored it.
    pub review_count: i64,
    /// The mean of their totals, if any.
    pub final_score: Option<f64>,
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
            kind: {
                let token = codec::text(row, "kind")?;
                LessonKind::parse(&token).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown lesson kind {token:?}").into())
                })?
            },
            pairing_id: codec::opt_text(row, "pairing_id")?,
            published: codec::flag(row, "published")?,
        })
    }
}

impl FromAnyRow for ListedLesson {
    const WHAT: &'static str = "lesson";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(ListedLesson {
            lesson: LessonRow::from_row(row)?,
            review_count: row.try_get("review_count")?,
            final_score: row.try_get("final_score")?,
        })
    }
}

/// The standard column list of `lessons`.
macro_rules! lesson_columns {
    () => {
        "l.id, l.classroom_id, l.school_id, l.series_id, l.date, l.period, l.title, l.teacher, \
         l.subject, l.started_at, l.ended_at, l.archive_uri, l.metadata, l.registered_at, \
         l.kind, l.pairing_id, l.published"
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
             teacher, subject, started_at, ended_at, archive_uri, metadata, registered_at, kind, \
             pairing_id, published) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
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
        .bind(instant_text(lesson.registered_at))
        .bind(lesson.kind.as_str())
        .bind(&lesson.pairing_id)
        .bind(i64::from(lesson.published));
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

    /// The newest `limit` lessons that match `filter`, newest first (by start), each with its
    /// review count and mean total.
    pub async fn list_lessons(
        &self,
        filter: &LessonFilter,
        limit: u32,
    ) -> Result<Vec<ListedLesson>, StoreError> {
        let (vis_on, vis_school, vis_user) = match &filter.visible_to {
            Some(v) => (Some(1i64), v.school.clone(), Some(v.user.clone())),
            None => (None, None, None),
        };
        let query = sqlx::query(concat!(
            "SELECT ",
            lesson_columns!(),
            ", (SELECT COUNT(*) FROM reviews r WHERE r.lesson_id = l.id) AS review_count, \
             (SELECT AVG(CAST(r.total AS DOUBLE PRECISION)) FROM reviews r \
              WHERE r.lesson_id = l.id) AS final_score \
             FROM lessons l JOIN schools s ON s.id = l.school_id \
             WHERE ($1 IS NULL OR s.district_id = $1) AND ($2 IS NULL OR l.school_id = $2) \
             AND ($3 IS NULL OR l.classroom_id = $3) AND ($4 IS NULL OR l.started_at >= $4) \
             AND ($5 IS NULL OR l.started_at < $5) AND ($7 IS NULL OR l.teacher = $7) \
             AND ($8 IS NULL OR l.subject = $8) AND ($9 IS NULL OR l.pairing_id = $9) \
             AND ($10 IS NULL OR l.kind = $10) \
             AND ($11 IS NULL OR LOWER(l.title) LIKE LOWER($11) ESCAPE '\\' \
                  OR LOWER(l.teacher) LIKE LOWER($11) ESCAPE '\\' \
                  OR LOWER(l.subject) LIKE LOWER($11) ESCAPE '\\') \
             AND ($12 IS NULL \
                  OR ($13 IS NOT NULL AND (l.school_id = $13 OR (l.kind = 'live' AND ( \
                      l.pairing_id IN (SELECT p.id FROM pairings p WHERE p.lead_school_id = $13) \
                      OR l.pairing_id IN (SELECT ps.pairing_id FROM pairing_schools ps \
                                          WHERE ps.school_id = $13))))) \
                  OR l.id IN (SELECT a.lesson_id FROM review_assignments a \
                              WHERE a.reviewer_id = $14)) \
             ORDER BY l.started_at DESC, l.id DESC LIMIT $6"
        ))
        .bind(&filter.district_id)
        .bind(&filter.school_id)
        .bind(&filter.classroom_id)
        .bind(filter.since.map(instant_text))
        .bind(filter.before.map(instant_text))
        .bind(i64::from(limit))
        .bind(&filter.teacher)
        .bind(&filter.subject)
        .bind(&filter.pairing_id)
        .bind(filter.kind.map(LessonKind::as_str))
        .bind(filter.text.as_deref().map(like_pattern))
        .bind(vis_on)
        .bind(vis_school)
        .bind(vis_user);
        fetch_all(&self.pool, query).await
    }

    /// One lesson with its review count and mean total, if registered.
    pub async fn find_listed_lesson(&self, id: &str) -> Result<Option<ListedLesson>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            lesson_columns!(),
            ", (SELECT COUNT(*) FROM reviews r WHERE r.lesson_id = l.id) AS review_count, \
             (SELECT AVG(CAST(r.total AS DOUBLE PRECISION)) FROM reviews r \
              WHERE r.lesson_id = l.id) AS final_score \
             FROM lessons l WHERE l.id = $1"
        ))
        .bind(id);
        fetch_opt(&self.pool, query).await
    }
}

/// `%text%` for `LIKE … ESCAPE '\'`, with `%`, `_` and `\` in `text` taken literally.
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}
