//! Concord's firmware under `qemu-system-arm` (the LM3S6965 board), its UART joined to
//! a real cluster of `concord serve` processes by `concord bridge`.
//!
//! Ignored by plain `cargo test`: they need `qemu-system-arm` and the firmware built
//! (`cd host-embedded/firmware && cargo build --release`). `scripts/test-all.sh`
//! installs the first, builds the second and runs them with `--ignored`. Each test
//! bounds its time, and kills the processes it started (by their handles) however it
//! ends.

mod common;

use common::{bin, free_port, stdout, Cluster};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the firmware may run.
const FIRMWARE_BOUND: Duration = Duration::from_secs(120);
/// How long the conformance firmware may run: every scenario, several waiting out a
/// session TTL.
const CONFORMANCE_BOUND: Duration = Duration::from_secs(600);

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The firmware image `name`, built for QEMU's Cortex-M3 board.
fn firmware(name: &str) -> PathBuf {
    let dir = std::env::var_os("CONCORD_FIRMWARE_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../host-embedded/firmware/target/thumbv7m-none-eabi/release")
    });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cd host-embedded/firmware && cargo build --release`",
        path.display()
    );
    path
}

/// Boots firmware `name` on QEMU board `machine` with its UART on a TCP port (QEMU
/// listens) and `args` on its command line; its console goes to `console`.
fn qemu(machine: &str, name: &str, line_port: u16, args: &str, console: &std::path::Path) -> Proc {
    qemu_on(machine, name, &format!("tcp:127.0.0.1:{line_port},server=on,wait=off"), args, console)
}

/// Boots firmware `name` with its UART on QEMU character device `serial`.
fn qemu_on(machine: &str, name: &str, serial: &str, args: &str, console: &std::path::Path) -> Proc {
    let out = std::fs::File::create(console).expect("console file");
    let child = Command::new("qemu-system-arm")
        .args(["-machine", machine, "-nographic", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-serial", serial])
        .arg("-kernel")
        .arg(firmware(name))
        .args(["-append", args])
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("console file"))
        .stderr(out)
        .spawn()
        .expect("qemu-system-arm runs (apt-get install qemu-system-arm)");
    Proc(child)
}

/// `concord bridge` on the TCP-exposed UART at `line_port`, logging to `log`.
fn bridge(line_port: u16, log: &std::path::Path) -> Proc {
    bridge_on(&format!("tcp:127.0.0.1:{line_port}"), log)
}

/// `concord bridge --line LINE`, logging to `log`.
fn bridge_on(line: &str, log: &std::path::Path) -> Proc {
    let log = std::fs::File::create(log).expect("bridge log");
    let child = Command::new(bin())
        .args(["bridge", "--line", line])
        .env("CONCORD_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("concord bridge starts");
    Proc(child)
}

/// Waits for `p` to exit within `bound`; its success.
fn wait_exit(p: &mut Proc, bound: Duration) -> Option<bool> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(status) = p.0.try_wait().expect("wait") {
            return Some(status.success());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The value of `key=` in `line`.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
#[ignore = "needs qemu-system-arm and the firmware build; scripts/test-all.sh runs it"]
fn client_firmware_locks_counts_and_releases_through_the_bridge() {
    let c = Cluster::start(3);
    let endpoints: Vec<String> = c.nodes.iter().map(|n| n.client.to_string()).collect();
    let line_port = free_port();
    let console = c.dir.path().join("client-console.log");
    let started = Instant::now();
    let mut fw = qemu("lm3s6965evb", "client", line_port, &endpoints.join(","), &console);
    let _bridge = bridge(line_port, &c.dir.path().join("bridge.log"));
    let exited = wait_exit(&mut fw, FIRMWARE_BOUND);
    let text = std::fs::read_to_string(&console).unwrap_or_default();
    let log = std::fs::read_to_string(c.dir.path().join("bridge.log")).unwrap_or_default();
    assert_eq!(exited, Some(true), "firmware console:\n{text}\nbridge log tail:\n{}", tail(&log));
    let line = text.lines().find(|l| l.starts_with("concord-firmware: ok")).expect("a success line");
    eprintln!("{line} (in {:?})", started.elapsed());

    // What the firmware did is in the cluster: the counter, the fence it stored.
    let fence: u64 = field(line, "fence").parse().unwrap();
    assert!(fence > 0);
    assert_eq!(field(line, "counter"), "1");
    let o = c.concord(&["counter", "get", "mcu/counter"]);
    assert_eq!(stdout(&o).trim(), "1", "{o:?}");
    let o = c.concord(&["kv", "get", "mcu/fence"]);
    assert_eq!(stdout(&o).trim(), fence.to_string(), "{o:?}");
    // The lock was released, and the next holder's fence is larger.
    let o = c.concord(&["lock", "mcu/lock", "--timeout-ms", "0", "--", "sh", "-c", "echo $CONCORD_FENCE"]);
    assert!(o.status.success(), "the lock is free: {o:?}");
    let next: u64 = stdout(&o).trim().parse().unwrap();
    assert!(next > fence, "fences increase: {fence} then {next}");
    // The firmware closed its session: nothing is left open for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.sessions() > 0 {
        assert!(Instant::now() < deadline, "the firmware's session stayed open");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The bridge on a device path: QEMU puts the UART on a pseudo-terminal (`-serial pty`)
/// and `concord bridge --line /dev/pts/N` opens it as it would `/dev/ttyUSB0` (setting
/// raw mode itself); the client firmware's calls reach the cluster through it.
#[test]
#[ignore = "needs qemu-system-arm and the firmware build; scripts/test-all.sh runs it"]
fn client_firmware_works_over_a_pty_device_line() {
    let c = Cluster::start(3);
    let endpoints: Vec<String> = c.nodes.iter().map(|n| n.client.to_string()).collect();
    let console = c.dir.path().join("pty-console.log");
    let mut fw = qemu_on("lm3s6965evb", "client", "pty", &endpoints.join(","), &console);
    // QEMU names the pty it made: "char device redirected to /dev/pts/N (label serial0)".
    let deadline = Instant::now() + Duration::from_secs(10);
    let pty = loop {
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        let found = text.split_whitespace().find(|w| w.starts_with("/dev/pts/")).map(String::from);
        if let Some(path) = found {
            break path;
        }
        assert!(Instant::now() < deadline, "QEMU named no pty:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _bridge = bridge_on(&pty, &c.dir.path().join("bridge.log"));
    let exited = wait_exit(&mut fw, FIRMWARE_BOUND);
    let text = std::fs::read_to_string(&console).unwrap_or_default();
    let log = std::fs::read_to_string(c.dir.path().join("bridge.log")).unwrap_or_default();
    assert_eq!(exited, Some(true), "firmware console:\n{text}\nbridge log tail:\n{}", tail(&log));
    let line = text.lines().find(|l| l.starts_with("concord-firmware: ok")).expect("a success line");
    eprintln!("over {pty}: {line}");
    assert!(log.contains(&pty), "the bridge served the pty: {}", tail(&log));
    let o = c.concord(&["counter", "get", "mcu/counter"]);
    assert_eq!(stdout(&o).trim(), "1", "{o:?}");
}

/// The shared conformance suite, run by the firmware (bin `conformance`, on the MPS2
/// AN385) through the bridge against three `concord serve` nodes: every scenario passes,
/// with the same expectations as on the tokio and wasm hosts.
#[test]
#[ignore = "needs qemu-system-arm and the firmware build; scripts/test-all.sh runs it"]
fn conformance_firmware_passes_every_scenario_through_the_bridge() {
    let c = Cluster::start(3);
    let endpoints: Vec<String> = c.nodes.iter().map(|n| n.client.to_string()).collect();
    let line_port = free_port();
    let console = c.dir.path().join("conformance-console.log");
    let args = format!("{} mcu-{}", endpoints.join(","), std::process::id());
    let started = Instant::now();
    let mut fw = qemu("mps2-an385", "conformance", line_port, &args, &console);
    let _bridge = bridge(line_port, &c.dir.path().join("bridge.log"));
    let exited = wait_exit(&mut fw, CONFORMANCE_BOUND);
    let text = std::fs::read_to_string(&console).unwrap_or_default();
    let log = std::fs::read_to_string(c.dir.path().join("bridge.log")).unwrap_or_default();
    eprintln!("{text}(in {:?})", started.elapsed());
    assert_eq!(exited, Some(true), "firmware console:\n{text}\nbridge log tail:\n{}", tail(&log));
    let summary = text.lines().find(|l| l.contains(" passed, ")).expect("a summary line");
    let total = concord_conformance::Scenario::ALL.len();
    assert_eq!(summary, format!("conformance: {total} passed, 0 failed, 0 skipped"), "{text}");
    for s in concord_conformance::Scenario::ALL {
        let prefix = format!("conformance: {}: passed", s.name());
        assert!(text.lines().any(|l| l.starts_with(&prefix)), "{} did not pass:\n{text}", s.name());
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// What the servers run with when a microcontroller is a member: the device frame size
/// and state machine limits of `concord_embedded::{DEVICE_FRAME_BYTES, device_limits}`
/// (peers compare the limits' digests, so a difference fails loudly).
const DEVICE_CLUSTER_TOML: &str = "frame_bytes_max = 4096

[limits]
name_bytes_max = 64
kv_value_bytes_max = 512
reference_bytes_max = 512
signal_payload_bytes_max = 512
election_value_bytes_max = 512
";

/// The replica firmware's console, as it grows.
struct Console(PathBuf);

impl Console {
    /// The last status line's `key=` value, as a number.
    fn last(&self, key: &str) -> Option<u64> {
        let text = std::fs::read_to_string(&self.0).ok()?;
        let line = text.lines().rev().find(|l| l.starts_with("concord-replica: role="))?;
        field(line, key).parse().ok()
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap_or_default()
    }

    /// Waits until `ok` holds of the console; panics with it after `bound`.
    fn wait(&self, what: &str, bound: Duration, ok: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + bound;
        while !ok(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {bound:?}; console:\n{}",
                tail(&self.text())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn commit_index(c: &Cluster, id: u64) -> u64 {
    c.status(id).and_then(|s| s["raft"]["commit_index"].as_u64()).unwrap_or(0)
}

#[test]
#[ignore = "needs qemu-system-arm and the firmware build; scripts/test-all.sh runs it"]
fn replica_firmware_votes_as_the_third_member_and_rejoins_from_its_image() {
    let mut c = Cluster::start_with(2, Some(DEVICE_CLUSTER_TOML));
    for n in 1..=5 {
        let o = c.concord(&["counter", "incr", "n"]);
        assert_eq!(stdout(&o).trim(), n.to_string(), "{o:?}");
    }
    let o = c.concord(&["member", "add", "3"]);
    assert!(o.status.success(), "member add: {o:?}");

    let peers: Vec<String> = c.nodes.iter().map(|n| format!("{}@{}", n.id, n.peer)).collect();
    let image = c.dir.path().join("replica-3.img");
    let args = format!("id=3 group=1 store={} peers={}", image.display(), peers.join(","));
    let line_port = free_port();
    let console = Console(c.dir.path().join("replica-console.log"));
    let boot = |console: &Console| qemu("mps2-an385", "replica", line_port, &args, &console.0);
    let mut fw = boot(&console);
    let _bridge = bridge(line_port, &c.dir.path().join("bridge.log"));

    // It catches up: applies what the leader committed.
    let leader = c.wait_leader(Duration::from_secs(10));
    let target = commit_index(&c, leader);
    console.wait("catching up", Duration::from_secs(30), |k| k.last("applied").is_some_and(|a| a >= target));

    // Stop the server that does not lead: commits need the device's vote now.
    let other = if leader == 1 { 2 } else { 1 };
    c.kill(other);
    for n in 6..=8 {
        let o = c.concord(&["counter", "incr", "n"]);
        assert_eq!(stdout(&o).trim(), n.to_string(), "committed with the device's vote: {o:?}");
    }
    let applied = commit_index(&c, leader);
    console.wait("applying with the leader", Duration::from_secs(10), |k| {
        k.last("applied").is_some_and(|a| a >= applied)
    });

    // Without the device there is no quorum.
    drop(fw);
    // Its log is on its flash: a 64 KiB NOR image (two banks) in a file.
    let flash = std::fs::read(&image).expect("the flash image exists");
    assert_eq!(flash.len(), 64 * 1024, "the flash image has the board's flash size");
    assert!(flash.iter().any(|b| *b != 0xFF), "something was programmed");
    let first = console.text();
    eprintln!("first boot: {}", first.lines().rev().find(|l| l.contains("heap_peak")).unwrap_or(""));
    let cmd = c.command(&["counter", "incr", "n"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    let mut write = Proc(cmd.expect("concord runs"));
    assert_ne!(
        wait_exit(&mut write, Duration::from_secs(3)),
        Some(true),
        "a write committed without a quorum"
    );
    drop(write);

    // The device restarts from its image and rejoins: commits go through again.
    fw = boot(&console);
    console.wait("restarting from its image", Duration::from_secs(20), |k| {
        k.text()
            .lines()
            .any(|l| l.starts_with("concord-replica: started") && !l.contains("recovered_last_index=0 "))
    });
    let o = c.concord(&["counter", "get", "n"]);
    let before: u64 = stdout(&o).trim().parse().unwrap_or(0);
    let o = c.concord(&["counter", "incr", "n"]);
    assert!(o.status.success(), "committed after the device rejoined: {o:?}");
    assert!(stdout(&o).trim().parse::<u64>().unwrap() > before.max(8) - 1);
    drop(fw);
    eprintln!("replica console tail:\n{}", tail(&console.text()));
}
