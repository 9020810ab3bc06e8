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
pub(crate) mod disk;
pub(crate) mod net;

use crate::linearizability::{self, CheckResult, KvInput, KvModel, KvOutput, Operation};
use crate::register::{fnv1a, RegisterMachine};
use checker::Checker;
use clients::Clients;
use concord_core::config::Bugs;
use concord_core::{
    Config, GroupId, Instant, Membership, MembershipChange, Message, Node, NodeId, Request, RequestId, Role,
    Start,
};
use disk::Disk;
use net::Net;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::fmt;

/// Which faults a run injects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Probability (parts per million) that a message is lost.
    pub drop_ppm: u32,
    /// Probability (ppm) that a message is delivered twice.
    pub duplicate_ppm: u32,
    /// Message delay range in µs (each link scales it by its own factor of 1–3); a wide
    /// range reorders messages.
    pub delay_us: (u64, u64),
    /// Symmetric partitions into two sides.
    pub partitions: bool,
    /// One-way link cuts.
    pub one_way: bool,
    /// Cutting the current leader off from everyone.
    pub leader_isolation: bool,
    /// Crash-restart of nodes, losing unconfirmed writes.
    pub crashes: bool,
    /// Membership changes (add learner, promote, remove) while faults happen.
    pub membership: bool,
    /// Leadership transfers.
    pub transfers: bool,
    /// Process pauses (a stalled VM or garbage collector): the node sees nothing for a
    /// while, then resumes with a backlog of messages and expired timers.
    pub pauses: bool,
    /// Maximum clock offset between nodes, µs.
    pub clock_skew_us: u64,
    /// Clock rate drift per node, ppm (each node within ± half of it, so any two differ by
    /// at most this; it must not exceed the configured `clock_drift_max_ppm`).
    pub drift_ppm: u32,
    /// Disk write latency range, µs.
    pub disk_latency_us: (u64, u64),
    /// Mean interval between chaos actions, µs.
    pub chaos_interval_us: u64,
}

impl Faults {
    /// No faults at all: a perfect network and disk.
    pub fn none() -> Self {
        Self {
            drop_ppm: 0,
            duplicate_ppm: 0,
            delay_us: (500, 1_500),
            partitions: false,
            one_way: false,
            leader_isolation: false,
            crashes: false,
            membership: false,
            transfers: false,
            pauses: false,
            clock_skew_us: 0,
            drift_ppm: 0,
            disk_latency_us: (100, 500),
            chaos_interval_us: 200_000,
        }
    }

    /// A fault profile drawn from `seed`: each kind is on in about half the seeds, so a
    /// sweep covers every kind and their combinations.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed_fa17);
        let mut coin = || rng.next_u64() % 2 == 0;
        let lossy = coin();
        let dup = coin();
        let reorder = coin();
        let mut f = Self::none();
        f.drop_ppm = if lossy { 50_000 } else { 0 };
        f.duplicate_ppm = if dup { 30_000 } else { 0 };
        f.delay_us = if reorder { (200, 20_000) } else { (500, 1_500) };
        f.partitions = coin();
        f.one_way = coin();
        f.leader_isolation = coin();
        f.crashes = coin();
        f.membership = coin();
        f.transfers = coin();
        f.pauses = coin();
        if coin() {
            f.clock_skew_us = 5_000_000;
            f.drift_ppm = 10_000;
        }
        f.disk_latency_us = if coin() { (50, 300) } else { (500, 8_000) };
        f
    }

    /// Every fault kind at once.
    pub fn all() -> Self {
        Self {
            drop_ppm: 50_000,
            duplicate_ppm: 30_000,
            delay_us: (200, 20_000),
            partitions: true,
            one_way: true,
            leader_isolation: true,
            crashes: true,
            membership: true,
            transfers: true,
            pauses: true,
            clock_skew_us: 5_000_000,
            drift_ppm: 10_000,
            disk_latency_us: (500, 8_000),
            chaos_interval_us: 200_000,
        }
    }

    /// Names of the fault kinds switched on, for reports.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        let flags = [
            (self.drop_ppm > 0, "drop"),
            (self.duplicate_ppm > 0, "duplicate"),
            (self.delay_us.1 > 10_000, "reorder"),
            (self.partitions, "partition"),
            (self.one_way, "one-way"),
            (self.leader_isolation, "leader-isolation"),
            (self.crashes, "crash-restart"),
            (self.membership, "membership"),
            (self.transfers, "transfer"),
            (self.pauses, "pause"),
            (self.drift_ppm > 0 || self.clock_skew_us > 0, "clock-skew-drift"),
        ];
        for (on, name) in flags {
            if on {
                k.push(name);
            }
        }
        k
    }
}

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

/// A safety or liveness violation, with what is needed to replay it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The seed.
    pub seed: u64,
    /// Virtual time of detection, µs.
    pub at_us: u64,
    /// Which property failed.
    pub property: &'static str,
    /// Details.
    pub detail: String,
    /// The command that replays the run.
    pub replay: String,
    /// The trace up to the failure, when the run was traced.
    pub trace: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} violated {} at t={}us: {}\n  replay: {}",
            self.seed, self.property, self.at_us, self.detail, self.replay
        )
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
    Chaos,
    Restart { node: usize },
    Request { node: usize, client: usize, id: RequestId, request: Request },
    HealLinks { epoch: u64 },
    EndChaos,
}

/// A simulator event due at virtual time `at`; `seq` keeps events due at the same time in
/// the order they were scheduled.
pub(crate) struct Scheduled<E> {
    pub(crate) at: u64,
    pub(crate) seq: u64,
    pub(crate) event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Scheduled<E> {}
impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Scheduled<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A node's clock: an offset from true time, running fast or slow by `drift_ppm`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DriftClock {
    pub(crate) offset_us: u64,
    pub(crate) drift_ppm: i64,
}

impl DriftClock {
    /// The clock's reading at true time `t`.
    pub(crate) fn local(&self, t: u64) -> Instant {
        let scaled = i128::from(t) * (1_000_000 + i128::from(self.drift_ppm)) / 1_000_000;
        Instant::from_micros(self.offset_us + scaled as u64)
    }

    /// The earliest true time (not before `now`) at which the clock reads at least `local`.
    pub(crate) fn true_time(&self, local: Instant, now: u64) -> u64 {
        let target = local.as_micros();
        if target == u64::MAX {
            return u64::MAX;
        }
        let rel = i128::from(target.saturating_sub(self.offset_us));
        let mut t = (rel * 1_000_000 / (1_000_000 + i128::from(self.drift_ppm))) as u64;
        t = t.max(now);
        while self.local(t) < local {
            t += 1;
        }
        t
    }
}

/// One simulated node: its process (if running), its disk and its clock.
pub(crate) struct SimNode {
    pub(crate) id: NodeId,
    pub(crate) node: Option<Node<RegisterMachine>>,
    pub(crate) incarnation: u64,
    pub(crate) disk: Disk,
    pub(crate) clock: DriftClock,
    timer_generation: u64,
    timer_at: u64,
}

/// A simulated cluster.
pub struct Sim {
    cfg: SimConfig,
    rng: Xoshiro256PlusPlus,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled<Event>>>,
    pub(crate) nodes: Vec<SimNode>,
    net: Net,
    clients: Clients,
    checker: Checker,
    report: Report,
    trace_hash: u64,
    chaos_on: bool,
    healed_at: Option<u64>,
    link_epoch: u64,
    next_admin_request: u64,
    scenario_replies: Vec<(u64, concord_core::Reply<crate::register::RegisterOutput>)>,
    /// (role, term, commit) of each node after its last step.
    moments: Vec<(Role, u64, u64)>,
    /// Nodes cut off at a critical moment, to crash once their writes are durable.
    doomed: Vec<bool>,
    /// A paused node handles nothing before this time.
    paused_until: Vec<u64>,
    /// After healing: the leader's commit index once every client was served, which every
    /// member must then reach (a fixed target: under load the commit index keeps moving).
    catch_up_target: Option<u64>,
}

/// Request ids at or above this belong to the chaos "admin" (membership, transfers).
const ADMIN_REQUEST_BASE: u64 = 1 << 62;

impl Sim {
    /// Builds the cluster for `cfg`.
    pub fn new(cfg: SimConfig) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        let voters = Membership::with_voters((1..=cfg.initial_voters).map(NodeId));
        let mut nodes = Vec::new();
        for i in 0..cfg.nodes {
            let id = NodeId(i + 1);
            let skew =
                if cfg.faults.clock_skew_us > 0 { rng.next_u64() % cfg.faults.clock_skew_us } else { 0 };
            // Half the time a node's clock runs at an extreme of the bound, so that pairs of
            // nodes actually reach the full configured drift between them.
            let half = i64::from(cfg.faults.drift_ppm / 2);
            let drift = match (half, rng.next_u64() % 4) {
                (0, _) => 0,
                (h, 0) => h,
                (h, 1) => -h,
                (h, _) => (rng.next_u64() % (2 * h as u64 + 1)) as i64 - h,
            };
            nodes.push(SimNode {
                id,
                node: None,
                incarnation: 0,
                disk: Disk::default(),
                clock: DriftClock { offset_us: skew, drift_ppm: drift },
                timer_generation: 0,
                timer_at: u64::MAX,
            });
        }
        let net = Net::new(cfg.faults.clone(), cfg.nodes as usize, &mut rng);
        let clients = Clients::new(cfg.clients, cfg.keys, cfg.client_timeout_us);
        let checker = Checker::new(cfg.nodes as usize);
        let report = Report { seed: cfg.seed, ..Report::default() };
        let mut sim = Self {
            cfg,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            net,
            clients,
            checker,
            report,
            trace_hash: 0,
            chaos_on: true,
            healed_at: None,
            link_epoch: 0,
            next_admin_request: ADMIN_REQUEST_BASE,
            scenario_replies: Vec::new(),
            moments: Vec::new(),
            doomed: Vec::new(),
            paused_until: Vec::new(),
            catch_up_target: None,
        };
        sim.paused_until = vec![0; sim.nodes.len()];
        sim.moments = vec![(Role::Follower, 0, 0); sim.nodes.len()];
        sim.doomed = vec![false; sim.nodes.len()];
        for idx in 0..sim.nodes.len() {
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
        let seed = self.rng.next_u64();
        let config = self.cfg.raft_config(self.nodes[idx].id);
        let now_local = self.nodes[idx].clock.local(self.now);
        match Node::new(config, RegisterMachine::new(), start, now_local, seed) {
            Ok(node) => {
                let status = node.status();
                self.checker.on_boot(idx, status.snapshot_index, status.last_index);
                self.nodes[idx].node = Some(node);
            }
            Err(e) => self.checker.fail("restart", format!("n{} failed to restart: {e}", idx + 1)),
        }
        self.drain(idx);
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, event }));
    }

    pub(crate) fn random(&mut self, below: u64) -> u64 {
        if below == 0 {
            0
        } else {
            self.rng.next_u64() % below
        }
    }

    fn range(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.random(hi.saturating_sub(lo) + 1)
    }

    fn trace(&mut self, line: impl FnOnce() -> String, words: &[u64]) {
        for w in words {
            self.trace_hash = fnv1a(self.trace_hash, &w.to_le_bytes());
        }
        if self.cfg.trace {
            let text = line();
            self.trace_hash = fnv1a(self.trace_hash, text.as_bytes());
            self.report.trace.push(format!("{:>10} {text}", self.now));
        }
    }

    /// Runs the whole scenario: chaos, heal, liveness bound, linearizability.
    pub fn run(mut self) -> Result<Report, Violation> {
        for c in 0..self.cfg.clients {
            let at = self.random(10_000);
            self.schedule(at, Event::ClientTick { client: c });
        }
        let first_chaos = self.cfg.faults.chaos_interval_us;
        self.schedule(first_chaos, Event::Chaos);
        let end = self.cfg.chaos_us;
        self.schedule(end, Event::EndChaos);
        let deadline = self.cfg.chaos_us + self.cfg.heal_bound_us;
        while let Some(Reverse(next)) = self.queue.pop() {
            if next.at > deadline {
                break;
            }
            self.now = next.at;
            self.report.steps += 1;
            self.handle(next.event);
            if let Some(v) = self.checker.take_violation() {
                return Err(self.violation(v.0, v.1));
            }
            if let Some(healed) = self.healed_at {
                if self.service_restored(healed) {
                    self.report.recovery_us = self.now - healed;
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
        for n in &self.nodes {
            match &n.node {
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
                None => out.push(format!("{} down", n.id)),
            }
        }
        out.join(" | ")
    }

    fn violation(&self, property: &'static str, detail: String) -> Violation {
        Violation {
            seed: self.cfg.seed,
            at_us: self.now,
            property,
            detail,
            replay: self.cfg.replay_command(),
            trace: self.report.trace.clone(),
        }
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
        for n in &self.nodes {
            if let Some(node) = &n.node {
                self.report.metrics.add(node.metrics());
            }
        }
        self.report.unchecked_commits = self.checker.never_checked();
        self.report.leaders_elected = self.checker.leaders_elected();
        self.report.committed = self.checker.highest_committed();
        self.report.trace_hash = self.trace_hash;
        Ok(self.report)
    }

    fn handle(&mut self, event: Event) {
        let target = match &event {
            Event::Deliver { to, .. } => Some(*to),
            Event::Timer { node, .. } | Event::DiskDone { node, .. } | Event::Request { node, .. } => {
                Some(*node)
            }
            _ => None,
        };
        if let Some(n) = target.filter(|n| self.paused_until[*n] > self.now) {
            // A paused process handles nothing; it all waits until it resumes, and then
            // works through the backlog in no particular order.
            let at = self.paused_until[n] + self.random(1_000);
            self.schedule(at, event);
            return;
        }
        match event {
            Event::Request { node, client, id, request } => self.deliver_request(node, client, id, request),
            Event::Deliver { to, msg } => self.deliver(to, *msg),
            Event::Timer { node, generation } => {
                if self.nodes[node].timer_generation == generation {
                    self.nodes[node].timer_at = u64::MAX;
                    let local = self.nodes[node].clock.local(self.now);
                    if let Some(n) = self.nodes[node].node.as_mut() {
                        n.handle_timeout(local);
                        self.drain(node);
                    }
                }
            }
            Event::DiskDone { node, incarnation } => self.disk_done(node, incarnation),
            Event::ClientTick { client } => self.client_tick(client),
            Event::Chaos => self.chaos(),
            Event::Restart { node } => self.restart(node),
            Event::HealLinks { epoch } => {
                if epoch == self.link_epoch {
                    self.net.heal();
                    self.trace(|| "links healed".into(), &[9]);
                }
            }
            Event::EndChaos => self.heal_everything(),
        }
    }

    fn deliver(&mut self, to: usize, msg: Message) {
        let from = msg.from.0 as usize - 1;
        if self.net.blocked(from, to) {
            return;
        }
        let local = self.nodes[to].clock.local(self.now);
        let Some(node) = self.nodes[to].node.as_mut() else { return };
        let words = [1, from as u64, to as u64, msg.term];
        let kind = if self.cfg.trace { describe(&msg) } else { String::new() };
        if let Err(e) = node.handle_message(local, msg) {
            self.checker.fail("routing", format!("n{} refused a message: {e}", to + 1));
        }
        self.trace(|| format!("n{} <- n{} {kind}", to + 1, from + 1), &words);
        self.drain(to);
    }

    /// Drains every output of node `idx` and reschedules its timer.
    pub(crate) fn drain(&mut self, idx: usize) {
        let sim_node = &mut self.nodes[idx];
        let (Some(node), disk) = (sim_node.node.as_mut(), &sim_node.disk) else { return };
        let mut writes = Vec::new();
        while let Some(w) = node.poll_storage() {
            writes.push(w);
        }
        for w in &writes {
            self.checker.on_write(idx, node, w);
        }
        let mut messages = Vec::new();
        while let Some(m) = node.poll_transmit() {
            if let Err(e) = disk.permits(&m) {
                self.checker.fail("persist before send", format!("n{}: {e}", idx + 1));
            }
            messages.push(m);
        }
        let mut replies = Vec::new();
        while let Some(r) = node.poll_reply() {
            replies.push(r);
        }
        let mut events = Vec::new();
        while let Some(e) = node.poll_event() {
            events.push(e);
        }
        let applied = node.machine_mut().drain_applied();
        let written = node.machine_mut().drain_written();
        self.checker.after_step(idx, node, &applied);
        self.clients.record_applied(written);
        let deadline = node.poll_timeout();
        let moment = (node.role(), node.term(), node.commit_index());
        if self.crash_at_a_critical_moment(idx, moment) {
            if self.random(2) == 0 {
                // It dies right after this step: its sends and unconfirmed writes are lost.
                self.crash_for_a_while(idx);
                return;
            }
            // From this step on nothing it sends arrives; it dies once its disk catches up.
            self.doomed[idx] = true;
        }
        for w in writes {
            let lat = self.range(self.cfg.faults.disk_latency_us);
            let done_at = self.nodes[idx].disk.submit(w, self.now + lat);
            let incarnation = self.nodes[idx].incarnation;
            self.schedule(done_at, Event::DiskDone { node: idx, incarnation });
        }
        for m in messages {
            self.send(idx, m);
        }
        for r in replies {
            if Self::is_admin(r.id) {
                self.admin_reply(idx, &r.result);
                self.scenario_replies.push((idx as u64 + 1, r));
            } else {
                let now = self.now;
                self.trace(|| format!("n{} reply #{} {:?}", idx + 1, r.id.0, r.result), &[15, r.id.0]);
                if let Some((client, delay)) = self.clients.on_reply(now, r) {
                    self.schedule(now + delay, Event::ClientTick { client });
                }
            }
        }
        for e in events {
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
        if self.doomed[idx] && self.nodes[idx].disk.idle() {
            self.crash_for_a_while(idx);
            return;
        }
        let sim_node = &mut self.nodes[idx];
        let at = sim_node.clock.true_time(deadline, self.now);
        if at != sim_node.timer_at {
            sim_node.timer_at = at;
            sim_node.timer_generation += 1;
            let generation = sim_node.timer_generation;
            if at != u64::MAX {
                self.schedule(at, Event::Timer { node: idx, generation });
            }
        }
    }

    fn send(&mut self, from: usize, msg: Message) {
        let to = msg.to.0 as usize - 1;
        if to >= self.nodes.len() || self.doomed[from] {
            return;
        }
        // Every message crosses the real wire format.
        let msg = match self.net.through_wire(msg) {
            Ok(m) => m,
            Err(e) => {
                self.checker
                    .fail("wire", format!("a message from n{} did not survive the wire: {e}", from + 1));
                return;
            }
        };
        let copies = self.net.copies(&mut self.rng, from, to);
        for _ in 0..copies {
            let delay = self.range(self.net.delay_range(from, to));
            let at = self.now + delay;
            self.schedule(at, Event::Deliver { to, msg: Box::new(msg.clone()) });
        }
    }

    fn disk_done(&mut self, idx: usize, incarnation: u64) {
        if self.nodes[idx].incarnation != incarnation {
            return;
        }
        let Some(token) = self.nodes[idx].disk.complete_next() else { return };
        if let Err(e) = self.nodes[idx].disk.check() {
            self.checker.fail("storage contract", format!("n{}: {e}", idx + 1));
        }
        if let (true, Some(node)) = (self.nodes[idx].disk.idle(), self.nodes[idx].node.as_ref()) {
            if let Err(e) = self.nodes[idx].disk.matches_node(node) {
                self.checker.fail("storage contract", format!("n{}: {e}", idx + 1));
            }
        }
        let Some(node) = self.nodes[idx].node.as_mut() else { return };
        if let Err(e) = node.handle_persisted(token) {
            self.checker.fail("storage contract", format!("n{}: {e}", idx + 1));
        }
        self.drain(idx);
    }

    fn client_tick(&mut self, client: usize) {
        let now = self.now;
        let Some(action) = self.clients.tick(client, now, &mut self.rng, self.cfg.nodes) else {
            return;
        };
        if let Some(next) = action.next_tick {
            self.schedule(next, Event::ClientTick { client });
        }
        if let Some((target, id, request)) = action.send {
            self.handle(Event::Request { node: target, client, id, request });
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
        let local = self.nodes[target].clock.local(self.now);
        match self.nodes[target].node.as_mut() {
            Some(node) => {
                node.handle_request(local, id, request);
                self.drain(target);
            }
            None => {
                // The process is down: the connection attempt fails at once.
                self.clients.on_unreachable(client, id);
                let at = self.now + 5_000;
                self.schedule(at, Event::ClientTick { client });
            }
        }
    }

    /// Index of the live leader with the highest term, if any.
    pub fn current_leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.node.as_ref().filter(|n| n.role() == Role::Leader).map(|n| (n.term(), i)))
            .max()
            .map(|(_, i)| i)
    }

    fn chaos(&mut self) {
        if !self.chaos_on || self.nodes.len() < 2 {
            return;
        }
        let next = self.now
            + self.range((self.cfg.faults.chaos_interval_us / 2, self.cfg.faults.chaos_interval_us * 3 / 2));
        self.schedule(next, Event::Chaos);
        let f = &self.cfg.faults;
        let enabled =
            [f.crashes, f.partitions, f.one_way, f.leader_isolation, f.membership, f.transfers, f.pauses];
        let actions: Vec<u8> = (0u8..).zip(enabled).filter(|(_, on)| *on).map(|(a, _)| a).collect();
        if actions.is_empty() {
            return;
        }
        let pick = actions[self.random(actions.len() as u64) as usize];
        match pick {
            0 => self.chaos_crash(),
            1 => {
                // Both sides non-empty: node 0 on one side, a random other node on the other.
                let n = self.nodes.len();
                let other = 1 + self.random(n as u64 - 1) as usize;
                let mut side = BTreeSet::from([0]);
                for i in 1..n {
                    if i != other && self.random(2) == 0 {
                        side.insert(i);
                    }
                }
                self.net.partition(&side);
                self.links_changed("partition");
            }
            2 => {
                let n = self.nodes.len() as u64;
                let from = self.random(n) as usize;
                let to = (from + 1 + self.random(n - 1) as usize) % n as usize;
                self.net.cut_one_way(from, to);
                self.links_changed("one-way cut");
            }
            3 => {
                if let Some(leader) = self.current_leader() {
                    self.net.isolate(leader);
                    self.links_changed("leader isolated");
                }
            }
            4 => self.chaos_membership(),
            5 => self.chaos_transfer(),
            _ => self.chaos_pause(),
        }
    }

    /// Freezes a node (the leader half of the time) for 0.1–1 s.
    fn chaos_pause(&mut self) {
        let n = self.nodes.len() as u64;
        let leader = self.current_leader().filter(|_| self.random(2) == 0);
        let victim = leader.unwrap_or_else(|| self.random(n) as usize);
        let until = self.now + self.range((100_000, 1_000_000));
        self.paused_until[victim] = self.paused_until[victim].max(until);
        self.report.pauses += 1;
        self.trace(|| format!("n{} paused until {until}", victim + 1), &[13, victim as u64, until]);
    }

    fn links_changed(&mut self, what: &'static str) {
        self.report.partitions += 1;
        self.link_epoch += 1;
        let epoch = self.link_epoch;
        let at = self.now + self.range((100_000, 1_500_000));
        self.schedule(at, Event::HealLinks { epoch });
        self.trace(|| what.to_string(), &[4, epoch]);
    }

    fn chaos_crash(&mut self) {
        let up: Vec<usize> = (0..self.nodes.len()).filter(|i| self.nodes[*i].node.is_some()).collect();
        // Leader crashes are the interesting ones: pick the leader half of the time.
        let leader = self.current_leader().filter(|_| self.random(2) == 0);
        let victim = leader.unwrap_or_else(|| up[self.random(up.len() as u64) as usize]);
        self.crash_for_a_while(victim);
    }

    /// Crashes `idx` (if at most one other node is down) and schedules its restart.
    fn crash_for_a_while(&mut self, idx: usize) {
        if !self.may_crash(idx) {
            self.doomed[idx] = false;
            return;
        }
        self.crash(idx);
        let at = self.now + self.range((50_000, 1_500_000));
        self.schedule(at, Event::Restart { node: idx });
    }

    /// Timer-driven crashes rarely hit the moments where Raft is most fragile, so now and
    /// then a leader is cut off in the very step where it won its election (so the entry
    /// of its term reaches its own disk only) or advanced its commit index (before any
    /// follower learns of it), and dies once its disk catches up — the interleavings
    /// behind Raft's Figure 8.
    fn crash_at_a_critical_moment(&mut self, idx: usize, (role, term, commit): (Role, u64, u64)) -> bool {
        let before = std::mem::replace(&mut self.moments[idx], (role, term, commit));
        if !self.chaos_on || !self.cfg.faults.crashes || role != Role::Leader {
            return false;
        }
        let elected = before.0 != Role::Leader || before.1 != term;
        let committed = !elected && commit > before.2;
        (elected || committed) && self.may_crash(idx) && self.random(self.cfg.critical_crash_one_in) == 0
    }

    /// At most two nodes are down at once.
    fn may_crash(&self, idx: usize) -> bool {
        self.nodes[idx].node.is_some() && self.nodes.iter().filter(|n| n.node.is_none()).count() < 2
    }

    /// Kills node `idx`: its process state and every write it had not confirmed are lost.
    pub fn crash(&mut self, idx: usize) {
        let n = &mut self.nodes[idx];
        let Some(dead) = n.node.take() else { return };
        self.report.metrics.add(dead.metrics());
        n.incarnation += 1;
        n.disk.lose_unconfirmed();
        n.timer_generation += 1;
        n.timer_at = u64::MAX;
        self.report.crashes += 1;
        self.doomed[idx] = false;
        self.trace(|| format!("n{} crashed", idx + 1), &[5, idx as u64]);
    }

    fn restart(&mut self, idx: usize) {
        if self.nodes[idx].node.is_some() {
            return;
        }
        let persisted = self.nodes[idx].disk.persisted();
        self.trace(|| format!("n{} restarts", idx + 1), &[6, idx as u64]);
        self.boot(idx, Start::Restart(persisted));
    }

    fn chaos_membership(&mut self) {
        let Some(leader) = self.current_leader() else { return };
        let Some(node) = self.nodes[leader].node.as_ref() else { return };
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
        let change = options[self.random(options.len() as u64) as usize];
        self.admin_request(leader, Request::ChangeMembership(change));
        self.trace(|| format!("admin {change:?} via n{}", leader + 1), &[7, leader as u64]);
    }

    fn chaos_transfer(&mut self) {
        let Some(leader) = self.current_leader() else { return };
        let Some(node) = self.nodes[leader].node.as_ref() else { return };
        let voters: Vec<NodeId> =
            node.membership().voters.iter().copied().filter(|v| *v != node.id()).collect();
        if voters.is_empty() {
            return;
        }
        let target = voters[self.random(voters.len() as u64) as usize];
        self.admin_request(leader, Request::TransferLeadership(target));
        self.trace(|| format!("admin transfer to {target} via n{}", leader + 1), &[8, target.0]);
    }

    fn admin_request(&mut self, idx: usize, request: Request) {
        if self.paused_until[idx] > self.now {
            return; // A paused process cannot be asked anything.
        }
        self.next_admin_request += 1;
        let id = RequestId(self.next_admin_request);
        let local = self.nodes[idx].clock.local(self.now);
        if let Some(node) = self.nodes[idx].node.as_mut() {
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

    fn heal_everything(&mut self) {
        self.chaos_on = false;
        self.doomed.iter_mut().for_each(|d| *d = false);
        self.link_epoch += 1;
        self.net.heal();
        self.net.stop_loss();
        for idx in 0..self.nodes.len() {
            self.restart(idx);
        }
        self.healed_at = Some(self.now);
        let settle = self.now + self.cfg.heal_settle_us;
        self.clients.set_settle_time(settle);
        self.trace(|| "faults healed".into(), &[12]);
    }

    /// After healing: a leader serves, every client completed several ops called after the
    /// settle time with none failing,
    /// and every running member has applied everything the leader has committed.
    fn service_restored(&mut self, healed: u64) -> bool {
        let settle = healed + self.cfg.heal_settle_us;
        if self.now <= settle || !self.clients.all_served_after_settle() {
            return false;
        }
        let Some(leader) = self.current_leader().and_then(|l| self.nodes[l].node.as_ref()) else {
            return false;
        };
        let members = leader.membership().clone();
        let target = *self.catch_up_target.get_or_insert(leader.commit_index());
        self.nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
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

/// Runs `cfg` and returns its report or violation. A panic anywhere in the run (a core
/// assertion, an overflow) is a violation too, so it still names its seed and replay.
pub fn run(cfg: SimConfig) -> Result<Report, Violation> {
    let (seed, replay) = (cfg.seed, cfg.replay_command());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Sim::new(cfg).run()));
    outcome.unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "non-string panic payload".into());
        Err(Violation { seed, at_us: 0, property: "no panic", detail, replay, trace: Vec::new() })
    })
}
