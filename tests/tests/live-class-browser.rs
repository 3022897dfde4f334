//! A live paired class in real Chromium: one lead-teacher page and two receiving-classroom pages
//! join one class through `duet up`, inside a network namespace this test creates, once with VP8
//! and once with H.264.
//!
//! Asserted from each page's `getStats()` (through `window.duet.summary()`):
//! - each classroom decodes the teacher's camera (framesDecoded > 60) and the courseware screen,
//!   and receives the teacher's audio (samples growing);
//! - the teacher decodes both classrooms' video (framesDecoded > 60);
//! - no page receives its own tracks;
//! - the negotiated video codec is the one the scenario asked for;
//! - a raised hand from a classroom reaches the teacher's page.
//!
//! It prints the join time (page load to first decoded teacher frame) per classroom.
//! `harness = false`: `main` must enter the network namespace before any thread exists.

use anyhow::{Context, Result, ensure};
use duet::DuetConfig;
use duet_sfu_proto::Role;
use duet_tests::class::{class_config, inbound, num, summary, wait_until};
use duet_tests::{Browser, LaunchOptions};
use std::time::Duration;

const KEY: &str = "live-class-browser-test-key";

async fn class(codec: &str, host: &str) -> Result<()> {
    let data_dir =
        std::env::temp_dir().join(format!("duet-live-class-{codec}-{}", std::process::id()));
    let mut config = class_config(host, KEY, data_dir.clone());
    let first = duet::start_up(&config).await.context("duet up")?;
    let base = format!("http://{host}:{}/", first.addr.port());
    let mut running = Some(first);

    // Camera and microphone need a secure context; the test origin is plain HTTP on a private
    // address, so Chromium is told to treat it as secure (as a school would with HTTPS).
    let origin = base.trim_end_matches('/').to_string();
    let browser = Browser::launch(
        LaunchOptions::default()
            .secure_origin(origin)
            .arg("--window-size=1366,768"),
    )
    .await?;
    let room = format!("class-{codec}");
    let url = |who: &str, name: &str, role| {
        format!(
            "{base}?codec={codec}&token={}",
            duet_tests::load::duet::token(
                &duet_sfu_proto::TokenKey::new(KEY.as_bytes()).expect("the key is long enough"),
                &room,
                who,
                name,
                role
            )
        )
    };
    let result = async {
        let teacher = browser
            .new_page(&url("teacher", "王老师", Role::Lead))
            .await?;
        teacher
            .wait_for(
                "window.duet && window.duet.state.joined",
                Duration::from_secs(20),
            )
            .await?;
        teacher
            .evaluate("window.duet.shareScreen({synthetic: true})")
            .await?;
        let a = browser
            .new_page(&url("room-a", "李家村小学", Role::Receiving))
            .await?;
        let b = browser
            .new_page(&url("room-b", "东山教学点", Role::Receiving))
            .await?;

        let want_codec = if codec == "h264" { "H264" } else { "VP8" };
        for (page, me) in [(&a, "room-a"), (&b, "room-b")] {
            let s = wait_until(
                page,
                &format!("{me} to decode the teacher"),
                Duration::from_secs(60),
                |s| {
                    num(inbound(s, "teacher", "camera"), "framesDecoded") > 60.0
                        && num(inbound(s, "teacher", "screen"), "framesDecoded") > 5.0
                        && num(inbound(s, "teacher", "microphone"), "totalSamplesReceived") > 0.0
                },
            )
            .await?;
            let cam = inbound(&s, "teacher", "camera").unwrap();
            ensure!(
                cam["codec"].as_str().unwrap_or("").contains(want_codec),
                "{me} decodes the teacher's camera as {}, not {want_codec}",
                cam["codec"]
            );
            // Audio keeps flowing.
            let before = num(inbound(&s, "teacher", "microphone"), "totalSamplesReceived");
            tokio::time::sleep(Duration::from_secs(2)).await;
            let later = summary(page).await?;
            let after = num(
                inbound(&later, "teacher", "microphone"),
                "totalSamplesReceived",
            );
            ensure!(
                after > before,
                "{me}: teacher audio samples did not grow ({before} → {after})"
            );
        }
        wait_until(
            &teacher,
            "the teacher to decode both classrooms",
            Duration::from_secs(60),
            |s| {
                num(inbound(s, "room-a", "camera"), "framesDecoded") > 60.0
                    && num(inbound(s, "room-b", "camera"), "framesDecoded") > 60.0
            },
        )
        .await?;

        // Nobody receives their own tracks.
        for (page, me) in [(&teacher, "teacher"), (&a, "room-a"), (&b, "room-b")] {
            let s = summary(page).await?;
            let ins = s["inbound"].as_array().context("inbound list")?;
            ensure!(!ins.is_empty(), "{me} receives nothing");
            for i in ins {
                ensure!(
                    i["participant"] != me,
                    "{me} receives its own {}: {i}",
                    i["source"]
                );
            }
            let own = page.evaluate("window.duet.state.ownTracksReceived").await?;
            ensure!(
                own.as_f64() == Some(0.0),
                "{me} was offered its own tracks {own} times"
            );
        }

        // A raised hand reaches the teacher.
        a.evaluate("document.querySelector('#raise-hand').click()")
            .await?;
        teacher
            .wait_for(
                "window.duet.state.hands.includes('room-a')",
                Duration::from_secs(10),
            )
            .await
            .context("raised hand did not reach the teacher")?;

        for (page, me) in [(&a, "room-a"), (&b, "room-b")] {
            let ms = page
                .evaluate("window.duet.state.firstTeacherFrameMs")
                .await?;
            println!(
                "join time {codec} {me}: page load → first decoded teacher frame {} ms",
                ms
            );
        }
        if let Ok(dir) = std::env::var("DUET_SCREENSHOTS") {
            teacher
                .screenshot_png(format!("{dir}/teacher-{codec}.png"))
                .await?;
            a.screenshot_png(format!("{dir}/room-a-{codec}.png"))
                .await?;
        }

        // The server goes away (a restart, a network drop) and comes back on the same address:
        // every page reconnects by itself and the class resumes.
        let addr = running.take().context("running")?.stop_and_address().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        config.gateway.listen = addr.to_string();
        running = Some(duet::start_up(&config).await.context("duet up again")?);
        for (page, me) in [(&a, "room-a"), (&b, "room-b")] {
            page.wait_for(
                "window.duet.state.reconnects >= 1 && window.duet.state.joined",
                Duration::from_secs(30),
            )
            .await
            .with_context(|| format!("{me} did not reconnect"))?;
            wait_until(
                page,
                &format!("{me} to decode the teacher again"),
                Duration::from_secs(60),
                |s| num(inbound(s, "teacher", "camera"), "framesDecoded") > 30.0,
            )
            .await?;
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        eprintln!("--- chromium log tail ---\n{}", browser.log_tail(40));
    }
    drop(browser);
    if let Some(r) = running {
        r.stop().await;
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

/// The whole path a school uses: `duet up` with the demo district; the teacher and a receiving
/// classroom sign in on the gateway's page, press 进入课堂 on the class that is on now, and hold
/// the class; attendance records both.
async fn join_through_gateway(host: &str) -> Result<()> {
    let data_dir = std::env::temp_dir().join(format!("duet-gateway-join-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut config = DuetConfig {
        data_dir: data_dir.clone(),
        ..DuetConfig::default()
    };
    config.gateway.listen = format!("{host}:0");
    config.sfu.rtc_port_min = 52_000;
    config.sfu.rtc_port_max = 52_999;
    let running = duet::start_up(&config).await.context("duet up")?;
    let base = format!("http://{host}:{}", running.addr.port());
    let password = |u: &str| {
        running
            .demo_logins
            .iter()
            .find(|l| l.username == u)
            .map(|l| l.password.clone())
            .context("demo login")
    };
    let browser = Browser::launch(LaunchOptions::default().secure_origin(base.clone())).await?;
    let result = async {
        let mut pages = Vec::new();
        for user in ["teacher", "room-a"] {
            let page = browser.new_page(&format!("{base}/admin")).await?;
            page.sign_in_and_join(user, &password(user)?).await?;
            page.wait_for(
                "window.duet && window.duet.state.joined",
                Duration::from_secs(20),
            )
            .await
            .with_context(|| format!("{user} did not join the live class"))?;
            pages.push(page);
        }
        let teacher_role = pages[0].evaluate("window.duet.state.you.role").await?;
        let room_role = pages[1].evaluate("window.duet.state.you.role").await?;
        ensure!(
            teacher_role == "lead" && room_role == "receiving",
            "roles {teacher_role} / {room_role}"
        );
        // The receiving classroom joins as the classroom itself and decodes the teacher.
        let me = pages[1].evaluate("window.duet.state.you.id").await?;
        ensure!(
            me == "cls_demo_a",
            "the classroom joins as its classroom, not {me}"
        );
        let teacher_id = pages[0].evaluate("window.duet.state.you.id").await?;
        let tid = teacher_id.as_str().unwrap_or_default().to_string();
        wait_until(
            &pages[1],
            "room-a to decode the teacher",
            Duration::from_secs(60),
            |s| num(inbound(s, &tid, "camera"), "framesDecoded") > 30.0,
        )
        .await?;
        // Attendance: both joins are kept against the timetabled lesson.
        let store = &running.gateway.as_ref().context("gateway")?.store;
        let room = pages[1].evaluate("window.duet.state.room").await?;
        let (series, date) =
            duet_gateway::api::timetable::parse_room(room.as_str().unwrap_or_default())
                .context("the room is a timetabled lesson")?;
        let att = store.list_attendance(&series, Some(date)).await?;
        let who: Vec<&str> = att.iter().map(|a| a.participant.as_str()).collect();
        ensure!(
            who.contains(&"cls_demo_a") && who.contains(&tid.as_str()),
            "attendance {who:?}"
        );
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        eprintln!("--- chromium log tail ---\n{}", browser.log_tail(40));
    }
    drop(browser);
    running.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

fn main() {
    duet_tests::class::run_cases(
        "live-class-browser",
        &[
            ("live_class_vp8", |net| {
                Box::pin(async move { class("vp8", &net.host_ip.to_string()).await })
            }),
            ("live_class_h264", |net| {
                Box::pin(async move { class("h264", &net.host_ip.to_string()).await })
            }),
            ("join_through_gateway", |net| {
                Box::pin(async move { join_through_gateway(&net.host_ip.to_string()).await })
            }),
        ],
    )
}
