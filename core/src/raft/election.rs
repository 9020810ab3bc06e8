//! Elections: term handling, PreVote, votes, CheckQuorum and leadership transfer.

use super::node::{Node, Role, Transfer};
use super::request::{RequestError, RequestId};
use super::{Message, MessageBody, NodeId, Payload, StateMachine, Term};
use alloc::vec::Vec;

impl<M: StateMachine> Node<M> {
    /// Routes a message after applying Raft's term rules.
    pub(super) fn step(&mut self, msg: Message) {
        if self.role == Role::Leader
            && matches!(msg.body, MessageBody::PreVote { .. } | MessageBody::Vote { .. })
            && self.is_removed(msg.from)
        {
            // A node this leader's configurations no longer hold, and whose removal is
            // committed: it would campaign forever without hearing of it.
            debug!("{} tells removed {} so", self.cfg.id, msg.from);
            self.send(msg.from, MessageBody::Removed);
            return;
        }
        if msg.term > self.term {
            match msg.body {
                // A pre-vote asks about a future term; answering it changes nothing here.
                MessageBody::PreVote { .. } => {}
                // A granted pre-vote carries the future term it was asked for.
                MessageBody::PreVoteResponse { granted: true } => {}
                MessageBody::Vote { transfer, .. } if !transfer && self.in_lease() => {
                    // CheckQuorum: a leader is alive, so this candidate is disruptive (it
                    // was partitioned or removed). Ignore it without adopting its term.
                    debug!("{} ignores vote from {} in lease", self.cfg.id, msg.from);
                    self.metrics.votes_ignored_in_lease += 1;
                    return;
                }
                _ => {
                    let leader = match msg.body {
                        MessageBody::Append { .. }
                        | MessageBody::Heartbeat { .. }
                        | MessageBody::InstallSnapshot { .. } => Some(msg.from),
                        _ => None,
                    };
                    self.become_follower(msg.term, leader);
                }
            }
        } else if msg.term < self.term {
            match msg.body {
                // A stale leader: tell it the current term so it steps down. Without this
                // a leader cut off by PreVote-protected followers could linger forever.
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    let body =
                        MessageBody::AppendResponse { success: false, index: 0, hint_index: 0, hint_term: 0 };
                    self.send(msg.from, body);
                }
                MessageBody::PreVote { .. } => {
                    self.metrics.pre_votes_refused += 1;
                    self.send(msg.from, MessageBody::PreVoteResponse { granted: false });
                }
                _ => {}
            }
            return;
        }
        self.dispatch(msg);
    }

    fn dispatch(&mut self, msg: Message) {
        let from = msg.from;
        match msg.body {
            MessageBody::PreVote { last_index, last_term } => {
                self.handle_pre_vote(from, msg.term, last_index, last_term);
            }
            MessageBody::PreVoteResponse { granted } => {
                if self.role == Role::PreCandidate && msg.term == self.term + 1 {
                    self.record_vote(from, granted);
                }
            }
            MessageBody::Vote { last_index, last_term, transfer } => {
                self.handle_vote(from, last_index, last_term, transfer);
            }
            MessageBody::VoteResponse { granted } => {
                if self.role == Role::Candidate {
                    self.record_vote(from, granted);
                }
            }
            MessageBody::Append { prev_index, prev_term, entries, commit } => {
                self.follow(from);
                self.handle_append(from, prev_index, prev_term, entries, commit);
            }
            MessageBody::AppendResponse { success, index, hint_index, hint_term } => {
                if self.role == Role::Leader {
                    self.handle_append_response(from, success, index, hint_index, hint_term);
                }
            }
            MessageBody::Heartbeat { commit, seq } => {
                self.follow(from);
                self.handle_heartbeat(from, commit, seq);
            }
            MessageBody::HeartbeatResponse { seq } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(from, seq);
                }
            }
            MessageBody::InstallSnapshot { meta, offset, total, data } => {
                self.follow(from);
                self.handle_install_snapshot(from, meta, offset, total, data);
            }
            MessageBody::InstallSnapshotResponse { index, next_offset, done } => {
                if self.role == Role::Leader {
                    self.handle_install_snapshot_response(from, index, next_offset, done);
                }
            }
            MessageBody::Removed => {
                // Believed only from a voter of this node's own configuration.
                if !self.removed && self.membership.current().is_voter(from) {
                    debug!("{} learns from {} that it was removed", self.cfg.id, from);
                    self.removed = true;
                    self.events.push_back(super::node::Event::Removed { by: from });
                }
            }
            MessageBody::TimeoutNow => {
                if self.role == Role::Follower && self.leader == Some(from) && self.is_voter() {
                    debug!("{} takes over from {} (transfer)", self.cfg.id, from);
                    self.metrics.transfers_taken_over += 1;
                    self.become_candidate(true);
                }
            }
        }
    }

    /// Accepts `from` as the leader of the current term.
    fn follow(&mut self, from: NodeId) {
        if self.role != Role::Follower || self.leader != Some(from) {
            let term = self.term;
            self.become_follower(term, Some(from));
        }
        self.leader_contact = self.now;
        self.reset_election_timer();
    }

    pub(super) fn is_voter(&self) -> bool {
        self.membership.current().is_voter(self.cfg.id)
    }

    /// Whether `node` is in neither the latest configuration nor the committed one.
    fn is_removed(&self, node: NodeId) -> bool {
        !self.membership.current().contains(node) && !self.membership.at(self.commit).contains(node)
    }

    fn handle_pre_vote(&mut self, from: NodeId, term: Term, last_index: u64, last_term: Term) {
        let granted = term > self.term && !self.in_lease() && self.log_ok_for_vote(last_index, last_term);
        if !granted {
            self.metrics.pre_votes_refused += 1;
        }
        let reply_term = if granted { term } else { self.term };
        self.send_in_term(from, reply_term, MessageBody::PreVoteResponse { granted });
    }

    fn handle_vote(&mut self, from: NodeId, last_index: u64, last_term: Term, transfer: bool) {
        // The lease check also applies at equal terms: this node may have adopted the
        // candidate's term from another message while its leader's lease still runs.
        let lease_ok = transfer || !self.in_lease() || self.voted_for == Some(from);
        let can_vote =
            lease_ok && (self.voted_for == Some(from) || (self.voted_for.is_none() && self.leader.is_none()));
        let granted = can_vote && self.log_ok_for_vote(last_index, last_term) && self.role != Role::Leader;
        if granted && self.voted_for.is_none() {
            self.voted_for = Some(from);
            self.persist_hard_state();
            self.reset_election_timer();
        }
        // Sent only after the vote is durable (see `send`).
        self.send(from, MessageBody::VoteResponse { granted });
    }

    /// The election restriction (Raft §5.4.1): only vote for a log at least as up to date.
    fn log_ok_for_vote(&self, last_index: u64, last_term: Term) -> bool {
        #[cfg(feature = "bug-injection")]
        if self.cfg.bugs.vote_without_log_check {
            return true;
        }
        self.log.is_up_to_date(last_index, last_term)
    }

    fn record_vote(&mut self, from: NodeId, granted: bool) {
        if !self.membership.current().is_voter(from) {
            return;
        }
        self.votes.insert(from, granted);
        let quorum = self.membership.current().quorum();
        let yes = self.votes.values().filter(|g| **g).count();
        let no = self.votes.len() - yes;
        if yes >= quorum {
            match self.role {
                Role::PreCandidate => self.become_candidate(false),
                Role::Candidate => self.become_leader(),
                _ => {}
            }
        } else if no >= quorum {
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    /// The election timer fired on a follower or candidate.
    pub(super) fn election_timeout(&mut self) {
        if !self.is_voter() || self.removed {
            // Learners and removed nodes never campaign.
            self.reset_election_timer();
            return;
        }
        self.become_pre_candidate();
    }

    fn voters_except_self(&self) -> Vec<NodeId> {
        self.membership.current().voters.iter().copied().filter(|v| *v != self.cfg.id).collect()
    }

    fn become_pre_candidate(&mut self) {
        debug!("{} pre-candidate for term {}", self.cfg.id, self.term + 1);
        self.metrics.pre_votes_started += 1;
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.reset_election_timer();
        self.emit_state();
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let next_term = self.term + 1;
        for peer in self.voters_except_self() {
            self.send_in_term(peer, next_term, MessageBody::PreVote { last_index, last_term });
        }
        let id = self.cfg.id;
        self.record_vote(id, true);
    }

    /// Starts a real election in the next term. `transfer` marks an election started on a
    /// leader's request, which voters honour even while they believe that leader alive.
    pub(super) fn become_candidate(&mut self, transfer: bool) {
        self.metrics.elections_started += 1;
        self.term += 1;
        self.voted_for = Some(self.cfg.id);
        self.persist_hard_state();
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        self.reset_election_timer();
        debug!("{} candidate term={}", self.cfg.id, self.term);
        self.emit_state();
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.voters_except_self() {
            self.send(peer, MessageBody::Vote { last_index, last_term, transfer });
        }
        let id = self.cfg.id;
        self.record_vote(id, true);
    }

    fn become_leader(&mut self) {
        debug!("{} leader term={}", self.cfg.id, self.term);
        self.metrics.elections_won += 1;
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.votes.clear();
        self.progress.clear();
        self.reads = Default::default();
        self.transfer = None;
        self.heartbeat_deadline = self.now;
        self.check_quorum_deadline = self.now.add_us(self.cfg.election_timeout_min_us);
        self.sync_progress_with_membership();
        self.clock_base = (self.now, self.log.last_time());
        self.tick_pending = 0;
        // Committing an entry of its own term is how a new leader learns what is committed
        // (and is required before reads and membership changes).
        self.term_start_index = self.append_entry(Payload::Noop);
        self.emit_state();
        self.maybe_commit();
    }

    /// Leader timers: heartbeats, the CheckQuorum test, transfer expiry.
    pub(super) fn leader_tick(&mut self) {
        let now = self.now;
        if now >= self.check_quorum_deadline {
            self.check_quorum_deadline = now.add_us(self.cfg.election_timeout_min_us);
            if !self.quorum_recently_active() {
                debug!("{} steps down: quorum not heard from", self.cfg.id);
                self.metrics.check_quorum_step_downs += 1;
                let term = self.term;
                self.become_follower(term, None);
                return;
            }
        }
        if let Some(t) = self.transfer {
            if now >= t.deadline {
                self.transfer = None;
                self.push_reply(t.request, Err(RequestError::TransferTimedOut));
            }
        }
        if now >= self.heartbeat_deadline {
            self.broadcast_heartbeat();
        }
        self.maybe_propose_tick();
    }

    fn quorum_recently_active(&self) -> bool {
        let window = self.cfg.election_timeout_min_us;
        let members = self.membership.current();
        let active = members
            .voters
            .iter()
            .filter(|v| {
                **v == self.cfg.id
                    || self
                        .progress
                        .get(v)
                        .is_some_and(|p| self.now.saturating_since_us(p.last_heard) < window)
            })
            .count();
        active >= members.quorum()
    }

    pub(super) fn transfer_leadership(&mut self, id: RequestId, target: NodeId) {
        if self.role != Role::Leader {
            let leader = self.leader;
            self.push_reply(id, Err(RequestError::NotLeader { leader }));
            return;
        }
        if self.transfer.is_some() {
            self.push_reply(id, Err(RequestError::TransferInProgress));
            return;
        }
        if target == self.cfg.id || !self.membership.current().is_voter(target) {
            self.push_reply(id, Err(RequestError::InvalidTransferTarget(target)));
            return;
        }
        let deadline = self.now.add_us(self.cfg.election_timeout_max_us);
        self.transfer = Some(Transfer { target, deadline, request: id, timeout_now_sent: false });
        self.maybe_send_timeout_now();
        self.appends_due = true;
    }

    /// Sends TimeoutNow once the transfer target has the whole log.
    pub(super) fn maybe_send_timeout_now(&mut self) {
        let Some(t) = self.transfer else { return };
        if t.timeout_now_sent {
            return;
        }
        let caught_up = self.progress.get(&t.target).is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            self.metrics.transfers_started += 1;
            // The target may win at any time from now on, with votes that bypass the
            // followers' lease check: this leader's lease can no longer be trusted.
            self.reads.disable_lease();
            self.send(t.target, MessageBody::TimeoutNow);
            if let Some(t) = &mut self.transfer {
                t.timeout_now_sent = true;
            }
        }
    }
}
