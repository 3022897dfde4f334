//! A live class recorded, archived and reviewed, in real Chromium through `duet up` with the demo
//! district, inside a network namespace this test creates.
//!
//! `record_and_review`:
//! - the teacher (王老师) and two receiving classrooms sign in, join the class on now and hold it
//!   for 60 s; the teacher's fake microphone plays a WAV with a known speech/silence pattern
//!   (24 s speech, 6 s silence, looped), the classrooms' a near-silent one;
//! - they leave; the lesson must reach the archive (the time it took is printed);
//! - the S-T analysis computed from the media (3 s samples; a sample is T when the teacher
//!   speaks at least a third of it, so a 6 s silence makes 5/3 S samples of every 10 on average,
//!   Rt 0.83; where the silences fall against the samples and the class's first and last seconds
//!   move it by up to 3 samples of about 22): Rt 0.83 ± 0.12, the teacher-talk share 0.8 ± 0.1,
//!   Ch ≤ 0.3, lesson type 讲授型 (lecture);
//! - the district admin assigns the demo reviewer; the reviewer opens the review page, the
//!   composed video plays (`currentTime` advances), adds comments at three times, fills the
//!   rubric, and sees all of it after a reload;
//! - a teacher of another school gets 404 for the lesson and its media; an unassigned reviewer's
//!   comment is refused and stores nothing;
//! - the teacher exports a 晒课 clip, which probes as H.264 + AAC, ≥ 720×576, 0.5–1 Mbit/s, clip
//!   + 5 s title card long (± 0.5 s).
//!
//! `recorder_killed_and_classroom_dropout`: the live recorder runs as its own process; it is
//! killed (SIGKILL) mid-class and started again, and a classroom leaves and comes back: one
//! lesson, with two parts, a whole-recording gap where the recorder was away, and a gap on the
//! classroom's tracks.
//!
//! `harness = false`: `main` must enter the network namespace before any thread exists.

use anyhow::{Context, Result, bail, ensure};
use duet::DuetConfig;
use duet_tests::api::{ApiSession, fetch};
use duet_tests::class::{inbound, num, wait_until};
use duet_tests::{Browser, LaunchOptions, Page};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the class is held.
const CLASS: Duration = Duration::from_secs(60);

fn config(host: &str, data_dir: &Path) -> DuetConfig {
    let _ = std::fs::remove_dir_all(data_dir);
    let mut config = DuetConfig {
        data_dir: data_dir.to_owned(),
        ..DuetConfig::default()
    };
    config.gateway.listen = format!("{host}:0");
    config.gateway.st_interval_ms = 3000;
    config.sfu.rtc_port_min = 52_000;
    config.sfu.rtc_port_max = 52_999;
    // The demo's recording room would compete for the two cores.
    config.recorder.demo_room = false;
    config.live.poll_ms = 500;
    config.live.end_grace_s = 3;
    config
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

fn password(running: &duet::Running, user: &str) -> Result<String> {
    running
        .demo_logins
        .iter()
        .find(|l| l.username == user)
        .map(|l| l.password.clone())
        .with_context(|| format!("demo login {user}"))
}

/// Writes the two fake microphones' WAVs: the teacher talks 24 s of every 30, the classrooms
/// are quiet.
fn microphones(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    use duet_recorder::analysis::synth::write_speech_pattern_wav;
    std::fs::create_dir_all(dir)?;
    let teacher = dir.join("teacher.wav");
    let pupils = dir.join("pupils.wav");
    write_speech_pattern_wav(&teacher, &[(true, 24_000), (false, 6_000)], 7)?;
    write_speech_pattern_wav(&pupils, &[(false, 30_000)], 8)?;
    Ok((teacher, pupils))
}

fn browser_with_mic(origin: &str, wav: &Path) -> LaunchOptions {
    LaunchOptions::default()
        .secure_origin(origin.to_owned())
        .arg("--window-size=1366,768")
        .arg(format!(
            "--use-file-for-fake-audio-capture={}",
            wav.display()
        ))
        .arg("--autoplay-policy=no-user-gesture-required")
}

/// Waits until the class is on in every page: classrooms decode the teacher, the teacher decodes
/// the classrooms. Returns the teacher's participant id.
async fn class_on(teacher: &Page, rooms: &[(&Page, &str)]) -> Result<String> {
    let tid = teacher
        .wait_for(
            "window.duet && window.duet.state.joined && window.duet.state.you.id",
            Duration::from_secs(30),
        )
        .await?;
    let tid = tid.as_str().unwrap_or_default().to_owned();
    let mut room_ids = Vec::new();
    for (page, who) in rooms {
        page.wait_for(
            "window.duet && window.duet.state.joined",
            Duration::from_secs(30),
        )
        .await
        .with_context(|| format!("{who} did not join"))?;
        let id = page.evaluate("window.duet.state.you.id").await?;
        room_ids.push(id.as_str().unwrap_or_default().to_owned());
        wait_until(
            page,
            &format!("{who} to decode the teacher"),
            Duration::from_secs(60),
            |s| num(inbound(s, &tid, "camera"), "framesDecoded") > 20.0,
        )
        .await?;
    }
    wait_until(
        teacher,
        "the teacher to decode the classrooms",
        Duration::from_secs(60),
        |s| {
            room_ids
                .iter()
                .all(|r| num(inbound(s, r, "camera"), "framesDecoded") > 20.0)
        },
    )
    .await?;
    Ok(tid)
}

/// The live lesson(s) in the archive as the district admin sees them.
fn live_lessons(district: &ApiSession) -> Result<Vec<Value>> {
    let a = district.get("/api/lessons?kind=live")?;
    ensure!(a.status == 200, "GET /api/lessons: {} {}", a.status, a.body);
    Ok(a.body.as_array().cloned().unwrap_or_default())
}

async fn record_and_review(host: &str) -> Result<()> {
    let data_dir = std::env::temp_dir().join(format!("duet-live-review-{}", std::process::id()));
    let config = config(host, &data_dir);
    let (teacher_wav, pupils_wav) = microphones(&data_dir.join("mics"))?;
    let running = duet::start_up(&config).await.context("duet up")?;
    let base = format!("http://{host}:{}", running.addr.port());
    let teacher_browser = Browser::launch(browser_with_mic(&base, &teacher_wav)).await?;
    let rooms_browser = Browser::launch(browser_with_mic(&base, &pupils_wav)).await?;
    let result = async {
        // The class.
        let teacher = teacher_browser.new_page(&format!("{base}/admin")).await?;
        teacher
            .sign_in_and_join("teacher", &password(&running, "teacher")?)
            .await?;
        teacher
            .wait_for("window.duet && window.duet.state.joined", Duration::from_secs(30))
            .await?;
        teacher
            .evaluate("window.duet.shareScreen({synthetic: true})")
            .await?;
        let a = rooms_browser.new_page(&format!("{base}/admin")).await?;
        a.sign_in_and_join("room-a", &password(&running, "room-a")?)
            .await?;
        let b = rooms_browser.new_page(&format!("{base}/admin")).await?;
        b.sign_in_and_join("room-b", &password(&running, "room-b")?)
            .await?;
        let held = Instant::now();
        class_on(&teacher, &[(&a, "room-a"), (&b, "room-b")]).await?;
        let live = running.live.as_ref().context("the live recorder runs")?;
        ensure!(
            live.status().recording.len() == 1,
            "the recorder records {:?}",
            live.status()
        );
        if let Some(rest) = CLASS.checked_sub(held.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        for p in [teacher, a, b] {
            p.close().await?;
        }
        let ended = Instant::now();

        // The lesson reaches the archive.
        let deadline = ended + Duration::from_secs(300);
        loop {
            let s = live.status();
            if !s.delivered.is_empty() {
                break;
            }
            ensure!(s.failed.is_empty(), "delivery failed: {:?}", s.failed);
            ensure!(Instant::now() < deadline, "no lesson in the archive after 300 s: {s:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!(
            "live lesson in the archive {:.1} s after the class ended (60 s class, 3 pages)",
            ended.elapsed().as_secs_f64()
        );
        let district_pw = password(&running, "district")?;
        let base2 = base.clone();
        let district = blocking(move || ApiSession::login(&base2, "district", &district_pw)).await?;
        let d = district.clone();
        let lessons = blocking(move || live_lessons(&d)).await?;
        ensure!(lessons.len() == 1, "one live lesson, not {lessons:#?}");
        let lesson = lessons[0].clone();
        let id = lesson["id"].as_str().context("lesson id")?.to_owned();
        let files: Vec<&str> = lesson["files"]
            .as_array()
            .context("files")?
            .iter()
            .filter_map(|f| f["name"].as_str())
            .collect();
        ensure!(files.contains(&"review.mp4"), "files {files:?}");
        ensure!(
            files.iter().filter(|f| f.starts_with("tracks/")).count() >= 7,
            "three cameras, three microphones and the screen: {files:?}"
        );

        // S-T analysis from the media.
        let (d, lid) = (district.clone(), id.clone());
        let st = blocking(move || d.get(&format!("/api/lessons/{lid}/st"))).await?;
        ensure!(st.status == 200, "st: {} {}", st.status, st.body);
        let auto = &st.body["automatic"];
        let rt = auto["rt"].as_f64().context("rt")?;
        let ch = auto["ch"].as_f64().context("ch")?;
        let teacher_share = auto["shares"]["teacher"].as_f64().context("shares")?;
        println!(
            "S-T from the media: Rt {rt:.3}, Ch {ch:.3}, type {}, teacher talk {teacher_share:.3}, n {}, interval {} ms",
            auto["lesson_type"], auto["n"], auto["interval_ms"]
        );
        ensure!((rt - 0.83).abs() <= 0.12, "Rt {rt} is not 0.83 ± 0.12");
        ensure!(ch <= 0.3, "Ch {ch} above 0.3");
        ensure!(
            (teacher_share - 0.8).abs() <= 0.1,
            "teacher talk {teacher_share} is not 0.8 ± 0.1"
        );
        ensure!(auto["lesson_type"] == "lecture", "type {}", auto["lesson_type"]);
        ensure!(auto["interval_ms"] == 3000 && auto["variant"] == "st", "{auto}");

        // Reviewer assignment, then the reviewer at work in the browser.
        let (d, lid) = (district.clone(), id.clone());
        let assigned = blocking(move || {
            d.send(
                "PUT",
                &format!("/api/lessons/{lid}/reviewers"),
                &json!({"reviewer_ids": ["usr_demo_reviewer"]}),
            )
        })
        .await?;
        ensure!(assigned.status == 200, "assign: {} {}", assigned.status, assigned.body);
        let reviewer = rooms_browser.new_page(&format!("{base}/admin")).await?;
        reviewer
            .sign_in("reviewer", &password(&running, "reviewer")?)
            .await?;
        reviewer.navigate(&format!("{base}/review/{id}")).await?;
        reviewer
            .wait_for(
                "document.querySelector('#player') && document.querySelector('#player').readyState >= 2",
                Duration::from_secs(30),
            )
            .await
            .context("the composed video did not load")?;
        reviewer
            .evaluate("(async () => { const v = document.querySelector('#player'); v.muted = true; await v.play(); return true; })()")
            .await?;
        let t0 = reviewer
            .evaluate("document.querySelector('#player').currentTime")
            .await?
            .as_f64()
            .unwrap_or(0.0);
        reviewer
            .wait_for(
                &format!("document.querySelector('#player').currentTime > {} + 1.5", t0),
                Duration::from_secs(15),
            )
            .await
            .context("the composed video does not play")?;
        for (at, category, text) in [
            (5.0, "highlight", "导入自然，问题设计有梯度"),
            (20.0, "issue", "接收课堂学生发言机会少"),
            (40.0, "suggestion", "可请远端学生展示作业"),
        ] {
            reviewer
                .evaluate(&format!(
                    "(() => {{ const v = document.querySelector('#player'); v.pause(); v.currentTime = {at};\
                     document.querySelector('#comment-category').value = {};\
                     document.querySelector('#comment-text').value = {}; return true; }})()",
                    json!(category),
                    json!(text)
                ))
                .await?;
            reviewer
                .wait_for(
                    &format!("Math.abs(document.querySelector('#player').currentTime - {at}) < 0.5"),
                    Duration::from_secs(10),
                )
                .await?;
            let before = reviewer
                .evaluate("document.querySelectorAll('.comment-item').length")
                .await?
                .as_f64()
                .unwrap_or(0.0);
            reviewer
                .evaluate("document.querySelector('#comment-submit').click(); true")
                .await?;
            reviewer
                .wait_for(
                    &format!("document.querySelectorAll('.comment-item').length > {before}"),
                    Duration::from_secs(10),
                )
                .await
                .with_context(|| format!("the comment at {at} s did not appear"))?;
        }
        // The rubric: every item gets its weight minus one (the default rubric: 7 items, 93).
        let filled = reviewer
            .evaluate(
                "(() => { let n = 0; for (const i of document.querySelectorAll('#rubric-form input[name^=\"score-\"]')) {\
                   i.value = String(Math.max(0, Number(i.max) - 1)); i.dispatchEvent(new Event('input', {bubbles: true})); n++; }\
                   document.querySelector('#review-summary').value = '整体结构清晰，双师配合良好。'; return n; })()",
            )
            .await?;
        ensure!(filled.as_f64() == Some(7.0), "rubric inputs: {filled}");
        reviewer
            .evaluate("document.querySelector('#review-save').click(); true")
            .await?;
        reviewer
            .wait_for(
                "(document.querySelector('#final-score')?.textContent || '').includes('93')",
                Duration::from_secs(10),
            )
            .await
            .context("the saved score sheet did not show 93")?;
        reviewer.navigate(&format!("{base}/review/{id}")).await?;
        reviewer
            .wait_for(
                "document.querySelectorAll('.comment-item').length === 3",
                Duration::from_secs(15),
            )
            .await
            .context("three comments after a reload")?;
        let at = reviewer
            .evaluate("[...document.querySelectorAll('.comment-item')].map(e => Number(e.dataset.atMs))")
            .await?;
        let at: Vec<f64> = at
            .as_array()
            .context("times")?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        ensure!(
            at.len() == 3
                && (at[0] - 5000.0).abs() < 600.0
                && (at[1] - 20000.0).abs() < 600.0
                && (at[2] - 40000.0).abs() < 600.0,
            "comment times {at:?}"
        );
        reviewer
            .wait_for(
                "(document.querySelector('#final-score')?.textContent || '').includes('93')",
                Duration::from_secs(10),
            )
            .await
            .context("the score after a reload")?;
        reviewer
            .wait_for("document.querySelector('#st-chart svg, svg#st-chart')", Duration::from_secs(10))
            .await
            .context("the S-T chart")?;
        reviewer.close().await?;

        // Refusals: another school's teacher, an unassigned reviewer.
        let (d, lid, base2) = (district.clone(), id.clone(), base.clone());
        blocking(move || refusals(&d, &base2, &lid)).await?;

        // 晒课: the teacher exports a clip of [10 s, 25 s].
        let (pw, lid, base2) = (password(&running, "teacher")?, id.clone(), base.clone());
        blocking(move || clip_export(&base2, &pw, &lid)).await?;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        eprintln!("--- chromium log tail ---\n{}", rooms_browser.log_tail(40));
    }
    drop(teacher_browser);
    drop(rooms_browser);
    running.stop().await;
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

/// A teacher of a school outside the pairing, and a reviewer not assigned: refused, and nothing
/// changes.
fn refusals(district: &ApiSession, base: &str, lesson: &str) -> Result<()> {
    let school = district.send(
        "POST",
        "/api/schools",
        &json!({"name": "西河中学", "kind": "urban"}),
    )?;
    ensure!(
        school.status == 201 || school.status == 200,
        "school: {} {}",
        school.status,
        school.body
    );
    let school_id = school.body["id"].as_str().context("school id")?;
    let mut logins = Vec::new();
    for (username, role, school) in [
        ("other-teacher", "teacher", Some(school_id)),
        ("other-reviewer", "reviewer", None),
    ] {
        let u = district.send(
            "POST",
            "/api/users",
            &json!({"username": username, "display_name": username, "role": role,
                    "school_id": school, "password": "a-long-password-1"}),
        )?;
        ensure!(
            u.status == 201 || u.status == 200,
            "user {username}: {} {}",
            u.status,
            u.body
        );
        logins.push(ApiSession::login(base, username, "a-long-password-1")?);
    }
    let (other_teacher, other_reviewer) = (&logins[0], &logins[1]);
    for path in [
        format!("/api/lessons/{lesson}"),
        format!("/api/lessons/{lesson}/media"),
        format!("/api/lessons/{lesson}/comments"),
    ] {
        let a = other_teacher.get(&path)?;
        ensure!(
            a.status == 404,
            "another school's teacher GET {path}: {} {}",
            a.status,
            a.body
        );
    }
    let listed = other_teacher.get("/api/lessons")?;
    ensure!(
        listed.status == 200,
        "another school's teacher lists: {}",
        listed.status
    );
    ensure!(
        !listed.body.to_string().contains(lesson),
        "another school's teacher lists the lesson"
    );
    let before = district.get(&format!("/api/lessons/{lesson}/comments"))?;
    ensure!(
        before.status == 200 && before.body.as_array().is_some_and(|c| c.len() == 3),
        "the district reads the three comments: {} {}",
        before.status,
        before.body
    );
    let refused = other_reviewer.send(
        "POST",
        &format!("/api/lessons/{lesson}/comments"),
        &json!({"at_ms": 1000, "category": "other", "body": "不该被保存"}),
    )?;
    ensure!(
        refused.status == 403 || refused.status == 404,
        "an unassigned reviewer's comment: {} {}",
        refused.status,
        refused.body
    );
    let after = district.get(&format!("/api/lessons/{lesson}/comments"))?;
    ensure!(
        before.body == after.body,
        "a refused comment changed the comments"
    );
    Ok(())
}

/// The lesson's teacher exports [10 s, 25 s]; the file is checked as the 晒课 platform would.
fn clip_export(base: &str, password: &str, lesson: &str) -> Result<()> {
    let teacher = ApiSession::login(base, "teacher", password)?;
    let title = json!({"course": "数学", "grade": "三年级", "edition": "人教版",
                       "teacher": "王老师", "school": "城关小学"});
    let mut bad = title.clone();
    bad["start_ms"] = json!(10_000);
    bad["end_ms"] = json!(10_000_000);
    let refused = teacher.send("POST", &format!("/api/lessons/{lesson}/clips"), &bad)?;
    ensure!(
        refused.status == 422,
        "a clip beyond the lesson: {} {}",
        refused.status,
        refused.body
    );
    let mut body = title;
    body["start_ms"] = json!(10_000);
    body["end_ms"] = json!(25_000);
    let started = Instant::now();
    let clip = teacher.send("POST", &format!("/api/lessons/{lesson}/clips"), &body)?;
    ensure!(clip.status == 202, "clip: {} {}", clip.status, clip.body);
    let clip_id = clip.body["id"].as_str().context("clip id")?.to_owned();
    let mut progress_seen = Vec::new();
    let url = loop {
        let c = teacher.get(&format!("/api/clips/{clip_id}"))?;
        if let Some(p) = c.body["progress"].as_f64() {
            progress_seen.push(p);
        }
        match c.body["state"].as_str() {
            Some("done") => break c.body["url"].as_str().context("clip url")?.to_owned(),
            Some("failed") => bail!("the clip failed: {}", c.body),
            _ => {}
        }
        ensure!(
            started.elapsed() < Duration::from_secs(180),
            "the clip took over 180 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    println!(
        "clip of 15 s rendered in {:.1} s (progress seen: {progress_seen:?})",
        started.elapsed().as_secs_f64()
    );
    let url = if url.starts_with("http") {
        url
    } else {
        format!("{base}{url}")
    };
    let (status, _, bytes) = fetch(&url, None)?;
    ensure!(
        status == 200 && bytes.len() > 10_000,
        "clip download: {status}, {} bytes",
        bytes.len()
    );
    let path = std::env::temp_dir().join(format!("duet-clip-{}.mp4", std::process::id()));
    std::fs::write(&path, &bytes)?;
    let probe = duet_recorder::delivery::package::probe_media(&path)?;
    let _ = std::fs::remove_file(&path);
    let video = probe.video().context("the clip has video")?;
    let audio = probe.audio().context("the clip has audio")?;
    ensure!(
        video.codec == "h264" && audio.codec == "aac",
        "codecs {} / {}",
        video.codec,
        audio.codec
    );
    let (width, height) = match video.kind {
        duet_recorder::delivery::package::StreamKind::Video { width, height } => (width, height),
        _ => (0, 0),
    };
    ensure!(width >= 720 && height >= 576, "size {width}×{height}");
    ensure!(probe.index_at_front, "the clip's index is not at the front");
    let duration = probe.duration.as_secs_f64();
    ensure!(
        (duration - 20.0).abs() <= 0.5,
        "duration {duration} s, not 15 s + 5 s card"
    );
    let kbps = bytes.len() as f64 * 8.0 / duration / 1000.0;
    println!("clip: {duration:.2} s, {kbps:.0} kbit/s, {width}×{height}");
    ensure!((500.0..=1000.0).contains(&kbps), "bitrate {kbps} kbit/s");
    Ok(())
}

/// A child process killed when dropped (a failing test must not leave a recorder running).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Dump files of the live recording under `data_dir`.
fn dumps(data_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rooms) = std::fs::read_dir(data_dir.join("live")) {
        for room in rooms.flatten() {
            if let Ok(files) = std::fs::read_dir(room.path().join("tracks")) {
                out.extend(
                    files
                        .flatten()
                        .filter_map(|f| f.file_name().to_str().map(str::to_owned)),
                );
            }
        }
    }
    out.sort();
    out
}

async fn wait_dumps(
    data_dir: &Path,
    what: &str,
    ok: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = dumps(data_dir);
        if ok(&d) {
            return Ok(d);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}; dumps: {d:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn recorder_killed_and_classroom_dropout(host: &str) -> Result<()> {
    let data_dir = std::env::temp_dir().join(format!("duet-live-kill-{}", std::process::id()));
    let mut config = config(host, &data_dir);
    config.live.enabled = false;
    let (teacher_wav, pupils_wav) = microphones(&data_dir.join("mics"))?;
    let running = duet::start_up(&config).await.context("duet up")?;
    let base = format!("http://{host}:{}", running.addr.port());
    let store = &running.gateway.as_ref().context("gateway")?.store;
    let token = duet::live::issue_live_token(store)
        .await?
        .context("a district for the token")?;
    // The recorder's own configuration: the same data directory, so the same archive.
    let rec_path = data_dir.join("live-recorder.toml");
    std::fs::write(
        &rec_path,
        format!(
            "data_dir = {}\n[live]\ngateway_url = {}\ngateway_token = {}\npoll_ms = 500\nend_grace_s = 3\n",
            json!(data_dir.display().to_string()),
            json!(base),
            json!(token)
        ),
    )?;
    let start_recorder = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_live-recorder"))
            .arg(&rec_path)
            .env("RUST_LOG", "warn")
            .spawn()
            .context("starting the live recorder")
    };
    let mut recorder = KillOnDrop(start_recorder()?);
    let teacher_browser = Browser::launch(browser_with_mic(&base, &teacher_wav)).await?;
    let rooms_browser = Browser::launch(browser_with_mic(&base, &pupils_wav)).await?;
    let result = async {
        let teacher = teacher_browser.new_page(&format!("{base}/admin")).await?;
        teacher
            .sign_in_and_join("teacher", &password(&running, "teacher")?)
            .await?;
        let a = rooms_browser.new_page(&format!("{base}/admin")).await?;
        a.sign_in_and_join("room-a", &password(&running, "room-a")?)
            .await?;
        class_on(&teacher, &[(&a, "room-a")]).await?;
        let first = wait_dumps(&data_dir, "the recorder's first dumps", |d| d.len() >= 4).await?;
        tokio::time::sleep(Duration::from_secs(10)).await;

        // Killed mid-class, without a chance to close anything; started again 5 s later.
        recorder.0.kill()?;
        recorder.0.wait()?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        recorder = KillOnDrop(start_recorder()?);
        let n = first.len();
        wait_dumps(&data_dir, "the restarted recorder's dumps", |d| {
            d.len() >= n + 4
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(8)).await;

        // The classroom drops out and comes back.
        a.close().await?;
        tokio::time::sleep(Duration::from_secs(8)).await;
        let a = rooms_browser.new_page(&format!("{base}/admin")).await?;
        a.sign_in_and_join("room-a", &password(&running, "room-a")?)
            .await?;
        class_on(&teacher, &[(&a, "room-a")]).await?;
        tokio::time::sleep(Duration::from_secs(8)).await;
        teacher.close().await?;
        a.close().await?;

        let district_pw = password(&running, "district")?;
        let base2 = base.clone();
        let district =
            blocking(move || ApiSession::login(&base2, "district", &district_pw)).await?;
        let deadline = Instant::now() + Duration::from_secs(300);
        let lesson = loop {
            let d = district.clone();
            let lessons = blocking(move || live_lessons(&d)).await?;
            if let Some(l) = lessons.first() {
                ensure!(lessons.len() == 1, "one lesson, not {}", lessons.len());
                break l.clone();
            }
            ensure!(Instant::now() < deadline, "no lesson after 300 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        ensure!(
            lesson["parts"].as_u64() >= Some(2),
            "parts {}",
            lesson["parts"]
        );
        // The lesson spans both runs of the recorder (≥ 10 + 5 + 8 + 8 + 8 s of class), so
        // what was recorded before the kill survived.
        let at = |k: &str| -> Result<chrono::DateTime<chrono::FixedOffset>> {
            Ok(chrono::DateTime::parse_from_rfc3339(
                lesson[k].as_str().context("a time")?,
            )?)
        };
        let length = (at("ended_at")? - at("started_at")?).num_milliseconds() as f64 / 1000.0;
        ensure!(length >= 35.0, "the lesson lasts {length} s");
        let gaps = lesson["gaps"].as_array().context("gaps")?;
        let span = |g: &Value| -> Result<f64> {
            let from = chrono::DateTime::parse_from_rfc3339(g["from"].as_str().context("from")?)?;
            let to = chrono::DateTime::parse_from_rfc3339(g["to"].as_str().context("to")?)?;
            Ok((to - from).num_milliseconds() as f64 / 1000.0)
        };
        let whole: Vec<f64> = gaps
            .iter()
            .filter(|g| g["source_id"].is_null())
            .map(span)
            .collect::<Result<_>>()?;
        ensure!(
            whole.len() == 1 && (3.0..=20.0).contains(&whole[0]),
            "one recording gap of the kill, not {whole:?} in {gaps:#?}"
        );
        let room_gaps: Vec<f64> = gaps
            .iter()
            .filter(|g| {
                g["source_id"]
                    .as_str()
                    .is_some_and(|s| s.contains("cls_demo_a"))
            })
            .map(span)
            .collect::<Result<_>>()?;
        ensure!(
            room_gaps.iter().any(|s| *s >= 6.0),
            "the classroom's drop-out is a gap on its tracks: {gaps:#?}"
        );
        println!(
            "recording gap {:.1} s (recorder killed 5 s); classroom gaps {room_gaps:?}",
            whole[0]
        );
        Ok::<(), anyhow::Error>(())
    }
    .await;
    drop(recorder);
    drop(teacher_browser);
    drop(rooms_browser);
    running.stop().await;
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

fn main() {
    duet_tests::class::run_cases(
        "live-review-browser",
        &[
            ("record_and_review", |net| {
                Box::pin(async move { record_and_review(&net.host_ip.to_string()).await })
            }),
            ("recorder_killed_and_classroom_dropout", |net| {
                Box::pin(async move {
                    recorder_killed_and_classroom_dropout(&net.host_ip.to_string()).await
                })
            }),
        ],
    )
}
