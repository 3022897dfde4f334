//! Recording live classes in the one binary: the live recorder started beside the gateway and
//! SFU (`duet up`) or alone (`duet live-recorder`), its machine token, and the clip renderer
//! (晒课) the gateway's clip jobs run on.
//!
//! Like the recording-room recorder, the live recorder talks to the gateway over HTTP (which
//! classes are live, lesson registration) and to the SFU over its WebSocket, even in one
//! process, so both deployments run the same code.

use duet_gateway::store::{Role, Store, StoreError};
use duet_recorder::live::service::{LiveRecorder, LiveRecorderConfig};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The name of the token `duet up` issues to its own live recorder (older ones are revoked).
const IN_PROCESS_TOKEN: &str = "duet up 同步课堂录制 (in-process live recorder)";

/// `[live]`: recording live classes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// Record every paired live class (`duet up` starts the live recorder).
    pub enabled: bool,
    /// How often the gateway is asked which classes are live, milliseconds.
    pub poll_ms: u64,
    /// How long a class must be empty before its lesson ends and is delivered, seconds (a
    /// page reload or a short drop does not end a lesson).
    pub end_grace_s: u64,
    /// For `duet live-recorder` alone: the gateway (`http://host:port`). Empty under `duet up`.
    pub gateway_url: String,
    /// For `duet live-recorder` alone: a machine token of the district. Empty under `duet up`.
    pub gateway_token: String,
    /// For `duet live-recorder` alone: the SFU's signalling URL (`ws://host:port/sfu/ws`);
    /// empty: the gateway's host with `/sfu/ws`.
    pub sfu_url: String,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_ms: 2000,
            end_grace_s: 20,
            gateway_url: String::new(),
            gateway_token: String::new(),
            sfu_url: String::new(),
        }
    }
}

impl LiveConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        if !(200..=60_000).contains(&self.poll_ms) {
            return Err(format!(
                "live.poll_ms {} is outside 200..=60000",
                self.poll_ms
            ));
        }
        if !(1..=3600).contains(&self.end_grace_s) {
            return Err(format!(
                "live.end_grace_s {} is outside 1..=3600",
                self.end_grace_s
            ));
        }
        Ok(())
    }

    /// The signalling URL for a gateway at `gateway_url` when `sfu_url` is empty.
    pub fn sfu_ws_url(&self, gateway_url: &str) -> String {
        if !self.sfu_url.is_empty() {
            return self.sfu_url.clone();
        }
        let rest = gateway_url
            .strip_prefix("http://")
            .map(|r| format!("ws://{r}"))
            .or_else(|| {
                gateway_url
                    .strip_prefix("https://")
                    .map(|r| format!("wss://{r}"))
            })
            .unwrap_or_else(|| gateway_url.to_owned());
        format!("{}/sfu/ws", rest.trim_end_matches('/'))
    }
}

/// Issues a district-wide machine token for the in-process live recorder (it records every
/// school's classes of the first district), revoking those earlier starts issued. `None`
/// without a district.
pub async fn issue_live_token(store: &Store) -> Result<Option<String>, StoreError> {
    let districts = store.list_districts().await?;
    if districts.len() > 1 {
        tracing::warn!(
            districts = districts.len(),
            "the in-process live recorder records the first district only: run `duet live-recorder` with a token of each other district"
        );
    }
    let Some(district) = districts.into_iter().next() else {
        return Ok(None);
    };
    let Some(creator) = store
        .list_users_in_district(&district.id)
        .await?
        .into_iter()
        .find(|u| matches!(u.role, Role::DistrictAdmin))
    else {
        return Ok(None);
    };
    let token = crate::recording::issue_machine_token(
        store,
        IN_PROCESS_TOKEN,
        &district.id,
        None,
        &creator.id,
    )
    .await?;
    Ok(Some(token))
}

/// The live recorder's configuration from Duet's.
pub fn recorder_config(
    live: &LiveConfig,
    recorder: &duet_recorder::service::RecorderConfig,
    data_dir: &Path,
    gateway_url: String,
    gateway_token: String,
) -> LiveRecorderConfig {
    LiveRecorderConfig {
        sfu_ws_url: live.sfu_ws_url(&gateway_url),
        gateway_url,
        gateway_token,
        data_dir: data_dir.to_owned(),
        archive: recorder.delivery.clone().with_data_dir(data_dir).archive,
        poll: Duration::from_millis(live.poll_ms),
        end_grace: Duration::from_secs(live.end_grace_s),
    }
}

/// The live recorder under `duet up`, with this gateway at `addr` and a token issued for it;
/// `None` when disabled or impossible (logged: live classes do not depend on it).
pub async fn start_in_process(
    config: &crate::DuetConfig,
    store: &Store,
    addr: SocketAddr,
) -> Option<LiveRecorder> {
    if !config.live.enabled {
        return None;
    }
    let token = match issue_live_token(store).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            tracing::info!("no district yet: live classes are not recorded");
            return None;
        }
        Err(err) => {
            tracing::warn!(%err, "no token for the live recorder: live classes are not recorded");
            return None;
        }
    };
    let live = recorder_config(
        &config.live,
        &config.recorder,
        &config.data_dir,
        format!("http://{}", local_address(addr)),
        token,
    );
    match LiveRecorder::start(live) {
        Ok(r) => Some(r),
        Err(err) => {
            tracing::warn!(%err, "the live recorder did not start");
            None
        }
    }
}

/// `duet live-recorder`: the live recorder alone, until `until` completes (a signal). Needs
/// `live.gateway_url` and `live.gateway_token`.
pub async fn run_standalone(
    config: &crate::DuetConfig,
    until: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    anyhow::ensure!(
        !config.live.gateway_url.is_empty() && !config.live.gateway_token.is_empty(),
        "live.gateway_url and live.gateway_token must be set"
    );
    let live = recorder_config(
        &config.live,
        &config.recorder,
        &config.data_dir,
        config.live.gateway_url.clone(),
        config.live.gateway_token.clone(),
    );
    let sfu = live.sfu_ws_url.clone();
    let recorder = LiveRecorder::start(live)
        .map_err(anyhow::Error::msg)
        .map_err(|e| e.context("the live recorder did not start"))?;
    println!(
        "Duet live recorder is running (gateway {}, SFU {sfu}).",
        config.live.gateway_url
    );
    until.await;
    eprintln!("Duet live recorder: stopping (recordings resume at the next start)…");
    recorder.stop().await;
    Ok(())
}

/// Where this process reaches its own listener: loopback when it listens on every address.
pub(crate) fn local_address(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}

/// The gateway's clip jobs (晒课) rendered by the recorder's GStreamer pipeline.
pub struct GstClipRenderer;

impl duet_gateway::clips::ClipRenderer for GstClipRenderer {
    fn render(
        &self,
        job: duet_gateway::clips::ClipJob,
        progress: &dyn Fn(f32),
    ) -> Result<(), String> {
        let spec = duet_recorder::post::clip::ClipSpec {
            input: job.input,
            start_ms: job.start_ms,
            end_ms: job.end_ms,
            title: duet_recorder::post::clip::TitleCard {
                course: job.title.course,
                grade: job.title.grade,
                edition: job.title.edition,
                teacher: job.title.teacher,
                school: job.title.school,
            },
            output: job.output,
        };
        duet_recorder::post::clip::render_clip(&spec, progress)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signalling_url_follows_the_gateway() {
        let c = LiveConfig::default();
        assert_eq!(
            c.sfu_ws_url("http://127.0.0.1:8080"),
            "ws://127.0.0.1:8080/sfu/ws"
        );
        assert_eq!(
            c.sfu_ws_url("https://duet.example/"),
            "wss://duet.example/sfu/ws"
        );
        let explicit = LiveConfig {
            sfu_url: "ws://sfu:9000/sfu/ws".into(),
            ..LiveConfig::default()
        };
        assert_eq!(explicit.sfu_ws_url("http://x"), "ws://sfu:9000/sfu/ws");
        assert!(
            LiveConfig {
                poll_ms: 10,
                ..LiveConfig::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            LiveConfig {
                end_grace_s: 0,
                ..LiveConfig::default()
            }
            .validate()
            .is_err()
        );
        LiveConfig::default().validate().unwrap();
    }
}
