//! Wire types shared by the SFU, the gateway, the recorder and the browser client.
//!
//! This crate owns two contracts and nothing else, and it does no I/O:
//! - [`token`]: the signed, expiring **join token** the gateway mints and the SFU verifies. Its
//!   claims say which room, who, which role and which grants. The SFU never trusts a role a
//!   client claims in a message: only what a valid token says.
//! - [`signal`]: the JSON messages exchanged over the SFU's WebSocket signalling channel.
//!
//! # Layout
//! - [`ids`]: newtype identifiers (`RoomId`, `ParticipantId`, `TrackId`).
//! - [`role`]: roles, media sources and grants, and what each role may ever be granted.
//! - [`token`]: claims, HMAC-SHA256 signing and verification with typed errors.
//! - [`signal`]: client and server messages, error codes and WebSocket close codes.

pub mod ids;
pub mod role;
pub mod signal;
pub mod token;

pub use ids::{ParticipantId, RoomId, TrackId};
pub use role::{Grants, Role, Source};
pub use token::{JoinClaims, TokenError, TokenKey};
