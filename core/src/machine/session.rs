//! Sessions: leases kept alive by requests, and the per-session reply cache that makes
//! retries exactly-once.
//!
//! A session expires when the leader-stamped time passes its deadline: the last request
//! from it plus its TTL. Every command that names the session refreshes the deadline, as
//! does [`SessionOp::KeepAlive`]. When leadership changes, every live session is extended
//! by one TTL from the new leader's first entry, so a session whose client could not reach
//! any leader during the election is not expired for it.

use super::api::{Error, Reply};
use super::limits::{Limit, Limits};
use super::vocab::{limit, SessionId, SessionRef};
use crate::raft::LogIndex;
use crate::time::Instant;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Session operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionOp {
    /// Opens a session with this TTL → [`Reply::Session`]. Needs no session itself; a
    /// retried open opens a second session, and the one the client never learnt of expires
    /// after its TTL.
    Open {
        /// Time to live without a request, in milliseconds.
        ttl_ms: u64,
    },
    /// Refreshes the session's deadline → [`Reply::Unit`].
    KeepAlive,
    /// Ends the session, releasing everything it owns → [`Reply::Unit`].
    Close,
}

/// A session as the `Sessions` query shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session.
    pub id: SessionId,
    /// Its TTL in milliseconds.
    pub ttl_ms: u64,
    /// Time left before it expires, in microseconds of log time, as of the last applied
    /// entry.
    pub expires_in_us: u64,
    /// Outcomes held in its reply cache.
    pub cached_replies: u32,
}

/// A cached outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Cached {
    /// Queued; completes later.
    Pending,
    /// Completed with this result when applied at this index.
    Done(Result<Reply, Error>, LogIndex),
    /// Queued, then completed with this result by a later entry (at this index). The
    /// client learns it from a push and may have acknowledged later sequences before
    /// retrying this one, so it is kept until evicted for room rather than dropped at the
    /// floor.
    Completed(Result<Reply, Error>, LogIndex),
}

/// One open session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    pub(crate) ttl_us: u64,
    pub(crate) deadline: Instant,
    replies: BTreeMap<u64, Cached>,
    /// Sequences below this are acknowledged or evicted.
    floor: u64,
}

/// What the reply cache says about an incoming sequence number.
pub(crate) enum Lookup {
    /// Not seen: apply it.
    New,
    /// Seen: answer this.
    Cached(Cached),
}

impl Session {
    /// Looks `r.seq` up after dropping what the client acknowledged.
    pub(crate) fn lookup(&mut self, r: &SessionRef) -> Result<Lookup, Error> {
        if r.acked > self.floor {
            self.floor = r.acked;
            // Keep queued entries, pending or completed later: see `Cached::Completed`.
            let floor = self.floor;
            self.replies.retain(|seq, c| *seq >= floor || !matches!(c, Cached::Done(..)));
        }
        if r.seq == 0 {
            return Ok(Lookup::New);
        }
        if let Some(c) = self.replies.get(&r.seq) {
            return Ok(Lookup::Cached(c.clone()));
        }
        if r.seq < self.floor {
            return Err(Error::StaleSequence { seq: r.seq, floor: self.floor });
        }
        Ok(Lookup::New)
    }

    /// Records the outcome of `seq`, evicting the lowest completed sequences beyond the
    /// cache limit (the floor rises past them so they are never applied again). Pending
    /// entries are never evicted: their number is bounded by the waiter limits.
    pub(crate) fn record(&mut self, seq: u64, outcome: Cached, max: usize) {
        if seq == 0 {
            return;
        }
        self.replies.insert(seq, outcome);
        while self.replies.len() > max {
            let Some(victim) =
                self.replies.iter().find(|(_, c)| !matches!(c, Cached::Pending)).map(|(s, _)| *s)
            else {
                break;
            };
            self.replies.remove(&victim);
            self.floor = self.floor.max(victim + 1);
        }
    }

    /// What the cache says of a queued `seq`: completed (with its result and index),
    /// or `None` while pending or if it is not cached.
    pub(crate) fn completed(&self, seq: u64) -> Option<(Result<Reply, Error>, LogIndex)> {
        match self.replies.get(&seq) {
            Some(Cached::Completed(r, i)) => Some((r.clone(), *i)),
            _ => None,
        }
    }

    /// Completes a pending `seq` (if the client has not moved past it).
    pub(crate) fn complete(&mut self, seq: u64, result: Result<Reply, Error>, index: LogIndex) {
        if let Some(c @ Cached::Pending) = self.replies.get_mut(&seq) {
            *c = Cached::Completed(result, index);
        }
    }
}

/// Every open session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sessions {
    pub(crate) map: BTreeMap<SessionId, Session>,
}

impl Sessions {
    /// Opens a session as of `now`; its id is `index`.
    pub(crate) fn open(
        &mut self,
        limits: &Limits,
        index: u64,
        now: Instant,
        ttl_ms: u64,
    ) -> Result<(SessionId, Instant), Error> {
        if ttl_ms < limits.session_ttl_min_ms {
            return Err(Error::BelowMinimum { limit: Limit::SessionTtl, min: limits.session_ttl_min_ms });
        }
        if ttl_ms > limits.session_ttl_max_ms {
            return Err(limit(Limit::SessionTtl, limits.session_ttl_max_ms));
        }
        if self.map.len() >= limits.sessions_max {
            return Err(limit(Limit::Sessions, limits.sessions_max));
        }
        let ttl_us = ttl_ms * 1000;
        let deadline = now.add_us(ttl_us);
        let id = SessionId(index);
        self.map.insert(id, Session { ttl_us, deadline, replies: BTreeMap::new(), floor: 1 });
        Ok((id, deadline))
    }

    /// The `Sessions` query.
    pub(crate) fn list(&self, now: Instant, max: usize) -> Vec<SessionInfo> {
        self.map
            .iter()
            .take(max)
            .map(|(id, s)| SessionInfo {
                id: *id,
                ttl_ms: s.ttl_us / 1000,
                expires_in_us: s.deadline.saturating_since_us(now),
                cached_replies: s.replies.len() as u32,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session { ttl_us: 1, deadline: Instant::ZERO, replies: BTreeMap::new(), floor: 1 }
    }

    fn r(seq: u64, acked: u64) -> SessionRef {
        SessionRef { id: SessionId(1), seq, acked }
    }

    #[test]
    fn a_retry_is_answered_from_the_cache() {
        let mut s = session();
        assert!(matches!(s.lookup(&r(1, 1)), Ok(Lookup::New)));
        s.record(1, Cached::Done(Ok(Reply::Count(7)), 10), 4);
        assert!(matches!(s.lookup(&r(1, 1)), Ok(Lookup::Cached(Cached::Done(Ok(Reply::Count(7)), 10)))));
    }

    #[test]
    fn acknowledged_sequences_are_dropped_and_refused() {
        let mut s = session();
        s.record(1, Cached::Done(Ok(Reply::Unit), 10), 4);
        s.record(2, Cached::Pending, 4);
        assert!(matches!(s.lookup(&r(3, 3)), Ok(Lookup::New)));
        assert_eq!(s.lookup(&r(1, 3)).err(), Some(Error::StaleSequence { seq: 1, floor: 3 }));
        // A pending entry below the floor survives, and so does its completion.
        assert!(matches!(s.lookup(&r(2, 3)), Ok(Lookup::Cached(Cached::Pending))));
        s.complete(2, Ok(Reply::Count(1)), 12);
        assert!(matches!(s.lookup(&r(4, 4)), Ok(Lookup::New)));
        assert!(matches!(s.lookup(&r(2, 4)), Ok(Lookup::Cached(Cached::Completed(Ok(Reply::Count(1)), 12)))));
    }

    #[test]
    fn eviction_takes_the_lowest_completed_sequence_and_raises_the_floor() {
        let mut s = session();
        s.record(1, Cached::Pending, 2);
        s.record(2, Cached::Done(Ok(Reply::Unit), 10), 2);
        s.record(3, Cached::Done(Ok(Reply::Unit), 10), 2);
        assert_eq!(s.lookup(&r(2, 1)).err(), Some(Error::StaleSequence { seq: 2, floor: 3 }));
        assert!(matches!(s.lookup(&r(1, 1)), Ok(Lookup::Cached(Cached::Pending))));
        assert!(matches!(s.lookup(&r(3, 1)), Ok(Lookup::Cached(_))));
    }

    #[test]
    fn ttl_bounds_and_session_count_are_enforced() {
        let limits = Limits { sessions_max: 1, ..Limits::default() };
        let mut s = Sessions::default();
        let e = s.open(&limits, 1, Instant::ZERO, 1).unwrap_err();
        assert_eq!(e, Error::BelowMinimum { limit: Limit::SessionTtl, min: limits.session_ttl_min_ms });
        let e = s.open(&limits, 1, Instant::ZERO, u64::MAX).unwrap_err();
        assert_eq!(e, Error::Limit { limit: Limit::SessionTtl, max: limits.session_ttl_max_ms });
        s.open(&limits, 1, Instant::ZERO, 500).unwrap();
        assert_eq!(
            s.open(&limits, 2, Instant::ZERO, 500).unwrap_err(),
            Error::Limit { limit: Limit::Sessions, max: 1 }
        );
    }
}
