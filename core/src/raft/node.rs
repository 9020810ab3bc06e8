//! [`Node`]: one member of one Raft group, driven by its host.

use super::config::{Config, ConfigError};
use super::incoming_snapshot::IncomingSnapshot;
use super::log::RaftLog;
use super::membership::MembershipLog;
use super::metrics::Metrics;
use super::progress::Progress;
use super::read::{Confirmation, ReadIndex};
use super::request::{Consistency, Reply, Request, RequestError, RequestId, Response};
use super::{
    ApplyContext, Entry, HardState, LogIndex, Membership, MembershipChange, Message, MessageBody, NodeId,
    Payload, Persisted, RestoreError, Snapshot, SnapshotMeta, SnapshotWrite, StateMachine, StorageWrite,
    Term, WriteToken,
};
use crate::time::Instant;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::fmt;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The role a node plays in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking whether an election could succeed, without raising its term yet.
    PreCandidate,
    /// Campaigning in a new term.
    Candidate,
    /// Leading the group.
    Leader,
}

/// How a node starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// A member of a brand-new group with this initial membership. Every initial member
    /// must be started with the same membership. The first storage write records it.
    NewCluster(Membership),
    /// A node that will be added to an existing group; it waits to hear from its leader.
    Join,
    /// A node restarting from what its host had made durable.
    Restart(Persisted),
}

/// Why a node could not be created or refused a host call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// The persisted state is inconsistent; the message says how.
    CorruptState(&'static str),
    /// The persisted snapshot could not be restored.
    Restore(RestoreError),
    /// `handle_persisted` named a write that was never handed out.
    UnknownWriteToken(WriteToken),
    /// A message for another group reached this node.
    WrongGroup,
    /// A message addressed to another node reached this node.
    WrongRecipient,
    /// A message decoded but carries impossible values (see [`Message::validate`]).
    MalformedMessage(&'static str),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "invalid configuration: {e}"),
            Self::CorruptState(what) => write!(f, "persisted state is corrupt: {what}"),
            Self::Restore(e) => write!(f, "{e}"),
            Self::UnknownWriteToken(t) => write!(f, "write token {} was never handed out", t.0),
            Self::WrongGroup => f.write_str("message for another group"),
            Self::WrongRecipient => f.write_str("message for another node"),
            Self::MalformedMessage(why) => write!(f, "malformed message: {why}"),
        }
    }
}

impl core::error::Error for NodeError {}

impl From<ConfigError> for NodeError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

/// Something the host may want to react to. `E` is the state machine's event type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<E> {
    /// The node's role or its known leader changed.
    StateChanged {
        /// New role.
        role: Role,
        /// Current term.
        term: Term,
        /// Known leader, if any.
        leader: Option<NodeId>,
    },
    /// A snapshot from the leader replaced the state machine.
    SnapshotInstalled {
        /// Last index the snapshot covers.
        index: LogIndex,
    },
    /// Something the state machine produced while applying entries.
    Machine(E),
    /// The group's leader `by` answered that this node is no longer a member: it was
    /// removed. The node no longer campaigns; a host should stop it.
    Removed {
        /// The leader that said so.
        by: NodeId,
    },
}

/// A point-in-time view of a node, for status pages, metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Current role.
    pub role: Role,
    /// Current term.
    pub term: Term,
    /// Known leader.
    pub leader: Option<NodeId>,
    /// Highest index known committed.
    pub commit_index: LogIndex,
    /// Highest index applied to the state machine.
    pub applied_index: LogIndex,
    /// Index of the last entry covered by the latest snapshot.
    pub snapshot_index: LogIndex,
    /// Index of the last entry in the log.
    pub last_index: LogIndex,
    /// Term of the last entry in the log.
    pub last_term: Term,
    /// The configuration in force.
    pub membership: Membership,
}

/// How far a member has replicated, as its leader sees it ([`Node::replication`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replication {
    /// The member.
    pub node: NodeId,
    /// The highest index known to match the leader's log.
    pub match_index: LogIndex,
    /// Entries the leader has that it is not known to have.
    pub lag: u64,
    /// How long ago the leader last heard from it, microseconds.
    pub heard_us_ago: u64,
    /// Heard from within the minimum election timeout.
    pub reachable: bool,
}

/// A leadership hand-over in progress.
#[derive(Clone, Copy, Debug)]
pub(super) struct Transfer {
    pub(super) target: NodeId,
    pub(super) deadline: Instant,
    pub(super) request: RequestId,
    pub(super) timeout_now_sent: bool,
}

/// One member of a Raft group, as a deterministic state machine with no I/O.
///
/// See the crate documentation for the run-loop contract. In short: feed it with
/// `handle_*`, then drain `poll_storage`, `poll_transmit`, `poll_reply` and `poll_event`
/// until each returns `None`, then sleep until `poll_timeout`.
pub struct Node<M: StateMachine> {
    pub(super) cfg: Config,
    pub(super) machine: M,
    pub(super) rng: Xoshiro256PlusPlus,
    pub(super) now: Instant,

    pub(super) role: Role,
    pub(super) term: Term,
    pub(super) voted_for: Option<NodeId>,
    pub(super) leader: Option<NodeId>,
    pub(super) log: RaftLog,
    pub(super) membership: MembershipLog,
    pub(super) commit: LogIndex,
    pub(super) applied: LogIndex,
    /// The latest snapshot (taken here or received), kept to send to lagging followers.
    pub(super) snapshot: Option<Snapshot>,

    pub(super) election_deadline: Instant,
    /// Last time a leader of the current term was heard from (or the node started).
    pub(super) leader_contact: Instant,
    pub(super) votes: BTreeMap<NodeId, bool>,

    // Leader state.
    pub(super) progress: BTreeMap<NodeId, Progress>,
    pub(super) heartbeat_deadline: Instant,
    pub(super) check_quorum_deadline: Instant,
    /// Index of this leader's first entry of its term: committed ⇒ ready for reads.
    pub(super) term_start_index: LogIndex,
    /// Appends may be due to some follower; flushed lazily when transmits are polled so
    /// that proposals made between two drains travel in one message.
    pub(super) appends_due: bool,
    /// Linearizable reads waiting for confirmation, and the heartbeat rounds confirming them.
    pub(super) reads: ReadIndex,
    pub(super) transfer: Option<Transfer>,
    /// This node learnt it is no longer a member (a leader said so, or it applied a
    /// configuration without itself): it never campaigns again.
    pub(super) removed: bool,
    /// A committed configuration held this node (so one without it means removal).
    pub(super) was_member: bool,
    /// Leader: (local clock, log time) when this term began. Entries are stamped
    /// `log time + (now - local clock)`, so the log's clock runs on without jumps whatever
    /// epoch each host's monotonic clock counts from.
    pub(super) clock_base: (Instant, Instant),
    /// Leader: index of a `Tick` entry not yet applied (0 if none).
    pub(super) tick_pending: LogIndex,

    /// Proposals this leader appended in its term and has not answered: index → request.
    /// Answered when applied, or with `OutcomeUnknown` when leadership ends first, so
    /// only a leader ever holds any.
    pub(super) proposals: BTreeMap<LogIndex, RequestId>,
    /// Follower: the snapshot the leader is sending, as far as it arrived.
    pub(super) incoming_snapshot: IncomingSnapshot,

    // Persistence: `write` accumulates changes and is handed out by `poll_storage` under
    // token `next_token`.
    pub(super) write: StorageWrite,
    pub(super) next_token: u64,
    pub(super) durable_token: u64,
    /// Token of the newest sealed write that changed the hard state.
    pub(super) hard_state_token: u64,
    /// Sealed writes not yet confirmed: (token, last log index once it is durable).
    pub(super) sealed: VecDeque<(u64, LogIndex)>,
    pub(super) durable_last_index: LogIndex,

    /// Messages with the write token that must be durable before they may leave.
    pub(super) outbox: VecDeque<(u64, Message)>,
    pub(super) replies: VecDeque<Reply<M::Output>>,
    pub(super) events: VecDeque<Event<M::Event>>,
    pub(super) metrics: Metrics,
}

impl<M: StateMachine> Node<M> {
    /// Creates a node. `seed` seeds the node's private random generator (election jitter);
    /// give each node its own.
    pub fn new(
        config: Config,
        mut machine: M,
        start: Start,
        now: Instant,
        seed: u64,
    ) -> Result<Self, NodeError> {
        config.validate()?;
        let mut log = RaftLog::new();
        let mut hard_state = HardState::default();
        let mut snapshot = None;
        let mut membership = MembershipLog::new(0, Membership::default());
        let mut bootstrap_write = None;
        match start {
            Start::NewCluster(initial) => {
                if initial.voters.is_empty() {
                    return Err(NodeError::CorruptState("initial membership has no voters"));
                }
                let mut data = Vec::new();
                machine.snapshot(&mut data);
                let snap = Snapshot {
                    meta: SnapshotMeta {
                        index: 0,
                        term: 0,
                        time: Instant::ZERO,
                        membership: initial.clone(),
                    },
                    data,
                };
                membership = MembershipLog::new(0, initial);
                bootstrap_write = Some(SnapshotWrite { snapshot: snap.clone(), retain_log_after: false });
                snapshot = Some(snap);
            }
            Start::Join => {}
            Start::Restart(persisted) => {
                hard_state = persisted.hard_state;
                if let Some(snap) = persisted.snapshot {
                    machine.restore(&snap.data).map_err(NodeError::Restore)?;
                    log.reset_to_snapshot(&snap.meta, false);
                    membership = MembershipLog::new(snap.meta.index, snap.meta.membership.clone());
                    snapshot = Some(snap);
                }
                for entry in persisted.entries {
                    if entry.index != log.last_index() + 1 {
                        return Err(NodeError::CorruptState("stored entries are not contiguous"));
                    }
                    if entry.term < log.last_term() || entry.term > hard_state.term {
                        return Err(NodeError::CorruptState("stored entry terms out of order"));
                    }
                    if let Payload::Membership(m) = &entry.payload {
                        membership.push(entry.index, m.clone());
                    }
                    log.push(entry);
                }
            }
        }
        let commit = log.snapshot_index();
        let mut node = Self {
            machine,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            now,
            role: Role::Follower,
            term: hard_state.term,
            voted_for: hard_state.voted_for,
            leader: None,
            durable_last_index: log.last_index(),
            log,
            membership,
            commit,
            applied: commit,
            snapshot,
            election_deadline: now,
            leader_contact: now,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            heartbeat_deadline: Instant::MAX,
            check_quorum_deadline: Instant::MAX,
            term_start_index: 0,
            clock_base: (Instant::ZERO, Instant::ZERO),
            tick_pending: 0,
            appends_due: false,
            reads: ReadIndex::default(),
            transfer: None,
            removed: false,
            was_member: false,
            proposals: BTreeMap::new(),
            incoming_snapshot: IncomingSnapshot::default(),
            write: StorageWrite {
                token: WriteToken(1),
                hard_state: None,
                snapshot: bootstrap_write,
                entries: Vec::new(),
            },
            next_token: 1,
            durable_token: 0,
            hard_state_token: 0,
            sealed: VecDeque::new(),
            outbox: VecDeque::new(),
            replies: VecDeque::new(),
            events: VecDeque::new(),
            metrics: Metrics::default(),
            cfg: config,
        };
        let m = node.membership.at(node.commit);
        node.was_member = m.contains(node.cfg.id);
        node.reset_election_timer();
        Ok(node)
    }

    // ----- inputs -------------------------------------------------------------------

    /// Handles a message from a peer. Messages for another group or node are refused;
    /// everything else (stale, duplicated, reordered) is handled per Raft.
    pub fn handle_message(&mut self, now: Instant, msg: Message) -> Result<(), NodeError> {
        self.advance_clock(now);
        if msg.group != self.cfg.group {
            return Err(NodeError::WrongGroup);
        }
        if msg.to != self.cfg.id {
            return Err(NodeError::WrongRecipient);
        }
        if let Err(why) = msg.validate() {
            self.metrics.malformed_messages += 1;
            return Err(NodeError::MalformedMessage(why));
        }
        if msg.from != self.cfg.id {
            self.step(msg);
        }
        self.after_input();
        Ok(())
    }

    /// Handles a client request. The answer comes out of [`Node::poll_reply`], possibly
    /// much later (after commit) and possibly as an error.
    pub fn handle_request(&mut self, now: Instant, id: RequestId, request: Request) {
        self.advance_clock(now);
        match request {
            Request::Propose(command) => self.propose(id, command),
            Request::Read { query, consistency } => self.read(id, query, consistency),
            Request::ChangeMembership(change) => self.change_membership(id, change),
            Request::TransferLeadership(target) => self.transfer_leadership(id, target),
        }
        self.after_input();
    }

    /// Handles the passing of time: elections, heartbeats, quorum checks, transfer and
    /// apply work. Call it when [`Node::poll_timeout`] is due (calling early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_clock(now);
        if self.role == Role::Leader {
            self.leader_tick();
        } else if now >= self.election_deadline {
            self.election_timeout();
        }
        self.after_input();
    }

    /// The host made every write up to and including `token` durable.
    pub fn handle_persisted(&mut self, token: WriteToken) -> Result<(), NodeError> {
        if token.0 >= self.next_token {
            return Err(NodeError::UnknownWriteToken(token));
        }
        if token.0 <= self.durable_token {
            return Ok(());
        }
        self.durable_token = token.0;
        while let Some(&(t, last)) = self.sealed.front() {
            if t > token.0 {
                break;
            }
            self.durable_last_index = last;
            self.sealed.pop_front();
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        self.after_input();
        Ok(())
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next write the host must make durable, then confirm with
    /// [`Node::handle_persisted`]. Becomes non-empty after any `handle_*` call that changed
    /// the term, the vote, the log or the snapshot.
    #[must_use]
    pub fn poll_storage(&mut self) -> Option<StorageWrite> {
        if self.write.is_empty() {
            return None;
        }
        let token = self.next_token;
        self.next_token += 1;
        let mut write = core::mem::replace(
            &mut self.write,
            StorageWrite {
                token: WriteToken(self.next_token),
                hard_state: None,
                snapshot: None,
                entries: Vec::new(),
            },
        );
        write.token = WriteToken(token);
        if write.hard_state.is_some() {
            self.hard_state_token = token;
        }
        self.sealed.push_back((token, self.log.last_index()));
        Some(write)
    }

    /// The next message to send. A message leaves only once every write it depends on is
    /// durable (votes and acknowledgements wait for `handle_persisted`), so a host cannot
    /// break persist-before-send. Any `handle_*` call and `handle_persisted` can make this
    /// return something.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Message> {
        if self.role == Role::Leader {
            self.flush_leader_messages();
        }
        let &(required, _) = self.outbox.front()?;
        if required > self.durable_token {
            return None;
        }
        self.outbox.pop_front().map(|(_, m)| m)
    }

    /// The next reply to a client request. Filled by `handle_request` (immediate answers
    /// and errors), and by any call that commits, applies or confirms reads.
    #[must_use]
    pub fn poll_reply(&mut self) -> Option<Reply<M::Output>> {
        self.replies.pop_front()
    }

    /// The next event: role and leader changes, installed snapshots, then whatever the
    /// state machine produced while applying.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event<M::Event>> {
        self.events.pop_front().or_else(|| self.machine.poll_event().map(Event::Machine))
    }

    /// When to call [`Node::handle_timeout`] next. Returns the current time while committed
    /// entries remain to be applied.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        if self.applied < self.commit {
            return self.now;
        }
        match self.role {
            Role::Leader => {
                let transfer = self.transfer.map_or(Instant::MAX, |t| t.deadline);
                self.heartbeat_deadline
                    .min(self.check_quorum_deadline)
                    .min(transfer)
                    .min(self.tick_deadline())
            }
            _ => self.election_deadline,
        }
    }

    // ----- inspection ---------------------------------------------------------------

    /// A summary of the node's state.
    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit_index: self.commit,
            applied_index: self.applied,
            snapshot_index: self.log.snapshot_index(),
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            membership: self.membership.current().clone(),
        }
    }

    /// On a leader, how far each other member has replicated and when it was last heard
    /// from (empty on other nodes), in member order.
    pub fn replication(&self) -> Vec<Replication> {
        if self.role != Role::Leader {
            return Vec::new();
        }
        let last = self.log.last_index();
        self.progress
            .iter()
            .filter(|(id, _)| **id != self.cfg.id)
            .map(|(id, p)| Replication {
                node: *id,
                match_index: p.match_index,
                lag: last.saturating_sub(p.match_index),
                heard_us_ago: self.now.saturating_since_us(p.last_heard),
                reachable: self.now.saturating_since_us(p.last_heard) < self.cfg.election_timeout_min_us,
            })
            .collect()
    }

    /// The latest time the host gave the node.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The current term and vote (what the host must have stored once writes are done).
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, voted_for: self.voted_for }
    }

    /// Highest index known committed.
    pub fn commit_index(&self) -> LogIndex {
        self.commit
    }

    /// Highest index applied to the state machine.
    pub fn applied_index(&self) -> LogIndex {
        self.applied
    }

    /// The entry at `index`, if it is in the (uncompacted) log.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.get(index)
    }

    /// The term of the entry at `index`, if known (in the log or at the snapshot point).
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }

    /// The state machine.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The state machine, mutably: for hosts that drain machine-level outputs. Mutating its
    /// replicated state from outside breaks determinism.
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    /// The configuration in force.
    pub fn membership(&self) -> &Membership {
        self.membership.current()
    }

    /// The node's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters of what this node has done since it was created.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    // ----- shared internals ---------------------------------------------------------

    fn advance_clock(&mut self, now: Instant) {
        // Hosts pass a monotonic clock; tolerate a backwards step by ignoring it. Time
        // then seems to stand still here while it runs on elsewhere, so the lease (which
        // assumes clocks advance together) is void until fresh acknowledgements arrive.
        if now < self.now {
            for p in self.progress.values_mut() {
                p.acked_sent_at = None;
            }
        }
        self.now = self.now.max(now);
    }

    /// Work common to the end of every input: apply committed entries (bounded).
    fn after_input(&mut self) {
        self.apply_committed();
        if self.role == Role::Leader {
            self.serve_ready_reads();
        }
    }

    /// Queues `body` for `to` in the current term, gated on the writes it depends on.
    pub(super) fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.term;
        self.send_in_term(to, term, body);
    }

    /// Like [`Node::send`] with an explicit term: pre-votes speak of the next term, and a
    /// granted pre-vote answers in the term it was asked about.
    pub(super) fn send_in_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let leader_traffic = self.role == Role::Leader
            && matches!(
                body,
                MessageBody::Append { .. }
                    | MessageBody::Heartbeat { .. }
                    | MessageBody::InstallSnapshot { .. }
                    | MessageBody::TimeoutNow
            );
        // A leader's replication traffic depends only on its term being durable (Raft
        // thesis §10.2.1: the leader writes its own log in parallel and counts itself only
        // once durable). Everything else — votes, acknowledgements — waits for all writes.
        let required = if leader_traffic {
            if self.write.hard_state.is_some() {
                self.next_token
            } else {
                self.hard_state_token
            }
        } else if self.write.is_empty() {
            self.next_token - 1
        } else {
            self.next_token
        };
        let msg = Message { group: self.cfg.group, from: self.cfg.id, to, term, body };
        self.outbox.push_back((required, msg));
    }

    pub(super) fn persist_hard_state(&mut self) {
        self.write.hard_state = Some(HardState { term: self.term, voted_for: self.voted_for });
    }

    /// Records entries appended from `from` on (after truncating any at `from` or later).
    pub(super) fn persist_entries(&mut self, from: LogIndex, entries: &[Entry]) {
        self.clamp_durable_to(from.saturating_sub(1));
        self.write.entries.retain(|e| e.index < from);
        debug_assert!(self.write.entries.last().is_none_or(|e| e.index + 1 == from));
        self.write.entries.extend_from_slice(entries);
    }

    /// The in-memory log no longer holds the entries above `last` that earlier writes
    /// stored: they do not count as durable, even once those writes complete.
    pub(super) fn clamp_durable_to(&mut self, last: LogIndex) {
        self.durable_last_index = self.durable_last_index.min(last);
        for (_, sealed_last) in &mut self.sealed {
            *sealed_last = (*sealed_last).min(last);
        }
    }

    pub(super) fn reset_election_timer(&mut self) {
        let min = self.cfg.election_timeout_min_us;
        let span = self.cfg.election_timeout_max_us - min;
        let jitter = self.rng.next_u64() % span;
        self.election_deadline = self.now.add_us(min + jitter);
    }

    pub(super) fn emit_state(&mut self) {
        self.events.push_back(Event::StateChanged { role: self.role, term: self.term, leader: self.leader });
    }

    /// Whether a leader is believed alive: then votes for disruptive candidates are refused
    /// (the CheckQuorum/PreVote "lease" that also makes lease reads safe).
    pub(super) fn in_lease(&self) -> bool {
        match self.role {
            Role::Leader => true,
            Role::Follower => {
                self.now.saturating_since_us(self.leader_contact) < self.cfg.election_timeout_min_us
            }
            Role::PreCandidate | Role::Candidate => false,
        }
    }

    /// Steps down to follower in `term` (unchanged or higher) following `leader`.
    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        debug_assert!(term >= self.term);
        let changed = self.role != Role::Follower || self.leader != leader || term != self.term;
        let term_rose = term > self.term;
        if term_rose {
            self.term = term;
            self.voted_for = None;
            self.persist_hard_state();
        }
        if self.role == Role::Leader {
            self.step_down_cleanup(term_rose);
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        self.reset_election_timer();
        if changed {
            debug!("{} follower term={} leader={:?}", self.cfg.id, self.term, leader);
            self.emit_state();
        }
    }

    /// Ends leadership: fails what only a leader can finish. `term_rose` tells whether a
    /// newer term caused it (which is how a successful transfer ends).
    fn step_down_cleanup(&mut self, term_rose: bool) {
        self.progress.clear();
        self.appends_due = false;
        self.heartbeat_deadline = Instant::MAX;
        self.check_quorum_deadline = Instant::MAX;
        for id in self.reads.take_all() {
            self.push_reply(id, Err(RequestError::NotLeader { leader: None }));
        }
        // Proposals still pending may yet commit under the next leader, or not: only it
        // knows. This node might never learn (it may be partitioned, or removed), so it
        // answers now; clients retry (idempotently) or ask the new leader.
        for (_, id) in core::mem::take(&mut self.proposals) {
            self.push_reply(id, Err(RequestError::OutcomeUnknown));
        }
        if let Some(t) = self.transfer.take() {
            let result = if term_rose {
                Ok(Response::LeadershipTransferred { term: self.term })
            } else {
                Err(RequestError::TransferTimedOut)
            };
            self.push_reply(t.request, result);
        }
    }

    // ----- proposals ----------------------------------------------------------------

    fn not_leader(&self) -> RequestError {
        RequestError::NotLeader { leader: self.leader.filter(|l| *l != self.cfg.id) }
    }

    fn check_writable(&self) -> Result<(), RequestError> {
        if self.role != Role::Leader {
            return Err(self.not_leader());
        }
        if self.transfer.is_some() {
            return Err(RequestError::TransferInProgress);
        }
        if self.proposals.len() >= self.cfg.pending_proposals_max {
            return Err(RequestError::Busy);
        }
        Ok(())
    }

    fn propose(&mut self, id: RequestId, command: Vec<u8>) {
        let max = self.cfg.proposal_bytes_max;
        let checked = self.check_writable().and_then(|()| {
            (command.len() <= max)
                .then_some(())
                .ok_or(RequestError::ProposalTooLarge { size: command.len(), max })
        });
        if let Err(e) = checked {
            self.push_reply(id, Err(e));
            return;
        }
        let index = self.append_entry(Payload::Command(command));
        self.proposals.insert(index, id);
    }

    /// Leader: the log-clock reading for the current local time.
    pub(super) fn log_time(&self) -> Instant {
        let (local, log) = self.clock_base;
        log.add_us(self.now.saturating_since_us(local))
    }

    /// Leader: the local time at which the log clock reaches `t`.
    fn local_time_of(&self, t: Instant) -> Instant {
        let (local, log) = self.clock_base;
        local.add_us(t.saturating_since_us(log))
    }

    /// Leader: proposes a `Tick` when the state machine has a deadline due and no tick is
    /// in flight, once the term's first entry has committed.
    pub(super) fn maybe_propose_tick(&mut self) {
        if self.tick_pending > self.applied || self.commit < self.term_start_index || self.transfer.is_some()
        {
            return;
        }
        if let Some(deadline) = self.machine.next_deadline() {
            if self.log_time() >= deadline {
                self.metrics.ticks_proposed += 1;
                self.tick_pending = self.append_entry(Payload::Tick);
            }
        }
    }

    /// Leader: when the next `Tick` will be due (in local time), if one can be proposed.
    pub(super) fn tick_deadline(&self) -> Instant {
        if self.tick_pending > self.applied || self.commit < self.term_start_index || self.transfer.is_some()
        {
            return Instant::MAX;
        }
        self.machine.next_deadline().map_or(Instant::MAX, |d| self.local_time_of(d))
    }

    /// Appends a new entry as leader, stamped with the leader's clock (never backwards).
    pub(super) fn append_entry(&mut self, payload: Payload) -> LogIndex {
        let index = self.log.last_index() + 1;
        let time = self.log_time().max(self.log.last_time());
        if let Payload::Membership(m) = &payload {
            self.membership.push(index, m.clone());
        }
        let entry = Entry { term: self.term, index, time, payload };
        self.persist_entries(index, core::slice::from_ref(&entry));
        self.log.push(entry);
        self.appends_due = true;
        index
    }

    fn change_membership(&mut self, id: RequestId, change: MembershipChange) {
        let result = self.check_writable().and_then(|()| {
            if self.commit < self.term_start_index {
                return Err(RequestError::LeaderNotReady);
            }
            if self.membership.current_index() > self.commit {
                return Err(RequestError::MembershipChangePending);
            }
            self.membership.current().apply(change).map_err(RequestError::InvalidMembershipChange)
        });
        match result {
            Ok(next) => {
                self.metrics.membership_changes_proposed += 1;
                let index = self.append_entry(Payload::Membership(next));
                self.proposals.insert(index, id);
                self.sync_progress_with_membership();
            }
            Err(e) => self.replies.push_back(Reply { id, result: Err(e) }),
        }
    }

    /// Makes the leader's progress map track exactly the current members.
    pub(super) fn sync_progress_with_membership(&mut self) {
        let members: Vec<NodeId> =
            self.membership.current().members().filter(|m| *m != self.cfg.id).collect();
        self.progress.retain(|id, _| members.contains(id));
        let last = self.log.last_index();
        let now = self.now;
        for m in members {
            self.progress.entry(m).or_insert_with(|| Progress::new(last, now));
        }
        self.appends_due = true;
    }

    // ----- reads --------------------------------------------------------------------

    /// A client read: a stale one is answered at once from this replica's state; a
    /// linearizable one waits on the leader until [`ReadIndex`] lets it through.
    fn read(&mut self, id: RequestId, query: Vec<u8>, consistency: Consistency) {
        if consistency == Consistency::Stale {
            self.metrics.reads_stale += 1;
            let output = self.machine.query(&query);
            let index = self.applied;
            self.push_reply(id, Ok(Response::Read { index, output }));
            return;
        }
        if self.role != Role::Leader {
            let leader = self.leader;
            self.push_reply(id, Err(RequestError::NotLeader { leader }));
            return;
        }
        let index = (self.commit >= self.term_start_index).then_some(self.commit);
        let lease = index.is_some() && consistency == Consistency::Lease && self.lease_valid();
        match self.reads.add(id, query, index, lease, self.cfg.pending_reads_max) {
            Ok(Confirmation::Lease) => self.metrics.reads_lease += 1,
            Ok(Confirmation::Quorum) => {}
            Err(e) => self.push_reply(id, Err(e)),
        }
    }

    /// Whether the leader's lease covers `now`: a quorum acknowledged heartbeats sent
    /// recently enough that none of them can have voted for another leader yet.
    fn lease_valid(&self) -> bool {
        if self.transfer.is_some() {
            return false;
        }
        self.quorum_value(self.now, |p| p.acked_sent_at)
            .is_some_and(|start| self.now < start.add_us(self.cfg.lease_duration_us()))
    }

    /// The highest heartbeat round a quorum of voters (this leader included) echoed.
    fn quorum_acked_round(&self) -> u64 {
        self.quorum_value(self.reads.last_round(), |p| Some(p.acked_seq)).unwrap_or(0)
    }

    /// Leader: answers reads whose leadership is confirmed and whose index is applied.
    fn serve_ready_reads(&mut self) {
        if self.reads.is_empty() {
            return;
        }
        #[cfg(feature = "bug-injection")]
        let confirmed =
            if self.cfg.bugs.read_index_without_quorum { u64::MAX } else { self.quorum_acked_round() };
        #[cfg(not(feature = "bug-injection"))]
        let confirmed = self.quorum_acked_round();
        let applied = self.applied;
        let advance = self.reads.advance(confirmed, applied);
        self.metrics.reads_read_index += advance.confirmed;
        for (id, query) in advance.ready {
            let output = self.machine.query(&query);
            self.push_reply(id, Ok(Response::Read { index: applied, output }));
        }
    }

    // ----- commit and apply ---------------------------------------------------------

    /// The index up to which this node's own log is durable.
    pub(super) fn self_match(&self) -> LogIndex {
        self.durable_last_index.min(self.log.last_index())
    }

    /// Leader: advances the commit index to what a quorum of voters has durably stored,
    /// counting only entries of the current term (Raft §5.4.2).
    pub(super) fn maybe_commit(&mut self) {
        let Some(candidate) = self.quorum_value(self.self_match(), |p| Some(p.match_index)) else {
            return;
        };
        if candidate <= self.commit {
            return;
        }
        #[cfg(feature = "bug-injection")]
        let any_term = self.cfg.bugs.commit_prior_term_by_count;
        #[cfg(not(feature = "bug-injection"))]
        let any_term = false;
        if any_term || self.log.term(candidate) == Some(self.term) {
            self.metrics.entries_committed_as_leader += candidate - self.commit;
            self.commit = candidate;
            self.appends_due = true;
            if self.commit >= self.term_start_index {
                self.reads.term_committed(self.commit);
            }
        }
    }

    /// The highest value a quorum of voters has reached: commit index from match indexes,
    /// confirmed reads from echoed heartbeats, the lease from acknowledged send times.
    /// This node contributes `own` if it votes; a follower without a value counts as not
    /// there. `None` if fewer than a quorum have one.
    pub(super) fn quorum_value<T: Ord + Copy>(
        &self,
        own: T,
        peer: impl Fn(&Progress) -> Option<T>,
    ) -> Option<T> {
        let members = self.membership.current();
        let mut values: Vec<T> = members
            .voters
            .iter()
            .filter_map(|v| if *v == self.cfg.id { Some(own) } else { self.progress.get(v).and_then(&peer) })
            .collect();
        let quorum = members.quorum();
        if values.len() < quorum {
            return None;
        }
        values.sort_unstable_by(|a, b| b.cmp(a));
        Some(values[quorum - 1])
    }

    /// Applies committed entries, at most `apply_batch_max` per call.
    fn apply_committed(&mut self) {
        let mut budget = self.cfg.apply_batch_max;
        while self.applied < self.commit && budget > 0 {
            budget -= 1;
            let index = self.applied + 1;
            let Some(entry) = self.log.get(index) else {
                // Compacted entries are covered by the snapshot already applied.
                debug_assert!(false, "committed entry {index} missing from the log");
                break;
            };
            let (term, time) = (entry.term, entry.time);
            let ctx = ApplyContext { index, term, time };
            let owner = self.proposals.remove(&index);
            debug_assert!(owner.is_none() || term == self.term, "a proposal outlived its leader's term");
            let response = match &entry.payload {
                Payload::Noop => {
                    self.machine.leader_changed(ctx);
                    None
                }
                Payload::Tick => {
                    self.machine.tick(ctx);
                    None
                }
                Payload::Command(cmd) => {
                    self.metrics.entries_applied += 1;
                    let output = self.machine.apply(ctx, cmd);
                    Some(Response::Applied { index, output })
                }
                Payload::Membership(m) => Some(Response::MembershipChanged { index, membership: m.clone() }),
            };
            self.applied = index;
            if let (Some(id), Some(response)) = (owner, response) {
                self.push_reply(id, Ok(response));
            }
            if self.role == Role::Leader
                && self.membership.current_index() <= index
                && !self.membership.current().is_voter(self.cfg.id)
            {
                // A leader that removed itself leads until the change commits, then leaves
                // (answering what it still had pending).
                let term = self.term;
                self.become_follower(term, None);
            }
            // A member that applies (so commits) a configuration without itself was
            // removed: it says so once. A joining node becomes a member first.
            let m = self.membership.at(index);
            if m.contains(self.cfg.id) {
                self.was_member = true;
            } else if self.was_member && !self.removed {
                self.removed = true;
                let by = self.leader.unwrap_or(self.cfg.id);
                self.events.push_back(Event::Removed { by });
            }
        }
        self.maybe_snapshot();
    }

    pub(super) fn push_reply(&mut self, id: RequestId, result: Result<Response<M::Output>, RequestError>) {
        self.replies.push_back(Reply { id, result });
    }
}
