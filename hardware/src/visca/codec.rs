//! The VISCA-over-IP codec: bytes in, typed messages out, and back. No I/O, no clock, no state.
//!
//! # Wire format
//! Every UDP datagram is one message: an 8-byte header, then the payload.
//! ```text
//! 0      2        4                8
//! | type | length | sequence number | payload (1..=16 bytes)
//!   u16     u16          u32                 big-endian
//! ```
//! The [`PayloadType`] says what the payload is. VISCA payloads (commands, inquiries, replies)
//! run from an address byte to the `0xFF` terminator: commands go to camera 1 (`0x81`), replies
//! come from it (`0x90`). Control payloads (RESET and its reply) have no address and no
//! terminator. A reply carries the sequence number of the message it answers.
//!
//! # Invariants
//! - Decoding never panics, whatever the bytes: every path returns a typed [`ViscaError`]. The
//!   tests feed it pseudo-random datagrams and every truncation of valid ones.
//! - Values that can be out of range ([`Preset`], [`PanSpeed`], [`TiltSpeed`], [`ZoomSpeed`])
//!   are newtypes checked on construction, so every [`Command`] can be encoded and a bad
//!   preset number is refused before anything is sent.
//! - A decoded [`Reply`] re-encodes to the bytes it came from.
//!
//! # How to drive it
//! Encode with [`Command::encode`] (or [`ControlCommand::encode`]) into a reused `Vec`; decode
//! what comes back with [`Reply::decode`]. The simulator goes the other way round with
//! [`Header::decode`], [`Frame::decode`], [`Command::decode_payload`] and [`Reply::encode`].

use std::fmt;

use super::ViscaError;

/// The UDP port of VISCA over IP.
pub const VISCA_PORT: u16 = 52381;
/// Length of the VISCA-over-IP header.
pub const HEADER_LEN: usize = 8;
/// Longest payload VISCA over IP carries.
pub const MAX_PAYLOAD_LEN: usize = 16;
/// Longest valid datagram.
pub const MAX_DATAGRAM_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN;
/// Address byte of a command to camera 1 (over IP there is only camera 1).
pub const CAMERA_ADDRESS: u8 = 0x81;
/// Address byte of a reply from camera 1.
pub const REPLY_ADDRESS: u8 = 0x90;
/// Ends every VISCA message; appears nowhere else in one.
pub const TERMINATOR: u8 = 0xFF;
/// Longest inquiry data in a Completion: the payload minus address, type and terminator.
pub const MAX_INQUIRY_DATA_LEN: usize = MAX_PAYLOAD_LEN - 3;

/// The payload type field of the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum PayloadType {
    /// A VISCA command (controller to camera).
    ViscaCommand = 0x0100,
    /// A VISCA inquiry (controller to camera).
    ViscaInquiry = 0x0110,
    /// A VISCA reply: ACK, Completion or Error (camera to controller).
    ViscaReply = 0x0111,
    /// A device setting command.
    DeviceSetting = 0x0120,
    /// A control command, e.g. RESET (controller to camera).
    ControlCommand = 0x0200,
    /// A control reply (camera to controller).
    ControlReply = 0x0201,
}

impl PayloadType {
    /// The field's value.
    pub const fn to_u16(self) -> u16 {
        self as u16
    }

    /// The payload type of a field value, if it is one.
    pub const fn from_u16(value: u16) -> Option<Self> {
        Some(match value {
            0x0100 => Self::ViscaCommand,
            0x0110 => Self::ViscaInquiry,
            0x0111 => Self::ViscaReply,
            0x0120 => Self::DeviceSetting,
            0x0200 => Self::ControlCommand,
            0x0201 => Self::ControlReply,
            _ => return None,
        })
    }
}

impl fmt::Display for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ViscaCommand => "VISCA_COMMAND",
            Self::ViscaInquiry => "VISCA_INQUIRY",
            Self::ViscaReply => "VISCA_REPLY",
            Self::DeviceSetting => "DEVICE_SETTING",
            Self::ControlCommand => "CONTROL_COMMAND",
            Self::ControlReply => "CONTROL_REPLY",
        })
    }
}

/// The 8-byte header of every datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the payload is.
    pub payload_type: PayloadType,
    /// The payload's length in bytes, as the sender declared it.
    pub payload_len: u16,
    /// Sequence number: the controller's counter; a reply repeats its command's.
    pub seq: u32,
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        out[0..2].copy_from_slice(&self.payload_type.to_u16().to_be_bytes());
        out[2..4].copy_from_slice(&self.payload_len.to_be_bytes());
        out[4..8].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    /// Reads the header at the start of `datagram`; the payload is not looked at.
    pub fn decode(datagram: &[u8]) -> Result<Self, ViscaError> {
        let Some(&[t0, t1, l0, l1, s0, s1, s2, s3]) = datagram.first_chunk::<HEADER_LEN>() else {
            return Err(ViscaError::ShortHeader {
                len: datagram.len(),
            });
        };
        let value = u16::from_be_bytes([t0, t1]);
        let payload_type =
            PayloadType::from_u16(value).ok_or(ViscaError::UnknownPayloadType { value })?;
        Ok(Self {
            payload_type,
            payload_len: u16::from_be_bytes([l0, l1]),
            seq: u32::from_be_bytes([s0, s1, s2, s3]),
        })
    }
}

/// One datagram: its header's type and sequence number, and the payload the length field
/// delimits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What the payload is.
    pub payload_type: PayloadType,
    /// Sequence number.
    pub seq: u32,
    /// The payload, `1..=MAX_PAYLOAD_LEN` bytes.
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Splits a datagram into header and payload, checking the length field against the bytes.
    pub fn decode(datagram: &'a [u8]) -> Result<Self, ViscaError> {
        let header = Header::decode(datagram)?;
        let payload = &datagram[HEADER_LEN..];
        if usize::from(header.payload_len) != payload.len() {
            return Err(ViscaError::LengthMismatch {
                declared: header.payload_len,
                actual: payload.len(),
            });
        }
        check_payload_len(payload.len())?;
        Ok(Self {
            payload_type: header.payload_type,
            seq: header.seq,
            payload,
        })
    }

    /// Appends the datagram to `out`; refuses a payload outside `1..=MAX_PAYLOAD_LEN` bytes.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ViscaError> {
        check_payload_len(self.payload.len())?;
        let header = Header {
            payload_type: self.payload_type,
            payload_len: self.payload.len() as u16, // at most MAX_PAYLOAD_LEN, checked above
            seq: self.seq,
        };
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(self.payload);
        Ok(())
    }
}

fn check_payload_len(len: usize) -> Result<(), ViscaError> {
    if (1..=MAX_PAYLOAD_LEN).contains(&len) {
        Ok(())
    } else {
        Err(ViscaError::PayloadLength { len })
    }
}

/// Appends a datagram whose payload `write_payload` produces, which must stay within
/// `MAX_PAYLOAD_LEN` (only this module's encoders call it, with fixed short payloads).
fn encode_with(
    out: &mut Vec<u8>,
    payload_type: PayloadType,
    seq: u32,
    write_payload: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    write_payload(out);
    let payload_len = out.len() - start - HEADER_LEN;
    debug_assert!((1..=MAX_PAYLOAD_LEN).contains(&payload_len));
    let header = Header {
        payload_type,
        payload_len: payload_len as u16,
        seq,
    };
    out[start..start + HEADER_LEN].copy_from_slice(&header.encode());
}

/// The bytes of a VISCA message before its terminator, which must be its last byte.
fn strip_terminator(payload_type: PayloadType, payload: &[u8]) -> Result<&[u8], ViscaError> {
    match payload.iter().position(|&b| b == TERMINATOR) {
        None => Err(ViscaError::MissingTerminator { payload_type }),
        Some(end) if end + 1 == payload.len() => Ok(&payload[..end]),
        Some(end) => Err(ViscaError::TrailingBytes {
            payload_type,
            extra: payload.len() - end - 1,
        }),
    }
}

/// A preset memory number, `0..=0x7F`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Preset(u8);

impl Preset {
    /// The highest preset number.
    pub const MAX: u8 = 0x7F;

    /// The preset `number`, if it is in range.
    pub const fn new(number: u8) -> Result<Self, ViscaError> {
        if number <= Self::MAX {
            Ok(Self(number))
        } else {
            Err(ViscaError::PresetOutOfRange { preset: number })
        }
    }

    /// The preset's number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// A drive axis, for errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Pan (left/right).
    Pan,
    /// Tilt (up/down).
    Tilt,
    /// Zoom (tele/wide).
    Zoom,
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pan => "PAN",
            Self::Tilt => "TILT",
            Self::Zoom => "ZOOM",
        })
    }
}

macro_rules! speed {
    ($(#[$doc:meta])* $name:ident, $axis:expr, $min:literal..=$max:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u8);

        impl $name {
            /// The slowest speed.
            pub const MIN: Self = Self($min);
            /// The fastest speed.
            pub const MAX: Self = Self($max);

            /// The speed `value`, if it is in range.
            pub const fn new(value: u8) -> Result<Self, ViscaError> {
                if matches!(value, $min..=$max) {
                    Ok(Self(value))
                } else {
                    Err(ViscaError::SpeedOutOfRange {
                        axis: $axis,
                        speed: value,
                        min: $min,
                        max: $max,
                    })
                }
            }

            /// The speed's value.
            pub const fn get(self) -> u8 {
                self.0
            }
        }
    };
}

speed!(
    /// Pan speed, `0x01..=0x18` (Sony's range; slower cameras clamp).
    PanSpeed, Axis::Pan, 0x01..=0x18
);
speed!(
    /// Tilt speed, `0x01..=0x17`.
    TiltSpeed, Axis::Tilt, 0x01..=0x17
);
speed!(
    /// Variable zoom speed, `0..=7` (the `p` of `2p`/`3p`).
    ZoomSpeed, Axis::Zoom, 0..=7
);

/// Where a pan-tilt drive moves the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Tilt up.
    Up,
    /// Tilt down.
    Down,
    /// Pan left.
    Left,
    /// Pan right.
    Right,
    /// Up and left.
    UpLeft,
    /// Up and right.
    UpRight,
    /// Down and left.
    DownLeft,
    /// Down and right.
    DownRight,
}

impl Direction {
    /// Every direction, for tests and UIs.
    pub const ALL: [Self; 8] = [
        Self::Up,
        Self::Down,
        Self::Left,
        Self::Right,
        Self::UpLeft,
        Self::UpRight,
        Self::DownLeft,
        Self::DownRight,
    ];

    /// The `0p 0t` bytes of the drive command: pan 1 left, 2 right, 3 stop; tilt 1 up, 2 down,
    /// 3 stop.
    const fn codes(self) -> (u8, u8) {
        match self {
            Self::Up => (3, 1),
            Self::Down => (3, 2),
            Self::Left => (1, 3),
            Self::Right => (2, 3),
            Self::UpLeft => (1, 1),
            Self::UpRight => (2, 1),
            Self::DownLeft => (1, 2),
            Self::DownRight => (2, 2),
        }
    }

    /// The direction of `0p 0t`; `None` for stop (`03 03`) and for invalid codes.
    const fn from_codes(pan: u8, tilt: u8) -> Option<Self> {
        Some(match (pan, tilt) {
            (3, 1) => Self::Up,
            (3, 2) => Self::Down,
            (1, 3) => Self::Left,
            (2, 3) => Self::Right,
            (1, 1) => Self::UpLeft,
            (2, 1) => Self::UpRight,
            (1, 2) => Self::DownLeft,
            (2, 2) => Self::DownRight,
            _ => return None,
        })
    }
}

/// The VISCA commands the recorder sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Move to a stored preset: `81 01 04 3F 02 pp FF`.
    PresetRecall(Preset),
    /// Store the current position as a preset: `81 01 04 3F 01 pp FF`.
    PresetSet(Preset),
    /// Forget a preset: `81 01 04 3F 00 pp FF`.
    PresetReset(Preset),
    /// Start driving the head: `81 01 06 01 VV WW 0p 0t FF`.
    PanTilt {
        /// Where to.
        direction: Direction,
        /// `VV`.
        pan_speed: PanSpeed,
        /// `WW`.
        tilt_speed: TiltSpeed,
    },
    /// Stop the head: `81 01 06 01 VV WW 03 03 FF` (sent with the slowest speeds; any speeds
    /// decode to this).
    PanTiltStop,
    /// Zoom in: `81 01 04 07 2p FF`.
    ZoomTele(ZoomSpeed),
    /// Zoom out: `81 01 04 07 3p FF`.
    ZoomWide(ZoomSpeed),
    /// Stop zooming: `81 01 04 07 00 FF`.
    ZoomStop,
    /// Pan and tilt to the home position: `81 01 06 04 FF`.
    Home,
}

impl Command {
    /// Recall preset `number`, checked to be `0..=0x7F`.
    pub fn preset_recall(number: u8) -> Result<Self, ViscaError> {
        Preset::new(number).map(Self::PresetRecall)
    }

    /// Store the current position as preset `number`, checked to be `0..=0x7F`.
    pub fn preset_set(number: u8) -> Result<Self, ViscaError> {
        Preset::new(number).map(Self::PresetSet)
    }

    /// Forget preset `number`, checked to be `0..=0x7F`.
    pub fn preset_reset(number: u8) -> Result<Self, ViscaError> {
        Preset::new(number).map(Self::PresetReset)
    }

    /// Appends the whole datagram (header with `seq`, then the payload) to `out`.
    pub fn encode(&self, seq: u32, out: &mut Vec<u8>) {
        encode_with(out, PayloadType::ViscaCommand, seq, |out| {
            self.encode_payload(out)
        });
    }

    /// Appends the VISCA payload, address byte to terminator, to `out`.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        const PRESET: [u8; 4] = [CAMERA_ADDRESS, 0x01, 0x04, 0x3F];
        const PAN_TILT: [u8; 4] = [CAMERA_ADDRESS, 0x01, 0x06, 0x01];
        const ZOOM: [u8; 4] = [CAMERA_ADDRESS, 0x01, 0x04, 0x07];
        let (prefix, args): ([u8; 4], &[u8]) = match *self {
            Self::PresetRecall(p) => (PRESET, &[0x02, p.0]),
            Self::PresetSet(p) => (PRESET, &[0x01, p.0]),
            Self::PresetReset(p) => (PRESET, &[0x00, p.0]),
            Self::PanTilt {
                direction,
                pan_speed,
                tilt_speed,
            } => {
                let (pan, tilt) = direction.codes();
                (PAN_TILT, &[pan_speed.0, tilt_speed.0, pan, tilt])
            }
            Self::PanTiltStop => (PAN_TILT, &[PanSpeed::MIN.0, TiltSpeed::MIN.0, 3, 3]),
            Self::ZoomTele(s) => (ZOOM, &[0x20 | s.0]),
            Self::ZoomWide(s) => (ZOOM, &[0x30 | s.0]),
            Self::ZoomStop => (ZOOM, &[0x00]),
            Self::Home => ([CAMERA_ADDRESS, 0x01, 0x06, 0x04], &[]),
        };
        out.extend_from_slice(&prefix);
        out.extend_from_slice(args);
        out.push(TERMINATOR);
    }

    /// Parses a VISCA command payload (as a camera would); anything it does not know is
    /// [`ViscaError::Malformed`], which a camera answers with a syntax error.
    pub fn decode_payload(payload: &[u8]) -> Result<Self, ViscaError> {
        const KIND: PayloadType = PayloadType::ViscaCommand;
        let malformed = |reason| ViscaError::Malformed {
            payload_type: KIND,
            reason,
        };
        let body = strip_terminator(KIND, payload)?;
        let Some((&CAMERA_ADDRESS, body)) = body.split_first() else {
            return Err(malformed("not addressed to camera 1 (0x81)"));
        };
        Ok(match *body {
            [0x01, 0x04, 0x3F, op, pp] => {
                let preset = Preset::new(pp)?;
                match op {
                    0x00 => Self::PresetReset(preset),
                    0x01 => Self::PresetSet(preset),
                    0x02 => Self::PresetRecall(preset),
                    _ => return Err(malformed("unknown preset operation")),
                }
            }
            [0x01, 0x06, 0x01, _, _, 3, 3] => Self::PanTiltStop,
            [0x01, 0x06, 0x01, vv, ww, p, t] => Self::PanTilt {
                direction: Direction::from_codes(p, t)
                    .ok_or(malformed("unknown pan-tilt direction"))?,
                pan_speed: PanSpeed::new(vv)?,
                tilt_speed: TiltSpeed::new(ww)?,
            },
            [0x01, 0x04, 0x07, 0x00] => Self::ZoomStop,
            [0x01, 0x04, 0x07, z @ 0x20..=0x27] => Self::ZoomTele(ZoomSpeed(z & 0x0F)),
            [0x01, 0x04, 0x07, z @ 0x30..=0x37] => Self::ZoomWide(ZoomSpeed(z & 0x0F)),
            [0x01, 0x06, 0x04] => Self::Home,
            _ => return Err(malformed("unknown command")),
        })
    }
}

/// Control commands (payload type `0x0200`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlCommand {
    /// RESET (`01`): the camera forgets the last sequence number; the controller restarts at 0.
    Reset,
}

impl ControlCommand {
    /// Appends the whole datagram to `out`.
    pub fn encode(&self, seq: u32, out: &mut Vec<u8>) {
        encode_with(out, PayloadType::ControlCommand, seq, |out| match self {
            Self::Reset => out.push(0x01),
        });
    }

    /// Parses a control command payload.
    pub fn decode_payload(payload: &[u8]) -> Result<Self, ViscaError> {
        match payload {
            [0x01] => Ok(Self::Reset),
            _ => Err(ViscaError::Malformed {
                payload_type: PayloadType::ControlCommand,
                reason: "unknown control command",
            }),
        }
    }
}

/// A VISCA error code, from `y0 6z ee FF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u8);

impl ErrorCode {
    /// `01`: message length error.
    pub const MESSAGE_LENGTH: Self = Self(0x01);
    /// `02`: syntax error.
    pub const SYNTAX: Self = Self(0x02);
    /// `03`: command buffer full.
    pub const BUFFER_FULL: Self = Self(0x03);
    /// `04`: command cancelled.
    pub const CANCELLED: Self = Self(0x04);
    /// `05`: no socket (to be cancelled).
    pub const NO_SOCKET: Self = Self(0x05);
    /// `41`: command not executable now.
    pub const NOT_EXECUTABLE: Self = Self(0x41);

    /// A stable upper-case token for logs.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0x01 => "MESSAGE_LENGTH",
            0x02 => "SYNTAX",
            0x03 => "BUFFER_FULL",
            0x04 => "CANCELLED",
            0x05 => "NO_SOCKET",
            0x41 => "NOT_EXECUTABLE",
            _ => "UNKNOWN",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.name(), self.0)
    }
}

/// A Completion: the command ran, or the answer to an inquiry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// Socket number `z` (1 or 2 for commands, 0 for inquiries).
    socket: u8,
    /// Inquiry data; `data[..len]` is meaningful, the rest is zero.
    data: [u8; MAX_INQUIRY_DATA_LEN],
    /// Length of the inquiry data, at most `MAX_INQUIRY_DATA_LEN`.
    len: u8,
}

impl Completion {
    /// A Completion without data on `socket` (low nibble kept).
    pub const fn new(socket: u8) -> Self {
        Self {
            socket: socket & 0x0F,
            data: [0; MAX_INQUIRY_DATA_LEN],
            len: 0,
        }
    }

    /// A Completion carrying inquiry data, which must fit and must not contain `0xFF`.
    pub fn with_data(socket: u8, data: &[u8]) -> Result<Self, ViscaError> {
        if data.len() > MAX_INQUIRY_DATA_LEN || data.contains(&TERMINATOR) {
            return Err(ViscaError::InquiryData { len: data.len() });
        }
        let mut c = Self::new(socket);
        c.data[..data.len()].copy_from_slice(data);
        c.len = data.len() as u8; // at most MAX_INQUIRY_DATA_LEN, checked above
        Ok(c)
    }

    /// The socket number.
    pub const fn socket(&self) -> u8 {
        self.socket
    }

    /// The inquiry data (empty for a command).
    pub fn data(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("socket", &self.socket)
            .field("data", &self.data())
            .finish()
    }
}

/// What a camera sends back: a VISCA reply (`0x0111`) or a control reply (`0x0201`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// `90 4z FF`: the command was accepted into socket `z`.
    Ack {
        /// Socket number.
        socket: u8,
    },
    /// `90 5z [data] FF`: the command ran (or the inquiry's answer).
    Completion(Completion),
    /// `90 6z ee FF`: the command failed.
    Error {
        /// Socket number (0 for errors before a socket was taken, e.g. syntax).
        socket: u8,
        /// Why.
        code: ErrorCode,
    },
    /// Control reply `01`: RESET (or another control command) done.
    ControlAck,
    /// Control reply `0F ee`: `01` abnormal sequence number, `02` abnormal message.
    ControlError {
        /// The control error code.
        code: u8,
    },
}

impl Reply {
    /// Decodes a datagram from the camera into its sequence number and reply.
    pub fn decode(datagram: &[u8]) -> Result<(u32, Self), ViscaError> {
        let frame = Frame::decode(datagram)?;
        let reply = match frame.payload_type {
            PayloadType::ViscaReply => Self::decode_visca_payload(frame.payload)?,
            PayloadType::ControlReply => Self::decode_control_payload(frame.payload)?,
            payload_type => return Err(ViscaError::NotAReply { payload_type }),
        };
        Ok((frame.seq, reply))
    }

    /// Parses a VISCA reply payload (`0x0111`).
    pub fn decode_visca_payload(payload: &[u8]) -> Result<Self, ViscaError> {
        const KIND: PayloadType = PayloadType::ViscaReply;
        let malformed = |reason| ViscaError::Malformed {
            payload_type: KIND,
            reason,
        };
        let body = strip_terminator(KIND, payload)?;
        let [address, kind, rest @ ..] = body else {
            return Err(malformed("shorter than address, type and terminator"));
        };
        if *address != REPLY_ADDRESS {
            return Err(ViscaError::BadReplyAddress { byte: *address });
        }
        let socket = kind & 0x0F;
        match (kind >> 4, rest) {
            (0x4, []) => Ok(Self::Ack { socket }),
            (0x4, _) => Err(malformed("ACK with data")),
            (0x5, data) => Completion::with_data(socket, data)
                .map(Self::Completion)
                .map_err(|_| malformed("inquiry data too long")),
            (0x6, [code]) => Ok(Self::Error {
                socket,
                code: ErrorCode(*code),
            }),
            (0x6, _) => Err(malformed("error reply without exactly one code byte")),
            _ => Err(ViscaError::UnknownReply { byte: *kind }),
        }
    }

    /// Parses a control reply payload (`0x0201`).
    pub fn decode_control_payload(payload: &[u8]) -> Result<Self, ViscaError> {
        match *payload {
            [0x01] => Ok(Self::ControlAck),
            [0x0F, code] => Ok(Self::ControlError { code }),
            _ => Err(ViscaError::Malformed {
                payload_type: PayloadType::ControlReply,
                reason: "unknown control reply",
            }),
        }
    }

    /// Appends the whole datagram answering message `seq` to `out`.
    pub fn encode(&self, seq: u32, out: &mut Vec<u8>) {
        let payload_type = match self {
            Self::Ack { .. } | Self::Completion(_) | Self::Error { .. } => PayloadType::ViscaReply,
            Self::ControlAck | Self::ControlError { .. } => PayloadType::ControlReply,
        };
        encode_with(out, payload_type, seq, |out| match *self {
            Self::Ack { socket } => {
                out.extend_from_slice(&[REPLY_ADDRESS, 0x40 | (socket & 0x0F), TERMINATOR])
            }
            Self::Completion(c) => {
                out.extend_from_slice(&[REPLY_ADDRESS, 0x50 | c.socket]);
                out.extend_from_slice(c.data());
                out.push(TERMINATOR);
            }
            Self::Error { socket, code } => {
                out.extend_from_slice(&[REPLY_ADDRESS, 0x60 | (socket & 0x0F), code.0, TERMINATOR])
            }
            Self::ControlAck => out.push(0x01),
            Self::ControlError { code } => out.extend_from_slice(&[0x0F, code]),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    /// Every command the codec knows, with every preset, direction and zoom speed, and the
    /// extreme drive speeds.
    fn every_command() -> Vec<Command> {
        let mut all = Vec::new();
        for n in 0..=Preset::MAX {
            all.push(Command::preset_recall(n).unwrap());
            all.push(Command::preset_set(n).unwrap());
            all.push(Command::preset_reset(n).unwrap());
        }
        for direction in Direction::ALL {
            for (pan_speed, tilt_speed) in [
                (PanSpeed::MIN, TiltSpeed::MIN),
                (PanSpeed::MAX, TiltSpeed::MAX),
                (PanSpeed::new(0x0C).unwrap(), TiltSpeed::new(0x09).unwrap()),
            ] {
                all.push(Command::PanTilt {
                    direction,
                    pan_speed,
                    tilt_speed,
                });
            }
        }
        all.push(Command::PanTiltStop);
        for s in ZoomSpeed::MIN.get()..=ZoomSpeed::MAX.get() {
            all.push(Command::ZoomTele(ZoomSpeed::new(s).unwrap()));
            all.push(Command::ZoomWide(ZoomSpeed::new(s).unwrap()));
        }
        all.push(Command::ZoomStop);
        all.push(Command::Home);
        all
    }

    /// An exhaustive match: adding a `Command` variant fails to compile here until
    /// `every_command` covers it.
    fn variant(c: &Command) -> usize {
        match c {
            Command::PresetRecall(_) => 0,
            Command::PresetSet(_) => 1,
            Command::PresetReset(_) => 2,
            Command::PanTilt { .. } => 3,
            Command::PanTiltStop => 4,
            Command::ZoomTele(_) => 5,
            Command::ZoomWide(_) => 6,
            Command::ZoomStop => 7,
            Command::Home => 8,
        }
    }

    #[test]
    fn every_command_round_trips() {
        let all = every_command();
        let mut seen = [false; 9];
        let mut datagram = Vec::new();
        for (i, command) in all.iter().enumerate() {
            seen[variant(command)] = true;
            let seq = (i as u32).wrapping_mul(0x9E37_79B9);
            datagram.clear();
            command.encode(seq, &mut datagram);
            let frame = Frame::decode(&datagram).unwrap();
            assert_eq!(frame.payload_type, PayloadType::ViscaCommand);
            assert_eq!(frame.seq, seq);
            assert_eq!(frame.payload[0], CAMERA_ADDRESS);
            assert_eq!(frame.payload.last(), Some(&TERMINATOR));
            assert_eq!(Command::decode_payload(frame.payload).unwrap(), *command);
        }
        assert!(seen.iter().all(|&s| s), "every variant covered: {seen:?}");

        let mut reset = Vec::new();
        ControlCommand::Reset.encode(7, &mut reset);
        let frame = Frame::decode(&reset).unwrap();
        assert_eq!(frame.payload_type, PayloadType::ControlCommand);
        assert_eq!(
            ControlCommand::decode_payload(frame.payload).unwrap(),
            ControlCommand::Reset
        );
    }

    #[test]
    fn commands_encode_to_the_documented_bytes() {
        let bytes = |c: Command, seq| {
            let mut out = Vec::new();
            c.encode(seq, &mut out);
            out
        };
        assert_eq!(
            bytes(Command::preset_recall(0x05).unwrap(), 0x0102_0304),
            [
                0x01, 0x00, 0x00, 0x07, 0x01, 0x02, 0x03, 0x04, //
                0x81, 0x01, 0x04, 0x3F, 0x02, 0x05, 0xFF,
            ]
        );
        let payload = |c: Command| bytes(c, 0)[HEADER_LEN..].to_vec();
        assert_eq!(
            payload(Command::preset_set(0x7F).unwrap()),
            [0x81, 0x01, 0x04, 0x3F, 0x01, 0x7F, 0xFF]
        );
        assert_eq!(
            payload(Command::preset_reset(0).unwrap()),
            [0x81, 0x01, 0x04, 0x3F, 0x00, 0x00, 0xFF]
        );
        assert_eq!(
            payload(Command::PanTilt {
                direction: Direction::UpLeft,
                pan_speed: PanSpeed::MAX,
                tilt_speed: TiltSpeed::MAX,
            }),
            [0x81, 0x01, 0x06, 0x01, 0x18, 0x17, 0x01, 0x01, 0xFF]
        );
        assert_eq!(
            payload(Command::PanTiltStop),
            [0x81, 0x01, 0x06, 0x01, 0x01, 0x01, 0x03, 0x03, 0xFF]
        );
        assert_eq!(
            payload(Command::ZoomTele(ZoomSpeed::new(3).unwrap())),
            [0x81, 0x01, 0x04, 0x07, 0x23, 0xFF]
        );
        assert_eq!(
            payload(Command::ZoomWide(ZoomSpeed::MAX)),
            [0x81, 0x01, 0x04, 0x07, 0x37, 0xFF]
        );
        assert_eq!(
            payload(Command::ZoomStop),
            [0x81, 0x01, 0x04, 0x07, 0x00, 0xFF]
        );
        assert_eq!(payload(Command::Home), [0x81, 0x01, 0x06, 0x04, 0xFF]);
        let mut reset = Vec::new();
        ControlCommand::Reset.encode(0, &mut reset);
        assert_eq!(reset, [0x02, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0x01]);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(matches!(
            Command::preset_recall(0x80),
            Err(ViscaError::PresetOutOfRange { preset: 0x80 })
        ));
        assert!(matches!(
            Command::preset_set(0xFF),
            Err(ViscaError::PresetOutOfRange { preset: 0xFF })
        ));
        assert!(matches!(
            PanSpeed::new(0),
            Err(ViscaError::SpeedOutOfRange {
                axis: Axis::Pan,
                speed: 0,
                ..
            })
        ));
        assert!(TiltSpeed::new(0x18).is_err());
        assert!(ZoomSpeed::new(8).is_err());
        // A camera must not accept them either.
        assert!(matches!(
            Command::decode_payload(&[0x81, 0x01, 0x04, 0x3F, 0x02, 0x80, 0xFF]),
            Err(ViscaError::PresetOutOfRange { preset: 0x80 })
        ));
    }

    /// Valid replies of every kind, as datagrams.
    fn valid_replies() -> Vec<Vec<u8>> {
        let replies = [
            Reply::Ack { socket: 1 },
            Reply::Completion(Completion::new(1)),
            Reply::Completion(Completion::with_data(0, &[0x00, 0x01, 0x7E]).unwrap()),
            Reply::Completion(Completion::with_data(0, &[0x0A; MAX_INQUIRY_DATA_LEN]).unwrap()),
            Reply::Error {
                socket: 0,
                code: ErrorCode::MESSAGE_LENGTH,
            },
            Reply::Error {
                socket: 0,
                code: ErrorCode::SYNTAX,
            },
            Reply::Error {
                socket: 0,
                code: ErrorCode::BUFFER_FULL,
            },
            Reply::Error {
                socket: 1,
                code: ErrorCode::CANCELLED,
            },
            Reply::Error {
                socket: 2,
                code: ErrorCode::NO_SOCKET,
            },
            Reply::Error {
                socket: 1,
                code: ErrorCode::NOT_EXECUTABLE,
            },
            Reply::ControlAck,
            Reply::ControlError { code: 0x01 },
            Reply::ControlError { code: 0x02 },
        ];
        replies
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut out = Vec::new();
                r.encode(0xFFFF_FFF0 + i as u32, &mut out);
                let (seq, back) = Reply::decode(&out).unwrap();
                assert_eq!((seq, back), (0xFFFF_FFF0 + i as u32, *r));
                out
            })
            .collect()
    }

    #[test]
    fn replies_decode_from_the_documented_bytes() {
        let datagram = |t: u16, payload: &[u8]| {
            let mut out = Vec::new();
            Frame {
                payload_type: PayloadType::from_u16(t).unwrap(),
                seq: 42,
                payload,
            }
            .encode(&mut out)
            .unwrap();
            out
        };
        let decode = |t, p: &[u8]| Reply::decode(&datagram(t, p));
        assert_eq!(
            decode(0x0111, &[0x90, 0x41, 0xFF]).unwrap(),
            (42, Reply::Ack { socket: 1 })
        );
        assert_eq!(
            decode(0x0111, &[0x90, 0x52, 0xFF]).unwrap(),
            (42, Reply::Completion(Completion::new(2)))
        );
        let (_, inquiry) = decode(0x0111, &[0x90, 0x50, 0x02, 0xFF]).unwrap();
        let Reply::Completion(c) = inquiry else {
            panic!("{inquiry:?}")
        };
        assert_eq!((c.socket(), c.data()), (0, &[0x02][..]));
        assert_eq!(
            decode(0x0111, &[0x90, 0x61, 0x41, 0xFF]).unwrap(),
            (
                42,
                Reply::Error {
                    socket: 1,
                    code: ErrorCode::NOT_EXECUTABLE
                }
            )
        );
        assert_eq!(decode(0x0201, &[0x01]).unwrap(), (42, Reply::ControlAck));
        assert_eq!(
            decode(0x0201, &[0x0F, 0x01]).unwrap(),
            (42, Reply::ControlError { code: 0x01 })
        );

        // And the typed errors, with their context.
        assert!(matches!(
            Reply::decode(&[0x01, 0x11, 0x00]),
            Err(ViscaError::ShortHeader { len: 3 })
        ));
        assert!(matches!(
            Reply::decode(&[0x03, 0x00, 0, 1, 0, 0, 0, 0, 0x01]),
            Err(ViscaError::UnknownPayloadType { value: 0x0300 })
        ));
        assert!(matches!(
            Reply::decode(&[0x01, 0x11, 0, 9, 0, 0, 0, 0, 0x90, 0x41, 0xFF]),
            Err(ViscaError::LengthMismatch {
                declared: 9,
                actual: 3
            })
        ));
        assert!(matches!(
            Reply::decode(&[0x01, 0x11, 0, 0, 0, 0, 0, 0]),
            Err(ViscaError::PayloadLength { len: 0 })
        ));
        assert!(matches!(
            decode(0x0111, &[0x90, 0x41, 0x00]),
            Err(ViscaError::MissingTerminator {
                payload_type: PayloadType::ViscaReply
            })
        ));
        assert!(matches!(
            decode(0x0111, &[0x90, 0x41, 0xFF, 0x00]),
            Err(ViscaError::TrailingBytes { extra: 1, .. })
        ));
        assert!(matches!(
            decode(0x0111, &[0xA0, 0x41, 0xFF]),
            Err(ViscaError::BadReplyAddress { byte: 0xA0 })
        ));
        assert!(matches!(
            decode(0x0111, &[0x90, 0x38, 0xFF]),
            Err(ViscaError::UnknownReply { byte: 0x38 })
        ));
        assert!(matches!(
            decode(0x0100, &[0x81, 0x01, 0x06, 0x04, 0xFF]),
            Err(ViscaError::NotAReply {
                payload_type: PayloadType::ViscaCommand
            })
        ));
    }

    #[test]
    fn every_truncation_of_a_valid_reply_is_an_error() {
        for reply in valid_replies() {
            for cut in 0..reply.len() {
                let short = &reply[..cut];
                assert!(Reply::decode(short).is_err(), "{short:02X?}");
                // The same, with the length field made to agree: the payload itself is cut.
                if cut >= HEADER_LEN {
                    let mut agreed = short.to_vec();
                    agreed[2..4].copy_from_slice(&((cut - HEADER_LEN) as u16).to_be_bytes());
                    assert!(Reply::decode(&agreed).is_err(), "{agreed:02X?}");
                }
            }
        }
    }

    /// A tiny seeded LCG (Knuth's MMIX constants): deterministic, no crate.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as u32
        }

        fn below(&mut self, n: u32) -> u32 {
            self.next() % n
        }

        /// A byte, biased towards the bytes that steer the decoders.
        fn byte(&mut self) -> u8 {
            const INTERESTING: [u8; 12] = [
                0x00, 0x01, 0x0F, 0x41, 0x51, 0x50, 0x61, 0x60, 0x81, 0x90, 0xFF, 0x02,
            ];
            if self.below(2) == 0 {
                INTERESTING[self.below(INTERESTING.len() as u32) as usize]
            } else {
                self.next() as u8
            }
        }
    }

    /// Runs every decoder on `bytes`; a panic is reported with the input that caused it.
    /// Returns the reply `Reply::decode` made of it, if any.
    fn decode_everything(bytes: &[u8]) -> Option<Reply> {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let _ = Header::decode(bytes);
            let _ = Frame::decode(bytes);
            let _ = Command::decode_payload(bytes);
            let _ = ControlCommand::decode_payload(bytes);
            let _ = Reply::decode_visca_payload(bytes);
            let _ = Reply::decode_control_payload(bytes);
            let reply = Reply::decode(bytes);
            if let Ok((seq, reply)) = reply {
                // A reply the decoder accepts is canonical: it encodes back to the same bytes.
                let mut again = Vec::new();
                reply.encode(seq, &mut again);
                assert_eq!(again, bytes, "{reply:?}");
            }
            reply.ok().map(|(_, reply)| reply)
        }));
        match outcome {
            Ok(reply) => reply,
            Err(_) => panic!("a decoder panicked on {bytes:02X?}"),
        }
    }

    #[test]
    fn decoders_never_panic_on_pseudo_random_datagrams() {
        const TYPES: [u16; 7] = [0x0100, 0x0110, 0x0111, 0x0120, 0x0200, 0x0201, 0x0111];
        let mut rng = Lcg(0x5EED_D0E7);
        // How many datagrams decoded to each kind of reply.
        let mut accepted = [0; 5];
        let mut bytes = Vec::with_capacity(64);
        for _ in 0..200_000 {
            bytes.clear();
            // Mostly short payloads, like real replies; sometimes up to past the limit.
            let payload_len = if rng.below(2) == 0 {
                1 + rng.below(5) as usize
            } else {
                rng.below(MAX_PAYLOAD_LEN as u32 + 4) as usize
            };
            match rng.below(4) {
                // Raw noise.
                0 => bytes.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
                // A plausible header, length field right or wrong, then a biased payload.
                _ => {
                    let t = TYPES[rng.below(TYPES.len() as u32) as usize];
                    let declared = if rng.below(4) == 0 {
                        rng.next() as u16
                    } else {
                        payload_len as u16
                    };
                    bytes.extend_from_slice(&t.to_be_bytes());
                    bytes.extend_from_slice(&declared.to_be_bytes());
                    bytes.extend_from_slice(&rng.next().to_be_bytes());
                    if t == 0x0111 && rng.below(2) == 0 {
                        bytes.push(REPLY_ADDRESS);
                    }
                    while bytes.len() < HEADER_LEN + payload_len {
                        bytes.push(rng.byte());
                    }
                    if payload_len > 0 && rng.below(2) == 0 {
                        bytes[HEADER_LEN + payload_len - 1] = TERMINATOR;
                    }
                }
            }
            let kind = match decode_everything(&bytes) {
                None => continue,
                Some(Reply::Ack { .. }) => 0,
                Some(Reply::Completion(_)) => 1,
                Some(Reply::Error { .. }) => 2,
                Some(Reply::ControlAck) => 3,
                Some(Reply::ControlError { .. }) => 4,
            };
            accepted[kind] += 1;
        }
        // The generator reaches past the framing checks: every kind of reply was decoded, so
        // the deep paths were exercised too.
        assert!(accepted.iter().all(|&n| n > 0), "{accepted:?}");
    }

    #[test]
    fn decoders_never_panic_on_mutated_valid_replies() {
        let mut rng = Lcg(42);
        for reply in valid_replies() {
            for _ in 0..2_000 {
                let mut bytes = reply.clone();
                for _ in 0..=rng.below(3) {
                    let i = rng.below(bytes.len() as u32) as usize;
                    bytes[i] = rng.byte();
                }
                decode_everything(&bytes);
            }
        }
    }
}
