//! VISCA over IP: driving PTZ cameras (Sony's protocol, UDP port 52381).
//!
//! The recorder moves a recording classroom's (录播教室) PTZ cameras to their presets (teacher
//! close-up, blackboard, pupils…) with VISCA commands carried in UDP datagrams, each with an
//! 8-byte header holding a sequence number.
//!
//! # Layout
//! - [`codec`]: the header, the commands and the replies as bytes. Pure: no I/O, no clock; never
//!   panics on received bytes.
//! - [`client`]: [`ViscaClient`], one camera over a UDP socket: sequence numbers, waiting for ACK
//!   and Completion, retransmission of the same datagram on timeout.
//! - [`sim`]: [`ViscaSimulator`], a camera that speaks the real protocol on a UDP socket, with
//!   hooks to lose replies and inject garbage, for tests here and in the recorder.
//! - [`ViscaError`]: the one error type of all three.
//!
//! # How to drive it
//! ```no_run
//! # async fn f() -> Result<(), duet_hardware::visca::ViscaError> {
//! use duet_hardware::visca::{Command, ViscaClient};
//! let mut camera = ViscaClient::connect("192.0.2.21:52381".parse().unwrap()).await?;
//! camera.reset().await?; // the camera forgets sequence numbers of a previous run
//! camera.send(Command::preset_recall(3)?).await?;
//! # Ok(()) }
//! ```

pub mod client;
pub mod codec;
mod error;
pub mod sim;

pub use client::{ViscaClient, ViscaClientConfig};
pub use codec::{
    Command, Completion, ControlCommand, Direction, ErrorCode, PanSpeed, Preset, Reply, TiltSpeed,
    ZoomSpeed,
};
pub use error::ViscaError;
pub use sim::{PtzPosition, ViscaSimulator};
