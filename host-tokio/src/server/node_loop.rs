//! The node loop: the one task that owns the core's [`Replica`]. It takes inputs in
//! bounded batches, and after each batch drains every `poll_*` queue, as the core's
//! contract demands.

use super::inputs::{Input, InputQueue};
use super::{Clock, HostCounters, ServerError};
use crate::config::ServerConfig;
use crate::metrics::StatusReport;
use concord_core::machine::lock::LockEvent;
use concord_core::raft::Role;
use concord_core::server::{ConnId, Replica, ReplicaOutputs};
use concord_core::wire::ServerMessage;
use concord_core::{Event, Message, NodeId, StorageWrite};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

/// Inputs the node loop takes before it drains its outputs.
const INPUT_BATCH_MAX: usize = 256;

pub(super) struct NodeLoop {
    pub(super) replica: Replica,
    pub(super) clock: Clock,
    pub(super) peers: BTreeMap<NodeId, mpsc::Sender<Message>>,
    pub(super) conns: BTreeMap<ConnId, mpsc::Sender<ServerMessage>>,
    pub(super) storage: Option<std::sync::mpsc::Sender<StorageWrite>>,
    pub(super) storage_thread: Option<std::thread::JoinHandle<()>>,
    pub(super) counters: Arc<HostCounters>,
    pub(super) cfg: ServerConfig,
    /// Stops every task of the node when the loop ends, for whatever reason.
    pub(super) shutdown: Arc<watch::Sender<bool>>,
    /// Where the node stands, as last logged.
    pub(super) standing: Standing,
    /// Where each client connection comes from.
    pub(super) conn_addrs: BTreeMap<ConnId, std::net::SocketAddr>,
    /// When `/snapshot` last took a snapshot.
    pub(super) last_on_demand: Option<std::time::Instant>,
}

/// The least time between two snapshots taken for `/snapshot`.
const SNAPSHOT_ON_DEMAND_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl NodeLoop {
    pub(super) async fn run(
        mut self,
        mut inputs: InputQueue,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ServerError> {
        let result = loop {
            let deadline = self.clock.tokio_at(self.replica.poll_timeout());
            tokio::select! {
                biased;
                _ = shutdown.changed() => break Ok(()),
                input = inputs.recv() => {
                    let Some(input) = input else { break Ok(()) };
                    if let Err(e) = self.handle(input) {
                        break Err(e);
                    }
                    // Take what else is waiting before draining, so one drain serves many.
                    for _ in 0..INPUT_BATCH_MAX {
                        let Ok(input) = inputs.try_recv() else { break };
                        if let Err(e) = self.handle(input) {
                            return self.stop(Err(e));
                        }
                    }
                    // Timers are due even while inputs keep coming (heartbeats, elections).
                    let now = self.clock.now();
                    if self.replica.poll_timeout() <= now {
                        self.replica.handle_timeout(now);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.clock.now();
                    self.replica.handle_timeout(now);
                }
            }
            if let Err(e) = self.drain() {
                break Err(e);
            }
        };
        self.stop(result)
    }

    /// Graceful stop: the storage thread finishes its batch and syncs before it exits.
    fn stop(mut self, result: Result<(), ServerError>) -> Result<(), ServerError> {
        self.storage.take();
        if let Some(t) = self.storage_thread.take() {
            let _ = t.join();
        }
        // Listeners, peer links and the HTTP endpoint go with the loop: a node that cannot
        // write its log must not linger half alive.
        let _ = self.shutdown.send(true);
        info!(id = self.cfg.id, "node stopped");
        result
    }

    fn handle(&mut self, input: Input) -> Result<(), ServerError> {
        let now = self.clock.now();
        match input {
            Input::Peer(m) => {
                if let Err(e) = self.replica.handle_message(now, m) {
                    debug!(error = %e, "peer message refused");
                }
            }
            Input::PeerInbound(id, client_addr, web_addr, tx) => {
                if let Some(addr) = client_addr {
                    self.replica.set_client_addr(id, addr);
                }
                if let Some(url) = web_addr {
                    self.replica.set_web_addr(id, url);
                }
                if !self.cfg.peers.contains_key(&id.0) {
                    self.peers.insert(id, tx);
                }
            }
            Input::ClientOpen(conn, from, tx) => {
                self.conns.insert(conn, tx);
                self.conn_addrs.insert(conn, from);
            }
            Input::Client(conn, req) => self.replica.handle_client(now, conn, req),
            Input::ClientClosed(conn) => {
                // (A connection cut off as too slow was forgotten already.)
                self.conn_addrs.remove(&conn);
                if self.conns.remove(&conn).is_some() {
                    self.replica.handle_disconnect(conn);
                }
            }
            Input::Persisted(token) => {
                self.replica
                    .handle_persisted(token)
                    .map_err(|e| ServerError::Core(format!("storage confirmation refused: {e}")))?;
            }
            Input::StorageFailed(e) => {
                error!(error = %e, "write-ahead log failed; stopping");
                return Err(ServerError::Io(format!("write-ahead log failed: {e}")));
            }
            Input::Status(items, reply) => {
                let _ = reply.send(self.report(items));
            }
            // Its storage write goes out with the next drain.
            // At most one on-demand snapshot per SNAPSHOT_ON_DEMAND_INTERVAL: an HTTP client
            // asking in a loop gets the latest one rather than keeping the node busy.
            Input::Snapshot(reply) => {
                let recent = self.last_on_demand.is_some_and(|t| t.elapsed() < SNAPSHOT_ON_DEMAND_INTERVAL);
                let snapshot = if recent {
                    self.replica.node().latest_snapshot().cloned()
                } else {
                    self.last_on_demand = Some(std::time::Instant::now());
                    self.replica.snapshot_now()
                };
                let _ = reply.send(snapshot);
            }
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), ServerError> {
        let mut out = Sinks {
            storage: self.storage.as_ref(),
            peers: &self.peers,
            conns: &self.conns,
            counters: &self.counters,
            node: self.cfg.id,
            slow: Vec::new(),
            standing: &mut self.standing,
            removed_by: None,
        };
        // The storage thread confirms writes later (`persist` answers `false`), so `drive`
        // confirms nothing itself; an error would be a core bug, and stops the node.
        self.replica
            .drive(&mut out)
            .map_err(|e| ServerError::Core(format!("storage confirmation refused: {e}")))?;
        if let Some(by) = out.removed_by {
            error!(id = self.cfg.id, leader = by, "this node was removed from the cluster; stopping");
            return Err(ServerError::Removed { id: self.cfg.id, by });
        }
        for conn in out.slow {
            self.conns.remove(&conn);
            self.replica.handle_disconnect(conn);
        }
        while let Some(e) = self.replica.poll_lock_event() {
            let (h, us) = match e {
                LockEvent::Granted { waited_us, .. } => (&self.counters.lock_wait, waited_us),
                LockEvent::Released { held_us, .. } => (&self.counters.lock_hold, held_us),
            };
            if let Ok(mut h) = h.lock() {
                h.observe(us as f64 / 1e6);
            }
        }
        Ok(())
    }

    fn report(&self, items: usize) -> StatusReport {
        let replica = self.replica.report(items);
        let session_addrs = replica
            .session_conns
            .iter()
            .filter_map(|(s, c)| Some((s.0, self.conn_addrs.get(c)?.to_string())))
            .collect();
        StatusReport::new(&self.cfg, replica, &self.counters, session_addrs)
    }
}

/// Where the replica's outputs go: the storage thread, peer and client connections, and
/// the log. What cannot be delivered is counted, and a client too slow to read its
/// answers is noted, to be cut off once the drain is over.
struct Sinks<'a> {
    storage: Option<&'a std::sync::mpsc::Sender<StorageWrite>>,
    peers: &'a BTreeMap<NodeId, mpsc::Sender<Message>>,
    conns: &'a BTreeMap<ConnId, mpsc::Sender<ServerMessage>>,
    counters: &'a HostCounters,
    node: u64,
    slow: Vec<ConnId>,
    standing: &'a mut Standing,
    /// Set when a leader said this node was removed.
    removed_by: Option<u64>,
}

/// Where a node stands, as the log reports it: a change is logged once, not every
/// election round or term.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Standing {
    /// Nothing reported yet.
    #[default]
    Starting,
    /// This node leads.
    Leading,
    /// This node follows that leader.
    Following(NodeId),
    /// No leader is known: elections run, and writes wait.
    Electing,
}

impl ReplicaOutputs for Sinks<'_> {
    fn persist(&mut self, write: StorageWrite) -> bool {
        if let Some(s) = self.storage {
            let _ = s.send(write);
        }
        // Durable once the storage thread has synced it; it confirms then.
        false
    }

    fn send(&mut self, m: Message) {
        match self.peers.get(&m.to) {
            Some(tx) => {
                if tx.try_send(m).is_err() {
                    self.counters.peer_messages_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => debug!(to = m.to.0, "no address for peer; message dropped"),
        }
    }

    fn client(&mut self, conn: ConnId, msg: ServerMessage) {
        let Some(tx) = self.conns.get(&conn) else { return };
        if self.slow.contains(&conn) {
            return;
        }
        if tx.try_send(msg).is_err() {
            // A client that does not read its answers is cut off rather than buffered
            // without bound.
            warn!(conn = conn.0, "client too slow or gone; closing its connection");
            self.counters.client_slow_closed.fetch_add(1, Ordering::Relaxed);
            self.slow.push(conn);
        }
    }

    fn event(&mut self, e: Event<()>) {
        match e {
            Event::StateChanged { role, term, leader } => {
                debug!(id = self.node, ?role, term, leader = leader.map(|l| l.0), "raft state changed");
                let now = match (role, leader) {
                    (Role::Leader, _) => Standing::Leading,
                    (_, Some(l)) => Standing::Following(l),
                    (_, None) => Standing::Electing,
                };
                let was = std::mem::replace(self.standing, now);
                match (was, now) {
                    _ if was == now => {}
                    (_, Standing::Leading) => info!(id = self.node, term, "this node leads"),
                    (Standing::Electing, Standing::Following(l)) => {
                        info!(id = self.node, term, leader = l.0, "a leader is elected; following it")
                    }
                    (_, Standing::Following(l)) => {
                        info!(id = self.node, term, leader = l.0, "following the leader")
                    }
                    (Standing::Starting, Standing::Electing) => {
                        info!(id = self.node, term, "no leader yet; electing one")
                    }
                    (_, Standing::Electing) => warn!(
                        id = self.node,
                        term,
                        "no leader: the cluster cannot commit until a quorum elects one (elections under way)"
                    ),
                    (_, Standing::Starting) => {}
                }
            }
            Event::SnapshotInstalled { index } => info!(id = self.node, index, "snapshot installed"),
            Event::Removed { by } => self.removed_by = Some(by.0),
            Event::Machine(()) => {}
        }
    }
}
