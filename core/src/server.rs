//! [`Replica`]: one member of a group serving clients — a Raft [`Node`] running the
//! [`Concord`] machine, plus the routing of answers, completions, signals, watches and
//! election observers to client connections. Sans-IO like the node: the host moves bytes
//! between connections and calls `handle_*`, then drains `poll_*`.
//!
//! ```text
//! host loop (besides the Node contract for peers, storage and timers):
//!   replica.handle_client(now, conn, request)    // a decoded ClientRequest
//!   replica.handle_disconnect(conn)              // the connection closed
//!   while let Some((conn, msg)) = replica.poll_client() { send msg on conn }
//! ```

use crate::machine::election::{ElectionChange, ElectionEvent, ElectionQuery};
use crate::machine::kv::{KvQuery, WatchFilter};
use crate::machine::lock::LockEvent;
use crate::machine::session::SessionInfo;
use crate::machine::View;
use crate::machine::{
    Command, Concord, Error as MachineError, Event as MachineEvent, Op, Outcome, Query, QueryOp,
    QueuedOutcome, Reply, SessionEnd, SessionId,
};
use crate::raft::{
    Event, Message, Metrics, Node, NodeError, NodeId, Request, RequestId, Response, Role, Status,
    StorageWrite, WriteToken,
};
use crate::time::Instant;
use crate::wire::{
    Answer, ClientError, ClientRequest, ClusterView, MemberAddr, Push, RequestBody, ServerMessage,
};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// A client connection, numbered by the host. Each connection gets a number of its own,
/// never reused after [`Replica::handle_disconnect`]: answers to requests read on a closed
/// connection (their queued completions unregistered) still come out under its number,
/// and must not reach a later connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnId(pub u64);

/// Limits of the client-facing side of a replica (local to the node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// Watches and election observers open on one connection.
    pub streams_per_connection_max: u32,
    /// Largest payload the host's transport carries, bytes: a larger answer (a listing
    /// of many large values, say) is replaced by [`ClientError::AnswerTooLarge`], so the
    /// client fails that request instead of retrying it forever elsewhere.
    pub frame_bytes_max: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self { streams_per_connection_max: 64, frame_bytes_max: 4 << 20 }
    }
}

/// Where a replica's outputs go, for [`Replica::drive`].
pub trait ReplicaOutputs {
    /// Stores `write`: `true` if it is durable now, `false` if the host confirms it later
    /// with [`Replica::handle_persisted`]. As for [`crate::raft::Outputs::persist`], `true`
    /// means this write and every earlier one are durable.
    fn persist(&mut self, write: StorageWrite) -> bool;
    /// Sends a Raft message to a peer.
    fn send(&mut self, message: Message);
    /// Sends a message to client connection `conn`.
    fn client(&mut self, conn: ConnId, message: ServerMessage);
    /// A role change or installed snapshot.
    fn event(&mut self, _event: Event<()>) {}
}

/// What a replica reports about itself, the same on every host: what a status page,
/// `/status` or a metrics endpoint shows, before the host adds its own counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaReport {
    /// Raft state.
    pub raft: Status,
    /// Raft counters.
    pub metrics: Metrics,
    /// Primitives in use: locks and their holders, semaphores, … (at most the number of
    /// items asked for per kind, with exact totals).
    pub primitives: View,
    /// Open sessions (all of them).
    pub sessions_open: usize,
    /// Open sessions, the first ones by id (at most the number of items asked for).
    pub sessions: Vec<SessionInfo>,
    /// Who leads, and where the members listen for clients.
    pub cluster: ClusterView,
    /// On the leader: how far each other member has replicated, and whether it was
    /// heard from lately.
    pub replication: Vec<crate::raft::Replication>,
    /// Each session with a connection to this node, and that connection (the host
    /// knows where it comes from).
    pub session_conns: Vec<(SessionId, ConnId)>,
}

/// Events recorded for the host ([`Replica::record_machine_events`],
/// [`Replica::record_lock_events`]) that may wait to be drained, per queue.
pub const RECORDED_EVENTS_MAX: usize = 65_536;

/// Appends to a recorded-events queue, dropping its oldest entry when full; whether one
/// was dropped.
fn bounded_push<T>(q: &mut VecDeque<T>, item: T) -> bool {
    let full = q.len() >= RECORDED_EVENTS_MAX;
    if full {
        q.pop_front();
    }
    q.push_back(item);
    full
}

/// What a node request was for, to route its reply.
#[derive(Clone, Copy, Debug)]
struct Route {
    conn: ConnId,
    id: u64,
    /// The (session, seq) of a command, to register it if it is queued.
    caller: Option<(SessionId, u64)>,
}

/// A Raft node serving the coordination machine to client connections.
pub struct Replica {
    node: Node<Concord>,
    limits: ServeLimits,
    next_request: u64,
    routes: BTreeMap<RequestId, Route>,
    /// Queued commands: (session, seq) → connections to tell when they complete.
    waiting: BTreeMap<(SessionId, u64), Vec<ConnId>>,
    /// The connection that last sent a request in each session (for signals and
    /// session ends).
    sessions: BTreeMap<SessionId, ConnId>,
    watches: BTreeMap<(ConnId, u64), WatchFilter>,
    observers: BTreeMap<(ConnId, u64), String>,
    out: VecDeque<(ConnId, ServerMessage)>,
    events: VecDeque<Event<()>>,
    /// Every machine event, when the host asked for them (audit logs, checkers).
    applied: Option<VecDeque<MachineEvent>>,
    /// Lock hand-overs kept for the host's hold and wait metrics, if asked for.
    lock_events: Option<VecDeque<LockEvent>>,
    /// Recorded events dropped from the two queues above.
    recorded_dropped: u64,
    /// The key-value revision up to which changes were routed to watches.
    kv_routed: u64,
    /// Where each node (this one included) listens for clients, as it advertised; told
    /// to clients in [`Answer::Cluster`] so that one endpoint is enough to find the rest.
    client_addrs: BTreeMap<NodeId, String>,
    /// The same for WebSocket URLs.
    web_addrs: BTreeMap<NodeId, String>,
}

impl Replica {
    /// Serves clients from `node`.
    pub fn new(node: Node<Concord>, limits: ServeLimits) -> Self {
        let kv_routed = node.machine().kv_revision();
        Self {
            kv_routed,
            node,
            limits,
            next_request: 1,
            routes: BTreeMap::new(),
            waiting: BTreeMap::new(),
            sessions: BTreeMap::new(),
            watches: BTreeMap::new(),
            observers: BTreeMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            applied: None,
            lock_events: None,
            recorded_dropped: 0,
            client_addrs: BTreeMap::new(),
            web_addrs: BTreeMap::new(),
        }
    }

    /// Records where `node` (this one or a peer) listens for clients, in its host's terms.
    /// Hosts call it for their own address at start and for each peer's hello. Only
    /// members are kept, so the table is bounded by the membership.
    pub fn set_client_addr(&mut self, node: NodeId, addr: String) {
        if self.is_member(node) {
            self.client_addrs.insert(node, addr);
        }
    }

    /// Records where `node` serves clients over WebSocket (a URL), as
    /// [`Replica::set_client_addr`] does for its client address.
    pub fn set_web_addr(&mut self, node: NodeId, url: String) {
        if self.is_member(node) {
            self.web_addrs.insert(node, url);
        }
    }

    fn is_member(&self, node: NodeId) -> bool {
        node == self.node.id() || self.node.membership().contains(node)
    }

    /// A report of this replica listing at most `items_max` items per kind (0: totals
    /// only, what a metrics endpoint needs, at constant cost).
    pub fn report(&self, items_max: usize) -> ReplicaReport {
        let machine = self.node.machine();
        let mut sessions = Vec::new();
        if items_max > 0 {
            if let Ok(Reply::Sessions(s)) = machine.read(&Query { session: None, op: QueryOp::Sessions }) {
                sessions = s;
                sessions.truncate(items_max);
            }
        }
        ReplicaReport {
            raft: self.node.status(),
            metrics: *self.node.metrics(),
            primitives: machine.view_limited(items_max),
            sessions_open: machine.session_count(),
            sessions,
            cluster: self.cluster_view(),
            replication: self.node.replication(),
            session_conns: self.sessions.iter().take(items_max).map(|(s, c)| (*s, *c)).collect(),
        }
    }

    /// This node's view of its group for clients: who leads and where members listen.
    pub fn cluster_view(&self) -> ClusterView {
        let m = self.node.membership();
        let member = |node: NodeId, voter: bool| MemberAddr {
            node,
            client_addr: self.client_addrs.get(&node).cloned(),
            web_addr: self.web_addrs.get(&node).cloned(),
            voter,
        };
        let members = m
            .voters
            .iter()
            .map(|n| member(*n, true))
            .chain(m.learners.iter().map(|n| member(*n, false)))
            .collect();
        let status = self.node.status();
        ClusterView { node: status.id, term: status.term, leader: status.leader, members }
    }

    /// Also keep every machine event the node applies (completions, session ends, key-value
    /// changes, election changes, signals), to drain with
    /// [`Replica::poll_machine_event`]: for audit logs and checkers. At most
    /// [`RECORDED_EVENTS_MAX`] wait to be drained; beyond that the oldest are dropped and
    /// counted ([`Replica::recorded_events_dropped`]).
    pub fn record_machine_events(&mut self) {
        self.applied.get_or_insert_with(VecDeque::new);
    }

    /// Also keep lock grants and releases (with their wait and hold times), to drain with
    /// [`Replica::poll_lock_event`]: what a host needs for lock metrics, without copying
    /// every other event. Bounded like [`Replica::record_machine_events`].
    pub fn record_lock_events(&mut self) {
        self.lock_events.get_or_insert_with(VecDeque::new);
    }

    /// Recorded events dropped because the host did not drain them in time.
    pub fn recorded_events_dropped(&self) -> u64 {
        self.recorded_dropped
    }

    /// The next lock event recorded since [`Replica::record_lock_events`].
    #[must_use]
    pub fn poll_lock_event(&mut self) -> Option<LockEvent> {
        self.lock_events.as_mut().and_then(VecDeque::pop_front)
    }

    /// The next machine event recorded since [`Replica::record_machine_events`].
    #[must_use]
    pub fn poll_machine_event(&mut self) -> Option<MachineEvent> {
        self.applied.as_mut().and_then(VecDeque::pop_front)
    }

    /// The Raft node (status, metrics, the machine's state).
    pub fn node(&self) -> &Node<Concord> {
        &self.node
    }

    /// A snapshot of the applied state, taken now unless the latest one is current (see
    /// [`Node::snapshot_now`]); drain the storage write it queues as usual.
    pub fn snapshot_now(&mut self) -> Option<crate::raft::Snapshot> {
        self.node.snapshot_now().cloned()
    }

    /// A request from connection `conn`.
    pub fn handle_client(&mut self, now: Instant, conn: ConnId, req: ClientRequest) {
        let group = self.node.config().group;
        if req.group != group {
            self.answer(conn, req.id, Err(ClientError::WrongGroup { serves: group }));
            return;
        }
        match req.body {
            RequestBody::Command(cmd) => {
                if matches!(cmd.op, Op::Signal(crate::machine::signal::SignalOp::Disconnected { .. })) {
                    self.answer(conn, req.id, Err(ClientError::Reserved));
                    return;
                }
                let caller = cmd.session.map(|s| (s.id, s.seq));
                if let Some((session, _)) = caller {
                    self.sessions.insert(session, conn);
                }
                // Encoding plain data into a Vec cannot fail.
                let bytes = postcard::to_allocvec(&cmd).unwrap_or_default();
                self.submit(now, conn, req.id, caller, Request::Propose(bytes));
            }
            RequestBody::Query { query, consistency } => {
                if let Some(session) = query.session {
                    self.sessions.insert(session, conn);
                }
                let bytes = postcard::to_allocvec(&query).unwrap_or_default();
                self.submit(now, conn, req.id, None, Request::Read { query: bytes, consistency });
            }
            RequestBody::Watch { filter, from } => self.watch(conn, req.id, filter, from),
            RequestBody::Observe { name } => {
                if !self.stream_allowed(conn, req.id) {
                    return;
                }
                // The current state first, then every change after it (this node routes
                // changes as it applies them, so nothing falls in between).
                let machine = self.node.machine();
                let leader = match machine.read(&Query {
                    session: None,
                    op: QueryOp::Election(ElectionQuery::Leader { name: name.clone() }),
                }) {
                    Ok(Reply::Leader(l)) => l,
                    _ => None,
                };
                let index = machine.applied_index();
                let event =
                    ElectionEvent { name: name.clone(), change: ElectionChange::Current, leader, index };
                self.observers.insert((conn, req.id), name);
                self.answer(conn, req.id, Ok(Answer::Watching { revision: 0 }));
                self.out.push_back((conn, ServerMessage::Push(Push::Election { observer: req.id, event })));
            }
            RequestBody::Cancel { id } => {
                self.watches.remove(&(conn, id));
                self.observers.remove(&(conn, id));
                self.answer(conn, req.id, Ok(Answer::Unit));
            }
            RequestBody::Status => {
                let status = self.node.status();
                self.answer(conn, req.id, Ok(Answer::Status(status)));
            }
            RequestBody::ChangeMembership(change) => {
                self.submit(now, conn, req.id, None, Request::ChangeMembership(change));
            }
            RequestBody::TransferLeadership(target) => {
                self.submit(now, conn, req.id, None, Request::TransferLeadership(target));
            }
            RequestBody::Hello => {
                let view = self.cluster_view();
                self.answer(conn, req.id, Ok(Answer::Cluster(view)));
            }
        }
        self.route();
    }

    /// Connection `conn` closed: forget its streams and registrations. On the leader, a
    /// queue-group member whose connection this was is marked disconnected in the machine
    /// (`SignalOp::Disconnected`), so that its groups' signals go to members still
    /// connected until it sends again.
    pub fn handle_disconnect(&mut self, conn: ConnId) {
        let gone: Vec<SessionId> =
            self.sessions.iter().filter(|(_, c)| **c == conn).map(|(s, _)| *s).collect();
        if self.node.role() == Role::Leader {
            for session in gone {
                if self.node.machine().in_queue_group(session) {
                    let op = Op::Signal(crate::machine::signal::SignalOp::Disconnected { session });
                    let bytes = postcard::to_allocvec(&Command { session: None, op }).unwrap_or_default();
                    let rid = RequestId(self.next_request);
                    self.next_request += 1;
                    // Nobody waits for its answer: a reply without a route is dropped.
                    let now = self.node.now();
                    self.node.handle_request(now, rid, Request::Propose(bytes));
                }
            }
        }
        self.watches.retain(|(c, _), _| *c != conn);
        self.observers.retain(|(c, _), _| *c != conn);
        self.sessions.retain(|_, c| *c != conn);
        self.waiting.retain(|_, conns| {
            conns.retain(|c| *c != conn);
            !conns.is_empty()
        });
        for route in self.routes.values_mut() {
            if route.conn == conn {
                // The answer has nowhere to go; a queued command is not registered.
                route.caller = None;
            }
        }
        self.out.retain(|(c, _)| *c != conn);
    }

    /// A message from a peer; see [`Node::handle_message`].
    pub fn handle_message(&mut self, now: Instant, msg: Message) -> Result<(), NodeError> {
        let r = self.node.handle_message(now, msg);
        self.route();
        r
    }

    /// Time passed; see [`Node::handle_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.node.handle_timeout(now);
        self.route();
    }

    /// A storage write is durable; see [`Node::handle_persisted`].
    pub fn handle_persisted(&mut self, token: WriteToken) -> Result<(), NodeError> {
        let r = self.node.handle_persisted(token);
        self.route();
        r
    }

    /// See [`Node::poll_storage`].
    #[must_use]
    pub fn poll_storage(&mut self) -> Option<StorageWrite> {
        self.node.poll_storage()
    }

    /// See [`Node::poll_transmit`].
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Message> {
        self.node.poll_transmit()
    }

    /// The next message for a client connection.
    #[must_use]
    pub fn poll_client(&mut self) -> Option<(ConnId, ServerMessage)> {
        self.out.pop_front()
    }

    /// The next Raft event (role and leader changes, installed snapshots).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event<()>> {
        self.events.pop_front()
    }

    /// See [`Node::poll_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        self.node.poll_timeout()
    }

    /// Drains every output into `out` in the contract's order (storage first, confirmed
    /// at once when durable, then peers, clients and events) until nothing more can
    /// leave, as [`Node::drive`] does; whether anything came out. The opt-in lock and
    /// machine event recorders are not drained here ([`Replica::poll_lock_event`],
    /// [`Replica::poll_machine_event`]).
    pub fn drive(&mut self, out: &mut impl ReplicaOutputs) -> Result<bool, NodeError> {
        let mut any = false;
        loop {
            let mut confirmed = false;
            while let Some(write) = self.poll_storage() {
                any = true;
                let token = write.token;
                if out.persist(write) {
                    self.handle_persisted(token)?;
                    confirmed = true;
                }
            }
            while let Some(m) = self.poll_transmit() {
                any = true;
                out.send(m);
            }
            while let Some((conn, msg)) = self.poll_client() {
                any = true;
                out.client(conn, msg);
            }
            while let Some(e) = self.poll_event() {
                any = true;
                out.event(e);
            }
            if !confirmed {
                return Ok(any);
            }
        }
    }

    fn submit(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: u64,
        caller: Option<(SessionId, u64)>,
        request: Request,
    ) {
        let rid = RequestId(self.next_request);
        self.next_request += 1;
        self.routes.insert(rid, Route { conn, id, caller });
        self.node.handle_request(now, rid, request);
    }

    fn answer(&mut self, conn: ConnId, id: u64, result: Result<Answer, ClientError>) {
        let mut message = ServerMessage::Answer { id, result };
        // Only reads return lists and values whose size the limits do not bound by a
        // frame; other answers are small, and are not measured.
        if let ServerMessage::Answer { result: Ok(Answer::Read { .. }), .. } = &message {
            let size = postcard::experimental::serialized_size(&message).unwrap_or(usize::MAX);
            // The version byte and the envelope's tag travel with it.
            let max = self.limits.frame_bytes_max.saturating_sub(2);
            if size > max {
                let error = ClientError::AnswerTooLarge { size: size as u64, max: max as u64 };
                message = ServerMessage::Answer { id, result: Err(error) };
            }
        }
        self.out.push_back((conn, message));
    }

    /// Whether `conn` may open another stream; if not, request `id` is refused.
    fn stream_allowed(&mut self, conn: ConnId, id: u64) -> bool {
        let on_conn = (conn, 0)..=(conn, u64::MAX);
        let open = self.watches.range(on_conn.clone()).count() + self.observers.range(on_conn).count();
        let max = self.limits.streams_per_connection_max;
        if open >= max as usize {
            self.answer(conn, id, Err(ClientError::TooManyStreams { max }));
            return false;
        }
        true
    }

    fn watch(&mut self, conn: ConnId, id: u64, filter: WatchFilter, from: Option<u64>) {
        if !self.stream_allowed(conn, id) {
            return;
        }
        let machine = self.node.machine();
        let revision = machine.kv_revision();
        let mut replay = Vec::new();
        if let Some(from) = from {
            // Every event applied so far has been routed already (each handle_* drains
            // the machine), so live events continue exactly where the history ends.
            match history(machine, &filter, from) {
                Ok(events) => replay = events,
                Err(e) => {
                    self.answer(conn, id, Err(e));
                    return;
                }
            }
        } else if !filter.is_valid() {
            let e = crate::machine::Error::Kv(crate::machine::kv::KvError::InvalidPattern);
            self.answer(conn, id, Err(ClientError::Watch(e)));
            return;
        }
        self.answer(conn, id, Ok(Answer::Watching { revision }));
        for event in replay {
            self.out.push_back((conn, ServerMessage::Push(Push::Watch { watch: id, event })));
        }
        self.watches.insert((conn, id), filter);
    }

    /// A snapshot replaced the state: the changes it covers were never applied here one by
    /// one, so each watch gets them from the snapshot's history window — or, if they are
    /// no longer in it, its stream ends with the error.
    fn catch_up_watches(&mut self) {
        let machine = self.node.machine();
        let revision = machine.kv_revision();
        if revision <= self.kv_routed {
            return;
        }
        let from = self.kv_routed + 1;
        let mut ended = Vec::new();
        for ((conn, id), filter) in &self.watches {
            match history(machine, filter, from) {
                Ok(events) => {
                    for event in events.into_iter().filter(|e| e.revision <= revision) {
                        self.out.push_back((*conn, ServerMessage::Push(Push::Watch { watch: *id, event })));
                    }
                }
                Err(error) => {
                    self.out.push_back((*conn, ServerMessage::Push(Push::StreamEnded { id: *id, error })));
                    ended.push((*conn, *id));
                }
            }
        }
        for key in ended {
            self.watches.remove(&key);
        }
        self.kv_routed = revision;
    }

    /// After a snapshot install: the entries it covered were never applied here, so the
    /// completions and session ends among them produced no events. Clients waiting on this
    /// node learn them from the replicated reply cache and session table instead.
    fn catch_up_waiters(&mut self) {
        let machine = self.node.machine();
        let mut completed = Vec::new();
        let mut ended = Vec::new();
        for &(session, seq) in self.waiting.keys() {
            match machine.queued_outcome(session, seq) {
                QueuedOutcome::NotCompleted => {}
                QueuedOutcome::Completed(result, index) => completed.push((session, seq, result, index)),
                QueuedOutcome::SessionGone => ended.push(session),
            }
        }
        ended.extend(self.sessions.keys().copied().filter(|s| !machine.has_session(*s)));
        for (session, seq, result, index) in completed {
            self.complete_waiters(session, seq, &result, index);
        }
        for session in ended {
            self.end_session(session, SessionEnd::Expired);
        }
    }

    /// Tells the connections waiting on `(session, seq)` how it completed.
    fn complete_waiters(
        &mut self,
        session: SessionId,
        seq: u64,
        result: &Result<Reply, MachineError>,
        index: u64,
    ) {
        for conn in self.waiting.remove(&(session, seq)).unwrap_or_default() {
            let push = Push::Completed { session, seq, result: result.clone(), index };
            self.out.push_back((conn, ServerMessage::Push(push)));
        }
    }

    /// Tells the session's connection it ended; its waits end with it.
    fn end_session(&mut self, session: SessionId, reason: SessionEnd) {
        if let Some(conn) = self.sessions.remove(&session) {
            self.out.push_back((conn, ServerMessage::Push(Push::SessionEnded { session, reason })));
        }
        self.waiting.retain(|(s, _), _| *s != session);
    }

    /// Routes everything the node produced: replies to their requests, machine events to
    /// the connections they concern.
    fn route(&mut self) {
        while let Some(reply) = self.node.poll_reply() {
            let Some(route) = self.routes.remove(&reply.id) else { continue };
            let result = match reply.result {
                Ok(Response::Applied { index, output }) => {
                    if let (Outcome::Pending, Some(caller)) = (&output, route.caller) {
                        let conns = self.waiting.entry(caller).or_default();
                        if !conns.contains(&route.conn) {
                            conns.push(route.conn);
                        }
                    }
                    Ok(Answer::Applied { index, outcome: output })
                }
                Ok(Response::Read { index, output }) => {
                    let result = output.done().unwrap_or(Err(crate::machine::Error::Malformed));
                    Ok(Answer::Read { index, result })
                }
                Ok(Response::MembershipChanged { index, membership }) => {
                    Ok(Answer::Membership { index, membership })
                }
                Ok(Response::LeadershipTransferred { term }) => Ok(Answer::Transferred { term }),
                Err(e) => Err(ClientError::Raft(e)),
            };
            self.answer(route.conn, route.id, result);
        }
        while let Some(event) = self.node.poll_event() {
            match event {
                Event::Machine(e) => self.route_machine_event(e),
                Event::StateChanged { role, term, leader } => {
                    self.events.push_back(Event::StateChanged { role, term, leader });
                }
                Event::SnapshotInstalled { index } => {
                    self.catch_up_watches();
                    self.catch_up_waiters();
                    self.events.push_back(Event::SnapshotInstalled { index });
                }
                Event::Removed { by } => self.events.push_back(Event::Removed { by }),
            }
        }
    }

    fn route_machine_event(&mut self, event: MachineEvent) {
        if let Some(log) = self.applied.as_mut() {
            self.recorded_dropped += u64::from(bounded_push(log, event.clone()));
        }
        match event {
            MachineEvent::Completed { session, seq, result, index } => {
                self.complete_waiters(session, seq, &result, index);
            }
            MachineEvent::SessionEnded { session, reason, .. } => self.end_session(session, reason),
            MachineEvent::Signal(delivery) => {
                if let Some(&conn) = self.sessions.get(&delivery.session) {
                    self.out.push_back((conn, ServerMessage::Push(Push::Signal(delivery))));
                }
            }
            MachineEvent::Kv(event) => {
                // Changes a snapshot covered were replayed from its history already.
                if event.revision <= self.kv_routed {
                    return;
                }
                self.kv_routed = event.revision;
                for ((conn, id), filter) in &self.watches {
                    if filter.matches(&event.key) {
                        let push = Push::Watch { watch: *id, event: event.clone() };
                        self.out.push_back((*conn, ServerMessage::Push(push)));
                    }
                }
            }
            // For the host's metrics only (see `record_machine_events`).
            MachineEvent::Lock(e) => {
                if let Some(q) = self.lock_events.as_mut() {
                    self.recorded_dropped += u64::from(bounded_push(q, e));
                }
            }
            MachineEvent::Election(event) => {
                for ((conn, id), name) in &self.observers {
                    if *name == event.name {
                        let push = Push::Election { observer: *id, event: event.clone() };
                        self.out.push_back((*conn, ServerMessage::Push(push)));
                    }
                }
            }
        }
    }
}

/// Every change covered by `filter` from revision `from` on, paging through the machine's
/// history window.
fn history(
    machine: &Concord,
    filter: &WatchFilter,
    from: u64,
) -> Result<Vec<crate::machine::kv::WatchEvent>, ClientError> {
    let mut next = from;
    let mut all = Vec::new();
    loop {
        let q =
            Query { session: None, op: QueryOp::Kv(KvQuery::History { filter: filter.clone(), from: next }) };
        match machine.read(&q) {
            Ok(Reply::WatchHistory { events, more, .. }) => {
                next = events.last().map_or(next, |e| e.revision + 1);
                all.extend(events);
                if !more {
                    return Ok(all);
                }
            }
            Ok(_) => return Ok(all),
            Err(e) => return Err(ClientError::Watch(e)),
        }
    }
}
