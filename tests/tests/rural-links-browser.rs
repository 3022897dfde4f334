//! A live class over a rural link, in real Chromium: the lead teacher publishes a simulcast
//! camera (three layers) and the microphone; classroom A reaches the SFU
//! through a link of 1.5 Mbit/s with 5 % loss and 100 ms delay each way, classroom B unshaped.
//!
//! The link is shaped in userspace: this kernel has no `netem`, so classroom A's page is forced
//! through a TURN relay inside the test ([`duet_tests::shaper`]) that does what `tc netem delay
//! 100ms loss 5% rate 1500kbit` would, both ways, on the test's own network namespace.
//!
//! Asserted:
//! - **Layers:** B settles on the teacher camera's top layer and A on a lower one, both in the
//!   received `frameHeight` (`getStats()`) and in the layer the SFU reports in `/metrics`, sampled
//!   every second of the measured window. "The top layer" is rid `f` as the teacher's encoder
//!   sends it now: a CPU-starved Chromium scales its layers down (to 540 lines, say), and the
//!   top layer is then less than 720 lines.
//! - **While shaped,** A keeps hearing the teacher (concealed samples under
//!   [`MAX_CONCEALED_SHARE`]) and keeps seeing video (frames decoded, freezes under
//!   [`MAX_FREEZE_SHARE`] of the time).
//! - **Lifted:** A climbs back to the top layer within [`CLIMB_BACK`].
//! - **Keyframes:** while A loses 10 % of its packets, at most [`MAX_KEYFRAME_REQUESTS`]
//!   keyframe requests reach the teacher's encoder over [`KEYFRAME_WINDOW`].
//!
//! It prints what it measured. `harness = false`: `main` must enter the network namespace before
//! any thread exists.

use anyhow::{Context, Result, bail, ensure};
use duet_sfu_proto::Role;
use duet_tests::class::{class_config, inbound, num, summary, wait_until};
use duet_tests::shaper::{LinkShape, Relay};
use duet_tests::{Browser, LaunchOptions, Page};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const KEY: &str = "rural-links-browser-test-key";
/// Longest share of the teacher's audio A may conceal while shaped.
const MAX_CONCEALED_SHARE: f64 = 0.05;
/// Longest share of the measured time A's video may spend frozen while shaped.
const MAX_FREEZE_SHARE: f64 = 0.5;
/// How long A may take to reach the top layer once its link is clear again.
const CLIMB_BACK: Duration = Duration::from_secs(45);
/// How long the measurements run.
const MEASURE: Duration = Duration::from_secs(20);
const KEYFRAME_WINDOW: Duration = Duration::from_secs(30);
/// Keyframe requests the teacher's encoder may receive in [`KEYFRAME_WINDOW`] while A loses 10 %
/// (one per second per layer would be 90).
const MAX_KEYFRAME_REQUESTS: f64 = 15.0;

/// The rural link: 1.5 Mbit/s, 5 % loss, 100 ms one way, and a router buffer of one second
/// (netem's default limit of 1,000 packets would hold several).
fn rural() -> LinkShape {
    LinkShape {
        delay: Duration::from_millis(100),
        loss: 0.05,
        rate_bps: Some(1_500_000),
        queue: Duration::from_secs(1),
    }
}

/// Keyframe requests (PLI + FIR) the teacher's camera encoder received, over all layers.
fn keyframe_requests(s: &Value) -> f64 {
    camera_layers(s)
        .map(|l| num(Some(l), "pliCount") + num(Some(l), "firCount"))
        .sum()
}

/// The SFU's `/metrics` lines about links: each participant's estimate and layers (fetched off
/// the runtime's threads: `ureq` blocks).
async fn link_metrics(base: &str) -> Result<String> {
    let url = format!("{base}/metrics");
    let text = tokio::task::spawn_blocking(move || -> Result<String> {
        Ok(ureq::get(&url)
            .call()
            .context("GET /metrics")?
            .into_string()?)
    })
    .await??;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("duet_sfu_link_estimate") || l.starts_with("duet_sfu_link_video_layer")
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The simulcast layer the SFU forwards to `participant` of the teacher's camera, from
/// `/metrics` (`None`: paused, or not reported yet).
async fn sfu_layer(base: &str, participant: &str) -> Result<Option<i64>> {
    let text = link_metrics(base).await?;
    let prefix = format!(
        "duet_sfu_link_video_layer{{room=\"rural\",participant=\"{participant}\",track=\"teacher-camera-"
    );
    Ok(text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .filter(|l| *l >= 0))
}

/// The height the teacher's encoder sends on simulcast layer `rid` now (0 when unknown).
fn sent_height(teacher: &Value, rid: &str) -> f64 {
    camera_layers(teacher)
        .find(|l| l["rid"] == rid)
        .map_or(0.0, |l| num(Some(l), "frameHeight"))
}

/// The teacher's camera's outbound layers in a summary.
fn camera_layers(s: &Value) -> impl Iterator<Item = &Value> {
    s["outbound"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["source"] == "camera")
        .flat_map(|o| o["layers"].as_array().into_iter().flatten())
}

/// Waits until the SFU forwards the teacher camera's top layer to `who` and `who`'s page
/// decodes it at the height the teacher's encoder sends it now.
async fn wait_for_top(
    base: &str,
    teacher: &Page,
    page: &Page,
    who: &str,
    timeout: Duration,
) -> Result<f64> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let layer = sfu_layer(base, who).await?;
        let (t, p) = (summary(teacher).await?, summary(page).await?);
        let (sent, got) = (
            sent_height(&t, "f"),
            num(inbound(&p, "teacher", "camera"), "frameHeight"),
        );
        if layer == Some(2) && sent > 0.0 && got >= sent {
            return Ok(got);
        }
        let sending: Vec<String> = camera_layers(&t)
            .map(|l| {
                format!(
                    "{} {} lines ({})",
                    l["rid"], l["frameHeight"], l["qualityLimitationReason"]
                )
            })
            .collect();
        last = format!(
            "SFU layer {layer:?}, decoding {got} lines; the teacher sends {}",
            sending.join(", ")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "{who} did not reach the top layer in {} s: {last}\n{}",
        timeout.as_secs(),
        link_metrics(base).await?
    )
}

/// A 1280x720 camera picture that keeps an encoder at its bitrate ceiling (a moving zone plate),
/// as a Y4M file Chromium's fake camera loops; made once with GStreamer and cached.
fn camera_clip() -> Result<PathBuf> {
    let dir = duet_tests::load::clip::default_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("teacher-720p.v1.y4m");
    if path.exists() {
        return Ok(path);
    }
    let tmp = path.with_extension("part");
    let status = std::process::Command::new("gst-launch-1.0")
        .args([
            "-q",
            "videotestsrc",
            "pattern=zone-plate",
            "kx2=20",
            "ky2=20",
            "kt=1",
        ])
        .arg("num-buffers=60")
        .arg("!")
        .arg("video/x-raw,format=I420,width=1280,height=720,framerate=30/1")
        .args(["!", "y4menc", "!", "filesink"])
        .arg(format!("location={}", tmp.display()))
        .status()
        .context("gst-launch-1.0")?;
    ensure!(status.success(), "gst-launch-1.0 failed: {status}");
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

async fn class(host: &str, relay_ip: std::net::IpAddr) -> Result<()> {
    let data_dir = std::env::temp_dir().join(format!("duet-rural-{}", std::process::id()));
    let config = class_config(host, KEY, data_dir.clone());
    let running = duet::start_up(&config).await.context("duet up")?;
    let base = format!("http://{host}:{}", running.addr.port());
    let origin = base.clone();
    let clip = tokio::task::spawn_blocking(camera_clip).await??;
    // The teacher's camera is the zone plate; the classrooms keep Chromium's own fake camera.
    let teacher_browser = Browser::launch(
        LaunchOptions::default()
            .secure_origin(origin.clone())
            .arg(format!(
                "--use-file-for-fake-video-capture={}",
                clip.display()
            ))
            .arg("--window-size=1366,768"),
    )
    .await?;
    // A classroom PC shows the class full screen on a 1080p display: the teacher's tile is tall
    // enough to want the top layer (on a smaller window the SFU rightly sends less).
    let class_browser = Browser::launch(
        LaunchOptions::default()
            .secure_origin(origin)
            .arg("--window-size=1920,1080"),
    )
    .await?;
    let first = if std::env::var_os("RURAL_UNSHAPED").is_some() {
        LinkShape::none()
    } else {
        rural()
    };
    let relay = Relay::start(SocketAddr::new(relay_ip, 0), first, first).await?;
    let key = duet_sfu_proto::TokenKey::new(KEY.as_bytes()).expect("the key is long enough");
    let url = |who: &str, name: &str, role| {
        format!(
            "{base}/?token={}",
            duet_tests::load::duet::token(&key, "rural", who, name, role)
        )
    };
    let result = async {
        let teacher = teacher_browser
            .new_page(&url("teacher", "王老师", Role::Lead))
            .await?;
        teacher
            .wait_for(
                "window.duet && window.duet.state.joined",
                Duration::from_secs(20),
            )
            .await?;
        let a = relay
            .open_page(&class_browser, &url("room-a", "东山教学点", Role::Receiving))
            .await?;
        let b = class_browser
            .new_page(&url("room-b", "李家村小学", Role::Receiving))
            .await?;
        for (page, me) in [(&a, "room-a"), (&b, "room-b")] {
            wait_until(
                page,
                &format!("{me} to decode the teacher"),
                Duration::from_secs(60),
                |s| num(inbound(s, "teacher", "camera"), "framesDecoded") > 30.0,
            )
            .await?;
        }

        // Settling: B climbs to the top layer; A stays below it.
        let started = Instant::now();
        let top = wait_for_top(&base, &teacher, &b, "room-b", Duration::from_secs(60)).await;
        if let Err(e) = top {
            let views = b.evaluate("JSON.stringify(window.duet.trackViews())").await?;
            bail!("{e:#}\nroom-b's tiles: {views}");
        }
        println!(
            "room-b reached the top layer ({}p) in {:.1} s",
            top?,
            started.elapsed().as_secs_f64()
        );
        // Give A as long again to settle under its shaping.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if std::env::var_os("RURAL_TRACE").is_some() {
                println!("{}", link_metrics(&base).await?);
            }
        }
        let t = summary(&teacher).await?;
        for o in t["outbound"].as_array().into_iter().flatten() {
            println!("teacher sends {} {}: {}", o["source"], o["codec"], o["layers"]);
        }

        let a0 = summary(&a).await?;
        let t0 = Instant::now();
        // The layer each classroom receives, every second of the window.
        let (mut a_layers, mut b_layers) = (Vec::new(), Vec::new());
        while t0.elapsed() < MEASURE {
            tokio::time::sleep(Duration::from_secs(1)).await;
            a_layers.push(sfu_layer(&base, "room-a").await?);
            b_layers.push(sfu_layer(&base, "room-b").await?);
        }
        let a1 = summary(&a).await?;
        let b1 = summary(&b).await?;
        let secs = t0.elapsed().as_secs_f64();
        let d = |field: &str, source: &str| {
            num(inbound(&a1, "teacher", source), field) - num(inbound(&a0, "teacher", source), field)
        };
        let concealed = d("concealedSamples", "microphone") / d("totalSamplesReceived", "microphone").max(1.0);
        let frames = d("framesDecoded", "camera");
        let freezes = d("freezeCount", "camera");
        let frozen = d("totalFreezesDuration", "camera");
        let (a_height, b_height) = (
            num(inbound(&a1, "teacher", "camera"), "frameHeight"),
            num(inbound(&b1, "teacher", "camera"), "frameHeight"),
        );
        let relay_stats = relay.stats();
        let layers = |v: &[Option<i64>]| {
            v.iter()
                .map(|l| l.map_or("-".to_string(), |l| l.to_string()))
                .collect::<String>()
        };
        println!(
            "shaped {secs:.0} s: room-a {a_height}p (SFU layers each second {}), room-b {b_height}p ({}); \
             room-a audio concealed {:.2} %, video {:.1} fps, {freezes} freezes, {frozen:.2} s frozen; \
             relay down {} passed, {} dropped",
            layers(&a_layers),
            layers(&b_layers),
            concealed * 100.0,
            frames / secs,
            relay_stats.down.passed,
            relay_stats.down.dropped()
        );
        ensure!(
            a_height < b_height,
            "the shaped classroom receives {a_height}p, no less than the unshaped one's {b_height}p"
        );
        // B stays on the top layer; A is never on it and is not paused for most of the window.
        let on_top = b_layers.iter().filter(|l| **l == Some(2)).count();
        ensure!(
            on_top * 2 > b_layers.len(),
            "the SFU forwarded the top layer to room-b in {on_top} of {} samples: {}",
            b_layers.len(),
            layers(&b_layers)
        );
        let live = a_layers.iter().filter(|l| l.is_some()).count();
        ensure!(
            a_layers.iter().all(|l| *l != Some(2)) && live * 2 > a_layers.len(),
            "the SFU forwarded to room-a, each second: {} (- paused)",
            layers(&a_layers)
        );
        ensure!(
            concealed < MAX_CONCEALED_SHARE,
            "room-a concealed {:.1} % of the teacher's audio",
            concealed * 100.0
        );
        ensure!(frames > secs * 4.0, "room-a decoded {frames} frames in {secs:.0} s");
        ensure!(
            frozen < secs * MAX_FREEZE_SHARE,
            "room-a's video was frozen {frozen:.1} s of {secs:.0} s"
        );

        // The shaping is lifted: A climbs back to the top layer.
        relay.set_shape(LinkShape::none(), LinkShape::none());
        let lifted = Instant::now();
        let height = wait_for_top(&base, &teacher, &a, "room-a", CLIMB_BACK).await?;
        println!(
            "room-a back at the top layer ({height}p) {:.1} s after the shaping was lifted",
            lifted.elapsed().as_secs_f64()
        );

        // A loses 10 %: the teacher's encoder is not flooded with keyframe requests.
        relay.set_shape(
            LinkShape { loss: 0.10, ..LinkShape::none() },
            LinkShape { loss: 0.10, ..LinkShape::none() },
        );
        let k0 = keyframe_requests(&summary(&teacher).await?);
        tokio::time::sleep(KEYFRAME_WINDOW).await;
        let k1 = keyframe_requests(&summary(&teacher).await?);
        println!(
            "keyframe requests at the teacher's encoder while room-a lost 10 %: {} in {} s",
            k1 - k0,
            KEYFRAME_WINDOW.as_secs()
        );
        ensure!(
            k1 - k0 <= MAX_KEYFRAME_REQUESTS,
            "{} keyframe requests reached the teacher in {} s",
            k1 - k0,
            KEYFRAME_WINDOW.as_secs()
        );
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        eprintln!(
            "--- teacher chromium log tail ---\n{}",
            teacher_browser.log_tail(30)
        );
        eprintln!(
            "--- classroom chromium log tail ---\n{}",
            class_browser.log_tail(30)
        );
    }
    drop(teacher_browser);
    drop(class_browser);
    drop(relay);
    running.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

fn main() {
    duet_tests::class::run_cases(
        "rural-links-browser",
        &[("rural_link_class", |net| {
            Box::pin(async move { class(&net.host_ip.to_string(), net.peer_ip).await })
        })],
    )
}
