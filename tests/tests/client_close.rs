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
