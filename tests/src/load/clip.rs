//! Pre-encoded media for the load tool: short clips encoded once with GStreamer, packetized by
//! GStreamer's own RTP payloaders, cached on disk, and looped by publishers.
//!
//! A clip is the RTP packet sequence a payloader produced (`rtph264pay`, `rtpvp8pay`,
//! `rtpopuspay`), grouped into frames (packets sharing a timestamp). A publisher replays frames
//! at their own pace, with its own sequence numbers, SSRC and continuing timestamps, so what
//! reaches the SFU is what a browser would send: real encoder output, real keyframes, real packet
//! sizes. Video clips use GStreamer's moving zone plate, fine detail in constant motion, so both
//! encoders spend about their whole bitrate, as a classroom camera with motion does (pure noise
//! would make VP8 overshoot its target tenfold; a still picture would leave it idle).
//!
//! The cache file is the payloader's packets, each preceded by its length as a big-endian `u16`.
//! A cache file that does not parse is made again.

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use duet_sfu::core::Codec;
use gstreamer as gst;
use gstreamer::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What a clip is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClipSpec {
    /// Codec.
    pub codec: Codec,
    /// Picture size (ignored for audio).
    pub width: u32,
    /// Picture height (ignored for audio).
    pub height: u32,
    /// Frames per second (audio: 50, one Opus frame per 20 ms).
    pub fps: u32,
    /// Target bitrate, kbit/s.
    pub kbps: u32,
    /// Keyframe interval in frames (video).
    pub gop: u32,
    /// Length in seconds.
    pub seconds: u32,
}

impl ClipSpec {
    /// Opus, 32 kbit/s, 20 ms frames.
    pub fn opus(seconds: u32) -> Self {
        Self {
            codec: Codec::Opus,
            width: 0,
            height: 0,
            fps: 50,
            kbps: 32,
            gop: 1,
            seconds,
        }
    }

    /// A video clip with a keyframe every two seconds.
    pub fn video(codec: Codec, width: u32, height: u32, fps: u32, kbps: u32, seconds: u32) -> Self {
        Self {
            codec,
            width,
            height,
            fps,
            kbps,
            gop: fps * 2,
            seconds,
        }
    }

    fn file_name(&self) -> String {
        let codec = match self.codec {
            // No clip is RED (`ClipSpec::opus` makes Opus); its primary encoding is Opus.
            Codec::Opus | Codec::Red => "opus",
            Codec::Vp8 => "vp8",
            Codec::H264 => "h264",
        };
        format!(
            "{codec}-{}x{}-{}fps-{}k-g{}-{}s.v3.rtp",
            self.width, self.height, self.fps, self.kbps, self.gop, self.seconds
        )
    }

    fn pipeline(&self) -> String {
        let frames = self.fps * self.seconds;
        let video = |enc: String| {
            format!(
                "videotestsrc pattern=zone-plate kx2=20 ky2=20 kt=1 num-buffers={frames} ! \
                 video/x-raw,format=I420,width={},height={},framerate={}/1 ! {enc} ! fakesink name=sink sync=false",
                self.width, self.height, self.fps
            )
        };
        match self.codec {
            Codec::H264 => video(format!(
                "x264enc bitrate={} speed-preset=ultrafast tune=zerolatency key-int-max={} bframes=0 \
                 vbv-buf-capacity=500 ! video/x-h264,profile=constrained-baseline ! \
                 rtph264pay mtu=1200 config-interval=-1 aggregate-mode=zero-latency pt=102",
                self.kbps, self.gop
            )),
            Codec::Vp8 => video(format!(
                "vp8enc target-bitrate={} end-usage=cbr deadline=1 cpu-used=8 keyframe-max-dist={} \
                 threads=2 ! rtpvp8pay mtu=1200 picture-id-mode=15-bit pt=96",
                self.kbps * 1000,
                self.gop
            )),
            Codec::Opus | Codec::Red => format!(
                "audiotestsrc wave=ticks num-buffers={frames} samplesperbuffer=960 ! \
                 audio/x-raw,rate=48000,channels=2 ! opusenc bitrate={} bitrate-type=cbr frame-size=20 ! \
                 rtpopuspay pt=111 ! fakesink name=sink sync=false",
                self.kbps * 1000
            ),
        }
    }
}

/// One RTP packet of a clip: its payload and marker bit.
#[derive(Clone, Debug)]
pub struct ClipPacket {
    /// The payload, shared by every publisher that sends it.
    pub payload: Bytes,
    /// Marker bit (last packet of a video frame).
    pub marker: bool,
}

/// Packets that share a timestamp.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Timestamp relative to the clip's first frame, in RTP clock units.
    pub ts: u32,
    /// Whether the frame starts with a keyframe.
    pub keyframe: bool,
    /// Its packets, in order.
    pub packets: Vec<ClipPacket>,
}

/// A clip ready to loop.
#[derive(Clone, Debug)]
pub struct Clip {
    /// What it was made from.
    pub spec: ClipSpec,
    /// Frames in order; the first is a keyframe.
    pub frames: Arc<Vec<Frame>>,
    /// Length in RTP clock units (a loop adds this to every timestamp).
    pub duration_ts: u32,
}

impl Clip {
    /// Loads the clip from `dir`, making (and caching) it with GStreamer first if needed.
    pub fn load_or_make(spec: ClipSpec, dir: &Path) -> anyhow::Result<Clip> {
        let path = dir.join(spec.file_name());
        if let Ok(raw) = std::fs::read(&path) {
            match Clip::parse(spec, &raw) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cached clip unusable; making it again")
                }
            }
        }
        let raw = make(&spec)?;
        let clip = Clip::parse(spec, &raw).context("the freshly made clip does not parse")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, &raw).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(clip)
    }

    /// Parses a cache file: length-prefixed RTP packets.
    pub fn parse(spec: ClipSpec, raw: &[u8]) -> anyhow::Result<Clip> {
        let mut frames: Vec<Frame> = Vec::new();
        let mut rest = raw;
        let mut first_ts = None;
        while !rest.is_empty() {
            let [a, b, tail @ ..] = rest else {
                bail!("truncated length prefix");
            };
            let len = usize::from(u16::from_be_bytes([*a, *b]));
            if tail.len() < len {
                bail!(
                    "truncated packet ({len} bytes announced, {} left)",
                    tail.len()
                );
            }
            let (packet, tail) = tail.split_at(len);
            rest = tail;
            let (marker, ts, payload) = split_rtp(packet)?;
            let first = *first_ts.get_or_insert(ts);
            let rel = ts.wrapping_sub(first);
            let p = ClipPacket {
                payload: Bytes::copy_from_slice(payload),
                marker,
            };
            match frames.last_mut() {
                Some(f) if f.ts == rel => f.packets.push(p),
                _ => frames.push(Frame {
                    ts: rel,
                    keyframe: spec.codec.is_keyframe_start(payload),
                    packets: vec![p],
                }),
            }
        }
        let Some(first) = frames.first() else {
            bail!("the clip holds no packets");
        };
        if !first.keyframe {
            bail!("the clip does not start with a keyframe");
        }
        let last_ts = frames.last().map_or(0, |f| f.ts);
        let frame_ts = spec.codec.clock_rate() / spec.fps.max(1);
        Ok(Clip {
            spec,
            frames: Arc::new(frames),
            duration_ts: last_ts.wrapping_add(frame_ts),
        })
    }

    /// Time between two frames.
    pub fn frame_interval(&self) -> std::time::Duration {
        std::time::Duration::from_micros(1_000_000 / u64::from(self.spec.fps.max(1)))
    }

    /// RTP packets per second of one loop, as sent.
    pub fn packet_rate(&self) -> f64 {
        let packets: usize = self.frames.iter().map(|f| f.packets.len()).sum();
        packets as f64 / f64::from(self.spec.seconds.max(1))
    }

    /// Payload bits per second of one loop, as sent.
    pub fn bitrate(&self) -> u64 {
        let bytes: usize = self
            .frames
            .iter()
            .flat_map(|f| f.packets.iter())
            .map(|p| p.payload.len() + 12)
            .sum();
        bytes as u64 * 8 / u64::from(self.spec.seconds.max(1))
    }
}

/// The marker bit, timestamp and payload of an RTP packet.
fn split_rtp(p: &[u8]) -> anyhow::Result<(bool, u32, &[u8])> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        bail!("not an RTP packet ({} bytes)", p.len());
    }
    let cc = usize::from(p[0] & 0x0f);
    let mut off = 12 + 4 * cc;
    if p[0] & 0x10 != 0 {
        let ext = p
            .get(off + 2..off + 4)
            .ok_or_else(|| anyhow!("truncated header extension"))?;
        off += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        let pad = usize::from(*p.last().unwrap_or(&0));
        end = end.saturating_sub(pad);
    }
    if off >= end {
        bail!("RTP packet without payload");
    }
    let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    Ok((p[1] & 0x80 != 0, ts, &p[off..end]))
}

/// Runs the clip's GStreamer pipeline to the end and returns the length-prefixed packets.
fn make(spec: &ClipSpec) -> anyhow::Result<Vec<u8>> {
    gst::init().context("GStreamer did not initialise")?;
    let desc = spec.pipeline();
    tracing::info!(pipeline = %desc, "encoding a load clip");
    let pipeline = gst::parse::launch(&desc)
        .with_context(|| format!("pipeline {desc}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline"))?;
    let sink = pipeline
        .by_name("sink")
        .ok_or_else(|| anyhow!("no sink in the clip pipeline"))?;
    let pad = sink
        .static_pad("sink")
        .ok_or_else(|| anyhow!("the sink has no pad"))?;
    let out = Arc::new(Mutex::new(Vec::<u8>::new()));
    let collected = out.clone();
    // Payloaders push a frame's packets as one buffer list: take both shapes.
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| {
            if let Ok(mut v) = collected.lock() {
                match &info.data {
                    Some(gst::PadProbeData::Buffer(buf)) => append(&mut v, buf),
                    Some(gst::PadProbeData::BufferList(list)) => {
                        for buf in list.iter() {
                            append(&mut v, buf);
                        }
                    }
                    _ => {}
                }
            }
            gst::PadProbeReturn::Ok
        },
    );
    pipeline
        .set_state(gst::State::Playing)
        .context("the clip pipeline did not start")?;
    let bus = pipeline.bus().ok_or_else(|| anyhow!("no bus"))?;
    let result = loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(120)) else {
            break Err(anyhow!("encoding the clip took over two minutes"));
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => {
                break Err(anyhow!("encoding failed: {} ({:?})", e.error(), e.debug()));
            }
            _ => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    let v = out.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    Ok(v)
}

/// Appends one packet, length-prefixed.
fn append(out: &mut Vec<u8>, buf: &gst::BufferRef) {
    if let Ok(map) = buf.map_readable()
        && let Ok(len) = u16::try_from(map.len())
    {
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&map);
    }
}

/// The default cache directory: `$DUET_LOAD_CLIPS`, else `<tmp>/duet-load-clips`.
pub fn default_dir() -> PathBuf {
    std::env::var_os("DUET_LOAD_CLIPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("duet-load-clips"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_cache_files_are_refused() {
        let spec = ClipSpec::opus(1);
        assert!(Clip::parse(spec, &[]).is_err());
        assert!(Clip::parse(spec, &[0, 40, 1, 2]).is_err());
        assert!(Clip::parse(spec, &[0, 3, 0x80, 0, 0]).is_err());
        let mut one = vec![0u8, 13];
        one.extend_from_slice(&[0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xfc]);
        let c = Clip::parse(spec, &one).unwrap();
        assert_eq!(c.frames.len(), 1);
        assert_eq!(c.duration_ts, 960);
    }
}
