//! The sans-IO client: sessions, sequencing, leader discovery, retries and timeouts, for
//! every host to drive.
//!
//! ```text
//! host loop:
//!   client.submit(now, op) / client.read(now, query, consistency) / client.watch(…)
//!   client.handle_message(now, peer, msg)   // a ServerMessage from endpoint `peer`
//!   client.handle_disconnect(now, peer)     // the connection to `peer` broke or failed
//!   client.handle_timeout(now)              // when poll_timeout() is due
//!   while let Some((peer, req)) = client.poll_transmit() {
//!       send req to client.peer_addr(peer)  // open a connection there if none is open
//!   }
//!   while let Some(event) = client.poll_event() { deliver results, signals, … }
//!   sleep until client.poll_timeout()
//! ```
//!
//! **Endpoints.** The client starts from the endpoints it is given ([`Endpoint`]: an
//! address in the host's terms, with the node's id if known), probes them all at once,
//! and aims requests only at endpoints that answered; the answers name the leader and
//! the other members' client addresses, so one reachable endpoint is enough (see
//! [`peers`]). A host keys its connections by [`Peer`].
//!
//! **Session.** The client opens a session when a command first needs one (or when asked,
//! [`Client::open_session`]), and keeps it alive with a keep-alive every third of its TTL
//! when it sends nothing else. Every command carries
//! the session and the next sequence number, so a retry — after a timeout, a lost
//! connection, `OutcomeUnknown`, or a leader change — is applied at most once. If the
//! session is lost (expired or closed), [`ClientEvent::SessionLost`] reports it, the
//! commands in flight fail with [`Error::SessionLost`] (they may or may not have been
//! applied), and a new session is opened for later commands. A session opened twice (a
//! retried open whose first attempt was applied after all) is closed again at once.
//!
//! **Routing.** Commands and linearizable reads go to the leader: the one a probe named,
//! then wherever a `NotLeader` answer points. A request unanswered within
//! `request_timeout_us` is resent to another endpoint that answers, and the silent one is
//! probed again. Stale reads go to any node.
//!
//! **Queued commands.** A command the machine queues (a lock wait) is answered `Pending`;
//! its result arrives as a push from the node that answered. When the client moves to
//! another node, it resends its pending commands there: the machine answers from the
//! session's reply cache and the new node takes over the notification.

use crate::machine::election::ElectionEvent;
use crate::machine::kv::{WatchEvent, WatchFilter};
use crate::machine::session::SessionOp;
use crate::machine::signal::{SignalDelivery, SignalOp};
use crate::machine::{Command, Error, Op, Outcome, Query, QueryOp, Reply, SessionId, SessionRef};
use crate::raft::{Consistency, GroupId, LogIndex, NodeId, RequestError, Term};
use crate::time::Instant;
use crate::wire::{Answer, ClientError, ClientRequest, ClusterView, Push, RequestBody, ServerMessage};
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

pub mod calls;
pub mod peers;

pub use peers::{Endpoint, Health, Peer, PeerError};
use peers::{PeerTiming, Peers};

/// How a client behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The group to talk to.
    pub group: GroupId,
    /// Where to start: any reachable one is enough, the others are learnt from it.
    pub endpoints: Vec<Endpoint>,
    /// TTL of the client's session, in milliseconds.
    pub session_ttl_ms: u64,
    /// Resend a request not answered within this long, in microseconds.
    pub request_timeout_us: u64,
    /// Wait this long before retrying after `Busy`, `LeaderNotReady`, an unknown leader
    /// and the like, in microseconds.
    pub retry_backoff_us: u64,
    /// Commands sent and not yet answered at once; later ones wait in the client. Keep it
    /// below the group's `session_replies_max`.
    pub commands_in_flight_max: usize,
    /// An endpoint that does not answer a probe within this long is avoided, in
    /// microseconds. Probes are answered without Raft, so this can be short.
    pub probe_timeout_us: u64,
    /// How often an endpoint that is silent or refuses connections is probed again, in
    /// microseconds.
    pub reprobe_interval_us: u64,
    /// Endpoints the client keeps (given and learnt); later ones are ignored.
    pub endpoints_max: usize,
    /// Operations (commands, reads, streams) the client holds at once, sent or waiting;
    /// one more fails at once with [`ClientError::TooManyOperations`].
    pub operations_max: usize,
    /// Which of the addresses members advertise this client learns: the one its
    /// transport speaks.
    pub learns: AddrKind,
}

/// Which address a member advertises a client learns and dials.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddrKind {
    /// The client address (`host:port` for the framed TCP protocol).
    #[default]
    Client,
    /// The WebSocket URL (`ws://host:port/ws`), for clients in browsers and edge runtimes.
    Web,
}

impl ClientConfig {
    /// Defaults for `endpoints` of `group`: a 10 s session, 1 s request timeout, 500 ms
    /// probe timeout, probes of silent endpoints every second.
    pub fn new(group: GroupId, endpoints: Vec<Endpoint>) -> Self {
        Self {
            group,
            endpoints,
            session_ttl_ms: 10_000,
            request_timeout_us: 1_000_000,
            retry_backoff_us: 50_000,
            commands_in_flight_max: 64,
            probe_timeout_us: 500_000,
            reprobe_interval_us: 1_000_000,
            endpoints_max: 64,
            operations_max: 10_000,
            learns: AddrKind::Client,
        }
    }

    /// Defaults for nodes known by id only, each reached at the address that is its id
    /// in decimal: for hosts (simulators, tests) that route by node id.
    pub fn for_nodes(group: GroupId, nodes: &[NodeId]) -> Self {
        Self::new(group, nodes.iter().map(|n| Endpoint::node(*n, alloc::format!("{}", n.0))).collect())
    }
}

/// Identifies an operation submitted to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// What the client reports to its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// An endpoint answered its probe: `node` is reachable there. The first one tells a
    /// host that the cluster can be reached at all.
    Reached {
        /// The node.
        node: NodeId,
        /// Its endpoint.
        peer: Peer,
    },
    /// A session is open; commands flow.
    SessionOpened(SessionId),
    /// The session expired or was closed: everything it owned (locks, permits, …) is
    /// released. A new one is opened when a command needs one.
    SessionLost(SessionId),
    /// A command or read finished. `index` is the log index where the command took
    /// effect — for a retry answered from the reply cache, where the original did — or the
    /// applied index the read saw (0 if it failed before reaching the machine).
    Done {
        /// The operation.
        op: OpId,
        /// Its result.
        result: Result<Reply, Error>,
        /// Where in the log.
        index: LogIndex,
        /// The session the command ran in (`None` for a read or a sessionless command).
        /// What the reply grants (a lock, permits, leadership) belongs to this session
        /// and is lost with it.
        session: Option<SessionId>,
        /// The machine queued it (a lock wait, …) and a later entry, at `index`, completed
        /// it; `false` when it completed in the entry that applied it.
        queued: bool,
        /// The commands that give back what the reply granted (a lock, permits, a hold,
        /// leadership, a subscription), to run in `session` ([`Client::submit_in`]);
        /// empty when nothing was granted ([`calls::releases`]).
        releases: Vec<Op>,
    },
    /// An operation failed for a reason outside the state machine (wrong group, a
    /// proposal too large, a watch that cannot start, an administrative request refused).
    Failed {
        /// The operation.
        op: OpId,
        /// Why.
        error: ClientError,
    },
    /// An administrative request was answered.
    Admin {
        /// The operation.
        op: OpId,
        /// The answer.
        answer: Answer,
    },
    /// A signal for subscription `op` (the operation that subscribed), in log order,
    /// after that operation's `Done`.
    Signal {
        /// The subscribe operation.
        op: OpId,
        /// The signal.
        delivery: SignalDelivery,
    },
    /// A change for a watch.
    Watch {
        /// The watch.
        op: OpId,
        /// The change.
        event: WatchEvent,
    },
    /// A change for an election observer.
    Election {
        /// The observer.
        op: OpId,
        /// The change.
        event: ElectionEvent,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// A command; `seq` is assigned when it is first sent.
    Command {
        op: Op,
        seq: u64,
    },
    /// The client's own session traffic.
    OpenSession,
    KeepAlive,
    /// Closes a session opened twice by a retried open (see the module docs).
    CloseExtra(SessionId),
    Query {
        query: QueryOp,
        consistency: Consistency,
    },
    Watch {
        filter: WatchFilter,
        next: Option<u64>,
    },
    Observe {
        name: String,
    },
    /// An administrative request, for the leader or, pinned, for one node.
    Admin {
        body: RequestBody,
        node: Option<NodeId>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting to be sent (no session yet, window full, or backing off until `at`).
    Waiting { at: Instant },
    /// Sent to `peer`; resend if unanswered by `deadline`.
    Sent { peer: Peer, deadline: Instant },
    /// Queued by the machine; the completion comes from `peer`.
    Pending { peer: Peer },
    /// A stream (watch, observer) served by `peer`.
    Streaming { peer: Peer },
}

#[derive(Clone, Debug)]
struct Pending {
    kind: Kind,
    phase: Phase,
    /// The session the command was sequenced in.
    session: Option<SessionId>,
}

impl Pending {
    /// A command not sequenced yet and not pinned to a session: it runs in the session
    /// open when it is sent, which is opened for it if there is none.
    fn needs_new_session(&self) -> bool {
        matches!(self.kind, Kind::Command { seq: 0, .. }) && self.session.is_none()
    }
}

/// The sans-IO client of one group.
pub struct Client {
    cfg: ClientConfig,
    now: Instant,
    peers: Peers,
    session: Option<SessionId>,
    next_seq: u64,
    next_op: u64,
    next_request: u64,
    ops: BTreeMap<OpId, Pending>,
    /// Requests sent and unanswered: the operation and when the request left.
    requests: BTreeMap<u64, (OpId, Instant)>,
    /// Probes sent and unanswered: request id → endpoint.
    probes: BTreeMap<u64, Peer>,
    /// Session opens sent and not yet answered, to close a session opened twice.
    opens: VecDeque<u64>,
    /// Sequence → operation, for completions pushed by nodes.
    seqs: BTreeMap<u64, OpId>,
    /// The node believed to lead, and the term it was learnt in (0 when from a redirect).
    leader: Option<NodeId>,
    leader_term: Term,
    cursor: usize,
    last_sent: Instant,
    /// The last signal index delivered per subscription (nodes may both push one).
    signals_seen: BTreeMap<u64, LogIndex>,
    /// Subscriptions of the session: (session, subscription id) → the subscribe operation.
    subscriptions: BTreeMap<(SessionId, u64), OpId>,
    /// Signals that arrived while a subscribe was unanswered: they may be its first ones.
    early_signals: VecDeque<SignalDelivery>,
    /// Operations whose caller stopped waiting: what they grant is given back at once.
    abandoned: BTreeSet<OpId>,
    out: VecDeque<(Peer, ClientRequest)>,
    events: VecDeque<ClientEvent>,
    /// [`Client::close`] was called: a lost session is not replaced.
    closing: bool,
    /// [`Client::open_session`] was called: a session is wanted even with no command.
    session_requested: bool,
    /// When the request that last proved the session alive left. The cluster keeps the
    /// session at least a TTL after applying it; past [`Client::lease_deadline`] the
    /// client can no longer be sure, and reports the session lost.
    confirmed: Instant,
}

const SESSION_OP: OpId = OpId(0);
const KEEP_ALIVE_OP: OpId = OpId(1);
/// Session opens remembered to catch a second session; older ones are forgotten.
const OPENS_REMEMBERED: usize = 16;
/// Signals kept for subscriptions whose reply has not arrived yet; the oldest go first
/// (a subscription's reply follows its first signals by a round trip at most).
const EARLY_SIGNALS_MAX: usize = 1024;

impl Client {
    /// A client that starts probing its endpoints at once.
    pub fn new(cfg: ClientConfig, now: Instant, seed: u64) -> Self {
        let timing = PeerTiming {
            probe_timeout_us: cfg.probe_timeout_us,
            reprobe_interval_us: cfg.reprobe_interval_us,
            endpoints_max: cfg.endpoints_max.max(1),
            learns: cfg.learns,
        };
        let peers = Peers::new(cfg.endpoints.clone(), timing);
        let cursor = if peers.len() == 0 { 0 } else { (seed % peers.len() as u64) as usize };
        let mut client = Self {
            cfg,
            now,
            peers,
            session: None,
            next_seq: 1,
            next_op: 2,
            next_request: 1,
            ops: BTreeMap::new(),
            requests: BTreeMap::new(),
            probes: BTreeMap::new(),
            opens: VecDeque::new(),
            seqs: BTreeMap::new(),
            leader: None,
            leader_term: 0,
            cursor,
            last_sent: now,
            signals_seen: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            early_signals: VecDeque::new(),
            abandoned: BTreeSet::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            closing: false,
            session_requested: false,
            confirmed: now,
        };
        client.flush();
        client
    }

    /// The open session, if any.
    pub fn session(&self) -> Option<SessionId> {
        self.session
    }

    /// The node believed to lead.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// Operations submitted and not finished (streams included).
    pub fn in_flight(&self) -> usize {
        self.ops.keys().filter(|id| **id != SESSION_OP && **id != KEEP_ALIVE_OP).count()
    }

    /// The address of endpoint `peer`, in the host's terms.
    pub fn peer_addr(&self, peer: Peer) -> Option<&str> {
        self.peers.get(peer).map(|p| p.addr.as_str())
    }

    /// The node behind endpoint `peer`, if known.
    pub fn peer_node(&self, peer: Peer) -> Option<NodeId> {
        self.peers.node(peer)
    }

    /// The first endpoint of `node` the client learnt, if it knows one.
    pub fn peer_of(&self, node: NodeId) -> Option<Peer> {
        self.peers.iter().find(|(_, p)| p.node == Some(node)).map(|(peer, _)| peer)
    }

    /// Every endpoint: its handle, address, node (if known), health, and why it was last
    /// found unusable (for a host's error messages).
    pub fn endpoints(
        &self,
    ) -> impl Iterator<Item = (Peer, &str, Option<NodeId>, Health, Option<&PeerError>)> {
        self.peers.iter().map(|(peer, p)| (peer, p.addr.as_str(), p.node, p.health, p.last_error.as_ref()))
    }

    /// Whether every endpoint refused this client (it asks for a group none serves).
    pub fn all_refused(&self) -> bool {
        self.peers.all_refused()
    }

    /// Opens a session now rather than when a command first needs one.
    pub fn open_session(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.session.is_none() {
            self.closing = false;
            self.session_requested = true;
            self.want_session();
        }
        self.flush();
    }

    /// Closes the session: everything it owns is released at once rather than when its
    /// TTL runs out. No new session is opened afterwards, whatever happens to this one.
    /// With no session open or opening, the close succeeds at once.
    pub fn close(&mut self, now: Instant) -> OpId {
        self.closing = true;
        if self.session.is_none() && !self.ops.contains_key(&SESSION_OP) {
            self.now = self.now.max(now);
            let id = self.new_op_id();
            self.events.push_back(ClientEvent::Done {
                op: id,
                result: Ok(Reply::Unit),
                index: 0,
                session: None,
                queued: false,
                releases: Vec::new(),
            });
            return id;
        }
        self.submit(now, Op::Session(SessionOp::Close))
    }

    /// Learns another endpoint (a node added to the cluster later, say): it is probed,
    /// joins the rotation once it answers, and a redirect to its node is followed.
    pub fn add_endpoint(&mut self, now: Instant, endpoint: Endpoint) -> Option<Peer> {
        self.now = self.now.max(now);
        let peer = self.peers.add(endpoint);
        self.flush();
        peer
    }

    /// Submits a command; it is sent once the session is open.
    pub fn submit(&mut self, now: Instant, op: Op) -> OpId {
        self.start(now, Kind::Command { op, seq: 0 })
    }

    /// Submits a command that may only run in `session`: if the client's session is
    /// another one by the time the command would be sent (`session` was lost), it fails
    /// with [`Error::SessionLost`] instead. Releasing what a session owns goes this way, so
    /// that a release can never reach a newer session's hold of the same thing.
    pub fn submit_in(&mut self, now: Instant, op: Op, session: SessionId) -> OpId {
        self.start_in(now, Kind::Command { op, seq: 0 }, Some(session))
    }

    /// Sends a typed call's request (reads with `consistency`); decode the reply of its
    /// [`ClientEvent::Done`] with the call's decoder.
    pub fn call(&mut self, now: Instant, request: calls::Request, consistency: Consistency) -> OpId {
        match request {
            calls::Request::Command(op) => self.submit(now, op),
            calls::Request::Read(query) => self.read(now, query, consistency),
        }
    }

    /// The caller of `op` stopped waiting (its future was dropped, its promise aborted):
    /// its result is not reported, and whatever it grants when it completes is given
    /// back at once, in the session that got it. An operation not sent yet is dropped.
    pub fn abandon(&mut self, now: Instant, op: OpId) {
        self.now = self.now.max(now);
        let Some(p) = self.ops.get(&op) else { return };
        match (&p.kind, p.phase) {
            (
                Kind::Command { seq: 0, .. } | Kind::Query { .. } | Kind::Admin { .. },
                Phase::Waiting { .. },
            ) => {
                self.ops.remove(&op);
                // A session nobody needs any more is not opened.
                let unsent_open =
                    matches!(self.ops.get(&SESSION_OP), Some(p) if matches!(p.phase, Phase::Waiting { .. }));
                if unsent_open
                    && !self.session_requested
                    && !self.ops.values().any(Pending::needs_new_session)
                {
                    self.ops.remove(&SESSION_OP);
                }
            }
            (Kind::Watch { .. } | Kind::Observe { .. }, _) => self.cancel(now, op),
            // A read or admin request in flight grants nothing: its answer is ignored.
            (Kind::Query { .. } | Kind::Admin { .. }, _) => {
                self.ops.remove(&op);
                self.requests.retain(|_, (o, _)| *o != op);
            }
            _ => {
                self.abandoned.insert(op);
            }
        }
    }

    /// Gives back what a reply granted ([`ClientEvent::Done`]'s `releases`) in `session`,
    /// for a host that learnt only on delivery that nobody waits for it any more.
    pub fn give_back(&mut self, now: Instant, releases: Vec<Op>, session: SessionId) {
        self.now = self.now.max(now);
        self.queue_releases(releases, session);
        self.flush();
    }

    /// Queues the releases of a grant nobody took, in `session`. Not counted against
    /// `operations_max`: a grant must go back even while callers fill the client, and
    /// each grant has a bounded number of releases.
    fn queue_releases(&mut self, releases: Vec<Op>, session: SessionId) {
        for op in releases {
            let id = self.new_op_id();
            let kind = Kind::Command { op, seq: 0 };
            self.ops
                .insert(id, Pending { kind, phase: Phase::Waiting { at: self.now }, session: Some(session) });
        }
    }

    /// Submits a read.
    pub fn read(&mut self, now: Instant, query: QueryOp, consistency: Consistency) -> OpId {
        self.start(now, Kind::Query { query, consistency })
    }

    /// Opens a watch from revision `from` (history, then live) or from now on.
    pub fn watch(&mut self, now: Instant, filter: WatchFilter, from: Option<u64>) -> OpId {
        self.start(now, Kind::Watch { filter, next: from })
    }

    /// Opens an observer of election `name`.
    pub fn observe(&mut self, now: Instant, name: String) -> OpId {
        self.start(now, Kind::Observe { name })
    }

    /// Sends an administrative request (status, membership, leadership transfer) to the
    /// leader.
    pub fn admin(&mut self, now: Instant, body: RequestBody) -> OpId {
        self.start(now, Kind::Admin { body, node: None })
    }

    /// Sends a request that a node answers itself, without Raft (`RequestBody::Status`,
    /// `RequestBody::Hello`), to `node` and to no other: it fails with
    /// [`ClientError::NodeUnreachable`] if no endpoint of `node` is known or usable (ask
    /// once the client has reached the cluster and learnt its members), or if `node`
    /// does not answer within the request timeout. It works without a leader or a quorum.
    pub fn admin_at(&mut self, now: Instant, node: NodeId, body: RequestBody) -> OpId {
        self.start(now, Kind::Admin { body, node: Some(node) })
    }

    /// Ends a watch or observer.
    pub fn cancel(&mut self, now: Instant, op: OpId) {
        self.now = self.now.max(now);
        if let Some(p) = self.ops.remove(&op) {
            if let Phase::Streaming { peer } | Phase::Sent { peer, .. } = p.phase {
                let ids: Vec<u64> =
                    self.requests.iter().filter(|(_, (o, _))| *o == op).map(|(r, _)| *r).collect();
                for id in ids {
                    self.requests.remove(&id);
                    let body = RequestBody::Cancel { id };
                    self.send_raw(peer, body);
                }
            }
        }
    }

    fn new_op_id(&mut self) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        id
    }

    fn start(&mut self, now: Instant, kind: Kind) -> OpId {
        self.start_in(now, kind, None)
    }

    /// Starts `kind`; a command with a `session` may only run in that session.
    fn start_in(&mut self, now: Instant, kind: Kind, session: Option<SessionId>) -> OpId {
        self.now = self.now.max(now);
        let id = self.new_op_id();
        if self.ops.len() >= self.cfg.operations_max {
            let max = u32::try_from(self.cfg.operations_max).unwrap_or(u32::MAX);
            self.events
                .push_back(ClientEvent::Failed { op: id, error: ClientError::TooManyOperations { max } });
            return id;
        }
        self.ops.insert(id, Pending { kind, phase: Phase::Waiting { at: self.now }, session });
        self.flush();
        id
    }

    /// A message from endpoint `from`.
    pub fn handle_message(&mut self, now: Instant, from: Peer, msg: ServerMessage) {
        self.now = self.now.max(now);
        match msg {
            ServerMessage::Answer { id, result } => self.on_answer(from, id, result),
            ServerMessage::Push(push) => self.on_push(push),
        }
        self.flush();
    }

    /// The connection to `peer` broke (or could not be made): the endpoint is avoided and
    /// probed again after `reprobe_interval_us`, and whatever it was serving moves to
    /// another endpoint after `retry_backoff_us`, so an endpoint that refuses every
    /// connection is neither retried forever nor hammered.
    pub fn handle_disconnect(&mut self, now: Instant, peer: Peer) {
        self.now = self.now.max(now);
        if self.leader.is_some() && self.leader == self.peers.node(peer) {
            self.leader = None;
        }
        let delay = self.peers.reprobe_interval_us();
        self.peers.silent(peer, self.now, delay, PeerError::Disconnected);
        self.probes.retain(|_, p| *p != peer);
        let at = self.now.add_us(self.cfg.retry_backoff_us);
        for p in self.ops.values_mut() {
            match p.phase {
                Phase::Sent { peer: n, .. } | Phase::Pending { peer: n } | Phase::Streaming { peer: n }
                    if n == peer =>
                {
                    p.phase = Phase::Waiting { at };
                }
                _ => {}
            }
        }
        self.flush();
    }

    /// Until when the client can be sure its session lives: a TTL, less a tenth for the
    /// clocks' differing rates, after the last request that proved it alive left. The
    /// cluster keeps the session at least a TTL after applying that request, and new
    /// leaders only extend it, so the cluster cannot have expired it before this.
    pub fn lease_deadline(&self) -> Option<Instant> {
        self.session?;
        let ttl_us = self.cfg.session_ttl_ms * 1000;
        Some(self.confirmed.add_us(ttl_us - ttl_us / 10))
    }

    /// Time passed: give up on silent endpoints and probe them again when due, resend
    /// what timed out, keep the session alive, and give the session up once it can no
    /// longer be known to live (during a partition, say): everything it held must be
    /// presumed released, so [`ClientEvent::SessionLost`] is reported before the cluster
    /// can have handed any of it to someone else.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if let (Some(s), Some(deadline)) = (self.session, self.lease_deadline()) {
            if self.now >= deadline {
                self.session_lost(s);
            }
        }
        if self.peers.expire_probes(self.now) {
            let peers = &self.peers;
            let silent = |p: Peer| matches!(peers.get(p).map(|s| s.health), Some(Health::Silent { .. }));
            self.probes.retain(|_, p| !silent(*p));
            // What was sent to an endpoint that does not even answer a probe will not be
            // answered either: move it on now rather than at its request timeout.
            for p in self.ops.values_mut() {
                if matches!(p.phase, Phase::Sent { peer, .. } if silent(peer)) {
                    p.phase = Phase::Waiting { at: self.now };
                }
            }
            if self.leader.and_then(|l| self.peers.usable_for(l)).is_none() {
                self.leader = None;
            }
        }
        let mut silent = Vec::new();
        let mut unanswered = Vec::new();
        for (id, p) in &mut self.ops {
            if let Phase::Sent { peer, deadline } = p.phase {
                if deadline <= self.now {
                    p.phase = Phase::Waiting { at: self.now };
                    silent.push(peer);
                    if let Kind::Admin { node: Some(node), .. } = p.kind {
                        unanswered.push((*id, node));
                    }
                }
            }
        }
        // A request for one node goes nowhere else.
        for (id, node) in unanswered {
            self.fail(id, ClientError::NodeUnreachable { node });
        }
        if !silent.is_empty() {
            for peer in silent {
                // Probe it again at once: a node that is only slow (a long fsync, a busy
                // leader) answers a probe and is used again.
                self.peers.silent(peer, self.now, 0, PeerError::RequestTimedOut);
                if self.leader.is_some() && self.leader == self.peers.node(peer) {
                    self.leader = None;
                }
            }
            self.rotate();
            self.reroute_pending();
        }
        if let Some(session) = self.session {
            let interval = self.cfg.session_ttl_ms * 1000 / 3;
            if self.now.saturating_since_us(self.last_sent) >= interval
                && !self.ops.contains_key(&KEEP_ALIVE_OP)
            {
                let keep = Pending {
                    kind: Kind::KeepAlive,
                    phase: Phase::Waiting { at: self.now },
                    session: Some(session),
                };
                self.ops.insert(KEEP_ALIVE_OP, keep);
            }
        }
        self.flush();
    }

    /// The next request to send, and the endpoint it goes to. Filled by every `handle_*`
    /// call and by every call that starts an operation.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(Peer, ClientRequest)> {
        self.out.pop_front()
    }

    /// The next event for the host. Filled by `handle_message` (results, pushes, probes
    /// answered), `handle_timeout` (a session given up), `handle_disconnect` and `close`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When to call [`Client::handle_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        let mut next = self.peers.next_deadline();
        for p in self.ops.values() {
            match p.phase {
                Phase::Sent { deadline, .. } => next = next.min(deadline),
                Phase::Waiting { at } if at > self.now => next = next.min(at),
                _ => {}
            }
        }
        if self.session.is_some() && !self.ops.contains_key(&KEEP_ALIVE_OP) {
            next = next.min(self.last_sent.add_us(self.cfg.session_ttl_ms * 1000 / 3));
        }
        if let Some(deadline) = self.lease_deadline() {
            next = next.min(deadline);
        }
        next
    }

    // ----- sending ------------------------------------------------------------------

    /// Where requests go: the leader's endpoint if it is not known to be silent, else the
    /// next endpoint that answered. Stale reads and streams go there too (that connection
    /// is already in use). `None` while no endpoint has answered yet.
    fn target(&self) -> Option<Peer> {
        self.leader.and_then(|l| self.peers.usable_for(l)).or_else(|| self.peers.alive_from(self.cursor))
    }

    fn rotate(&mut self) {
        if self.peers.len() > 0 {
            self.cursor = (self.cursor + 1) % self.peers.len();
        }
    }

    /// Pending commands follow the client to its new node (see the module docs).
    fn reroute_pending(&mut self) {
        let at = self.now;
        let target = self.target();
        for p in self.ops.values_mut() {
            if matches!(p.phase, Phase::Pending { peer } if Some(peer) != target) {
                p.phase = Phase::Waiting { at };
            }
        }
    }

    /// The lowest sequence without any answer yet (the `acked` of commands).
    fn acked(&self) -> u64 {
        self.ops
            .values()
            .filter_map(|p| match (&p.kind, p.phase) {
                (Kind::Command { seq, .. }, Phase::Sent { .. } | Phase::Waiting { .. }) if *seq > 0 => {
                    Some(*seq)
                }
                _ => None,
            })
            .min()
            .unwrap_or(self.next_seq)
    }

    fn commands_unanswered(&self) -> usize {
        self.ops
            .values()
            .filter(|p| matches!((&p.kind, p.phase), (Kind::Command { seq, .. }, Phase::Sent { .. } | Phase::Waiting { .. }) if *seq > 0))
            .count()
    }

    /// Starts opening a session unless one is open or opening.
    fn want_session(&mut self) {
        if self.session.is_none() && !self.ops.contains_key(&SESSION_OP) {
            let open =
                Pending { kind: Kind::OpenSession, phase: Phase::Waiting { at: self.now }, session: None };
            self.ops.insert(SESSION_OP, open);
        }
    }

    /// Probes what is due, then sends everything that is due.
    fn flush(&mut self) {
        for peer in self.peers.due_probes(self.now) {
            let rid = self.send_raw(peer, RequestBody::Hello);
            self.probes.insert(rid, peer);
        }
        if self.session.is_none() && !self.closing && self.ops.values().any(Pending::needs_new_session) {
            self.want_session();
        }
        let ids: Vec<OpId> = self.ops.keys().copied().collect();
        for id in ids {
            let Some(p) = self.ops.get(&id) else { continue };
            let Phase::Waiting { at } = p.phase else { continue };
            if at > self.now {
                continue;
            }
            // A command pinned to a session that is gone fails now, not once the next
            // session opens (which may take long while the cluster is out of reach).
            if let (Kind::Command { seq: 0, .. }, Some(pinned)) = (&p.kind, p.session) {
                if Some(pinned) != self.session {
                    self.finish(id, Err(Error::SessionLost(pinned)), 0, false);
                    continue;
                }
            }
            let needs_session = matches!(p.kind, Kind::Command { .. } | Kind::KeepAlive);
            if needs_session && self.session.is_none() {
                continue;
            }
            let peer = match p.kind {
                Kind::Admin { node: Some(node), .. } => match self.peers.usable_for(node) {
                    Some(peer) => peer,
                    None => {
                        self.fail(id, ClientError::NodeUnreachable { node });
                        continue;
                    }
                },
                _ => match self.target() {
                    Some(peer) => peer,
                    None => continue,
                },
            };
            if let Kind::Command { seq: 0, .. } = p.kind {
                if self.commands_unanswered() >= self.cfg.commands_in_flight_max {
                    continue;
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                self.seqs.insert(seq, id);
                if let Some(p) = self.ops.get_mut(&id) {
                    p.kind = match core::mem::replace(&mut p.kind, Kind::KeepAlive) {
                        Kind::Command { op, .. } => Kind::Command { op, seq },
                        other => other,
                    };
                    p.session = self.session;
                }
            }
            self.send(id, peer);
        }
    }

    fn send(&mut self, id: OpId, peer: Peer) {
        let Some(p) = self.ops.get(&id) else { return };
        let session = p.session.or(self.session);
        let acked = self.acked();
        let body = match &p.kind {
            Kind::Command { op, seq } => {
                let Some(sid) = session else { return };
                RequestBody::Command(Command {
                    session: Some(SessionRef { id: sid, seq: *seq, acked }),
                    op: op.clone(),
                })
            }
            Kind::OpenSession => RequestBody::Command(Command {
                session: None,
                op: Op::Session(SessionOp::Open { ttl_ms: self.cfg.session_ttl_ms }),
            }),
            Kind::KeepAlive => {
                let Some(sid) = session else { return };
                RequestBody::Command(Command {
                    session: Some(SessionRef { id: sid, seq: 0, acked }),
                    op: Op::Session(SessionOp::KeepAlive),
                })
            }
            // A session nobody uses: its first and only command.
            Kind::CloseExtra(sid) => RequestBody::Command(Command {
                session: Some(SessionRef { id: *sid, seq: 1, acked: 1 }),
                op: Op::Session(SessionOp::Close),
            }),
            Kind::Query { query, consistency } => RequestBody::Query {
                query: Query { session: self.session, op: query.clone() },
                consistency: *consistency,
            },
            Kind::Watch { filter, next } => RequestBody::Watch { filter: filter.clone(), from: *next },
            Kind::Observe { name } => RequestBody::Observe { name: name.clone() },
            Kind::Admin { body, .. } => body.clone(),
        };
        let opens = matches!(p.kind, Kind::OpenSession);
        if matches!(body, RequestBody::Command(_)) {
            self.last_sent = self.now;
        }
        let rid = self.send_raw(peer, body);
        if opens {
            if self.opens.len() >= OPENS_REMEMBERED {
                self.opens.pop_front();
            }
            self.opens.push_back(rid);
        }
        self.requests.insert(rid, (id, self.now));
        let deadline = self.now.add_us(self.cfg.request_timeout_us);
        if let Some(p) = self.ops.get_mut(&id) {
            p.phase = Phase::Sent { peer, deadline };
        }
    }

    fn send_raw(&mut self, peer: Peer, body: RequestBody) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        self.out.push_back((peer, ClientRequest { id, group: self.cfg.group, body }));
        id
    }

    // ----- receiving ----------------------------------------------------------------

    fn on_answer(&mut self, from: Peer, rid: u64, result: Result<Answer, ClientError>) {
        if let Some(peer) = self.probes.remove(&rid) {
            self.on_probe(peer, result);
            return;
        }
        self.peers.heard_from(from);
        if let Some(i) = self.opens.iter().position(|r| *r == rid) {
            self.opens.remove(i);
            if let Ok(Answer::Applied { outcome: Outcome::Done(Ok(Reply::Session { id, .. })), .. }) = &result
            {
                if self.session.is_some() || !self.ops.contains_key(&SESSION_OP) {
                    self.close_extra(*id);
                    return;
                }
            }
        }
        let Some(&(id, sent)) = self.requests.get(&rid) else { return };
        let Some(p) = self.ops.get(&id) else {
            self.requests.remove(&rid);
            return;
        };
        let streaming = matches!(p.kind, Kind::Watch { .. } | Kind::Observe { .. });
        if !streaming || result.is_err() {
            self.requests.remove(&rid);
        }
        // An applied command proves the session lived (and its lease was renewed) at least
        // until the request left: the local expiry clock restarts from then.
        if let Ok(Answer::Applied { .. }) = &result {
            match p.kind {
                Kind::OpenSession => self.confirmed = sent,
                _ if p.session.is_some() && p.session == self.session => {
                    self.confirmed = self.confirmed.max(sent);
                }
                _ => {}
            }
        }
        match result {
            Ok(answer) => self.on_success(from, id, answer),
            Err(ClientError::Raft(e)) => self.on_refusal(from, id, e),
            Err(error) => self.fail(id, error),
        }
    }

    /// A second session from a retried open: close it, so it holds no slot until its TTL.
    fn close_extra(&mut self, sid: SessionId) {
        let id = self.new_op_id();
        let close =
            Pending { kind: Kind::CloseExtra(sid), phase: Phase::Waiting { at: self.now }, session: None };
        self.ops.insert(id, close);
    }

    fn on_probe(&mut self, peer: Peer, result: Result<Answer, ClientError>) {
        match result {
            Ok(Answer::Cluster(view)) => self.learn(peer, &view),
            Err(e @ ClientError::WrongGroup { .. }) => self.peers.refused(peer, e),
            // Anything else (an older node, say): it answers, though it tells nothing.
            Ok(_) | Err(_) => {
                let delay = self.peers.reprobe_interval_us();
                self.peers.silent(peer, self.now, delay, PeerError::NoAnswer);
            }
        }
    }

    /// `peer` answered a probe with its view of the group.
    fn learn(&mut self, peer: Peer, view: &ClusterView) {
        if self.peers.answered(peer, view) {
            self.events.push_back(ClientEvent::Reached { node: view.node, peer });
        }
        if let Some(l) = view.leader {
            if view.term >= self.leader_term || self.leader.is_none() {
                self.leader = Some(l);
                self.leader_term = view.term;
            }
        }
    }

    fn on_success(&mut self, from: Peer, id: OpId, answer: Answer) {
        let Some(p) = self.ops.get_mut(&id) else { return };
        match answer {
            Answer::Applied { index, outcome } => {
                if !matches!(p.kind, Kind::Query { .. }) {
                    if let Some(node) = self.peers.node(from) {
                        self.leader = Some(node);
                    }
                }
                match outcome {
                    Outcome::Pending => {
                        p.phase = Phase::Pending { peer: from };
                    }
                    Outcome::Done(result) => self.on_result(id, result, index, false),
                    // A retry: report where the command took effect, not the retry's entry.
                    Outcome::Replayed { result, index, queued } => self.on_result(id, result, index, queued),
                }
            }
            Answer::Read { index, result } => self.finish(id, result, index, false),
            Answer::Watching { revision } => {
                if let Kind::Watch { next, .. } = &mut p.kind {
                    // Resuming elsewhere later continues after what this node covers.
                    if next.is_none() {
                        *next = Some(revision + 1);
                    }
                }
                p.phase = Phase::Streaming { peer: from };
            }
            answer => {
                self.ops.remove(&id);
                self.events.push_back(ClientEvent::Admin { op: id, answer });
            }
        }
    }

    /// A command's machine result.
    /// `queued`: the machine queued the command and a later entry, at `index`, completed it.
    fn on_result(&mut self, id: OpId, result: Result<Reply, Error>, index: LogIndex, queued: bool) {
        let Some(p) = self.ops.get(&id) else { return };
        if let Err(Error::SessionLost(s)) = &result {
            if p.session == Some(*s) || matches!(p.kind, Kind::KeepAlive) {
                let s = *s;
                self.session_lost(s);
                return;
            }
        }
        match (&p.kind, &result) {
            (Kind::OpenSession, Ok(Reply::Session { id: sid, .. })) => {
                let sid = *sid;
                self.ops.remove(&id);
                self.session = Some(sid);
                self.next_seq = 1;
                self.seqs.clear();
                self.last_sent = self.now;
                self.events.push_back(ClientEvent::SessionOpened(sid));
            }
            (Kind::OpenSession, Err(e)) if e.refuses_ttl() => {
                // The client's own TTL is refused: no retry can succeed. What waits for a
                // session fails with the reason.
                let e = e.clone();
                self.ops.remove(&id);
                let waiting: Vec<OpId> =
                    self.ops.iter().filter(|(_, p)| p.needs_new_session()).map(|(op, _)| *op).collect();
                for op in waiting {
                    self.finish(op, Err(e.clone()), 0, false);
                }
            }
            (Kind::OpenSession, _) => {
                // Refused (e.g. the session limit): try again after a pause.
                let at = self.now.add_us(self.cfg.retry_backoff_us.max(1) * 10);
                if let Some(p) = self.ops.get_mut(&id) {
                    p.phase = Phase::Waiting { at };
                }
            }
            (Kind::KeepAlive | Kind::CloseExtra(_), _) => {
                self.ops.remove(&id);
            }
            _ => self.finish(id, result, index, queued),
        }
    }

    fn finish(&mut self, id: OpId, result: Result<Reply, Error>, index: LogIndex, queued: bool) {
        let Some(p) = self.ops.remove(&id) else { return };
        self.requests.retain(|_, (o, _)| *o != id);
        let session = p.session;
        let mut releases = Vec::new();
        if let Kind::Command { seq, op } = &p.kind {
            self.seqs.remove(seq);
            if let Ok(reply) = &result {
                releases = calls::releases(op, reply);
                self.track_subscription(id, op, reply, session);
            }
        }
        if self.abandoned.remove(&id) {
            // Nobody takes the grant: give it back, in the session that got it.
            if let Some(s) = session {
                self.queue_releases(releases, s); // Sent by the flush after this message.
            }
            return;
        }
        self.events.push_back(ClientEvent::Done { op: id, result, index, session, queued, releases });
        self.deliver_early_signals(id);
    }

    /// A subscription was made or ended by `op`: route its signals to `id` from now on
    /// (unless its caller is gone), or stop routing them.
    fn track_subscription(&mut self, id: OpId, op: &Op, reply: &Reply, session: Option<SessionId>) {
        match (op, reply, session) {
            (Op::Signal(SignalOp::Subscribe { .. }), Reply::Subscribed { id: sub }, Some(s))
                if !self.abandoned.contains(&id) =>
            {
                self.subscriptions.insert((s, *sub), id);
            }
            (Op::Signal(SignalOp::Unsubscribe { id: sub }), Reply::Unit, _) => {
                self.subscriptions.retain(|(_, i), _| i != sub);
            }
            _ => {}
        }
    }

    /// Signals that arrived before subscription `op`'s reply, in order, now that it is
    /// known.
    fn deliver_early_signals(&mut self, op: OpId) {
        if self.early_signals.is_empty() || !self.subscriptions.values().any(|o| *o == op) {
            return;
        }
        let early = core::mem::take(&mut self.early_signals);
        for d in early {
            match self.subscriptions.get(&(d.session, d.subscription)) {
                Some(&o) if o == op => self.events.push_back(ClientEvent::Signal { op, delivery: d }),
                _ => self.early_signals.push_back(d),
            }
        }
    }

    /// Whether a subscribe is sent and unanswered (its first signals may come first).
    fn subscribing(&self) -> bool {
        self.ops.values().any(|p| {
            matches!(&p.kind, Kind::Command { op: Op::Signal(SignalOp::Subscribe { .. }), seq } if *seq > 0)
        })
    }

    fn fail(&mut self, id: OpId, error: ClientError) {
        if let Some(p) = self.ops.remove(&id) {
            if let Kind::Command { seq, .. } = p.kind {
                self.seqs.remove(&seq);
            }
            self.requests.retain(|_, (o, _)| *o != id);
            match p.kind {
                Kind::OpenSession => {
                    // The session must open for anything to work: keep trying.
                    let at = self.now.add_us(self.cfg.retry_backoff_us.max(1) * 10);
                    self.ops.insert(
                        id,
                        Pending { kind: Kind::OpenSession, phase: Phase::Waiting { at }, session: None },
                    );
                }
                Kind::KeepAlive | Kind::CloseExtra(_) => {}
                // A failed command granted nothing, and its caller is gone.
                _ if self.abandoned.remove(&id) => {}
                _ => self.events.push_back(ClientEvent::Failed { op: id, error }),
            }
        }
    }

    /// Raft refused or could not settle the request: retry where it makes sense.
    fn on_refusal(&mut self, from: Peer, id: OpId, e: RequestError) {
        let backoff = self.now.add_us(self.cfg.retry_backoff_us);
        let from_node = self.peers.node(from);
        let at = match e {
            RequestError::NotLeader { leader: Some(l) } if Some(l) != from_node => {
                self.leader = Some(l);
                self.leader_term = 0;
                self.reroute_pending();
                if self.peers.usable_for(l).is_some() {
                    self.now
                } else {
                    // Its address is unknown (or it is silent): ask `from` where the
                    // members are, and try again after a pause.
                    if !self.peers.knows(l) {
                        self.probe_now(from);
                    }
                    backoff
                }
            }
            RequestError::NotLeader { .. } => {
                if self.leader.is_none() || self.leader == from_node {
                    self.leader = None;
                    self.rotate();
                }
                backoff
            }
            RequestError::OutcomeUnknown
            | RequestError::Busy
            | RequestError::LeaderNotReady
            | RequestError::TransferInProgress => backoff,
            other => {
                self.fail(id, ClientError::Raft(other));
                return;
            }
        };
        if let Some(p) = self.ops.get_mut(&id) {
            p.phase = Phase::Waiting { at };
        }
    }

    /// Probes `peer` now, whatever its health says (to learn the members it knows).
    fn probe_now(&mut self, peer: Peer) {
        if self.probes.values().any(|p| *p == peer) {
            return;
        }
        let rid = self.send_raw(peer, RequestBody::Hello);
        self.probes.insert(rid, peer);
    }

    fn on_push(&mut self, push: Push) {
        match push {
            Push::Completed { session, seq, result, index } => {
                if self.session != Some(session) {
                    return;
                }
                let Some(&id) = self.seqs.get(&seq) else { return };
                self.on_result(id, result, index, true);
            }
            Push::SessionEnded { session, .. } => {
                if self.session == Some(session) {
                    self.session_lost(session);
                }
            }
            Push::Signal(d) => {
                if self.session != Some(d.session) {
                    return;
                }
                let seen = self.signals_seen.entry(d.subscription).or_insert(0);
                if d.index <= *seen {
                    return;
                }
                *seen = d.index;
                if let Some(&op) = self.subscriptions.get(&(d.session, d.subscription)) {
                    self.events.push_back(ClientEvent::Signal { op, delivery: d });
                } else if self.subscribing() {
                    if self.early_signals.len() >= EARLY_SIGNALS_MAX {
                        self.early_signals.pop_front();
                    }
                    self.early_signals.push_back(d);
                }
            }
            Push::Watch { watch, event } => {
                let Some(&(id, _)) = self.requests.get(&watch) else { return };
                if let Some(Pending { kind: Kind::Watch { next, .. }, .. }) = self.ops.get_mut(&id) {
                    // Nodes serve each watch gap-free in log order; after a move, skip
                    // what was already delivered.
                    if next.is_some_and(|n| event.revision < n) {
                        return;
                    }
                    *next = Some(event.revision + 1);
                    self.events.push_back(ClientEvent::Watch { op: id, event });
                }
            }
            Push::StreamEnded { id, error } => {
                if let Some(&(op, _)) = self.requests.get(&id) {
                    self.fail(op, error);
                }
            }
            Push::Election { observer, event } => {
                if let Some(&(id, _)) = self.requests.get(&observer) {
                    self.events.push_back(ClientEvent::Election { op: id, event });
                }
            }
        }
    }

    fn session_lost(&mut self, lost: SessionId) {
        if self.session != Some(lost) {
            return;
        }
        self.session = None;
        self.events.push_back(ClientEvent::SessionLost(lost));
        let sequenced: BTreeSet<OpId> = self
            .ops
            .iter()
            .filter(|(_, p)| {
                matches!(p.kind, Kind::Command { seq, .. } if seq > 0 || p.session == Some(lost))
                    || matches!(p.kind, Kind::KeepAlive)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in sequenced {
            let closes = self
                .ops
                .get(&id)
                .is_some_and(|p| matches!(&p.kind, Kind::Command { op: Op::Session(SessionOp::Close), .. }));
            if id == KEEP_ALIVE_OP {
                self.ops.remove(&id);
            } else if closes {
                // What a close asks for has happened: the session is gone, and what it
                // held with it. (A close retried after its first try closed the session
                // is answered this way.)
                self.finish(id, Ok(Reply::Unit), 0, false);
            } else {
                self.finish(id, Err(Error::SessionLost(lost)), 0, false);
            }
        }
        self.seqs.clear();
        self.signals_seen.clear();
        self.subscriptions.retain(|(s, _), _| *s != lost);
        self.early_signals.clear();
        // A new session opens when a command needs one (see `flush`).
    }
}

#[cfg(test)]
mod tests;
