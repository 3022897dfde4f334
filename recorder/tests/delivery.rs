//! Delivery of finished lessons against real media (made here with GStreamer: x264 + AAC in
//! Matroska), a real local archive, a gateway stub on 127.0.0.1 that implements the
//! `POST /api/lessons` contract (and can be down, then up), and a real S3-compatible server
//! (`moto_server`, installed by `deploy/install-deps.sh --test`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use duet_recorder::delivery::archive::StoreRequest;
use duet_recorder::delivery::s3::{MultipartProgress, S3Client};
use duet_recorder::delivery::{
    Archive, ArchiveConfig, Delivery, DeliveryConfig, DeliveryError, DeliveryHandle, DeliveryState,
    StreamKind, probe_media, sha256_file,
};
use duet_recorder::manifest::{
    CutRecord, GapRecord, LessonManifest, LessonPhase, LessonPlan, PartRecord, RecordedMedia,
    SourceInfo,
};
use gstreamer as gst;
use gstreamer::prelude::*;
use serde_json::{Value, json};

const TOKEN: &str = "recorder-test-token";

// ---------------------------------------------------------------------------------------------
// Media, made once per test binary.

/// The Matroska files every lesson copies: programmes (H.264 + AAC) and sources (H.264).
struct Media {
    programme_1: PathBuf,
    programme_2: PathBuf,
    source_1: PathBuf,
    source_2: PathBuf,
}

/// A fixed launch line (no user input is formatted into it, only numbers and our own path).
/// `live`: written as a recorder writes live (`streamable`: no duration, no index), so that
/// a cut in it looks like a crash.
fn encode(path: &Path, frames: u32, audio: bool, live: bool) -> anyhow::Result<()> {
    let mut line = format!(
        "videotestsrc num-buffers={frames} ! video/x-raw,format=I420,width=640,height=360,framerate=25/1 \
         ! x264enc speed-preset=ultrafast key-int-max=25 ! h264parse ! queue \
         ! matroskamux name=m streamable={live} ! filesink location=\"{}\"",
        path.display()
    );
    if audio {
        // 40 ms buffers at 44.1 kHz: as many buffers as video frames, the same duration.
        line.push_str(&format!(
            " audiotestsrc num-buffers={frames} samplesperbuffer=1764 \
             ! audio/x-raw,rate=44100,channels=2 ! audioconvert ! avenc_aac ! aacparse ! queue ! m."
        ));
    }
    let pipeline = gst::parse::launch(&line)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().context("bus")?;
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(60),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null)?;
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => Ok(()),
        Some(gst::MessageView::Error(e)) => bail!("encoding {}: {}", path.display(), e.error()),
        _ => bail!("encoding {} timed out", path.display()),
    }
}

fn media() -> &'static Media {
    static MEDIA: OnceLock<Media> = OnceLock::new();
    MEDIA.get_or_init(|| {
        gst::init().expect("GStreamer init");
        let dir = scratch("media");
        let media = Media {
            programme_1: dir.join("programme-1.mkv"),
            programme_2: dir.join("programme-2.mkv"),
            source_1: dir.join("source-1.mkv"),
            source_2: dir.join("source-2.mkv"),
        };
        encode(&media.programme_1, 100, true, false).expect("programme 1");
        encode(&media.programme_2, 75, true, false).expect("programme 2");
        encode(&media.source_1, 100, false, false).expect("source 1");
        encode(&media.source_2, 75, false, false).expect("source 2");
        media
    })
}

/// A fresh directory under the target dir; passing tests remove theirs.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("delivery-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Writes a `FINALIZED` lesson with two parts (a programme and a teacher camera each, plus a
/// blackboard camera in part 1) and a gap between them, under `<root>/cls-301/<id>/`.
fn make_lesson(root: &Path, id: &str, start: &str) -> anyhow::Result<PathBuf> {
    let m = media();
    let dir = root.join("cls-301").join(id);
    for part in ["part-1", "part-2"] {
        std::fs::create_dir_all(dir.join(part))?;
    }
    let files = [
        (&m.programme_1, "part-1/programme.mkv"),
        (&m.source_1, "part-1/cam-teacher-1.mkv"),
        (&m.source_1, "part-1/cam-board-1.mkv"),
        (&m.programme_2, "part-2/programme.mkv"),
        (&m.source_2, "part-2/cam-teacher-1.mkv"),
    ];
    for (from, to) in files {
        std::fs::copy(from, dir.join(to))?;
    }
    let recorded = |path: &str, source: Option<&str>| -> anyhow::Result<RecordedMedia> {
        Ok(RecordedMedia {
            path: path.into(),
            source_id: source.map(str::to_owned),
            duration_s: probe_media(&dir.join(path))?.duration.as_secs_f64(),
        })
    };
    let start: chrono::DateTime<chrono::Utc> = start.parse()?;
    let s = |secs: i64| start + chrono::Duration::seconds(secs);
    let manifest = LessonManifest {
        plan: LessonPlan {
            id: id.into(),
            classroom_id: "cls-301".into(),
            series_id: Some("ser-math".into()),
            date: Some(start.date_naive().to_string()),
            period: Some(3),
            title: "数学 · 李老师".into(),
            teacher: "李老师".into(),
            subject: "数学".into(),
            start,
            end: s(45 * 60),
        },
        phase: LessonPhase::Finalized,
        sources: vec![
            SourceInfo {
                id: "cam-teacher".into(),
                role: "teacher_close_up".into(),
                label: "教师特写".into(),
            },
            SourceInfo {
                id: "cam-board".into(),
                role: "blackboard".into(),
                label: "板书".into(),
            },
        ],
        microphone: Some("mic-ceiling".into()),
        parts: vec![
            PartRecord {
                index: 1,
                started_at: s(0),
                ended_at: Some(s(4)),
                programme: Some(recorded("part-1/programme.mkv", None)?),
                sources: vec![
                    recorded("part-1/cam-teacher-1.mkv", Some("cam-teacher"))?,
                    recorded("part-1/cam-board-1.mkv", Some("cam-board"))?,
                ],
                cuts: vec![CutRecord {
                    at_s: 0.0,
                    shot: "SINGLE(cam-teacher)".into(),
                    reason: "OPENING".into(),
                }],
            },
            PartRecord {
                index: 2,
                started_at: s(20),
                ended_at: Some(s(23)),
                programme: Some(recorded("part-2/programme.mkv", None)?),
                sources: vec![recorded("part-2/cam-teacher-1.mkv", Some("cam-teacher"))?],
                cuts: vec![CutRecord {
                    at_s: 1.5,
                    shot: "SINGLE(cam-teacher)".into(),
                    reason: "FALLBACK".into(),
                }],
            },
        ],
        gaps: vec![GapRecord {
            source_id: None,
            from: s(4),
            to: s(20),
            reason: "recorder restarted".into(),
        }],
    };
    manifest.save(&dir)?;
    Ok(dir)
}

/// The archive names of [`make_lesson`]'s files, in delivery order.
const NAMES: [&str; 6] = [
    "programme-1.mp4",
    "sources/cam-teacher-p1-s1.mkv",
    "sources/cam-board-p1-s1.mkv",
    "programme-2.mp4",
    "sources/cam-teacher-p2-s1.mkv",
    "metadata.json",
];

// ---------------------------------------------------------------------------------------------
// The gateway stub: `POST /api/lessons`, idempotent by id, can be down or refuse.

#[derive(Default)]
struct GatewayLog {
    /// Registrations confirmed (first time: 201), by lesson id.
    lessons: HashMap<String, Value>,
    /// Every answered request: (lesson id, status).
    answers: Vec<(String, u16)>,
    /// Answer 503 while set.
    down: bool,
}

struct GatewayStub {
    addr: SocketAddr,
    log: Arc<Mutex<GatewayLog>>,
    _runtime: tokio::runtime::Runtime,
}

async fn register(
    State(log): State<Arc<Mutex<GatewayLog>>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let mut log = log.lock().unwrap();
    let body: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                json!({"message": e.to_string()}).to_string(),
            );
        }
    };
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    let status = if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        StatusCode::UNAUTHORIZED
    } else if log.down {
        StatusCode::SERVICE_UNAVAILABLE
    } else if id.contains("refused") {
        StatusCode::CONFLICT
    } else if log.lessons.contains_key(&id) {
        StatusCode::OK
    } else {
        log.lessons.insert(id.clone(), body);
        StatusCode::CREATED
    };
    log.answers.push((id, status.as_u16()));
    let message = match status {
        StatusCode::CONFLICT => "lesson id belongs to another classroom",
        StatusCode::SERVICE_UNAVAILABLE => "starting up",
        _ => "ok",
    };
    (status, json!({ "message": message }).to_string())
}

impl GatewayStub {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let log = Arc::new(Mutex::new(GatewayLog::default()));
        let app = axum::Router::new()
            .route("/api/lessons", axum::routing::post(register))
            .with_state(Arc::clone(&log));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            log,
            _runtime: runtime,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_down(&self, down: bool) {
        self.log.lock().unwrap().down = down;
    }

    /// (confirmed answers, all answers) for a lesson.
    fn answers(&self, id: &str) -> (usize, usize) {
        let log = self.log.lock().unwrap();
        let mine: Vec<u16> = log
            .answers
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, s)| *s)
            .collect();
        (
            mine.iter().filter(|s| matches!(s, 200 | 201)).count(),
            mine.len(),
        )
    }

    fn registration(&self, id: &str) -> Option<Value> {
        self.log.lock().unwrap().lessons.get(id).cloned()
    }
}

fn config(gateway: &GatewayStub, archive_dir: &Path) -> DeliveryConfig {
    DeliveryConfig {
        archive: ArchiveConfig::Local {
            dir: archive_dir.to_owned(),
        },
        gateway_url: gateway.url(),
        gateway_token: TOKEN.into(),
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
        keep_local: true,
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn all_stored(lesson: &Path) -> bool {
    DeliveryState::load(lesson)
        .ok()
        .flatten()
        .is_some_and(|s| s.all_stored())
}

fn archived(archive: &Path, id: &str) -> PathBuf {
    archive.join("cls-301").join("2026-12-01").join(id)
}

fn phase(lesson: &Path) -> anyhow::Result<LessonPhase> {
    Ok(LessonManifest::load(lesson)?.phase)
}

fn stop_within(handle: DeliveryHandle, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    handle.stop();
    ensure!(
        started.elapsed() < limit,
        "stop took {:?}",
        started.elapsed()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[test]
fn delivers_a_lesson_to_a_local_archive() -> anyhow::Result<()> {
    let dir = scratch("local");
    let (root, archive) = (dir.join("recordings"), dir.join("archive"));
    let id = "les_cls-301_ser-math_2026-12-01";
    let lesson = make_lesson(&root, id, "2026-12-01T02:00:00Z")?;
    let gateway = GatewayStub::start();

    // An interrupted earlier copy of a source file (a true prefix) and a damaged one: the first
    // is resumed, the second started over; both end up whole.
    let dest = archived(&archive, id);
    std::fs::create_dir_all(dest.join("sources"))?;
    let teacher = std::fs::read(lesson.join("part-1/cam-teacher-1.mkv"))?;
    std::fs::write(
        dest.join("sources/cam-teacher-p1-s1.mkv.part"),
        &teacher[..teacher.len() / 3],
    )?;
    let mut damaged = std::fs::read(lesson.join("part-1/cam-board-1.mkv"))?;
    damaged.truncate(damaged.len() / 2);
    damaged[100] ^= 0xff;
    std::fs::write(dest.join("sources/cam-board-p1-s1.mkv.part"), damaged)?;

    let handle = Delivery::start(config(&gateway, &archive), root.clone())?;
    ensure!(
        handle.wait_delivered(id, Duration::from_secs(60)),
        "not delivered: {:?}",
        handle.status()
    );
    let status = handle.status();
    assert_eq!(status.delivered, vec![id.to_owned()]);
    assert_eq!((status.pending, status.delivering.as_deref()), (0, None));
    assert_eq!(status.last_error, None);
    handle.stop();

    // The programmes: MP4, index at the front, H.264 + AAC, the Matroska's duration.
    for (n, mkv) in [(1, "part-1/programme.mkv"), (2, "part-2/programme.mkv")] {
        let mp4 = probe_media(&dest.join(format!("programme-{n}.mp4")))?;
        let original = probe_media(&lesson.join(mkv))?;
        assert!(mp4.index_at_front, "programme-{n}.mp4: moov after mdat");
        assert!(!original.index_at_front);
        assert!(mp4.container.contains("mp4"), "{}", mp4.container);
        let diff = mp4.duration.as_secs_f64() - original.duration.as_secs_f64();
        assert!(
            diff.abs() <= 0.1,
            "{:?} vs {:?}",
            mp4.duration,
            original.duration
        );
        let video = mp4.video().context("video")?;
        assert_eq!(video.codec, "h264");
        assert_eq!(
            video.kind,
            StreamKind::Video {
                width: 640,
                height: 360
            }
        );
        let audio = mp4.audio().context("audio")?;
        assert_eq!(audio.codec, "aac");
        assert!(
            matches!(
                audio.kind,
                StreamKind::Audio {
                    sample_rate: 44100,
                    channels: 2
                }
            ),
            "{:?}",
            audio.kind
        );
    }

    // Every file archived, whole, matching what the gateway was told; no partial file left.
    let registration = gateway.registration(id).context("registered")?;
    let files = registration["files"].as_array().context("files")?;
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, NAMES);
    for file in files {
        let path = dest.join(file["name"].as_str().unwrap());
        let (bytes, sha) = sha256_file(&path)?;
        assert_eq!(
            file["sha256"].as_str(),
            Some(sha.as_str()),
            "{}",
            path.display()
        );
        assert_eq!(file["bytes"].as_u64(), Some(bytes));
    }
    assert_eq!(
        sha256_file(&dest.join("sources/cam-teacher-p1-s1.mkv"))?,
        sha256_file(&lesson.join("part-1/cam-teacher-1.mkv"))?
    );
    let leftovers: Vec<_> = walk(&archive)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part" || e == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The registration: the contract's fields.
    assert_eq!(
        gateway.answers(id),
        (1, 1),
        "exactly one confirmed registration"
    );
    assert_eq!(registration["classroom_id"], "cls-301");
    assert_eq!(registration["series_id"], "ser-math");
    assert_eq!(registration["date"], "2026-12-01");
    assert_eq!(registration["period"], 3);
    assert_eq!(registration["title"], "数学 · 李老师");
    assert_eq!(registration["teacher"], "李老师");
    assert_eq!(registration["subject"], "数学");
    assert_eq!(registration["started_at"], "2026-12-01T02:00:00Z");
    assert_eq!(registration["ended_at"], "2026-12-01T02:00:23Z");
    assert_eq!(registration["parts"], 2);
    let uri = registration["archive_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("file:///") && uri.ends_with(&format!("/cls-301/2026-12-01/{id}/")),
        "{uri}"
    );
    assert_eq!(
        registration["gaps"],
        json!([{"source_id": null, "from": "2026-12-01T02:00:04Z", "to": "2026-12-01T02:00:20Z",
                "reason": "recorder restarted"}])
    );
    let kinds: Vec<&str> = files.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "programme",
            "source",
            "source",
            "programme",
            "source",
            "metadata"
        ]
    );
    assert_eq!(files[1]["source_id"], "cam-teacher");
    assert!(files[0]["duration_s"].as_f64().unwrap() > 3.5);
    assert_eq!(
        files[5]["duration_s"], 0.0,
        "metadata has no media: duration 0"
    );

    // metadata.json: plan, sources, parts with their files, gaps, cuts.
    let metadata: Value = serde_json::from_slice(&std::fs::read(dest.join("metadata.json"))?)?;
    assert_eq!(metadata["plan"]["id"], id);
    assert_eq!(metadata["sources"][1]["label"], "板书");
    assert_eq!(metadata["parts"][1]["files"][0]["name"], "programme-2.mp4");
    assert_eq!(metadata["parts"][1]["cuts"][0]["reason"], "FALLBACK");
    assert_eq!(metadata["gaps"][0]["reason"], "recorder restarted");

    // The lesson: DELIVERED, media kept (keep_local defaults to true).
    assert_eq!(phase(&lesson)?, LessonPhase::Delivered);
    assert!(lesson.join("part-1/programme.mkv").exists());
    let state = DeliveryState::load(&lesson)?.context("state")?;
    assert!(state.registered_at.is_some() && state.all_stored());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_gateway_down_delays_delivery_and_nothing_is_deleted_before() -> anyhow::Result<()> {
    let dir = scratch("gateway-down");
    let (root, archive) = (dir.join("recordings"), dir.join("archive"));
    let id = "les_cls-301_ser-math_2026-12-01";
    let lesson = make_lesson(&root, id, "2026-12-01T02:00:00Z")?;
    let gateway = GatewayStub::start();
    // Down until the recorder has been turned away three times (not a fixed time: packaging
    // takes longer on a loaded machine, and the test must not depend on it).
    gateway.set_down(true);
    let config = DeliveryConfig {
        keep_local: false,
        ..config(&gateway, &archive)
    };
    let handle = Delivery::start(config, root)?;

    wait_until("every file stored", Duration::from_secs(30), || {
        all_stored(&lesson)
    })?;
    wait_until("three refused attempts", Duration::from_secs(10), || {
        gateway.answers(id).1 >= 3
    })?;
    // The gateway has not confirmed: the lesson is whole and not DELIVERED.
    assert_eq!(gateway.answers(id).0, 0);
    assert_eq!(phase(&lesson)?, LessonPhase::Finalized);
    assert!(lesson.join("part-1/programme.mkv").exists());
    assert!(lesson.join("part-2/cam-teacher-1.mkv").exists());
    let status = handle.status();
    assert_eq!(status.delivering.as_deref(), Some(id));
    let error = status
        .last_error
        .context("an error while the gateway is down")?;
    assert!(
        error.contains("gateway unavailable") && error.contains("503"),
        "{error}"
    );

    gateway.set_down(false);
    ensure!(
        handle.wait_delivered(id, Duration::from_secs(30)),
        "{:?}",
        handle.status()
    );
    let (confirmed, all) = gateway.answers(id);
    assert_eq!(confirmed, 1);
    assert!(all >= 3, "retried with backoff while down: {all} attempts");
    assert_eq!(handle.status().last_error, None);
    handle.stop();

    // Delivered and keep_local = false: media gone, the record stays.
    assert_eq!(phase(&lesson)?, LessonPhase::Delivered);
    assert!(!lesson.join("part-1/programme.mkv").exists());
    assert!(!lesson.join("package").exists());
    assert!(lesson.join("lesson.json").exists() && lesson.join("delivery.json").exists());
    for name in NAMES {
        assert!(archived(&archive, id).join(name).exists(), "{name}");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn a_restart_before_registration_resumes_without_storing_again() -> anyhow::Result<()> {
    let dir = scratch("restart");
    let (root, archive) = (dir.join("recordings"), dir.join("archive"));
    let id = "les_cls-301_ser-math_2026-12-01";
    let lesson = make_lesson(&root, id, "2026-12-01T02:00:00Z")?;
    let gateway = GatewayStub::start();
    gateway.set_down(true);
    let slow = DeliveryConfig {
        // A long backoff: stop must interrupt it.
        retry_initial: Duration::from_secs(30),
        retry_max: Duration::from_secs(60),
        ..config(&gateway, &archive)
    };
    let handle = Delivery::start(slow, root.clone())?;
    wait_until("every file stored", Duration::from_secs(30), || {
        all_stored(&lesson)
    })?;
    wait_until("a refused attempt", Duration::from_secs(10), || {
        gateway.answers(id).1 > 0
    })?;
    stop_within(handle, Duration::from_secs(2))?;

    let identity = |name: &str| -> anyhow::Result<(u64, i64, i64)> {
        let meta = std::fs::metadata(archived(&archive, id).join(name))?;
        Ok((meta.ino(), meta.mtime(), meta.mtime_nsec()))
    };
    let before: Vec<_> = NAMES
        .iter()
        .map(|n| identity(n))
        .collect::<Result<_, _>>()?;
    assert_eq!(phase(&lesson)?, LessonPhase::Finalized);

    gateway.set_down(false);
    let handle = Delivery::start(config(&gateway, &archive), root.clone())?;
    assert_eq!(
        handle.status().pending + usize::from(handle.status().delivering.is_some()),
        1
    );
    ensure!(
        handle.wait_delivered(id, Duration::from_secs(30)),
        "{:?}",
        handle.status()
    );
    handle.stop();
    let after: Vec<_> = NAMES
        .iter()
        .map(|n| identity(n))
        .collect::<Result<_, _>>()?;
    assert_eq!(before, after, "a stored file was stored again");
    assert_eq!(gateway.answers(id).0, 1);
    assert_eq!(phase(&lesson)?, LessonPhase::Delivered);

    // A third start finds nothing to do.
    let handle = Delivery::start(config(&gateway, &archive), root)?;
    assert_eq!(handle.status().pending, 0);
    handle.stop();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn a_truncated_programme_fails_its_lesson_only() -> anyhow::Result<()> {
    let dir = scratch("truncated");
    let (root, archive) = (dir.join("recordings"), dir.join("archive"));
    let bad = "les_cls-301_ser-math_2026-11-30";
    let good = "les_cls-301_ser-math_2026-12-01";
    let refused = "les_cls-301_refused_2026-12-01";
    let bad_dir = make_lesson(&root, bad, "2026-11-30T02:00:00Z")?;
    make_lesson(&root, good, "2026-12-01T02:00:00Z")?;
    let refused_dir = make_lesson(&root, refused, "2026-12-01T01:00:00Z")?;
    // Cut the first part's programme after it was closed and measured.
    let programme = bad_dir.join("part-1/programme.mkv");
    let len = std::fs::metadata(&programme)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&programme)?
        .set_len(len / 2)?;
    let gateway = GatewayStub::start();
    let config = DeliveryConfig {
        keep_local: false,
        ..config(&gateway, &archive)
    };
    let handle = Delivery::start(config, root)?;
    ensure!(
        handle.wait_delivered(good, Duration::from_secs(60)),
        "{:?}",
        handle.status()
    );
    let status = handle.status();
    handle.stop();

    assert_eq!(status.failed, vec![bad.to_owned(), refused.to_owned()]);
    assert_eq!(status.delivered, vec![good.to_owned()]);
    // The damaged lesson: a clear error, nothing claimed as good, everything left on disk.
    let err = DeliveryState::load(&bad_dir)?;
    assert!(err.is_none_or(|s| s.files.is_none()), "not packaged");
    assert_eq!(phase(&bad_dir)?, LessonPhase::Finalized);
    assert!(programme.exists() && bad_dir.join("part-2/programme.mkv").exists());
    assert!(!bad_dir.join("package/programme-1.mp4").exists());
    assert!(!bad_dir.join("package/programme-1.mp4.tmp").exists());
    assert!(!archived(&archive, bad).exists());
    assert_eq!(gateway.answers(bad), (0, 0));

    // The refused lesson: the gateway's message, nothing deleted, not retried.
    assert_eq!(gateway.answers(refused), (0, 1));
    assert_eq!(phase(&refused_dir)?, LessonPhase::Finalized);
    assert!(refused_dir.join("part-1/programme.mkv").exists());
    let last = status.last_error.context("last error")?;
    assert!(
        last.contains(refused) && last.contains("409") && last.contains("another classroom"),
        "{last}"
    );

    // The error for the damaged file, straight from packaging.
    let manifest = LessonManifest::load(&bad_dir)?;
    let err = duet_recorder::delivery::package_lesson(&bad_dir, &manifest).unwrap_err();
    assert!(matches!(err, DeliveryError::Media { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("programme.mkv") && text.contains("truncated"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn a_programme_cut_off_by_a_crash_is_packaged_as_far_as_it_goes() -> anyhow::Result<()> {
    media(); // GStreamer initialised
    let dir = scratch("crash-cut");
    let mkv = dir.join("programme.mkv");
    encode(&mkv, 150, true, true)?;
    let len = std::fs::metadata(&mkv)?.len();
    // Cut mid-cluster, as a power loss would.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&mkv)?
        .set_len(len * 7 / 10 + 333)?;
    // What crash recovery writes into the manifest: the media actually there.
    let there = probe_media(&mkv)?.duration.as_secs_f64();
    assert!((3.0..5.9).contains(&there), "{there}");

    let mp4 = dir.join("programme-1.mp4");
    let probe = duet_recorder::delivery::remux_to_mp4(&mkv, &mp4, Some(there))?;
    assert!(probe.index_at_front);
    assert!(
        (probe.duration.as_secs_f64() - there).abs() <= 0.1,
        "{:?} vs {there}",
        probe.duration
    );
    assert_eq!(probe_media(&mp4)?, probe);

    // The manifest claims the full 6 s: the file lost media after it was measured.
    std::fs::remove_file(&mp4)?;
    let err = duet_recorder::delivery::remux_to_mp4(&mkv, &mp4, Some(6.0)).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(!mp4.exists());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn a_lesson_still_recording_is_not_delivered() -> anyhow::Result<()> {
    let dir = scratch("recording");
    let (root, archive) = (dir.join("recordings"), dir.join("archive"));
    let id = "les_cls-301_ser-math_2026-12-01";
    let lesson = make_lesson(&root, id, "2026-12-01T02:00:00Z")?;
    let mut manifest = LessonManifest::load(&lesson)?;
    manifest.phase = LessonPhase::Recording;
    manifest.save(&lesson)?;
    let gateway = GatewayStub::start();
    let handle = Delivery::start(config(&gateway, &archive), root)?;
    assert_eq!(
        handle.status().pending,
        0,
        "the scan takes only FINALIZED lessons"
    );
    handle.enqueue(lesson.clone());
    wait_until("the refusal", Duration::from_secs(10), || {
        !handle.status().failed.is_empty()
    })?;
    let error = handle.status().last_error.context("error")?;
    assert!(error.contains("Recording"), "{error}");
    handle.stop();
    assert!(lesson.join("part-1/programme.mkv").exists());
    assert!(!archive.join("cls-301").exists());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// S3, against moto_server.

/// A `moto_server` on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> anyhow::Result<Self> {
        let program = std::env::var("DUET_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {program}: the S3 tests need moto_server \
                     (`deploy/install-deps.sh --test` installs it; or set DUET_MOTO_SERVER)"
                )
            })?;
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                Instant::now() < deadline,
                "moto_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }

    fn client(&self, bucket: &str) -> S3Client {
        S3Client::new(
            &self.endpoint,
            bucket,
            "us-east-1",
            "test-key",
            "test-secret",
        )
    }

    fn config(&self, bucket: &str, part_size: u64) -> ArchiveConfig {
        ArchiveConfig::S3 {
            endpoint: self.endpoint.clone(),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            access_key: "test-key".into(),
            secret_key: "test-secret".into(),
            prefix: "duet".into(),
            part_size,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn delivers_a_lesson_to_s3() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let client = moto.client("lessons");
    client
        .create_bucket()
        .map_err(|e| anyhow::anyhow!(e.reason))?;
    let dir = scratch("s3");
    let root = dir.join("recordings");
    let id = "les_cls-301_ser-math_2026-12-01";
    let lesson = make_lesson(&root, id, "2026-12-01T02:00:00Z")?;
    let gateway = GatewayStub::start();
    let config = DeliveryConfig {
        archive: moto.config("lessons", 5 << 20),
        ..config(&gateway, &dir.join("unused"))
    };
    let handle = Delivery::start(config, root)?;
    ensure!(
        handle.wait_delivered(id, Duration::from_secs(60)),
        "{:?}",
        handle.status()
    );
    handle.stop();

    let registration = gateway.registration(id).context("registered")?;
    assert_eq!(
        registration["archive_uri"],
        format!("s3://lessons/duet/cls-301/2026-12-01/{id}/")
    );
    for file in registration["files"].as_array().context("files")? {
        let key = format!(
            "duet/cls-301/2026-12-01/{id}/{}",
            file["name"].as_str().unwrap()
        );
        let body = client.get(&key).map_err(|e| anyhow::anyhow!(e.reason))?;
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&body))
        };
        assert_eq!(file["sha256"].as_str(), Some(sha.as_str()), "{key}");
    }
    assert_eq!(gateway.answers(id), (1, 1));
    assert_eq!(phase(&lesson)?, LessonPhase::Delivered);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn an_interrupted_multipart_upload_resumes_with_the_missing_parts() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let client = moto.client("big");
    client
        .create_bucket()
        .map_err(|e| anyhow::anyhow!(e.reason))?;
    let dir = scratch("multipart");
    let src = dir.join("big.bin");
    let data: Vec<u8> = (0..(12u32 << 20) + 777)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data)?;
    let (bytes, sha256) = sha256_file(&src)?;
    let archive = Archive::open(&moto.config("big", 5 << 20))?;
    let req = StoreRequest {
        src: &src,
        key: "cls/2026-12-01/les/programme-1.mp4",
        bytes,
        sha256: &sha256,
    };
    let stop = AtomicBool::new(false);

    // The first attempt "crashes" after part 1 was confirmed: the checkpoint refuses to go on.
    let mut saved: Option<MultipartProgress> = None;
    let mut crash_after_one = |p: Option<&MultipartProgress>| {
        saved = p.cloned();
        match p {
            Some(p) if !p.parts.is_empty() => Err(DeliveryError::Stopped),
            _ => Ok(()),
        }
    };
    let err = archive
        .store(req, None, &mut crash_after_one, &stop)
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Stopped));
    let progress = saved.clone().context("progress persisted")?;
    assert_eq!(progress.parts.len(), 1);

    let mut finished = false;
    let outcome = archive.store(
        req,
        Some(progress),
        &mut |p| {
            finished = p.is_none();
            Ok(())
        },
        &stop,
    )?;
    assert!(finished);
    assert_eq!(outcome.resumed_from, 5 << 20);
    assert_eq!(outcome.sent, bytes - (5 << 20));
    let body = client
        .get("duet/cls/2026-12-01/les/programme-1.mp4")
        .map_err(|e| anyhow::anyhow!(e.reason))?;
    assert!(body == data, "the assembled object differs");

    // Stored and verified: a second store sends nothing.
    let outcome = archive.store(req, None, &mut |_| Ok(()), &stop)?;
    assert!(outcome.already_present);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
