//! FencedLock: a reentrant mutual-exclusion lock owned by a session, whose every grant
//! carries a fencing token.
//!
//! - The fence is the log index of the entry that granted the lock, so it is strictly
//!   increasing per lock for the life of the group. A reentrant acquire returns the fence
//!   of the original grant.
//! - Waiters queue in FIFO order. A release hands the lock to the head of the queue in the
//!   same entry that released it.
//! - Two-phase acquisition: [`LockOp::Enqueue`] takes a place in the queue and returns
//!   at once; [`LockOp::Await`] then waits for the grant (a timed-out await keeps the
//!   place). [`LockOp::Unlock`] on a queued place gives it up.
//! - [`LockOp::LockMany`] takes several locks atomically: the waiter sits in every named
//!   queue and is granted when it heads all of them and all are free. Queues are ordered
//!   by log position, so two multi-lock waiters cannot deadlock.
//! - When the owning session ends, its holds and places are released.

use super::api::{Error, Event, Reply};
use super::fx::{Caller, Fx, Kind, Step};
use super::limits::Limit;
use super::primitives::{Primitive, ReadCx, Reads, Waits};
use super::vocab::{check_name, check_objects, check_waiters, limit, Fence, SessionId};
use crate::time::Instant;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Lock operations. All need a session; those that may wait also need a sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockOp {
    /// Acquires `name` → [`Reply::Fence`], waiting up to `timeout_ms` (`None`: until
    /// granted or the session ends; `Some(0)`: a try-lock that fails with
    /// [`Error::Timeout`] if the lock is not free). Reentrant up to
    /// `lock_reentrancy_max` holds.
    Lock {
        /// The lock.
        name: String,
        /// How long to wait.
        timeout_ms: Option<u64>,
    },
    /// Takes a place in `name`'s queue → [`Reply::Fence`] if granted at once, else
    /// [`Reply::Queued`].
    Enqueue {
        /// The lock.
        name: String,
    },
    /// Waits for the place taken by `Enqueue` → [`Reply::Fence`]. On timeout the place is
    /// kept.
    Await {
        /// The lock.
        name: String,
        /// How long to wait.
        timeout_ms: Option<u64>,
    },
    /// Releases one hold → [`Reply::Count`] of holds left; or gives up a queued place
    /// → `Count(0)`.
    Unlock {
        /// The lock.
        name: String,
    },
    /// Acquires every lock in `names` atomically (all or none) → [`Reply::Fence`], the
    /// same fence for each. None may be held by the caller already.
    LockMany {
        /// The locks; distinct, at most `multi_lock_names_max`.
        names: Vec<String>,
        /// How long to wait.
        timeout_ms: Option<u64>,
    },
    /// Administrative: releases `name` whoever holds it (all holds) → [`Reply::Unit`].
    /// The holder's next unlock fails with [`LockError::NotHeld`].
    ForceUnlock {
        /// The lock.
        name: String,
    },
    /// Releases one hold of the grant that came with `fence` → [`Reply::Count`] of holds
    /// left; [`LockError::NotHeld`] if the session holds `name` under another fence (the
    /// grant was force-unlocked and the lock granted anew) or not at all. What a lock
    /// guard sends, so that it can only ever give back its own grant.
    Release {
        /// The lock.
        name: String,
        /// The grant's fence.
        fence: Fence,
    },
}

/// Lock reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockQuery {
    /// Whether anyone holds it → [`Reply::Bool`].
    IsLocked {
        /// The lock.
        name: String,
    },
    /// Whether the querying session holds it → [`Reply::Bool`].
    IsLockedByMe {
        /// The lock.
        name: String,
    },
    /// How many holds its holder has → [`Reply::Count`].
    LockCount {
        /// The lock.
        name: String,
    },
    /// Locks from `start` on in name order, at most `list_max` → [`Reply::Locks`].
    List {
        /// First name to include.
        start: String,
    },
}

/// A lock's state, for status pages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The lock.
    pub name: String,
    /// Its holder, if held.
    pub holder: Option<SessionId>,
    /// The holder's fence.
    pub fence: Option<Fence>,
    /// Reentrant holds.
    pub count: u32,
    /// Queued sessions, head first.
    pub waiters: Vec<SessionId>,
}

/// Lock errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LockError {
    /// The caller does not hold the lock (or lost it to a force-unlock).
    NotHeld,
    /// Nobody holds the lock.
    NotLocked,
    /// The caller already has a place in the lock's queue.
    AlreadyQueued,
    /// `Await` without a place in the queue.
    NotQueued,
    /// `LockMany` names a lock the caller already holds.
    AlreadyHeld,
    /// The wait was given up: the session unlocked its queued place, or awaited it again.
    Cancelled,
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotHeld => "not held by this session",
            Self::NotLocked => "not locked",
            Self::AlreadyQueued => "this session is already queued for it",
            Self::NotQueued => "this session has no place in its queue",
            Self::AlreadyHeld => "already held by this session",
            Self::Cancelled => "the wait was given up by the same session",
        })
    }
}

impl From<LockError> for Error {
    fn from(e: LockError) -> Self {
        Self::Lock(e)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Hold {
    session: SessionId,
    fence: Fence,
    count: u32,
    /// Log time of the grant.
    since: Instant,
}

/// A place in one or more queues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Ticket {
    session: SessionId,
    /// Every lock the ticket waits for (one, or several for `LockMany`).
    names: Vec<String>,
    /// The request to answer on grant: a `Lock`/`LockMany` sequence, or an `Await`'s.
    pending: Option<u64>,
    /// Taken by `Enqueue`: survives its awaits' timeouts.
    enqueued: bool,
    /// Log time the place was taken.
    since: Instant,
}

/// A lock changing hands, with durations in leader-stamped log time: what hosts turn
/// into hold- and wait-time metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockEvent {
    /// `session` was granted `name`, after waiting `waited_us` in its queue (0: at once).
    Granted {
        /// The lock.
        name: String,
        /// The new holder.
        session: SessionId,
        /// The grant's fence.
        fence: Fence,
        /// Time spent queued, µs.
        waited_us: u64,
    },
    /// `session` stopped holding `name` (unlock, force-unlock or session end) after
    /// `held_us`.
    Released {
        /// The lock.
        name: String,
        /// The former holder.
        session: SessionId,
        /// The grant's fence.
        fence: Fence,
        /// Time held, µs.
        held_us: u64,
    },
}

/// Grants `name` to `session` at `fx`'s entry, recording the event. The fence is the
/// entry's index ([`Fx::fence`]), above every earlier grant's.
fn grant(fx: &mut Fx<'_>, name: &str, state: &mut LockState, session: SessionId, queued_at: Instant) {
    // Pairs with the free-lock check of every grant path: ownership passes only from
    // nobody.
    debug_assert!(state.holder.is_none() || fx.rules_broken(), "lock {name} granted while held");
    let fence = fx.fence();
    state.holder = Some(Hold { session, fence, count: 1, since: fx.time });
    let waited_us = fx.time.saturating_since_us(queued_at);
    fx.events.push(Event::Lock(LockEvent::Granted { name: name.into(), session, fence, waited_us }));
}

/// Takes the holder off `name`, recording the event.
fn release(fx: &mut Fx<'_>, name: &str, state: &mut LockState) -> Option<Hold> {
    let h = state.holder.take()?;
    let held_us = fx.time.saturating_since_us(h.since);
    fx.events.push(Event::Lock(LockEvent::Released {
        name: name.into(),
        session: h.session,
        fence: h.fence,
        held_us,
    }));
    Some(h)
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LockState {
    holder: Option<Hold>,
    queue: VecDeque<Ticket>,
}

impl LockState {
    fn position(&self, session: SessionId) -> Option<usize> {
        self.queue.iter().position(|t| t.session == session)
    }
}

/// Every lock in use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Locks {
    locks: BTreeMap<String, LockState>,
}

impl Primitive for Locks {
    type Op = LockOp;

    fn apply(&mut self, fx: &mut Fx<'_>, op: LockOp) -> Step {
        let r = match op {
            LockOp::Lock { name, timeout_ms } => self.lock(fx, vec![name], timeout_ms, true),
            LockOp::LockMany { names, timeout_ms } => self.lock(fx, names, timeout_ms, false),
            LockOp::Enqueue { name } => self.enqueue(fx, name),
            LockOp::Await { name, timeout_ms } => self.await_place(fx, &name, timeout_ms),
            LockOp::Unlock { name } => self.unlock(fx, &name),
            LockOp::ForceUnlock { name } => self.force_unlock(fx, &name),
            LockOp::Release { name, fence } => self.release_grant(fx, &name, fence),
        };
        r.unwrap_or_else(Step::from)
    }

    /// Releases everything `session` holds and every place it has.
    fn end_session(&mut self, fx: &mut Fx<'_>, session: SessionId) {
        #[cfg(feature = "bug-injection")]
        if fx.bugs.session_end_keeps_locks {
            return;
        }
        let mut touched: Vec<String> = Vec::new();
        for (name, state) in &mut self.locks {
            let before = state.queue.len();
            state.queue.retain(|t| t.session != session);
            if state.holder.as_ref().is_some_and(|h| h.session == session) {
                release(fx, name, state);
                touched.push(name.clone());
            } else if state.queue.len() != before {
                touched.push(name.clone());
            }
        }
        let names: Vec<&str> = touched.iter().map(String::as_str).collect();
        self.pump(fx, &names);
    }

    fn owners(&self, out: &mut BTreeSet<SessionId>) {
        out.extend(self.holders().map(|(_, holder, _)| holder));
        out.extend(self.queued_sessions());
    }
}

impl Reads for Locks {
    type Query = LockQuery;

    fn query(&self, cx: &ReadCx<'_>, q: &LockQuery) -> Result<Reply, Error> {
        let holder = |name: &str| self.locks.get(name).and_then(|s| s.holder.as_ref());
        Ok(match q {
            LockQuery::IsLocked { name } => Reply::Bool(holder(name).is_some()),
            LockQuery::IsLockedByMe { name } => {
                let me = cx.session.ok_or(Error::SessionRequired)?;
                Reply::Bool(holder(name).is_some_and(|h| h.session == me))
            }
            LockQuery::LockCount { name } => {
                // Pairs with `grant` and `release`: a holder has at least one hold.
                debug_assert!(holder(name).is_none_or(|h| h.count > 0));
                Reply::Count(holder(name).map_or(0, |h| u64::from(h.count)))
            }
            LockQuery::List { start } => {
                Reply::Locks(self.infos(self.locks.range(start.clone()..)).take(cx.limits.list_max).collect())
            }
        })
    }
}

impl Waits for Locks {
    /// A queued request of `caller` timed out: drop its place (an `Await` keeps the
    /// `Enqueue` place).
    fn cancel(&mut self, fx: &mut Fx<'_>, name: &str, caller: Caller) {
        let Some(state) = self.locks.get_mut(name) else { return };
        let Some(i) =
            state.queue.iter().position(|t| t.session == caller.session && t.pending == Some(caller.seq))
        else {
            return;
        };
        if state.queue[i].enqueued {
            state.queue[i].pending = None;
            return;
        }
        let ticket = state.queue[i].clone();
        self.remove_ticket(fx, &ticket);
    }
}

impl Locks {
    fn check_new(&self, fx: &Fx<'_>, names: &[String]) -> Result<(), Error> {
        let new = names.iter().filter(|n| !self.locks.contains_key(*n)).count();
        if new > 0 {
            check_objects(fx.limits, self.locks.len() + new - 1)?;
        }
        Ok(())
    }

    /// `reentrant`: a plain `Lock`, which adds a hold when the caller has one already;
    /// `LockMany` never does (even of one name) and fails with `AlreadyHeld` instead.
    fn lock(
        &mut self,
        fx: &mut Fx<'_>,
        names: Vec<String>,
        timeout_ms: Option<u64>,
        reentrant: bool,
    ) -> Result<Step, Error> {
        let caller = fx.waiter()?;
        let limits = fx.limits;
        if names.is_empty() {
            return Err(Error::BelowMinimum { limit: Limit::MultiLockNames, min: 1 });
        }
        if names.len() > limits.multi_lock_names_max {
            return Err(limit(Limit::MultiLockNames, limits.multi_lock_names_max));
        }
        for n in &names {
            check_name(limits, n)?;
        }
        if names.iter().collect::<BTreeSet<_>>().len() != names.len() {
            return Err(limit(Limit::MultiLockNames, limits.multi_lock_names_max));
        }
        let deadline = fx.deadline(timeout_ms)?;
        let session = caller.session;
        if let (true, [name]) = (reentrant, names.as_slice()) {
            if let Some(state) = self.locks.get_mut(name) {
                if let Some(h) = state.holder.as_mut().filter(|h| h.session == session) {
                    if h.count >= limits.lock_reentrancy_max {
                        return Err(limit(Limit::LockReentrancy, limits.lock_reentrancy_max));
                    }
                    h.count += 1;
                    return Ok(Step::Done(Ok(Reply::Fence(h.fence))));
                }
            }
        }
        for n in &names {
            if let Some(state) = self.locks.get(n) {
                if state.holder.as_ref().is_some_and(|h| h.session == session) {
                    return Err(LockError::AlreadyHeld.into());
                }
                if state.position(session).is_some() {
                    return Err(LockError::AlreadyQueued.into());
                }
                check_waiters(limits, state.queue.len())?;
            }
        }
        self.check_new(fx, &names)?;
        #[allow(unused_mut)]
        let mut free =
            names.iter().all(|n| self.locks.get(n).is_none_or(|s| s.holder.is_none() && s.queue.is_empty()));
        #[cfg(feature = "bug-injection")]
        {
            free |= fx.bugs.lock_ignores_holder;
        }
        if free {
            let fence = fx.fence();
            let now = fx.time;
            for n in names {
                let state = self.locks.entry(n.clone()).or_default();
                grant(fx, &n, state, session, now);
            }
            return Ok(Step::Done(Ok(Reply::Fence(fence))));
        }
        if timeout_ms == Some(0) {
            return Err(Error::Timeout);
        }
        let ticket = Ticket {
            session,
            names: names.clone(),
            pending: Some(caller.seq),
            enqueued: false,
            since: fx.time,
        };
        let name = names[0].clone();
        for n in names {
            self.locks.entry(n).or_default().queue.push_back(ticket.clone());
        }
        Ok(Step::Wait { deadline, kind: Kind::Lock, name })
    }

    fn enqueue(&mut self, fx: &mut Fx<'_>, name: String) -> Result<Step, Error> {
        let session = fx.session()?;
        check_name(fx.limits, &name)?;
        self.check_new(fx, core::slice::from_ref(&name))?;
        let state = self.locks.entry(name.clone()).or_default();
        if state.holder.as_ref().is_some_and(|h| h.session == session) {
            return Err(LockError::AlreadyHeld.into());
        }
        if state.position(session).is_some() {
            return Err(LockError::AlreadyQueued.into());
        }
        if state.holder.is_none() && state.queue.is_empty() {
            let fence = fx.fence();
            let now = fx.time;
            grant(fx, &name, state, session, now);
            return Ok(Step::Done(Ok(Reply::Fence(fence))));
        }
        if let Err(e) = check_waiters(fx.limits, state.queue.len()) {
            self.drop_if_unused(&name);
            return Err(e);
        }
        let position = state.queue.len() as u32;
        state.queue.push_back(Ticket {
            session,
            names: vec![name],
            pending: None,
            enqueued: true,
            since: fx.time,
        });
        Ok(Step::Done(Ok(Reply::Queued { position })))
    }

    fn await_place(&mut self, fx: &mut Fx<'_>, name: &str, timeout_ms: Option<u64>) -> Result<Step, Error> {
        let caller = fx.waiter()?;
        let deadline = fx.deadline(timeout_ms)?;
        let state = self.locks.get_mut(name).ok_or(LockError::NotQueued)?;
        if let Some(h) = state.holder.as_ref().filter(|h| h.session == caller.session) {
            return Ok(Step::Done(Ok(Reply::Fence(h.fence))));
        }
        let i = state.position(caller.session).ok_or(LockError::NotQueued)?;
        let ticket = &mut state.queue[i];
        if !ticket.enqueued {
            return Err(LockError::AlreadyQueued.into());
        }
        if timeout_ms == Some(0) {
            return Err(Error::Timeout);
        }
        if let Some(old) = ticket.pending.replace(caller.seq) {
            // A newer await replaces an older one.
            fx.complete(Caller { session: caller.session, seq: old }, Err(LockError::Cancelled.into()));
        }
        Ok(Step::Wait { deadline, kind: Kind::Lock, name: name.into() })
    }

    fn unlock(&mut self, fx: &mut Fx<'_>, name: &str) -> Result<Step, Error> {
        let session = fx.session()?;
        let state = self.locks.get_mut(name).ok_or(LockError::NotHeld)?;
        if let Some(h) = state.holder.as_mut().filter(|h| h.session == session) {
            h.count -= 1;
            let left = h.count;
            if left == 0 {
                release(fx, name, state);
                self.pump(fx, &[name]);
            }
            return Ok(Step::Done(Ok(Reply::Count(u64::from(left)))));
        }
        if let Some(i) = state.position(session) {
            let ticket = state.queue[i].clone();
            self.remove_ticket(fx, &ticket);
            if let Some(seq) = ticket.pending {
                fx.complete(Caller { session, seq }, Err(LockError::Cancelled.into()));
            }
            return Ok(Step::Done(Ok(Reply::Count(0))));
        }
        Err(LockError::NotHeld.into())
    }

    /// `Unlock`, only of the session's grant with `fence`.
    fn release_grant(&mut self, fx: &mut Fx<'_>, name: &str, fence: Fence) -> Result<Step, Error> {
        let session = fx.session()?;
        let holder = self.locks.get(name).and_then(|s| s.holder.as_ref());
        if !holder.is_some_and(|h| h.session == session && h.fence == fence) {
            return Err(LockError::NotHeld.into());
        }
        self.unlock(fx, name)
    }

    fn force_unlock(&mut self, fx: &mut Fx<'_>, name: &str) -> Result<Step, Error> {
        let state = self.locks.get_mut(name).ok_or(LockError::NotLocked)?;
        if release(fx, name, state).is_none() {
            return Err(LockError::NotLocked.into());
        }
        self.pump(fx, &[name]);
        Ok(Step::Done(Ok(Reply::Unit)))
    }

    fn remove_ticket(&mut self, fx: &mut Fx<'_>, ticket: &Ticket) {
        for n in &ticket.names {
            if let Some(state) = self.locks.get_mut(n) {
                state.queue.retain(|t| t.session != ticket.session || t.names != ticket.names);
            }
        }
        let names: Vec<&str> = ticket.names.iter().map(String::as_str).collect();
        self.pump(fx, &names);
    }

    /// Grants free locks among `names` to the head of their queues, and forgets locks
    /// nobody holds or waits for.
    fn pump(&mut self, fx: &mut Fx<'_>, names: &[&str]) {
        for name in names {
            let Some(state) = self.locks.get(*name) else { continue };
            if state.holder.is_some() {
                continue;
            }
            let Some(head) = state.queue.front() else {
                self.locks.remove(*name);
                continue;
            };
            let ready = head.names.iter().all(|n| {
                self.locks.get(n).is_some_and(|s| {
                    s.holder.is_none() && s.queue.front().is_some_and(|t| t.session == head.session)
                })
            });
            if !ready {
                continue;
            }
            let ticket = head.clone();
            let fence = fx.fence();
            for n in &ticket.names {
                if let Some(s) = self.locks.get_mut(n) {
                    s.queue.pop_front();
                    grant(fx, n, s, ticket.session, ticket.since);
                }
            }
            if let Some(seq) = ticket.pending {
                fx.complete(Caller { session: ticket.session, seq }, Ok(Reply::Fence(fence)));
            }
        }
    }

    fn drop_if_unused(&mut self, name: &str) {
        if self.locks.get(name).is_some_and(|s| s.holder.is_none() && s.queue.is_empty()) {
            self.locks.remove(name);
        }
    }

    /// Every lock in `range` that is held or has waiters.
    fn infos<'a>(
        &'a self,
        range: impl Iterator<Item = (&'a String, &'a LockState)> + 'a,
    ) -> impl Iterator<Item = LockInfo> + 'a {
        range.map(|(name, s)| LockInfo {
            name: name.clone(),
            holder: s.holder.as_ref().map(|h| h.session),
            fence: s.holder.as_ref().map(|h| h.fence),
            count: s.holder.as_ref().map_or(0, |h| h.count),
            waiters: s.queue.iter().map(|t| t.session).collect(),
        })
    }

    /// How many exist (in constant time).
    pub(crate) fn len(&self) -> usize {
        self.locks.len()
    }

    /// Every lock that is held or has waiters, for status pages and checks.
    pub(crate) fn all(&self) -> impl Iterator<Item = LockInfo> + '_ {
        self.infos(self.locks.iter())
    }

    /// Sessions with a place in some queue.
    pub(crate) fn queued_sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.locks.values().flat_map(|s| s.queue.iter().map(|t| t.session))
    }

    /// Every held lock: (name, holder, fence). For invariant checks.
    pub(crate) fn holders(&self) -> impl Iterator<Item = (&str, SessionId, Fence)> {
        self.locks.iter().filter_map(|(n, s)| s.holder.as_ref().map(|h| (n.as_str(), h.session, h.fence)))
    }
}
