//! Peer transport: dialling each configured peer (hello first, reconnect with backoff),
//! accepting peers (hello checked by the core), and forwarding Raft messages both ways.
//! These tasks hold only the handle for peer inputs.

use super::inputs::PeerInputs;
use super::{accept_next, tune};
use crate::config::ServerConfig;
use crate::frame::{write_frame, FrameReader};
use concord_core::wire::{Envelope, HelloError, PeerHello};
use concord_core::{GroupId, Message, NodeId};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// Messages queued for one peer before new ones are dropped (Raft retransmits).
pub(super) const PEER_QUEUE_MAX: usize = 4_096;
/// How long an accepted peer connection may take to say who it is.
const PEER_HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connecting to a peer gives up after this long (and retries after the backoff).
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A peer connection that lasted this long resets the reconnect backoff.
const PEER_STABLE: Duration = Duration::from_secs(5);
/// A peer that cannot be connected to for this long is reported (once) with a warning;
/// when it connects again, that is reported too.
const PEER_WARN_AFTER: Duration = Duration::from_secs(5);
/// Reconnect backoff to a peer: first and largest delay.
const PEER_BACKOFF_MIN: Duration = Duration::from_millis(50);
const PEER_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Where and how to dial one peer.
pub(super) struct Dial {
    pub(super) hello: PeerHello,
    pub(super) id: u64,
    pub(super) addr: SocketAddr,
    pub(super) frame_bytes_max: usize,
    pub(super) inputs: PeerInputs,
}

/// Keeps a connection to one peer: sends what the node loop queues for it, and takes in
/// what the peer answers on the same connection (a peer that does not know this node's
/// address answers that way).
pub(super) async fn dial(dial: Dial, mut rx: mpsc::Receiver<Message>, mut shutdown: watch::Receiver<bool>) {
    let Dial { hello, id, addr, frame_bytes_max, inputs } = dial;
    let mut backoff = PEER_BACKOFF_MIN;
    let mut buf = Vec::new();
    // Since when the peer could not be connected to, and whether that was reported.
    let mut down_since: Option<std::time::Instant> = None;
    let mut warned = false;
    loop {
        let connected = async {
            let mut s = tokio::time::timeout(PEER_CONNECT_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
            let mut hbuf = Vec::new();
            write_frame(&mut s, &Envelope::PeerHello(hello.clone()), &mut hbuf, frame_bytes_max)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok::<_, std::io::Error>(s)
        };
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            s = connected => s,
        };
        let stream = match stream {
            Ok(s) => {
                tune(&s);
                debug!(peer = id, %addr, "connected to peer");
                if std::mem::take(&mut warned) {
                    info!(peer = id, %addr, "peer reachable again");
                }
                down_since = None;
                s
            }
            Err(error) => {
                debug!(peer = id, %addr, %error, "peer unreachable; retrying");
                let since = *down_since.get_or_insert_with(std::time::Instant::now);
                if !warned && since.elapsed() >= PEER_WARN_AFTER {
                    warn!(peer = id, %addr, %error, "peer unreachable for {} s; still retrying", PEER_WARN_AFTER.as_secs());
                    warned = true;
                }
                // Messages queued meanwhile are stale by the time we connect: Raft resends.
                while rx.try_recv().is_ok() {}
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(PEER_BACKOFF_MAX);
                continue;
            }
        };
        let up_since = std::time::Instant::now();
        let (mut r, mut w) = stream.into_split();
        let reader = async {
            let mut frames = FrameReader::new(&mut r, frame_bytes_max);
            loop {
                match frames.next().await {
                    Ok(Some(Envelope::Raft(m))) if m.from.0 == id => {
                        if !inputs.message(m).await {
                            return;
                        }
                    }
                    // The peer answers on its own connection when it knows our address,
                    // and then closes its side of this one: keep sending on ours.
                    Ok(None) => std::future::pending::<()>().await,
                    Ok(Some(_)) | Err(_) => {
                        warn!(peer = id, %addr, "bad frame from a peer; reconnecting");
                        return;
                    }
                }
            }
        };
        let writer = forward_to_peer(&mut w, &mut rx, &mut buf, frame_bytes_max);
        tokio::select! {
            _ = shutdown.changed() => return,
            () = reader => {}
            closed = writer => if closed { return },
        }
        // A peer that accepts and then drops us (another group, a node stopping) is
        // retried with the same backoff as one that refuses.
        if up_since.elapsed() >= PEER_STABLE {
            backoff = PEER_BACKOFF_MIN;
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(PEER_BACKOFF_MAX);
    }
}

/// Writes what the node loop queues for a peer: `true` when the queue closed, `false`
/// when a write failed (the connection is gone).
async fn forward_to_peer(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    rx: &mut mpsc::Receiver<Message>,
    buf: &mut Vec<u8>,
    frame_bytes_max: usize,
) -> bool {
    while let Some(m) = rx.recv().await {
        if let Err(e) = write_frame(w, &Envelope::Raft(m), buf, frame_bytes_max).await {
            debug!(error = %e, "peer connection lost");
            return false;
        }
    }
    true
}

pub(super) async fn accept(
    listener: TcpListener,
    inputs: PeerInputs,
    cfg: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    while let Some((stream, from)) = accept_next(&listener, &mut shutdown, "peer").await {
        tokio::spawn(serve_peer(stream, from, inputs.clone(), cfg.clone(), shutdown.clone()));
    }
}

/// An inbound peer connection: after the hello, Raft messages in; the node loop may
/// answer on it when it has no address of its own for that peer.
async fn serve_peer(
    stream: TcpStream,
    from: SocketAddr,
    inputs: PeerInputs,
    cfg: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let frame_bytes_max = cfg.frame_bytes_max;
    let (r, mut w) = stream.into_split();
    let mut frames = FrameReader::new(r, frame_bytes_max);
    let first = tokio::time::timeout(PEER_HELLO_TIMEOUT, frames.next()).await;
    let checked = match first {
        Ok(Ok(Some(Envelope::PeerHello(h)))) => {
            h.check(GroupId(cfg.group), NodeId(cfg.id), &cfg.limits).map(|()| h)
        }
        _ => Err(HelloError::NotAHello),
    };
    let hello = match checked {
        Ok(h) => h,
        Err(error) => {
            warn!(%from, %error, "peer refused; closing that connection");
            return;
        }
    };
    let peer = hello.node;
    let (tx, mut rx) = mpsc::channel::<Message>(PEER_QUEUE_MAX);
    inputs.inbound(&hello, tx).await;
    let mut sd = shutdown.clone();
    tokio::spawn(async move {
        let mut wbuf = Vec::new();
        tokio::select! {
            _ = sd.changed() => {}
            _ = forward_to_peer(&mut w, &mut rx, &mut wbuf, frame_bytes_max) => {}
        }
    });
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => return,
            f = frames.next() => f,
        };
        match frame {
            Ok(Some(Envelope::Raft(m))) if m.from == peer => {
                if !inputs.message(m).await {
                    return;
                }
            }
            Ok(Some(_)) => {
                warn!(%from, peer = peer.0, "not a Raft message from that peer; closing the connection");
                return;
            }
            Ok(None) => return,
            Err(e) => {
                warn!(%from, error = %e, "bad frame from a peer; closing that connection");
                return;
            }
        }
    }
}
