//! A recorded live class, after the bell: from the per-track RTP dumps to a lesson in the
//! archive, registered with the gateway.
//!
//! Steps (blocking; the service runs them on a blocking thread):
//! 1. Group the dumps by track (participant and source); the parts of one track (rejoins, a
//!    recorder restart) are remuxed, without transcoding, into one WebM on the lesson's
//!    timeline ([`crate::post::remux`]); the time between parts is a gap.
//! 2. Speech activity of every microphone, from the audio itself ([`crate::analysis`]); the lead
//!    teacher's microphone is the teacher's voice (S-T analysis runs on it in the gateway).
//! 3. The composed review video ([`crate::post::compose`]): teacher, courseware and the
//!    receiving classrooms in one picture, all microphones mixed, H.264/AAC MP4 with the index
//!    at the front; its poster, storyboard and fMP4 HLS ([`crate::post`]).
//! 4. Store every file in the archive (verified by size and SHA-256) and register the lesson
//!    (`kind: live`, its pairing, speech activity and how to play it).
//!
//! Every step's output is kept in `<recording>/package/`, so a failed attempt is retried from
//! the dumps, which are never changed.

use super::client::{SeenParticipant, load_participants, parse_dump_name, tracks_dir};
use super::service::SessionRecord;
use crate::delivery::archive::{Archive, StoreRequest};
use crate::delivery::package::sha256_file;
use crate::post::compose::{ComposeInput, Role as ComposeRole, compose};
use crate::post::remux::remux_track;
use duet_gateway_proto::st::{SpeakerRole, SpeechActivity, SpeechTrack};
use duet_gateway_proto::{
    LessonFile, LessonFileKind, LessonGap, LessonKind, LessonMedia, LessonRegistration,
    MediaSource, MediaSourceKind, Storyboard,
};
use duet_sfu_proto::Source;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, UNIX_EPOCH};

/// Why a recorded class could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    /// Nothing was recorded (no track carried a packet).
    #[error("nothing was recorded")]
    Empty,
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A media step failed.
    #[error("{step}: {reason}")]
    Media {
        /// Which step (remux, compose, …).
        step: &'static str,
        /// Why.
        reason: String,
    },
    /// Storing in the archive failed.
    #[error("archive: {0}")]
    Archive(String),
    /// The gateway refused the lesson.
    #[error("gateway: {0}")]
    Gateway(String),
    /// The gateway could not be reached or did not confirm (tried again later).
    #[error("gateway unavailable: {0}")]
    GatewayUnavailable(String),
}

impl FinalizeError {
    /// Whether trying again later may succeed (the archive or the gateway away, a full disk).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Archive(_) | Self::GatewayUnavailable(_) | Self::Io { .. }
        )
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FinalizeError + '_ {
    move |source| FinalizeError::Io {
        path: path.to_owned(),
        source,
    }
}

fn media(step: &'static str) -> impl FnOnce(String) -> FinalizeError {
    move |reason| FinalizeError::Media { step, reason }
}

/// One track of the class, remuxed.
#[derive(Clone, Debug)]
struct Track {
    participant: String,
    source: Source,
    /// `tracks/<participant>-<source>.webm`.
    name: String,
    offset_ms: u64,
    duration_ms: u64,
    gaps: Vec<[u64; 2]>,
}

impl Track {
    fn source_id(&self) -> String {
        format!("{}/{}", self.participant, self.source.as_str())
    }
}

/// A dump part with its first packet's time (unix ms).
type TimedPart = (u64, PathBuf);

/// Dump parts per track: participant, source, the parts in order.
type Groups = Vec<(String, Source, Vec<PathBuf>)>;

/// The dumps of `dir` grouped by track, each track's parts in order; and the first packet's
/// time of the whole recording.
fn group_dumps(dir: &Path) -> Result<(Groups, u64), FinalizeError> {
    let tracks = tracks_dir(dir);
    // (participant, source) → the source and its parts with their first packet's time.
    let mut groups: BTreeMap<(String, &'static str), (Source, Vec<TimedPart>)> = BTreeMap::new();
    let entries = match std::fs::read_dir(&tracks) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(FinalizeError::Empty),
        Err(e) => return Err(io(&tracks)(e)),
    };
    let mut first = u64::MAX;
    for entry in entries {
        let entry = entry.map_err(io(&tracks))?;
        let name = entry.file_name();
        let Some((participant, source, ms)) = name.to_str().and_then(parse_dump_name) else {
            continue;
        };
        if entry.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            continue;
        }
        first = first.min(ms);
        groups
            .entry((participant, source.as_str()))
            .or_insert_with(|| (source, Vec::new()))
            .1
            .push((ms, entry.path()));
    }
    if groups.is_empty() {
        return Err(FinalizeError::Empty);
    }
    let groups = groups
        .into_iter()
        .map(|((participant, _), (source, mut v))| {
            v.sort();
            (participant, source, v.into_iter().map(|(_, p)| p).collect())
        })
        .collect();
    Ok((groups, first))
}

/// Delivers the recording in `dir` (see the module doc); returns what was registered.
pub fn finalize(
    dir: &Path,
    record: &SessionRecord,
    archive: &Archive,
    gateway_url: &str,
    gateway_token: &str,
    stop: &AtomicBool,
) -> Result<LessonRegistration, FinalizeError> {
    let span =
        tracing::info_span!("live_lesson", lesson = %record.lesson_id, room = %record.session.room);
    let _enter = span.enter();
    let started = std::time::Instant::now();
    let session = &record.session;
    let key = format!(
        "{}/{}/{}",
        session.lead_classroom_id, session.date, record.lesson_id
    );
    // Post-processed already (an earlier attempt stored or registered part of it): deliver the
    // same registration again.
    if let Ok(bytes) = std::fs::read(registration_path(dir))
        && let Ok(registration) = serde_json::from_slice::<LessonRegistration>(&bytes)
    {
        tracing::info!("delivering the post-processed recording again");
        deliver(
            &dir.join("package"),
            &key,
            &registration,
            archive,
            gateway_url,
            gateway_token,
            stop,
        )?;
        return Ok(registration);
    }
    let (groups, first_ms) = group_dumps(dir)?;
    let lesson_start = UNIX_EPOCH + Duration::from_millis(first_ms);
    let package = dir.join("package");
    std::fs::create_dir_all(package.join("tracks")).map_err(io(&package))?;
    let people = load_participants(dir);

    // 1. Remux every track.
    let mut tracks = Vec::new();
    for (participant, source, parts) in &groups {
        let name = format!("tracks/{participant}-{}.webm", source.as_str());
        let out = package.join(&name);
        match remux_track(parts, lesson_start, &out) {
            Ok(r) => tracks.push(Track {
                participant: participant.clone(),
                source: *source,
                name,
                offset_ms: u64::try_from(r.offset_ms).unwrap_or(0),
                duration_ms: r.duration_ms,
                gaps: r.gaps,
            }),
            Err(e) => {
                // One unreadable track (a crash in its first packets) must not lose the lesson.
                tracing::warn!(%participant, %source, error = %e, "a track could not be remuxed; left out");
            }
        }
    }
    if tracks.is_empty() {
        return Err(FinalizeError::Empty);
    }
    let duration_ms = tracks
        .iter()
        .map(|t| t.offset_ms + t.duration_ms)
        .max()
        .unwrap_or(0)
        .max(1000);
    tracing::info!(tracks = tracks.len(), duration_ms, "tracks remuxed");

    // 2. Speech activity of every microphone.
    let role_of = |p: &str| people.get(p).map(|s: &SeenParticipant| s.role.clone());
    let name_of = |p: &str| {
        people
            .get(p)
            .map_or_else(|| p.to_owned(), |s| s.name.clone())
    };
    let mut speech = SpeechActivity {
        tracks: Vec::new(),
        duration_ms,
    };
    for t in tracks.iter().filter(|t| t.source == Source::Microphone) {
        let segments = match crate::analysis::speech_segments(&package.join(&t.name)) {
            Ok(s) => s,
            Err(e) => {
                // The lesson is kept; its S-T analysis lacks this microphone.
                tracing::warn!(source = %t.source_id(), error = %e, "no speech activity for a microphone");
                continue;
            }
        };
        speech.tracks.push(SpeechTrack {
            source_id: t.source_id(),
            role: if role_of(&t.participant).as_deref() == Some("lead") {
                SpeakerRole::Lead
            } else {
                SpeakerRole::Receiving
            },
            label: name_of(&t.participant),
            segments: segments
                .into_iter()
                .map(|[a, b]| {
                    [
                        (a + t.offset_ms).min(duration_ms),
                        (b + t.offset_ms).min(duration_ms),
                    ]
                })
                .filter(|[a, b]| a < b)
                .collect(),
        });
    }
    let speech_path = package.join("speech.json");
    write_json(&speech_path, &speech)?;

    // 3. The composed review video, its pictures and HLS.
    let mut classroom = 0u32;
    let inputs: Vec<ComposeInput> = tracks
        .iter()
        .map(|t| {
            let lead = role_of(&t.participant).as_deref() == Some("lead");
            let role = match t.source {
                Source::Microphone => ComposeRole::Microphone,
                Source::Screen => ComposeRole::Screen,
                Source::Camera if lead => ComposeRole::LeadCamera,
                Source::Camera => {
                    classroom += 1;
                    ComposeRole::ClassroomCamera(classroom - 1)
                }
            };
            ComposeInput {
                path: package.join(&t.name),
                offset_ms: i64::try_from(t.offset_ms).unwrap_or(i64::MAX),
                role,
                label: name_of(&t.participant),
            }
        })
        .collect();
    let review = package.join("review.mp4");
    compose(&inputs, duration_ms, &review, &|_| {}).map_err(|e| media("compose")(e.to_string()))?;
    let thumbs_dir = package.join("thumbs");
    // What an earlier, failed attempt left must not be registered with this one.
    for d in [&thumbs_dir, &package.join("hls")] {
        match std::fs::remove_dir_all(d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(d)(e)),
            _ => {}
        }
    }
    let storyboard_interval = (duration_ms / 60).clamp(2_000, 60_000);
    let storyboard =
        crate::post::thumbs::poster_and_storyboard(&review, &thumbs_dir, storyboard_interval, 160)
            .map_err(|e| media("thumbnails")(e.to_string()))?;
    let hls = crate::post::hls::package_hls(&review, &package.join("hls"), 6)
        .map_err(|e| media("hls")(e.to_string()))?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "post-processing done"
    );

    // 4. Store and register.
    let started_at: chrono::DateTime<chrono::Utc> = lesson_start.into();
    let ended_at = started_at + chrono::Duration::milliseconds(duration_ms as i64);
    let media = LessonMedia {
        review: "review.mp4".into(),
        hls: Some(format!("hls/{}", hls.playlist)),
        poster: Some(format!("thumbs/{}", storyboard.poster)),
        storyboard: Some(Storyboard {
            file: format!("thumbs/{}", storyboard.file),
            interval_ms: storyboard.interval_ms,
            columns: storyboard.columns,
            tile_width: storyboard.tile_width,
            tile_height: storyboard.tile_height,
            count: storyboard.count,
        }),
        sources: tracks
            .iter()
            .map(|t| MediaSource {
                id: t.source_id(),
                label: source_label(&name_of(&t.participant), t.source),
                kind: if t.source.is_audio() {
                    MediaSourceKind::Audio
                } else {
                    MediaSourceKind::Video
                },
                file: t.name.clone(),
                offset_ms: i64::try_from(t.offset_ms).unwrap_or(i64::MAX),
                duration_ms: t.duration_ms,
            })
            .collect(),
    };
    // The recording's own gaps first: they matter most if the list must be cut.
    let mut gaps = Vec::new();
    for [a, b] in recording_gaps(&tracks) {
        gaps.push(LessonGap {
            source_id: None,
            from: started_at + chrono::Duration::milliseconds(a as i64),
            to: started_at + chrono::Duration::milliseconds(b as i64),
            reason: "录制中断 (the recorder was not connected)".into(),
        });
    }
    for t in &tracks {
        for [a, b] in &t.gaps {
            gaps.push(LessonGap {
                source_id: Some(t.source_id()),
                from: started_at + chrono::Duration::milliseconds(*a as i64),
                to: started_at + chrono::Duration::milliseconds(*b as i64),
                reason: "没有收到媒体 (no media received)".into(),
            });
        }
    }
    gaps.truncate(1000);
    let parts = groups.iter().map(|(_, _, p)| p.len()).max().unwrap_or(1);
    let metadata = json!({
        "kind": "live",
        "room": record.session.room,
        "participants": people,
        "tracks": tracks.iter().map(|t| json!({
            "source_id": t.source_id(), "file": t.name, "offset_ms": t.offset_ms,
            "duration_ms": t.duration_ms, "gaps": t.gaps,
        })).collect::<Vec<_>>(),
        "media": media,
    });
    write_json(&package.join("metadata.json"), &metadata)?;

    let mut files = Vec::new();
    let mut add =
        |name: String, kind: LessonFileKind, source_id: Option<String>, duration_s: f64| {
            let path = package.join(&name);
            sha256_file(&path)
                .map(|(bytes, sha256)| {
                    files.push(LessonFile {
                        name,
                        kind,
                        source_id,
                        bytes,
                        duration_s,
                        sha256,
                    })
                })
                .map_err(|e| FinalizeError::Archive(e.to_string()))
        };
    add(
        "review.mp4".into(),
        LessonFileKind::Programme,
        None,
        duration_ms as f64 / 1000.0,
    )?;
    for t in &tracks {
        add(
            t.name.clone(),
            LessonFileKind::Source,
            Some(t.source_id()),
            t.duration_ms as f64 / 1000.0,
        )?;
    }
    add("speech.json".into(), LessonFileKind::Analysis, None, 0.0)?;
    add("metadata.json".into(), LessonFileKind::Metadata, None, 0.0)?;
    for name in relative_files(&package, &thumbs_dir)? {
        add(name, LessonFileKind::Image, None, 0.0)?;
    }
    for name in relative_files(&package, &package.join("hls"))? {
        add(name, LessonFileKind::Hls, None, 0.0)?;
    }

    let registration = LessonRegistration {
        id: record.lesson_id.clone(),
        classroom_id: session.lead_classroom_id.clone(),
        series_id: Some(session.series_id.clone()),
        date: chrono::NaiveDate::parse_from_str(&session.date, "%Y-%m-%d").ok(),
        period: session.period,
        title: session.title.clone(),
        teacher: session.teacher.clone(),
        subject: session.subject.clone(),
        started_at,
        ended_at,
        archive_uri: archive.uri(&key),
        files,
        gaps,
        parts: u32::try_from(parts).unwrap_or(u32::MAX).max(1),
        kind: LessonKind::Live,
        pairing_id: session.pairing_id.clone(),
        speech: Some(speech),
        media: Some(media),
    };
    // From here on a retry sends exactly this (the same files, the same hashes): a lesson the
    // gateway confirmed but whose answer was lost is confirmed again, not refused as changed.
    write_json(&registration_path(dir), &registration)?;
    deliver(
        &package,
        &key,
        &registration,
        archive,
        gateway_url,
        gateway_token,
        stop,
    )?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        duration_ms,
        "live lesson delivered"
    );
    Ok(registration)
}

/// Where the registration of a post-processed recording is kept.
fn registration_path(dir: &Path) -> PathBuf {
    dir.join("package").join("registration.json")
}

/// Stores every file of `registration` from `package` under `key` and registers the lesson.
fn deliver(
    package: &Path,
    key: &str,
    registration: &LessonRegistration,
    archive: &Archive,
    gateway_url: &str,
    gateway_token: &str,
    stop: &AtomicBool,
) -> Result<(), FinalizeError> {
    for f in &registration.files {
        let outcome = archive
            .store(
                StoreRequest {
                    src: &package.join(&f.name),
                    key: &format!("{key}/{}", f.name),
                    bytes: f.bytes,
                    sha256: &f.sha256,
                },
                None,
                &mut |_| Ok(()),
                stop,
            )
            .map_err(|e| FinalizeError::Archive(e.to_string()))?;
        tracing::debug!(file = %f.name, ?outcome, "stored");
    }
    register(gateway_url, gateway_token, registration, stop)
}

/// What a source is called in the player: the participant's name and what it carries.
fn source_label(name: &str, source: Source) -> String {
    match source {
        Source::Camera => format!("{name} · 摄像头"),
        Source::Microphone => format!("{name} · 麦克风"),
        Source::Screen => format!("{name} · 课件"),
    }
}

/// Times (ms on the lesson timeline) when no track at all received media for over 2 s: the
/// recorder was away (killed, or its link dropped).
fn recording_gaps(tracks: &[Track]) -> Vec<[u64; 2]> {
    let mut covered: Vec<[u64; 2]> = Vec::new();
    for t in tracks {
        let mut from = t.offset_ms;
        for [a, b] in &t.gaps {
            if *a > from {
                covered.push([from, *a]);
            }
            from = from.max(*b);
        }
        let end = t.offset_ms + t.duration_ms;
        if end > from {
            covered.push([from, end]);
        }
    }
    covered.sort();
    let mut gaps = Vec::new();
    let mut reach = match covered.first() {
        Some([_, b]) => *b,
        None => return gaps,
    };
    for [a, b] in covered.into_iter().skip(1) {
        if a > reach + 2_000 {
            gaps.push([reach, a]);
        }
        reach = reach.max(b);
    }
    gaps
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), FinalizeError> {
    let body = serde_json::to_vec_pretty(value).map_err(|e| FinalizeError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(path, body).map_err(io(path))
}

/// Every file under `dir`, as a path relative to `base` with `/` separators, sorted.
fn relative_files(base: &Path, dir: &Path) -> Result<Vec<String>, FinalizeError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&d)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&d))?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(base) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Registers the lesson, retrying while the gateway is unreachable or busy (up to ~2 min).
fn register(
    gateway_url: &str,
    token: &str,
    registration: &LessonRegistration,
    stop: &AtomicBool,
) -> Result<(), FinalizeError> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let mut wait = Duration::from_millis(500);
    for _ in 0..12 {
        match crate::delivery::gateway::register(&agent, gateway_url, token, registration) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(unavailable)) => {
                tracing::warn!(reason = %unavailable.reason, "gateway unavailable; registering again");
            }
            Err(e) => return Err(FinalizeError::Gateway(e.to_string())),
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(15));
    }
    Err(FinalizeError::GatewayUnavailable(
        "the gateway did not confirm the lesson".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(offset_ms: u64, duration_ms: u64, gaps: Vec<[u64; 2]>) -> Track {
        Track {
            participant: "p".into(),
            source: Source::Camera,
            name: "x".into(),
            offset_ms,
            duration_ms,
            gaps,
        }
    }

    #[test]
    fn a_gap_is_where_no_track_received_anything() {
        // Two tracks both interrupted 20–30 s (the recorder was away): one recording gap.
        let a = track(0, 60_000, vec![[20_000, 30_000]]);
        let b = track(1_000, 59_000, vec![[20_500, 29_500]]);
        assert_eq!(recording_gaps(&[a.clone(), b]), vec![[20_500, 29_500]]);
        // A classroom that dropped out alone is not a recording gap.
        let c = track(0, 60_000, vec![]);
        assert!(recording_gaps(&[a, c]).is_empty());
        // Short silences between tracks are not gaps.
        let d = track(0, 10_000, vec![]);
        let e = track(11_000, 10_000, vec![]);
        assert!(recording_gaps(&[d, e]).is_empty());
    }
}
