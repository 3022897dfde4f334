//! Duet's device layer: the model of a recording classroom's devices.
//!
//! This milestone holds the device model only; RTSP and V4L2 sources, the VISCA-over-IP and
//! ONVIF PTZ codecs and transports, the encoder probe and the simulators arrive with the
//! recording-classroom milestone. Nothing here does I/O.
//!
//! # Layout
//! - [`device`]: cameras and their positions, screen captures, microphones, PTZ capability.

pub mod device;

pub use device::{CameraPosition, Device, DeviceKind, PtzProtocol};
