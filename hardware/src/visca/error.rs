//! [`ViscaError`]: everything that can go wrong between Duet and a VISCA-over-IP camera.
//!
//! One enum for the codec, the client and the simulator, so a caller matches in one place.
//! Variants carry their context (sequence number, byte, payload type) as plain values: building
//! an error never allocates or formats, so the decoder can reject hostile datagrams at line rate.

use std::io;

use super::codec::{Axis, ErrorCode, PayloadType};

/// An error of the VISCA-over-IP codec or transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViscaError {
    // ----- framing of untrusted bytes -----
    /// The datagram is shorter than the 8-byte header.
    #[error("datagram of {len} bytes is shorter than the 8-byte VISCA-over-IP header")]
    ShortHeader {
        /// Bytes received.
        len: usize,
    },
    /// The header's payload type is none of the six the protocol defines.
    #[error("unknown VISCA-over-IP payload type 0x{value:04X}")]
    UnknownPayloadType {
        /// The raw field.
        value: u16,
    },
    /// The header's length field disagrees with the bytes that follow it.
    #[error("header declares a {declared}-byte payload but the datagram carries {actual}")]
    LengthMismatch {
        /// The header's payload length field.
        declared: u16,
        /// Bytes after the header.
        actual: usize,
    },
    /// A payload outside `1..=MAX_PAYLOAD_LEN` bytes.
    #[error("payload of {len} bytes; VISCA over IP carries 1 to 16")]
    PayloadLength {
        /// The payload's length.
        len: usize,
    },
    /// A VISCA message without its `0xFF` terminator.
    #[error("{payload_type} payload does not end with the 0xFF terminator")]
    MissingTerminator {
        /// The kind of message.
        payload_type: PayloadType,
    },
    /// Bytes after a VISCA message's `0xFF` terminator.
    #[error("{payload_type} payload has {extra} bytes after its 0xFF terminator")]
    TrailingBytes {
        /// The kind of message.
        payload_type: PayloadType,
        /// How many bytes follow the first terminator.
        extra: usize,
    },
    /// A reply whose first byte is not the camera's reply address `0x90`.
    #[error("reply from address byte 0x{byte:02X}; camera 1 replies from 0x90")]
    BadReplyAddress {
        /// The first byte.
        byte: u8,
    },
    /// A reply whose type nibble is not ACK (4), Completion (5) or Error (6).
    #[error("unknown reply type byte 0x{byte:02X}")]
    UnknownReply {
        /// The second byte of the reply.
        byte: u8,
    },
    /// A payload that parses as far as its kind but is not a message of that kind.
    #[error("malformed {payload_type} payload: {reason}")]
    Malformed {
        /// The kind of message.
        payload_type: PayloadType,
        /// What is wrong, as a constant phrase.
        reason: &'static str,
    },
    /// A datagram of a payload type that is not a reply, where a reply was expected.
    #[error("{payload_type} datagram where a reply was expected")]
    NotAReply {
        /// What arrived instead.
        payload_type: PayloadType,
    },

    // ----- values -----
    /// A preset number above `0x7F`.
    #[error("preset {preset} is out of range 0..=127")]
    PresetOutOfRange {
        /// The number asked for.
        preset: u8,
    },
    /// A speed outside its axis's range.
    #[error("{axis} speed 0x{speed:02X} is out of range 0x{min:02X}..=0x{max:02X}")]
    SpeedOutOfRange {
        /// Which axis.
        axis: Axis,
        /// The speed asked for.
        speed: u8,
        /// Lowest valid speed.
        min: u8,
        /// Highest valid speed.
        max: u8,
    },
    /// Inquiry data that cannot travel in a Completion (too long, or holds the terminator).
    #[error("inquiry data of {len} bytes is longer than 13 or contains 0xFF")]
    InquiryData {
        /// The data's length.
        len: usize,
    },
    /// A configuration value that cannot work.
    #[error("visca.{field}: {reason}")]
    InvalidConfig {
        /// The offending key.
        field: &'static str,
        /// Why, as a constant phrase.
        reason: &'static str,
    },

    // ----- transport -----
    /// The socket failed (not a lost datagram: those become [`ViscaError::Timeout`]).
    #[error("VISCA socket {op} failed")]
    Io {
        /// What the client was doing: `bind`, `connect`, `send`, `recv`.
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// No answer to a message after every retransmission.
    #[error("no answer to VISCA message seq {seq} after {attempts} attempts")]
    Timeout {
        /// The message's sequence number (the same in every attempt).
        seq: u32,
        /// Datagrams sent: the first transmission plus the retransmissions.
        attempts: u32,
    },
    /// The camera answered with a VISCA Error reply.
    #[error("camera refused VISCA message seq {seq}: {code}")]
    Camera {
        /// The message's sequence number.
        seq: u32,
        /// The camera's error code.
        code: ErrorCode,
    },
    /// The camera answered with a control-reply error (`0F 01` sequence number, `0F 02` message).
    #[error("camera rejected VISCA-over-IP message seq {seq}: control error 0x{code:02X}")]
    ControlRejected {
        /// The message's sequence number.
        seq: u32,
        /// The control error code.
        code: u8,
    },
}
