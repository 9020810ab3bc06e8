//! Step-by-step control of a simulated cluster, for named scenario tests: run until a
//! condition holds, cut links, crash and restart nodes, send requests and read replies.
//! The safety checkers run after every step here too.

use super::{Faults, Sim, SimConfig, Violation, ADMIN_REQUEST_BASE};
use crate::register::{RegisterMachine, RegisterOutput};
use concord_core::{Node, NodeId, Reply, Request, RequestId, Role};
use std::collections::BTreeSet;

impl Sim {
    /// A fault-free cluster of `nodes` nodes, the first `voters` of them bootstrapped as
    /// voters, with no background clients or chaos.
    pub fn quiet(seed: u64, nodes: u64, voters: u64) -> Self {
        let mut cfg = SimConfig::for_seed(seed);
        cfg.nodes = nodes;
        cfg.initial_voters = voters;
        cfg.clients = 0;
        cfg.faults = Faults::none();
        Self::with_config(cfg)
    }

    /// A cluster for `cfg` with chaos and background clients switched off.
    pub fn with_config(cfg: SimConfig) -> Self {
        let mut sim = Self::new(cfg);
        sim.world.chaos_on = false;
        sim
    }

    /// Current virtual time, µs.
    pub fn now_us(&self) -> u64 {
        self.world.now
    }

    /// Processes events up to `us` from now. Fails on the first safety violation.
    pub fn run_for(&mut self, us: u64) -> Result<(), Violation> {
        let end = self.world.now + us;
        self.run_until_time(end, |_| false).map(|_| ())
    }

    /// Processes events until `done` holds (checked after each step) or `max_us` pass.
    /// Returns whether `done` was reached.
    pub fn run_until(&mut self, max_us: u64, done: impl FnMut(&Self) -> bool) -> Result<bool, Violation> {
        let end = self.world.now + max_us;
        self.run_until_time(end, done)
    }

    fn run_until_time(&mut self, end: u64, mut done: impl FnMut(&Self) -> bool) -> Result<bool, Violation> {
        if done(self) {
            return Ok(true);
        }
        while self.step(end) {
            if let Some((property, detail)) = self.checker.take_violation() {
                return Err(self.violation(property, detail));
            }
            if done(self) {
                return Ok(true);
            }
        }
        self.world.now = self.world.now.max(end);
        Ok(false)
    }

    /// The running node with this id.
    pub fn node(&self, id: u64) -> Option<&Node<RegisterMachine>> {
        self.world.nodes.get(id as usize - 1)?.process.as_ref()
    }

    /// Ids of running nodes.
    pub fn running(&self) -> Vec<u64> {
        (1..=self.world.nodes.len() as u64).filter(|id| self.node(*id).is_some()).collect()
    }

    /// The id of the live leader with the highest term.
    pub fn leader(&self) -> Option<u64> {
        self.current_leader().map(|i| i as u64 + 1)
    }

    /// Runs until some node leads and every running voter agrees on it.
    pub fn elect(&mut self, max_us: u64) -> Result<Option<u64>, Violation> {
        let settled = self.run_until(max_us, |s| {
            let Some(l) = s.leader() else { return false };
            let Some(leader) = s.node(l) else { return false };
            let voters = leader.membership().voters.clone();
            s.running().iter().filter(|id| voters.contains(&NodeId(**id))).all(|id| {
                s.node(*id).is_some_and(|n| n.leader() == Some(NodeId(l)) && n.term() == leader.term())
            })
        })?;
        Ok(if settled { self.leader() } else { None })
    }

    /// Cuts node `id` off from every other node, both directions.
    pub fn isolate(&mut self, id: u64) {
        self.world.net.isolate(id as usize - 1);
    }

    /// Splits the cluster: `side` on one side, everyone else on the other.
    pub fn partition(&mut self, side: &[u64]) {
        let side: BTreeSet<usize> = side.iter().map(|id| *id as usize - 1).collect();
        self.world.net.partition(&side);
    }

    /// Drops messages from `from` to `to` (one direction only).
    pub fn cut(&mut self, from: u64, to: u64) {
        self.world.net.cut_one_way(from as usize - 1, to as usize - 1);
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.world.net.heal();
    }

    /// Kills node `id`, losing its unconfirmed writes.
    pub fn kill(&mut self, id: u64) {
        self.crash(id as usize - 1);
    }

    /// Restarts node `id` from its disk.
    pub fn revive(&mut self, id: u64) {
        self.restart(id as usize - 1);
    }

    /// Sends a request to node `id`; its reply shows up in [`Sim::replies`].
    pub fn request(&mut self, id: u64, request: Request) -> RequestId {
        self.next_admin_request += 1;
        let rid = RequestId(self.next_admin_request);
        let idx = id as usize - 1;
        let local = self.world.local(idx);
        if let Some(node) = self.world.nodes[idx].process.as_mut() {
            node.handle_request(local, rid, request);
            self.drain(idx);
        }
        rid
    }

    /// Replies to requests made with [`Sim::request`], oldest first, by responding node.
    pub fn replies(&self) -> &[(u64, Reply<RegisterOutput>)] {
        &self.scenario_replies
    }

    /// The reply to `id`, if it came.
    pub fn reply_to(&self, id: RequestId) -> Option<&Reply<RegisterOutput>> {
        self.scenario_replies.iter().map(|(_, r)| r).find(|r| r.id == id)
    }

    /// Runs until the reply to `id` arrives.
    pub fn await_reply(
        &mut self,
        id: RequestId,
        max_us: u64,
    ) -> Result<Option<Reply<RegisterOutput>>, Violation> {
        self.run_until(max_us, |s| s.reply_to(id).is_some())?;
        Ok(self.reply_to(id).cloned())
    }

    /// Whether node `id` is running and in `role`.
    pub fn is(&self, id: u64, role: Role) -> bool {
        self.node(id).is_some_and(|n| n.role() == role)
    }

    pub(crate) fn is_admin(id: RequestId) -> bool {
        id.0 >= ADMIN_REQUEST_BASE
    }
}
