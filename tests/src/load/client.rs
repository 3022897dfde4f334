//! One simulated participant: a webrtc-rs client with Duet's browser client's shape.
//!
//! - A **publish** connection (when the participant publishes): one send-only transceiver per
//!   source, each fed from a looped [`Clip`] at the clip's frame rate, with its own SSRC,
//!   continuous sequence numbers and timestamps. A keyframe request (PLI/FIR) makes the next frame
//!   a keyframe (the sender jumps to the clip's nearest keyframe), as a browser's encoder would;
//!   NACKs are answered by webrtc-rs's NACK responder from its send history.
//! - A **subscribe** connection, created on the server's first offer and renegotiated on every
//!   later one: every received stream is decrypted by webrtc-rs and counted (packets, bytes, loss
//!   from sequence numbers, interarrival jitter).
//!
//! The participant's join time runs from the start of its signalling to the first packet of the
//! last of its expected tracks.

use super::clip::Clip;
use super::signal::{OfferedTrack, SignalEvent, Signalling};
use super::stats::{Counters, StreamReceiver};
use anyhow::{Context, anyhow};
use duet_sfu::shell::media::{
    FeedbackTap, candidate_init, media_engine, signal_candidate, subscriber_codec,
};
use duet_sfu_proto::Source;
use duet_sfu_proto::signal::{IceCandidate, PcTarget};
use rtc::interceptor::{Registry, Slot};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::{Barrier, mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCPeerConnectionIceEvent, RTCSessionDescription, SettingEngineBuilder,
};

/// What one participant does.
#[derive(Clone, Debug)]
pub struct ParticipantPlan {
    /// Display name (also used in logs).
    pub name: String,
    /// What it publishes, each source from its clip.
    pub publishes: Vec<(Source, Clip)>,
    /// How many remote tracks it should end up receiving.
    pub expect_tracks: usize,
}

/// Shared handles of a run.
#[derive(Clone)]
pub struct RunCtx {
    /// The run's counters.
    pub counters: Arc<Counters>,
    /// Passed by every participant of a room once it has published (Janus subscribes only after).
    pub published: Arc<Barrier>,
    /// Turns `true` when the run ends.
    pub stop: watch::Receiver<bool>,
    /// The address the clients bind their media sockets to.
    pub bind_ip: std::net::IpAddr,
}

enum PcEvent {
    Candidate(PcTarget, IceCandidate),
    Track(Arc<dyn TrackRemote>),
}

struct Handler {
    target: PcTarget,
    tx: mpsc::UnboundedSender<PcEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Some(c) = signal_candidate(&event) {
            let _ = self.tx.send(PcEvent::Candidate(self.target, c));
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tx.send(PcEvent::Track(track));
    }
}

/// Client media ports come from their own range, below Linux's ephemeral ports and apart from
/// the SFUs' media ranges (Duet 40000–44999 in `duet-load`, Janus 30000–39999), so a client
/// socket can never sit on a port an SFU is about to use.
const CLIENT_PORTS: std::ops::Range<u16> = 20_000..30_000;
static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

async fn peer_connection(
    target: PcTarget,
    tx: mpsc::UnboundedSender<PcEvent>,
    bind_ip: std::net::IpAddr,
) -> anyhow::Result<Arc<dyn PeerConnection>> {
    let span = u32::from(CLIENT_PORTS.end - CLIENT_PORTS.start);
    let mut last = None;
    for _ in 0..64 {
        let i = NEXT_PORT.fetch_add(1, Ordering::Relaxed) % span;
        let port = CLIENT_PORTS.start + u16::try_from(i).unwrap_or(0);
        match build_pc(target, tx.clone(), bind_ip, port).await {
            Ok(pc) => return Ok(pc),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no client port free")))
}

async fn build_pc(
    target: PcTarget,
    tx: mpsc::UnboundedSender<PcEvent>,
    bind_ip: std::net::IpAddr,
    port: u16,
) -> anyhow::Result<Arc<dyn PeerConnection>> {
    let mut engine = media_engine().map_err(|e| anyhow!("media engine: {e}"))?;
    let registry = configure_rtcp_reports(configure_nack(Registry::new(), &mut engine))
        .with(Slot::Custom(20_000), FeedbackTap::default());
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_handler(Arc::new(Handler { target, tx }))
        .with_udp_addrs(vec![std::net::SocketAddr::new(bind_ip, port).to_string()])
        .build()
        .await
        .map_err(|e| anyhow!("peer connection: {e}"))?;
    Ok(Arc::new(pc))
}

/// The codec a clip is sent with, from Duet's table (the same parameters a browser offers).
fn rtp_codec(clip: &Clip) -> anyhow::Result<(u8, RTCRtpCodec)> {
    let (mime, fmtp, rate, channels) = match clip.spec.codec {
        duet_sfu::core::Codec::Opus => ("audio/opus", "", 48_000, 2),
        duet_sfu::core::Codec::Red => anyhow::bail!("the load tool sends plain Opus, not RED"),
        duet_sfu::core::Codec::Vp8 => ("video/VP8", "", 90_000, 0),
        duet_sfu::core::Codec::H264 => (
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            90_000,
            0,
        ),
    };
    let probe = RTCRtpCodec {
        mime_type: mime.into(),
        clock_rate: rate,
        channels,
        sdp_fmtp_line: fmtp.into(),
        rtcp_feedback: Vec::new(),
    };
    let (_, params) =
        subscriber_codec(&probe).ok_or_else(|| anyhow!("no codec entry for {mime}"))?;
    Ok((params.payload_type, params.rtp_codec))
}

/// Runs one participant until the run stops. Errors are counted, logged and returned; a
/// participant that fails before its room's "published" barrier still passes it, so the others
/// are not held up.
pub async fn run_participant(
    plan: ParticipantPlan,
    mut sig: Box<dyn Signalling>,
    ctx: RunCtx,
) -> anyhow::Result<()> {
    let name = plan.name.clone();
    let counters = ctx.counters.clone();
    let barrier = ctx.published.clone();
    let mut gate_passed = false;
    let result = play(plan, sig.as_mut(), ctx, &mut gate_passed).await;
    if !gate_passed {
        tokio::spawn(async move {
            barrier.wait().await;
        });
    }
    sig.leave().await;
    if let Err(e) = &result {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(who = %name, error = %format!("{e:#}"), "participant failed");
    }
    result
}

async fn play(
    plan: ParticipantPlan,
    sig: &mut dyn Signalling,
    ctx: RunCtx,
    gate_passed: &mut bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let counters = ctx.counters.clone();
    let (pc_tx, mut pc_rx) = mpsc::unbounded_channel();
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut stop = ctx.stop.clone();

    // Publish.
    let mut publish_pc = None;
    if !plan.publishes.is_empty() {
        let pc = peer_connection(PcTarget::Publisher, pc_tx.clone(), ctx.bind_ip).await?;
        let mut offered = Vec::new();
        let mut senders = Vec::new();
        for (i, (source, clip)) in plan.publishes.iter().enumerate() {
            let (pt, codec) = rtp_codec(clip)?;
            let ssrc = rand::random::<u32>() | 1;
            let track_id = format!("{}-{source}-{i}", plan.name);
            let kind = if source.is_audio() {
                RtpCodecKind::Audio
            } else {
                RtpCodecKind::Video
            };
            let local = Arc::new(TrackLocalStaticRTP::new(
                rtc::media_stream::MediaStreamTrack::new(
                    plan.name.clone(),
                    track_id.clone(),
                    track_id.clone(),
                    kind,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(ssrc),
                            ..Default::default()
                        },
                        codec,
                        ..Default::default()
                    }],
                ),
            ));
            pc.add_transceiver_from_track(
                local.clone() as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    streams: vec![plan.name.clone()],
                    send_encodings: Vec::new(),
                }),
            )
            .await
            .map_err(|e| anyhow!("add transceiver: {e}"))?;
            offered.push(OfferedTrack {
                track_id,
                source: *source,
            });
            senders.push((local, clip.clone(), pt, ssrc));
        }
        let offer = pc
            .create_offer(None)
            .await
            .map_err(|e| anyhow!("create offer: {e}"))?;
        pc.set_local_description(offer)
            .await
            .map_err(|e| anyhow!("set local offer: {e}"))?;
        let sdp = pc
            .local_description()
            .await
            .ok_or_else(|| anyhow!("no local offer"))?
            .sdp;
        let answer = sig.publish(sdp, &offered).await.context("publish")?;
        let answer = RTCSessionDescription::answer(answer).map_err(|e| anyhow!("answer: {e}"))?;
        pc.set_remote_description(answer)
            .await
            .map_err(|e| anyhow!("set publish answer: {e}"))?;
        for (local, clip, pt, ssrc) in senders {
            tasks.extend(spawn_sender(
                local,
                clip,
                pt,
                ssrc,
                counters.clone(),
                stop.clone(),
            ));
        }
        publish_pc = Some(pc);
    }

    let mut subscribe_pc: Option<Arc<dyn PeerConnection>> = None;
    let mut seen_tracks: HashSet<String> = HashSet::new();
    let mut streams_started = 0usize;
    let (started_tx, mut started_rx) = mpsc::unbounded_channel::<()>();
    let mut joined = plan.expect_tracks == 0;
    if joined {
        counters.join(started.elapsed());
    }
    let barrier = ctx.published.clone();
    let gate = barrier.wait();
    tokio::pin!(gate);
    let result: anyhow::Result<()> = loop {
        tokio::select! {
            _ = &mut gate, if !*gate_passed => {
                *gate_passed = true;
                if plan.expect_tracks > 0
                    && let Err(e) = sig.subscribe_all().await
                {
                    break Err(e.context("subscribe"));
                }
            }
            ev = sig.next_event() => match ev {
                Ok(SignalEvent::SubscribeOffer(sdp)) => {
                    let pc = match &subscribe_pc {
                        Some(pc) => pc.clone(),
                        None => match peer_connection(PcTarget::Subscriber, pc_tx.clone(), ctx.bind_ip).await {
                            Ok(pc) => {
                                subscribe_pc = Some(pc.clone());
                                pc
                            }
                            Err(e) => break Err(e),
                        },
                    };
                    if let Err(e) = answer_offer(&pc, sdp, sig).await {
                        break Err(e);
                    }
                }
                Ok(SignalEvent::Ice(target, c)) => {
                    let pc = match target {
                        PcTarget::Publisher => publish_pc.clone(),
                        PcTarget::Subscriber => subscribe_pc.clone(),
                    };
                    if let Some(pc) = pc
                        && !c.candidate.is_empty()
                        && let Err(e) = pc.add_ice_candidate(candidate_init(c)).await
                    {
                        tracing::debug!(who = %plan.name, error = %e, "remote candidate refused");
                    }
                }
                Ok(SignalEvent::Closed(reason)) => {
                    if *stop.borrow() {
                        break Ok(());
                    }
                    break Err(anyhow!("the server closed the session: {reason}"));
                }
                Err(e) => break Err(e),
            },
            Some(ev) = pc_rx.recv() => match ev {
                PcEvent::Candidate(target, c) => {
                    if let Err(e) = sig.trickle(target, c).await {
                        break Err(e.context("trickle"));
                    }
                }
                PcEvent::Track(remote) => {
                    let id = remote.track_id().await.to_string();
                    if seen_tracks.insert(id) {
                        tasks.push(spawn_receiver(remote, counters.clone(), started_tx.clone()));
                    }
                }
            },
            Some(()) = started_rx.recv() => {
                streams_started += 1;
                if !joined && streams_started >= plan.expect_tracks {
                    joined = true;
                    counters.join(started.elapsed());
                }
            }
            _ = stop.changed() => {
                if *stop.borrow() {
                    break Ok(());
                }
            }
        }
    };
    if !joined {
        tracing::warn!(
            who = %plan.name,
            expected = plan.expect_tracks,
            negotiated = seen_tracks.len(),
            with_media = streams_started,
            "not every expected track carried media"
        );
    }
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    for pc in [publish_pc, subscribe_pc].into_iter().flatten() {
        let _ = pc.close().await;
    }
    result
}

async fn answer_offer(
    pc: &Arc<dyn PeerConnection>,
    sdp: String,
    sig: &mut dyn Signalling,
) -> anyhow::Result<()> {
    let offer = RTCSessionDescription::offer(sdp).map_err(|e| anyhow!("offer: {e}"))?;
    pc.set_remote_description(offer)
        .await
        .map_err(|e| anyhow!("set subscribe offer: {e}"))?;
    let answer = pc
        .create_answer(None)
        .await
        .map_err(|e| anyhow!("create answer: {e}"))?;
    pc.set_local_description(answer)
        .await
        .map_err(|e| anyhow!("set local answer: {e}"))?;
    let sdp = pc
        .local_description()
        .await
        .ok_or_else(|| anyhow!("no local answer"))?
        .sdp;
    sig.answer_subscribe(sdp).await.context("answer subscribe")
}

/// The sender of one published track, and the reader of its feedback.
fn spawn_sender(
    local: Arc<TrackLocalStaticRTP>,
    clip: Clip,
    payload_type: u8,
    ssrc: u32,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> [JoinHandle<()>; 2] {
    let want_keyframe = Arc::new(AtomicBool::new(false));
    let feedback = {
        let local = local.clone();
        let want = want_keyframe.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            while let Some(ev) = local.poll().await {
                let TrackLocalEvent::OnRtcpPacket(packets) = ev else {
                    continue;
                };
                for p in packets {
                    let any = p.as_any();
                    if any.is::<rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack>() {
                        counters.nacks.fetch_add(1, Ordering::Relaxed);
                    } else {
                        counters.plis.fetch_add(1, Ordering::Relaxed);
                        want.store(true, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let pace_bps = (clip.bitrate() as f64 * PACE_FACTOR).max(64_000.0);
    let sender = tokio::spawn(async move {
        let frames = clip.frames.clone();
        let mut interval = tokio::time::interval(clip.frame_interval());
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut seq: u16 = rand::random();
        let ts_base: u32 = rand::random();
        let mut loops: u32 = 0;
        let mut i = 0usize;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.changed() => if *stop.borrow() { return },
            }
            if want_keyframe.swap(false, Ordering::Relaxed) && !frames[i].keyframe {
                // Jump to the next keyframe, as an encoder asked for one would make one now.
                match frames.iter().skip(i).position(|f| f.keyframe) {
                    Some(k) => i += k,
                    None => {
                        i = 0;
                        loops = loops.wrapping_add(1);
                    }
                }
            }
            let frame = &frames[i];
            let ts = ts_base
                .wrapping_add(loops.wrapping_mul(clip.duration_ts))
                .wrapping_add(frame.ts);
            let per_step = pace(frame, pace_bps);
            for (k, p) in frame.packets.iter().enumerate() {
                if k > 0 && k % per_step == 0 {
                    tokio::time::sleep(PACE_STEP).await;
                }
                let packet = rtc::rtp::Packet {
                    header: rtc::rtp::header::Header {
                        version: 2,
                        marker: p.marker,
                        payload_type,
                        sequence_number: seq,
                        timestamp: ts,
                        ssrc,
                        ..Default::default()
                    },
                    payload: p.payload.clone(),
                };
                seq = seq.wrapping_add(1);
                if local.write_rtp(packet).await.is_ok() {
                    counters.sent_packets.fetch_add(1, Ordering::Relaxed);
                    counters
                        .sent_bytes
                        .fetch_add(p.payload.len() as u64 + 12, Ordering::Relaxed);
                }
            }
            i += 1;
            if i == frames.len() {
                i = 0;
                loops = loops.wrapping_add(1);
            }
        }
    });
    [sender, feedback]
}

/// A browser paces what its encoder makes at a multiple of the target bitrate, so a large
/// keyframe leaves over a few hundred milliseconds rather than in one burst (which would overflow
/// the receiving socket's default 208 KiB buffer). The same here.
const PACE_FACTOR: f64 = 2.5;
/// The pacer's step: packets of a frame leave in groups this far apart.
const PACE_STEP: std::time::Duration = std::time::Duration::from_millis(5);

/// How many packets of `frame` leave per [`PACE_STEP`] at `pace_bps` (all of them for a small
/// frame).
fn pace(frame: &super::clip::Frame, pace_bps: f64) -> usize {
    let n = frame.packets.len().max(1);
    let bytes: usize = frame.packets.iter().map(|p| p.payload.len() + 12).sum();
    let spread = bytes as f64 * 8.0 / pace_bps;
    let steps = (spread / PACE_STEP.as_secs_f64()).floor().max(1.0) as usize;
    n.div_ceil(steps).max(1)
}

/// Counts one received track's packets until it ends.
fn spawn_receiver(
    remote: Arc<dyn TrackRemote>,
    counters: Arc<Counters>,
    started: mpsc::UnboundedSender<()>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let clock = match remote.kind().await {
            RtpCodecKind::Audio => 48_000,
            _ => 90_000,
        };
        let mut rx = StreamReceiver::new(clock, Instant::now());
        let slot = counters.new_stream();
        let mut ssrc = None;
        while let Some(ev) = remote.poll().await {
            let TrackRemoteEvent::OnRtpPacket(p) = ev else {
                if matches!(ev, TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError) {
                    break;
                }
                continue;
            };
            // A new SSRC on the same track is a new stream (it should not happen through an SFU
            // that rewrites, but count it right if it does).
            if ssrc != Some(p.header.ssrc) {
                if ssrc.is_none() {
                    let _ = started.send(());
                }
                ssrc = Some(p.header.ssrc);
                rx = StreamReceiver::new(clock, Instant::now());
            }
            let grown = rx.on_packet(p.header.sequence_number, p.header.timestamp, Instant::now());
            counters.expected.fetch_add(grown, Ordering::Relaxed);
            counters.recv_packets.fetch_add(1, Ordering::Relaxed);
            counters
                .recv_bytes
                .fetch_add(p.payload.len() as u64 + 12, Ordering::Relaxed);
            if rx.received.is_multiple_of(64) {
                counters.set_jitter(slot, rx.jitter());
            }
        }
    })
}
