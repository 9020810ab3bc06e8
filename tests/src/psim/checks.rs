//! Invariants checked on every replica after every step.

use concord_core::machine::{Event as MachineEvent, SessionId};
use concord_core::server::Replica;
use concord_core::StateMachine;
use std::collections::{BTreeMap, BTreeSet};

/// Permits of the workload's semaphore (never increased or reduced).
pub(crate) const SEMAPHORE_PERMITS: i64 = 3;

#[derive(Default)]
struct NodeSeen {
    applied: u64,
    /// Per lock, rwlock writer and election: the last fence seen.
    fences: BTreeMap<(u8, String), u64>,
}

pub(crate) struct Checks {
    violation: Option<(&'static str, String)>,
    nodes: Vec<NodeSeen>,
    /// Applied index → (node, hash of the machine state there).
    hashes: BTreeMap<u64, (usize, u64)>,
    /// When each session ended (the same index on every replica).
    pub(crate) session_ended: BTreeMap<SessionId, u64>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

impl Checks {
    pub(crate) fn new(nodes: usize) -> Self {
        Self {
            violation: None,
            nodes: (0..nodes).map(|_| NodeSeen::default()).collect(),
            hashes: BTreeMap::new(),
            session_ended: BTreeMap::new(),
        }
    }

    pub(crate) fn fail(&mut self, property: &'static str, detail: String) {
        self.violation.get_or_insert((property, detail));
    }

    pub(crate) fn take_violation(&mut self) -> Option<(&'static str, String)> {
        self.violation.take()
    }

    pub(crate) fn on_boot(&mut self, idx: usize) {
        self.nodes[idx] = NodeSeen::default();
    }

    /// Every invariant of one replica's state, after a step.
    pub(crate) fn after_step(&mut self, idx: usize, r: &mut Replica) {
        while let Some(e) = r.poll_machine_event() {
            if let MachineEvent::SessionEnded { session, index, .. } = e {
                if let Some(prev) = self.session_ended.insert(session, index) {
                    if prev != index {
                        self.fail(
                            "state machine safety",
                            format!(
                                "{session} ended at index {prev} on one replica and {index} on n{}",
                                idx + 1
                            ),
                        );
                    }
                }
            }
        }
        let node = r.node();
        let applied = node.applied_index();
        let machine = node.machine();
        if applied != self.nodes[idx].applied {
            self.nodes[idx].applied = applied;
            let mut bytes = Vec::new();
            machine.snapshot(&mut bytes);
            let hash = fnv1a(&bytes);
            match self.hashes.get(&applied) {
                Some(&(other, h)) if h != hash => self.fail(
                    "state machine safety",
                    format!(
                        "n{} and n{} hold different states at applied index {applied}",
                        other + 1,
                        idx + 1
                    ),
                ),
                Some(_) => {}
                None => {
                    self.hashes.insert(applied, (idx, hash));
                }
            }
        }
        let view = machine.view();
        // (kind, name), fence, holder.
        let mut fences: Vec<((u8, String), u64, SessionId)> = Vec::new();
        for l in &view.locks {
            if let (Some(holder), Some(fence)) = (l.holder, l.fence) {
                fences.push(((0, l.name.clone()), fence.0, holder));
            }
        }
        for rw in &view.rwlocks {
            if let Some((w, f)) = rw.writer {
                if rw.readers > 0 {
                    self.fail(
                        "rwlock exclusion",
                        format!(
                            "n{}: {} holds {} for writing beside {} readers",
                            idx + 1,
                            w,
                            rw.name,
                            rw.readers
                        ),
                    );
                }
                fences.push(((1, rw.name.clone()), f.0, w));
            }
        }
        for (name, leader) in &view.elections {
            if let Some(l) = leader {
                fences.push(((2, name.clone()), l.fence.0, l.session));
            }
        }
        for (key, fence, holder) in fences {
            let kind = ["lock", "rwlock", "election"][usize::from(key.0)];
            let what = || format!("{kind} {} held by {holder}", key.1);
            if fence > applied {
                self.fail(
                    "fence",
                    format!("n{}: {} with fence {fence} above applied {applied}", idx + 1, what()),
                );
            }
            let what = what();
            let last = self.nodes[idx].fences.insert(key, fence).unwrap_or(0);
            if fence < last {
                self.fail(
                    "fences increase",
                    format!("n{}: {what} with fence {fence} after fence {last}", idx + 1),
                );
            }
        }
        for s in &view.semaphores {
            if s.sessionless {
                continue;
            }
            if s.held as i64 + s.available != SEMAPHORE_PERMITS || s.available < 0 {
                self.fail(
                    "semaphore permits",
                    format!(
                        "n{}: {} has {} available and {} held of {SEMAPHORE_PERMITS}",
                        idx + 1,
                        s.name,
                        s.available,
                        s.held
                    ),
                );
            }
        }
        for b in &view.barriers {
            if b.arrived >= b.parties as usize && b.arrived > 0 {
                self.fail(
                    "barrier",
                    format!("n{}: {} has {} of {} parties waiting", idx + 1, b.name, b.arrived, b.parties),
                );
            }
        }
        let live: BTreeSet<SessionId> = machine.sessions().collect();
        if let Some(s) = machine.owning_sessions().difference(&live).next() {
            self.fail(
                "session effects vanish",
                format!("n{}: {s} has ended but still owns something", idx + 1),
            );
        }
    }
}
