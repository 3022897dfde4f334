//! Registering a delivered lesson with the gateway: `POST {gateway_url}/api/lessons` with a
//! bearer token and a [`LessonRegistration`] body. The endpoint is idempotent by lesson id.
//!
//! One call, classified (`register`): 200 or 201 confirm; connection errors, timeouts, 408,
//! 429 and 5xx are worth retrying ([`DeliveryError::GatewayUnavailable`], with the server's
//! `Retry-After` if it sent one); every other status is a refusal
//! ([`DeliveryError::GatewayRefused`], with the gateway's message). The retry loop is the
//! queue's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::DeliveryError;
use super::state::PackagedFile;
use crate::manifest::LessonManifest;

/// How long one registration call may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest gateway message kept in an error.
const MAX_MESSAGE: usize = 500;

/// What an archived file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A part's programme (movie mode, 电影模式), MP4.
    Programme,
    /// One source's segment (resource mode, 资源模式), as recorded.
    Source,
    /// `metadata.json`.
    Metadata,
}

/// One archived file, as the gateway lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisteredFile {
    /// Name under the lesson's archive location, e.g. `programme-1.mp4`.
    pub name: String,
    /// What it is.
    pub kind: FileKind,
    /// The source (source files only).
    pub source_id: Option<String>,
    /// Size in bytes.
    pub bytes: u64,
    /// Media duration (media files only; left out for the metadata, which the gateway then
    /// counts as 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// A gap, as the gateway shows it to reviewers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisteredGap {
    /// The source, or `None` for the whole recording.
    pub source_id: Option<String>,
    /// Start.
    pub from: DateTime<Utc>,
    /// End.
    pub to: DateTime<Utc>,
    /// Why.
    pub reason: String,
}

/// The body of `POST /api/lessons`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LessonRegistration {
    /// The lesson id (the endpoint is idempotent by it).
    pub id: String,
    /// The recording classroom.
    pub classroom_id: String,
    /// The timetable series, when timetabled.
    pub series_id: Option<String>,
    /// The lesson's date (`YYYY-MM-DD`): the plan's, else the UTC date of its start.
    pub date: String,
    /// The period (节次), when timetabled.
    pub period: Option<u8>,
    /// Title.
    pub title: String,
    /// Teacher.
    pub teacher: String,
    /// Subject.
    pub subject: String,
    /// First part's start.
    pub started_at: DateTime<Utc>,
    /// Last part's end (the plan's end if it was cut off).
    pub ended_at: DateTime<Utc>,
    /// Where the files are: `file:///…/` or `s3://bucket/…/`, ending in `/`.
    pub archive_uri: String,
    /// Every archived file.
    pub files: Vec<RegisteredFile>,
    /// Gaps of sources and of the whole recording.
    pub gaps: Vec<RegisteredGap>,
    /// How many parts the recording has.
    pub parts: usize,
}

/// The lesson's date as archive keys and the gateway use it.
pub fn lesson_date(manifest: &LessonManifest) -> String {
    manifest
        .plan
        .date
        .clone()
        .unwrap_or_else(|| manifest.plan.start.date_naive().to_string())
}

impl LessonRegistration {
    /// The registration of `manifest`'s lesson with its archived `files`.
    pub fn new(manifest: &LessonManifest, files: &[PackagedFile], archive_uri: &str) -> Self {
        let plan = &manifest.plan;
        let (started_at, ended_at) = manifest.recorded_span().unwrap_or((plan.start, plan.end));
        Self {
            id: plan.id.clone(),
            classroom_id: plan.classroom_id.clone(),
            series_id: plan.series_id.clone(),
            date: lesson_date(manifest),
            period: plan.period,
            title: plan.title.clone(),
            teacher: plan.teacher.clone(),
            subject: plan.subject.clone(),
            started_at,
            ended_at,
            archive_uri: archive_uri.to_owned(),
            files: files
                .iter()
                .map(|f| RegisteredFile {
                    name: f.name.clone(),
                    kind: f.kind,
                    source_id: f.source_id.clone(),
                    bytes: f.bytes,
                    duration_s: f.duration_s,
                    sha256: f.sha256.clone(),
                })
                .collect(),
            gaps: manifest
                .gaps
                .iter()
                .map(|g| RegisteredGap {
                    source_id: g.source_id.clone(),
                    from: g.from,
                    to: g.to,
                    reason: g.reason.clone(),
                })
                .collect(),
            parts: manifest.parts.len(),
        }
    }
}

/// A registration attempt that is worth repeating, and when.
#[derive(Debug)]
pub(crate) struct Unavailable {
    /// What happened.
    pub reason: String,
    /// The server's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
}

/// Sends one registration. `Ok` means confirmed.
pub(crate) fn register(
    agent: &ureq::Agent,
    gateway_url: &str,
    token: &str,
    registration: &LessonRegistration,
) -> Result<Result<(), Unavailable>, DeliveryError> {
    let url = format!("{}/api/lessons", gateway_url.trim_end_matches('/'));
    let response = agent
        .post(&url)
        .set("Authorization", &format!("Bearer {token}"))
        .send_json(registration);
    let (status, response) = match response {
        Ok(response) => (response.status(), response),
        Err(ureq::Error::Status(status, response)) => (status, response),
        Err(ureq::Error::Transport(e)) => {
            return Ok(Err(Unavailable {
                reason: format!("{url}: {e}"),
                retry_after: None,
            }));
        }
    };
    match status {
        200 | 201 => Ok(Ok(())),
        408 | 429 | 500..=599 => {
            let retry_after = response
                .header("Retry-After")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            Ok(Err(Unavailable {
                reason: format!("HTTP {status}: {}", message(response)),
                retry_after,
            }))
        }
        _ => Err(DeliveryError::GatewayRefused {
            lesson_id: registration.id.clone(),
            status,
            message: message(response),
        }),
    }
}

/// The gateway's message: `{"message": …}` or `{"error": …}` if JSON, else the text, shortened.
fn message(response: ureq::Response) -> String {
    let text = response
        .into_string()
        .unwrap_or_else(|e| format!("(unreadable body: {e})"));
    let from_json = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            ["message", "error"]
                .iter()
                .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_owned))
        });
    let mut message = from_json.unwrap_or(text);
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}
