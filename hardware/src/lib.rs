//! Duet's device layer: the model of a recording classroom's devices and the protocols that
//! drive them. Protocol codecs are pure (bytes in, typed values out, never a panic on a device's
//! reply); transports and simulators sit beside them. Nothing here knows of HTTP APIs, databases
//! or the recorder.
//!
//! Still to come with the recording-classroom milestone: RTSP and V4L2 sources, the encoder probe,
//! the RTSP camera simulator.
//!
//! # Layout
//! - [`device`]: cameras and their positions, screen captures, microphones, PTZ capability.
//! - [`visca`]: VISCA over IP (UDP 52381): the pure codec, the client with retransmission, and a
//!   simulated camera for tests.
//! - [`onvif`]: ONVIF PTZ (SOAP 1.2 over HTTP, WS-Security digest): the pure SOAP codec, the
//!   client, and a simulated camera (for tests, or with the `sim` feature).

pub mod device;
pub mod onvif;
pub mod visca;

pub use device::{CameraPosition, Device, DeviceKind, PtzProtocol};
