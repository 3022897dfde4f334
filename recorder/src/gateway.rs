//! The recorder's client of the gateway's JSON API: the recording classroom's devices, its
//! timetable, and the room's status report. (Registering delivered lessons is
//! [`crate::delivery`]'s.)
//!
//! Blocking (ureq), with short timeouts: call it from the room's thread, never from an async
//! executor. Answers are parsed into small typed structs; anything unexpected is a
//! [`GatewayError`], never a panic. Authenticates with a machine token (`Authorization: Bearer`).

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a gateway request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// No answer (refused, timed out, DNS): the gateway is unreachable.
    #[error("gateway unreachable: {0}")]
    Unreachable(String),
    /// The gateway answered with an error status.
    #[error("gateway answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The start of its body (the API's `{code, message}`).
        body: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from the gateway: {0}")]
    Invalid(String),
    /// The classroom is not among the token's classrooms.
    #[error("classroom {0} not found with this token")]
    NoClassroom(String),
}

/// A device of a classroom, as the gateway lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewayDevice {
    /// Stable id within the room.
    pub id: String,
    /// `camera`, `screen_capture` or `microphone`.
    pub kind: String,
    /// Camera position (`teacher_close_up`, …).
    #[serde(default)]
    pub position: Option<String>,
    /// Where its media comes from.
    #[serde(default)]
    pub source: String,
    /// Human label, if the admin gave one.
    #[serde(default)]
    pub label: Option<String>,
}

/// A classroom as the gateway lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewayClassroom {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `lead`, `receiving` or `recording`.
    pub kind: String,
    /// Its devices.
    #[serde(default)]
    pub devices: Vec<GatewayDevice>,
}

/// One timetabled lesson of the classroom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduledLesson {
    /// The series.
    pub series_id: String,
    /// School-local date.
    pub date: NaiveDate,
    /// The period.
    pub period: u8,
    /// Start, UTC.
    pub start: DateTime<Utc>,
    /// End, UTC.
    pub end: DateTime<Utc>,
    /// The teacher's name.
    pub teacher: String,
    /// The subject.
    pub subject: String,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct Occurrence {
    series_id: String,
    date: NaiveDate,
    period: u8,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    teacher: Named,
    subject: String,
}

#[derive(Deserialize)]
struct Timetable {
    occurrences: Vec<Occurrence>,
}

#[derive(Deserialize)]
struct School {
    id: String,
}

/// A client of one gateway with one machine token.
#[derive(Clone)]
pub struct GatewayClient {
    /// `http://host:port`, no trailing slash.
    base: String,
    /// The `Authorization` header value.
    auth: String,
    /// The connection pool.
    agent: ureq::Agent,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs.
        f.debug_struct("GatewayClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl GatewayClient {
    /// A client of `base_url` (e.g. `http://127.0.0.1:8080`) with `token`.
    pub fn new(base_url: &str, token: &str) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            auth: format!("Bearer {token}"),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(TIMEOUT)
                .timeout(TIMEOUT)
                .build(),
        }
    }

    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, GatewayError> {
        let response = self
            .agent
            .get(&format!("{}{path}", self.base))
            .set("Authorization", &self.auth)
            .call()
            .map_err(map_error)?;
        response
            .into_json()
            .map_err(|e| GatewayError::Invalid(e.to_string()))
    }

    /// The classroom `id` with its devices.
    pub fn classroom(&self, id: &str) -> Result<GatewayClassroom, GatewayError> {
        let schools: Vec<School> = self.get("/api/schools")?;
        for school in schools {
            let rooms: Vec<GatewayClassroom> =
                self.get(&format!("/api/schools/{}/classrooms", school.id))?;
            if let Some(room) = rooms.into_iter().find(|r| r.id == id) {
                return Ok(room);
            }
        }
        Err(GatewayError::NoClassroom(id.to_owned()))
    }

    /// The classroom's lessons from `from` to `to` (school-local dates, inclusive).
    pub fn timetable(
        &self,
        classroom_id: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<ScheduledLesson>, GatewayError> {
        let table: Timetable = self.get(&format!(
            "/api/timetable?from={from}&to={to}&classroom_id={classroom_id}"
        ))?;
        Ok(table
            .occurrences
            .into_iter()
            .map(|o| ScheduledLesson {
                series_id: o.series_id,
                date: o.date,
                period: o.period,
                start: o.start,
                end: o.end,
                teacher: o.teacher.name,
                subject: o.subject,
            })
            .collect())
    }

    /// Reports the room's status (`PUT /api/classrooms/{id}/recorder-status`).
    pub fn report_status(
        &self,
        classroom_id: &str,
        status: &serde_json::Value,
    ) -> Result<(), GatewayError> {
        self.agent
            .put(&format!(
                "{}/api/classrooms/{classroom_id}/recorder-status",
                self.base
            ))
            .set("Authorization", &self.auth)
            .send_json(status)
            .map_err(map_error)?;
        Ok(())
    }
}

fn map_error(e: ureq::Error) -> GatewayError {
    match e {
        ureq::Error::Status(status, response) => {
            let body = response.into_string().unwrap_or_default();
            GatewayError::Status {
                status,
                body: body.chars().take(300).collect(),
            }
        }
        ureq::Error::Transport(t) => GatewayError::Unreachable(t.to_string()),
    }
}
