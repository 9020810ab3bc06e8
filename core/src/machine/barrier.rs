//! Barrier: `parties` sessions wait until all have arrived, then all are released
//! together, and the barrier resets for its next generation.
//!
//! The first arrival of a generation fixes its party count; an arrival with a different
//! count is refused. If a waiting party leaves (its wait times out or its session ends)
//! the generation is broken: every other waiter is answered with
//! [`BarrierError::Broken`], and the next arrival starts a new generation.

use super::api::{Error, Reply};
use super::fx::{Caller, Fx, Kind, Step};
use super::limits::Limit;
use super::primitives::{Primitive, Waits};
use super::vocab::{check_name, check_objects, limit, SessionId};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Barrier operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarrierOp {
    /// Arrives at `name` and waits for `parties` arrivals in all → [`Reply::Barrier`].
    /// Needs a session and a sequence number.
    Wait {
        /// The barrier.
        name: String,
        /// Parties (at least 1, at most `barrier_parties_max`).
        parties: u32,
        /// How long to wait; on timeout the generation breaks. `Some(0)` trips the barrier
        /// if this is the last party and otherwise fails with [`Error::Timeout`] without
        /// arriving.
        timeout_ms: Option<u64>,
    },
}

/// Barrier errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum BarrierError {
    /// The generation under way waits for a different number of parties.
    PartiesMismatch {
        /// What it waits for.
        expected: u32,
    },
    /// A party left before the barrier tripped.
    Broken,
    /// This session is already waiting at the barrier.
    AlreadyWaiting,
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PartiesMismatch { expected } => write!(f, "this generation waits for {expected} parties"),
            Self::Broken => f.write_str("broken: a party left before it tripped"),
            Self::AlreadyWaiting => f.write_str("this session is already waiting here"),
        }
    }
}

impl From<BarrierError> for Error {
    fn from(e: BarrierError) -> Self {
        Self::Barrier(e)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct BarrierState {
    generation: u64,
    parties: u32,
    arrived: Vec<Caller>,
}

/// Every barrier that has been used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Barriers {
    barriers: BTreeMap<String, BarrierState>,
}

impl Primitive for Barriers {
    type Op = BarrierOp;

    fn apply(&mut self, fx: &mut Fx<'_>, op: BarrierOp) -> Step {
        let BarrierOp::Wait { name, parties, timeout_ms } = op;
        self.wait(fx, name, parties, timeout_ms).unwrap_or_else(Step::from)
    }

    fn end_session(&mut self, _: &mut Fx<'_>, _: SessionId) {
        // A barrier holds nothing: its parties are queued requests, which the machine cancels (breaking the generation).
    }

    fn owners(&self, _: &mut BTreeSet<SessionId>) {
        // A barrier's parties are queued requests the machine tracks, not holdings.
    }
}

impl Waits for Barriers {
    /// `caller` left `name` (timed out or lost its session): the generation breaks.
    fn cancel(&mut self, fx: &mut Fx<'_>, name: &str, caller: Caller) {
        let Some(b) = self.barriers.get_mut(name) else { return };
        if !b.arrived.contains(&caller) {
            return;
        }
        b.generation += 1;
        for w in core::mem::take(&mut b.arrived) {
            if w != caller {
                fx.complete(w, Err(BarrierError::Broken.into()));
            }
        }
    }
}

impl Barriers {
    fn wait(
        &mut self,
        fx: &mut Fx<'_>,
        name: String,
        parties: u32,
        timeout_ms: Option<u64>,
    ) -> Result<Step, Error> {
        let caller = fx.waiter()?;
        let limits = fx.limits;
        check_name(limits, &name)?;
        if parties == 0 {
            return Err(Error::BelowMinimum { limit: Limit::BarrierParties, min: 1 });
        }
        if parties > limits.barrier_parties_max {
            return Err(limit(Limit::BarrierParties, limits.barrier_parties_max));
        }
        let deadline = fx.deadline(timeout_ms)?;
        if !self.barriers.contains_key(&name) {
            check_objects(limits, self.barriers.len())?;
        }
        let b = self.barriers.entry(name.clone()).or_default();
        if b.arrived.is_empty() {
            b.parties = parties;
        } else if b.parties != parties {
            return Err(BarrierError::PartiesMismatch { expected: b.parties }.into());
        }
        if b.arrived.iter().any(|c| c.session == caller.session) {
            return Err(BarrierError::AlreadyWaiting.into());
        }
        if b.arrived.len() + 1 == parties as usize {
            let generation = b.generation;
            b.generation += 1;
            for (i, w) in core::mem::take(&mut b.arrived).into_iter().enumerate() {
                fx.complete(w, Ok(Reply::Barrier { generation, arrival: i as u32 }));
            }
            return Ok(Step::Done(Ok(Reply::Barrier { generation, arrival: parties - 1 })));
        }
        if timeout_ms == Some(0) {
            // A party that will not wait and does not complete the generation does not
            // arrive at all.
            return Err(Error::Timeout);
        }
        b.arrived.push(caller);
        Ok(Step::Wait { deadline, kind: Kind::Barrier, name })
    }

    /// How many exist (in constant time).
    pub(crate) fn len(&self) -> usize {
        self.barriers.len()
    }

    /// (name, generation, parties, arrived) of every barrier. For invariant checks.
    pub(crate) fn summary(&self) -> impl Iterator<Item = (&str, u64, u32, usize)> {
        self.barriers.iter().map(|(n, b)| (n.as_str(), b.generation, b.parties, b.arrived.len()))
    }
}
