//! One Concord node on tokio: the core's [`Replica`] driven by a single task (the *node
//! loop*), a storage thread that writes the WAL with group commit, TCP listeners for peers
//! and clients, and the HTTP endpoint.
//!
//! The node loop owns the replica and is the only code that touches it. Everything else
//! talks to it through one channel of `Input`s. After every input it drains every
//! `poll_*` queue, as the core's contract demands: storage writes go to the storage
//! thread, which appends each batch it finds waiting, fsyncs once, and hands the last
//! token back (group commit); peer messages go to per-peer sender tasks; client messages
//! to per-connection writer tasks. Nothing the core holds back until a write is durable
//! (votes, acknowledgements) can leave early: the core only releases it after
//! `handle_persisted`.

use crate::config::{ConfigError, ServerConfig};
use crate::frame::{write_frame, FrameReader};
use crate::metrics::{Histogram, StatusReport, LATENCY_BUCKETS_S, LOCK_BUCKETS_S};
use crate::wal::{Wal, WalError, WalOptions};
use concord_core::machine::lock::LockEvent;
use concord_core::raft::WriteToken;
use concord_core::server::{ConnId, Replica};
use concord_core::wire::{ClientRequest, Envelope, HelloError, PeerHello, ServerMessage};
use concord_core::{Event, GroupId, Instant, Message, NodeId, StorageWrite};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

/// Messages queued for one peer before new ones are dropped (Raft retransmits).
const PEER_QUEUE_MAX: usize = 4_096;
/// Inputs the node loop takes before it drains its outputs.
const INPUT_BATCH_MAX: usize = 256;
/// How long an accepted peer connection may take to say who it is.
const PEER_HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A write to a client that takes longer than this closes the connection.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting to a peer gives up after this long (and retries after the backoff).
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A peer connection that lasted this long resets the reconnect backoff.
const PEER_STABLE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Reconnect backoff to a peer: first and largest delay.
const PEER_BACKOFF_MIN: Duration = Duration::from_millis(50);
const PEER_BACKOFF_MAX: Duration = Duration::from_secs(2);

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
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "configuration: {e}"),
            Self::Wal(e) => write!(f, "write-ahead log: {e}"),
            Self::Io(e) => f.write_str(e),
            Self::Core(e) => write!(f, "{e}"),
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

/// What reaches the node loop.
pub(crate) enum Input {
    Peer(Message),
    /// An inbound peer connection identified itself (with its client address, if any):
    /// reply on it if no address is known.
    PeerInbound(NodeId, Option<String>, mpsc::Sender<Message>),
    ClientOpen(ConnId, mpsc::Sender<ServerMessage>),
    Client(ConnId, ClientRequest),
    ClientClosed(ConnId),
    Persisted(WriteToken),
    StorageFailed(String),
    /// A status report listing at most this many items (sessions, locks, …) per kind;
    /// 0 for totals only (what `/metrics` needs).
    Status(usize, oneshot::Sender<StatusReport>),
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
    let hello = PeerHello::new(GroupId(cfg.group), NodeId(cfg.id), &cfg.limits, Some(advertised));

    let (inputs, input_rx) = mpsc::unbounded_channel();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let shutdown = Arc::new(shutdown);
    let counters = Arc::new(HostCounters::default());
    let (storage_tx, storage_thread) = spawn_storage(wal, inputs.clone(), counters.clone())
        .map_err(|e| ServerError::Io(format!("cannot start the storage thread: {e}")))?;

    let mut peers = BTreeMap::new();
    for (&id, &addr) in cfg.peers.iter().filter(|(id, _)| **id != cfg.id) {
        let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
        peers.insert(NodeId(id), tx);
        let dial = Dial {
            hello: hello.clone(),
            id,
            addr,
            frame_bytes_max: cfg.frame_bytes_max,
            inputs: inputs.clone(),
        };
        tokio::spawn(dial_peer(dial, rx, shutdown_rx.clone()));
    }
    tokio::spawn(accept_peers(peer_listener, inputs.clone(), cfg.clone(), shutdown_rx.clone()));
    tokio::spawn(accept_clients(
        client_listener,
        inputs.clone(),
        cfg.clone(),
        counters.clone(),
        shutdown_rx.clone(),
    ));
    tokio::spawn(crate::http::serve(
        http_listener,
        inputs.clone(),
        cfg.data_dir.clone(),
        shutdown_rx.clone(),
    ));

    info!(id = cfg.id, %client_addr, %peer_addr, %http_addr, data_dir = %cfg.data_dir.display(), "node started");
    let node_loop = NodeLoop {
        replica,
        clock,
        peers,
        conns: BTreeMap::new(),
        storage: Some(storage_tx),
        storage_thread: Some(storage_thread),
        counters,
        cfg: cfg.clone(),
        unsynced: 0,
        shutdown: shutdown.clone(),
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

/// The storage thread: appends every write waiting, fsyncs once, confirms the last token.
fn spawn_storage(
    mut wal: Wal,
    inputs: mpsc::UnboundedSender<Input>,
    counters: Arc<HostCounters>,
) -> std::io::Result<(std::sync::mpsc::Sender<StorageWrite>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel::<StorageWrite>();
    let thread = std::thread::Builder::new().name("concord-wal".into()).spawn(move || {
        // Ends when the node loop drops its sender, after the last batch is synced.
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let result = batch.iter().try_for_each(|w| wal.append(w)).and_then(|()| {
                let started = std::time::Instant::now();
                let r = wal.sync();
                if let Ok(mut h) = counters.fsync.lock() {
                    h.observe(started.elapsed().as_secs_f64());
                }
                r
            });
            match result {
                Ok(()) => {
                    counters.writes_persisted.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    let last = batch.last().map(|w| w.token);
                    if let Some(token) = last {
                        let _ = inputs.send(Input::Persisted(token));
                    }
                }
                Err(e) => {
                    // Nothing more can be made durable: the node must stop.
                    let _ = inputs.send(Input::StorageFailed(e.to_string()));
                    return;
                }
            }
        }
    })?;
    Ok((tx, thread))
}

struct NodeLoop {
    replica: Replica,
    clock: Clock,
    peers: BTreeMap<NodeId, mpsc::Sender<Message>>,
    conns: BTreeMap<ConnId, mpsc::Sender<ServerMessage>>,
    storage: Option<std::sync::mpsc::Sender<StorageWrite>>,
    storage_thread: Option<std::thread::JoinHandle<()>>,
    counters: Arc<HostCounters>,
    cfg: ServerConfig,
    /// Writes handed to the storage thread and not yet confirmed.
    unsynced: u64,
    /// Stops every task of the node when the loop ends, for whatever reason.
    shutdown: Arc<watch::Sender<bool>>,
}

impl NodeLoop {
    async fn run(
        mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ServerError> {
        let result = loop {
            let deadline = self.clock.tokio_at(self.replica.poll_timeout());
            tokio::select! {
                biased;
                _ = shutdown.changed() => break Ok(()),
                input = inputs.recv() => {
                    let Some(input) = input else { break Ok(()) };
                    if let Err(e) = self.handle(input) {
                        break Err(e);
                    }
                    // Take what else is waiting before draining, so one drain serves many.
                    for _ in 0..INPUT_BATCH_MAX {
                        let Ok(input) = inputs.try_recv() else { break };
                        if let Err(e) = self.handle(input) {
                            return self.stop(Err(e));
                        }
                    }
                    // Timers are due even while inputs keep coming (heartbeats, elections).
                    let now = self.clock.now();
                    if self.replica.poll_timeout() <= now {
                        self.replica.handle_timeout(now);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.clock.now();
                    self.replica.handle_timeout(now);
                }
            }
            self.drain();
        };
        self.stop(result)
    }

    /// Graceful stop: the storage thread finishes its batch and syncs before it exits.
    fn stop(mut self, result: Result<(), ServerError>) -> Result<(), ServerError> {
        self.storage.take();
        if let Some(t) = self.storage_thread.take() {
            let _ = t.join();
        }
        // Listeners, peer links and the HTTP endpoint go with the loop: a node that cannot
        // write its log must not linger half alive.
        let _ = self.shutdown.send(true);
        info!(id = self.cfg.id, unsynced = self.unsynced, "node stopped");
        result
    }

    fn handle(&mut self, input: Input) -> Result<(), ServerError> {
        let now = self.clock.now();
        match input {
            Input::Peer(m) => {
                if let Err(e) = self.replica.handle_message(now, m) {
                    debug!(error = %e, "peer message refused");
                }
            }
            Input::PeerInbound(id, client_addr, tx) => {
                if let Some(addr) = client_addr {
                    self.replica.set_client_addr(id, addr);
                }
                if !self.cfg.peers.contains_key(&id.0) {
                    self.peers.insert(id, tx);
                }
            }
            Input::ClientOpen(conn, tx) => {
                self.conns.insert(conn, tx);
            }
            Input::Client(conn, req) => self.replica.handle_client(now, conn, req),
            Input::ClientClosed(conn) => {
                self.conns.remove(&conn);
                self.replica.handle_disconnect(conn);
            }
            Input::Persisted(token) => {
                self.unsynced = 0;
                self.replica
                    .handle_persisted(token)
                    .map_err(|e| ServerError::Core(format!("storage confirmation refused: {e}")))?;
            }
            Input::StorageFailed(e) => {
                error!(error = %e, "write-ahead log failed; stopping");
                return Err(ServerError::Io(format!("write-ahead log failed: {e}")));
            }
            Input::Status(items, reply) => {
                let _ = reply.send(self.report(items));
            }
        }
        Ok(())
    }

    fn drain(&mut self) {
        while let Some(w) = self.replica.poll_storage() {
            self.unsynced += 1;
            if let Some(s) = &self.storage {
                let _ = s.send(w);
            }
        }
        while let Some(m) = self.replica.poll_transmit() {
            match self.peers.get(&m.to) {
                Some(tx) => {
                    if tx.try_send(m).is_err() {
                        self.counters.peer_messages_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => debug!(to = m.to.0, "no address for peer; message dropped"),
            }
        }
        while let Some((conn, msg)) = self.replica.poll_client() {
            let Some(tx) = self.conns.get(&conn) else { continue };
            if tx.try_send(msg).is_err() {
                // A client that does not read its answers is cut off rather than
                // buffered without bound.
                warn!(conn = conn.0, "client too slow or gone; closing its connection");
                self.counters.client_slow_closed.fetch_add(1, Ordering::Relaxed);
                self.conns.remove(&conn);
                self.replica.handle_disconnect(conn);
            }
        }
        while let Some(e) = self.replica.poll_lock_event() {
            let (h, us) = match e {
                LockEvent::Granted { waited_us, .. } => (&self.counters.lock_wait, waited_us),
                LockEvent::Released { held_us, .. } => (&self.counters.lock_hold, held_us),
            };
            if let Ok(mut h) = h.lock() {
                h.observe(us as f64 / 1e6);
            }
        }
        while let Some(e) = self.replica.poll_event() {
            match e {
                Event::StateChanged { role, term, leader } => {
                    info!(id = self.cfg.id, ?role, term, leader = leader.map(|l| l.0), "raft state changed");
                }
                Event::SnapshotInstalled { index } => info!(id = self.cfg.id, index, "snapshot installed"),
                Event::Machine(()) => {}
            }
        }
    }

    fn report(&self, items: usize) -> StatusReport {
        StatusReport::new(&self.cfg, self.replica.report(items), &self.counters)
    }
}

/// Where and how to dial one peer.
struct Dial {
    hello: PeerHello,
    id: u64,
    addr: SocketAddr,
    frame_bytes_max: usize,
    inputs: mpsc::UnboundedSender<Input>,
}

/// Keeps a connection to one peer: sends what the node loop queues for it, and takes in
/// what the peer answers on the same connection (a peer that does not know this node's
/// address answers that way).
async fn dial_peer(dial: Dial, mut rx: mpsc::Receiver<Message>, mut shutdown: watch::Receiver<bool>) {
    let Dial { hello, id, addr, frame_bytes_max, inputs } = dial;
    let mut backoff = PEER_BACKOFF_MIN;
    let mut buf = Vec::new();
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
                s
            }
            Err(error) => {
                debug!(peer = id, %addr, %error, "peer unreachable; retrying");
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
                        if inputs.send(Input::Peer(m)).is_err() {
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

async fn accept_peers(
    listener: TcpListener,
    inputs: mpsc::UnboundedSender<Input>,
    cfg: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, from) = tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accepting a peer failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        tune(&stream);
        tokio::spawn(serve_peer(stream, from, inputs.clone(), cfg.clone(), shutdown.clone()));
    }
}

/// An inbound peer connection: after the hello, Raft messages in; the node loop may
/// answer on it when it has no address of its own for that peer.
async fn serve_peer(
    stream: TcpStream,
    from: SocketAddr,
    inputs: mpsc::UnboundedSender<Input>,
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
    let _ = inputs.send(Input::PeerInbound(peer, hello.client_addr, tx));
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
                if inputs.send(Input::Peer(m)).is_err() {
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

async fn accept_clients(
    listener: TcpListener,
    inputs: mpsc::UnboundedSender<Input>,
    cfg: ServerConfig,
    counters: Arc<HostCounters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let next = AtomicU64::new(1);
    loop {
        let (stream, from) = tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accepting a client failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        if counters.client_connections.load(Ordering::Relaxed) >= cfg.client_connections_max as u64 {
            warn!(%from, limit = cfg.client_connections_max, "too many client connections; refusing one");
            continue;
        }
        tune(&stream);
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
    inputs: mpsc::UnboundedSender<Input>,
    cfg: ServerConfig,
    counters: Arc<HostCounters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut r, mut w) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<ServerMessage>(cfg.client_queue_max);
    let _ = inputs.send(Input::ClientOpen(conn, tx));
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
                    if inputs.send(Input::Client(conn, req)).is_err() {
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
    let _ = inputs.send(Input::ClientClosed(conn));
    counters.client_connections.fetch_sub(1, Ordering::Relaxed);
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
