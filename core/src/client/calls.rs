//! Typed calls: for every operation of every primitive, the request it sends and the
//! typed result its reply decodes to; and, for every grant (a lock, permits, a read or
//! write hold, leadership, a subscription), the command that gives it back.
//!
//! A host never matches on [`Reply`] itself: it sends a [`Call`]'s [`Request`] through
//! the [`Client`](super::Client) and hands the reply to the call's [`Decode`]. A reply of
//! the wrong shape (a client and server of different versions) is an
//! [`UnexpectedReply`], never a panic.
//!
//! ```
//! use concord_core::client::calls::{Counter, Lock, Request};
//! use concord_core::machine::{Fence, Reply};
//!
//! let incr = Counter::new("visits").incr();
//! assert!(matches!(incr.request(), Request::Command(_)));
//! let (_, decode) = incr.into_parts();
//! assert_eq!(decode.decode(Reply::Long(7)), Ok(7));
//! assert!(decode.decode(Reply::Unit).is_err());
//!
//! let lock = Lock::new("jobs").lock(None);
//! let (_, decode) = lock.into_parts();
//! assert_eq!(decode.decode(Reply::Fence(Fence(12))), Ok(Fence(12)));
//! ```

use crate::machine::barrier::BarrierOp;
use crate::machine::election::{ElectionOp, ElectionQuery, LeaderInfo};
use crate::machine::kv::{KvEntry, KvOp, KvQuery, PutMode, WatchEvent, WatchFilter};
use crate::machine::latch::{LatchOp, LatchQuery};
use crate::machine::lock::{LockInfo, LockOp, LockQuery};
use crate::machine::long::{LongFn, LongOp, LongQuery};
use crate::machine::reference::{RefFn, RefOp, RefQuery};
use crate::machine::rwlock::{Mode, RwLockOp, RwLockQuery};
use crate::machine::semaphore::{SemaphoreOp, SemaphoreQuery};
use crate::machine::session::SessionInfo;
use crate::machine::signal::SignalOp;
use crate::machine::{Etag, Fence, Op, QueryOp, Reply};
use crate::raft::{LogIndex, Membership, MembershipChange, NodeId, Status, Term};
use crate::wire::{Answer, ClusterView, RequestBody};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

/// What a call sends: a command (replicated, applied once) or a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Submit with [`Client::submit`](super::Client::submit).
    Command(Op),
    /// Send with [`Client::read`](super::Client::read).
    Read(QueryOp),
}

/// A reply that is not what the call expects: a client and a server that speak
/// different versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnexpectedReply(pub Reply);

impl fmt::Display for UnexpectedReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected reply {:?} (client and server versions differ?)", self.0)
    }
}

/// Turns a reply into a call's typed result.
pub struct Decode<T>(fn(Reply) -> Result<T, Reply>);

impl<T> Clone for Decode<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Decode<T> {}

impl<T> fmt::Debug for Decode<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Decode")
    }
}

impl<T> Decode<T> {
    /// The typed result of `reply`.
    pub fn decode(self, reply: Reply) -> Result<T, UnexpectedReply> {
        (self.0)(reply).map_err(UnexpectedReply)
    }
}

/// One operation, typed: the request to send and how to decode its reply.
#[derive(Debug)]
#[must_use = "a call does nothing until its request is sent"]
pub struct Call<T> {
    request: Request,
    decode: Decode<T>,
}

impl<T> Call<T> {
    fn command(op: Op, decode: fn(Reply) -> Result<T, Reply>) -> Self {
        Self { request: Request::Command(op), decode: Decode(decode) }
    }

    fn read(query: QueryOp, decode: fn(Reply) -> Result<T, Reply>) -> Self {
        Self { request: Request::Read(query), decode: Decode(decode) }
    }

    /// What it sends.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The request, and the decoder for its reply.
    pub fn into_parts(self) -> (Request, Decode<T>) {
        (self.request, self.decode)
    }
}

// ----- decoders ---------------------------------------------------------------------

fn unit(r: Reply) -> Result<(), Reply> {
    match r {
        Reply::Unit => Ok(()),
        r => Err(r),
    }
}

fn boolean(r: Reply) -> Result<bool, Reply> {
    match r {
        Reply::Bool(b) => Ok(b),
        r => Err(r),
    }
}

fn count(r: Reply) -> Result<u64, Reply> {
    match r {
        Reply::Count(n) => Ok(n),
        r => Err(r),
    }
}

fn long(r: Reply) -> Result<i64, Reply> {
    match r {
        Reply::Long(v) => Ok(v),
        r => Err(r),
    }
}

fn value(r: Reply) -> Result<Option<Vec<u8>>, Reply> {
    match r {
        Reply::Value(v) => Ok(v),
        r => Err(r),
    }
}

fn fence(r: Reply) -> Result<Fence, Reply> {
    match r {
        Reply::Fence(f) => Ok(f),
        r => Err(r),
    }
}

fn ticket(r: Reply) -> Result<Ticket, Reply> {
    match r {
        Reply::Fence(f) => Ok(Ticket::Granted(f)),
        Reply::Queued { position } => Ok(Ticket::Queued { position }),
        r => Err(r),
    }
}

fn etag(r: Reply) -> Result<Etag, Reply> {
    match r {
        Reply::KvWritten { etag } => Ok(etag),
        r => Err(r),
    }
}

fn entry(r: Reply) -> Result<Option<KvEntry>, Reply> {
    match r {
        Reply::KvEntry(e) => Ok(e),
        r => Err(r),
    }
}

fn fresh(r: Reply) -> Result<Fresh, Reply> {
    match r {
        Reply::KvEntry(e) => Ok(Fresh::Changed(e)),
        Reply::NotModified { etag } => Ok(Fresh::NotModified(etag)),
        r => Err(r),
    }
}

fn page(r: Reply) -> Result<Page, Reply> {
    match r {
        Reply::KvList { entries, more } => Ok(Page { entries, more }),
        r => Err(r),
    }
}

fn history(r: Reply) -> Result<History, Reply> {
    match r {
        Reply::WatchHistory { events, revision, more } => Ok(History { events, revision, more }),
        r => Err(r),
    }
}

fn tripped(r: Reply) -> Result<Tripped, Reply> {
    match r {
        Reply::Barrier { generation, arrival } => Ok(Tripped { generation, arrival }),
        r => Err(r),
    }
}

fn leader(r: Reply) -> Result<Option<LeaderInfo>, Reply> {
    match r {
        Reply::Leader(l) => Ok(l),
        r => Err(r),
    }
}

fn subscribed(r: Reply) -> Result<u64, Reply> {
    match r {
        Reply::Subscribed { id } => Ok(id),
        r => Err(r),
    }
}

fn locks(r: Reply) -> Result<Vec<LockInfo>, Reply> {
    match r {
        Reply::Locks(l) => Ok(l),
        r => Err(r),
    }
}

fn sessions(r: Reply) -> Result<Vec<SessionInfo>, Reply> {
    match r {
        Reply::Sessions(s) => Ok(s),
        r => Err(r),
    }
}

/// A timeout as the machine takes it: whole milliseconds, `None` to wait until granted.
fn millis(timeout: Option<Duration>) -> Option<u64> {
    timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
}

// ----- results ----------------------------------------------------------------------

/// What taking a place in a lock's queue gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ticket {
    /// The lock was free: granted at once.
    Granted(Fence),
    /// Queued behind `position` others; [`Lock::wait`] waits for the grant.
    Queued {
        /// Waiters ahead (0 = next).
        position: u32,
    },
}

/// A barrier generation that tripped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tripped {
    /// The generation (0, 1, …).
    pub generation: u64,
    /// This party's arrival order in it (0 = first).
    pub arrival: u32,
}

/// A conditional read's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fresh {
    /// The entry changed (or is gone): here it is now.
    Changed(Option<KvEntry>),
    /// The entry still has the tag the reader holds.
    NotModified(Etag),
}

/// One page of a key-value listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// Entries in key order.
    pub entries: Vec<KvEntry>,
    /// More follow: ask again after the last key.
    pub more: bool,
}

/// A stretch of key-value change history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// Matching changes, in log order.
    pub events: Vec<WatchEvent>,
    /// The store's revision: live changes continue after it.
    pub revision: u64,
    /// More history follows: ask again after the last event.
    pub more: bool,
}

// ----- primitives -------------------------------------------------------------------

/// A fenced lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    name: String,
}

impl Lock {
    /// Lock `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// Acquires it, waiting up to `timeout` (`None`: until granted) → its fence. A grant:
    /// given back by [`Lock::release`] with that fence.
    pub fn lock(&self, timeout: Option<Duration>) -> Call<Fence> {
        Call::command(Op::Lock(LockOp::Lock { name: self.name.clone(), timeout_ms: millis(timeout) }), fence)
    }

    /// Acquires it only if it is free now; a held lock fails with `Error::Timeout`.
    pub fn try_lock(&self) -> Call<Fence> {
        self.lock(Some(Duration::ZERO))
    }

    /// Takes a place in its queue: granted at once, or queued (then [`Lock::wait`]).
    pub fn enqueue(&self) -> Call<Ticket> {
        Call::command(Op::Lock(LockOp::Enqueue { name: self.name.clone() }), ticket)
    }

    /// Waits up to `timeout` for the place [`Lock::enqueue`] took → its fence.
    pub fn wait(&self, timeout: Option<Duration>) -> Call<Fence> {
        Call::command(Op::Lock(LockOp::Await { name: self.name.clone(), timeout_ms: millis(timeout) }), fence)
    }

    /// Releases one hold of the session's, whatever its fence → holds left.
    pub fn unlock(&self) -> Call<u64> {
        Call::command(Op::Lock(LockOp::Unlock { name: self.name.clone() }), count)
    }

    /// Releases one hold of the grant that came with `fence`, and no other → holds left.
    pub fn release(&self, fence: Fence) -> Call<u64> {
        Call::command(Op::Lock(LockOp::Release { name: self.name.clone(), fence }), count)
    }

    /// Releases it whoever holds it, every hold (administrative).
    pub fn force_unlock(&self) -> Call<()> {
        Call::command(Op::Lock(LockOp::ForceUnlock { name: self.name.clone() }), unit)
    }

    /// Whether anyone holds it.
    pub fn is_locked(&self) -> Call<bool> {
        Call::read(QueryOp::Lock(LockQuery::IsLocked { name: self.name.clone() }), boolean)
    }

    /// Whether the reading session holds it.
    pub fn is_locked_by_me(&self) -> Call<bool> {
        Call::read(QueryOp::Lock(LockQuery::IsLockedByMe { name: self.name.clone() }), boolean)
    }

    /// How many holds its holder has.
    pub fn lock_count(&self) -> Call<u64> {
        Call::read(QueryOp::Lock(LockQuery::LockCount { name: self.name.clone() }), count)
    }
}

/// Acquires every lock of `names` at once, all or none, waiting up to `timeout` → the
/// fence, the same for each.
pub fn lock_all(names: Vec<String>, timeout: Option<Duration>) -> Call<Fence> {
    Call::command(Op::Lock(LockOp::LockMany { names, timeout_ms: millis(timeout) }), fence)
}

/// Locks from `start` on in name order, with holders and waiters.
pub fn list_locks(start: impl Into<String>) -> Call<Vec<LockInfo>> {
    Call::read(QueryOp::Lock(LockQuery::List { start: start.into() }), locks)
}

/// Open sessions.
pub fn list_sessions() -> Call<Vec<SessionInfo>> {
    Call::read(QueryOp::Sessions, sessions)
}

/// A counting semaphore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Semaphore {
    name: String,
}

impl Semaphore {
    /// Semaphore `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// Creates it with `permits` owned by sessions (returned when a session is lost)
    /// → whether it was created now (`false`: it existed, and is left as it was).
    pub fn init(&self, permits: u64) -> Call<bool> {
        Call::command(
            Op::Semaphore(SemaphoreOp::Init { name: self.name.clone(), permits, sessionless: false }),
            boolean,
        )
    }

    /// Creates it with permits that belong to no session.
    pub fn init_sessionless(&self, permits: u64) -> Call<bool> {
        Call::command(
            Op::Semaphore(SemaphoreOp::Init { name: self.name.clone(), permits, sessionless: true }),
            boolean,
        )
    }

    /// Takes `permits`, waiting up to `timeout`. A grant: given back by
    /// [`Semaphore::release`].
    pub fn acquire(&self, permits: u64, timeout: Option<Duration>) -> Call<()> {
        let op = SemaphoreOp::Acquire { name: self.name.clone(), permits, timeout_ms: millis(timeout) };
        Call::command(Op::Semaphore(op), unit)
    }

    /// Gives back `permits`.
    pub fn release(&self, permits: u64) -> Call<()> {
        Call::command(Op::Semaphore(SemaphoreOp::Release { name: self.name.clone(), permits }), unit)
    }

    /// Takes every available permit → how many.
    pub fn drain(&self) -> Call<u64> {
        Call::command(Op::Semaphore(SemaphoreOp::Drain { name: self.name.clone() }), count)
    }

    /// Adds `permits` to the pool.
    pub fn increase(&self, permits: u64) -> Call<()> {
        Call::command(Op::Semaphore(SemaphoreOp::Increase { name: self.name.clone(), permits }), unit)
    }

    /// Removes `permits` from the pool (availability may go negative).
    pub fn reduce(&self, permits: u64) -> Call<()> {
        Call::command(Op::Semaphore(SemaphoreOp::Reduce { name: self.name.clone(), permits }), unit)
    }

    /// Permits available now (0 if never created).
    pub fn available(&self) -> Call<i64> {
        Call::read(QueryOp::Semaphore(SemaphoreQuery::Available { name: self.name.clone() }), long)
    }

    /// Permits the reading session holds.
    pub fn held(&self) -> Call<u64> {
        Call::read(QueryOp::Semaphore(SemaphoreQuery::Held { name: self.name.clone() }), count)
    }
}

/// A read-write lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RwLock {
    name: String,
}

impl RwLock {
    /// Read-write lock `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// Takes it in `mode`, waiting up to `timeout` → the grant's fence. A grant: given
    /// back by [`RwLock::unlock`].
    pub fn lock(&self, mode: Mode, timeout: Option<Duration>) -> Call<Fence> {
        let op = RwLockOp::Lock { name: self.name.clone(), mode, timeout_ms: millis(timeout) };
        Call::command(Op::RwLock(op), fence)
    }

    /// Releases one hold of whichever mode the session holds → holds left.
    pub fn unlock(&self) -> Call<u64> {
        Call::command(Op::RwLock(RwLockOp::Unlock { name: self.name.clone() }), count)
    }

    /// Sessions holding it for reading.
    pub fn readers(&self) -> Call<u64> {
        Call::read(QueryOp::RwLock(RwLockQuery::Readers { name: self.name.clone() }), count)
    }

    /// Whether a writer holds it.
    pub fn is_write_locked(&self) -> Call<bool> {
        Call::read(QueryOp::RwLock(RwLockQuery::IsWriteLocked { name: self.name.clone() }), boolean)
    }
}

/// A count-down latch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latch {
    name: String,
}

impl Latch {
    /// Latch `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// Sets the count if it is zero → whether it did.
    pub fn try_set_count(&self, count: u64) -> Call<bool> {
        Call::command(Op::Latch(LatchOp::TrySetCount { name: self.name.clone(), count }), boolean)
    }

    /// Counts down by one → the count left.
    pub fn count_down(&self) -> Call<u64> {
        Call::command(Op::Latch(LatchOp::CountDown { name: self.name.clone() }), count)
    }

    /// Waits up to `timeout` for the count to reach zero (`Error::Timeout` if it does
    /// not).
    pub fn wait(&self, timeout: Option<Duration>) -> Call<()> {
        Call::command(
            Op::Latch(LatchOp::Await { name: self.name.clone(), timeout_ms: millis(timeout) }),
            unit,
        )
    }

    /// The current count.
    pub fn count(&self) -> Call<u64> {
        Call::read(QueryOp::Latch(LatchQuery::Count { name: self.name.clone() }), count)
    }
}

/// A cyclic barrier of a number of parties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Barrier {
    name: String,
    parties: u32,
}

impl Barrier {
    /// Barrier `name` of `parties`.
    pub fn new(name: impl Into<String>, parties: u32) -> Self {
        Self { name: name.into(), parties }
    }

    /// Arrives and waits up to `timeout` for the other parties → the generation tripped.
    pub fn wait(&self, timeout: Option<Duration>) -> Call<Tripped> {
        let op =
            BarrierOp::Wait { name: self.name.clone(), parties: self.parties, timeout_ms: millis(timeout) };
        Call::command(Op::Barrier(op), tripped)
    }
}

/// An atomic 64-bit counter (0 until first written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    name: String,
}

impl Counter {
    /// Counter `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// The value.
    pub fn get(&self) -> Call<i64> {
        Call::read(QueryOp::Long(LongQuery::Get { name: self.name.clone() }), long)
    }

    /// Sets the value.
    pub fn set(&self, value: i64) -> Call<()> {
        Call::command(Op::Long(LongOp::Set { name: self.name.clone(), value }), unit)
    }

    /// Sets the value → the previous one.
    pub fn get_and_set(&self, value: i64) -> Call<i64> {
        Call::command(Op::Long(LongOp::GetAndSet { name: self.name.clone(), value }), long)
    }

    /// Adds `delta` → the new value.
    pub fn add(&self, delta: i64) -> Call<i64> {
        Call::command(Op::Long(LongOp::AddAndGet { name: self.name.clone(), delta }), long)
    }

    /// Adds `delta` → the previous value.
    pub fn get_and_add(&self, delta: i64) -> Call<i64> {
        Call::command(Op::Long(LongOp::GetAndAdd { name: self.name.clone(), delta }), long)
    }

    /// Adds one → the new value.
    pub fn incr(&self) -> Call<i64> {
        self.add(1)
    }

    /// Subtracts one → the new value.
    pub fn decr(&self) -> Call<i64> {
        self.add(-1)
    }

    /// Sets `update` if the value is `expect` → whether it did.
    pub fn compare_and_set(&self, expect: i64, update: i64) -> Call<bool> {
        Call::command(Op::Long(LongOp::CompareAndSet { name: self.name.clone(), expect, update }), boolean)
    }

    /// Replaces the value with `f(value)`.
    pub fn alter(&self, f: LongFn) -> Call<()> {
        Call::command(Op::Long(LongOp::Alter { name: self.name.clone(), f }), unit)
    }

    /// Replaces the value with `f(value)` → the new value.
    pub fn alter_and_get(&self, f: LongFn) -> Call<i64> {
        Call::command(Op::Long(LongOp::AlterAndGet { name: self.name.clone(), f }), long)
    }

    /// Replaces the value with `f(value)` → the previous value.
    pub fn get_and_alter(&self, f: LongFn) -> Call<i64> {
        Call::command(Op::Long(LongOp::GetAndAlter { name: self.name.clone(), f }), long)
    }

    /// `f(value)`, computed without storing it.
    pub fn apply(&self, f: LongFn) -> Call<i64> {
        Call::read(QueryOp::Long(LongQuery::Apply { name: self.name.clone(), f }), long)
    }
}

/// An atomic reference to a byte value (`None`: null).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    name: String,
}

impl Reference {
    /// Reference `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// The value.
    pub fn get(&self) -> Call<Option<Vec<u8>>> {
        Call::read(QueryOp::Ref(RefQuery::Get { name: self.name.clone() }), value)
    }

    /// Sets the value (`None` clears it).
    pub fn set(&self, value: Option<Vec<u8>>) -> Call<()> {
        Call::command(Op::Ref(RefOp::Set { name: self.name.clone(), value }), unit)
    }

    /// Clears the value.
    pub fn clear(&self) -> Call<()> {
        self.set(None)
    }

    /// Sets the value → the previous one.
    pub fn get_and_set(&self, value: Option<Vec<u8>>) -> Call<Option<Vec<u8>>> {
        Call::command(Op::Ref(RefOp::GetAndSet { name: self.name.clone(), value }), self::value)
    }

    /// Sets `update` if the value equals `expect` (`None`: if it is null) → whether it
    /// did.
    pub fn compare_and_set(&self, expect: Option<Vec<u8>>, update: Option<Vec<u8>>) -> Call<bool> {
        Call::command(Op::Ref(RefOp::CompareAndSet { name: self.name.clone(), expect, update }), boolean)
    }

    /// Replaces the value with `f(value)`.
    pub fn alter(&self, f: RefFn) -> Call<()> {
        Call::command(Op::Ref(RefOp::Alter { name: self.name.clone(), f }), unit)
    }

    /// Replaces the value with `f(value)` → the new value.
    pub fn alter_and_get(&self, f: RefFn) -> Call<Option<Vec<u8>>> {
        Call::command(Op::Ref(RefOp::AlterAndGet { name: self.name.clone(), f }), value)
    }

    /// Replaces the value with `f(value)` → the previous value.
    pub fn get_and_alter(&self, f: RefFn) -> Call<Option<Vec<u8>>> {
        Call::command(Op::Ref(RefOp::GetAndAlter { name: self.name.clone(), f }), value)
    }

    /// Whether the value is null.
    pub fn is_null(&self) -> Call<bool> {
        Call::read(QueryOp::Ref(RefQuery::IsNull { name: self.name.clone() }), boolean)
    }

    /// Whether the value equals `value`.
    pub fn contains(&self, value: Option<Vec<u8>>) -> Call<bool> {
        Call::read(QueryOp::Ref(RefQuery::Contains { name: self.name.clone(), value }), boolean)
    }

    /// `f(value)`, computed without storing it.
    pub fn apply(&self, f: RefFn) -> Call<Option<Vec<u8>>> {
        Call::read(QueryOp::Ref(RefQuery::Apply { name: self.name.clone(), f }), value)
    }
}

/// The key-value store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kv;

impl Kv {
    /// The entry under `key`.
    pub fn get(self, key: impl Into<String>) -> Call<Option<KvEntry>> {
        Call::read(QueryOp::Kv(KvQuery::Get { key: key.into(), if_none_match: None }), entry)
    }

    /// The entry under `key`, unless it still has tag `etag` (HTTP's `If-None-Match`).
    pub fn get_if_none_match(self, key: impl Into<String>, etag: Option<Etag>) -> Call<Fresh> {
        Call::read(QueryOp::Kv(KvQuery::Get { key: key.into(), if_none_match: etag }), fresh)
    }

    /// The entry under `key` without its value.
    pub fn head(self, key: impl Into<String>) -> Call<Option<KvEntry>> {
        Call::read(QueryOp::Kv(KvQuery::Head { key: key.into() }), entry)
    }

    /// Writes `value` under `key` if `mode` allows, to expire after `ttl` → the new tag.
    pub fn put(
        self,
        key: impl Into<String>,
        value: Vec<u8>,
        mode: PutMode,
        ttl: Option<Duration>,
    ) -> Call<Etag> {
        Call::command(Op::Kv(KvOp::Put { key: key.into(), value, mode, ttl_ms: millis(ttl) }), etag)
    }

    /// Deletes `key` (with `if_match`, only that version) → whether it existed.
    pub fn delete(self, key: impl Into<String>, if_match: Option<Etag>) -> Call<bool> {
        Call::command(Op::Kv(KvOp::Delete { key: key.into(), if_match }), boolean)
    }

    /// Copies `from`'s value to `to` (with `if_absent`, only if `to` does not exist) →
    /// `to`'s new tag.
    pub fn copy(self, from: impl Into<String>, to: impl Into<String>, if_absent: bool) -> Call<Etag> {
        Call::command(Op::Kv(KvOp::Copy { from: from.into(), to: to.into(), if_absent }), etag)
    }

    /// Moves `from` to `to` with its TTL (with `if_absent`, only if `to` does not exist)
    /// → `to`'s new tag.
    pub fn rename(self, from: impl Into<String>, to: impl Into<String>, if_absent: bool) -> Call<Etag> {
        Call::command(Op::Kv(KvOp::Rename { from: from.into(), to: to.into(), if_absent }), etag)
    }

    /// One page of the entries under `prefix` after key `after`, in key order.
    pub fn list_page(self, prefix: impl Into<String>, after: Option<String>, keys_only: bool) -> Call<Page> {
        Call::read(QueryOp::Kv(KvQuery::List { prefix: prefix.into(), after, keys_only }), page)
    }

    /// Changes covered by `filter` from revision `from` on.
    pub fn history(self, filter: WatchFilter, from: u64) -> Call<History> {
        Call::read(QueryOp::Kv(KvQuery::History { filter, from }), history)
    }
}

/// A leader election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Election {
    name: String,
}

impl Election {
    /// Election `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// Runs with `value`, waiting up to `timeout` to be elected → the leadership's fence.
    /// A grant: given back by [`Election::resign`].
    pub fn campaign(&self, value: Vec<u8>, timeout: Option<Duration>) -> Call<Fence> {
        let op = ElectionOp::Campaign { name: self.name.clone(), value, timeout_ms: millis(timeout) };
        Call::command(Op::Election(op), fence)
    }

    /// Announces a new value while leading.
    pub fn proclaim(&self, value: Vec<u8>) -> Call<()> {
        Call::command(Op::Election(ElectionOp::Proclaim { name: self.name.clone(), value }), unit)
    }

    /// Steps down, or withdraws a candidacy.
    pub fn resign(&self) -> Call<()> {
        Call::command(Op::Election(ElectionOp::Resign { name: self.name.clone() }), unit)
    }

    /// The current leader, if any.
    pub fn leader(&self) -> Call<Option<LeaderInfo>> {
        Call::read(QueryOp::Election(ElectionQuery::Leader { name: self.name.clone() }), leader)
    }
}

/// Publishes `payload` on `subject` → how many subscriptions received it.
pub fn publish(subject: impl Into<String>, payload: Vec<u8>) -> Call<u64> {
    Call::command(Op::Signal(SignalOp::Publish { subject: subject.into(), payload }), count)
}

/// Subscribes the session to subjects matching `pattern` (`*` one token, `>` the rest),
/// in `queue_group` if given (each signal to one member) → the subscription's id. A
/// grant: its deliveries come as [`ClientEvent::Signal`](super::ClientEvent::Signal)
/// for this call's operation; given back by [`unsubscribe`].
pub fn subscribe(pattern: impl Into<String>, queue_group: Option<String>) -> Call<u64> {
    Call::command(Op::Signal(SignalOp::Subscribe { pattern: pattern.into(), group: queue_group }), subscribed)
}

/// Ends subscription `id`.
pub fn unsubscribe(id: u64) -> Call<()> {
    Call::command(Op::Signal(SignalOp::Unsubscribe { id }), unit)
}

// ----- grants -----------------------------------------------------------------------

/// The commands that give back what `reply` to `op` granted, in the session it was
/// granted in: nothing for an operation that grants nothing (or failed). Lock grants
/// are given back by fence, so a release can never reach a later grant.
pub fn releases(op: &Op, reply: &Reply) -> Vec<Op> {
    match (op, reply) {
        (
            Op::Lock(LockOp::Lock { name, .. } | LockOp::Await { name, .. } | LockOp::Enqueue { name }),
            Reply::Fence(f),
        ) => {
            vec![Op::Lock(LockOp::Release { name: name.clone(), fence: *f })]
        }
        (Op::Lock(LockOp::LockMany { names, .. }), Reply::Fence(f)) => {
            names.iter().map(|name| Op::Lock(LockOp::Release { name: name.clone(), fence: *f })).collect()
        }
        (Op::Semaphore(SemaphoreOp::Acquire { name, permits, .. }), Reply::Unit) => {
            vec![Op::Semaphore(SemaphoreOp::Release { name: name.clone(), permits: *permits })]
        }
        (Op::Semaphore(SemaphoreOp::Drain { name }), Reply::Count(n)) if *n > 0 => {
            vec![Op::Semaphore(SemaphoreOp::Release { name: name.clone(), permits: *n })]
        }
        (Op::RwLock(RwLockOp::Lock { name, .. }), Reply::Fence(_)) => {
            vec![Op::RwLock(RwLockOp::Unlock { name: name.clone() })]
        }
        (Op::Election(ElectionOp::Campaign { name, .. }), Reply::Fence(_)) => {
            vec![Op::Election(ElectionOp::Resign { name: name.clone() })]
        }
        (Op::Signal(SignalOp::Subscribe { .. }), Reply::Subscribed { id }) => {
            vec![Op::Signal(SignalOp::Unsubscribe { id: *id })]
        }
        _ => Vec::new(),
    }
}

// ----- administration ---------------------------------------------------------------

/// An administrative request, typed: sent with [`Client::admin`](super::Client::admin).
#[derive(Debug)]
#[must_use = "a call does nothing until its request is sent"]
pub struct AdminCall<T> {
    body: RequestBody,
    decode: fn(Answer) -> Result<T, Box<Answer>>,
}

/// An answer that is not what the administrative call expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnexpectedAnswer(pub Box<Answer>);

impl fmt::Display for UnexpectedAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected answer {:?} (client and server versions differ?)", self.0)
    }
}

impl<T> AdminCall<T> {
    /// What it sends.
    pub fn body(&self) -> &RequestBody {
        &self.body
    }

    /// The request, and the decoder for its answer.
    pub fn into_parts(self) -> (RequestBody, AdminDecode<T>) {
        (self.body, AdminDecode(self.decode))
    }
}

/// Turns an administrative answer into its typed result.
pub struct AdminDecode<T>(fn(Answer) -> Result<T, Box<Answer>>);

impl<T> Clone for AdminDecode<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for AdminDecode<T> {}

impl<T> AdminDecode<T> {
    /// The typed result of `answer`.
    pub fn decode(self, answer: Answer) -> Result<T, UnexpectedAnswer> {
        (self.0)(answer).map_err(UnexpectedAnswer)
    }
}

/// The status of the node that answers (the leader, if there is one).
pub fn status() -> AdminCall<Status> {
    AdminCall {
        body: RequestBody::Status,
        decode: |a| match a {
            Answer::Status(s) => Ok(s),
            a => Err(Box::new(a)),
        },
    }
}

/// Who answers, who leads, and where the members listen for clients.
pub fn cluster() -> AdminCall<ClusterView> {
    AdminCall {
        body: RequestBody::Hello,
        decode: |a| match a {
            Answer::Cluster(v) => Ok(v),
            a => Err(Box::new(a)),
        },
    }
}

/// Changes the membership by one server → the change's log index and the membership in
/// force.
pub fn change_membership(change: MembershipChange) -> AdminCall<(LogIndex, Membership)> {
    AdminCall {
        body: RequestBody::ChangeMembership(change),
        decode: |a| match a {
            Answer::Membership { index, membership } => Ok((index, membership)),
            a => Err(Box::new(a)),
        },
    }
}

/// Hands leadership to `to` → the term it leads in.
pub fn transfer_leadership(to: NodeId) -> AdminCall<Term> {
    AdminCall {
        body: RequestBody::TransferLeadership(to),
        decode: |a| match a {
            Answer::Transferred { term } => Ok(term),
            a => Err(Box::new(a)),
        },
    }
}
