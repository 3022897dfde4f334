//! The gateway's router and shared state.

use crate::assets::{ASSETS, INDEX_HTML};
use crate::auth::ratelimit::RateLimiter;
use crate::clips::ClipRenderer;
use crate::config::GatewayConfig;
use crate::error::ApiError;
use crate::recorder_link::RecorderLink;
use crate::store::Store;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use duet_sfu_proto::TokenKey;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Failed logins allowed per account in [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_PER_ACCOUNT: usize = 10;
/// Failed logins allowed per address in [`LOGIN_WINDOW`] (a school shares one address).
pub const LOGIN_FAILURES_PER_ADDRESS: usize = 50;
/// The rate-limit window.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Shared state of the gateway.
pub struct AppState {
    /// Configuration.
    pub config: GatewayConfig,
    /// Key that signs join tokens (shared with the SFU).
    pub key: TokenKey,
    /// The database.
    pub store: Store,
    /// Failed-login limiters: per account, per address.
    pub login_limits: Mutex<(RateLimiter, RateLimiter)>,
    /// Serializes timetable writes in this process (check-then-write of conflicts).
    pub timetable_lock: tokio::sync::Mutex<()>,
    /// District timetables loaded for reads, invalidated by every change made through the API.
    pub timetable_cache: crate::api::timetable::TimetableCache,
    /// Set once every service of the process is up; `/healthz` answers 503 before.
    pub ready: AtomicBool,
    /// The way to the recorders (manual control, previews, director events), set once by the
    /// binary that runs them ([`AppState::set_recorder_link`]); unset, those endpoints answer
    /// 503 `unavailable`.
    pub recorder: OnceLock<Arc<dyn RecorderLink>>,
    /// Signs and checks the media URLs of the archive (key derived from `key`).
    pub media: crate::media::MediaSigner,
    /// Renders clip exports (晒课), set once by the binary ([`AppState::set_clip_renderer`]);
    /// unset, clip requests answer 503 `unavailable`.
    pub clip_renderer: OnceLock<Arc<dyn ClipRenderer>>,
}

impl AppState {
    /// State over an open store.
    pub fn new(config: GatewayConfig, key: TokenKey, store: Store) -> Self {
        Self {
            config,
            media: crate::media::MediaSigner::derive(&key),
            key,
            store,
            login_limits: Mutex::new((
                RateLimiter::new(LOGIN_FAILURES_PER_ACCOUNT, LOGIN_WINDOW),
                RateLimiter::new(LOGIN_FAILURES_PER_ADDRESS, LOGIN_WINDOW),
            )),
            timetable_lock: tokio::sync::Mutex::new(()),
            timetable_cache: Default::default(),
            ready: AtomicBool::new(false),
            recorder: OnceLock::new(),
            clip_renderer: OnceLock::new(),
        }
    }

    /// Installs the clip renderer. Set once: a second one is refused and handed back.
    pub fn set_clip_renderer(
        &self,
        renderer: Arc<dyn ClipRenderer>,
    ) -> Result<(), Arc<dyn ClipRenderer>> {
        self.clip_renderer.set(renderer)
    }

    /// The clip renderer, if installed.
    pub fn clip_renderer(&self) -> Option<&Arc<dyn ClipRenderer>> {
        self.clip_renderer.get()
    }

    /// Connects the recorders. Set once: a second link is refused and handed back.
    pub fn set_recorder_link(
        &self,
        link: Arc<dyn RecorderLink>,
    ) -> Result<(), Arc<dyn RecorderLink>> {
        self.recorder.set(link)
    }

    /// The recorders, if connected.
    pub fn recorder_link(&self) -> Option<&Arc<dyn RecorderLink>> {
        self.recorder.get()
    }
}

/// The gateway's routes.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/admin", get(admin))
        .route("/review/{lesson_id}", get(review))
        .route("/healthz", get(healthz))
        .route("/assets/{file}", get(asset))
        .merge(crate::api::openapi::routes())
        .merge(crate::api::archive::media_routes())
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            invalidate_on_write,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// After a successful change through the API, cached timetables are stale (a change to a
/// school, classroom, bell, term, account or series can change what they show).
async fn invalidate_on_write(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let changing = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    ) && may_change_timetable(req.uri().path());
    let res = next.run(req).await;
    if changing && res.status().is_success() {
        s.timetable_cache.invalidate();
    }
    res
}

/// Whether a successful change at `path` may change what a timetable shows. Logging in or out
/// and taking a join token change no timetable data (a join storm must not empty the cache it
/// relies on), and neither do the recorders' frequent reports, lesson registrations and commands.
fn may_change_timetable(path: &str) -> bool {
    let recorder = path.starts_with("/api/classrooms/")
        && (path.ends_with("/recorder-status")
            || path.ends_with("/recording")
            || path.ends_with("/director-events"));
    !recorder
        && !matches!(
            path,
            "/api/login" | "/api/logout" | "/api/join" | "/api/lessons"
        )
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn admin() -> Html<&'static str> {
    Html(crate::assets::ADMIN_HTML)
}

/// The review page; the lesson (and whether the caller may see it) is loaded by the page itself
/// through the API, so the path's id is not looked at here.
async fn review(Path(_lesson_id): Path<String>) -> Html<&'static str> {
    Html(crate::assets::REVIEW_HTML)
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
