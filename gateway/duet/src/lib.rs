//! The one Duet binary's library half: the typed configuration of every service, and the
//! composition of services into one process (`duet up`) or one each (`duet sfu`,
//! `duet gateway`).
//!
//! # Layout
//! - [`config`]: [`DuetConfig`], composed of each service's own config; loaded from TOML.
//! - [`run`]: starting services on listeners, with an injected shutdown future.
//! - [`recording`]: the recorder beside the gateway or alone, the demo's simulated recording
//!   room, and the gateway's link to the rooms.
//! - [`live`]: the live-class recorder beside the gateway or alone, and the clip renderer.

pub mod config;
pub mod live;
pub mod recording;
pub mod run;

pub use config::DuetConfig;
pub use run::{Running, start_gateway, start_sfu, start_up};
