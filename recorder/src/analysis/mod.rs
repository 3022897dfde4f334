//! Speech activity measured from the audio itself: who spoke when, for S-T analysis and the
//! teacher-talk / pupil-talk shares of a live lesson.
//!
//! - [`vad`]: the voice activity detector, pure and sans-IO (mono 16 kHz PCM → segments).
//! - this module: the GStreamer shell, [`speech_segments`]: any audio file GStreamer can read
//!   (WebM/Opus as the live recorder writes its tracks, MP4/AAC, WAV …) decoded and fed to the
//!   detector.
//! - [`synth`]: test audio with a known speech/silence pattern (also Chromium's fake microphone).
//!
//! [`speech_segments`] blocks until the file is decoded (a 45-minute track takes seconds): call
//! it from a thread of yours or `spawn_blocking`. The discoverer reads the headers first (a
//! file that is not media or has no audio fails there, within [`DISCOVER_TIMEOUT`]); then the
//! pipeline is
//!
//! ```text
//! uridecodebin (video decoders skipped: video streams go undecoded to a fakesink)
//!   ! audioconvert ! audioresample ! audio/x-raw,format=F32LE,channels=1,rate=16000 ! appsink
//! ```
//!
//! and the detector runs on GStreamer's streaming thread, inside the appsink's `new-sample`
//! callback; the caller's thread only waits on the bus for the end of the stream or an error.
//!
//! Timeline: segments are on the **file's** timeline, not "ms of audio decoded". Each buffer is
//! placed by its timestamp (PTS, i.e. the container's timestamps: not rebased to the first
//! one, as a demuxer's stream time may be): a track whose audio starts 2 s into the file
//! gives segments from 2 s on, and a hole in the audio (a network outage in a remuxed RTP track)
//! is silence of its real length, so later segments keep their place. Only the first audio stream
//! of a file is analysed.

pub mod synth;
pub mod vad;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_pbutils as pbutils;

use vad::{SAMPLE_RATE, Vad, VadConfig};

/// How long reading a file's headers may take.
pub const DISCOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long decoding one file may take before [`speech_segments`] gives up.
pub const DECODE_TIMEOUT: Duration = Duration::from_secs(600);

/// A buffer that starts more than this many samples (20 ms) after the previous one ended opens
/// a gap; smaller differences are rounding.
const GAP_TOLERANCE: u64 = (SAMPLE_RATE / 50) as u64;

/// What went wrong measuring speech or writing test audio.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    /// GStreamer could not be initialised.
    #[error("GStreamer init failed: {0}")]
    Init(#[source] glib::Error),
    /// A GStreamer element is not installed.
    #[error("GStreamer element {factory} is missing")]
    MissingElement {
        /// The factory name.
        factory: &'static str,
    },
    /// The file does not exist (or is not a regular file).
    #[error("{path}: no such file")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// GStreamer could not read or decode the file (not media, damaged, no decoder).
    #[error("cannot decode {path}: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// GStreamer's error.
        reason: String,
    },
    /// The file holds no audio stream.
    #[error("{path} holds no audio stream")]
    NoAudio {
        /// The file.
        path: PathBuf,
    },
    /// Decoding did not finish within [`DECODE_TIMEOUT`].
    #[error("decoding {path} did not finish within {timeout:?}")]
    Timeout {
        /// The file.
        path: PathBuf,
        /// The limit.
        timeout: Duration,
    },
    /// A speech pattern for [`synth`] that cannot be written.
    #[error("invalid speech pattern: {reason}")]
    Pattern {
        /// Why.
        reason: String,
    },
}

/// Speech segments `[from_ms, to_ms]` of the first audio stream of the file at `path`, on the
/// file's timeline, with the default detector thresholds. Blocking (see the module doc).
pub fn speech_segments(path: &Path) -> Result<Vec<[u64; 2]>, AnalysisError> {
    speech_segments_with(path, VadConfig::default())
}

/// [`speech_segments`] with the detector thresholds `config`.
pub fn speech_segments_with(
    path: &Path,
    config: VadConfig,
) -> Result<Vec<[u64; 2]>, AnalysisError> {
    let decode = |reason: String| AnalysisError::Decode {
        path: path.to_owned(),
        reason,
    };
    if !path.is_file() {
        return Err(AnalysisError::Missing {
            path: path.to_owned(),
        });
    }
    gst::init().map_err(AnalysisError::Init)?;
    let absolute = std::path::absolute(path).map_err(|source| AnalysisError::Io {
        path: path.to_owned(),
        source,
    })?;
    let uri = glib::filename_to_uri(&absolute, None).map_err(|e| decode(e.to_string()))?;

    // The headers first (bounded by DISCOVER_TIMEOUT): a file that is not media, or has no
    // audio, fails here with a clear error, instead of a decoding pipeline that would wait
    // forever for audio that never comes.
    let discoverer = pbutils::Discoverer::new(
        gst::ClockTime::try_from(DISCOVER_TIMEOUT).expect("a 10 s timeout fits a ClockTime"),
    )
    .map_err(|e| decode(e.to_string()))?;
    let info = discoverer
        .discover_uri(&uri)
        .map_err(|e| decode(e.to_string()))?;
    if info.audio_streams().is_empty() {
        return Err(AnalysisError::NoAudio {
            path: path.to_owned(),
        });
    }

    let make = |factory: &'static str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|_| AnalysisError::MissingElement { factory })
    };
    let source = gst::ElementFactory::make("uridecodebin")
        .property("uri", uri.as_str())
        .build()
        .map_err(|_| AnalysisError::MissingElement {
            factory: "uridecodebin",
        })?;
    let convert = make("audioconvert")?;
    let resample = make("audioresample")?;
    let caps = gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("layout", "interleaved")
        .field("channels", 1i32)
        .field("rate", SAMPLE_RATE as i32)
        .build();
    let filter = gst::ElementFactory::make("capsfilter")
        .property("caps", &caps)
        .build()
        .map_err(|_| AnalysisError::MissingElement {
            factory: "capsfilter",
        })?;
    let sink = gst::ElementFactory::make("appsink")
        .property("sync", false)
        .property("emit-signals", true)
        .build()
        .map_err(|_| AnalysisError::MissingElement { factory: "appsink" })?;

    let pipeline = gst::Pipeline::with_name("speech-segments");
    let _null = NullOnDrop(pipeline.clone());
    pipeline
        .add_many([&source, &convert, &resample, &filter, &sink])
        .and_then(|()| gst::Element::link_many([&convert, &resample, &filter, &sink]))
        .map_err(|e| decode(e.to_string()))?;

    skip_video_decoders(&source);
    let audio_linked = Arc::new(AtomicBool::new(false));
    link_first_audio_pad(&source, &pipeline, &convert, Arc::clone(&audio_linked));

    let state = Arc::new(Mutex::new(Feed {
        vad: Vad::new(config),
    }));
    let feed = Arc::clone(&state);
    sink.connect("new-sample", false, move |args| {
        let flow = args
            .first()
            .and_then(|v| v.get::<gst::Element>().ok())
            .and_then(|sink| sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]))
            .map_or(gst::FlowReturn::Eos, |sample| {
                // A poisoned lock means a panic on this thread before: stop the stream.
                match feed.lock() {
                    Ok(mut feed) => {
                        feed.sample(&sample);
                        gst::FlowReturn::Ok
                    }
                    Err(_) => gst::FlowReturn::Error,
                }
            });
        Some(flow.to_value())
    });

    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| decode(format!("cannot start: {e}")))?;
    let bus = pipeline.bus().expect("a pipeline always has a bus");
    let timeout = gst::ClockTime::try_from(DECODE_TIMEOUT).expect("600 s fits a ClockTime");
    match bus.timed_pop_filtered(timeout, &[gst::MessageType::Eos, gst::MessageType::Error]) {
        Some(msg) => match msg.view() {
            gst::MessageView::Eos(_) => {}
            gst::MessageView::Error(err) => {
                return Err(decode(match err.debug() {
                    Some(debug) => format!("{} ({debug})", err.error()),
                    None => err.error().to_string(),
                }));
            }
            _ => unreachable!("filtered to EOS and errors"),
        },
        None => {
            return Err(AnalysisError::Timeout {
                path: path.to_owned(),
                timeout: DECODE_TIMEOUT,
            });
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    if !audio_linked.load(Ordering::SeqCst) {
        return Err(AnalysisError::NoAudio {
            path: path.to_owned(),
        });
    }
    // The appsink's callback still holds `state` (the pipeline outlives this function's end):
    // take the detector out.
    let mut feed = state
        .lock()
        .map_err(|_| decode("the detector panicked".to_owned()))?;
    let vad = std::mem::replace(&mut feed.vad, Vad::new(VadConfig::default()));
    Ok(vad.finish())
}

/// The detector and where its input stands, shared with the streaming thread.
struct Feed {
    /// The detector.
    vad: Vad,
}

impl Feed {
    /// Places `sample`'s audio on the file timeline (by its timestamp) and feeds it.
    fn sample(&mut self, sample: &gst::Sample) {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        if let Some(pts) = buffer.pts() {
            let start = pts.nseconds() * u64::from(SAMPLE_RATE) / 1_000_000_000;
            let next = self.vad.position();
            if start > next + GAP_TOLERANCE {
                self.vad.skip(start - next);
            }
        }
        let Ok(map) = buffer.map_readable() else {
            return;
        };
        let samples: Vec<f32> = map
            .as_slice()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        self.vad.push(&samples);
    }
}

/// Makes `uridecodebin` expose video (and image) streams still encoded instead of decoding
/// them: the analysis needs only the audio, and decoding 45 minutes of video would cost minutes.
fn skip_video_decoders(decodebin: &gst::Element) {
    // `GstAutoplugSelectResult` (TRY = 0, EXPOSE = 1) is registered by the decodebin family's
    // class init, done once the element exists. Values are made per call: a `Value` is not Sync.
    let Some(results) = glib::Type::from_name("GstAutoplugSelectResult") else {
        return;
    };
    let value = move |n: i32| glib::EnumClass::with_type(results).and_then(|c| c.to_value(n));
    if value(0).is_none() || value(1).is_none() {
        return;
    }
    decodebin.connect("autoplug-select", false, move |args| {
        let video_decoder = args
            .get(3)
            .and_then(|v| v.get::<gst::ElementFactory>().ok())
            .and_then(|f| f.metadata(gst::ELEMENT_METADATA_KLASS).map(str::to_owned))
            .is_some_and(|klass| {
                klass.contains("Decoder") && (klass.contains("Video") || klass.contains("Image"))
            });
        value(i32::from(video_decoder))
    });
}

/// Links the first raw audio pad `decodebin` adds to `audio_in`; every other pad (more audio
/// streams, undecoded video) ends in a fakesink so it cannot stall the demuxer.
fn link_first_audio_pad(
    decodebin: &gst::Element,
    pipeline: &gst::Pipeline,
    audio_in: &gst::Element,
    audio_linked: Arc<AtomicBool>,
) {
    let pipeline = pipeline.downgrade();
    let audio_in = audio_in.downgrade();
    decodebin.connect_pad_added(move |_, pad| {
        let (Some(pipeline), Some(audio_in)) = (pipeline.upgrade(), audio_in.upgrade()) else {
            return;
        };
        let is_audio = pad
            .current_caps()
            .and_then(|caps| {
                caps.structure(0)
                    .map(|s| s.name().starts_with("audio/x-raw"))
            })
            .unwrap_or(false);
        if is_audio && !audio_linked.swap(true, Ordering::SeqCst) {
            if let Some(sink_pad) = audio_in.static_pad("sink")
                && pad.link(&sink_pad).is_ok()
            {
                return;
            }
            audio_linked.store(false, Ordering::SeqCst);
        }
        let Ok(fakesink) = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .build()
        else {
            return;
        };
        if pipeline.add(&fakesink).is_ok() {
            let _ = fakesink.sync_state_with_parent();
            if let Some(sink_pad) = fakesink.static_pad("sink") {
                let _ = pad.link(&sink_pad);
            }
        }
    });
}

/// Sets the pipeline to `Null` however the function holding it returns.
struct NullOnDrop(gst::Pipeline);

impl Drop for NullOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_a_typed_error() {
        let err = speech_segments(Path::new("/nonexistent/duet-vad.webm")).unwrap_err();
        assert!(matches!(err, AnalysisError::Missing { .. }), "{err:?}");
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("duet-vad-garbage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("garbage.webm");
        std::fs::write(&path, b"\x1a\x45\xdf\xa3 definitely not a webm file").unwrap();
        let err = speech_segments(&path).unwrap_err();
        assert!(matches!(err, AnalysisError::Decode { .. }), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_wav_pattern_is_found() {
        let dir = std::env::temp_dir().join(format!("duet-vad-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pattern.wav");
        let pattern = [
            (false, 1000),
            (true, 2500),
            (false, 1500),
            (true, 1000),
            (false, 800),
        ];
        synth::write_speech_pattern_wav(&path, &pattern, 11).unwrap();
        let got = speech_segments(&path).unwrap();
        let expected = synth::pattern_segments(&pattern);
        assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
        for (g, e) in got.iter().zip(&expected) {
            assert!(
                g[0].abs_diff(e[0]) <= 150 && g[1].abs_diff(e[1]) <= 150,
                "{got:?} vs {expected:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
