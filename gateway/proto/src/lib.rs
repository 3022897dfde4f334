//! Wire types of the gateway's API that other Duet services send, shared so that the sender and
//! the gateway cannot drift apart: today the registration of a recorded lesson
//! (`POST /api/lessons`), which the recorder sends and the gateway validates and stores.
//!
//! I/O-free: serde shapes only. What makes a registration *valid* (bounds, scope) is the
//! gateway's business, in `duet_gateway::api::recording`.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// What an archived file of a lesson is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LessonFileKind {
    /// A part's directed programme (电影模式), MP4.
    Programme,
    /// One source's own recording (资源模式), as recorded.
    Source,
    /// `metadata.json` (plan, sources, parts, cuts, gaps).
    Metadata,
}

/// One archived file of a lesson.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LessonFile {
    /// Name relative to the lesson's archive URI, e.g. `programme-1.mp4`.
    pub name: String,
    /// What it is.
    pub kind: LessonFileKind,
    /// The source it records, for `source` files.
    #[serde(default)]
    pub source_id: Option<String>,
    /// Size in bytes.
    pub bytes: u64,
    /// Media duration in seconds (0 for metadata).
    #[serde(default)]
    pub duration_s: f64,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
}

/// A stretch with no picture from a source, or from the whole room (`source_id: null`, the
/// recorder itself was down).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LessonGap {
    /// The source, or `None` for the whole recording.
    #[serde(default)]
    pub source_id: Option<String>,
    /// Start.
    pub from: DateTime<Utc>,
    /// End.
    pub to: DateTime<Utc>,
    /// Why, for the reviewer.
    pub reason: String,
}

/// The body of `POST /api/lessons`: a lesson the recorder delivered to the archive. The gateway
/// answers 201 the first time, 200 when the same body comes again (a retry), 409 when the same
/// id comes with another body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LessonRegistration {
    /// Chosen by the recorder (`les_…`), stable across retries.
    pub id: String,
    /// The recording classroom.
    pub classroom_id: String,
    /// The timetable series, for a timetabled lesson.
    #[serde(default)]
    pub series_id: Option<String>,
    /// The school-local date of the lesson.
    #[serde(default)]
    pub date: Option<NaiveDate>,
    /// Its period (节次), when timetabled.
    #[serde(default)]
    pub period: Option<u8>,
    /// Title in the archive.
    pub title: String,
    /// The teacher's name.
    pub teacher: String,
    /// The subject's name.
    pub subject: String,
    /// The first part's start.
    pub started_at: DateTime<Utc>,
    /// The last part's end.
    pub ended_at: DateTime<Utc>,
    /// Where the files are: `file:///…/` or `s3://bucket/…/`.
    pub archive_uri: String,
    /// Every archived file (at least one).
    pub files: Vec<LessonFile>,
    /// Gaps of sources and of the whole recording.
    #[serde(default)]
    pub gaps: Vec<LessonGap>,
    /// How many uninterrupted runs of the recorder made the lesson.
    pub parts: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_has_the_documented_wire_form() {
        let json = serde_json::json!({
            "id": "les_1", "classroom_id": "cls", "date": "2026-12-01", "period": 1,
            "title": "数学 · 李老师", "teacher": "李老师", "subject": "数学",
            "started_at": "2026-12-01T00:00:00Z", "ended_at": "2026-12-01T00:45:00Z",
            "archive_uri": "file:///archive/les_1/",
            "files": [{"name": "metadata.json", "kind": "metadata", "bytes": 10, "sha256": "00"}],
            "parts": 1
        });
        let r: LessonRegistration = serde_json::from_value(json).expect("parses");
        assert_eq!(r.files[0].duration_s, 0.0, "a missing duration is 0");
        assert_eq!(r.files[0].kind, LessonFileKind::Metadata);
        assert!(r.gaps.is_empty() && r.series_id.is_none());
        let back = serde_json::to_value(&r).expect("serializes");
        assert_eq!(back["date"], "2026-12-01");
        assert_eq!(back["files"][0]["kind"], "metadata");
    }
}
