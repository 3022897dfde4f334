//! Newtype identifiers. IDs are never bare strings in Duet's APIs.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The identifier as text.
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
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

string_id!(
    /// A live class (one timetabled session of a pairing) on the SFU.
    RoomId
);
string_id!(
    /// A participant's identity inside a room: a classroom, a teacher, an observer or a recorder.
    ParticipantId
);
string_id!(
    /// A published media track, unique within its room.
    TrackId
);

/// Longest identifier accepted anywhere on the wire, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Whether `s` is an acceptable identifier: non-empty, at most [`MAX_ID_LEN`] bytes, and made of
/// ASCII letters, digits, `-`, `_`, `.` and `:` only (it ends up in logs, metrics and SDP msid).
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}
