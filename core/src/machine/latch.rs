//! CountDownLatch: waiters are released when the count reaches zero; reusable after.
//!
//! A latch that was never set (or has reached zero) has count 0 and lets awaiters through
//! at once. `TrySetCount` only succeeds at zero, so a round cannot be reset while it is
//! counting; waiters are answered in the entry whose count-down reaches zero, never before.

use super::api::{Error, Reply};
use super::fx::{Caller, Fx, Kind, Step};
use super::primitives::{Primitive, ReadCx, Reads, Waits};
use super::vocab::{check_name, check_objects, check_waiters, SessionId};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Latch operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LatchOp {
    /// Sets the count if it is zero → [`Reply::Bool`]: whether it was set.
    TrySetCount {
        /// The latch.
        name: String,
        /// The new count (at least 1).
        count: u64,
    },
    /// Decrements the count (not below zero) → [`Reply::Count`] remaining. Retry it with
    /// the same sequence number: a count-down applied twice would open the latch early.
    CountDown {
        /// The latch.
        name: String,
    },
    /// Waits until the count is zero → [`Reply::Unit`], or [`Error::Timeout`]. Needs a
    /// session and a sequence number unless the count is already zero.
    Await {
        /// The latch.
        name: String,
        /// How long to wait (`Some(0)`: just check).
        timeout_ms: Option<u64>,
    },
}

/// Latch reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LatchQuery {
    /// The current count → [`Reply::Count`].
    Count {
        /// The latch.
        name: String,
    },
}

/// Latch errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LatchError {
    /// `TrySetCount` with a count of zero.
    ZeroCount,
}

impl fmt::Display for LatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroCount => "count must be at least 1",
        })
    }
}

impl From<LatchError> for Error {
    fn from(e: LatchError) -> Self {
        Self::Latch(e)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LatchState {
    count: u64,
    waiters: Vec<Caller>,
}

/// Every latch with a non-zero count or waiters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Latches {
    latches: BTreeMap<String, LatchState>,
}

impl Primitive for Latches {
    type Op = LatchOp;

    fn apply(&mut self, fx: &mut Fx<'_>, op: LatchOp) -> Step {
        self.apply_inner(fx, op).unwrap_or_else(Step::from)
    }

    fn end_session(&mut self, _: &mut Fx<'_>, _: SessionId) {
        // A latch holds nothing: its waiters are queued requests, which the machine cancels.
    }

    fn owners(&self, _: &mut BTreeSet<SessionId>) {
        // A latch's waiters are queued requests the machine tracks, not holdings.
    }
}

impl Reads for Latches {
    type Query = LatchQuery;

    fn query(&self, _: &ReadCx<'_>, q: &LatchQuery) -> Result<Reply, Error> {
        Ok(match q {
            LatchQuery::Count { name } => {
                // Pairs with `CountDown`, which releases every waiter at zero: an open
                // latch keeps no one waiting.
                debug_assert!(self.latches.get(name).is_none_or(|l| l.count > 0 || l.waiters.is_empty()));
                Reply::Count(self.latches.get(name).map_or(0, |l| l.count))
            }
        })
    }
}

impl Waits for Latches {
    /// A queued await of `caller` timed out (or its session ended).
    fn cancel(&mut self, _: &mut Fx<'_>, name: &str, caller: Caller) {
        if let Some(l) = self.latches.get_mut(name) {
            l.waiters.retain(|w| *w != caller);
        }
    }
}

impl Latches {
    fn apply_inner(&mut self, fx: &mut Fx<'_>, op: LatchOp) -> Result<Step, Error> {
        let limits = fx.limits;
        match op {
            LatchOp::TrySetCount { name, count } => {
                check_name(limits, &name)?;
                if count == 0 {
                    return Err(LatchError::ZeroCount.into());
                }
                if self.latches.get(&name).is_some_and(|l| l.count > 0) {
                    return Ok(Step::Done(Ok(Reply::Bool(false))));
                }
                if !self.latches.contains_key(&name) {
                    check_objects(limits, self.latches.len())?;
                }
                self.latches.entry(name).or_default().count = count;
                Ok(Step::Done(Ok(Reply::Bool(true))))
            }
            LatchOp::CountDown { name } => {
                let Some(l) = self.latches.get_mut(&name).filter(|l| l.count > 0) else {
                    return Ok(Step::Done(Ok(Reply::Count(0))));
                };
                l.count -= 1;
                let left = l.count;
                #[cfg(feature = "bug-injection")]
                if fx.bugs.latch_releases_one_early && left == 1 {
                    for w in core::mem::take(&mut l.waiters) {
                        fx.complete(w, Ok(Reply::Unit));
                    }
                }
                if left == 0 {
                    if let Some(l) = self.latches.remove(&name) {
                        for w in l.waiters {
                            fx.complete(w, Ok(Reply::Unit));
                        }
                    }
                }
                Ok(Step::Done(Ok(Reply::Count(left))))
            }
            LatchOp::Await { name, timeout_ms } => {
                let deadline = fx.deadline(timeout_ms)?;
                let Some(l) = self.latches.get_mut(&name).filter(|l| l.count > 0) else {
                    return Ok(Step::Done(Ok(Reply::Unit)));
                };
                if timeout_ms == Some(0) {
                    return Err(Error::Timeout);
                }
                let caller = fx.waiter()?;
                check_waiters(limits, l.waiters.len())?;
                l.waiters.push(caller);
                Ok(Step::Wait { deadline, kind: Kind::Latch, name })
            }
        }
    }

    /// How many exist (in constant time).
    pub(crate) fn len(&self) -> usize {
        self.latches.len()
    }

    /// (name, count, waiters) of every latch. For invariant checks.
    pub(crate) fn summary(&self) -> impl Iterator<Item = (&str, u64, usize)> {
        self.latches.iter().map(|(n, l)| (n.as_str(), l.count, l.waiters.len()))
    }
}
