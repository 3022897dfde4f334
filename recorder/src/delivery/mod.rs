//! Delivery: a finished lesson (manifest phase `FINALIZED`) to the archive and the gateway.
//!
//! Owns everything that happens to a lesson directory after recording: packaging, storing,
//! registering, and (only then) marking it `DELIVERED` and, if configured, removing local media.
//! Knows nothing of capture or rooms; it reads the [`manifest`](crate::manifest) contract.
//!
//! Steps, for one lesson (`<recordings>/<classroom_id>/<lesson_id>/`):
//! 1. **Package** ([`package`]): each part's `programme.mkv` is remuxed, without re-encoding, into
//!    `package/programme-N.mp4` with its index at the front (`movflags=+faststart`); per-source
//!    files are kept as they are; `package/metadata.json` describes the lesson. Every file is
//!    probed (ffmpeg-next) and hashed (SHA-256).
//! 2. **Store** ([`archive`]): each file goes to `<classroom_id>/<date>/<lesson_id>/<name>` in a
//!    local directory or an S3 bucket, resumably, and is verified by size and SHA-256.
//! 3. **Register** ([`gateway`]): `POST {gateway_url}/api/lessons`, retried with capped
//!    exponential backoff until the gateway confirms (200/201) or refuses for good (other 4xx).
//! 4. Mark the manifest `DELIVERED`; then, with `keep_local = false`, remove the local media.
//!
//! Invariants:
//! - Progress is persisted after every step in `<lesson_dir>/delivery.json` ([`state`]): a
//!   restart resumes where it stopped and never repeats a confirmed step (a file stored and
//!   verified is not stored again; a registration confirmed is not sent again).
//! - Nothing in a lesson directory is deleted before the gateway confirmed the lesson and the
//!   manifest says `DELIVERED`.
//! - A damaged input (a truncated or corrupt Matroska file) fails that lesson with
//!   [`DeliveryError::Media`]; it never panics and never yields an MP4 claimed as good. The queue
//!   then carries on with the other lessons and leaves the failed one on disk.
//! - All calls here block (file copies, remuxing, HTTP): the queue runs them on its own thread.
//!
//! Driving it:
//! ```no_run
//! # fn main() -> Result<(), duet_recorder::delivery::DeliveryError> {
//! use duet_recorder::delivery::{Delivery, DeliveryConfig};
//! use std::time::Duration;
//! let config = DeliveryConfig {
//!     gateway_url: "http://127.0.0.1:8080".into(),
//!     gateway_token: "recorder-token".into(),
//!     ..DeliveryConfig::default()
//! }
//! .with_data_dir("/var/lib/duet".as_ref());
//! let handle = Delivery::start(config, "/var/lib/duet/recordings".into())?;
//! handle.enqueue("/var/lib/duet/recordings/cls/les_cls_ser_2026-12-01".into());
//! handle.wait_delivered("les_cls_ser_2026-12-01", Duration::from_secs(600));
//! handle.stop();
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: [`DeliveryConfig`] and [`ArchiveConfig`] (serde, defaults, `validate()`).
//! - [`package`]: [`probe_media`], [`remux_to_mp4`], [`package_lesson`].
//! - [`archive`]: [`Archive`], the local directory store and the S3 store ([`s3`]).
//! - [`gateway`]: the registration body and its one HTTP call, classified.
//! - [`state`]: [`DeliveryState`], the per-lesson progress file.
//! - [`queue`]: [`Delivery`] and [`DeliveryHandle`], the durable queue and its worker thread.

pub mod archive;
pub mod config;
pub mod gateway;
pub mod package;
pub mod queue;
pub mod s3;
pub mod state;

use std::path::PathBuf;

pub use archive::{Archive, StoreOutcome};
pub use config::{ArchiveConfig, DeliveryConfig};
pub use gateway::{FileKind, LessonFile, LessonGap, LessonRegistration, registration};
pub use package::{
    MediaProbe, StreamKind, StreamProbe, package_lesson, probe_media, remux_to_mp4, sha256_file,
};
pub use queue::{Delivery, DeliveryHandle, DeliveryStatus};
pub use state::{DeliveryState, PackagedFile};

use crate::manifest::{LessonPhase, ManifestError};

/// What went wrong while delivering a lesson. Each variant names the lesson, file or key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// A configuration value is out of range.
    #[error("invalid delivery configuration: {reason}")]
    Config {
        /// Which value, and why.
        reason: String,
    },
    /// The lesson's manifest cannot be read or written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The lesson is not ready for delivery (still recording) or has an unusable id.
    #[error("lesson {lesson_id} cannot be delivered: {reason}")]
    Lesson {
        /// The lesson.
        lesson_id: String,
        /// Why, e.g. its phase.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// A media file cannot be probed or remuxed: missing streams, truncated, corrupt.
    #[error("media file {path}: {reason}")]
    Media {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The archive refused or failed to store a file.
    #[error("archive, {key}: {reason}")]
    Archive {
        /// The object key (or path) in the archive.
        key: String,
        /// What went wrong.
        reason: String,
        /// Whether trying again later may succeed (network, 5xx, I/O) or not (4xx, bad data).
        transient: bool,
    },
    /// The gateway refused the lesson for good (409, or a 4xx other than 408/429).
    #[error("gateway refused lesson {lesson_id} (HTTP {status}): {message}")]
    GatewayRefused {
        /// The lesson.
        lesson_id: String,
        /// The HTTP status.
        status: u16,
        /// The gateway's message.
        message: String,
    },
    /// The gateway could not be reached or asked to retry (connection error, timeout, 408,
    /// 429, 5xx); the queue retries.
    #[error("gateway unavailable for lesson {lesson_id}: {reason}")]
    GatewayUnavailable {
        /// The lesson.
        lesson_id: String,
        /// What happened.
        reason: String,
    },
    /// The delivery progress file is unreadable.
    #[error("delivery state {path} is invalid: {reason}")]
    State {
        /// The `delivery.json` file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The queue was stopped while this lesson was being delivered; it resumes on the next start.
    #[error("delivery stopped")]
    Stopped,
}

impl DeliveryError {
    /// Whether trying the same lesson again later may succeed without anyone fixing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Archive { transient, .. } => *transient,
            Self::GatewayUnavailable { .. } | Self::Stopped => true,
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    pub(crate) fn not_ready(lesson_id: &str, phase: LessonPhase) -> Self {
        Self::Lesson {
            lesson_id: lesson_id.to_owned(),
            reason: format!("its manifest phase is {phase:?}, not Finalized"),
        }
    }
}
