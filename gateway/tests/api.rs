//! The gateway's HTTP API, exercised through the router without sockets (`oneshot`), on SQLite
//! and on PostgreSQL: every endpoint, scope enforcement across schools and districts, the
//! timetable (holidays, make-up days, conflicts across schools with different bells, iCal with
//! ETag, idempotency), the join flow, and security (wrong passwords, lock-out, expired sessions,
//! forged cookies, CSRF, SQL-looking and oversized input).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{Datelike, Duration, NaiveTime, Timelike, Utc};
use duet_gateway::api::openapi::ENDPOINTS;
use duet_gateway::auth::password;
use duet_gateway::store::*;
use duet_gateway::{AppState, GatewayConfig, app};
use duet_sfu_proto::TokenKey;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::Connection;
use std::sync::Arc;
use tower::ServiceExt;

const PW: &str = "correct horse battery";

// ---------------------------------------------------------------------------------------------
// Backends

fn pg_server() -> String {
    std::env::var("DUET_TEST_PG_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

enum Backing {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

async fn open(postgres: bool) -> (Store, Backing) {
    sqlx::any::install_default_drivers();
    if postgres {
        let name = new_id("duet_api_test");
        let admin_url = format!("{}/postgres", pg_server());
        let mut admin = sqlx::AnyConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {admin_url} ({e}); start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`")
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.ok();
        let store = Store::open(&format!("{}/{name}", pg_server()))
            .await
            .unwrap();
        (store, Backing::Postgres(name))
    } else {
        let dir = std::env::temp_dir().join(new_id("duet-api-test"));
        let store = Store::sqlite_in(&dir).await.unwrap();
        (store, Backing::Sqlite(dir))
    }
}

async fn cleanup(store: Store, backing: Backing) {
    store.close().await;
    match backing {
        Backing::Sqlite(dir) => {
            let _ = std::fs::remove_dir_all(dir);
        }
        Backing::Postgres(name) => {
            if let Ok(mut admin) =
                sqlx::AnyConnection::connect(&format!("{}/postgres", pg_server())).await
            {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
            }
        }
    }
}

/// Runs one scenario on SQLite and on PostgreSQL, as two tests.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::run(false, super::$name).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::run(true, super::$name).await;
            }
        }
    };
}

async fn run<F, Fut>(postgres: bool, body: F)
where
    F: FnOnce(World) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (store, backing) = open(postgres).await;
    let world = World::new(store.clone()).await;
    let result = tokio::spawn(body(world)).await;
    cleanup(store, backing).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

// ---------------------------------------------------------------------------------------------
// The world: district d1 (urban s1 with lead classroom c1, rural s2 with receiving classroom c2,
// whose bells are five minutes later) and district d2 (school s3, classroom c3). Period 1 of s1
// began five minutes ago, so a class is on now.

struct World {
    state: Arc<AppState>,
    store: Store,
    today: chrono::NaiveDate,
}

struct Client {
    cookie: String,
    csrf: String,
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
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
        let state = Arc::new(AppState::new(
            config,
            TokenKey::new(*b"api test key, 16+ bytes").unwrap(),
            store.clone(),
        ));
        state
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        World {
            state,
            store,
            today,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        client: Option<&Client>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder().method(method.clone()).uri(path);
        if let Some(c) = client {
            req = req.header(header::COOKIE, format!("duet_session={}", c.cookie));
            if method != Method::GET {
                req = req.header("x-csrf-token", &c.csrf);
            }
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let res = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        Resp {
            status,
            headers,
            body: res.into_body().collect().await.unwrap().to_bytes().to_vec(),
        }
    }

    async fn login(&self, username: &str) -> Client {
        let r = self
            .call(
                Method::POST,
                "/api/login",
                None,
                Some(json!({"username": username, "password": PW})),
                &[],
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "login {username}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        let value = cookie
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("duet_session=")
            .to_owned();
        Client {
            cookie: value,
            csrf: r.json()["csrf_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn get(&self, c: &Client, path: &str) -> Resp {
        self.call(Method::GET, path, Some(c), None, &[]).await
    }

    async fn post(&self, c: &Client, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(c), Some(body), &[])
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// Every endpoint is routed and guarded.

async fn every_endpoint_is_routed_and_refuses_strangers(w: World) {
    for e in ENDPOINTS {
        let path = e.path.replace("{id}", "x");
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
