//! What the host must make durable, and what it hands back after a restart.

use super::{Entry, NodeId, Snapshot, Term};
use alloc::vec::Vec;
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
