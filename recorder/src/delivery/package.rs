//! Packaging a lesson for the archive, with ffmpeg-next (FFmpeg 5.1).
//!
//! - [`probe_media`]: what a file holds (duration, streams, and for MP4 whether the index is at
//!   the front).
//! - [`remux_to_mp4`]: Matroska → MP4 without re-encoding, with `movflags=+faststart`, refusing
//!   a truncated or corrupt input; the MP4 is written beside its destination and renamed into
//!   place only once it has been read back and checked.
//! - [`package_lesson`]: every part's programme remuxed to `package/programme-N.mp4`, per-source
//!   files listed as they are, `package/metadata.json` written; every file probed and hashed.
//!
//! Blocking and I/O-heavy (a 45-minute 1080p programme is a few GB): run off async threads.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ffmpeg_next as ffmpeg;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::DeliveryError;
use super::gateway::FileKind;
use super::state::PackagedFile;
use crate::manifest::{CutRecord, GapRecord, LessonManifest, LessonPlan, SourceInfo, sync_dir};

/// The directory, inside a lesson directory, that holds what packaging produced.
pub const PACKAGE_DIR: &str = "package";

/// The archive name of the lesson's metadata file.
pub const METADATA_FILE: &str = "metadata.json";

/// How much shorter than declared (by its container or the manifest) a programme's media may be
/// before it counts as truncated. A crash-cut Matroska file loses up to about one cluster (≤ 1 s),
/// which recovery already reflects in the manifest's duration.
const TRUNCATION_TOLERANCE_S: f64 = 1.0;

/// How far the MP4's duration may be from the media remuxed into it.
const REMUX_DURATION_TOLERANCE_S: f64 = 0.1;

/// What a media file holds, as FFmpeg reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaProbe {
    /// FFmpeg's demuxer name, e.g. `matroska,webm` or `mov,mp4,m4a,3gp,3g2,mj2`.
    pub container: String,
    /// Media duration: the container's if it declares one, else the end of the last packet.
    pub duration: Duration,
    /// The streams, in file order.
    pub streams: Vec<StreamProbe>,
    /// For MP4/MOV: the `moov` box (the index) comes before `mdat`, so a player can start before
    /// the whole file has arrived (`faststart`). Always false for other containers.
    pub index_at_front: bool,
}

/// One stream of a [`MediaProbe`].
#[derive(Clone, Debug, PartialEq)]
pub struct StreamProbe {
    /// FFmpeg's codec name: `h264`, `hevc`, `aac`, `opus` …
    pub codec: String,
    /// Video or audio details.
    pub kind: StreamKind,
}

/// The type-specific part of a [`StreamProbe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// A picture.
    Video {
        /// Pixels.
        width: u32,
        /// Pixels.
        height: u32,
    },
    /// Sound.
    Audio {
        /// Hz.
        sample_rate: u32,
        /// Channel count.
        channels: u16,
    },
    /// Subtitles, data, attachments.
    Other,
}

impl MediaProbe {
    /// The first video stream.
    pub fn video(&self) -> Option<&StreamProbe> {
        self.streams
            .iter()
            .find(|s| matches!(s.kind, StreamKind::Video { .. }))
    }

    /// The first audio stream.
    pub fn audio(&self) -> Option<&StreamProbe> {
        self.streams
            .iter()
            .find(|s| matches!(s.kind, StreamKind::Audio { .. }))
    }
}

/// Initialises FFmpeg once per process; later calls return the first result.
fn init() -> Result<(), DeliveryError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        ffmpeg::init().map_err(|e| e.to_string())?;
        // Our errors carry what matters; FFmpeg's own chatter would only interleave with logs.
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
        Ok(())
    })
    .clone()
    .map_err(|reason| DeliveryError::Config {
        reason: format!("FFmpeg init failed: {reason}"),
    })
}

fn media_error(path: &Path) -> impl Fn(String) -> DeliveryError + '_ {
    move |reason| DeliveryError::Media {
        path: path.to_owned(),
        reason,
    }
}

/// Reads `path`'s container, duration and streams with FFmpeg (blocking).
pub fn probe_media(path: &Path) -> Result<MediaProbe, DeliveryError> {
    init()?;
    let fail = media_error(path);
    let mut input = ffmpeg::format::input(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let container = input.format().name().to_owned();
    let mut streams = Vec::new();
    for stream in input.streams() {
        let params = stream.parameters();
        let codec = params.id().name().to_owned();
        let kind = match params.medium() {
            ffmpeg::media::Type::Video => {
                let video = ffmpeg::codec::Context::from_parameters(params)
                    .and_then(|c| c.decoder().video())
                    .map_err(|e| fail(format!("video stream {}: {e}", stream.index())))?;
                StreamKind::Video {
                    width: video.width(),
                    height: video.height(),
                }
            }
            ffmpeg::media::Type::Audio => {
                let audio = ffmpeg::codec::Context::from_parameters(params)
                    .and_then(|c| c.decoder().audio())
                    .map_err(|e| fail(format!("audio stream {}: {e}", stream.index())))?;
                StreamKind::Audio {
                    sample_rate: audio.rate(),
                    channels: audio.channels(),
                }
            }
            _ => StreamKind::Other,
        };
        streams.push(StreamProbe { codec, kind });
    }
    let duration = match declared_duration(&input) {
        Some(d) => d,
        // No duration in the header (a Matroska file cut off by a crash): demux to the end.
        None => {
            let scan = scan_packets(&mut input, path, |_, _| Ok(()))?;
            Duration::from_secs_f64((scan.end_s - scan.start_s.max(0.0)).max(0.0))
        }
    };
    let index_at_front = (container.contains("mp4") || container.contains("mov"))
        && mp4_index_at_front(path).map_err(|e| fail(format!("reading boxes: {e}")))?;
    Ok(MediaProbe {
        container,
        duration,
        streams,
        index_at_front,
    })
}

/// The container's declared duration, if any.
fn declared_duration(input: &ffmpeg::format::context::Input) -> Option<Duration> {
    let d = input.duration();
    (d > 0).then(|| Duration::from_secs_f64(d as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE)))
}

/// What a pass over every packet of a file found.
struct Scan {
    /// Packets read.
    packets: u64,
    /// The earliest start (pts) of any packet, in seconds.
    start_s: f64,
    /// The latest end (pts + duration) of any packet, in seconds.
    end_s: f64,
}

/// Reads every packet of `input` (no decoding), handing each to `each`. Any demuxer error other
/// than the end of the file — a corrupt packet, an I/O error — fails the scan: a remux must not
/// silently skip damage.
fn scan_packets(
    input: &mut ffmpeg::format::context::Input,
    path: &Path,
    mut each: impl FnMut(usize, &mut ffmpeg::Packet) -> Result<(), DeliveryError>,
) -> Result<Scan, DeliveryError> {
    let fail = media_error(path);
    let time_bases: Vec<ffmpeg::Rational> = input.streams().map(|s| s.time_base()).collect();
    let mut packet = ffmpeg::Packet::empty();
    let mut packets = 0u64;
    let mut start_s = f64::INFINITY;
    let mut end_s = f64::NEG_INFINITY;
    loop {
        match packet.read(input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(e) => return Err(fail(format!("damaged after {packets} packets: {e}"))),
        }
        if packet.is_corrupt() {
            return Err(fail(format!("packet {packets} is flagged corrupt")));
        }
        let index = packet.stream();
        let Some(tb) = time_bases.get(index).copied() else {
            continue;
        };
        if let Some(ts) = packet.pts().or(packet.dts()) {
            let secs = |t: i64| t as f64 * f64::from(tb.numerator()) / f64::from(tb.denominator());
            start_s = start_s.min(secs(ts));
            end_s = end_s.max(secs(ts + packet.duration().max(0)));
        }
        packets += 1;
        each(index, &mut packet)?;
    }
    if packets == 0 || !end_s.is_finite() {
        return Err(fail("no media packets".into()));
    }
    Ok(Scan {
        packets,
        start_s,
        end_s,
    })
}

/// Whether an MP4's `moov` box precedes its `mdat` box (reads box headers only).
fn mp4_index_at_front(path: &Path) -> std::io::Result<bool> {
    let mut file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut offset = 0u64;
    while offset + 8 <= len {
        file.seek(SeekFrom::Start(offset))?;
        let mut header = [0u8; 8];
        file.read_exact(&mut header)?;
        let size32 = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
        let size = match size32 {
            0 => len - offset, // the box runs to the end of the file
            1 => {
                let mut large = [0u8; 8];
                file.read_exact(&mut large)?;
                u64::from_be_bytes(large)
            }
            n => u64::from(n),
        };
        match &header[4..] {
            b"moov" => return Ok(true),
            b"mdat" => return Ok(false),
            _ => {}
        }
        if size < 8 {
            return Ok(false); // malformed: no index found where it belongs
        }
        offset += size;
    }
    Ok(false)
}

/// Remuxes `src` (Matroska, or anything FFmpeg reads) into the MP4 `dest` without re-encoding,
/// index at the front. `expected_s` is the duration the recorder measured when it closed the
/// file (the manifest's), if known.
///
/// Fails with [`DeliveryError::Media`] — and leaves no `dest` — when the input cannot be read to
/// its end, holds no H.264/H.265 video, or holds noticeably less media than its container header
/// or `expected_s` declare (a file truncated after it was closed). On success `dest` is complete,
/// fsynced, and its probe (returned) has its index at the front and the input's duration.
pub fn remux_to_mp4(
    src: &Path,
    dest: &Path,
    expected_s: Option<f64>,
) -> Result<MediaProbe, DeliveryError> {
    init()?;
    let fail = media_error(src);
    let mut input = ffmpeg::format::input(src).map_err(|e| fail(format!("cannot open: {e}")))?;
    let tmp = dest.with_extension("mp4.tmp");
    let result = remux_into(&mut input, src, &tmp, expected_s);
    let probe = match result.and_then(|in_s| check_mp4(&tmp, in_s)) {
        Ok(probe) => probe,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .and_then(|()| fs::rename(&tmp, dest))
        .map_err(DeliveryError::io(dest))?;
    if let Some(dir) = dest.parent() {
        sync_dir(dir).map_err(DeliveryError::io(dir))?;
    }
    Ok(probe)
}

/// The remux proper; returns the input's media duration in seconds.
fn remux_into(
    input: &mut ffmpeg::format::context::Input,
    src: &Path,
    tmp: &Path,
    expected_s: Option<f64>,
) -> Result<f64, DeliveryError> {
    let fail = media_error(src);
    let out_fail = media_error(tmp);
    let declared_s = declared_duration(input).map(|d| d.as_secs_f64());
    let mut output = ffmpeg::format::output_as(tmp, "mp4")
        .map_err(|e| out_fail(format!("cannot create: {e}")))?;

    // Input stream index → output stream index (audio and video only).
    let mut mapping: Vec<Option<usize>> = Vec::new();
    let mut in_time_bases = Vec::new();
    let mut has_video = false;
    for stream in input.streams() {
        let params = stream.parameters();
        let medium = params.medium();
        in_time_bases.push(stream.time_base());
        if !matches!(
            medium,
            ffmpeg::media::Type::Video | ffmpeg::media::Type::Audio
        ) {
            mapping.push(None);
            continue;
        }
        if medium == ffmpeg::media::Type::Video {
            if !matches!(
                params.id(),
                ffmpeg::codec::Id::H264 | ffmpeg::codec::Id::HEVC
            ) {
                return Err(fail(format!(
                    "video codec {} does not belong in the archive MP4",
                    params.id().name()
                )));
            }
            has_video = true;
        }
        let mut out = output
            .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
            .map_err(|e| out_fail(format!("adding a stream: {e}")))?;
        out.set_parameters(params);
        mapping.push(Some(out.index()));
    }
    if !has_video {
        return Err(fail("no video stream".into()));
    }

    let mut options = ffmpeg::Dictionary::new();
    options.set("movflags", "+faststart");
    output
        .write_header_with(options)
        .map_err(|e| out_fail(format!("writing the header: {e}")))?;
    let out_time_bases: Vec<ffmpeg::Rational> = output.streams().map(|s| s.time_base()).collect();

    let scan = scan_packets(input, src, |index, packet| {
        let Some(out_index) = mapping.get(index).copied().flatten() else {
            return Ok(());
        };
        packet.rescale_ts(in_time_bases[index], out_time_bases[out_index]);
        packet.set_position(-1);
        packet.set_stream(out_index);
        packet
            .write_interleaved(&mut output)
            .map_err(|e| out_fail(format!("writing a packet: {e}")))
    })?;
    output
        .write_trailer()
        .map_err(|e| out_fail(format!("writing the index: {e}")))?;

    for (what, declared) in [("its header", declared_s), ("the manifest", expected_s)] {
        if let Some(declared) = declared
            && scan.end_s + TRUNCATION_TOLERANCE_S < declared
        {
            return Err(fail(format!(
                "holds {:.1} s of media in {} packets but {what} declares {declared:.1} s: \
                 truncated or damaged",
                scan.end_s, scan.packets
            )));
        }
    }
    Ok(declared_s.unwrap_or((scan.end_s - scan.start_s.max(0.0)).max(0.0)))
}

/// Reads back a freshly written MP4: index at the front, video present, duration as remuxed.
fn check_mp4(path: &Path, media_s: f64) -> Result<MediaProbe, DeliveryError> {
    let fail = media_error(path);
    let probe = probe_media(path)?;
    if !probe.index_at_front {
        return Err(fail("the MP4's index is not at the front".into()));
    }
    if probe.video().is_none() {
        return Err(fail("the MP4 has no video stream".into()));
    }
    let got = probe.duration.as_secs_f64();
    if (got - media_s).abs() > REMUX_DURATION_TOLERANCE_S.max(media_s * 0.001) {
        return Err(fail(format!(
            "the MP4 lasts {got:.3} s, the media remuxed into it {media_s:.3} s"
        )));
    }
    Ok(probe)
}

/// A file's size and SHA-256 (lower-case hex), read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<(u64, String), DeliveryError> {
    let mut file = fs::File::open(path).map_err(DeliveryError::io(path))?;
    let mut hasher = Sha256::new();
    let bytes = hash_reader(&mut file, &mut hasher, u64::MAX).map_err(DeliveryError::io(path))?;
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// Feeds up to `limit` bytes of `reader` to `hasher`; returns how many it read.
pub(crate) fn hash_reader(
    reader: &mut impl Read,
    hasher: &mut Sha256,
    limit: u64,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    while total < limit {
        let want = usize::try_from((limit - total).min(buf.len() as u64)).expect("≤ 1 MiB");
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok(total)
}

/// Whether `s` can be one path component of an archive key or file name.
pub(crate) fn safe_component(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 128
        && !s.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

/// `metadata.json`: the manifest's plan, sources, parts with their archived files, gaps, cuts.
#[derive(Serialize)]
struct Metadata<'a> {
    plan: &'a LessonPlan,
    sources: &'a [SourceInfo],
    microphone: Option<&'a str>,
    parts: Vec<MetadataPart<'a>>,
    gaps: &'a [GapRecord],
}

#[derive(Serialize)]
struct MetadataPart<'a> {
    index: u32,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    files: Vec<MetadataFile<'a>>,
    cuts: &'a [CutRecord],
}

#[derive(Serialize)]
struct MetadataFile<'a> {
    name: &'a str,
    kind: FileKind,
    source_id: Option<&'a str>,
    bytes: u64,
    duration_s: Option<f64>,
    sha256: &'a str,
}

/// Packages a `FINALIZED` lesson in `lesson_dir` (see the module doc). Returns every file to
/// store, `metadata.json` last; none is marked stored. Re-running it overwrites what an
/// interrupted run left in `package/`.
pub fn package_lesson(
    lesson_dir: &Path,
    manifest: &LessonManifest,
) -> Result<Vec<PackagedFile>, DeliveryError> {
    let lesson_id = &manifest.plan.id;
    let package_dir = lesson_dir.join(PACKAGE_DIR);
    fs::create_dir_all(&package_dir).map_err(DeliveryError::io(&package_dir))?;
    let mut files = Vec::new();
    let mut by_part: Vec<std::ops::Range<usize>> = Vec::new();
    for part in &manifest.parts {
        let first = files.len();
        if let Some(programme) = &part.programme {
            let src = lesson_dir.join(&programme.path);
            let name = format!("programme-{}.mp4", part.index);
            let dest = package_dir.join(&name);
            let expected = (programme.duration_s > 0.0).then_some(programme.duration_s);
            let probe = remux_to_mp4(&src, &dest, expected)?;
            let (bytes, sha256) = sha256_file(&dest)?;
            files.push(PackagedFile {
                name: name.clone(),
                kind: FileKind::Programme,
                source_id: None,
                local: Path::new(PACKAGE_DIR).join(name),
                bytes,
                duration_s: Some(probe.duration.as_secs_f64()),
                sha256,
                stored: false,
            });
        }
        let mut segments: Vec<(&str, u32)> = Vec::new();
        for media in &part.sources {
            let source_id = media.source_id.as_deref().unwrap_or("unknown");
            if !safe_component(source_id) {
                return Err(DeliveryError::Lesson {
                    lesson_id: lesson_id.clone(),
                    reason: format!("source id {source_id:?} cannot name a file"),
                });
            }
            let seg = match segments.iter_mut().find(|(id, _)| *id == source_id) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    segments.push((source_id, 1));
                    1
                }
            };
            let src = lesson_dir.join(&media.path);
            let ext = media
                .path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("mkv");
            let probe = probe_media(&src)?;
            // A camera's file holds video; the microphone's holds audio alone.
            if probe.video().is_none() && probe.audio().is_none() {
                return Err(media_error(&src)("no video or audio stream".into()));
            }
            let (bytes, sha256) = sha256_file(&src)?;
            files.push(PackagedFile {
                name: format!("sources/{source_id}-p{}-s{seg}.{ext}", part.index),
                kind: FileKind::Source,
                source_id: Some(source_id.to_owned()),
                local: media.path.clone(),
                bytes,
                duration_s: Some(probe.duration.as_secs_f64()),
                sha256,
                stored: false,
            });
        }
        by_part.push(first..files.len());
    }

    let metadata = Metadata {
        plan: &manifest.plan,
        sources: &manifest.sources,
        microphone: manifest.microphone.as_deref(),
        parts: manifest
            .parts
            .iter()
            .zip(&by_part)
            .map(|(part, range)| MetadataPart {
                index: part.index,
                started_at: part.started_at,
                ended_at: part.ended_at,
                files: files[range.clone()]
                    .iter()
                    .map(|f| MetadataFile {
                        name: &f.name,
                        kind: f.kind,
                        source_id: f.source_id.as_deref(),
                        bytes: f.bytes,
                        duration_s: f.duration_s,
                        sha256: &f.sha256,
                    })
                    .collect(),
                cuts: &part.cuts,
            })
            .collect(),
        gaps: &manifest.gaps,
    };
    let json = serde_json::to_vec_pretty(&metadata).expect("metadata always serializes");
    let path = package_dir.join(METADATA_FILE);
    write_durably(&path, &json)?;
    files.push(PackagedFile {
        name: METADATA_FILE.into(),
        kind: FileKind::Metadata,
        source_id: None,
        local: Path::new(PACKAGE_DIR).join(METADATA_FILE),
        bytes: json.len() as u64,
        duration_s: None,
        sha256: hex::encode(Sha256::digest(&json)),
        stored: false,
    });
    Ok(files)
}

/// Writes `bytes` to `path` atomically and durably (temporary file, fsync, rename, fsync dir).
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), DeliveryError> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let io = DeliveryError::io(path);
    (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })()
    .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probing_garbage_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("duet-probe-garbage-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("garbage.mkv");
        fs::write(&path, b"\x1a\x45\xdf\xa3 this is not matroska at all").unwrap();
        assert!(matches!(
            probe_media(&path),
            Err(DeliveryError::Media { .. })
        ));
        let dest = dir.join("out.mp4");
        assert!(matches!(
            remux_to_mp4(&path, &dest, None),
            Err(DeliveryError::Media { .. })
        ));
        assert!(!dest.exists());
        assert!(!dir.join("out.mp4.tmp").exists());
        assert!(probe_media(&dir.join("missing.mkv")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mp4_boxes_are_walked() {
        let dir = std::env::temp_dir().join(format!("duet-mp4-boxes-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let boxed = |t: &[u8; 4], body: usize| {
            let mut b = ((8 + body) as u32).to_be_bytes().to_vec();
            b.extend_from_slice(t);
            b.extend(std::iter::repeat_n(0u8, body));
            b
        };
        let front = [boxed(b"ftyp", 12), boxed(b"moov", 20), boxed(b"mdat", 100)].concat();
        let back = [boxed(b"ftyp", 12), boxed(b"mdat", 100), boxed(b"moov", 20)].concat();
        fs::write(dir.join("front.mp4"), front).unwrap();
        fs::write(dir.join("back.mp4"), back).unwrap();
        assert!(mp4_index_at_front(&dir.join("front.mp4")).unwrap());
        assert!(!mp4_index_at_front(&dir.join("back.mp4")).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn components_that_could_escape_are_refused() {
        assert!(safe_component("cam-teacher"));
        assert!(safe_component("教师特写"));
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb"] {
            assert!(!safe_component(bad), "{bad:?}");
        }
    }
}
