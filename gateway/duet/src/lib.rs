//! The one Duet binary's library half: the typed configuration of every service, and the
//! composition of services into one process (`duet up`) or one each (`duet sfu`,
//! `duet gateway`).
//!
//! # Layout
//! - [`config`]: [`DuetConfig`], composed of each service's own config; loaded from TOML.
//! - [`run`]: starting services on listeners, with an injected shutdown future.

pub mod config;
pub mod run;

pub use config::DuetConfig;
pub use run::{Running, start_gateway, start_sfu, start_up};
