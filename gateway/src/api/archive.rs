//! The lesson archive (课堂实录) beyond registration: who may see a lesson, how its media is
//! played, who reviews it, publishing and deleting, clip export (晒课), and the live rooms the
//! recorder follows.
//!
//! - Scope: every handler loads the lesson with [`lesson_for`], which describes it to
//!   [`crate::policy`] as [`Resource::Lesson`] (its school, the schools of its pairing when it is
//!   live, its assigned reviewers, its teacher's accounts, whether it is published). A caller who
//!   may not read a lesson gets 404, as if it did not exist; one who may read it but not act on
//!   it gets 403.
//! - Media (`GET /api/lessons/{id}/media`): signed URLs ([`crate::media`]) to the files, served
//!   without a login by `GET /media/{lesson_id}/{*path}` from the lesson's `file://` archive;
//!   `s3://` archives answer 501 for now.
//! - Reviewers (`PUT|GET /api/lessons/{id}/reviewers`), publish, unpublish, delete: audited.
//! - Clips (`POST|GET /api/lessons/{id}/clips`, `GET /api/clips/{id}`): validated, recorded,
//!   rendered in the background by [`crate::clips`]; downloaded through a signed URL
//!   `/media/clips/{clip_id}`.
//! - Live sessions (`GET /api/live/sessions`): the timetabled rooms with someone in them now
//!   (from attendance), each with a fresh recorder join token, for the recorder's machine token
//!   and the district admin.

use super::auth::Authed;
use super::recording::{LessonView, check_text, is_source_id, is_token};
use super::{Json, audit, check_name};
use crate::app::AppState;
use crate::clips::{ClipJob, TitleCard};
use crate::error::ApiError;
use crate::media::{self, CLIP_NAMESPACE, MediaUrlError, PathError, RangeAnswer};
use crate::policy::{AccountRole, Action, Principal, Resource, authorize};
use crate::store::{
    AssignmentRow, ClipRow, ClipState, LessonKind, LessonRow, Role, SchoolRow, StoreError, new_id,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, NaiveDate, Utc};
use duet_gateway_proto::{
    LessonFileKind, LessonMedia, MediaSourceKind, SpeechActivity, Storyboard,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// Most reviewers one lesson may have.
pub const MAX_REVIEWERS: usize = 50;
/// Shortest clip.
pub const MIN_CLIP_MS: i64 = 1_000;
/// Longest clip.
pub const MAX_CLIP_MS: i64 = 60 * 60 * 1_000;
/// How long a recorder's join token from `/api/live/sessions` lasts.
pub const RECORDER_TOKEN_SECS: i64 = 2 * 3600;
/// Longest lesson timeline accepted in speech and media descriptions (a day).
const MAX_TIMELINE_MS: u64 = 24 * 3600 * 1000;

/// The routes of this module (merged into the API router).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/lessons/{id}", axum::routing::delete(delete_lesson))
        .route("/api/lessons/{id}/media", get(lesson_media))
        .route(
            "/api/lessons/{id}/reviewers",
            put(put_reviewers).get(get_reviewers),
        )
        .route("/api/lessons/{id}/publish", post(publish))
        .route("/api/lessons/{id}/unpublish", post(unpublish))
        .route("/api/lessons/{id}/clips", post(create_clip).get(list_clips))
        .route("/api/clips/{id}", get(get_clip))
        .route("/api/live/sessions", get(live_sessions))
}

/// The signed media routes (no login; merged into the app router, outside `/api`).
pub fn media_routes() -> Router<Arc<AppState>> {
    Router::new().route("/media/{ns}/{*path}", get(serve_media))
}

// ---------------------------------------------------------------------------------------------
// Registration: the fields of live lessons

/// Checks the shape of `kind`, `pairing_id`, `speech` and `media` of a posted registration, so
/// a bad one is a 422 naming its field rather than a 400 from parsing the whole body.
pub(super) fn check_live_fields(posted: &Value) -> Result<(), ApiError> {
    match posted.get("kind") {
        None | Some(Value::Null) => {}
        Some(Value::String(k)) if LessonKind::parse(k).is_some() => {}
        Some(_) => return Err(ApiError::invalid("kind", "room 或 live / room or live")),
    }
    match posted.get("pairing_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) if is_token(p, 64) => {}
        Some(_) => return Err(ApiError::invalid("pairing_id", "not a pairing id")),
    }
    if let Some(v) = posted.get("speech").filter(|v| !v.is_null()) {
        let speech: SpeechActivity = serde_json::from_value(v.clone())
            .map_err(|e| ApiError::invalid("speech", e.to_string()))?;
        check_speech(&speech)?;
    }
    if let Some(v) = posted.get("media").filter(|v| !v.is_null()) {
        serde_json::from_value::<LessonMedia>(v.clone())
            .map_err(|e| ApiError::invalid("media", e.to_string()))?;
    }
    Ok(())
}

fn check_speech(sp: &SpeechActivity) -> Result<(), ApiError> {
    let bad = |why: String| ApiError::invalid("speech", why);
    if sp.duration_ms == 0 || sp.duration_ms > MAX_TIMELINE_MS {
        return Err(bad("duration_ms must be 1..=86400000".into()));
    }
    if sp.tracks.len() > 64 {
        return Err(bad("at most 64 tracks".into()));
    }
    let mut segments = 0usize;
    for t in &sp.tracks {
        if !is_source_id(&t.source_id) {
            return Err(bad(format!("bad source_id {:?}", t.source_id)));
        }
        check_text("speech", &t.label, 100, true)?;
        segments += t.segments.len();
        for [from, to] in &t.segments {
            if from >= to || *to > sp.duration_ms {
                return Err(bad(format!(
                    "segment [{from}, {to}] of {} must satisfy from < to <= duration_ms",
                    t.source_id
                )));
            }
        }
    }
    if segments > 100_000 {
        return Err(bad("at most 100000 segments".into()));
    }
    Ok(())
}

/// Checks that the files `media` names are files of the registration (or lie under a
/// registered `hls/` or `thumbs/` directory) and that its numbers make sense.
pub(super) fn check_registration_media(b: &super::recording::NewLesson) -> Result<(), ApiError> {
    let Some(m) = &b.media else {
        return Ok(());
    };
    let names = || b.files.iter().map(|f| f.name.as_str());
    let file = |what: &str, name: &str| -> Result<(), ApiError> {
        if media::check_path(name).is_err() || !media::servable(name, names()) {
            return Err(ApiError::invalid(
                "media",
                format!("{what} {name:?} is not a registered file"),
            ));
        }
        Ok(())
    };
    file("review", &m.review)?;
    if let Some(h) = &m.hls {
        file("hls", h)?;
    }
    if let Some(p) = &m.poster {
        file("poster", p)?;
    }
    if let Some(sb) = &m.storyboard {
        file("storyboard", &sb.file)?;
        if sb.interval_ms == 0
            || sb.columns == 0
            || sb.tile_width == 0
            || sb.tile_height == 0
            || sb.count == 0
        {
            return Err(ApiError::invalid(
                "media",
                "storyboard numbers must be positive",
            ));
        }
    }
    if m.sources.len() > 64 {
        return Err(ApiError::invalid("media", "at most 64 sources"));
    }
    for src in &m.sources {
        if !is_source_id(&src.id) {
            return Err(ApiError::invalid(
                "media",
                format!("bad source id {:?}", src.id),
            ));
        }
        check_text("media", &src.label, 100, true)?;
        file("source", &src.file)?;
        if src.offset_ms.unsigned_abs() > MAX_TIMELINE_MS || src.duration_ms > MAX_TIMELINE_MS {
            return Err(ApiError::invalid(
                "media",
                "offset_ms and duration_ms within a day",
            ));
        }
    }
    Ok(())
}

/// A live lesson's pairing must exist and include the lesson's school.
pub(super) async fn check_pairing(
    s: &AppState,
    pairing_id: &str,
    school: &SchoolRow,
) -> Result<(), ApiError> {
    let bad = || {
        ApiError::invalid(
            "pairing_id",
            "没有这个结对 / no such pairing of this school",
        )
    };
    let p = match s.store.get_pairing(pairing_id).await {
        Ok(p) => p,
        Err(StoreError::NotFound { .. }) => return Err(bad()),
        Err(e) => return Err(e.into()),
    };
    if p.lead_school_id == school.id || p.school_ids.contains(&school.id) {
        Ok(())
    } else {
        Err(bad())
    }
}

// ---------------------------------------------------------------------------------------------
// Scope

/// A lesson the caller may act on, with its school.
pub struct LessonCtx {
    /// The lesson.
    pub lesson: LessonRow,
    /// Its school.
    pub school: SchoolRow,
    /// The accounts assigned to review it.
    pub reviewers: Vec<String>,
}

/// The schools of a lesson's pairing when it is live (lead first), else none.
pub(super) async fn pairing_schools(
    s: &AppState,
    lesson: &LessonRow,
) -> Result<Vec<String>, ApiError> {
    let Some(pid) = lesson
        .pairing_id
        .as_deref()
        .filter(|_| lesson.kind == LessonKind::Live)
    else {
        return Ok(Vec::new());
    };
    match s.store.get_pairing(pid).await {
        Ok(p) => {
            let mut schools = vec![p.lead_school_id];
            schools.extend(p.school_ids);
            Ok(schools)
        }
        Err(StoreError::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// The accounts of a lesson's teacher: the series' teacher, and the teachers of its school
/// whose display name is the lesson's teacher name.
async fn lesson_teachers(s: &AppState, lesson: &LessonRow) -> Result<Vec<String>, ApiError> {
    let mut ids = Vec::new();
    if let Some(sid) = &lesson.series_id {
        match s.store.get_series(sid).await {
            Ok(series) => ids.push(series.teacher_id),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !lesson.teacher.is_empty() {
        ids.extend(
            s.store
                .list_users_in_school(&lesson.school_id)
                .await?
                .into_iter()
                .filter(|u| u.role == Role::Teacher && u.display_name == lesson.teacher)
                .map(|u| u.id),
        );
    }
    Ok(ids)
}

/// Loads lesson `id` for `action`: 404 when missing or when the caller may not read it, 403
/// when it may read it but not do `action`.
pub async fn lesson_for(
    s: &AppState,
    a: &Authed,
    id: &str,
    action: Action,
) -> Result<LessonCtx, ApiError> {
    lesson_in_scope(s, &a.principal, id, action).await
}

/// [`lesson_for`] for a principal: the one place a lesson's [`Resource::Lesson`] is built.
pub(super) async fn lesson_in_scope(
    s: &AppState,
    p: &Principal,
    id: &str,
    action: Action,
) -> Result<LessonCtx, ApiError> {
    let lesson = s.store.find_lesson(id).await?.ok_or(ApiError::NotFound)?;
    let school = s.store.get_school(&lesson.school_id).await?;
    let pairing = pairing_schools(s, &lesson).await?;
    let reviewers: Vec<String> = s
        .store
        .list_review_assignments(&lesson.id)
        .await?
        .into_iter()
        .map(|r| r.reviewer_id)
        .collect();
    let teachers = if action == Action::Create {
        lesson_teachers(s, &lesson).await?
    } else {
        Vec::new()
    };
    let resource = Resource::Lesson {
        school: &school.id,
        district: &school.district_id,
        pairing_schools: &pairing,
        reviewers: &reviewers,
        teachers: &teachers,
        published: lesson.published,
    };
    if authorize(p, Action::Read, &resource).is_err() {
        return Err(ApiError::NotFound);
    }
    authorize(p, action, &resource)?;
    Ok(LessonCtx {
        lesson,
        school,
        reviewers,
    })
}

/// What deciding read access over a listing needs, loaded once: the district's pairings and
/// the caller's assignments.
pub(super) struct ScopeData {
    pairings: HashMap<String, Vec<String>>,
    assigned: HashSet<String>,
}

impl ScopeData {
    /// Loads the pairings of `district` and the lessons assigned to the caller.
    pub(super) async fn load(s: &AppState, a: &Authed, district: &str) -> Result<Self, ApiError> {
        let pairings = s
            .store
            .list_pairings(district)
            .await?
            .into_iter()
            .map(|p| {
                let mut schools = vec![p.lead_school_id];
                schools.extend(p.school_ids);
                (p.id, schools)
            })
            .collect();
        let assigned = s
            .store
            .list_assigned_lessons(&a.principal.id)
            .await?
            .into_iter()
            .collect();
        Ok(ScopeData { pairings, assigned })
    }

    /// Whether the caller may read `lesson` (of a school in `district`).
    pub(super) fn may_read(&self, a: &Authed, lesson: &LessonRow, district: &str) -> bool {
        let none = Vec::new();
        let pairing = match (&lesson.pairing_id, lesson.kind) {
            (Some(pid), LessonKind::Live) => self.pairings.get(pid).unwrap_or(&none),
            _ => &none,
        };
        let me = [a.principal.id.clone()];
        let reviewers: &[String] = if self.assigned.contains(&lesson.id) {
            &me
        } else {
            &[]
        };
        authorize(
            &a.principal,
            Action::Read,
            &Resource::Lesson {
                school: &lesson.school_id,
                district,
                pairing_schools: pairing,
                reviewers,
                teachers: &[],
                published: lesson.published,
            },
        )
        .is_ok()
    }
}

// ---------------------------------------------------------------------------------------------
// Media

/// The directory of a `file://` archive; 501 for `s3://`.
fn archive_dir(lesson: &LessonRow) -> Result<PathBuf, ApiError> {
    match lesson.archive_uri.strip_prefix("file://") {
        Some(path) => Ok(PathBuf::from(path)),
        None => Err(ApiError::NotImplemented(
            "此课的文件在对象存储上，暂不支持在线播放 / this lesson's files are in object storage (s3://), which the gateway cannot serve yet"
                .into(),
        )),
    }
}

/// Percent-encodes a relative path for a URL, segment by segment.
fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unix(t: DateTime<Utc>) -> u64 {
    t.timestamp().max(0) as u64
}

/// A signed URL of a lesson's file, valid until `exp`.
fn lesson_url(s: &AppState, lesson_id: &str, path: &str, exp: u64) -> String {
    format!(
        "/media/{lesson_id}/{}?{}",
        url_path(path),
        s.media.query(lesson_id, path, exp)
    )
}

/// `{url}`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct UrlView {
    /// A signed URL.
    pub url: String,
}

/// The storyboard as registered, with its signed URL.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct StoryboardView {
    /// As registered.
    #[serde(flatten)]
    pub storyboard: Storyboard,
    /// Its signed URL.
    pub url: String,
}

/// One playable track.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SourceView {
    /// `<participant>/<source>`.
    pub id: String,
    /// For people.
    pub label: String,
    /// Video or audio.
    pub kind: MediaSourceKind,
    /// Signed URL.
    pub url: String,
    /// Where its time 0 lies on the lesson's timeline.
    pub offset_ms: i64,
    /// Its length.
    pub duration_ms: u64,
}

/// `GET /api/lessons/{id}/media` answer.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MediaView {
    /// When the URLs stop working (unix seconds).
    pub expires_at: u64,
    /// The review video (or the first programme file of a room lesson).
    pub review: Option<UrlView>,
    /// The HLS playlist.
    pub hls: Option<UrlView>,
    /// The poster picture.
    pub poster_url: Option<String>,
    /// The storyboard.
    pub storyboard: Option<StoryboardView>,
    /// Per-track files.
    pub sources: Vec<SourceView>,
}

/// How to play a lesson: its registered `media`, or for a lesson registered without one (a
/// recording classroom's), the first programme file, the first HLS playlist and its sources.
fn media_of(lesson: &LessonRow) -> LessonMedia {
    if let Some(m) = lesson
        .metadata
        .get("media")
        .filter(|m| !m.is_null())
        .and_then(|m| serde_json::from_value::<LessonMedia>(m.clone()).ok())
    {
        return m;
    }
    let files: Vec<duet_gateway_proto::LessonFile> = lesson
        .metadata
        .get("files")
        .and_then(|f| serde_json::from_value(f.clone()).ok())
        .unwrap_or_default();
    let first = |k: LessonFileKind, ext: &str| {
        files
            .iter()
            .find(|f| f.kind == k && f.name.ends_with(ext))
            .map(|f| f.name.clone())
    };
    LessonMedia {
        review: first(LessonFileKind::Programme, "").unwrap_or_default(),
        hls: first(LessonFileKind::Hls, ".m3u8"),
        poster: None,
        storyboard: None,
        sources: files
            .iter()
            .filter(|f| f.kind == LessonFileKind::Source)
            .map(|f| duet_gateway_proto::MediaSource {
                id: f.source_id.clone().unwrap_or_else(|| f.name.clone()),
                label: f.source_id.clone().unwrap_or_else(|| f.name.clone()),
                kind: if f.name.ends_with(".m4a") || f.name.ends_with(".opus") {
                    MediaSourceKind::Audio
                } else {
                    MediaSourceKind::Video
                },
                file: f.name.clone(),
                offset_ms: 0,
                duration_ms: (f.duration_s * 1000.0).round().max(0.0) as u64,
            })
            .collect(),
    }
}

/// The names of a lesson's registered files.
fn registered_files(lesson: &LessonRow) -> Vec<String> {
    lesson
        .metadata
        .get("files")
        .and_then(Value::as_array)
        .map(|files| {
            files
                .iter()
                .filter_map(|f| f.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /api/lessons/{id}/media`.
pub async fn lesson_media(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<MediaView>, ApiError> {
    let ctx = lesson_for(&s, &a, &id, Action::Read).await?;
    archive_dir(&ctx.lesson)?;
    let exp = unix(Utc::now()) + s.config.media_url_ttl_secs;
    let m = media_of(&ctx.lesson);
    let url = |path: &str| lesson_url(&s, &id, path, exp);
    Ok(Json(MediaView {
        expires_at: exp,
        review: (!m.review.is_empty()).then(|| UrlView {
            url: url(&m.review),
        }),
        hls: m.hls.as_deref().map(|h| UrlView { url: url(h) }),
        poster_url: m.poster.as_deref().map(url),
        storyboard: m.storyboard.map(|sb| StoryboardView {
            url: url(&sb.file),
            storyboard: sb,
        }),
        sources: m
            .sources
            .into_iter()
            .map(|src| SourceView {
                url: url(&src.file),
                id: src.id,
                label: src.label,
                kind: src.kind,
                offset_ms: src.offset_ms,
                duration_ms: src.duration_ms,
            })
            .collect(),
    }))
}

/// `/media/…` query.
#[derive(Deserialize)]
pub struct MediaQuery {
    /// Expiry, unix seconds.
    pub exp: Option<u64>,
    /// Hex HMAC-SHA256.
    pub sig: Option<String>,
}

/// `GET|HEAD /media/{lesson_id}/{*path}` and `/media/clips/{clip_id}`: a signed file, with
/// byte ranges.
pub async fn serve_media(
    State(s): State<Arc<AppState>>,
    Path((ns, path)): Path<(String, String)>,
    Query(q): Query<MediaQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match media::check_path(&path) {
        Ok(()) => {}
        Err(PathError::Traversal) => {
            return Err(ApiError::BadRequest(
                "路径不允许 `..` / `..` is not allowed".into(),
            ));
        }
        Err(PathError::Malformed) => return Err(ApiError::BadRequest("bad path".into())),
    }
    let (Some(exp), Some(sig)) = (q.exp, q.sig.as_deref()) else {
        return Err(ApiError::Forbidden);
    };
    let now = unix(Utc::now());
    s.media
        .verify(&ns, &path, exp, sig, now)
        .map_err(|e| match e {
            MediaUrlError::Expired => ApiError::Expired,
            _ => ApiError::Forbidden,
        })?;
    let max_age = exp.saturating_sub(now).min(s.config.media_url_ttl_secs);
    if ns == CLIP_NAMESPACE {
        let clip = s.store.find_clip(&path).await?.ok_or(ApiError::NotFound)?;
        let file = match (clip.state, &clip.file) {
            (ClipState::Done, Some(f)) => PathBuf::from(f),
            _ => return Err(ApiError::NotFound),
        };
        let mut res = send_file(&file, &headers, "video/mp4", max_age).await?;
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}.mp4\"", clip.id)) {
            res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
        return Ok(res);
    }
    let lesson = s.store.find_lesson(&ns).await?.ok_or(ApiError::NotFound)?;
    let dir = archive_dir(&lesson)?;
    let files = registered_files(&lesson);
    if !media::servable(&path, files.iter().map(String::as_str)) {
        return Err(ApiError::NotFound);
    }
    // Resolve links, and refuse whatever resolves outside the archive directory.
    let root = tokio::fs::canonicalize(&dir)
        .await
        .map_err(|_| ApiError::NotFound)?;
    let full = tokio::fs::canonicalize(dir.join(&path))
        .await
        .map_err(|_| ApiError::NotFound)?;
    if !full.starts_with(&root) {
        return Err(ApiError::NotFound);
    }
    let ctype = media::content_type(&path);
    if path.ends_with(".m3u8") {
        return send_playlist(&s, &full, &ns, &path, exp, max_age).await;
    }
    send_file(&full, &headers, ctype, max_age).await
}

fn cache_control(max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("private, max-age={max_age}"))
        .unwrap_or(HeaderValue::from_static("no-store"))
}

/// An HLS playlist with its relative URIs signed until the same `exp`.
async fn send_playlist(
    s: &AppState,
    full: &std::path::Path,
    ns: &str,
    path: &str,
    exp: u64,
    max_age: u64,
) -> Result<Response, ApiError> {
    let meta = tokio::fs::metadata(full)
        .await
        .map_err(|_| ApiError::NotFound)?;
    if meta.len() > media::MAX_PLAYLIST_BYTES {
        return Err(ApiError::Internal(format!(
            "playlist {} is larger than {} bytes",
            full.display(),
            media::MAX_PLAYLIST_BYTES
        )));
    }
    let text = tokio::fs::read_to_string(full)
        .await
        .map_err(|e| ApiError::Internal(format!("reading {}: {e}", full.display())))?;
    let body = media::sign_playlist(&text, path, ns, &s.media, exp);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.apple.mpegurl"),
            ),
            (header::CACHE_CONTROL, cache_control(max_age)),
        ],
        body,
    )
        .into_response())
}

/// Streams `file` (or the requested range of it) in chunks.
async fn send_file(
    file: &std::path::Path,
    headers: &HeaderMap,
    ctype: &'static str,
    max_age: u64,
) -> Result<Response, ApiError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(file)
        .await
        .map_err(|_| ApiError::NotFound)?;
    let meta = f.metadata().await.map_err(|_| ApiError::NotFound)?;
    if !meta.is_file() {
        return Err(ApiError::NotFound);
    }
    let len = meta.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, count) = match media::parse_range(range, len) {
        RangeAnswer::Full => (StatusCode::OK, 0, len),
        RangeAnswer::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            let mut res = (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response();
            res.headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            return Ok(res);
        }
    };
    if start > 0 {
        f.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::Internal(format!("seeking {}: {e}", file.display())))?;
    }
    const CHUNK: usize = 64 * 1024;
    let stream = futures::stream::unfold(Some(f.take(count)), |reader| async move {
        let mut reader = reader?;
        let mut buf = vec![0u8; CHUNK];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), Some(reader)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut res = Response::new(Body::from_stream(stream));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::CACHE_CONTROL, cache_control(max_age));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// Reviewers, publishing, deleting

/// `PUT /api/lessons/{id}/reviewers` body.
#[derive(Deserialize)]
pub struct ReviewersBody {
    /// The accounts to assign (replacing the current ones).
    pub reviewer_ids: Vec<String>,
}

/// An assigned reviewer.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AssignmentView {
    /// The lesson.
    pub lesson_id: String,
    /// The account.
    pub reviewer_id: String,
    /// Its display name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Who assigned it.
    pub assigned_by: String,
    /// When.
    pub assigned_at: DateTime<Utc>,
}

async fn assignment_views(
    s: &AppState,
    rows: Vec<AssignmentRow>,
) -> Result<Vec<AssignmentView>, ApiError> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let user = s.store.get_user(&r.reviewer_id).await?;
        out.push(AssignmentView {
            lesson_id: r.lesson_id,
            reviewer_id: r.reviewer_id,
            name: user.display_name,
            role: user.role,
            assigned_by: r.assigned_by,
            assigned_at: r.assigned_at,
        });
    }
    Ok(out)
}

/// `PUT /api/lessons/{id}/reviewers`: replaces the assignments → the new ones.
pub async fn put_reviewers(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(b): Json<ReviewersBody>,
) -> Result<Json<Vec<AssignmentView>>, ApiError> {
    let ctx = lesson_for(&s, &a, &id, Action::Update).await?;
    let bad = |why: String| ApiError::invalid("reviewer_ids", why);
    // Bounded before any work on it (a large body must not cost quadratic time).
    if b.reviewer_ids.len() > 4 * MAX_REVIEWERS {
        return Err(bad(format!("at most {MAX_REVIEWERS} reviewers")));
    }
    let mut ids: Vec<String> = Vec::new();
    for rid in &b.reviewer_ids {
        if !ids.contains(rid) {
            ids.push(rid.clone());
        }
    }
    if ids.len() > MAX_REVIEWERS {
        return Err(bad(format!("at most {MAX_REVIEWERS} reviewers")));
    }
    for rid in &ids {
        let user = match s.store.get_user(rid).await {
            Ok(u) => u,
            Err(StoreError::NotFound { .. }) => return Err(bad(format!("no account {rid:?}"))),
            Err(e) => return Err(e.into()),
        };
        let eligible = matches!(
            user.role,
            Role::Reviewer | Role::Teacher | Role::SchoolAdmin
        ) && user.district_id.as_deref() == Some(ctx.school.district_id.as_str())
            && !user.disabled;
        if !eligible {
            return Err(bad(format!(
                "{rid:?} 不是本区的评课人、教师或学校管理员 / is not a reviewer, teacher or school admin of this district"
            )));
        }
    }
    s.store
        .set_review_assignments(&id, &ids, &a.principal.id, Utc::now())
        .await?;
    audit(
        &s,
        &a.principal.id,
        "lesson_reviewers_assigned",
        &format!("lesson:{id}"),
        &ids.join(","),
        &a.ip,
    )
    .await;
    let rows = s.store.list_review_assignments(&id).await?;
    Ok(Json(assignment_views(&s, rows).await?))
}

/// `GET /api/lessons/{id}/reviewers`.
pub async fn get_reviewers(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<Vec<AssignmentView>>, ApiError> {
    lesson_for(&s, &a, &id, Action::Read).await?;
    let rows = s.store.list_review_assignments(&id).await?;
    Ok(Json(assignment_views(&s, rows).await?))
}

async fn set_published(
    s: Arc<AppState>,
    a: Authed,
    id: String,
    published: bool,
) -> Result<Json<LessonView>, ApiError> {
    lesson_for(&s, &a, &id, Action::Update).await?;
    s.store.set_lesson_published(&id, published).await?;
    let action = if published {
        "lesson_published"
    } else {
        "lesson_unpublished"
    };
    audit(
        &s,
        &a.principal.id,
        action,
        &format!("lesson:{id}"),
        "",
        &a.ip,
    )
    .await;
    let listed = s
        .store
        .find_listed_lesson(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(LessonView::from(listed)))
}

/// `POST /api/lessons/{id}/publish`.
pub async fn publish(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<LessonView>, ApiError> {
    set_published(s, a, id, true).await
}

/// `POST /api/lessons/{id}/unpublish`.
pub async fn unpublish(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<LessonView>, ApiError> {
    set_published(s, a, id, false).await
}

/// `DELETE /api/lessons/{id}` → 204. The row goes with everything hanging off it; the rendered
/// clips go, and for a `file://` archive the lesson's directory — only when its last component
/// is the lesson's id (a directory shared with anything else is never removed whole; then only
/// the registered files and the `hls/` and `thumbs/` directories go).
pub async fn delete_lesson(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ctx = lesson_for(&s, &a, &id, Action::Delete).await?;
    let clips = s.store.list_clips(&id).await?;
    s.store.delete_lesson(&id).await?;
    for c in clips.iter().filter_map(|c| c.file.as_ref()) {
        let _ = tokio::fs::remove_file(c).await;
    }
    if let Ok(dir) = archive_dir(&ctx.lesson) {
        remove_archive(&dir, &ctx.lesson).await;
    }
    audit(
        &s,
        &a.principal.id,
        "lesson_deleted",
        &format!("lesson:{id}"),
        &format!("{} {}", ctx.lesson.title, ctx.lesson.archive_uri),
        &a.ip,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_archive(dir: &std::path::Path, lesson: &LessonRow) {
    let own_dir = dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy() == lesson.id.as_str());
    let result = if own_dir {
        tokio::fs::remove_dir_all(dir).await
    } else {
        for f in registered_files(lesson) {
            if media::check_path(&f).is_ok() {
                let _ = tokio::fs::remove_file(dir.join(&f)).await;
            }
        }
        // A shared directory: only the lesson's own registered files go (above); its hls/ and
        // thumbs/ directories only when nothing else is left in them.
        for d in media::SERVABLE_DIRS {
            let _ = tokio::fs::remove_dir(dir.join(d)).await;
        }
        Ok(())
    };
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(lesson = %lesson.id, error = %e, "archive not removed"),
    }
}

// ---------------------------------------------------------------------------------------------
// Clips

/// `POST /api/lessons/{id}/clips` body.
#[derive(Deserialize)]
pub struct ClipRequest {
    /// Start on the lesson's timeline.
    pub start_ms: i64,
    /// End (exclusive).
    pub end_ms: i64,
    /// 课程.
    pub course: String,
    /// 年级.
    pub grade: String,
    /// 教材版本.
    pub edition: String,
    /// 教师.
    pub teacher: String,
    /// 学校.
    pub school: String,
}

/// A clip export as the API shows it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ClipView {
    /// `clp_…`.
    pub id: String,
    /// The lesson.
    pub lesson_id: String,
    /// queued | rendering | done | failed.
    pub state: ClipState,
    /// 0..=1.
    pub progress: f64,
    /// Why it failed.
    pub error: Option<String>,
    /// Signed download URL, when done.
    pub url: Option<String>,
    /// Start.
    pub start_ms: i64,
    /// End.
    pub end_ms: i64,
    /// The title card.
    pub title_card: Value,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
}

fn clip_view(s: &AppState, c: ClipRow) -> ClipView {
    let url = (c.state == ClipState::Done).then(|| {
        let exp = unix(Utc::now()) + s.config.media_url_ttl_secs;
        format!(
            "/media/{CLIP_NAMESPACE}/{}?{}",
            c.id,
            s.media.query(CLIP_NAMESPACE, &c.id, exp)
        )
    });
    ClipView {
        id: c.id,
        lesson_id: c.lesson_id,
        state: c.state,
        progress: c.progress,
        error: c.error,
        url,
        start_ms: c.start_ms,
        end_ms: c.end_ms,
        title_card: c.title_card,
        created_at: c.created_at,
    }
}

/// The file a clip is cut from: the review video, else the first programme file.
fn clip_input(lesson: &LessonRow) -> Option<String> {
    let m = media_of(lesson);
    (!m.review.is_empty()).then_some(m.review)
}

/// `POST /api/lessons/{id}/clips` → 202 with the queued clip.
pub async fn create_clip(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(b): Json<ClipRequest>,
) -> Result<Response, ApiError> {
    let ctx = lesson_for(&s, &a, &id, Action::Create).await?;
    let lesson = &ctx.lesson;
    let duration = (lesson.ended_at - lesson.started_at).num_milliseconds();
    if b.start_ms < 0 || b.start_ms >= duration {
        return Err(ApiError::invalid(
            "start_ms",
            format!("必须在课内 / must lie in the lesson: 0..{duration}"),
        ));
    }
    if b.end_ms <= b.start_ms || b.end_ms > duration {
        return Err(ApiError::invalid(
            "end_ms",
            format!(
                "必须在开始之后、课内 / must follow start_ms and lie in the lesson (..={duration})"
            ),
        ));
    }
    let len = b.end_ms - b.start_ms;
    if !(MIN_CLIP_MS..=MAX_CLIP_MS).contains(&len) {
        return Err(ApiError::invalid(
            "end_ms",
            "片段长度 1 秒到 60 分钟 / a clip lasts 1 s to 60 min",
        ));
    }
    let title = TitleCard {
        course: check_name("course", &b.course)?,
        grade: check_name("grade", &b.grade)?,
        edition: check_name("edition", &b.edition)?,
        teacher: check_name("teacher", &b.teacher)?,
        school: check_name("school", &b.school)?,
    };
    let renderer = s.clip_renderer().cloned().ok_or_else(|| {
        ApiError::Unavailable("没有配置片段渲染 / no clip renderer is configured".into())
    })?;
    let dir = archive_dir(lesson)?;
    let input = clip_input(lesson).ok_or_else(|| {
        ApiError::Conflict("这节课没有可剪辑的视频 / this lesson has no video to cut".into())
    })?;
    let clips_dir = s.config.clips_path();
    tokio::fs::create_dir_all(&clips_dir)
        .await
        .map_err(|e| ApiError::Internal(format!("creating {}: {e}", clips_dir.display())))?;
    let now = Utc::now();
    let clip_id = new_id("clp");
    let output = clips_dir.join(format!("{clip_id}.mp4"));
    let row = ClipRow {
        id: clip_id.clone(),
        lesson_id: id.clone(),
        requested_by: a.principal.id.clone(),
        start_ms: b.start_ms,
        end_ms: b.end_ms,
        title_card: serde_json::to_value(&title).map_err(|e| ApiError::Internal(e.to_string()))?,
        state: ClipState::Queued,
        progress: 0.0,
        error: None,
        file: None,
        created_at: now,
        updated_at: now,
    };
    s.store.insert_clip(&row).await?;
    audit(
        &s,
        &a.principal.id,
        "clip_requested",
        &format!("lesson:{id}"),
        &format!("{clip_id} {}..{} ms", b.start_ms, b.end_ms),
        &a.ip,
    )
    .await;
    crate::clips::spawn_render(
        s.store.clone(),
        renderer,
        clip_id,
        ClipJob {
            input: dir.join(&input),
            start_ms: b.start_ms as u64,
            end_ms: b.end_ms as u64,
            title,
            output,
        },
    );
    Ok((StatusCode::ACCEPTED, Json(clip_view(&s, row))).into_response())
}

/// `GET /api/clips/{id}`.
pub async fn get_clip(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<ClipView>, ApiError> {
    let clip = s.store.find_clip(&id).await?.ok_or(ApiError::NotFound)?;
    lesson_for(&s, &a, &clip.lesson_id, Action::Read).await?;
    Ok(Json(clip_view(&s, clip)))
}

/// `GET /api/lessons/{id}/clips`, newest first.
pub async fn list_clips(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<Vec<ClipView>>, ApiError> {
    lesson_for(&s, &a, &id, Action::Read).await?;
    let clips = s.store.list_clips(&id).await?;
    Ok(Json(clips.into_iter().map(|c| clip_view(&s, c)).collect()))
}

// ---------------------------------------------------------------------------------------------
// Live sessions

/// One live room open now, with what a recorder needs to join it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct LiveSession {
    /// `<series_id>-<YYYY-MM-DD>`.
    pub room: String,
    /// The series.
    pub series_id: String,
    /// The school-local date.
    pub date: NaiveDate,
    /// Subject and lead classroom.
    pub title: String,
    /// The teacher's name.
    pub teacher: String,
    /// The subject's name.
    pub subject: String,
    /// 主讲课堂.
    pub lead_classroom_id: String,
    /// Its school.
    pub school_id: String,
    /// The series' pairing.
    pub pairing_id: Option<String>,
    /// The earliest join of those present.
    pub opened_at: DateTime<Utc>,
    /// A join token for the room, role `recorder`.
    pub token: String,
    /// Its expiry, unix seconds.
    pub expires_at: u64,
}

/// `GET /api/live/sessions`: machine tokens (their scope) and district admins.
pub async fn live_sessions(
    State(s): State<Arc<AppState>>,
    a: Authed,
) -> Result<Json<Vec<LiveSession>>, ApiError> {
    if !matches!(
        a.principal.role,
        AccountRole::Machine | AccountRole::DistrictAdmin
    ) {
        return Err(ApiError::Forbidden);
    }
    let district = a.principal.district.clone().ok_or(ApiError::Forbidden)?;
    let now = Utc::now();
    let today = now.with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    let since = today.pred_opt().unwrap_or(today);
    let mut out = Vec::new();
    for open in s.store.list_open_rooms(since).await? {
        let series = match s.store.get_series(&open.series_id).await {
            Ok(x) => x,
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let lead = s.store.get_classroom(&series.lead_classroom_id).await?;
        let school = s.store.get_school(&lead.school_id).await?;
        if school.district_id != district {
            continue;
        }
        let mut schools = vec![lead.school_id.clone()];
        let mut classrooms = vec![lead.id.clone()];
        for r in &series.receiver_ids {
            let room = s.store.get_classroom(r).await?;
            if !schools.contains(&room.school_id) {
                schools.push(room.school_id.clone());
            }
            classrooms.push(room.id);
        }
        let class = Resource::Class {
            district: &district,
            schools: &schools,
            classrooms: &classrooms,
            lead_classroom: &lead.id,
            teacher: &series.teacher_id,
        };
        // A school's machine records only its own school's classes (a receiving school's
        // machine must not receive another school's class unseen).
        if a.principal.role == AccountRole::Machine
            && a.principal
                .school
                .as_ref()
                .is_some_and(|s| *s != lead.school_id)
        {
            continue;
        }
        if authorize(&a.principal, Action::Read, &class).is_err() {
            continue;
        }
        let subject = s.store.get_subject(&series.subject_id).await?.name;
        let teacher = match s.store.get_user(&series.teacher_id).await {
            Ok(u) => u.display_name,
            Err(StoreError::NotFound { .. }) => String::new(),
            Err(e) => return Err(e.into()),
        };
        let room = format!("{}-{}", open.series_id, open.date);
        let exp = now + chrono::Duration::seconds(RECORDER_TOKEN_SECS);
        let claims = super::timetable::join_claims(
            &room,
            "recorder".into(),
            "录播 / recorder",
            duet_sfu_proto::Role::Recorder,
            now,
            exp,
        );
        out.push(LiveSession {
            token: s.key.sign(&claims),
            expires_at: claims.exp,
            title: format!("{subject} · {}", lead.name),
            room,
            series_id: open.series_id,
            date: open.date,
            teacher,
            subject,
            lead_classroom_id: lead.id,
            school_id: school.id,
            pairing_id: series.pairing_id,
            opened_at: open.opened_at,
        });
    }
    Ok(Json(out))
}
