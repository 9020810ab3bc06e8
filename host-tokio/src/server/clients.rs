//! Client connections: accepting them (bounded in number), frames in as requests, the
//! node loop's answers and pushes out. These tasks hold only the handle for client
//! inputs.

use super::inputs::ClientInputs;
use super::{accept_next, HostCounters};
use crate::config::ServerConfig;
use crate::frame::{write_frame, FrameReader};
use concord_core::server::ConnId;
use concord_core::wire::{Envelope, ServerMessage};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

/// A write to a client that takes longer than this closes the connection.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn accept(
    listener: TcpListener,
    inputs: ClientInputs,
    cfg: ServerConfig,
    counters: Arc<HostCounters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let next = AtomicU64::new(1);
    while let Some((stream, from)) = accept_next(&listener, &mut shutdown, "client").await {
        if counters.client_connections.load(Ordering::Relaxed) >= cfg.client_connections_max as u64 {
            warn!(%from, limit = cfg.client_connections_max, "too many client connections; refusing one");
            continue;
        }
        let conn = ConnId(next.fetch_add(1, Ordering::Relaxed));
        counters.client_connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve_client(
            stream,
            from,
            conn,
            inputs.clone(),
            cfg.clone(),
            counters.clone(),
            shutdown.clone(),
        ));
    }
}

/// One client connection: frames in become requests; the node loop's messages go out.
/// A malformed or oversize frame closes this connection only.
async fn serve_client(
    stream: TcpStream,
    from: SocketAddr,
    conn: ConnId,
    inputs: ClientInputs,
    cfg: ServerConfig,
    counters: Arc<HostCounters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut r, mut w) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<ServerMessage>(cfg.client_queue_max);
    inputs.open(conn, from, tx).await;
    let frame_bytes_max = cfg.frame_bytes_max;
    // Ends when the node loop lets go of the connection (a client too slow to read its
    // answers), or a write fails or stalls.
    let writer = async move {
        let mut buf = Vec::new();
        while let Some(m) = rx.recv().await {
            // The replica already turned an oversize answer into `AnswerTooLarge`.
            let envelope = Envelope::Response(m);
            let write = write_frame(&mut w, &envelope, &mut buf, frame_bytes_max);
            match tokio::time::timeout(CLIENT_WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(%from, error = %e, "writing to a client failed");
                    return;
                }
                Err(_) => {
                    warn!(%from, "a client stopped reading; closing its connection");
                    return;
                }
            }
        }
    };
    let reader = async {
        let mut frames = FrameReader::new(&mut r, frame_bytes_max);
        loop {
            match frames.next().await {
                Ok(Some(Envelope::Request(req))) => {
                    if !inputs.request(conn, req).await {
                        return;
                    }
                }
                Ok(Some(_)) => {
                    counters.client_frames_refused.fetch_add(1, Ordering::Relaxed);
                    warn!(%from, "not a client request; closing that connection");
                    return;
                }
                Ok(None) => return,
                Err(e) => {
                    counters.client_frames_refused.fetch_add(1, Ordering::Relaxed);
                    warn!(%from, error = %e, "bad frame from a client; closing that connection");
                    return;
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
