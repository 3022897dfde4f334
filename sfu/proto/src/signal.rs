//! The signalling protocol over WebSocket (`GET /sfu/ws`), JSON text frames, one message per frame,
//! each an object with a `"type"` tag.
//!
//! # Session
//! 1. The client's first message is [`ClientMessage::Join`] with its token. A missing, malformed,
//!    forged or expired token closes the socket with a [`close`] code and a reason.
//! 2. The server answers [`ServerMessage::Joined`] with the room as it stands.
//! 3. Media uses two peer connections, so neither side ever has to resolve offer glare:
//!    - **publish** (client → SFU): the client offers ([`ClientMessage::PublishOffer`], listing which
//!      `MediaStreamTrack.id` carries which [`Source`]), the SFU answers
//!      ([`ServerMessage::PublishAnswer`]). Adding or stopping a screen share is a new offer.
//!    - **subscribe** (SFU → client): the SFU offers ([`ServerMessage::SubscribeOffer`]) whenever the
//!      set of tracks the client receives changes; the client answers
//!      ([`ClientMessage::SubscribeAnswer`]). Each remote track's msid is
//!      `<participant id> <track id>`, and the offer lists every track's owner and source.
//! 4. ICE candidates trickle both ways ([`ClientMessage::Ice`] / [`ServerMessage::Ice`]), tagged
//!    with the peer connection they belong to.
//!
//! Errors that do not end the session arrive as [`ServerMessage::Error`] with a stable
//! [`ErrorCode`]; the room and the other participants are untouched by them.

use crate::ids::{ParticipantId, RoomId, TrackId};
use crate::role::{Role, Source};
use serde::{Deserialize, Serialize};

/// Largest signalling message accepted, in bytes (an SDP offer with several tracks is ~10 KB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Which of the participant's two peer connections a message is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcTarget {
    /// Client → SFU media.
    Publisher,
    /// SFU → client media.
    Subscriber,
}

/// An ICE candidate as the browser's `RTCIceCandidateInit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    /// The `candidate:` line.
    pub candidate: String,
    /// The media section's mid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The media section's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
    /// The ufrag the candidate belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// Which browser track carries which source, declared with each publish offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedTrack {
    /// The browser's `MediaStreamTrack.id` (the second msid field in the offer).
    pub track_id: String,
    /// What it carries.
    pub source: Source,
}

/// Messages from a client to the SFU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// First message: present the join token.
    Join {
        /// The token minted by the gateway.
        token: String,
    },
    /// An offer on the publish connection, with the sources it carries (all of them, each time).
    PublishOffer {
        /// SDP offer.
        sdp: String,
        /// Every track the client publishes after this offer.
        tracks: Vec<PublishedTrack>,
    },
    /// The answer to a [`ServerMessage::SubscribeOffer`].
    SubscribeAnswer {
        /// SDP answer.
        sdp: String,
    },
    /// A trickled ICE candidate.
    Ice {
        /// Which connection.
        target: PcTarget,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Raise the classroom's hand (举手).
    RaiseHand,
    /// Lower one's own hand, or (lead only) another participant's.
    LowerHand {
        /// Whose hand; absent means one's own.
        #[serde(default)]
        participant: Option<ParticipantId>,
    },
    /// Lead only: show one participant large on every page (点名), or clear with `null`.
    Spotlight {
        /// Who, or `None` to clear.
        participant: Option<ParticipantId>,
    },
    /// Lead only: ask a classroom to mute its microphone.
    MuteRequest {
        /// Whom to ask.
        participant: ParticipantId,
    },
    /// The client's own view of its link, shown to the lead teacher as connection quality.
    Quality {
        /// Inbound packet loss over the last interval, percent.
        loss_pct: f32,
        /// Round-trip time to the SFU, milliseconds.
        rtt_ms: f32,
        /// Inbound jitter, milliseconds.
        jitter_ms: f32,
    },
    /// How large this page shows a received video track, so the SFU sends no larger a simulcast
    /// layer than the tile needs (a thumbnail needs no 720p). Sent when a tile's size changes.
    TrackView {
        /// The received track (its id in the room).
        track_id: TrackId,
        /// The tile's height in device pixels; 0 when the track is not shown at all.
        height: u32,
    },
    /// Leave the class.
    Leave,
}

/// Simulcast layer names (`rid`s) a publisher's camera sends, lowest first: a quarter, half and
/// full resolution encoding of the same picture. Layer `i` of a track is `SIMULCAST_RIDS[i]`.
pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

/// The simulcast layer one subscriber receives of one video track.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedLayer {
    /// The track.
    pub track_id: TrackId,
    /// The layer forwarded (an index into [`SIMULCAST_RIDS`]; 0 for a track without simulcast),
    /// or `None` while the video is paused (the subscriber's link cannot carry it, or it is not
    /// shown) or waits for a keyframe.
    pub layer: Option<u8>,
}

/// A participant as others see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Identity.
    pub id: ParticipantId,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// A published track as others see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// The track's id in the room (the second msid field on the subscribe connection).
    pub track_id: TrackId,
    /// Who publishes it.
    pub participant: ParticipantId,
    /// What it carries.
    pub source: Source,
}

/// Link quality of one participant, as reported to the lead and observers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualityInfo {
    /// Whose link.
    pub participant: ParticipantId,
    /// Loss, percent.
    pub loss_pct: f32,
    /// Round-trip time, milliseconds.
    pub rtt_ms: f32,
    /// Jitter, milliseconds.
    pub jitter_ms: f32,
    /// `good`, `fair` or `poor`.
    pub grade: QualityGrade,
    /// The SFU's estimate of the bandwidth toward this participant (from transport-wide
    /// congestion control feedback), kilobits per second; absent before the first feedback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_kbps: Option<u32>,
    /// The layer this participant receives of each video track.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<ReceivedLayer>,
}

/// A coarse grade for a classroom's link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityGrade {
    /// Loss under 2% and RTT under 200 ms.
    Good,
    /// Loss under 8% and RTT under 400 ms.
    Fair,
    /// Anything worse.
    Poor,
}

impl QualityGrade {
    /// Grades a link from its loss and round-trip time.
    pub fn from_link(loss_pct: f32, rtt_ms: f32) -> Self {
        if loss_pct < 2.0 && rtt_ms < 200.0 {
            QualityGrade::Good
        } else if loss_pct < 8.0 && rtt_ms < 400.0 {
            QualityGrade::Fair
        } else {
            QualityGrade::Poor
        }
    }
}

/// Messages from the SFU to a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The join succeeded; the room as it stands.
    Joined {
        /// The room.
        room: RoomId,
        /// Who you are (from your token).
        you: ParticipantInfo,
        /// Which sources you may publish.
        publish_sources: Vec<Source>,
        /// Everyone else visible.
        participants: Vec<ParticipantInfo>,
        /// Every published track.
        tracks: Vec<TrackInfo>,
        /// Raised hands, in the order they were raised.
        hands: Vec<ParticipantId>,
        /// Who is spotlighted, if anyone.
        spotlight: Option<ParticipantId>,
    },
    /// The answer to a publish offer.
    PublishAnswer {
        /// SDP answer.
        sdp: String,
    },
    /// A (re)negotiation offer on the subscribe connection.
    SubscribeOffer {
        /// SDP offer.
        sdp: String,
        /// Every track this offer carries to you, with owner and source.
        tracks: Vec<TrackInfo>,
    },
    /// A trickled ICE candidate from the SFU.
    Ice {
        /// Which connection.
        target: PcTarget,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Someone joined.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left.
    ParticipantLeft {
        /// Who.
        participant: ParticipantId,
    },
    /// A track was published.
    TrackPublished {
        /// The track.
        track: TrackInfo,
    },
    /// A track was unpublished.
    TrackUnpublished {
        /// The track.
        track: TrackInfo,
    },
    /// The loudest participant changed (from RFC 6464 audio levels), or nobody speaks (`None`).
    ActiveSpeaker {
        /// Who.
        participant: Option<ParticipantId>,
    },
    /// Hands raised, in order.
    Hands {
        /// Raised hands, in the order they were raised.
        hands: Vec<ParticipantId>,
    },
    /// The spotlight changed.
    Spotlight {
        /// Who, or `None`.
        participant: Option<ParticipantId>,
    },
    /// The lead teacher asks you to mute your microphone.
    MuteRequested {
        /// Who asked.
        by: ParticipantId,
    },
    /// Which simulcast layers of one of your published tracks someone receives: keep encoding
    /// those (`active`, by rid from [`SIMULCAST_RIDS`]) and pause the others. Sent to a publisher
    /// whenever the set changes.
    PublishLayers {
        /// The browser's `MediaStreamTrack.id`, as declared in the publish offer.
        track_id: String,
        /// The rids to keep encoding.
        active: Vec<String>,
    },
    /// Link quality of the room's participants (sent to the lead and observers).
    Quality {
        /// One entry per participant that reported.
        participants: Vec<QualityInfo>,
    },
    /// A request failed; nothing else changed.
    Error {
        /// Stable machine-readable code.
        code: ErrorCode,
        /// A sentence a person understands.
        message: String,
    },
}

/// Stable error codes carried by [`ServerMessage::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not JSON, or not a message this protocol knows.
    BadMessage,
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// An SDP that could not be parsed or applied.
    BadSdp,
    /// An ICE candidate that could not be applied.
    BadCandidate,
    /// The token's role or grants do not allow this.
    Forbidden,
    /// The message refers to something that does not exist.
    NotFound,
    /// `join` was sent twice.
    AlreadyJoined,
    /// The SFU could not do it; the reason is in the server log.
    Internal,
}

/// WebSocket close codes (application range 4000–4999) the SFU uses to end signalling.
pub mod close {
    /// The first message was not a `join`, or not JSON.
    pub const JOIN_EXPECTED: u16 = 4400;
    /// No token.
    pub const TOKEN_MISSING: u16 = 4401;
    /// The token's signature is invalid (forged or another key).
    pub const TOKEN_FORGED: u16 = 4403;
    /// The token is malformed or its claims unusable.
    pub const TOKEN_INVALID: u16 = 4406;
    /// The token expired.
    pub const TOKEN_EXPIRED: u16 = 4410;
    /// The same identity joined again elsewhere; this older session is closed.
    pub const REPLACED: u16 = 4409;
    /// No `join` within the deadline.
    pub const JOIN_TIMEOUT: u16 = 4408;
    /// The server is shutting down.
    pub const SHUTDOWN: u16 = 4503;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_use_snake_case_type_tags() {
        let m: ClientMessage = serde_json::from_str(r#"{"type":"raise_hand"}"#).unwrap();
        assert_eq!(m, ClientMessage::RaiseHand);
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"spotlight","participant":null}"#).unwrap();
        assert_eq!(m, ClientMessage::Spotlight { participant: None });
        let s = serde_json::to_string(&ServerMessage::Hands {
            hands: vec!["room-a".into()],
        })
        .unwrap();
        assert_eq!(s, r#"{"type":"hands","hands":["room-a"]}"#);
        let ice: ClientMessage = serde_json::from_str(
            r#"{"type":"ice","target":"publisher","candidate":{"candidate":"candidate:1 1 udp 1 10.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
        )
        .unwrap();
        assert!(matches!(
            ice,
            ClientMessage::Ice {
                target: PcTarget::Publisher,
                ..
            }
        ));
    }

    #[test]
    fn quality_grades() {
        assert_eq!(QualityGrade::from_link(0.5, 40.0), QualityGrade::Good);
        assert_eq!(QualityGrade::from_link(5.0, 150.0), QualityGrade::Fair);
        assert_eq!(QualityGrade::from_link(12.0, 150.0), QualityGrade::Poor);
    }
}
