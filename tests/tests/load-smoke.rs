//! The load tool's smoke test: a class of one lead and three receiving classrooms, played by the
//! load tool's webrtc-rs participants through Duet's SFU for a few seconds, with zero receiver
//! loss and the class's fan-out asserted. Benchmarks proper (`duet-load`, `docs/benchmarks.md`)
//! are not run in CI.

use duet::DuetConfig;
use duet_sfu::core::Codec;
use duet_tests::load::{self, Clips, RunOptions, Shape, Target};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_of_one_and_three_flows_without_loss() -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("duet-load-smoke-{}", std::process::id()));
    let mut config = DuetConfig {
        data_dir: data.clone(),
        token_key: "load-smoke-key-0123456789".into(),
        ..Default::default()
    };
    config.sfu.listen = "127.0.0.1:0".into();
    config.sfu.rtc_port_min = 45_000;
    config.sfu.rtc_port_max = 45_999;
    config.sfu.ice_tcp = false;
    config.sfu.public_ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let running = duet::start_sfu(&config).await?;
    let target = Target::Duet {
        ws_url: format!("ws://{}/sfu/ws", running.addr),
        key: config.token_key()?,
    };
    let clips_dir = load::clip::default_dir();
    let clips = tokio::task::spawn_blocking(move || Clips::load(Codec::H264, &clips_dir)).await??;
    let opts = RunOptions {
        window: Duration::from_secs(4),
        warmup: Duration::from_secs(2),
        join_timeout: Duration::from_secs(30),
        sfu_pid: Some(std::process::id()),
        bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let shape = Shape::Class { receiving: 3 };
    let r = load::run(&target, shape, &clips, &opts).await?;
    eprintln!("{}", serde_json::to_string_pretty(&r)?);
    running.stop().await;
    let _ = std::fs::remove_dir_all(&data);

    assert_eq!(r.participants, 4);
    assert_eq!(r.tracks_published, 3 + 3 * 2);
    // The lead receives 3 × 2 tracks; each room 3 from the lead and 2 × 2 from the others.
    assert_eq!(r.tracks_received, 6 + 3 * 7);
    assert_eq!(
        r.joins_incomplete, 0,
        "every participant has media on every track"
    );
    assert_eq!(r.errors, 0);
    assert!(
        r.rates.pps_in > 300.0,
        "publishers sent {:.0} pkt/s",
        r.rates.pps_in
    );
    // Every packet in goes to the three other parties of the class.
    let fanout = r.rates.pps_out / r.rates.pps_in;
    assert!(
        (2.7..=3.2).contains(&fanout),
        "fan-out {fanout:.2}, expected 3 ({:.0} in, {:.0} out)",
        r.rates.pps_in,
        r.rates.pps_out
    );
    assert_eq!(r.rates.loss_pct, 0.0, "no receiver loss on loopback");
    let [p50, ..] = r.join_ms.expect("join times");
    assert!(p50 > 0.0);
    Ok(())
}
