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
    let listed = ok(&c.concord(&["kv", "list", "cfg/"]));
    let rows: Vec<Vec<&str>> = listed.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2, "{listed}");
    assert_eq!(
        (rows[0][0], rows[0][2], rows[1][0], rows[1][2]),
        ("cfg/a", "two", "cfg/b", "three"),
        "{listed}"
    );
    assert_eq!(rows[0][1], etag2.to_string(), "the list shows each key's ETag");
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
    let o = c.concord(&["rwlock", "write", "RW", "--", "sh", "-c", "test -n \"$CONCORD_FENCE\""]);
    ok(&o);
    ok(&c.concord(&["rwlock", "read", "RW", "--", "true"]));

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
    assert!(out.parse::<u64>().is_ok(), "the command sees the fence; stdout is the command's: {out}");
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
    assert_eq!(s.lines().count(), 4, "a header and a row per node: {s}");
    assert_eq!(ok(&c.concord(&["member", "list"])), "voters [1, 2, 3], learners []");
    let leader = c.wait_leader(Duration::from_secs(5));
    let target = if leader == 1 { 2 } else { 1 };
    let o = ok(&c.concord(&["transfer-leader", &target.to_string()]));
    assert!(o.starts_with(&format!("node {target} leads")), "{o}");
    assert_eq!(c.wait_leader(Duration::from_secs(10)), target);

    // snapshot save: a snapshot taken on demand, however few entries there are.
    let out = c.dir.path().join("snap.bin");
    let http = c.node(target).http.to_string();
    let o = run_bounded(
        Command::new(bin()).args(["snapshot", "save", &out.display().to_string(), "--from", &http]),
        Duration::from_secs(10),
    );
    let saved = ok(&o);
    assert!(saved.starts_with("saved the snapshot at index"), "{saved}");
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
    // The node stored the snapshot it took: it can be read from its data directory once
    // the storage thread has written it.
    let from_disk = || {
        run_bounded(
            Command::new(bin()).args([
                "snapshot",
                "save",
                &c.dir.path().join("snap2.bin").display().to_string(),
                "--data-dir",
                &c.data_dir(target).display().to_string(),
            ]),
            Duration::from_secs(10),
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut o = from_disk();
    while !o.status.success() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        o = from_disk();
    }
    assert!(ok(&o).starts_with("saved the snapshot at index"));
}

fn json(o: &std::process::Output) -> serde_json::Value {
    let out = stdout(o);
    let mut lines = out.lines();
    let v = serde_json::from_str(lines.next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: stdout {out:?}, stderr {}", String::from_utf8_lossy(&o.stderr)));
    assert!(lines.next().is_none(), "exactly one JSON object: {out}");
    v
}

#[test]
fn every_operation_of_every_primitive_is_reachable() {
    let c = Cluster::start(3);
    let j = |args: &[&str]| {
        // Before any `-- CMD`.
        let mut args = args.to_vec();
        args.splice(1..1, ["--output", "json"]);
        let o = c.concord(&args);
        (code(&o), json(&o))
    };

    // locks: several at once share a fence; show / list / force-unlock.
    let o = c.concord(&["lock", "A", "B", "--", "sh", "-c", "echo $CONCORD_LOCK $CONCORD_FENCE"]);
    let out = ok(&o);
    assert!(out.starts_with("A,B "), "{out}");
    let mut holder = background(&c, &["lock", "A", "--output", "json"]);
    let grant: serde_json::Value = serde_json::from_str(&first_line(&mut holder)).unwrap();
    let (rc, shown) = j(&["locks", "show", "A"]);
    assert_eq!(
        (rc, &shown["locked"], &shown["fence"], &shown["holds"]),
        (0, &true.into(), &grant["fence"], &1.into())
    );
    let (rc, listed) = j(&["locks", "list"]);
    assert_eq!(rc, 0);
    assert_eq!(listed["locks"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(
        j(&["lock", "A", "B", "--timeout-ms", "0", "--", "true"]),
        (3, serde_json::json!({"lock": "A,B", "acquired": false}))
    );
    let (rc, _) = j(&["locks", "force-unlock", "A"]);
    assert_eq!(rc, 0);
    assert_eq!(j(&["locks", "show", "A"]).0, 3, "a free lock shows with exit 3");
    // Two-phase: the queue place is reported before the grant.
    let o = c.concord(&["lock", "A", "--enqueue", "--", "sh", "-c", "echo $CONCORD_FENCE"]);
    let later: u64 = ok(&o).parse().unwrap();
    assert!(later > grant["fence"].as_u64().unwrap(), "the grant after a force-unlock has a larger fence");
    drop(holder);

    // semaphores: sessionless permits outlive the command that took them.
    assert_eq!(j(&["semaphore", "init", "P", "3", "--sessionless"]).1["created"], true);
    assert_eq!(j(&["semaphore", "take", "P", "--permits", "2"]).0, 0);
    assert_eq!(j(&["semaphore", "available", "P"]).1["available"], 1);
    assert_eq!(j(&["semaphore", "take", "P", "--permits", "2", "--timeout-ms", "0"]).0, 3);
    assert_eq!(j(&["semaphore", "release", "P", "--permits", "1"]).0, 0);
    assert_eq!(j(&["semaphore", "drain", "P"]).1["drained"], 2);
    assert_eq!(j(&["semaphore", "increase", "P", "5"]).1["available"], 5);
    assert_eq!(j(&["semaphore", "reduce", "P", "7"]).1["available"], -2);
    assert_eq!(ok(&c.concord(&["semaphore", "init", "S", "1"])), "created");
    let o = c.concord(&["semaphore", "take", "S"]);
    assert_eq!(code(&o), 1, "taking a session semaphore's permits without holding them is refused");
    assert!(String::from_utf8_lossy(&o.stderr).contains("semaphore run"), "{o:?}");
    assert_eq!(ok(&c.concord(&["semaphore", "available", "S"])), "1", "and the permit came back");

    // read-write locks: status while a reader holds it.
    let mut reader = background(&c, &["rwlock", "read", "RW"]);
    assert!(first_line(&mut reader).starts_with("RW read-locked, fence"));
    let (_, st) = j(&["rwlock", "status", "RW"]);
    assert_eq!((&st["readers"], &st["write_locked"]), (&1.into(), &false.into()), "{st}");
    assert_eq!(j(&["rwlock", "write", "RW", "--timeout-ms", "0"]).0, 3);
    drop(reader);

    // counters
    assert_eq!(ok(&c.concord(&["counter", "set", "n", "10"])), "0");
    assert_eq!(ok(&c.concord(&["counter", "decr", "n"])), "9");
    assert_eq!(ok(&c.concord(&["counter", "get-and-add", "n", "5"])), "9");
    assert_eq!(ok(&c.concord(&["counter", "alter", "n", "mul:2"])), "28");
    assert_eq!(ok(&c.concord(&["counter", "alter", "n", "neg", "--previous"])), "28");
    assert_eq!(ok(&c.concord(&["counter", "apply", "n", "max:0"])), "0");
    assert_eq!(ok(&c.concord(&["counter", "get", "n"])), "-28", "apply changes nothing");
    assert_eq!(
        code(&c.concord(&["counter", "alter", "n", "pow:2"])),
        2,
        "an unknown function is a usage error"
    );

    // references: compare-and-set from and to no value.
    let (rc, none) = j(&["ref", "get", "r"]);
    assert_eq!((rc, &none["value"]), (3, &serde_json::Value::Null), "{none}");
    assert!(none["index"].as_u64().is_some(), "a read reports the index it read at: {none}");
    assert_eq!(j(&["ref", "is-null", "r"]).0, 0);
    assert_eq!(ok(&c.concord(&["ref", "cas", "r", "--expected-none", "first"])), "true");
    assert_eq!(code(&c.concord(&["ref", "cas", "r", "--expected-none", "again"])), 3);
    assert_eq!(ok(&c.concord(&["ref", "get-and-set", "r", "second"])), "first");
    assert_eq!(j(&["ref", "contains", "r", "second"]).1["contains"], true);
    assert_eq!(j(&["ref", "contains", "r", "first"]).0, 3);
    assert_eq!(ok(&c.concord(&["ref", "alter", "r", "append:!"])), "second!");
    assert_eq!(ok(&c.concord(&["ref", "apply", "r", "reverse"])), "!dnoces");
    assert_eq!(ok(&c.concord(&["ref", "cas", "r", "second!", "--new-none"])), "true");
    assert_eq!(j(&["ref", "is-null", "r"]).1["null"], true);
    ok(&c.concord(&["ref", "set", "r", "x"]));
    ok(&c.concord(&["ref", "clear", "r"]));
    assert_eq!(code(&c.concord(&["ref", "get", "r"])), 3);
    assert_eq!(code(&c.concord(&["ref", "cas", "r", "only-one"])), 2, "cas needs two values: a usage error");

    // kv: copy and rename, their if-absent modes, list with ETags, delete of a missing key.
    ok(&c.concord(&["kv", "put", "k/a", "1"]));
    let (rc, copied) = j(&["kv", "copy", "k/a", "k/b"]);
    assert_eq!((rc, &copied["written"]), (0, &true.into()));
    assert_eq!(j(&["kv", "copy", "k/a", "k/b", "--if-absent"]).0, 3);
    assert_eq!(j(&["kv", "rename", "k/b", "k/c"]).0, 0);
    assert_eq!(j(&["kv", "rename", "k/missing", "k/d"]).0, 3);
    let (_, listed) = j(&["kv", "list", "k/"]);
    let keys: Vec<&str> =
        listed["entries"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["k/a", "k/c"]);
    assert!(listed["entries"][0]["etag"].as_u64().is_some(), "{listed}");
    assert_eq!(j(&["kv", "list", "nothing/"]).1, serde_json::json!({"prefix": "nothing/", "entries": []}));
    assert_eq!(j(&["kv", "delete", "k/missing"]).0, 3, "deleting a missing key exits 3");
    let (rc, missing) = j(&["kv", "get", "k/missing"]);
    assert_eq!((rc, &missing["found"]), (3, &false.into()), "{missing}");

    // elections: leader query, proclaim from stdin, resign at the end of stdin.
    assert_eq!(j(&["elect", "E", "--leader"]), (3, serde_json::json!({"election": "E", "leader": null})));
    let mut leader = Bg(Some(
        c.command(&["elect", "E", "v1", "--proclaim-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    assert!(first_line(&mut leader).starts_with("elected: E"));
    let mut stdin = leader.0.as_mut().unwrap().stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"v2\n").unwrap();
    assert_eq!(first_line(&mut leader).trim(), "proclaimed: v2");
    assert_eq!(j(&["elect", "E", "--leader"]).1["leader"]["value"], "v2");
    drop(stdin);
    let out = stdout(&finish(leader));
    assert_eq!(out, "resigned", "{out}");
    assert_eq!(j(&["elect", "E", "--leader"]).0, 3, "resigned: no leader");
}

/// Lines a background command prints, read on a thread, so a test can wait for them
/// with a bound.
fn lines(bg: &mut Bg) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let out = bg.0.as_mut().expect("running").stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn a_killed_queue_group_member_gets_nothing_while_another_is_connected() {
    let c = Cluster::start(3);
    let mut a = background(&c, &["signal", "subscribe", "jobs.*", "--queue-group", "g"]);
    let a_lines = lines(&mut a);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    // Until a is subscribed, a publish reaches nobody.
    while a_lines.try_recv().is_err() {
        assert!(std::time::Instant::now() < deadline, "a never subscribed");
        ok(&c.concord(&["signal", "publish", "jobs.warm", "a"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut b = background(&c, &["signal", "subscribe", "jobs.*", "--queue-group", "g"]);
    let b_lines = lines(&mut b);
    // Turns alternate once b is in the group.
    while b_lines.try_recv().is_err() {
        assert!(std::time::Instant::now() < deadline, "b never subscribed");
        ok(&c.concord(&["signal", "publish", "jobs.warm", "b"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    // a dies without closing its session; its session lives on for its TTL (10 s).
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..6 {
        assert_eq!(ok(&c.concord(&["signal", "publish", "jobs.after", &i.to_string()])), "1 received");
    }
    let mut got = Vec::new();
    while got.len() < 6 {
        match b_lines.recv_timeout(Duration::from_secs(5)) {
            Ok(line) if line.starts_with("jobs.after") => got.push(line),
            Ok(_) => {}
            Err(_) => panic!("b received only {got:?}: signals went to the dead member"),
        }
    }
    assert_eq!(got, (0..6).map(|i| format!("jobs.after {i}")).collect::<Vec<_>>());
}
