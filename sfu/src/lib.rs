//! Duet's SFU: relays a live paired class (同步课堂) between a lead classroom, its receiving
//! classrooms, observers and the recorder.
//!
//! # Layout
//! - [`core`]: the sans-IO forwarding core (rooms, tracks, subscriptions, rewriting, PLI/NACK
//!   policy, active speaker). Knows nothing of sockets, webrtc-rs or clocks.
//! - [`shell`]: the webrtc-rs I/O shell: codecs and interceptors, live rooms around the core.
//! - [`session`]: one participant's signalling actor and its two peer connections.
//! - [`http`]: `GET /sfu/ws` and `GET /metrics`; [`metrics`] renders the latter.
//! - [`sfu`]: the service object, [`config`] its configuration.
//!
//! Dependencies point down: `http` → `session` → `shell` → `core`; the core imports nothing above it.

pub mod config;
pub mod core;
pub mod http;
pub mod metrics;
pub mod session;
pub mod sfu;
pub mod shell;

pub use config::SfuConfig;
pub use sfu::{Sfu, SfuError, SfuEvent};
