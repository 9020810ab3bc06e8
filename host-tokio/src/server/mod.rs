//! One Concord node on tokio: the core's [`Replica`](concord_core::server::Replica) driven by a single task (the *node
//! loop*), a storage thread that writes the WAL with group commit, TCP listeners for peers
//! and clients, and the HTTP endpoint (with the WebSocket endpoint for JS clients, `ws.rs`).
//!
//! The node loop owns the replica and is the only code that touches it. Everything else
//! talks to it through one bounded queue of inputs, each task through a handle that
//! sends only its own kind (`inputs.rs`). After every input it drains every
//! `poll_*` queue, as the core's contract demands: storage writes go to the storage
//! thread, which appends each batch it finds waiting, fsyncs once, and hands the last
//! token back (group commit); peer messages go to per-peer sender tasks; client messages
//! to per-connection writer tasks. Nothing the core holds back until a write is durable
//! (votes, acknowledgements) can leave early: the core only releases it after
//! `handle_persisted`.

mod clients;
mod demo;
mod inputs;
mod node_loop;
mod peers;
mod storage;
mod ws;

pub(crate) use inputs::StatusInputs;

use crate::config::{ConfigError, ServerConfig};
use crate::metrics::{Histogram, LATENCY_BUCKETS_S, LOCK_BUCKETS_S};
use crate::wal::{Wal, WalError, WalOptions};
use concord_core::wire::PeerHello;
use concord_core::{GroupId, Instant, NodeId};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::info;

/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Why a node could not start or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// The write-ahead log could not be opened or written.
    Wal(WalError),
    /// A listener could not be bound, or another I/O failure.
    Io(String),
    /// The core refused the stored state or the configuration.
    Core(String),
    /// The group's leader (this id) said the node is no longer a member: it was removed.
    Removed {
        /// This node.
        id: u64,
        /// The leader.
        by: u64,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "configuration: {e}"),
            Self::Wal(e) => write!(f, "write-ahead log: {e}"),
            Self::Io(e) => f.write_str(e),
            Self::Core(e) => write!(f, "{e}"),
            Self::Removed { id, by } => write!(
                f,
                "node {id} was removed from the cluster (its leader, node {by}, says so); it stops. \
                 To bring it back, add it again with `concord member add` and start it with \
                 --join and an empty data directory"
            ),
        }
    }
}

impl std::error::Error for ServerError {}

impl From<ConfigError> for ServerError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl From<WalError> for ServerError {
    fn from(e: WalError) -> Self {
        Self::Wal(e)
    }
}

/// Counters the tasks around the node loop keep.
pub(crate) struct HostCounters {
    pub(crate) fsync: Mutex<Histogram>,
    pub(crate) lock_hold: Mutex<Histogram>,
    pub(crate) lock_wait: Mutex<Histogram>,
    pub(crate) writes_persisted: AtomicU64,
    pub(crate) peer_messages_dropped: AtomicU64,
    pub(crate) client_frames_refused: AtomicU64,
    pub(crate) client_connections: AtomicU64,
    pub(crate) client_slow_closed: AtomicU64,
}

impl Default for HostCounters {
    fn default() -> Self {
        Self {
            fsync: Mutex::new(Histogram::new(LATENCY_BUCKETS_S)),
            lock_hold: Mutex::new(Histogram::new(LOCK_BUCKETS_S)),
            lock_wait: Mutex::new(Histogram::new(LOCK_BUCKETS_S)),
            writes_persisted: AtomicU64::new(0),
            peer_messages_dropped: AtomicU64::new(0),
            client_frames_refused: AtomicU64::new(0),
            client_connections: AtomicU64::new(0),
            client_slow_closed: AtomicU64::new(0),
        }
    }
}

/// A running node.
pub struct NodeHandle {
    /// Where clients connect (the bound address, if port 0 was asked for).
    pub client_addr: SocketAddr,
    /// Where peers connect.
    pub peer_addr: SocketAddr,
    /// The HTTP endpoint.
    pub http_addr: SocketAddr,
    /// This node's id.
    pub id: u64,
    shutdown: Arc<watch::Sender<bool>>,
    /// `None` once the loop's end was reported.
    node_loop: Option<JoinHandle<Result<(), ServerError>>>,
}

impl NodeHandle {
    /// Stops the node: no new inputs, the in-flight storage batch is finished and synced,
    /// connections close. Returns the node loop's result.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        self.finished().await
    }

    /// Resolves when the node has stopped — by itself after a fatal error (every task of
    /// the node is stopped then too), or after [`NodeHandle::shutdown`] — with the loop's
    /// result; `Ok` once that was reported. Cancel-safe: use it in a `select!` beside a
    /// signal.
    pub async fn finished(&mut self) -> Result<(), ServerError> {
        let Some(handle) = self.node_loop.as_mut() else { return Ok(()) };
        let result = match handle.await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Io(format!("node loop failed: {e}"))),
        };
        self.node_loop = None;
        result
    }
}

/// Items of each kind (sessions, locks, semaphores, …) `/status` and the status page
/// list; the totals are always exact, and `/metrics` asks for totals only. Keeps the
/// reports cheap for the node loop however many primitives exist.
pub const STATUS_ITEMS_MAX: usize = 1_000;

/// Idle time before TCP keepalive probes start on a peer or client connection.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Time between keepalive probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Unanswered probes before the kernel declares the connection dead.
const KEEPALIVE_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the kernel drops the connection
/// (Linux `TCP_USER_TIMEOUT`): a peer that vanished without closing is noticed in
/// seconds, and the link is redialled, instead of writes piling up behind it.
#[cfg(any(target_os = "linux", target_os = "android"))]
const UNACKED_MAX: Duration = Duration::from_secs(10);

/// No Nagle delay (Raft and client messages are small and latency-bound), and dead
/// connections detected by keepalive probes. Failures only lose the tuning.
fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    let _ = sock.set_tcp_keepalive(&keepalive);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = sock.set_tcp_user_timeout(Some(UNACKED_MAX));
}

/// The next connection on `listener`, tuned; `None` once the node shuts down. A failed
/// accept (out of file descriptors, say) is logged and retried after a pause.
async fn accept_next(
    listener: &TcpListener,
    shutdown: &mut watch::Receiver<bool>,
    what: &'static str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return None,
            a = listener.accept() => match a {
                Ok((stream, from)) => {
                    tune(&stream);
                    return Some((stream, from));
                }
                Err(e) => {
                    tracing::warn!(error = %e, what, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
}

/// The local monotonic clock as the core's [`Instant`].
#[derive(Clone, Copy)]
struct Clock(std::time::Instant);

impl Clock {
    fn now(self) -> Instant {
        Instant::from_micros(self.0.elapsed().as_micros() as u64)
    }
    fn tokio_at(self, at: Instant) -> tokio::time::Instant {
        let at = tokio::time::Instant::from_std(self.0) + Duration::from_micros(at.as_micros());
        // `Instant::MAX` means "no deadline": a day is as good as forever here.
        at.min(tokio::time::Instant::now() + Duration::from_secs(86_400))
    }
}

/// Starts a node: opens its WAL, binds its listeners, and spawns its tasks on the current
/// tokio runtime.
pub async fn start(cfg: ServerConfig) -> Result<NodeHandle, ServerError> {
    cfg.validate()?;
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| ServerError::Io(format!("cannot create data dir {}: {e}", cfg.data_dir.display())))?;
    let opts = WalOptions { segment_bytes_max: cfg.wal_segment_bytes_max, ..WalOptions::default() };
    let (wal, persisted) = Wal::open(&cfg.data_dir, opts)?;
    let clock = Clock(std::time::Instant::now());
    let mut replica = cfg
        .setup()
        .replica(persisted, cfg.bootstrap(), clock.now(), seed(cfg.id))
        .map_err(|e| ServerError::Core(format!("node {} cannot start: {e}", cfg.id)))?;
    // Lock hand-overs feed the hold and wait time metrics.
    replica.record_lock_events();

    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Io(format!("cannot listen for {what} on {addr}: {e}")))
    };
    let client_listener = bind(cfg.client_addr, "clients").await?;
    let peer_listener = bind(cfg.peer_addr, "peers").await?;
    let http_listener = bind(cfg.http_addr, "HTTP").await?;
    let local = |l: &TcpListener| l.local_addr().map_err(|e| ServerError::Io(e.to_string()));
    let (client_addr, peer_addr, http_addr) =
        (local(&client_listener)?, local(&peer_listener)?, local(&http_listener)?);
    let advertised = cfg.advertise_client_addr.clone().unwrap_or_else(|| client_addr.to_string());
    replica.set_client_addr(NodeId(cfg.id), advertised.clone());
    let web = web_url(&advertised, http_addr);
    replica.set_web_addr(NodeId(cfg.id), web.clone());
    let hello = PeerHello::new(GroupId(cfg.group), NodeId(cfg.id), &cfg.limits, Some(advertised))
        .with_web_addr(Some(web));

    let (inputs, input_rx) = inputs::queue();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let shutdown = Arc::new(shutdown);
    let counters = Arc::new(HostCounters::default());
    let storage_inputs = inputs::StorageInputs(inputs.clone());
    let (storage_tx, storage_thread) = storage::spawn(wal, storage_inputs, counters.clone())
        .map_err(|e| ServerError::Io(format!("cannot start the storage thread: {e}")))?;

    let mut peers = BTreeMap::new();
    for (&id, &addr) in cfg.peers.iter().filter(|(id, _)| **id != cfg.id) {
        let (tx, rx) = mpsc::channel(peers::PEER_QUEUE_MAX);
        peers.insert(NodeId(id), tx);
        let dial = peers::Dial {
            hello: hello.clone(),
            id,
            addr,
            frame_bytes_max: cfg.frame_bytes_max,
            inputs: inputs::PeerInputs(inputs.clone()),
        };
        tokio::spawn(peers::dial(dial, rx, shutdown_rx.clone()));
    }
    let peer_inputs = inputs::PeerInputs(inputs.clone());
    tokio::spawn(peers::accept(peer_listener, peer_inputs, cfg.clone(), shutdown_rx.clone()));
    tokio::spawn(clients::accept(
        client_listener,
        inputs::ClientInputs(inputs.clone()),
        cfg.clone(),
        counters.clone(),
        shutdown_rx.clone(),
    ));
    let routes =
        ws::router(inputs::ClientInputs(inputs.clone()), cfg.clone(), counters.clone(), shutdown_rx.clone())
            .merge(demo::router());
    tokio::spawn(crate::http::serve(http_listener, StatusInputs(inputs), routes, shutdown_rx.clone()));

    info!(id = cfg.id, %client_addr, %peer_addr, %http_addr, data_dir = %cfg.data_dir.display(), "node started");
    let node_loop = node_loop::NodeLoop {
        replica,
        clock,
        peers,
        conns: BTreeMap::new(),
        storage: Some(storage_tx),
        storage_thread: Some(storage_thread),
        counters,
        cfg: cfg.clone(),
        shutdown: shutdown.clone(),
        standing: node_loop::Standing::default(),
        conn_addrs: BTreeMap::new(),
        last_on_demand: None,
    };
    let node_loop = tokio::spawn(node_loop.run(input_rx, shutdown_rx));
    Ok(NodeHandle { client_addr, peer_addr, http_addr, id: cfg.id, shutdown, node_loop: Some(node_loop) })
}

/// The core's randomness (election jitter) is seeded here, from the host.
fn seed(id: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ id.rotate_left(32) ^ u64::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_are_tuned_for_latency_and_dead_peer_detection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        tune(&stream);
        assert!(stream.nodelay().unwrap());
        let sock = socket2::SockRef::from(&stream);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
        #[cfg(target_os = "linux")]
        assert_eq!(sock.tcp_user_timeout().unwrap(), Some(UNACKED_MAX));
    }
}

/// The WebSocket URL this node advertises: the host of its advertised client address
/// (what clients already reach it by) with the HTTP listener's port and the `/ws` path.
fn web_url(advertised_client: &str, http: SocketAddr) -> String {
    let host = match advertised_client.rsplit_once(':') {
        Some((host, _)) if !host.is_empty() => host.to_string(),
        _ if http.is_ipv6() => format!("[{}]", http.ip()),
        _ => http.ip().to_string(),
    };
    format!("ws://{host}:{}{}", http.port(), ws::WS_PATH)
}

#[cfg(test)]
mod web_url_tests {
    use super::web_url;

    #[test]
    fn the_websocket_url_takes_the_advertised_host_and_the_http_port() {
        let http = "0.0.0.0:7201".parse().unwrap();
        assert_eq!(web_url("127.0.0.1:7001", http), "ws://127.0.0.1:7201/ws");
        assert_eq!(web_url("db1.example:7001", http), "ws://db1.example:7201/ws");
        assert_eq!(web_url("[::1]:7001", http), "ws://[::1]:7201/ws");
        assert_eq!(web_url("7001", "127.0.0.2:7201".parse().unwrap()), "ws://127.0.0.2:7201/ws");
        assert_eq!(web_url("7001", "[::1]:7201".parse().unwrap()), "ws://[::1]:7201/ws");
    }
}
