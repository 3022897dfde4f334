//! Duet's gateway, minimal for the live-class milestone: serves the browser client (every asset
//! from this binary, no CDN), answers `GET /healthz`, and mints join tokens for the demo class
//! that `duet up` creates, for the demo accounts it prints at start-up.
//!
//! # Layout
//! - [`config`]: `[gateway]` configuration.
//! - [`demo`]: the demo class and its accounts.
//! - [`error`]: [`ApiError`], the one place errors become HTTP responses.
//! - [`assets`]: the embedded web client.
//! - [`app`]: the router; tested without a socket (`app().oneshot(req)`).

pub mod app;
pub mod assets;
pub mod auth;
pub mod config;
pub mod demo;
pub mod error;
pub mod policy;

pub use app::{AppState, app};
pub use config::GatewayConfig;
pub use error::ApiError;
