//! Read-write locks: shared readers, one writer, FIFO admission, reentrancy within a mode,
//! timeouts, session end, exactly-once retries and snapshots.

use super::{err, ok, T};
use crate::machine::rwlock::{Mode, RwLockError, RwLockOp, RwLockQuery};
use crate::machine::session::SessionOp;
use crate::machine::{Error, Event, Fence, Limit, Limits, Op, Outcome, QueryOp, Reply, SessionId};
use alloc::vec;

/// Long enough that no session expires unless a test means it to.
const TTL_MS: u64 = 60_000;

fn read(name: &str) -> Op {
    Op::RwLock(RwLockOp::Lock { name: name.into(), mode: Mode::Read, timeout_ms: None })
}

fn write(name: &str) -> Op {
    Op::RwLock(RwLockOp::Lock { name: name.into(), mode: Mode::Write, timeout_ms: None })
}

fn lock_for(name: &str, mode: Mode, timeout_ms: u64) -> Op {
    Op::RwLock(RwLockOp::Lock { name: name.into(), mode, timeout_ms: Some(timeout_ms) })
}

fn unlock(name: &str) -> Op {
    Op::RwLock(RwLockOp::Unlock { name: name.into() })
}

fn fence(index: u64) -> Reply {
    Reply::Fence(Fence(index))
}

fn rw_err(e: RwLockError) -> Error {
    Error::RwLock(e)
}

fn granted(session: SessionId, seq: u64, index: u64) -> Event {
    Event::Completed { session, seq, result: Ok(fence(index)), index }
}

fn failed(session: SessionId, seq: u64, error: Error, index: u64) -> Event {
    Event::Completed { session, seq, result: Err(error), index }
}

/// `s` takes `name` in the mode of `op` at once; returns the fence.
fn acquire(t: &mut T, s: SessionId, op: Op) -> u64 {
    let index = t.next_index();
    assert_eq!(ok(t.run(s, op)), fence(index));
    index
}

/// `s` applies `op`, which must queue; returns the sequence it waits with.
fn wait(t: &mut T, s: SessionId, op: Op) -> u64 {
    assert_eq!(t.run(s, op), Outcome::Pending);
    t.last_seq(s)
}

fn readers(t: &T, name: &str) -> Reply {
    t.query(None, QueryOp::RwLock(RwLockQuery::Readers { name: name.into() })).unwrap()
}

fn write_locked(t: &T, name: &str) -> bool {
    t.query(None, QueryOp::RwLock(RwLockQuery::IsWriteLocked { name: name.into() })).unwrap()
        == Reply::Bool(true)
}

/// The writer and its fence, from the machine's view.
fn writer(t: &T, name: &str) -> Option<(SessionId, Fence)> {
    t.m.view().rwlocks.into_iter().find(|l| l.name == name).and_then(|l| l.writer)
}

#[test]
fn readers_share_the_lock_each_fenced_by_its_grant() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    assert_eq!(readers(&t, "l"), Reply::Count(0));
    assert!(!write_locked(&t, "l"));
    let fa = acquire(&mut t, a, read("l"));
    let fb = acquire(&mut t, b, read("l"));
    assert!(fa < fb);
    assert_eq!(readers(&t, "l"), Reply::Count(2));
    assert!(!write_locked(&t, "l"));
    assert_eq!(ok(t.run(a, unlock("l"))), Reply::Count(0));
    assert_eq!(readers(&t, "l"), Reply::Count(1));
}

#[test]
fn a_writer_is_never_beside_anyone() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let fa = acquire(&mut t, a, write("l"));
    assert!(write_locked(&t, "l"));
    assert_eq!(writer(&t, "l"), Some((a, Fence(fa))));
    assert_eq!(err(t.run(b, lock_for("l", Mode::Read, 0))), Error::Timeout);
    assert_eq!(err(t.run(b, lock_for("l", Mode::Write, 0))), Error::Timeout);
    assert_eq!(readers(&t, "l"), Reply::Count(0));
    ok(t.run(a, unlock("l")));
    acquire(&mut t, b, read("l"));
    assert_eq!(err(t.run(a, lock_for("l", Mode::Write, 0))), Error::Timeout);
    assert!(!write_locked(&t, "l"));
    // Try-locks did not queue: the last reader's release leaves the lock free.
    ok(t.run(b, unlock("l")));
    assert_eq!(t.events(), vec![]);
    acquire(&mut t, a, write("l"));
}

#[test]
fn a_queued_writer_blocks_readers_that_arrive_after_it() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let w = t.open(TTL_MS);
    let r = t.open(TTL_MS);
    let r2 = t.open(TTL_MS);
    acquire(&mut t, a, read("l"));
    let w_seq = wait(&mut t, w, write("l"));
    // The lock is read-held, yet a new reader queues behind the writer.
    let r_seq = wait(&mut t, r, read("l"));
    assert_eq!(err(t.run(r2, lock_for("l", Mode::Read, 0))), Error::Timeout);
    assert_eq!(readers(&t, "l"), Reply::Count(1));
    let i = t.next_index();
    ok(t.run(a, unlock("l")));
    assert_eq!(t.events(), vec![granted(w, w_seq, i)]);
    assert_eq!(writer(&t, "l"), Some((w, Fence(i))));
    let j = t.next_index();
    ok(t.run(w, unlock("l")));
    assert_eq!(t.events(), vec![granted(r, r_seq, j)]);
    assert_eq!(readers(&t, "l"), Reply::Count(1));
}

#[test]
fn a_release_admits_every_reader_up_to_the_next_writer() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let r1 = t.open(TTL_MS);
    let r2 = t.open(TTL_MS);
    let w = t.open(TTL_MS);
    let r3 = t.open(TTL_MS);
    let fa = acquire(&mut t, a, write("l"));
    let r1_seq = wait(&mut t, r1, read("l"));
    let r2_seq = wait(&mut t, r2, read("l"));
    let w_seq = wait(&mut t, w, write("l"));
    let r3_seq = wait(&mut t, r3, read("l"));
    let i = t.next_index();
    ok(t.run(a, unlock("l")));
    assert_eq!(t.events(), vec![granted(r1, r1_seq, i), granted(r2, r2_seq, i)]);
    assert_eq!(readers(&t, "l"), Reply::Count(2));
    ok(t.run(r1, unlock("l")));
    assert_eq!(t.events(), vec![]);
    let j = t.next_index();
    ok(t.run(r2, unlock("l")));
    assert_eq!(t.events(), vec![granted(w, w_seq, j)]);
    let k = t.next_index();
    ok(t.run(w, unlock("l")));
    assert_eq!(t.events(), vec![granted(r3, r3_seq, k)]);
    // Writers' fences strictly increase.
    assert!(fa < i && i < j && j < k);
}

#[test]
fn holds_are_reentrant_within_one_mode_up_to_the_limit() {
    let mut t = T::with_limits(Limits { lock_reentrancy_max: 2, ..Limits::default() });
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let w = t.open(TTL_MS);
    let fr = acquire(&mut t, a, read("r"));
    wait(&mut t, w, write("r"));
    // A reader re-enters even with a writer queued (else it would deadlock itself).
    assert_eq!(ok(t.run(a, read("r"))), fence(fr));
    let reentrancy = Error::Limit { limit: Limit::LockReentrancy, max: 2 };
    assert_eq!(err(t.run(a, read("r"))), reentrancy);
    assert_eq!(ok(t.run(a, unlock("r"))), Reply::Count(1));
    assert_eq!(t.events(), vec![]);
    assert_eq!(ok(t.run(a, unlock("r"))), Reply::Count(0));
    assert!(write_locked(&t, "r"));
    let fw = acquire(&mut t, b, write("w"));
    assert_eq!(ok(t.run(b, lock_for("w", Mode::Write, 0))), fence(fw));
    assert_eq!(err(t.run(b, write("w"))), reentrancy);
    assert_eq!(ok(t.run(b, unlock("w"))), Reply::Count(1));
    assert!(write_locked(&t, "w"));
    assert_eq!(ok(t.run(b, unlock("w"))), Reply::Count(0));
    assert!(!write_locked(&t, "w"));
    assert_eq!(err(t.run(b, unlock("w"))), rw_err(RwLockError::NotHeld));
}

#[test]
fn a_session_cannot_hold_both_modes() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    acquire(&mut t, a, read("r"));
    assert_eq!(err(t.run(a, write("r"))), rw_err(RwLockError::HeldInOtherMode));
    assert_eq!(err(t.run(a, lock_for("r", Mode::Write, 0))), rw_err(RwLockError::HeldInOtherMode));
    acquire(&mut t, a, write("w"));
    assert_eq!(err(t.run(a, read("w"))), rw_err(RwLockError::HeldInOtherMode));
    assert_eq!(readers(&t, "w"), Reply::Count(0));
    assert_eq!(readers(&t, "r"), Reply::Count(1));
}

#[test]
fn a_timed_out_waiter_leaves_the_queue_and_admits_those_behind_it() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let w = t.open(TTL_MS);
    let r = t.open(TTL_MS);
    acquire(&mut t, a, read("l"));
    let w_seq = wait(&mut t, w, lock_for("l", Mode::Write, 100));
    let r_seq = wait(&mut t, r, lock_for("l", Mode::Read, 200));
    t.advance_ms(99);
    t.tick();
    assert_eq!(t.events(), vec![]);
    t.advance_ms(1);
    let i = t.next_index();
    t.tick();
    let events = t.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.contains(&failed(w, w_seq, Error::Timeout, i)));
    // The reader no longer waits behind a writer: admitted in the same entry.
    assert!(events.contains(&granted(r, r_seq, i)));
    assert_eq!(readers(&t, "l"), Reply::Count(2));
    // Its own timer went with the grant.
    t.advance_ms(100);
    t.tick();
    assert_eq!(t.events(), vec![]);
    assert_eq!(readers(&t, "l"), Reply::Count(2));
}

#[test]
fn rwlock_limits_and_session_rules_are_typed_errors() {
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
    let c = t.open(TTL_MS);
    assert_eq!(err(t.run(a, read(""))), Error::BelowMinimum { limit: Limit::NameBytes, min: 1 });
    assert_eq!(err(t.run(a, write("abcde"))), Error::Limit { limit: Limit::NameBytes, max: 4 });
    acquire(&mut t, a, write("abcd"));
    assert_eq!(err(t.run(b, read("q"))), Error::Limit { limit: Limit::Objects, max: 1 });
    assert_eq!(
        err(t.run(b, lock_for("abcd", Mode::Read, 1001))),
        Error::Limit { limit: Limit::WaitTimeout, max: 1000 }
    );
    wait(&mut t, b, lock_for("abcd", Mode::Read, 1000));
    assert_eq!(err(t.run(b, write("abcd"))), rw_err(RwLockError::AlreadyQueued));
    assert_eq!(err(t.run(b, read("abcd"))), rw_err(RwLockError::AlreadyQueued));
    assert_eq!(err(t.run(c, read("abcd"))), Error::Limit { limit: Limit::Waiters, max: 1 });
    // Locking and unlocking need a session; waiting, a sequence number too.
    assert_eq!(err(t.anon(read("abcd"))), Error::SessionRequired);
    assert_eq!(err(t.run_seq(c, 0, 0, read("abcd"))), Error::SessionRequired);
    assert_eq!(err(t.anon(unlock("abcd"))), Error::SessionRequired);
    assert_eq!(err(t.run(c, unlock("abcd"))), rw_err(RwLockError::NotHeld));
    // A queued session does not hold the lock.
    assert_eq!(err(t.run(b, unlock("abcd"))), rw_err(RwLockError::NotHeld));
    assert_eq!(err(t.run(c, unlock("never"))), rw_err(RwLockError::NotHeld));
    // A lock nobody holds or waits for is forgotten and no longer counts.
    ok(t.run(a, unlock("abcd")));
    ok(t.run(b, unlock("abcd")));
    acquire(&mut t, c, read("q"));
}

#[test]
fn a_writers_session_end_admits_the_waiting_readers() {
    let mut t = T::new();
    let a = t.open(500);
    let r1 = t.open(TTL_MS);
    let r2 = t.open(TTL_MS);
    acquire(&mut t, a, write("l"));
    ok(t.run(a, write("l")));
    let r1_seq = wait(&mut t, r1, read("l"));
    let r2_seq = wait(&mut t, r2, read("l"));
    t.advance_ms(500);
    let i = t.next_index();
    t.tick();
    let events = t.events();
    assert!(events.contains(&granted(r1, r1_seq, i)));
    assert!(events.contains(&granted(r2, r2_seq, i)));
    assert!(!write_locked(&t, "l"));
    assert_eq!(readers(&t, "l"), Reply::Count(2));
}

#[test]
fn a_waiting_or_reading_session_that_ends_lets_the_others_through() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let w = t.open(TTL_MS);
    let r = t.open(TTL_MS);
    let w2 = t.open(TTL_MS);
    acquire(&mut t, a, read("l"));
    let w_seq = wait(&mut t, w, write("l"));
    let r_seq = wait(&mut t, r, read("l"));
    // The queued writer leaves: the reader behind it joins the reading session.
    let i = t.next_index();
    ok(t.run(w, Op::Session(SessionOp::Close)));
    let events = t.events();
    assert!(events.contains(&failed(w, w_seq, Error::SessionLost(w), i)));
    assert!(events.contains(&granted(r, r_seq, i)));
    // The readers leave one by one: the last one admits the writer.
    acquire(&mut t, b, read("m"));
    let w2_seq = wait(&mut t, w2, write("m"));
    ok(t.run(a, Op::Session(SessionOp::Close)));
    assert!(!t.events().iter().any(|e| matches!(e, Event::Completed { .. })));
    let j = t.next_index();
    ok(t.run(b, Op::Session(SessionOp::Close)));
    assert!(t.events().contains(&granted(w2, w2_seq, j)));
    assert_eq!(writer(&t, "m"), Some((w2, Fence(j))));
    assert_eq!(readers(&t, "l"), Reply::Count(1));
}

#[test]
fn a_retried_lock_is_applied_once() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let w = t.open(TTL_MS);
    let i = t.next_index();
    assert_eq!(ok(t.run_seq(a, 1, 1, read("l"))), fence(i));
    assert_eq!(ok(t.run_seq(a, 1, 1, read("l"))), fence(i));
    assert_eq!(t.run_seq(w, 1, 1, write("l")), Outcome::Pending);
    assert_eq!(t.run_seq(w, 1, 1, write("l")), Outcome::Pending);
    // One hold, so one release frees it; one queued request, so one completion.
    let j = t.next_index();
    assert_eq!(ok(t.run_seq(a, 2, 2, unlock("l"))), Reply::Count(0));
    assert_eq!(t.events(), vec![granted(w, 1, j)]);
    assert_eq!(ok(t.run_seq(w, 1, 1, write("l"))), fence(j));
    assert_eq!(ok(t.run_seq(w, 2, 2, unlock("l"))), Reply::Count(0));
    assert!(!write_locked(&t, "l"));
}

#[test]
fn holds_and_waiters_survive_a_snapshot_and_complete_after_restore() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let r = t.open(TTL_MS);
    let w = t.open(TTL_MS);
    let r2 = t.open(TTL_MS);
    acquire(&mut t, a, read("l"));
    ok(t.run(a, read("l")));
    acquire(&mut t, r, read("l"));
    let w_seq = wait(&mut t, w, lock_for("l", Mode::Write, 1000));
    let r2_seq = wait(&mut t, r2, read("l"));
    t.events();
    t.assert_snapshot_round_trips(&[
        QueryOp::RwLock(RwLockQuery::Readers { name: "l".into() }),
        QueryOp::RwLock(RwLockQuery::IsWriteLocked { name: "l".into() }),
    ]);
    t.restore_fresh();
    assert_eq!(ok(t.run(a, unlock("l"))), Reply::Count(1));
    ok(t.run(a, unlock("l")));
    assert_eq!(t.events(), vec![]);
    let i = t.next_index();
    ok(t.run(r, unlock("l")));
    assert_eq!(t.events(), vec![granted(w, w_seq, i)]);
    let j = t.next_index();
    ok(t.run(w, unlock("l")));
    assert_eq!(t.events(), vec![granted(r2, r2_seq, j)]);
    // The writer's timer went with its grant.
    t.advance_ms(1000);
    t.tick();
    assert_eq!(t.events(), vec![]);
}

#[test]
fn a_waiter_restored_from_a_snapshot_still_times_out() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let w = t.open(TTL_MS);
    acquire(&mut t, a, read("l"));
    let w_seq = wait(&mut t, w, lock_for("l", Mode::Write, 100));
    t.assert_snapshot_round_trips(&[QueryOp::RwLock(RwLockQuery::Readers { name: "l".into() })]);
    t.restore_fresh();
    t.advance_ms(100);
    let i = t.next_index();
    t.tick();
    assert_eq!(t.events(), vec![failed(w, w_seq, Error::Timeout, i)]);
    acquire(&mut t, w, read("l"));
}
