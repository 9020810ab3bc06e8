//! The in-memory Raft log: a compacted prefix (described by the snapshot metadata) and
//! the entries after it.

use super::{Entry, LogIndex, SnapshotMeta, Term};
use crate::time::Instant;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

#[derive(Clone, Debug)]
pub(crate) struct RaftLog {
    /// Index and term of the last compacted entry (0/0 for an empty log).
    snapshot_index: LogIndex,
    snapshot_term: Term,
    snapshot_time: Instant,
    /// `entries[k].index == snapshot_index + 1 + k`.
    entries: VecDeque<Entry>,
}

impl RaftLog {
    pub(crate) fn new() -> Self {
        Self { snapshot_index: 0, snapshot_term: 0, snapshot_time: Instant::ZERO, entries: VecDeque::new() }
    }

    pub(crate) fn snapshot_index(&self) -> LogIndex {
        self.snapshot_index
    }

    pub(crate) fn first_index(&self) -> LogIndex {
        self.snapshot_index + 1
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.snapshot_index + self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.back().map_or(self.snapshot_term, |e| e.term)
    }

    /// Leader-stamped time of the last entry (or of the snapshot).
    pub(crate) fn last_time(&self) -> Instant {
        self.entries.back().map_or(self.snapshot_time, |e| e.time)
    }

    /// The term of the entry at `index`, if it is known (in the log or the snapshot point).
    pub(crate) fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.get(index).map(|e| e.term)
    }

    pub(crate) fn get(&self, index: LogIndex) -> Option<&Entry> {
        let offset = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// Whether a log ending at (`last_index`, `last_term`) is at least as up to date as ours.
    pub(crate) fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// The highest index at or below `hi` whose term is at most `term`, searching the
    /// log and the snapshot point; `None` if even the snapshot point's term is higher.
    /// Binary search: terms never decrease along a log.
    pub(crate) fn last_index_with_term_at_most(&self, hi: LogIndex, term: Term) -> Option<LogIndex> {
        let mut lo = self.snapshot_index;
        let mut hi = hi.min(self.last_index());
        if hi < lo || self.term(lo).is_none_or(|t| t > term) {
            return None;
        }
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.term(mid).is_some_and(|t| t <= term) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Some(lo)
    }

    /// Appends an entry that follows the last one.
    pub(crate) fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.entries.push_back(entry);
    }

    /// Drops entries at `index` and after.
    pub(crate) fn truncate_from(&mut self, index: LogIndex) {
        debug_assert!(index > self.snapshot_index, "cannot truncate compacted entries");
        let keep = index.saturating_sub(self.first_index());
        self.entries.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }

    /// Entries from `lo` on: at most `count_max` and, beyond the first, at most `bytes_max`
    /// bytes. Empty if `lo` is past the end or compacted.
    pub(crate) fn slice(&self, lo: LogIndex, count_max: usize, bytes_max: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut index = lo;
        while out.len() < count_max {
            let Some(entry) = self.get(index) else { break };
            bytes = bytes.saturating_add(entry.size_bytes());
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(entry.clone());
            index += 1;
        }
        out
    }

    /// Drops entries up to and including `index`, which must be in the log.
    pub(crate) fn compact_to(&mut self, index: LogIndex) {
        let Some((term, time)) = self.get(index).map(|e| (e.term, e.time)) else {
            return;
        };
        self.snapshot_term = term;
        self.snapshot_time = time;
        let drop = index - self.snapshot_index;
        self.entries.drain(..usize::try_from(drop).unwrap_or(usize::MAX));
        self.snapshot_index = index;
    }

    /// Replaces the log by a snapshot point. When `retain` is set the entries after it are
    /// kept (the caller checked that the log holds the snapshot's last entry).
    pub(crate) fn reset_to_snapshot(&mut self, meta: &SnapshotMeta, retain: bool) {
        if retain && self.term(meta.index) == Some(meta.term) && meta.index >= self.snapshot_index {
            self.compact_to(meta.index);
        } else {
            self.entries.clear();
        }
        self.snapshot_index = meta.index;
        self.snapshot_term = meta.term;
        self.snapshot_time = meta.time;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Payload;

    fn log_with_terms(terms: &[Term]) -> RaftLog {
        let mut log = RaftLog::new();
        for (i, t) in terms.iter().enumerate() {
            log.push(Entry { term: *t, index: i as u64 + 1, time: Instant::ZERO, payload: Payload::Noop });
        }
        log
    }

    #[test]
    fn term_search_finds_the_last_index_not_above_a_term() {
        let log = log_with_terms(&[1, 1, 2, 2, 2, 5, 5]);
        assert_eq!(log.last_index_with_term_at_most(7, 5), Some(7));
        assert_eq!(log.last_index_with_term_at_most(7, 4), Some(5));
        assert_eq!(log.last_index_with_term_at_most(4, 4), Some(4));
        assert_eq!(log.last_index_with_term_at_most(7, 1), Some(2));
        assert_eq!(log.last_index_with_term_at_most(7, 0), Some(0));
        assert_eq!(log.last_index_with_term_at_most(99, 9), Some(7));
    }

    #[test]
    fn term_search_stops_at_the_snapshot_point() {
        let mut log = log_with_terms(&[1, 1, 2, 2, 3, 3]);
        log.compact_to(3);
        assert_eq!(log.last_index_with_term_at_most(6, 2), Some(4));
        assert_eq!(log.last_index_with_term_at_most(6, 1), None);
        assert_eq!(log.last_index_with_term_at_most(2, 3), None);
    }
}
