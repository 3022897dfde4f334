//! A simulated ONVIF PTZ camera: real SOAP 1.2 over real HTTP, for tests where no camera is.
//!
//! Owns one camera: a single media profile ([`PROFILE`]), presets in memory, a head whose
//! position follows continuous moves in (real) time, and the camera side of WS-Security. It
//! serves [`SERVICE_PATH`] on `127.0.0.1:<ephemeral>` with axum, and answers as a camera would:
//!
//! | request                                                     | answer (HTTP status)                             |
//! |-------------------------------------------------------------|--------------------------------------------------|
//! | not a well-formed PTZ envelope                              | `env:Sender` / `ter:WellFormed` (400)            |
//! | no token, unknown user, wrong digest, `Created` more than 5 min from the camera's clock, a nonce seen before | `env:Sender` / `ter:NotAuthorized` (400) |
//! | an operation other than the five of [`Operation`](super::soap::Operation) | `env:Receiver` / `ter:ActionNotSupported` (500) |
//! | out-of-range velocity or speed, text XML cannot carry       | `env:Sender` / `ter:InvalidArgVal` (400)         |
//! | a profile other than `profile_1`                            | `env:Sender` / `ter:InvalidArgVal` / `ter:NoProfile` (400) |
//! | an unknown preset token                                     | `env:Sender` / `ter:InvalidArgVal` / `ter:NoToken` (400) |
//! | `SetPreset` with a name another preset has                  | `env:Sender` / `ter:InvalidArgVal` / `ter:PresetExist` (400) |
//! | a new preset beyond 100                                     | `env:Receiver` / `ter:Action` / `ter:TooManyPresets` (500) |
//!
//! # Invariants
//! - Every answer is a SOAP envelope; faults become HTTP responses in one place
//!   (`impl IntoResponse for SimFault`).
//! - The camera's lock is never held across an `.await`.
//! - A fault for failed authentication never says which check failed (the log does).
//!
//! # Driving it
//! `OnvifSim::start(SimConfig::new("admin", "secret")).await?`, point an
//! [`OnvifPtz`](super::OnvifPtz) at [`OnvifSim::addr`] and [`SERVICE_PATH`], watch
//! [`OnvifSim::position`] and [`OnvifSim::moving`]. Dropping the simulator stops it;
//! [`OnvifSim::shutdown`] drains first. [`OnvifSim::set_clock_offset`] skews its clock.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::soap::{self, FaultCode, PtzRequest, RequestBody, UsernameToken};
use super::{Preset, PresetToken, PtzVector};

/// The one media profile the simulated camera has.
pub const PROFILE: &str = "profile_1";
/// Where the simulated camera serves its PTZ service.
pub const SERVICE_PATH: &str = "/onvif/ptz_service";
/// How far `Created` may be from the camera's clock, either way.
const FRESHNESS: TimeDelta = TimeDelta::minutes(5);
/// Most presets the camera stores.
const MAX_PRESETS: usize = 100;
/// Travel per second at velocity 1, in generic-space units (a full pan sweep in 4 s).
const TRAVEL_PER_SECOND: f32 = 0.5;
/// How long [`OnvifSim::shutdown`] lets open connections finish.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// The simulated camera's account.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The user name it accepts.
    pub username: String,
    /// That user's password.
    pub password: String,
}

impl SimConfig {
    /// An account `username` / `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

/// Where the simulated head points, in ONVIF's generic spaces.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SimPosition {
    /// Pan in [-1, 1].
    pub pan: f32,
    /// Tilt in [-1, 1].
    pub tilt: f32,
    /// Zoom in [0, 1].
    pub zoom: f32,
}

/// A running simulated camera. Dropping it stops the server.
pub struct OnvifSim {
    /// Where it listens.
    addr: SocketAddr,
    /// The camera, shared with the HTTP handlers.
    camera: Arc<Mutex<Camera>>,
    /// Starts the graceful shutdown of the server task.
    shutdown: Option<oneshot::Sender<()>>,
    /// The server task; aborted on drop unless [`OnvifSim::shutdown`] already joined it.
    task: Option<JoinHandle<()>>,
}

impl OnvifSim {
    /// Starts a camera with `config`'s account on `127.0.0.1:<ephemeral>`.
    pub async fn start(config: SimConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let camera = Arc::new(Mutex::new(Camera::new(config)));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = router(camera.clone());
        let span = tracing::info_span!("onvif_sim", camera = %addr);
        let task = tokio::spawn(
            async move {
                let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                    // A dropped sender also means stop.
                    let _ = stopped.await;
                });
                if let Err(err) = serve.await {
                    tracing::warn!(%err, "ONVIF simulator failed");
                }
            }
            .instrument(span),
        );
        Ok(Self {
            addr,
            camera,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// Where it listens; the service is at [`SERVICE_PATH`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the head points now.
    pub fn position(&self) -> SimPosition {
        let mut camera = lock(&self.camera);
        camera.settle(Instant::now());
        camera.position
    }

    /// Whether a continuous move is under way on any axis (even with the head at a limit).
    pub fn moving(&self) -> bool {
        lock(&self.camera).velocity != SimPosition::default()
    }

    /// Puts the head at `position`, as someone with the camera's remote would; stops movement.
    pub fn set_position(&self, position: SimPosition) {
        let mut camera = lock(&self.camera);
        camera.settle(Instant::now());
        camera.position = position;
        camera.velocity = SimPosition::default();
    }

    /// Sets the camera's clock to ours plus `offset` (cameras drift; tokens are checked
    /// against the camera's clock).
    pub fn set_clock_offset(&self, offset: TimeDelta) {
        lock(&self.camera).clock_offset = offset;
    }

    /// Stops accepting, lets open connections finish for up to 5 s, then stops.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(DRAIN_DEADLINE, &mut task)
                .await
                .is_err()
        {
            tracing::warn!(camera = %self.addr, "ONVIF simulator did not drain in time");
            task.abort();
        }
    }
}

impl Drop for OnvifSim {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn lock(camera: &Mutex<Camera>) -> MutexGuard<'_, Camera> {
    // A panic while holding the lock would be a bug in the simulator; the state is still
    // consistent enough for a test to report it.
    camera.lock().unwrap_or_else(PoisonError::into_inner)
}

fn router(camera: Arc<Mutex<Camera>>) -> Router {
    Router::new()
        .route(SERVICE_PATH, post(ptz_service))
        .with_state(camera)
}

async fn ptz_service(
    State(camera): State<Arc<Mutex<Camera>>>,
    body: Bytes,
) -> Result<SoapReply, SimFault> {
    let envelope = soap::parse_request(&body)
        .map_err(|err| SimFault::sender(&["WellFormed"], err.to_string()))?;
    let mut camera = lock(&camera);
    let now = Utc::now() + camera.clock_offset;
    if let Err(why) = camera.authenticate(envelope.security.as_ref(), now) {
        tracing::debug!(why, "ONVIF simulator refused a request");
        return Err(SimFault::sender(
            &["NotAuthorized"],
            "Sender not Authorized",
        ));
    }
    let RequestBody::Ptz(request) = envelope.body else {
        return Err(SimFault {
            code: FaultCode::Receiver,
            subcodes: &["ActionNotSupported"],
            reason: "Optional action not implemented".into(),
        });
    };
    camera.handle(request, Instant::now()).map(SoapReply)
}

/// The simulated camera.
struct Camera {
    /// The account it accepts.
    config: SimConfig,
    /// Presets in the order they were made.
    presets: Vec<Preset>,
    /// Number of the last preset made; tokens are `preset_<n>` and never reused.
    last_preset: u32,
    /// Where the head was at `since`.
    position: SimPosition,
    /// Velocity per axis in [-1, 1]; zero when idle.
    velocity: SimPosition,
    /// When `position` was last brought up to date.
    since: Instant,
    /// Nonces accepted within the freshness window, with their `Created`, to refuse replays.
    /// Older ones are dropped: their tokens are refused as stale anyway.
    nonces: HashMap<Vec<u8>, DateTime<Utc>>,
    /// The camera's clock minus ours.
    clock_offset: TimeDelta,
}

impl Camera {
    fn new(config: SimConfig) -> Self {
        Self {
            config,
            presets: Vec::new(),
            last_preset: 0,
            position: SimPosition::default(),
            velocity: SimPosition::default(),
            since: Instant::now(),
            nonces: HashMap::new(),
            clock_offset: TimeDelta::zero(),
        }
    }

    /// Moves the head along its velocity up to `now`, stopping at the limits.
    fn settle(&mut self, now: Instant) {
        let seconds = now.saturating_duration_since(self.since).as_secs_f32();
        self.since = now;
        let step = |at: f32, velocity: f32, lo: f32, hi: f32| {
            (at + velocity * TRAVEL_PER_SECOND * seconds).clamp(lo, hi)
        };
        let (at, v) = (self.position, self.velocity);
        self.position = SimPosition {
            pan: step(at.pan, v.pan, -1.0, 1.0),
            tilt: step(at.tilt, v.tilt, -1.0, 1.0),
            zoom: step(at.zoom, v.zoom, 0.0, 1.0),
        };
    }

    /// Checks user, digest, freshness against the camera's clock `now`, and replay; on
    /// failure says which check failed (for the log only).
    fn authenticate(
        &mut self,
        token: Option<&UsernameToken>,
        now: DateTime<Utc>,
    ) -> Result<(), &'static str> {
        let token = token.ok_or("no UsernameToken")?;
        if token.username != self.config.username {
            return Err("unknown user");
        }
        if token.password_type != soap::PASSWORD_DIGEST_TYPE {
            return Err("password is not a digest");
        }
        let nonce = BASE64
            .decode(&token.nonce)
            .ok()
            .filter(|nonce| !nonce.is_empty())
            .ok_or("missing or bad nonce")?;
        // Not constant-time: this is a test double, not a camera.
        if soap::password_digest(&nonce, &token.created, &self.config.password) != token.password {
            return Err("wrong digest");
        }
        let created = DateTime::parse_from_rfc3339(&token.created)
            .map_err(|_| "bad Created")?
            .with_timezone(&Utc);
        if (now - created).abs() > FRESHNESS {
            return Err("stale Created");
        }
        self.nonces.retain(|_, seen| now - *seen <= FRESHNESS);
        if self.nonces.insert(nonce, created).is_some() {
            return Err("replayed nonce");
        }
        Ok(())
    }

    /// Carries out an authenticated request at `now`; the reply envelope, or a fault.
    fn handle(&mut self, request: PtzRequest, now: Instant) -> Result<String, SimFault> {
        request
            .validate()
            .map_err(|err| SimFault::sender(&["InvalidArgVal"], err.to_string()))?;
        if request.profile().as_str() != PROFILE {
            return Err(SimFault::sender(
                &["InvalidArgVal", "NoProfile"],
                "The requested profile token does not exist",
            ));
        }
        self.settle(now);
        let op = request.operation();
        match request {
            PtzRequest::GetPresets { .. } => Ok(soap::get_presets_response(&self.presets)),
            PtzRequest::GotoPreset { preset, .. } => {
                let target = self.preset(&preset)?.position;
                // Presets made here always carry a full position; keep any axis one lacks.
                if let Some(pt) = target.and_then(|target| target.pan_tilt) {
                    (self.position.pan, self.position.tilt) = (pt.x, pt.y);
                }
                if let Some(zoom) = target.and_then(|target| target.zoom) {
                    self.position.zoom = zoom;
                }
                self.velocity = SimPosition::default();
                Ok(soap::empty_response(op))
            }
            PtzRequest::SetPreset { name, preset, .. } => self
                .set_preset(name, preset)
                .map(|t| soap::set_preset_response(&t)),
            PtzRequest::ContinuousMove { velocity, .. } => {
                if let Some(pt) = velocity.pan_tilt {
                    (self.velocity.pan, self.velocity.tilt) = (pt.x, pt.y);
                }
                if let Some(zoom) = velocity.zoom {
                    self.velocity.zoom = zoom;
                }
                Ok(soap::empty_response(op))
            }
            PtzRequest::Stop { pan_tilt, zoom, .. } => {
                if pan_tilt {
                    (self.velocity.pan, self.velocity.tilt) = (0.0, 0.0);
                }
                if zoom {
                    self.velocity.zoom = 0.0;
                }
                Ok(soap::empty_response(op))
            }
        }
    }

    fn set_preset(
        &mut self,
        name: Option<String>,
        token: Option<PresetToken>,
    ) -> Result<PresetToken, SimFault> {
        if let Some(name) = &name
            && self
                .presets
                .iter()
                .any(|p| p.name.as_ref() == Some(name) && Some(&p.token) != token.as_ref())
        {
            return Err(SimFault::sender(
                &["InvalidArgVal", "PresetExist"],
                "The requested name already exists for another preset",
            ));
        }
        let here = self.position;
        let here = Some(PtzVector::new(here.pan, here.tilt, here.zoom));
        match token {
            Some(token) => {
                let preset = self
                    .presets
                    .iter_mut()
                    .find(|p| p.token == token)
                    .ok_or_else(no_token)?;
                preset.position = here;
                if name.is_some() {
                    preset.name = name;
                }
                Ok(token)
            }
            None if self.presets.len() >= MAX_PRESETS => Err(SimFault {
                code: FaultCode::Receiver,
                subcodes: &["Action", "TooManyPresets"],
                reason: "Maximum number of presets reached".into(),
            }),
            None => {
                self.last_preset += 1;
                let token = PresetToken::new(format!("preset_{}", self.last_preset));
                self.presets.push(Preset {
                    token: token.clone(),
                    name,
                    position: here,
                });
                Ok(token)
            }
        }
    }

    fn preset(&self, token: &PresetToken) -> Result<&Preset, SimFault> {
        self.presets
            .iter()
            .find(|p| &p.token == token)
            .ok_or_else(no_token)
    }
}

fn no_token() -> SimFault {
    SimFault::sender(
        &["InvalidArgVal", "NoToken"],
        "The requested preset token does not exist",
    )
}

/// A successful reply envelope (HTTP 200).
struct SoapReply(String);

impl IntoResponse for SoapReply {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, soap::CONTENT_TYPE)], self.0).into_response()
    }
}

/// A fault as the camera sends it: the one place where failures become HTTP responses.
#[derive(Debug)]
struct SimFault {
    /// Sender (HTTP 400) or receiver (HTTP 500).
    code: FaultCode,
    /// ONVIF error local names, general to specific.
    subcodes: &'static [&'static str],
    /// The reason text.
    reason: String,
}

impl SimFault {
    fn sender(subcodes: &'static [&'static str], reason: impl Into<String>) -> Self {
        Self {
            code: FaultCode::Sender,
            subcodes,
            reason: reason.into(),
        }
    }
}

impl IntoResponse for SimFault {
    fn into_response(self) -> Response {
        let status = match self.code {
            FaultCode::Sender => StatusCode::BAD_REQUEST,
            FaultCode::Receiver => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = soap::fault_envelope(self.code, self.subcodes, &self.reason);
        (status, [(header::CONTENT_TYPE, soap::CONTENT_TYPE)], body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onvif::soap::WsSecurity;
    use crate::onvif::{OnvifError, ProfileToken};
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    fn camera() -> Arc<Mutex<Camera>> {
        Arc::new(Mutex::new(Camera::new(SimConfig::new("admin", "secret"))))
    }

    fn envelope(request: &PtzRequest, nonce: &[u8], created: DateTime<Utc>) -> String {
        request
            .to_envelope(&WsSecurity {
                username: "admin",
                password: "secret",
                nonce,
                created,
            })
            .expect("a valid request")
    }

    fn get_presets() -> PtzRequest {
        PtzRequest::GetPresets {
            profile: ProfileToken::new(PROFILE),
        }
    }

    /// Posts `body` to the router without a socket; the status and, for a fault, the error.
    async fn post(camera: &Arc<Mutex<Camera>>, body: String) -> (StatusCode, Option<OnvifError>) {
        let request = Request::post(SERVICE_PATH)
            .header(header::CONTENT_TYPE, soap::CONTENT_TYPE)
            .body(Body::from(body))
            .expect("a valid request");
        let response = router(camera.clone())
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a small body");
        (status, soap::parse_fault(&bytes))
    }

    fn assert_fault(reply: (StatusCode, Option<OnvifError>), status: StatusCode, subcode: &str) {
        assert_eq!(reply.0, status);
        let err = reply.1.expect("a fault");
        assert!(err.is_fault(subcode), "{err:?}");
    }

    #[tokio::test]
    async fn a_fresh_token_is_accepted_once() {
        let camera = camera();
        let body = envelope(&get_presets(), &[1; 20], Utc::now());
        let (status, fault) = post(&camera, body.clone()).await;
        assert_eq!((status, fault.is_none()), (StatusCode::OK, true));
        assert_fault(
            post(&camera, body).await,
            StatusCode::BAD_REQUEST,
            "NotAuthorized",
        );
    }

    #[tokio::test]
    async fn stale_or_future_tokens_are_not_authorized() {
        let camera = camera();
        for (nonce, skew) in [(2u8, -6), (3, 6)] {
            let created = Utc::now() + TimeDelta::minutes(skew);
            assert_fault(
                post(&camera, envelope(&get_presets(), &[nonce; 20], created)).await,
                StatusCode::BAD_REQUEST,
                "NotAuthorized",
            );
        }
        // Within the window either way is fine.
        let created = Utc::now() - TimeDelta::minutes(4);
        let (status, _) = post(&camera, envelope(&get_presets(), &[4; 20], created)).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_request_without_a_token_is_not_authorized() {
        let camera = camera();
        let body = envelope(&get_presets(), &[5; 20], Utc::now());
        let start = body.find("<env:Header>").expect("has a header");
        let end = body.find("</env:Header>").expect("has a header") + "</env:Header>".len();
        let bare = format!("{}{}", &body[..start], &body[end..]);
        assert_fault(
            post(&camera, bare).await,
            StatusCode::BAD_REQUEST,
            "NotAuthorized",
        );
    }

    #[tokio::test]
    async fn malformed_xml_is_a_sender_fault() {
        let camera = camera();
        let reply = post(&camera, "<env:Envelope><env:Body>".into()).await;
        assert_eq!(reply.0, StatusCode::BAD_REQUEST);
        match reply.1 {
            Some(OnvifError::Fault { code, .. }) => assert_eq!(code, "env:Sender"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn unknown_operations_are_not_supported() {
        let camera = camera();
        let body = envelope(&get_presets(), &[6; 20], Utc::now())
            .replace("tptz:GetPresets>", "tptz:AbsoluteMove>");
        assert_fault(
            post(&camera, body).await,
            StatusCode::INTERNAL_SERVER_ERROR,
            "ActionNotSupported",
        );
    }

    #[tokio::test]
    async fn the_camera_checks_velocities_itself() {
        let camera = camera();
        let request = PtzRequest::ContinuousMove {
            profile: ProfileToken::new(PROFILE),
            velocity: PtzVector::new(0.5, 0.0, 0.0),
        };
        // The digest covers the token, not the body, so a tampered velocity still
        // authenticates and must be refused on its own merits.
        let body = envelope(&request, &[7; 20], Utc::now()).replace(r#"x="0.5""#, r#"x="7""#);
        assert_fault(
            post(&camera, body).await,
            StatusCode::BAD_REQUEST,
            "InvalidArgVal",
        );
        assert_eq!(lock(&camera).velocity, SimPosition::default());
    }

    #[test]
    fn moves_integrate_over_time_and_stop_at_the_limits() {
        let mut camera = Camera::new(SimConfig::new("admin", "secret"));
        let t0 = camera.since;
        camera.velocity = SimPosition {
            pan: 1.0,
            tilt: -0.5,
            zoom: 1.0,
        };
        camera.settle(t0 + Duration::from_secs(1));
        assert_eq!(
            camera.position,
            SimPosition {
                pan: 0.5,
                tilt: -0.25,
                zoom: 0.5
            }
        );
        camera.settle(t0 + Duration::from_secs(60));
        assert_eq!(
            camera.position,
            SimPosition {
                pan: 1.0,
                tilt: -1.0,
                zoom: 1.0
            }
        );
    }
}
