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

use crate::world::{catching_panics, Drained, Due, Fault, World};
pub use crate::world::{Faults, Violation};
use checks::Checks;
use concord_core::client::{Client, ClientConfig, Peer};
use concord_core::machine::{Concord, Limits, MachineBugs};
use concord_core::raft::Membership;
use concord_core::server::{ConnId, Replica, ServeLimits};
use concord_core::wire::{ClientRequest, Envelope, ServerMessage};
use concord_core::{Config, GroupId, Instant, Message, Node, NodeId, Start};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
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
        let faults = Self::primitive_faults(Faults::from_seed(seed));
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
        c.faults = Self::primitive_faults(Faults::all());
        c
    }

    /// `faults` as this simulator injects them: no membership changes (the Raft
    /// simulator's business); link faults up to 2 s (the longer session TTL) and pauses
    /// up to 1.5 s, so that sessions expire under them.
    fn primitive_faults(mut faults: Faults) -> Faults {
        faults.membership = false;
        faults.link_fault_us = (100_000, 2_000_000);
        faults.pause_us = (100_000, 1_500_000);
        faults
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
    /// The trace, when asked for.
    pub trace: Vec<String>,
}

enum Ev {
    Peer { to: usize, msg: Box<Message> },
    ToNode { node: usize, client: usize, req: Box<ClientRequest> },
    ToClient { client: usize, node: usize, incarnation: u64, epoch: u64, msg: Box<ServerMessage> },
    Disconnect { node: usize, incarnation: u64, conn: ConnId },
    NodeTimer { node: usize, generation: u64 },
    DiskDone { node: usize, incarnation: u64 },
    ClientTimer { client: usize, generation: u64 },
    ClientAct { client: usize },
    Restart { node: usize },
}

impl Ev {
    /// The node that handles the event (a paused one handles it when it resumes).
    fn node(&self) -> Option<usize> {
        match self {
            Self::Peer { to, .. } => Some(*to),
            Self::ToNode { node, .. }
            | Self::NodeTimer { node, .. }
            | Self::DiskDone { node, .. }
            | Self::Disconnect { node, .. } => Some(*node),
            Self::ToClient { .. }
            | Self::ClientTimer { .. }
            | Self::ClientAct { .. }
            | Self::Restart { .. } => None,
        }
    }
}

struct PClient {
    client: Client,
    timer_generation: u64,
    timer_at: u64,
}

/// A simulated group with clients.
pub struct Psim {
    cfg: PsimConfig,
    world: World<Ev, Replica>,
    clients: Vec<PClient>,
    workload: Workload,
    checks: Checks,
    report: Report,
    next_admin: u64,
    /// Per (node, client) connection: bumped when it breaks, so nothing sent on the
    /// broken one arrives later.
    conn_epoch: Vec<u64>,
}

/// The connection the leadership-transfer chaos uses; answers on it go nowhere.
const ADMIN_CONN: ConnId = ConnId(u64::MAX);

impl Psim {
    /// Builds the group and its clients.
    pub fn new(cfg: PsimConfig) -> Self {
        let n = cfg.nodes as usize;
        // The network's endpoints: nodes first, then clients.
        // Membership changes are the Raft simulator's business, whatever the faults say.
        let mut faults = cfg.faults.clone();
        faults.membership = false;
        let mut world = World::new(cfg.seed, faults, n, cfg.clients, cfg.trace);
        let node_ids: Vec<NodeId> = (1..=cfg.nodes).map(NodeId).collect();
        let clients = (0..cfg.clients)
            .map(|c| {
                let mut cc = ClientConfig::for_nodes(GroupId(7), &node_ids);
                cc.session_ttl_ms = cfg.session_ttl_ms;
                cc.request_timeout_us = 400_000;
                cc.retry_backoff_us = 30_000;
                cc.commands_in_flight_max = 8;
                let mut client = Client::new(cc, Instant::ZERO, world.next_u64() ^ c as u64);
                client.open_session(Instant::ZERO);
                PClient { client, timer_generation: 0, timer_at: u64::MAX }
            })
            .collect();
        let workload = Workload::new(cfg.clients, world.next_u64());
        let report = Report { seed: cfg.seed, faults: cfg.faults.kinds(), ..Report::default() };
        let mut sim = Self {
            checks: Checks::new(n),
            conn_epoch: vec![0; n * cfg.clients],
            cfg,
            world,
            clients,
            workload,
            report,
            next_admin: 1 << 40,
        };
        let voters = Membership::with_voters(node_ids);
        for i in 0..n {
            sim.boot(i, Start::NewCluster(voters.clone()));
        }
        for c in 0..sim.cfg.clients {
            sim.drain_client(c);
            sim.world.schedule(1_000, Ev::ClientAct { client: c });
        }
        sim
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        self.world.trace(line, &[]);
    }

    fn boot(&mut self, idx: usize, start: Start) {
        let seed = self.world.next_u64();
        let config = self.cfg.raft_config(NodeId(idx as u64 + 1));
        let mut machine = Concord::new(Limits::default()).expect("the default limits are valid");
        machine.inject(self.cfg.bugs);
        match Node::new(config, machine, start, self.world.local(idx), seed) {
            Ok(node) => {
                let mut replica = Replica::new(node, ServeLimits::default());
                replica.record_machine_events();
                self.world.nodes[idx].process = Some(replica);
                self.checks.on_boot(idx);
            }
            Err(e) => self.checks.fail("restart", format!("n{} failed to restart: {e}", idx + 1)),
        }
        self.drain_node(idx);
    }

    /// Runs to the end and checks everything.
    pub fn run(mut self) -> Result<Report, Violation> {
        let end = self.cfg.chaos_us;
        self.world.start_chaos(end);
        let deadline = end + self.cfg.heal_bound_us;
        while let Some(due) = self.world.next(deadline, Ev::node) {
            if self.world.steps > EVENTS_MAX {
                // Runs take tens of thousands of events; a storm of them is a livelock
                // (say, a client retrying a refused connection as fast as it is refused).
                let detail = format!("more than {EVENTS_MAX} events: something retries without pause");
                return Err(self.violation("livelock", detail));
            }
            match due {
                Due::Event(ev) => self.handle(ev),
                Due::Fault(Fault::Crash) => self.crash_one(),
                Due::Fault(Fault::Transfer) => self.transfer(),
                // Never drawn: membership changes are off in this world.
                Due::Fault(Fault::Membership) | Due::Nothing => {}
                Due::Healed => self.healed(),
            }
            if let Some((p, d)) = self.checks.take_violation() {
                return Err(self.violation(p, d));
            }
            if let Some(healed) = self.world.healed_at {
                if self.workload.all_served(self.cfg.ops_after_heal) {
                    self.report.recovery_us = self.world.now - healed;
                    return self.finish();
                }
            }
        }
        let detail = match self.world.healed_at {
            Some(h) => format!(
                "{} µs after healing, clients still waiting: {}",
                self.world.now.saturating_sub(h),
                self.workload.describe_waiting(self.cfg.ops_after_heal)
            ),
            None => "the run ended before healing".into(),
        };
        Err(self.violation("liveness", detail))
    }

    fn finish(mut self) -> Result<Report, Violation> {
        // (Counted on the replicas running at the end; a crash loses its node's counters.)
        for r in self.world.nodes.iter().filter_map(|n| n.process.as_ref()) {
            self.report.ticks += r.node().metrics().ticks_proposed;
            self.report.snapshots_installed += r.node().metrics().snapshots_installed;
        }
        self.report.steps = self.world.steps;
        self.report.partitions = self.world.link_faults;
        self.report.pauses = self.world.pauses;
        self.workload.report(&mut self.report);
        if let Err((p, d)) = self.workload.final_checks() {
            return Err(self.violation(p, d));
        }
        self.report.trace = std::mem::take(&mut self.world.trace);
        Ok(self.report)
    }

    fn violation(&self, property: &'static str, detail: String) -> Violation {
        self.world.violation(self.cfg.seed, self.cfg.replay_command(), property, detail)
    }

    fn handle(&mut self, ev: Ev) {
        let now = Instant::from_micros(self.world.now);
        match ev {
            Ev::Peer { to, msg } => self.deliver_peer(to, *msg),
            Ev::ToNode { node, client, req } => self.deliver_to_node(node, client, *req),
            Ev::ToClient { client, node, incarnation, epoch, msg } => {
                let link = node * self.cfg.clients + client;
                if self.world.nodes[node].incarnation != incarnation || self.conn_epoch[link] != epoch {
                    return;
                }
                if self.world.net.blocked(node, self.cfg.nodes as usize + client) {
                    self.conn_epoch[link] += 1;
                    // A connection that cannot deliver breaks, and both ends notice (as a
                    // TCP connection times out): nothing is silently skipped in a stream.
                    self.clients[client].client.handle_disconnect(now, Peer(node as u32));
                    // The node notices too, when it next runs (a paused one after it resumes).
                    let conn = self.conn_id(client, epoch);
                    self.world.schedule(self.world.now, Ev::Disconnect { node, incarnation, conn });
                    self.drain_client(client);
                    return;
                }
                self.clients[client].client.handle_message(now, Peer(node as u32), *msg);
                self.drain_client(client);
            }
            Ev::NodeTimer { node, generation } => {
                if !self.world.nodes[node].timer_fires(generation) {
                    return;
                }
                let local = self.world.local(node);
                if let Some(r) = self.world.nodes[node].process.as_mut() {
                    r.handle_timeout(local);
                }
                self.drain_node(node);
            }
            Ev::DiskDone { node, incarnation } => match self.world.nodes[node].disk_done(incarnation) {
                Ok(true) => self.drain_node(node),
                Ok(false) => {}
                Err(e) => self.checks.fail("storage contract", format!("n{}: {e}", node + 1)),
            },
            Ev::ClientTimer { client, generation } => {
                if self.clients[client].timer_generation != generation {
                    return;
                }
                self.clients[client].timer_at = u64::MAX;
                self.clients[client].client.handle_timeout(now);
                self.drain_client(client);
            }
            Ev::ClientAct { client } => {
                let at = self.world.now;
                if let Some(delay) = self.workload.act(client, at, &mut self.clients[client].client, now) {
                    self.world.schedule(at + delay, Ev::ClientAct { client });
                }
                self.drain_client(client);
            }
            Ev::Disconnect { node, incarnation, conn } => {
                // The node's side of a broken client connection.
                if self.world.nodes[node].incarnation != incarnation {
                    return;
                }
                if let Some(r) = self.world.nodes[node].process.as_mut() {
                    r.handle_disconnect(conn);
                }
                self.drain_node(node);
            }
            Ev::Restart { node } => self.restart(node),
        }
    }

    fn restart(&mut self, node: usize) {
        if self.world.nodes[node].process.is_none() {
            let persisted = self.world.nodes[node].disk.persisted();
            self.note(|| format!("n{} restarts", node + 1));
            self.boot(node, Start::Restart(persisted));
        }
    }

    fn deliver_peer(&mut self, to: usize, msg: Message) {
        let from = msg.from.0 as usize - 1;
        if self.world.net.blocked(from, to) {
            return;
        }
        let local = self.world.local(to);
        let Some(r) = self.world.nodes[to].process.as_mut() else { return };
        if let Err(e) = r.handle_message(local, msg) {
            self.checks.fail("routing", format!("n{} refused a message: {e}", to + 1));
        }
        self.drain_node(to);
    }

    fn deliver_to_node(&mut self, node: usize, client: usize, req: ClientRequest) {
        if self.world.net.blocked(self.cfg.nodes as usize + client, node) {
            return;
        }
        let local = self.world.local(node);
        let conn = self.conn_id(client, self.conn_epoch[node * self.cfg.clients + client]);
        let Some(r) = self.world.nodes[node].process.as_mut() else {
            // The process is down: the client's connection is refused, and it notices.
            let now = Instant::from_micros(self.world.now);
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

    fn drain_node(&mut self, idx: usize) {
        let n = self.cfg.nodes as usize;
        let slot = &mut self.world.nodes[idx];
        let Some(r) = slot.process.as_mut() else { return };
        // Role changes and installed snapshots need no action here.
        let mut out: Drained<(ConnId, ServerMessage), _> = Drained::default();
        if let Err(e) = r.drive(&mut out) {
            self.checks.fail("storage contract", format!("n{}: {e}", idx + 1));
        }
        for m in &out.messages {
            if let Err(e) = slot.disk.permits(m) {
                self.checks.fail("persist before send", format!("n{}: {e}", idx + 1));
            }
        }
        let deadline = r.poll_timeout();
        self.checks.after_step(idx, r);
        for w in out.writes {
            let done_at = self.world.submit_write(idx, w);
            let incarnation = self.world.nodes[idx].incarnation;
            self.world.schedule(done_at, Ev::DiskDone { node: idx, incarnation });
        }
        for m in out.messages {
            let to = m.to.0 as usize - 1;
            if to >= n {
                continue;
            }
            let m = match self.world.net.through_wire(m) {
                Ok(m) => m,
                Err(e) => {
                    self.checks.fail("wire", e);
                    continue;
                }
            };
            for at in self.world.arrivals(idx, to) {
                self.world.schedule(at, Ev::Peer { to, msg: Box::new(m.clone()) });
            }
        }
        let incarnation = self.world.nodes[idx].incarnation;
        for (conn, msg) in out.replies {
            if conn == ADMIN_CONN {
                continue;
            }
            let (client, epoch) = self.conn_of(conn);
            let Ok(Envelope::Response(msg)) = self.world.net.envelope_through_wire(Envelope::Response(msg))
            else {
                self.checks.fail("wire", "a server message did not survive the wire".into());
                continue;
            };
            // Client connections are ordered streams: one delay per message, no loss
            // beyond a broken link (requests, on the other hand, may be lost: see below).
            let (lo, hi) = self.world.net.delay_range(idx, n + client);
            let at = self.world.now + lo.max(200) + (hi - lo) / 4;
            self.world
                .schedule(at, Ev::ToClient { client, node: idx, incarnation, epoch, msg: Box::new(msg) });
        }
        if let Some((at, generation)) = self.world.rearm_timer(idx, deadline) {
            self.world.schedule(at, Ev::NodeTimer { node: idx, generation });
        }
    }

    fn drain_client(&mut self, c: usize) {
        let n = self.cfg.nodes as usize;
        let now = self.world.now;
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
                self.world.schedule(now + delay, Ev::ClientAct { client: c });
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
            let Ok(Envelope::Request(req)) = self.world.net.envelope_through_wire(Envelope::Request(req))
            else {
                self.checks.fail("wire", "a client request did not survive the wire".into());
                continue;
            };
            // A request may be lost (the connection broke before it was read) or arrive
            // twice (a retry racing the original): both must be harmless.
            for at in self.world.arrivals(n + c, to) {
                self.world.schedule(at, Ev::ToNode { node: to, client: c, req: Box::new(req.clone()) });
            }
        }
        let pc = &mut self.clients[c];
        let at = pc.client.poll_timeout().as_micros().max(now);
        if at != pc.timer_at {
            pc.timer_at = at;
            pc.timer_generation += 1;
            let generation = pc.timer_generation;
            if at != u64::MAX {
                self.world.schedule(at, Ev::ClientTimer { client: c, generation });
            }
        }
    }

    /// Asks the leader to hand leadership to another node, through the client protocol
    /// as `concord transfer-leader` does.
    fn transfer(&mut self) {
        let Some(l) = self.world.leader().filter(|l| !self.world.paused(*l)) else {
            return; // A paused process cannot be asked anything.
        };
        let n = self.cfg.nodes;
        let target = NodeId((l as u64 + 1 + self.world.random(n - 1)) % n + 1);
        let local = self.world.local(l);
        self.next_admin += 1;
        let id = self.next_admin;
        if let Some(r) = self.world.nodes[l].process.as_mut() {
            let body = concord_core::wire::RequestBody::TransferLeadership(target);
            r.handle_client(local, ADMIN_CONN, ClientRequest { id, group: GroupId(7), body });
            self.report.transfers += 1;
        }
        self.drain_node(l);
    }

    fn crash_one(&mut self) {
        let down = self.world.nodes.iter().filter(|n| n.process.is_none()).count();
        // Keep a quorum of 3 (one down) or 5 (two down) alive.
        if down >= (self.cfg.nodes as usize - 1) / 2 {
            return;
        }
        let leader = self.world.leader().filter(|_| self.world.random(2) == 0);
        let up: Vec<usize> =
            (0..self.world.nodes.len()).filter(|i| self.world.nodes[*i].process.is_some()).collect();
        let victim = leader.unwrap_or_else(|| up[self.world.random(up.len() as u64) as usize]);
        self.world.nodes[victim].kill();
        self.report.crashes += 1;
        self.note(|| format!("n{} crashed", victim + 1));
        // Its client connections break.
        let now = Instant::from_micros(self.world.now);
        for c in 0..self.clients.len() {
            self.clients[c].client.handle_disconnect(now, Peer(victim as u32));
            self.drain_client(c);
        }
        let at = self.world.now + self.world.range((50_000, 1_500_000));
        self.world.schedule(at, Ev::Restart { node: victim });
    }

    /// After the world healed: everything down restarts.
    fn healed(&mut self) {
        for i in 0..self.world.nodes.len() {
            self.restart(i);
        }
        self.workload.healed(self.world.now);
    }
}

/// Runs the standard configuration of `seed`.
pub fn run_seed(seed: u64) -> Result<Report, Violation> {
    run(PsimConfig::for_seed(seed))
}

/// Runs `cfg`, turning a panic anywhere into a violation that names the seed.
pub fn run(cfg: PsimConfig) -> Result<Report, Violation> {
    let (seed, replay) = (cfg.seed, cfg.replay_command());
    catching_panics(seed, replay, || Psim::new(cfg).run())
}
