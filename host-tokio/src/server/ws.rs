//! The WebSocket endpoint for JavaScript callers: `GET /ws` on the node's HTTP listener
//! upgrades to a WebSocket that carries exactly the frames of the TCP client protocol
//! (length-prefixed postcard envelopes), in binary messages. A message may hold any
//! number of whole or partial frames; the server sends one frame per message. The
//! connection is a client connection of the node like any TCP one: the same limits
//! (`frame_bytes_max`, `client_connections_max`, `client_queue_max`), and a malformed or
//! oversize frame, or a text message, closes this connection only.

use super::inputs::ClientInputs;
use super::HostCounters;
use crate::config::ServerConfig;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use concord_core::server::ConnId;
use concord_core::wire::{encode_frame, Envelope, ServerMessage, StreamDecoder};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

/// The path of the endpoint.
pub(super) const WS_PATH: &str = "/ws";

/// WebSocket connections take ids from here up, so that they never meet the TCP
/// listener's, which count up from 1.
const WS_CONN_BASE: u64 = 1 << 62;

/// A send to a client that takes longer than this closes the connection.
const WS_SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Ws {
    inputs: ClientInputs,
    cfg: ServerConfig,
    counters: Arc<HostCounters>,
    next: Arc<AtomicU64>,
    shutdown: watch::Receiver<bool>,
}

/// The routes of the endpoint, to merge into the node's HTTP router.
pub(super) fn router(
    inputs: ClientInputs,
    cfg: ServerConfig,
    counters: Arc<HostCounters>,
    shutdown: watch::Receiver<bool>,
) -> Router {
    let ws = Ws { inputs, cfg, counters, next: Arc::new(AtomicU64::new(WS_CONN_BASE)), shutdown };
    Router::new().route(WS_PATH, get(upgrade)).with_state(ws)
}

async fn upgrade(
    State(ws): State<Ws>,
    axum::extract::ConnectInfo(from): axum::extract::ConnectInfo<std::net::SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if ws.counters.client_connections.load(Ordering::Relaxed) >= ws.cfg.client_connections_max as u64 {
        warn!(limit = ws.cfg.client_connections_max, "too many client connections; refusing a WebSocket");
        return (StatusCode::SERVICE_UNAVAILABLE, "too many client connections").into_response();
    }
    // A message holds at most one largest frame and its length prefix (or the rest of
    // one and the start of the next, which is no larger).
    let message_bytes_max = ws.cfg.frame_bytes_max.saturating_add(8);
    let conn = ConnId(ws.next.fetch_add(1, Ordering::Relaxed));
    ws.counters.client_connections.fetch_add(1, Ordering::Relaxed);
    upgrade
        .max_message_size(message_bytes_max)
        .max_frame_size(message_bytes_max)
        .on_failed_upgrade({
            let counters = ws.counters.clone();
            move |e| {
                counters.client_connections.fetch_sub(1, Ordering::Relaxed);
                debug!(error = %e, "a WebSocket upgrade failed");
            }
        })
        .on_upgrade(move |socket| serve(socket, conn, from, ws))
}

/// One WebSocket client: frames in become requests; the node loop's messages go out.
async fn serve(socket: WebSocket, conn: ConnId, from: std::net::SocketAddr, ws: Ws) {
    let Ws { inputs, cfg, counters, mut shutdown, .. } = ws;
    let (tx, mut rx) = mpsc::channel::<ServerMessage>(cfg.client_queue_max);
    inputs.open(conn, from, tx).await;
    let frame_bytes_max = cfg.frame_bytes_max;
    let (mut sink, mut stream) = futures_util::StreamExt::split(socket);
    let writer = async move {
        while let Some(m) = rx.recv().await {
            // Each message owns its bytes: the socket keeps them until they are sent.
            let mut buf = Vec::new();
            // The replica already turned an oversize answer into `AnswerTooLarge`.
            if let Err(e) = encode_frame(&Envelope::Response(m), frame_bytes_max, &mut buf) {
                warn!(error = %e, "an answer could not be framed; closing the WebSocket");
                return;
            }
            let send = futures_util::SinkExt::send(&mut sink, Message::Binary(buf.into()));
            match tokio::time::timeout(WS_SEND_TIMEOUT, send).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(error = %e, "writing to a WebSocket client failed");
                    return;
                }
                Err(_) => {
                    warn!("a WebSocket client stopped reading; closing its connection");
                    return;
                }
            }
        }
    };
    let reader = async {
        let mut frames = StreamDecoder::new(frame_bytes_max);
        while let Some(message) = futures_util::StreamExt::next(&mut stream).await {
            let bytes = match message {
                Ok(Message::Binary(b)) => b,
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(_)) => return,
                Ok(Message::Text(_)) => {
                    counters.client_frames_refused.fetch_add(1, Ordering::Relaxed);
                    warn!("a text message on the client WebSocket; closing it");
                    return;
                }
                Err(e) => {
                    counters.client_frames_refused.fetch_add(1, Ordering::Relaxed);
                    debug!(error = %e, "WebSocket read failed");
                    return;
                }
            };
            frames.push(&bytes);
            loop {
                match frames.next_frame() {
                    Ok(Some(Envelope::Request(req))) => {
                        if !inputs.request(conn, req).await {
                            return;
                        }
                    }
                    Ok(Some(_)) => {
                        counters.client_frames_refused.fetch_add(1, Ordering::Relaxed);
                        warn!("not a client request on the WebSocket; closing it");
                        return;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        counters.client_frames_refused.fetch_add(1, Ordering::Relaxed);
                        warn!(error = %e, "bad frame on the client WebSocket; closing it");
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = shutdown.changed() => {}
        () = reader => {}
        () = writer => {}
    }
    inputs.closed(conn).await;
    counters.client_connections.fetch_sub(1, Ordering::Relaxed);
}
