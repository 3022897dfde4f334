//! Bad input on the SFU's signalling channel, over a real WebSocket on loopback against
//! `duet up`'s router: tokens that are missing, forged, expired or malformed close the socket
//! with a distinct code; malformed JSON or SDP gets an error and leaves the room and the other
//! participants untouched; a `receiving` token can neither publish a screen share nor act as the
//! lead.

use duet::DuetConfig;
use duet_sfu_proto::signal::{ErrorCode, ServerMessage, close};
use duet_sfu_proto::{JoinClaims, Role, TokenKey};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "signalling-bad-input-test-key";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(who: &str, role: Role, exp: u64) -> JoinClaims {
    JoinClaims {
        room: "bad-input".into(),
        sub: who.into(),
        name: who.into(),
        role,
        grants: role.default_grants(),
        iat: now(),
        exp,
    }
}

fn token(who: &str, role: Role) -> String {
    TokenKey::new(KEY.as_bytes())
        .unwrap()
        .sign(&claims(who, role, now() + 600))
}

async fn start() -> (duet::Running, String) {
    let dir = std::env::temp_dir().join(format!(
        "duet-bad-input-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let mut config = DuetConfig {
        data_dir: dir,
        token_key: KEY.into(),
        ..DuetConfig::default()
    };
    config.gateway.listen = "127.0.0.1:0".into();
    config.gateway.demo = false;
    let running = duet::start_up(&config).await.unwrap();
    let url = format!("ws://{}/sfu/ws", running.addr);
    (running, url)
}

fn rand_suffix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn send(ws: &mut Ws, text: impl Into<String>) {
    ws.send(Message::Text(text.into().into())).await.unwrap();
}

/// The next server message, or the close code.
async fn next(ws: &mut Ws) -> Result<ServerMessage, Option<(u16, String)>> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("server answers in time");
        match m {
            Some(Ok(Message::Text(t))) => {
                return Ok(serde_json::from_str(&t).expect("server speaks the protocol"));
            }
            Some(Ok(Message::Close(f))) => {
                return Err(f.map(|f| (u16::from(f.code), f.reason.to_string())));
            }
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => return Err(None),
        }
    }
}

async fn closed_with(url: &str, first: String) -> (u16, String) {
    let mut ws = connect(url).await;
    send(&mut ws, first).await;
    match next(&mut ws).await {
        Err(Some(c)) => c,
        other => panic!("expected a close frame, got {other:?}"),
    }
}

async fn join(url: &str, who: &str, role: Role) -> Ws {
    let mut ws = connect(url).await;
    send(
        &mut ws,
        json!({"type": "join", "token": token(who, role)}).to_string(),
    )
    .await;
    match next(&mut ws).await {
        Ok(ServerMessage::Joined { you, .. }) => assert_eq!(you.role, role),
        other => panic!("join failed: {other:?}"),
    }
    ws
}

/// Reads until a message matching `f` arrives (other events may come first).
async fn expect<F: Fn(&ServerMessage) -> bool>(ws: &mut Ws, what: &str, f: F) -> ServerMessage {
    for _ in 0..20 {
        match next(ws).await {
            Ok(m) if f(&m) => return m,
            Ok(_) => continue,
            Err(c) => panic!("closed while waiting for {what}: {c:?}"),
        }
    }
    panic!("no {what}");
}

fn is_error(code: ErrorCode) -> impl Fn(&ServerMessage) -> bool {
    move |m| matches!(m, ServerMessage::Error { code: c, .. } if *c == code)
}

#[tokio::test]
async fn bad_tokens_close_signalling_with_distinct_codes() {
    let (running, url) = start().await;
    let (code, reason) = closed_with(&url, json!({"type": "join"}).to_string()).await;
    assert_eq!(code, close::TOKEN_MISSING, "{reason}");
    let (code, _) = closed_with(&url, json!({"type": "join", "token": ""}).to_string()).await;
    assert_eq!(code, close::TOKEN_MISSING);

    let forged = TokenKey::new(*b"somebody else's key!")
        .unwrap()
        .sign(&claims("room-a", Role::Lead, now() + 600));
    let (code, reason) =
        closed_with(&url, json!({"type": "join", "token": forged}).to_string()).await;
    assert_eq!(code, close::TOKEN_FORGED);
    assert!(reason.contains("signature"), "{reason}");

    let expired =
        TokenKey::new(KEY.as_bytes())
            .unwrap()
            .sign(&claims("room-a", Role::Receiving, now() - 1));
    let (code, reason) =
        closed_with(&url, json!({"type": "join", "token": expired}).to_string()).await;
    assert_eq!(code, close::TOKEN_EXPIRED);
    assert!(reason.contains("expired"), "{reason}");

    let (code, _) = closed_with(
        &url,
        json!({"type": "join", "token": "v1.garbage"}).to_string(),
    )
    .await;
    assert_eq!(code, close::TOKEN_INVALID);
    let (code, _) = closed_with(&url, "{this is not json".into()).await;
    assert_eq!(code, close::JOIN_EXPECTED);
    let (code, _) = closed_with(&url, json!({"type": "raise_hand"}).to_string()).await;
    assert_eq!(code, close::JOIN_EXPECTED);

    // None of these joined anyone.
    let metrics = running.sfu.as_ref().unwrap();
    assert!(duet_sfu::metrics::render(metrics).contains("duet_sfu_participants 0"));
    running.stop().await;
}

#[tokio::test]
async fn malformed_messages_get_an_error_and_leave_the_room_untouched() {
    let (running, url) = start().await;
    let mut teacher = join(&url, "teacher", Role::Lead).await;
    let mut a = join(&url, "room-a", Role::Receiving).await;
    expect(&mut teacher, "room-a joined", |m| {
        matches!(m, ServerMessage::ParticipantJoined { .. })
    })
    .await;

    send(&mut a, "{not json").await;
    expect(&mut a, "bad_message", is_error(ErrorCode::BadMessage)).await;
    a.send(Message::Binary(vec![0u8, 1, 2].into()))
        .await
        .unwrap();
    expect(
        &mut a,
        "bad_message for a binary frame",
        is_error(ErrorCode::BadMessage),
    )
    .await;
    send(&mut a, json!({"type": "no_such_message"}).to_string()).await;
    expect(&mut a, "bad_message", is_error(ErrorCode::BadMessage)).await;
    send(&mut a, "x".repeat(200_000)).await;
    // Oversized frames are either refused with too_large or cut by the frame limit; the room
    // must not notice either way, so reconnect if the socket was dropped.
    let mut a = match next(&mut a).await {
        Ok(ServerMessage::Error {
            code: ErrorCode::TooLarge,
            ..
        }) => a,
        _ => join(&url, "room-a", Role::Receiving).await,
    };
    send(&mut a, json!({"type": "publish_offer", "sdp": "v=0 this is not sdp", "tracks": [{"track_id": "cam", "source": "camera"}]}).to_string()).await;
    expect(&mut a, "bad_sdp", is_error(ErrorCode::BadSdp)).await;
    send(
        &mut a,
        json!({"type": "subscribe_answer", "sdp": "garbage"}).to_string(),
    )
    .await;
    expect(&mut a, "an error", |m| {
        matches!(m, ServerMessage::Error { .. })
    })
    .await;
    send(&mut a, json!({"type": "ice", "target": "publisher", "candidate": {"candidate": "candidate:garbage"}}).to_string()).await;
    expect(&mut a, "an error", |m| {
        matches!(m, ServerMessage::Error { .. })
    })
    .await;
    send(
        &mut a,
        json!({"type": "join", "token": token("room-a", Role::Receiving)}).to_string(),
    )
    .await;
    expect(&mut a, "already_joined", is_error(ErrorCode::AlreadyJoined)).await;

    // The session is alive and the room intact: a raised hand still reaches the teacher.
    send(&mut a, json!({"type": "raise_hand"}).to_string()).await;
    let hands = expect(&mut teacher, "hands", |m| {
        matches!(m, ServerMessage::Hands { .. })
    })
    .await;
    assert_eq!(
        hands,
        ServerMessage::Hands {
            hands: vec!["room-a".into()]
        }
    );
    running.stop().await;
}

#[tokio::test]
async fn a_receiving_token_cannot_share_a_screen_or_act_as_lead() {
    let (running, url) = start().await;
    let mut teacher = join(&url, "teacher", Role::Lead).await;
    let mut a = connect(&url).await;
    // A role in the message is ignored: only the token's role counts.
    send(
        &mut a,
        json!({"type": "join", "token": token("room-a", Role::Receiving), "role": "lead"})
            .to_string(),
    )
    .await;
    match next(&mut a).await {
        Ok(ServerMessage::Joined {
            you,
            publish_sources,
            ..
        }) => {
            assert_eq!(you.role, Role::Receiving);
            assert!(!publish_sources.contains(&duet_sfu_proto::Source::Screen));
        }
        other => panic!("{other:?}"),
    }
    let mut b = join(&url, "room-b", Role::Receiving).await;

    send(&mut a, json!({"type": "publish_offer", "sdp": "v=0", "tracks": [{"track_id": "s", "source": "screen"}]}).to_string()).await;
    expect(&mut a, "forbidden", is_error(ErrorCode::Forbidden)).await;
    send(
        &mut a,
        json!({"type": "spotlight", "participant": "room-a"}).to_string(),
    )
    .await;
    expect(&mut a, "forbidden", is_error(ErrorCode::Forbidden)).await;
    send(
        &mut a,
        json!({"type": "mute_request", "participant": "room-b"}).to_string(),
    )
    .await;
    expect(&mut a, "forbidden", is_error(ErrorCode::Forbidden)).await;
    send(
        &mut a,
        json!({"type": "lower_hand", "participant": "room-b"}).to_string(),
    )
    .await;
    expect(&mut a, "forbidden", is_error(ErrorCode::Forbidden)).await;

    // The lead can do all of it; room-b sees the lead's spotlight and mute request, never room-a's.
    send(
        &mut teacher,
        json!({"type": "spotlight", "participant": "room-b"}).to_string(),
    )
    .await;
    let s = expect(&mut b, "spotlight", |m| {
        matches!(m, ServerMessage::Spotlight { .. })
    })
    .await;
    assert_eq!(
        s,
        ServerMessage::Spotlight {
            participant: Some("room-b".into())
        }
    );
    send(
        &mut teacher,
        json!({"type": "mute_request", "participant": "room-b"}).to_string(),
    )
    .await;
    let m = expect(&mut b, "mute request", |m| {
        matches!(m, ServerMessage::MuteRequested { .. })
    })
    .await;
    assert_eq!(
        m,
        ServerMessage::MuteRequested {
            by: "teacher".into()
        }
    );
    // An observer publishes nothing at all.
    let mut o = join(&url, "observer", Role::Observer).await;
    send(&mut o, json!({"type": "publish_offer", "sdp": "v=0", "tracks": [{"track_id": "c", "source": "camera"}]}).to_string()).await;
    expect(&mut o, "forbidden", is_error(ErrorCode::Forbidden)).await;
    send(&mut o, json!({"type": "raise_hand"}).to_string()).await;
    expect(&mut o, "forbidden", is_error(ErrorCode::Forbidden)).await;
    running.stop().await;
}

#[tokio::test]
async fn a_second_join_of_the_same_identity_replaces_the_first() {
    let (running, url) = start().await;
    let mut first = join(&url, "room-a", Role::Receiving).await;
    let _second = join(&url, "room-a", Role::Receiving).await;
    match next(&mut first).await {
        Err(Some((code, _))) => assert_eq!(code, close::REPLACED),
        other => panic!("the older session must be closed, got {other:?}"),
    }
    running.stop().await;
}

#[tokio::test]
async fn metrics_are_exposed_in_prometheus_text() {
    let (running, url) = start().await;
    let _t = join(&url, "teacher", Role::Lead).await;
    let addr = running.addr;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    for name in [
        "duet_sfu_rooms 1",
        "duet_sfu_participants 1",
        "duet_sfu_packets_forwarded_total",
        "duet_sfu_nacks_total",
        "duet_sfu_plis_total",
    ] {
        assert!(body.contains(name), "{name} missing from\n{body}");
    }
    running.stop().await;
}

#[tokio::test]
async fn joins_and_leaves_are_reported_as_events() {
    let (running, url) = start().await;
    let mut events = running.sfu.as_ref().unwrap().events();
    let t = join(&url, "teacher", Role::Lead).await;
    drop(t);
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("event in time")
            .unwrap();
        seen.push(match e {
            duet_sfu::SfuEvent::RoomOpened { room, .. } => format!("open {room}"),
            duet_sfu::SfuEvent::Joined {
                participant, role, ..
            } => format!("join {participant} {role}"),
            duet_sfu::SfuEvent::Left { participant, .. } => format!("left {participant}"),
            duet_sfu::SfuEvent::RoomClosed { room, .. } => format!("close {room}"),
        });
    }
    assert_eq!(
        seen,
        [
            "open bad-input",
            "join teacher lead",
            "left teacher",
            "close bad-input"
        ]
    );
    running.stop().await;
}
