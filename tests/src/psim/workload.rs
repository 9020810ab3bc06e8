//! The clients' mixed workload over every primitive, what they observed, and the checks
//! made from their side.

use super::checks::{Checks, SEMAPHORE_PERMITS};
use super::Report;
use crate::linearizability::{check, CheckResult, Model, Operation};
use concord_core::client::{Client, ClientEvent, OpId};
use concord_core::machine::barrier::BarrierOp;
use concord_core::machine::election::ElectionOp;
use concord_core::machine::kv::{KvError, KvOp, KvQuery, PutMode, WatchFilter, WatchKind};
use concord_core::machine::latch::LatchOp;
use concord_core::machine::lock::LockOp;
use concord_core::machine::long::{LongOp, LongQuery};
use concord_core::machine::reference::{RefOp, RefQuery};
use concord_core::machine::rwlock::{Mode, RwLockOp};
use concord_core::machine::semaphore::SemaphoreOp;
use concord_core::machine::signal::SignalOp;
use concord_core::machine::{Error, Op, QueryOp, Reply, SessionId};
use concord_core::{Consistency, Instant};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{BTreeMap, BTreeSet};

/// Which client coordinates the latch rounds.
const LATCH_COORDINATOR: usize = 5;
/// Parties of the workload's barrier and count of its latch.
const BARRIER_PARTIES: u32 = 2;
const LATCH_COUNT: u64 = 2;

/// A linearizable object: counters (absent = 0), references and keys (absent = none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PIn {
    Read { key: u64 },
    Write { key: u64, value: Option<i64> },
    Add { key: u64, delta: i64 },
    Cas { key: u64, expect: Option<i64>, new: Option<i64> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum POut {
    Read(Option<i64>),
    Write,
    Add(i64),
    Cas(bool),
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PModel;

impl Model for PModel {
    type State = Option<i64>;
    type Input = PIn;
    type Output = POut;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(&self, state: &Option<i64>, input: &PIn, output: Option<&POut>) -> Vec<Option<i64>> {
        match (input, output) {
            (PIn::Read { .. }, None) => vec![*state],
            (PIn::Read { .. }, Some(POut::Read(v))) if v == state => vec![*state],
            (PIn::Write { value, .. }, None | Some(POut::Write)) => vec![*value],
            (PIn::Add { delta, .. }, out) => {
                let new = state.unwrap_or(0).wrapping_add(*delta);
                match out {
                    None => vec![norm(new)],
                    Some(POut::Add(v)) if *v == new => vec![norm(new)],
                    _ => vec![],
                }
            }
            (PIn::Cas { expect, new, .. }, None) => vec![if state == expect { *new } else { *state }],
            (PIn::Cas { expect, new, .. }, Some(POut::Cas(true))) if state == expect => vec![*new],
            (PIn::Cas { expect, .. }, Some(POut::Cas(false))) if state != expect => vec![*state],
            _ => vec![],
        }
    }

    fn partition_key(&self, input: &PIn) -> u64 {
        match input {
            PIn::Read { key } | PIn::Write { key, .. } | PIn::Add { key, .. } | PIn::Cas { key, .. } => *key,
        }
    }
}

/// Counters store 0 as absent.
fn norm(v: i64) -> Option<i64> {
    (v != 0).then_some(v)
}

const COUNTER: u64 = 0;
const KEY0: u64 = 10;
const REFERENCE: u64 = 20;

#[derive(Clone, Debug)]
enum Kind {
    Lin(PIn),
    Init,
    Lock(String),
    Unlock,
    SemAcquire(u64),
    SemRelease,
    Rw(String, Mode),
    RwUnlock,
    TrySet,
    CountDown,
    Await,
    Barrier,
    Campaign,
    Resign,
    Publish,
    Subscribe,
}

impl Kind {
    fn label(&self) -> &'static str {
        match self {
            Self::Lin(PIn::Read { .. }) => "read",
            Self::Lin(_) => "write",
            Self::Init => "semaphore-init",
            Self::Lock(_) => "lock",
            Self::Unlock => "unlock",
            Self::SemAcquire(_) => "semaphore-acquire",
            Self::SemRelease => "semaphore-release",
            Self::Rw(..) => "rwlock",
            Self::RwUnlock => "rwlock-unlock",
            Self::TrySet => "latch-set",
            Self::CountDown => "latch-count-down",
            Self::Await => "latch-await",
            Self::Barrier => "barrier",
            Self::Campaign => "campaign",
            Self::Resign => "resign",
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
        }
    }
}

#[derive(Clone, Debug)]
enum Holding {
    Lock(String),
    Sem(u64),
    Rw(String),
    Election,
}

struct Current {
    op: OpId,
    kind: Kind,
    call_us: u64,
}

#[derive(Default)]
struct ClientState {
    session: Option<SessionId>,
    current: Option<Current>,
    holding: Option<Holding>,
    initialized: bool,
    subscribed: bool,
    watch: Option<OpId>,
    served_after_heal: u32,
    last_etag: Option<u64>,
    last_counter: Option<i64>,
    last_ref: Option<i64>,
}

/// Who believes they hold an exclusive (or counted) resource.
#[derive(Clone, Debug)]
struct Belief {
    client: usize,
    session: SessionId,
    /// Write (exclusive) or read, or a number of permits.
    weight: u64,
    exclusive: bool,
}

pub(crate) struct Workload {
    rng: Xoshiro256PlusPlus,
    clients: Vec<ClientState>,
    history: Vec<Operation<PIn, POut>>,
    healed_at: Option<u64>,
    next_value: i64,
    believers: BTreeMap<String, Vec<Belief>>,
    latch_zero: BTreeSet<u64>,
    latch_releases: Vec<(usize, u64)>,
    count_down_unknown: bool,
    barrier: BTreeMap<u64, Vec<(u32, u64, usize)>>,
    barrier_unknown: bool,
    kv_writes: BTreeMap<u64, (String, i64)>,
    watch_next: BTreeMap<usize, u64>,
    watch_seen: Vec<(u64, String, WatchKind, Option<i64>)>,
    publishes: Vec<(u64, u64)>,
    deliveries: BTreeMap<u64, (u64, u64)>,
    violation: Option<(&'static str, String)>,
    counts: BTreeMap<&'static str, u64>,
    unknown: u64,
    sessions_lost: u64,
    lock_grants: u64,
}

fn decode(v: &Option<Vec<u8>>) -> Option<i64> {
    v.as_ref().and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map(i64::from_le_bytes)
}

impl Workload {
    pub(crate) fn new(clients: usize, seed: u64) -> Self {
        Self {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            clients: (0..clients).map(|_| ClientState::default()).collect(),
            history: Vec::new(),
            healed_at: None,
            next_value: 1,
            believers: BTreeMap::new(),
            latch_zero: BTreeSet::new(),
            latch_releases: Vec::new(),
            count_down_unknown: false,
            barrier: BTreeMap::new(),
            barrier_unknown: false,
            kv_writes: BTreeMap::new(),
            watch_next: BTreeMap::new(),
            watch_seen: Vec::new(),
            publishes: Vec::new(),
            deliveries: BTreeMap::new(),
            violation: None,
            counts: BTreeMap::new(),
            unknown: 0,
            sessions_lost: 0,
            lock_grants: 0,
        }
    }

    fn random(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    fn fail(&mut self, property: &'static str, detail: String) {
        self.violation.get_or_insert((property, detail));
    }

    pub(crate) fn healed(&mut self, now: u64) {
        self.healed_at = Some(now);
        for c in &mut self.clients {
            c.served_after_heal = 0;
        }
    }

    /// Whether every client completed `k` operations since healing.
    pub(crate) fn all_served(&self, k: u32) -> bool {
        self.clients.iter().all(|c| c.served_after_heal >= k)
    }

    pub(crate) fn describe_waiting(&self, k: u32) -> String {
        self.clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.served_after_heal < k)
            .map(|(i, c)| {
                let what = c.current.as_ref().map_or("nothing".to_string(), |cur| format!("{:?}", cur.kind));
                format!("c{i} ({} served; waiting on {what}; session {:?})", c.served_after_heal, c.session)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The client's next step; returns when to act again if it did not start an
    /// operation (whose completion wakes it).
    pub(crate) fn act(&mut self, c: usize, now_us: u64, client: &mut Client, now: Instant) -> Option<u64> {
        if self.clients[c].current.is_some() {
            return None;
        }
        if self.clients[c].session.is_none() {
            // Sessions open on demand: this workload wants one before it acts.
            client.open_session(now);
            return Some(20_000);
        }
        if c == 0 && self.clients[0].watch.is_none() {
            let w = client.watch(now, WatchFilter::Prefix(String::new()), Some(1));
            self.clients[0].watch = Some(w);
            self.watch_next.insert(0, 1);
        }
        let (op, kind) = self.pick(c);
        let id = match op {
            Pick::Command(op) => client.submit(now, op),
            Pick::Read(q, consistency) => client.read(now, q, consistency),
        };
        self.clients[c].current = Some(Current { op: id, kind, call_us: now_us });
        None
    }

    fn pick(&mut self, c: usize) -> (Pick, Kind) {
        let st = &self.clients[c];
        if let Some(h) = st.holding.clone() {
            return match h {
                Holding::Lock(name) => {
                    self.release(c, &name);
                    (Pick::Command(Op::Lock(LockOp::Unlock { name: name.clone() })), Kind::Unlock)
                }
                Holding::Sem(n) => {
                    self.release(c, "S");
                    (
                        Pick::Command(Op::Semaphore(SemaphoreOp::Release { name: "S".into(), permits: n })),
                        Kind::SemRelease,
                    )
                }
                Holding::Rw(name) => {
                    self.release(c, &format!("rw:{name}"));
                    (Pick::Command(Op::RwLock(RwLockOp::Unlock { name: name.clone() })), Kind::RwUnlock)
                }
                Holding::Election => {
                    self.release(c, "election:E");
                    (Pick::Command(Op::Election(ElectionOp::Resign { name: "E".into() })), Kind::Resign)
                }
            };
        }
        if !st.initialized {
            let op =
                SemaphoreOp::Init { name: "S".into(), permits: SEMAPHORE_PERMITS as u64, sessionless: false };
            return (Pick::Command(Op::Semaphore(op)), Kind::Init);
        }
        if (1..=3).contains(&c) && !st.subscribed {
            let group = (c != 3).then(|| "g".to_string());
            let op = SignalOp::Subscribe { pattern: "sig.>".into(), group };
            return (Pick::Command(Op::Signal(op)), Kind::Subscribe);
        }
        let timeout = |w: &mut Self| match w.random(4) {
            0 => Some(0),
            1 => None,
            _ => Some(100 + w.random(1_200)),
        };
        let value = self.next_value;
        self.next_value += 1;
        let bytes = value.to_le_bytes().to_vec();
        let roll = self.random(100);
        let consistency = if self.random(2) == 0 { Consistency::Linearizable } else { Consistency::Lease };
        match roll {
            0..=6 => {
                let input = PIn::Add { key: COUNTER, delta: 1 };
                (Pick::Command(Op::Long(LongOp::AddAndGet { name: "c".into(), delta: 1 })), Kind::Lin(input))
            }
            7..=11 => {
                let q = QueryOp::Long(LongQuery::Get { name: "c".into() });
                (Pick::Read(q, consistency), Kind::Lin(PIn::Read { key: COUNTER }))
            }
            12..=14 => {
                let expect = self.clients[c].last_counter.unwrap_or(0);
                let update = expect + 100;
                let op = LongOp::CompareAndSet { name: "c".into(), expect, update };
                (
                    Pick::Command(Op::Long(op)),
                    Kind::Lin(PIn::Cas { key: COUNTER, expect: norm(expect), new: norm(update) }),
                )
            }
            15..=22 => {
                let k = self.random(2);
                let key = format!("k.{k}");
                let (mode, input) = match self.random(3) {
                    0 => (PutMode::IfAbsent, PIn::Cas { key: KEY0 + k, expect: None, new: Some(value) }),
                    _ => (PutMode::Always, PIn::Write { key: KEY0 + k, value: Some(value) }),
                };
                let op = KvOp::Put { key, value: bytes, mode, ttl_ms: None };
                (Pick::Command(Op::Kv(op)), Kind::Lin(input))
            }
            23..=27 => {
                let k = self.random(2);
                let q = QueryOp::Kv(KvQuery::Get { key: format!("k.{k}"), if_none_match: None });
                (Pick::Read(q, consistency), Kind::Lin(PIn::Read { key: KEY0 + k }))
            }
            28..=29 => {
                let k = self.random(2);
                let op = KvOp::Delete { key: format!("k.{k}"), if_match: None };
                (Pick::Command(Op::Kv(op)), Kind::Lin(PIn::Write { key: KEY0 + k, value: None }))
            }
            30..=33 => {
                let op = RefOp::Set { name: "R".into(), value: Some(bytes) };
                (Pick::Command(Op::Ref(op)), Kind::Lin(PIn::Write { key: REFERENCE, value: Some(value) }))
            }
            34..=36 => {
                let q = QueryOp::Ref(RefQuery::Get { name: "R".into() });
                (Pick::Read(q, consistency), Kind::Lin(PIn::Read { key: REFERENCE }))
            }
            37..=39 => {
                let expect = self.clients[c].last_ref;
                let op = RefOp::CompareAndSet {
                    name: "R".into(),
                    expect: expect.map(|v| v.to_le_bytes().to_vec()),
                    update: Some(bytes),
                };
                (Pick::Command(Op::Ref(op)), Kind::Lin(PIn::Cas { key: REFERENCE, expect, new: Some(value) }))
            }
            40..=54 => {
                let name = format!("L{}", self.random(2));
                let timeout_ms = timeout(self);
                (Pick::Command(Op::Lock(LockOp::Lock { name: name.clone(), timeout_ms })), Kind::Lock(name))
            }
            55..=62 => {
                let permits = 1 + self.random(2);
                let op = SemaphoreOp::Acquire { name: "S".into(), permits, timeout_ms: timeout(self) };
                (Pick::Command(Op::Semaphore(op)), Kind::SemAcquire(permits))
            }
            63..=70 => {
                let mode = if self.random(2) == 0 { Mode::Read } else { Mode::Write };
                let op = RwLockOp::Lock { name: "W".into(), mode, timeout_ms: timeout(self) };
                (Pick::Command(Op::RwLock(op)), Kind::Rw("W".into(), mode))
            }
            71..=78 if c == LATCH_COORDINATOR => {
                let op = LatchOp::TrySetCount { name: "D".into(), count: LATCH_COUNT };
                (Pick::Command(Op::Latch(op)), Kind::TrySet)
            }
            71..=74 => (Pick::Command(Op::Latch(LatchOp::CountDown { name: "D".into() })), Kind::CountDown),
            75..=78 => {
                let op = LatchOp::Await { name: "D".into(), timeout_ms: Some(100 + self.random(900)) };
                (Pick::Command(Op::Latch(op)), Kind::Await)
            }
            79..=84 => {
                let op = BarrierOp::Wait {
                    name: "B".into(),
                    parties: BARRIER_PARTIES,
                    timeout_ms: Some(200 + self.random(1_000)),
                };
                (Pick::Command(Op::Barrier(op)), Kind::Barrier)
            }
            85..=91 => {
                let op = ElectionOp::Campaign {
                    name: "E".into(),
                    value: vec![c as u8],
                    timeout_ms: timeout(self),
                };
                (Pick::Command(Op::Election(op)), Kind::Campaign)
            }
            _ => {
                let op = SignalOp::Publish { subject: "sig.x".into(), payload: bytes };
                (Pick::Command(Op::Signal(op)), Kind::Publish)
            }
        }
    }

    /// The client stops believing it holds `resource` (it is about to release it).
    fn release(&mut self, c: usize, resource: &str) {
        if let Some(b) = self.believers.get_mut(resource) {
            b.retain(|x| x.client != c);
        }
    }

    /// A grant at `index`: everyone else still believing they hold a conflicting share
    /// must have lost their session before it.
    fn grant(&mut self, checks: &Checks, resource: String, index: u64, belief: Belief, capacity: u64) {
        // One entry may grant to a session and then end it (a session expiring in the
        // same tick as the release that let it in): such a grant held for no time.
        if checks.session_ended.get(&belief.session).is_some_and(|&e| e <= index) {
            return;
        }
        let believers = self.believers.entry(resource.clone()).or_default();
        let mut used = belief.weight;
        for other in believers.iter() {
            if other.client == belief.client {
                continue;
            }
            let ended_before = checks.session_ended.get(&other.session).is_some_and(|&e| e <= index);
            if ended_before {
                continue;
            }
            if belief.exclusive || other.exclusive {
                let detail = format!(
                    "{resource} granted to c{} ({}) at index {index} while c{} ({}) still holds it",
                    belief.client, belief.session, other.client, other.session
                );
                self.violation.get_or_insert(("mutual exclusion", detail));
                return;
            }
            used += other.weight;
        }
        if used > capacity {
            let detail = format!("{resource}: {used} held at index {index}, capacity {capacity}");
            self.violation.get_or_insert(("semaphore permits", detail));
        }
        believers.push(belief);
    }

    /// What a node sent a client, seen before the client gets it (for checks that need
    /// the raw stream).
    pub(crate) fn on_event(
        &mut self,
        c: usize,
        now: u64,
        e: ClientEvent,
        checks: &mut Checks,
    ) -> Option<u64> {
        match e {
            ClientEvent::SessionOpened(s) => {
                self.clients[c].session = Some(s);
                Some(1_000)
            }
            ClientEvent::SessionLost(_) => {
                self.sessions_lost += 1;
                let st = &mut self.clients[c];
                st.session = None;
                st.holding = None;
                st.subscribed = false;
                for b in self.believers.values_mut() {
                    b.retain(|x| x.client != c);
                }
                None
            }
            ClientEvent::Done { op, result, index, queued, .. } => {
                self.on_done(c, now, op, result, index, queued, checks)
            }
            ClientEvent::Failed { op, .. } => {
                let cur = self.clients[c].current.take_if(|cur| cur.op == op)?;
                self.unknown_outcome(c, &cur);
                self.served(c);
                Some(self.think())
            }
            ClientEvent::Watch { event, .. } => {
                let next = self.watch_next.insert(c, event.revision + 1).unwrap_or(1);
                if event.revision != next {
                    let detail = format!("c{c} expected revision {next}, got {}", event.revision);
                    self.fail("watch gap-free and in order", detail);
                }
                self.watch_seen.push((event.revision, event.key, event.kind, decode(&event.value)));
                None
            }
            ClientEvent::Signal { delivery: d, .. } => {
                let e = self.deliveries.entry(d.index).or_default();
                e.0 += 1;
                if (1..=2).contains(&c) {
                    e.1 += 1;
                }
                None
            }
            ClientEvent::Admin { .. } | ClientEvent::Election { .. } | ClientEvent::Reached { .. } => None,
        }
    }

    fn think(&mut self) -> u64 {
        self.random(20_000) + 1
    }

    fn served(&mut self, c: usize) {
        if self.healed_at.is_some() {
            self.clients[c].served_after_heal += 1;
        }
    }

    fn unknown_outcome(&mut self, c: usize, cur: &Current) {
        self.unknown += 1;
        match &cur.kind {
            Kind::Lin(input) => self.history.push(Operation::unknown(c as u64, cur.call_us, input.clone())),
            Kind::CountDown => self.count_down_unknown = true,
            Kind::Barrier => self.barrier_unknown = true,
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_done(
        &mut self,
        c: usize,
        now: u64,
        op: OpId,
        result: Result<Reply, Error>,
        index: u64,
        queued: bool,
        checks: &Checks,
    ) -> Option<u64> {
        let cur = self.clients[c].current.take_if(|cur| cur.op == op)?;
        *self.counts.entry(cur.kind.label()).or_default() += 1;
        self.served(c);
        if let Err(Error::SessionLost(_)) = result {
            // Applied or not: unknown.
            self.unknown_outcome(c, &cur);
            return Some(self.think());
        }
        let session = self.clients[c].session;
        match (&cur.kind, result) {
            (Kind::Lin(input), r) => {
                let out = match (input, r) {
                    (PIn::Read { .. }, Ok(Reply::Long(v))) => {
                        self.clients[c].last_counter = Some(v);
                        Some(POut::Read(norm(v)))
                    }
                    (PIn::Read { .. }, Ok(Reply::KvEntry(e))) => {
                        Some(POut::Read(e.and_then(|e| decode(&e.value))))
                    }
                    (PIn::Read { .. }, Ok(Reply::Value(v))) => {
                        let v = decode(&v);
                        self.clients[c].last_ref = v;
                        Some(POut::Read(v))
                    }
                    (PIn::Add { .. }, Ok(Reply::Long(v))) => {
                        self.clients[c].last_counter = Some(v);
                        Some(POut::Add(v))
                    }
                    (PIn::Write { key, value }, Ok(Reply::KvWritten { etag })) => {
                        self.clients[c].last_etag = Some(etag.0);
                        if let Some(v) = value {
                            self.kv_writes.insert(etag.0, (format!("k.{}", key - KEY0), *v));
                        }
                        Some(POut::Write)
                    }
                    (PIn::Write { .. }, Ok(Reply::Unit | Reply::Bool(_))) => Some(POut::Write),
                    (PIn::Cas { key, new, .. }, Ok(Reply::KvWritten { etag })) => {
                        if let Some(v) = new {
                            self.kv_writes.insert(etag.0, (format!("k.{}", key - KEY0), *v));
                        }
                        Some(POut::Cas(true))
                    }
                    (PIn::Cas { .. }, Err(Error::Kv(KvError::Exists { .. }))) => Some(POut::Cas(false)),
                    (PIn::Cas { .. }, Ok(Reply::Bool(b))) => Some(POut::Cas(b)),
                    (_, other) => {
                        self.fail("unexpected reply", format!("c{c} {:?} → {other:?}", cur.kind));
                        None
                    }
                };
                if let Some(out) = out {
                    self.history.push(Operation::completed(c as u64, cur.call_us, now, input.clone(), out));
                }
            }
            (Kind::Init, Ok(_)) => self.clients[c].initialized = true,
            (Kind::Subscribe, Ok(_)) => self.clients[c].subscribed = true,
            (Kind::Lock(name), Ok(Reply::Fence(f))) => {
                self.lock_grants += 1;
                // A retry answered from the reply cache, or a reentrant acquire, carries the
                // fence of the original grant.
                if f.0 > index {
                    self.fail("fence", format!("c{c} lock {name}: fence {} from index {index}", f.0));
                }
                if let Some(s) = session {
                    let belief = Belief { client: c, session: s, weight: 1, exclusive: true };
                    self.grant(checks, name.clone(), f.0, belief, 1);
                }
                self.clients[c].holding = Some(Holding::Lock(name.clone()));
            }
            (Kind::SemAcquire(n), Ok(Reply::Unit)) => {
                if let Some(s) = session {
                    let belief = Belief { client: c, session: s, weight: *n, exclusive: false };
                    self.grant(checks, "S".into(), index, belief, SEMAPHORE_PERMITS as u64);
                }
                self.clients[c].holding = Some(Holding::Sem(*n));
            }
            (Kind::Rw(name, mode), Ok(Reply::Fence(f))) => {
                // A retry answered from the reply cache, or a reentrant acquire, carries the
                // fence of the original grant.
                if f.0 > index {
                    self.fail("fence", format!("c{c} rwlock {name}: fence {} from index {index}", f.0));
                }
                if let Some(s) = session {
                    let belief = Belief { client: c, session: s, weight: 1, exclusive: *mode == Mode::Write };
                    self.grant(checks, format!("rw:{name}"), f.0, belief, u64::MAX);
                }
                self.clients[c].holding = Some(Holding::Rw(name.clone()));
            }
            (Kind::Campaign, Ok(Reply::Fence(f))) => {
                // A retry answered from the reply cache, or a reentrant acquire, carries the
                // fence of the original grant.
                if f.0 > index {
                    self.fail("fence", format!("c{c} election: fence {} from index {index}", f.0));
                }
                if let Some(s) = session {
                    let belief = Belief { client: c, session: s, weight: 1, exclusive: true };
                    self.grant(checks, "election:E".into(), f.0, belief, 1);
                }
                self.clients[c].holding = Some(Holding::Election);
            }
            (Kind::CountDown, Ok(Reply::Count(0))) => {
                self.latch_zero.insert(index);
            }
            (Kind::Await, Ok(Reply::Unit)) if queued => self.latch_releases.push((c, index)),
            (Kind::Barrier, Ok(Reply::Barrier { generation, arrival })) => {
                self.barrier.entry(generation).or_default().push((arrival, index, c));
            }
            (Kind::Publish, Ok(Reply::Count(n))) => self.publishes.push((index, n)),
            (Kind::Unlock | Kind::SemRelease | Kind::RwUnlock | Kind::Resign, _) => {
                self.clients[c].holding = None;
            }
            // Timeouts, refused releases and the like are legitimate outcomes.
            _ => {}
        }
        Some(self.think())
    }

    pub(crate) fn report(&self, r: &mut Report) {
        r.ops = self.counts.clone();
        r.unknown = self.unknown;
        r.sessions_lost = self.sessions_lost;
        r.lock_grants = self.lock_grants;
        r.barrier_trips = self.barrier.len() as u64;
        r.watch_events = self.watch_seen.len() as u64;
        r.signals = self.deliveries.values().map(|d| d.0).sum();
    }

    /// Checks made once the run is over.
    pub(crate) fn final_checks(&mut self) -> Result<(), (&'static str, String)> {
        if let Some(v) = self.violation.take() {
            return Err(v);
        }
        // Whatever is still in flight has an unknown outcome.
        for c in 0..self.clients.len() {
            if let Some(cur) = self.clients[c].current.take() {
                self.unknown_outcome(c, &cur);
            }
        }
        if !self.count_down_unknown {
            for (c, index) in &self.latch_releases {
                if !self.latch_zero.contains(index) {
                    return Err((
                        "latch never opens early",
                        format!(
                            "c{c}'s await was released at index {index}, where no count-down reached zero"
                        ),
                    ));
                }
            }
        }
        for (generation, arrivals) in &self.barrier {
            let order: BTreeSet<u32> = arrivals.iter().map(|a| a.0).collect();
            let ok = order.len() == arrivals.len()
                && arrivals.len() <= BARRIER_PARTIES as usize
                && (self.barrier_unknown || arrivals.len() == BARRIER_PARTIES as usize);
            if !ok {
                return Err((
                    "barrier trips once with its parties",
                    format!("generation {generation}: {arrivals:?}"),
                ));
            }
        }
        for (rev, key, kind, value) in &self.watch_seen {
            if let (Some((k, v)), WatchKind::Put) = (self.kv_writes.get(rev), kind) {
                if k != key || Some(*v) != *value {
                    return Err((
                        "watch matches writes",
                        format!("revision {rev}: watched {key}={value:?}, written {k}={v}"),
                    ));
                }
            }
        }
        for (index, count) in &self.publishes {
            let (got, group) = self.deliveries.get(index).copied().unwrap_or_default();
            if got > *count || group > 1 {
                return Err((
                    "signal receivers",
                    format!("publish at {index} counted {count} receivers, {got} got it ({group} in the queue group)"),
                ));
            }
        }
        match check(&PModel, &self.history, 2_000_000) {
            CheckResult::Illegal { partition, detail } => {
                Err(("linearizability", format!("partition {partition}: {detail}")))
            }
            _ => Ok(()),
        }
    }
}

enum Pick {
    Command(Op),
    Read(QueryOp, Consistency),
}
