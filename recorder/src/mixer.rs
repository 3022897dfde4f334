//! Movie mode (电影模式): the programme mixer, one directed 1920×1080 H.264 + AAC programme,
//! and the confidence previews of every source and of the programme.
//!
//! Owns one pipeline per lesson part, built with element builders (its shape depends on the
//! room's sources). Sources reach it through inter channels, fed by each source's recorder
//! ([`crate::capture::Feed`]), so a camera that drops out never touches this pipeline:
//!
//! ```text
//! intervideosrc channel=<feed> (black after 1 s without frames) ! videoconvert ! videoscale ! I420 WxH
//!   ! textoverlay (the "signal lost" slate, empty while the source works) ! tee
//!     tee. ! queue ! compositor.sink_N   (position, size, alpha and z-order set per shot)
//!     tee. ! queue (leaky) ! videorate 1 fps ! videoscale 320×180 ! jpegenc ! fakesink  (preview)
//! compositor (black background) ! video/x-raw,format=I420,1920×1080,F ! tee
//!   tee. ! queue ! x264enc (or a hardware encoder) ! h264parse ! matroskamux ! filesink programme.mkv
//!   tee. ! queue (leaky) ! videorate 1 fps ! videoscale 480×270 ! jpegenc ! fakesink  (preview)
//! interaudiosrc channel=<microphone feed> (silence without one) ! audioconvert ! audioresample
//!   ! avenc_aac ! aacparse ! queue ! matroskamux
//! ```
//!
//! Invariants:
//! - `video/x-raw,format=I420` is pinned before `x264enc` (compositor output would otherwise make
//!   x264 encode 4:4:4, undecodable in browsers).
//! - Video and audio are both timestamped by this pipeline's clock as they leave the inter
//!   sources, so the programme's audio is in step with its picture up to the two feeds' latency
//!   difference (both pass one RTSP jitter buffer and one decoder).
//! - The programme is Matroska written as it is encoded, like the source files: a crash leaves a
//!   readable file; delivery remuxes it into an MP4 with the index at the front.
//! - [`Mixer::show`] and [`Mixer::set_lost`] only set element properties: cheap, callable from any
//!   thread, never a state change.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use serde::{Deserialize, Serialize};

use crate::capture::{CaptureError, RecordedFile, SourceRecorder};
use crate::director::{Shot, SourceId};

/// The preview key of the programme (sources use their device id).
pub const PROGRAMME: &str = "programme";

/// Settings of the programme and the feeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixerConfig {
    /// Programme width in pixels (default 1920).
    pub width: u32,
    /// Programme height in pixels (default 1080).
    pub height: u32,
    /// Frames per second of the programme and the feeds (default 25).
    pub framerate: u32,
    /// Programme bitrate, kbit/s (default 4000; the archive allows up to 8000).
    pub bitrate_kbps: u32,
    /// x264 speed preset (`ultrafast` … `medium`; default `veryfast`). A hardware H.264 encoder
    /// is used instead when GStreamer has one that works here ([`crate::encoder::probe`]).
    pub speed_preset: String,
    /// Width sources are decoded to for mixing and preview (default 1280).
    pub feed_width: u32,
    /// Height sources are decoded to (default 720).
    pub feed_height: u32,
}

impl Default for MixerConfig {
    fn default() -> Self {
        Self {
            width: 1920,
            height: 1080,
            framerate: 25,
            bitrate_kbps: 4000,
            speed_preset: "veryfast".into(),
            feed_width: 1280,
            feed_height: 720,
        }
    }
}

impl MixerConfig {
    /// Refuses sizes and rates out of range and unknown presets.
    pub fn validate(&self) -> Result<(), CaptureError> {
        let bad = |reason: String| Err(CaptureError::Config { reason });
        for (what, v, max) in [
            ("width", self.width, 7680),
            ("height", self.height, 4320),
            ("feed_width", self.feed_width, 3840),
            ("feed_height", self.feed_height, 2160),
            ("framerate", self.framerate, 60),
        ] {
            if v == 0 || v > max || (what != "framerate" && v % 2 != 0) {
                return bad(format!("mixer.{what} must be even and between 2 and {max}"));
            }
        }
        if !(100..=50_000).contains(&self.bitrate_kbps) {
            return bad("mixer.bitrate_kbps must be between 100 and 50000".into());
        }
        const PRESETS: [&str; 6] = [
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
        ];
        if !PRESETS.contains(&self.speed_preset.as_str()) {
            return bad(format!("mixer.speed_preset must be one of {PRESETS:?}"));
        }
        Ok(())
    }
}

/// One video input of the mixer.
#[derive(Clone, Debug)]
pub struct MixerInput {
    /// The director's id of this source.
    pub source: SourceId,
    /// The device id (the preview key).
    pub id: String,
    /// What the slate says is lost, e.g. 教师特写.
    pub label: String,
    /// The inter channel the source's recorder feeds.
    pub channel: String,
}

/// A rectangle of the programme frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub w: i32,
    /// Height.
    pub h: i32,
}

/// Where each source of `shot` goes in a `width`×`height` programme, with its z-order: the full
/// frame for a single source; a quarter-size inset 1/32 of the width from the bottom-right
/// corner over the main source for picture in picture; two 16:9 halves, letterboxed, side by
/// side. Pure.
pub fn layout(shot: &Shot, width: u32, height: u32) -> Vec<(SourceId, Rect, u32)> {
    let (w, h) = (width as i32, height as i32);
    let full = Rect { x: 0, y: 0, w, h };
    match *shot {
        Shot::Single(a) => vec![(a, full, 1)],
        Shot::PictureInPicture { main, inset } => {
            let margin = w / 32;
            let (iw, ih) = (w / 4, h / 4);
            let corner = Rect {
                x: w - iw - margin,
                y: h - ih - margin,
                w: iw,
                h: ih,
            };
            vec![(main, full, 1), (inset, corner, 2)]
        }
        Shot::SideBySide(a, b) => {
            let (hw, hh) = (w / 2, h / 2);
            let top = (h - hh) / 2;
            vec![
                (
                    a,
                    Rect {
                        x: 0,
                        y: top,
                        w: hw,
                        h: hh,
                    },
                    1,
                ),
                (
                    b,
                    Rect {
                        x: hw,
                        y: top,
                        w: hw,
                        h: hh,
                    },
                    1,
                ),
            ]
        }
    }
}

/// The latest JPEG of each preview, by key; cheap to clone, shared with the streaming threads
/// that write it and whoever reads it (a lesson, its room).
#[derive(Clone, Debug, Default)]
pub(crate) struct Previews(Arc<Mutex<HashMap<String, Vec<u8>>>>);

impl Previews {
    /// The latest JPEG under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0
            .lock()
            .expect("preview lock poisoned")
            .get(key)
            .cloned()
    }

    fn set(&self, key: &str, jpeg: &[u8]) {
        self.0
            .lock()
            .expect("preview lock poisoned")
            .insert(key.to_owned(), jpeg.to_vec());
    }
}

/// One input's handles.
#[derive(Debug)]
struct Input {
    /// The director's id.
    source: SourceId,
    /// The compositor's request pad for this input.
    pad: gst::Pad,
    /// The slate overlay.
    slate: gst::Element,
    /// The slate text when lost.
    slate_text: String,
}

/// The programme pipeline of one lesson part; see the module doc.
#[derive(Debug)]
pub struct Mixer {
    /// The recording machinery (bus thread, first-buffer mark, EOS on stop).
    recording: SourceRecorder,
    /// Per input: compositor pad and slate.
    inputs: Vec<Input>,
    /// Programme size, for layouts.
    size: (u32, u32),
}

fn make(factory: &'static str) -> Result<gst::Element, CaptureError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| CaptureError::MissingElement { factory })
}

fn capsfilter(caps: gst::Caps) -> Result<gst::Element, CaptureError> {
    gst::ElementFactory::make("capsfilter")
        .property("caps", caps)
        .build()
        .map_err(|_| CaptureError::MissingElement {
            factory: "capsfilter",
        })
}

fn leaky_queue() -> Result<gst::Element, CaptureError> {
    gst::ElementFactory::make("queue")
        .property_from_str("leaky", "downstream")
        .property("max-size-buffers", 5u32)
        .property("max-size-time", 0u64)
        .property("max-size-bytes", 0u32)
        .build()
        .map_err(|_| CaptureError::MissingElement { factory: "queue" })
}

fn raw_video(width: u32, height: u32, framerate: Option<u32>) -> gst::Caps {
    let mut b = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", width as i32)
        .field("height", height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .field("interlace-mode", "progressive");
    if let Some(f) = framerate {
        b = b.field("framerate", gst::Fraction::new(f as i32, 1));
    }
    b.build()
}

/// Adds a preview branch from `tee`: one JPEG a second at `width`×`height`, kept under `key`.
fn add_preview(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    key: String,
    (width, height): (u32, u32),
    previews: &Previews,
) -> Result<(), CaptureError> {
    let elements = [
        leaky_queue()?,
        make("videorate")?,
        make("videoscale")?,
        capsfilter(raw_video(width, height, Some(1)))?,
        gst::ElementFactory::make("jpegenc")
            .property("quality", 70i32)
            .build()
            .map_err(|_| CaptureError::MissingElement { factory: "jpegenc" })?,
        gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
            .map_err(|_| CaptureError::MissingElement {
                factory: "fakesink",
            })?,
    ];
    let fail = |e: gst::glib::BoolError| CaptureError::Pipeline {
        url: "programme".into(),
        reason: e.to_string(),
    };
    pipeline.add_many(&elements).map_err(fail)?;
    gst::Element::link_many(&elements).map_err(fail)?;
    tee.link(&elements[0]).map_err(fail)?;
    let previews = previews.clone();
    elements[5]
        .static_pad("sink")
        .expect("fakesink has a sink pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer()
                && let Ok(map) = buffer.map_readable()
            {
                previews.set(&key, map.as_slice());
            }
            gst::PadProbeReturn::Ok
        });
    Ok(())
}

impl Mixer {
    /// Builds and starts the programme of `inputs` into `out` (Matroska), showing `first` (the
    /// director's opening shot), with the audio of the `audio_channel` feed (silence without
    /// one). Previews go to `previews` (shared, so that a mixer started again keeps its readers).
    /// Blocking.
    pub(crate) fn start(
        config: &MixerConfig,
        inputs: &[MixerInput],
        audio_channel: Option<&str>,
        out: &Path,
        first: &Shot,
        previews: Previews,
    ) -> Result<Self, CaptureError> {
        config.validate()?;
        gst::init().map_err(CaptureError::Init)?;
        let span = tracing::info_span!("programme", path = %out.display());
        let fail = |e: gst::glib::BoolError| CaptureError::Pipeline {
            url: "programme".into(),
            reason: e.to_string(),
        };
        let pipeline = gst::Pipeline::with_name("programme");

        let compositor = gst::ElementFactory::make("compositor")
            .property_from_str("background", "black")
            .build()
            .map_err(|_| CaptureError::MissingElement {
                factory: "compositor",
            })?;
        pipeline.add(&compositor).map_err(fail)?;

        let mut handles = Vec::with_capacity(inputs.len());
        for input in inputs {
            let src = gst::ElementFactory::make("intervideosrc")
                .property("channel", &input.channel)
                .property("timeout", gst::ClockTime::SECOND.nseconds())
                .build()
                .map_err(|_| CaptureError::MissingElement {
                    factory: "intervideosrc",
                })?;
            let caps = capsfilter(raw_video(
                config.feed_width,
                config.feed_height,
                Some(config.framerate),
            ))?;
            let slate = gst::ElementFactory::make("textoverlay")
                .property("text", "")
                .property("font-desc", "Sans Bold 40")
                .property_from_str("valignment", "center")
                .property_from_str("halignment", "center")
                .property("shaded-background", true)
                .build()
                .map_err(|_| CaptureError::MissingElement {
                    factory: "textoverlay",
                })?;
            let tee = make("tee")?;
            let queue = make("queue")?;
            // intervideosrc starts with caps of its own (black frames) and switches to the feed's
            // exact caps (colorimetry, interlace mode) when the feed's first frame arrives; the
            // converters absorb that switch, which otherwise fails the overlay's negotiation now
            // and then and leaves the whole programme empty.
            let chain = [
                src,
                make("videoconvert")?,
                make("videoscale")?,
                caps,
                slate.clone(),
                tee.clone(),
                queue.clone(),
            ];
            pipeline.add_many(&chain).map_err(fail)?;
            gst::Element::link_many(&chain).map_err(fail)?;
            let pad =
                compositor
                    .request_pad_simple("sink_%u")
                    .ok_or_else(|| CaptureError::Pipeline {
                        url: "programme".into(),
                        reason: "compositor gave no sink pad".into(),
                    })?;
            queue
                .static_pad("src")
                .expect("queue has a src pad")
                .link(&pad)
                .map_err(|e| CaptureError::Pipeline {
                    url: "programme".into(),
                    reason: format!("{e:?}"),
                })?;
            add_preview(&pipeline, &tee, input.id.clone(), (320, 180), &previews)?;
            handles.push(Input {
                source: input.source,
                pad,
                slate,
                slate_text: format!("信号丢失 Signal lost\n{}", input.label),
            });
        }

        let out_caps = capsfilter(raw_video(
            config.width,
            config.height,
            Some(config.framerate),
        ))?;
        let out_tee = make("tee")?;
        let enc_queue = make("queue")?;
        let encoder = crate::encoder::probe()
            .ok_or(CaptureError::MissingElement { factory: "x264enc" })?
            .build(
                config.bitrate_kbps,
                config.framerate * 2,
                &config.speed_preset,
            )?;
        let i420 = capsfilter(raw_video(config.width, config.height, None))?;
        let parse = make("h264parse")?;
        let mux = gst::ElementFactory::make("matroskamux")
            .property(
                "max-cluster-duration",
                gst::ClockTime::SECOND.nseconds() as i64,
            )
            .build()
            .map_err(|_| CaptureError::MissingElement {
                factory: "matroskamux",
            })?;
        let sink = gst::ElementFactory::make("filesink")
            .property("location", out.to_string_lossy().as_ref())
            .property_from_str("buffer-mode", "unbuffered")
            .build()
            .map_err(|_| CaptureError::MissingElement {
                factory: "filesink",
            })?;
        let video_chain = [
            out_caps,
            out_tee.clone(),
            enc_queue,
            i420,
            encoder,
            parse,
            mux.clone(),
            sink.clone(),
        ];
        pipeline.add_many(&video_chain).map_err(fail)?;
        compositor.link(&video_chain[0]).map_err(fail)?;
        gst::Element::link_many(&video_chain).map_err(fail)?;
        add_preview(
            &pipeline,
            &out_tee,
            PROGRAMME.to_owned(),
            (480, 270),
            &previews,
        )?;

        let audio_src = gst::ElementFactory::make("interaudiosrc")
            .property(
                "channel",
                audio_channel.unwrap_or("duet/no-microphone").to_owned(),
            )
            .build()
            .map_err(|_| CaptureError::MissingElement {
                factory: "interaudiosrc",
            })?;
        let audio_chain = [
            audio_src,
            make("audioconvert")?,
            make("audioresample")?,
            capsfilter(
                gst::Caps::builder("audio/x-raw")
                    .field("rate", 48_000i32)
                    .field("channels", 2i32)
                    .build(),
            )?,
            gst::ElementFactory::make("avenc_aac")
                .property("bitrate", 128_000i32)
                .build()
                .map_err(|_| CaptureError::MissingElement {
                    factory: "avenc_aac",
                })?,
            make("aacparse")?,
            make("queue")?,
        ];
        pipeline.add_many(&audio_chain).map_err(fail)?;
        gst::Element::link_many(&audio_chain).map_err(fail)?;
        audio_chain[6].link(&mux).map_err(fail)?;

        let mixer = Self {
            recording: SourceRecorder::launch(pipeline, &sink, out, "programme".into(), span)?,
            inputs: handles,
            size: (config.width, config.height),
        };
        mixer.show(first);
        Ok(mixer)
    }

    /// Puts `shot` on air: its sources at their places, every other input hidden.
    pub fn show(&self, shot: &Shot) {
        let placed = layout(shot, self.size.0, self.size.1);
        for input in &self.inputs {
            let pad = &input.pad;
            match placed.iter().find(|(s, _, _)| *s == input.source) {
                Some((_, rect, z)) => {
                    pad.set_property("xpos", rect.x);
                    pad.set_property("ypos", rect.y);
                    pad.set_property("width", rect.w);
                    pad.set_property("height", rect.h);
                    pad.set_property("zorder", *z);
                    pad.set_property("alpha", 1.0f64);
                }
                None => pad.set_property("alpha", 0.0f64),
            }
        }
    }

    /// Shows or hides the "signal lost" slate over `source`'s picture.
    pub fn set_lost(&self, source: SourceId, lost: bool) {
        if let Some(input) = self.inputs.iter().find(|i| i.source == source) {
            let text = if lost { input.slate_text.as_str() } else { "" };
            input.slate.set_property("text", text);
        }
    }

    /// Whether the slate of `source` is showing.
    pub fn is_slate_on(&self, source: SourceId) -> bool {
        self.inputs
            .iter()
            .find(|i| i.source == source)
            .is_some_and(|i| !i.slate.property::<String>("text").is_empty())
    }

    /// Blocks until the first programme frame is in the file, or `timeout`.
    pub fn wait_recording(&self, timeout: std::time::Duration) -> Result<(), CaptureError> {
        self.recording.wait_recording(timeout)
    }

    /// Ends the programme: EOS, wait for the file, `Null`, probe. Blocking.
    pub fn stop(self) -> Result<RecordedFile, CaptureError> {
        self.recording.stop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_fill_the_frame_and_keep_insets_inside() {
        let (a, b) = (SourceId(1), SourceId(2));
        assert_eq!(
            layout(&Shot::Single(a), 1920, 1080),
            vec![(
                a,
                Rect {
                    x: 0,
                    y: 0,
                    w: 1920,
                    h: 1080
                },
                1
            )]
        );
        let pip = layout(&Shot::PictureInPicture { main: a, inset: b }, 1920, 1080);
        let (_, inset, z) = pip[1];
        assert!(z > pip[0].2, "the inset is above the main picture");
        assert!(inset.x + inset.w <= 1920 && inset.y + inset.h <= 1080);
        assert_eq!((inset.w, inset.h), (480, 270));
        let split = layout(&Shot::SideBySide(a, b), 1920, 1080);
        assert_eq!(split[0].1.x + split[0].1.w, split[1].1.x, "halves touch");
        assert_eq!(split[1].1.x + split[1].1.w, 1920);
        assert_eq!(split[0].1.w * 9, split[0].1.h * 16, "halves stay 16:9");
    }

    #[test]
    fn config_refuses_odd_sizes_and_unknown_presets() {
        assert!(MixerConfig::default().validate().is_ok());
        let odd = MixerConfig {
            width: 1919,
            ..MixerConfig::default()
        };
        assert!(odd.validate().is_err());
        let preset = MixerConfig {
            speed_preset: "placebo ! fakesink".into(),
            ..MixerConfig::default()
        };
        assert!(preset.validate().is_err());
    }
}
