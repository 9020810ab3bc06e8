//! The primitives simulator: a group of [`Replica`]s running the coordination machine,
//! driven by sans-IO [`Client`]s with a mixed workload over every primitive, under
//! injected faults (message loss, duplication, delay and reordering, partitions,
//! crash-restart losing unconfirmed writes, process pauses, clock drift, leadership
//! transfers). One seed drives everything; every message crosses the real wire format.
//!
//! After every step it checks, on every replica: state machine safety (replicas that
//! applied the same index hold the same state), fences strictly increasing per lock,
//! read-write lock and election; a writer never beside anyone; semaphore holders within
//! the permits; nothing owned by a session that has ended. From the clients' side: no
//! two clients hold a lock (or a write lock, or an election) at once unless the earlier
//! holder's session ended first; latches open only at the count-down that reached zero;
//! barriers trip once with exactly their parties; watch streams are gap-free and in log
//! order; and, at the end, counter, reference and key-value histories are linearizable.

mod checks;
mod workload;

use crate::sim::disk::Disk;
use crate::sim::net::Net;
use crate::sim::{DriftClock, Faults, Scheduled};
use checks::Checks;
use concord_core::client::{Client, ClientConfig, Peer};
use concord_core::machine::{Concord, Limits, MachineBugs};
use concord_core::raft::Membership;
use concord_core::server::{ConnId, Replica, ServeLimits};
use concord_core::wire::{ClientRequest, Envelope, ServerMessage};
use concord_core::{Config, GroupId, Instant, Message, Node, NodeId, Role, Start};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::fmt;
use workload::Workload;

/// Events one run may take before it is declared livelocked (runs take 5–50 thousand).
const EVENTS_MAX: u64 = 2_000_000;

/// Everything that defines one run.
#[derive(Clone, Debug)]
pub struct PsimConfig {
    /// Drives every random choice.
    pub seed: u64,
    /// Nodes (all voters).
    pub nodes: u64,
    /// Clients.
    pub clients: usize,
    /// How long faults are injected, µs of virtual time.
    pub chaos_us: u64,
    /// After healing, every client must complete this many more operations…
    pub ops_after_heal: u32,
    /// …within this long, µs.
    pub heal_bound_us: u64,
    /// Session TTL of every client, ms.
    pub session_ttl_ms: u64,
    /// Faults injected.
    pub faults: Faults,
    /// Entries between snapshots.
    pub snapshot_threshold_entries: u64,
    /// Keep a human-readable trace.
    pub trace: bool,
    /// Machine rules deliberately broken, to prove the checks catch them.
    pub bugs: MachineBugs,
    /// The names of those bugs, for the replay command.
    pub bug_names: Vec<String>,
}

impl PsimConfig {
    /// The standard configuration for `seed`, with a fault profile drawn from it.
    pub fn for_seed(seed: u64) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x9e37_79b9);
        let mut faults = Faults::from_seed(seed);
        // Membership changes are the Raft simulator's business.
        faults.membership = false;
        Self {
            seed,
            nodes: if rng.next_u64() % 3 == 0 { 5 } else { 3 },
            clients: 6,
            chaos_us: 4_000_000,
            ops_after_heal: 3,
            heal_bound_us: 20_000_000,
            // Sub-second TTLs half the time, so sessions expire under partitions.
            session_ttl_ms: if rng.next_u64() % 2 == 0 { 700 } else { 2_000 },
            faults,
            snapshot_threshold_entries: 96,
            trace: false,
            bugs: MachineBugs::default(),
            bug_names: Vec::new(),
        }
    }

    /// Every fault kind at once.
    pub fn all_faults(seed: u64) -> Self {
        let mut c = Self::for_seed(seed);
        c.faults = Faults::all();
        c.faults.membership = false;
        c
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut cmd =
            format!("cargo run -p concord-tests --profile sim --bin concord-psim -- --seed {}", self.seed);
        if self.faults == Self::all_faults(self.seed).faults {
            cmd.push_str(" --all-faults");
        }
        for b in &self.bug_names {
            cmd.push_str(" --bug ");
            cmd.push_str(b);
        }
        cmd.push_str(" --trace");
        cmd
    }

    /// The machine bugs [`PsimConfig::enable_bug`] knows.
    pub const BUGS: [&'static str; 5] = [
        "reply-cache-ignored",
        "lock-ignores-holder",
        "latch-releases-one-early",
        "session-end-keeps-locks",
        "watch-drops-deletes",
    ];

    /// Breaks the machine rule `name` (one of [`PsimConfig::BUGS`]) in every replica.
    pub fn enable_bug(&mut self, name: &str) -> Result<(), String> {
        let b = &mut self.bugs;
        match name {
            "reply-cache-ignored" => b.reply_cache_ignored = true,
            "lock-ignores-holder" => b.lock_ignores_holder = true,
            "latch-releases-one-early" => b.latch_releases_one_early = true,
            "session-end-keeps-locks" => b.session_end_keeps_locks = true,
            "watch-drops-deletes" => b.watch_drops_deletes = true,
            other => return Err(format!("unknown bug {other:?}; known: {}", Self::BUGS.join(", "))),
        }
        self.bug_names.push(name.into());
        Ok(())
    }

    fn raft_config(&self, id: NodeId) -> Config {
        let mut c = Config::new(id, GroupId(7));
        c.snapshot_threshold_entries = self.snapshot_threshold_entries;
        c.snapshot_chunk_bytes = 512;
        c.clock_drift_max_ppm = self.faults.drift_ppm.max(1_000);
        c
    }
}

/// A property the run broke.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The seed.
    pub seed: u64,
    /// Which property.
    pub property: &'static str,
    /// What happened.
    pub detail: String,
    /// Virtual time, µs.
    pub at_us: u64,
    /// How to replay it.
    pub replay: String,
    /// The last lines of the trace, if tracing.
    pub trace_tail: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {}: {} violated at {} µs: {}", self.seed, self.property, self.at_us, self.detail)?;
        for line in &self.trace_tail {
            writeln!(f, "  {line}")?;
        }
        write!(f, "replay: {}", self.replay)
    }
}

/// What a passing run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Simulation steps.
    pub steps: u64,
    /// Client operations completed, by kind.
    pub ops: std::collections::BTreeMap<&'static str, u64>,
    /// Operations whose outcome stayed unknown.
    pub unknown: u64,
    /// Sessions lost (expired) and reopened.
    pub sessions_lost: u64,
    /// Crashes, partitions, pauses, transfers.
    pub crashes: u64,
    /// Link faults.
    pub partitions: u64,
    /// Process pauses.
    pub pauses: u64,
    /// Leadership transfers requested.
    pub transfers: u64,
    /// Lock grants observed by clients.
    pub lock_grants: u64,
    /// Barrier generations that tripped.
    pub barrier_trips: u64,
    /// Watch events delivered.
    pub watch_events: u64,
    /// Signals delivered.
    pub signals: u64,
    /// `Tick` entries proposed.
    pub ticks: u64,
    /// Snapshots installed.
    pub snapshots_installed: u64,
    /// Time from healing to every client being served again, µs.
    pub recovery_us: u64,
    /// The fault kinds on.
    pub faults: Vec<&'static str>,
}

enum Ev {
    Peer { to: usize, msg: Box<Message> },
    ToNode { node: usize, client: usize, req: Box<ClientRequest> },
    ToClient { client: usize, node: usize, incarnation: u64, epoch: u64, msg: Box<ServerMessage> },
    NodeTimer { node: usize, generation: u64 },
    DiskDone { node: usize, incarnation: u64 },
    ClientTimer { client: usize, generation: u64 },
    ClientAct { client: usize },
    Chaos,
    HealLinks { epoch: u64 },
    Restart { node: usize },
    EndChaos,
}

struct PNode {
    id: NodeId,
    replica: Option<Replica>,
    incarnation: u64,
    disk: Disk,
    clock: DriftClock,
    timer_generation: u64,
    timer_at: u64,
    paused_until: u64,
}

struct PClient {
    client: Client,
    timer_generation: u64,
    timer_at: u64,
}

/// A simulated group with clients.
pub struct Psim {
    cfg: PsimConfig,
    rng: Xoshiro256PlusPlus,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled<Ev>>>,
    nodes: Vec<PNode>,
    clients: Vec<PClient>,
    net: Net,
    workload: Workload,
    checks: Checks,
    report: Report,
    chaos_on: bool,
    healed_at: Option<u64>,
    link_epoch: u64,
    next_admin: u64,
    trace: Vec<String>,
    /// Per (node, client) connection: bumped when it breaks, so nothing sent on the
    /// broken one arrives later.
    conn_epoch: Vec<u64>,
}

/// The connection the leadership-transfer chaos uses; answers on it go nowhere.
const ADMIN_CONN: ConnId = ConnId(u64::MAX);

impl Psim {
    /// Builds the group and its clients.
    pub fn new(cfg: PsimConfig) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        let n = cfg.nodes as usize;
        let half = i64::from(cfg.faults.drift_ppm / 2);
        let nodes = (0..n)
            .map(|i| PNode {
                id: NodeId(i as u64 + 1),
                replica: None,
                incarnation: 0,
                disk: Disk::default(),
                clock: DriftClock {
                    offset_us: 0,
                    drift_ppm: if half == 0 {
                        0
                    } else {
                        (rng.next_u64() % (2 * half as u64 + 1)) as i64 - half
                    },
                },
                timer_generation: 0,
                timer_at: u64::MAX,
                paused_until: 0,
            })
            .collect();
        // The network's endpoints: nodes first, then clients.
        let net = Net::new(cfg.faults.clone(), n + cfg.clients, &mut rng);
        let node_ids: Vec<NodeId> = (1..=cfg.nodes).map(NodeId).collect();
        let clients = (0..cfg.clients)
            .map(|c| {
                let mut cc = ClientConfig::for_nodes(GroupId(7), &node_ids);
                cc.session_ttl_ms = cfg.session_ttl_ms;
                cc.request_timeout_us = 400_000;
                cc.retry_backoff_us = 30_000;
                cc.commands_in_flight_max = 8;
                let mut client = Client::new(cc, Instant::ZERO, rng.next_u64() ^ c as u64);
                client.open_session(Instant::ZERO);
                PClient { client, timer_generation: 0, timer_at: u64::MAX }
            })
            .collect();
        let workload = Workload::new(cfg.clients, rng.next_u64());
        let cfg_clients = cfg.clients;
        let report = Report { seed: cfg.seed, faults: cfg.faults.kinds(), ..Report::default() };
        let mut sim = Self {
            checks: Checks::new(n),
            cfg,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            clients,
            net,
            workload,
            report,
            chaos_on: true,
            healed_at: None,
            link_epoch: 0,
            next_admin: 1 << 40,
            trace: Vec::new(),
            conn_epoch: vec![0; n * cfg_clients],
        };
        let voters = Membership::with_voters(node_ids);
        for i in 0..n {
            sim.boot(i, Start::NewCluster(voters.clone()));
        }
        for c in 0..sim.cfg.clients {
            sim.drain_client(c);
            sim.schedule(1_000, Ev::ClientAct { client: c });
        }
        sim
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, event: ev }));
    }

    fn range(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.rng.next_u64() % (hi - lo + 1)
    }

    fn random(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.cfg.trace {
            let l = format!("{:>10} {}", self.now, line());
            self.trace.push(l);
        }
    }

    fn boot(&mut self, idx: usize, start: Start) {
        let seed = self.rng.next_u64();
        let config = self.cfg.raft_config(self.nodes[idx].id);
        let local = self.nodes[idx].clock.local(self.now);
        let mut machine = Concord::new(Limits::default()).expect("the default limits are valid");
        machine.inject(self.cfg.bugs);
        match Node::new(config, machine, start, local, seed) {
            Ok(node) => {
                let mut replica = Replica::new(node, ServeLimits::default());
                replica.record_machine_events();
                self.nodes[idx].replica = Some(replica);
                self.checks.on_boot(idx);
            }
            Err(e) => self.checks.fail("restart", format!("n{} failed to restart: {e}", idx + 1)),
        }
        self.drain_node(idx);
    }

    /// Runs to the end and checks everything.
    pub fn run(mut self) -> Result<Report, Violation> {
        let end = self.cfg.chaos_us;
        let first = self.cfg.faults.chaos_interval_us;
        self.schedule(first, Ev::Chaos);
        self.schedule(end, Ev::EndChaos);
        let deadline = end + self.cfg.heal_bound_us;
        while let Some(Reverse(s)) = self.queue.pop() {
            if s.at > deadline {
                break;
            }
            if self.report.steps > EVENTS_MAX {
                // Runs take tens of thousands of events; a storm of them is a livelock
                // (say, a client retrying a refused connection as fast as it is refused).
                let detail = format!("more than {EVENTS_MAX} events: something retries without pause");
                return Err(self.violation("livelock", detail));
            }
            self.now = s.at;
            self.report.steps += 1;
            self.handle(s.event);
            if let Some((p, d)) = self.checks.take_violation() {
                return Err(self.violation(p, d));
            }
            if let Some(healed) = self.healed_at {
                if self.workload.all_served(self.cfg.ops_after_heal) {
                    self.report.recovery_us = self.now - healed;
                    return self.finish();
                }
            }
        }
        let detail = match self.healed_at {
            Some(h) => format!(
                "{} µs after healing, clients still waiting: {}",
                self.now.saturating_sub(h),
                self.workload.describe_waiting(self.cfg.ops_after_heal)
            ),
            None => "the run ended before healing".into(),
        };
        Err(self.violation("liveness", detail))
    }

    fn finish(mut self) -> Result<Report, Violation> {
        // (Counted on the replicas running at the end; a crash loses its node's counters.)
        for r in self.nodes.iter().filter_map(|n| n.replica.as_ref()) {
            self.report.ticks += r.node().metrics().ticks_proposed;
            self.report.snapshots_installed += r.node().metrics().snapshots_installed;
        }
        self.workload.report(&mut self.report);
        if let Err((p, d)) = self.workload.final_checks() {
            return Err(self.violation(p, d));
        }
        Ok(self.report)
    }

    fn violation(&self, property: &'static str, detail: String) -> Violation {
        let tail = self.trace.iter().rev().take(60).rev().cloned().collect();
        Violation {
            seed: self.cfg.seed,
            property,
            detail,
            at_us: self.now,
            replay: self.cfg.replay_command(),
            trace_tail: tail,
        }
    }

    fn handle(&mut self, ev: Ev) {
        let node_of = match &ev {
            Ev::Peer { to, .. } => Some(*to),
            Ev::ToNode { node, .. } | Ev::NodeTimer { node, .. } | Ev::DiskDone { node, .. } => Some(*node),
            _ => None,
        };
        if let Some(n) = node_of {
            if self.nodes[n].paused_until > self.now {
                let at = self.nodes[n].paused_until;
                self.schedule(at, ev);
                return;
            }
        }
        match ev {
            Ev::Peer { to, msg } => self.deliver_peer(to, *msg),
            Ev::ToNode { node, client, req } => self.deliver_to_node(node, client, *req),
            Ev::ToClient { client, node, incarnation, epoch, msg } => {
                let link = node * self.cfg.clients + client;
                if self.nodes[node].incarnation != incarnation || self.conn_epoch[link] != epoch {
                    return;
                }
                if self.net.blocked(node, self.cfg.nodes as usize + client) {
                    self.conn_epoch[link] += 1;
                    // A connection that cannot deliver breaks, and both ends notice (as a
                    // TCP connection times out): nothing is silently skipped in a stream.
                    let now = Instant::from_micros(self.now);
                    self.clients[client].client.handle_disconnect(now, Peer(node as u32));
                    let conn = self.conn_id(client, epoch);
                    if let Some(r) = self.nodes[node].replica.as_mut() {
                        r.handle_disconnect(conn);
                    }
                    self.drain_client(client);
                    return;
                }
                let now = Instant::from_micros(self.now);
                self.clients[client].client.handle_message(now, Peer(node as u32), *msg);
                self.drain_client(client);
            }
            Ev::NodeTimer { node, generation } => {
                if self.nodes[node].timer_generation != generation {
                    return;
                }
                self.nodes[node].timer_at = u64::MAX;
                let local = self.nodes[node].clock.local(self.now);
                if let Some(r) = self.nodes[node].replica.as_mut() {
                    r.handle_timeout(local);
                }
                self.drain_node(node);
            }
            Ev::DiskDone { node, incarnation } => self.disk_done(node, incarnation),
            Ev::ClientTimer { client, generation } => {
                if self.clients[client].timer_generation != generation {
                    return;
                }
                self.clients[client].timer_at = u64::MAX;
                self.clients[client].client.handle_timeout(Instant::from_micros(self.now));
                self.drain_client(client);
            }
            Ev::ClientAct { client } => {
                let now = Instant::from_micros(self.now);
                if let Some(delay) =
                    self.workload.act(client, self.now, &mut self.clients[client].client, now)
                {
                    self.schedule(self.now + delay, Ev::ClientAct { client });
                }
                self.drain_client(client);
            }
            Ev::Chaos => self.chaos(),
            Ev::HealLinks { epoch } => {
                if epoch == self.link_epoch {
                    self.net.heal();
                }
            }
            Ev::Restart { node } => {
                if self.nodes[node].replica.is_none() {
                    let persisted = self.nodes[node].disk.persisted();
                    self.note(|| format!("n{} restarts", node + 1));
                    self.boot(node, Start::Restart(persisted));
                }
            }
            Ev::EndChaos => self.heal_everything(),
        }
    }

    fn deliver_peer(&mut self, to: usize, msg: Message) {
        let from = msg.from.0 as usize - 1;
        if self.net.blocked(from, to) {
            return;
        }
        let local = self.nodes[to].clock.local(self.now);
        let Some(r) = self.nodes[to].replica.as_mut() else { return };
        if let Err(e) = r.handle_message(local, msg) {
            self.checks.fail("routing", format!("n{} refused a message: {e}", to + 1));
        }
        self.drain_node(to);
    }

    fn deliver_to_node(&mut self, node: usize, client: usize, req: ClientRequest) {
        if self.net.blocked(self.cfg.nodes as usize + client, node) {
            return;
        }
        let local = self.nodes[node].clock.local(self.now);
        let conn = self.conn_id(client, self.conn_epoch[node * self.cfg.clients + client]);
        let Some(r) = self.nodes[node].replica.as_mut() else {
            // The process is down: the client's connection is refused, and it notices.
            let now = Instant::from_micros(self.now);
            self.clients[client].client.handle_disconnect(now, Peer(node as u32));
            self.drain_client(client);
            return;
        };
        r.handle_client(local, conn, req);
        self.drain_node(node);
    }

    /// The replica's name for epoch `epoch` of a client's connection to a node: each
    /// reconnection is a new connection, as a real host numbers them, so what a replica
    /// answers on a broken one (a request it read before the break) never arrives on the
    /// next.
    fn conn_id(&self, client: usize, epoch: u64) -> ConnId {
        ConnId(epoch * self.cfg.clients as u64 + client as u64)
    }

    /// The client and connection epoch of `conn` (see [`Psim::conn_id`]).
    fn conn_of(&self, conn: ConnId) -> (usize, u64) {
        let clients = self.cfg.clients as u64;
        ((conn.0 % clients) as usize, conn.0 / clients)
    }

    fn disk_done(&mut self, idx: usize, incarnation: u64) {
        if self.nodes[idx].incarnation != incarnation {
            return;
        }
        let Some(token) = self.nodes[idx].disk.complete_next() else { return };
        if let Err(e) = self.nodes[idx].disk.check() {
            self.checks.fail("storage contract", format!("n{}: {e}", idx + 1));
        }
        if let (true, Some(r)) = (self.nodes[idx].disk.idle(), self.nodes[idx].replica.as_ref()) {
            if let Err(e) = self.nodes[idx].disk.matches_node(r.node()) {
                self.checks.fail("storage contract", format!("n{}: {e}", idx + 1));
            }
        }
        let Some(r) = self.nodes[idx].replica.as_mut() else { return };
        if let Err(e) = r.handle_persisted(token) {
            self.checks.fail("storage contract", format!("n{}: {e}", idx + 1));
        }
        self.drain_node(idx);
    }

    fn drain_node(&mut self, idx: usize) {
        let n = self.cfg.nodes as usize;
        let PNode { replica, disk, .. } = &mut self.nodes[idx];
        let Some(r) = replica.as_mut() else { return };
        let mut writes = Vec::new();
        while let Some(w) = r.poll_storage() {
            writes.push(w);
        }
        let mut peers = Vec::new();
        while let Some(m) = r.poll_transmit() {
            if let Err(e) = disk.permits(&m) {
                self.checks.fail("persist before send", format!("n{}: {e}", idx + 1));
            }
            peers.push(m);
        }
        let mut to_clients = Vec::new();
        while let Some(out) = r.poll_client() {
            to_clients.push(out);
        }
        // Role changes and installed snapshots need no action here.
        while r.poll_event().is_some() {}
        let deadline = r.poll_timeout();
        self.checks.after_step(idx, r);
        for w in writes {
            let lat = self.range(self.cfg.faults.disk_latency_us);
            let done_at = self.nodes[idx].disk.submit(w, self.now + lat);
            let incarnation = self.nodes[idx].incarnation;
            self.schedule(done_at, Ev::DiskDone { node: idx, incarnation });
        }
        for m in peers {
            let to = m.to.0 as usize - 1;
            if to >= n {
                continue;
            }
            let m = match self.net.through_wire(m) {
                Ok(m) => m,
                Err(e) => {
                    self.checks.fail("wire", e);
                    continue;
                }
            };
            for _ in 0..self.net.copies(&mut self.rng, idx, to) {
                let delay = self.range(self.net.delay_range(idx, to));
                self.schedule(self.now + delay, Ev::Peer { to, msg: Box::new(m.clone()) });
            }
        }
        let incarnation = self.nodes[idx].incarnation;
        for (conn, msg) in to_clients {
            if conn == ADMIN_CONN {
                continue;
            }
            let (client, epoch) = self.conn_of(conn);
            let Ok(Envelope::Response(msg)) = self.net.envelope_through_wire(Envelope::Response(msg)) else {
                self.checks.fail("wire", "a server message did not survive the wire".into());
                continue;
            };
            // Client connections are ordered streams: one delay per message, no loss
            // beyond a broken link (requests, on the other hand, may be lost: see below).
            let (lo, hi) = self.net.delay_range(idx, n + client);
            let delay = lo.max(200) + (hi - lo) / 4;
            self.schedule(
                self.now + delay,
                Ev::ToClient { client, node: idx, incarnation, epoch, msg: Box::new(msg) },
            );
        }
        let node = &mut self.nodes[idx];
        let at = node.clock.true_time(deadline, self.now);
        if at != node.timer_at {
            node.timer_at = at;
            node.timer_generation += 1;
            let generation = node.timer_generation;
            if at != u64::MAX {
                self.schedule(at, Ev::NodeTimer { node: idx, generation });
            }
        }
    }

    fn drain_client(&mut self, c: usize) {
        let n = self.cfg.nodes as usize;
        let now = self.now;
        let mut sends = Vec::new();
        while let Some(s) = self.clients[c].client.poll_transmit() {
            sends.push(s);
        }
        let mut events = Vec::new();
        while let Some(e) = self.clients[c].client.poll_event() {
            events.push(e);
        }
        for e in events {
            if let Some(delay) = self.workload.on_event(c, now, e, &mut self.checks) {
                self.schedule(now + delay, Ev::ClientAct { client: c });
            }
        }
        // The workload may have submitted more: collect those sends too.
        while let Some(s) = self.clients[c].client.poll_transmit() {
            sends.push(s);
        }
        for (node, req) in sends {
            // Endpoints are the nodes in order (psim replicas advertise no addresses).
            let to = node.0 as usize;
            if to >= n {
                continue;
            }
            let Ok(Envelope::Request(req)) = self.net.envelope_through_wire(Envelope::Request(req)) else {
                self.checks.fail("wire", "a client request did not survive the wire".into());
                continue;
            };
            // A request may be lost (the connection broke before it was read) or arrive
            // twice (a retry racing the original): both must be harmless.
            for _ in 0..self.net.copies(&mut self.rng, n + c, to) {
                let delay = self.range(self.net.delay_range(n + c, to));
                self.schedule(now + delay, Ev::ToNode { node: to, client: c, req: Box::new(req.clone()) });
            }
        }
        let pc = &mut self.clients[c];
        let at = pc.client.poll_timeout().as_micros().max(now);
        if at != pc.timer_at {
            pc.timer_at = at;
            pc.timer_generation += 1;
            let generation = pc.timer_generation;
            if at != u64::MAX {
                self.schedule(at, Ev::ClientTimer { client: c, generation });
            }
        }
    }

    fn current_leader(&self) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(r) = &n.replica {
                if r.node().role() == Role::Leader && best.is_none_or(|(t, _)| r.node().term() > t) {
                    best = Some((r.node().term(), i));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    fn chaos(&mut self) {
        if !self.chaos_on {
            return;
        }
        let interval = self.cfg.faults.chaos_interval_us;
        let next = self.now + self.range((interval / 2, interval * 3 / 2));
        self.schedule(next, Ev::Chaos);
        let f = &self.cfg.faults;
        let enabled = [f.crashes, f.partitions, f.one_way, f.leader_isolation, f.transfers, f.pauses];
        let actions: Vec<u8> = (0u8..).zip(enabled).filter(|(_, on)| *on).map(|(a, _)| a).collect();
        if actions.is_empty() {
            return;
        }
        let n = self.cfg.nodes as usize;
        let endpoints = n + self.cfg.clients;
        match actions[self.random(actions.len() as u64) as usize] {
            0 => self.crash_one(),
            1 => {
                // Nodes and clients split in two.
                let other = 1 + self.random(n as u64 - 1) as usize;
                let mut side = BTreeSet::from([0]);
                for i in 1..endpoints {
                    if i != other && self.random(2) == 0 {
                        side.insert(i);
                    }
                }
                self.net.partition(&side);
                self.links_changed("partition");
            }
            2 => {
                let from = self.random(endpoints as u64) as usize;
                let to = self.random(n as u64) as usize;
                self.net.cut_one_way(from, to);
                self.links_changed("one-way cut");
            }
            3 => {
                if let Some(l) = self.current_leader() {
                    self.net.isolate(l);
                    self.links_changed("leader isolated");
                }
            }
            4 => {
                if let Some(l) = self.current_leader() {
                    let target = NodeId(((l + 1 + self.random(n as u64 - 1) as usize) % n) as u64 + 1);
                    let local = self.nodes[l].clock.local(self.now);
                    self.next_admin += 1;
                    let id = self.next_admin;
                    if let Some(r) = self.nodes[l].replica.as_mut() {
                        // Through the client protocol, as `concord transfer-leader` does.
                        let req = ClientRequest {
                            id,
                            group: GroupId(7),
                            body: concord_core::wire::RequestBody::TransferLeadership(target),
                        };
                        r.handle_client(local, ADMIN_CONN, req);
                        self.report.transfers += 1;
                    }
                    self.drain_node(l);
                }
            }
            _ => {
                let victim = self.current_leader().filter(|_| self.random(2) == 0);
                let victim = victim.unwrap_or_else(|| self.random(n as u64) as usize);
                let until = self.now + self.range((100_000, 1_500_000));
                self.nodes[victim].paused_until = self.nodes[victim].paused_until.max(until);
                self.report.pauses += 1;
                self.note(|| format!("n{} paused until {until}", victim + 1));
            }
        }
    }

    fn links_changed(&mut self, what: &'static str) {
        self.report.partitions += 1;
        self.link_epoch += 1;
        let epoch = self.link_epoch;
        let at = self.now + self.range((100_000, 2_000_000));
        self.schedule(at, Ev::HealLinks { epoch });
        self.note(|| what.to_string());
    }

    fn crash_one(&mut self) {
        let down = self.nodes.iter().filter(|n| n.replica.is_none()).count();
        // Keep a quorum of 3 (one down) or 5 (two down) alive.
        if down >= (self.cfg.nodes as usize - 1) / 2 {
            return;
        }
        let leader = self.current_leader().filter(|_| self.random(2) == 0);
        let up: Vec<usize> = (0..self.nodes.len()).filter(|i| self.nodes[*i].replica.is_some()).collect();
        let victim = leader.unwrap_or_else(|| up[self.random(up.len() as u64) as usize]);
        let n = &mut self.nodes[victim];
        n.replica = None;
        n.incarnation += 1;
        n.disk.lose_unconfirmed();
        n.timer_generation += 1;
        n.timer_at = u64::MAX;
        self.report.crashes += 1;
        self.note(|| format!("n{} crashed", victim + 1));
        // Its client connections break.
        let now = Instant::from_micros(self.now);
        for c in 0..self.clients.len() {
            self.clients[c].client.handle_disconnect(now, Peer(victim as u32));
            self.drain_client(c);
        }
        let at = self.now + self.range((50_000, 1_500_000));
        self.schedule(at, Ev::Restart { node: victim });
    }

    fn heal_everything(&mut self) {
        self.chaos_on = false;
        self.net.heal();
        self.net.stop_loss();
        self.link_epoch += 1;
        for i in 0..self.nodes.len() {
            self.nodes[i].paused_until = 0;
            if self.nodes[i].replica.is_none() {
                let persisted = self.nodes[i].disk.persisted();
                self.boot(i, Start::Restart(persisted));
            }
        }
        self.healed_at = Some(self.now);
        self.workload.healed(self.now);
        self.note(|| "healed".into());
    }
}

/// Runs the standard configuration of `seed`.
pub fn run_seed(seed: u64) -> Result<Report, Violation> {
    run(PsimConfig::for_seed(seed))
}

/// Runs `cfg`, turning a panic anywhere into a violation that names the seed.
pub fn run(cfg: PsimConfig) -> Result<Report, Violation> {
    let replay = cfg.replay_command();
    let seed = cfg.seed;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Psim::new(cfg).run())).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default();
        Err(Violation { seed, property: "no panic", detail: msg, at_us: 0, replay, trace_tail: Vec::new() })
    })
}
