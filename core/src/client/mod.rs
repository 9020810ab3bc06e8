//! The sans-IO client: sessions, sequencing, leader discovery, retries and timeouts, for
//! every host to drive.
//!
//! ```text
//! host loop:
//!   client.submit(now, op) / client.read(now, query, consistency) / client.watch(…)
//!   client.handle_message(now, from, msg)   // a ServerMessage from node `from`
//!   client.handle_disconnect(now, node)     // the connection to `node` broke
//!   client.handle_timeout(now)              // when poll_timeout() is due
//!   while let Some((node, req)) = client.poll_transmit() { send req to node }
//!   while let Some(event) = client.poll_event() { deliver results, signals, … }
//!   sleep until client.poll_timeout()
//! ```
//!
//! **Session.** The client opens a session when created and keeps it alive with a
//! keep-alive every third of its TTL when it sends nothing else. Every command carries
//! the session and the next sequence number, so a retry — after a timeout, a lost
//! connection, `OutcomeUnknown`, or a leader change — is applied at most once. If the
//! session is lost (expired or closed), [`ClientEvent::SessionLost`] reports it, the
//! commands in flight fail with [`Error::SessionLost`] (they may or may not have been
//! applied), and a new session is opened for later commands.
//!
//! **Routing.** Commands and linearizable reads go to the leader: first a guess, then
//! wherever a `NotLeader` answer points. A request unanswered within
//! `request_timeout_us` is resent to the next node. Stale reads go to any node.
//!
//! **Queued commands.** A command the machine queues (a lock wait) is answered `Pending`;
//! its result arrives as a push from the node that answered. When the client moves to
//! another node, it resends its pending commands there: the machine answers from the
//! session's reply cache and the new node takes over the notification.

use crate::machine::election::ElectionEvent;
use crate::machine::kv::{WatchEvent, WatchFilter};
use crate::machine::session::SessionOp;
use crate::machine::signal::SignalDelivery;
use crate::machine::{Command, Error, Op, Outcome, Query, QueryOp, Reply, SessionId, SessionRef};
use crate::raft::{Consistency, GroupId, LogIndex, NodeId, RequestError};
use crate::time::Instant;
use crate::wire::{Answer, ClientError, ClientRequest, Push, RequestBody, ServerMessage};
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

/// How a client behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The group to talk to.
    pub group: GroupId,
    /// The nodes serving it.
    pub nodes: Vec<NodeId>,
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
}

impl ClientConfig {
    /// Defaults for `nodes` of `group`: a 10 s session, 1 s request timeout.
    pub fn new(group: GroupId, nodes: Vec<NodeId>) -> Self {
        Self {
            group,
            nodes,
            session_ttl_ms: 10_000,
            request_timeout_us: 1_000_000,
            retry_backoff_us: 50_000,
            commands_in_flight_max: 64,
        }
    }
}

/// Identifies an operation submitted to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// What the client reports to its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// A session is open; commands flow.
    SessionOpened(SessionId),
    /// The session expired or was closed: everything it owned (locks, permits, …) is
    /// released. A new one is being opened.
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
    /// A signal for this client's session.
    Signal(SignalDelivery),
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
    Admin(RequestBody),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting to be sent (no session yet, window full, or backing off until `at`).
    Waiting { at: Instant },
    /// Sent to `node`; resend if unanswered by `deadline`.
    Sent { node: NodeId, deadline: Instant },
    /// Queued by the machine; the completion comes from `node`.
    Pending { node: NodeId },
    /// A stream (watch, observer) served by `node`.
    Streaming { node: NodeId },
}

#[derive(Clone, Debug)]
struct Pending {
    kind: Kind,
    phase: Phase,
    /// The session the command was sequenced in.
    session: Option<SessionId>,
}

/// The sans-IO client of one group.
pub struct Client {
    cfg: ClientConfig,
    now: Instant,
    session: Option<SessionId>,
    next_seq: u64,
    next_op: u64,
    next_request: u64,
    ops: BTreeMap<OpId, Pending>,
    /// Request ids in flight → operation.
    /// Requests sent and unanswered: the operation and when the request left.
    requests: BTreeMap<u64, (OpId, Instant)>,
    /// Sequence → operation, for completions pushed by nodes.
    seqs: BTreeMap<u64, OpId>,
    leader: Option<NodeId>,
    cursor: usize,
    last_sent: Instant,
    /// The last signal index delivered per subscription (nodes may both push one).
    signals_seen: BTreeMap<u64, LogIndex>,
    out: VecDeque<(NodeId, ClientRequest)>,
    events: VecDeque<ClientEvent>,
    /// [`Client::close`] was called: a lost session is not replaced.
    closing: bool,
    /// When the request that last proved the session alive left. The cluster keeps the
    /// session at least a TTL after applying it; past [`Client::lease_deadline`] the
    /// client can no longer be sure, and reports the session lost.
    confirmed: Instant,
}

const SESSION_OP: OpId = OpId(0);
const KEEP_ALIVE_OP: OpId = OpId(1);

impl Client {
    /// A client that starts opening its session at once.
    pub fn new(cfg: ClientConfig, now: Instant, seed: u64) -> Self {
        let cursor = if cfg.nodes.is_empty() { 0 } else { (seed % cfg.nodes.len() as u64) as usize };
        let mut client = Self {
            cfg,
            now,
            session: None,
            next_seq: 1,
            next_op: 2,
            next_request: 1,
            ops: BTreeMap::new(),
            requests: BTreeMap::new(),
            seqs: BTreeMap::new(),
            leader: None,
            cursor,
            last_sent: now,
            signals_seen: BTreeMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            closing: false,
            confirmed: now,
        };
        client.ops.insert(
            SESSION_OP,
            Pending { kind: Kind::OpenSession, phase: Phase::Waiting { at: now }, session: None },
        );
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

    /// Closes the session: everything it owns is released at once rather than when its
    /// TTL runs out. No new session is opened afterwards, whatever happens to this one.
    pub fn close(&mut self, now: Instant) -> OpId {
        self.closing = true;
        self.submit(now, Op::Session(SessionOp::Close))
    }

    /// Learns another node of the group (found after the client was made, say, or added
    /// to the cluster later): it joins the rotation, and a redirect to it is followed.
    pub fn add_node(&mut self, node: NodeId) {
        if !self.cfg.nodes.contains(&node) {
            self.cfg.nodes.push(node);
        }
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
        self.start(now, Kind::Admin(body))
    }

    /// Ends a watch or observer.
    pub fn cancel(&mut self, now: Instant, op: OpId) {
        self.now = self.now.max(now);
        if let Some(p) = self.ops.remove(&op) {
            if let Phase::Streaming { node } | Phase::Sent { node, .. } = p.phase {
                let ids: Vec<u64> =
                    self.requests.iter().filter(|(_, (o, _))| *o == op).map(|(r, _)| *r).collect();
                for id in ids {
                    self.requests.remove(&id);
                    let body = RequestBody::Cancel { id };
                    self.send_raw(node, body);
                }
            }
        }
    }

    fn start(&mut self, now: Instant, kind: Kind) -> OpId {
        self.start_in(now, kind, None)
    }

    /// Starts `kind`; a command with a `session` may only run in that session.
    fn start_in(&mut self, now: Instant, kind: Kind, session: Option<SessionId>) -> OpId {
        self.now = self.now.max(now);
        let id = OpId(self.next_op);
        self.next_op += 1;
        self.ops.insert(id, Pending { kind, phase: Phase::Waiting { at: self.now }, session });
        self.flush();
        id
    }

    /// A message from node `from`.
    pub fn handle_message(&mut self, now: Instant, from: NodeId, msg: ServerMessage) {
        self.now = self.now.max(now);
        match msg {
            ServerMessage::Answer { id, result } => self.on_answer(from, id, result),
            ServerMessage::Push(push) => self.on_push(push),
        }
        self.flush();
    }

    /// The connection to `node` broke (or could not be made): whatever it was serving
    /// moves to the next node after `retry_backoff_us`, so a node that refuses every
    /// connection is neither retried forever nor hammered.
    pub fn handle_disconnect(&mut self, now: Instant, node: NodeId) {
        self.now = self.now.max(now);
        if self.leader == Some(node) {
            self.leader = None;
        }
        if self.leader.is_none() && self.cfg.nodes.get(self.cursor) == Some(&node) {
            self.rotate();
        }
        let at = self.now.add_us(self.cfg.retry_backoff_us);
        for p in self.ops.values_mut() {
            match p.phase {
                Phase::Sent { node: n, .. } | Phase::Pending { node: n } | Phase::Streaming { node: n }
                    if n == node =>
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

    /// Time passed: resend what timed out, keep the session alive, and give the session
    /// up once it can no longer be known to live (during a partition, say): everything it
    /// held must be presumed released, so [`ClientEvent::SessionLost`] is reported before
    /// the cluster can have handed any of it to someone else.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if let (Some(s), Some(deadline)) = (self.session, self.lease_deadline()) {
            if self.now >= deadline {
                self.session_lost(s);
            }
        }
        let mut moved = false;
        for p in self.ops.values_mut() {
            if let Phase::Sent { node, deadline } = p.phase {
                if deadline <= self.now {
                    p.phase = Phase::Waiting { at: self.now };
                    if self.leader == Some(node) || self.leader.is_none() {
                        moved = true;
                    }
                }
            }
        }
        if moved {
            self.leader = None;
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

    /// The next request to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(NodeId, ClientRequest)> {
        self.out.pop_front()
    }

    /// The next event for the host.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When to call [`Client::handle_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        let mut next = Instant::MAX;
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

    /// Where requests go: the node believed to lead, else the next guess. Stale reads and
    /// streams could go anywhere, and go there too (that connection is already in use).
    fn target(&self) -> Option<NodeId> {
        self.leader.or_else(|| self.cfg.nodes.get(self.cursor).copied())
    }

    fn rotate(&mut self) {
        if !self.cfg.nodes.is_empty() {
            self.cursor = (self.cursor + 1) % self.cfg.nodes.len();
        }
    }

    /// Pending commands follow the client to its new node (see the module docs).
    fn reroute_pending(&mut self) {
        let at = self.now;
        for p in self.ops.values_mut() {
            if matches!(p.phase, Phase::Pending { node } if Some(node) != self.leader) {
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

    /// Sends everything that is due.
    fn flush(&mut self) {
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
            self.send(id);
        }
    }

    fn send(&mut self, id: OpId) {
        let Some(p) = self.ops.get(&id) else { return };
        let Some(node) = self.target() else { return };
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
            Kind::Query { query, consistency } => RequestBody::Query {
                query: Query { session: self.session, op: query.clone() },
                consistency: *consistency,
            },
            Kind::Watch { filter, next } => RequestBody::Watch { filter: filter.clone(), from: *next },
            Kind::Observe { name } => RequestBody::Observe { name: name.clone() },
            Kind::Admin(body) => body.clone(),
        };
        if matches!(body, RequestBody::Command(_)) {
            self.last_sent = self.now;
        }
        let rid = self.send_raw(node, body);
        self.requests.insert(rid, (id, self.now));
        let deadline = self.now.add_us(self.cfg.request_timeout_us);
        if let Some(p) = self.ops.get_mut(&id) {
            p.phase = Phase::Sent { node, deadline };
        }
    }

    fn send_raw(&mut self, node: NodeId, body: RequestBody) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        self.out.push_back((node, ClientRequest { id, group: self.cfg.group, body }));
        id
    }

    // ----- receiving ----------------------------------------------------------------

    fn on_answer(&mut self, from: NodeId, rid: u64, result: Result<Answer, ClientError>) {
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

    fn on_success(&mut self, from: NodeId, id: OpId, answer: Answer) {
        let Some(p) = self.ops.get_mut(&id) else { return };
        match answer {
            Answer::Applied { index, outcome } => {
                if !matches!(p.kind, Kind::Query { .. }) && self.cfg.nodes.contains(&from) {
                    self.leader = Some(from);
                }
                match outcome {
                    Outcome::Pending => {
                        p.phase = Phase::Pending { node: from };
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
                p.phase = Phase::Streaming { node: from };
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
            (Kind::OpenSession, _) => {
                // Refused (e.g. the session limit): try again after a pause.
                let at = self.now.add_us(self.cfg.retry_backoff_us.max(1) * 10);
                if let Some(p) = self.ops.get_mut(&id) {
                    p.phase = Phase::Waiting { at };
                }
            }
            (Kind::KeepAlive, _) => {
                self.ops.remove(&id);
            }
            _ => self.finish(id, result, index, queued),
        }
    }

    fn finish(&mut self, id: OpId, result: Result<Reply, Error>, index: LogIndex, queued: bool) {
        if let Some(p) = self.ops.remove(&id) {
            if let Kind::Command { seq, .. } = p.kind {
                self.seqs.remove(&seq);
            }
            self.requests.retain(|_, (o, _)| *o != id);
            let session = p.session;
            self.events.push_back(ClientEvent::Done { op: id, result, index, session, queued });
        }
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
                Kind::KeepAlive => {}
                _ => self.events.push_back(ClientEvent::Failed { op: id, error }),
            }
        }
    }

    /// Raft refused or could not settle the request: retry where it makes sense.
    fn on_refusal(&mut self, from: NodeId, id: OpId, e: RequestError) {
        let backoff = self.now.add_us(self.cfg.retry_backoff_us);
        let at = match e {
            RequestError::NotLeader { leader: Some(l) } if l != from && self.cfg.nodes.contains(&l) => {
                self.leader = Some(l);
                self.reroute_pending();
                self.now
            }
            RequestError::NotLeader { .. } => {
                if self.leader == Some(from) || self.leader.is_none() {
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
                if d.index > *seen {
                    *seen = d.index;
                    self.events.push_back(ClientEvent::Signal(d));
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
            if id == KEEP_ALIVE_OP {
                self.ops.remove(&id);
            } else {
                self.finish(id, Err(Error::SessionLost(lost)), 0, false);
            }
        }
        self.seqs.clear();
        self.signals_seen.clear();
        if self.closing {
            return;
        }
        let at = self.now;
        self.ops.insert(
            SESSION_OP,
            Pending { kind: Kind::OpenSession, phase: Phase::Waiting { at }, session: None },
        );
    }
}
