//! Log replication: appends and heartbeats on the follower side; flow control, fast
//! backtracking and, from heartbeat echoes, loss detection on the leader side.

use super::node::Node;
use super::progress::ReplicationState;
use super::{Entry, LogIndex, MessageBody, NodeId, Payload, StateMachine, Term};
use crate::time::Instant;
use alloc::vec::Vec;

impl<M: StateMachine> Node<M> {
    /// Follower: handles entries from the leader of the current term.
    pub(super) fn handle_append(
        &mut self,
        from: NodeId,
        mut prev_index: LogIndex,
        mut prev_term: Term,
        mut entries: Vec<Entry>,
        leader_commit: LogIndex,
    ) {
        if !self.entries_well_formed(prev_index, prev_term, &entries) {
            warn!("{} drops malformed append from {}", self.cfg.id, from);
            self.metrics.malformed_messages += 1;
            return;
        }
        if prev_index < self.commit {
            // The committed prefix matches the leader's by definition: skip it.
            let skip = usize::try_from(self.commit - prev_index).unwrap_or(usize::MAX);
            if skip >= entries.len() {
                let index = self.commit;
                self.send(
                    from,
                    MessageBody::AppendResponse { success: true, index, hint_index: 0, hint_term: 0 },
                );
                return;
            }
            entries.drain(..skip);
            prev_index = self.commit;
            prev_term = self.log.term(prev_index).unwrap_or(0);
        }
        if self.log.term(prev_index) != Some(prev_term) {
            self.metrics.appends_rejected += 1;
            // Entries of ours whose term exceeds the leader's `prev_term` cannot be in its
            // log at those indexes: point the leader below them in one step.
            let hint_index = self
                .log
                .last_index_with_term_at_most(prev_index.min(self.log.last_index()), prev_term)
                .unwrap_or(self.log.snapshot_index());
            let hint_term = self.log.term(hint_index).unwrap_or(0);
            let body =
                MessageBody::AppendResponse { success: false, index: prev_index, hint_index, hint_term };
            self.send(from, body);
            return;
        }
        let last_new = prev_index + entries.len() as u64;
        let conflict = entries.iter().position(|e| self.log.term(e.index) != Some(e.term));
        if let Some(k) = conflict {
            let first = entries[k].index;
            if first <= self.log.last_index() {
                debug_assert!(first > self.commit, "leader asked to truncate committed entries");
                self.log.truncate_from(first);
                self.membership.truncate_from(first);
                // Proposals made here at those indexes stay pending: another node may still
                // hold and commit them. Applying the index decides their fate.
            }
            let new = entries.split_off(k);
            self.persist_entries(first, &new);
            for entry in new {
                if let Payload::Membership(m) = &entry.payload {
                    self.membership.push(entry.index, m.clone());
                }
                self.log.push(entry);
            }
        }
        let new_commit = leader_commit.min(last_new);
        if new_commit > self.commit {
            self.commit = new_commit;
        }
        // Leaves only after the appended entries are durable (see `send`).
        self.send(
            from,
            MessageBody::AppendResponse { success: true, index: last_new, hint_index: 0, hint_term: 0 },
        );
    }

    /// Entries must follow `prev_index` contiguously with terms that never decrease and
    /// never exceed the sender's term; anything else is a corrupt or forged message.
    fn entries_well_formed(&self, prev_index: LogIndex, prev_term: Term, entries: &[Entry]) -> bool {
        let mut term = prev_term;
        for (expected, e) in (prev_index + 1..).zip(entries) {
            if e.index != expected || e.term < term || e.term > self.term {
                return false;
            }
            term = e.term;
        }
        true
    }

    /// Leader: a follower answered an append.
    pub(super) fn handle_append_response(
        &mut self,
        from: NodeId,
        success: bool,
        index: LogIndex,
        hint_index: LogIndex,
        hint_term: Term,
    ) {
        let now = self.now;
        let last_index = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.last_heard = now;
        if success {
            if index > last_index {
                return; // A forged or corrupt acknowledgement.
            }
            let probing = matches!(pr.state, ReplicationState::Probe { .. });
            let advanced = pr.acknowledge(index);
            if probing {
                pr.become_replicate();
            }
            self.appends_due = true;
            if advanced {
                self.maybe_commit();
                self.maybe_send_timeout_now();
            }
            return;
        }
        if index <= pr.match_index || index > last_index {
            return; // Stale (a later append already succeeded) or impossible.
        }
        match pr.state {
            ReplicationState::Probe { .. } if index + 1 != pr.next_index => return,
            ReplicationState::Snapshot { .. } => return,
            _ => {}
        }
        // Probe where the follower's log most likely matches ours, never at or above the
        // index just rejected (so every rejection makes progress). Below our snapshot
        // point means the follower gets the snapshot.
        let probe = match self.log.last_index_with_term_at_most(hint_index, hint_term) {
            Some(j) => j,
            None => self.log.snapshot_index().saturating_sub(1),
        };
        let next = (probe + 1).min(index);
        self.metrics.probes_after_rejection += 1;
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.state = ReplicationState::Probe { paused: false };
        pr.inflight.clear();
        pr.next_index = next.clamp(pr.match_index + 1, last_index + 1);
        self.appends_due = true;
    }

    /// Leader: sends a heartbeat to every follower, carrying a fresh read round.
    pub(super) fn broadcast_heartbeat(&mut self) {
        let now = self.now;
        self.heartbeat_deadline = now.add_us(self.cfg.heartbeat_interval_us);
        let seq = self.reads.heartbeat_sent(now);
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
        let Ok(sent) = self.reads.recv_ack(seq) else {
            self.metrics.malformed_messages += 1;
            return; // Echo of a heartbeat never sent: forged or corrupt.
        };
        let now = self.now;
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

    /// Leader: sends whatever is due — heartbeats requested by reads, appends to every
    /// follower as flow control allows.
    pub(super) fn flush_leader_messages(&mut self) {
        if self.reads.heartbeat_due() {
            self.broadcast_heartbeat();
        }
        if !self.appends_due {
            return;
        }
        self.appends_due = false;
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            self.replicate_to(peer);
        }
    }

    /// Sends appends to `peer` until its window is full or it has everything.
    fn replicate_to(&mut self, peer: NodeId) {
        let inflight_max = self.cfg.inflight_appends_max;
        loop {
            let Some(pr) = self.progress.get(&peer) else {
                return;
            };
            if !pr.can_send(inflight_max) {
                if pr.state == ReplicationState::Replicate && pr.next_index <= self.log.last_index() {
                    self.metrics.inflight_window_full += 1;
                }
                return;
            }
            let probing = matches!(pr.state, ReplicationState::Probe { .. });
            let next = pr.next_index;
            let commit_stale = pr.commit_sent < self.commit;
            let prev_index = next - 1;
            let Some(prev_term) = self.log.term(prev_index) else {
                self.start_snapshot(peer);
                return;
            };
            let entries = self.log.slice(next, self.cfg.append_entries_max, self.cfg.append_bytes_max);
            if entries.is_empty() && !probing && !commit_stale {
                return;
            }
            let empty = entries.is_empty();
            let last = prev_index + entries.len() as u64;
            let commit = self.commit;
            let now = self.now;
            if let Some(pr) = self.progress.get_mut(&peer) {
                pr.sent(last, now);
                pr.commit_sent = commit;
            }
            self.metrics.appends_sent += 1;
            self.metrics.entries_sent += entries.len() as u64;
            self.send(peer, MessageBody::Append { prev_index, prev_term, entries, commit });
            if probing || empty {
                return;
            }
        }
    }
}
