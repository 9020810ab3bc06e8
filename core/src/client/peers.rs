//! The client's address book: the endpoints it may talk to, which node each one is, and
//! whether it answers. A self-contained type that takes what happened (a probe answered,
//! a request timed out, a connection broke) and returns decisions (which endpoint to ask,
//! which to probe, when to look again); it never sees the [`Client`](super::Client).
//!
//! Every endpoint is *probed* with a [`RequestBody::Hello`](crate::wire::RequestBody::Hello)
//! before requests are aimed at it. A probe is answered by the node itself, without Raft,
//! so a node that accepts connections but never answers (a stopped process, say) is found
//! out within one `probe_timeout_us` and then avoided — requests go to the endpoints that
//! did answer — while it is probed again every `reprobe_interval_us` in the background.
//! A probe's answer also lists the members' client addresses: endpoints the client was
//! never given are learnt from it, so one reachable endpoint is enough.

use crate::raft::NodeId;
use crate::time::Instant;
use crate::wire::{ClientError, ClusterView};
use alloc::string::String;
use alloc::vec::Vec;

/// An endpoint of the client, numbered in the order the client learnt it. Hosts key their
/// connections by it; [`Client::peer_addr`](super::Client::peer_addr) says where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer(pub u32);

/// Where a node listens for clients: an address in the host's terms (`host:port` for TCP,
/// a URL for WebSocket, a port name for a serial line), with the node's id if known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The node's id, if known; otherwise learnt from the node's answer to a probe.
    pub node: Option<NodeId>,
    /// The address.
    pub addr: String,
}

impl Endpoint {
    /// An endpoint whose node is not known yet.
    pub fn addr(addr: impl Into<String>) -> Self {
        Self { node: None, addr: addr.into() }
    }

    /// An endpoint of a known node.
    pub fn node(node: NodeId, addr: impl Into<String>) -> Self {
        Self { node: Some(node), addr: addr.into() }
    }
}

/// What the client knows of an endpoint's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not asked yet.
    Unknown,
    /// A probe is out; unanswered by `deadline`, the endpoint counts as silent.
    Probing {
        /// When the probe gives up.
        deadline: Instant,
    },
    /// It answered its last probe, and nothing since says otherwise.
    Alive,
    /// It did not answer in time, or its connection broke: avoided, and probed again at
    /// `retry_at`.
    Silent {
        /// When to probe it again.
        retry_at: Instant,
    },
    /// It answered that it does not serve this client's group: never asked again.
    Refused,
}

/// One endpoint.
#[derive(Clone, Debug)]
pub(crate) struct PeerState {
    pub(crate) addr: String,
    pub(crate) node: Option<NodeId>,
    pub(crate) health: Health,
    /// Why it was last refused or found silent, for error messages.
    pub(crate) last_error: Option<PeerError>,
}

/// Why an endpoint is not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerError {
    /// Its probe was not answered within the probe timeout.
    NoAnswer,
    /// The connection could not be made or broke.
    Disconnected,
    /// A request sent there was not answered within the request timeout.
    RequestTimedOut,
    /// It refused the client (another group).
    Refused(ClientError),
}

impl core::fmt::Display for PeerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoAnswer => f.write_str("accepted the connection but did not answer"),
            Self::Disconnected => f.write_str("connection refused or broken"),
            Self::RequestTimedOut => f.write_str("a request went unanswered"),
            Self::Refused(e) => write!(f, "refused: {e}"),
        }
    }
}

/// Timing and bounds of the address book.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerTiming {
    pub(crate) probe_timeout_us: u64,
    pub(crate) reprobe_interval_us: u64,
    pub(crate) endpoints_max: usize,
    pub(crate) learns: super::AddrKind,
}

/// The endpoints and their health.
#[derive(Debug)]
pub(crate) struct Peers {
    list: Vec<PeerState>,
    timing: PeerTiming,
}

impl Peers {
    pub(crate) fn new(endpoints: Vec<Endpoint>, timing: PeerTiming) -> Self {
        let mut peers = Self { list: Vec::new(), timing };
        for e in endpoints {
            peers.add(e);
        }
        peers
    }

    /// Adds an endpoint unless its address is known or the book is full; its handle.
    pub(crate) fn add(&mut self, e: Endpoint) -> Option<Peer> {
        if let Some(i) = self.list.iter().position(|p| p.addr == e.addr) {
            if self.list[i].node.is_none() {
                self.list[i].node = e.node;
            }
            return Some(Peer(i as u32));
        }
        if self.list.len() >= self.timing.endpoints_max {
            return None;
        }
        self.list.push(PeerState { addr: e.addr, node: e.node, health: Health::Unknown, last_error: None });
        Some(Peer(self.list.len() as u32 - 1))
    }

    pub(crate) fn get(&self, peer: Peer) -> Option<&PeerState> {
        self.list.get(peer.0 as usize)
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Peer, &PeerState)> {
        self.list.iter().enumerate().map(|(i, p)| (Peer(i as u32), p))
    }

    /// The node behind `peer`, if known.
    pub(crate) fn node(&self, peer: Peer) -> Option<NodeId> {
        self.get(peer).and_then(|p| p.node)
    }

    /// The endpoint to reach `node` by: one that answered, else one not known to be
    /// silent. `None` if there is none (its address was never learnt, or it is silent).
    pub(crate) fn usable_for(&self, node: NodeId) -> Option<Peer> {
        let mine = || self.iter().filter(move |(_, p)| p.node == Some(node));
        mine()
            .find(|(_, p)| p.health == Health::Alive)
            .or_else(|| mine().find(|(_, p)| matches!(p.health, Health::Unknown | Health::Probing { .. })))
            .map(|(peer, _)| peer)
    }

    /// Whether any endpoint of `node` is known at all.
    pub(crate) fn knows(&self, node: NodeId) -> bool {
        self.list.iter().any(|p| p.node == Some(node) && p.health != Health::Refused)
    }

    /// The first endpoint that answered, counting from `cursor` round the list.
    pub(crate) fn alive_from(&self, cursor: usize) -> Option<Peer> {
        let n = self.list.len();
        (0..n)
            .map(|k| (cursor + k) % n)
            .find(|&i| self.list[i].health == Health::Alive)
            .map(|i| Peer(i as u32))
    }

    /// Endpoints due for a probe now (never asked, or silent and due again); they are
    /// marked as probing.
    pub(crate) fn due_probes(&mut self, now: Instant) -> Vec<Peer> {
        let deadline = now.add_us(self.timing.probe_timeout_us);
        let mut due = Vec::new();
        for (i, p) in self.list.iter_mut().enumerate() {
            let is_due = match p.health {
                Health::Unknown => true,
                Health::Silent { retry_at } => retry_at <= now,
                _ => false,
            };
            if is_due {
                p.health = Health::Probing { deadline };
                due.push(Peer(i as u32));
            }
        }
        due
    }

    /// Probes out past their deadline: those endpoints are silent. Returns whether any
    /// changed.
    pub(crate) fn expire_probes(&mut self, now: Instant) -> bool {
        let retry_at = now.add_us(self.timing.reprobe_interval_us);
        let mut changed = false;
        for p in &mut self.list {
            if matches!(p.health, Health::Probing { deadline } if deadline <= now) {
                p.health = Health::Silent { retry_at };
                p.last_error = Some(PeerError::NoAnswer);
                changed = true;
            }
        }
        changed
    }

    /// `peer` answered a probe with `view`. Returns whether it was not alive before (it
    /// has just become usable), and learns the members' addresses it lists.
    pub(crate) fn answered(&mut self, peer: Peer, view: &ClusterView) -> bool {
        let Some(p) = self.list.get_mut(peer.0 as usize) else { return false };
        let was_alive = p.health == Health::Alive;
        p.node = Some(view.node);
        p.health = Health::Alive;
        p.last_error = None;
        for m in &view.members {
            let addr = match self.timing.learns {
                super::AddrKind::Client => &m.client_addr,
                super::AddrKind::Web => &m.web_addr,
            };
            if let Some(addr) = addr {
                if !self.knows(m.node) {
                    let _ = self.add(Endpoint::node(m.node, addr.clone()));
                }
            }
        }
        !was_alive
    }

    /// Something other than a probe came back from `peer`: it is alive.
    pub(crate) fn heard_from(&mut self, peer: Peer) {
        if let Some(p) = self.list.get_mut(peer.0 as usize) {
            if matches!(p.health, Health::Silent { .. }) {
                p.health = Health::Alive;
                p.last_error = None;
            }
        }
    }

    /// `peer` stopped answering (a request timed out) or its connection broke: avoid it,
    /// and probe it again after `delay_us` (0: at once).
    pub(crate) fn silent(&mut self, peer: Peer, now: Instant, delay_us: u64, why: PeerError) {
        if let Some(p) = self.list.get_mut(peer.0 as usize) {
            if p.health != Health::Refused {
                p.health = Health::Silent { retry_at: now.add_us(delay_us) };
                p.last_error = Some(why);
            }
        }
    }

    /// The interval between probes of a silent endpoint.
    pub(crate) fn reprobe_interval_us(&self) -> u64 {
        self.timing.reprobe_interval_us
    }

    /// `peer` refused the client for good.
    pub(crate) fn refused(&mut self, peer: Peer, error: ClientError) {
        if let Some(p) = self.list.get_mut(peer.0 as usize) {
            p.health = Health::Refused;
            p.last_error = Some(PeerError::Refused(error));
        }
    }

    /// When a probe gives up or a silent endpoint is due again.
    pub(crate) fn next_deadline(&self) -> Instant {
        self.list
            .iter()
            .filter_map(|p| match p.health {
                Health::Probing { deadline } => Some(deadline),
                Health::Silent { retry_at } => Some(retry_at),
                _ => None,
            })
            .min()
            .unwrap_or(Instant::MAX)
    }

    /// Whether every endpoint refused the client: nothing will ever work.
    pub(crate) fn all_refused(&self) -> bool {
        !self.list.is_empty() && self.list.iter().all(|p| p.health == Health::Refused)
    }
}
