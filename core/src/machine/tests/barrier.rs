//! Barriers: a generation trips once with exactly its parties, and breaks for everyone
//! when a waiting party leaves.

use super::{err, ok, T};
use crate::machine::barrier::{BarrierError, BarrierOp};
use crate::machine::session::SessionOp;
use crate::machine::{BarrierView, Error, Event, Limit, Limits, Op, Outcome, Reply, SessionId};
use crate::StateMachine;
use alloc::vec;
use alloc::vec::Vec;

const TTL_MS: u64 = 60_000;

fn wait(name: &str, parties: u32, timeout_ms: Option<u64>) -> Op {
    Op::Barrier(BarrierOp::Wait { name: name.into(), parties, timeout_ms })
}

fn tripped(generation: u64, arrival: u32) -> Reply {
    Reply::Barrier { generation, arrival }
}

fn completed(session: SessionId, seq: u64, result: Result<Reply, Error>, index: u64) -> Event {
    Event::Completed { session, seq, result, index }
}

fn broken() -> Error {
    Error::Barrier(BarrierError::Broken)
}

/// The view of barrier `name`: (generation, parties, arrived).
fn barrier(t: &T, name: &str) -> Option<(u64, u32, usize)> {
    t.m.view()
        .barriers
        .into_iter()
        .find(|b| b.name == name)
        .map(|BarrierView { generation, parties, arrived, .. }| (generation, parties, arrived))
}

#[test]
fn a_generation_trips_once_all_its_parties_arrive() {
    let mut t = T::new();
    let [a, b, c] = [t.open(TTL_MS), t.open(TTL_MS), t.open(TTL_MS)];
    assert_eq!(t.run(a, wait("b", 3, None)), Outcome::Pending);
    assert_eq!(t.run(b, wait("b", 3, Some(10_000))), Outcome::Pending);
    assert_eq!(barrier(&t, "b"), Some((0, 3, 2)));
    assert_eq!(t.events(), vec![], "tripped before the last party");
    let index = t.next_index();
    // The last party is answered directly; the others by the same entry, with their
    // arrival order.
    assert_eq!(ok(t.run(c, wait("b", 3, None))), tripped(0, 2));
    assert_eq!(
        t.events(),
        vec![completed(a, 1, Ok(tripped(0, 0)), index), completed(b, 1, Ok(tripped(0, 1)), index)]
    );
    assert_eq!(barrier(&t, "b"), Some((1, 3, 0)));
    // The released party's timeout went with it: only session leases remain.
    assert_eq!(t.m.next_deadline().map(|d| d.as_micros()), Some(TTL_MS * 1000));
}

#[test]
fn the_next_generation_starts_after_a_trip_with_its_own_party_count() {
    let mut t = T::new();
    let [a, b, c] = [t.open(TTL_MS), t.open(TTL_MS), t.open(TTL_MS)];
    ok(t.run(a, wait("b", 1, None)));
    assert_eq!(barrier(&t, "b"), Some((1, 1, 0)));
    assert_eq!(t.run(b, wait("b", 3, None)), Outcome::Pending);
    assert_eq!(t.run(a, wait("b", 3, None)), Outcome::Pending);
    t.events();
    let index = t.next_index();
    assert_eq!(ok(t.run(c, wait("b", 3, None))), tripped(1, 2));
    assert_eq!(
        t.events(),
        vec![completed(b, 1, Ok(tripped(1, 0)), index), completed(a, 2, Ok(tripped(1, 1)), index)]
    );
    // The same sessions can go round again.
    assert_eq!(t.run(c, wait("b", 2, None)), Outcome::Pending);
    assert_eq!(ok(t.run(a, wait("b", 2, None))), tripped(2, 1));
    assert_eq!(barrier(&t, "b"), Some((3, 2, 0)));
}

#[test]
fn a_single_party_barrier_trips_at_once() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    assert_eq!(ok(t.run(a, wait("solo", 1, None))), tripped(0, 0));
    assert_eq!(ok(t.run(a, wait("solo", 1, Some(0)))), tripped(1, 0));
    assert_eq!(t.events(), vec![]);
}

#[test]
fn an_arrival_with_a_different_party_count_is_refused() {
    let mut t = T::new();
    let [a, b, c] = [t.open(TTL_MS), t.open(TTL_MS), t.open(TTL_MS)];
    assert_eq!(t.run(a, wait("b", 2, None)), Outcome::Pending);
    assert_eq!(
        err(t.run(b, wait("b", 3, None))),
        Error::Barrier(BarrierError::PartiesMismatch { expected: 2 })
    );
    assert_eq!(
        err(t.run(b, wait("b", 1, None))),
        Error::Barrier(BarrierError::PartiesMismatch { expected: 2 })
    );
    // The refused arrivals did not count.
    assert_eq!(barrier(&t, "b"), Some((0, 2, 1)));
    assert_eq!(ok(t.run(c, wait("b", 2, None))), tripped(0, 1));
}

#[test]
fn a_session_cannot_arrive_twice_in_one_generation() {
    let mut t = T::new();
    let [a, b] = [t.open(TTL_MS), t.open(TTL_MS)];
    assert_eq!(t.run(a, wait("b", 2, None)), Outcome::Pending);
    // Even as what would be the last party.
    assert_eq!(err(t.run(a, wait("b", 2, None))), Error::Barrier(BarrierError::AlreadyWaiting));
    assert_eq!(barrier(&t, "b"), Some((0, 2, 1)));
    assert_eq!(ok(t.run(b, wait("b", 2, None))), tripped(0, 1));
}

#[test]
fn a_retried_wait_is_not_counted_twice() {
    let mut t = T::new();
    let [a, b] = [t.open(TTL_MS), t.open(TTL_MS)];
    assert_eq!(t.run_seq(a, 1, 1, wait("b", 2, None)), Outcome::Pending);
    assert_eq!(t.run_seq(a, 1, 1, wait("b", 2, None)), Outcome::Pending);
    assert_eq!(barrier(&t, "b"), Some((0, 2, 1)));
    assert_eq!(ok(t.run(b, wait("b", 2, None))), tripped(0, 1));
    // After the trip the retry is answered with the party's result.
    assert_eq!(ok(t.run_seq(a, 1, 1, wait("b", 2, None))), tripped(0, 0));
    assert_eq!(barrier(&t, "b"), Some((1, 2, 0)));
}

#[test]
fn a_timeout_breaks_the_generation_for_everyone() {
    let mut t = T::new();
    let [a, b, c] = [t.open(TTL_MS), t.open(TTL_MS), t.open(TTL_MS)];
    assert_eq!(t.run(a, wait("b", 3, None)), Outcome::Pending);
    assert_eq!(t.run(b, wait("b", 3, Some(100))), Outcome::Pending);
    t.events();
    t.advance_ms(99);
    t.tick();
    assert_eq!(t.events(), vec![]);
    t.advance_ms(1);
    let index = t.next_index();
    t.tick();
    let events = t.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.contains(&completed(b, 1, Err(Error::Timeout), index)));
    assert!(events.contains(&completed(a, 1, Err(broken()), index)));
    assert_eq!(barrier(&t, "b"), Some((1, 3, 0)));
    // A later arrival starts the next generation, which can trip normally.
    assert_eq!(t.run(c, wait("b", 2, None)), Outcome::Pending);
    assert_eq!(ok(t.run(a, wait("b", 2, None))), tripped(1, 1));
    assert_eq!(t.completions(), vec![(c, 1, Ok(tripped(1, 0)))]);
}

#[test]
fn a_lost_session_breaks_the_generation_for_everyone() {
    let mut t = T::new();
    let a = t.open(500);
    let [b, c] = [t.open(TTL_MS), t.open(TTL_MS)];
    assert_eq!(t.run(b, wait("b", 3, None)), Outcome::Pending);
    assert_eq!(t.run(a, wait("b", 3, None)), Outcome::Pending);
    t.events();
    t.advance_ms(500);
    let index = t.next_index();
    t.tick();
    let completions: Vec<Event> =
        t.events().into_iter().filter(|e| matches!(e, Event::Completed { .. })).collect();
    assert_eq!(completions.len(), 2, "{completions:?}");
    assert!(completions.contains(&completed(a, 1, Err(Error::SessionLost(a)), index)));
    assert!(completions.contains(&completed(b, 1, Err(broken()), index)));
    assert_eq!(barrier(&t, "b"), Some((1, 3, 0)));
    // The survivors start over.
    assert_eq!(t.run(b, wait("b", 2, None)), Outcome::Pending);
    assert_eq!(ok(t.run(c, wait("b", 2, None))), tripped(1, 1));
}

#[test]
fn a_closed_session_breaks_the_generation() {
    let mut t = T::new();
    let [a, b] = [t.open(TTL_MS), t.open(TTL_MS)];
    assert_eq!(t.run(a, wait("b", 3, None)), Outcome::Pending);
    assert_eq!(t.run(b, wait("b", 3, None)), Outcome::Pending);
    t.events();
    ok(t.run(b, Op::Session(SessionOp::Close)));
    let mut got = t.completions();
    got.sort_by_key(|(s, _, _)| *s);
    assert_eq!(got, vec![(a, 1, Err(broken())), (b, 1, Err(Error::SessionLost(b)))]);
    assert_eq!(barrier(&t, "b"), Some((1, 3, 0)));
}

#[test]
fn a_zero_timeout_trips_as_the_last_party_or_fails_without_arriving() {
    let mut t = T::new();
    let [a, b] = [t.open(TTL_MS), t.open(TTL_MS)];
    assert_eq!(err(t.run(a, wait("b", 2, Some(0)))), Error::Timeout);
    assert!(barrier(&t, "b").is_none_or(|(g, _, arrived)| g == 0 && arrived == 0));
    assert_eq!(t.run(b, wait("b", 2, None)), Outcome::Pending);
    // Not arriving did not break anything: the waiting party is still there.
    assert_eq!(barrier(&t, "b"), Some((0, 2, 1)));
    assert_eq!(ok(t.run(a, wait("b", 2, Some(0)))), tripped(0, 1));
    assert_eq!(t.completions(), vec![(b, 1, Ok(tripped(0, 0)))]);
}

#[test]
fn a_wait_needs_a_session_and_a_sequence() {
    let mut t = T::new();
    let s = t.open(TTL_MS);
    assert_eq!(err(t.anon(wait("b", 1, None))), Error::SessionRequired);
    assert_eq!(err(t.run_seq(s, 0, 0, wait("b", 1, None))), Error::SessionRequired);
    assert_eq!(barrier(&t, "b"), None);
}

#[test]
fn parties_names_timeouts_and_objects_are_limited() {
    let limits = Limits {
        barrier_parties_max: 3,
        name_bytes_max: 4,
        wait_timeout_max_ms: 1000,
        objects_per_kind_max: 1,
        ..Limits::default()
    };
    let mut t = T::with_limits(limits);
    let s = t.open(TTL_MS);
    let parties = Error::Limit { limit: Limit::BarrierParties, max: 3 };
    assert_eq!(
        err(t.run(s, wait("b", 0, None))),
        Error::BelowMinimum { limit: Limit::BarrierParties, min: 1 }
    );
    assert_eq!(err(t.run(s, wait("b", 4, None))), parties);
    assert_eq!(err(t.run(s, wait("", 1, None))), Error::BelowMinimum { limit: Limit::NameBytes, min: 1 });
    assert_eq!(err(t.run(s, wait("bbbbb", 1, None))), Error::Limit { limit: Limit::NameBytes, max: 4 });
    assert_eq!(
        err(t.run(s, wait("b", 2, Some(1001)))),
        Error::Limit { limit: Limit::WaitTimeout, max: 1000 }
    );
    assert_eq!(barrier(&t, "b"), None);
    assert_eq!(t.run(s, wait("b", 3, Some(1000))), Outcome::Pending);
    assert_eq!(err(t.run(s, wait("c", 1, None))), Error::Limit { limit: Limit::Objects, max: 1 });
}

#[test]
fn barrier_arrivals_survive_a_snapshot() {
    let mut t = T::new();
    let [a, b, c] = [t.open(TTL_MS), t.open(TTL_MS), t.open(TTL_MS)];
    ok(t.run(c, wait("done", 1, None)));
    assert_eq!(t.run(a, wait("b", 3, None)), Outcome::Pending);
    assert_eq!(t.run(b, wait("b", 3, Some(5_000))), Outcome::Pending);
    t.events();
    t.assert_snapshot_round_trips(&[]);
    t.restore_fresh();
    assert_eq!(barrier(&t, "b"), Some((0, 3, 2)));
    assert_eq!(barrier(&t, "done"), Some((1, 1, 0)));
    let index = t.next_index();
    assert_eq!(ok(t.run(c, wait("b", 3, None))), tripped(0, 2));
    assert_eq!(
        t.events(),
        vec![completed(a, 1, Ok(tripped(0, 0)), index), completed(b, 1, Ok(tripped(0, 1)), index)]
    );
    // The restored timeout was cancelled by the trip: nothing fires at 5 s.
    t.advance_ms(5_000);
    t.tick();
    assert_eq!(t.events(), vec![]);
}

#[test]
fn a_restored_waiter_still_times_out_and_breaks_the_generation() {
    let mut t = T::new();
    let [a, b] = [t.open(TTL_MS), t.open(TTL_MS)];
    assert_eq!(t.run(a, wait("b", 3, None)), Outcome::Pending);
    assert_eq!(t.run(b, wait("b", 3, Some(200))), Outcome::Pending);
    t.events();
    t.restore_fresh();
    t.advance_ms(200);
    let index = t.next_index();
    t.tick();
    let mut got = t.events();
    got.sort_by_key(|e| match e {
        Event::Completed { session, .. } => *session,
        _ => SessionId(u64::MAX),
    });
    assert_eq!(got, vec![completed(a, 1, Err(broken()), index), completed(b, 1, Err(Error::Timeout), index)]);
    assert_eq!(barrier(&t, "b"), Some((1, 3, 0)));
}
