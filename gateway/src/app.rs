//! The gateway's router.

use crate::assets::{ASSETS, INDEX_HTML};
use crate::config::GatewayConfig;
use crate::demo::DemoClass;
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use duet_sfu_proto::{JoinClaims, TokenKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Shared state of the gateway.
pub struct AppState {
    /// Configuration.
    pub config: GatewayConfig,
    /// Key that signs join tokens (shared with the SFU).
    pub key: TokenKey,
    /// The demo class, when enabled.
    pub demo: Option<DemoClass>,
    /// Set once every service of the process is up; `/healthz` answers 503 before.
    pub ready: AtomicBool,
}

/// The gateway's routes.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/assets/{file}", get(asset))
        .route("/api/demo/class", get(demo_class))
        .route("/api/demo/login", post(demo_login))
        .with_state(state)
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    let path = format!("/assets/{file}");
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, ctype, body)) => (
            [
                (header::CONTENT_TYPE, *ctype),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::NotFound.into_response(),
    }
}

async fn demo_class(State(s): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let demo = s.demo.as_ref().ok_or(ApiError::NotFound)?;
    Ok(Json(json!({
        "room": demo.room,
        "title": demo.title,
        "accounts": demo.accounts.iter().map(|a| json!({
            "username": a.username, "display_name": a.display_name, "role": a.role,
        })).collect::<Vec<_>>(),
    })))
}

/// `POST /api/demo/login`.
#[derive(Deserialize)]
pub struct LoginRequest {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A join ticket: the token and where to use it.
#[derive(Serialize, Deserialize, Debug)]
pub struct JoinTicket {
    /// Signed join token.
    pub token: String,
    /// Room id.
    pub room: String,
    /// SFU WebSocket URL; empty means the page's own host.
    pub sfu_url: String,
    /// Who the token is for.
    pub participant: serde_json::Value,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
}

async fn demo_login(
    State(s): State<Arc<AppState>>,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Json<JoinTicket>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if req.username.len() > 64 || req.password.len() > 128 {
        return Err(ApiError::BadCredentials);
    }
    let demo = s.demo.as_ref().ok_or(ApiError::NotFound)?;
    let acct = demo.login(&req.username, &req.password).ok_or_else(|| {
        tracing::info!(username = %req.username.escape_debug(), "failed demo login");
        ApiError::BadCredentials
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = JoinClaims {
        room: demo.room.clone(),
        sub: DemoClass::participant(acct),
        name: acct.display_name.clone(),
        role: acct.role,
        grants: acct.role.default_grants(),
        iat: now,
        exp: now + s.config.join_token_ttl_secs,
    };
    tracing::info!(username = %acct.username, role = %acct.role, "join token issued");
    Ok(Json(JoinTicket {
        token: s.key.sign(&claims),
        room: demo.room.to_string(),
        sfu_url: s.config.sfu_url.clone(),
        participant: json!({ "id": claims.sub, "name": claims.name, "role": claims.role }),
        expires_at: claims.exp,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn state() -> Arc<AppState> {
        Arc::new(AppState {
            config: GatewayConfig::default(),
            key: TokenKey::new(*b"test key for the gateway").unwrap(),
            demo: Some(DemoClass::new()),
            ready: AtomicBool::new(true),
        })
    }

    async fn call(s: &Arc<AppState>, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        let res = app(s.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        (
            status,
            res.into_body().collect().await.unwrap().to_bytes().to_vec(),
        )
    }

    fn login(user: &str, pass: &str) -> Request<Body> {
        Request::post("/api/demo/login")
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"username": user, "password": pass}).to_string(),
            ))
            .unwrap()
    }

    #[tokio::test]
    async fn healthz_waits_for_readiness() {
        let s = state();
        s.ready.store(false, Ordering::Release);
        assert_eq!(
            call(&s, Request::get("/healthz").body(Body::empty()).unwrap())
                .await
                .0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        s.ready.store(true, Ordering::Release);
        assert_eq!(
            call(&s, Request::get("/healthz").body(Body::empty()).unwrap())
                .await
                .0,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn every_asset_is_served_locally_and_the_page_names_no_other_host() {
        let s = state();
        let (status, body) = call(&s, Request::get("/").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let page = String::from_utf8(body).unwrap();
        assert!(
            !page.contains("http://") && !page.contains("https://") && !page.contains("//cdn"),
            "{page}"
        );
        for (path, _, _) in ASSETS {
            let (status, body) = call(&s, Request::get(*path).body(Body::empty()).unwrap()).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(!body.is_empty());
        }
        assert_eq!(
            call(
                &s,
                Request::get("/assets/nope.js").body(Body::empty()).unwrap()
            )
            .await
            .0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn demo_login_mints_a_token_for_exactly_that_account() {
        let s = state();
        let demo = s.demo.as_ref().unwrap();
        let room_a = demo
            .accounts
            .iter()
            .find(|a| a.username == "room-a")
            .unwrap();
        let (status, body) = call(&s, login("room-a", &room_a.password)).await;
        assert_eq!(status, StatusCode::OK);
        let ticket: JoinTicket = serde_json::from_slice(&body).unwrap();
        let claims = s.key.verify(&ticket.token, ticket.expires_at - 1).unwrap();
        assert_eq!(claims.role, duet_sfu_proto::Role::Receiving);
        assert_eq!(claims.sub.as_str(), "room-a");
        assert!(
            !claims
                .grants
                .sources
                .contains(&duet_sfu_proto::Source::Screen)
        );
    }

    #[tokio::test]
    async fn bad_logins_are_refused_with_a_stable_code() {
        let s = state();
        let (status, body) = call(&s, login("room-a", "wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(String::from_utf8_lossy(&body).contains("bad_credentials"));
        let (status, _) = call(&s, login("' OR 1=1 --", "x")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call(&s, login(&"a".repeat(10_000), "x")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let bad = Request::post("/api/demo/login")
            .header("content-type", "application/json")
            .body(Body::from("{not json"))
            .unwrap();
        let (status, body) = call(&s, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&body).contains("bad_request"));
    }
}
