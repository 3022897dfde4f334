//! `join-storm`: a benchmark of the gateway at a period boundary, when every receiving classroom
//! (接收课堂) of a county opens its page at once.
//!
//! All classes of a county start on the same bell, so joins come in storms. At the bell each
//! receiving classroom's page asks for its "now" view (`GET /api/now`) and then for its join
//! token (`POST /api/join` with `{}`, "my current class"), all within the same second. This binary
//! measures how fast the gateway answers that storm, on SQLite and on PostgreSQL; the numbers are
//! in `docs/benchmarks.md`, "Join storm (gateway)".
//!
//! # How
//! 1. Opens a fresh store: SQLite in a new temporary directory, or a new, uniquely named
//!    PostgreSQL database (dropped afterwards, as `gateway/tests/api.rs` does).
//! 2. Seeds one district: `--lead-rooms` lead classrooms (主讲课堂) in urban schools of
//!    [`LEAD_ROOMS_PER_SCHOOL`], `N` receiving classrooms in rural schools of
//!    [`RECEIVING_ROOMS_PER_SCHOOL`], receiving room `i` following lead room `i mod K`. Every
//!    school rings the same bells: [`PERIODS_PER_DAY`] periods of 40 minutes, placed so that one of
//!    them began a minute ago. A term around today; each lead room has `--lessons-per-week` weekly
//!    series over five school days starting today, the first being the class on now. One
//!    classroom account per classroom, with a browser session inserted straight into the store for
//!    each receiving room (logins hash passwords with argon2, which is not what is measured).
//! 3. Serves `duet_gateway::app` on `127.0.0.1:0` with `axum::serve`, as `duet up` does (real TCP
//!    on loopback, same process and runtime as the clients).
//! 4. Times each endpoint for one classroom alone ([`SOLO_REPEATS`] times; the first also checks
//!    the set-up), and the gateway's timetable load and expansion by themselves.
//! 5. Fires the storm `--rounds` times: `N` tasks, released together by a barrier, each sending
//!    `GET /api/now` and then `POST /api/join`, each request on its own TCP connection
//!    (`Connection: close`) through the minimal HTTP/1.1 client below. A request's latency runs
//!    from `connect` to the last byte of the body; the wall time from the first connect to the
//!    last answer.
//! 6. Checks every answer: status 200, a current class in "now", the role `receiving` in the
//!    ticket, and one audit entry per join. Anything else is an error: counted, printed, and
//!    never silently timed.
//!
//! It prints markdown tables ready for `docs/benchmarks.md`.
//!
//! # Not measured
//! Logins, TLS, a reverse proxy, a real network, the browser. Client and gateway share the
//! process and the cores, so the clients' own (small) work is inside the numbers.
//!
//! # Usage
//! ```sh
//! cargo run --release -p duet-tests --bin join-storm -- --classrooms 100,300 --db both
//! # also with a small timetable (1 lesson a week per lead room), three storms each
//! cargo run --release -p duet-tests --bin join-storm -- \
//!     --classrooms 100,300 --db both --lessons-per-week 30,1 --rounds 3
//! ```
//! PostgreSQL: `--pg-server` (default `postgres://postgres@127.0.0.1:5432`, trust auth; the user
//! must be allowed to create databases). Gateway warnings and errors go to stderr (see
//! [`DEFAULT_LOG`]; `RUST_LOG` overrides it).
//! Run it between 00:01 and 23:20 Asia/Shanghai: a 40-minute period that began a minute ago must
//! end today.

use anyhow::{Context, anyhow, bail, ensure};
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Timelike, Utc};
use clap::{Parser, ValueEnum};
use duet_gateway::api::timetable::DistrictTimetable;
use duet_gateway::auth::{password, secret, secret_hash};
use duet_gateway::store::{
    AuditFilter, BellPeriodRow, BrowserSessionRow, ClassroomKind, ClassroomRow, DistrictRow, Role,
    SchoolKind, SchoolRow, SeriesRow, Store, SubjectRow, TermRow, UserRow, id_prefix, new_id,
};
use duet_gateway::{AppState, GatewayConfig, app};
use duet_sfu_proto::TokenKey;
use sqlx::Connection;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;

/// Lead classrooms per urban school.
const LEAD_ROOMS_PER_SCHOOL: usize = 7;
/// Receiving classrooms per rural school.
const RECEIVING_ROOMS_PER_SCHOOL: usize = 6;
/// Periods in a school day.
const PERIODS_PER_DAY: u8 = 6;
/// School days in a week, and so weekday series per lead room at most `5 × PERIODS_PER_DAY`.
const SCHOOL_DAYS: u8 = 5;
/// Length of a period, in minutes (primary school).
const PERIOD_MINUTES: u32 = 40;
/// From one period's start to the next one's, in minutes.
const PERIOD_STRIDE_MINUTES: u32 = 50;
/// How many times each endpoint is timed alone, before the storm.
const SOLO_REPEATS: usize = 10;
/// Subjects of the district, assigned to lessons in turn.
const SUBJECTS: [&str; 6] = ["语文", "数学", "英语", "科学", "音乐", "美术"];
/// A session outlives any run.
const SESSION_HOURS: i64 = 8;
/// Errors printed in full per storm; the rest are only counted.
const ERRORS_SHOWN: usize = 10;
/// Log filter unless `RUST_LOG` says otherwise: the gateway's warnings and errors, but not sqlx's
/// "slow acquire" warnings, which a storm large enough to queue for the pool prints by the dozen
/// (the latencies already show the queue).
const DEFAULT_LOG: &str = "warn,sqlx::pool::acquire=error";

/// Benchmark of the gateway's join storm at a period boundary (see the module doc).
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Receiving classrooms, one storm per value (comma-separated, e.g. `100,300`).
    #[arg(long, value_delimiter = ',', default_value = "300")]
    classrooms: Vec<usize>,
    /// Which store to run on.
    #[arg(long, value_enum, default_value_t = DbChoice::Both)]
    db: DbChoice,
    /// Lead classrooms feeding the receiving ones (one county: 14 lead rooms).
    #[arg(long, default_value_t = 14)]
    lead_rooms: usize,
    /// Weekly series per lead room, one district per value (1 = only the class on now, 30 =
    /// every period of the week; comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "30")]
    lessons_per_week: Vec<usize>,
    /// Storms per store and size, one after another on the same data.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// PostgreSQL server (no database in the URL); each run creates its own database.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pg_server: String,
}

/// The `--db` choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DbChoice {
    Sqlite,
    Postgres,
    Both,
}

/// A database the benchmark runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// One measured configuration: a fresh store with its own district.
#[derive(Clone, Copy, Debug)]
struct Case {
    backend: Backend,
    /// Receiving classrooms, all in the storm.
    classrooms: usize,
    /// Weekly series per lead room.
    lessons_per_week: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    ensure!(
        !args.classrooms.is_empty() && args.classrooms.iter().all(|&n| n > 0),
        "--classrooms needs at least one positive number"
    );
    ensure!(args.lead_rooms > 0, "--lead-rooms must be positive");
    let most = usize::from(SCHOOL_DAYS * PERIODS_PER_DAY);
    ensure!(
        !args.lessons_per_week.is_empty()
            && args.lessons_per_week.iter().all(|l| (1..=most).contains(l)),
        "--lessons-per-week needs numbers between 1 and {most}"
    );
    ensure!(args.rounds > 0, "--rounds must be positive");
    sqlx::any::install_default_drivers();

    let backends: &[Backend] = match args.db {
        DbChoice::Sqlite => &[Backend::Sqlite],
        DbChoice::Postgres => &[Backend::Postgres],
        DbChoice::Both => &[Backend::Sqlite, Backend::Postgres],
    };
    let mut report = Report::default();
    for &lessons_per_week in &args.lessons_per_week {
        for &classrooms in &args.classrooms {
            for &backend in backends {
                let case = Case {
                    backend,
                    classrooms,
                    lessons_per_week,
                };
                eprintln!(
                    "{}, {classrooms} receiving classrooms, {lessons_per_week} lessons a week \
                     per lead room…",
                    backend.name()
                );
                let scratch = Scratch::create(backend, &args.pg_server).await?;
                let result = async {
                    let store = scratch.open().await?;
                    let result = run(&args, case, &store, &mut report).await;
                    store.close().await;
                    result
                }
                .await;
                scratch.remove().await;
                result?;
            }
        }
    }
    report.print(&args);
    ensure!(
        report.errors == 0,
        "{} requests or checks failed (printed above)",
        report.errors
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Stores

/// Where a run's data lives, removed after the run.
enum Scratch {
    /// A new directory for `duet.db`.
    Sqlite(PathBuf),
    /// A new database on the server.
    Postgres { server: String, database: String },
}

impl Scratch {
    async fn create(backend: Backend, pg_server: &str) -> anyhow::Result<Scratch> {
        Ok(match backend {
            Backend::Sqlite => {
                Scratch::Sqlite(std::env::temp_dir().join(new_id("duet-join-storm")))
            }
            Backend::Postgres => {
                // `new_id` gives `[a-z0-9_]` only, so the name is a plain identifier.
                let database = new_id("duet_join_storm");
                let mut admin = postgres_admin(pg_server).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
                    .execute(&mut admin)
                    .await
                    .with_context(|| format!("creating database {database}"))?;
                admin.close().await.ok();
                Scratch::Postgres {
                    server: pg_server.into(),
                    database,
                }
            }
        })
    }

    async fn open(&self) -> anyhow::Result<Store> {
        Ok(match self {
            Scratch::Sqlite(dir) => Store::sqlite_in(dir).await?,
            Scratch::Postgres { server, database } => {
                Store::open(&format!("{server}/{database}")).await?
            }
        })
    }

    /// Deletes the data; a failure is reported, not fatal (the numbers are already taken).
    async fn remove(self) {
        match self {
            Scratch::Sqlite(dir) => {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    eprintln!("warning: cannot remove {}: {e}", dir.display());
                }
            }
            Scratch::Postgres { server, database } => {
                let dropped = async {
                    let mut admin = postgres_admin(&server).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await?;
                    admin.close().await.ok();
                    anyhow::Ok(())
                };
                if let Err(e) = dropped.await {
                    eprintln!("warning: cannot drop database {database}: {e:#}");
                }
            }
        }
    }
}

async fn postgres_admin(server: &str) -> anyhow::Result<sqlx::AnyConnection> {
    let url = format!("{server}/postgres");
    sqlx::AnyConnection::connect(&url).await.with_context(|| {
        format!(
            "PostgreSQL is not reachable at {url}; start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The district

/// What the storm needs from the seeded district.
struct World {
    district: String,
    /// One per receiving classroom.
    logins: Vec<Login>,
}

/// A receiving classroom's browser session.
struct Login {
    /// The value of the `duet_session` cookie.
    secret: String,
    /// The session's CSRF token.
    csrf: String,
}

/// Bell periods of one school day with one period that began a minute before `now` (school
/// local time), and that period's number. Fails late in the evening, when a period that began a
/// minute ago would end after midnight.
fn bells_around(now: NaiveTime) -> anyhow::Result<(Vec<BellPeriodRow>, u8)> {
    let day_span = PERIOD_STRIDE_MINUTES * u32::from(PERIODS_PER_DAY - 1) + PERIOD_MINUTES;
    let last_minute = 24 * 60 - 1;
    let current_start = (now.hour() * 60 + now.minute())
        .checked_sub(1)
        .filter(|start| start + PERIOD_MINUTES <= last_minute)
        .ok_or_else(|| {
            anyhow!(
                "it is {now} in Asia/Shanghai: a period that began a minute ago would cross \
                 midnight; run the benchmark between 00:01 and 23:20 school time"
            )
        })?;
    // The current period is period 1 unless the day's later periods would run past midnight.
    let earlier_periods = current_start
        .saturating_sub(last_minute - day_span)
        .div_ceil(PERIOD_STRIDE_MINUTES);
    let first_start = current_start - earlier_periods * PERIOD_STRIDE_MINUTES;
    let time = |minutes: u32| {
        NaiveTime::from_hms_opt(minutes / 60, minutes % 60, 0).expect("bells are inside the day")
    };
    let periods = (1..=PERIODS_PER_DAY)
        .map(|period| {
            let start = first_start + PERIOD_STRIDE_MINUTES * u32::from(period - 1);
            BellPeriodRow {
                period,
                start_time: time(start),
                end_time: time(start + PERIOD_MINUTES),
            }
        })
        .collect();
    let current = u8::try_from(earlier_periods + 1).expect("at most PERIODS_PER_DAY");
    Ok((periods, current))
}

/// Weekday (1 = Monday … 7 = Sunday) and period of each weekly lesson of a lead room: the class
/// on now first, then the rest of the five school days that start today.
fn lesson_slots(today: NaiveDate, current_period: u8, lessons: usize) -> Vec<(u8, u8)> {
    let today_iso = today.weekday().number_from_monday() as u8;
    let mut slots = vec![(today_iso, current_period)];
    for day in 0..SCHOOL_DAYS {
        let weekday = (today_iso - 1 + day) % 7 + 1;
        for period in 1..=PERIODS_PER_DAY {
            if (weekday, period) != (today_iso, current_period) {
                slots.push((weekday, period));
            }
        }
    }
    slots.truncate(lessons);
    slots
}

/// Seeds the district described in the module doc through the store's API.
async fn seed(
    store: &Store,
    receiving_rooms: usize,
    lead_rooms: usize,
    lessons_per_week: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<World> {
    let local = now.with_timezone(&chrono_tz::Asia::Shanghai);
    let today = local.date_naive();
    let (bells, current_period) = bells_around(local.time())?;
    // One argon2 hash for every account: nobody logs in, but the rows look like real ones.
    let password_hash = password::hash("join storm: no logins");
    let district = DistrictRow {
        id: new_id(id_prefix::DISTRICT),
        name: "城关区".into(),
    };
    store.create_district(&district).await?;
    let user = |role: Role, name: String, school: Option<&str>, classroom: Option<&str>| UserRow {
        id: new_id(id_prefix::USER),
        username: new_id("user"),
        display_name: name,
        password_hash: password_hash.clone(),
        role,
        district_id: Some(district.id.clone()),
        school_id: school.map(Into::into),
        classroom_id: classroom.map(Into::into),
        disabled: false,
        failed_logins: 0,
        locked_until: None,
        created_at: now,
    };

    let admin = user(Role::DistrictAdmin, "教育局管理员".into(), None, None);
    store.create_user(&admin).await?;

    let add_school = async |name: String, kind: SchoolKind| -> anyhow::Result<String> {
        let school = SchoolRow {
            id: new_id(id_prefix::SCHOOL),
            district_id: district.id.clone(),
            name,
            kind,
        };
        store.create_school(&school).await?;
        store.set_bell_periods(&school.id, &bells).await?;
        Ok(school.id)
    };
    let add_classroom = async |school: &str, name: String, kind: ClassroomKind| {
        let room = ClassroomRow {
            id: new_id(id_prefix::CLASSROOM),
            school_id: school.into(),
            name: name.clone(),
            kind,
            devices: serde_json::json!([]),
        };
        store.create_classroom(&room).await?;
        let account = user(Role::Classroom, name, Some(school), Some(&room.id));
        store.create_user(&account).await?;
        anyhow::Ok((room.id, account.id))
    };

    // Lead rooms, each with its teacher.
    let mut leads = Vec::new();
    let mut school = String::new();
    for i in 0..lead_rooms {
        if i % LEAD_ROOMS_PER_SCHOOL == 0 {
            let school_no = i / LEAD_ROOMS_PER_SCHOOL + 1;
            school = add_school(format!("城区第{school_no}小学"), SchoolKind::Urban).await?;
        }
        let (room, _) =
            add_classroom(&school, format!("主讲教室{}", i + 1), ClassroomKind::Lead).await?;
        let teacher = user(
            Role::Teacher,
            format!("主讲教师{}", i + 1),
            Some(&school),
            None,
        );
        store.create_user(&teacher).await?;
        leads.push((room, teacher.id));
    }

    // Receiving rooms, each logged in; room i follows lead room i mod K.
    let mut receivers_of: Vec<Vec<String>> = vec![Vec::new(); lead_rooms];
    let mut logins = Vec::with_capacity(receiving_rooms);
    for i in 0..receiving_rooms {
        if i % RECEIVING_ROOMS_PER_SCHOOL == 0 {
            let school_no = i / RECEIVING_ROOMS_PER_SCHOOL + 1;
            school = add_school(format!("乡村第{school_no}小学"), SchoolKind::Rural).await?;
        }
        let class_no = i % RECEIVING_ROOMS_PER_SCHOOL + 1;
        let (room, account) = add_classroom(
            &school,
            format!("接收教室{}-{class_no}", i / RECEIVING_ROOMS_PER_SCHOOL + 1),
            ClassroomKind::Receiving,
        )
        .await?;
        receivers_of[i % lead_rooms].push(room);
        let login = Login {
            secret: secret("ses"),
            csrf: secret("csrf"),
        };
        store
            .insert_session(&BrowserSessionRow {
                id_hash: secret_hash(&login.secret),
                user_id: account,
                csrf_token: login.csrf.clone(),
                created_at: now,
                expires_at: now + TimeDelta::hours(SESSION_HOURS),
            })
            .await?;
        logins.push(login);
    }

    let mut subjects = Vec::new();
    for name in SUBJECTS {
        let subject = SubjectRow {
            id: new_id(id_prefix::SUBJECT),
            district_id: district.id.clone(),
            name: name.into(),
        };
        store.create_subject(&subject).await?;
        subjects.push(subject.id);
    }
    let term = TermRow {
        id: new_id(id_prefix::TERM),
        district_id: district.id.clone(),
        name: "本学期".into(),
        start_date: today - TimeDelta::days(60),
        end_date: today + TimeDelta::days(60),
    };
    store.create_term(&term).await?;
    let slots = lesson_slots(today, current_period, lessons_per_week);
    for ((lead_room, teacher), receivers) in leads.iter().zip(&receivers_of) {
        for (n, &(weekday, period)) in slots.iter().enumerate() {
            store
                .create_series(&SeriesRow {
                    id: new_id(id_prefix::SERIES),
                    term_id: term.id.clone(),
                    pairing_id: None,
                    weekday,
                    period,
                    lead_classroom_id: lead_room.clone(),
                    teacher_id: teacher.clone(),
                    subject_id: subjects[n % subjects.len()].clone(),
                    created_by: admin.id.clone(),
                    created_at: now,
                    receiver_ids: receivers.clone(),
                })
                .await?;
        }
    }
    Ok(World {
        district: district.id,
        logins,
    })
}

// ---------------------------------------------------------------------------------------------
// One run: a store, a district, a gateway, the storms

async fn run(args: &Args, case: Case, store: &Store, report: &mut Report) -> anyhow::Result<()> {
    let seeding = Instant::now();
    let world = seed(
        store,
        case.classrooms,
        args.lead_rooms,
        case.lessons_per_week,
        Utc::now(),
    )
    .await?;
    eprintln!("  seeded in {:.1} s", seeding.elapsed().as_secs_f64());

    let config = GatewayConfig {
        demo: false,
        ..GatewayConfig::default()
    };
    let key = TokenKey::new(*b"join storm benchmark key").expect("the key has 16+ bytes");
    let state = Arc::new(AppState::new(config, key, store.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let router = app(state.clone());
        async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        }
    });

    let result = measure(args, case, &state, &world, addr, report).await;
    let _ = stop.send(());
    server.await.context("the gateway task failed")??;
    result
}

/// Everything timed on one running gateway.
async fn measure(
    args: &Args,
    case: Case,
    state: &AppState,
    world: &World,
    addr: SocketAddr,
    report: &mut Report,
) -> anyhow::Result<()> {
    let requests: Vec<[Vec<u8>; 2]> = world
        .logins
        .iter()
        .map(|login| Endpoint::ALL.map(|e| e.request(addr, login)))
        .collect();

    // Each endpoint alone, and the timetable work inside it without HTTP. The first round also
    // checks the set-up: if one classroom alone fails, there is nothing worth timing.
    let mut solo = Solo::default();
    for _ in 0..SOLO_REPEATS {
        let t = Instant::now();
        let timetable = DistrictTimetable::load(state, &world.district)
            .await
            .map_err(|e| anyhow!("loading the timetable: {e}"))?;
        solo.load.push(t.elapsed());
        let today = Utc::now()
            .with_timezone(&chrono_tz::Asia::Shanghai)
            .date_naive();
        let t = Instant::now();
        let lessons = timetable
            .expand(today, today + TimeDelta::days(7))
            .map_err(|e| anyhow!("expanding the timetable: {e}"))?;
        solo.expand.push(t.elapsed());
        solo.lessons = lessons.len();
        for (e, request) in Endpoint::ALL.iter().zip(&requests[0]) {
            let sample = send(addr, *e, request).await;
            if let Err(why) = sample.outcome {
                bail!("one classroom alone failed, the set-up is wrong: {why}");
            }
            solo.endpoint[e.index()].push(sample.latency);
        }
    }
    report.solo.push(SoloRow {
        case,
        lessons_in_now_window: solo.lessons,
        load: median(&mut solo.load),
        expand: median(&mut solo.expand),
        now: median(&mut solo.endpoint[0]),
        join: median(&mut solo.endpoint[1]),
    });

    for round in 1..=args.rounds {
        let row = summarize(storm(addr, &requests).await, case, round);
        report.errors += row.errors.len();
        for why in row.errors.iter().take(ERRORS_SHOWN) {
            eprintln!("  error: {why}");
        }
        if row.errors.len() > ERRORS_SHOWN {
            eprintln!("  … and {} more errors", row.errors.len() - ERRORS_SHOWN);
        }
        eprintln!(
            "  round {round}: {:.0} req/s, p50 {:.1} ms, {} errors",
            row.per_second,
            ms(row.all.p50),
            row.errors.len()
        );
        report.storms.push(row);
    }

    // Every join is evidence: one audit entry each (a failed audit write is only logged).
    let expected = SOLO_REPEATS + args.rounds * case.classrooms;
    let audited = state
        .store
        .list_audit(&AuditFilter {
            action: Some("join_token_issued".into()),
            limit: u32::try_from(expected + 1).unwrap_or(u32::MAX),
            ..AuditFilter::default()
        })
        .await?
        .len();
    if audited != expected {
        eprintln!("  error: {audited} join audit entries, expected {expected}");
        report.errors += 1;
    }
    Ok(())
}

/// Timings of one client alone, before the storm.
#[derive(Default)]
struct Solo {
    load: Vec<Duration>,
    expand: Vec<Duration>,
    endpoint: [Vec<Duration>; 2],
    lessons: usize,
}

/// One storm: every classroom at once, released by a barrier.
async fn storm(addr: SocketAddr, requests: &[[Vec<u8>; 2]]) -> Vec<Sample> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .iter()
        .map(|pair| {
            let barrier = barrier.clone();
            let pair = pair.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut samples = Vec::with_capacity(2);
                for (e, request) in Endpoint::ALL.iter().zip(&pair) {
                    samples.push(send(addr, *e, request).await);
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(2 * requests.len());
    for task in tasks {
        samples.extend(
            task.await
                .expect("client tasks return errors as samples, never panic"),
        );
    }
    samples
}

// ---------------------------------------------------------------------------------------------
// The client: one request per TCP connection, HTTP/1.1, `Connection: close`

/// What a classroom's page asks for at the bell, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Now,
    Join,
}

impl Endpoint {
    const ALL: [Endpoint; 2] = [Endpoint::Now, Endpoint::Join];

    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            Endpoint::Now => "GET /api/now",
            Endpoint::Join => "POST /api/join",
        }
    }

    /// The bytes of this request for `login`.
    fn request(self, addr: SocketAddr, login: &Login) -> Vec<u8> {
        let common = format!(
            "Host: {addr}\r\nCookie: duet_session={}\r\nConnection: close\r\n",
            login.secret
        );
        match self {
            Endpoint::Now => format!("GET /api/now HTTP/1.1\r\n{common}\r\n"),
            Endpoint::Join => format!(
                "POST /api/join HTTP/1.1\r\n{common}X-CSRF-Token: {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
                login.csrf
            ),
        }
        .into_bytes()
    }

    /// Whether a 200 answer is the one a classroom at the bell must get.
    fn check(self, body: &[u8]) -> Result<(), String> {
        let json: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let ok = match self {
            Endpoint::Now => json["current"].is_object(),
            Endpoint::Join => json["role"] == "receiving",
        };
        if ok {
            Ok(())
        } else {
            Err(format!("unexpected answer {}", excerpt(body)))
        }
    }
}

/// One timed request.
struct Sample {
    endpoint: Endpoint,
    /// When the connection was opened.
    start: Instant,
    /// From `connect` to the last byte of the body (or the failure).
    latency: Duration,
    /// Why the answer is not the expected one.
    outcome: Result<(), String>,
}

/// Sends `request` on a new connection and checks the answer.
async fn send(addr: SocketAddr, endpoint: Endpoint, request: &[u8]) -> Sample {
    let start = Instant::now();
    let outcome = exchange(addr, request).await.and_then(|(status, body)| {
        if status == 200 {
            endpoint.check(&body)
        } else {
            Err(format!("status {status}: {}", excerpt(&body)))
        }
    });
    Sample {
        endpoint,
        start,
        latency: start.elapsed(),
        outcome: outcome.map_err(|why| format!("{}: {why}", endpoint.label())),
    }
}

/// One HTTP/1.1 exchange: connect, write, read the head and `Content-Length` bytes of body.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut conn = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    conn.set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    conn.write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let (head_len, status, body_len) = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let (status, body_len) = parse_head(&buf[..end])?;
            break (end + 4, status, body_len);
        }
        read_more(&mut conn, &mut buf).await?;
    };
    while buf.len() < head_len + body_len {
        read_more(&mut conn, &mut buf).await?;
    }
    buf.truncate(head_len + body_len);
    Ok((status, buf.split_off(head_len)))
}

async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    match conn.read(&mut chunk).await {
        Ok(0) => Err(format!(
            "connection closed after {} bytes of answer",
            buf.len()
        )),
        Ok(read) => {
            buf.extend_from_slice(&chunk[..read]);
            Ok(())
        }
        Err(e) => Err(format!("read: {e}")),
    }
}

/// The status and `Content-Length` of a response head (without the blank line).
fn parse_head(head: &[u8]) -> Result<(u16, usize), String> {
    let head = std::str::from_utf8(head).map_err(|_| "head is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .ok_or("no Content-Length")?
        .1
        .trim()
        .parse()
        .map_err(|_| "bad Content-Length".to_string())?;
    Ok((status, length))
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

// ---------------------------------------------------------------------------------------------
// Statistics and the report

/// Latency percentiles, nearest rank.
#[derive(Clone, Copy)]
struct Percentiles {
    p50: Duration,
    p95: Duration,
    p99: Duration,
    max: Duration,
}

impl Percentiles {
    /// Of `latencies`, which must not be empty; sorts them.
    fn of(latencies: &mut [Duration]) -> Percentiles {
        latencies.sort_unstable();
        let rank = |p: f64| {
            let rank = (p * latencies.len() as f64).ceil() as usize;
            latencies[rank.clamp(1, latencies.len()) - 1]
        };
        Percentiles {
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }
}

fn median(latencies: &mut [Duration]) -> Duration {
    Percentiles::of(latencies).p50
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One storm's numbers.
struct StormRow {
    case: Case,
    round: usize,
    requests: usize,
    wall: Duration,
    per_second: f64,
    all: Percentiles,
    by_endpoint: [Percentiles; 2],
    errors: Vec<String>,
}

/// A storm's samples, summed up; wall time runs from the first connect to the last answer.
fn summarize(samples: Vec<Sample>, case: Case, round: usize) -> StormRow {
    let first = samples.iter().map(|s| s.start).min();
    let last = samples.iter().map(|s| s.start + s.latency).max();
    let wall = last
        .zip(first)
        .map(|(l, f)| l - f)
        .expect("a storm has requests");
    let mut all: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    let mut by_endpoint = Endpoint::ALL.map(|e| {
        samples
            .iter()
            .filter(|s| s.endpoint == e)
            .map(|s| s.latency)
            .collect::<Vec<_>>()
    });
    StormRow {
        case,
        round,
        requests: samples.len(),
        wall,
        per_second: samples.len() as f64 / wall.as_secs_f64(),
        all: Percentiles::of(&mut all),
        by_endpoint: by_endpoint.each_mut().map(|l| Percentiles::of(l)),
        errors: samples
            .into_iter()
            .filter_map(|s| s.outcome.err())
            .collect(),
    }
}

/// Medians of one client alone.
struct SoloRow {
    case: Case,
    lessons_in_now_window: usize,
    load: Duration,
    expand: Duration,
    now: Duration,
    join: Duration,
}

#[derive(Default)]
struct Report {
    storms: Vec<StormRow>,
    solo: Vec<SoloRow>,
    errors: usize,
}

impl Report {
    fn print(&self, args: &Args) {
        println!(
            "\nJoin storm: {} lead rooms, {} round(s) per case\n",
            args.lead_rooms, args.rounds
        );
        println!(
            "| backend | classrooms | lessons/week | round | requests | wall (ms) | req/s \
             | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | errors |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.storms {
            println!(
                "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                r.case.backend.name(),
                r.case.classrooms,
                r.case.lessons_per_week,
                r.round,
                r.requests,
                ms(r.wall),
                r.per_second,
                ms(r.all.p50),
                ms(r.all.p95),
                ms(r.all.p99),
                ms(r.all.max),
                r.errors.len()
            );
        }
        println!("\nBy endpoint (same storms):\n");
        println!(
            "| backend | classrooms | lessons/week | round | endpoint | p50 (ms) | p95 (ms) \
             | p99 (ms) | max (ms) |"
        );
        println!("|---|---:|---:|---:|---|---:|---:|---:|---:|");
        for r in &self.storms {
            for (e, p) in Endpoint::ALL.iter().zip(&r.by_endpoint) {
                println!(
                    "| {} | {} | {} | {} | `{}` | {:.1} | {:.1} | {:.1} | {:.1} |",
                    r.case.backend.name(),
                    r.case.classrooms,
                    r.case.lessons_per_week,
                    r.round,
                    e.label(),
                    ms(p.p50),
                    ms(p.p95),
                    ms(p.p99),
                    ms(p.max)
                );
            }
        }
        println!(
            "\nOne classroom alone, medians of {SOLO_REPEATS} (timetable load and expansion \
             called in-process, the requests over HTTP):\n"
        );
        println!(
            "| backend | classrooms | lessons/week | lessons in the 8 days of \"now\" \
             | `DistrictTimetable::load` (ms) | `expand` (ms) | `GET /api/now` (ms) \
             | `POST /api/join` (ms) |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for s in &self.solo {
            println!(
                "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                s.case.backend.name(),
                s.case.classrooms,
                s.case.lessons_per_week,
                s.lessons_in_now_window,
                ms(s.load),
                ms(s.expand),
                ms(s.now),
                ms(s.join)
            );
        }
    }
}
