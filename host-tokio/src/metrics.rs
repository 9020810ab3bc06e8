//! What a node reports about itself: the `/status` JSON and the Prometheus `/metrics` text.

use crate::config::ServerConfig;
use crate::server::HostCounters;
use concord_core::server::ReplicaReport;
use concord_core::Role;
use serde::Serialize;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

/// Bucket bounds, seconds, for I/O latencies (fsync).
pub const LATENCY_BUCKETS_S: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Bucket bounds, seconds, for how long locks are held or waited for.
pub const LOCK_BUCKETS_S: &[f64] =
    &[0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0];

/// A histogram with Prometheus' cumulative buckets.
#[derive(Clone, Debug, Serialize)]
pub struct Histogram {
    /// Upper bounds of the buckets, seconds.
    pub bounds_s: &'static [f64],
    /// Observations per bucket (not cumulative), the last one for +Inf.
    pub counts: Vec<u64>,
    /// Sum of observations, seconds.
    pub sum_s: f64,
    /// Observations.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram with these bucket bounds.
    pub fn new(bounds_s: &'static [f64]) -> Self {
        Self { bounds_s, counts: vec![0; bounds_s.len() + 1], sum_s: 0.0, count: 0 }
    }

    /// Records one observation, in seconds.
    pub fn observe(&mut self, s: f64) {
        let i = self.bounds_s.iter().position(|b| s <= *b).unwrap_or(self.bounds_s.len());
        self.counts[i] += 1;
        self.sum_s += s;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in self.bounds_s.iter().enumerate() {
            cumulative += self.counts[i];
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum_s, self.count);
    }
}

/// Counters of the host around the core.
#[derive(Clone, Debug, Serialize)]
pub struct HostReport {
    /// WAL fsync latency.
    pub fsync: Histogram,
    /// How long fenced locks were held (log time, as this node applied the releases).
    pub lock_hold: Histogram,
    /// How long granted lock requests had waited in the queue (0 for immediate grants).
    pub lock_wait: Histogram,
    /// Storage writes made durable.
    pub writes_persisted: u64,
    /// Peer messages dropped because a peer's queue was full.
    pub peer_messages_dropped: u64,
    /// Client frames refused (malformed, oversize, wrong kind); each closed its connection.
    pub client_frames_refused: u64,
    /// Client connections open.
    pub client_connections: u64,
    /// Client connections closed because the client did not read fast enough.
    pub client_slow_closed: u64,
}

/// A node's state at one moment: what `/status` returns and the status page shows.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    /// Node id.
    pub id: u64,
    /// Group id.
    pub group: u64,
    /// Client address.
    pub client_addr: SocketAddr,
    /// Peer address.
    pub peer_addr: SocketAddr,
    /// HTTP address.
    pub http_addr: SocketAddr,
    /// Peer addresses configured, by id.
    pub peers: Vec<(u64, SocketAddr)>,
    /// What the core's replica reports: Raft state and counters, primitives in use,
    /// sessions (the first few, see `STATUS_ITEMS_MAX`; none for `/metrics`), and the
    /// cluster view clients get.
    #[serde(flatten)]
    pub replica: ReplicaReport,
    /// Host counters.
    pub host: HostReport,
    /// Sessions with a connection to this node, and the client address it comes from.
    pub session_addrs: Vec<(u64, String)>,
}

impl StatusReport {
    pub(crate) fn new(
        cfg: &ServerConfig,
        replica: ReplicaReport,
        c: &HostCounters,
        session_addrs: Vec<(u64, String)>,
    ) -> Self {
        // A histogram whose lock was poisoned is still a valid histogram.
        let snapshot = |h: &std::sync::Mutex<Histogram>| {
            h.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
        };
        let host = HostReport {
            fsync: snapshot(&c.fsync),
            lock_hold: snapshot(&c.lock_hold),
            lock_wait: snapshot(&c.lock_wait),
            writes_persisted: c.writes_persisted.load(Ordering::Relaxed),
            peer_messages_dropped: c.peer_messages_dropped.load(Ordering::Relaxed),
            client_frames_refused: c.client_frames_refused.load(Ordering::Relaxed),
            client_connections: c.client_connections.load(Ordering::Relaxed),
            client_slow_closed: c.client_slow_closed.load(Ordering::Relaxed),
        };
        Self {
            id: cfg.id,
            group: cfg.group,
            client_addr: cfg.client_addr,
            peer_addr: cfg.peer_addr,
            http_addr: cfg.http_addr,
            peers: cfg.peers.iter().map(|(id, a)| (*id, *a)).collect(),
            replica,
            host,
            session_addrs,
        }
    }

    /// The Prometheus text exposition of this report.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let r = &self.replica.raft;
        let role = |x: Role| u8::from(r.role == x);
        let gauges: [(&str, &str, u64); 9] = [
            ("concord_raft_term", "Current Raft term.", r.term),
            ("concord_raft_leader_id", "Known leader id (0: none).", r.leader.map_or(0, |l| l.0)),
            ("concord_raft_commit_index", "Highest committed log index.", r.commit_index),
            ("concord_raft_applied_index", "Highest applied log index.", r.applied_index),
            ("concord_raft_last_index", "Last log index stored.", r.last_index),
            ("concord_raft_snapshot_index", "Last index covered by the snapshot.", r.snapshot_index),
            ("concord_raft_voters", "Voting members.", r.membership.voters.len() as u64),
            ("concord_sessions", "Open sessions.", self.replica.sessions_open as u64),
            ("concord_client_connections", "Client connections open.", self.host.client_connections),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP concord_raft_role 1 for the role this node has.\n# TYPE concord_raft_role gauge"
        );
        for (label, x) in [
            ("follower", Role::Follower),
            ("precandidate", Role::PreCandidate),
            ("candidate", Role::Candidate),
            ("leader", Role::Leader),
        ] {
            let _ = writeln!(out, "concord_raft_role{{role=\"{label}\"}} {}", role(x));
        }
        let p = &self.replica.primitives;
        let _ = writeln!(
            out,
            "# HELP concord_primitives In-use primitives by kind.\n# TYPE concord_primitives gauge"
        );
        let n = p.counts;
        for (kind, n) in [
            ("lock_held", n.locks),
            ("rwlock", n.rwlocks),
            ("semaphore", n.semaphores),
            ("latch", n.latches),
            ("barrier", n.barriers),
            ("election", n.elections),
        ] {
            let _ = writeln!(out, "concord_primitives{{kind=\"{kind}\"}} {n}");
        }
        let m = &self.replica.metrics;
        let counters: [(&str, u64); 14] = [
            ("elections_started", m.elections_started),
            ("elections_won", m.elections_won),
            ("check_quorum_step_downs", m.check_quorum_step_downs),
            ("appends_sent", m.appends_sent),
            ("entries_sent", m.entries_sent),
            ("appends_rejected", m.appends_rejected),
            ("entries_committed_as_leader", m.entries_committed_as_leader),
            ("entries_applied", m.entries_applied),
            ("snapshots_taken", m.snapshots_taken),
            ("snapshots_installed", m.snapshots_installed),
            ("reads_read_index", m.reads_read_index),
            ("reads_lease", m.reads_lease),
            ("reads_stale", m.reads_stale),
            ("transfers_started", m.transfers_started),
        ];
        let _ = writeln!(out, "# HELP concord_raft_events_total Raft events since the node started.\n# TYPE concord_raft_events_total counter");
        for (event, v) in counters {
            let _ = writeln!(out, "concord_raft_events_total{{event=\"{event}\"}} {v}");
        }
        let h = &self.host;
        for (name, help, v) in [
            ("concord_wal_writes_total", "Storage writes made durable.", h.writes_persisted),
            (
                "concord_peer_messages_dropped_total",
                "Peer messages dropped on a full queue.",
                h.peer_messages_dropped,
            ),
            (
                "concord_client_frames_refused_total",
                "Malformed or oversize client frames.",
                h.client_frames_refused,
            ),
            (
                "concord_client_slow_closed_total",
                "Client connections closed for not reading.",
                h.client_slow_closed,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        h.fsync.render(&mut out, "concord_wal_fsync_seconds", "WAL fsync latency.");
        h.lock_hold.render(&mut out, "concord_lock_hold_seconds", "How long fenced locks were held.");
        h.lock_wait.render(&mut out, "concord_lock_wait_seconds", "How long granted lock requests waited.");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_in_the_exposition() {
        let mut h = Histogram::new(LATENCY_BUCKETS_S);
        h.observe(0.0002);
        h.observe(0.003);
        h.observe(10.0);
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.00025\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2.5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"));
    }
}
