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
