//! Duet's recorder: recording classrooms (录播教室) and recorded live classes.
//!
//! This milestone holds only the recording state machine that the recorder reports to the
//! gateway and shows per room; capture (GStreamer), the auto-director, the timetable follower and
//! delivery arrive with the recording-classroom milestone.
//!
//! # Layout
//! - [`state`]: [`RecordingState`] and its allowed transitions.
//! - [`director`]: the auto-director (导播) of movie mode: a sans-IO rule engine that picks the shot.
//! - [`capture`]: resource mode (资源模式): one RTSP source → one crash-safe Matroska file
//!   ([`capture::SourceRecorder`]), and reading a file back ([`capture::probe()`]).
//! - [`delivery`]: a finished lesson to the archive: packaged (MP4 with faststart, ffmpeg-next),
//!   stored (local directory or S3), registered with the gateway, by a durable queue.

pub mod capture;
pub mod delivery;
pub mod director;
pub mod gateway;
pub mod lesson;
pub mod manifest;
pub mod mixer;
pub mod room;
pub mod service;
pub mod state;

pub use state::{RecordingState, TransitionError};
