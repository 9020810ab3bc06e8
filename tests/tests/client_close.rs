//! A client that closes its session releases what it holds at once and opens no other.

use concord_core::client::ClientEvent;
use concord_core::machine::lock::LockOp;
use concord_core::machine::lock::LockQuery;
use concord_core::machine::{Error, MachineBugs, Op, QueryOp, Reply};
use concord_core::Consistency;
use concord_tests::group::Group;

fn lock_op() -> Op {
    Op::Lock(LockOp::Lock { name: "L".into(), timeout_ms: None })
}

/// Client `c` takes lock L (waiting for it up to 5 s of simulated time).
fn lock_l(g: &mut Group, c: usize) -> concord_core::client::OpId {
    let op = g.submit(c, lock_op());
    assert!(g.run_until(5_000_000, |g| g.result(c, op).is_some()), "client {c} is answered");
    op
}

#[test]
fn closing_releases_at_once_and_does_not_reopen() {
    let mut g = Group::new(3, 2, 60_000, MachineBugs::default());
    assert!(g.run_until(10_000_000, |g| g.leader().is_some() && g.has_session(0) && g.has_session(1)));
    lock_l(&mut g, 0);
    let waiting = g.submit(1, lock_op());
    g.run_for(100_000);
    let close = g.close(0);
    assert!(g.run_until(5_000_000, |g| g.result(0, close).is_some()), "the close is answered");
    // Client 1 is granted the lock by the close, long before client 0's 60 s TTL.
    assert!(g.run_until(2_000_000, |g| g.result(1, waiting).is_some()));
    assert!(matches!(g.result(1, waiting), Some(ClientEvent::Done { result: Ok(Reply::Fence(_)), .. })));
    // And client 0 opens no new session.
    g.run_for(3_000_000);
    assert!(!g.has_session(0));
    let leader = g.leader().expect("a leader");
    assert_eq!(g.replicas[&leader].node().machine().sessions().count(), 1, "only client 1's session is open");
}

/// A client cut off from the cluster gives its session up before the cluster can expire
/// it (and hand what it held to someone else).
#[test]
fn a_cut_off_client_reports_its_session_lost_before_the_cluster_expires_it() {
    let mut g = Group::new(3, 2, 2_000, MachineBugs::default());
    assert!(g.run_until(10_000_000, |g| g.leader().is_some() && g.has_session(0) && g.has_session(1)));
    lock_l(&mut g, 0);
    let waiting = g.submit(1, lock_op());
    g.run_for(50_000);
    // From now on nothing client 0 sends arrives.
    g.request_fate = Box::new(|c, _, _| if c == 0 { vec![] } else { vec![500] });
    let lost =
        g.run_until(5_000_000, |g| g.events[0].iter().any(|e| matches!(e, ClientEvent::SessionLost(_))));
    assert!(lost, "client 0 reports its session lost");
    assert!(g.result(1, waiting).is_none(), "client 1 is not granted the lock before client 0 gave it up");
    assert!(
        g.run_until(5_000_000, |g| g.result(1, waiting).is_some()),
        "the cluster expires client 0's session"
    );
}

/// A release pinned to a lost session fails with `SessionLost` and leaves alone the
/// client's newer hold of the same lock; the same release without the pin takes it.
#[test]
fn a_release_pinned_to_a_lost_session_never_reaches_the_new_one() {
    let mut g = Group::new(3, 1, 2_000, MachineBugs::default());
    assert!(g.run_until(10_000_000, |g| g.leader().is_some() && g.has_session(0)));
    let old = g.clients[0].session().expect("a session");
    lock_l(&mut g, 0);
    // Cut client 0 off until it gives its session up, then let it open a new one.
    g.request_fate = Box::new(|_, _, _| vec![]);
    assert!(g.run_until(5_000_000, |g| g.events[0].iter().any(|e| matches!(e, ClientEvent::SessionLost(_)))));
    // Still cut off, with no session: a release pinned to the lost one fails at once.
    let early = g.submit_in(0, Op::Lock(LockOp::Unlock { name: "L".into() }), old);
    assert!(
        matches!(g.result(0, early), Some(ClientEvent::Done { result: Err(Error::SessionLost(s)), .. }) if *s == old),
        "{:?}",
        g.result(0, early)
    );
    g.request_fate = Box::new(|_, _, _| vec![500]);
    // No command, no session: a new one opens only when the next command needs it.
    g.run_for(1_000_000);
    assert!(!g.has_session(0));
    let again = lock_l(&mut g, 0);
    let new = g.clients[0].session().expect("a new session, opened for the lock");
    assert_ne!(new, old);
    assert!(
        matches!(g.result(0, again), Some(ClientEvent::Done { result: Ok(Reply::Fence(_)), session: Some(s), .. }) if *s == new)
    );

    let stale = g.submit_in(0, Op::Lock(LockOp::Unlock { name: "L".into() }), old);
    assert!(g.run_until(1_000_000, |g| g.result(0, stale).is_some()));
    assert!(
        matches!(g.result(0, stale), Some(ClientEvent::Done { result: Err(Error::SessionLost(s)), .. }) if *s == old),
        "{:?}",
        g.result(0, stale)
    );
    let count = |g: &mut Group| {
        let q =
            g.read(0, QueryOp::Lock(LockQuery::LockCount { name: "L".into() }), Consistency::Linearizable);
        assert!(g.run_until(5_000_000, |g| g.result(0, q).is_some()));
        match g.result(0, q) {
            Some(ClientEvent::Done { result: Ok(Reply::Count(n)), .. }) => *n,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(count(&mut g), 1, "the new session's hold is intact");
    // Unpinned, the same release reaches the new session: that is what the pin prevents.
    let unpinned = g.submit(0, Op::Lock(LockOp::Unlock { name: "L".into() }));
    assert!(g.run_until(5_000_000, |g| g.result(0, unpinned).is_some()));
    assert_eq!(count(&mut g), 0);
}
