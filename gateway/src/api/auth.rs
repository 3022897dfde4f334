//! The [`Authed`] extractor: who is calling, from a browser session cookie or a machine token.
//!
//! - `Authorization: Bearer <token>` → a machine principal scoped to the token's school or
//!   district. No CSRF check: a browser never sends this header by itself.
//! - Cookie `duet_session` → the session's user. A changing request (anything but GET/HEAD/
//!   OPTIONS) must carry `X-CSRF-Token` equal to the session's token (compared in constant time).
//! - Anything else → 401 `unauthenticated`. An expired session is deleted and refused.

use crate::app::AppState;
use crate::auth::{constant_time_eq, secret_hash};
use crate::error::ApiError;
use crate::policy::{AccountRole, Principal};
use crate::store::Role;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use std::sync::Arc;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "duet_session";
/// Header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the caller authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A browser session (its CSRF token).
    Session {
        /// The session's CSRF token.
        csrf: String,
    },
    /// A machine API token.
    Token,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Authed {
    /// Who, with their scope.
    pub principal: Principal,
    /// How.
    pub via: Via,
    /// Display name (users) or token name.
    pub name: String,
    /// The caller's address, for the audit log.
    pub ip: String,
}

/// The account role of a stored user.
pub fn account_role(r: Role) -> AccountRole {
    match r {
        Role::DistrictAdmin => AccountRole::DistrictAdmin,
        Role::SchoolAdmin => AccountRole::SchoolAdmin,
        Role::Teacher => AccountRole::Teacher,
        Role::Classroom => AccountRole::Classroom,
        Role::Reviewer => AccountRole::Reviewer,
    }
}

/// The value of one cookie.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The caller's address as the connection or a trusted proxy reports it.
pub fn client_ip(parts: &Parts) -> String {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "local".into())
}

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let ip = client_ip(parts);
        authenticate(state, &parts.headers, &parts.method, None, ip).await
    }
}

/// Authenticates a request from its headers (and, for feeds that cannot send headers, a machine
/// token from the query string).
pub async fn authenticate(
    state: &Arc<AppState>,
    headers: &axum::http::HeaderMap,
    method: &Method,
    query_token: Option<&str>,
    ip: String,
) -> Result<Authed, ApiError> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthenticated)?;
        return machine(state, token, ip).await;
    }
    if let Some(token) = query_token {
        return machine(state, token, ip).await;
    }
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Err(ApiError::Unauthenticated);
    };
    if value.len() > 200 {
        return Err(ApiError::Unauthenticated);
    }
    let hash = secret_hash(value);
    let session = match state.store.find_session(&hash).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(ApiError::Unauthenticated),
        Err(e) => return Err(e.into()),
    };
    if session.expires_at <= chrono::Utc::now() {
        let _ = state.store.delete_session(&hash).await;
        return Err(ApiError::Unauthenticated);
    }
    let changing = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if changing {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(sent, &session.csrf_token) {
            return Err(ApiError::Csrf);
        }
    }
    let user = state
        .store
        .get_user(&session.user_id)
        .await
        .map_err(|_| ApiError::Unauthenticated)?;
    if user.disabled {
        return Err(ApiError::Unauthenticated);
    }
    Ok(Authed {
        principal: Principal {
            id: user.id,
            role: account_role(user.role),
            district: user.district_id,
            school: user.school_id,
            classroom: user.classroom_id,
        },
        via: Via::Session {
            csrf: session.csrf_token,
        },
        name: user.display_name,
        ip,
    })
}

async fn machine(state: &Arc<AppState>, token: &str, ip: String) -> Result<Authed, ApiError> {
    if token.is_empty() || token.len() > 200 {
        return Err(ApiError::Unauthenticated);
    }
    let row = match state.store.find_api_token(&secret_hash(token)).await {
        Ok(Some(t)) if t.is_active() => t,
        Ok(_) => return Err(ApiError::Unauthenticated),
        Err(e) => return Err(e.into()),
    };
    Ok(Authed {
        principal: Principal {
            id: row.id,
            role: AccountRole::Machine,
            district: row.district_id,
            school: row.school_id,
            classroom: None,
        },
        via: Via::Token,
        name: row.name,
        ip,
    })
}
