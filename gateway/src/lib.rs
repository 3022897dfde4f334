//! Duet's gateway: accounts and roles, schools and pairings, the shared timetable (统一课表),
//! join tokens for live classes, attendance, and the web pages (every asset served by this
//! binary, no CDN).
//!
//! # Layout (dependencies point down)
//! - [`app`]: the router and shared state; routers are tested without a socket.
//! - [`api`]: JSON handlers, the auth extractor, the route table and OpenAPI document.
//! - [`error`]: [`ApiError`], the one place errors become HTTP responses.
//! - [`policy`]: the one place authorization is decided (scope by district, school, class).
//! - [`auth`]: passwords, secrets, login rate limits.
//! - [`store`]: SQLite or PostgreSQL through sqlx, the same migrations for both.
//! - [`schedule`]: pure timetable engine: terms, bells, series → lessons in absolute time,
//!   conflicts, now/next, iCal.
//! - [`recorder_link`]: [`RecorderLink`], the way to the recorders of recording classrooms
//!   (manual control, previews, director events), implemented by the binary that runs them.
//! - [`media`]: signed media URLs of the archive and the range-serving behind them.
//! - [`clips`]: clip export (晒课): the [`clips::ClipRenderer`] the binary provides, run in the
//!   background.
//! - [`demo`]: the demo district `duet up` seeds, and the simulated devices of its recording room.
//! - [`config`], [`assets`].

pub mod api;
pub mod app;
pub mod assets;
pub mod auth;
pub mod clips;
pub mod config;
pub mod demo;
pub mod error;
pub mod media;
pub mod policy;
pub mod recorder_link;
pub mod schedule;
pub mod store;

pub use app::{AppState, app};
pub use config::GatewayConfig;
pub use error::ApiError;
pub use recorder_link::{RecorderLink, RecorderLinkError, RecordingCommand};
