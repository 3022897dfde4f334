//! The forwarding core's hot path allocates nothing per packet: a publisher's packet in, its
//! rewritten copies out to every subscriber, NACKs answered from the cache, keyframe requests
//! throttled, active speaker evaluated. Counted with dhat's heap profiler standing in as the
//! global allocator, after a warm-up that fills the retransmission cache and the output queue.
//!
//! `harness = false`: dhat's profiler must be alone in its process, so this file is one check
//! run from `main`, not a libtest test that may share the process with others.

use bytes::Bytes;
use duet_sfu::core::{
    Codec, CoreConfig, Output, Room, RtpHeader, SubHandle, SubscribeSpec, TrackHandle, TrackSpec,
};
use duet_sfu_proto::Source;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const VP8_KEY: &[u8] = &[0x10, 0x50, 0x2a, 0x01, 0, 0, 0, 0];
const VP8_DELTA: &[u8] = &[0x10, 0x51, 0x2a, 0x01, 0, 0, 0, 0];
const OPUS: &[u8] = &[0xfc, 0xff, 0xfe];

struct Class {
    room: Room,
    now: Instant,
    camera: TrackHandle,
    mic: TrackHandle,
    subs: Vec<SubHandle>,
    seq: u16,
    forwarded: u64,
}

impl Class {
    fn new() -> Class {
        let mut room = Room::new("class".into(), CoreConfig::default());
        let now = Instant::now();
        let mut track = |id: &str, source, codec| {
            room.add_track(TrackSpec {
                id: id.into(),
                publisher: "lead".into(),
                source,
                codec,
                layers: 1,
                lead: true,
            })
        };
        let camera = track("cam", Source::Camera, Codec::Vp8);
        let mic = track("mic", Source::Microphone, Codec::Opus);
        let mut subs = Vec::new();
        for (i, who) in ["room-a", "room-b", "room-c"].into_iter().enumerate() {
            for (j, t) in [camera, mic].into_iter().enumerate() {
                subs.push(
                    room.subscribe(
                        now,
                        SubscribeSpec {
                            subscriber: who.into(),
                            track: t,
                            ssrc: 1000 + (i * 2 + j) as u32,
                            payload_type: 96,
                        },
                    )
                    .expect("subscribe"),
                );
            }
        }
        // Two subscribers with an estimate, so the allocator's budget path runs every tick.
        room.set_estimate(&"room-a".into(), 3_000_000);
        room.set_estimate(&"room-b".into(), 200_000);
        Class {
            room,
            now,
            camera,
            mic,
            subs,
            seq: 0,
            forwarded: 0,
        }
    }

    /// One 20 ms step: a video packet (a keyframe every 100), an audio packet with a level, a
    /// NACK and a keyframe request now and then, the timers, and every output drained.
    fn step(&mut self, video: &Bytes, key: &Bytes, audio: &Bytes) {
        self.now += Duration::from_millis(20);
        self.seq = self.seq.wrapping_add(1);
        let header = |seq: u16, ssrc: u32| RtpHeader {
            payload_type: 120,
            marker: true,
            sequence_number: seq,
            timestamp: u32::from(seq) * 1800,
            ssrc,
        };
        let payload = if self.seq.is_multiple_of(100) {
            key
        } else {
            video
        };
        self.room.handle_rtp(
            self.now,
            self.camera,
            0,
            header(self.seq, 1),
            payload.clone(),
            None,
        );
        self.room.handle_rtp(
            self.now,
            self.mic,
            0,
            header(self.seq, 2),
            audio.clone(),
            Some(30),
        );
        if self.seq.is_multiple_of(7) {
            self.room
                .handle_nack(self.subs[0], [self.seq.wrapping_sub(3)]);
        }
        if self.seq.is_multiple_of(13) {
            self.room.handle_keyframe_request(self.now, self.subs[2]);
        }
        self.room.handle_timeout(self.now);
        while let Some(o) = self.room.poll_output() {
            if matches!(o, Output::Forward { .. }) {
                self.forwarded += 1;
            }
        }
    }
}

fn main() {
    // On a failure dhat writes its profile (which call sites allocated) here.
    let _profiler = dhat::Profiler::builder()
        .testing()
        .file_name(concat!(
            env!("CARGO_TARGET_TMPDIR"),
            "/dhat-core-allocations.json"
        ))
        .build();
    let video = Bytes::from_static(VP8_DELTA);
    let key = Bytes::from_static(VP8_KEY);
    let audio = Bytes::from_static(OPUS);
    let mut class = Class::new();
    // Warm-up: past the retransmission cache's 1024 packets, with keyframes flowing.
    for _ in 0..3_000 {
        class.step(&video, &key, &audio);
    }
    let before = dhat::HeapStats::get();
    let forwarded_before = class.forwarded;
    for _ in 0..5_000 {
        class.step(&video, &key, &audio);
    }
    let after = dhat::HeapStats::get();
    let forwarded = class.forwarded - forwarded_before;
    let blocks = after.total_blocks - before.total_blocks;
    println!(
        "core-allocations: {forwarded} packets forwarded (NACK resends included), {blocks} heap blocks allocated"
    );
    // 10,000 packets in to 3 subscribers each, plus resends.
    dhat::assert!(forwarded >= 30_000, "forwarded only {forwarded}");
    dhat::assert_eq!(blocks, 0, "the forwarding core allocated in steady state");
    println!("core-allocations: ok");
}
