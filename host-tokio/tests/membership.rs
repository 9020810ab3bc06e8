//! Growing a running cluster: `concord member add` and a node started with `--join`, which
//! the others were never given the address of.

mod common;

use common::{stdout, Cluster};
use std::time::{Duration, Instant};

#[test]
fn a_node_added_at_run_time_joins_catches_up_and_votes() {
    let mut c = Cluster::start(3);
    for _ in 0..5 {
        assert!(c.concord(&["counter", "incr", "n"]).status.success());
    }
    let id = c.add_node();
    // It catches up with the log (or a snapshot of it) through the leader.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let applied = c.status(id).and_then(|s| s["raft"]["applied_index"].as_u64()).unwrap_or(0);
        let leader_commit = c
            .leader()
            .and_then(|l| c.status(l))
            .and_then(|s| s["raft"]["commit_index"].as_u64())
            .unwrap_or(u64::MAX);
        if applied > 0 && applied >= leader_commit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} did not catch up: applied {applied}, commit {leader_commit}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stdout(&c.concord(&["member", "list"])), "voters [1, 2, 3, 4], learners []");
    // With four voters the quorum is three: with one original node down, every write
    // needs node 4's acknowledgement.
    let leader = c.wait_leader(Duration::from_secs(5));
    let victim = (1..=3).find(|n| *n != leader).unwrap_or(1);
    c.kill(victim);
    let o = c.concord(&["counter", "incr", "n"]);
    assert_eq!(stdout(&o), "6", "{}", String::from_utf8_lossy(&o.stderr));
}
