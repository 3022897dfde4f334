//! The signalling side of one load-tool participant, behind one trait so the same clients,
//! media and shapes drive Duet's SFU ([`super::duet`]) and Janus's VideoRoom ([`super::janus`]).
//!
//! A participant has two peer connections, as Duet's browser client does: a **publish** one
//! (the client offers) and a **subscribe** one (the server offers). Janus's VideoRoom has the same
//! split (a publisher handle and a multistream subscriber handle), which is why one trait fits
//! both.

use duet_sfu_proto::Source;
use duet_sfu_proto::signal::{IceCandidate, PcTarget};

/// A track this participant publishes, as declared with its offer.
#[derive(Clone, Debug)]
pub struct OfferedTrack {
    /// The `MediaStreamTrack` id in the offer (the msid's second field).
    pub track_id: String,
    /// What it carries.
    pub source: Source,
}

/// Something the server sent that the client must act on.
#[derive(Debug)]
pub enum SignalEvent {
    /// A (re)negotiation offer for the subscribe connection; answer it with
    /// [`Signalling::answer_subscribe`].
    SubscribeOffer(String),
    /// A trickled ICE candidate from the server.
    Ice(PcTarget, IceCandidate),
    /// The server ended the session, with its reason.
    Closed(String),
}

/// One participant's signalling session with an SFU.
///
/// Order of calls made by the load tool: [`publish`](Self::publish) (if it publishes), then,
/// when every publisher of the room has published, [`subscribe_all`](Self::subscribe_all), then
/// [`next_event`](Self::next_event) in a loop, answering offers and applying candidates, until the
/// run ends with [`leave`](Self::leave).
#[async_trait::async_trait]
pub trait Signalling: Send {
    /// Sends a publish offer declaring `tracks`; returns the server's SDP answer.
    async fn publish(&mut self, offer: String, tracks: &[OfferedTrack]) -> anyhow::Result<String>;

    /// Asks to receive every track the other participants of the room publish. Duet offers them
    /// by itself (nothing to do); Janus must be told which feeds to subscribe to.
    async fn subscribe_all(&mut self) -> anyhow::Result<()>;

    /// Waits for the next server event. Events that arrive while [`publish`](Self::publish) waits
    /// for its answer must be kept and returned here, in order.
    async fn next_event(&mut self) -> anyhow::Result<SignalEvent>;

    /// Answers the latest [`SignalEvent::SubscribeOffer`].
    async fn answer_subscribe(&mut self, answer: String) -> anyhow::Result<()>;

    /// Trickles one of this client's ICE candidates to the server. An empty `candidate` line
    /// means the end of candidates for that connection.
    async fn trickle(&mut self, target: PcTarget, candidate: IceCandidate) -> anyhow::Result<()>;

    /// Leaves the room (best effort).
    async fn leave(&mut self);
}
