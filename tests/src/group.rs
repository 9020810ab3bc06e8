//! A hand-driven group of [`Replica`]s serving real sans-IO [`Client`]s, for scripted
//! tests that need exact control: the test decides what happens to every client request
//! (lost, delivered once, duplicated) and to every answer (delivered, or lost with its
//! connection), which node crashes and restarts, and when time moves. Every client
//! request and answer crosses the real wire format.

use crate::harness::Disk;
use concord_core::client::{Client, ClientConfig, ClientEvent, OpId};
use concord_core::machine::{Concord, Limits, MachineBugs};
use concord_core::raft::Membership;
use concord_core::server::{ConnId, Replica, ReplicaOutputs, ServeLimits};
use concord_core::wire::{decode_frame, encode_frame, ClientRequest, Envelope, ServerMessage};
use concord_core::{Config, GroupId, Instant, Message, Node, NodeId, Role, Start, StorageWrite};
use std::collections::BTreeMap;

/// The group id every node and client uses.
pub const GROUP: GroupId = GroupId(7);

/// What happens to one client request as it is sent: the delays, in µs, after which a
/// copy is delivered (empty: it is lost).
pub type RequestFate = Box<dyn FnMut(usize, u64, &ClientRequest) -> Vec<u64>>;
/// Whether an answer from a node to a client arrives; `false` breaks that connection
/// first (both ends notice), as a dropped TCP connection would.
pub type AnswerFate = Box<dyn FnMut(u64, usize, &ServerMessage) -> bool>;

/// Encodes and decodes `e` as one frame of the real wire format.
fn through_wire(e: Envelope) -> Envelope {
    const FRAME_BYTES_MAX: usize = 1 << 20;
    let mut buf = Vec::new();
    encode_frame(&e, FRAME_BYTES_MAX, &mut buf).expect("encodes");
    match decode_frame(&buf, FRAME_BYTES_MAX) {
        Ok(Some((back, used))) if used == buf.len() && back == e => back,
        other => panic!("a frame did not decode to what was sent: {other:?}"),
    }
}

enum Flight {
    Peer(Message),
    Request { client: usize, node: u64, req: ClientRequest },
    Answer { node: u64, client: usize, msg: ServerMessage },
}

/// A group of replicas on one virtual clock, with clients.
pub struct Group {
    /// Virtual time, µs.
    pub now: u64,
    /// Running replicas by node id.
    pub replicas: BTreeMap<u64, Replica>,
    /// Every node's disk; writes are durable as soon as they are polled.
    pub disks: BTreeMap<u64, Disk>,
    /// The clients, numbered from 0.
    pub clients: Vec<Client>,
    /// Events each client reported, in order.
    pub events: Vec<Vec<ClientEvent>>,
    /// Decides the fate of each client request.
    pub request_fate: RequestFate,
    /// Decides the fate of each answer.
    pub answer_fate: AnswerFate,
    /// One-way latency of peer messages and answers, µs.
    pub latency_us: u64,
    bugs: MachineBugs,
    flights: Vec<(u64, u64, Flight)>,
    next_flight: u64,
    restarts: u64,
}

/// Where a replica's outputs go in the group: its disk (durable at once) and the flights
/// leaving it.
struct Drained<'a> {
    node: u64,
    disk: &'a mut Disk,
    out: Vec<Flight>,
}

impl ReplicaOutputs for Drained<'_> {
    fn persist(&mut self, write: StorageWrite) -> bool {
        self.disk.apply(&write);
        true
    }
    fn send(&mut self, message: Message) {
        self.out.push(Flight::Peer(message));
    }
    fn client(&mut self, conn: ConnId, msg: ServerMessage) {
        self.out.push(Flight::Answer { node: self.node, client: conn.0 as usize, msg });
    }
}

impl Group {
    /// Nodes `1..=nodes` forming a new group, and `clients` clients with `ttl_ms`
    /// sessions. Requests are delivered once and answers always arrive until the test
    /// changes [`Group::request_fate`] or [`Group::answer_fate`].
    pub fn new(nodes: u64, clients: usize, ttl_ms: u64, bugs: MachineBugs) -> Self {
        let ids: Vec<NodeId> = (1..=nodes).map(NodeId).collect();
        let mut g = Self {
            now: 0,
            replicas: BTreeMap::new(),
            disks: BTreeMap::new(),
            clients: Vec::new(),
            events: vec![Vec::new(); clients],
            request_fate: Box::new(|_, _, _| vec![500]),
            answer_fate: Box::new(|_, _, _| true),
            latency_us: 500,
            bugs,
            flights: Vec::new(),
            next_flight: 0,
            restarts: 0,
        };
        let m = Membership::with_voters(ids.clone());
        for id in 1..=nodes {
            g.disks.insert(id, Disk::default());
            g.boot(id, Start::NewCluster(m.clone()));
        }
        for c in 0..clients {
            let mut cc = ClientConfig::for_nodes(GROUP, &ids);
            cc.session_ttl_ms = ttl_ms;
            cc.request_timeout_us = 300_000;
            cc.retry_backoff_us = 20_000;
            let mut client = Client::new(cc, Instant::ZERO, 1_000 + c as u64);
            client.open_session(Instant::ZERO);
            g.clients.push(client);
            g.drain_client(c);
        }
        g
    }

    fn boot(&mut self, id: u64, start: Start) {
        let mut machine = Concord::new(Limits::default()).expect("the default limits are valid");
        machine.inject(self.bugs);
        let cfg = Config::new(NodeId(id), GROUP);
        let seed = id * 7919 + self.restarts;
        let node = Node::new(cfg, machine, start, Instant::from_micros(self.now), seed).expect("node starts");
        self.replicas.insert(id, Replica::new(node, ServeLimits::default()));
        self.drain_node(id);
    }

    fn send(&mut self, delay: u64, f: Flight) {
        self.next_flight += 1;
        self.flights.push((self.now + delay, self.next_flight, f));
    }

    fn drain_node(&mut self, id: u64) {
        let Some(r) = self.replicas.get_mut(&id) else { return };
        let disk = self.disks.get_mut(&id).expect("every node has a disk");
        let mut drained = Drained { node: id, disk, out: Vec::new() };
        r.drive(&mut drained).expect("a write completes once");
        for f in drained.out {
            match f {
                Flight::Answer { node, client, msg } => {
                    let Envelope::Response(msg) = through_wire(Envelope::Response(msg)) else {
                        panic!("an answer came back as something else")
                    };
                    if (self.answer_fate)(node, client, &msg) {
                        let l = self.latency_us;
                        self.send(l, Flight::Answer { node, client, msg });
                    } else {
                        self.break_connection(node, client);
                    }
                }
                f => {
                    let l = self.latency_us;
                    self.send(l, f);
                }
            }
        }
    }

    fn drain_client(&mut self, c: usize) {
        let mut sends = Vec::new();
        while let Some(s) = self.clients[c].poll_transmit() {
            sends.push(s);
        }
        while let Some(e) = self.clients[c].poll_event() {
            self.events[c].push(e);
        }
        for (peer, req) in sends {
            let node = self.clients[c].peer_node(peer).expect("endpoints are configured by node id");
            let Envelope::Request(req) = through_wire(Envelope::Request(req)) else {
                panic!("a request came back as something else")
            };
            for delay in (self.request_fate)(c, node.0, &req) {
                self.send(delay, Flight::Request { client: c, node: node.0, req: req.clone() });
            }
        }
    }

    /// The connection between `node` and `client` breaks: both ends notice, and nothing
    /// still in flight on it arrives.
    pub fn break_connection(&mut self, node: u64, client: usize) {
        self.flights.retain(|(_, _, f)| match f {
            Flight::Answer { node: n, client: c, .. } | Flight::Request { node: n, client: c, .. } => {
                !(*n == node && *c == client)
            }
            Flight::Peer(_) => true,
        });
        if let Some(r) = self.replicas.get_mut(&node) {
            r.handle_disconnect(ConnId(client as u64));
        }
        let now = Instant::from_micros(self.now);
        let peer = self.clients[client].peer_of(NodeId(node)).expect("a configured node");
        self.clients[client].handle_disconnect(now, peer);
        self.drain_node(node);
        self.drain_client(client);
    }

    /// Node `id` crashes: its process and connections go, its disk stays.
    pub fn crash(&mut self, id: u64) {
        self.replicas.remove(&id);
        self.flights.retain(|(_, _, f)| match f {
            Flight::Peer(m) => m.to.0 != id && m.from.0 != id,
            Flight::Request { node, .. } | Flight::Answer { node, .. } => *node != id,
        });
        let now = Instant::from_micros(self.now);
        for c in 0..self.clients.len() {
            let peer = self.clients[c].peer_of(NodeId(id)).expect("a configured node");
            self.clients[c].handle_disconnect(now, peer);
            self.drain_client(c);
        }
    }

    /// Node `id` restarts from its disk.
    pub fn restart(&mut self, id: u64) {
        assert!(!self.replicas.contains_key(&id), "n{id} is running");
        self.restarts += 1;
        let persisted = self.disks[&id].persisted();
        self.boot(id, Start::Restart(persisted));
    }

    /// The current leader, if one of the running nodes leads (the highest term wins).
    pub fn leader(&self) -> Option<u64> {
        self.replicas
            .iter()
            .filter(|(_, r)| r.node().role() == Role::Leader)
            .max_by_key(|(_, r)| r.node().term())
            .map(|(id, _)| *id)
    }

    /// Runs everything due up to `now + us`, in 1 ms steps.
    pub fn run_for(&mut self, us: u64) {
        let end = self.now + us;
        while self.now < end {
            self.now = (self.now + 1_000).min(end);
            self.step();
        }
    }

    /// Runs until `done` holds or `max_us` passes; whether it held.
    pub fn run_until(&mut self, max_us: u64, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + max_us;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.now += 1_000;
            self.step();
        }
        done(self)
    }

    fn step(&mut self) {
        let now = self.now;
        while let Some(pos) = self
            .flights
            .iter()
            .enumerate()
            .filter(|(_, (at, _, _))| *at <= now)
            .min_by_key(|(_, (at, seq, _))| (*at, *seq))
            .map(|(i, _)| i)
        {
            let (_, _, f) = self.flights.swap_remove(pos);
            self.deliver(f);
        }
        let instant = Instant::from_micros(now);
        let ids: Vec<u64> = self.replicas.keys().copied().collect();
        for id in ids {
            let r = self.replicas.get_mut(&id).expect("running");
            if r.poll_timeout() <= instant {
                r.handle_timeout(instant);
                self.drain_node(id);
            }
        }
        for c in 0..self.clients.len() {
            if self.clients[c].poll_timeout() <= instant {
                self.clients[c].handle_timeout(instant);
                self.drain_client(c);
            }
        }
    }

    fn deliver(&mut self, f: Flight) {
        let now = Instant::from_micros(self.now);
        match f {
            Flight::Peer(m) => {
                let to = m.to.0;
                if let Some(r) = self.replicas.get_mut(&to) {
                    r.handle_message(now, m).expect("peer message of this group");
                    self.drain_node(to);
                }
            }
            Flight::Request { client, node, req } => {
                if let Some(r) = self.replicas.get_mut(&node) {
                    r.handle_client(now, ConnId(client as u64), req);
                    self.drain_node(node);
                }
            }
            Flight::Answer { node, client, msg } => {
                let peer = self.clients[client].peer_of(NodeId(node)).expect("a configured node");
                self.clients[client].handle_message(now, peer, msg);
                self.drain_client(client);
            }
        }
    }

    /// Submits `op` from client `c`.
    pub fn submit(&mut self, c: usize, op: concord_core::machine::Op) -> OpId {
        let now = Instant::from_micros(self.now);
        let id = self.clients[c].submit(now, op);
        self.drain_client(c);
        id
    }

    /// Submits `op` from client `c`, to run only in `session`.
    pub fn submit_in(
        &mut self,
        c: usize,
        op: concord_core::machine::Op,
        session: concord_core::machine::SessionId,
    ) -> OpId {
        let now = Instant::from_micros(self.now);
        let id = self.clients[c].submit_in(now, op, session);
        self.drain_client(c);
        id
    }

    /// Client `c` closes its session.
    pub fn close(&mut self, c: usize) -> OpId {
        let now = Instant::from_micros(self.now);
        let id = self.clients[c].close(now);
        self.drain_client(c);
        id
    }

    /// Issues a read from client `c`.
    pub fn read(
        &mut self,
        c: usize,
        q: concord_core::machine::QueryOp,
        consistency: concord_core::Consistency,
    ) -> OpId {
        let now = Instant::from_micros(self.now);
        let id = self.clients[c].read(now, q, consistency);
        self.drain_client(c);
        id
    }

    /// The result client `c` got for `op`, if it finished.
    pub fn result(&self, c: usize, op: OpId) -> Option<&ClientEvent> {
        self.events[c].iter().find(|e| matches!(e, ClientEvent::Done { op: o, .. } if *o == op))
    }

    /// Whether client `c` has an open session.
    pub fn has_session(&self, c: usize) -> bool {
        self.clients[c].session().is_some()
    }
}
