//! Link shaping in userspace: a small TURN relay that shapes what passes through it like `netem`
//! and `tbf` would, for tests that need a rural classroom's link (乡村课堂的网络) on a machine
//! that cannot shape one in the kernel.
//!
//! # Why
//! This machine's kernel has no `netem` qdisc (nor `fq` or `etf`, nor nftables or an `iptables`
//! binary), and its Chromium has no WebRTC fake-network field trials, so a test cannot delay,
//! drop or throttle a page's packets below the page. Instead the page is made to send all of its
//! WebRTC traffic through a TURN server that this process runs ([`Relay`]): a script injected
//! before the page's own ([`force_relay_script`]) gives every `RTCPeerConnection` the relay as its
//! only ICE server with `iceTransportPolicy: 'relay'`, so every candidate pair of every peer
//! connection (media, RTCP, DTLS, ICE checks and consent) runs through it, and the relay shapes
//! the leg between the page and itself.
//!
//! # What it emulates
//! Each direction of that leg, the downlink (toward the client, the page) and the uplink (from
//! the client toward its peers), has its own [`LinkShape`], and a [`Shaper`] applies it to every
//! datagram the way `netem loss P delay D` behind a `tbf rate R latency Q` would:
//! 1. random loss: each datagram is dropped with probability `loss`, independently (Bernoulli),
//!    from a seeded xorshift generator, so a run repeats;
//! 2. a rate limiter: datagrams are serialized one after another at `rate_bps`, so one departs
//!    at max(arrival, the previous one's end) + its size × 8 / rate; one that would wait longer
//!    than `queue` before its first bit goes out is dropped at the tail (a 200 ms queue is a
//!    typical home router's buffer);
//! 3. a fixed delay, added after the rate limiter (propagation).
//!
//! Datagrams leave in the order they came, also across a change of shape: when a shape with a
//! shorter delay replaces a longer one, later datagrams wait behind the ones already in flight,
//! as they would on a real link. [`Relay::set_shape`] takes effect for the next datagram, so a
//! test can throttle a link, or lift the shaping, in the middle of a run.
//!
//! Everything on the leg is shaped, the relay's own TURN messages included (requests on the
//! uplink, replies and Data indications on the downlink). The size a rate limiter counts is the
//! UDP payload plus 28 bytes of IPv4 and UDP headers.
//!
//! # Limits
//! - Only what goes through the relay is shaped: the signalling WebSocket, HTTP and DevTools are
//!   not, nor the leg from the relay to the peers (the SFU).
//! - Departures are waited for with tokio's timer, which rounds up to the millisecond: each
//!   datagram may leave up to about 1 ms late, and datagrams a rate limiter spaces less than
//!   1 ms apart leave in small bursts at millisecond ticks (the mean rate is exact).
//! - No jitter, reordering, duplication or corruption; loss is not bursty (no Gilbert–Elliott);
//!   the rate limiter has no token bucket (its burst is one datagram).
//! - The TURN server is a subset of RFC 8656 over UDP: Allocate (long-term credentials
//!   [`USERNAME`]/[`PASSWORD`]), Refresh, CreatePermission, ChannelBind, Send and Data
//!   indications, ChannelData. It checks neither request integrity nor permissions, which a test
//!   relay on a private network need not; it has no TCP or TLS transport.
//! - A drop-everything shape also drops ICE consent checks and TURN refreshes: Chromium marks the
//!   connection disconnected after a few seconds of it and fails it after about 30.
//! - Chromium does not use TURN servers on loopback addresses: in a browser test, bind the relay
//!   to the private namespace's [`PEER_IP`](crate::netns::PEER_IP) (`10.200.0.2`).
//!
//! # How to drive it
//! ```no_run
//! # async fn example(browser: &duet_tests::Browser, app_url: &str) -> anyhow::Result<()> {
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use duet_tests::shaper::{LinkShape, Relay};
//!
//! // 300 ms each way, 3 % loss, 1 Mbit/s down and 512 kbit/s up behind 200 ms queues.
//! let rural = |rate| LinkShape {
//!     delay: Duration::from_millis(300),
//!     loss: 0.03,
//!     rate_bps: Some(rate),
//!     ..LinkShape::none()
//! };
//! let addr = SocketAddr::new(duet_tests::netns::PEER_IP.into(), 3478);
//! let relay = Relay::start(addr, rural(1_000_000), rural(512_000)).await?;
//! // Injects `relay.force_relay_script()` before the page's scripts, then navigates.
//! let page = relay.open_page(browser, app_url).await?;
//! // ... the class runs on the rural link ...
//! relay.set_shape(LinkShape::none(), LinkShape::none()); // the link recovers, at once
//! let stats = relay.stats();
//! println!("{} down, {} lost", stats.down.passed, stats.down.dropped());
//! # drop(page);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`LinkShape`], [`Shaper`], [`ShapeStats`]: the shaping, sans-IO: time is an input, so the
//!   unit tests drive it with simulated time.
//! - [`Relay`]: the TURN server around two shapers; one task reads the server socket, one per
//!   allocation reads its relayed socket, and one per direction waits for departures.
//! - [`force_relay_script`]: the page script.
//! - [`Marker`]: optional notes of RTP marker packets as they pass the relay's peer side, which
//!   `g2g-latency` uses to time the SFU from outside.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use rtc::crypto::{HashAlgorithm, HmacAlgorithm, RTCCryptoProvider};
use serde_json::json;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::browser::{Browser, Page};

/// The TURN username the relay accepts (it does not check it).
pub const USERNAME: &str = "duet";
/// The TURN password; with [`USERNAME`] and the realm it keys the relay's MESSAGE-INTEGRITY.
pub const PASSWORD: &str = "duet-relay";

/// What one direction of a link does to the datagrams on it. See the [module docs](self) for
/// the order of the stages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkShape {
    /// Fixed one-way delay, after the rate limiter.
    pub delay: Duration,
    /// Probability, 0 to 1, that a datagram is lost; values outside are clamped, NaN is 0.
    pub loss: f64,
    /// The link's rate in bits per second; `None` is unlimited, `Some(0)` passes nothing.
    pub rate_bps: Option<u64>,
    /// The longest a datagram may wait for the rate limiter before it is dropped instead (the
    /// queue's depth, in time); only with `rate_bps`.
    pub queue: Duration,
}

impl LinkShape {
    /// The queue [`LinkShape::none`] has, for a shape that then sets only a rate.
    pub const DEFAULT_QUEUE: Duration = Duration::from_millis(200);

    /// An unshaped link: no delay, no loss, no rate limit (and a queue of
    /// [`DEFAULT_QUEUE`](Self::DEFAULT_QUEUE) for when a rate is set).
    pub const fn none() -> LinkShape {
        LinkShape {
            delay: Duration::ZERO,
            loss: 0.0,
            rate_bps: None,
            queue: Self::DEFAULT_QUEUE,
        }
    }

    /// Only a fixed delay.
    pub const fn delay(delay: Duration) -> LinkShape {
        LinkShape {
            delay,
            ..LinkShape::none()
        }
    }

    /// A cut link: every datagram is lost.
    pub const fn cut() -> LinkShape {
        LinkShape {
            loss: 1.0,
            ..LinkShape::none()
        }
    }
}

impl Default for LinkShape {
    fn default() -> LinkShape {
        LinkShape::none()
    }
}

/// What a [`Shaper`] did with the datagrams it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShapeStats {
    /// Given a departure time.
    pub passed: u64,
    /// Dropped by random loss.
    pub lost: u64,
    /// Dropped because the rate limiter's queue was full (or the rate is 0).
    pub tail_dropped: u64,
}

impl ShapeStats {
    /// Everything dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        self.lost + self.tail_dropped
    }
}

/// One direction of a link, sans-IO: given each datagram's arrival time and size, it says when
/// the datagram leaves, or that it is dropped. It never reads the clock.
#[derive(Debug, Clone)]
pub struct Shaper {
    /// The shape in force; [`Shaper::set_shape`] replaces it for the next datagram.
    shape: LinkShape,
    /// Draws the losses; seeded, so the same input gives the same drops.
    rng: XorShift,
    /// When the rate limiter finishes serializing the last datagram it took; until then a new
    /// one waits. `None` before the first.
    busy_until: Option<Instant>,
    /// The latest departure given so far, which no later datagram may precede (FIFO), even when
    /// the delay shrinks.
    last_departure: Option<Instant>,
    /// Counts of the decisions.
    stats: ShapeStats,
}

impl Shaper {
    /// A shaper applying `shape`, its losses drawn from a generator seeded with `seed`.
    pub fn new(shape: LinkShape, seed: u64) -> Shaper {
        Shaper {
            shape,
            rng: XorShift::new(seed),
            busy_until: None,
            last_departure: None,
            stats: ShapeStats::default(),
        }
    }

    /// Applies `shape` from the next datagram on. Datagrams already given a departure keep it,
    /// and later ones still leave after them.
    pub fn set_shape(&mut self, shape: LinkShape) {
        self.shape = shape;
    }

    /// The shape in force.
    pub fn shape(&self) -> LinkShape {
        self.shape
    }

    /// The counts so far.
    pub fn stats(&self) -> ShapeStats {
        self.stats
    }

    /// A datagram of `len` bytes arrives at `now` (which must not go backwards between calls):
    /// returns when it leaves the link, never before `now`, or `None` if it is dropped.
    pub fn handle_datagram(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let shape = self.shape;
        // NaN compares false: no loss.
        if shape.loss > 0.0 && self.rng.next_f64() < shape.loss {
            self.stats.lost += 1;
            return None;
        }
        let mut departure = now;
        if let Some(rate) = shape.rate_bps {
            let start = self.busy_until.map_or(now, |busy| busy.max(now));
            if rate == 0 || start.saturating_duration_since(now) > shape.queue {
                self.stats.tail_dropped += 1;
                return None;
            }
            let done = start + serialization(len, rate);
            self.busy_until = Some(done);
            departure = done;
        }
        departure += shape.delay;
        if let Some(last) = self.last_departure {
            departure = departure.max(last);
        }
        self.last_departure = Some(departure);
        self.stats.passed += 1;
        Some(departure)
    }
}

/// How long `len` bytes take at `rate` bits per second (> 0), rounded up to the nanosecond.
fn serialization(len: usize, rate: u64) -> Duration {
    let nanos = (len as u128 * 8 * 1_000_000_000).div_ceil(u128::from(rate));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// xorshift64* (Marsaglia, Vigna): small, fast and good enough for drawing losses.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // SplitMix64 of the seed, so nearby seeds give unrelated streams and 0 is a fine seed.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The state must not be 0.
        XorShift(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The script that sends every peer connection a page makes through the TURN server at `url`
/// (e.g. `turn:10.200.0.2:3478?transport=udp`) with `username` and `credential`, and through
/// nothing else (`iceTransportPolicy: 'relay'`), whatever configuration the page asks for.
///
/// Inject it with CDP's `Page.addScriptToEvaluateOnNewDocument` before the page loads (as
/// [`Relay::open_page`] does). It replaces `window.RTCPeerConnection` with a subclass; a script
/// injected after it that wraps `RTCPeerConnection` again keeps the relay. Running it twice in a
/// document does nothing the second time; `window.__duetRelay` holds the server it forces.
pub fn force_relay_script(url: &str, username: &str, credential: &str) -> String {
    let server = json!({ "urls": url, "username": username, "credential": credential });
    FORCE_RELAY_SCRIPT.replace("__SERVER__", &server.to_string())
}

/// [`force_relay_script`]'s template; `__SERVER__` becomes the RTCIceServer as JSON.
const FORCE_RELAY_SCRIPT: &str = r#"
(function () {
  'use strict';
  if (window.__duetRelay || !window.RTCPeerConnection) return;
  var server = __SERVER__;
  var Native = window.RTCPeerConnection;
  var force = function (conf) {
    var c = Object.assign({}, conf || {});
    c.iceServers = [server];
    c.iceTransportPolicy = 'relay';
    return c;
  };
  var Relayed = class RTCPeerConnection extends Native {
    constructor(conf, ...rest) { super(force(conf), ...rest); }
    setConfiguration(conf) { return super.setConfiguration(force(conf)); }
  };
  window.RTCPeerConnection = Relayed;
  if (window.webkitRTCPeerConnection) window.webkitRTCPeerConnection = Relayed;
  window.__duetRelay = server;
})();
"#;

/// Seeds of the two directions' loss generators.
const DOWN_SEED: u64 = 0xD0;
const UP_SEED: u64 = 0x0B;
/// IPv4 and UDP headers, which a rate limiter counts with each datagram's payload.
const IP_UDP_OVERHEAD: usize = 28;
/// The largest datagram from a peer the relay forwards: with a Data indication's headers it
/// still fits in a STUN message (64 KiB).
const MAX_RELAYED: usize = 65_000;
/// Marker notes kept per direction at most.
const MAX_MARKERS: usize = 1_000_000;

const REALM: &str = "duet-test";
const NONCE: &str = "duet-nonce-0001";
const COOKIE: u32 = 0x2112_A442;

const BINDING: u16 = 0x001;
const ALLOCATE: u16 = 0x003;
const REFRESH: u16 = 0x004;
const SEND: u16 = 0x006;
const DATA: u16 = 0x007;
const CREATE_PERMISSION: u16 = 0x008;
const CHANNEL_BIND: u16 = 0x009;
const REQUEST: u16 = 0;
const INDICATION: u16 = 1;
const SUCCESS: u16 = 2;
const ERROR: u16 = 3;

const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_CHANNEL_NUMBER: u16 = 0x000C;
const ATTR_LIFETIME: u16 = 0x000D;
const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
const ATTR_DATA: u16 = 0x0013;
const ATTR_REALM: u16 = 0x0014;
const ATTR_NONCE: u16 = 0x0015;
const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// The counts of both directions of a [`Relay`]'s link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Toward the client: ChannelData, Data indications and the relay's replies.
    pub down: ShapeStats,
    /// From the client: everything it sends the relay.
    pub up: ShapeStats,
}

/// An RTP packet with the marker bit (the last packet of a video frame), as it passed the
/// relay's peer side.
#[derive(Debug, Clone, Copy)]
pub struct Marker {
    /// When the relay sent it to a peer (uplink) or received it from one (downlink).
    pub at: Instant,
    /// Its RTP timestamp.
    pub timestamp: u32,
}

/// A running TURN relay shaping its clients' link; dropping it stops every task and closes
/// every socket.
pub struct Relay {
    /// Where clients reach it (the bound address, with the port chosen if 0 was asked for).
    addr: SocketAddr,
    /// What the tasks share.
    inner: Arc<Inner>,
    /// The server socket's reader and the two directions' senders.
    tasks: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Binds the relay's server socket to `addr` (relayed addresses get its IP and a free port)
    /// and starts it, shaping the link toward its clients with `down` and from them with `up`.
    pub async fn start(addr: SocketAddr, down: LinkShape, up: LinkShape) -> Result<Relay> {
        let socket = Arc::new(
            UdpSocket::bind(addr)
                .await
                .with_context(|| format!("binding the TURN relay to {addr}"))?,
        );
        let addr = socket.local_addr().context("the TURN relay's address")?;
        let crypto =
            rtc::crypto::default_provider().map_err(|e| anyhow!("no crypto provider: {e}"))?;
        let key = long_term_key(crypto.as_ref())?;
        let (down, down_rx) = Line::new(Shaper::new(down, DOWN_SEED));
        let (up, up_rx) = Line::new(Shaper::new(up, UP_SEED));
        let inner = Arc::new(Inner {
            socket: Arc::clone(&socket),
            key,
            crypto,
            down,
            up,
            markers: Markers::default(),
            allocations: Mutex::new(HashMap::new()),
        });
        let tasks = vec![
            tokio::spawn(read_clients(Arc::clone(&inner))),
            tokio::spawn(send_down(socket, down_rx)),
            tokio::spawn(process_up(Arc::clone(&inner), up_rx)),
        ];
        Ok(Relay { addr, inner, tasks })
    }

    /// Where clients reach the relay.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relay as a TURN URL, `turn:IP:PORT?transport=udp`.
    pub fn url(&self) -> String {
        format!("turn:{}?transport=udp", self.addr)
    }

    /// [`force_relay_script`] for this relay.
    pub fn force_relay_script(&self) -> String {
        force_relay_script(&self.url(), USERNAME, PASSWORD)
    }

    /// Opens `url` in a new page of `browser` whose peer connections all go through this relay.
    pub async fn open_page(&self, browser: &Browser, url: &str) -> Result<Page> {
        let page = browser.new_page("about:blank").await?;
        page.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": self.force_relay_script() }),
        )
        .await?;
        page.navigate(url).await?;
        Ok(page)
    }

    /// Shapes the link toward the clients with `down` and from them with `up`, from the next
    /// datagram on.
    pub fn set_shape(&self, down: LinkShape, up: LinkShape) {
        self.inner.down.lock().shaper.set_shape(down);
        self.inner.up.lock().shaper.set_shape(up);
    }

    /// The shapes in force: (downlink, uplink).
    pub fn shape(&self) -> (LinkShape, LinkShape) {
        (
            self.inner.down.lock().shaper.shape(),
            self.inner.up.lock().shaper.shape(),
        )
    }

    /// What each direction passed and dropped so far, TURN messages included.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            down: self.inner.down.lock().shaper.stats(),
            up: self.inner.up.lock().shaper.stats(),
        }
    }

    /// Starts (or stops) noting the RTP packets with the marker bit that pass the peer side.
    pub fn record_markers(&self, on: bool) {
        self.inner.markers.recording.store(on, Ordering::Relaxed);
    }

    /// The marker packets noted: (client → peers, peers → client).
    pub fn markers(&self) -> (Vec<Marker>, Vec<Marker>) {
        let m = &self.inner.markers;
        (
            m.up.lock()
                .expect("no holder of the marker list panics")
                .clone(),
            m.down
                .lock()
                .expect("no holder of the marker list panics")
                .clone(),
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Aborts the allocations' readers, which hold the last other references to `inner`.
        if let Ok(mut allocations) = self.inner.allocations.lock() {
            allocations.clear();
        }
    }
}

/// What the relay's tasks share.
struct Inner {
    /// The server socket: clients send here, and everything toward them leaves from here.
    socket: Arc<UdpSocket>,
    /// The long-term credential key, MD5(username:realm:password), which signs the replies.
    key: Vec<u8>,
    /// HMAC and MD5.
    crypto: Arc<dyn RTCCryptoProvider>,
    /// Toward the clients: (client, datagram).
    down: Line<(SocketAddr, Vec<u8>)>,
    /// From the clients, processed when they leave the uplink: (client, datagram).
    up: Line<(SocketAddr, Vec<u8>)>,
    /// Optional notes of RTP marker packets.
    markers: Markers,
    /// Each client's relayed address.
    allocations: Mutex<HashMap<SocketAddr, Allocation>>,
}

/// One direction's shaper and the queue to the task that waits for departures, under one lock
/// so that the queue's order is departure order.
struct Line<T> {
    state: Mutex<LineState<T>>,
}

struct LineState<T> {
    shaper: Shaper,
    queue: mpsc::UnboundedSender<(Instant, T)>,
}

impl<T> Line<T> {
    fn new(shaper: Shaper) -> (Line<T>, mpsc::UnboundedReceiver<(Instant, T)>) {
        let (queue, rx) = mpsc::unbounded_channel();
        let state = Mutex::new(LineState { shaper, queue });
        (Line { state }, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LineState<T>> {
        self.state
            .lock()
            .expect("a line's lock is held only for non-panicking bookkeeping")
    }

    /// Queues `item` (a datagram of `len` bytes) for its departure, unless the shaper drops it.
    fn push(&self, len: usize, item: T) {
        let mut line = self.lock();
        if let Some(due) = line
            .shaper
            .handle_datagram(Instant::now(), len + IP_UDP_OVERHEAD)
        {
            // Fails only when the relay is stopping.
            let _ = line.queue.send((due, item));
        }
    }
}

/// Waits until `due`, if it is still ahead.
async fn wait_until(due: Instant) {
    if due > Instant::now() {
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
    }
}

/// Sends the downlink's datagrams to their clients as they leave it.
async fn send_down(
    socket: Arc<UdpSocket>,
    mut rx: mpsc::UnboundedReceiver<(Instant, (SocketAddr, Vec<u8>))>,
) {
    while let Some((due, (client, datagram))) = rx.recv().await {
        wait_until(due).await;
        let _ = socket.send_to(&datagram, client).await;
    }
}

/// Processes the clients' datagrams as they leave the uplink.
async fn process_up(
    inner: Arc<Inner>,
    mut rx: mpsc::UnboundedReceiver<(Instant, (SocketAddr, Vec<u8>))>,
) {
    while let Some((due, (client, datagram))) = rx.recv().await {
        wait_until(due).await;
        process(&inner, client, &datagram).await;
    }
}

/// Puts everything the clients send on the uplink.
async fn read_clients(inner: Arc<Inner>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, client)) = inner.socket.recv_from(&mut buf).await else {
            continue;
        };
        inner.up.push(n, (client, buf[..n].to_vec()));
    }
}

/// Relays a client's data to its peer, or answers its request.
async fn process(inner: &Arc<Inner>, client: SocketAddr, datagram: &[u8]) {
    if datagram.len() >= 4 && datagram[0] & 0xC0 == 0x40 {
        // ChannelData: channel number, length, data.
        let channel = u16::from_be_bytes([datagram[0], datagram[1]]);
        let len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
        let Some(data) = datagram.get(4..4 + len) else {
            return;
        };
        let target = inner.allocation(client, |a| {
            let peer = a.channels().to_peer.get(&channel).copied();
            peer.map(|p| (Arc::clone(&a.relay), p))
        });
        if let Some((relay, peer)) = target.flatten() {
            inner.markers.note(true, data);
            let _ = relay.send_to(data, peer).await;
        }
        return;
    }
    let Some(msg) = Message::parse(datagram) else {
        return;
    };
    if let Some(reply) = handle(inner, client, &msg).await {
        inner.down.push(reply.len(), (client, reply));
    }
}

/// The reply to a STUN message from a client, if it gets one; a Send indication is relayed.
async fn handle(inner: &Arc<Inner>, client: SocketAddr, msg: &Message<'_>) -> Option<Vec<u8>> {
    let (method, class) = (msg.method(), msg.class());
    if class == INDICATION && method == SEND {
        let peer = msg.xor_address(ATTR_XOR_PEER_ADDRESS)?;
        let data = msg.attr(ATTR_DATA)?;
        let relay = inner.allocation(client, |a| Arc::clone(&a.relay))?;
        inner.markers.note(true, data);
        let _ = relay.send_to(data, peer).await;
        return None;
    }
    if class != REQUEST {
        return None;
    }
    if method == BINDING {
        let mut b = Builder::new(BINDING, SUCCESS, msg.txid);
        b.xor_address(ATTR_XOR_MAPPED_ADDRESS, client);
        return Some(b.finish());
    }
    if msg.attr(ATTR_MESSAGE_INTEGRITY).is_none() || msg.attr(ATTR_USERNAME).is_none() {
        let mut b = Builder::new(method, ERROR, msg.txid);
        let mut code = vec![0, 0, 4, 1];
        code.extend_from_slice(b"Unauthorized");
        b.attr(ATTR_ERROR_CODE, &code);
        b.attr(ATTR_REALM, REALM.as_bytes());
        b.attr(ATTR_NONCE, NONCE.as_bytes());
        return Some(b.finish());
    }
    let mut b = Builder::new(method, SUCCESS, msg.txid);
    match method {
        ALLOCATE => {
            let relayed = allocate(inner, client).await?;
            b.xor_address(ATTR_XOR_RELAYED_ADDRESS, relayed);
            b.xor_address(ATTR_XOR_MAPPED_ADDRESS, client);
            b.attr(ATTR_LIFETIME, &600u32.to_be_bytes());
        }
        REFRESH => {
            let lifetime = msg
                .attr(ATTR_LIFETIME)
                .and_then(|v| Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?)))
                .unwrap_or(600);
            if lifetime == 0 {
                inner.allocations().remove(&client);
            }
            b.attr(ATTR_LIFETIME, &lifetime.min(3600).to_be_bytes());
        }
        CREATE_PERMISSION => {}
        CHANNEL_BIND => {
            let number =
                u16::from_be_bytes(msg.attr(ATTR_CHANNEL_NUMBER)?.get(..2)?.try_into().ok()?);
            let peer = msg.xor_address(ATTR_XOR_PEER_ADDRESS)?;
            inner.allocation(client, |a| {
                let mut channels = a.channels();
                channels.to_peer.insert(number, peer);
                channels.to_number.insert(peer, number);
            })?;
        }
        _ => return None,
    }
    b.integrity(&inner.key, inner.crypto.as_ref());
    Some(b.finish())
}

impl Inner {
    fn allocations(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Allocation>> {
        self.allocations
            .lock()
            .expect("the allocations' lock is held only for map operations, which do not panic")
    }

    /// `f` of `client`'s allocation, if it has one.
    fn allocation<R>(&self, client: SocketAddr, f: impl FnOnce(&Allocation) -> R) -> Option<R> {
        self.allocations().get(&client).map(f)
    }
}

/// The client's relayed address: a new UDP socket on the relay's IP, or the one it has.
async fn allocate(inner: &Arc<Inner>, client: SocketAddr) -> Option<SocketAddr> {
    if let Some(relayed) = inner.allocation(client, |a| a.relay.local_addr().ok()) {
        return relayed;
    }
    let bind = SocketAddr::new(inner.socket.local_addr().ok()?.ip(), 0);
    let relay = Arc::new(UdpSocket::bind(bind).await.ok()?);
    let relayed = relay.local_addr().ok()?;
    let channels = Arc::new(Mutex::new(Channels::default()));
    let reader = tokio::spawn(read_peer(
        Arc::downgrade(inner),
        Arc::clone(&relay),
        Arc::clone(&channels),
        client,
    ));
    inner.allocations().insert(
        client,
        Allocation {
            relay,
            channels,
            reader,
        },
    );
    Some(relayed)
}

/// Puts what peers send to `client`'s relayed address on the downlink: as ChannelData when the
/// peer has a channel, else as a Data indication. Holds the relay weakly: the allocation it
/// serves is the relay's, and dropping the relay drops the allocation, which stops this.
async fn read_peer(
    inner: Weak<Inner>,
    relay: Arc<UdpSocket>,
    channels: Arc<Mutex<Channels>>,
    client: SocketAddr,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, peer)) = relay.recv_from(&mut buf).await else {
            continue;
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if n > MAX_RELAYED {
            continue;
        }
        let data = &buf[..n];
        inner.markers.note(false, data);
        let number = lock_channels(&channels).to_number.get(&peer).copied();
        let out = match number {
            Some(number) => {
                let mut out = Vec::with_capacity(4 + n);
                out.extend_from_slice(&number.to_be_bytes());
                out.extend_from_slice(&(n as u16).to_be_bytes());
                out.extend_from_slice(data);
                out
            }
            None => {
                let mut b = Builder::new(DATA, INDICATION, rand::random());
                b.xor_address(ATTR_XOR_PEER_ADDRESS, peer);
                b.attr(ATTR_DATA, data);
                b.finish()
            }
        };
        inner.down.push(out.len(), (client, out));
    }
}

/// One client's relayed address.
struct Allocation {
    /// The relayed address's socket, which sends to the peers and receives from them.
    relay: Arc<UdpSocket>,
    /// Channel number ↔ peer, shared with the socket's reader.
    channels: Arc<Mutex<Channels>>,
    /// The socket's reader, stopped when the allocation goes.
    reader: JoinHandle<()>,
}

impl Allocation {
    fn channels(&self) -> std::sync::MutexGuard<'_, Channels> {
        lock_channels(&self.channels)
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock_channels(channels: &Mutex<Channels>) -> std::sync::MutexGuard<'_, Channels> {
    channels
        .lock()
        .expect("the channels' lock is held only for map operations, which do not panic")
}

/// The channels bound on one allocation, both ways.
#[derive(Default)]
struct Channels {
    to_peer: HashMap<u16, SocketAddr>,
    to_number: HashMap<SocketAddr, u16>,
}

/// Notes of the RTP marker packets passing the relay's peer side, while recording is on.
#[derive(Default)]
struct Markers {
    /// Whether to note them at all (off: one atomic load per datagram).
    recording: AtomicBool,
    /// Sent to peers.
    up: Mutex<Vec<Marker>>,
    /// Received from peers.
    down: Mutex<Vec<Marker>>,
}

impl Markers {
    fn note(&self, up: bool, datagram: &[u8]) {
        if !self.recording.load(Ordering::Relaxed) {
            return;
        }
        let Some(timestamp) = rtp_marker(datagram) else {
            return;
        };
        let list = if up { &self.up } else { &self.down };
        let mut list = list.lock().expect("no holder of the marker list panics");
        if list.len() < MAX_MARKERS {
            list.push(Marker {
                at: Instant::now(),
                timestamp,
            });
        }
    }
}

/// The timestamp of an RTP (not RTCP) packet with the marker bit; the header is in the clear
/// under SRTP.
fn rtp_marker(b: &[u8]) -> Option<u32> {
    if b.len() < 12 || b[0] >> 6 != 2 || b[1] & 0x80 == 0 || (64..96).contains(&(b[1] & 0x7F)) {
        return None;
    }
    Some(u32::from_be_bytes(b[4..8].try_into().ok()?))
}

/// MD5(username:realm:password), the long-term credential key (RFC 8489 §9.2.2).
fn long_term_key(crypto: &dyn RTCCryptoProvider) -> Result<Vec<u8>> {
    let credentials = format!("{USERNAME}:{REALM}:{PASSWORD}");
    crypto
        .crypto()
        .hash(HashAlgorithm::Md5, credentials.as_bytes())
        .map_err(|e| anyhow!("MD5: {e}"))
}

/// A parsed STUN message (header and attributes), borrowing the datagram.
struct Message<'a> {
    typ: u16,
    txid: [u8; 12],
    attrs: Vec<(u16, &'a [u8])>,
}

impl<'a> Message<'a> {
    fn parse(b: &'a [u8]) -> Option<Message<'a>> {
        if b.len() < 20 || b[0] & 0xC0 != 0 {
            return None;
        }
        let typ = u16::from_be_bytes([b[0], b[1]]);
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if u32::from_be_bytes(b[4..8].try_into().ok()?) != COOKIE || b.len() < 20 + len {
            return None;
        }
        let txid = b[8..20].try_into().ok()?;
        let mut attrs = Vec::new();
        let mut rest = &b[20..20 + len];
        while rest.len() >= 4 {
            let t = u16::from_be_bytes([rest[0], rest[1]]);
            let l = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            let value = rest.get(4..4 + l)?;
            attrs.push((t, value));
            rest = rest.get((4 + l).next_multiple_of(4)..).unwrap_or(&[]);
        }
        Some(Message { typ, txid, attrs })
    }

    fn method(&self) -> u16 {
        (self.typ & 0x000F) | ((self.typ & 0x00E0) >> 1) | ((self.typ & 0x3E00) >> 2)
    }

    fn class(&self) -> u16 {
        ((self.typ >> 7) & 0x2) | ((self.typ >> 4) & 0x1)
    }

    fn attr(&self, t: u16) -> Option<&'a [u8]> {
        self.attrs.iter().find(|(at, _)| *at == t).map(|(_, v)| *v)
    }

    fn xor_address(&self, t: u16) -> Option<SocketAddr> {
        let v = self.attr(t)?;
        let port = u16::from_be_bytes(v.get(2..4)?.try_into().ok()?) ^ (COOKIE >> 16) as u16;
        let ip: IpAddr = match v.get(1)? {
            0x01 => {
                let raw = u32::from_be_bytes(v.get(4..8)?.try_into().ok()?) ^ COOKIE;
                Ipv4Addr::from(raw).into()
            }
            0x02 => {
                let mut raw: [u8; 16] = v.get(4..20)?.try_into().ok()?;
                let mask = xor_mask(&self.txid);
                raw.iter_mut().zip(mask).for_each(|(b, m)| *b ^= m);
                Ipv6Addr::from(raw).into()
            }
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    }
}

/// The cookie and transaction id, which IPv6 XOR addresses are masked with.
fn xor_mask(txid: &[u8; 12]) -> [u8; 16] {
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(txid);
    mask
}

/// Builds a STUN message attribute by attribute.
struct Builder {
    buf: Vec<u8>,
    txid: [u8; 12],
}

impl Builder {
    fn new(method: u16, class: u16, txid: [u8; 12]) -> Builder {
        let typ = (method & 0x000F)
            | ((method & 0x0070) << 1)
            | ((method & 0x0F80) << 2)
            | ((class & 1) << 4)
            | ((class & 2) << 7);
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&typ.to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes());
        buf.extend_from_slice(&COOKIE.to_be_bytes());
        buf.extend_from_slice(&txid);
        Builder { buf, txid }
    }

    fn set_length(&mut self, len: usize) {
        let len = u16::try_from(len).expect("callers keep a STUN message under 64 KiB");
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    fn attr(&mut self, t: u16, value: &[u8]) {
        self.buf.extend_from_slice(&t.to_be_bytes());
        let len = u16::try_from(value.len()).expect("callers keep an attribute under 64 KiB");
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
        self.set_length(self.buf.len() - 20);
    }

    fn xor_address(&mut self, t: u16, addr: SocketAddr) {
        let mut v = vec![0u8];
        let port = addr.port() ^ (COOKIE >> 16) as u16;
        match addr.ip() {
            IpAddr::V4(ip) => {
                v.push(0x01);
                v.extend_from_slice(&port.to_be_bytes());
                v.extend_from_slice(&(u32::from(ip) ^ COOKIE).to_be_bytes());
            }
            IpAddr::V6(ip) => {
                v.push(0x02);
                v.extend_from_slice(&port.to_be_bytes());
                let mask = xor_mask(&self.txid);
                v.extend(ip.octets().iter().zip(mask).map(|(b, m)| b ^ m));
            }
        }
        self.attr(t, &v);
    }

    /// MESSAGE-INTEGRITY: HMAC-SHA1 with the long-term key over the message so far, its length
    /// field already counting the attribute.
    fn integrity(&mut self, key: &[u8], crypto: &dyn RTCCryptoProvider) {
        self.set_length(self.buf.len() - 20 + 24);
        let mut mac = [0u8; 20];
        let signed = crypto
            .crypto()
            .new_hmac(HmacAlgorithm::Sha1, key)
            .and_then(|mut h| h.sign(&[&self.buf], &mut mac));
        if signed.is_ok() {
            self.attr(ATTR_MESSAGE_INTEGRITY, &mac);
        }
    }

    fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    // ---- The shaper, with simulated time ----

    #[test]
    fn an_unshaped_link_passes_everything_at_once() {
        let t0 = Instant::now();
        let mut shaper = Shaper::new(LinkShape::none(), 1);
        for i in 0..1_000 {
            let now = t0 + i * MS / 3;
            assert_eq!(shaper.handle_datagram(now, 1_200), Some(now));
        }
        assert_eq!(
            shaper.stats(),
            ShapeStats {
                passed: 1_000,
                ..ShapeStats::default()
            }
        );
    }

    #[test]
    fn delay_is_added_to_every_datagram() {
        let t0 = Instant::now();
        let mut shaper = Shaper::new(LinkShape::delay(150 * MS), 1);
        for i in 0..100 {
            let now = t0 + i * MS;
            assert_eq!(shaper.handle_datagram(now, 100), Some(now + 150 * MS));
        }
    }

    #[test]
    fn loss_drops_its_share_and_nothing_else() {
        let t0 = Instant::now();
        let shape = LinkShape {
            loss: 0.05,
            ..LinkShape::delay(40 * MS)
        };
        let mut shaper = Shaper::new(shape, 7);
        let mut passed = 0;
        for i in 0..20_000 {
            let now = t0 + i * MS;
            if let Some(departure) = shaper.handle_datagram(now, 1_200) {
                assert_eq!(departure, now + 40 * MS);
                passed += 1;
            }
        }
        let stats = shaper.stats();
        // 1,000 expected; the standard deviation is 31.
        assert!((900..=1_100).contains(&stats.lost), "{stats:?}");
        assert_eq!(stats.passed, passed);
        assert_eq!(stats.passed + stats.lost, 20_000);
        assert_eq!(stats.tail_dropped, 0);
    }

    #[test]
    fn losses_repeat_with_the_seed_and_differ_without_it() {
        let drops = |seed| {
            let t0 = Instant::now();
            let mut shaper = Shaper::new(
                LinkShape {
                    loss: 0.3,
                    ..LinkShape::none()
                },
                seed,
            );
            (0..1_000)
                .map(|i| shaper.handle_datagram(t0 + i * MS, 100).is_none())
                .collect::<Vec<_>>()
        };
        assert_eq!(drops(3), drops(3));
        assert_ne!(drops(3), drops(4));
    }

    #[test]
    fn loss_out_of_range_is_clamped() {
        let t0 = Instant::now();
        let mut all = Shaper::new(LinkShape::cut(), 1);
        let mut over = Shaper::new(
            LinkShape {
                loss: 2.0,
                ..LinkShape::none()
            },
            1,
        );
        let mut nan = Shaper::new(
            LinkShape {
                loss: f64::NAN,
                ..LinkShape::none()
            },
            1,
        );
        let mut negative = Shaper::new(
            LinkShape {
                loss: -1.0,
                ..LinkShape::none()
            },
            1,
        );
        for i in 0..1_000 {
            let now = t0 + i * MS;
            assert_eq!(all.handle_datagram(now, 100), None);
            assert_eq!(over.handle_datagram(now, 100), None);
            assert_eq!(nan.handle_datagram(now, 100), Some(now));
            assert_eq!(negative.handle_datagram(now, 100), Some(now));
        }
        assert_eq!(all.stats().lost, 1_000);
    }

    #[test]
    fn the_rate_limiter_serializes_and_drops_at_the_tail() {
        let t0 = Instant::now();
        // 125 bytes at 1 Mbit/s: 1 ms each.
        let shape = LinkShape {
            delay: 10 * MS,
            rate_bps: Some(1_000_000),
            queue: 5 * MS,
            ..LinkShape::none()
        };
        let mut shaper = Shaper::new(shape, 1);
        let burst: Vec<_> = (0..10).map(|_| shaper.handle_datagram(t0, 125)).collect();
        // The i-th waits i ms; waits up to the queue's 5 ms are taken.
        let expected: Vec<_> = (0..10)
            .map(|i| (i <= 5).then(|| t0 + (i + 1) * MS + 10 * MS))
            .collect();
        assert_eq!(burst, expected);
        assert_eq!(
            shaper.stats(),
            ShapeStats {
                passed: 6,
                lost: 0,
                tail_dropped: 4
            }
        );
        // Half drained: 3 ms of backlog left, so this one waits 3 ms.
        assert_eq!(
            shaper.handle_datagram(t0 + 3 * MS, 125),
            Some(t0 + 7 * MS + 10 * MS)
        );
        // Idle again: no wait.
        assert_eq!(
            shaper.handle_datagram(t0 + 20 * MS, 125),
            Some(t0 + 21 * MS + 10 * MS)
        );
        // Size counts: 250 bytes take 2 ms.
        assert_eq!(
            shaper.handle_datagram(t0 + 40 * MS, 250),
            Some(t0 + 42 * MS + 10 * MS)
        );
    }

    #[test]
    fn the_rate_limiter_holds_an_overload_to_its_rate() {
        let t0 = Instant::now();
        // 1 ms per datagram at 1 Mbit/s, offered every 0.5 ms (2 Mbit/s) for 10 s.
        let shape = LinkShape {
            rate_bps: Some(1_000_000),
            ..LinkShape::none()
        };
        let mut shaper = Shaper::new(shape, 1);
        let departures: Vec<Instant> = (0..20_000)
            .filter_map(|i| shaper.handle_datagram(t0 + i * MS / 2, 125))
            .collect();
        // Back to back once the queue has formed: exactly one per ms.
        for pair in departures.windows(2) {
            assert_eq!(pair[1] - pair[0], MS);
        }
        let stats = shaper.stats();
        // 10 s at the rate, plus the 200 ms queue still full at the end.
        assert!((10_195..=10_205).contains(&stats.passed), "{stats:?}");
        assert_eq!(stats.passed + stats.tail_dropped, 20_000);
        let last = *departures.last().expect("datagrams passed");
        assert!(last - (t0 + 10_000 * MS) <= LinkShape::DEFAULT_QUEUE + MS);
    }

    #[test]
    fn a_zero_rate_passes_nothing() {
        let t0 = Instant::now();
        let shape = LinkShape {
            rate_bps: Some(0),
            ..LinkShape::none()
        };
        let mut shaper = Shaper::new(shape, 1);
        assert_eq!(shaper.handle_datagram(t0, 1), None);
        assert_eq!(shaper.stats().tail_dropped, 1);
    }

    #[test]
    fn lost_datagrams_take_no_room_on_the_link() {
        let t0 = Instant::now();
        let shape = LinkShape {
            loss: 0.5,
            rate_bps: Some(1_000_000),
            queue: Duration::ZERO,
            ..LinkShape::none()
        };
        let mut shaper = Shaper::new(shape, 9);
        // One datagram per ms fits a 1 ms-per-datagram link with no queue: only loss drops.
        for i in 0..2_000 {
            let now = t0 + i * MS;
            if let Some(departure) = shaper.handle_datagram(now, 125) {
                assert_eq!(departure, now + MS);
            }
        }
        assert_eq!(shaper.stats().tail_dropped, 0);
        assert!(shaper.stats().lost > 800, "{:?}", shaper.stats());
    }

    #[test]
    fn a_new_shape_applies_at_once_and_order_is_kept() {
        let t0 = Instant::now();
        let mut shaper = Shaper::new(LinkShape::delay(100 * MS), 1);
        assert_eq!(shaper.handle_datagram(t0, 100), Some(t0 + 100 * MS));
        shaper.set_shape(LinkShape::none());
        assert_eq!(shaper.shape(), LinkShape::none());
        // Not before the one still in flight.
        assert_eq!(shaper.handle_datagram(t0 + MS, 100), Some(t0 + 100 * MS));
        assert_eq!(
            shaper.handle_datagram(t0 + 150 * MS, 100),
            Some(t0 + 150 * MS)
        );
        shaper.set_shape(LinkShape::cut());
        assert_eq!(shaper.handle_datagram(t0 + 151 * MS, 100), None);
        shaper.set_shape(LinkShape::none());
        assert_eq!(
            shaper.handle_datagram(t0 + 152 * MS, 100),
            Some(t0 + 152 * MS)
        );
        assert_eq!(
            shaper.stats(),
            ShapeStats {
                passed: 4,
                lost: 1,
                tail_dropped: 0
            }
        );
    }

    #[test]
    fn departures_never_go_backwards_under_changing_shapes() {
        let t0 = Instant::now();
        let mut rng = XorShift::new(11);
        let mut shaper = Shaper::new(LinkShape::none(), 2);
        let mut last = t0;
        for i in 0..20_000u32 {
            if i % 500 == 0 {
                shaper.set_shape(LinkShape {
                    delay: (rng.next_u64() % 300) as u32 * MS,
                    loss: rng.next_f64() * 0.2,
                    rate_bps: rng
                        .next_u64()
                        .is_multiple_of(2)
                        .then(|| 200_000 + rng.next_u64() % 5_000_000),
                    queue: (rng.next_u64() % 300) as u32 * MS,
                });
            }
            let now = t0 + i * MS / 4;
            if let Some(departure) = shaper.handle_datagram(now, 60 + (i as usize * 37) % 1_200) {
                assert!(departure >= now && departure >= last);
                last = departure;
            }
        }
    }

    #[test]
    fn the_generator_is_uniform_enough() {
        let mut rng = XorShift::new(0);
        let draws: Vec<f64> = (0..100_000).map(|_| rng.next_f64()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let low = draws.iter().filter(|x| **x < 0.05).count();
        assert!((4_700..=5_300).contains(&low), "{low}");
    }

    #[test]
    fn the_script_forces_the_given_server_quoted() {
        let js = force_relay_script("turn:10.200.0.2:3478?transport=udp", "u", "a\"b</script>");
        assert!(js.contains(
            r#"{"credential":"a\"b</script>","urls":"turn:10.200.0.2:3478?transport=udp","username":"u"}"#
        ));
        assert!(js.contains("c.iceTransportPolicy = 'relay'"));
        assert!(!js.contains("__SERVER__"));
    }

    // ---- The relay, end to end on loopback ----

    const REQUESTED_TRANSPORT: u16 = 0x0019;
    const CHANNEL: u16 = 0x4000;
    const N: u64 = 50;
    /// Generous: only a broken relay takes this long.
    const PATIENCE: Duration = Duration::from_secs(10);

    async fn recv(socket: &UdpSocket) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; 2_048];
        let n = tokio::time::timeout(PATIENCE, socket.recv(&mut buf))
            .await
            .context("nothing arrived")??;
        buf.truncate(n);
        Ok(buf)
    }

    /// Sends a request from a credentialed client and returns the reply, checked for `class`
    /// and `method`, and for integrity when it succeeded.
    async fn transact(
        client: &UdpSocket,
        key: Option<&[u8]>,
        method: u16,
        txid: u8,
        attrs: impl FnOnce(&mut Builder),
    ) -> Result<Vec<u8>> {
        let crypto = rtc::crypto::default_provider().map_err(|e| anyhow!("{e}"))?;
        let mut b = Builder::new(method, REQUEST, [txid; 12]);
        attrs(&mut b);
        if let Some(key) = key {
            b.attr(ATTR_USERNAME, USERNAME.as_bytes());
            b.attr(ATTR_REALM, REALM.as_bytes());
            b.attr(ATTR_NONCE, NONCE.as_bytes());
            b.integrity(key, crypto.as_ref());
        }
        client.send(&b.finish()).await?;
        let reply = recv(client).await?;
        let m = Message::parse(&reply).context("a STUN reply")?;
        assert_eq!(m.txid, [txid; 12]);
        assert_eq!(m.method(), method);
        if let Some(key) = key {
            assert_eq!(m.class(), SUCCESS);
            // MESSAGE-INTEGRITY is the last attribute and the length already counts it.
            let (signed, mac) = reply.split_at(reply.len() - 20);
            let mut expected = [0u8; 20];
            crypto
                .crypto()
                .new_hmac(HmacAlgorithm::Sha1, key)
                .and_then(|mut h| h.sign(&[&signed[..signed.len() - 4]], &mut expected))
                .map_err(|e| anyhow!("{e}"))?;
            assert_eq!(m.attr(ATTR_MESSAGE_INTEGRITY), Some(mac));
            assert_eq!(mac, expected);
        }
        Ok(reply)
    }

    fn channel_data(payload: &[u8]) -> Vec<u8> {
        let mut out = CHANNEL.to_be_bytes().to_vec();
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    async fn until_stats(relay: &Relay, done: impl Fn(&RelayStats) -> bool) -> RelayStats {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let stats = relay.stats();
            if done(&stats) || Instant::now() > deadline {
                return stats;
            }
            tokio::time::sleep(MS).await;
        }
    }

    #[tokio::test]
    async fn relays_through_a_channel_and_obeys_its_shape() -> Result<()> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let relay = Relay::start(loopback, LinkShape::none(), LinkShape::none()).await?;
        let client = UdpSocket::bind(loopback).await?;
        client.connect(relay.addr()).await?;
        let peer = UdpSocket::bind(loopback).await?;
        let crypto = rtc::crypto::default_provider().map_err(|e| anyhow!("{e}"))?;
        let key = long_term_key(crypto.as_ref())?;
        let transport = |b: &mut Builder| b.attr(REQUESTED_TRANSPORT, &[17, 0, 0, 0]);

        // Allocate: challenged first, then granted a relayed address.
        let reply = transact(&client, None, ALLOCATE, 1, transport).await?;
        let m = Message::parse(&reply).context("a STUN reply")?;
        assert_eq!(m.class(), ERROR);
        assert_eq!(
            m.attr(ATTR_ERROR_CODE).map(|c| &c[..4]),
            Some(&[0, 0, 4, 1][..])
        );
        assert_eq!(m.attr(ATTR_REALM), Some(REALM.as_bytes()));
        let reply = transact(&client, Some(&key), ALLOCATE, 2, transport).await?;
        let m = Message::parse(&reply).context("a STUN reply")?;
        let relayed = m
            .xor_address(ATTR_XOR_RELAYED_ADDRESS)
            .context("a relayed address")?;
        assert_eq!(relayed.ip(), relay.addr().ip());
        assert_eq!(
            m.xor_address(ATTR_XOR_MAPPED_ADDRESS),
            Some(client.local_addr()?)
        );

        // Before a channel: Send and Data indications.
        let mut send = Builder::new(SEND, INDICATION, [3; 12]);
        send.xor_address(ATTR_XOR_PEER_ADDRESS, peer.local_addr()?);
        send.attr(ATTR_DATA, b"hello peer");
        client.send(&send.finish()).await?;
        let mut buf = [0u8; 64];
        let (n, from) = tokio::time::timeout(PATIENCE, peer.recv_from(&mut buf)).await??;
        assert_eq!((&buf[..n], from), (&b"hello peer"[..], relayed));
        peer.connect(relayed).await?;
        peer.send(b"hello client").await?;
        let indication = recv(&client).await?;
        let m = Message::parse(&indication).context("a Data indication")?;
        assert_eq!((m.method(), m.class()), (DATA, INDICATION));
        assert_eq!(m.attr(ATTR_DATA), Some(&b"hello client"[..]));
        assert_eq!(
            m.xor_address(ATTR_XOR_PEER_ADDRESS),
            Some(peer.local_addr()?)
        );

        let peer_addr = peer.local_addr()?;
        transact(&client, Some(&key), CHANNEL_BIND, 4, |b| {
            b.attr(ATTR_CHANNEL_NUMBER, &[0x40, 0, 0, 0]);
            b.xor_address(ATTR_XOR_PEER_ADDRESS, peer_addr);
        })
        .await?;

        // Unshaped: everything passes, in order, as ChannelData both ways.
        let base = relay.stats();
        assert_eq!(base.up.dropped() + base.down.dropped(), 0);
        for i in 0..N {
            client.send(&channel_data(&i.to_be_bytes())).await?;
        }
        for i in 0..N {
            assert_eq!(recv(&peer).await?, i.to_be_bytes());
        }
        for i in 0..N {
            peer.send(&i.to_be_bytes()).await?;
        }
        for i in 0..N {
            assert_eq!(recv(&client).await?, channel_data(&i.to_be_bytes()));
        }
        let stats = relay.stats();
        assert_eq!(stats.up.passed - base.up.passed, N);
        assert_eq!(stats.down.passed - base.down.passed, N);

        // Cut: everything is lost, both ways.
        relay.set_shape(LinkShape::cut(), LinkShape::cut());
        assert_eq!(relay.shape(), (LinkShape::cut(), LinkShape::cut()));
        for i in 0..N {
            client.send(&channel_data(&i.to_be_bytes())).await?;
            peer.send(&i.to_be_bytes()).await?;
        }
        let cut = until_stats(&relay, |s| s.up.lost == N && s.down.lost == N).await;
        assert_eq!(cut.up.lost, N, "{cut:?}");
        assert_eq!(cut.down.lost, N, "{cut:?}");
        assert_eq!(
            (cut.up.passed, cut.down.passed),
            (stats.up.passed, stats.down.passed)
        );

        // Lifted: the next datagram each way is the first to arrive since the cut.
        relay.set_shape(LinkShape::none(), LinkShape::none());
        client.send(&channel_data(b"after")).await?;
        peer.send(b"after").await?;
        assert_eq!(recv(&peer).await?, b"after");
        assert_eq!(recv(&client).await?, channel_data(b"after"));
        let end = relay.stats();
        assert_eq!(end.up.passed - stats.up.passed, 1);
        assert_eq!(end.down.passed - stats.down.passed, 1);
        assert_eq!((end.up.dropped(), end.down.dropped()), (N, N));
        Ok(())
    }
}
