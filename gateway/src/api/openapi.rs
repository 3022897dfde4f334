//! The route table, the router built from the same handlers, and the OpenAPI document generated
//! from the table (`GET /api/openapi.json`). A test checks that every route in the table answers
//! (is routed) so the document cannot list an endpoint that does not exist.

use super::{district, org, recording, review, session, timetable};
use crate::app::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post, put};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// One endpoint: method, path (axum syntax), summary, who may call it.
pub struct Endpoint {
    /// HTTP method.
    pub method: &'static str,
    /// Path with `{param}` segments.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Who may call it.
    pub who: &'static str,
}

macro_rules! ep {
    ($m:literal, $p:literal, $s:literal, $w:literal) => {
        Endpoint {
            method: $m,
            path: $p,
            summary: $s,
            who: $w,
        }
    };
}

/// Every API endpoint.
pub const ENDPOINTS: &[Endpoint] = &[
    ep!(
        "post",
        "/api/login",
        "Log in; sets the session cookie and returns the CSRF token",
        "anyone"
    ),
    ep!("post", "/api/logout", "Log out", "logged in"),
    ep!(
        "get",
        "/api/me",
        "The caller and its CSRF token",
        "logged in"
    ),
    ep!("get", "/api/schools", "Schools in scope", "logged in"),
    ep!(
        "post",
        "/api/schools",
        "Register a school",
        "district admin"
    ),
    ep!(
        "patch",
        "/api/schools/{id}",
        "Change a school",
        "district admin, its school admin"
    ),
    ep!(
        "get",
        "/api/schools/{id}/classrooms",
        "Classrooms of a school",
        "in scope"
    ),
    ep!(
        "post",
        "/api/schools/{id}/classrooms",
        "Register a classroom with its devices",
        "school or district admin"
    ),
    ep!(
        "patch",
        "/api/classrooms/{id}",
        "Change a classroom or its devices",
        "school or district admin"
    ),
    ep!(
        "delete",
        "/api/classrooms/{id}",
        "Remove a classroom",
        "school or district admin"
    ),
    ep!(
        "get",
        "/api/schools/{id}/bells",
        "A school's bell schedule",
        "in scope"
    ),
    ep!(
        "put",
        "/api/schools/{id}/bells",
        "Replace a school's bell schedule",
        "school or district admin"
    ),
    ep!("get", "/api/users", "Accounts in scope", "admins"),
    ep!("post", "/api/users", "Create an account", "admins"),
    ep!(
        "patch",
        "/api/users/{id}",
        "Change an account (role, disabled, password)",
        "admins"
    ),
    ep!(
        "post",
        "/api/tokens",
        "Issue a machine API token (shown once)",
        "admins"
    ),
    ep!(
        "get",
        "/api/subjects",
        "The district's subjects",
        "district"
    ),
    ep!("post", "/api/subjects", "Add a subject", "district admin"),
    ep!(
        "get",
        "/api/terms",
        "Terms with holidays and make-up days",
        "district"
    ),
    ep!("post", "/api/terms", "Create a term", "district admin"),
    ep!(
        "get",
        "/api/pairings",
        "Pairings in scope",
        "district, school admins"
    ),
    ep!(
        "post",
        "/api/pairings",
        "Pair a lead school with receiving schools",
        "district admin"
    ),
    ep!(
        "get",
        "/api/series",
        "Weekly series of a term (term_id)",
        "in scope"
    ),
    ep!(
        "post",
        "/api/series",
        "Create a weekly series (Idempotency-Key); 409 with the explanation on a clash",
        "district admin"
    ),
    ep!(
        "post",
        "/api/series/{id}/exceptions",
        "Cancel or move one lesson",
        "district admin"
    ),
    ep!(
        "get",
        "/api/timetable",
        "Lessons and conflicts between from and to",
        "in scope"
    ),
    ep!(
        "get",
        "/api/now",
        "Current and next lesson of the caller (or a classroom/teacher)",
        "logged in"
    ),
    ep!(
        "get",
        "/api/classrooms/{id}/calendar.ics",
        "iCal feed of a classroom, with ETag",
        "in scope, or a machine token"
    ),
    ep!(
        "post",
        "/api/join",
        "A join token for the caller's role in a lesson",
        "its teacher, classrooms, admins"
    ),
    ep!(
        "get",
        "/api/attendance",
        "Who joined a lesson and when",
        "in scope"
    ),
    ep!(
        "put",
        "/api/classrooms/{id}/recorder-status",
        "Report a recording classroom's recorder state (JSON object with `state`, at most 64 KiB)",
        "its machine token, district admin"
    ),
    ep!(
        "get",
        "/api/classrooms/{id}/recorder-status",
        "The recorder's last report, when it came, and whether it is online (within 30 s)",
        "in scope: district admin, school admin, teachers of the school"
    ),
    ep!(
        "post",
        "/api/classrooms/{id}/recording",
        "Start, stop or extend recording now (forwarded to the recorder)",
        "district admin, school admin, teachers of the school"
    ),
    ep!(
        "get",
        "/api/classrooms/{id}/preview/{source_id}",
        "Latest JPEG preview of a source (`programme` for the programme)",
        "in scope: district admin, school admin, teachers of the school"
    ),
    ep!(
        "post",
        "/api/classrooms/{id}/director-events",
        "Inject an auto-director event (forwarded to the recorder)",
        "district admin, school admin, teachers of the school"
    ),
    ep!(
        "post",
        "/api/lessons",
        "Register a recorded lesson; idempotent by id (201, then 200 for the same content, 409 for different content)",
        "the classroom's machine token, district admin"
    ),
    ep!(
        "get",
        "/api/lessons",
        "Recorded lessons in scope, newest first, with review count and final score (school_id, classroom_id, teacher, subject, pairing_id, kind, q, from, to)",
        "in scope: district admin; school admin and teachers (own school, live lessons of their pairings); assigned reviewers; machine tokens"
    ),
    ep!(
        "get",
        "/api/lessons/{id}",
        "One recorded lesson",
        "in scope"
    ),
    ep!(
        "delete",
        "/api/lessons/{id}",
        "Delete a lesson with its reviews, comments, clips and (file:// archives) its files",
        "its school admin, district admin"
    ),
    ep!(
        "get",
        "/api/lessons/{id}/media",
        "Signed URLs of the lesson's review video, HLS, poster, storyboard and tracks",
        "in scope"
    ),
    ep!(
        "get",
        "/api/lessons/{id}/reviewers",
        "Accounts assigned to review the lesson",
        "in scope"
    ),
    ep!(
        "put",
        "/api/lessons/{id}/reviewers",
        "Replace the assigned reviewers (reviewer, teacher or school admin accounts of the district)",
        "its school admin, district admin"
    ),
    ep!(
        "post",
        "/api/lessons/{id}/publish",
        "Publish the lesson",
        "its school admin, district admin"
    ),
    ep!(
        "post",
        "/api/lessons/{id}/unpublish",
        "Hide the lesson from everyone but its school admin and the district",
        "its school admin, district admin"
    ),
    ep!(
        "get",
        "/api/lessons/{id}/clips",
        "Clip exports of the lesson",
        "in scope"
    ),
    ep!(
        "post",
        "/api/lessons/{id}/clips",
        "Export a clip (晒课) with a title card; rendered in the background (202)",
        "the lesson's teacher, its school admin, district admin"
    ),
    ep!(
        "get",
        "/api/clips/{id}",
        "One clip export: state, progress, signed URL when done",
        "in scope of its lesson"
    ),
    ep!(
        "get",
        "/api/live/sessions",
        "Live rooms open now, with a recorder join token each",
        "machine tokens (their scope), district admin"
    ),
    ep!(
        "get",
        "/api/rubrics",
        "The district's rubrics (评价量表), the default first",
        "logged in, in a district"
    ),
    ep!(
        "post",
        "/api/rubrics",
        "Add a rubric: items with weights summing to 100, grade bands",
        "district admin, school admin"
    ),
    ep!(
        "get",
        "/api/lessons/{id}/comments",
        "Time-stamped comments (旁评) of a lesson, by time",
        "whoever may read the lesson"
    ),
    ep!(
        "post",
        "/api/lessons/{id}/comments",
        "Add a comment at a time of the lesson",
        "assigned reviewers, the lesson's school admin, district admin"
    ),
    ep!(
        "delete",
        "/api/lessons/{id}/comments/{cid}",
        "Remove one's own comment",
        "its author"
    ),
    ep!(
        "put",
        "/api/lessons/{id}/my-review",
        "Save the caller's score sheet and overall evaluation (总评), replacing the previous one",
        "assigned reviewers, the lesson's school admin, district admin"
    ),
    ep!(
        "get",
        "/api/lessons/{id}/reviews",
        "Every score sheet, the final mean and band, the rubric",
        "whoever may read the lesson"
    ),
    ep!(
        "get",
        "/api/lessons/{id}/st",
        "S-T analysis: the automatic and the corrected result",
        "whoever may read the lesson"
    ),
    ep!(
        "post",
        "/api/lessons/{id}/st/recompute",
        "Recompute the automatic S-T result at another interval or variant",
        "assigned reviewers, the lesson's school admin, district admin"
    ),
    ep!(
        "put",
        "/api/lessons/{id}/st/corrected",
        "Store a corrected S-T coding beside the automatic one",
        "assigned reviewers, the lesson's school admin, district admin"
    ),
    ep!("get", "/api/openapi.json", "This document", "anyone"),
];

/// The API routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/login", post(session::login))
        .route("/api/logout", post(session::logout))
        .route("/api/me", get(session::get_me))
        .route(
            "/api/schools",
            get(org::list_schools).post(org::create_school),
        )
        .route("/api/schools/{id}", patch(org::update_school))
        .route(
            "/api/schools/{id}/classrooms",
            get(org::list_classrooms).post(org::create_classroom),
        )
        .route(
            "/api/classrooms/{id}",
            patch(org::update_classroom).delete(org::delete_classroom),
        )
        .route(
            "/api/schools/{id}/bells",
            get(org::get_bells).put(org::put_bells),
        )
        .route("/api/users", get(org::list_users).post(org::create_user))
        .route("/api/users/{id}", patch(org::update_user))
        .route("/api/tokens", post(org::create_token))
        .route(
            "/api/subjects",
            get(district::list_subjects).post(district::create_subject),
        )
        .route(
            "/api/terms",
            get(district::list_terms).post(district::create_term),
        )
        .route(
            "/api/pairings",
            get(district::list_pairings).post(district::create_pairing),
        )
        .route(
            "/api/series",
            get(timetable::list_series).post(timetable::create_series),
        )
        .route(
            "/api/series/{id}/exceptions",
            post(timetable::add_exception),
        )
        .route("/api/timetable", get(timetable::timetable))
        .route("/api/now", get(timetable::now))
        .route(
            "/api/classrooms/{id}/calendar.ics",
            get(timetable::calendar),
        )
        .route("/api/join", post(timetable::join))
        .route("/api/attendance", get(timetable::attendance))
        .route(
            "/api/classrooms/{id}/recorder-status",
            put(recording::put_recorder_status)
                .layer(DefaultBodyLimit::max(recording::MAX_STATUS_BYTES))
                .get(recording::get_recorder_status),
        )
        .route("/api/classrooms/{id}/recording", post(recording::command))
        .route(
            "/api/classrooms/{id}/preview/{source_id}",
            get(recording::preview),
        )
        .route(
            "/api/classrooms/{id}/director-events",
            post(recording::director_event),
        )
        .route(
            "/api/lessons",
            get(recording::list_lessons).post(recording::register_lesson),
        )
        .route("/api/lessons/{id}", get(recording::get_lesson))
        .merge(super::archive::routes())
        .route(
            "/api/rubrics",
            get(review::list_rubrics).post(review::create_rubric),
        )
        .route(
            "/api/lessons/{id}/comments",
            get(review::list_comments).post(review::add_comment),
        )
        .route(
            "/api/lessons/{id}/comments/{cid}",
            delete(review::delete_comment),
        )
        .route("/api/lessons/{id}/my-review", put(review::put_my_review))
        .route("/api/lessons/{id}/reviews", get(review::list_reviews))
        .route("/api/lessons/{id}/st", get(review::get_st))
        .route("/api/lessons/{id}/st/recompute", post(review::recompute_st))
        .route(
            "/api/lessons/{id}/st/corrected",
            put(review::put_corrected_st),
        )
        .route(
            "/api/openapi.json",
            get(|| async { axum::Json(document()) }),
        )
}

/// The OpenAPI 3.1 document, generated from [`ENDPOINTS`].
pub fn document() -> Value {
    let mut paths = Map::new();
    for e in ENDPOINTS {
        let entry = paths.entry(e.path.to_string()).or_insert_with(|| json!({}));
        let params: Vec<Value> = e
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        entry[e.method] = json!({
            "summary": e.summary,
            "description": format!("Who: {}.", e.who),
            "parameters": params,
            "responses": {
                "2XX": {"description": "Success"},
                "4XX": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Duet gateway API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "duet_session"},
                "token": {"type": "http", "scheme": "bearer"}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}
                }
            }
        }
    })
}
