//! A recording classroom (录播教室) left to itself, end to end: the real gateway (SQLite) with a
//! school whose bell schedule has a period starting at the next minute, simulated RTSP cameras,
//! and the recorder — in this process, or as the `duet recorder` binary when the test kills it.
//!
//! - the timetabled lesson records in both modes, is delivered to the archive by itself and
//!   registered with the gateway; the files probe right; injected events cut the programme;
//! - `kill -9` of the recorder mid-lesson, then a restart: the first part is intact, recording
//!   resumes, and the archive holds both parts with the gap;
//! - the gateway down for the whole lesson: the lesson is recorded from the cached timetable and
//!   delivered once the gateway is back.
//!
//! Bells are minutes (`HH:MM`), so each test waits for the next minute boundary. The tests take
//! turns ([`SERIAL`]): a 1080p programme is live, and a live compositor starved of CPU (three
//! rooms at once on two cores, beside whatever else runs) falls behind real time; their rooms
//! are kept small too (320×180 cameras, a 10 fps programme, x264 ultrafast).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc};
use chrono_tz::Asia::Shanghai;
use duet::DuetConfig;
use duet_gateway::store::{
    BellPeriodRow, ClassroomKind, ClassroomRow, DistrictRow, Role, SchoolKind, SchoolRow,
    SeriesRow, SubjectRow, TermRow, UserRow,
};
use duet_hardware::rtsp_sim::{RtspCameraSim, RtspSimConfig};
use duet_recorder::delivery::probe_media;
use duet_recorder::manifest::{LessonManifest, LessonPhase};
use duet_recorder::service::Recorder;
use serde_json::Value;

/// The test room's cameras: device id, position, colour; the teacher's camera carries the mic.
const CAMERAS: [(&str, &str, &str); 3] = [
    ("cam-teacher", "teacher_close_up", "red"),
    ("cam-pupils", "pupils_wide", "green"),
    ("cam-pupil", "pupil_close_up", "blue"),
];

/// Directing rules for a one-minute lesson: a 5 s static opening, a 2 s hold.
const DIRECTOR: &str = "min_hold_s = 2.0\nstatic_first_s = 5.0\n";

/// A `duet recorder` child process, killed (SIGKILL) when dropped, so that a failing test leaves
/// no recorder running behind it.
struct RecorderProcess(std::process::Child);

impl RecorderProcess {
    /// `kill -9`, and wait for it to be gone.
    fn kill_9(&mut self) {
        // The standard library's `kill` sends SIGKILL on Unix.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RecorderProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// One lesson at a time (see the module doc).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Site {
    dir: PathBuf,
    config: DuetConfig,
    classroom: String,
    _cameras: Vec<RtspCameraSim>,
    /// The lesson's start and end (UTC), from the bells.
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The next whole minute at least 20 s away, such that `minutes` more stay within the
/// school-local day; waits past midnight when needed.
fn next_period(minutes: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    loop {
        let now = Utc::now();
        let start = now + chrono::Duration::seconds(80 - i64::from(now.second()));
        let start = start.with_second(0).unwrap().with_nanosecond(0).unwrap();
        let start = if start - now < chrono::Duration::seconds(20) {
            start + chrono::Duration::minutes(1)
        } else {
            start
        };
        let end = start + chrono::Duration::minutes(minutes);
        if start.with_timezone(&Shanghai).date_naive() == end.with_timezone(&Shanghai).date_naive()
        {
            return (start, end);
        }
        std::thread::sleep(Duration::from_secs(30));
    }
}

/// A district with one school, its admin, a recording classroom whose devices are simulated
/// cameras, and one lesson of `minutes` starting at the next minute. Written to the store
/// before the gateway starts (the gateway caches timetables).
async fn site(name: &str, listen_port: u16, minutes: i64) -> Site {
    // The recorder's log, shown with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info,duet_recorder=debug")
        .try_init();
    let dir = scratch(name);
    let cameras: Vec<RtspCameraSim> = CAMERAS
        .iter()
        .enumerate()
        .map(|(i, (id, _, colour))| {
            let mut c = RtspSimConfig::new(0, id);
            c.width = 320;
            c.height = 180;
            c.pattern = (*colour).into();
            c.audio = i == 0;
            RtspCameraSim::start_with(c).expect("camera simulator")
        })
        .collect();
    let mut devices: Vec<Value> = CAMERAS
        .iter()
        .zip(&cameras)
        .map(|((id, position, _), cam)| {
            serde_json::json!({"id": id, "kind": "camera", "position": position, "source": cam.url()})
        })
        .collect();
    devices
        .push(serde_json::json!({"id": "mic", "kind": "microphone", "source": cameras[0].url()}));

    let mut config = DuetConfig {
        data_dir: dir.join("data"),
        ..DuetConfig::default()
    };
    config.gateway.demo = false;
    config.gateway.listen = format!("127.0.0.1:{listen_port}");
    let store = config.gateway.store.open(&config.data_dir).await.unwrap();
    let (start, end) = next_period(minutes);
    let local = |t: DateTime<Utc>| {
        let l = t.with_timezone(&Shanghai).time();
        NaiveTime::from_hms_opt(l.hour(), l.minute(), 0).unwrap()
    };
    let today = start.with_timezone(&Shanghai).date_naive();
    let now = Utc::now();
    store
        .create_district(&DistrictRow {
            id: "dst_t".into(),
            name: "测试区".into(),
        })
        .await
        .unwrap();
    store
        .create_school(&SchoolRow {
            id: "sch_t".into(),
            district_id: "dst_t".into(),
            name: "测试小学".into(),
            kind: SchoolKind::Urban,
        })
        .await
        .unwrap();
    for (id, role) in [
        ("usr_admin", Role::SchoolAdmin),
        ("usr_teacher", Role::Teacher),
    ] {
        store
            .create_user(&UserRow {
                id: id.into(),
                username: id.into(),
                display_name: if role == Role::Teacher {
                    "李老师".into()
                } else {
                    "管理员".into()
                },
                password_hash: String::new(),
                role,
                district_id: Some("dst_t".into()),
                school_id: Some("sch_t".into()),
                classroom_id: None,
                disabled: false,
                failed_logins: 0,
                locked_until: None,
                created_at: now,
            })
            .await
            .unwrap();
    }
    store
        .create_classroom(&ClassroomRow {
            id: "cls_rec".into(),
            school_id: "sch_t".into(),
            name: "录播教室".into(),
            kind: ClassroomKind::Recording,
            devices: Value::Array(devices),
        })
        .await
        .unwrap();
    store
        .create_subject(&SubjectRow {
            id: "sub_t".into(),
            district_id: "dst_t".into(),
            name: "数学".into(),
        })
        .await
        .unwrap();
    store
        .create_term(&TermRow {
            id: "trm_t".into(),
            district_id: "dst_t".into(),
            name: "学期".into(),
            start_date: today - chrono::Duration::days(7),
            end_date: today + chrono::Duration::days(7),
        })
        .await
        .unwrap();
    store
        .set_bell_periods(
            "sch_t",
            &[BellPeriodRow {
                period: 1,
                start_time: local(start),
                end_time: local(end),
            }],
        )
        .await
        .unwrap();
    store
        .create_series(&SeriesRow {
            id: "ser_t".into(),
            term_id: "trm_t".into(),
            pairing_id: None,
            weekday: today.weekday().number_from_monday() as u8,
            period: 1,
            lead_classroom_id: "cls_rec".into(),
            teacher_id: "usr_teacher".into(),
            subject_id: "sub_t".into(),
            created_by: "usr_admin".into(),
            created_at: now,
            receiver_ids: Vec::new(),
        })
        .await
        .unwrap();
    let token = duet::recording::issue_recorder_token(&store, &["cls_rec".to_owned()])
        .await
        .unwrap();
    store.close().await;

    std::fs::write(dir.join("director.toml"), DIRECTOR).unwrap();
    let recorder = &mut config.recorder;
    recorder.classrooms = vec!["cls_rec".into()];
    recorder.gateway_url = format!("http://127.0.0.1:{listen_port}");
    recorder.gateway_token = token;
    recorder.director_file = dir.join("director.toml");
    recorder.room.pre_roll_s = 0;
    recorder.room.post_roll_s = 0;
    recorder.room.schedule_refresh_s = 2;
    recorder.room.report_interval_s = 1;
    recorder.mixer.speed_preset = "ultrafast".into();
    recorder.mixer.framerate = 10;
    recorder.mixer.feed_width = 320;
    recorder.mixer.feed_height = 180;
    recorder.delivery.retry_initial = Duration::from_millis(500);
    recorder.delivery.retry_max = Duration::from_secs(2);
    Site {
        dir,
        config,
        classroom: "cls_rec".into(),
        _cameras: cameras,
        start,
        end,
    }
}

fn lesson_id(site: &Site) -> String {
    let date = site.start.with_timezone(&Shanghai).date_naive();
    format!("les_{}_ser_t_{date}", site.classroom)
}

fn lesson_dir(site: &Site) -> PathBuf {
    site.config
        .data_dir
        .join("recordings")
        .join(&site.classroom)
        .join(lesson_id(site))
}

async fn sleep_until(t: DateTime<Utc>) {
    let wait = (t - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
}

async fn start_recorder(config: &DuetConfig) -> std::sync::Arc<Recorder> {
    duet::recording::start_recorder(config.recorder.clone(), config.data_dir.clone())
        .await
        .expect("recorder starts")
}

/// GET with the recorder's machine token.
fn api_get(site: &Site, path: &str) -> Value {
    ureq::get(&format!("{}{path}", site.config.recorder.gateway_url))
        .set(
            "Authorization",
            &format!("Bearer {}", site.config.recorder.gateway_token),
        )
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .into_json()
        .unwrap()
}

/// Waits (polling) until the gateway lists the lesson; returns it. `recorder` (in-process) is
/// asked for its delivery status when it does not come.
async fn registered_lesson(site: &Site, recorder: Option<&Recorder>, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let lessons = tokio::task::block_in_place(|| {
            api_get(
                site,
                &format!("/api/lessons?classroom_id={}", site.classroom),
            )
        });
        if let Some(lesson) = lessons
            .as_array()
            .and_then(|a| a.iter().find(|l| l["id"] == lesson_id(site).as_str()))
        {
            return lesson.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the lesson was not registered within {within:?}; delivery: {:?}",
            recorder.map(|r| r.delivery().status())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The archive directory of a registered lesson (`file://…`).
fn archive_dir(lesson: &Value) -> PathBuf {
    let uri = lesson["archive_uri"].as_str().expect("archive_uri");
    PathBuf::from(uri.strip_prefix("file://").expect("a local archive"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timetabled_lesson_records_both_modes_and_reaches_the_archive_by_itself() {
    let _turn = SERIAL.lock().await;
    let site = site("rec-timetable", 18181, 1).await;
    let gateway = duet::start_gateway(&site.config).await.unwrap();
    let recorder = start_recorder(&site.config).await;
    sleep_until(site.start + chrono::Duration::seconds(8)).await;
    let room = recorder.room(&site.classroom).unwrap();
    let status = room.status();
    assert_eq!(status.state, "recording", "{status:?}");
    assert_eq!(status.programme_recording, Some(true), "{status:?}");
    // Events from a sensor or the API: a pupil stands, sits, the courseware is touched.
    let event = |json: &str| {
        let event = serde_json::from_str(json).unwrap();
        tokio::task::block_in_place(|| room.command(duet_recorder::room::RoomCommand::Event(event)))
            .unwrap()
    };
    event("\"pupil_stood\"");
    sleep_until(site.start + chrono::Duration::seconds(20)).await;
    event("\"pupil_sat\"");
    event("\"courseware_activity\"");
    // The gateway shows the room recording, with its sources.
    let reported =
        tokio::task::block_in_place(|| api_get(&site, "/api/classrooms/cls_rec/recorder-status"));
    assert_eq!(reported["status"]["state"], "recording", "{reported}");
    assert_eq!(reported["online"], true);

    let lesson = registered_lesson(&site, Some(&recorder), Duration::from_secs(150)).await;
    assert_eq!(lesson["parts"], 1, "{lesson}");
    assert_eq!(lesson["title"], "数学 · 李老师");
    let archive = archive_dir(&lesson);
    let programme = probe_media(&archive.join("programme-1.mp4")).unwrap();
    let length = (site.end - site.start).as_seconds_f64();
    let secs = programme.duration.as_secs_f64();
    assert!(
        (secs - length).abs() <= 1.0,
        "programme {secs} s for a {length} s period"
    );
    assert!(
        programme.index_at_front,
        "faststart: the index precedes the media"
    );
    let video = programme.video().expect("programme video");
    assert_eq!(video.codec, "h264");
    assert!(matches!(
        video.kind,
        duet_recorder::delivery::StreamKind::Video {
            width: 1920,
            height: 1080
        }
    ));
    assert_eq!(programme.audio().expect("programme audio").codec, "aac");
    for (id, _, _) in CAMERAS {
        let file = archive.join(format!("sources/{id}-p1-s1.mkv"));
        let probe = probe_media(&file).unwrap_or_else(|e| panic!("{id}: {e}"));
        let secs = probe.duration.as_secs_f64();
        assert!(
            (secs - length).abs() <= 1.5,
            "{id}: {secs} s for a {length} s period"
        );
        assert_eq!(probe.video().unwrap().codec, "h264", "{id}: not transcoded");
    }
    let metadata: Value =
        serde_json::from_slice(&std::fs::read(archive.join("metadata.json")).unwrap()).unwrap();
    let cuts = metadata.to_string();
    assert!(
        cuts.contains("SINGLE(cam-pupil)"),
        "the pupil standing cut the programme: {cuts}"
    );
    let manifest = LessonManifest::load(&lesson_dir(&site)).unwrap();
    assert_eq!(manifest.phase, LessonPhase::Delivered);
    // The room says so too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while room.status().state != "done" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(room.status().state, "done");
    duet::recording::stop_recorder(recorder).await;
    gateway.stop().await;
    std::fs::remove_dir_all(&site.dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_killed_mid_lesson_resumes_and_the_archive_holds_both_parts() {
    let _turn = SERIAL.lock().await;
    let site = site("rec-kill", 18182, 2).await;
    let gateway = duet::start_gateway(&site.config).await.unwrap();
    let config_path = site.dir.join("duet.toml");
    std::fs::write(&config_path, toml::to_string(&site.config).unwrap()).unwrap();
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_duet"))
            .args(["recorder", "--config"])
            .arg(&config_path)
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(site.dir.join("recorder.log"))
                    .unwrap(),
            )
            .spawn()
            .map(RecorderProcess)
            .expect("duet recorder starts")
    };
    let mut first = spawn();
    sleep_until(site.start + chrono::Duration::seconds(30)).await;
    let killed_at = Utc::now();
    first.kill_9();
    let cut_off = LessonManifest::load(&lesson_dir(&site)).unwrap();
    assert_eq!(cut_off.phase, LessonPhase::Recording);
    assert_eq!(cut_off.parts.len(), 1);
    assert!(
        cut_off.parts[0].ended_at.is_none(),
        "the kill left the part open"
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut second = spawn();
    let lesson = registered_lesson(&site, None, Duration::from_secs(200)).await;
    second.kill_9();

    assert_eq!(lesson["parts"], 2, "{lesson}");
    let gaps = lesson["gaps"].as_array().unwrap();
    let whole = gaps
        .iter()
        .find(|g| g["source_id"].is_null())
        .unwrap_or_else(|| panic!("the restart is a gap of the whole recording: {gaps:?}"));
    let from: DateTime<Utc> = whole["from"].as_str().unwrap().parse().unwrap();
    let to: DateTime<Utc> = whole["to"].as_str().unwrap().parse().unwrap();
    assert!(
        from <= killed_at && to > killed_at,
        "gap {from}..{to}, kill at {killed_at}"
    );
    let archive = archive_dir(&lesson);
    // What was recorded before the kill is intact: about 30 s of programme, readable to the end.
    let part1 = probe_media(&archive.join("programme-1.mp4")).unwrap();
    let before = (killed_at - site.start).as_seconds_f64();
    let secs = part1.duration.as_secs_f64();
    assert!(
        (secs - before).abs() <= 2.0,
        "part 1 holds {secs} s of the {before} s before the kill"
    );
    let part2 = probe_media(&archive.join("programme-2.mp4")).unwrap();
    let after = (site.end - to).as_seconds_f64();
    let secs = part2.duration.as_secs_f64();
    assert!(
        (secs - after).abs() <= 2.0,
        "part 2 holds {secs} s of {after} s"
    );
    assert!(archive.join("sources/cam-teacher-p1-s1.mkv").exists());
    assert!(archive.join("sources/cam-teacher-p2-s1.mkv").exists());
    gateway.stop().await;
    std::fs::remove_dir_all(&site.dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_gateway_down_for_the_whole_lesson_it_is_recorded_and_delivered_later() {
    let _turn = SERIAL.lock().await;
    let site = site("rec-offline", 18183, 1).await;
    let gateway = duet::start_gateway(&site.config).await.unwrap();
    let recorder = start_recorder(&site.config).await;
    // The room has fetched its devices and timetable once (its cache)…
    let cache = site.config.data_dir.join("recorder/cls_rec/schedule.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cache.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(cache.exists(), "the timetable was cached");
    // …then the gateway goes away before the bell and stays away past the lesson.
    gateway.stop().await;
    sleep_until(site.end + chrono::Duration::seconds(15)).await;
    let manifest = LessonManifest::load(&lesson_dir(&site)).expect("the lesson was recorded");
    assert_eq!(
        manifest.phase,
        LessonPhase::Finalized,
        "recorded and waiting for delivery"
    );
    let part = &manifest.parts[0];
    let recorded = part.programme.as_ref().unwrap().duration_s;
    let length = (site.end - site.start).as_seconds_f64();
    assert!(
        (recorded - length).abs() <= 1.0,
        "{recorded} s of {length} s"
    );
    let room = recorder.room(&site.classroom).unwrap();
    assert_eq!(room.status().state, "uploading");
    assert!(
        room.status()
            .last_error
            .is_some_and(|e| e.contains("unreachable")),
        "the admin sees why: {:?}",
        room.status()
    );

    let gateway = duet::start_gateway(&site.config).await.unwrap();
    let lesson = registered_lesson(&site, Some(&recorder), Duration::from_secs(60)).await;
    assert_eq!(lesson["parts"], 1);
    assert!(archive_dir(&lesson).join("programme-1.mp4").exists());
    duet::recording::stop_recorder(recorder).await;
    gateway.stop().await;
    std::fs::remove_dir_all(&site.dir).unwrap();
}
