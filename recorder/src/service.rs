//! The recorder as a service: one [`RoomHandle`] per recording classroom it serves, and one
//! delivery queue they share. The composition root (`duet up`, `duet recorder`) builds a
//! [`RecorderConfig`] and calls [`Recorder::start`]; the gateway reaches the rooms through
//! [`Recorder::room`].
//!
//! Start-up order matters for crash safety: each room first finalizes (or arranges to resume)
//! the lessons a crash interrupted, and the delivery queue scans for finalized lessons when it
//! starts, so nothing recorded before a restart is left behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::capture::supervisor::SupervisorConfig;
use crate::delivery::{Delivery, DeliveryConfig, DeliveryError, DeliveryHandle};
use crate::director::{DirectorConfig, DirectorError};
use crate::gateway::GatewayClient;
use crate::mixer::MixerConfig;
use crate::room::{RoomConfig, RoomContext, RoomError, RoomHandle};

/// The recorder's configuration (`[recorder]` in `duet.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecorderConfig {
    /// Ids of the recording classrooms (录播教室) this recorder serves. Empty under `duet up` with
    /// the demo: the demo's simulated recording room.
    pub classrooms: Vec<String>,
    /// Under `duet up` with the demo and no `classrooms`: record the demo's simulated recording
    /// room (its cameras are simulated in this process). False leaves it out.
    pub demo_room: bool,
    /// The gateway's base URL (`http://…`). Empty under `duet up`: the gateway in this process.
    pub gateway_url: String,
    /// A machine token of the gateway (`POST /api/tokens`) whose scope covers the classrooms.
    /// Empty under `duet up`: one is issued at start.
    pub gateway_token: String,
    /// A TOML file with the auto-director's rules; empty: the built-in rules, which follow the
    /// schools' practice (see `deploy/director.sample.toml`).
    pub director_file: PathBuf,
    /// How rooms follow the timetable.
    pub room: RoomConfig,
    /// The programme (movie mode).
    pub mixer: MixerConfig,
    /// Where finished lessons go. Its `gateway_url` and `gateway_token` are left empty: they are
    /// the recorder's own.
    pub delivery: DeliveryConfig,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            classrooms: Vec::new(),
            demo_room: true,
            gateway_url: String::new(),
            gateway_token: String::new(),
            director_file: PathBuf::new(),
            room: RoomConfig::default(),
            mixer: MixerConfig::default(),
            delivery: DeliveryConfig::default(),
        }
    }
}

/// Why the recorder could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecorderError {
    /// A value is out of range.
    #[error("recorder configuration: {0}")]
    Config(String),
    /// The director's rules file.
    #[error("director rules {path}: {reason}")]
    Director {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Delivery could not start.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// A room could not start.
    #[error(transparent)]
    Room(#[from] RoomError),
}

impl RecorderConfig {
    /// The director's rules: the file's, or the built-in ones.
    pub fn director(&self) -> Result<DirectorConfig, RecorderError> {
        if self.director_file.as_os_str().is_empty() {
            return Ok(DirectorConfig::default());
        }
        let fail = |reason: String| RecorderError::Director {
            path: self.director_file.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&self.director_file).map_err(|e| fail(e.to_string()))?;
        DirectorConfig::from_toml(&text).map_err(|e: DirectorError| fail(e.to_string()))
    }

    /// Checks the values that do not depend on where the recorder runs.
    pub fn validate(&self) -> Result<(), RecorderError> {
        self.room.validate()?;
        self.mixer
            .validate()
            .map_err(|e| RecorderError::Config(e.to_string()))?;
        self.director()?;
        Ok(())
    }
}

/// A running recorder; see the module doc.
#[derive(Debug)]
pub struct Recorder {
    /// One per classroom, in config order.
    rooms: Vec<RoomHandle>,
    /// Shared by the rooms; stopped after them.
    delivery: Arc<DeliveryHandle>,
}

impl Recorder {
    /// Starts serving `config.classrooms`, keeping recordings under `<data_dir>/recordings` and
    /// caches under `<data_dir>/recorder`. `gateway_url` and `gateway_token` must be set by now.
    /// Blocking.
    pub fn start(config: &RecorderConfig, data_dir: &Path) -> Result<Self, RecorderError> {
        config.validate()?;
        if config.gateway_url.is_empty() || config.gateway_token.is_empty() {
            return Err(RecorderError::Config(
                "recorder.gateway_url and recorder.gateway_token are required".into(),
            ));
        }
        let recordings = data_dir.join("recordings");
        std::fs::create_dir_all(&recordings)
            .map_err(|e| RecorderError::Config(format!("{}: {e}", recordings.display())))?;
        let director = config.director()?;
        let mut delivery = config.delivery.clone().with_data_dir(data_dir);
        delivery.gateway_url = config.gateway_url.clone();
        delivery.gateway_token = config.gateway_token.clone();
        let gateway = GatewayClient::new(&config.gateway_url, &config.gateway_token);

        // Rooms first recover what a crash interrupted (finalized lessons are enqueued), then the
        // queue starts and scans: either way every finalized lesson is delivered.
        let delivery = Arc::new(Delivery::start(delivery, recordings.clone())?);
        let mut rooms = Vec::new();
        for classroom in &config.classrooms {
            let ctx = RoomContext {
                classroom_id: classroom.clone(),
                recordings: recordings.clone(),
                cache_dir: data_dir.join("recorder").join(classroom),
                gateway: gateway.clone(),
                config: config.room.clone(),
                director: director.clone(),
                mixer: config.mixer.clone(),
                supervisor: SupervisorConfig::default(),
            };
            rooms.push(RoomHandle::start(ctx, Arc::clone(&delivery))?);
        }
        tracing::info!(rooms = rooms.len(), "recorder started");
        Ok(Self { rooms, delivery })
    }

    /// The room of `classroom_id`, if this recorder serves it.
    pub fn room(&self, classroom_id: &str) -> Option<&RoomHandle> {
        self.rooms.iter().find(|r| r.classroom_id() == classroom_id)
    }

    /// The delivery queue.
    pub fn delivery(&self) -> &DeliveryHandle {
        &self.delivery
    }

    /// Stops every room (a running part is closed; its lesson resumes at the next start while
    /// due), then delivery. Blocking.
    pub fn stop(self) {
        for room in self.rooms {
            room.stop();
        }
        match Arc::try_unwrap(self.delivery) {
            Ok(delivery) => delivery.stop(),
            Err(_) => tracing::error!("delivery still shared at stop; left to drop"),
        }
    }
}
