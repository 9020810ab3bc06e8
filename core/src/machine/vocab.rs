//! The words every primitive shares: who acts (sessions and their requests), what a grant
//! or a write hands back (fences, entity tags), and the limit checks every primitive
//! applies. The enums that list every primitive ([`Op`](super::Op),
//! [`Reply`](super::Reply), [`Error`], …) are in `api.rs`.

use super::api::Error;
use super::limits::{Limit, Limits};
use core::fmt;
use serde::{Deserialize, Serialize};

/// A session: the identity that owns locks, permits, waiters, candidacies and
/// subscriptions, kept alive by heartbeats. Its id is the log index of the entry that
/// opened it, so ids are unique for the life of the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {}", self.0)
    }
}

/// A fencing token: the log index of the entry that granted ownership. Strictly
/// increasing per lock (and per election, per read-write lock) for the life of the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fence(pub u64);

/// An entity tag of a key-value entry: the revision that last wrote it. Any write changes
/// it; equal tags mean equal contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Etag(pub u64);

/// The session part of a command.
///
/// **Exactly-once.** A command with `seq > 0` is applied at most once per (session, seq):
/// the outcome is cached and a retry with the same `seq` is answered from the cache,
/// without applying again — across leader changes too, because the cache is replicated
/// state.
///
/// **What the cache keeps.** `acked` is the client's promise that it has an answer for
/// every sequence below it (a final result, or `Pending` for a queued command). Outcomes
/// answered at once are dropped below `acked`. Queued commands keep their entry below it:
/// while pending, and after a later entry completes them (the client learns that from a
/// push it may miss). Beyond
/// [`Limits::session_replies_max`](super::Limits::session_replies_max) entries, the
/// lowest completed sequence is evicted. The floor rises past acknowledged and evicted
/// sequences; a sequence below the floor that is not cached is refused with
/// [`Error::StaleSequence`] rather than applied. A client that keeps fewer than
/// `session_replies_max` requests unanswered never sees this. `seq = 0` opts out (for
/// idempotent operations such as keep-alives).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRef {
    /// The session.
    pub id: SessionId,
    /// The client's sequence number for this request (1, 2, …), or 0 for none.
    pub seq: u64,
    /// The client has an answer (a result, or `Pending`) for every sequence below this.
    pub acked: u64,
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionEnd {
    /// The client closed it.
    Closed,
    /// No request arrived within its TTL.
    Expired,
}

/// Checks a name against the limits: non-empty and at most `name_bytes_max` bytes.
pub(crate) fn check_name(limits: &Limits, name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::BelowMinimum { limit: Limit::NameBytes, min: 1 });
    }
    if name.len() > limits.name_bytes_max {
        return Err(Error::Limit { limit: Limit::NameBytes, max: limits.name_bytes_max as u64 });
    }
    Ok(())
}

/// The error for exceeding `limit`, whose value is `max`.
pub(crate) fn limit(limit: Limit, max: impl TryInto<u64>) -> Error {
    Error::Limit { limit, max: max.try_into().unwrap_or(u64::MAX) }
}

/// Fails with the waiters limit when `queued` waiters are already queued.
pub(crate) fn check_waiters(limits: &Limits, queued: usize) -> Result<(), Error> {
    if queued >= limits.waiters_per_object_max {
        return Err(limit(Limit::Waiters, limits.waiters_per_object_max));
    }
    Ok(())
}

/// Fails with the objects limit when `count` objects of a kind already exist.
pub(crate) fn check_objects(limits: &Limits, count: usize) -> Result<(), Error> {
    if count >= limits.objects_per_kind_max {
        return Err(limit(Limit::Objects, limits.objects_per_kind_max));
    }
    Ok(())
}
