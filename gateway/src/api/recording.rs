//! Recording classrooms (录播教室): what the recorders report and register, and what people do
//! with them.
//!
//! - The recorder (machine token of the classroom's school or district) reports its state
//!   (`PUT /api/classrooms/{id}/recorder-status`, stored verbatim with the server's time) and
//!   registers each finished lesson (`POST /api/lessons`, idempotent by the lesson's id, because
//!   the recorder retries after a timeout without knowing whether the first try landed).
//! - People in scope read the state and the archive (`GET …/recorder-status`, `GET /api/lessons`),
//!   watch previews and control the recorder (start, stop, extend, director events) through the
//!   [`crate::recorder_link::RecorderLink`] the binary provides.
//!
//! Access is decided by [`crate::policy`] on [`Resource::Recording`]; only classrooms of kind
//! `recording` have a recorder.

use super::auth::Authed;
use super::{Json, audit, authorize_visible};
use crate::app::AppState;
use crate::error::ApiError;
use crate::policy::{AccountRole, Action, Resource, authorize};
use crate::recorder_link::RecordingCommand;
use crate::store::{
    ClassroomKind, ClassroomRow, LessonFilter, LessonKind, LessonRow, LessonVisibility,
    ListedLesson, RecorderStatusRow, SchoolRow,
};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// Largest recorder status report, in bytes.
pub const MAX_STATUS_BYTES: usize = 64 * 1024;
/// A recorder that has not reported for this long is shown offline.
pub const ONLINE_WITHIN_SECS: i64 = 30;
/// Most lessons one listing returns (the newest).
pub const MAX_LESSONS_LISTED: u32 = 500;
/// Largest director event, in bytes of JSON.
pub const MAX_DIRECTOR_EVENT_BYTES: usize = 4 * 1024;
/// The states a recorder reports (`state` of the status body).
pub const RECORDER_STATES: [&str; 7] = [
    "idle",
    "starting",
    "recording",
    "finalizing",
    "uploading",
    "done",
    "failed",
];

/// The recording classroom `id` with its school, if the caller may see it and do `action`
/// (`NotFound` outside the caller's scope); 422 if the classroom is not a recording classroom.
async fn recording_room(
    s: &AppState,
    a: &Authed,
    id: &str,
    action: Action,
) -> Result<(ClassroomRow, SchoolRow), ApiError> {
    let room = s.store.get_classroom(id).await?;
    let school = s.store.get_school(&room.school_id).await?;
    authorize_visible(
        &a.principal,
        action,
        &Resource::Recording {
            classroom: &room.id,
            school: &school.id,
            district: &school.district_id,
        },
    )?;
    if room.kind != ClassroomKind::Recording {
        return Err(not_recording());
    }
    Ok((room, school))
}

fn not_recording() -> ApiError {
    ApiError::invalid(
        "classroom_id",
        "这不是录播教室 / this is not a recording classroom",
    )
}

/// A short identifier: 1..=`max` ASCII letters, digits, `_`, `-`, `.`.
pub(super) fn is_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

// ---------------------------------------------------------------------------------------------
// Recorder status

/// `PUT /api/classrooms/{id}/recorder-status`: the recorder's report, stored verbatim → 204.
pub async fn put_recorder_status(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<StatusCode, ApiError> {
    let (room, _) = recording_room(&s, &a, &id, Action::Create).await?;
    let Some(fields) = body.as_object() else {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    };
    match fields.get("state").and_then(Value::as_str) {
        Some(state) if RECORDER_STATES.contains(&state) => {}
        _ => {
            return Err(ApiError::invalid(
                "state",
                format!("must be one of {}", RECORDER_STATES.join(", ")),
            ));
        }
    }
    s.store
        .put_recorder_status(&RecorderStatusRow {
            classroom_id: room.id,
            body,
            reported_at: Utc::now(),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/classrooms/{id}/recorder-status` answer.
#[derive(Serialize, Deserialize, Debug)]
pub struct RecorderStatusView {
    /// The last report, verbatim; `null` if the recorder never reported.
    pub status: Option<Value>,
    /// When it arrived.
    pub reported_at: Option<DateTime<Utc>>,
    /// Whether it arrived within the last [`ONLINE_WITHIN_SECS`] seconds.
    pub online: bool,
}

/// `GET /api/classrooms/{id}/recorder-status`.
pub async fn get_recorder_status(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<RecorderStatusView>, ApiError> {
    let (room, _) = recording_room(&s, &a, &id, Action::Read).await?;
    let row = s.store.find_recorder_status(&room.id).await?;
    let now = Utc::now();
    Ok(Json(match row {
        Some(r) => RecorderStatusView {
            online: now - r.reported_at <= chrono::Duration::seconds(ONLINE_WITHIN_SECS),
            status: Some(r.body),
            reported_at: Some(r.reported_at),
        },
        None => RecorderStatusView {
            status: None,
            reported_at: None,
            online: false,
        },
    }))
}

// ---------------------------------------------------------------------------------------------
// Lessons

pub use duet_gateway_proto::{
    LessonFile, LessonFileKind, LessonGap, LessonRegistration as NewLesson,
};

/// A lesson as the API shows it: the stored columns, with `files`, `gaps` and `parts` from the
/// registration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LessonView {
    /// `les_…`.
    pub id: String,
    /// The recording classroom.
    pub classroom_id: String,
    /// Its school.
    pub school_id: String,
    /// The timetable series, if timetabled.
    pub series_id: Option<String>,
    /// School-local date, if timetabled.
    pub date: Option<NaiveDate>,
    /// Period, if timetabled.
    pub period: Option<u8>,
    /// Title.
    pub title: String,
    /// Teacher's name.
    pub teacher: String,
    /// Subject's name.
    pub subject: String,
    /// First frame.
    pub started_at: DateTime<Utc>,
    /// Last frame.
    pub ended_at: DateTime<Utc>,
    /// Where the files are.
    pub archive_uri: String,
    /// The files, as registered.
    pub files: Value,
    /// The gaps, as registered.
    pub gaps: Value,
    /// How many parts.
    pub parts: Value,
    /// When the gateway registered it.
    pub registered_at: DateTime<Utc>,
    /// `room` (a recording classroom) or `live` (a recorded live class).
    pub kind: LessonKind,
    /// For a live class: its pairing.
    pub pairing_id: Option<String>,
    /// Whether it is published (visible beyond its school's admins and the district).
    pub published: bool,
    /// How many reviewers scored it.
    pub review_count: i64,
    /// The mean of their totals (0..100), `null` before the first review.
    pub final_score: Option<f64>,
}

impl From<ListedLesson> for LessonView {
    fn from(l: ListedLesson) -> Self {
        LessonView {
            review_count: l.review_count,
            final_score: l.final_score,
            ..LessonView::from(l.lesson)
        }
    }
}

impl From<LessonRow> for LessonView {
    fn from(l: LessonRow) -> Self {
        let field = |name: &str, default: Value| l.metadata.get(name).cloned().unwrap_or(default);
        LessonView {
            files: field("files", Value::Array(Vec::new())),
            gaps: field("gaps", Value::Array(Vec::new())),
            parts: field("parts", Value::from(1)),
            id: l.id,
            classroom_id: l.classroom_id,
            school_id: l.school_id,
            series_id: l.series_id,
            date: l.date,
            period: l.period,
            title: l.title,
            teacher: l.teacher,
            subject: l.subject,
            started_at: l.started_at,
            ended_at: l.ended_at,
            archive_uri: l.archive_uri,
            registered_at: l.registered_at,
            kind: l.kind,
            pairing_id: l.pairing_id,
            published: l.published,
            review_count: 0,
            final_score: None,
        }
    }
}

/// Free text: trimmed, at most `max` characters, no control characters; empty only if allowed.
pub(super) fn check_text(
    field: &'static str,
    s: &str,
    max: usize,
    may_be_empty: bool,
) -> Result<(), ApiError> {
    if !may_be_empty && s.trim().is_empty() {
        return Err(ApiError::invalid(field, "不能为空 / must not be empty"));
    }
    if s.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("最多 {max} 个字符 / at most {max} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "含有控制字符 / contains control characters",
        ));
    }
    Ok(())
}

fn check_archive_uri(uri: &str) -> Result<(), ApiError> {
    let bad = || {
        ApiError::invalid(
            "archive_uri",
            "must be file:///<path> or s3://<bucket>/<key>, at most 2048 characters",
        )
    };
    if uri.len() > 2048 || uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad());
    }
    if let Some(path) = uri.strip_prefix("file://") {
        return if path.len() > 1 && path.starts_with('/') {
            Ok(())
        } else {
            Err(bad())
        };
    }
    match uri.strip_prefix("s3://").and_then(|r| r.split_once('/')) {
        Some((bucket, key)) if is_token(bucket, 63) && !key.is_empty() => Ok(()),
        _ => Err(bad()),
    }
}

/// A source id: a token, or `<participant>/<source>` (two tokens) for a live class's tracks.
pub(super) fn is_source_id(s: &str) -> bool {
    match s.split_once('/') {
        Some((participant, source)) => is_token(participant, 64) && is_token(source, 64),
        None => is_token(s, 64),
    }
}

/// A file name relative to the archive: no absolute path, no `..`, no backslash.
fn check_file_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('/')
        && !name.contains('\\')
        && !name.chars().any(char::is_control)
        && name.split('/').all(|seg| !seg.is_empty() && seg != "..");
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "files",
            format!("bad file name {name:?}: a relative path of at most 255 bytes"),
        ))
    }
}

/// Checks every value of a registration (the shape was checked by parsing).
fn check_lesson(b: &NewLesson) -> Result<(), ApiError> {
    if !b.id.starts_with("les_") || !is_token(&b.id, 128) {
        return Err(ApiError::invalid(
            "id",
            "les_ followed by letters, digits, '_', '-' or '.', at most 128 characters",
        ));
    }
    if !is_token(&b.classroom_id, 64) {
        return Err(ApiError::invalid("classroom_id", "not a classroom id"));
    }
    if let Some(sid) = &b.series_id
        && !is_token(sid, 64)
    {
        return Err(ApiError::invalid("series_id", "not a series id"));
    }
    if let Some(p) = b.period
        && !(1..=20).contains(&p)
    {
        return Err(ApiError::invalid("period", "1..=20"));
    }
    check_text("title", &b.title, 200, false)?;
    check_text("teacher", &b.teacher, 100, true)?;
    check_text("subject", &b.subject, 100, true)?;
    if b.started_at >= b.ended_at {
        return Err(ApiError::invalid(
            "ended_at",
            "结束时间必须晚于开始时间 / must be after started_at",
        ));
    }
    if b.ended_at - b.started_at > chrono::Duration::hours(24) {
        return Err(ApiError::invalid("ended_at", "a lesson lasts at most 24 h"));
    }
    check_archive_uri(&b.archive_uri)?;
    if b.files.is_empty() || b.files.len() > 1000 {
        return Err(ApiError::invalid("files", "1 to 1000 files"));
    }
    for f in &b.files {
        check_file_name(&f.name)?;
        if let Some(src) = &f.source_id
            && !is_source_id(src)
        {
            return Err(ApiError::invalid("files", "bad source_id"));
        }
        if !f.duration_s.is_finite() || f.duration_s < 0.0 {
            return Err(ApiError::invalid("files", "duration_s must be ≥ 0"));
        }
        if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::invalid("files", "sha256 must be 64 hex digits"));
        }
    }
    if b.gaps.len() > 1000 {
        return Err(ApiError::invalid("gaps", "at most 1000 gaps"));
    }
    for g in &b.gaps {
        if let Some(src) = &g.source_id
            && !is_source_id(src)
        {
            return Err(ApiError::invalid("gaps", "bad source_id"));
        }
        if g.from > g.to {
            return Err(ApiError::invalid("gaps", "from must not be after to"));
        }
        check_text("gaps", &g.reason, 500, true)?;
    }
    if !(1..=1000).contains(&b.parts) {
        return Err(ApiError::invalid("parts", "1..=1000"));
    }
    Ok(())
}

/// `POST /api/lessons`: registers a recorded lesson. 201 the first time; 200 with the same lesson
/// when the same id comes again with the same content (a retry); 409 when the content differs.
pub async fn register_lesson(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Json(posted): Json<Value>,
) -> Result<Response, ApiError> {
    if !posted.is_object() {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    }
    super::archive::check_live_fields(&posted)?;
    let b: NewLesson =
        serde_json::from_value(posted.clone()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    check_lesson(&b)?;
    super::archive::check_registration_media(&b)?;
    // The classroom: absent and out of scope look the same.
    let no_room = || ApiError::invalid("classroom_id", "no such classroom");
    let room = match s.store.get_classroom(&b.classroom_id).await {
        Ok(r) => r,
        Err(crate::store::StoreError::NotFound { .. }) => return Err(no_room()),
        Err(e) => return Err(e.into()),
    };
    let school = s.store.get_school(&room.school_id).await?;
    let resource = Resource::Recording {
        classroom: &room.id,
        school: &school.id,
        district: &school.district_id,
    };
    if authorize(&a.principal, Action::Create, &resource).is_err() {
        return Err(match authorize(&a.principal, Action::Read, &resource) {
            Ok(()) => ApiError::Forbidden,
            Err(_) => no_room(),
        });
    }
    // A recorded live class is registered for its lead classroom, whatever its kind.
    if b.kind == LessonKind::Room && room.kind != ClassroomKind::Recording {
        return Err(not_recording());
    }
    if let Some(pid) = &b.pairing_id {
        super::archive::check_pairing(&s, pid, &school).await?;
        // A timetabled class names its series' pairing, no other (the pairing decides who
        // may see the lesson).
        if let Some(series) = &b.series_id
            && let Ok(row) = s.store.get_series(series).await
            && row.pairing_id.as_deref() != Some(pid.as_str())
        {
            return Err(ApiError::invalid(
                "pairing_id",
                "不是该课程的结对 / not the pairing of the lesson's series",
            ));
        }
    }
    if let Some(existing) = s.store.find_lesson(&b.id).await? {
        return repeated(existing, &posted);
    }
    let row = LessonRow {
        id: b.id.clone(),
        classroom_id: room.id.clone(),
        school_id: school.id.clone(),
        series_id: b.series_id.clone(),
        date: b.date,
        period: b.period,
        title: b.title.trim().to_owned(),
        teacher: b.teacher.trim().to_owned(),
        subject: b.subject.trim().to_owned(),
        started_at: b.started_at,
        ended_at: b.ended_at,
        archive_uri: b.archive_uri.clone(),
        metadata: posted.clone(),
        // Stored to the microsecond: the first answer and every later read must agree.
        registered_at: Utc::now().trunc_subsecs(6),
        kind: b.kind,
        pairing_id: b.pairing_id.clone(),
        published: true,
    };
    match s.store.insert_lesson(&row).await {
        Ok(()) => {}
        // A concurrent retry got there first: answer as for a retry.
        Err(crate::store::StoreError::Conflict { .. }) => {
            let existing = s.store.find_lesson(&b.id).await?.ok_or_else(|| {
                ApiError::Internal(format!("lesson {} vanished after a conflict", b.id))
            })?;
            return repeated(existing, &posted);
        }
        Err(e) => return Err(e.into()),
    }
    super::review::automatic_st_at_registration(&s, &row).await;
    audit(
        &s,
        &a.principal.id,
        "lesson_registered",
        &format!("lesson:{}", row.id),
        &format!("classroom:{} {}", row.classroom_id, row.title),
        &a.ip,
    )
    .await;
    Ok((StatusCode::CREATED, Json(LessonView::from(row))).into_response())
}

/// The answer to a registration whose id is taken: the same content is a retry (200).
fn repeated(existing: LessonRow, posted: &Value) -> Result<Response, ApiError> {
    if existing.metadata == *posted {
        Ok((StatusCode::OK, Json(LessonView::from(existing))).into_response())
    } else {
        Err(ApiError::Conflict(
            "这节课已用不同的内容登记过 / a lesson with this id was registered with different content"
                .into(),
        ))
    }
}

/// `GET /api/lessons` query.
#[derive(Deserialize)]
pub struct LessonQuery {
    /// Only this school's lessons.
    pub school_id: Option<String>,
    /// Only this classroom's.
    pub classroom_id: Option<String>,
    /// First school-local date (by start).
    pub from: Option<NaiveDate>,
    /// Last school-local date (inclusive).
    pub to: Option<NaiveDate>,
    /// Only this teacher's (the name, exactly).
    pub teacher: Option<String>,
    /// Only this subject's (the name, exactly).
    pub subject: Option<String>,
    /// Only this pairing's.
    pub pairing_id: Option<String>,
    /// Only `room` or only `live` lessons.
    pub kind: Option<String>,
    /// Text in the title, the teacher's or the subject's name.
    pub q: Option<String>,
}

/// Midnight at the start of a school-local date, in UTC.
fn local_midnight(date: NaiveDate) -> Option<DateTime<Utc>> {
    date.and_hms_opt(0, 0, 0)?
        .and_local_timezone(chrono_tz::Asia::Shanghai)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// An optional text filter: trimmed, empty = none, at most 100 characters.
fn filter_text(field: &'static str, v: &Option<String>) -> Result<Option<String>, ApiError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() > 100 => Err(ApiError::invalid(
            field,
            "最多 100 个字符 / at most 100 characters",
        )),
        Some(t) => Ok(Some(t.to_owned())),
    }
}

/// `GET /api/lessons`: the caller's lessons in scope, newest first (at most
/// [`MAX_LESSONS_LISTED`]), filtered, each with its review count and final score.
pub async fn list_lessons(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Query(q): Query<LessonQuery>,
) -> Result<Json<Vec<LessonView>>, ApiError> {
    let district = a.principal.district.clone().ok_or(ApiError::Forbidden)?;
    if let (Some(f), Some(t)) = (q.from, q.to)
        && t < f
    {
        return Err(ApiError::invalid("to", "to must not be before from"));
    }
    let kind = match q.kind.as_deref() {
        None | Some("") => None,
        Some(k) => {
            Some(LessonKind::parse(k).ok_or_else(|| ApiError::invalid("kind", "room or live"))?)
        }
    };
    // District admins and district-wide machine tokens see the whole district; everyone else at
    // most their school, its pairings' live lessons and what is assigned to them. The query
    // narrows to that, the policy decides on every row.
    let district_wide = a.principal.role == AccountRole::DistrictAdmin
        || a.principal.role == AccountRole::Machine && a.principal.school.is_none();
    let filter = LessonFilter {
        district_id: Some(district.clone()),
        school_id: filter_text("school_id", &q.school_id)?,
        classroom_id: filter_text("classroom_id", &q.classroom_id)?,
        since: q.from.and_then(local_midnight),
        before: q.to.and_then(|t| t.succ_opt()).and_then(local_midnight),
        teacher: filter_text("teacher", &q.teacher)?,
        subject: filter_text("subject", &q.subject)?,
        pairing_id: filter_text("pairing_id", &q.pairing_id)?,
        kind,
        text: filter_text("q", &q.q)?,
        visible_to: (!district_wide).then(|| LessonVisibility {
            school: a.principal.school.clone(),
            user: a.principal.id.clone(),
        }),
    };
    let rows = s.store.list_lessons(&filter, MAX_LESSONS_LISTED).await?;
    let scope = super::archive::ScopeData::load(&s, &a, &district).await?;
    Ok(Json(
        rows.into_iter()
            .filter(|l| scope.may_read(&a, &l.lesson, &district))
            .map(LessonView::from)
            .collect(),
    ))
}

/// `GET /api/lessons/{id}`.
pub async fn get_lesson(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<LessonView>, ApiError> {
    super::archive::lesson_for(&s, &a, &id, Action::Read).await?;
    let listed = s
        .store
        .find_listed_lesson(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(LessonView::from(listed)))
}

// ---------------------------------------------------------------------------------------------
// Manual control and preview, through the recorder link

fn link(s: &AppState) -> Result<&Arc<dyn crate::recorder_link::RecorderLink>, ApiError> {
    s.recorder_link()
        .ok_or_else(|| ApiError::from(crate::recorder_link::RecorderLinkError::NoRecorder))
}

/// `POST /api/classrooms/{id}/recording`: start, stop or extend → the recorder's answer.
pub async fn command(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(cmd): Json<RecordingCommand>,
) -> Result<Json<Value>, ApiError> {
    let (room, _) = recording_room(&s, &a, &id, Action::Update).await?;
    cmd.validate()
        .map_err(|why| ApiError::invalid("minutes", why))?;
    let answer = link(&s)?.command(&room.id, cmd).await?;
    let detail = serde_json::to_string(&cmd).unwrap_or_default();
    audit(
        &s,
        &a.principal.id,
        "recording_command",
        &format!("classroom:{}", room.id),
        &detail,
        &a.ip,
    )
    .await;
    Ok(Json(answer))
}

/// `GET /api/classrooms/{id}/preview/{source_id}`: the latest JPEG of a source (`programme` for
/// the programme), never cached.
pub async fn preview(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path((id, source_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (room, _) = recording_room(&s, &a, &id, Action::Read).await?;
    if !is_token(&source_id, 64) {
        return Err(ApiError::NotFound);
    }
    let jpeg = link(&s)?
        .preview(&room.id, &source_id)
        .await
        .ok_or(ApiError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response())
}

/// `POST /api/classrooms/{id}/director-events`: passes an auto-director event (a JSON string or
/// object, as the recorder defines it) → 204.
pub async fn director_event(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(event): Json<Value>,
) -> Result<StatusCode, ApiError> {
    let (room, _) = recording_room(&s, &a, &id, Action::Update).await?;
    if !(event.is_string() || event.is_object()) {
        return Err(ApiError::invalid("body", "a JSON string or object"));
    }
    if event.to_string().len() > MAX_DIRECTOR_EVENT_BYTES {
        return Err(ApiError::invalid(
            "body",
            format!("at most {MAX_DIRECTOR_EVENT_BYTES} bytes"),
        ));
    }
    link(&s)?.director_event(&room.id, event).await?;
    Ok(StatusCode::NO_CONTENT)
}
