//! Benchmark drivers for Concord.
//!
//! [`MemoryCluster`] runs a Raft group entirely in memory on one thread: messages are
//! delivered and writes "persisted" as soon as they are produced, so a benchmark measures
//! the core's own cost per committed operation, with no I/O.

use concord_core::raft::Outputs;
use concord_core::{
    Config, GroupId, Instant, Membership, Message, Node, NodeId, Reply, Request, RequestId, Role, Start,
    StorageWrite,
};
use concord_tests::register::{RegisterCommand, RegisterMachine, RegisterOutput};
use std::collections::VecDeque;

/// A Raft group in memory, driven by one thread.
pub struct MemoryCluster {
    nodes: Vec<Node<RegisterMachine>>,
    now: Instant,
    queue: VecDeque<Message>,
    next_request: u64,
    /// Replies seen so far.
    pub replies: u64,
}

impl MemoryCluster {
    /// A group of `n` voters with an elected leader (node 1's election is forced by time).
    pub fn new(n: u64) -> Self {
        let members = Membership::with_voters((1..=n).map(NodeId));
        let nodes = (1..=n)
            .map(|id| {
                let mut config = Config::new(NodeId(id), GroupId(0));
                config.snapshot_threshold_entries = 100_000;
                config.append_entries_max = 1024;
                let start = Start::NewCluster(members.clone());
                Node::new(config, RegisterMachine::new(), start, Instant::ZERO, id).expect("valid config")
            })
            .collect();
        let mut cluster =
            Self { nodes, now: Instant::ZERO, queue: VecDeque::new(), next_request: 0, replies: 0 };
        cluster.pump();
        while cluster.leader().is_none() {
            let next = cluster.nodes.iter().map(|n| n.poll_timeout()).min().unwrap_or(cluster.now);
            cluster.now = next.max(cluster.now);
            for node in &mut cluster.nodes {
                node.handle_timeout(cluster.now);
            }
            cluster.pump();
        }
        // Let the leader commit its first entry.
        cluster.pump();
        cluster
    }

    /// Index of the leader.
    pub fn leader(&self) -> Option<usize> {
        self.nodes.iter().position(|n| n.role() == Role::Leader)
    }

    /// Proposes `batch` writes at the leader, then runs the group until all are applied
    /// there. Returns how many were answered.
    pub fn commit_batch(&mut self, batch: u64) -> u64 {
        let Some(leader) = self.leader() else { return 0 };
        let before = self.replies;
        for i in 0..batch {
            self.next_request += 1;
            let cmd = RegisterCommand::Write { key: i % 64, value: self.next_request }.encode();
            self.nodes[leader].handle_request(self.now, RequestId(self.next_request), Request::Propose(cmd));
        }
        while self.replies - before < batch {
            if !self.pump() {
                break;
            }
        }
        self.replies - before
    }

    /// Drains every node until no more messages move. Returns whether anything happened.
    fn pump(&mut self) -> bool {
        let mut any = false;
        loop {
            let mut moved = false;
            for node in &mut self.nodes {
                let mut out = Outbox { queue: &mut self.queue, replies: &mut self.replies };
                moved |= node.drive(&mut out).expect("writes confirmed at once are the ones just asked for");
                let _ = node.machine_mut().drain_applied();
            }
            while let Some(m) = self.queue.pop_front() {
                let to = m.to.0 as usize - 1;
                let _ = self.nodes[to].handle_message(self.now, m);
                moved = true;
            }
            if !moved {
                return any;
            }
            any = true;
        }
    }
}

/// Where a node's outputs go in the in-memory cluster: memory is durable at once, messages
/// join the queue, replies are counted.
struct Outbox<'a> {
    queue: &'a mut VecDeque<Message>,
    replies: &'a mut u64,
}

impl Outputs<RegisterMachine> for Outbox<'_> {
    fn persist(&mut self, _write: StorageWrite) -> bool {
        true
    }
    fn send(&mut self, message: Message) {
        self.queue.push_back(message);
    }
    fn reply(&mut self, _reply: Reply<RegisterOutput>) {
        *self.replies += 1;
    }
}
