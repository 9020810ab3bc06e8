//! [`Concord`]: the coordination state machine, every primitive behind one
//! [`StateMachine`].

use super::api::{Command, Error, Event, Op, Outcome, Query, Reply};
use super::election::LeaderInfo;
use super::fx::{Caller, Fx, Kind, Step, Timer};
use super::limits::{Limits, LimitsError};
use super::primitives::{Primitives, ReadCx};
use super::session::{Cached, Lookup, SessionOp, Sessions};
use super::vocab::{Fence, SessionEnd, SessionId, SessionRef};
use crate::raft::{ApplyContext, LogIndex, RestoreError, StateMachine};
use crate::time::Instant;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Where a queued request waits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct WaitRef {
    kind: Kind,
    name: String,
    deadline: Option<Instant>,
}

/// Everything replicated: what a snapshot holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// The log clock as of the last applied entry.
    now: Instant,
    /// The last applied index.
    index: LogIndex,
    sessions: Sessions,
    /// Deadlines: sessions, waiter timeouts, key TTLs.
    timers: BTreeSet<(Instant, Timer)>,
    /// Queued requests by (session, seq).
    waits: BTreeMap<Caller, WaitRef>,
    /// Last, so that the snapshot encodes each primitive where it did when they were
    /// fields of this struct.
    primitives: Primitives,
}

/// The coordination state machine. Deterministic: replicas that apply the same entries
/// with the same [`Limits`] hold the same state and produce the same outputs and events.
#[derive(Clone, Debug)]
pub struct Concord {
    limits: Limits,
    state: State,
    events: VecDeque<Event>,
    #[cfg(feature = "bug-injection")]
    bugs: super::limits::MachineBugs,
}

impl Concord {
    /// An empty machine with these limits (the same on every replica), once they pass
    /// [`Limits::validate`].
    pub fn new(limits: Limits) -> Result<Self, LimitsError> {
        limits.validate()?;
        Ok(Self {
            limits,
            state: State::default(),
            events: VecDeque::new(),
            #[cfg(feature = "bug-injection")]
            bugs: super::limits::MachineBugs::default(),
        })
    }

    /// Breaks the rules in `bugs` from now on (checker tests only).
    #[cfg(feature = "bug-injection")]
    pub fn inject(&mut self, bugs: super::limits::MachineBugs) {
        self.bugs = bugs;
    }

    /// The limits it runs with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The log clock as of the last applied entry.
    pub fn now(&self) -> Instant {
        self.state.now
    }

    /// The last index applied (or restored).
    pub fn applied_index(&self) -> LogIndex {
        self.state.index
    }

    /// How queued command `seq` of `session` stands, from the replicated reply cache: for
    /// a replica that skipped the entry completing it (it installed a snapshot instead)
    /// and must still tell the waiting client.
    pub fn queued_outcome(&self, session: SessionId, seq: u64) -> QueuedOutcome {
        match self.state.sessions.map.get(&session) {
            None => QueuedOutcome::SessionGone,
            Some(s) => match s.completed(seq) {
                Some((result, index)) => QueuedOutcome::Completed(result, index),
                None => QueuedOutcome::NotCompleted,
            },
        }
    }

    /// Whether `session` is open.
    pub fn has_session(&self, session: SessionId) -> bool {
        self.state.sessions.map.contains_key(&session)
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.state.sessions.map.len()
    }

    /// Whether `session` is a member of some signal queue group.
    pub fn in_queue_group(&self, session: SessionId) -> bool {
        self.state.primitives.signals.in_queue_group(session)
    }

    /// The open sessions.
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.state.sessions.map.keys().copied()
    }

    /// The key-value store's revision.
    pub fn kv_revision(&self) -> u64 {
        self.state.primitives.kv.revision()
    }

    /// Answers a decoded query.
    pub fn read(&self, q: &Query) -> Result<Reply, Error> {
        let s = &self.state;
        let cx = ReadCx { session: q.session, now: s.now, limits: &self.limits };
        match s.primitives.query(&cx, &q.op) {
            Some(answer) => answer,
            None => Ok(Reply::Sessions(s.sessions.list(s.now, self.limits.list_max))),
        }
    }

    /// Applies a decoded command at `ctx`.
    pub fn execute(&mut self, ctx: ApplyContext, cmd: Command) -> Outcome {
        self.advance(ctx);
        let mut fx = Fx::new(ctx.index, self.state.now, &self.limits);
        #[cfg(feature = "bug-injection")]
        {
            fx.bugs = self.bugs;
        }
        let outcome = Self::execute_in(&mut self.state, &mut fx, cmd);
        let fx = FxOut::from(fx);
        self.settle(fx);
        outcome
    }

    fn execute_in(state: &mut State, fx: &mut Fx<'_>, cmd: Command) -> Outcome {
        let caller = match cmd.session {
            None => None,
            Some(r) => match Self::admit(state, fx, &r) {
                Ok(Some(cached)) => return cached,
                Ok(None) => Some(Caller { session: r.id, seq: r.seq }),
                Err(e) => return Outcome::Done(Err(e)),
            },
        };
        fx.caller = caller;
        let step = Self::dispatch(state, fx, cmd.op);
        let outcome = match step {
            Step::Done(r) => Outcome::Done(r),
            Step::Wait { deadline, kind, name } => {
                // A waiting operation checked `fx.waiter()`, so the caller is known.
                let Some(caller) = caller else { return Outcome::Done(Err(Error::SessionRequired)) };
                if let Some(d) = deadline {
                    state.timers.insert((d, Timer::Wait(caller)));
                }
                state.waits.insert(caller, WaitRef { kind, name, deadline });
                Outcome::Pending
            }
        };
        if let Some(c) = caller {
            if let Some(s) = state.sessions.map.get_mut(&c.session) {
                let cached = match &outcome {
                    Outcome::Pending => Cached::Pending,
                    Outcome::Done(r) => Cached::Done(r.clone(), fx.index),
                    // `admit` answered a retry before this point.
                    Outcome::Replayed { .. } => return outcome,
                };
                s.record(c.seq, cached, fx.limits.session_replies_max);
            }
        }
        outcome
    }

    /// Checks the session of a command, refreshes its lease, and consults its reply
    /// cache: `Some` is the cached outcome of a retry.
    fn admit(state: &mut State, fx: &Fx<'_>, r: &SessionRef) -> Result<Option<Outcome>, Error> {
        let s = state.sessions.map.get_mut(&r.id).ok_or(Error::SessionLost(r.id))?;
        // The session's client is there: its queue groups count on it again.
        state.primitives.signals.present(r.id);
        let deadline = fx.time.add_us(s.ttl_us);
        if deadline > s.deadline {
            state.timers.remove(&(s.deadline, Timer::Session(r.id)));
            s.deadline = deadline;
            state.timers.insert((deadline, Timer::Session(r.id)));
        }
        let lookup = s.lookup(r)?;
        #[cfg(feature = "bug-injection")]
        let lookup = if fx.bugs.reply_cache_ignored { Lookup::New } else { lookup };
        Ok(match lookup {
            Lookup::New => None,
            Lookup::Cached(Cached::Pending) => Some(Outcome::Pending),
            Lookup::Cached(Cached::Done(result, index)) => {
                Some(Outcome::Replayed { result, index, queued: false })
            }
            Lookup::Cached(Cached::Completed(result, index)) => {
                Some(Outcome::Replayed { result, index, queued: true })
            }
        })
    }

    fn dispatch(state: &mut State, fx: &mut Fx<'_>, op: Op) -> Step {
        match state.primitives.apply(fx, op) {
            Ok(step) => step,
            Err(op) => Self::session_op(state, fx, op),
        }
    }

    fn session_op(state: &mut State, fx: &mut Fx<'_>, op: SessionOp) -> Step {
        match op {
            SessionOp::Open { ttl_ms } => match state.sessions.open(fx.limits, fx.index, fx.time, ttl_ms) {
                Ok((id, deadline)) => {
                    state.timers.insert((deadline, Timer::Session(id)));
                    Step::Done(Ok(Reply::Session { id, ttl_ms }))
                }
                Err(e) => e.into(),
            },
            // `admit` refreshed the lease already.
            SessionOp::KeepAlive => match fx.session() {
                Ok(_) => Step::Done(Ok(Reply::Unit)),
                Err(e) => e.into(),
            },
            SessionOp::Close => match fx.session() {
                Ok(id) => {
                    end_session(state, fx, id, SessionEnd::Closed);
                    Step::Done(Ok(Reply::Unit))
                }
                Err(e) => e.into(),
            },
        }
    }

    /// Moves the clock to `ctx.time` and fires every timer due by then.
    fn advance(&mut self, ctx: ApplyContext) {
        self.state.now = self.state.now.max(ctx.time);
        self.state.index = ctx.index;
        let now = self.state.now;
        while let Some((t, timer)) = self.state.timers.first().filter(|(t, _)| *t <= now).cloned() {
            self.state.timers.remove(&(t, timer.clone()));
            let mut fx = Fx::new(ctx.index, now, &self.limits);
            #[cfg(feature = "bug-injection")]
            {
                fx.bugs = self.bugs;
            }
            let state = &mut self.state;
            match timer {
                Timer::Session(id) => end_session(state, &mut fx, id, SessionEnd::Expired),
                Timer::Wait(caller) => {
                    if let Some(w) = state.waits.get(&caller).cloned() {
                        cancel_wait(state, &mut fx, caller, &w);
                        fx.complete(caller, Err(Error::Timeout));
                    }
                }
                Timer::Key(key) => state.primitives.kv.expire(&mut fx, &key),
            }
            let out = FxOut::from(fx);
            self.settle(out);
        }
    }

    /// Applies what an entry produced: completions update the reply caches and become
    /// events; timers are added and removed.
    fn settle(&mut self, fx: FxOut) {
        let state = &mut self.state;
        for t in fx.timers_removed {
            state.timers.remove(&t);
        }
        for t in fx.timers_added {
            state.timers.insert(t);
        }
        for (caller, result) in fx.completions {
            if let Some(w) = state.waits.remove(&caller) {
                if let Some(d) = w.deadline {
                    state.timers.remove(&(d, Timer::Wait(caller)));
                }
            }
            if let Some(s) = state.sessions.map.get_mut(&caller.session) {
                s.complete(caller.seq, result.clone(), fx.index);
            }
            self.events.push_back(Event::Completed {
                session: caller.session,
                seq: caller.seq,
                result,
                index: fx.index,
            });
        }
        for event in fx.events {
            self.events.push_back(event);
        }
    }

    /// A view of the primitives' state, for status pages and invariant checks.
    pub fn view(&self) -> View {
        self.view_limited(usize::MAX)
    }

    /// The same view with at most `max` items per kind (in name order), so that a status
    /// page stays small however many primitives exist; [`View::counts`] has the totals.
    pub fn view_limited(&self, max: usize) -> View {
        let s = &self.state.primitives;
        let counts = ViewCounts {
            locks: s.locks.len(),
            rwlocks: s.rwlocks.len(),
            semaphores: s.semaphores.len(),
            latches: s.latches.len(),
            barriers: s.barriers.len(),
            elections: s.elections.len(),
            kv_keys: s.kv.len(),
            kv_bytes: s.kv.bytes(),
        };
        View {
            counts,
            locks: s.locks.all().take(max).collect(),
            rwlocks: s
                .rwlocks
                .holders()
                .take(max)
                .map(|(n, writer, readers)| RwLockView { name: n.into(), writer, readers })
                .collect(),
            semaphores: s
                .semaphores
                .summary()
                .take(max)
                .map(|(n, available, held, sessionless)| SemaphoreView {
                    name: n.into(),
                    available,
                    held,
                    sessionless,
                })
                .collect(),
            latches: s
                .latches
                .summary()
                .take(max)
                .map(|(n, count, waiters)| (n.into(), count, waiters))
                .collect(),
            barriers: s
                .barriers
                .summary()
                .take(max)
                .map(|(n, generation, parties, arrived)| BarrierView {
                    name: n.into(),
                    generation,
                    parties,
                    arrived,
                })
                .collect(),
            elections: s.elections.leaders().take(max).map(|(n, l)| (n.into(), l.cloned())).collect(),
        }
    }

    /// For invariant checks: every session that owns something (locks, permits, waiters,
    /// candidacies, subscriptions).
    pub fn owning_sessions(&self) -> BTreeSet<SessionId> {
        let s = &self.state;
        let mut owners: BTreeSet<SessionId> = s.waits.keys().map(|c| c.session).collect();
        s.primitives.owners(&mut owners);
        owners
    }
}

/// How a queued command stands: see [`Concord::queued_outcome`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueuedOutcome {
    /// Its session has ended (and with it the wait).
    SessionGone,
    /// Completed by the entry at this index.
    Completed(Result<Reply, Error>, LogIndex),
    /// Still queued, or not in the cache.
    NotCompleted,
}

/// The primitives' state at a glance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct View {
    /// How many of each kind exist (the lists below may be cut short).
    pub counts: ViewCounts,
    /// Fenced locks that are held or have waiters.
    pub locks: Vec<super::lock::LockInfo>,
    /// Read-write locks in use.
    pub rwlocks: Vec<RwLockView>,
    /// Semaphores.
    pub semaphores: Vec<SemaphoreView>,
    /// Latches counting down: (name, count, waiters).
    pub latches: Vec<(String, u64, usize)>,
    /// Barriers used so far.
    pub barriers: Vec<BarrierView>,
    /// Elections with a leader or candidates: (name, leader).
    pub elections: Vec<(String, Option<LeaderInfo>)>,
}

/// How many primitives of each kind are in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ViewCounts {
    /// Fenced locks held or waited for.
    pub locks: usize,
    /// Read-write locks in use.
    pub rwlocks: usize,
    /// Semaphores.
    pub semaphores: usize,
    /// Latches counting down.
    pub latches: usize,
    /// Barriers used so far.
    pub barriers: usize,
    /// Elections with a leader or candidates.
    pub elections: usize,
    /// Keys in the key-value store.
    pub kv_keys: usize,
    /// Bytes of keys and values in the key-value store.
    pub kv_bytes: u64,
}

/// A read-write lock in use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RwLockView {
    /// Its name.
    pub name: String,
    /// The writer and its fence, if write-locked.
    pub writer: Option<(SessionId, Fence)>,
    /// How many sessions hold it for reading.
    pub readers: usize,
}

/// A semaphore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SemaphoreView {
    /// Its name.
    pub name: String,
    /// Permits available (negative after a reduction below what is held).
    pub available: i64,
    /// Permits held by sessions (always 0 when sessionless).
    pub held: u64,
    /// Whether permits are owned by nobody.
    pub sessionless: bool,
}

/// A barrier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BarrierView {
    /// Its name.
    pub name: String,
    /// Generations tripped or broken so far.
    pub generation: u64,
    /// Parties of the generation under way.
    pub parties: u32,
    /// Parties waiting.
    pub arrived: usize,
}

/// Removes `caller`'s queued request from its primitive (a timeout).
fn cancel_wait(state: &mut State, fx: &mut Fx<'_>, caller: Caller, w: &WaitRef) {
    state.primitives.cancel(fx, w.kind, &w.name, caller);
}

/// Ends a session: answers its queued requests with `SessionLost`, releases everything
/// it owns (granting waiters of other sessions), and drops its reply cache.
fn end_session(state: &mut State, fx: &mut Fx<'_>, id: SessionId, reason: SessionEnd) {
    let Some(s) = state.sessions.map.remove(&id) else { return };
    state.timers.remove(&(s.deadline, Timer::Session(id)));
    let waits: Vec<(Caller, WaitRef)> = state
        .waits
        .range(Caller { session: id, seq: 0 }..=Caller { session: id, seq: u64::MAX })
        .map(|(c, w)| (*c, w.clone()))
        .collect();
    for (caller, w) in &waits {
        // As a timeout would (a barrier breaks when a party leaves), but answered
        // `SessionLost`.
        cancel_wait(state, fx, *caller, w);
        fx.complete(*caller, Err(Error::SessionLost(id)));
    }
    state.primitives.end_session(fx, id);
    fx.events.push(Event::SessionEnded { session: id, reason, index: fx.index });
}

/// The effects of one step, detached from the limits they borrowed.
struct FxOut {
    index: LogIndex,
    completions: Vec<(Caller, Result<Reply, Error>)>,
    events: Vec<Event>,
    timers_added: Vec<(Instant, Timer)>,
    timers_removed: Vec<(Instant, Timer)>,
}

impl From<Fx<'_>> for FxOut {
    fn from(fx: Fx<'_>) -> Self {
        Self {
            index: fx.index,
            completions: fx.completions,
            events: fx.events,
            timers_added: fx.timers_added,
            timers_removed: fx.timers_removed,
        }
    }
}

impl StateMachine for Concord {
    type Output = Outcome;
    type Event = Event;

    fn apply(&mut self, ctx: ApplyContext, command: &[u8]) -> Outcome {
        match postcard::from_bytes::<Command>(command) {
            Ok(cmd) => self.execute(ctx, cmd),
            Err(_) => {
                self.advance(ctx);
                Outcome::Done(Err(Error::Malformed))
            }
        }
    }

    fn query(&self, query: &[u8]) -> Outcome {
        match postcard::from_bytes::<Query>(query) {
            Ok(q) => Outcome::Done(self.read(&q)),
            Err(_) => Outcome::Done(Err(Error::Malformed)),
        }
    }

    fn leader_changed(&mut self, ctx: ApplyContext) {
        let state = &mut self.state;
        state.now = state.now.max(ctx.time);
        // Extend every session by one TTL from the new leader's first entry before
        // anything can expire: clients could not reach a leader during the election.
        for (id, s) in &mut state.sessions.map {
            let extended = state.now.add_us(s.ttl_us);
            if extended > s.deadline {
                state.timers.remove(&(s.deadline, Timer::Session(*id)));
                s.deadline = extended;
                state.timers.insert((extended, Timer::Session(*id)));
            }
        }
        self.advance(ctx);
    }

    fn tick(&mut self, ctx: ApplyContext) {
        self.advance(ctx);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.state.timers.first().map(|(t, _)| *t)
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn snapshot(&self, out: &mut Vec<u8>) {
        // Serialising plain data into a Vec cannot fail.
        if let Ok(bytes) = postcard::to_allocvec(&self.state) {
            *out = bytes;
        }
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.state = postcard::from_bytes(snapshot)
            .map_err(|_| RestoreError { reason: "not a coordination state snapshot" })?;
        Ok(())
    }
}
