//! Janus as the load tool's reference SFU: Debian 12's `janus` 1.1.2 with its VideoRoom plugin,
//! driven over the plain-HTTP Janus API on loopback.
//!
//! - [`JanusServer`] launches a private Janus for one benchmark run (a temporary configuration
//!   folder that loads only the VideoRoom plugin and the HTTP transport), and kills it on drop.
//! - [`JanusServer::create_room`] creates a VideoRoom room for the run.
//! - [`JanusSignalling`] is one participant's [`Signalling`] session: a Janus session with a
//!   publisher handle (the publish connection) and, once [`subscribe_all`](Signalling::subscribe_all)
//!   is called, a multistream subscriber handle (the subscribe connection).
//!
//! # The Janus API as used here
//! Every request is a JSON `POST` to `/janus` (create a session), `/janus/<session>` (attach a
//! handle, keep-alive, destroy) or `/janus/<session>/<handle>` (plugin `message`, `trickle`,
//! `detach`), carrying a `transaction` string. Janus answers at once with `success` (synchronous
//! plugin requests such as `create`), `ack` (asynchronous ones: `join`, `publish`, `start`,
//! `subscribe`) or `error`. The result of an asynchronous request comes later as an `event` with
//! the same `transaction`, on the session's long poll (`GET /janus/<session>?maxev=N`, answered
//! with a JSON array of events, or with a keep-alive after 30 s of quiet). One task per
//! participant runs that long poll and routes each event: to the request waiting for that
//! transaction, into the participant's [`SignalEvent`] queue (subscriber offers, trickled
//! candidates, hang-ups), or into the room roster (publisher announcements).
//!
//! The HTTP client is a minimal HTTP/1.1 one over a tokio `TcpStream` (one connection per request,
//! `Connection: close`): it keeps a run of hundreds of participants off the blocking thread pool,
//! where each long poll would pin a thread for up to 30 s.
//!
//! # Pitfalls, as measured against janus 1.1.2 on Debian 12
//! - **Janus never gathers ICE candidates on loopback.** `janus_ice_setup_local` skips every
//!   `IFF_LOOPBACK` interface before it even looks at `ice_enforce_list`, so
//!   `ice_enforce_list = "lo"` leaves a handle with no local candidate at all. Janus is therefore
//!   restricted (`nat.ice_enforce_list`, a *prefix* match on interface names and addresses) to one
//!   address of a real interface, [`JanusServer::ice_ip`]: by default the host's primary IPv4
//!   address. Traffic between two addresses of the same host still goes through the kernel's
//!   `lo` device, so the media path is the same loopback path Duet's SFU gets; nothing leaves the
//!   host.
//! - **Clients must bind [`JanusServer::ice_ip`], not `127.0.0.1`.** With a webrtc-rs client on
//!   `127.0.0.1` the kernel does carry UDP both ways between the two addresses, and Janus even
//!   learns the client's `127.0.0.1` as a peer-reflexive candidate, but the client's checks
//!   never get an answer it accepts and libnice declares ICE failed after about 8 s (measured;
//!   the cause was not pinned down). Bound to the same address as Janus, both sides connect at
//!   once.
//! - **Trickled `sdpMid`:** Janus bundles every m-line on the first one and *silently ignores* a
//!   trickled candidate whose `sdpMid` is not that first mid, or whose `sdpMLineIndex` is not 0.
//!   webrtc-rs trickles `sdpMid: ""`, which Janus would drop. Candidates are therefore sent with
//!   `sdpMLineIndex: 0` and no `sdpMid` (right for any bundled connection).
//! - **Half trickle:** with `full_trickle = false` Janus sends its own candidates inside its SDP
//!   (it waits for its gathering to finish before answering), and accepts trickled ones from the
//!   client, queueing those that arrive before the offer. `trickle` events from Janus therefore do
//!   not occur with this configuration; they are still mapped, in case a caller's Janus differs.
//! - **Codecs:** the room is created with `videocodec = "h264,vp8"` (H.264 preferred) and
//!   `h264_profile = "42e01f"`: Janus then takes, from a publisher's offer, the H.264 payload type
//!   whose `profile-level-id` is exactly `42e01f` (Duet's media engine offers `42e01f` and
//!   `42001f`), and offers subscribers that codec and `fmtp` (under its own payload type, below).
//!   A publisher offering no `42e01f` H.264 publishes VP8, or no video if it offers neither.
//! - **Plugins:** Janus loads every `.so` in its plugin, transport, event-handler and logger
//!   folders. The temporary configuration points those folders at private directories holding
//!   symbolic links to only `libjanus_videoroom.so` and `libjanus_http.so`, so no other plugin
//!   starts (the Debian package ships eleven), whatever `/etc/janus` says.
//! - **DTLS and SRTP**, measured with webrtc-rs 0.21 peers using Duet's media engine: Janus is
//!   the DTLS client on the publish connection (it answers `a=setup:active`) and the server on
//!   the subscribe one; both negotiate `SRTP_AEAD_AES_256_GCM` (DTLS ciphers
//!   `TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256` with Janus as client,
//!   `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256` with webrtc-rs as client). webrtc-rs warns about
//!   two extensions of Janus's ClientHello it does not know (types 22 and 35: encrypt-then-MAC,
//!   session ticket); harmless.
//! - **Payload types:** Janus answers a publisher with the offer's own payload types (Opus 111,
//!   H.264 102), but offers subscribers its own numbering (Opus 111, H.264 **107**), with the
//!   publisher's `fmtp`; a subscriber must match codecs by name and `fmtp`, not by number.
//! - **Session timeout:** a session without a request for 60 s is destroyed; each long poll
//!   counts as a keep-alive (the HTTP transport sends one to the core), and one is sent every
//!   20 s anyway.

use super::signal::{OfferedTrack, SignalEvent, Signalling};
use anyhow::{Context, anyhow, bail};
use duet_sfu_proto::signal::{IceCandidate, PcTarget};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Where Debian's `janus` package installs the server.
pub const JANUS_BINARY: &str = "/usr/bin/janus";
/// The VideoRoom plugin's package name in the Janus API.
const PLUGIN: &str = "janus.plugin.videoroom";
/// Janus destroys a session after this long without a request.
const SESSION_TIMEOUT_S: u32 = 60;
/// How often a participant's session is kept alive (well within [`SESSION_TIMEOUT_S`]).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(20);
/// How long one HTTP request may take (not the long poll).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the long poll may take: Janus answers an idle one after 30 s.
const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(45);
/// Events fetched per long poll at most.
const LONG_POLL_MAX_EVENTS: u32 = 16;
/// How long the result of an asynchronous request (an `event`) may take. A `publish` waits for
/// Janus's candidate gathering, which is quick with one address.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Janus may take to start answering its API.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest HTTP response read from Janus.
const MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;
/// Consecutive long-poll failures after which the session counts as lost.
const MAX_POLL_FAILURES: u32 = 3;

// ---------------------------------------------------------------------------------------------
// Errors

/// Janus refused a request, with its numeric code and reason: a Janus API `error` (codes 4xx,
/// e.g. 458 "no such session") or a VideoRoom `error_code` (e.g. 426 "no such room", 427 "room
/// already exists", 436 "ID already in use"). Reached through [`anyhow::Error::downcast_ref`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JanusError {
    /// The request that failed (`create session`, `join`, `publish`, ...).
    pub request: String,
    /// Whether the VideoRoom plugin refused it (otherwise the Janus core did).
    pub plugin: bool,
    /// Janus's error code.
    pub code: i64,
    /// Janus's reason.
    pub reason: String,
}

impl fmt::Display for JanusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.plugin {
            "janus videoroom"
        } else {
            "janus"
        };
        write!(
            f,
            "{who} refused {}: error {}: {}",
            self.request, self.code, self.reason
        )
    }
}

impl std::error::Error for JanusError {}

/// The [`JanusError`] in a core `{"janus": "error", "error": {code, reason}}` message.
fn core_error(msg: &Value, request: &str) -> JanusError {
    JanusError {
        request: request.to_owned(),
        plugin: false,
        code: msg["error"]["code"].as_i64().unwrap_or(0),
        reason: msg["error"]["reason"]
            .as_str()
            .unwrap_or("(no reason given)")
            .to_owned(),
    }
}

/// What a VideoRoom request returned: the plugin's `data`, and the JSEP if any.
struct PluginReply {
    data: Value,
    jsep: Option<Value>,
}

/// The plugin reply in a `success` or `event` message, or its `error_code` as an error.
fn plugin_reply(msg: &Value, request: &str) -> anyhow::Result<PluginReply> {
    let data = msg["plugindata"]["data"].clone();
    if let Some(code) = data.get("error_code") {
        return Err(JanusError {
            request: request.to_owned(),
            plugin: true,
            code: code.as_i64().unwrap_or(0),
            reason: data["error"]
                .as_str()
                .unwrap_or("(no reason given)")
                .to_owned(),
        }
        .into());
    }
    if data.is_null() {
        bail!(
            "janus answered {request} without plugin data: {}",
            excerpt(msg)
        );
    }
    Ok(PluginReply {
        data,
        jsep: msg.get("jsep").cloned(),
    })
}

/// The SDP of a JSEP of the given type.
fn jsep_sdp(jsep: Option<&Value>, kind: &str) -> Option<String> {
    let jsep = jsep?;
    (jsep["type"].as_str() == Some(kind))
        .then(|| jsep["sdp"].as_str().map(str::to_owned))
        .flatten()
}

/// A short rendering of a JSON message for error texts.
fn excerpt(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}

// ---------------------------------------------------------------------------------------------
// The server

/// How to launch Janus. [`Default`] suits a run on one host.
#[derive(Clone, Debug)]
pub struct JanusOptions {
    /// The Janus executable.
    pub binary: PathBuf,
    /// Port of the HTTP API, bound on 127.0.0.1; 0 picks a free one.
    pub http_port: u16,
    /// First UDP port for media. Janus bundles everything, so each peer connection takes one port.
    pub rtp_port_min: u16,
    /// Last UDP port for media.
    pub rtp_port_max: u16,
    /// The one address Janus gathers ICE candidates on (see the module doc: never loopback).
    /// `None`: the host's primary IPv4 address (the source address of its default route, else
    /// its first global address).
    pub ice_ip: Option<IpAddr>,
    /// Janus's log level, 0 to 7: 3 shows warnings and errors, 4 adds the start-up banner and
    /// notable events, 5 ("verbose") adds per-handle details such as the negotiated SRTP profile.
    pub debug_level: u8,
    /// Where Janus's output goes. `None`: `janus.log` in its temporary configuration folder,
    /// which is removed with the server.
    pub log_file: Option<PathBuf>,
}

impl Default for JanusOptions {
    fn default() -> Self {
        JanusOptions {
            binary: PathBuf::from(JANUS_BINARY),
            http_port: 0,
            rtp_port_min: 30_000,
            rtp_port_max: 39_999,
            ice_ip: None,
            debug_level: 3,
            log_file: None,
        }
    }
}

/// A running Janus, private to one benchmark run. Dropping it kills the process and removes its
/// temporary configuration folder.
pub struct JanusServer {
    /// The Janus process (`kill_on_drop`, and killed explicitly in `Drop` before the folder goes).
    child: tokio::process::Child,
    /// Its process id, kept because `Child::id` forgets it once the process is reaped.
    pid: u32,
    /// The temporary configuration folder (jcfg files, plugin links, maybe the log).
    dir: PathBuf,
    /// Janus's output.
    log: PathBuf,
    /// The HTTP API port on 127.0.0.1.
    http_port: u16,
    /// The address Janus gathers ICE candidates on.
    ice_ip: IpAddr,
}

impl JanusServer {
    /// Writes a configuration, starts Janus, and waits until its API answers `GET /janus/info`
    /// with the VideoRoom plugin loaded.
    pub async fn start(opts: JanusOptions) -> anyhow::Result<JanusServer> {
        if !opts.binary.is_file() {
            bail!(
                "{} not found: install Janus with `sudo ./deploy/install-deps.sh --bench`",
                opts.binary.display()
            );
        }
        if opts.rtp_port_min == 0 || opts.rtp_port_min > opts.rtp_port_max {
            bail!(
                "invalid Janus RTP port range {}-{}",
                opts.rtp_port_min,
                opts.rtp_port_max
            );
        }
        if opts.debug_level > 7 {
            bail!("Janus debug level {} is not in 0..=7", opts.debug_level);
        }
        let modules = janus_module_dir()?;
        let ice_ip = match opts.ice_ip {
            Some(ip) => ip,
            None => primary_ip().context(
                "no address for Janus's ICE candidates (Janus never uses loopback): \
                 set JanusOptions::ice_ip",
            )?,
        };
        if ice_ip.is_loopback() || ice_ip.is_unspecified() {
            bail!(
                "Janus cannot gather ICE candidates on {ice_ip}: give a real interface's address"
            );
        }
        let http_port = match opts.http_port {
            0 => free_tcp_port()?,
            p => p,
        };

        static NEXT_DIR: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "duet-janus-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let log = opts
            .log_file
            .clone()
            .unwrap_or_else(|| dir.join("janus.log"));
        // From here on the folder is removed by `Cleanup` unless the server takes it over.
        let cleanup = Cleanup(dir.clone());
        write_config(&dir, &modules, &opts, http_port, ice_ip)?;

        let out = std::fs::File::create(&log)
            .with_context(|| format!("create the Janus log {}", log.display()))?;
        let err = out.try_clone().context("duplicate the Janus log handle")?;
        let mut child = tokio::process::Command::new(&opts.binary)
            .arg("--configs-folder")
            .arg(&dir)
            .arg("--config")
            .arg(dir.join("janus.jcfg"))
            .arg("--disable-colors")
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", opts.binary.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("Janus exited as soon as it started"))?;

        let api = Endpoint::local(http_port);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("poll the Janus process")? {
                bail!(
                    "Janus exited during start-up ({status}); its log ends with:\n{}",
                    log_tail(&log)
                );
            }
            if let Ok(info) = api.get("/info", REQUEST_TIMEOUT).await
                && info["janus"].as_str() == Some("server_info")
            {
                if info["plugins"].get(PLUGIN).is_none() {
                    bail!(
                        "Janus started without its VideoRoom plugin; its log ends with:\n{}",
                        log_tail(&log)
                    );
                }
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "Janus did not answer on {} within {START_TIMEOUT:?}; its log ends with:\n{}",
                    api.url(),
                    log_tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::mem::forget(cleanup);
        tracing::info!(pid, url = %api.url(), %ice_ip, "janus started");
        Ok(JanusServer {
            child,
            pid,
            dir,
            log,
            http_port,
            ice_ip,
        })
    }

    /// The Janus process id (to sample its CPU and memory).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The base URL of the Janus API, `http://127.0.0.1:<port>/janus`, for
    /// [`JanusSignalling::join`].
    pub fn url(&self) -> String {
        Endpoint::local(self.http_port).url()
    }

    /// The one address Janus gathers ICE candidates on.
    pub fn ice_ip(&self) -> IpAddr {
        self.ice_ip
    }

    /// Janus's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Creates VideoRoom `room` for up to `publishers` publishers: Opus audio, H.264 (profile
    /// `42e01f`) or VP8 video, 4 Mbit/s per publisher, no recording, not saved to the plugin's
    /// configuration, no notifications of joins without media.
    pub async fn create_room(&self, room: u64, publishers: u32) -> anyhow::Result<()> {
        let session = Session::create(Endpoint::local(self.http_port)).await?;
        let created = async {
            let handle = session.attach().await?;
            let body = json!({
                "request": "create",
                "room": room,
                "description": format!("duet bench {room}"),
                "publishers": publishers,
                "bitrate": 4_000_000,
                "fir_freq": 10,
                "audiocodec": "opus",
                "videocodec": "h264,vp8",
                "h264_profile": "42e01f",
                "notify_joining": false,
                "record": false,
                "permanent": false,
            });
            session.message(handle, "create room", body, None).await
        }
        .await;
        session.destroy().await;
        let reply = created?;
        if reply.data["videoroom"].as_str() != Some("created") {
            bail!(
                "janus answered create room {room} with {}",
                excerpt(&reply.data)
            );
        }
        Ok(())
    }

    /// Kills Janus and waits for it to exit (dropping the server kills it without waiting).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.start_kill().context("kill Janus")?;
        self.child.wait().await.context("wait for Janus")?;
        Ok(())
    }
}

impl Drop for JanusServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes a folder when dropped (the configuration folder of a start-up that failed).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The folder holding Janus's `plugins/` and `transports/` (Debian: `/usr/lib/<triplet>/janus`).
fn janus_module_dir() -> anyhow::Result<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/lib/janus")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        candidates.extend(entries.flatten().map(|e| e.path().join("janus")));
    }
    candidates.push(PathBuf::from("/usr/local/lib/janus"));
    candidates
        .into_iter()
        .find(|d| d.join("plugins/libjanus_videoroom.so").is_file())
        .ok_or_else(|| {
            anyhow!(
                "Janus's VideoRoom plugin (libjanus_videoroom.so) was not found under /usr/lib: \
                 install Janus with `sudo ./deploy/install-deps.sh --bench`"
            )
        })
}

/// Writes the temporary configuration folder: the three jcfg files and private plugin and
/// transport folders holding links to only the VideoRoom plugin and the HTTP transport.
fn write_config(
    dir: &Path,
    modules: &Path,
    opts: &JanusOptions,
    http_port: u16,
    ice_ip: IpAddr,
) -> anyhow::Result<()> {
    let quoted = |p: &Path| -> anyhow::Result<String> {
        let s = p
            .to_str()
            .ok_or_else(|| anyhow!("{} is not UTF-8", p.display()))?;
        if s.contains(['"', '\\', '\n']) {
            bail!("{s:?} cannot be written into a Janus configuration");
        }
        Ok(format!("\"{s}\""))
    };
    for sub in ["plugins", "transports", "events", "loggers"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("create {}", dir.join(sub).display()))?;
    }
    for (sub, lib) in [
        ("plugins", "libjanus_videoroom.so"),
        ("transports", "libjanus_http.so"),
    ] {
        let target = modules.join(sub).join(lib);
        if !target.is_file() {
            bail!(
                "{} not found: install Janus with `sudo ./deploy/install-deps.sh --bench`",
                target.display()
            );
        }
        std::os::unix::fs::symlink(&target, dir.join(sub).join(lib))
            .with_context(|| format!("link {}", target.display()))?;
    }

    let janus = format!(
        r#"# Written by duet-tests' load tool for one benchmark run.
general: {{
	configs_folder = {configs}
	plugins_folder = {plugins}
	transports_folder = {transports}
	events_folder = {events}
	loggers_folder = {loggers}
	debug_level = {level}
	debug_timestamps = true
	debug_colors = false
	server_name = "duet-bench-janus"
	session_timeout = {SESSION_TIMEOUT_S}
	# The address Janus writes into its SDP.
	interface = "{ice_ip}"
}}
certificates: {{
}}
media: {{
	ipv6 = {ipv6}
	rtp_port_range = "{min}-{max}"
}}
nat: {{
	nice_debug = false
	full_trickle = false
	ice_lite = false
	ice_tcp = false
	ignore_mdns = true
	# Janus skips loopback interfaces whatever this says: one real address, matched as a prefix.
	ice_enforce_list = "{ice_ip}"
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
	broadcast = false
}}
"#,
        configs = quoted(dir)?,
        plugins = quoted(&dir.join("plugins"))?,
        transports = quoted(&dir.join("transports"))?,
        events = quoted(&dir.join("events"))?,
        loggers = quoted(&dir.join("loggers"))?,
        level = opts.debug_level,
        ipv6 = ice_ip.is_ipv6(),
        min = opts.rtp_port_min,
        max = opts.rtp_port_max,
    );
    let http = format!(
        r#"general: {{
	json = "compact"
	base_path = "/janus"
	http = true
	ip = "127.0.0.1"
	port = {http_port}
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
cors: {{
}}
"#
    );
    let videoroom = "general: {\n\tstring_ids = false\n\tevents = false\n}\n";
    for (name, text) in [
        ("janus.jcfg", janus.as_str()),
        ("janus.transport.http.jcfg", http.as_str()),
        ("janus.plugin.videoroom.jcfg", videoroom),
    ] {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("write {}", dir.join(name).display()))?;
    }
    Ok(())
}

/// The host's primary IPv4 address: the source address of its default route (a UDP `connect`
/// sends nothing), else the first global address `ip` lists (a network namespace without a
/// default route).
fn primary_ip() -> anyhow::Result<IpAddr> {
    let routed = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            // TEST-NET-3: any address routed through the default route would do.
            s.connect("203.0.113.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip());
    if let Ok(ip) = routed
        && !ip.is_loopback()
        && !ip.is_unspecified()
    {
        return Ok(ip);
    }
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global", "up"])
        .output()
        .context("no default route, and `ip addr` could not be run")?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| anyhow!("the host has no global IPv4 address"))
}

/// A TCP port free on 127.0.0.1 right now.
fn free_tcp_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("find a free port for Janus")?;
    Ok(listener.local_addr()?.port())
}

/// The last lines of Janus's log, for start-up errors.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// The Janus API's address: `authority` (`host:port`) and base path (`/janus`).
#[derive(Clone, Debug)]
struct Endpoint {
    authority: String,
    base: String,
}

impl Endpoint {
    fn local(port: u16) -> Endpoint {
        Endpoint {
            authority: format!("127.0.0.1:{port}"),
            base: "/janus".into(),
        }
    }

    /// Parses `http://host:port/path`.
    fn parse(url: &str) -> anyhow::Result<Endpoint> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("janus URL {url:?} is not plain http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, "/janus"),
        };
        if authority.is_empty() || authority.contains(char::is_whitespace) {
            bail!("janus URL {url:?} has no host");
        }
        Ok(Endpoint {
            authority: authority.to_owned(),
            base: if path.is_empty() { "/janus" } else { path }.to_owned(),
        })
    }

    fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.base)
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let path = format!("{}{path}", self.base);
        let body = serde_json::to_vec(body)?;
        http_exchange(&self.authority, "POST", &path, &body, REQUEST_TIMEOUT).await
    }

    async fn get(&self, path: &str, limit: Duration) -> anyhow::Result<Value> {
        let path = format!("{}{path}", self.base);
        http_exchange(&self.authority, "GET", &path, &[], limit).await
    }
}

/// One HTTP/1.1 request with `Connection: close`; the response body parsed as JSON.
async fn http_exchange(
    authority: &str,
    method: &str,
    path: &str,
    body: &[u8],
    limit: Duration,
) -> anyhow::Result<Value> {
    let exchange = async {
        let mut conn = TcpStream::connect(authority)
            .await
            .with_context(|| format!("connect to janus at {authority}"))?;
        conn.set_nodelay(true)?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\n\
             Connection: close\r\n"
        );
        if method == "POST" {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        conn.write_all(&bytes).await?;
        let mut response = Vec::with_capacity(4096);
        (&mut conn)
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut response)
            .await?;
        parse_response(&response)
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(result) => result.with_context(|| format!("janus {method} {path}")),
        Err(_) => Err(anyhow!("janus {method} {path}: no answer within {limit:?}")),
    }
}

/// The JSON body of a complete HTTP/1.1 response (`Content-Length` or chunked).
fn parse_response(response: &[u8]) -> anyhow::Result<Value> {
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("incomplete HTTP response ({} bytes)", response.len()))?;
    let head = std::str::from_utf8(&response[..head_end]).context("HTTP head is not UTF-8")?;
    let mut body = &response[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP status line {status_line:?}"))?;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            let len: usize = value.parse().context("bad Content-Length")?;
            body = body
                .get(..len)
                .ok_or_else(|| anyhow!("body shorter than its Content-Length {len}"))?;
        }
    }
    let decoded;
    if chunked {
        decoded = dechunk(body)?;
        body = &decoded;
    }
    if status != 200 {
        bail!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    serde_json::from_slice(body).context("janus answered with invalid JSON")
}

/// Decodes a chunked body.
fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunk size"))?;
        let size_text = std::str::from_utf8(&body[..line_end]).context("bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or_else(|| anyhow!("truncated chunk"))?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

/// A fresh transaction id (unique within the process, which is all Janus needs per session).
fn transaction() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("duet-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// A Janus API session.
struct Session {
    api: Endpoint,
    /// Janus's session id.
    id: u64,
    /// Requests acknowledged with `ack`, waiting for their `event` from the long poll, by
    /// transaction. Only a session with a long-poll task ([`JanusSignalling`]) makes such requests.
    waiters: Mutex<HashMap<String, oneshot::Sender<Value>>>,
}

impl Session {
    async fn create(api: Endpoint) -> anyhow::Result<Session> {
        let reply = core_request(&api, "", json!({"janus": "create"}), "create session").await?;
        let id = reply["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("janus created a session without an id: {}", excerpt(&reply)))?;
        Ok(Session {
            api,
            id,
            waiters: Mutex::new(HashMap::new()),
        })
    }

    /// The API path of this session, or of one of its handles.
    fn path(&self, handle: Option<u64>) -> String {
        match handle {
            Some(h) => format!("/{}/{h}", self.id),
            None => format!("/{}", self.id),
        }
    }

    /// Attaches a VideoRoom handle; returns its id.
    async fn attach(&self) -> anyhow::Result<u64> {
        let msg = json!({"janus": "attach", "plugin": PLUGIN});
        let reply = core_request(&self.api, &self.path(None), msg, "attach").await?;
        reply["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("janus attached a handle without an id: {}", excerpt(&reply)))
    }

    /// Sends a VideoRoom request on `handle`; returns the synchronous `success` reply, or the
    /// `event` that answers an `ack`.
    async fn message(
        &self,
        handle: u64,
        request: &str,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<PluginReply> {
        let tx = transaction();
        let (wait_tx, wait_rx) = oneshot::channel();
        self.lock_waiters().insert(tx.clone(), wait_tx);
        let mut msg = json!({"janus": "message", "transaction": tx, "body": body});
        if let Some(jsep) = jsep {
            msg["jsep"] = jsep;
        }
        let reply = self.api.post(&self.path(Some(handle)), &msg).await;
        if !matches!(&reply, Ok(r) if r["janus"].as_str() == Some("ack")) {
            self.lock_waiters().remove(&tx);
            let reply = reply?;
            return match reply["janus"].as_str() {
                Some("success") => plugin_reply(&reply, request),
                Some("error") => Err(core_error(&reply, request).into()),
                _ => bail!("janus answered {request} with {}", excerpt(&reply)),
            };
        }
        let event = match tokio::time::timeout(EVENT_TIMEOUT, wait_rx).await {
            Ok(Ok(event)) => event,
            Ok(Err(_)) => bail!("the janus session ended before it answered {request}"),
            Err(_) => {
                self.lock_waiters().remove(&tx);
                bail!("janus did not answer {request} within {EVENT_TIMEOUT:?}");
            }
        };
        if event["janus"].as_str() == Some("error") {
            return Err(core_error(&event, request).into());
        }
        plugin_reply(&event, request)
    }

    /// Sends a core request (`trickle`, `keepalive`, `detach`, `destroy`) with a transaction.
    async fn core(&self, handle: Option<u64>, msg: Value, request: &str) -> anyhow::Result<Value> {
        core_request(&self.api, &self.path(handle), msg, request).await
    }

    /// Destroys the session and with it its handles (best effort).
    async fn destroy(&self) {
        if let Err(e) = self
            .core(None, json!({"janus": "destroy"}), "destroy session")
            .await
        {
            tracing::debug!(session = self.id, error = %e, "janus session not destroyed");
        }
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Value>>> {
        // A poisoned map is still a valid map: a waiter is inserted or removed in one call.
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Posts a core request with a fresh transaction; a `{"janus": "error"}` reply is an error.
async fn core_request(
    api: &Endpoint,
    path: &str,
    mut msg: Value,
    request: &str,
) -> anyhow::Result<Value> {
    msg["transaction"] = Value::String(transaction());
    let reply = api.post(path, &msg).await?;
    match reply["janus"].as_str() {
        Some("error") => Err(core_error(&reply, request).into()),
        Some(_) => Ok(reply),
        None => bail!("janus answered {request} with {}", excerpt(&reply)),
    }
}

// ---------------------------------------------------------------------------------------------
// One participant

/// State shared by a participant's [`JanusSignalling`], its long-poll task and the tasks that
/// follow new publishers.
struct Shared {
    session: Session,
    room: u64,
    /// This participant's feed (publisher) id in the room, never subscribed to.
    feed_id: u64,
    /// The publisher handle: the publish connection.
    publisher: u64,
    /// The `private_id` Janus gave the publisher on `joined`, which ties the subscriber to it.
    private_id: OnceLock<u64>,
    /// The subscriber handle, once [`Signalling::subscribe_all`] made one: the subscribe
    /// connection.
    subscriber: Mutex<Option<u64>>,
    /// Who publishes in the room, and what this participant receives.
    roster: Mutex<Roster>,
    /// Serializes changes to the subscription ([`sync_subscriptions`]). Held across requests
    /// whose answers the long poll delivers, so the long-poll task never takes it.
    sync: tokio::sync::Mutex<()>,
}

/// The room's publishers as announced by Janus, and the feeds subscribed to.
#[derive(Default)]
struct Roster {
    /// Feeds publishing now (other than this participant's).
    publishers: BTreeSet<u64>,
    /// Feeds the subscriber handle receives.
    subscribed: BTreeSet<u64>,
    /// Whether new publishers are subscribed to as they appear (after `subscribe_all`).
    follow: bool,
}

impl Shared {
    fn roster(&self) -> std::sync::MutexGuard<'_, Roster> {
        // Every update of the roster leaves it consistent, so a poisoned one is usable.
        self.roster.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn subscriber(&self) -> Option<u64> {
        *self.subscriber.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Which connection a handle carries.
    fn target(&self, handle: Option<u64>) -> Option<PcTarget> {
        match handle {
            Some(h) if h == self.publisher => Some(PcTarget::Publisher),
            Some(h) if Some(h) == self.subscriber() => Some(PcTarget::Subscriber),
            _ => None,
        }
    }

    fn handle(&self, target: PcTarget) -> anyhow::Result<u64> {
        match target {
            PcTarget::Publisher => Ok(self.publisher),
            PcTarget::Subscriber => self
                .subscriber()
                .ok_or_else(|| anyhow!("no janus subscriber handle yet: call subscribe_all first")),
        }
    }

    /// Applies the publisher announcements in a VideoRoom event; returns whether a publisher
    /// not seen before appeared.
    fn note_publishers(&self, data: &Value) -> bool {
        let mut roster = self.roster();
        let mut appeared = false;
        if let Some(list) = data["publishers"].as_array() {
            for id in list.iter().filter_map(|p| p["id"].as_u64()) {
                if id != self.feed_id {
                    appeared |= roster.publishers.insert(id);
                }
            }
        }
        // `unpublished`/`leaving` carry the feed id; our own `unpublish`/`leave` answer "ok".
        for key in ["unpublished", "leaving"] {
            if let Some(id) = data[key].as_u64() {
                roster.publishers.remove(&id);
                // Janus drops the feed's streams from our subscription by itself (and offers).
                roster.subscribed.remove(&id);
            }
        }
        appeared && roster.follow
    }
}

/// Subscribes to every publisher of the room not subscribed to yet: attaches and `join`s the
/// subscriber handle the first time, `subscribe`s more feeds later. Janus answers either with
/// an offer, which the long poll queues as [`SignalEvent::SubscribeOffer`].
async fn sync_subscriptions(shared: &Shared) -> anyhow::Result<()> {
    let _serial = shared.sync.lock().await;
    let wanted: Vec<u64> = {
        let roster = shared.roster();
        roster
            .publishers
            .difference(&roster.subscribed)
            .copied()
            .collect()
    };
    if wanted.is_empty() {
        return Ok(());
    }
    let streams: Vec<Value> = wanted.iter().map(|feed| json!({ "feed": feed })).collect();
    match shared.subscriber() {
        None => {
            let handle = shared.session.attach().await?;
            // Known before the offer arrives, so that its events are routed to this target.
            *shared.subscriber.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
            let mut body = json!({
                "request": "join",
                "ptype": "subscriber",
                "room": shared.room,
                "streams": streams,
            });
            if let Some(private_id) = shared.private_id.get() {
                body["private_id"] = json!(private_id);
            }
            shared
                .session
                .message(handle, "join as subscriber", body, None)
                .await?;
        }
        Some(handle) => {
            let body = json!({"request": "subscribe", "streams": streams});
            shared
                .session
                .message(handle, "subscribe", body, None)
                .await?;
        }
    }
    shared.roster().subscribed.extend(wanted);
    Ok(())
}

/// One participant's signalling with Janus's VideoRoom (see the module doc).
pub struct JanusSignalling {
    shared: Arc<Shared>,
    /// Events for [`Signalling::next_event`], filled by the long-poll task; closed when it ends.
    events: mpsc::UnboundedReceiver<SignalEvent>,
    /// The long-poll task.
    poller: JoinHandle<()>,
    /// The keep-alive task.
    keepalive: JoinHandle<()>,
    /// Whether [`Signalling::leave`] ran (otherwise `Drop` destroys the session).
    left: bool,
}

impl JanusSignalling {
    /// Joins `room` on the Janus at `server_url` (`http://127.0.0.1:<port>/janus`, see
    /// [`JanusServer::url`]) as publisher `feed_id` named `display`, without media yet.
    pub async fn join(
        server_url: &str,
        room: u64,
        display: &str,
        feed_id: u64,
    ) -> anyhow::Result<JanusSignalling> {
        let api = Endpoint::parse(server_url)?;
        let session = Session::create(api.clone()).await?;
        let publisher = match session.attach().await {
            Ok(h) => h,
            Err(e) => {
                session.destroy().await;
                return Err(e);
            }
        };
        let shared = Arc::new(Shared {
            session,
            room,
            feed_id,
            publisher,
            private_id: OnceLock::new(),
            subscriber: Mutex::new(None),
            roster: Mutex::new(Roster::default()),
            sync: tokio::sync::Mutex::new(()),
        });
        let (events_tx, events) = mpsc::unbounded_channel();
        let poller = tokio::spawn(long_poll(shared.clone(), events_tx));
        let keepalive = tokio::spawn(keep_alive(api, shared.session.id));
        let mut me = JanusSignalling {
            shared,
            events,
            poller,
            keepalive,
            left: false,
        };
        let body = json!({
            "request": "join",
            "ptype": "publisher",
            "room": room,
            "id": feed_id,
            "display": display,
        });
        let joined = match me
            .shared
            .session
            .message(publisher, "join as publisher", body, None)
            .await
        {
            Ok(j) => j,
            Err(e) => {
                me.leave().await;
                return Err(e.context(format!("join janus room {room} as feed {feed_id}")));
            }
        };
        if let Some(private_id) = joined.data["private_id"].as_u64() {
            let _ = me.shared.private_id.set(private_id);
        }
        Ok(me)
    }

    /// The Janus session id (for logs).
    pub fn session_id(&self) -> u64 {
        self.shared.session.id
    }
}

#[async_trait::async_trait]
impl Signalling for JanusSignalling {
    async fn publish(&mut self, offer: String, tracks: &[OfferedTrack]) -> anyhow::Result<String> {
        let mut body = json!({"request": "publish"});
        let descriptions = describe_tracks(&offer, tracks);
        if !descriptions.is_empty() {
            body["descriptions"] = Value::Array(descriptions);
        }
        let reply = self
            .shared
            .session
            .message(
                self.shared.publisher,
                "publish",
                body,
                Some(json!({"type": "offer", "sdp": offer})),
            )
            .await?;
        jsep_sdp(reply.jsep.as_ref(), "answer").ok_or_else(|| {
            anyhow!(
                "janus answered publish without an SDP answer: {}",
                excerpt(&reply.data)
            )
        })
    }

    async fn subscribe_all(&mut self) -> anyhow::Result<()> {
        self.shared.roster().follow = true;
        sync_subscriptions(&self.shared).await
    }

    async fn next_event(&mut self) -> anyhow::Result<SignalEvent> {
        self.events
            .recv()
            .await
            .ok_or_else(|| anyhow!("the janus session's event stream has ended"))
    }

    async fn answer_subscribe(&mut self, answer: String) -> anyhow::Result<()> {
        let handle = self.shared.handle(PcTarget::Subscriber)?;
        self.shared
            .session
            .message(
                handle,
                "start",
                json!({"request": "start"}),
                Some(json!({"type": "answer", "sdp": answer})),
            )
            .await?;
        Ok(())
    }

    async fn trickle(&mut self, target: PcTarget, candidate: IceCandidate) -> anyhow::Result<()> {
        let handle = self.shared.handle(target)?;
        // Janus bundles on the first m-line and ignores candidates for any other mid or index
        // (see the module doc), so every candidate goes to index 0, without a mid.
        let candidate = if candidate.candidate.is_empty() {
            json!({"completed": true})
        } else {
            json!({"candidate": candidate.candidate, "sdpMLineIndex": 0})
        };
        self.shared
            .session
            .core(
                Some(handle),
                json!({"janus": "trickle", "candidate": candidate}),
                "trickle",
            )
            .await?;
        Ok(())
    }

    async fn leave(&mut self) {
        if self.left {
            return;
        }
        self.left = true;
        self.keepalive.abort();
        // Destroying the session detaches both handles: the publisher leaves the room and its
        // subscribers are told; the subscriber's streams are released.
        self.shared.session.destroy().await;
        self.poller.abort();
    }
}

impl Drop for JanusSignalling {
    fn drop(&mut self) {
        self.keepalive.abort();
        self.poller.abort();
        if !self.left
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let shared = self.shared.clone();
            rt.spawn(async move { shared.session.destroy().await });
        }
    }
}

/// `descriptions` for a `publish`: each declared track's source, by the mid of the m-section
/// whose `a=msid` names it, so that Janus's stream lists say which stream is the screen.
fn describe_tracks(offer: &str, tracks: &[OfferedTrack]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut mid: Option<&str> = None;
    let mut track: Option<&str> = None;
    let mut flush = |mid: Option<&str>, track: Option<&str>| {
        if let (Some(mid), Some(track)) = (mid, track)
            && let Some(t) = tracks.iter().find(|t| t.track_id == track)
        {
            out.push(json!({"mid": mid, "description": t.source.as_str()}));
        }
    };
    for line in offer.lines().map(str::trim) {
        if line.starts_with("m=") {
            flush(mid.take(), track.take());
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m);
        } else if let Some(msid) = line.strip_prefix("a=msid:") {
            track = msid.split_whitespace().nth(1);
        }
    }
    flush(mid, track);
    out
}

/// Keeps the session alive until aborted.
async fn keep_alive(api: Endpoint, session: u64) {
    let path = format!("/{session}");
    loop {
        tokio::time::sleep(KEEPALIVE_EVERY).await;
        if let Err(e) = core_request(&api, &path, json!({"janus": "keepalive"}), "keepalive").await
        {
            tracing::debug!(session, error = %e, "janus keep-alive failed");
        }
    }
}

/// Runs the session's long poll until the session ends, routing every event (see [`dispatch`]).
/// Ends with a [`SignalEvent::Closed`] when the session is lost, and closes the event queue.
async fn long_poll(shared: Arc<Shared>, events: mpsc::UnboundedSender<SignalEvent>) {
    let session = shared.session.id;
    let mut failures = 0;
    let mut rid: u64 = 0;
    loop {
        rid += 1;
        let path = format!("/{session}?maxev={LONG_POLL_MAX_EVENTS}&rid={rid}");
        match shared.session.api.get(&path, LONG_POLL_TIMEOUT).await {
            Ok(reply) => {
                failures = 0;
                let batch = match reply {
                    Value::Array(batch) => batch,
                    single => vec![single],
                };
                for msg in batch {
                    if let Some(reason) = dispatch(&shared, &events, msg) {
                        let _ = events.send(SignalEvent::Closed(reason));
                        return;
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if failures >= MAX_POLL_FAILURES {
                    let _ = events.send(SignalEvent::Closed(format!(
                        "janus session {session} lost: {e:#}"
                    )));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Routes one message from the long poll. Returns why the session ended, if it did.
fn dispatch(
    shared: &Arc<Shared>,
    events: &mpsc::UnboundedSender<SignalEvent>,
    msg: Value,
) -> Option<String> {
    let kind = msg["janus"].as_str().unwrap_or_default().to_owned();
    let sender = msg["sender"].as_u64();
    let target = shared.target(sender);
    let target_name = match target {
        Some(PcTarget::Publisher) => "publish",
        Some(PcTarget::Subscriber) => "subscribe",
        None => "unknown",
    };
    let waiter = msg["transaction"]
        .as_str()
        .and_then(|tx| shared.session.lock_waiters().remove(tx));
    match kind.as_str() {
        "keepalive" | "ack" | "success" => {}
        "event" => {
            let data = &msg["plugindata"]["data"];
            if shared.note_publishers(data) {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = sync_subscriptions(&shared).await {
                        tracing::warn!(session = shared.session.id, error = %format!("{e:#}"),
                            "janus: subscribing to a new publisher failed");
                    }
                });
            }
            // Janus offers only on the subscriber handle: the first offer answers the
            // subscriber `join`, later ones `subscribe` or a publisher leaving.
            if let Some(sdp) = jsep_sdp(msg.get("jsep"), "offer") {
                let _ = events.send(SignalEvent::SubscribeOffer(sdp));
            }
            match waiter {
                Some(w) => {
                    let _ = w.send(msg);
                }
                None if data.get("error_code").is_some() => {
                    tracing::warn!(session = shared.session.id, event = %excerpt(data),
                        "janus videoroom error outside any request");
                }
                None => {}
            }
        }
        "error" => match waiter {
            Some(w) => {
                let _ = w.send(msg);
            }
            None => {
                let err = core_error(&msg, "the long poll");
                // 458: the session no longer exists.
                if err.code == 458 {
                    return Some(err.to_string());
                }
                tracing::warn!(session = shared.session.id, error = %err, "janus error");
            }
        },
        "trickle" => {
            if let Some(target) = target {
                let c = &msg["candidate"];
                let candidate = if c["completed"].as_bool() == Some(true) {
                    IceCandidate {
                        candidate: String::new(),
                        sdp_mid: None,
                        sdp_m_line_index: None,
                        username_fragment: None,
                    }
                } else {
                    IceCandidate {
                        candidate: c["candidate"].as_str().unwrap_or_default().to_owned(),
                        sdp_mid: c["sdpMid"].as_str().map(str::to_owned),
                        sdp_m_line_index: c["sdpMLineIndex"]
                            .as_u64()
                            .and_then(|i| u16::try_from(i).ok()),
                        username_fragment: None,
                    }
                };
                let _ = events.send(SignalEvent::Ice(target, candidate));
            }
        }
        "hangup" => {
            let reason = msg["reason"].as_str().unwrap_or("no reason given");
            let _ = events.send(SignalEvent::Closed(format!(
                "janus hung up the {target_name} connection: {reason}"
            )));
        }
        "detached" => {
            let _ = events.send(SignalEvent::Closed(format!(
                "janus detached the {target_name} handle"
            )));
        }
        "timeout" => return Some(format!("janus session {} timed out", shared.session.id)),
        "webrtcup" | "media" | "slowlink" => {
            tracing::debug!(session = shared.session.id, connection = target_name, event = %excerpt(&msg), "janus");
        }
        other => {
            tracing::debug!(
                session = shared.session.id,
                kind = other,
                "janus event ignored"
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use duet_sfu_proto::Source;

    #[test]
    fn parses_content_length_and_chunked_responses() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"janus\":\"ack\"}extra";
        assert_eq!(parse_response(plain).unwrap()["janus"], "ack");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[{\"a\"\r\n4;x=y\r\n:1}]\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap()[0]["a"], 1);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{}").is_err());
        assert!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\nnope").is_err());
        assert!(parse_response(b"garbage").is_err());
        assert!(dechunk(b"zz\r\n").is_err());
        assert!(dechunk(b"10\r\nshort").is_err());
    }

    #[test]
    fn parses_urls() {
        let e = Endpoint::parse("http://127.0.0.1:8088/janus/").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.base.as_str()),
            ("127.0.0.1:8088", "/janus")
        );
        assert_eq!(Endpoint::parse("http://h:1").unwrap().base, "/janus");
        assert!(Endpoint::parse("https://h/janus").is_err());
        assert!(Endpoint::parse("http:///janus").is_err());
    }

    #[test]
    fn maps_plugin_and_core_errors() {
        let ev = json!({"janus": "event", "plugindata": {"plugin": PLUGIN,
            "data": {"videoroom": "event", "error_code": 426, "error": "No such room (9)"}}});
        let e = plugin_reply(&ev, "join").err().unwrap();
        let je = e.downcast_ref::<JanusError>().unwrap();
        assert_eq!((je.code, je.plugin), (426, true));
        assert_eq!(
            e.to_string(),
            "janus videoroom refused join: error 426: No such room (9)"
        );
        let core = json!({"janus": "error", "error": {"code": 458, "reason": "No such session 1"}});
        assert_eq!(
            core_error(&core, "attach").to_string(),
            "janus refused attach: error 458: No such session 1"
        );
    }

    #[test]
    fn describes_tracks_by_mid() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=msid:s mic-1\r\n\
                     m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:1\r\na=msid:s cam-1\r\n\
                     m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:2\r\na=msid:s other\r\n";
        let tracks = [
            OfferedTrack {
                track_id: "cam-1".into(),
                source: Source::Camera,
            },
            OfferedTrack {
                track_id: "mic-1".into(),
                source: Source::Microphone,
            },
        ];
        assert_eq!(
            describe_tracks(offer, &tracks),
            vec![
                json!({"mid": "0", "description": "microphone"}),
                json!({"mid": "1", "description": "camera"}),
            ]
        );
    }
}
