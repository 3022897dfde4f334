//! `recorder-bench`: what recording a classroom (录播教室) costs in CPU on this machine. The
//! numbers and how to read them are in `docs/benchmarks.md`, "Recorder CPU".
//!
//! # What it measures
//! 1. **Resource mode (资源模式)**: N simulated RTSP cameras (1280×720, 25 fps, H.264: the
//!    simulator's default) recorded by N [`SourceSupervisor`]s, first without a feed (what
//!    resource mode alone costs: depayload, parse, Matroska, write), then with a decoded
//!    1280×720 25 fps feed each (what movie mode adds per source before the mixer: H.264 decode,
//!    scale, rate, an `intervideosink`). Reported: the recorder process's CPU over the window, per
//!    source, and the files' bitrate and frame rate.
//! 2. **The programme's encoder, offline**: two `videotestsrc` 1280×720 inputs (the cameras'
//!    pattern full frame, colour bars as a picture-in-picture inset, as the mixer lays out a PIP
//!    shot) into
//!    `compositor` at 1920×1080, pinned to I420 at 30 fps, `x264enc` with the mixer's settings
//!    (bitrate 4000, `key-int-max` 2 s, no B-frames) at three speed presets, as fast as it goes.
//!    Reported: frames per second (÷ 30 = realtime factor) and CPU seconds per frame.
//! 3. **A whole room, live**: a [`LessonRunner`] with 4 cameras and the first camera's microphone,
//!    both modes at once, with the default [`MixerConfig`] (1080p25, `veryfast`) and with
//!    `ultrafast`. Reported: the recorder's CPU, and the programme's duration and frame rate (a
//!    programme that cannot keep up drops frames). A start whose programme writes nothing is
//!    started again, up to `--room-attempts` times; the table says how many starts it took.
//!
//! `--pattern` picks the picture of every camera and of the offline encoder's main input: `ball`
//! (the simulator's default, a ball on black: easy for H.264) or `snow` (noise: the hardest case,
//! where the encoders reach their bitrates). A classroom lies between the two.
//!
//! The cameras run in a **child process** (this binary again, `serve-cameras N`), so their x264
//! encoding is not counted: the child prints one URL a line, and exits when its stdin closes (also
//! when the parent dies). The child's CPU over the same window is reported beside the recorder's,
//! because on a small machine both share the cores.
//!
//! CPU is `utime + stime` of `/proc/<pid>/stat` (all threads, in clock ticks of `getconf
//! CLK_TCK`), read at the start and the end of the window; "% core" is CPU time over wall time
//! (100% = one core busy). Each window starts after every source records plus a warm-up.
//!
//! # Usage
//! ```sh
//! cargo run --release -p duet-recorder --example recorder-bench -- \
//!     [--sources 1,2,4] [--seconds 30] [--frames 600] [--only resource,encode,room] \
//!     [--pattern ball|snow] [--room-attempts 5] [--json]
//! ```
//! It prints markdown tables (and with `--json` one JSON object a line per measurement).
//!
//! # Not measured
//! Real cameras (their streams and pictures differ from the simulator's), several rooms on one
//! machine, the upload, memory.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use duet_hardware::rtsp_sim::{RtspCameraSim, RtspSimConfig};
use duet_recorder::capture::supervisor::{SourceSupervisor, SupervisorConfig};
use duet_recorder::capture::{Feed, MediaKind, SourceOptions};
use duet_recorder::director::{DirectorConfig, Role};
use duet_recorder::lesson::{LessonRunner, RoomSpec, SourceSpec};
use duet_recorder::manifest::{LessonManifest, LessonPlan};
use duet_recorder::mixer::MixerConfig;
use gstreamer as gst;
use gstreamer::prelude::*;

/// Sources must all record within this, or the measurement is refused.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// After every source records and before the window opens (jitter buffers fill, caps settle).
const WARM_UP: Duration = Duration::from_secs(3);

/// The offline encode pipeline. Constant: the frame count, pattern and preset are set as
/// properties of the named elements afterwards. The inset is the mixer's PIP rectangle at 1080p.
const ENCODE: &str = "videotestsrc name=main pattern=ball \
      ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 ! comp.sink_0 \
    videotestsrc name=inset pattern=smpte \
      ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 ! comp.sink_1 \
    compositor name=comp background=black \
      sink_0::width=1920 sink_0::height=1080 sink_0::zorder=1 \
      sink_1::xpos=1380 sink_1::ypos=750 sink_1::width=480 sink_1::height=270 sink_1::zorder=2 \
    ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 \
    ! x264enc name=enc bitrate=4000 key-int-max=60 bframes=0 \
    ! h264parse ! fakesink name=sink sync=false";

/// What `--pattern` may choose (`videotestsrc` nicks): the simulator's moving ball on black
/// (easy for H.264), or noise (the hardest picture there is: an upper bound).
const PATTERNS: [&str; 2] = ["ball", "snow"];

/// The room of measurement 3: device id, role, whether its camera also serves the microphone.
const ROOM: [(&str, Role, bool); 4] = [
    ("cam-teacher", Role::TeacherCloseUp, true),
    ("cam-pupils", Role::PupilsWide, false),
    ("cam-pupil", Role::PupilCloseUp, false),
    ("screen", Role::Courseware, false),
];

struct Args {
    sources: Vec<usize>,
    seconds: u64,
    frames: u32,
    only: Vec<String>,
    pattern: String,
    room_attempts: u32,
    json: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut parsed = Args {
        sources: vec![1, 2, 4],
        seconds: 30,
        frames: 600,
        only: ["resource", "encode", "room"].map(String::from).to_vec(),
        pattern: "ball".into(),
        room_attempts: 5,
        json: false,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--sources" => {
                parsed.sources = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--sources: numbers separated by commas")?;
            }
            "--seconds" => parsed.seconds = value()?.parse().context("--seconds")?,
            "--frames" => parsed.frames = value()?.parse().context("--frames")?,
            "--only" => parsed.only = value()?.split(',').map(String::from).collect(),
            "--pattern" => parsed.pattern = value()?,
            "--room-attempts" => {
                parsed.room_attempts = value()?.parse().context("--room-attempts")?
            }
            "--json" => parsed.json = true,
            other => bail!("unknown argument {other:?} (see the //! doc of recorder-bench.rs)"),
        }
    }
    if parsed.sources.iter().any(|n| !(1..=16).contains(n)) || parsed.seconds == 0 {
        bail!("--sources must be 1..=16 each, --seconds > 0");
    }
    if !PATTERNS.contains(&parsed.pattern.as_str()) {
        bail!("--pattern must be one of {PATTERNS:?}");
    }
    Ok(parsed)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("serve-cameras") {
        args.next();
        return serve_cameras(args);
    }
    let args = parse_args(args)?;
    gst::init()?;
    let ticks = clock_ticks();
    let scratch = std::env::temp_dir().join(format!("duet-recorder-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = run(&args, ticks, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn run(args: &Args, ticks: f64, scratch: &Path) -> anyhow::Result<()> {
    let (window, pattern) = (args.seconds, &args.pattern);
    let wants = |what: &str| args.only.iter().any(|o| o == what);
    if wants("resource") {
        println!("\n## Resource mode: N cameras 1280×720 25 fps ({pattern}), {window} s window\n");
        println!(
            "| N | feed | recorder % core | per source | cameras' process % core | Mbit/s per file | fps per file |"
        );
        println!("|---:|---|---:|---:|---:|---:|---:|");
        for &n in &args.sources {
            for feed in [false, true] {
                let m = resource_mode(n, feed, args, ticks, scratch)?;
                println!(
                    "| {n} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} |",
                    if feed { "decoded 720p25" } else { "none" },
                    m.recorder_pct,
                    m.recorder_pct / n as f64,
                    m.cameras_pct,
                    m.mbps_per_file,
                    m.fps_per_file,
                );
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({"bench": "resource", "sources": n, "feed": feed,
                            "seconds": m.seconds, "recorder_pct": m.recorder_pct,
                            "cameras_pct": m.cameras_pct, "mbps_per_file": m.mbps_per_file,
                            "fps_per_file": m.fps_per_file})
                    );
                }
            }
        }
    }
    if wants("encode") {
        println!(
            "\n## Programme encode, offline: 2 × 720p ({pattern} + smpte inset) → compositor 1080p30 I420 → x264enc, {} frames\n",
            args.frames
        );
        println!("| preset | fps | realtime ×(fps/30) | CPU ms per frame | % core at 30 fps |");
        println!("|---|---:|---:|---:|---:|");
        for preset in ["veryfast", "superfast", "ultrafast"] {
            let (fps, cpu_per_frame) = encode(preset, args, ticks)?;
            println!(
                "| {preset} | {fps:.1} | {:.2} | {:.1} | {:.0} |",
                fps / 30.0,
                cpu_per_frame * 1000.0,
                cpu_per_frame * 30.0 * 100.0
            );
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"bench": "encode", "preset": preset, "frames": args.frames,
                        "fps": fps, "cpu_s_per_frame": cpu_per_frame})
                );
            }
        }
    }
    if wants("room") {
        println!(
            "\n## A room live: 4 cameras 720p25 ({pattern}) + microphone, both modes, {window} s window\n"
        );
        println!(
            "| programme | attempts | recorder % core | cameras' process % core | programme s (of wall s) | programme fps | programme Mbit/s |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let encoder = duet_recorder::encoder::probe().map_or("none", |e| e.factory());
        for preset in ["veryfast", "ultrafast"] {
            let m = room(preset, args, ticks, scratch)?;
            println!(
                "| 1080p25 {encoder} {preset} | {} | {:.1} | {:.1} | {:.1} of {:.1} | {:.1} | {:.2} |",
                m.attempts,
                m.recorder_pct,
                m.cameras_pct,
                m.programme_s,
                m.wall_s,
                m.programme_fps,
                m.programme_mbps
            );
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"bench": "room", "preset": preset, "encoder": encoder,
                        "attempts": m.attempts,
                        "recorder_pct": m.recorder_pct, "cameras_pct": m.cameras_pct,
                        "programme_s": m.programme_s, "wall_s": m.wall_s,
                        "programme_fps": m.programme_fps, "programme_mbps": m.programme_mbps})
                );
            }
        }
    }
    Ok(())
}

/// The child: `serve-cameras N PATTERN [--audio-first]`, `n` simulated cameras showing `PATTERN`
/// (the first with audio if asked), one URL a line on stdout, until stdin closes.
fn serve_cameras(mut args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let n: usize = args
        .next()
        .context("serve-cameras N")?
        .parse()
        .context("N")?;
    let pattern = args.next().context("serve-cameras N PATTERN")?;
    let audio_first = args.next().as_deref() == Some("--audio-first");
    let cams = (0..n)
        .map(|i| {
            let mut config = RtspSimConfig::new(0, &format!("cam-{i}"));
            config.pattern = pattern.clone();
            config.audio = audio_first && i == 0;
            RtspCameraSim::start_with(config)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = std::io::stdout().lock();
    for cam in &cams {
        writeln!(out, "{}", cam.url())?;
    }
    out.flush()?;
    // Until the parent closes our stdin (or dies); then the cameras stop on drop.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(cams);
    Ok(())
}

/// The camera child; stops when dropped (stdin closed, then waited for).
struct Cameras {
    child: Child,
    stdin: Option<ChildStdin>,
    urls: Vec<String>,
}

impl Cameras {
    fn start(n: usize, pattern: &str, audio_first: bool) -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("serve-cameras").arg(n.to_string()).arg(pattern);
        if audio_first {
            command.arg("--audio-first");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the camera process")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("child stdout")?;
        let urls = BufReader::new(stdout)
            .lines()
            .take(n)
            .collect::<Result<Vec<_>, _>>()?;
        if urls.len() != n {
            bail!("the camera process gave {} URLs of {n}", urls.len());
        }
        Ok(Self { child, stdin, urls })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Cameras {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// `getconf CLK_TCK` (100 on Linux unless the kernel says otherwise).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system, all threads) of `pid` (`self` for this process).
fn cpu_seconds(pid: &str, ticks: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    // There, field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let rest = stat.rsplit_once(')').context("/proc stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).context("utime")?.parse()?;
    let stime: f64 = fields.get(12).context("stime")?.parse()?;
    Ok((utime + stime) / ticks)
}

/// CPU of this process and of the cameras' over `window`, in % of one core.
fn measure(cameras: &Cameras, ticks: f64, window: Duration) -> anyhow::Result<(f64, f64)> {
    let child = cameras.pid().to_string();
    let (self0, child0, t0) = (
        cpu_seconds("self", ticks)?,
        cpu_seconds(&child, ticks)?,
        Instant::now(),
    );
    std::thread::sleep(window);
    let wall = t0.elapsed().as_secs_f64();
    let (self1, child1) = (cpu_seconds("self", ticks)?, cpu_seconds(&child, ticks)?);
    Ok((
        (self1 - self0) / wall * 100.0,
        (child1 - child0) / wall * 100.0,
    ))
}

struct ResourceMeasurement {
    seconds: f64,
    recorder_pct: f64,
    cameras_pct: f64,
    mbps_per_file: f64,
    fps_per_file: f64,
}

fn resource_mode(
    n: usize,
    feed: bool,
    args: &Args,
    ticks: f64,
    scratch: &Path,
) -> anyhow::Result<ResourceMeasurement> {
    let window = Duration::from_secs(args.seconds);
    let cameras = Cameras::start(n, &args.pattern, false)?;
    let mut supervisors = Vec::new();
    for (i, url) in cameras.urls.iter().enumerate() {
        let options = SourceOptions {
            media: MediaKind::Video,
            feed: feed.then(|| Feed {
                channel: format!("bench/{n}/{i}"),
                width: 1280,
                height: 720,
                framerate: 25,
            }),
        };
        let base = scratch.join(format!("n{n}-feed{}-cam{i}", u8::from(feed)));
        supervisors.push(SourceSupervisor::start_with(
            url,
            &base,
            SupervisorConfig::default(),
            options,
        )?);
    }
    for (i, sup) in supervisors.iter().enumerate() {
        if !sup.wait_recording(CONNECT_TIMEOUT) {
            bail!("camera {i} not recording: {}", sup.state());
        }
    }
    std::thread::sleep(WARM_UP);
    let (recorder_pct, cameras_pct) = measure(&cameras, ticks, window)?;
    let mut files = Vec::new();
    for sup in supervisors {
        let recording = sup.stop();
        if recording.segments.len() != 1 {
            bail!(
                "a camera dropped out during the measurement: {:?}",
                recording.gaps
            );
        }
        files.extend(recording.segments);
    }
    drop(cameras);
    let (mut bits, mut frames, mut secs) = (0.0, 0.0, 0.0);
    for file in &files {
        bits += std::fs::metadata(&file.path)?.len() as f64 * 8.0;
        frames += count_video_frames(&file.path)? as f64;
        secs += file.duration.as_secs_f64();
        std::fs::remove_file(&file.path)?;
    }
    Ok(ResourceMeasurement {
        seconds: window.as_secs_f64(),
        recorder_pct,
        cameras_pct,
        mbps_per_file: bits / secs / 1e6,
        fps_per_file: frames / secs,
    })
}

/// The video frames in a Matroska file (demuxed, not decoded).
fn count_video_frames(path: &Path) -> anyhow::Result<u64> {
    let pipeline = gst::parse::launch(
        "filesrc name=src ! matroskademux name=demux demux.video_0 ! fakesink name=sink sync=false",
    )?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    pipeline
        .by_name("src")
        .context("src")?
        .set_property("location", path.to_str().context("UTF-8 path")?);
    let count = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&count);
    pipeline
        .by_name("sink")
        .context("sink")?
        .static_pad("sink")
        .context("sink pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    let outcome = run_to_eos(&pipeline, Duration::from_secs(120));
    pipeline.set_state(gst::State::Null)?;
    outcome?;
    Ok(count.load(Ordering::Relaxed))
}

/// Plays `pipeline` until EOS; an error message or the deadline is an error.
fn run_to_eos(pipeline: &gst::Pipeline, deadline: Duration) -> anyhow::Result<()> {
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().context("a pipeline has a bus")?;
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_nseconds(deadline.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .context("no EOS before the deadline")?;
    match msg.view() {
        gst::MessageView::Eos(_) => Ok(()),
        gst::MessageView::Error(err) => bail!("{} ({:?})", err.error(), err.debug()),
        _ => unreachable!("filtered to EOS and errors"),
    }
}

/// Frames per second and CPU seconds per frame of [`ENCODE`] at `preset`.
fn encode(preset: &str, args: &Args, ticks: f64) -> anyhow::Result<(f64, f64)> {
    let frames = args.frames;
    let pipeline = gst::parse::launch(ENCODE)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    for src in ["main", "inset"] {
        pipeline
            .by_name(src)
            .context("source")?
            .set_property("num-buffers", i32::try_from(frames)?);
    }
    pipeline
        .by_name("main")
        .context("main")?
        .set_property_from_str("pattern", &args.pattern);
    pipeline
        .by_name("enc")
        .context("enc")?
        .set_property_from_str("speed-preset", preset);
    let encoded = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&encoded);
    pipeline
        .by_name("sink")
        .context("sink")?
        .static_pad("sink")
        .context("sink pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    let (cpu0, t0) = (cpu_seconds("self", ticks)?, Instant::now());
    let outcome = run_to_eos(&pipeline, Duration::from_secs(600));
    let (wall, cpu) = (
        t0.elapsed().as_secs_f64(),
        cpu_seconds("self", ticks)? - cpu0,
    );
    pipeline.set_state(gst::State::Null)?;
    outcome?;
    let encoded = encoded.load(Ordering::Relaxed);
    if encoded != u64::from(frames) {
        bail!("{encoded} frames encoded of {frames}");
    }
    Ok((encoded as f64 / wall, cpu / encoded as f64))
}

struct RoomMeasurement {
    /// Runs started before one recorded a programme (see [`room`]).
    attempts: u32,
    recorder_pct: f64,
    cameras_pct: f64,
    programme_s: f64,
    wall_s: f64,
    programme_fps: f64,
    programme_mbps: f64,
}

/// How long after the warm-up a room's programme file may stay empty before the run counts as
/// failed.
const PROGRAMME_START: Duration = Duration::from_secs(10);

/// A room with `preset`: started again (in a new camera process, under a new classroom id), up to
/// `--room-attempts` times, when its programme file is still empty [`PROGRAMME_START`] after the
/// warm-up, since a window without a programme would measure the wrong thing. Observed here: the
/// mixer's pipeline sometimes stops at once, an `intervideosrc` failing with `not-negotiated`.
fn room(preset: &str, args: &Args, ticks: f64, scratch: &Path) -> anyhow::Result<RoomMeasurement> {
    for attempt in 1..=args.room_attempts {
        match room_once(preset, attempt, args, ticks, scratch)? {
            Some(mut m) => {
                m.attempts = attempt;
                return Ok(m);
            }
            None => eprintln!("room {preset}, attempt {attempt}: no programme written; again"),
        }
    }
    bail!(
        "room {preset}: no programme in {} attempts",
        args.room_attempts
    )
}

/// One room run; `None` if the programme wrote nothing by the end of the warm-up.
fn room_once(
    preset: &str,
    attempt: u32,
    args: &Args,
    ticks: f64,
    scratch: &Path,
) -> anyhow::Result<Option<RoomMeasurement>> {
    let cameras = Cameras::start(ROOM.len(), &args.pattern, true)?;
    let spec = |(id, role): (&str, Option<Role>), url: &str| SourceSpec {
        id: id.into(),
        role,
        label: id.into(),
        url: url.into(),
    };
    let microphone = ROOM
        .iter()
        .zip(&cameras.urls)
        .find(|((_, _, audio), _)| *audio)
        .map(|(_, url)| spec(("mic", None), url));
    let room = RoomSpec {
        classroom_id: format!("cls-bench-{preset}-{attempt}"),
        sources: ROOM
            .iter()
            .zip(&cameras.urls)
            .map(|((id, role, _), url)| spec((id, Some(*role)), url))
            .collect(),
        microphone,
        director: DirectorConfig::default(),
        mixer: MixerConfig {
            speed_preset: preset.into(),
            ..MixerConfig::default()
        },
        supervisor: SupervisorConfig::default(),
    };
    let now = chrono::Utc::now();
    let id = format!("les-bench-{preset}-{attempt}");
    let plan = LessonPlan {
        id: id.clone(),
        classroom_id: room.classroom_id.clone(),
        series_id: None,
        date: None,
        period: None,
        title: "recorder-bench".into(),
        teacher: "bench".into(),
        subject: "bench".into(),
        start: now,
        end: now + chrono::Duration::seconds(600),
    };
    let dir: PathBuf = scratch.join(id);
    let runner = LessonRunner::start(&room, plan, &dir)?;
    let connecting = Instant::now();
    while !runner
        .status()
        .sources
        .iter()
        .all(|s| s.state == "RECORDING")
    {
        if connecting.elapsed() > CONNECT_TIMEOUT {
            bail!("sources not recording: {:?}", runner.status());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(WARM_UP);
    // The manifest written at the start names the programme's file.
    let started = LessonManifest::load(&dir)?;
    let programme_path = started
        .parts
        .last()
        .and_then(|p| p.programme.as_ref())
        .map(|p| dir.join(&p.path))
        .context("the manifest names a programme")?;
    let waiting = Instant::now();
    let written = || std::fs::metadata(&programme_path).is_ok_and(|m| m.len() > 0);
    while !written() && waiting.elapsed() < PROGRAMME_START {
        std::thread::sleep(Duration::from_millis(100));
    }
    if !written() {
        drop(runner.stop(true));
        drop(cameras);
        std::fs::remove_dir_all(&dir)?;
        return Ok(None);
    }
    let (recorder_pct, cameras_pct) = measure(&cameras, ticks, Duration::from_secs(args.seconds))?;
    let manifest = runner.stop(true)?;
    drop(cameras);
    let part = manifest.parts.last().context("a part")?;
    let wall_s = part
        .ended_at
        .map_or(0.0, |end| (end - part.started_at).as_seconds_f64());
    let programme = part.programme.as_ref().context("no programme recorded")?;
    let frames = count_video_frames(&programme_path)? as f64;
    let bits = std::fs::metadata(&programme_path)?.len() as f64 * 8.0;
    std::fs::remove_dir_all(&dir)?;
    Ok(Some(RoomMeasurement {
        attempts: 0,
        recorder_pct,
        cameras_pct,
        programme_s: programme.duration_s,
        wall_s,
        programme_fps: frames / programme.duration_s,
        programme_mbps: bits / programme.duration_s / 1e6,
    }))
}
