//! Linearizability checking for client histories recorded by the deterministic simulator.
//!
//! The checker follows the Wing–Gong–Lowe algorithm as refined by Porcupine: a depth-first
//! search over linearization points, walking a doubly-linked list of call/return events
//! sorted by time. Linearizing an operation "lifts" its call and return events out of the
//! list; backtracking puts them back. Search nodes are memoized by
//! (bitset of linearized operations, model state), so every node is expanded at most once.
//! Histories are split per [`Model::partition_key`] and each partition is checked on its
//! own (P-compositionality).
//!
//! # Operations with an unknown outcome
//!
//! An operation whose `return_us` (or `output`) is `None` — the client timed out or crashed —
//! behaves like Knossos's `:info` operations: it may take effect at any point after its call,
//! or never. Such operations have no return event (their return time is +∞), so they never
//! constrain other operations, and the search succeeds as soon as every operation with a known
//! outcome is linearized: the remaining unknown ones are simply dropped.
//!
//! Because an unknown operation stays available forever, naive search would explore every
//! subset of them. Two reductions keep this tractable:
//!
//! * Unknown operations are applied lazily: at each node the known operations are tried
//!   first, and only then the states reachable by applying unknown operations. Those states
//!   are generated breadth-first (per set of linearized *known* operations, the "closure").
//! * Dominance: a node (known set `K`, state `s`, applied unknown set `L`) can do everything a
//!   node (`K`, `s`, `L'`) with `L ⊆ L'` can, since having more unknown operations still
//!   available only adds options. The memo therefore stores, per (`K`, `s`), an antichain of
//!   applied-unknown sets and prunes any node dominated by an already-explored one.
//!   Likewise, applying an unknown operation to a non-root state of a closure and landing on
//!   a state it also reaches from the closure's root is dominated and skipped.
//!
//! [`Model::effect`] lets a model say that an operation is read-only (unknown-outcome ones are
//! then dropped up front) or a blind write (its outcome does not depend on the state, so it
//! only ever needs to be applied to a closure's root). [`KvModel`] uses both.
//!
//! The search is exponential in the worst case (the problem is NP-complete); in practice its
//! cost grows with the number of concurrently pending operations per partition and with the
//! number of unknown-outcome operations. `step_budget` bounds it, and the memo's memory grows
//! roughly linearly with the steps taken.
//!
//! # Time semantics
//!
//! Each operation's linearization point must lie in the closed interval
//! `[call_us, return_us]`. Two operations where one returns at exactly the time the other is
//! called are therefore treated as concurrent (calls sort before returns at equal times).

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Debug, Write as _};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::rc::Rc;

/// One client operation in a history. Times are the simulator's true virtual time (µs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Logical client id (informational: used only in diagnostics).
    pub client: u64,
    /// Invocation time.
    pub call_us: u64,
    /// Completion time. `None` means the outcome is unknown (the client timed out or
    /// crashed): the operation may have taken effect at any point after `call_us`, or never.
    /// A return time earlier than `call_us` is treated as `call_us`.
    pub return_us: Option<u64>,
    /// The request.
    pub input: I,
    /// The observed response; `None` exactly when `return_us` is `None`. An operation with
    /// `output == None` is treated as having an unknown outcome even if `return_us` is set.
    pub output: Option<O>,
}

impl<I, O> Operation<I, O> {
    /// An operation that completed at `return_us` with the observed `output`.
    pub fn completed(client: u64, call_us: u64, return_us: u64, input: I, output: O) -> Self {
        Self { client, call_us, return_us: Some(return_us), input, output: Some(output) }
    }

    /// An operation invoked at `call_us` whose outcome was never observed.
    pub fn unknown(client: u64, call_us: u64, input: I) -> Self {
        Self { client, call_us, return_us: None, input, output: None }
    }

    /// Whether the outcome of this operation is unknown (no return time or no output).
    pub fn is_unknown(&self) -> bool {
        self.return_us.is_none() || self.output.is_none()
    }
}

/// A sequential specification of the replicated object being checked.
pub trait Model {
    /// The state of one partition of the object.
    type State: Clone + Eq + Hash + Debug;
    /// An operation's request.
    type Input: Debug;
    /// An operation's response.
    type Output: Debug;

    /// The initial state of every partition.
    fn init(&self) -> Self::State;

    /// The states reachable by applying `input` to `state`, given the observed output.
    /// `output == None` means the outcome is unknown: return every state the op could leave
    /// (e.g. for a write: applied); an empty vec means the op cannot be linearized here.
    ///
    /// The checker already handles "the operation never took effect" for unknown outcomes,
    /// so a model never needs to model that case explicitly.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Vec<Self::State>;

    /// Partition key for P-compositionality (ops on different keys are checked independently).
    fn partition_key(&self, _input: &Self::Input) -> u64 {
        0
    }

    /// Optional performance hint describing how `input` can affect the state; it is only
    /// used for operations with an unknown outcome. The default, [`Effect::Any`], is always
    /// correct; a more specific answer must be exact, or the checker's verdicts may be wrong.
    fn effect(&self, _input: &Self::Input) -> Effect {
        Effect::Any
    }
}

/// How an operation can affect the model state (see [`Model::effect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// No assumption: the resulting states may depend on the state the op is applied to.
    Any,
    /// The op never changes the state (e.g. a read). Unknown-outcome ops of this kind cannot
    /// influence the verdict and are ignored.
    ReadOnly,
    /// With an unknown outcome, the op leads to the same states whatever state it is applied
    /// to (e.g. a blind write).
    Blind,
}

/// The verdict of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Every partition of the history is linearizable.
    Ok,
    /// The partition `partition` has no linearization.
    Illegal {
        /// The partition key whose sub-history is not linearizable.
        partition: u64,
        /// Human-readable explanation: the longest linearizable prefix found and the pending
        /// operations none of which could be linearized after it.
        detail: String,
    },
    /// The search of partition `partition` ran out of its step budget before reaching a
    /// verdict (and no other partition was found to be illegal).
    Unknown {
        /// The first partition (in key order) whose check exceeded the budget.
        partition: u64,
    },
}

impl CheckResult {
    /// Whether the history was proven linearizable.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }

    /// Whether the history was proven not linearizable.
    pub fn is_illegal(&self) -> bool {
        matches!(self, Self::Illegal { .. })
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("linearizable"),
            Self::Illegal { detail, .. } => f.write_str(detail),
            Self::Unknown { partition } => {
                write!(f, "partition {partition}: linearizability unknown (step budget exhausted)")
            }
        }
    }
}

/// Checks a full history. `step_budget` bounds the search per partition (number of DFS steps);
/// exceeding it gives Unknown, never a hang.
///
/// A DFS step is one iteration of the search loop (trying a call entry, descending into a
/// successor state, or backtracking) or one application of an unknown-outcome operation
/// while building a closure. The history may be in any order.
///
/// Partitions are checked in increasing key order; an illegal partition takes precedence over
/// one whose check ran out of budget.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    step_budget: u64,
) -> CheckResult {
    let mut partitions: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        partitions.entry(model.partition_key(&op.input)).or_default().push(index);
    }
    let mut unknown = None;
    for (key, ops) in partitions {
        match Search::new(model, history, key, &ops, step_budget).run() {
            Outcome::Linearizable => {}
            Outcome::Illegal(detail) => return CheckResult::Illegal { partition: key, detail },
            Outcome::OutOfBudget => {
                unknown.get_or_insert(key);
            }
        }
    }
    match unknown {
        Some(partition) => CheckResult::Unknown { partition },
        None => CheckResult::Ok,
    }
}

// ---------------------------------------------------------------------------------------------
// Register store model
// ---------------------------------------------------------------------------------------------

/// A request to the simulator's replicated register store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvInput {
    /// Read the value of `key`.
    Read {
        /// The key read.
        key: u64,
    },
    /// Overwrite `key` with `value`.
    Write {
        /// The key written.
        key: u64,
        /// The value written.
        value: u64,
    },
    /// Compare-and-swap: set `key` to `new` if its current value is `expected`
    /// (`None` = the key is absent).
    Cas {
        /// The key updated.
        key: u64,
        /// The value the key must currently hold (`None` = absent).
        expected: Option<u64>,
        /// The value stored if the comparison succeeds.
        new: u64,
    },
}

impl KvInput {
    /// The key this request addresses.
    pub fn key(&self) -> u64 {
        match self {
            Self::Read { key } | Self::Write { key, .. } | Self::Cas { key, .. } => *key,
        }
    }
}

/// A response from the simulator's replicated register store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOutput {
    /// The value read (`None` = the key is absent).
    Read(Option<u64>),
    /// The write was applied.
    Write,
    /// Whether the compare-and-swap swapped (`true`) or found a different value (`false`).
    Cas(bool),
}

/// Model of the replicated register store: one register per key, partitioned by key.
/// The per-partition state is the register's value (`None` = absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KvModel;

impl Model for KvModel {
    type State = Option<u64>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Option<u64> {
        None
    }

    fn step(&self, state: &Option<u64>, input: &KvInput, output: Option<&KvOutput>) -> Vec<Option<u64>> {
        match (input, output) {
            // A read never changes the state; with an unknown outcome it constrains nothing.
            (KvInput::Read { .. }, None) => vec![*state],
            (KvInput::Read { .. }, Some(KvOutput::Read(seen))) if seen == state => vec![*state],
            (KvInput::Write { value, .. }, None | Some(KvOutput::Write)) => vec![Some(*value)],
            // If an unknown CAS takes effect at a point where the comparison holds, it swaps;
            // otherwise it fails and leaves the state alone. ("Never took effect" is handled
            // by the checker.)
            (KvInput::Cas { expected, new, .. }, None) => {
                if state == expected {
                    vec![Some(*new)]
                } else {
                    vec![*state]
                }
            }
            (KvInput::Cas { expected, new, .. }, Some(KvOutput::Cas(true))) if state == expected => {
                vec![Some(*new)]
            }
            (KvInput::Cas { expected, .. }, Some(KvOutput::Cas(false))) if state != expected => {
                vec![*state]
            }
            // Wrong value observed, or a response of the wrong kind.
            _ => Vec::new(),
        }
    }

    fn partition_key(&self, input: &KvInput) -> u64 {
        input.key()
    }

    fn effect(&self, input: &KvInput) -> Effect {
        match input {
            KvInput::Read { .. } => Effect::ReadOnly,
            KvInput::Write { .. } => Effect::Blind,
            KvInput::Cas { .. } => Effect::Any,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------------------------

/// Sentinel for "no entry / no op".
const NIL: usize = usize::MAX;

/// At most this many ops of the linearizable prefix are printed in a diagnostic.
const MAX_PREFIX_SHOWN: usize = 32;

/// At most this many pending ops are printed in a diagnostic.
const MAX_PENDING_SHOWN: usize = 32;

enum Outcome {
    Linearizable,
    Illegal(String),
    OutOfBudget,
}

/// splitmix64 step: used to derive Zobrist keys and to finalize hashes.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    mix64(*state)
}

/// splitmix64 finalizer.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small, fast, deterministic hasher for model states.
#[derive(Default)]
struct StateHasher(u64);

impl StateHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Hasher for StateHasher {
    fn finish(&self) -> u64 {
        mix64(self.0)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // Tag with the length so that e.g. [0] and [0, 0] differ.
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// Hasher for memo keys, which are already well-mixed `u64`s.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn bit(bits: &[u64], index: usize) -> bool {
    bits[index / 64] & (1 << (index % 64)) != 0
}

/// `a ⊆ b` for bitsets of equal length.
fn is_subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

/// A set of applied unknown-outcome ops (bitset over their indices), shared between a
/// frame's member, its children's roots and the memo.
type Applied = Rc<[u64]>;

/// Memo of fully explored (and failed) search nodes, with dominance: a node
/// (known set, state, applied unknown set `L`) is dominated if some explored node with the
/// same known set and state had an applied set `⊆ L`.
struct Memo<S> {
    /// Key (hash of known set and state) → index of the first entry of its chain.
    heads: HashMap<u64, usize, BuildHasherDefault<IdentityHasher>>,
    entries: Vec<MemoEntry<S>>,
}

/// The explored nodes sharing one (known set, state). Their applied sets form an antichain
/// (`first` plus `more`).
struct MemoEntry<S> {
    known: Rc<[u64]>,
    state: S,
    first: Applied,
    more: Vec<Applied>,
    /// Next entry with the same key, or `NIL`.
    next: usize,
}

impl<S: Eq> Memo<S> {
    fn new() -> Self {
        Self { heads: HashMap::default(), entries: Vec::new() }
    }

    fn find(&self, key: u64, known: &[u64], state: &S) -> Option<usize> {
        let mut index = *self.heads.get(&key)?;
        while index != NIL {
            let entry = &self.entries[index];
            if entry.state == *state && *entry.known == *known {
                return Some(index);
            }
            index = entry.next;
        }
        None
    }

    fn dominated(&self, key: u64, known: &[u64], state: &S, applied: &[u64]) -> bool {
        self.find(key, known, state).is_some_and(|index| {
            let entry = &self.entries[index];
            is_subset(&entry.first, applied) || entry.more.iter().any(|set| is_subset(set, applied))
        })
    }

    /// Records a failed node; `share_known` supplies the known set if a new entry is needed.
    fn insert(
        &mut self,
        key: u64,
        linearized: &[u64],
        share_known: impl FnOnce() -> Rc<[u64]>,
        state: S,
        applied: Applied,
    ) {
        if let Some(index) = self.find(key, linearized, &state) {
            let entry = &mut self.entries[index];
            if is_subset(&entry.first, &applied) || entry.more.iter().any(|set| is_subset(set, &applied)) {
                return;
            }
            entry.more.retain(|set| !is_subset(&applied, set));
            if is_subset(&applied, &entry.first) {
                entry.first = applied;
            } else {
                entry.more.push(applied);
            }
            return;
        }
        let head = self.heads.entry(key).or_insert(NIL);
        self.entries.push(MemoEntry {
            known: share_known(),
            state,
            first: applied,
            more: Vec::new(),
            next: *head,
        });
        *head = self.entries.len() - 1;
    }
}

/// A state in the closure of a frame: reachable from the frame's root by applying unknown
/// operations only.
struct Member<S> {
    state: S,
    /// Unknown operations applied so far on this path (bitset over unknown op indices).
    applied: Applied,
    /// Index of the member this one was derived from, or `NIL` for the frame's root.
    parent: usize,
    /// The unknown operation applied to `parent` to reach this member.
    via: usize,
}

/// One level of the depth-first search: a fixed set of linearized known operations.
struct Frame<S> {
    /// Closure of states reachable with unknown operations (built lazily, breadth-first).
    members: Vec<Member<S>>,
    /// The member whose known successors are being explored.
    member: usize,
    /// The call entry currently being tried, or `NIL` before the first one.
    entry: usize,
    /// Successor states of (`member`, `entry`) not yet explored.
    alternatives: Vec<S>,
    /// The known op lifted for the child frame currently above this one, or `NIL`.
    child_op: usize,
    /// (unknown op, successor state) for every unknown op applied to the root member, in
    /// increasing op order. Applying op `u` to a later member and reaching one of these states
    /// is dominated by the root's successor, so it is skipped without scanning `members`.
    first_level: Vec<(usize, S)>,
}

impl<S> Frame<S> {
    /// A frame whose closure is just its root, reusing `spare`'s allocations if given.
    fn new(spare: Option<Self>, state: S, applied: Applied) -> Self {
        let mut frame = spare.unwrap_or_else(|| Self {
            members: Vec::new(),
            member: 0,
            entry: NIL,
            alternatives: Vec::new(),
            child_op: NIL,
            first_level: Vec::new(),
        });
        frame.members.clear();
        frame.members.push(Member { state, applied, parent: NIL, via: NIL });
        frame.member = 0;
        frame.entry = NIL;
        frame.alternatives.clear();
        frame.child_op = NIL;
        frame.first_level.clear();
        frame
    }
}

/// Diagnostic record of the deepest point reached by the search.
struct Best<S> {
    /// Number of known ops linearized at the deepest point.
    depth: usize,
    /// History indices of the linearized prefix (known and applied unknown ops, in order).
    path: Vec<usize>,
    /// `level_ends[j]`: length of `path` after level `j + 1` (frame `j + 1`).
    level_ends: Vec<usize>,
    /// Number of levels of `path` that still agree with the current search stack.
    shared: usize,
    /// Model state after the prefix.
    state: Option<S>,
    /// History indices of the known ops that were candidates after the prefix.
    pending: Vec<usize>,
}

/// Search over one partition of the history.
struct Search<'a, M: Model> {
    model: &'a M,
    history: &'a [Operation<M::Input, M::Output>],
    partition: u64,
    /// History index of each known-outcome op.
    known: Vec<usize>,
    /// History index of each unknown-outcome op, sorted by call time.
    unknown: Vec<usize>,
    /// Call time of each unknown-outcome op.
    unknown_call: Vec<u64>,
    /// For each unknown-outcome op with a [`Effect::Blind`] effect, its successor states
    /// (independent of the state it is applied to).
    blind: Vec<Option<Vec<M::State>>>,
    /// Number of unknown-outcome ops in the partition, including ignored read-only ones.
    unknown_total: usize,
    /// Doubly-linked circular list of events of known ops: entry `2k` is the call of known op
    /// `k`, entry `2k + 1` its return, entry `head` the sentinel.
    next: Vec<usize>,
    prev: Vec<usize>,
    time: Vec<u64>,
    head: usize,
    /// Zobrist key of each known op.
    zobrist: Vec<u64>,
    /// Bitset of linearized known ops.
    linearized: Vec<u64>,
    /// XOR of the Zobrist keys of the linearized known ops.
    linearized_hash: u64,
    /// Number of known ops not yet linearized.
    remaining: usize,
    memo: Memo<M::State>,
    steps: u64,
    budget: u64,
    best: Best<M::State>,
    /// Scratch bitset for candidate applied-unknown sets.
    scratch: Vec<u64>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(
        model: &'a M,
        history: &'a [Operation<M::Input, M::Output>],
        partition: u64,
        ops: &[usize],
        budget: u64,
    ) -> Self {
        let (mut unknown, known): (Vec<usize>, Vec<usize>) =
            ops.iter().partition(|&&i| history[i].is_unknown());
        let unknown_total = unknown.len();
        // An unknown-outcome op that cannot change the state is never needed.
        unknown.retain(|&i| model.effect(&history[i].input) != Effect::ReadOnly);
        unknown.sort_by_key(|&i| (history[i].call_us, i));
        let unknown_call = unknown.iter().map(|&i| history[i].call_us).collect();
        let init = model.init();
        let blind = unknown
            .iter()
            .map(|&i| {
                let op = &history[i];
                (model.effect(&op.input) == Effect::Blind)
                    .then(|| model.step(&init, &op.input, op.output.as_ref()))
            })
            .collect();

        // Events sorted by (time, calls before returns, op).
        let mut events = Vec::with_capacity(2 * known.len());
        for (k, &i) in known.iter().enumerate() {
            let op = &history[i];
            let ret = op.return_us.map_or(op.call_us, |r| r.max(op.call_us));
            events.push((op.call_us, 0, k));
            events.push((ret, 1, k));
        }
        events.sort_unstable();
        let head = 2 * known.len();
        let mut next = vec![NIL; head + 1];
        let mut prev = vec![NIL; head + 1];
        let mut time = vec![u64::MAX; head + 1];
        let mut last = head;
        for &(t, kind, k) in &events {
            let entry = 2 * k + kind;
            time[entry] = t;
            next[last] = entry;
            prev[entry] = last;
            last = entry;
        }
        next[last] = head;
        prev[head] = last;

        let mut seed = partition ^ 0x243f_6a88_85a3_08d3;
        let zobrist = (0..known.len()).map(|_| splitmix64(&mut seed)).collect();
        let remaining = known.len();
        Self {
            model,
            history,
            partition,
            linearized: vec![0; known.len().div_ceil(64)],
            known,
            unknown,
            unknown_call,
            blind,
            unknown_total,
            next,
            prev,
            time,
            head,
            zobrist,
            linearized_hash: 0,
            remaining,
            memo: Memo::new(),
            steps: 0,
            budget,
            scratch: Vec::new(),
            best: Best {
                depth: 0,
                path: Vec::new(),
                level_ends: Vec::new(),
                shared: 0,
                state: None,
                pending: Vec::new(),
            },
        }
    }

    /// Removes known op `k`'s call and return events from the list and marks it linearized.
    fn lift(&mut self, k: usize) {
        for entry in [2 * k, 2 * k + 1] {
            let (p, n) = (self.prev[entry], self.next[entry]);
            self.next[p] = n;
            self.prev[n] = p;
        }
        self.linearized[k / 64] |= 1 << (k % 64);
        self.linearized_hash ^= self.zobrist[k];
        self.remaining -= 1;
    }

    /// Undoes [`Self::lift`] (must be called in LIFO order).
    fn unlift(&mut self, k: usize) {
        for entry in [2 * k + 1, 2 * k] {
            let (p, n) = (self.prev[entry], self.next[entry]);
            self.next[p] = entry;
            self.prev[n] = entry;
        }
        self.linearized[k / 64] &= !(1 << (k % 64));
        self.linearized_hash ^= self.zobrist[k];
        self.remaining += 1;
    }

    /// The earliest return time among known ops not yet linearized (`u64::MAX` if none).
    /// An op can be linearized next iff its call is not after this time.
    fn frontier_time(&self) -> u64 {
        let mut entry = self.next[self.head];
        while entry != self.head && entry % 2 == 0 {
            entry = self.next[entry];
        }
        self.time[entry]
    }

    /// History indices of the known ops that may be linearized next.
    fn pending_known(&self) -> Vec<usize> {
        let mut pending = Vec::new();
        let mut entry = self.next[self.head];
        while entry != self.head && entry % 2 == 0 {
            pending.push(self.known[entry / 2]);
            entry = self.next[entry];
        }
        pending
    }

    fn memo_key(&self, state: &M::State) -> u64 {
        let mut hasher = StateHasher::default();
        state.hash(&mut hasher);
        self.linearized_hash ^ hasher.finish()
    }

    /// Whether (current known set, `state`, `applied`) is dominated by an explored node.
    fn dominated(&self, state: &M::State, applied: &[u64]) -> bool {
        self.memo.dominated(self.memo_key(state), &self.linearized, state, applied)
    }

    /// Records the members of an exhausted frame (at the current known set) as failed.
    fn remember(&mut self, members: impl Iterator<Item = Member<M::State>>) {
        let mut known: Option<Rc<[u64]>> = None;
        for member in members {
            let key = self.memo_key(&member.state);
            let linearized = &self.linearized;
            self.memo.insert(
                key,
                linearized,
                || Rc::clone(known.get_or_insert_with(|| Rc::from(&linearized[..]))),
                member.state,
                member.applied,
            );
        }
    }

    /// Appends to the frame's closure the non-dominated states reachable from member `index`
    /// by applying one available unknown operation. Returns `false` if the budget ran out.
    fn expand(&mut self, frame: &mut Frame<M::State>, index: usize) -> bool {
        if self.unknown.is_empty() {
            return true;
        }
        let limit = self.frontier_time();
        let mut cursor = 0;
        for u in 0..self.unknown.len() {
            if self.unknown_call[u] > limit {
                break;
            }
            if bit(&frame.members[index].applied, u) {
                continue;
            }
            let blind = self.blind[u].as_ref();
            if blind.is_some() && index > 0 {
                // Same successors as from the root member, whose applied set is a subset of
                // this member's: dominated.
                continue;
            }
            self.steps += 1;
            if self.steps > self.budget {
                return false;
            }
            let op = &self.history[self.unknown[u]];
            let stepped;
            let successors: &[M::State] = match blind {
                Some(states) => states,
                None => {
                    stepped = self.model.step(&frame.members[index].state, &op.input, op.output.as_ref());
                    &stepped
                }
            };
            while cursor < frame.first_level.len() && frame.first_level[cursor].0 < u {
                cursor += 1;
            }
            for state in successors {
                if index == 0 {
                    if blind.is_none() {
                        frame.first_level.push((u, state.clone()));
                    }
                } else if frame.first_level[cursor..]
                    .iter()
                    .take_while(|(v, _)| *v == u)
                    .any(|(_, s)| s == state)
                {
                    // Dominated by the same op applied to the root member (whose applied set
                    // is a subset of this member's).
                    continue;
                }
                // Applying an op without changing the state is dominated by not applying it.
                if *state == frame.members[index].state {
                    continue;
                }
                self.scratch.clear();
                self.scratch.extend_from_slice(&frame.members[index].applied);
                self.scratch[u / 64] |= 1 << (u % 64);
                let covered =
                    frame.members.iter().any(|m| m.state == *state && is_subset(&m.applied, &self.scratch));
                if covered || self.dominated(state, &self.scratch) {
                    continue;
                }
                frame.members.push(Member {
                    state: state.clone(),
                    applied: Rc::from(&self.scratch[..]),
                    parent: index,
                    via: u,
                });
            }
        }
        true
    }

    fn run(mut self) -> Outcome {
        if self.remaining == 0 {
            return Outcome::Linearizable;
        }
        let words = self.unknown.len().div_ceil(64);
        let root = Frame::new(None, self.model.init(), Rc::from(vec![0; words]));
        let mut frames = vec![root];
        let mut spare = Vec::new();
        self.record_best(&frames);
        loop {
            self.steps += 1;
            if self.steps > self.budget {
                return Outcome::OutOfBudget;
            }
            let top = frames.len() - 1;
            let frame = &mut frames[top];
            if frame.child_op != NIL {
                self.unlift(frame.child_op);
                frame.child_op = NIL;
            }

            // Descend into the next successor state of the current (member, call entry).
            if let Some(state) = frame.alternatives.pop() {
                let k = frame.entry / 2;
                self.lift(k);
                if self.remaining == 0 {
                    return Outcome::Linearizable;
                }
                let applied = Rc::clone(&frame.members[frame.member].applied);
                if self.dominated(&state, &applied) {
                    self.unlift(k);
                    continue;
                }
                frame.child_op = k;
                frames.push(Frame::new(spare.pop(), state, applied));
                if frames.len() - 1 > self.best.depth {
                    self.record_best(&frames);
                }
                continue;
            }

            // Try the next call entry that precedes the first return entry.
            let entry = if frame.entry == NIL { self.next[self.head] } else { self.next[frame.entry] };
            if entry != self.head && entry % 2 == 0 {
                frame.entry = entry;
                let op = &self.history[self.known[entry / 2]];
                frame.alternatives =
                    self.model.step(&frame.members[frame.member].state, &op.input, op.output.as_ref());
                continue;
            }

            // Known successors of this member exhausted: grow the closure, move on.
            let member = frame.member;
            if !self.expand(frame, member) {
                return Outcome::OutOfBudget;
            }
            frame.member += 1;
            frame.entry = NIL;
            if frame.member < frame.members.len() {
                continue;
            }

            // Frame exhausted without success.
            let Some(mut done) = frames.pop() else {
                unreachable!("the frame stack is non-empty inside the loop")
            };
            self.remember(done.members.drain(..));
            spare.push(done);
            if frames.is_empty() {
                return Outcome::Illegal(self.describe());
            }
            self.best.shared = self.best.shared.min(frames.len() - 1);
        }
    }

    /// Records the current stack as the deepest linearizable prefix found so far.
    fn record_best(&mut self, frames: &[Frame<M::State>]) {
        let depth = frames.len() - 1;
        let pending = self.pending_known();
        let best = &mut self.best;
        let keep = best.shared.min(best.level_ends.len());
        best.path.truncate(if keep == 0 { 0 } else { best.level_ends[keep - 1] });
        best.level_ends.truncate(keep);
        for parent in &frames[keep..depth] {
            let start = best.path.len();
            let mut m = parent.member;
            while parent.members[m].parent != NIL {
                best.path.push(self.unknown[parent.members[m].via]);
                m = parent.members[m].parent;
            }
            best.path[start..].reverse();
            best.path.push(self.known[parent.child_op]);
            best.level_ends.push(best.path.len());
        }
        best.shared = depth;
        best.depth = depth;
        best.state = Some(frames[depth].members[0].state.clone());
        best.pending = pending;
    }

    fn describe_op(&self, out: &mut String, index: usize) {
        let op = &self.history[index];
        let _ = write!(out, "\n  #{index} client {} [{}, ", op.client, op.call_us);
        match (op.return_us, &op.output) {
            (Some(ret), Some(output)) => {
                let _ = write!(out, "{ret}] {:?} -> {:?}", op.input, output);
            }
            (ret, _) => {
                let ret = ret.map_or_else(|| "?".to_owned(), |r| r.to_string());
                let _ = write!(out, "{ret}] {:?} -> ? (outcome unknown)", op.input);
            }
        }
    }

    fn describe(&self) -> String {
        let best = &self.best;
        let mut out = String::new();
        let _ = write!(
            out,
            "partition {}: history is not linearizable ({} ops with a known outcome, {} with an \
             unknown outcome).\nLongest linearizable prefix: {} of the known ops ({} ops in all \
             including applied unknown-outcome ops)",
            self.partition,
            self.known.len(),
            self.unknown_total,
            best.depth,
            best.path.len(),
        );
        let skipped = best.path.len().saturating_sub(MAX_PREFIX_SHOWN);
        if skipped > 0 {
            let _ = write!(out, "; the first {skipped} are omitted");
        }
        out.push(':');
        if best.path.is_empty() {
            out.push_str("\n  (empty)");
        }
        for &index in &best.path[skipped..] {
            self.describe_op(&mut out, index);
        }
        if let Some(state) = &best.state {
            let _ = write!(out, "\nModel state after that prefix: {state:?}");
        }
        let _ = write!(
            out,
            "\nNone of these {} pending ops can be linearized next (nor can any unknown-outcome \
             op help):",
            best.pending.len()
        );
        for &index in best.pending.iter().take(MAX_PENDING_SHOWN) {
            self.describe_op(&mut out, index);
        }
        if best.pending.len() > MAX_PENDING_SHOWN {
            let _ = write!(out, "\n  ... {} more", best.pending.len() - MAX_PENDING_SHOWN);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Op = Operation<KvInput, KvOutput>;

    const BUDGET: u64 = 10_000_000;

    fn read(client: u64, call: u64, ret: u64, key: u64, value: Option<u64>) -> Op {
        Op::completed(client, call, ret, KvInput::Read { key }, KvOutput::Read(value))
    }

    fn write(client: u64, call: u64, ret: u64, key: u64, value: u64) -> Op {
        Op::completed(client, call, ret, KvInput::Write { key, value }, KvOutput::Write)
    }

    fn cas(client: u64, call: u64, ret: u64, key: u64, expected: Option<u64>, new: u64, ok: bool) -> Op {
        Op::completed(client, call, ret, KvInput::Cas { key, expected, new }, KvOutput::Cas(ok))
    }

    fn write_unknown(client: u64, call: u64, key: u64, value: u64) -> Op {
        Op::unknown(client, call, KvInput::Write { key, value })
    }

    fn cas_unknown(client: u64, call: u64, key: u64, expected: Option<u64>, new: u64) -> Op {
        Op::unknown(client, call, KvInput::Cas { key, expected, new })
    }

    fn check_kv(history: &[Op]) -> CheckResult {
        check(&KvModel, history, BUDGET)
    }

    #[track_caller]
    fn assert_illegal(result: &CheckResult, key: u64) {
        match result {
            CheckResult::Illegal { partition, detail } => {
                assert_eq!(*partition, key, "wrong partition: {detail}");
                assert!(detail.contains(&format!("partition {key}")), "{detail}");
            }
            other => panic!("expected Illegal on partition {key}, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_ok() {
        assert_eq!(check_kv(&[]), CheckResult::Ok);
    }

    #[test]
    fn sequential_history_is_ok() {
        let h = [
            read(1, 0, 10, 0, None),
            write(1, 20, 30, 0, 1),
            read(2, 40, 50, 0, Some(1)),
            cas(1, 60, 70, 0, Some(1), 2, true),
            cas(2, 80, 90, 0, Some(1), 3, false),
            read(1, 100, 110, 0, Some(2)),
            write(2, 120, 130, 0, 4),
            read(2, 140, 150, 0, Some(4)),
        ];
        assert_eq!(check_kv(&h), CheckResult::Ok);
    }

    #[test]
    fn concurrent_write_and_read_either_order_is_ok() {
        // The read overlaps the write: it may see the old or the new value.
        let before = [write(1, 0, 100, 0, 1), read(2, 10, 50, 0, None)];
        let after = [write(1, 0, 100, 0, 1), read(2, 10, 50, 0, Some(1))];
        assert_eq!(check_kv(&before), CheckResult::Ok);
        assert_eq!(check_kv(&after), CheckResult::Ok);
        // Same with the read invoked first.
        let read_first = [read(2, 0, 50, 0, Some(1)), write(1, 10, 100, 0, 1)];
        assert_eq!(check_kv(&read_first), CheckResult::Ok);
    }

    #[test]
    fn stale_read_after_completed_write_is_illegal() {
        let h = [write(1, 0, 10, 0, 1), write(1, 20, 30, 0, 2), read(2, 40, 50, 0, Some(1))];
        assert_illegal(&check_kv(&h), 0);
    }

    #[test]
    fn read_of_initial_value_after_completed_write_is_illegal() {
        let h = [write(1, 0, 10, 7, 1), read(2, 20, 30, 7, None)];
        assert_illegal(&check_kv(&h), 7);
    }

    #[test]
    fn reads_contradicting_real_time_order_are_illegal() {
        // W(2) is still in flight while both reads run, but R1 (which precedes R2 in real
        // time) already saw 2 and R2 then sees the older 1.
        let h = [
            write(1, 0, 10, 0, 1),
            write(1, 20, 100, 0, 2),
            read(2, 30, 40, 0, Some(2)),
            read(3, 50, 60, 0, Some(1)),
        ];
        assert_illegal(&check_kv(&h), 0);
        // The same reads overlapping each other are fine.
        let overlapping = [
            write(1, 0, 10, 0, 1),
            write(1, 20, 100, 0, 2),
            read(2, 30, 60, 0, Some(2)),
            read(3, 50, 70, 0, Some(1)),
        ];
        assert_eq!(check_kv(&overlapping), CheckResult::Ok);
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        // The read is invoked at exactly the write's return time: both may linearize at t=10.
        let h = [write(1, 0, 10, 0, 1), read(2, 10, 20, 0, None)];
        assert_eq!(check_kv(&h), CheckResult::Ok);
        let h = [write(1, 0, 10, 0, 1), read(2, 11, 20, 0, None)];
        assert_illegal(&check_kv(&h), 0);
    }

    #[test]
    fn impossible_cas_success_is_illegal() {
        let h = [write(1, 0, 10, 0, 1), cas(2, 20, 30, 0, Some(2), 3, true)];
        assert_illegal(&check_kv(&h), 0);
        // A CAS on an absent key expecting a value.
        let h = [cas(2, 20, 30, 0, Some(0), 3, true)];
        assert_illegal(&check_kv(&h), 0);
        // A failed CAS whose comparison must have held.
        let h = [write(1, 0, 10, 0, 1), cas(2, 20, 30, 0, Some(1), 3, false)];
        assert_illegal(&check_kv(&h), 0);
    }

    #[test]
    fn concurrent_cas_both_succeeding_from_same_value_is_illegal() {
        let h = [
            write(1, 0, 10, 0, 1),
            cas(2, 20, 100, 0, Some(1), 2, true),
            cas(3, 30, 110, 0, Some(1), 3, true),
        ];
        assert_illegal(&check_kv(&h), 0);
    }

    #[test]
    fn cas_success_failure_interleavings_are_ok() {
        // Two racing CASes from 1: exactly one wins, the read agrees with the winner.
        for (first_wins, seen) in [(true, 2), (false, 3)] {
            let h = [
                write(1, 0, 10, 0, 1),
                cas(2, 20, 100, 0, Some(1), 2, first_wins),
                cas(3, 30, 110, 0, Some(1), 3, !first_wins),
                read(4, 120, 130, 0, Some(seen)),
            ];
            assert_eq!(check_kv(&h), CheckResult::Ok, "first_wins={first_wins}");
        }
        // A chain of concurrent CASes that all succeed: 1 -> 2 -> 3, invoked in reverse order.
        let h = [
            write(1, 0, 10, 0, 1),
            cas(2, 20, 100, 0, Some(2), 3, true),
            cas(3, 30, 110, 0, Some(1), 2, true),
            read(4, 120, 130, 0, Some(3)),
        ];
        assert_eq!(check_kv(&h), CheckResult::Ok);
        // A failed CAS concurrent with the write that would have made it succeed.
        let h = [cas(2, 0, 100, 0, Some(1), 5, false), write(1, 10, 20, 0, 1), read(3, 30, 40, 0, Some(1))];
        assert_eq!(check_kv(&h), CheckResult::Ok);
        // But if the CAS certainly ran after the write, failing is illegal.
        let h =
            [write(1, 10, 20, 0, 1), cas(2, 30, 100, 0, Some(1), 5, false), read(3, 110, 120, 0, Some(1))];
        assert_illegal(&check_kv(&h), 0);
    }

    #[test]
    fn unknown_write_later_observed_is_ok() {
        let h = [
            write(1, 0, 10, 0, 1),
            write_unknown(2, 20, 0, 2),
            read(3, 30, 40, 0, Some(1)),
            read(3, 1_000, 1_010, 0, Some(2)),
            read(4, 2_000, 2_010, 0, Some(2)),
        ];
        assert_eq!(check_kv(&h), CheckResult::Ok);
    }

    #[test]
    fn unknown_write_never_observed_is_ok() {
        let h = [
            write(1, 0, 10, 0, 1),
            write_unknown(2, 20, 0, 2),
            read(3, 30, 40, 0, Some(1)),
            read(3, 1_000, 1_010, 0, Some(1)),
            write(1, 1_100, 1_110, 0, 3),
            read(4, 2_000, 2_010, 0, Some(3)),
        ];
        assert_eq!(check_kv(&h), CheckResult::Ok);
        // An unknown op is allowed to be the only thing in a partition, or to be left
        // pending with nothing after it.
        assert_eq!(check_kv(&[write_unknown(2, 20, 9, 2)]), CheckResult::Ok);
    }

    #[test]
    fn unknown_write_taking_effect_late_is_ok() {
        // Applied after an intervening completed write: the final value comes from it.
        let h = [
            write_unknown(2, 0, 0, 2),
            write(1, 10, 20, 0, 1),
            read(3, 30, 40, 0, Some(1)),
            read(3, 50, 60, 0, Some(2)),
        ];
        assert_eq!(check_kv(&h), CheckResult::Ok);
    }

    #[test]
    fn unknown_write_called_after_read_returned_cannot_explain_it() {
        let h = [write(1, 0, 10, 0, 1), read(3, 30, 40, 0, Some(2)), write_unknown(2, 50, 0, 2)];
        let result = check_kv(&h);
        assert_illegal(&result, 0);
        let CheckResult::Illegal { detail, .. } = result else { unreachable!() };
        assert!(detail.contains("Read(Some(2))"), "{detail}");
    }

    #[test]
    fn unknown_write_cannot_be_undone() {
        let h = [write_unknown(2, 0, 0, 2), read(3, 30, 40, 0, Some(2)), read(3, 50, 60, 0, None)];
        assert_illegal(&check_kv(&h), 0);
    }

    #[test]
    fn unknown_cas_semantics() {
        // Took effect and was observed.
        let h = [write(1, 0, 10, 0, 1), cas_unknown(2, 20, 0, Some(1), 5), read(3, 30, 40, 0, Some(5))];
        assert_eq!(check_kv(&h), CheckResult::Ok);
        // Could only have taken effect if the comparison held: it never did.
        let h = [write(1, 0, 10, 0, 1), cas_unknown(2, 20, 0, Some(7), 5), read(3, 30, 40, 0, Some(5))];
        assert_illegal(&check_kv(&h), 0);
        // Took effect late, after a completed write made the comparison true.
        let h = [
            cas_unknown(2, 0, 0, Some(1), 5),
            write(1, 10, 20, 0, 1),
            read(3, 30, 40, 0, Some(1)),
            read(3, 50, 60, 0, Some(5)),
        ];
        assert_eq!(check_kv(&h), CheckResult::Ok);
    }

    #[test]
    fn chained_unknown_ops_are_ok() {
        // Needs two unknown ops applied back to back, in the order opposite to their calls.
        let h = [
            write(1, 0, 10, 0, 1),
            cas_unknown(2, 20, 0, Some(2), 3),
            write_unknown(3, 25, 0, 2),
            read(4, 100, 110, 0, Some(3)),
        ];
        assert_eq!(check_kv(&h), CheckResult::Ok);
    }

    #[test]
    fn memo_keeps_track_of_unused_unknown_ops() {
        // Found by differential testing: the search reaches (known ops {W2, W1, CAS 2->1},
        // state 1) twice, first with the unknown W(2) already spent and then with it still
        // available. Only the second can continue, so the memo must not conflate them.
        let h = [
            write(0, 0, 2, 0, 2),
            write_unknown(1, 2, 0, 2),
            write(2, 0, 8, 0, 1),
            cas(4, 2, 2, 0, Some(2), 1, true),
            cas(5, 14, 17, 0, Some(1), 2, false),
            cas(6, 16, 25, 0, Some(1), 1, true),
        ];
        assert_eq!(check_kv(&h), CheckResult::Ok);
    }

    #[test]
    fn multi_key_history_reports_the_bad_partition() {
        let h = [
            write(1, 0, 10, 1, 10),
            write(2, 0, 10, 2, 20),
            write(3, 0, 10, 3, 30),
            read(1, 20, 30, 1, Some(10)),
            read(2, 20, 30, 2, None), // stale: key 2 was written at [0, 10]
            read(3, 20, 30, 3, Some(30)),
            write_unknown(4, 40, 3, 31),
            read(1, 50, 60, 3, Some(31)),
        ];
        let result = check_kv(&h);
        assert_illegal(&result, 2);
        let CheckResult::Illegal { detail, .. } = result else { unreachable!() };
        assert!(detail.contains("Read { key: 2 }"), "{detail}");
        assert!(detail.contains("Write { key: 2, value: 20 }"), "{detail}");
    }

    #[test]
    fn budget_exhaustion_returns_unknown() {
        // 24 concurrent writes followed by a read of a value nobody wrote: proving this
        // illegal means exploring every subset of the writes.
        let mut h: Vec<Op> = (0..24).map(|i| write(i, i, 1_000, 5, i + 1)).collect();
        h.push(read(99, 2_000, 2_010, 5, Some(1_000)));
        assert_eq!(check(&KvModel, &h, 10_000), CheckResult::Unknown { partition: 5 });
        // A budget of zero is exhausted immediately by anything that needs searching...
        assert_eq!(check(&KvModel, &h[..1], 0), CheckResult::Unknown { partition: 5 });
        // ...but an illegal partition is still reported ahead of an undecided one.
        let mut both = h.clone();
        both.push(write(1, 0, 10, 9, 1));
        both.push(read(1, 20, 30, 9, Some(2)));
        let result = check(&KvModel, &both, 10_000);
        assert_illegal(&result, 9);
    }

    // --- randomized histories ---------------------------------------------------------------

    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            splitmix64(&mut self.0)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Generates a history from a real sequential execution: op `i` takes effect at a strictly
    /// increasing instant inside its [call, return] interval. Unknown-outcome ops take
    /// effect or not at random. Values written are unique.
    fn random_history(seed: u64, ops: usize, keys: u64, width: u64, unknown_pct: u64) -> Vec<Op> {
        let mut rng = SplitMix(seed);
        let mut values = vec![None; keys as usize];
        let mut next_value = 1;
        let mut t = 1_000;
        let mut history = Vec::with_capacity(ops);
        for _ in 0..ops {
            t += 1 + rng.below(8);
            let key = rng.below(keys);
            let current: Option<u64> = values[key as usize];
            let client = rng.below(16);
            let (input, output, effect) = match rng.below(10) {
                0..=4 => (KvInput::Read { key }, KvOutput::Read(current), current),
                5..=7 => {
                    next_value += 1;
                    let value = next_value;
                    (KvInput::Write { key, value }, KvOutput::Write, Some(value))
                }
                _ => {
                    next_value += 1;
                    let new = next_value;
                    let expected = match rng.below(3) {
                        0 => current,
                        1 => None,
                        _ => Some(rng.below(next_value)),
                    };
                    let ok = expected == current;
                    let effect = if ok { Some(new) } else { current };
                    (KvInput::Cas { key, expected, new }, KvOutput::Cas(ok), effect)
                }
            };
            let call = t - rng.below(width);
            if rng.below(100) < unknown_pct {
                if rng.below(2) == 0 {
                    values[key as usize] = effect;
                }
                history.push(Op::unknown(client, call, input));
            } else {
                values[key as usize] = effect;
                let ret = t + rng.below(width);
                history.push(Op::completed(client, call, ret, input, output));
            }
        }
        // The checker must not depend on the order of the history.
        for i in (1..history.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            history.swap(i, j);
        }
        history
    }

    fn known_reads(history: &[Op]) -> Vec<usize> {
        (0..history.len())
            .filter(|&i| matches!(history[i].input, KvInput::Read { .. }) && !history[i].is_unknown())
            .collect()
    }

    /// Corrupts a random known read to return a value that was never written.
    fn corrupt_never_written(history: &mut [Op], rng: &mut SplitMix) -> Option<u64> {
        let reads = known_reads(history);
        let &victim = reads.get(rng.below(reads.len().max(1) as u64) as usize)?;
        history[victim].output = Some(KvOutput::Read(Some(u64::MAX)));
        Some(history[victim].input.key())
    }

    /// Corrupts a random known read to return a value written only by an op invoked after
    /// the read returned (a read from the future).
    fn corrupt_future_read(history: &mut [Op], rng: &mut SplitMix) -> Option<u64> {
        let reads = known_reads(history);
        for _ in 0..100 {
            let &victim = reads.get(rng.below(reads.len().max(1) as u64) as usize)?;
            let (key, ret) = (history[victim].input.key(), history[victim].return_us?);
            let future = history.iter().find_map(|op| match op.input {
                KvInput::Write { key: k, value } | KvInput::Cas { key: k, new: value, .. }
                    if k == key && op.call_us > ret =>
                {
                    Some(value)
                }
                _ => None,
            });
            if let Some(value) = future {
                history[victim].output = Some(KvOutput::Read(Some(value)));
                return Some(key);
            }
        }
        None
    }

    #[test]
    fn randomized_histories_are_checked_correctly() {
        let mut illegal_checked = 0;
        for seed in 0..200u64 {
            let keys = 1 + seed % 4;
            let unknown_pct = [0, 5, 15][(seed % 3) as usize];
            let width = 10 + seed % 30;
            let mut history = random_history(seed, 150, keys, width, unknown_pct);
            assert_eq!(
                check_kv(&history),
                CheckResult::Ok,
                "seed {seed}: a history generated from a sequential execution must be accepted"
            );
            let mut rng = SplitMix(seed ^ 0xdead_beef);
            let mut future = history.clone();
            if let Some(key) = corrupt_never_written(&mut history, &mut rng) {
                let result = check_kv(&history);
                assert!(
                    matches!(&result, CheckResult::Illegal { partition, .. } if *partition == key),
                    "seed {seed}: corrupted read on key {key} not detected: {result:?}"
                );
                illegal_checked += 1;
            }
            if let Some(key) = corrupt_future_read(&mut future, &mut rng) {
                let result = check_kv(&future);
                assert!(
                    matches!(&result, CheckResult::Illegal { partition, .. } if *partition == key),
                    "seed {seed}: future read on key {key} not detected: {result:?}"
                );
                illegal_checked += 1;
            }
        }
        assert!(illegal_checked > 300, "only {illegal_checked} corruptions checked");
    }

    /// Exhaustive reference checker for tiny histories: tries every order of every subset of
    /// the ops that contains all known-outcome ops and respects real-time order.
    fn brute_force(history: &[Op]) -> bool {
        fn search(ops: &[&Op], used: &mut [bool], state: Option<u64>) -> bool {
            if ops.iter().zip(used.iter()).all(|(op, &u)| u || op.is_unknown()) {
                return true;
            }
            for i in 0..ops.len() {
                let blocked =
                    (0..ops.len()).any(|j| !used[j] && ops[j].return_us.is_some_and(|r| r < ops[i].call_us));
                if used[i] || blocked {
                    continue;
                }
                for next in KvModel.step(&state, &ops[i].input, ops[i].output.as_ref()) {
                    used[i] = true;
                    let found = search(ops, used, next);
                    used[i] = false;
                    if found {
                        return true;
                    }
                }
            }
            false
        }
        let mut keys: Vec<u64> = history.iter().map(|op| op.input.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.iter().all(|&key| {
            let ops: Vec<&Op> = history.iter().filter(|op| op.input.key() == key).collect();
            search(&ops, &mut vec![false; ops.len()], None)
        })
    }

    fn tiny_random_history(rng: &mut SplitMix, max_ops: u64, keys: u64, unknown_pct: u64) -> Vec<Op> {
        let small = |rng: &mut SplitMix| match rng.below(4) {
            0 => None,
            v => Some(v),
        };
        let n = 1 + rng.below(max_ops);
        (0..n)
            .map(|client| {
                let key = rng.below(keys);
                let (input, output) = match rng.below(3) {
                    0 => (KvInput::Read { key }, KvOutput::Read(small(rng))),
                    1 => {
                        let value = 1 + rng.below(3);
                        (KvInput::Write { key, value }, KvOutput::Write)
                    }
                    _ => {
                        let expected = small(rng);
                        let new = 1 + rng.below(3);
                        let ok = rng.below(2) == 0;
                        (KvInput::Cas { key, expected, new }, KvOutput::Cas(ok))
                    }
                };
                let call = rng.below(20);
                if rng.below(100) < unknown_pct {
                    Op::unknown(client, call, input)
                } else {
                    Op::completed(client, call, call + rng.below(10), input, output)
                }
            })
            .collect()
    }

    #[test]
    fn agrees_with_brute_force_on_tiny_random_histories() {
        let mut rng = SplitMix(42);
        let (mut ok, mut illegal) = (0, 0);
        for round in 0..60_000 {
            let history = if round % 2 == 0 {
                tiny_random_history(&mut rng, 7, 2, 20)
            } else {
                // One key, many unknown-outcome ops: exercises the closure and the memo.
                tiny_random_history(&mut rng, 9, 1, 40)
            };
            let expected = brute_force(&history);
            let result = check_kv(&history);
            assert_eq!(result.is_ok(), expected, "{history:?}\n{result}");
            assert!(result.is_ok() || result.is_illegal());
            if expected {
                ok += 1;
            } else {
                illegal += 1;
            }
        }
        assert!(ok > 5_000 && illegal > 5_000, "ok={ok} illegal={illegal}");
    }

    #[test]
    fn large_history_is_checked_quickly() {
        // Simulator-sized: a few thousand ops over 8 keys, ~10 ops in flight at a time.
        for seed in 0..4u64 {
            let mut history = random_history(1_000 + seed, 3_000, 8, 40, 3);
            assert_eq!(check_kv(&history), CheckResult::Ok, "seed {seed}");
            let mut rng = SplitMix(seed);
            let key = corrupt_never_written(&mut history, &mut rng).expect("has reads");
            assert_illegal(&check_kv(&history), key);
        }
    }
}
