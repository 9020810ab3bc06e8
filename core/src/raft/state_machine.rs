//! The contract between Raft and the state machine it replicates: Raft applies committed
//! entries in log order through [`StateMachine`], and the machine tells Raft when its
//! clock needs a `Tick`. Raft defines the trait because Raft consumes it; Raft knows
//! nothing of the machines that implement it (the coordination machine, a test register).
//!
//! A [`StateMachine`] must be deterministic: its output and next state may depend only on
//! its current state and the entry (including the leader-stamped time in
//! [`ApplyContext`]), never on a clock, a random source or the replica it runs on.

use super::{LogIndex, Term};
use crate::time::Instant;
use alloc::vec::Vec;
use core::fmt;

/// Where in the log an entry being applied sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyContext {
    /// The entry's index.
    pub index: LogIndex,
    /// The entry's term.
    pub term: Term,
    /// The leader-stamped time of the entry: the state machine's only clock.
    pub time: Instant,
}

/// A deterministic state machine driven by the Raft log.
pub trait StateMachine {
    /// What applying a command or answering a query produces for the client.
    type Output;
    /// What applying may produce for others than the proposer (answers to queued waiters,
    /// watch and signal deliveries); drained with [`StateMachine::poll_event`].
    type Event;

    /// Applies one committed command. Commands are opaque bytes chosen by the client; a
    /// command the machine cannot decode must produce an error output (identically on every
    /// replica), never a panic.
    fn apply(&mut self, ctx: ApplyContext, command: &[u8]) -> Self::Output;

    /// Answers a read-only query against the current state.
    fn query(&self, query: &[u8]) -> Self::Output;

    /// A new leader's first entry was applied at `ctx`: leadership changed hands, and
    /// whatever the machine bounds by time (session leases) should be extended, since
    /// clients could not reach any leader during the election.
    fn leader_changed(&mut self, ctx: ApplyContext) {
        let _ = ctx;
    }

    /// A `Tick` entry was applied: the log clock advanced to `ctx.time` with nothing else
    /// to apply. Expire whatever is due.
    fn tick(&mut self, ctx: ApplyContext) {
        let _ = ctx;
    }

    /// The earliest log time at which [`StateMachine::tick`] would change the state; the
    /// leader proposes a `Tick` entry once its log clock reaches it.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// The next event produced by applying entries.
    fn poll_event(&mut self) -> Option<Self::Event> {
        None
    }

    /// Serialises the whole state into `out` (which is empty on entry).
    fn snapshot(&self, out: &mut Vec<u8>);

    /// Replaces the whole state with a snapshot produced by [`StateMachine::snapshot`].
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError>;
}

/// A snapshot could not be restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreError {
    /// What was wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot restore snapshot: {}", self.reason)
    }
}
