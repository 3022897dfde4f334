//! Duet's recorder: recording classrooms (录播教室) and recorded live classes.
//!
//! This milestone holds only the recording state machine that the recorder reports to the
//! gateway and shows per room; capture (GStreamer), the auto-director, the timetable follower and
//! delivery arrive with the recording-classroom milestone.
//!
//! # Layout
//! - [`state`]: [`RecordingState`] and its allowed transitions.

pub mod state;

pub use state::{RecordingState, TransitionError};
