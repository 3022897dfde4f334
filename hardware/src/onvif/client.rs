//! The ONVIF PTZ client: one camera's PTZ service, one SOAP request per HTTP/1.1 connection.
//!
//! Owns the transport around [`soap`]: a hand-written `POST` with `Content-Length` and
//! `Connection: close` over a tokio `TcpStream` (cameras sit on the school LAN and speak plain
//! HTTP), reading the response framed by `Content-Length`, chunked, or by the close; the
//! timeouts; and the credentials, signing each request with a fresh random nonce and the
//! current time.
//!
//! # Invariants
//! - Arguments are validated before a connection is opened ([`OnvifError::InvalidArgument`]).
//! - Connecting, and then the whole exchange, are each bounded by the timeout
//!   ([`OnvifError::Timeout`] says which); a response is bounded to 1 MiB.
//! - A 2xx body is parsed for the operation (a fault in it is still a fault); any other
//!   status is [`OnvifError::Fault`] when its body is a SOAP fault, else [`OnvifError::Http`].
//! - Whatever the camera sends, the client does not panic ([`OnvifError::Malformed`]).
//! - The password never appears in `Debug` output or logs.
//!
//! # Driving it
//! Make one [`OnvifPtz`] per camera and media profile and call its methods; they take
//! `&self`, so one client may serve concurrent calls (each has its own connection). The
//! camera's clock must be within its tolerance (typically 5 min) of ours, or it will answer
//! `ter:NotAuthorized`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

use super::soap::{self, Operation, PtzRequest, WsSecurity};
use super::{OnvifError, Preset, PresetToken, ProfileToken, PtzVector};

/// Default bound on connecting, and on the exchange after it.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response accepted, head and body.
const MAX_RESPONSE: usize = 1 << 20;
/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// One camera's PTZ service, for one media profile.
#[derive(Clone)]
pub struct OnvifPtz {
    /// The PTZ service's host and port (from the camera's `XAddr`).
    addr: SocketAddr,
    /// The PTZ service's path, e.g. `/onvif/ptz_service`; checked to be safe in a request line.
    path: String,
    /// The camera account.
    username: String,
    /// Its password; only digests of it leave this struct.
    password: String,
    /// The media profile every command addresses.
    profile: ProfileToken,
    /// Bound on connecting, and on writing the request and reading the response.
    timeout: Duration,
    /// This camera's span; every request runs inside it.
    span: tracing::Span,
}

impl fmt::Debug for OnvifPtz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnvifPtz")
            .field("addr", &self.addr)
            .field("path", &self.path)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("profile", &self.profile)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OnvifPtz {
    /// A client of the PTZ service at `addr` + `path` (an absolute path of visible ASCII),
    /// signing as `username`, addressing the media profile `profile`. Timeout 5 s.
    pub fn new(
        addr: SocketAddr,
        path: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
        profile: ProfileToken,
    ) -> Result<Self, OnvifError> {
        let path = path.into();
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(OnvifError::invalid(
                "service path must be an absolute path of visible ASCII",
            ));
        }
        let span = tracing::info_span!("onvif_ptz", camera = %addr, profile = %profile);
        Ok(Self {
            addr,
            path,
            username: username.into(),
            password: password.into(),
            profile,
            timeout: DEFAULT_TIMEOUT,
            span,
        })
    }

    /// The same client with another timeout (for connecting, and again for the exchange).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The media profile addressed.
    pub fn profile(&self) -> &ProfileToken {
        &self.profile
    }

    /// The profile's presets, in the camera's order.
    pub async fn get_presets(&self) -> Result<Vec<Preset>, OnvifError> {
        let request = PtzRequest::GetPresets {
            profile: self.profile.clone(),
        };
        self.call(request, soap::parse_get_presets_response).await
    }

    /// Drives to `preset`, at `speed` (generic speed space, [0, 1]) or the camera's default.
    pub async fn goto_preset(
        &self,
        preset: &PresetToken,
        speed: Option<PtzVector>,
    ) -> Result<(), OnvifError> {
        let request = PtzRequest::GotoPreset {
            profile: self.profile.clone(),
            preset: preset.clone(),
            speed,
        };
        self.call(request, |body| {
            soap::parse_empty_response(Operation::GotoPreset, body)
        })
        .await
    }

    /// Stores the current position as a preset: overwrites `preset` if given, else makes a new
    /// one; names it `name` if given (at most 64 characters). Returns the preset's token.
    pub async fn set_preset(
        &self,
        name: Option<&str>,
        preset: Option<&PresetToken>,
    ) -> Result<PresetToken, OnvifError> {
        let request = PtzRequest::SetPreset {
            profile: self.profile.clone(),
            name: name.map(str::to_owned),
            preset: preset.cloned(),
        };
        self.call(request, soap::parse_set_preset_response).await
    }

    /// Starts moving at `velocity` (every axis given in [-1, 1]) until [`stop`](Self::stop).
    pub async fn continuous_move(&self, velocity: PtzVector) -> Result<(), OnvifError> {
        let request = PtzRequest::ContinuousMove {
            profile: self.profile.clone(),
            velocity,
        };
        self.call(request, |body| {
            soap::parse_empty_response(Operation::ContinuousMove, body)
        })
        .await
    }

    /// Stops pan and tilt, zoom, or both.
    pub async fn stop(&self, pan_tilt: bool, zoom: bool) -> Result<(), OnvifError> {
        let request = PtzRequest::Stop {
            profile: self.profile.clone(),
            pan_tilt,
            zoom,
        };
        self.call(request, |body| {
            soap::parse_empty_response(Operation::Stop, body)
        })
        .await
    }

    /// Signs, sends and reads one request; `parse` reads a 2xx body.
    async fn call<T>(
        &self,
        request: PtzRequest,
        parse: impl FnOnce(&[u8]) -> Result<T, OnvifError>,
    ) -> Result<T, OnvifError> {
        let op = request.operation();
        let nonce: [u8; 20] = rand::random();
        let envelope = request.to_envelope(&WsSecurity {
            username: &self.username,
            password: &self.password,
            nonce: &nonce,
            created: Utc::now(),
        })?;
        async {
            tracing::debug!(%op, "ONVIF request");
            let response = self.exchange(op, envelope.as_bytes()).await?;
            match response.status {
                200..=299 => parse(&response.body),
                status => {
                    Err(soap::parse_fault(&response.body).unwrap_or(OnvifError::Http { status }))
                }
            }
        }
        .instrument(self.span.clone())
        .await
        .inspect_err(|err| {
            self.span
                .in_scope(|| tracing::debug!(%op, %err, "ONVIF failed"))
        })
    }

    async fn exchange(&self, op: Operation, body: &[u8]) -> Result<HttpResponse, OnvifError> {
        let mut stream = tokio::time::timeout(self.timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| OnvifError::Timeout { what: "connect" })??;
        stream.set_nodelay(true)?;
        let mut message = request_head(self.addr, &self.path, op.action(), body.len());
        message.extend_from_slice(body);
        let exchange = async {
            stream.write_all(&message).await?;
            let mut buf = Vec::with_capacity(8 * 1024);
            let mut chunk = [0u8; 8 * 1024];
            loop {
                let n = stream.read(&mut chunk).await?;
                buf.extend_from_slice(&chunk[..n]);
                let eof = n == 0;
                match parse_response(&buf, eof)? {
                    Some(response) => return Ok(response),
                    None if eof => return Err(OnvifError::malformed("connection closed early")),
                    None if buf.len() > MAX_RESPONSE => {
                        return Err(OnvifError::malformed("response too large"));
                    }
                    None => {}
                }
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| OnvifError::Timeout { what: "exchange" })?
    }
}

/// The request line and headers of a SOAP 1.2 POST of `len` body bytes.
fn request_head(addr: SocketAddr, path: &str, action: &str, len: usize) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Content-Type: {content_type}; action=\"{action}\"\r\n\
         Content-Length: {len}\r\n\
         Connection: close\r\n\
         \r\n",
        content_type = soap::CONTENT_TYPE,
    )
    .into_bytes()
}

/// A response as read off the wire.
#[derive(Debug, PartialEq)]
struct HttpResponse {
    /// The status code, 200–599.
    status: u16,
    /// The body, de-chunked.
    body: Vec<u8>,
}

/// How a response's body ends.
#[derive(Debug, PartialEq)]
enum Framing {
    /// After this many bytes.
    Length(usize),
    /// After the last chunk.
    Chunked,
    /// When the server closes.
    UntilClose,
}

/// The response in `buf` once it is whole, `None` while more bytes are needed; `eof` says that
/// none will come. Interim (1xx) responses are skipped. Pure, for any bytes.
fn parse_response(buf: &[u8], eof: bool) -> Result<Option<HttpResponse>, OnvifError> {
    let mut rest = buf;
    loop {
        let Some(head_len) = find(rest, b"\r\n\r\n").map(|at| at + 4) else {
            return if eof {
                Err(OnvifError::malformed("truncated HTTP head"))
            } else if rest.len() > MAX_HEAD {
                Err(OnvifError::malformed("HTTP head too large"))
            } else {
                Ok(None)
            };
        };
        if head_len > MAX_HEAD {
            return Err(OnvifError::malformed("HTTP head too large"));
        }
        let (status, framing) = parse_head(&rest[..head_len])?;
        let body = &rest[head_len..];
        if status < 200 {
            rest = body;
            continue;
        }
        let body = match framing {
            Framing::Length(len) if body.len() >= len => body[..len].to_vec(),
            Framing::Length(_) if eof => return Err(OnvifError::malformed("truncated body")),
            Framing::Chunked => match decode_chunked(body)? {
                Some(body) => body,
                None if eof => return Err(OnvifError::malformed("truncated chunked body")),
                None => return Ok(None),
            },
            Framing::UntilClose if eof => body.to_vec(),
            Framing::Length(_) | Framing::UntilClose => return Ok(None),
        };
        return Ok(Some(HttpResponse { status, body }));
    }
}

/// The status and body framing of a response head (status line, headers, blank line).
fn parse_head(head: &[u8]) -> Result<(u16, Framing), OnvifError> {
    let head = std::str::from_utf8(head).map_err(|_| OnvifError::malformed("HTTP head"))?;
    let mut lines = head.split("\r\n");
    let mut status_line = lines.next().unwrap_or_default().splitn(3, ' ');
    if !status_line
        .next()
        .is_some_and(|version| version.starts_with("HTTP/1."))
    {
        return Err(OnvifError::malformed("not an HTTP/1.x response"));
    }
    let status = status_line
        .next()
        .filter(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..=599).contains(code))
        .ok_or(OnvifError::malformed("bad HTTP status"))?;
    let (mut length, mut chunked) = (None, false);
    for line in lines.filter(|line| !line.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(OnvifError::malformed("bad HTTP header"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let len = Some(value)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(OnvifError::malformed("bad Content-Length"))?;
            if length.is_some_and(|previous| previous != len) {
                return Err(OnvifError::malformed("conflicting Content-Length"));
            }
            length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .split(',')
                .any(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    let framing = match length {
        // Chunked wins over a length (RFC 9112, 6.3).
        _ if chunked => Framing::Chunked,
        Some(len) if len > MAX_RESPONSE => {
            return Err(OnvifError::malformed("response too large"));
        }
        Some(len) => Framing::Length(len),
        None => Framing::UntilClose,
    };
    Ok((status, framing))
}

/// The body of a chunked transfer coding once the last chunk and trailers are in `body`,
/// `None` while more bytes are needed.
fn decode_chunked(body: &[u8]) -> Result<Option<Vec<u8>>, OnvifError> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_len) = find(&body[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = &body[at..at + line_len];
        let size = line
            .iter()
            .position(|&b| b == b';')
            .map_or(line, |ext| &line[..ext]);
        let size = std::str::from_utf8(size)
            .ok()
            .map(str::trim)
            .filter(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or(OnvifError::malformed("bad chunk size"))?;
        at += line_len + 2;
        if size == 0 {
            // Trailer lines, up to an empty one.
            loop {
                let Some(len) = find(&body[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += len + 2;
                if len == 0 {
                    return Ok(Some(out));
                }
            }
        }
        if out.len() + size > MAX_RESPONSE {
            return Err(OnvifError::malformed("response too large"));
        }
        let Some(chunk) = body.get(at..at + size + 2) else {
            return Ok(None);
        };
        if !chunk.ends_with(b"\r\n") {
            return Err(OnvifError::malformed("chunk not followed by CRLF"));
        }
        out.extend_from_slice(&chunk[..size]);
        at += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onvif::Lcg;
    use crate::onvif::sim::{OnvifSim, PROFILE, SERVICE_PATH, SimConfig, SimPosition};
    use chrono::TimeDelta;
    use tokio::net::TcpListener;

    async fn sim() -> OnvifSim {
        OnvifSim::start(SimConfig::new("admin", "secret"))
            .await
            .expect("the simulator binds a loopback port")
    }

    fn client(sim: &OnvifSim, password: &str) -> OnvifPtz {
        OnvifPtz::new(
            sim.addr(),
            SERVICE_PATH,
            "admin",
            password,
            ProfileToken::new(PROFILE),
        )
        .expect("a valid path")
    }

    #[tokio::test]
    async fn a_preset_that_was_set_is_listed() {
        let sim = sim().await;
        let ptz = client(&sim, "secret");
        assert_eq!(ptz.get_presets().await.expect("lists"), vec![]);
        let here = SimPosition {
            pan: 0.25,
            tilt: -0.5,
            zoom: 0.75,
        };
        sim.set_position(here);
        let name = "讲台 <特写> & 'podium'";
        let token = ptz.set_preset(Some(name), None).await.expect("sets");
        let unnamed = ptz.set_preset(None, None).await.expect("sets");
        assert_ne!(token, unnamed);
        assert_eq!(
            ptz.get_presets().await.expect("lists"),
            vec![
                Preset {
                    token: token.clone(),
                    name: Some(name.into()),
                    position: Some(PtzVector::new(0.25, -0.5, 0.75)),
                },
                Preset {
                    token: unnamed,
                    name: None,
                    position: Some(PtzVector::new(0.25, -0.5, 0.75)),
                },
            ]
        );
        let err = ptz
            .set_preset(Some(name), None)
            .await
            .expect_err("names are unique");
        assert!(err.is_fault("PresetExist"), "{err:?}");
        // Overwriting keeps the token and takes the new position.
        sim.set_position(SimPosition::default());
        assert_eq!(
            ptz.set_preset(None, Some(&token))
                .await
                .expect("overwrites"),
            token
        );
        let presets = ptz.get_presets().await.expect("lists");
        assert_eq!(presets[0].position, Some(PtzVector::new(0.0, 0.0, 0.0)));
        assert_eq!(presets[0].name.as_deref(), Some(name));
    }

    #[tokio::test]
    async fn goto_preset_moves_the_head_there() {
        let sim = sim().await;
        let ptz = client(&sim, "secret");
        let blackboard = SimPosition {
            pan: -0.75,
            tilt: 0.125,
            zoom: 0.5,
        };
        sim.set_position(blackboard);
        let token = ptz.set_preset(Some("板书"), None).await.expect("sets");
        sim.set_position(SimPosition::default());
        ptz.goto_preset(&token, Some(PtzVector::new(1.0, 1.0, 1.0)))
            .await
            .expect("goes");
        assert_eq!(sim.position(), blackboard);
        let err = ptz
            .goto_preset(&PresetToken::new("no-such-preset"), None)
            .await
            .expect_err("unknown preset");
        assert!(err.is_fault("NoToken"), "{err:?}");
    }

    #[tokio::test]
    async fn continuous_move_runs_until_stop() {
        let sim = sim().await;
        let ptz = client(&sim, "secret");
        ptz.continuous_move(PtzVector::new(1.0, -1.0, 0.0))
            .await
            .expect("moves");
        assert!(sim.moving());
        tokio::time::sleep(Duration::from_millis(50)).await;
        ptz.stop(true, true).await.expect("stops");
        assert!(!sim.moving());
        let stopped = sim.position();
        assert!(stopped.pan > 0.0 && stopped.tilt < 0.0 && stopped.zoom == 0.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(sim.position(), stopped);
        // Stopping zoom alone leaves pan and tilt running.
        ptz.continuous_move(PtzVector::new(0.5, 0.0, 0.5))
            .await
            .expect("moves");
        ptz.stop(false, true).await.expect("stops zoom");
        assert!(sim.moving());
        ptz.stop(true, false).await.expect("stops pan and tilt");
        assert!(!sim.moving());
    }

    #[tokio::test]
    async fn a_wrong_password_is_not_authorized() {
        let sim = sim().await;
        let err = client(&sim, "guess")
            .get_presets()
            .await
            .expect_err("refused");
        assert!(err.is_fault("NotAuthorized"), "{err:?}");
        let OnvifError::Fault { code, .. } = &err else {
            unreachable!("checked above");
        };
        assert_eq!(code, "env:Sender");
    }

    #[tokio::test]
    async fn a_camera_clock_far_ahead_refuses_our_tokens() {
        let sim = sim().await;
        let ptz = client(&sim, "secret");
        sim.set_clock_offset(TimeDelta::minutes(10));
        let err = ptz.get_presets().await.expect_err("stale");
        assert!(err.is_fault("NotAuthorized"), "{err:?}");
        sim.set_clock_offset(TimeDelta::minutes(2));
        ptz.get_presets().await.expect("fresh enough");
    }

    #[tokio::test]
    async fn an_unknown_profile_is_a_fault() {
        let sim = sim().await;
        let ptz = OnvifPtz::new(
            sim.addr(),
            SERVICE_PATH,
            "admin",
            "secret",
            ProfileToken::new("profile_9"),
        )
        .expect("a valid path");
        let err = ptz.stop(true, true).await.expect_err("no such profile");
        assert!(err.is_fault("NoProfile"), "{err:?}");
    }

    #[tokio::test]
    async fn out_of_range_velocity_is_refused_before_sending() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let ptz = OnvifPtz::new(
            listener.local_addr().expect("bound"),
            "/onvif/ptz_service",
            "admin",
            "secret",
            ProfileToken::new(PROFILE),
        )
        .expect("a valid path");
        for velocity in [
            PtzVector::new(1.5, 0.0, 0.0),
            PtzVector::new(0.0, -1.01, 0.0),
            PtzVector::new(0.0, 0.0, f32::NAN),
        ] {
            let err = ptz.continuous_move(velocity).await.expect_err("refused");
            assert!(matches!(err, OnvifError::InvalidArgument { .. }), "{err:?}");
        }
        // Nothing connected: the kernel would have queued a connection for accept().
        assert!(
            tokio::time::timeout(Duration::from_millis(50), listener.accept())
                .await
                .is_err()
        );
    }

    #[test]
    fn unsafe_service_paths_are_refused() {
        let addr = "127.0.0.1:80".parse().expect("a literal address");
        for path in ["onvif", "/a b", "/a\r\nX-Evil: 1", ""] {
            assert!(OnvifPtz::new(addr, path, "u", "p", ProfileToken::new("p")).is_err());
        }
        let ptz = OnvifPtz::new(addr, "/onvif/PTZ", "u", "hunter2", ProfileToken::new("p"))
            .expect("valid");
        assert!(!format!("{ptz:?}").contains("hunter2"));
    }

    /// Reads one whole request (head and `Content-Length` body), so that closing the socket
    /// afterwards is a clean FIN rather than a reset.
    async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(head) = find(&buf, b"\r\n\r\n") {
                let head_text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
                let len: usize = head_text
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|len| len.trim().parse().ok())
                    .expect("the client sends Content-Length");
                if buf.len() >= head + 4 + len {
                    return buf;
                }
            }
            let n = stream.read(&mut chunk).await.expect("reads");
            assert!(n > 0, "the client closed mid-request");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A fake camera answering each connection with the next of `replies` (or never, for
    /// `None`); returns its address and the requests it received.
    async fn fake_camera(
        replies: Vec<Option<Vec<u8>>>,
    ) -> (SocketAddr, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("bound");
        let task = tokio::spawn(async move {
            let mut requests = Vec::new();
            for reply in replies {
                let (mut stream, _) = listener.accept().await.expect("accepts");
                requests.push(read_request(&mut stream).await);
                match reply {
                    Some(reply) => {
                        stream.write_all(&reply).await.expect("writes");
                        stream.shutdown().await.expect("closes");
                    }
                    // Silence: hold the connection until the client gives up and closes it.
                    None => {
                        let _ = stream.read(&mut [0u8; 1]).await;
                    }
                }
            }
            requests
        });
        (addr, task)
    }

    fn fake_client(addr: SocketAddr) -> OnvifPtz {
        OnvifPtz::new(
            addr,
            "/onvif/ptz_service",
            "admin",
            "secret",
            ProfileToken::new("profile_1"),
        )
        .expect("a valid path")
        .with_timeout(Duration::from_secs(2))
    }

    fn http(status: &str, body: &[u8]) -> Vec<u8> {
        let mut reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/soap+xml\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(body);
        reply
    }

    #[tokio::test]
    async fn junk_and_truncated_replies_are_malformed() {
        let presets = soap::get_presets_response(&[Preset {
            token: PresetToken::new("1"),
            name: Some("讲台".into()),
            position: Some(PtzVector::new(0.5, 0.5, 0.5)),
        }]);
        let half = &presets.as_bytes()[..presets.len() / 2];
        let mut rng = Lcg(7);
        let mut truncated_head = http("200 OK", presets.as_bytes());
        truncated_head.truncate(20);
        let mut short_body = http("200 OK", presets.as_bytes());
        short_body.truncate(short_body.len() - 10);
        let replies = vec![
            rng.bytes(300),
            b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
            Vec::new(),
            truncated_head,
            short_body,
            http("200 OK", half),
            http("200 OK", b"<html><body>It works!</body></html>"),
            http("200 OK", &rng.bytes(200)),
            http("200 OK", soap::empty_response(Operation::Stop).as_bytes()),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        ];
        let count = replies.len();
        let (addr, camera) = fake_camera(replies.into_iter().map(Some).collect()).await;
        let ptz = fake_client(addr);
        for i in 0..count {
            let err = ptz.get_presets().await.expect_err("junk is an error");
            assert!(
                matches!(err, OnvifError::Malformed { .. }),
                "reply {i}: {err:?}"
            );
        }
        camera.await.expect("the fake camera finishes");
    }

    #[tokio::test]
    async fn http_errors_and_chunked_replies_are_read() {
        let fault = soap::fault_envelope(
            soap::FaultCode::Receiver,
            &["Action", "TooManyPresets"],
            "full",
        );
        let mut chunked =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        let token_reply = soap::set_preset_response(&PresetToken::new("7"));
        for part in token_reply.as_bytes().chunks(100) {
            chunked.extend_from_slice(format!("{:x};ext=1\r\n", part.len()).as_bytes());
            chunked.extend_from_slice(part);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
        let (addr, camera) = fake_camera(vec![
            Some(http("500 Internal Server Error", fault.as_bytes())),
            Some(http("401 Unauthorized", b"")),
            Some(http("200 OK", fault.as_bytes())),
            Some(chunked),
            None,
        ])
        .await;
        let ptz = fake_client(addr);
        let err = ptz.set_preset(None, None).await.expect_err("a fault");
        assert!(err.is_fault("TooManyPresets"), "{err:?}");
        let err = ptz.set_preset(None, None).await.expect_err("HTTP auth");
        assert!(matches!(err, OnvifError::Http { status: 401 }), "{err:?}");
        let err = ptz
            .set_preset(None, None)
            .await
            .expect_err("a fault in a 200");
        assert!(err.is_fault("TooManyPresets"), "{err:?}");
        assert_eq!(
            ptz.set_preset(Some("a&b"), None).await.expect("chunked"),
            PresetToken::new("7")
        );
        let err = ptz
            .with_timeout(Duration::from_millis(100))
            .get_presets()
            .await
            .expect_err("silence");
        assert!(
            matches!(err, OnvifError::Timeout { what: "exchange" }),
            "{err:?}"
        );
        let requests = camera.await.expect("the fake camera finishes");
        let request = String::from_utf8(requests[3].clone()).expect("UTF-8");
        assert!(request.starts_with("POST /onvif/ptz_service HTTP/1.1\r\n"));
        assert!(request.contains(&format!("\r\nHost: {addr}\r\n")));
        assert!(request.contains(
            "\r\nContent-Type: application/soap+xml; charset=utf-8; action=\"http://www.onvif.org/ver20/ptz/wsdl/SetPreset\"\r\n"
        ));
        let body = &request[request.find("\r\n\r\n").expect("a head") + 4..];
        let parsed = soap::parse_request(body.as_bytes()).expect("a valid envelope");
        assert_eq!(
            parsed.body,
            soap::RequestBody::Ptz(PtzRequest::SetPreset {
                profile: ProfileToken::new("profile_1"),
                name: Some("a&b".into()),
                preset: None,
            })
        );
        // Every request carries its own nonce.
        let nonces: std::collections::HashSet<_> = requests
            .iter()
            .map(|r| {
                let r = String::from_utf8_lossy(r);
                let body = &r[r.find("<?xml").expect("a body")..];
                soap::parse_request(body.as_bytes())
                    .expect("valid")
                    .security
                    .expect("signed")
                    .nonce
            })
            .collect();
        assert_eq!(nonces.len(), requests.len());
    }

    #[test]
    fn http_framing() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let expected = HttpResponse {
            status: 200,
            body: b"hello".to_vec(),
        };
        for cut in 0..whole.len() {
            assert_eq!(
                parse_response(&whole[..cut], false).expect("so far so good"),
                None
            );
            assert!(parse_response(&whole[..cut], true).is_err());
        }
        assert_eq!(parse_response(whole, false).expect("whole"), Some(expected));
        let until_close = b"HTTP/1.0 500 Oops\r\nServer: x\r\n\r\nbody";
        assert_eq!(parse_response(until_close, false).expect("waits"), None);
        assert_eq!(
            parse_response(until_close, true).expect("ends at close"),
            Some(HttpResponse {
                status: 500,
                body: b"body".to_vec()
            })
        );
        for bad in [
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n",
        ] {
            assert!(
                matches!(
                    parse_response(bad, false),
                    Err(OnvifError::Malformed { .. })
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge_head = [b'a'; MAX_HEAD + 1];
        assert!(parse_response(&huge_head, false).is_err());
    }

    #[test]
    fn http_parser_survives_random_bytes() {
        let mut rng = Lcg(99);
        let prefixes: [&[u8]; 3] = [
            b"",
            b"HTTP/1.1 200 OK\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ];
        for _ in 0..3_000 {
            let mut buf = prefixes[(rng.next() % 3) as usize].to_vec();
            let len = (rng.next() % 200) as usize;
            // Mostly printable with CRLFs, so that heads and chunk lines occur.
            buf.extend((0..len).map(|_| match rng.next() % 8 {
                0 => b'\r',
                1 => b'\n',
                2 => b"0123456789abcdef"[(rng.next() % 16) as usize],
                3 => rng.next() as u8,
                _ => b' ' + (rng.next() % 95) as u8,
            }));
            let _ = parse_response(&buf, rng.next() & 1 == 0);
        }
    }
}
