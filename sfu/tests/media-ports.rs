//! The SFU's peer connections gather host candidates only on the configured media port range,
//! over UDP and (when enabled) ICE-TCP, with mDNS off.

use duet_sfu::{Sfu, SfuConfig};
use duet_sfu_proto::TokenKey;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionIceEvent,
};

#[derive(Default)]
struct Collect {
    candidates: Mutex<Vec<String>>,
    complete: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Collect {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(c) = event.candidate.to_json() {
            self.candidates.lock().unwrap().push(c.candidate);
        }
    }
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.complete.notify_one();
        }
    }
}

#[tokio::test]
async fn candidates_use_the_configured_ports_over_udp_and_tcp() {
    let config = SfuConfig {
        rtc_port_min: 53_100,
        rtc_port_max: 53_109,
        ice_tcp: true,
        ..SfuConfig::default()
    };
    let sfu = Sfu::new(config, TokenKey::new(*b"media-ports-test-key").unwrap()).unwrap();
    let handler = Arc::new(Collect::default());
    let pc = sfu.peer_connection(handler.clone(), None).await.unwrap();
    pc.add_transceiver_from_kind(rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio, None)
        .await
        .unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), handler.complete.notified()).await;
    let candidates = handler.candidates.lock().unwrap().clone();
    assert!(!candidates.is_empty(), "no candidates gathered");
    let mut protocols = std::collections::BTreeSet::new();
    for c in &candidates {
        // candidate:<foundation> <component> <protocol> <priority> <address> <port> typ <type> ...
        let f: Vec<&str> = c.split_whitespace().collect();
        let port: u16 = f[5].parse().unwrap();
        assert!(!f[4].ends_with(".local"), "mDNS candidate {c}");
        if c.contains("tcptype active") {
            // RFC 6544: active TCP candidates carry the discard port; they listen on nothing.
            assert_eq!(port, 9, "{c}");
            continue;
        }
        assert!(
            (53_100..=53_109).contains(&port),
            "port {port} outside the range in {c}"
        );
        let proto = f[2].to_ascii_lowercase();
        if proto == "tcp" {
            assert!(c.contains("tcptype passive"), "{c}");
        }
        protocols.insert(proto);
    }
    assert!(protocols.contains("udp"), "{candidates:?}");
    assert!(
        protocols.contains("tcp"),
        "no ICE-TCP candidate: {candidates:?}"
    );
    pc.close().await.unwrap();
}
