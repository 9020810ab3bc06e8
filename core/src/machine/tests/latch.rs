//! Count-down latches: awaiters are released in the entry whose count-down reaches zero,
//! never earlier; a latch is reusable once it is back at zero.

use super::{err, ok, T};
use crate::machine::latch::{LatchError, LatchOp, LatchQuery};
use crate::machine::session::SessionOp;
use crate::machine::{Error, Event, Limit, Limits, Op, Outcome, QueryOp, Reply, SessionId};
use crate::StateMachine;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

const TTL_MS: u64 = 60_000;

fn set(name: &str, count: u64) -> Op {
    Op::Latch(LatchOp::TrySetCount { name: name.into(), count })
}

fn count_down(name: &str) -> Op {
    Op::Latch(LatchOp::CountDown { name: name.into() })
}

fn wait(name: &str, timeout_ms: Option<u64>) -> Op {
    Op::Latch(LatchOp::Await { name: name.into(), timeout_ms })
}

fn count_q(name: &str) -> QueryOp {
    QueryOp::Latch(LatchQuery::Count { name: name.into() })
}

fn count(t: &T, name: &str) -> u64 {
    match t.query(None, count_q(name)) {
        Ok(Reply::Count(n)) => n,
        other => panic!("count query failed: {other:?}"),
    }
}

/// (name, count, waiters) of every latch the machine keeps.
fn latches(t: &T) -> Vec<(String, u64, usize)> {
    t.m.view().latches
}

fn released(session: SessionId, seq: u64, index: u64) -> Event {
    Event::Completed { session, seq, result: Ok(Reply::Unit), index }
}

#[test]
fn an_unset_latch_is_open_and_count_down_leaves_it_at_zero() {
    let mut t = T::new();
    assert_eq!(count(&t, "l"), 0);
    // No session needed when there is nothing to wait for.
    assert_eq!(ok(t.anon(wait("l", None))), Reply::Unit);
    assert_eq!(ok(t.anon(count_down("l"))), Reply::Count(0));
    assert_eq!(count(&t, "l"), 0);
    assert!(latches(&t).is_empty(), "a count-down at zero must not create a latch");
}

#[test]
fn try_set_count_succeeds_only_at_zero() {
    let mut t = T::new();
    assert_eq!(ok(t.anon(set("l", 3))), Reply::Bool(true));
    assert_eq!(count(&t, "l"), 3);
    // A round under way cannot be reset, neither up nor down.
    assert_eq!(ok(t.anon(set("l", 5))), Reply::Bool(false));
    assert_eq!(ok(t.anon(set("l", 1))), Reply::Bool(false));
    assert_eq!(count(&t, "l"), 3);
    assert_eq!(ok(t.anon(count_down("l"))), Reply::Count(2));
    assert_eq!(ok(t.anon(set("l", 9))), Reply::Bool(false));
    assert_eq!(ok(t.anon(count_down("l"))), Reply::Count(1));
    assert_eq!(ok(t.anon(count_down("l"))), Reply::Count(0));
    // Never below zero.
    assert_eq!(ok(t.anon(count_down("l"))), Reply::Count(0));
    assert_eq!(ok(t.anon(set("l", 2))), Reply::Bool(true));
    assert_eq!(count(&t, "l"), 2);
}

#[test]
fn a_zero_count_or_a_bad_name_is_refused() {
    let mut t = T::with_limits(Limits { name_bytes_max: 4, ..Limits::default() });
    assert_eq!(err(t.anon(set("l", 0))), Error::Latch(LatchError::ZeroCount));
    assert_eq!(err(t.anon(set("", 1))), Error::BelowMinimum { limit: Limit::NameBytes, min: 1 });
    assert_eq!(err(t.anon(set("latch", 1))), Error::Limit { limit: Limit::NameBytes, max: 4 });
    assert_eq!(ok(t.anon(set("four", 1))), Reply::Bool(true));
    assert!(latches(&t).iter().all(|(n, _, _)| n == "four"));
}

#[test]
fn awaiters_are_released_only_by_the_count_down_that_reaches_zero() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    ok(t.anon(set("l", 3)));
    assert_eq!(t.run(a, wait("l", None)), Outcome::Pending);
    assert_eq!(t.run(b, wait("l", Some(10_000))), Outcome::Pending);
    assert_eq!(latches(&t), vec![("l".into(), 3, 2)]);
    t.events();
    assert_eq!(ok(t.anon(count_down("l"))), Reply::Count(2));
    assert_eq!(ok(t.anon(count_down("l"))), Reply::Count(1));
    assert_eq!(t.events(), vec![], "the latch opened early");
    let index = t.next_index();
    assert_eq!(ok(t.anon(count_down("l"))), Reply::Count(0));
    // Both answered by that very entry, in arrival order.
    assert_eq!(t.events(), vec![released(a, 1, index), released(b, 1, index)]);
    assert!(latches(&t).is_empty());
    // The released waiter's timeout is gone with it: only the session leases remain.
    assert_eq!(t.m.next_deadline().map(|d| d.as_micros()), Some(TTL_MS * 1000));
    // The retry of a released await is answered from the reply cache.
    assert_eq!(ok(t.run_seq(a, 1, 1, wait("l", None))), Reply::Unit);
}

#[test]
fn a_latch_is_reusable_after_reaching_zero() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    ok(t.anon(set("l", 1)));
    assert_eq!(t.run(a, wait("l", None)), Outcome::Pending);
    ok(t.anon(count_down("l")));
    assert_eq!(t.completions().len(), 1);
    // Second round: a new count, a new waiter, released only by its own count-down.
    assert_eq!(ok(t.anon(set("l", 2))), Reply::Bool(true));
    assert_eq!(t.run(a, wait("l", None)), Outcome::Pending);
    let seq = t.last_seq(a);
    ok(t.anon(count_down("l")));
    assert_eq!(t.events(), vec![]);
    let index = t.next_index();
    ok(t.anon(count_down("l")));
    assert_eq!(t.events(), vec![released(a, seq, index)]);
}

#[test]
fn a_retried_count_down_is_applied_once() {
    let mut t = T::new();
    let s = t.open(TTL_MS);
    let w = t.open(TTL_MS);
    ok(t.anon(set("l", 2)));
    assert_eq!(t.run(w, wait("l", None)), Outcome::Pending);
    t.events();
    assert_eq!(ok(t.run_seq(s, 1, 1, count_down("l"))), Reply::Count(1));
    // The reply was lost and the client retries: applying it again would open the latch.
    assert_eq!(ok(t.run_seq(s, 1, 1, count_down("l"))), Reply::Count(1));
    assert_eq!(count(&t, "l"), 1);
    assert_eq!(t.events(), vec![]);
    let index = t.next_index();
    assert_eq!(ok(t.run_seq(s, 2, 2, count_down("l"))), Reply::Count(0));
    assert_eq!(t.events(), vec![released(w, 1, index)]);
}

#[test]
fn a_retried_await_does_not_queue_twice() {
    let mut t = T::new();
    let s = t.open(TTL_MS);
    ok(t.anon(set("l", 1)));
    assert_eq!(t.run_seq(s, 1, 1, wait("l", None)), Outcome::Pending);
    assert_eq!(t.run_seq(s, 1, 1, wait("l", None)), Outcome::Pending);
    assert_eq!(latches(&t), vec![("l".into(), 1, 1)]);
    ok(t.anon(count_down("l")));
    assert_eq!(t.completions(), vec![(s, 1, Ok(Reply::Unit))]);
}

#[test]
fn an_await_times_out_and_leaves_the_latch_counting() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    ok(t.anon(set("l", 1)));
    assert_eq!(t.run(a, wait("l", Some(100))), Outcome::Pending);
    t.events();
    assert_eq!(t.m.next_deadline().map(|d| d.as_micros()), Some(100_000));
    t.advance_ms(99);
    t.tick();
    assert_eq!(t.events(), vec![]);
    t.advance_ms(1);
    let index = t.next_index();
    t.tick();
    assert_eq!(t.events(), vec![Event::Completed { session: a, seq: 1, result: Err(Error::Timeout), index }]);
    assert_eq!(latches(&t), vec![("l".into(), 1, 0)]);
    // The timed-out waiter is not answered a second time when the latch opens.
    ok(t.anon(count_down("l")));
    assert_eq!(t.events(), vec![]);
}

#[test]
fn a_zero_timeout_only_checks() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    assert_eq!(ok(t.run(a, wait("l", Some(0)))), Reply::Unit);
    ok(t.anon(set("l", 1)));
    assert_eq!(err(t.run(a, wait("l", Some(0)))), Error::Timeout);
    assert_eq!(latches(&t), vec![("l".into(), 1, 0)], "a check must not queue");
}

#[test]
fn a_blocking_await_needs_a_session_and_a_sequence() {
    let mut t = T::new();
    let s = t.open(TTL_MS);
    ok(t.anon(set("l", 1)));
    assert_eq!(err(t.anon(wait("l", None))), Error::SessionRequired);
    assert_eq!(err(t.run_seq(s, 0, 0, wait("l", None))), Error::SessionRequired);
    assert_eq!(latches(&t), vec![("l".into(), 1, 0)]);
}

#[test]
fn waiter_timeout_and_object_limits_are_enforced() {
    let limits = Limits {
        waiters_per_object_max: 2,
        objects_per_kind_max: 1,
        wait_timeout_max_ms: 1000,
        ..Limits::default()
    };
    let mut t = T::with_limits(limits);
    let s = t.open(TTL_MS);
    ok(t.anon(set("l", 1)));
    assert_eq!(err(t.run(s, wait("l", Some(1001)))), Error::Limit { limit: Limit::WaitTimeout, max: 1000 });
    assert_eq!(t.run(s, wait("l", Some(1000))), Outcome::Pending);
    assert_eq!(t.run(s, wait("l", None)), Outcome::Pending);
    assert_eq!(err(t.run(s, wait("l", None))), Error::Limit { limit: Limit::Waiters, max: 2 });
    assert_eq!(err(t.anon(set("m", 1))), Error::Limit { limit: Limit::Objects, max: 1 });
    // A latch back at zero is forgotten and frees its slot.
    ok(t.anon(count_down("l")));
    assert_eq!(ok(t.anon(set("m", 1))), Reply::Bool(true));
}

#[test]
fn a_waiter_whose_session_ends_is_answered_and_dropped() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    ok(t.anon(set("l", 1)));
    assert_eq!(t.run(a, wait("l", None)), Outcome::Pending);
    assert_eq!(t.run(b, wait("l", None)), Outcome::Pending);
    t.events();
    ok(t.run(a, Op::Session(SessionOp::Close)));
    assert_eq!(t.completions(), vec![(a, 1, Err(Error::SessionLost(a)))]);
    assert_eq!(latches(&t), vec![("l".into(), 1, 1)]);
    let index = t.next_index();
    ok(t.anon(count_down("l")));
    assert_eq!(t.events(), vec![released(b, 1, index)]);
}

#[test]
fn latch_waiters_survive_a_snapshot() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    ok(t.anon(set("l", 2)));
    ok(t.anon(set("other", 5)));
    assert_eq!(t.run(a, wait("l", None)), Outcome::Pending);
    assert_eq!(t.run(b, wait("l", Some(500))), Outcome::Pending);
    ok(t.anon(count_down("l")));
    t.events();
    t.assert_snapshot_round_trips(&[count_q("l"), count_q("other"), count_q("never")]);
    t.restore_fresh();
    assert_eq!(count(&t, "l"), 1);
    // The restored waiter's timeout still fires…
    t.advance_ms(500);
    let index = t.next_index();
    t.tick();
    assert_eq!(t.events(), vec![Event::Completed { session: b, seq: 1, result: Err(Error::Timeout), index }]);
    // …and the other waiter is still released by the last count-down.
    let index = t.next_index();
    assert_eq!(ok(t.anon(count_down("l"))), Reply::Count(0));
    assert_eq!(t.events(), vec![released(a, 1, index)]);
    assert_eq!(count(&t, "other"), 5);
}
