//! Three replicas of this host's `Replica` in one WebAssembly instance (in Node, and in
//! headless Chromium with `WASM_BINDGEN_USE_BROWSER=1`), wired by messages the test
//! passes on — or drops, to partition a node — with the core's client in memory, on a
//! virtual clock that jumps to the next deadline. Each run is bounded in simulated time.
#![cfg(target_arch = "wasm32")]

use concord_core::client::calls::{self, Call};
use concord_core::client::{Client, ClientConfig, ClientEvent, OpId};
use concord_core::machine::Fence;
use concord_core::storage::MemMedia;
use concord_core::wire::{decode_payload, encode_payload, Envelope};
use concord_core::{Consistency, GroupId, Instant, NodeId, Role};
use concord_wasm::replica::{Medium, Replica};
use std::collections::BTreeSet;
use wasm_bindgen_test::wasm_bindgen_test;

const MEMBERS: [u64; 3] = [1, 2, 3];
/// Simulated time any one step may take before the test fails.
const STEP_MS_MAX: f64 = 60_000.0;

struct Cluster {
    nodes: Vec<Option<Replica>>,
    /// Nodes cut off from every other node and from the client.
    cut: BTreeSet<u64>,
    client: Client,
    now_ms: f64,
    seed: u64,
}

impl Cluster {
    fn new() -> Self {
        let nodes = MEMBERS
            .iter()
            .map(|&id| {
                Some(Replica::create(id, &MEMBERS, Medium::Memory(MemMedia::new()), 0.0, id * 7).unwrap())
            })
            .collect();
        let nodes_ids: Vec<NodeId> = MEMBERS.iter().map(|n| NodeId(*n)).collect();
        let mut cfg = ClientConfig::for_nodes(GroupId(1), &nodes_ids);
        cfg.session_ttl_ms = 5_000;
        Self {
            nodes,
            cut: BTreeSet::new(),
            client: Client::new(cfg, Instant::ZERO, 11),
            now_ms: 0.0,
            seed: 100,
        }
    }

    fn node(&mut self, id: u64) -> &mut Replica {
        self.nodes[(id - 1) as usize].as_mut().expect("the node runs")
    }

    fn now(&self) -> Instant {
        Instant::from_micros((self.now_ms * 1000.0) as u64)
    }

    /// Moves every message until nothing is left to move.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            let now = self.now();
            while let Some((peer, req)) = self.client.poll_transmit() {
                moved = true;
                let node: u64 = self.client.peer_addr(peer).and_then(|a| a.parse().ok()).expect("a node id");
                if self.cut.contains(&node) || self.nodes[(node - 1) as usize].is_none() {
                    continue;
                }
                let mut bytes = Vec::new();
                encode_payload(&Envelope::Request(req), &mut bytes).unwrap();
                let now_ms = self.now_ms;
                self.node(node).client(now_ms, 1, &bytes).unwrap();
            }
            for id in MEMBERS {
                let Some(r) = self.nodes[(id - 1) as usize].as_mut() else { continue };
                let (peers, clients) = r.drain_bytes().unwrap();
                for (to, bytes) in peers {
                    moved = true;
                    if self.cut.contains(&id) || self.cut.contains(&to) {
                        continue;
                    }
                    if let Some(r) = self.nodes[(to - 1) as usize].as_mut() {
                        r.peer(self.now_ms, id, &bytes).unwrap();
                    }
                }
                for (_, bytes) in clients {
                    moved = true;
                    if self.cut.contains(&id) {
                        continue;
                    }
                    let Ok(Envelope::Response(m)) = decode_payload(&bytes, 1 << 22) else {
                        panic!("a response")
                    };
                    let peer = self.client.peer_of(NodeId(id)).expect("the client knows the node");
                    self.client.handle_message(now, peer, m);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("messages never settled");
    }

    /// Jumps the clock to the next deadline and fires it.
    fn step(&mut self) {
        self.settle();
        let mut next = self.client.poll_timeout().as_micros() as f64 / 1000.0;
        for r in self.nodes.iter().flatten() {
            next = next.min(r.deadline_ms());
        }
        self.now_ms = next.max(self.now_ms).min(self.now_ms + 1_000.0);
        let now = self.now();
        for r in self.nodes.iter_mut().flatten() {
            r.timeout(self.now_ms).unwrap();
        }
        self.client.handle_timeout(now);
        self.settle();
    }

    /// Steps until `done` holds, for at most [`STEP_MS_MAX`] of simulated time.
    fn until(&mut self, what: &str, mut done: impl FnMut(&mut Self) -> bool) {
        let start = self.now_ms;
        while !done(self) {
            assert!(self.now_ms - start < STEP_MS_MAX, "{what}: not within {STEP_MS_MAX} ms");
            self.step();
        }
    }

    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .flatten()
            .filter(|r| !self.cut.contains(&(r.id() as u64)))
            .map(Replica::raft_status)
            .find(|s| s.role == Role::Leader)
            .map(|s| s.id.0)
    }

    /// Runs a typed call through the client to its result.
    fn call<T>(&mut self, call: Call<T>) -> T {
        let (request, decode) = call.into_parts();
        let op: OpId = self.client.call(self.now(), request, Consistency::Linearizable);
        let mut answer = None;
        self.until("a call", |c| {
            while let Some(e) = c.client.poll_event() {
                if let ClientEvent::Done { op: done, result, .. } = e {
                    if done == op {
                        answer = Some(decode.decode(result.expect("the call succeeds")).expect("its reply"));
                    }
                }
            }
            answer.is_some()
        });
        answer.expect("answered")
    }

    /// Stops node `id` and starts it again from what it stored.
    fn restart(&mut self, id: u64) {
        let r = self.nodes[(id - 1) as usize].take().expect("running");
        let media = r.into_memory().expect("an in-module medium");
        self.seed += 1;
        let again = Replica::create(id, &MEMBERS, Medium::Memory(media), self.now_ms, self.seed).unwrap();
        self.nodes[(id - 1) as usize] = Some(again);
    }
}

#[wasm_bindgen_test]
fn three_replicas_elect_keep_fences_rising_across_a_partition_and_lose_no_acknowledged_write() {
    let mut c = Cluster::new();
    c.until("a first leader", |c| c.leader().is_some());
    let first = c.leader().unwrap();

    let lock = calls::Lock::new("jobs");
    let f1: Fence = c.call(lock.lock(None));
    c.call(lock.release(f1));

    // Cut the leader off: the other two elect one of themselves, and the lock's next
    // fence is higher.
    c.cut.insert(first);
    c.until("a leader among the others", |c| c.leader().is_some_and(|l| l != first));
    let second = c.leader().unwrap();
    let f2: Fence = c.call(lock.lock(None));
    assert!(f2 > f1, "fence {f2:?} after the partition is not above {f1:?}");
    c.call(lock.release(f2));

    // Heal: the old leader follows, and fences keep rising.
    c.cut.clear();
    c.until("the old leader follows", |c| {
        c.nodes[(first - 1) as usize].as_ref().is_some_and(|r| r.raft_status().role == Role::Follower)
    });
    let f3: Fence = c.call(lock.lock(None));
    assert!(f3 > f2, "fence {f3:?} after healing is not above {f2:?}");
    c.call(lock.release(f3));

    // Acknowledged writes survive restarts of every replica from their stored state.
    let counter = calls::Counter::new("acked");
    let mut acked = 0;
    for _ in 0..20 {
        acked = c.call(counter.incr());
    }
    assert_eq!(acked, 20);
    let follower = MEMBERS.iter().copied().find(|n| *n != second).unwrap();
    c.restart(follower);
    c.restart(second);
    c.until("a leader after the restarts", |c| c.leader().is_some());
    assert_eq!(c.call(counter.get()), 20, "an acknowledged increment was lost");
    for id in MEMBERS {
        c.restart(id);
    }
    c.until("a leader after restarting all", |c| c.leader().is_some());
    assert_eq!(c.call(counter.get()), 20, "an acknowledged increment was lost after a full restart");
    let f4: Fence = c.call(lock.lock(None));
    assert!(f4 > f3, "fence {f4:?} after the restarts is not above {f3:?}");
}

#[wasm_bindgen_test]
fn malformed_peer_and_client_bytes_are_typed_errors() {
    let mut r = Replica::create(1, &MEMBERS, Medium::Memory(MemMedia::new()), 0.0, 1).unwrap();
    assert!(r.peer(1.0, 2, &[0xff, 0x00, 0x13]).is_err());
    assert!(r.client(1.0, 1, &[]).is_err());
    assert!(r.peer(f64::NAN, 2, &[]).is_err());
    assert!(Replica::create(4, &MEMBERS, Medium::Memory(MemMedia::new()), 0.0, 1).is_err());
    // It still runs.
    r.timeout(2.0).unwrap();
    r.drain_bytes().unwrap();
}
