//! Simulated clients: each runs one operation at a time against the register store,
//! follows leader hints, retries only when the error proves the op was not applied, and
//! records every op (with true invocation and completion times) for the linearizability
//! checker. An op whose outcome cannot be known (timeout, crash, lost leadership) stays
//! open-ended in the history: it may or may not have taken effect.

use crate::linearizability::{KvInput, KvOutput, Operation};
use crate::register::{RegisterCommand, RegisterOutput, RegisterQuery};
use concord_core::{Consistency, Reply, Request, RequestError, RequestId, Response};
use rand_xoshiro::rand_core::RngCore;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{BTreeMap, BTreeSet};

/// After the faults heal and the cluster settles, every client must complete this many
/// ops (and none may fail) before a run counts as recovered.
const OPS_AFTER_SETTLE: u32 = 5;

/// What the simulator should do for a client.
pub(crate) struct Action {
    /// Tick this client again at this time.
    pub(crate) next_tick: Option<u64>,
    /// Deliver this request to this node.
    pub(crate) send: Option<(usize, RequestId, Request)>,
}

#[derive(Clone, Debug)]
enum Kind {
    /// Recorded in the history at this position.
    Checked(usize),
    /// A stale read of a key: checked for validity only.
    Stale(u64),
}

#[derive(Clone, Debug)]
struct Waiting {
    kind: Kind,
    request: RequestId,
    payload: Request,
    target: Option<usize>,
    deadline: u64,
    /// When set, the last attempt failed in a way that proves it was not applied: resend.
    retry_at: Option<u64>,
}

#[derive(Clone, Debug, Default)]
struct Client {
    waiting: Option<Waiting>,
    next_at: u64,
    leader_guess: Option<usize>,
    /// Logical process id in the history; changes after an op with unknown outcome.
    process: u64,
    last_seen: BTreeMap<u64, Option<u64>>,
    /// Ops called after the settle time that completed.
    served_after_settle: u32,
}

pub(crate) struct Clients {
    clients: Vec<Client>,
    ops: Vec<Operation<KvInput, KvOutput>>,
    keys: u64,
    timeout_us: u64,
    next_request: u64,
    next_value: u64,
    next_process: u64,
    by_request: BTreeMap<u64, usize>,
    /// (register, value) pairs some replica applied.
    applied: BTreeSet<(u64, u64)>,
    /// Requests of ops given up on: a late answer still tells their outcome.
    abandoned: BTreeMap<u64, usize>,
    stale_reads: Vec<(u64, Option<u64>)>,
    settle_at: u64,
    failures_after_settle: Vec<String>,
    protocol_errors: Vec<String>,
}

impl Clients {
    pub(crate) fn new(n: usize, keys: u64, timeout_us: u64) -> Self {
        let clients = (0..n).map(|i| Client { process: i as u64, ..Client::default() }).collect();
        Self {
            clients,
            ops: Vec::new(),
            keys,
            timeout_us,
            next_request: 0,
            next_value: 1,
            next_process: n as u64,
            by_request: BTreeMap::new(),
            applied: BTreeSet::new(),
            abandoned: BTreeMap::new(),
            stale_reads: Vec::new(),
            settle_at: u64::MAX,
            failures_after_settle: Vec::new(),
            protocol_errors: Vec::new(),
        }
    }

    pub(crate) fn set_settle_time(&mut self, at: u64) {
        self.settle_at = at;
    }

    fn new_request(&mut self, client: usize) -> RequestId {
        self.next_request += 1;
        self.by_request.insert(self.next_request, client);
        RequestId(self.next_request)
    }

    pub(crate) fn tick(
        &mut self,
        c: usize,
        now: u64,
        rng: &mut Xoshiro256PlusPlus,
        nodes: u64,
    ) -> Option<Action> {
        if let Some(w) = self.clients[c].waiting.clone() {
            if now >= w.deadline {
                self.give_up(c, now);
            } else if w.retry_at.is_some_and(|t| now >= t) {
                let target = w.target.unwrap_or_else(|| (rng.next_u64() % nodes) as usize);
                let request = self.new_request(c);
                if let Some(w) = &mut self.clients[c].waiting {
                    w.retry_at = None;
                    w.request = request;
                    w.target = Some(target);
                }
                return Some(Action { next_tick: None, send: Some((target, request, w.payload)) });
            } else {
                return None;
            }
        }
        if now < self.clients[c].next_at {
            return None;
        }
        Some(self.issue(c, now, rng, nodes))
    }

    fn issue(&mut self, c: usize, now: u64, rng: &mut Xoshiro256PlusPlus, nodes: u64) -> Action {
        let key = rng.next_u64() % self.keys;
        let roll = rng.next_u64() % 100;
        let random_node = (rng.next_u64() % nodes) as usize;
        // A quarter of ops go to a random node (whose redirect leads to its leader), as
        // clients spread over a cluster do; this is also how clients of a cut-off leader
        // find the new one before their timeouts.
        let explore = rng.next_u64() % 4 == 0;
        let target = self.clients[c].leader_guess.filter(|_| !explore).unwrap_or(random_node);
        let process = self.clients[c].process;
        let (kind, payload, target) = if roll < 10 {
            let query = RegisterQuery { key }.encode();
            (Kind::Stale(key), Request::Read { query, consistency: Consistency::Stale }, random_node)
        } else {
            let (input, payload) = if roll < 45 {
                let value = self.fresh_value(key);
                (
                    KvInput::Write { key, value },
                    Request::Propose(RegisterCommand::Write { key, value }.encode()),
                )
            } else if roll < 60 {
                let expected = self.clients[c].last_seen.get(&key).copied().flatten();
                let new = self.fresh_value(key);
                let cmd = RegisterCommand::Cas { key, expected, new };
                (KvInput::Cas { key, expected, new }, Request::Propose(cmd.encode()))
            } else {
                let consistency = if roll < 80 { Consistency::Linearizable } else { Consistency::Lease };
                (KvInput::Read { key }, Request::Read { query: RegisterQuery { key }.encode(), consistency })
            };
            self.ops.push(Operation { client: process, call_us: now, return_us: None, input, output: None });
            (Kind::Checked(self.ops.len() - 1), payload, target)
        };
        let request = self.new_request(c);
        let deadline = now + self.timeout_us;
        self.clients[c].waiting = Some(Waiting {
            kind,
            request,
            payload: payload.clone(),
            target: Some(target),
            deadline,
            retry_at: None,
        });
        Action { next_tick: Some(deadline), send: Some((target, request, payload)) }
    }

    fn fresh_value(&mut self, _key: u64) -> u64 {
        self.next_value += 1;
        self.next_value
    }

    /// Records values a replica applied (stale reads may only return those).
    pub(crate) fn record_applied(&mut self, written: impl IntoIterator<Item = (u64, u64)>) {
        self.applied.extend(written);
    }

    /// The op's outcome is unknown: leave it open in the history and move on.
    fn give_up(&mut self, c: usize, now: u64) {
        let Some(w) = self.clients[c].waiting.take() else { return };
        self.by_request.remove(&w.request.0);
        if let Kind::Checked(op) = w.kind {
            self.abandoned.insert(w.request.0, op);
            if self.ops[op].call_us >= self.settle_at {
                self.failures_after_settle.push(format!("client {c}: {:?} gave up", self.ops[op].input));
            }
        }
        self.next_process += 1;
        self.clients[c].process = self.next_process;
        self.clients[c].leader_guess = None;
        self.clients[c].next_at = now;
    }

    /// The node a request went to is down. Only the client's current request matters: an
    /// old one (given up on, or replaced by a retry) must not make the client resend its
    /// current op while that op may still be in flight.
    pub(crate) fn on_unreachable(&mut self, c: usize, id: RequestId) {
        self.by_request.remove(&id.0);
        self.abandoned.remove(&id.0);
        let Some(w) = &mut self.clients[c].waiting else { return };
        if w.request != id {
            return;
        }
        w.retry_at = Some(0);
        w.target = None;
        self.clients[c].leader_guess = None;
    }

    /// Handles a reply; returns (client, delay) when that client should tick again.
    pub(crate) fn on_reply(&mut self, now: u64, reply: Reply<RegisterOutput>) -> Option<(usize, u64)> {
        if let Some(op) = self.abandoned.remove(&reply.id.0) {
            self.late_reply(op, now, reply);
            return None;
        }
        let c = self.by_request.remove(&reply.id.0)?;
        let w = self.clients[c].waiting.clone()?;
        if w.request != reply.id {
            return None;
        }
        match reply.result {
            Ok(Response::Applied { output, .. } | Response::Read { output, .. }) => {
                self.complete(c, now, &w, output);
                self.clients[c].leader_guess = w.target;
                Some((c, 1_000 + now % 7_000))
            }
            Ok(other) => {
                self.protocol_errors.push(format!("client {c}: unexpected response {other:?}"));
                None
            }
            Err(RequestError::NotLeader { leader }) => {
                let hint = leader.map(|l| l.0 as usize - 1);
                self.clients[c].leader_guess = hint;
                self.retry(c, now, hint, if hint.is_some() { 500 } else { 10_000 })
            }
            Err(RequestError::Busy | RequestError::LeaderNotReady | RequestError::TransferInProgress) => {
                self.retry(c, now, w.target, 10_000)
            }
            Err(_) => {
                self.give_up(c, now);
                Some((c, 1_000))
            }
        }
    }

    /// An op the client gave up on was answered after all: the history gets its outcome
    /// (it completed now, after a longer wait), so a wrong answer cannot hide as unknown.
    fn late_reply(&mut self, op: usize, now: u64, reply: Reply<RegisterOutput>) {
        let Ok(Response::Applied { output, .. } | Response::Read { output, .. }) = reply.result else {
            return;
        };
        let out = match (output, &self.ops[op].input) {
            (RegisterOutput::Written, KvInput::Write { .. }) => KvOutput::Write,
            (RegisterOutput::Cas(ok), KvInput::Cas { .. }) => KvOutput::Cas(ok),
            (RegisterOutput::Value(v), KvInput::Read { .. }) => KvOutput::Read(v),
            (other, input) => {
                self.protocol_errors.push(format!("late answer {other:?} to {input:?}"));
                return;
            }
        };
        self.ops[op].return_us = Some(now);
        self.ops[op].output = Some(out);
    }

    fn retry(&mut self, c: usize, now: u64, target: Option<usize>, delay: u64) -> Option<(usize, u64)> {
        if let Some(w) = &mut self.clients[c].waiting {
            w.retry_at = Some(now + delay);
            w.target = target;
        }
        Some((c, delay))
    }

    fn complete(&mut self, c: usize, now: u64, w: &Waiting, output: RegisterOutput) {
        self.clients[c].waiting = None;
        self.clients[c].next_at = now + 1_000 + now % 7_000;
        match w.kind {
            Kind::Stale(key) => match output {
                RegisterOutput::Value(v) => self.stale_reads.push((key, v)),
                other => self.protocol_errors.push(format!("stale read answered {other:?}")),
            },
            Kind::Checked(op) => {
                let key = match self.ops[op].input {
                    KvInput::Read { key } | KvInput::Write { key, .. } | KvInput::Cas { key, .. } => key,
                };
                let out = match (output, &self.ops[op].input) {
                    (RegisterOutput::Written, KvInput::Write { value, .. }) => {
                        self.clients[c].last_seen.insert(key, Some(*value));
                        KvOutput::Write
                    }
                    (RegisterOutput::Cas(ok), KvInput::Cas { new, .. }) => {
                        if ok {
                            self.clients[c].last_seen.insert(key, Some(*new));
                        }
                        KvOutput::Cas(ok)
                    }
                    (RegisterOutput::Value(v), KvInput::Read { .. }) => {
                        self.clients[c].last_seen.insert(key, v);
                        KvOutput::Read(v)
                    }
                    (other, input) => {
                        self.protocol_errors.push(format!("{input:?} answered {other:?}"));
                        return;
                    }
                };
                self.ops[op].return_us = Some(now);
                self.ops[op].output = Some(out);
                if self.ops[op].call_us >= self.settle_at {
                    self.clients[c].served_after_settle += 1;
                }
            }
        }
    }

    /// Every client completed `OPS_AFTER_SETTLE` ops called after the settle time, and
    /// none failed after it.
    pub(crate) fn all_served_after_settle(&self) -> bool {
        self.failures_after_settle.is_empty()
            && self.clients.iter().all(|c| c.served_after_settle >= OPS_AFTER_SETTLE)
    }

    /// Describes clients not yet fully served after the settle time.
    pub(crate) fn unfinished_after_settle(&self) -> Vec<String> {
        let mut out = self.failures_after_settle.clone();
        for (i, c) in self.clients.iter().enumerate() {
            if c.served_after_settle < OPS_AFTER_SETTLE {
                out.push(format!(
                    "client {i} not served (waiting: {:?})",
                    c.waiting.as_ref().map(|w| &w.kind)
                ));
            }
        }
        out
    }

    /// A stale read returned a value nobody wrote, or a reply did not fit its request.
    pub(crate) fn stale_read_violation(&self) -> Option<String> {
        if let Some(e) = self.protocol_errors.first() {
            return Some(e.clone());
        }
        self.stale_reads
            .iter()
            .find(|(key, v)| v.is_some_and(|v| !self.applied.contains(&(*key, v))))
            .map(|(key, v)| format!("stale read of register {key} returned {v:?}, which no replica applied"))
    }

    /// The history for the linearizability checker.
    pub(crate) fn history(&self) -> Vec<Operation<KvInput, KvOutput>> {
        self.ops.clone()
    }
}
