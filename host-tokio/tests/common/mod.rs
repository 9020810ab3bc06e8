//! A cluster of real `concord serve` processes on 127.0.0.1 for integration tests. Every
//! process is killed when the cluster is dropped, so a failing test leaves none behind.

#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `concord` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_concord")
}

/// Ports handed to test nodes come from below the kernel's ephemeral range (32768 and up
/// on Linux), so the outgoing connections of tests and nodes, which take ephemeral
/// ports, cannot grab one between the check here and the node's bind; each test process
/// walks the range from its own offset, and no port is handed out twice in a process.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port free right now on 127.0.0.1, never handed out before by this process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORTS.end - PORTS.start);
    let _ =
        NEXT.compare_exchange(u32::MAX, std::process::id() * 97 % span, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..span {
        let port = PORTS.start + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORTS:?}")
}

/// One node: its addresses, data directory and process (if running).
pub struct NodeProc {
    pub id: u64,
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
}

impl NodeProc {
    /// Node `id` with fresh ports and its data under `dir`, not started.
    fn new(dir: &Path, id: u64) -> Self {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        Self {
            id,
            client: addr(free_port()),
            peer: addr(free_port()),
            http: addr(free_port()),
            data_dir: dir.join(format!("node-{id}")),
            child: None,
        }
    }
}

/// A 3-node cluster of `concord serve` processes.
pub struct Cluster {
    pub nodes: Vec<NodeProc>,
    pub dir: tempfile::TempDir,
    /// A TOML file every node reads (`--config`), if any.
    pub config: Option<PathBuf>,
}

impl Cluster {
    /// Starts `n` nodes and waits until one leads.
    pub fn start(n: u64) -> Self {
        Self::start_with(n, None)
    }

    /// Starts `n` nodes that all read `toml` as their configuration file (flags still
    /// set their addresses), and waits until one leads.
    pub fn start_with(n: u64, toml: Option<&str>) -> Self {
        let mut c = Self::prepare(n, toml);
        c.start_all();
        c
    }

    /// `n` nodes with their addresses and data directories, not started: something can
    /// be put in their data directories first ([`Cluster::start_all`] starts them).
    pub fn prepare(n: u64, toml: Option<&str>) -> Self {
        let dir = tempfile::Builder::new().prefix("concord-it-").tempdir().expect("temp dir");
        let nodes = (1..=n).map(|id| NodeProc::new(dir.path(), id)).collect();
        let config = toml.map(|t| {
            let path = dir.path().join("concord.toml");
            std::fs::write(&path, t).expect("config file");
            path
        });
        Self { nodes, dir, config }
    }

    /// Starts every node and waits until one leads.
    pub fn start_all(&mut self) {
        let c = self;
        let n = c.nodes.len() as u64;
        for id in 1..=n {
            c.spawn(id);
        }
        c.wait_leader(Duration::from_secs(20));
    }

    /// Node `id`.
    pub fn node(&self, id: u64) -> &NodeProc {
        &self.nodes[id as usize - 1]
    }

    /// Adds node `n + 1` to the cluster: `concord member add`, then `serve --join`.
    pub fn add_node(&mut self) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let o = self.concord(&["member", "add", &id.to_string()]);
        assert!(o.status.success(), "member add: {}", String::from_utf8_lossy(&o.stderr));
        self.nodes.push(NodeProc::new(self.dir.path(), id));
        self.spawn_as(id, true);
        id
    }

    /// Starts (or restarts) node `id`.
    pub fn spawn(&mut self, id: u64) {
        self.spawn_as(id, false);
    }

    fn spawn_as(&mut self, id: u64, join: bool) {
        let peers: Vec<String> = self.nodes.iter().map(|n| format!("{}={}", n.id, n.peer)).collect();
        let n = &mut self.nodes[id as usize - 1];
        assert!(n.child.is_none(), "node {id} is running");
        let log = std::fs::File::create(self.dir.path().join(format!("node-{id}.log"))).expect("log file");
        let child = Command::new(bin())
            .args(["serve", "--id", &id.to_string()])
            .args(["--client-addr", &n.client.to_string()])
            .args(["--peer-addr", &n.peer.to_string()])
            .args(["--http-addr", &n.http.to_string()])
            .args(["--data-dir", &n.data_dir.display().to_string()])
            .args(["--peer", &peers.join(",")])
            .args(["--election-timeout-min-ms", "300", "--election-timeout-max-ms", "600"])
            // Small, so snapshots, log truncation and snapshot installs happen in tests.
            .args(["--snapshot-threshold-entries", "200"])
            .args(if join { &["--join"][..] } else { &[][..] })
            .args(self.config.iter().flat_map(|p| [OsStr::new("--config"), p.as_os_str()]))
            .env("CONCORD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("concord serve starts");
        n.child = Some(child);
    }

    /// SIGKILLs node `id`.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes[id as usize - 1].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERMs node `id` and waits for it to exit; its exit status.
    pub fn terminate(&mut self, id: u64) -> std::process::ExitStatus {
        let mut c = self.nodes[id as usize - 1].child.take().expect("running");
        signal_and_wait(&mut c, "-TERM", Duration::from_secs(10))
    }

    /// Client options for this cluster's endpoints (library defaults otherwise).
    pub fn options(&self) -> concord_tokio::client::Options {
        concord_tokio::client::Options::new(self.endpoints().split(',')).expect("endpoints")
    }

    /// The client endpoints, `ID=ADDR,…`.
    pub fn endpoints(&self) -> String {
        self.nodes.iter().map(|n| format!("{}={}", n.id, n.client)).collect::<Vec<_>>().join(",")
    }

    /// Runs the CLI against this cluster (with a 30 s bound).
    pub fn concord(&self, args: &[&str]) -> Output {
        run_bounded(&mut self.command(args), Duration::from_secs(30))
    }

    /// The CLI command for `args` against this cluster (endpoints go right after the
    /// subcommand, before any `-- CMD`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        let endpoints = self.endpoints();
        cmd.args(&args[..1]).args(["--endpoints", &endpoints]).args(&args[1..]);
        cmd
    }

    /// `/status` of node `id` as JSON, if it answers.
    pub fn status(&self, id: u64) -> Option<serde_json::Value> {
        let body = http_get(self.node(id).http, "/status")?;
        serde_json::from_str(&body).ok()
    }

    /// The node that leads, as seen by a running node that reports itself leader.
    pub fn leader(&self) -> Option<u64> {
        self.nodes.iter().filter(|n| n.child.is_some()).find_map(|n| {
            let s = self.status(n.id)?;
            (s["raft"]["role"] == "Leader").then_some(n.id)
        })
    }

    /// Waits until some node leads; panics after `bound`.
    pub fn wait_leader(&self, bound: Duration) -> u64 {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {bound:?}; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Open sessions, as the leader reports them.
    pub fn sessions(&self) -> usize {
        self.leader()
            .and_then(|l| self.status(l))
            .and_then(|s| s["sessions"].as_array().map(Vec::len))
            .unwrap_or(0)
    }

    /// Path of node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> &Path {
        &self.node(id).data_dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            // Keep the logs of a failed test where its message can point.
            let path = self.dir.path().to_path_buf();
            for n in &self.nodes {
                let log = path.join(format!("node-{}.log", n.id));
                if let Ok(text) = std::fs::read_to_string(&log) {
                    let tail: Vec<&str> = text.lines().rev().take(30).collect();
                    eprintln!("--- node {} log tail ---", n.id);
                    for l in tail.iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }
}

/// Runs `cmd`, killing it if it outlives `bound`.
pub fn run_bounded(cmd: &mut Command, bound: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("command starts");
    let deadline = Instant::now() + bound;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "command outlived {bound:?}: {cmd:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A plain HTTP/1.0 GET; the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.split_whitespace().nth(1).is_some_and(|code| code == "200").then(|| body.to_string())
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Sends `signal` (`-TERM`, `-INT`) to `child` and waits up to `bound` for it to exit;
/// its exit status. A child still running then is killed, and the test fails.
pub fn signal_and_wait(child: &mut Child, signal: &str, bound: Duration) -> std::process::ExitStatus {
    let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
    let deadline = Instant::now() + bound;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not stop within {bound:?} of {signal}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tokio runtime for a test's client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// The value of Prometheus sample `name` (no labels) in `text`, if present.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
