//! A live room: the sans-IO [`core::Room`](crate::core::Room) behind one mutex, plus what the
//! shell needs to act on its outputs.
//!
//! Locking: one `std::sync::Mutex` per room, held only for synchronous work (core input, draining
//! outputs into subscriber queues with `try_send`). Nothing awaits while holding it. Async effects
//! (keyframe requests to publishers, events to sessions) are collected and done after unlocking.

use crate::core::{self, Output, RtpHeader, SubHandle, TrackHandle};
use crate::shell::media::Estimate;
use bytes::Bytes;
use duet_sfu_proto::signal::{
    ParticipantInfo, QualityInfo, ReceivedLayer, SIMULCAST_RIDS, ServerMessage, TrackInfo,
};
use duet_sfu_proto::{Grants, ParticipantId, Role, RoomId, TrackId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::TrackRemote;

/// A packet queued for one subscriber's writer task.
pub type SinkPacket = (Arc<TrackLocalStaticRTP>, rtc::rtp::Packet);

/// Commands a room (or another session) sends to a session's actor.
pub enum SessionCmd {
    /// Send a message to the client.
    Send(ServerMessage),
    /// Close signalling with a code and a reason.
    Close(u16, String),
    /// Start receiving a track published by someone else.
    Subscribe(
        TrackHandle,
        TrackInfo,
        rtc::rtp_transceiver::rtp_sender::RTCRtpCodec,
    ),
    /// Stop receiving a track.
    Unsubscribe(TrackHandle),
}

/// A joined participant as the room knows it.
pub struct Member {
    /// What others see.
    pub info: ParticipantInfo,
    /// Grants from the token.
    pub grants: Grants,
    /// The session actor.
    pub cmd: mpsc::UnboundedSender<SessionCmd>,
    /// Distinguishes a replaced session from its successor with the same identity.
    pub epoch: u64,
    /// The bandwidth estimated toward it, from its subscribe connection.
    pub estimate: Estimate,
    /// The estimate last handed to the core.
    pub estimate_seen: u64,
}

/// A published track's remote end.
pub struct Source {
    /// What others see.
    pub info: TrackInfo,
    /// The webrtc-rs remote track, for keyframe requests.
    pub remote: Arc<dyn TrackRemote>,
    /// The publisher's SSRC of each layer, as its packets arrive (one entry without simulcast).
    pub layer_ssrcs: Vec<Option<u32>>,
    /// The publisher's codec.
    pub codec: rtc::rtp_transceiver::rtp_sender::RTCRtpCodec,
    /// The browser's `MediaStreamTrack.id`, to tell the publisher which layers to encode.
    pub browser_id: String,
}

/// A subscription's output.
pub struct Sink {
    /// The local track on the subscriber's peer connection.
    pub track: Arc<TrackLocalStaticRTP>,
    /// The subscriber's writer queue.
    pub queue: mpsc::Sender<SinkPacket>,
    /// Who receives.
    pub subscriber: ParticipantId,
    /// Which track (its id in the room).
    pub track_id: TrackId,
    /// Whether it is video (a layer is reported for it).
    pub video: bool,
}

/// Everything behind the room's lock.
pub struct RoomInner {
    /// The forwarding core.
    pub core: core::Room,
    /// Joined participants, hidden ones included.
    pub members: HashMap<ParticipantId, Member>,
    /// Raised hands, in order.
    pub hands: Vec<ParticipantId>,
    /// Who is spotlighted.
    pub spotlight: Option<ParticipantId>,
    /// Last link-quality report per participant.
    pub quality: HashMap<ParticipantId, QualityInfo>,
    /// Published tracks.
    pub sources: HashMap<TrackHandle, Source>,
    /// Subscriptions' outputs.
    pub sinks: HashMap<SubHandle, Sink>,
}

/// Counters that outlive rooms, for `/metrics`.
#[derive(Debug, Default)]
pub struct ShellCounters {
    /// Packets dropped because a subscriber's queue was full.
    pub queue_drops: AtomicU64,
    /// Forwarding counters of rooms that have closed.
    pub closed: Mutex<core::RoomStats>,
}

/// A live room.
pub struct LiveRoom {
    /// Its id.
    pub id: RoomId,
    inner: Mutex<RoomInner>,
    counters: Arc<ShellCounters>,
    /// A span carried by everything the room does.
    pub span: tracing::Span,
}

/// An effect to perform after unlocking.
pub enum Deferred {
    /// Send a PLI to this publisher track.
    Pli(Arc<dyn TrackRemote>, u32),
    /// Tell everyone the active speaker.
    Speaker(Option<ParticipantId>),
}

/// The rids of the layers set in `mask`, for [`ServerMessage::PublishLayers`].
fn rids(mask: u8) -> Vec<String> {
    SIMULCAST_RIDS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, r)| (*r).to_owned())
        .collect()
}

impl LiveRoom {
    /// A new, empty room.
    pub fn new(id: RoomId, config: core::CoreConfig, counters: Arc<ShellCounters>) -> Self {
        let span = tracing::info_span!("room", room = %id);
        Self {
            inner: Mutex::new(RoomInner {
                core: core::Room::new(id.clone(), config),
                members: HashMap::new(),
                hands: Vec::new(),
                spotlight: None,
                quality: HashMap::new(),
                sources: HashMap::new(),
                sinks: HashMap::new(),
            }),
            id,
            counters,
            span,
        }
    }

    /// Locks the room. Never hold the guard across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, RoomInner> {
        // A poisoned lock means a panic while forwarding, which is a bug; keep serving anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drains the core's outputs: forwards go straight into subscriber queues, the rest is
    /// returned to be done after unlocking.
    pub fn drain(&self, inner: &mut RoomInner, deferred: &mut Vec<Deferred>) {
        while let Some(out) = inner.core.poll_output() {
            match out {
                Output::Forward {
                    sub,
                    header,
                    payload,
                    ..
                } => {
                    let Some(sink) = inner.sinks.get(&sub) else {
                        continue;
                    };
                    let packet = to_rtp(header, payload);
                    if sink.queue.try_send((sink.track.clone(), packet)).is_err() {
                        self.counters.queue_drops.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Output::RequestKeyframe { track, layer } => {
                    if let Some(src) = inner.sources.get(&track)
                        && let Some(Some(ssrc)) = src.layer_ssrcs.get(usize::from(layer))
                    {
                        deferred.push(Deferred::Pli(src.remote.clone(), *ssrc));
                    }
                }
                Output::PublishLayers { track, mask } => {
                    if let Some(src) = inner.sources.get(&track)
                        && let Some(m) = inner.members.get(&src.info.participant)
                    {
                        tracing::debug!(parent: &self.span, track = %src.info.track_id, mask, "layers wanted");
                        let _ = m.cmd.send(SessionCmd::Send(ServerMessage::PublishLayers {
                            track_id: src.browser_id.clone(),
                            active: rids(mask),
                        }));
                    }
                }
                Output::ActiveSpeaker(p) => deferred.push(Deferred::Speaker(p)),
            }
        }
    }

    /// Performs deferred effects.
    pub async fn perform(&self, deferred: Vec<Deferred>) {
        for d in deferred {
            match d {
                Deferred::Pli(remote, media_ssrc) => {
                    let pli = rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc,
                    };
                    if let Err(e) = remote.write_rtcp(vec![Box::new(pli)]).await {
                        tracing::debug!(parent: &self.span, error = %e, "keyframe request not sent");
                    }
                }
                Deferred::Speaker(p) => {
                    self.broadcast(&ServerMessage::ActiveSpeaker { participant: p }, None)
                }
            }
        }
    }

    /// Hands each member's new bandwidth estimate to the core.
    pub fn update_estimates(inner: &mut RoomInner) {
        let RoomInner { core, members, .. } = inner;
        for (id, m) in members.iter_mut() {
            let e = m.estimate.load(Ordering::Relaxed);
            if e != 0 && e != m.estimate_seen {
                m.estimate_seen = e;
                core.set_estimate(id, e);
            }
        }
    }

    /// A packet from a publisher, on one of the track's layers.
    pub async fn on_rtp(
        &self,
        track: TrackHandle,
        layer: u8,
        packet: rtc::rtp::Packet,
        audio_level_ext: Option<u8>,
    ) {
        let level = audio_level_ext
            .and_then(|id| packet.header.get_extension(id))
            .and_then(|b| b.first().map(|v| v & 0x7f));
        let header = RtpHeader {
            payload_type: packet.header.payload_type,
            marker: packet.header.marker,
            sequence_number: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            ssrc: packet.header.ssrc,
        };
        let mut deferred = Vec::new();
        {
            let mut inner = self.lock();
            inner
                .core
                .handle_rtp(Instant::now(), track, layer, header, packet.payload, level);
            self.drain(&mut inner, &mut deferred);
        }
        if !deferred.is_empty() {
            self.perform(deferred).await;
        }
    }

    /// Sends `msg` to every member except `except` (hidden members still receive).
    pub fn broadcast(&self, msg: &ServerMessage, except: Option<&ParticipantId>) {
        let inner = self.lock();
        for (id, m) in &inner.members {
            if Some(id) != except {
                let _ = m.cmd.send(SessionCmd::Send(msg.clone()));
            }
        }
    }

    /// Visible participants except `except`.
    pub fn visible_participants(inner: &RoomInner, except: &ParticipantId) -> Vec<ParticipantInfo> {
        let mut v: Vec<ParticipantInfo> = inner
            .members
            .iter()
            .filter(|(id, m)| *id != except && !m.info.role.is_hidden())
            .map(|(_, m)| m.info.clone())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Every participant's link as last reported, with the SFU's estimate toward it and the
    /// layer it receives of each video track, sorted by participant.
    pub fn quality_table(inner: &RoomInner) -> Vec<QualityInfo> {
        // One pass over the subscriptions, not one per participant: this runs on every report.
        let mut layers: HashMap<&ParticipantId, Vec<ReceivedLayer>> = HashMap::new();
        for (sub, s) in inner.sinks.iter().filter(|(_, s)| s.video) {
            layers
                .entry(&s.subscriber)
                .or_default()
                .push(ReceivedLayer {
                    track_id: s.track_id.clone(),
                    layer: inner.core.subscription_layer(*sub),
                });
        }
        let mut participants: Vec<QualityInfo> = inner
            .quality
            .values()
            .map(|q| {
                let mut q = q.clone();
                q.estimate_kbps = inner
                    .core
                    .estimate(&q.participant)
                    .map(|bps| u32::try_from(bps / 1000).unwrap_or(u32::MAX));
                q.layers = layers.remove(&q.participant).unwrap_or_default();
                q.layers.sort_by(|a, b| a.track_id.cmp(&b.track_id));
                q
            })
            .collect();
        participants.sort_by(|a, b| a.participant.cmp(&b.participant));
        participants
    }

    /// Sends the quality table to the lead and observers.
    pub fn send_quality(&self) {
        let inner = self.lock();
        let participants = Self::quality_table(&inner);
        let msg = ServerMessage::Quality { participants };
        for m in inner.members.values() {
            if matches!(m.info.role, Role::Lead | Role::Observer) {
                let _ = m.cmd.send(SessionCmd::Send(msg.clone()));
            }
        }
    }

    /// Cumulative forwarding counters of this room.
    pub fn stats(&self) -> core::RoomStats {
        self.lock().core.stats().clone()
    }

    /// Adds this room's counters to the closed-room totals (when it closes).
    pub fn retire(&self) {
        let s = self.stats();
        let mut c = self
            .counters
            .closed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        c.packets_in += s.packets_in;
        c.bytes_in += s.bytes_in;
        c.packets_out += s.packets_out;
        c.bytes_out += s.bytes_out;
        c.nacks += s.nacks;
        c.nack_hits += s.nack_hits;
        c.nack_misses += s.nack_misses;
        c.plis_sent += s.plis_sent;
        c.plis_throttled += s.plis_throttled;
        c.layer_switches += s.layer_switches;
        c.pauses += s.pauses;
    }
}

/// Builds a webrtc-rs packet from the core's rewritten header; extensions are not forwarded
/// (the subscriber leg adds its own).
pub fn to_rtp(h: RtpHeader, payload: Bytes) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker: h.marker,
            payload_type: h.payload_type,
            sequence_number: h.sequence_number,
            timestamp: h.timestamp,
            ssrc: h.ssrc,
            ..Default::default()
        },
        payload,
    }
}
