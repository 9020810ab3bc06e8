//! The replicated state machine interface.
//!
//! A [`StateMachine`] is applied to committed entries in log order on every replica. It
//! must be deterministic: its output and next state may depend only on its current state
//! and the entry (including the leader-stamped time in [`ApplyContext`]), never on a clock,
//! a random source or the replica it runs on.

use crate::raft::{LogIndex, Term};
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

    /// Applies one committed command. Commands are opaque bytes chosen by the client; a
    /// command the machine cannot decode must produce an error output (identically on every
    /// replica), never a panic.
    fn apply(&mut self, ctx: ApplyContext, command: &[u8]) -> Self::Output;

    /// Answers a read-only query against the current state.
    fn query(&self, query: &[u8]) -> Self::Output;

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
