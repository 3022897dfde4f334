//! [`ViscaClient`]: one PTZ camera over VISCA over IP (a tokio UDP socket).
//!
//! # What it owns
//! A UDP socket connected to the camera (the kernel drops datagrams from anyone else), the
//! sequence counter, and a `camera` tracing span carrying the camera's address.
//!
//! # Invariants
//! - **One message in flight.** A camera executes commands one after another, and every method
//!   that talks to it takes `&mut self`, so a client cannot overlap two exchanges. Share a camera
//!   between tasks by giving one task the client and sending it requests.
//! - Every message gets a fresh sequence number (wrapping). A retransmission resends **the same
//!   datagram**, same sequence number, byte for byte, so a camera that already executed it answers
//!   again without moving twice.
//! - Only a reply carrying the sequence number of the message in flight counts. Replies to older
//!   messages (late answers to a retransmitted one) are skipped; so are datagrams that do not
//!   decode, with a log line; neither panics nor resets the deadline.
//! - Dropping a pending `send` (e.g. under an outer timeout) leaves the client usable: the
//!   abandoned message's late replies carry its old sequence number and are skipped.
//!
//! # The exchange
//! Send; wait up to `ack_timeout_ms` for the ACK; then up to `completion_timeout_ms` for the
//! Completion (a preset recall completes when the head arrives). If a wait runs out, resend and
//! wait again, up to `retransmits` times, then fail with [`ViscaError::Timeout`]. A Completion
//! without its ACK (the ACK was lost) is accepted. An Error reply ends the exchange with
//! [`ViscaError::Camera`]. ICMP "port unreachable" counts as a lost datagram, so a camera that is
//! off times out like one that is unplugged. Time is `tokio::time`, so tests may pause it.
//!
//! # How to drive it
//! [`ViscaClient::connect`], then [`ViscaClient::reset`] once (so a camera that remembers the
//! last sequence number of a previous run does not take our first command for a retransmission),
//! then [`ViscaClient::send`] per command.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};
use tracing::{Instrument, Span, debug, debug_span, info_span, warn};

use super::ViscaError;
use super::codec::{Command, Completion, ControlCommand, Frame, PayloadType, Reply};

/// Timeouts and retransmissions of a [`ViscaClient`] (`[visca]` in a recorder's config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViscaClientConfig {
    /// Milliseconds to wait for the ACK (or any answer) before resending. A camera on the school
    /// LAN answers within a few milliseconds.
    pub ack_timeout_ms: u64,
    /// Milliseconds to wait for the Completion after the ACK before resending. A preset recall
    /// completes when the head arrives, which takes seconds at slow speeds.
    pub completion_timeout_ms: u64,
    /// How many times a message is resent before [`ViscaError::Timeout`]; the first
    /// transmission is not counted.
    pub retransmits: u32,
}

impl Default for ViscaClientConfig {
    fn default() -> Self {
        Self {
            ack_timeout_ms: 200,
            completion_timeout_ms: 10_000,
            retransmits: 3,
        }
    }
}

impl ViscaClientConfig {
    /// Checks the values for consistency.
    pub fn validate(&self) -> Result<(), ViscaError> {
        if self.ack_timeout_ms == 0 {
            return Err(ViscaError::InvalidConfig {
                field: "ack_timeout_ms",
                reason: "must be at least 1",
            });
        }
        if self.completion_timeout_ms < self.ack_timeout_ms {
            return Err(ViscaError::InvalidConfig {
                field: "completion_timeout_ms",
                reason: "must not be below ack_timeout_ms",
            });
        }
        Ok(())
    }
}

/// Longer than any valid datagram, so an oversized one is seen whole enough to be refused.
const RECV_BUFFER_LEN: usize = 1500;

/// A connection to one VISCA-over-IP camera. See the [module documentation](self).
#[derive(Debug)]
pub struct ViscaClient {
    /// Connected to the camera: only its datagrams arrive here.
    socket: UdpSocket,
    /// The camera, for logs and errors.
    camera: SocketAddr,
    /// Timeouts and retransmissions, validated.
    config: ViscaClientConfig,
    /// Sequence number of the next message; wraps.
    next_seq: u32,
    /// The datagram in flight; a retransmission resends exactly these bytes.
    tx: Vec<u8>,
    /// Receive buffer, reused.
    rx: Vec<u8>,
    /// `camera{addr}`: every exchange runs inside it (and inside a debug-level child span per
    /// message, which may be disabled; entering both keeps the camera on every log line).
    span: Span,
}

/// What ends an exchange successfully.
enum Done {
    /// A VISCA command completed.
    Completion(Completion),
    /// A control command was acknowledged.
    ControlAck,
}

impl ViscaClient {
    /// A client for the camera at `camera` (usually port [`VISCA_PORT`](super::codec::VISCA_PORT))
    /// with the default configuration. Sends nothing.
    pub async fn connect(camera: SocketAddr) -> Result<Self, ViscaError> {
        Self::connect_with(camera, ViscaClientConfig::default()).await
    }

    /// A client for the camera at `camera` with `config`. Sends nothing.
    pub async fn connect_with(
        camera: SocketAddr,
        config: ViscaClientConfig,
    ) -> Result<Self, ViscaError> {
        config.validate()?;
        let local: SocketAddr = match camera {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let io = |op| move |source| ViscaError::Io { op, source };
        let socket = UdpSocket::bind(local).await.map_err(io("bind"))?;
        socket.connect(camera).await.map_err(io("connect"))?;
        Ok(Self {
            socket,
            camera,
            config,
            next_seq: 0,
            tx: Vec::with_capacity(super::codec::MAX_DATAGRAM_LEN),
            rx: vec![0; RECV_BUFFER_LEN],
            span: info_span!("camera", addr = %camera),
        })
    }

    /// The camera's address.
    pub fn camera(&self) -> SocketAddr {
        self.camera
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> Result<SocketAddr, ViscaError> {
        self.socket.local_addr().map_err(|source| ViscaError::Io {
            op: "local_addr",
            source,
        })
    }

    /// The sequence number the next message will carry.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// Sends RESET: the camera forgets the last sequence number it executed, and this client
    /// starts again at 0.
    pub async fn reset(&mut self) -> Result<(), ViscaError> {
        let seq = self.take_seq();
        self.tx.clear();
        ControlCommand::Reset.encode(seq, &mut self.tx);
        let span = debug_span!(parent: &self.span, "visca_reset", seq);
        let camera = self.span.clone();
        self.exchange(seq, PayloadType::ControlCommand)
            .instrument(span)
            .instrument(camera)
            .await?;
        self.next_seq = 0;
        Ok(())
    }

    /// Sends `command` and waits for its Completion (see the [module documentation](self)).
    pub async fn send(&mut self, command: Command) -> Result<Completion, ViscaError> {
        let seq = self.take_seq();
        self.tx.clear();
        command.encode(seq, &mut self.tx);
        let span = debug_span!(parent: &self.span, "visca_command", seq, ?command);
        let camera = self.span.clone();
        self.exchange_command(seq)
            .instrument(span)
            .instrument(camera)
            .await
    }

    /// Sends a VISCA command payload the codec does not model (address byte to `0xFF`) and
    /// waits for its Completion. The bytes go as they are, the camera judges them; only the
    /// length is checked (`1..=16`, else [`ViscaError::PayloadLength`], nothing sent).
    pub async fn send_raw(&mut self, payload: &[u8]) -> Result<Completion, ViscaError> {
        let frame = Frame {
            payload_type: PayloadType::ViscaCommand,
            seq: self.next_seq,
            payload,
        };
        self.tx.clear();
        frame.encode(&mut self.tx)?;
        let seq = self.take_seq();
        let span = debug_span!(parent: &self.span, "visca_command", seq, raw = ?payload);
        let camera = self.span.clone();
        self.exchange_command(seq)
            .instrument(span)
            .instrument(camera)
            .await
    }

    fn take_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        seq
    }

    async fn exchange_command(&mut self, seq: u32) -> Result<Completion, ViscaError> {
        match self.exchange(seq, PayloadType::ViscaCommand).await? {
            Done::Completion(c) => Ok(c),
            Done::ControlAck => unreachable!("exchange ends a VISCA command only on a Completion"),
        }
    }

    /// Sends `self.tx` (message `seq` of `kind`) until it is answered or the attempts run out.
    async fn exchange(&mut self, seq: u32, kind: PayloadType) -> Result<Done, ViscaError> {
        let attempts = self.config.retransmits.saturating_add(1);
        let ack_timeout = Duration::from_millis(self.config.ack_timeout_ms);
        let completion_timeout = Duration::from_millis(self.config.completion_timeout_ms);
        for attempt in 1..=attempts {
            if attempt > 1 {
                debug!(attempt, "no answer in time, resending the same datagram");
            }
            match self.socket.send(&self.tx).await {
                Ok(_) => {}
                // ICMP from an earlier datagram: the camera is not listening (yet). Lost.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    debug!(error = %e, "camera unreachable");
                }
                Err(source) => return Err(ViscaError::Io { op: "send", source }),
            }
            let mut deadline = Instant::now() + ack_timeout;
            loop {
                let n = match timeout_at(deadline, self.socket.recv(&mut self.rx)).await {
                    Err(_elapsed) => break,
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        debug!(error = %e, "camera unreachable");
                        continue;
                    }
                    Ok(Err(source)) => return Err(ViscaError::Io { op: "recv", source }),
                };
                let (reply_seq, reply) = match Reply::decode(&self.rx[..n]) {
                    Ok(decoded) => decoded,
                    Err(error) => {
                        warn!(%error, len = n, "skipping a datagram that is not a reply");
                        continue;
                    }
                };
                if reply_seq != seq {
                    debug!(reply_seq, ?reply, "skipping a stale reply");
                    continue;
                }
                match (kind, reply) {
                    (PayloadType::ViscaCommand, Reply::Ack { .. }) => {
                        deadline = Instant::now() + completion_timeout;
                    }
                    (PayloadType::ViscaCommand, Reply::Completion(c)) => {
                        return Ok(Done::Completion(c));
                    }
                    (PayloadType::ViscaCommand, Reply::Error { code, .. }) => {
                        return Err(ViscaError::Camera { seq, code });
                    }
                    (PayloadType::ControlCommand, Reply::ControlAck) => {
                        return Ok(Done::ControlAck);
                    }
                    (_, Reply::ControlError { code }) => {
                        return Err(ViscaError::ControlRejected { seq, code });
                    }
                    // A reply of the other kind with our number answers an older message.
                    (_, reply) => debug!(?reply, "skipping a reply of the other kind"),
                }
            }
        }
        Err(ViscaError::Timeout { seq, attempts })
    }
}
