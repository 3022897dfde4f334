//! [`ApiError`]: every API failure, with a stable code and a message a person understands. This is
//! the one place errors become HTTP responses; internals are logged here, never shown.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Wrong username or password.
    #[error("用户名或密码错误 / wrong username or password")]
    BadCredentials,
    /// No valid session or token.
    #[error("请先登录 / please log in")]
    Unauthenticated,
    /// Too many failed logins; try again later.
    #[error(
        "登录失败次数过多，请 {retry_after_secs} 秒后再试 / too many failed logins, try again in {retry_after_secs} s"
    )]
    RateLimited {
        /// Seconds until the next attempt is allowed.
        retry_after_secs: u64,
    },
    /// The account is locked after repeated failures, or disabled.
    #[error(
        "账号已锁定，请稍后再试或联系管理员 / the account is locked; try later or ask an administrator"
    )]
    Locked,
    /// The principal may not do this.
    #[error("你没有权限执行此操作 / you are not allowed to do this")]
    Forbidden,
    /// A cookie-authenticated change without the right CSRF token.
    #[error(
        "页面已过期，请刷新后重试 / the page is stale (CSRF token missing or wrong); reload and retry"
    )]
    Csrf,
    /// Nothing here (or nothing the principal may see).
    #[error("未找到 / not found")]
    NotFound,
    /// The change clashes with existing data.
    #[error("{0}")]
    Conflict(String),
    /// A field is invalid; the message says which and why.
    #[error("{field}: {message}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The request body is not what the endpoint takes.
    #[error("请求格式错误 / bad request: {0}")]
    BadRequest(String),
    /// The request body is larger than the gateway accepts.
    #[error("请求太大 / the request is too large")]
    TooLarge,
    /// A service the request needs is not there now (e.g. no recorder serves the classroom).
    #[error("{0}")]
    Unavailable(String),
    /// A signed link that was valid once has expired.
    #[error("链接已过期，请刷新页面 / the link expired; reload the page")]
    Expired,
    /// The request needs something this deployment does not do yet.
    #[error("{0}")]
    NotImplemented(String),
    /// Something failed inside; details are in the server log.
    #[error("服务器内部错误 / internal error")]
    Internal(String),
}

#[derive(Serialize)]
struct Body {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

impl ApiError {
    /// The HTTP status and the stable code.
    pub fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Locked => (StatusCode::LOCKED, "account_locked"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Csrf => (StatusCode::FORBIDDEN, "csrf"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Expired => (StatusCode::FORBIDDEN, "expired"),
            ApiError::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "not_implemented"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// An invalid field.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let field = match &self {
            ApiError::Invalid { field, .. } => Some(*field),
            _ => None,
        };
        let mut res = (
            status,
            Json(Body {
                code,
                message: self.to_string(),
                field,
            }),
        )
            .into_response();
        if let ApiError::RateLimited { retry_after_secs } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

impl From<crate::recorder_link::RecorderLinkError> for ApiError {
    fn from(e: crate::recorder_link::RecorderLinkError) -> Self {
        use crate::recorder_link::RecorderLinkError as E;
        match e {
            E::NoRecorder => ApiError::Unavailable(
                "这间教室的录播主机未连接 / no recorder serves this classroom".into(),
            ),
            E::Refused(why) => ApiError::Conflict(why),
            E::Invalid(why) => ApiError::invalid("body", why),
        }
    }
}

impl From<crate::policy::Denied> for ApiError {
    fn from(_: crate::policy::Denied) -> Self {
        ApiError::Forbidden
    }
}
