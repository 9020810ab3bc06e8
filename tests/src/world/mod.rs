//! The simulated world both simulators run in — the Raft simulator ([`crate::sim`]) over
//! bare [`Node`]s and the primitives simulator ([`crate::psim`]) over [`Replica`]s and
//! [`Client`]s. What differs between them is what runs in the world and what is checked;
//! everything physical is here, once:
//!
//! - virtual time and its event queue (events due at the same time keep their order);
//! - the seeded randomness every draw comes from;
//! - each node's clock (offset and drift), its disk ([`disk`]) and its process slot (up,
//!   crashed, restarted with a new incarnation, paused);
//! - the network ([`net`]): cuts, loss, duplication, per-link delays, the real wire format;
//! - the fault schedule: a chaos action every so often while chaos is on, link faults that
//!   heal by themselves, pauses, and the moment everything heals;
//! - the trace (text and a hash of it), violations naming their seed and replay command,
//!   and panics turned into violations.
//!
//! [`Replica`]: concord_core::server::Replica
//! [`Client`]: concord_core::client::Client

pub(crate) mod disk;
pub(crate) mod net;

use crate::register::fnv1a;
use concord_core::raft::{Outputs, WriteToken};
use concord_core::server::{ConnId, Replica, ReplicaOutputs};
use concord_core::wire::ServerMessage;
use concord_core::{Event, Instant, Message, Node, NodeError, Reply, Role, StateMachine, StorageWrite};
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
    /// How long a link fault lasts before it heals by itself, µs.
    pub link_fault_us: (u64, u64),
    /// How long a process pause lasts, µs.
    pub pause_us: (u64, u64),
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
            link_fault_us: LINK_FAULT_US,
            pause_us: PAUSE_US,
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
            link_fault_us: LINK_FAULT_US,
            pause_us: PAUSE_US,
        }
    }

    /// Names of the fault kinds switched on, for reports.
    pub fn kinds(&self) -> Vec<&'static str> {
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
        flags.into_iter().filter(|(on, _)| *on).map(|(_, name)| name).collect()
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

/// Trace lines a violation shows (the whole trace stays in [`Violation::trace`]).
const TRACE_TAIL_LINES: usize = 60;

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let skip = self.trace.len().saturating_sub(TRACE_TAIL_LINES);
        for line in &self.trace[skip..] {
            writeln!(f, "  {line}")?;
        }
        write!(
            f,
            "seed {} violated {} at t={}us: {}\n  replay: {}",
            self.seed, self.property, self.at_us, self.detail, self.replay
        )
    }
}

/// Runs one simulation, turning a panic anywhere in it (a core assertion, an overflow)
/// into a violation, so that it still names its seed and replay command.
pub(crate) fn catching_panics<R>(
    seed: u64,
    replay: String,
    run: impl FnOnce() -> Result<R, Violation>,
) -> Result<R, Violation> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "non-string panic payload".into());
        Err(Violation { seed, at_us: 0, property: "no panic", detail, replay, trace: Vec::new() })
    })
}

/// An event due at virtual time `at`; `seq` keeps events due at the same time in the
/// order they were scheduled.
struct Scheduled<E> {
    at: u64,
    seq: u64,
    event: E,
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
    offset_us: u64,
    drift_ppm: i64,
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

/// What the world schedules besides a simulator's own events.
enum Step<E> {
    Model(E),
    Chaos,
    HealLinks { epoch: u64 },
    EndChaos,
}

/// What a simulator must act on after [`World::next`].
pub(crate) enum Due<E> {
    /// One of its own events.
    Event(E),
    /// A fault only it can inject (the world injects link faults and pauses itself).
    Fault(Fault),
    /// Chaos is over: the world healed the network and ended every pause; the simulator
    /// restarts what is down.
    Healed,
    /// Something the world handled by itself (a link heal, a deferred event).
    Nothing,
}

/// A chaos action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Crash a node (for a while).
    Crash,
    /// Change the membership through the leader.
    Membership,
    /// Transfer leadership away from the leader.
    Transfer,
}

/// The parts of a node the world keeps while its process comes and goes.
pub(crate) struct Slot<P> {
    /// The running process, if up.
    pub(crate) process: Option<P>,
    /// Bumped at each crash, so that what the dead process had pending never reaches the
    /// next one.
    pub(crate) incarnation: u64,
    /// The node's disk.
    pub(crate) disk: Disk,
    timer_generation: u64,
    timer_at: u64,
}

/// A process that runs a Raft node: a bare [`Node`] or a [`Replica`].
pub(crate) trait Process {
    /// Its state machine.
    type Machine: StateMachine;
    /// Its Raft node.
    fn raft(&self) -> &Node<Self::Machine>;
    /// Tells it a write is durable.
    fn persisted(&mut self, token: WriteToken) -> Result<(), NodeError>;
}

impl<M: StateMachine> Process for Node<M> {
    type Machine = M;
    fn raft(&self) -> &Self {
        self
    }
    fn persisted(&mut self, token: WriteToken) -> Result<(), NodeError> {
        self.handle_persisted(token)
    }
}

impl Process for Replica {
    type Machine = concord_core::machine::Concord;
    fn raft(&self) -> &Node<Self::Machine> {
        self.node()
    }
    fn persisted(&mut self, token: WriteToken) -> Result<(), NodeError> {
        self.handle_persisted(token)
    }
}

impl<P: Process> Slot<P> {
    fn new() -> Self {
        Self { process: None, incarnation: 0, disk: Disk::default(), timer_generation: 0, timer_at: u64::MAX }
    }

    /// Kills the process: its state and every write it had not confirmed are lost.
    pub(crate) fn kill(&mut self) -> Option<P> {
        let dead = self.process.take()?;
        self.incarnation += 1;
        self.disk.lose_unconfirmed();
        self.timer_generation += 1;
        self.timer_at = u64::MAX;
        Some(dead)
    }

    /// Whether a timer event of `generation` is the current one (and so fires now).
    pub(crate) fn timer_fires(&mut self, generation: u64) -> bool {
        if self.timer_generation != generation {
            return false;
        }
        self.timer_at = u64::MAX;
        true
    }

    /// Completes the disk's oldest write if it belongs to this incarnation, checks the
    /// storage contract, and tells the process. `Ok(true)` when the process must be
    /// drained; `Err` names a breach of the contract.
    pub(crate) fn disk_done(&mut self, incarnation: u64) -> Result<bool, String> {
        if self.incarnation != incarnation {
            return Ok(false);
        }
        let Some(token) = self.disk.complete_next() else { return Ok(false) };
        self.disk.check()?;
        if let (true, Some(p)) = (self.disk.idle(), self.process.as_ref()) {
            self.disk.matches_node(p.raft())?;
        }
        let Some(p) = self.process.as_mut() else { return Ok(false) };
        p.persisted(token).map_err(|e| e.to_string())?;
        Ok(true)
    }
}

/// Everything one drain of a node produced, collected by the core's drive helper
/// ([`Node::drive`], [`Replica::drive`]); writes complete later, on the simulated disk.
pub(crate) struct Drained<R, V> {
    pub(crate) writes: Vec<StorageWrite>,
    pub(crate) messages: Vec<Message>,
    pub(crate) replies: Vec<R>,
    pub(crate) events: Vec<V>,
}

impl<R, V> Default for Drained<R, V> {
    fn default() -> Self {
        Self { writes: Vec::new(), messages: Vec::new(), replies: Vec::new(), events: Vec::new() }
    }
}

impl<M: StateMachine> Outputs<M> for Drained<Reply<M::Output>, Event<M::Event>> {
    fn persist(&mut self, write: StorageWrite) -> bool {
        self.writes.push(write);
        false
    }
    fn send(&mut self, message: Message) {
        self.messages.push(message);
    }
    fn reply(&mut self, reply: Reply<M::Output>) {
        self.replies.push(reply);
    }
    fn event(&mut self, event: Event<M::Event>) {
        self.events.push(event);
    }
}

impl ReplicaOutputs for Drained<(ConnId, ServerMessage), Event<()>> {
    fn persist(&mut self, write: StorageWrite) -> bool {
        self.writes.push(write);
        false
    }
    fn send(&mut self, message: Message) {
        self.messages.push(message);
    }
    fn client(&mut self, conn: ConnId, message: ServerMessage) {
        self.replies.push((conn, message));
    }
    fn event(&mut self, event: Event<()>) {
        self.events.push(event);
    }
}

/// How long a link fault lasts before it heals by itself, µs, unless a run says otherwise.
const LINK_FAULT_US: (u64, u64) = (100_000, 1_500_000);
/// How long a process pause lasts, µs, unless a run says otherwise.
const PAUSE_US: (u64, u64) = (100_000, 1_000_000);
/// A paused process works through its backlog in no particular order: each held-back
/// event is handled up to this long after it resumes, µs.
const RESUME_SPREAD_US: u64 = 1_000;

/// The simulated world; `E` is the simulator's own event type, and `P` its process.
pub(crate) struct World<E, P> {
    /// Virtual time, µs.
    pub(crate) now: u64,
    /// Events handled so far.
    pub(crate) steps: u64,
    /// The faults injected.
    pub(crate) faults: Faults,
    /// The nodes, by index (node id − 1).
    pub(crate) nodes: Vec<Slot<P>>,
    /// The network; endpoints `0..nodes.len()` are the nodes, any after them clients.
    pub(crate) net: Net,
    /// Whether chaos actions still happen.
    pub(crate) chaos_on: bool,
    /// When everything healed.
    pub(crate) healed_at: Option<u64>,
    /// Link faults injected.
    pub(crate) link_faults: u64,
    /// Pauses injected.
    pub(crate) pauses: u64,
    /// The trace lines, when tracing.
    pub(crate) trace: Vec<String>,
    /// A hash of the trace (kept when not tracing too).
    pub(crate) trace_hash: u64,
    tracing: bool,
    rng: Xoshiro256PlusPlus,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled<Step<E>>>>,
    clocks: Vec<DriftClock>,
    paused_until: Vec<u64>,
    link_epoch: u64,
}

impl<E, P: Process> World<E, P> {
    /// A world of `nodes` nodes (all down) and `clients` further network endpoints.
    pub(crate) fn new(seed: u64, faults: Faults, nodes: usize, clients: usize, tracing: bool) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut clocks = Vec::new();
        for _ in 0..nodes {
            let skew = if faults.clock_skew_us > 0 { rng.next_u64() % faults.clock_skew_us } else { 0 };
            // Half the time a node's clock runs at an extreme of the bound, so that pairs of
            // nodes actually reach the full configured drift between them.
            let half = i64::from(faults.drift_ppm / 2);
            let drift = match (half, rng.next_u64() % 4) {
                (0, _) => 0,
                (h, 0) => h,
                (h, 1) => -h,
                (h, _) => (rng.next_u64() % (2 * h as u64 + 1)) as i64 - h,
            };
            clocks.push(DriftClock { offset_us: skew, drift_ppm: drift });
        }
        let net = Net::new(faults.clone(), nodes + clients, &mut rng);
        Self {
            now: 0,
            steps: 0,
            faults,
            nodes: (0..nodes).map(|_| Slot::new()).collect(),
            net,
            chaos_on: true,
            healed_at: None,
            link_faults: 0,
            pauses: 0,
            trace: Vec::new(),
            trace_hash: 0,
            tracing,
            rng,
            seq: 0,
            queue: BinaryHeap::new(),
            clocks,
            paused_until: vec![0; nodes],
            link_epoch: 0,
        }
    }

    /// A fresh random number.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// A random number below `below` (0 if `below` is 0).
    pub(crate) fn random(&mut self, below: u64) -> u64 {
        if below == 0 {
            0
        } else {
            self.rng.next_u64() % below
        }
    }

    /// A random number in `lo..=hi`.
    pub(crate) fn range(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.random(hi.saturating_sub(lo) + 1)
    }

    /// The random generator itself, for code that draws from it directly.
    pub(crate) fn rng(&mut self) -> &mut Xoshiro256PlusPlus {
        &mut self.rng
    }

    /// Node `idx`'s clock reading now.
    pub(crate) fn local(&self, idx: usize) -> Instant {
        self.clocks[idx].local(self.now)
    }

    /// Records a trace line (built only when tracing) and hashes `words` into the trace
    /// hash either way.
    pub(crate) fn trace(&mut self, line: impl FnOnce() -> String, words: &[u64]) {
        for w in words {
            self.trace_hash = fnv1a(self.trace_hash, &w.to_le_bytes());
        }
        if self.tracing {
            let text = line();
            self.trace_hash = fnv1a(self.trace_hash, text.as_bytes());
            self.trace.push(format!("{:>10} {text}", self.now));
        }
    }

    /// Whether the run keeps a text trace.
    pub(crate) fn tracing(&self) -> bool {
        self.tracing
    }

    /// Schedules one of the simulator's events.
    pub(crate) fn schedule(&mut self, at: u64, event: E) {
        self.schedule_step(at, Step::Model(event));
    }

    fn schedule_step(&mut self, at: u64, step: Step<E>) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, event: step }));
    }

    /// Starts the fault schedule: chaos actions from the first interval on, and healing
    /// at `end_us`.
    pub(crate) fn start_chaos(&mut self, end_us: u64) {
        self.schedule_step(self.faults.chaos_interval_us, Step::Chaos);
        self.schedule_step(end_us, Step::EndChaos);
    }

    /// Moves time to the next event due at or before `until` and handles what the world
    /// handles itself; `None` when no event is due by then. `node_of` names the node an
    /// event is for: events for a paused node wait until it resumes.
    pub(crate) fn next(&mut self, until: u64, node_of: impl Fn(&E) -> Option<usize>) -> Option<Due<E>> {
        if self.queue.peek().is_none_or(|Reverse(s)| s.at > until) {
            return None;
        }
        let Reverse(next) = self.queue.pop()?;
        self.now = next.at;
        self.steps += 1;
        Some(match next.event {
            Step::Model(e) => match node_of(&e).filter(|n| self.paused_until[*n] > self.now) {
                Some(n) => {
                    // A paused process handles nothing; it all waits until it resumes.
                    let at = self.paused_until[n] + self.random(RESUME_SPREAD_US);
                    self.schedule(at, e);
                    Due::Nothing
                }
                None => Due::Event(e),
            },
            Step::Chaos => self.chaos().map_or(Due::Nothing, Due::Fault),
            Step::HealLinks { epoch } => {
                if epoch == self.link_epoch {
                    self.net.heal();
                    self.trace(|| "links healed".into(), &[9]);
                }
                Due::Nothing
            }
            Step::EndChaos => {
                self.heal_everything();
                Due::Healed
            }
        })
    }

    /// The running leader with the highest term, if any.
    pub(crate) fn leader(&self) -> Option<usize> {
        let leaders = self.nodes.iter().enumerate().filter_map(|(i, slot)| {
            let node = slot.process.as_ref()?.raft();
            (node.role() == Role::Leader).then_some((node.term(), i))
        });
        leaders.max().map(|(_, i)| i)
    }

    /// Whether node `idx` is paused now.
    pub(crate) fn paused(&self, idx: usize) -> bool {
        self.paused_until[idx] > self.now
    }

    /// Picks this round's chaos action among the kinds switched on; injects link faults
    /// and pauses, and hands back what only the simulator can do.
    fn chaos(&mut self) -> Option<Fault> {
        let n = self.nodes.len();
        let leader = self.leader();
        if !self.chaos_on || n < 2 {
            return None;
        }
        let interval = self.faults.chaos_interval_us;
        let next = self.now + self.range((interval / 2, interval * 3 / 2));
        self.schedule_step(next, Step::Chaos);
        let f = &self.faults;
        let enabled =
            [f.crashes, f.partitions, f.one_way, f.leader_isolation, f.membership, f.transfers, f.pauses];
        let actions: Vec<u8> = (0u8..).zip(enabled).filter(|(_, on)| *on).map(|(a, _)| a).collect();
        if actions.is_empty() {
            return None;
        }
        let endpoints = self.net.endpoints();
        match actions[self.random(actions.len() as u64) as usize] {
            0 => return Some(Fault::Crash),
            1 => {
                // Both sides hold a node: node 0 on one, a random other node on the other;
                // every further endpoint (node or client) falls on either side.
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
                // From any endpoint to another node.
                let from = self.random(endpoints as u64) as usize;
                let to = if from < n {
                    (from + 1 + self.random(n as u64 - 1) as usize) % n
                } else {
                    self.random(n as u64) as usize
                };
                self.net.cut_one_way(from, to);
                self.links_changed("one-way cut");
            }
            3 => {
                if let Some(l) = leader {
                    self.net.isolate(l);
                    self.links_changed("leader isolated");
                }
            }
            4 => return Some(Fault::Membership),
            5 => return Some(Fault::Transfer),
            _ => {
                // The leader half of the time, so that pauses hit the one that matters.
                let victim = leader.filter(|_| self.random(2) == 0);
                let victim = victim.unwrap_or_else(|| self.random(n as u64) as usize);
                let until = self.now + self.range(self.faults.pause_us);
                self.paused_until[victim] = self.paused_until[victim].max(until);
                self.pauses += 1;
                self.trace(|| format!("n{} paused until {until}", victim + 1), &[13, victim as u64, until]);
            }
        }
        None
    }

    fn links_changed(&mut self, what: &'static str) {
        self.link_faults += 1;
        self.link_epoch += 1;
        let epoch = self.link_epoch;
        let at = self.now + self.range(self.faults.link_fault_us);
        self.schedule_step(at, Step::HealLinks { epoch });
        self.trace(|| what.to_string(), &[4, epoch]);
    }

    /// Ends chaos: every link heals, loss and duplication stop, pauses end.
    fn heal_everything(&mut self) {
        self.chaos_on = false;
        self.link_epoch += 1;
        self.net.heal();
        self.net.stop_loss();
        self.paused_until.iter_mut().for_each(|p| *p = 0);
        self.healed_at = Some(self.now);
        self.trace(|| "faults healed".into(), &[12]);
    }

    /// The arrival times of a message sent now from endpoint `from` to `to`: none if it is
    /// lost, two if it is duplicated, each with its own delay (so copies reorder).
    pub(crate) fn arrivals(&mut self, from: usize, to: usize) -> Vec<u64> {
        let copies = self.net.copies(&mut self.rng, from, to);
        (0..copies)
            .map(|_| {
                let delay = self.range(self.net.delay_range(from, to));
                self.now + delay
            })
            .collect()
    }

    /// Queues `write` on node `idx`'s disk; returns when it completes.
    pub(crate) fn submit_write(&mut self, idx: usize, write: StorageWrite) -> u64 {
        let latency = self.range(self.faults.disk_latency_us);
        self.nodes[idx].disk.submit(write, self.now + latency)
    }

    /// Sets node `idx`'s timer to its local `deadline`: returns the true time and
    /// generation of a timer event to schedule, if it changed.
    pub(crate) fn rearm_timer(&mut self, idx: usize, deadline: Instant) -> Option<(u64, u64)> {
        let at = self.clocks[idx].true_time(deadline, self.now);
        let slot = &mut self.nodes[idx];
        if at == slot.timer_at {
            return None;
        }
        slot.timer_at = at;
        slot.timer_generation += 1;
        (at != u64::MAX).then_some((at, slot.timer_generation))
    }

    /// A violation of `property` now, with the trace so far.
    pub(crate) fn violation(
        &self,
        seed: u64,
        replay: String,
        property: &'static str,
        detail: String,
    ) -> Violation {
        Violation { seed, at_us: self.now, property, detail, replay, trace: self.trace.clone() }
    }
}
