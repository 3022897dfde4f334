//! One received track → one WebM file, without transcoding: every part of the track's RTP dump
//! ([`crate::live::dump`]) depayloaded and muxed in one pass.
//!
//! ```text
//! dump parts ─► Sequencer (Rust, pure) ─► appsrc (application/x-rtp) ─► rtpvp8depay | rtpopusdepay
//!              ─► webmmux ─► filesink <out>.part  ─(EOS reached the file)─► rename to <out>
//! ```
//!
//! The [`Sequencer`] turns packets *as they arrived* into packets *as the depayloader wants
//! them*:
//! - **RED** (RFC 2198): a packet with the part's `red_payload_type` is reduced to its primary
//!   block (the last one; its payload type must be the codec's). A malformed RED packet is
//!   skipped and counted. Packets of any other payload type (RTX, FEC, probes) are skipped.
//! - **Order**: packets are re-sorted by (extended) sequence number in a small window
//!   ([`REORDER_PACKETS`] packets or [`REORDER_WINDOW`] of arrival time), duplicates and packets
//!   later than the window are dropped. A sort in Rust, rather than an `rtpjitterbuffer`, because
//!   the jitter buffer wants a clock and real-time arrival (or, in its non-live modes, trusts RTP
//!   timestamps across SSRC changes and part boundaries, which it handles as resets anyway); here
//!   the whole dump is known and the sort is exact, deterministic and testable without a pipeline.
//! - **Segments**: a new part, or a new SSRC within one (a publisher that restarted), starts a
//!   new segment: its sequence numbers are renumbered to follow the previous segment's after a
//!   jump (so the depayloader sees a discontinuity, never "old" packets), and VP8 is dropped
//!   until the segment's first keyframe (a decoder cannot start on a delta frame).
//! - **Time**: a packet's PTS is its RTP time anchored to the arrival time of its segment's
//!   first packet, minus the track's first packet's arrival: so the file starts at 0, packets of
//!   one frame share one PTS, and network jitter does not shake the timeline; when RTP time and
//!   arrival time disagree by more than [`RESYNC`] (a timestamp jump), the anchor moves to the
//!   arrival time. PTS never goes backwards.
//!
//! VP8 resolution changes mid-stream (simulcast layer switches) are kept as they are in the
//! bitstream (VP8 keyframes carry their size; decoders and browsers follow it), but Matroska
//! refuses caps changes after its header (`webmmux` errors out with "Caps changes are not
//! supported by Matroska" on any caps event that differs from the first). GStreamer 1.22's
//! `rtpvp8depay` did not change its caps at the test's layer switch (the test passes without
//! the pin too), but a depayloader that puts the frame size in its caps would trip it, so the
//! depayloader's caps are pinned: every caps event it sends is replaced by the same caps, with the largest
//! resolution seen in the whole track (found in a first pass over the keyframes). The WebM
//! header then declares that size; each frame still decodes at its own.
//!
//! Blocking; runs on the caller's thread (the appsrc is fed from it). The feeding waits while
//! [`QUEUED_BYTES`] are queued, watching the bus: a pipeline that stopped on an error (a full
//! disk, say) never drains its queue, and the remux then fails with that error (or after a
//! minute in which the pipeline took nothing) instead of waiting for good.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::live::dump::{Codec, DumpError, DumpReader, TrackKind, TrackMeta};

/// A silence of arrivals longer than this is a gap.
pub const GAP_THRESHOLD: Duration = Duration::from_secs(2);

/// At most this many packets wait in the reorder window.
pub const REORDER_PACKETS: usize = 128;

/// A packet waits at most this long (in arrival time) for an earlier one to arrive.
pub const REORDER_WINDOW: Duration = Duration::from_millis(200);

/// RTP time and arrival time may drift this far apart before the anchor moves.
pub const RESYNC: Duration = Duration::from_secs(1);

/// How long EOS may take to reach the file after the last packet.
const EOS_DEADLINE: Duration = Duration::from_secs(60);
/// Bytes the appsrc may hold before the feeding waits for the pipeline.
pub const QUEUED_BYTES: u64 = 8 << 20;

/// How far a new segment's sequence numbers jump from the previous segment's last one.
const SEGMENT_SEQ_JUMP: u16 = 1000;

/// A sequence number this far behind the window is a restarted stream, not a late packet.
const RESTART_DISTANCE: u64 = 3000;

/// One track remuxed: where it sits on the lesson timeline and what went into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemuxedTrack {
    /// The track (the first part's meta).
    pub meta: TrackMeta,
    /// Where the file's time 0 is on the lesson timeline: the arrival of the track's first
    /// packet in the file minus `lesson_start`, ms (negative if it came before the start).
    pub offset_ms: i64,
    /// Time of the last packet in the file, ms from the file's start.
    pub duration_ms: u64,
    /// `[from_ms, to_ms]` on the lesson timeline where no packet of the track arrived for more
    /// than [`GAP_THRESHOLD`] (e.g. between two parts).
    pub gaps: Vec<[u64; 2]>,
    /// RTP packets that went into the file.
    pub packets: u64,
    /// Their bytes (RTP headers included).
    pub bytes: u64,
    /// The largest VP8 picture seen (video only).
    pub resolution: Option<(u32, u32)>,
    /// What was left out, and why.
    pub stats: RemuxStats,
}

/// Packets left out of a remuxed track.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemuxStats {
    /// Not RTP version 2, or a header longer than the packet.
    pub malformed: u64,
    /// RED packets whose blocks do not add up, or whose primary is not the codec.
    pub malformed_red: u64,
    /// Packets of another payload type (RTX, FEC, padding probes).
    pub foreign_payload: u64,
    /// Second copies of a packet.
    pub duplicates: u64,
    /// Packets arriving after the reorder window had passed them.
    pub late: u64,
    /// VP8 packets before the first keyframe of their segment.
    pub before_keyframe: u64,
    /// Bytes ignored at the end of dumps cut by a crash.
    pub truncated_bytes: u64,
}

/// What went wrong remuxing a track.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemuxError {
    /// No dump was given.
    #[error("no dump parts given")]
    NoParts,
    /// A dump could not be read.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// The parts are not of one track.
    #[error("{path} is not a part of track {expected}: {reason}")]
    MixedTracks {
        /// The odd part.
        path: PathBuf,
        /// `participant/source` of the first part.
        expected: String,
        /// What differs.
        reason: String,
    },
    /// This codec is not remuxed to WebM.
    #[error("{codec:?} tracks are not remuxed (WebM holds VP8 and Opus only)")]
    Unsupported {
        /// The track's codec.
        codec: Codec,
    },
    /// Nothing playable in the dumps (no packet, or no VP8 keyframe).
    #[error("no playable packet in {track} ({reason})")]
    NoMedia {
        /// `participant/source`.
        track: String,
        /// Why.
        reason: &'static str,
    },
    /// A GStreamer element is missing (its plugin is not installed).
    #[error("GStreamer element {factory} is missing (plugin not installed?)")]
    MissingElement {
        /// The factory.
        factory: &'static str,
    },
    /// GStreamer could not be initialised.
    #[error("GStreamer init failed: {0}")]
    Init(#[source] gst::glib::Error),
    /// The pipeline failed.
    #[error("remuxing {track} failed: {reason}")]
    Pipeline {
        /// `participant/source`.
        track: String,
        /// What GStreamer said.
        reason: String,
    },
    /// Writing or renaming the output failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The parts of an RTP packet the sequencer needs.
#[derive(Clone, Copy, Debug)]
struct RtpView {
    /// Marker bit and payload type byte (byte 1).
    pt: u8,
    /// Sequence number.
    seq: u16,
    /// RTP timestamp.
    ts: u32,
    /// Sender's source.
    ssrc: u32,
    /// Header length (fixed part, CSRCs, extension).
    header_len: usize,
    /// Payload end (the padding excluded).
    payload_end: usize,
}

/// Parses an RTP header; `None` for anything that is not RTP version 2 with a consistent size.
fn parse_rtp(p: &[u8]) -> Option<RtpView> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let mut header_len = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let ext = p.get(header_len + 2..header_len + 4)?;
        header_len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut payload_end = p.len();
    if p[0] & 0x20 != 0 {
        let pad = usize::from(*p.last()?);
        if pad == 0 {
            return None;
        }
        payload_end = payload_end.checked_sub(pad)?;
    }
    if header_len > payload_end {
        return None;
    }
    Some(RtpView {
        pt: p[1] & 0x7f,
        seq: u16::from_be_bytes([p[2], p[3]]),
        ts: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        header_len,
        payload_end,
    })
}

/// The primary block of a RED payload (RFC 2198): its payload type and its bytes. `None` when
/// the header blocks do not fit the payload.
pub fn red_primary(payload: &[u8]) -> Option<(u8, &[u8])> {
    let mut i = 0;
    let mut redundant = 0usize;
    loop {
        let b = *payload.get(i)?;
        if b & 0x80 == 0 {
            i += 1;
            let start = i.checked_add(redundant)?;
            let primary = payload.get(start..)?;
            return Some((b & 0x7f, primary));
        }
        let h = payload.get(i..i + 4)?;
        redundant += (usize::from(h[2] & 0x03) << 8) | usize::from(h[3]);
        i += 4;
    }
}

/// What a VP8 RTP payload (RFC 7741) says about its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vp8Packet {
    /// Not the first packet of a frame.
    Continuation,
    /// The first packet of a frame: a keyframe (with its size, if the header is in this packet)
    /// or not.
    Start {
        /// The frame is a keyframe.
        keyframe: bool,
        /// Width and height from the keyframe header.
        size: Option<(u32, u32)>,
    },
}

/// Reads a VP8 payload descriptor and, for a frame's first packet, the frame tag. `None` for a
/// descriptor longer than the payload.
fn vp8_packet(payload: &[u8]) -> Option<Vp8Packet> {
    let b0 = *payload.first()?;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *payload.get(1)?;
        i = 2;
        if x & 0x80 != 0 {
            i += if *payload.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    let frame = payload.get(i..)?;
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    if !start {
        return Some(Vp8Packet::Continuation);
    }
    let tag = *frame.first()?;
    let keyframe = tag & 0x01 == 0;
    let size = match frame.get(3..10) {
        Some([0x9d, 0x01, 0x2a, w0, w1, h0, h1]) if keyframe => Some((
            u32::from(u16::from_le_bytes([*w0, *w1]) & 0x3fff),
            u32::from(u16::from_le_bytes([*h0, *h1]) & 0x3fff),
        )),
        _ => None,
    };
    Some(Vp8Packet::Start { keyframe, size })
}

/// A packet waiting in the reorder window.
#[derive(Debug)]
struct Pending {
    /// Arrival, ns since the epoch.
    arrival_ns: u64,
    /// The packet (RED already reduced, payload type normalised).
    rtp: Vec<u8>,
    /// Its parsed header.
    view: RtpView,
}

/// A packet ready for the depayloader.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ready {
    /// PTS, ns from the track's first packet.
    pub(crate) pts_ns: u64,
    /// The RTP packet, renumbered.
    pub(crate) rtp: Vec<u8>,
}

/// One run of packets of one part and SSRC.
#[derive(Debug)]
struct Segment {
    /// The part it came from.
    part: u32,
    /// The SSRC.
    ssrc: u32,
    /// Highest extended sequence number seen.
    highest: u64,
    /// Last extended sequence number released, if any.
    released: Option<u64>,
    /// The reorder window, by extended sequence number.
    pending: BTreeMap<u64, Pending>,
    /// First extended sequence number released: renumbering starts there.
    first_seq: Option<u64>,
    /// Output sequence number of `first_seq`.
    out_seq_base: u16,
    /// Last released RTP timestamp, unwrapped, and its raw value.
    last_ts: Option<(i64, u32)>,
    /// (arrival ns, unwrapped RTP timestamp) that PTS is computed from.
    anchor: Option<(u64, i64)>,
    /// VP8: still waiting for the segment's first keyframe.
    awaiting_keyframe: bool,
}

impl Segment {
    /// `seq` extended to 64 bits, as the nearest number to the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let diff = i64::from(seq.wrapping_sub(self.highest as u16) as i16);
        (self.highest as i64 + diff).max(0) as u64
    }
}

/// The pure part of the remux: packets as they arrived in, packets with PTS out. See the
/// module doc.
#[derive(Debug)]
pub(crate) struct Sequencer {
    /// Codec of the track.
    codec: Codec,
    /// RTP clock rate.
    clock_rate: u64,
    /// The payload type every packet leaves with (the first part's).
    out_pt: u8,
    /// The current segment.
    segment: Option<Segment>,
    /// The next segment's first output sequence number.
    next_out_seq: u16,
    /// Arrival of the first released packet: PTS 0.
    base_ns: Option<u64>,
    /// The last PTS released, and the RTP timestamp it belonged to.
    last_pts: Option<(u64, i64)>,
    /// Latest arrival of a media packet, for gaps.
    last_arrival_ns: Option<u64>,
    /// Gaps in arrival, ns since the epoch.
    gaps_ns: Vec<(u64, u64)>,
    /// Counters.
    pub(crate) stats: RemuxStats,
    /// Released packets and bytes.
    packets: u64,
    /// Released bytes.
    bytes: u64,
}

impl Sequencer {
    pub(crate) fn new(first: &TrackMeta) -> Self {
        Self {
            codec: first.codec,
            clock_rate: u64::from(first.clock_rate.max(1)),
            out_pt: first.payload_type,
            segment: None,
            next_out_seq: 1,
            base_ns: None,
            last_pts: None,
            last_arrival_ns: None,
            gaps_ns: Vec::new(),
            stats: RemuxStats::default(),
            packets: 0,
            bytes: 0,
        }
    }

    /// Takes one record of part `meta`; hands packets that left the reorder window to `out`.
    pub(crate) fn push(
        &mut self,
        meta: &TrackMeta,
        arrival_ns: u64,
        mut rtp: Vec<u8>,
        out: &mut impl FnMut(Ready),
    ) {
        let Some(mut view) = parse_rtp(&rtp) else {
            self.stats.malformed += 1;
            return;
        };
        if meta.red_payload_type == Some(view.pt) && view.pt != meta.payload_type {
            let primary = red_primary(&rtp[view.header_len..view.payload_end])
                .filter(|(pt, data)| *pt == meta.payload_type && !data.is_empty())
                .map(|(_, data)| data.to_vec());
            let Some(primary) = primary else {
                self.stats.malformed_red += 1;
                return;
            };
            rtp.truncate(view.header_len);
            rtp[0] &= !0x20; // the padding went with the RED payload
            rtp.extend_from_slice(&primary);
            view.payload_end = rtp.len();
        } else if view.pt != meta.payload_type {
            self.stats.foreign_payload += 1;
            return;
        } else {
            rtp.truncate(view.payload_end);
            rtp[0] &= !0x20;
        }
        if view.payload_end == view.header_len {
            // Padding only (a bandwidth probe): nothing to depayload.
            self.stats.foreign_payload += 1;
            return;
        }
        rtp[1] = (rtp[1] & 0x80) | self.out_pt;
        view.pt = self.out_pt;

        if let Some(last) = self.last_arrival_ns
            && arrival_ns.saturating_sub(last) > GAP_THRESHOLD.as_nanos() as u64
        {
            self.gaps_ns.push((last, arrival_ns));
        }
        self.last_arrival_ns = Some(
            self.last_arrival_ns
                .map_or(arrival_ns, |l| l.max(arrival_ns)),
        );

        let new_segment = match &self.segment {
            None => true,
            Some(s) => s.part != meta.part || s.ssrc != view.ssrc,
        };
        if new_segment {
            self.start_segment(meta.part, view, out);
        }
        let Some(seg) = self.segment.as_mut() else {
            return;
        };
        let ext = seg.extend(view.seq);
        if seg.released.is_some_and(|r| ext + RESTART_DISTANCE < r) {
            // Far behind: the sender restarted its numbering; a new segment.
            self.start_segment(meta.part, view, out);
            return self.push_pending(arrival_ns, rtp, view, out);
        }
        self.push_pending(arrival_ns, rtp, view, out);
    }

    /// Inserts into the current segment's window and releases what is due.
    fn push_pending(
        &mut self,
        arrival_ns: u64,
        rtp: Vec<u8>,
        view: RtpView,
        out: &mut impl FnMut(Ready),
    ) {
        let Some(seg) = self.segment.as_mut() else {
            return;
        };
        let ext = seg.extend(view.seq);
        if seg.released.is_some_and(|r| ext <= r) {
            // Already released: a duplicate, or too late to be put in order.
            if seg.pending.is_empty() && seg.released == Some(ext) {
                self.stats.duplicates += 1;
            } else {
                self.stats.late += 1;
            }
            return;
        }
        if seg.pending.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        seg.highest = seg.highest.max(ext);
        seg.pending.insert(
            ext,
            Pending {
                arrival_ns,
                rtp,
                view,
            },
        );
        let window = REORDER_WINDOW.as_nanos() as u64;
        loop {
            let Some(seg) = self.segment.as_mut() else {
                return;
            };
            let due = seg.pending.len() > REORDER_PACKETS
                || seg
                    .pending
                    .first_key_value()
                    .is_some_and(|(_, p)| arrival_ns.saturating_sub(p.arrival_ns) > window);
            if !due {
                return;
            }
            self.release_first(out);
        }
    }

    /// Ends the current segment (releasing its window) and starts one at `view`.
    fn start_segment(&mut self, part: u32, view: RtpView, out: &mut impl FnMut(Ready)) {
        self.flush(out);
        self.segment = Some(Segment {
            part,
            ssrc: view.ssrc,
            // Far enough from 0 that packets before the first one still have an extended number.
            highest: (1 << 20) + u64::from(view.seq),
            released: None,
            pending: BTreeMap::new(),
            first_seq: None,
            out_seq_base: self.next_out_seq,
            last_ts: None,
            anchor: None,
            awaiting_keyframe: self.codec == Codec::Vp8,
        });
    }

    /// Releases everything in the window (end of a segment, end of the track).
    pub(crate) fn flush(&mut self, out: &mut impl FnMut(Ready)) {
        while self.segment.as_ref().is_some_and(|s| !s.pending.is_empty()) {
            self.release_first(out);
        }
    }

    /// Releases the lowest-numbered packet of the window: keyframe gate, PTS, renumbering.
    fn release_first(&mut self, out: &mut impl FnMut(Ready)) {
        let Some(seg) = self.segment.as_mut() else {
            return;
        };
        let Some((ext, p)) = seg.pending.pop_first() else {
            return;
        };
        seg.released = Some(ext);
        let ts = match seg.last_ts {
            Some((ext_ts, raw)) => ext_ts + i64::from(p.view.ts.wrapping_sub(raw) as i32),
            None => i64::from(p.view.ts),
        };
        seg.last_ts = Some((ts, p.view.ts));

        if seg.awaiting_keyframe {
            let payload = &p.rtp[p.view.header_len..];
            match vp8_packet(payload) {
                Some(Vp8Packet::Start { keyframe: true, .. }) => seg.awaiting_keyframe = false,
                _ => {
                    self.stats.before_keyframe += 1;
                    return;
                }
            }
        }

        let first_seq = *seg.first_seq.get_or_insert(ext);
        let out_seq = seg.out_seq_base.wrapping_add((ext - first_seq) as u16);
        self.next_out_seq = out_seq.wrapping_add(SEGMENT_SEQ_JUMP);

        // RTP time, anchored to arrival time; re-anchored on a jump (only at a new timestamp,
        // so that one frame's packets keep one PTS).
        let new_frame = self.last_pts.is_none_or(|(_, t)| t != ts) || seg.anchor.is_none();
        let rate = self.clock_rate as i128;
        let rtp_time = |anchor: (u64, i64)| -> i128 {
            i128::from(anchor.0) + i128::from(ts - anchor.1) * 1_000_000_000 / rate
        };
        let mut abs = match seg.anchor {
            Some(a) => rtp_time(a),
            None => i128::from(p.arrival_ns),
        };
        if seg.anchor.is_none()
            || (new_frame && (abs - i128::from(p.arrival_ns)).abs() > RESYNC.as_nanos() as i128)
        {
            seg.anchor = Some((p.arrival_ns, ts));
            abs = i128::from(p.arrival_ns);
        }
        let base = *self.base_ns.get_or_insert(p.arrival_ns);
        let mut pts = u64::try_from((abs - i128::from(base)).max(0)).unwrap_or(u64::MAX);
        if let Some((last, last_ts)) = self.last_pts
            && (last_ts == ts || pts < last)
        {
            pts = last;
        }
        self.last_pts = Some((pts, ts));

        let mut rtp = p.rtp;
        rtp[2..4].copy_from_slice(&out_seq.to_be_bytes());
        self.packets += 1;
        self.bytes += rtp.len() as u64;
        out(Ready { pts_ns: pts, rtp });
    }
}

/// Largest VP8 keyframe size in the parts (first pass, video only).
fn max_resolution(parts: &[(PathBuf, TrackMeta)]) -> Result<Option<(u32, u32)>, RemuxError> {
    let mut best: Option<(u32, u32)> = None;
    for (path, meta) in parts {
        for record in DumpReader::open(path)? {
            let record = record?;
            let Some(view) = parse_rtp(&record.rtp) else {
                continue;
            };
            if view.pt != meta.payload_type {
                continue;
            }
            let payload = &record.rtp[view.header_len..view.payload_end];
            if let Some(Vp8Packet::Start {
                size: Some((w, h)), ..
            }) = vp8_packet(payload)
                && best.is_none_or(|(bw, bh)| w * h > bw * bh)
            {
                best = Some((w, h));
            }
        }
    }
    Ok(best)
}

/// Sets the pipeline to `Null` when dropped (an error path included).
struct NullOnDrop(gst::Pipeline);

impl Drop for NullOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

fn make(factory: &'static str) -> Result<gst::Element, RemuxError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| RemuxError::MissingElement { factory })
}

fn to_ms(ns: i128) -> i64 {
    (ns / 1_000_000) as i64
}

fn epoch_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// Remuxes all `parts` of one track (dumps, any order: sorted by their `part`) into one WebM
/// file `out` (written as `out.part`, renamed when complete). `lesson_start` places the result
/// on the lesson timeline. Blocking. See the module doc.
pub fn remux_track(
    parts: &[PathBuf],
    lesson_start: SystemTime,
    out: &Path,
) -> Result<RemuxedTrack, RemuxError> {
    let mut metas = Vec::with_capacity(parts.len());
    for path in parts {
        let reader = DumpReader::open(path)?;
        metas.push((path.clone(), reader.meta().clone()));
    }
    metas.sort_by_key(|(_, m)| m.part);
    let Some((_, first)) = metas.first().cloned() else {
        return Err(RemuxError::NoParts);
    };
    let track = format!("{}/{}", first.participant, first.source);
    for (path, meta) in &metas {
        let differs = [
            (meta.participant != first.participant, "participant"),
            (meta.source != first.source, "source"),
            (meta.kind != first.kind, "kind"),
            (meta.codec != first.codec, "codec"),
            (meta.clock_rate != first.clock_rate, "clock rate"),
        ];
        if let Some((_, what)) = differs.iter().find(|(d, _)| *d) {
            return Err(RemuxError::MixedTracks {
                path: path.clone(),
                expected: track.clone(),
                reason: format!("its {what} differs"),
            });
        }
    }
    let (depay, encoding, media) = match (first.codec, first.kind) {
        (Codec::Vp8, TrackKind::Video) => ("rtpvp8depay", "VP8", "video"),
        (Codec::Opus, TrackKind::Audio) => ("rtpopusdepay", "OPUS", "audio"),
        (codec, _) => return Err(RemuxError::Unsupported { codec }),
    };
    let resolution = match first.codec {
        Codec::Vp8 => Some(max_resolution(&metas)?.ok_or_else(|| RemuxError::NoMedia {
            track: track.clone(),
            reason: "no VP8 keyframe",
        })?),
        _ => None,
    };

    gst::init().map_err(RemuxError::Init)?;
    let pipeline_err = |reason: String| RemuxError::Pipeline {
        track: track.clone(),
        reason,
    };
    let mut caps = gst::Caps::builder("application/x-rtp")
        .field("media", media)
        .field("encoding-name", encoding)
        .field("clock-rate", first.clock_rate as i32)
        .field("payload", i32::from(first.payload_type));
    if first.codec == Codec::Opus {
        // rtpopusdepay sets channels and rate on its caps only from these, and Matroska
        // needs both. WebRTC's Opus is always declared 48000/2; a mono stream decodes to two
        // equal channels.
        caps = caps
            .field("encoding-params", "2")
            .field("sprop-stereo", "1")
            .field("sprop-maxcapturerate", "48000");
    }
    let appsrc = gst_app::AppSrc::builder()
        .caps(&caps.build())
        .format(gst::Format::Time)
        .is_live(false)
        .max_bytes(QUEUED_BYTES)
        .build();
    let depay = make(depay)?;
    let mux = make("webmmux")?;
    let tmp = out.with_extension("webm.part");
    let sink = gst::ElementFactory::make("filesink")
        .property("location", tmp.to_string_lossy().as_ref())
        .build()
        .map_err(|_| RemuxError::MissingElement {
            factory: "filesink",
        })?;
    let pipeline = gst::Pipeline::with_name("remux");
    let guard = NullOnDrop(pipeline.clone());
    let chain = [appsrc.upcast_ref::<gst::Element>(), &depay, &mux, &sink];
    pipeline
        .add_many(chain)
        .and_then(|()| gst::Element::link_many(chain))
        .map_err(|e| pipeline_err(e.to_string()))?;
    if let Some((w, h)) = resolution {
        pin_video_caps(&depay, w, h);
    }
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| pipeline_err(e.to_string()))?;
    let bus = pipeline
        .bus()
        .ok_or_else(|| pipeline_err("no bus".into()))?;

    let mut seq = Sequencer::new(&first);
    let mut flow: Result<(), gst::FlowError> = Ok(());
    let mut stopped: Option<String> = None;
    let mut push = |ready: Ready| {
        if flow.is_err() {
            return;
        }
        let waiting = Instant::now();
        while appsrc.current_level_bytes() >= QUEUED_BYTES {
            let reason = bus_error(&bus, Duration::from_millis(20)).or_else(|| {
                (waiting.elapsed() > EOS_DEADLINE)
                    .then(|| format!("the pipeline took nothing for {EOS_DEADLINE:?}"))
            });
            if let Some(reason) = reason {
                stopped = Some(reason);
                flow = Err(gst::FlowError::Error);
                return;
            }
        }
        let mut buffer = gst::Buffer::from_mut_slice(ready.rtp);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(ready.pts_ns));
        }
        flow = appsrc.push_buffer(buffer).map(|_| ());
    };
    for (path, meta) in &metas {
        let mut reader = DumpReader::open(path)?;
        for record in reader.by_ref() {
            let record = record?;
            seq.push(meta, record.arrival_ns, record.rtp, &mut push);
        }
        seq.stats.truncated_bytes += reader.truncated_bytes();
    }
    seq.flush(&mut push);
    if let Err(flow) = flow {
        let reason = stopped
            .or_else(|| bus_error(&bus, Duration::from_secs(1)))
            .unwrap_or_else(|| format!("pushing stopped: {flow:?}"));
        return Err(pipeline_err(reason));
    }
    if seq.packets == 0 {
        return Err(RemuxError::NoMedia {
            track,
            reason: "no packet of the track's payload type",
        });
    }
    appsrc
        .end_of_stream()
        .map_err(|e| pipeline_err(format!("EOS: {e:?}")))?;
    wait_eos(&bus, EOS_DEADLINE).map_err(pipeline_err)?;
    drop(guard);
    std::fs::rename(&tmp, out).map_err(|source| RemuxError::Io {
        path: out.to_owned(),
        source,
    })?;

    let lesson_ns = epoch_ns(lesson_start);
    let base = seq.base_ns.unwrap_or_default();
    let on_lesson = |ns: u64| u64::try_from(to_ms(i128::from(ns) - lesson_ns).max(0)).unwrap_or(0);
    let result = RemuxedTrack {
        offset_ms: to_ms(i128::from(base) - lesson_ns),
        duration_ms: seq.last_pts.map_or(0, |(p, _)| p / 1_000_000),
        gaps: seq
            .gaps_ns
            .iter()
            .map(|&(a, b)| [on_lesson(a), on_lesson(b)])
            .collect(),
        packets: seq.packets,
        bytes: seq.bytes,
        resolution,
        stats: seq.stats,
        meta: first,
    };
    tracing::info!(%track, out = %out.display(), ?result.stats, offset_ms = result.offset_ms, duration_ms = result.duration_ms, "track remuxed");
    Ok(result)
}

/// Replaces every caps event of the depayloader with the same VP8 caps of `width`×`height`
/// (Matroska refuses caps that differ from the first; the bitstream carries each keyframe's
/// size). Replaced rather than dropped: a probe dropping a sticky event makes GStreamer 1.22
/// unref a null event (a CRITICAL) through the Rust bindings.
fn pin_video_caps(depay: &gst::Element, width: u32, height: u32) {
    let Some(pad) = depay.static_pad("src") else {
        return;
    };
    let pinned = gst::Caps::builder("video/x-vp8")
        .field("width", width as i32)
        .field("height", height as i32)
        .field("framerate", gst::Fraction::new(0, 1))
        .build();
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        let is_caps = matches!(
            info.data,
            Some(gst::PadProbeData::Event(ref e)) if e.type_() == gst::EventType::Caps
        );
        if !is_caps {
            return gst::PadProbeReturn::Ok;
        }
        info.data = Some(gst::PadProbeData::Event(gst::event::Caps::new(&pinned)));
        gst::PadProbeReturn::Ok
    });
}

/// The first error on `bus` within `timeout`, as text.
fn bus_error(bus: &gst::Bus, timeout: Duration) -> Option<String> {
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
        &[gst::MessageType::Error],
    )?;
    match msg.view() {
        gst::MessageView::Error(err) => Some(format!(
            "{}: {} ({:?})",
            msg.src()
                .map(|s| s.path_string().to_string())
                .unwrap_or_default(),
            err.error(),
            err.debug()
        )),
        _ => None,
    }
}

/// Waits for EOS (the file is complete) or an error, at most `deadline`.
pub(crate) fn wait_eos(bus: &gst::Bus, deadline: Duration) -> Result<(), String> {
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("EOS did not reach the file within {deadline:?}"));
        }
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(left.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => return Ok(()),
            gst::MessageView::Error(err) => {
                return Err(format!(
                    "{}: {} ({:?})",
                    msg.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default(),
                    err.error(),
                    err.debug()
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(codec: Codec, part: u32) -> TrackMeta {
        TrackMeta {
            participant: "teacher".into(),
            source: "microphone".into(),
            kind: TrackKind::Audio,
            codec,
            clock_rate: 48_000,
            payload_type: 111,
            red_payload_type: Some(63),
            part,
        }
    }

    fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn run(packets: &[(u32, u64, Vec<u8>)]) -> (Vec<Ready>, Sequencer) {
        let mut s = Sequencer::new(&meta(Codec::Opus, 0));
        let mut out = Vec::new();
        for (part, at_ms, p) in packets {
            s.push(
                &meta(Codec::Opus, *part),
                at_ms * 1_000_000,
                p.clone(),
                &mut |r| out.push(r),
            );
        }
        s.flush(&mut |r| out.push(r));
        (out, s)
    }

    fn seq_of(r: &Ready) -> u16 {
        u16::from_be_bytes([r.rtp[2], r.rtp[3]])
    }

    #[test]
    fn reorders_and_drops_duplicates_with_smooth_pts() {
        // 20 ms Opus packets, seq wrapping through 65535, two swapped, one duplicated, arrival
        // jittered by up to 15 ms.
        let order = [0u16, 1, 3, 2, 4, 4, 5, 6, 7];
        let packets: Vec<_> = order
            .iter()
            .map(|&i| {
                let jitter = [0, 15, 3, 9, 0, 2, 11, 5, 1][i as usize];
                (
                    0,
                    1000 + u64::from(i) * 20 + jitter,
                    rtp(
                        111,
                        65533u16.wrapping_add(i),
                        960 * u32::from(i),
                        7,
                        &[i as u8],
                    ),
                )
            })
            .collect();
        let (out, s) = run(&packets);
        assert_eq!(out.len(), 8);
        assert_eq!(s.stats.duplicates, 1);
        let payloads: Vec<u8> = out.iter().map(|r| r.rtp[12]).collect();
        assert_eq!(payloads, [0, 1, 2, 3, 4, 5, 6, 7]);
        let pts: Vec<u64> = out.iter().map(|r| r.pts_ns / 1_000_000).collect();
        assert_eq!(
            pts,
            [0, 20, 40, 60, 80, 100, 120, 140],
            "RTP time, not jitter"
        );
        let seqs: Vec<u16> = out.iter().map(seq_of).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    }

    #[test]
    fn red_is_reduced_to_its_primary_and_bad_red_is_skipped() {
        // One redundant block (pt 111, offset 960, 3 bytes), then the primary (pt 111).
        let red = [0x80 | 111, 0x0f, 0x00, 3, 111, 9, 9, 9, 0xaa, 0xbb];
        let bad_len = [0x80 | 111, 0x0f, 0x00, 30, 111, 9];
        let wrong_primary = [0x80 | 111, 0x0f, 0x00, 1, 100, 9, 0xaa];
        let truncated_header = [0x80 | 111, 0x0f];
        let (out, s) = run(&[
            (0, 0, rtp(63, 1, 0, 7, &red)),
            (0, 20, rtp(63, 2, 960, 7, &bad_len)),
            (0, 40, rtp(63, 3, 1920, 7, &wrong_primary)),
            (0, 60, rtp(63, 4, 2880, 7, &truncated_header)),
            (0, 80, rtp(111, 5, 3840, 7, &[0xcc])),
            (0, 100, rtp(96, 6, 3840, 7, &[0xcc])),
            (0, 120, vec![0x80, 111, 0]),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(&out[0].rtp[12..], &[0xaa, 0xbb]);
        assert_eq!(out[0].rtp[1] & 0x7f, 111, "primary's payload type");
        assert_eq!(&out[1].rtp[12..], &[0xcc]);
        assert_eq!(s.stats.malformed_red, 3);
        assert_eq!(s.stats.foreign_payload, 1);
        assert_eq!(s.stats.malformed, 1);
    }

    #[test]
    fn parts_are_new_segments_with_gaps_and_a_sequence_jump() {
        let mut packets = Vec::new();
        for i in 0..10u16 {
            packets.push((
                0,
                1000 + u64::from(i) * 20,
                rtp(111, 100 + i, 960 * u32::from(i), 1, &[1]),
            ));
        }
        // Part 1: 5 s later, another SSRC, sequence numbers behind the first part's.
        for i in 0..10u16 {
            packets.push((
                1,
                6180 + u64::from(i) * 20,
                rtp(111, 50 + i, 77 + 960 * u32::from(i), 2, &[2]),
            ));
        }
        let (out, s) = run(&packets);
        assert_eq!(out.len(), 20);
        assert_eq!(s.gaps_ns, vec![(1180 * 1_000_000, 6180 * 1_000_000)]);
        assert_eq!(
            out[10].pts_ns,
            5180 * 1_000_000,
            "arrival-anchored after the gap"
        );
        let jump = seq_of(&out[10]).wrapping_sub(seq_of(&out[9]));
        assert!(
            jump > 1 && jump < 0x8000,
            "forward discontinuity, got {jump}"
        );
        assert!(out.windows(2).all(|w| w[0].pts_ns <= w[1].pts_ns));
    }

    #[test]
    fn vp8_waits_for_a_keyframe_and_reads_its_size() {
        let key = [
            0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01,
        ];
        assert_eq!(
            vp8_packet(&key),
            Some(Vp8Packet::Start {
                keyframe: true,
                size: Some((640, 360))
            })
        );
        // Extended descriptor with a 2-byte picture id, start of a delta frame.
        assert_eq!(
            vp8_packet(&[0x90, 0x80, 0x81, 0x23, 0x01, 0, 0]),
            Some(Vp8Packet::Start {
                keyframe: false,
                size: None
            })
        );
        assert_eq!(vp8_packet(&[0x00, 0x55]), Some(Vp8Packet::Continuation));
        assert_eq!(vp8_packet(&[0x90, 0x80]), None);
        assert_eq!(vp8_packet(&[]), None);

        let mut s = Sequencer::new(&TrackMeta {
            codec: Codec::Vp8,
            kind: TrackKind::Video,
            clock_rate: 90_000,
            payload_type: 96,
            red_payload_type: None,
            ..meta(Codec::Vp8, 0)
        });
        let m = TrackMeta {
            payload_type: 96,
            red_payload_type: None,
            ..meta(Codec::Vp8, 0)
        };
        let mut out = Vec::new();
        let delta = [0x10, 0x01, 0, 0];
        for (i, payload) in [&delta[..], &[0x00, 7], &key[..], &[0x00, 8], &delta[..]]
            .iter()
            .enumerate()
        {
            s.push(
                &m,
                i as u64 * 40_000_000,
                rtp(96, i as u16, 3600 * i as u32, 5, payload),
                &mut |r| out.push(r),
            );
        }
        s.flush(&mut |r| out.push(r));
        assert_eq!(out.len(), 3);
        assert_eq!(s.stats.before_keyframe, 2);
        assert_eq!(out[0].pts_ns, 0, "the file starts at the keyframe");
    }

    #[test]
    fn malformed_rtp_never_panics() {
        let mut s = Sequencer::new(&meta(Codec::Opus, 0));
        let mut n = 0;
        let mut x = 0x1234_5678u32;
        for len in 0..400usize {
            let mut p: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if let Some(b) = p.first_mut() {
                *b = 0x80 | (*b & 0x3f);
            }
            if len > 1 {
                p[1] = if len % 2 == 0 { 63 } else { 111 };
            }
            s.push(&meta(Codec::Opus, 0), len as u64, p, &mut |_| n += 1);
        }
        s.flush(&mut |_| n += 1);
        assert!(s.stats.malformed + s.stats.malformed_red > 0);
    }
}
