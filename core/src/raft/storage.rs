//! What the host must make durable, and what it hands back after a restart.

//!
//! [`Persisted::apply`] is the storage contract in code: every host's storage, and every
//! simulated disk, is whatever `apply` would make of the writes it made durable. A host that
//! keeps its log elsewhere (see [`crate::storage`]) checks each write with
//! [`StorageWrite::check`], which is the same rule `apply` enforces.

use super::{Entry, LogIndex, NodeId, Snapshot, Term};
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Identifies a [`StorageWrite`]. Tokens increase by one per write; confirming a token
/// confirms every earlier write too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WriteToken(pub u64);

/// The state Raft must never forget: the current term and the vote cast in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate it voted for in `term`, if any.
    pub voted_for: Option<NodeId>,
}

/// A snapshot to store, with what happens to the stored log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotWrite {
    /// The snapshot; it replaces any stored one.
    pub snapshot: Snapshot,
    /// When set, keep stored entries after `snapshot.meta.index`; otherwise drop the whole
    /// stored log. Entries up to the snapshot's index are dropped either way.
    pub retain_log_after: bool,
}

/// One unit of durable work for the host. Apply the parts in this order — `hard_state`,
/// `snapshot`, `entries` — make them durable (fsync), then call
/// [`Node::handle_persisted`](super::Node::handle_persisted) with `token`. Writes must be
/// completed in the order they were polled.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct StorageWrite {
    /// Confirms this write (and all earlier ones) when handed back.
    pub token: WriteToken,
    /// Replace the stored hard state.
    pub hard_state: Option<HardState>,
    /// Store a snapshot (see [`SnapshotWrite`]).
    pub snapshot: Option<SnapshotWrite>,
    /// Delete every stored entry with index ≥ `entries[0].index`, then append these.
    pub entries: Vec<Entry>,
}

impl StorageWrite {
    pub(crate) fn is_empty(&self) -> bool {
        self.hard_state.is_none() && self.snapshot.is_none() && self.entries.is_empty()
    }

    /// Checks this write against the storage contract, for stored state that reaches
    /// `before`, and returns where the stored state reaches after it. The core never makes a
    /// write that fails this check: an error is a bug in the core or in the host's bookkeeping.
    pub fn check(&self, before: LogBounds) -> Result<LogBounds, InvalidWrite> {
        let mut after = before;
        if let Some(h) = self.hard_state {
            if h.term < before.term {
                return Err(InvalidWrite::TermBackwards { stored: before.term, written: h.term });
            }
            after.term = h.term;
        }
        if let Some(s) = &self.snapshot {
            after = after.with_snapshot(s.snapshot.meta.index, s.retain_log_after)?;
        }
        if !self.entries.is_empty() {
            after = after.with_entries(&self.entries)?;
        }
        Ok(after)
    }
}

/// How far stored state reaches: all that the storage contract's checks look at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogBounds {
    /// The stored hard state's term.
    pub term: Term,
    /// The stored snapshot's index, 0 without a snapshot.
    pub snapshot_index: LogIndex,
    /// The last stored entry's index, or `snapshot_index` when no entry follows the snapshot.
    pub last_index: LogIndex,
}

impl LogBounds {
    /// The bounds after storing a snapshot at `index`.
    pub(crate) fn with_snapshot(self, index: LogIndex, retain_log_after: bool) -> Result<Self, InvalidWrite> {
        if index < self.snapshot_index {
            return Err(InvalidWrite::SnapshotBehind { stored: self.snapshot_index, written: index });
        }
        let last_index = if retain_log_after { self.last_index.max(index) } else { index };
        Ok(Self { snapshot_index: index, last_index, ..self })
    }

    /// The bounds after appending `entries` (not empty) with the contract's truncation.
    pub(crate) fn with_entries(self, entries: &[Entry]) -> Result<Self, InvalidWrite> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return Ok(self) };
        if first.index <= self.snapshot_index || first.index > self.last_index.saturating_add(1) {
            return Err(InvalidWrite::EntriesOutside {
                first: first.index,
                snapshot_index: self.snapshot_index,
                last_index: self.last_index,
            });
        }
        if let Some(w) = entries.windows(2).find(|w| w[0].index.checked_add(1) != Some(w[1].index)) {
            return Err(InvalidWrite::EntriesNotContiguous { after: w[0].index });
        }
        Ok(Self { last_index: last.index, ..self })
    }
}

/// A write the storage contract forbids. The core never makes one, so each is a bug in the
/// core or in the host's bookkeeping; a host should stop writing rather than store it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidWrite {
    /// The hard state's term went backwards.
    TermBackwards {
        /// The stored term.
        stored: Term,
        /// The written term.
        written: Term,
    },
    /// The snapshot is older than the stored one.
    SnapshotBehind {
        /// The stored snapshot's index.
        stored: LogIndex,
        /// The written snapshot's index.
        written: LogIndex,
    },
    /// The entries start where they would leave a gap, or overwrite the snapshot.
    EntriesOutside {
        /// The first written index.
        first: LogIndex,
        /// The stored snapshot's index (after this write's snapshot, if it has one).
        snapshot_index: LogIndex,
        /// The last stored index (after this write's snapshot, if it has one).
        last_index: LogIndex,
    },
    /// The entries' indexes are not consecutive.
    EntriesNotContiguous {
        /// The index of the entry that the next one does not follow.
        after: LogIndex,
    },
}

impl fmt::Display for InvalidWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TermBackwards { stored, written } => {
                write!(f, "hard state term goes back from {stored} to {written}")
            }
            Self::SnapshotBehind { stored, written } => {
                write!(f, "snapshot at index {written} is older than the stored one at {stored}")
            }
            Self::EntriesOutside { first, snapshot_index, last_index } => {
                write!(f, "entries start at index {first} but the log holds ({snapshot_index}, {last_index}]")
            }
            Self::EntriesNotContiguous { after } => {
                write!(f, "entries are not contiguous after index {after}")
            }
        }
    }
}

impl core::error::Error for InvalidWrite {}

/// Drops the stored entries a snapshot at `index` replaces (see [`SnapshotWrite`]).
pub(crate) fn drop_for_snapshot(entries: &mut Vec<Entry>, index: LogIndex, retain_log_after: bool) {
    if retain_log_after {
        entries.retain(|e| e.index > index);
    } else {
        entries.clear();
    }
}

/// Deletes the stored entries at or after `new`'s first index, then appends `new`. The
/// caller has checked `new` with [`LogBounds::with_entries`], so `entries` runs contiguously
/// from `snapshot_index + 1`.
pub(crate) fn append_entries(
    entries: &mut Vec<Entry>,
    snapshot_index: LogIndex,
    new: impl IntoIterator<Item = Entry>,
) {
    let mut new = new.into_iter().peekable();
    if let Some(first) = new.peek() {
        let keep = first.index.saturating_sub(snapshot_index.saturating_add(1));
        entries.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        entries.extend(new);
    }
}

/// Everything a host stored for a node, handed back on restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persisted {
    /// The last stored hard state.
    pub hard_state: HardState,
    /// The last stored snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Stored entries, contiguous, starting right after the snapshot (or at index 1).
    pub entries: Vec<Entry>,
}

impl Persisted {
    /// Applies one write as the storage contract says: the hard state, then the snapshot,
    /// then the entries. A write that breaks the contract changes nothing and is refused.
    ///
    /// ```
    /// use concord_core::raft::{HardState, Persisted, StorageWrite, WriteToken};
    /// let mut stored = Persisted::default();
    /// let hard_state = Some(HardState { term: 2, voted_for: None });
    /// stored.apply(&StorageWrite { token: WriteToken(1), hard_state, snapshot: None, entries: vec![] })?;
    /// assert_eq!(stored.hard_state.term, 2);
    /// # Ok::<(), concord_core::raft::InvalidWrite>(())
    /// ```
    pub fn apply(&mut self, w: &StorageWrite) -> Result<(), InvalidWrite> {
        w.check(self.bounds())?;
        if let Some(h) = w.hard_state {
            self.hard_state = h;
        }
        if let Some(s) = &w.snapshot {
            drop_for_snapshot(&mut self.entries, s.snapshot.meta.index, s.retain_log_after);
            self.snapshot = Some(s.snapshot.clone());
        }
        let snapshot_index = self.snapshot_index();
        append_entries(&mut self.entries, snapshot_index, w.entries.iter().cloned());
        Ok(())
    }

    /// How far the stored state reaches.
    pub fn bounds(&self) -> LogBounds {
        let snapshot_index = self.snapshot_index();
        let last_index = self.entries.last().map_or(snapshot_index, |e| e.index);
        LogBounds { term: self.hard_state.term, snapshot_index, last_index }
    }

    fn snapshot_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }
}
