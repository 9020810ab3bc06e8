//! What the CLI says when something is wrong: each message names the problem, arrives
//! at once, and with `--output json` is one JSON object on stdout.

mod common;

use common::{bin, free_port, run_bounded, stdout, Cluster};
use std::process::Command;
use std::time::{Duration, Instant};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// Runs the CLI against `c`; its exit code, stderr, and how long it took.
fn attempt(c: &Cluster, args: &[&str]) -> (i32, String, Duration) {
    let started = Instant::now();
    let o = c.concord(args);
    (o.status.code().unwrap_or(-1), stderr(&o), started.elapsed())
}

#[test]
fn invalid_values_are_named_with_the_least_or_most_allowed() {
    let c = Cluster::start(3);
    for (args, says) in [
        (&["lock", "", "--", "true"][..], "a name must be at least 1 byte long"),
        (&["kv", "put", "", "v"], "a name must be at least 1 byte long"),
        (&["barrier", "b", "--parties", "0"], "a barrier must have at least 1 party"),
        (&["lock", "x", "--session-ttl-ms", "0", "--", "true"], "the session TTL must be at least"),
        (&["lock", "x", "--session-ttl-ms", "99999999", "--", "true"], "the session TTL must be at most"),
        (&["latch", "set", "l", "0"], "count must be at least 1"),
    ] {
        let (code, err, took) = attempt(&c, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err:?} should say {says:?}");
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}: refused at once, not after retries");
    }
    // With --output json: one object on stdout naming the kind of error.
    let o = c.concord(&["kv", "put", "", "v", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["error"], "invalid");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("at least 1 byte")), "{v}");
}

#[test]
fn unreachable_clusters_and_wrong_ports_say_so() {
    let c = Cluster::start(3);
    // An HTTP port is recognised.
    let http = c.node(1).http.to_string();
    let o = run_bounded(
        Command::new(bin()).args(["counter", "get", "n", "--endpoints", &http]),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("speaks HTTP"), "{}", stderr(&o));
    // Nothing listening: every endpoint is named with its reason, within the dial timeout.
    let (a, b) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let started = Instant::now();
    let o = run_bounded(
        Command::new(bin()).args(["lock", "L", "--timeout-ms", "0", "--dial-timeout-ms", "300"]).args([
            "--endpoints",
            &format!("{a},{b}"),
            "--",
            "true",
        ]),
        Duration::from_secs(30),
    );
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&a) && err.contains(&b) && err.contains("refused"), "{err}");
    assert!(
        took < Duration::from_secs(3),
        "a try against a dead cluster fails within the dial timeout: {took:?}"
    );
    eprintln!("a try against nothing listening failed after {} ms (--dial-timeout-ms 300)", took.as_millis());
    // Host names work for clients.
    let named = format!("localhost:{}", c.node(2).client.port());
    let o = run_bounded(
        Command::new(bin()).args(["counter", "incr", "h", "--endpoints", &named]),
        Duration::from_secs(30),
    );
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "1"), "{}", stderr(&o));
}

#[test]
fn operating_the_server_absurd_ids_defaults_and_plain_logs() {
    let mut c = Cluster::start(3);
    // An id no client could read exactly is refused, and the membership is unchanged.
    let (code, err, _) = attempt(&c, &["member", "add", "9007199254740992"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("above the largest"), "{err}");
    assert_eq!(stdout(&c.concord(&["member", "list"])), "voters [1, 2, 3], learners []");
    // serve --help shows every default, limits included.
    let help = stdout(&run_bounded(Command::new(bin()).args(["serve", "--help"]), Duration::from_secs(10)));
    for key in [
        "election_timeout_min_ms = 300",
        "heartbeat_interval_ms = 50",
        "snapshot_threshold_entries",
        "[limits]",
        "session_ttl_min_ms",
    ] {
        assert!(help.contains(key), "serve --help lacks {key:?}:\n{help}");
    }
    // Logs written to a file carry no colour codes, and a node reports the loss of its
    // leader once, with a warning, rather than every election round.
    let leader = c.wait_leader(Duration::from_secs(5));
    let others: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
    c.kill(leader);
    c.kill(others[0]);
    std::thread::sleep(Duration::from_secs(3));
    let log = std::fs::read_to_string(c.dir.path().join(format!("node-{}.log", others[1]))).expect("log");
    assert!(!log.contains('\u{1b}'), "no ANSI codes in a log file");
    let warnings = log.matches("no leader: the cluster cannot commit").count();
    assert_eq!(warnings, 1, "the loss of the leader is reported once:\n{log}");
    assert!(!log.contains("PreCandidate"), "election rounds are not logged at INFO:\n{log}");
}
