//! `concord dev`, the README's main command: three nodes in one process that serve the
//! CLI, show their status pages, keep their data in a given directory across restarts,
//! remove a temporary one, and stop cleanly on Ctrl-C (SIGINT). Bounded: every wait has a
//! limit and the process is killed if the test fails.

mod common;

use common::{bin, http_get, run_bounded, signal_and_wait, stdout};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A base port whose nine dev ports (clients +0..2, peers +100..102, HTTP +200..202) are
/// free, below the kernel's ephemeral range.
fn dev_base_port() -> u16 {
    // Each call (tests run in parallel) searches from its own place, so two calls do not
    // find the same ports before either binds them.
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = 20_000 + (std::process::id() % 5_000) as u16 * 2 + call * 1_000;
    (0..2_000u16)
        .map(|i| start + i * 3)
        .find(|&p| {
            [0, 1, 2, 100, 101, 102, 200, 201, 202]
                .iter()
                .all(|o| TcpListener::bind(("127.0.0.1", p + o)).is_ok())
        })
        .expect("nine free ports")
}

/// A running `concord dev`; killed if still running when dropped.
struct Dev {
    child: Child,
    /// Reads what it logs as it goes (so a full pipe never stalls it); ends with it.
    log: Option<std::thread::JoinHandle<String>>,
    /// Lines it printed up to the hint that ends the banner.
    banner: Vec<String>,
}

impl Dev {
    fn start(port: u16, data_dir: Option<&Path>) -> Self {
        let mut cmd = Command::new(bin());
        cmd.args(["dev", "--port", &port.to_string()]);
        if let Some(d) = data_dir {
            cmd.args(["--data-dir", &d.display().to_string()]);
        }
        let mut child =
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("concord dev starts");
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let log = std::thread::spawn(move || {
            let mut log = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(err), &mut log);
            log
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut banner = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !banner.iter().any(|l: &String| l.starts_with("Try:")) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => banner.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("no banner within 20 s; printed {banner:?}");
                }
            }
        }
        Self { child, log: Some(log), banner }
    }

    /// The endpoints the banner suggests.
    fn endpoints(&self) -> String {
        let hint = self.banner.iter().find(|l| l.starts_with("Try:")).expect("hint");
        hint.split_whitespace().last().expect("endpoints").to_string()
    }

    /// The data directory the banner names.
    fn data_dir(&self) -> PathBuf {
        let line = self.banner.iter().find_map(|l| l.split_once("data in ")).expect("data dir line").1;
        PathBuf::from(line.trim())
    }

    fn concord(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(bin());
        cmd.args(args).args(["--endpoints", &self.endpoints()]);
        let o = run_bounded(&mut cmd, Duration::from_secs(30));
        assert!(o.status.success(), "{args:?}: {o:?}");
        stdout(&o)
    }

    /// Ctrl-C; the exit status and what it logged.
    fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        let status = signal_and_wait(&mut self.child, "-INT", Duration::from_secs(15));
        // The reader ends with the process's stderr.
        let log = self.log.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default();
        (status, log)
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn dev_serves_keeps_its_data_and_stops_on_ctrl_c() {
    let port = dev_base_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("dev-data");

    let dev = Dev::start(port, Some(&data));
    assert_eq!(dev.banner.iter().filter(|l| l.contains("status http://")).count(), 3, "{:?}", dev.banner);
    assert_eq!(dev.concord(&["counter", "incr", "visits"]), "1");
    assert_eq!(dev.concord(&["counter", "incr", "visits"]), "2");
    let page = http_get(SocketAddr::from(([127, 0, 0, 1], port + 200)), "/").expect("status page");
    assert!(page.contains("<h1>Concord node 1</h1>"), "{page}");
    let (status, log) = dev.interrupt();
    assert!(status.success(), "dev exited with {status}: {log}");
    assert!(log.contains("stopping the dev cluster") && log.contains("node stopped"), "{log}");

    // Restarted on the same directory, it has the data.
    let dev = Dev::start(port, Some(&data));
    assert_eq!(dev.concord(&["counter", "get", "visits"]), "2");
    let (status, _) = dev.interrupt();
    assert!(status.success());

    // Without --data-dir, the data lives in a temporary directory removed on exit.
    let dev = Dev::start(port, None);
    let temp = dev.data_dir();
    assert!(temp.exists(), "{temp:?}");
    assert_eq!(dev.concord(&["counter", "incr", "visits"]), "1", "a fresh cluster");
    let (status, _) = dev.interrupt();
    assert!(status.success());
    assert!(!temp.exists(), "{temp:?} left behind");
}

/// The README's example block, run as written (bash, `concord` the binary under test)
/// against a `concord dev`: nothing fails with an error or a usage message, and nothing
/// blocks.
#[test]
fn the_readme_examples_run_as_written() {
    let port = dev_base_port();
    let dev = Dev::start(port, None);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README");
    let after_alias = readme.split_once("alias concord=").expect("the example block").1;
    let body = after_alias.split_once('\n').expect("a line").1.split_once("```").expect("its end").0;
    let http = format!("127.0.0.1:{}", port + 200);
    let script = format!(
        "trap 'echo \"FAILED($?): $BASH_COMMAND\" >&2' ERR\nconcord() {{ \"{}\" \"$@\"; }}\n{}\nwait\n",
        bin(),
        body.replace("127.0.0.1:7201", &http)
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let o = run_bounded(
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .env("CONCORD_ENDPOINTS", dev.endpoints()),
        Duration::from_secs(90),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    // Exit 3 (a refusal: a busy try-lock, a moved ETag) is part of the examples.
    for code in ["FAILED(1)", "FAILED(2)", "FAILED(4)", "FAILED(5)"] {
        assert!(!err.contains(code), "an example failed:\n{err}\n{}", stdout(&o));
    }
    let out = stdout(&o);
    for want in [
        "running with fence",
        "Put config/mode green",
        "one of 4 workers",
        "open",
        "jobs.new hi",
        "healthy",
        "saved the snapshot",
    ] {
        assert!(out.contains(want), "the examples did not print {want:?}:\n{out}\n{err}");
    }
}
