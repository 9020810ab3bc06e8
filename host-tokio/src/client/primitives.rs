//! Typed handles, one per primitive, over [`Concord::execute`] and [`Concord::read`].
//!
//! A handle names one primitive and borrows the client: `c.semaphore("pool")`,
//! `c.kv()`, … Ownership comes back as a guard — [`LockGuard`], [`Permits`], [`RwGuard`],
//! [`Leadership`] — that knows the session it was granted in: it reports when that
//! session (and so the ownership) is lost, and releases on drop in the background. A
//! release is pinned to the granting session, so it can never reach a newer hold of
//! the same primitive taken in a later session. A lock guard also names its grant's
//! fence ([`LockOp::Release`]): it gives back one hold of that grant only, so after an
//! operator's `force_unlock` and a new grant in the same session the old guard's release
//! fails with `NotHeld` and the new hold stays. Other guards release by name within
//! their session.
//!
//! A grant whose caller stopped waiting — the acquiring future was dropped, or a
//! `tokio::time::timeout` around it fired, while the request was queued in the cluster —
//! is given back by the client as soon as it arrives, so an abandoned wait never leaves
//! a lock held.
//!
//! Waiting operations take a `timeout`: `None` waits until granted, `Some(d)` fails
//! with [`MachineError::Timeout`] after `d`. The `try_*` forms ask once and answer
//! `None` when the primitive is taken. Reads go with the client's
//! [`Options::read_consistency`](super::Options::read_consistency).

use super::{Concord, Done, Error, Undo};
use concord_core::machine::barrier::BarrierOp;
use concord_core::machine::election::{ElectionOp, ElectionQuery, LeaderInfo};
use concord_core::machine::kv::{KvEntry, KvOp, KvQuery, PutMode, WatchEvent, WatchFilter};
use concord_core::machine::latch::{LatchOp, LatchQuery};
use concord_core::machine::lock::{LockOp, LockQuery};
use concord_core::machine::long::{LongFn, LongOp, LongQuery};
use concord_core::machine::reference::{RefFn, RefOp, RefQuery};
use concord_core::machine::rwlock::{Mode, RwLockOp, RwLockQuery};
use concord_core::machine::semaphore::{SemaphoreOp, SemaphoreQuery};
use concord_core::machine::signal::{SignalDelivery, SignalOp};
use concord_core::machine::{Error as MachineError, Etag, Fence, Op, QueryOp, Reply, SessionId};
use std::time::Duration;
use tokio::sync::mpsc;

fn unexpected(r: Reply) -> Error {
    Error::Unexpected(format!("{r:?}"))
}

fn millis(timeout: Option<Duration>) -> Option<u64> {
    timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
}

/// A try (timeout 0) that found the primitive taken answers `None`.
fn tried<T>(r: Result<T, Error>) -> Result<Option<T>, Error> {
    match r {
        Err(Error::Machine(MachineError::Timeout)) => Ok(None),
        r => r.map(Some),
    }
}

/// Gives back the lock grant with `fence`, and no later one.
fn release_grant(name: String, fence: Fence) -> Op {
    Op::Lock(LockOp::Release { name, fence })
}

/// An undo that gives back the grants of `names` a fence reply carries.
fn release_grants(names: Vec<String>) -> Undo {
    Box::new(move |r| match r {
        Reply::Fence(f) => names.into_iter().map(|n| release_grant(n, *f)).collect(),
        _ => Vec::new(),
    })
}

/// An undo that applies `op` whatever the reply.
fn undo_with(op: Op) -> Undo {
    Box::new(move |_| vec![op])
}

fn expect_bool(r: Reply) -> Result<bool, Error> {
    match r {
        Reply::Bool(b) => Ok(b),
        r => Err(unexpected(r)),
    }
}

fn expect_count(r: Reply) -> Result<u64, Error> {
    match r {
        Reply::Count(n) => Ok(n),
        r => Err(unexpected(r)),
    }
}

fn expect_long(r: Reply) -> Result<i64, Error> {
    match r {
        Reply::Long(v) => Ok(v),
        r => Err(unexpected(r)),
    }
}

fn expect_value(r: Reply) -> Result<Option<Vec<u8>>, Error> {
    match r {
        Reply::Value(v) => Ok(v),
        r => Err(unexpected(r)),
    }
}

fn expect_unit(r: Reply) -> Result<(), Error> {
    match r {
        Reply::Unit => Ok(()),
        r => Err(unexpected(r)),
    }
}

fn expect_fence(r: Reply) -> Result<Fence, Error> {
    match r {
        Reply::Fence(f) => Ok(f),
        r => Err(unexpected(r)),
    }
}

fn expect_etag(r: Reply) -> Result<Etag, Error> {
    match r {
        Reply::KvWritten { etag } => Ok(etag),
        r => Err(unexpected(r)),
    }
}

/// Something a session owns, and the command that gives it back.
struct Hold {
    client: Concord,
    session: SessionId,
    release: Option<Op>,
}

impl Hold {
    fn new(client: &Concord, done: &Done, release: Op) -> Result<Self, Error> {
        let session = done.session.ok_or_else(|| Error::Unexpected("a grant outside a session".into()))?;
        Ok(Self { client: client.clone(), session, release: Some(release) })
    }

    fn is_held(&self) -> bool {
        self.client.session.borrow().current == Some(self.session)
    }

    async fn lost(&self) {
        self.client.session_changed(Some(self.session)).await;
    }

    /// Releases now. A lost session released everything already: the release, pinned to
    /// it, fails with `SessionLost` in the client without reaching the cluster.
    async fn release(mut self) -> Result<(), Error> {
        let op = self.release.take().ok_or(Error::Closed)?;
        self.client.execute_in(op, self.session).await.map(|_| ())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(op) = self.release.take() {
            if self.client.session.borrow().current == Some(self.session) {
                self.client.in_background(op, self.session);
            }
        }
    }
}

/// The session accessors every guard has.
macro_rules! owned_by_session {
    ($($guard:ty: $what:literal),* $(,)?) => {$(
        impl $guard {
            #[doc = concat!("The session ", $what, " granted in; it is lost with it.")]
            pub fn session(&self) -> SessionId {
                self.hold.session
            }

            #[doc = concat!("Whether the session ", $what, " granted in is still the client's ")]
            /// session. Once it is not, the cluster has released what it held, and someone
            /// else may hold it now.
            pub fn is_held(&self) -> bool {
                self.hold.is_held()
            }

            #[doc = concat!("Resolves once the session ", $what, " granted in is lost ")]
            /// (never, while it lives).
            pub async fn lost(&self) {
                self.hold.lost().await;
            }
        }
    )*};
}

owned_by_session!(
    LockGuard: "the lock was",
    Leadership: "leadership was",
    Permits: "the permits were",
    RwGuard: "the hold was",
    Subscription: "the subscription was",
);

impl Concord {
    /// Acquires lock `name`, waiting up to `timeout` (`None`: until granted). The guard
    /// carries the fence; dropping it releases the lock in the background. Reentrant: a
    /// second `lock` of a lock the session holds is granted with the same fence, and
    /// each guard releases one hold.
    pub async fn lock(&self, name: &str, timeout: Option<Duration>) -> Result<LockGuard, Error> {
        let op = Op::Lock(LockOp::Lock { name: name.into(), timeout_ms: millis(timeout) });
        let done = self.execute_undoable(op, release_grants(vec![name.into()])).await?;
        let fence = expect_fence(done.reply.clone())?;
        let hold = Hold::new(self, &done, release_grant(name.into(), fence))?;
        Ok(LockGuard { hold, fence })
    }

    /// Takes lock `name` if it is free now; `None` if it is held elsewhere.
    pub async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, Error> {
        tried(self.lock(name, Some(Duration::ZERO)).await)
    }

    /// Acquires every lock in `names` at once (all or none), waiting up to `timeout`;
    /// one guard per lock, all with the same fence. None may be held by the session.
    pub async fn lock_all(&self, names: &[&str], timeout: Option<Duration>) -> Result<Vec<LockGuard>, Error> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let op = LockOp::LockMany { names: names.clone(), timeout_ms: millis(timeout) };
        let done = self.execute_undoable(Op::Lock(op), release_grants(names.clone())).await?;
        let fence = expect_fence(done.reply.clone())?;
        names
            .into_iter()
            .map(|name| Ok(LockGuard { hold: Hold::new(self, &done, release_grant(name, fence))?, fence }))
            .collect()
    }

    /// Whether lock `name` is held by anyone.
    pub async fn is_locked(&self, name: &str) -> Result<bool, Error> {
        expect_bool(self.query(QueryOp::Lock(LockQuery::IsLocked { name: name.into() })).await?)
    }

    /// Releases lock `name` whoever holds it, every hold (an operator's tool): the next
    /// grant's fence supersedes the holder's, and its next unlock fails with `NotHeld`.
    pub async fn force_unlock(&self, name: &str) -> Result<(), Error> {
        expect_unit(self.execute(Op::Lock(LockOp::ForceUnlock { name: name.into() })).await?.reply)
    }

    /// Campaigns in election `name` with `value`, waiting up to `timeout`; the guard
    /// resigns when dropped. Campaigning again while leading answers the same leadership
    /// (same fence); either guard resigns it.
    pub async fn campaign(
        &self,
        name: &str,
        value: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Leadership, Error> {
        let op = ElectionOp::Campaign { name: name.into(), value, timeout_ms: millis(timeout) };
        let resign = Op::Election(ElectionOp::Resign { name: name.into() });
        let done = self.execute_undoable(Op::Election(op), undo_with(resign.clone())).await?;
        let fence = expect_fence(done.reply.clone())?;
        let hold = Hold::new(self, &done, resign)?;
        Ok(Leadership { hold, name: name.into(), fence })
    }

    /// The current leader of election `name`, if any.
    pub async fn leader(&self, name: &str) -> Result<Option<LeaderInfo>, Error> {
        match self.query(QueryOp::Election(ElectionQuery::Leader { name: name.into() })).await? {
            Reply::Leader(l) => Ok(l),
            r => Err(unexpected(r)),
        }
    }

    /// An atomic counter (a 64-bit signed integer, 0 until first written).
    pub fn counter(&self, name: &str) -> Counter<'_> {
        Counter { client: self, name: name.into() }
    }

    /// An atomic reference to a byte value (null until first written).
    pub fn reference(&self, name: &str) -> Reference<'_> {
        Reference { client: self, name: name.into() }
    }

    /// A counting semaphore.
    pub fn semaphore(&self, name: &str) -> Semaphore<'_> {
        Semaphore { client: self, name: name.into() }
    }

    /// A read-write lock.
    pub fn rwlock(&self, name: &str) -> RwLock<'_> {
        RwLock { client: self, name: name.into() }
    }

    /// A count-down latch.
    pub fn latch(&self, name: &str) -> Latch<'_> {
        Latch { client: self, name: name.into() }
    }

    /// A cyclic barrier of `parties`.
    pub fn barrier(&self, name: &str, parties: u32) -> Barrier<'_> {
        Barrier { client: self, name: name.into(), parties }
    }

    /// The key-value store.
    pub fn kv(&self) -> Kv<'_> {
        Kv { client: self }
    }

    /// Publishes `payload` on `subject`; how many subscriptions received it.
    pub async fn publish(&self, subject: &str, payload: Vec<u8>) -> Result<u64, Error> {
        let op = SignalOp::Publish { subject: subject.into(), payload };
        expect_count(self.execute(Op::Signal(op)).await?.reply)
    }

    /// Subscribes to subjects matching `pattern` (`*` one token, `>` the rest); with a
    /// `queue_group`, each signal goes to one member of the group. The subscription
    /// belongs to the session: its stream ends when the session is lost. Dropping it
    /// unsubscribes.
    pub async fn subscribe(&self, pattern: &str, queue_group: Option<&str>) -> Result<Subscription, Error> {
        // The subscription runs in the session current now; signals that reach it before
        // its reply are kept for it.
        let op = SignalOp::Subscribe { pattern: pattern.into(), group: queue_group.map(str::to_owned) };
        let undo: Undo = Box::new(|r| match r {
            Reply::Subscribed { id } => vec![Op::Signal(SignalOp::Unsubscribe { id: *id })],
            _ => Vec::new(),
        });
        let (done, deliveries) = self.execute_subscribe(Op::Signal(op), undo).await?;
        let id = match done.reply {
            Reply::Subscribed { id } => id,
            r => return Err(unexpected(r)),
        };
        let hold = Hold::new(self, &done, Op::Signal(SignalOp::Unsubscribe { id }))?;
        Ok(Subscription { hold, id, deliveries })
    }
}

/// A held lock. Dropping it releases the lock in the background; [`LockGuard::unlock`]
/// releases it and reports the result.
pub struct LockGuard {
    hold: Hold,
    fence: Fence,
}

impl LockGuard {
    /// The fence of this grant: pass it to the resources the lock protects, which refuse
    /// writes carrying an older one.
    pub fn fence(&self) -> u64 {
        self.fence.0
    }

    /// Releases the lock. If its session was lost meanwhile, the cluster released it
    /// already: that is `SessionLost`, and nothing reaches a newer hold.
    pub async fn unlock(self) -> Result<(), Error> {
        self.hold.release().await
    }
}

/// Leadership won in an election; dropping it resigns in the background.
pub struct Leadership {
    hold: Hold,
    name: String,
    fence: Fence,
}

impl Leadership {
    /// The fence of this term of leadership.
    pub fn fence(&self) -> u64 {
        self.fence.0
    }

    /// Announces a new value without an election (observers see it).
    pub async fn proclaim(&self, value: Vec<u8>) -> Result<(), Error> {
        let op = Op::Election(ElectionOp::Proclaim { name: self.name.clone(), value });
        self.hold.client.execute_in(op, self.hold.session).await.map(|_| ())
    }

    /// Resigns (nothing is sent if the session, and the leadership with it, was lost).
    pub async fn resign(self) -> Result<(), Error> {
        self.hold.release().await
    }
}

/// An atomic counter.
pub struct Counter<'a> {
    client: &'a Concord,
    name: String,
}

impl Counter<'_> {
    async fn op(&self, op: LongOp) -> Result<Reply, Error> {
        Ok(self.client.execute(Op::Long(op)).await?.reply)
    }

    /// The value.
    pub async fn get(&self) -> Result<i64, Error> {
        expect_long(self.client.query(QueryOp::Long(LongQuery::Get { name: self.name.clone() })).await?)
    }

    /// Adds one; the new value.
    pub async fn incr(&self) -> Result<i64, Error> {
        self.add(1).await
    }

    /// Adds `delta`; the new value.
    pub async fn add(&self, delta: i64) -> Result<i64, Error> {
        expect_long(self.op(LongOp::AddAndGet { name: self.name.clone(), delta }).await?)
    }

    /// Adds `delta`; the previous value.
    pub async fn get_and_add(&self, delta: i64) -> Result<i64, Error> {
        expect_long(self.op(LongOp::GetAndAdd { name: self.name.clone(), delta }).await?)
    }

    /// Sets the value.
    pub async fn set(&self, value: i64) -> Result<(), Error> {
        expect_unit(self.op(LongOp::Set { name: self.name.clone(), value }).await?)
    }

    /// Sets the value; the previous one.
    pub async fn get_and_set(&self, value: i64) -> Result<i64, Error> {
        expect_long(self.op(LongOp::GetAndSet { name: self.name.clone(), value }).await?)
    }

    /// Sets `new` if the value is `expected`; whether it did.
    pub async fn compare_and_set(&self, expected: i64, new: i64) -> Result<bool, Error> {
        let op = LongOp::CompareAndSet { name: self.name.clone(), expect: expected, update: new };
        expect_bool(self.op(op).await?)
    }

    /// Replaces the value with `f(value)`; the new value.
    pub async fn alter_and_get(&self, f: LongFn) -> Result<i64, Error> {
        expect_long(self.op(LongOp::AlterAndGet { name: self.name.clone(), f }).await?)
    }

    /// Replaces the value with `f(value)`; the previous value.
    pub async fn get_and_alter(&self, f: LongFn) -> Result<i64, Error> {
        expect_long(self.op(LongOp::GetAndAlter { name: self.name.clone(), f }).await?)
    }

    /// `f(value)`, computed by the cluster without storing it.
    pub async fn apply(&self, f: LongFn) -> Result<i64, Error> {
        expect_long(self.client.query(QueryOp::Long(LongQuery::Apply { name: self.name.clone(), f })).await?)
    }
}

/// An atomic reference to a byte value; `None` is null.
pub struct Reference<'a> {
    client: &'a Concord,
    name: String,
}

impl Reference<'_> {
    async fn op(&self, op: RefOp) -> Result<Reply, Error> {
        Ok(self.client.execute(Op::Ref(op)).await?.reply)
    }

    async fn query(&self, q: RefQuery) -> Result<Reply, Error> {
        self.client.query(QueryOp::Ref(q)).await
    }

    /// The value.
    pub async fn get(&self) -> Result<Option<Vec<u8>>, Error> {
        expect_value(self.query(RefQuery::Get { name: self.name.clone() }).await?)
    }

    /// Sets the value (`None` clears it).
    pub async fn set(&self, value: Option<Vec<u8>>) -> Result<(), Error> {
        expect_unit(self.op(RefOp::Set { name: self.name.clone(), value }).await?)
    }

    /// Sets the value; the previous one.
    pub async fn get_and_set(&self, value: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, Error> {
        expect_value(self.op(RefOp::GetAndSet { name: self.name.clone(), value }).await?)
    }

    /// Sets `update` if the value equals `expected`; whether it did.
    pub async fn compare_and_set(
        &self,
        expected: Option<Vec<u8>>,
        update: Option<Vec<u8>>,
    ) -> Result<bool, Error> {
        expect_bool(
            self.op(RefOp::CompareAndSet { name: self.name.clone(), expect: expected, update }).await?,
        )
    }

    /// Replaces the value with `f(value)`; the new value.
    pub async fn alter_and_get(&self, f: RefFn) -> Result<Option<Vec<u8>>, Error> {
        expect_value(self.op(RefOp::AlterAndGet { name: self.name.clone(), f }).await?)
    }

    /// Replaces the value with `f(value)`; the previous value.
    pub async fn get_and_alter(&self, f: RefFn) -> Result<Option<Vec<u8>>, Error> {
        expect_value(self.op(RefOp::GetAndAlter { name: self.name.clone(), f }).await?)
    }

    /// Whether the value is null.
    pub async fn is_null(&self) -> Result<bool, Error> {
        expect_bool(self.query(RefQuery::IsNull { name: self.name.clone() }).await?)
    }

    /// Whether the value equals `value`.
    pub async fn contains(&self, value: Option<Vec<u8>>) -> Result<bool, Error> {
        expect_bool(self.query(RefQuery::Contains { name: self.name.clone(), value }).await?)
    }

    /// `f(value)`, computed by the cluster without storing it.
    pub async fn apply(&self, f: RefFn) -> Result<Option<Vec<u8>>, Error> {
        expect_value(self.query(RefQuery::Apply { name: self.name.clone(), f }).await?)
    }
}

/// A counting semaphore. Permits taken with [`Semaphore::acquire`] belong to the session
/// and come back to the pool when it is lost; a semaphore created with
/// [`Semaphore::init_sessionless`] keeps permits taken with [`Semaphore::take`] until
/// somebody [releases](Semaphore::release) them.
pub struct Semaphore<'a> {
    client: &'a Concord,
    name: String,
}

impl Semaphore<'_> {
    async fn op(&self, op: SemaphoreOp) -> Result<Done, Error> {
        self.client.execute(Op::Semaphore(op)).await
    }

    /// Creates the semaphore with `permits`; `false` if it existed (it is left as it was).
    pub async fn init(&self, permits: u64) -> Result<bool, Error> {
        let op = SemaphoreOp::Init { name: self.name.clone(), permits, sessionless: false };
        expect_bool(self.op(op).await?.reply)
    }

    /// Creates a semaphore whose permits belong to no session; `false` if it existed.
    pub async fn init_sessionless(&self, permits: u64) -> Result<bool, Error> {
        let op = SemaphoreOp::Init { name: self.name.clone(), permits, sessionless: true };
        expect_bool(self.op(op).await?.reply)
    }

    /// Takes `permits` for the session, waiting up to `timeout`; the guard gives them
    /// back when dropped. For semaphores made with [`Semaphore::init`]: the guard trusts
    /// the cluster to take the permits back if the session is lost, which a sessionless
    /// semaphore does not do — use [`Semaphore::take`] and [`Semaphore::release`] there.
    pub async fn acquire(&self, permits: u64, timeout: Option<Duration>) -> Result<Permits, Error> {
        let op = SemaphoreOp::Acquire { name: self.name.clone(), permits, timeout_ms: millis(timeout) };
        let release = Op::Semaphore(SemaphoreOp::Release { name: self.name.clone(), permits });
        let done = self.client.execute_undoable(Op::Semaphore(op), undo_with(release.clone())).await?;
        expect_unit(done.reply.clone())?;
        Ok(Permits { hold: Hold::new(self.client, &done, release)?, permits })
    }

    /// Takes `permits` if they are free now; `None` if not.
    pub async fn try_acquire(&self, permits: u64) -> Result<Option<Permits>, Error> {
        tried(self.acquire(permits, Some(Duration::ZERO)).await)
    }

    /// Takes `permits` without a guard, waiting up to `timeout`: for a sessionless
    /// semaphore, whose permits outlive the session and are given back with
    /// [`Semaphore::release`], by this client or another.
    pub async fn take(&self, permits: u64, timeout: Option<Duration>) -> Result<(), Error> {
        let op = SemaphoreOp::Acquire { name: self.name.clone(), permits, timeout_ms: millis(timeout) };
        expect_unit(self.op(op).await?.reply)
    }

    /// Gives back `permits` taken with [`Semaphore::take`].
    pub async fn release(&self, permits: u64) -> Result<(), Error> {
        expect_unit(self.op(SemaphoreOp::Release { name: self.name.clone(), permits }).await?.reply)
    }

    /// Takes every available permit; how many. They are the session's to give back.
    pub async fn drain(&self) -> Result<u64, Error> {
        expect_count(self.op(SemaphoreOp::Drain { name: self.name.clone() }).await?.reply)
    }

    /// Adds `permits` to the pool.
    pub async fn increase(&self, permits: u64) -> Result<(), Error> {
        expect_unit(self.op(SemaphoreOp::Increase { name: self.name.clone(), permits }).await?.reply)
    }

    /// Removes `permits` from the pool (availability may go negative).
    pub async fn reduce(&self, permits: u64) -> Result<(), Error> {
        expect_unit(self.op(SemaphoreOp::Reduce { name: self.name.clone(), permits }).await?.reply)
    }

    /// Permits available now (0 if the semaphore was never created).
    pub async fn available(&self) -> Result<i64, Error> {
        let q = QueryOp::Semaphore(SemaphoreQuery::Available { name: self.name.clone() });
        expect_long(self.client.query(q).await?)
    }

    /// Permits the client's session holds.
    pub async fn held(&self) -> Result<u64, Error> {
        let q = QueryOp::Semaphore(SemaphoreQuery::Held { name: self.name.clone() });
        expect_count(self.client.query(q).await?)
    }
}

/// Permits held by the session; dropping the guard gives them back in the background.
pub struct Permits {
    hold: Hold,
    permits: u64,
}

impl Permits {
    /// How many.
    pub fn count(&self) -> u64 {
        self.permits
    }

    /// Gives the permits back (`SessionLost` if the session, and they with it, was lost).
    pub async fn release(self) -> Result<(), Error> {
        self.hold.release().await
    }
}

/// A read-write lock: many readers or one writer, each grant with a fence.
pub struct RwLock<'a> {
    client: &'a Concord,
    name: String,
}

impl RwLock<'_> {
    async fn lock(&self, mode: Mode, timeout: Option<Duration>) -> Result<RwGuard, Error> {
        let op = RwLockOp::Lock { name: self.name.clone(), mode, timeout_ms: millis(timeout) };
        let release = Op::RwLock(RwLockOp::Unlock { name: self.name.clone() });
        let done = self.client.execute_undoable(Op::RwLock(op), undo_with(release.clone())).await?;
        let fence = expect_fence(done.reply.clone())?;
        Ok(RwGuard { hold: Hold::new(self.client, &done, release)?, fence, mode })
    }

    /// Takes it for reading, waiting up to `timeout`.
    pub async fn read(&self, timeout: Option<Duration>) -> Result<RwGuard, Error> {
        self.lock(Mode::Read, timeout).await
    }

    /// Takes it for writing, waiting up to `timeout`.
    pub async fn write(&self, timeout: Option<Duration>) -> Result<RwGuard, Error> {
        self.lock(Mode::Write, timeout).await
    }

    /// Takes it for reading if that is possible now.
    pub async fn try_read(&self) -> Result<Option<RwGuard>, Error> {
        tried(self.read(Some(Duration::ZERO)).await)
    }

    /// Takes it for writing if it is free now.
    pub async fn try_write(&self) -> Result<Option<RwGuard>, Error> {
        tried(self.write(Some(Duration::ZERO)).await)
    }

    /// Sessions holding it for reading.
    pub async fn readers(&self) -> Result<u64, Error> {
        expect_count(
            self.client.query(QueryOp::RwLock(RwLockQuery::Readers { name: self.name.clone() })).await?,
        )
    }

    /// Whether a writer holds it.
    pub async fn is_write_locked(&self) -> Result<bool, Error> {
        let q = QueryOp::RwLock(RwLockQuery::IsWriteLocked { name: self.name.clone() });
        expect_bool(self.client.query(q).await?)
    }
}

/// A read or write hold; dropping it releases the hold in the background.
pub struct RwGuard {
    hold: Hold,
    fence: Fence,
    mode: Mode,
}

impl RwGuard {
    /// The fence of this grant.
    pub fn fence(&self) -> u64 {
        self.fence.0
    }

    /// Whether this is a write hold.
    pub fn is_write(&self) -> bool {
        self.mode == Mode::Write
    }

    /// Releases the hold.
    pub async fn unlock(self) -> Result<(), Error> {
        self.hold.release().await
    }
}

/// A count-down latch: [`Latch::wait`] returns once the count reaches zero.
pub struct Latch<'a> {
    client: &'a Concord,
    name: String,
}

impl Latch<'_> {
    /// Sets the count if it is zero; whether it did (`false`: still counting down).
    pub async fn try_set_count(&self, count: u64) -> Result<bool, Error> {
        let op = LatchOp::TrySetCount { name: self.name.clone(), count };
        expect_bool(self.client.execute(Op::Latch(op)).await?.reply)
    }

    /// Counts down by one (exactly once, whatever the retries); the count left.
    pub async fn count_down(&self) -> Result<u64, Error> {
        expect_count(
            self.client.execute(Op::Latch(LatchOp::CountDown { name: self.name.clone() })).await?.reply,
        )
    }

    /// Waits up to `timeout` for the count to reach zero: `true` once it has, `false` if
    /// the time ran out first.
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool, Error> {
        let op = LatchOp::Await { name: self.name.clone(), timeout_ms: millis(timeout) };
        match self.client.execute(Op::Latch(op)).await {
            Ok(d) => expect_unit(d.reply).map(|()| true),
            Err(Error::Machine(MachineError::Timeout)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The current count.
    pub async fn count(&self) -> Result<u64, Error> {
        expect_count(self.client.query(QueryOp::Latch(LatchQuery::Count { name: self.name.clone() })).await?)
    }
}

/// A cyclic barrier: each generation trips when its parties have all arrived.
pub struct Barrier<'a> {
    client: &'a Concord,
    name: String,
    parties: u32,
}

/// A barrier generation that tripped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tripped {
    /// The generation (0, 1, …).
    pub generation: u64,
    /// This party's arrival order in it (0 = first).
    pub arrival: u32,
}

impl Barrier<'_> {
    /// Arrives and waits up to `timeout` for the others. A timeout breaks the generation:
    /// every party waiting in it fails with [`MachineError::Timeout`] too.
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<Tripped, Error> {
        let op =
            BarrierOp::Wait { name: self.name.clone(), parties: self.parties, timeout_ms: millis(timeout) };
        match self.client.execute(Op::Barrier(op)).await?.reply {
            Reply::Barrier { generation, arrival } => Ok(Tripped { generation, arrival }),
            r => Err(unexpected(r)),
        }
    }
}

/// A conditional read's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fresh {
    /// The entry changed (or is gone): here it is now.
    Changed(Option<KvEntry>),
    /// The entry still has the tag the reader holds.
    NotModified(Etag),
}

/// The key-value store: values under string keys, each write tagged with the revision
/// that made it (its ETag), conditional writes on tags, TTLs, and watches.
pub struct Kv<'a> {
    client: &'a Concord,
}

impl Kv<'_> {
    async fn op(&self, op: KvOp) -> Result<Reply, Error> {
        Ok(self.client.execute(Op::Kv(op)).await?.reply)
    }

    /// The entry under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        match self.get_if_none_match(key, None).await? {
            Fresh::Changed(e) => Ok(e),
            Fresh::NotModified(etag) => Err(Error::Unexpected(format!("not modified ({})", etag.0))),
        }
    }

    /// The entry under `key`, unless it still has tag `etag` (HTTP's `If-None-Match`).
    pub async fn get_if_none_match(&self, key: &str, etag: Option<Etag>) -> Result<Fresh, Error> {
        let q = KvQuery::Get { key: key.into(), if_none_match: etag };
        match self.client.query(QueryOp::Kv(q)).await? {
            Reply::KvEntry(e) => Ok(Fresh::Changed(e)),
            Reply::NotModified { etag } => Ok(Fresh::NotModified(etag)),
            r => Err(unexpected(r)),
        }
    }

    /// The entry under `key` without its value.
    pub async fn head(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        match self.client.query(QueryOp::Kv(KvQuery::Head { key: key.into() })).await? {
            Reply::KvEntry(e) => Ok(e),
            r => Err(unexpected(r)),
        }
    }

    /// Writes `value` under `key` if `mode` allows it, to expire after `ttl` if given;
    /// the new tag. A failed condition is [`KvError::Exists`] or
    /// [`KvError::EtagMismatch`](concord_core::machine::kv::KvError::EtagMismatch).
    ///
    /// [`KvError::Exists`]: concord_core::machine::kv::KvError::Exists
    pub async fn put_with(
        &self,
        key: &str,
        value: Vec<u8>,
        mode: PutMode,
        ttl: Option<Duration>,
    ) -> Result<Etag, Error> {
        expect_etag(self.op(KvOp::Put { key: key.into(), value, mode, ttl_ms: millis(ttl) }).await?)
    }

    /// Writes `value` under `key`; the new tag.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<Etag, Error> {
        self.put_with(key, value, PutMode::Always, None).await
    }

    /// Creates `key`; fails with `KvError::Exists` if it exists.
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<Etag, Error> {
        self.put_with(key, value, PutMode::IfAbsent, None).await
    }

    /// Overwrites `key` only if its tag is `etag` (HTTP's `If-Match`).
    pub async fn replace(&self, key: &str, value: Vec<u8>, etag: Etag) -> Result<Etag, Error> {
        self.put_with(key, value, PutMode::IfMatch(etag), None).await
    }

    /// Deletes `key`; whether it existed. With `if_match`, only that version.
    pub async fn delete(&self, key: &str, if_match: Option<Etag>) -> Result<bool, Error> {
        expect_bool(self.op(KvOp::Delete { key: key.into(), if_match }).await?)
    }

    /// Copies `from`'s value to `to`; `to`'s new tag. With `if_absent`, fails if `to` exists.
    pub async fn copy(&self, from: &str, to: &str, if_absent: bool) -> Result<Etag, Error> {
        expect_etag(self.op(KvOp::Copy { from: from.into(), to: to.into(), if_absent }).await?)
    }

    /// Moves `from` to `to` (with its TTL); `to`'s new tag.
    pub async fn rename(&self, from: &str, to: &str, if_absent: bool) -> Result<Etag, Error> {
        expect_etag(self.op(KvOp::Rename { from: from.into(), to: to.into(), if_absent }).await?)
    }

    /// One page of the entries under `prefix`, in key order, after key `after`: the
    /// entries, and whether more follow.
    pub async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        keys_only: bool,
    ) -> Result<(Vec<KvEntry>, bool), Error> {
        let q = KvQuery::List { prefix: prefix.into(), after: after.map(str::to_owned), keys_only };
        match self.client.query(QueryOp::Kv(q)).await? {
            Reply::KvList { entries, more } => Ok((entries, more)),
            r => Err(unexpected(r)),
        }
    }

    /// Every entry under `prefix`, page by page. Each page is a consistent read; the
    /// whole listing is not one snapshot if writes land between pages.
    pub async fn list(&self, prefix: &str, keys_only: bool) -> Result<Vec<KvEntry>, Error> {
        let mut all: Vec<KvEntry> = Vec::new();
        loop {
            let after = all.last().map(|e| e.key.clone());
            let (page, more) = self.list_page(prefix, after.as_deref(), keys_only).await?;
            let empty = page.is_empty();
            all.extend(page);
            if !more || empty {
                return Ok(all);
            }
        }
    }

    /// Changes to keys matching `filter`, from revision `from` (or from now on): see
    /// [`Concord::watch`].
    pub fn watch(
        &self,
        filter: WatchFilter,
        from: Option<u64>,
    ) -> mpsc::UnboundedReceiver<Result<WatchEvent, Error>> {
        self.client.watch(filter, from)
    }
}

/// A signal subscription; dropping it unsubscribes in the background.
pub struct Subscription {
    hold: Hold,
    id: u64,
    deliveries: mpsc::UnboundedReceiver<SignalDelivery>,
}

impl Subscription {
    /// Its id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next signal; `None` once the session, and the subscription with it, was lost.
    pub async fn next(&mut self) -> Option<SignalDelivery> {
        self.deliveries.recv().await
    }

    /// Ends the subscription.
    pub async fn unsubscribe(self) -> Result<(), Error> {
        self.hold.release().await
    }
}
