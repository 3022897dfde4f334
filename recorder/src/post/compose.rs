//! The composed review video (`review.mp4`) of a live class: every remuxed track placed on the
//! lesson timeline in one 1280×720, 25 fps picture, all microphones mixed, encoded H.264 + AAC
//! into an MP4 with its index at the front.
//!
//! ```text
//! videotestsrc black, the lesson's duration ─────────────────────────────┐ (zorder 0: drives the length)
//! uridecodebin <track.webm> ~> queue ! videoconvert ! videoscale (borders) ! I420 WxH
//!     [! textoverlay label] ─(pad offset = offset_ms, cut at the duration)─► compositor ! I420 1280×720 25/1
//!     ! x264enc (veryfast, 1.5 Mbit/s, keyframe every 2 s) ! h264parse ! mp4mux faststart ! filesink
//! audiotestsrc silence, the lesson's duration ───────────────────────────┐
//! uridecodebin <microphone.webm> ~> queue ! audioconvert ! audioresample ! F32 48 kHz stereo
//!     ─(pad offset, cut)─► audiomixer ! AAC (avenc_aac | fdkaacenc | voaacenc) ! aacparse ! mp4mux
//! ```
//!
//! Layout ([`layout`]): the courseware screen large when there is one, with the lead teacher's
//! camera as a picture in picture; otherwise the teacher's camera large; classroom cameras as
//! 320×180 tiles in a column on the right and a row along the bottom (up to seven). The layout
//! is fixed for the whole video: where a source has no picture at some time (before it starts,
//! after it ends, in a gap) its place is black, or shows its last frame.
//!
//! Timing: every input is placed by a pad offset of its `offset_ms`, so all inputs and both the
//! picture and the sound follow the lesson timeline; the black and silent bases run exactly the
//! lesson's duration, input buffers outside `0..duration_ms` are dropped, and both aggregators'
//! outputs end with EOS at `duration_ms`, so the output lasts `duration_ms`.
//!
//! Never hangs: the calling thread follows the bus, and fails with [`ComposeError::Stalled`]
//! when the output position has not moved for [`STALL_TIMEOUT`]. Blocking; the pipeline's own
//! threads do the work.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

/// Output width.
pub const WIDTH: i32 = 1280;
/// Output height.
pub const HEIGHT: i32 = 720;
/// Output frame rate.
pub const FPS: i32 = 25;
/// Video bitrate, kbit/s.
pub const VIDEO_KBPS: u32 = 1500;
/// Audio bitrate, bit/s.
pub const AUDIO_BPS: i32 = 128_000;
/// x264 preset.
pub const SPEED_PRESET: &str = "veryfast";
/// Fails the composition when the output has not advanced for this long.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Classroom tiles: 320×180, a column on the right, then a row along the bottom.
const TILES: [(i32, i32); 7] = [
    (960, 0),
    (960, 180),
    (960, 360),
    (960, 540),
    (0, 540),
    (320, 540),
    (640, 540),
];

/// What an input is in the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The lead teacher's camera (主讲教师).
    LeadCamera,
    /// The courseware screen (课件).
    Screen,
    /// A classroom camera (课堂), numbered from 0 in tile order.
    ClassroomCamera(u32),
    /// A microphone: mixed into the sound.
    Microphone,
}

/// One remuxed track to compose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComposeInput {
    /// The file (a remuxed WebM; anything GStreamer decodes).
    pub path: PathBuf,
    /// Where the file's time 0 is on the lesson timeline, ms.
    pub offset_ms: i64,
    /// Its place.
    pub role: Role,
    /// Shown in its corner (may be empty).
    pub label: String,
}

/// A rectangle of the output picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left.
    pub x: i32,
    /// Top.
    pub y: i32,
    /// Width.
    pub w: i32,
    /// Height.
    pub h: i32,
}

/// What went wrong composing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// GStreamer could not be initialised.
    #[error("GStreamer init failed: {0}")]
    Init(#[source] gst::glib::Error),
    /// A GStreamer element is missing (its plugin is not installed).
    #[error("GStreamer element {factory} is missing (plugin not installed?)")]
    MissingElement {
        /// The factory, e.g. `x264enc`.
        factory: &'static str,
    },
    /// No AAC encoder is installed.
    #[error("no AAC encoder (avenc_aac, fdkaacenc or voaacenc) is installed")]
    NoAacEncoder,
    /// Nothing to compose, or an impossible duration.
    #[error("invalid composition: {reason}")]
    Invalid {
        /// Why.
        reason: String,
    },
    /// An input file does not exist.
    #[error("input {path} is missing")]
    MissingInput {
        /// The file.
        path: PathBuf,
    },
    /// The pipeline failed.
    #[error("composing failed: {reason}")]
    Pipeline {
        /// What GStreamer said, and which element.
        reason: String,
    },
    /// The output stopped advancing.
    #[error("composing stalled at {at_ms} ms for {waited:?}")]
    Stalled {
        /// Output position when it stopped.
        at_ms: u64,
        /// How long it did not move.
        waited: Duration,
    },
    /// Renaming the output into place failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Where each video input goes (index into `inputs`, rectangle, z-order); microphones and
/// classroom cameras beyond the seventh are left out. Pure.
pub fn layout(inputs: &[ComposeInput]) -> Vec<(usize, Rect, u32)> {
    let find = |role: Role| inputs.iter().position(|i| i.role == role);
    let mut classrooms: Vec<(u32, usize)> = inputs
        .iter()
        .enumerate()
        .filter_map(|(i, input)| match input.role {
            Role::ClassroomCamera(n) => Some((n, i)),
            _ => None,
        })
        .collect();
    classrooms.sort();
    let main_area = if classrooms.is_empty() {
        Rect {
            x: 0,
            y: 0,
            w: WIDTH,
            h: HEIGHT,
        }
    } else {
        Rect {
            x: 0,
            y: 0,
            w: 960,
            h: 540,
        }
    };
    let mut placed = Vec::new();
    let (screen, lead) = (find(Role::Screen), find(Role::LeadCamera));
    match (screen, lead) {
        (Some(s), lead) => {
            placed.push((s, main_area, 1));
            if let Some(l) = lead {
                let (w, h) = (main_area.w / 4, main_area.h / 4);
                let margin = main_area.w / 40;
                placed.push((
                    l,
                    Rect {
                        x: main_area.x + main_area.w - w - margin,
                        y: main_area.y + main_area.h - h - margin,
                        w,
                        h,
                    },
                    3,
                ));
            }
        }
        (None, Some(l)) => placed.push((l, main_area, 1)),
        (None, None) => {}
    }
    for ((_, i), (x, y)) in classrooms.iter().zip(TILES) {
        placed.push((
            *i,
            Rect {
                x,
                y,
                w: 320,
                h: 180,
            },
            2,
        ));
    }
    placed
}

fn make(factory: &'static str) -> Result<gst::Element, ComposeError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| ComposeError::MissingElement { factory })
}

fn capsfilter(caps: gst::Caps) -> Result<gst::Element, ComposeError> {
    gst::ElementFactory::make("capsfilter")
        .property("caps", caps)
        .build()
        .map_err(|_| ComposeError::MissingElement {
            factory: "capsfilter",
        })
}

fn i420(w: i32, h: i32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", w)
        .field("height", h)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build()
}

fn audio_caps() -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("layout", "interleaved")
        .field("rate", 48_000i32)
        .field("channels", 2i32)
        .build()
}

/// The AAC encoder that exists here, configured.
fn aac_encoder() -> Result<gst::Element, ComposeError> {
    for factory in ["avenc_aac", "fdkaacenc", "voaacenc"] {
        if gst::ElementFactory::find(factory).is_none() {
            continue;
        }
        let enc = gst::ElementFactory::make(factory)
            .build()
            .map_err(|_| ComposeError::NoAacEncoder)?;
        if enc.find_property("bitrate").is_some() {
            enc.set_property_from_str("bitrate", &AUDIO_BPS.to_string());
        }
        return Ok(enc);
    }
    Err(ComposeError::NoAacEncoder)
}

/// Sets the pipeline to `Null` when dropped (an error path included).
struct NullOnDrop(gst::Pipeline);

impl Drop for NullOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

/// Composes `inputs` into `out` (MP4, written as `out.part` and renamed when complete), lasting
/// `duration_ms` of the lesson timeline. `progress` is called on the calling thread with the
/// fraction done (0..=1), a few times a second. Blocking. See the module doc.
pub fn compose(
    inputs: &[ComposeInput],
    duration_ms: u64,
    out: &Path,
    progress: &dyn Fn(f32),
) -> Result<(), ComposeError> {
    if duration_ms == 0 || duration_ms > 24 * 3600 * 1000 {
        return Err(ComposeError::Invalid {
            reason: format!("duration {duration_ms} ms"),
        });
    }
    if let Some(missing) = inputs.iter().find(|i| !i.path.is_file()) {
        return Err(ComposeError::MissingInput {
            path: missing.path.clone(),
        });
    }
    gst::init().map_err(ComposeError::Init)?;
    let fail = |e: gst::glib::BoolError| ComposeError::Pipeline {
        reason: e.to_string(),
    };
    let duration_ns = duration_ms * 1_000_000;
    let pipeline = gst::Pipeline::with_name("compose");
    let guard = NullOnDrop(pipeline.clone());

    // Video: the black base and the output chain.
    let frames = (duration_ms * FPS as u64).div_ceil(1000);
    let base = gst::ElementFactory::make("videotestsrc")
        .property_from_str("pattern", "black")
        .property("num-buffers", i32::try_from(frames).unwrap_or(i32::MAX))
        .build()
        .map_err(|_| ComposeError::MissingElement {
            factory: "videotestsrc",
        })?;
    // The output picture: the base layer and the compositor's output have the same caps.
    let frame = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", WIDTH)
        .field("height", HEIGHT)
        .field("framerate", gst::Fraction::new(FPS, 1))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    let base_caps = capsfilter(frame.clone())?;
    let compositor = gst::ElementFactory::make("compositor")
        .property_from_str("background", "black")
        .property_from_str("start-time-selection", "zero")
        .build()
        .map_err(|_| ComposeError::MissingElement {
            factory: "compositor",
        })?;
    let out_caps = capsfilter(frame)?;
    let x264 = gst::ElementFactory::make("x264enc")
        .property("bitrate", VIDEO_KBPS)
        .property("key-int-max", (FPS * 2) as u32)
        .property_from_str("speed-preset", SPEED_PRESET)
        .build()
        .map_err(|_| ComposeError::MissingElement { factory: "x264enc" })?;
    let h264parse = make("h264parse")?;
    let vqueue = make("queue")?;
    let mux = gst::ElementFactory::make("mp4mux")
        .property("faststart", true)
        .build()
        .map_err(|_| ComposeError::MissingElement { factory: "mp4mux" })?;
    let tmp = out.with_extension("mp4.part");
    if let Some(dir) = out.parent() {
        // The faststart temporary file beside the output, not in /tmp.
        mux.set_property(
            "faststart-file",
            dir.join(format!(
                ".{}.moov-tmp",
                out.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ))
            .to_string_lossy()
            .as_ref(),
        );
    }
    let sink = gst::ElementFactory::make("filesink")
        .property("location", tmp.to_string_lossy().as_ref())
        .build()
        .map_err(|_| ComposeError::MissingElement {
            factory: "filesink",
        })?;
    pipeline
        .add_many([
            &base,
            &base_caps,
            &compositor,
            &out_caps,
            &x264,
            &h264parse,
            &vqueue,
            &mux,
            &sink,
        ])
        .map_err(fail)?;
    gst::Element::link_many([&base, &base_caps]).map_err(fail)?;
    let base_pad =
        compositor
            .request_pad_simple("sink_%u")
            .ok_or_else(|| ComposeError::Pipeline {
                reason: "compositor gave no sink pad".into(),
            })?;
    base_pad.set_property("zorder", 0u32);
    link_pads(&base_caps, &base_pad)?;
    gst::Element::link_many([&compositor, &out_caps, &x264, &h264parse, &vqueue, &mux])
        .map_err(fail)?;
    mux.link(&sink).map_err(fail)?;

    // Audio: the silent base and the output chain.
    let samples_per_buffer = 960u64;
    let audio_buffers = (duration_ms * 48).div_ceil(samples_per_buffer);
    let silence = gst::ElementFactory::make("audiotestsrc")
        .property_from_str("wave", "silence")
        .property("samplesperbuffer", samples_per_buffer as i32)
        .property(
            "num-buffers",
            i32::try_from(audio_buffers).unwrap_or(i32::MAX),
        )
        .build()
        .map_err(|_| ComposeError::MissingElement {
            factory: "audiotestsrc",
        })?;
    let silence_caps = capsfilter(audio_caps())?;
    let mixer = gst::ElementFactory::make("audiomixer")
        .property_from_str("start-time-selection", "zero")
        .build()
        .map_err(|_| ComposeError::MissingElement {
            factory: "audiomixer",
        })?;
    let mix_caps = capsfilter(audio_caps())?;
    let aconvert = make("audioconvert")?;
    let aac = aac_encoder()?;
    let aacparse = make("aacparse")?;
    let aqueue = make("queue")?;
    pipeline
        .add_many([
            &silence,
            &silence_caps,
            &mixer,
            &mix_caps,
            &aconvert,
            &aac,
            &aacparse,
            &aqueue,
        ])
        .map_err(fail)?;
    gst::Element::link_many([&silence, &silence_caps, &mixer]).map_err(fail)?;
    gst::Element::link_many([&mixer, &mix_caps, &aconvert, &aac, &aacparse, &aqueue, &mux])
        .map_err(fail)?;

    // The inputs.
    let placed = layout(inputs);
    for (index, input) in inputs.iter().enumerate() {
        let offset_ns = input.offset_ms.saturating_mul(1_000_000);
        let branch = if input.role == Role::Microphone {
            audio_branch(&pipeline, &mixer)?
        } else {
            let Some((_, rect, z)) = placed.iter().find(|(i, _, _)| *i == index) else {
                tracing::warn!(path = %input.path.display(), "no place in the layout: left out");
                continue;
            };
            video_branch(&pipeline, &compositor, *rect, *z, &input.label)?
        };
        branch.tail.set_offset(offset_ns);
        cut_at(&branch.tail, offset_ns, duration_ns);
        let uri =
            gst::glib::filename_to_uri(&input.path, None).map_err(|e| ComposeError::Pipeline {
                reason: format!("{}: {e}", input.path.display()),
            })?;
        let decode = gst::ElementFactory::make("uridecodebin")
            .property("uri", uri.as_str())
            .build()
            .map_err(|_| ComposeError::MissingElement {
                factory: "uridecodebin",
            })?;
        pipeline.add(&decode).map_err(fail)?;
        link_decoded(&pipeline, &decode, branch.head, branch.raw);
    }

    end_at(&compositor, duration_ns);
    end_at(&mixer, duration_ns);

    // Progress: the output position, read from the encoder's input.
    let position = Arc::new(AtomicU64::new(0));
    {
        let position = Arc::clone(&position);
        if let Some(pad) = x264.static_pad("sink") {
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                    position.store(pts.nseconds(), Ordering::Relaxed);
                }
                gst::PadProbeReturn::Ok
            });
        }
    }

    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| ComposeError::Pipeline {
            reason: format!("cannot start: {e}"),
        })?;
    let bus = pipeline.bus().ok_or_else(|| ComposeError::Pipeline {
        reason: "no bus".into(),
    })?;
    let started = Instant::now();
    let mut last = (0u64, Instant::now());
    loop {
        let msg = bus.timed_pop(gst::ClockTime::from_mseconds(250));
        let now_pos = position.load(Ordering::Relaxed);
        progress((now_pos as f64 / duration_ns as f64).clamp(0.0, 1.0) as f32);
        if now_pos != last.0 {
            last = (now_pos, Instant::now());
        } else if last.1.elapsed() > STALL_TIMEOUT {
            pipeline.debug_to_dot_file_with_ts(gst::DebugGraphDetails::all(), "compose-stalled");
            return Err(ComposeError::Stalled {
                at_ms: now_pos / 1_000_000,
                waited: STALL_TIMEOUT,
            });
        }
        let Some(msg) = msg else { continue };
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(err) => {
                pipeline.debug_to_dot_file_with_ts(gst::DebugGraphDetails::all(), "compose-error");
                return Err(ComposeError::Pipeline {
                    reason: format!(
                        "{}: {} ({:?})",
                        msg.src()
                            .map(|s| s.path_string().to_string())
                            .unwrap_or_default(),
                        err.error(),
                        err.debug()
                    ),
                });
            }
            _ => {}
        }
    }
    drop(guard);
    std::fs::rename(&tmp, out).map_err(|source| ComposeError::Io {
        path: out.to_owned(),
        source,
    })?;
    progress(1.0);
    tracing::info!(out = %out.display(), duration_ms, took = ?started.elapsed(), "review video composed");
    Ok(())
}

/// One input's chain, built before its decoder has pads.
struct Branch {
    /// Its first element, where the decoder's pad is linked.
    head: gst::Element,
    /// Its last src pad, linked to the aggregator: carries the offset and the cut.
    tail: gst::Pad,
    /// The raw media it takes: `video/x-raw` or `audio/x-raw`.
    raw: &'static str,
}

fn link_pads(element: &gst::Element, sink: &gst::Pad) -> Result<gst::Pad, ComposeError> {
    let src = element
        .static_pad("src")
        .ok_or_else(|| ComposeError::Pipeline {
            reason: format!("{} has no src pad", element.name()),
        })?;
    src.link(sink).map_err(|e| ComposeError::Pipeline {
        reason: format!("linking {}: {e:?}", element.name()),
    })?;
    Ok(src)
}

/// A decoded-video chain into a compositor pad at `rect`, letterboxed, with the label.
fn video_branch(
    pipeline: &gst::Pipeline,
    compositor: &gst::Element,
    rect: Rect,
    zorder: u32,
    label: &str,
) -> Result<Branch, ComposeError> {
    let queue = make("queue")?;
    let scale = gst::ElementFactory::make("videoscale")
        .property("add-borders", true)
        .build()
        .map_err(|_| ComposeError::MissingElement {
            factory: "videoscale",
        })?;
    let mut chain = vec![
        queue.clone(),
        make("videoconvert")?,
        scale,
        capsfilter(i420(rect.w, rect.h))?,
    ];
    if !label.is_empty() {
        chain.push(
            gst::ElementFactory::make("textoverlay")
                .property("text", label)
                .property("font-desc", "Sans 12")
                .property_from_str("valignment", "top")
                .property_from_str("halignment", "left")
                .property("shaded-background", true)
                .build()
                .map_err(|_| ComposeError::MissingElement {
                    factory: "textoverlay",
                })?,
        );
    }
    let fail = |e: gst::glib::BoolError| ComposeError::Pipeline {
        reason: e.to_string(),
    };
    pipeline.add_many(&chain).map_err(fail)?;
    gst::Element::link_many(&chain).map_err(fail)?;
    let pad = compositor
        .request_pad_simple("sink_%u")
        .ok_or_else(|| ComposeError::Pipeline {
            reason: "compositor gave no sink pad".into(),
        })?;
    pad.set_property("xpos", rect.x);
    pad.set_property("ypos", rect.y);
    pad.set_property("width", rect.w);
    pad.set_property("height", rect.h);
    pad.set_property("zorder", zorder);
    let last = chain.last().unwrap_or(&queue);
    let tail = link_pads(last, &pad)?;
    Ok(Branch {
        head: queue,
        tail,
        raw: "video/x-raw",
    })
}

/// A decoded-audio chain into an audiomixer pad.
fn audio_branch(pipeline: &gst::Pipeline, mixer: &gst::Element) -> Result<Branch, ComposeError> {
    let queue = make("queue")?;
    let caps = capsfilter(audio_caps())?;
    let chain = [
        queue.clone(),
        make("audioconvert")?,
        make("audioresample")?,
        caps.clone(),
    ];
    let fail = |e: gst::glib::BoolError| ComposeError::Pipeline {
        reason: e.to_string(),
    };
    pipeline.add_many(&chain).map_err(fail)?;
    gst::Element::link_many(&chain).map_err(fail)?;
    let pad = mixer
        .request_pad_simple("sink_%u")
        .ok_or_else(|| ComposeError::Pipeline {
            reason: "audiomixer gave no sink pad".into(),
        })?;
    let tail = link_pads(&caps, &pad)?;
    Ok(Branch {
        head: queue,
        tail,
        raw: "audio/x-raw",
    })
}

/// Drops buffers that would land before 0 or at or after `duration_ns` on the lesson
/// timeline. Before 0 matters: decoded VP8 frames carry no duration, and the compositor of
/// GStreamer 1.22 never clips such a frame with a negative running time: it holds it as "in
/// the future" forever, which blocks its input and makes the compositor output black frames
/// without end.
fn cut_at(pad: &gst::Pad, offset_ns: i64, duration_ns: u64) {
    let end = i128::from(duration_ns);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        match info.buffer().and_then(|b| b.pts()) {
            Some(pts) => {
                let at = i128::from(pts.nseconds()) + i128::from(offset_ns);
                if at < 0 || at >= end {
                    gst::PadProbeReturn::Drop
                } else {
                    gst::PadProbeReturn::Ok
                }
            }
            None => gst::PadProbeReturn::Ok,
        }
    });
}

/// Ends an aggregator's output at `duration_ns`: the first buffer at or past it is dropped and
/// EOS sent downstream in its place (from the streaming thread, so it stays in order); later
/// buffers are dropped. A second guard besides the bases' length and [`cut_at`]: the output
/// cannot run past the lesson's end whatever an input does.
fn end_at(aggregator: &gst::Element, duration_ns: u64) {
    let Some(pad) = aggregator.static_pad("src") else {
        return;
    };
    let ended = std::sync::atomic::AtomicBool::new(false);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let past = info
            .buffer()
            .and_then(|b| b.pts())
            .is_some_and(|pts| pts.nseconds() >= duration_ns);
        if !past {
            return gst::PadProbeReturn::Ok;
        }
        if !ended.swap(true, Ordering::Relaxed)
            && let Some(peer) = pad.peer()
        {
            peer.send_event(gst::event::Eos::new());
        }
        gst::PadProbeReturn::Drop
    });
}

/// Links the decoder's `raw` pad to `head`; other streams go to a fakesink (an unlinked pad
/// would stop the decoder). A file without a `raw` stream (a microphone file given as a camera)
/// ends its branch at once, so the aggregator does not wait for it until the stall timeout.
fn link_decoded(
    pipeline: &gst::Pipeline,
    decode: &gst::Element,
    head: gst::Element,
    raw: &'static str,
) {
    let head_weak = head.downgrade();
    decode.connect_no_more_pads(move |decode| {
        let Some(sink) = head_weak.upgrade().and_then(|h| h.static_pad("sink")) else {
            return;
        };
        if sink.is_linked() {
            return;
        }
        tracing::warn!(decoder = %decode.name(), "no {raw} stream in the input: left black/silent");
        let segment = gst::FormattedSegment::<gst::ClockTime>::new();
        for event in [
            gst::event::StreamStart::new("duet-compose-empty"),
            gst::event::Segment::new(&segment),
            gst::event::Eos::new(),
        ] {
            sink.send_event(event);
        }
    });
    let head = head.downgrade();
    let pipeline = pipeline.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let (Some(head), Some(pipeline)) = (head.upgrade(), pipeline.upgrade()) else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let is_raw = caps.structure(0).is_some_and(|s| s.name() == raw);
        if let Some(sink) = head.static_pad("sink")
            && is_raw
            && !sink.is_linked()
        {
            if let Err(err) = pad.link(&sink) {
                tracing::error!(?err, "cannot link a decoded stream");
            }
            return;
        }
        let Ok(fakesink) = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
        else {
            return;
        };
        if pipeline.add(&fakesink).is_ok() {
            let _ = fakesink.sync_state_with_parent();
            if let Some(sink) = fakesink.static_pad("sink") {
                let _ = pad.link(&sink);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(role: Role) -> ComposeInput {
        ComposeInput {
            path: PathBuf::from("x.webm"),
            offset_ms: 0,
            role,
            label: String::new(),
        }
    }

    #[test]
    fn screen_large_with_teacher_inset_and_tiles_inside_the_frame() {
        let inputs = [
            input(Role::ClassroomCamera(1)),
            input(Role::LeadCamera),
            input(Role::Microphone),
            input(Role::Screen),
            input(Role::ClassroomCamera(0)),
        ];
        let placed = layout(&inputs);
        assert_eq!(placed.len(), 4, "microphones have no place");
        let at = |i: usize| placed.iter().find(|p| p.0 == i).copied();
        let screen = at(3).expect("screen placed");
        let lead = at(1).expect("teacher placed");
        assert_eq!(
            screen.1,
            Rect {
                x: 0,
                y: 0,
                w: 960,
                h: 540
            }
        );
        assert!(lead.2 > screen.2, "inset above the screen");
        assert!(lead.1.x + lead.1.w <= 960 && lead.1.y + lead.1.h <= 540);
        assert_eq!(
            at(4).expect("tile").1.x,
            960,
            "classroom 0 is the first tile"
        );
        assert_eq!(at(0).expect("tile").1.y, 180);
        for (_, r, _) in &placed {
            assert!(r.x >= 0 && r.y >= 0 && r.x + r.w <= WIDTH && r.y + r.h <= HEIGHT);
        }
    }

    #[test]
    fn refuses_bad_durations_and_missing_inputs_before_building_anything() {
        let out = std::env::temp_dir().join("duet-compose-never-written.mp4");
        assert!(matches!(
            compose(&[], 0, &out, &|_| {}),
            Err(ComposeError::Invalid { .. })
        ));
        let missing = ComposeInput {
            path: PathBuf::from("/nonexistent/teacher-camera.webm"),
            ..input(Role::LeadCamera)
        };
        assert!(matches!(
            compose(&[missing], 1000, &out, &|_| {}),
            Err(ComposeError::MissingInput { .. })
        ));
        assert!(!out.exists());
    }

    #[test]
    fn teacher_alone_fills_the_frame() {
        let placed = layout(&[input(Role::Microphone), input(Role::LeadCamera)]);
        assert_eq!(
            placed,
            vec![(
                1,
                Rect {
                    x: 0,
                    y: 0,
                    w: 1280,
                    h: 720
                },
                1
            )]
        );
    }
}
