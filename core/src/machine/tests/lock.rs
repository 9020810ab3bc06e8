//! FencedLock: fences, reentrancy, FIFO handoff, timeouts, two-phase acquisition,
//! multi-locks, force-unlock, session end, exactly-once retries and snapshots.

use super::{err, ok, T};
use crate::machine::lock::{LockError, LockInfo, LockOp, LockQuery};
use crate::machine::session::SessionOp;
use crate::machine::{
    Error, Event, Fence, Limit, Limits, Op, Outcome, QueryOp, Reply, SessionEnd, SessionId,
};
use crate::StateMachine;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// Long enough that no session expires unless a test means it to.
const TTL_MS: u64 = 60_000;

fn lock(name: &str) -> Op {
    Op::Lock(LockOp::Lock { name: name.into(), timeout_ms: None })
}

fn lock_for(name: &str, timeout_ms: u64) -> Op {
    Op::Lock(LockOp::Lock { name: name.into(), timeout_ms: Some(timeout_ms) })
}

fn try_lock(name: &str) -> Op {
    lock_for(name, 0)
}

fn enqueue(name: &str) -> Op {
    Op::Lock(LockOp::Enqueue { name: name.into() })
}

fn await_place(name: &str, timeout_ms: Option<u64>) -> Op {
    Op::Lock(LockOp::Await { name: name.into(), timeout_ms })
}

fn unlock(name: &str) -> Op {
    Op::Lock(LockOp::Unlock { name: name.into() })
}

fn lock_many(names: &[&str], timeout_ms: Option<u64>) -> Op {
    Op::Lock(LockOp::LockMany { names: names.iter().map(|n| (*n).into()).collect(), timeout_ms })
}

fn force_unlock(name: &str) -> Op {
    Op::Lock(LockOp::ForceUnlock { name: name.into() })
}

fn fence(index: u64) -> Reply {
    Reply::Fence(Fence(index))
}

fn lock_err(e: LockError) -> Error {
    Error::Lock(e)
}

fn granted(session: SessionId, seq: u64, index: u64) -> Event {
    Event::Completed { session, seq, result: Ok(fence(index)), index }
}

fn failed(session: SessionId, seq: u64, error: Error, index: u64) -> Event {
    Event::Completed { session, seq, result: Err(error), index }
}

/// `s` takes `name` at once; returns the fence (the index of the granting entry).
fn acquire(t: &mut T, s: SessionId, name: &str) -> u64 {
    let index = t.next_index();
    assert_eq!(ok(t.run(s, lock(name))), fence(index));
    index
}

/// `s` applies `op`, which must queue; returns the sequence it waits with.
fn wait(t: &mut T, s: SessionId, op: Op) -> u64 {
    assert_eq!(t.run(s, op), Outcome::Pending);
    t.last_seq(s)
}

fn query(t: &T, s: Option<SessionId>, q: LockQuery) -> Reply {
    t.query(s, QueryOp::Lock(q)).unwrap()
}

fn is_locked(t: &T, name: &str) -> bool {
    query(t, None, LockQuery::IsLocked { name: name.into() }) == Reply::Bool(true)
}

fn holds(t: &T, s: SessionId, name: &str) -> bool {
    query(t, Some(s), LockQuery::IsLockedByMe { name: name.into() }) == Reply::Bool(true)
}

fn count(t: &T, name: &str) -> Reply {
    query(t, None, LockQuery::LockCount { name: name.into() })
}

/// The lock's entry in a `List`, if the machine knows it.
fn info(t: &T, name: &str) -> Option<LockInfo> {
    match query(t, None, LockQuery::List { start: name.into() }) {
        Reply::Locks(locks) => locks.into_iter().next().filter(|l| l.name == name),
        other => panic!("expected Locks, got {other:?}"),
    }
}

fn waiters(t: &T, name: &str) -> Vec<SessionId> {
    info(t, name).map(|l| l.waiters).unwrap_or_default()
}

/// Replaces the machine by one restored from its snapshot (after checking the round trip).
fn restore_from_snapshot(t: &mut T, probe: &[QueryOp]) {
    t.assert_snapshot_round_trips(probe);
    t.restore_fresh();
}

#[test]
fn a_grant_is_fenced_with_the_index_of_its_entry() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    assert!(!is_locked(&t, "l"));
    assert_eq!(count(&t, "l"), Reply::Count(0));
    let index = t.next_index();
    assert_eq!(ok(t.run(a, lock("l"))), fence(index));
    assert!(is_locked(&t, "l"));
    assert!(holds(&t, a, "l"));
    assert!(!holds(&t, b, "l"));
    assert_eq!(count(&t, "l"), Reply::Count(1));
    assert_eq!(
        info(&t, "l"),
        Some(LockInfo {
            name: "l".into(),
            holder: Some(a),
            fence: Some(Fence(index)),
            count: 1,
            waiters: vec![]
        })
    );
    assert_eq!(
        t.query(None, QueryOp::Lock(LockQuery::IsLockedByMe { name: "l".into() })),
        Err(Error::SessionRequired)
    );
}

#[test]
fn fences_strictly_increase_across_grants() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let mut fences = Vec::new();
    for _ in 0..3 {
        fences.push(acquire(&mut t, a, "l"));
        let b_seq = wait(&mut t, b, lock("l"));
        // The handoff is a grant too: its fence is the releasing entry.
        let index = t.next_index();
        assert_eq!(ok(t.run(a, unlock("l"))), Reply::Count(0));
        assert_eq!(t.events(), vec![granted(b, b_seq, index)]);
        fences.push(index);
        assert_eq!(ok(t.run(b, unlock("l"))), Reply::Count(0));
    }
    assert!(fences.windows(2).all(|w| w[0] < w[1]), "fences not increasing: {fences:?}");
}

#[test]
fn reentrant_acquires_return_the_original_fence_up_to_the_limit() {
    let mut t = T::with_limits(Limits { lock_reentrancy_max: 3, ..Limits::default() });
    let a = t.open(TTL_MS);
    let first = acquire(&mut t, a, "l");
    assert_eq!(ok(t.run(a, lock("l"))), fence(first));
    assert_eq!(ok(t.run(a, try_lock("l"))), fence(first));
    assert_eq!(count(&t, "l"), Reply::Count(3));
    assert_eq!(err(t.run(a, lock("l"))), Error::Limit { limit: Limit::LockReentrancy, max: 3 });
    assert_eq!(count(&t, "l"), Reply::Count(3));
    assert_eq!(ok(t.run(a, unlock("l"))), Reply::Count(2));
    assert_eq!(ok(t.run(a, lock("l"))), fence(first));
    for left in (0..3).rev() {
        assert_eq!(ok(t.run(a, unlock("l"))), Reply::Count(left));
    }
    assert!(!is_locked(&t, "l"));
    assert_eq!(err(t.run(a, unlock("l"))), lock_err(LockError::NotHeld));
    // A fresh grant after full release gets a new, larger fence.
    assert!(acquire(&mut t, a, "l") > first);
}

#[test]
fn a_try_lock_of_a_held_lock_times_out_without_queueing() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    acquire(&mut t, a, "l");
    assert_eq!(err(t.run(b, try_lock("l"))), Error::Timeout);
    assert_eq!(waiters(&t, "l"), vec![]);
    assert_eq!(ok(t.run(a, unlock("l"))), Reply::Count(0));
    assert_eq!(t.events(), vec![]);
    let index = t.next_index();
    assert_eq!(ok(t.run(b, try_lock("l"))), fence(index));
}

#[test]
fn a_release_hands_the_lock_to_the_next_waiter_in_the_same_entry() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    acquire(&mut t, a, "l");
    ok(t.run(a, lock("l")));
    let b_seq = wait(&mut t, b, lock("l"));
    let c_seq = wait(&mut t, c, lock("l"));
    assert_eq!(waiters(&t, "l"), vec![b, c]);
    // Releasing one of two holds hands nothing over.
    assert_eq!(ok(t.run(a, unlock("l"))), Reply::Count(1));
    assert_eq!(t.events(), vec![]);
    let i = t.next_index();
    assert_eq!(ok(t.run(a, unlock("l"))), Reply::Count(0));
    assert_eq!(t.events(), vec![granted(b, b_seq, i)]);
    assert!(holds(&t, b, "l"));
    assert_eq!(waiters(&t, "l"), vec![c]);
    let j = t.next_index();
    assert_eq!(ok(t.run(b, unlock("l"))), Reply::Count(0));
    assert_eq!(t.events(), vec![granted(c, c_seq, j)]);
    assert_eq!(info(&t, "l").and_then(|l| l.fence), Some(Fence(j)));
}

#[test]
fn a_waiter_that_times_out_gets_timeout_and_leaves_the_queue() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    acquire(&mut t, a, "l");
    let b_seq = wait(&mut t, b, lock_for("l", 100));
    let c_seq = wait(&mut t, c, lock("l"));
    assert_eq!(t.m.next_deadline().map(|d| d.as_micros()), Some(100_000));
    t.advance_ms(99);
    t.tick();
    assert_eq!(t.events(), vec![]);
    t.advance_ms(1);
    let i = t.next_index();
    t.tick();
    assert_eq!(t.events(), vec![failed(b, b_seq, Error::Timeout, i)]);
    assert_eq!(waiters(&t, "l"), vec![c]);
    // The timeout is the request's outcome: a retry is answered from the cache.
    assert_eq!(err(t.run_seq(b, b_seq, b_seq, lock_for("l", 100))), Error::Timeout);
    let j = t.next_index();
    ok(t.run(a, unlock("l")));
    assert_eq!(t.events(), vec![granted(c, c_seq, j)]);
}

#[test]
fn a_granted_waiter_does_not_time_out_later() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    acquire(&mut t, a, "l");
    let b_seq = wait(&mut t, b, lock_for("l", 100));
    let i = t.next_index();
    ok(t.run(a, unlock("l")));
    assert_eq!(t.events(), vec![granted(b, b_seq, i)]);
    assert_eq!(t.m.next_deadline().map(|d| d.as_micros()), Some(TTL_MS * 1000));
    t.advance_ms(100);
    t.tick();
    assert_eq!(t.events(), vec![]);
    assert!(holds(&t, b, "l"));
}

#[test]
fn a_wait_longer_than_the_limit_is_refused() {
    let mut t = T::with_limits(Limits { wait_timeout_max_ms: 1000, ..Limits::default() });
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    acquire(&mut t, a, "l");
    let too_long = Error::Limit { limit: Limit::WaitTimeout, max: 1000 };
    assert_eq!(err(t.run(b, lock_for("l", 1001))), too_long);
    assert_eq!(err(t.run(b, lock_many(&["l", "m"], Some(1001)))), too_long);
    ok(t.run(b, enqueue("l")));
    assert_eq!(err(t.run(b, await_place("l", Some(1001)))), too_long);
    assert_eq!(waiters(&t, "l"), vec![b]);
    wait(&mut t, b, await_place("l", Some(1000)));
}

#[test]
fn enqueue_reports_positions_and_await_waits_for_the_place() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    acquire(&mut t, a, "l");
    assert_eq!(ok(t.run(b, enqueue("l"))), Reply::Queued { position: 0 });
    assert_eq!(ok(t.run(c, enqueue("l"))), Reply::Queued { position: 1 });
    assert_eq!(waiters(&t, "l"), vec![b, c]);
    // A free lock is granted by the enqueue itself.
    let i = t.next_index();
    assert_eq!(ok(t.run(a, enqueue("m"))), fence(i));
    assert!(holds(&t, a, "m"));
    let b_seq = wait(&mut t, b, await_place("l", None));
    let j = t.next_index();
    ok(t.run(a, unlock("l")));
    assert_eq!(t.events(), vec![granted(b, b_seq, j)]);
    let c_seq = wait(&mut t, c, await_place("l", None));
    let k = t.next_index();
    ok(t.run(b, unlock("l")));
    assert_eq!(t.events(), vec![granted(c, c_seq, k)]);
}

#[test]
fn a_place_granted_before_its_await_is_returned_by_the_await() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    acquire(&mut t, a, "l");
    ok(t.run(b, enqueue("l")));
    let i = t.next_index();
    ok(t.run(a, unlock("l")));
    // Nobody was awaiting: the grant completes no request.
    assert_eq!(t.events(), vec![]);
    assert!(holds(&t, b, "l"));
    assert_eq!(ok(t.run(b, await_place("l", None))), fence(i));
    assert_eq!(ok(t.run(b, await_place("l", Some(0)))), fence(i));
    assert_eq!(count(&t, "l"), Reply::Count(1));
}

#[test]
fn an_await_that_times_out_keeps_its_place() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    acquire(&mut t, a, "l");
    ok(t.run(b, enqueue("l")));
    ok(t.run(c, enqueue("l")));
    let b_seq = wait(&mut t, b, await_place("l", Some(100)));
    t.advance_ms(100);
    let i = t.next_index();
    t.tick();
    assert_eq!(t.events(), vec![failed(b, b_seq, Error::Timeout, i)]);
    assert_eq!(waiters(&t, "l"), vec![b, c]);
    // A try-await reports the wait without giving up the place either.
    assert_eq!(err(t.run(b, await_place("l", Some(0)))), Error::Timeout);
    assert_eq!(waiters(&t, "l"), vec![b, c]);
    let j = t.next_index();
    ok(t.run(a, unlock("l")));
    assert_eq!(t.events(), vec![]);
    assert!(holds(&t, b, "l"));
    assert_eq!(ok(t.run(b, await_place("l", None))), fence(j));
}

#[test]
fn unlocking_a_queued_place_gives_it_up_and_cancels_its_wait() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    let d = t.open(TTL_MS);
    acquire(&mut t, a, "l");
    ok(t.run(b, enqueue("l")));
    ok(t.run(c, enqueue("l")));
    let d_seq = wait(&mut t, d, lock("l"));
    let b_seq = wait(&mut t, b, await_place("l", None));
    let i = t.next_index();
    assert_eq!(ok(t.run(b, unlock("l"))), Reply::Count(0));
    assert_eq!(t.events(), vec![failed(b, b_seq, lock_err(LockError::Cancelled), i)]);
    assert_eq!(waiters(&t, "l"), vec![c, d]);
    // A pending plain lock can be given up the same way.
    let j = t.next_index();
    assert_eq!(ok(t.run(d, unlock("l"))), Reply::Count(0));
    assert_eq!(t.events(), vec![failed(d, d_seq, lock_err(LockError::Cancelled), j)]);
    assert_eq!(waiters(&t, "l"), vec![c]);
    // The holder is untouched by either.
    assert!(holds(&t, a, "l"));
    ok(t.run(a, unlock("l")));
    assert!(holds(&t, c, "l"));
    assert_eq!(t.events(), vec![]);
}

#[test]
fn a_second_await_replaces_the_first() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    acquire(&mut t, a, "l");
    ok(t.run(b, enqueue("l")));
    let first = wait(&mut t, b, await_place("l", Some(1000)));
    let i = t.next_index();
    let second = wait(&mut t, b, await_place("l", None));
    assert_eq!(t.events(), vec![failed(b, first, lock_err(LockError::Cancelled), i)]);
    // The first await's timer went with it.
    t.advance_ms(1000);
    t.tick();
    assert_eq!(t.events(), vec![]);
    let j = t.next_index();
    ok(t.run(a, unlock("l")));
    assert_eq!(t.events(), vec![granted(b, second, j)]);
}

#[test]
fn two_phase_misuse_is_refused() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    assert_eq!(err(t.run(b, await_place("l", None))), lock_err(LockError::NotQueued));
    acquire(&mut t, a, "l");
    assert_eq!(err(t.run(b, await_place("l", None))), lock_err(LockError::NotQueued));
    assert_eq!(err(t.run(a, enqueue("l"))), lock_err(LockError::AlreadyHeld));
    ok(t.run(b, enqueue("l")));
    assert_eq!(err(t.run(b, enqueue("l"))), lock_err(LockError::AlreadyQueued));
    assert_eq!(err(t.run(b, lock("l"))), lock_err(LockError::AlreadyQueued));
    assert_eq!(err(t.run(b, try_lock("l"))), lock_err(LockError::AlreadyQueued));
    // A plain pending lock is not a place to await.
    wait(&mut t, c, lock("l"));
    assert_eq!(err(t.run(c, await_place("l", None))), lock_err(LockError::AlreadyQueued));
    assert_eq!(err(t.run(c, enqueue("l"))), lock_err(LockError::AlreadyQueued));
    assert_eq!(err(t.anon(enqueue("l"))), Error::SessionRequired);
    // Waiting needs a sequence number to answer later.
    assert_eq!(err(t.run_seq(b, 0, 0, await_place("l", None))), Error::SessionRequired);
    assert_eq!(waiters(&t, "l"), vec![b, c]);
}

#[test]
fn lock_many_is_all_or_nothing_and_its_waiter_heads_every_queue() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    let d = t.open(TTL_MS);
    acquire(&mut t, a, "y");
    let b_seq = wait(&mut t, b, lock_many(&["x", "y", "z"], None));
    // Nothing is taken while one name is held.
    assert!(!is_locked(&t, "x"));
    assert!(!is_locked(&t, "z"));
    for n in ["x", "y", "z"] {
        assert_eq!(waiters(&t, n), vec![b], "{n}");
    }
    // The free locks are reserved for the multi-lock waiter at their head.
    let c_seq = wait(&mut t, c, lock("x"));
    assert_eq!(err(t.run(d, try_lock("z"))), Error::Timeout);
    let i = t.next_index();
    ok(t.run(a, unlock("y")));
    assert_eq!(t.events(), vec![granted(b, b_seq, i)]);
    for n in ["x", "y", "z"] {
        let l = info(&t, n).unwrap();
        assert_eq!((l.holder, l.fence, l.count), (Some(b), Some(Fence(i)), 1), "{n}");
    }
    assert_eq!(waiters(&t, "x"), vec![c]);
    let j = t.next_index();
    ok(t.run(b, unlock("x")));
    assert_eq!(t.events(), vec![granted(c, c_seq, j)]);
    assert!(holds(&t, b, "y") && holds(&t, b, "z"));
}

#[test]
fn lock_many_of_free_locks_grants_them_all_with_one_fence() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let i = t.next_index();
    assert_eq!(ok(t.run(a, lock_many(&["p", "q"], Some(0)))), fence(i));
    assert_eq!(info(&t, "p").and_then(|l| l.fence), Some(Fence(i)));
    assert_eq!(info(&t, "q").and_then(|l| l.fence), Some(Fence(i)));
    // Each is released on its own.
    assert_eq!(ok(t.run(a, unlock("p"))), Reply::Count(0));
    assert!(!is_locked(&t, "p"));
    assert!(holds(&t, a, "q"));
    // A try of several fails as a whole when one is held.
    let b = t.open(TTL_MS);
    assert_eq!(err(t.run(b, lock_many(&["p", "q"], Some(0)))), Error::Timeout);
    assert!(!is_locked(&t, "p"));
    assert_eq!(waiters(&t, "p"), vec![]);
}

#[test]
fn multi_lock_waiters_in_opposite_order_do_not_deadlock() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let e = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    acquire(&mut t, a, "x");
    acquire(&mut t, e, "y");
    let b_seq = wait(&mut t, b, lock_many(&["x", "y"], None));
    let c_seq = wait(&mut t, c, lock_many(&["y", "x"], None));
    // Both queues are in log order: b ahead of c in each.
    assert_eq!(waiters(&t, "x"), vec![b, c]);
    assert_eq!(waiters(&t, "y"), vec![b, c]);
    ok(t.run(a, unlock("x")));
    assert_eq!(t.events(), vec![]);
    let i = t.next_index();
    ok(t.run(e, unlock("y")));
    assert_eq!(t.events(), vec![granted(b, b_seq, i)]);
    ok(t.run(b, unlock("x")));
    assert_eq!(t.events(), vec![]);
    let j = t.next_index();
    ok(t.run(b, unlock("y")));
    assert_eq!(t.events(), vec![granted(c, c_seq, j)]);
    assert!(holds(&t, c, "x") && holds(&t, c, "y"));
}

#[test]
fn lock_many_validates_its_names() {
    let mut t = T::with_limits(Limits { multi_lock_names_max: 3, ..Limits::default() });
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let names = Error::Limit { limit: Limit::MultiLockNames, max: 3 };
    assert_eq!(
        err(t.run(a, lock_many(&[], None))),
        Error::BelowMinimum { limit: Limit::MultiLockNames, min: 1 }
    );
    assert_eq!(err(t.run(a, lock_many(&["p", "q", "r", "s"], None))), names);
    assert_eq!(err(t.run(a, lock_many(&["p", "q", "p"], None))), names);
    assert_eq!(
        err(t.run(a, lock_many(&["p", ""], None))),
        Error::BelowMinimum { limit: Limit::NameBytes, min: 1 }
    );
    assert_eq!(err(t.anon(lock_many(&["p"], None))), Error::SessionRequired);
    acquire(&mut t, a, "h");
    assert_eq!(err(t.run(a, lock_many(&["p", "h"], None))), lock_err(LockError::AlreadyHeld));
    // Even alone: a multi-lock is never a reentrant acquire.
    assert_eq!(err(t.run(a, lock_many(&["h"], None))), lock_err(LockError::AlreadyHeld));
    assert_eq!(count(&t, "h"), Reply::Count(1));
    ok(t.run(b, enqueue("h")));
    assert_eq!(err(t.run(b, lock_many(&["p", "h"], None))), lock_err(LockError::AlreadyQueued));
    // Nothing refused took or reserved anything.
    assert!(!is_locked(&t, "p"));
    assert_eq!(info(&t, "p"), None);
    let i = t.next_index();
    assert_eq!(ok(t.run(a, lock_many(&["p", "q", "r"], None))), fence(i));
}

#[test]
fn a_timed_out_multi_lock_leaves_every_queue() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    acquire(&mut t, a, "y");
    let b_seq = wait(&mut t, b, lock_many(&["x", "y"], Some(100)));
    let c_seq = wait(&mut t, c, lock("x"));
    t.advance_ms(100);
    let i = t.next_index();
    t.tick();
    let events = t.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.contains(&failed(b, b_seq, Error::Timeout, i)));
    // The place b reserved at the head of `x` passes on in the same entry.
    assert!(events.contains(&granted(c, c_seq, i)));
    assert_eq!(waiters(&t, "y"), vec![]);
    assert!(holds(&t, a, "y"));
}

#[test]
fn unlocking_one_name_of_a_queued_multi_lock_gives_up_all_of_it() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    acquire(&mut t, a, "y");
    let b_seq = wait(&mut t, b, lock_many(&["x", "y"], None));
    let c_seq = wait(&mut t, c, lock("x"));
    let i = t.next_index();
    assert_eq!(ok(t.run(b, unlock("y"))), Reply::Count(0));
    let events = t.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.contains(&failed(b, b_seq, lock_err(LockError::Cancelled), i)));
    assert!(events.contains(&granted(c, c_seq, i)));
    assert_eq!(waiters(&t, "y"), vec![]);
}

#[test]
fn force_unlock_releases_every_hold_and_hands_the_lock_on() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    acquire(&mut t, a, "l");
    ok(t.run(a, lock("l")));
    let b_seq = wait(&mut t, b, lock("l"));
    // Administrative: needs no session.
    let i = t.next_index();
    assert_eq!(ok(t.anon(force_unlock("l"))), Reply::Unit);
    assert_eq!(t.events(), vec![granted(b, b_seq, i)]);
    assert_eq!(count(&t, "l"), Reply::Count(1));
    assert_eq!(err(t.run(a, unlock("l"))), lock_err(LockError::NotHeld));
    assert!(holds(&t, b, "l"));
    assert_eq!(err(t.anon(force_unlock("unknown"))), lock_err(LockError::NotLocked));
    ok(t.run(b, unlock("l")));
    assert_eq!(err(t.anon(force_unlock("l"))), lock_err(LockError::NotLocked));
    // A lock kept only by a multi-lock waiter's reservation is not locked.
    acquire(&mut t, a, "y");
    wait(&mut t, c, lock_many(&["x", "y"], None));
    assert_eq!(err(t.run(b, force_unlock("x"))), lock_err(LockError::NotLocked));
    assert_eq!(waiters(&t, "x"), vec![c]);
}

#[test]
fn an_expired_session_releases_its_holds_and_places_and_hands_its_locks_on() {
    let mut t = T::new();
    let a = t.open(500);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    let d = t.open(TTL_MS);
    acquire(&mut t, a, "x");
    ok(t.run(a, lock("x")));
    acquire(&mut t, c, "y");
    acquire(&mut t, c, "z");
    assert_eq!(ok(t.run(a, enqueue("y"))), Reply::Queued { position: 0 });
    let a_seq = wait(&mut t, a, lock("z"));
    let b_seq = wait(&mut t, b, lock("x"));
    assert_eq!(ok(t.run(d, enqueue("y"))), Reply::Queued { position: 1 });
    t.advance_ms(500);
    let i = t.next_index();
    t.tick();
    let events = t.events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.contains(&Event::SessionEnded { session: a, reason: SessionEnd::Expired, index: i }));
    assert!(events.contains(&failed(a, a_seq, Error::SessionLost(a), i)));
    assert!(events.contains(&granted(b, b_seq, i)));
    assert_eq!(count(&t, "x"), Reply::Count(1));
    assert_eq!(waiters(&t, "y"), vec![d]);
    assert_eq!(waiters(&t, "z"), vec![]);
    ok(t.run(c, unlock("y")));
    assert!(holds(&t, d, "y"));
}

#[test]
fn closing_a_session_hands_its_locks_on_in_the_closing_entry() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    acquire(&mut t, a, "x");
    acquire(&mut t, a, "y");
    let b_seq = wait(&mut t, b, lock_many(&["w", "x"], None));
    let c_seq = wait(&mut t, c, lock("w"));
    let i = t.next_index();
    assert_eq!(ok(t.run(b, Op::Session(SessionOp::Close))), Reply::Unit);
    // b's reservation at the head of `w` goes with it.
    let events = t.events();
    assert!(events.contains(&failed(b, b_seq, Error::SessionLost(b), i)));
    assert!(events.contains(&granted(c, c_seq, i)));
    assert_eq!(waiters(&t, "x"), vec![]);
    let j = t.next_index();
    ok(t.run(a, Op::Session(SessionOp::Close)));
    assert!(t.events().contains(&Event::SessionEnded { session: a, reason: SessionEnd::Closed, index: j }));
    assert_eq!(info(&t, "x"), None);
    assert_eq!(info(&t, "y"), None);
}

#[test]
fn a_retried_lock_returns_the_cached_fence_without_a_second_hold() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let i = t.next_index();
    assert_eq!(ok(t.run_seq(a, 1, 1, lock("l"))), fence(i));
    assert_eq!(ok(t.run_seq(a, 1, 1, lock("l"))), fence(i));
    assert_eq!(count(&t, "l"), Reply::Count(1));
    assert_eq!(ok(t.run_seq(a, 2, 2, unlock("l"))), Reply::Count(0));
    // A retried unlock does not release a second time either.
    let b = t.open(TTL_MS);
    acquire(&mut t, b, "l");
    assert_eq!(ok(t.run_seq(a, 2, 2, unlock("l"))), Reply::Count(0));
    assert!(holds(&t, b, "l"));
}

#[test]
fn a_retried_pending_lock_stays_pending_and_is_queued_once() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    acquire(&mut t, a, "l");
    assert_eq!(t.run_seq(b, 1, 1, lock("l")), Outcome::Pending);
    assert_eq!(t.run_seq(b, 1, 1, lock("l")), Outcome::Pending);
    assert_eq!(waiters(&t, "l"), vec![b]);
    let i = t.next_index();
    ok(t.run(a, unlock("l")));
    assert_eq!(t.events(), vec![granted(b, 1, i)]);
    // After the grant the retry is answered with it.
    assert_eq!(ok(t.run_seq(b, 1, 1, lock("l"))), fence(i));
    assert_eq!(count(&t, "l"), Reply::Count(1));
}

#[test]
fn list_shows_holders_fences_and_waiters_in_name_order() {
    let mut t = T::with_limits(Limits { list_max: 2, ..Limits::default() });
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let fa = acquire(&mut t, a, "a");
    ok(t.run(a, lock("a")));
    let fb = acquire(&mut t, b, "b");
    wait(&mut t, a, lock("b"));
    let fc = acquire(&mut t, a, "c");
    let list = |t: &T, start: &str| query(t, None, LockQuery::List { start: start.into() });
    let entry = |name: &str, holder, fence: u64, count, waiters| LockInfo {
        name: name.into(),
        holder: Some(holder),
        fence: Some(Fence(fence)),
        count,
        waiters,
    };
    assert_eq!(list(&t, ""), Reply::Locks(vec![entry("a", a, fa, 2, vec![]), entry("b", b, fb, 1, vec![a])]));
    assert_eq!(
        list(&t, "b"),
        Reply::Locks(vec![entry("b", b, fb, 1, vec![a]), entry("c", a, fc, 1, vec![])])
    );
    assert_eq!(list(&t, "c"), Reply::Locks(vec![entry("c", a, fc, 1, vec![])]));
    assert_eq!(list(&t, "d"), Reply::Locks(vec![]));
    // Unused locks are forgotten.
    ok(t.run(a, unlock("c")));
    assert_eq!(list(&t, "c"), Reply::Locks(vec![]));
}

#[test]
fn lock_limits_and_session_rules_are_typed_errors() {
    let limits =
        Limits { name_bytes_max: 4, objects_per_kind_max: 2, waiters_per_object_max: 1, ..Limits::default() };
    let mut t = T::with_limits(limits);
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    let name = Error::Limit { limit: Limit::NameBytes, max: 4 };
    assert_eq!(err(t.run(a, lock(""))), Error::BelowMinimum { limit: Limit::NameBytes, min: 1 });
    assert_eq!(err(t.run(a, lock("abcde"))), name);
    assert_eq!(err(t.run(a, enqueue("abcde"))), name);
    acquire(&mut t, a, "abcd");
    acquire(&mut t, a, "q");
    let objects = Error::Limit { limit: Limit::Objects, max: 2 };
    assert_eq!(err(t.run(b, lock("r"))), objects);
    assert_eq!(err(t.run(b, enqueue("r"))), objects);
    assert_eq!(err(t.run(b, lock_many(&["q", "r"], None))), objects);
    let waiters_max = Error::Limit { limit: Limit::Waiters, max: 1 };
    wait(&mut t, b, lock("q"));
    assert_eq!(err(t.run(c, lock("q"))), waiters_max);
    assert_eq!(err(t.run(c, enqueue("q"))), waiters_max);
    assert_eq!(err(t.run(c, lock_many(&["abcd", "q"], None))), waiters_max);
    assert_eq!(waiters(&t, "q"), vec![b]);
    // A released lock no longer counts against the objects limit.
    ok(t.run(a, unlock("abcd")));
    acquire(&mut t, c, "r");
    // Owning and waiting need a session; waiting needs a sequence number.
    assert_eq!(err(t.anon(lock("s"))), Error::SessionRequired);
    assert_eq!(err(t.run_seq(c, 0, 0, lock("s"))), Error::SessionRequired);
    assert_eq!(err(t.anon(unlock("q"))), Error::SessionRequired);
    assert_eq!(err(t.run(c, unlock("q"))), lock_err(LockError::NotHeld));
    assert_eq!(err(t.run(c, unlock("never"))), lock_err(LockError::NotHeld));
}

#[test]
fn holds_and_waiters_survive_a_snapshot_and_complete_after_restore() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    let d = t.open(TTL_MS);
    let first = acquire(&mut t, a, "x");
    ok(t.run(a, lock("x")));
    let b_seq = wait(&mut t, b, lock_for("x", 1000));
    ok(t.run(c, enqueue("x")));
    let c_seq = wait(&mut t, c, await_place("x", None));
    let d_seq = wait(&mut t, d, lock_many(&["x", "y"], None));
    t.events();
    restore_from_snapshot(
        &mut t,
        &[
            QueryOp::Lock(LockQuery::List { start: String::new() }),
            QueryOp::Lock(LockQuery::IsLocked { name: "y".into() }),
            QueryOp::Lock(LockQuery::LockCount { name: "x".into() }),
        ],
    );
    assert_eq!(waiters(&t, "x"), vec![b, c, d]);
    // Timers, holds, places and reply caches all came across.
    t.advance_ms(1000);
    let i = t.next_index();
    t.tick();
    assert_eq!(t.events(), vec![failed(b, b_seq, Error::Timeout, i)]);
    assert_eq!(ok(t.run(a, lock("x"))), fence(first));
    assert_eq!(ok(t.run(a, unlock("x"))), Reply::Count(2));
    ok(t.run(a, unlock("x")));
    assert_eq!(t.events(), vec![]);
    let j = t.next_index();
    ok(t.run(a, unlock("x")));
    assert_eq!(t.events(), vec![granted(c, c_seq, j)]);
    let k = t.next_index();
    ok(t.run(c, unlock("x")));
    assert_eq!(t.events(), vec![granted(d, d_seq, k)]);
    // A retry is answered from the reply cache with the grant and the entry that made it.
    assert_eq!(
        t.run_seq(d, d_seq, d_seq, lock_many(&["x", "y"], None)),
        Outcome::Replayed { result: Ok(fence(k)), index: k, queued: true }
    );
}

#[test]
fn grants_and_releases_report_wait_and_hold_times_in_log_time() {
    use crate::machine::lock::LockEvent;
    let mut t = T::new();
    let (a, b) = (t.open(60_000), t.open(60_000));
    let f1 = acquire(&mut t, a, "x");
    wait(&mut t, b, lock("x"));
    t.advance_ms(250);
    ok(t.run(a, unlock("x")));
    let ev = t.lock_events();
    let granted_b = Fence(f1 + 2);
    assert_eq!(
        ev,
        vec![
            LockEvent::Granted { name: "x".into(), session: a, fence: Fence(f1), waited_us: 0 },
            LockEvent::Released { name: "x".into(), session: a, fence: Fence(f1), held_us: 250_000 },
            LockEvent::Granted { name: "x".into(), session: b, fence: granted_b, waited_us: 250_000 },
        ]
    );
    t.advance_ms(40);
    ok(t.run(a, force_unlock("x")));
    assert_eq!(
        t.lock_events(),
        vec![LockEvent::Released { name: "x".into(), session: b, fence: granted_b, held_us: 40_000 }]
    );
}

#[test]
fn a_limited_view_lists_the_first_locks_by_name_and_counts_them_all() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    for name in ["c", "a", "b"] {
        ok(t.run(a, lock(name)));
    }
    let v = t.m.view_limited(2);
    assert_eq!(v.counts.locks, 3);
    assert_eq!(v.locks.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(t.m.view().locks.len(), 3);
    assert_eq!(t.m.view().counts, v.counts);
}

#[test]
fn release_gives_back_only_the_grant_with_its_fence() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let release = |fence: Fence| Op::Lock(LockOp::Release { name: "l".into(), fence });
    let Reply::Fence(old) = ok(t.run(a, lock("l"))) else { panic!("a fence") };
    ok(t.run(a, lock("l")));
    assert_eq!(ok(t.run(a, release(old))), Reply::Count(1), "one of two reentrant holds");
    // Force-unlocked and granted again to the same session: the old grant is gone.
    assert_eq!(ok(t.anon(force_unlock("l"))), Reply::Unit);
    let Reply::Fence(new) = ok(t.run(a, lock("l"))) else { panic!("a fence") };
    assert!(new > old);
    assert_eq!(err(t.run(a, release(old))), lock_err(LockError::NotHeld));
    assert_eq!(count(&t, "l"), Reply::Count(1), "the new grant is intact");
    let b = t.open(TTL_MS);
    assert_eq!(err(t.run(b, release(new))), lock_err(LockError::NotHeld), "another session's grant");
    assert_eq!(ok(t.run(a, release(new))), Reply::Count(0));
    assert_eq!(err(t.run(a, release(new))), lock_err(LockError::NotHeld), "nothing left to release");
}
