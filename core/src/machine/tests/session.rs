use super::{done, err, ok, T};
use crate::machine::lock::{LockOp, LockQuery};
use crate::machine::long::{LongOp, LongQuery};
use crate::machine::session::SessionOp;
use crate::machine::{Command, Error, Event, Limit, Limits, Op, QueryOp, Reply, SessionEnd, SessionRef};
use crate::StateMachine;

fn incr(name: &str) -> Op {
    Op::Long(LongOp::AddAndGet { name: name.into(), delta: 1 })
}

fn counter(t: &T, name: &str) -> Reply {
    t.query(None, QueryOp::Long(LongQuery::Get { name: name.into() })).unwrap()
}

#[test]
fn a_retried_command_is_applied_once_and_answered_from_the_cache() {
    let mut t = T::new();
    let s = t.open(1000);
    let first = t.next_index();
    assert_eq!(ok(t.run_seq(s, 1, 1, incr("c"))), Reply::Long(1));
    // The same (session, seq) again, e.g. after the reply was lost: not applied again,
    // and answered with the entry where it took effect.
    assert_eq!(
        t.run_seq(s, 1, 1, incr("c")),
        crate::machine::Outcome::Replayed { result: Ok(Reply::Long(1)), index: first, queued: false }
    );
    assert_eq!(counter(&t, "c"), Reply::Long(1));
    assert_eq!(ok(t.run_seq(s, 2, 2, incr("c"))), Reply::Long(2));
    assert_eq!(counter(&t, "c"), Reply::Long(2));
}

#[test]
fn acknowledged_sequences_are_refused_not_reapplied() {
    let mut t = T::new();
    let s = t.open(1000);
    ok(t.run_seq(s, 1, 1, incr("c")));
    ok(t.run_seq(s, 2, 2, incr("c")));
    assert_eq!(err(t.run_seq(s, 1, 2, incr("c"))), Error::StaleSequence { seq: 1, floor: 2 });
    assert_eq!(counter(&t, "c"), Reply::Long(2));
}

#[test]
fn the_reply_cache_is_bounded_and_evicts_the_lowest_sequence() {
    let mut t = T::with_limits(Limits { session_replies_max: 2, ..Limits::default() });
    let s = t.open(1000);
    // The client never acknowledges: the cache holds the last two outcomes.
    for seq in 1..=3 {
        ok(t.run_seq(s, seq, 1, incr("c")));
    }
    assert_eq!(err(t.run_seq(s, 1, 1, incr("c"))), Error::StaleSequence { seq: 1, floor: 2 });
    assert_eq!(ok(t.run_seq(s, 2, 1, incr("c"))), Reply::Long(2));
    assert_eq!(ok(t.run_seq(s, 3, 1, incr("c"))), Reply::Long(3));
    assert_eq!(counter(&t, "c"), Reply::Long(3));
}

#[test]
fn sequence_zero_opts_out_of_deduplication() {
    let mut t = T::new();
    let s = t.open(1000);
    ok(t.run_seq(s, 0, 0, incr("c")));
    ok(t.run_seq(s, 0, 0, incr("c")));
    assert_eq!(counter(&t, "c"), Reply::Long(2));
}

#[test]
fn a_session_expires_after_its_ttl_and_releases_what_it_owned() {
    let mut t = T::new();
    let a = t.open(500);
    let b = t.open(5000);
    assert!(matches!(
        ok(t.run(a, Op::Lock(LockOp::Lock { name: "l".into(), timeout_ms: None }))),
        Reply::Fence(_)
    ));
    assert!(
        t.run(b, Op::Lock(LockOp::Lock { name: "l".into(), timeout_ms: None }))
            == crate::machine::Outcome::Pending
    );
    let b_seq = t.last_seq(b);
    t.events();
    // Sub-second TTL: the leader's tick past 500 ms expires `a`.
    assert_eq!(t.m.next_deadline().map(|d| d.as_micros()), Some(500_000));
    t.advance_ms(499);
    t.tick();
    assert!(t.m.sessions().any(|s| s == a));
    t.advance_ms(1);
    let fence = t.next_index();
    t.tick();
    assert!(!t.m.sessions().any(|s| s == a));
    let events = t.events();
    assert!(events.contains(&Event::SessionEnded { session: a, reason: SessionEnd::Expired, index: fence }));
    // The lock passed to the waiter in the same entry.
    assert!(events.contains(&Event::Completed {
        session: b,
        seq: b_seq,
        result: Ok(Reply::Fence(crate::machine::Fence(fence))),
        index: fence
    }));
    // The owner's next call is told its session is gone.
    assert_eq!(err(t.run(a, Op::Lock(LockOp::Unlock { name: "l".into() }))), Error::SessionLost(a));
    assert_eq!(
        t.query(Some(b), QueryOp::Lock(LockQuery::IsLockedByMe { name: "l".into() })),
        Ok(Reply::Bool(true))
    );
}

#[test]
fn any_command_and_keep_alives_refresh_the_lease() {
    let mut t = T::new();
    let s = t.open(1000);
    for _ in 0..5 {
        t.advance_ms(600);
        ok(t.run(s, Op::Session(SessionOp::KeepAlive)));
        t.tick();
    }
    t.advance_ms(600);
    ok(t.run(s, incr("c")));
    t.advance_ms(600);
    t.tick();
    assert!(t.m.sessions().any(|x| x == s));
    t.advance_ms(400);
    t.tick();
    assert!(!t.m.sessions().any(|x| x == s));
}

#[test]
fn a_new_leader_extends_every_session_by_one_ttl_before_expiring_any() {
    let mut t = T::new();
    let s = t.open(1000);
    // The log clock reached the deadline during an election: the new leader's first
    // entry extends the session instead of expiring it.
    t.advance_ms(1500);
    t.leader_changed();
    assert!(t.m.sessions().any(|x| x == s));
    assert_eq!(t.m.next_deadline().map(|d| d.as_micros()), Some(2_500_000));
    t.advance_ms(999);
    t.tick();
    assert!(t.m.sessions().any(|x| x == s));
    t.advance_ms(1);
    t.tick();
    assert!(!t.m.sessions().any(|x| x == s));
}

#[test]
fn closing_a_session_releases_it_and_later_calls_are_refused() {
    let mut t = T::new();
    let s = t.open(1000);
    ok(t.run(s, Op::Lock(LockOp::Lock { name: "l".into(), timeout_ms: None })));
    let index = t.next_index();
    assert_eq!(ok(t.run(s, Op::Session(SessionOp::Close))), Reply::Unit);
    assert!(t.events().contains(&Event::SessionEnded { session: s, reason: SessionEnd::Closed, index }));
    assert_eq!(
        t.query(None, QueryOp::Lock(LockQuery::IsLocked { name: "l".into() })),
        Ok(Reply::Bool(false))
    );
    assert_eq!(err(t.run(s, Op::Session(SessionOp::KeepAlive))), Error::SessionLost(s));
}

#[test]
fn session_limits_are_typed_errors() {
    let mut t = T::with_limits(Limits { sessions_max: 1, ..Limits::default() });
    let limits = t.m.limits().clone();
    let open = |ttl_ms| Op::Session(SessionOp::Open { ttl_ms });
    assert_eq!(
        err(t.anon(open(limits.session_ttl_min_ms - 1))),
        Error::BelowMinimum { limit: Limit::SessionTtl, min: limits.session_ttl_min_ms }
    );
    assert_eq!(
        err(t.anon(open(limits.session_ttl_max_ms + 1))),
        Error::Limit { limit: Limit::SessionTtl, max: limits.session_ttl_max_ms }
    );
    t.open(1000);
    assert_eq!(err(t.anon(open(1000))), Error::Limit { limit: Limit::Sessions, max: 1 });
    assert_eq!(err(t.anon(Op::Session(SessionOp::KeepAlive))), Error::SessionRequired);
}

#[test]
fn undecodable_commands_and_queries_are_errors() {
    let mut t = T::new();
    let ctx = crate::ApplyContext { index: 1, term: 1, time: crate::Instant::ZERO };
    assert_eq!(t.m.apply(ctx, &[0xff, 0xff, 0xff]), crate::machine::Outcome::Done(Err(Error::Malformed)));
    assert_eq!(t.m.query(&[0xff]), crate::machine::Outcome::Done(Err(Error::Malformed)));
    // An unknown session is lost, not silently created.
    let ghost = crate::machine::SessionId(77);
    let cmd = Command { session: Some(SessionRef { id: ghost, seq: 1, acked: 1 }), op: incr("c") };
    assert_eq!(done(t.apply(&cmd)), Err(Error::SessionLost(ghost)));
}

#[test]
fn sessions_and_reply_caches_survive_a_snapshot() {
    let mut t = T::new();
    let s = t.open(1000);
    ok(t.run_seq(s, 1, 1, incr("c")));
    t.assert_snapshot_round_trips(&[QueryOp::Sessions]);
    let mut bytes = alloc::vec::Vec::new();
    t.m.snapshot(&mut bytes);
    t.m.restore(&bytes).unwrap();
    // The retry after restore is still answered from the cache.
    assert_eq!(ok(t.run_seq(s, 1, 1, incr("c"))), Reply::Long(1));
    assert_eq!(counter(&t, "c"), Reply::Long(1));
}

#[test]
fn limits_that_make_no_sense_are_refused_with_a_typed_error() {
    use crate::machine::{Concord, LimitsError};
    let refused = |l: Limits| Concord::new(l).err();
    assert_eq!(refused(Limits::default()), None);
    assert_eq!(
        refused(Limits { session_replies_max: 0, ..Limits::default() }),
        Some(LimitsError::Zero("session_replies_max"))
    );
    assert_eq!(
        refused(Limits { lock_reentrancy_max: 0, ..Limits::default() }),
        Some(LimitsError::Zero("lock_reentrancy_max"))
    );
    assert_eq!(
        refused(Limits { session_ttl_min_ms: 5_000, session_ttl_max_ms: 1_000, ..Limits::default() }),
        Some(LimitsError::SessionTtlRange)
    );
    assert_eq!(alloc::format!("{}", LimitsError::Zero("list_max")), "limit list_max must be at least 1");
}
