//! Registering a delivered lesson with the gateway: `POST {gateway_url}/api/lessons` with a
//! bearer token and a [`LessonRegistration`] body. The endpoint is idempotent by lesson id.
//!
//! One call, classified (`register`): 200 or 201 confirm; connection errors, timeouts, 408,
//! 429 and 5xx are worth retrying ([`DeliveryError::GatewayUnavailable`], with the server's
//! `Retry-After` if it sent one); every other status is a refusal
//! ([`DeliveryError::GatewayRefused`], with the gateway's message). The retry loop is the
//! queue's.

use std::time::Duration;

use chrono::NaiveDate;

use super::DeliveryError;
use super::state::PackagedFile;
use crate::manifest::LessonManifest;

/// How long one registration call may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest gateway message kept in an error.
const MAX_MESSAGE: usize = 500;

pub use duet_gateway_proto::{
    LessonFile, LessonFileKind as FileKind, LessonGap, LessonRegistration,
};

/// The lesson's date as archive keys and the gateway use it.
pub fn lesson_date(manifest: &LessonManifest) -> String {
    manifest
        .plan
        .date
        .clone()
        .unwrap_or_else(|| manifest.plan.start.date_naive().to_string())
}

/// The registration of `manifest`'s lesson with its archived `files`.
pub fn registration(
    manifest: &LessonManifest,
    files: &[PackagedFile],
    archive_uri: &str,
) -> LessonRegistration {
    let plan = &manifest.plan;
    let (started_at, ended_at) = manifest.recorded_span().unwrap_or((plan.start, plan.end));
    LessonRegistration {
        id: plan.id.clone(),
        classroom_id: plan.classroom_id.clone(),
        series_id: plan.series_id.clone(),
        date: NaiveDate::parse_from_str(&lesson_date(manifest), "%Y-%m-%d").ok(),
        period: plan.period,
        title: plan.title.clone(),
        teacher: plan.teacher.clone(),
        subject: plan.subject.clone(),
        started_at,
        ended_at,
        archive_uri: archive_uri.to_owned(),
        files: files
            .iter()
            .map(|f| LessonFile {
                name: f.name.clone(),
                kind: f.kind,
                source_id: f.source_id.clone(),
                bytes: f.bytes,
                duration_s: f.duration_s.unwrap_or(0.0),
                sha256: f.sha256.clone(),
            })
            .collect(),
        gaps: manifest
            .gaps
            .iter()
            .map(|g| LessonGap {
                source_id: g.source_id.clone(),
                from: g.from,
                to: g.to,
                reason: g.reason.clone(),
            })
            .collect(),
        parts: u32::try_from(manifest.parts.len()).unwrap_or(u32::MAX),
        kind: duet_gateway_proto::LessonKind::Room,
        pairing_id: None,
        speech: None,
        media: None,
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
