//! [`ApiError`]: every API failure, with a stable code and a message a person understands.
//! Internals are logged, never shown.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Wrong username or password.
    #[error("用户名或密码错误 / wrong username or password")]
    BadCredentials,
    /// The request body is not what the endpoint takes.
    #[error("请求格式错误 / bad request: {0}")]
    BadRequest(String),
    /// Nothing here.
    #[error("not found")]
    NotFound,
}

#[derive(Serialize)]
struct Body {
    code: &'static str,
    message: String,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        (
            status,
            Json(Body {
                code,
                message: self.to_string(),
            }),
        )
            .into_response()
    }
}
