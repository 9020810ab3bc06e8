//! The commands, queries, replies, errors and events of the coordination state machine:
//! what clients send (postcard-encoded inside Raft entries and read requests) and what
//! they get back. Each enum lists every primitive; the words they share (sessions,
//! fences, limit checks) are in `vocab.rs`.

use super::barrier::{BarrierError, BarrierOp};
use super::election::{ElectionError, ElectionEvent, ElectionOp, ElectionQuery, LeaderInfo};
use super::kv::{KvEntry, KvError, KvOp, KvQuery, WatchEvent};
use super::latch::{LatchError, LatchOp, LatchQuery};
use super::limits::Limit;
use super::lock::{LockError, LockEvent, LockInfo, LockOp, LockQuery};
use super::long::{LongOp, LongQuery};
use super::reference::{RefOp, RefQuery};
use super::rwlock::{RwLockError, RwLockOp, RwLockQuery};
use super::semaphore::{SemaphoreError, SemaphoreOp, SemaphoreQuery};
use super::session::{SessionInfo, SessionOp};
use super::signal::{SignalDelivery, SignalError, SignalOp};
use super::vocab::{Etag, Fence, SessionEnd, SessionId, SessionRef};
use crate::raft::LogIndex;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// A command: replicated through the log, then applied on every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The caller's session, when it has one. Operations that own something or wait
    /// need it; the rest accept it for exactly-once retries.
    pub session: Option<SessionRef>,
    /// What to do.
    pub op: Op,
}

/// Every state-changing operation, by primitive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Sessions.
    Session(SessionOp),
    /// Fenced locks.
    Lock(LockOp),
    /// Semaphores.
    Semaphore(SemaphoreOp),
    /// Read-write locks.
    RwLock(RwLockOp),
    /// Count-down latches.
    Latch(LatchOp),
    /// Cyclic barriers.
    Barrier(BarrierOp),
    /// Atomic longs.
    Long(LongOp),
    /// Atomic references.
    Ref(RefOp),
    /// The key-value store.
    Kv(KvOp),
    /// Leader election.
    Election(ElectionOp),
    /// Pub/sub signals.
    Signal(SignalOp),
}

/// A read: answered from one replica's applied state (how fresh depends on the
/// consistency level the read is sent with).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The caller's session, for questions such as "is it locked by me".
    pub session: Option<SessionId>,
    /// What to read.
    pub op: QueryOp,
}

/// Every read, by primitive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryOp {
    /// Open sessions.
    Sessions,
    /// Fenced locks.
    Lock(LockQuery),
    /// Semaphores.
    Semaphore(SemaphoreQuery),
    /// Read-write locks.
    RwLock(RwLockQuery),
    /// Count-down latches.
    Latch(LatchQuery),
    /// Atomic longs.
    Long(LongQuery),
    /// Atomic references.
    Ref(RefQuery),
    /// The key-value store and its change history.
    Kv(KvQuery),
    /// Leader election.
    Election(ElectionQuery),
}

/// A successful answer. Each operation documents which variant it returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Done; nothing to report.
    Unit,
    /// A session was opened.
    Session {
        /// Its id.
        id: SessionId,
        /// Its TTL: it expires this long after the last request the leader saw from it.
        ttl_ms: u64,
    },
    /// Ownership was granted with this fence.
    Fence(Fence),
    /// A yes/no answer.
    Bool(bool),
    /// A count (holds, permits, receivers, remaining count, …).
    Count(u64),
    /// A signed value (atomic long, semaphore availability).
    Long(i64),
    /// A byte value, or none.
    Value(Option<Vec<u8>>),
    /// Queued behind others at this position (0 = next).
    Queued {
        /// Waiters ahead.
        position: u32,
    },
    /// A barrier tripped.
    Barrier {
        /// The barrier's generation that tripped (0, 1, …).
        generation: u64,
        /// This party's arrival order within it (0 = first).
        arrival: u32,
    },
    /// A key-value write succeeded.
    KvWritten {
        /// The entry's new tag.
        etag: Etag,
    },
    /// A key-value read: the entry, or none.
    KvEntry(Option<KvEntry>),
    /// The entry still has the tag the reader sent (`if-none-match`).
    NotModified {
        /// The current tag.
        etag: Etag,
    },
    /// A page of a key-value listing, in key order.
    KvList {
        /// The entries.
        entries: Vec<KvEntry>,
        /// More keys follow; ask again starting after the last one.
        more: bool,
    },
    /// Key-value change history from the requested revision.
    WatchHistory {
        /// Matching events, in log order.
        events: Vec<WatchEvent>,
        /// The store's current revision: live events continue after it.
        revision: u64,
        /// More history follows; ask again from after the last event.
        more: bool,
    },
    /// The current leader of an election, if any.
    Leader(Option<LeaderInfo>),
    /// A signal subscription was created.
    Subscribed {
        /// Its id (the log index of the subscribe entry).
        id: u64,
    },
    /// Locks and their holders and waiters.
    Locks(Vec<LockInfo>),
    /// Open sessions.
    Sessions(Vec<SessionInfo>),
}

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// The command or query bytes could not be decoded.
    Malformed,
    /// The operation needs a session (and blocking ones a sequence number).
    SessionRequired,
    /// The session has expired or was closed; everything it owned was released.
    SessionLost(SessionId),
    /// The sequence number is below the session's reply-cache floor and not cached: it
    /// was acknowledged or evicted, so it is not applied again.
    StaleSequence {
        /// The refused sequence.
        seq: u64,
        /// The lowest sequence the cache can still answer or accept.
        floor: u64,
    },
    /// A named limit was exceeded.
    Limit {
        /// Which one.
        limit: Limit,
        /// Its configured value.
        max: u64,
    },
    /// A blocking operation's timeout passed before it was granted.
    Timeout,
    /// Fenced locks.
    Lock(LockError),
    /// Semaphores.
    Semaphore(SemaphoreError),
    /// Read-write locks.
    RwLock(RwLockError),
    /// Count-down latches.
    Latch(LatchError),
    /// Barriers.
    Barrier(BarrierError),
    /// Key-value store and watches.
    Kv(KvError),
    /// Elections.
    Election(ElectionError),
    /// Signals.
    Signal(SignalError),
    /// A value is below the least the machine accepts: an empty name, zero barrier
    /// parties, no names in a multi-lock, a session TTL below `session_ttl_min_ms`.
    BelowMinimum {
        /// What the value is measured against.
        limit: Limit,
        /// The least accepted.
        min: u64,
    },
}

impl Error {
    /// Whether this refuses a session's TTL (below `session_ttl_min_ms` or above
    /// `session_ttl_max_ms`): opening again with the same TTL cannot succeed.
    pub fn refuses_ttl(&self) -> bool {
        matches!(
            self,
            Self::Limit { limit: Limit::SessionTtl, .. }
                | Self::BelowMinimum { limit: Limit::SessionTtl, .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("malformed request"),
            Self::SessionRequired => f.write_str("this operation needs a session and a sequence number"),
            Self::SessionLost(s) => write!(f, "{s} was lost (expired or closed); what it owned was released"),
            Self::StaleSequence { seq, floor } => {
                write!(f, "sequence {seq} is below the reply cache floor {floor} and was not applied again")
            }
            Self::Limit { limit: Limit::SessionTtl, max } => {
                write!(f, "the session TTL must be at most {max} ms (limit session_ttl_max_ms)")
            }
            Self::Limit { limit, max } => write!(f, "limit {} = {max} exceeded", limit.field()),
            Self::BelowMinimum { limit: Limit::NameBytes, .. } => {
                f.write_str("a name must be at least 1 byte long")
            }
            Self::BelowMinimum { limit: Limit::BarrierParties, min } => {
                write!(f, "a barrier must have at least {min} part{}", if *min == 1 { "y" } else { "ies" })
            }
            Self::BelowMinimum { limit: Limit::MultiLockNames, min } => {
                write!(f, "a multi-lock must name at least {min} lock(s)")
            }
            Self::BelowMinimum { limit: Limit::SessionTtl, min } => {
                write!(f, "the session TTL must be at least {min} ms (limit session_ttl_min_ms)")
            }
            Self::BelowMinimum { limit, min } => write!(f, "{} must be at least {min}", limit.field()),
            Self::Timeout => f.write_str("timed out"),
            Self::Lock(e) => write!(f, "lock: {e}"),
            Self::Semaphore(e) => write!(f, "semaphore: {e}"),
            Self::RwLock(e) => write!(f, "read-write lock: {e}"),
            Self::Latch(e) => write!(f, "latch: {e}"),
            Self::Barrier(e) => write!(f, "barrier: {e}"),
            Self::Kv(e) => write!(f, "kv: {e}"),
            Self::Election(e) => write!(f, "election: {e}"),
            Self::Signal(e) => write!(f, "signal: {e}"),
        }
    }
}

/// What applying a command produced for its proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The command completed.
    Done(Result<Reply, Error>),
    /// The command is queued (a lock wait, a semaphore acquire, …). Its result arrives as
    /// [`Event::Completed`] with the same (session, seq), applied on every replica.
    Pending,
    /// A retry answered from the session's reply cache: the result the command got when
    /// it was first applied — or, if it was queued, when a later entry completed it — at
    /// `index`. Nothing was applied again.
    Replayed {
        /// The original result.
        result: Result<Reply, Error>,
        /// The entry that produced it.
        index: LogIndex,
        /// Whether the command had been queued and a later entry (at `index`) completed it.
        queued: bool,
    },
}

impl Outcome {
    /// The result, if the command completed.
    pub fn done(self) -> Option<Result<Reply, Error>> {
        match self {
            Self::Done(r) | Self::Replayed { result: r, .. } => Some(r),
            Self::Pending => None,
        }
    }
}

impl From<Result<Reply, Error>> for Outcome {
    fn from(r: Result<Reply, Error>) -> Self {
        Self::Done(r)
    }
}

/// Something applying an entry produced for others than its proposer. Every replica
/// produces the same events at the same log positions; a host forwards each to the
/// clients connected to it that it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A queued command completed: granted, timed out, or cancelled.
    Completed {
        /// The waiting session.
        session: SessionId,
        /// The command's sequence number.
        seq: u64,
        /// Its result.
        result: Result<Reply, Error>,
        /// The entry that completed it.
        index: LogIndex,
    },
    /// A session ended and everything it owned was released.
    SessionEnded {
        /// The session.
        session: SessionId,
        /// Why.
        reason: SessionEnd,
        /// The entry that ended it.
        index: LogIndex,
    },
    /// A key-value change (for watches).
    Kv(WatchEvent),
    /// An election changed hands (for observers).
    Election(ElectionEvent),
    /// A signal for one subscriber.
    Signal(SignalDelivery),
    /// A fenced lock changed hands (for metrics: hold and wait times in log time).
    Lock(LockEvent),
}
