//! Reads: linearizable by ReadIndex (a quorum confirms the leader after the read arrives)
//! or by lease (a quorum confirmed it recently enough that no other leader can exist), and
//! stale reads served by any replica.

use super::node::{Node, Role};
use super::progress::ReplicationState;
use super::request::{Consistency, RequestError, RequestId, Response};
use super::{LogIndex, MessageBody, NodeId, StateMachine};
use crate::time::Instant;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// How many heartbeat send times a leader remembers for lease accounting.
const HEARTBEAT_HISTORY_MAX: usize = 256;

/// A linearizable read waiting to be served.
#[derive(Clone, Debug)]
pub(super) struct PendingRead {
    pub(super) id: RequestId,
    pub(super) query: Vec<u8>,
    /// The commit index the read must observe; `None` until the leader has committed an
    /// entry of its term (before that its commit index may be behind).
    pub(super) index: Option<LogIndex>,
    /// Heartbeat sequence a quorum must echo to confirm leadership; 0 once confirmed.
    pub(super) seq: u64,
}

#[derive(Clone, Debug, Default)]
pub(super) struct ReadState {
    /// Sequence number of the last heartbeat broadcast.
    pub(super) seq: u64,
    /// (seq, send time) of recent broadcasts, oldest first.
    sent_at: VecDeque<(u64, Instant)>,
    pending: VecDeque<PendingRead>,
    /// A read is waiting for a heartbeat round: broadcast at the next transmit drain.
    pub(super) heartbeat_due: bool,
    /// Set once this leader sent TimeoutNow: the target may win without waiting for leases
    /// to lapse, so this leader must never again trust its lease in this term.
    pub(super) lease_disabled: bool,
}

impl ReadState {
    pub(super) fn take_all(&mut self) -> VecDeque<PendingRead> {
        core::mem::take(&mut self.pending)
    }

    fn record_broadcast(&mut self, now: Instant) -> u64 {
        self.seq += 1;
        if self.sent_at.len() == HEARTBEAT_HISTORY_MAX {
            self.sent_at.pop_front();
        }
        self.sent_at.push_back((self.seq, now));
        self.seq
    }

    fn sent_time(&self, seq: u64) -> Option<Instant> {
        let k = self.sent_at.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
        Some(self.sent_at[k].1)
    }
}

impl<M: StateMachine> Node<M> {
    pub(super) fn read(&mut self, id: RequestId, query: Vec<u8>, consistency: Consistency) {
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
        if self.reads.pending.len() >= self.cfg.pending_reads_max {
            self.push_reply(id, Err(RequestError::Busy));
            return;
        }
        let ready = self.commit >= self.term_start_index;
        let index = ready.then_some(self.commit);
        let seq = if ready && consistency == Consistency::Lease && self.lease_valid() {
            self.metrics.reads_lease += 1;
            0
        } else {
            self.reads.heartbeat_due |= ready;
            self.reads.seq + 1
        };
        self.reads.pending.push_back(PendingRead { id, query, index, seq });
    }

    /// Whether the leader's lease covers `now`: a quorum acknowledged heartbeats sent
    /// recently enough that none of them can have voted for another leader yet.
    fn lease_valid(&self) -> bool {
        if self.reads.lease_disabled || self.transfer.is_some() {
            return false;
        }
        self.quorum_value(self.now, |p| p.acked_sent_at)
            .is_some_and(|start| self.now < start.add_us(self.cfg.lease_duration_us()))
    }

    /// The highest heartbeat sequence a quorum of voters (this leader included) echoed.
    fn quorum_acked_seq(&self) -> u64 {
        self.quorum_value(self.reads.seq, |p| Some(p.acked_seq)).unwrap_or(0)
    }

    /// Leader: sends a heartbeat to every follower, carrying a fresh read sequence.
    pub(super) fn broadcast_heartbeat(&mut self) {
        let now = self.now;
        self.heartbeat_deadline = now.add_us(self.cfg.heartbeat_interval_us);
        self.reads.heartbeat_due = false;
        let seq = self.reads.record_broadcast(now);
        let targets: Vec<(NodeId, LogIndex)> =
            self.progress.iter().map(|(id, p)| (*id, p.match_index.min(self.commit))).collect();
        for (peer, commit) in targets {
            self.send(peer, MessageBody::Heartbeat { commit, seq });
        }
    }

    /// Follower: a heartbeat from the current leader.
    pub(super) fn handle_heartbeat(&mut self, from: NodeId, commit: LogIndex, seq: u64) {
        // The leader sends min(its commit, our match), so this prefix matches its log.
        let commit = commit.min(self.log.last_index());
        if commit > self.commit {
            self.commit = commit;
        }
        self.send(from, MessageBody::HeartbeatResponse { seq });
    }

    /// Leader: a follower echoed a heartbeat. Besides confirming leadership for reads and
    /// renewing the lease, the echo tells what the follower must have received: a
    /// follower answers only after its pending writes, so on a link that delivers in order
    /// (TCP), an append or snapshot chunk sent *before* this heartbeat and still
    /// unanswered was lost, and is resent. On a reordering link the guess can be wrong;
    /// that only costs a redundant resend (the late answer still counts).
    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, seq: u64) {
        if seq > self.reads.seq {
            self.metrics.malformed_messages += 1;
            return; // Echo of a heartbeat never sent: forged or corrupt.
        }
        let now = self.now;
        let sent = self.reads.sent_time(seq);
        let (last, commit) = (self.log.last_index(), self.commit);
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.last_heard = now;
        if seq > pr.acked_seq {
            pr.acked_seq = seq;
            pr.acked_sent_at = sent;
        }
        let lost = |at: Instant| sent.is_some_and(|hb| at < hb);
        let mut resend_snapshot = false;
        match pr.state {
            ReplicationState::Probe { .. } => pr.state = ReplicationState::Probe { paused: false },
            ReplicationState::Replicate => {
                if pr.inflight.front().is_some_and(|&(_, at)| lost(at)) {
                    pr.become_probe();
                }
            }
            ReplicationState::Snapshot { sent_at, .. } => resend_snapshot = lost(sent_at),
        }
        if pr.match_index < last || pr.commit_sent < commit {
            self.appends_due = true;
        }
        if resend_snapshot {
            self.send_snapshot_chunk(from);
        }
    }

    /// Leader: commit advanced; reads that waited for the term's first commit get their
    /// read index now.
    pub(super) fn on_commit_advanced(&mut self) {
        if self.commit < self.term_start_index {
            return;
        }
        let commit = self.commit;
        let mut assigned = false;
        for read in self.reads.pending.iter_mut().filter(|r| r.index.is_none()) {
            read.index = Some(commit);
            assigned = true;
        }
        if assigned {
            self.reads.heartbeat_due = true;
        }
    }

    /// Leader: answers reads whose leadership is confirmed and whose index is applied.
    pub(super) fn serve_ready_reads(&mut self) {
        if self.reads.pending.is_empty() {
            return;
        }
        #[cfg(feature = "bug-injection")]
        let confirmed =
            if self.cfg.bugs.read_index_without_quorum { u64::MAX } else { self.quorum_acked_seq() };
        #[cfg(not(feature = "bug-injection"))]
        let confirmed = self.quorum_acked_seq();
        let applied = self.applied;
        let mut waiting = VecDeque::new();
        for mut read in self.reads.take_all() {
            if read.seq != 0 && read.index.is_some() && read.seq <= confirmed {
                self.metrics.reads_read_index += 1;
                read.seq = 0;
            }
            match read.index {
                Some(index) if read.seq == 0 && index <= applied => {
                    let output = self.machine.query(&read.query);
                    self.push_reply(read.id, Ok(Response::Read { index: applied, output }));
                }
                _ => waiting.push_back(read),
            }
        }
        self.reads.pending = waiting;
    }
}
