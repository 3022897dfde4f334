//! The shared timetable (统一课表): weekly series with exceptions, the week view with conflicts,
//! "now and next", per-classroom iCal feeds, joining a class, and attendance.
//!
//! Every read expands the stored series with the pure [`crate::schedule`] engine in absolute time
//! (Asia/Shanghai); every write is checked by expanding the whole term with the change applied,
//! so an invalid change (a move onto a holiday, a missing bell period) or a clash is refused
//! before anything is stored. Writes to the timetable are serialized in this process.

use super::auth::Authed;
use super::{Json, audit};
use crate::app::AppState;
use crate::error::ApiError;
use crate::policy::{AccountRole, Action, JoinAs, Principal, Resource, authorize, join_role};
use crate::schedule::{
    self, BellPeriod, BellSchedule, ClassroomId, Exception, Lang, NameTable, Occurrence, SchoolId,
    Series, SeriesId, UserId, Who,
};
use crate::store::{ExceptionKind, ExceptionRow, IdempotencyRow, SeriesRow, new_id};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use duet_sfu_proto::{JoinClaims, ParticipantId, Role as LiveRole, RoomId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Everything about one district's timetable needed to expand and explain it.
pub struct DistrictTimetable {
    /// The district.
    pub district: String,
    /// Terms with their series, ready for the scheduler.
    pub terms: Vec<(schedule::Term, Vec<Series>)>,
    /// Bell schedules by school.
    pub bells: HashMap<SchoolId, BellSchedule>,
    /// Names for explanations and views.
    pub names: NameTable,
    /// Classroom → (school, district) for authorization.
    pub classroom_school: HashMap<String, String>,
    /// Stored series by id.
    pub rows: HashMap<String, SeriesRow>,
    /// Subject names by id.
    pub subjects: HashMap<String, String>,
}

/// Loaded district timetables, reused until any change is made through the API.
///
/// A bell rings for a whole county at once: hundreds of classrooms ask "what is on now" and
/// for a join token in the same second, and each answer needs the district's timetable. Loading
/// it once per change instead of once per request is what keeps the join storm fast. Every
/// successful changing request (`POST`/`PUT`/`PATCH`/`DELETE` under `/api`) bumps the
/// generation (see `app::invalidate_on_write`); a cached timetable of an older generation is
/// reloaded. Loads are single-flight, so a storm on a cold cache loads once.
#[derive(Default)]
pub struct TimetableCache {
    generation: std::sync::atomic::AtomicU64,
    entries: std::sync::Mutex<HashMap<String, (u64, Arc<DistrictTimetable>)>>,
    loading: tokio::sync::Mutex<()>,
}

impl TimetableCache {
    /// Marks every cached timetable stale.
    pub fn invalidate(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn fresh(&self, district: &str, generation: u64) -> Option<Arc<DistrictTimetable>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(district)
            .filter(|(g, _)| *g == generation)
            .map(|(_, t)| t.clone())
    }
}

impl DistrictTimetable {
    /// The district's timetable, from the cache when nothing changed since it was loaded.
    pub async fn cached(s: &AppState, district: &str) -> Result<Arc<Self>, ApiError> {
        let cache = &s.timetable_cache;
        let generation = cache.generation.load(std::sync::atomic::Ordering::Acquire);
        if let Some(t) = cache.fresh(district, generation) {
            return Ok(t);
        }
        let _single_flight = cache.loading.lock().await;
        if let Some(t) = cache.fresh(district, generation) {
            return Ok(t);
        }
        let t = Arc::new(Self::load(s, district).await?);
        cache
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(district.to_owned(), (generation, t.clone()));
        Ok(t)
    }

    /// Loads a district's terms, bells, series and exceptions, and the names they refer to.
    pub async fn load(s: &AppState, district: &str) -> Result<Self, ApiError> {
        let store = &s.store;
        let mut bells = HashMap::new();
        for (school, periods) in store.list_bell_periods_in_district(district).await? {
            bells.insert(
                SchoolId(school.clone()),
                BellSchedule {
                    school: SchoolId(school),
                    periods: periods
                        .iter()
                        .map(|p| BellPeriod {
                            period: p.period,
                            start: p.start_time,
                            end: p.end_time,
                        })
                        .collect(),
                },
            );
        }
        let mut names = NameTable::default();
        let mut classroom_school = HashMap::new();
        for c in store.list_classrooms_in_district(district).await? {
            names
                .classrooms
                .insert(ClassroomId(c.id.clone()), c.name.clone());
            classroom_school.insert(c.id, c.school_id);
        }
        for u in store.list_users_in_district(district).await? {
            names
                .users
                .insert(UserId(u.id.clone()), u.display_name.clone());
        }
        let subjects: HashMap<String, String> = store
            .list_subjects(district)
            .await?
            .into_iter()
            .map(|x| (x.id, x.name))
            .collect();
        let mut terms = Vec::new();
        let mut rows = HashMap::new();
        for t in store.list_terms(district).await? {
            let days = store.list_term_days(&t.id).await?;
            let term = super::district::sched_term(&t, &days)?;
            let mut exceptions: HashMap<String, Vec<Exception>> = HashMap::new();
            for e in store.list_exceptions_of_term(&t.id).await? {
                exceptions
                    .entry(e.series_id.clone())
                    .or_default()
                    .push(exception(&e)?);
            }
            let mut series = Vec::new();
            for r in store.list_series_of_term(&t.id).await? {
                let sr = to_series(
                    &r,
                    &classroom_school,
                    &subjects,
                    exceptions.remove(&r.id).unwrap_or_default(),
                )?;
                names
                    .series
                    .insert(sr.id.clone(), series_label(&r, &names, &subjects));
                series.push(sr);
                rows.insert(r.id.clone(), r);
            }
            terms.push((term, series));
        }
        Ok(Self {
            district: district.into(),
            terms,
            bells,
            names,
            classroom_school,
            rows,
            subjects,
        })
    }

    /// Every occurrence between `from` and `to` (inclusive) of every term.
    pub fn expand(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<Occurrence>, ApiError> {
        let mut out = Vec::new();
        for (term, series) in &self.terms {
            if term.end < from || term.start > to {
                continue;
            }
            let occ = schedule::expand(
                term,
                &self.bells,
                series,
                from.max(term.start),
                to.min(term.end),
            )
            .map_err(|e| {
                ApiError::Conflict(format!(
                    "课表数据有误 / the stored timetable is inconsistent: {e}"
                ))
            })?;
            out.extend(occ);
        }
        out.sort_by(|a, b| (a.start, &a.series.0).cmp(&(b.start, &b.series.0)));
        Ok(out)
    }

    /// Schools and classrooms taking part in a class, lead first, each once.
    fn parts<'a>(
        &self,
        lead: &'a str,
        receivers: impl Iterator<Item = &'a str>,
    ) -> (Vec<String>, Vec<String>) {
        let mut classrooms = vec![lead.to_owned()];
        classrooms.extend(receivers.map(str::to_owned));
        let mut schools: Vec<String> = Vec::new();
        for c in &classrooms {
            if let Some(s) = self.classroom_school.get(c)
                && !schools.contains(s)
            {
                schools.push(s.clone());
            }
        }
        (schools, classrooms)
    }

    /// The class resource of an occurrence, for authorization.
    pub fn resource_parts(&self, o: &Occurrence) -> (Vec<String>, Vec<String>) {
        self.parts(
            &o.lead_classroom.0,
            o.receivers.iter().map(|c| c.0.as_str()),
        )
    }

    /// Whether `p` may do `action` on the class of a stored series.
    pub fn may_series(&self, p: &Principal, action: Action, row: &SeriesRow) -> bool {
        let (schools, classrooms) = self.parts(
            &row.lead_classroom_id,
            row.receiver_ids.iter().map(String::as_str),
        );
        authorize(
            p,
            action,
            &Resource::Class {
                district: &self.district,
                schools: &schools,
                classrooms: &classrooms,
                lead_classroom: &row.lead_classroom_id,
                teacher: &row.teacher_id,
            },
        )
        .is_ok()
    }

    /// Whether `p` may do `action` on the class of this occurrence.
    pub fn may(&self, p: &Principal, action: Action, o: &Occurrence) -> bool {
        let (schools, classrooms) = self.resource_parts(o);
        authorize(
            p,
            action,
            &Resource::Class {
                district: &self.district,
                schools: &schools,
                classrooms: &classrooms,
                lead_classroom: &o.lead_classroom.0,
                teacher: &o.teacher.0,
            },
        )
        .is_ok()
    }

    fn view(&self, o: &Occurrence) -> OccurrenceView {
        let name = |c: &ClassroomId| Named {
            id: c.0.clone(),
            name: self
                .names
                .classrooms
                .get(c)
                .cloned()
                .unwrap_or_else(|| c.0.clone()),
        };
        OccurrenceView {
            series_id: o.series.0.clone(),
            date: o.date,
            period: o.period,
            start: o.start,
            end: o.end,
            local_start: local_hm(o.start),
            local_end: local_hm(o.end),
            lead_classroom: name(&o.lead_classroom),
            receivers: o.receivers.iter().map(name).collect(),
            teacher: Named {
                id: o.teacher.0.clone(),
                name: self
                    .names
                    .users
                    .get(&o.teacher)
                    .cloned()
                    .unwrap_or_else(|| o.teacher.0.clone()),
            },
            subject: o.subject.clone(),
            moved_from: o.moved_from,
        }
    }
}

fn local_hm(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%H:%M")
        .to_string()
}

fn exception(e: &ExceptionRow) -> Result<Exception, ApiError> {
    Ok(match e.kind {
        ExceptionKind::Cancel => Exception::Cancel { date: e.date },
        ExceptionKind::Move => Exception::Move {
            date: e.date,
            new_date: e
                .new_date
                .ok_or_else(|| ApiError::Internal("move without new_date".into()))?,
            new_period: e
                .new_period
                .ok_or_else(|| ApiError::Internal("move without new_period".into()))?,
        },
    })
}

fn to_series(
    r: &SeriesRow,
    classroom_school: &HashMap<String, String>,
    subjects: &HashMap<String, String>,
    exceptions: Vec<Exception>,
) -> Result<Series, ApiError> {
    Ok(Series {
        id: SeriesId(r.id.clone()),
        term: schedule::TermId(r.term_id.clone()),
        weekday: schedule::weekday_from_iso(r.weekday)
            .ok_or_else(|| ApiError::invalid("weekday", "1–7"))?,
        period: r.period,
        lead_school: SchoolId(
            classroom_school
                .get(&r.lead_classroom_id)
                .cloned()
                .ok_or_else(|| ApiError::invalid("lead_classroom_id", "no such classroom"))?,
        ),
        lead_classroom: ClassroomId(r.lead_classroom_id.clone()),
        receivers: r
            .receiver_ids
            .iter()
            .map(|c| ClassroomId(c.clone()))
            .collect(),
        teacher: UserId(r.teacher_id.clone()),
        subject: subjects
            .get(&r.subject_id)
            .cloned()
            .unwrap_or_else(|| r.subject_id.clone()),
        exceptions,
    })
}

fn series_label(r: &SeriesRow, names: &NameTable, subjects: &HashMap<String, String>) -> String {
    let subject = subjects.get(&r.subject_id).cloned().unwrap_or_default();
    let lead = names
        .classrooms
        .get(&ClassroomId(r.lead_classroom_id.clone()))
        .cloned()
        .unwrap_or_default();
    let weekday = ["一", "二", "三", "四", "五", "六", "日"]
        .get(usize::from(r.weekday).saturating_sub(1))
        .copied()
        .unwrap_or("?");
    format!("{subject}（{lead}，周{weekday}第{}节）", r.period)
}

/// A named id.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Named {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// One lesson as the pages show it.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct OccurrenceView {
    /// The series.
    pub series_id: String,
    /// The date (school local).
    pub date: NaiveDate,
    /// The lead school's period.
    pub period: u8,
    /// Start, UTC.
    pub start: DateTime<Utc>,
    /// End, UTC.
    pub end: DateTime<Utc>,
    /// Start, `HH:MM` Asia/Shanghai.
    pub local_start: String,
    /// End, `HH:MM` Asia/Shanghai.
    pub local_end: String,
    /// 主讲课堂.
    pub lead_classroom: Named,
    /// 接收课堂.
    pub receivers: Vec<Named>,
    /// 主讲教师.
    pub teacher: Named,
    /// Subject.
    pub subject: String,
    /// For a moved lesson, the date it was moved from.
    pub moved_from: Option<NaiveDate>,
}

/// A clash, explained.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ConflictView {
    /// First series (starts first).
    pub a: String,
    /// Second series.
    pub b: String,
    /// The date.
    pub date: NaiveDate,
    /// `classroom:<id>` or `teacher:<id>`.
    pub resource: String,
    /// In Chinese.
    pub explanation_zh: String,
    /// In English.
    pub explanation_en: String,
}

fn conflict_views(t: &DistrictTimetable, occ: &[Occurrence]) -> Vec<ConflictView> {
    schedule::conflicts(occ)
        .into_iter()
        .map(|c| ConflictView {
            a: c.a.0.clone(),
            b: c.b.0.clone(),
            date: c.date,
            resource: match &c.resource {
                schedule::Resource::Classroom(id) => format!("classroom:{}", id.0),
                schedule::Resource::Teacher(id) => format!("teacher:{}", id.0),
            },
            explanation_zh: c.explain(&t.names, Lang::Zh),
            explanation_en: c.explain(&t.names, Lang::En),
        })
        .collect()
}

fn district_of(a: &Authed) -> Result<String, ApiError> {
    a.principal.district.clone().ok_or(ApiError::Forbidden)
}

/// `GET /api/timetable` query.
#[derive(Deserialize)]
pub struct TimetableQuery {
    /// First date.
    pub from: NaiveDate,
    /// Last date (inclusive, at most 62 days after `from`).
    pub to: NaiveDate,
    /// Only this school's classes.
    pub school_id: Option<String>,
    /// Only this classroom's classes.
    pub classroom_id: Option<String>,
    /// Only this teacher's classes.
    pub teacher_id: Option<String>,
}

/// The week view.
#[derive(Serialize, Deserialize, Debug)]
pub struct TimetableView {
    /// Lessons, by start.
    pub occurrences: Vec<OccurrenceView>,
    /// Clashes among them (or with lessons the caller does not see).
    pub conflicts: Vec<ConflictView>,
}

/// `GET /api/timetable`.
pub async fn timetable(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Query(q): Query<TimetableQuery>,
) -> Result<Json<TimetableView>, ApiError> {
    if q.to < q.from || (q.to - q.from).num_days() > 62 {
        return Err(ApiError::invalid(
            "to",
            "to must be within 62 days after from",
        ));
    }
    let t = DistrictTimetable::cached(&s, &district_of(&a)?).await?;
    let all = t.expand(q.from, q.to)?;
    let conflicts = conflict_views(&t, &all);
    let visible: Vec<&Occurrence> = all
        .iter()
        .filter(|o| t.may(&a.principal, Action::Read, o))
        .filter(|o| {
            q.classroom_id
                .as_ref()
                .is_none_or(|c| o.lead_classroom.0 == *c || o.receivers.iter().any(|r| r.0 == *c))
        })
        .filter(|o| q.teacher_id.as_ref().is_none_or(|u| o.teacher.0 == *u))
        .filter(|o| {
            q.school_id
                .as_ref()
                .is_none_or(|sid| t.resource_parts(o).0.contains(sid))
        })
        .collect();
    let ids: std::collections::HashSet<&str> =
        visible.iter().map(|o| o.series.0.as_str()).collect();
    Ok(Json(TimetableView {
        occurrences: visible.iter().map(|o| t.view(o)).collect(),
        conflicts: conflicts
            .into_iter()
            .filter(|c| ids.contains(c.a.as_str()) || ids.contains(c.b.as_str()))
            .collect(),
    }))
}

/// `POST /api/series` body.
#[derive(Deserialize, Serialize, Clone)]
pub struct NewSeries {
    /// The term.
    pub term_id: String,
    /// The pairing, if the class belongs to one.
    #[serde(default)]
    pub pairing_id: Option<String>,
    /// 1 = Monday … 7 = Sunday.
    pub weekday: u8,
    /// Period in the lead school's bells.
    pub period: u8,
    /// 主讲课堂.
    pub lead_classroom_id: String,
    /// 接收课堂.
    #[serde(default)]
    pub receiving_classroom_ids: Vec<String>,
    /// 主讲教师.
    pub teacher_id: String,
    /// Subject.
    pub subject_id: String,
}

/// `POST /api/series`: creates a weekly series after checking it against the whole term.
pub async fn create_series(
    State(s): State<Arc<AppState>>,
    a: Authed,
    headers: HeaderMap,
    Json(b): Json<NewSeries>,
) -> Result<Response, ApiError> {
    let district = district_of(&a)?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(k) = &key
        && (k.is_empty() || k.len() > 128)
    {
        return Err(ApiError::invalid("Idempotency-Key", "1–128 characters"));
    }
    let _guard = s.timetable_lock.lock().await;
    if let Some(k) = &key
        && let Some(prev) = s.store.find_idempotency(&a.principal.id, k).await?
    {
        let body: serde_json::Value = serde_json::from_str(&prev.response_json)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        return Ok((StatusCode::CREATED, axum::Json(body)).into_response());
    }
    if !(1..=7).contains(&b.weekday) {
        return Err(ApiError::invalid("weekday", "1 (Monday) … 7 (Sunday)"));
    }
    if b.receiving_classroom_ids.len() > 50 {
        return Err(ApiError::invalid("receiving_classroom_ids", "at most 50"));
    }
    let term = s
        .store
        .get_term(&b.term_id)
        .await
        .map_err(|_| ApiError::invalid("term_id", "no such term"))?;
    if term.district_id != district {
        return Err(ApiError::invalid("term_id", "no such term"));
    }
    let teacher = s
        .store
        .get_user(&b.teacher_id)
        .await
        .map_err(|_| ApiError::invalid("teacher_id", "no such teacher"))?;
    if teacher.role != crate::store::Role::Teacher {
        return Err(ApiError::invalid("teacher_id", "not a teacher"));
    }
    s.store
        .get_subject(&b.subject_id)
        .await
        .map_err(|_| ApiError::invalid("subject_id", "no such subject"))?;
    let lead = s
        .store
        .get_classroom(&b.lead_classroom_id)
        .await
        .map_err(|_| ApiError::invalid("lead_classroom_id", "no such classroom"))?;
    // A lead classroom leads paired classes; a recording classroom (录播教室) has its own lessons,
    // timetabled so its recorder follows them, with nobody receiving.
    match lead.kind {
        crate::store::ClassroomKind::Lead => {}
        crate::store::ClassroomKind::Recording if b.receiving_classroom_ids.is_empty() => {}
        crate::store::ClassroomKind::Recording => {
            return Err(ApiError::invalid(
                "receiving_classroom_ids",
                "录播教室的课没有接收课堂 / a recording classroom's lesson has no receiving classrooms",
            ));
        }
        crate::store::ClassroomKind::Receiving => {
            return Err(ApiError::invalid(
                "lead_classroom_id",
                "this classroom cannot lead a class (kind is not lead)",
            ));
        }
    }
    for c in &b.receiving_classroom_ids {
        s.store.get_classroom(c).await.map_err(|_| {
            ApiError::invalid("receiving_classroom_ids", format!("no classroom {c}"))
        })?;
    }
    let row = SeriesRow {
        id: new_id("ser"),
        term_id: b.term_id.clone(),
        pairing_id: b.pairing_id.clone(),
        weekday: b.weekday,
        period: b.period,
        lead_classroom_id: b.lead_classroom_id.clone(),
        teacher_id: b.teacher_id.clone(),
        subject_id: b.subject_id.clone(),
        created_by: a.principal.id.clone(),
        created_at: Utc::now(),
        receiver_ids: b.receiving_classroom_ids.clone(),
    };
    let mut t = DistrictTimetable::load(&s, &district).await?;
    if !t.may_series(&a.principal, Action::Create, &row) {
        return Err(ApiError::Forbidden);
    }
    // Check the term with the new series in it.
    let candidate = to_series(&row, &t.classroom_school, &t.subjects, Vec::new())?;
    t.names.series.insert(
        candidate.id.clone(),
        series_label(&row, &t.names, &t.subjects),
    );
    let Some((term_s, series)) = t.terms.iter_mut().find(|(ts, _)| ts.id.0 == row.term_id) else {
        return Err(ApiError::invalid("term_id", "no such term"));
    };
    series.push(candidate.clone());
    let occ = schedule::expand(term_s, &t.bells, series, term_s.start, term_s.end)
        .map_err(|e| ApiError::invalid("period", e.to_string()))?;
    let clashes: Vec<ConflictView> = conflict_views(&t, &occ)
        .into_iter()
        .filter(|c| c.a == row.id || c.b == row.id)
        .collect();
    if !clashes.is_empty() {
        let first = &clashes[0];
        let more = if clashes.len() > 1 {
            format!(
                "（另有 {} 处冲突 / and {} more）",
                clashes.len() - 1,
                clashes.len() - 1
            )
        } else {
            String::new()
        };
        return Err(ApiError::Conflict(format!(
            "{} / {}{more}",
            first.explanation_zh, first.explanation_en
        )));
    }
    s.store.create_series(&row).await?;
    let body = serde_json::to_value(&row).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(k) = key {
        s.store
            .put_idempotency(&IdempotencyRow {
                key: k,
                user_id: a.principal.id.clone(),
                response_json: body.to_string(),
                created_at: Utc::now(),
            })
            .await?;
    }
    audit(
        &s,
        &a.principal.id,
        "series_created",
        &format!("series:{}", row.id),
        "",
        &a.ip,
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `GET /api/series` query.
#[derive(Deserialize)]
pub struct SeriesQuery {
    /// The term.
    pub term_id: String,
}

/// `GET /api/series`.
pub async fn list_series(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Query(q): Query<SeriesQuery>,
) -> Result<Json<Vec<SeriesRow>>, ApiError> {
    let district = district_of(&a)?;
    let term = s.store.get_term(&q.term_id).await?;
    if term.district_id != district {
        return Err(ApiError::NotFound);
    }
    authorize(
        &a.principal,
        Action::Read,
        &Resource::DistrictData {
            district: &district,
        },
    )?;
    let t = DistrictTimetable::cached(&s, &district).await?;
    let rows = s.store.list_series_of_term(&q.term_id).await?;
    Ok(Json(
        rows.into_iter()
            .filter(|r| t.may_series(&a.principal, Action::Read, r))
            .collect(),
    ))
}

/// `POST /api/series/{id}/exceptions` body.
#[derive(Deserialize)]
pub struct NewException {
    /// The occurrence's date.
    pub date: NaiveDate,
    /// `cancel` or `move`.
    pub kind: ExceptionKind,
    /// For a move.
    #[serde(default)]
    pub new_date: Option<NaiveDate>,
    /// For a move.
    #[serde(default)]
    pub new_period: Option<u8>,
}

/// `POST /api/series/{id}/exceptions`: cancel or move one occurrence, checked like a new series.
pub async fn add_exception(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(b): Json<NewException>,
) -> Result<StatusCode, ApiError> {
    let district = district_of(&a)?;
    let _guard = s.timetable_lock.lock().await;
    let mut t = DistrictTimetable::load(&s, &district).await?;
    let row = t.rows.get(&id).cloned().ok_or(ApiError::NotFound)?;
    if !t.may_series(&a.principal, Action::Read, &row) {
        return Err(ApiError::NotFound);
    }
    if !t.may_series(&a.principal, Action::Update, &row) {
        return Err(ApiError::Forbidden);
    }
    let ex_row = ExceptionRow {
        series_id: id.clone(),
        date: b.date,
        kind: b.kind,
        new_date: b.new_date,
        new_period: b.new_period,
    };
    if b.kind == ExceptionKind::Move && (b.new_date.is_none() || b.new_period.is_none()) {
        return Err(ApiError::invalid(
            "new_date",
            "a move needs new_date and new_period",
        ));
    }
    let ex = exception(&ex_row)?;
    let Some((term_s, series)) = t.terms.iter_mut().find(|(ts, _)| ts.id.0 == row.term_id) else {
        return Err(ApiError::NotFound);
    };
    if let Some(sr) = series.iter_mut().find(|x| x.id.0 == id) {
        sr.exceptions.push(ex);
    }
    let occ = schedule::expand(term_s, &t.bells, series, term_s.start, term_s.end)
        .map_err(|e| ApiError::invalid("date", e.to_string()))?;
    if b.kind == ExceptionKind::Move {
        let clashes: Vec<ConflictView> = conflict_views(&t, &occ)
            .into_iter()
            .filter(|c| (c.a == id || c.b == id) && Some(c.date) == b.new_date)
            .collect();
        if let Some(c) = clashes.first() {
            return Err(ApiError::Conflict(format!(
                "{} / {}",
                c.explanation_zh, c.explanation_en
            )));
        }
    }
    s.store.add_exception(&ex_row).await?;
    audit(
        &s,
        &a.principal.id,
        "series_exception",
        &format!("series:{id}"),
        &format!("{} {}", b.kind, b.date),
        &a.ip,
    )
    .await;
    Ok(StatusCode::CREATED)
}

/// `GET /api/now` query.
#[derive(Deserialize)]
pub struct NowQuery {
    /// A classroom to ask about (default: the caller's).
    pub classroom_id: Option<String>,
    /// A teacher to ask about (default: the caller).
    pub teacher_id: Option<String>,
}

/// Current and next lesson.
#[derive(Serialize, Deserialize, Debug)]
pub struct NowView {
    /// Happening now.
    pub current: Option<OccurrenceView>,
    /// The next one (within a week).
    pub next: Option<OccurrenceView>,
}

fn today_local(now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&chrono_tz::Asia::Shanghai).date_naive()
}

fn who_for(p: &Principal, q: &NowQuery) -> Result<Who, ApiError> {
    Ok(match (&q.classroom_id, &q.teacher_id, p.role) {
        (Some(c), _, _) => Who::Classroom(ClassroomId(c.clone())),
        (None, Some(u), _) => Who::Teacher(UserId(u.clone())),
        (None, None, AccountRole::Classroom) => {
            Who::Classroom(ClassroomId(p.classroom.clone().ok_or(ApiError::Forbidden)?))
        }
        (None, None, AccountRole::Teacher) => Who::Teacher(UserId(p.id.clone())),
        _ => {
            return Err(ApiError::invalid(
                "classroom_id",
                "name a classroom_id or teacher_id",
            ));
        }
    })
}

/// `GET /api/now`.
pub async fn now(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Query(q): Query<NowQuery>,
) -> Result<Json<NowView>, ApiError> {
    let t = DistrictTimetable::cached(&s, &district_of(&a)?).await?;
    let who = who_for(&a.principal, &q)?;
    let now = Utc::now();
    let today = today_local(now);
    let occ: Vec<Occurrence> = t
        .expand(today, today + chrono::Duration::days(7))?
        .into_iter()
        .filter(|o| t.may(&a.principal, Action::Read, o))
        .collect();
    let nn = schedule::now_and_next(&occ, &who, now);
    Ok(Json(NowView {
        current: nn.current.map(|o| t.view(o)),
        next: nn.next.map(|o| t.view(o)),
    }))
}

/// `GET /api/classrooms/{id}/calendar.ics` query.
#[derive(Deserialize)]
pub struct CalendarQuery {
    /// A machine token, for calendar apps that cannot send headers.
    pub token: Option<String>,
}

/// `GET /api/classrooms/{id}/calendar.ics`: the classroom's lessons of every term, with ETag.
pub async fn calendar(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<CalendarQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let a = super::auth::authenticate(
        &s,
        &headers,
        &axum::http::Method::GET,
        q.token.as_deref(),
        "feed".into(),
    )
    .await?;
    let room = s.store.get_classroom(&id).await?;
    let school = s.store.get_school(&room.school_id).await?;
    let r = Resource::Classroom {
        id: &room.id,
        school: &school.id,
        district: &school.district_id,
    };
    if authorize(&a.principal, Action::Read, &r).is_err() {
        return Err(ApiError::NotFound);
    }
    let t = DistrictTimetable::cached(&s, &school.district_id).await?;
    let (from, to) = t.terms.iter().fold(
        (None::<NaiveDate>, None::<NaiveDate>),
        |(lo, hi), (term, _)| {
            (
                Some(lo.map_or(term.start, |l| l.min(term.start))),
                Some(hi.map_or(term.end, |h| h.max(term.end))),
            )
        },
    );
    let occ: Vec<Occurrence> = match (from, to) {
        (Some(f), Some(tt)) => t
            .expand(f, tt)?
            .into_iter()
            .filter(|o| o.lead_classroom.0 == id || o.receivers.iter().any(|c| c.0 == id))
            .collect(),
        _ => Vec::new(),
    };
    // DTSTAMP: the newest series creation touching this room, so unchanged data gives the same body.
    let stamp = occ
        .iter()
        .filter_map(|o| t.rows.get(&o.series.0).map(|r| r.created_at))
        .max()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let body = schedule::ical::calendar(&room.name, &occ, stamp, |o| schedule::EventText {
        summary: format!(
            "{} · {}",
            o.subject,
            if o.lead_classroom.0 == id {
                "主讲"
            } else {
                "接收"
            }
        ),
        description: format!(
            "主讲课堂: {}\n接收课堂: {}\n主讲教师: {}",
            t.names
                .classrooms
                .get(&o.lead_classroom)
                .cloned()
                .unwrap_or_default(),
            o.receivers
                .iter()
                .map(|c| t.names.classrooms.get(c).cloned().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("、"),
            t.names.users.get(&o.teacher).cloned().unwrap_or_default()
        ),
        location: t
            .names
            .classrooms
            .get(&o.lead_classroom)
            .cloned()
            .unwrap_or_default(),
    });
    let etag = schedule::ical::etag(&body);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim() == etag))
    {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        res.headers_mut().insert(
            header::ETAG,
            HeaderValue::from_str(&etag).expect("etag is ASCII"),
        );
        return Ok(res);
    }
    let mut res = (
        [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
        body,
    )
        .into_response();
    res.headers_mut().insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("etag is ASCII"),
    );
    Ok(res)
}

/// `POST /api/join` body.
#[derive(Deserialize, Default)]
pub struct JoinRequest {
    /// The series; absent: the caller's current class.
    #[serde(default)]
    pub series_id: Option<String>,
    /// The date of the lesson (school local); with `series_id`.
    #[serde(default)]
    pub date: Option<NaiveDate>,
}

/// A join ticket.
#[derive(Serialize, Deserialize, Debug)]
pub struct JoinTicket {
    /// Signed join token for the SFU.
    pub token: String,
    /// Room id: `<series>-<date>`.
    pub room: String,
    /// SFU WebSocket URL; empty means the page's own host.
    pub sfu_url: String,
    /// The caller's role in the class.
    pub role: LiveRole,
    /// Token expiry, Unix seconds.
    pub expires_at: u64,
    /// Subject and lead classroom, for the page title.
    pub title: String,
}

/// How early before the bell a class may be joined.
pub const JOIN_EARLY_MINUTES: i64 = 10;

/// `POST /api/join`: a short-lived token for exactly the caller's role in the class.
pub async fn join(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Json(b): Json<JoinRequest>,
) -> Result<Json<JoinTicket>, ApiError> {
    let district = district_of(&a)?;
    let t = DistrictTimetable::cached(&s, &district).await?;
    let now = Utc::now();
    let today = today_local(now);
    let occ = t.expand(
        today - chrono::Duration::days(1),
        today + chrono::Duration::days(1),
    )?;
    let early = chrono::Duration::minutes(JOIN_EARLY_MINUTES);
    let chosen = match (&b.series_id, b.date) {
        (Some(sid), Some(date)) => occ.iter().find(|o| o.series.0 == *sid && o.date == date),
        (Some(_), None) | (None, Some(_)) => {
            return Err(ApiError::invalid(
                "date",
                "give both series_id and date, or neither",
            ));
        }
        (None, None) => {
            let who = who_for(
                &a.principal,
                &NowQuery {
                    classroom_id: None,
                    teacher_id: None,
                },
            )?;
            let mine: Vec<Occurrence> = occ
                .iter()
                .filter(|o| t.may(&a.principal, Action::Join, o))
                .cloned()
                .collect();
            let nn = schedule::now_and_next(&mine, &who, now);
            let pick = nn
                .current
                .or(nn.next.filter(|n| n.start - now <= early))
                .map(|o| (o.series.clone(), o.date));
            pick.and_then(|(sid, date)| occ.iter().find(|o| o.series == sid && o.date == date))
        }
    };
    let o = chosen.ok_or(ApiError::NotFound)?;
    if !t.may(&a.principal, Action::Read, o) {
        return Err(ApiError::NotFound);
    }
    if now + early < o.start || now > o.end + chrono::Duration::minutes(30) {
        return Err(ApiError::Conflict("这节课现在不能进入（上课前 10 分钟开放）/ this class is not open now (it opens 10 minutes before the bell)".into()));
    }
    let (schools, classrooms) = t.resource_parts(o);
    let res = Resource::Class {
        district: &district,
        schools: &schools,
        classrooms: &classrooms,
        lead_classroom: &o.lead_classroom.0,
        teacher: &o.teacher.0,
    };
    let role = match join_role(&a.principal, &res)? {
        JoinAs::Lead => LiveRole::Lead,
        JoinAs::Receiving => LiveRole::Receiving,
        JoinAs::Observer => LiveRole::Observer,
    };
    // A classroom joins as itself (its classroom id, its room name); people as themselves.
    let (sub, name) = match (a.principal.role, &a.principal.classroom) {
        (AccountRole::Classroom, Some(c)) => (
            c.clone(),
            t.names
                .classrooms
                .get(&ClassroomId(c.clone()))
                .cloned()
                .unwrap_or_else(|| a.name.clone()),
        ),
        _ => (a.principal.id.clone(), a.name.clone()),
    };
    let exp = (now + chrono::Duration::seconds(s.config.join_token_ttl_secs as i64))
        .min(o.end + chrono::Duration::minutes(30));
    let room = format!("{}-{}", o.series.0, o.date);
    let claims = join_claims(&room, sub, &name, role, now, exp);
    audit(
        &s,
        &a.principal.id,
        "join_token_issued",
        &format!("class:{room}"),
        role.as_str(),
        &a.ip,
    )
    .await;
    Ok(Json(JoinTicket {
        token: s.key.sign(&claims),
        room,
        sfu_url: s.config.sfu_url.clone(),
        role,
        expires_at: claims.exp,
        title: format!(
            "{} · {}",
            o.subject,
            t.names
                .classrooms
                .get(&o.lead_classroom)
                .cloned()
                .unwrap_or_default()
        ),
    }))
}

/// The claims of a join token for `room`: `sub` as `name` (cut to the token's limit) in `role`
/// with its default grants, issued `now`, expiring at `exp`.
pub fn join_claims(
    room: &str,
    sub: String,
    name: &str,
    role: LiveRole,
    now: DateTime<Utc>,
    exp: DateTime<Utc>,
) -> JoinClaims {
    JoinClaims {
        room: RoomId(room.to_owned()),
        sub: ParticipantId(sub),
        name: name
            .chars()
            .take(duet_sfu_proto::token::MAX_NAME_CHARS)
            .collect(),
        role,
        grants: role.default_grants(),
        iat: now.timestamp().max(0) as u64,
        exp: exp.timestamp().max(0) as u64,
    }
}

/// `GET /api/attendance` query.
#[derive(Deserialize)]
pub struct AttendanceQuery {
    /// The series.
    pub series_id: String,
    /// One date, or all.
    pub date: Option<NaiveDate>,
}

/// `GET /api/attendance`.
pub async fn attendance(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Query(q): Query<AttendanceQuery>,
) -> Result<Json<Vec<crate::store::AttendanceRow>>, ApiError> {
    let district = district_of(&a)?;
    let t = DistrictTimetable::cached(&s, &district).await?;
    let row = t.rows.get(&q.series_id).ok_or(ApiError::NotFound)?;
    if !t.may_series(&a.principal, Action::Read, row)
        && authorize(
            &a.principal,
            Action::Read,
            &Resource::Attendance {
                district: &district,
            },
        )
        .is_err()
    {
        return Err(ApiError::NotFound);
    }
    Ok(Json(s.store.list_attendance(&q.series_id, q.date).await?))
}

/// Parses a room id `<series>-<YYYY-MM-DD>` back into its parts.
pub fn parse_room(room: &str) -> Option<(String, NaiveDate)> {
    if room.len() < 12 {
        return None;
    }
    let (series, date) = room.split_at(room.len() - 11);
    let date = date.strip_prefix('-')?;
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some((series.to_owned(), d))
}
