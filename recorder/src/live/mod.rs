//! Recording live classes (同步课堂): the recorder joins every paired class as a hidden
//! participant, keeps each track as received, and after the bell delivers one lesson with the
//! per-track files, a composed review video and the speech activity S-T analysis needs.
//!
//! - [`dump`]: the crash-safe per-track RTP dump (append-only; a cut tail is ignored).
//! - [`client`]: the webrtc-rs participant: joins, receives, writes dumps, rejoins after a drop.
//! - [`service`]: which classes are live (asked of the gateway), one client each, the end of a
//!   class, recordings left by a killed recorder.
//! - [`finalize`]: dumps → per-track WebM, speech activity, composed video, HLS, pictures →
//!   archive → gateway.

pub mod client;
pub mod dump;
pub mod finalize;
pub mod service;
