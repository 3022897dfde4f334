//! The gateway's HTTP API, exercised through the router without sockets (`oneshot`), on SQLite
//! and on PostgreSQL: every endpoint, scope enforcement across schools and districts, the
//! timetable (holidays, make-up days, conflicts across schools with different bells, iCal with
//! ETag, idempotency), the join flow, and security (wrong passwords, lock-out, expired sessions,
//! forged cookies, CSRF, SQL-looking and oversized input).

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{Datelike, Duration, NaiveTime, Timelike, Utc};
use common::{Api, Client, PW, Resp, on_both};
use duet_gateway::api::openapi::ENDPOINTS;
use duet_gateway::auth::password;
use duet_gateway::store::*;
use duet_gateway::{GatewayConfig, app};
use duet_sfu_proto::TokenKey;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

async fn run<F, Fut>(postgres: bool, body: F)
where
    F: FnOnce(World) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    common::run(
        postgres,
        "api",
        async |store, _, _| World::new(store).await,
        body,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// The world: district d1 (urban s1 with lead classroom c1, rural s2 with receiving classroom c2,
// whose bells are five minutes later) and district d2 (school s3, classroom c3). Period 1 of s1
// began five minutes ago, so a class is on now.

struct World {
    api: Api,
    store: Store,
    today: chrono::NaiveDate,
}

impl std::ops::Deref for World {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

fn bells(start_min: i64) -> Vec<BellPeriodRow> {
    (0..6)
        .filter_map(|i| {
            let s = start_min + i * 50;
            let e = s + 40;
            (e < 24 * 60 && s >= 0).then(|| BellPeriodRow {
                period: (i + 1) as u8,
                start_time: NaiveTime::from_hms_opt((s / 60) as u32, (s % 60) as u32, 0).unwrap(),
                end_time: NaiveTime::from_hms_opt((e / 60) as u32, (e % 60) as u32, 0).unwrap(),
            })
        })
        .collect()
}

impl World {
    async fn new(store: Store) -> World {
        let now = Utc::now();
        let local = now.with_timezone(&chrono_tz::Asia::Shanghai);
        let today = local.date_naive();
        // Keep the whole scenario inside one local day: start period 1 five minutes ago, or at
        // 08:00 when the test runs too late for six periods (then nothing is "now").
        let mut start = i64::from(local.hour()) * 60 + i64::from(local.minute()) - 5;
        if start < 0 || start + 6 * 50 >= 24 * 60 {
            start = 8 * 60;
        }
        let user = |id: &str,
                    username: &str,
                    role: Role,
                    district: &str,
                    school: Option<&str>,
                    classroom: Option<&str>| UserRow {
            id: id.into(),
            username: username.into(),
            display_name: format!("{username} 显示名"),
            password_hash: password::hash(PW),
            role,
            district_id: Some(district.into()),
            school_id: school.map(Into::into),
            classroom_id: classroom.map(Into::into),
            disabled: false,
            failed_logins: 0,
            locked_until: None,
            created_at: now,
        };
        for (id, name) in [("d1", "城关区"), ("d2", "山南区")] {
            store
                .create_district(&DistrictRow {
                    id: id.into(),
                    name: name.into(),
                })
                .await
                .unwrap();
        }
        for (id, d, kind) in [
            ("s1", "d1", SchoolKind::Urban),
            ("s2", "d1", SchoolKind::Rural),
            ("s3", "d2", SchoolKind::Urban),
        ] {
            store
                .create_school(&SchoolRow {
                    id: id.into(),
                    district_id: d.into(),
                    name: format!("学校 {id}"),
                    kind,
                })
                .await
                .unwrap();
        }
        for (id, s, kind) in [
            ("c1", "s1", ClassroomKind::Lead),
            ("c2", "s2", ClassroomKind::Receiving),
            ("c3", "s3", ClassroomKind::Lead),
            ("c4", "s2", ClassroomKind::Lead),
        ] {
            store
                .create_classroom(&ClassroomRow {
                    id: id.into(),
                    school_id: s.into(),
                    name: format!("教室 {id}"),
                    kind,
                    devices: json!([]),
                })
                .await
                .unwrap();
        }
        store.set_bell_periods("s1", &bells(start)).await.unwrap();
        store
            .set_bell_periods("s2", &bells(start + 5))
            .await
            .unwrap();
        store.set_bell_periods("s3", &bells(start)).await.unwrap();
        for u in [
            user("da1", "da1", Role::DistrictAdmin, "d1", None, None),
            user("da2", "da2", Role::DistrictAdmin, "d2", None, None),
            user("sa1", "sa1", Role::SchoolAdmin, "d1", Some("s1"), None),
            user("sa2", "sa2", Role::SchoolAdmin, "d1", Some("s2"), None),
            user("t1", "t1", Role::Teacher, "d1", Some("s1"), None),
            user("t2", "t2", Role::Teacher, "d1", Some("s2"), None),
            user("t9", "t9", Role::Teacher, "d1", Some("s1"), None),
            user("t3", "t3", Role::Teacher, "d2", Some("s3"), None),
            user(
                "u-c1",
                "room-c1",
                Role::Classroom,
                "d1",
                Some("s1"),
                Some("c1"),
            ),
            user(
                "u-c2",
                "room-c2",
                Role::Classroom,
                "d1",
                Some("s2"),
                Some("c2"),
            ),
            user(
                "u-c3",
                "room-c3",
                Role::Classroom,
                "d2",
                Some("s3"),
                Some("c3"),
            ),
            user("rv", "rv", Role::Reviewer, "d1", None, None),
        ] {
            store.create_user(&u).await.unwrap();
        }
        for (id, d) in [("math", "d1"), ("chinese", "d1"), ("math2", "d2")] {
            store
                .create_subject(&SubjectRow {
                    id: id.into(),
                    district_id: d.into(),
                    name: if id == "chinese" {
                        "语文".into()
                    } else {
                        "数学".into()
                    },
                })
                .await
                .unwrap();
        }
        for (id, d) in [("term1", "d1"), ("term2", "d2")] {
            store
                .create_term(&TermRow {
                    id: id.into(),
                    district_id: d.into(),
                    name: "学期".into(),
                    start_date: today - Duration::days(20),
                    end_date: today + Duration::days(60),
                })
                .await
                .unwrap();
        }
        // The paired class on now: c1 (s1) teaches c2 (s2), teacher t1, today's weekday, period 1.
        let weekday = today.weekday().number_from_monday() as u8;
        store
            .create_series(&SeriesRow {
                id: "k1".into(),
                term_id: "term1".into(),
                pairing_id: None,
                weekday,
                period: 1,
                lead_classroom_id: "c1".into(),
                teacher_id: "t1".into(),
                subject_id: "math".into(),
                created_by: "da1".into(),
                created_at: now,
                receiver_ids: vec!["c2".into()],
            })
            .await
            .unwrap();
        store
            .create_series(&SeriesRow {
                id: "k3".into(),
                term_id: "term2".into(),
                pairing_id: None,
                weekday,
                period: 1,
                lead_classroom_id: "c3".into(),
                teacher_id: "t3".into(),
                subject_id: "math2".into(),
                created_by: "da2".into(),
                created_at: now,
                receiver_ids: vec![],
            })
            .await
            .unwrap();
        let config = GatewayConfig {
            demo: false,
            ..GatewayConfig::default()
        };
        World {
            api: Api::new(config, b"api test key, 16+ bytes", store.clone()),
            store,
            today,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every endpoint is routed and guarded.

async fn every_endpoint_is_routed_and_refuses_strangers(w: World) {
    for e in ENDPOINTS {
        let path = e.path.replace("{id}", "x").replace("{source_id}", "x");
        let method: Method = e.method.to_uppercase().parse().unwrap();
        let body = (method != Method::GET).then(|| json!({}));
        let r = w.call(method.clone(), &path, None, body, &[]).await;
        let expected_open = matches!(e.path, "/api/login" | "/api/openapi.json");
        if expected_open {
            assert_ne!(r.status, StatusCode::NOT_FOUND, "{} {path}", e.method);
        } else {
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{} {path} without a session: {:?}",
                e.method,
                String::from_utf8_lossy(&r.body)
            );
            assert_eq!(r.code(), "unauthenticated");
        }
    }
    let doc = w
        .call(Method::GET, "/api/openapi.json", None, None, &[])
        .await
        .json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["paths"]["/api/series"]["post"]["summary"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    assert_eq!(
        doc["paths"].as_object().unwrap().len(),
        ENDPOINTS
            .iter()
            .map(|e| e.path)
            .collect::<std::collections::HashSet<_>>()
            .len()
    );
}
on_both!(every_endpoint_is_routed_and_refuses_strangers);

// ---------------------------------------------------------------------------------------------
// Scope: cross-school and cross-district attempts are refused and change nothing.

async fn scopes_hold_across_schools_and_districts(w: World) {
    let da1 = w.login("da1").await;
    let da2 = w.login("da2").await;
    let sa2 = w.login("sa2").await;
    let t9 = w.login("t9").await;
    let rv = w.login("rv").await;
    let c2 = w.login("room-c2").await;

    // District admins see their own district's schools only.
    let ids = |r: Resp| -> Vec<String> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(w.get(&da1, "/api/schools").await), ["s1", "s2"]);
    assert_eq!(ids(w.get(&da2, "/api/schools").await), ["s3"]);
    assert_eq!(ids(w.get(&sa2, "/api/schools").await), ["s2"]);
    // Another district's school and classrooms look like nothing is there.
    assert_eq!(
        w.get(&da2, "/api/schools/s1/classrooms").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        w.call(
            Method::PATCH,
            "/api/schools/s1",
            Some(&da2),
            Some(json!({"name": "改名"})),
            &[]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    // A school admin changes their own school, not the paired one.
    assert_eq!(
        w.call(
            Method::PATCH,
            "/api/schools/s2",
            Some(&sa2),
            Some(json!({"name": "李家村小学"})),
            &[]
        )
        .await
        .status,
        StatusCode::OK
    );
    let r = w
        .call(
            Method::PATCH,
            "/api/schools/s1",
            Some(&sa2),
            Some(json!({"name": "被改了"})),
            &[],
        )
        .await;
    assert!(
        matches!(r.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{}",
        r.status
    );
    assert_eq!(
        w.store.get_school("s1").await.unwrap().name,
        "学校 s1",
        "nothing changed"
    );
    // Classrooms: a school admin adds to their school only.
    let r = w
        .post(
            &sa2,
            "/api/schools/s2/classrooms",
            json!({"name": "四年级", "kind": "receiving"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = w
        .post(
            &sa2,
            "/api/schools/s1/classrooms",
            json!({"name": "入侵", "kind": "receiving"}),
        )
        .await;
    assert!(matches!(
        r.status,
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    ));
    assert_eq!(w.store.list_classrooms("s1").await.unwrap().len(), 1);
    // Bells: own school only.
    let bells = json!({"periods": [{"period": 1, "start": "08:00", "end": "08:40"}]});
    let r = w
        .call(
            Method::PUT,
            "/api/schools/s1/bells",
            Some(&sa2),
            Some(bells.clone()),
            &[],
        )
        .await;
    assert!(
        matches!(r.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{}",
        r.status
    );
    assert_eq!(
        w.store.list_bell_periods("s1").await.unwrap().len(),
        6,
        "nothing changed"
    );
    // Accounts: a school admin may create teachers of their school, never admins, never elsewhere.
    let new_user = |role: &str, school: &str| json!({"username": format!("new-{role}-{school}"), "display_name": "新", "password": "long enough pw", "role": role, "school_id": school});
    assert_eq!(
        w.post(&sa2, "/api/users", new_user("teacher", "s2"))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        w.post(&sa2, "/api/users", new_user("teacher", "s1"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        w.post(&sa2, "/api/users", new_user("district_admin", "s2"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        w.post(&sa2, "/api/users", new_user("school_admin", "s2"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert!(
        w.store
            .find_user_by_username("new-teacher-s1")
            .await
            .unwrap()
            .is_none()
    );
    // ... nor promote someone.
    let r = w
        .call(
            Method::PATCH,
            "/api/users/t2",
            Some(&sa2),
            Some(json!({"role": "district_admin"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(w.store.get_user("t2").await.unwrap().role, Role::Teacher);
    // Timetables: a teacher sees their own classes; another teacher, a reviewer and another
    // district see none of k1.
    let day = w.today.to_string();
    let tt = |r: Resp| -> Vec<String> {
        r.json()["occurrences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["series_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let q = format!("/api/timetable?from={day}&to={day}");
    assert_eq!(tt(w.get(&w.login("t1").await, &q).await), ["k1"]);
    assert!(tt(w.get(&t9, &q).await).is_empty());
    assert!(tt(w.get(&rv, &q).await).is_empty());
    assert_eq!(tt(w.get(&da2, &q).await), ["k3"]);
    assert_eq!(tt(w.get(&c2, &q).await), ["k1"]);
    // Creating series is the district's job.
    let weekday = w.today.weekday().number_from_monday();
    let series = json!({"term_id": "term1", "weekday": weekday, "period": 2, "lead_classroom_id": "c1", "receiving_classroom_ids": ["c2"], "teacher_id": "t1", "subject_id": "math"});
    assert_eq!(
        w.post(&sa2, "/api/series", series.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        w.post(&da2, "/api/series", series.clone()).await.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another district's term"
    );
    assert_eq!(w.store.list_series_of_term("term1").await.unwrap().len(), 1);
    // Reviewers see nothing of the timetable's management.
    assert_eq!(
        w.get(&rv, "/api/users")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(
        w.post(&rv, "/api/subjects", json!({"name": "美术"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}
on_both!(scopes_hold_across_schools_and_districts);

// ---------------------------------------------------------------------------------------------
// Join flow: exactly the caller's role; a receiving classroom never leads.

async fn join_tokens_carry_exactly_the_callers_role(w: World) {
    let key = TokenKey::new(*b"api test key, 16+ bytes").unwrap();
    let now = Utc::now().timestamp() as u64;
    let role_of = |r: &Resp| {
        key.verify(r.json()["token"].as_str().unwrap(), now)
            .unwrap()
    };
    let local = Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    if i64::from(local.hour()) * 60 + i64::from(local.minute()) - 5 + 6 * 50 >= 24 * 60 {
        // Late evening: the fixture's class is not on now; the scenario needs a class now.
        eprintln!(
            "skipping the join scenario's live part: too late in the day for the fixture's bells"
        );
        let t1 = w.login("t1").await;
        assert_eq!(
            w.post(&t1, "/api/join", json!({})).await.status,
            StatusCode::NOT_FOUND
        );
        return;
    }
    let t1 = w.login("t1").await;
    let r = w.post(&t1, "/api/join", json!({})).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let c = role_of(&r);
    assert_eq!((c.role, c.sub.as_str()), (duet_sfu_proto::Role::Lead, "t1"));
    assert_eq!(c.room.as_str(), format!("k1-{}", w.today));
    let r = w
        .post(&w.login("room-c1").await, "/api/join", json!({}))
        .await;
    assert_eq!(role_of(&r).role, duet_sfu_proto::Role::Lead);
    let c2 = w.login("room-c2").await;
    let r = w.post(&c2, "/api/join", json!({})).await;
    let c = role_of(&r);
    assert_eq!(
        (c.role, c.sub.as_str()),
        (duet_sfu_proto::Role::Receiving, "c2")
    );
    assert!(!c.grants.sources.contains(&duet_sfu_proto::Source::Screen));
    // Naming the class explicitly does not change the role.
    let r = w
        .post(
            &c2,
            "/api/join",
            json!({"series_id": "k1", "date": w.today}),
        )
        .await;
    assert_eq!(role_of(&r).role, duet_sfu_proto::Role::Receiving);
    // Admins watch; others are refused.
    let r = w
        .post(
            &w.login("da1").await,
            "/api/join",
            json!({"series_id": "k1", "date": w.today}),
        )
        .await;
    assert_eq!(role_of(&r).role, duet_sfu_proto::Role::Observer);
    for who in ["t9", "rv", "room-c3", "da2"] {
        let r = w
            .post(
                &w.login(who).await,
                "/api/join",
                json!({"series_id": "k1", "date": w.today}),
            )
            .await;
        assert!(
            matches!(r.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
            "{who}: {}",
            r.status
        );
    }
    // The audit log has the issuance.
    let log = w
        .store
        .list_audit(&AuditFilter {
            action: Some("join_token_issued".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(log.len() >= 4);
    // Now and next for the caller.
    let now = w.get(&c2, "/api/now").await.json();
    assert_eq!(now["current"]["series_id"], "k1");
}
on_both!(join_tokens_carry_exactly_the_callers_role);

// ---------------------------------------------------------------------------------------------
// Timetable: holidays, make-up days, conflicts across schools with different bells, iCal/ETag,
// idempotency.

async fn timetable_holidays_conflicts_ical_and_idempotency(w: World) {
    let da1 = w.login("da1").await;
    // A term with a holiday on 2026-10-01..07 and a make-up Saturday 2026-10-10 (runs Friday).
    let days: Vec<Value> = (1..=7)
        .map(|d| json!({"date": format!("2026-10-0{d}"), "kind": "holiday"}))
        .chain(std::iter::once(
            json!({"date": "2026-10-10", "kind": "makeup", "follows_weekday": 5}),
        ))
        .collect();
    let r = w.post(&da1, "/api/terms", json!({"name": "2026秋", "start_date": "2026-09-01", "end_date": "2026-10-31", "days": days})).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let term = r.json()["id"].as_str().unwrap().to_owned();
    // Fixed bells for this part: s1 period 2 08:50–09:30, s2 period 2 08:55–09:35.
    let s1 = json!({"periods": [{"period": 1, "start": "08:00", "end": "08:40"}, {"period": 2, "start": "08:50", "end": "09:30"}]});
    let s2 = json!({"periods": [{"period": 1, "start": "08:05", "end": "08:45"}, {"period": 2, "start": "08:55", "end": "09:35"}]});
    assert_eq!(
        w.call(
            Method::PUT,
            "/api/schools/s1/bells",
            Some(&da1),
            Some(s1),
            &[]
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        w.call(
            Method::PUT,
            "/api/schools/s2/bells",
            Some(&da1),
            Some(s2),
            &[]
        )
        .await
        .status,
        StatusCode::OK
    );
    // Overlapping periods are refused with the field named.
    let bad = json!({"periods": [{"period": 1, "start": "08:00", "end": "08:40"}, {"period": 2, "start": "08:30", "end": "09:10"}]});
    let r = w
        .call(
            Method::PUT,
            "/api/schools/s2/bells",
            Some(&da1),
            Some(bad),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("periods"))
    );

    // A Friday paired class, c1 → c2, period 2.
    let friday = json!({"term_id": term, "weekday": 5, "period": 2, "lead_classroom_id": "c1", "receiving_classroom_ids": ["c2"], "teacher_id": "t1", "subject_id": "math"});
    let key = [("idempotency-key", "create-friday-math-1")];
    let r1 = w
        .call(
            Method::POST,
            "/api/series",
            Some(&da1),
            Some(friday.clone()),
            &key,
        )
        .await;
    assert_eq!(
        r1.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r1.body)
    );
    // The double-click: same key, same answer, one series.
    let r2 = w
        .call(
            Method::POST,
            "/api/series",
            Some(&da1),
            Some(friday.clone()),
            &key,
        )
        .await;
    assert_eq!(r2.status, StatusCode::CREATED);
    assert_eq!(r1.json()["id"], r2.json()["id"]);
    let stored = w.store.list_series_of_term(&term).await.unwrap();
    assert_eq!(stored.len(), 1);
    let k = stored[0].id.clone();
    // Across the holiday week and the make-up Saturday.
    let r = w
        .get(&da1, "/api/timetable?from=2026-09-25&to=2026-10-17")
        .await;
    let dates: Vec<String> = r.json()["occurrences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["series_id"] == k.as_str())
        .map(|o| o["date"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        dates,
        ["2026-09-25", "2026-10-09", "2026-10-10", "2026-10-16"]
    );
    let first = &r.json()["occurrences"][0];
    assert_eq!(
        (first["local_start"].as_str(), first["local_end"].as_str()),
        (Some("08:50"), Some("09:30"))
    );

    // c2's own school schedules a local lesson in c4 → ... no: c2 leads nothing; put a local
    // series at s2 with c4 leading and c2 receiving at s2's period 2 (08:55–09:35): it overlaps
    // the paired class in c2 (08:50–09:30) only in absolute time.
    let local = json!({"term_id": term, "weekday": 5, "period": 2, "lead_classroom_id": "c4", "receiving_classroom_ids": ["c2"], "teacher_id": "t2", "subject_id": "chinese"});
    let r = w.post(&da1, "/api/series", local).await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let msg = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("教室 c2") && msg.contains("08:50") && msg.contains("08:55"),
        "{msg}"
    );
    assert_eq!(
        w.store.list_series_of_term(&term).await.unwrap().len(),
        1,
        "a clash changes nothing"
    );
    // Period 1 at s2 (08:05–08:45) does not clash with 08:50.
    let ok = json!({"term_id": term, "weekday": 5, "period": 1, "lead_classroom_id": "c4", "receiving_classroom_ids": ["c2"], "teacher_id": "t2", "subject_id": "chinese"});
    assert_eq!(
        w.post(&da1, "/api/series", ok).await.status,
        StatusCode::CREATED
    );
    // Moving one lesson onto a holiday is refused; cancelling one works.
    let r = w.post(&da1, &format!("/api/series/{k}/exceptions"), json!({"date": "2026-10-16", "kind": "move", "new_date": "2026-10-02", "new_period": 2})).await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        w.post(
            &da1,
            &format!("/api/series/{k}/exceptions"),
            json!({"date": "2026-10-16", "kind": "cancel"})
        )
        .await
        .status,
        StatusCode::CREATED
    );

    // The classroom's iCal feed parses, carries the lessons, and honours ETag.
    let feed = w.get(&da1, "/api/classrooms/c2/calendar.ics").await;
    assert_eq!(feed.status, StatusCode::OK);
    let body = String::from_utf8(feed.body.clone()).unwrap();
    let unfolded = icalendar::parser::unfold(&body);
    let cal = icalendar::parser::read_calendar(&unfolded).expect("the feed is valid iCalendar");
    let events: Vec<_> = cal
        .components
        .iter()
        .filter(|c| c.name == "VEVENT")
        .collect();
    assert!(events.iter().any(|e| {
        e.properties
            .iter()
            .any(|p| p.name == "UID" && p.val.as_str().starts_with(&format!("{k}-2026-10-10")))
    }));
    assert!(
        !events.iter().any(|e| e
            .properties
            .iter()
            .any(|p| p.name == "UID" && p.val.as_str().starts_with(&format!("{k}-2026-10-16")))),
        "cancelled"
    );
    let etag = feed.headers[header::ETAG].to_str().unwrap().to_owned();
    let again = w
        .call(
            Method::GET,
            "/api/classrooms/c2/calendar.ics",
            Some(&da1),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    // A machine token of s2 reads the feed; one of s1 does not see c2.
    let tok = w
        .post(
            &da1,
            "/api/tokens",
            json!({"name": "录播主机", "school_id": "s2"}),
        )
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = w
        .call(
            Method::GET,
            &format!("/api/classrooms/c2/calendar.ics?token={tok}"),
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let tok1 = w
        .post(
            &da1,
            "/api/tokens",
            json!({"name": "城关录播", "school_id": "s1"}),
        )
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = w
        .call(
            Method::GET,
            "/api/classrooms/c2/calendar.ics",
            None,
            None,
            &[("authorization", &format!("Bearer {tok1}"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
on_both!(timetable_holidays_conflicts_ical_and_idempotency);

// ---------------------------------------------------------------------------------------------
// Security.

async fn security_failures_get_the_right_4xx_and_change_nothing(w: World) {
    let login = |u: &str, p: &str| json!({"username": u, "password": p});
    // Wrong password.
    let r = w
        .call(
            Method::POST,
            "/api/login",
            None,
            Some(login("t9", "wrong")),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "bad_credentials")
    );
    // Unknown user: the same answer.
    let r = w
        .call(
            Method::POST,
            "/api/login",
            None,
            Some(login("nobody", "wrong")),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "bad_credentials")
    );
    // Lock-out after five failures; then even the right password is refused.
    for _ in 0..4 {
        w.call(
            Method::POST,
            "/api/login",
            None,
            Some(login("t9", "wrong")),
            &[],
        )
        .await;
    }
    let r = w
        .call(Method::POST, "/api/login", None, Some(login("t9", PW)), &[])
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::LOCKED, "account_locked")
    );
    let log = w
        .store
        .list_audit(&AuditFilter {
            actor: Some("t9".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        log.iter().any(|e| e.action == "account_locked")
            && log.iter().filter(|e| e.action == "login_failed").count() >= 5
    );
    // Expired session.
    let da1 = w.login("da1").await;
    let secret = "ses_expired-session-for-the-test";
    w.store
        .insert_session(&BrowserSessionRow {
            id_hash: duet_gateway::auth::secret_hash(secret),
            user_id: "da1".into(),
            csrf_token: "csrf_x".into(),
            created_at: Utc::now() - Duration::hours(13),
            expires_at: Utc::now() - Duration::hours(1),
        })
        .await
        .unwrap();
    let expired = Client {
        cookie: secret.into(),
        csrf: "csrf_x".into(),
    };
    assert_eq!(
        w.get(&expired, "/api/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    // Forged cookie.
    let forged = Client {
        cookie: "ses_forged".into(),
        csrf: da1.csrf.clone(),
    };
    assert_eq!(
        w.get(&forged, "/api/schools").await.status,
        StatusCode::UNAUTHORIZED
    );
    // Missing or wrong CSRF token on a change: refused, nothing created.
    let r = w
        .call(
            Method::POST,
            "/api/schools",
            None,
            Some(json!({"name": "X", "kind": "urban"})),
            &[("cookie", &format!("duet_session={}", da1.cookie))],
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "csrf")
    );
    let r = w
        .call(
            Method::POST,
            "/api/schools",
            None,
            Some(json!({"name": "X", "kind": "urban"})),
            &[
                ("cookie", &format!("duet_session={}", da1.cookie)),
                ("x-csrf-token", "csrf_wrong"),
            ],
        )
        .await;
    assert_eq!(r.code(), "csrf");
    assert_eq!(w.store.list_schools("d1").await.unwrap().len(), 2);
    // SQL-looking input is data.
    let r = w
        .post(
            &da1,
            "/api/schools",
            json!({"name": "'; DROP TABLE schools; --", "kind": "rural"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(
        w.store
            .list_schools("d1")
            .await
            .unwrap()
            .iter()
            .any(|s| s.name == "'; DROP TABLE schools; --")
    );
    let r = w
        .get(
            &da1,
            "/api/timetable?from=2026-01-01'%20OR%201=1&to=2026-01-02",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Oversized input: a long name is a field error; a huge body is refused before parsing.
    let r = w
        .post(
            &da1,
            "/api/schools",
            json!({"name": "长".repeat(500), "kind": "rural"}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("name"))
    );
    let r = w
        .post(&da1, "/api/subjects", json!({"name": "x".repeat(400_000)}))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = w
        .post(&da1, "/api/schools", json!({"name": "X", "kind": "castle"}))
        .await;
    assert!(r.status.is_client_error());
    assert_eq!(
        w.store.list_schools("d1").await.unwrap().len(),
        3,
        "only the SQL-looking one was added"
    );
    // Logout ends the session.
    assert_eq!(
        w.post(&da1, "/api/logout", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        w.get(&da1, "/api/me").await.status,
        StatusCode::UNAUTHORIZED
    );
}
on_both!(security_failures_get_the_right_4xx_and_change_nothing);

// ---------------------------------------------------------------------------------------------
// Every endpoint does its job for the caller it is meant for.

async fn every_endpoint_works_for_its_intended_caller(w: World) {
    let da1 = w.login("da1").await;
    let sa2 = w.login("sa2").await;
    let me = w.get(&da1, "/api/me").await;
    assert_eq!(
        (me.status, me.json()["role"].as_str()),
        (StatusCode::OK, Some("district_admin"))
    );
    assert_eq!(me.json()["csrf_token"].as_str(), Some(da1.csrf.as_str()));
    // Schools and classrooms.
    let s = w
        .post(
            &da1,
            "/api/schools",
            json!({"name": "新村小学", "kind": "teaching_point"}),
        )
        .await;
    assert_eq!(s.status, StatusCode::CREATED);
    let sid = s.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        w.call(
            Method::PATCH,
            &format!("/api/schools/{sid}"),
            Some(&da1),
            Some(json!({"kind": "rural"})),
            &[]
        )
        .await
        .json()["kind"],
        "rural"
    );
    let room = w
        .post(&sa2, "/api/schools/s2/classrooms", json!({"name": "五年级", "kind": "receiving", "devices": [{"id": "cam1", "kind": "camera", "position": "pupils_wide", "source": "rtsp://192.0.2.9/1"}]}))
        .await;
    assert_eq!(
        room.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&room.body)
    );
    let rid = room.json()["id"].as_str().unwrap().to_owned();
    let bad_device = w
        .post(
            &sa2,
            "/api/schools/s2/classrooms",
            json!({"name": "x", "kind": "receiving", "devices": [{"id": "d", "kind": "toaster"}]}),
        )
        .await;
    assert_eq!(bad_device.json()["field"], "devices");
    let listed = w.get(&sa2, "/api/schools/s2/classrooms").await.json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == rid.as_str() && c["devices"][0]["id"] == "cam1")
    );
    let patched = w
        .call(
            Method::PATCH,
            &format!("/api/classrooms/{rid}"),
            Some(&sa2),
            Some(json!({"name": "五年级(2)班", "devices": []})),
            &[],
        )
        .await;
    assert_eq!(
        (
            patched.json()["name"].as_str(),
            patched.json()["devices"].as_array().map(Vec::len)
        ),
        (Some("五年级(2)班"), Some(0))
    );
    assert_eq!(
        w.call(
            Method::DELETE,
            &format!("/api/classrooms/{rid}"),
            Some(&sa2),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert!(w.store.get_classroom(&rid).await.is_err());
    // Bells.
    let bells = w.get(&sa2, "/api/schools/s2/bells").await.json();
    assert_eq!(bells["periods"].as_array().unwrap().len(), 6);
    assert!(
        bells["periods"][0]["start"].as_str().unwrap().len() == 5,
        "HH:MM"
    );
    // Accounts and tokens.
    let u = w.post(&sa2, "/api/users", json!({"username": "Room-New", "display_name": "新教室", "password": "long enough pw", "role": "classroom", "classroom_id": "c2"})).await;
    assert_eq!(
        u.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&u.body)
    );
    assert_eq!(u.json()["username"], "room-new", "usernames are normalised");
    let uid = u.json()["id"].as_str().unwrap().to_owned();
    assert!(
        w.get(&sa2, "/api/users")
            .await
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == uid.as_str())
    );
    let dup = w.post(&sa2, "/api/users", json!({"username": "room-new", "display_name": "x", "password": "long enough pw", "role": "classroom", "classroom_id": "c2"})).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let dis = w
        .call(
            Method::PATCH,
            &format!("/api/users/{uid}"),
            Some(&sa2),
            Some(json!({"disabled": true})),
            &[],
        )
        .await;
    assert_eq!(dis.json()["disabled"], true);
    let r = w
        .call(
            Method::POST,
            "/api/login",
            None,
            Some(json!({"username": "room-new", "password": "long enough pw"})),
            &[],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::LOCKED,
        "a disabled account cannot log in"
    );
    let tok = w
        .post(&sa2, "/api/tokens", json!({"name": "录播主机 1"}))
        .await;
    assert_eq!(tok.status, StatusCode::CREATED);
    assert!(tok.json()["token"].as_str().unwrap().starts_with("duet_"));
    // District data.
    assert_eq!(
        w.post(&da1, "/api/subjects", json!({"name": "英语"}))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        w.get(&sa2, "/api/subjects")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let p = w
        .post(&da1, "/api/pairings", json!({"lead_school_id": "s1", "receiving_school_ids": ["s2", sid], "scope": "county", "round_start": "2026-09-01", "round_end": "2029-08-31", "subject_ids": ["math"]}))
        .await;
    assert_eq!(
        p.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&p.body)
    );
    assert_eq!(
        w.get(&sa2, "/api/pairings")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1,
        "the partner school sees its pairing"
    );
    let self_pair = w.post(&da1, "/api/pairings", json!({"lead_school_id": "s1", "receiving_school_ids": ["s1"], "scope": "county", "round_start": "2026-09-01", "round_end": "2029-08-31"})).await;
    assert_eq!(self_pair.json()["field"], "receiving_school_ids");
    assert_eq!(
        w.get(&da1, "/api/terms")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let bad_term = w
        .post(
            &da1,
            "/api/terms",
            json!({"name": "x", "start_date": "2026-09-01", "end_date": "2026-08-01"}),
        )
        .await;
    assert_eq!(bad_term.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Series list and attendance.
    let series = w.get(&da1, "/api/series?term_id=term1").await.json();
    assert_eq!(series.as_array().unwrap().len(), 1);
    w.store
        .record_join(&AttendanceRow {
            id: new_id("att"),
            series_id: "k1".into(),
            date: w.today,
            participant: "c2".into(),
            role: "receiving".into(),
            joined_at: Utc::now(),
            left_at: None,
        })
        .await
        .unwrap();
    let att = w
        .get(
            &w.login("t1").await,
            &format!("/api/attendance?series_id=k1&date={}", w.today),
        )
        .await;
    assert_eq!(att.json().as_array().unwrap().len(), 1);
    assert_eq!(
        w.get(&w.login("t9").await, "/api/attendance?series_id=k1")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
on_both!(every_endpoint_works_for_its_intended_caller);

// ---------------------------------------------------------------------------------------------
// Recording classrooms (录播教室): the recorder reports its state, follows the timetable with its
// machine token, registers lessons idempotently; people in scope watch and control it.

/// Adds recording classrooms r1 (school s1) and r2 (school s2).
async fn add_recording_rooms(w: &World) {
    for (id, school) in [("r1", "s1"), ("r2", "s2")] {
        w.store
            .create_classroom(&ClassroomRow {
                id: id.into(),
                school_id: school.into(),
                name: format!("录播教室 {id}"),
                kind: ClassroomKind::Recording,
                devices: json!([]),
            })
            .await
            .unwrap();
    }
}

/// A machine token issued by `admin`, scoped to `school` (or the district).
async fn machine_token(w: &World, admin: &Client, school: Option<&str>) -> String {
    let r = w
        .post(
            admin,
            "/api/tokens",
            json!({"name": "录播主机", "school_id": school}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    r.json()["token"].as_str().unwrap().to_owned()
}

impl World {
    /// A call with a machine token.
    async fn machine(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Resp {
        let auth = format!("Bearer {token}");
        self.call(method, path, None, body, &[("authorization", &auth)])
            .await
    }
}

fn status_report(state: &str) -> Value {
    json!({
        "state": state,
        "reason": null,
        "lesson": {"id": "les_r1_x", "title": "数学 · 李老师", "teacher": "李老师", "subject": "数学",
                   "start": "2026-03-02T00:55:00Z", "end": "2026-03-02T01:45:00Z"},
        "sources": [{"id": "cam-teacher", "label": "教师特写", "role": "teacher_close_up", "state": "RECORDING"}],
        "free_disk_bytes": 123_456_789_000u64,
        "pending_uploads": 0,
        "last_error": null
    })
}

async fn recorder_status_is_reported_by_its_machine_and_read_in_scope(w: World) {
    add_recording_rooms(&w).await;
    let da1 = w.login("da1").await;
    let da2 = w.login("da2").await;
    let tok_s1 = machine_token(&w, &da1, Some("s1")).await;
    let tok_s2 = machine_token(&w, &da1, Some("s2")).await;
    let tok_d1 = machine_token(&w, &da1, None).await;
    let tok_d2 = machine_token(&w, &da2, None).await;
    let path = "/api/classrooms/r1/recorder-status";
    let t1 = w.login("t1").await;

    // Never reported: no status, offline.
    let r = w.get(&w.login("sa1").await, path).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"status": null, "reported_at": null, "online": false})
    );

    // The school's recorder reports; teachers of the school read it verbatim, online.
    let r = w
        .machine(Method::PUT, path, &tok_s1, Some(status_report("recording")))
        .await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let got = w.get(&t1, path).await.json();
    assert_eq!(got["status"], status_report("recording"));
    assert_eq!(got["online"], true);
    assert!(got["reported_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        w.get(&w.login("t9").await, path).await.status,
        StatusCode::OK
    );
    // A district-wide token reports too.
    let r = w
        .machine(Method::PUT, path, &tok_d1, Some(status_report("idle")))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let state = |r: Resp| {
        r.json()["status"]["state"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(state(w.get(&t1, path).await), "idle");

    // Out of scope: another school's or district's token, a teacher, refused; nothing changes.
    for tok in [&tok_s2, &tok_d2] {
        let r = w
            .machine(Method::PUT, path, tok, Some(status_report("failed")))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let r = w
        .call(
            Method::PUT,
            path,
            Some(&t1),
            Some(status_report("failed")),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Bad bodies: unknown state, not an object, not JSON, too large.
    let r = w
        .machine(Method::PUT, path, &tok_s1, Some(status_report("dancing")))
        .await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("state"))
    );
    let r = w
        .machine(Method::PUT, path, &tok_s1, Some(json!(["recording"])))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = w
        .machine(Method::PUT, path, &tok_s1, Some(json!({"reason": null})))
        .await;
    assert_eq!(r.json()["field"], "state");
    let auth = format!("Bearer {tok_s1}");
    let req = Request::builder()
        .method(Method::PUT)
        .uri(path)
        .header("authorization", &auth)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"state\": \"recording\""))
        .unwrap();
    let res = app(w.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let mut big = status_report("recording");
    big["pad"] = json!("x".repeat(70 * 1024));
    let r = w.machine(Method::PUT, path, &tok_s1, Some(big)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
    assert_eq!(state(w.get(&t1, path).await), "idle", "nothing changed");
    // Only recording classrooms have a recorder.
    let r = w
        .machine(
            Method::PUT,
            "/api/classrooms/c1/recorder-status",
            &tok_s1,
            Some(status_report("idle")),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("classroom_id"))
    );
    // Reading is for people of the school (and the district).
    for who in ["sa2", "t2", "rv", "room-c1", "da2"] {
        assert_eq!(
            w.get(&w.login(who).await, path).await.status,
            StatusCode::NOT_FOUND,
            "{who}"
        );
    }
    assert_eq!(w.get(&da1, path).await.status, StatusCode::OK);
    assert_eq!(
        w.get(&da1, "/api/classrooms/nope/recorder-status")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
on_both!(recorder_status_is_reported_by_its_machine_and_read_in_scope);

async fn a_recording_rooms_timetable_reaches_its_machine_token(w: World) {
    add_recording_rooms(&w).await;
    let da1 = w.login("da1").await;
    let tok_s1 = machine_token(&w, &da1, Some("s1")).await;
    let tok_s2 = machine_token(&w, &da1, Some("s2")).await;
    let weekday = w.today.weekday().number_from_monday();
    // A recording classroom leads its own lessons, with nobody receiving …
    let with_receiver = json!({"term_id": "term1", "weekday": weekday, "period": 2, "lead_classroom_id": "r1", "receiving_classroom_ids": ["c2"], "teacher_id": "t9", "subject_id": "math"});
    let r = w.post(&da1, "/api/series", with_receiver).await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("receiving_classroom_ids")
        )
    );
    let alone = json!({"term_id": "term1", "weekday": weekday, "period": 2, "lead_classroom_id": "r1", "receiving_classroom_ids": [], "teacher_id": "t9", "subject_id": "math"});
    let r = w.post(&da1, "/api/series", alone).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let sid = r.json()["id"].as_str().unwrap().to_owned();
    // … and its recorder's token (scoped to the school) reads it for that classroom.
    let day = w.today;
    let q = format!("/api/timetable?from={day}&to={day}&classroom_id=r1");
    let r = w.machine(Method::GET, &q, &tok_s1, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let occ = r.json()["occurrences"].as_array().unwrap().clone();
    assert_eq!(occ.len(), 1, "{occ:?}");
    assert_eq!(occ[0]["series_id"], sid.as_str());
    assert_eq!(occ[0]["lead_classroom"]["id"], "r1");
    assert_eq!(occ[0]["receivers"], json!([]));
    assert_eq!(r.json()["conflicts"], json!([]));
    // Another school's token does not see it.
    let r = w.machine(Method::GET, &q, &tok_s2, None).await;
    assert_eq!(r.json()["occurrences"], json!([]));
}
on_both!(a_recording_rooms_timetable_reaches_its_machine_token);

fn lesson(id: &str, classroom: &str, title: &str, day: u32) -> Value {
    json!({
        "id": id,
        "classroom_id": classroom,
        "series_id": "ser_x",
        "date": format!("2026-03-{day:02}"),
        "period": 1,
        "title": title,
        "teacher": "李老师",
        "subject": "数学",
        "started_at": format!("2026-03-{day:02}T00:55:00Z"),
        "ended_at": format!("2026-03-{day:02}T01:40:00Z"),
        "archive_uri": format!("s3://duet-archive/{classroom}/{id}/"),
        "files": [
            {"name": "programme-1.mp4", "kind": "programme", "source_id": null, "bytes": 734_003_200u64, "duration_s": 2700.04, "sha256": "ab".repeat(32)},
            {"name": "cam-teacher-1.mp4", "kind": "source", "source_id": "cam-teacher", "bytes": 512_000_000u64, "duration_s": 2700.0, "sha256": "CD".repeat(32)},
            {"name": "lesson.json", "kind": "metadata", "source_id": null, "bytes": 2048, "duration_s": 0.0, "sha256": "01".repeat(32)}
        ],
        "gaps": [{"source_id": "cam-pupil", "from": format!("2026-03-{day:02}T01:10:00Z"), "to": format!("2026-03-{day:02}T01:10:20Z"), "reason": "camera reconnecting"}],
        "parts": 2
    })
}

async fn lessons_register_idempotently_and_list_in_scope(w: World) {
    add_recording_rooms(&w).await;
    let da1 = w.login("da1").await;
    let tok_s1 = machine_token(&w, &da1, Some("s1")).await;
    let tok_s2 = machine_token(&w, &da1, Some("s2")).await;
    let post = |tok: &str, body: Value| {
        let tok = tok.to_owned();
        let w = &w;
        async move {
            w.machine(Method::POST, "/api/lessons", &tok, Some(body))
                .await
        }
    };
    // First registration: 201 with the lesson.
    let first = lesson("les_r1_a", "r1", "数学 · 第一课", 2);
    let r = post(&tok_s1, first.clone()).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let created = r.json();
    assert_eq!(created["id"], "les_r1_a");
    assert_eq!(created["school_id"], "s1");
    assert_eq!(created["files"], first["files"]);
    assert_eq!(created["gaps"][0]["reason"], "camera reconnecting");
    assert_eq!(created["parts"], 2);
    // The retry: 200 with the same lesson.
    let r = post(&tok_s1, first.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), created);
    // Same id, different content: 409, the first registration stands.
    let r = post(&tok_s1, lesson("les_r1_a", "r1", "改过的标题", 2)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, "conflict")
    );
    assert_eq!(
        w.store
            .find_lesson("les_r1_a")
            .await
            .unwrap()
            .unwrap()
            .title,
        "数学 · 第一课"
    );
    let audit = w
        .store
        .list_audit(&AuditFilter {
            action: Some("lesson_registered".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "registered once, audited once");
    assert_eq!(audit[0].target, "lesson:les_r1_a");

    // Bad bodies are refused and register nothing.
    let bad = |edit: &dyn Fn(&mut Value)| {
        let mut b = lesson("les_r1_bad", "r1", "坏的", 4);
        edit(&mut b);
        b
    };
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            bad(&|b| b["ended_at"] = b["started_at"].clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ended_at",
        ),
        (
            bad(&|b| b["files"] = json!([])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "files",
        ),
        (
            bad(&|b| b["files"][0]["sha256"] = json!("xyz")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "files",
        ),
        (
            bad(&|b| b["files"][0]["name"] = json!("../../etc/passwd")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "files",
        ),
        (
            bad(&|b| b["id"] = json!("les_../x")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "id",
        ),
        (
            bad(&|b| b["id"] = json!("x".repeat(200))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "id",
        ),
        (
            bad(&|b| b["title"] = json!("")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "title",
        ),
        (
            bad(&|b| b["archive_uri"] = json!("http://example.com/x")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "archive_uri",
        ),
        (
            bad(&|b| b["parts"] = json!(0)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "parts",
        ),
        (
            bad(&|b| b["classroom_id"] = json!("c1")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "classroom_id",
        ),
        (
            bad(&|b| b["classroom_id"] = json!("r2")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "classroom_id",
        ),
        (
            bad(&|b| b["classroom_id"] = json!("nowhere")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "classroom_id",
        ),
        (
            bad(&|b| {
                b.as_object_mut().unwrap().remove("title");
            }),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            bad(&|b| b["started_at"] = json!("yesterday")),
            StatusCode::BAD_REQUEST,
            "",
        ),
    ];
    for (body, status, field) in cases {
        let r = post(&tok_s1, body.clone()).await;
        assert_eq!(
            r.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if !field.is_empty() {
            assert_eq!(r.json()["field"], field, "{body}");
        }
    }
    // People do not register lessons; a teacher of the school may see the room, so 403.
    let t1 = w.login("t1").await;
    let r = w
        .post(&t1, "/api/lessons", lesson("les_r1_t", "r1", "老师交的", 4))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        w.store
            .list_lessons(&LessonFilter::default(), 100)
            .await
            .unwrap()
            .len(),
        1,
        "nothing else was registered"
    );

    // Two more: a later one in r1, one in r2 by its own school's recorder.
    assert_eq!(
        post(&tok_s1, lesson("les_r1_b", "r1", "数学 · 第二课", 3))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        post(&tok_s2, lesson("les_r2_a", "r2", "语文", 1))
            .await
            .status,
        StatusCode::CREATED
    );
    let ids = |r: Resp| -> Vec<String> {
        assert_eq!(r.status, StatusCode::OK);
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Newest first, in scope.
    assert_eq!(
        ids(w.get(&da1, "/api/lessons").await),
        ["les_r1_b", "les_r1_a", "les_r2_a"]
    );
    assert_eq!(
        ids(w.get(&w.login("sa1").await, "/api/lessons").await),
        ["les_r1_b", "les_r1_a"]
    );
    assert_eq!(
        ids(w.get(&t1, "/api/lessons").await),
        ["les_r1_b", "les_r1_a"]
    );
    let sa2 = w.login("sa2").await;
    assert_eq!(ids(w.get(&sa2, "/api/lessons").await), ["les_r2_a"]);
    assert!(ids(w.get(&sa2, "/api/lessons?school_id=s1").await).is_empty());
    assert!(ids(w.get(&w.login("rv").await, "/api/lessons").await).is_empty());
    assert!(ids(w.get(&w.login("da2").await, "/api/lessons").await).is_empty());
    assert!(ids(w.get(&w.login("room-c1").await, "/api/lessons").await).is_empty());
    assert_eq!(
        ids(w.machine(Method::GET, "/api/lessons", &tok_s1, None).await),
        ["les_r1_b", "les_r1_a"]
    );
    // Filters: school, classroom, dates (school-local, inclusive).
    assert_eq!(
        ids(w.get(&da1, "/api/lessons?school_id=s2").await),
        ["les_r2_a"]
    );
    assert_eq!(
        ids(w
            .get(
                &da1,
                "/api/lessons?classroom_id=r1&from=2026-03-03&to=2026-03-03"
            )
            .await),
        ["les_r1_b"]
    );
    assert_eq!(
        ids(w
            .get(&da1, "/api/lessons?from=2026-03-01&to=2026-03-02")
            .await),
        ["les_r1_a", "les_r2_a"]
    );
    let r = w
        .get(&da1, "/api/lessons?from=2026-03-03&to=2026-03-01")
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // One lesson: in scope only.
    let r = w.get(&t1, "/api/lessons/les_r1_a").await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, created));
    for who in ["sa2", "da2", "rv"] {
        assert_eq!(
            w.get(&w.login(who).await, "/api/lessons/les_r1_a")
                .await
                .status,
            StatusCode::NOT_FOUND,
            "{who}"
        );
    }
    assert_eq!(
        w.get(&da1, "/api/lessons/les_none").await.status,
        StatusCode::NOT_FOUND
    );
}
on_both!(lessons_register_idempotently_and_list_in_scope);

/// A recorder link that records what it was asked and answers like a recorder would: r1 is
/// served, r2 has no recorder; stop is refused (the stub is never recording).
#[derive(Default)]
struct StubLink {
    calls: std::sync::Mutex<Vec<String>>,
}

impl StubLink {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

const JPEG: &[u8] = b"\xff\xd8\xff\xe0 stub jpeg \xff\xd9";

#[async_trait::async_trait]
impl duet_gateway::RecorderLink for StubLink {
    async fn command(
        &self,
        classroom_id: &str,
        command: duet_gateway::RecordingCommand,
    ) -> Result<Value, duet_gateway::RecorderLinkError> {
        if classroom_id != "r1" {
            return Err(duet_gateway::RecorderLinkError::NoRecorder);
        }
        self.calls.lock().unwrap().push(format!(
            "{classroom_id} {}",
            serde_json::to_string(&command).unwrap()
        ));
        match command {
            duet_gateway::RecordingCommand::Stop => Err(duet_gateway::RecorderLinkError::Refused(
                "not recording".into(),
            )),
            _ => Ok(json!({"state": "recording", "command": command})),
        }
    }

    async fn preview(&self, classroom_id: &str, source_id: &str) -> Option<Vec<u8>> {
        (classroom_id == "r1" && matches!(source_id, "programme" | "cam-teacher"))
            .then(|| JPEG.to_vec())
    }

    async fn director_event(
        &self,
        classroom_id: &str,
        event: Value,
    ) -> Result<(), duet_gateway::RecorderLinkError> {
        if event == json!("bogus") {
            return Err(duet_gateway::RecorderLinkError::Invalid(
                "unknown event".into(),
            ));
        }
        self.calls
            .lock()
            .unwrap()
            .push(format!("{classroom_id} event {event}"));
        Ok(())
    }
}

async fn recorders_are_controlled_and_previewed_through_the_link(w: World) {
    add_recording_rooms(&w).await;
    let t1 = w.login("t1").await;
    let cmd = "/api/classrooms/r1/recording";
    let start = json!({"action": "start", "minutes": 45});
    // No link yet: 503 unavailable.
    let r = w.post(&t1, cmd, start.clone()).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    assert_eq!(
        w.get(&t1, "/api/classrooms/r1/preview/programme")
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let stub = Arc::new(StubLink::default());
    assert!(w.state.set_recorder_link(stub.clone()).is_ok());
    assert!(w.state.set_recorder_link(stub.clone()).is_err(), "set once");

    // The school's teacher and admin and the district admin control it; the answer is the
    // recorder's.
    let r = w.post(&t1, cmd, start).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["state"], "recording");
    let r = w
        .post(
            &w.login("sa1").await,
            cmd,
            json!({"action": "extend", "minutes": 10}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let da1 = w.login("da1").await;
    let r = w.post(&da1, cmd, json!({"action": "stop"})).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, "conflict")
    );
    assert_eq!(
        stub.calls(),
        [
            r#"r1 {"action":"start","minutes":45}"#,
            r#"r1 {"action":"extend","minutes":10}"#,
            r#"r1 {"action":"stop"}"#
        ]
    );
    // Bad commands never reach the recorder.
    for (body, status) in [
        (
            json!({"action": "start", "minutes": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"action": "extend", "minutes": 241}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"action": "pause"}), StatusCode::BAD_REQUEST),
        (json!({"action": "extend"}), StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(
            w.post(&t1, cmd, body.clone()).await.status,
            status,
            "{body}"
        );
    }
    // Out of scope: another school, a reviewer, a classroom login, another district; the
    // recorder's own token may report but not control.
    for who in ["t2", "sa2", "rv", "room-c1", "da2"] {
        let r = w
            .post(&w.login(who).await, cmd, json!({"action": "stop"}))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{who}");
    }
    let tok_s1 = machine_token(&w, &da1, Some("s1")).await;
    let r = w
        .machine(Method::POST, cmd, &tok_s1, Some(json!({"action": "stop"})))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(stub.calls().len(), 3, "nothing more was forwarded");
    // Only recording classrooms; a room without a recorder is unavailable.
    let r = w
        .post(
            &da1,
            "/api/classrooms/c1/recording",
            json!({"action": "stop"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = w
        .post(
            &da1,
            "/api/classrooms/r2/recording",
            json!({"action": "stop"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    let log = w
        .store
        .list_audit(&AuditFilter {
            action: Some("recording_command".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 2, "the two commands the recorder took");

    // Previews: JPEG, never cached; 404 for a source without one; in scope only.
    let r = w.get(&t1, "/api/classrooms/r1/preview/programme").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(r.body, JPEG);
    assert_eq!(
        w.get(&t1, "/api/classrooms/r1/preview/cam-pupil")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        w.get(&w.login("t2").await, "/api/classrooms/r1/preview/programme")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Director events are passed on as JSON; bad ones are refused.
    let ev = "/api/classrooms/r1/director-events";
    assert_eq!(
        w.post(&t1, ev, json!("pupil_stood")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        w.post(&t1, ev, json!({"pupil_stood": null})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        w.post(&t1, ev, json!("bogus")).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        w.post(&t1, ev, json!(42)).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        w.post(&w.login("t2").await, ev, json!("pupil_stood"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let calls = stub.calls();
    assert_eq!(
        &calls[3..],
        [
            r#"r1 event "pupil_stood""#,
            r#"r1 event {"pupil_stood":null}"#
        ]
    );
}
on_both!(recorders_are_controlled_and_previewed_through_the_link);

// ---------------------------------------------------------------------------------------------
// The demo: its recording room has the simulated devices and a lesson now, without conflicts,
// also when an older demo database is seeded again.

async fn demo_recording_room_has_devices_and_a_lesson_now(w: World) {
    use duet_gateway::demo;
    let now = Utc::now();
    demo::seed(&w.store, now).await.unwrap();
    // An older demo database: no teacher2, no recording series, no devices.
    for weekday in 1..=7 {
        for period in [1, 3] {
            w.store
                .delete_series(&format!("ser_demo_rec_{weekday}_{period}"))
                .await
                .unwrap();
        }
    }
    w.store.delete_user("usr_demo_teacher2").await.unwrap();
    let mut rec = w
        .store
        .get_classroom(demo::RECORDING_CLASSROOM)
        .await
        .unwrap();
    rec.devices = json!([]);
    w.store.update_classroom(&rec).await.unwrap();

    let logins = demo::seed(&w.store, now).await.unwrap();
    let names: Vec<&str> = logins.iter().map(|l| l.username.as_str()).collect();
    assert_eq!(
        names,
        [
            "district",
            "school-admin",
            "teacher",
            "teacher2",
            "room-lead",
            "room-a",
            "room-b",
            "reviewer"
        ]
    );
    let rec = w
        .store
        .get_classroom(demo::RECORDING_CLASSROOM)
        .await
        .unwrap();
    assert_eq!(rec.kind, ClassroomKind::Recording);
    let devices = rec.devices.as_array().unwrap();
    let summary: Vec<(String, String)> = devices
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("cam-teacher", 18554),
            ("cam-teacher-wide", 18555),
            ("cam-pupils", 18556),
            ("cam-pupil", 18557),
            ("screen", 18558),
            ("mic", 18554)
        ]
        .map(|(id, port)| (id.to_owned(), format!("rtsp://127.0.0.1:{port}/cam")))
    );
    assert_eq!(devices[0]["ptz"], "visca_ip");
    assert_eq!(devices[0]["label"], "教师特写");
    assert_eq!(devices[4]["kind"], "screen_capture");
    assert_eq!(devices[5]["kind"], "microphone");
    assert_eq!(
        demo::SIM_DEVICES.iter().map(|d| d.port).collect::<Vec<_>>(),
        [18554, 18555, 18556, 18557, 18558, 18554]
    );

    // The district sees the room's lessons today, and no conflict anywhere in the demo.
    let pw = |u: &str| {
        logins
            .iter()
            .find(|l| l.username == u)
            .unwrap()
            .password
            .clone()
    };
    let district = w.login_with("district", &pw("district")).await;
    let today = now.with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    let weekday = today.weekday().number_from_monday();
    let r = w
        .get(
            &district,
            &format!("/api/timetable?from={today}&to={today}"),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.json()["conflicts"],
        json!([]),
        "the demo has no conflicts"
    );
    let rec_series: Vec<String> = r.json()["occurrences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["lead_classroom"]["id"] == demo::RECORDING_CLASSROOM)
        .map(|o| o["series_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        rec_series.contains(&format!("ser_demo_rec_{weekday}_1")),
        "{rec_series:?}"
    );
    // Period 1 began five minutes ago (unless the day is nearly over).
    let local = now.with_timezone(&chrono_tz::Asia::Shanghai);
    if local.hour() * 60 + local.minute() < 23 * 60 + 20 {
        let r = w
            .get(
                &w.login_with("teacher2", &pw("teacher2")).await,
                &format!("/api/now?classroom_id={}", demo::RECORDING_CLASSROOM),
            )
            .await;
        assert_eq!(
            r.json()["current"]["series_id"],
            format!("ser_demo_rec_{weekday}_1")
        );
        assert_eq!(r.json()["current"]["teacher"]["name"], "李老师");
    }
}
on_both!(demo_recording_room_has_devices_and_a_lesson_now);
