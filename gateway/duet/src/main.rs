//! `duet`: one binary for every Duet service.
//!
//! - `duet up`: everything in one process on the embedded defaults, printing the URL and the
//!   demo logins.
//! - `duet sfu`, `duet gateway`, `duet recorder`: one service alone.

use anyhow::Context;
use clap::{Parser, Subcommand};
use duet::{DuetConfig, Running, start_gateway, start_sfu, start_up};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "duet",
    version,
    about = "Duet: media infrastructure for dual-teacher classrooms"
)]
struct Cli {
    /// Configuration file (TOML); see deploy/duet.sample.toml. Defaults apply without one.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in one process (SQLite and files under the data directory).
    Up,
    /// Run the SFU alone.
    Sfu,
    /// Run the gateway alone.
    Gateway,
    /// Run the recorder alone, for the recording classrooms in `[recorder]` (needs
    /// `recorder.gateway_url` and a machine token in `recorder.gateway_token`).
    Recorder,
    /// Record the live classes alone (needs `live.gateway_url` and a district machine token in
    /// `live.gateway_token`); recordings left by a killed run resume or are delivered.
    LiveRecorder,
    /// Register a district and its first administrator (prints the password once).
    CreateDistrict {
        /// The district's name, e.g. 城关区.
        #[arg(long)]
        name: String,
        /// The administrator's login name.
        #[arg(long)]
        admin: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(p) => DuetConfig::load(p)?,
        None => DuetConfig::default(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log)),
        )
        .init();
    let mut running = match cli.command {
        Command::Up => start_up(&config).await,
        Command::Sfu => start_sfu(&config).await,
        Command::Gateway => start_gateway(&config).await,
        Command::Recorder => {
            config.validate()?;
            let recorder =
                duet::recording::start_recorder(config.recorder.clone(), config.data_dir.clone())
                    .await
                    .context("the recorder did not start")?;
            println!(
                "Duet recorder is running for {} (gateway {}).",
                config.recorder.classrooms.join(", "),
                config.recorder.gateway_url
            );
            shutdown_signal().await;
            eprintln!("Duet recorder: stopping (running recordings are closed and resume at the next start)…");
            duet::recording::stop_recorder(recorder).await;
            return Ok(());
        }
        Command::LiveRecorder => {
            duet::live::run_standalone(&config, shutdown_signal()).await?;
            return Ok(());
        }
        Command::CreateDistrict { name, admin } => {
            let (district, password) = duet::run::create_district(&config, &name, &admin).await?;
            println!("District {name} ({district}) created.");
            println!("Administrator: {admin}  password: {password}  (shown once; change it after the first login)");
            return Ok(());
        }
    }
    .context("Duet did not start")?;
    announce(&running);
    tokio::select! {
        r = running.wait() => r.context("server stopped")?,
        _ = shutdown_signal() => {
            eprintln!("Duet: stopping…");
            running.stop().await;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler works on Unix");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The address other classroom PCs can reach: the interface a route to a private address would
/// use (a UDP `connect` sends nothing).
fn lan_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.254.254.254:9").ok()?;
    s.local_addr()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
}

fn announce(r: &Running) {
    let port = r.addr.port();
    println!();
    println!("Duet is running.");
    if r.gateway.is_some() {
        println!("  Open:    http://localhost:{port}/admin");
        if let Some(ip) = lan_ip() {
            println!("  From classroom PCs: http://{ip}:{port}/");
            println!("    (browsers allow camera and microphone only on localhost or over HTTPS:");
            println!("     put an HTTPS reverse proxy in front for other PCs, see README.md)");
        }
    }
    if r.sfu.is_some() {
        println!("  Metrics: http://localhost:{port}/metrics");
    }
    if !r.demo_logins.is_empty() {
        println!();
        println!("  Demo district (城关区): sign in at http://localhost:{port}/admin with");
        for a in &r.demo_logins {
            println!(
                "    {:<13} password {:<11} {} ({})",
                a.username, a.password, a.display_name, a.role
            );
        }
        println!(
            "  A class is on now: sign in as `teacher` in one window and `room-a` in another, press 进入课堂."
        );
        if r.recorder.is_some() {
            println!(
                "  The simulated recording classroom (录播教室) records its timetabled lesson by itself:"
            );
            println!(
                "    see 录播教室 and 课堂实录 as `school-admin`; lessons go to the archive after the bell."
            );
        }
    }
    println!();
}
