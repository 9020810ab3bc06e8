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

#[test]
fn a_node_removed_while_stopped_learns_it_when_it_resumes_and_exits() {
    let mut c = Cluster::start(3);
    let leader = c.wait_leader(Duration::from_secs(5));
    let gone = (1..=3).find(|n| *n != leader).unwrap_or(3);
    // Stopped, it cannot receive the entry that removes it.
    let pid = c.node(gone).child.as_ref().expect("running").id().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().expect("kill").success());
    let o = c.concord(&["member", "remove", &gone.to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().expect("kill").success());
    // It campaigns, hears from the leader that it was removed, and stops by itself.
    let child = c.nodes[gone as usize - 1].child.as_mut().expect("running");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the removed node {gone} is still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(c.dir.path().join(format!("node-{gone}.log"))).expect("log");
    assert!(log.contains("was removed from the cluster"), "a clear message:\n{log}");
    assert!(log.matches("raft state changed").count() == 0, "no per-round state logs at INFO:\n{log}");
    c.nodes[gone as usize - 1].child = None;
    assert!(c.concord(&["counter", "incr", "n"]).status.success(), "the two left commit");
}
