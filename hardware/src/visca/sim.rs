//! [`ViscaSimulator`]: a PTZ camera that speaks VISCA over IP on a real UDP socket.
//!
//! For tests, here and in the recorder: a physical camera cannot run on a build machine, so
//! this one answers the same datagrams a Sony camera would, through the same codec.
//!
//! # What it does
//! - Valid command: ACK then Completion (socket 1), after executing it.
//! - Recall of a preset that was never set: Error `41` (not executable), no ACK. (A real camera
//!   may move somewhere instead; refusing catches a recorder that recalls what it never set.)
//! - Unknown or malformed command payload: Error `02` (syntax); header length field wrong:
//!   Error `01` (message length). Both on socket 0, without ACK.
//! - Inquiries: Error `02`, the simulator knows none.
//! - A command carrying the sequence number of the last command it answered is a
//!   retransmission: the same replies go out again and nothing executes twice.
//! - RESET (control `01`): forgets the last sequence number, answers control ACK; any other
//!   control payload gets control error `0F 02`.
//! - Datagrams shorter than a header, of another payload type, or replies: ignored.
//!
//! There is no motor: a pan-tilt drive moves the head by its speed at once, a zoom by
//! `ZOOM_STEP` per speed step, so positions are exact and tests need no clock.
//!
//! # Invariants
//! The state sits behind a `std` mutex held only while a datagram is answered or a hook runs,
//! never across an await. The task is owned by the handle and aborted when it drops.
//!
//! # How to drive it
//! `ViscaSimulator::start("127.0.0.1:0".parse()?)`, point a [`ViscaClient`](super::ViscaClient)
//! at [`local_addr`](ViscaSimulator::local_addr), use the hooks to lose or garble replies and to
//! read what the camera did.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info_span, warn};

use super::ViscaError;
use super::codec::{
    Command, Completion, ControlCommand, Direction, ErrorCode, Frame, Header, PayloadType, Preset,
    Reply,
};

/// Pan limits in camera units (Sony's ±170°).
pub const PAN_RANGE: (i32, i32) = (-2448, 2448);
/// Tilt limits in camera units (Sony's −30° to +90°).
pub const TILT_RANGE: (i32, i32) = (-432, 1296);
/// Zoom limits, wide to tele.
pub const ZOOM_RANGE: (i32, i32) = (0, 0x4000);
/// Zoom units per zoom command and per speed step (speed `p` moves `(p + 1) * ZOOM_STEP`).
pub const ZOOM_STEP: i32 = 0x100;

/// Where the simulated head points.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PtzPosition {
    /// Pan, negative is left.
    pub pan: i32,
    /// Tilt, negative is down.
    pub tilt: i32,
    /// Zoom, 0 is widest.
    pub zoom: i32,
}

/// Garbage the simulator sends before a real reply, in turn: undecodable datagrams of each
/// kind the client must skip.
///
/// A sixth kind, decodable but stale, follows them: an Error reply to another sequence number,
/// which the client must not take for the answer to its own message.
const GARBAGE: [&[u8]; 5] = [
    // Shorter than a header.
    &[0xDE, 0xAD, 0xBE],
    // Unknown payload type.
    &[0x09, 0x99, 0x00, 0x03, 0, 0, 0, 0, 0x90, 0x41, 0xFF],
    // The length field says 64 bytes.
    &[0x01, 0x11, 0x00, 0x40, 0, 0, 0, 0, 0x90, 0x41, 0xFF],
    // No terminator.
    &[0x01, 0x11, 0x00, 0x03, 0, 0, 0, 0, 0x90, 0x51, 0x00],
    // An unknown reply type (3: network change, serial VISCA only).
    &[0x01, 0x11, 0x00, 0x03, 0, 0, 0, 0, 0x90, 0x38, 0xFF],
];

/// The camera's state and the test hooks' counters.
#[derive(Debug, Default)]
struct SimState {
    /// Where the head points.
    position: PtzPosition,
    /// Stored presets.
    presets: BTreeMap<Preset, PtzPosition>,
    /// The last command answered and its replies, to answer a retransmission again.
    last: Option<(u32, Vec<Vec<u8>>)>,
    /// Commands executed (not retransmissions, not refused ones).
    commands_executed: u64,
    /// Sequence numbers of every VISCA command datagram received, retransmissions included.
    received: Vec<u32>,
    /// Reply datagrams still to lose.
    drop_replies: u32,
    /// Garbage datagrams still to send before the next answer.
    garbage_pending: u32,
    /// Garbage datagrams sent so far, to pick the next kind (the [`GARBAGE`] ones, then a stale
    /// reply).
    garbage_sent: usize,
}

impl SimState {
    /// The datagrams that answer `datagram`, after the hooks (losses, garbage) applied.
    fn answer(&mut self, datagram: &[u8]) -> Vec<Vec<u8>> {
        let replies = self.replies(datagram);
        let mut out = Vec::with_capacity(replies.len() + self.garbage_pending as usize);
        if let Some((seq, _)) = replies.first().and_then(|r| Reply::decode(r).ok()) {
            for _ in 0..std::mem::take(&mut self.garbage_pending) {
                let garbage = match GARBAGE.get(self.garbage_sent % (GARBAGE.len() + 1)) {
                    Some(garbage) => garbage.to_vec(),
                    None => error_reply(seq ^ 0x8000_0000, 1, ErrorCode::NOT_EXECUTABLE),
                };
                out.push(garbage);
                self.garbage_sent += 1;
            }
        }
        for reply in replies {
            if self.drop_replies > 0 {
                self.drop_replies -= 1;
                debug!("losing a reply, as asked");
            } else {
                out.push(reply);
            }
        }
        out
    }

    /// What a camera answers to `datagram`.
    fn replies(&mut self, datagram: &[u8]) -> Vec<Vec<u8>> {
        let header = match Header::decode(datagram) {
            Ok(header) => header,
            Err(error) => {
                debug!(%error, "ignoring a datagram");
                return Vec::new();
            }
        };
        let seq = header.seq;
        match header.payload_type {
            PayloadType::ViscaCommand => {
                self.received.push(seq);
                if let Some((last_seq, replies)) = &self.last
                    && *last_seq == seq
                {
                    debug!(seq, "retransmission: answering again without executing");
                    return replies.clone();
                }
                let replies = match Frame::decode(datagram) {
                    Err(_) => vec![error_reply(seq, 0, ErrorCode::MESSAGE_LENGTH)],
                    Ok(frame) => match Command::decode_payload(frame.payload) {
                        Err(error) => {
                            debug!(seq, %error, "syntax error");
                            vec![error_reply(seq, 0, ErrorCode::SYNTAX)]
                        }
                        Ok(command) => match self.execute(command) {
                            Ok(()) => vec![
                                encode(seq, Reply::Ack { socket: 1 }),
                                encode(seq, Reply::Completion(Completion::new(1))),
                            ],
                            Err(code) => vec![error_reply(seq, 1, code)],
                        },
                    },
                };
                self.last = Some((seq, replies.clone()));
                replies
            }
            PayloadType::ViscaInquiry => vec![error_reply(seq, 0, ErrorCode::SYNTAX)],
            PayloadType::ControlCommand => {
                let reset = Frame::decode(datagram)
                    .and_then(|frame| ControlCommand::decode_payload(frame.payload));
                match reset {
                    Ok(ControlCommand::Reset) => {
                        debug!(seq, "RESET: forgetting the last sequence number");
                        self.last = None;
                        vec![encode(seq, Reply::ControlAck)]
                    }
                    Err(_) => vec![encode(seq, Reply::ControlError { code: 0x02 })],
                }
            }
            PayloadType::DeviceSetting | PayloadType::ViscaReply | PayloadType::ControlReply => {
                debug!(seq, payload_type = %header.payload_type, "ignoring a datagram");
                Vec::new()
            }
        }
    }

    /// Runs `command` on the simulated head.
    fn execute(&mut self, command: Command) -> Result<(), ErrorCode> {
        let p = &mut self.position;
        match command {
            Command::PresetSet(n) => {
                self.presets.insert(n, *p);
            }
            Command::PresetReset(n) => {
                self.presets.remove(&n);
            }
            Command::PresetRecall(n) => {
                *p = *self.presets.get(&n).ok_or(ErrorCode::NOT_EXECUTABLE)?;
            }
            Command::PanTilt {
                direction,
                pan_speed,
                tilt_speed,
            } => {
                let (dx, dy) = match direction {
                    Direction::Up => (0, 1),
                    Direction::Down => (0, -1),
                    Direction::Left => (-1, 0),
                    Direction::Right => (1, 0),
                    Direction::UpLeft => (-1, 1),
                    Direction::UpRight => (1, 1),
                    Direction::DownLeft => (-1, -1),
                    Direction::DownRight => (1, -1),
                };
                p.pan = (p.pan + dx * i32::from(pan_speed.get())).clamp(PAN_RANGE.0, PAN_RANGE.1);
                p.tilt =
                    (p.tilt + dy * i32::from(tilt_speed.get())).clamp(TILT_RANGE.0, TILT_RANGE.1);
            }
            Command::ZoomTele(s) => {
                p.zoom = (p.zoom + zoom_step(s.get())).clamp(ZOOM_RANGE.0, ZOOM_RANGE.1);
            }
            Command::ZoomWide(s) => {
                p.zoom = (p.zoom - zoom_step(s.get())).clamp(ZOOM_RANGE.0, ZOOM_RANGE.1);
            }
            Command::PanTiltStop | Command::ZoomStop => {}
            Command::Home => {
                p.pan = 0;
                p.tilt = 0;
            }
        }
        self.commands_executed += 1;
        Ok(())
    }
}

fn zoom_step(speed: u8) -> i32 {
    (i32::from(speed) + 1) * ZOOM_STEP
}

fn encode(seq: u32, reply: Reply) -> Vec<u8> {
    let mut out = Vec::new();
    reply.encode(seq, &mut out);
    out
}

fn error_reply(seq: u32, socket: u8, code: ErrorCode) -> Vec<u8> {
    encode(seq, Reply::Error { socket, code })
}

/// A running simulated camera; the handle owns the task and stops it on drop.
#[derive(Debug)]
pub struct ViscaSimulator {
    /// Where it listens.
    local_addr: SocketAddr,
    /// Shared with the task; locked briefly, never across an await.
    state: Arc<Mutex<SimState>>,
    /// The task answering datagrams; aborted on drop.
    task: JoinHandle<()>,
}

impl ViscaSimulator {
    /// Binds `bind_addr` (e.g. `127.0.0.1:0`) and starts answering on the current tokio runtime.
    pub async fn start(bind_addr: SocketAddr) -> Result<Self, ViscaError> {
        let socket = UdpSocket::bind(bind_addr)
            .await
            .map_err(|source| ViscaError::Io { op: "bind", source })?;
        let local_addr = socket.local_addr().map_err(|source| ViscaError::Io {
            op: "local_addr",
            source,
        })?;
        let state = Arc::new(Mutex::new(SimState::default()));
        let task = tokio::spawn(
            serve(socket, Arc::clone(&state))
                .instrument(info_span!("visca_sim", addr = %local_addr)),
        );
        Ok(Self {
            local_addr,
            state,
            task,
        })
    }

    /// Where the simulated camera listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Loses the next `n` reply datagrams (added to any still pending).
    pub fn drop_next_replies(&self, n: u32) {
        let mut state = self.state();
        state.drop_replies = state.drop_replies.saturating_add(n);
    }

    /// Sends one garbage datagram before the next answer (calls add up; kinds rotate).
    pub fn inject_garbage_reply(&self) {
        self.state().garbage_pending += 1;
    }

    /// Where the head points.
    pub fn position(&self) -> PtzPosition {
        self.state().position
    }

    /// The position stored as preset `n`, if any.
    pub fn preset(&self, n: u8) -> Option<PtzPosition> {
        let preset = Preset::new(n).ok()?;
        self.state().presets.get(&preset).copied()
    }

    /// Commands executed: retransmissions and refused commands do not count.
    pub fn commands_executed(&self) -> u64 {
        self.state().commands_executed
    }

    /// The sequence number of every VISCA command datagram received, in order, retransmissions
    /// included.
    pub fn received_sequence_numbers(&self) -> Vec<u32> {
        self.state().received.clone()
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters to a test, so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ViscaSimulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, state: Arc<Mutex<SimState>>) {
    let mut buf = vec![0; 1500];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                warn!(%error, "recv failed");
                // Not a spin if the error repeats.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let out = state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .answer(&buf[..n]);
        for datagram in out {
            if let Err(error) = socket.send_to(&datagram, peer).await {
                warn!(%error, %peer, "send failed");
            }
        }
    }
}
