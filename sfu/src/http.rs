//! The SFU's HTTP surface: `GET /sfu/ws` (signalling) and `GET /metrics` (Prometheus).
//!
//! A connection must present a join token in its first message within [`JOIN_DEADLINE`]; a
//! missing, malformed, forged or expired token closes the socket with a code from
//! [`duet_sfu_proto::signal::close`] and a reason a person can read.

use crate::session::{Outgoing, Session};
use crate::sfu::Sfu;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use duet_sfu_proto::signal::{ClientMessage, MAX_MESSAGE_BYTES, close};
use duet_sfu_proto::{JoinClaims, TokenError};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::Instrument;

/// How long a new connection has to send `join`.
pub const JOIN_DEADLINE: Duration = Duration::from_secs(10);

/// The SFU's routes.
pub fn router(sfu: Arc<Sfu>) -> Router {
    Router::new()
        .route("/sfu/ws", get(ws))
        .route("/metrics", get(metrics))
        .with_state(sfu)
}

async fn ws(State(sfu): State<Arc<Sfu>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES * 2)
        .on_upgrade(move |socket| serve(sfu, socket))
        .into_response()
}

async fn metrics(State(sfu): State<Arc<Sfu>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::render(&sfu),
    )
}

fn close_msg(code: u16, reason: impl Into<String>) -> Message {
    let mut reason: String = reason.into();
    // A close reason must fit in a control frame (123 bytes).
    while reason.len() > 120 {
        reason.pop();
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Waits for `join` and verifies its token; on failure, the close frame to send.
async fn authenticate(sfu: &Sfu, socket: &mut WebSocket) -> Result<JoinClaims, Message> {
    let first = match tokio::time::timeout(JOIN_DEADLINE, socket.next()).await {
        Err(_) => return Err(close_msg(close::JOIN_TIMEOUT, "no join message in time")),
        Ok(None) | Ok(Some(Err(_))) => {
            return Err(close_msg(
                close::JOIN_EXPECTED,
                "connection ended before join",
            ));
        }
        Ok(Some(Ok(m))) => m,
    };
    let Message::Text(text) = first else {
        return Err(close_msg(
            close::JOIN_EXPECTED,
            "the first message must be a JSON join",
        ));
    };
    let token = match serde_json::from_str::<ClientMessage>(&text) {
        Ok(ClientMessage::Join { token }) => token,
        Ok(_) => {
            return Err(close_msg(
                close::JOIN_EXPECTED,
                "the first message must be join",
            ));
        }
        Err(_) => {
            // A join with the token missing entirely is told apart from garbage.
            let v: Option<serde_json::Value> = serde_json::from_str(&text).ok();
            if v.as_ref()
                .and_then(|v| v.get("type"))
                .and_then(|t| t.as_str())
                == Some("join")
            {
                return Err(close_msg(close::TOKEN_MISSING, "join token missing"));
            }
            return Err(close_msg(
                close::JOIN_EXPECTED,
                "the first message must be a JSON join",
            ));
        }
    };
    sfu.key().verify(&token, now_unix()).map_err(|e| {
        let code = match e {
            TokenError::Missing => close::TOKEN_MISSING,
            TokenError::BadSignature => close::TOKEN_FORGED,
            TokenError::Expired { .. } => close::TOKEN_EXPIRED,
            _ => close::TOKEN_INVALID,
        };
        tracing::info!(error = %e, "join refused");
        close_msg(code, e.to_string())
    })
}

async fn serve(sfu: Arc<Sfu>, mut socket: WebSocket) {
    let claims = match authenticate(&sfu, &mut socket).await {
        Ok(c) => c,
        Err(close) => {
            let _ = socket.send(close).await;
            return;
        }
    };
    sfu.sessions.fetch_add(1, Ordering::Relaxed);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let (session, mut cmd_rx, mut pc_rx) = Session::join(sfu.clone(), claims, out_tx);
    let span = session.span().clone();
    let (mut ws_tx, mut ws_rx) = socket.split();
    // Writer: everything to the client goes through one queue, so ordering holds.
    let writer = tokio::spawn(
        async move {
            while let Some(o) = out_rx.recv().await {
                let (msg, last) = match o {
                    Outgoing::Msg(m) => match serde_json::to_string(&m) {
                        Ok(t) => (Message::Text(t.into()), false),
                        Err(_) => continue,
                    },
                    Outgoing::Close(code, reason) => (close_msg(code, reason), true),
                };
                if ws_tx.send(msg).await.is_err() || last {
                    break;
                }
            }
            let _ = ws_tx.close().await;
        }
        .instrument(span.clone()),
    );
    let mut session = session;
    async {
        session.start().await;
        loop {
            tokio::select! {
                frame = ws_rx.next() => match frame {
                    Some(Ok(Message::Text(t))) => session.on_client_text(&t).await,
                    Some(Ok(Message::Binary(_))) => session.on_client_binary(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                Some(cmd) = cmd_rx.recv() => {
                    if !session.on_cmd(cmd).await {
                        break;
                    }
                }
                Some(ev) = pc_rx.recv() => session.on_pc_event(ev).await,
            }
            if writer.is_finished() {
                break;
            }
        }
        session.leave().await;
    }
    .instrument(span)
    .await;
    sfu.sessions.fetch_sub(1, Ordering::Relaxed);
    // Let the writer flush a close frame, then stop it.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}
