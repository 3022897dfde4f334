//! A lesson recorded in both modes at once, against real GStreamer and simulated RTSP cameras on
//! 127.0.0.1: every source to its own file (resource mode) and one directed 1080p programme with
//! the teacher's microphone (movie mode). Director events injected mid-lesson must show up *in the
//! programme's pictures*: each camera shows a different solid colour, and the test decodes the
//! programme and checks which camera is on air after each cut.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duet_hardware::rtsp_sim::{RtspCameraSim, RtspSimConfig};
use duet_recorder::capture::supervisor::{Backoff, SupervisorConfig};
use duet_recorder::capture::{VideoCodec, probe, probe_duration};
use duet_recorder::director::{DirectorConfig, Event, Role};
use duet_recorder::lesson::{LessonRunner, RoomSpec, SourceSpec};
use duet_recorder::manifest::{LessonPhase, LessonPlan};
use duet_recorder::mixer::{MixerConfig, PROGRAMME};
use gstreamer as gst;
use gstreamer::prelude::*;

/// The cameras: id, role, colour (a videotestsrc pattern), whether it also serves audio.
const CAMERAS: [(&str, Role, &str, bool); 4] = [
    ("cam-teacher", Role::TeacherCloseUp, "red", true),
    ("cam-pupils", Role::PupilsWide, "green", false),
    ("cam-pupil", Role::PupilCloseUp, "blue", false),
    ("screen", Role::Courseware, "white", false),
];

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The colour name whose channel dominates `rgb`: `red`, `green`, `blue`, `white`, or `other`.
fn colour([r, g, b]: [f64; 3]) -> &'static str {
    let hi = 140.0;
    let lo = 90.0;
    match (r > hi, g > hi, b > hi) {
        (true, true, true) => "white",
        (true, false, false) if g < lo && b < lo => "red",
        (false, true, false) if r < lo && b < lo => "green",
        (false, false, true) if r < lo && g < lo => "blue",
        _ => "other",
    }
}

/// Decodes `path`'s video and returns, per frame, its time in seconds and the mean RGB of the
/// frame's centre (scaled down to 64×36 first).
fn frame_colours(path: &Path) -> Vec<(f64, [f64; 3])> {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(
        "filesrc name=src ! matroskademux ! h264parse ! avdec_h264 ! videoconvert ! videoscale \
         ! video/x-raw,format=RGB,width=64,height=36 ! fakesink name=sink sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline
        .by_name("src")
        .unwrap()
        .set_property("location", path.to_str().unwrap());
    let frames = Arc::new(Mutex::new(Vec::new()));
    let sink_frames = Arc::clone(&frames);
    pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let buffer = info.buffer().unwrap();
            let pts = buffer.pts().map_or(0.0, |t| t.nseconds() as f64 / 1e9);
            let map = buffer.map_readable().unwrap();
            let mut sum = [0.0f64; 3];
            let mut n = 0.0;
            // The centre half of the frame: away from the clock overlay in the corner.
            for y in 9..27 {
                for x in 16..48 {
                    let i = (y * 64 + x) * 3;
                    for c in 0..3 {
                        sum[c] += f64::from(map[i + c]);
                    }
                    n += 1.0;
                }
            }
            sink_frames.lock().unwrap().push((pts, sum.map(|s| s / n)));
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("decoding the programme ends");
    assert!(
        matches!(msg.view(), gst::MessageView::Eos(_)),
        "decoding failed: {msg:?}"
    );
    pipeline.set_state(gst::State::Null).unwrap();
    let mut frames = frames.lock().unwrap().clone();
    frames.sort_by(|a, b| a.0.total_cmp(&b.0));
    frames
}

/// The colour on air at `t` seconds of the programme.
fn on_air(frames: &[(f64, [f64; 3])], t: f64) -> &'static str {
    let frame = frames
        .iter()
        .find(|(pts, _)| *pts >= t)
        .unwrap_or_else(|| panic!("no frame at {t} s"));
    colour(frame.1)
}

/// Simulated cameras for `cameras`, 640×360, each in its colour (the first with audio if asked).
fn start_cameras(cameras: &[(&str, Role, &str, bool)]) -> Vec<RtspCameraSim> {
    cameras
        .iter()
        .map(|(id, _, pattern, audio)| {
            let mut config = RtspSimConfig::new(0, id);
            config.width = 640;
            config.height = 360;
            config.pattern = (*pattern).into();
            config.audio = *audio;
            RtspCameraSim::start_with(config).expect("simulated camera starts")
        })
        .collect()
}

/// A room of `cameras` served by `cams`, directed with the default rules but the given timings,
/// encoding fast (this machine has two cores), retrying lost cameras within a second.
fn test_room(
    classroom: &str,
    cameras: &[(&str, Role, &str, bool)],
    cams: &[RtspCameraSim],
    microphone: Option<SourceSpec>,
    (static_first_s, min_hold_s): (f64, f64),
) -> RoomSpec {
    RoomSpec {
        classroom_id: classroom.into(),
        sources: cameras
            .iter()
            .zip(cams)
            .map(|((id, role, _, _), cam)| SourceSpec {
                id: (*id).into(),
                role: Some(*role),
                label: (*id).into(),
                url: cam.url().into(),
            })
            .collect(),
        microphone,
        director: DirectorConfig {
            static_first_s,
            min_hold_s,
            ..DirectorConfig::default()
        },
        mixer: MixerConfig {
            speed_preset: "ultrafast".into(),
            feed_width: 640,
            feed_height: 360,
            ..MixerConfig::default()
        },
        supervisor: SupervisorConfig {
            backoff: Backoff {
                initial: Duration::from_millis(250),
                max: Duration::from_secs(1),
            },
            ..SupervisorConfig::default()
        },
    }
}

/// A manual-looking plan of `secs` seconds from now.
fn test_plan(id: &str, classroom: &str, secs: i64) -> LessonPlan {
    let now = chrono::Utc::now();
    LessonPlan {
        id: id.into(),
        classroom_id: classroom.into(),
        series_id: None,
        date: None,
        period: None,
        title: "数学 · 李老师".into(),
        teacher: "李老师".into(),
        subject: "数学".into(),
        start: now,
        end: now + chrono::Duration::seconds(secs),
    }
}

#[test]
fn both_modes_record_and_the_programme_follows_the_director() -> anyhow::Result<()> {
    let dir = scratch_dir("lesson-both-modes");
    let cams = start_cameras(&CAMERAS);
    let microphone = SourceSpec {
        id: "mic".into(),
        role: None,
        label: "教师麦克风".into(),
        url: cams[0].url().into(),
    };
    let room = test_room("cls-test", &CAMERAS, &cams, Some(microphone), (2.0, 1.5));
    let plan = test_plan("les-test", "cls-test", 20);
    let lesson_dir = dir.join("les-test");
    let runner = LessonRunner::start(&room, plan, &lesson_dir)?;

    std::thread::sleep(Duration::from_secs(4));
    assert!(runner.event(Event::PupilStood));
    std::thread::sleep(Duration::from_secs(5));
    assert!(runner.event(Event::PupilSat));
    assert!(runner.event(Event::CoursewareActivity));
    std::thread::sleep(Duration::from_secs(4));
    let status = runner.status();
    assert_eq!(status.sources.len(), 5, "{status:?}");
    assert!(
        status.sources.iter().all(|s| s.state == "RECORDING"),
        "every source records: {status:?}"
    );
    assert!(status.programme_recording, "{status:?}");
    let preview = runner
        .preview(PROGRAMME)
        .expect("a programme preview exists");
    assert_eq!(&preview[..2], &[0xFF, 0xD8], "the preview is a JPEG");
    for (id, _, _, _) in CAMERAS {
        assert!(runner.preview(id).is_some(), "a preview of {id}");
    }
    assert!(
        !runner.event(Event::SourceLost(duet_recorder::director::SourceId(1))),
        "losses come from the supervisors, not from outside"
    );
    std::thread::sleep(Duration::from_secs(3));
    let manifest = runner.stop(true)?;

    assert_eq!(manifest.phase, LessonPhase::Finalized);
    let part = &manifest.parts[0];
    let shots: Vec<_> = part.cuts.iter().map(|c| c.shot.as_str()).collect();
    assert_eq!(
        shots,
        ["SINGLE(cam-pupil)", "PIP(screen+cam-teacher)"],
        "{:?}",
        part.cuts
    );

    // Movie mode: 1080p H.264 with AAC audio, as long as the part.
    let programme = lesson_dir.join(&part.programme.as_ref().unwrap().path);
    let info = probe(&programme)?;
    assert_eq!(info.video_codec, VideoCodec::H264);
    assert_eq!((info.width, info.height), (1920, 1080));
    let audio = info.audio.expect("the programme has audio");
    assert_eq!(audio.caps_name, "audio/mpeg");
    let wall = (part.ended_at.unwrap() - part.started_at).as_seconds_f64();
    let secs = info.duration.as_secs_f64();
    assert!(
        (secs - wall).abs() < 1.0,
        "programme {secs} s, part {wall} s"
    );

    // The pictures follow the cuts: pupils' panorama (green) opens, the pupil close-up (blue)
    // after the first cut, the courseware (white) with the teacher inset after the second.
    let frames = frame_colours(&programme);
    // (Just before the first cut: at the very start the cameras may still be connecting, black.)
    assert_eq!(on_air(&frames, part.cuts[0].at_s - 1.0), "green");
    assert_eq!(on_air(&frames, part.cuts[0].at_s + 1.0), "blue");
    assert_eq!(on_air(&frames, part.cuts[1].at_s + 1.0), "white");

    // Resource mode: every camera in its own H.264 file at its own size, and the microphone.
    for (id, _, _, _) in CAMERAS {
        let file = part
            .sources
            .iter()
            .find(|m| m.source_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} recorded"));
        let info = probe(&lesson_dir.join(&file.path))?;
        assert_eq!(info.video_codec, VideoCodec::H264, "{id}");
        assert_eq!((info.width, info.height), (640, 360), "{id}");
        assert!(
            (info.duration.as_secs_f64() - wall).abs() < 2.0,
            "{id}: {info:?}"
        );
    }
    let mic = part
        .sources
        .iter()
        .find(|m| m.source_id.as_deref() == Some("mic"))
        .expect("the microphone recorded");
    let mic_len = probe_duration(&lesson_dir.join(&mic.path))?.as_secs_f64();
    assert!((mic_len - wall).abs() < 2.0, "mic {mic_len} s");
    assert!(manifest.gaps.is_empty(), "{:?}", manifest.gaps);
    drop(cams);
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

/// A camera on air is unplugged for 10 s mid-lesson: the programme cuts away from it at once and
/// its picture carries the "signal lost" slate; the camera reconnects by itself into a second
/// segment; the programme never stops, and the gap is in the manifest.
#[test]
fn a_camera_lost_for_ten_seconds_gets_a_slate_and_the_recording_runs_on() -> anyhow::Result<()> {
    let dir = scratch_dir("lesson-camera-lost");
    let cams = start_cameras(&CAMERAS[..3]);
    // A static first minute: the opening (pupils' panorama) stays unless it is lost.
    let room = test_room("cls-lost", &CAMERAS[..3], &cams, None, (60.0, 1.5));
    let plan = test_plan("les-lost", "cls-lost", 30);
    let lesson_dir = dir.join("les-lost");
    let runner = LessonRunner::start(&room, plan, &lesson_dir)?;
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(runner.status().shot, "SINGLE(cam-pupils)");

    let pupils = &cams[1];
    pupils.pause()?;
    let lost_at = std::time::Instant::now();
    let mut saw_slate = false;
    while lost_at.elapsed() < Duration::from_secs(10) {
        let status = runner.status();
        if status.slates == ["cam-pupils"] {
            saw_slate = true;
            assert_ne!(
                status.shot, "SINGLE(cam-pupils)",
                "cut away from the lost camera"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(saw_slate, "the slate never covered the lost camera");
    pupils.resume()?;
    let back = std::time::Instant::now();
    while !runner.status().slates.is_empty() && back.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = runner.status();
    assert!(
        status.slates.is_empty(),
        "slate still on after the camera came back: {status:?}"
    );
    assert!(
        status.sources.iter().all(|s| s.state == "RECORDING"),
        "{status:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let manifest = runner.stop(true)?;

    let part = &manifest.parts[0];
    let wall = (part.ended_at.unwrap() - part.started_at).as_seconds_f64();
    let programme = probe(&lesson_dir.join(&part.programme.as_ref().unwrap().path))?;
    assert!(
        (programme.duration.as_secs_f64() - wall).abs() < 1.0,
        "the programme ran through the outage: {programme:?}, part {wall} s"
    );
    let segments = part
        .sources
        .iter()
        .filter(|m| m.source_id.as_deref() == Some("cam-pupils"))
        .count();
    assert_eq!(segments, 2, "{:?}", part.sources);
    let gap = manifest
        .gaps
        .iter()
        .find(|g| g.source_id.as_deref() == Some("cam-pupils"))
        .expect("the outage is a gap");
    let secs = (gap.to - gap.from).as_seconds_f64();
    assert!(
        (9.0..14.0).contains(&secs),
        "gap of {secs} s for a 10 s outage"
    );
    // The programme left the lost panorama: frames in the outage are not its green.
    let frames = frame_colours(&lesson_dir.join(&part.programme.as_ref().unwrap().path));
    let mid_outage = (gap.from - part.started_at).as_seconds_f64() + 3.0;
    assert_ne!(on_air(&frames, mid_outage), "green");
    drop(cams);
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

/// A device the recorder cannot use at all (a URL of no known kind) costs its own recording, not
/// the lesson's: the other camera and the programme record, the bad one is FAILED under its
/// slate, and the lesson's gaps say why for the whole part.
#[test]
fn an_unusable_device_does_not_cost_the_lesson() -> anyhow::Result<()> {
    let dir = scratch_dir("lesson-bad-device");
    let cams = start_cameras(&CAMERAS[..1]);
    let mut room = test_room("cls-bad", &CAMERAS[..1], &cams, None, (60.0, 1.5));
    room.sources.push(SourceSpec {
        id: "cam-broken".into(),
        role: Some(Role::PupilsWide),
        label: "学生全景".into(),
        url: "ftp://10.0.0.9/cam".into(),
    });
    let lesson_dir = dir.join("les-bad");
    let runner = LessonRunner::start(&room, test_plan("les-bad", "cls-bad", 10), &lesson_dir)?;
    std::thread::sleep(Duration::from_secs(4));
    let status = runner.status();
    let state = |id: &str| {
        status
            .sources
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.state.clone())
    };
    assert_eq!(
        state("cam-teacher").as_deref(),
        Some("RECORDING"),
        "{status:?}"
    );
    assert_eq!(state("cam-broken").as_deref(), Some("FAILED"), "{status:?}");
    assert_eq!(status.slates, ["cam-broken"]);
    assert_eq!(
        status.shot, "SINGLE(cam-teacher)",
        "never on air: {status:?}"
    );
    assert!(status.programme_recording, "{status:?}");
    let manifest = runner.stop(true)?;
    let part = &manifest.parts[0];
    assert!(
        part.sources
            .iter()
            .any(|m| m.source_id.as_deref() == Some("cam-teacher"))
    );
    let gap = manifest
        .gaps
        .iter()
        .find(|g| g.source_id.as_deref() == Some("cam-broken"))
        .expect("the broken device's gap");
    assert_eq!(gap.from, part.started_at);
    assert_eq!(Some(gap.to), part.ended_at);
    assert!(gap.reason.contains("ftp://"), "{}", gap.reason);
    drop(cams);
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
