//! The CLI under signals, against three `concord serve` processes: a hold's command gets
//! the CLI's SIGINT and SIGTERM, and everything it started stops when the CLI is
//! interrupted or the session is lost; the lock is free by the time the CLI has exited.

mod common;

use common::{stdout, Cluster};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A CLI in the background, killed by its PID if the test ends without finishing it.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(c: &Cluster, args: &[&str]) -> Bg {
    Bg(c.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starts"))
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().expect("kill runs");
    assert!(ok.success(), "kill -{sig} {pid}");
}

/// Waits (bounded) for the CLI to exit; its exit code.
fn exit_code(bg: &mut Bg, bound: Duration) -> i32 {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = bg.0.try_wait().expect("try_wait") {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "the CLI did not exit within {bound:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads a pid the command wrote to `file` (bounded wait).
fn pid_in(file: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(pid) = std::fs::read_to_string(file).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < deadline, "the command never wrote {}", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` still runs (a zombie waiting to be reaped does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn gone_within(pid: u32, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while running(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn lock_info(c: &Cluster, name: &str) -> serde_json::Value {
    let o = c.concord(&["locks", "show", name, "--output", "json"]);
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

#[test]
fn sigint_and_sigterm_stop_the_command_group_release_and_exit_128_plus_n() {
    let c = Cluster::start(3);
    for (sig, want) in [("INT", 130), ("TERM", 143)] {
        let name = format!("sig-{sig}");
        let file = c.dir.path().join(format!("{name}.pid"));
        // A shell's background job ignores SIGINT: the CLI must stop it all the same.
        let script = format!("sleep 60 & echo $! > {}; wait", file.display());
        let mut cli = spawn(&c, &["lock", &name, "--", "sh", "-c", &script]);
        let grandchild = pid_in(&file);
        assert_eq!(lock_info(&c, &name)["locked"], true);
        let sent = Instant::now();
        signal(cli.0.id(), sig);
        assert_eq!(exit_code(&mut cli, Duration::from_secs(10)), want, "SIGCLI {sig}");
        let exited = sent.elapsed();
        // Free by the time the CLI has exited: its session was closed before.
        assert_eq!(lock_info(&c, &name)["locked"], false, "the lock is free once the CLI exited");
        assert!(gone_within(grandchild, Duration::from_secs(3)), "the command's background job was stopped");
        eprintln!(
            "SIG{sig}: the CLI exited {want} and the lock was free {} ms after the signal",
            exited.as_millis()
        );
    }
}

#[test]
fn a_lost_session_stops_the_whole_group_and_exits_5() {
    let c = Cluster::start(3);
    let file = c.dir.path().join("lost.pid");
    let script = format!("sleep 60 & echo $! > {}; sleep 61", file.display());
    let mut cli = spawn(&c, &["lock", "G", "--session-ttl-ms", "1000", "--", "sh", "-c", &script]);
    let grandchild = pid_in(&file);
    // Stopped, the CLI cannot keep its session alive: the cluster expires it and frees the
    // lock while the command still runs.
    signal(cli.0.id(), "STOP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while lock_info(&c, "G")["locked"] == true {
        assert!(Instant::now() < deadline, "the session never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(running(grandchild), "the command runs on while the CLI is stopped");
    signal(cli.0.id(), "CONT");
    assert_eq!(exit_code(&mut cli, Duration::from_secs(15)), 5, "a lost session exits 5");
    assert!(gone_within(grandchild, Duration::from_secs(3)), "the grandchild was stopped with its group");
    let mut err = String::new();
    std::io::Read::read_to_string(cli.0.stderr.as_mut().expect("stderr"), &mut err).expect("stderr");
    assert!(err.contains("the session was lost"), "{err}");
}

#[test]
fn interrupting_a_wait_gives_up_the_place_and_a_hold_without_command_ends_cleanly() {
    let c = Cluster::start(3);
    // A hold without a command prints its grant (one JSON object) and holds.
    let mut holder = spawn(&c, &["lock", "Q", "--output", "json"]);
    let mut line = String::new();
    std::io::BufReader::new(holder.0.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("a line");
    let grant: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
    assert_eq!(grant["acquired"], true);
    assert!(grant["fence"].as_u64().is_some(), "{grant}");
    // A waiter queues behind it; interrupted, it exits 130 and leaves the queue.
    let mut waiter = spawn(&c, &["lock", "Q", "--output", "json"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while lock_info(&c, "Q")["waiters"].as_array().map_or(0, Vec::len) == 0 {
        assert!(Instant::now() < deadline, "the waiter never queued");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(waiter.0.id(), "INT");
    assert_eq!(exit_code(&mut waiter, Duration::from_secs(10)), 130);
    let mut said = String::new();
    std::io::Read::read_to_string(waiter.0.stdout.as_mut().expect("stdout"), &mut said).expect("stdout");
    assert_eq!(said.trim(), r#"{"interrupted":"SIGINT"}"#, "one JSON object for an interrupted wait");
    let info = lock_info(&c, "Q");
    assert_eq!(info["waiters"], serde_json::json!([]), "the interrupted waiter left the queue: {info}");
    assert_eq!(info["fence"], grant["fence"], "the holder still holds it");
    // Ctrl-C is how a hold without a command ends: released, exit 0.
    signal(holder.0.id(), "INT");
    assert_eq!(exit_code(&mut holder, Duration::from_secs(10)), 0);
    assert_eq!(lock_info(&c, "Q")["locked"], false);
}

#[test]
fn a_command_ended_by_a_signal_exits_128_plus_n() {
    let c = Cluster::start(3);
    let o = c.concord(&["lock", "K", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(o.status.code(), Some(137), "SIGKILL is 128+9");
    assert_eq!(lock_info(&c, "K")["locked"], false);
}

#[test]
fn a_reader_that_goes_away_ends_the_cli_quietly() {
    let c = Cluster::start(3);
    // The reader closes the pipe as it starts, long before the CLI (which first connects)
    // writes its table.
    let script =
        format!("'{}' status --endpoints {} | {{ exec 0<&-; sleep 0.5; }}", common::bin(), c.endpoints());
    let o = Command::new("bash").args(["-o", "pipefail", "-c", &script]).output().expect("bash");
    assert_eq!(o.status.code(), Some(141), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
