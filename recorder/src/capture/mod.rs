//! Capture for resource mode (资源模式): every source recorded to its own file, as it arrives,
//! without transcoding.
//!
//! Owns the GStreamer side of one source's recording ([`SourceRecorder`]) and reading back what a
//! file holds ([`probe()`]). Knows nothing of timetables, rooms or uploads: the supervisor above
//! decides when to start and stop, and what to do when a source fails.
//!
//! Invariants:
//! - Files are Matroska, written as the data arrives: a file cut off by `kill -9` or a power loss
//!   stays readable up to the last complete cluster (≤ 1 s of media is lost). A plain MP4 would
//!   not be (its index is written only at the end).
//! - A recording ends with EOS, waited for with a deadline, then `Null`; dropping a recorder sets
//!   `Null` without EOS (the file is then valid but carries no index).
//! - All calls here block (state changes, waiting for EOS, the discoverer): from async code, call
//!   them in `spawn_blocking` or on a dedicated thread.
//! - URLs are logged without their credentials (`rtsp://user:pass@…` → `rtsp://***@…`).
//!
//! Driving it:
//! ```no_run
//! # fn main() -> Result<(), duet_recorder::capture::CaptureError> {
//! use duet_recorder::capture::{SourceRecorder, probe};
//! use std::time::Duration;
//! let rec = SourceRecorder::start("rtsp://10.0.0.21/cam", "/var/lib/duet/teacher.mkv".as_ref())?;
//! rec.wait_recording(Duration::from_secs(10))?; // first frame on disk
//! // … the lesson …
//! let file = rec.stop()?; // EOS, wait, Null; then the file is probed
//! assert_eq!(file.duration, probe(&file.path)?.duration);
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`source`]: [`SourceRecorder`], one RTSP H.264 source → one Matroska file.
//! - [`probe`](mod@probe): [`probe()`] a file's duration, video codec and size (GStreamer's
//!   discoverer); [`scan_duration`] the exact end of a file cut off by a crash.
//! - [`supervisor`]: [`SourceSupervisor`](supervisor::SourceSupervisor), one source kept recorded
//!   for a whole lesson across camera drop-outs: segments, gaps, restarts with backoff.

pub mod probe;
pub mod source;
pub mod supervisor;

use std::path::PathBuf;
use std::time::Duration;

pub use probe::{AudioInfo, MediaInfo, VideoCodec, probe, probe_duration, scan_duration};
pub use source::{Ending, Feed, MediaKind, RecordedFile, SourceOptions, SourceRecorder};

/// What went wrong in capture. URLs in it are already redacted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// GStreamer could not be initialised.
    #[error("GStreamer init failed: {0}")]
    Init(#[source] gstreamer::glib::Error),
    /// A GStreamer element is missing: its plugin package is not installed
    /// (see `deploy/install-deps.sh`).
    #[error("GStreamer element {factory} is missing (plugin not installed?)")]
    MissingElement {
        /// The element factory asked for, e.g. `rtspsrc`.
        factory: &'static str,
    },
    /// The pipeline could not be built or refused a state change.
    #[error("recording pipeline for {url} failed: {reason}")]
    Pipeline {
        /// The source, redacted.
        url: String,
        /// What GStreamer said.
        reason: String,
    },
    /// The source failed while recording (unreachable, unplugged, not H.264…).
    #[error("source {url} failed: {reason}")]
    Source {
        /// The source, redacted.
        url: String,
        /// The error message and the element that posted it.
        reason: String,
    },
    /// No frame arrived within the time allowed.
    #[error("no frame from {url} within {waited:?}")]
    Timeout {
        /// The source, redacted.
        url: String,
        /// How long we waited.
        waited: Duration,
    },
    /// Stopped before any frame was written: there is no recording.
    #[error("no frame was recorded from {url}")]
    NoData {
        /// The source, redacted.
        url: String,
    },
    /// A configuration value is out of range.
    #[error("invalid capture configuration: {reason}")]
    Config {
        /// Which value, and why.
        reason: String,
    },
    /// The file could not be read back.
    #[error("cannot probe {path}: {reason}")]
    Probe {
        /// The file.
        path: PathBuf,
        /// What the discoverer said.
        reason: String,
    },
}

/// `url` with any `user:password@` replaced by `***@`, for logs and errors.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_credentials_only() {
        assert_eq!(
            redact("rtsp://admin:p@ss@10.0.0.2:554/cam"),
            "rtsp://***@10.0.0.2:554/cam"
        );
        assert_eq!(redact("rtsp://10.0.0.2/a@b"), "rtsp://10.0.0.2/a@b");
        assert_eq!(redact("not a url"), "not a url");
    }
}
