//! A camera drops out in the middle of a lesson, against real GStreamer and a real RTSP server on
//! 127.0.0.1: the supervisor closes the segment, records the gap, reconnects with backoff into a
//! new segment, and stops promptly even while the camera is still gone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use duet_hardware::rtsp_sim::{RtspCameraSim, RtspSimConfig};
use duet_recorder::capture::supervisor::{
    Backoff, SourceSupervisor, SupervisorConfig, SupervisorState,
};
use duet_recorder::capture::{VideoCodec, probe};

/// The simulated camera's picture (small, to spare the CPU); every segment must carry it.
const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

/// How long the camera stays unplugged.
const OUTAGE: Duration = Duration::from_secs(10);

fn camera(label: &str) -> RtspCameraSim {
    let mut config = RtspSimConfig::new(0, label);
    config.width = WIDTH;
    config.height = HEIGHT;
    RtspCameraSim::start_with(config).expect("simulated camera starts")
}

/// A fresh directory under the target dir; a passing test removes it, a failing one leaves it.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Backoff capped at 1 s so that the reconnect lands within a second of the camera's return (the
/// default 4 s cap could overshoot the ±2 s the gap is checked against).
fn config() -> SupervisorConfig {
    SupervisorConfig {
        backoff: Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(1),
        },
        ..SupervisorConfig::default()
    }
}

#[test]
fn a_lost_camera_is_recorded_again_in_a_new_segment() -> anyhow::Result<()> {
    let cam = camera("教师全景 (teacher panorama)");
    let dir = scratch_dir("source-lost");
    let base = dir.join("teacher");

    let sup = SourceSupervisor::start(cam.url(), &base, config())?;
    assert!(
        sup.wait_recording(Duration::from_secs(10)),
        "{}",
        sup.state()
    );
    let lesson_start = Instant::now();
    std::thread::sleep(Duration::from_secs(3));

    cam.pause()?;
    let unplugged = Instant::now();
    let lost = sup.wait_for(Duration::from_secs(5), |s| {
        matches!(s, SupervisorState::Reconnecting { .. })
    });
    assert!(lost.is_some(), "loss not noticed: {}", sup.state());
    std::thread::sleep(OUTAGE.saturating_sub(unplugged.elapsed()));
    cam.resume()?;

    assert!(
        sup.wait_recording(Duration::from_secs(5)),
        "no reconnect: {}",
        sup.state()
    );
    std::thread::sleep(Duration::from_secs(3));
    let lesson = lesson_start.elapsed();
    let stopping = Instant::now();
    let rec = sup.stop();
    eprintln!(
        "lesson {lesson:?}, stop took {:?}: {rec:#?}",
        stopping.elapsed()
    );

    assert!(rec.segments.len() >= 2, "{rec:#?}");
    for (n, segment) in rec.segments.iter().enumerate() {
        assert_eq!(segment.path, dir.join(format!("teacher-{}.mkv", n + 1)));
        let info = probe(&segment.path)?;
        assert_eq!(
            info.video_codec,
            VideoCodec::H264,
            "{}",
            segment.path.display()
        );
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
    }
    assert_eq!(rec.gaps.len(), 1, "{rec:#?}");
    let gap = rec.gaps[0].duration().expect("the gap closed on reconnect");
    assert!(
        gap.abs_diff(OUTAGE) <= Duration::from_secs(2),
        "gap {gap:?} vs outage {OUTAGE:?}"
    );
    assert!(rec.restarts >= 1);
    let floor = lesson - OUTAGE - Duration::from_secs(2);
    assert!(
        rec.recorded() >= floor,
        "recorded {:?} < {floor:?}",
        rec.recorded()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn stopping_while_reconnecting_is_prompt_and_closes_the_gap() -> anyhow::Result<()> {
    let cam = camera("学生特写 (pupil close-up)");
    let dir = scratch_dir("source-lost-stop");

    let sup = SourceSupervisor::start(cam.url(), &dir.join("pupil"), config())?;
    assert!(
        sup.wait_recording(Duration::from_secs(10)),
        "{}",
        sup.state()
    );
    std::thread::sleep(Duration::from_secs(2));
    cam.pause()?;
    // Let a few attempts fail against the unplugged camera.
    let retrying = sup.wait_for(
        Duration::from_secs(8),
        |s| matches!(s, SupervisorState::Reconnecting { attempt, .. } if *attempt >= 3),
    );
    assert!(retrying.is_some(), "{}", sup.state());

    let stopping = Instant::now();
    let rec = sup.stop();
    let took = stopping.elapsed();
    eprintln!("stop while reconnecting took {took:?}: {rec:#?}");
    assert!(took <= Duration::from_secs(2), "stop took {took:?}");

    assert_eq!(rec.segments.len(), 1, "{rec:#?}");
    assert_eq!(rec.gaps.len(), 1, "{rec:#?}");
    let gap = &rec.gaps[0];
    let to = gap.to.expect("stop closes the open gap");
    assert!(to > gap.from, "{gap:?}");
    assert!(rec.restarts >= 2, "{rec:#?}");
    // Failed attempts leave no files behind: only the one segment.
    let files = std::fs::read_dir(&dir)?.count();
    assert_eq!(files, 1, "stray files in {}", dir.display());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
