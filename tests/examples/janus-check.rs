//! End-to-end check of the load tool's Janus adapter ([`duet_tests::load::janus`]) against the
//! real Janus (Debian 12's `janus`, installed by `deploy/install-deps.sh --bench`):
//!
//! ```text
//! cargo run -p duet-tests --example janus-check [-- <client bind IP, default Janus's ICE address>]
//! ```
//!
//! Steps, each printed: start a private Janus; create a room; a lead joins and publishes Opus +
//! H.264 from a webrtc-rs peer connection (Duet's own media engine) and reaches `connected`; a
//! second participant subscribes to everything and reaches `connected`; RTP written by the lead
//! arrives on the subscriber's remote tracks; a late publisher appears and the subscriber is
//! offered its stream too (the adapter follows new publishers); everyone leaves. Exits non-zero
//! at the first step that fails.

use anyhow::{Context, bail};
use duet_sfu::shell::media;
use duet_sfu_proto::Source;
use duet_sfu_proto::signal::{IceCandidate, PcTarget};
use duet_tests::load::janus::{JanusOptions, JanusServer, JanusSignalling};
use duet_tests::load::signal::{OfferedTrack, SignalEvent, Signalling};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription,
    RTCStatsReportEntry, SettingEngineBuilder, StatsSelector,
};

const ROOM: u64 = 4242;
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,rtc_dtls=error".into()),
        )
        .init();
    let bind: Option<IpAddr> = match std::env::args().nth(1) {
        Some(ip) => Some(ip.parse().context("the argument must be an IP address")?),
        None => None,
    };

    step("starting Janus");
    let janus = JanusServer::start(JanusOptions {
        // Verbose: the log then shows Janus's side of DTLS (negotiated SRTP profile).
        debug_level: 5,
        ..Default::default()
    })
    .await?;
    ok(format!(
        "pid {}, API {}, ICE on {}, log {}",
        janus.pid(),
        janus.url(),
        janus.ice_ip(),
        janus.log_path().display()
    ));
    // Clients bind Janus's ICE address unless told otherwise (see the janus module's doc).
    let bind = bind.unwrap_or(janus.ice_ip());
    println!("   clients bind {bind}");
    let result = check(&janus, bind).await;
    if result.is_err() {
        println!("--- end of the Janus log ---");
        let log = std::fs::read_to_string(janus.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        for line in &lines[lines.len().saturating_sub(40)..] {
            println!("{line}");
        }
    } else {
        report_srtp_from_log(janus.log_path());
    }
    janus.stop().await?;
    result?;
    println!("janus-check: all steps passed");
    Ok(())
}

async fn check(janus: &JanusServer, bind: IpAddr) -> anyhow::Result<()> {
    step(&format!("creating room {ROOM}"));
    janus.create_room(ROOM, 4).await?;
    match janus.create_room(ROOM, 4).await {
        Ok(()) => bail!("creating room {ROOM} twice succeeded"),
        Err(e) => ok(format!("created; a second create is refused: {e:#}")),
    }

    step("lead joins as feed 1 and publishes Opus + H.264");
    let mut lead = JanusSignalling::join(&janus.url(), ROOM, "lead", 1).await?;
    let (lead_pc, mut lead_rx) = peer(bind).await?;
    let mic = local_track(&lead_pc, "lead-mic", MIME_TYPE_OPUS, 48_000, 2, "").await?;
    let cam = local_track(
        &lead_pc,
        "lead-cam",
        MIME_TYPE_H264,
        90_000,
        0,
        "profile-level-id=42e01f;packetization-mode=1",
    )
    .await?;
    let tracks = [
        OfferedTrack {
            track_id: "lead-mic".into(),
            source: Source::Microphone,
        },
        OfferedTrack {
            track_id: "lead-cam".into(),
            source: Source::Camera,
        },
    ];
    let answer = publish(&mut lead, &lead_pc, &tracks).await?;
    ok(format!("answer: {}", summarize_sdp(&answer).join(" | ")));
    drive(&mut lead, PcTarget::Publisher, &mut lead_rx, None).await?;
    ok(format!(
        "publish connection connected; {}",
        transport_info(&lead_pc).await
    ));

    step("receiving classroom joins as feed 2 and subscribes to everything");
    let mut student = JanusSignalling::join(&janus.url(), ROOM, "receiving", 2).await?;
    student.subscribe_all().await?;
    let (sub_pc, mut sub_rx) = peer(bind).await?;
    let offer = next_offer(&mut student).await?;
    ok(format!("offer: {}", summarize_sdp(&offer).join(" | ")));
    answer_offer(&mut student, &sub_pc, offer).await?;
    let mut remote = Vec::new();
    drive(
        &mut student,
        PcTarget::Subscriber,
        &mut sub_rx,
        Some(&mut remote),
    )
    .await?;
    ok(format!(
        "subscribe connection connected; {}",
        transport_info(&sub_pc).await
    ));

    step("lead sends RTP; the subscriber's remote tracks receive it");
    let writer = tokio::spawn(send_media(mic, cam));
    let audio = Arc::new(AtomicU64::new(0));
    let video = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        for track in remote.drain(..) {
            let kind = track.kind().await;
            let counter = if kind == RtpCodecKind::Audio {
                audio.clone()
            } else {
                video.clone()
            };
            let mime = match track.ssrcs().await.first() {
                Some(ssrc) => track
                    .codec(*ssrc)
                    .await
                    .map(|c| c.mime_type)
                    .unwrap_or_default(),
                None => String::new(),
            };
            println!("  remote track {kind} {mime}");
            tokio::spawn(async move {
                while let Some(ev) = track.poll().await {
                    match ev {
                        TrackRemoteEvent::OnRtpPacket(_) => {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError => break,
                        _ => {}
                    }
                }
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, sub_rx.recv()).await {
            Ok(Some(PcEvent::Track(t))) => remote.push(t),
            Ok(Some(PcEvent::State(s))) if is_dead(s) => bail!("subscribe connection {s}"),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {}
        }
    }
    writer.abort();
    let (a, v) = (audio.load(Ordering::Relaxed), video.load(Ordering::Relaxed));
    if a == 0 || v == 0 {
        bail!("the subscriber received {a} audio and {v} video packets");
    }
    ok(format!("received {a} audio and {v} video RTP packets"));

    step("a late publisher (feed 3, Opus) appears; the subscriber is offered its stream too");
    let mut late = JanusSignalling::join(&janus.url(), ROOM, "late", 3).await?;
    let (late_pc, mut late_rx) = peer(bind).await?;
    let _late_mic = local_track(&late_pc, "late-mic", MIME_TYPE_OPUS, 48_000, 2, "").await?;
    let late_tracks = [OfferedTrack {
        track_id: "late-mic".into(),
        source: Source::Microphone,
    }];
    publish(&mut late, &late_pc, &late_tracks).await?;
    drive(&mut late, PcTarget::Publisher, &mut late_rx, None).await?;
    let offer = next_offer(&mut student).await?;
    let m_lines = summarize_sdp(&offer);
    if m_lines.len() != 3 {
        bail!(
            "the renegotiated offer has {} m-lines, not 3: {m_lines:?}",
            m_lines.len()
        );
    }
    answer_offer(&mut student, &sub_pc, offer).await?;
    ok(format!("renegotiated: {}", m_lines.join(" | ")));

    step("everyone leaves");
    for sig in [&mut late, &mut student, &mut lead] {
        sig.leave().await;
    }
    for pc in [&late_pc, &sub_pc, &lead_pc] {
        let _ = pc.close().await;
    }
    ok("left");
    Ok(())
}

fn step(what: &str) {
    println!("== {what}");
}

fn ok(what: impl std::fmt::Display) {
    println!("   ok: {what}");
}

/// What a peer connection's handler reports.
enum PcEvent {
    Candidate(IceCandidate),
    Gathered,
    State(RTCPeerConnectionState),
    Track(Arc<dyn TrackRemote>),
}

struct Events(mpsc::UnboundedSender<PcEvent>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(c) = event.candidate.to_json() {
            let _ = self.0.send(PcEvent::Candidate(IceCandidate {
                candidate: c.candidate,
                sdp_mid: c.sdp_mid,
                sdp_m_line_index: c.sdp_mline_index,
                username_fragment: c.username_fragment,
            }));
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.0.send(PcEvent::Gathered);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.0.send(PcEvent::State(state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.0.send(PcEvent::Track(track));
    }
}

/// A peer connection as Duet's SFU builds one (its codecs and interceptors, no mDNS), on `bind`.
async fn peer(
    bind: IpAddr,
) -> anyhow::Result<(Arc<dyn PeerConnection>, mpsc::UnboundedReceiver<PcEvent>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media::media_engine()?)
        .with_interceptor_registry(media::interceptors(None))
        .with_setting_engine(settings)
        .with_handler(Arc::new(Events(tx)))
        .with_udp_addrs(vec![format!("{bind}:0")])
        .build()
        .await?;
    Ok((Arc::new(pc), rx))
}

/// A sending track with Duet's parameters for this codec, added to `pc`.
async fn local_track(
    pc: &Arc<dyn PeerConnection>,
    id: &str,
    mime: &str,
    clock_rate: u32,
    channels: u16,
    fmtp: &str,
) -> anyhow::Result<(Arc<TrackLocalStaticRTP>, u32, u8)> {
    let wanted = RTCRtpCodec {
        mime_type: mime.into(),
        clock_rate,
        channels,
        sdp_fmtp_line: fmtp.into(),
        rtcp_feedback: Vec::new(),
    };
    let (_, params) = media::subscriber_codec(&wanted).context("codec not in Duet's engine")?;
    let kind = if clock_rate == 90_000 {
        RtpCodecKind::Video
    } else {
        RtpCodecKind::Audio
    };
    let ssrc = rand_ssrc(id);
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "lead".into(),
        id.into(),
        id.into(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: params.rtp_codec.clone(),
            ..Default::default()
        }],
    )));
    pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
    Ok((track, ssrc, params.payload_type))
}

/// A fixed SSRC per track id (the check needs no randomness).
fn rand_ssrc(id: &str) -> u32 {
    id.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    }) | 1
}

/// Offers from `pc`, publishes through `sig`, applies the answer; returns the answer.
async fn publish(
    sig: &mut JanusSignalling,
    pc: &Arc<dyn PeerConnection>,
    tracks: &[OfferedTrack],
) -> anyhow::Result<String> {
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer).await?;
    let local = pc.local_description().await.context("no local offer")?;
    let answer = sig.publish(local.sdp, tracks).await?;
    pc.set_remote_description(RTCSessionDescription::answer(answer.clone())?)
        .await?;
    Ok(answer)
}

async fn next_offer(sig: &mut JanusSignalling) -> anyhow::Result<String> {
    loop {
        match tokio::time::timeout(STEP_TIMEOUT, sig.next_event()).await {
            Err(_) => bail!("no subscribe offer within {STEP_TIMEOUT:?}"),
            Ok(ev) => match ev? {
                SignalEvent::SubscribeOffer(sdp) => return Ok(sdp),
                SignalEvent::Closed(why) => bail!("closed while waiting for an offer: {why}"),
                SignalEvent::Ice(..) => {}
            },
        }
    }
}

async fn answer_offer(
    sig: &mut JanusSignalling,
    pc: &Arc<dyn PeerConnection>,
    offer: String,
) -> anyhow::Result<()> {
    pc.set_remote_description(RTCSessionDescription::offer(offer)?)
        .await?;
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer).await?;
    let local = pc.local_description().await.context("no local answer")?;
    sig.answer_subscribe(local.sdp).await
}

fn is_dead(s: RTCPeerConnectionState) -> bool {
    matches!(
        s,
        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
    )
}

/// Trickles a connection's candidates (and their end) through `sig` until `pc` is connected; keeps
/// remote tracks that show up meanwhile in `tracks`.
async fn drive(
    sig: &mut JanusSignalling,
    target: PcTarget,
    rx: &mut mpsc::UnboundedReceiver<PcEvent>,
    mut tracks: Option<&mut Vec<Arc<dyn TrackRemote>>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut trickled = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = match tokio::time::timeout(left, rx.recv()).await {
            Err(_) => bail!("{target:?} connection not connected within {STEP_TIMEOUT:?}"),
            Ok(None) => bail!("{target:?} connection's handler is gone"),
            Ok(Some(ev)) => ev,
        };
        match ev {
            PcEvent::Candidate(c) => {
                println!("  trickle {}", c.candidate);
                sig.trickle(target, c).await?;
                trickled += 1;
            }
            PcEvent::Gathered => {
                println!("  trickle end of candidates ({trickled})");
                sig.trickle(
                    target,
                    IceCandidate {
                        candidate: String::new(),
                        sdp_mid: None,
                        sdp_m_line_index: None,
                        username_fragment: None,
                    },
                )
                .await?;
            }
            PcEvent::State(RTCPeerConnectionState::Connected) => return Ok(()),
            PcEvent::State(s) if is_dead(s) => bail!("{target:?} connection {s}"),
            PcEvent::State(s) => println!("  {target:?} connection {s}"),
            PcEvent::Track(t) => match tracks.as_deref_mut() {
                Some(list) => list.push(t),
                None => bail!("a remote track on the {target:?} connection"),
            },
        }
    }
}

/// The selected DTLS/SRTP parameters and candidate pair of a connected `pc`.
async fn transport_info(pc: &Arc<dyn PeerConnection>) -> String {
    let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
    let mut out = Vec::new();
    for entry in report.iter() {
        match entry {
            RTCStatsReportEntry::Transport(t) => out.push(format!(
                "DTLS role {:?}, {}, cipher {}, SRTP {}",
                t.dtls_role, t.tls_version, t.dtls_cipher, t.srtp_cipher
            )),
            RTCStatsReportEntry::LocalCandidate(c) => out.push(format!(
                "local {}:{}",
                c.address.as_deref().unwrap_or("?"),
                c.port
            )),
            RTCStatsReportEntry::RemoteCandidate(c) => out.push(format!(
                "remote {}:{}",
                c.address.as_deref().unwrap_or("?"),
                c.port
            )),
            _ => {}
        }
    }
    out.join(", ")
}

/// `kind codec/clock direction mid` for each m-line of an SDP.
fn summarize_sdp(sdp: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            out.push(m.split(' ').next().unwrap_or_default().to_owned());
        } else if let Some(last) = out.last_mut() {
            let keep = line.starts_with("a=mid:")
                || matches!(
                    line,
                    "a=sendonly" | "a=recvonly" | "a=sendrecv" | "a=inactive"
                )
                || (line.starts_with("a=rtpmap:") && !last.contains('/'));
            if keep {
                last.push(' ');
                last.push_str(line.trim_start_matches("a="));
            }
        }
    }
    out
}

/// Writes 50 Opus packets/s and ~90 H.264 packets/s (fake payloads; Janus only relays).
async fn send_media(
    mic: (Arc<TrackLocalStaticRTP>, u32, u8),
    cam: (Arc<TrackLocalStaticRTP>, u32, u8),
) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (mut seq, mut vseq) = (0u16, 0u16);
    for n in 0u32.. {
        tick.tick().await;
        seq = seq.wrapping_add(1);
        let audio = packet(mic.1, mic.2, seq, n.wrapping_mul(960), true, vec![0xfc; 60]);
        if mic.0.write_rtp(audio).await.is_err() {
            return;
        }
        // Two packets of one IDR frame (FU-A, NAL type 5) every other tick: 25 frames/s.
        if n % 2 == 0 {
            let ts = n.wrapping_mul(1800);
            for (i, fu_header) in [(0, 0x85u8), (1, 0x45)] {
                let mut payload = vec![0x7c, fu_header];
                payload.resize(900, 0xaa);
                vseq = vseq.wrapping_add(1);
                if cam
                    .0
                    .write_rtp(packet(cam.1, cam.2, vseq, ts, i == 1, payload))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

fn packet(
    ssrc: u32,
    pt: u8,
    seq: u16,
    ts: u32,
    marker: bool,
    payload: Vec<u8>,
) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..Default::default()
        },
        payload: bytes::Bytes::from(payload),
    }
}

/// Prints what Janus's verbose log says about the DTLS/SRTP it negotiated.
fn report_srtp_from_log(log: &std::path::Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines() {
        let l = line.to_ascii_lowercase();
        if l.contains("] srtp_") || (l.contains("dtls") && l.contains("established")) {
            let text = line.split("] ").last().unwrap_or(line).trim().to_owned();
            if seen.insert(text.clone()) {
                println!("  janus log: {text}");
            }
        }
    }
}
