//! Node setup, the same on every host: one validation of a node's whole configuration,
//! the start decision from what its storage recovered, and the replica built from both.
//!
//! ```
//! use concord_core::setup::{Bootstrap, NodeSetup};
//! use concord_core::machine::Limits;
//! use concord_core::server::ServeLimits;
//! use concord_core::{Config, GroupId, Instant, Membership, NodeId, Persisted, Start};
//!
//! let setup = NodeSetup::new(Config::new(NodeId(1), GroupId(1)), Limits::default(), ServeLimits::default());
//! setup.validate()?;
//! // Nothing was stored: a new cluster of nodes 1..=3 (or `Bootstrap::Join`).
//! let voters = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
//! let start = setup.start(Persisted::default(), Bootstrap::NewCluster(voters.clone()));
//! assert_eq!(start, Start::NewCluster(voters.clone()));
//! let replica = setup.replica(Persisted::default(), Bootstrap::NewCluster(voters), Instant::ZERO, 7)?;
//! assert_eq!(replica.node().id(), NodeId(1));
//! # Ok::<(), concord_core::setup::SetupError>(())
//! ```

use crate::machine::{Concord, Limits};
use crate::raft::{
    HardState, Membership, Node, Persisted, Snapshot, SnapshotWrite, Start, StateMachine, StorageWrite,
    WriteToken,
};
use crate::server::{Replica, ServeLimits};
use crate::time::Instant;
use crate::Config;
use alloc::string::{String, ToString};
use core::fmt;

/// The smallest frame a node accepts: room for Raft's own messages and a few entries.
pub const FRAME_BYTES_MIN: usize = 4096;

/// What one value travels with in a frame (headers, ids, lengths), generously.
pub const FRAME_OVERHEAD_BYTES: usize = 1024;

/// How a node with empty storage starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// It founds a group with these voters (the same on every founding node).
    NewCluster(Membership),
    /// It joins an existing group, which added it as a member.
    Join,
}

/// Why a node's configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetupError {
    /// The Raft settings are inconsistent.
    Raft(String),
    /// A state machine limit is invalid.
    Limits(String),
    /// The frame limit is below [`FRAME_BYTES_MIN`].
    FrameTooSmall {
        /// The frame limit.
        frame_bytes_max: usize,
    },
    /// The largest value a limit allows, with its key and framing, does not fit a
    /// proposal (at most half a frame): a write of it could never be committed, nor a
    /// watch event or signal carrying it delivered.
    ValueDoesNotFit {
        /// What a proposal may hold (`proposal_bytes_max`, itself at most half a frame).
        proposal_bytes_max: usize,
        /// What the largest value needs.
        needed: usize,
    },
    /// A Raft message size (`append_bytes_max`, `snapshot_chunk_bytes` or
    /// `proposal_bytes_max`, named) exceeds half of `frame_bytes_max`.
    RaftMessageTooLarge(&'static str),
    /// A client-facing limit is zero.
    Serve(&'static str),
    /// The node could not be created from its stored state.
    Node(String),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Raft(e) => write!(f, "raft settings: {e}"),
            Self::Limits(e) => write!(f, "limits: {e}"),
            Self::FrameTooSmall { frame_bytes_max } => {
                write!(f, "frame_bytes_max ({frame_bytes_max}) must be at least {FRAME_BYTES_MIN}")
            }
            Self::ValueDoesNotFit { proposal_bytes_max, needed } => write!(
                f,
                "the largest value limit with its key and framing ({needed} bytes) must fit a proposal \
                 (proposal_bytes_max {proposal_bytes_max}, at most half of frame_bytes_max)"
            ),
            Self::RaftMessageTooLarge(what) => write!(f, "{what} must be at most half of frame_bytes_max"),
            Self::Serve(what) => write!(f, "{what} must be at least 1"),
            Self::Node(e) => write!(f, "the node cannot start: {e}"),
        }
    }
}

impl core::error::Error for SetupError {}

/// A node's whole configuration: Raft, the state machine's limits (the same on every node
/// of a group) and the client-facing limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSetup {
    /// Raft settings; message sizes are kept well inside a frame by [`NodeSetup::new`].
    pub raft: Config,
    /// State machine limits.
    pub limits: Limits,
    /// Client-facing limits, the frame size among them.
    pub serve: ServeLimits,
}

impl NodeSetup {
    /// The setup of a node, with Raft's entry batches, snapshot chunks and proposals kept
    /// to half a frame, so that any of them fits the transport with room to spare.
    pub fn new(mut raft: Config, limits: Limits, serve: ServeLimits) -> Self {
        let half = serve.frame_bytes_max / 2;
        raft.append_bytes_max = raft.append_bytes_max.min(half);
        raft.snapshot_chunk_bytes = raft.snapshot_chunk_bytes.min(half);
        raft.proposal_bytes_max = raft.proposal_bytes_max.min(half);
        Self { raft, limits, serve }
    }

    /// Checks the whole configuration at once, every rule in one place.
    pub fn validate(&self) -> Result<(), SetupError> {
        let frame = self.serve.frame_bytes_max;
        if frame < FRAME_BYTES_MIN {
            return Err(SetupError::FrameTooSmall { frame_bytes_max: frame });
        }
        if self.serve.streams_per_connection_max == 0 {
            return Err(SetupError::Serve("streams_per_connection_max"));
        }
        self.limits.validate().map_err(|e| SetupError::Limits(e.to_string()))?;
        let l = &self.limits;
        let largest = l.kv_value_bytes_max.max(l.reference_bytes_max).max(l.signal_payload_bytes_max);
        let r = &self.raft;
        let half = frame / 2;
        let sizes = [
            ("append_bytes_max", r.append_bytes_max),
            ("snapshot_chunk_bytes", r.snapshot_chunk_bytes),
            ("proposal_bytes_max", r.proposal_bytes_max),
        ];
        if let Some((what, _)) = sizes.into_iter().find(|(_, size)| *size > half) {
            return Err(SetupError::RaftMessageTooLarge(what));
        }
        let needed = largest.saturating_add(2 * l.name_bytes_max).saturating_add(FRAME_OVERHEAD_BYTES);
        if needed > r.proposal_bytes_max {
            return Err(SetupError::ValueDoesNotFit { proposal_bytes_max: r.proposal_bytes_max, needed });
        }
        self.raft.validate().map_err(|e| SetupError::Raft(e.to_string()))
    }

    /// How to start given what storage recovered: restart from it if it holds anything,
    /// else bootstrap as told.
    pub fn start(&self, persisted: Persisted, bootstrap: Bootstrap) -> Start {
        let fresh = persisted.hard_state == Default::default()
            && persisted.snapshot.is_none()
            && persisted.entries.is_empty();
        match (fresh, bootstrap) {
            (false, _) => Start::Restart(persisted),
            (true, Bootstrap::Join) => Start::Join,
            (true, Bootstrap::NewCluster(m)) => Start::NewCluster(m),
        }
    }

    /// The validated replica, started from what storage recovered.
    pub fn replica(
        &self,
        persisted: Persisted,
        bootstrap: Bootstrap,
        now: Instant,
        seed: u64,
    ) -> Result<Replica, SetupError> {
        self.validate()?;
        let machine = Concord::new(self.limits.clone()).map_err(|e| SetupError::Limits(e.to_string()))?;
        let start = self.start(persisted, bootstrap);
        let node = Node::new(self.raft.clone(), machine, start, now, seed)
            .map_err(|e| SetupError::Node(alloc::format!("{e}")))?;
        Ok(Replica::new(node, self.serve.clone()))
    }
}

/// Why a snapshot cannot seed a new cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreError {
    /// Its state does not decode as the coordination machine's.
    State(String),
    /// The new cluster's membership has no voter.
    NoVoters,
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::State(e) => write!(f, "the snapshot's state does not decode: {e}"),
            Self::NoVoters => f.write_str("the new cluster needs at least one voter"),
        }
    }
}

/// What a member of a new cluster seeded from `snapshot` (taken from another cluster)
/// stores before its first start: the snapshot's state, as of its index and term, with
/// `membership` as the configuration. Every member of the new cluster stores the same
/// write, so they agree from the start; then they start as from any stored state. Fences,
/// counters and keys carry over, so fences go on increasing from where the snapshot left
/// them; sessions of the old cluster expire after their TTLs.
pub fn restore(
    snapshot: Snapshot,
    membership: Membership,
    limits: &Limits,
) -> Result<StorageWrite, RestoreError> {
    if membership.voters.is_empty() {
        return Err(RestoreError::NoVoters);
    }
    let mut machine = Concord::new(limits.clone()).map_err(|e| RestoreError::State(e.to_string()))?;
    machine.restore(&snapshot.data).map_err(|e| RestoreError::State(alloc::format!("{e}")))?;
    let mut snapshot = snapshot;
    snapshot.meta.membership = membership;
    Ok(StorageWrite {
        token: WriteToken(0),
        hard_state: Some(HardState { term: snapshot.meta.term, voted_for: None }),
        snapshot: Some(SnapshotWrite { snapshot, retain_log_after: false }),
        entries: alloc::vec::Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{GroupId, NodeId};

    fn setup() -> NodeSetup {
        NodeSetup::new(Config::new(NodeId(1), GroupId(1)), Limits::default(), ServeLimits::default())
    }

    #[test]
    fn the_defaults_are_valid_and_raft_messages_fit_half_a_frame() {
        let mut s = setup();
        s.validate().unwrap();
        s = NodeSetup::new(s.raft, s.limits, ServeLimits { frame_bytes_max: 1 << 20, ..s.serve });
        assert!(s.raft.append_bytes_max <= 1 << 19);
        assert!(s.raft.proposal_bytes_max <= 1 << 19);
    }

    #[test]
    fn every_rule_is_checked_with_its_own_error() {
        let small =
            NodeSetup { serve: ServeLimits { frame_bytes_max: 100, ..ServeLimits::default() }, ..setup() };
        assert_eq!(small.validate(), Err(SetupError::FrameTooSmall { frame_bytes_max: 100 }));
        let mut big = setup();
        // Fits a frame, but not a proposal (half a frame): no put of it could commit.
        big.limits.kv_value_bytes_max = big.serve.frame_bytes_max * 3 / 4;
        assert!(matches!(big.validate(), Err(SetupError::ValueDoesNotFit { .. })));
        let mut chunk = setup();
        chunk.raft.snapshot_chunk_bytes = chunk.serve.frame_bytes_max;
        assert_eq!(chunk.validate(), Err(SetupError::RaftMessageTooLarge("snapshot_chunk_bytes")));
        let mut streams = setup();
        streams.serve.streams_per_connection_max = 0;
        assert_eq!(streams.validate(), Err(SetupError::Serve("streams_per_connection_max")));
        let mut limits = setup();
        limits.limits.session_replies_max = 0;
        assert!(matches!(limits.validate(), Err(SetupError::Limits(_))));
        let mut raft = setup();
        raft.raft.election_timeout_max_us = raft.raft.election_timeout_min_us;
        assert!(matches!(raft.validate(), Err(SetupError::Raft(_))));
    }

    #[test]
    fn stored_state_means_restart_whatever_the_bootstrap() {
        let s = setup();
        let voters = Membership::with_voters([NodeId(1)]);
        assert_eq!(s.start(Persisted::default(), Bootstrap::Join), Start::Join);
        assert_eq!(
            s.start(Persisted::default(), Bootstrap::NewCluster(voters.clone())),
            Start::NewCluster(voters.clone())
        );
        let stored = Persisted { hard_state: HardState { term: 2, voted_for: None }, ..Persisted::default() };
        assert_eq!(s.start(stored.clone(), Bootstrap::NewCluster(voters)), Start::Restart(stored));
    }

    #[test]
    fn a_restored_snapshot_starts_the_new_cluster_with_its_state_and_membership() {
        use crate::raft::SnapshotMeta;
        let limits = Limits::default();
        let mut data = alloc::vec::Vec::new();
        Concord::new(limits.clone()).unwrap().snapshot(&mut data);
        let old = Membership::with_voters([NodeId(7), NodeId(8), NodeId(9)]);
        let meta = SnapshotMeta { index: 40, term: 5, time: Instant::from_micros(9), membership: old };
        let snap = Snapshot { meta, data };
        let new = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
        let write = restore(snap.clone(), new.clone(), &limits).unwrap();
        let mut stored = Persisted::default();
        stored.apply(&write).unwrap();
        let kept = stored.snapshot.clone().unwrap();
        assert_eq!((kept.meta.index, kept.meta.term, &kept.meta.membership), (40, 5, &new));
        assert_eq!(stored.hard_state.term, 5);
        // It starts from that state, whatever the bootstrap says.
        let replica = setup().replica(stored, Bootstrap::NewCluster(new.clone()), Instant::ZERO, 1).unwrap();
        assert_eq!(replica.node().applied_index(), 40);
        assert_eq!(replica.node().membership(), &new);
        assert_eq!(restore(snap.clone(), Membership::default(), &limits), Err(RestoreError::NoVoters));
        let garbage = Snapshot { data: alloc::vec![0xff; 3], ..snap };
        assert!(matches!(restore(garbage, new, &limits), Err(RestoreError::State(_))));
    }
}
