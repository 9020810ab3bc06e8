//! The replica role: a voting member whose peers are reached through channels of the
//! serial link, with its log in the core's [`LogStore`] over any [`Media`].

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use concord_core::server::{ConnId, Replica, ReplicaOutputs};
use concord_core::setup::{Bootstrap, NodeSetup, SetupError};
use concord_core::storage::{LogOptions, LogStore, Media, StorageError};
use concord_core::wire::link::{Link, LinkConfig, LinkEvent, LinkMsg};
use concord_core::wire::{decode_payload, encode_payload, Envelope, PeerHello, ServerMessage};
use concord_core::{Event, GroupId, Instant, Message, NodeError, NodeId, Role, StorageWrite, Term};
use core::fmt;

/// How a [`ReplicaHost`] starts.
#[derive(Clone, Debug)]
pub struct ReplicaHostConfig {
    /// The node's Raft, state machine and serving limits: the state machine limits must
    /// be the servers' (their digest is checked by every peer).
    pub setup: NodeSetup,
    /// How it starts when its storage is empty.
    pub bootstrap: Bootstrap,
    /// The other members and the peer address the bridge dials for each.
    pub peers: Vec<(NodeId, String)>,
    /// The serial link's limits.
    pub link: LinkConfig,
    /// The log's segment and record limits.
    pub log: LogOptions,
}

/// Why a replica host could not start or go on.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplicaHostError<E> {
    /// The storage could not be read or written.
    Storage(StorageError<E>),
    /// The configuration or the stored state was refused.
    Setup(SetupError),
    /// The core refused a storage confirmation (a bug in this host).
    Node(NodeError),
    /// A leader told this node it is no longer a member (`member remove`): it should
    /// stop rather than campaign for a group that has left it.
    Removed {
        /// The leader that said so.
        by: NodeId,
    },
}

impl<E: fmt::Debug> fmt::Display for ReplicaHostError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Storage(e) => write!(f, "storage: {e:?}"),
            Self::Setup(e) => write!(f, "setup: {e}"),
            Self::Node(e) => write!(f, "node: {e}"),
            Self::Removed { by } => write!(f, "removed from the cluster (told by node {})", by.0),
        }
    }
}

/// What a replica host reports about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit: u64,
    /// Its applied index.
    pub applied: u64,
}

/// One peer line: channel `node.0` of the link.
#[derive(Debug)]
struct PeerLine {
    addr: String,
    open: bool,
    /// When a closed line may be dialled again.
    redial_at: Instant,
}

/// Wait before dialling a peer again after its line closed (it is down, say), µs.
pub const PEER_REDIAL_US: u64 = 500_000;

/// A voting Concord member on a serial line. Peer `n` is channel `n` of the link: as
/// soon as the link is up the host asks the bridge to dial every peer's address and
/// sends this node's [`PeerHello`] (a joining node must be reachable before it has
/// anything to say: the leader answers on that connection), and dials again
/// [`PEER_REDIAL_US`] after a line closed.
pub struct ReplicaHost<M> {
    replica: Replica,
    store: LogStore<M>,
    link: Link,
    peers: BTreeMap<NodeId, PeerLine>,
    hello: Vec<u8>,
    me: NodeId,
    group: GroupId,
    /// Messages the link had no room for (Raft resends).
    messages_dropped: u64,
    /// The leader that removed this node from the membership, once one has.
    removed_by: Option<NodeId>,
}

impl<M: Media> ReplicaHost<M>
where
    M::Error: fmt::Debug,
{
    /// Opens the log on `media` (recovering what it holds) and starts the replica.
    pub fn open(
        cfg: ReplicaHostConfig,
        media: M,
        epoch: u32,
        now: Instant,
        seed: u64,
    ) -> Result<Self, ReplicaHostError<M::Error>> {
        let (store, recovery) = LogStore::open(media, cfg.log).map_err(ReplicaHostError::Storage)?;
        let me = cfg.setup.raft.id;
        let group = cfg.setup.raft.group;
        let hello = PeerHello::new(group, me, &cfg.setup.limits, None);
        let mut hello_bytes = Vec::new();
        // A hello always encodes; an empty one would be refused by the peer.
        let _ = encode_payload(&Envelope::PeerHello(hello), &mut hello_bytes);
        let replica = cfg
            .setup
            .replica(recovery.persisted, cfg.bootstrap, now, seed)
            .map_err(ReplicaHostError::Setup)?;
        let peers = cfg
            .peers
            .into_iter()
            .map(|(id, addr)| (id, PeerLine { addr, open: false, redial_at: now }))
            .collect();
        Ok(Self {
            replica,
            store,
            link: Link::new(cfg.link, epoch, now),
            peers,
            hello: hello_bytes,
            me,
            group,
            messages_dropped: 0,
            removed_by: None,
        })
    }

    /// The serial link, for [`crate::serial`] to move its bytes.
    pub fn link(&mut self) -> &mut Link {
        &mut self.link
    }

    /// The core's replica (read-only: status, metrics).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The stored log.
    pub fn store(&self) -> &LogStore<M> {
        &self.store
    }

    /// Stops the replica and hands its storage back (to open it again: a restart).
    pub fn into_media(self) -> M {
        self.store.into_media()
    }

    /// Messages dropped for want of room in the link (Raft sends them again).
    pub fn messages_dropped(&self) -> u64 {
        self.messages_dropped
    }

    /// Role, term, leader, commit and applied index.
    pub fn status(&self) -> ReplicaStatus {
        let node = self.replica.node();
        ReplicaStatus {
            role: node.role(),
            term: node.term(),
            leader: node.leader(),
            commit: node.commit_index(),
            applied: node.applied_index(),
        }
    }

    /// Runs due timers, hands the link's messages to the replica, and drains the replica:
    /// writes made durable and confirmed, messages to the link. Call it after bytes
    /// moved and when [`ReplicaHost::poll_timeout`] is due. Once this node is removed
    /// from the membership it fails with [`ReplicaHostError::Removed`], every time.
    pub fn step(&mut self, now: Instant) -> Result<(), ReplicaHostError<M::Error>> {
        if let Some(by) = self.removed_by {
            return Err(ReplicaHostError::Removed { by });
        }
        if self.link.poll_timeout() <= now {
            self.link.handle_timeout(now);
        }
        if self.replica.poll_timeout() <= now {
            self.replica.handle_timeout(now);
        }
        while let Some(event) = self.link.poll_event() {
            match event {
                LinkEvent::Message(LinkMsg::Payload { chan, bytes }) => self.on_payload(now, chan, &bytes),
                LinkEvent::Message(LinkMsg::Close { chan }) => {
                    if let Some(p) = self.peers.get_mut(&NodeId(u64::from(chan))) {
                        p.open = false;
                        p.redial_at = now.add_us(PEER_REDIAL_US);
                    }
                }
                LinkEvent::Message(LinkMsg::Dial { chan, .. }) => {
                    let _ = self.link.send(LinkMsg::Close { chan });
                }
                LinkEvent::PeerRestarted => self.peers.values_mut().for_each(|p| p.open = false),
            }
            self.drain()?;
        }
        self.dial_peers(now);
        self.drain()
    }

    /// Opens the peer lines that are closed and due.
    fn dial_peers(&mut self, now: Instant) {
        if !self.link.is_up() {
            return;
        }
        let mut sender = PeerSender {
            link: &mut self.link,
            peers: &mut self.peers,
            hello: &self.hello,
            dropped: &mut self.messages_dropped,
        };
        let due: Vec<NodeId> =
            sender.peers.iter().filter(|(_, p)| !p.open && p.redial_at <= now).map(|(id, _)| *id).collect();
        for id in due {
            sender.open(id);
        }
    }

    /// When [`ReplicaHost::step`] is due even if no byte arrives.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        self.replica.poll_timeout().min(self.link.poll_timeout())
    }

    fn on_payload(&mut self, now: Instant, chan: u32, bytes: &[u8]) {
        let from = NodeId(u64::from(chan));
        match decode_payload(bytes, self.link.config().frame_bytes_max) {
            Ok(Envelope::Raft(m)) if m.from == from && m.to == self.me && m.group == self.group => {
                // A refused message (stale term, another group) needs no answer.
                let _ = self.replica.handle_message(now, m);
            }
            _ => self.messages_dropped += 1,
        }
    }

    fn drain(&mut self) -> Result<(), ReplicaHostError<M::Error>> {
        let mut out = Outputs {
            store: &mut self.store,
            failed: None,
            removed_by: &mut self.removed_by,
            link: PeerSender {
                link: &mut self.link,
                peers: &mut self.peers,
                hello: &self.hello,
                dropped: &mut self.messages_dropped,
            },
        };
        let drained = self.replica.drive(&mut out);
        if let Some(e) = out.failed {
            return Err(ReplicaHostError::Storage(e));
        }
        drained.map_err(ReplicaHostError::Node)?;
        match self.removed_by {
            Some(by) => Err(ReplicaHostError::Removed { by }),
            None => Ok(()),
        }
    }
}

/// Sends Raft messages on the peers' channels.
struct PeerSender<'a> {
    link: &'a mut Link,
    peers: &'a mut BTreeMap<NodeId, PeerLine>,
    hello: &'a [u8],
    dropped: &'a mut u64,
}

impl PeerSender<'_> {
    fn send(&mut self, m: &Message) {
        let open = self.peers.get(&m.to).is_some_and(|p| p.open) || self.open(m.to);
        let chan = u32::try_from(m.to.0).ok();
        let mut bytes = Vec::new();
        let sent = match chan {
            Some(chan) if open => encode_payload(&Envelope::Raft(m.clone()), &mut bytes)
                .ok()
                .and_then(|()| self.link.send(LinkMsg::Payload { chan, bytes }).ok()),
            _ => None,
        };
        if sent.is_none() {
            *self.dropped += 1;
        }
    }

    /// Asks the bridge to dial peer `id` and sends it this node's hello: both or neither.
    fn open(&mut self, id: NodeId) -> bool {
        let (Some(peer), Ok(chan)) = (self.peers.get_mut(&id), u32::try_from(id.0)) else {
            return false;
        };
        let room = self.link.config().send_queue_max.saturating_sub(self.link.backlog());
        if room < 2 || !self.link.is_up() {
            return false;
        }
        let dial = LinkMsg::Dial { chan, addr: peer.addr.clone() };
        let hello = LinkMsg::Payload { chan, bytes: self.hello.to_vec() };
        peer.open = self.link.send(dial).is_ok() && self.link.send(hello).is_ok();
        peer.open
    }
}

/// Where the replica's outputs go: the log (appended and synced at once, so every write
/// is confirmed as it is made), the peers, nowhere for clients (this host serves none).
struct Outputs<'a, M: Media> {
    store: &'a mut LogStore<M>,
    failed: Option<StorageError<M::Error>>,
    removed_by: &'a mut Option<NodeId>,
    link: PeerSender<'a>,
}

impl<M: Media> ReplicaOutputs for Outputs<'_, M> {
    fn persist(&mut self, write: StorageWrite) -> bool {
        if self.failed.is_some() {
            return false;
        }
        match self.store.append(&write).and_then(|()| self.store.sync()) {
            Ok(()) => true,
            Err(e) => {
                // Never confirmed: the node waits, and `step` reports the failure.
                self.failed = Some(e);
                false
            }
        }
    }

    fn send(&mut self, m: Message) {
        self.link.send(&m);
    }

    fn client(&mut self, _conn: ConnId, _msg: ServerMessage) {}

    fn event(&mut self, e: Event<()>) {
        if let Event::Removed { by } = e {
            *self.removed_by = Some(by);
        }
    }
}
