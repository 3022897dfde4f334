//! Schools, classrooms (with devices), bell schedules, accounts and machine tokens.

use super::auth::{Authed, account_role};
use super::{Json, audit, authorize_visible, check_name};
use crate::app::AppState;
use crate::auth::{password, secret, secret_hash};
use crate::error::ApiError;
use crate::policy::{AccountRole, Action, Resource, authorize};
use crate::schedule::{BellPeriod, BellSchedule, SchoolId};
use crate::store::{
    ApiTokenRow, BellPeriodRow, ClassroomKind, ClassroomRow, Role, SchoolKind, SchoolRow, UserRow,
    new_id,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

fn district_of(a: &Authed) -> Result<&str, ApiError> {
    a.principal.district.as_deref().ok_or(ApiError::Forbidden)
}

/// `GET /api/schools`: the schools of the caller's district the caller may see.
pub async fn list_schools(
    State(s): State<Arc<AppState>>,
    a: Authed,
) -> Result<Json<Vec<SchoolRow>>, ApiError> {
    let district = district_of(&a)?;
    let all = s.store.list_schools(district).await?;
    Ok(Json(
        all.into_iter()
            .filter(|x| {
                authorize(
                    &a.principal,
                    Action::Read,
                    &Resource::School {
                        id: &x.id,
                        district: &x.district_id,
                    },
                )
                .is_ok()
            })
            .collect(),
    ))
}

/// `POST /api/schools` body.
#[derive(Deserialize)]
pub struct NewSchool {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: SchoolKind,
}

/// `POST /api/schools`.
pub async fn create_school(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Json(b): Json<NewSchool>,
) -> Result<(StatusCode, Json<SchoolRow>), ApiError> {
    let district = district_of(&a)?.to_owned();
    let row = SchoolRow {
        id: new_id("sch"),
        district_id: district,
        name: check_name("name", &b.name)?,
        kind: b.kind,
    };
    authorize(
        &a.principal,
        Action::Create,
        &Resource::School {
            id: &row.id,
            district: &row.district_id,
        },
    )?;
    s.store.create_school(&row).await?;
    audit(
        &s,
        &a.principal.id,
        "school_created",
        &format!("school:{}", row.id),
        &row.name,
        &a.ip,
    )
    .await;
    Ok((StatusCode::CREATED, Json(row)))
}

/// `PATCH /api/schools/{id}` body.
#[derive(Deserialize)]
pub struct SchoolPatch {
    /// New name.
    pub name: Option<String>,
    /// New kind.
    pub kind: Option<SchoolKind>,
}

async fn school_for(
    s: &AppState,
    a: &Authed,
    id: &str,
    action: Action,
) -> Result<SchoolRow, ApiError> {
    let school = s.store.get_school(id).await?;
    authorize_visible(
        &a.principal,
        action,
        &Resource::School {
            id: &school.id,
            district: &school.district_id,
        },
    )?;
    Ok(school)
}

/// `PATCH /api/schools/{id}`.
pub async fn update_school(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(b): Json<SchoolPatch>,
) -> Result<Json<SchoolRow>, ApiError> {
    let mut school = school_for(&s, &a, &id, Action::Update).await?;
    if let Some(n) = b.name {
        school.name = check_name("name", &n)?;
    }
    if let Some(k) = b.kind {
        school.kind = k;
    }
    s.store.update_school(&school).await?;
    audit(
        &s,
        &a.principal.id,
        "school_updated",
        &format!("school:{id}"),
        &school.name,
        &a.ip,
    )
    .await;
    Ok(Json(school))
}

/// `GET /api/schools/{id}/classrooms`.
pub async fn list_classrooms(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<Vec<ClassroomRow>>, ApiError> {
    let school = s.store.get_school(&id).await?;
    let rooms = s.store.list_classrooms(&school.id).await?;
    let visible: Vec<ClassroomRow> = rooms
        .into_iter()
        .filter(|c| {
            authorize(
                &a.principal,
                Action::Read,
                &Resource::Classroom {
                    id: &c.id,
                    school: &c.school_id,
                    district: &school.district_id,
                },
            )
            .is_ok()
        })
        .collect();
    if visible.is_empty()
        && authorize(
            &a.principal,
            Action::Read,
            &Resource::School {
                id: &school.id,
                district: &school.district_id,
            },
        )
        .is_err()
    {
        return Err(ApiError::NotFound);
    }
    Ok(Json(visible))
}

/// `POST /api/schools/{id}/classrooms` body.
#[derive(Deserialize)]
pub struct NewClassroom {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: ClassroomKind,
    /// Devices.
    #[serde(default)]
    pub devices: Vec<duet_hardware_device::Device>,
}

/// Devices as the hardware crate would describe them, kept as validated JSON here (the gateway
/// does not depend on the hardware crate).
pub mod duet_hardware_device {
    use serde::{Deserialize, Serialize};

    /// One device of a classroom.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Device {
        /// Stable id within the room.
        pub id: String,
        /// `camera`, `screen_capture` or `microphone`.
        pub kind: String,
        /// Camera position, e.g. `teacher_close_up`.
        #[serde(default)]
        pub position: Option<String>,
        /// Where its media comes from (`rtsp://…`).
        #[serde(default)]
        pub source: String,
        /// `visca_ip` or `onvif`.
        #[serde(default)]
        pub ptz: Option<String>,
        /// What it shows, for people (教师特写); recorders name their sources with it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub label: Option<String>,
    }
}

fn devices_json(devices: Vec<duet_hardware_device::Device>) -> Result<serde_json::Value, ApiError> {
    if devices.len() > 32 {
        return Err(ApiError::invalid("devices", "at most 32 devices"));
    }
    for d in &devices {
        if !matches!(d.kind.as_str(), "camera" | "screen_capture" | "microphone") {
            return Err(ApiError::invalid(
                "devices",
                format!("unknown device kind {:?}", d.kind),
            ));
        }
        if d.id.is_empty() || d.id.len() > 64 || d.source.len() > 512 {
            return Err(ApiError::invalid(
                "devices",
                "device id 1..64 and source up to 512 characters",
            ));
        }
        if let Some(label) = &d.label
            && (label.chars().count() > super::MAX_NAME_CHARS
                || label.chars().any(char::is_control))
        {
            return Err(ApiError::invalid(
                "devices",
                format!(
                    "a device label has at most {} characters",
                    super::MAX_NAME_CHARS
                ),
            ));
        }
    }
    serde_json::to_value(devices).map_err(|e| ApiError::Internal(e.to_string()))
}

/// `POST /api/schools/{id}/classrooms`.
pub async fn create_classroom(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(b): Json<NewClassroom>,
) -> Result<(StatusCode, Json<ClassroomRow>), ApiError> {
    let school = school_for(&s, &a, &id, Action::Read).await?;
    let row = ClassroomRow {
        id: new_id("cls"),
        school_id: school.id.clone(),
        name: check_name("name", &b.name)?,
        kind: b.kind,
        devices: devices_json(b.devices)?,
    };
    authorize(
        &a.principal,
        Action::Create,
        &Resource::Classroom {
            id: &row.id,
            school: &school.id,
            district: &school.district_id,
        },
    )?;
    s.store.create_classroom(&row).await?;
    audit(
        &s,
        &a.principal.id,
        "classroom_created",
        &format!("classroom:{}", row.id),
        &row.name,
        &a.ip,
    )
    .await;
    Ok((StatusCode::CREATED, Json(row)))
}

/// `PATCH /api/classrooms/{id}` body.
#[derive(Deserialize)]
pub struct ClassroomPatch {
    /// New name.
    pub name: Option<String>,
    /// New kind.
    pub kind: Option<ClassroomKind>,
    /// New devices.
    pub devices: Option<Vec<duet_hardware_device::Device>>,
}

async fn classroom_for(
    s: &AppState,
    a: &Authed,
    id: &str,
    action: Action,
) -> Result<(ClassroomRow, SchoolRow), ApiError> {
    let room = s.store.get_classroom(id).await?;
    let school = s.store.get_school(&room.school_id).await?;
    let r = Resource::Classroom {
        id: &room.id,
        school: &school.id,
        district: &school.district_id,
    };
    authorize_visible(&a.principal, action, &r)?;
    Ok((room, school))
}

/// `PATCH /api/classrooms/{id}`.
pub async fn update_classroom(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(b): Json<ClassroomPatch>,
) -> Result<Json<ClassroomRow>, ApiError> {
    let (mut room, _) = classroom_for(&s, &a, &id, Action::Update).await?;
    if let Some(n) = b.name {
        room.name = check_name("name", &n)?;
    }
    if let Some(k) = b.kind {
        room.kind = k;
    }
    if let Some(d) = b.devices {
        room.devices = devices_json(d)?;
    }
    s.store.update_classroom(&room).await?;
    audit(
        &s,
        &a.principal.id,
        "classroom_updated",
        &format!("classroom:{id}"),
        &room.name,
        &a.ip,
    )
    .await;
    Ok(Json(room))
}

/// `DELETE /api/classrooms/{id}`.
pub async fn delete_classroom(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    classroom_for(&s, &a, &id, Action::Delete).await?;
    s.store.delete_classroom(&id).await?;
    audit(
        &s,
        &a.principal.id,
        "classroom_deleted",
        &format!("classroom:{id}"),
        "",
        &a.ip,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// A bell period on the wire.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Period {
    /// Period number from 1.
    pub period: u8,
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`.
    pub end: String,
}

/// `GET/PUT /api/schools/{id}/bells` body.
#[derive(Serialize, Deserialize)]
pub struct Bells {
    /// The periods.
    pub periods: Vec<Period>,
}

/// `GET /api/schools/{id}/bells`.
pub async fn get_bells(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<Bells>, ApiError> {
    let school = school_for(&s, &a, &id, Action::Read).await?;
    let rows = s.store.list_bell_periods(&school.id).await?;
    Ok(Json(Bells {
        periods: rows
            .into_iter()
            .map(|p| Period {
                period: p.period,
                start: p.start_time.format("%H:%M").to_string(),
                end: p.end_time.format("%H:%M").to_string(),
            })
            .collect(),
    }))
}

fn parse_time(field: &'static str, s: &str) -> Result<chrono::NaiveTime, ApiError> {
    chrono::NaiveTime::parse_from_str(s, "%H:%M")
        .map_err(|_| ApiError::invalid(field, format!("{s:?} is not a time HH:MM")))
}

/// `PUT /api/schools/{id}/bells`.
pub async fn put_bells(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(b): Json<Bells>,
) -> Result<Json<Bells>, ApiError> {
    let school = s.store.get_school(&id).await?;
    // Changing bells is a classroom-level change: the school admin and the district admin.
    let r = Resource::Classroom {
        id: "",
        school: &school.id,
        district: &school.district_id,
    };
    if authorize(&a.principal, Action::Update, &r).is_err() {
        return Err(
            if authorize(
                &a.principal,
                Action::Read,
                &Resource::School {
                    id: &school.id,
                    district: &school.district_id,
                },
            )
            .is_ok()
            {
                ApiError::Forbidden
            } else {
                ApiError::NotFound
            },
        );
    }
    if b.periods.len() > 20 {
        return Err(ApiError::invalid("periods", "at most 20 periods"));
    }
    let mut periods = Vec::new();
    for p in &b.periods {
        periods.push(BellPeriod {
            period: p.period,
            start: parse_time("periods", &p.start)?,
            end: parse_time("periods", &p.end)?,
        });
    }
    let schedule = BellSchedule {
        school: SchoolId(school.id.clone()),
        periods: periods.clone(),
    };
    schedule
        .validate()
        .map_err(|e| ApiError::invalid("periods", e.to_string()))?;
    let rows: Vec<BellPeriodRow> = periods
        .iter()
        .map(|p| BellPeriodRow {
            period: p.period,
            start_time: p.start,
            end_time: p.end,
        })
        .collect();
    s.store.set_bell_periods(&school.id, &rows).await?;
    audit(
        &s,
        &a.principal.id,
        "bells_updated",
        &format!("school:{id}"),
        &format!("{} periods", rows.len()),
        &a.ip,
    )
    .await;
    Ok(Json(b))
}

/// An account as admins see it.
#[derive(Serialize, Deserialize, Debug)]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Role token.
    pub role: AccountRole,
    /// School.
    pub school_id: Option<String>,
    /// Classroom.
    pub classroom_id: Option<String>,
    /// Disabled.
    pub disabled: bool,
}

fn view(u: UserRow) -> UserView {
    UserView {
        id: u.id,
        username: u.username,
        display_name: u.display_name,
        role: account_role(u.role),
        school_id: u.school_id,
        classroom_id: u.classroom_id,
        disabled: u.disabled,
    }
}

fn account_resource<'a>(u: &'a UserRow, district: &'a str) -> Resource<'a> {
    Resource::Account {
        role: account_role(u.role),
        school: u.school_id.as_deref(),
        district,
    }
}

/// `GET /api/users`.
pub async fn list_users(
    State(s): State<Arc<AppState>>,
    a: Authed,
) -> Result<Json<Vec<UserView>>, ApiError> {
    let district = district_of(&a)?.to_owned();
    let users = s.store.list_users_in_district(&district).await?;
    Ok(Json(
        users
            .into_iter()
            .filter(|u| {
                authorize(&a.principal, Action::Read, &account_resource(u, &district)).is_ok()
            })
            .map(view)
            .collect(),
    ))
}

/// `POST /api/users` body.
#[derive(Deserialize)]
pub struct NewUser {
    /// Login name (letters, digits, `.-_`).
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Initial password.
    pub password: String,
    /// Role.
    pub role: AccountRole,
    /// School, for school-level roles.
    pub school_id: Option<String>,
    /// Classroom, for classroom logins.
    pub classroom_id: Option<String>,
}

fn store_role(r: AccountRole) -> Result<Role, ApiError> {
    Ok(match r {
        AccountRole::DistrictAdmin => Role::DistrictAdmin,
        AccountRole::SchoolAdmin => Role::SchoolAdmin,
        AccountRole::Teacher => Role::Teacher,
        AccountRole::Classroom => Role::Classroom,
        AccountRole::Reviewer => Role::Reviewer,
        AccountRole::Machine => {
            return Err(ApiError::invalid(
                "role",
                "machine tokens are made with POST /api/tokens",
            ));
        }
    })
}

fn check_username(u: &str) -> Result<String, ApiError> {
    let u = u.trim().to_lowercase();
    if u.is_empty()
        || u.len() > 64
        || !u
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(ApiError::invalid(
            "username",
            "1–64 letters, digits, '.', '-' or '_'",
        ));
    }
    Ok(u)
}

/// `POST /api/users`.
pub async fn create_user(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Json(b): Json<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let district = district_of(&a)?.to_owned();
    let role = store_role(b.role)?;
    let username = check_username(&b.username)?;
    let display_name = check_name("display_name", &b.display_name)?;
    password::check_new(&b.password).map_err(|m| ApiError::invalid("password", m))?;
    // School-level accounts must name a school of this district; classroom logins a classroom of it.
    let mut school_id = b.school_id.clone();
    if let Some(c) = &b.classroom_id {
        let room = s
            .store
            .get_classroom(c)
            .await
            .map_err(|_| ApiError::invalid("classroom_id", "no such classroom"))?;
        school_id = Some(room.school_id);
    }
    if let Some(sid) = &school_id {
        let school = s
            .store
            .get_school(sid)
            .await
            .map_err(|_| ApiError::invalid("school_id", "no such school"))?;
        if school.district_id != district {
            return Err(ApiError::invalid("school_id", "no such school"));
        }
    }
    match b.role {
        AccountRole::SchoolAdmin | AccountRole::Teacher if school_id.is_none() => {
            return Err(ApiError::invalid("school_id", "required for this role"));
        }
        AccountRole::Classroom if b.classroom_id.is_none() => {
            return Err(ApiError::invalid(
                "classroom_id",
                "required for a classroom login",
            ));
        }
        _ => {}
    }
    let row = UserRow {
        id: new_id("usr"),
        username,
        display_name,
        password_hash: password::hash_blocking(b.password.clone()).await,
        role,
        district_id: Some(district.clone()),
        school_id,
        classroom_id: b.classroom_id,
        disabled: false,
        failed_logins: 0,
        locked_until: None,
        created_at: chrono::Utc::now(),
    };
    authorize(
        &a.principal,
        Action::Create,
        &account_resource(&row, &district),
    )?;
    s.store.create_user(&row).await?;
    audit(
        &s,
        &a.principal.id,
        "user_created",
        &format!("user:{}", row.id),
        &format!("role {}", b.role),
        &a.ip,
    )
    .await;
    Ok((StatusCode::CREATED, Json(view(row))))
}

/// `PATCH /api/users/{id}` body.
#[derive(Deserialize)]
pub struct UserPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// New role.
    pub role: Option<AccountRole>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// New password.
    pub password: Option<String>,
}

/// `PATCH /api/users/{id}`.
pub async fn update_user(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Path(id): Path<String>,
    Json(b): Json<UserPatch>,
) -> Result<Json<UserView>, ApiError> {
    let district = district_of(&a)?.to_owned();
    let mut user = s.store.get_user(&id).await?;
    if user.district_id.as_deref() != Some(district.as_str()) {
        return Err(ApiError::NotFound);
    }
    authorize(
        &a.principal,
        Action::Update,
        &account_resource(&user, &district),
    )?;
    if let Some(n) = &b.display_name {
        user.display_name = check_name("display_name", n)?;
    }
    if let Some(r) = b.role {
        user.role = store_role(r)?;
        // The new role must be one the caller may manage, too.
        authorize(
            &a.principal,
            Action::Update,
            &account_resource(&user, &district),
        )?;
        audit(
            &s,
            &a.principal.id,
            "role_changed",
            &format!("user:{id}"),
            r.as_str(),
            &a.ip,
        )
        .await;
    }
    if let Some(d) = b.disabled {
        user.disabled = d;
    }
    s.store.update_user(&user).await?;
    if let Some(p) = &b.password {
        password::check_new(p).map_err(|m| ApiError::invalid("password", m))?;
        s.store
            .set_password_hash(&id, &password::hash_blocking(p.clone()).await)
            .await?;
        s.store.delete_sessions_of_user(&id).await?;
        audit(
            &s,
            &a.principal.id,
            "password_reset",
            &format!("user:{id}"),
            "",
            &a.ip,
        )
        .await;
    }
    if b.disabled == Some(true) {
        s.store.delete_sessions_of_user(&id).await?;
    }
    audit(
        &s,
        &a.principal.id,
        "user_updated",
        &format!("user:{id}"),
        "",
        &a.ip,
    )
    .await;
    Ok(Json(view(user)))
}

/// `POST /api/tokens` body.
#[derive(Deserialize)]
pub struct NewToken {
    /// What it is for.
    pub name: String,
    /// Restrict to one school.
    pub school_id: Option<String>,
}

/// `POST /api/tokens`: a machine token, shown once.
pub async fn create_token(
    State(s): State<Arc<AppState>>,
    a: Authed,
    Json(b): Json<NewToken>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let district = district_of(&a)?.to_owned();
    let school_id = match (&b.school_id, a.principal.role) {
        (_, AccountRole::SchoolAdmin) => a.principal.school.clone(),
        (Some(sid), AccountRole::DistrictAdmin) => {
            let school = s
                .store
                .get_school(sid)
                .await
                .map_err(|_| ApiError::invalid("school_id", "no such school"))?;
            if school.district_id != district {
                return Err(ApiError::invalid("school_id", "no such school"));
            }
            Some(school.id)
        }
        (None, AccountRole::DistrictAdmin) => None,
        _ => return Err(ApiError::Forbidden),
    };
    let token = secret("duet");
    let row = ApiTokenRow {
        id: new_id("tok"),
        name: check_name("name", &b.name)?,
        token_hash: secret_hash(&token),
        district_id: Some(district),
        school_id,
        created_by: a.principal.id.clone(),
        created_at: chrono::Utc::now(),
        revoked_at: None,
    };
    s.store.insert_api_token(&row).await?;
    audit(
        &s,
        &a.principal.id,
        "token_issued",
        &format!("token:{}", row.id),
        &row.name,
        &a.ip,
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": row.id, "token": token })),
    ))
}
