//! Raft: elections (PreVote, CheckQuorum), pipelined replication, snapshots, reads by
//! ReadIndex and lease, leadership transfer and single-server membership changes.
//!
//! One file per protocol concern; [`Node`] ties them together.

pub mod config;
mod drive;
mod election;
mod incoming_snapshot;
mod log;
mod membership;
mod message;
mod metrics;
mod node;
mod progress;
mod read;
mod replication;
mod request;
mod snapshot;
mod state_machine;
mod storage;

pub use config::{Config, ConfigError};
pub use drive::Outputs;
pub use membership::{Membership, MembershipChange, MembershipError};
pub use message::{Message, MessageBody, TERM_AND_INDEX_MAX};
pub use metrics::Metrics;
pub use node::{Event, Node, NodeError, Role, Start, Status};
pub use request::{Consistency, Reply, Request, RequestError, RequestId, Response};
pub use state_machine::{ApplyContext, RestoreError, StateMachine};
pub(crate) use storage::{append_entries, drop_for_snapshot};
pub use storage::{HardState, InvalidWrite, LogBounds, Persisted, SnapshotWrite, StorageWrite, WriteToken};

use crate::time::Instant;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// A Raft term.
pub type Term = u64;
/// A position in the replicated log; the first entry has index 1.
pub type LogIndex = u64;

/// The largest node id: 2^53 − 1, so that every client — JavaScript's numbers included —
/// reads ids exactly.
pub const NODE_ID_MAX: u64 = (1 << 53) - 1;

/// Identifies a node within a group: 1 to [`NODE_ID_MAX`]; 0 is reserved for "no node".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Identifies a Raft group. One process may host several groups; every message names its
/// group so the host can route it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub u64);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// One replicated log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// Position in the log.
    pub index: LogIndex,
    /// The leader's clock when it created the entry. Leaders never stamp backwards, across
    /// terms too, so the state machine can use it as its only notion of time.
    pub time: Instant,
    /// What the entry carries.
    pub payload: Payload,
}

impl Entry {
    /// Approximate encoded size, used for the per-message byte limit.
    pub fn size_bytes(&self) -> usize {
        let payload = match &self.payload {
            Payload::Noop | Payload::Tick => 0,
            Payload::Command(bytes) => bytes.len(),
            Payload::Membership(m) => 8 * (m.voters.len() + m.learners.len()),
        };
        payload + 24
    }
}

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Appended by every new leader so it can commit entries of earlier terms.
    Noop,
    /// An opaque command for the state machine.
    Command(Vec<u8>),
    /// A new cluster configuration; it takes effect as soon as it is appended.
    Membership(Membership),
    /// Appended by the leader when the state machine has a deadline due
    /// ([`StateMachine::next_deadline`]): it carries
    /// nothing but the leader-stamped time, which advances the machine's clock.
    Tick,
}

/// Identifies a snapshot: the last entry it covers and the configuration at that point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Index of the last entry included.
    pub index: LogIndex,
    /// Term of the last entry included.
    pub term: Term,
    /// Leader-stamped time of the last entry included.
    pub time: Instant,
    /// The configuration in force at `index`.
    pub membership: Membership,
}

/// A snapshot of the state machine with its metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The state machine's serialized state.
    pub data: Vec<u8>,
}
