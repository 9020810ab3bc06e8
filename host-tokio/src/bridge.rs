//! The serial bridge (`concord bridge`): joins a serial line — a TCP-exposed UART (an
//! emulator's, a serial server's) or a device path (a pty, `/dev/ttyUSB0`) — to a
//! cluster, as micro-ROS's agent does for its devices.
//!
//! The bridge decides nothing about Concord. It speaks the core's serial
//! [`Link`] with the device, and for each channel the device opens it dials the address
//! the device named — a node's client port for a client, its peer port for a replica —
//! and carries the device's wire payloads over that connection as length-prefixed
//! frames, and the node's frames back, without decoding either. A channel whose
//! connection fails or ends is closed towards the device; the device's own client or
//! replica decides what to do about it. When the device restarts, or the line drops
//! (the device's emulator exits), every channel is closed.
//!
//! Every queue is bounded: a channel's frames wait in a queue of [`CHANNEL_QUEUE_MAX`],
//! the bridge reads from the nodes only while the link has room, and at most
//! `channels_max` channels are open.

use crate::frame::FrameError;
use concord_core::wire::link::{Link, LinkConfig, LinkEvent, LinkMsg, LINK_HEADER_BYTES_MAX};
use concord_core::wire::{peek_frame_len, FRAME_HEADER_BYTES};
use concord_core::Instant;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// Frames queued for one channel's connection before the channel is closed as stuck.
pub const CHANNEL_QUEUE_MAX: usize = 64;
/// Events from all connections queued for the line (the bridge then stops reading
/// from the nodes).
const FROM_NODES_QUEUE_MAX: usize = 64;
/// Bytes read from the line at once.
const LINE_READ_BYTES: usize = 4096;
/// Wait between attempts to reach a line that is not there yet (an emulator starting).
const LINE_RETRY: Duration = Duration::from_millis(100);

/// Where the serial line is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A UART exposed on TCP (`host:port`): an emulator's `-serial tcp:…,server` or a
    /// serial-to-TCP server. The bridge connects, and connects again when it drops.
    Tcp(String),
    /// A serial device or pty. It must be in raw mode (`stty -F PATH raw -echo`), which
    /// the `concord bridge` command sets.
    Device(PathBuf),
}

impl Line {
    /// Parses `tcp:HOST:PORT` or a device path.
    pub fn parse(s: &str) -> Self {
        match s.strip_prefix("tcp:") {
            Some(addr) => Self::Tcp(addr.to_string()),
            None => Self::Device(PathBuf::from(s)),
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp:{a}"),
            Self::Device(p) => write!(f, "{}", p.display()),
        }
    }
}

/// How a bridge runs.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// The serial line.
    pub line: Line,
    /// The link's limits; its frame size must match the device's.
    pub link: LinkConfig,
    /// Channels open at once; a device's dial beyond it is closed at once.
    pub channels_max: usize,
    /// A node that does not accept a connection within this long closes the channel.
    pub connect_timeout: Duration,
    /// Stop when the line ends instead of waiting for it to come back (a device path
    /// that vanished, a test).
    pub exit_when_line_ends: bool,
}

impl BridgeConfig {
    /// Defaults for `line`: the core's default link, 32 channels, 2 s connect timeout.
    pub fn new(line: Line) -> Self {
        Self {
            line,
            link: LinkConfig::default(),
            channels_max: 32,
            connect_timeout: Duration::from_secs(2),
            exit_when_line_ends: false,
        }
    }

    /// Largest payload a channel carries: what fits a link frame.
    fn payload_bytes_max(&self) -> usize {
        self.link.frame_bytes_max.saturating_sub(LINK_HEADER_BYTES_MAX)
    }
}

/// Why a bridge stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum BridgeError {
    /// The line could not be opened, read or written.
    Line(std::io::Error),
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(e) => write!(f, "serial line: {e}"),
        }
    }
}

impl std::error::Error for BridgeError {}

/// What a connection task tells the bridge about its channel.
enum FromNode {
    /// A frame's payload from the node.
    Payload(Vec<u8>),
    /// The connection failed or ended.
    Closed,
}

/// One open channel: the queue to its connection and the task that runs it. `gen` tells
/// a channel from an earlier one with the same number.
struct Channel {
    gen: u64,
    to_node: mpsc::Sender<Vec<u8>>,
    task: JoinHandle<()>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running bridge's state that outlives a line reconnect: the link end and channels.
struct Bridge {
    cfg: BridgeConfig,
    link: Link,
    start: std::time::Instant,
    channels: BTreeMap<u32, Channel>,
    next_gen: u64,
    from_nodes_tx: mpsc::Sender<(u32, u64, FromNode)>,
}

impl Bridge {
    fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as u64)
    }

    fn deadline(&self) -> tokio::time::Instant {
        let at = self.link.poll_timeout();
        let at = tokio::time::Instant::from_std(self.start) + Duration::from_micros(at.as_micros());
        at.min(tokio::time::Instant::now() + Duration::from_secs(3600))
    }

    fn has_room(&self) -> bool {
        self.link.backlog() < self.link.config().send_queue_max
    }

    /// Acts on what the link delivered.
    fn on_link_events(&mut self) {
        while let Some(event) = self.link.poll_event() {
            match event {
                LinkEvent::Message(LinkMsg::Dial { chan, addr }) => self.dial(chan, addr),
                LinkEvent::Message(LinkMsg::Payload { chan, bytes }) => {
                    let stuck = match self.channels.get(&chan) {
                        Some(c) => c.to_node.try_send(bytes).is_err(),
                        None => false,
                    };
                    if stuck {
                        warn!(chan, "connection not keeping up; closing the channel");
                        self.close(chan);
                    }
                }
                LinkEvent::Message(LinkMsg::Close { chan }) => {
                    self.channels.remove(&chan);
                }
                LinkEvent::PeerRestarted => {
                    info!(channels = self.channels.len(), "the device restarted; closing its channels");
                    self.channels.clear();
                }
            }
        }
    }

    fn dial(&mut self, chan: u32, addr: String) {
        if self.channels.len() >= self.cfg.channels_max && !self.channels.contains_key(&chan) {
            warn!(chan, %addr, max = self.cfg.channels_max, "too many channels; refusing a dial");
            let _ = self.link.send(LinkMsg::Close { chan });
            return;
        }
        debug!(chan, %addr, "device dials");
        let gen = self.next_gen;
        self.next_gen += 1;
        let (to_node, rx) = mpsc::channel(CHANNEL_QUEUE_MAX);
        let conn = Conn {
            chan,
            gen,
            addr,
            to_line: self.from_nodes_tx.clone(),
            payload_bytes_max: self.cfg.payload_bytes_max(),
            connect_timeout: self.cfg.connect_timeout,
        };
        let task = tokio::spawn(conn.run(rx));
        // A channel dialled again replaces the old one (dropping it stops its task).
        self.channels.insert(chan, Channel { gen, to_node, task });
    }

    fn close(&mut self, chan: u32) {
        if self.channels.remove(&chan).is_some() {
            let _ = self.link.send(LinkMsg::Close { chan });
        }
    }

    fn on_node(&mut self, chan: u32, gen: u64, what: FromNode) {
        if self.channels.get(&chan).map(|c| c.gen) != Some(gen) {
            return;
        }
        match what {
            FromNode::Payload(bytes) => {
                if self.link.send(LinkMsg::Payload { chan, bytes }).is_err() {
                    // Room was checked before receiving; a message too large for the
                    // link was refused by the connection task already.
                    self.close(chan);
                }
            }
            FromNode::Closed => self.close(chan),
        }
    }

    /// Serves one connection of the line until it ends.
    async fn serve_line<R, W>(
        &mut self,
        mut r: R,
        mut w: W,
        from_nodes: &mut mpsc::Receiver<(u32, u64, FromNode)>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool, std::io::Error>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut buf = vec![0u8; LINE_READ_BYTES];
        loop {
            let out = self.link.transmit();
            if !out.is_empty() {
                let n = out.len();
                w.write_all(out).await?;
                w.flush().await?;
                self.link.consumed(n);
            }
            let deadline = self.deadline();
            let room = self.has_room();
            tokio::select! {
                _ = shutdown.changed() => return Ok(true),
                n = r.read(&mut buf) => {
                    let n = n?;
                    if n == 0 {
                        return Ok(false);
                    }
                    let now = self.now();
                    self.link.handle_bytes(now, &buf[..n]);
                }
                Some((chan, gen, what)) = from_nodes.recv(), if room => self.on_node(chan, gen, what),
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.now();
                    self.link.handle_timeout(now);
                }
            }
            self.on_link_events();
        }
    }
}

/// One channel's connection to a node.
struct Conn {
    chan: u32,
    gen: u64,
    addr: String,
    to_line: mpsc::Sender<(u32, u64, FromNode)>,
    payload_bytes_max: usize,
    connect_timeout: Duration,
}

impl Conn {
    async fn run(self, mut from_line: mpsc::Receiver<Vec<u8>>) {
        let connected = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr)).await;
        let stream = match connected {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                debug!(chan = self.chan, addr = %self.addr, error = %e, "cannot reach the node");
                let _ = self.to_line.send((self.chan, self.gen, FromNode::Closed)).await;
                return;
            }
            Err(_) => {
                debug!(chan = self.chan, addr = %self.addr, "connecting timed out");
                let _ = self.to_line.send((self.chan, self.gen, FromNode::Closed)).await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut r, mut w) = stream.into_split();
        let reader = async {
            let mut header = [0u8; FRAME_HEADER_BYTES];
            loop {
                r.read_exact(&mut header).await?;
                let size =
                    peek_frame_len(&header, self.payload_bytes_max).map_err(FrameError::from)?.unwrap_or(0);
                let mut payload = vec![0u8; size];
                r.read_exact(&mut payload).await?;
                if self.to_line.send((self.chan, self.gen, FromNode::Payload(payload))).await.is_err() {
                    return Ok::<(), FrameError>(());
                }
            }
        };
        let writer = async {
            while let Some(payload) = from_line.recv().await {
                let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
                w.write_all(&len.to_le_bytes()).await?;
                w.write_all(&payload).await?;
            }
            Ok::<(), std::io::Error>(())
        };
        tokio::select! {
            r = reader => if let Err(e) = r {
                debug!(chan = self.chan, addr = %self.addr, error = %e, "connection ended");
            },
            _ = writer => {}
        }
        let _ = self.to_line.send((self.chan, self.gen, FromNode::Closed)).await;
    }
}

/// Runs a bridge until `shutdown` turns true (or, with `exit_when_line_ends`, the line
/// ends).
pub async fn run(cfg: BridgeConfig, mut shutdown: watch::Receiver<bool>) -> Result<(), BridgeError> {
    let start = std::time::Instant::now();
    // A fresh epoch on every start: the device learns that the bridge restarted.
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(1);
    let (from_nodes_tx, mut from_nodes) = mpsc::channel(FROM_NODES_QUEUE_MAX);
    let mut bridge = Bridge {
        link: Link::new(cfg.link.clone(), epoch, Instant::ZERO),
        cfg,
        start,
        channels: BTreeMap::new(),
        next_gen: 0,
        from_nodes_tx,
    };
    info!(line = %bridge.cfg.line, "bridge started");
    // Said once per outage: the line is retried every LINE_RETRY without more noise.
    let mut unavailable_said = false;
    loop {
        let ended = match bridge.cfg.line.clone() {
            Line::Tcp(addr) => match TcpStream::connect(&addr).await {
                Ok(s) => {
                    info!(%addr, "line connected");
                    let _ = s.set_nodelay(true);
                    let (r, w) = s.into_split();
                    bridge.serve_line(r, w, &mut from_nodes, &mut shutdown).await
                }
                Err(e) => Err(e),
            },
            Line::Device(path) => match open_device(&path).await {
                Ok((r, w)) => bridge.serve_line(r, w, &mut from_nodes, &mut shutdown).await,
                Err(e) => Err(e),
            },
        };
        match ended {
            Ok(true) => return Ok(()),
            Ok(false) => {
                unavailable_said = false;
                info!(line = %bridge.cfg.line, "line ended");
            }
            Err(e) if bridge.cfg.exit_when_line_ends => return Err(BridgeError::Line(e)),
            Err(e) if !unavailable_said => {
                unavailable_said = true;
                warn!(line = %bridge.cfg.line, error = %e, "line not available; retrying until it is");
            }
            Err(e) => debug!(line = %bridge.cfg.line, error = %e, "line not available"),
        }
        // Whatever the device held through the bridge is gone with the line.
        bridge.channels.clear();
        if bridge.cfg.exit_when_line_ends {
            return Ok(());
        }
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            _ = tokio::time::sleep(LINE_RETRY) => {}
        }
    }
}

/// Opens a serial device for reading and writing.
async fn open_device(path: &std::path::Path) -> std::io::Result<(tokio::fs::File, tokio::fs::File)> {
    let file = tokio::fs::OpenOptions::new().read(true).write(true).open(path).await?;
    let w = file.try_clone().await?;
    Ok((file, w))
}
