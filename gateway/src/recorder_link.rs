//! [`RecorderLink`]: how the gateway reaches the recorders of recording classrooms (录播教室) for
//! what only a running recorder can do — manual start, stop and extend, preview pictures, and
//! auto-director events.
//!
//! The gateway does not know how recorders run (in this process under `duet up`, or elsewhere);
//! the binary that composes the services implements this trait and hands it over once with
//! [`crate::AppState::set_recorder_link`]. Until then (and for a classroom no recorder serves)
//! the endpoints answer 503 `unavailable`. Authorization happens before the link is called: an
//! implementation may assume the caller may control `classroom_id`.
//!
//! Errors map onto the API in [`crate::error::ApiError`]: [`RecorderLinkError::NoRecorder`] →
//! 503 `unavailable`, [`RecorderLinkError::Refused`] → 409 `conflict` (e.g. "already recording"),
//! [`RecorderLinkError::Invalid`] → 422 `invalid`.

use serde::{Deserialize, Serialize};

/// Longest manual recording or extension, in minutes.
pub const MAX_COMMAND_MINUTES: u32 = 240;

/// A manual command for a classroom's recorder; on the wire `{"action": "start", "minutes": 45}`,
/// `{"action": "stop"}`, `{"action": "extend", "minutes": 10}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RecordingCommand {
    /// Start recording now, for `minutes` (the recorder's default when `None`).
    Start {
        /// How long, 1..=[`MAX_COMMAND_MINUTES`].
        #[serde(default)]
        minutes: Option<u32>,
    },
    /// Stop the current recording (it is finalized and delivered as usual).
    Stop,
    /// Record `minutes` longer than planned.
    Extend {
        /// How much longer, 1..=[`MAX_COMMAND_MINUTES`].
        minutes: u32,
    },
}

impl RecordingCommand {
    /// Checks the minutes: `Err` names the problem.
    pub fn validate(&self) -> Result<(), String> {
        let minutes = match *self {
            RecordingCommand::Start { minutes } => minutes,
            RecordingCommand::Extend { minutes } => Some(minutes),
            RecordingCommand::Stop => None,
        };
        match minutes {
            Some(m) if !(1..=MAX_COMMAND_MINUTES).contains(&m) => {
                Err(format!("minutes must be 1..={MAX_COMMAND_MINUTES}"))
            }
            _ => Ok(()),
        }
    }
}

/// Why a recorder could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RecorderLinkError {
    /// No recorder runs for this classroom (or it does not answer).
    #[error("no recorder serves this classroom")]
    NoRecorder,
    /// The recorder refused in its current state (e.g. stop while idle); the message says why.
    #[error("{0}")]
    Refused(String),
    /// The request makes no sense to the recorder (e.g. an unknown director event).
    #[error("{0}")]
    Invalid(String),
}

/// The way to the recorders; implemented by the binary that runs them.
#[async_trait::async_trait]
pub trait RecorderLink: Send + Sync + 'static {
    /// Runs a manual command; the answer is the recorder's own JSON (its new state).
    async fn command(
        &self,
        classroom_id: &str,
        command: RecordingCommand,
    ) -> Result<serde_json::Value, RecorderLinkError>;
    /// Latest JPEG preview of a source ("programme" for the programme), None if there is none.
    async fn preview(&self, classroom_id: &str, source_id: &str) -> Option<Vec<u8>>;
    /// Injects an auto-director event (JSON as the recorder defines it, e.g. {"pupil_stood":null} or "pupil_stood").
    async fn director_event(
        &self,
        classroom_id: &str,
        event: serde_json::Value,
    ) -> Result<(), RecorderLinkError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_have_the_documented_wire_form_and_bounded_minutes() {
        let start: RecordingCommand =
            serde_json::from_str(r#"{"action":"start","minutes":45}"#).expect("parses");
        assert_eq!(start, RecordingCommand::Start { minutes: Some(45) });
        let bare: RecordingCommand =
            serde_json::from_str(r#"{"action":"start"}"#).expect("minutes are optional");
        assert_eq!(bare, RecordingCommand::Start { minutes: None });
        assert_eq!(
            serde_json::to_value(RecordingCommand::Extend { minutes: 10 }).expect("serializes"),
            serde_json::json!({"action": "extend", "minutes": 10})
        );
        assert!(serde_json::from_str::<RecordingCommand>(r#"{"action":"extend"}"#).is_err());
        assert!(serde_json::from_str::<RecordingCommand>(r#"{"action":"pause"}"#).is_err());
        assert!(RecordingCommand::Stop.validate().is_ok());
        assert!(RecordingCommand::Extend { minutes: 240 }.validate().is_ok());
        assert!(RecordingCommand::Extend { minutes: 0 }.validate().is_err());
        assert!(
            RecordingCommand::Start { minutes: Some(241) }
                .validate()
                .is_err()
        );
    }
}
