//! Recording classrooms in the one binary: the recorder started beside the gateway (`duet up`)
//! or alone (`duet recorder`), the demo's simulated recording room, the machine token the
//! in-process recorder uses, and the gateway's [`RecorderLink`] to the rooms.
//!
//! The recorder talks to the gateway over HTTP even in one process (timetable, status, lesson
//! registration), exactly as a separate recording host would, so both deployments run the same
//! code; only manual control, previews and director events take the in-process [`RecorderLink`].

use std::path::PathBuf;
use std::sync::Arc;

use duet_gateway::AppState;
use duet_gateway::recorder_link::{RecorderLink, RecorderLinkError, RecordingCommand};
use duet_gateway::store::{ApiTokenRow, Role, Store, StoreError, new_id};
use duet_hardware::rtsp_sim::{RtspCameraSim, RtspSimConfig};
use duet_recorder::room::{RoomCommand, RoomError};
use duet_recorder::service::{Recorder, RecorderConfig, RecorderError};

/// The name of the token `duet up` issues to its own recorder (older ones are revoked).
const IN_PROCESS_TOKEN: &str = "duet up 录播主机 (in-process recorder)";

/// The demo's simulated recording room: one RTSP camera simulator per demo device with a port
/// of its own (the microphone rides on the teacher close-up's stream, which carries audio).
pub fn start_demo_cameras() -> Vec<RtspCameraSim> {
    const PATTERNS: [&str; 5] = ["smpte", "ball", "pinwheel", "spokes", "bar"];
    let mut sims = Vec::new();
    let devices = duet_gateway::demo::SIM_DEVICES
        .iter()
        .filter(|d| d.kind != "microphone");
    for (i, device) in devices.enumerate() {
        let mut config = RtspSimConfig::new(device.port, device.label);
        config.width = 640;
        config.height = 360;
        config.pattern = PATTERNS[i % PATTERNS.len()].into();
        config.audio = duet_gateway::demo::SIM_DEVICES
            .iter()
            .any(|m| m.kind == "microphone" && m.port == device.port);
        match RtspCameraSim::start_with(config) {
            Ok(sim) => sims.push(sim),
            Err(err) => {
                tracing::warn!(device = device.id, %err, "demo camera simulator did not start")
            }
        }
    }
    sims
}

/// Issues a machine token for the in-process recorder, scoped to the school of `classrooms[0]`
/// when they all share one school, else to their district; revokes the tokens earlier starts
/// issued. Returns the secret.
pub async fn issue_recorder_token(
    store: &Store,
    classrooms: &[String],
) -> Result<String, StoreError> {
    let mut schools = Vec::new();
    for id in classrooms {
        let room = store.get_classroom(id).await?;
        if !schools.contains(&room.school_id) {
            schools.push(room.school_id);
        }
    }
    let first_school = schools.first().ok_or_else(|| StoreError::NotFound {
        what: "classroom",
        id: "(none configured)".into(),
    })?;
    let first = store.get_school(first_school).await?;
    let district = first.district_id.clone();
    let creator = store
        .list_users_in_district(&district)
        .await?
        .into_iter()
        .find(|u| matches!(u.role, Role::DistrictAdmin | Role::SchoolAdmin))
        .ok_or_else(|| StoreError::NotFound {
            what: "administrator",
            id: district.clone(),
        })?;
    let school = (schools.len() == 1).then(|| first.id.clone());
    issue_machine_token(store, IN_PROCESS_TOKEN, &district, school, &creator.id).await
}

/// Issues a machine token named `name` for `district` (or one of its schools) on behalf of
/// `creator`, revoking the active tokens of that name earlier starts issued there. Returns the
/// secret. For the services `duet up` runs in its own process.
pub async fn issue_machine_token(
    store: &Store,
    name: &str,
    district: &str,
    school: Option<String>,
    creator: &str,
) -> Result<String, StoreError> {
    for old in store.list_api_tokens_in_district(district).await? {
        if old.name == name && old.is_active() {
            store.revoke_api_token(&old.id, chrono::Utc::now()).await?;
        }
    }
    let token = duet_gateway::auth::secret("duet");
    store
        .insert_api_token(&ApiTokenRow {
            id: new_id("tok"),
            name: name.into(),
            token_hash: duet_gateway::auth::secret_hash(&token),
            district_id: Some(district.to_owned()),
            school_id: school,
            created_by: creator.to_owned(),
            created_at: chrono::Utc::now(),
            revoked_at: None,
        })
        .await?;
    Ok(token)
}

/// Starts the recorder off the async threads (it builds GStreamer pipelines).
pub async fn start_recorder(
    config: RecorderConfig,
    data_dir: PathBuf,
) -> Result<Arc<Recorder>, RecorderError> {
    tokio::task::spawn_blocking(move || Recorder::start(&config, &data_dir).map(Arc::new))
        .await
        .map_err(|e| RecorderError::Config(format!("recorder start panicked: {e}")))?
}

/// Stops the recorder off the async threads (EOS waits).
pub async fn stop_recorder(recorder: Arc<Recorder>) {
    let stopped = tokio::task::spawn_blocking(move || match Arc::try_unwrap(recorder) {
        Ok(recorder) => recorder.stop(),
        Err(_) => tracing::error!("recorder still shared at stop; left to drop"),
    })
    .await;
    if stopped.is_err() {
        tracing::error!("recorder stop panicked");
    }
}

/// The gateway's way to the in-process recorder's rooms.
pub struct InProcessRecorders(pub Arc<Recorder>);

impl InProcessRecorders {
    /// Connects `recorder` to `state` (once).
    pub fn connect(state: &AppState, recorder: Arc<Recorder>) {
        if state
            .set_recorder_link(Arc::new(InProcessRecorders(recorder)))
            .is_err()
        {
            tracing::warn!("a recorder link was already set");
        }
    }

    async fn run(
        &self,
        classroom_id: &str,
        command: RoomCommand,
    ) -> Result<serde_json::Value, RecorderLinkError> {
        let recorder = Arc::clone(&self.0);
        let classroom = classroom_id.to_owned();
        let result = tokio::task::spawn_blocking(move || {
            recorder.room(&classroom).map(|room| room.command(command))
        })
        .await
        .map_err(|_| RecorderLinkError::NoRecorder)?;
        match result {
            None => Err(RecorderLinkError::NoRecorder),
            Some(Ok(status)) => {
                Ok(serde_json::to_value(status).expect("a room status always serializes"))
            }
            Some(Err(RoomError::Gone)) => Err(RecorderLinkError::NoRecorder),
            Some(Err(RoomError::Invalid(why))) => Err(RecorderLinkError::Invalid(why)),
            Some(Err(other)) => Err(RecorderLinkError::Refused(other.to_string())),
        }
    }
}

#[async_trait::async_trait]
impl RecorderLink for InProcessRecorders {
    async fn command(
        &self,
        classroom_id: &str,
        command: RecordingCommand,
    ) -> Result<serde_json::Value, RecorderLinkError> {
        let command = match command {
            RecordingCommand::Start { minutes } => RoomCommand::Start { minutes },
            RecordingCommand::Stop => RoomCommand::Stop,
            RecordingCommand::Extend { minutes } => RoomCommand::Extend { minutes },
        };
        self.run(classroom_id, command).await
    }

    async fn preview(&self, classroom_id: &str, source_id: &str) -> Option<Vec<u8>> {
        self.0.room(classroom_id)?.preview(source_id)
    }

    async fn director_event(
        &self,
        classroom_id: &str,
        event: serde_json::Value,
    ) -> Result<(), RecorderLinkError> {
        let event = serde_json::from_value(event)
            .map_err(|e| RecorderLinkError::Invalid(format!("unknown director event: {e}")))?;
        self.run(classroom_id, RoomCommand::Event(event))
            .await
            .map(|_| ())
    }
}
