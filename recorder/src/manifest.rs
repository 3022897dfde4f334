//! The lesson manifest: what one recorded lesson is, on disk, from its first frame to its
//! delivery. It is the contract between the lesson runner (which writes it while recording) and
//! delivery (which packages, uploads and registers what it lists).
//!
//! One lesson lives in one directory, `<recordings>/<classroom_id>/<lesson_id>/`:
//!
//! ```text
//! lesson.json                 this manifest, rewritten atomically (write to .tmp, fsync, rename)
//! part-1/programme.mkv        movie mode (电影模式) of the first part
//! part-1/<source_id>-1.mkv    resource mode (资源模式): one file per source and segment
//! part-2/…                    a second part after the recorder was killed and restarted
//! ```
//!
//! Invariants:
//! - Paths in the manifest are relative to the lesson directory and never leave it (no `..`, no
//!   absolute paths): [`LessonManifest::load`] refuses a manifest that breaks this.
//! - A part whose `ended_at` is `None` was cut off (crash, power loss); recovery sets it from the
//!   files before the lesson is finalized.
//! - `phase` only moves forward: `RECORDING → FINALIZED → DELIVERED`. Delivery takes only
//!   `FINALIZED` lessons; nothing in a lesson directory is deleted before `DELIVERED`.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The manifest's file name inside a lesson directory.
pub const MANIFEST_FILE: &str = "lesson.json";

/// What is to be recorded: a timetabled period or a manual recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LessonPlan {
    /// Stable id: `les_<classroom>_<series>_<date>` for a timetabled lesson (so a restart finds the
    /// same lesson), `les_<classroom>_manual_<unix seconds>` for a manual one.
    pub id: String,
    /// The recording classroom (录播教室).
    pub classroom_id: String,
    /// The timetable series, when timetabled.
    pub series_id: Option<String>,
    /// The school-local date of the lesson (`YYYY-MM-DD`), when timetabled.
    pub date: Option<String>,
    /// The period (节次), when timetabled.
    pub period: Option<u8>,
    /// What the lesson is called in the archive, e.g. `数学 · 李老师`.
    pub title: String,
    /// The teacher's display name.
    pub teacher: String,
    /// The subject's name.
    pub subject: String,
    /// When recording starts (the period's start less the pre-roll, or the manual start).
    pub start: DateTime<Utc>,
    /// When recording stops (the period's end plus the post-roll, or as extended).
    pub end: DateTime<Utc>,
}

/// Where a lesson stands on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LessonPhase {
    /// Parts are being written (or were, when the recorder died).
    Recording,
    /// Every part is closed; the lesson waits for delivery.
    Finalized,
    /// The archive and the gateway confirmed the lesson.
    Delivered,
}

/// One recorded file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedMedia {
    /// Relative to the lesson directory, e.g. `part-1/cam-teacher-1.mkv`.
    pub path: PathBuf,
    /// The source it records (`None` for the programme).
    pub source_id: Option<String>,
    /// Media duration in seconds, as probed when the file was closed (0 until then).
    pub duration_s: f64,
}

/// A stretch of time with no picture from a source (or from the whole room, `source_id: None`,
/// when the recorder itself was down).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GapRecord {
    /// The source, or `None` for the whole recording.
    pub source_id: Option<String>,
    /// Start of the gap.
    pub from: DateTime<Utc>,
    /// End of the gap.
    pub to: DateTime<Utc>,
    /// Why, for the reviewer.
    pub reason: String,
}

/// A cut of the programme, as the director made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CutRecord {
    /// Seconds since the part's start (programme time).
    pub at_s: f64,
    /// The shot, in the director's stable tokens with source ids, e.g. `SINGLE(cam-pupil)`.
    pub shot: String,
    /// The rule (or `IDLE`, `OPENING`, `FALLBACK`, `SOURCE_LOST`).
    pub reason: String,
}

/// One uninterrupted run of the recorder within a lesson.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    /// 1, 2, …
    pub index: u32,
    /// When this part started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while recording or when cut off by a crash.
    pub ended_at: Option<DateTime<Utc>>,
    /// The programme (movie mode) file.
    pub programme: Option<RecordedMedia>,
    /// The per-source files (resource mode), segments in order.
    pub sources: Vec<RecordedMedia>,
    /// The programme's cuts.
    pub cuts: Vec<CutRecord>,
}

impl PartRecord {
    /// The directory of part `index`, relative to the lesson directory.
    pub fn dir_name(index: u32) -> PathBuf {
        PathBuf::from(format!("part-{index}"))
    }
}

/// A source of the room as it was recorded (for the archive's metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Device id, e.g. `cam-teacher`.
    pub id: String,
    /// What it shows (`teacher_close_up`, `courseware`, …).
    pub role: String,
    /// Human label (教师特写).
    pub label: String,
}

/// Everything known about one lesson; see the module doc.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LessonManifest {
    /// What was planned.
    pub plan: LessonPlan,
    /// Where it stands.
    pub phase: LessonPhase,
    /// The room's sources.
    pub sources: Vec<SourceInfo>,
    /// The microphone device whose audio is in the programme, if any.
    pub microphone: Option<String>,
    /// The parts, in order.
    pub parts: Vec<PartRecord>,
    /// Gaps of single sources and of the whole recording.
    pub gaps: Vec<GapRecord>,
}

/// Why a manifest cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file system said no.
    #[error("lesson manifest {path}: {source}")]
    Io {
        /// The manifest file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a manifest (bad JSON, or a path leaving the lesson directory).
    #[error("lesson manifest {path} is invalid: {reason}")]
    Invalid {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl LessonManifest {
    /// A new manifest for `plan`, with no part yet.
    pub fn new(plan: LessonPlan, sources: Vec<SourceInfo>, microphone: Option<String>) -> Self {
        Self {
            plan,
            phase: LessonPhase::Recording,
            sources,
            microphone,
            parts: Vec::new(),
            gaps: Vec::new(),
        }
    }

    /// Reads `<dir>/lesson.json`, refusing paths that leave `dir`.
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = fs::read(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let manifest: Self =
            serde_json::from_slice(&bytes).map_err(|e| ManifestError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        for media in manifest.media() {
            if !is_inside(&media.path) {
                return Err(ManifestError::Invalid {
                    path,
                    reason: format!("{} leaves the lesson directory", media.path.display()),
                });
            }
        }
        Ok(manifest)
    }

    /// Writes `<dir>/lesson.json` atomically and durably: a temporary file, fsync, rename, fsync
    /// of the directory. A crash leaves either the old manifest or the new one.
    pub fn save(&self, dir: &Path) -> Result<(), ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let io = |source| ManifestError::Io {
            path: path.clone(),
            source,
        };
        let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        let mut file = fs::File::create(&tmp).map_err(io)?;
        file.write_all(&json).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io)?;
        sync_dir(dir).map_err(io)?;
        Ok(())
    }

    /// Every media file of every part: programmes first within a part, then sources.
    pub fn media(&self) -> impl Iterator<Item = &RecordedMedia> {
        self.parts
            .iter()
            .flat_map(|p| p.programme.iter().chain(p.sources.iter()))
    }

    /// The lesson's start and end as recorded: the first part's start and the last part's end
    /// (the plan's end when that part was cut off).
    pub fn recorded_span(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let first = self.parts.first()?;
        let last = self.parts.last()?;
        Some((first.started_at, last.ended_at.unwrap_or(self.plan.end)))
    }
}

/// Whether a relative path stays inside the directory it is relative to.
fn is_inside(path: &Path) -> bool {
    path.components().all(|c| matches!(c, Component::Normal(_)))
        && path.components().next().is_some()
}

/// fsyncs a directory, so that a rename in it survives a power loss.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LessonPlan {
        LessonPlan {
            id: "les_cls_ser_2026-12-01".into(),
            classroom_id: "cls".into(),
            series_id: Some("ser".into()),
            date: Some("2026-12-01".into()),
            period: Some(3),
            title: "数学 · 李老师".into(),
            teacher: "李老师".into(),
            subject: "数学".into(),
            start: "2026-12-01T02:00:00Z".parse().unwrap(),
            end: "2026-12-01T02:45:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_manifest_round_trips_and_refuses_escaping_paths() {
        let dir = std::env::temp_dir().join(format!("duet-manifest-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut m = LessonManifest::new(plan(), Vec::new(), None);
        m.parts.push(PartRecord {
            index: 1,
            started_at: m.plan.start,
            ended_at: None,
            programme: Some(RecordedMedia {
                path: "part-1/programme.mkv".into(),
                source_id: None,
                duration_s: 0.0,
            }),
            sources: Vec::new(),
            cuts: Vec::new(),
        });
        m.save(&dir).unwrap();
        assert_eq!(LessonManifest::load(&dir).unwrap(), m);
        assert_eq!(m.recorded_span(), Some((m.plan.start, m.plan.end)));

        m.parts[0].sources.push(RecordedMedia {
            path: "../../etc/passwd".into(),
            source_id: Some("cam".into()),
            duration_s: 0.0,
        });
        m.save(&dir).unwrap();
        let err = LessonManifest::load(&dir).unwrap_err();
        assert!(matches!(err, ManifestError::Invalid { .. }), "{err}");
        fs::write(dir.join(MANIFEST_FILE), b"{ not json").unwrap();
        assert!(LessonManifest::load(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
