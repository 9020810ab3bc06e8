//! Cluster membership: voters and learners, changed one server at a time.
//!
//! Concord uses single-server changes (Raft thesis §4.1): each change adds or removes one
//! voter, so any two consecutive configurations share a majority. A configuration takes
//! effect as soon as its entry is appended (not when committed), and a leader proposes a
//! change only when (a) the previous change is committed and (b) it has committed an entry
//! of its own term — the rule that closes the known single-server-change hole.

use super::{LogIndex, NodeId};
use alloc::collections::{BTreeSet, VecDeque};
use core::fmt;
use serde::{Deserialize, Serialize};

/// The members of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Nodes that vote and count towards quorums.
    pub voters: BTreeSet<NodeId>,
    /// Nodes that receive the log but do not vote.
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    /// A configuration of the given voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Self { voters: voters.into_iter().collect(), learners: BTreeSet::new() }
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Votes needed for a majority of voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Every member, voters first.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// The configuration after `change`, or why the change is not allowed.
    pub fn apply(&self, change: MembershipChange) -> Result<Self, MembershipError> {
        if change.node().0 == 0 {
            return Err(MembershipError::ZeroNodeId);
        }
        if change.node().0 > super::NODE_ID_MAX {
            return Err(MembershipError::NodeIdTooLarge(change.node()));
        }
        let mut next = self.clone();
        match change {
            MembershipChange::AddLearner(id) => {
                if self.contains(id) {
                    return Err(MembershipError::AlreadyMember(id));
                }
                next.learners.insert(id);
            }
            MembershipChange::AddVoter(id) => {
                if self.is_voter(id) {
                    return Err(MembershipError::AlreadyMember(id));
                }
                next.learners.remove(&id);
                next.voters.insert(id);
            }
            MembershipChange::Promote(id) => {
                if !self.learners.contains(&id) {
                    return Err(MembershipError::NotALearner(id));
                }
                next.learners.remove(&id);
                next.voters.insert(id);
            }
            MembershipChange::Remove(id) => {
                if !self.contains(id) {
                    return Err(MembershipError::NotAMember(id));
                }
                next.learners.remove(&id);
                next.voters.remove(&id);
                if next.voters.is_empty() {
                    return Err(MembershipError::LastVoter(id));
                }
            }
        }
        Ok(next)
    }
}

/// One single-server membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add a non-voting member that receives the log (to catch up before promotion).
    AddLearner(NodeId),
    /// Add a voter directly (or turn a learner into one).
    AddVoter(NodeId),
    /// Turn a learner into a voter.
    Promote(NodeId),
    /// Remove a voter or learner.
    Remove(NodeId),
}

impl MembershipChange {
    /// The node the change is about.
    pub fn node(self) -> NodeId {
        match self {
            Self::AddLearner(id) | Self::AddVoter(id) | Self::Promote(id) | Self::Remove(id) => id,
        }
    }
}

/// Why a membership change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MembershipError {
    /// The node is already a member in that role.
    AlreadyMember(NodeId),
    /// The node is not a member.
    NotAMember(NodeId),
    /// Only learners can be promoted.
    NotALearner(NodeId),
    /// Removing this node would leave no voter.
    LastVoter(NodeId),
    /// Node id 0 is reserved.
    ZeroNodeId,
    /// The id is above [`NODE_ID_MAX`](super::NODE_ID_MAX).
    NodeIdTooLarge(NodeId),
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyMember(id) => write!(f, "{id} is already a member in that role"),
            Self::NotAMember(id) => write!(f, "{id} is not a member"),
            Self::NotALearner(id) => write!(f, "{id} is not a learner"),
            Self::LastVoter(id) => write!(f, "removing {id} would leave no voter"),
            Self::ZeroNodeId => f.write_str("node id 0 is reserved"),
            Self::NodeIdTooLarge(id) => {
                write!(f, "node id {} is above the largest, {} (2^53 - 1)", id.0, super::NODE_ID_MAX)
            }
        }
    }
}

/// The configurations found in the log, newest last, above the one in the snapshot.
/// Needed because an uncommitted configuration can be truncated away, and the previous one
/// must then take effect again.
#[derive(Clone, Debug)]
pub(crate) struct MembershipLog {
    /// The configuration at the snapshot (or bootstrap) point.
    base: (LogIndex, Membership),
    /// Configurations appended after the snapshot, in log order.
    entries: VecDeque<(LogIndex, Membership)>,
}

impl MembershipLog {
    pub(crate) fn new(index: LogIndex, base: Membership) -> Self {
        Self { base: (index, base), entries: VecDeque::new() }
    }

    /// The configuration in force: the newest one in the log.
    pub(crate) fn current(&self) -> &Membership {
        self.entries.back().map_or(&self.base.1, |(_, m)| m)
    }

    /// Index of the entry that introduced the current configuration.
    pub(crate) fn current_index(&self) -> LogIndex {
        self.entries.back().map_or(self.base.0, |(i, _)| *i)
    }

    /// The configuration in force at `index`.
    pub(crate) fn at(&self, index: LogIndex) -> &Membership {
        self.entries.iter().rev().find(|(i, _)| *i <= index).map_or(&self.base.1, |(_, m)| m)
    }

    pub(crate) fn push(&mut self, index: LogIndex, membership: Membership) {
        debug_assert!(index > self.current_index(), "configurations must be appended in log order");
        self.entries.push_back((index, membership));
    }

    /// Forgets configurations at `index` and after (their entries were truncated).
    pub(crate) fn truncate_from(&mut self, index: LogIndex) {
        while self.entries.back().is_some_and(|(i, _)| *i >= index) {
            self.entries.pop_back();
        }
    }

    /// The log was compacted up to `index`: fold older configurations into the base.
    pub(crate) fn compact_to(&mut self, index: LogIndex) {
        while self.entries.front().is_some_and(|(i, _)| *i <= index) {
            if let Some(front) = self.entries.pop_front() {
                self.base = front;
            }
        }
    }

    /// A snapshot replaced the log (or its prefix when `retain` is set).
    pub(crate) fn reset(&mut self, index: LogIndex, membership: Membership, retain: bool) {
        if retain {
            self.compact_to(index);
            self.base = (index, membership);
        } else {
            self.entries.clear();
            self.base = (index, membership);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> BTreeSet<NodeId> {
        v.iter().map(|i| NodeId(*i)).collect()
    }

    #[test]
    fn quorum_is_a_majority_of_voters_only() {
        let mut m = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(m.quorum(), 2);
        m.learners.insert(NodeId(4));
        assert_eq!(m.quorum(), 2, "learners do not count");
        m.voters.insert(NodeId(5));
        assert_eq!(m.quorum(), 3);
    }

    #[test]
    fn learners_join_then_get_promoted() {
        let m = Membership::with_voters([NodeId(1)]);
        let m = m.apply(MembershipChange::AddLearner(NodeId(2))).unwrap();
        assert_eq!((m.voters.clone(), m.learners.clone()), (ids(&[1]), ids(&[2])));
        let m = m.apply(MembershipChange::Promote(NodeId(2))).unwrap();
        assert_eq!((m.voters.clone(), m.learners.clone()), (ids(&[1, 2]), ids(&[])));
        let m = m.apply(MembershipChange::Remove(NodeId(1))).unwrap();
        assert_eq!(m.voters, ids(&[2]));
    }

    #[test]
    fn every_invalid_change_has_its_own_error() {
        let m = Membership::with_voters([NodeId(1), NodeId(2)])
            .apply(MembershipChange::AddLearner(NodeId(3)))
            .unwrap();
        assert_eq!(
            m.apply(MembershipChange::AddLearner(NodeId(1))),
            Err(MembershipError::AlreadyMember(NodeId(1)))
        );
        assert_eq!(
            m.apply(MembershipChange::AddLearner(NodeId(3))),
            Err(MembershipError::AlreadyMember(NodeId(3)))
        );
        assert_eq!(
            m.apply(MembershipChange::AddVoter(NodeId(2))),
            Err(MembershipError::AlreadyMember(NodeId(2)))
        );
        assert_eq!(
            m.apply(MembershipChange::Promote(NodeId(1))),
            Err(MembershipError::NotALearner(NodeId(1)))
        );
        assert_eq!(m.apply(MembershipChange::Remove(NodeId(9))), Err(MembershipError::NotAMember(NodeId(9))));
        assert_eq!(m.apply(MembershipChange::AddVoter(NodeId(0))), Err(MembershipError::ZeroNodeId));
        let huge = NodeId(crate::raft::NODE_ID_MAX + 1);
        assert_eq!(m.apply(MembershipChange::AddLearner(huge)), Err(MembershipError::NodeIdTooLarge(huge)));
        let single = Membership::with_voters([NodeId(1)]);
        assert_eq!(
            single.apply(MembershipChange::Remove(NodeId(1))),
            Err(MembershipError::LastVoter(NodeId(1)))
        );
        // AddVoter on a learner promotes it.
        let m = m.apply(MembershipChange::AddVoter(NodeId(3))).unwrap();
        assert!(m.is_voter(NodeId(3)) && !m.learners.contains(&NodeId(3)));
    }

    #[test]
    fn a_truncated_configuration_gives_way_to_the_previous_one() {
        let base = Membership::with_voters([NodeId(1)]);
        let two = base.apply(MembershipChange::AddVoter(NodeId(2))).unwrap();
        let three = two.apply(MembershipChange::AddVoter(NodeId(3))).unwrap();
        let mut log = MembershipLog::new(0, base.clone());
        log.push(5, two.clone());
        log.push(9, three.clone());
        assert_eq!((log.current(), log.current_index()), (&three, 9));
        assert_eq!(log.at(7), &two);
        assert_eq!(log.at(4), &base);
        log.truncate_from(9);
        assert_eq!(log.current(), &two);
        log.compact_to(6);
        assert_eq!((log.current(), log.current_index()), (&two, 5));
        log.reset(20, three.clone(), false);
        assert_eq!((log.current(), log.current_index()), (&three, 20));
    }
}
