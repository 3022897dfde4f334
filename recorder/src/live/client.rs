//! The recorder as a hidden participant of one live class: a webrtc-rs client that joins the
//! SFU with a `recorder` token, receives every track on one subscribe connection and writes
//! each one, as received, into a crash-safe RTP dump ([`super::dump`]).
//!
//! - **Tracks come and go:** every subscribe offer names the tracks it carries (owner and
//!   source); a track that appears gets a new dump file, one that ends closes its file.
//! - **Drops:** when signalling closes or the connection fails, the client waits a moment and
//!   joins again with the latest token it was given; each join writes new dump files, so the
//!   lesson keeps one timeline and the time without packets is a gap, not a new lesson.
//! - **Layers:** the recorder asks for the full resolution of every camera (a `track_view` of
//!   1080 px), and the SFU gives it what its link carries.
//! - **Disk:** each track's file is written on its own blocking thread behind a bounded queue,
//!   flushed at least every 250 ms; a disk too slow for the queue loses packets (counted and
//!   logged), never the runtime the SFU shares in `duet up`.
//! - **Who is who:** the participants' names and roles are kept in `participants.json` beside the
//!   dumps, for post-processing (the lead teacher's microphone is the teacher's voice).
//!
//! File names: `tracks/<participant>~<source>~<first packet, unix ms>.rtp`.

use super::dump::{Codec, DumpWriter, TrackKind, TrackMeta};
use duet_sfu::shell::media::{
    RED_PAYLOAD_TYPE, candidate_init, interceptors, media_engine, signal_candidate,
};
use duet_sfu_proto::signal::ParticipantInfo;
use duet_sfu_proto::signal::{ClientMessage, PcTarget, ServerMessage, TrackInfo};
use duet_sfu_proto::{Source, TrackId};
use futures::{SinkExt, StreamExt};
use rtc::shared::marshal::Marshal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

/// How long a join may wait for the SFU's answer.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The pause before joining again after a drop (grows to [`MAX_BACKOFF`]).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest pause between joins.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A connection `disconnected` this long counts as dropped.
const DISCONNECTED_GRACE: Duration = Duration::from_secs(5);
/// Buffered packets of a dump reach the disk at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// The picture height the recorder asks for: every camera's best layer.
const WANTED_HEIGHT: u32 = 1080;

/// Why one join of the class ended.
#[derive(Debug, thiserror::Error)]
pub enum LiveClientError {
    /// The WebSocket to the SFU failed.
    #[error("signalling: {0}")]
    Signalling(String),
    /// The SFU refused (a bad or expired token, a closed room).
    #[error("the SFU refused: {0}")]
    Refused(String),
    /// webrtc-rs failed.
    #[error("peer connection: {0}")]
    Peer(String),
    /// The media connection dropped.
    #[error("the media connection dropped ({0})")]
    Dropped(String),
}

/// A participant as the recorder saw it, kept in `participants.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenParticipant {
    /// Display name.
    pub name: String,
    /// Role in the class (`lead`, `receiving`, `observer`).
    pub role: String,
}

/// What the client has done so far (for status and tests).
#[derive(Clone, Debug, Default)]
pub struct ClientStats {
    /// Joins that succeeded (1 + rejoins).
    pub joins: u32,
    /// Dump files opened.
    pub files: u32,
    /// RTP packets written.
    pub packets: u64,
    /// The last error, if the client is between joins.
    pub last_error: Option<String>,
}

/// A running client; dropping it does not stop it, [`LiveClient::stop`] does.
pub struct LiveClient {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    stats: Arc<Mutex<ClientStats>>,
}

impl LiveClient {
    /// Starts recording `room` into `dir` (created if missing), joining `ws_url`
    /// (`ws://host:port/sfu/ws`) with the newest token in `token`.
    pub fn start(
        room: String,
        ws_url: String,
        token: watch::Receiver<String>,
        dir: PathBuf,
    ) -> LiveClient {
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(Mutex::new(ClientStats::default()));
        let span = tracing::info_span!("live_recording", %room);
        let task = tokio::spawn(run(ws_url, token, dir, stop_rx, stats.clone()).instrument(span));
        LiveClient { stop, task, stats }
    }

    /// What the client has done so far.
    pub fn stats(&self) -> ClientStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Leaves the class, closes every file and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    ws_url: String,
    token: watch::Receiver<String>,
    dir: PathBuf,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Mutex<ClientStats>>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *stop.borrow() {
            return;
        }
        let token_now = token.borrow().clone();
        let started = tokio::time::Instant::now();
        match join_once(&ws_url, token_now, &dir, stop.clone(), &stats).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "live recording dropped; joining again");
                if let Ok(mut s) = stats.lock() {
                    s.last_error = Some(e.to_string());
                }
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            changed = stop.changed() => {
                // The handle is gone (dropped without `stop`): stop too, do not spin.
                if changed.is_err() {
                    return;
                }
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum PcEvent {
    Candidate(duet_sfu_proto::signal::IceCandidate),
    Track(Arc<dyn TrackRemote>),
    State(RTCPeerConnectionState),
}

struct Handler(mpsc::UnboundedSender<PcEvent>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Some(c) = signal_candidate(&event) {
            let _ = self.0.send(PcEvent::Candidate(c));
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.0.send(PcEvent::Track(track));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.0.send(PcEvent::State(state));
    }
}

async fn subscribe_pc(
    tx: mpsc::UnboundedSender<PcEvent>,
) -> Result<Arc<dyn PeerConnection>, LiveClientError> {
    let engine = media_engine().map_err(|e| LiveClientError::Peer(e.to_string()))?;
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        // NACKs for lost packets, receiver reports, and transport-wide feedback so that the SFU's
        // estimate of the recorder's link grows to carry every camera's best layer.
        .with_interceptor_registry(interceptors(None))
        .with_setting_engine(settings)
        .with_handler(Arc::new(Handler(tx)))
        .with_udp_addrs(vec!["0.0.0.0:0".to_owned()])
        .build()
        .await
        .map_err(|e| LiveClientError::Peer(e.to_string()))?;
    Ok(Arc::new(pc))
}

/// Who publishes what, learnt from the offers; shared with the track writers.
type Offered = Arc<Mutex<HashMap<TrackId, TrackInfo>>>;

async fn join_once(
    ws_url: &str,
    token: String,
    dir: &Path,
    mut stop: watch::Receiver<bool>,
    stats: &Arc<Mutex<ClientStats>>,
) -> Result<(), LiveClientError> {
    let (ws, _) = tokio::time::timeout(JOIN_TIMEOUT, tokio_tungstenite::connect_async(ws_url))
        .await
        .map_err(|_| LiveClientError::Signalling("no connection within 15 s".into()))?
        .map_err(|e| LiveClientError::Signalling(e.to_string()))?;
    let (mut sink, mut stream) = ws.split();
    let send = |m: &ClientMessage| {
        Message::Text(
            serde_json::to_string(m)
                .unwrap_or_else(|_| "{}".into())
                .into(),
        )
    };
    sink.send(send(&ClientMessage::Join { token }))
        .await
        .map_err(|e| LiveClientError::Signalling(e.to_string()))?;

    let offered: Offered = Arc::default();
    let mut participants: BTreeMap<String, SeenParticipant> = load_participants(dir);
    let (pc_tx, mut pc_rx) = mpsc::unbounded_channel();
    let mut pc: Option<Arc<dyn PeerConnection>> = None;
    let mut writers: Vec<JoinHandle<()>> = Vec::new();
    let mut joined = false;
    let mut disconnected_since: Option<tokio::time::Instant> = None;
    let join_deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut tick = tokio::time::interval(Duration::from_secs(1));

    let result = loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    let _ = sink.send(send(&ClientMessage::Leave)).await;
                    break Ok(());
                }
            }
            _ = tick.tick() => {
                if !joined && tokio::time::Instant::now() > join_deadline {
                    break Err(LiveClientError::Signalling("no answer to join within 15 s".into()));
                }
                if let Some(since) = disconnected_since
                    && since.elapsed() > DISCONNECTED_GRACE
                {
                    break Err(LiveClientError::Dropped("disconnected".into()));
                }
            }
            msg = stream.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame.map_or_else(|| "closed".into(), |f| f.reason.to_string());
                        break Err(LiveClientError::Signalling(format!("the SFU closed signalling: {reason}")));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break Err(LiveClientError::Signalling(e.to_string())),
                    None => break Err(LiveClientError::Signalling("signalling ended".into())),
                };
                let Ok(m) = serde_json::from_str::<ServerMessage>(&text) else {
                    tracing::warn!("unreadable message from the SFU, ignored");
                    continue;
                };
                match m {
                    ServerMessage::Joined { participants: ps, tracks, .. } => {
                        joined = true;
                        if let Ok(mut s) = stats.lock() {
                            s.joins += 1;
                            s.last_error = None;
                        }
                        for p in &ps {
                            note_participant(&mut participants, p);
                        }
                        save_participants(dir, &participants);
                        remember(&offered, tracks);
                        tracing::info!(participants = ps.len(), "recorder joined the class");
                    }
                    ServerMessage::ParticipantJoined { participant } => {
                        note_participant(&mut participants, &participant);
                        save_participants(dir, &participants);
                    }
                    ServerMessage::TrackPublished { track } => remember(&offered, vec![track]),
                    ServerMessage::SubscribeOffer { sdp, tracks } => {
                        let videos: Vec<TrackId> = tracks
                            .iter()
                            .filter(|t| !t.source.is_audio())
                            .map(|t| t.track_id.clone())
                            .collect();
                        remember(&offered, tracks);
                        let conn = match &pc {
                            Some(c) => c.clone(),
                            None => match subscribe_pc(pc_tx.clone()).await {
                                Ok(c) => {
                                    pc = Some(c.clone());
                                    c
                                }
                                // Every way out goes through the clean-up below.
                                Err(e) => break Err(e),
                            },
                        };
                        let answer = match answer(&conn, sdp).await {
                            Ok(a) => a,
                            Err(e) => break Err(e),
                        };
                        if sink.send(send(&ClientMessage::SubscribeAnswer { sdp: answer })).await.is_err() {
                            break Err(LiveClientError::Signalling("could not answer".into()));
                        }
                        for track_id in videos {
                            let _ = sink
                                .send(send(&ClientMessage::TrackView { track_id, height: WANTED_HEIGHT }))
                                .await;
                        }
                    }
                    ServerMessage::Ice { target: PcTarget::Subscriber, candidate } => {
                        if let Some(c) = &pc
                            && !candidate.candidate.is_empty()
                            && let Err(e) = c.add_ice_candidate(candidate_init(candidate)).await
                        {
                            tracing::debug!(error = %e, "remote candidate refused");
                        }
                    }
                    ServerMessage::Error { code, message } => {
                        if !joined {
                            break Err(LiveClientError::Refused(format!("{code:?}: {message}")));
                        }
                        tracing::warn!(?code, %message, "the SFU reported an error");
                    }
                    _ => {}
                }
            }
            Some(ev) = pc_rx.recv() => match ev {
                PcEvent::Candidate(candidate) => {
                    let _ = sink
                        .send(send(&ClientMessage::Ice { target: PcTarget::Subscriber, candidate }))
                        .await;
                }
                PcEvent::Track(remote) => {
                    writers.push(tokio::spawn(
                        write_track(remote, offered.clone(), dir.to_owned(), stats.clone())
                            .in_current_span(),
                    ));
                }
                PcEvent::State(state) => match state {
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        break Err(LiveClientError::Dropped(format!("{state}")));
                    }
                    RTCPeerConnectionState::Disconnected => {
                        disconnected_since.get_or_insert_with(tokio::time::Instant::now);
                    }
                    _ => disconnected_since = None,
                },
            },
        }
    };
    if let Some(c) = pc {
        let _ = c.close().await;
    }
    // The writers end with their tracks (closed with the connection); their files are flushed
    // and closed as they end. One deadline for all; a writer still running then is aborted (its
    // dump is flushed as it drops), so no file is appended to once this join is over.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for mut w in writers {
        if tokio::time::timeout_at(deadline, &mut w).await.is_err() {
            w.abort();
            let _ = w.await;
        }
    }
    let _ = sink.close().await;
    result
}

fn remember(offered: &Offered, tracks: Vec<TrackInfo>) {
    if let Ok(mut map) = offered.lock() {
        for t in tracks {
            map.insert(t.track_id.clone(), t);
        }
    }
}

fn note_participant(map: &mut BTreeMap<String, SeenParticipant>, p: &ParticipantInfo) {
    // Keyed as dump file names spell the participant, so post-processing finds them.
    map.insert(
        component(&p.id.to_string()),
        SeenParticipant {
            name: p.name.clone(),
            role: p.role.as_str().to_owned(),
        },
    );
}

/// The participants file beside the dumps.
pub fn participants_path(dir: &Path) -> PathBuf {
    dir.join("participants.json")
}

/// The participants seen so far, by the participant as dump file names spell it (empty when
/// none or unreadable).
pub fn load_participants(dir: &Path) -> BTreeMap<String, SeenParticipant> {
    std::fs::read(participants_path(dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_participants(dir: &Path, map: &BTreeMap<String, SeenParticipant>) {
    let path = participants_path(dir);
    let tmp = path.with_extension("json.tmp");
    let Ok(body) = serde_json::to_vec_pretty(map) else {
        return;
    };
    if let Err(e) = std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, &path)) {
        tracing::warn!(error = %e, path = %path.display(), "participants not saved");
    }
}

async fn answer(pc: &Arc<dyn PeerConnection>, sdp: String) -> Result<String, LiveClientError> {
    let peer = |e: webrtc::error::Error| LiveClientError::Peer(e.to_string());
    let offer = RTCSessionDescription::offer(sdp).map_err(peer)?;
    pc.set_remote_description(offer).await.map_err(peer)?;
    let answer = pc.create_answer(None).await.map_err(peer)?;
    pc.set_local_description(answer).await.map_err(peer)?;
    pc.local_description()
        .await
        .map(|d| d.sdp)
        .ok_or_else(|| LiveClientError::Peer("no local answer".into()))
}

/// A dump file name component: letters, digits, `-`, `_`, `.`; anything else becomes `_`.
fn component(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The directory the dumps of a recording are in.
pub fn tracks_dir(dir: &Path) -> PathBuf {
    dir.join("tracks")
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Writes one received track into its dump until the track ends. The file work happens on a
/// blocking thread ([`write_dump`]) fed through a bounded queue, so a slow disk never stalls the
/// runtime the SFU and the other tracks share; packets that find the queue full are dropped and
/// counted.
async fn write_track(
    remote: Arc<dyn TrackRemote>,
    offered: Offered,
    dir: PathBuf,
    stats: Arc<Mutex<ClientStats>>,
) {
    let track_id = remote.track_id().await;
    let info = offered
        .lock()
        .ok()
        .and_then(|m| m.get(&TrackId(track_id.to_string())).cloned());
    let Some(info) = info else {
        tracing::warn!(%track_id, "a track no offer named; not recorded");
        return;
    };
    let audio = info.source.is_audio();
    let mut queue: Option<(std::sync::mpsc::SyncSender<Arrived>, JoinHandle<()>)> = None;
    let (mut written, mut dropped) = (0u64, 0u64);
    while let Some(ev) = remote.poll().await {
        let packet = match ev {
            TrackRemoteEvent::OnRtpPacket(p) => p,
            TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError => break,
            _ => continue,
        };
        let now = SystemTime::now();
        if queue.is_none() {
            let codec = remote.codec(packet.header.ssrc).await;
            let prefix = format!(
                "{}~{}~",
                component(&info.participant.to_string()),
                info.source.as_str()
            );
            let meta = track_meta(&info, audio, codec.as_ref(), packet.header.payload_type);
            let path = tracks_dir(&dir).join(format!("{prefix}{}.rtp", unix_ms(now)));
            let (tx, rx) = std::sync::mpsc::sync_channel(WRITE_QUEUE);
            let span = tracing::info_span!(
                "dump",
                participant = %info.participant,
                source = %info.source
            );
            let (stats, dir) = (stats.clone(), dir.clone());
            let writer = tokio::task::spawn_blocking(move || {
                let _g = span.enter();
                write_dump(&dir, &prefix, &path, meta, &rx, &stats);
            });
            queue = Some((tx, writer));
        }
        let Ok(bytes) = packet.marshal() else {
            continue;
        };
        let Some((tx, _)) = queue.as_ref() else { break };
        match tx.try_send(Arrived(now, bytes.freeze())) {
            Ok(()) => {
                written += 1;
                if written.is_multiple_of(256)
                    && let Ok(mut s) = stats.lock()
                {
                    s.packets += 256;
                }
            }
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                dropped += 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped,
                        "the disk is behind; packets of a track were dropped"
                    );
                }
            }
            // The writer stopped: it logged why.
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => break,
        }
    }
    if let Some((tx, writer)) = queue {
        drop(tx);
        let _ = writer.await;
    }
    if let Ok(mut s) = stats.lock() {
        s.packets += written % 256;
    }
}

/// Packets a track's writer may have waiting (some seconds of a camera's top layer).
const WRITE_QUEUE: usize = 4096;

/// One received packet (as marshalled, not copied) and when it arrived.
struct Arrived(SystemTime, bytes::Bytes);

/// The blocking side of [`write_track`]: creates the dump (numbered after the parts already
/// there: rejoins, a restarted recorder), writes what arrives and flushes at least every
/// [`FLUSH_EVERY`], also while the track is quiet, until the queue closes.
fn write_dump(
    dir: &Path,
    prefix: &str,
    path: &Path,
    mut meta: TrackMeta,
    rx: &std::sync::mpsc::Receiver<Arrived>,
    stats: &Mutex<ClientStats>,
) {
    let tracks = tracks_dir(dir);
    meta.part = existing_parts(&tracks, prefix);
    let created = std::fs::create_dir_all(&tracks)
        .map_err(|e| e.to_string())
        .and_then(|()| DumpWriter::create(path, &meta).map_err(|e| e.to_string()));
    let mut w = match created {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, file = %path.display(), "cannot record a track");
            return;
        }
    };
    tracing::info!(part = meta.part, file = %path.display(), "recording a track");
    if let Ok(mut s) = stats.lock() {
        s.files += 1;
    }
    let mut flushed = std::time::Instant::now();
    loop {
        let written = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(Arrived(at, bytes)) => w.write(at, &bytes),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(()),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let flushed_now = if flushed.elapsed() >= FLUSH_EVERY {
            flushed = std::time::Instant::now();
            w.flush()
        } else {
            Ok(())
        };
        if let Err(e) = written.and(flushed_now) {
            tracing::error!(error = %e, "a track's dump failed; its recording stops here");
            break;
        }
    }
    if let Err(e) = w.finish() {
        tracing::warn!(error = %e, "a track's dump did not close cleanly");
    }
}

/// What a track's dump says of it (its part number is the writer's: [`write_dump`]).
fn track_meta(
    info: &TrackInfo,
    audio: bool,
    codec: Option<&rtc::rtp_transceiver::rtp_sender::RTCRtpCodec>,
    first_pt: u8,
) -> TrackMeta {
    let codec_name = match codec.and_then(|c| Codec::from_mime(&c.mime_type)) {
        Some(c) => c,
        None if audio => Codec::Opus,
        None => Codec::Vp8,
    };
    let payload_type = if audio && first_pt == RED_PAYLOAD_TYPE {
        opus_payload_type()
    } else {
        first_pt
    };
    TrackMeta {
        participant: info.participant.to_string(),
        source: info.source.as_str().to_owned(),
        kind: if audio {
            TrackKind::Audio
        } else {
            TrackKind::Video
        },
        codec: codec_name,
        clock_rate: if audio { 48_000 } else { 90_000 },
        payload_type,
        red_payload_type: audio.then_some(RED_PAYLOAD_TYPE),
        part: 0,
    }
}

/// Duet's Opus payload type on the subscribe leg (from the SFU's codec table).
fn opus_payload_type() -> u8 {
    let probe = rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
        mime_type: "audio/opus".into(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: Vec::new(),
    };
    duet_sfu::shell::media::subscriber_codec(&probe).map_or(111, |(_, p)| p.payload_type)
}

/// How many dumps of the track whose file names start with `prefix` are in `dir` already.
fn existing_parts(dir: &Path, prefix: &str) -> u32 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        let n = entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    })
}

/// Parses a dump file name back into (participant, source, first packet unix ms).
pub fn parse_dump_name(name: &str) -> Option<(String, Source, u64)> {
    let stem = name.strip_suffix(".rtp")?;
    let mut it = stem.rsplitn(3, '~');
    let ms = it.next()?.parse().ok()?;
    let source = match it.next()? {
        "camera" => Source::Camera,
        "microphone" => Source::Microphone,
        "screen" => Source::Screen,
        _ => return None,
    };
    let participant = it.next()?.to_owned();
    Some((participant, source, ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_names_roundtrip_and_refuse_strangers() {
        assert_eq!(component("usr_1/../x y"), "usr_1_.._x_y");
        assert_eq!(
            parse_dump_name("usr_1~camera~1700000000123.rtp"),
            Some(("usr_1".into(), Source::Camera, 1_700_000_000_123))
        );
        assert_eq!(
            parse_dump_name("a~b~screen~5.rtp"),
            Some(("a~b".into(), Source::Screen, 5))
        );
        assert_eq!(parse_dump_name("usr_1~lamp~5.rtp"), None);
        assert_eq!(parse_dump_name("usr_1~camera~x.rtp"), None);
        assert_eq!(parse_dump_name("usr_1~camera~5.mkv"), None);
    }
}
