//! A simulated disk: writes complete in order after a latency; a crash loses every write
//! not yet completed.

use concord_core::raft::{HardState, Persisted, WriteToken};
use concord_core::{Entry, Snapshot, StorageWrite};
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(crate) struct Disk {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    pending: VecDeque<StorageWrite>,
    last_done_at: u64,
    /// A contract breach seen while applying a write.
    fault: Option<String>,
}

impl Disk {
    /// Queues a write; returns when it completes (never before an earlier write).
    pub(crate) fn submit(&mut self, write: StorageWrite, ready_at: u64) -> u64 {
        self.last_done_at = self.last_done_at.max(ready_at);
        self.pending.push_back(write);
        self.last_done_at
    }

    /// Whether every submitted write is durable.
    pub(crate) fn idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Makes the oldest pending write durable and returns its token.
    pub(crate) fn complete_next(&mut self) -> Option<WriteToken> {
        let write = self.pending.pop_front()?;
        if let Some(hs) = write.hard_state {
            if hs.term < self.hard_state.term {
                self.fault =
                    Some(format!("hard state term went back from {} to {}", self.hard_state.term, hs.term));
            }
            self.hard_state = hs;
        }
        if let Some(s) = write.snapshot {
            let index = s.snapshot.meta.index;
            if s.retain_log_after {
                self.entries.retain(|e| e.index > index);
            } else {
                self.entries.clear();
            }
            self.snapshot = Some(s.snapshot);
        }
        if let Some(first) = write.entries.first() {
            let first = first.index;
            let expected_max = self.entries.last().map_or(self.snapshot_index() + 1, |e| e.index + 1);
            if first > expected_max || first <= self.snapshot_index() {
                self.fault = Some(format!(
                    "write starts at index {first} but the stored log ends at {} (snapshot {})",
                    expected_max - 1,
                    self.snapshot_index()
                ));
            }
            self.entries.retain(|e| e.index < first);
            self.entries.extend(write.entries);
        }
        Some(write.token)
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    /// Checks the stored log is contiguous after the snapshot.
    pub(crate) fn check(&mut self) -> Result<(), String> {
        if let Some(f) = self.fault.take() {
            return Err(f);
        }
        let mut expected = self.entries.first().map(|e| e.index);
        if let (Some(first), Some(snap)) = (expected, &self.snapshot) {
            if first != snap.meta.index + 1 {
                return Err(format!("stored log starts at {first}, snapshot ends at {}", snap.meta.index));
            }
        }
        for e in &self.entries {
            if Some(e.index) != expected {
                return Err(format!("stored log has a gap before {}", e.index));
            }
            expected = Some(e.index + 1);
        }
        Ok(())
    }

    /// With every write done, the disk must hold exactly the node's state: what a restart
    /// would recover is what the node was running with.
    pub(crate) fn matches_node<M: concord_core::StateMachine>(
        &self,
        node: &concord_core::Node<M>,
    ) -> Result<(), String> {
        if self.hard_state != node.hard_state() {
            return Err(format!(
                "stored hard state {:?} but node has {:?}",
                self.hard_state,
                node.hard_state()
            ));
        }
        let status = node.status();
        if self.snapshot_index() != status.snapshot_index {
            return Err(format!(
                "stored snapshot at {} but node's log starts after {}",
                self.snapshot_index(),
                status.snapshot_index
            ));
        }
        let stored_last = self.entries.last().map_or(self.snapshot_index(), |e| e.index);
        if stored_last != status.last_index {
            return Err(format!("stored log ends at {stored_last} but node's at {}", status.last_index));
        }
        for e in &self.entries {
            if node.entry(e.index) != Some(e) {
                return Err(format!("stored entry {}@{} differs from the node's", e.index, e.term));
            }
        }
        Ok(())
    }

    /// Persist-before-send, checked on each message as it leaves: whatever it claims
    /// (its term, a vote, an acknowledged index) must already be on this disk.
    pub(crate) fn permits(&self, msg: &concord_core::Message) -> Result<(), String> {
        use concord_core::MessageBody as B;
        let hs = self.hard_state;
        let durable_last = self.entries.last().map_or(self.snapshot_index(), |e| e.index);
        let speculative = matches!(msg.body, B::PreVote { .. } | B::PreVoteResponse { .. });
        if !speculative && msg.term > hs.term {
            return Err(format!(
                "{} sent in term {} before that term was stored ({})",
                msg.body.kind(),
                msg.term,
                hs.term
            ));
        }
        match msg.body {
            B::VoteResponse { granted: true } if hs.voted_for != Some(msg.to) => {
                Err(format!("vote for {} sent before it was stored ({:?})", msg.to, hs))
            }
            B::Vote { .. } if hs.voted_for != Some(msg.from) => {
                Err(format!("vote request sent before the self-vote was stored ({hs:?})"))
            }
            B::AppendResponse { success: true, index, .. } if index > durable_last => {
                Err(format!("acknowledged index {index} with only {durable_last} stored"))
            }
            B::InstallSnapshotResponse { done: true, index, .. } if index > durable_last => {
                Err(format!("acknowledged snapshot {index} with only {durable_last} stored"))
            }
            _ => Ok(()),
        }
    }

    /// A crash: writes not yet completed never happened.
    pub(crate) fn lose_unconfirmed(&mut self) {
        self.pending.clear();
        self.last_done_at = 0;
    }

    /// What a restarting node finds.
    pub(crate) fn persisted(&self) -> Persisted {
        Persisted {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}
