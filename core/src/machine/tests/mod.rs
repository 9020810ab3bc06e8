//! Unit tests of the coordination state machine, driven through the `StateMachine`
//! trait with postcard-encoded commands, as a replica would apply them.

mod barrier;
mod election;
mod kv;
mod latch;
mod lock;
mod long;
mod reference;
mod rwlock;
mod semaphore;
mod session;
mod signal;

use super::{
    Command, Concord, Error, Event, Limits, Op, Outcome, Query, QueryOp, Reply, SessionId, SessionRef,
};
use crate::machine::session::SessionOp;
use crate::raft::{ApplyContext, StateMachine};
use crate::time::Instant;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// A machine applied to by hand: one entry per call, at a clock the test moves.
pub(super) struct T {
    pub(super) m: Concord,
    index: u64,
    time_us: u64,
    seqs: BTreeMap<SessionId, u64>,
}

impl T {
    pub(super) fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub(super) fn with_limits(limits: Limits) -> Self {
        Self { m: Concord::new(limits).expect("valid limits"), index: 0, time_us: 0, seqs: BTreeMap::new() }
    }

    /// Moves the log clock forward by `ms` (entries applied later carry the new time).
    pub(super) fn advance_ms(&mut self, ms: u64) {
        self.time_us += ms * 1000;
    }

    fn ctx(&mut self) -> ApplyContext {
        self.index += 1;
        ApplyContext { index: self.index, term: 1, time: Instant::from_micros(self.time_us) }
    }

    /// The index the next entry will have: the fence a grant by it carries.
    pub(super) fn next_index(&self) -> u64 {
        self.index + 1
    }

    /// Applies an encoded command.
    pub(super) fn apply(&mut self, cmd: &Command) -> Outcome {
        let bytes = postcard::to_allocvec(cmd).expect("encodable");
        let ctx = self.ctx();
        self.m.apply(ctx, &bytes)
    }

    /// Opens a session with this TTL.
    pub(super) fn open(&mut self, ttl_ms: u64) -> SessionId {
        match self.anon(Op::Session(SessionOp::Open { ttl_ms })) {
            Outcome::Done(Ok(Reply::Session { id, .. })) => id,
            other => panic!("open failed: {other:?}"),
        }
    }

    /// Applies `op` for session `s` with its next sequence number (everything before it
    /// acknowledged).
    pub(super) fn run(&mut self, s: SessionId, op: Op) -> Outcome {
        let seq = self.seqs.entry(s).or_insert(0);
        *seq += 1;
        let seq = *seq;
        self.run_seq(s, seq, seq, op)
    }

    /// Applies `op` for session `s` with an explicit sequence and acknowledgement floor.
    pub(super) fn run_seq(&mut self, s: SessionId, seq: u64, acked: u64, op: Op) -> Outcome {
        self.apply(&Command { session: Some(SessionRef { id: s, seq, acked }), op })
    }

    /// The sequence number `run` last used for `s`.
    pub(super) fn last_seq(&self, s: SessionId) -> u64 {
        self.seqs.get(&s).copied().unwrap_or(0)
    }

    /// Applies `op` without a session.
    pub(super) fn anon(&mut self, op: Op) -> Outcome {
        self.apply(&Command { session: None, op })
    }

    /// Applies a `Tick` entry at the current clock.
    pub(super) fn tick(&mut self) {
        let ctx = self.ctx();
        self.m.tick(ctx);
    }

    /// Applies a new leader's first entry at the current clock.
    pub(super) fn leader_changed(&mut self) {
        let ctx = self.ctx();
        self.m.leader_changed(ctx);
    }

    /// Answers an encoded query.
    pub(super) fn query(&self, session: Option<SessionId>, op: QueryOp) -> Result<Reply, Error> {
        let bytes = postcard::to_allocvec(&Query { session, op }).expect("encodable");
        match self.m.query(&bytes) {
            Outcome::Done(r) => r,
            o => panic!("a query answers Done, not {o:?}"),
        }
    }

    /// Drains the events produced so far, but for the lock statistics (see
    /// [`T::lock_events`]).
    pub(super) fn events(&mut self) -> Vec<Event> {
        core::iter::from_fn(|| self.m.poll_event()).filter(|e| !matches!(e, Event::Lock(_))).collect()
    }

    /// Drains the events produced so far and keeps the lock statistics.
    pub(super) fn lock_events(&mut self) -> Vec<crate::machine::lock::LockEvent> {
        core::iter::from_fn(|| self.m.poll_event())
            .filter_map(|e| match e {
                Event::Lock(l) => Some(l),
                _ => None,
            })
            .collect()
    }

    /// Drains the events and keeps the completions: (session, seq, result).
    pub(super) fn completions(&mut self) -> Vec<(SessionId, u64, Result<Reply, Error>)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Completed { session, seq, result, .. } => Some((session, seq, result)),
                _ => None,
            })
            .collect()
    }

    /// Replaces the machine with one restored from its snapshot, as a follower that
    /// installs it would hold.
    pub(super) fn restore_fresh(&mut self) {
        let mut bytes = Vec::new();
        self.m.snapshot(&mut bytes);
        let mut fresh = Concord::new(self.m.limits().clone()).expect("valid limits");
        fresh.restore(&bytes).expect("a snapshot restores");
        self.m = fresh;
    }

    /// Snapshots the machine, restores the snapshot into a fresh machine, and checks the
    /// copy snapshots to the same bytes and answers `probe` the same way.
    pub(super) fn assert_snapshot_round_trips(&self, probe: &[QueryOp]) {
        let mut bytes = Vec::new();
        self.m.snapshot(&mut bytes);
        let mut copy = Concord::new(self.m.limits().clone()).expect("valid limits");
        copy.restore(&bytes).expect("restores");
        let mut again = Vec::new();
        copy.snapshot(&mut again);
        assert_eq!(bytes, again, "a restored machine snapshots differently");
        for op in probe {
            let q = postcard::to_allocvec(&Query { session: None, op: op.clone() }).expect("encodable");
            assert_eq!(self.m.query(&q), copy.query(&q), "restored machine answers {op:?} differently");
        }
        assert_eq!(self.m.view(), copy.view());
        assert_eq!(self.m.next_deadline(), copy.next_deadline());
    }
}

/// The result of a completed outcome, applied now or replayed from the reply cache;
/// panics on `Pending`.
pub(super) fn done(o: Outcome) -> Result<Reply, Error> {
    match o {
        Outcome::Done(r) | Outcome::Replayed { result: r, .. } => r,
        Outcome::Pending => panic!("expected a completed outcome, got Pending"),
    }
}

/// The reply of a successful outcome; panics otherwise.
pub(super) fn ok(o: Outcome) -> Reply {
    match done(o) {
        Ok(r) => r,
        Err(e) => panic!("expected success, got {e:?}"),
    }
}

/// The error of a failed outcome; panics otherwise.
pub(super) fn err(o: Outcome) -> Error {
    match done(o) {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(e) => e,
    }
}
