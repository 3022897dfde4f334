//! The SFU load tool's library (`duet-load` binary, and the CI smoke test).
//!
//! Many webrtc-rs participants play classes against a running SFU: publishers send pre-encoded
//! clips ([`clip`]) and answer keyframe requests and NACKs; subscribers receive, decrypt and count
//! ([`client`], [`stats`]). The same participants talk to Duet ([`duet`]) or to Janus's VideoRoom
//! ([`janus`]) through one signalling trait ([`signal`]).
//!
//! # Shapes
//! - `class:N`: one lead classroom (camera 1.5 Mbit/s 720p25, courseware screen 1 Mbit/s 1080p5,
//!   microphone) and `N` receiving classrooms (camera 0.5 Mbit/s 360p25, microphone each); every
//!   party receives every other party's tracks, as the browser client does.
//! - `county:KxN`: `K` such classes at once, every participant starting in the same instant (the
//!   bell).
//! - `broadcast:M`: one publisher (camera 1.5 Mbit/s + microphone) to `M` receive-only
//!   participants.
//!
//! # A run
//! Every participant starts at once; the run waits until each has media on every track it expects
//! (or the join timeout), lets the media settle (warm-up), then measures a window: rates and loss
//! from the difference of two counter snapshots, and the SFU process's CPU from `/proc` at the
//! same two instants.

pub mod client;
pub mod clip;
pub mod duet;
pub mod janus;
pub mod signal;
pub mod stats;

use anyhow::{Context, bail};
use client::{ParticipantPlan, RunCtx};
use clip::{Clip, ClipSpec};
use duet_sfu::core::Codec;
use duet_sfu_proto::{Role, Source, TokenKey};
use serde::Serialize;
use stats::{Counters, Rates, cpu_pct, percentiles_ms, proc_sample};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{Barrier, watch};

/// The shape of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum Shape {
    /// One class: a lead and `receiving` classrooms.
    Class {
        /// Receiving classrooms.
        receiving: usize,
    },
    /// `classes` classes of 1 + `receiving`, all starting together.
    County {
        /// Classes.
        classes: usize,
        /// Receiving classrooms per class.
        receiving: usize,
    },
    /// One publisher to `receivers` receive-only participants.
    Broadcast {
        /// Receivers.
        receivers: usize,
    },
}

impl std::str::FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?}: expected class:N, county:KxN or broadcast:M");
        let (kind, arg) = s.split_once(':').ok_or_else(bad)?;
        let num = |v: &str| v.trim().parse::<usize>().ok().filter(|n| *n > 0);
        match kind {
            "class" => Ok(Shape::Class {
                receiving: num(arg).ok_or_else(bad)?,
            }),
            "county" => {
                let (k, n) = arg.split_once('x').ok_or_else(bad)?;
                Ok(Shape::County {
                    classes: num(k).ok_or_else(bad)?,
                    receiving: num(n).ok_or_else(bad)?,
                })
            }
            "broadcast" => Ok(Shape::Broadcast {
                receivers: num(arg).ok_or_else(bad)?,
            }),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Class { receiving } => write!(f, "class:{receiving}"),
            Shape::County { classes, receiving } => write!(f, "county:{classes}x{receiving}"),
            Shape::Broadcast { receivers } => write!(f, "broadcast:{receivers}"),
        }
    }
}

/// The clips every run uses, made (or loaded from the cache) once.
#[derive(Clone, Debug)]
pub struct Clips {
    /// Lead camera, 720p25, 1.5 Mbit/s.
    pub lead_camera: Clip,
    /// Courseware screen, 1080p5, 1 Mbit/s.
    pub screen: Clip,
    /// Receiving classroom camera, 360p25, 0.5 Mbit/s.
    pub room_camera: Clip,
    /// Microphone, Opus 32 kbit/s.
    pub microphone: Clip,
}

impl Clips {
    /// Loads or makes the clips for a video codec.
    pub fn load(codec: Codec, dir: &std::path::Path) -> anyhow::Result<Clips> {
        let secs = 10;
        Ok(Clips {
            lead_camera: Clip::load_or_make(
                ClipSpec::video(codec, 1280, 720, 25, 1500, secs),
                dir,
            )?,
            screen: Clip::load_or_make(ClipSpec::video(codec, 1920, 1080, 5, 1000, secs), dir)?,
            room_camera: Clip::load_or_make(ClipSpec::video(codec, 640, 360, 25, 500, secs), dir)?,
            microphone: Clip::load_or_make(ClipSpec::opus(secs), dir)?,
        })
    }
}

/// One room of a run.
#[derive(Clone, Debug)]
struct RoomPlan {
    name: String,
    participants: Vec<(Role, ParticipantPlan)>,
}

fn plan(shape: Shape, clips: &Clips) -> Vec<RoomPlan> {
    let class = |k: usize, receiving: usize| {
        let lead = ParticipantPlan {
            name: format!("lead-{k}"),
            publishes: vec![
                (Source::Camera, clips.lead_camera.clone()),
                (Source::Screen, clips.screen.clone()),
                (Source::Microphone, clips.microphone.clone()),
            ],
            expect_tracks: 2 * receiving,
        };
        let mut participants = vec![(Role::Lead, lead)];
        for i in 0..receiving {
            participants.push((
                Role::Receiving,
                ParticipantPlan {
                    name: format!("room-{k}-{i}"),
                    publishes: vec![
                        (Source::Camera, clips.room_camera.clone()),
                        (Source::Microphone, clips.microphone.clone()),
                    ],
                    expect_tracks: 3 + 2 * (receiving - 1),
                },
            ));
        }
        RoomPlan {
            name: format!("load-{k}"),
            participants,
        }
    };
    match shape {
        Shape::Class { receiving } => vec![class(0, receiving)],
        Shape::County { classes, receiving } => (0..classes).map(|k| class(k, receiving)).collect(),
        Shape::Broadcast { receivers } => {
            let mut participants = vec![(
                Role::Lead,
                ParticipantPlan {
                    name: "lead-0".into(),
                    publishes: vec![
                        (Source::Camera, clips.lead_camera.clone()),
                        (Source::Microphone, clips.microphone.clone()),
                    ],
                    expect_tracks: 0,
                },
            )];
            for i in 0..receivers {
                participants.push((
                    Role::Observer,
                    ParticipantPlan {
                        name: format!("viewer-{i}"),
                        publishes: Vec::new(),
                        expect_tracks: 2,
                    },
                ));
            }
            vec![RoomPlan {
                name: "load-0".into(),
                participants,
            }]
        }
    }
}

/// The SFU a run drives.
#[derive(Clone)]
pub enum Target {
    /// Duet's SFU at `ws_url` (`ws://host:port/sfu/ws`), tokens signed with `key`.
    Duet {
        /// Signalling URL.
        ws_url: String,
        /// The SFU's token key.
        key: TokenKey,
    },
    /// Janus's VideoRoom.
    Janus {
        /// The running Janus.
        server: Arc<janus::JanusServer>,
    },
}

impl Target {
    /// `duet` or `janus`.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Duet { .. } => "duet",
            Target::Janus { .. } => "janus",
        }
    }
}

/// How a run is measured.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Length of the measured window.
    pub window: Duration,
    /// Time between the last join and the window.
    pub warmup: Duration,
    /// Longest wait for every participant to have media on every expected track.
    pub join_timeout: Duration,
    /// The SFU's process, for CPU and memory (none: not measured).
    pub sfu_pid: Option<u32>,
    /// Address the clients bind to.
    pub bind_ip: IpAddr,
}

/// The result of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// `duet` or `janus`.
    pub sfu: &'static str,
    /// The shape, e.g. `class:3`.
    pub shape: String,
    /// Participants.
    pub participants: usize,
    /// Published tracks.
    pub tracks_published: usize,
    /// Subscriptions (tracks received, summed over participants).
    pub tracks_received: usize,
    /// Rates and loss over the window.
    pub rates: Rates,
    /// What the publishers sent, percent of what the shape's clips call for: under ~95 % the
    /// load tool itself could not keep up (its publishers were starved of CPU), and the shape
    /// was not really offered.
    pub offered_pct: f64,
    /// Mean and largest receiver jitter, ms.
    pub jitter_ms: Option<(f64, f64)>,
    /// Join time p50, p95, p99, max, ms.
    pub join_ms: Option<[f64; 4]>,
    /// Participants without media on every expected track when the window began.
    pub joins_incomplete: u64,
    /// Participants that ended with an error.
    pub errors: u64,
    /// Keyframe requests publishers received, over the whole run.
    pub plis: u64,
    /// NACKs publishers received, over the whole run.
    pub nacks: u64,
    /// The SFU process's CPU over the window, percent of one core.
    pub sfu_cpu_pct: Option<f64>,
    /// Its peak resident memory, MiB.
    pub sfu_peak_rss_mib: Option<f64>,
    /// The load tool's own CPU over the window, percent of one core (when it is above ~90% per
    /// core of the machine, loss may be the clients', not the SFU's).
    pub client_cpu_pct: Option<f64>,
    /// Forwarded packets per second per core of SFU CPU.
    pub pps_out_per_core: Option<f64>,
    /// SFU CPU time per forwarded packet, microseconds.
    pub cpu_us_per_packet: Option<f64>,
}

impl RunReport {
    /// Whether the run held: the shape's whole load was offered, everyone joined, no errors,
    /// and receiver loss under `max_loss_pct`.
    pub fn held(&self, max_loss_pct: f64) -> bool {
        self.offered_pct >= 95.0
            && self.joins_incomplete == 0
            && self.errors == 0
            && self.rates.loss_pct < max_loss_pct
    }
}

/// Runs one shape against one SFU.
pub async fn run(
    target: &Target,
    shape: Shape,
    clips: &Clips,
    opts: &RunOptions,
) -> anyhow::Result<RunReport> {
    let rooms = plan(shape, clips);
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Target::Janus { server } = target {
        for (k, room) in rooms.iter().enumerate() {
            server
                .create_room(janus_room_id(k), room.participants.len() as u32)
                .await
                .with_context(|| format!("creating Janus room {}", room.name))?;
        }
    }
    let participants: usize = rooms.iter().map(|r| r.participants.len()).sum();
    let tracks_published: usize = rooms
        .iter()
        .flat_map(|r| r.participants.iter())
        .map(|(_, p)| p.publishes.len())
        .sum();
    let nominal_pps_in: f64 = rooms
        .iter()
        .flat_map(|r| r.participants.iter())
        .flat_map(|(_, p)| p.publishes.iter())
        .map(|(_, clip)| clip.packet_rate())
        .sum();
    let tracks_received: usize = rooms
        .iter()
        .flat_map(|r| r.participants.iter())
        .map(|(_, p)| p.expect_tracks)
        .sum();
    let mut handles = Vec::new();
    for (k, room) in rooms.into_iter().enumerate() {
        let barrier = Arc::new(Barrier::new(room.participants.len()));
        for (i, (role, p)) in room.participants.into_iter().enumerate() {
            let ctx = RunCtx {
                counters: counters.clone(),
                published: barrier.clone(),
                stop: stop_rx.clone(),
                bind_ip: opts.bind_ip,
            };
            let target = target.clone();
            let room_name = room.name.clone();
            handles.push(tokio::spawn(async move {
                let joined: anyhow::Result<Box<dyn signal::Signalling>> = match &target {
                    Target::Duet { ws_url, key } => {
                        let token = duet::token(key, &room_name, &p.name, &p.name, role);
                        duet::DuetSignalling::join(ws_url, token)
                            .await
                            .map(|s| Box::new(s) as Box<dyn signal::Signalling>)
                    }
                    Target::Janus { server } => {
                        let feed = (k as u64) * 10_000 + i as u64 + 1;
                        janus::JanusSignalling::join(&server.url(), janus_room_id(k), &p.name, feed)
                            .await
                            .map(|s| Box::new(s) as Box<dyn signal::Signalling>)
                    }
                };
                let sig = match joined {
                    Ok(sig) => sig,
                    Err(e) => {
                        ctx.counters.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(who = %p.name, error = %format!("{e:#}"), "join failed");
                        // Let the room's others pass the barrier anyway.
                        ctx.published.wait().await;
                        return;
                    }
                };
                let _ = client::run_participant(p, sig, ctx).await;
            }));
        }
    }
    // Wait for every participant to have media (or to have failed).
    let deadline = Instant::now() + opts.join_timeout;
    while Instant::now() < deadline {
        let done = counters.join_times().len() as u64 + counters.errors.load(Ordering::Relaxed);
        if done >= participants as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let joined = counters.join_times().len();
    tokio::time::sleep(opts.warmup).await;
    let a = counters.snapshot();
    let pa = opts.sfu_pid.and_then(|pid| proc_sample(pid).ok());
    let me = std::process::id();
    let ca = proc_sample(me).ok();
    tokio::time::sleep(opts.window).await;
    let b = counters.snapshot();
    let pb = opts.sfu_pid.and_then(|pid| proc_sample(pid).ok());
    let cb = proc_sample(me).ok();
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    }
    let rates = Rates::between(&a, &b);
    let sfu_cpu_pct = pa.zip(pb).map(|(a, b)| cpu_pct(&a, &b));
    let cpu_seconds = pa
        .zip(pb)
        .map(|(a, b)| b.cpu.saturating_sub(a.cpu).as_secs_f64());
    let packets_out = rates.pps_out * rates.seconds;
    Ok(RunReport {
        sfu: target.name(),
        shape: shape.to_string(),
        participants,
        tracks_published,
        tracks_received,
        rates,
        offered_pct: if nominal_pps_in > 0.0 {
            rates.pps_in * 100.0 / nominal_pps_in
        } else {
            100.0
        },
        jitter_ms: counters
            .jitter()
            .map(|(m, x)| (m.as_secs_f64() * 1e3, x.as_secs_f64() * 1e3)),
        join_ms: percentiles_ms(counters.join_times()),
        joins_incomplete: (participants - joined.min(participants)) as u64,
        errors: counters.errors.load(Ordering::Relaxed),
        plis: counters.plis.load(Ordering::Relaxed),
        nacks: counters.nacks.load(Ordering::Relaxed),
        sfu_cpu_pct,
        sfu_peak_rss_mib: pb.map(|p| p.peak_rss as f64 / (1024.0 * 1024.0)),
        client_cpu_pct: ca
            .zip(cb)
            .filter(|_| opts.sfu_pid != Some(me))
            .map(|(a, b)| cpu_pct(&a, &b)),
        pps_out_per_core: sfu_cpu_pct
            .filter(|c| *c > 0.0)
            .map(|c| rates.pps_out / (c / 100.0)),
        cpu_us_per_packet: cpu_seconds
            .filter(|_| packets_out > 0.0)
            .map(|s| s * 1e6 / packets_out),
    })
}

fn janus_room_id(k: usize) -> u64 {
    4_000 + k as u64
}

/// Checks a shape's numbers against what one machine can start.
pub fn check_shape(shape: Shape) -> anyhow::Result<()> {
    let participants = match shape {
        Shape::Class { receiving } => 1 + receiving,
        Shape::County { classes, receiving } => classes * (1 + receiving),
        Shape::Broadcast { receivers } => 1 + receivers,
    };
    if participants > 2_000 {
        bail!("{shape}: {participants} participants is more than one load machine can play");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_print() {
        for s in ["class:3", "county:10x3", "broadcast:50"] {
            assert_eq!(s.parse::<Shape>().unwrap().to_string(), s);
        }
        for bad in [
            "class",
            "class:0",
            "county:3",
            "county:x3",
            "mesh:4",
            "broadcast:-1",
        ] {
            assert!(bad.parse::<Shape>().is_err(), "{bad}");
        }
    }
}
