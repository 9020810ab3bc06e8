//! ReadWriteLock: many readers or one writer, owned by sessions, fenced on every grant.
//!
//! Waiters are served in FIFO order: a queued writer blocks readers that arrive after it,
//! and a released lock admits the writer at the head, or every reader up to the next
//! queued writer, in the entry that released it. Holds are reentrant within one mode; a
//! session holding one mode cannot take the other (no upgrade or downgrade).

use super::api::{Error, Reply};
use super::fx::{Caller, Fx, Kind, Step};
use super::limits::Limit;
use super::primitives::{Primitive, ReadCx, Reads, Waits};
use super::vocab::{check_name, check_objects, check_waiters, limit, Fence, SessionId};
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Shared.
    Read,
    /// Exclusive.
    Write,
}

/// Read-write lock operations; all need a session, and waiting ones a sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RwLockOp {
    /// Acquires `name` in `mode` → [`Reply::Fence`], waiting up to `timeout_ms`
    /// (`Some(0)`: try once).
    Lock {
        /// The lock.
        name: String,
        /// Read or write.
        mode: Mode,
        /// How long to wait.
        timeout_ms: Option<u64>,
    },
    /// Releases one hold of whichever mode the session holds → [`Reply::Count`] of holds
    /// left.
    Unlock {
        /// The lock.
        name: String,
    },
}

/// Read-write lock reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RwLockQuery {
    /// Sessions holding it for reading → [`Reply::Count`].
    Readers {
        /// The lock.
        name: String,
    },
    /// Whether a writer holds it → [`Reply::Bool`].
    IsWriteLocked {
        /// The lock.
        name: String,
    },
}

/// Read-write lock errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RwLockError {
    /// The session does not hold it.
    NotHeld,
    /// The session holds it in the other mode.
    HeldInOtherMode,
    /// The session is already queued for it.
    AlreadyQueued,
}

impl fmt::Display for RwLockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotHeld => "not held by this session",
            Self::HeldInOtherMode => "held by this session in the other mode",
            Self::AlreadyQueued => "this session is already queued for it",
        })
    }
}

impl From<RwLockError> for Error {
    fn from(e: RwLockError) -> Self {
        Self::RwLock(e)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Hold {
    fence: Fence,
    count: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct RwState {
    readers: BTreeMap<SessionId, Hold>,
    writer: Option<(SessionId, Hold)>,
    queue: VecDeque<(Caller, Mode)>,
}

/// Every read-write lock in use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RwLocks {
    locks: BTreeMap<String, RwState>,
}

impl Primitive for RwLocks {
    type Op = RwLockOp;

    fn apply(&mut self, fx: &mut Fx<'_>, op: RwLockOp) -> Step {
        let r = match op {
            RwLockOp::Lock { name, mode, timeout_ms } => self.lock(fx, name, mode, timeout_ms),
            RwLockOp::Unlock { name } => self.unlock(fx, &name),
        };
        r.unwrap_or_else(Step::from)
    }

    /// Releases whatever `session` holds and drops its waiters.
    fn end_session(&mut self, fx: &mut Fx<'_>, session: SessionId) {
        let names: alloc::vec::Vec<String> = self.locks.keys().cloned().collect();
        for name in names {
            let Some(s) = self.locks.get_mut(&name) else { continue };
            s.queue.retain(|(c, _)| c.session != session);
            s.readers.remove(&session);
            if s.writer.as_ref().is_some_and(|(w, _)| *w == session) {
                s.writer = None;
            }
            self.pump(fx, &name);
        }
    }

    fn owners(&self, out: &mut BTreeSet<SessionId>) {
        out.extend(self.sessions());
    }
}

impl Reads for RwLocks {
    type Query = RwLockQuery;

    fn query(&self, _: &ReadCx<'_>, q: &RwLockQuery) -> Result<Reply, Error> {
        Ok(match q {
            RwLockQuery::Readers { name } => {
                Reply::Count(self.locks.get(name).map_or(0, |s| s.readers.len() as u64))
            }
            RwLockQuery::IsWriteLocked { name } => {
                Reply::Bool(self.locks.get(name).is_some_and(|s| s.writer.is_some()))
            }
        })
    }
}

impl Waits for RwLocks {
    /// A queued lock of `caller` timed out.
    fn cancel(&mut self, fx: &mut Fx<'_>, name: &str, caller: Caller) {
        if let Some(s) = self.locks.get_mut(name) {
            s.queue.retain(|(c, _)| *c != caller);
            self.pump(fx, name);
        }
    }
}

impl RwLocks {
    fn lock(
        &mut self,
        fx: &mut Fx<'_>,
        name: String,
        mode: Mode,
        timeout_ms: Option<u64>,
    ) -> Result<Step, Error> {
        let caller = fx.waiter()?;
        let limits = fx.limits;
        check_name(limits, &name)?;
        let deadline = fx.deadline(timeout_ms)?;
        if !self.locks.contains_key(&name) {
            check_objects(limits, self.locks.len())?;
        }
        let me = caller.session;
        let fence = fx.fence();
        let s = self.locks.entry(name.clone()).or_default();
        let mine = match mode {
            Mode::Read => s.readers.get_mut(&me),
            Mode::Write => s.writer.as_mut().filter(|(w, _)| *w == me).map(|(_, h)| h),
        };
        if let Some(h) = mine {
            if h.count >= limits.lock_reentrancy_max {
                return Err(limit(Limit::LockReentrancy, limits.lock_reentrancy_max));
            }
            h.count += 1;
            return Ok(Step::Done(Ok(Reply::Fence(h.fence))));
        }
        if s.readers.contains_key(&me) || s.writer.as_ref().is_some_and(|(w, _)| *w == me) {
            return Err(RwLockError::HeldInOtherMode.into());
        }
        if s.queue.iter().any(|(c, _)| c.session == me) {
            return Err(RwLockError::AlreadyQueued.into());
        }
        let free = s.queue.is_empty()
            && s.writer.is_none()
            && match mode {
                Mode::Read => true,
                Mode::Write => s.readers.is_empty(),
            };
        if free {
            let hold = Hold { fence, count: 1 };
            match mode {
                Mode::Read => {
                    s.readers.insert(me, hold);
                }
                Mode::Write => s.writer = Some((me, hold)),
            }
            return Ok(Step::Done(Ok(Reply::Fence(fence))));
        }
        if timeout_ms == Some(0) {
            return Err(Error::Timeout);
        }
        check_waiters(limits, s.queue.len())?;
        s.queue.push_back((caller, mode));
        Ok(Step::Wait { deadline, kind: Kind::RwLock, name })
    }

    fn unlock(&mut self, fx: &mut Fx<'_>, name: &str) -> Result<Step, Error> {
        let me = fx.session()?;
        let s = self.locks.get_mut(name).ok_or(RwLockError::NotHeld)?;
        let left = if let Some((_, h)) = s.writer.as_mut().filter(|(w, _)| *w == me) {
            h.count -= 1;
            let left = h.count;
            if left == 0 {
                s.writer = None;
            }
            left
        } else if let Some(h) = s.readers.get_mut(&me) {
            h.count -= 1;
            let left = h.count;
            if left == 0 {
                s.readers.remove(&me);
            }
            left
        } else {
            return Err(RwLockError::NotHeld.into());
        };
        self.pump(fx, name);
        Ok(Step::Done(Ok(Reply::Count(u64::from(left)))))
    }

    /// Admits the head writer, or the readers up to the next writer, if the lock allows;
    /// forgets the lock when nobody holds or waits for it.
    fn pump(&mut self, fx: &mut Fx<'_>, name: &str) {
        let Some(s) = self.locks.get_mut(name) else { return };
        let fence = fx.fence();
        while s.writer.is_none() {
            let Some(&(caller, mode)) = s.queue.front() else { break };
            match mode {
                Mode::Write if s.readers.is_empty() => {
                    s.queue.pop_front();
                    s.writer = Some((caller.session, Hold { fence, count: 1 }));
                }
                Mode::Read => {
                    s.queue.pop_front();
                    s.readers.insert(caller.session, Hold { fence, count: 1 });
                }
                Mode::Write => break,
            }
            fx.complete(caller, Ok(Reply::Fence(fence)));
        }
        if s.writer.is_none() && s.readers.is_empty() && s.queue.is_empty() {
            self.locks.remove(name);
        }
    }

    /// Sessions holding or waiting for some lock.
    pub(crate) fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.locks.values().flat_map(|s| {
            s.readers
                .keys()
                .copied()
                .chain(s.writer.iter().map(|(w, _)| *w))
                .chain(s.queue.iter().map(|(c, _)| c.session))
        })
    }

    /// How many exist (in constant time).
    pub(crate) fn len(&self) -> usize {
        self.locks.len()
    }

    /// (name, writer, readers) of every held lock. For invariant checks.
    pub(crate) fn holders(&self) -> impl Iterator<Item = (&str, Option<(SessionId, Fence)>, usize)> {
        self.locks
            .iter()
            .map(|(n, s)| (n.as_str(), s.writer.as_ref().map(|(w, h)| (*w, h.fence)), s.readers.len()))
    }
}
