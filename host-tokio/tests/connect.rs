//! How the client finds and keeps its way to a cluster of three `concord serve` processes,
//! as a user meets it through the CLI: a call takes milliseconds, one endpoint (leader or
//! not) is enough, a stopped node stalls nobody, and each call leaves no session behind.
//!
//! The latency bounds here are generous (a call used to take a full second: the request
//! timeout); the figures themselves are printed for the record.

mod common;

use common::{bin, run_bounded, stdout, Cluster};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A bound no healthy call comes near (they take milliseconds) but a call that waits out
/// the 1 s request timeout exceeds.
const CALL_BOUND: Duration = Duration::from_millis(500);

/// Runs the CLI with exactly these endpoints; its output and how long it took.
fn timed(endpoints: &str, args: &[&str]) -> (Output, Duration) {
    let mut cmd = Command::new(bin());
    cmd.args(&args[..1]).args(["--endpoints", endpoints]).args(&args[1..]);
    let started = Instant::now();
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    (out, started.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn addrs(c: &Cluster) -> String {
    c.nodes.iter().map(|n| n.client.to_string()).collect::<Vec<_>>().join(",")
}

/// Sends `signal` to node `id`'s process (one this test started).
fn signal(c: &Cluster, id: u64, signal: &str) {
    let pid = c.node(id).child.as_ref().expect("running").id();
    let ok = Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill runs");
    assert!(ok.success());
}

/// Resumes a stopped node when dropped, whatever the test did meanwhile.
struct Stopped<'a>(&'a Cluster, u64);

impl<'a> Stopped<'a> {
    fn new(c: &'a Cluster, id: u64) -> Self {
        signal(c, id, "-STOP");
        Self(c, id)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        signal(self.0, self.1, "-CONT");
    }
}

/// `n` calls of `counter incr`, each checked to print the next value; their durations.
fn increments(endpoints: &str, name: &str, first: u64, n: u64) -> Vec<Duration> {
    (first..first + n)
        .map(|expected| {
            let (out, took) = timed(endpoints, &["counter", "incr", name]);
            assert!(out.status.success(), "{out:?}");
            assert_eq!(stdout(&out), expected.to_string());
            took
        })
        .collect()
}

#[test]
fn a_cli_call_takes_milliseconds() {
    let c = Cluster::start(3);
    c.wait_leader(Duration::from_secs(10));
    let took = increments(&addrs(&c), "fast", 1, 50);
    let p50 = median(took.clone());
    let max = took.iter().max().copied().unwrap_or_default();
    println!("50 calls of `concord counter incr` on a healthy cluster: p50 {p50:?}, max {max:?}");
    assert!(p50 < CALL_BOUND, "p50 {p50:?}");
}

#[test]
fn any_single_endpoint_works_leader_or_not() {
    let c = Cluster::start(3);
    let leader = c.wait_leader(Duration::from_secs(10));
    for (expected, n) in (1..).zip(&c.nodes) {
        let (out, took) = timed(&n.client.to_string(), &["counter", "incr", "single"]);
        assert!(out.status.success(), "node {} alone: {out:?}", n.id);
        assert_eq!(stdout(&out), u64::to_string(&expected));
        let role = if n.id == leader { "the leader" } else { "a follower" };
        println!("only node {} ({role}) given: {took:?}", n.id);
        assert!(took < CALL_BOUND, "{took:?}");
    }
}

#[test]
fn a_stopped_node_stalls_nobody() {
    let c = Cluster::start(3);
    let leader = c.wait_leader(Duration::from_secs(10));
    let endpoints = addrs(&c);
    // A follower stopped: it accepts connections and never answers.
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    {
        let _stopped = Stopped::new(&c, follower);
        let took = increments(&endpoints, "stopped", 1, 10);
        let p50 = median(took);
        println!("follower {follower} SIGSTOPped: p50 of 10 calls {p50:?}");
        assert!(p50 < CALL_BOUND, "p50 {p50:?}");
    }
    // The leader stopped: the first call waits for a new leader, then calls are fast.
    let _stopped = Stopped::new(&c, leader);
    let took = increments(&endpoints, "stopped", 11, 10);
    let p50 = median(took.clone());
    println!("leader {leader} SIGSTOPped: first call {:?}, p50 of 10 calls {p50:?}", took[0]);
    assert!(took[0] < Duration::from_secs(5), "first call {:?}", took[0]);
    assert!(p50 < CALL_BOUND, "p50 {p50:?}");
}

#[test]
fn a_cli_call_opens_one_session_and_closes_it() {
    let c = Cluster::start(3);
    c.wait_leader(Duration::from_secs(10));
    let baseline = c.sessions();
    // While a call holds a lock, its one session is open.
    let mut holder = c.command(&["lock", "held", "--", "sleep", "3"]).spawn().expect("starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.sessions() == baseline {
        assert!(Instant::now() < deadline, "the lock call's session never showed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut most = 0;
    while holder.try_wait().expect("waits").is_none() {
        most = most.max(c.sessions());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(most, baseline + 1, "one call, one session");
    // Twenty calls later, not one session is left open.
    increments(&addrs(&c), "sessions", 1, 20);
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.sessions() != baseline {
        assert!(Instant::now() < deadline, "{} sessions open, {baseline} before", c.sessions());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reads and status need none at all.
    let (out, _) = timed(&addrs(&c), &["counter", "get", "sessions"]);
    assert_eq!(stdout(&out), "20");
    assert_eq!(c.sessions(), baseline);
}

#[test]
fn an_unreachable_cluster_names_every_endpoint_and_why() {
    let c = Cluster::start(3);
    c.wait_leader(Duration::from_secs(10));
    let stopped = c.node(1).client.to_string();
    let _stopped = Stopped::new(&c, 1);
    let dead = format!("127.0.0.1:{}", common::free_port());
    let endpoints = format!("{stopped},{dead}");
    let mut cmd = Command::new(bin());
    cmd.args(["counter", "get", "x", "--endpoints", &endpoints, "--connect-timeout-ms", "1500"]);
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{stopped}: accepted the connection but did not answer")), "{err}");
    assert!(err.contains(&format!("{dead}: ")) && err.contains("refused"), "{err}");
}

#[test]
fn nothing_listening_fails_within_the_dial_timeout_not_the_connect_timeout() {
    let dead: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", common::free_port())).collect();
    let endpoints = dead.join(",");
    let mut cmd = Command::new(bin());
    cmd.args(["counter", "get", "x", "--endpoints", &endpoints, "--dial-timeout-ms", "1000"]);
    cmd.args(["--connect-timeout-ms", "20000"]);
    let started = Instant::now();
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let took = started.elapsed();
    println!("nothing listening: failed after {took:?}");
    assert_eq!(out.status.code(), Some(1));
    assert!(took < Duration::from_secs(10), "{took:?}: waited for the connect timeout");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(dead.iter().all(|d| err.contains(d.as_str())) && err.contains("refused"), "{err}");
}
