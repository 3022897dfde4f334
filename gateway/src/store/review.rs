//! Lesson observation (听评课): rubrics of a district, time-stamped comments (旁评), one score
//! sheet with an overall evaluation (总评) per reviewer and lesson, and S-T analysis results.
//!
//! Invariants: a rubric belongs to one district; its `items` and `bands` are JSON text whose
//! validity (weights summing to 100, bands descending) the API checks before storing. Every
//! district has at most one default rubric, with the fixed id [`default_rubric_id`], created by
//! [`Store::ensure_default_rubric`] (idempotent, safe under concurrency). A reviewer has at most
//! one review of a lesson (`put_review` replaces it); a lesson has at most one automatic and one
//! corrected S-T result (`put_st_result` replaces by kind). Comments, reviews and S-T results go
//! with their lesson.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::codec::{self, FromAnyRow, execute, execute_one, fetch_all, fetch_opt, instant_text};
use super::{Store, StoreError};

/// Id prefix of rubrics (`rub_…`).
pub const RUBRIC_PREFIX: &str = "rub";
/// Id prefix of comments (`cmt_…`).
pub const COMMENT_PREFIX: &str = "cmt";

/// One scored item of a rubric.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RubricItem {
    /// Stable key the score sheets use, e.g. `goals`.
    pub key: String,
    /// Display name, e.g. `教学目标`.
    pub name: String,
    /// Points of the item (all weights of a rubric sum to 100).
    pub weight: u32,
}

/// A grade band: totals at or above `min` (and below the next band up) get `label`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RubricBand {
    /// Lowest total of the band.
    pub min: u32,
    /// E.g. `优秀`.
    pub label: String,
}

/// A rubric template: `rubrics`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RubricRow {
    /// `rub_…`.
    pub id: String,
    /// Its district.
    pub district_id: String,
    /// Display name.
    pub name: String,
    /// The scored items.
    pub items: Vec<RubricItem>,
    /// Grade bands, highest first.
    pub bands: Vec<RubricBand>,
    /// Whether it is the district's default.
    pub is_default: bool,
    /// Who made it (`system` for the default).
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl RubricRow {
    /// The band of `total` (the first band, highest first, whose `min` it reaches).
    pub fn band_of(&self, total: u32) -> Option<&str> {
        self.bands
            .iter()
            .find(|b| total >= b.min)
            .map(|b| b.label.as_str())
    }
}

/// The id of a district's default rubric.
pub fn default_rubric_id(district_id: &str) -> String {
    format!("{RUBRIC_PREFIX}_default_{district_id}")
}

/// The default rubric (DOMAIN.md: a city's 优课 rubric) for `district_id`.
pub fn default_rubric(district_id: &str, now: DateTime<Utc>) -> RubricRow {
    let item = |key: &str, name: &str, weight: u32| RubricItem {
        key: key.into(),
        name: name.into(),
        weight,
    };
    let band = |min: u32, label: &str| RubricBand {
        min,
        label: label.into(),
    };
    RubricRow {
        id: default_rubric_id(district_id),
        district_id: district_id.into(),
        name: "优课评价量表 / standard lesson rubric".into(),
        items: vec![
            item("goals", "教学目标", 10),
            item("strategy", "教学策略", 15),
            item("content", "教学内容", 20),
            item("method", "教学方法", 20),
            item("effect", "教学效果", 20),
            item("assessment", "学习评价", 10),
            item("literacy", "基本素养", 5),
        ],
        bands: vec![
            band(90, "优秀"),
            band(80, "良好"),
            band(70, "中等"),
            band(60, "合格"),
            band(0, "不合格"),
        ],
        is_default: true,
        created_by: "system".into(),
        created_at: now,
    }
}

/// A margin comment (旁评): `review_comments`, with its author's display name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentRow {
    /// `cmt_…`.
    pub id: String,
    /// The lesson.
    pub lesson_id: String,
    /// The author.
    pub author_id: String,
    /// The author's display name (read from `users`; ignored on insert).
    pub author_name: String,
    /// Where on the lesson timeline, ms from its start.
    pub at_ms: u64,
    /// The source watched, e.g. `room-a/camera`.
    pub source_id: Option<String>,
    /// `highlight`, `issue`, `suggestion`, `question` or `other`.
    pub category: String,
    /// The text.
    pub body: String,
    /// When written.
    pub created_at: DateTime<Utc>,
}

/// A reviewer's score sheet and overall evaluation (总评): `reviews`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReviewRow {
    /// The lesson.
    pub lesson_id: String,
    /// The reviewer.
    pub reviewer_id: String,
    /// The reviewer's display name (read from `users`; ignored on write).
    pub reviewer_name: String,
    /// The rubric scored against.
    pub rubric_id: String,
    /// Item key → points (JSON object).
    pub scores: serde_json::Value,
    /// Sum of the points.
    pub total: u32,
    /// `{strengths, weaknesses, suggestions, summary}`.
    pub evaluation: serde_json::Value,
    /// Last saved.
    pub updated_at: DateTime<Utc>,
}

/// Which S-T result of a lesson.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StKind {
    /// Computed from the speech activity.
    Automatic,
    /// A reviewer's correction.
    Corrected,
}

impl StKind {
    /// Stable token.
    pub fn as_str(self) -> &'static str {
        match self {
            StKind::Automatic => "automatic",
            StKind::Corrected => "corrected",
        }
    }
}

/// An S-T analysis result: `st_results`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StResultRow {
    /// The lesson.
    pub lesson_id: String,
    /// Automatic or corrected.
    pub kind: StKind,
    /// `st` or `std`.
    pub variant: String,
    /// Sampling interval, ms.
    pub interval_ms: u64,
    /// The code string, e.g. `TTSST`.
    pub samples: String,
    /// The computed summary (JSON object).
    pub result: serde_json::Value,
    /// Who corrected it (`None` for automatic).
    pub author_id: Option<String>,
    /// The author's display name, if any (read from `users`; ignored on write).
    pub author_name: Option<String>,
    /// When computed or corrected.
    pub computed_at: DateTime<Utc>,
}

fn json_text<T: for<'de> Deserialize<'de>>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error> {
    let value = codec::json(row, column)?;
    serde_json::from_value(value).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: e.into(),
    })
}

fn count(row: &AnyRow, column: &str) -> Result<u64, sqlx::Error> {
    use sqlx::Row;
    let v: i64 = row.try_get(column)?;
    u64::try_from(v).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: e.into(),
    })
}

impl FromAnyRow for RubricRow {
    const WHAT: &'static str = "rubric";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(RubricRow {
            id: codec::text(row, "id")?,
            district_id: codec::text(row, "district_id")?,
            name: codec::text(row, "name")?,
            items: json_text(row, "items")?,
            bands: json_text(row, "bands")?,
            is_default: codec::flag(row, "is_default")?,
            created_by: codec::text(row, "created_by")?,
            created_at: codec::instant(row, "created_at")?,
        })
    }
}

impl FromAnyRow for CommentRow {
    const WHAT: &'static str = "comment";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(CommentRow {
            id: codec::text(row, "id")?,
            lesson_id: codec::text(row, "lesson_id")?,
            author_id: codec::text(row, "author_id")?,
            author_name: codec::opt_text(row, "author_name")?.unwrap_or_default(),
            at_ms: count(row, "at_ms")?,
            source_id: codec::opt_text(row, "source_id")?,
            category: codec::text(row, "category")?,
            body: codec::text(row, "body")?,
            created_at: codec::instant(row, "created_at")?,
        })
    }
}

impl FromAnyRow for ReviewRow {
    const WHAT: &'static str = "review";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(ReviewRow {
            lesson_id: codec::text(row, "lesson_id")?,
            reviewer_id: codec::text(row, "reviewer_id")?,
            reviewer_name: codec::opt_text(row, "reviewer_name")?.unwrap_or_default(),
            rubric_id: codec::text(row, "rubric_id")?,
            scores: codec::json(row, "scores")?,
            total: u32::try_from(count(row, "total")?).map_err(|e| sqlx::Error::ColumnDecode {
                index: "total".into(),
                source: e.into(),
            })?,
            evaluation: codec::json(row, "evaluation")?,
            updated_at: codec::instant(row, "updated_at")?,
        })
    }
}

impl FromAnyRow for StResultRow {
    const WHAT: &'static str = "S-T result";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let kind = match codec::text(row, "kind")?.as_str() {
            "automatic" => StKind::Automatic,
            "corrected" => StKind::Corrected,
            other => {
                return Err(sqlx::Error::ColumnDecode {
                    index: "kind".into(),
                    source: format!("unknown S-T result kind {other:?}").into(),
                });
            }
        };
        Ok(StResultRow {
            lesson_id: codec::text(row, "lesson_id")?,
            kind,
            variant: codec::text(row, "variant")?,
            interval_ms: count(row, "interval_ms")?,
            samples: codec::text(row, "samples")?,
            result: codec::json(row, "result")?,
            author_id: codec::opt_text(row, "author_id")?,
            author_name: codec::opt_text(row, "author_name")?,
            computed_at: codec::instant(row, "computed_at")?,
        })
    }
}

/// A millisecond count as the database's integer.
fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

impl Store {
    /// Adds a rubric. [`StoreError::Conflict`] if its id is taken.
    pub async fn insert_rubric(&self, r: &RubricRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO rubrics (id, district_id, name, items, bands, is_default, created_by, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&r.id)
        .bind(&r.district_id)
        .bind(&r.name)
        .bind(to_json(&r.items))
        .bind(to_json(&r.bands))
        .bind(i64::from(r.is_default))
        .bind(&r.created_by)
        .bind(instant_text(r.created_at));
        execute(&self.pool, query, "rubric").await.map(drop)
    }

    /// Creates the district's default rubric ([`default_rubric`]) unless it exists. Safe to call
    /// concurrently: the fixed id makes a second insert a no-op.
    pub async fn ensure_default_rubric(
        &self,
        district_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let r = default_rubric(district_id, now);
        let query = sqlx::query(
            "INSERT INTO rubrics (id, district_id, name, items, bands, is_default, created_by, \
             created_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&r.id)
        .bind(&r.district_id)
        .bind(&r.name)
        .bind(to_json(&r.items))
        .bind(to_json(&r.bands))
        .bind(&r.created_by)
        .bind(instant_text(r.created_at));
        execute(&self.pool, query, "rubric").await.map(drop)
    }

    /// The district's rubrics: the default first, then by creation.
    pub async fn list_rubrics(&self, district_id: &str) -> Result<Vec<RubricRow>, StoreError> {
        let query = sqlx::query(
            "SELECT id, district_id, name, items, bands, is_default, created_by, created_at \
             FROM rubrics WHERE district_id = $1 ORDER BY is_default DESC, created_at, id",
        )
        .bind(district_id);
        fetch_all(&self.pool, query).await
    }

    /// The rubric `id`, if it exists.
    pub async fn find_rubric(&self, id: &str) -> Result<Option<RubricRow>, StoreError> {
        let query = sqlx::query(
            "SELECT id, district_id, name, items, bands, is_default, created_by, created_at \
             FROM rubrics WHERE id = $1",
        )
        .bind(id);
        fetch_opt(&self.pool, query).await
    }

    /// Whether `user_id` is assigned to review `lesson_id` (`review_assignments`).
    pub async fn is_review_assigned(
        &self,
        lesson_id: &str,
        user_id: &str,
    ) -> Result<bool, StoreError> {
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM review_assignments WHERE lesson_id = $1 AND reviewer_id = $2",
        )
        .bind(lesson_id)
        .bind(user_id)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::db("review assignment"))?;
        let n: i64 = row
            .try_get("n")
            .map_err(StoreError::db("review assignment"))?;
        Ok(n > 0)
    }

    /// Adds a comment. [`StoreError::ForeignKey`] if the lesson or author is missing.
    pub async fn insert_comment(&self, c: &CommentRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO review_comments (id, lesson_id, author_id, at_ms, source_id, category, \
             body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&c.id)
        .bind(&c.lesson_id)
        .bind(&c.author_id)
        .bind(ms(c.at_ms))
        .bind(&c.source_id)
        .bind(&c.category)
        .bind(&c.body)
        .bind(instant_text(c.created_at));
        execute(&self.pool, query, "comment").await.map(drop)
    }

    /// The comments of a lesson, by time on the lesson timeline (then by writing time).
    pub async fn list_comments(&self, lesson_id: &str) -> Result<Vec<CommentRow>, StoreError> {
        let query = sqlx::query(
            "SELECT c.id, c.lesson_id, c.author_id, u.display_name AS author_name, c.at_ms, \
             c.source_id, c.category, c.body, c.created_at FROM review_comments c \
             LEFT JOIN users u ON u.id = c.author_id WHERE c.lesson_id = $1 \
             ORDER BY c.at_ms, c.created_at, c.id",
        )
        .bind(lesson_id);
        fetch_all(&self.pool, query).await
    }

    /// Removes comment `id` of `lesson_id`; `NotFound` if there is none.
    pub async fn delete_comment(&self, lesson_id: &str, id: &str) -> Result<(), StoreError> {
        let query = sqlx::query("DELETE FROM review_comments WHERE id = $1 AND lesson_id = $2")
            .bind(id)
            .bind(lesson_id);
        execute_one(&self.pool, query, "comment", id).await
    }

    /// Stores a reviewer's review of a lesson, replacing the previous one.
    pub async fn put_review(&self, r: &ReviewRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO reviews (lesson_id, reviewer_id, rubric_id, scores, total, evaluation, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (lesson_id, reviewer_id) DO UPDATE SET rubric_id = excluded.rubric_id, \
             scores = excluded.scores, total = excluded.total, evaluation = excluded.evaluation, \
             updated_at = excluded.updated_at",
        )
        .bind(&r.lesson_id)
        .bind(&r.reviewer_id)
        .bind(&r.rubric_id)
        .bind(r.scores.to_string())
        .bind(i64::from(r.total))
        .bind(r.evaluation.to_string())
        .bind(instant_text(r.updated_at));
        execute(&self.pool, query, "review").await.map(drop)
    }

    /// The reviews of a lesson, oldest change first.
    pub async fn list_reviews(&self, lesson_id: &str) -> Result<Vec<ReviewRow>, StoreError> {
        let query = sqlx::query(
            "SELECT r.lesson_id, r.reviewer_id, u.display_name AS reviewer_name, r.rubric_id, \
             r.scores, r.total, r.evaluation, r.updated_at FROM reviews r \
             LEFT JOIN users u ON u.id = r.reviewer_id WHERE r.lesson_id = $1 \
             ORDER BY r.updated_at, r.reviewer_id",
        )
        .bind(lesson_id);
        fetch_all(&self.pool, query).await
    }

    /// Stores an S-T result, replacing the lesson's previous one of the same kind.
    pub async fn put_st_result(&self, r: &StResultRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO st_results (lesson_id, kind, variant, interval_ms, samples, result, \
             author_id, computed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (lesson_id, kind) DO UPDATE SET variant = excluded.variant, \
             interval_ms = excluded.interval_ms, samples = excluded.samples, \
             result = excluded.result, author_id = excluded.author_id, \
             computed_at = excluded.computed_at",
        )
        .bind(&r.lesson_id)
        .bind(r.kind.as_str())
        .bind(&r.variant)
        .bind(ms(r.interval_ms))
        .bind(&r.samples)
        .bind(r.result.to_string())
        .bind(&r.author_id)
        .bind(instant_text(r.computed_at));
        execute(&self.pool, query, "S-T result").await.map(drop)
    }

    /// The S-T results of a lesson (at most one of each kind).
    pub async fn list_st_results(&self, lesson_id: &str) -> Result<Vec<StResultRow>, StoreError> {
        let query = sqlx::query(
            "SELECT s.lesson_id, s.kind, s.variant, s.interval_ms, s.samples, s.result, \
             s.author_id, u.display_name AS author_name, s.computed_at FROM st_results s \
             LEFT JOIN users u ON u.id = s.author_id WHERE s.lesson_id = $1 ORDER BY s.kind",
        )
        .bind(lesson_id);
        fetch_all(&self.pool, query).await
    }
}
