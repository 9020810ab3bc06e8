//! Raft's safety properties, checked after every simulator step.
//!
//! - **Election safety**: at most one leader per term.
//! - **Log matching**: two entries with the same index and term carry the same payload and
//!   follow entries of the same term (checked on every entry any node writes, which by
//!   induction gives the full property).
//! - **Leader completeness**: a node that becomes leader of term T holds every entry
//!   committed in an earlier term.
//! - **State machine safety**: every replica's state machine has applied exactly the same
//!   sequence of commands at each index (compared through a hash chain).
//! - **Monotonic commit**: a node's commit index never goes back while it runs, and an
//!   index, once committed anywhere, is never committed with another entry.

use crate::register::{fnv1a, RegisterMachine};
use concord_core::{Entry, Node, NodeId, Payload, Role, StorageWrite, Term};
use std::collections::{BTreeMap, HashMap};

/// Committed entries by index: (term, payload hash, term in which it was known committed).
type Committed = BTreeMap<u64, (Term, u64, Term)>;

pub(crate) struct Checker {
    leaders: BTreeMap<Term, NodeId>,
    /// (index, term) → (payload hash, term of the previous entry or u64::MAX if unknown).
    entries: HashMap<(u64, Term), (u64, u64)>,
    committed: Committed,
    /// index → state machine chain hash after applying it.
    chain: HashMap<u64, u64>,
    node_commit: Vec<u64>,
    node_role: Vec<(Role, Term)>,
    /// Per node, (term, payload hash) of every entry it wrote above its commit index, so
    /// entries compacted in the very step that commits them are still checked.
    shadow: Vec<BTreeMap<u64, (Term, u64)>>,
    violation: Option<(&'static str, String)>,
}

/// A stable hash of an entry's payload.
pub fn payload_hash(payload: &Payload) -> u64 {
    match payload {
        Payload::Noop => 1,
        Payload::Tick => 4,
        Payload::Command(bytes) => fnv1a(2, bytes),
        Payload::Membership(m) => {
            let ids: Vec<u8> = m
                .voters
                .iter()
                .chain([NodeId(0)].iter())
                .chain(m.learners.iter())
                .flat_map(|n| n.0.to_le_bytes())
                .collect();
            fnv1a(3, &ids)
        }
    }
}

impl Checker {
    pub(crate) fn new(nodes: usize) -> Self {
        Self {
            leaders: BTreeMap::new(),
            entries: HashMap::new(),
            committed: BTreeMap::new(),
            chain: HashMap::new(),
            node_commit: vec![0; nodes],
            node_role: vec![(Role::Follower, 0); nodes],
            shadow: vec![BTreeMap::new(); nodes],
            violation: None,
        }
    }

    pub(crate) fn fail(&mut self, property: &'static str, detail: String) {
        if self.violation.is_none() {
            self.violation = Some((property, detail));
        }
    }

    pub(crate) fn take_violation(&mut self) -> Option<(&'static str, String)> {
        self.violation.take()
    }

    pub(crate) fn leaders_elected(&self) -> usize {
        self.leaders.len()
    }

    /// Committed indexes (up to the highest) that no node ever showed an entry for.
    pub(crate) fn never_checked(&self) -> u64 {
        self.highest_committed() - self.committed.len() as u64
    }

    pub(crate) fn highest_committed(&self) -> u64 {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }

    /// A node (re)started: its volatile commit index starts over.
    pub(crate) fn on_boot(&mut self, idx: usize, snapshot_index: u64, last_index: u64) {
        // A restarted node's commit index starts at its snapshot, whose entries were
        // checked when they were first committed.
        self.node_commit[idx] = snapshot_index;
        self.node_role[idx] = (Role::Follower, 0);
        // Writes lost in the crash are not part of the restarted log.
        self.shadow[idx].split_off(&(last_index + 1));
    }

    /// Log matching, checked on every entry a node writes to its log.
    pub(crate) fn on_write(&mut self, idx: usize, node: &Node<RegisterMachine>, write: &StorageWrite) {
        if let Some(s) = &write.snapshot {
            let meta = &s.snapshot.meta;
            if !s.retain_log_after {
                // A snapshot replaced a divergent log: what this node wrote before is void.
                self.shadow[idx].clear();
            } else if self.shadow[idx].get(&meta.index).is_none_or(|(t, _)| *t != meta.term) {
                // The snapshot swallowed entries that replaced what the shadow holds up to
                // its index (a truncation in the same step). By log matching, the shadow
                // is still right up to the snapshot point exactly when it holds the
                // snapshot's last entry; otherwise its entries there are stale.
                let above = self.shadow[idx].split_off(&(meta.index + 1));
                self.shadow[idx] = above;
            }
        }
        if let Some(first) = write.entries.first() {
            self.shadow[idx].split_off(&first.index);
        }
        for e in &write.entries {
            self.shadow[idx].insert(e.index, (e.term, payload_hash(&e.payload)));
        }
        let mut prev: Option<&Entry> = None;
        for e in &write.entries {
            let prev_term = match prev {
                Some(p) => Some(p.term),
                None => node.term_at(e.index - 1),
            };
            prev = Some(e);
            let hash = payload_hash(&e.payload);
            let prev_word = prev_term.unwrap_or(u64::MAX);
            match self.entries.get(&(e.index, e.term)) {
                Some(&(h, p)) => {
                    if h != hash {
                        self.fail(
                            "log matching",
                            format!(
                                "n{} wrote entry {}@{} with a payload another node has differently",
                                idx + 1,
                                e.index,
                                e.term
                            ),
                        );
                    } else if p != u64::MAX && prev_word != u64::MAX && p != prev_word {
                        self.fail(
                            "log matching",
                            format!(
                                "entry {}@{} follows term {prev_word} on n{} but term {p} elsewhere",
                                e.index,
                                e.term,
                                idx + 1
                            ),
                        );
                    }
                }
                None => {
                    self.entries.insert((e.index, e.term), (hash, prev_word));
                }
            }
        }
    }

    /// Every other property, after node `idx` handled an input.
    pub(crate) fn after_step(&mut self, idx: usize, node: &Node<RegisterMachine>, applied: &[(u64, u64)]) {
        let (role, term) = (node.role(), node.term());
        if role == Role::Leader {
            match self.leaders.get(&term) {
                Some(other) if *other != node.id() => {
                    self.fail(
                        "election safety",
                        format!("two leaders in term {term}: {other} and {}", node.id()),
                    );
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(term, node.id());
                }
            }
            if self.node_role[idx] != (Role::Leader, term) {
                self.check_leader_completeness(node);
            }
        }
        self.node_role[idx] = (role, term);
        self.check_commit(idx, node);
        for &(index, chain) in applied {
            match self.chain.get(&index) {
                Some(&c) if c != chain => self.fail(
                    "state machine safety",
                    format!("n{} applied a different command sequence up to index {index}", idx + 1),
                ),
                Some(_) => {}
                None => {
                    self.chain.insert(index, chain);
                }
            }
        }
    }

    fn check_commit(&mut self, idx: usize, node: &Node<RegisterMachine>) {
        let commit = node.commit_index();
        let seen = self.node_commit[idx];
        if commit < seen {
            self.fail(
                "monotonic commit",
                format!("n{} commit index went back from {seen} to {commit}", idx + 1),
            );
            return;
        }
        for index in seen + 1..=commit {
            let entry = node.entry(index).map(|e| (e.term, payload_hash(&e.payload)));
            let Some((term, hash)) = entry.or_else(|| self.shadow[idx].get(&index).copied()) else {
                continue; // Covered by an installed snapshot: other nodes show the entry.
            };
            match self.committed.get(&index) {
                Some(&(t, h, _)) if t != term || h != hash => {
                    self.fail(
                        "state machine safety",
                        format!(
                            "index {index} committed as {index}@{t} and later as {index}@{term} on n{}",
                            idx + 1
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    self.committed.insert(index, (term, hash, node.term()));
                }
            }
        }
        self.node_commit[idx] = commit;
        // Committed entries are recorded; the shadow only needs what is above.
        let above = self.shadow[idx].split_off(&(commit + 1));
        self.shadow[idx] = above;
    }

    fn check_leader_completeness(&mut self, node: &Node<RegisterMachine>) {
        let term = node.term();
        let floor = node.status().snapshot_index;
        let missing = self
            .committed
            .range(floor + 1..)
            .find(|(index, (t, _, committed_in))| *committed_in < term && node.term_at(**index) != Some(*t))
            .map(|(index, (t, _, _))| (*index, *t));
        if let Some((index, t)) = missing {
            self.fail(
                "leader completeness",
                format!(
                    "{} became leader of term {term} without committed entry {index}@{t} (has {:?})",
                    node.id(),
                    node.term_at(index)
                ),
            );
        }
    }
}
