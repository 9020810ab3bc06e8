//! Client requests a node accepts and the replies it produces.

use super::membership::MembershipError;
use super::{LogIndex, Membership, MembershipChange, NodeId, Term};
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Identifies a request; chosen by the host and echoed in the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// Linearizable via ReadIndex: the leader confirms with a quorum that it still leads.
    #[default]
    Linearizable,
    /// Linearizable via the leader's lease: no round trip while the lease holds (safe as
    /// long as clocks drift by less than `clock_drift_max_ppm`); falls back to ReadIndex.
    Lease,
    /// Served by any replica from whatever it has applied; the reply says which index.
    Stale,
}

/// A request to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Replicate and apply a command.
    Propose(Vec<u8>),
    /// Answer a query from the state machine.
    Read {
        /// The query, passed to [`StateMachine::query`](crate::StateMachine::query).
        query: Vec<u8>,
        /// Freshness required.
        consistency: Consistency,
    },
    /// Change the group's membership by one server.
    ChangeMembership(MembershipChange),
    /// Hand leadership to another voter.
    TransferLeadership(NodeId),
}

/// A successful outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response<O> {
    /// The command was committed at `index` and applied.
    Applied {
        /// Log index of the command.
        index: LogIndex,
        /// What the state machine returned.
        output: O,
    },
    /// A read was answered from the state as of `index`.
    Read {
        /// Applied index the read observed.
        index: LogIndex,
        /// What the state machine returned.
        output: O,
    },
    /// The membership change was committed at `index`.
    MembershipChanged {
        /// Log index of the change.
        index: LogIndex,
        /// The configuration now in force.
        membership: Membership,
    },
    /// This node handed over leadership; a new leader was elected in `term`.
    LeadershipTransferred {
        /// The term of the new leadership.
        term: Term,
    },
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RequestError {
    /// This node is not the leader; try `leader` if known.
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// Leadership or state changed so that the outcome cannot be known here (it may or may
    /// not have been applied); retry with an idempotent request.
    OutcomeUnknown,
    /// Too many requests are in flight; retry later.
    Busy,
    /// The command exceeds `proposal_bytes_max`.
    ProposalTooLarge {
        /// Size of the command.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The leader has not yet committed an entry of its term; retry shortly.
    LeaderNotReady,
    /// A leadership transfer is under way; writes resume when it ends.
    TransferInProgress,
    /// The transfer target did not take over in time.
    TransferTimedOut,
    /// The transfer target is not a voter (or is this node).
    InvalidTransferTarget(NodeId),
    /// Another membership change has not committed yet.
    MembershipChangePending,
    /// The membership change is not valid for the current configuration.
    InvalidMembershipChange(MembershipError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLeader { leader: Some(l) } => write!(f, "not the leader; try {l}"),
            Self::NotLeader { leader: None } => f.write_str("not the leader; leader unknown"),
            Self::OutcomeUnknown => f.write_str("outcome unknown; retry idempotently"),
            Self::Busy => f.write_str("too many requests in flight"),
            Self::ProposalTooLarge { size, max } => {
                write!(f, "proposal of {size} bytes exceeds the limit of {max}")
            }
            Self::LeaderNotReady => f.write_str("leader has not committed an entry of its term yet"),
            Self::TransferInProgress => f.write_str("leadership transfer in progress"),
            Self::TransferTimedOut => f.write_str("leadership transfer timed out"),
            Self::InvalidTransferTarget(id) => write!(f, "{id} cannot take over leadership"),
            Self::MembershipChangePending => f.write_str("another membership change is pending"),
            Self::InvalidMembershipChange(e) => write!(f, "invalid membership change: {e}"),
        }
    }
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Reply<O> {
    /// The id the host gave the request.
    pub id: RequestId,
    /// Outcome.
    pub result: Result<Response<O>, RequestError>,
}
