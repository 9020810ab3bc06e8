//! A hand-driven cluster for regression and checker tests that need exact control: which
//! message is delivered, dropped or held back, and which node's clock moves.

use crate::register::{RegisterCommand, RegisterMachine, RegisterOutput, RegisterQuery};
use concord_core::raft::{Outputs, Persisted};
use concord_core::{
    Config, Consistency, Entry, Event, GroupId, Instant, Membership, Message, MessageBody, Node, NodeId,
    Payload, Reply, Request, RequestId, Role, Start, StorageWrite,
};
use std::collections::BTreeMap;
use std::ops::Deref;

/// A node running the register machine.
pub type N = Node<RegisterMachine>;

/// Where one node's outputs go in the harness: its disk (durable at once), the network,
/// and the replies list.
struct Drained<'a> {
    id: u64,
    disk: &'a mut Disk,
    net: &'a mut Vec<Message>,
    replies: &'a mut Vec<(u64, Reply<RegisterOutput>)>,
    removed: &'a mut Vec<u64>,
}

impl Outputs<RegisterMachine> for Drained<'_> {
    fn persist(&mut self, write: StorageWrite) -> bool {
        self.disk.apply(&write);
        true
    }
    fn send(&mut self, message: Message) {
        self.net.push(message);
    }
    fn reply(&mut self, reply: Reply<RegisterOutput>) {
        self.replies.push((self.id, reply));
    }
    fn event(&mut self, event: Event<()>) {
        if let Event::Removed { .. } = event {
            self.removed.push(self.id);
        }
    }
}

/// What a host stored for one node: the writes it made durable, applied by the storage
/// contract ([`Persisted::apply`]). Reads as the [`Persisted`] a restart would find.
#[derive(Default, Clone, Debug)]
pub struct Disk(Persisted);

impl Disk {
    /// Applies one storage write. The core never breaks the storage contract, so a write
    /// that does is a bug, and fails the test.
    pub fn apply(&mut self, w: &StorageWrite) {
        if let Err(e) = self.0.apply(w) {
            panic!("the node broke the storage contract: {e}");
        }
    }
    /// What a restart would find.
    pub fn persisted(&self) -> Persisted {
        self.0.clone()
    }
}

impl Deref for Disk {
    type Target = Persisted;
    fn deref(&self) -> &Persisted {
        &self.0
    }
}

/// Drains node `n` with every write durable on `disk` at once; returns the messages it
/// sent (replies and events are dropped). For tests that drive one node by hand.
pub fn flush(n: &mut N, disk: &mut Disk) -> Vec<Message> {
    let (mut net, mut replies, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    let id = n.id().0;
    n.drive(&mut Drained { id, disk, net: &mut net, replies: &mut replies, removed: &mut removed })
        .expect("a write the node just asked for is confirmed");
    net
}

/// A cluster of nodes driven by hand: one global clock that only the test advances,
/// nodes that only act when the test delivers a message or ticks them, and a network that
/// is a plain list of messages the test delivers, drops or holds back.
pub struct H {
    /// The nodes by id.
    pub nodes: BTreeMap<u64, N>,
    /// Their disks; every write is made durable and confirmed as soon as it is polled.
    pub disks: BTreeMap<u64, Disk>,
    /// Messages sent and not yet delivered, oldest first.
    pub net: Vec<Message>,
    /// The clock.
    pub now: Instant,
    /// Replies received, with the node that answered.
    pub replies: Vec<(u64, Reply<RegisterOutput>)>,
    /// Nodes that reported [`Event::Removed`], in order.
    pub removed: Vec<u64>,
    next_req: u64,
}

/// The default configuration for node `id` in group 0.
pub fn cfg(id: u64) -> Config {
    Config::new(NodeId(id), GroupId(0))
}

impl H {
    /// Nodes `ids`, bootstrapped with `voters`, configured by `mk`.
    pub fn new(ids: &[u64], voters: &[u64], mk: impl Fn(u64) -> Config) -> Self {
        let m = Membership::with_voters(voters.iter().map(|v| NodeId(*v)));
        let mut h = Self {
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            net: vec![],
            now: Instant::ZERO,
            replies: vec![],
            removed: vec![],
            next_req: 1,
        };
        for id in ids {
            let n =
                Node::new(mk(*id), RegisterMachine::new(), Start::NewCluster(m.clone()), Instant::ZERO, *id)
                    .unwrap();
            h.nodes.insert(*id, n);
            h.disks.insert(*id, Disk::default());
            h.drain(*id);
        }
        h
    }
    /// Drains every output of node `id` (writes are made durable at once).
    pub fn drain(&mut self, id: u64) {
        let n = self.nodes.get_mut(&id).unwrap();
        let mut out = Drained {
            id,
            disk: self.disks.get_mut(&id).unwrap(),
            net: &mut self.net,
            replies: &mut self.replies,
            removed: &mut self.removed,
        };
        n.drive(&mut out).expect("a write completes once");
    }
    /// Runs node `id`'s timers at the current time.
    pub fn tick(&mut self, id: u64) {
        let now = self.now;
        self.nodes.get_mut(&id).unwrap().handle_timeout(now);
        self.drain(id);
    }
    /// Delivers one message now.
    pub fn deliver_one(&mut self, m: Message) {
        let to = m.to.0;
        let now = self.now;
        if let Some(n) = self.nodes.get_mut(&to) {
            n.handle_message(now, m).unwrap();
            self.drain(to);
        }
    }
    /// Delivers queued messages matching `ok` (dropping those matching `drop`) until quiet.
    pub fn pump(&mut self, ok: impl Fn(&Message) -> bool, drop: impl Fn(&Message) -> bool) {
        loop {
            let pos = self.net.iter().position(|m| ok(m) || drop(m));
            let Some(p) = pos else { break };
            let m = self.net.remove(p);
            if drop(&m) {
                continue;
            }
            self.deliver_one(m);
        }
    }
    /// Delivers every queued message until the network is quiet.
    pub fn all(&mut self) {
        self.pump(|_| true, |_| false);
    }
    /// Advances the clock.
    pub fn advance(&mut self, us: u64) {
        self.now = self.now.add_us(us);
    }
    /// Sends a request to node `id`.
    pub fn request(&mut self, id: u64, r: Request) -> RequestId {
        let rid = RequestId(self.next_req);
        self.next_req += 1;
        let now = self.now;
        self.nodes.get_mut(&id).unwrap().handle_request(now, rid, r);
        self.drain(id);
        rid
    }
    /// The reply to `rid`, if it came.
    pub fn reply(&self, rid: RequestId) -> Option<&Reply<RegisterOutput>> {
        self.replies.iter().map(|(_, r)| r).find(|r| r.id == rid)
    }
    /// Node `id`.
    pub fn node(&self, id: u64) -> &N {
        &self.nodes[&id]
    }
    /// `rounds` times: advance 30 ms (a heartbeat interval), run the timers of `ids`, and
    /// deliver everything.
    pub fn heartbeat_rounds(&mut self, rounds: usize, ids: &[u64]) {
        for _ in 0..rounds {
            self.advance(30_000);
            for id in ids {
                self.tick(*id);
            }
            self.all();
        }
    }

    /// Elects `id` by running its election timer out.
    pub fn elect(&mut self, id: u64) {
        self.advance(400_000);
        self.tick(id);
        self.all();
        assert_eq!(self.node(id).role(), Role::Leader);
    }
}

/// A write of `value` to register `key`.
pub fn write(key: u64, value: u64) -> Request {
    Request::Propose(RegisterCommand::Write { key, value }.encode())
}

/// A read of register `key`.
pub fn read(key: u64, consistency: Consistency) -> Request {
    Request::Read { query: RegisterQuery { key }.encode(), consistency }
}

/// A message in group 0.
pub fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message { group: GroupId(0), from: NodeId(from), to: NodeId(to), term, body }
}

/// A no-op entry.
pub fn noop(term: u64, index: u64) -> Entry {
    Entry { term, index, time: Instant::ZERO, payload: Payload::Noop }
}
