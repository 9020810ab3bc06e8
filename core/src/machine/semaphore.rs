//! Semaphore: counted permits, initialised once, with FIFO waiters.
//!
//! - **Session-aware** (the default): permits are held by the acquiring session, only it
//!   can release them, and they return to the pool when the session ends.
//! - **Sessionless** (`Init { sessionless: true }`): like `java.util.concurrent.Semaphore`;
//!   anyone may release, nothing is returned automatically.
//!
//! A waiter at the head of the queue blocks those behind it even if they ask for fewer
//! permits, so a large request is not starved. Availability may go negative after
//! [`SemaphoreOp::Reduce`].

use super::api::{Error, Reply};
use super::fx::{Caller, Fx, Kind, Step};
use super::limits::Limit;
use super::primitives::{Primitive, ReadCx, Reads, Waits};
use super::vocab::{check_name, check_objects, check_waiters, limit, SessionId};
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Semaphore operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SemaphoreOp {
    /// Creates `name` with `permits` → [`Reply::Bool`]: `true` if created now, `false` if
    /// it already existed (and is left as it was).
    Init {
        /// The semaphore.
        name: String,
        /// Initial permits.
        permits: u64,
        /// Permits are not owned by sessions.
        sessionless: bool,
    },
    /// Takes `permits` → [`Reply::Unit`], waiting up to `timeout_ms` (`Some(0)`: try
    /// once). Needs a session unless the semaphore is sessionless and the permits are free.
    Acquire {
        /// The semaphore.
        name: String,
        /// How many (at least 1).
        permits: u64,
        /// How long to wait.
        timeout_ms: Option<u64>,
    },
    /// Returns `permits` → [`Reply::Unit`].
    Release {
        /// The semaphore.
        name: String,
        /// How many (at least 1).
        permits: u64,
    },
    /// Takes every available permit → [`Reply::Count`] taken.
    Drain {
        /// The semaphore.
        name: String,
    },
    /// Adds permits to the pool → [`Reply::Unit`].
    Increase {
        /// The semaphore.
        name: String,
        /// How many.
        permits: u64,
    },
    /// Removes permits from the pool (availability may go negative) → [`Reply::Unit`].
    Reduce {
        /// The semaphore.
        name: String,
        /// How many.
        permits: u64,
    },
}

/// Semaphore reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SemaphoreQuery {
    /// Permits available now → [`Reply::Long`] (0 if not initialised).
    Available {
        /// The semaphore.
        name: String,
    },
    /// Permits the querying session holds → [`Reply::Count`].
    Held {
        /// The semaphore.
        name: String,
    },
}

/// Semaphore errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SemaphoreError {
    /// No `Init` has created it.
    NotInitialized,
    /// A permit count of zero where at least one is needed.
    ZeroPermits,
    /// The session holds fewer permits than it tried to release.
    NotHeld {
        /// Permits it holds.
        held: u64,
    },
}

impl fmt::Display for SemaphoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInitialized => f.write_str("not initialised"),
            Self::ZeroPermits => f.write_str("permit count must be at least 1"),
            Self::NotHeld { held } => write!(f, "this session holds only {held} permits"),
        }
    }
}

impl From<SemaphoreError> for Error {
    fn from(e: SemaphoreError) -> Self {
        Self::Semaphore(e)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Waiter {
    caller: Caller,
    permits: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SemState {
    available: i64,
    sessionless: bool,
    held: BTreeMap<SessionId, u64>,
    queue: VecDeque<Waiter>,
}

/// Every initialised semaphore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Semaphores {
    sems: BTreeMap<String, SemState>,
}

impl Primitive for Semaphores {
    type Op = SemaphoreOp;

    fn apply(&mut self, fx: &mut Fx<'_>, op: SemaphoreOp) -> Step {
        self.apply_inner(fx, op).unwrap_or_else(Step::from)
    }

    /// Returns what `session` held (session-aware semaphores) and drops its waiters.
    fn end_session(&mut self, fx: &mut Fx<'_>, session: SessionId) {
        for s in self.sems.values_mut() {
            s.queue.retain(|w| w.caller.session != session);
            if let Some(held) = s.held.remove(&session) {
                s.available += held as i64;
            }
            pump(fx, s);
        }
    }

    fn owners(&self, out: &mut BTreeSet<SessionId>) {
        out.extend(self.holding_sessions());
    }
}

impl Reads for Semaphores {
    type Query = SemaphoreQuery;

    fn query(&self, cx: &ReadCx<'_>, q: &SemaphoreQuery) -> Result<Reply, Error> {
        Ok(match q {
            SemaphoreQuery::Available { name } => Reply::Long(self.sems.get(name).map_or(0, |s| s.available)),
            SemaphoreQuery::Held { name } => {
                let me = cx.session.ok_or(Error::SessionRequired)?;
                Reply::Count(self.sems.get(name).and_then(|s| s.held.get(&me).copied()).unwrap_or(0))
            }
        })
    }
}

impl Waits for Semaphores {
    /// A queued acquire of `caller` timed out.
    fn cancel(&mut self, fx: &mut Fx<'_>, name: &str, caller: Caller) {
        if let Some(s) = self.sems.get_mut(name) {
            s.queue.retain(|w| w.caller != caller);
            pump(fx, s);
        }
    }
}

impl Semaphores {
    fn apply_inner(&mut self, fx: &mut Fx<'_>, op: SemaphoreOp) -> Result<Step, Error> {
        let limits = fx.limits;
        let max = limits.semaphore_permits_max;
        let too_many = || limit(Limit::SemaphorePermits, max);
        let done = |r: Reply| Ok(Step::Done(Ok(r)));
        match op {
            SemaphoreOp::Init { name, permits, sessionless } => {
                check_name(limits, &name)?;
                if permits > max {
                    return Err(too_many());
                }
                if self.sems.contains_key(&name) {
                    return done(Reply::Bool(false));
                }
                check_objects(limits, self.sems.len())?;
                let state = SemState {
                    available: permits as i64,
                    sessionless,
                    held: BTreeMap::new(),
                    queue: VecDeque::new(),
                };
                self.sems.insert(name, state);
                done(Reply::Bool(true))
            }
            SemaphoreOp::Acquire { name, permits, timeout_ms } => {
                if permits == 0 {
                    return Err(SemaphoreError::ZeroPermits.into());
                }
                let deadline = fx.deadline(timeout_ms)?;
                let s = self.sems.get_mut(&name).ok_or(SemaphoreError::NotInitialized)?;
                if permits > max {
                    return Err(too_many());
                }
                let owner = if s.sessionless { fx.caller.map(|c| c.session) } else { Some(fx.session()?) };
                if s.queue.is_empty() && s.available >= permits as i64 {
                    s.available -= permits as i64;
                    if let (false, Some(owner)) = (s.sessionless, owner) {
                        *s.held.entry(owner).or_default() += permits;
                    }
                    return done(Reply::Unit);
                }
                if timeout_ms == Some(0) {
                    return Err(Error::Timeout);
                }
                let caller = fx.waiter()?;
                check_waiters(limits, s.queue.len())?;
                s.queue.push_back(Waiter { caller, permits });
                Ok(Step::Wait { deadline, kind: Kind::Semaphore, name })
            }
            SemaphoreOp::Release { name, permits } => {
                if permits == 0 {
                    return Err(SemaphoreError::ZeroPermits.into());
                }
                let s = self.sems.get_mut(&name).ok_or(SemaphoreError::NotInitialized)?;
                if s.sessionless {
                    if permits > max || s.available.saturating_add(permits as i64) > max as i64 {
                        return Err(too_many());
                    }
                } else {
                    let session = fx.session()?;
                    let held = s.held.get(&session).copied().unwrap_or(0);
                    if held < permits {
                        return Err(SemaphoreError::NotHeld { held }.into());
                    }
                    if held == permits {
                        s.held.remove(&session);
                    } else {
                        s.held.insert(session, held - permits);
                    }
                }
                s.available += permits as i64;
                pump(fx, s);
                done(Reply::Unit)
            }
            SemaphoreOp::Drain { name } => {
                let s = self.sems.get_mut(&name).ok_or(SemaphoreError::NotInitialized)?;
                let owner = if s.sessionless { None } else { Some(fx.session()?) };
                let taken = s.available.max(0) as u64;
                s.available -= taken as i64;
                if let (Some(owner), true) = (owner, taken > 0) {
                    *s.held.entry(owner).or_default() += taken;
                }
                done(Reply::Count(taken))
            }
            SemaphoreOp::Increase { name, permits } => {
                let s = self.sems.get_mut(&name).ok_or(SemaphoreError::NotInitialized)?;
                // Held permits come back to the pool on release: they count too.
                let held = i64::try_from(s.held.values().sum::<u64>()).unwrap_or(i64::MAX);
                if permits > max
                    || s.available.saturating_add(held).saturating_add(permits as i64) > max as i64
                {
                    return Err(too_many());
                }
                s.available += permits as i64;
                pump(fx, s);
                done(Reply::Unit)
            }
            SemaphoreOp::Reduce { name, permits } => {
                let s = self.sems.get_mut(&name).ok_or(SemaphoreError::NotInitialized)?;
                if permits > max || s.available.saturating_sub(permits as i64) < -(max as i64) {
                    return Err(too_many());
                }
                s.available -= permits as i64;
                done(Reply::Unit)
            }
        }
    }

    /// Sessions holding permits.
    pub(crate) fn holding_sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.sems.values().flat_map(|s| s.held.keys().copied())
    }

    /// How many exist (in constant time).
    pub(crate) fn len(&self) -> usize {
        self.sems.len()
    }

    /// (name, available, permits held by sessions, sessionless) of every semaphore. For
    /// invariant checks.
    pub(crate) fn summary(&self) -> impl Iterator<Item = (&str, i64, u64, bool)> {
        self.sems.iter().map(|(n, s)| (n.as_str(), s.available, s.held.values().sum(), s.sessionless))
    }
}

/// Grants queued acquires from the head while permits suffice.
fn pump(fx: &mut Fx<'_>, s: &mut SemState) {
    while let Some(w) = s.queue.front() {
        if s.available < w.permits as i64 {
            break;
        }
        let Some(w) = s.queue.pop_front() else { break };
        s.available -= w.permits as i64;
        if !s.sessionless {
            *s.held.entry(w.caller.session).or_default() += w.permits;
        }
        fx.complete(w.caller, Ok(Reply::Unit));
    }
}
