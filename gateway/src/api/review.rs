//! Lesson observation (听评课) of archived lessons: rubrics, time-stamped comments (旁评), score
//! sheets with an overall evaluation (总评), and S-T analysis.
//!
//! - Rubrics (`/api/rubrics`) belong to a district; every district has a default rubric
//!   ([`crate::store::review::default_rubric`]), created when the demo district is seeded and
//!   otherwise lazily, the first time a rubric of the district is needed.
//! - Comments, reviews and S-T results hang off a lesson (`/api/lessons/{id}/…`). Who may do
//!   what is decided in one place, [`lesson_access`]: everyone who may read the lesson reads;
//!   reviewers assigned to it, its school's admin and the district admin write (comment, score,
//!   correct S-T). Outside that, the lesson is 404; readers who may not write get 403.
//! - S-T: the pure analysis is [`duet_gateway_proto::st`]; the automatic result is computed
//!   when a lesson with a `speech` field is registered ([`automatic_st_at_registration`]) at the
//!   configured interval (`[gateway] st_interval_ms`), and again on request with another interval
//!   or variant; a reviewer's corrected code string is kept beside it.
//!
//! Every refused request changes nothing; every write is audited (`rubric_created`,
//! `review_comment_added`, `review_comment_deleted`, `review_saved`, `st_recomputed`,
//! `st_corrected`).

use super::auth::Authed;
use super::{Json, audit, check_name};
use crate::app::AppState;
use crate::error::ApiError;
use crate::policy::{AccountRole, Action, Principal};
use crate::store::review::{COMMENT_PREFIX, RUBRIC_PREFIX, default_rubric_id};
use crate::store::{
    CommentRow, LessonRow, ReviewRow, RubricBand, RubricItem, RubricRow, StKind, StResultRow,
    new_id,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SubsecRound, Utc};
use duet_gateway_proto::st::{self, Shares, SpeechActivity, StSummary, Variant};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Shortest S-T sampling interval, ms.
pub const MIN_ST_INTERVAL_MS: u64 = 1_000;
/// Longest S-T sampling interval, ms.
pub const MAX_ST_INTERVAL_MS: u64 = 300_000;
/// Longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 2_000;
/// Longest part of an evaluation (strengths, …), in characters.
pub const MAX_EVALUATION_CHARS: usize = 4_000;
/// Most items of a rubric.
pub const MAX_RUBRIC_ITEMS: usize = 30;
/// Most grade bands of a rubric.
pub const MAX_RUBRIC_BANDS: usize = 10;
/// Most microphone tracks in a lesson's speech activity.
pub const MAX_SPEECH_TRACKS: usize = 64;
/// Most speech segments of one track.
pub const MAX_SPEECH_SEGMENTS: usize = 100_000;
/// Comment categories: stable token and Chinese name.
pub const COMMENT_CATEGORIES: [(&str, &str); 5] = [
    ("highlight", "亮点"),
    ("issue", "问题"),
    ("suggestion", "建议"),
    ("question", "提问"),
    ("other", "其他"),
];

// ---------------------------------------------------------------------------------------------
// Who may do what

/// A lesson as the caller may use it.
pub struct LessonAccess {
    /// The lesson.
    pub lesson: LessonRow,
    /// Its district.
    pub district: String,
    /// Whether the caller may comment, score and correct S-T.
    pub may_write: bool,
}

impl LessonAccess {
    /// `Forbidden` unless the caller may write.
    fn require_write(&self) -> Result<(), ApiError> {
        if self.may_write {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// Length of the lesson, ms.
    fn duration_ms(&self) -> u64 {
        let d = self.lesson.ended_at - self.lesson.started_at;
        u64::try_from(d.num_milliseconds()).unwrap_or(0)
    }
}

/// The lesson `lesson_id` if `p` may read it (else `NotFound`, as for an absent lesson), and
/// whether `p` may write reviews of it.
///
/// Read: the lesson scope of [`crate::policy`] (`Resource::Lesson`). Write: reviewers assigned
/// to it, its school's admin, the district admin. The one place review access is decided.
pub async fn lesson_access(
    s: &AppState,
    p: &Principal,
    lesson_id: &str,
) -> Result<LessonAccess, ApiError> {
    let super::archive::LessonCtx {
        lesson,
        school,
        reviewers,
    } = super::archive::lesson_in_scope(s, p, lesson_id, Action::Read).await?;
    let assigned = p.role != AccountRole::Machine && reviewers.contains(&p.id);
    let is = |x: &Option<String>, v: &str| x.as_deref() == Some(v);
    let may_write = assigned
        || p.role == AccountRole::DistrictAdmin && is(&p.district, &school.district_id)
        || p.role == AccountRole::SchoolAdmin && is(&p.school, &school.id);
    Ok(LessonAccess {
        lesson,
        district: school.district_id,
        may_write,
    })
}

/// A person named in an answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Person {
    /// Account id.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// Free text: at most `max` characters; no control characters but line breaks and tabs.
fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("最多 {max} 个字符 / at most {max} characters"),
        ));
    }
    if s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ApiError::invalid(
            field,
            "含有控制字符 / contains control characters",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// R1 Rubrics

/// The caller's district, for district-wide things.
fn district_of(a: &Authed) -> Result<String, ApiError> {
    a.principal.district.clone().ok_or(ApiError::Forbidden)
}

/// `GET /api/rubrics`: the caller's district's rubrics, the default first.
pub async fn list_rubrics(
    State(s): State<Arc<AppState>>,
    a: Authed,
) -> Result<Json<Vec<RubricRow>>, ApiError> {
    let district = district_of(&a)?;
    let rubrics = s.store.list_rubrics(&district).await?;
    if rubrics.iter().any(|r| r.is_default) {
        return Ok(Json(rubrics));
    }
    s.store.ensure_default_rubric(&district, Utc::now()).await?;
    Ok(Json(s.store.list_rubrics(&district).await?))
}

/// One item of `POST /api/rubrics`; the weight is checked after parsing (422, not 400).
#[derive(Deserialize)]
pub struct NewRubricItem {
    /// Stable key: 1..=40 ASCII letters, digits, `_`, `-`.
    pub key: String,
    /// Display name.
    pub name: String,
    /// A positive integer.
    pub weight: Value,
}

/// One band of `POST /api/rubrics`.
#[derive(Deserialize)]
pub struct NewRubricBand {
    /// An integer in 0..=100.
    pub min: Value,
    /// E.g. `优秀`.
    pub label: String,
}

/// `POST /api/rubrics` body.
#[derive(Deserialize)]
pub struct NewRubric {
    /// Display name.
    pub name: String,
    /// Items, weights summing to 100.
    pub items: Vec<NewRubricItem>,
    /// Bands, `min` strictly descending.
    pub bands: Vec<NewRubricBand>,
}

fn is_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Checks a rubric's items: keys unique, weights positive integers summing to 100.
fn check_items(items: &[NewRubricItem]) -> Result<Vec<RubricItem>, ApiError> {
    let bad = |why: String| ApiError::invalid("items", why);
    if items.is_empty() || items.len() > MAX_RUBRIC_ITEMS {
        return Err(bad(format!(
            "需要 1 到 {MAX_RUBRIC_ITEMS} 项 / 1 to {MAX_RUBRIC_ITEMS} items"
        )));
    }
    let mut keys = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        if !is_key(&it.key) {
            return Err(bad(format!(
                "项目键 {:?} 无效 / bad key: 1 to 40 letters, digits, '_', '-'",
                it.key
            )));
        }
        if !keys.insert(it.key.as_str()) {
            return Err(bad(format!("项目键 {:?} 重复 / duplicate key", it.key)));
        }
        let name = check_name("items", &it.name)?;
        let weight = it
            .weight
            .as_u64()
            .filter(|w| (1..=100).contains(w))
            .ok_or_else(|| {
                bad(format!(
                    "{}: 分值必须是正整数 / the weight must be a positive integer",
                    it.key
                ))
            })?;
        out.push(RubricItem {
            key: it.key.clone(),
            name,
            weight: weight as u32,
        });
    }
    let sum: u32 = out.iter().map(|i| i.weight).sum();
    if sum != 100 {
        return Err(bad(format!(
            "各项分值之和必须为 100（现为 {sum}）/ the weights must sum to 100 (they sum to {sum})"
        )));
    }
    Ok(out)
}

/// Checks grade bands: `min` integers in 0..=100, strictly descending, labels named.
fn check_bands(bands: &[NewRubricBand]) -> Result<Vec<RubricBand>, ApiError> {
    let bad = |why: &str| ApiError::invalid("bands", why.to_owned());
    if bands.is_empty() || bands.len() > MAX_RUBRIC_BANDS {
        return Err(bad("需要 1 到 10 个等级 / 1 to 10 bands"));
    }
    let mut out: Vec<RubricBand> = Vec::with_capacity(bands.len());
    for b in bands {
        let min =
            b.min.as_u64().filter(|m| *m <= 100).ok_or_else(|| {
                bad("min 必须是 0 到 100 的整数 / min must be an integer in 0..=100")
            })? as u32;
        if out.last().is_some_and(|prev| prev.min <= min) {
            return Err(bad(
                "min 必须从高到低严格递减 / min must be strictly descending",
            ));
        }
        out.push(RubricBand {
            min,
            label: check_name("bands", &b.label)?,
        });
    }
    Ok(out)
}

/// `POST /api/rubrics`: a new rubric of the caller's district → 201 rubric.
pub async fn create_rubric(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Json(b): Json<NewRubric>,
) -> Result<Response, ApiError> {
    let district = district_of(&a)?;
    if !matches!(
        a.principal.role,
        AccountRole::DistrictAdmin | AccountRole::SchoolAdmin
    ) {
        return Err(ApiError::Forbidden);
    }
    let name = check_name("name", &b.name)?;
    let items = check_items(&b.items)?;
    let bands = check_bands(&b.bands)?;
    let row = RubricRow {
        id: new_id(RUBRIC_PREFIX),
        district_id: district,
        name,
        items,
        bands,
        is_default: false,
        created_by: a.principal.id.clone(),
        created_at: Utc::now().trunc_subsecs(6),
    };
    s.store.insert_rubric(&row).await?;
    audit(
        &s,
        &a.principal.id,
        "rubric_created",
        &format!("rubric:{}", row.id),
        &row.name,
        &a.ip,
    )
    .await;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

// ---------------------------------------------------------------------------------------------
// R2 Comments

/// A comment as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommentView {
    /// `cmt_…`.
    pub id: String,
    /// Where on the lesson timeline, ms.
    pub at_ms: u64,
    /// The source watched.
    pub source_id: Option<String>,
    /// `highlight`, `issue`, `suggestion`, `question`, `other`.
    pub category: String,
    /// 亮点, 问题, 建议, 提问, 其他.
    pub category_label: String,
    /// The text.
    pub body: String,
    /// Who wrote it.
    pub author: Person,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl From<CommentRow> for CommentView {
    fn from(c: CommentRow) -> Self {
        let label = COMMENT_CATEGORIES
            .iter()
            .find(|(k, _)| *k == c.category)
            .map_or("", |(_, l)| *l);
        CommentView {
            category_label: label.into(),
            id: c.id,
            at_ms: c.at_ms,
            source_id: c.source_id,
            category: c.category,
            body: c.body,
            author: Person {
                id: c.author_id,
                name: c.author_name,
            },
            created_at: c.created_at,
        }
    }
}

/// `POST /api/lessons/{id}/comments` body.
#[derive(Deserialize)]
pub struct NewComment {
    /// Where on the lesson timeline, ms (0..=the lesson's duration).
    pub at_ms: i64,
    /// The source watched, e.g. `room-a/camera`.
    #[serde(default)]
    pub source_id: Option<String>,
    /// A token of [`COMMENT_CATEGORIES`] or its Chinese name.
    pub category: String,
    /// 1..=2000 characters.
    pub body: String,
}

/// `GET /api/lessons/{id}/comments`: by time on the lesson.
pub async fn list_comments(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<Vec<CommentView>>, ApiError> {
    let acc = lesson_access(&s, &a.principal, &id).await?;
    let rows = s.store.list_comments(&acc.lesson.id).await?;
    Ok(Json(rows.into_iter().map(CommentView::from).collect()))
}

/// A source id, `<participant>/<source>` or a bare name: 1..=128 bytes of ASCII letters,
/// digits, `_`, `-`, `.`, in `/`-separated segments that are not empty and do not start with `.`.
fn is_source_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        })
}

/// `POST /api/lessons/{id}/comments` → 201 comment.
pub async fn add_comment(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(b): Json<NewComment>,
) -> Result<Response, ApiError> {
    let acc = lesson_access(&s, &a.principal, &id).await?;
    acc.require_write()?;
    let duration = acc.duration_ms();
    let at_ms = u64::try_from(b.at_ms)
        .ok()
        .filter(|at| *at <= duration)
        .ok_or_else(|| {
            ApiError::invalid(
                "at_ms",
                format!("时间点必须在课堂时长之内（0 到 {duration} 毫秒）/ must lie within the lesson (0..={duration} ms)"),
            )
        })?;
    let category = COMMENT_CATEGORIES
        .iter()
        .find(|(k, l)| *k == b.category || *l == b.category)
        .map(|(k, _)| (*k).to_owned())
        .ok_or_else(|| {
            ApiError::invalid(
                "category",
                "只能是 亮点 highlight、问题 issue、建议 suggestion、提问 question、其他 other",
            )
        })?;
    if let Some(src) = &b.source_id
        && !is_source_id(src)
    {
        return Err(ApiError::invalid(
            "source_id",
            "不是有效的信号源 / not a source id",
        ));
    }
    let body = b.body.trim();
    if body.is_empty() {
        return Err(ApiError::invalid("body", "不能为空 / must not be empty"));
    }
    check_text("body", body, MAX_COMMENT_CHARS)?;
    let row = CommentRow {
        id: new_id(COMMENT_PREFIX),
        lesson_id: acc.lesson.id.clone(),
        author_id: a.principal.id.clone(),
        author_name: a.name.clone(),
        at_ms,
        source_id: b.source_id,
        category,
        body: body.to_owned(),
        created_at: Utc::now().trunc_subsecs(6),
    };
    s.store.insert_comment(&row).await?;
    audit(
        &s,
        &a.principal.id,
        "review_comment_added",
        &format!("lesson:{}", row.lesson_id),
        &format!("comment:{} at {} ms", row.id, row.at_ms),
        &a.ip,
    )
    .await;
    Ok((StatusCode::CREATED, Json(CommentView::from(row))).into_response())
}

/// `DELETE /api/lessons/{id}/comments/{cid}` → 204; only its author.
pub async fn delete_comment(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path((id, cid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let acc = lesson_access(&s, &a.principal, &id).await?;
    let comments = s.store.list_comments(&acc.lesson.id).await?;
    let comment = comments
        .iter()
        .find(|c| c.id == cid)
        .ok_or(ApiError::NotFound)?;
    if comment.author_id != a.principal.id {
        return Err(ApiError::Forbidden);
    }
    s.store.delete_comment(&acc.lesson.id, &cid).await?;
    audit(
        &s,
        &a.principal.id,
        "review_comment_deleted",
        &format!("lesson:{}", acc.lesson.id),
        &format!("comment:{cid}"),
        &a.ip,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// R3 Reviews (score sheet and 总评)

/// The overall evaluation (总评).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Evaluation {
    /// 优点.
    #[serde(default)]
    pub strengths: String,
    /// 不足.
    #[serde(default)]
    pub weaknesses: String,
    /// 建议.
    #[serde(default)]
    pub suggestions: String,
    /// 总评.
    #[serde(default)]
    pub summary: String,
}

/// `PUT /api/lessons/{id}/my-review` body.
#[derive(Deserialize)]
pub struct MyReview {
    /// A rubric of the lesson's district (default: the district's default rubric).
    #[serde(default)]
    pub rubric_id: Option<String>,
    /// Item key → integer points, every item of the rubric, 0..=its weight.
    pub scores: Map<String, Value>,
    /// The overall evaluation.
    #[serde(default)]
    pub evaluation: Evaluation,
}

/// A review as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReviewView {
    /// Who.
    pub reviewer: Person,
    /// The rubric scored against.
    pub rubric_id: String,
    /// Item key → points.
    pub scores: Value,
    /// Sum.
    pub total: u32,
    /// The rubric's band of the total.
    pub band: Option<String>,
    /// The overall evaluation.
    pub evaluation: Value,
    /// Last saved.
    pub updated_at: DateTime<Utc>,
}

/// The final score of a lesson: the mean of the reviewers' totals.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinalScore {
    /// Mean total.
    pub mean: f64,
    /// The band of the mean (exactly: `sum ≥ min · count`).
    pub band: Option<String>,
    /// How many reviews.
    pub count: u32,
}

/// `GET /api/lessons/{id}/reviews` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReviewsView {
    /// Every reviewer's sheet.
    pub reviews: Vec<ReviewView>,
    /// The mean, when there is a review.
    #[serde(rename = "final")]
    pub final_score: Option<FinalScore>,
    /// The rubric of the final band: the first review's, or the district's default.
    pub rubric: RubricRow,
}

/// The rubric `id` if it belongs to `district`; the district's default for `None`.
async fn rubric_of(s: &AppState, district: &str, id: Option<&str>) -> Result<RubricRow, ApiError> {
    let found = match id {
        Some(id) => s.store.find_rubric(id).await?,
        None => {
            let id = default_rubric_id(district);
            match s.store.find_rubric(&id).await? {
                Some(r) => Some(r),
                None => {
                    s.store.ensure_default_rubric(district, Utc::now()).await?;
                    s.store.find_rubric(&id).await?
                }
            }
        }
    };
    found
        .filter(|r| r.district_id == district)
        .ok_or_else(|| ApiError::invalid("rubric_id", "没有这个评价量表 / no such rubric"))
}

/// Checks a score sheet against `rubric`: every item scored with an integer in 0..=its weight,
/// no other keys → (scores in rubric order, total).
fn check_scores(rubric: &RubricRow, scores: &Map<String, Value>) -> Result<(Value, u32), ApiError> {
    let bad = |why: String| ApiError::invalid("scores", why);
    if let Some(unknown) = scores
        .keys()
        .find(|k| !rubric.items.iter().any(|i| &i.key == *k))
    {
        return Err(bad(format!(
            "量表中没有 {unknown:?} 这一项 / {unknown:?} is not an item of the rubric"
        )));
    }
    let mut out = Map::new();
    let mut total = 0u32;
    for item in &rubric.items {
        let points = scores.get(&item.key).ok_or_else(|| {
            bad(format!(
                "缺少 {}（{}）的分数 / {} is not scored",
                item.name, item.key, item.key
            ))
        })?;
        let p = points
            .as_u64()
            .filter(|p| *p <= u64::from(item.weight))
            .ok_or_else(|| {
                bad(format!(
                    "{}（{}）的分数必须是 0 到 {} 的整数 / {} takes an integer in 0..={}",
                    item.name, item.key, item.weight, item.key, item.weight
                ))
            })? as u32;
        total += p;
        out.insert(item.key.clone(), Value::from(p));
    }
    Ok((Value::Object(out), total))
}

fn review_view(r: ReviewRow, rubric: Option<&RubricRow>) -> ReviewView {
    ReviewView {
        band: rubric.and_then(|ru| ru.band_of(r.total)).map(str::to_owned),
        reviewer: Person {
            id: r.reviewer_id,
            name: r.reviewer_name,
        },
        rubric_id: r.rubric_id,
        scores: r.scores,
        total: r.total,
        evaluation: r.evaluation,
        updated_at: r.updated_at,
    }
}

/// `PUT /api/lessons/{id}/my-review`: the caller's score sheet and evaluation (replaces the
/// previous one) → 200 review.
pub async fn put_my_review(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(b): Json<MyReview>,
) -> Result<Json<ReviewView>, ApiError> {
    let acc = lesson_access(&s, &a.principal, &id).await?;
    acc.require_write()?;
    let rubric = rubric_of(&s, &acc.district, b.rubric_id.as_deref()).await?;
    let (scores, total) = check_scores(&rubric, &b.scores)?;
    let e = &b.evaluation;
    for (field, text) in [
        ("evaluation", &e.strengths),
        ("evaluation", &e.weaknesses),
        ("evaluation", &e.suggestions),
        ("evaluation", &e.summary),
    ] {
        check_text(field, text, MAX_EVALUATION_CHARS)?;
    }
    let evaluation =
        serde_json::to_value(e).map_err(|err| ApiError::Internal(format!("evaluation: {err}")))?;
    let row = ReviewRow {
        lesson_id: acc.lesson.id.clone(),
        reviewer_id: a.principal.id.clone(),
        reviewer_name: a.name.clone(),
        rubric_id: rubric.id.clone(),
        scores,
        total,
        evaluation,
        updated_at: Utc::now().trunc_subsecs(6),
    };
    s.store.put_review(&row).await?;
    audit(
        &s,
        &a.principal.id,
        "review_saved",
        &format!("lesson:{}", row.lesson_id),
        &format!("rubric:{} total {}", row.rubric_id, row.total),
        &a.ip,
    )
    .await;
    Ok(Json(review_view(row, Some(&rubric))))
}

/// `GET /api/lessons/{id}/reviews`: every sheet, the final mean and band, the rubric.
pub async fn list_reviews(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<ReviewsView>, ApiError> {
    let acc = lesson_access(&s, &a.principal, &id).await?;
    let rows = s.store.list_reviews(&acc.lesson.id).await?;
    let mut rubrics: HashMap<String, RubricRow> = HashMap::new();
    for r in &rows {
        if !rubrics.contains_key(&r.rubric_id)
            && let Some(ru) = s.store.find_rubric(&r.rubric_id).await?
        {
            rubrics.insert(ru.id.clone(), ru);
        }
    }
    let rubric = match rows.first().and_then(|r| rubrics.get(&r.rubric_id)) {
        Some(ru) => ru.clone(),
        None => rubric_of(&s, &acc.district, None).await?,
    };
    let final_score = (!rows.is_empty()).then(|| {
        let count = rows.len() as u32;
        let sum: u32 = rows.iter().map(|r| r.total).sum();
        FinalScore {
            mean: f64::from(sum) / f64::from(count),
            band: rubric
                .bands
                .iter()
                .find(|b| u64::from(sum) >= u64::from(b.min) * u64::from(count))
                .map(|b| b.label.clone()),
            count,
        }
    });
    let reviews = rows
        .into_iter()
        .map(|r| {
            let ru = rubrics.get(&r.rubric_id);
            review_view(r, ru)
        })
        .collect();
    Ok(Json(ReviewsView {
        reviews,
        final_score,
        rubric,
    }))
}

// ---------------------------------------------------------------------------------------------
// R4 S-T analysis

/// What `st_results.result` holds: the summary and, for automatic results, the time shares.
#[derive(Serialize, Deserialize)]
struct StoredSt {
    #[serde(flatten)]
    summary: StSummary,
    shares: Option<Shares>,
}

/// An S-T result as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StResultView {
    /// `st` or `std`.
    pub variant: Variant,
    /// Sampling interval, ms.
    pub interval_ms: u64,
    /// The codes, e.g. `TTSST`.
    pub samples: String,
    /// Samples.
    pub n: u32,
    /// T samples.
    pub n_t: u32,
    /// S samples.
    pub n_s: u32,
    /// D samples.
    pub n_d: u32,
    /// Runs.
    pub runs: u32,
    /// Rt.
    pub rt: f64,
    /// Ch.
    pub ch: f64,
    /// `practice`, `lecture`, `dialogue`, `mixed`.
    pub lesson_type: st::LessonType,
    /// 练习型, 讲授型, 对话型, 混合型.
    pub lesson_type_label: String,
    /// Time shares from the speech activity (`null` for a corrected result).
    pub shares: Option<Shares>,
    /// `[t_ms, S so far, T so far]` per sample.
    pub curve: Vec<(u64, u32, u32)>,
    /// When computed.
    pub computed_at: DateTime<Utc>,
    /// Who corrected it (`null` for automatic).
    pub author: Option<Person>,
}

/// `GET /api/lessons/{id}/st` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StView {
    /// From the speech activity.
    pub automatic: Option<StResultView>,
    /// A reviewer's correction.
    pub corrected: Option<StResultView>,
}

fn st_view(row: StResultRow) -> Result<StResultView, ApiError> {
    let broken =
        |why: String| ApiError::Internal(format!("S-T result of {}: {why}", row.lesson_id));
    let stored: StoredSt =
        serde_json::from_value(row.result.clone()).map_err(|e| broken(e.to_string()))?;
    let codes =
        st::parse_codes(&row.samples, stored.summary.variant).map_err(|e| broken(e.to_string()))?;
    let s = stored.summary;
    Ok(StResultView {
        variant: s.variant,
        interval_ms: row.interval_ms,
        curve: st::curve(&codes, row.interval_ms),
        samples: row.samples,
        n: s.n,
        n_t: s.n_t,
        n_s: s.n_s,
        n_d: s.n_d,
        runs: s.runs,
        rt: s.rt,
        ch: s.ch,
        lesson_type: s.lesson_type,
        lesson_type_label: s.lesson_type.label().into(),
        shares: stored.shares,
        computed_at: row.computed_at,
        author: row.author_id.map(|id| Person {
            name: row.author_name.unwrap_or_default(),
            id,
        }),
    })
}

/// The result row of `codes` (non-empty) for `lesson_id`.
fn st_row(
    lesson_id: &str,
    kind: StKind,
    variant: Variant,
    interval_ms: u64,
    codes: &[st::Code],
    shares: Option<Shares>,
    author: Option<(&str, &str)>,
) -> Result<StResultRow, st::StError> {
    let summary = st::analyze(codes, variant)?;
    let result = serde_json::to_value(StoredSt { summary, shares }).unwrap_or(Value::Null);
    Ok(StResultRow {
        lesson_id: lesson_id.into(),
        kind,
        variant: variant.as_str().into(),
        interval_ms,
        samples: st::format_codes(codes),
        result,
        author_id: author.map(|(id, _)| id.to_owned()),
        author_name: author.map(|(_, name)| name.to_owned()),
        computed_at: Utc::now().trunc_subsecs(6),
    })
}

/// The automatic result of `activity` (whose duration is positive).
fn automatic_row(
    lesson_id: &str,
    activity: &SpeechActivity,
    interval_ms: u64,
    variant: Variant,
) -> Result<StResultRow, st::StError> {
    let codes = st::sample(activity, interval_ms, variant);
    st_row(
        lesson_id,
        StKind::Automatic,
        variant,
        interval_ms,
        &codes,
        Some(st::shares(activity)),
        None,
    )
}

/// The `speech` field of a lesson registration, checked: `None` when absent or null; 422
/// `field: speech` when malformed (shape, a zero or over-24-h duration, too many tracks or
/// segments, a bad source id). Segments beyond the duration are clipped by the analysis.
pub fn check_speech(registration: &Value) -> Result<Option<SpeechActivity>, ApiError> {
    let Some(speech) = registration.get("speech").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let bad = |why: String| ApiError::invalid("speech", why);
    let a: SpeechActivity = serde_json::from_value(speech.clone())
        .map_err(|e| bad(format!("语音活动格式错误 / malformed speech activity: {e}")))?;
    if a.duration_ms == 0 || a.duration_ms > 24 * 3600 * 1000 {
        return Err(bad("duration_ms must be in 1..=86400000".into()));
    }
    if a.tracks.len() > MAX_SPEECH_TRACKS {
        return Err(bad(format!("at most {MAX_SPEECH_TRACKS} tracks")));
    }
    for t in &a.tracks {
        if !is_source_id(&t.source_id) {
            return Err(bad(format!("bad source_id {:?}", t.source_id)));
        }
        if t.segments.len() > MAX_SPEECH_SEGMENTS {
            return Err(bad(format!(
                "at most {MAX_SPEECH_SEGMENTS} segments per track"
            )));
        }
        if t.segments.iter().any(|[from, to]| from > to) {
            return Err(bad(format!(
                "{}: a segment ends before it starts",
                t.source_id
            )));
        }
        check_text("speech", &t.label, 100)?;
    }
    Ok(Some(a))
}

/// Computes and stores the automatic S-T result of a just-registered lesson from its `speech`
/// field, at the configured interval, variant S-T. A lesson without speech activity gets none.
/// Failures are logged, not returned: the lesson is registered either way, and a reviewer can
/// recompute.
pub async fn automatic_st_at_registration(s: &AppState, lesson: &LessonRow) {
    let activity = match check_speech(&lesson.metadata) {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(lesson = %lesson.id, error = %e, "speech activity not analysed");
            return;
        }
    };
    let stored = match automatic_row(&lesson.id, &activity, s.config.st_interval_ms, Variant::St) {
        Ok(row) => s.store.put_st_result(&row).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = stored {
        tracing::error!(lesson = %lesson.id, error = %e, "automatic S-T result not stored");
    }
}

/// `GET /api/lessons/{id}/st` → `{automatic, corrected}`.
pub async fn get_st(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<StView>, ApiError> {
    let acc = lesson_access(&s, &a.principal, &id).await?;
    let mut view = StView {
        automatic: None,
        corrected: None,
    };
    for row in s.store.list_st_results(&acc.lesson.id).await? {
        match row.kind {
            StKind::Automatic => view.automatic = Some(st_view(row)?),
            StKind::Corrected => view.corrected = Some(st_view(row)?),
        }
    }
    Ok(Json(view))
}

fn check_interval(interval_ms: u64) -> Result<u64, ApiError> {
    if (MIN_ST_INTERVAL_MS..=MAX_ST_INTERVAL_MS).contains(&interval_ms) {
        Ok(interval_ms)
    } else {
        Err(ApiError::invalid(
            "interval_ms",
            format!(
                "采样间隔必须在 {MIN_ST_INTERVAL_MS} 到 {MAX_ST_INTERVAL_MS} 毫秒之间 / must be {MIN_ST_INTERVAL_MS}..={MAX_ST_INTERVAL_MS} ms"
            ),
        ))
    }
}

fn parse_variant(v: Option<&str>) -> Result<Variant, ApiError> {
    match v {
        None => Ok(Variant::St),
        Some(v) => Variant::parse(v)
            .ok_or_else(|| ApiError::invalid("variant", "只能是 st 或 std / must be st or std")),
    }
}

/// `POST /api/lessons/{id}/st/recompute` body.
#[derive(Deserialize)]
pub struct Recompute {
    /// Sampling interval, ms.
    pub interval_ms: u64,
    /// `st` (default) or `std`.
    #[serde(default)]
    pub variant: Option<String>,
}

/// `POST /api/lessons/{id}/st/recompute`: the automatic result again, from the stored speech
/// activity, at another interval or variant → 200 result.
pub async fn recompute_st(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(b): Json<Recompute>,
) -> Result<Json<StResultView>, ApiError> {
    let acc = lesson_access(&s, &a.principal, &id).await?;
    acc.require_write()?;
    let interval_ms = check_interval(b.interval_ms)?;
    let variant = parse_variant(b.variant.as_deref())?;
    let activity = check_speech(&acc.lesson.metadata)?.ok_or_else(|| {
        ApiError::invalid(
            "speech",
            "这节课没有语音活动数据 / the lesson has no speech activity",
        )
    })?;
    let row = automatic_row(&acc.lesson.id, &activity, interval_ms, variant)
        .map_err(|e| ApiError::invalid("speech", e.to_string()))?;
    s.store.put_st_result(&row).await?;
    audit(
        &s,
        &a.principal.id,
        "st_recomputed",
        &format!("lesson:{}", row.lesson_id),
        &format!("{} every {} ms", row.variant, row.interval_ms),
        &a.ip,
    )
    .await;
    Ok(Json(st_view(row)?))
}

/// `PUT /api/lessons/{id}/st/corrected` body.
#[derive(Deserialize)]
pub struct Corrected {
    /// Sampling interval, ms.
    pub interval_ms: u64,
    /// `st` or `std`.
    pub variant: String,
    /// The codes, e.g. `TTSST`.
    pub samples: String,
}

/// `PUT /api/lessons/{id}/st/corrected`: a reviewer's coding, kept beside the automatic one →
/// 200 result. Its length must equal the automatic result's `n` when the intervals match, else
/// lie in 1..=⌈lesson duration / interval⌉.
pub async fn put_corrected_st(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(b): Json<Corrected>,
) -> Result<Json<StResultView>, ApiError> {
    let acc = lesson_access(&s, &a.principal, &id).await?;
    acc.require_write()?;
    let interval_ms = check_interval(b.interval_ms)?;
    let variant = parse_variant(Some(&b.variant))?;
    let codes = st::parse_codes(&b.samples, variant)
        .map_err(|e| ApiError::invalid("samples", e.to_string()))?;
    let automatic = s
        .store
        .list_st_results(&acc.lesson.id)
        .await?
        .into_iter()
        .find(|r| r.kind == StKind::Automatic && r.interval_ms == interval_ms);
    let n = codes.len() as u64;
    match automatic {
        Some(auto) => {
            let expected = auto.samples.chars().count() as u64;
            if n != expected {
                return Err(ApiError::invalid(
                    "samples",
                    format!(
                        "需要 {expected} 个采样（与自动结果相同）/ {expected} samples expected, as in the automatic result; got {n}"
                    ),
                ));
            }
        }
        None => {
            let most = st::sample_count(acc.duration_ms(), interval_ms);
            if n == 0 || n > most {
                return Err(ApiError::invalid(
                    "samples",
                    format!(
                        "需要 1 到 {most} 个采样 / 1 to {most} samples at this interval; got {n}"
                    ),
                ));
            }
        }
    }
    let row = st_row(
        &acc.lesson.id,
        StKind::Corrected,
        variant,
        interval_ms,
        &codes,
        None,
        Some((&a.principal.id, &a.name)),
    )
    .map_err(|e| ApiError::invalid("samples", e.to_string()))?;
    s.store.put_st_result(&row).await?;
    audit(
        &s,
        &a.principal.id,
        "st_corrected",
        &format!("lesson:{}", row.lesson_id),
        &format!(
            "{} every {} ms: {} samples",
            row.variant, row.interval_ms, n
        ),
        &a.ip,
    )
    .await;
    Ok(Json(st_view(row)?))
}
