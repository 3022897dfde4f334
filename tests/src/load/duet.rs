//! [`Signalling`] for Duet's SFU: the WebSocket protocol of `GET /sfu/ws`
//! ([`duet_sfu_proto::signal`]), with join tokens the load tool signs itself with the SFU's key.

use super::signal::{OfferedTrack, SignalEvent, Signalling};
use anyhow::{Context, anyhow, bail};
use duet_sfu_proto::signal::{
    ClientMessage, IceCandidate, PcTarget, PublishedTrack, ServerMessage,
};
use duet_sfu_proto::{JoinClaims, ParticipantId, Role, RoomId, TokenKey};
use futures::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// How long a request (join, publish) may wait for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// A join token for `participant` (shown to others as `name`) in `room` with `role`'s default
/// grants, signed with `key` and valid for an hour: what the gateway would mint, for tools and
/// tests that talk to the SFU without one.
pub fn token(key: &TokenKey, room: &str, participant: &str, name: &str, role: Role) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    key.sign(&JoinClaims {
        room: RoomId(room.into()),
        sub: ParticipantId(participant.into()),
        name: name.into(),
        role,
        grants: role.default_grants(),
        iat: now,
        exp: now + 3600,
    })
}

/// What the reader task hands over.
enum Incoming {
    Message(ServerMessage),
    Closed(String),
}

/// One participant's WebSocket session with Duet's SFU.
pub struct DuetSignalling {
    out: mpsc::UnboundedSender<Message>,
    events: mpsc::UnboundedReceiver<Incoming>,
    pending: VecDeque<SignalEvent>,
    tasks: [JoinHandle<()>; 2],
}

impl DuetSignalling {
    /// Connects to `ws_url` (`ws://host:port/sfu/ws`) and joins with `token`.
    pub async fn join(ws_url: &str, token: String) -> anyhow::Result<DuetSignalling> {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .with_context(|| format!("connecting to {ws_url}"))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let reader = tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let text = match m {
                    Message::Text(t) => t,
                    Message::Close(frame) => {
                        let reason = frame.map_or_else(
                            || "closed".to_string(),
                            |f| format!("{} {}", u16::from(f.code), f.reason),
                        );
                        let _ = ev_tx.send(Incoming::Closed(reason));
                        return;
                    }
                    _ => continue,
                };
                match serde_json::from_str::<ServerMessage>(&text) {
                    Ok(m) => {
                        if ev_tx.send(Incoming::Message(m)).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable server message"),
                }
            }
        });
        let mut s = DuetSignalling {
            out,
            events,
            pending: VecDeque::new(),
            tasks: [writer, reader],
        };
        s.send(&ClientMessage::Join { token })?;
        match s
            .wait_for(|m| matches!(m, ServerMessage::Joined { .. }))
            .await?
        {
            ServerMessage::Joined { .. } => Ok(s),
            other => bail!("unexpected answer to join: {other:?}"),
        }
    }

    fn send(&self, m: &ClientMessage) -> anyhow::Result<()> {
        let text = serde_json::to_string(m)?;
        self.out
            .send(Message::Text(text.into()))
            .map_err(|_| anyhow!("the signalling connection is gone"))
    }

    /// Waits for the message `want` picks; events met meanwhile are kept for `next_event`.
    async fn wait_for(
        &mut self,
        want: impl Fn(&ServerMessage) -> bool,
    ) -> anyhow::Result<ServerMessage> {
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            let m = match tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| anyhow!("no answer within {ANSWER_TIMEOUT:?}"))?
            {
                Some(Incoming::Message(m)) => m,
                Some(Incoming::Closed(reason)) => bail!("the SFU closed signalling: {reason}"),
                None => bail!("the signalling connection closed"),
            };
            if want(&m) {
                return Ok(m);
            }
            match m {
                ServerMessage::Error { code, message } => {
                    bail!("the SFU refused: {code:?}: {message}")
                }
                other => {
                    if let Some(ev) = to_event(other) {
                        self.pending.push_back(ev);
                    }
                }
            }
        }
    }
}

/// The events the client acts on; room news (participants, hands, speakers) is ignored.
fn to_event(m: ServerMessage) -> Option<SignalEvent> {
    match m {
        ServerMessage::SubscribeOffer { sdp, .. } => Some(SignalEvent::SubscribeOffer(sdp)),
        ServerMessage::Ice { target, candidate } => Some(SignalEvent::Ice(target, candidate)),
        ServerMessage::Error { code, message } => {
            tracing::warn!(?code, %message, "SFU error");
            None
        }
        _ => None,
    }
}

#[async_trait::async_trait]
impl Signalling for DuetSignalling {
    async fn publish(&mut self, offer: String, tracks: &[OfferedTrack]) -> anyhow::Result<String> {
        self.send(&ClientMessage::PublishOffer {
            sdp: offer,
            tracks: tracks
                .iter()
                .map(|t| PublishedTrack {
                    track_id: t.track_id.clone(),
                    source: t.source,
                })
                .collect(),
        })?;
        match self
            .wait_for(|m| matches!(m, ServerMessage::PublishAnswer { .. }))
            .await?
        {
            ServerMessage::PublishAnswer { sdp } => Ok(sdp),
            other => bail!("unexpected answer to publish: {other:?}"),
        }
    }

    async fn subscribe_all(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    async fn next_event(&mut self) -> anyhow::Result<SignalEvent> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(ev);
        }
        loop {
            let m = match self.events.recv().await {
                Some(Incoming::Message(m)) => m,
                Some(Incoming::Closed(reason)) => return Ok(SignalEvent::Closed(reason)),
                None => return Ok(SignalEvent::Closed("the connection ended".into())),
            };
            if let Some(ev) = to_event(m) {
                return Ok(ev);
            }
        }
    }

    async fn answer_subscribe(&mut self, answer: String) -> anyhow::Result<()> {
        self.send(&ClientMessage::SubscribeAnswer { sdp: answer })
    }

    async fn trickle(&mut self, target: PcTarget, candidate: IceCandidate) -> anyhow::Result<()> {
        self.send(&ClientMessage::Ice { target, candidate })
    }

    async fn leave(&mut self) {
        let _ = self.send(&ClientMessage::Leave);
        tokio::time::sleep(Duration::from_millis(50)).await;
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for DuetSignalling {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
