//! Typed handles, one per primitive: async wrappers over the core's typed calls
//! ([`concord_core::client::calls`]), which build every request, decode every reply and
//! name what releases every grant.
//!
//! A handle names one primitive and borrows the client: `c.semaphore("pool")`,
//! `c.kv()`, … Ownership comes back as a guard — [`LockGuard`], [`Permits`], [`RwGuard`],
//! [`Leadership`], [`Subscription`] — that knows the session it was granted in: it
//! reports when that session (and so the ownership) is lost, and sends the release the
//! core named on drop, in the background. A release is pinned to the granting session,
//! so it can never reach a newer hold of the same primitive taken in a later session. A
//! lock guard gives back its grant by fence ([`LockOp::Release`]), so after an operator's
//! `force_unlock` and a new grant in the same session the old guard's release fails with
//! `NotHeld` and the new hold stays. Other guards release by name within their session.
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
//!
//! [`LockOp::Release`]: concord_core::machine::lock::LockOp::Release

use super::{Concord, Done, Error};
use concord_core::client::calls::Ticket;
use concord_core::client::calls::{self, Call};
pub use concord_core::client::calls::{Fresh, Tripped};
use concord_core::machine::election::LeaderInfo;
use concord_core::machine::kv::{KvEntry, PutMode, WatchEvent, WatchFilter};
use concord_core::machine::lock::LockInfo;
use concord_core::machine::long::LongFn;
use concord_core::machine::reference::RefFn;
use concord_core::machine::rwlock::Mode;
use concord_core::machine::signal::SignalDelivery;
use concord_core::machine::{Error as MachineError, Etag, Fence, Op, SessionId};
use std::time::Duration;
use tokio::sync::mpsc;

/// A try (timeout 0) that found the primitive taken answers `None`.
fn tried<T>(r: Result<T, Error>) -> Result<Option<T>, Error> {
    match r {
        Err(Error::Machine(MachineError::Timeout)) => Ok(None),
        r => r.map(Some),
    }
}

/// Something a session owns, and the commands that give it back.
struct Hold {
    client: Concord,
    session: SessionId,
    release: Vec<Op>,
}

impl Hold {
    /// The hold `done` granted, given back by `release` (what the core named for it).
    fn new(client: &Concord, done: &Done, release: Vec<Op>) -> Result<Self, Error> {
        let session = done.session.ok_or_else(|| Error::Unexpected("a grant outside a session".into()))?;
        Ok(Self { client: client.clone(), session, release })
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
        for op in std::mem::take(&mut self.release) {
            self.client.execute_in(op, self.session).await?;
        }
        Ok(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.client.session.borrow().current == Some(self.session) {
            for op in std::mem::take(&mut self.release) {
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
    /// Runs a call that grants something; the result and the hold it granted.
    async fn grant<T>(&self, call: Call<T>) -> Result<(T, Hold), Error> {
        let (value, done) = self.call_done(call).await?;
        let hold = Hold::new(self, &done, done.releases.clone())?;
        Ok((value, hold))
    }

    /// Acquires lock `name`, waiting up to `timeout` (`None`: until granted). The guard
    /// carries the fence; dropping it releases the lock in the background. Reentrant: a
    /// second `lock` of a lock the session holds is granted with the same fence, and
    /// each guard releases one hold.
    pub async fn lock(&self, name: &str, timeout: Option<Duration>) -> Result<LockGuard, Error> {
        let (fence, hold) = self.grant(calls::Lock::new(name).lock(timeout)).await?;
        Ok(LockGuard { hold, fence })
    }

    /// Takes lock `name` if it is free now; `None` if it is held elsewhere.
    pub async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, Error> {
        tried(self.lock(name, Some(Duration::ZERO)).await)
    }

    /// Acquires every lock in `names` at once (all or none), waiting up to `timeout`;
    /// one guard per lock, all with the same fence. None may be held by the session.
    pub async fn lock_all(&self, names: &[&str], timeout: Option<Duration>) -> Result<Vec<LockGuard>, Error> {
        let names = names.iter().map(|n| (*n).to_owned()).collect();
        let (fence, done) = self.call_done(calls::lock_all(names, timeout)).await?;
        // The core names one release per lock, in order.
        done.releases
            .iter()
            .map(|release| Ok(LockGuard { hold: Hold::new(self, &done, vec![release.clone()])?, fence }))
            .collect()
    }

    /// Takes a place in lock `name`'s queue: the lock at once if it is free, or a place
    /// behind the sessions already waiting; [`Concord::await_lock`] then waits for the
    /// grant. The place is the session's: it is given up when the session ends.
    pub async fn enqueue(&self, name: &str) -> Result<Enqueued, Error> {
        let (ticket, done) = self.call_done(calls::Lock::new(name).enqueue()).await?;
        Ok(match ticket {
            Ticket::Granted(fence) => {
                Enqueued::Granted(LockGuard { hold: Hold::new(self, &done, done.releases.clone())?, fence })
            }
            Ticket::Queued { position } => Enqueued::Queued { position },
        })
    }

    /// Waits up to `timeout` (`None`: until granted) for the place
    /// [`Concord::enqueue`] took in lock `name`'s queue; a timeout keeps the place.
    pub async fn await_lock(&self, name: &str, timeout: Option<Duration>) -> Result<LockGuard, Error> {
        let (fence, hold) = self.grant(calls::Lock::new(name).wait(timeout)).await?;
        Ok(LockGuard { hold, fence })
    }

    /// Every lock held or waited for, from `start` on in name order, with its holder,
    /// fence, holds and waiters (read page by page).
    pub async fn locks(&self, start: &str) -> Result<Vec<LockInfo>, Error> {
        let mut all: Vec<LockInfo> = Vec::new();
        let mut from = start.to_owned();
        loop {
            let page = self.call(calls::list_locks(from.clone())).await?;
            let Some(last) = page.last() else { return Ok(all) };
            // The smallest name after the last one listed.
            from = format!("{}\0", last.name);
            all.extend(page);
        }
    }

    /// Whether lock `name` is held by anyone.
    pub async fn is_locked(&self, name: &str) -> Result<bool, Error> {
        self.call(calls::Lock::new(name).is_locked()).await
    }

    /// Releases lock `name` whoever holds it, every hold (an operator's tool): the next
    /// grant's fence supersedes the holder's, and its next unlock fails with `NotHeld`.
    pub async fn force_unlock(&self, name: &str) -> Result<(), Error> {
        self.call(calls::Lock::new(name).force_unlock()).await
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
        let election = calls::Election::new(name);
        let (fence, hold) = self.grant(election.campaign(value, timeout)).await?;
        Ok(Leadership { hold, election, fence })
    }

    /// The current leader of election `name`, if any.
    pub async fn leader(&self, name: &str) -> Result<Option<LeaderInfo>, Error> {
        self.call(calls::Election::new(name).leader()).await
    }

    /// An atomic counter (a 64-bit signed integer, 0 until first written).
    pub fn counter(&self, name: &str) -> Counter<'_> {
        Counter { client: self, c: calls::Counter::new(name) }
    }

    /// An atomic reference to a byte value (null until first written).
    pub fn reference(&self, name: &str) -> Reference<'_> {
        Reference { client: self, r: calls::Reference::new(name) }
    }

    /// A counting semaphore.
    pub fn semaphore(&self, name: &str) -> Semaphore<'_> {
        Semaphore { client: self, s: calls::Semaphore::new(name) }
    }

    /// A read-write lock.
    pub fn rwlock(&self, name: &str) -> RwLock<'_> {
        RwLock { client: self, l: calls::RwLock::new(name) }
    }

    /// A count-down latch.
    pub fn latch(&self, name: &str) -> Latch<'_> {
        Latch { client: self, l: calls::Latch::new(name) }
    }

    /// A cyclic barrier of `parties`.
    pub fn barrier(&self, name: &str, parties: u32) -> Barrier<'_> {
        Barrier { client: self, b: calls::Barrier::new(name, parties) }
    }

    /// The key-value store.
    pub fn kv(&self) -> Kv<'_> {
        Kv { client: self }
    }

    /// Publishes `payload` on `subject`; how many subscriptions received it.
    pub async fn publish(&self, subject: &str, payload: Vec<u8>) -> Result<u64, Error> {
        self.call(calls::publish(subject, payload)).await
    }

    /// Subscribes to subjects matching `pattern` (`*` one token, `>` the rest); with a
    /// `queue_group`, each signal goes to one member of the group. The subscription
    /// belongs to the session: its stream ends when the session is lost. Dropping it
    /// unsubscribes.
    pub async fn subscribe(&self, pattern: &str, queue_group: Option<&str>) -> Result<Subscription, Error> {
        let call = calls::subscribe(pattern, queue_group.map(str::to_owned));
        let (id, done, deliveries) = self.call_subscribe(call).await?;
        let hold = Hold::new(self, &done, done.releases.clone())?;
        Ok(Subscription { hold, id, deliveries })
    }
}

/// What taking a place in a lock's queue gave ([`Concord::enqueue`]).
pub enum Enqueued {
    /// The lock was free: it is held.
    Granted(LockGuard),
    /// Queued: `position` sessions wait ahead (0: next).
    Queued {
        /// Waiters ahead.
        position: u32,
    },
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
    election: calls::Election,
    fence: Fence,
}

impl Leadership {
    /// The fence of this term of leadership.
    pub fn fence(&self) -> u64 {
        self.fence.0
    }

    /// Announces a new value without an election (observers see it).
    pub async fn proclaim(&self, value: Vec<u8>) -> Result<(), Error> {
        self.hold.client.call_in(self.election.proclaim(value), Some(self.hold.session)).await
    }

    /// Resigns (nothing is sent if the session, and the leadership with it, was lost).
    pub async fn resign(self) -> Result<(), Error> {
        self.hold.release().await
    }
}

/// An atomic counter.
pub struct Counter<'a> {
    client: &'a Concord,
    c: calls::Counter,
}

impl Counter<'_> {
    /// The value.
    pub async fn get(&self) -> Result<i64, Error> {
        self.client.call(self.c.get()).await
    }

    /// Adds one; the new value.
    pub async fn incr(&self) -> Result<i64, Error> {
        self.client.call(self.c.incr()).await
    }

    /// Subtracts one; the new value.
    pub async fn decr(&self) -> Result<i64, Error> {
        self.client.call(self.c.decr()).await
    }

    /// Adds `delta`; the new value.
    pub async fn add(&self, delta: i64) -> Result<i64, Error> {
        self.client.call(self.c.add(delta)).await
    }

    /// Adds `delta`; the previous value.
    pub async fn get_and_add(&self, delta: i64) -> Result<i64, Error> {
        self.client.call(self.c.get_and_add(delta)).await
    }

    /// Sets the value.
    pub async fn set(&self, value: i64) -> Result<(), Error> {
        self.client.call(self.c.set(value)).await
    }

    /// Sets the value; the previous one.
    pub async fn get_and_set(&self, value: i64) -> Result<i64, Error> {
        self.client.call(self.c.get_and_set(value)).await
    }

    /// Sets `new` if the value is `expected`; whether it did.
    pub async fn compare_and_set(&self, expected: i64, new: i64) -> Result<bool, Error> {
        self.client.call(self.c.compare_and_set(expected, new)).await
    }

    /// Replaces the value with `f(value)`; the new value.
    pub async fn alter_and_get(&self, f: LongFn) -> Result<i64, Error> {
        self.client.call(self.c.alter_and_get(f)).await
    }

    /// Replaces the value with `f(value)`; the previous value.
    pub async fn get_and_alter(&self, f: LongFn) -> Result<i64, Error> {
        self.client.call(self.c.get_and_alter(f)).await
    }

    /// `f(value)`, computed by the cluster without storing it.
    pub async fn apply(&self, f: LongFn) -> Result<i64, Error> {
        self.client.call(self.c.apply(f)).await
    }
}

/// An atomic reference to a byte value; `None` is null.
pub struct Reference<'a> {
    client: &'a Concord,
    r: calls::Reference,
}

impl Reference<'_> {
    /// The value.
    pub async fn get(&self) -> Result<Option<Vec<u8>>, Error> {
        self.client.call(self.r.get()).await
    }

    /// Sets the value (`None` clears it).
    pub async fn set(&self, value: Option<Vec<u8>>) -> Result<(), Error> {
        self.client.call(self.r.set(value)).await
    }

    /// Sets the value; the previous one.
    pub async fn get_and_set(&self, value: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, Error> {
        self.client.call(self.r.get_and_set(value)).await
    }

    /// Sets `update` if the value equals `expected` (`None`: if it is null); whether it
    /// did.
    pub async fn compare_and_set(
        &self,
        expected: Option<Vec<u8>>,
        update: Option<Vec<u8>>,
    ) -> Result<bool, Error> {
        self.client.call(self.r.compare_and_set(expected, update)).await
    }

    /// Replaces the value with `f(value)`; the new value.
    pub async fn alter_and_get(&self, f: RefFn) -> Result<Option<Vec<u8>>, Error> {
        self.client.call(self.r.alter_and_get(f)).await
    }

    /// Replaces the value with `f(value)`; the previous value.
    pub async fn get_and_alter(&self, f: RefFn) -> Result<Option<Vec<u8>>, Error> {
        self.client.call(self.r.get_and_alter(f)).await
    }

    /// Whether the value is null.
    pub async fn is_null(&self) -> Result<bool, Error> {
        self.client.call(self.r.is_null()).await
    }

    /// Whether the value equals `value`.
    pub async fn contains(&self, value: Option<Vec<u8>>) -> Result<bool, Error> {
        self.client.call(self.r.contains(value)).await
    }

    /// `f(value)`, computed by the cluster without storing it.
    pub async fn apply(&self, f: RefFn) -> Result<Option<Vec<u8>>, Error> {
        self.client.call(self.r.apply(f)).await
    }
}

/// A counting semaphore. Permits taken with [`Semaphore::acquire`] belong to the session
/// and come back to the pool when it is lost; a semaphore created with
/// [`Semaphore::init_sessionless`] keeps permits taken with [`Semaphore::take`] until
/// somebody [releases](Semaphore::release) them.
pub struct Semaphore<'a> {
    client: &'a Concord,
    s: calls::Semaphore,
}

impl Semaphore<'_> {
    /// Creates the semaphore with `permits`; `false` if it existed (it is left as it was).
    pub async fn init(&self, permits: u64) -> Result<bool, Error> {
        self.client.call(self.s.init(permits)).await
    }

    /// Creates a semaphore whose permits belong to no session; `false` if it existed.
    pub async fn init_sessionless(&self, permits: u64) -> Result<bool, Error> {
        self.client.call(self.s.init_sessionless(permits)).await
    }

    /// Takes `permits` for the session, waiting up to `timeout`; the guard gives them
    /// back when dropped. For semaphores made with [`Semaphore::init`]: the guard trusts
    /// the cluster to take the permits back if the session is lost, which a sessionless
    /// semaphore does not do — use [`Semaphore::take`] and [`Semaphore::release`] there.
    pub async fn acquire(&self, permits: u64, timeout: Option<Duration>) -> Result<Permits, Error> {
        let ((), hold) = self.client.grant(self.s.acquire(permits, timeout)).await?;
        Ok(Permits { hold, permits })
    }

    /// Takes `permits` if they are free now; `None` if not.
    pub async fn try_acquire(&self, permits: u64) -> Result<Option<Permits>, Error> {
        tried(self.acquire(permits, Some(Duration::ZERO)).await)
    }

    /// Takes `permits` without a guard, waiting up to `timeout`: for a sessionless
    /// semaphore, whose permits outlive the session and are given back with
    /// [`Semaphore::release`], by this client or another.
    pub async fn take(&self, permits: u64, timeout: Option<Duration>) -> Result<(), Error> {
        self.client.call(self.s.acquire(permits, timeout)).await
    }

    /// Gives back `permits` taken with [`Semaphore::take`].
    pub async fn release(&self, permits: u64) -> Result<(), Error> {
        self.client.call(self.s.release(permits)).await
    }

    /// Takes every available permit; how many. They are the session's to give back.
    pub async fn drain(&self) -> Result<u64, Error> {
        self.client.call(self.s.drain()).await
    }

    /// Adds `permits` to the pool.
    pub async fn increase(&self, permits: u64) -> Result<(), Error> {
        self.client.call(self.s.increase(permits)).await
    }

    /// Removes `permits` from the pool (availability may go negative).
    pub async fn reduce(&self, permits: u64) -> Result<(), Error> {
        self.client.call(self.s.reduce(permits)).await
    }

    /// Permits available now (0 if the semaphore was never created).
    pub async fn available(&self) -> Result<i64, Error> {
        self.client.call(self.s.available()).await
    }

    /// Permits the client's session holds.
    pub async fn held(&self) -> Result<u64, Error> {
        self.client.call(self.s.held()).await
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
    l: calls::RwLock,
}

impl RwLock<'_> {
    async fn lock(&self, mode: Mode, timeout: Option<Duration>) -> Result<RwGuard, Error> {
        let (fence, hold) = self.client.grant(self.l.lock(mode, timeout)).await?;
        Ok(RwGuard { hold, fence, mode })
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
        self.client.call(self.l.readers()).await
    }

    /// Whether a writer holds it.
    pub async fn is_write_locked(&self) -> Result<bool, Error> {
        self.client.call(self.l.is_write_locked()).await
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
    l: calls::Latch,
}

impl Latch<'_> {
    /// Sets the count if it is zero; whether it did (`false`: still counting down).
    pub async fn try_set_count(&self, count: u64) -> Result<bool, Error> {
        self.client.call(self.l.try_set_count(count)).await
    }

    /// Counts down by one (exactly once, whatever the retries); the count left.
    pub async fn count_down(&self) -> Result<u64, Error> {
        self.client.call(self.l.count_down()).await
    }

    /// Waits up to `timeout` for the count to reach zero: `true` once it has, `false` if
    /// the time ran out first.
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool, Error> {
        Ok(tried(self.client.call(self.l.wait(timeout)).await)?.is_some())
    }

    /// The current count.
    pub async fn count(&self) -> Result<u64, Error> {
        self.client.call(self.l.count()).await
    }
}

/// A cyclic barrier: each generation trips when its parties have all arrived.
pub struct Barrier<'a> {
    client: &'a Concord,
    b: calls::Barrier,
}

impl Barrier<'_> {
    /// Arrives and waits up to `timeout` for the others. A timeout breaks the generation:
    /// every party waiting in it fails with [`MachineError::Timeout`] too.
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<Tripped, Error> {
        self.client.call(self.b.wait(timeout)).await
    }
}

/// The key-value store: values under string keys, each write tagged with the revision
/// that made it (its ETag), conditional writes on tags, TTLs, and watches.
pub struct Kv<'a> {
    client: &'a Concord,
}

impl Kv<'_> {
    /// The entry under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        self.client.call(calls::Kv.get(key)).await
    }

    /// The entry under `key`, unless it still has tag `etag` (HTTP's `If-None-Match`).
    pub async fn get_if_none_match(&self, key: &str, etag: Option<Etag>) -> Result<Fresh, Error> {
        self.client.call(calls::Kv.get_if_none_match(key, etag)).await
    }

    /// The entry under `key` without its value.
    pub async fn head(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        self.client.call(calls::Kv.head(key)).await
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
        self.client.call(calls::Kv.put(key, value, mode, ttl)).await
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
        self.client.call(calls::Kv.delete(key, if_match)).await
    }

    /// Copies `from`'s value to `to`; `to`'s new tag. With `if_absent`, fails if `to` exists.
    pub async fn copy(&self, from: &str, to: &str, if_absent: bool) -> Result<Etag, Error> {
        self.client.call(calls::Kv.copy(from, to, if_absent)).await
    }

    /// Moves `from` to `to` (with its TTL); `to`'s new tag.
    pub async fn rename(&self, from: &str, to: &str, if_absent: bool) -> Result<Etag, Error> {
        self.client.call(calls::Kv.rename(from, to, if_absent)).await
    }

    /// One page of the entries under `prefix`, in key order, after key `after`: the
    /// entries, and whether more follow.
    pub async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        keys_only: bool,
    ) -> Result<(Vec<KvEntry>, bool), Error> {
        let page = self.client.call(calls::Kv.list_page(prefix, after.map(str::to_owned), keys_only)).await?;
        Ok((page.entries, page.more))
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
    pub fn watch(&self, filter: WatchFilter, from: Option<u64>) -> mpsc::Receiver<Result<WatchEvent, Error>> {
        self.client.watch(filter, from)
    }
}

/// A signal subscription; dropping it unsubscribes in the background.
pub struct Subscription {
    hold: Hold,
    id: u64,
    deliveries: mpsc::Receiver<SignalDelivery>,
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
