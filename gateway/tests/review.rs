//! Lesson observation (听评课) through the router without sockets, on SQLite and on PostgreSQL:
//! rubrics, comments (旁评), score sheets with the final mean and band, and S-T analysis from the
//! speech activity a lesson registers with. Every refused request is checked to have changed
//! nothing.
//!
//! The world: district d1 with school s1 (recording classroom r1) and school s2, district d2
//! with school s3. A lesson `les_st` of r1 lasting 45 min is registered by s1's machine token
//! with a constructed speech activity; reviewers rv and rv2 are assigned to it, rv3 is not.

mod common;

use axum::http::{Method, StatusCode};
use chrono::Utc;
use common::{Api, Client, PW, Resp, on_both};
use duet_gateway::GatewayConfig;
use duet_gateway::auth::password;
use duet_gateway::store::*;
use serde_json::{Value, json};
use sqlx::Connection;

/// The lesson: 00:55 to 01:40, 45 min.
const LESSON_MS: u64 = 45 * 60 * 1000;

struct World {
    api: Api,
    store: Store,
    /// The database's URL, for writing rows no API of this module writes.
    url: String,
}

impl std::ops::Deref for World {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

async fn run<F, Fut>(postgres: bool, body: F)
where
    F: FnOnce(World) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    common::run(
        postgres,
        "review",
        async |store, url, _| World::new(store, url).await,
        body,
    )
    .await;
}

impl Resp {
    fn field(&self) -> String {
        self.json()["field"].as_str().unwrap_or("").to_owned()
    }
}

impl World {
    async fn new(store: Store, url: String) -> World {
        let now = Utc::now();
        for (id, name) in [("d1", "城关区"), ("d2", "山南区")] {
            store
                .create_district(&DistrictRow {
                    id: id.into(),
                    name: name.into(),
                })
                .await
                .unwrap();
        }
        for (id, d) in [("s1", "d1"), ("s2", "d1"), ("s3", "d2")] {
            store
                .create_school(&SchoolRow {
                    id: id.into(),
                    district_id: d.into(),
                    name: format!("学校 {id}"),
                    kind: SchoolKind::Urban,
                })
                .await
                .unwrap();
        }
        store
            .create_classroom(&ClassroomRow {
                id: "r1".into(),
                school_id: "s1".into(),
                name: "录播教室".into(),
                kind: ClassroomKind::Recording,
                devices: json!([]),
            })
            .await
            .unwrap();
        let hash = password::hash(PW);
        for (id, role, district, school) in [
            ("da1", Role::DistrictAdmin, "d1", None),
            ("da2", Role::DistrictAdmin, "d2", None),
            ("sa1", Role::SchoolAdmin, "d1", Some("s1")),
            ("sa2", Role::SchoolAdmin, "d1", Some("s2")),
            ("t1", Role::Teacher, "d1", Some("s1")),
            ("t2", Role::Teacher, "d1", Some("s2")),
            ("rv", Role::Reviewer, "d1", None),
            ("rv2", Role::Reviewer, "d1", None),
            ("rv3", Role::Reviewer, "d1", None),
        ] {
            store
                .create_user(&UserRow {
                    id: id.into(),
                    username: id.into(),
                    display_name: format!("{id} 老师"),
                    password_hash: hash.clone(),
                    role,
                    district_id: Some(district.into()),
                    school_id: school.map(Into::into),
                    classroom_id: None,
                    disabled: false,
                    failed_logins: 0,
                    locked_until: None,
                    created_at: now,
                })
                .await
                .unwrap();
        }
        let config = GatewayConfig {
            demo: false,
            ..GatewayConfig::default()
        };
        assert_eq!(config.st_interval_ms, 30_000, "the documented default");
        World {
            api: Api::new(config, b"review test key, 16+ bytes", store.clone()),
            store,
            url,
        }
    }

    /// A call with a machine token as `bearer`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        client: Option<&Client>,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> Resp {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let extra: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.api.call(method, path, client, body, &extra).await
    }

    async fn put(&self, c: &Client, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(c), Some(body), None)
            .await
    }
    async fn delete(&self, c: &Client, path: &str) -> Resp {
        self.call(Method::DELETE, path, Some(c), None, None).await
    }

    /// Assigns `user` to review `lesson` (the assignment API belongs to another module; the row
    /// is what matters here).
    async fn assign(&self, lesson: &str, user: &str) {
        let mut conn = sqlx::AnyConnection::connect(&self.url).await.unwrap();
        sqlx::query(
            "INSERT INTO review_assignments (lesson_id, reviewer_id, assigned_by, assigned_at) \
             VALUES ($1, $2, 'da1', '2026-12-01T00:00:00.000000Z')",
        )
        .bind(lesson)
        .bind(user)
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }

    async fn audit_count(&self, action: &str) -> usize {
        self.store
            .list_audit(&AuditFilter {
                action: Some(action.into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .len()
    }
}

/// The constructed speech activity of `les_st` (30 s samples, 90 of them): the lead teacher
/// talks for the first 15 min (samples 0..30), then teacher and pupils of room A take turns
/// every 30 s, the teacher first (even samples T, odd S). So at 30 s: 60 T, 30 S, 60 runs →
/// Rt = 2/3, Ch = 59/90: 对话型. At 60 s with D: 15 T then 30 D → Rt = 30/45, Ch = 2/45: 混合型.
fn speech() -> Value {
    let mut lead = vec![json!([0, 900_000])];
    let mut room = vec![];
    for k in 30u64..90 {
        let seg = json!([k * 30_000, (k + 1) * 30_000]);
        if k % 2 == 0 {
            lead.push(seg);
        } else {
            room.push(seg);
        }
    }
    json!({
        "tracks": [
            {"source_id": "teacher/microphone", "role": "lead", "label": "主讲教师", "segments": lead},
            {"source_id": "room-a/microphone", "role": "receiving", "label": "接收课堂 A", "segments": room}
        ],
        "duration_ms": LESSON_MS
    })
}

fn lesson(id: &str, speech: Option<Value>) -> Value {
    let mut l = json!({
        "id": id,
        "classroom_id": "r1",
        "title": "数学 · 第一课",
        "teacher": "李老师",
        "subject": "数学",
        "started_at": "2026-03-02T00:55:00Z",
        "ended_at": "2026-03-02T01:40:00Z",
        "archive_uri": format!("file:///archive/r1/{id}/"),
        "files": [{"name": "review.mp4", "kind": "programme", "bytes": 1000, "duration_s": 2700.0, "sha256": "ab".repeat(32)}],
        "parts": 1
    });
    if let Some(s) = speech {
        l["speech"] = s;
    }
    l
}

/// Logs in da1, issues s1's machine token, registers `les_st` (with speech) and `les_quiet`
/// (without), assigns rv and rv2 to both.
async fn setup(w: &World) {
    let da1 = w.login("da1").await;
    let r = w
        .post(
            &da1,
            "/api/tokens",
            json!({"name": "录播主机", "school_id": "s1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    for body in [lesson("les_st", Some(speech())), lesson("les_quiet", None)] {
        let r = w
            .call(Method::POST, "/api/lessons", None, Some(body), Some(&token))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    // A malformed speech activity is refused with the field named; no lesson, no result.
    let mut bad = speech();
    bad["tracks"][0]["role"] = json!("janitor");
    let r = w
        .call(
            Method::POST,
            "/api/lessons",
            None,
            Some(lesson("les_bad", Some(bad))),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.field(), "speech");
    let mut backwards = speech();
    backwards["tracks"][1]["segments"] = json!([[5000, 4000]]);
    let r = w
        .call(
            Method::POST,
            "/api/lessons",
            None,
            Some(lesson("les_bad", Some(backwards))),
            Some(&token),
        )
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "speech".into())
    );
    assert!(w.store.find_lesson("les_bad").await.unwrap().is_none());
    assert!(w.store.list_st_results("les_bad").await.unwrap().is_empty());
    for lesson in ["les_st", "les_quiet"] {
        w.assign(lesson, "rv").await;
        w.assign(lesson, "rv2").await;
    }
}

async fn every_review_endpoint_needs_a_login(w: World) {
    for (method, path) in [
        (Method::GET, "/api/rubrics"),
        (Method::POST, "/api/rubrics"),
        (Method::GET, "/api/lessons/x/comments"),
        (Method::POST, "/api/lessons/x/comments"),
        (Method::DELETE, "/api/lessons/x/comments/y"),
        (Method::PUT, "/api/lessons/x/my-review"),
        (Method::GET, "/api/lessons/x/reviews"),
        (Method::GET, "/api/lessons/x/st"),
        (Method::POST, "/api/lessons/x/st/recompute"),
        (Method::PUT, "/api/lessons/x/st/corrected"),
    ] {
        let body = (method != Method::GET).then(|| json!({}));
        let r = w.call(method.clone(), path, None, body, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}
on_both!(every_review_endpoint_needs_a_login);

async fn rubrics_default_first_and_bad_ones_refused(w: World) {
    let da1 = w.login("da1").await;
    let sa1 = w.login("sa1").await;
    let t1 = w.login("t1").await;
    // The district has none yet: the default is created lazily, once.
    assert!(w.store.list_rubrics("d1").await.unwrap().is_empty());
    for _ in 0..2 {
        let r = w.get(&t1, "/api/rubrics").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let list = r.json();
        assert_eq!(list.as_array().unwrap().len(), 1);
        let d = &list[0];
        assert_eq!(d["is_default"], true);
        assert_eq!(d["district_id"], "d1");
        let weights: Vec<u64> = d["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["weight"].as_u64().unwrap())
            .collect();
        assert_eq!(weights, vec![10, 15, 20, 20, 20, 10, 5]);
        assert_eq!(d["items"][0]["name"], "教学目标");
        let bands: Vec<(u64, &str)> = d["bands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["min"].as_u64().unwrap(), b["label"].as_str().unwrap()))
            .collect();
        assert_eq!(
            bands,
            vec![
                (90, "优秀"),
                (80, "良好"),
                (70, "中等"),
                (60, "合格"),
                (0, "不合格")
            ]
        );
    }
    let good = || {
        json!({
            "name": "课堂观察量表",
            "items": [{"key": "talk", "name": "师生对话", "weight": 60}, {"key": "tech", "name": "技术运用", "weight": 40}],
            "bands": [{"min": 85, "label": "优"}, {"min": 60, "label": "达标"}, {"min": 0, "label": "待改进"}]
        })
    };
    // (where in the body, what to put there, the field the refusal names)
    let cases = [
        ("/items/1/weight", json!(35), "items"),
        ("/items/1/weight", json!(140), "items"),
        (
            "/items",
            json!([{"key": "a", "name": "甲", "weight": 100}, {"key": "b", "name": "乙", "weight": 0}]),
            "items",
        ),
        ("/items/1/weight", json!(39.5), "items"),
        ("/items/1/weight", json!(-40), "items"),
        ("/items/1/key", json!("talk"), "items"),
        ("/items/1/key", json!("有 空格"), "items"),
        ("/items", json!([]), "items"),
        ("/bands/1/min", json!(85), "bands"),
        ("/bands/1/min", json!(90), "bands"),
        ("/bands/0/min", json!(101), "bands"),
        ("/bands", json!([]), "bands"),
        ("/name", json!("  "), "name"),
    ];
    for (at, value, field) in cases {
        let mut body = good();
        *body.pointer_mut(at).unwrap() = value;
        let r = w.post(&da1, "/api/rubrics", body.clone()).await;
        assert_eq!(
            (r.status, r.field()),
            (StatusCode::UNPROCESSABLE_ENTITY, field.to_string()),
            "{body}: {}",
            r.text()
        );
    }
    assert_eq!(
        w.store.list_rubrics("d1").await.unwrap().len(),
        1,
        "nothing stored"
    );
    // A teacher may not add one; a school admin may.
    let r = w.post(&t1, "/api/rubrics", good()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w.post(&sa1, "/api/rubrics", good()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["is_default"], false);
    let list = w.get(&da1, "/api/rubrics").await.json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["is_default"], true, "the default first");
    assert_eq!(list[1]["name"], "课堂观察量表");
    assert_eq!(w.audit_count("rubric_created").await, 1);
    // Another district sees only its own (its default).
    let da2 = w.login("da2").await;
    let list = w.get(&da2, "/api/rubrics").await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["district_id"], "d2");
}
on_both!(rubrics_default_first_and_bad_ones_refused);

async fn comments_sorted_by_time_and_only_from_those_who_may(w: World) {
    setup(&w).await;
    let rv = w.login("rv").await;
    let rv2 = w.login("rv2").await;
    let rv3 = w.login("rv3").await;
    let t1 = w.login("t1").await;
    let t2 = w.login("t2").await;
    let sa1 = w.login("sa1").await;
    let da2 = w.login("da2").await;
    let path = "/api/lessons/les_st/comments";
    for (at, category, body) in [
        (600_000, "issue", "提问后等待时间太短"),
        (60_000, "亮点", "导入自然，联系生活"),
        (1_200_000, "suggestion", "小组活动可以让接收课堂先汇报"),
    ] {
        let r = w
            .post(
                &rv,
                path,
                json!({"at_ms": at, "source_id": "room-a/camera", "category": category, "body": body}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        assert_eq!(r.json()["author"]["id"], "rv");
    }
    // The lesson's school admin comments too, at the very end of the lesson.
    let r = w
        .post(
            &sa1,
            path,
            json!({"at_ms": LESSON_MS, "category": "other", "body": "结束"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let stored = w.store.list_comments("les_st").await.unwrap().len();
    assert_eq!(stored, 4);

    // Refused, each changing nothing.
    let ok = json!({"at_ms": 1000, "category": "issue", "body": "x"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    for (body, field) in [
        (with("at_ms", json!(LESSON_MS + 1)), "at_ms"),
        (with("at_ms", json!(-1)), "at_ms"),
        (with("category", json!("praise")), "category"),
        (with("body", json!("   ")), "body"),
        (with("body", json!("长".repeat(2001))), "body"),
        (with("source_id", json!("../etc")), "source_id"),
    ] {
        let r = w.post(&rv, path, body.clone()).await;
        assert_eq!(
            (r.status, r.field()),
            (StatusCode::UNPROCESSABLE_ENTITY, field.to_string()),
            "{body}: {}",
            r.text()
        );
    }
    // A reviewer not assigned cannot see the lesson; a teacher of the school sees but may not
    // comment; another district and another school see nothing.
    let r = w.post(&rv3, path, ok.clone()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = w.post(&t1, path, ok.clone()).await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden"))
    );
    for c in [&da2, &t2] {
        let r = w.post(c, path, ok.clone()).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let r = w
        .post(&rv, "/api/lessons/les_nope/comments", ok.clone())
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        w.store.list_comments("les_st").await.unwrap().len(),
        4,
        "nothing stored"
    );
    assert_eq!(w.audit_count("review_comment_added").await, 4);

    // Read back sorted by time, by the lesson's teacher too.
    let r = w.get(&t1, path).await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json();
    let times: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["at_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(times, vec![60_000, 600_000, 1_200_000, LESSON_MS]);
    assert_eq!(
        list[0]["category"], "highlight",
        "the Chinese name is stored as its token"
    );
    assert_eq!(list[0]["category_label"], "亮点");
    assert_eq!(list[0]["author"]["name"], "rv 老师");
    assert_eq!(list[0]["source_id"], "room-a/camera");
    assert_eq!(w.get(&rv3, path).await.status, StatusCode::NOT_FOUND);

    // Only the author deletes.
    let first = list[0]["id"].as_str().unwrap().to_owned();
    let one = format!("{path}/{first}");
    assert_eq!(w.delete(&rv2, &one).await.status, StatusCode::FORBIDDEN);
    assert_eq!(w.delete(&sa1, &one).await.status, StatusCode::FORBIDDEN);
    assert_eq!(w.store.list_comments("les_st").await.unwrap().len(), 4);
    let r = w.delete(&rv, &one).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(w.delete(&rv, &one).await.status, StatusCode::NOT_FOUND);
    // A comment id under another lesson is not found there.
    let second = list[1]["id"].as_str().unwrap();
    let r = w
        .delete(&rv, &format!("/api/lessons/les_quiet/comments/{second}"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(w.store.list_comments("les_st").await.unwrap().len(), 3);
}
on_both!(comments_sorted_by_time_and_only_from_those_who_may);

fn sheet(points: [u64; 7]) -> Value {
    let keys = [
        "goals",
        "strategy",
        "content",
        "method",
        "effect",
        "assessment",
        "literacy",
    ];
    let scores: serde_json::Map<String, Value> = keys
        .iter()
        .zip(points)
        .map(|(k, p)| ((*k).to_owned(), json!(p)))
        .collect();
    json!({
        "scores": scores,
        "evaluation": {"strengths": "目标清晰", "weaknesses": "互动偏少", "suggestions": "增加小组讨论", "summary": "整体良好"}
    })
}

async fn score_sheets_make_a_final_mean_and_band(w: World) {
    setup(&w).await;
    let rv = w.login("rv").await;
    let rv2 = w.login("rv2").await;
    let rv3 = w.login("rv3").await;
    let t1 = w.login("t1").await;
    let t2 = w.login("t2").await;
    let da2 = w.login("da2").await;
    let path = "/api/lessons/les_st/my-review";
    let reviews = "/api/lessons/les_st/reviews";
    // Before any sheet: no final, the default rubric.
    let r = w.get(&t1, reviews).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["final"], Value::Null);
    assert_eq!(r.json()["rubric"]["is_default"], true);

    let r = w.put(&rv, path, sheet([9, 14, 18, 18, 18, 9, 5])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        (r.json()["total"].clone(), r.json()["band"].clone()),
        (json!(91), json!("优秀"))
    );
    let mut with_rubric = sheet([8, 12, 16, 16, 16, 8, 4]);
    with_rubric["rubric_id"] = json!("rub_default_d1");
    let r = w.put(&rv2, path, with_rubric).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        (r.json()["total"].clone(), r.json()["band"].clone()),
        (json!(80), json!("良好"))
    );

    // The teacher of the lesson's school reads both and the final: (91 + 80) / 2 = 85.5 → 良好.
    let r = w.get(&t1, reviews).await;
    let v = r.json();
    assert_eq!(v["reviews"].as_array().unwrap().len(), 2);
    assert_eq!(v["final"]["count"], 2);
    assert_eq!(v["final"]["mean"], 85.5);
    assert_eq!(v["final"]["band"], "良好");
    assert_eq!(v["reviews"][0]["reviewer"]["name"], "rv 老师");
    assert_eq!(v["reviews"][0]["evaluation"]["summary"], "整体良好");
    assert_eq!(v["reviews"][0]["scores"]["content"], 18);
    // Another school's teacher and another district see nothing.
    assert_eq!(w.get(&t2, reviews).await.status, StatusCode::NOT_FOUND);
    assert_eq!(w.get(&da2, reviews).await.status, StatusCode::NOT_FOUND);

    // Bad sheets: refused, nothing changes.
    let before = w.store.list_reviews("les_st").await.unwrap();
    let mut missing = sheet([9, 14, 18, 18, 18, 9, 5]);
    missing["scores"]
        .as_object_mut()
        .unwrap()
        .remove("literacy");
    let mut unknown = sheet([9, 14, 18, 18, 18, 9, 5]);
    unknown["scores"]["charisma"] = json!(3);
    let mut fraction = sheet([9, 14, 18, 18, 18, 9, 5]);
    fraction["scores"]["goals"] = json!(8.5);
    let mut negative = sheet([9, 14, 18, 18, 18, 9, 5]);
    negative["scores"]["goals"] = json!(-1);
    let mut text = sheet([9, 14, 18, 18, 18, 9, 5]);
    text["scores"]["goals"] = json!("9");
    for body in [
        sheet([11, 14, 18, 18, 18, 9, 5]),
        sheet([10, 15, 20, 20, 20, 10, 6]),
        missing,
        unknown,
        fraction,
        negative,
        text,
    ] {
        let r = w.put(&rv, path, body.clone()).await;
        assert_eq!(
            (r.status, r.field()),
            (StatusCode::UNPROCESSABLE_ENTITY, "scores".into()),
            "{body}: {}",
            r.text()
        );
    }
    // A rubric of another district is not one of this lesson's.
    assert_eq!(w.get(&da2, "/api/rubrics").await.status, StatusCode::OK);
    let mut foreign = sheet([9, 14, 18, 18, 18, 9, 5]);
    foreign["rubric_id"] = json!("rub_default_d2");
    let r = w.put(&rv, path, foreign).await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "rubric_id".into())
    );
    // Not assigned, or only a reader: refused.
    assert_eq!(
        w.put(&rv3, path, sheet([9, 14, 18, 18, 18, 9, 5]))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        w.put(&t1, path, sheet([9, 14, 18, 18, 18, 9, 5]))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        w.store.list_reviews("les_st").await.unwrap(),
        before,
        "nothing changed"
    );
    assert_eq!(w.audit_count("review_saved").await, 2);

    // A PUT replaces the reviewer's sheet: 100 and 80 → exactly 90 → 优秀 (the boundary holds).
    let r = w.put(&rv, path, sheet([10, 15, 20, 20, 20, 10, 5])).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = w.get(&t1, reviews).await.json();
    assert_eq!(
        v["reviews"].as_array().unwrap().len(),
        2,
        "one sheet per reviewer"
    );
    assert_eq!(
        (v["final"]["mean"].clone(), v["final"]["band"].clone()),
        (json!(90.0), json!("优秀"))
    );
    // 99 and 80 → 89.5 → 良好.
    w.put(&rv, path, sheet([10, 15, 20, 20, 20, 10, 4])).await;
    let v = w.get(&t1, reviews).await.json();
    assert_eq!(
        (v["final"]["mean"].clone(), v["final"]["band"].clone()),
        (json!(89.5), json!("良好"))
    );
    assert_eq!(w.audit_count("review_saved").await, 4);
}
on_both!(score_sheets_make_a_final_mean_and_band);

async fn st_analysis_is_automatic_recomputable_and_correctable(w: World) {
    setup(&w).await;
    let rv = w.login("rv").await;
    let t1 = w.login("t1").await;
    let da1 = w.login("da1").await;
    let path = "/api/lessons/les_st/st";

    // Automatic at registration, 30 s: 60 T, 30 S, 60 runs → Rt 2/3, Ch 59/90: 对话型.
    let r = w.get(&t1, path).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let auto = r.json()["automatic"].clone();
    assert_eq!(r.json()["corrected"], Value::Null);
    assert_eq!(auto["variant"], "st");
    assert_eq!(auto["interval_ms"], 30_000);
    assert_eq!(
        (auto["n"].clone(), auto["n_t"].clone(), auto["runs"].clone()),
        (json!(90), json!(60), json!(60))
    );
    assert!((auto["rt"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert!((auto["ch"].as_f64().unwrap() - 59.0 / 90.0).abs() < 1e-9);
    assert_eq!(auto["lesson_type"], "dialogue");
    assert_eq!(auto["lesson_type_label"], "对话型");
    let samples = auto["samples"].as_str().unwrap().to_owned();
    assert!(samples.starts_with(&"T".repeat(31)) && samples.ends_with("TSTS"));
    assert!((auto["shares"]["teacher"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert!((auto["shares"]["pupil"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert!(auto["shares"]["silence"].as_f64().unwrap().abs() < 1e-9);
    let curve = auto["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 90);
    assert_eq!(curve[0], json!([0, 0, 1]));
    assert_eq!(curve[89], json!([89 * 30_000, 30, 60]));
    assert_eq!(auto["author"], Value::Null);

    // Corrections: wrong length, bad codes, a D in the two-code variant → 422 samples.
    let corrected = format!("{path}/corrected");
    for (body, field) in [
        (
            json!({"interval_ms": 30_000, "variant": "st", "samples": "T".repeat(89)}),
            "samples",
        ),
        (
            json!({"interval_ms": 30_000, "variant": "st", "samples": "T".repeat(91)}),
            "samples",
        ),
        (
            json!({"interval_ms": 30_000, "variant": "st", "samples": format!("{}X", "T".repeat(89))}),
            "samples",
        ),
        (
            json!({"interval_ms": 30_000, "variant": "st", "samples": format!("{}D", "T".repeat(89))}),
            "samples",
        ),
        (
            json!({"interval_ms": 30_000, "variant": "st", "samples": ""}),
            "samples",
        ),
        (
            json!({"interval_ms": 45_000, "variant": "st", "samples": "T".repeat(61)}),
            "samples",
        ),
        (
            json!({"interval_ms": 999, "variant": "st", "samples": "T"}),
            "interval_ms",
        ),
        (
            json!({"interval_ms": 300_001, "variant": "st", "samples": "T"}),
            "interval_ms",
        ),
        (
            json!({"interval_ms": 30_000, "variant": "flanders", "samples": "T".repeat(90)}),
            "variant",
        ),
    ] {
        let r = w.put(&rv, &corrected, body.clone()).await;
        assert_eq!(
            (r.status, r.field()),
            (StatusCode::UNPROCESSABLE_ENTITY, field.to_string()),
            "{body}: {}",
            r.text()
        );
    }
    assert_eq!(
        w.put(
            &t1,
            &corrected,
            json!({"interval_ms": 30_000, "variant": "st", "samples": "T".repeat(90)})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        w.store.list_st_results("les_st").await.unwrap().len(),
        1,
        "nothing stored"
    );

    // A reviewer codes the first 20 samples as pupils' work: 70 T of 90, Rt 7/9 ≥ 0.7: 讲授型.
    let coded = format!("{}{}", "S".repeat(20), "T".repeat(70));
    let r = w
        .put(
            &rv,
            &corrected,
            json!({"interval_ms": 30_000, "variant": "st", "samples": coded}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["lesson_type"], "lecture");
    assert_eq!(r.json()["shares"], Value::Null);
    let v = w.get(&t1, path).await.json();
    assert_eq!(
        v["automatic"]["lesson_type"], "dialogue",
        "the automatic result is kept"
    );
    assert_eq!(v["corrected"]["samples"], coded);
    assert_eq!(v["corrected"]["author"]["id"], "rv");
    assert_eq!(v["corrected"]["author"]["name"], "rv 老师");
    assert_eq!(w.audit_count("st_corrected").await, 1);
    // At an interval without an automatic result, up to ⌈45 min / 45 s⌉ = 60 samples.
    let r = w
        .put(
            &da1,
            &corrected,
            json!({"interval_ms": 45_000, "variant": "std", "samples": "TD".repeat(30)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["n_d"], 30);

    // Recompute at 60 s with D: 15 T then 30 D → Rt 30/45, Ch 2/45: 混合型.
    let recompute = format!("{path}/recompute");
    for (body, field) in [
        (json!({"interval_ms": 500}), "interval_ms"),
        (json!({"interval_ms": 600_000}), "interval_ms"),
        (json!({"interval_ms": 60_000, "variant": "x"}), "variant"),
    ] {
        let r = w.post(&rv, &recompute, body).await;
        assert_eq!(
            (r.status, r.field()),
            (StatusCode::UNPROCESSABLE_ENTITY, field.to_string())
        );
    }
    assert_eq!(
        w.post(&t1, &recompute, json!({"interval_ms": 60_000}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = w
        .post(
            &rv,
            &recompute,
            json!({"interval_ms": 60_000, "variant": "std"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = w.get(&t1, path).await.json();
    let auto = &v["automatic"];
    assert_eq!(
        (auto["variant"].clone(), auto["interval_ms"].clone()),
        (json!("std"), json!(60_000))
    );
    assert_eq!(
        (auto["n"].clone(), auto["n_t"].clone(), auto["n_d"].clone()),
        (json!(45), json!(15), json!(30))
    );
    assert_eq!(
        auto["samples"],
        format!("{}{}", "T".repeat(15), "D".repeat(30))
    );
    assert!((auto["rt"].as_f64().unwrap() - 30.0 / 45.0).abs() < 1e-9);
    assert_eq!(auto["lesson_type"], "mixed");
    assert_eq!(v["corrected"]["n_d"], 30, "the correction stays beside it");
    assert_eq!(w.audit_count("st_recomputed").await, 1);

    // A lesson without speech activity: no result, and nothing to recompute from.
    let v = w.get(&t1, "/api/lessons/les_quiet/st").await.json();
    assert_eq!(v, json!({"automatic": null, "corrected": null}));
    let r = w
        .post(
            &rv,
            "/api/lessons/les_quiet/st/recompute",
            json!({"interval_ms": 30_000}),
        )
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "speech".into())
    );
    assert!(
        w.store
            .list_st_results("les_quiet")
            .await
            .unwrap()
            .is_empty()
    );
}
on_both!(st_analysis_is_automatic_recomputable_and_correctable);
