//! ONVIF PTZ: steering a recording classroom's (录播教室) network cameras over SOAP 1.2.
//!
//! The auto-director picks a shot; the camera that serves it is sent to the preset for that
//! position (teacher at the podium, blackboard, the pupil standing up). Cameras that do not
//! speak VISCA speak ONVIF PTZ: SOAP 1.2 envelopes POSTed over plain HTTP on the school LAN,
//! authenticated per message with a WS-Security `UsernameToken` (password digest).
//!
//! # Layout
//! - [`soap`]: the pure codec. Request envelopes with their security header, reply parsers,
//!   and for the simulator the reverse direction. No I/O, no clock, no randomness: the nonce
//!   and the creation time are arguments.
//! - [`client`]: [`OnvifPtz`], one camera's PTZ service: a minimal HTTP/1.1 POST over a
//!   `TcpStream` per request, with timeouts, feeding the codec.
//! - `sim` (built for this crate's tests, and for others with the `sim` feature): a simulated
//!   camera speaking the same SOAP over real HTTP, checking digests, freshness and replays.
//!
//! # Invariants
//! - Bytes from the network never panic: every parser works on untrusted input and answers
//!   [`OnvifError::Malformed`] (fuzzed with seeded pseudo-random bytes and truncations).
//! - Nothing reaches the wire unchecked: velocities and speeds outside their ranges, and text
//!   that XML 1.0 cannot carry, are refused as [`OnvifError::InvalidArgument`] before a
//!   connection is opened; every other user string (tokens, preset names, the user name) is
//!   escaped.
//! - Elements are matched by local name, whatever prefix a camera's toolkit chose.
//!
//! # Driving it
//! ```no_run
//! use duet_hardware::onvif::{OnvifPtz, ProfileToken, PtzVector};
//!
//! # async fn demo() -> Result<(), duet_hardware::onvif::OnvifError> {
//! let addr = "192.0.2.10:80".parse().expect("a literal socket address");
//! let ptz = OnvifPtz::new(addr, "/onvif/ptz_service", "admin", "secret", ProfileToken::new("profile_1"))?;
//! let podium = ptz.set_preset(Some("讲台"), None).await?;
//! ptz.continuous_move(PtzVector::new(0.5, 0.0, 0.0)).await?;
//! ptz.stop(true, true).await?;
//! ptz.goto_preset(&podium, None).await?;
//! # Ok(())
//! # }
//! ```

pub mod client;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod soap;

use std::fmt;

pub use client::OnvifPtz;

macro_rules! token {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Wraps a token as the camera spells it.
            pub fn new(token: impl Into<String>) -> Self {
                Self(token.into())
            }

            /// The token as the camera spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(token: &str) -> Self {
                Self::new(token)
            }
        }
    };
}

token! {
    /// A media profile's token (`tt:ReferenceToken`): which of the camera's profiles (and so
    /// which PTZ configuration) a command addresses.
    ProfileToken
}

token! {
    /// A PTZ preset's token (`tt:ReferenceToken`), chosen by the camera when a preset is made.
    PresetToken
}

/// Pan and tilt, the two axes that always travel together in ONVIF.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PanTilt {
    /// Pan (horizontal).
    pub x: f32,
    /// Tilt (vertical).
    pub y: f32,
}

/// A point or a speed in ONVIF's generic spaces (`tt:PTZVector`, `tt:PTZSpeed`); either part
/// may be absent, meaning "this axis is not concerned".
///
/// As a velocity (`ContinuousMove`) every value lies in [-1, 1]; as a speed (`GotoPreset`) in
/// [0, 1]; as a position pan and tilt lie in [-1, 1] and zoom in [0, 1].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PtzVector {
    /// Pan and tilt, if given.
    pub pan_tilt: Option<PanTilt>,
    /// Zoom, if given.
    pub zoom: Option<f32>,
}

impl PtzVector {
    /// All three axes.
    pub fn new(pan: f32, tilt: f32, zoom: f32) -> Self {
        Self {
            pan_tilt: Some(PanTilt { x: pan, y: tilt }),
            zoom: Some(zoom),
        }
    }
}

/// A preset as the camera lists it (`tt:PTZPreset`).
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    /// The camera's token for it.
    pub token: PresetToken,
    /// Its human name, if it has one (e.g. "讲台特写").
    pub name: Option<String>,
    /// Where it points, if the camera says.
    pub position: Option<PtzVector>,
}

/// What can go wrong talking ONVIF PTZ.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnvifError {
    /// Connecting, writing or reading failed.
    #[error("ONVIF I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A step took longer than the client's timeout.
    #[error("ONVIF {what} timed out")]
    Timeout {
        /// The step that ran out of time: `connect` or `exchange`.
        what: &'static str,
    },
    /// The camera answered with an HTTP error and no SOAP fault (e.g. 401 for HTTP auth).
    #[error("ONVIF camera answered HTTP {status}")]
    Http {
        /// The HTTP status code.
        status: u16,
    },
    /// The camera answered with a SOAP fault.
    #[error("ONVIF fault {code} ({}): {reason}", subcode.as_deref().unwrap_or("no subcode"))]
    Fault {
        /// The fault code as sent, e.g. `env:Sender`.
        code: String,
        /// The innermost (most specific) subcode as sent, e.g. `ter:NotAuthorized`.
        subcode: Option<String>,
        /// The first reason text.
        reason: String,
    },
    /// The bytes received are not what the protocol allows.
    #[error("malformed ONVIF message: {what}")]
    Malformed {
        /// What was wrong.
        what: &'static str,
    },
    /// A request argument is out of range or cannot be written as XML; nothing was sent.
    #[error("invalid ONVIF request: {what}")]
    InvalidArgument {
        /// Which argument, and why.
        what: &'static str,
    },
}

impl OnvifError {
    /// Whether this is a fault whose innermost subcode has the local name `local`, whatever
    /// its prefix: `err.is_fault("NotAuthorized")` matches `ter:NotAuthorized`.
    pub fn is_fault(&self, local: &str) -> bool {
        match self {
            Self::Fault {
                subcode: Some(subcode),
                ..
            } => soap::local_part(subcode) == local,
            _ => false,
        }
    }

    pub(crate) fn malformed(what: &'static str) -> Self {
        Self::Malformed { what }
    }

    pub(crate) fn invalid(what: &'static str) -> Self {
        Self::InvalidArgument { what }
    }
}

/// A tiny seeded linear congruential generator (Knuth's MMIX constants) for the fuzz tests:
/// deterministic, so a failure replays exactly.
#[cfg(test)]
pub(crate) struct Lcg(pub(crate) u64);

#[cfg(test)]
impl Lcg {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        // Keeping the low byte of the high bits is the point.
        (0..len).map(|_| self.next() as u8).collect()
    }
}
