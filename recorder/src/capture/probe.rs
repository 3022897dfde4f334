//! Reading back what a media file holds, with GStreamer's discoverer (gst-pbutils).
//!
//! Owns nothing: [`probe`] is one blocking call (bounded by [`PROBE_TIMEOUT`]) that opens the
//! file, reads its headers and returns [`MediaInfo`]. For a file cut off by a crash (Matroska
//! without its index) the discoverer's duration is an estimate that can be short by a second or
//! more; [`scan_duration`] demuxes the whole file (no decoding) and returns the end of the last
//! frame actually there. Used after a recording stops, by crash recovery, and by tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer_pbutils as pbutils;
use gstreamer_pbutils::prelude::*;

use super::CaptureError;

/// How long the discoverer may take for one file.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A video codec as the archive and the 晒课 export care about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VideoCodec {
    /// H.264 / AVC (`video/x-h264`).
    H264,
    /// H.265 / HEVC (`video/x-h265`).
    H265,
    /// Anything else, by its GStreamer caps name.
    Other(String),
}

impl VideoCodec {
    fn from_caps_name(name: &str) -> Self {
        match name {
            "video/x-h264" => Self::H264,
            "video/x-h265" => Self::H265,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// What [`probe`] found in a file (its first video stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// Media duration.
    pub duration: Duration,
    /// Codec of the first video stream.
    pub video_codec: VideoCodec,
    /// Width of the first video stream, in pixels.
    pub width: u32,
    /// Height of the first video stream, in pixels.
    pub height: u32,
    /// The first audio stream, if any.
    pub audio: Option<AudioInfo>,
}

/// The first audio stream of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInfo {
    /// GStreamer caps name, e.g. `audio/mpeg` (AAC).
    pub caps_name: String,
    /// Sample rate in Hz.
    pub rate: u32,
    /// Channels.
    pub channels: u32,
}

/// Runs the discoverer on `path`. Blocking (up to [`PROBE_TIMEOUT`]).
fn discover(path: &Path) -> Result<pbutils::DiscovererInfo, CaptureError> {
    let fail = |reason: String| CaptureError::Probe {
        path: path.to_owned(),
        reason,
    };
    gst::init().map_err(CaptureError::Init)?;
    let absolute: PathBuf = std::path::absolute(path).map_err(|e| fail(e.to_string()))?;
    let uri = glib::filename_to_uri(&absolute, None).map_err(|e| fail(e.to_string()))?;
    let discoverer = pbutils::Discoverer::new(
        gst::ClockTime::try_from(PROBE_TIMEOUT).expect("a 10 s timeout fits a ClockTime"),
    )
    .map_err(|e| fail(e.to_string()))?;
    discoverer
        .discover_uri(&uri)
        .map_err(|e| fail(e.to_string()))
}

/// Reads `path`'s duration alone, whatever streams it holds. Blocking (up to [`PROBE_TIMEOUT`]).
pub fn probe_duration(path: &Path) -> Result<Duration, CaptureError> {
    discover(path)?
        .duration()
        .map(Into::into)
        .ok_or_else(|| CaptureError::Probe {
            path: path.to_owned(),
            reason: "no duration".to_owned(),
        })
}

/// Reads `path`'s duration, video codec and frame size, and its audio stream if any. Blocking
/// (up to [`PROBE_TIMEOUT`]).
pub fn probe(path: &Path) -> Result<MediaInfo, CaptureError> {
    let fail = |reason: String| CaptureError::Probe {
        path: path.to_owned(),
        reason,
    };
    let info = discover(path)?;
    let duration = info
        .duration()
        .ok_or_else(|| fail("no duration".to_owned()))?;
    let video = info
        .video_streams()
        .into_iter()
        .next()
        .ok_or_else(|| fail("no video stream".to_owned()))?;
    let codec_name = video
        .caps()
        .and_then(|caps| caps.structure(0).map(|s| s.name().to_string()))
        .ok_or_else(|| fail("video stream without caps".to_owned()))?;
    let audio = info.audio_streams().into_iter().next().map(|a| AudioInfo {
        caps_name: a
            .caps()
            .and_then(|caps| caps.structure(0).map(|s| s.name().to_string()))
            .unwrap_or_default(),
        rate: a.sample_rate(),
        channels: a.channels(),
    });
    Ok(MediaInfo {
        duration: duration.into(),
        video_codec: VideoCodec::from_caps_name(&codec_name),
        width: video.width(),
        height: video.height(),
        audio,
    })
}

/// The end time of the last frame in `path` (largest PTS + duration over all streams), found by
/// demuxing the whole file without decoding it. Blocking (bounded by [`PROBE_TIMEOUT`]).
pub fn scan_duration(path: &Path) -> Result<Duration, CaptureError> {
    let fail = |reason: String| CaptureError::Probe {
        path: path.to_owned(),
        reason,
    };
    gst::init().map_err(CaptureError::Init)?;
    let make = |factory: &'static str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|_| CaptureError::MissingElement { factory })
    };
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path.to_string_lossy().as_ref())
        .build()
        .map_err(|_| CaptureError::MissingElement { factory: "filesrc" })?;
    let parse = make("parsebin")?;
    let pipeline = gst::Pipeline::with_name("scan-duration");
    pipeline
        .add_many([&src, &parse])
        .and_then(|()| src.link(&parse))
        .map_err(|e| fail(e.to_string()))?;

    // Largest end time seen, in nanoseconds; written from streaming threads.
    let end = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let pipeline_weak = pipeline.downgrade();
    let end_for_pads = std::sync::Arc::clone(&end);
    parse.connect_pad_added(move |_, pad| {
        let Some(pipeline) = pipeline_weak.upgrade() else {
            return;
        };
        let Ok(sink) = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .build()
        else {
            return;
        };
        let sink_pad = sink.static_pad("sink").expect("fakesink has a sink pad");
        let end = std::sync::Arc::clone(&end_for_pads);
        sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer()
                && let Some(pts) = buffer.pts()
            {
                let until = pts + buffer.duration().unwrap_or(gst::ClockTime::ZERO);
                end.fetch_max(until.nseconds(), std::sync::atomic::Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
        if pipeline.add(&sink).is_ok() {
            let _ = sink.sync_state_with_parent();
            let _ = pad.link(&sink_pad);
        }
    });

    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| fail(e.to_string()))?;
    let bus = pipeline.bus().expect("a pipeline always has a bus");
    let timeout = gst::ClockTime::try_from(PROBE_TIMEOUT).expect("a 10 s timeout fits a ClockTime");
    let result =
        match bus.timed_pop_filtered(timeout, &[gst::MessageType::Eos, gst::MessageType::Error]) {
            Some(msg) => match msg.view() {
                gst::MessageView::Eos(_) => Ok(()),
                gst::MessageView::Error(err) => Err(fail(err.error().to_string())),
                _ => unreachable!("filtered to EOS and errors"),
            },
            None => Err(fail(format!("no end of file within {PROBE_TIMEOUT:?}"))),
        };
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    Ok(Duration::from_nanos(
        end.load(std::sync::atomic::Ordering::Relaxed),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_an_error_not_a_panic() {
        let err = probe(Path::new("/nonexistent/duet-probe.mkv")).unwrap_err();
        assert!(matches!(err, CaptureError::Probe { .. }), "{err:?}");
    }
}
