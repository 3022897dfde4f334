//! Prometheus text exposition of the SFU's gauges and counters, and of each participant's link
//! quality as its client last reported it (loss, round-trip time, jitter, grade), with the SFU's
//! bandwidth estimate toward it and the simulcast layer it receives of each video track, labelled
//! by room and participant, so an operator sees which classroom's link is poor and what it costs.

use crate::sfu::Sfu;
use crate::shell::room::LiveRoom;
use duet_sfu_proto::RoomId;
use duet_sfu_proto::signal::{QualityGrade, QualityInfo};
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
    let mut links: Vec<(RoomId, QualityInfo)> = Vec::new();
    for r in &rooms {
        let inner = r.lock();
        links.extend(
            LiveRoom::quality_table(&inner)
                .into_iter()
                .map(|q| (r.id.clone(), q)),
        );
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
        total.layer_switches += s.layer_switches;
        total.pauses += s.pauses;
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
        "duet_sfu_layer_switches_total",
        "counter",
        "Simulcast layer switches made for subscribers (at keyframes).",
        total.layer_switches,
    );
    metric(
        "duet_sfu_video_pauses_total",
        "counter",
        "Times a subscriber's video was paused (its link could not carry it, or it was not shown).",
        total.pauses,
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
    links.sort_by(|a, b| (&a.0, &a.1.participant).cmp(&(&b.0, &b.1.participant)));
    render_links(&mut out, &links);
    out
}

/// A gauge of a participant's link: name, help, and how to read it from the report.
type LinkGauge = (&'static str, &'static str, fn(&QualityInfo) -> f32);

/// The per-participant link gauges, one sample per participant that reported.
fn render_links(out: &mut String, links: &[(RoomId, QualityInfo)]) {
    let gauges: [LinkGauge; 3] = [
        (
            "duet_sfu_link_loss_percent",
            "Inbound packet loss a participant last reported, percent.",
            |q| q.loss_pct,
        ),
        (
            "duet_sfu_link_rtt_milliseconds",
            "Round-trip time to the SFU a participant last reported.",
            |q| q.rtt_ms,
        ),
        (
            "duet_sfu_link_jitter_milliseconds",
            "Inbound jitter a participant last reported.",
            |q| q.jitter_ms,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (room, q) in links {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(room, q), value(q));
        }
    }
    let name = "duet_sfu_link_estimate_bits_per_second";
    let _ = writeln!(
        out,
        "# HELP {name} The SFU's bandwidth estimate toward a participant (transport-wide congestion control).\n# TYPE {name} gauge"
    );
    for (room, q) in links {
        if let Some(kbps) = q.estimate_kbps {
            let _ = writeln!(
                out,
                "{name}{{{}}} {}",
                labels(room, q),
                u64::from(kbps) * 1000
            );
        }
    }
    let name = "duet_sfu_link_video_layer";
    let _ = writeln!(
        out,
        "# HELP {name} The simulcast layer a participant receives of a video track (0 lowest; -1 paused or waiting for a keyframe).\n# TYPE {name} gauge"
    );
    for (room, q) in links {
        for l in &q.layers {
            let _ = writeln!(
                out,
                "{name}{{{},track=\"{}\"}} {}",
                labels(room, q),
                escape(l.track_id.as_str()),
                l.layer.map_or(-1, i16::from)
            );
        }
    }
    let name = "duet_sfu_link_grade";
    let _ = writeln!(
        out,
        "# HELP {name} A participant's link grade (good: loss < 2% and RTT < 200 ms; fair: < 8% and < 400 ms; else poor), 1 for the current grade.\n# TYPE {name} gauge"
    );
    for (room, q) in links {
        for (grade, label) in [
            (QualityGrade::Good, "good"),
            (QualityGrade::Fair, "fair"),
            (QualityGrade::Poor, "poor"),
        ] {
            let _ = writeln!(
                out,
                "{name}{{{},grade=\"{label}\"}} {}",
                labels(room, q),
                u8::from(q.grade == grade)
            );
        }
    }
}

fn labels(room: &RoomId, q: &QualityInfo) -> String {
    format!(
        "room=\"{}\",participant=\"{}\"",
        escape(room.as_str()),
        escape(q.participant.as_str())
    )
}

/// Escapes a label value (backslash, double quote, newline), as the text format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use duet_sfu_proto::ParticipantId;

    fn q(p: &str, loss: f32, rtt: f32) -> QualityInfo {
        QualityInfo {
            participant: ParticipantId(p.into()),
            loss_pct: loss,
            rtt_ms: rtt,
            jitter_ms: 4.5,
            grade: QualityGrade::from_link(loss, rtt),
            estimate_kbps: Some(1500),
            layers: vec![duet_sfu_proto::signal::ReceivedLayer {
                track_id: "lead-camera-1".into(),
                layer: if loss > 5.0 { None } else { Some(2) },
            }],
        }
    }

    #[test]
    fn each_reported_link_is_a_labelled_sample() {
        let room = RoomId("class-1".into());
        let mut out = String::new();
        render_links(
            &mut out,
            &[
                (room.clone(), q("room-a", 0.5, 40.0)),
                (room, q("room-b", 12.0, 150.0)),
            ],
        );
        assert!(
            out.contains(
                "duet_sfu_link_loss_percent{room=\"class-1\",participant=\"room-b\"} 12\n"
            ),
            "{out}"
        );
        assert!(out.contains(
            "duet_sfu_link_rtt_milliseconds{room=\"class-1\",participant=\"room-a\"} 40\n"
        ));
        assert!(out.contains(
            "duet_sfu_link_jitter_milliseconds{room=\"class-1\",participant=\"room-a\"} 4.5\n"
        ));
        assert!(out.contains(
            "duet_sfu_link_grade{room=\"class-1\",participant=\"room-a\",grade=\"good\"} 1\n"
        ));
        assert!(out.contains(
            "duet_sfu_link_grade{room=\"class-1\",participant=\"room-b\",grade=\"poor\"} 1\n"
        ));
        assert!(out.contains(
            "duet_sfu_link_grade{room=\"class-1\",participant=\"room-b\",grade=\"good\"} 0\n"
        ));
        assert!(out.contains(
            "duet_sfu_link_estimate_bits_per_second{room=\"class-1\",participant=\"room-a\"} 1500000\n"
        ));
        assert!(out.contains(
            "duet_sfu_link_video_layer{room=\"class-1\",participant=\"room-a\",track=\"lead-camera-1\"} 2\n"
        ));
        assert!(out.contains(
            "duet_sfu_link_video_layer{room=\"class-1\",participant=\"room-b\",track=\"lead-camera-1\"} -1\n"
        ));
        // One HELP/TYPE per metric, however many participants.
        assert_eq!(
            out.matches("# TYPE duet_sfu_link_loss_percent gauge")
                .count(),
            1
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            escape(
                r#"a"b\c
d"#
            ),
            r#"a\"b\\c\nd"#
        );
    }
}
