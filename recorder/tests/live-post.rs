//! A live class after it ended: per-track RTP dumps (made here from GStreamer-encoded RTP with
//! synthetic arrival times) remuxed to WebM, then composed into the review video.
//!
//! The class, on the lesson timeline (lesson start = 0):
//! - teacher/camera, VP8: part 0 from 1.5 s, 3 s at 320×240 then 3 s at 640×360 (a simulcast
//!   layer switch), some packets swapped and one duplicated; a 5 s gap (a recorder restart); part 1
//!   from 12.5 s, 2 s at 320×240 with another SSRC and numbering, its last record cut by a crash.
//! - teacher/microphone, Opus in RED (RFC 2198, one redundant block) from 1 s for 8 s, with one
//!   malformed RED packet.
//! - room-a/camera, VP8 320×180 from 3 s for 4 s.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use duet_recorder::delivery::{StreamKind, probe_media};
use duet_recorder::live::dump::{Codec, DumpWriter, TrackKind, TrackMeta};
use duet_recorder::post::compose::{ComposeInput, Role, compose};
use duet_recorder::post::remux::{RemuxError, remux_track};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// RTP packets out of a `… ! appsink name=sink` pipeline, with their PTS (ns).
fn rtp_from(launch: &str) -> Result<Vec<(u64, Vec<u8>)>> {
    gst::init()?;
    let pipeline = gst::parse::launch(launch)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let sink = pipeline
        .by_name("sink")
        .context("no sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| anyhow::anyhow!("not an appsink"))?;
    pipeline.set_state(gst::State::Playing)?;
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().context("sample without buffer")?;
        let pts = buffer.pts().context("no pts")?.nseconds();
        out.push((pts, buffer.map_readable()?.to_vec()));
    }
    pipeline.set_state(gst::State::Null)?;
    if out.is_empty() {
        bail!("no packets from {launch}");
    }
    Ok(out)
}

fn vp8(
    frames: u32,
    (w, h): (u32, u32),
    ssrc: u32,
    seq: u32,
    ts: u32,
) -> Result<Vec<(u64, Vec<u8>)>> {
    rtp_from(&format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width={w},height={h},framerate=25/1 \
         ! vp8enc deadline=1 keyframe-max-dist=25 cpu-used=8 ! rtpvp8pay pt=96 ssrc={ssrc} seqnum-offset={seq} \
         timestamp-offset={ts} mtu=1200 ! appsink name=sink sync=false"
    ))
}

fn meta(participant: &str, source: &str, codec: Codec, part: u32) -> TrackMeta {
    let video = codec != Codec::Opus;
    TrackMeta {
        participant: participant.into(),
        source: source.into(),
        kind: if video {
            TrackKind::Video
        } else {
            TrackKind::Audio
        },
        codec,
        clock_rate: if video { 90_000 } else { 48_000 },
        payload_type: if video { 96 } else { 111 },
        red_payload_type: (!video).then_some(63),
        part,
    }
}

fn at(lesson: SystemTime, ns: u64) -> SystemTime {
    lesson + Duration::from_nanos(ns)
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("duet-live-post-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Decodes a VP8 WebM to the end; returns the frame count and the sizes seen.
fn decode_vp8(path: &Path) -> Result<(usize, Vec<(i32, i32)>)> {
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! matroskademux ! vp8dec ! appsink name=sink sync=false",
        path.display()
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let sink = pipeline
        .by_name("sink")
        .context("no sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| anyhow::anyhow!("not an appsink"))?;
    pipeline.set_state(gst::State::Playing)?;
    let mut frames = 0;
    let mut sizes = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        frames += 1;
        let s = sample.caps().and_then(|c| c.structure(0)).context("caps")?;
        let size = (s.get::<i32>("width")?, s.get::<i32>("height")?);
        if sizes.last() != Some(&size) {
            sizes.push(size);
        }
    }
    let bus = pipeline.bus().context("bus")?;
    let error = bus.pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null)?;
    if let Some(msg) = error {
        bail!("decoding {} failed: {msg:?}", path.display());
    }
    Ok((frames, sizes))
}

#[test]
fn dumps_remux_to_webm_and_compose_to_mp4() -> Result<()> {
    let dir = tempdir()?;
    let lesson = UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    let ms = 1_000_000u64;

    // teacher/camera, part 0: 320×240 then 640×360 on one SSRC and numbering.
    let small = vp8(75, (320, 240), 1111, 100, 0)?;
    let next_seq = 100 + small.len() as u32;
    let large = vp8(75, (640, 360), 1111, next_seq, 3 * 90_000)?;
    let mut part0: Vec<(u64, Vec<u8>)> = small;
    part0.extend(large.into_iter().map(|(pts, p)| (pts + 3000 * ms, p)));
    let cam0 = dir.join("teacher-camera.0.rtp");
    let mut w = DumpWriter::create(&cam0, &meta("teacher", "camera", Codec::Vp8, 0))?;
    let mut order: Vec<usize> = (0..part0.len()).collect();
    order.swap(30, 31);
    order.swap(120, 123);
    order.insert(100, 99); // a duplicate
    for (n, i) in order.iter().enumerate() {
        let (pts, p) = &part0[*i];
        let jitter = (n as u64 * 7919 % 9) * ms; // 0..8 ms
        w.write(at(lesson, 1500 * ms + pts + jitter), p)?;
    }
    w.finish()?;
    let part0_last = 1500 * ms + part0.last().context("packets")?.0;

    // Part 1 after a restart: another SSRC, numbering and timestamps; cut by a crash.
    let part1 = vp8(50, (320, 240), 2222, 40_000, 123_456_789)?;
    let cam1 = dir.join("teacher-camera.1.rtp");
    let mut w = DumpWriter::create(&cam1, &meta("teacher", "camera", Codec::Vp8, 1))?;
    for (pts, p) in &part1 {
        w.write(at(lesson, 12_500 * ms + pts), p)?;
    }
    w.finish()?;
    let len = std::fs::metadata(&cam1)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cam1)?
        .set_len(len - 5)?;

    // teacher/microphone: Opus in RED, each packet carrying the previous one as redundancy.
    let opus = rtp_from(
        "audiotestsrc num-buffers=400 samplesperbuffer=960 wave=sine freq=440 \
         ! audio/x-raw,rate=48000,channels=2 ! opusenc frame-size=20 ! rtpopuspay pt=111 ssrc=3333 \
         ! appsink name=sink sync=false",
    )?;
    let mic = dir.join("teacher-microphone.0.rtp");
    let mut w = DumpWriter::create(&mic, &meta("teacher", "microphone", Codec::Opus, 0))?;
    let mut previous: Option<Vec<u8>> = None;
    for (i, (pts, p)) in opus.iter().enumerate() {
        let payload = &p[12..];
        let mut red = p[..12].to_vec();
        red[1] = (red[1] & 0x80) | 63;
        if let Some(prev) = &previous {
            red.extend_from_slice(&[
                0x80 | 111,
                (960u16 >> 6) as u8,
                ((960u16 & 0x3f) << 2) as u8 | (prev.len() >> 8) as u8,
                prev.len() as u8,
            ]);
        }
        red.push(111);
        if let Some(prev) = &previous {
            red.extend_from_slice(prev);
        }
        red.extend_from_slice(payload);
        if i == 200 {
            // A block length past the end of the packet.
            red = p[..12].to_vec();
            red[1] = (red[1] & 0x80) | 63;
            red.extend_from_slice(&[0x80 | 111, 0x0f, 0x03, 0xff, 111, 1, 2, 3]);
        }
        w.write(at(lesson, 1000 * ms + pts), &red)?;
        previous = Some(payload.to_vec());
    }
    w.finish()?;

    // room-a/camera.
    let room = vp8(100, (320, 180), 4444, 7, 99)?;
    let room_dump = dir.join("room-a-camera.0.rtp");
    let mut w = DumpWriter::create(&room_dump, &meta("room-a", "camera", Codec::Vp8, 0))?;
    for (pts, p) in &room {
        w.write(at(lesson, 3000 * ms + pts), p)?;
    }
    w.finish()?;

    // Remux. Parts given out of order: sorted by their meta.
    let cam_webm = dir.join("teacher-camera.webm");
    let cam = remux_track(&[cam1.clone(), cam0.clone()], lesson, &cam_webm)?;
    println!("camera: {cam:?}");
    assert_eq!(cam.offset_ms, 1500);
    let expected = 12_500 + 1960 - 1500;
    assert!(
        cam.duration_ms.abs_diff(expected) <= 100,
        "camera duration {} ms, expected about {expected}",
        cam.duration_ms
    );
    assert_eq!(cam.gaps.len(), 1, "{:?}", cam.gaps);
    assert!(
        cam.gaps[0][0].abs_diff(part0_last / ms) <= 10,
        "{:?}",
        cam.gaps
    );
    assert_eq!(cam.gaps[0][1], 12_500);
    assert_eq!(cam.stats.duplicates, 1);
    assert_eq!(cam.stats.late, 0);
    let last_record = 12 + part1.last().context("packets")?.1.len() as u64;
    assert_eq!(cam.stats.truncated_bytes, last_record - 5, "the cut record");
    assert_eq!(cam.resolution, Some((640, 360)));
    let probe = probe_media(&cam_webm)?;
    assert!(probe.container.contains("webm"), "{}", probe.container);
    let video = probe.video().context("no video stream")?;
    assert_eq!(video.codec, "vp8");
    assert!(
        (probe.duration.as_secs_f64() - cam.duration_ms as f64 / 1000.0).abs() <= 0.3,
        "file {:?} vs {} ms",
        probe.duration,
        cam.duration_ms
    );
    let (frames, sizes) = decode_vp8(&cam_webm)?;
    assert!((195..=200).contains(&frames), "{frames} frames decoded");
    assert_eq!(
        sizes,
        [(320, 240), (640, 360), (320, 240)],
        "the layer switch and back"
    );

    let mic_webm = dir.join("teacher-microphone.webm");
    let mic_track = remux_track(std::slice::from_ref(&mic), lesson, &mic_webm)?;
    println!("microphone: {mic_track:?}");
    assert_eq!(mic_track.offset_ms, 1000);
    let last_opus_ms = opus.last().context("packets")?.0 / ms;
    assert!(
        mic_track.duration_ms.abs_diff(last_opus_ms) <= 1,
        "{}",
        mic_track.duration_ms
    );
    assert!(mic_track.gaps.is_empty());
    assert_eq!(mic_track.stats.malformed_red, 1);
    assert_eq!(
        mic_track.packets,
        opus.len() as u64 - 1,
        "all but the bad one"
    );
    let probe = probe_media(&mic_webm)?;
    let audio = probe.audio().context("no audio stream")?;
    assert_eq!(audio.codec, "opus");
    assert!(matches!(
        audio.kind,
        StreamKind::Audio {
            sample_rate: 48_000,
            ..
        }
    ));
    assert!(
        (probe.duration.as_secs_f64() - mic_track.duration_ms as f64 / 1000.0).abs() <= 0.3,
        "{:?}",
        probe.duration
    );

    let room_webm = dir.join("room-a-camera.webm");
    let room_track = remux_track(std::slice::from_ref(&room_dump), lesson, &room_webm)?;
    assert_eq!(room_track.offset_ms, 3000);
    assert_eq!(room_track.resolution, Some((320, 180)));

    // Refusals.
    assert!(matches!(
        remux_track(&[cam0.clone(), mic.clone()], lesson, &dir.join("x.webm")),
        Err(RemuxError::MixedTracks { .. })
    ));
    let h264 = dir.join("h264.rtp");
    DumpWriter::create(&h264, &meta("teacher", "screen", Codec::H264, 0))?.finish()?;
    assert!(matches!(
        remux_track(&[h264], lesson, &dir.join("y.webm")),
        Err(RemuxError::Unsupported { codec: Codec::H264 })
    ));
    assert!(matches!(
        remux_track(&[], lesson, &dir.join("z.webm")),
        Err(RemuxError::NoParts)
    ));

    // Compose the three.
    let review = dir.join("review.mp4");
    let inputs = [
        ComposeInput {
            path: cam_webm.clone(),
            offset_ms: cam.offset_ms,
            role: Role::LeadCamera,
            label: "主讲教师".into(),
        },
        ComposeInput {
            path: room_webm.clone(),
            offset_ms: room_track.offset_ms,
            role: Role::ClassroomCamera(0),
            label: "room-a".into(),
        },
        ComposeInput {
            path: mic_webm.clone(),
            offset_ms: mic_track.offset_ms,
            role: Role::Microphone,
            label: String::new(),
        },
    ];
    let duration_ms = 15_000;
    let reported = std::sync::Mutex::new(Vec::new());
    let started = std::time::Instant::now();
    compose(&inputs, duration_ms, &review, &|f| {
        reported.lock().expect("lock").push(f)
    })?;
    println!("composed {duration_ms} ms in {:?}", started.elapsed());
    let reported = reported.into_inner()?;
    assert_eq!(reported.last(), Some(&1.0));
    assert!(
        reported.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows"
    );
    let probe = probe_media(&review)?;
    println!("review: {probe:?}");
    let video = probe.video().context("no video")?;
    assert_eq!(video.codec, "h264");
    assert_eq!(
        video.kind,
        StreamKind::Video {
            width: 1280,
            height: 720
        }
    );
    assert_eq!(probe.audio().context("no audio")?.codec, "aac");
    assert!(probe.index_at_front, "moov before mdat");
    assert!(
        (probe.duration.as_secs_f64() - 15.0).abs() <= 0.5,
        "{:?}",
        probe.duration
    );

    // A file without the stream its role wants (audio given as the screen) is black, and the
    // composition does not wait for it. A negative offset starts the camera before the lesson.
    let short = dir.join("short.mp4");
    let started = std::time::Instant::now();
    let inputs = [
        ComposeInput {
            path: mic_webm.clone(),
            offset_ms: 0,
            role: Role::Screen,
            label: String::new(),
        },
        ComposeInput {
            path: cam_webm.clone(),
            offset_ms: -1000,
            role: Role::LeadCamera,
            label: String::new(),
        },
    ];
    compose(&inputs, 2000, &short, &|_| {})?;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let probe = probe_media(&short)?;
    assert!(
        (probe.duration.as_secs_f64() - 2.0).abs() <= 0.5,
        "{:?}",
        probe.duration
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A disk that fills up during a remux (the output is `/dev/full`): the remux fails with the
/// pipeline's error once its queue is full, rather than waiting for good on a pipeline that
/// stopped, and leaves no output file.
#[test]
fn a_full_disk_fails_the_remux_instead_of_hanging() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("duet-live-post-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let lesson = UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    // Snow at a low quantizer: well over the remux's queue of encoded VP8.
    let packets = rtp_from(
        "videotestsrc num-buffers=60 pattern=snow ! video/x-raw,width=1280,height=720,framerate=25/1 \
         ! vp8enc deadline=1 cpu-used=8 target-bitrate=60000000 min-quantizer=0 max-quantizer=4 \
         ! rtpvp8pay pt=96 ssrc=7 mtu=1200 ! appsink name=sink sync=false",
    )?;
    let bytes: usize = packets.iter().map(|(_, p)| p.len()).sum();
    let queue = duet_recorder::post::remux::QUEUED_BYTES as usize;
    assert!(bytes > queue + (2 << 20), "only {bytes} bytes of VP8");
    let dump = dir.join("teacher-camera.0.rtp");
    let mut w = DumpWriter::create(&dump, &meta("teacher", "camera", Codec::Vp8, 0))?;
    for (pts, p) in &packets {
        w.write(at(lesson, *pts), p)?;
    }
    w.finish()?;
    let out = dir.join("teacher-camera.webm");
    std::os::unix::fs::symlink("/dev/full", dir.join("teacher-camera.webm.part"))?;

    let (tx, rx) = std::sync::mpsc::channel();
    let (input, output) = (dump.clone(), out.clone());
    std::thread::spawn(move || {
        let _ = tx.send(remux_track(&[input], lesson, &output));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(120))
        .context("the remux hung on a full disk")?;
    match result {
        Err(RemuxError::Pipeline { reason, .. }) => println!("refused: {reason}"),
        other => bail!("expected a pipeline error, got {other:?}"),
    }
    assert!(!out.exists(), "a partial output was published");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
