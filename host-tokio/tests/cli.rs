//! Every CLI subcommand, end to end, against three `concord serve` processes.

mod common;

use common::{bin, run_bounded, stdout, Cluster};
use std::process::{Command, Stdio};
use std::time::Duration;

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(o)
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A CLI process in the background, killed (by its PID) if the test ends without
/// finishing it, so a failed test leaves nothing running.
struct Bg(Option<std::process::Child>);

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a CLI process in the background (for the blocking subcommands).
fn background(c: &Cluster, args: &[&str]) -> Bg {
    Bg(Some(c.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starts")))
}

/// Reads the first line a background command prints (bounded by the command's own
/// `--count` and timeouts).
fn first_line(bg: &mut Bg) -> String {
    use std::io::BufRead;
    let child = bg.0.as_mut().expect("running");
    let out = child.stdout.take().expect("piped stdout");
    let mut reader = std::io::BufReader::new(out);
    let mut line = String::new();
    reader.read_line(&mut line).expect("a first line");
    // Keep the rest for `finish`.
    child.stdout = Some(reader.into_inner());
    line
}

fn finish(mut bg: Bg) -> std::process::Output {
    let child = bg.0.take().expect("running");
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().expect("output"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !waiter.is_finished() {
        if std::time::Instant::now() > deadline {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("a background concord did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().expect("joined")
}

#[test]
fn every_subcommand_works_end_to_end() {
    let c = Cluster::start(3);

    // counter
    assert_eq!(ok(&c.concord(&["counter", "incr", "n"])), "1");
    assert_eq!(ok(&c.concord(&["counter", "add", "n", "41"])), "42");
    assert_eq!(ok(&c.concord(&["counter", "add", "n", "-2"])), "40");
    assert_eq!(ok(&c.concord(&["counter", "set", "n", "7"])), "40", "set prints the previous value");
    assert_eq!(ok(&c.concord(&["counter", "get", "n"])), "7");
    assert_eq!(ok(&c.concord(&["counter", "cas", "n", "7", "8"])), "true");
    let miss = c.concord(&["counter", "cas", "n", "7", "9"]);
    assert_eq!(code(&miss), 3, "a compare-and-set that does not match exits 3");
    let json = ok(&c.concord(&["counter", "get", "n", "--output", "json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["value"], 8);
    // Reads at each consistency; a stale read may lag, so it is retried a few times.
    assert_eq!(ok(&c.concord(&["counter", "get", "n", "--consistency", "lease"])), "8");
    let stale = (0..50).any(|_| {
        let o = c.concord(&["counter", "get", "n", "--consistency", "stale"]);
        o.status.success() && stdout(&o) == "8" || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(stale, "a stale read catches up");
    let bad = c.concord(&["counter", "get", "n", "--endpoints", "not-an-address"]);
    assert_eq!(code(&bad), 2, "endpoints that do not parse are a usage error");

    // kv
    let put = ok(&c.concord(&["kv", "put", "cfg/a", "one"]));
    let etag: u64 = put.strip_prefix("etag ").unwrap().parse().unwrap();
    assert_eq!(code(&c.concord(&["kv", "put", "cfg/a", "x", "--create-only"])), 3);
    assert_eq!(code(&c.concord(&["kv", "put", "cfg/a", "x", "--if-match", &(etag + 100).to_string()])), 3);
    ok(&c.concord(&["kv", "put", "cfg/a", "two", "--if-match", &etag.to_string()]));
    ok(&c.concord(&["kv", "put", "cfg/b", "three", "--ttl-ms", "60000"]));
    assert_eq!(ok(&c.concord(&["kv", "get", "cfg/a"])), "two");
    let json = ok(&c.concord(&["kv", "get", "cfg/a", "--output", "json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let etag2 = v["etag"].as_u64().unwrap();
    assert_eq!(code(&c.concord(&["kv", "get", "cfg/a", "--if-none-match", &etag2.to_string()])), 3);
    assert_eq!(ok(&c.concord(&["kv", "list", "cfg/"])), "cfg/a\ttwo\ncfg/b\tthree");
    assert_eq!(ok(&c.concord(&["kv", "delete", "cfg/b"])), "deleted");
    assert_eq!(code(&c.concord(&["kv", "get", "cfg/b"])), 3, "a missing key exits 3");

    // ref
    ok(&c.concord(&["ref", "set", "r", "alpha"]));
    assert_eq!(ok(&c.concord(&["ref", "get", "r"])), "alpha");
    assert_eq!(ok(&c.concord(&["ref", "cas", "r", "alpha", "beta"])), "true");
    assert_eq!(code(&c.concord(&["ref", "cas", "r", "alpha", "gamma"])), 3);
    assert_eq!(ok(&c.concord(&["ref", "get", "r"])), "beta");

    // lock: the command sees the fence, its exit code passes through, and while one
    // holds the lock a try-lock elsewhere exits 3.
    let o = c.concord(&["lock", "L", "--", "sh", "-c", "echo $CONCORD_FENCE; exit 7"]);
    assert_eq!(code(&o), 7);
    let fence1: u64 = stdout(&o).parse().expect("the fence is exported");
    let holder = background(&c, &["lock", "L", "--", "sleep", "6"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        // Until the holder has it, a try-lock gets it (exit 0); then it must exit 3.
        let code = code(&c.concord(&["lock", "L", "--timeout-ms", "0", "--", "true"]));
        if code == 3 {
            break;
        }
        assert_eq!(code, 0);
        assert!(std::time::Instant::now() < deadline, "the background holder never took the lock");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(finish(holder).status.success());
    let o = c.concord(&["lock", "L", "--", "sh", "-c", "echo $CONCORD_FENCE"]);
    let fence2: u64 = ok(&o).parse().unwrap();
    assert!(fence2 > fence1, "fences increase: {fence1} then {fence2}");

    // semaphore
    assert_eq!(ok(&c.concord(&["semaphore", "init", "S", "2"])), "created");
    assert_eq!(ok(&c.concord(&["semaphore", "available", "S"])), "2");
    let o =
        c.concord(&["semaphore", "run", "S", "--permits", "2", "--", "sh", "-c", "echo $CONCORD_PERMITS"]);
    assert_eq!(ok(&o), "2");
    assert_eq!(ok(&c.concord(&["semaphore", "available", "S"])), "2", "released after the command");

    // rwlock
    let o = c.concord(&["rwlock", "RW", "--write", "--", "sh", "-c", "test -n \"$CONCORD_FENCE\""]);
    ok(&o);
    ok(&c.concord(&["rwlock", "RW", "--", "true"]));

    // latch: an awaiter is released by the count-down that reaches zero.
    assert_eq!(ok(&c.concord(&["latch", "set", "D", "2"])), "true");
    assert_eq!(code(&c.concord(&["latch", "set", "D", "5"])), 3, "still counting");
    let waiter = background(&c, &["latch", "await", "D", "--timeout-ms", "20000"]);
    assert_eq!(ok(&c.concord(&["latch", "count-down", "D"])), "1");
    assert_eq!(ok(&c.concord(&["latch", "count", "D"])), "1");
    assert_eq!(ok(&c.concord(&["latch", "count-down", "D"])), "0");
    assert_eq!(stdout(&finish(waiter)), "open");
    assert_eq!(code(&c.concord(&["latch", "await", "E", "--timeout-ms", "0"])), 0, "an unset latch is open");
    ok(&c.concord(&["latch", "set", "E", "1"]));
    assert_eq!(code(&c.concord(&["latch", "await", "E", "--timeout-ms", "300"])), 4, "a timeout exits 4");

    // barrier: two parties.
    // (Either may arrive first.)
    let first = background(&c, &["barrier", "B", "--parties", "2", "--timeout-ms", "20000"]);
    let second = ok(&c.concord(&["barrier", "B", "--parties", "2", "--timeout-ms", "20000"]));
    let first = stdout(&finish(first));
    assert!(first.starts_with("tripped: generation 0"), "{first}");
    assert!(second.starts_with("tripped: generation 0"), "{second}");

    // election: observe sees the leader a campaign installs.
    let mut observer = background(&c, &["elect", "E", "--observe", "--count", "2"]);
    // Its first line, the current state, is printed once it is registered.
    let first = first_line(&mut observer);
    assert_eq!(first.trim(), "E: no leader");
    let o = c.concord(&["elect", "E", "node-a", "--", "sh", "-c", "echo $CONCORD_FENCE"]);
    let out = ok(&o);
    assert!(out.starts_with("elected: E"), "{out}");
    let seen = stdout(&finish(observer));
    assert!(seen.contains("E: node-a"), "{seen}");

    // watch (from a known revision, so however late it starts it misses nothing) and
    // signals (published until the subscriber is there).
    let mark = ok(&c.concord(&["kv", "put", "mark", "-"]));
    let from: u64 = mark.strip_prefix("etag ").unwrap().parse::<u64>().unwrap() + 1;
    let watcher = background(&c, &["watch", "w/", "--prefix", "--count", "2", "--from", &from.to_string()]);
    let subscriber = background(&c, &["signal", "subscribe", "news.*", "--count", "1"]);
    ok(&c.concord(&["kv", "put", "w/1", "x"]));
    ok(&c.concord(&["kv", "delete", "w/1"]));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while ok(&c.concord(&["signal", "publish", "news.today", "hello"])) != "1 received" {
        assert!(std::time::Instant::now() < deadline, "the subscriber never received");
        std::thread::sleep(Duration::from_millis(100));
    }
    let watched = stdout(&finish(watcher));
    let lines: Vec<&str> = watched.lines().collect();
    assert_eq!(lines.len(), 2, "{watched}");
    assert!(lines[0].contains("Put w/1 x") && lines[1].contains("Delete w/1"), "{watched}");
    assert_eq!(stdout(&finish(subscriber)), "news.today hello");

    // status, membership, leadership transfer.
    let s = ok(&c.concord(&["status"]));
    assert!(s.contains("voters [1, 2, 3]"), "{s}");
    assert_eq!(ok(&c.concord(&["member", "list"])), "voters [1, 2, 3], learners []");
    let leader = c.wait_leader(Duration::from_secs(5));
    let target = if leader == 1 { 2 } else { 1 };
    let o = ok(&c.concord(&["transfer-leader", &target.to_string()]));
    assert!(o.starts_with(&format!("node {target} leads")), "{o}");
    assert_eq!(c.wait_leader(Duration::from_secs(10)), target);

    // snapshot save: enough writes to pass the snapshot threshold first.
    for _ in 0..8 {
        ok(&c.concord(&["counter", "incr", "bulk"]));
    }
    let out = c.dir.path().join("snap.bin");
    let mut saved = None;
    let http = c.node(target).http.to_string();
    for _ in 0..50 {
        let o = run_bounded(
            Command::new(bin()).args(["snapshot", "save", &out.display().to_string(), "--from", &http]),
            Duration::from_secs(10),
        );
        if o.status.success() {
            saved = Some(stdout(&o));
            break;
        }
        ok(&c.concord(&["counter", "incr", "bulk"]));
    }
    let saved = saved.expect("a snapshot was taken and saved");
    assert!(saved.starts_with("saved the snapshot at index"), "{saved}");
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
    // The same from the data directory.
    let o = run_bounded(
        Command::new(bin()).args([
            "snapshot",
            "save",
            &c.dir.path().join("snap2.bin").display().to_string(),
            "--data-dir",
            &c.data_dir(target).display().to_string(),
        ]),
        Duration::from_secs(10),
    );
    assert!(ok(&o).starts_with("saved the snapshot at index"));
}
