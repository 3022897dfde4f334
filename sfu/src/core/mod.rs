//! The sans-IO forwarding core: one [`Room`] per live class.
//!
//! The core owns the media plane of a room: which tracks are published (a video track may have
//! up to three simulcast layers), who receives which track (subscriptions), SSRC /
//! sequence-number / timestamp rewriting per subscription, keyframe-request throttling, the
//! retransmission cache that answers NACKs, active-speaker detection, and which layer each
//! subscriber gets for the bandwidth estimated toward it ([`bwe`], [`alloc`]), telling publishers
//! which layers nobody receives so they stop encoding them. It does no I/O, spawns nothing, takes no locks and never reads the clock: time is an
//! argument (`now`) of every input, so tests drive it with simulated time.
//!
//! # Driving it
//! Feed inputs with `handle_*` methods ([`Room::handle_rtp`], [`Room::handle_nack`],
//! [`Room::handle_keyframe_request`], [`Room::handle_timeout`]), then drain [`Room::poll_output`]
//! until it returns `None`, and call [`Room::handle_timeout`] no later than [`Room::poll_timeout`].
//!
//! # Invariants
//! - A participant is **never** sent its own media: [`Room::subscribe`] and
//!   [`Room::switch_source`] refuse it with [`CoreError::OwnMedia`] (a classroom hearing itself
//!   through its loudspeakers is the classic echo failure).
//! - Per subscription, output sequence numbers continue without gaps across source changes, and a
//!   video subscription starts (or switches) only at a keyframe.
//! - At most one keyframe request (PLI) per second leaves for any layer of a publisher track;
//!   requests made in between are coalesced into one sent when the second is up, unless a
//!   keyframe came first. A subscriber's own requests count at most once per
//!   [`CoreConfig::subscriber_pli_interval`], so one lossy classroom cannot keep the teacher's
//!   encoder sending keyframes for everyone.
//! - A layer switch happens only at a keyframe of the new layer, and the subscriber's sequence
//!   numbers continue across it without a gap (the same re-basing as any source change). Going
//!   down happens at once; going up only after the estimate has allowed it for
//!   [`CoreConfig::up_switch_delay`].
//! - No received packet can make it panic.
//!
//! # Hot path
//! Per forwarded packet the core copies a 16-byte header and bumps the payload's reference count;
//! the output queue and the timer's scratch buffer are reused, and the speaker tick clones an id
//! only when the speaker changes, so steady-state forwarding allocates nothing at all
//! (`tests/core-allocations.rs` counts it with a heap profiler).

pub mod alloc;
pub mod bwe;
mod cache;
pub mod keyframe;
mod rewrite;
mod speaker;

pub use cache::RetransmitCache;
pub use keyframe::Codec;
pub use rewrite::SeqRewriter;

use bytes::Bytes;
use duet_sfu_proto::{ParticipantId, RoomId, Source, TrackId};
use speaker::SpeakerDetector;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The RTP header fields the core reads and rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    /// Payload type.
    pub payload_type: u8,
    /// Marker bit (end of a video frame).
    pub marker: bool,
    /// Sequence number.
    pub sequence_number: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
}

/// A published track inside a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackHandle(pub u32);

/// One subscriber's receipt of one (switchable) source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubHandle(pub u32);

/// Tunables of the core, with defaults suited to a classroom.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Minimum time between two keyframe requests to one layer of a publisher track.
    pub pli_interval: Duration,
    /// Video packets kept per track (per simulcast layer) for retransmission.
    pub video_cache_packets: usize,
    /// How often active speaker is re-evaluated.
    pub speaker_interval: Duration,
    /// Minimum time between two of one subscription's own keyframe requests that are passed on.
    pub subscriber_pli_interval: Duration,
    /// How often layer rates are measured and layers re-allocated.
    pub alloc_interval: Duration,
    /// How long an estimate must allow a higher layer before a subscription climbs to it.
    pub up_switch_delay: Duration,
    /// Share of the estimated bandwidth the allocator hands out (the rest is headroom for
    /// keyframes and retransmissions), in percent.
    pub budget_percent: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            pli_interval: Duration::from_secs(1),
            video_cache_packets: 1024,
            speaker_interval: Duration::from_millis(200),
            subscriber_pli_interval: Duration::from_secs(3),
            alloc_interval: Duration::from_millis(500),
            up_switch_delay: Duration::from_secs(2),
            budget_percent: 85,
        }
    }
}

/// What a new track is.
#[derive(Clone, Debug)]
pub struct TrackSpec {
    /// Its id in the room.
    pub id: TrackId,
    /// Who publishes it.
    pub publisher: ParticipantId,
    /// What it carries.
    pub source: Source,
    /// Its codec.
    pub codec: Codec,
    /// Simulcast layers (1 without simulcast, at most [`alloc::MAX_LAYERS`]); layer 0 is the
    /// lowest.
    pub layers: u8,
    /// Whether the lead teacher publishes it (their camera outranks the classrooms').
    pub lead: bool,
}

/// Bits per second assumed for a layer before any of it was measured: the browser's simulcast
/// ceilings for a camera, lowest first.
pub const NOMINAL_LAYER_RATES: [u64; alloc::MAX_LAYERS] = [150_000, 500_000, 1_500_000];
/// Assumed for a video track without simulcast before it was measured.
const NOMINAL_SINGLE_RATE: u64 = 800_000;
/// Assumed for an audio track before it was measured (Opus with FEC, headers included).
const NOMINAL_AUDIO_RATE: u64 = 48_000;
/// A layer that sent nothing for this long is not being encoded.
const STALE_LAYER: Duration = Duration::from_secs(3);

/// A new subscription: `subscriber` receives `track` as `ssrc` with `payload_type`.
#[derive(Clone, Debug)]
pub struct SubscribeSpec {
    /// Who receives.
    pub subscriber: ParticipantId,
    /// Which track, initially.
    pub track: TrackHandle,
    /// The SSRC the subscriber sees.
    pub ssrc: u32,
    /// The payload type negotiated with the subscriber.
    pub payload_type: u8,
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send this packet to the subscription's peer.
    Forward {
        /// Which subscription.
        sub: SubHandle,
        /// Rewritten header.
        header: RtpHeader,
        /// Payload, shared with the publisher's packet.
        payload: Bytes,
        /// Whether this answers a NACK.
        retransmission: bool,
    },
    /// Ask the publisher of this track for a keyframe (send a PLI) on one layer.
    RequestKeyframe {
        /// Which track.
        track: TrackHandle,
        /// Which simulcast layer (0 without simulcast).
        layer: u8,
    },
    /// The publisher of this simulcast track should encode exactly these layers (bit `i` set:
    /// layer `i` wanted). The lowest layer is always wanted, so a new subscriber starts at once.
    PublishLayers {
        /// Which track.
        track: TrackHandle,
        /// Wanted layers.
        mask: u8,
    },
    /// The room's active speaker changed.
    ActiveSpeaker(Option<ParticipantId>),
}

/// Why the core refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// No such track.
    #[error("no track {0:?}")]
    UnknownTrack(TrackHandle),
    /// No such subscription.
    #[error("no subscription {0:?}")]
    UnknownSubscription(SubHandle),
    /// The subscriber publishes this track itself.
    #[error("{participant} may not receive its own track {track}")]
    OwnMedia {
        /// Who.
        participant: ParticipantId,
        /// Which track.
        track: TrackId,
    },
    /// A subscription cannot switch between audio and video.
    #[error("cannot switch a subscription between audio and video")]
    KindMismatch,
}

/// Counters of one room, cumulative.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomStats {
    /// RTP packets received from publishers.
    pub packets_in: u64,
    /// Their payload bytes.
    pub bytes_in: u64,
    /// RTP packets forwarded to subscribers (retransmissions included).
    pub packets_out: u64,
    /// Their payload bytes.
    pub bytes_out: u64,
    /// Sequence numbers NACKed by subscribers.
    pub nacks: u64,
    /// NACKed packets resent from the cache.
    pub nack_hits: u64,
    /// NACKed packets no longer (or never) in the cache.
    pub nack_misses: u64,
    /// Keyframe requests sent to publishers.
    pub plis_sent: u64,
    /// Keyframe requests coalesced or dropped by the throttle.
    pub plis_throttled: u64,
    /// Simulcast layer switches made (at keyframes).
    pub layer_switches: u64,
    /// Times a subscription's video was paused: its link could not carry it, or it is not shown.
    pub pauses: u64,
}

/// One simulcast layer of a track (a track without simulcast has one).
#[derive(Debug)]
struct Layer {
    cache: RetransmitCache,
    last_pli: Option<Instant>,
    /// A request arrived inside the throttle window and is owed when it ends.
    pli_owed: bool,
    /// Payload bytes since the last rate measurement.
    bytes: u64,
    /// Measured bits per second (smoothed); `None` until measured.
    rate: Option<u64>,
    /// When its last packet arrived.
    last_packet: Option<Instant>,
}

#[derive(Debug)]
struct Track {
    spec: TrackSpec,
    layers: Vec<Layer>,
    /// Subscriptions whose home, current or pending source is this track.
    sinks: Vec<SubHandle>,
    /// The layers the publisher was last told to encode.
    told_mask: u8,
}

impl Track {
    /// Bits per second of `layer`: measured, else the nominal rate.
    fn rate(&self, layer: usize) -> u64 {
        let nominal = if self.spec.codec.is_audio() {
            NOMINAL_AUDIO_RATE
        } else if self.layers.len() > 1 {
            NOMINAL_LAYER_RATES[layer.min(alloc::MAX_LAYERS - 1)]
        } else {
            NOMINAL_SINGLE_RATE
        };
        self.layers
            .get(layer)
            .and_then(|l| l.rate)
            .unwrap_or(nominal)
    }
}

/// A track and one of its layers.
type Src = (TrackHandle, u8);

#[derive(Debug)]
struct Subscription {
    subscriber: ParticipantId,
    /// The track this subscription receives (changed by [`Room::switch_source`]).
    home: TrackHandle,
    /// The layer forwarded now (`None` until the first keyframe of `pending`, or paused).
    source: Option<Src>,
    /// The layer to switch to at its next keyframe.
    pending: Option<Src>,
    /// Since when `pending` has waited for its keyframe.
    pending_since: Option<Instant>,
    /// The layer the allocator chose (`None`: paused for bandwidth or not shown).
    target: Option<u8>,
    /// The highest layer worth sending for the tile's size (`None`: not shown).
    view: Option<u8>,
    /// Since when the allocator has wanted a higher layer than `target`.
    up_since: Option<Instant>,
    /// When this subscription's own keyframe request was last passed on.
    last_request: Option<Instant>,
    ssrc: u32,
    payload_type: u8,
    rewriter: SeqRewriter,
    /// When the last packet went out, to advance timestamps across a switch.
    last_forward: Option<Instant>,
    is_audio: bool,
}

/// The media plane of one live class. See the module documentation.
#[derive(Debug)]
pub struct Room {
    id: RoomId,
    config: CoreConfig,
    tracks: HashMap<TrackHandle, Track>,
    subs: HashMap<SubHandle, Subscription>,
    next_handle: u32,
    outputs: VecDeque<Output>,
    speaker: SpeakerDetector,
    next_speaker_tick: Option<Instant>,
    stats: RoomStats,
    /// Layers owed a keyframe request, reused by [`Room::handle_timeout`].
    owed_scratch: Vec<Src>,
    /// Receiving participants: their subscriptions and the bandwidth estimated toward them.
    subscribers: HashMap<ParticipantId, Subscriber>,
    next_alloc: Option<Instant>,
    last_alloc: Option<Instant>,
    /// Scratch buffers of the allocation tick, reused.
    wants_scratch: Vec<(SubHandle, alloc::Want)>,
    choices_scratch: Vec<Option<u8>>,
    apply_scratch: Vec<(SubHandle, Option<u8>)>,
}

/// A receiving participant as the allocator sees it.
#[derive(Debug, Default)]
struct Subscriber {
    subs: Vec<SubHandle>,
    /// Bits per second estimated toward it (from transport-wide congestion control).
    estimate: Option<u64>,
}

impl Room {
    /// An empty room.
    pub fn new(id: RoomId, config: CoreConfig) -> Self {
        Self {
            id,
            config,
            tracks: HashMap::new(),
            subs: HashMap::new(),
            next_handle: 1,
            outputs: VecDeque::new(),
            speaker: SpeakerDetector::default(),
            next_speaker_tick: None,
            stats: RoomStats::default(),
            owed_scratch: Vec::new(),
            subscribers: HashMap::new(),
            next_alloc: None,
            last_alloc: None,
            wants_scratch: Vec::new(),
            choices_scratch: Vec::new(),
            apply_scratch: Vec::new(),
        }
    }

    /// The room's id.
    pub fn id(&self) -> &RoomId {
        &self.id
    }

    /// Cumulative counters.
    pub fn stats(&self) -> &RoomStats {
        &self.stats
    }

    /// Number of published tracks.
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.subs.len()
    }

    /// What a track is.
    pub fn track(&self, track: TrackHandle) -> Option<&TrackSpec> {
        self.tracks.get(&track).map(|t| &t.spec)
    }

    /// The current source of a subscription (`None` while waiting for the first keyframe).
    pub fn subscription_source(&self, sub: SubHandle) -> Option<TrackHandle> {
        self.subs.get(&sub).and_then(|s| s.source).map(|(t, _)| t)
    }

    /// The layer a subscription forwards now (`None` while waiting for a keyframe or paused).
    pub fn subscription_layer(&self, sub: SubHandle) -> Option<u8> {
        self.subs.get(&sub).and_then(|s| s.source).map(|(_, l)| l)
    }

    /// The bandwidth estimated toward a participant, bits per second.
    pub fn estimate(&self, subscriber: &ParticipantId) -> Option<u64> {
        self.subscribers.get(subscriber).and_then(|s| s.estimate)
    }

    fn handle(&mut self) -> u32 {
        let h = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        h
    }

    /// Publishes a track.
    pub fn add_track(&mut self, spec: TrackSpec) -> TrackHandle {
        let h = TrackHandle(self.handle());
        let capacity = if spec.codec.is_audio() {
            0
        } else {
            self.config.video_cache_packets
        };
        let count = if spec.codec.is_audio() {
            1
        } else {
            spec.layers.clamp(1, alloc::MAX_LAYERS as u8)
        };
        let layers = (0..count)
            .map(|_| Layer {
                cache: RetransmitCache::new(capacity),
                last_pli: None,
                pli_owed: false,
                bytes: 0,
                rate: None,
                last_packet: None,
            })
            .collect();
        self.tracks.insert(
            h,
            Track {
                spec,
                layers,
                sinks: Vec::new(),
                told_mask: (1u8 << count) - 1,
            },
        );
        h
    }

    /// Unpublishes a track; subscriptions whose only source it was are removed and returned.
    pub fn remove_track(&mut self, track: TrackHandle) -> Vec<SubHandle> {
        let Some(t) = self.tracks.remove(&track) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for sub in t.sinks {
            let Some(s) = self.subs.get_mut(&sub) else {
                continue;
            };
            if s.pending.is_some_and(|(p, _)| p == track) {
                s.pending = None;
            }
            if s.source.is_some_and(|(c, _)| c == track) {
                s.source = None;
            }
            if s.home == track {
                // Switching away when it went: the pending source is home now; else it ends.
                match s.pending.or(s.source) {
                    Some((next, _)) => s.home = next,
                    None => {
                        self.remove_sub(sub);
                        removed.push(sub);
                    }
                }
            }
        }
        removed
    }

    /// Drops a subscription from the maps (its tracks' sink lists are the caller's business).
    fn remove_sub(&mut self, sub: SubHandle) -> Option<Subscription> {
        let s = self.subs.remove(&sub)?;
        // The entry (and its estimate) stays until the participant leaves the room.
        if let Some(r) = self.subscribers.get_mut(&s.subscriber) {
            r.subs.retain(|x| *x != sub);
        }
        Some(s)
    }

    /// Forgets a participant as a subscriber (its estimate too): it left the room.
    pub fn forget_subscriber(&mut self, p: &ParticipantId) {
        if self.subscribers.get(p).is_some_and(|r| r.subs.is_empty()) {
            self.subscribers.remove(p);
        }
    }

    /// Removes everything a participant published or received. Returns the removed tracks and
    /// subscriptions (including other participants' subscriptions to the removed tracks).
    pub fn remove_participant(&mut self, p: &ParticipantId) -> (Vec<TrackHandle>, Vec<SubHandle>) {
        let tracks: Vec<TrackHandle> = self
            .tracks
            .iter()
            .filter(|(_, t)| &t.spec.publisher == p)
            .map(|(h, _)| *h)
            .collect();
        let mut subs = Vec::new();
        for t in &tracks {
            subs.extend(self.remove_track(*t));
        }
        let own: Vec<SubHandle> = self
            .subs
            .iter()
            .filter(|(_, s)| &s.subscriber == p)
            .map(|(h, _)| *h)
            .collect();
        for s in own {
            self.unsubscribe(s);
            subs.push(s);
        }
        self.speaker.remove(p);
        self.forget_subscriber(p);
        (tracks, subs)
    }

    fn check_not_own(
        &self,
        subscriber: &ParticipantId,
        track: TrackHandle,
    ) -> Result<&Track, CoreError> {
        let t = self
            .tracks
            .get(&track)
            .ok_or(CoreError::UnknownTrack(track))?;
        if &t.spec.publisher == subscriber {
            return Err(CoreError::OwnMedia {
                participant: subscriber.clone(),
                track: t.spec.id.clone(),
            });
        }
        Ok(t)
    }

    /// Subscribes a participant to a track. Video starts at the next keyframe of its lowest
    /// layer, which is requested; the allocator lifts it from there.
    pub fn subscribe(&mut self, now: Instant, spec: SubscribeSpec) -> Result<SubHandle, CoreError> {
        let is_audio = self
            .check_not_own(&spec.subscriber, spec.track)?
            .spec
            .codec
            .is_audio();
        let h = SubHandle(self.handle());
        self.subscribers
            .entry(spec.subscriber.clone())
            .or_default()
            .subs
            .push(h);
        self.next_alloc
            .get_or_insert(now + self.config.alloc_interval);
        self.subs.insert(
            h,
            Subscription {
                subscriber: spec.subscriber,
                home: spec.track,
                source: None,
                pending: Some((spec.track, 0)),
                pending_since: Some(now),
                target: Some(0),
                view: Some(alloc::MAX_LAYERS as u8 - 1),
                up_since: None,
                last_request: None,
                ssrc: spec.ssrc,
                payload_type: spec.payload_type,
                rewriter: SeqRewriter::default(),
                last_forward: None,
                is_audio,
            },
        );
        self.tracks
            .get_mut(&spec.track)
            .expect("checked above")
            .sinks
            .push(h);
        if !is_audio {
            self.request_keyframe(now, (spec.track, 0));
        }
        Ok(h)
    }

    /// Ends a subscription.
    pub fn unsubscribe(&mut self, sub: SubHandle) {
        let Some(s) = self.remove_sub(sub) else {
            return;
        };
        let tracks = [Some(s.home), s.source.map(|x| x.0), s.pending.map(|x| x.0)];
        for t in tracks.into_iter().flatten() {
            if let Some(track) = self.tracks.get_mut(&t) {
                track.sinks.retain(|x| *x != sub);
            }
        }
    }

    /// The bandwidth estimated toward a participant changed (bits per second).
    pub fn set_estimate(&mut self, subscriber: &ParticipantId, bits_per_second: u64) {
        match self.subscribers.get_mut(subscriber) {
            Some(s) => s.estimate = Some(bits_per_second),
            None => {
                self.subscribers.insert(
                    subscriber.clone(),
                    Subscriber {
                        subs: Vec::new(),
                        estimate: Some(bits_per_second),
                    },
                );
            }
        }
    }

    /// The subscriber shows this video `height` device pixels tall (0: not at all).
    pub fn set_view(&mut self, sub: SubHandle, height: u32) -> Result<(), CoreError> {
        let s = self
            .subs
            .get_mut(&sub)
            .ok_or(CoreError::UnknownSubscription(sub))?;
        s.view = alloc::layer_for_height(height);
        Ok(())
    }

    /// Points a subscription at another track of the same kind; the switch happens at the new
    /// track's next keyframe, which is requested, and the subscriber's sequence stays continuous.
    pub fn switch_source(
        &mut self,
        now: Instant,
        sub: SubHandle,
        track: TrackHandle,
    ) -> Result<(), CoreError> {
        let s = self
            .subs
            .get(&sub)
            .ok_or(CoreError::UnknownSubscription(sub))?;
        let subscriber = s.subscriber.clone();
        let t = self.check_not_own(&subscriber, track)?;
        if t.spec.codec.is_audio() != s.is_audio {
            return Err(CoreError::KindMismatch);
        }
        let layer = s
            .target
            .unwrap_or(0)
            .min(t.layers.len().saturating_sub(1) as u8);
        let (old_home, paused) = (s.home, s.target.is_none());
        let s = self.subs.get_mut(&sub).expect("checked above");
        s.home = track;
        s.target = s.target.map(|_| layer);
        let t = self.tracks.get_mut(&track).expect("checked above");
        if !t.sinks.contains(&sub) {
            t.sinks.push(sub);
        }
        if old_home != track {
            self.detach_if_unused(sub, old_home);
        }
        if paused {
            return Ok(());
        }
        self.aim(now, sub, (track, layer));
        Ok(())
    }

    /// Points a subscription at `to`: a no-op if forwarded already, else pending until `to`'s
    /// next keyframe, which is requested.
    fn aim(&mut self, now: Instant, sub: SubHandle, to: Src) {
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        let old_pending = s.pending;
        if s.source == Some(to) {
            s.pending = None;
        } else {
            if s.pending != Some(to) {
                s.pending_since = Some(now);
            }
            s.pending = Some(to);
        }
        let wait = s.pending.is_some();
        if let Some((p, _)) = old_pending.filter(|p| p.0 != to.0) {
            self.detach_if_unused(sub, p);
        }
        if wait && !self.subs[&sub].is_audio {
            self.request_keyframe(now, to);
        }
    }

    /// Stops forwarding a subscription (its link cannot carry it, or it is not shown).
    fn pause(&mut self, sub: SubHandle) {
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        let (home, old) = (s.home, [s.source, s.pending]);
        s.source = None;
        s.pending = None;
        for (t, _) in old.into_iter().flatten() {
            if t != home {
                self.detach_if_unused(sub, t);
            }
        }
        self.stats.pauses += 1;
    }

    /// Removes `sub` from `track`'s sinks unless it still receives or waits for it.
    fn detach_if_unused(&mut self, sub: SubHandle, track: TrackHandle) {
        let used = self.subs.get(&sub).is_some_and(|s| {
            s.home == track
                || s.source.is_some_and(|x| x.0 == track)
                || s.pending.is_some_and(|x| x.0 == track)
        });
        if !used && let Some(t) = self.tracks.get_mut(&track) {
            t.sinks.retain(|x| *x != sub);
        }
    }

    /// A packet from a publisher on one of a track's layers (0 without simulcast). `audio_level`
    /// is the RFC 6464 level when the packet carried it.
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        track: TrackHandle,
        layer: u8,
        header: RtpHeader,
        payload: Bytes,
        audio_level: Option<u8>,
    ) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        let Some(l) = t.layers.get_mut(usize::from(layer)) else {
            return;
        };
        self.stats.packets_in += 1;
        self.stats.bytes_in += payload.len() as u64;
        let codec = t.spec.codec;
        let keyframe = codec.is_keyframe_start(&payload);
        if keyframe && !codec.is_audio() {
            l.pli_owed = false;
        }
        l.cache.insert(header, &payload);
        l.bytes += payload.len() as u64;
        l.last_packet = Some(now);
        if let (Some(level), true) = (audio_level, codec.is_audio()) {
            self.speaker.on_level(&t.spec.publisher, level);
            self.next_speaker_tick.get_or_insert(now);
        }
        let here = (track, layer);
        let clock_rate = codec.clock_rate();
        let mut switched_away = Vec::new();
        for &sub in &t.sinks {
            let Some(s) = self.subs.get_mut(&sub) else {
                continue;
            };
            debug_assert_ne!(
                s.subscriber, t.spec.publisher,
                "own media is never subscribed"
            );
            if s.pending == Some(here) {
                if !keyframe {
                    continue;
                }
                // Switch here: continue the subscriber's sequence from this keyframe.
                let advance = s
                    .last_forward
                    .map(|at| elapsed_ticks(now.saturating_duration_since(at), clock_rate))
                    .unwrap_or(0);
                s.rewriter
                    .rebase(header.sequence_number, header.timestamp, advance);
                if let Some(old) = s.source {
                    self.stats.layer_switches += u64::from(old.0 == track);
                    if old.0 != track {
                        switched_away.push((sub, old.0));
                    }
                }
                s.source = Some(here);
                s.pending = None;
            }
            if s.source != Some(here) {
                continue;
            }
            let Some((seq, ts)) = s.rewriter.rewrite(header.sequence_number, header.timestamp)
            else {
                continue;
            };
            s.last_forward = Some(now);
            self.stats.packets_out += 1;
            self.stats.bytes_out += payload.len() as u64;
            self.outputs.push_back(Output::Forward {
                sub,
                header: RtpHeader {
                    payload_type: s.payload_type,
                    marker: header.marker,
                    sequence_number: seq,
                    timestamp: ts,
                    ssrc: s.ssrc,
                },
                payload: payload.clone(),
                retransmission: false,
            });
        }
        for (sub, old) in switched_away {
            self.detach_if_unused(sub, old);
        }
    }

    /// A subscriber lost these (output) sequence numbers; resend what the cache still holds.
    pub fn handle_nack(&mut self, sub: SubHandle, lost: impl IntoIterator<Item = u16>) {
        let Some(s) = self.subs.get(&sub) else { return };
        let cache = s
            .source
            .and_then(|(t, l)| self.tracks.get(&t)?.layers.get(usize::from(l)))
            .map(|l| &l.cache);
        for out_seq in lost {
            self.stats.nacks += 1;
            let hit = s
                .rewriter
                .input_seq_of(out_seq)
                .and_then(|in_seq| cache.and_then(|c| c.get(in_seq)));
            match hit {
                Some((h, payload)) => {
                    self.stats.nack_hits += 1;
                    self.stats.packets_out += 1;
                    self.stats.bytes_out += payload.len() as u64;
                    self.outputs.push_back(Output::Forward {
                        sub,
                        header: RtpHeader {
                            payload_type: s.payload_type,
                            marker: h.marker,
                            sequence_number: out_seq,
                            timestamp: s.rewriter.output_ts(h.timestamp),
                            ssrc: s.ssrc,
                        },
                        payload: payload.clone(),
                        retransmission: true,
                    });
                }
                None => self.stats.nack_misses += 1,
            }
        }
    }

    /// A subscriber asks for a keyframe (PLI or FIR): passed to the publisher at most once per
    /// [`CoreConfig::subscriber_pli_interval`] for this subscription, and throttled per layer.
    pub fn handle_keyframe_request(&mut self, now: Instant, sub: SubHandle) {
        let interval = self.config.subscriber_pli_interval;
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        if s.last_request
            .is_some_and(|at| now.saturating_duration_since(at) < interval)
        {
            self.stats.plis_throttled += 1;
            return;
        }
        if let Some(src) = s.pending.or(s.source) {
            s.last_request = Some(now);
            self.request_keyframe(now, src);
        }
    }

    fn request_keyframe(&mut self, now: Instant, (track, layer): Src) {
        let interval = self.config.pli_interval;
        let Some(l) = self
            .tracks
            .get_mut(&track)
            .and_then(|t| t.layers.get_mut(usize::from(layer)))
        else {
            return;
        };
        match l.last_pli {
            Some(at) if now.saturating_duration_since(at) < interval => {
                l.pli_owed = true;
                self.stats.plis_throttled += 1;
            }
            _ => {
                l.last_pli = Some(now);
                l.pli_owed = false;
                self.stats.plis_sent += 1;
                self.outputs
                    .push_back(Output::RequestKeyframe { track, layer });
            }
        }
    }

    /// Time passed: owed keyframe requests, active-speaker changes, layer rates and allocation.
    pub fn handle_timeout(&mut self, now: Instant) {
        let interval = self.config.pli_interval;
        // A reused buffer: this runs on every tick of every room.
        let mut owed = std::mem::take(&mut self.owed_scratch);
        owed.clear();
        for (h, t) in &self.tracks {
            for (i, l) in t.layers.iter().enumerate() {
                if l.pli_owed
                    && l.last_pli
                        .is_none_or(|at| now.saturating_duration_since(at) >= interval)
                {
                    owed.push((*h, i as u8));
                }
            }
        }
        owed.sort_unstable();
        for &(track, layer) in &owed {
            let l = &mut self.tracks.get_mut(&track).expect("collected above").layers
                [usize::from(layer)];
            l.last_pli = Some(now);
            l.pli_owed = false;
            self.stats.plis_sent += 1;
            self.outputs
                .push_back(Output::RequestKeyframe { track, layer });
        }
        self.owed_scratch = owed;
        if let Some(tick) = self.next_speaker_tick
            && now >= tick
        {
            if let Some(change) = self.speaker.tick(now) {
                self.outputs.push_back(Output::ActiveSpeaker(change));
            }
            self.next_speaker_tick = Some(now + self.config.speaker_interval);
        }
        if let Some(tick) = self.next_alloc
            && now >= tick
        {
            self.measure_rates(now);
            self.allocate(now);
            self.next_alloc = (!self.subs.is_empty()).then(|| now + self.config.alloc_interval);
        }
    }

    /// Turns each layer's bytes since the last tick into a smoothed rate.
    fn measure_rates(&mut self, now: Instant) {
        let elapsed = self
            .last_alloc
            .map(|at| now.saturating_duration_since(at))
            .unwrap_or(self.config.alloc_interval);
        self.last_alloc = Some(now);
        let micros = elapsed.as_micros().max(1) as u64;
        for t in self.tracks.values_mut() {
            for l in &mut t.layers {
                let bytes = std::mem::take(&mut l.bytes);
                // A layer that sent nothing lately is paused: keep what it had, not zero.
                let live = l
                    .last_packet
                    .is_some_and(|at| now.saturating_duration_since(at) < 2 * elapsed);
                if !live {
                    continue;
                }
                // Payload bits plus about 40 bytes of headers per 1,100-byte packet.
                let bps = bytes.saturating_mul(8).saturating_mul(1_000_000) / micros;
                let bps = bps + bps / 25;
                l.rate = Some(match l.rate {
                    Some(old) => (old * 3 + bps) / 4,
                    None => bps,
                });
            }
        }
    }

    /// Chooses each subscription's layer from its subscriber's estimate, then tells publishers
    /// which layers anyone still receives.
    fn allocate(&mut self, now: Instant) {
        let mut wants = std::mem::take(&mut self.wants_scratch);
        let mut choices = std::mem::take(&mut self.choices_scratch);
        let mut apply = std::mem::take(&mut self.apply_scratch);
        apply.clear();
        for r in self.subscribers.values() {
            wants.clear();
            let mut audio = 0u64;
            for sub in &r.subs {
                let Some(s) = self.subs.get(sub) else {
                    continue;
                };
                let Some(t) = self.tracks.get(&s.home) else {
                    continue;
                };
                if s.is_audio {
                    audio += t.rate(0);
                    continue;
                }
                let mut rates = [0; alloc::MAX_LAYERS];
                for (i, r) in rates.iter_mut().enumerate().take(t.layers.len()) {
                    *r = t.rate(i);
                }
                wants.push((
                    *sub,
                    alloc::Want {
                        priority: alloc::priority(t.spec.source, t.spec.lead),
                        rates,
                        layers: t.layers.len() as u8,
                        max_layer: s.view,
                    },
                ));
            }
            wants.sort_unstable_by_key(|(sub, w)| (w.priority, *sub));
            let budget = match r.estimate {
                Some(e) => {
                    (e.saturating_mul(self.config.budget_percent) / 100).saturating_sub(audio)
                }
                None => u64::MAX,
            };
            alloc::allocate(budget, &wants, &mut choices);
            for ((sub, _), choice) in wants.iter().zip(&choices) {
                apply.push((*sub, *choice));
            }
        }
        for &(sub, choice) in &apply {
            self.apply_choice(now, sub, choice);
            self.chase_pending(now, sub);
        }
        self.wants_scratch = wants;
        self.choices_scratch = choices;
        self.apply_scratch = apply;
        self.publish_masks();
    }

    /// Moves a subscription toward the allocator's choice: down (or to a pause) at once, up only
    /// once the choice has stood for [`CoreConfig::up_switch_delay`].
    fn apply_choice(&mut self, now: Instant, sub: SubHandle, choice: Option<u8>) {
        let delay = self.config.up_switch_delay;
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        if choice == s.target {
            s.up_since = None;
            return;
        }
        let up = match (s.target, choice) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) => b > a,
            _ => false,
        };
        if up {
            let since = *s.up_since.get_or_insert(now);
            if now.saturating_duration_since(since) < delay {
                return;
            }
        }
        s.up_since = None;
        s.target = choice;
        let home = s.home;
        match choice {
            None => self.pause(sub),
            Some(layer) => self.aim(now, sub, (home, layer)),
        }
    }

    /// A switch still waiting for its keyframe asks again (the first request or the keyframe may
    /// have been lost; the per-layer throttle bounds this), and one waiting on a layer the
    /// publisher has stopped sending falls back to the best layer still arriving.
    fn chase_pending(&mut self, now: Instant, sub: SubHandle) {
        let Some(s) = self.subs.get(&sub) else { return };
        let (Some((track, layer)), Some(since)) = (s.pending, s.pending_since) else {
            return;
        };
        if s.is_audio || now.saturating_duration_since(since) < self.config.pli_interval {
            return;
        }
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let live = |l: &Layer| {
            l.last_packet
                .is_some_and(|at| now.saturating_duration_since(at) < STALE_LAYER)
        };
        let dead = t.layers.get(usize::from(layer)).is_none_or(|l| !live(l));
        let stale = now.saturating_duration_since(since) >= STALE_LAYER;
        if dead && stale {
            let fallback = t.layers[..usize::from(layer)]
                .iter()
                .rposition(live)
                .map(|i| i as u8);
            if let Some(l) = fallback
                && s.source != Some((track, l))
            {
                self.subs.get_mut(&sub).expect("checked above").target = Some(l);
                self.aim(now, sub, (track, l));
                return;
            }
        }
        self.request_keyframe(now, (track, layer));
    }

    /// Tells the publisher of each simulcast track which layers anyone receives or is about to.
    fn publish_masks(&mut self) {
        for (h, t) in &mut self.tracks {
            if t.layers.len() < 2 {
                continue;
            }
            let mut mask = 1u8;
            for sub in &t.sinks {
                let Some(s) = self.subs.get(sub) else {
                    continue;
                };
                for (track, layer) in [s.source, s.pending].into_iter().flatten() {
                    if track == *h {
                        mask |= 1 << layer;
                    }
                }
                if s.home == *h
                    && let Some(layer) = s.target
                {
                    mask |= 1 << layer;
                }
            }
            if mask != t.told_mask {
                t.told_mask = mask;
                self.outputs
                    .push_back(Output::PublishLayers { track: *h, mask });
            }
        }
    }

    /// When [`Room::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pli = self
            .tracks
            .values()
            .flat_map(|t| &t.layers)
            .filter(|l| l.pli_owed)
            .filter_map(|l| l.last_pli.map(|at| at + self.config.pli_interval))
            .min();
        [pli, self.next_speaker_tick, self.next_alloc]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next thing the shell must do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The current active speaker.
    pub fn active_speaker(&self) -> Option<&ParticipantId> {
        self.speaker.current()
    }
}

/// RTP clock ticks in `d` at `clock_rate`, saturating.
fn elapsed_ticks(d: Duration, clock_rate: u32) -> u32 {
    let ticks = d.as_micros().saturating_mul(u128::from(clock_rate)) / 1_000_000;
    u32::try_from(ticks).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
