//! Prometheus text exposition of the SFU's gauges and counters.

use crate::sfu::Sfu;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Renders `/metrics`.
pub fn render(sfu: &Sfu) -> String {
    let rooms = sfu.rooms();
    let mut total = sfu
        .counters
        .closed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (mut participants, mut tracks, mut subs) = (0usize, 0usize, 0usize);
    for r in &rooms {
        let inner = r.lock();
        participants += inner.members.len();
        tracks += inner.core.track_count();
        subs += inner.core.subscription_count();
        let s = inner.core.stats();
        total.packets_in += s.packets_in;
        total.bytes_in += s.bytes_in;
        total.packets_out += s.packets_out;
        total.bytes_out += s.bytes_out;
        total.nacks += s.nacks;
        total.nack_hits += s.nack_hits;
        total.nack_misses += s.nack_misses;
        total.plis_sent += s.plis_sent;
        total.plis_throttled += s.plis_throttled;
    }
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric("duet_sfu_rooms", "gauge", "Live rooms.", rooms.len() as u64);
    metric(
        "duet_sfu_participants",
        "gauge",
        "Joined participants.",
        participants as u64,
    );
    metric(
        "duet_sfu_tracks",
        "gauge",
        "Published tracks.",
        tracks as u64,
    );
    metric(
        "duet_sfu_subscriptions",
        "gauge",
        "Subscriptions.",
        subs as u64,
    );
    metric(
        "duet_sfu_packets_in_total",
        "counter",
        "RTP packets received from publishers.",
        total.packets_in,
    );
    metric(
        "duet_sfu_bytes_in_total",
        "counter",
        "RTP payload bytes received from publishers.",
        total.bytes_in,
    );
    metric(
        "duet_sfu_packets_forwarded_total",
        "counter",
        "RTP packets forwarded to subscribers.",
        total.packets_out,
    );
    metric(
        "duet_sfu_bytes_forwarded_total",
        "counter",
        "RTP payload bytes forwarded to subscribers.",
        total.bytes_out,
    );
    metric(
        "duet_sfu_nacks_total",
        "counter",
        "Sequence numbers NACKed by subscribers.",
        total.nacks,
    );
    metric(
        "duet_sfu_nack_hits_total",
        "counter",
        "NACKed packets resent from the cache.",
        total.nack_hits,
    );
    metric(
        "duet_sfu_nack_misses_total",
        "counter",
        "NACKed packets not in the cache.",
        total.nack_misses,
    );
    metric(
        "duet_sfu_plis_total",
        "counter",
        "Keyframe requests sent to publishers.",
        total.plis_sent,
    );
    metric(
        "duet_sfu_plis_throttled_total",
        "counter",
        "Keyframe requests coalesced by the throttle.",
        total.plis_throttled,
    );
    metric(
        "duet_sfu_queue_drops_total",
        "counter",
        "Packets dropped because a subscriber's send queue was full.",
        sfu.counters.queue_drops.load(Ordering::Relaxed),
    );
    metric(
        "duet_sfu_sessions",
        "gauge",
        "Open signalling sessions.",
        sfu.sessions.load(Ordering::Relaxed),
    );
    out
}
