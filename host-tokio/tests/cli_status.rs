//! `concord status` and stale reads when most of the cluster is gone: each node is asked
//! directly, so the table and stale reads need no leader, no quorum and no session.

mod common;

use common::{stdout, Cluster};
use std::process::Command;
use std::time::{Duration, Instant};

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("{e}: {} / {}", stdout(o), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn status_and_stale_reads_work_with_two_of_three_nodes_stopped() {
    let mut c = Cluster::start(3);
    for _ in 0..5 {
        assert!(c.concord(&["counter", "incr", "n"]).status.success());
    }
    // Healthy: every node answers, one leads, and the health check passes.
    let o = c.concord(&["status", "--health", "--output", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let s = json(&o);
    assert_eq!(s["healthy"], true);
    let nodes = s["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{s}");
    assert!(nodes.iter().all(|n| n["reachable"] == true), "{s}");
    assert_eq!(nodes.iter().filter(|n| n["role"] == "Leader").count(), 1, "{s}");
    let human = stdout(&c.concord(&["status"]));
    assert!(human.starts_with("ID") && human.lines().count() == 4, "{human}");

    // Every node applied the increments before two of them go.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !json(&c.concord(&["status", "--output", "json"]))["nodes"]
        .as_array()
        .is_some_and(|ns| ns.iter().all(|n| n["applied_index"] == ns[0]["applied_index"] && n["lag"] == 0))
    {
        assert!(Instant::now() < deadline, "the nodes never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The leader is killed and another node stopped (SIGSTOP: it accepts connections
    // and never answers); one node is left, without a quorum.
    let leader = c.wait_leader(Duration::from_secs(5));
    let stopped = (1..=3).find(|&n| n != leader).expect("a follower");
    let alive = (1..=3).find(|&n| n != leader && n != stopped).expect("the third");
    c.kill(leader);
    let pid = c.node(stopped).child.as_ref().expect("running").id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().expect("kill").success());

    let started = Instant::now();
    let o = c.concord(&["status", "--output", "json"]);
    let took = started.elapsed();
    assert_eq!(
        o.status.code(),
        Some(0),
        "status works without a quorum: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = json(&o);
    let nodes = s["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "every member is listed: {s}");
    let row = |id: u64| nodes.iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("node {id}: {s}"));
    assert_eq!(row(alive)["reachable"], true, "{s}");
    assert_eq!(row(leader)["reachable"], false, "{s}");
    assert_eq!(row(stopped)["reachable"], false, "{s}");
    assert!(row(leader)["error"].as_str().is_some_and(|e| !e.is_empty()), "why it is unreachable: {s}");
    eprintln!("status with two of three nodes down took {} ms", took.as_millis());

    // The health check fails: nothing can commit.
    let o = c.concord(&["status", "--health", "--health-timeout-ms", "1500"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("unhealthy"), "{}", stdout(&o));

    // A stale read is answered by the node left, with the index it read at.
    let started = Instant::now();
    let o = c.concord(&["counter", "get", "n", "--consistency", "stale", "--output", "json"]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json(&o);
    assert_eq!(v["value"], 5, "{v}");
    assert!(v["index"].as_u64().is_some_and(|i| i > 0), "{v}");
    eprintln!("a stale read with two of three nodes down took {} ms", took.as_millis());

    assert!(Command::new("kill").args(["-CONT", &pid]).status().expect("kill").success());
}
