//! District reference data: subjects, terms (with holidays and make-up days), pairings.

use super::auth::Authed;
use super::{Json, audit, check_name};
use crate::app::AppState;
use crate::error::ApiError;
use crate::policy::{Action, Resource, authorize};
use crate::schedule::{Term, TermDay, TermDayKind as SchedDayKind, TermId, weekday_from_iso};
use crate::store::{
    PairingRow, PairingScope, SubjectRow, TermDayKind, TermDayRow, TermRow, new_id,
};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

fn district(a: &Authed, action: Action) -> Result<String, ApiError> {
    let d = a.principal.district.clone().ok_or(ApiError::Forbidden)?;
    authorize(
        &a.principal,
        action,
        &Resource::DistrictData { district: &d },
    )?;
    Ok(d)
}

/// `GET /api/subjects`.
pub async fn list_subjects(
    State(s): State<Arc<AppState>>,
    a: Authed,
) -> Result<Json<Vec<SubjectRow>>, ApiError> {
    let d = district(&a, Action::Read)?;
    Ok(Json(s.store.list_subjects(&d).await?))
}

/// `POST /api/subjects` body.
#[derive(Deserialize)]
pub struct NewSubject {
    /// Name, e.g. 数学.
    pub name: String,
}

/// `POST /api/subjects`.
pub async fn create_subject(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Json(b): Json<NewSubject>,
) -> Result<(StatusCode, Json<SubjectRow>), ApiError> {
    let d = district(&a, Action::Create)?;
    let row = SubjectRow {
        id: new_id("sub"),
        district_id: d,
        name: check_name("name", &b.name)?,
    };
    s.store.create_subject(&row).await?;
    audit(
        &s,
        &a.principal.id,
        "subject_created",
        &format!("subject:{}", row.id),
        &row.name,
        &a.ip,
    )
    .await;
    Ok((StatusCode::CREATED, Json(row)))
}

/// A special day on the wire.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Day {
    /// The date.
    pub date: NaiveDate,
    /// `holiday` or `makeup`.
    pub kind: TermDayKind,
    /// For a make-up day: the weekday it runs, 1 = Monday … 7 = Sunday.
    #[serde(default)]
    pub follows_weekday: Option<u8>,
}

/// A term with its days.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct TermView {
    /// Id (ignored on create).
    #[serde(default)]
    pub id: String,
    /// Name.
    pub name: String,
    /// First day.
    pub start_date: NaiveDate,
    /// Last day (inclusive).
    pub end_date: NaiveDate,
    /// Holidays and make-up days.
    #[serde(default)]
    pub days: Vec<Day>,
}

/// The scheduler's term from stored rows.
pub fn sched_term(t: &TermRow, days: &[TermDayRow]) -> Result<Term, ApiError> {
    let mut out = Vec::new();
    for d in days {
        let kind = match d.kind {
            TermDayKind::Holiday => SchedDayKind::Holiday,
            TermDayKind::Makeup => SchedDayKind::Makeup {
                follows: d
                    .follows_weekday
                    .and_then(weekday_from_iso)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "days",
                            format!("{}: a make-up day needs follows_weekday 1–7", d.date),
                        )
                    })?,
            },
        };
        out.push(TermDay { date: d.date, kind });
    }
    Ok(Term {
        id: TermId(t.id.clone()),
        start: t.start_date,
        end: t.end_date,
        days: out,
    })
}

/// `GET /api/terms`.
pub async fn list_terms(
    State(s): State<Arc<AppState>>,
    a: Authed,
) -> Result<Json<Vec<TermView>>, ApiError> {
    let d = district(&a, Action::Read)?;
    let mut out = Vec::new();
    for t in s.store.list_terms(&d).await? {
        let days = s.store.list_term_days(&t.id).await?;
        out.push(TermView {
            id: t.id,
            name: t.name,
            start_date: t.start_date,
            end_date: t.end_date,
            days: days
                .into_iter()
                .map(|d| Day {
                    date: d.date,
                    kind: d.kind,
                    follows_weekday: d.follows_weekday,
                })
                .collect(),
        });
    }
    Ok(Json(out))
}

/// `POST /api/terms`.
pub async fn create_term(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Json(b): Json<TermView>,
) -> Result<(StatusCode, Json<TermView>), ApiError> {
    let d = district(&a, Action::Create)?;
    let row = TermRow {
        id: new_id("trm"),
        district_id: d,
        name: check_name("name", &b.name)?,
        start_date: b.start_date,
        end_date: b.end_date,
    };
    if b.days.len() > 366 {
        return Err(ApiError::invalid("days", "at most 366 special days"));
    }
    let days: Vec<TermDayRow> = b
        .days
        .iter()
        .map(|d| TermDayRow {
            date: d.date,
            kind: d.kind,
            follows_weekday: d.follows_weekday,
        })
        .collect();
    // The scheduler validates the term (dates in order, days inside it, make-up weekdays).
    sched_term(&row, &days)?
        .validate()
        .map_err(|e| ApiError::invalid("days", e.to_string()))?;
    s.store.create_term(&row).await?;
    s.store.set_term_days(&row.id, &days).await?;
    audit(
        &s,
        &a.principal.id,
        "term_created",
        &format!("term:{}", row.id),
        &row.name,
        &a.ip,
    )
    .await;
    Ok((StatusCode::CREATED, Json(TermView { id: row.id, ..b })))
}

/// `GET /api/pairings`: the district's pairings the caller may see.
pub async fn list_pairings(
    State(s): State<Arc<AppState>>,
    a: Authed,
) -> Result<Json<Vec<PairingRow>>, ApiError> {
    let d = a.principal.district.clone().ok_or(ApiError::Forbidden)?;
    let all = s.store.list_pairings(&d).await?;
    Ok(Json(
        all.into_iter()
            .filter(|p| {
                authorize(
                    &a.principal,
                    Action::Read,
                    &Resource::Pairing {
                        district: &p.district_id,
                        lead_school: &p.lead_school_id,
                        receiving_schools: &p.school_ids,
                    },
                )
                .is_ok()
            })
            .collect(),
    ))
}

/// `POST /api/pairings` body.
#[derive(Deserialize)]
pub struct NewPairing {
    /// The lead school.
    pub lead_school_id: String,
    /// The receiving schools (1..N).
    pub receiving_school_ids: Vec<String>,
    /// County, prefecture or province.
    pub scope: PairingScope,
    /// First day of the round.
    pub round_start: NaiveDate,
    /// Last day of the round.
    pub round_end: NaiveDate,
    /// Subjects taught together.
    #[serde(default)]
    pub subject_ids: Vec<String>,
}

/// `POST /api/pairings`.
pub async fn create_pairing(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Json(b): Json<NewPairing>,
) -> Result<(StatusCode, Json<PairingRow>), ApiError> {
    let d = a.principal.district.clone().ok_or(ApiError::Forbidden)?;
    let row = PairingRow {
        id: new_id("par"),
        district_id: d.clone(),
        lead_school_id: b.lead_school_id,
        scope: b.scope,
        round_start: b.round_start,
        round_end: b.round_end,
        school_ids: b.receiving_school_ids,
        subject_ids: b.subject_ids,
    };
    authorize(
        &a.principal,
        Action::Create,
        &Resource::Pairing {
            district: &d,
            lead_school: &row.lead_school_id,
            receiving_schools: &row.school_ids,
        },
    )?;
    if row.school_ids.is_empty() || row.school_ids.len() > 50 {
        return Err(ApiError::invalid(
            "receiving_school_ids",
            "1 to 50 receiving schools",
        ));
    }
    if row.school_ids.contains(&row.lead_school_id) {
        return Err(ApiError::invalid(
            "receiving_school_ids",
            "the lead school cannot also receive",
        ));
    }
    if row.round_end < row.round_start {
        return Err(ApiError::invalid(
            "round_end",
            "the round ends before it starts",
        ));
    }
    // The lead school is the district's own; partners may be in other districts (a prefecture-
    // or province-scope pairing), but must exist.
    let lead = s
        .store
        .get_school(&row.lead_school_id)
        .await
        .map_err(|_| ApiError::invalid("lead_school_id", "no such school"))?;
    if lead.district_id != d {
        return Err(ApiError::invalid("lead_school_id", "no such school"));
    }
    for sid in &row.school_ids {
        s.store
            .get_school(sid)
            .await
            .map_err(|_| ApiError::invalid("receiving_school_ids", format!("no school {sid}")))?;
    }
    s.store.create_pairing(&row).await?;
    audit(
        &s,
        &a.principal.id,
        "pairing_created",
        &format!("pairing:{}", row.id),
        "",
        &a.ip,
    )
    .await;
    Ok((StatusCode::CREATED, Json(row)))
}
