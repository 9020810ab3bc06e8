//! Leader election: sessions campaign for a named office; one leads at a time, holding a
//! fence (the log index of its election) and a value it can proclaim (say, its address).
//!
//! Candidates queue in FIFO order. When the leader resigns or its session ends (a
//! failover), the next candidate is elected in the same entry, with a new, larger fence.
//! Every change is an [`ElectionEvent`] for observers.

use super::api::{Error, Event, Reply};
use super::fx::{Caller, Fx, Kind, Step};
use super::limits::Limit;
use super::primitives::{Primitive, ReadCx, Reads, Waits};
use super::vocab::{check_name, check_objects, check_waiters, limit, Fence, SessionId};
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Election operations; all need a session, and `Campaign` a sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionOp {
    /// Runs for `name` with `value` → [`Reply::Fence`] once elected, waiting up to
    /// `timeout_ms` (`Some(0)`: only if nobody leads). The current leader campaigning
    /// again gets its fence back.
    Campaign {
        /// The election.
        name: String,
        /// What the leader announces.
        value: Vec<u8>,
        /// How long to wait.
        timeout_ms: Option<u64>,
    },
    /// The leader announces a new value → [`Reply::Unit`].
    Proclaim {
        /// The election.
        name: String,
        /// The new value.
        value: Vec<u8>,
    },
    /// The leader steps down, or a candidate withdraws → [`Reply::Unit`].
    Resign {
        /// The election.
        name: String,
    },
}

/// Election reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionQuery {
    /// The current leader → [`Reply::Leader`].
    Leader {
        /// The election.
        name: String,
    },
}

/// The leader of an election.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// Its session.
    pub session: SessionId,
    /// What it announces.
    pub value: Vec<u8>,
    /// Its fence: the log index of its election.
    pub fence: Fence,
}

/// What changed in an election.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionChange {
    /// A candidate was elected.
    Elected,
    /// The leader announced a new value.
    Proclaimed,
    /// The leader resigned.
    Resigned,
    /// The leader's session ended.
    Failover,
    /// Not a change: the state when an observer started (or resumed on another node),
    /// sent before any change, so that an observer misses nothing in between.
    Current,
}

/// A change of an election, for observers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionEvent {
    /// The election.
    pub name: String,
    /// What changed.
    pub change: ElectionChange,
    /// The leader after the change (none after a resignation or failover; an election
    /// that follows is its own event).
    pub leader: Option<LeaderInfo>,
    /// The entry that made the change.
    pub index: u64,
}

/// Election errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ElectionError {
    /// Only the leader may do this.
    NotLeader,
    /// The session is already a candidate.
    AlreadyCampaigning,
    /// The campaign was given up: its session resigned while still a candidate.
    Withdrawn,
}

impl fmt::Display for ElectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotLeader => "this session is not the leader",
            Self::AlreadyCampaigning => "this session is already campaigning",
            Self::Withdrawn => "the campaign was withdrawn by the same session",
        })
    }
}

impl From<ElectionError> for Error {
    fn from(e: ElectionError) -> Self {
        Self::Election(e)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ElectionState {
    leader: Option<LeaderInfo>,
    candidates: VecDeque<(Caller, Vec<u8>)>,
}

/// Every election with a leader or candidates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Elections {
    elections: BTreeMap<String, ElectionState>,
}

impl Primitive for Elections {
    type Op = ElectionOp;

    fn apply(&mut self, fx: &mut Fx<'_>, op: ElectionOp) -> Step {
        self.apply_inner(fx, op).unwrap_or_else(Step::from)
    }

    /// Drops `session`'s candidacies and, where it leads, fails over to the next
    /// candidate.
    fn end_session(&mut self, fx: &mut Fx<'_>, session: SessionId) {
        let names: Vec<String> = self.elections.keys().cloned().collect();
        for name in names {
            let Some(e) = self.elections.get_mut(&name) else { continue };
            e.candidates.retain(|(c, _)| c.session != session);
            if e.leader.as_ref().is_some_and(|l| l.session == session) {
                e.leader = None;
                emit(fx, &name, ElectionChange::Failover, None);
            }
            self.pump(fx, &name);
        }
    }

    fn owners(&self, out: &mut BTreeSet<SessionId>) {
        out.extend(self.leaders().filter_map(|(_, leader)| leader.map(|l| l.session)));
    }
}

impl Reads for Elections {
    type Query = ElectionQuery;

    fn query(&self, _: &ReadCx<'_>, q: &ElectionQuery) -> Result<Reply, Error> {
        Ok(match q {
            ElectionQuery::Leader { name } => {
                Reply::Leader(self.elections.get(name).and_then(|e| e.leader.clone()))
            }
        })
    }
}

impl Waits for Elections {
    /// A queued campaign of `caller` timed out.
    fn cancel(&mut self, fx: &mut Fx<'_>, name: &str, caller: Caller) {
        if let Some(e) = self.elections.get_mut(name) {
            e.candidates.retain(|(c, _)| *c != caller);
            self.pump(fx, name);
        }
    }
}

impl Elections {
    fn apply_inner(&mut self, fx: &mut Fx<'_>, op: ElectionOp) -> Result<Step, Error> {
        let limits = fx.limits;
        let check_value = |v: &Vec<u8>| {
            if v.len() > limits.election_value_bytes_max {
                return Err(limit(Limit::ElectionValueBytes, limits.election_value_bytes_max));
            }
            Ok(())
        };
        match op {
            ElectionOp::Campaign { name, value, timeout_ms } => {
                let caller = fx.waiter()?;
                check_name(limits, &name)?;
                check_value(&value)?;
                let deadline = fx.deadline(timeout_ms)?;
                if !self.elections.contains_key(&name) {
                    check_objects(limits, self.elections.len())?;
                }
                let e = self.elections.entry(name.clone()).or_default();
                if let Some(l) = e.leader.as_ref().filter(|l| l.session == caller.session) {
                    return Ok(Step::Done(Ok(Reply::Fence(l.fence))));
                }
                if e.candidates.iter().any(|(c, _)| c.session == caller.session) {
                    return Err(ElectionError::AlreadyCampaigning.into());
                }
                if e.leader.is_none() && e.candidates.is_empty() {
                    let fence = fx.fence();
                    let leader = LeaderInfo { session: caller.session, value, fence };
                    e.leader = Some(leader.clone());
                    emit(fx, &name, ElectionChange::Elected, Some(leader));
                    return Ok(Step::Done(Ok(Reply::Fence(fence))));
                }
                if timeout_ms == Some(0) {
                    return Err(Error::Timeout);
                }
                check_waiters(limits, e.candidates.len())?;
                e.candidates.push_back((caller, value));
                Ok(Step::Wait { deadline, kind: Kind::Election, name })
            }
            ElectionOp::Proclaim { name, value } => {
                let me = fx.session()?;
                check_value(&value)?;
                let e = self.elections.get_mut(&name).ok_or(ElectionError::NotLeader)?;
                let l = e.leader.as_mut().filter(|l| l.session == me).ok_or(ElectionError::NotLeader)?;
                l.value = value;
                let leader = l.clone();
                emit(fx, &name, ElectionChange::Proclaimed, Some(leader));
                Ok(Step::Done(Ok(Reply::Unit)))
            }
            ElectionOp::Resign { name } => {
                let me = fx.session()?;
                let e = self.elections.get_mut(&name).ok_or(ElectionError::NotLeader)?;
                if e.leader.as_ref().is_some_and(|l| l.session == me) {
                    e.leader = None;
                    emit(fx, &name, ElectionChange::Resigned, None);
                } else if let Some(i) = e.candidates.iter().position(|(c, _)| c.session == me) {
                    if let Some((c, _)) = e.candidates.remove(i) {
                        fx.complete(c, Err(ElectionError::Withdrawn.into()));
                    }
                } else {
                    return Err(ElectionError::NotLeader.into());
                }
                self.pump(fx, &name);
                Ok(Step::Done(Ok(Reply::Unit)))
            }
        }
    }

    /// Elects the next candidate if nobody leads; forgets empty elections.
    fn pump(&mut self, fx: &mut Fx<'_>, name: &str) {
        let Some(e) = self.elections.get_mut(name) else { return };
        if e.leader.is_none() {
            if let Some((caller, value)) = e.candidates.pop_front() {
                let fence = fx.fence();
                let leader = LeaderInfo { session: caller.session, value, fence };
                e.leader = Some(leader.clone());
                emit(fx, name, ElectionChange::Elected, Some(leader));
                fx.complete(caller, Ok(Reply::Fence(fence)));
            } else {
                self.elections.remove(name);
            }
        }
    }

    /// How many exist (in constant time).
    pub(crate) fn len(&self) -> usize {
        self.elections.len()
    }

    /// (name, leader) of every election. For invariant checks.
    pub(crate) fn leaders(&self) -> impl Iterator<Item = (&str, Option<&LeaderInfo>)> {
        self.elections.iter().map(|(n, e)| (n.as_str(), e.leader.as_ref()))
    }
}

fn emit(fx: &mut Fx<'_>, name: &str, change: ElectionChange, leader: Option<LeaderInfo>) {
    let index = fx.index;
    fx.events.push(Event::Election(ElectionEvent { name: name.into(), change, leader, index }));
}
