//! The per-track RTP dump: every RTP packet of one received track, as it arrived, in a file that
//! survives a crash of the recorder up to its last flush.
//!
//! Format (one file = one *part* of one track; a restarted or reconnected recorder starts part
//! n + 1 of the same track in a new file):
//!
//! ```text
//! DUETRTP1\n                                   9 bytes, the magic
//! {"participant":…,"part":0}\n                 one JSON line: [`TrackMeta`]
//! [u32 BE len][u64 BE arrival_ns][len bytes]   one record per RTP packet, repeated
//! ```
//!
//! `arrival_ns` is the arrival time in nanoseconds since the UNIX epoch (the recorder's wall
//! clock); `len` is 1..=[`MAX_PACKET`]. Nothing else is in the file: no index, no trailer, so a
//! file cut anywhere is a valid prefix plus a partial record, which [`DumpReader`] ignores and
//! reports ([`DumpReader::truncated_bytes`]).
//!
//! Invariants:
//! - [`DumpWriter`] buffers records and writes them through to the kernel at least every
//!   [`FLUSH_INTERVAL`] of *arrival* time (time is an input: the writer never reads the clock), on
//!   [`DumpWriter::flush`], [`DumpWriter::finish`] and on drop. A crash loses at most the
//!   packets of the last interval.
//! - The reader never panics on bad bytes: a bad magic or meta line is a typed error; a record
//!   with an impossible length or cut short ends the iteration cleanly.
//!
//! ```no_run
//! # fn main() -> Result<(), duet_recorder::live::dump::DumpError> {
//! use duet_recorder::live::dump::{Codec, DumpReader, DumpWriter, TrackKind, TrackMeta};
//! let meta = TrackMeta {
//!     participant: "teacher".into(),
//!     source: "camera".into(),
//!     kind: TrackKind::Video,
//!     codec: Codec::Vp8,
//!     clock_rate: 90_000,
//!     payload_type: 96,
//!     red_payload_type: None,
//!     part: 0,
//! };
//! let mut writer = DumpWriter::create("teacher-camera.0.rtp".as_ref(), &meta)?;
//! # let packet = [0x80u8, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x10];
//! writer.write(std::time::SystemTime::now(), &packet)?;
//! writer.finish()?;
//! let mut reader = DumpReader::open("teacher-camera.0.rtp".as_ref())?;
//! for record in reader.by_ref() {
//!     let record = record?;
//!     println!("{} bytes at {:?}", record.rtp.len(), record.arrival());
//! }
//! println!("ignored {} bytes at the end", reader.truncated_bytes());
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The first line of every dump.
pub const MAGIC: &[u8; 9] = b"DUETRTP1\n";

/// The largest RTP packet a record may hold (and the largest length the reader believes).
pub const MAX_PACKET: usize = 64 * 1024;

/// The writer flushes at least this often, in arrival time.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// The longest meta line the reader accepts (a guard against reading a whole garbage file).
const MAX_META_LINE: u64 = 16 * 1024;

/// Bytes before each packet: `u32` length, `u64` arrival.
const RECORD_HEADER: usize = 12;

/// What kind of media a track carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    /// `"audio"`.
    Audio,
    /// `"video"`.
    Video,
}

/// The codec of a track's (primary) payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    /// `"VP8"` (RFC 7741).
    #[serde(rename = "VP8")]
    Vp8,
    /// `"H264"` (RFC 6184).
    #[serde(rename = "H264")]
    H264,
    /// `"opus"` (RFC 7587).
    #[serde(rename = "opus")]
    Opus,
}

impl Codec {
    /// The codec of a WebRTC MIME type (`video/VP8`, `video/H264`, `audio/opus`; any case).
    pub fn from_mime(mime: &str) -> Option<Self> {
        let name = mime.rsplit('/').next()?;
        match name.to_ascii_lowercase().as_str() {
            "vp8" => Some(Self::Vp8),
            "h264" => Some(Self::H264),
            "opus" => Some(Self::Opus),
            _ => None,
        }
    }
}

/// What one dump file holds: the track, and which part of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackMeta {
    /// The SFU participant that published the track (e.g. `teacher`, `room-a`).
    pub participant: String,
    /// The track's source as the participant named it (`camera`, `screen`, `microphone`).
    pub source: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// The codec of the payload (of the primary block, for RED).
    pub codec: Codec,
    /// The RTP clock rate (90000 for video, 48000 for Opus).
    pub clock_rate: u32,
    /// The RTP payload type of `codec`.
    pub payload_type: u8,
    /// The payload type of RED (RFC 2198) packets wrapping `codec`, when negotiated.
    pub red_payload_type: Option<u8>,
    /// 0 for the first file of a track, n + 1 after each restart or reconnect.
    pub part: u32,
}

/// One received RTP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Arrival time, nanoseconds since the UNIX epoch.
    pub arrival_ns: u64,
    /// The RTP packet, header included.
    pub rtp: Vec<u8>,
}

impl Record {
    /// The arrival time.
    pub fn arrival(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.arrival_ns)
    }
}

/// What went wrong with a dump.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    /// Creating, writing or reading the file failed.
    #[error("dump {path}: {source}")]
    Io {
        /// The dump.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file does not start with `DUETRTP1\n`: not a dump.
    #[error("{path} is not an RTP dump (bad magic)")]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The meta line is missing, too long or not a [`TrackMeta`].
    #[error("{path}: bad track meta line: {reason}")]
    BadMeta {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// [`DumpWriter::write`] was given an empty packet or one over [`MAX_PACKET`].
    #[error("refusing a {len}-byte packet (1..={MAX_PACKET} allowed)")]
    PacketSize {
        /// The packet's length.
        len: usize,
    },
    /// [`DumpWriter::write`] was given an arrival time before 1970 or past 2554.
    #[error("arrival time out of range")]
    ArrivalOutOfRange,
}

/// Appends packets of one track part to a dump; see the module doc.
#[derive(Debug)]
pub struct DumpWriter {
    /// The buffered file.
    out: BufWriter<File>,
    /// The file, for errors.
    path: PathBuf,
    /// Arrival time of the last flush (of the first packet before any): the next flush is due
    /// [`FLUSH_INTERVAL`] later.
    last_flush_ns: Option<u64>,
    /// Records written, for [`DumpWriter::finish`].
    records: u64,
}

impl DumpWriter {
    /// Creates (or truncates) `path` and writes the magic and `meta`, flushed. Blocking.
    pub fn create(path: &Path, meta: &TrackMeta) -> Result<Self, DumpError> {
        let io_err = |source| DumpError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::create(path).map_err(io_err)?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        let line = serde_json::to_vec(meta).map_err(|e| DumpError::BadMeta {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        out.write_all(MAGIC)
            .and_then(|()| out.write_all(&line))
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .map_err(io_err)?;
        Ok(Self {
            out,
            path: path.to_owned(),
            last_flush_ns: None,
            records: 0,
        })
    }

    /// Appends one packet that arrived at `arrival`. Buffered: the buffer is written through when
    /// [`FLUSH_INTERVAL`] of arrival time has passed since the last flush. Refuses empty packets
    /// and packets over [`MAX_PACKET`] (nothing is written then).
    pub fn write(&mut self, arrival: SystemTime, rtp: &[u8]) -> Result<(), DumpError> {
        if rtp.is_empty() || rtp.len() > MAX_PACKET {
            return Err(DumpError::PacketSize { len: rtp.len() });
        }
        let arrival_ns = arrival
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_nanos()).ok())
            .ok_or(DumpError::ArrivalOutOfRange)?;
        let out = &mut self.out;
        let mut header = [0u8; RECORD_HEADER];
        header[..4].copy_from_slice(&(rtp.len() as u32).to_be_bytes());
        header[4..].copy_from_slice(&arrival_ns.to_be_bytes());
        let path = &self.path;
        out.write_all(&header)
            .and_then(|()| out.write_all(rtp))
            .map_err(|source| DumpError::Io {
                path: path.clone(),
                source,
            })?;
        self.records += 1;
        let last = *self.last_flush_ns.get_or_insert(arrival_ns);
        if arrival_ns.saturating_sub(last) >= FLUSH_INTERVAL.as_nanos() as u64 {
            self.flush()?;
            self.last_flush_ns = Some(arrival_ns);
        }
        Ok(())
    }

    /// Writes the buffer through to the kernel now (e.g. from a timer when packets stop).
    pub fn flush(&mut self) -> Result<(), DumpError> {
        self.out.flush().map_err(|source| DumpError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Flushes and closes the file; returns how many records it holds.
    pub fn finish(mut self) -> Result<u64, DumpError> {
        // Flushed here to report an error; the drop that follows finds nothing left to write.
        self.flush()?;
        Ok(self.records)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DumpWriter {
    fn drop(&mut self) {
        if let Err(err) = self.flush() {
            tracing::error!(%err, "dump not flushed on drop");
        }
    }
}

/// Reads a dump back: [`meta`](Self::meta), then the records as an iterator that ends at the
/// file's end or at its first incomplete or impossible record.
#[derive(Debug)]
pub struct DumpReader {
    /// The buffered file, positioned at the next record.
    input: BufReader<File>,
    /// The file, for errors.
    path: PathBuf,
    /// The track meta line.
    meta: TrackMeta,
    /// The file's length when opened.
    len: u64,
    /// Offset of the next record.
    pos: u64,
    /// Set once iteration stopped: bytes after the last complete record.
    truncated: Option<u64>,
}

impl DumpReader {
    /// Opens `path`, checking its magic and reading its meta line. Blocking.
    pub fn open(path: &Path) -> Result<Self, DumpError> {
        let io_err = |source| DumpError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let mut input = BufReader::with_capacity(256 * 1024, file);
        let mut magic = [0u8; MAGIC.len()];
        match input.read_exact(&mut magic) {
            Ok(()) if &magic == MAGIC => {}
            Ok(()) => {
                return Err(DumpError::BadMagic {
                    path: path.to_owned(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(DumpError::BadMagic {
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(io_err(e)),
        }
        let mut line = Vec::new();
        input
            .by_ref()
            .take(MAX_META_LINE)
            .read_until(b'\n', &mut line)
            .map_err(io_err)?;
        let bad_meta = |reason: String| DumpError::BadMeta {
            path: path.to_owned(),
            reason,
        };
        if line.pop() != Some(b'\n') {
            return Err(bad_meta(format!(
                "no end of line within {MAX_META_LINE} bytes"
            )));
        }
        let meta: TrackMeta = serde_json::from_slice(&line).map_err(|e| bad_meta(e.to_string()))?;
        let pos = (MAGIC.len() + line.len() + 1) as u64;
        Ok(Self {
            input,
            path: path.to_owned(),
            meta,
            len,
            pos,
            truncated: None,
        })
    }

    /// The track this file is a part of.
    pub fn meta(&self) -> &TrackMeta {
        &self.meta
    }

    /// Bytes after the last complete record that the iteration ignored (a record cut by a
    /// crash, or garbage). 0 until the iteration has ended, and for a clean file.
    pub fn truncated_bytes(&self) -> u64 {
        self.truncated.unwrap_or(0)
    }

    /// Ends the iteration at the current position.
    fn stop(&mut self) -> Option<Result<Record, DumpError>> {
        let rest = self.len.saturating_sub(self.pos);
        if rest > 0 {
            tracing::warn!(path = %self.path.display(), bytes = rest, "dump ends with an incomplete record: ignored");
        }
        self.truncated = Some(rest);
        None
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` when the file ends first.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match input.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

impl Iterator for DumpReader {
    type Item = Result<Record, DumpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.truncated.is_some() {
            return None;
        }
        let mut header = [0u8; RECORD_HEADER];
        let io_err = |path: &Path, source| {
            Some(Err(DumpError::Io {
                path: path.to_owned(),
                source,
            }))
        };
        match read_full(&mut self.input, &mut header) {
            Ok(true) => {}
            Ok(false) => return self.stop(),
            Err(e) => return io_err(&self.path, e),
        }
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut arrival = [0u8; 8];
        arrival.copy_from_slice(&header[4..]);
        if len == 0 || len > MAX_PACKET {
            return self.stop();
        }
        let mut rtp = vec![0u8; len];
        match read_full(&mut self.input, &mut rtp) {
            Ok(true) => {}
            Ok(false) => return self.stop(),
            Err(e) => return io_err(&self.path, e),
        }
        self.pos += (RECORD_HEADER + len) as u64;
        Some(Ok(Record {
            arrival_ns: u64::from_be_bytes(arrival),
            rtp,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> TrackMeta {
        TrackMeta {
            participant: "room-a".into(),
            source: "microphone".into(),
            kind: TrackKind::Audio,
            codec: Codec::Opus,
            clock_rate: 48_000,
            payload_type: 111,
            red_payload_type: Some(63),
            part: 2,
        }
    }

    fn packet(i: usize) -> Vec<u8> {
        (0..(12 + i * 7 % 300)).map(|b| (b + i) as u8).collect()
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    fn write_dump(path: &Path, n: usize) -> Vec<Record> {
        let mut w = DumpWriter::create(path, &meta()).expect("create");
        let mut expected = Vec::new();
        for i in 0..n {
            let rtp = packet(i);
            w.write(at(i as u64 * 20), &rtp).expect("write");
            expected.push(Record {
                arrival_ns: (1_700_000_000_000 + i as u64 * 20) * 1_000_000,
                rtp,
            });
        }
        assert_eq!(w.finish().expect("finish"), n as u64);
        expected
    }

    fn read_all(path: &Path) -> (TrackMeta, Vec<Record>, u64) {
        let mut r = DumpReader::open(path).expect("open");
        let records = r.by_ref().collect::<Result<Vec<_>, _>>().expect("records");
        (r.meta().clone(), records, r.truncated_bytes())
    }

    #[test]
    fn roundtrip_keeps_meta_records_and_arrivals() {
        let dir = tempdir();
        let path = dir.join("a.rtp");
        let expected = write_dump(&path, 50);
        let (m, records, truncated) = read_all(&path);
        assert_eq!(m, meta());
        assert_eq!(records, expected);
        assert_eq!(truncated, 0);
        let text = std::fs::read(&path).expect("read");
        assert!(text.starts_with(b"DUETRTP1\n{\"participant\":\"room-a\""));
        assert!(
            String::from_utf8_lossy(&text[..200]).contains("\"kind\":\"audio\",\"codec\":\"opus\"")
        );
    }

    #[test]
    fn writer_flushes_every_250_ms_of_arrival_time() {
        let dir = tempdir();
        let path = dir.join("f.rtp");
        let mut w = DumpWriter::create(&path, &meta()).expect("create");
        let header_len = std::fs::metadata(&path).expect("meta").len();
        w.write(at(0), &packet(1)).expect("write");
        w.write(at(100), &packet(2)).expect("write");
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len(),
            header_len,
            "still buffered"
        );
        w.write(at(250), &packet(3)).expect("write");
        let (_, records, _) = read_all(&path);
        assert_eq!(records.len(), 3, "flushed at 250 ms");
        w.write(at(300), &packet(4)).expect("write");
        drop(w);
        assert_eq!(read_all(&path).1.len(), 4, "flushed on drop");
    }

    #[test]
    fn writer_refuses_empty_and_oversized_packets() {
        let dir = tempdir();
        let mut w = DumpWriter::create(&dir.join("s.rtp"), &meta()).expect("create");
        assert!(matches!(
            w.write(at(0), &[]),
            Err(DumpError::PacketSize { len: 0 })
        ));
        assert!(matches!(
            w.write(at(0), &vec![0; MAX_PACKET + 1]),
            Err(DumpError::PacketSize { .. })
        ));
        w.write(at(0), &vec![1; MAX_PACKET])
            .expect("64 KiB is allowed");
        assert!(matches!(
            w.write(UNIX_EPOCH - Duration::from_secs(1), &[1]),
            Err(DumpError::ArrivalOutOfRange)
        ));
        assert_eq!(w.finish().expect("finish"), 1);
    }

    #[test]
    fn truncated_tail_at_every_offset_of_the_last_record() {
        let dir = tempdir();
        let full = dir.join("full.rtp");
        let expected = write_dump(&full, 5);
        let bytes = std::fs::read(&full).expect("read");
        let last_len = RECORD_HEADER + expected[4].rtp.len();
        let last_start = bytes.len() - last_len;
        let cut = dir.join("cut.rtp");
        for keep in 0..last_len {
            std::fs::write(&cut, &bytes[..last_start + keep]).expect("write");
            let (_, records, truncated) = read_all(&cut);
            assert_eq!(
                records,
                expected[..4],
                "cut {keep} bytes into the last record"
            );
            assert_eq!(truncated, keep as u64);
        }
        // A corrupt length (over 64 KiB) ends it too, and everything from there counts.
        let mut corrupt = bytes.clone();
        corrupt[last_start..last_start + 4].copy_from_slice(&(MAX_PACKET as u32 + 1).to_be_bytes());
        std::fs::write(&cut, &corrupt).expect("write");
        let (_, records, truncated) = read_all(&cut);
        assert_eq!(records.len(), 4);
        assert_eq!(truncated, last_len as u64);
    }

    #[test]
    fn garbage_headers_are_typed_errors() {
        let dir = tempdir();
        let path = dir.join("g.rtp");
        for (bytes, magic) in [
            (&b""[..], true),
            (b"DUETRTP", true),
            (b"RIFF\0\0\0\0WAVEfmt ", true),
            (b"DUETRTP2\n{}\n", true),
            (b"DUETRTP1\n", false),
            (b"DUETRTP1\n{\"participant\":1}\n", false),
            (b"DUETRTP1\n{\"participant\":\"a\"", false),
        ] {
            std::fs::write(&path, bytes).expect("write");
            match DumpReader::open(&path) {
                Err(DumpError::BadMagic { .. }) if magic => {}
                Err(DumpError::BadMeta { .. }) if !magic => {}
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
        let mut long = MAGIC.to_vec();
        long.extend(std::iter::repeat_n(b'x', 20_000));
        std::fs::write(&path, long).expect("write");
        assert!(matches!(
            DumpReader::open(&path),
            Err(DumpError::BadMeta { .. })
        ));
    }

    #[test]
    fn codec_from_mime() {
        assert_eq!(Codec::from_mime("video/VP8"), Some(Codec::Vp8));
        assert_eq!(Codec::from_mime("audio/opus"), Some(Codec::Opus));
        assert_eq!(Codec::from_mime("video/H264"), Some(Codec::H264));
        assert_eq!(Codec::from_mime("video/AV1"), None);
    }

    /// A fresh directory under the system temp dir, unique per test.
    fn tempdir() -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "duet-dump-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
