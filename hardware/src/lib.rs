//! Duet's device layer: the model of a recording classroom's devices and the protocols that
//! drive them. Protocol codecs are pure (bytes in, typed values out, never a panic on a device's
//! reply); transports and simulators sit beside them. Nothing here knows of HTTP APIs, databases
//! or the recorder.
//!
//! Capturing sources (RTSP, V4L2, test patterns) and the H.264 encoder probe are the recorder's
//! (`duet_recorder::capture`, `duet_recorder::encoder`): they are GStreamer pipelines.
//!
//! # Layout
//! - [`device`]: cameras and their positions, screen captures, microphones, PTZ capability.
//! - [`visca`]: VISCA over IP (UDP 52381): the pure codec, the client with retransmission, and a
//!   simulated camera for tests.
//! - [`onvif`]: ONVIF PTZ (SOAP 1.2 over HTTP, WS-Security digest): the pure SOAP codec, the
//!   client, and a simulated camera (for tests, or with the `sim` feature).
//! - [`rtsp_sim`] (tests, or the `sim` feature): a simulated IP camera serving live H.264 test
//!   video over RTSP (gst-rtsp-server), which can be "unplugged" and plugged back in.

pub mod device;
pub mod onvif;
#[cfg(any(test, feature = "sim"))]
pub mod rtsp_sim;
pub mod visca;

pub use device::{CameraPosition, Device, DeviceKind, PtzProtocol};
