//! The JSON API (`/api/...`): authentication extractor, handlers by area, and the route table
//! the OpenAPI document is generated from.
//!
//! - [`auth`]: the [`Authed`] extractor (cookie session with CSRF on changes, or a machine token).
//! - [`session`]: login, logout, me.
//! - [`org`]: schools, classrooms, bells, accounts, machine tokens.
//! - [`district`]: subjects, terms, pairings.
//! - [`timetable`]: series, exceptions, week view with conflicts, now/next, iCal, join, attendance.
//! - [`recording`]: recording classrooms: recorder status, the lesson archive, manual control,
//!   previews and director events.
//! - [`archive`]: the lesson archive beyond registration: scope, signed media, reviewers,
//!   publishing, deleting, clip export, the live rooms a recorder follows.
//! - [`review`]: lesson observation (听评课): rubrics, comments, score sheets, S-T analysis.
//! - [`openapi`]: the route table and `/api/openapi.json`.
//!
//! Every handler describes the resource it touches and asks [`crate::policy::authorize`]; errors
//! become responses only in [`crate::error::ApiError`].

pub mod archive;
pub mod auth;
pub mod district;
pub mod openapi;
pub mod org;
pub mod recording;
pub mod review;
pub mod session;
pub mod timetable;

use crate::app::AppState;
use crate::error::ApiError;
use crate::store::{AuditRow, StoreError, new_id};
use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use std::sync::Arc;

pub use auth::Authed;

/// Longest free-text field accepted (names), in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A JSON body whose rejection is an [`ApiError`] with a readable message.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(r) => Err(ApiError::from(r)),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest(r.body_text())
        }
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound,
            StoreError::Conflict { what } => {
                ApiError::Conflict(format!("{what} 已存在 / {what} already exists"))
            }
            StoreError::ForeignKey { what } => ApiError::Conflict(format!(
                "{what}: 引用的记录不存在或仍被使用 / a referenced record is missing or still in use"
            )),
            StoreError::Invalid { what } => {
                ApiError::invalid("body", format!("{what}: value out of range"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Authorizes `action`, making out-of-scope things look absent: `NotFound` when the caller may
/// neither read the resource nor do `action` (ids elsewhere are not confirmed), `Forbidden` when it
/// may see the resource but not do `action`.
pub fn authorize_visible(
    p: &crate::policy::Principal,
    action: crate::policy::Action,
    r: &crate::policy::Resource<'_>,
) -> Result<(), ApiError> {
    use crate::policy::{Action, authorize};
    if authorize(p, Action::Read, r).is_err() && authorize(p, action, r).is_err() {
        return Err(ApiError::NotFound);
    }
    Ok(authorize(p, action, r)?)
}

/// Checks a display name: trimmed, non-empty, bounded, no control characters.
pub fn check_name(field: &'static str, s: &str) -> Result<String, ApiError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(ApiError::invalid(field, "不能为空 / must not be empty"));
    }
    if t.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(
            field,
            format!("最多 {MAX_NAME_CHARS} 个字符 / at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "含有控制字符 / contains control characters",
        ));
    }
    Ok(t.to_owned())
}

/// Writes an audit entry; a failure to audit is logged, not shown (the action already happened).
pub async fn audit(
    state: &Arc<AppState>,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
    ip: &str,
) {
    let row = AuditRow {
        id: new_id("aud"),
        at: chrono::Utc::now(),
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        detail: detail.into(),
        ip: ip.into(),
    };
    if let Err(e) = state.store.append_audit(&row).await {
        tracing::error!(error = %e, action, "audit entry not written");
    }
}
