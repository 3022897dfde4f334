//! `live-recorder <duet.toml>`: Duet's live-class recorder as a process of its own (what
//! `duet live-recorder` runs), for tests that kill it mid-class and start it again.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: live-recorder <duet.toml>")?;
    let config = duet::DuetConfig::load(path.as_ref())?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rtc=error,webrtc=error".into()),
        )
        .init();
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler installs on Unix");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    duet::live::run_standalone(&config, stop).await
}
