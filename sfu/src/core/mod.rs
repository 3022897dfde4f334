//! The sans-IO forwarding core: one [`Room`] per live class.
//!
//! The core owns the media plane of a room: which tracks are published, who receives which track
//! (subscriptions), SSRC / sequence-number / timestamp rewriting per subscription, keyframe-request
//! throttling per publisher track, the retransmission cache that answers NACKs, and active-speaker
//! detection. It does no I/O, spawns nothing, takes no locks and never reads the clock: time is an
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
//! - At most one keyframe request (PLI) per second leaves for any publisher track; requests made
//!   in between are coalesced into one sent when the second is up, unless a keyframe came first.
//! - No received packet can make it panic.
//!
//! # Hot path
//! Per forwarded packet the core copies a 16-byte header and bumps the payload's reference count;
//! the output queue and the timer's scratch buffer are reused, and the speaker tick clones an id
//! only when the speaker changes, so steady-state forwarding allocates nothing at all
//! (`tests/core-allocations.rs` counts it with a heap profiler).

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
    /// Minimum time between two keyframe requests to one publisher track.
    pub pli_interval: Duration,
    /// Video packets kept per track for retransmission.
    pub video_cache_packets: usize,
    /// How often active speaker is re-evaluated.
    pub speaker_interval: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            pli_interval: Duration::from_secs(1),
            video_cache_packets: 1024,
            speaker_interval: Duration::from_millis(200),
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
}

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
    /// Ask the publisher of this track for a keyframe (send a PLI).
    RequestKeyframe {
        /// Which track.
        track: TrackHandle,
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
}

#[derive(Debug)]
struct Track {
    spec: TrackSpec,
    cache: RetransmitCache,
    /// Subscriptions whose current or pending source is this track.
    sinks: Vec<SubHandle>,
    last_pli: Option<Instant>,
    /// A request arrived inside the throttle window and is owed when it ends.
    pli_owed: bool,
}

#[derive(Debug)]
struct Subscription {
    subscriber: ParticipantId,
    /// The track forwarded now (`None` until the first keyframe of `pending`).
    source: Option<TrackHandle>,
    /// The track to switch to at its next keyframe.
    pending: Option<TrackHandle>,
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
    /// Tracks owed a keyframe request, reused by [`Room::handle_timeout`].
    owed_scratch: Vec<TrackHandle>,
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
        self.subs.get(&sub).and_then(|s| s.source)
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
        self.tracks.insert(
            h,
            Track {
                spec,
                cache: RetransmitCache::new(capacity),
                sinks: Vec::new(),
                last_pli: None,
                pli_owed: false,
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
            if s.pending == Some(track) {
                s.pending = None;
            }
            if s.source == Some(track) {
                s.source = None;
            }
            if s.source.is_none() && s.pending.is_none() {
                self.subs.remove(&sub);
                removed.push(sub);
            }
        }
        removed
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

    /// Subscribes a participant to a track. Video starts at the next keyframe, which is requested.
    pub fn subscribe(&mut self, now: Instant, spec: SubscribeSpec) -> Result<SubHandle, CoreError> {
        let is_audio = self
            .check_not_own(&spec.subscriber, spec.track)?
            .spec
            .codec
            .is_audio();
        let h = SubHandle(self.handle());
        self.subs.insert(
            h,
            Subscription {
                subscriber: spec.subscriber,
                source: None,
                pending: Some(spec.track),
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
            self.request_keyframe(now, spec.track);
        }
        Ok(h)
    }

    /// Ends a subscription.
    pub fn unsubscribe(&mut self, sub: SubHandle) {
        let Some(s) = self.subs.remove(&sub) else {
            return;
        };
        for t in [s.source, s.pending].into_iter().flatten() {
            if let Some(track) = self.tracks.get_mut(&t) {
                track.sinks.retain(|x| *x != sub);
            }
        }
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
        let (old_pending, current) = (s.pending, s.source);
        if current == Some(track) {
            // Back to the current source: cancel any pending switch.
            if let Some(p) = old_pending {
                self.detach(sub, p);
            }
            self.subs.get_mut(&sub).expect("checked above").pending = None;
            return Ok(());
        }
        if let Some(p) = old_pending.filter(|p| *p != track) {
            self.detach(sub, p);
        }
        self.subs.get_mut(&sub).expect("checked above").pending = Some(track);
        let t = self.tracks.get_mut(&track).expect("checked above");
        if !t.sinks.contains(&sub) {
            t.sinks.push(sub);
        }
        let audio = t.spec.codec.is_audio();
        if !audio {
            self.request_keyframe(now, track);
        }
        Ok(())
    }

    fn detach(&mut self, sub: SubHandle, track: TrackHandle) {
        if let Some(t) = self.tracks.get_mut(&track) {
            t.sinks.retain(|x| *x != sub);
        }
    }

    /// A packet from a publisher. `audio_level` is the RFC 6464 level when the packet carried it.
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        track: TrackHandle,
        header: RtpHeader,
        payload: Bytes,
        audio_level: Option<u8>,
    ) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        self.stats.packets_in += 1;
        self.stats.bytes_in += payload.len() as u64;
        let codec = t.spec.codec;
        let keyframe = codec.is_keyframe_start(&payload);
        if keyframe && !codec.is_audio() {
            t.pli_owed = false;
        }
        t.cache.insert(header, &payload);
        if let (Some(level), true) = (audio_level, codec.is_audio()) {
            self.speaker.on_level(&t.spec.publisher, level);
            self.next_speaker_tick.get_or_insert(now);
        }
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
            if s.pending == Some(track) {
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
                if let Some(old) = s.source.filter(|o| *o != track) {
                    switched_away.push((sub, old));
                }
                s.source = Some(track);
                s.pending = None;
            }
            if s.source != Some(track) {
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
            self.detach(sub, old);
        }
    }

    /// A subscriber lost these (output) sequence numbers; resend what the cache still holds.
    pub fn handle_nack(&mut self, sub: SubHandle, lost: impl IntoIterator<Item = u16>) {
        let Some(s) = self.subs.get(&sub) else { return };
        let cache = s.source.and_then(|t| self.tracks.get(&t)).map(|t| &t.cache);
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

    /// A subscriber asks for a keyframe (PLI or FIR): forwarded to the publisher, throttled.
    pub fn handle_keyframe_request(&mut self, now: Instant, sub: SubHandle) {
        let Some(s) = self.subs.get(&sub) else { return };
        if let Some(track) = s.pending.or(s.source) {
            self.request_keyframe(now, track);
        }
    }

    fn request_keyframe(&mut self, now: Instant, track: TrackHandle) {
        let interval = self.config.pli_interval;
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        match t.last_pli {
            Some(at) if now.saturating_duration_since(at) < interval => {
                t.pli_owed = true;
                self.stats.plis_throttled += 1;
            }
            _ => {
                t.last_pli = Some(now);
                t.pli_owed = false;
                self.stats.plis_sent += 1;
                self.outputs.push_back(Output::RequestKeyframe { track });
            }
        }
    }

    /// Time passed: owed keyframe requests and active-speaker changes.
    pub fn handle_timeout(&mut self, now: Instant) {
        let interval = self.config.pli_interval;
        // A reused buffer: this runs on every tick of every room.
        let mut owed = std::mem::take(&mut self.owed_scratch);
        owed.clear();
        owed.extend(
            self.tracks
                .iter()
                .filter(|(_, t)| {
                    t.pli_owed
                        && t.last_pli
                            .is_none_or(|at| now.saturating_duration_since(at) >= interval)
                })
                .map(|(h, _)| *h),
        );
        owed.sort_unstable();
        for &track in &owed {
            let t = self.tracks.get_mut(&track).expect("collected above");
            t.last_pli = Some(now);
            t.pli_owed = false;
            self.stats.plis_sent += 1;
            self.outputs.push_back(Output::RequestKeyframe { track });
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
    }

    /// When [`Room::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pli = self
            .tracks
            .values()
            .filter(|t| t.pli_owed)
            .filter_map(|t| t.last_pli.map(|at| at + self.config.pli_interval))
            .min();
        [pli, self.next_speaker_tick].into_iter().flatten().min()
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
