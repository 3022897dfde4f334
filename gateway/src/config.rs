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
    /// The database.
    pub store: crate::store::StoreConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            sfu_url: String::new(),
            join_token_ttl_secs: 4 * 3600,
            demo: true,
            secure_cookies: false,
            store: crate::store::StoreConfig::default(),
        }
    }
}

impl GatewayConfig {
    /// Checks the values for consistency.
    pub fn validate(&self) -> Result<(), String> {
        if !(60..=24 * 3600).contains(&self.join_token_ttl_secs) {
            return Err("gateway.join_token_ttl_secs must be between 60 and 86400".into());
        }
        let scheme_ok = self.sfu_url.starts_with("ws://") || self.sfu_url.starts_with("wss://");
        if !self.sfu_url.is_empty() && !scheme_ok {
            return Err("gateway.sfu_url must start with ws:// or wss://".into());
        }
        self.store.validate()?;
        Ok(())
    }
}
