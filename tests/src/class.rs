//! Helpers for browser tests of a live class: reading Duet's class page (`window.duet.summary()`,
//! its `getStats()` digest) and running a `harness = false` test binary's cases inside the
//! private network namespace ([`crate::netns`]) with libtest-like output.

use crate::{Page, TestNet, enter_private_network};
use anyhow::{Result, bail};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// `duet up` for a browser test in the private network: listening on `host`, signing join tokens
/// with `key`, no demo district (its recorder and cameras would compete for the CPU), media on
/// ports 52000–52999, data in `data_dir`.
pub fn class_config(host: &str, key: &str, data_dir: std::path::PathBuf) -> duet::DuetConfig {
    let mut config = duet::DuetConfig {
        data_dir,
        token_key: key.into(),
        ..duet::DuetConfig::default()
    };
    config.gateway.listen = format!("{host}:0");
    config.gateway.demo = false;
    config.sfu.rtc_port_min = 52_000;
    config.sfu.rtc_port_max = 52_999;
    config
}

/// The page's digest of its peer connections: `inbound` (per received track, with participant,
/// source and the inbound-rtp numbers) and `outbound` (per published track, with its layers).
pub async fn summary(page: &Page) -> Result<Value> {
    page.evaluate("window.duet.summary()").await
}

/// The inbound entry of a summary for `participant`'s `source`.
pub fn inbound<'a>(s: &'a Value, participant: &str, source: &str) -> Option<&'a Value> {
    s["inbound"]
        .as_array()?
        .iter()
        .find(|i| i["participant"] == participant && i["source"] == source)
}

/// A number field of an entry, 0 when absent.
pub fn num(v: Option<&Value>, field: &str) -> f64 {
    v.and_then(|v| v[field].as_f64()).unwrap_or(0.0)
}

/// Polls the page's summary every 500 ms until `ok` holds; on timeout the error carries the last
/// summary and the page's console tail.
pub async fn wait_until<F>(page: &Page, what: &str, timeout: Duration, mut ok: F) -> Result<Value>
where
    F: FnMut(&Value) -> bool,
{
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(s) = summary(page).await {
            if ok(&s) {
                return Ok(s);
            }
            last = s;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "timed out waiting for {what}; last summary: {last:#}\nconsole: {:#?}",
        page.console_tail()
    )
}

/// One case of a `harness = false` browser test.
pub type Case = (
    &'static str,
    fn(TestNet) -> Pin<Box<dyn Future<Output = Result<()>>>>,
);

/// Enters the private network, sets up logging, and runs the cases (filtered by the command
/// line's non-flag arguments) one after another on a multi-threaded runtime, printing libtest's
/// lines; exits 1 if any failed. Call it first thing in `main`: the namespace must be entered
/// while the process has a single thread.
pub fn run_cases(binary: &str, cases: &[Case]) -> ! {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let net = match enter_private_network() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{binary}: {e:#}");
            println!(
                "test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out"
            );
            std::process::exit(1);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "warn,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_srtp=error,webrtc=error".into()
            }),
        )
        .with_test_writer()
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (mut passed, mut failed, mut filtered) = (0, 0, 0);
    println!("\nrunning {} tests", cases.len());
    for (name, case) in cases {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            filtered += 1;
            continue;
        }
        let started = Instant::now();
        match rt.block_on(case(net)) {
            Ok(()) => {
                passed += 1;
                println!(
                    "test {name} ... ok ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED\n{e:#}");
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {filtered} filtered out\n"
    );
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
