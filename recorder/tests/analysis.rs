//! Speech activity measured from real encoded files: a WAV with a known speech pattern is
//! encoded with GStreamer (Opus in WebM as the live recorder's tracks are, AAC in MP4), then
//! `speech_segments` must find the pattern: every edge within ±200 ms, total speech within 5 %.
//! A track whose audio starts late or has a hole must give segments on the file's timeline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use duet_recorder::analysis::{AnalysisError, speech_segments, synth};
use gstreamer as gst;
use gstreamer::prelude::*;

const PATTERN: [(bool, u32); 9] = [
    (false, 1200),
    (true, 2600),
    (false, 900),
    (true, 1500),
    (false, 2200),
    (true, 5200),
    (false, 700),
    (true, 900),
    (false, 1500),
];

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("duet-analysis-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `launch` (constant; `src` and `sink` named elements get the paths) to its end.
fn encode(launch: &str, wav: &Path, out: &Path, shift: Option<Shift>) -> Result<()> {
    gst::init()?;
    let pipeline = gst::parse::launch(launch)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let by_name = |name: &str| pipeline.by_name(name).with_context(|| format!("no {name}"));
    by_name("src")?.set_property("location", wav.to_string_lossy().as_ref());
    by_name("sink")?.set_property("location", out.to_string_lossy().as_ref());
    if let Some(shift) = shift {
        let pad = by_name("shift")?.static_pad("src").context("no src pad")?;
        let jumped = Arc::new(AtomicBool::new(false));
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer_mut()
                && let Some(pts) = buffer.pts()
            {
                let late = pts.mseconds() >= shift.gap_at_ms;
                let offset = shift.start_ms + if late { shift.gap_ms } else { 0 };
                let buffer = buffer.make_mut();
                buffer.set_pts(pts + gst::ClockTime::from_mseconds(offset));
                if late && !jumped.swap(true, Ordering::SeqCst) {
                    buffer.set_flags(gst::BufferFlags::DISCONT);
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().context("no bus")?;
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .context("encoding timed out")?;
    pipeline.set_state(gst::State::Null)?;
    if let gst::MessageView::Error(err) = msg.view() {
        bail!("encoding failed: {} ({:?})", err.error(), err.debug());
    }
    Ok(())
}

/// Moves the audio on the timeline while encoding: all of it by `start_ms`, and what comes at
/// or after `gap_at_ms` (input time) by `gap_ms` more.
#[derive(Clone, Copy)]
struct Shift {
    start_ms: u64,
    gap_at_ms: u64,
    gap_ms: u64,
}

const WEBM: &str = "filesrc name=src ! wavparse ! audioconvert ! audioresample name=shift \
                    ! opusenc ! webmmux ! filesink name=sink";
const MP4: &str = "filesrc name=src ! wavparse ! audioconvert ! audioresample name=shift \
                   ! avenc_aac ! aacparse ! mp4mux ! filesink name=sink";

/// Every edge within ±200 ms, total speech within 5 %.
fn assert_matches(got: &[[u64; 2]], expected: &[[u64; 2]]) {
    assert_eq!(
        got.len(),
        expected.len(),
        "got {got:?}, expected {expected:?}"
    );
    for (g, e) in got.iter().zip(expected) {
        assert!(
            g[0].abs_diff(e[0]) <= 200 && g[1].abs_diff(e[1]) <= 200,
            "got {got:?}, expected {expected:?}"
        );
    }
    let total = |s: &[[u64; 2]]| s.iter().map(|s| s[1] - s[0]).sum::<u64>() as f64;
    let (got_total, expected_total) = (total(got), total(expected));
    assert!(
        (got_total - expected_total).abs() <= 0.05 * expected_total,
        "{got_total} ms of speech found, {expected_total} ms spoken"
    );
}

#[test]
fn a_speech_pattern_survives_opus_in_webm() -> Result<()> {
    let dir = temp_dir("webm");
    let (wav, webm) = (dir.join("pattern.wav"), dir.join("track.webm"));
    synth::write_speech_pattern_wav(&wav, &PATTERN, 42)?;
    encode(WEBM, &wav, &webm, None)?;
    assert_matches(&speech_segments(&webm)?, &synth::pattern_segments(&PATTERN));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn a_speech_pattern_survives_aac_in_mp4() -> Result<()> {
    let dir = temp_dir("mp4");
    let (wav, mp4) = (dir.join("pattern.wav"), dir.join("track.mp4"));
    synth::write_speech_pattern_wav(&wav, &PATTERN, 7)?;
    encode(MP4, &wav, &mp4, None)?;
    assert_matches(&speech_segments(&mp4)?, &synth::pattern_segments(&PATTERN));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn late_audio_and_a_hole_keep_the_file_timeline() -> Result<()> {
    let dir = temp_dir("shifted");
    let (wav, webm) = (dir.join("pattern.wav"), dir.join("track.webm"));
    synth::write_speech_pattern_wav(&wav, &PATTERN, 5)?;
    // Audio from 2 s on; a 3 s hole in the silence between the 2nd and 3rd speech (at 6.5 s of
    // pattern time).
    let shift = Shift {
        start_ms: 2000,
        gap_at_ms: 6500,
        gap_ms: 3000,
    };
    encode(WEBM, &wav, &webm, Some(shift))?;
    let expected: Vec<[u64; 2]> = synth::pattern_segments(&PATTERN)
        .iter()
        .map(|s| {
            s.map(|t| {
                t + shift.start_ms
                    + if t >= shift.gap_at_ms {
                        shift.gap_ms
                    } else {
                        0
                    }
            })
        })
        .collect();
    assert_matches(&speech_segments(&webm)?, &expected);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn video_is_skipped_and_files_without_audio_are_named() -> Result<()> {
    let dir = temp_dir("video");
    gst::init()?;
    // Video with a steady tone: decodes (video left encoded), and a tone is not speech.
    let av = dir.join("av.mp4");
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=50 ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc ! h264parse ! mp4mux name=mux ! filesink name=sink \
         audiotestsrc num-buffers=94 ! audioconvert ! avenc_aac ! aacparse ! mux.",
    )?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    run_to_eos(&pipeline, &av)?;
    assert_eq!(speech_segments(&av)?, Vec::<[u64; 2]>::new());

    let video_only = dir.join("video.mp4");
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=25 ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc ! h264parse ! mp4mux ! filesink name=sink",
    )?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    run_to_eos(&pipeline, &video_only)?;
    let err = speech_segments(&video_only).unwrap_err();
    assert!(matches!(err, AnalysisError::NoAudio { .. }), "{err:?}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn run_to_eos(pipeline: &gst::Pipeline, out: &Path) -> Result<()> {
    pipeline
        .by_name("sink")
        .context("no sink")?
        .set_property("location", out.to_string_lossy().as_ref());
    pipeline.set_state(gst::State::Playing)?;
    let msg = pipeline
        .bus()
        .context("no bus")?
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .context("timed out")?;
    pipeline.set_state(gst::State::Null)?;
    if let gst::MessageView::Error(err) = msg.view() {
        bail!("{} ({:?})", err.error(), err.debug());
    }
    Ok(())
}
