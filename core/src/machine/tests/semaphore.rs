//! Semaphores: session-aware and sessionless permits, FIFO waiters with head-of-line
//! blocking, drain/increase/reduce, limits, session end, exactly-once retries, snapshots.

use super::{err, ok, T};
use crate::machine::semaphore::{SemaphoreError, SemaphoreOp, SemaphoreQuery};
use crate::machine::session::SessionOp;
use crate::machine::{Error, Event, Limit, Limits, Op, Outcome, QueryOp, Reply, SessionId};
use alloc::vec;

/// Long enough that no session expires unless a test means it to.
const TTL_MS: u64 = 60_000;

fn init(name: &str, permits: u64) -> Op {
    Op::Semaphore(SemaphoreOp::Init { name: name.into(), permits, sessionless: false })
}

fn init_sessionless(name: &str, permits: u64) -> Op {
    Op::Semaphore(SemaphoreOp::Init { name: name.into(), permits, sessionless: true })
}

fn acquire(name: &str, permits: u64) -> Op {
    Op::Semaphore(SemaphoreOp::Acquire { name: name.into(), permits, timeout_ms: None })
}

fn acquire_for(name: &str, permits: u64, timeout_ms: u64) -> Op {
    Op::Semaphore(SemaphoreOp::Acquire { name: name.into(), permits, timeout_ms: Some(timeout_ms) })
}

fn release(name: &str, permits: u64) -> Op {
    Op::Semaphore(SemaphoreOp::Release { name: name.into(), permits })
}

fn drain(name: &str) -> Op {
    Op::Semaphore(SemaphoreOp::Drain { name: name.into() })
}

fn increase(name: &str, permits: u64) -> Op {
    Op::Semaphore(SemaphoreOp::Increase { name: name.into(), permits })
}

fn reduce(name: &str, permits: u64) -> Op {
    Op::Semaphore(SemaphoreOp::Reduce { name: name.into(), permits })
}

fn sem_err(e: SemaphoreError) -> Error {
    Error::Semaphore(e)
}

fn granted(session: SessionId, seq: u64, index: u64) -> Event {
    Event::Completed { session, seq, result: Ok(Reply::Unit), index }
}

fn failed(session: SessionId, seq: u64, error: Error, index: u64) -> Event {
    Event::Completed { session, seq, result: Err(error), index }
}

/// `s` applies `op`, which must queue; returns the sequence it waits with.
fn wait(t: &mut T, s: SessionId, op: Op) -> u64 {
    assert_eq!(t.run(s, op), Outcome::Pending);
    t.last_seq(s)
}

fn available(t: &T, name: &str) -> i64 {
    match t.query(None, QueryOp::Semaphore(SemaphoreQuery::Available { name: name.into() })) {
        Ok(Reply::Long(n)) => n,
        other => panic!("expected Long, got {other:?}"),
    }
}

fn held(t: &T, s: SessionId, name: &str) -> u64 {
    match t.query(Some(s), QueryOp::Semaphore(SemaphoreQuery::Held { name: name.into() })) {
        Ok(Reply::Count(n)) => n,
        other => panic!("expected Count, got {other:?}"),
    }
}

#[test]
fn init_creates_a_semaphore_once() {
    let mut t = T::new();
    assert_eq!(available(&t, "s"), 0);
    assert_eq!(ok(t.anon(init("s", 3))), Reply::Bool(true));
    assert_eq!(available(&t, "s"), 3);
    // A second init leaves it as it was, whatever it asks for.
    assert_eq!(ok(t.anon(init("s", 7))), Reply::Bool(false));
    assert_eq!(ok(t.anon(init_sessionless("s", 1))), Reply::Bool(false));
    assert_eq!(available(&t, "s"), 3);
    let a = t.open(TTL_MS);
    ok(t.run(a, acquire("s", 1)));
    // Still session-aware: the permit is owned.
    assert_eq!(held(&t, a, "s"), 1);
    // Zero permits is a valid start.
    assert_eq!(ok(t.anon(init("z", 0))), Reply::Bool(true));
    assert_eq!(available(&t, "z"), 0);
}

#[test]
fn session_aware_permits_are_owned_by_the_acquiring_session() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    ok(t.anon(init("s", 5)));
    assert_eq!(ok(t.run(a, acquire("s", 2))), Reply::Unit);
    assert_eq!(available(&t, "s"), 3);
    assert_eq!(held(&t, a, "s"), 2);
    assert_eq!(held(&t, b, "s"), 0);
    assert_eq!(err(t.run(b, release("s", 1))), sem_err(SemaphoreError::NotHeld { held: 0 }));
    assert_eq!(err(t.run(a, release("s", 3))), sem_err(SemaphoreError::NotHeld { held: 2 }));
    assert_eq!(available(&t, "s"), 3);
    assert_eq!(ok(t.run(a, release("s", 1))), Reply::Unit);
    assert_eq!(held(&t, a, "s"), 1);
    assert_eq!(ok(t.run(a, release("s", 1))), Reply::Unit);
    assert_eq!(held(&t, a, "s"), 0);
    assert_eq!(available(&t, "s"), 5);
    assert_eq!(err(t.run(a, release("s", 1))), sem_err(SemaphoreError::NotHeld { held: 0 }));
    // Owning needs a session.
    assert_eq!(err(t.anon(acquire("s", 1))), Error::SessionRequired);
    assert_eq!(err(t.anon(release("s", 1))), Error::SessionRequired);
    assert_eq!(err(t.anon(drain("s"))), Error::SessionRequired);
    assert_eq!(
        t.query(None, QueryOp::Semaphore(SemaphoreQuery::Held { name: "s".into() })),
        Err(Error::SessionRequired)
    );
    assert_eq!(available(&t, "s"), 5);
}

#[test]
fn sessionless_permits_are_owned_by_nobody() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    ok(t.anon(init_sessionless("s", 2)));
    assert_eq!(ok(t.anon(acquire("s", 1))), Reply::Unit);
    assert_eq!(ok(t.run(a, acquire("s", 1))), Reply::Unit);
    assert_eq!(held(&t, a, "s"), 0);
    assert_eq!(available(&t, "s"), 0);
    // Anyone may release, whoever acquired.
    assert_eq!(ok(t.run(b, release("s", 1))), Reply::Unit);
    assert_eq!(ok(t.anon(release("s", 1))), Reply::Unit);
    assert_eq!(available(&t, "s"), 2);
    assert_eq!(ok(t.anon(drain("s"))), Reply::Count(2));
    // Waiting needs a session to answer later.
    assert_eq!(err(t.anon(acquire("s", 1))), Error::SessionRequired);
    assert_eq!(err(t.anon(acquire_for("s", 1, 0))), Error::Timeout);
    let b_seq = wait(&mut t, b, acquire("s", 1));
    let i = t.next_index();
    ok(t.anon(release("s", 1)));
    assert_eq!(t.events(), vec![granted(b, b_seq, i)]);
    // Nothing comes back when an acquirer's session ends.
    ok(t.run(b, Op::Session(SessionOp::Close)));
    assert_eq!(available(&t, "s"), 0);
}

#[test]
fn a_sessionless_release_beyond_the_permits_limit_is_refused() {
    let mut t = T::with_limits(Limits { semaphore_permits_max: 4, ..Limits::default() });
    ok(t.anon(init_sessionless("s", 4)));
    let too_many = Error::Limit { limit: Limit::SemaphorePermits, max: 4 };
    assert_eq!(err(t.anon(release("s", 1))), too_many);
    assert_eq!(err(t.anon(release("s", u64::MAX))), too_many);
    ok(t.anon(reduce("s", 2)));
    assert_eq!(err(t.anon(release("s", 3))), too_many);
    ok(t.anon(release("s", 2)));
    assert_eq!(available(&t, "s"), 4);
}

#[test]
fn zero_permits_and_unknown_semaphores_are_refused() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let not_init = sem_err(SemaphoreError::NotInitialized);
    assert_eq!(err(t.run(a, acquire("s", 1))), not_init);
    assert_eq!(err(t.run(a, release("s", 1))), not_init);
    assert_eq!(err(t.run(a, drain("s"))), not_init);
    assert_eq!(err(t.run(a, increase("s", 1))), not_init);
    assert_eq!(err(t.run(a, reduce("s", 1))), not_init);
    ok(t.anon(init("s", 1)));
    let zero = sem_err(SemaphoreError::ZeroPermits);
    assert_eq!(err(t.run(a, acquire("s", 0))), zero);
    assert_eq!(err(t.run(a, release("s", 0))), zero);
    assert_eq!(available(&t, "s"), 1);
    assert_eq!(held(&t, a, "s"), 0);
}

#[test]
fn waiters_are_served_in_order_and_the_head_blocks_smaller_requests() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    let d = t.open(TTL_MS);
    ok(t.anon(init("s", 3)));
    ok(t.run(a, acquire("s", 3)));
    let b_seq = wait(&mut t, b, acquire("s", 2));
    let c_seq = wait(&mut t, c, acquire("s", 1));
    ok(t.run(a, release("s", 1)));
    // One permit is free and c asks for one, but b is ahead of it.
    assert_eq!(t.events(), vec![]);
    assert_eq!(available(&t, "s"), 1);
    assert_eq!(err(t.run(d, acquire_for("s", 1, 0))), Error::Timeout);
    let i = t.next_index();
    ok(t.run(a, release("s", 1)));
    assert_eq!(t.events(), vec![granted(b, b_seq, i)]);
    assert_eq!(available(&t, "s"), 0);
    assert_eq!(held(&t, b, "s"), 2);
    let j = t.next_index();
    ok(t.run(a, release("s", 1)));
    assert_eq!(t.events(), vec![granted(c, c_seq, j)]);
    assert_eq!(held(&t, c, "s"), 1);
    assert_eq!(held(&t, a, "s"), 0);
}

#[test]
fn one_release_grants_every_waiter_it_covers() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    let d = t.open(TTL_MS);
    ok(t.anon(init("s", 4)));
    ok(t.run(a, acquire("s", 4)));
    let b_seq = wait(&mut t, b, acquire("s", 1));
    let c_seq = wait(&mut t, c, acquire("s", 2));
    let d_seq = wait(&mut t, d, acquire("s", 2));
    let i = t.next_index();
    ok(t.run(a, release("s", 4)));
    assert_eq!(t.events(), vec![granted(b, b_seq, i), granted(c, c_seq, i)]);
    assert_eq!(available(&t, "s"), 1);
    let j = t.next_index();
    ok(t.run(b, release("s", 1)));
    assert_eq!(t.events(), vec![granted(d, d_seq, j)]);
}

#[test]
fn a_timed_out_head_unblocks_the_waiters_behind_it() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    ok(t.anon(init("s", 2)));
    ok(t.run(a, acquire("s", 1)));
    let b_seq = wait(&mut t, b, acquire_for("s", 2, 100));
    let c_seq = wait(&mut t, c, acquire_for("s", 1, 500));
    t.advance_ms(99);
    t.tick();
    assert_eq!(t.events(), vec![]);
    t.advance_ms(1);
    let i = t.next_index();
    t.tick();
    let events = t.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.contains(&failed(b, b_seq, Error::Timeout, i)));
    assert!(events.contains(&granted(c, c_seq, i)));
    assert_eq!(held(&t, b, "s"), 0);
    assert_eq!(held(&t, c, "s"), 1);
    assert_eq!(available(&t, "s"), 0);
    // c's own timer went with its grant.
    t.advance_ms(500);
    t.tick();
    assert_eq!(t.events(), vec![]);
    assert_eq!(held(&t, c, "s"), 1);
}

#[test]
fn drain_takes_every_available_permit() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    ok(t.anon(init("s", 5)));
    ok(t.run(a, acquire("s", 2)));
    assert_eq!(ok(t.run(b, drain("s"))), Reply::Count(3));
    assert_eq!(held(&t, b, "s"), 3);
    assert_eq!(available(&t, "s"), 0);
    assert_eq!(ok(t.run(b, drain("s"))), Reply::Count(0));
    assert_eq!(held(&t, b, "s"), 3);
    // Drained permits are held like acquired ones.
    ok(t.run(b, release("s", 3)));
    assert_eq!(available(&t, "s"), 3);
    // Nothing to take below zero.
    ok(t.anon(reduce("s", 4)));
    assert_eq!(ok(t.run(b, drain("s"))), Reply::Count(0));
    assert_eq!(available(&t, "s"), -1);
    assert_eq!(held(&t, b, "s"), 0);
}

#[test]
fn increase_grants_waiters_and_reduce_may_go_negative() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    ok(t.anon(init("s", 2)));
    ok(t.run(a, acquire("s", 2)));
    assert_eq!(ok(t.anon(reduce("s", 1))), Reply::Unit);
    assert_eq!(available(&t, "s"), -1);
    // Released permits first pay back the reduction.
    ok(t.run(a, release("s", 1)));
    assert_eq!(available(&t, "s"), 0);
    let b_seq = wait(&mut t, b, acquire("s", 1));
    assert_eq!(ok(t.run(a, reduce("s", 1))), Reply::Unit);
    assert_eq!(ok(t.anon(increase("s", 1))), Reply::Unit);
    assert_eq!(t.events(), vec![]);
    assert_eq!(available(&t, "s"), 0);
    let i = t.next_index();
    ok(t.anon(increase("s", 1)));
    assert_eq!(t.events(), vec![granted(b, b_seq, i)]);
    assert_eq!(available(&t, "s"), 0);
    // Increase and reduce by zero change nothing.
    ok(t.anon(increase("s", 0)));
    ok(t.anon(reduce("s", 0)));
    assert_eq!(available(&t, "s"), 0);
}

#[test]
fn the_permits_limit_bounds_init_acquire_increase_and_reduce() {
    let mut t = T::with_limits(Limits { semaphore_permits_max: 10, ..Limits::default() });
    let a = t.open(TTL_MS);
    let too_many = Error::Limit { limit: Limit::SemaphorePermits, max: 10 };
    assert_eq!(err(t.anon(init("s", 11))), too_many);
    assert_eq!(available(&t, "s"), 0);
    ok(t.anon(init("s", 10)));
    assert_eq!(err(t.run(a, acquire("s", 11))), too_many);
    assert_eq!(err(t.anon(increase("s", 1))), too_many);
    assert_eq!(err(t.anon(increase("s", u64::MAX))), too_many);
    ok(t.anon(reduce("s", 10)));
    ok(t.anon(reduce("s", 10)));
    assert_eq!(available(&t, "s"), -10);
    assert_eq!(err(t.anon(reduce("s", 1))), too_many);
    assert_eq!(err(t.anon(reduce("s", u64::MAX))), too_many);
    ok(t.anon(increase("s", 10)));
    ok(t.anon(increase("s", 10)));
    assert_eq!(available(&t, "s"), 10);
}

#[test]
fn held_permits_count_toward_the_permits_limit() {
    let mut t = T::with_limits(Limits { semaphore_permits_max: 10, ..Limits::default() });
    let a = t.open(TTL_MS);
    ok(t.anon(init("s", 10)));
    ok(t.run(a, acquire("s", 4)));
    // Six available and four held: the semaphore already has all ten it may have.
    assert_eq!(err(t.anon(increase("s", 1))), Error::Limit { limit: Limit::SemaphorePermits, max: 10 });
    ok(t.run(a, release("s", 4)));
    assert_eq!(available(&t, "s"), 10);
    ok(t.run(a, drain("s")));
    assert_eq!(err(t.anon(increase("s", 1))), Error::Limit { limit: Limit::SemaphorePermits, max: 10 });
    ok(t.anon(reduce("s", 3)));
    ok(t.anon(increase("s", 3)));
    ok(t.run(a, Op::Session(SessionOp::Close)));
    assert_eq!(available(&t, "s"), 10);
}

#[test]
fn semaphore_limits_and_session_rules_are_typed_errors() {
    let limits = Limits {
        name_bytes_max: 4,
        objects_per_kind_max: 1,
        waiters_per_object_max: 1,
        wait_timeout_max_ms: 1000,
        ..Limits::default()
    };
    let mut t = T::with_limits(limits);
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    assert_eq!(err(t.anon(init("", 1))), Error::BelowMinimum { limit: Limit::NameBytes, min: 1 });
    assert_eq!(err(t.anon(init("abcde", 1))), Error::Limit { limit: Limit::NameBytes, max: 4 });
    ok(t.anon(init("abcd", 1)));
    assert_eq!(err(t.anon(init("q", 1))), Error::Limit { limit: Limit::Objects, max: 1 });
    // An existing one may still be initialised again (and is left alone).
    assert_eq!(ok(t.anon(init("abcd", 1))), Reply::Bool(false));
    ok(t.run(a, acquire("abcd", 1)));
    assert_eq!(
        err(t.run(b, acquire_for("abcd", 1, 1001))),
        Error::Limit { limit: Limit::WaitTimeout, max: 1000 }
    );
    // Waiting needs a sequence number; taking free permits does not.
    assert_eq!(err(t.run_seq(b, 0, 0, acquire("abcd", 1))), Error::SessionRequired);
    wait(&mut t, b, acquire_for("abcd", 1, 1000));
    assert_eq!(err(t.run(a, acquire("abcd", 1))), Error::Limit { limit: Limit::Waiters, max: 1 });
    ok(t.run(a, release("abcd", 1)));
    t.events();
    ok(t.run(b, release("abcd", 1)));
    assert_eq!(ok(t.run_seq(a, 0, 0, acquire("abcd", 1))), Reply::Unit);
    assert_eq!(held(&t, a, "abcd"), 1);
}

#[test]
fn a_sessions_permits_return_when_it_ends_and_go_to_the_waiters() {
    let mut t = T::new();
    let a = t.open(500);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    ok(t.anon(init("s", 2)));
    ok(t.anon(init("u", 1)));
    ok(t.run(a, acquire("s", 2)));
    ok(t.run(c, acquire("u", 1)));
    let a_seq = wait(&mut t, a, acquire("u", 1));
    let b_seq = wait(&mut t, b, acquire("s", 1));
    let c_seq = wait(&mut t, c, acquire("s", 1));
    t.advance_ms(500);
    let i = t.next_index();
    t.tick();
    let events = t.events();
    assert!(events.contains(&failed(a, a_seq, Error::SessionLost(a), i)));
    assert!(events.contains(&granted(b, b_seq, i)));
    assert!(events.contains(&granted(c, c_seq, i)));
    assert_eq!(available(&t, "s"), 0);
    assert_eq!((held(&t, b, "s"), held(&t, c, "s")), (1, 1));
    // a's place in `u` is gone: the permit goes back to the pool.
    ok(t.run(c, release("u", 1)));
    assert_eq!(t.events(), vec![]);
    assert_eq!(available(&t, "u"), 1);
}

#[test]
fn a_waiting_head_that_leaves_unblocks_the_others() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    ok(t.anon(init("s", 2)));
    ok(t.run(a, acquire("s", 1)));
    let b_seq = wait(&mut t, b, acquire("s", 2));
    let c_seq = wait(&mut t, c, acquire("s", 1));
    let i = t.next_index();
    ok(t.run(b, Op::Session(SessionOp::Close)));
    let events = t.events();
    assert!(events.contains(&failed(b, b_seq, Error::SessionLost(b), i)));
    assert!(events.contains(&granted(c, c_seq, i)));
    assert_eq!(available(&t, "s"), 0);
}

#[test]
fn a_retried_acquire_is_applied_once() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    ok(t.anon(init("s", 2)));
    assert_eq!(ok(t.run_seq(a, 1, 1, acquire("s", 1))), Reply::Unit);
    assert_eq!(ok(t.run_seq(a, 1, 1, acquire("s", 1))), Reply::Unit);
    assert_eq!(held(&t, a, "s"), 1);
    assert_eq!(available(&t, "s"), 1);
    assert_eq!(t.run_seq(b, 1, 1, acquire("s", 2)), Outcome::Pending);
    assert_eq!(t.run_seq(b, 1, 1, acquire("s", 2)), Outcome::Pending);
    let i = t.next_index();
    ok(t.run_seq(a, 2, 2, release("s", 1)));
    assert_eq!(t.events(), vec![granted(b, 1, i)]);
    assert_eq!(held(&t, b, "s"), 2);
    // A retried release is not applied twice either.
    ok(t.run_seq(b, 2, 2, release("s", 1)));
    ok(t.run_seq(b, 2, 2, release("s", 1)));
    assert_eq!(held(&t, b, "s"), 1);
    assert_eq!(available(&t, "s"), 1);
}

#[test]
fn permits_and_waiters_survive_a_snapshot_and_complete_after_restore() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    ok(t.anon(init("s", 3)));
    ok(t.anon(init_sessionless("f", 1)));
    ok(t.run(a, acquire("s", 3)));
    ok(t.anon(reduce("f", 2)));
    let b_seq = wait(&mut t, b, acquire_for("s", 2, 1000));
    let c_seq = wait(&mut t, c, acquire("s", 1));
    t.events();
    t.assert_snapshot_round_trips(&[
        QueryOp::Semaphore(SemaphoreQuery::Available { name: "s".into() }),
        QueryOp::Semaphore(SemaphoreQuery::Available { name: "f".into() }),
    ]);
    t.restore_fresh();
    assert_eq!(available(&t, "f"), -1);
    assert_eq!(held(&t, a, "s"), 3);
    t.advance_ms(1000);
    let i = t.next_index();
    t.tick();
    assert_eq!(t.events(), vec![failed(b, b_seq, Error::Timeout, i)]);
    let j = t.next_index();
    ok(t.run(a, release("s", 1)));
    assert_eq!(t.events(), vec![granted(c, c_seq, j)]);
    assert_eq!(held(&t, c, "s"), 1);
}
