//! One participant's signalling session: an actor that owns the participant's two peer
//! connections and serializes everything that touches them.
//!
//! The actor reads client messages from the WebSocket and [`SessionCmd`]s from the room (tracks
//! to subscribe or drop, events to relay, a close). State machine of the subscribe connection:
//! `stable` → (tracks changed) → offer sent, `negotiating` → (answer) → `stable`; changes that
//! arrive while negotiating set `dirty` and trigger one more round after the answer.
//!
//! Bad input never leaves the session: malformed JSON or SDP, refused grants and unknown ids are
//! answered with [`ServerMessage::Error`] and change nothing.

use crate::core::{SubHandle, SubscribeSpec, TrackHandle, TrackSpec};
use crate::sfu::Sfu;
use crate::shell::media::{self, AUDIO_LEVEL_URI};
use crate::shell::room::{LiveRoom, Member, SessionCmd, Sink, SinkPacket, Source as RoomSource};
use duet_sfu_proto::signal::{
    ClientMessage, ErrorCode, IceCandidate, ParticipantInfo, PcTarget, QualityGrade, QualityInfo,
    SIMULCAST_RIDS, ServerMessage, TrackInfo,
};
use duet_sfu_proto::{JoinClaims, ParticipantId, Role, Source, TrackId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpSender;

/// Events from the peer connections' handlers into the actor.
pub enum PcEvent {
    /// A local ICE candidate to trickle to the client.
    Candidate(PcTarget, IceCandidate),
    /// A new remote track on the publish connection.
    Track(Arc<dyn TrackRemote>),
    /// A peer connection reached `connected`.
    Connected(PcTarget),
    /// A peer connection failed or closed.
    Ended(PcTarget),
}

struct Handler {
    target: PcTarget,
    tx: mpsc::UnboundedSender<PcEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Some(c) = media::signal_candidate(&event) {
            let _ = self.tx.send(PcEvent::Candidate(self.target, c));
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tx.send(PcEvent::Track(track));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if matches!(
            state,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        ) {
            let _ = self.tx.send(PcEvent::Ended(self.target));
        }
    }
}

struct Subscribed {
    sub: SubHandle,
    sender: Arc<dyn RtpSender>,
    info: TrackInfo,
    feedback: JoinHandle<()>,
}

struct Published {
    handle: TrackHandle,
    info: TrackInfo,
    reader: JoinHandle<()>,
}

/// The session actor's state.
pub struct Session {
    sfu: Arc<Sfu>,
    room: Arc<LiveRoom>,
    claims: JoinClaims,
    epoch: u64,
    span: tracing::Span,
    /// Messages to the client (drained by the WebSocket writer).
    out: mpsc::UnboundedSender<Outgoing>,
    pc_tx: mpsc::UnboundedSender<PcEvent>,
    publish_pc: Option<Arc<dyn PeerConnection>>,
    subscribe_pc: Option<Arc<dyn PeerConnection>>,
    /// Browser track id → declared source, from the latest publish offer.
    declared: HashMap<String, Source>,
    /// Browser track id → the simulcast rids its offer section sends (none without simulcast).
    declared_rids: HashMap<String, Vec<String>>,
    /// The negotiated id of the rid header extension on the publish connection.
    rid_ext: Option<u8>,
    /// Browser track id → published track.
    published: HashMap<String, Published>,
    subscribed: HashMap<TrackHandle, Subscribed>,
    /// Writer queue shared by all of this subscriber's sinks.
    sink_queue: mpsc::Sender<SinkPacket>,
    sink_writer: JoinHandle<()>,
    negotiating: bool,
    dirty: bool,
    audio_level_ext: Option<u8>,
    next_track: u32,
    /// The bandwidth estimated toward this participant, written by the subscribe connection.
    estimate: media::Estimate,
}

/// What the WebSocket writer sends.
pub enum Outgoing {
    /// A message.
    Msg(ServerMessage),
    /// Close with code and reason.
    Close(u16, String),
}

impl Session {
    /// Joins `claims.sub` to its room, replacing an older session of the same identity.
    /// Returns the session and its command and PC-event receivers.
    pub fn join(
        sfu: Arc<Sfu>,
        claims: JoinClaims,
        out: mpsc::UnboundedSender<Outgoing>,
    ) -> (
        Session,
        mpsc::UnboundedReceiver<SessionCmd>,
        mpsc::UnboundedReceiver<PcEvent>,
    ) {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (pc_tx, pc_rx) = mpsc::unbounded_channel();
        let epoch = sfu.epoch();
        let estimate = media::Estimate::default();
        let info = ParticipantInfo {
            id: claims.sub.clone(),
            name: claims.name.clone(),
            role: claims.role,
        };
        let (room, (replaced, joined)) = sfu.enter_room(&claims.room, |_, inner| {
            let replaced = inner.members.remove(&claims.sub);
            inner.members.insert(
                claims.sub.clone(),
                Member {
                    info: info.clone(),
                    grants: claims.grants.clone(),
                    cmd: cmd_tx,
                    epoch,
                    estimate: estimate.clone(),
                    estimate_seen: 0,
                },
            );
            let mut tracks: Vec<TrackInfo> = inner
                .sources
                .values()
                .filter(|s| s.info.participant != claims.sub)
                .map(|s| s.info.clone())
                .collect();
            tracks.sort_by(|a, b| a.track_id.cmp(&b.track_id));
            let publish_sources = if claims.grants.publish {
                claims
                    .role
                    .publishable_sources()
                    .iter()
                    .copied()
                    .filter(|s| claims.grants.sources.contains(s))
                    .collect()
            } else {
                Vec::new()
            };
            let joined = ServerMessage::Joined {
                room: claims.room.clone(),
                you: info.clone(),
                publish_sources,
                participants: LiveRoom::visible_participants(inner, &claims.sub),
                tracks,
                hands: inner.hands.clone(),
                spotlight: inner.spotlight.clone(),
            };
            (replaced, joined)
        });
        let span = tracing::info_span!(parent: &room.span, "participant", id = %claims.sub, role = %claims.role);
        let (sink_queue, sink_rx) = mpsc::channel(sfu.config.subscriber_queue_packets);
        let sink_writer = tokio::spawn(write_sinks(sink_rx).instrument(span.clone()));
        if let Some(old) = replaced {
            let _ = old.cmd.send(SessionCmd::Close(
                duet_sfu_proto::signal::close::REPLACED,
                "the same participant joined again from another connection".into(),
            ));
        }
        let _ = out.send(Outgoing::Msg(joined));
        if !claims.role.is_hidden() {
            room.broadcast(
                &ServerMessage::ParticipantJoined { participant: info },
                Some(&claims.sub),
            );
        }
        tracing::info!(parent: &span, name = %claims.name, "joined");
        sfu.emit(crate::sfu::SfuEvent::Joined {
            room: claims.room.clone(),
            participant: claims.sub.clone(),
            role: claims.role,
            at: std::time::SystemTime::now(),
        });
        (
            Session {
                sfu,
                room,
                claims,
                epoch,
                span,
                out,
                pc_tx,
                publish_pc: None,
                subscribe_pc: None,
                declared: HashMap::new(),
                declared_rids: HashMap::new(),
                rid_ext: None,
                published: HashMap::new(),
                subscribed: HashMap::new(),
                sink_queue,
                sink_writer,
                negotiating: false,
                dirty: false,
                audio_level_ext: None,
                next_track: 0,
                estimate,
            },
            cmd_rx,
            pc_rx,
        )
    }

    /// The session's span.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    fn send(&self, msg: ServerMessage) {
        let _ = self.out.send(Outgoing::Msg(msg));
    }

    /// Refuses a binary frame: the protocol is JSON text only.
    pub fn on_client_binary(&self) {
        self.error(
            ErrorCode::BadMessage,
            "signalling messages are JSON text frames",
        );
    }

    fn error(&self, code: ErrorCode, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(parent: &self.span, ?code, %message, "request refused");
        self.send(ServerMessage::Error { code, message });
    }

    /// Subscribes to every track already in the room (after `joined`).
    pub async fn start(&mut self) {
        if !self.claims.grants.subscribe {
            return;
        }
        let existing: Vec<(TrackHandle, TrackInfo, _)> = {
            let inner = self.room.lock();
            inner
                .sources
                .iter()
                .filter(|(_, s)| s.info.participant != self.claims.sub)
                .map(|(h, s)| (*h, s.info.clone(), s.codec.clone()))
                .collect()
        };
        for (h, info, codec) in existing {
            self.subscribe(h, info, codec).await;
        }
        self.renegotiate().await;
    }

    /// Handles one text frame from the client.
    pub async fn on_client_text(&mut self, text: &str) {
        if text.len() > duet_sfu_proto::signal::MAX_MESSAGE_BYTES {
            return self.error(ErrorCode::TooLarge, "message too large");
        }
        let msg: ClientMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                return self.error(ErrorCode::BadMessage, format!("not a valid message: {e}"));
            }
        };
        match msg {
            ClientMessage::Join { .. } => self.error(ErrorCode::AlreadyJoined, "already joined"),
            ClientMessage::PublishOffer { sdp, tracks } => self.on_publish_offer(sdp, tracks).await,
            ClientMessage::SubscribeAnswer { sdp } => self.on_subscribe_answer(sdp).await,
            ClientMessage::Ice { target, candidate } => self.on_ice(target, candidate).await,
            ClientMessage::RaiseHand => self.set_hand(self.claims.sub.clone(), true),
            ClientMessage::LowerHand { participant } => {
                let who = participant.unwrap_or_else(|| self.claims.sub.clone());
                if who != self.claims.sub && self.claims.role != Role::Lead {
                    return self.error(
                        ErrorCode::Forbidden,
                        "only the lead teacher may lower another classroom's hand",
                    );
                }
                self.set_hand(who, false);
            }
            ClientMessage::Spotlight { participant } => self.on_spotlight(participant),
            ClientMessage::MuteRequest { participant } => self.on_mute_request(participant),
            ClientMessage::Quality {
                loss_pct,
                rtt_ms,
                jitter_ms,
            } => {
                let finite = |v: f32| {
                    if v.is_finite() {
                        v.clamp(0.0, 100_000.0)
                    } else {
                        0.0
                    }
                };
                let (loss_pct, rtt_ms, jitter_ms) = (
                    finite(loss_pct).min(100.0),
                    finite(rtt_ms),
                    finite(jitter_ms),
                );
                self.room.lock().quality.insert(
                    self.claims.sub.clone(),
                    QualityInfo {
                        participant: self.claims.sub.clone(),
                        loss_pct,
                        rtt_ms,
                        jitter_ms,
                        grade: QualityGrade::from_link(loss_pct, rtt_ms),
                        estimate_kbps: None,
                        layers: Vec::new(),
                    },
                );
                self.room.send_quality();
            }
            ClientMessage::TrackView { track_id, height } => {
                let Some(sub) = self
                    .subscribed
                    .values()
                    .find(|s| s.info.track_id == track_id)
                    .map(|s| s.sub)
                else {
                    // A hint about a track unsubscribed meanwhile: nothing to do.
                    tracing::debug!(parent: &self.span, track = %track_id, "view of a track not received");
                    return;
                };
                let _ = self.room.lock().core.set_view(sub, height);
            }
            ClientMessage::Leave => {
                let _ = self
                    .out
                    .send(Outgoing::Close(1000, "left the class".into()));
            }
        }
    }

    fn set_hand(&self, who: ParticipantId, up: bool) {
        if up && !matches!(self.claims.role, Role::Receiving) {
            return self.error(
                ErrorCode::Forbidden,
                "only a receiving classroom can raise its hand",
            );
        }
        let hands = {
            let mut inner = self.room.lock();
            if !inner.members.contains_key(&who) {
                drop(inner);
                return self.error(ErrorCode::NotFound, format!("no participant {who}"));
            }
            let present = inner.hands.contains(&who);
            if up && !present {
                inner.hands.push(who);
            } else if !up && present {
                inner.hands.retain(|h| *h != who);
            } else {
                return;
            }
            inner.hands.clone()
        };
        self.room.broadcast(&ServerMessage::Hands { hands }, None);
    }

    fn on_spotlight(&self, participant: Option<ParticipantId>) {
        if self.claims.role != Role::Lead {
            return self.error(
                ErrorCode::Forbidden,
                "only the lead teacher can call on a classroom",
            );
        }
        {
            let mut inner = self.room.lock();
            if let Some(p) = &participant
                && inner.members.get(p).is_none_or(|m| m.info.role.is_hidden())
            {
                drop(inner);
                return self.error(ErrorCode::NotFound, format!("no participant {p}"));
            }
            inner.spotlight = participant.clone();
        }
        self.room
            .broadcast(&ServerMessage::Spotlight { participant }, None);
    }

    fn on_mute_request(&self, participant: ParticipantId) {
        if self.claims.role != Role::Lead {
            return self.error(
                ErrorCode::Forbidden,
                "only the lead teacher can ask a classroom to mute",
            );
        }
        let inner = self.room.lock();
        match inner.members.get(&participant) {
            Some(m) if !m.info.role.is_hidden() => {
                let _ = m.cmd.send(SessionCmd::Send(ServerMessage::MuteRequested {
                    by: self.claims.sub.clone(),
                }));
            }
            _ => {
                drop(inner);
                self.error(ErrorCode::NotFound, format!("no participant {participant}"));
            }
        }
    }

    async fn on_publish_offer(
        &mut self,
        sdp: String,
        tracks: Vec<duet_sfu_proto::signal::PublishedTrack>,
    ) {
        if tracks.len() > 8 {
            return self.error(ErrorCode::BadMessage, "too many tracks in one offer");
        }
        for t in &tracks {
            if !self
                .claims
                .grants
                .allows_publish(self.claims.role, t.source)
            {
                return self.error(
                    ErrorCode::Forbidden,
                    format!(
                        "a {} participant may not publish {}",
                        self.claims.role, t.source
                    ),
                );
            }
            if t.track_id.is_empty() || t.track_id.len() > 128 {
                return self.error(ErrorCode::BadMessage, "bad track_id");
            }
        }
        let offer_sdp = sdp.clone();
        let offer = match RTCSessionDescription::offer(sdp) {
            Ok(o) => o,
            Err(e) => {
                return self.error(
                    ErrorCode::BadSdp,
                    format!("the offer is not valid SDP: {e}"),
                );
            }
        };
        let pc = match &self.publish_pc {
            Some(pc) => pc.clone(),
            None => {
                let handler = Arc::new(Handler {
                    target: PcTarget::Publisher,
                    tx: self.pc_tx.clone(),
                });
                match self.sfu.peer_connection(handler, None).await {
                    Ok(pc) => {
                        self.publish_pc = Some(pc.clone());
                        pc
                    }
                    Err(e) => {
                        tracing::warn!(parent: &self.span, error = %e, "publish connection not created");
                        return self
                            .error(ErrorCode::Internal, "the server could not accept media now");
                    }
                }
            }
        };
        if let Err(e) = pc.set_remote_description(offer).await {
            return self.error(
                ErrorCode::BadSdp,
                format!("the offer could not be applied: {e}"),
            );
        }
        let answer = match pc.create_answer(None).await {
            Ok(a) => a,
            Err(e) => {
                return self.error(ErrorCode::BadSdp, format!("no answer to this offer: {e}"));
            }
        };
        if let Err(e) = pc.set_local_description(answer).await {
            return self.error(ErrorCode::Internal, format!("answer not applied: {e}"));
        }
        let Some(local) = pc.local_description().await else {
            return self.error(ErrorCode::Internal, "no local description");
        };
        self.audio_level_ext = extmap_id(&local.sdp, AUDIO_LEVEL_URI);
        self.rid_ext = extmap_id(&local.sdp, RID_URI);
        self.declared_rids = simulcast_rids(&offer_sdp);
        // Tracks no longer declared are unpublished.
        let now: HashMap<String, Source> =
            tracks.into_iter().map(|t| (t.track_id, t.source)).collect();
        let gone: Vec<String> = self
            .published
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            self.unpublish(&k);
        }
        self.declared = now;
        self.send(ServerMessage::PublishAnswer { sdp: local.sdp });
    }

    async fn on_subscribe_answer(&mut self, sdp: String) {
        let Some(pc) = self.subscribe_pc.clone() else {
            return self.error(ErrorCode::BadMessage, "no subscribe offer is outstanding");
        };
        if !self.negotiating {
            return self.error(ErrorCode::BadMessage, "no subscribe offer is outstanding");
        }
        let answer = match RTCSessionDescription::answer(sdp) {
            Ok(a) => a,
            Err(e) => {
                return self.error(
                    ErrorCode::BadSdp,
                    format!("the answer is not valid SDP: {e}"),
                );
            }
        };
        if let Err(e) = pc.set_remote_description(answer).await {
            // The offer stays outstanding: the client may answer again.
            return self.error(
                ErrorCode::BadSdp,
                format!("the answer could not be applied: {e}"),
            );
        }
        self.negotiating = false;
        if std::mem::take(&mut self.dirty) {
            self.renegotiate().await;
        }
    }

    async fn on_ice(&mut self, target: PcTarget, c: IceCandidate) {
        let pc = match target {
            PcTarget::Publisher => self.publish_pc.clone(),
            PcTarget::Subscriber => self.subscribe_pc.clone(),
        };
        let Some(pc) = pc else {
            return self.error(ErrorCode::BadCandidate, "no such peer connection yet");
        };
        if c.candidate.is_empty() {
            return; // end of candidates
        }
        if let Err(e) = pc.add_ice_candidate(media::candidate_init(c)).await {
            self.error(
                ErrorCode::BadCandidate,
                format!("candidate not applied: {e}"),
            );
        }
    }

    /// Handles an event from one of the peer connections.
    pub async fn on_pc_event(&mut self, ev: PcEvent) {
        match ev {
            PcEvent::Candidate(target, candidate) => {
                self.send(ServerMessage::Ice { target, candidate })
            }
            PcEvent::Track(remote) => self.on_remote_track(remote).await,
            PcEvent::Connected(PcTarget::Subscriber) => {
                // Keyframes forwarded before DTLS finished never reached the subscriber: ask the
                // publishers again (throttled by the core) so the first picture comes at once.
                let now = Instant::now();
                let mut deferred = Vec::new();
                {
                    let mut inner = self.room.lock();
                    for s in self
                        .subscribed
                        .values()
                        .filter(|s| !s.info.source.is_audio())
                    {
                        inner.core.handle_keyframe_request(now, s.sub);
                    }
                    self.room.drain(&mut inner, &mut deferred);
                }
                self.room.perform(deferred).await;
            }
            PcEvent::Connected(PcTarget::Publisher) => {}
            PcEvent::Ended(target) => {
                tracing::info!(parent: &self.span, ?target, "peer connection failed or closed");
            }
        }
    }

    async fn on_remote_track(&mut self, remote: Arc<dyn TrackRemote>) {
        let browser_id = remote.track_id().await.to_string();
        let Some(&source) = self.declared.get(&browser_id) else {
            tracing::warn!(parent: &self.span, track = %browser_id, "undeclared track ignored");
            return;
        };
        if self.published.contains_key(&browser_id) {
            return;
        }
        let Some(media_ssrc) = remote.ssrcs().await.first().copied() else {
            return;
        };
        let Some(codec) = remote.codec(media_ssrc).await else {
            return;
        };
        // Simulcast: one layer per rid the offer declared, lowest first.
        let rid_order = simulcast_order(
            self.declared_rids
                .get(&browser_id)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        );
        let rid_ext = self.rid_ext;
        let layers = rid_order.len().max(1);
        let Some((core_codec, _)) = media::subscriber_codec(&codec) else {
            tracing::warn!(parent: &self.span, mime = %codec.mime_type, "unsupported codec");
            return;
        };
        if core_codec.is_audio() != source.is_audio() {
            tracing::warn!(parent: &self.span, %source, "declared source does not match the media kind");
            return;
        }
        self.next_track += 1;
        let track_id = TrackId(format!(
            "{}-{}-{}",
            self.claims.sub,
            source,
            self.epoch * 100 + u64::from(self.next_track)
        ));
        let info = TrackInfo {
            track_id: track_id.clone(),
            participant: self.claims.sub.clone(),
            source,
        };
        let handle = {
            let mut inner = self.room.lock();
            let h = inner.core.add_track(TrackSpec {
                id: track_id.clone(),
                publisher: self.claims.sub.clone(),
                source,
                codec: core_codec,
                layers: layers as u8,
                lead: self.claims.role == Role::Lead,
            });
            let mut layer_ssrcs = vec![None; layers];
            if rid_order.is_empty() {
                layer_ssrcs[0] = Some(media_ssrc);
            }
            inner.sources.insert(
                h,
                RoomSource {
                    info: info.clone(),
                    remote: remote.clone(),
                    layer_ssrcs,
                    codec: codec.clone(),
                    browser_id: browser_id.clone(),
                },
            );
            h
        };
        let room = self.room.clone();
        let level_ext = if source.is_audio() {
            self.audio_level_ext
        } else {
            None
        };
        let track_span = tracing::info_span!(parent: &self.span, "track", id = %track_id, %source);
        tracing::info!(parent: &track_span, mime = %codec.mime_type, layers, "published");
        let reader = tokio::spawn(
            async move {
                // SSRC → layer, learnt as each layer's first packet arrives, and SSRCs whose
                // packets could not say (dropped without asking again, up to a bound).
                let mut ssrc_layers: Vec<(u32, u8)> = Vec::new();
                let mut unknown: Vec<u32> = Vec::new();
                while let Some(ev) = remote.poll().await {
                    match ev {
                        TrackRemoteEvent::OnRtpPacket(p) => {
                            let ssrc = p.header.ssrc;
                            let layer = match ssrc_layers.iter().find(|(s, _)| *s == ssrc) {
                                Some((_, l)) => *l,
                                None if unknown.contains(&ssrc) => continue,
                                None => {
                                    let Some(l) = learn_layer(
                                        &room, handle, &*remote, &rid_order, rid_ext, &p,
                                    )
                                    .await
                                    else {
                                        if unknown.len() < 16 {
                                            unknown.push(ssrc);
                                        }
                                        continue;
                                    };
                                    ssrc_layers.push((ssrc, l));
                                    l
                                }
                            };
                            room.on_rtp(handle, layer, p, level_ext).await
                        }
                        TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError => break,
                        _ => {}
                    }
                }
                tracing::debug!("track reader ended");
            }
            .instrument(track_span),
        );
        self.published.insert(
            browser_id,
            Published {
                handle,
                info: info.clone(),
                reader,
            },
        );
        // Announce, and subscribe everyone else who may receive.
        let inner = self.room.lock();
        for (id, m) in &inner.members {
            if *id == self.claims.sub {
                continue;
            }
            let _ = m.cmd.send(SessionCmd::Send(ServerMessage::TrackPublished {
                track: info.clone(),
            }));
            if m.grants.subscribe {
                let _ = m
                    .cmd
                    .send(SessionCmd::Subscribe(handle, info.clone(), codec.clone()));
            }
        }
    }

    fn unpublish(&mut self, browser_id: &str) {
        let Some(p) = self.published.remove(browser_id) else {
            return;
        };
        p.reader.abort();
        let inner_members: Vec<mpsc::UnboundedSender<SessionCmd>> = {
            let mut inner = self.room.lock();
            inner.sources.remove(&p.handle);
            let removed = inner.core.remove_track(p.handle);
            for s in removed {
                inner.sinks.remove(&s);
            }
            inner
                .members
                .iter()
                .filter(|(id, _)| **id != self.claims.sub)
                .map(|(_, m)| m.cmd.clone())
                .collect()
        };
        tracing::info!(parent: &self.span, track = %p.info.track_id, "unpublished");
        for cmd in inner_members {
            let _ = cmd.send(SessionCmd::Unsubscribe(p.handle));
            let _ = cmd.send(SessionCmd::Send(ServerMessage::TrackUnpublished {
                track: p.info.clone(),
            }));
        }
    }

    /// Handles a command from the room. Returns `false` when the session must end.
    pub async fn on_cmd(&mut self, cmd: SessionCmd) -> bool {
        match cmd {
            SessionCmd::Send(m) => self.send(m),
            SessionCmd::Close(code, reason) => {
                let _ = self.out.send(Outgoing::Close(code, reason));
                return false;
            }
            SessionCmd::Subscribe(h, info, codec) => {
                if self.subscribe(h, info, codec).await {
                    self.renegotiate().await;
                }
            }
            SessionCmd::Unsubscribe(h) => {
                if let Some(s) = self.subscribed.remove(&h) {
                    s.feedback.abort();
                    {
                        let mut inner = self.room.lock();
                        inner.core.unsubscribe(s.sub);
                        inner.sinks.remove(&s.sub);
                    }
                    if let Some(pc) = &self.subscribe_pc
                        && let Err(e) = pc.remove_track(&s.sender).await
                    {
                        tracing::debug!(parent: &self.span, error = %e, "remove_track");
                    }
                    self.renegotiate().await;
                }
            }
        }
        true
    }

    async fn ensure_subscribe_pc(&mut self) -> Option<Arc<dyn PeerConnection>> {
        if let Some(pc) = &self.subscribe_pc {
            return Some(pc.clone());
        }
        let handler = Arc::new(Handler {
            target: PcTarget::Subscriber,
            tx: self.pc_tx.clone(),
        });
        match self
            .sfu
            .peer_connection(handler, Some(self.estimate.clone()))
            .await
        {
            Ok(pc) => {
                self.subscribe_pc = Some(pc.clone());
                Some(pc)
            }
            Err(e) => {
                tracing::warn!(parent: &self.span, error = %e, "subscribe connection not created");
                self.error(ErrorCode::Internal, "the server could not send media now");
                None
            }
        }
    }

    /// Adds a track to the subscribe connection (without negotiating). Returns whether it did.
    async fn subscribe(
        &mut self,
        handle: TrackHandle,
        info: TrackInfo,
        codec: rtc::rtp_transceiver::rtp_sender::RTCRtpCodec,
    ) -> bool {
        if self.subscribed.contains_key(&handle) || info.participant == self.claims.sub {
            return false;
        }
        let Some((core_codec, params)) = media::subscriber_codec(&codec) else {
            return false;
        };
        let payload_type = if core_codec == crate::core::Codec::Red {
            media::RED_PAYLOAD_TYPE
        } else {
            params.payload_type
        };
        let Some(pc) = self.ensure_subscribe_pc().await else {
            return false;
        };
        let ssrc: u32 = rand::random::<u32>() | 1;
        let kind = if info.source.is_audio() {
            rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio
        } else {
            rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video
        };
        let local = Arc::new(TrackLocalStaticRTP::new(
            rtc::media_stream::MediaStreamTrack::new(
                info.participant.to_string(),
                info.track_id.to_string(),
                info.track_id.to_string(),
                kind,
                vec![rtc::rtp_transceiver::rtp_sender::RTCRtpEncodingParameters {
                    rtp_coding_parameters:
                        rtc::rtp_transceiver::rtp_sender::RTCRtpCodingParameters {
                            ssrc: Some(ssrc),
                            ..Default::default()
                        },
                    codec: params.rtp_codec.clone(),
                    ..Default::default()
                }],
            ),
        ));
        let sender = match pc.add_track(local.clone() as Arc<dyn TrackLocal>).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(parent: &self.span, error = %e, "add_track failed");
                return false;
            }
        };
        let mut deferred = Vec::new();
        let sub = {
            let mut inner = self.room.lock();
            let result = if inner.sources.contains_key(&handle) {
                inner.core.subscribe(
                    Instant::now(),
                    SubscribeSpec {
                        subscriber: self.claims.sub.clone(),
                        track: handle,
                        ssrc,
                        payload_type,
                    },
                )
            } else {
                Err(crate::core::CoreError::UnknownTrack(handle))
            };
            if let Ok(sub) = result {
                inner.sinks.insert(
                    sub,
                    Sink {
                        track: local.clone(),
                        queue: self.sink_queue.clone(),
                        subscriber: self.claims.sub.clone(),
                        track_id: info.track_id.clone(),
                        video: !info.source.is_audio(),
                    },
                );
                self.room.drain(&mut inner, &mut deferred);
            }
            result
        };
        let sub = match sub {
            Ok(sub) => sub,
            Err(e) => {
                // Unpublished meanwhile, or refused by the core (which would be a bug here).
                tracing::debug!(parent: &self.span, error = %e, "subscription not made");
                let _ = pc.remove_track(&sender).await;
                return false;
            }
        };
        self.room.perform(deferred).await;
        let room = self.room.clone();
        let feedback = tokio::spawn(
            async move {
                while let Some(TrackLocalEvent::OnRtcpPacket(packets)) = local.poll().await {
                    let now = Instant::now();
                    let mut deferred = Vec::new();
                    {
                        let mut inner = room.lock();
                        for p in &packets {
                            let any = p.as_any();
                            if let Some(nack) = any.downcast_ref::<rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack>() {
                                for pair in &nack.nacks {
                                    inner.core.handle_nack(sub, pair.packet_list());
                                }
                            } else {
                                inner.core.handle_keyframe_request(now, sub);
                            }
                        }
                        room.drain(&mut inner, &mut deferred);
                    }
                    room.perform(deferred).await;
                }
            }
            .instrument(self.span.clone()),
        );
        self.subscribed.insert(
            handle,
            Subscribed {
                sub,
                sender,
                info,
                feedback,
            },
        );
        true
    }

    async fn renegotiate(&mut self) {
        if self.negotiating {
            self.dirty = true;
            return;
        }
        let Some(pc) = self.subscribe_pc.clone() else {
            return;
        };
        let offer = match pc.create_offer(None).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(parent: &self.span, error = %e, "subscribe offer failed");
                return;
            }
        };
        if let Err(e) = pc.set_local_description(offer).await {
            tracing::warn!(parent: &self.span, error = %e, "subscribe offer not applied");
            return;
        }
        let Some(local) = pc.local_description().await else {
            return;
        };
        let mut tracks: Vec<TrackInfo> = self.subscribed.values().map(|s| s.info.clone()).collect();
        tracks.sort_by(|a, b| a.track_id.cmp(&b.track_id));
        self.negotiating = true;
        self.send(ServerMessage::SubscribeOffer {
            sdp: local.sdp,
            tracks,
        });
    }

    /// Leaves the room: unpublishes, unsubscribes, closes the peer connections.
    pub async fn leave(mut self) {
        let ids: Vec<String> = self.published.keys().cloned().collect();
        for id in ids {
            self.unpublish(&id);
        }
        let still_member;
        let hands_changed;
        let spotlight_cleared;
        {
            let mut inner = self.room.lock();
            // Only this session's own subscriptions: a session that replaced this one under the
            // same identity keeps its own.
            for (_, s) in self.subscribed.drain() {
                s.feedback.abort();
                inner.core.unsubscribe(s.sub);
                inner.sinks.remove(&s.sub);
            }
            still_member = inner
                .members
                .get(&self.claims.sub)
                .is_some_and(|m| m.epoch != self.epoch);
            if !still_member {
                inner.members.remove(&self.claims.sub);
                inner.core.forget_subscriber(&self.claims.sub);
                inner.quality.remove(&self.claims.sub);
                let before = inner.hands.len();
                inner.hands.retain(|h| *h != self.claims.sub);
                hands_changed = (before != inner.hands.len()).then(|| inner.hands.clone());
                spotlight_cleared = inner.spotlight.as_ref() == Some(&self.claims.sub);
                if spotlight_cleared {
                    inner.spotlight = None;
                }
            } else {
                hands_changed = None;
                spotlight_cleared = false;
            }
        }
        self.sink_writer.abort();
        for pc in [self.publish_pc.take(), self.subscribe_pc.take()]
            .into_iter()
            .flatten()
        {
            let _ = pc.close().await;
        }
        if !still_member {
            if !self.claims.role.is_hidden() {
                self.room.broadcast(
                    &ServerMessage::ParticipantLeft {
                        participant: self.claims.sub.clone(),
                    },
                    None,
                );
            }
            if let Some(hands) = hands_changed {
                self.room.broadcast(&ServerMessage::Hands { hands }, None);
            }
            if spotlight_cleared {
                self.room
                    .broadcast(&ServerMessage::Spotlight { participant: None }, None);
            }
        }
        tracing::info!(parent: &self.span, "left");
        self.sfu.emit(crate::sfu::SfuEvent::Left {
            room: self.claims.room.clone(),
            participant: self.claims.sub.clone(),
            at: std::time::SystemTime::now(),
        });
        self.sfu.close_if_empty(&self.room);
    }
}

/// Writes queued packets to this subscriber's peer connection, in order.
async fn write_sinks(mut rx: mpsc::Receiver<SinkPacket>) {
    while let Some((track, packet)) = rx.recv().await {
        if let Err(e) = track.write_rtp(packet).await {
            tracing::trace!(error = %e, "write_rtp");
        }
    }
}

/// A simulcast offer's rids in layer order, lowest first (layer `i` is `order[i]`); empty without
/// simulcast. Duet's own rids ([`SIMULCAST_RIDS`]) sort by their meaning, anything else keeps the
/// offer's order (lowest first by convention), and layers past the third are not used.
fn simulcast_order(rids: &[String]) -> Vec<String> {
    let named: Vec<String> = rids.iter().filter(|r| !r.is_empty()).cloned().collect();
    if named.len() < 2 {
        return Vec::new();
    }
    let mut order = named.clone();
    if named.iter().all(|r| SIMULCAST_RIDS.contains(&r.as_str())) {
        order.sort_by_key(|r| SIMULCAST_RIDS.iter().position(|k| k == r));
    }
    order.truncate(crate::core::alloc::MAX_LAYERS);
    order
}

/// Which layer a newly seen SSRC of a track carries, recorded for keyframe requests; `None` if
/// it is no layer the offer declared (or its first packets do not say which). The rid comes
/// from the packet's own rid header extension (browsers send it until the SSRC is known), else
/// from what webrtc-rs bound.
async fn learn_layer(
    room: &LiveRoom,
    handle: TrackHandle,
    remote: &dyn TrackRemote,
    rid_order: &[String],
    rid_ext: Option<u8>,
    packet: &rtc::rtp::Packet,
) -> Option<u8> {
    let ssrc = packet.header.ssrc;
    let layer = if rid_order.is_empty() {
        0
    } else {
        let from_packet = rid_ext
            .and_then(|id| packet.header.get_extension(id))
            .and_then(|b| std::str::from_utf8(&b).ok().map(str::to_owned));
        let rid = match from_packet {
            Some(r) => r,
            None => remote.rid(ssrc).await?.to_string(),
        };
        rid_order.iter().position(|r| *r == rid)?
    };
    let mut inner = room.lock();
    let src = inner.sources.get_mut(&handle)?;
    if let Some(slot) = src.layer_ssrcs.get_mut(layer) {
        *slot = Some(ssrc);
    }
    tracing::debug!(ssrc, layer, "layer seen");
    u8::try_from(layer).ok()
}

/// The RTP stream id (rid) header extension.
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// Browser track id → the rids of its `a=simulcast:send` line, per media section of an offer.
/// Alternatives (`a,b`) count their first; paused rids (`~a`) still count as layers.
fn simulcast_rids(sdp: &str) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    let (mut track, mut rids): (Option<String>, Vec<String>) = (None, Vec::new());
    let mut flush = |track: &mut Option<String>, rids: &mut Vec<String>| {
        if let Some(t) = track.take()
            && !rids.is_empty()
        {
            out.insert(t, std::mem::take(rids));
        }
        rids.clear();
    };
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            flush(&mut track, &mut rids);
        } else if let Some(msid) = line.strip_prefix("a=msid:") {
            track = msid.split_whitespace().nth(1).map(str::to_owned);
        } else if let Some(list) = line.strip_prefix("a=simulcast:send ") {
            rids = list
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .split(';')
                .filter_map(|alt| alt.split(',').next())
                .map(|r| r.trim_start_matches('~').to_owned())
                .filter(|r| !r.is_empty())
                .collect();
        }
    }
    flush(&mut track, &mut rids);
    out
}

/// The id of `uri` in an SDP's `a=extmap` lines.
fn extmap_id(sdp: &str, uri: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("a=extmap:")?;
        let (id, tail) = rest.split_once(' ')?;
        let id = id.split('/').next()?.parse().ok()?;
        (tail.split_whitespace().next()? == uri).then_some(id)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn extmap_ids_are_found() {
        let sdp = "v=0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:4/sendrecv urn:x\r\n";
        assert_eq!(super::extmap_id(sdp, super::AUDIO_LEVEL_URI), Some(1));
        assert_eq!(super::extmap_id(sdp, "urn:x"), Some(4));
        assert_eq!(super::extmap_id(sdp, "urn:y"), None);
    }

    #[test]
    fn simulcast_rids_are_read_per_track() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:s mic\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:s cam\r\na=rid:q send\r\n\
                   a=simulcast:send q;~h;f,g\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:s screen\r\n";
        let rids = super::simulcast_rids(sdp);
        assert_eq!(rids.len(), 1, "{rids:?}");
        assert_eq!(rids["cam"], ["q", "h", "f"]);
        assert_eq!(
            super::simulcast_order(&["f".into(), "q".into(), "h".into()]),
            ["q", "h", "f"]
        );
        assert!(super::simulcast_order(&["q".into()]).is_empty());
    }
}
