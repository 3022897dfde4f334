//! Starting services. Each `start_*` binds its listener, spawns the server with a shutdown
//! signal, and returns a [`Running`] handle whose `stop` drains and waits.

use crate::config::{ConfigError, DuetConfig};
use duet_gateway::{AppState, app};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why a service did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The SFU refused its configuration.
    #[error(transparent)]
    Sfu(#[from] duet_sfu::SfuError),
    /// The database could not be opened, migrated or seeded.
    #[error("database: {0}")]
    Store(#[from] duet_gateway::store::StoreError),
}

/// A running service (or all of them).
pub struct Running {
    /// The bound HTTP address.
    pub addr: SocketAddr,
    /// The gateway's state, when a gateway runs (for the demo accounts).
    pub gateway: Option<Arc<AppState>>,
    /// The SFU, when one runs.
    pub sfu: Option<Arc<duet_sfu::Sfu>>,
    /// Demo logins with this start's passwords, when the demo is seeded.
    pub demo_logins: Vec<duet_gateway::demo::DemoLogin>,
    /// The in-process recorder, when one runs.
    pub recorder: Option<Arc<duet_recorder::service::Recorder>>,
    /// The demo's simulated recording-room cameras, kept running with the recorder.
    pub cameras: Vec<duet_hardware::rtsp_sim::RtspCameraSim>,
    /// The in-process live-class recorder, when one runs.
    pub live: Option<duet_recorder::live::service::LiveRecorder>,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Drains the SFU's sessions, stops accepting, lets open requests finish, and waits.
    pub async fn stop(self) {
        if let Some(live) = self.live {
            // Leaves the classes; their recordings resume or are delivered at the next start.
            live.stop().await;
        }
        if let Some(recorder) = self.recorder {
            // First, so that the running part gets its EOS while the cameras still stream.
            crate::recording::stop_recorder(recorder).await;
        }
        drop(self.cameras);
        if let Some(sfu) = &self.sfu {
            sfu.shutdown(std::time::Duration::from_secs(5)).await;
        }
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Some(g) = &self.gateway {
            g.store.close().await;
        }
    }

    /// Like [`Running::stop`], returning the address it listened on.
    pub async fn stop_and_address(self) -> SocketAddr {
        let addr = self.addr;
        self.stop().await;
        addr
    }

    /// Waits until the server ends by itself (an error) or forever.
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

async fn bind(addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.into(),
            source,
        })
}

fn serve(
    listener: TcpListener,
    router: axum::Router,
) -> (
    SocketAddr,
    watch::Sender<bool>,
    JoinHandle<std::io::Result<()>>,
) {
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let (tx, mut rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        // Connection info gives handlers the peer address (audit log, per-address login limit).
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        })
        .await
    });
    (addr, tx, task)
}

async fn gateway_state(
    config: &DuetConfig,
) -> Result<(Arc<AppState>, Vec<duet_gateway::demo::DemoLogin>), StartError> {
    let store = config.gateway.store.open(&config.data_dir).await?;
    let demo = if config.gateway.demo {
        duet_gateway::demo::seed(&store, chrono::Utc::now()).await?
    } else {
        Vec::new()
    };
    // Renders of an earlier run died with it.
    match store.fail_unfinished_clips(chrono::Utc::now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            clips = n,
            "clip exports interrupted by the last stop marked failed"
        ),
        Err(e) => tracing::warn!(error = %e, "unfinished clip exports not marked"),
    }
    let mut gateway = config.gateway.clone();
    if gateway.clips_dir.is_empty() {
        gateway.clips_dir = config.data_dir.join("clips").display().to_string();
    }
    let state = Arc::new(AppState::new(gateway, config.token_key()?, store));
    // Clip exports (晒课) render with the recorder's GStreamer pipeline.
    let _ = state.set_clip_renderer(Arc::new(crate::live::GstClipRenderer));
    Ok((state, demo))
}

/// Keeps the SFU's joins and leaves as attendance of the timetabled lesson the room belongs to
/// (rooms are named `<series>-<date>`; other rooms are not timetabled and are skipped).
fn record_attendance(sfu: &duet_sfu::Sfu, state: Arc<AppState>) {
    let mut events = sfu.events();
    tokio::spawn(async move {
        // This SFU just started: nobody is in its rooms, whatever an earlier run left open.
        match state.store.close_open_attendance(chrono::Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(closed = n, "joins left open by an earlier run closed"),
            Err(e) => tracing::warn!(error = %e, "open joins not closed"),
        }
        let mut open: std::collections::HashMap<(String, String), String> =
            std::collections::HashMap::new();
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "attendance fell behind the SFU's events");
                    continue;
                }
                Err(_) => return,
            };
            match event {
                duet_sfu::SfuEvent::Joined {
                    room,
                    participant,
                    role,
                    at,
                } => {
                    // Attendance is of people: Duet's own recorder is not kept.
                    if role.is_hidden() {
                        continue;
                    }
                    let Some((series, date)) =
                        duet_gateway::api::timetable::parse_room(room.as_str())
                    else {
                        continue;
                    };
                    let id = duet_gateway::store::new_id("att");
                    let row = duet_gateway::store::AttendanceRow {
                        id: id.clone(),
                        series_id: series,
                        date,
                        participant: participant.to_string(),
                        role: role.as_str().into(),
                        joined_at: at.into(),
                        left_at: None,
                    };
                    match state.store.record_join(&row).await {
                        Ok(()) => {
                            open.insert((room.to_string(), participant.to_string()), id);
                        }
                        Err(e) => tracing::warn!(error = %e, %room, "attendance not recorded"),
                    }
                }
                duet_sfu::SfuEvent::Left {
                    room,
                    participant,
                    at,
                } => {
                    if let Some(id) = open.remove(&(room.to_string(), participant.to_string()))
                        && let Err(e) = state.store.record_leave(&id, at.into()).await
                    {
                        tracing::warn!(error = %e, %room, "leave not recorded");
                    }
                }
                _ => {}
            }
        }
    });
}

/// `duet up`: gateway and SFU on the gateway's listener, and the recorder of the configured
/// recording classrooms (with the demo: the demo's simulated recording room), in one process.
pub async fn start_up(config: &DuetConfig) -> Result<Running, StartError> {
    config.validate()?;
    let (state, demo_logins) = gateway_state(config).await?;
    let sfu = duet_sfu::Sfu::new(config.sfu.clone(), state.key.clone())?;
    record_attendance(&sfu, state.clone());
    let router = app(state.clone()).merge(duet_sfu::http::router(sfu.clone()));
    let (addr, stop, task) = serve(bind(&config.gateway.listen).await?, router);
    state.ready.store(true, Ordering::Release);
    let (recorder, cameras) = start_in_process_recorder(config, &state, addr).await;
    let live = crate::live::start_in_process(config, &state.store, addr).await;
    Ok(Running {
        addr,
        gateway: Some(state),
        sfu: Some(sfu),
        demo_logins,
        recorder,
        cameras,
        live,
        stop,
        task,
    })
}

/// The recorder under `duet up`: the configured classrooms, or the demo's simulated room, with
/// this gateway and a token issued for it. A recorder that cannot start (no GStreamer plugins,
/// say) is logged and left out: the live classes do not depend on it.
async fn start_in_process_recorder(
    config: &DuetConfig,
    state: &Arc<AppState>,
    addr: SocketAddr,
) -> (
    Option<Arc<duet_recorder::service::Recorder>>,
    Vec<duet_hardware::rtsp_sim::RtspCameraSim>,
) {
    let mut recorder = config.recorder.clone();
    let mut cameras = Vec::new();
    if recorder.classrooms.is_empty() && config.gateway.demo && recorder.demo_room {
        // GStreamer's first init scans its plugins: off the async threads.
        cameras = tokio::task::spawn_blocking(crate::recording::start_demo_cameras)
            .await
            .unwrap_or_default();
        recorder.classrooms = vec![duet_gateway::demo::RECORDING_CLASSROOM.to_owned()];
    }
    if recorder.classrooms.is_empty() {
        return (None, cameras);
    }
    if recorder.gateway_url.is_empty() {
        recorder.gateway_url = format!("http://{}", crate::live::local_address(addr));
    }
    if recorder.gateway_token.is_empty() {
        match crate::recording::issue_recorder_token(&state.store, &recorder.classrooms).await {
            Ok(token) => recorder.gateway_token = token,
            Err(err) => {
                tracing::warn!(%err, "no token for the recorder: recording classrooms not served");
                return (None, cameras);
            }
        }
    }
    match crate::recording::start_recorder(recorder, config.data_dir.clone()).await {
        Ok(running) => {
            crate::recording::InProcessRecorders::connect(state, Arc::clone(&running));
            (Some(running), cameras)
        }
        Err(err) => {
            tracing::warn!(%err, "the recorder did not start: recording classrooms not served");
            (None, cameras)
        }
    }
}

/// `duet gateway`: the gateway alone.
pub async fn start_gateway(config: &DuetConfig) -> Result<Running, StartError> {
    config.validate()?;
    let (state, demo_logins) = gateway_state(config).await?;
    let (addr, stop, task) = serve(bind(&config.gateway.listen).await?, app(state.clone()));
    state.ready.store(true, Ordering::Release);
    Ok(Running {
        addr,
        gateway: Some(state),
        sfu: None,
        demo_logins,
        recorder: None,
        cameras: Vec::new(),
        live: None,
        stop,
        task,
    })
}

/// `duet sfu`: the SFU alone on its own listener.
pub async fn start_sfu(config: &DuetConfig) -> Result<Running, StartError> {
    config.validate()?;
    let sfu = duet_sfu::Sfu::new(config.sfu.clone(), config.token_key()?)?;
    let router = duet_sfu::http::router(sfu.clone())
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    let (addr, stop, task) = serve(bind(&config.sfu.listen).await?, router);
    Ok(Running {
        addr,
        gateway: None,
        sfu: Some(sfu),
        demo_logins: Vec::new(),
        recorder: None,
        cameras: Vec::new(),
        live: None,
        stop,
        task,
    })
}

/// `duet create-district`: a district and its first administrator, for a fresh deployment.
/// Returns the district id and the administrator's generated password.
pub async fn create_district(
    config: &DuetConfig,
    name: &str,
    admin: &str,
) -> Result<(String, String), StartError> {
    use duet_gateway::store::{DistrictRow, Role, UserRow, new_id};
    config.validate()?;
    let name = name.trim();
    let admin = admin.trim().to_lowercase();
    if name.is_empty()
        || admin.is_empty()
        || !admin
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(StartError::Config(crate::config::ConfigError::Invalid(
            "--name must not be empty; --admin takes letters, digits, '.', '-', '_'".into(),
        )));
    }
    let store = config.gateway.store.open(&config.data_dir).await?;
    let district = new_id("dst");
    let password: String = duet_gateway::auth::secret("pw")
        .chars()
        .skip(3)
        .take(14)
        .collect();
    if store.find_user_by_username(&admin).await?.is_some() {
        store.close().await;
        return Err(StartError::Store(
            duet_gateway::store::StoreError::Conflict { what: "username" },
        ));
    }
    store
        .create_district(&DistrictRow {
            id: district.clone(),
            name: name.into(),
        })
        .await?;
    let created = store
        .create_user(&UserRow {
            id: new_id("usr"),
            username: admin,
            display_name: format!("{name} 管理员"),
            password_hash: duet_gateway::auth::password::hash_blocking(password.clone()).await,
            role: Role::DistrictAdmin,
            district_id: Some(district.clone()),
            school_id: None,
            classroom_id: None,
            disabled: false,
            failed_logins: 0,
            locked_until: None,
            created_at: chrono::Utc::now(),
        })
        .await;
    if let Err(e) = created {
        // Leave no district without an administrator behind.
        let _ = store.delete_district(&district).await;
        store.close().await;
        return Err(e.into());
    }
    store.close().await;
    Ok((district, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_district_makes_a_district_with_a_working_admin_and_no_partial_writes() {
        let dir = std::env::temp_dir().join(duet_gateway::store::new_id("duet-create-district"));
        let config = DuetConfig {
            data_dir: dir.clone(),
            ..DuetConfig::default()
        };
        let (district, password) = create_district(&config, "城关区", "Chen").await.unwrap();
        assert!(password.len() >= 12);
        let again = create_district(&config, "另一个区", "chen").await;
        assert!(
            matches!(again, Err(StartError::Store(_))),
            "a taken admin name is refused"
        );
        let store = config.gateway.store.open(&config.data_dir).await.unwrap();
        let districts = store.list_districts().await.unwrap();
        assert_eq!(
            districts.len(),
            1,
            "the refused call left no district behind"
        );
        assert_eq!(districts[0].id, district);
        let admin = store.find_user_by_username("chen").await.unwrap().unwrap();
        assert!(duet_gateway::auth::password::verify(
            &password,
            &admin.password_hash
        ));
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
