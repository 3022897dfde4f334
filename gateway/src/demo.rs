//! The demo district `duet up` seeds: one urban school paired with two rural schools, a term, a
//! timetable with a class in the current period, and demo logins (fresh passwords at every start,
//! printed by `duet up`).
//!
//! So that a class is always "now", the demo lead school's bells start at the time `duet up` runs
//! (period 1 began five minutes ago), and the demo series runs every day of the week in period 1.
//! The rural schools' bells are five minutes later, as paired schools' bells often differ.
//!
//! The urban school also has a recording classroom (录播教室, `cls_demo_rec`) with the devices of
//! a simulated recording room ([`SIM_DEVICES`]: five RTSP simulators the binary starts, and a
//! microphone carried by the teacher close-up's stream) and its own lessons in periods 1 and 3
//! every day (teacher `teacher2`, no receivers), so its recorder has a lesson to record at once.
//! Existing demo databases get what is missing (accounts, series) and the devices at every start.

use crate::auth::password;
use crate::store::{
    BellPeriodRow, ClassroomKind, ClassroomRow, DistrictRow, PairingRow, PairingScope, Role,
    SchoolKind, SchoolRow, SeriesRow, Store, StoreError, SubjectRow, TermRow, UserRow,
};
use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use rand::Rng;

/// The demo district's id.
pub const DISTRICT: &str = "dst_demo";

/// The demo recording classroom (录播教室).
pub const RECORDING_CLASSROOM: &str = "cls_demo_rec";

/// One simulated device of the demo recording classroom: the binary starts an RTSP camera
/// simulator on `port` for each camera and screen capture; the microphone is the audio of the
/// teacher close-up's stream (same port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimDevice {
    /// Device id in the classroom, e.g. `cam-teacher`.
    pub id: &'static str,
    /// `camera`, `screen_capture` or `microphone`.
    pub kind: &'static str,
    /// Camera position (`teacher_close_up`, …); `None` for the others.
    pub position: Option<&'static str>,
    /// What it shows, for people (教师特写).
    pub label: &'static str,
    /// Local RTSP port of its simulator.
    pub port: u16,
}

impl SimDevice {
    /// Where its media comes from: `rtsp://127.0.0.1:{port}/cam`.
    pub fn source(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }

    /// Its PTZ protocol: the simulated teacher close-up answers VISCA over IP.
    pub fn ptz(&self) -> Option<&'static str> {
        (self.id == "cam-teacher").then_some("visca_ip")
    }

    /// The classroom device (`devices` of `cls_demo_rec`), as the API describes devices.
    pub fn device_json(&self) -> serde_json::Value {
        let mut d = serde_json::json!({
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "source": self.source(),
        });
        if let Some(p) = self.position {
            d["position"] = p.into();
        }
        if let Some(p) = self.ptz() {
            d["ptz"] = p.into();
        }
        d
    }
}

/// The simulated devices of the demo recording classroom.
pub const SIM_DEVICES: &[SimDevice] = &[
    SimDevice {
        id: "cam-teacher",
        kind: "camera",
        position: Some("teacher_close_up"),
        label: "教师特写",
        port: 18554,
    },
    SimDevice {
        id: "cam-teacher-wide",
        kind: "camera",
        position: Some("teacher_wide"),
        label: "教师全景",
        port: 18555,
    },
    SimDevice {
        id: "cam-pupils",
        kind: "camera",
        position: Some("pupils_wide"),
        label: "学生全景",
        port: 18556,
    },
    SimDevice {
        id: "cam-pupil",
        kind: "camera",
        position: Some("pupil_close_up"),
        label: "学生特写",
        port: 18557,
    },
    SimDevice {
        id: "screen",
        kind: "screen_capture",
        position: None,
        label: "课件",
        port: 18558,
    },
    SimDevice {
        id: "mic",
        kind: "microphone",
        position: None,
        label: "教师麦克风",
        port: 18554,
    },
];

/// One demo login, with its password in clear for printing.
#[derive(Clone, Debug)]
pub struct DemoLogin {
    /// Login name.
    pub username: String,
    /// Password (fresh each start).
    pub password: String,
    /// Display name.
    pub display_name: String,
    /// What it is for.
    pub role: Role,
}

fn password_text() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..10)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

struct Acct {
    id: &'static str,
    username: &'static str,
    name: &'static str,
    role: Role,
    school: Option<&'static str>,
    classroom: Option<&'static str>,
}

const ACCOUNTS: &[Acct] = &[
    Acct {
        id: "usr_demo_district",
        username: "district",
        name: "区教育局 管理员",
        role: Role::DistrictAdmin,
        school: None,
        classroom: None,
    },
    Acct {
        id: "usr_demo_sadmin",
        username: "school-admin",
        name: "城关小学 信息中心",
        role: Role::SchoolAdmin,
        school: Some("sch_demo_urban"),
        classroom: None,
    },
    Acct {
        id: "usr_demo_teacher",
        username: "teacher",
        name: "王老师",
        role: Role::Teacher,
        school: Some("sch_demo_urban"),
        classroom: None,
    },
    Acct {
        id: "usr_demo_teacher2",
        username: "teacher2",
        name: "李老师",
        role: Role::Teacher,
        school: Some("sch_demo_urban"),
        classroom: None,
    },
    Acct {
        id: "usr_demo_lead",
        username: "room-lead",
        name: "城关小学 三年级(1)班",
        role: Role::Classroom,
        school: Some("sch_demo_urban"),
        classroom: Some("cls_demo_lead"),
    },
    Acct {
        id: "usr_demo_room_a",
        username: "room-a",
        name: "李家村小学 三年级",
        role: Role::Classroom,
        school: Some("sch_demo_rural_a"),
        classroom: Some("cls_demo_a"),
    },
    Acct {
        id: "usr_demo_room_b",
        username: "room-b",
        name: "东山教学点 三年级",
        role: Role::Classroom,
        school: Some("sch_demo_rural_b"),
        classroom: Some("cls_demo_b"),
    },
    Acct {
        id: "usr_demo_reviewer",
        username: "reviewer",
        name: "教研员 张老师",
        role: Role::Reviewer,
        school: None,
        classroom: None,
    },
];

/// Periods the demo timetable uses: every one of them must exist whenever `duet up` starts, or
/// the whole district's timetable cannot be expanded.
const DEMO_PERIODS: i64 = 3;

/// Bells starting five minutes before `now` (Asia/Shanghai), shifted by `offset_min`: 40-minute
/// periods with 10-minute breaks, as many as fit before midnight (at most 8). Late in the
/// evening, when fewer than [`DEMO_PERIODS`] would fit, that many shorter periods with 1-minute
/// breaks share what is left of the day (period 1 still contains `now` until about 23:25).
fn bells(now: DateTime<Utc>, offset_min: i64) -> Vec<BellPeriodRow> {
    const LAST_MIN: i64 = 24 * 60 - 1;
    let local = now.with_timezone(&chrono_tz::Asia::Shanghai).time();
    let start_min = (i64::from(local.hour()) * 60 + i64::from(local.minute()) - 5 + offset_min)
        .clamp(0, LAST_MIN - 2 * DEMO_PERIODS);
    let room = LAST_MIN - start_min;
    let (step, len, count) = if room >= DEMO_PERIODS * 50 - 10 {
        (50, 40, ((room + 10) / 50).min(8))
    } else {
        let step = (room + 1) / DEMO_PERIODS;
        (step, step - 1, DEMO_PERIODS)
    };
    let t = |m: i64| {
        NaiveTime::from_hms_opt((m / 60) as u32, (m % 60) as u32, 0).expect("periods end by 23:59")
    };
    (0..count)
        .map(|i| BellPeriodRow {
            period: (i + 1) as u8,
            start_time: t(start_min + i * step),
            end_time: t(start_min + i * step + len),
        })
        .collect()
}

/// `true` when a lookup found nothing, `false` when it found the row; other errors pass.
fn absent<T>(found: Result<T, StoreError>) -> Result<bool, StoreError> {
    match found {
        Ok(_) => Ok(false),
        Err(StoreError::NotFound { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Seeds the demo district if absent, refreshes its bells and term around `now`, and gives every
/// demo login a fresh password, returned for printing.
pub async fn seed(store: &Store, now: DateTime<Utc>) -> Result<Vec<DemoLogin>, StoreError> {
    let today = now.with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    let fresh = absent(store.get_district(DISTRICT).await)?;
    if fresh {
        store
            .create_district(&DistrictRow {
                id: DISTRICT.into(),
                name: "城关区（演示）".into(),
            })
            .await?;
        for (id, name, kind) in [
            ("sch_demo_urban", "城关小学", SchoolKind::Urban),
            ("sch_demo_rural_a", "李家村小学", SchoolKind::Rural),
            ("sch_demo_rural_b", "东山教学点", SchoolKind::TeachingPoint),
        ] {
            store
                .create_school(&SchoolRow {
                    id: id.into(),
                    district_id: DISTRICT.into(),
                    name: name.into(),
                    kind,
                })
                .await?;
        }
        for (id, school, name, kind) in [
            (
                "cls_demo_lead",
                "sch_demo_urban",
                "城关小学 三年级(1)班",
                ClassroomKind::Lead,
            ),
            (
                RECORDING_CLASSROOM,
                "sch_demo_urban",
                "城关小学 录播教室",
                ClassroomKind::Recording,
            ),
            (
                "cls_demo_a",
                "sch_demo_rural_a",
                "李家村小学 三年级",
                ClassroomKind::Receiving,
            ),
            (
                "cls_demo_b",
                "sch_demo_rural_b",
                "东山教学点 三年级",
                ClassroomKind::Receiving,
            ),
        ] {
            store
                .create_classroom(&ClassroomRow {
                    id: id.into(),
                    school_id: school.into(),
                    name: name.into(),
                    kind,
                    devices: serde_json::json!([]),
                })
                .await?;
        }
    }
    // The default rubric (评价量表) of the district; a no-op when present.
    store.ensure_default_rubric(DISTRICT, now).await?;
    // Accounts, also those later versions of the demo added to databases seeded before them.
    for a in ACCOUNTS {
        if absent(store.get_user(a.id).await)? {
            store
                .create_user(&UserRow {
                    id: a.id.into(),
                    username: a.username.into(),
                    display_name: a.name.into(),
                    password_hash: String::new(),
                    role: a.role,
                    district_id: Some(DISTRICT.into()),
                    school_id: a.school.map(Into::into),
                    classroom_id: a.classroom.map(Into::into),
                    disabled: false,
                    failed_logins: 0,
                    locked_until: None,
                    created_at: now,
                })
                .await?;
        }
    }
    if fresh {
        for (id, name) in [("sub_demo_math", "数学"), ("sub_demo_chinese", "语文")] {
            store
                .create_subject(&SubjectRow {
                    id: id.into(),
                    district_id: DISTRICT.into(),
                    name: name.into(),
                })
                .await?;
        }
        store
            .create_term(&TermRow {
                id: "trm_demo".into(),
                district_id: DISTRICT.into(),
                name: "演示学期".into(),
                start_date: today - Duration::days(30),
                end_date: today + Duration::days(120),
            })
            .await?;
        store
            .create_pairing(&PairingRow {
                id: "par_demo".into(),
                district_id: DISTRICT.into(),
                lead_school_id: "sch_demo_urban".into(),
                scope: PairingScope::County,
                round_start: today - Duration::days(30),
                round_end: today + Duration::days(3 * 365),
                school_ids: vec!["sch_demo_rural_a".into(), "sch_demo_rural_b".into()],
                subject_ids: vec!["sub_demo_math".into(), "sub_demo_chinese".into()],
            })
            .await?;
        for weekday in 1..=7u8 {
            for (period, subject) in [(1u8, "sub_demo_math"), (3, "sub_demo_chinese")] {
                store
                    .create_series(&SeriesRow {
                        id: format!("ser_demo_{weekday}_{period}"),
                        term_id: "trm_demo".into(),
                        pairing_id: Some("par_demo".into()),
                        weekday,
                        period,
                        lead_classroom_id: "cls_demo_lead".into(),
                        teacher_id: "usr_demo_teacher".into(),
                        subject_id: subject.into(),
                        created_by: "usr_demo_district".into(),
                        created_at: now,
                        receiver_ids: vec!["cls_demo_a".into(), "cls_demo_b".into()],
                    })
                    .await?;
            }
        }
    }
    // The recording classroom's own lessons: periods 1 and 3 every day, nobody receiving.
    for weekday in 1..=7u8 {
        for (period, subject) in [(1u8, "sub_demo_math"), (3, "sub_demo_chinese")] {
            let id = format!("ser_demo_rec_{weekday}_{period}");
            if absent(store.get_series(&id).await)? {
                store
                    .create_series(&SeriesRow {
                        id,
                        term_id: "trm_demo".into(),
                        pairing_id: None,
                        weekday,
                        period,
                        lead_classroom_id: RECORDING_CLASSROOM.into(),
                        teacher_id: "usr_demo_teacher2".into(),
                        subject_id: subject.into(),
                        created_by: "usr_demo_district".into(),
                        created_at: now,
                        receiver_ids: Vec::new(),
                    })
                    .await?;
            }
        }
    }
    // The simulated devices, at every start (they are what the binary runs).
    let mut rec = store.get_classroom(RECORDING_CLASSROOM).await?;
    rec.devices =
        serde_json::Value::Array(SIM_DEVICES.iter().map(SimDevice::device_json).collect());
    store.update_classroom(&rec).await?;
    // Around now, at every start.
    store
        .set_bell_periods("sch_demo_urban", &bells(now, 0))
        .await?;
    store
        .set_bell_periods("sch_demo_rural_a", &bells(now, 5))
        .await?;
    store
        .set_bell_periods("sch_demo_rural_b", &bells(now, 5))
        .await?;
    let mut term = store.get_term("trm_demo").await?;
    if term.end_date < today + Duration::days(7) || term.start_date > today {
        term.start_date = term.start_date.min(today);
        term.end_date = today + Duration::days(120);
        store.update_term(&term).await?;
    }
    let mut logins = Vec::new();
    for a in ACCOUNTS {
        let pw = password_text();
        store
            .set_password_hash(a.id, &password::hash_blocking(pw.clone()).await)
            .await?;
        store.clear_failed_logins(a.id).await?;
        logins.push(DemoLogin {
            username: a.username.into(),
            password: pw,
            display_name: a.name.into(),
            role: a.role,
        });
    }
    Ok(logins)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{BellPeriod, BellSchedule, SchoolId};
    use chrono::TimeZone;

    #[test]
    fn demo_bells_have_its_periods_at_every_minute_of_the_day() {
        for minute in 0..24 * 60 {
            let local = chrono_tz::Asia::Shanghai
                .with_ymd_and_hms(2026, 3, 2, minute / 60, minute % 60, 30)
                .single()
                .expect("no DST in Shanghai");
            let now = local.with_timezone(&Utc);
            for offset in [0, 5] {
                let rows = bells(now, offset);
                assert!(rows.len() >= DEMO_PERIODS as usize, "{minute} {offset}");
                let schedule = BellSchedule {
                    school: SchoolId("s".into()),
                    periods: rows
                        .iter()
                        .map(|r| BellPeriod {
                            period: r.period,
                            start: r.start_time,
                            end: r.end_time,
                        })
                        .collect(),
                };
                schedule
                    .validate()
                    .unwrap_or_else(|e| panic!("{minute} {offset}: {e}"));
            }
            // Period 1 of the lead school contains now, except in the last minutes of the day.
            let first = &bells(now, 0)[0];
            if minute < 23 * 60 + 20 {
                let t = local.time();
                assert!(
                    first.start_time <= t && t < first.end_time,
                    "{minute}: {first:?}"
                );
            }
        }
    }

    #[test]
    fn sim_devices_are_the_demo_recording_rooms_devices() {
        let json: Vec<serde_json::Value> = SIM_DEVICES.iter().map(SimDevice::device_json).collect();
        assert_eq!(
            json[0],
            serde_json::json!({"id": "cam-teacher", "kind": "camera", "position": "teacher_close_up",
                "ptz": "visca_ip", "label": "教师特写", "source": "rtsp://127.0.0.1:18554/cam"})
        );
        assert_eq!(
            json[5],
            serde_json::json!({"id": "mic", "kind": "microphone", "label": "教师麦克风",
                "source": "rtsp://127.0.0.1:18554/cam"})
        );
        // Each device parses as the API's device (so the room can be edited in the admin pages).
        for d in json {
            serde_json::from_value::<crate::api::org::duet_hardware_device::Device>(d)
                .expect("a valid device");
        }
    }
}
