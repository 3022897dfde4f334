//! Store tests. Every body runs twice, through [`on_both`]: against a fresh SQLite file and
//! against a fresh PostgreSQL database, so the two backends are held to one behaviour.
//!
//! Isolation on PostgreSQL: each run creates its own database `duet_test_<16 random base32>`
//! through a connection to the `postgres` database, migrates it through [`Store::open`], and drops
//! it afterwards (`DROP DATABASE … WITH (FORCE)`), also when the body panics (the body runs in a
//! spawned task so its panic can be caught, the database dropped, and the panic resumed). A crash
//! of the test process itself can leave a `duet_test_*` database behind; they are harmless.
//!
//! The server is `postgres://postgres@127.0.0.1:5432` (trust auth) unless `DUET_TEST_PG_SERVER`
//! names another (no database in the URL). PostgreSQL tests never skip: if the server is not
//! reachable, the test fails and says how to start it.

mod accounts;
mod calendar;
mod org;
mod records;
mod schedule;
mod setup;

use std::future::Future;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};

use super::*;

/// The PostgreSQL server for tests, without a database name.
fn pg_server() -> String {
    std::env::var("DUET_TEST_PG_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Runs `body` against a fresh SQLite store, then against a fresh PostgreSQL store.
pub(super) async fn on_both<F, Fut>(body: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = TempDir::new();
    let store = Store::sqlite_in(&dir.0)
        .await
        .expect("SQLite store opens in a temp dir");
    resume_if_panicked("SQLite", run_body(store, &body).await);

    let db = PgTestDb::create().await;
    let outcome = match Store::open(&db.url).await {
        Ok(store) => Ok(run_body(store, &body).await),
        Err(e) => Err(e),
    };
    db.drop_db().await;
    let result = outcome.unwrap_or_else(|e| panic!("PostgreSQL store does not open: {e}"));
    resume_if_panicked("PostgreSQL", result);
}

/// Runs `body` on `store` in its own task (so a panic is caught), then closes the store.
async fn run_body<F, Fut>(store: Store, body: &F) -> Result<(), tokio::task::JoinError>
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let result = tokio::spawn(body(store.clone())).await;
    store.close().await;
    result
}

/// Re-raises the body's panic, after saying which backend it failed on.
fn resume_if_panicked(backend: &str, result: Result<(), tokio::task::JoinError>) {
    if let Err(error) = result {
        eprintln!("store test failed on {backend}");
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("store test on {backend} did not finish: {error}"),
        }
    }
}

/// A database of its own on the test PostgreSQL server.
struct PgTestDb {
    name: String,
    url: String,
}

impl PgTestDb {
    async fn create() -> PgTestDb {
        sqlx::any::install_default_drivers();
        let name = new_id("duet_test");
        let mut admin = Self::admin().await;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE for the test");
        admin.close().await.ok();
        let url = format!("{}/{name}", pg_server());
        PgTestDb { name, url }
    }

    /// A connection to the server's `postgres` database; fails the test with a how-to if the
    /// server is down.
    async fn admin() -> sqlx::AnyConnection {
        let url = format!("{}/postgres", pg_server());
        match sqlx::AnyConnection::connect(&url).await {
            Ok(conn) => conn,
            Err(e) => panic!(
                "PostgreSQL is not reachable at {url} ({e}). The store tests need it: start it \
                 with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
                 or set DUET_TEST_PG_SERVER to another server (postgres://user@host:port)."
            ),
        }
    }

    /// Drops the database, best effort (a failure is reported, not raised).
    async fn drop_db(&self) {
        let mut admin = Self::admin().await;
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = sqlx::query(AssertSqlSafe(drop)).execute(&mut admin).await {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
        admin.close().await.ok();
    }
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(new_id("duet-store-test"));
        std::fs::create_dir_all(&path).expect("temp dir can be created");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An instant from RFC 3339 text.
fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are valid RFC 3339")
        .with_timezone(&Utc)
}

/// A date from `YYYY-MM-DD`.
fn day(text: &str) -> NaiveDate {
    text.parse().expect("test dates are valid")
}

/// A time of day from `HH:MM`.
fn hm(text: &str) -> NaiveTime {
    NaiveTime::parse_from_str(text, "%H:%M").expect("test times are valid")
}

/// A small world most tests start from: one district with an urban and a rural school, a lead and
/// two receiving classrooms, a teacher, an admin, a subject and a term.
struct World {
    district: DistrictRow,
    urban: SchoolRow,
    rural: SchoolRow,
    lead_room: ClassroomRow,
    rural_room: ClassroomRow,
    rural_room_2: ClassroomRow,
    teacher: UserRow,
    admin: UserRow,
    subject: SubjectRow,
    term: TermRow,
}

impl World {
    async fn build(store: &Store) -> World {
        let district = DistrictRow {
            id: new_id(id_prefix::DISTRICT),
            name: "城关区".into(),
        };
        store.create_district(&district).await.expect("district");
        let urban = school(&district, "Central Primary", SchoolKind::Urban);
        let rural = school(&district, "Hill Village School", SchoolKind::Rural);
        for s in [&urban, &rural] {
            store.create_school(s).await.expect("school");
        }
        let lead_room = classroom(&urban, "Room 301", ClassroomKind::Lead);
        let rural_room = classroom(&rural, "Grade 3", ClassroomKind::Receiving);
        let rural_room_2 = classroom(&rural, "Grade 4", ClassroomKind::Receiving);
        for c in [&lead_room, &rural_room, &rural_room_2] {
            store.create_classroom(c).await.expect("classroom");
        }
        let teacher = user("wang", Role::Teacher, Some(&urban.id));
        let admin = user("admin", Role::DistrictAdmin, None);
        let admin = UserRow {
            district_id: Some(district.id.clone()),
            ..admin
        };
        for u in [&teacher, &admin] {
            store.create_user(u).await.expect("user");
        }
        let subject = SubjectRow {
            id: new_id(id_prefix::SUBJECT),
            district_id: district.id.clone(),
            name: "English".into(),
        };
        store.create_subject(&subject).await.expect("subject");
        let term = TermRow {
            id: new_id(id_prefix::TERM),
            district_id: district.id.clone(),
            name: "2025 autumn".into(),
            start_date: day("2025-09-01"),
            end_date: day("2026-01-16"),
        };
        store.create_term(&term).await.expect("term");
        World {
            district,
            urban,
            rural,
            lead_room,
            rural_room,
            rural_room_2,
            teacher,
            admin,
            subject,
            term,
        }
    }

    /// A series on Monday period 2 from the lead room to `receivers`, not yet stored.
    fn series(&self, receivers: &[&ClassroomRow]) -> SeriesRow {
        SeriesRow {
            id: new_id(id_prefix::SERIES),
            term_id: self.term.id.clone(),
            pairing_id: None,
            weekday: 1,
            period: 2,
            lead_classroom_id: self.lead_room.id.clone(),
            teacher_id: self.teacher.id.clone(),
            subject_id: self.subject.id.clone(),
            created_by: self.admin.id.clone(),
            created_at: at("2025-08-20T02:00:00Z"),
            receiver_ids: receivers.iter().map(|c| c.id.clone()).collect(),
        }
    }
}

fn school(district: &DistrictRow, name: &str, kind: SchoolKind) -> SchoolRow {
    SchoolRow {
        id: new_id(id_prefix::SCHOOL),
        district_id: district.id.clone(),
        name: name.into(),
        kind,
    }
}

fn classroom(school: &SchoolRow, name: &str, kind: ClassroomKind) -> ClassroomRow {
    ClassroomRow {
        id: new_id(id_prefix::CLASSROOM),
        school_id: school.id.clone(),
        name: name.into(),
        kind,
        devices: json!({ "cameras": [{ "model": "ptz-1080", "visca_port": 52381 }] }),
    }
}

fn user(username: &str, role: Role, school_id: Option<&str>) -> UserRow {
    UserRow {
        id: new_id(id_prefix::USER),
        username: username.into(),
        display_name: format!("{username} 老师"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role,
        district_id: None,
        school_id: school_id.map(str::to_owned),
        classroom_id: None,
        disabled: false,
        failed_logins: 0,
        locked_until: None,
        created_at: at("2025-08-01T00:00:00.123456Z"),
    }
}

/// Asserts that `result` is the given error variant.
macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            other => panic!("expected {}, got {other:?}", stringify!($pattern)),
        }
    };
}
use assert_err;
