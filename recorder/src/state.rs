//! The recording state machine: `IDLE → STARTING → RECORDING → FINALIZING → UPLOADING → DONE`,
//! or `FAILED` with a reason from any active state. A failed or finished recording can start
//! again (a new lesson); nothing else moves backwards.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where one room's recording stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RecordingState {
    /// Nothing scheduled now.
    Idle,
    /// Pipelines are being built and sources connected.
    Starting,
    /// Writing files.
    Recording,
    /// End of stream sent; files are being closed.
    Finalizing,
    /// Files closed; delivery to the archive is in progress.
    Uploading,
    /// The archive confirmed the lesson.
    Done,
    /// It went wrong; `reason` says what.
    Failed {
        /// What went wrong, for the admin page.
        reason: String,
    },
}

/// A transition the machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a recording cannot go from {from} to {to}")]
pub struct TransitionError {
    /// The current state's token.
    pub from: &'static str,
    /// The requested state's token.
    pub to: &'static str,
}

impl RecordingState {
    /// Stable upper-case token for logs.
    pub fn token(&self) -> &'static str {
        match self {
            RecordingState::Idle => "IDLE",
            RecordingState::Starting => "STARTING",
            RecordingState::Recording => "RECORDING",
            RecordingState::Finalizing => "FINALIZING",
            RecordingState::Uploading => "UPLOADING",
            RecordingState::Done => "DONE",
            RecordingState::Failed { .. } => "FAILED",
        }
    }

    /// Whether the recording is between start and delivery.
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            RecordingState::Starting
                | RecordingState::Recording
                | RecordingState::Finalizing
                | RecordingState::Uploading
        )
    }

    /// Moves to `next` if the machine allows it.
    pub fn advance(&mut self, next: RecordingState) -> Result<(), TransitionError> {
        use RecordingState::*;
        let ok = match (&*self, &next) {
            (Idle | Done | Failed { .. }, Starting) => true,
            (Starting, Recording)
            | (Recording, Finalizing)
            | (Finalizing, Uploading)
            | (Uploading, Done) => true,
            (s, Failed { .. }) => s.is_active(),
            (Done | Failed { .. }, Idle) => true,
            _ => false,
        };
        if !ok {
            return Err(TransitionError {
                from: self.token(),
                to: next.token(),
            });
        }
        *self = next;
        Ok(())
    }
}

impl fmt::Display for RecordingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordingState::Failed { reason } => write!(f, "FAILED ({reason})"),
            s => f.write_str(s.token()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RecordingState::*;
    use super::*;

    #[test]
    fn a_lesson_goes_through_every_state_in_order() {
        let mut s = Idle;
        for next in [Starting, Recording, Finalizing, Uploading, Done, Starting] {
            s.advance(next).unwrap();
        }
        assert_eq!(s, Starting);
    }

    #[test]
    fn nothing_skips_finalizing_or_moves_backwards() {
        let mut s = Recording;
        assert_eq!(
            s.advance(Uploading),
            Err(TransitionError {
                from: "RECORDING",
                to: "UPLOADING"
            })
        );
        assert_eq!(s.advance(Starting).unwrap_err().to, "STARTING");
        assert_eq!(s, Recording, "a refused transition changes nothing");
    }

    #[test]
    fn failure_carries_a_reason_and_only_interrupts_active_recordings() {
        let mut s = Uploading;
        s.advance(Failed {
            reason: "archive unreachable".into(),
        })
        .unwrap();
        assert_eq!(s.to_string(), "FAILED (archive unreachable)");
        let mut idle = Idle;
        assert!(idle.advance(Failed { reason: "x".into() }).is_err());
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"state":"failed","reason":"archive unreachable"}"#
        );
    }
}
