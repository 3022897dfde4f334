//! The gateway's configuration.

use serde::{Deserialize, Serialize};

/// Configuration of the gateway (`[gateway]` in `duet.toml`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address of the HTTP listener: web client, API, and (under `duet up`) the SFU's signalling.
    pub listen: String,
    /// WebSocket URL of the SFU for browsers, e.g. `wss://sfu.example.edu.cn/sfu/ws`. Empty: the
    /// same host and port as the page (as under `duet up`).
    pub sfu_url: String,
    /// Lifetime of a join token, in seconds.
    pub join_token_ttl_secs: u64,
    /// Seed the demo district (one urban school paired with two rural schools, a timetable with
    /// a class now) and print its logins, with fresh passwords, at start-up.
    pub demo: bool,
    /// Mark the session cookie `Secure` (set when Duet is served over HTTPS).
    pub secure_cookies: bool,
    /// Sampling interval of the automatic S-T analysis of a registered lesson, ms
    /// (1000..=300000; DOMAIN.md's usual 30 s).
    pub st_interval_ms: u64,
    /// The database.
    pub store: crate::store::StoreConfig,
    /// Lifetime of a signed media URL (lesson videos, tracks, pictures, clips), in seconds.
    pub media_url_ttl_secs: u64,
    /// Where rendered clips (晒课) are written. Empty: `duet-clips` in the system's temporary
    /// directory (the duet binary sets `<data_dir>/clips`).
    pub clips_dir: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            sfu_url: String::new(),
            join_token_ttl_secs: 4 * 3600,
            demo: true,
            secure_cookies: false,
            st_interval_ms: 30_000,
            store: crate::store::StoreConfig::default(),
            media_url_ttl_secs: 4 * 3600,
            clips_dir: String::new(),
        }
    }
}

impl GatewayConfig {
    /// The directory for rendered clips ([`GatewayConfig::clips_dir`], or the default).
    pub fn clips_path(&self) -> std::path::PathBuf {
        if self.clips_dir.is_empty() {
            std::env::temp_dir().join("duet-clips")
        } else {
            std::path::PathBuf::from(&self.clips_dir)
        }
    }

    /// Checks the values for consistency.
    pub fn validate(&self) -> Result<(), String> {
        if !(60..=24 * 3600).contains(&self.join_token_ttl_secs) {
            return Err("gateway.join_token_ttl_secs must be between 60 and 86400".into());
        }
        let scheme_ok = self.sfu_url.starts_with("ws://") || self.sfu_url.starts_with("wss://");
        if !self.sfu_url.is_empty() && !scheme_ok {
            return Err("gateway.sfu_url must start with ws:// or wss://".into());
        }
        if !(60..=24 * 3600).contains(&self.media_url_ttl_secs) {
            return Err("gateway.media_url_ttl_secs must be between 60 and 86400".into());
        }
        if !(1_000..=300_000).contains(&self.st_interval_ms) {
            return Err("gateway.st_interval_ms must be between 1000 and 300000".into());
        }
        self.store.validate()?;
        Ok(())
    }
}
