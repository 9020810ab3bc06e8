//! The deterministic simulator.
//!
//! One seed drives everything: fault schedule, network delays, disk latency, clock skew
//! and drift, client workload and every node's election jitter. Time is virtual: the
//! simulator jumps from one scheduled event to the next, so a run of many virtual seconds
//! takes milliseconds, and the same seed always produces the same trace.
//!
//! After every step the [`checker`] verifies Raft's safety properties; after the run the
//! client history is checked for linearizability. Any failure names its seed and the
//! command that replays it.

pub mod checker;
mod clients;
mod control;

use crate::linearizability::{self, CheckResult, KvInput, KvModel, KvOutput, Operation};
use crate::register::RegisterMachine;
use crate::world::{catching_panics, Drained, Due, Fault, World};
pub use crate::world::{Faults, Violation};
use checker::Checker;
use clients::Clients;
use concord_core::config::Bugs;
use concord_core::{
    Config, GroupId, Membership, MembershipChange, Message, Node, NodeId, Request, RequestId, Role, Start,
};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Everything that defines one simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed.
    pub seed: u64,
    /// Number of nodes that exist (ids 1..=nodes).
    pub nodes: u64,
    /// How many of them are voters at bootstrap; the others start as joiners.
    pub initial_voters: u64,
    /// Virtual time with faults, µs.
    pub chaos_us: u64,
    /// After the faults heal, a leader must serve every client within this bound, µs.
    pub heal_bound_us: u64,
    /// Ops called this long after healing must all succeed, µs.
    pub heal_settle_us: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Registers the clients use.
    pub keys: u64,
    /// A client gives up on an op after this long (its outcome is then unknown), µs.
    pub client_timeout_us: u64,
    /// Faults to inject.
    pub faults: Faults,
    /// Protocol rules to break (checker self-tests).
    pub bugs: Bugs,
    /// Log compaction threshold for the nodes (small, to exercise snapshots).
    pub snapshot_threshold_entries: u64,
    /// Snapshot chunk size (small, to exercise chunking).
    pub snapshot_chunk_bytes: usize,
    /// Entries per append message (1 splits every batch, exposing commit-rule bugs).
    pub append_entries_max: usize,
    /// Appends in flight per follower (1 turns pipelining off).
    pub inflight_appends_max: usize,
    /// With crash faults on, a leader is cut off and crashed at one in this many critical
    /// moments (election won, commit advanced).
    pub critical_crash_one_in: u64,
    /// Keep a human-readable trace.
    pub trace: bool,
}

impl SimConfig {
    /// The standard configuration for `seed`, with a fault profile drawn from it.
    pub fn for_seed(seed: u64) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xc0f1_9000);
        let initial_voters = if rng.next_u64() % 3 == 0 { 5 } else { 3 };
        Self {
            seed,
            nodes: 5,
            initial_voters,
            chaos_us: 3_000_000,
            heal_bound_us: 10_000_000,
            heal_settle_us: 2_000_000,
            clients: 4,
            keys: 3,
            client_timeout_us: 1_000_000,
            faults: Faults::from_seed(seed),
            bugs: Bugs::default(),
            snapshot_threshold_entries: 64,
            snapshot_chunk_bytes: 96,
            append_entries_max: 16,
            inflight_appends_max: 4,
            critical_crash_one_in: 8,
            trace: false,
        }
    }

    /// Switches on a deliberately broken Raft rule by name, with a fault profile under
    /// which its consequences can surface. Used by the checker self-tests and
    /// `concord-sim --bug NAME`, so a replay reproduces the exact run.
    pub fn enable_bug(&mut self, name: &str) -> Result<(), String> {
        match name {
            "vote-without-log-check" => self.bugs.vote_without_log_check = true,
            "commit-prior-term-by-count" => {
                self.bugs.commit_prior_term_by_count = true;
                // Raft's Figure 8 needs an earlier-term entry to reach a quorum in a
                // different append than the new leader's own entries: one entry per
                // message makes that common.
                self.append_entries_max = 1;
                self.inflight_appends_max = 1;
                self.critical_crash_one_in = 2;
                self.initial_voters = 5;
                self.faults.chaos_interval_us = 80_000;
            }
            "unsafe-long-lease" => {
                self.bugs.unsafe_long_lease = true;
                self.contended_reads();
            }
            "read-index-without-quorum" => {
                self.bugs.read_index_without_quorum = true;
                self.contended_reads();
            }
            other => return Err(format!("unknown bug {other:?}")),
        }
        Ok(())
    }

    /// Stale reads surface when many clients hit one register while leaders get cut off.
    fn contended_reads(&mut self) {
        self.clients = 4;
        self.keys = 1;
        self.faults.chaos_interval_us = 100_000;
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut cmd =
            format!("cargo run -p concord-tests --profile sim --bin concord-sim -- --seed {}", self.seed);
        if self.bugs.vote_without_log_check {
            cmd.push_str(" --bug vote-without-log-check");
        }
        let bugs = [
            (self.bugs.commit_prior_term_by_count, "commit-prior-term-by-count"),
            (self.bugs.unsafe_long_lease, "unsafe-long-lease"),
            (self.bugs.read_index_without_quorum, "read-index-without-quorum"),
        ];
        for (on, name) in bugs {
            if on {
                cmd.push_str(" --bug ");
                cmd.push_str(name);
            }
        }
        if self.faults == Faults::all() {
            cmd.push_str(" --all-faults");
        }
        if self.append_entries_max != 16 && !self.bugs.commit_prior_term_by_count {
            cmd.push_str(&format!(" --append-entries-max {}", self.append_entries_max));
        }
        cmd.push_str(" --trace");
        cmd
    }

    fn raft_config(&self, id: NodeId) -> Config {
        let mut c = Config::new(id, GroupId(7));
        c.snapshot_threshold_entries = self.snapshot_threshold_entries;
        c.snapshot_chunk_bytes = self.snapshot_chunk_bytes;
        c.append_entries_max = self.append_entries_max;
        c.inflight_appends_max = self.inflight_appends_max;
        c.clock_drift_max_ppm = self.faults.drift_ppm.max(1_000);
        c.bugs = self.bugs;
        c
    }
}

/// What a successful run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Events processed.
    pub steps: u64,
    /// Client ops recorded in the history.
    pub ops: usize,
    /// Ops that completed with a result.
    pub ops_ok: usize,
    /// Ops whose outcome is unknown (timeouts, lost leaders).
    pub ops_unknown: usize,
    /// Distinct terms that had a leader.
    pub leaders_elected: usize,
    /// Highest committed index.
    pub committed: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Partitions (of any kind) injected.
    pub partitions: u64,
    /// Membership changes committed.
    pub membership_changes: u64,
    /// Leadership transfers completed.
    pub transfers: u64,
    /// Process pauses injected.
    pub pauses: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Virtual time from healing to full service, µs.
    pub recovery_us: u64,
    /// Hash of the trace (equal for equal seeds).
    pub trace_hash: u64,
    /// Protocol counters summed over every node incarnation of the run.
    pub metrics: concord_core::Metrics,
    /// Committed indexes that no node ever showed the checker an entry for.
    pub unchecked_commits: u64,
    /// The trace, when asked for.
    pub trace: Vec<String>,
}

#[derive(Debug)]
enum Event {
    Deliver { to: usize, msg: Box<Message> },
    Timer { node: usize, generation: u64 },
    DiskDone { node: usize, incarnation: u64 },
    ClientTick { client: usize },
    Restart { node: usize },
    Request { node: usize, client: usize, id: RequestId, request: Request },
}

impl Event {
    /// The node that handles the event.
    fn node(&self) -> Option<usize> {
        match self {
            Self::Deliver { to, .. } => Some(*to),
            Self::Timer { node, .. } | Self::DiskDone { node, .. } | Self::Request { node, .. } => {
                Some(*node)
            }
            Self::ClientTick { .. } | Self::Restart { .. } => None,
        }
    }
}

/// A simulated cluster.
pub struct Sim {
    cfg: SimConfig,
    world: World<Event, Node<RegisterMachine>>,
    clients: Clients,
    checker: Checker,
    report: Report,
    next_admin_request: u64,
    scenario_replies: Vec<(u64, concord_core::Reply<crate::register::RegisterOutput>)>,
    /// (role, term, commit) of each node after its last step.
    moments: Vec<(Role, u64, u64)>,
    /// Nodes cut off at a critical moment, to crash once their writes are durable.
    doomed: Vec<bool>,
    /// After healing: the leader's commit index once every client was served, which every
    /// member must then reach (a fixed target: under load the commit index keeps moving).
    catch_up_target: Option<u64>,
}

/// Request ids at or above this belong to the chaos "admin" (membership, transfers).
const ADMIN_REQUEST_BASE: u64 = 1 << 62;

impl Sim {
    /// Builds the cluster for `cfg`.
    pub fn new(cfg: SimConfig) -> Self {
        let n = cfg.nodes as usize;
        let world = World::new(cfg.seed, cfg.faults.clone(), n, 0, cfg.trace);
        let voters = Membership::with_voters((1..=cfg.initial_voters).map(NodeId));
        let clients = Clients::new(cfg.clients, cfg.keys, cfg.client_timeout_us);
        let checker = Checker::new(n);
        let report = Report { seed: cfg.seed, ..Report::default() };
        let mut sim = Self {
            cfg,
            world,
            clients,
            checker,
            report,
            next_admin_request: ADMIN_REQUEST_BASE,
            scenario_replies: Vec::new(),
            moments: vec![(Role::Follower, 0, 0); n],
            doomed: vec![false; n],
            catch_up_target: None,
        };
        for idx in 0..n {
            let start = if (idx as u64) < sim.cfg.initial_voters {
                Start::NewCluster(voters.clone())
            } else {
                Start::Join
            };
            sim.boot(idx, start);
        }
        sim
    }

    fn boot(&mut self, idx: usize, start: Start) {
        let seed = self.world.next_u64();
        let config = self.cfg.raft_config(NodeId(idx as u64 + 1));
        match Node::new(config, RegisterMachine::new(), start, self.world.local(idx), seed) {
            Ok(node) => {
                let status = node.status();
                self.checker.on_boot(idx, status.snapshot_index, status.last_index);
                self.world.nodes[idx].process = Some(node);
            }
            Err(e) => self.checker.fail("restart", format!("n{} failed to restart: {e}", idx + 1)),
        }
        self.drain(idx);
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.world.schedule(at, event);
    }

    fn trace(&mut self, line: impl FnOnce() -> String, words: &[u64]) {
        self.world.trace(line, words);
    }

    /// Handles the next event due at or before `until`; `false` if there is none.
    fn step(&mut self, until: u64) -> bool {
        let Some(due) = self.world.next(until, Event::node) else { return false };
        match due {
            Due::Event(e) => self.handle(e),
            Due::Fault(Fault::Crash) => self.chaos_crash(),
            Due::Fault(Fault::Membership) => self.chaos_membership(),
            Due::Fault(Fault::Transfer) => self.chaos_transfer(),
            Due::Healed => self.heal_everything(),
            Due::Nothing => {}
        }
        true
    }

    /// Runs the whole scenario: chaos, heal, liveness bound, linearizability.
    pub fn run(mut self) -> Result<Report, Violation> {
        for c in 0..self.cfg.clients {
            let at = self.world.random(10_000);
            self.schedule(at, Event::ClientTick { client: c });
        }
        self.world.start_chaos(self.cfg.chaos_us);
        let deadline = self.cfg.chaos_us + self.cfg.heal_bound_us;
        while self.step(deadline) {
            if let Some(v) = self.checker.take_violation() {
                return Err(self.violation(v.0, v.1));
            }
            if let Some(healed) = self.world.healed_at {
                if self.service_restored(healed) {
                    self.report.recovery_us = self.world.now - healed;
                    return self.finish();
                }
            }
        }
        let mut unfinished = self.clients.unfinished_after_settle();
        let more = unfinished.len().saturating_sub(6);
        unfinished.truncate(6);
        let detail = format!(
            "no full service within {}us of healing: leader={:?}; nodes: {}; clients: {:?} (+{more} more)",
            self.cfg.heal_bound_us,
            self.current_leader().map(|i| i + 1),
            self.describe_nodes(),
            unfinished,
        );
        Err(self.violation("liveness", detail))
    }

    /// One line per node: role, term, leader, commit/applied/last/snapshot indexes.
    pub fn describe_nodes(&self) -> String {
        let mut out = Vec::new();
        for (i, n) in self.world.nodes.iter().enumerate() {
            match &n.process {
                Some(node) => {
                    let s = node.status();
                    out.push(format!(
                        "{} {:?} t{} leader={:?} commit={} applied={} last={} snap={} voters={:?}",
                        s.id,
                        s.role,
                        s.term,
                        s.leader.map(|l| l.0),
                        s.commit_index,
                        s.applied_index,
                        s.last_index,
                        s.snapshot_index,
                        s.membership.voters.iter().map(|v| v.0).collect::<Vec<_>>()
                    ));
                }
                None => out.push(format!("n{} down", i + 1)),
            }
        }
        out.join(" | ")
    }

    fn violation(&self, property: &'static str, detail: String) -> Violation {
        self.world.violation(self.cfg.seed, self.cfg.replay_command(), property, detail)
    }

    fn finish(mut self) -> Result<Report, Violation> {
        if let Some(detail) = self.clients.stale_read_violation() {
            return Err(self.violation("stale-read validity", detail));
        }
        let history: Vec<Operation<KvInput, KvOutput>> = self.clients.history();
        self.report.ops = history.len();
        self.report.ops_ok = history.iter().filter(|o| o.return_us.is_some()).count();
        self.report.ops_unknown = self.report.ops - self.report.ops_ok;
        match linearizability::check(&KvModel, &history, 2_000_000) {
            CheckResult::Ok => {}
            CheckResult::Illegal { partition, detail } => {
                let detail = format!("register {partition}: {detail}");
                return Err(self.violation("linearizability", detail));
            }
            CheckResult::Unknown { partition } => {
                let detail = format!("register {partition}: search budget exhausted");
                return Err(self.violation("linearizability (undecided)", detail));
            }
        }
        for n in &self.world.nodes {
            if let Some(node) = &n.process {
                self.report.metrics.add(node.metrics());
            }
        }
        self.report.steps = self.world.steps;
        self.report.partitions = self.world.link_faults;
        self.report.pauses = self.world.pauses;
        self.report.unchecked_commits = self.checker.never_checked();
        self.report.leaders_elected = self.checker.leaders_elected();
        self.report.committed = self.checker.highest_committed();
        self.report.trace_hash = self.world.trace_hash;
        self.report.trace = std::mem::take(&mut self.world.trace);
        Ok(self.report)
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Request { node, client, id, request } => self.deliver_request(node, client, id, request),
            Event::Deliver { to, msg } => self.deliver(to, *msg),
            Event::Timer { node, generation } => {
                if self.world.nodes[node].timer_fires(generation) {
                    let local = self.world.local(node);
                    if let Some(n) = self.world.nodes[node].process.as_mut() {
                        n.handle_timeout(local);
                        self.drain(node);
                    }
                }
            }
            Event::DiskDone { node, incarnation } => match self.world.nodes[node].disk_done(incarnation) {
                Ok(true) => self.drain(node),
                Ok(false) => {}
                Err(e) => self.checker.fail("storage contract", format!("n{}: {e}", node + 1)),
            },
            Event::ClientTick { client } => self.client_tick(client),
            Event::Restart { node } => self.restart(node),
        }
    }

    fn deliver(&mut self, to: usize, msg: Message) {
        let from = msg.from.0 as usize - 1;
        if self.world.net.blocked(from, to) {
            return;
        }
        let local = self.world.local(to);
        let kind = if self.world.tracing() { describe(&msg) } else { String::new() };
        let words = [1, from as u64, to as u64, msg.term];
        let Some(node) = self.world.nodes[to].process.as_mut() else { return };
        if let Err(e) = node.handle_message(local, msg) {
            self.checker.fail("routing", format!("n{} refused a message: {e}", to + 1));
        }
        self.trace(|| format!("n{} <- n{} {kind}", to + 1, from + 1), &words);
        self.drain(to);
    }

    /// Drains every output of node `idx` and reschedules its timer.
    pub(crate) fn drain(&mut self, idx: usize) {
        let slot = &mut self.world.nodes[idx];
        let Some(node) = slot.process.as_mut() else { return };
        let mut out = Drained::default();
        if let Err(e) = node.drive(&mut out) {
            self.checker.fail("storage contract", format!("n{}: {e}", idx + 1));
        }
        for w in &out.writes {
            self.checker.on_write(idx, node, w);
        }
        for m in &out.messages {
            if let Err(e) = slot.disk.permits(m) {
                self.checker.fail("persist before send", format!("n{}: {e}", idx + 1));
            }
        }
        let applied = node.machine_mut().drain_applied();
        let written = node.machine_mut().drain_written();
        self.checker.after_step(idx, node, &applied);
        self.clients.record_applied(written);
        let deadline = node.poll_timeout();
        let moment = (node.role(), node.term(), node.commit_index());
        if self.crash_at_a_critical_moment(idx, moment) {
            if self.world.random(2) == 0 {
                // It dies right after this step: its sends and unconfirmed writes are lost.
                self.crash_for_a_while(idx);
                return;
            }
            // From this step on nothing it sends arrives; it dies once its disk catches up.
            self.doomed[idx] = true;
        }
        for w in out.writes {
            let done_at = self.world.submit_write(idx, w);
            let incarnation = self.world.nodes[idx].incarnation;
            self.schedule(done_at, Event::DiskDone { node: idx, incarnation });
        }
        for m in out.messages {
            self.send(idx, m);
        }
        for r in out.replies {
            if Self::is_admin(r.id) {
                self.admin_reply(idx, &r.result);
                self.scenario_replies.push((idx as u64 + 1, r));
            } else {
                let now = self.world.now;
                self.trace(|| format!("n{} reply #{} {:?}", idx + 1, r.id.0, r.result), &[15, r.id.0]);
                if let Some((client, delay)) = self.clients.on_reply(now, r) {
                    self.schedule(now + delay, Event::ClientTick { client });
                }
            }
        }
        for e in out.events {
            if let concord_core::Event::SnapshotInstalled { index } = e {
                self.report.snapshots_installed += 1;
                self.trace(|| format!("n{} installed snapshot {index}", idx + 1), &[2, idx as u64, index]);
            } else if let concord_core::Event::StateChanged { role, term, leader } = e {
                let l = leader.map_or(0, |l| l.0);
                self.trace(
                    || format!("n{} {:?} term={term} leader={l}", idx + 1, role),
                    &[3, idx as u64, role as u64, term, l],
                );
            }
        }
        if self.doomed[idx] && self.world.nodes[idx].disk.idle() {
            self.crash_for_a_while(idx);
            return;
        }
        if let Some((at, generation)) = self.world.rearm_timer(idx, deadline) {
            self.schedule(at, Event::Timer { node: idx, generation });
        }
    }

    fn send(&mut self, from: usize, msg: Message) {
        let to = msg.to.0 as usize - 1;
        if to >= self.world.nodes.len() || self.doomed[from] {
            return;
        }
        // Every message crosses the real wire format.
        let msg = match self.world.net.through_wire(msg) {
            Ok(m) => m,
            Err(e) => {
                self.checker
                    .fail("wire", format!("a message from n{} did not survive the wire: {e}", from + 1));
                return;
            }
        };
        for at in self.world.arrivals(from, to) {
            self.schedule(at, Event::Deliver { to, msg: Box::new(msg.clone()) });
        }
    }

    fn client_tick(&mut self, client: usize) {
        let now = self.world.now;
        let Some(action) = self.clients.tick(client, now, self.world.rng(), self.cfg.nodes) else {
            return;
        };
        if let Some(next) = action.next_tick {
            self.schedule(next, Event::ClientTick { client });
        }
        if let Some((target, id, request)) = action.send {
            // Sent straight away; a paused target reads it when it resumes.
            if self.world.paused(target) {
                self.schedule(now, Event::Request { node: target, client, id, request });
            } else {
                self.deliver_request(target, client, id, request);
            }
        }
    }

    fn deliver_request(&mut self, target: usize, client: usize, id: RequestId, request: Request) {
        let describe_request = |r: &Request| match r {
            Request::Propose(bytes) => {
                format!("{:?}", postcard::from_bytes::<crate::register::RegisterCommand>(bytes))
            }
            Request::Read { query, consistency } => {
                format!("{:?} {consistency:?}", postcard::from_bytes::<crate::register::RegisterQuery>(query))
            }
            other => format!("{other:?}"),
        };
        self.trace(
            || format!("c{client} -> n{} #{} {}", target + 1, id.0, describe_request(&request)),
            &[14, id.0],
        );
        let local = self.world.local(target);
        match self.world.nodes[target].process.as_mut() {
            Some(node) => {
                node.handle_request(local, id, request);
                self.drain(target);
            }
            None => {
                // The process is down: the connection attempt fails at once.
                self.clients.on_unreachable(client, id);
                let at = self.world.now + 5_000;
                self.schedule(at, Event::ClientTick { client });
            }
        }
    }

    /// Index of the live leader with the highest term, if any.
    pub fn current_leader(&self) -> Option<usize> {
        self.world.leader()
    }

    fn chaos_crash(&mut self) {
        let up: Vec<usize> =
            (0..self.world.nodes.len()).filter(|i| self.world.nodes[*i].process.is_some()).collect();
        // Leader crashes are the interesting ones: pick the leader half of the time.
        let leader = self.current_leader().filter(|_| self.world.random(2) == 0);
        let victim = leader.unwrap_or_else(|| up[self.world.random(up.len() as u64) as usize]);
        self.crash_for_a_while(victim);
    }

    /// Crashes `idx` (if at most one other node is down) and schedules its restart.
    fn crash_for_a_while(&mut self, idx: usize) {
        if !self.may_crash(idx) {
            self.doomed[idx] = false;
            return;
        }
        self.crash(idx);
        let at = self.world.now + self.world.range((50_000, 1_500_000));
        self.schedule(at, Event::Restart { node: idx });
    }

    /// Timer-driven crashes rarely hit the moments where Raft is most fragile, so now and
    /// then a leader is cut off in the very step where it won its election (so the entry
    /// of its term reaches its own disk only) or advanced its commit index (before any
    /// follower learns of it), and dies once its disk catches up — the interleavings
    /// behind Raft's Figure 8.
    fn crash_at_a_critical_moment(&mut self, idx: usize, (role, term, commit): (Role, u64, u64)) -> bool {
        let before = std::mem::replace(&mut self.moments[idx], (role, term, commit));
        if !self.world.chaos_on || !self.cfg.faults.crashes || role != Role::Leader {
            return false;
        }
        let elected = before.0 != Role::Leader || before.1 != term;
        let committed = !elected && commit > before.2;
        (elected || committed)
            && self.may_crash(idx)
            && self.world.random(self.cfg.critical_crash_one_in) == 0
    }

    /// At most two nodes are down at once.
    fn may_crash(&self, idx: usize) -> bool {
        let nodes = &self.world.nodes;
        nodes[idx].process.is_some() && nodes.iter().filter(|n| n.process.is_none()).count() < 2
    }

    /// Kills node `idx`: its process state and every write it had not confirmed are lost.
    pub fn crash(&mut self, idx: usize) {
        let Some(dead) = self.world.nodes[idx].kill() else { return };
        self.report.metrics.add(dead.metrics());
        self.report.crashes += 1;
        self.doomed[idx] = false;
        self.trace(|| format!("n{} crashed", idx + 1), &[5, idx as u64]);
    }

    fn restart(&mut self, idx: usize) {
        if self.world.nodes[idx].process.is_some() {
            return;
        }
        let persisted = self.world.nodes[idx].disk.persisted();
        self.trace(|| format!("n{} restarts", idx + 1), &[6, idx as u64]);
        self.boot(idx, Start::Restart(persisted));
    }

    fn chaos_membership(&mut self) {
        let Some(leader) = self.current_leader() else { return };
        let Some(node) = self.world.nodes[leader].process.as_ref() else { return };
        let m = node.membership().clone();
        let mut options = Vec::new();
        for i in 1..=self.cfg.nodes {
            let id = NodeId(i);
            if !m.contains(id) {
                options.push(MembershipChange::AddLearner(id));
            } else if m.learners.contains(&id) {
                options.push(MembershipChange::Promote(id));
            } else if m.voters.len() > 3 {
                options.push(MembershipChange::Remove(id));
            }
        }
        if options.is_empty() {
            return;
        }
        let change = options[self.world.random(options.len() as u64) as usize];
        self.admin_request(leader, Request::ChangeMembership(change));
        self.trace(|| format!("admin {change:?} via n{}", leader + 1), &[7, leader as u64]);
    }

    fn chaos_transfer(&mut self) {
        let Some(leader) = self.current_leader() else { return };
        let Some(node) = self.world.nodes[leader].process.as_ref() else { return };
        let voters: Vec<NodeId> =
            node.membership().voters.iter().copied().filter(|v| *v != node.id()).collect();
        if voters.is_empty() {
            return;
        }
        let target = voters[self.world.random(voters.len() as u64) as usize];
        self.admin_request(leader, Request::TransferLeadership(target));
        self.trace(|| format!("admin transfer to {target} via n{}", leader + 1), &[8, target.0]);
    }

    fn admin_request(&mut self, idx: usize, request: Request) {
        if self.world.paused(idx) {
            return; // A paused process cannot be asked anything.
        }
        self.next_admin_request += 1;
        let id = RequestId(self.next_admin_request);
        let local = self.world.local(idx);
        if let Some(node) = self.world.nodes[idx].process.as_mut() {
            node.handle_request(local, id, request);
            self.drain(idx);
        }
    }

    fn admin_reply(
        &mut self,
        idx: usize,
        result: &Result<concord_core::Response<crate::register::RegisterOutput>, concord_core::RequestError>,
    ) {
        match result {
            Ok(concord_core::Response::MembershipChanged { index, .. }) => {
                self.report.membership_changes += 1;
                let index = *index;
                self.trace(|| format!("n{} membership change committed at {index}", idx + 1), &[10, index]);
            }
            Ok(concord_core::Response::LeadershipTransferred { term }) => {
                self.report.transfers += 1;
                let term = *term;
                self.trace(|| format!("n{} transferred leadership (term {term})", idx + 1), &[11, term]);
            }
            _ => {}
        }
    }

    /// After the world healed: nothing is doomed, everything down restarts, and the
    /// clients' settle time starts.
    fn heal_everything(&mut self) {
        self.doomed.iter_mut().for_each(|d| *d = false);
        for idx in 0..self.world.nodes.len() {
            self.restart(idx);
        }
        let settle = self.world.now + self.cfg.heal_settle_us;
        self.clients.set_settle_time(settle);
    }

    /// After healing: a leader serves, every client completed several ops called after the
    /// settle time with none failing,
    /// and every running member has applied everything the leader has committed.
    fn service_restored(&mut self, healed: u64) -> bool {
        let settle = healed + self.cfg.heal_settle_us;
        if self.world.now <= settle || !self.clients.all_served_after_settle() {
            return false;
        }
        let nodes = &self.world.nodes;
        let Some(leader) = self.current_leader().and_then(|l| nodes[l].process.as_ref()) else {
            return false;
        };
        let members = leader.membership().clone();
        let target = *self.catch_up_target.get_or_insert(leader.commit_index());
        nodes
            .iter()
            .filter_map(|n| n.process.as_ref())
            .filter(|n| members.contains(n.id()))
            .all(|n| n.applied_index() >= target)
    }
}

/// A one-line summary of a message for traces.
fn describe(msg: &Message) -> String {
    use concord_core::MessageBody as B;
    let t = msg.term;
    match &msg.body {
        B::Append { prev_index, prev_term, entries, commit } => {
            let terms: Vec<u64> = entries.iter().map(|e| e.term).collect();
            format!("append t{t} prev={prev_index}@{prev_term} terms={terms:?} commit={commit}")
        }
        B::AppendResponse { success, index, hint_index, hint_term } => {
            format!("append_response t{t} ok={success} index={index} hint={hint_index}@{hint_term}")
        }
        B::InstallSnapshot { meta, offset, total, .. } => {
            format!("install_snapshot t{t} index={} offset={offset}/{total}", meta.index)
        }
        other => format!("{} t{t} {other:?}", other.kind()),
    }
}

/// Runs one seed with the standard configuration.
pub fn run_seed(seed: u64) -> Result<Report, Violation> {
    run(SimConfig::for_seed(seed))
}

/// Runs `cfg` and returns its report or violation (a panic in the run is one too).
pub fn run(cfg: SimConfig) -> Result<Report, Violation> {
    let (seed, replay) = (cfg.seed, cfg.replay_command());
    catching_panics(seed, replay, || Sim::new(cfg).run())
}
