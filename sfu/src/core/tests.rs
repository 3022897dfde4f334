//! Forwarding-core tests with simulated time: the clock is an `Instant` the test advances.

use super::*;

const VP8_KEY: &[u8] = &[0x10, 0x50, 0x2a, 0x01];
const VP8_DELTA: &[u8] = &[0x10, 0x51, 0x2a, 0x01];

struct Sim {
    room: Room,
    now: Instant,
}

impl Sim {
    fn new() -> Self {
        Self {
            room: Room::new("class".into(), CoreConfig::default()),
            now: Instant::now(),
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.room.handle_timeout(self.now);
    }

    fn track(&mut self, id: &str, publisher: &str, source: Source, codec: Codec) -> TrackHandle {
        self.room.add_track(TrackSpec {
            id: id.into(),
            publisher: publisher.into(),
            source,
            codec,
            layers: 1,
            lead: false,
        })
    }

    /// A simulcast camera with three layers.
    fn simulcast(&mut self, id: &str, publisher: &str, lead: bool) -> TrackHandle {
        self.room.add_track(TrackSpec {
            id: id.into(),
            publisher: publisher.into(),
            source: Source::Camera,
            codec: Codec::Vp8,
            layers: 3,
            lead,
        })
    }

    fn sub(&mut self, who: &str, track: TrackHandle, ssrc: u32) -> SubHandle {
        self.room
            .subscribe(
                self.now,
                SubscribeSpec {
                    subscriber: who.into(),
                    track,
                    ssrc,
                    payload_type: 96,
                },
            )
            .unwrap()
    }

    fn rtp(&mut self, track: TrackHandle, seq: u16, ts: u32, payload: &'static [u8]) {
        self.rtp_layer(track, 0, seq, ts, Bytes::from_static(payload));
    }

    fn rtp_layer(&mut self, track: TrackHandle, layer: u8, seq: u16, ts: u32, payload: Bytes) {
        let header = RtpHeader {
            payload_type: 120,
            marker: true,
            sequence_number: seq,
            timestamp: ts,
            ssrc: 0xdead_0000 + track.0 * 4 + u32::from(layer),
        };
        self.room
            .handle_rtp(self.now, track, layer, header, payload, None);
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.room.poll_output()).collect()
    }

    fn forwarded(&mut self) -> Vec<(SubHandle, RtpHeader, bool)> {
        self.drain()
            .into_iter()
            .filter_map(|o| match o {
                Output::Forward {
                    sub,
                    header,
                    retransmission,
                    ..
                } => Some((sub, header, retransmission)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn sequence_stays_continuous_when_the_forwarded_source_changes() {
    let mut sim = Sim::new();
    let cam_a = sim.track("a-cam", "room-a", Source::Camera, Codec::Vp8);
    let cam_b = sim.track("b-cam", "room-b", Source::Camera, Codec::Vp8);
    // The teacher's "spotlight" subscription starts on classroom A.
    let sub = sim.sub("teacher", cam_a, 5555);
    sim.drain();

    let mut seqs = Vec::new();
    let mut tss = Vec::new();
    // A: a delta frame first (dropped: no keyframe yet), then a keyframe and deltas.
    sim.rtp(cam_a, 1000, 90_000, VP8_DELTA);
    assert!(sim.forwarded().is_empty(), "video must start at a keyframe");
    sim.rtp(cam_a, 1001, 93_000, VP8_KEY);
    for i in 0..5u16 {
        sim.advance(33);
        sim.rtp(cam_a, 1002 + i, 96_000 + u32::from(i) * 3000, VP8_DELTA);
        // B runs concurrently with unrelated numbering; not forwarded yet.
        sim.rtp(
            cam_b,
            40_000 + i,
            5_000_000 + u32::from(i) * 3000,
            VP8_DELTA,
        );
    }
    for (s, h, _) in sim.forwarded() {
        assert_eq!((s, h.ssrc, h.payload_type), (sub, 5555, 96));
        seqs.push(h.sequence_number);
        tss.push(h.timestamp);
    }
    // Spotlight moves to B: the switch waits for B's keyframe, A keeps flowing meanwhile.
    sim.room.switch_source(sim.now, sub, cam_b).unwrap();
    assert!(sim.drain().contains(&Output::RequestKeyframe {
        track: cam_b,
        layer: 0
    }));
    sim.advance(33);
    sim.rtp(cam_b, 40_005, 5_015_000, VP8_DELTA);
    sim.rtp(cam_a, 1007, 111_000, VP8_DELTA);
    sim.advance(33);
    sim.rtp(cam_b, 40_006, 5_018_000, VP8_KEY);
    sim.rtp(cam_a, 1008, 114_000, VP8_DELTA); // after the switch: dropped
    sim.advance(33);
    sim.rtp(cam_b, 40_007, 5_021_000, VP8_DELTA);
    for (_, h, _) in sim.forwarded() {
        seqs.push(h.sequence_number);
        tss.push(h.timestamp);
    }
    assert_eq!(seqs.len(), 9, "{seqs:?}");
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0].wrapping_add(1), "gap in {seqs:?}");
    }
    for w in tss.windows(2) {
        assert!(
            w[1].wrapping_sub(w[0]) as i32 > 0,
            "timestamps must advance: {tss:?}"
        );
    }
    assert_eq!(sim.room.subscription_source(sub), Some(cam_b));
}

/// A VP8 frame of `len` bytes in one packet: a keyframe or a delta frame.
fn vp8_frame(key: bool, len: usize) -> Bytes {
    let mut v = if key { VP8_KEY } else { VP8_DELTA }.to_vec();
    v.resize(len.max(v.len()), 0);
    Bytes::from(v)
}

fn plis(outs: &[Output]) -> usize {
    outs.iter()
        .filter(|o| matches!(o, Output::RequestKeyframe { .. }))
        .count()
}

#[test]
fn keyframe_requests_are_throttled_to_one_per_second_per_track() {
    let mut sim = Sim::new();
    let cam = sim.track("t-cam", "teacher", Source::Camera, Codec::Vp8);
    let subs: Vec<SubHandle> = (0..8)
        .map(|i| sim.sub(&format!("room-{i}"), cam, 100 + i))
        .collect();
    // Subscribing requested one keyframe; the other seven were coalesced into one owed request.
    assert_eq!(plis(&sim.drain()), 1);
    sim.advance(999);
    assert_eq!(plis(&sim.drain()), 0);
    sim.advance(1);
    assert_eq!(
        plis(&sim.drain()),
        1,
        "the owed request goes out when the second is up"
    );
    // An owed request is fulfilled at the end of the window, unless a keyframe arrived first.
    sim.room.handle_keyframe_request(sim.now, subs[1]);
    assert_eq!(plis(&sim.drain()), 0);
    assert!(sim.room.poll_timeout().is_some());
    sim.rtp(cam, 1, 0, VP8_KEY);
    sim.advance(1000);
    assert_eq!(
        plis(&sim.drain()),
        0,
        "the keyframe already answered the owed request"
    );
    sim.room.handle_keyframe_request(sim.now, subs[2]);
    sim.advance(500);
    assert_eq!(
        plis(&sim.drain()),
        1,
        "a request in a fresh window goes out at once"
    );
    sim.room.handle_keyframe_request(sim.now, subs[3]);
    sim.advance(499);
    assert_eq!(plis(&sim.drain()), 0);
    sim.advance(1);
    assert_eq!(plis(&sim.drain()), 1);
    assert!(sim.room.stats().plis_throttled >= 8);
}

#[test]
fn one_lossy_classroom_cannot_keep_the_encoder_sending_keyframes() {
    let mut sim = Sim::new();
    let cam = sim.track("t-cam", "teacher", Source::Camera, Codec::Vp8);
    let lossy = sim.sub("room-lossy", cam, 1);
    let _fine = sim.sub("room-fine", cam, 2);
    sim.rtp(cam, 0, 0, VP8_KEY);
    sim.advance(1000);
    sim.drain();
    // The lossy classroom's decoder asks every 100 ms for a minute, while the teacher's camera
    // sends delta frames.
    let mut sent = 0;
    for i in 1..=600u16 {
        sim.rtp(cam, i, u32::from(i) * 9000, VP8_DELTA);
        sim.room.handle_keyframe_request(sim.now, lossy);
        sent += plis(&sim.drain());
        sim.advance(100);
        sent += plis(&sim.drain());
    }
    // One per `subscriber_pli_interval` (3 s) reaches the teacher, not one per second.
    assert!(
        (19..=21).contains(&sent),
        "{sent} keyframe requests in a minute"
    );
}

/// Feeds one frame (one packet) on each of a simulcast track's layers, a keyframe every
/// `gop` frames, 33 ms apart, for `frames` frames; returns what was forwarded. The layers run at
/// about 50, 150 and 450 kbit/s.
fn run_layers(
    sim: &mut Sim,
    cam: TrackHandle,
    seqs: &mut [u16; 3],
    frame: &mut u32,
    frames: u32,
    gop: u32,
) -> Vec<RtpHeader> {
    let mut out = Vec::new();
    for _ in 0..frames {
        *frame += 1;
        for layer in 0..3u8 {
            let i = usize::from(layer);
            let payload = vp8_frame((*frame).is_multiple_of(gop), [200, 600, 1800][i]);
            seqs[i] = seqs[i].wrapping_add(1);
            // Each layer has its own sequence and timestamp spaces, as a browser sends them.
            let ts = (*frame * 3000).wrapping_add(u32::from(layer) * 1_000_000_000);
            sim.rtp_layer(cam, layer, seqs[i], ts, payload);
        }
        sim.advance(33);
        out.extend(sim.forwarded().into_iter().map(|(_, h, _)| h));
    }
    out
}

#[test]
fn layer_switches_follow_the_estimate_at_keyframes_without_sequence_gaps() {
    let mut sim = Sim::new();
    let cam = sim.simulcast("t-cam", "teacher", true);
    let sub = sim.sub("room-a", cam, 42);
    let mut seqs = [100u16, 30_000, 65_500];
    let mut frame = 0;
    // No estimate yet: the subscription starts on the lowest layer.
    let first = run_layers(&mut sim, cam, &mut seqs, &mut frame, 15, 10);
    assert_eq!(sim.room.subscription_layer(sub), Some(0));
    // A wide link: after the up-switch delay the subscription climbs, at keyframes, to the top.
    sim.room.set_estimate(&"room-a".into(), 5_000_000);
    let up = run_layers(&mut sim, cam, &mut seqs, &mut frame, 150, 10);
    assert_eq!(sim.room.subscription_layer(sub), Some(2));
    // The link narrows to 120 kbit/s: down at once (at the next keyframe), to the lowest layer.
    sim.room.set_estimate(&"room-a".into(), 120_000);
    let down = run_layers(&mut sim, cam, &mut seqs, &mut frame, 40, 10);
    assert_eq!(sim.room.subscription_layer(sub), Some(0));
    assert!(sim.room.stats().layer_switches >= 2);
    let all: Vec<RtpHeader> = first.into_iter().chain(up).chain(down).collect();
    assert!(all.len() > 150, "{} packets", all.len());
    for w in all.windows(2) {
        assert_eq!(
            w[1].sequence_number,
            w[0].sequence_number.wrapping_add(1),
            "gap across a layer switch"
        );
        assert!(
            w[1].timestamp.wrapping_sub(w[0].timestamp) as i32 >= 0,
            "timestamp went backwards: {} then {}",
            w[0].timestamp,
            w[1].timestamp
        );
        assert_eq!(w[1].ssrc, 42);
    }
}

#[test]
fn a_starved_link_pauses_classroom_video_but_never_the_teachers_voice() {
    let mut sim = Sim::new();
    let t_cam = sim.simulcast("t-cam", "teacher", true);
    let t_mic = sim.track("t-mic", "teacher", Source::Microphone, Codec::Opus);
    let b_cam = sim.simulcast("b-cam", "room-b", false);
    let s_cam = sim.sub("room-a", t_cam, 1);
    let s_mic = sim.sub("room-a", t_mic, 2);
    let s_b = sim.sub("room-a", b_cam, 3);
    // Room for the teacher's voice and lowest layer, not for a classroom's camera too.
    sim.room.set_estimate(&"room-a".into(), 300_000);
    let mut got = HashMap::<SubHandle, usize>::new();
    for i in 0..100u16 {
        // Opus at about 40 kbit/s, each camera's lowest layer at about 150.
        sim.rtp_layer(
            t_mic,
            0,
            i,
            u32::from(i) * 1600,
            Bytes::from(vec![0xfc; 160]),
        );
        for cam in [t_cam, b_cam] {
            let payload = vp8_frame(i % 10 == 0, 600);
            sim.rtp_layer(cam, 0, i, u32::from(i) * 3000, payload);
        }
        sim.advance(33);
        for (s, _, _) in sim.forwarded() {
            *got.entry(s).or_default() += 1;
        }
    }
    assert_eq!(got.get(&s_mic), Some(&100), "every word of the teacher");
    assert!(got.get(&s_cam).copied().unwrap_or(0) > 50, "{got:?}");
    // The classroom's camera started before the first allocation, then paused.
    assert!(got.get(&s_b).copied().unwrap_or(0) < 20, "{got:?}");
    assert_eq!(sim.room.subscription_layer(s_b), None);
    assert!(sim.room.stats().pauses >= 1);
}

#[test]
fn layers_nobody_receives_are_paused_at_the_publisher() {
    let mut sim = Sim::new();
    let cam = sim.simulcast("t-cam", "teacher", true);
    let masks = |outs: Vec<Output>| -> Vec<u8> {
        outs.into_iter()
            .filter_map(|o| match o {
                Output::PublishLayers { mask, .. } => Some(mask),
                _ => None,
            })
            .collect()
    };
    let sub = sim.sub("room-a", cam, 1);
    sim.advance(600);
    // Only the lowest layer is received: the other two are paused.
    assert_eq!(masks(sim.drain()), vec![0b001]);
    sim.room.set_estimate(&"room-a".into(), 10_000_000);
    let mut outs = Vec::new();
    for frame in 1..100u16 {
        let payload = vp8_frame(frame % 10 == 0, 200);
        sim.rtp_layer(cam, 0, frame, u32::from(frame) * 3000, payload);
        sim.advance(33);
        outs.extend(sim.drain());
    }
    // The estimate allows the top layer: it is asked for again.
    assert_eq!(masks(outs), vec![0b101]);
    sim.room.unsubscribe(sub);
    sim.advance(600);
    assert_eq!(masks(sim.drain()), vec![0b001]);
}

#[test]
fn nack_is_served_from_the_cache_and_misses_once_evicted() {
    let mut sim = Sim::new();
    sim.room = Room::new(
        "class".into(),
        CoreConfig {
            video_cache_packets: 8,
            ..CoreConfig::default()
        },
    );
    let cam = sim.track("t-cam", "teacher", Source::Camera, Codec::Vp8);
    let sub = sim.sub("room-a", cam, 777);
    sim.rtp(cam, 500, 0, VP8_KEY);
    for s in 501..505 {
        sim.rtp(cam, s, 3000, VP8_DELTA);
    }
    let sent = sim.forwarded();
    let out_502 = sent[2].1;
    // The subscriber lost 502: resent with the same output header, flagged as a retransmission.
    sim.room.handle_nack(sub, [out_502.sequence_number]);
    let resent = sim.forwarded();
    assert_eq!(resent, vec![(sub, out_502, true)]);
    assert_eq!(
        (sim.room.stats().nack_hits, sim.room.stats().nack_misses),
        (1, 0)
    );
    // Eight more packets evict it from the 8-slot cache.
    for s in 505..513 {
        sim.rtp(cam, s, 6000, VP8_DELTA);
    }
    sim.drain();
    sim.room.handle_nack(sub, [out_502.sequence_number]);
    assert!(sim.forwarded().is_empty());
    assert_eq!(sim.room.stats().nack_misses, 1);
    // A sequence number from the future or before the subscription is a miss, not a panic.
    sim.room
        .handle_nack(sub, [out_502.sequence_number.wrapping_add(1000), 0, 65535]);
    assert_eq!(sim.room.stats().nack_misses, 4);
}

#[test]
fn own_media_is_never_forwarded_back() {
    let mut sim = Sim::new();
    let a_cam = sim.track("a-cam", "room-a", Source::Camera, Codec::Vp8);
    let a_mic = sim.track("a-mic", "room-a", Source::Microphone, Codec::Opus);
    let t_mic = sim.track("t-mic", "teacher", Source::Microphone, Codec::Opus);
    for t in [a_cam, a_mic] {
        let err = sim
            .room
            .subscribe(
                sim.now,
                SubscribeSpec {
                    subscriber: "room-a".into(),
                    track: t,
                    ssrc: 1,
                    payload_type: 111,
                },
            )
            .unwrap_err();
        assert!(matches!(err, CoreError::OwnMedia { .. }), "{err}");
    }
    // Nor by switching an existing subscription onto one's own track.
    let s = sim.sub("room-a", t_mic, 9);
    assert!(matches!(
        sim.room.switch_source(sim.now, s, a_mic),
        Err(CoreError::OwnMedia { .. })
    ));
    // Audio forwards from the first packet; room-a only ever gets the teacher.
    let teacher_sub = sim.sub("teacher", a_mic, 10);
    sim.rtp(a_mic, 1, 0, b"opus");
    sim.rtp(t_mic, 1, 0, b"opus");
    let f = sim.forwarded();
    assert_eq!(
        f.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![teacher_sub, s]
    );
}

#[test]
fn removing_a_participant_removes_its_tracks_and_the_subscriptions_to_them() {
    let mut sim = Sim::new();
    let a_cam = sim.track("a-cam", "room-a", Source::Camera, Codec::Vp8);
    let t_cam = sim.track("t-cam", "teacher", Source::Camera, Codec::Vp8);
    let s1 = sim.sub("teacher", a_cam, 1);
    let s2 = sim.sub("room-a", t_cam, 2);
    let (tracks, subs) = sim.room.remove_participant(&"room-a".into());
    assert_eq!(tracks, vec![a_cam]);
    assert!(subs.contains(&s1) && subs.contains(&s2));
    assert_eq!(
        (sim.room.track_count(), sim.room.subscription_count()),
        (1, 0)
    );
    // Late packets of a removed track are ignored.
    sim.rtp(a_cam, 1, 0, VP8_KEY);
    assert!(sim.forwarded().is_empty());
}

#[test]
fn active_speaker_follows_audio_levels_with_a_hold() {
    let mut sim = Sim::new();
    let a = sim.track("a-mic", "room-a", Source::Microphone, Codec::Opus);
    let t = sim.track("t-mic", "teacher", Source::Microphone, Codec::Opus);
    let h = |seq| RtpHeader {
        payload_type: 111,
        marker: false,
        sequence_number: seq,
        timestamp: 0,
        ssrc: 1,
    };
    let mut changes = Vec::new();
    for i in 0..200u16 {
        // The teacher speaks (level 20), room-a is silent (127) for 4 s.
        sim.room
            .handle_rtp(sim.now, t, 0, h(i), Bytes::from_static(b"x"), Some(20));
        sim.room
            .handle_rtp(sim.now, a, 0, h(i), Bytes::from_static(b"x"), Some(127));
        sim.advance(20);
        changes.extend(sim.drain().into_iter().filter_map(|o| match o {
            Output::ActiveSpeaker(p) => Some(p),
            _ => None,
        }));
    }
    assert_eq!(changes, vec![Some("teacher".into())]);
}

/// A tiny deterministic generator, so the randomized test is reproducible.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % u64::from(n)) as u32
    }
}

#[test]
fn seeded_random_operations_keep_the_invariants() {
    for seed in 0..20u64 {
        let mut rng = Lcg(seed);
        let mut sim = Sim::new();
        let people = ["teacher", "room-a", "room-b", "room-c"];
        let mut tracks = Vec::new();
        for p in people {
            tracks.push((
                sim.track(&format!("{p}-cam"), p, Source::Camera, Codec::Vp8),
                p,
            ));
        }
        let mut subs: Vec<(SubHandle, &str)> = Vec::new();
        let mut seq = [0u16; 4];
        let mut last_out: HashMap<SubHandle, u16> = HashMap::new();
        for _ in 0..3000 {
            match rng.next(10) {
                0 => {
                    let who = people[rng.next(4) as usize];
                    let (t, owner) = tracks[rng.next(4) as usize];
                    let r = sim.room.subscribe(
                        sim.now,
                        SubscribeSpec {
                            subscriber: who.into(),
                            track: t,
                            ssrc: 1,
                            payload_type: 96,
                        },
                    );
                    assert_eq!(r.is_err(), who == owner);
                    if let Ok(s) = r {
                        subs.push((s, who));
                    }
                }
                1 if !subs.is_empty() => {
                    let (s, who) = subs[rng.next(subs.len() as u32) as usize];
                    let (t, owner) = tracks[rng.next(4) as usize];
                    assert_eq!(sim.room.switch_source(sim.now, s, t).is_err(), who == owner);
                }
                2 if !subs.is_empty() => {
                    let (s, _) = subs[rng.next(subs.len() as u32) as usize];
                    sim.room.handle_nack(s, [rng.next(65536) as u16]);
                }
                _ => {
                    let i = rng.next(4) as usize;
                    seq[i] = seq[i].wrapping_add(1);
                    let payload = if rng.next(8) == 0 { VP8_KEY } else { VP8_DELTA };
                    sim.rtp(tracks[i].0, seq[i], u32::from(seq[i]) * 3000, payload);
                    sim.advance(u64::from(rng.next(40)));
                }
            }
            for o in sim.drain() {
                if let Output::Forward {
                    sub,
                    header,
                    retransmission,
                    ..
                } = o
                {
                    let who = subs.iter().find(|(s, _)| *s == sub).unwrap().1;
                    let source = sim.room.subscription_source(sub).unwrap();
                    assert_ne!(
                        sim.room.track(source).unwrap().publisher.as_str(),
                        who,
                        "own media forwarded"
                    );
                    if !retransmission
                        && let Some(prev) = last_out.insert(sub, header.sequence_number)
                    {
                        assert_eq!(
                            header.sequence_number,
                            prev.wrapping_add(1),
                            "seed {seed}: gap"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_switch_whose_layer_never_comes_asks_again_then_falls_back() {
    let mut sim = Sim::new();
    let cam = sim.simulcast("t-cam", "teacher", true);
    let sub = sim.sub("room-a", cam, 7);
    sim.room.set_estimate(&"room-a".into(), 10_000_000);
    let mut requests = Vec::new();
    // The publisher sends layers 0 and 1 only (its top layer is off: CPU, or its own uplink).
    for i in 1..300u16 {
        for layer in 0..2u8 {
            let payload = vp8_frame(i % 30 == 0, [200, 600][usize::from(layer)]);
            sim.rtp_layer(cam, layer, i, u32::from(i) * 3000, payload);
        }
        sim.advance(33);
        requests.extend(sim.drain().into_iter().filter_map(|o| match o {
            Output::RequestKeyframe { layer, .. } => Some(layer),
            _ => None,
        }));
    }
    // It aimed for the top layer, asked for it more than once, then settled on layer 1.
    assert!(
        requests.iter().filter(|l| **l == 2).count() >= 2,
        "{requests:?}"
    );
    assert_eq!(sim.room.subscription_layer(sub), Some(1));
}
