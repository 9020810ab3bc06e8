//! What a leader knows about each follower's log, and the flow control of appends to it.

use super::LogIndex;
use crate::time::Instant;
use alloc::collections::VecDeque;

/// How the leader is currently replicating to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplicationState {
    /// Unsure where the follower's log matches: one append at a time until one succeeds.
    Probe {
        /// An append is outstanding; wait for its answer (or a heartbeat answer).
        paused: bool,
    },
    /// The logs match up to `match_index`: stream appends, up to the in-flight limit.
    Replicate,
    /// The follower needs a snapshot; chunks are sent one at a time.
    Snapshot {
        /// Index of the snapshot being sent.
        index: LogIndex,
        /// Bytes the follower confirmed so far.
        offset: u64,
        /// When the outstanding chunk was sent.
        sent_at: Instant,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// Highest index known to match the leader's log.
    pub(crate) match_index: LogIndex,
    /// Next index to send.
    pub(crate) next_index: LogIndex,
    pub(crate) state: ReplicationState,
    /// Last index carried by each append in flight and when it was sent, oldest first.
    pub(crate) inflight: VecDeque<(LogIndex, Instant)>,
    /// Last time any message from this follower arrived (for CheckQuorum).
    pub(crate) last_heard: Instant,
    /// Highest read-confirmation sequence this follower echoed.
    pub(crate) acked_seq: u64,
    /// When the leader sent the heartbeat carrying `acked_seq` (its clock): the start of
    /// the lease this follower grants.
    pub(crate) acked_sent_at: Option<Instant>,
    /// The commit index last sent to this follower.
    pub(crate) commit_sent: LogIndex,
}

impl Progress {
    pub(crate) fn new(last_index: LogIndex, now: Instant) -> Self {
        Self {
            match_index: 0,
            next_index: last_index + 1,
            state: ReplicationState::Probe { paused: false },
            inflight: VecDeque::new(),
            last_heard: now,
            acked_seq: 0,
            acked_sent_at: None,
            commit_sent: 0,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ReplicationState::Probe { paused: false };
        self.next_index = self.match_index + 1;
        self.inflight.clear();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next_index = self.match_index + 1;
        self.inflight.clear();
    }

    /// Whether another append may be sent now.
    pub(crate) fn can_send(&self, inflight_max: usize) -> bool {
        match self.state {
            ReplicationState::Probe { paused } => !paused,
            ReplicationState::Replicate => self.inflight.len() < inflight_max,
            ReplicationState::Snapshot { .. } => false,
        }
    }

    /// Records that an append ending at `last` went out at `now`.
    pub(crate) fn sent(&mut self, last: LogIndex, now: Instant) {
        match &mut self.state {
            ReplicationState::Probe { paused } => *paused = true,
            ReplicationState::Replicate => {
                self.inflight.push_back((last, now));
                self.next_index = last + 1;
            }
            ReplicationState::Snapshot { .. } => {}
        }
    }

    /// The follower confirmed its log matches up to `index`. Returns whether that is news.
    pub(crate) fn acknowledge(&mut self, index: LogIndex) -> bool {
        while self.inflight.front().is_some_and(|&(last, _)| last <= index) {
            self.inflight.pop_front();
        }
        if index <= self.match_index {
            return false;
        }
        self.match_index = index;
        self.next_index = self.next_index.max(index + 1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probing_sends_one_append_at_a_time() {
        let mut p = Progress::new(10, Instant::ZERO);
        assert!(p.can_send(4));
        p.sent(11, Instant::ZERO);
        assert!(!p.can_send(4), "paused until an answer");
    }

    #[test]
    fn replicating_fills_the_window_and_acks_free_it() {
        let mut p = Progress::new(10, Instant::ZERO);
        p.match_index = 10;
        p.become_replicate();
        for last in [12, 14, 16] {
            assert!(p.can_send(3));
            p.sent(last, Instant::ZERO);
        }
        assert!(!p.can_send(3), "window of 3 is full");
        assert_eq!(p.next_index, 17);
        assert!(p.acknowledge(14));
        assert_eq!(p.inflight.len(), 1);
        assert!(p.can_send(3));
        assert!(!p.acknowledge(13), "old news");
        assert_eq!(p.match_index, 14);
    }

    #[test]
    fn falling_back_to_probe_restarts_after_the_match() {
        let mut p = Progress::new(10, Instant::ZERO);
        p.match_index = 5;
        p.become_replicate();
        p.sent(9, Instant::ZERO);
        p.become_probe();
        assert_eq!(p.next_index, 6);
        assert!(p.inflight.is_empty());
    }
}
