//! webrtc-rs setup shared by every peer connection: codecs, header extensions, the interceptor
//! chain, the port allocator, and ICE candidates between webrtc-rs and the signalling protocol.
//!
//! Codecs are fixed (no transcoding): Opus (with in-band FEC), Opus in RED (RFC 2198 audio
//! redundancy, when the browser prefers it: each packet also carries the previous frame, so a
//! lossy link loses far fewer words), VP8 and H.264 packetization-mode 1. Payload types are
//! Duet's own on the subscribe leg (where the SFU offers), so a forwarded packet's payload type is
//! rewritten from the publisher's to these.
//!
//! The interceptor chain keeps the NACK *generator* (to recover a publisher's loss) and RTCP
//! reports, but not the NACK *responder*: NACKs and keyframe requests from subscribers are handed
//! to the application by [`FeedbackTap`] and answered by the forwarding core, from its own cache
//! and with its own throttle.
//!
//! Transport-wide congestion control runs both ways. On a publish connection the SFU only
//! *reports* arrivals (TWCC feedback), so the browser's own estimator paces its encoders. On a
//! subscribe connection the SFU numbers what it sends, and webrtc-rs's congestion-control
//! interceptor hands the subscriber's feedback to Duet's estimator ([`crate::core::bwe`], behind
//! [`SubscriberBwe`]); [`FeedbackTap`] stores each new target in an [`Estimate`] the room reads to
//! choose simulcast layers. No pacer: forwarded media is already paced by its publishers, and a
//! second queue would only add delay.

use crate::config::SfuConfig;
use crate::core::Codec;
use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// The bandwidth estimated toward one subscriber, bits per second (0 until the first feedback),
/// written by its subscribe connection's interceptor chain and read by the room.
pub type Estimate = Arc<AtomicU64>;

/// Where the GCC estimate starts: enough for the teacher's camera at its middle layer and a
/// classroom thumbnail, so a class begins watchable and climbs from there.
const INITIAL_ESTIMATE_BPS: f64 = 1_000_000.0;
const MIN_ESTIMATE_BPS: f64 = 100_000.0;
const MAX_ESTIMATE_BPS: f64 = 50_000_000.0;

/// RFC 2198 redundant audio (here: Opus in RED), as browsers name it.
pub const MIME_TYPE_RED: &str = "audio/red";

/// RFC 6464 client-to-mixer audio level.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// One codec Duet negotiates.
struct CodecEntry {
    payload_type: u8,
    mime: &'static str,
    clock_rate: u32,
    channels: u16,
    fmtp: &'static str,
}

const CODECS: &[CodecEntry] = &[
    CodecEntry {
        payload_type: 111,
        mime: MIME_TYPE_OPUS,
        clock_rate: 48_000,
        channels: 2,
        fmtp: "minptime=10;useinbandfec=1",
    },
    CodecEntry {
        payload_type: 63,
        mime: MIME_TYPE_RED,
        clock_rate: 48_000,
        channels: 2,
        fmtp: "111/111",
    },
    CodecEntry {
        payload_type: 96,
        mime: MIME_TYPE_VP8,
        clock_rate: 90_000,
        channels: 0,
        fmtp: "",
    },
    CodecEntry {
        payload_type: 102,
        mime: MIME_TYPE_H264,
        clock_rate: 90_000,
        channels: 0,
        fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    },
    CodecEntry {
        payload_type: 108,
        mime: MIME_TYPE_H264,
        clock_rate: 90_000,
        channels: 0,
        fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
    },
];

fn video_feedback() -> Vec<RTCPFeedback> {
    [("nack", ""), ("nack", "pli"), ("ccm", "fir")]
        .iter()
        .map(|(t, p)| RTCPFeedback {
            typ: (*t).into(),
            parameter: (*p).into(),
        })
        .collect()
}

fn params(e: &CodecEntry) -> RTCRtpCodecParameters {
    let video = e.clock_rate == 90_000;
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: e.mime.into(),
            clock_rate: e.clock_rate,
            channels: e.channels,
            sdp_fmtp_line: e.fmtp.into(),
            rtcp_feedback: if video { video_feedback() } else { Vec::new() },
        },
        payload_type: e.payload_type,
    }
}

/// A media engine with Duet's codecs and header extensions.
pub fn media_engine() -> Result<MediaEngine, rtc::shared::error::Error> {
    let mut m = MediaEngine::default();
    for e in CODECS {
        let kind = if e.clock_rate == 90_000 {
            RtpCodecKind::Video
        } else {
            RtpCodecKind::Audio
        };
        m.register_codec(params(e), kind)?;
    }
    m.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.into(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    configure_simulcast_extension_headers(&mut m)?;
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        m.register_feedback(
            RTCPFeedback {
                typ: "transport-cc".into(),
                parameter: String::new(),
            },
            kind,
        );
        m.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: TRANSPORT_CC_URI.into(),
            },
            kind,
            None,
        )?;
    }
    Ok(m)
}

/// The transport-wide sequence number header extension.
pub const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// The interceptor chain: NACK generator, RTCP reports, transport-wide congestion control and
/// the feedback tap. With `estimate` (a subscribe connection) the chain numbers outgoing packets
/// and estimates the subscriber's bandwidth from its feedback; without (a publish connection) it
/// reports arrivals so the publisher can estimate its own.
pub fn interceptors(estimate: Option<Estimate>) -> Registry {
    let registry = Registry::new().with(
        Slot::NackGenerator,
        rtc::interceptor::NackGeneratorBuilder::new().build(),
    );
    let registry = configure_rtcp_reports(registry);
    let registry = match &estimate {
        Some(_) => registry
            .with(
                Slot::CongestionControl,
                rtc::interceptor::CongestionControlBuilder::new(SubscriberBwe(
                    crate::core::bwe::Bwe::new(
                        INITIAL_ESTIMATE_BPS,
                        MIN_ESTIMATE_BPS,
                        MAX_ESTIMATE_BPS,
                    ),
                ))
                .build(),
            )
            .with(
                Slot::TwccSender,
                rtc::interceptor::TwccSenderBuilder::new().build(),
            ),
        None => registry.with(
            Slot::TwccReceiver,
            rtc::interceptor::TwccReceiverBuilder::new().build(),
        ),
    };
    registry.with(
        Slot::Custom(20_000),
        FeedbackTap {
            estimate,
            ..FeedbackTap::default()
        },
    )
}

/// Duet's payload type for Opus in RED on the subscribe leg.
pub const RED_PAYLOAD_TYPE: u8 = 63;

/// The subscribe-leg codec for a publisher's codec: Duet's payload type and parameters.
/// H.264 matches on profile-level-id when it can, else takes the first H.264 entry.
///
/// RED is the exception: webrtc-rs counts it a repair codec that cannot be a track's own, so a
/// RED track goes out on an Opus track (whose m-line also offers RED) and its packets carry
/// [`RED_PAYLOAD_TYPE`], which the subscriber's browser decodes as RED.
pub fn subscriber_codec(remote: &RTCRtpCodec) -> Option<(Codec, RTCRtpCodecParameters)> {
    let codec = Codec::from_mime(&remote.mime_type)?;
    if codec == Codec::Red {
        let opus = CODECS.iter().find(|e| e.mime == MIME_TYPE_OPUS)?;
        return Some((codec, params(opus)));
    }
    let same_mime: Vec<&CodecEntry> = CODECS
        .iter()
        .filter(|e| e.mime.eq_ignore_ascii_case(&remote.mime_type))
        .collect();
    let profile = |f: &str| {
        f.split(';')
            .find_map(|kv| kv.trim().strip_prefix("profile-level-id="))
            .map(|p| p.to_ascii_lowercase())
    };
    let wanted = profile(&remote.sdp_fmtp_line);
    let entry = same_mime
        .iter()
        .find(|e| wanted.is_some() && profile(e.fmtp) == wanted)
        .or(same_mime.first())?;
    Some((codec, params(entry)))
}

/// Duet's estimator ([`crate::core::bwe::Bwe`]) where webrtc-rs's congestion-control interceptor
/// expects one.
pub struct SubscriberBwe(pub crate::core::bwe::Bwe);

impl rtc::interceptor::BandwidthEstimator for SubscriberBwe {
    fn on_reports(&mut self, now: Instant, reports: &[rtc::interceptor::PacketReport]) {
        let before = self.0.last_window().0;
        self.0.on_feedback(
            now,
            reports.iter().map(|r| crate::core::bwe::Sample {
                departure: r.departure,
                arrival: r.arrival.filter(|_| r.arrived),
                size: r.size,
            }),
        );
        let (windows, w) = self.0.last_window();
        if windows != before {
            tracing::trace!(
                estimate = self.0.estimate() as u64,
                verdict = ?self.0.verdict(),
                loss = w.loss,
                queue_ms = ?w.queue_ms,
                mean_queue_ms = ?w.mean_queue_ms,
                delivered = ?w.delivered.map(|d| d as u64),
                "bandwidth window"
            );
        }
    }

    fn target_bitrate(&self) -> f64 {
        self.0.estimate()
    }
}

/// Hands subscribers' keyframe requests (PLI, FIR) and NACKs to the application, where the
/// forwarding core answers them, and records the congestion controller's new targets; all other
/// inbound RTCP stops at the end of the chain.
#[derive(Default)]
pub struct FeedbackTap {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
    estimate: Option<Estimate>,
}

fn is_feedback(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>()
        || any.is::<FullIntraRequest>()
        || any.is::<TransportLayerNack>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Some(estimate) = &self.estimate {
            for a in &msg.message.attributes {
                if let Attribute::TargetBitrateChanged { bits_per_second } = a {
                    estimate.store(bits_per_second.max(1.0) as u64, Ordering::Relaxed);
                }
            }
            // The estimator only reports changes: once feedback flows, the starting estimate
            // holds until it does (a peer that never sends feedback keeps "no estimate").
            if estimate.load(Ordering::Relaxed) == 0
                && let Packet::Rtcp(packets) = &msg.message.packet
                && packets.iter().any(|p| p.as_any().is::<TransportLayerCc>())
            {
                estimate.store(INITIAL_ESTIMATE_BPS as u64, Ordering::Relaxed);
            }
        }
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let keep: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| is_feedback(p.as_ref()))
                .cloned()
                .collect();
            if keep.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(keep);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for FeedbackTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// A local candidate as the signalling protocol carries it (`None` if webrtc-rs cannot render
/// it).
pub fn signal_candidate(
    event: &webrtc::peer_connection::RTCPeerConnectionIceEvent,
) -> Option<duet_sfu_proto::signal::IceCandidate> {
    let c = event.candidate.to_json().ok()?;
    Some(duet_sfu_proto::signal::IceCandidate {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_m_line_index: c.sdp_mline_index,
        username_fragment: c.username_fragment,
    })
}

/// A remote candidate from signalling, as webrtc-rs takes it.
pub fn candidate_init(
    c: duet_sfu_proto::signal::IceCandidate,
) -> webrtc::peer_connection::RTCIceCandidateInit {
    webrtc::peer_connection::RTCIceCandidateInit {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_mline_index: c.sdp_m_line_index,
        username_fragment: c.username_fragment,
        ..Default::default()
    }
}

/// Hands out media ports round-robin from the configured range.
#[derive(Debug)]
pub struct PortAllocator {
    min: u16,
    span: u32,
    next: AtomicU32,
}

impl PortAllocator {
    /// An allocator over `config.rtc_port_min..=config.rtc_port_max`.
    pub fn new(config: &SfuConfig) -> Self {
        Self {
            min: config.rtc_port_min,
            span: u32::from(config.rtc_port_max - config.rtc_port_min) + 1,
            next: AtomicU32::new(0),
        }
    }

    /// The next candidate port (the caller tries the next one if it is taken).
    pub fn next_port(&self) -> u16 {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.span;
        self.min + u16::try_from(i).expect("span fits the u16 port range")
    }

    /// How many ports the range holds.
    pub fn span(&self) -> u32 {
        self.span
    }
}
