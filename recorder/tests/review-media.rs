//! What the review page plays and shows, made from a real H.264 + AAC MP4 (encoded here with
//! GStreamer): the poster and storyboard JPEGs decode and have the sizes and tile count
//! described, and the fMP4 HLS playlist lists segments that exist and add up to the video.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use duet_recorder::post::{hls, thumbs};
use gstreamer as gst;
use gstreamer::prelude::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("duet-review-media-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs a constant launch line whose `sink` element writes `out`, to its end.
fn run(launch: &str, out: &Path) -> Result<()> {
    gst::init()?;
    let pipeline = gst::parse::launch(launch)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    if let Some(sink) = pipeline.by_name("sink") {
        sink.set_property("location", out.to_string_lossy().as_ref());
    }
    if let Some(src) = pipeline.by_name("src") {
        src.set_property("location", out.to_string_lossy().as_ref());
    }
    pipeline.set_state(gst::State::Playing)?;
    let msg = pipeline
        .bus()
        .context("no bus")?
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .context("timed out")?;
    pipeline.set_state(gst::State::Null)?;
    if let gst::MessageView::Error(err) = msg.view() {
        bail!("{} ({:?})", err.error(), err.debug());
    }
    Ok(())
}

/// A 10 s 640×360 H.264 (a keyframe every second) + AAC MP4.
fn make_mp4(path: &Path) -> Result<()> {
    run(
        "videotestsrc num-buffers=250 pattern=ball \
           ! video/x-raw,format=I420,width=640,height=360,framerate=25/1 \
           ! x264enc key-int-max=25 speed-preset=ultrafast ! h264parse ! mp4mux name=mux \
           ! filesink name=sink \
         audiotestsrc num-buffers=469 samplesperbuffer=1024 ! audio/x-raw,rate=48000 \
           ! audioconvert ! avenc_aac ! aacparse ! mux.",
        path,
    )
}

/// The width and height in a baseline or progressive JPEG's SOF header; checks SOI and EOI.
fn jpeg_size(bytes: &[u8]) -> Result<(u32, u32)> {
    if !bytes.starts_with(&[0xFF, 0xD8]) || !bytes.ends_with(&[0xFF, 0xD9]) {
        bail!("no JPEG SOI/EOI");
    }
    let mut at = 2;
    while at + 9 < bytes.len() {
        if bytes[at] != 0xFF {
            bail!("JPEG marker expected at {at}");
        }
        let marker = bytes[at + 1];
        let len = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        if matches!(marker, 0xC0..=0xC2) {
            let h = u16::from_be_bytes([bytes[at + 5], bytes[at + 6]]);
            let w = u16::from_be_bytes([bytes[at + 7], bytes[at + 8]]);
            return Ok((u32::from(w), u32::from(h)));
        }
        at += 2 + len;
    }
    bail!("no SOF marker")
}

#[test]
fn poster_and_storyboard_decode_with_the_described_tiles() -> Result<()> {
    let dir = temp_dir("thumbs");
    let mp4 = dir.join("review.mp4");
    make_mp4(&mp4)?;
    let out = dir.join("thumbs");
    let board = thumbs::poster_and_storyboard(&mp4, &out, 700, 160)?;
    assert_eq!(board.count, 15, "ceil(10 s / 0.7 s) tiles: {board:?}");
    assert_eq!(board.columns, 10);
    assert_eq!((board.tile_width, board.tile_height), (160, 90));
    assert_eq!(board.interval_ms, 700);

    let poster = std::fs::read(out.join(&board.poster))?;
    assert_eq!(jpeg_size(&poster)?, (640, 360));
    let sprite = std::fs::read(out.join(&board.file))?;
    assert_eq!(jpeg_size(&sprite)?, (10 * 160, 2 * 90));
    for file in [&board.poster, &board.file] {
        // GStreamer's decoder must read them to the end without an error.
        run(
            "filesrc name=src ! jpegdec ! fakesink",
            &out.join(file.as_str()),
        )?;
    }
    // The contract's `media.storyboard`, exactly.
    let json = serde_json::to_value(&board)?;
    assert_eq!(
        json,
        serde_json::json!({"file": "storyboard.jpg", "interval_ms": 700, "columns": 10,
            "tile_width": 160, "tile_height": 90, "count": 15})
    );

    let err = thumbs::poster_and_storyboard(&dir.join("missing.mp4"), &out, 1000, 160);
    assert!(
        matches!(err, Err(thumbs::ThumbsError::Media { .. })),
        "{err:?}"
    );
    let err = thumbs::poster_and_storyboard(&mp4, &out, 1, 160);
    assert!(
        matches!(err, Err(thumbs::ThumbsError::Invalid { .. })),
        "{err:?}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn hls_segments_exist_and_add_up_to_the_video() -> Result<()> {
    let dir = temp_dir("hls");
    let mp4 = dir.join("review.mp4");
    make_mp4(&mp4)?;
    let out = dir.join("hls");
    let info = hls::package_hls(&mp4, &out, 2)?;
    assert!(
        (info.duration_s - 10.0).abs() <= 0.5,
        "segments last {} s: {info:?}",
        info.duration_s
    );
    assert!(info.segments.len() >= 4, "{info:?}");
    for segment in &info.segments {
        assert!(segment.duration_s <= 2.5, "{info:?}");
        let bytes = std::fs::read(out.join(&segment.file))?;
        // An fMP4 media segment: a styp or moof box first.
        assert!(
            matches!(&bytes[4..8], b"styp" | b"moof"),
            "{}",
            segment.file
        );
    }
    let init = std::fs::read(out.join(&info.init))?;
    assert_eq!(&init[4..8], b"ftyp");
    let playlist = std::fs::read_to_string(out.join(&info.playlist))?;
    assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{playlist}");
    assert!(
        playlist.contains("#EXT-X-MAP:URI=\"init.mp4\""),
        "{playlist}"
    );

    // Stream copy: FFmpeg reads the playlist back as H.264 and AAC, as long as the input.
    let probe = duet_recorder::delivery::package::probe_media(&out.join(&info.playlist))?;
    let codecs: Vec<&str> = probe.streams.iter().map(|s| s.codec.as_str()).collect();
    assert_eq!(codecs, ["h264", "aac"], "{probe:?}");
    assert!(
        (probe.duration.as_secs_f64() - 10.0).abs() <= 0.5,
        "{probe:?}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
