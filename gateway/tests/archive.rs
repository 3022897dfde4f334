//! The lesson archive through the router (`oneshot`), on SQLite and on PostgreSQL: who sees
//! which lesson (own school, paired schools for live lessons, assigned reviewers, unpublished
//! lessons), the listing's filters and review summary, signed media URLs with byte ranges
//! (expired, tampered and climbing URLs refused), reviewer assignment, publish/unpublish/delete
//! with their audit entries, clip export through a fake renderer, and the live rooms a recorder
//! follows.

mod common;

use axum::http::{Method, StatusCode, header};
use chrono::{Duration, Utc};
use common::{Api, Client, PW, Resp, on_both};
use duet_gateway::GatewayConfig;
use duet_gateway::auth::password;
use duet_gateway::clips::{ClipJob, ClipRenderer};
use duet_gateway::store::*;
use duet_sfu_proto::Role as LiveRole;
use serde_json::{Value, json};
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const REVIEW_BYTES: usize = 10_000;

async fn run<F, Fut>(postgres: bool, body: F)
where
    F: FnOnce(World) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    common::run(postgres, "archive", World::new, body).await;
}

// ---------------------------------------------------------------------------------------------
// The world: district d1 with urban school s1 (recording classroom r1, lead classroom c1,
// teacher t1 "李老师"), rural school s2 (receiving classroom c2, teacher t2) paired with s1 in
// pairing p1, and school s4 (teacher t4) in no pairing; district d2 with school s3 (recording
// classroom r3). Series k1: c1 teaches c2, teacher t1, pairing p1.

struct World {
    api: Api,
    store: Store,
    db_url: String,
    /// The archive root: one directory per lesson.
    root: PathBuf,
}

impl std::ops::Deref for World {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Resp {
    fn header(&self, name: header::HeaderName) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }
}

/// The review video's content: byte i is i mod 251, so any range is recognisable.
fn review_bytes() -> Vec<u8> {
    (0..REVIEW_BYTES).map(|i| (i % 251) as u8).collect()
}

impl World {
    async fn new(store: Store, db_url: String, root: PathBuf) -> World {
        let now = Utc::now();
        let today = now.with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
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
            ("s4", "d1", SchoolKind::Rural),
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
            ("r1", "s1", ClassroomKind::Recording),
            ("c1", "s1", ClassroomKind::Lead),
            ("c2", "s2", ClassroomKind::Receiving),
            ("r3", "s3", ClassroomKind::Recording),
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
        let user = |id: &str, name: &str, role: Role, d: &str, s: Option<&str>| UserRow {
            id: id.into(),
            username: id.into(),
            display_name: name.into(),
            password_hash: password::hash(PW),
            role,
            district_id: Some(d.into()),
            school_id: s.map(Into::into),
            classroom_id: (role == Role::Classroom).then(|| "c1".into()),
            disabled: false,
            failed_logins: 0,
            locked_until: None,
            created_at: now,
        };
        for u in [
            user("da1", "区管理员", Role::DistrictAdmin, "d1", None),
            user("da2", "山南管理员", Role::DistrictAdmin, "d2", None),
            user("sa1", "城关校管", Role::SchoolAdmin, "d1", Some("s1")),
            user("sa2", "乡村校管", Role::SchoolAdmin, "d1", Some("s2")),
            user("t1", "李老师", Role::Teacher, "d1", Some("s1")),
            user("t9", "赵老师", Role::Teacher, "d1", Some("s1")),
            user("t2", "王老师", Role::Teacher, "d1", Some("s2")),
            user("t4", "陈老师", Role::Teacher, "d1", Some("s4")),
            user("rv", "教研员甲", Role::Reviewer, "d1", None),
            user("rv2", "教研员乙", Role::Reviewer, "d1", None),
            user("rvx", "外区教研员", Role::Reviewer, "d2", None),
            user("room-c1", "教室 c1", Role::Classroom, "d1", Some("s1")),
        ] {
            store.create_user(&u).await.unwrap();
        }
        store
            .create_subject(&SubjectRow {
                id: "math".into(),
                district_id: "d1".into(),
                name: "数学".into(),
            })
            .await
            .unwrap();
        store
            .create_term(&TermRow {
                id: "term1".into(),
                district_id: "d1".into(),
                name: "学期".into(),
                start_date: today - Duration::days(20),
                end_date: today + Duration::days(60),
            })
            .await
            .unwrap();
        store
            .create_pairing(&PairingRow {
                id: "p1".into(),
                district_id: "d1".into(),
                lead_school_id: "s1".into(),
                scope: PairingScope::County,
                round_start: today - Duration::days(100),
                round_end: today + Duration::days(900),
                school_ids: vec!["s2".into()],
                subject_ids: vec!["math".into()],
            })
            .await
            .unwrap();
        for (id, lead, receivers) in [("k1", "c1", vec!["c2".to_string()]), ("k2", "r1", vec![])] {
            store
                .create_series(&SeriesRow {
                    id: id.into(),
                    term_id: "term1".into(),
                    pairing_id: (id == "k1").then(|| "p1".into()),
                    weekday: 1,
                    period: 1,
                    lead_classroom_id: lead.into(),
                    teacher_id: "t1".into(),
                    subject_id: "math".into(),
                    created_by: "da1".into(),
                    created_at: now,
                    receiver_ids: receivers,
                })
                .await
                .unwrap();
        }
        let config = GatewayConfig {
            demo: false,
            clips_dir: root.join("clips").to_string_lossy().into_owned(),
            ..GatewayConfig::default()
        };
        World {
            api: Api::new(config, b"archive test key, 16+ bytes", store.clone()),
            store,
            db_url,
            root,
        }
    }

    async fn send(&self, c: &Client, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.call(method, path, Some(c), body, &[]).await
    }

    async fn machine(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Resp {
        let auth = format!("Bearer {token}");
        self.call(method, path, None, body, &[("authorization", &auth)])
            .await
    }

    /// A URL without a session.
    async fn fetch(&self, method: Method, url: &str, range: Option<&str>) -> Resp {
        let extra: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
        self.call(method, url, None, None, &extra).await
    }

    /// A machine token issued by `admin`, scoped to `school` (or the district).
    async fn machine_token(&self, admin: &Client, school: Option<&str>) -> String {
        let r = self
            .post(
                admin,
                "/api/tokens",
                json!({"name": "录播主机", "school_id": school}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        r.json()["token"].as_str().unwrap().to_owned()
    }

    /// Runs SQL on the world's database directly (for tables other helpers' APIs fill).
    async fn exec(&self, sql: &str) {
        let mut conn = sqlx::AnyConnection::connect(&self.db_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.ok();
    }

    fn lesson_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }
}

fn file(name: &str, kind: &str, source: Option<&str>, bytes: usize) -> Value {
    json!({"name": name, "kind": kind, "source_id": source, "bytes": bytes,
           "duration_s": if kind == "metadata" { 0.0 } else { 2700.0 }, "sha256": "ab".repeat(32)})
}

/// Writes a lesson's files under the archive root and returns the registration body.
fn write_files(dir: &Path, files: &[(&str, Vec<u8>)]) {
    for (name, content) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

/// A recording classroom's lesson in r1 (s1) on 2026-03-02.
fn room_lesson(w: &World) -> Value {
    let dir = w.lesson_dir("les_room1");
    write_files(&dir, &[("programme-1.mp4", review_bytes())]);
    json!({
        "id": "les_room1", "classroom_id": "r1", "series_id": "k2", "date": "2026-03-02",
        "period": 1, "title": "数学 · 分数 100%", "teacher": "李老师", "subject": "数学",
        "started_at": "2026-03-02T00:55:00Z", "ended_at": "2026-03-02T01:40:00Z",
        "archive_uri": format!("file://{}/", dir.display()),
        "files": [file("programme-1.mp4", "programme", None, REVIEW_BYTES)],
        "parts": 1
    })
}

/// A recorded live class of k1 (pairing p1) on 2026-03-03, with media and speech.
fn live_lesson(w: &World) -> Value {
    let dir = w.lesson_dir("les_live1");
    let playlist =
        "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:6.0,\nseg-1.m4s\n#EXT-X-ENDLIST\n";
    write_files(
        &dir,
        &[
            ("review.mp4", review_bytes()),
            ("hls/index.m3u8", playlist.as_bytes().to_vec()),
            ("hls/init.mp4", b"init".to_vec()),
            ("hls/seg-1.m4s", b"segment one".to_vec()),
            ("thumbs/poster.jpg", b"\xff\xd8poster".to_vec()),
            ("thumbs/storyboard.jpg", b"\xff\xd8board".to_vec()),
            ("tracks/teacher-camera.webm", b"webm track".to_vec()),
            ("secret.txt", b"not registered".to_vec()),
        ],
    );
    std::fs::write(w.root.join("outside.txt"), b"outside the archive").unwrap();
    json!({
        "id": "les_live1", "classroom_id": "c1", "series_id": "k1", "date": "2026-03-03",
        "period": 1, "title": "同步课 · 分数的意义", "teacher": "李老师", "subject": "数学",
        "started_at": "2026-03-03T00:55:00Z", "ended_at": "2026-03-03T01:40:00Z",
        "archive_uri": format!("file://{}", dir.display()),
        "kind": "live", "pairing_id": "p1",
        "files": [
            file("review.mp4", "programme", None, REVIEW_BYTES),
            file("hls/index.m3u8", "hls", None, 80),
            file("thumbs/poster.jpg", "image", None, 8),
            file("thumbs/storyboard.jpg", "image", None, 7),
            file("tracks/teacher-camera.webm", "source", Some("teacher/camera"), 10),
        ],
        "parts": 1,
        "speech": {"tracks": [
            {"source_id": "teacher/microphone", "role": "lead", "label": "主讲教师",
             "segments": [[0, 60000], [90000, 120000]]},
            {"source_id": "room-c2/microphone", "role": "receiving", "label": "接收课堂",
             "segments": [[60000, 90000]]}], "duration_ms": 2700000},
        "media": {"review": "review.mp4", "hls": "hls/index.m3u8", "poster": "thumbs/poster.jpg",
                  "storyboard": {"file": "thumbs/storyboard.jpg", "interval_ms": 10000,
                                 "columns": 10, "tile_width": 160, "tile_height": 90, "count": 270},
                  "sources": [{"id": "teacher/camera", "label": "主讲教师", "kind": "video",
                               "file": "tracks/teacher-camera.webm", "offset_ms": 1200,
                               "duration_ms": 2699000}]}
    })
}

/// A lesson of d2 kept in object storage.
fn s3_lesson() -> Value {
    json!({
        "id": "les_s3", "classroom_id": "r3", "title": "山南 · 一课", "teacher": "周老师",
        "subject": "语文", "started_at": "2026-03-04T00:55:00Z", "ended_at": "2026-03-04T01:40:00Z",
        "archive_uri": "s3://duet-archive/r3/les_s3/",
        "files": [file("programme-1.mp4", "programme", None, 100)], "parts": 1
    })
}

/// Registers the three lessons and returns the s1 machine token.
async fn register_all(w: &World) -> String {
    let da1 = w.login("da1").await;
    let da2 = w.login("da2").await;
    let tok = w.machine_token(&da1, Some("s1")).await;
    let tok_d2 = w.machine_token(&da2, None).await;
    for (t, body) in [
        (&tok, room_lesson(w)),
        (&tok, live_lesson(w)),
        (&tok_d2, s3_lesson()),
    ] {
        let r = w.machine(Method::POST, "/api/lessons", t, Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    tok
}

fn ids(r: &Resp) -> Vec<String> {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn audit_targets(w: &World, action: &str) -> Vec<String> {
    w.store
        .list_audit(&AuditFilter {
            action: Some(action.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.target)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Registration of live lessons

async fn live_registrations_are_validated_and_kept(w: World) {
    let da1 = w.login("da1").await;
    let tok = w.machine_token(&da1, Some("s1")).await;
    let base = live_lesson(&w);
    type Edit = Box<dyn Fn(&mut Value) + Send + Sync>;
    let cases: Vec<(&str, Edit)> = vec![
        ("kind", Box::new(|b| b["kind"] = json!("studio"))),
        (
            "pairing_id",
            Box::new(|b| b["pairing_id"] = json!("p_nope")),
        ),
        (
            "speech",
            Box::new(|b| b["speech"]["tracks"][0]["segments"] = json!([[5, 1]])),
        ),
        (
            "speech",
            Box::new(|b| b["speech"]["tracks"][0]["role"] = json!("pupil")),
        ),
        (
            "speech",
            Box::new(|b| b["speech"]["duration_ms"] = json!("long")),
        ),
        (
            "media",
            Box::new(|b| b["media"]["review"] = json!("secret.txt")),
        ),
        (
            "media",
            Box::new(|b| b["media"]["sources"][0]["kind"] = json!("smell")),
        ),
        (
            "media",
            Box::new(|b| b["media"]["poster"] = json!("../outside.txt")),
        ),
    ];
    for (field, edit) in &cases {
        let mut b = base.clone();
        edit(&mut b);
        let r = w.machine(Method::POST, "/api/lessons", &tok, Some(b)).await;
        assert_eq!(
            (r.status, r.json()["field"].as_str().unwrap_or("")),
            (StatusCode::UNPROCESSABLE_ENTITY, *field),
            "{}",
            r.text()
        );
    }
    assert!(w.store.find_lesson("les_live1").await.unwrap().is_none());
    // A room lesson must still come from a recording classroom.
    let mut b = base.clone();
    b["kind"] = json!("room");
    let r = w.machine(Method::POST, "/api/lessons", &tok, Some(b)).await;
    assert_eq!(r.json()["field"], "classroom_id", "{}", r.text());

    let r = w
        .machine(Method::POST, "/api/lessons", &tok, Some(base.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let l = r.json();
    assert_eq!(
        (&l["kind"], &l["pairing_id"], &l["published"]),
        (&json!("live"), &json!("p1"), &json!(true))
    );
    assert_eq!(
        (&l["review_count"], &l["final_score"]),
        (&json!(0), &Value::Null)
    );
    let row = w.store.find_lesson("les_live1").await.unwrap().unwrap();
    assert_eq!(row.kind, LessonKind::Live);
    assert_eq!(
        row.metadata["speech"], base["speech"],
        "speech kept as posted"
    );
    // A retry is still a retry.
    let r = w
        .machine(Method::POST, "/api/lessons", &tok, Some(base))
        .await;
    assert_eq!(r.status, StatusCode::OK);
}
on_both!(
    live_registrations_are_validated_and_kept,
    flavor = "multi_thread",
    worker_threads = 2
);

// ---------------------------------------------------------------------------------------------
// Scope, reviewers, publishing

async fn put_reviewers(w: &World, c: &Client, ids: Value) -> Resp {
    w.send(
        c,
        Method::PUT,
        "/api/lessons/les_room1/reviewers",
        Some(json!({ "reviewer_ids": ids })),
    )
    .await
}

async fn lessons_are_seen_in_scope_only(w: World) {
    register_all(&w).await;
    let get = |who: &'static str, id: &'static str| {
        let w = &w;
        async move {
            let c = w.login(who).await;
            w.get(&c, &format!("/api/lessons/{id}")).await.status
        }
    };
    // A room lesson: its school and the district; not the paired school, not another district,
    // not a classroom login, not an unassigned reviewer.
    for (who, want) in [
        ("t1", StatusCode::OK),
        ("t9", StatusCode::OK),
        ("sa1", StatusCode::OK),
        ("da1", StatusCode::OK),
        ("t2", StatusCode::NOT_FOUND),
        ("sa2", StatusCode::NOT_FOUND),
        ("t4", StatusCode::NOT_FOUND),
        ("rv", StatusCode::NOT_FOUND),
        ("room-c1", StatusCode::NOT_FOUND),
        ("da2", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(
            get(who, "les_room1").await,
            want,
            "{who} on the room lesson"
        );
    }
    // A live lesson: the paired school too, but not a school outside the pairing.
    for (who, want) in [
        ("t1", StatusCode::OK),
        ("t2", StatusCode::OK),
        ("sa2", StatusCode::OK),
        ("t4", StatusCode::NOT_FOUND),
        ("rv", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(
            get(who, "les_live1").await,
            want,
            "{who} on the live lesson"
        );
    }

    // Assigning reviewers: the school admin may, a teacher of the school may not (403), the
    // paired school's teacher cannot even see the room lesson (404).
    let sa1 = w.login("sa1").await;
    let t1 = w.login("t1").await;
    let t2 = w.login("t2").await;
    let put = |c, ids| put_reviewers(&w, c, ids);
    assert_eq!(put(&t1, json!(["rv"])).await.status, StatusCode::FORBIDDEN);
    assert_eq!(put(&t2, json!(["rv"])).await.status, StatusCode::NOT_FOUND);
    for bad in [json!(["room-c1"]), json!(["rvx"]), json!(["nobody"])] {
        let r = put(&sa1, bad.clone()).await;
        assert_eq!(
            (r.status, r.json()["field"].clone()),
            (StatusCode::UNPROCESSABLE_ENTITY, json!("reviewer_ids")),
            "{bad}"
        );
    }
    assert!(
        audit_targets(&w, "lesson_reviewers_assigned")
            .await
            .is_empty()
    );
    let r = put(&sa1, json!(["rv", "t2", "rv"])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let assigned: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reviewer_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(assigned, ["rv", "t2"]);
    assert_eq!(
        audit_targets(&w, "lesson_reviewers_assigned").await,
        ["lesson:les_room1"]
    );
    assert_eq!(
        get("rv", "les_room1").await,
        StatusCode::OK,
        "assigned reviewer"
    );
    assert_eq!(
        get("t2", "les_room1").await,
        StatusCode::OK,
        "assigned teacher"
    );
    assert_eq!(get("rv2", "les_room1").await, StatusCode::NOT_FOUND);
    let rv = w.login("rv").await;
    assert_eq!(ids(&w.get(&rv, "/api/lessons").await), ["les_room1"]);
    let r = w.get(&rv, "/api/lessons/les_room1/reviewers").await;
    assert_eq!(r.json()[0]["name"], "教研员甲");

    // Unpublishing hides the live lesson from all but the school's admin and the district.
    let r = w
        .send(&t1, Method::POST, "/api/lessons/les_live1/unpublish", None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w
        .send(&sa1, Method::POST, "/api/lessons/les_live1/unpublish", None)
        .await;
    assert_eq!(
        (r.status, &r.json()["published"]),
        (StatusCode::OK, &json!(false))
    );
    assert_eq!(
        audit_targets(&w, "lesson_unpublished").await,
        ["lesson:les_live1"]
    );
    for (who, want) in [
        ("t1", StatusCode::NOT_FOUND),
        ("t2", StatusCode::NOT_FOUND),
        ("sa2", StatusCode::NOT_FOUND),
        ("sa1", StatusCode::OK),
        ("da1", StatusCode::OK),
    ] {
        assert_eq!(
            get(who, "les_live1").await,
            want,
            "{who} on the hidden lesson"
        );
    }
    assert_eq!(ids(&w.get(&t1, "/api/lessons").await), ["les_room1"]);
    assert_eq!(
        ids(&w.get(&sa1, "/api/lessons").await),
        ["les_live1", "les_room1"]
    );
    let r = w
        .send(&sa1, Method::POST, "/api/lessons/les_live1/publish", None)
        .await;
    assert_eq!(r.json()["published"], true);
    assert_eq!(
        audit_targets(&w, "lesson_published").await,
        ["lesson:les_live1"]
    );
    assert_eq!(get("t2", "les_live1").await, StatusCode::OK);

    // Deleting: the school admin; afterwards 404 and the files are gone.
    let r = w
        .send(&t1, Method::DELETE, "/api/lessons/les_room1", None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w
        .send(&t2, Method::DELETE, "/api/lessons/les_live1", None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a paired reader may not delete"
    );
    assert!(w.lesson_dir("les_room1").join("programme-1.mp4").exists());
    let r = w
        .send(&sa1, Method::DELETE, "/api/lessons/les_room1", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(get("sa1", "les_room1").await, StatusCode::NOT_FOUND);
    assert!(
        !w.lesson_dir("les_room1").exists(),
        "its directory is removed"
    );
    assert!(w.lesson_dir("les_live1").exists(), "another lesson's stays");
    assert!(
        w.store
            .list_review_assignments("les_room1")
            .await
            .unwrap()
            .is_empty(),
        "assignments cascade"
    );
    assert_eq!(
        audit_targets(&w, "lesson_deleted").await,
        ["lesson:les_room1"]
    );
}
on_both!(
    lessons_are_seen_in_scope_only,
    flavor = "multi_thread",
    worker_threads = 2
);

async fn the_listing_filters_and_summarises_reviews(w: World) {
    register_all(&w).await;
    let da1 = w.login("da1").await;
    let list = |q: &str| {
        let w = &w;
        let da1 = &da1;
        let q = q.to_owned();
        async move { ids(&w.get(da1, &format!("/api/lessons{q}")).await) }
    };
    assert_eq!(list("").await, ["les_live1", "les_room1"]);
    assert_eq!(list("?kind=live").await, ["les_live1"]);
    assert_eq!(list("?kind=room").await, ["les_room1"]);
    assert_eq!(list("?pairing_id=p1").await, ["les_live1"]);
    assert_eq!(list("?school_id=s1&classroom_id=r1").await, ["les_room1"]);
    assert_eq!(
        list("?teacher=%E6%9D%8E%E8%80%81%E5%B8%88").await,
        ["les_live1", "les_room1"],
        "teacher=李老师"
    );
    assert!(list("?teacher=%E7%8E%8B").await.is_empty(), "teacher=王");
    assert_eq!(
        list("?subject=%E6%95%B0%E5%AD%A6&from=2026-03-03&to=2026-03-03").await,
        ["les_live1"]
    );
    // q: a substring of title, teacher or subject; % and _ are literal.
    assert_eq!(
        list("?q=%E5%88%86%E6%95%B0%E7%9A%84%E6%84%8F%E4%B9%89").await,
        ["les_live1"],
        "q=分数的意义"
    );
    assert_eq!(list("?q=100%25").await, ["les_room1"], "q=100%");
    assert!(
        list("?q=1_0").await.is_empty(),
        "q=1_0 matches no '_' literally"
    );
    let r = w.get(&da1, "/api/lessons?kind=studio").await;
    assert_eq!(r.json()["field"], "kind");
    // The paired school's teacher lists the live lesson only; another district nothing.
    let t2 = w.login("t2").await;
    assert_eq!(ids(&w.get(&t2, "/api/lessons").await), ["les_live1"]);
    let da2 = w.login("da2").await;
    assert_eq!(ids(&w.get(&da2, "/api/lessons").await), ["les_s3"]);

    // Two reviews (totals 80 and 91): count 2, final score their mean.
    w.exec(
        "INSERT INTO rubrics (id, district_id, name, items, bands, is_default, created_by, created_at) \
         VALUES ('rub_1', 'd1', '优课', '[]', '[]', 1, 'da1', '2026-03-01T00:00:00Z')",
    )
    .await;
    for (reviewer, total) in [("rv", 80), ("rv2", 91)] {
        w.exec(&format!(
            "INSERT INTO reviews (lesson_id, reviewer_id, rubric_id, scores, total, evaluation, updated_at) \
             VALUES ('les_live1', '{reviewer}', 'rub_1', '{{}}', {total}, '{{}}', '2026-03-05T00:00:00Z')"
        ))
        .await;
    }
    let all = w.get(&da1, "/api/lessons").await.json();
    assert_eq!(all[0]["id"], "les_live1");
    assert_eq!(all[0]["review_count"], 2);
    assert_eq!(all[0]["final_score"], 85.5);
    assert_eq!(
        (&all[1]["review_count"], &all[1]["final_score"]),
        (&json!(0), &Value::Null)
    );
    let one = w.get(&da1, "/api/lessons/les_live1").await.json();
    assert_eq!(one["final_score"], 85.5);
}
on_both!(
    the_listing_filters_and_summarises_reviews,
    flavor = "multi_thread",
    worker_threads = 2
);

// ---------------------------------------------------------------------------------------------
// Signed media

async fn media_is_served_by_signed_url_with_ranges(w: World) {
    register_all(&w).await;
    let t2 = w.login("t2").await;
    let r = w.get(&t2, "/api/lessons/les_live1/media").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let m = r.json();
    let now = Utc::now().timestamp() as u64;
    let exp = m["expires_at"].as_u64().unwrap();
    assert!(
        (now + 4 * 3600 - 5..=now + 4 * 3600 + 5).contains(&exp),
        "default 4 h"
    );
    let review = m["review"]["url"].as_str().unwrap().to_owned();
    assert!(
        review.starts_with("/media/les_live1/review.mp4?exp="),
        "{review}"
    );
    assert_eq!(m["storyboard"]["columns"], 10);
    assert_eq!(m["sources"][0]["offset_ms"], 1200);
    assert_eq!(m["sources"][0]["id"], "teacher/camera");

    // The whole file, then ranges: exact bytes, 206 with Content-Range.
    let all = review_bytes();
    let r = w.fetch(Method::GET, &review, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, all);
    assert_eq!(r.header(header::CONTENT_TYPE), "video/mp4");
    assert_eq!(r.header(header::ACCEPT_RANGES), "bytes");
    let cc = r.header(header::CACHE_CONTROL);
    let max_age: u64 = cc
        .strip_prefix("private, max-age=")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{cc}"));
    assert!(max_age <= exp - now + 1 && max_age > 3600, "{cc}");
    for (range, start, end) in [
        ("bytes=100-199", 100, 199),
        ("bytes=9990-", 9990, 9999),
        ("bytes=-10", 9990, 9999),
        ("bytes=9000-20000", 9000, 9999),
    ] {
        let r = w.fetch(Method::GET, &review, Some(range)).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            r.header(header::CONTENT_RANGE),
            format!("bytes {start}-{end}/{REVIEW_BYTES}")
        );
        assert_eq!(r.body, &all[start..=end], "{range}");
        assert_eq!(
            r.header(header::CONTENT_LENGTH),
            (end - start + 1).to_string()
        );
    }
    let r = w.fetch(Method::GET, &review, Some("bytes=10000-")).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header(header::CONTENT_RANGE), "bytes */10000");
    assert!(r.body.is_empty());
    let r = w.fetch(Method::HEAD, &review, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_LENGTH), "10000");
    assert!(r.body.is_empty());

    // The HLS playlist comes back with signed segment URIs that work.
    let hls = m["hls"]["url"].as_str().unwrap();
    let r = w.fetch(Method::GET, hls, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header(header::CONTENT_TYPE),
        "application/vnd.apple.mpegurl"
    );
    let seg = r
        .text()
        .lines()
        .find(|l| l.starts_with("seg-1.m4s?exp="))
        .unwrap_or_else(|| panic!("{}", r.text()))
        .to_owned();
    let r = w
        .fetch(Method::GET, &format!("/media/les_live1/hls/{seg}"), None)
        .await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::OK, &b"segment one"[..])
    );
    assert_eq!(r.header(header::CONTENT_TYPE), "video/iso.segment");
    let r = w
        .fetch(Method::GET, m["poster_url"].as_str().unwrap(), None)
        .await;
    assert_eq!(r.header(header::CONTENT_TYPE), "image/jpeg");
    let r = w
        .fetch(Method::GET, m["sources"][0]["url"].as_str().unwrap(), None)
        .await;
    assert_eq!(
        (r.status, r.header(header::CONTENT_TYPE)),
        (StatusCode::OK, "video/webm".into())
    );

    // Expired: 403 `expired`, nothing served.
    let signer = &w.state.media;
    let past = now - 10;
    let url = format!(
        "/media/les_live1/review.mp4?{}",
        signer.query("les_live1", "review.mp4", past)
    );
    let r = w.fetch(Method::GET, &url, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "expired".into())
    );
    assert!(r.body.len() < 500 && !r.body.windows(20).any(|w| w == &all[0..20]));
    // Tampered: another signature, another file, a later expiry, no signature.
    let (path, query) = review.split_once('?').unwrap();
    let flipped = {
        let mut q = query.to_owned();
        let last = q.pop().unwrap();
        q.push(if last == '0' { '1' } else { '0' });
        q
    };
    let later = query.replace(&format!("exp={exp}"), &format!("exp={}", exp + 3600));
    for url in [
        format!("{path}?{flipped}"),
        format!("/media/les_live1/secret.txt?{query}"),
        format!("/media/les_live1/review.mp4?{later}"),
        path.to_owned(),
        format!("/media/les_room1/review.mp4?{query}"),
    ] {
        let r = w.fetch(Method::GET, &url, None).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "forbidden".into()),
            "{url}"
        );
    }
    // Climbing out is refused before anything else, even when signed; an unregistered file in
    // the archive is not served even with a valid signature.
    for climb in ["../outside.txt", "hls/../../outside.txt"] {
        let url = format!(
            "/media/les_live1/{climb}?{}",
            signer.query("les_live1", climb, exp)
        );
        let r = w.fetch(Method::GET, &url, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{climb}");
        assert!(!r.text().contains("outside the archive"));
    }
    let r = w
        .fetch(
            Method::GET,
            &format!("/media/les_live1/hls/%2E%2E/%2E%2E/outside.txt?{query}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "percent-encoded ..");
    let url = format!(
        "/media/les_live1/secret.txt?{}",
        signer.query("les_live1", "secret.txt", exp)
    );
    assert_eq!(
        w.fetch(Method::GET, &url, None).await.status,
        StatusCode::NOT_FOUND
    );
    // Out of scope: 404; object storage: 501.
    let t4 = w.login("t4").await;
    assert_eq!(
        w.get(&t4, "/api/lessons/les_live1/media").await.status,
        StatusCode::NOT_FOUND
    );
    let da2 = w.login("da2").await;
    let r = w.get(&da2, "/api/lessons/les_s3/media").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_IMPLEMENTED, "not_implemented".into())
    );
    // A room lesson without a media block plays its programme file.
    let t1 = w.login("t1").await;
    let m = w.get(&t1, "/api/lessons/les_room1/media").await.json();
    let r = w
        .fetch(
            Method::GET,
            m["review"]["url"].as_str().unwrap(),
            Some("bytes=0-3"),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &all[0..4])
    );
}
on_both!(
    media_is_served_by_signed_url_with_ranges,
    flavor = "multi_thread",
    worker_threads = 2
);

// ---------------------------------------------------------------------------------------------
// Clips

/// Writes `CLIP:<start>-<end>` to the output and reports progress in 0.1 % steps; fails when the
/// course is `FAIL`.
#[derive(Default)]
struct FakeRenderer {
    jobs: Mutex<Vec<ClipJob>>,
    reports: Mutex<usize>,
}

impl ClipRenderer for FakeRenderer {
    fn render(&self, job: ClipJob, progress: &dyn Fn(f32)) -> Result<(), String> {
        self.jobs.lock().unwrap().push(job.clone());
        if job.title.course == "FAIL" {
            return Err("编码器出错 / encoder failed".into());
        }
        for i in 0..=1000 {
            progress(i as f32 / 1000.0);
            *self.reports.lock().unwrap() += 1;
        }
        std::fs::write(&job.output, format!("CLIP:{}-{}", job.start_ms, job.end_ms))
            .map_err(|e| e.to_string())
    }
}

fn clip_body(start: i64, end: i64, course: &str) -> Value {
    json!({"start_ms": start, "end_ms": end, "course": course, "grade": "五年级",
           "edition": "人教版", "teacher": "李老师", "school": "城关小学"})
}

async fn wait_clip(w: &World, c: &Client, id: &str) -> Value {
    for _ in 0..200 {
        let v = w.get(c, &format!("/api/clips/{id}")).await.json();
        if v["state"] == "done" || v["state"] == "failed" {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("clip {id} did not finish");
}

async fn clips_render_in_the_background(w: World) {
    register_all(&w).await;
    let t1 = w.login("t1").await;
    let path = "/api/lessons/les_live1/clips";
    // No renderer: 503, nothing recorded.
    let r = w
        .send(
            &t1,
            Method::POST,
            path,
            Some(clip_body(60_000, 120_000, "数学")),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
    let fake = Arc::new(FakeRenderer::default());
    assert!(w.state.set_clip_renderer(fake.clone()).is_ok());
    // Bad ranges and titles: 422 with the field, nothing recorded.
    let lesson_ms = 45 * 60 * 1000;
    for (body, field) in [
        (clip_body(-1, 10_000, "数学"), "start_ms"),
        (clip_body(lesson_ms, lesson_ms + 5_000, "数学"), "start_ms"),
        (clip_body(10_000, lesson_ms + 1, "数学"), "end_ms"),
        (clip_body(10_000, 10_500, "数学"), "end_ms"),
        (clip_body(10_000, 5_000, "数学"), "end_ms"),
        (clip_body(10_000, 20_000, " "), "course"),
        (clip_body(10_000, 20_000, &"长".repeat(101)), "course"),
    ] {
        let r = w.send(&t1, Method::POST, path, Some(body.clone())).await;
        assert_eq!(
            (r.status, r.json()["field"].clone()),
            (StatusCode::UNPROCESSABLE_ENTITY, json!(field)),
            "{body}"
        );
    }
    assert_eq!(w.get(&t1, path).await.json(), json!([]));
    assert!(fake.jobs.lock().unwrap().is_empty());
    // Who: the paired school's teacher reads the lesson but may not export (403); a teacher of
    // the school who is not the lesson's teacher neither; outside the scope 404.
    for (who, want) in [
        ("t2", StatusCode::FORBIDDEN),
        ("t9", StatusCode::FORBIDDEN),
        ("t4", StatusCode::NOT_FOUND),
    ] {
        let c = w.login(who).await;
        let r = w
            .send(&c, Method::POST, path, Some(clip_body(0, 10_000, "数学")))
            .await;
        assert_eq!(r.status, want, "{who}");
    }

    // The lesson's teacher: 202, then done with a download that works.
    let r = w
        .send(
            &t1,
            Method::POST,
            path,
            Some(clip_body(60_000, 120_000, "数学")),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert!(r.json()["url"].is_null());
    let done = wait_clip(&w, &t1, &id).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["progress"], 1.0);
    assert_eq!(done["title_card"]["edition"], "人教版");
    let job = fake.jobs.lock().unwrap()[0].clone();
    assert_eq!(job.input, w.lesson_dir("les_live1").join("review.mp4"));
    assert_eq!((job.start_ms, job.end_ms), (60_000, 120_000));
    assert_eq!(job.title.school, "城关小学");
    let url = done["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("/media/clips/{id}?exp=")), "{url}");
    let r = w.fetch(Method::GET, url, None).await;
    assert_eq!(
        (r.status, r.text()),
        (StatusCode::OK, "CLIP:60000-120000".into())
    );
    assert!(r.header(header::CONTENT_DISPOSITION).contains("attachment"));
    let r = w.fetch(Method::GET, url, Some("bytes=0-3")).await;
    assert_eq!(
        (r.status, r.text()),
        (StatusCode::PARTIAL_CONTENT, "CLIP".into())
    );
    assert_eq!(
        audit_targets(&w, "clip_requested").await,
        ["lesson:les_live1"]
    );
    // A reader of the lesson sees the clip; a stranger does not.
    let t2 = w.login("t2").await;
    assert_eq!(
        w.get(&t2, &format!("/api/clips/{id}")).await.status,
        StatusCode::OK
    );
    assert_eq!(w.get(&t2, path).await.json()[0]["id"], id.as_str());
    let t4 = w.login("t4").await;
    assert_eq!(
        w.get(&t4, &format!("/api/clips/{id}")).await.status,
        StatusCode::NOT_FOUND
    );

    // A failing render is stored with its message.
    let sa1 = w.login("sa1").await;
    let r = w
        .send(&sa1, Method::POST, path, Some(clip_body(0, 30_000, "FAIL")))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let failed = wait_clip(&w, &sa1, r.json()["id"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("encoder failed"));
    assert!(failed["url"].is_null());

    // Deleting the lesson removes its clips' files.
    let file = w.store.find_clip(&id).await.unwrap().unwrap().file.unwrap();
    assert!(Path::new(&file).exists());
    let r = w
        .send(&sa1, Method::DELETE, "/api/lessons/les_live1", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!Path::new(&file).exists());
    assert!(w.store.find_clip(&id).await.unwrap().is_none());
    assert_eq!(
        w.fetch(Method::GET, url, None).await.status,
        StatusCode::NOT_FOUND
    );
}
on_both!(
    clips_render_in_the_background,
    flavor = "multi_thread",
    worker_threads = 2
);

// ---------------------------------------------------------------------------------------------
// Live sessions

async fn live_sessions_list_open_rooms_with_recorder_tokens(w: World) {
    let now = Utc::now();
    let today = now.with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    // k1: the teacher is in (and a recorder); k2: only a recorder; k1 yesterday: everyone left.
    for (id, series, date, who, role, left) in [
        ("att_1", "k1", today, "t1", "lead", None),
        ("att_2", "k1", today, "rec", "recorder", None),
        ("att_3", "k2", today, "rec", "recorder", None),
        (
            "att_4",
            "k1",
            today - Duration::days(1),
            "t1",
            "lead",
            Some(now - Duration::hours(20)),
        ),
    ] {
        w.store
            .record_join(&AttendanceRow {
                id: id.into(),
                series_id: series.into(),
                date,
                participant: who.into(),
                role: role.into(),
                joined_at: now - Duration::minutes(5),
                left_at: left,
            })
            .await
            .unwrap();
    }
    let da1 = w.login("da1").await;
    let da2 = w.login("da2").await;
    let room = format!("k1-{today}");
    let r = w.get(&da1, "/api/live/sessions").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let list = r.json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let s = &list[0];
    assert_eq!(s["room"], room.as_str());
    assert_eq!(
        (
            &s["teacher"],
            &s["subject"],
            &s["lead_classroom_id"],
            &s["school_id"],
            &s["pairing_id"]
        ),
        (
            &json!("李老师"),
            &json!("数学"),
            &json!("c1"),
            &json!("s1"),
            &json!("p1")
        )
    );
    assert_eq!(s["title"], "数学 · 教室 c1");
    let claims = w
        .state
        .key
        .verify(s["token"].as_str().unwrap(), now.timestamp() as u64)
        .expect("a valid join token");
    assert_eq!(claims.role, LiveRole::Recorder);
    assert_eq!(claims.room.0, room);
    let ttl = claims.exp - claims.iat;
    assert!((7190..=7210).contains(&ttl), "2 h, got {ttl}");

    // Machine tokens: the district's and the lead school's see it; a receiving school's does
    // not (it would receive another school's class unseen), nor another school's.
    for (school, n) in [(None, 1), (Some("s1"), 1), (Some("s2"), 0), (Some("s4"), 0)] {
        let tok = w.machine_token(&da1, school).await;
        let r = w
            .machine(Method::GET, "/api/live/sessions", &tok, None)
            .await;
        assert_eq!(
            r.json().as_array().map(Vec::len),
            Some(n),
            "{school:?}: {}",
            r.text()
        );
    }
    let r = w.get(&da2, "/api/live/sessions").await;
    assert_eq!(r.json(), json!([]), "another district");
    for who in ["t1", "sa1", "rv"] {
        let c = w.login(who).await;
        assert_eq!(
            w.get(&c, "/api/live/sessions").await.status,
            StatusCode::FORBIDDEN,
            "{who}"
        );
    }
}
on_both!(
    live_sessions_list_open_rooms_with_recorder_tokens,
    flavor = "multi_thread",
    worker_threads = 2
);
