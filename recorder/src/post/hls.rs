//! The review video as HLS for browsers that stream rather than download: fragmented-MP4 HLS
//! (`hls_segment_type=fmp4`), a VOD playlist, written by FFmpeg's HLS muxer through ffmpeg-next
//! with stream copy (no re-encode: H.264 + AAC in, the same packets out).
//!
//! `out_dir` gets [`PLAYLIST_FILE`] (`index.m3u8`), [`INIT_FILE`] (`init.mp4`, the fMP4 header,
//! `#EXT-X-MAP`) and `segment-NNNNN.m4s`. Segments are cut at the first video keyframe after each
//! `segment_s`, so they last about `segment_s` when the video has a keyframe at least that often
//! (the live recorder's review video does). [`HlsInfo`] is read back from the written playlist,
//! and every file it names is checked to exist.
//!
//! Blocking and I/O-bound: run off async threads. Files left by an earlier run under the same
//! names are overwritten; on failure, partial files may remain in `out_dir`.

use std::fs;
use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;

/// The playlist's file name in `out_dir`.
pub const PLAYLIST_FILE: &str = "index.m3u8";

/// The fMP4 initialisation segment's file name in `out_dir`.
pub const INIT_FILE: &str = "init.mp4";

/// What went wrong packaging HLS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HlsError {
    /// FFmpeg could not be initialised.
    #[error("FFmpeg init failed: {0}")]
    Init(#[source] ffmpeg::Error),
    /// The segment duration is out of range (1..=60 s).
    #[error("invalid segment duration {segment_s} s: must be 1..=60")]
    SegmentDuration {
        /// The duration asked for.
        segment_s: u32,
    },
    /// The input cannot be read, holds no video, or the muxer failed.
    #[error("{path}: {reason}")]
    Media {
        /// The file concerned.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Creating `out_dir` or reading the playlist back failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One media segment of the playlist.
#[derive(Clone, Debug, PartialEq)]
pub struct HlsSegment {
    /// File name in `out_dir`.
    pub file: String,
    /// Duration (`#EXTINF`), seconds.
    pub duration_s: f64,
}

/// What [`package_hls`] wrote, as its playlist says.
#[derive(Clone, Debug, PartialEq)]
pub struct HlsInfo {
    /// The playlist's file name in `out_dir` ([`PLAYLIST_FILE`]).
    pub playlist: String,
    /// The initialisation segment's file name in `out_dir` ([`INIT_FILE`]).
    pub init: String,
    /// The media segments in order.
    pub segments: Vec<HlsSegment>,
    /// Sum of the segments' durations, seconds.
    pub duration_s: f64,
}

/// Packages the MP4 `mp4` as fMP4 HLS in `out_dir` (created if missing), segments of about
/// `segment_s` seconds (1..=60): see the module doc.
pub fn package_hls(mp4: &Path, out_dir: &Path, segment_s: u32) -> Result<HlsInfo, HlsError> {
    if !(1..=60).contains(&segment_s) {
        return Err(HlsError::SegmentDuration { segment_s });
    }
    ffmpeg::init().map_err(HlsError::Init)?;
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
    let in_fail = |reason: String| HlsError::Media {
        path: mp4.to_owned(),
        reason,
    };
    fs::create_dir_all(out_dir).map_err(|source| HlsError::Io {
        path: out_dir.to_owned(),
        source,
    })?;
    let playlist = out_dir.join(PLAYLIST_FILE);
    let out_fail = |reason: String| HlsError::Media {
        path: playlist.clone(),
        reason,
    };

    let mut input = ffmpeg::format::input(mp4).map_err(|e| in_fail(format!("cannot open: {e}")))?;
    let mut output = ffmpeg::format::output_as(&playlist, "hls")
        .map_err(|e| out_fail(format!("cannot create: {e}")))?;

    // Input stream index → output stream index (video and audio only).
    let mut mapping: Vec<Option<usize>> = Vec::new();
    let mut in_time_bases = Vec::new();
    let mut has_video = false;
    for stream in input.streams() {
        let params = stream.parameters();
        in_time_bases.push(stream.time_base());
        let medium = params.medium();
        if !matches!(
            medium,
            ffmpeg::media::Type::Video | ffmpeg::media::Type::Audio
        ) {
            mapping.push(None);
            continue;
        }
        has_video |= medium == ffmpeg::media::Type::Video;
        let mut out = output
            .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
            .map_err(|e| out_fail(format!("adding a stream: {e}")))?;
        out.set_parameters(params);
        mapping.push(Some(out.index()));
    }
    if !has_video {
        return Err(in_fail("no video stream".to_owned()));
    }

    let segment_pattern = out_dir.join("segment-%05d.m4s");
    let mut options = ffmpeg::Dictionary::new();
    options.set("hls_segment_type", "fmp4");
    options.set("hls_playlist_type", "vod");
    options.set("hls_time", &segment_s.to_string());
    options.set("hls_fmp4_init_filename", INIT_FILE);
    options.set("hls_segment_filename", &segment_pattern.to_string_lossy());
    options.set("hls_flags", "independent_segments");
    output
        .write_header_with(options)
        .map_err(|e| out_fail(format!("writing the header: {e}")))?;
    let out_time_bases: Vec<ffmpeg::Rational> = output.streams().map(|s| s.time_base()).collect();

    let mut packet = ffmpeg::Packet::empty();
    let mut packets = 0u64;
    loop {
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(e) => return Err(in_fail(format!("damaged after {packets} packets: {e}"))),
        }
        let index = packet.stream();
        let Some(out_index) = mapping.get(index).copied().flatten() else {
            continue;
        };
        packet.rescale_ts(in_time_bases[index], out_time_bases[out_index]);
        packet.set_position(-1);
        packet.set_stream(out_index);
        packet
            .write_interleaved(&mut output)
            .map_err(|e| out_fail(format!("writing packet {packets}: {e}")))?;
        packets += 1;
    }
    if packets == 0 {
        return Err(in_fail("no media packets".to_owned()));
    }
    output
        .write_trailer()
        .map_err(|e| out_fail(format!("finishing the playlist: {e}")))?;
    drop(output);

    let text = fs::read_to_string(&playlist).map_err(|source| HlsError::Io {
        path: playlist.clone(),
        source,
    })?;
    let info = parse_playlist(&text).map_err(|reason| out_fail(reason.to_owned()))?;
    for file in std::iter::once(&info.init).chain(info.segments.iter().map(|s| &s.file)) {
        let path = out_dir.join(file);
        if !path.is_file() {
            return Err(out_fail(format!("names {file}, which was not written")));
        }
    }
    Ok(info)
}

/// Reads a VOD media playlist as FFmpeg writes it: `#EXT-X-MAP:URI="…"`, `#EXTINF:<s>,` then
/// the segment's URI, `#EXT-X-ENDLIST`. Only plain file names are accepted as URIs.
fn parse_playlist(text: &str) -> Result<HlsInfo, &'static str> {
    let mut init = None;
    let mut segments = Vec::new();
    let mut pending: Option<f64> = None;
    let mut ended = false;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(map) = line.strip_prefix("#EXT-X-MAP:") {
            let uri = map
                .split(',')
                .find_map(|attr| attr.strip_prefix("URI="))
                .map(|v| v.trim_matches('"').to_owned())
                .ok_or("#EXT-X-MAP without URI")?;
            init = Some(uri);
        } else if let Some(inf) = line.strip_prefix("#EXTINF:") {
            let seconds = inf.split(',').next().unwrap_or_default();
            pending = Some(seconds.parse().map_err(|_| "#EXTINF without a duration")?);
        } else if line == "#EXT-X-ENDLIST" {
            ended = true;
        } else if !line.starts_with('#') {
            let duration_s = pending.take().ok_or("a segment without #EXTINF")?;
            if line.contains('/') || line.contains("..") {
                return Err("a segment URI that is not a plain file name");
            }
            segments.push(HlsSegment {
                file: line.to_owned(),
                duration_s,
            });
        }
    }
    let init = init.ok_or("no #EXT-X-MAP (not fMP4)")?;
    if init.contains('/') || init.contains("..") {
        return Err("an init URI that is not a plain file name");
    }
    if !ended || segments.is_empty() {
        return Err("no segments or no #EXT-X-ENDLIST");
    }
    Ok(HlsInfo {
        playlist: PLAYLIST_FILE.to_owned(),
        init,
        duration_s: segments.iter().map(|s| s.duration_s).sum(),
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlists_are_read_and_odd_ones_refused() {
        let good = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n\
                    #EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.000000,\nsegment-00000.m4s\n\
                    #EXTINF:1.500000,\nsegment-00001.m4s\n#EXT-X-ENDLIST\n";
        let info = parse_playlist(good).unwrap();
        assert_eq!(info.init, "init.mp4");
        assert_eq!(info.segments.len(), 2);
        assert!((info.duration_s - 3.5).abs() < 1e-9);
        assert!(parse_playlist(&good.replace("#EXT-X-ENDLIST\n", "")).is_err());
        assert!(parse_playlist(&good.replace("segment-00001", "../etc/passwd")).is_err());
        assert!(parse_playlist(&good.replace("#EXT-X-MAP:URI=\"init.mp4\"\n", "")).is_err());
    }

    #[test]
    fn bad_arguments_are_typed_errors() {
        let dir = std::env::temp_dir().join(format!("duet-hls-bad-{}", std::process::id()));
        assert!(matches!(
            package_hls(Path::new("/nonexistent.mp4"), &dir, 0),
            Err(HlsError::SegmentDuration { .. })
        ));
        assert!(matches!(
            package_hls(Path::new("/nonexistent/duet.mp4"), &dir, 2),
            Err(HlsError::Media { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
