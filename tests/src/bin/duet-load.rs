//! `duet-load`: plays classes against Duet's SFU and, side by side, against Janus's VideoRoom,
//! and reports what each forwarded, lost and cost.
//!
//! For every shape given, each SFU under test is started fresh as its own process (`duet sfu`,
//! and Janus from Debian's package), played by the same webrtc-rs participants with the same
//! clips ([`duet_tests::load`]), measured over the same window, and stopped. The SFU's CPU comes
//! from `/proc/<pid>/stat` at the window's two ends, its peak memory from `VmHWM`.
//!
//! Client and SFU share this machine's cores: the participants' own work (SRTP, pacing) competes
//! with the SFU, and on a 2-core machine they take about as much as the SFU does. That is why
//! the figures that matter are per packet of SFU CPU, and why the ratio Duet ÷ Janus is measured
//! in one run.
//!
//! # Usage
//! ```sh
//! ./deploy/install-deps.sh --bench          # GStreamer, Janus, perf
//! cargo build --release -p duet -p duet-tests
//! target/release/duet-load --sfu both --shape class:3 --shape county:4x3 --shape broadcast:30
//! # the largest county each holds under 1% loss, stopping at the first that does not
//! target/release/duet-load --sfu both --ramp --shape county:2x3 --shape county:4x3 --shape county:8x3
//! ```

use anyhow::{Context, anyhow, bail};
use clap::{Parser, ValueEnum};
use duet_sfu::core::Codec;
use duet_sfu_proto::TokenKey;
use duet_tests::load::{self, Clips, RunOptions, RunReport, Shape, Target};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};

#[derive(Parser, Debug)]
#[command(about = "Load tool for Duet's SFU, side by side with Janus")]
struct Args {
    /// Which SFU(s) to play against.
    #[arg(long, value_enum, default_value = "duet")]
    sfu: Which,
    /// Shapes to run, in order: class:N, county:KxN, broadcast:M.
    #[arg(long = "shape", required = true)]
    shapes: Vec<Shape>,
    /// Stop an SFU's series at the first shape it does not hold (loss ≥ --max-loss, a failed
    /// join, an error, or publishers that could not send the shape's whole load).
    #[arg(long)]
    ramp: bool,
    /// Video codec of the clips.
    #[arg(long, value_enum, default_value = "h264")]
    codec: VideoCodec,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Settling time between the last join and the window, seconds.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Longest wait for every participant's media, seconds.
    #[arg(long, default_value_t = 60)]
    join_timeout: u64,
    /// Receiver loss (percent) under which a shape counts as held.
    #[arg(long, default_value_t = 1.0)]
    max_loss: f64,
    /// The `duet` binary (default: next to this one).
    #[arg(long)]
    duet_bin: Option<PathBuf>,
    /// The `janus` binary.
    #[arg(long, default_value = "/usr/bin/janus")]
    janus_bin: PathBuf,
    /// Clip cache directory (default: $DUET_LOAD_CLIPS or <tmp>/duet-load-clips).
    #[arg(long)]
    clips: Option<PathBuf>,
    /// Print one JSON object per run instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    Duet,
    Janus,
    Both,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum VideoCodec {
    H264,
    Vp8,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    for s in &args.shapes {
        load::check_shape(*s)?;
    }
    let codec = match args.codec {
        VideoCodec::H264 => Codec::H264,
        VideoCodec::Vp8 => Codec::Vp8,
    };
    let dir = args.clips.clone().unwrap_or_else(load::clip::default_dir);
    eprintln!(
        "duet-load: clips in {} (made once with GStreamer)",
        dir.display()
    );
    let clips = tokio::task::spawn_blocking(move || Clips::load(codec, &dir)).await??;
    eprintln!(
        "duet-load: clip bitrates: lead camera {} kbit/s, screen {} kbit/s, room camera {} kbit/s, microphone {} kbit/s",
        clips.lead_camera.bitrate() / 1000,
        clips.screen.bitrate() / 1000,
        clips.room_camera.bitrate() / 1000,
        clips.microphone.bitrate() / 1000
    );
    let sfus: &[Which] = match args.sfu {
        Which::Duet => &[Which::Duet],
        Which::Janus => &[Which::Janus],
        Which::Both => &[Which::Duet, Which::Janus],
    };
    let mut reports: Vec<RunReport> = Vec::new();
    let mut stopped = [false, false];
    for shape in &args.shapes {
        for (n, which) in sfus.iter().enumerate() {
            if stopped[n] {
                continue;
            }
            eprintln!("duet-load: {shape} against {which:?}…");
            let report = match run_one(&args, *which, *shape, &clips).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("duet-load: {shape} against {which:?} failed: {e:#}");
                    if args.ramp {
                        stopped[n] = true;
                    }
                    continue;
                }
            };
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                eprintln!("{}", row(&report));
            }
            if args.ramp && !report.held(args.max_loss) {
                stopped[n] = true;
            }
            reports.push(report);
        }
    }
    if !args.json {
        print_tables(&reports, args.max_loss);
    }
    Ok(())
}

async fn run_one(
    args: &Args,
    which: Which,
    shape: Shape,
    clips: &Clips,
) -> anyhow::Result<RunReport> {
    let opts = |pid, bind_ip| RunOptions {
        window: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(args.warmup),
        join_timeout: Duration::from_secs(args.join_timeout),
        sfu_pid: Some(pid),
        bind_ip,
    };
    match which {
        Which::Duet => {
            let sfu = DuetProcess::start(args.duet_bin.as_deref()).await?;
            let target = Target::Duet {
                ws_url: sfu.ws_url.clone(),
                key: sfu.key.clone(),
            };
            let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let r = load::run(&target, shape, clips, &opts(sfu.pid, localhost)).await;
            sfu.stop().await;
            r
        }
        Which::Janus => {
            let server = Arc::new(
                load::janus::JanusServer::start(load::janus::JanusOptions {
                    binary: args.janus_bin.clone(),
                    ..Default::default()
                })
                .await?,
            );
            // Janus gathers no loopback candidates: its clients use the address it listens on
            // (traffic to one's own address still goes over `lo`).
            let (pid, ice_ip) = (server.pid(), server.ice_ip());
            let target = Target::Janus { server };
            load::run(&target, shape, clips, &opts(pid, ice_ip)).await
        }
        Which::Both => Err(anyhow!("one SFU at a time")),
    }
}

/// `duet sfu` as a child process on free loopback ports.
struct DuetProcess {
    child: Child,
    pid: u32,
    ws_url: String,
    key: TokenKey,
    _dir: TempDir,
}

impl DuetProcess {
    async fn start(bin: Option<&Path>) -> anyhow::Result<DuetProcess> {
        let bin = match bin {
            Some(b) => b.to_path_buf(),
            None => std::env::current_exe()?
                .parent()
                .ok_or_else(|| anyhow!("no directory for this binary"))?
                .join("duet"),
        };
        if !bin.exists() {
            bail!(
                "{} not found: build it with `cargo build --release -p duet`, or pass --duet-bin",
                bin.display()
            );
        }
        let dir = TempDir::new("duet-load-sfu")?;
        let port = free_port()?;
        let key_text: String = (0..32)
            .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
            .collect();
        let key = TokenKey::new(key_text.as_bytes()).ok_or_else(|| anyhow!("bad key"))?;
        let config = format!(
            "data_dir = {data:?}\ntoken_key = {key_text:?}\nlog = \"warn\"\n\n[sfu]\nlisten = \"127.0.0.1:{port}\"\nrtc_port_min = 40000\nrtc_port_max = 44999\nice_tcp = false\npublic_ips = [\"127.0.0.1\"]\n",
            data = dir.path.join("data").display().to_string(),
        );
        let config_path = dir.path.join("duet.toml");
        std::fs::write(&config_path, config)?;
        // The SFU's log goes to its own file, so its warnings are told apart from the clients'.
        let log_path = std::env::temp_dir().join(format!("duet-load-sfu-{port}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        eprintln!("duet-load: duet sfu log in {}", log_path.display());
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config_path)
            .arg("sfu")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("duet sfu exited at once"))?;
        let health = format!("http://127.0.0.1:{port}/healthz");
        let mut ok = false;
        for _ in 0..100 {
            let h = health.clone();
            if tokio::task::spawn_blocking(move || ureq::get(&h).call().is_ok()).await? {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !ok {
            bail!("duet sfu did not answer {health} within 10 s");
        }
        Ok(DuetProcess {
            child,
            pid,
            ws_url: format!("ws://127.0.0.1:{port}/sfu/ws"),
            key,
            _dir: dir,
        })
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A directory removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(prefix: &str) -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn row(r: &RunReport) -> String {
    format!(
        "| {} | {} | {} | {}/{} | {:.0} ({:.0} %) | {:.0} | {:.1} | {:.1} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
        r.sfu,
        r.shape,
        r.participants,
        r.tracks_published,
        r.tracks_received,
        r.rates.pps_in,
        r.offered_pct,
        r.rates.pps_out,
        r.rates.bps_in / 1e6,
        r.rates.bps_out / 1e6,
        r.rates.loss_pct,
        opt(r.jitter_ms.map(|j| j.0), 1),
        r.join_ms.map_or_else(
            || "–".into(),
            |j| format!("{:.0}/{:.0}/{:.0}", j[0], j[1], j[2])
        ),
        opt(r.sfu_cpu_pct, 0),
        opt(r.sfu_peak_rss_mib, 0),
        opt(r.pps_out_per_core, 0),
        opt(r.cpu_us_per_packet, 1),
        opt(r.client_cpu_pct, 0),
    ) + &if r.joins_incomplete + r.errors > 0 {
        format!(
            " ({} incomplete joins, {} errors)",
            r.joins_incomplete, r.errors
        )
    } else {
        String::new()
    }
}

fn print_tables(reports: &[RunReport], max_loss: f64) {
    println!(
        "| SFU | shape | participants | tracks pub/recv | pkt/s in (offered) | pkt/s out | Mbit/s in | Mbit/s out | loss % | jitter ms | join p50/p95/p99 ms | SFU CPU % | peak RSS MiB | fwd pkt/s per core | CPU µs/pkt | load tool CPU % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        println!("{}", row(r));
    }
    let duet: Vec<&RunReport> = reports.iter().filter(|r| r.sfu == "duet").collect();
    let janus: Vec<&RunReport> = reports.iter().filter(|r| r.sfu == "janus").collect();
    if !duet.is_empty() && !janus.is_empty() {
        println!();
        println!("| shape | Duet CPU µs/pkt | Janus CPU µs/pkt | Duet ÷ Janus |");
        println!("|---|---|---|---|");
        for d in &duet {
            if let Some(j) = janus.iter().find(|j| j.shape == d.shape)
                && let (Some(a), Some(b)) = (d.cpu_us_per_packet, j.cpu_us_per_packet)
            {
                println!("| {} | {a:.1} | {b:.1} | {:.2} |", d.shape, a / b);
            }
        }
    }
    println!();
    for (name, list) in [("duet", &duet), ("janus", &janus)] {
        if list.is_empty() {
            continue;
        }
        let largest = list
            .iter()
            .filter(|r| r.held(max_loss))
            .max_by_key(|r| r.tracks_received);
        match largest {
            Some(r) => println!(
                "{name}: largest shape held under {max_loss}% loss: {} ({} participants, {:.0} pkt/s out)",
                r.shape, r.participants, r.rates.pps_out
            ),
            None => println!("{name}: no shape held under {max_loss}% loss"),
        }
    }
}
