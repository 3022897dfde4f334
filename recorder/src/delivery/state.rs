//! [`DeliveryState`]: how far one lesson's delivery got, persisted in `<lesson_dir>/delivery.json`
//! after every step (atomically: temporary file, fsync, rename, fsync of the directory), so a
//! restart resumes there and never repeats a confirmed step.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::DeliveryError;
use super::gateway::FileKind;
use super::package::write_durably;
use super::s3::MultipartProgress;

/// The progress file's name inside a lesson directory.
pub const STATE_FILE: &str = "delivery.json";

/// One file to be archived.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackagedFile {
    /// Its name in the archive, under the lesson's key prefix: `programme-1.mp4`,
    /// `sources/cam-teacher-p1-s1.mkv`, `metadata.json`.
    pub name: String,
    /// What it is.
    pub kind: FileKind,
    /// The source it records (source files only).
    pub source_id: Option<String>,
    /// Where it is, relative to the lesson directory.
    pub local: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Media duration in seconds as probed (media files only).
    pub duration_s: Option<f64>,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// Stored in the archive and verified (size and SHA-256).
    pub stored: bool,
}

/// One lesson's delivery progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// The lesson, for a reader of the file.
    pub lesson_id: String,
    /// The archive location the `stored` flags refer to; when the configured archive changes,
    /// the flags no longer hold and the files are stored again.
    pub archive_uri: Option<String>,
    /// The packaged files; `None` until packaging completed.
    pub files: Option<Vec<PackagedFile>>,
    /// An S3 multipart upload in progress: the file's archive name and the parts done.
    pub multipart: Option<(String, MultipartProgress)>,
    /// When the gateway confirmed the registration; `None` until it did.
    pub registered_at: Option<DateTime<Utc>>,
}

impl DeliveryState {
    /// Reads `<lesson_dir>/delivery.json`; `None` if there is none yet.
    pub fn load(lesson_dir: &Path) -> Result<Option<Self>, DeliveryError> {
        let path = lesson_dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DeliveryError::io(path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DeliveryError::State {
                path,
                reason: e.to_string(),
            })
    }

    /// Writes `<lesson_dir>/delivery.json` atomically and durably.
    pub fn save(&self, lesson_dir: &Path) -> Result<(), DeliveryError> {
        let json = serde_json::to_vec_pretty(self).expect("a delivery state always serializes");
        write_durably(&lesson_dir.join(STATE_FILE), &json)
    }

    /// Whether every packaged file is stored (false before packaging).
    pub fn all_stored(&self) -> bool {
        self.files
            .as_ref()
            .is_some_and(|files| files.iter().all(|f| f.stored))
    }
}
