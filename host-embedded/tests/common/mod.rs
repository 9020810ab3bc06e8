//! An in-memory UART pair with injected line noise, and the cluster side of a serial
//! line played in memory by core replicas, as the `concord bridge` plays it with real
//! servers.
#![allow(dead_code, unreachable_pub)]

pub mod sim_flash;

use concord_core::server::{ConnId, Replica};
use concord_core::wire::link::{Link, LinkConfig, LinkEvent, LinkMsg};
use concord_core::wire::{decode_payload, encode_payload, Envelope};
use concord_core::{Instant, NodeId};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::rc::Rc;

/// What the line does to bytes, per 10 000 bytes (flip, drop, dup) or writes (repeat).
#[derive(Clone, Copy, Debug, Default)]
pub struct Noise {
    pub flip: u64,
    pub drop: u64,
    pub dup: u64,
    pub repeat: u64,
}

/// Bytes a UART receive buffer holds; more are lost (an overrun).
pub const UART_RX_BYTES: usize = 8 << 10;

struct Wire {
    bytes: VecDeque<u8>,
    noise: Noise,
    rng: Xoshiro256PlusPlus,
    overruns: u64,
}

/// One end of the pair: reads what the other end wrote, through the noise. A clone is
/// the same end (for a task that reads and writes through separate halves).
#[derive(Clone)]
pub struct Uart {
    rx: Rc<RefCell<Wire>>,
    tx: Rc<RefCell<Wire>>,
}

pub fn uart_pair(seed: u64) -> (Uart, Uart) {
    let wire = |s| {
        Rc::new(RefCell::new(Wire {
            bytes: VecDeque::new(),
            noise: Noise::default(),
            rng: Xoshiro256PlusPlus::seed_from_u64(s),
            overruns: 0,
        }))
    };
    let (ab, ba) = (wire(seed), wire(seed ^ 0x5555));
    (Uart { rx: ba.clone(), tx: ab.clone() }, Uart { rx: ab, tx: ba })
}

impl Uart {
    /// Noise on what this end sends.
    pub fn set_noise(&self, noise: Noise) {
        self.tx.borrow_mut().noise = noise;
    }

    /// Raw bytes on this end's outgoing wire, around the link: a burst of line noise.
    pub fn inject(&self, bytes: &[u8]) {
        self.tx.borrow_mut().bytes.extend(bytes);
    }
}

impl Wire {
    fn chance(&mut self, per_10k: u64) -> bool {
        per_10k > 0 && self.rng.next_u64() % 10_000 < per_10k
    }

    fn push(&mut self, b: u8) {
        if self.bytes.len() < UART_RX_BYTES {
            self.bytes.push_back(b);
        } else {
            self.overruns += 1;
        }
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let mut rx = self.rx.borrow_mut();
        let n = buf.len().min(rx.bytes.len());
        for (slot, b) in buf.iter_mut().zip(rx.bytes.drain(..n)) {
            *slot = b;
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(!self.rx.borrow().bytes.is_empty())
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        let mut tx = self.tx.borrow_mut();
        let noise = tx.noise;
        let mut sent = Vec::new();
        for &b in buf {
            if tx.chance(noise.drop) {
                continue;
            }
            let b = if tx.chance(noise.flip) { b ^ (1 << (tx.rng.next_u64() % 8)) } else { b };
            sent.push(b);
            if tx.chance(noise.dup) {
                sent.push(b);
            }
        }
        let times = if tx.chance(noise.repeat) { 2 } else { 1 };
        for _ in 0..times {
            for &b in &sent {
                tx.push(b);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Waits for a byte (the test's executor polls again without being woken).
impl embedded_io_async::Read for Uart {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        std::future::poll_fn(|_| {
            if self.rx.borrow().bytes.is_empty() {
                return std::task::Poll::Pending;
            }
            std::task::Poll::Ready(embedded_io::Read::read(self, buf))
        })
        .await
    }
}

/// Takes every byte at once.
impl embedded_io_async::Write for Uart {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        embedded_io::Write::write(self, buf)
    }
}

impl embedded_io::WriteReady for Uart {
    fn write_ready(&mut self) -> Result<bool, Infallible> {
        Ok(true)
    }
}

/// The cluster side of the line: the link, and what each channel the device dialled is
/// connected to — a client connection of one of `replicas`, or a peer line to one.
pub struct ClusterSide {
    pub link: Link,
    pub uart: Uart,
    /// Channel → (replica index, what the channel is).
    chans: BTreeMap<u32, (usize, Conn)>,
    /// Where each address leads: `client:N` or `peer:N` to replica N-1.
    pub addrs: BTreeMap<String, (usize, bool)>,
    pub dials: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Conn {
    Client,
    /// A peer line whose hello came: the device's node id.
    Peer(Option<NodeId>),
}

/// Connection ids the cluster side uses for the device's client channels.
const CONN_BASE: u64 = 1_000;

impl ClusterSide {
    pub fn new(uart: Uart, replicas: usize, now: Instant) -> Self {
        let mut addrs = BTreeMap::new();
        for i in 0..replicas {
            addrs.insert(format!("client:{}", i + 1), (i, true));
            addrs.insert(format!("peer:{}", i + 1), (i, false));
        }
        Self { link: Link::new(link_config(), 0xb1d6e, now), uart, chans: BTreeMap::new(), addrs, dials: 0 }
    }

    /// Moves bytes, and messages between the link and the replicas. `up[i]` false: that
    /// replica is stopped (its channels stay silent).
    pub fn step(&mut self, now: Instant, replicas: &mut [Replica], up: &[bool]) {
        let _ = concord_embedded::serial::pump(&mut self.uart, &mut self.link, now);
        if self.link.poll_timeout() <= now {
            self.link.handle_timeout(now);
        }
        while let Some(event) = self.link.poll_event() {
            match event {
                LinkEvent::Message(LinkMsg::Dial { chan, addr }) => {
                    self.dials += 1;
                    match self.addrs.get(&addr) {
                        Some(&(i, client)) if up[i] => {
                            self.chans
                                .insert(chan, (i, if client { Conn::Client } else { Conn::Peer(None) }));
                        }
                        _ => {
                            let _ = self.link.send(LinkMsg::Close { chan });
                        }
                    }
                }
                LinkEvent::Message(LinkMsg::Close { chan }) => {
                    if let Some((i, Conn::Client)) = self.chans.remove(&chan) {
                        replicas[i].handle_disconnect(ConnId(CONN_BASE + u64::from(chan)));
                    }
                }
                LinkEvent::Message(LinkMsg::Payload { chan, bytes }) => {
                    let Some((i, conn)) = self.chans.get(&chan).copied() else { continue };
                    if !up[i] {
                        continue;
                    }
                    match (conn, decode_payload(&bytes, 1 << 16)) {
                        (Conn::Client, Ok(Envelope::Request(req))) => {
                            replicas[i].handle_client(now, ConnId(CONN_BASE + u64::from(chan)), req);
                        }
                        (Conn::Peer(None), Ok(Envelope::PeerHello(h))) => {
                            self.chans.insert(chan, (i, Conn::Peer(Some(h.node))));
                        }
                        (Conn::Peer(Some(n)), Ok(Envelope::Raft(m))) if m.from == n => {
                            let _ = replicas[i].handle_message(now, m);
                        }
                        _ => panic!("unexpected payload on channel {chan}"),
                    }
                }
                LinkEvent::PeerRestarted => {
                    for (chan, (i, conn)) in std::mem::take(&mut self.chans) {
                        if conn == Conn::Client {
                            replicas[i].handle_disconnect(ConnId(CONN_BASE + u64::from(chan)));
                        }
                    }
                }
            }
        }
        let _ = concord_embedded::serial::pump(&mut self.uart, &mut self.link, now);
    }

    /// A server message for connection `conn` of replica `i`: to its channel, if it is
    /// one of the device's.
    pub fn send_device_client(&mut self, conn: ConnId, msg: concord_core::wire::ServerMessage) -> bool {
        let Some(chan) = conn.0.checked_sub(CONN_BASE).and_then(|c| u32::try_from(c).ok()) else {
            return false;
        };
        let mut bytes = Vec::new();
        encode_payload(&Envelope::Response(msg), &mut bytes).unwrap();
        let _ = self.link.send(LinkMsg::Payload { chan, bytes });
        true
    }

    /// A Raft message from replica `from_i` to the device node: on the channel of the
    /// device's peer line to that replica.
    pub fn send_device_peer(&mut self, from_i: usize, m: concord_core::Message) -> bool {
        let chan = self
            .chans
            .iter()
            .find_map(|(c, (i, conn))| (*i == from_i && *conn == Conn::Peer(Some(m.to))).then_some(*c));
        let Some(chan) = chan else { return false };
        let mut bytes = Vec::new();
        encode_payload(&Envelope::Raft(m), &mut bytes).unwrap();
        // A full link drops it: Raft resends.
        let _ = self.link.send(LinkMsg::Payload { chan, bytes });
        true
    }
}

/// In-memory servers (core replicas) beside the cluster side of the line, with a core
/// client of their own wired in memory for the test's administrative requests.
pub struct Servers {
    pub replicas: Vec<Replica>,
    pub disks: Vec<concord_core::Persisted>,
    pub up: Vec<bool>,
    pub side: ClusterSide,
    /// Raft messages between the in-memory servers, delivered on the next tick.
    wire: Vec<(usize, concord_core::Message)>,
    pub admin: concord_core::client::Client,
}

/// Connection ids of the in-memory admin client: its peer n is connection `ADMIN_BASE + n`.
const ADMIN_BASE: u64 = 10;

impl Servers {
    /// `voters` founding servers of group 1, with nodes `extra` expected to join.
    pub fn new(voters: usize, device_uart: Uart, now: Instant) -> Self {
        use concord_core::client::{ClientConfig, Endpoint};
        use concord_core::setup::Bootstrap;
        let ids: Vec<NodeId> = (1..=voters as u64).map(NodeId).collect();
        let replicas = ids
            .iter()
            .map(|&id| {
                let setup = setup(id);
                let boot = Bootstrap::NewCluster(concord_core::Membership::with_voters(ids.iter().copied()));
                setup.replica(Default::default(), boot, now, id.0).unwrap()
            })
            .collect();
        let endpoints = ids.iter().map(|id| Endpoint::node(*id, format!("admin:{}", id.0))).collect();
        let admin = concord_core::client::Client::new(
            ClientConfig::new(concord_core::GroupId(1), endpoints),
            now,
            99,
        );
        Self {
            replicas,
            disks: vec![Default::default(); voters],
            up: vec![true; voters],
            side: ClusterSide::new(device_uart, voters, now),
            wire: Vec::new(),
            admin,
        }
    }

    /// One tick of the servers and the cluster side of the line.
    pub fn step(&mut self, now: Instant) {
        for (to, m) in std::mem::take(&mut self.wire) {
            if self.up[to] {
                let _ = self.replicas[to].handle_message(now, m);
            }
        }
        if self.admin.poll_timeout() <= now {
            self.admin.handle_timeout(now);
        }
        while let Some((peer, req)) = self.admin.poll_transmit() {
            let i = self.admin.peer_node(peer).map_or(usize::MAX, |n| n.0 as usize - 1);
            if self.up.get(i) == Some(&true) {
                self.replicas[i].handle_client(now, ConnId(ADMIN_BASE + u64::from(peer.0)), req);
            } else {
                self.admin.handle_disconnect(now, peer);
            }
        }
        self.side.step(now, &mut self.replicas, &self.up);
        for i in 0..self.replicas.len() {
            if !self.up[i] {
                continue;
            }
            let r = &mut self.replicas[i];
            if r.poll_timeout() <= now {
                r.handle_timeout(now);
            }
            loop {
                let mut any = false;
                while let Some(w) = self.replicas[i].poll_storage() {
                    self.disks[i].apply(&w).unwrap();
                    self.replicas[i].handle_persisted(w.token).unwrap();
                    any = true;
                }
                while let Some(m) = self.replicas[i].poll_transmit() {
                    let to = m.to.0 as usize - 1;
                    if to < self.up.len() {
                        self.wire.push((to, m));
                    } else {
                        self.side.send_device_peer(i, m);
                    }
                }
                while let Some((conn, msg)) = self.replicas[i].poll_client() {
                    if conn.0 >= CONN_BASE {
                        self.side.send_device_client(conn, msg);
                    } else {
                        let peer = concord_core::client::Peer((conn.0 - ADMIN_BASE) as u32);
                        self.admin.handle_message(now, peer, msg);
                    }
                }
                while self.replicas[i].poll_event().is_some() {}
                if !any {
                    break;
                }
            }
        }
        self.side.step(now, &mut self.replicas, &self.up);
    }

    /// The leader's index among the servers, if one leads.
    pub fn leader(&self) -> Option<usize> {
        (0..self.replicas.len())
            .find(|&i| self.up[i] && self.replicas[i].node().role() == concord_core::Role::Leader)
    }
}

/// The link both ends of the test line use.
pub fn link_config() -> LinkConfig {
    // The default frame carries a payload of DEVICE_FRAME_BYTES.
    LinkConfig::default()
}

/// The setup every node of the test group runs with (the device's too).
pub fn setup(id: NodeId) -> concord_core::setup::NodeSetup {
    use concord_core::server::ServeLimits;
    let raft = concord_core::Config::new(id, concord_core::GroupId(1));
    let serve =
        ServeLimits { frame_bytes_max: concord_embedded::DEVICE_FRAME_BYTES, ..ServeLimits::default() };
    concord_core::setup::NodeSetup::new(raft, concord_embedded::device_limits(), serve)
}
