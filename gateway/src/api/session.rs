//! Login, logout and "who am I".
//!
//! Login is rate-limited per account and per address (in memory), locks an account for
//! [`LOCK_MINUTES`] after [`LOCK_AFTER`] consecutive failures, and audits every attempt. A
//! successful login sets an HttpOnly, SameSite=Lax session cookie and returns the CSRF token.

use super::auth::{Authed, SESSION_COOKIE, Via, account_role, client_ip};
use super::{Json, audit};
use crate::app::AppState;
use crate::auth::{password, secret, secret_hash};
use crate::error::ApiError;
use crate::store::{BrowserSessionRow, UserRow};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// Consecutive failures that lock an account.
pub const LOCK_AFTER: i32 = 5;
/// How long a locked account stays locked.
pub const LOCK_MINUTES: i64 = 15;
/// Lifetime of a browser session, hours.
pub const SESSION_HOURS: i64 = 12;

/// `POST /api/login`.
#[derive(Deserialize)]
pub struct LoginRequest {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// The caller as the pages see them.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Me {
    /// Account id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Role token.
    pub role: String,
    /// District.
    pub district_id: Option<String>,
    /// School.
    pub school_id: Option<String>,
    /// Classroom (classroom logins).
    pub classroom_id: Option<String>,
    /// The CSRF token to send as `X-CSRF-Token` on changes.
    pub csrf_token: String,
}

fn me(user: &UserRow, csrf: &str) -> Me {
    Me {
        id: user.id.clone(),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        role: account_role(user.role).as_str().into(),
        district_id: user.district_id.clone(),
        school_id: user.school_id.clone(),
        classroom_id: user.classroom_id.clone(),
        csrf_token: csrf.into(),
    }
}

/// The client address, as an extractor.
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// `POST /api/login`.
pub async fn login(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let username = req.username.trim().to_lowercase();
    if username.is_empty() || username.len() > 64 || req.password.len() > password::MAX_LEN {
        return Err(ApiError::BadCredentials);
    }
    let now = Instant::now();
    {
        let mut limits = state.login_limits.lock().unwrap_or_else(|e| e.into_inner());
        let by_account = limits.0.check(&username, now);
        let by_ip = limits.1.check(&ip, now);
        if let Err(wait) = by_account.and(by_ip) {
            return Err(ApiError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
    }
    let user = state.store.find_user_by_username(&username).await?;
    let fail = |state: &Arc<AppState>| {
        let mut limits = state.login_limits.lock().unwrap_or_else(|e| e.into_inner());
        limits.0.fail(&username, now);
        limits.1.fail(&ip, now);
    };
    let Some(user) = user else {
        // Spend the same effort as a real check, so timing does not reveal which names exist.
        let dummy = DUMMY_HASH
            .get_or_init(|| password::hash("not a password"))
            .clone();
        let _ = password::verify_blocking(req.password.clone(), dummy).await;
        fail(&state);
        audit(
            &state,
            &username,
            "login_failed",
            "user:unknown",
            "no such user",
            &ip,
        )
        .await;
        return Err(ApiError::BadCredentials);
    };
    let utc_now = chrono::Utc::now();
    if user.disabled || user.locked_until.is_some_and(|t| t > utc_now) {
        audit(
            &state,
            &user.id,
            "login_refused",
            &format!("user:{}", user.id),
            "locked or disabled",
            &ip,
        )
        .await;
        return Err(ApiError::Locked);
    }
    if !password::verify_blocking(req.password.clone(), user.password_hash.clone()).await {
        fail(&state);
        let failures = state.store.record_failed_login(&user.id).await?;
        if failures >= LOCK_AFTER {
            state
                .store
                .lock_user(&user.id, utc_now + chrono::Duration::minutes(LOCK_MINUTES))
                .await?;
            audit(
                &state,
                &user.id,
                "account_locked",
                &format!("user:{}", user.id),
                &format!("{failures} failures"),
                &ip,
            )
            .await;
        }
        audit(
            &state,
            &user.id,
            "login_failed",
            &format!("user:{}", user.id),
            "wrong password",
            &ip,
        )
        .await;
        return Err(ApiError::BadCredentials);
    }
    state.store.clear_failed_logins(&user.id).await?;
    state
        .login_limits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .reset(&username);
    let session_secret = secret("ses");
    let csrf = secret("csrf");
    state
        .store
        .insert_session(&BrowserSessionRow {
            id_hash: secret_hash(&session_secret),
            user_id: user.id.clone(),
            csrf_token: csrf.clone(),
            created_at: utc_now,
            expires_at: utc_now + chrono::Duration::hours(SESSION_HOURS),
        })
        .await?;
    audit(
        &state,
        &user.id,
        "login",
        &format!("user:{}", user.id),
        "",
        &ip,
    )
    .await;
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={session_secret}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}{secure}",
        SESSION_HOURS * 3600
    );
    let mut res =
        Json(serde_json::json!({ "user": me(&user, &csrf), "csrf_token": csrf })).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    Ok(res)
}

static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `POST /api/logout`.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    authed: Authed,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(v) = super::auth::cookie(&headers, SESSION_COOKIE) {
        state.store.delete_session(&secret_hash(v)).await?;
    }
    audit(
        &state,
        &authed.principal.id,
        "logout",
        &format!("user:{}", authed.principal.id),
        "",
        &authed.ip,
    )
    .await;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("duet_session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"),
    );
    Ok(res)
}

/// `GET /api/me`.
pub async fn get_me(
    State(state): State<Arc<AppState>>,
    authed: Authed,
) -> Result<Json<Me>, ApiError> {
    let Via::Session { csrf } = &authed.via else {
        return Err(ApiError::Forbidden);
    };
    let user = state.store.get_user(&authed.principal.id).await?;
    Ok(Json(me(&user, csrf)))
}
