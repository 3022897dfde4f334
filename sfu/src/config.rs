//! The SFU's configuration: one typed struct, every field with a documented default.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Configuration of the SFU (`[sfu]` in `duet.toml`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SfuConfig {
    /// Address of the SFU's own HTTP listener (signalling `/sfu/ws` and `/metrics`) when it runs
    /// alone (`duet sfu`). Under `duet up` the gateway's listener serves the same routes.
    pub listen: String,
    /// First UDP (and TCP) port for media. Each peer connection takes one port from
    /// `rtc_port_min..=rtc_port_max`; open this range in the school's firewall.
    pub rtc_port_min: u16,
    /// Last port of the media range.
    pub rtc_port_max: u16,
    /// Also offer ICE-TCP (passive) candidates on the same port numbers, for networks that block
    /// UDP.
    pub ice_tcp: bool,
    /// The IP addresses advertised in ICE candidates instead of the interface addresses (the
    /// public address of a server behind 1:1 NAT). Empty: advertise interface addresses.
    pub public_ips: Vec<IpAddr>,
    /// How long a subscriber's send queue may grow, in packets, before packets are dropped for
    /// that subscriber alone (NACK then recovers what it can).
    pub subscriber_queue_packets: usize,
    /// Video packets kept per published track (per simulcast layer) to answer NACKs.
    pub retransmit_cache_packets: usize,
    /// Milliseconds between two keyframe requests to one layer of a publisher track.
    pub pli_interval_ms: u64,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:7880".into(),
            rtc_port_min: 50_000,
            rtc_port_max: 50_999,
            ice_tcp: true,
            public_ips: Vec::new(),
            subscriber_queue_packets: 1024,
            retransmit_cache_packets: 1024,
            pli_interval_ms: 1000,
        }
    }
}

impl SfuConfig {
    /// Checks the values for consistency.
    pub fn validate(&self) -> Result<(), String> {
        if self.rtc_port_min == 0 || self.rtc_port_min > self.rtc_port_max {
            return Err(format!(
                "sfu.rtc_port_min ({}) must be non-zero and not above sfu.rtc_port_max ({})",
                self.rtc_port_min, self.rtc_port_max
            ));
        }
        if self.subscriber_queue_packets == 0 {
            return Err("sfu.subscriber_queue_packets must be at least 1".into());
        }
        if self.pli_interval_ms < 100 {
            return Err("sfu.pli_interval_ms must be at least 100".into());
        }
        Ok(())
    }
}
