//! Clip export for 晒课 (一师一优课): a stretch of a recorded lesson as an upload-ready MP4,
//! preceded by a title card.
//!
//! [`render_clip`] turns a [`ClipSpec`] (an MP4 input, a `[start_ms, end_ms)` range, the five
//! title fields) into an MP4 that meets the platform's rules: H.264 + AAC, at least 720×576,
//! 0.5–1 Mbit/s overall, a title card of at most 5 s naming course, grade, textbook edition,
//! teacher and school. One GStreamer pipeline, built with element builders (no launch string
//! carries user text):
//!
//! ```text
//! videotestsrc (dark, 125 frames) ! I420 1024×576 25/1 ! textoverlay (the five lines) ! concat.sink_0
//! filesrc ! decodebin ─ video ─ queue ! videorate ! videoconvert ! videoscale ! I420 1024×576 25/1
//!                                                                               ! concat.sink_1
//! concat ! I420 ! x264enc (800 kbit/s CBR, filler) ! h264parse ! queue ! mp4mux (faststart)
//! audiotestsrc (silence, 5 s) ! F32 48 kHz stereo ! concat_audio.sink_0
//!                     decodebin ─ audio ─ queue ! audioconvert ! audioresample ! F32 48 kHz stereo
//!                                                                               ! concat_audio.sink_1
//! concat_audio ! avenc_aac (or voaacenc) 96 kbit/s ! aacparse ! queue ! mp4mux
//! mp4mux ! filesink <output>.part
//! ```
//!
//! Choices, and why:
//! - **1024×576, square pixels.** It is the smallest 16:9 frame that meets "≥ 720×576" with
//!   square pixels: 720×576 itself is 5:4 and would need an anamorphic pixel aspect ratio that
//!   upload platforms and browsers do not all honour. Input of another shape is letterboxed
//!   (`videoscale add-borders`), never stretched.
//! - **800 kbit/s video, CBR with filler, + 96 kbit/s AAC.** x264enc's `cbr` pass sets the VBV
//!   maximum to the bitrate and pads with filler data, so even a static title card or a still
//!   courseware page stays near 800 kbit/s: the file lands near 0.9 Mbit/s overall, inside
//!   0.5–1 Mbit/s whatever the picture.
//! - **Accurate cut.** The input is prerolled with the title card's sources held back, seeked
//!   with `FLUSH | ACCURATE` to `[start, end]`, and only then does the title card start: `concat`
//!   plays the title, then the cut, with continuous timestamps. The cut begins on the requested
//!   frame, not on the keyframe before it.
//! - **Never a half-written output.** The muxer writes `<output>.part` (and its faststart temp
//!   file `<output>.part.mdat`); the part is probed (codecs, duration, index at the front) and
//!   only then renamed to `output`. On any failure both are removed.
//!
//! Invariants:
//! - Refuses before rendering anything: a missing or unreadable input, an input without video,
//!   an empty title field, a range that is empty or reaches past the input's duration (probed
//!   with FFmpeg), a missing GStreamer element (named).
//! - The output lasts 5 s + (end − start) within ±0.5 s, or the render fails.
//! - `progress` receives values in 0..=1, never decreasing, at least every
//!   [`PROGRESS_INTERVAL`], and 1.0 exactly once, after the output is in place. It is called on the
//!   caller's thread only.
//! - Blocking: runs on the caller's thread (the gateway calls it from `spawn_blocking`), bounded by
//!   [`timeout_for`] the clip's length.
//!
//! Fonts: the title card is drawn by Pango through fontconfig; a CJK font must be installed
//! (`fonts-wqy-microhei`, see `deploy/install-deps.sh`), or the Chinese labels render as boxes.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::delivery::package::{MediaProbe, StreamKind, probe_media};
use crate::encoder::H264Encoder;

/// Output width in pixels (16:9 with [`HEIGHT`], square pixels).
pub const WIDTH: u32 = 1024;
/// Output height in pixels.
pub const HEIGHT: u32 = 576;
/// Output frame rate (frames per second).
pub const FRAMERATE: u32 = 25;
/// How long the title card lasts.
pub const TITLE_DURATION: Duration = Duration::from_secs(5);
/// Video bitrate, kbit/s.
pub const VIDEO_BITRATE_KBPS: u32 = 800;
/// Audio bitrate, bit/s (AAC-LC, stereo, 48 kHz).
pub const AUDIO_BITRATE_BPS: u32 = 96_000;
/// How often `progress` is called at least.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// A keyframe every 2 s.
const KEYFRAME_INTERVAL: u32 = 2 * FRAMERATE;
/// x264's speed preset: a 60 s clip renders in a few seconds of one core.
const SPEED_PRESET: &str = "veryfast";
/// Audio sample rate and channels of the output.
const AUDIO_RATE: i32 = 48_000;
const AUDIO_CHANNELS: i32 = 2;
/// Samples per buffer of the silence: 40 ms, so 125 buffers are exactly the title card.
const SILENCE_SAMPLES_PER_BUFFER: u32 = 1920;
/// A range may end this far past the probed duration (containers and the lesson's own
/// `duration_ms` disagree by a frame or two); the cut then stops at the input's end.
const RANGE_TOLERANCE_MS: u64 = 250;
/// How far the output's duration may be from 5 s + (end − start).
const DURATION_TOLERANCE: Duration = Duration::from_millis(500);
/// The title card's background (ARGB): a dark slate blue.
const BACKGROUND_ARGB: u32 = 0xff1b_2433;
/// The title card's font: a CJK font first (see the module doc), Pango's fallback after.
const FONT: &str = "WenQuanYi Micro Hei, Noto Sans CJK SC, Sans 24";

/// The title card's five fields (片头信息), as they are shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TitleCard {
    /// 课程: the course (lesson title).
    pub course: String,
    /// 年级: the grade, e.g. 七年级.
    pub grade: String,
    /// 教材版本: the textbook edition, e.g. 人教版.
    pub edition: String,
    /// 授课教师: the teacher.
    pub teacher: String,
    /// 学校: the school.
    pub school: String,
}

impl TitleCard {
    /// The card's text: one labelled line per field, control characters (line breaks
    /// included) replaced by spaces so that a field cannot add lines. Plain text (escaped for
    /// Pango when drawn).
    pub fn text(&self) -> String {
        self.fields()
            .iter()
            .map(|(_, label, value)| format!("{label}：{}", clean(value)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// (field name, label, value), in display order.
    fn fields(&self) -> [(&'static str, &'static str, &str); 5] {
        [
            ("course", "课程", &self.course),
            ("grade", "年级", &self.grade),
            ("edition", "教材版本", &self.edition),
            ("teacher", "授课教师", &self.teacher),
            ("school", "学校", &self.school),
        ]
    }
}

/// A field as shown: control characters become spaces, outer whitespace goes.
fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// One clip to render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipSpec {
    /// An MP4 with H.264 video and AAC audio: the lesson's composed review video or programme.
    /// (Anything GStreamer decodes works; without audio the cut gets silence.)
    pub input: PathBuf,
    /// Where the cut starts in the input, ms.
    pub start_ms: u64,
    /// Where the cut ends in the input, ms (exclusive).
    pub end_ms: u64,
    /// The title card.
    pub title: TitleCard,
    /// The MP4 to write. Its directory must exist; an existing file is replaced only on success.
    pub output: PathBuf,
}

/// What a successful render produced.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipReport {
    /// The output file (the spec's `output`).
    pub output: PathBuf,
    /// Its duration: title card plus cut.
    pub duration: Duration,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Overall bitrate, bit/s: size × 8 / duration.
    pub bitrate_bps: u64,
    /// Video width in pixels.
    pub width: u32,
    /// Video height in pixels.
    pub height: u32,
    /// Wall-clock time the render took.
    pub elapsed: Duration,
}

/// Why a clip was not rendered. Nothing is left at the spec's `output` (nor at its `.part`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClipError {
    /// The input file does not exist.
    #[error("clip input {path} does not exist")]
    InputMissing {
        /// The input.
        path: PathBuf,
    },
    /// The input cannot be read or is not a media file FFmpeg can open.
    #[error("clip input {path} is unreadable: {reason}")]
    InputUnreadable {
        /// The input.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The input has no video stream.
    #[error("clip input {path} has no video stream")]
    NoVideo {
        /// The input.
        path: PathBuf,
    },
    /// `end_ms` is not after `start_ms`.
    #[error("clip range {start_ms}..{end_ms} ms is empty")]
    EmptyRange {
        /// Requested start.
        start_ms: u64,
        /// Requested end.
        end_ms: u64,
    },
    /// The range reaches past the input's end.
    #[error("clip range {start_ms}..{end_ms} ms lies outside the input ({duration_ms} ms long)")]
    RangeOutsideInput {
        /// Requested start.
        start_ms: u64,
        /// Requested end.
        end_ms: u64,
        /// The input's probed duration.
        duration_ms: u64,
    },
    /// A title card field is empty (after removing control characters and outer spaces).
    #[error("title card field {field} is empty")]
    EmptyTitleField {
        /// `course`, `grade`, `edition`, `teacher` or `school`.
        field: &'static str,
    },
    /// A GStreamer element (or a decoder for the input) is not installed.
    #[error("GStreamer element missing: {name} (run deploy/install-deps.sh)")]
    MissingPlugin {
        /// The element factory, or GStreamer's description of the missing decoder.
        name: String,
    },
    /// GStreamer could not be initialised, or the pipeline could not be built or started.
    #[error("clip pipeline: {reason}")]
    Pipeline {
        /// What failed.
        reason: String,
    },
    /// An element reported an error while rendering.
    #[error("clip render failed in {element}: {message} ({debug})")]
    Bus {
        /// The element's path in the pipeline.
        element: String,
        /// GStreamer's message.
        message: String,
        /// GStreamer's debug detail.
        debug: String,
    },
    /// The render took longer than [`timeout_for`] allows.
    #[error("clip render timed out after {limit:?} at {percent:.0} %")]
    Timeout {
        /// The limit.
        limit: Duration,
        /// How far it got, 0..100.
        percent: f32,
    },
    /// The rendered file failed its check (codecs, duration, index position).
    #[error("rendered clip failed its check: {reason}")]
    OutputCheck {
        /// What is wrong.
        reason: String,
    },
    /// A file operation on the output failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

impl ClipError {
    /// A short Simplified Chinese explanation for the person who asked for the clip (the
    /// English `Display` text, with paths and GStreamer detail, is for logs).
    pub fn message_zh(&self) -> &'static str {
        match self {
            ClipError::InputMissing { .. } => "课堂视频文件不存在",
            ClipError::InputUnreadable { .. } => "课堂视频文件无法读取",
            ClipError::NoVideo { .. } => "课堂视频文件中没有视频画面",
            ClipError::EmptyRange { .. } => "结束时间必须晚于开始时间",
            ClipError::RangeOutsideInput { .. } => "所选时间段超出了课堂视频的时长",
            ClipError::EmptyTitleField { .. } => {
                "片头信息不完整：课程、年级、教材版本、授课教师、学校均须填写"
            }
            ClipError::MissingPlugin { .. } => "服务器缺少视频处理组件，请联系管理员",
            ClipError::Timeout { .. } => "视频生成超时",
            ClipError::Pipeline { .. }
            | ClipError::Bus { .. }
            | ClipError::OutputCheck { .. }
            | ClipError::Io { .. } => "视频生成失败",
        }
    }
}

/// How long a render of `media` (title card plus cut) may take: 60 s plus three times the
/// media's length, so a slow, shared machine still finishes while a stuck pipeline does not
/// hold a worker forever.
pub fn timeout_for(media: Duration) -> Duration {
    Duration::from_secs(60) + media * 3
}

/// The elements every render needs, with the package that brings them.
const REQUIRED: [&str; 18] = [
    "filesrc",
    "decodebin",
    "queue",
    "videotestsrc",
    "textoverlay",
    "videorate",
    "videoconvert",
    "videoscale",
    "capsfilter",
    "concat",
    "x264enc",
    "h264parse",
    "audiotestsrc",
    "audioconvert",
    "audioresample",
    "aacparse",
    "mp4mux",
    "filesink",
];

/// AAC encoders, preferred first.
const AAC_ENCODERS: [&str; 2] = ["avenc_aac", "voaacenc"];

/// Renders `job` (blocking), reporting progress in 0..=1 through `progress`. See the module doc.
pub fn render_clip(job: &ClipSpec, progress: &dyn Fn(f32)) -> Result<ClipReport, ClipError> {
    let started = Instant::now();
    let plan = plan(job)?;
    let span = tracing::info_span!(
        "clip",
        input = %job.input.display(),
        start_ms = job.start_ms,
        end_ms = plan.end_ms,
        output = %job.output.display()
    );
    let _entered = span.enter();

    let part = with_suffix(&job.output, ".part");
    let mdat = with_suffix(&job.output, ".part.mdat");
    let mut leftovers = Leftovers(vec![part.clone(), mdat.clone()]);
    for path in &leftovers.0 {
        remove_if_present(path)?;
    }

    let graph = build(job, &plan, &part, &mdat)?;
    let mut reporter = Reporter {
        callback: progress,
        last: 0.0,
        total: plan.media_duration,
        position: Arc::clone(&graph.position),
    };
    run(&graph, &plan, &mut reporter)?;
    drop(graph);

    let probe = check_output(&part, &plan)?;
    let size_bytes = fs::metadata(&part)
        .map_err(|source| io_error(&part, source))?
        .len();
    fs::File::open(&part)
        .and_then(|f| f.sync_all())
        .map_err(|source| io_error(&part, source))?;
    fs::rename(&part, &job.output).map_err(|source| io_error(&job.output, source))?;
    leftovers.0.clear();
    if let Some(dir) = job.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Durability of the rename; the file itself is complete either way.
        if let Err(e) = crate::manifest::sync_dir(dir) {
            tracing::warn!(error = %e, "could not sync the clip's directory");
        }
    }
    (reporter.callback)(1.0);

    let (width, height) = match probe.video().map(|s| &s.kind) {
        Some(StreamKind::Video { width, height }) => (*width, *height),
        _ => (0, 0),
    };
    let secs = probe.duration.as_secs_f64();
    let report = ClipReport {
        output: job.output.clone(),
        duration: probe.duration,
        size_bytes,
        bitrate_bps: if secs > 0.0 {
            (size_bytes as f64 * 8.0 / secs) as u64
        } else {
            0
        },
        width,
        height,
        elapsed: started.elapsed(),
    };
    if !(500_000..=1_000_000).contains(&report.bitrate_bps) {
        // CBR with filler keeps it near 0.9 Mbit/s; outside 0.5–1 Mbit/s the platform may refuse it.
        tracing::warn!(
            bitrate_bps = report.bitrate_bps,
            "clip bitrate outside the 晒课 range of 0.5–1 Mbit/s"
        );
    }
    tracing::info!(
        duration_ms = report.duration.as_millis() as u64,
        bitrate_bps = report.bitrate_bps,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "clip rendered"
    );
    Ok(report)
}

/// What [`plan`] settled before anything is built.
struct Plan {
    /// The cut's start.
    start_ms: u64,
    /// The cut's end, clamped to the input's duration.
    end_ms: u64,
    /// Title card plus cut.
    media_duration: Duration,
    /// Whether the input has an audio stream (else the cut gets silence).
    input_has_audio: bool,
    /// The AAC encoder found.
    aac_encoder: &'static str,
}

/// Checks the job against the input and the installation; nothing is written.
fn plan(job: &ClipSpec) -> Result<Plan, ClipError> {
    gst::init().map_err(|e| ClipError::Pipeline {
        reason: format!("GStreamer init: {e}"),
    })?;
    match fs::metadata(&job.input) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(ClipError::InputUnreadable {
                path: job.input.clone(),
                reason: "not a regular file".into(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ClipError::InputMissing {
                path: job.input.clone(),
            });
        }
        Err(e) => {
            return Err(ClipError::InputUnreadable {
                path: job.input.clone(),
                reason: e.to_string(),
            });
        }
    }
    if job.end_ms <= job.start_ms {
        return Err(ClipError::EmptyRange {
            start_ms: job.start_ms,
            end_ms: job.end_ms,
        });
    }
    for (field, _, value) in job.title.fields() {
        if clean(value).is_empty() {
            return Err(ClipError::EmptyTitleField { field });
        }
    }
    let probe = probe_media(&job.input).map_err(|e| ClipError::InputUnreadable {
        path: job.input.clone(),
        reason: e.to_string(),
    })?;
    if probe.video().is_none() {
        return Err(ClipError::NoVideo {
            path: job.input.clone(),
        });
    }
    let duration_ms = u64::try_from(probe.duration.as_millis()).unwrap_or(u64::MAX);
    if job.start_ms >= duration_ms || job.end_ms > duration_ms.saturating_add(RANGE_TOLERANCE_MS) {
        return Err(ClipError::RangeOutsideInput {
            start_ms: job.start_ms,
            end_ms: job.end_ms,
            duration_ms,
        });
    }
    let end_ms = job.end_ms.min(duration_ms);

    for name in REQUIRED {
        if gst::ElementFactory::find(name).is_none() {
            return Err(ClipError::MissingPlugin { name: name.into() });
        }
    }
    let aac_encoder = AAC_ENCODERS
        .into_iter()
        .find(|name| gst::ElementFactory::find(name).is_some())
        .ok_or_else(|| ClipError::MissingPlugin {
            name: AAC_ENCODERS.join(" or "),
        })?;

    Ok(Plan {
        start_ms: job.start_ms,
        end_ms,
        media_duration: TITLE_DURATION + Duration::from_millis(end_ms - job.start_ms),
        input_has_audio: probe.audio().is_some(),
        aac_encoder,
    })
}

/// The built pipeline and the handles a run needs. Dropping it sets the pipeline to `Null`.
struct Graph {
    /// The whole render.
    pipeline: gst::Pipeline,
    /// The title card's sources, held in `Null` (locked) until the input has been seeked, so that
    /// no title frame reaches the encoder before the cut is in place.
    held_sources: Vec<gst::Element>,
    /// Where the seek enters: the cut's video queue (an upstream event leaves through its sink
    /// pad and reaches the demuxer, which seeks every stream).
    seek_target: gst::Element,
    /// The running time (ns) of the latest frame that reached the encoder: the progress.
    position: Arc<AtomicU64>,
}

impl Drop for Graph {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn make(factory: &str) -> Result<gst::Element, ClipError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| ClipError::MissingPlugin {
            name: factory.into(),
        })
}

fn pipeline_error(what: &str) -> impl Fn(gst::glib::BoolError) -> ClipError + '_ {
    move |e| ClipError::Pipeline {
        reason: format!("{what}: {e}"),
    }
}

fn video_caps() -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", WIDTH as i32)
        .field("height", HEIGHT as i32)
        .field("framerate", gst::Fraction::new(FRAMERATE as i32, 1))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build()
}

fn audio_caps() -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("layout", "interleaved")
        .field("rate", AUDIO_RATE)
        .field("channels", AUDIO_CHANNELS)
        .build()
}

fn capsfilter(caps: gst::Caps) -> Result<gst::Element, ClipError> {
    let filter = make("capsfilter")?;
    filter.set_property("caps", caps);
    Ok(filter)
}

/// Adds `chain` to `pipeline` and links it in order.
fn add_chain(pipeline: &gst::Pipeline, chain: &[&gst::Element]) -> Result<(), ClipError> {
    pipeline
        .add_many(chain.iter().copied())
        .map_err(pipeline_error("adding elements"))?;
    gst::Element::link_many(chain.iter().copied()).map_err(pipeline_error("linking"))
}

/// Links the last element of a branch to a new request pad of a `concat`, in request order.
fn link_to_concat(from: &gst::Element, concat: &gst::Element) -> Result<(), ClipError> {
    let pad = concat
        .request_pad_simple("sink_%u")
        .ok_or_else(|| ClipError::Pipeline {
            reason: "concat gave no sink pad".into(),
        })?;
    let src = from.static_pad("src").ok_or_else(|| ClipError::Pipeline {
        reason: format!("{} has no src pad", from.name()),
    })?;
    src.link(&pad).map(|_| ()).map_err(|e| ClipError::Pipeline {
        reason: format!("linking {} to concat: {e:?}", from.name()),
    })
}

/// Builds the pipeline of the module doc, writing `part` (faststart temp file `mdat`).
fn build(job: &ClipSpec, plan: &Plan, part: &Path, mdat: &Path) -> Result<Graph, ClipError> {
    let pipeline = gst::Pipeline::with_name("clip");
    let mut held_sources = Vec::new();

    // Muxer and sink.
    let mux = make("mp4mux")?;
    mux.set_property("faststart", true);
    mux.set_property("faststart-file", mdat.to_string_lossy().as_ref());
    let sink = make("filesink")?;
    sink.set_property("location", part.to_string_lossy().as_ref());
    // Nothing reaches the file before EOS (faststart), so the sink must not wait to preroll.
    sink.set_property("async", false);
    add_chain(&pipeline, &[&mux, &sink])?;

    // Video: title card, then the cut, then one encoder.
    let concat_video = make("concat")?;
    let pin_i420 = capsfilter(video_caps())?;
    let encoder = H264Encoder::X264
        .build(VIDEO_BITRATE_KBPS, KEYFRAME_INTERVAL, SPEED_PRESET)
        .map_err(|_| ClipError::MissingPlugin {
            name: "x264enc".into(),
        })?;
    // True CBR: x264enc's `cbr` pass only caps the rate (VBV maximum = bitrate); `nal-hrd=cbr`
    // also pads with filler data, without which a static title card or a still courseware
    // page encodes at ~10 kbit/s and the file falls below the 0.5 Mbit/s floor.
    encoder.set_property_from_str("pass", "cbr");
    encoder.set_property("option-string", "nal-hrd=cbr");
    let parse = make("h264parse")?;
    let video_queue_out = make("queue")?;
    add_chain(
        &pipeline,
        &[&concat_video, &pin_i420, &encoder, &parse, &video_queue_out],
    )?;
    video_queue_out
        .link_pads(Some("src"), &mux, Some("video_%u"))
        .map_err(pipeline_error("linking video to mp4mux"))?;

    let title_src = make("videotestsrc")?;
    title_src.set_property("is-live", false);
    title_src.set_property_from_str("pattern", "solid-color");
    title_src.set_property("foreground-color", BACKGROUND_ARGB);
    title_src.set_property(
        "num-buffers",
        (TITLE_DURATION.as_secs() as u32 * FRAMERATE) as i32,
    );
    let title_caps = capsfilter(video_caps())?;
    let overlay = make("textoverlay")?;
    // textoverlay parses `text` as Pango markup: escape it, so that a field like "A&B" or
    // "<b>" is shown as typed instead of breaking (or styling) the card.
    overlay.set_property("text", gst::glib::markup_escape_text(&job.title.text()));
    overlay.set_property("font-desc", FONT);
    overlay.set_property_from_str("valignment", "center");
    overlay.set_property_from_str("halignment", "center");
    overlay.set_property_from_str("line-alignment", "left");
    overlay.set_property("shaded-background", false);
    add_chain(&pipeline, &[&title_src, &title_caps, &overlay])?;
    link_to_concat(&overlay, &concat_video)?;
    held_sources.push(title_src);

    let cut_video_queue = make("queue")?;
    let rate = make("videorate")?;
    let convert = make("videoconvert")?;
    let scale = make("videoscale")?;
    scale.set_property("add-borders", true);
    let cut_caps = capsfilter(video_caps())?;
    add_chain(
        &pipeline,
        &[&cut_video_queue, &rate, &convert, &scale, &cut_caps],
    )?;
    link_to_concat(&cut_caps, &concat_video)?;

    // Audio: silence under the title card, then the cut's sound (or more silence).
    let concat_audio = make("concat")?;
    let aac = make(plan.aac_encoder)?;
    aac.set_property("bitrate", AUDIO_BITRATE_BPS as i32);
    let aac_parse = make("aacparse")?;
    let audio_queue_out = make("queue")?;
    add_chain(
        &pipeline,
        &[&concat_audio, &aac, &aac_parse, &audio_queue_out],
    )?;
    audio_queue_out
        .link_pads(Some("src"), &mux, Some("audio_%u"))
        .map_err(pipeline_error("linking audio to mp4mux"))?;

    let silence_for = |length: Duration| -> Result<gst::Element, ClipError> {
        let src = make("audiotestsrc")?;
        src.set_property("is-live", false);
        src.set_property_from_str("wave", "silence");
        src.set_property("samplesperbuffer", SILENCE_SAMPLES_PER_BUFFER as i32);
        let samples = length.as_millis() as u64 * AUDIO_RATE as u64 / 1000;
        let buffers = samples.div_ceil(u64::from(SILENCE_SAMPLES_PER_BUFFER));
        src.set_property("num-buffers", i32::try_from(buffers).unwrap_or(i32::MAX));
        Ok(src)
    };
    let title_silence = silence_for(TITLE_DURATION)?;
    let title_audio_caps = capsfilter(audio_caps())?;
    add_chain(&pipeline, &[&title_silence, &title_audio_caps])?;
    link_to_concat(&title_audio_caps, &concat_audio)?;
    held_sources.push(title_silence);

    let cut_audio_queue = if plan.input_has_audio {
        let queue = make("queue")?;
        let convert = make("audioconvert")?;
        let resample = make("audioresample")?;
        let caps = capsfilter(audio_caps())?;
        add_chain(&pipeline, &[&queue, &convert, &resample, &caps])?;
        link_to_concat(&caps, &concat_audio)?;
        Some(queue)
    } else {
        let silence = silence_for(plan.media_duration - TITLE_DURATION)?;
        let caps = capsfilter(audio_caps())?;
        add_chain(&pipeline, &[&silence, &caps])?;
        link_to_concat(&caps, &concat_audio)?;
        held_sources.push(silence);
        None
    };

    // The input, linked as decodebin finds its streams.
    let file = make("filesrc")?;
    file.set_property("location", job.input.to_string_lossy().as_ref());
    let decode = make("decodebin")?;
    add_chain(&pipeline, &[&file, &decode])?;
    let pipeline_weak = pipeline.downgrade();
    let video_sink = cut_video_queue.static_pad("sink");
    let audio_sink = cut_audio_queue.and_then(|q| q.static_pad("sink"));
    decode.connect_pad_added(move |_, pad| {
        let Some(pipeline) = pipeline_weak.upgrade() else {
            return;
        };
        link_decoded(&pipeline, pad, video_sink.as_ref(), audio_sink.as_ref());
    });

    // Progress: the running time of each frame entering the encoder.
    let position = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&position);
    if let Some(pad) = encoder.static_pad("sink") {
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let running = info.buffer().and_then(|buffer| {
                let pts = buffer.pts()?;
                let segment = pad.sticky_event::<gst::event::Segment>(0)?;
                let segment = segment.segment().downcast_ref::<gst::ClockTime>()?;
                segment.to_running_time(pts)
            });
            if let Some(running) = running {
                seen.fetch_max(running.nseconds(), Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
    }

    for source in &held_sources {
        source.set_locked_state(true);
    }
    Ok(Graph {
        pipeline,
        held_sources,
        seek_target: cut_video_queue,
        position,
    })
}

/// Links a pad decodebin exposed: the first video stream to the cut's video branch, the first
/// audio stream to its audio branch, anything else to a fakesink (an unlinked pad would stop
/// the demuxer).
fn link_decoded(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    video: Option<&gst::Pad>,
    audio: Option<&gst::Pad>,
) {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let media = caps
        .structure(0)
        .map(|s| s.name().as_str().to_owned())
        .unwrap_or_default();
    let target = if media.starts_with("video/") {
        video
    } else if media.starts_with("audio/") {
        audio
    } else {
        None
    };
    if let Some(target) = target.filter(|t| !t.is_linked()) {
        if let Err(e) = pad.link(target) {
            tracing::warn!(media, error = ?e, "cannot link a decoded stream");
        }
        return;
    }
    let Ok(sink) = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
    else {
        return;
    };
    if pipeline.add(&sink).is_err() {
        return;
    }
    let _ = sink.sync_state_with_parent();
    if let Some(sink_pad) = sink.static_pad("sink") {
        let _ = pad.link(&sink_pad);
    }
}

/// Calls the progress callback: monotone, below 1.0 until the output is in place.
struct Reporter<'a> {
    /// The caller's callback.
    callback: &'a dyn Fn(f32),
    /// The last value passed (never decreases).
    last: f32,
    /// Title card plus cut: what 1.0 stands for.
    total: Duration,
    /// The running time reached, ns (written by the encoder's pad probe).
    position: Arc<AtomicU64>,
}

impl Reporter<'_> {
    fn tick(&mut self) {
        let reached = Duration::from_nanos(self.position.load(Ordering::Relaxed));
        let fraction = (reached.as_secs_f64() / self.total.as_secs_f64().max(1e-3)) as f32;
        self.last = self.last.max(fraction.clamp(0.0, 0.99));
        (self.callback)(self.last);
    }
}

/// Prerolls the input with the title held back, seeks the cut, plays to EOS.
fn run(graph: &Graph, plan: &Plan, reporter: &mut Reporter<'_>) -> Result<(), ClipError> {
    let limit = timeout_for(plan.media_duration);
    let deadline = Instant::now() + limit;
    let result = (|| {
        let bus = graph.pipeline.bus().ok_or_else(|| ClipError::Pipeline {
            reason: "pipeline without a bus".into(),
        })?;
        let mut missing = None;

        let change = graph
            .pipeline
            .set_state(gst::State::Paused)
            .map_err(|_| drain_error(&bus, &mut missing, "cannot pause the pipeline"))?;
        if change == gst::StateChangeSuccess::Async {
            wait_for(
                &graph.pipeline,
                &bus,
                gst::MessageType::AsyncDone,
                deadline,
                limit,
                reporter,
                &mut missing,
            )?;
        }

        let start = gst::ClockTime::from_mseconds(plan.start_ms);
        let end = gst::ClockTime::from_mseconds(plan.end_ms);
        let seek = gst::event::Seek::new(
            1.0,
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::SeekType::Set,
            start,
            gst::SeekType::Set,
            end,
        );
        if !graph.seek_target.send_event(seek) {
            return Err(drain_error(
                &bus,
                &mut missing,
                "the input refused the seek",
            ));
        }

        for source in &graph.held_sources {
            source.set_locked_state(false);
            source
                .sync_state_with_parent()
                .map_err(pipeline_error("starting the title card"))?;
        }
        graph
            .pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| drain_error(&bus, &mut missing, "cannot start the pipeline"))?;
        wait_for(
            &graph.pipeline,
            &bus,
            gst::MessageType::Eos,
            deadline,
            limit,
            reporter,
            &mut missing,
        )
    })();
    if result.is_err() {
        graph
            .pipeline
            .debug_to_dot_file_with_ts(gst::DebugGraphDetails::all(), "duet-clip-failed");
    }
    let _ = graph.pipeline.set_state(gst::State::Null);
    result
}

/// Pops bus messages until `until` (from the pipeline), an error, or the deadline; ticks the
/// progress between messages.
fn wait_for(
    pipeline: &gst::Pipeline,
    bus: &gst::Bus,
    until: gst::MessageType,
    deadline: Instant,
    limit: Duration,
    reporter: &mut Reporter<'_>,
    missing: &mut Option<String>,
) -> Result<(), ClipError> {
    let mut next_tick = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(ClipError::Timeout {
                limit,
                percent: reporter.last * 100.0,
            });
        }
        if now >= next_tick {
            reporter.tick();
            next_tick = now + PROGRESS_INTERVAL;
        }
        let wait = next_tick.min(deadline).saturating_duration_since(now);
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(wait.as_nanos() as u64)) else {
            continue;
        };
        // Bins post their own ASYNC_DONE too; only the pipeline's means "prerolled".
        if msg.type_() == until
            && msg
                .src()
                .is_some_and(|s| s == pipeline.upcast_ref::<gst::Object>())
        {
            return Ok(());
        }
        check(&msg, missing)?;
    }
}

/// Turns an error message into a [`ClipError`] and remembers missing-plugin reports (decodebin
/// posts one before its error, and it names what to install).
fn check(msg: &gst::Message, missing: &mut Option<String>) -> Result<(), ClipError> {
    match msg.view() {
        gst::MessageView::Element(_) => {
            if let Ok(report) = gstreamer_pbutils::MissingPluginMessage::parse(msg) {
                missing.get_or_insert_with(|| report.description().to_string());
            }
            Ok(())
        }
        gst::MessageView::Error(err) => {
            if let Some(name) = missing.take() {
                return Err(ClipError::MissingPlugin { name });
            }
            Err(ClipError::Bus {
                element: msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default(),
                message: err.error().to_string(),
                debug: err.debug().map(|d| d.to_string()).unwrap_or_default(),
            })
        }
        gst::MessageView::Warning(w) => {
            tracing::warn!(warning = %w.error(), "clip pipeline warning");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// After a failed state change or seek: the first error waiting on the bus, else `what`.
fn drain_error(bus: &gst::Bus, missing: &mut Option<String>, what: &str) -> ClipError {
    while let Some(msg) = bus.pop() {
        if let Err(e) = check(&msg, missing) {
            return e;
        }
    }
    ClipError::Pipeline {
        reason: what.into(),
    }
}

/// Probes the rendered part: H.264 and AAC, at least 720×576, index at the front, the expected
/// duration.
fn check_output(part: &Path, plan: &Plan) -> Result<MediaProbe, ClipError> {
    let fail = |reason: String| ClipError::OutputCheck { reason };
    let probe = probe_media(part).map_err(|e| fail(e.to_string()))?;
    match probe.video() {
        Some(v) if v.codec == "h264" => {
            if let StreamKind::Video { width, height } = v.kind
                && (width < 720 || height < 576)
            {
                return Err(fail(format!("video is {width}×{height}, below 720×576")));
            }
        }
        other => return Err(fail(format!("video stream is {other:?}, not H.264"))),
    }
    if probe.audio().map(|a| a.codec.as_str()) != Some("aac") {
        return Err(fail("no AAC audio stream".into()));
    }
    if !probe.index_at_front {
        return Err(fail("the MP4 index (moov) is not at the front".into()));
    }
    let expected = plan.media_duration;
    if probe.duration.abs_diff(expected) > DURATION_TOLERANCE {
        return Err(fail(format!(
            "lasts {:?}, expected {expected:?}",
            probe.duration
        )));
    }
    Ok(probe)
}

/// Files to remove unless the render succeeds (the `.part` and the muxer's temp file).
struct Leftovers(Vec<PathBuf>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> Result<(), ClipError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(path, e)),
        _ => Ok(()),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> ClipError {
    ClipError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> TitleCard {
        TitleCard {
            course: "分数的初步认识".into(),
            grade: "三年级".into(),
            edition: "人教版".into(),
            teacher: "王老师\n<b>&".into(),
            school: " 城关小学 ".into(),
        }
    }

    #[test]
    fn the_card_has_five_labelled_lines_and_fields_cannot_add_lines() {
        let text = card().text();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "课程：分数的初步认识",
                "年级：三年级",
                "教材版本：人教版",
                "授课教师：王老师 <b>&",
                "学校：城关小学",
            ]
        );
    }

    #[test]
    fn the_timeout_grows_with_the_clip() {
        assert_eq!(
            timeout_for(Duration::from_secs(65)),
            Duration::from_secs(255)
        );
        assert!(timeout_for(Duration::from_secs(3600)) > Duration::from_secs(3 * 3600));
    }

    #[test]
    fn part_files_sit_beside_the_output() {
        assert_eq!(
            with_suffix(Path::new("/a/clip.mp4"), ".part"),
            PathBuf::from("/a/clip.mp4.part")
        );
    }
}
