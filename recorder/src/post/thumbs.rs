//! The review video's pictures for the player: a poster (a frame ~10 % in) and one storyboard
//! sprite (a tile every `interval_ms`, row by row, at most [`MAX_COLUMNS`] columns) that the
//! player's seek bar shows on hover. With ffmpeg-next (FFmpeg 5.1): decode, scale (swscale),
//! encode JPEG (FFmpeg's MJPEG encoder); nothing shelled out.
//!
//! Tile `k` shows the first frame at or after `k × interval_ms` (the last frame, past the end),
//! so `count = ceil(duration / interval)`. Tiles keep the video's display aspect ratio; sizes are
//! even (4:2:0 chroma). [`Storyboard`] serialises to the contract's `media.storyboard` (its
//! `file` relative to `out_dir`: prefix the archive directory, e.g. `thumbs/`).
//!
//! Blocking and CPU-bound (a seek and a short decode per tile): run off async threads.

use std::fs;
use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;
use serde::Serialize;

/// The poster's file name in `out_dir`.
pub const POSTER_FILE: &str = "poster.jpg";

/// The storyboard sprite's file name in `out_dir`.
pub const STORYBOARD_FILE: &str = "storyboard.jpg";

/// Most tiles per row of the sprite.
pub const MAX_COLUMNS: u32 = 10;

/// Most tiles in one sprite (a 45-minute lesson at 10 s needs 270).
pub const MAX_TILES: u32 = 1000;

/// The poster is scaled down to at most this width.
const POSTER_MAX_WIDTH: u32 = 1280;

/// JPEG quantiser scale (2 best … 31 worst): small files, no visible blocks at these sizes.
const JPEG_QSCALE: i32 = 5;

/// Decode forward instead of seeking when the next tile is less than this far ahead, seconds.
const DECODE_AHEAD_S: f64 = 4.0;

/// What went wrong making the thumbnails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ThumbsError {
    /// FFmpeg could not be initialised.
    #[error("FFmpeg init failed: {0}")]
    Init(#[source] ffmpeg::Error),
    /// The interval or tile width is out of range, or the video would need too many tiles.
    #[error("invalid storyboard request: {reason}")]
    Invalid {
        /// Why.
        reason: String,
    },
    /// The input cannot be read or decoded, or holds no video.
    #[error("{path}: {reason}")]
    Media {
        /// The input.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Writing an output failed.
    #[error("{path}: {source}")]
    Io {
        /// The output.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The storyboard sprite as the player needs it: the contract's `media.storyboard`, plus the
/// poster's file name (not serialised).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Storyboard {
    /// The poster's file name in `out_dir` ([`POSTER_FILE`]).
    #[serde(skip)]
    pub poster: String,
    /// The sprite's file name in `out_dir` ([`STORYBOARD_FILE`]).
    pub file: String,
    /// Time between tiles, ms.
    pub interval_ms: u64,
    /// Tiles per row.
    pub columns: u32,
    /// Tile width, pixels.
    pub tile_width: u32,
    /// Tile height, pixels.
    pub tile_height: u32,
    /// Tiles in the sprite (the last row may be partly black).
    pub count: u32,
}

/// Writes `poster.jpg` and `storyboard.jpg` for the video `mp4` into `out_dir` (created if
/// missing): see the module doc. `interval_ms` ≥ 100, `tile_width` 16..=640.
pub fn poster_and_storyboard(
    mp4: &Path,
    out_dir: &Path,
    interval_ms: u64,
    tile_width: u32,
) -> Result<Storyboard, ThumbsError> {
    if interval_ms < 100 || !(16..=640).contains(&tile_width) {
        return Err(ThumbsError::Invalid {
            reason: format!(
                "interval_ms {interval_ms} must be ≥ 100 and tile_width {tile_width} 16..=640"
            ),
        });
    }
    ffmpeg::init().map_err(ThumbsError::Init)?;
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
    let mut video = VideoReader::open(mp4)?;
    let fail = video.fail();

    let duration_s = video.duration_s;
    let count = ((duration_s * 1000.0 / interval_ms as f64).ceil() as u64).max(1);
    if count > u64::from(MAX_TILES) {
        return Err(ThumbsError::Invalid {
            reason: format!(
                "{duration_s:.0} s at {interval_ms} ms needs {count} tiles, more than {MAX_TILES}"
            ),
        });
    }
    let count = count as u32;
    let (width, height) = video.display_size();
    let tile_width = even(tile_width);
    let tile_height =
        even((f64::from(tile_width) * f64::from(height) / f64::from(width)).round() as u32).max(2);
    let columns = count.min(MAX_COLUMNS);
    let rows = count.div_ceil(columns);

    fs::create_dir_all(out_dir).map_err(|source| ThumbsError::Io {
        path: out_dir.to_owned(),
        source,
    })?;

    // The poster first (one seek), then the tiles in order (mostly decoding forward).
    let poster = video.frame_at(duration_s * 0.1)?;
    let poster_width = even(width.min(POSTER_MAX_WIDTH));
    let poster_height =
        even((f64::from(poster_width) * f64::from(height) / f64::from(width)).round() as u32)
            .max(2);
    let poster = scale(&poster, poster_width, poster_height).map_err(&fail)?;
    write(
        &out_dir.join(POSTER_FILE),
        &encode_jpeg(&poster).map_err(&fail)?,
    )?;

    let mut sprite = ffmpeg::frame::Video::new(
        ffmpeg::format::Pixel::YUVJ420P,
        columns * tile_width,
        rows * tile_height,
    );
    for (plane, value) in [(0, 0u8), (1, 128), (2, 128)] {
        sprite.data_mut(plane).fill(value); // black
    }
    for k in 0..count {
        let at_s = (k as f64 * interval_ms as f64 / 1000.0).min(duration_s);
        let frame = video.frame_at(at_s)?;
        let tile = scale(&frame, tile_width, tile_height).map_err(&fail)?;
        blit(
            &tile,
            &mut sprite,
            (k % columns) * tile_width,
            (k / columns) * tile_height,
        );
    }
    write(
        &out_dir.join(STORYBOARD_FILE),
        &encode_jpeg(&sprite).map_err(&fail)?,
    )?;
    Ok(Storyboard {
        poster: POSTER_FILE.to_owned(),
        file: STORYBOARD_FILE.to_owned(),
        interval_ms,
        columns,
        tile_width,
        tile_height,
        count,
    })
}

/// `v` rounded down to an even number.
fn even(v: u32) -> u32 {
    v & !1
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ThumbsError> {
    fs::write(path, bytes).map_err(|source| ThumbsError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The first video stream of a file, decoded on demand at chosen times.
struct VideoReader {
    /// The input file (for errors).
    path: PathBuf,
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    /// The video stream's index.
    index: usize,
    /// The video stream's time base.
    time_base: ffmpeg::Rational,
    /// The video stream's start time, in its time base.
    start: i64,
    /// Media duration, seconds.
    duration_s: f64,
    /// The last frame decoded and its time (seconds from the stream's start).
    last: Option<(f64, ffmpeg::frame::Video)>,
    /// The time last asked for (seconds from the stream's start).
    last_target: Option<f64>,
    /// The decoder has returned its last frame: no more without a seek.
    drained: bool,
}

impl VideoReader {
    fn open(path: &Path) -> Result<Self, ThumbsError> {
        let fail = |reason: String| ThumbsError::Media {
            path: path.to_owned(),
            reason,
        };
        let input = ffmpeg::format::input(path).map_err(|e| fail(format!("cannot open: {e}")))?;
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| fail("no video stream".to_owned()))?;
        let index = stream.index();
        let time_base = stream.time_base();
        let start = if stream.start_time() == ffmpeg::ffi::AV_NOPTS_VALUE {
            0
        } else {
            stream.start_time()
        };
        let tb = f64::from(time_base);
        let duration_s = if stream.duration() > 0 {
            stream.duration() as f64 * tb
        } else {
            input.duration().max(0) as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE)
        };
        if duration_s <= 0.0 {
            return Err(fail("no duration".to_owned()));
        }
        let decoder = ffmpeg::codec::Context::from_parameters(stream.parameters())
            .and_then(|c| c.decoder().video())
            .map_err(|e| fail(format!("video decoder: {e}")))?;
        Ok(Self {
            path: path.to_owned(),
            input,
            decoder,
            index,
            time_base,
            start,
            duration_s,
            last: None,
            last_target: None,
            drained: false,
        })
    }

    /// Turns an FFmpeg error into this file's [`ThumbsError::Media`].
    fn fail(&self) -> impl Fn(ffmpeg::Error) -> ThumbsError + use<> {
        let path = self.path.clone();
        move |e| ThumbsError::Media {
            path: path.clone(),
            reason: e.to_string(),
        }
    }

    /// The frame's width and height as displayed (sample aspect ratio applied to the width).
    fn display_size(&self) -> (u32, u32) {
        let (w, h) = (self.decoder.width().max(2), self.decoder.height().max(2));
        let sar = self.decoder.aspect_ratio();
        if sar.numerator() > 0 && sar.denominator() > 0 && sar.numerator() != sar.denominator() {
            let w = (f64::from(w) * f64::from(sar)).round() as u32;
            (w.max(2), h)
        } else {
            (w, h)
        }
    }

    /// The first frame at or after `at_s` (seconds from the stream's start), or the last frame
    /// of the video if none is.
    fn frame_at(&mut self, at_s: f64) -> Result<ffmpeg::frame::Video, ThumbsError> {
        let fail = self.fail();
        // Asked in order (not earlier than last time): the last frame decoded was the first at
        // or after the last time asked, so if it is also at or after this time, it is the one.
        let in_order = self.last_target.is_some_and(|previous| previous <= at_s);
        if in_order
            && let Some((t, frame)) = &self.last
            && (*t >= at_s || self.drained)
        {
            return Ok(frame.clone());
        }
        let ahead = in_order && matches!(&self.last, Some((t, _)) if at_s - *t < DECODE_AHEAD_S);
        self.last_target = Some(at_s);
        if !ahead {
            let target = self.start as f64 * f64::from(self.time_base) + at_s;
            let ts = (target * f64::from(ffmpeg::ffi::AV_TIME_BASE)) as i64;
            // `..ts`: FFmpeg takes the end as the latest allowed position (a keyframe at or
            // before `ts`).
            self.input.seek(ts, ..ts).map_err(&fail)?;
            self.decoder.flush();
            self.drained = false;
            self.last = None;
        }
        let mut decoded = ffmpeg::frame::Video::empty();
        let mut packet = ffmpeg::Packet::empty();
        loop {
            // Frames the decoder has ready come first.
            while self.decoder.receive_frame(&mut decoded).is_ok() {
                let pts = decoded.timestamp().unwrap_or(self.start);
                let t = (pts - self.start) as f64 * f64::from(self.time_base);
                self.last = Some((t, decoded.clone()));
                if t + 1e-3 >= at_s {
                    return Ok(decoded);
                }
            }
            if self.drained {
                return self.last.as_ref().map(|(_, f)| f.clone()).ok_or_else(|| {
                    ThumbsError::Media {
                        path: self.path.clone(),
                        reason: "no frame decoded".to_owned(),
                    }
                });
            }
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.stream() == self.index {
                        // A damaged packet costs a tile its exact frame, not the storyboard.
                        let _ = self.decoder.send_packet(&packet);
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    let _ = self.decoder.send_eof();
                    self.drained = true;
                }
                Err(e) => return Err(fail(e)),
            }
        }
    }
}

/// `frame` scaled to `width`×`height` in full-range 4:2:0 (what the JPEG encoder takes).
fn scale(
    frame: &ffmpeg::frame::Video,
    width: u32,
    height: u32,
) -> Result<ffmpeg::frame::Video, ffmpeg::Error> {
    let mut scaler = ffmpeg::software::scaling::Context::get(
        frame.format(),
        frame.width(),
        frame.height(),
        ffmpeg::format::Pixel::YUVJ420P,
        width,
        height,
        ffmpeg::software::scaling::Flags::BICUBIC,
    )?;
    let mut out = ffmpeg::frame::Video::empty();
    scaler.run(frame, &mut out)?;
    Ok(out)
}

/// Copies the 4:2:0 `tile` into `sprite` with its top-left corner at (`x`, `y`) (both even).
fn blit(tile: &ffmpeg::frame::Video, sprite: &mut ffmpeg::frame::Video, x: u32, y: u32) {
    for plane in 0..3 {
        let shift = if plane == 0 { 0 } else { 1 };
        let (tw, th) = (
            tile.plane_width(plane) as usize,
            tile.plane_height(plane) as usize,
        );
        let (x, y) = ((x >> shift) as usize, (y >> shift) as usize);
        let (src_stride, dst_stride) = (tile.stride(plane), sprite.stride(plane));
        let src = tile.data(plane);
        let dst = sprite.data_mut(plane);
        for row in 0..th {
            let from = row * src_stride;
            let to = (y + row) * dst_stride + x;
            if let (Some(s), Some(d)) = (src.get(from..from + tw), dst.get_mut(to..to + tw)) {
                d.copy_from_slice(s);
            }
        }
    }
}

/// `frame` (full-range 4:2:0) as a baseline JPEG file.
fn encode_jpeg(frame: &ffmpeg::frame::Video) -> Result<Vec<u8>, ffmpeg::Error> {
    let codec =
        ffmpeg::encoder::find(ffmpeg::codec::Id::MJPEG).ok_or(ffmpeg::Error::EncoderNotFound)?;
    let mut encoder = ffmpeg::codec::Context::new_with_codec(codec)
        .encoder()
        .video()?;
    encoder.set_width(frame.width());
    encoder.set_height(frame.height());
    encoder.set_format(ffmpeg::format::Pixel::YUVJ420P);
    encoder.set_time_base((1, 25));
    // A fixed quantiser: without rate control the picture's quality is clipped to qmin..qmax.
    encoder.set_flags(ffmpeg::codec::Flags::QSCALE);
    encoder.set_qmin(JPEG_QSCALE);
    encoder.set_qmax(JPEG_QSCALE);
    let mut encoder = encoder.open_as(codec)?;
    let mut frame = frame.clone();
    frame.set_pts(Some(0));
    encoder.send_frame(&frame)?;
    encoder.send_eof()?;
    let mut packet = ffmpeg::Packet::empty();
    encoder.receive_packet(&mut packet)?;
    Ok(packet.data().unwrap_or_default().to_vec())
}
