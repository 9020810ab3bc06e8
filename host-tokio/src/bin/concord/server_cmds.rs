//! The server-side subcommands: `serve`, `dev` and `snapshot`.

use concord_tokio::config::ServerConfig;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::cli::*;
use crate::*;

pub(crate) async fn snapshot(a: SnapshotArgs) -> Result<Outcome, CliError> {
    let (file, from, data_dir) = match a.action {
        SnapshotAction::Save { file, from, data_dir } => (file, from, data_dir),
        SnapshotAction::Restore { file, data_dir, voters, config } => {
            return restore(&file, &data_dir, &voters, config.as_deref());
        }
    };
    // The fetched bytes are written as they came, once they decode as a snapshot.
    let (snap, bytes): (concord_core::Snapshot, Vec<u8>) = match (from, data_dir) {
        (Some(addr), _) => {
            let bytes = http_get(addr, "/snapshot").await?;
            let snap = postcard::from_bytes(&bytes).map_err(|e| format!("{addr}: not a snapshot: {e}"))?;
            (snap, bytes)
        }
        (None, Some(dir)) => {
            let snap = concord_tokio::wal::Wal::read_snapshot(&dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .ok_or_else(|| {
                    format!(
                        "{}: the node has stored no snapshot yet (it takes one every \
                         snapshot_threshold_entries entries); save one from the running node \
                         with --from HOST:PORT",
                        dir.display()
                    )
                })?;
            let bytes = postcard::to_allocvec(&snap).map_err(|e| e.to_string())?;
            (snap, bytes)
        }
        (None, None) => return Err(CliError::Other("give --from HOST:PORT or --data-dir DIR".into())),
    };
    std::fs::write(&file, &bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    println!(
        "saved the snapshot at index {} (term {}) to {}",
        snap.meta.index,
        snap.meta.term,
        file.display()
    );
    Ok(Outcome::Ok)
}

/// Writes what a member of a new cluster seeded from the snapshot in `file` starts from.
fn restore(file: &Path, data_dir: &Path, voters: &[u64], config: Option<&Path>) -> Result<Outcome, CliError> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let snap: concord_core::Snapshot =
        postcard::from_bytes(&bytes).map_err(|e| format!("{}: not a saved snapshot: {e}", file.display()))?;
    let limits = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            ServerConfig::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?.limits
        }
        None => concord_core::machine::Limits::default(),
    };
    let (index, term) = (snap.meta.index, snap.meta.term);
    let membership = concord_core::Membership::with_voters(voters.iter().map(|v| concord_core::NodeId(*v)));
    let write = concord_core::setup::restore(snap, membership, &limits)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let (mut wal, stored) =
        concord_tokio::wal::Wal::open(data_dir, concord_tokio::wal::WalOptions::default())
            .map_err(|e| format!("{}: {e}", data_dir.display()))?;
    if stored != concord_core::Persisted::default() {
        return Err(format!(
            "{}: holds a node's state already; restore into an empty directory",
            data_dir.display()
        )
        .into());
    }
    wal.append(&write).and_then(|()| wal.sync()).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    println!(
        "restored the snapshot at index {index} (term {term}) into {} for voters {voters:?}; start the node \
         with `concord serve --data-dir {}` and its peers",
        data_dir.display(),
        data_dir.display()
    );
    Ok(Outcome::Ok)
}

/// How long `snapshot save --from` waits for the node's answer.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// A bare HTTP/1.0 GET against a node's own endpoint; the body of a 200 answer, within
/// [`HTTP_TIMEOUT`].
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> Result<Vec<u8>, CliError> {
    tokio::time::timeout(HTTP_TIMEOUT, http_get_unbounded(addr, path))
        .await
        .map_err(|_| CliError::Other(format!("{addr}{path}: no answer within {HTTP_TIMEOUT:?}")))?
}

pub(crate) async fn http_get_unbounded(addr: SocketAddr, path: &str) -> Result<Vec<u8>, CliError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fail = |e: &dyn std::fmt::Display| CliError::Other(format!("{addr}{path}: {e}"));
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| fail(&e))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| fail(&e))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.map_err(|e| fail(&e))?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| fail(&"no HTTP answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.split_off(split + 4);
    if head.split_whitespace().nth(1) != Some("200") {
        let status = head.lines().next().unwrap_or_default().to_string();
        return Err(fail(&format!("{status}: {}", String::from_utf8_lossy(&body))));
    }
    Ok(body)
}

pub(crate) async fn serve(a: ServeArgs) -> Result<Outcome, CliError> {
    let mut signals = Signals::catch();
    let mut cfg = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            ServerConfig::from_toml(&text).map_err(|e| e.to_string())?
        }
        None => ServerConfig::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { cfg.$f = v; } )* };
    }
    set!(
        id,
        group,
        client_addr,
        peer_addr,
        http_addr,
        data_dir,
        election_timeout_min_ms,
        election_timeout_max_ms
    );
    set!(heartbeat_interval_ms, snapshot_threshold_entries, frame_bytes_max);
    if !a.peers.is_empty() {
        cfg.peers = a.peers.iter().copied().collect();
    }
    cfg.join |= a.join;
    if a.advertise_client_addr.is_some() {
        cfg.advertise_client_addr = a.advertise_client_addr.clone();
    }
    let mut node = concord_tokio::server::start(cfg).await.map_err(|e| e.to_string())?;
    tokio::select! {
        stopped = signals.recv() => {
            tracing::info!(signal = stopped, "shutting down");
            node.shutdown().await.map_err(|e| e.to_string())?;
        }
        // The node stopped by itself: a fatal error, reported and turned into exit 1.
        r = node.finished() => r.map_err(|e| e.to_string())?,
    }
    Ok(Outcome::Ok)
}

/// Resolves when the first of `nodes` stops by itself.
pub(crate) async fn first_stopped(
    nodes: &mut [concord_tokio::server::NodeHandle],
) -> Result<(), concord_tokio::server::ServerError> {
    use std::future::Future;
    use std::task::Poll;
    let mut waits: Vec<_> = nodes.iter_mut().map(|n| Box::pin(n.finished())).collect();
    std::future::poll_fn(|cx| {
        for w in &mut waits {
            if let Poll::Ready(r) = w.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
        }
        Poll::Pending
    })
    .await
}

/// Ctrl-C and SIGTERM, caught from the moment this is made: a signal that arrives while
/// a node is still starting is kept, and stops it once started, instead of killing the
/// process on the spot.
pub(crate) struct Signals {
    #[cfg(unix)]
    pub(crate) term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    pub(crate) int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn catch() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self { term: signal(SignalKind::terminate()).ok(), int: signal(SignalKind::interrupt()).ok() }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for the next signal; names it.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            if self.term.is_none() && self.int.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return "interrupt";
            }
            tokio::select! {
                () = next(&mut self.int) => "interrupt",
                () = next(&mut self.term) => "terminate",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupt"
        }
    }
}

pub(crate) async fn dev(a: DevArgs) -> Result<Outcome, CliError> {
    let mut signals = Signals::catch();
    let temp;
    let root = match a.data_dir {
        Some(d) => d,
        None => {
            temp = tempfile::Builder::new().prefix("concord-dev-").tempdir().map_err(|e| e.to_string())?;
            temp.path().to_path_buf()
        }
    };
    let addr = |offset: u16| SocketAddr::from(([127, 0, 0, 1], a.port + offset));
    let peers: std::collections::BTreeMap<u64, SocketAddr> =
        (0..3).map(|i| (i as u64 + 1, addr(100 + i))).collect();
    let mut nodes = Vec::new();
    for i in 0..3u16 {
        let id = u64::from(i) + 1;
        let cfg = ServerConfig {
            id,
            client_addr: addr(i),
            peer_addr: addr(100 + i),
            http_addr: addr(200 + i),
            peers: peers.clone(),
            data_dir: root.join(format!("node-{id}")),
            ..ServerConfig::default()
        };
        nodes.push(concord_tokio::server::start(cfg).await.map_err(|e| e.to_string())?);
    }
    let endpoints: Vec<String> = nodes.iter().map(|n| n.client_addr.to_string()).collect();
    println!("Concord dev cluster: 3 nodes, data in {}", root.display());
    for n in &nodes {
        println!(
            "  node {}: clients {}  peers {}  status http://{}/",
            n.id, n.client_addr, n.peer_addr, n.http_addr
        );
    }
    if a.port == DEFAULT_DEV_PORT {
        println!("Try:  concord counter incr visits   (the default endpoints point here)");
    } else {
        println!("Try:  concord counter incr visits --endpoints {}", endpoints.join(","));
    }
    println!("Ctrl-C stops the cluster.");
    let any_stopped = first_stopped(&mut nodes);
    let failed = tokio::select! {
        stopped = signals.recv() => {
            tracing::info!(signal = stopped, "stopping the dev cluster");
            None
        }
        r = any_stopped => {
            tracing::error!(error = ?r.as_ref().err().map(ToString::to_string), "a node stopped; stopping the dev cluster");
            r.err()
        }
    };
    for n in nodes {
        n.shutdown().await.map_err(|e| e.to_string())?;
    }
    match failed {
        // A node that stopped by itself fails the cluster, as it fails `serve`.
        Some(e) => Err(CliError::from(format!("a node stopped: {e}"))),
        None => Ok(Outcome::Ok),
    }
}
