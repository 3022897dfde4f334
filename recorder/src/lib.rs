//! Duet's recorder: recording classrooms (录播教室) that record their timetabled lessons by
//! themselves, in both outputs at once, and deliver them to the archive.
//!
//! The media decisions are sans-IO (the director, the due lesson, the state machine); GStreamer
//! and the network sit in thin shells around them, on threads of their own (every GStreamer call
//! blocks). Dependencies point down this list: a room drives lessons, a lesson drives capture and
//! the mixer, delivery reads what lessons leave on disk.
//!
//! # Layout
//! - [`service`]: the recorder as a service: one room per classroom, one delivery queue.
//! - [`room`]: one classroom following its timetable (cached), manual start/stop/extend, the
//!   status reported to the gateway.
//! - [`gateway`]: the gateway's JSON API as the recorder uses it (devices, timetable, status).
//! - [`live`]: live classes (同步课堂) recorded by a hidden webrtc-rs participant, delivered
//!   with a composed review video and speech activity.
//! - [`lesson`]: one lesson's parts: resource mode and movie mode at once, crash recovery.
//! - [`manifest`]: a lesson on disk (`lesson.json`), the contract between lessons and delivery.
//! - [`mixer`]: movie mode (电影模式): the 1080p programme, layouts, the slate, the previews.
//! - [`director`]: the auto-director (导播): a sans-IO rule engine that picks the shot.
//! - [`capture`]: resource mode (资源模式): one source → one crash-safe Matroska file, its
//!   supervisor across drop-outs, reading files back.
//! - [`encoder`]: the H.264 encoder probe (hardware when it works here, x264 otherwise).
//! - [`delivery`]: a finished lesson to the archive: packaged (MP4 with faststart, ffmpeg-next),
//!   stored (local directory or S3), registered with the gateway, by a durable queue.
//! - [`post`]: post-processing after the class: 晒课 clip export (title card + cut, MP4).
//! - [`state`]: [`RecordingState`] and its allowed transitions.
//! - [`analysis`]: speech activity from the audio itself (a sans-IO VAD, its GStreamer shell, test
//!   audio with a known speech pattern).
//! - [`post`]: post-processing of a live class: dumps remuxed to WebM, the composed review video,
//!   poster and storyboard, fMP4 HLS.

pub mod analysis;
pub mod capture;
pub mod delivery;
pub mod director;
pub mod encoder;
pub mod gateway;
pub mod lesson;
pub mod live;
pub mod manifest;
pub mod mixer;
pub mod post;
pub mod room;
pub mod service;
pub mod state;

pub use state::{RecordingState, TransitionError};
