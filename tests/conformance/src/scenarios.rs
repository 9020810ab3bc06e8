//! The scenarios and their expected results.

use crate::{call, Failure, Host};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use concord_core::client::calls::{
    self, AdminCall, Barrier, Counter, Election, Kv, Latch, Lock, Reference, RwLock, Semaphore,
};
use concord_core::machine::barrier::BarrierError;
use concord_core::machine::election::ElectionChange;
use concord_core::machine::kv::{KvError, PutMode, WatchFilter};
use concord_core::machine::rwlock::Mode;
use concord_core::machine::semaphore::SemaphoreError;
use concord_core::machine::Limit;
use concord_core::machine::{Error, Fence};
use concord_core::raft::Status;
use core::time::Duration;
use futures_util::future::{join, join3};

/// Session TTL of the scenarios' clients, milliseconds.
const TTL_MS: u64 = 10_000;
/// Session TTL of a client a scenario crashes, milliseconds: the wait for its expiry.
const CRASH_TTL_MS: u64 = 1_500;
/// The longest any blocking call of a scenario waits before it fails rather than hangs.
const WAIT: Option<Duration> = Some(Duration::from_secs(15));
/// How long a scenario waits for a stream's next item.
const STREAM_WAIT_MS: u64 = 5_000;
/// Polls of a condition a scenario waits for, and the pause between them.
const POLLS_MAX: u32 = 250;
const POLL_PAUSE_MS: u64 = 20;

/// Fails the scenario with a message unless `cond` holds.
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Failure::Host(format!($($msg)+)));
        }
    };
}

/// A client-visible scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Scenario {
    /// Fences of one lock rise strictly, across a leadership transfer too.
    FencesAcrossLeaderChange,
    /// A session's second lock is reentrant (same fence), up to `lock_reentrancy_max`
    /// holds; the next is refused with the limit.
    ReentrancyAndLimit,
    /// Waiters get a lock in the order they queued, each with a higher fence.
    FifoHandOff,
    /// Semaphore permits: created once, never more held than exist, a try that cannot
    /// be granted times out, releasing more than held is refused.
    SemaphorePermits,
    /// Readers share, a writer excludes, a queued writer blocks new readers.
    ReadWriteExclusion,
    /// Increments during a leadership transfer (retried by the client) each apply once.
    CounterOnceAcrossRetries,
    /// Compare-and-set on counters and references: applied only on a match.
    CasOutcomes,
    /// A latch releases its waiter at zero, refuses a second count while counting, and
    /// can be set again after.
    LatchRelease,
    /// A barrier trips when all parties arrive, each with its own arrival; a wrong party
    /// count is refused.
    BarrierRelease,
    /// Campaign, proclaim, resign and a second candidate, as an observer sees them.
    ElectionAndObserve,
    /// Watch events arrive in log order, and a watch resumed from a revision replays the
    /// same events.
    WatchOrderAndResume,
    /// A queue group shares signals round-robin; a plain subscriber gets them all.
    QueueGroupRoundRobin,
    /// KV writes: create-only, if-match, if-none-match reads and conditional deletes.
    KvConditional,
    /// A crashed client's session expires and what it held goes to the next waiter.
    SessionLossReleases,
}

impl Scenario {
    /// Every scenario, in the order [`crate::run_all`] runs them.
    pub const ALL: &'static [Self] = &[
        Self::FencesAcrossLeaderChange,
        Self::ReentrancyAndLimit,
        Self::FifoHandOff,
        Self::SemaphorePermits,
        Self::ReadWriteExclusion,
        Self::CounterOnceAcrossRetries,
        Self::CasOutcomes,
        Self::LatchRelease,
        Self::BarrierRelease,
        Self::ElectionAndObserve,
        Self::WatchOrderAndResume,
        Self::QueueGroupRoundRobin,
        Self::KvConditional,
        Self::SessionLossReleases,
    ];

    /// Its name, in snake case.
    pub fn name(self) -> &'static str {
        match self {
            Self::FencesAcrossLeaderChange => "fences_across_leader_change",
            Self::ReentrancyAndLimit => "reentrancy_and_limit",
            Self::FifoHandOff => "fifo_hand_off",
            Self::SemaphorePermits => "semaphore_permits",
            Self::ReadWriteExclusion => "read_write_exclusion",
            Self::CounterOnceAcrossRetries => "counter_once_across_retries",
            Self::CasOutcomes => "cas_outcomes",
            Self::LatchRelease => "latch_release",
            Self::BarrierRelease => "barrier_release",
            Self::ElectionAndObserve => "election_and_observe",
            Self::WatchOrderAndResume => "watch_order_and_resume",
            Self::QueueGroupRoundRobin => "queue_group_round_robin",
            Self::KvConditional => "kv_conditional",
            Self::SessionLossReleases => "session_loss_releases",
        }
    }

    /// The scenario called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.name() == name)
    }
}

pub(crate) async fn run<H: Host>(h: &H, s: Scenario) -> Result<(), Failure> {
    let ns = h.namespace();
    let name = |what: &str| format!("{ns}/{}/{what}", s.name());
    match s {
        Scenario::FencesAcrossLeaderChange => fences_across_leader_change(h, name("lock")).await,
        Scenario::ReentrancyAndLimit => reentrancy_and_limit(h, name("lock")).await,
        Scenario::FifoHandOff => fifo_hand_off(h, name("lock")).await,
        Scenario::SemaphorePermits => semaphore_permits(h, name("sem")).await,
        Scenario::ReadWriteExclusion => read_write_exclusion(h, name("rw")).await,
        Scenario::CounterOnceAcrossRetries => counter_once_across_retries(h, name("counter")).await,
        Scenario::CasOutcomes => cas_outcomes(h, name("counter"), name("ref")).await,
        Scenario::LatchRelease => latch_release(h, name("latch")).await,
        Scenario::BarrierRelease => barrier_release(h, name("barrier")).await,
        Scenario::ElectionAndObserve => election_and_observe(h, name("election")).await,
        Scenario::WatchOrderAndResume => watch_order_and_resume(h, name("")).await,
        Scenario::QueueGroupRoundRobin => queue_group_round_robin(h, name("subject")).await,
        Scenario::KvConditional => kv_conditional(h, name("key")).await,
        Scenario::SessionLossReleases => session_loss_releases(h, name("lock"), name("sem")).await,
    }
}

/// The machine error `result` must have failed with.
fn machine_err<T: core::fmt::Debug>(result: Result<T, Failure>, what: &str) -> Result<Error, Failure> {
    match result {
        Err(Failure::Machine(e)) => Ok(e),
        Err(other) => Err(other),
        Ok(v) => Err(Failure::Host(format!("{what}: expected a machine error, got Ok({v:?})"))),
    }
}

async fn admin<H: Host, T>(h: &H, c: &H::Client, call: AdminCall<T>) -> Result<T, Failure> {
    let (body, decode) = call.into_parts();
    let answer = h.admin(c, body).await?;
    decode.decode(answer).map_err(|e| Failure::Host(format!("{e}")))
}

/// Hands leadership to another voter; the new leader's id. A single-node cluster has no
/// other leader to hand to.
async fn change_leader<H: Host>(h: &H, c: &H::Client) -> Result<(), Failure> {
    let status: Status = admin(h, c, calls::status()).await?;
    let leader = status.leader.ok_or_else(|| Failure::Host("status names no leader".into()))?;
    let Some(&to) = status.membership.voters.iter().find(|v| **v != leader) else {
        return Err(Failure::Unsupported("a single-voter cluster has no other node to lead"));
    };
    admin(h, c, calls::transfer_leadership(to)).await?;
    for _ in 0..POLLS_MAX {
        let now: Status = admin(h, c, calls::status()).await?;
        if now.leader == Some(to) {
            return Ok(());
        }
        h.sleep(POLL_PAUSE_MS).await;
    }
    Err(Failure::Host(format!("leadership did not move from {leader:?} to {to:?}")))
}

/// Waits until lock `name` has `n` waiters.
async fn until_waiters<H: Host>(h: &H, c: &H::Client, name: &str, n: usize) -> Result<(), Failure> {
    let mut seen = 0;
    for _ in 0..POLLS_MAX {
        let locks = call(h, c, calls::list_locks(name)).await?;
        seen = locks.iter().find(|l| l.name == name).map_or(0, |l| l.waiters.len());
        if seen == n {
            return Ok(());
        }
        h.sleep(POLL_PAUSE_MS).await;
    }
    Err(Failure::Host(format!("lock {name}: expected {n} waiters, saw {seen}")))
}

async fn fences_across_leader_change<H: Host>(h: &H, name: String) -> Result<(), Failure> {
    let a = h.connect(TTL_MS).await?;
    let lock = Lock::new(name);
    let mut last = Fence(0);
    for round in 0..4 {
        if round == 2 {
            change_leader(h, &a).await?;
        }
        let f = call(h, &a, lock.lock(WAIT)).await?;
        check!(f > last, "round {round}: fence {f:?} is not above the previous {last:?}");
        last = f;
        let left = call(h, &a, lock.release(f)).await?;
        check!(left == 0, "round {round}: {left} holds left after the only release");
    }
    h.close(a).await;
    Ok(())
}

async fn reentrancy_and_limit<H: Host>(h: &H, name: String) -> Result<(), Failure> {
    let a = h.connect(TTL_MS).await?;
    let b = h.connect(TTL_MS).await?;
    let lock = Lock::new(name);
    let first = call(h, &a, lock.lock(WAIT)).await?;
    let mut holds = 1u64;
    let limit = loop {
        match call(h, &a, lock.lock(WAIT)).await {
            Ok(f) => {
                check!(f == first, "reentrant hold {holds} got fence {f:?}, not {first:?}");
                holds += 1;
                check!(holds <= 10_000, "no reentrancy limit after {holds} holds");
            }
            Err(Failure::Machine(Error::Limit { limit: Limit::LockReentrancy, max })) => break max,
            Err(e) => return Err(e),
        }
    };
    check!(holds == limit, "refused after {holds} holds, but the limit is {limit}");
    check!(call(h, &a, lock.lock_count()).await? == holds, "lock_count is not {holds}");
    let other = machine_err(call(h, &b, lock.try_lock()).await, "another session's try_lock")?;
    check!(other == Error::Timeout, "another session's try_lock failed with {other:?}, not Timeout");
    for left in (0..holds).rev() {
        let now = call(h, &a, lock.release(first)).await?;
        check!(now == left, "a release left {now} holds, expected {left}");
    }
    check!(!call(h, &a, lock.is_locked()).await?, "still locked after every release");
    let fb = call(h, &b, lock.try_lock()).await?;
    check!(fb > first, "the next holder's fence {fb:?} is not above {first:?}");
    h.close(a).await;
    h.close(b).await;
    Ok(())
}

async fn fifo_hand_off<H: Host>(h: &H, name: String) -> Result<(), Failure> {
    let (a, b, c) = (h.connect(TTL_MS).await?, h.connect(TTL_MS).await?, h.connect(TTL_MS).await?);
    let lock = Lock::new(name.clone());
    let fa = call(h, &a, lock.lock(WAIT)).await?;
    let first = async {
        let fb = call(h, &b, lock.lock(WAIT)).await?;
        // The second waiter queued before the first holder let go: it still waits.
        until_waiters(h, &b, &name, 1).await?;
        call(h, &b, lock.release(fb)).await?;
        Ok::<_, Failure>(fb)
    };
    let second = async {
        until_waiters(h, &c, &name, 1).await?;
        let fc = call(h, &c, lock.lock(WAIT)).await?;
        call(h, &c, lock.release(fc)).await?;
        Ok::<_, Failure>(fc)
    };
    let holder = async {
        until_waiters(h, &a, &name, 2).await?;
        call(h, &a, lock.release(fa)).await
    };
    let (fb, fc, released) = join3(first, second, holder).await;
    let (fb, fc) = (fb?, fc?);
    released?;
    check!(fa < fb && fb < fc, "fences out of queue order: holder {fa:?}, first {fb:?}, second {fc:?}");
    for x in [a, b, c] {
        h.close(x).await;
    }
    Ok(())
}

async fn semaphore_permits<H: Host>(h: &H, name: String) -> Result<(), Failure> {
    let (a, b) = (h.connect(TTL_MS).await?, h.connect(TTL_MS).await?);
    let sem = Semaphore::new(name);
    let e = machine_err(call(h, &a, sem.acquire(1, Some(Duration::ZERO))).await, "acquire before init")?;
    check!(e == Error::Semaphore(SemaphoreError::NotInitialized), "acquire before init: {e:?}");
    check!(call(h, &a, sem.init(3)).await?, "the first init did not create it");
    check!(!call(h, &b, sem.init(5)).await?, "a second init created it again");
    call(h, &a, sem.acquire(2, WAIT)).await?;
    check!(call(h, &b, sem.available()).await? == 1, "after taking 2 of 3, available is not 1");
    let e = machine_err(call(h, &b, sem.acquire(2, Some(Duration::ZERO))).await, "over-acquire")?;
    check!(e == Error::Timeout, "taking 2 with 1 available failed with {e:?}, not Timeout");
    call(h, &b, sem.acquire(1, WAIT)).await?;
    check!(call(h, &a, sem.available()).await? == 0, "every permit taken, yet some available");
    check!(call(h, &a, sem.held()).await? == 2, "a does not hold 2");
    check!(call(h, &b, sem.held()).await? == 1, "b does not hold 1");
    // A blocked acquire is granted when permits come back.
    let (got, gave) = join(call(h, &b, sem.acquire(2, WAIT)), async {
        h.sleep(100).await;
        call(h, &a, sem.release(2)).await
    })
    .await;
    gave?;
    got?;
    let e = machine_err(call(h, &a, sem.release(1)).await, "releasing unheld permits")?;
    check!(e == Error::Semaphore(SemaphoreError::NotHeld { held: 0 }), "releasing unheld: {e:?}");
    call(h, &b, sem.release(3)).await?;
    check!(call(h, &a, sem.available()).await? == 3, "not all 3 permits back");
    h.close(a).await;
    h.close(b).await;
    Ok(())
}

async fn read_write_exclusion<H: Host>(h: &H, name: String) -> Result<(), Failure> {
    let mut c = Vec::new();
    for _ in 0..4 {
        c.push(h.connect(TTL_MS).await?);
    }
    let rw = RwLock::new(name);
    let short = Some(Duration::from_millis(200));
    let ra = call(h, &c[0], rw.lock(Mode::Read, WAIT)).await?;
    let rb = call(h, &c[1], rw.lock(Mode::Read, WAIT)).await?;
    check!(call(h, &c[0], rw.readers()).await? == 2, "two readers do not share");
    let e = machine_err(call(h, &c[2], rw.lock(Mode::Write, short)).await, "write beside readers")?;
    check!(e == Error::Timeout, "a writer beside readers failed with {e:?}, not Timeout");
    let writer = call(h, &c[2], rw.lock(Mode::Write, WAIT));
    let others = async {
        h.sleep(300).await;
        // A queued writer keeps new readers out.
        let late = machine_err(call(h, &c[3], rw.lock(Mode::Read, short)).await, "read behind a writer")?;
        check!(late == Error::Timeout, "a reader behind a queued writer failed with {late:?}");
        call(h, &c[0], rw.unlock()).await?;
        call(h, &c[1], rw.unlock()).await?;
        Ok(())
    };
    let (w, others) = join(writer, others).await;
    others?;
    let w = w?;
    check!(w > ra && w > rb, "the writer's fence {w:?} is not above the readers' {ra:?}, {rb:?}");
    check!(call(h, &c[3], rw.is_write_locked()).await?, "the writer does not show");
    let e = machine_err(call(h, &c[3], rw.lock(Mode::Read, short)).await, "read beside a writer")?;
    check!(e == Error::Timeout, "a reader beside a writer failed with {e:?}, not Timeout");
    check!(call(h, &c[2], rw.unlock()).await? == 0, "the writer had more than one hold");
    for x in c {
        h.close(x).await;
    }
    Ok(())
}

async fn counter_once_across_retries<H: Host>(h: &H, name: String) -> Result<(), Failure> {
    const INCREMENTS: i64 = 40;
    let (a, admin_client) = (h.connect(TTL_MS).await?, h.connect(TTL_MS).await?);
    let counter = Counter::new(name);
    let increments = async {
        let mut seen = Vec::new();
        for _ in 0..INCREMENTS {
            seen.push(call(h, &a, counter.incr()).await?);
        }
        Ok::<_, Failure>(seen)
    };
    let transfer = async {
        h.sleep(20).await;
        change_leader(h, &admin_client).await
    };
    let (seen, moved) = join(increments, transfer).await;
    let seen = seen?;
    match moved {
        Ok(()) | Err(Failure::Unsupported(_)) => {}
        Err(e) => return Err(e),
    }
    let expected: Vec<i64> = (1..=INCREMENTS).collect();
    check!(seen == expected, "increments answered {seen:?}, expected 1..={INCREMENTS} in order");
    check!(call(h, &a, counter.get()).await? == INCREMENTS, "the counter is not {INCREMENTS}");
    h.close(a).await;
    h.close(admin_client).await;
    Ok(())
}

async fn cas_outcomes<H: Host>(h: &H, counter: String, reference: String) -> Result<(), Failure> {
    let a = h.connect(TTL_MS).await?;
    let n = Counter::new(counter);
    call(h, &a, n.set(5)).await?;
    check!(!call(h, &a, n.compare_and_set(4, 9)).await?, "CAS with a wrong expectation applied");
    check!(call(h, &a, n.get()).await? == 5, "a refused CAS changed the counter");
    check!(call(h, &a, n.compare_and_set(5, 9)).await?, "CAS with the right expectation refused");
    check!(call(h, &a, n.get()).await? == 9, "an applied CAS did not set the value");
    let r = Reference::new(reference);
    check!(call(h, &a, r.is_null()).await?, "a new reference is not null");
    check!(call(h, &a, r.compare_and_set(None, Some(b"a".to_vec()))).await?, "CAS from null refused");
    check!(!call(h, &a, r.compare_and_set(None, Some(b"b".to_vec()))).await?, "CAS from null applied twice");
    check!(call(h, &a, r.get()).await? == Some(b"a".to_vec()), "the reference is not \"a\"");
    check!(call(h, &a, r.compare_and_set(Some(b"a".to_vec()), None)).await?, "CAS to null refused");
    check!(call(h, &a, r.is_null()).await?, "CAS to null left a value");
    h.close(a).await;
    Ok(())
}

async fn latch_release<H: Host>(h: &H, name: String) -> Result<(), Failure> {
    let (a, b) = (h.connect(TTL_MS).await?, h.connect(TTL_MS).await?);
    let latch = Latch::new(name);
    check!(call(h, &a, latch.try_set_count(2)).await?, "the first try_set_count refused");
    check!(!call(h, &b, latch.try_set_count(3)).await?, "try_set_count applied while counting");
    check!(call(h, &b, latch.count()).await? == 2, "the count is not 2");
    let e = machine_err(call(h, &b, latch.wait(Some(Duration::from_millis(100)))).await, "early await")?;
    check!(e == Error::Timeout, "awaiting an open latch failed with {e:?}, not Timeout");
    let (waited, counted) = join(call(h, &b, latch.wait(WAIT)), async {
        h.sleep(100).await;
        let one = call(h, &a, latch.count_down()).await?;
        let zero = call(h, &a, latch.count_down()).await?;
        Ok::<_, Failure>((one, zero))
    })
    .await;
    check!(counted? == (1, 0), "counting down did not go 1, 0");
    waited?;
    check!(call(h, &b, latch.try_set_count(1)).await?, "a released latch cannot be set again");
    h.close(a).await;
    h.close(b).await;
    Ok(())
}

async fn barrier_release<H: Host>(h: &H, name: String) -> Result<(), Failure> {
    let (a, b, c) = (h.connect(TTL_MS).await?, h.connect(TTL_MS).await?, h.connect(TTL_MS).await?);
    let barrier = Barrier::new(name.clone(), 3);
    let (x, y, z) = join3(
        call(h, &a, barrier.wait(WAIT)),
        call(h, &b, barrier.wait(WAIT)),
        call(h, &c, barrier.wait(WAIT)),
    )
    .await;
    let (x, y, z) = (x?, y?, z?);
    check!(x.generation == y.generation && y.generation == z.generation, "parties saw different generations");
    let mut arrivals = vec![x.arrival, y.arrival, z.arrival];
    arrivals.sort_unstable();
    check!(arrivals == [0, 1, 2], "arrivals {arrivals:?} are not 0, 1, 2");
    // A party that counts differently is refused while a generation is under way.
    let (waiting, wrong) = join(call(h, &a, barrier.wait(Some(Duration::from_millis(600)))), async {
        h.sleep(150).await;
        call(h, &b, Barrier::new(name, 2).wait(WAIT)).await
    })
    .await;
    let e = machine_err(wrong, "a wrong party count")?;
    check!(e == Error::Barrier(BarrierError::PartiesMismatch { expected: 3 }), "wrong count: {e:?}");
    let e = machine_err(waiting, "a lone party")?;
    check!(e == Error::Timeout, "a lone party failed with {e:?}, not Timeout");
    for x in [a, b, c] {
        h.close(x).await;
    }
    Ok(())
}

async fn election_and_observe<H: Host>(h: &H, name: String) -> Result<(), Failure> {
    let (a, b, o) = (h.connect(TTL_MS).await?, h.connect(TTL_MS).await?, h.connect(TTL_MS).await?);
    let election = Election::new(name.clone());
    let mut observer = h.observe(&o, name).await?;
    let mut next = async || {
        h.next_election(&mut observer, STREAM_WAIT_MS)
            .await?
            .ok_or_else(|| Failure::Host("the observer saw nothing within its wait".into()))
    };
    let current = next().await?;
    check!(current.change == ElectionChange::Current && current.leader.is_none(), "first event {current:?}");
    let fa = call(h, &a, election.campaign(b"a".to_vec(), WAIT)).await?;
    let elected = next().await?;
    let leader = elected.leader.clone();
    check!(
        elected.change == ElectionChange::Elected
            && leader.as_ref().is_some_and(|l| l.fence == fa && l.value == b"a"),
        "after a's campaign the observer saw {elected:?}"
    );
    let e = machine_err(
        call(h, &b, election.campaign(b"b".to_vec(), Some(Duration::from_millis(200)))).await,
        "b",
    )?;
    check!(e == Error::Timeout, "a second candidate failed with {e:?}, not Timeout");
    let now = call(h, &b, election.leader()).await?;
    check!(now.is_some_and(|l| l.value == b"a" && l.fence == fa), "leader() does not name a");
    call(h, &a, election.proclaim(b"a2".to_vec())).await?;
    let proclaimed = next().await?;
    check!(
        proclaimed.change == ElectionChange::Proclaimed
            && proclaimed.leader.as_ref().is_some_and(|l| l.value == b"a2"),
        "after proclaim the observer saw {proclaimed:?}"
    );
    call(h, &a, election.resign()).await?;
    let resigned = next().await?;
    check!(
        resigned.change == ElectionChange::Resigned && resigned.leader.is_none(),
        "after resign: {resigned:?}"
    );
    let fb = call(h, &b, election.campaign(b"b".to_vec(), WAIT)).await?;
    check!(fb > fa, "the second leader's fence {fb:?} is not above {fa:?}");
    let elected = next().await?;
    check!(
        elected.change == ElectionChange::Elected
            && elected.leader.as_ref().is_some_and(|l| l.value == b"b" && l.fence == fb),
        "after b's campaign the observer saw {elected:?}"
    );
    for x in [a, b, o] {
        h.close(x).await;
    }
    Ok(())
}

async fn watch_order_and_resume<H: Host>(h: &H, prefix: String) -> Result<(), Failure> {
    let a = h.connect(TTL_MS).await?;
    let filter = WatchFilter::Prefix(prefix.clone());
    // Live changes continue after the store's revision now.
    let start = call(h, &a, Kv.history(filter.clone(), u64::MAX)).await?.revision;
    let mut live = h.watch(&a, filter.clone(), Some(start + 1)).await?;
    let writes = [("k1", "v1"), ("k2", "v2"), ("k1", "v3")];
    let mut tags = Vec::new();
    for (k, v) in writes {
        tags.push(
            call(h, &a, Kv.put(format!("{prefix}{k}"), v.as_bytes().to_vec(), PutMode::Always, None)).await?,
        );
    }
    let mut events = Vec::new();
    for _ in 0..writes.len() {
        match h.next_watch(&mut live, STREAM_WAIT_MS).await? {
            Some(e) => events.push(e),
            None => return Err(Failure::Host(format!("the watch delivered {} of 3 events", events.len()))),
        }
    }
    for (i, ((k, v), e)) in writes.iter().zip(&events).enumerate() {
        check!(
            e.key == format!("{prefix}{k}")
                && e.value.as_deref() == Some(v.as_bytes())
                && e.revision == tags[i].0,
            "event {i} is {e:?}, expected {k}={v} at revision {}",
            tags[i].0
        );
    }
    check!(events.windows(2).all(|w| w[0].revision < w[1].revision), "events out of log order");
    let mut resumed = h.watch(&a, filter, Some(events[0].revision)).await?;
    for (i, expected) in events.iter().enumerate() {
        let got = h.next_watch(&mut resumed, STREAM_WAIT_MS).await?;
        check!(got.as_ref() == Some(expected), "resumed event {i} is {got:?}, expected {expected:?}");
    }
    h.close(a).await;
    Ok(())
}

async fn queue_group_round_robin<H: Host>(h: &H, subject: String) -> Result<(), Failure> {
    const SIGNALS: usize = 6;
    let mut c = Vec::new();
    for _ in 0..4 {
        c.push(h.connect(TTL_MS).await?);
    }
    let group = Some(String::from("workers"));
    let mut s1 = h.subscribe(&c[0], subject.clone(), group.clone()).await?;
    let mut s2 = h.subscribe(&c[1], subject.clone(), group).await?;
    let mut all = h.subscribe(&c[2], subject.clone(), None).await?;
    for i in 0..SIGNALS {
        let got = call(h, &c[3], calls::publish(subject.clone(), vec![i as u8])).await?;
        check!(got == 2, "signal {i} reached {got} subscriptions, expected 2 (one group member, one plain)");
    }
    let mut plain = Vec::new();
    for _ in 0..SIGNALS {
        match h.next_signal(&mut all, STREAM_WAIT_MS).await? {
            Some(d) => plain.push(d.payload[0]),
            None => break,
        }
    }
    let expected: Vec<u8> = (0..SIGNALS as u8).collect();
    check!(plain == expected, "the plain subscriber got {plain:?}, expected {expected:?}");
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for (sub, got) in [(&mut s1, &mut one), (&mut s2, &mut two)] {
        for _ in 0..SIGNALS {
            match h.next_signal(sub, 500).await? {
                Some(d) => got.push(d.payload[0]),
                None => break,
            }
        }
    }
    check!(one.len() == SIGNALS / 2 && two.len() == SIGNALS / 2, "group members got {one:?} and {two:?}");
    let mut merged = [one.as_slice(), two.as_slice()].concat();
    merged.sort_unstable();
    check!(merged == expected, "the group got {merged:?} between its members, expected each once");
    check!(
        one.windows(2).all(|w| w[1] == w[0] + 2) && two.windows(2).all(|w| w[1] == w[0] + 2),
        "members did not take turns: {one:?} and {two:?}"
    );
    for x in c {
        h.close(x).await;
    }
    Ok(())
}

async fn kv_conditional<H: Host>(h: &H, key: String) -> Result<(), Failure> {
    let a = h.connect(TTL_MS).await?;
    let put = |v: &str, mode| Kv.put(key.clone(), v.as_bytes().to_vec(), mode, None);
    let t1 = call(h, &a, put("one", PutMode::IfAbsent)).await?;
    let e = machine_err(call(h, &a, put("again", PutMode::IfAbsent)).await, "create twice")?;
    check!(e == Error::Kv(KvError::Exists { etag: t1 }), "a second create failed with {e:?}");
    let stale = concord_core::machine::Etag(t1.0 + 1_000_000);
    let e = machine_err(call(h, &a, put("x", PutMode::IfMatch(stale))).await, "if-match a wrong tag")?;
    check!(e == Error::Kv(KvError::EtagMismatch { current: Some(t1) }), "a wrong if-match failed with {e:?}");
    let t2 = call(h, &a, put("two", PutMode::IfMatch(t1))).await?;
    check!(t2 > t1, "the new tag {t2:?} is not above {t1:?}");
    let entry = call(h, &a, Kv.get(key.clone())).await?;
    check!(
        entry.as_ref().is_some_and(|e| e.value.as_deref() == Some(b"two") && e.etag == t2 && e.version == 2),
        "get returned {entry:?}"
    );
    let fresh = call(h, &a, Kv.get_if_none_match(key.clone(), Some(t2))).await?;
    check!(fresh == calls::Fresh::NotModified(t2), "if-none-match with the current tag gave {fresh:?}");
    let fresh = call(h, &a, Kv.get_if_none_match(key.clone(), Some(t1))).await?;
    check!(
        matches!(&fresh, calls::Fresh::Changed(Some(e)) if e.etag == t2),
        "if-none-match old tag: {fresh:?}"
    );
    let e = machine_err(call(h, &a, Kv.delete(key.clone(), Some(t1))).await, "delete with an old tag")?;
    check!(e == Error::Kv(KvError::EtagMismatch { current: Some(t2) }), "delete with an old tag: {e:?}");
    check!(call(h, &a, Kv.delete(key.clone(), Some(t2))).await?, "delete with the current tag found nothing");
    check!(call(h, &a, Kv.get(key.clone())).await?.is_none(), "the key is still there");
    check!(!call(h, &a, Kv.delete(key, None)).await?, "a second delete found the key");
    h.close(a).await;
    Ok(())
}

async fn session_loss_releases<H: Host>(h: &H, lock_name: String, sem_name: String) -> Result<(), Failure> {
    let doomed = h.connect(CRASH_TTL_MS).await?;
    let b = h.connect(TTL_MS).await?;
    let (lock, sem) = (Lock::new(lock_name), Semaphore::new(sem_name));
    call(h, &b, sem.init(1)).await?;
    let fa = call(h, &doomed, lock.lock(WAIT)).await?;
    call(h, &doomed, sem.acquire(1, WAIT)).await?;
    let e = machine_err(call(h, &b, lock.try_lock()).await, "try_lock of a held lock")?;
    check!(e == Error::Timeout, "try_lock of a held lock failed with {e:?}, not Timeout");
    h.crash(doomed).await?;
    let (fb, permit) = join(call(h, &b, lock.lock(WAIT)), call(h, &b, sem.acquire(1, WAIT))).await;
    let fb = fb?;
    permit?;
    check!(fb > fa, "the lock passed on with fence {fb:?}, not above the lost holder's {fa:?}");
    h.close(b).await;
    Ok(())
}
