//! The H.264 encoder probe: a hardware encoder when GStreamer has one that works here, x264
//! otherwise.
//!
//! A hardware encoder's plugin can be installed without the hardware (or the driver) being
//! there, so "the factory exists" is not enough: [`probe`] instantiates each candidate, best
//! first, and takes the first that reaches `READY` (where hardware encoders open their device).
//! The answer is computed once per process and cached.
//!
//! [`H264Encoder::build`] makes the element with one set of intentions (bitrate, keyframe
//! interval, no B-frames, speed) expressed in each encoder's own property names. Every encoder
//! here takes `video/x-raw,format=I420` or NV12 in system memory, which the mixer gives it.

use std::sync::OnceLock;

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::capture::CaptureError;

/// An H.264 encoder GStreamer may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H264Encoder {
    /// NVIDIA NVENC (`nvh264enc`).
    Nvenc,
    /// VA-API, the newer plugin (`vah264enc`; Intel/AMD).
    Va,
    /// VA-API, the older plugin (`vaapih264enc`).
    Vaapi,
    /// Intel Quick Sync (`qsvh264enc`).
    Qsv,
    /// A V4L2 memory-to-memory encoder (`v4l2h264enc`; ARM boards).
    V4l2,
    /// x264 in software (`x264enc`), always there with gst-plugins-ugly.
    X264,
}

impl H264Encoder {
    /// Best first: hardware, then x264.
    pub const CANDIDATES: [H264Encoder; 6] = [
        H264Encoder::Nvenc,
        H264Encoder::Va,
        H264Encoder::Vaapi,
        H264Encoder::Qsv,
        H264Encoder::V4l2,
        H264Encoder::X264,
    ];

    /// The element factory's name.
    pub fn factory(self) -> &'static str {
        match self {
            H264Encoder::Nvenc => "nvh264enc",
            H264Encoder::Va => "vah264enc",
            H264Encoder::Vaapi => "vaapih264enc",
            H264Encoder::Qsv => "qsvh264enc",
            H264Encoder::V4l2 => "v4l2h264enc",
            H264Encoder::X264 => "x264enc",
        }
    }

    /// Whether it runs on dedicated hardware.
    pub fn is_hardware(self) -> bool {
        self != H264Encoder::X264
    }

    /// The encoder element: `bitrate_kbps`, a keyframe every `keyframe_interval` frames, no
    /// B-frames, and (x264 only) `speed_preset`. Properties an encoder lacks are left at its
    /// defaults.
    pub fn build(
        self,
        bitrate_kbps: u32,
        keyframe_interval: u32,
        speed_preset: &str,
    ) -> Result<gst::Element, CaptureError> {
        let element = gst::ElementFactory::make(self.factory())
            .build()
            .map_err(|_| CaptureError::MissingElement {
                factory: self.factory(),
            })?;
        let set_u32 = |name: &str, value: u32| {
            if let Some(spec) = element.find_property(name) {
                // Each plugin picks its own integer type for the same idea.
                let value = if spec.value_type() == u32::static_type() {
                    value.to_value()
                } else if spec.value_type() == i32::static_type() {
                    i32::try_from(value).unwrap_or(i32::MAX).to_value()
                } else if spec.value_type() == u64::static_type() {
                    u64::from(value).to_value()
                } else {
                    return;
                };
                element.set_property_from_value(name, &value);
            }
        };
        set_u32("bitrate", bitrate_kbps);
        match self {
            H264Encoder::X264 => {
                set_u32("key-int-max", keyframe_interval);
                set_u32("bframes", 0);
                element.set_property_from_str("speed-preset", speed_preset);
            }
            H264Encoder::Nvenc => {
                set_u32("gop-size", keyframe_interval);
                set_u32("bframes", 0);
            }
            H264Encoder::Va | H264Encoder::Qsv => {
                set_u32("key-int-max", keyframe_interval);
                set_u32("b-frames", 0);
            }
            H264Encoder::Vaapi => {
                set_u32("keyframe-period", keyframe_interval);
                set_u32("max-bframes", 0);
            }
            H264Encoder::V4l2 => {}
        }
        Ok(element)
    }

    /// Whether this encoder can be made and opened (`READY`) here.
    fn works(self) -> bool {
        let Ok(element) = gst::ElementFactory::make(self.factory()).build() else {
            return false;
        };
        let ok = element.set_state(gst::State::Ready).is_ok();
        let _ = element.set_state(gst::State::Null);
        ok
    }
}

/// The best H.264 encoder that works here (cached after the first call); `None` only when not
/// even x264 is installed. Blocking (opens devices) the first time.
pub fn probe() -> Option<H264Encoder> {
    static PROBED: OnceLock<Option<H264Encoder>> = OnceLock::new();
    *PROBED.get_or_init(|| {
        if gst::init().is_err() {
            return None;
        }
        let found = H264Encoder::CANDIDATES.into_iter().find(|e| e.works());
        match found {
            Some(e) => tracing::info!(
                encoder = e.factory(),
                hardware = e.is_hardware(),
                "H.264 encoder"
            ),
            None => tracing::error!("no H.264 encoder: install gstreamer1.0-plugins-ugly"),
        }
        found
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probed encoder (x264 on a machine without a GPU) encodes ten frames to H.264 with
    /// the settings the mixer asks for.
    #[test]
    fn the_probed_encoder_encodes_h264() {
        let encoder = probe().expect("x264enc at least (gstreamer1.0-plugins-ugly)");
        let pipeline = gst::Pipeline::new();
        let src = gst::ElementFactory::make("videotestsrc")
            .property("num-buffers", 10i32)
            .build()
            .unwrap();
        let caps = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("format", "I420")
                    .field("width", 320i32)
                    .field("height", 180i32)
                    .build(),
            )
            .build()
            .unwrap();
        let enc = encoder.build(1000, 50, "ultrafast").unwrap();
        let parse = gst::ElementFactory::make("h264parse").build().unwrap();
        let sink = gst::ElementFactory::make("fakesink").build().unwrap();
        pipeline
            .add_many([&src, &caps, &enc, &parse, &sink])
            .unwrap();
        gst::Element::link_many([&src, &caps, &enc, &parse, &sink]).unwrap();
        let caps_seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen = std::sync::Arc::clone(&caps_seen);
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
                *seen.lock().unwrap() = pad.current_caps();
                gst::PadProbeReturn::Ok
            });
        pipeline.set_state(gst::State::Playing).unwrap();
        let msg = pipeline
            .bus()
            .unwrap()
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(20),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("the encode ends");
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
        let caps = caps_seen.lock().unwrap().clone().expect("frames came out");
        assert_eq!(caps.structure(0).unwrap().name(), "video/x-h264");
        if encoder == H264Encoder::X264 {
            assert_eq!(
                enc.property::<u32>("key-int-max"),
                50,
                "the keyframe interval reached x264"
            );
        }
    }

    #[test]
    fn every_candidate_names_a_distinct_factory_and_x264_comes_last() {
        let names: std::collections::BTreeSet<_> = H264Encoder::CANDIDATES
            .iter()
            .map(|e| e.factory())
            .collect();
        assert_eq!(names.len(), H264Encoder::CANDIDATES.len());
        assert_eq!(H264Encoder::CANDIDATES.last(), Some(&H264Encoder::X264));
        assert!(!H264Encoder::X264.is_hardware());
    }
}
