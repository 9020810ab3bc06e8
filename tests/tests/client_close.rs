//! A client that closes its session releases what it holds at once and opens no other.

use concord_core::client::ClientEvent;
use concord_core::machine::lock::LockOp;
use concord_core::machine::{MachineBugs, Op, Reply};
use concord_tests::group::Group;

#[test]
fn closing_releases_at_once_and_does_not_reopen() {
    let mut g = Group::new(3, 2, 60_000, MachineBugs::default());
    assert!(g.run_until(10_000_000, |g| g.leader().is_some() && g.has_session(0) && g.has_session(1)));
    let held = g.submit(0, Op::Lock(LockOp::Lock { name: "L".into(), timeout_ms: None }));
    assert!(g.run_until(5_000_000, |g| g.result(0, held).is_some()));
    let waiting = g.submit(1, Op::Lock(LockOp::Lock { name: "L".into(), timeout_ms: None }));
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
    let held = g.submit(0, Op::Lock(LockOp::Lock { name: "L".into(), timeout_ms: None }));
    assert!(g.run_until(5_000_000, |g| g.result(0, held).is_some()));
    let waiting = g.submit(1, Op::Lock(LockOp::Lock { name: "L".into(), timeout_ms: None }));
    g.run_for(50_000);
    // From now on nothing client 0 sends arrives.
    g.request_fate = Box::new(|c, _, _| if c == 0 { vec![] } else { vec![500] });
    let lost =
        g.run_until(5_000_000, |g| g.events[0].iter().any(|e| matches!(e, ClientEvent::SessionLost(_))));
    assert!(lost, "client 0 reports its session lost");
    let lost_at = g.now;
    assert!(g.result(1, waiting).is_none(), "client 1 is not granted the lock before client 0 gave it up");
    assert!(
        g.run_until(5_000_000, |g| g.result(1, waiting).is_some()),
        "the cluster expires client 0's session"
    );
    assert!(g.now > lost_at, "the grant came after client 0 had given the lock up");
}
