//! Resource mode (资源模式) against real GStreamer and a real RTSP server on 127.0.0.1: a
//! simulated camera is recorded to Matroska without transcoding, and the file is read back.
//!
//! `recording_survives_kill` re-executes this test binary as a child that records until it is
//! killed (`SIGKILL`), selected by the `DUET_RECORD_UNTIL_KILLED` environment variable; in a normal
//! run the `child_record_until_killed` entry point returns at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use duet_hardware::rtsp_sim::{RtspCameraSim, RtspSimConfig};
use duet_recorder::capture::{
    CaptureError, Ending, SourceRecorder, VideoCodec, probe, scan_duration,
};

/// Selects the child mode: `<rtsp url>\n<output path>`.
const CHILD_ENV: &str = "DUET_RECORD_UNTIL_KILLED";

/// The simulated camera's picture; the file must carry exactly this size.
const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

fn camera(label: &str) -> RtspCameraSim {
    let mut config = RtspSimConfig::new(0, label);
    config.width = WIDTH;
    config.height = HEIGHT;
    RtspCameraSim::start_with(config).expect("simulated camera starts")
}

/// A fresh directory under the target dir; a passing test removes it, a failing one leaves it
/// for inspection.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn records_a_camera_without_transcoding() -> anyhow::Result<()> {
    let cam = camera("教师特写 (teacher close-up)");
    let path = scratch_dir("resource-mode").join("teacher.mkv");

    let started = Instant::now();
    let recorder = SourceRecorder::start(cam.url(), &path)?;
    recorder.wait_recording(Duration::from_secs(10))?;
    assert!(recorder.is_running());
    std::thread::sleep(Duration::from_secs(6));
    let file = recorder.stop()?;
    eprintln!("recorded {:?} in {:?}", file.duration, started.elapsed());

    assert_eq!(file.ending, Ending::Stopped, "EOS should reach the file");
    assert_eq!(file.path, path);
    let info = probe(&path)?;
    assert_eq!(info.duration, file.duration);
    let scanned = scan_duration(&path)?;
    assert!(
        scanned.abs_diff(info.duration) <= Duration::from_millis(100),
        "index says {:?}, frames end at {scanned:?}",
        info.duration
    );
    assert!(
        info.duration.abs_diff(Duration::from_secs(6)) <= Duration::from_secs(1),
        "duration {:?} not 6 s ± 1 s",
        info.duration
    );
    assert_eq!(info.video_codec, VideoCodec::H264);
    assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
    std::fs::remove_dir_all(path.parent().expect("scratch dir"))?;
    Ok(())
}

#[test]
fn an_unreachable_source_fails_with_a_typed_error() -> anyhow::Result<()> {
    // Bind and drop a listener: the port is then (almost certainly) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let path = scratch_dir("resource-mode-unreachable").join("none.mkv");
    let recorder = SourceRecorder::start(&format!("rtsp://u:secret@127.0.0.1:{port}/cam"), &path)?;
    let err = recorder
        .wait_recording(Duration::from_secs(10))
        .expect_err("nothing listens there");
    assert!(matches!(err, CaptureError::Source { .. }), "{err:?}");
    assert!(
        !err.to_string().contains("secret"),
        "credentials leaked: {err}"
    );
    assert!(!recorder.is_running());
    assert!(matches!(recorder.stop(), Err(CaptureError::Source { .. })));
    std::fs::remove_dir_all(path.parent().expect("scratch dir"))?;
    Ok(())
}

#[test]
fn an_unplugged_camera_ends_the_recording_and_keeps_the_file() -> anyhow::Result<()> {
    let cam = camera("板书 (blackboard)");
    let dir = scratch_dir("resource-mode-unplug");

    let recorder = SourceRecorder::start(cam.url(), &dir.join("before.mkv"))?;
    recorder.wait_recording(Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_secs(2));
    cam.pause()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while recorder.is_running() {
        assert!(
            Instant::now() < deadline,
            "recorder did not notice the unplug"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let file = recorder.stop()?;
    eprintln!("unplugged after {:?}: {:?}", file.duration, file.ending);
    assert!(!matches!(file.ending, Ending::Stopped), "{:?}", file.ending);
    assert!(
        file.duration >= Duration::from_secs(1),
        "{:?}",
        file.duration
    );

    // While unplugged, nothing can be recorded; plugged back in, a new recording works.
    let refused = SourceRecorder::start(cam.url(), &dir.join("unplugged.mkv"))?;
    assert!(refused.wait_recording(Duration::from_secs(10)).is_err());
    drop(refused);
    cam.resume()?;
    let again = SourceRecorder::start(cam.url(), &dir.join("after.mkv"))?;
    again.wait_recording(Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(again.stop()?.ending, Ending::Stopped);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn recording_survives_kill() -> anyhow::Result<()> {
    let cam = camera("学生全景 (pupils' panorama)");
    let path = scratch_dir("resource-mode-kill").join("pupils.mkv");

    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "child_record_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}\n{}", cam.url(), path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;

    // Wait for the first frame on disk (the file grows past its headers), then ~5 s more.
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::fs::metadata(&path).map_or(true, |m| m.len() < 4096) {
        assert!(Instant::now() < deadline, "child never started recording");
        assert!(child.try_wait()?.is_none(), "child exited before the kill");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(5));
    child.kill()?; // SIGKILL: no EOS, no index, no flush beyond what was written
    let status = child.wait()?;
    assert!(
        !status.success(),
        "child should die by the signal, got {status}"
    );

    // Readable: the discoverer finds the stream (its duration is only an estimate without the
    // index), and every frame written before the kill demuxes.
    let info = probe(&path)?;
    let survived = scan_duration(&path)?;
    eprintln!("after kill -9: {survived:?} of frames; discoverer: {info:?}");
    assert!(
        survived >= Duration::from_secs(3),
        "only {survived:?} survived the kill"
    );
    assert_eq!(info.video_codec, VideoCodec::H264);
    assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
    std::fs::remove_dir_all(path.parent().expect("scratch dir"))?;
    Ok(())
}

/// The child side of `recording_survives_kill`: records until the parent kills it. Returns at once
/// unless [`CHILD_ENV`] is set.
#[test]
fn child_record_until_killed() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (url, path) = spec.split_once('\n').expect("url\\npath");
    let recorder = SourceRecorder::start(url, Path::new(path)).expect("child starts recording");
    // Bounded even if the parent dies without killing us.
    std::thread::sleep(Duration::from_secs(60));
    drop(recorder);
    panic!("child was not killed within 60 s");
}

/// A test-pattern source (and so a V4L2 capture, which takes the same path) is encoded to H.264
/// here and recorded like a camera; a URL of no known kind is refused before anything starts.
#[test]
fn a_raw_source_is_encoded_and_recorded_and_unknown_urls_are_refused() -> anyhow::Result<()> {
    let dir = scratch_dir("raw-source");
    let path = dir.join("pattern.mkv");
    let rec = SourceRecorder::start("test://smpte", &path)?;
    rec.wait_recording(Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_secs(2));
    let file = rec.stop()?;
    let info = probe(&file.path)?;
    assert_eq!(info.video_codec, VideoCodec::H264);
    assert!(info.duration >= Duration::from_secs(1), "{info:?}");

    for url in [
        "ftp://10.0.0.2/cam",
        "test://no-such-pattern",
        "v4l2://video0",
    ] {
        let err = SourceRecorder::start(url, &dir.join("never.mkv")).unwrap_err();
        assert!(matches!(err, CaptureError::Config { .. }), "{url}: {err:?}");
    }
    // A capture card that is not there: a typed error, no panic, no frames.
    let missing = SourceRecorder::start("v4l2:///dev/video-duet-none", &dir.join("none.mkv"));
    if let Ok(rec) = missing {
        assert!(rec.wait_recording(Duration::from_secs(5)).is_err());
        assert!(rec.stop().is_err(), "no frames, no recording");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
