//! The demo district `duet up` seeds: one urban school paired with two rural schools, a term, a
//! timetable with a class in the current period, and demo logins (fresh passwords at every start,
//! printed by `duet up`).
//!
//! So that a class is always "now", the demo lead school's bells start at the time `duet up` runs
//! (period 1 began five minutes ago), and the demo series runs every day of the week in period 1.
//! The rural schools' bells are five minutes later, as paired schools' bells often differ.

use crate::auth::password;
use crate::store::{
    BellPeriodRow, ClassroomKind, ClassroomRow, DistrictRow, PairingRow, PairingScope, Role,
    SchoolKind, SchoolRow, SeriesRow, Store, StoreError, SubjectRow, TermRow, UserRow,
};
use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use rand::Rng;

/// The demo district's id.
pub const DISTRICT: &str = "dst_demo";

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

/// Bells starting five minutes before `now` (Asia/Shanghai), shifted by `offset_min`: 40-minute
/// periods with 10-minute breaks, as many as fit before midnight (at most 8).
fn bells(now: DateTime<Utc>, offset_min: i64) -> Vec<BellPeriodRow> {
    let local = now.with_timezone(&chrono_tz::Asia::Shanghai).time();
    let start_min =
        (i64::from(local.hour()) * 60 + i64::from(local.minute()) - 5 + offset_min).max(0);
    let mut out = Vec::new();
    for i in 0..8i64 {
        let s = start_min + i * 50;
        let e = s + 40;
        if e >= 24 * 60 {
            break;
        }
        let t = |m: i64| {
            NaiveTime::from_hms_opt((m / 60) as u32, (m % 60) as u32, 0)
                .expect("minutes within a day")
        };
        out.push(BellPeriodRow {
            period: (i + 1) as u8,
            start_time: t(s),
            end_time: t(e),
        });
    }
    if out.is_empty() {
        // Just before midnight: one short period to the end of the day.
        let s = (start_min.min(24 * 60 - 2)) as u32;
        out.push(BellPeriodRow {
            period: 1,
            start_time: NaiveTime::from_hms_opt(s / 60, s % 60, 0).expect("valid"),
            end_time: NaiveTime::from_hms_opt(23, 59, 0).expect("valid"),
        });
    }
    out
}

/// Seeds the demo district if absent, refreshes its bells and term around `now`, and gives every
/// demo login a fresh password, returned for printing.
pub async fn seed(store: &Store, now: DateTime<Utc>) -> Result<Vec<DemoLogin>, StoreError> {
    let today = now.with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    if store.get_district(DISTRICT).await.is_err() {
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
                "cls_demo_rec",
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
        for a in ACCOUNTS {
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
