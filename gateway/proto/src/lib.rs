//! Wire types of the gateway's API that other Duet services send, shared so that the sender and
//! the gateway cannot drift apart: today the registration of a recorded lesson
//! (`POST /api/lessons`), which the recorder sends and the gateway validates and stores.
//!
//! I/O-free: serde shapes only. What makes a registration *valid* (bounds, scope) is the
//! gateway's business, in `duet_gateway::api::recording`.
//!
//! [`st`]: the S-T analysis of a lesson's speech activity (the registration's `speech` field),
//! pure computation shared by the gateway and whoever else codes lessons.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub mod st;

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
    /// HLS playlists and segments (under `hls/`).
    Hls,
    /// Pictures: the poster, the storyboard (under `thumbs/`).
    Image,
    /// Analysis results, JSON.
    Analysis,
}

/// Where a lesson came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LessonKind {
    /// A recording classroom (录播教室) recorded it.
    #[default]
    Room,
    /// The hidden recorder of a live paired class (同步课堂) recorded it.
    Live,
}

impl LessonKind {
    /// The stable lower-case token (as in JSON and in the database).
    pub fn as_str(self) -> &'static str {
        match self {
            LessonKind::Room => "room",
            LessonKind::Live => "live",
        }
    }

    /// Parses the stable token.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "room" => Some(LessonKind::Room),
            "live" => Some(LessonKind::Live),
            _ => None,
        }
    }
}

pub use st::{SpeakerRole as SpeechRole, SpeechActivity, SpeechTrack};

/// The storyboard picture: `count` tiles of `tile_width`×`tile_height`, `columns` per row, one
/// every `interval_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storyboard {
    /// The picture, relative to the archive.
    pub file: String,
    /// Time between tiles.
    pub interval_ms: u64,
    /// Tiles per row.
    pub columns: u32,
    /// Tile width in pixels.
    pub tile_width: u32,
    /// Tile height in pixels.
    pub tile_height: u32,
    /// Number of tiles.
    pub count: u32,
}

/// Whether a playable source has a picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaSourceKind {
    /// Video (with or without sound).
    Video,
    /// Sound only.
    Audio,
}

/// One per-track file a player can show beside the review video.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSource {
    /// `<participant>/<source>`, e.g. `teacher/camera`.
    pub id: String,
    /// A label for people, e.g. `主讲教师`.
    pub label: String,
    /// Video or audio.
    pub kind: MediaSourceKind,
    /// The file, relative to the archive (e.g. `tracks/teacher-camera.webm`).
    pub file: String,
    /// Where the file's time 0 lies on the lesson's timeline.
    pub offset_ms: i64,
    /// Its length.
    pub duration_ms: u64,
}

/// How to play a lesson: the files a player needs, relative to the archive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LessonMedia {
    /// The review video (MP4), e.g. `review.mp4`.
    pub review: String,
    /// The HLS master playlist, e.g. `hls/index.m3u8`.
    #[serde(default)]
    pub hls: Option<String>,
    /// The poster picture.
    #[serde(default)]
    pub poster: Option<String>,
    /// The storyboard (scrubbing thumbnails).
    #[serde(default)]
    pub storyboard: Option<Storyboard>,
    /// Per-track files.
    #[serde(default)]
    pub sources: Vec<MediaSource>,
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
    /// A recording classroom's lesson (the default) or a recorded live class.
    #[serde(default)]
    pub kind: LessonKind,
    /// For a live class: the pairing of its series, whose schools may see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing_id: Option<String>,
    /// The speech activity measured from the audio (for the S-T analysis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech: Option<SpeechActivity>,
    /// How to play it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<LessonMedia>,
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
        assert_eq!(r.kind, LessonKind::Room, "the kind defaults to room");
        assert!(r.speech.is_none() && r.media.is_none() && r.pairing_id.is_none());
        let back = serde_json::to_value(&r).expect("serializes");
        assert_eq!(back["date"], "2026-12-01");
        assert_eq!(back["files"][0]["kind"], "metadata");
        assert!(
            back.get("media").is_none(),
            "absent optional objects stay absent"
        );
    }

    #[test]
    fn a_live_registration_carries_speech_and_media() {
        let json = serde_json::json!({
            "id": "les_2", "classroom_id": "cls", "kind": "live", "pairing_id": "par_1",
            "title": "t", "teacher": "", "subject": "",
            "started_at": "2026-12-01T00:00:00Z", "ended_at": "2026-12-01T00:45:00Z",
            "archive_uri": "file:///archive/les_2/",
            "files": [{"name": "hls/index.m3u8", "kind": "hls", "bytes": 10, "sha256": "00"}],
            "parts": 1,
            "speech": {"tracks": [{"source_id": "teacher/microphone", "role": "lead",
                                   "segments": [[0, 1500]]}], "duration_ms": 2700000},
            "media": {"review": "review.mp4", "hls": null, "sources": [
                {"id": "room-a/camera", "label": "A", "kind": "video",
                 "file": "tracks/room-a-camera.webm", "offset_ms": -20, "duration_ms": 100}]}
        });
        let r: LessonRegistration = serde_json::from_value(json).expect("parses");
        assert_eq!(r.kind, LessonKind::Live);
        assert_eq!(r.files[0].kind, LessonFileKind::Hls);
        let speech = r.speech.expect("speech");
        assert_eq!(speech.tracks[0].segments, vec![[0, 1500]]);
        assert_eq!(speech.tracks[0].role, SpeechRole::Lead);
        assert_eq!(r.media.expect("media").sources[0].offset_ms, -20);
    }
}
